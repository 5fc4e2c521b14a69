# bench/wrkout.sh -- sourced by the bench scripts that read wrk's output:
#   rps FILE      the Requests/sec wrk printed in FILE
#   p99 FILE      its 99th percentile (wrk --latency), as printed ("1.23ms")
#   median        the median of the numbers on stdin, one a line
rps() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1"; }
p99() { sed -n 's/^ *99% *\(.*\)$/\1/p' "$1"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
