#!/bin/sh
# deploy/spike-cluster.sh -- N spiked nodes behind nginx on 127.0.0.1, each
# owning the events nginx's consistent hash gives it (docs/scale-out.md).
# For tests and demos on one machine; a real deployment puts each node on
# its own machine and writes the same upstreams by hand.
#
#   deploy/spike-cluster.sh start DIR N   start N nodes and nginx in DIR (a new or
#                                         empty directory); prints the router's URL
#   deploy/spike-cluster.sh stop DIR      SIGTERM nginx and every node, SIGKILL
#                                         what is still running after STOP_MAX_S
#   deploy/spike-cluster.sh kill DIR I    kill -9 node I (0 .. N-1)
#   deploy/spike-cluster.sh restart DIR I start node I again, on its port and data
#                                         (once the old one is gone: up to 2 s)
#   deploy/spike-cluster.sh url DIR [I]   the router's URL, or node I's
#
# DIR holds: router.url; nginx/ (nginx.conf, upstreams.conf, error.log, the pid);
# node-I/ (data/, port, pid, log). Nodes listen on free ports picked at the
# first start and keep them; nginx on ROUTER_PORT, or a free one.
#
# Environment: SPIKED (build/rel/spiked), NGINX (nginx), SPIKED_ARGS (more
# flags for every node), NGINX_WORKERS (1), ROUTER_PORT (0: pick),
# ACCESS_LOG (off, or a file for nginx's access log), START_MAX_S (15),
# STOP_MAX_S (15), UPSTREAM_KEEPALIVE (64: idle connections to the nodes
# each nginx worker keeps; raise it with the clients' concurrency).
set -u
here=$(cd "$(dirname "$0")" && pwd)
SPIKED=${SPIKED:-build/rel/spiked}
NGINX=${NGINX:-nginx}
SPIKED_ARGS=${SPIKED_ARGS:-}
NGINX_WORKERS=${NGINX_WORKERS:-1}
ROUTER_PORT=${ROUTER_PORT:-0}
ACCESS_LOG=${ACCESS_LOG:-off}
UPSTREAM_KEEPALIVE=${UPSTREAM_KEEPALIVE:-64}
START_MAX_S=${START_MAX_S:-15}
STOP_MAX_S=${STOP_MAX_S:-15}
NODES_MAX=64

die() {
  echo "spike-cluster: $*" >&2
  if [ -n "${starting:-}" ]; then # a start that fails leaves nothing running
    st_dir=$starting
    starting=""
    cmd_stop "$st_dir" >/dev/null 2>&1
    rm -rf "$st_dir/nginx" "$st_dir/nodes" "$st_dir/router.url"
  fi
  exit 1
}

