#!/usr/bin/env python3
"""Python's `ssl` and `websockets` against the server's TLS listeners, beside plain
line-protocol users, with the certificate verified against the test's own CA (the
self-signed certificate the test made with rcgen).

Usage: tls_clients.py --ca CERT.pem --line LINE_ADDR --tls TLS_ADDR --wss WSS_ADDR
       (addresses host:port as the server prints them: the plain line port, --tls-port,
       --wss-port)

Prints one "OK <step>" line per step; on a failure prints "FAIL <step>: why" and exits 1.
Every wait is bounded (asyncio.wait_for), so the script always ends.
"""

import argparse
import asyncio
import http.client
import json
import re
import ssl
import sys

import websockets
from websockets.asyncio.client import connect

from steps import run_steps

STEP_TIMEOUT = 15.0  # seconds for one whole step
WAIT = 5.0  # seconds for one expected line or frame

ARGS = None


class Failure(Exception):
    pass


def context():
    """Verifies the server's certificate against the test's CA, by IP address."""
    ctx = ssl.create_default_context(cafile=ARGS.ca)
    ctx.check_hostname = True
    return ctx


def split(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


class Line:
    """A line-protocol user, over plain TCP or over TLS."""

    def __init__(self, label, reader, writer):
        self.label, self.r, self.w, self.seen = label, reader, writer, []
        self.addr = None  # the server's name for us until a rename: our ip:port

    @classmethod
    async def open(cls, label, addr, tls=False):
        host, port = split(addr)
        kw = {"ssl": context(), "server_hostname": host} if tls else {}
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port, **kw), WAIT)
        line = cls(label, r, w)
        me = "%s:%d" % w.get_extra_info("sockname")[:2]
        line.addr = me
        await line.expect("its own online notice", lambda l: l == f"[{me}]{me}:已上线")
        return line

    async def rename(self, name):
        self.send(f"rename|{name}")
        await self.expect("the rename reply", lambda l: l == f"您已更新用户名：{name}")

    def send(self, text):
        self.w.write((text + "\n").encode())

    async def expect(self, what, pred):
        for i, l in enumerate(self.seen):
            if pred(l):
                return self.seen.pop(i)

        async def loop():
            while True:
                raw = await self.r.readline()
                if not raw:
                    raise Failure(f"{self.label}: connection closed while waiting for {what}")
                l = raw.decode().rstrip("\n")
                if pred(l):
                    return l
                self.seen.append(l)
        try:
            return await asyncio.wait_for(loop(), WAIT)
        except asyncio.TimeoutError:
            raise Failure(f"{self.label}: no {what} within {WAIT} s; got {self.seen[-5:]}")

    async def close(self):
        self.w.close()
        try:
            await asyncio.wait_for(self.w.wait_closed(), WAIT)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            pass


# ---- the steps -------------------------------------------------------------------------

async def ssl_line_chat():
    plain = await Line.open("plain user", ARGS.line)
    await plain.rename("py-plain")
    tls = await Line.open("tls user", ARGS.tls, tls=True)
    t = tls.addr
    await plain.expect("the TLS user's online notice", lambda l: l == f"[{t}]{t}:已上线")
    await tls.rename("py-tls")

    tls.send("over tls 你好")
    await plain.expect("the TLS user's broadcast", lambda l: l == f"[{t}]py-tls:over tls 你好")
    await tls.expect("its own broadcast", lambda l: l == f"[{t}]py-tls:over tls 你好")

    p = plain.addr
    plain.send("in the clear")
    await tls.expect("the plain user's broadcast", lambda l: l == f"[{p}]py-plain:in the clear")

    plain.send("to|py-tls|psst tls")
    await tls.expect("the plain user's whisper", lambda l: l == "py-plain对您说psst tls")
    tls.send("to|py-plain|psst plain")
    await plain.expect("the TLS user's whisper", lambda l: l == "py-tls对您说psst plain")

    await tls.close()
    await plain.expect("the TLS user's offline notice", lambda l: l == f"[{t}]py-tls:已下线")
    await plain.close()


def https_get(path):
    host, port = split(ARGS.wss)
    conn = http.client.HTTPSConnection(host, port, context=context(), timeout=WAIT)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read().decode()
        if r.status != 200:
            raise Failure(f"GET {path} answered {r.status}: {body}")
        try:
            return json.loads(body)
        except ValueError:
            raise Failure(f"GET {path}: not JSON: {body!r}")
    finally:
        conn.close()


