#!/usr/bin/env python3
"""A second WebSocket client, from another ecosystem: Python's `websockets` against the
server's /im (gowebsocket JSON) and /ws/{id} (gorilla hub) endpoints, plus one line-protocol
user on plain TCP, following the protocol contract of issue 6.

Usage: ws_clients.py WS_ADDR LINE_ADDR      (both host:port, as the server prints them)

Prints one "OK <step>" line per step; on the first failure prints "FAIL <step>: why" and
exits 1. Every wait is bounded (asyncio.wait_for), so the script always ends.
"""

import asyncio
import json
import re
import sys

import websockets
from websockets.asyncio.client import connect

from steps import run_steps

STEP_TIMEOUT = 10.0  # seconds for one whole step
WAIT = 5.0  # seconds for one expected frame or line

WS = LINE = None  # "host:port" from argv


class Failure(Exception):
    pass


def resp(seq, cmd, code, code_msg, data=None):
    return {"seq": seq, "cmd": cmd, "response": {"code": code, "codeMsg": code_msg, "data": data}}


def push_data(frame, cmd):
    """The data of an /im push of `cmd` (seq is the server's own), else None."""
    if not isinstance(frame, dict) or frame.get("cmd") != cmd:
        return None
    r = frame.get("response") or {}
    if r.get("code") != 200 or r.get("codeMsg") != "Success" or not isinstance(r.get("data"), dict):
        return None
    return r["data"]


def room_msg(frame, want):
    """Whether `frame` is the push of a room message with data `want` and, as every room
    message has, its number in the room's history (`seq`, an integer from 1)."""
    d = push_data(frame, "msg")
    if d is None or not isinstance(d.get("seq"), int) or d["seq"] < 1:
        return False
    return {k: v for k, v in d.items() if k != "seq"} == want


class Im:
    """An /im connection with a seq counter and a frame reader that can skip pushes."""

    def __init__(self, ws, label):
        self.ws, self.label, self.seq, self.seen = ws, label, 0, []

    @classmethod
    async def open(cls, label, path="/im"):
        ws = await connect(f"ws://{WS}{path}", open_timeout=WAIT, max_size=None)
        return cls(ws, label)

    async def send(self, cmd, data):
        self.seq += 1
        await self.ws.send(json.dumps({"seq": str(self.seq), "cmd": cmd, "data": data},
                                      ensure_ascii=False))
        return str(self.seq)

    async def expect(self, what, pred):
        """Returns the first frame, kept or new, that satisfies `pred`; others are kept in
        `seen` (a push may arrive before the response to the request that caused it)."""
        for i, frame in enumerate(self.seen):
            if pred(frame):
                return self.seen.pop(i)

        async def loop():
            while True:
                raw = await self.ws.recv()
                frame = json.loads(raw)
                if pred(frame):
                    return frame
                self.seen.append(frame)
        try:
            return await asyncio.wait_for(loop(), WAIT)
        except asyncio.TimeoutError:
            raise Failure(f"{self.label}: no {what} within {WAIT} s; other frames: {self.seen[-5:]}")
        except websockets.ConnectionClosed as e:
            raise Failure(f"{self.label}: closed ({e}) while waiting for {what}")

    async def call(self, cmd, data, want):
        """Sends a request and checks its response equals `want` (with our seq)."""
        s = await self.send(cmd, data)
        got = await self.expect(f"response to {cmd}",
                                lambda f: f.get("seq") == s and f.get("cmd") == cmd and "response" in f
                                and push_data(f, cmd) is None)
        want = resp(s, cmd, *want)
        if want["response"]["code"] != 200 and isinstance(got.get("response"), dict):
            # The spec fixes an error's code and codeMsg; data may carry a detail string.
            detail = got["response"].get("data")
            if detail is None or isinstance(detail, str):
                want["response"]["data"] = detail
        if got != want:
            raise Failure(f"{self.label}: {cmd} {data} answered {got}, expected {want}")
        return got

    async def login(self, user, app=101):
        await self.call("login", {"userID": user, "appID": app}, (200, "Success"))

    async def close(self):
        await self.ws.close()


