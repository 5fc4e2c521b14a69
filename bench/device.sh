#!/bin/bash
# device.sh -- the scaling table of docs/benchmarks.md on a many-core Linux
# machine that has none of our dependencies: nginx by workers and spiked by
# loop threads under the same wrk in the same run, the engine alone by batch
# size, and spikebench's open-loop P99 at half of spiked's peak.
#
# Here (Debian 12, after make bench-deps; h2load is used when installed):
#   bench/device.sh pack DIR       build, then pack binaries + libraries in DIR
# There (any x86-64 Linux with glibc >= Debian 12's, bash, taskset):
#   bash DIR/device.sh run         the table; DIR/results.md gets it too
#   bash DIR/device.sh --help      this text
#
# PARTS (run; default "disk table stores scaleout hostile") picks and orders the parts:
#   disk      bench_disk on DATA (DISK_SECONDS 2, DISK_JOBS 8 files at once):
#             the floor a durable commit stands on there
#   table     the issue-10 table above
#   where     per thread (by name) the CPU spiked uses under that load, and
#             its commits, orders a commit and the loops' busy time: TOP
#             threads with each ack, 1 thread on 1 and on 2 cores; nginx's
#             workers and wrk's own CPU over the same window beside them
#             (the middle half of each DUR-second run)
#   stores    bench/stores.sh: 1, 2, 4 and 8 (STORES, each dividing TOP and
#             8) spiked processes, each its own store and writer with TOP/N
#             loop threads, on cores
#             0..TOP-1, sharing wrk -c512 (a wrk each, 8/N threads, on
#             LOADCPU), beside nginx of TOP workers; STORES_ROUNDS (1)
#             alternating rounds; then the engine alone (bench_writer) as
#             1 and as N engines at once, each its own store and writer:
#             the most a partitioned store could give, over HTTP and embedded
#   scaleout  bench/scaleout.sh: 1, 2 and 3 nodes (NODES) of SCALE_NODE_THREADS
#             (1) loop threads behind the nginx router of SCALE_NGINX_WORKERS
#             (6), all on SCALE_SRVCPU (0-11); wrk -t SCALE_WRK_THREADS (4) and
#             spikebench on SCALE_LOADCPU (12-15)
#   hostile   tests/hostile.sh: spiked alone and beside slow and hostile
#             clients, each on its own CPUs (HOSTILE_PIN=0-1:2-3:LOADCPU)
#
# Knobs (run): WS="1 2 4 8" spiked thread counts, NW="1 8" nginx workers,
# TOP=8 threads for the memory-ack and spikebench rows, DUR=6 seconds per
# wrk run (at least 2), LOADCPU (default 8-15) cores for the load, DATA
# (default /var/tmp) for the stores (a real disk), RESULTS (default
# DIR/results.md) the file the results also go to, NGINX_PORT (18080) and
# SPIKED_PORT (18090) on 127.0.0.1, KEEP=1 leaves the last store and the
# scratch directory (nginx's files, spiked's log, spikebench's output)
# behind, SPIKED_BIN (default spiked) which spiked in DIR/bin every part
# runs, and WRITER_BIN (default bench_writer) which bench_writer: for an
# A/B, copy the other build in beside it (cp OLD/spiked DIR/bin/spiked-old)
# and run once with SPIKED_BIN=spiked-old and once without, each with its
# own RESULTS. A server with w workers or threads gets cores 0..w-1, and
# wrk -t8 -c512 runs on LOADCPU; the engine alone gets the first half of
# the cores. Not a test: it reports, and never fails on speed. It exits 2
# on a bad knob or a machine without the cores they name, 1 when a part
# measured nothing (a row without a number), 130 when interrupted; servers
# it started are stopped and its scratch files removed in every case. A
# SIGTERM sent to this script alone (not its process group, as Ctrl-C is)
# is acted on when the command running ends: a scaleout or hostile part
# runs for minutes.
set -u