async def https_api():
    # A logged-in wss user, so the user list has someone on it.
    ws = await connect(f"wss://{ARGS.wss}/im", ssl=context(), open_timeout=WAIT)
    await ws.send(json.dumps({"seq": "1", "cmd": "login", "data": {"userID": "py-listed", "appID": 101}}))
    got = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    if got.get("response", {}).get("code") != 200:
        raise Failure(f"login answered {got}")
    users = await asyncio.to_thread(https_get, "/user/list")
    if users.get("code") != 200 or "py-listed" not in users.get("data", {}).get("userList", []):
        raise Failure(f"/user/list over https: {users}")
    state = await asyncio.to_thread(https_get, "/system/state")
    data = state.get("data", {})
    if state.get("code") != 200 or not isinstance(data.get("connections"), int) or data["connections"] < 2:
        raise Failure(f"/system/state over https: {state}")
    await ws.close()


async def wss_im():
    plain = await Line.open("plain user", ARGS.line)
    ws = await connect(f"wss://{ARGS.wss}/im", ssl=context(), open_timeout=WAIT)

    async def recv_until(what, pred):
        async def loop():
            while True:
                f = json.loads(await ws.recv())
                if pred(f):
                    return f
        try:
            return await asyncio.wait_for(loop(), WAIT)
        except asyncio.TimeoutError:
            raise Failure(f"wss /im: no {what} within {WAIT} s")

    await ws.send(json.dumps({"seq": "1", "cmd": "login", "data": {"userID": "py-wss", "appID": 101}}))
    got = await recv_until("login response", lambda f: f.get("seq") == "1")
    if got.get("response", {}).get("code") != 200:
        raise Failure(f"login answered {got}")
    await plain.expect("the wss user's online notice", lambda l: re.fullmatch(r"\[[^\]]+\]py-wss:已上线", l))
    await ws.send(json.dumps({"seq": "2", "cmd": "msg", "data": {"msg": "over wss 你好"}}, ensure_ascii=False))
    got = await recv_until("msg response", lambda f: f.get("seq") == "2")
    if got.get("response", {}).get("code") != 200:
        raise Failure(f"msg answered {got}")
    await plain.expect("the wss user's broadcast", lambda l: re.fullmatch(r"\[[^\]]+\]py-wss:over wss 你好", l))
    plain.send("back to wss")

    def is_back(f):
        d = (f.get("response") or {}).get("data")
        return f.get("cmd") == "msg" and isinstance(d, dict) and d.get("msg") == "back to wss"
    await recv_until("the plain user's broadcast", is_back)
    await ws.close()
    await plain.close()


async def wss_hub():
    h7 = await connect(f"wss://{ARGS.wss}/ws/7", ssl=context(), open_timeout=WAIT)
    h8 = await connect(f"wss://{ARGS.wss}/ws/8", ssl=context(), open_timeout=WAIT)

    async def expect(ws, label, want):
        async def loop():
            while True:
                f = json.loads(await ws.recv())
                if f == want:
                    return
        try:
            await asyncio.wait_for(loop(), WAIT)
        except asyncio.TimeoutError:
            raise Failure(f"hub {label}: no {want} within {WAIT} s")

    await expect(h7, 7, {"type": 0, "sender": 8, "receiver": 0, "content": "已上线"})
    await h7.send(json.dumps({"type": 1, "sender": 7, "receiver": 8, "content": "hi 8 over wss"}))
    await expect(h8, 8, {"type": 1, "sender": 7, "receiver": 8, "content": "hi 8 over wss"})
    await expect(h7, 7, {"type": 2, "sender": 0, "receiver": 8, "content": "success send"})
    await h8.close()
    await expect(h7, 7, {"type": 4, "sender": 8, "receiver": 0, "content": "已下线"})
    await h7.close()


STEPS = [
    ("python ssl line user chats with a plain line user", ssl_line_chat),
    ("https GET /user/list and /system/state", https_api),
    ("wss /im login and msg, both ways with a plain line user", wss_im),
    ("wss /ws/7 -> /ws/8", wss_hub),
]


async def main():
    return await run_steps(STEPS, STEP_TIMEOUT, "tls_clients.py")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--ca", "--line", "--tls", "--wss"):
        ap.add_argument(flag, required=True)
    ARGS = ap.parse_args()
    sys.exit(1 if asyncio.run(main()) else 0)
