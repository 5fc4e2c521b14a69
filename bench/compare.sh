#!/bin/sh
# bench/compare.sh -- `make bench-compare`: spikebench beside wrk, h2load and
# hey, the same runs against the same servers on this machine, and what each
# tool reports. Not a test: it never fails on speed.
#
#   ROUNDS=3 DURATION=5 CONNS=64 bench/compare.sh
#
# Targets, each tool closed loop with CONNS keep-alive connections, one thread
# (hey: GOMAXPROCS=1), DURATION seconds, ROUNDS rounds with the tools
# alternated so noise hits all alike:
#   nginx    GET / -> 200 with a fixed 254-byte body (one worker, access log off)
#   read     spiked GET /api/v1/events/1
#   reserve  spiked POST /api/v1/events/1/orders, durable: wrk (bench/reserve.lua)
#            and spikebench with a fresh user per request; h2load and hey can
#            only send one fixed body, so one user, whose later tries are 409s
# and then the stalling server (tests/stall_server, 200 ms frozen every second,
# 16 connections): each closed loop, and spikebench open loop at STALL_RATE.
# Prints one markdown row per run and, per target and tool, the medians.
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
STALL_RATE=${STALL_RATE:-2000}
SPIKED=${SPIKED:-build/rel/spiked}
SB=${SPIKEBENCH:-build/rel/spikebench}
STALL=${STALL_SERVER:-build/rel/tests/stall_server}
PORT_S=${PORT_S:-18490}
PORT_N=${PORT_N:-18491}
PORT_T=${PORT_T:-18492}
TMPDIR=${TMPDIR:-/tmp}
. bench/wrkout.sh
whole ROUNDS DURATION CONNS STALL_RATE
work=$(mktemp -d "$TMPDIR/spike-compare.XXXXXX")
tpid=""
. bench/servers.sh
cleanup() {
  bench_stop
  if [ -n "$tpid" ]; then kill -TERM "$tpid" 2>/dev/null && wait "$tpid" 2>/dev/null || true; fi
  tpid=""
  rm -rf "$work"
}
on_exit cleanup

for tool in wrk h2load hey nginx curl python3; do
  command -v "$tool" >/dev/null || { echo "bench-compare: $tool missing (make bench-deps)" >&2; exit 1; }
done
for bin in "$SB" "$SPIKED" "$STALL"; do
  [ -x "$bin" ] || { echo "bench-compare: $bin missing (make bench-compare builds it)" >&2; exit 1; }
done

bench_spiked $PORT_S
bench_nginx $PORT_N $PORT_S
printf '{"user_id":"42"}' >"$work/body.json"

# ---- one run of one tool: prints "rps p50 p90 p99 max statuses" (ms) ----------

# nearest-rank percentiles of column 1 (ms), one value a line
pcts() {
  sort -n | awk '{v[NR] = $1} END {
    if (NR == 0) { print "- - - -"; exit }
    n = split("50 90 99", q, " ")
    for (i = 1; i <= n; i++) { r = int(q[i] / 100 * NR + 0.5); if (r < 1) r = 1; printf "%.3f ", v[r] }
    printf "%.3f\n", v[NR] }'
}

# wrk's "1.23ms" / "456.00us" / "1.02s" in ms
wrk_ms() {
  awk -v x="$1" 'BEGIN {
    if (x ~ /us$/) { sub(/us$/, "", x); printf "%.3f", x / 1000 }
    else if (x ~ /ms$/) { sub(/ms$/, "", x); printf "%.3f", x }
    else if (x ~ /s$/) { sub(/s$/, "", x); printf "%.3f", x * 1000 }
    else printf "-" }'
}

run_wrk() { # url [lua]
  if [ -n "${2:-}" ]; then
    SPIKE_USER_BASE=$USER_BASE wrk -t1 -c"$C" -d"${DURATION}s" --latency -s "$2" "$1" >"$work/out" 2>&1
  else
    wrk -t1 -c"$C" -d"${DURATION}s" --latency "$1" >"$work/out" 2>&1
  fi
  rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$work/out")
  p50=$(wrk_ms "$(awk '$1 == "50%" {print $2}' "$work/out")")
  p90=$(wrk_ms "$(awk '$1 == "90%" {print $2}' "$work/out")")
  p99=$(wrk_ms "$(awk '$1 == "99%" {print $2}' "$work/out")")
  max=$(wrk_ms "$(awk '$1 == "Latency" {print $4; exit}' "$work/out")")
  bad=$(non2xx "$work/out")
  echo "$rps $p50 $p90 $p99 $max non-2xx:${bad:-0}"
}

run_h2load() { # url [body]
  rm -f "$work/h2.log"
  if [ -n "${2:-}" ]; then
    h2load --h1 -t1 -c"$C" -D "$DURATION" -d "$2" -H 'Content-Type: application/json' \
      --log-file="$work/h2.log" "$1" >"$work/out" 2>&1
  else
    h2load --h1 -t1 -c"$C" -D "$DURATION" --log-file="$work/h2.log" "$1" >"$work/out" 2>&1
  fi
  rps=$(sed -n 's/^finished in [0-9.]*s, \([0-9.]*\) req\/s.*/\1/p' "$work/out")
  # the log: start time, status, request time in microseconds
  set -- $(awk '{print $3 / 1000}' "$work/h2.log" | pcts)
  codes=$(sed -n 's/^status codes: \(.*\)$/\1/p' "$work/out" |
    awk -F', ' '{for (i = 1; i <= NF; i++) {split($i, a, " "); if (a[1] > 0) printf "%s%s:%s", (n++ ? "," : ""), a[2], a[1]}}')
  echo "$rps $1 $2 $3 $4 $codes"
}

