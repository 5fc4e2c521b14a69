#!/bin/sh
# run.sh -- run the engine micro-benchmarks in sequence and print one table.
#
#   bench/micro/run.sh [DIR]
#   bench/micro/run.sh --smoke [DIR]   each binary at a tiny size (about 15 s
#                                      in all), for make test: exits 1 when
#                                      one fails or prints no summary line
#
# Runs build/rel/bench/micro/{bench_ring,bench_reserve,bench_writer,
# bench_lifecycle,bench_disk} (built by `make bench`), showing each one's
# own output as it comes, then a combined table of what, value, reference
# and ratio, collected from the
# "summary<TAB>..." lines each binary prints, and the writer's goal lines.
# DIR (default $TMPDIR or /tmp) holds the benchmarks' data directories; it
# must be on a real disk, since bench_writer measures fsync'd commits.
#
# Benchmarks are not tests: this exits 0 whatever the numbers are. A binary
# that is missing or fails is reported in the table. --smoke judges only
# that every benchmark still runs to its end, never a number.

cd "$(dirname "$0")/../.." || exit 0
BIN=build/rel/bench/micro
SMOKE=0
if [ "${1:-}" = --smoke ]; then
  SMOKE=1
  shift
fi
DIR=${1:-${TMPDIR:-/tmp}}
failed=0
OUT=$(mktemp "${TMPDIR:-/tmp}/spike-bench-out.XXXXXX") || exit 0
trap 'rm -f "$OUT" "$OUT.one"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

run() {
  name=$1
  shift
  echo "== $name"
  if [ ! -x "$BIN/$name" ]; then
    echo "$BIN/$name is missing: run make bench"
    printf 'summary\t%s\tmissing\t-\t-\n' "$name" >>"$OUT"
    failed=1
    return
  fi
  start=$(date +%s)
  "$BIN/$name" "$@" >"$OUT.one" 2>&1
  rc=$?
  cat "$OUT.one"
  cat "$OUT.one" >>"$OUT"
  echo "($name: $(($(date +%s) - start)) s)"
  if [ "$rc" -ne 0 ]; then
    echo "$name exited with status $rc"
    printf 'summary\t%s\tFAILED (exit %d)\t-\t-\n' "$name" "$rc" >>"$OUT"
    failed=1
  elif ! grep -q '^summary' "$OUT.one"; then
    echo "$name printed no summary line"
    failed=1
  fi
  echo
}

if [ "$SMOKE" = 1 ]; then
  run bench_ring --reps 1 --msgs 100000
  run bench_reserve --reps 1 --seconds 0.2 --calls 65536 --dir "$DIR"
  run bench_writer --reps 1 --seconds 0.2 --orders 65536 "$DIR"
  run bench_lifecycle --orders 500 --expire 1000 --window 1 "$DIR"
  run bench_disk --seconds 0.2 --jobs 2 "$DIR"
  [ "$failed" = 0 ] && echo "micro-benchmarks: all ran" && exit 0
  echo "micro-benchmarks: one or more failed" && exit 1
fi

run bench_ring
run bench_reserve --dir "$DIR"
run bench_writer "$DIR"
run bench_lifecycle "$DIR"
run bench_disk "$DIR"

echo "== summary ($(uname -n), $(nproc) CPUs, data under $DIR)"
awk -F '\t' '
  $1 == "summary" {
    n++; what[n] = $2; val[n] = $3; ref[n] = $4; ratio[n] = $5
    if (length($2) > w1) w1 = length($2)
    if (length($3) > w2) w2 = length($3)
    if (length($4) > w3) w3 = length($4)
  }
  END {
    if (w1 < 4) w1 = 4; if (w2 < 5) w2 = 5; if (w3 < 9) w3 = 9
    fmt = "%-" w1 "s  %" w2 "s  %" w3 "s  %s\n"
    printf fmt, "what", "value", "reference", "ratio"
    for (i = 1; i <= n; i++) printf fmt, what[i], val[i], ref[i], ratio[i]
  }' "$OUT"
grep '^goal:' "$OUT"
exit 0
