#!/bin/sh
# bench/grown.sh -- `make bench-grown`: does durable throughput over HTTP
# fall as the store grows? Builds a store of N orders (bench_writer
# --store-only: reserved then cancelled, by N/10 users), starts one spiked
# on it and one on an empty store, and runs the same wrk load against each
# in turn (durable reserves of fresh users, wrk -t1 -c64), so machine noise
# hits both alike. Prints each run, the medians and their ratio (grown /
# empty). Not a test: it never fails on speed.
#
#   ORDERS=10000000 ROUNDS=2 DURATION=30 CONNS=64 bench/grown.sh [DIR] [spiked flags...]
# DIR (default $TMPDIR) must be a real disk with room for the store (10M
# orders: about 2.7 GiB, and what the runs add). KEEP=1 keeps the store for
# a rerun.
set -eu
cd "$(dirname "$0")/.."
ORDERS=${ORDERS:-10000000}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-30}
CONNS=${CONNS:-64}
SPIKED=${SPIKED:-build/rel/spiked}
PORT_E=${PORT_E:-18486}
PORT_G=${PORT_G:-18487}
TMPDIR=${TMPDIR:-/tmp}
dir=${1:-$TMPDIR}
[ $# -gt 0 ] && shift
. bench/wrkout.sh
whole ORDERS ROUNDS DURATION CONNS PORT_E PORT_G
[ -d "$dir" ] && [ -w "$dir" ] || { echo "grown.sh: $dir is not a writable directory" >&2; exit 2; }
base=$dir/spike-bench-grown-$ORDERS
pe=""
pg=""
cleanup() {
  for p in $pe $pg; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$base/empty" "$base/out"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$base"
}
on_exit cleanup

for tool in wrk curl; do
  command -v $tool >/dev/null || { echo "bench-grown: $tool missing (make bench-deps)" >&2; exit 1; }
done
ms() { echo $(($(date +%s%N) / 1000000)); }
mkdir -p "$base/out"
if [ ! -f "$base/data/data.mdb" ]; then
  rm -rf "$base/data"
  t0=$(ms)
  build/rel/bench/micro/bench_writer --preload "$ORDERS" --store-only "$base/data" >/dev/null
  echo "built a store of $ORDERS orders in $(($(ms) - t0)) ms"
fi
size=$(stat -c %s "$base/data/data.mdb")
# the store's users: N/10, and one for each order a kept store took since
# (about 280 bytes an order); this invocation's fresh ones: up to 4 million.
# All within 3/4 of the tables.
users=$((ORDERS / 10 + 4000000))
more=$((size / 280 - ORDERS))
[ $more -gt 0 ] && users=$((users + more))
slots=1048576
while [ $((slots * 3 / 4)) -lt $users ]; do slots=$((slots * 2)); done
map=$((size * 2 + (1 << 30)))

start() { # VAR PORT DATA [flags]: the pid in $VAR at once, so that an interrupt stops it
  var=$1
  port=$2
  data=$3
  shift 3
  port_free "$port"
  "$SPIKED" --listen 127.0.0.1:"$port" --data "$data" --log-level warn --map-size $map \
    --max-users $slots --max-buyers $slots --max-reserved 16777216 "$@" 2>>"$base/out/spiked.log" &
  started=$!
  eval "$var=\$started"
  until curl -s -o /dev/null "http://127.0.0.1:$port/healthz/ready"; do
    kill -0 $started 2>/dev/null || { cat "$base/out/spiked.log" >&2; exit 1; }
    sleep 0.2
  done
  now=$(ms)
  # a new event each invocation, so a kept store (KEEP=1) takes the same load
  curl -sf -o /dev/null -XPOST "http://127.0.0.1:$port/api/v1/events" -H 'Content-Type: application/json' \
    -d "{\"id\":$event,\"name\":\"grown\",\"stock\":4000000000,\"price\":100,\"start_at\":$((now - 60000)),\"end_at\":$((now + 86400000))}"
}
event=$(($(date +%s) % 1000000000))
t0=$(ms)
start pg $PORT_G "$base/data" "$@"
echo "spiked open on a store of $ORDERS orders ($((size / 1048576)) MiB): $(($(ms) - t0)) ms"
rm -rf "$base/empty"
start pe $PORT_E "$base/empty" "$@"

commits() { # PORT: commits, orders committed, commit seconds so far
  curl -s "http://127.0.0.1:$1/metrics" | awk '
    /^spike_commit_batch_size_sum/ {s=$2} /^spike_commit_batch_size_count/ {c=$2}
    /^spike_commit_duration_seconds_sum/ {d=$2} END {print c + 0, s + 0, d + 0}'
}
run() { # PORT LABEL ROUND
  before=$(commits "$1")
  SPIKE_EVENT=$event SPIKE_USER_BASE=$(($3 * 1000000000 + $1 * 10000000)) wrk -t1 -c"$CONNS" \
    -d"${DURATION}s" --latency -s bench/reserve.lua "http://127.0.0.1:$1/" >"$base/out/$2.out" 2>&1 || :
  wrk_ok "$base/out/$2.out"
  bad=$(non2xx "$base/out/$2.out")
  after=$(commits "$1")
  printf '  %-6s %9s req/s (p99 %s)%s; %s\n' "$2" "$(rps "$base/out/$2.out")" "$(p99 "$base/out/$2.out")" \
    "${bad:+, $bad non-2xx}" "$(echo "$before $after" | awk '{c = $4 - $1; if (c > 0)
      printf "%d commits of %.1f orders, %.3f ms each", c, ($5 - $2) / c, 1000 * ($6 - $3) / c}')"
  rps "$base/out/$2.out" >>"$base/out/$2.rps"
}

echo "bench-grown: durable reserves, wrk -t1 -c$CONNS -d${DURATION}s, $ROUNDS alternating rounds"
r=1
while [ $r -le "$ROUNDS" ]; do
  echo "round $r:"
  run $PORT_E empty $r
  run $PORT_G grown $r
  r=$((r + 1))
done
me=$(median <"$base/out/empty.rps")
mg=$(median <"$base/out/grown.rps")
echo "median: empty store $me req/s; store of $ORDERS orders $mg req/s"
awk -v e="$me" -v g="$mg" 'BEGIN { printf "ratio grown/empty: %.3f\n", g / e }'
