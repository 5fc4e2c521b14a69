# bench/wrkout.sh -- sourced by the bench scripts that run wrk and read its
# output:
#   whole NAME...  each named variable a whole number of 1 or more, or exit 2
#   wrk_ok FILE    wrk measured a rate above 0 in FILE, or its output and exit 1
#                  (run wrk as `wrk ... >FILE 2>&1 || :`, so that a failed run
#                  reaches it under set -e)
#   rps FILE       the Requests/sec wrk printed in FILE
#   p99 FILE       its 99th percentile (wrk --latency), as printed ("1.23ms")
#   non2xx FILE    the answers wrk counted as neither 2xx nor 3xx (empty: none)
#   cpus_here      the taskset -c lists SERVER_CPUS and LOAD_CPUS name CPUs
#                  this machine has, or exit 2
#   median         the median of the numbers on stdin, one a line
#   ack_of FLAGS.. the --ack spiked's flags give (durable when none does)
#   on_exit FN     FN runs when the script exits, and SIGHUP, SIGINT, SIGPIPE
#                  and SIGTERM exit it with 128+signal (so FN runs then too)
#   port_free PORT...  nothing listens on 127.0.0.1:PORT, or exit 2: a server
#                  that cannot bind would leave another program's answers to
#                  be measured under its name
whole() {
  for v in "$@"; do
    eval "x=\${$v:-}"
    case $x in
    '' | *[!0-9]* | 0*) echo "${0##*/}: $v is a whole number of 1 or more, not \"$x\"" >&2; exit 2 ;;
    esac
  done
}
wrk_ok() {
  awk -v r="$(rps "$1")" 'BEGIN { exit !(r + 0 > 0) }' ||
    { echo "${0##*/}: wrk measured nothing:" >&2; cat "$1" >&2; exit 1; }
}
ack_of() {
  ack=durable
  prev=""
  for a in "$@"; do
    case "$a" in --ack=*) ack=${a#--ack=} ;; esac
    [ "$prev" = "--ack" ] && ack=$a
    prev=$a
  done
  echo "$ack"
}
on_exit() {
  trap "$1" EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 141' PIPE
  trap 'exit 143' TERM
}
port_free() {
  for p in "$@"; do
    # 7: the connection was refused; anything else (an answer, an error
    # status, a timeout) is something there
    rc=0
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/" || rc=$?
    [ "$rc" -eq 7 ] || { echo "${0##*/}: something already listens on 127.0.0.1:$p" >&2; exit 2; }
  done
}
rps() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1"; }
non2xx() { sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$1"; }
cpus_here() {
  for cpus in "${SERVER_CPUS:-0}" "${LOAD_CPUS:-0}"; do
    taskset -c "$cpus" true 2>/dev/null ||
      { echo "${0##*/}: no CPUs $cpus here (SERVER_CPUS, LOAD_CPUS)" >&2; exit 2; }
  done
}
p99() { sed -n 's/^ *99% *\(.*\)$/\1/p' "$1"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
