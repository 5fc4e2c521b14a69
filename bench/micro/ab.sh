#!/bin/sh
# ab.sh -- two builds of bench_writer, alternated in one run, for a
# before/after that machine noise hits alike. Each round runs A then B for
# every batch size; the medians of the engine's rate and of the writer's CPU
# per order are printed per build, with B/A.
#
#   bench/micro/ab.sh A_BINARY B_BINARY [ROUNDS] [bench_writer args...]
#   e.g. bench/micro/ab.sh /tmp/old/bench_writer build/rel/bench/micro/bench_writer 3 --users random
#
# BATCHES (default "256 4096") picks the batch sizes; DIR (default $TMPDIR or
# /tmp) holds the data directories. Not a test: it never fails on speed.
set -eu
A=$1
B=$2
ROUNDS=${3:-3}
shift 3 2>/dev/null || shift $#
BATCHES=${BATCHES:-"256 4096"}
DIR=${DIR:-${TMPDIR:-/tmp}}
out=$(mktemp "${TMPDIR:-/tmp}/spike-ab.XXXXXX")
trap 'rm -f "$out"' EXIT
trap 'exit 130' INT TERM

median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

r=1
while [ "$r" -le "$ROUNDS" ]; do
  for b in $BATCHES; do
    for which in A B; do
      bin=$A
      [ "$which" = B ] && bin=$B
      line=$("$bin" --reps 1 --batch "$b" "$@" "$DIR" 2>&1 | grep "^batch *$b:") || true
      rate=$(printf '%s\n' "$line" | sed -n 's/.*engine \([0-9]*\) durable.*/\1/p')
      cpu=$(printf '%s\n' "$line" | sed -n 's/.*writer thread \([0-9.]*\) us.*/\1/p')
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
