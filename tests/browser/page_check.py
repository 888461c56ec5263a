#!/usr/bin/env python3
"""Drives the chat page in headless Chromium over the DevTools protocol (CDP).

Two tabs log in as alice and bob; alice sends a message that must show on bob's page; a
line-protocol user (driven by tests/browser.rs) answers and must show on alice's page; bob
sends alice a private message; bob reloads his page and finds the room's messages again
(history); alice's socket drops and, reconnected, she gets what bob said meanwhile
(recovery), and after a longer absence is told that messages were lost (the server runs
with --history 20); then a screenshot of bob's page is saved.

With --token NAME=JWT (for alice and dave) the server runs with --auth-secret instead, and
the steps are signed logins: alice is refused without a token and with dave's, the status
line says why and she is not online; with her own token typed in she is online and chats
with the line user, and her reconnect signs in again; dave comes straight in from a link
ending in #token=JWT, which then leaves the address bar. A screenshot of alice's page is
saved.

Usage:
  page_check.py --url http://127.0.0.1:HTTP/ --shot out.png [--devtools ws://...] [--line-name carol]
                [--token alice=JWT --token dave=JWT]

The url may be https:// (the server's --wss-port): the page then talks wss:// to the same
listener. A Chromium started by the script ignores certificate errors then, for the tests'
self-signed certificate; one attached with --devtools must have been started with
--ignore-certificate-errors.

With --devtools the script attaches to a running browser (the Rust test starts and kills
Chromium itself); without it, it starts `chromium` (or $CHROMIUM) and stops it at the end.
Every wait is bounded. Prints one "OK <step>" line per step; exits 1 naming the failed step.
"""

import argparse
import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

import websockets
from websockets.asyncio.client import connect

STEP_TIMEOUT = 10.0  # seconds for any one CDP call
POLL_TRIES, POLL_EVERY = 100, 0.1  # 10 s for any one condition on a page

ALICE_MSG = "hello from alice 你好"
LINE_MSG = "hello from the line 你好"
PRIVATE_MSG = "psst, only for alice"
AWAY_MSG = "said while alice was away"
HISTORY_KEPT = 20  # the server's --history
LOST = "some messages were lost while you were away"
STATUS = "document.getElementById('status').textContent"  # the page's status line, in JS
# What the status line says when a server with --auth-secret (in Chinese, its default)
# refuses alice's login: 1003 未授权 and what the page adds to it.
NO_TOKEN = "login failed: 未授权 — this server needs a login token"
BAD_TOKEN = "login failed: 未授权 — the token was refused (wrong, expired, or not for alice)"


class Failure(Exception):
    pass


class Cdp:
    """One browser-level DevTools connection; pages are reached through flat sessions."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.waiting = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                fut = self.waiting.pop(msg.get("id"), None)
                if fut and not fut.done():
                    fut.set_result(msg)
        except websockets.ConnectionClosed:
            pass
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(Failure("DevTools connection closed"))

    async def call(self, method, params=None, session=None):
        i = next(self.ids)
        fut = asyncio.get_running_loop().create_future()
        self.waiting[i] = fut
        msg = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        await self.ws.send(json.dumps(msg))
        try:
            reply = await asyncio.wait_for(fut, STEP_TIMEOUT)
        except asyncio.TimeoutError:
            raise Failure(f"{method}: no answer within {STEP_TIMEOUT} s")
        if "error" in reply:
            raise Failure(f"{method}: {reply['error']}")
        return reply.get("result", {})


class Page:
    def __init__(self, cdp, session, label):
        self.cdp, self.session, self.label = cdp, session, label

    async def call(self, method, params=None):
        return await self.cdp.call(method, params, self.session)

    async def js(self, expr):
        r = await self.call("Runtime.evaluate",
                            {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise Failure(f"{self.label}: JS error in {expr!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_for(self, what, expr):
        """Polls `expr` until it is truthy; fails with the page's status and log otherwise."""
        for _ in range(POLL_TRIES):
            if await self.js(expr):
                return
            await asyncio.sleep(POLL_EVERY)
        state = await self.js(f"({{status: {STATUS},"
                              " users: document.getElementById('users').textContent,"
                              " log: [...document.getElementById('log').children]"
                              ".map(d => d.textContent)})")
        raise Failure(f"{self.label}: timed out waiting for {what}; page state {state}")

    async def log_has(self, what, line, cls=None):
        check = f"d.textContent === {json.dumps(line)}"
        if cls:
            check += f" && d.classList.contains({json.dumps(cls)})"
        await self.wait_for(what, f"[...document.getElementById('log').children].some(d => {check})")

    async def users_have(self, names):
        js_names = json.dumps(names)
        await self.wait_for(f"user list containing {names}",
                            f"(() => {{ const u = [...document.querySelectorAll('#users li')]"
                            f".map(li => li.textContent); return {js_names}.every(n => u.includes(n)); }})()")

    async def login(self, name, token=None):
        """Logs in as `name`, typing `token` into its box first if given; waits to be online."""
        await self.try_login(name, token)
        await self.wait_for(f"login as {name}", f"{STATUS} === {json.dumps('online as ' + name)}")

    async def try_login(self, name, token=None):
        """Fills in the name and, like a person, types the token and presses Enter (else
        clicks Log in); does not wait for the answer."""
        await self.js(f"(() => {{ document.getElementById('name').value = {json.dumps(name)};"
                      " document.getElementById('token').value = ''; return true; })()")
        if token:
            await self.type_into("token", token)
        else:
            await self.js("document.getElementById('login').click(), true")

    async def refused(self, name, how, status):
        """Waits for the status line to say `status`; then `name` must not be online, neither
        on this page nor in the server's user list."""
        await self.wait_for(f"the refusal {how}", f"{STATUS} === {json.dumps(status)}")
        users = await self.js("fetch('/user/list?appID=101', {cache: 'no-store'})"
                              ".then(r => r.json()).then(b => b.data.userList)")
        if await self.js("online") or name in users:
            raise Failure(f"{self.label}: {name} is online {how} (users {users})")

    async def drop(self):
        """Closes the page's socket without reconnecting, as a network drop would."""
        await self.js("(() => { wanted = false; ws.close(); return true; })()")
        await self.wait_for("the socket to close", "ws === null && document.getElementById('text').disabled")

    async def reconnect(self):
        """Lets the page reconnect (and log in again) after `drop`."""
        await self.js("(() => { wanted = true; connect(); return true; })()")
        await self.wait_for("the login after reconnecting",
                            f"online && {STATUS}.startsWith('online as')")

    async def type_and_enter(self, text):
        """Sends a message like a person: types it into the text box and presses Enter."""
        await self.type_into("text", text)
        await self.wait_for("the text box to clear after Enter",
                            "document.getElementById('text').value === ''")

    async def type_into(self, box, text):
        """Types like a person: focus the box, insert the text, press Enter."""
        await self.js(f"document.getElementById({json.dumps(box)}).focus(), true")
        await self.call("Input.insertText", {"text": text})
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", {
                "type": kind, "key": "Enter", "code": "Enter",
                "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13,
                **({"text": "\r"} if kind == "keyDown" else {})})