pack() {
  case $1 in /*) out=$1 ;; *) out=$PWD/$1 ;; esac # the caller's directory, not the checkout
  cd "$(dirname "$0")/.." || exit 2
  make --no-print-directory build/rel/spiked build/rel/spikebench build/rel/bench/micro/bench_writer \
    build/rel/bench/micro/bench_disk build/rel/tests/hostile_load >/dev/null || exit 1
  mkdir -p "$out/bin" "$out/lib" "$out/bench" "$out/deploy" "$out/tests"
  for p in build/rel/spiked build/rel/spikebench build/rel/bench/micro/bench_writer \
    build/rel/bench/micro/bench_disk build/rel/tests/hostile_load wrk nginx curl h2load; do
    src=$(command -v "$p" 2>/dev/null || true)
    [ -n "$src" ] || { [ "$p" = h2load ] && continue; echo "device.sh: $p not found (make bench-deps)" >&2; exit 1; }
    cp -L "$src" "$out/bin/"
    # glibc stays behind (the device's is at least as new); the rest travels
    ldd "$src" | awk '/=> \//{print $3}' | grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' |
      while read -r lib; do cp -Ln "$lib" "$out/lib/" 2>/dev/null || true; done
  done
  cp bench/device.sh bench/reserve.lua "$out/"
  # scaleout.sh and hostile.sh run from the bundle as from a checkout
  cp bench/scaleout.sh bench/stores.sh bench/servers.sh bench/wrkout.sh bench/reserve.lua "$out/bench/"
  cp deploy/spike-cluster.sh deploy/spike-maps.conf deploy/spike-routes.conf "$out/deploy/"
  cp tests/hostile.sh "$out/tests/"
  du -sh "$out" | awk '{print "device.sh: packed " $1 " in " $2}'
}

run() {
  here=$(cd "$(dirname "$0")" && pwd)
  export PATH="$here/bin:$PATH" LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  WS=${WS:-1 2 4 8}; NW=${NW:-1 8}; TOP=${TOP:-8}; T=${DUR:-6}
  L=${LOADCPU:-8-15}; DATA=${DATA:-/var/tmp}; NP=${NGINX_PORT:-18080}; SPP=${SPIKED_PORT:-18090}
  PARTS=${PARTS:-disk table stores scaleout hostile}
  D=$DATA/spike-device-data; R=${RESULTS:-$here/results.md}
  S=$here/bin/${SPIKED_BIN:-spiked}
  # every knob checked before anything runs: a typo must not cost a device slot
  bad() { echo "device.sh: $*" >&2; exit 2; }
  for part in $PARTS; do
    case $part in disk | table | where | stores | scaleout | hostile) ;;
    *) bad "PARTS: disk, table, where, stores, scaleout or hostile, not $part" ;;
    esac
  done
  for n in $WS $NW $TOP; do
    case $n in '' | *[!0-9]* | 0*) bad "WS, NW and TOP are counts of 1 or more, not \"$n\"" ;; esac
  done
  case $T in '' | *[!0-9]* | 0 | 1) bad "DUR is whole seconds, at least 2, not \"$T\"" ;; esac
  case " $PARTS " in *" stores "*)
    for n in ${STORES:-1 2 4 8}; do
      case $n in '' | *[!0-9]* | 0*) bad "STORES are counts of 1 or more, not \"$n\"" ;; esac
      [ $((TOP % n)) -eq 0 ] && [ $((8 % n)) -eq 0 ] ||
        bad "STORES: $n does not divide TOP=$TOP and wrk's 8 threads (every N runs the same threads in all)"
    done
    case ${STORES_ROUNDS:-1} in '' | *[!0-9]* | 0*) bad "STORES_ROUNDS is a count of 1 or more, not \"$STORES_ROUNDS\"" ;; esac ;;
  esac
  for p in "$NP" "$SPP"; do
    case $p in '' | *[!0-9]*) p=0 ;; esac
    [ "$p" -ge 1 ] && [ "$p" -le 65535 ] || bad "NGINX_PORT and SPIKED_PORT are ports, 1-65535"
  done
  [ -x "$S" ] || { echo "device.sh: $S not found" >&2; exit 1; }
  case " $PARTS " in *" table "* | *" stores "*)
    [ -x "$here/bin/${WRITER_BIN:-bench_writer}" ] || bad "$here/bin/${WRITER_BIN:-bench_writer} not found (WRITER_BIN)" ;;
  esac
  [ -d "$DATA" ] && [ -w "$DATA" ] || bad "DATA: $DATA is not a writable directory"
  # the cores the parts pin to must exist: taskset refuses the rest
  most=$TOP
  for n in $WS $NW; do [ "$n" -gt "$most" ] && most=$n; done
  cpus() { # KNOB LIST: the CPUs of a part must exist
    taskset -c "$2" true 2>/dev/null || bad "$1 $2: this machine has $(nproc) cores (0-$(($(nproc) - 1)))"
  }
  case " $PARTS " in *" table "* | *" where "* | *" stores "*)
    cpus LOADCPU "$L"
    taskset -c "0-$((most - 1))" true 2>/dev/null ||
      bad "a server of $most workers or threads needs cores 0-$((most - 1)); this machine has $(nproc) (WS, NW, TOP)" ;;
  esac
  case " $PARTS " in *" scaleout "*)
    cpus SCALE_SRVCPU "${SCALE_SRVCPU:-0-11}"
    cpus SCALE_LOADCPU "${SCALE_LOADCPU:-12-15}" ;;
  esac
  case " $PARTS " in *" hostile "*)
    for c in $(echo "${HOSTILE_PIN:-0-1:2-3:$L}" | tr ':' ' '); do cpus HOSTILE_PIN "$c"; done ;;
  esac
  for p in "$NP" "$SPP"; do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/" && bad "something already answers on 127.0.0.1:$p"
  done
  G=$(mktemp -d "${TMPDIR:-/tmp}/spike-device.XXXXXX") || exit 1
  SP=""; failed=0
  trap cleanup EXIT
  trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 141' PIPE; trap 'exit 143' TERM
  ulimit -n "$(ulimit -Hn)"
  : >"$R"
  {
    echo "device.sh: $(nproc) cores, $(basename "$S") ($("$S" --version 2>&1 | head -1)), data on $(df -T "$DATA" | awk 'NR==2 {print $1, $2}')"
    echo "device.sh: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(uname -sr); PARTS=\"$PARTS\" WS=\"$WS\" NW=\"$NW\" TOP=$TOP DUR=$T LOADCPU=$L"
    echo "device.sh: wrk -t8 -c512 -d${T}s on cores $L; a server of w workers or threads on cores 0..w-1"
  } | tee -a "$R"
  for part in $PARTS; do
    case $part in
    disk)
      echo | tee -a "$R"
      bench_disk --seconds "${DISK_SECONDS:-2}" --jobs "${DISK_JOBS:-8}" "$DATA" >"$G/part" 2>&1 || failed=1
      tee -a "$R" <"$G/part"
      ;;
    table) table ;;
    where) echo | tee -a "$R"; where ;;
    stores)
      echo | tee -a "$R"
      (cd "$here" && SPIKED="$S" TMPDIR="$DATA" STORES="${STORES:-1 2 4 8}" THREADS="$TOP" \
        NGINX_WORKERS="$TOP" SERVER_CPUS="0-$((TOP - 1))" LOAD_CPUS="$L" CONNS=512 WRK_THREADS=8 \
        ROUNDS="${STORES_ROUNDS:-1}" DURATION="$T" PORT_N="$NP" PORT_S="$SPP" \
        sh bench/stores.sh --max-conns 20000 --map-size 32G) 2>&1 | tee -a "$R"
      [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
      # one engine's rows are the table part's, when it runs too
      ns=${STORES:-1 2 4 8}
      case " $PARTS " in *" table "*) ns=$(for n in $ns; do [ "$n" -gt 1 ] && echo "$n"; done) ;; esac
      if [ -n "$ns" ]; then
        echo | tee -a "$R"
        engines $ns
      fi
      ;;
    scaleout)
      echo | tee -a "$R"
      (cd "$here" && SPIKED="$S" SPIKEBENCH="$here/bin/spikebench" TMPDIR="$DATA" \
        NODES="${NODES:-1 2 3}" SERVER_CPUS="${SCALE_SRVCPU:-0-11}" \
        LOAD_CPUS="${SCALE_LOADCPU:-12-15}" CONNS=512 \
        WRK_THREADS="${SCALE_WRK_THREADS:-4}" NGINX_WORKERS="${SCALE_NGINX_WORKERS:-6}" \
        NODE_THREADS="${SCALE_NODE_THREADS:-1}" UPSTREAM_KEEPALIVE="${SCALE_KEEPALIVE:-256}" \
        DURATION="$T" sh bench/scaleout.sh) 2>&1 | tee -a "$R"
      [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
      ;;
    hostile)
      echo | tee -a "$R"
      (cd "$here" && SPIKED="$S" SPIKEBENCH="$here/bin/spikebench" \
        HOSTILE_LOAD="$here/bin/hostile_load" HOSTILE_PIN="${HOSTILE_PIN:-0-1:2-3:$L}" \
        HOSTILE_SECONDS="${HOSTILE_SECONDS:-10}" HOSTILE_ROUNDS="${HOSTILE_ROUNDS:-3}" \
        sh tests/hostile.sh) 2>&1 | tee -a "$R"
      [ "${PIPESTATUS[0]}" -eq 0 ] || failed=1
      ;;
    esac
  done
  echo "device.sh: results in $R"
  if [ "$failed" -ne 0 ]; then
    echo "device.sh: a part failed or measured nothing (a row without a number): see above" | tee -a "$R" >&2
    exit 1
  fi
}

# However the run ends: the servers it started are stopped, and the scratch
# directory and the store go (KEEP=1 keeps them).
cleanup() {
  [ -n "${SP:-}" ] && kill "$SP" 2>/dev/null && wait "$SP" 2>/dev/null
  [ -f "$G/nginx.pid" ] && kill "$(cat "$G/nginx.pid")" 2>/dev/null && sleep 0.5
  # wrk, spikebench, a part's script, and what they started (wrk under a
  # backgrounded function is a grandchild): the process group, when this
  # script leads one (started from a shell); else its children
  if [ "$(ps -o pgid= -p $$ | tr -d ' ')" = "$$" ]; then
    trap '' TERM
    kill -TERM -- -$$ 2>/dev/null
  else
    pkill -P $$ 2>/dev/null
  fi
  if [ -z "${KEEP:-}" ]; then
    rm -rf "$D" "$G"
  else
    echo "device.sh: kept $D and $G" >&2
  fi
}

rps() { awk '/Requests\/sec/ {print int($2)}'; }
W() { taskset -c "$L" wrk -t8 -c512 -d"${T}s" --latency "$@" 2>&1; }
# nginx with $1 workers on cores 0..$1-1 answering a fixed body
ngx() {
  cat >"$G/n.conf" <<NGX
worker_processes $1; worker_cpu_affinity auto; daemon on; pid $G/nginx.pid; error_log $G/error.log warn;
events { worker_connections 8192; }
http { access_log off; client_body_temp_path $G; proxy_temp_path $G; fastcgi_temp_path $G;
  uwsgi_temp_path $G; scgi_temp_path $G;
  server { listen 127.0.0.1:$NP reuseport backlog=8192; keepalive_requests 100000000;
    location / { default_type application/json; return 200 '{"code":0,"msg":"ok"}'; } } }
NGX
  taskset -c "0-$(($1 - 1))" nginx -c "$G/n.conf" -p "$G" -e "$G/error.log"
  sleep 0.5
}
ngx_stop() { kill "$(cat "$G/nginx.pid")"; sleep 1; }

# a fresh spiked with THREADS loops and ACK on CPUS (default, or "":
# cores 0..THREADS-1) and any further flags, event 1 of 4e9 units
sp() { # THREADS ACK [CPUS [FLAGS...]]
  rm -rf "$D"
  local t=$1 a=$2 c=${3:-0-$(($1 - 1))}
  shift 2
  [ $# -gt 0 ] && shift
  taskset -c "$c" "$S" --listen 127.0.0.1:$SPP --data "$D" --threads "$t" --ack "$a" \
    --log-level warn --max-buyers 33554432 --max-reserved 33554432 --map-size 32G \
    --max-conns 20000 "$@" >"$G/spiked.log" 2>&1 &
  SP=$!
  for _ in $(seq 300); do curl -sf 127.0.0.1:$SPP/healthz/live >/dev/null && break; sleep 0.05; done
  curl -s -o /dev/null -XPOST 127.0.0.1:$SPP/api/v1/events -H 'Content-Type: application/json' \
    -d '{"id":1,"name":"bench","stock":4000000000,"price":999,"start_at":0,"end_at":253402300799999,"per_user_limit":1}'
}
sp_stop() { kill "$SP"; wait "$SP" 2>/dev/null; SP=""; }

# where: what each of spiked's threads does under wrk -t8 -c512, by thread
# name (% of a core, over the middle half of the run), and spiked's own
# counters over the same window: commits, orders a commit, the commit's time,
# the loops' busy time. Whether a run is bound by CPU (loops near 100 %) or
# by the commit cycle (loops and writer part idle) shows here.
snap() { for t in /proc/"$1"/task/*; do echo "${t##*/} $(cat "$t/comm") $(awk '{print $14 + $15, $15}' "$t/stat")"; done | sort; }
counters() {
  curl -s 127.0.0.1:$SPP/metrics | awk '/^spike_(commits_total|ops_committed_total|commit_duration_seconds_sum) / {print $1, $2}
    /^spike_loop_busy_seconds_total/ {b += $2} END {print "busy", b}'
}
# the load generator's CPU over the window: is the client the limit?
load_line() { # TICKS_BEFORE TICKS_AFTER SECONDS REQ/S
  awk -v tk="$(getconf CLK_TCK)" -v a="$1" -v b="$2" -v s="$3" -v r="$4" \
    'BEGIN { printf "    wrk (the load)  x8  %6.1f%% of a core, %.1f us a request\n", (b - a) / tk / s * 100,
      r ? (b - a) / tk / s / r * 1e6 : 0 }' | tee -a "$R"
}
where_one() { # THREADS ACK CPUS
  sp "$1" "$2" "$3"
  SPIKE_USER_BASE=$((RANDOM * 100000000)) W -s "$here/reserve.lua" http://127.0.0.1:$SPP/ >"$G/w.txt" &
  wp=$!
  sleep "$quarter"
  cl=$(pgrep -nx wrk)
  snap "$SP" >"$G/a"; counters >"$G/ca"; l0=$(ticks $cl); s0=$(date +%s.%N)
  sleep "$half_run"
  snap "$SP" >"$G/b"; counters >"$G/cb"; l1=$(ticks $cl); s1=$(date +%s.%N)
  wait "$wp"
  s=$(awk -v a="$s0" -v b="$s1" 'BEGIN {print b - a}')
  bad=$(awk '/Non-2xx/ {print $NF}' "$G/w.txt")
  r=$(rps <"$G/w.txt")
  [ -n "$r" ] || failed=1
  echo "spiked --threads $1 --ack $2 on cores $3: ${r:-?} req/s${bad:+ ($bad non-2xx)}" | tee -a "$R"
  join -o 1.2,1.3,1.4,2.3,2.4 "$G/a" "$G/b" | # name, CPU ticks (all, system) before and after
    awk -v tk="$(getconf CLK_TCK)" -v s="$s" -v r="$r" '{g = $1; sub(/-[0-9]+$/, "", g); u = ($4 - $2) / tk / s * 100
        n[g]++; t[g] += u; y[g] += ($5 - $3) / tk / s * 100; if (u > m[g]) m[g] = u }
      END { for (g in n) if (t[g] >= 0.5) printf "    %-15s x%-2d %6.1f%% of a core (system %5.1f%%), busiest %5.1f%%, %.1f us a request\n",
        g, n[g], t[g], y[g], m[g], r ? t[g] / 100 / r * 1e6 : 0 }' |
    sort | tee -a "$R"
  paste "$G/ca" "$G/cb" | awk -v s="$s" '{d[$1] = $4 - $2} END { c = d["spike_commits_total"]
      printf "    %.0f commits/s, %.1f orders a commit, %.3f ms a commit, loops busy %.2f cores\n",
        c / s, c ? d["spike_ops_committed_total"] / c : 0, c ? d["spike_commit_duration_seconds_sum"] / c * 1000 : 0, d["busy"] / s }' |
    tee -a "$R"
  load_line "${l0% *}" "${l1% *}" "$s" "$r"
  sp_stop
}
ticks() { # PID...: their CPU ticks, all and system
  for p in "$@"; do awk '{print $14 + $15, $15}' "/proc/$p/stat"; done | awk '{a += $1; s += $2} END {print a, s}'
}
where() {
  quarter=$(awk -v t="$T" 'BEGIN {print t / 4}'); half_run=$(awk -v t="$T" 'BEGIN {print t / 2}')
  ngx "$TOP"
  sleep 0.5
  wk=$(pgrep -f "nginx: worker process" | tr '\n' ' ')
  SPIKE_USER_BASE=1 W -s "$here/reserve.lua" http://127.0.0.1:$NP/ >"$G/w.txt" &
  wp=$!
  sleep "$quarter"
  cl=$(pgrep -nx wrk)
  read -r a0 y0 <<<"$(ticks $wk)"; l0=$(ticks $cl); s0=$(date +%s.%N)
  sleep "$half_run"
  read -r a1 y1 <<<"$(ticks $wk)"; l1=$(ticks $cl); s1=$(date +%s.%N)
  wait "$wp"
  r=$(rps <"$G/w.txt")
  awk -v tk="$(getconf CLK_TCK)" -v a="$((a1 - a0))" -v y="$((y1 - y0))" -v s0="$s0" -v s1="$s1" -v r="$r" -v w="$TOP" \
    'BEGIN { s = s1 - s0; printf "nginx workers=%d, POST fixed answer: %d req/s\n    nginx workers   x%-2d %6.1f%% of a core (system %5.1f%%), %.1f us a request\n",
      w, r, w, a / tk / s * 100, y / tk / s * 100, r ? a / tk / s / r * 1e6 : 0 }' | tee -a "$R"
  load_line "${l0% *}" "${l1% *}" "$(awk -v a="$s0" -v b="$s1" 'BEGIN {print b - a}')" "$r"
  ngx_stop
  where_one "$TOP" memory "0-$((TOP - 1))"
  where_one "$TOP" durable "0-$((TOP - 1))"
  where_one 1 durable 0
  where_one 1 durable 0-1
}

