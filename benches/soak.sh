#!/usr/bin/env bash
# Soak and fault run (a documented command, not CI): USERS users against one release
# imserver-mio for DURATION seconds, with churn, broadcasts and whispers through imbench,
# plus a flooder, a never-reading client and random resets (benches/soak_faults.py).
#
#   benches/soak.sh [USERS [DURATION [OUTDIR]]]         defaults: 19000, 1800, target/soak
#   USERS=19000 DURATION=1800 OUT=target/soak benches/soak.sh      (the same, as variables)
#
# Build first: cargo build --release --bins (BIN_DIR, default target/release, or
# $CARGO_TARGET_DIR/release, names where the binaries are).
#
# What runs, all on 127.0.0.1:
#   - the server: imserver-mio --port 0 --idle-timeout 0 --max-conns 19500 --http-port 0, plus
#     --limit-loopback (so flood control applies to the loopback flooder) with per-address
#     caps raised past the run's users (all of them share one address) and a flood allowance
#     (--flood-burst 400 --flood-rate 200) that the bounded imbench runs never reach;
#   - IDLE_PROCS imbench idle processes holding most users for the whole run (the machine's
#     hard limit is 20,000 open files per process);
#   - once a minute: imbench fanout (FANOUT_USERS users, FANOUT_SENDERS senders × FANOUT_MSGS),
#     then imbench private (PRIVATE_PAIRS pairs × PRIVATE_MSGS); alongside, minute by minute,
#     imbench churn (CHURN_USERS users, CHURN_RATE joins/s for 45 s of each minute);
#   - benches/soak_faults.py for the whole duration;
#   - VmRSS of the server every 10 s, /metrics at the start of every minute.
# The users of all processes together are USERS (idle = USERS - the others - 3 for the faults).
# At the end OUTDIR/soak.md holds the per-minute table and the verdicts (benches/soak_report.py);
# every imbench JSON line is kept under OUTDIR/runs/. Every loop is bounded in count and time,
# every imbench has its own --timeout and an outer `timeout`, and everything started here is
# stopped on exit.
set -euo pipefail

USERS=${1:-${USERS:-19000}}
DURATION=${2:-${DURATION:-1800}}
OUT=${3:-${OUT:-target/soak}}
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}
IDLE_PROCS=${IDLE_PROCS:-2}
FANOUT_USERS=${FANOUT_USERS:-500}
FANOUT_SENDERS=${FANOUT_SENDERS:-4}
FANOUT_MSGS=${FANOUT_MSGS:-50}
PRIVATE_PAIRS=${PRIVATE_PAIRS:-100}
PRIVATE_MSGS=${PRIVATE_MSGS:-100}
CHURN_USERS=${CHURN_USERS:-200}
CHURN_RATE=${CHURN_RATE:-5}
RESET_RATE=${RESET_RATE:-3}
JOIN_WAIT=${JOIN_WAIT:-300}   # seconds the idle users may take to join
SERVER_LIMITS=${SERVER_LIMITS:---limit-loopback --max-conns-per-ip 20000 --conn-rate-per-ip 1000000 --flood-burst 400 --flood-rate 200}

here=$(cd "$(dirname "$0")" && pwd)
server_bin=$BIN_DIR/imserver-mio
imbench=$BIN_DIR/imbench
for b in "$server_bin" "$imbench"; do
  [ -x "$b" ] || { echo "soak: $b missing; build with cargo build --release --bins" >&2; exit 2; }
