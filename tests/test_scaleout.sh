#!/bin/sh
# tests/test_scaleout.sh -- events partitioned over 3 spiked behind nginx
# (deploy/, docs/scale-out.md), on 127.0.0.1 only:
#
#  1. start 3 nodes and nginx (deploy/spike-cluster.sh); create 30 events
#     through nginx with PUT /api/v1/events/{id}; each lives on exactly one
#     node (200 there, 404 on another), a second PUT is 409 / 30010;
#  2. one reserve per event through nginx (order ids kept), then a flash
#     crowd (spikebench, one per event) on 6 events at once, 3 of them on
#     the node about to die; kill -9 that node in the middle of it;
#  3. while it is down: every request for its events is nginx's 503 /
#     50005 naming that node, every time (no other node answers for it),
#     and the other nodes' events keep selling (201, order ids kept);
#  4. restart it: every order acknowledged with 201 is there (read back
#     through nginx), every event balances (available + reserved + sold =
#     stock, reserved + sold <= stock), each crowd's 201s are all counted
#     (and at most the crowd's connections more: requests in flight at the
#     kill or at the crowd's end), the other orders exactly, and the 30
#     events are still spread as before (nothing was created elsewhere).
#
#   SPIKED=build/asan/spiked SPIKEBENCH=build/rel/spikebench tests/test_scaleout.sh
set -u
# The whole run is bounded: timeout's SIGTERM runs the cleanup below.
if [ -z "${SCALEOUT_BOUNDED:-}" ]; then
  SCALEOUT_BOUNDED=1 exec timeout -k 10 "${RUN_MAX_S:-90}" "$0" "$@"
fi
cd "$(dirname "$0")/.." || exit 1
SPIKED=${SPIKED:-build/rel/spiked}
SPIKEBENCH=${SPIKEBENCH:-build/rel/spikebench}
RUN_MAX_S=${RUN_MAX_S:-90} # the whole test; it stops itself past this
EVENTS=30
STOCK=1500     # per event: a crowd of 8 connections takes a while to sell it
CROWD_CONNS=8  # per crowd event
CROWD_MAX_S=5  # a crowd on the dead node's events runs this long
TMPDIR=${TMPDIR:-/tmp}
case $TMPDIR in /*) ;; *) TMPDIR=$PWD/$TMPDIR ;; esac
for tool in curl nginx timeout od; do
  command -v $tool >/dev/null || { echo "FAIL $tool missing: run make deps"; exit 1; }
done
for b in "$SPIKED" "$SPIKEBENCH"; do [ -x "$b" ] || { echo "FAIL $b missing: make $b"; exit 1; }; done

work=$(mktemp -d "$TMPDIR/spike-scaleout.XXXXXX") || exit 1
C=$work/cluster
crowds="" # spikebench pids while they run
cleanup() {
  for p in $crowds; do kill -TERM "$p" 2>/dev/null; done
  deploy/spike-cluster.sh stop "$C" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "FAIL interrupted (or past ${RUN_MAX_S}s)"; exit 1' INT TERM HUP

fail() {
  echo "FAIL $*"
  for f in "$C"/node-*/log "$C"/nginx/error.log; do
    [ -f "$f" ] && { echo "--- $f"; grep -v '"level":"info"' "$f" | tail -n 5; }
  done
  exit 1
}
t0=$(date +%s)
pass() { echo "ok $*  ($(($(date +%s) - t0)) s)"; }

# batch: the requests on stdin, "TAG METHOD URL [BODY]" a line (no spaces in
# a body), through one curl, 16 at a time (a process per request is slow on
# a loaded machine). Each answer's body goes to $work/r/TAG; $work/res gets
# "TAG STATUS NODE-PORT" lines (the port from nginx's X-Spike-Node).
batch() {
  rm -rf "$work/r" && mkdir "$work/r" || exit 1
  sed 's/"/\\"/g' | {
    sep=""
    while read -r tag m url bd; do
      printf '%surl = "%s"\nrequest = "%s"\noutput = "%s"\nsilent\nmax-time = 10\n' \
        "$sep" "$url" "$m" "$work/r/$tag"
      printf 'write-out = "%s %%{http_code} %%header{x-spike-node}\\n"\n' "$tag"
      [ -n "$bd" ] && printf 'header = "Content-Type: application/json"\ndata = "%s"\n' "$bd"
      sep="next
"
    done
  } >"$work/cfg"
  curl --parallel --parallel-max 16 -K "$work/cfg" >"$work/res" 2>"$work/curl.err"
}

