#!/bin/sh
# bench/access-log.sh -- what --access-log costs: two spiked, alike but for
# the access log (one writes every request's line to a file, one writes
# none), under the same wrk load, in alternating rounds so machine noise hits
# both alike. Two routes: GET /api/v1/events/1 (a read: the HTTP path and
# the log line are all the work) and the reserve route with --ack memory
# (no fsync wait in the answer, so the log's share is not hidden behind the
# disk). Prints each round, the medians and their ratio. Not a test: it
# never fails on speed.
#
#   ROUNDS=5 DURATION=5 CONNS=64 bench/access-log.sh
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
SPIKED=${SPIKED:-build/rel/spiked}
PORT_A=${PORT_A:-18482}
PORT_B=${PORT_B:-18483}
TMPDIR=${TMPDIR:-/tmp}
. bench/wrkout.sh
whole ROUNDS DURATION CONNS
work=$(mktemp -d "$TMPDIR/spike-bench-alog.XXXXXX")
apid=""
bpid=""
cleanup() {
  [ -n "$apid" ] && kill -TERM "$apid" 2>/dev/null && wait "$apid" 2>/dev/null
  [ -n "$bpid" ] && kill -TERM "$bpid" 2>/dev/null && wait "$bpid" 2>/dev/null
  rm -rf "$work"
}
on_exit cleanup
for tool in wrk curl; do
  command -v $tool >/dev/null || { echo "access-log: $tool missing (make bench-deps)" >&2; exit 1; }
done

start() { # VAR PORT DATA [flags]: the pid in $VAR at once, so that an interrupt stops it
  var=$1
  port=$2
  dir=$3
  shift 3
  port_free "$port"
  "$SPIKED" --listen 127.0.0.1:$port --data "$dir" --log-level warn --ack memory \
    --max-buyers 16777216 --max-reserved 16777216 "$@" 2>"$dir.log" &
  started=$!
  eval "$var=\$started"
  i=0
  until curl -s -o /dev/null "http://127.0.0.1:$port/livez"; do
    kill -0 $started 2>/dev/null || { echo "access-log: spiked on $port exited:" >&2; cat "$dir.log" >&2; exit 1; }
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "access-log: spiked on $port did not start:" >&2; cat "$dir.log" >&2; exit 1; }
    sleep 0.1
  done
  curl -s -o /dev/null -X POST "http://127.0.0.1:$port/api/v1/events" -H 'Content-Type: application/json' \
    -d '{"id":1,"name":"bench","stock":4000000000,"price":999,"start_at":0,"end_at":253402300799999,"per_user_limit":1}'
}
start apid $PORT_A "$work/a"
start bpid $PORT_B "$work/b" --access-log "$work/access.log"

echo "access-log: wrk -t1 -c$CONNS -d${DURATION}s, $ROUNDS alternating rounds per route"
for route in read reserve; do
  : >"$work/a.rps"
  : >"$work/b.rps"
  r=1
  while [ $r -le "$ROUNDS" ]; do
    for side in a b; do
      port=$PORT_A
      [ $side = b ] && port=$PORT_B
      if [ $route = read ]; then
        wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/api/v1/events/1" >"$work/$side.out" 2>&1 || :
      else
        SPIKE_USER_BASE=$((r * 1000000000)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency \
          -s bench/reserve.lua "http://127.0.0.1:$port/" >"$work/$side.out" 2>&1 || :
      fi
      wrk_ok "$work/$side.out"
      rps "$work/$side.out" >>"$work/$side.rps"
    done
    printf '%-7s round %d: no log %9s req/s (p99 %s)   --access-log %9s req/s (p99 %s)\n' "$route" "$r" \
      "$(rps "$work/a.out")" "$(p99 "$work/a.out")" "$(rps "$work/b.out")" "$(p99 "$work/b.out")"
    r=$((r + 1))
  done
  ma=$(median <"$work/a.rps")
  mb=$(median <"$work/b.rps")
  awk -v a="$ma" -v b="$mb" -v r="$route" 'BEGIN {
    printf "%-7s median: no log %.0f req/s, --access-log %.0f req/s: ratio log/no log %.3f\n",
      r, a, b, b / a }'
done
lines=$(wc -l <"$work/access.log")
dropped=$(curl -s "http://127.0.0.1:$PORT_B/metrics" | sed -n 's/^spike_access_log_dropped_total //p')
echo "access log: $lines lines written, $dropped dropped, $(($(wc -c <"$work/access.log") / lines)) bytes a line"
