#!/bin/sh
# bench/scaleout.sh -- `make bench-scaleout`: durable reserves through the
# partition router (deploy/: nginx, hash by event id) against 1, 2 and 3
# spiked nodes, each run with its references under the same wrk load:
# nginx answering a fixed body itself (the router's /healthz/live, so the
# ceiling of this nginx on this machine) and one spiked without nginx.
# Requests spread over EVENTS events in turn (bench/reserve.lua), a fresh
# user each. On one machine the nodes, nginx and wrk share its cores, so
# this measures the router's cost and the placement, not a fleet. Not a
# test: it never fails on speed. spikebench (when built) then measures the
# same route: its closed-loop peak spread over the events (--events), and
# its open-loop p99 at half of that peak.
#
#   NODES="1 2 3" EVENTS=12 DURATION=5 CONNS=64 NGINX_WORKERS=1 bench/scaleout.sh
#
# On a many-core machine, keep the load off the servers' cores:
#   SERVER_CPUS=0-11 LOAD_CPUS=12-15 NODE_THREADS=2 NGINX_WORKERS=6 WRK_THREADS=4 \
#     CONNS=512 UPSTREAM_KEEPALIVE=256 bench/scaleout.sh
set -eu
cd "$(dirname "$0")/.."
NODES=${NODES:-1 2 3}
EVENTS=${EVENTS:-12}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-1}
SPIKED=${SPIKED:-build/rel/spiked}
SPIKEBENCH=${SPIKEBENCH:-build/rel/spikebench}
NGINX_WORKERS=${NGINX_WORKERS:-1}
NODE_THREADS=${NODE_THREADS:-1}
SERVER_CPUS=${SERVER_CPUS:-}
LOAD_CPUS=${LOAD_CPUS:-}
pin_srv=""
pin_load=""
[ -n "$SERVER_CPUS" ] && pin_srv="taskset -c $SERVER_CPUS"
[ -n "$LOAD_CPUS" ] && pin_load="taskset -c $LOAD_CPUS"
TMPDIR=${TMPDIR:-/tmp}
. bench/wrkout.sh
whole EVENTS DURATION CONNS WRK_THREADS NGINX_WORKERS NODE_THREADS
for NODE in $NODES; do whole NODE; done # each of NODES
work=$(mktemp -d "$TMPDIR/spike-bench-scaleout.XXXXXX")
cluster=""
cleanup() {
  [ -n "$cluster" ] && deploy/spike-cluster.sh stop "$cluster" >/dev/null 2>&1
  rm -rf "$work"
}
on_exit cleanup
for tool in wrk nginx curl; do
  command -v $tool >/dev/null || { echo "bench-scaleout: $tool missing (make bench-deps)" >&2; exit 1; }
done

reserves() { # reserves URL BASE OUT: wrk's reserve load on URL
  SPIKE_EVENTS=$EVENTS SPIKE_USER_BASE=$2 $pin_load wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" \
    --latency -s bench/reserve.lua "$1/" >"$3" 2>&1
}
line() { printf '%-34s %10s req/s  p99 %-9s %s\n' "$1" "$(rps "$2")" "$(p99 "$2")" \
  "$(b=$(non2xx "$2"); [ -n "$b" ] && echo "($b non-2xx)")"; }
# spikebench's summary: the answers per second (closed loop: "= N req/s";
# open loop: "answered N/s"), the p99 (open loop: corrected), the statuses
sb_rps() { awk '$1 == "rate" {for (i = 1; i <= NF; i++) {
  if ($i == "req/s") {print $(i - 1); exit} if ($i == "answered") {sub("/s.*", "", $(i + 1)); print $(i + 1); exit}}}' "$1"; }
sb_p99() { awk '$1 == "latency" || $1 == "corrected" {for (i = 1; i <= NF; i++) if ($i == "p99") {print $(i + 1) "ms"; exit}}' "$1"; }
sb_line() { printf '%-34s %10s req/s  p99 %-9s %s\n' "$1" "$(sb_rps "$2")" "$(sb_p99 "$2")" \
  "$(awk '$1 == "status" || $1 == "verdict"' "$2" | tr -s ' ' | tr '\n' ' ')"; }
sb_run() { # sb_run URL BASE OUT --max | --rate R
  $pin_load "$SPIKEBENCH" --url "$1" --event 1 --events "$EVENTS" --threads "$WRK_THREADS" \
    --connections "$CONNS" --duration "$DURATION" --user-base "$2" --quiet "$4" ${5:+"$5"} >"$3" 2>&1 || true
}

echo "bench-scaleout: $(nproc) cores, wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s, reserves over" \
  "$EVENTS events (ack=durable), nginx $NGINX_WORKERS worker(s), nodes of $NODE_THREADS thread(s)" \
  "${SERVER_CPUS:+; servers on CPUs $SERVER_CPUS}${LOAD_CPUS:+, load on CPUs $LOAD_CPUS}"
for n in $NODES; do
  cluster=$work/c$n
  U=$(SPIKED=$SPIKED NGINX_WORKERS=$NGINX_WORKERS \
    SPIKED_ARGS="--log-level warn --threads $NODE_THREADS --max-buyers 16777216 --max-reserved 16777216" \
    $pin_srv deploy/spike-cluster.sh start "$cluster" "$n")
  e=1
  while [ $e -le "$EVENTS" ]; do
    curl -s -o /dev/null -X PUT "$U/api/v1/events/$e" -H 'Content-Type: application/json' \
      -d '{"name":"bench","stock":4000000000,"price":999,"start_at":0,"end_at":253402300799999}'
    e=$((e + 1))
  done
  spread=""
  k=0
  while [ $k -lt "$n" ]; do
    spread="$spread $(curl -s "$U/nodes/$k/api/v1/events" | grep -o '"id":"[0-9]*"' | wc -l)"
    k=$((k + 1))
  done
  $pin_load wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency "$U/healthz/live" >"$work/ref.out" 2>&1
  reserves "$U" 1000000000 "$work/r.out"
  [ "$n" = 1 ] && reserves "$(deploy/spike-cluster.sh url "$cluster" 0)" 2000000000 "$work/d.out"
  echo "$n node(s), events per node:$spread"
  line "  nginx fixed body (reference)" "$work/ref.out"
  line "  reserve through nginx" "$work/r.out"
  [ "$n" = 1 ] && line "  reserve, spiked direct" "$work/d.out"
  if [ -x "$SPIKEBENCH" ]; then
    sb_run "$U" 3000000000 "$work/sb.out" --max
    peak=$(sb_rps "$work/sb.out")
    sb_line "  spikebench --max through nginx" "$work/sb.out"
    half=$(awk -v p="${peak:-0}" 'BEGIN { printf "%d", p / 2 }')
    if [ "$half" -gt 0 ]; then
      sb_run "$U" 4000000000 "$work/open.out" --rate "$half"
      sb_line "  spikebench open loop at $half/s" "$work/open.out"
    fi
  fi
  deploy/spike-cluster.sh stop "$cluster" >/dev/null
  cluster=""
done