# getf FILE NAME: $fv = the first "NAME": value in FILE, quotes dropped
# (builtins only, no process).
getf() {
  fv=""
  IFS= read -r fb <"$1"
  case $fb in *"\"$2\":"*) ;; *) return 0 ;; esac
  fv=${fb#*\"$2\":}
  fv=${fv%%[,\}]*}
  fv=${fv#\"}
  fv=${fv%\"}
}
# node_of PORT: $nk = the node's index listening there ("x": none).
node_of() {
  nk=x
  case ${1##*:} in "$p0") nk=0 ;; "$p1") nk=1 ;; "$p2") nk=2 ;; esac
}
each_event() { # each_event FORMAT: FORMAT with %d the event id, a line per event
  e=1
  while [ $e -le $EVENTS ]; do
    # shellcheck disable=SC2059 # the format is the caller's
    printf "$1\n" $e $e
    e=$((e + 1))
  done
}

U=$(SPIKED=$SPIKED SPIKED_ARGS="--log-level warn" deploy/spike-cluster.sh start "$C" 3) ||
  fail "the cluster did not start"
p0=$(cat "$C/node-0/port") p1=$(cat "$C/node-1/port") p2=$(cat "$C/node-2/port")
u0=http://127.0.0.1:$p0 u1=http://127.0.0.1:$p1 u2=http://127.0.0.1:$p2
pass "3 nodes and nginx started: $U"

# ---- 1. 30 events placed by id ------------------------------------------------
now=$(date +%s%3N)
spec="\"stock\":$STOCK,\"price\":100,\"start_at\":$((now - 60000)),\"end_at\":$((now + 3600000))"
spec="$spec,\"per_user_limit\":1,\"pay_timeout_s\":600"
each_event "%d PUT $U/api/v1/events/%d {\"name\":\"sale\",$spec}" | batch
n0=0 n1=0 n2=0
while read -r e code node; do
  getf "$work/r/$e" id
  [ "$code" = 201 ] && [ "$fv" = "$e" ] || fail "PUT event $e: $code $(cat "$work/r/$e")"
  node_of "$node"
  [ "$nk" != x ] || fail "event $e: no node named in the answer ($node)"
  eval "node_$e=$nk n$nk=\$((n$nk + 1))"
done <"$work/res"
[ $((n0 + n1 + n2)) -eq $EVENTS ] || fail "$((n0 + n1 + n2)) events created, not $EVENTS"
e=1
while [ $e -le $EVENTS ]; do # on its node (200), not on the next one (404)
  eval "k=\$node_$e"
  eval "echo \"$e.on GET \$u$k/api/v1/events/$e\""
  eval "echo \"$e.off GET \$u$(((k + 1) % 3))/api/v1/events/$e\""
  e=$((e + 1))
done | batch
while read -r tag code node; do
  case $tag in *.on) want=200 ;; *) want=404 ;; esac
  [ "$code" = $want ] || fail "event ${tag%.*} ($tag): $code, want $want"
done <"$work/res"
{
  echo "again PUT $U/api/v1/events/7 {\"name\":\"again\",$spec}"
  echo "zeros PUT $U/api/v1/events/007 {\"name\":\"again\",$spec}" # one node for 7 and 007
} | batch
while read -r tag code node; do
  getf "$work/r/$tag" code
  [ "$code" = 409 ] && [ "$fv" = 30010 ] || fail "PUT event 7 again ($tag): $code $fv"
done <"$work/res"
pass "30 events created through nginx: $n0 / $n1 / $n2 on nodes 0 / 1 / 2, each on one node"

