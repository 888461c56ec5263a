#!/usr/bin/env python3
"""One process per core (issue 12): 1 imserver-mio process, 2 processes + Redis
(`--workers 2`, i.e. two `--reuse-port` processes on one port), and imserver-tokio on
2 worker threads, interleaved, driven by imbench with `--pid` on every server process
(and Redis). Release builds from $CARGO_TARGET_DIR (default target/).

    cargo build --release --features variants
    python3 benches/cores.py run 7 cores.jsonl        # 7 rounds of every case and config
    python3 benches/cores.py table cores.jsonl        # medians, as in BENCHMARKS.md

Per round, per case, the configs in a rotating order, each with fresh processes:
    1       imserver-mio                                   (one process, no Redis)
    2r      redis-server; imserver-mio --workers 2 --redis ... (two processes, one port)
    tokio-2 imserver-tokio --workers 2                     (one process, two threads)
All with --host 127.0.0.1 --port 0 --idle-timeout 0 --max-conns 19500, under the hard
open-file limit. For 2r the run starts once both workers' links are up (their heartbeat
keys set, their node channels and the room channel subscribed). Each case waits until the
cores were nearly idle for 2 s (other people's compilers share the machine).
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

TARGET = os.environ.get("CARGO_TARGET_DIR", "target")
BIN = os.path.join(TARGET, "release")
FLAGS = ["--host", "127.0.0.1", "--port", "0", "--idle-timeout", "0", "--max-conns", "19500"]
RAISE = 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"'
CASES = {
    "fanout 1000x1x200": (["fanout", "--conns", "1000", "--senders", "1", "--msgs", "200"], 120),
    "fanout 5000x4x50": (["fanout", "--conns", "5000", "--senders", "4", "--msgs", "50"], 180),
    "private 100x2000": (["private", "--pairs", "100", "--msgs", "2000"], 120),
    # The same, 5x longer: CPU time comes in 10 ms ticks, and the short runs last 0.1-0.5 s.
    "fanout 1000x1x1000": (["fanout", "--conns", "1000", "--senders", "1", "--msgs", "1000"], 120),
    "fanout 5000x4x250": (["fanout", "--conns", "5000", "--senders", "4", "--msgs", "250"], 240),
    "private 100x10000": (["private", "--pairs", "100", "--msgs", "10000"], 120),
}
COMMON = ["--size", "64", "--window", "16"]
CONFIGS = ["1", "2r", "tokio-2"]
# Each case starts once the cores were less than this busy over 2 s (or after this wait).
QUIET_BUSY = 0.15
QUIET_WAIT_S = 1800


def limited(cmd):
    return ["sh", "-c", RAISE] + cmd


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port)] + list(args),
                         capture_output=True, text=True, timeout=5)
    return out.stdout.split()


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == str(pid):
                found.append(int(entry))
    return sorted(found)


def start(config):
    """The processes to stop afterwards, the address, the pids to watch."""
    procs = []
    if config == "2r":
        port = free_port()
        r = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(r)
        for _ in range(100):
            if redis(port, "PING") == ["PONG"]:
                break
            time.sleep(0.05)
        cmd = [os.path.join(BIN, "imserver-mio")] + FLAGS + [
            "--workers", "2", "--redis", f"redis://127.0.0.1:{port}", "--node-id", "b"]
    elif config == "1":
        cmd = [os.path.join(BIN, "imserver-mio")] + FLAGS
    else:
        cmd = [os.path.join(BIN, "imserver-tokio")] + FLAGS + ["--workers", "2"]
    env = dict(os.environ, RUST_LOG="warn")
    server = subprocess.Popen(limited(cmd), stdout=subprocess.PIPE, env=env, text=True)
    procs.insert(0, server)
    addr = server.stdout.readline().strip()
    pids = [server.pid]
    if config == "2r":
        pids = children(server.pid)
        nodes = ["b-1", "b-2"]
        for _ in range(200):
            alive = all(redis(port, "EXISTS", f"im:alive:{n}") == ["1"] for n in nodes)
            subs = all(redis(port, "PUBSUB", "NUMSUB", f"im:node:{n}")[-1:] == ["1"]
                       for n in nodes)
            room = redis(port, "PUBSUB", "NUMSUB", "im:room")[-1:] == ["2"]
            if alive and subs and room:
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the workers did not join the cluster")
        time.sleep(0.5)  # a heartbeat later: each has read the other's (empty) user list
        pids.append(procs[1].pid)
    return procs, addr, pids


def stop(procs):
    """SIGTERM to the server (the supervisor stops its workers), then Redis."""
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def busy():
    """The fraction of all cores busy over the next 2 s (from /proc/stat)."""
    def sample():
        v = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    (t0, i0), _, (t1, i1) = sample(), time.sleep(2), sample()
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def wait_quiet(limit=QUIET_BUSY, patience=QUIET_WAIT_S):
    """Waits (at most `patience` s) until other work leaves the cores nearly idle: the
    machine is shared, and a compiler on one of two cores halves any number."""
    deadline = time.time() + patience
    while True:
        b = busy()
        if b < limit or time.time() > deadline:
            return b
        time.sleep(10)


def run(rounds, out):
    with open(out, "a") as f:
        for rnd in range(rounds):
            for case, (args, timeout) in CASES.items():
                order = CONFIGS[rnd % 3:] + CONFIGS[:rnd % 3]
                idle_check = wait_quiet()  # once per case: its three configs alike
                for config in order:
                    procs, addr, pids = start(config)
                    cmd = [os.path.join(BIN, "imbench"), "--json", "--quiet", "--timeout",
                           str(timeout), "--addr", addr, "--pid", ",".join(map(str, pids))]
                    res = subprocess.run(limited(cmd + args + COMMON), capture_output=True,
                                         text=True, timeout=timeout + 30)
                    stop(procs)
                    line = res.stdout.strip().splitlines()[-1:] or ["{}"]
                    row = json.loads(line[0])
                    row.update(config=config, case=case, round=rnd,
                               load=os.getloadavg()[0], busy_before=round(idle_check, 3))
                    f.write(json.dumps(row) + "\n")
                    f.flush()
                    print(rnd, case, config, row.get("deliveries_per_s"),
                          row.get("server_traffic_cpu_ms_each", row.get("server_traffic_cpu_ms")),
                          "complete" if row.get("complete") else "FAILED", flush=True)
                    time.sleep(0.5)


def table(path):
    rows = [json.loads(l) for l in open(path)]
    med = statistics.median
    print("| case | config | runs | deliveries/s, M | p50 ms | p99 ms | server CPU ms "
          "(traffic, per process) | Redis CPU ms | M deliveries per server CPU-s (vs 1) "
          "| the same with Redis's CPU | imbench CPU ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in CASES:
        base = None
        for config in CONFIGS:
            rs = [r for r in rows if r["case"] == case and r["config"] == config
                  and r.get("complete")]
            failed = len([r for r in rows if r["case"] == case and r["config"] == config]) - len(rs)
            if not rs:
                continue
            if config == "2r":
                each = [r["server_traffic_cpu_ms_each"] for r in rs]
                workers = [e[0] + e[1] for e in each]
                redis_ms = [e[2] for e in each]
                split = f"{med(e[0] for e in each):.0f} + {med(e[1] for e in each):.0f}"
            else:
                workers = [r["server_traffic_cpu_ms"] for r in rs]
                redis_ms = [0 for _ in rs]
                split = f"{med(workers):.0f}"
            d = [r["deliveries"] for r in rs]
            per = med(di / 1e3 / w for di, w in zip(d, workers) if w)
            base = base or per
            per_r = med(di / 1e3 / (w + x) for di, w, x in zip(d, workers, redis_ms) if w + x)
            runs = f"{len(rs)}" + (f" ({failed} failed)" if failed else "")
            redis_cell = f"{med(redis_ms):.0f}" if config == "2r" else ""
            incl = f"{per_r:.2f}" if config == "2r" else ""
            print(f"| {case} | {config} | {runs} "
                  f"| {med(r['deliveries_per_s'] for r in rs) / 1e6:.2f} "
                  f"| {med(r['p50_us'] for r in rs) / 1e3:.1f} "
                  f"| {med(r['p99_us'] for r in rs) / 1e3:.1f} "
                  f"| {split} | {redis_cell} | {per:.2f} ({per / base:.2f}×) | {incl} "
                  f"| {med(r['imbench_cpu_ms'] for r in rs):.0f} |")
    loads = [r["load"] for r in rows]
    print(f"\n{len(rows)} runs; 1-minute load average after each run: "
          f"{min(loads):.2f}-{max(loads):.2f} (median {med(loads):.2f})")
    quiet = [r["busy_before"] for r in rows if "busy_before" in r]
    if quiet:
        print(f"cores busy in the 2 s before each case: {min(quiet):.0%}-{max(quiet):.0%}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["run"]:
        run(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1:2] == ["table"]:
        table(sys.argv[2])
    else:
        sys.exit(__doc__)
