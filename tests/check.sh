# tests/check.sh -- sourced by the sh suites (test_exports.sh, test_unit.sh)
# after they set $tmp: `check NAME CMD...` runs CMD with its output in
# $tmp/log, prints "ok NAME", or "FAIL NAME" and the log's last lines, and
# counts into $passed and $failed for the suite's closing line.
passed=0
failed=0

check() {
  name=$1
  shift
  if "$@" >"$tmp/log" 2>&1; then
    passed=$((passed + 1))
    echo "ok $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/    /' "$tmp/log" | tail -n 30
  fi
}
