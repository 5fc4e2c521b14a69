#!/bin/sh
# bench/backup.sh -- `make bench-backup`: a hot backup of a big store, while
# spiked serves reserves. Builds a store of N orders (bench_writer
# --store-only: reserved then cancelled, by N/10 users), starts spiked on
# it, then measures, in one run on one machine:
#   - reserve latency under an open-loop spikebench load with no backup
#     (the reference), then the same load while POST /api/v1/admin/backup
#     runs;
#   - the backup's duration and size against the live data file;
#   - `spiked --backup DEST` from a second process beside the server.
# Not a test: it never fails on speed.
#
#   ORDERS=10000000 RATE=1000 bench/backup.sh [DIR]
# DIR (default $TMPDIR) must be a real disk with room for the store twice
# over (10M orders: about 2.7 GiB each). KEEP=1 keeps the store for a rerun.
set -eu
cd "$(dirname "$0")/.."
ORDERS=${ORDERS:-10000000}
RATE=${RATE:-1000}
SPIKED=${SPIKED:-build/rel/spiked}
PORT=${PORT:-18490}
TMPDIR=${TMPDIR:-/tmp}
. bench/wrkout.sh
whole ORDERS RATE PORT
[ -d "${1:-$TMPDIR}" ] && [ -w "${1:-$TMPDIR}" ] ||
  { echo "backup.sh: ${1:-$TMPDIR} is not a writable directory" >&2; exit 2; }
base=${1:-$TMPDIR}/spike-bench-backup-$ORDERS
spid=""
sbpid="" # a load's spikebench: stopped, and waited for, before its files go
cleanup() {
  if [ -n "$sbpid" ]; then kill -TERM "$sbpid" 2>/dev/null && wait "$sbpid" 2>/dev/null || :; fi
  if [ -n "$spid" ]; then kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null || :; fi
  rm -rf "$base/backups" "$base/lat"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$base"
}
on_exit cleanup
port_free "$PORT"

ms() { echo $(($(date +%s%N) / 1000000)); }
mkdir -p "$base"
if [ ! -f "$base/data/data.mdb" ]; then
  rm -rf "$base/data"
  build/rel/bench/micro/bench_writer --preload "$ORDERS" --store-only "$base/data"
fi
mkdir -p "$base/backups" "$base/lat"
size=$(stat -c %s "$base/data/data.mdb")
# the store's users (N/10) within 3/4 of the tables
slots=1048576
while [ $((slots * 3 / 4)) -lt $((ORDERS / 10 + 100000)) ]; do slots=$((slots * 2)); done
t0=$(ms)
"$SPIKED" --listen 127.0.0.1:$PORT --data "$base/data" --backup-dir "$base/backups" \
  --map-size $((size * 2 + (1 << 30))) --max-users $slots --max-buyers $slots \
  --log-level warn 2>"$base/lat/spiked.log" &
spid=$!
until curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz/ready"; do
  kill -0 $spid 2>/dev/null || { cat "$base/lat/spiked.log" >&2; exit 1; }
  sleep 0.2
done
echo "spiked open on a store of $ORDERS orders ($((size / 1048576)) MiB): $(($(ms) - t0)) ms"
now=$(ms)
event=$((now / 1000)) # a new event each run, so a kept store (KEEP=1) takes the same load
curl -sf -o /dev/null -XPOST "http://127.0.0.1:$PORT/api/v1/events" -H 'Content-Type: application/json' \
  -d "{\"id\":$event,\"name\":\"live\",\"stock\":4000000000,\"price\":100,\"start_at\":$((now - 60000)),\"end_at\":$((now + 86400000))}"

load_start() { # seconds, user base, label: spikebench in the background (sbpid)
  label=$3
  build/rel/spikebench --url http://127.0.0.1:$PORT --event $event --rate "$RATE" --duration "$1" \
    --connections 16 --user-base "$2" --quiet --json "$base/lat/$3.json" >"$base/lat/$3.txt" &
  sbpid=$!
}
load_end() { # its line, once it is done
  wait "$sbpid" || :
  sbpid=""
  printf '%-16s ' "$label"
  grep -E '^ +(corrected|status) ' "$base/lat/$label.txt" | tr -s ' \n' ' '
  echo
}

# The command first, with no load: how long a copy takes here.
t0=$(ms)
"$SPIKED" --data "$base/data" --backup "$base/backups/cmd"
d=$(($(ms) - t0))
echo "spiked --backup beside the idle server: $d ms"
# Load runs as long as a backup (at least 10 s): the reference, then the
# same load with the backup started 1 s into it.
secs=$((d / 1000 + 2))
[ $secs -lt 10 ] && secs=10
echo "reserve load: $RATE/s open loop, 16 connections, $secs s (spikebench)"
load_start $secs 1 "no backup"
load_end
load_start $secs 100000000 "during backup"
sleep 1
t0=$(ms)
curl -s -XPOST "http://127.0.0.1:$PORT/api/v1/admin/backup" -H 'Content-Type: application/json' \
  -d '{"name":"hot"}' >"$base/lat/backup.json"
t1=$(ms)
load_end
echo "POST /api/v1/admin/backup under load: $((t1 - t0)) ms: $(cat "$base/lat/backup.json")"
bsize=$(stat -c %s "$base/backups/hot/data.mdb")
lsize=$(stat -c %s "$base/data/data.mdb")
echo "sizes: live data.mdb $((lsize / 1048576)) MiB (was $((size / 1048576)) MiB at start), backup $((bsize / 1048576)) MiB"