table() {
  row() { # a row without a number above 0 fails the run (not on speed: on nothing measured)
    awk -v v="$2" 'BEGIN { exit !(v + 0 > 0) }' || failed=1
    printf '| %s | %s |\n' "$1" "${2:-?}" | tee -a "$R"
  }
  printf '| run | req/s |\n|---|---|\n' | tee -a "$R"
  for w in $NW; do
    ngx "$w"
    row "nginx workers=$w, GET fixed body" "$(W http://127.0.0.1:$NP/ | rps)"
    row "nginx workers=$w, POST fixed answer" \
      "$(SPIKE_USER_BASE=1 W -s "$here/reserve.lua" http://127.0.0.1:$NP/ | rps)"
    ngx_stop
  done
  b=1
  for w in $WS; do
    sp "$w" durable
    b=$((b + 1))
    out=$(SPIKE_USER_BASE=$((b * 10000000000)) W -s "$here/reserve.lua" http://127.0.0.1:$SPP/)
    bad=$(printf '%s\n' "$out" | awk '/Non-2xx/ {print $NF}')
    row "spiked threads=$w, durable reserve" "$(printf '%s\n' "$out" | rps)${bad:+ ($bad non-2xx)}"
    sp_stop
  done
  sp "$TOP" memory
  out=$(SPIKE_USER_BASE=200000000000 W -s "$here/reserve.lua" http://127.0.0.1:$SPP/)
  bad=$(printf '%s\n' "$out" | awk '/Non-2xx/ {print $NF}')
  row "spiked threads=$TOP, memory reserve" "$(printf '%s\n' "$out" | rps)${bad:+ ($bad non-2xx)}"
  sp_stop
  # the same without pacing (commits as often as they can go, as before
  # --memory-commit-us); a spiked without the flag leaves no row
  if "$S" --help 2>&1 | grep -q memory-commit-us; then
    sp "$TOP" memory "" --memory-commit-us 0
    out=$(SPIKE_USER_BASE=210000000000 W -s "$here/reserve.lua" http://127.0.0.1:$SPP/)
    bad=$(printf '%s\n' "$out" | awk '/Non-2xx/ {print $NF}')
    row "spiked threads=$TOP, memory reserve, --memory-commit-us 0" "$(printf '%s\n' "$out" | rps)${bad:+ ($bad non-2xx)}"
    sp_stop
  fi

  sp "$TOP" durable
  peak=$(taskset -c "$L" spikebench --url http://127.0.0.1:$SPP --event 1 --max --threads 8 \
    --connections 512 --duration "$T" --user-base 30000000000 --quiet 2>&1 | tee "$G/sb" |
    awk '{for (i = 1; i <= NF; i++) if ($i == "req/s") {print int($(i - 1)); exit}}')
  row "spikebench --max, spiked threads=$TOP durable" "$peak"
  half=$((${peak:-0} / 2))
  if [ "$half" -gt 0 ]; then
    taskset -c "$L" spikebench --url http://127.0.0.1:$SPP --event 1 --rate "$half" --threads 8 \
      --connections 512 --duration 8 --user-base 40000000000 --quiet 2>&1 | tee "$G/open"
    p99=$(awk '/p99/ {for (i = 1; i <= NF; i++) if ($i ~ /^p99/) {print $(i + 1); exit}}' "$G/open")
    row "spikebench open loop at $half req/s: p99" "$p99"
  else
    cat "$G/sb"
  fi
  sp_stop

  echo | tee -a "$R"
  engines 1
}

# engines N...: the engine alone by batch size (bench_writer, on the first
# half of the cores), and N engines at once for each N above 1 (--engines:
# each its own store and writer, rates summed)
engines() {
  printf '| engine alone (bench_writer, random users) | durable orders/s | raw LMDB | writer us/order |\n|---|---|---|---|\n' | tee -a "$R"
  for n in "$@"; do
    for batch in 256 4096; do
      line=$(taskset -c "0-$(($(nproc) / 2 - 1))" "$here/bin/${WRITER_BIN:-bench_writer}" --reps 3 --batch "$batch" \
        --users random $([ "$n" -gt 1 ] && echo "--engines $n") "$DATA" 2>&1 |
        grep "^batch *$batch:\|bench_writer:")
      eng=$(printf '%s\n' "$line" | sed -n 's/.*engine \([0-9]*\) durable.*/\1/p')
      ref=$(printf '%s\n' "$line" | sed -n 's/.*reference \([0-9]*\) orders.*/\1/p')
      cpu=$(printf '%s\n' "$line" | sed -n 's/.*writer thread \([0-9.]*\) us.*/\1/p')
      [ -n "$eng" ] || { failed=1; printf '%s\n' "$line"; }
      printf '| batch %s%s | %s | %s | %s |\n' "$batch" "$([ "$n" -gt 1 ] && echo ", $n engines at once")" \
        "${eng:-?}" "${ref:-?}" "${cpu:-?}" | tee -a "$R"
    done
  done
}

case "${1:-}" in
-h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
pack) [ $# -eq 2 ] || { echo "usage: bench/device.sh pack DIR" >&2; exit 2; }; pack "$2" ;;
run) run ;;
*) echo "usage: bench/device.sh pack DIR | DIR/device.sh run" >&2; exit 2 ;;
esac