# alive PIDFILE: the pid in it runs (a zombie nobody reaped yet does not).
# Its state is read once, from /proc (Linux only): a process reaped between
# two looks at it (kill -0, then its stat) must not count as running. The
# state follows the last ") " of the stat line, whatever the command name.
alive() {
  al_pid=$(cat "$1" 2>/dev/null) && [ -n "$al_pid" ] || return 1
  al_stat=$(cat "/proc/$al_pid/stat" 2>/dev/null) || return 1
  al_state=${al_stat##*) }
  al_state=${al_state%% *}
  [ -n "$al_state" ] && [ "$al_state" != Z ] && [ "$al_state" != X ]
}

# wait_gone PIDFILE SECONDS: 0 once the pid has exited.
wait_gone() {
  wg_i=0
  while alive "$1" && [ "$wg_i" -lt $(($2 * 10)) ]; do
    sleep 0.1
    wg_i=$((wg_i + 1))
  done
  ! alive "$1"
}

# A free-looking port below the kernel's ephemeral range (32768 by default):
# a port inside it can be taken, while its node is down, by a connect() to
# it that the kernel gives that very port as its source (a TCP
# self-connect), and the node could not listen there again. spiked and
# nginx say when a port is taken.
pick_port() {
  pp_low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$pp_low" -gt 12000 ] || pp_low=32768
  echo $((10000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % (pp_low - 10000)))
}

# node_start DIR I: start node I and wait until it is ready. The first
# start picks a free port (another try when spiked finds it taken); later
# ones reuse it, since nginx's upstreams name it.
node_start() {
  nd=$1/node-$2
  mkdir -p "$nd"
  # never a second one over a running node (its pid file would be lost)
  ! alive "$nd/pid" || die "node $2 is running already (pid $(cat "$nd/pid"))"
  ns_try=0
  while :; do
    if [ -s "$nd/port" ]; then
      port=$(cat "$nd/port")
    else # a fresh one, where nothing answers (another server's 200 is not ours)
      port=$(pick_port)
      curl -s -o /dev/null -m 1 "http://127.0.0.1:$port/"
      if [ $? != 7 ]; then
        ns_try=$((ns_try + 1))
        [ "$ns_try" -lt 20 ] || die "node $2: no free port after 20 tries"
        continue
      fi
    fi
    : >"$nd/log"
    # shellcheck disable=SC2086 # SPIKED_ARGS is a list of flags
    "$SPIKED" --listen "127.0.0.1:$port" --data "$nd/data" $SPIKED_ARGS </dev/null >>"$nd/log" 2>&1 &
    echo $! >"$nd/pid"
    ns_i=0
    until curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/healthz/ready" |
      grep -q 200; do
      alive "$nd/pid" || break
      [ "$ns_i" -lt $((START_MAX_S * 10)) ] || die "node $2 not ready after ${START_MAX_S}s"
      sleep 0.1
      ns_i=$((ns_i + 1))
    done
    if alive "$nd/pid"; then
      echo "$port" >"$nd/port"
      return 0
    fi
    ns_try=$((ns_try + 1))
    # Taken: a fresh port at the first start; at a restart the same one
    # (nginx names it), tried again for START_MAX_S.
    if [ "$ns_try" -ge $((START_MAX_S * 2)) ] || ! grep -qi "in use" "$nd/log"; then
      tail -n 5 "$nd/log" >&2
      die "node $2 exited"
    fi
    [ -s "$nd/port" ] && sleep 0.5
  done
}

# write_nginx DIR N PORT: nginx.conf and upstreams.conf for N nodes.
write_nginx() {
  ng=$1/nginx
  mkdir -p "$ng/tmp"
  servers="" groups="" routes=""
  wn=0
  while [ "$wn" -lt "$2" ]; do # one line per node in each of the three
    addr=127.0.0.1:$(cat "$1/node-$wn/port")
    servers="$servers    server $addr max_fails=0;
"
    groups="${groups}upstream spike_node_$wn { server $addr max_fails=0; keepalive 4; }
"
    routes="$routes    \"~^/nodes/$wn/\" spike_node_$wn;
"
    wn=$((wn + 1))
  done
  cat >"$ng/upstreams.conf" <<EOF
# written by deploy/spike-cluster.sh: the nodes of $1
# Every request for an event goes to its node and no other: max_fails=0
# (docs/scale-out.md, "A node that is down").
upstream spike_events {
    hash \$spike_event consistent;
$servers    keepalive $UPSTREAM_KEEPALIVE;
}
$groups# /nodes/{n}/...: node n's group
map \$request_uri \$spike_node {
$routes    default "";
}
EOF
  alog=off
  [ "$ACCESS_LOG" = off ] || alog="$ACCESS_LOG"
  cat >"$ng/nginx.conf" <<EOF
# written by deploy/spike-cluster.sh
worker_processes $NGINX_WORKERS;
pid $ng/nginx.pid;
error_log $ng/error.log warn;
events { worker_connections 4096; }
http {
    access_log $alog;
    client_body_temp_path $ng/tmp/body;
    proxy_temp_path $ng/tmp/proxy;
    fastcgi_temp_path $ng/tmp/fastcgi;
    uwsgi_temp_path $ng/tmp/uwsgi;
    scgi_temp_path $ng/tmp/scgi;
    include $here/spike-maps.conf;
    include $ng/upstreams.conf;
    server {
        listen 127.0.0.1:$3;
        include $here/spike-routes.conf;
    }
}
EOF
}

cmd_start() {
  dir=$1
  n=$2
  case $n in '' | *[!0-9]*) die "N must be a number" ;; esac
  [ "$n" -ge 1 ] && [ "$n" -le $NODES_MAX ] || die "N must be 1..$NODES_MAX"
  [ -x "$SPIKED" ] || die "$SPIKED missing: make $SPIKED"
  command -v "$NGINX" >/dev/null || die "nginx missing: make bench-deps"
  mkdir -p "$dir" || die "cannot make $dir"
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir" # nginx's workers run as nobody when started by root
  [ -e "$dir/nginx" ] && die "$dir holds a cluster already"
  starting=$dir
  echo "$n" >"$dir/nodes"
  i=0
  while [ "$i" -lt "$n" ]; do
    node_start "$dir" "$i"
    i=$((i + 1))
  done
  tries=0
  while :; do
    port=$ROUTER_PORT
    [ "$port" = 0 ] && port=$(pick_port)
    write_nginx "$dir" "$n" "$port"
    "$NGINX" -q -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e "$dir/nginx/error.log" 2>>"$dir/nginx/error.log" &&
      break
    tries=$((tries + 1))
    { [ "$ROUTER_PORT" = 0 ] && [ "$tries" -lt 10 ] && grep -q "in use" "$dir/nginx/error.log"; } ||
      { tail -n 5 "$dir/nginx/error.log" >&2; die "nginx did not start"; }
  done
  echo "http://127.0.0.1:$port" >"$dir/router.url"
  i=0
  until curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$port/healthz/live" | grep -q 200; do
    [ "$i" -lt $((START_MAX_S * 10)) ] || die "nginx does not answer on $port"
    sleep 0.1
    i=$((i + 1))
  done
  starting=""
  cat "$dir/router.url"
}

