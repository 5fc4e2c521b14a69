# tests/check.sh -- sourced by the sh suites: check NAME CMD... runs CMD
# with its output in $log, prints "ok NAME" or "FAIL NAME" and the log's
# tail, and counts into $passed and $failed; summary prints the closing
# line and sets the exit status.
passed=0
failed=0

check() {
  name=$1
  shift
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    sed 's/^/    /' "$log" | tail -n 40
  fi
}

summary() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