async def open_page(cdp, url, label):
    target = await cdp.call("Target.createTarget", {"url": "about:blank"})
    attached = await cdp.call("Target.attachToTarget",
                              {"targetId": target["targetId"], "flatten": True})
    page = Page(cdp, attached["sessionId"], label)
    await page.call("Emulation.setDeviceMetricsOverride",
                    {"width": 960, "height": 600, "deviceScaleFactor": 1, "mobile": False})
    await page.call("Page.enable")
    await page.call("Page.navigate", {"url": url})
    await page.wait_for("the page to load",
                        "document.readyState === 'complete' && !!document.getElementById('login')")
    return page


def ok(step):
    print(f"OK {step}", flush=True)


async def run(args, devtools):
    """Runs the steps of the mode asked for, then keeps a screenshot of the page they return."""
    async with connect(devtools, max_size=None, open_timeout=STEP_TIMEOUT) as ws:
        cdp = Cdp(ws)
        page = await (signed_steps(cdp, args) if args.token else chat_steps(cdp, args))
        shot = await page.call("Page.captureScreenshot", {"format": "png"})
        os.makedirs(os.path.dirname(os.path.abspath(args.shot)), exist_ok=True)
        with open(args.shot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        ok(f"screenshot {args.shot}")
        cdp.reader.cancel()


async def chat_steps(cdp, args):
    """alice and bob chat with each other and the line user; returns bob's page."""
    alice = await open_page(cdp, args.url, "alice's page")
    bob = await open_page(cdp, args.url, "bob's page")
    title = await alice.js("document.title")
    if "chat" not in (title or ""):
        raise Failure(f"unexpected page title {title!r}")
    ok("page loads in two tabs")

    await alice.login("alice")
    await bob.login("bob")
    ok("alice and bob log in")

    await bob.users_have(["alice", "bob"] + ([args.line_name] if args.line_name else []))
    await alice.log_has("bob's join notice", "bob joined — 哈喽~", "system")
    ok("user list and join notice")

    await alice.type_and_enter(ALICE_MSG)
    await bob.log_has("alice's message on bob's page", f"[alice] {ALICE_MSG}")
    await alice.log_has("alice's own broadcast echoed", f"[alice] {ALICE_MSG}")
    ok("alice -> bob broadcast")

    if args.line_name:
        await alice.log_has("the line user's answer", f"[{args.line_name}] {LINE_MSG}")
        ok("line user -> alice's page")

    # bob picks alice in the user list and whispers.
    await bob.js("[...document.querySelectorAll('#users li')]"
                 ".find(li => li.textContent === 'alice').click(), true")
    if await bob.js("document.getElementById('target').value") != "alice":
        raise Failure("clicking alice in the user list did not select her as target")
    await bob.type_and_enter(PRIVATE_MSG)
    await alice.log_has("bob's private message", f"[bob → alice] {PRIVATE_MSG}", "private")
    await bob.log_has("bob's own copy of the private message", f"[bob → alice] {PRIVATE_MSG}", "private")
    ok("bob -> alice private message")

    await bob.call("Page.reload")
    await bob.wait_for("the reloaded page", "document.readyState === 'complete' && "
                       "document.getElementById('log').children.length === 0")
    await bob.login("bob")
    await bob.log_has("alice's message from the history", f"[alice] {ALICE_MSG}", "history")
    if args.line_name:
        await bob.log_has("the line user's message from the history",
                          f"[{args.line_name}] {LINE_MSG}", "history")
    if await bob.js(f"document.getElementById('log').textContent.includes({json.dumps(PRIVATE_MSG)})"):
        raise Failure("a private message came back in the room's history")
    ok("history after reload")

    await alice.drop()
    await bob.type_and_enter(AWAY_MSG)
    await bob.log_has("bob's own message", f"[bob] {AWAY_MSG}")
    await alice.reconnect()
    await alice.log_has("what bob said while alice was away", f"[bob] {AWAY_MSG}")
    shown = await alice.js(f"[...document.getElementById('log').children]"
                           f".filter(d => d.textContent === {json.dumps('[alice] ' + ALICE_MSG)}).length")
    if shown != 1:
        raise Failure(f"alice's own message shown {shown} times after recovery")
    if await alice.js(f"document.getElementById('log').textContent.includes({json.dumps(LOST)})"):
        raise Failure("a short absence was reported as lost messages")
    ok("recovery after reconnect")

    await alice.drop()
    count = HISTORY_KEPT + 5
    await bob.js(f"(() => {{ for (let i = 0; i < {count}; i++) send('msg', {{ msg: 'flood ' + i }});"
                 " return true; })()")
    await bob.log_has("bob's last flood message", f"[bob] flood {count - 1}")
    await alice.reconnect()
    await alice.log_has("the kept messages", f"[bob] flood {count - 1}")
    await alice.log_has("the gap notice", LOST, "system")
    if await alice.js("document.getElementById('log').textContent.includes('flood 0')"):
        raise Failure("a message beyond the kept history came back")
    ok("gap after a long absence")
    return bob


async def signed_steps(cdp, args):
    """The page on a server with --auth-secret (tokens from --token NAME=JWT): refused
    without a token and with someone else's, in so many words and not online; online with
    alice's token typed in, chatting with the line user, signed in again after a drop; dave
    comes straight in from a #token= link. Returns alice's page."""
    tokens = dict(t.split("=", 1) for t in args.token)
    alice = await open_page(cdp, args.url, "alice's page")
    await alice.try_login("alice")
    await alice.refused("alice", "without a token", NO_TOKEN)
    ok("refused without a token")

    await alice.try_login("alice", tokens["dave"])
    await alice.refused("alice", "with dave's token", BAD_TOKEN)
    ok("refused with another user's token")

    await alice.login("alice", tokens["alice"])
    await alice.type_and_enter(ALICE_MSG)
    await alice.log_has("alice's own broadcast echoed", f"[alice] {ALICE_MSG}")
    if args.line_name:
        await alice.log_has("the line user's answer", f"[{args.line_name}] {LINE_MSG}")
    ok("alice logs in with her token and chats")

    await alice.drop()
    await alice.reconnect()
    ok("alice's reconnect sends her token again")

    link = f"{args.url}#token={tokens['dave']}"
    dave = await open_page(cdp, link, "dave's page")
    await dave.wait_for("the login from the link", f"{STATUS} === 'online as dave'")
    if await dave.js("location.href") != args.url:
        raise Failure(f"the token stayed in the address bar: {await dave.js('location.href')}")
    if await dave.js("document.getElementById('token').value") != tokens["dave"]:
        raise Failure("the token box was not filled from the link")
    await alice.users_have(["alice", "dave"])
    ok("dave logs in from a #token= link")
    return alice


def start_chromium(insecure=False):
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise Failure("chromium not found (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="page-check-")
    proc = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         *(["--ignore-certificate-errors"] if insecure else []),
         f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    for _ in range(200):  # DevTools prints its address within a few seconds
        line = proc.stderr.readline().decode(errors="replace")
        m = re.search(r"DevTools listening on (ws://\S+)", line)
        if m:
            # Keep draining stderr so Chromium never blocks on a full pipe.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, profile, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise Failure("chromium did not print its DevTools address")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the page, e.g. http://127.0.0.1:8080/")
    ap.add_argument("--shot", required=True, help="where to write the PNG screenshot")
    ap.add_argument("--devtools", help="browser DevTools ws:// address (else start chromium)")
    ap.add_argument("--line-name", help="name of a line-protocol user who answers alice")
    ap.add_argument("--token", action="append", metavar="NAME=JWT",
                    help="signed-login steps: a login token for alice and one for dave")
    args = ap.parse_args()
    proc = profile = None
    try:
        devtools = args.devtools
        if not devtools:
            proc, profile, devtools = start_chromium(args.url.startswith("https:"))
        asyncio.run(asyncio.wait_for(run(args, devtools), 90))
    except (Failure, OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
        print(f"FAIL {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    finally:
        if proc:
            os.killpg(proc.pid, 9)
            proc.wait()
            shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
