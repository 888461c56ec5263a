#!/usr/bin/env bash
# The server's memory through a join storm and a mass departure: N users join
# (`imbench idle`), hold, and leave at once when imbench exits. VmRSS of the server is
# sampled every 10 ms throughout; prints the peak while joining and the peak while leaving.
#
#   benches/join_leave_rss.sh [N] [SERVER_BINARY]     (defaults: 10000, target/release/imserver-mio)
#
# Build first: cargo build --release --bins. Bounded: imbench has its own timeout, the
# sampler stops with the server, and the server is killed at the end.
set -euo pipefail
n=${1:-10000}
server_bin=${2:-target/release/imserver-mio}
imbench=${IMBENCH:-target/release/imbench}
ulimit -n "$(ulimit -Hn)"

out=$(mktemp)
"$server_bin" --port 0 --idle-timeout 0 --max-conns 19500 >"$out" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true; cp "$out.rss" /tmp/last.rss; rm -f "$out" "$out.rss"' EXIT
for _ in $(seq 50); do [ -s "$out" ] && break; sleep 0.1; done
addr=$(head -1 "$out")

ms() { echo $(($(date +%s%N) / 1000000)); }
# Sampler: "milliseconds rss_kb" lines until the server is gone.
(
  while kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$server/status" 2>/dev/null); do
    echo "$(ms) $kb"
    sleep 0.01
  done
) >"$out.rss" &
sampler=$!

sleep 0.5
t_join=$(ms)
report=$("$imbench" --json --quiet --addr "$addr" --timeout 300 idle --conns "$n" --hold 2)
t_left=$(ms)
sleep 5
kill "$sampler" 2>/dev/null || true

join_s=$(echo "$report" | sed -n 's/.*"join_s":\([0-9.]*\).*/\1/p'); echo "$report" >&2
t_joined=$(awk -v a="$t_join" -v s="$join_s" 'BEGIN { printf "%.0f", a + s * 1000 }')
awk -v a="$t_join" -v b="$t_joined" -v c="$t_left" -v n="$n" '
  $1 >= a && $1 <= b && $2 > join { join = $2 }
  $1 > b && $1 < c && (hold == 0 || $2 < hold) { hold = $2 }
  $1 >= c && $2 > leave { leave = $2 }
  END {
    printf "users %d: peak RSS while joining %.1f MB, settled while holding %.1f MB, peak while leaving %.1f MB (leave/join %.2f)\n",
      n, join / 1024, hold / 1024, leave / 1024, (join > 0 ? leave / join : 0)
  }' "$out.rss"
