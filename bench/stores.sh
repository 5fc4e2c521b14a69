#!/bin/sh
# bench/stores.sh -- `make bench-stores`: what several stores could give.
# N spiked processes, each with its own store and writer, on the same cores
# and disk, share the same wrk load (CONNS connections split evenly, a wrk of
# its own for each), against nginx answering a fixed body under the whole
# load, in alternating rounds. Nothing joins the N processes: no shared stock,
# no per-store event counters, no merged feed. So the sum is the most a
# partitioned store (docs/design.md, "Why one store") could make of these
# cores and this disk, the bound to weigh building one against; a real one
# would pay for what joins them. Not a test: it never fails on speed.
#
#   STORES="1 2" ROUNDS=3 DURATION=5 CONNS=64 bench/stores.sh [spiked flags...]
#
# Every N runs the same threads in all: THREADS loop threads (default the
# largest N), split evenly over the N stores (--threads THREADS/N each), and
# WRK_THREADS (the same default) split over their N wrks, each with CONNS/N
# connections; so each N of STORES must divide both (a run that gave two
# stores twice the threads of one would measure the threads, not the
# stores). nginx runs NGINX_WORKERS (default THREADS) workers under wrk -t
# WRK_THREADS -c CONNS. SERVER_CPUS and LOAD_CPUS (taskset -c lists) pin the
# servers and the wrks apart, as bench/http.sh does; every N runs on the
# same SERVER_CPUS. Stores go in $TMPDIR (a real disk: /var/tmp, say); ports
# PORT_N (18499) for nginx and PORT_S (18500) up for the stores.
set -eu
cd "$(dirname "$0")/.."
STORES=${STORES:-1 2}
most=0
for N in $STORES; do
  case $N in '' | *[!0-9]*) ;; *) [ "$N" -gt "$most" ] && most=$N ;; esac
done
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
THREADS=${THREADS:-$most}
WRK_THREADS=${WRK_THREADS:-$most}
NGINX_WORKERS=${NGINX_WORKERS:-$THREADS}
SPIKED=${SPIKED:-build/rel/spiked}
PORT_N=${PORT_N:-18499}
PORT_S=${PORT_S:-18500}
TMPDIR=${TMPDIR:-/tmp}
. bench/wrkout.sh
bad() { echo "stores.sh: $*" >&2; exit 2; }
[ "$most" -gt 0 ] || bad "STORES lists no count of stores (\"$STORES\")"
whole ROUNDS DURATION CONNS THREADS WRK_THREADS NGINX_WORKERS PORT_N PORT_S
seen=" "
for N in $STORES; do
  whole N # each of STORES
  case $seen in *" $N "*) bad "STORES names $N twice" ;; esac
  seen="$seen$N "
  [ $((THREADS % N)) -eq 0 ] && [ $((WRK_THREADS % N)) -eq 0 ] ||
    bad "$N stores do not divide THREADS=$THREADS and WRK_THREADS=$WRK_THREADS evenly (every N runs the same threads in all)"
  [ $((CONNS / N)) -ge $((WRK_THREADS / N)) ] ||
    bad "$N stores get $((CONNS / N)) connections each, fewer than their wrk's $((WRK_THREADS / N)) threads (CONNS)"
done
[ $((PORT_S + most)) -le 65536 ] || bad "ports $PORT_S.. for $most stores pass 65535"
[ "$PORT_N" -le 65535 ] || bad "PORT_N $PORT_N is not a port"
[ "$PORT_N" -lt "$PORT_S" ] || [ "$PORT_N" -ge $((PORT_S + most)) ] ||
  bad "PORT_N $PORT_N is one of the stores' ports $PORT_S..$((PORT_S + most - 1))"
cpus_here
pin_srv=${SERVER_CPUS:+taskset -c $SERVER_CPUS}
pin_load=${LOAD_CPUS:+taskset -c $LOAD_CPUS}
for tool in wrk nginx curl; do
  command -v $tool >/dev/null || { echo "bench-stores: $tool missing (make bench-deps)" >&2; exit 1; }
done
[ -x "$SPIKED" ] || { echo "stores.sh: $SPIKED not found (make build/rel/spiked)" >&2; exit 1; }

work=$(mktemp -d "$TMPDIR/spike-bench-stores.XXXXXX")
. bench/servers.sh
pids=""
wpids=""
stop_stores() {
  for p in $pids; do kill -TERM "$p" 2>/dev/null || :; done
  for p in $pids; do wait "$p" 2>/dev/null || :; done
  pids=""
}
cleanup() {
  trap '' HUP INT TERM # a second signal must not cut the cleanup short
  for p in $wpids; do kill -TERM "$p" 2>/dev/null || :; done
  for p in $wpids; do wait "$p" 2>/dev/null || :; done
  stop_stores
  bench_stop
  rm -rf "$work"
}
on_exit cleanup

# the reference: nginx answering a body as long as a reserve's answer (sized
# from a spiked started once for it)
bench_spiked "$PORT_S" "$@"
bench_nginx "$PORT_N" "$PORT_S"
kill -TERM "$spid" && wait "$spid" 2>/dev/null || :
spid=""
rm -rf "$work/data"

