#!/usr/bin/env python3
"""Faults for benches/soak.sh, for a bounded time, against one line-protocol address.

Three threads (Python 3 standard library only):

- flooder: one connection (named soak-flooder) writing whispers to soak-sink as fast as the
  socket takes them, reading and discarding whatever comes back; reconnects when the server
  kicks it (flood control) or closes it.
- sink, the never-reading client: a small receive buffer, named soak-sink, asks `who` once
  a second and never reads, until the server cuts it at --max-outbuf (seen as a failed
  send); then reconnects.
- resetter: a few times a second (Poisson, --reset-rate), opens a connection and resets it
  (SO_LINGER 0) at a random moment: at once, in the middle of a line, just after `who`
  (while the server writes the answer), or after reading for up to a second.

Every loop ends at the deadline; the counts go to --out as one JSON object.

    benches/soak_faults.py --addr 127.0.0.1:PORT --duration SECS --out FILE [--reset-rate R]
"""
import argparse
import json
import random
import select
import socket
import struct
import sys
import threading
import time

KICK_TEXT = "发送过快，已断开".encode()  # the server's flood kick (--lang zh)
LINGER_0 = struct.pack("ii", 1, 0)


def loopback(addr):
    host, _, port = addr.rpartition(":")
    if not host.startswith("127."):
        sys.exit("soak_faults: only 127.0.0.0/8 addresses")
    return host, int(port)


def left(deadline):
    return deadline - time.monotonic()


def flooder(addr, deadline, st):
    line = b"to|soak-sink|" + b"f" * 200 + b"\n"
    batch = line * 64
    while left(deadline) > 0:
        try:
            s = socket.create_connection(addr, timeout=5)
        except OSError:
            st["connect_errors"] += 1
            time.sleep(1)
            continue
        st["connects"] += 1
        s.setblocking(False)
        out = b"rename|soak-flooder\n"
        tail = b""
        closed = False
        while not closed and left(deadline) > 0:
            try:
                r, w, _ = select.select([s], [s] if left(deadline) > 0 else [], [], 0.5)
            except (OSError, ValueError):
                closed = True
                break
            if r:
                try:
                    data = s.recv(65536)
                    if not data:
                        closed = True
                    else:
                        st["bytes_read"] += len(data)
                        if KICK_TEXT in tail + data:
                            st["kick_notices"] += 1
                        tail = data[-32:]
                except BlockingIOError:
                    pass
                except OSError:
                    closed = True
            if w and not closed:
                try:
                    n = s.send(out or batch)
                    st["bytes_sent"] += n
                    out = out[n:] if out else batch[n:]
                except BlockingIOError:
                    pass
                except OSError:
                    closed = True
        if closed:
            st["closed_by_server"] += 1
        s.close()
        if left(deadline) > 0:
            time.sleep(0.5)
    st["lines_sent_approx"] = st["bytes_sent"] // len(line)


def sink(addr, deadline, st):
    while left(deadline) > 0:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        try:
            s.connect(addr)
            s.sendall(b"rename|soak-sink\n")
        except OSError:
            st["connect_errors"] += 1
            s.close()
            time.sleep(1)
            continue
        st["connects"] += 1
        since = time.monotonic()
        cut = False
        while left(deadline) > 0:
            time.sleep(1)
            try:
                s.send(b"who\n")
                st["who_sent"] += 1
            except socket.timeout:
                continue  # the server is not reading us: flood control or busy
            except OSError:
                cut = True
                break
            if time.monotonic() - since > 120:
                st["not_cut_in_120s"] += 1
                break
        if cut:
            st["cuts"] += 1
            st["cut_after_s"].append(round(time.monotonic() - since, 1))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
        s.close()
        if left(deadline) > 0:
            time.sleep(1)


def resetter(addr, deadline, st, rate, rng):
    kinds = ["at_once", "mid_line", "after_who", "after_read"]
    while left(deadline) > 0:
        time.sleep(min(rng.expovariate(rate), 2.0, max(left(deadline), 0)))
        if left(deadline) <= 0:
            break
        kind = rng.choice(kinds)
        try:
            s = socket.create_connection(addr, timeout=3)
        except OSError:
            st["connect_errors"] += 1
            continue
        try:
            if kind == "mid_line":
                s.send(b"half a li")
                time.sleep(rng.uniform(0, 0.2))
            elif kind == "after_who":
                s.send(b"who\n")
                time.sleep(rng.uniform(0, 0.05))
            elif kind == "after_read":
                s.settimeout(rng.uniform(0.01, 1.0))
                try:
                    while s.recv(4096):
                        pass
                except socket.timeout:
                    pass
        except OSError:
            st["io_errors"] += 1
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_0)
        s.close()
        st["resets"][kind] += 1
    st["resets_total"] = sum(st["resets"].values())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--addr", required=True)
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reset-rate", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    addr = loopback(a.addr)
    deadline = time.monotonic() + a.duration
    stats = {
        "flooder": dict(connects=0, connect_errors=0, bytes_sent=0, bytes_read=0,
                        kick_notices=0, closed_by_server=0),
        "sink": dict(connects=0, connect_errors=0, who_sent=0, cuts=0, not_cut_in_120s=0,
                     cut_after_s=[]),
        "resetter": dict(connect_errors=0, io_errors=0,
                         resets={"at_once": 0, "mid_line": 0, "after_who": 0, "after_read": 0}),
    }
    threads = [
        threading.Thread(target=flooder, args=(addr, deadline, stats["flooder"]), daemon=True),
        threading.Thread(target=sink, args=(addr, deadline, stats["sink"]), daemon=True),
        threading.Thread(target=resetter, args=(addr, deadline, stats["resetter"], a.reset_rate,
                                                random.Random(a.seed)), daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(left(deadline), 0) + 15)
    with open(a.out, "w") as f:
        json.dump(stats, f)
        f.write("\n")


if __name__ == "__main__":
    main()