run_hey() { # url [body]
  if [ -n "${2:-}" ]; then
    GOMAXPROCS=1 hey -c "$C" -z "${DURATION}s" -m POST -T application/json -D "$2" "$1" >"$work/out" 2>&1
  else
    GOMAXPROCS=1 hey -c "$C" -z "${DURATION}s" "$1" >"$work/out" 2>&1
  fi
  rps=$(awk '$1 == "Requests/sec:" {print $2}' "$work/out")
  pc() { awk -v p="$1%" '$1 == p && $2 == "in" {printf "%.3f", $3 * 1000}' "$work/out"; }
  max=$(awk '$1 == "Slowest:" {printf "%.3f", $2 * 1000}' "$work/out")
  codes=$(awk '/^Status code distribution:/ {on = 1; next} on && /\[/ {gsub(/[][]/, ""); printf "%s:%s,", $1, $2} on && !/\[/ {on = 0}' "$work/out")
  echo "$rps $(pc 50) $(pc 90) $(pc 99) $max ${codes%,}"
}

run_sb() { # url scenario [rate]
  if [ -n "${3:-}" ]; then mode="--rate $3"; else mode="--max"; fi
  # shellcheck disable=SC2086
  "$SB" --url "$1" --scenario "$2" $mode --connections "$C" --duration "$DURATION" \
    --user-base "$USER_BASE" --quiet --json "$work/sb.json" >"$work/out" 2>&1 || true
  python3 - "$work/sb.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_ms"]
codes = ",".join("%s:%s" % kv for kv in d["status"].items())
print("%.2f %.3f %.3f %.3f %.3f %s verdict:%s" % (d["rps"], l["p50"], l["p90"], l["p99"], l["max"], codes, d["verdict"]["exit"]))
PY
}

echo "bench-compare: $ROUNDS rounds of ${DURATION}s, $CONNS connections, one thread per tool; $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| target | round | tool | req/s | p50 ms | p90 ms | p99 ms | max ms | answers |"
echo "|---|---|---|---|---|---|---|---|---|"
: >"$work/all"
C=$CONNS
r=1
while [ "$r" -le "$ROUNDS" ]; do
  for target in nginx read reserve; do
    case $target in
      nginx) url="http://127.0.0.1:$PORT_N/" ;;
      read) url="http://127.0.0.1:$PORT_S/api/v1/events/1" ;;
      reserve) url="http://127.0.0.1:$PORT_S/api/v1/events/1/orders" ;;
    esac
    for tool in wrk h2load hey spikebench; do
      USER_BASE=$(( (r * 10 + $(echo "wrk h2load hey spikebench" | tr ' ' '\n' | grep -n "^$tool$" | cut -d: -f1)) * 100000000 ))
      case $target/$tool in
        reserve/wrk) line=$(run_wrk "http://127.0.0.1:$PORT_S/" bench/reserve.lua) ;;
        reserve/h2load) line=$(run_h2load "$url" "$work/body.json") ;;
        reserve/hey) line=$(run_hey "$url" "$work/body.json") ;;
        reserve/spikebench) line=$(run_sb "http://127.0.0.1:$PORT_S" reserve) ;;
        */wrk) line=$(run_wrk "$url") ;;
        */h2load) line=$(run_h2load "$url") ;;
        */hey) line=$(run_hey "$url") ;;
        */spikebench) line=$(run_sb "$url" get) ;;
      esac
      set -- $line
      echo "| $target | $r | $tool | $1 | $2 | $3 | $4 | $5 | $6 ${7:-} |"
      echo "$target $tool $1 $2 $3 $4 $5" >>"$work/all"
    done
  done
  r=$((r + 1))
done

port_free "$PORT_T"
"$STALL" --port "$PORT_T" --freeze-ms 200 --period-ms 1000 >"$work/stall.out" 2>&1 &
tpid=$!
wait_port $PORT_T "" "$tpid" "$work/stall.out"
C=16
USER_BASE=1
url="http://127.0.0.1:$PORT_T/"
for tool in wrk h2load hey spikebench spikebench-open; do
  case $tool in
    wrk) line=$(run_wrk "$url") ;;
    h2load) line=$(run_h2load "$url") ;;
    hey) line=$(run_hey "$url") ;;
    spikebench) line=$(run_sb "$url" get) ;;
    spikebench-open) line=$(run_sb "$url" get "$STALL_RATE") ;;
  esac
  set -- $line
  echo "| stall | 1 | $tool | $1 | $2 | $3 | $4 | $5 | $6 ${7:-} |"
done

echo
echo "medians over the rounds (req/s, p50, p90, p99, max):"
for target in nginx read reserve; do
  for tool in wrk h2load hey spikebench; do
    med=""
    for col in 3 4 5 6 7; do
      m=$(awk -v t="$target" -v o="$tool" -v c="$col" '$1 == t && $2 == o {print $c}' "$work/all" |
        sort -n | awk '{a[NR] = $1} END {if (NR) print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
      med="$med $m"
    done
    echo "  $target $tool:$med"
  done
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