class Hub:
    """A /ws/{id} connection."""

    def __init__(self, ws, ident):
        self.ws, self.id, self.seen = ws, ident, []

    @classmethod
    async def open(cls, ident):
        ws = await connect(f"ws://{WS}/ws/{ident}", open_timeout=WAIT, max_size=None)
        return cls(ws, ident)

    async def send(self, msg):
        await self.ws.send(msg if isinstance(msg, str) else json.dumps(msg, ensure_ascii=False))

    async def expect(self, want):
        if want in self.seen:
            self.seen.remove(want)
            return want

        async def loop():
            while True:
                frame = json.loads(await self.ws.recv())
                if frame == want:
                    return frame
                self.seen.append(frame)
        try:
            return await asyncio.wait_for(loop(), WAIT)
        except asyncio.TimeoutError:
            raise Failure(f"hub {self.id}: no {want} within {WAIT} s; got {self.seen[-5:]}")
        except websockets.ConnectionClosed as e:
            raise Failure(f"hub {self.id}: closed ({e}) while waiting for {want}")


class Line:
    """A line-protocol user on plain TCP."""

    def __init__(self, reader, writer):
        self.r, self.w, self.seen = reader, writer, []

    @classmethod
    async def open(cls, name):
        host, port = LINE.rsplit(":", 1)
        r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), WAIT)
        line = cls(r, w)
        await line.expect("its own online notice", lambda l: l.endswith(":已上线"))
        line.send(f"rename|{name}")
        await line.expect("rename reply", lambda l: l == f"您已更新用户名：{name}")
        return line

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
                    raise Failure(f"line user: connection closed while waiting for {what}")
                l = raw.decode().rstrip("\n")
                if pred(l):
                    return l
                self.seen.append(l)
        try:
            return await asyncio.wait_for(loop(), WAIT)
        except asyncio.TimeoutError:
            raise Failure(f"line user: no {what} within {WAIT} s; got {self.seen[-5:]}")

    def close(self):
        self.w.close()


def is_push(cmd, **fields):
    def pred(f):
        d = push_data(f, cmd)
        return d is not None and all(d.get(k) == v for k, v in fields.items())
    return pred


# ---- the steps -------------------------------------------------------------------------

async def login_both_spellings():
    a = await Im.open("userID/appID")
    await a.call("login", {"userID": "py-k1", "appID": 101}, (200, "Success"))
    b = await Im.open("userId/appId")
    await b.call("login", {"userId": "py-k2", "appId": "102"}, (200, "Success"))
    await a.close(), await b.close()


async def heartbeat_and_ping():
    a = await Im.open("heartbeat")
    await a.call("ping", {}, (200, "Success", "pong"))
    await a.call("heartbeat", {}, (1000, "未登录"))
    await a.login("py-hb")
    await a.call("heartbeat", {}, (200, "Success"))
    await a.call("ping", {}, (200, "Success", "pong"))
    await a.close()


async def errors():
    a = await Im.open("errors")
    await a.call("nosuchcmd", {}, (1010, "路由不存在"))
    await a.ws.send("this is not json")
    got = await a.expect("answer to a non-JSON frame", lambda f: "response" in f)
    if got != resp("", "", 1001, "数据不合法"):
        raise Failure(f"non-JSON frame answered {got}")
    await a.call("ping", {}, (200, "Success", "pong"))  # the connection stayed
    await a.call("login", {"userID": "py-bad-app", "appID": 999}, (1003, "未授权"))
    await a.call("login", {"userID": "u" * 20, "appID": 101}, (1002, "非法的用户ID"))
    await a.call("login", {"userID": "", "appID": 101}, (1002, "非法的用户ID"))
    await a.call("msg", {"msg": "too early"}, (1000, "未登录"))
    await a.call("login", {"userID": "u" * 19, "appID": 101}, (200, "Success"))
    await a.close()


async def im_chat():
    a = await Im.open("alice")
    await a.login("py-alice")
    b = await Im.open("bob")
    await b.login("py-bob")
    await a.expect("bob's enter push", is_push("enter", **{"from": "py-bob", "msg": "哈喽~"}))

    await a.call("msg", {"msg": "hi all 你好"}, (200, "Success"))
    want = {"target": "", "type": "text", "msg": "hi all 你好", "from": "py-alice"}
    await b.expect("alice's broadcast", lambda f: room_msg(f, want))
    await a.expect("alice's own broadcast", lambda f: room_msg(f, want))

    await a.call("msg", {"target": "py-bob", "msg": "psst"}, (200, "Success"))
    want = {"target": "py-bob", "type": "text", "msg": "psst", "from": "py-alice"}
    await b.expect("alice's private message", lambda f: push_data(f, "msg") == want)
    await a.call("msg", {"target": "py-nobody", "msg": "hello?"}, (1009, "操作失败"))

    await b.close()
    await a.expect("bob's exit push", is_push("exit", **{"from": "py-bob", "msg": "用户已经离开~"}))
    await a.close()


