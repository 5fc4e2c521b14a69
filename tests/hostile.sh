#!/bin/sh
# tests/hostile.sh -- `make hostile`: issue 11, row 6 at full size. A
# legitimate client (spikebench: open loop, keep-alive, half GETs of the
# event, half reserves) alone, then beside slow and hostile clients
# (tests/hostile_load: 1,000 slowloris, 1,000 non-readers, a stream of
# smuggling attempts, 10,000 connections at once every 5 s past
# --max-conns), then alone again; spiked's RSS before, during and after.
#
# Prints the three latency lines, the p99 ratio, spiked's loop turns
# alone and beside the hostile clients (how many kept it busy past 0.5 and
# 1 ms: spike_loop_turn_seconds) and what the hostile clients saw. Exits 1 when a functional check fails (a legitimate request
# not answered 200/201, a smuggled request not refused, a refusal without
# its answer or with a reset after it, spiked gone); the ratio is reported,
# never judged: timings on a shared machine are not a pass/fail test.
#
#   HOSTILE_SECONDS=20 HOSTILE_RATE=1000 HOSTILE_CONNS=8 HOSTILE_ROUNDS=3 tests/hostile.sh
#   HOSTILE_LOAD_ARGS="--slowloris 0 --non-readers 0" tests/hostile.sh   # floods only
#   HOSTILE_PIN=1 tests/hostile.sh   # spiked + spikebench on CPU 0, hostile clients on the rest
#   HOSTILE_PIN=0-1:2-3:8-15 tests/hostile.sh   # CPUs of spiked : spikebench : hostile clients
#   SPIKED, SPIKEBENCH, HOSTILE_LOAD: the programs (build/rel/ by default)
#
# The hostile clients run at nice 10 so that on a small machine they do not
# starve the measuring client of CPU (on a real network they would be on
# other machines); spiked and spikebench run at normal priority. The data
# directory is on /dev/shm when there is one: a disk's fsync would measure
# the disk, not the HTTP front.
set -u
cd "$(dirname "$0")/.."
SECS=${HOSTILE_SECONDS:-20}
RATE=${HOSTILE_RATE:-1000}
CONNS=${HOSTILE_CONNS:-8}
ROUNDS=${HOSTILE_ROUNDS:-3}
SPIKED=${SPIKED:-build/rel/spiked}
SPIKEBENCH=${SPIKEBENCH:-build/rel/spikebench}
HOSTILE_LOAD=${HOSTILE_LOAD:-build/rel/tests/hostile_load}
OUT=${HOSTILE_OUT:-build/hostile}
MAX_CONNS=3000
mkdir -p "$OUT"
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
data=$(mktemp -d "$base/spike-hostile.XXXXXX") || exit 1
log="$OUT/spiked.log"
pid=""
load=""
cleanup() {
  [ -n "$load" ] && kill "$load" 2>/dev/null
  # --stall stops spiked (SIGSTOP) for a moment: continue it before the TERM
  [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

need=12000
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$need" ]; then
  echo "skip: RLIMIT_NOFILE's hard limit is $hard; the flood needs $need descriptors"
  exit 0
fi
ulimit -n "$need"

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo -1; }
# field F of JSON object O ("latency_ms") in file, e.g. p99
jget() { sed -n "s/.*\"$2\":{[^}]*\"$3\":\([0-9.e+-]*\).*/\1/p" "$1"; }
# Legitimate requests all answered 200 or 201, no socket errors.
legit_ok() {
  # every socket error count zero, whatever fields spikebench reports
  errs=$(sed -n 's/.*"errors":{\([^}]*\)}.*/\1/p' "$1")
  [ -n "$errs" ] && [ -z "$(printf '%s' "$errs" | tr ',' '\n' | grep -v ':0$')" ] &&
    [ -z "$(sed -n 's/.*"status":{\([^}]*\)}.*/\1/p' "$1" | tr ',' '\n' | grep -v '"20[01]"')" ]
}

# HOSTILE_PIN=1: spiked and the legitimate client on CPU 0, the hostile
# clients on the others, as if they came from elsewhere (their TCP work
# still runs partly on CPU 0: loopback delivers in the sender's context)
pin_srv=""
pin_bench=""
pin_host=""
pin="${HOSTILE_PIN:-0}"
if [ "$pin" != 0 ] && command -v taskset >/dev/null; then
  case $pin in
  1)
    if [ "$(nproc)" -ge 2 ]; then
      pin_srv="taskset -c 0"
      pin_bench="taskset -c 0"
      pin_host="taskset -c 1-$(($(nproc) - 1))"
    fi
    ;;
  *:*:*)
    pin_srv="taskset -c ${pin%%:*}"
    rest=${pin#*:}
    pin_bench="taskset -c ${rest%%:*}"
    pin_host="taskset -c ${rest#*:}"
    ;;
  *) echo "HOSTILE_PIN: 1, or CPUS:CPUS:CPUS for spiked, spikebench and the hostile clients" >&2; exit 2 ;;
  esac
