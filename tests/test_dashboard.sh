#!/bin/sh
# tests/test_dashboard.sh -- the live page in a real browser.
#
# Starts $SPIKED on a free loopback port with a fresh store, creates an
# event, and runs a bounded spikebench load (mixed: reserves and pays,
# 127.0.0.1 only). While the load runs, headless chromium loads /dashboard
# twice (--dump-dom after a virtual time budget, each in its own temporary
# profile): both times the page must say "live" with at least one update,
# show the event's row, and the second snapshot must show a later sample
# and more units taken than the first. After the load has stopped, a third
# snapshot's stock, available, reserved and sold must equal
# GET /api/v1/events/{id}, read before and after it (and the same both
# times). Chromium's log must hold no Content-Security-Policy refusal. Also: the page's headers
# (CSP, nosniff), HEAD on the new routes, the stats route's bounds, 405.
#
# chromium missing or unable to run is a FAIL (make deps installs it),
# never a skip. Everything started here is stopped, and the temporary
# directory removed, on every exit path.
#
#   SPIKED=build/asan/spiked SPIKEBENCH=build/rel/spikebench tests/test_dashboard.sh
set -u
cd "$(dirname "$0")/.." || exit 1
SPIKED=${SPIKED:-build/rel/spiked}
SPIKEBENCH=${SPIKEBENCH:-build/rel/spikebench}
CHROMIUM=${CHROMIUM:-chromium}
START_MAX_S=15   # spiked listening
CHROME_MAX_S=60  # one page load in chromium, start to exit
LOAD_MAX_S=90    # the load's own bound (it is stopped once two snapshots are taken)
TMPDIR=${TMPDIR:-/tmp}
case $TMPDIR in /*) ;; *) TMPDIR=$PWD/$TMPDIR ;; esac

for tool in curl timeout; do
  command -v $tool >/dev/null || { echo "FAIL $tool missing: run make deps"; exit 1; }
done
command -v "$CHROMIUM" >/dev/null ||
  { echo "FAIL $CHROMIUM missing: run make deps (Debian's chromium package)"; exit 1; }
[ -x "$SPIKED" ] || { echo "FAIL $SPIKED missing: make $SPIKED"; exit 1; }
[ -x "$SPIKEBENCH" ] || { echo "FAIL $SPIKEBENCH missing: make $SPIKEBENCH"; exit 1; }

work=$(mktemp -d "$TMPDIR/spike-dashboard.XXXXXX") || exit 1
. tests/lib.sh
bpid="" # spikebench

stop_bench() {
  [ -n "$bpid" ] || return 0
  kill -TERM "$bpid" 2>/dev/null
  wait "$bpid" 2>/dev/null
  bpid=""
}

cleanup() {
  stop_bench
  spiked_down 10
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

if ! spiked_up --data "$work/data"; then
  fail "start $SPIKED"
  tail -n 20 "$work/spiked.log"
  finish
fi
base="http://127.0.0.1:$port"
c() { curl -s --max-time 10 "$@"; }

# ---- the routes, without a browser ------------------------------------------

c -D "$work/h" -o "$work/page" "$base/dashboard"
if head -n 1 "$work/h" | grep -q '^HTTP/1.1 200' &&
  grep -qi "^content-type: text/html" "$work/h" &&
  grep -qi "^content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'" "$work/h" &&
  grep -qi "^x-content-type-options: nosniff" "$work/h" && grep -q '/dashboard/app.js' "$work/page"; then
  ok "GET /dashboard: 200, html, strict CSP, nosniff"
else
  fail "GET /dashboard: $(head -n 1 "$work/h")"
  cat "$work/h"
fi
for path in /dashboard /dashboard/app.js /dashboard/app.css "/api/v1/admin/stats?seconds=5"; do
  get_len=$(c -o /dev/null -w '%{size_download}' "$base$path")
  c -I -o "$work/hh" "$base$path"
  head_len=$(sed -n 's/^[Cc]ontent-[Ll]ength: *\([0-9]*\).*/\1/p' "$work/hh")
  if head -n 1 "$work/hh" | grep -q '^HTTP/1.1 200' && [ -n "$head_len" ] &&
    { [ "$head_len" = "$get_len" ] || [ "${path#/api}" != "$path" ]; }; then
    ok "HEAD $path: 200 with a Content-Length (GET's, for the files)"
  else
    fail "HEAD $path: $(head -n 1 "$work/hh") length $head_len vs GET $get_len"
  fi
