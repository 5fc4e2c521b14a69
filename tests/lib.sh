# tests/lib.sh -- what the shell suites share, sourced after they set
# $work (their temporary directory), $SPIKED and START_MAX_S: the ok/fail
# tally, waiting for a file, and spiked started on a free loopback port
# (port 0, then the port read from its log) and stopped.

passed=0
failed=0
spid="" # spiked's pid once known
port="" # its port once it listens

ok() {
  passed=$((passed + 1))
  echo "ok $*"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL $*"
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

# Wait up to $1 seconds for file $2 to exist.
wait_file() {
  i=0
  while [ ! -e "$2" ] && [ "$i" -lt $(($1 * 10)) ]; do
    sleep 0.1
    i=$((i + 1))
  done
  [ -e "$2" ]
}

# Start $SPIKED on 127.0.0.1:0 with the flags given, its stderr in
# $work/spiked.log and its exit status, once it exits, in $work/spiked.rc.
# Sets spid and port; fails when it is not listening within START_MAX_S.
spiked_up() {
  (
    "$SPIKED" --listen 127.0.0.1:0 "$@" 2>"$work/spiked.log" </dev/null &
    echo $! >"$work/spiked.pid"
    wait $!
    echo $? >"$work/spiked.rc"
  ) &
  wait_file 5 "$work/spiked.pid" && spid=$(cat "$work/spiked.pid")
  i=0
  while [ -z "$port" ] && [ ! -e "$work/spiked.rc" ] && [ "$i" -lt $((START_MAX_S * 10)) ]; do
    sleep 0.1
    i=$((i + 1))
    port=$(sed -n 's/.*"msg":"spiked [^"]* listening".*"listen":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' \
      "$work/spiked.log" 2>/dev/null)
  done
  [ -n "$port" ]
}

# Stop spiked if it still runs: SIGTERM, and SIGKILL after $1 seconds.
spiked_down() {
  if [ -n "$spid" ] && [ ! -e "$work/spiked.rc" ]; then
    kill -TERM "$spid" 2>/dev/null
    wait_file "$1" "$work/spiked.rc" || { kill -KILL "$spid" 2>/dev/null && wait_file 5 "$work/spiked.rc"; }
  fi
}
