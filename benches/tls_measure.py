#!/usr/bin/env python3
"""What TLS costs the server: memory per idle user, CPU per handshake, fan-out throughput.

    benches/tls_measure.py [--server target/release/imserver-mio] [--users 1000]
                           [--handshake-seconds 5] [--fanout-users 100] [--msgs 2000]
                           [--size 64] [--rounds 3] [--window 100] [--parts abc]

Build first: `cargo build --release --bin imserver-mio`. Needs `openssl` (certificate and
`s_time`) and Python 3.8+ (standard library only). Traffic goes to 127.0.0.1 only; every
wait is bounded; the servers are killed at the end. The certificate is a self-signed ECDSA
P-256 one (rcgen's default algorithm, as the tests use), made with openssl in a temp dir.

(a) Idle memory: a fresh server, then N line users (plain, or TLS on --tls-port) connect and
    read every notice until the server has been quiet for 1 s; server VmRSS is read from
    /proc at N/2 and N users. Per user = RSS growth / users (also the marginal figure from
    N/2 to N, which leaves out start-up and allocator warm-up). Python asyncio clients.
(b) Handshakes: `openssl s_time -new` (a full handshake per connection, no resumption)
    against --wss-port (handshake, then an idle HTTP session that the client closes; no
    chat notices) and --tls-port (handshake, user online, then offline); server CPU from
    /proc/PID/stat utime+stime over the run. Handshakes per second on one core = 1 / server
    CPU per handshake (the wall rate shares 2 cores with the client).
(c) Fan-out over plain vs TLS in one server: U line users, one of them (renamed `s`)
    broadcasts M messages of S bytes, keeping at most W (--window) of its own unechoed (W=1:
    one message per loop turn, one TLS record per message per user); every user
    (the sender too) counts the M lines. Deliveries = U x M. Wall time from the first send
    to the last user's last line, and server CPU over that time. Python asyncio clients
    (their own CPU bounds the wall rate on 2 cores; server CPU per delivery is the number
    that carries over).
"""

import argparse
import asyncio
import os
import re
import resource
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")
QUIET = 1.0  # seconds without bytes that count as "the storm is over"
LIMIT = 120.0  # seconds for any one phase


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


