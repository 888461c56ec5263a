#!/usr/bin/env bash
# Sends per delivery: one fresh server, one imbench run, and `perf stat` counting the
# server's write calls (writev, sendto, write) in 1 ms intervals. The traffic phase starts
# at the first interval in which the server reads client data after its last accept (a
# traffic run joins everyone first, then sends), so join notices are not counted. Prints
# one JSON line: the label, imbench's exit code, the write calls of the join and of the
# traffic phase, and imbench's JSON report (deliveries: `expected_deliveries`).
#
#   benches/sends.sh LABEL SERVER_BINARY IMBENCH_MODE_ARGS...
#   SERVER_FLAGS='--coalesce-us 0' benches/sends.sh mio-c0 target/release/imserver-mio \
#       fanout --conns 5000 --senders 4 --msgs 500 --size 64 --window 16
#
# With `--workers N` among SERVER_FLAGS (and a running Redis in its `--redis`), the calls of
# every worker are counted together.
#
# Needs perf with the syscalls tracepoints (`perf stat -e syscalls:sys_enter_writev true`)
# and a release build (IMBENCH, default target/release/imbench). Bounded: imbench has its
# own timeout, perf and the server are stopped at the end.
set -uo pipefail
label=$1; server_bin=$2; shift 2
imbench=${IMBENCH:-target/release/imbench}
ulimit -n "$(ulimit -Hn)"
out=$(mktemp)
# shellcheck disable=SC2086 # SERVER_FLAGS is a list of flags
"$server_bin" --host 127.0.0.1 --port 0 --idle-timeout 0 --max-conns 19500 ${SERVER_FLAGS:-} >"$out" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$out" "$out.perf"' EXIT
for _ in $(seq 50); do [ -s "$out" ] && break; sleep 0.1; done
addr=$(head -1 "$out")
# The workers, under --workers N; else the server itself.
pids=$(pgrep -P $server | paste -sd, -)
pids=${pids:-$server}
events=syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_write
events=$events,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read,syscalls:sys_enter_accept4
perf stat -I 1 -x, -e "$events" -p "$pids" -o "$out.perf" &
perf=$!
sleep 0.3
report=$("$imbench" --json --quiet --pid "$pids" --addr "$addr" --timeout 300 "$@")
rc=$?
kill -INT $perf; wait $perf 2>/dev/null
python3 - "$out.perf" "$label" "$rc" "$report" <<'PY'
import collections, json, sys
path, label, rc, report = sys.argv[1:5]
intervals = collections.OrderedDict()
for line in open(path):
    f = line.strip().split(',')
    if len(f) < 4 or line.startswith('#'):
        continue
    try:
        t = float(f[0])
    except ValueError:
        continue
    n = int(f[1]) if f[1].isdigit() else 0
    intervals.setdefault(t, collections.Counter())[f[3].rsplit('sys_enter_', 1)[-1]] += n
times = list(intervals)
last_accept = max((i for i, t in enumerate(times) if intervals[t]['accept4']), default=-1)
start = next((i for i in range(last_accept + 1, len(times))
              if intervals[times[i]]['recvfrom'] + intervals[times[i]]['read']), len(times))
sends = lambda c: c['writev'] + c['sendto'] + c['write']
print(json.dumps({"label": label, "rc": int(rc),
                  "join_sends": sum(sends(intervals[t]) for t in times[:start]),
                  "traffic_sends": sum(sends(intervals[t]) for t in times[start:]),
                  "bench": json.loads(report) if report.strip() else None}))
PY
sleep 0.5