# event_id given twice: the router goes by the first, as spiked reads it
# (it went by the last, and the wrong node answered an empty list)
a=1
b=2
while [ $b -le $EVENTS ]; do
  eval "[ \$node_$b != \$node_$a ]" && break
  b=$((b + 1))
done
[ $b -le $EVENTS ] || fail "events 1..$EVENTS all on one node"
node=$(curl -s -o /dev/null -m 10 -w '%header{x-spike-node}' \
  "$U/api/v1/users/42/orders?event_id=$a&event_id=$b")
node_of "$node"
eval "want=\$node_$a"
[ "$nk" = "$want" ] || fail "?event_id=$a&event_id=$b went to node $nk, not event $a's node $want"
pass "a repeated event_id is routed by the first, as spiked reads it"

# The node to kill: the one with the most events; the others must hold some.
K=0
[ $n1 -gt $n0 ] && K=1
eval "nK=\$n$K"
[ $n2 -gt $nK ] && K=2 && nK=$n2
[ $((EVENTS - nK)) -gt 0 ] || fail "every event on one node"
eval "Kport=\$p$K"

# ---- 2. one order per event, then the crowd --------------------------------------
: >"$work/orders" # "event order" for every 201 the test saw
keep_orders() {   # the 201s of the last batch into orders
  while read -r tag code node; do
    [ "$code" = 201 ] || continue
    getf "$work/r/$tag" id
    echo "${tag%.*} $fv" >>"$work/orders"
  done <"$work/res"
}
each_event "%d.1 POST $U/api/v1/events/%d/orders {\"user_id\":\"1\"}" | batch
keep_orders
[ "$(wc -l <"$work/orders")" -eq $EVENTS ] || fail "a first reserve was refused: $(grep -v ' 201 ' "$work/res")"
crowd_k="" crowd_o="" nck=0 nco=0
e=1
while [ $e -le $EVENTS ]; do
  eval "k=\$node_$e"
  if [ "$k" = $K ] && [ $nck -lt 3 ]; then
    crowd_k="$crowd_k $e" nck=$((nck + 1))
  elif [ "$k" != $K ] && [ $nco -lt 3 ]; then
    crowd_o="$crowd_o $e" nco=$((nco + 1))
  fi
  e=$((e + 1))
done
for e in $crowd_k $crowd_o; do
  "$SPIKEBENCH" --url "$U" --scenario flash-crowd --event $e --connections $CROWD_CONNS \
    --duration $CROWD_MAX_S --user-base $((e * 1000000)) --quiet --json "$work/crowd.$e.json" \
    >"$work/crowd.$e.out" 2>&1 &
  crowds="$crowds $!"
done
sleep 1
deploy/spike-cluster.sh kill "$C" $K || fail "kill -9 node $K"
pass "kill -9 node $K in a flash crowd on events$crowd_k (on it) and$crowd_o"

# ---- 3. only its events are refused -------------------------------------------------
for round in 2 3; do
  {
    each_event "%d.$round POST $U/api/v1/events/%d/orders {\"user_id\":\"$round\"}"
    each_event "%d.get GET $U/api/v1/events/%d"
  } | batch
  while read -r tag code node; do
    e=${tag%.*}
    eval "k=\$node_$e"
    getf "$work/r/$tag" code
    if [ "$k" = $K ]; then
      [ "$code" = 503 ] && [ "$fv" = 50005 ] || fail "event $e on the dead node ($tag): $code $fv"
      [ "${node##*:}" = "$Kport" ] || fail "event $e: a 503 naming $node, not node $K"
    elif [ "$tag" = "$e.get" ]; then
      [ "$code" = 200 ] || fail "GET event $e on a live node: $code"
    else # a crowd's event may be sold out already
      [ "$code" = 201 ] || { [ "$code" = 409 ] && [ "$fv" = 30001 ]; } ||
        fail "reserve on event $e on a live node: $code $(cat "$work/r/$tag")"
    fi
  done <"$work/res"
  keep_orders
  sleep 0.5