done
minutes=$((DURATION / 60))
[ "$minutes" -ge 1 ] || { echo "soak: DURATION must be at least 60 s" >&2; exit 2; }
others=$((FANOUT_USERS + 2 * PRIVATE_PAIRS + CHURN_USERS + 3))
idle=$((USERS - others))
[ "$idle" -ge "$IDLE_PROCS" ] || { echo "soak: USERS must exceed $others" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"

rm -rf "$OUT"
mkdir -p "$OUT/runs" "$OUT/metrics"
log() { echo "soak: $(date +%T) $*" >&2; }

pids=()
# Stops a process and everything below it, by pid (children first).
kill_tree() {
  local p=$1 c
  for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do kill_tree "$c"; done
  kill "$p" 2>/dev/null || true
}
cleanup() {
  local p
  for p in "${pids[@]}"; do kill_tree "$p"; done
  if [ -n "${server:-}" ] && kill -0 "$server" 2>/dev/null; then
    kill "$server" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the server ------------------------------------------------------------------------
server_cmd="imserver-mio --port 0 --idle-timeout 0 --max-conns 19500 --http-port 0 $SERVER_LIMITS"
# shellcheck disable=SC2086
"$server_bin" --port 0 --idle-timeout 0 --max-conns 19500 --http-port 0 $SERVER_LIMITS \
  >"$OUT/server.out" 2>"$OUT/server.err" &
server=$!
for _ in $(seq 100); do [ "$(wc -l <"$OUT/server.out")" -ge 2 ] && break; sleep 0.1; done
addr=$(sed -n 1p "$OUT/server.out")
http=$(sed -n 2p "$OUT/server.out")
[ -n "$addr" ] && [ -n "$http" ] || { echo "soak: the server did not start" >&2; cat "$OUT/server.err" >&2; exit 1; }
log "server $server on $addr, HTTP $http; $USERS users ($idle idle), $DURATION s"

ib() { "$imbench" --json --quiet --pid "$server" --addr "$addr" "$@"; }
metric() { curl -s --max-time 5 "http://$http/metrics" 2>/dev/null | awk -v n="$1" '$1 == n { print $2 }'; }

# RSS sampler: "epoch_seconds rss_kb" every 10 s while the server lives (bounded by count).
(
  for _ in $(seq $((DURATION / 10 + JOIN_WAIT / 10 + 60))); do
    kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server/status" 2>/dev/null) || break
    [ -n "$kb" ] || break
    echo "$(date +%s) $kb"
    sleep 10
  done
) >"$OUT/rss.log" &
pids+=($!)

# --- idle users, held for the whole run -------------------------------------------------
hold=$((DURATION + 45))
for ((k = 0; k < IDLE_PROCS; k++)); do
  n=$((idle / IDLE_PROCS + (k < idle % IDLE_PROCS ? 1 : 0)))
  (
    set +e
    timeout -k 5 $((JOIN_WAIT + hold + 60)) "$imbench" --json --quiet --pid "$server" --addr "$addr" \
      --timeout $((JOIN_WAIT + hold + 30)) idle --conns "$n" --hold "$hold" >"$OUT/idle-$k.json" 2>"$OUT/idle-$k.err"
    echo $? >"$OUT/idle-$k.rc"
  ) &
  pids+=($!)
done
joined=0
for _ in $(seq "$JOIN_WAIT"); do
  joined=$(metric imserver_users); joined=${joined:-0}
  [ "${joined%.*}" -ge "$idle" ] && break
  sleep 1
done
[ "${joined%.*}" -ge "$idle" ] || { echo "soak: only $joined of $idle idle users joined in $JOIN_WAIT s" >&2; exit 1; }
t0=$(date +%s)
echo "$t0" >"$OUT/t0"
log "$idle idle users joined; $minutes minutes of load and faults start"

cat >"$OUT/params.json" <<EOF
{"users": $USERS, "duration": $((minutes * 60)), "minutes": $minutes, "idle": $idle, "idle_procs": $IDLE_PROCS,
 "fanout_users": $FANOUT_USERS, "fanout_senders": $FANOUT_SENDERS, "fanout_msgs": $FANOUT_MSGS,
 "private_pairs": $PRIVATE_PAIRS, "private_msgs": $PRIVATE_MSGS, "churn_users": $CHURN_USERS,
 "churn_rate": $CHURN_RATE, "reset_rate": $RESET_RATE, "started": "$(date -u +%FT%TZ)",
 "server_cmd": "$server_cmd"}
EOF

sleep_until() { local s=$(($1 - $(date +%s))); [ "$s" -le 0 ] || sleep "$s"; }

# --- faults -----------------------------------------------------------------------------
python3 "$here/soak_faults.py" --addr "$addr" --duration $((minutes * 60)) --out "$OUT/faults.json" \
  --reset-rate "$RESET_RATE" 2>"$OUT/faults.err" &
pids+=($!)

# --- /metrics at the start of each minute -------------------------------------------------
(
  for ((m = 0; m <= minutes; m++)); do
    sleep_until $((t0 + 60 * m))
    curl -s --max-time 5 "http://$http/metrics" >"$OUT/metrics/$m.txt" 2>/dev/null || rm -f "$OUT/metrics/$m.txt"
  done
) &
pids+=($!)

# --- once a minute: fanout, then private ---------------------------------------------------
(
  set +e
  for ((m = 0; m < minutes; m++)); do
    sleep_until $((t0 + 60 * m + 1))
    timeout -k 5 40 "$imbench" --json --quiet --pid "$server" --addr "$addr" --timeout 32 \
      fanout --conns "$FANOUT_USERS" --senders "$FANOUT_SENDERS" --msgs "$FANOUT_MSGS" --size 64 --window 16 \
      >"$OUT/runs/fanout-$m.json" 2>"$OUT/runs/fanout-$m.err"
    echo $? >"$OUT/runs/fanout-$m.rc"
    left=$((t0 + 60 * m + 58 - $(date +%s)))
    [ "$left" -gt 5 ] || left=5
    timeout -k 3 "$left" "$imbench" --json --quiet --pid "$server" --addr "$addr" --timeout $((left - 3)) \
      private --pairs "$PRIVATE_PAIRS" --msgs "$PRIVATE_MSGS" --size 64 --window 16 \
      >"$OUT/runs/private-$m.json" 2>"$OUT/runs/private-$m.err"
    echo $? >"$OUT/runs/private-$m.rc"
    log "minute $((m + 1)): fanout exit $(cat "$OUT/runs/fanout-$m.rc"), private exit $(cat "$OUT/runs/private-$m.rc")"
  done
) &
load=$!
pids+=($load)

# --- churn, minute by minute ---------------------------------------------------------------
(
  set +e
  for ((m = 0; m < minutes; m++)); do
    sleep_until $((t0 + 60 * m + 1))
    timeout -k 3 57 "$imbench" --json --quiet --pid "$server" --addr "$addr" --timeout 54 \
      churn --conns "$CHURN_USERS" --rate "$CHURN_RATE" --duration 45 \
      >"$OUT/runs/churn-$m.json" 2>"$OUT/runs/churn-$m.err"
    echo $? >"$OUT/runs/churn-$m.rc"
  done
) &
churn=$!
pids+=($churn)

wait "$load" "$churn" || true
sleep_until $((t0 + 60 * minutes + 2))
for kind in fanout private churn; do
  for ((m = 0; m < minutes; m++)); do cat "$OUT/runs/$kind-$m.json" 2>/dev/null; done >"$OUT/$kind.jsonl"
done

# The idle users leave at the end of their hold; wait for their reports (bounded).
for _ in $(seq 120); do
  done_all=1
  for ((k = 0; k < IDLE_PROCS; k++)); do [ -s "$OUT/idle-$k.rc" ] || done_all=0; done
  [ "$done_all" = 1 ] && break
  sleep 1
done
for _ in $(seq 30); do [ -s "$OUT/faults.json" ] && break; sleep 1; done
if kill -0 "$server" 2>/dev/null; then
  echo "alive at the end, stopped by the script; stderr: $(grep -c . "$OUT/server.err") lines, $(grep -ciE 'panic|error' "$OUT/server.err" || true) mentioning panic/error" >"$OUT/server.rc"
else
  rc=0; wait "$server" || rc=$?
  echo "EXITED DURING THE RUN with status $rc" >"$OUT/server.rc"
fi
python3 "$here/soak_report.py" "$OUT" | tee "$OUT/soak.md"