class Server:
    def __init__(self, exe, cert, key):
        args = [exe, "--host", "127.0.0.1", "--port", "0", "--idle-timeout", "0",
                "--max-conns", "5000", "--tls-cert", cert, "--tls-key", key,
                "--tls-port", "0", "--wss-port", "0"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMSERVER_")}
        env["RUST_LOG"] = "warn"
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, env=env)
        lines = [self.proc.stdout.readline().decode().strip() for _ in range(3)]
        self.line, self.tls, self.wss = lines
        self.pid = self.proc.pid

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def split(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def client_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a benchmark: the tests verify the certificate
    return ctx


async def open_user(addr, tls):
    host, port = split(addr)
    kw = {"ssl": client_ctx()} if tls else {}
    return await asyncio.wait_for(asyncio.open_connection(host, port, **kw), 30)


class Drain:
    """Reads a user's stream in the background, counting bytes and newlines."""

    def __init__(self, reader):
        self.reader, self.bytes, self.lines, self.last = reader, 0, 0, time.monotonic()
        self.task = asyncio.create_task(self._run())

    async def _run(self):
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                return
            self.bytes += len(chunk)
            self.lines += chunk.count(b"\n")
            self.last = time.monotonic()


async def wait_quiet(drains):
    deadline = time.monotonic() + LIMIT
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        if time.monotonic() - max(d.last for d in drains) >= QUIET:
            return
    raise RuntimeError("the notices never stopped")


async def close_all(users, drains):
    for _, w in users:
        w.close()
    for d in drains:
        d.task.cancel()
    await asyncio.gather(*(d.task for d in drains), return_exceptions=True)


async def idle_memory(exe, cert, key, n, tls):
    server = Server(exe, cert, key)
    try:
        await asyncio.sleep(0.5)
        base = rss_kib(server.pid)
        users, drains, at_half = [], [], None
        for i in range(n):
            r, w = await open_user(server.tls if tls else server.line, tls)
            users.append((r, w))
            drains.append(Drain(r))
            if i + 1 == n // 2:
                await wait_quiet(drains)
                at_half = rss_kib(server.pid)
        await wait_quiet(drains)
        full = rss_kib(server.pid)
        await close_all(users, drains)
        return base, at_half, full
    finally:
        server.stop()


def s_time(addr, seconds):
    out = subprocess.run(["openssl", "s_time", "-connect", addr, "-new", "-time", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
    if not m:
        raise RuntimeError(f"s_time said: {out}")
    return int(m.group(1)), float(m.group(2))


def handshakes(exe, cert, key, seconds):
    server = Server(exe, cert, key)
    try:
        time.sleep(0.5)
        results = {}
        for label, addr in (("--wss-port", server.wss), ("--tls-port (line user)", server.tls)):
            c0, t0 = cpu_s(server.pid), time.monotonic()
            n, _ = s_time(addr, seconds)
            wall = time.monotonic() - t0
            cpu = cpu_s(server.pid) - c0
            results[label] = (n, wall, cpu)
        return results
    finally:
        server.stop()


async def fanout_round(server, n, msgs, size, tls, window):
    addr = server.tls if tls else server.line
    users, drains = [], []
    for _ in range(n):
        r, w = await open_user(addr, tls)
        users.append((r, w))
        drains.append(Drain(r))
    sender_w = users[0][1]
    sender_w.write(b"rename|s\n")
    await wait_quiet(drains)
    start_lines = [d.lines for d in drains]
    body = ("x" * size).encode()
    c0, t0 = cpu_s(server.pid), time.monotonic()
    sent = 0
    deadline = t0 + LIMIT
    me = drains[0]
    while sent < msgs:
        while sent - (me.lines - start_lines[0]) >= window:
            if time.monotonic() > deadline:
                raise RuntimeError("the sender's echoes stopped")
            await asyncio.sleep(0.0005)
        k = min(window - (sent - (me.lines - start_lines[0])), msgs - sent)
        sender_w.write((body + b"\n") * k)
        sent += k
    while any(d.lines - s < msgs for d, s in zip(drains, start_lines)):
        if time.monotonic() > deadline:
            raise RuntimeError("deliveries stopped short")
        await asyncio.sleep(0.001)
    wall, cpu = time.monotonic() - t0, cpu_s(server.pid) - c0
    extra = sum(d.lines - s - msgs for d, s in zip(drains, start_lines))
    await close_all(users, drains)
    await asyncio.sleep(1.0)  # the departures
    return wall, cpu, extra


async def fanout(exe, cert, key, n, msgs, size, rounds, window):
    server = Server(exe, cert, key)
    try:
        await asyncio.sleep(0.5)
        out = {False: [], True: []}
        for _ in range(rounds):
            for tls in (False, True):
                out[tls].append(await fanout_round(server, n, msgs, size, tls, window))
        return out
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", default="target/release/imserver-mio")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--handshake-seconds", type=int, default=5)
    ap.add_argument("--fanout-users", type=int, default=100)
    ap.add_argument("--msgs", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--parts", default="abc", help="which of (a) (b) (c) to run")
    a = ap.parse_args()
    if not shutil.which("openssl"):
        sys.exit("needs openssl")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="tls-measure-")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    try:
        run_parts(a, cert, key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_parts(a, cert, key):
    if "a" in a.parts:
        print(f"(a) idle memory, {a.users} line users, Python asyncio clients")
        per = {}
        for tls in (False, True):
            base, half, full = asyncio.run(idle_memory(a.server, cert, key, a.users, tls))
            label = "TLS  " if tls else "plain"
            total = (full - base) * 1024 / a.users
            marginal = (full - half) * 1024 / (a.users - a.users // 2)
            per[tls] = (total, marginal)
            print(f"  {label}: RSS {base} KiB idle, {half} KiB at {a.users // 2}, {full} KiB at "
                  f"{a.users}: {total:.0f} B/user overall, {marginal:.0f} B/user from "
                  f"{a.users // 2} to {a.users}")
        print(f"  TLS - plain: {per[True][0] - per[False][0]:.0f} B/user overall, "
              f"{per[True][1] - per[False][1]:.0f} B/user marginal")

    if "b" in a.parts:
        print(f"(b) full handshakes, openssl s_time -new for {a.handshake_seconds} s each")
        for label, (n, wall, cpu) in handshakes(a.server, cert, key, a.handshake_seconds).items():
            print(f"  {label}: {n} handshakes in {wall:.1f} s wall = {n / wall:.0f}/s; server CPU "
                  f"{cpu:.2f} s = {cpu / n * 1e6:.0f} us/handshake = {n / cpu:.0f} handshakes "
                  f"per server CPU-s")

    if "c" in a.parts:
        print(f"(c) fan-out, {a.fanout_users} users, 1 sender, {a.msgs} x {a.size} B, window "
              f"{a.window}, {a.rounds} rounds alternating plain/TLS on one server, "
              "Python asyncio clients")
        res = asyncio.run(fanout(a.server, cert, key, a.fanout_users, a.msgs, a.size, a.rounds,
                                 a.window))
        d = a.fanout_users * a.msgs
        med = {}
        for tls in (False, True):
            rows = res[tls]
            rates = [d / w for w, _, _ in rows]
            per_cpu = [c / d * 1e9 for _, c, _ in rows]
            med[tls] = (statistics.median(rates), statistics.median(per_cpu))
            label = "TLS  " if tls else "plain"
            print(f"  {label}: " + "; ".join(
                f"{w:.2f} s wall, server CPU {c:.2f} s" for w, c, _ in rows)
                + f" -> median {med[tls][0]:.0f} deliveries/s (wall), "
                f"{med[tls][1]:.0f} ns server CPU/delivery"
                + ("" if all(e == 0 for _, _, e in rows) else f" (extra lines {[e for *_, e in rows]})"))
        print(f"  TLS / plain: {med[True][0] / med[False][0]:.2f}x wall rate, "
              f"{med[True][1] / med[False][1]:.2f}x server CPU per delivery")


if __name__ == "__main__":
    main()