done
for q in 0 301 x; do
  code=$(c -o "$work/b" -w '%{http_code}' "$base/api/v1/admin/stats?seconds=$q")
  if [ "$code" = 400 ] && grep -q '"code":40001' "$work/b"; then
    ok "stats?seconds=$q: 400/40001"
  else
    fail "stats?seconds=$q: $code $(cat "$work/b")"
  fi
done
code=$(c -o /dev/null -D "$work/h" -w '%{http_code}' -X POST "$base/dashboard")
if [ "$code" = 405 ] && grep -qi '^allow: GET, HEAD' "$work/h"; then
  ok "POST /dashboard: 405, Allow: GET, HEAD"
else
  fail "POST /dashboard: $code"
fi

# ---- an event and a bounded load --------------------------------------------

now_ms=$(($(date +%s) * 1000))
c -o "$work/ev" -H 'Content-Type: application/json' -d "{\"name\":\"dashboard test\",\"stock\":1000000,\
\"price\":100,\"start_at\":$((now_ms - 60000)),\"end_at\":$((now_ms + 3600000)),\"per_user_limit\":1}" \
  "$base/api/v1/events"
ev=$(sed -n 's/.*"data":{"id":"\([0-9]*\)".*/\1/p' "$work/ev")
if [ -z "$ev" ]; then
  fail "create the event: $(cat "$work/ev")"
  finish
fi
ok "event $ev created"

timeout -s INT $((LOAD_MAX_S + 10)) "$SPIKEBENCH" --url "$base" --scenario mixed --event "$ev" \
  --rate 100 --connections 2 --pay-share 0.5 --read-share 0 --duration "$LOAD_MAX_S" \
  >"$work/bench.out" 2>&1 &
bpid=$!

# One snapshot of the page: chromium in a profile of its own, the DOM on
# stdout after 2.5 s of virtual time (two refreshes or more), its log kept.
snapshot() { # name
  mkdir -p "$work/profile.$1"
  timeout -k 5 $CHROME_MAX_S "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-extensions --disable-background-networking --disable-component-update \
    --disable-sync --enable-logging=stderr --v=0 --user-data-dir="$work/profile.$1" \
    --virtual-time-budget=2500 --dump-dom "$base/dashboard" >"$work/dom.$1" 2>"$work/chrome.$1"
  rc=$?
  rm -rf "$work/profile.$1"
  if [ "$rc" -ne 0 ] || ! grep -q '<table id="events"' "$work/dom.$1"; then
    fail "chromium ($CHROMIUM) could not load the page (exit $rc): $(grep -v dbus "$work/chrome.$1" | tail -n 5)"
    finish
  fi
  if grep -q "Refused to\|Content Security Policy" "$work/chrome.$1"; then
    fail "snapshot $1: the page broke its Content-Security-Policy: $(grep 'Refused to\|Content Security Policy' "$work/chrome.$1" | head -n 3)"
  fi
}

# A number the page shows: field $2 (a cell class) of event $ev in DOM $1,
# or an element's text by id ($2 = "#id").
shown() {
  case $2 in
  \#*) sed -n "s/.*id=\"${2#\#}\"[^>]*>\([^<]*\)<.*/\1/p" "$work/dom.$1" | head -n 1 ;;
  *) grep -o "<tr id=\"event-$ev\">.*" "$work/dom.$1" | sed -n "s/.*<td class=\"$2\">\([0-9]*\)<.*/\1/p" ;;
  esac
}

sampled() { sed -n 's/.*id="sample-t" data-t="\([0-9]*\)".*/\1/p' "$work/dom.$1"; }

check_live() { # name
  status=$(shown "$1" "#status")
  updates=$(shown "$1" "#updates")
  if [ "$status" = live ] && [ "${updates:-0}" -ge 1 ] && [ -n "$(shown "$1" reserved)" ]; then
    ok "snapshot $1: the page is live ($updates updates), event $ev shown"
  else
    fail "snapshot $1: status '$status', updates '$updates', row: $(grep -o "<tr id=\"event-$ev\">" "$work/dom.$1")"
  fi
}