fi
$pin_srv "$SPIKED" --listen 127.0.0.1:0 --data "$data" --max-conns $MAX_CONNS 2>"$log" &
pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*"listen":"127.0.0.1:\([0-9]*\)".*/\1/p' "$log" | head -n 1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "spiked did not start:"; cat "$log"; exit 1; }
now=$(($(date +%s) * 1000))
curl -sf -o /dev/null -X POST "http://127.0.0.1:$port/api/v1/events" \
  -H 'Content-Type: application/json' \
  -d "{\"id\":1,\"name\":\"row 6\",\"stock\":100000000,\"price\":100,\"start_at\":$((now - 60000)),\"end_at\":$((now + 86400000))}" ||
  { echo "cannot create the event"; exit 1; }

bench() { # name user_base seconds: 2 s of warm-up (connections made), then measured
  $pin_bench "$SPIKEBENCH" --url "http://127.0.0.1:$port" --scenario mixed --pay-share 0 \
    --read-share 0.5 --rate "$RATE" --connections "$CONNS" --duration "$3" --warmup 2 \
    --user-base "$2" --quiet --json "$OUT/$1.json" >"$OUT/$1.txt" 2>&1
}

# spike_loop_turn_seconds into a file, and what changed between two such:
# the turns, and how many kept the loop busy past 0.5 and 1 ms (a request
# arriving during a turn waits for its end)
turns_snap() {
  curl -sf -m 5 "http://127.0.0.1:$port/metrics" | grep '^spike_loop_turn_seconds' >"$1"
}
turns_delta() {
  [ -s "$1" ] && [ -s "$2" ] || { printf '? (a scrape failed)'; return; }
  awk 'FNR == NR { a[$1] = $2; next } { d[$1] = $2 - a[$1] }
    END { n = d["spike_loop_turn_seconds_count"]
      printf "%d turns, %d over 0.5 ms, %d over 1 ms", n,
        n - d["spike_loop_turn_seconds_bucket{le=\"0.0005\"}"],
        n - d["spike_loop_turn_seconds_bucket{le=\"0.001\"}"] }' "$1" "$2"
}

failed=0
echo "spiked $SPIKED on 127.0.0.1:$port, --max-conns $MAX_CONNS; data on $base; $(nproc) CPUs${pin_srv:+ (pinned: spiked: ${pin_srv#taskset -c }, spikebench: ${pin_bench#taskset -c }, hostile clients: ${pin_host#taskset -c })};" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
rss_before=""
rss_during=""
: >"$OUT/turns.txt"
for round in $(seq "$ROUNDS"); do
  turns_snap "$OUT/turns.a0"
  bench "alone$round" $((round * 100000000)) "$SECS" || failed=1
  turns_snap "$OUT/turns.a1"
  [ -n "$rss_before" ] || rss_before=$(rss "$pid")
  # The legitimate client connects first (a client arriving while a flood
  # fills --max-conns is rightly turned away), then the hostile ones start:
  # slow clients at once, the first flood a second later, all under way
  # before the measured window opens.
  bench "hostile$round" $((round * 100000000 + 50000000)) "$SECS" &
  b=$!
  sleep 1
  $pin_host nice -n 10 "$HOSTILE_LOAD" --port "$port" --pid "$pid" --seconds $((SECS + 2)) \
    --user-base $((3000000000 + round * 100000000)) ${HOSTILE_LOAD_ARGS:-} >"$OUT/load$round.txt" 2>&1 &
  load=$!
  wait "$b" || failed=1
  wait "$load" || failed=1
  load=""
  turns_snap "$OUT/turns.h1"
  echo "round $round: spiked's loop turns: alone $(turns_delta "$OUT/turns.a0" "$OUT/turns.a1");" \
    "beside the hostile clients $(turns_delta "$OUT/turns.a1" "$OUT/turns.h1")" >>"$OUT/turns.txt"
  r=$(sed -n 's/^spiked during: max RSS \([0-9]*\) KiB.*/\1/p' "$OUT/load$round.txt")
  if [ -n "$r" ] && { [ -z "$rss_during" ] || [ "$r" -gt "$rss_during" ]; }; then rss_during=$r; fi
