#!/bin/sh
# bench/soak.sh -- `make soak`: spiked for a long while at half of its peak
# with a realistic mix, watched from outside (issue 11, row 9).
#
#   DURATION=3600 bench/soak.sh [OUTDIR]
#
# 1. Starts spiked (ack=durable) on 127.0.0.1 with a fresh store and one
#    event whose unpaid orders expire after PAY_TIMEOUT_S (30).
# 2. Finds the peak: spikebench's mixed scenario, closed loop, PEAK_S s
#    (PAY_TIMEOUT_S + 20 by default), counting only its last 20 s: by then
#    the unpaid orders of its start are expiring, a write each, as they will
#    all hour (a peak taken before the first expiry, as this did at first,
#    was out of reach once they began: the hour ran behind its schedule).
# 3. Runs the mix open loop at half of that for DURATION seconds: spikebench
#    mixed (reserve, pay half of the 201s, read the event), and beside it,
#    with curl: a reserve then cancel every 200 ms, a user's orders every
#    500 ms, and a feed consumer long-polling (wait_ms 5000) from seq 0.
#    The other half of the orders are never paid: they expire.
# 4. Every SAMPLE_S (10) s records spiked's anonymous and file-backed RSS
#    (the store's mapped pages count in the second), its open fds, and its
#    error counters from /metrics.
# 5. Writes OUTDIR/samples.csv, OUTDIR/soak.svg (RSS and fds over time),
#    OUTDIR/progress.txt (spikebench's line per second: p50/p99/max),
#    OUTDIR/summary.txt, and prints the summary: the memory and fds after
#    warm-up (WARMUP_S, a tenth of the run; first, last and max), p99 per
#    ten minutes, the answers by status.
#
# A benchmark, not a test: it exits 0 whatever the numbers are, 1 only when
# it could not run. Everything talks to 127.0.0.1 and stops at DURATION.
set -eu
cd "$(dirname "$0")/.."
DURATION=${DURATION:-3600}
PAY_TIMEOUT_S=${PAY_TIMEOUT_S:-30}
. bench/wrkout.sh
whole DURATION PAY_TIMEOUT_S # before the defaults below compute with them
PEAK_S=${PEAK_S:-$((PAY_TIMEOUT_S + 20))}
SAMPLE_S=${SAMPLE_S:-10}
WARMUP_S=${WARMUP_S:-$((DURATION / 10))}
CONNS=${CONNS:-64}
PORT=${PORT:-18590}
SPIKED=${SPIKED:-build/rel/spiked}
SPIKEBENCH=${SPIKEBENCH:-build/rel/spikebench}
TMPDIR=${TMPDIR:-/tmp}
whole PEAK_S SAMPLE_S CONNS PORT
case $WARMUP_S in '' | *[!0-9]*) echo "soak: WARMUP_S is a whole number of 0 or more, not \"$WARMUP_S\"" >&2; exit 2 ;; esac
OUT=${1:-$TMPDIR/spike-soak}
mkdir -p "$OUT"
work=$(mktemp -d "$TMPDIR/spike-soak.XXXXXX")
URL=http://127.0.0.1:$PORT
spid=""
# Every background job's pid (dash's jobs -p lists none in a script): the
# side mix's loops, the sampler, and spikebench, which runs in the
# background and is waited for, so that a signal ends the run at once
# (a trap waits for a command in the foreground: an hour, here).
bg=""
stop_bg() {
  for p in $bg; do kill "$p" 2>/dev/null || true; done
  for p in $bg; do wait "$p" 2>/dev/null || true; done
  bg=""
}
cleanup() {
  stop_bg
  if [ -n "$spid" ]; then kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null || true; fi
  rm -rf "$work"
}
on_exit cleanup
port_free "$PORT"

for tool in curl awk; do
  command -v $tool >/dev/null || { echo "soak: $tool missing" >&2; exit 1; }
done
for bin in "$SPIKED" "$SPIKEBENCH"; do
  [ -x "$bin" ] || { echo "soak: $bin missing (make)" >&2; exit 1; }
done

# Tables for every order of the hour: a fresh user per reserve.
"$SPIKED" --listen 127.0.0.1:$PORT --data "$work/data" --log-level warn --map-size 16G \
  --max-buyers 33554432 --max-users 33554432 --max-reserved 4194304 \
  2>"$OUT/spiked.log" &