cmd_stop() {
  dir=$1
  [ -d "$dir" ] || return 0
  rc=0
  if alive "$dir/nginx/nginx.pid"; then
    ng_pid=$(cat "$dir/nginx/nginx.pid")
    kill -TERM "$ng_pid"
    wait_gone "$dir/nginx/nginx.pid" "$STOP_MAX_S" || {
      kill -KILL "$ng_pid"
      rc=1
    }
  fi
  for nd in "$dir"/node-*; do
    [ -d "$nd" ] || continue
    alive "$nd/pid" || continue
    kill -TERM "$(cat "$nd/pid")"
  done
  for nd in "$dir"/node-*; do
    [ -d "$nd" ] || continue
    wait_gone "$nd/pid" "$STOP_MAX_S" || {
      echo "spike-cluster: $nd did not drain in ${STOP_MAX_S}s: SIGKILL" >&2
      kill -KILL "$(cat "$nd/pid")" 2>/dev/null
      rc=1
    }
  done
  return $rc
}

node_dir() {
  [ -d "$1/node-$2" ] || die "no node $2 in $1"
  echo "$1/node-$2"
}

case ${1:-} in
start) [ $# -eq 3 ] || die "usage: $0 start DIR N"; cmd_start "$2" "$3" ;;
stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
kill)
  [ $# -eq 3 ] || die "usage: $0 kill DIR I"
  nd=$(node_dir "$2" "$3") || exit 1
  alive "$nd/pid" || die "node $3 is not running"
  kill -KILL "$(cat "$nd/pid")"
  wait_gone "$nd/pid" 5 || die "node $3 survived SIGKILL"
  ;;
restart)
  [ $# -eq 3 ] || die "usage: $0 restart DIR I"
  nd=$(node_dir "$2" "$3") || exit 1
  wait_gone "$nd/pid" 2 || die "node $3 is running"
  node_start "$(cd "$2" && pwd)" "$3"
  ;;
url)
  if [ $# -eq 3 ]; then
    nd=$(node_dir "$2" "$3") || exit 1
    echo "http://127.0.0.1:$(cat "$nd/port")"
  else
    cat "$2/router.url"
  fi
  ;;
*) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
