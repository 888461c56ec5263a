#!/usr/bin/env python3
"""Two servers + Redis, two builds, interleaved: the cost of one cluster change.

    benches/cluster_bench.py RUNS OUT.jsonl NAME=DIR [NAME=DIR ...]

Each DIR holds a release `imserver-mio`; imbench comes from the first. Per round, for
each case (fanout, then private) every build runs once, in a rotating order: a fresh
redis-server (`--save '' --appendonly no`) on a free port of 127.0.0.1, two servers
(`--redis ... --node-id a|b`), and `imbench --addr A,B --pid A,B,REDIS CASE`. One JSON
line per run goes to OUT.jsonl (imbench's keys plus build, case, round); a table of
medians is printed at the end. Every process is local and killed at the end of its run;
every imbench run has --timeout 120.
"""
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

CASES = {
    "fanout": ["fanout", "--conns", "1000", "--senders", "1", "--msgs", "1000",
               "--size", "64", "--window", "16"],
    "private": ["private", "--pairs", "500", "--msgs", "1000", "--size", "64",
                "--window", "16"],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis(*args, port):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                         text=True, timeout=5)
    return out.stdout.strip()


def wait_ready(port, nodes, deadline=15.0):
    end = time.time() + deadline
    while time.time() < end:
        ok = all(redis("EXISTS", f"im:alive:{n}", port=port) == "1"
                 and redis("PUBSUB", "NUMSUB", f"im:node:{n}", port=port).split()[-1] == "1"
                 for n in nodes)
        if ok:
            return
        time.sleep(0.05)
    raise SystemExit(f"nodes {nodes} never got ready")


def start_server(binary, url, node):
    p = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", "--idle-timeout", "0",
                          "--redis", url, "--node-id", node],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    first = p.stdout.readline()  # the line address
    addr = first.split()[-1] if first else ""
    return p, addr


def one_run(build, bindir, imbench, case):
    port = free_port()
    rs = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = [rs]
    try:
        for _ in range(100):
            if redis("PING", port=port) == "PONG":
                break
            time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}"
        binary = os.path.join(bindir, "imserver-mio")
        (a, aa), (b, ba) = start_server(binary, url, "a"), start_server(binary, url, "b")
        procs += [a, b]
        wait_ready(port, ["a", "b"])
        out = subprocess.run([imbench, "--json", "--quiet", "--timeout", "120",
                              "--addr", f"{aa},{ba}", "--pid", f"{a.pid},{b.pid},{rs.pid}",
                              *CASES[case]], capture_output=True, text=True, timeout=200)
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "{}"
        r = json.loads(line)
        r.update(build=build, case=case)
        return r
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()


def main():
    runs, out_path, builds = int(sys.argv[1]), sys.argv[2], [a.split("=", 1) for a in sys.argv[3:]]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(20000, hard), hard))
    imbench = os.path.join(builds[0][1], "imbench")
    results = []
    with open(out_path, "a") as out:
        for rnd in range(runs):
            for case in CASES:
                order = builds[rnd % len(builds):] + builds[:rnd % len(builds)]
                for build, bindir in order:
                    r = one_run(build, bindir, imbench, case)
                    r["round"] = rnd
                    out.write(json.dumps(r) + "\n")
                    out.flush()
                    results.append(r)
                    print(case, build, rnd, r.get("deliveries_per_s"), r.get("complete"),
                          file=sys.stderr)
    print("| case | build | runs | complete | deliveries/s | p50 ms | p99 ms "
          "| server CPU ms (a + b) | Redis CPU ms | µs server CPU per delivery |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case in CASES:
        for build, _ in builds:
            rs = [r for r in results if r["case"] == case and r["build"] == build]
            med = lambda f: statistics.median(f(r) for r in rs)
            each = lambda r, i: (r.get("server_traffic_cpu_ms_each") or [0, 0, 0])[i]
            servers = med(lambda r: each(r, 0) + each(r, 1))
            print(f"| {case} | {build} | {len(rs)} | {sum(bool(r.get('complete')) for r in rs)} "
                  f"| {med(lambda r: r.get('deliveries_per_s', 0)):,.0f} "
                  f"| {med(lambda r: r.get('p50_us', 0)) / 1e3:.1f} "
                  f"| {med(lambda r: r.get('p99_us', 0)) / 1e3:.1f} "
                  f"| {med(lambda r: each(r, 0)):.0f} + {med(lambda r: each(r, 1)):.0f} "
                  f"| {med(lambda r: each(r, 2)):.0f} "
                  f"| {servers * 1e3 / med(lambda r: r.get('deliveries', 1)):.2f} |")


if __name__ == "__main__":
    main()