done
sleep 3
rss_after=$(rss "$pid")
bench after 900000000 $((SECS / 2)) || failed=1
stalls=""
for _ in 1 2 3; do
  st=$("$HOSTILE_LOAD" --port "$port" --pid "$pid" --stall 4000) || failed=1
  stalls="$stalls $(echo "$st" | sed -n 's/.*waited \([0-9]*\) ms.*/\1/p')"
  sleep 1
done
kill -0 "$pid" 2>/dev/null || { echo "spiked is gone"; failed=1; }
rss_final=$(rss "$pid")

echo "legitimate client: spikebench mixed (GET /api/v1/events/1 and reserves, half each)," \
  "$RATE req/s open loop on $CONNS keep-alive connections, $SECS s each (ms):"
printf '  %-10s %8s %8s %8s %8s %8s %10s %10s\n' run p50 p90 p99 p99.9 max "read p99" "resv p99"
runs=""
for round in $(seq "$ROUNDS"); do runs="$runs alone$round hostile$round"; done
for r in $runs after; do
  f="$OUT/$r.json"
  printf '  %-10s %8.2f %8.2f %8.2f %8.2f %8.2f %10.2f %10.2f\n' "$r" "$(jget "$f" latency_ms p50)" \
    "$(jget "$f" latency_ms p90)" "$(jget "$f" latency_ms p99)" "$(jget "$f" latency_ms p99_9)" \
    "$(jget "$f" latency_ms max)" "$(jget "$f" read p99)" "$(jget "$f" reserve p99)"
  legit_ok "$f" || { echo "  $r: legitimate requests failed:"; sed 's/^/    /' "$OUT/$r.txt"; failed=1; }
done
median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
: >"$OUT/alone.p99"
: >"$OUT/hostile.p99"
for round in $(seq "$ROUNDS"); do
  a=$(jget "$OUT/alone$round.json" latency_ms p99)
  h=$(jget "$OUT/hostile$round.json" latency_ms p99)
  echo "$a" >>"$OUT/alone.p99"
  echo "$h" >>"$OUT/hostile.p99"
  echo "  round $round: p99 hostile / alone = $(awk -v a="$a" -v h="$h" 'BEGIN { printf "%.2f", h / a }') (target: at most 2)"
done
# One window's p99 is its worst 1 %: a single stall of the machine (nginx
# alone shows 15-20 ms ones here) decides it. The medians over the rounds
# are the figure to compare.
ma=$(median <"$OUT/alone.p99")
mh=$(median <"$OUT/hostile.p99")
echo "  median p99 of $ROUNDS rounds: alone $ma ms, hostile $mh ms; ratio $(awk -v a="$ma" -v h="$mh" 'BEGIN { printf "%.2f", h / a }') (target: at most 2)"
echo "spiked RSS (KiB): before $rss_before; max during ${rss_during:-?}; after $rss_after;" \
  "at the end $rss_final"
echo "a keep-alive request's wait when spiked wakes to 4000 queued connections (ms):$stalls"
cat "$OUT/turns.txt"
for round in $(seq "$ROUNDS"); do sed "s/^/  round $round: /" "$OUT/load$round.txt"; done
if [ "$failed" -ne 0 ]; then
  echo "hostile: a functional check failed"
  exit 1
fi
echo "hostile: every functional check held"
