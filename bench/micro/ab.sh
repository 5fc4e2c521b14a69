#!/bin/sh
# ab.sh -- two builds of bench_writer, alternated in one run, for a
# before/after that machine noise hits alike. Each round runs A then B for
# every batch size; the medians of the engine's rate and of the writer's CPU
# per order are printed per build, with B/A.
#
#   bench/micro/ab.sh A_BINARY B_BINARY [ROUNDS] [bench_writer args...]
#   e.g. bench/micro/ab.sh /tmp/old/bench_writer build/rel/bench/micro/bench_writer 3 --users random
#
# ROUNDS (default 3) is a whole number, 1 or more; a third argument that is
# not a whole number is the first bench_writer argument, with ROUNDS 3.
# BATCHES (default "256 4096") picks the batch sizes; DIR (default $TMPDIR or
# /tmp) holds the data directories. Not a test: it never fails on speed, but
# it exits 2 on a bad argument or a binary that is not executable, and 1 when
# a bench_writer run fails or prints no rate (its output shown on stderr).
set -eu
usage="usage: bench/micro/ab.sh A_BINARY B_BINARY [ROUNDS] [bench_writer args...]"
if [ $# -lt 2 ]; then
  echo "$usage" >&2
  exit 2
fi
A=$1
B=$2
shift 2
ROUNDS=3
case ${1:-} in
'' | *[!0-9]*) ;; # no ROUNDS: the first bench_writer argument, or none
*)
  ROUNDS=$1
  shift
  ;;
esac
if [ "$ROUNDS" -lt 1 ]; then
  echo "ab.sh: ROUNDS must be 1 or more, not $ROUNDS" >&2
  echo "$usage" >&2
  exit 2
fi
for bin in "$A" "$B"; do
  if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
    echo "ab.sh: $bin is not an executable file" >&2
    exit 2
  fi
done
BATCHES=${BATCHES:-"256 4096"}
DIR=${DIR:-${TMPDIR:-/tmp}}
out=$(mktemp "${TMPDIR:-/tmp}/spike-ab.XXXXXX")
trap 'rm -f "$out" "$out.run"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

r=1
while [ "$r" -le "$ROUNDS" ]; do
  for b in $BATCHES; do
    for which in A B; do
      bin=$A
      [ "$which" = B ] && bin=$B
      rc=0
      "$bin" --reps 1 --batch "$b" "$@" "$DIR" >"$out.run" 2>&1 || rc=$?
      line=$(grep "^batch *$b:" "$out.run") || true
      rate=$(printf '%s\n' "$line" | sed -n 's/.*engine \([0-9]*\) durable.*/\1/p')
      cpu=$(printf '%s\n' "$line" | sed -n 's/.*writer thread \([0-9.]*\) us.*/\1/p')
      if [ "$rc" -ne 0 ] || [ -z "$rate" ]; then
        cat "$out.run" >&2
        why="exit status $rc"
        [ "$rc" -ne 0 ] || why="no engine rate in its output"
        echo "ab.sh: $which ($bin) failed at batch $b, round $r: $why" >&2
        exit 1
      fi
      echo "$which $b ${rate:-0} ${cpu:-0}" >>"$out"
      printf 'round %d batch %5d %s: %9s orders/s, writer %s us/order\n' "$r" "$b" "$which" \
        "${rate:-?}" "${cpu:-?}"
    done
  done
  r=$((r + 1))
done
echo "medians of $ROUNDS rounds (A: $A, B: $B)"
for b in $BATCHES; do
  ra=$(awk -v b="$b" '$1 == "A" && $2 == b {print $3}' "$out" | median)
  rb=$(awk -v b="$b" '$1 == "B" && $2 == b {print $3}' "$out" | median)
  ca=$(awk -v b="$b" '$1 == "A" && $2 == b {print $4}' "$out" | median)
  cb=$(awk -v b="$b" '$1 == "B" && $2 == b {print $4}' "$out" | median)
  awk -v b="$b" -v ra="$ra" -v rb="$rb" -v ca="$ca" -v cb="$cb" 'BEGIN {
    printf "batch %5d: A %9.0f orders/s (%.2f us/order)  B %9.0f orders/s (%.2f us/order)  B/A %.2f\n",
      b, ra, ca, rb, cb, (ra > 0) ? rb / ra : 0 }'
done