spid=$!
sleep 0.2 # an address in use: spiked exits at once, before another server answers below
kill -0 $spid 2>/dev/null || { echo "soak: spiked exited (see $OUT/spiked.log)" >&2; exit 1; }
i=0
until curl -s -o /dev/null "$URL/healthz/ready"; do
  kill -0 $spid 2>/dev/null || { echo "soak: spiked exited (see $OUT/spiked.log)" >&2; exit 1; }
  i=$((i + 1))
  [ $i -gt 300 ] && { echo "soak: spiked did not start (see $OUT/spiked.log)" >&2; exit 1; }
  sleep 0.1
done
curl -s -o /dev/null -X POST "$URL/api/v1/events" -H 'Content-Type: application/json' \
  -d '{"id":1,"name":"soak","stock":4000000000,"price":999,"start_at":0,
       "end_at":253402300799999,"per_user_limit":2,"pay_timeout_s":'"$PAY_TIMEOUT_S"'}'

# The side mix: cancels, a user's orders, a feed consumer. Each loop stops
# at the end time; curl's own timeouts bound every request.
end=$(($(date +%s) + PEAK_S + DURATION))
(
  u=4000000000000
  while [ "$(date +%s)" -lt $end ]; do
    u=$((u + 1))
    id=$(curl -s -m 5 -X POST "$URL/api/v1/events/1/orders" -H 'Content-Type: application/json' \
      -d '{"user_id":"'$u'"}' | sed -n 's/.*"data":{"id":"\([0-9]*\)".*/\1/p')
    [ -n "$id" ] && curl -s -m 5 -o /dev/null -w '%{http_code}\n' -X POST \
      "$URL/api/v1/orders/$id/cancel" >>"$work/cancel.codes"
    sleep 0.2
  done
) &
bg="$bg $!"
(
  while [ "$(date +%s)" -lt $end ]; do
    curl -s -m 5 -o /dev/null -w '%{http_code}\n' "$URL/api/v1/users/4000000000001/orders" \
      >>"$work/user.codes"
    sleep 0.5
  done
) &
bg="$bg $!"
(
  after=0
  while [ "$(date +%s)" -lt $end ]; do
    next=$(curl -s -m 10 "$URL/api/v1/feed?after=$after&limit=1000&wait_ms=5000" |
      sed -n 's/.*"next":"\{0,1\}\([0-9]*\).*/\1/p')
    if [ -n "$next" ]; then
      echo ok >>"$work/feed.codes"
      after=$next
    else
      echo fail >>"$work/feed.codes"
      sleep 1
    fi
  done
) &
bg="$bg $!"

# The peak of the same mix (the side mix above already running), then
# half of it; the hour starts after it.
"$SPIKEBENCH" --url "$URL" --scenario mixed --max --connections $CONNS --duration "$PEAK_S" \
  --user-base 1 --quiet --json "$work/peak.json" >"$OUT/peak.txt" 2>&1 &
sb=$!
bg="$bg $sb"
wait "$sb" || true
# answers per second over the timeline's last 20 rows (or all, if fewer)
peak=$(tr '{' '\n' <"$work/peak.json" 2>/dev/null | sed -n 's/^"t":[0-9.]*,.*"won":\([0-9]*\),.*/\1/p' |
  awk '{ a[NR] = $1 } END { k = NR > 20 ? NR - 19 : 1; for (i = k; i <= NR; i++) s += a[i];
         if (NR > 0) printf "%.1f", s / (NR - k + 1) }')
[ -n "$peak" ] || { echo "soak: the peak run failed (see $OUT/peak.txt)" >&2; exit 1; }
rate=$(awk -v p="$peak" 'BEGIN { r = int(p / 2); if (r < 1) r = 1; print r }')
echo "soak: peak $peak req/s; running at $rate req/s for $DURATION s, samples in $OUT"
end=$(($(date +%s) + DURATION))

# The sampler: seconds, anon RSS kB, file RSS kB, fds, failed commits.
(
  echo "t_s,rss_anon_kb,rss_file_kb,fds,commit_failures" >"$OUT/samples.csv"
  t0=$(date +%s)
  while [ "$(date +%s)" -lt $end ] && kill -0 $spid 2>/dev/null; do
    anon=$(awk '/^RssAnon:/ { print $2 }' /proc/$spid/status)
    file=$(awk '/^RssFile:/ { print $2 }' /proc/$spid/status)
    fds=$(ls /proc/$spid/fd | wc -l)
    fails=$(curl -s -m 5 "$URL/metrics" | awk '/^spike_commit_failures_total / { print $2 }')
    echo "$(($(date +%s) - t0)),$anon,$file,$fds,${fails:-?}" >>"$OUT/samples.csv"
    sleep "$SAMPLE_S"
  done
) &
bg="$bg $!"

