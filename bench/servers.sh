# bench/servers.sh -- sourced by bench/http.sh and bench/compare.sh: the
# servers they measure, started the same way for both.
#
#   bench_spiked PORT [spiked flags]   durable spiked in $work/data with room for
#                                      every fresh user, and event 1 (stock 4e9); sets spid
#   bench_nginx PORT SPIKED_PORT       nginx, $NGINX_WORKERS workers (1), access log off, answering
#                                      every path with a 200 and a body as long as
#                                      spiked's reserve answer; sets npid and pad
#   bench_stop                         stops both (for an EXIT trap)
# $work (a scratch directory) and $SPIKED must be set; $SERVER_CPUS, when
# set, pins both servers to those CPUs (taskset -c).

wait_port() { # PORT PATH [PID LOG]: until it answers, at most 10 s; PID must live
  i=0
  until curl -s -o /dev/null "http://127.0.0.1:$1/$2"; do
    i=$((i + 1))
    if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
      echo "bench: the server for port $1 exited:" >&2
      cat "$4" >&2
      exit 1
    fi
    [ $i -gt 100 ] && { echo "bench: nothing on port $1" >&2; exit 1; }
    sleep 0.1
  done
}

bench_spiked() {
  port=$1
  shift
  port_free "$port"
  ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$SPIKED" --listen 127.0.0.1:"$port" --data "$work/data" --log-level warn \
    --max-buyers 16777216 --max-reserved 16777216 "$@" 2>"$work/spiked.log" &
  spid=$!
  wait_port "$port" healthz/live "$spid" "$work/spiked.log"
  curl -s -o /dev/null -X POST "http://127.0.0.1:$port/api/v1/events" \
    -H 'Content-Type: application/json' \
    -d '{"id":1,"name":"bench","stock":4000000000,"price":999,"start_at":0,"end_at":253402300799999,"per_user_limit":1}'
}

bench_nginx() {
  port_free "$1"
  body=$(curl -s -X POST "http://127.0.0.1:$2/api/v1/events/1/orders" \
    -H 'Content-Type: application/json' -d '{"user_id":"1"}')
  pad=$(printf '%s' "$body" | tr -c 'x' 'x')
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<NGX
worker_processes ${NGINX_WORKERS:-1};
daemon off;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$1;
    location / { default_type application/json; return 200 '$pad'; }
  }
}
NGX
  ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
  npid=$!
  wait_port "$1" "" "$npid" "$work/nginx/error.log"
}

# A server's exit status on its signal is no failure here: under set -e a
# non-zero wait would end the cleanup before it removed $work.
bench_stop() {
  if [ -n "${spid:-}" ]; then kill -TERM "$spid" 2>/dev/null && wait "$spid" 2>/dev/null || true; fi
  if [ -n "${npid:-}" ]; then kill -QUIT "$npid" 2>/dev/null && wait "$npid" 2>/dev/null || true; fi
  spid=""
  npid=""
}