# Wait until the load has taken some units, so the first snapshot is mid-sale.
i=0
while [ "$i" -lt 100 ] && ! c "$base/api/v1/events/$ev" | grep -q '"reserved":[1-9]'; do
  sleep 0.1
  i=$((i + 1))
done
# The sampler keeps one sample a second, and chromium's virtual time runs
# ahead of the clock: wait (5 s at most) for the first sample before the
# first snapshot, and for one newer than it showed before the second, so
# that two snapshots cannot fall within one second.
newest() { c "$base/api/v1/admin/stats?seconds=5" | sed -n 's/.*"t":\[\([0-9,]*\)\].*/\1/p' | tr ',' '\n' | tail -n 1; }
i=0
while [ "$i" -lt 50 ] && [ -z "$(newest)" ]; do
  sleep 0.1
  i=$((i + 1))
done
snapshot a
check_live a
ta=$(sampled a)
i=0
while [ "$i" -lt 50 ] && [ -n "$ta" ] && [ "$(newest)" -le "$ta" ] 2>/dev/null; do
  sleep 0.1
  i=$((i + 1))
done
snapshot b
check_live b
kill -0 "$bpid" 2>/dev/null || fail "the load ended before the second snapshot: $(tail -n 5 "$work/bench.out")"
stop_bench
tb=$(sampled b)
taken_a=$(($(shown a reserved) + $(shown a sold)))
taken_b=$(($(shown b reserved) + $(shown b sold)))
if [ -n "$ta" ] && [ -n "$tb" ] && [ "$tb" -gt "$ta" ] && [ "$taken_b" -gt "$taken_a" ]; then
  ok "the page updates under load: sample $ta -> $tb, units taken $taken_a -> $taken_b"
else
  fail "the page did not move under load: sample '$ta' -> '$tb', units taken $taken_a -> $taken_b"
fi

# ---- after the load: what the page shows is what the API says -----------------

sleep 1 # answers to requests in flight when the load stopped
c -o "$work/api" "$base/api/v1/events/$ev"
snapshot c
check_live c
c -o "$work/api2" "$base/api/v1/events/$ev"
# The event did not move while chromium read the page, so the page had to
# show exactly this.
if [ "$(sed 's/"traceId":"[^"]*"//' "$work/api")" != "$(sed 's/"traceId":"[^"]*"//' "$work/api2")" ]; then
  fail "the event still changed after the load stopped: $(cat "$work/api") vs $(cat "$work/api2")"
fi
for f in stock_total:stock available:available reserved:reserved sold:sold; do
  api=$(sed -n "s/.*\"${f%%:*}\":\([0-9]*\).*/\1/p" "$work/api2")
  page=$(shown c "${f#*:}")
  if [ -n "$api" ] && [ "$api" = "$page" ]; then
    ok "the page's ${f#*:} is the API's ${f%%:*}: $page"
  else
    fail "the page's ${f#*:} '$page' differs from the API's ${f%%:*} '$api'"
  fi
done
# The history adds up: every order of the run (qty 1 each) was counted in
# exactly one second, and every 201 (those and the event's creation).
c -o "$work/stats" "$base/api/v1/admin/stats?seconds=300"
sum() { sed -n "s/.*\"$1\":\[\([0-9,]*\)\].*/\1/p" "$work/stats" | tr ',' '\n' | awk '{s += $1} END {print s + 0}'; }
taken=$(($(shown c reserved) + $(shown c sold)))
if [ "$(sum orders)" = "$taken" ] && [ "$(sum 201)" = $((taken + 1)) ]; then
  ok "the history adds up: $taken orders over the run's seconds, $((taken + 1)) answers 201"
else
  fail "the history does not add up: orders $(sum orders), 201s $(sum 201), units taken $taken"
fi
if grep -q '<tr id="answers-201">' "$work/dom.c" && [ "$(shown c sold)" -gt 0 ]; then
  ok "the page shows answers by status (201 among them)"
else
  fail "no 201 row in the page's answers table"
fi

# ---- spiked drains --------------------------------------------------------------

kill -TERM "$spid"
if wait_file 15 "$work/spiked.rc" && [ "$(cat "$work/spiked.rc")" = 0 ]; then
  ok "spiked drained and exited 0"
else
  fail "spiked did not drain cleanly: rc $(cat "$work/spiked.rc" 2>/dev/null)"
  grep -v '"level":"info"' "$work/spiked.log" | tail -n 20
fi
finish