"$SPIKEBENCH" --url "$URL" --scenario mixed --rate "$rate" --connections $CONNS \
  --duration "$DURATION" --user-base 100000000 --progress --json "$OUT/run.json" \
  >"$OUT/run.txt" 2>&1 &
sb=$!
bg="$bg $sb"
wait "$sb" || true
# the loops and the sampler stop at the end time by themselves
for p in $bg; do wait "$p" 2>/dev/null || true; done
bg=""
grep '^\[' "$OUT/run.txt" >"$OUT/progress.txt" || true

# The plot: RSS (anon and file, MiB) and fds against minutes.
awk -F, 'BEGIN { n = 0 } NR > 1 && $2 != "" {
    t[n] = $1 / 60; a[n] = $2 / 1024; f[n] = $3 / 1024; d[n] = $4; n++
    if ($2 / 1024 > ym) ym = $2 / 1024
    if ($3 / 1024 > ym) ym = $3 / 1024
    if ($4 > dm) dm = $4
    tm = $1 / 60
  }
  function line(v, m, colour,   i, s) {
    s = ""
    for (i = 0; i < n; i++)
      s = s sprintf("%.1f,%.1f ", 60 + 860 * t[i] / (tm ? tm : 1), 340 - 300 * v[i] / (m ? m : 1))
    printf "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"%s\"/>\n", colour, s
  }
  END {
    ym = ym * 1.1; dm = dm * 1.1
    print "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"400\" font-family=\"sans-serif\" font-size=\"12\">"
    print "<rect width=\"960\" height=\"400\" fill=\"white\"/>"
    print "<line x1=\"60\" y1=\"340\" x2=\"920\" y2=\"340\" stroke=\"black\"/><line x1=\"60\" y1=\"40\" x2=\"60\" y2=\"340\" stroke=\"black\"/>"
    printf "<text x=\"60\" y=\"360\">0</text><text x=\"880\" y=\"360\">%.0f min</text>\n", tm
    printf "<text x=\"5\" y=\"45\">%.0f MiB</text><text x=\"925\" y=\"45\">%.0f fds</text>\n", ym, dm
    line(a, ym, "#c0392b"); line(f, ym, "#2980b9"); line(d, dm, "#27ae60")
    print "<text x=\"70\" y=\"25\" fill=\"#c0392b\">RSS anonymous</text>"
    print "<text x=\"200\" y=\"25\" fill=\"#2980b9\">RSS file (the store mapped)</text>"
    print "<text x=\"400\" y=\"25\" fill=\"#27ae60\">open fds (right scale)</text>"
    print "</svg>"
  }' "$OUT/samples.csv" >"$OUT/soak.svg"

count() { [ -f "$1" ] && sort "$1" | uniq -c | awk '{ printf "%s %s; ", $2, $1 }'; }
{
  echo "soak: $DURATION s at $rate req/s (peak $peak), $CONNS connections, $(date -u +%FT%TZ)"
  awk -F, -v warm="$WARMUP_S" 'NR == 1 || $1 < warm { next }
    !w { w = 1; a0 = $2; f0 = $3; d0 = $4; t0 = $1 }
    { a1 = $2; f1 = $3; d1 = $4; t1 = $1; if ($2 + 0 > am) am = $2 + 0; if ($4 + 0 > dm) dm = $4 + 0 }
    END { printf "after %d s of warm-up: anon RSS %d kB at %d s, %d kB at %d s (max %d); file RSS %d -> %d kB\n", warm, a0, t0, a1, t1, am, f0, f1
          printf "fds: %d at %d s, %d at %d s (max %d)\n", d0, t0, d1, t1, dm }' "$OUT/samples.csv"
  echo "failed commits (last sample): $(tail -n 1 "$OUT/samples.csv" | cut -d, -f5)"
  # (a second in which nothing was sent, after the schedule's end, is not one of the hour's)
  awk '/ sent 0 / { next } { for (i = 1; i < NF; i++) if ($i == "p99") v = $(i + 1); s = int((NR - 1) / 600)
         if (v + 0 > m[s]) m[s] = v + 0; sum[s] += v; c[s]++ }
       END { for (k = 0; k in c; k++) printf "p99 of each second, minutes %d-%d: mean %.3f, max %.3f ms\n", k * 10, k * 10 + 10, sum[k] / c[k], m[k] }' \
    "$OUT/progress.txt"
  grep -E '^  (requests|latency|status|codes|socket)' "$OUT/run.txt" || true
  echo "side mix: cancel $(count "$work/cancel.codes")user orders $(count "$work/user.codes")feed $(count "$work/feed.codes")"
} | tee "$OUT/summary.txt"