# start_stores N [flags]: N fresh stores, event 1 of 4e9 units in each
# (j, not i: wait_port counts in i)
start_stores() {
  n=$1
  shift
  t=$((THREADS / n))
  j=0
  while [ $j -lt "$n" ]; do
    port_free $((PORT_S + j))
    $pin_srv "$SPIKED" --listen 127.0.0.1:$((PORT_S + j)) --data "$work/d$j" --log-level warn \
      --threads "$t" --max-buyers 16777216 --max-reserved 16777216 "$@" 2>"$work/s$j.log" &
    pids="$pids $!"
    j=$((j + 1))
  done
  j=0
  for p in $pids; do
    wait_port $((PORT_S + j)) healthz/live "$p" "$work/s$j.log"
    curl -sf -o /dev/null -X POST "http://127.0.0.1:$((PORT_S + j))/api/v1/events" \
      -H 'Content-Type: application/json' \
      -d '{"id":1,"name":"bench","stock":4000000000,"price":999,"start_at":0,"end_at":253402300799999,"per_user_limit":1}' ||
      { echo "stores.sh: creating event 1 on port $((PORT_S + j)) failed" >&2; exit 1; }
    j=$((j + 1))
  done
}

# commits of all the stores: "commits orders seconds_in_commits"
commits() {
  i=0
  while [ $i -lt "$1" ]; do
    curl -s "http://127.0.0.1:$((PORT_S + i))/metrics"
    i=$((i + 1))
  done | awk '/^spike_commit_batch_size_sum/ {s += $2} /^spike_commit_batch_size_count/ {c += $2}
    /^spike_commit_duration_seconds_sum/ {d += $2} END {print c + 0, s + 0, d + 0}'
}

ack=$(ack_of "$@")

echo "bench-stores: $(nproc) cores; $THREADS loop threads and $WRK_THREADS wrk threads split over N stores (ack=$ack); wrk -c$CONNS" \
  "-d${DURATION}s split over them; nginx $NGINX_WORKERS worker(s) under wrk -t$WRK_THREADS -c$CONNS;" \
  "$ROUNDS alternating rounds${SERVER_CPUS:+; servers on CPUs $SERVER_CPUS}${LOAD_CPUS:+, wrk on CPUs $LOAD_CPUS}"
: >"$work/n.rps"
for N in $STORES; do : >"$work/$N.rps"; done
base=1
r=1
while [ $r -le "$ROUNDS" ]; do
  $pin_load wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PORT_N/" >"$work/n.out" 2>&1 || :
  wrk_ok "$work/n.out"
  rps "$work/n.out" >>"$work/n.rps"
  line="round $r: nginx $(rps "$work/n.out")"
  for N in $STORES; do
    start_stores "$N" "$@"
    c=$((CONNS / N))
    t=$((WRK_THREADS / N))
    i=0
    wpids=""
    while [ $i -lt "$N" ]; do
      # the last wrk takes the connections the division left over
      ci=$c
      [ $i -eq $((N - 1)) ] && ci=$((CONNS - c * (N - 1)))
      base=$((base + 1000000000))
      SPIKE_USER_BASE=$base $pin_load wrk -t"$t" -c"$ci" -d"${DURATION}s" -s bench/reserve.lua \
        "http://127.0.0.1:$((PORT_S + i))/" >"$work/w$i.out" 2>&1 &
      wpids="$wpids $!"
      i=$((i + 1))
    done
    for p in $wpids; do wait "$p" || :; done
    wpids=""
    sum=0
    bad=0
    i=0
    while [ $i -lt "$N" ]; do
      wrk_ok "$work/w$i.out"
      sum=$(awk -v a="$sum" -v b="$(rps "$work/w$i.out")" 'BEGIN {print a + b}')
      b=$(non2xx "$work/w$i.out")
      bad=$((bad + ${b:-0}))
      i=$((i + 1))
    done
    echo "$sum" >>"$work/$N.rps"
    read -r nc no nd <<EOF
$(commits "$N")
EOF
    line="$line | $N: $sum"
    if [ "$bad" -gt 0 ]; then line="$line ($bad non-2xx)"; fi
    line="$line ($(awk -v c="$nc" -v o="$no" -v t="$nd" -v d="$DURATION" 'BEGIN { printf "%.0f commits/s, %.1f orders and %.2f ms each", c / d, c ? o / c : 0, c ? t / c * 1000 : 0 }'))"
    stop_stores
    rm -rf "$work"/d*
  done
  echo "$line"
  r=$((r + 1))
done
mn=$(median <"$work/n.rps")
one=""
echo "median: nginx fixed body $mn req/s"
for N in $STORES; do
  m=$(median <"$work/$N.rps")
  [ -n "$one" ] || one=$m
  awk -v n="$N" -v m="$m" -v r="$mn" -v o="$one" -v first="$(echo "$STORES" | awk '{print $1}')" \
    'BEGIN { printf "%d store(s): %s req/s, %.3f of nginx, %.2fx %s store(s)\n", n, m, m / r, m / o, first }'
  printf 'summary\tstores %s (ack=%s)\t%s req/s\t%s req/s (nginx)\t%s\n' "$N" "$ack" "$m" "$mn" \
    "$(awk -v m="$m" -v r="$mn" 'BEGIN { printf "%.3f", m / r }')"
done