async def relogin_kicks_older():
    old = await Im.open("older")
    await old.login("py-twice")
    new = await Im.open("newer")
    await new.login("py-twice")
    await old.expect("kick push", lambda f: f == resp("", "kick", 1009, "操作失败", "logged in elsewhere"))
    try:
        await asyncio.wait_for(old.ws.wait_closed(), WAIT)
    except asyncio.TimeoutError:
        raise Failure("the older socket was not closed after the kick")
    if old.ws.close_code != 1008:
        raise Failure(f"the older socket closed with {old.ws.close_code}, expected 1008")
    await new.call("heartbeat", {}, (200, "Success"))
    await new.close()


async def hub_delivery():
    h7 = await Hub.open(7)
    h8 = await Hub.open(8)
    await h7.expect({"type": 0, "sender": 8, "receiver": 0, "content": "已上线"})
    await h7.send({"type": 1, "sender": 7, "receiver": 8, "content": "hi 8 你好"})
    await h8.expect({"type": 1, "sender": 7, "receiver": 8, "content": "hi 8 你好"})
    await h7.expect({"type": 2, "sender": 0, "receiver": 8, "content": "success send"})
    await h7.send({"type": 1, "sender": 7, "receiver": "9", "content": "anyone?"})
    await h7.expect({"type": 2, "sender": 0, "receiver": 9, "content": "not online"})
    await h7.send("{not json")
    await h7.expect({"type": 2, "sender": 0, "receiver": 7, "content": "invalid message"})
    await h8.ws.close()
    await h7.expect({"type": 4, "sender": 8, "receiver": 0, "content": "已下线"})
    await h7.ws.close()


async def hub_broadcast_crosses_protocols():
    line = await Line.open("py-line")
    a = await Im.open("im user of 101")
    await a.login("py-carol")
    h7 = await Hub.open(7)
    await a.expect("hub 7's enter push", is_push("enter", **{"from": "7"}))
    await line.expect("hub 7's online notice", lambda l: re.fullmatch(r"\[[^\]]+\]7:已上线", l))

    await h7.send({"type": 3, "sender": 7, "receiver": 0, "content": "to everyone 大家好"})
    await h7.expect({"type": 3, "sender": 7, "receiver": 0, "content": "to everyone 大家好"})
    want = {"target": "", "type": "text", "msg": "to everyone 大家好", "from": "7"}
    await a.expect("hub 7's broadcast", lambda f: room_msg(f, want))
    await line.expect("hub 7's broadcast", lambda l: re.fullmatch(r"\[[^\]]+\]7:to everyone 大家好", l))

    # and back: a line broadcast and an /im broadcast reach the hub user
    line.send("from the line")
    await h7.expect({"type": 3, "sender": "py-line", "receiver": 0, "content": "from the line"})
    await a.call("msg", {"msg": "from im"}, (200, "Success"))
    await h7.expect({"type": 3, "sender": "py-carol", "receiver": 0, "content": "from im"})
    await line.expect("the /im broadcast", lambda l: re.fullmatch(r"\[[^\]]+\]py-carol:from im", l))

    # a name held on another protocol is taken
    b = await Im.open("name taken")
    await b.call("login", {"userID": "py-line", "appID": 101}, (1009, "操作失败"))
    await b.close(), await a.close(), await h7.ws.close()
    line.close()


async def oversize_message():
    a = await Im.open("oversize")
    await a.login("py-big")
    big = json.dumps({"seq": "9", "cmd": "msg", "data": {"msg": "x" * 70000}})
    await a.ws.send(big)
    try:
        while True:
            await asyncio.wait_for(a.ws.recv(), WAIT)
    except websockets.ConnectionClosed:
        pass
    except asyncio.TimeoutError:
        raise Failure("the server did not close after a 70000-byte message")
    if a.ws.close_code != 1009:
        raise Failure(f"closed with code {a.ws.close_code} {a.ws.close_reason!r}, expected 1009")


STEPS = [
    ("login with userID/appID and userId/appId", login_both_spellings),
    ("ping, heartbeat before and after login", heartbeat_and_ping),
    ("error codes 1010 1001 1003 1002 1000", errors),
    ("two /im users: broadcast, private, enter/exit", im_chat),
    ("second login kicks the older socket (1008)", relogin_kicks_older),
    ("hub /ws/7 -> /ws/8 type 1, success send, not online", hub_delivery),
    ("hub broadcast reaches /im 101 and a line user", hub_broadcast_crosses_protocols),
    ("oversize message closes with 1009", oversize_message),
]


async def main():
    return await run_steps(STEPS, STEP_TIMEOUT, "ws_clients.py")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    WS, LINE = sys.argv[1], sys.argv[2]
    sys.exit(1 if asyncio.run(main()) else 0)