done
curl -s -D "$work/h" -o /dev/null -X POST "$U/api/v1/events/$(echo $crowd_k | cut -d' ' -f1)/orders" \
  -H 'Content-Type: application/json' -d '{"user_id":"9"}'
grep -qi '^Retry-After: 1' "$work/h" || fail "the 503 has no Retry-After: $(cat "$work/h")"
pass "node $K down: its events 503 / 50005 from nginx every time, the rest sell on"

for p in $crowds; do wait "$p"; done
crowds=""

# ---- 4. restart: nothing acknowledged lost -------------------------------------------
deploy/spike-cluster.sh restart "$C" $K || fail "restart node $K"
pass "the crowds ended; node $K restarted"
each_event "%d GET $U/api/v1/events/%d" | batch
total=0
while read -r e code node; do
  [ "$code" = 200 ] || fail "event $e after the restart: $code"
  f=$work/r/$e
  getf "$f" available && av=$fv
  getf "$f" reserved && rs=$fv
  getf "$f" sold && so=$fv
  getf "$f" stock_total && tot=$fv
  [ $((av + rs + so)) -eq "$tot" ] && [ "$tot" -eq $STOCK ] ||
    fail "event $e does not balance: $av + $rs + $so != $tot"
  [ $((rs + so)) -le "$tot" ] || fail "event $e oversold: $rs + $so > $tot"
  acked=$(grep -c "^$e " "$work/orders")
  if [ -f "$work/crowd.$e.json" ]; then
    c201=$(sed -n 's/.*"status":{[^}]*"201":\([0-9]*\).*/\1/p' "$work/crowd.$e.json")
    [ -n "$c201" ] && [ "$c201" -gt 0 ] || fail "event $e: the crowd got no 201"
    acked=$((acked + c201))
    # Every 201 is counted, and at most one request per connection more (in
    # flight at the kill or at the crowd's end: committed, never answered).
    [ $((rs + so)) -ge $acked ] && [ $((rs + so)) -le $((acked + CROWD_CONNS)) ] ||
      fail "event $e (crowd): $((rs + so)) taken, $acked acknowledged"
    eval "k=\$node_$e"
    if [ "$k" != $K ] && grep -q '"503"' "$work/crowd.$e.json"; then
      fail "event $e: a live node's crowd saw a 503"
    fi
  else
    [ $((rs + so)) -eq $acked ] || fail "event $e: $((rs + so)) taken, $acked acknowledged"
  fi
  total=$((total + acked))
done <"$work/res"
n=0
while read -r e o; do
  n=$((n + 1))
  echo "$e.$n GET $U/api/v1/events/$e/orders/$o"
done <"$work/orders" | batch
while read -r tag code node; do
  getf "$work/r/$tag" state && state=$fv
  getf "$work/r/$tag" event_id
  [ "$code" = 200 ] && [ "$state" = reserved ] && [ "$fv" = "${tag%.*}" ] ||
    fail "order $tag after the restart: $code $(cat "$work/r/$tag")"
done <"$work/res"
n=$(wc -l <"$work/res")
[ "$n" -eq "$(wc -l <"$work/orders")" ] || fail "$n orders read back of $(wc -l <"$work/orders")"
printf 'n0 GET %s/api/v1/events\nn1 GET %s/api/v1/events\nn2 GET %s/api/v1/events\n' \
  "$u0" "$u1" "$u2" | batch
for k in 0 1 2; do
  have=$(grep -o '"id":"[0-9]*"' "$work/r/n$k" | wc -l)
  eval "want=\$n$k"
  [ "$have" -eq "$want" ] || fail "node $k holds $have events, not $want"
done
pass "$total acknowledged orders counted, $n read back, 30 events balance"

deploy/spike-cluster.sh stop "$C" || fail "a node did not drain on SIGTERM"
for k in 0 1 2; do
  grep -q '"level":"error"' "$C/node-$k/log" && fail "node $k logged an error"
done
pass "scale-out: 3 nodes behind nginx, one killed and restarted, nothing lost"
