#!/bin/sh
# tests/fresh-debian.sh -- the README's two commands on a machine that has
# never seen spike. Builds a Debian 12 minbase root with debootstrap, adds
# only make and git (without their Recommends), clones this checkout's
# HEAD into it with git, and runs, as root inside a chroot:
#
#   make run     on a free port (RUN_LISTEN): it installs the compiler and
#                libraries it needs; until the demo event answers GET and a
#                reserve gets 201
#   make deb     which installs what dpkg-buildpackage wants, and no more
#   make test    which installs the test tools too (`make deps`)
#   make run     as written, on 127.0.0.1:8080, in a network of its own
#
# Needs root and deb.debian.org; takes about ten minutes on two cores, so it is
# not part of `make test`: run it as `make test-fresh`. Whatever happens, it
# stops what it started in the root, unmounts everything it mounted and
# deletes the root. Uncommitted changes are not tested.
#
# Environment: FRESH_DIR (where the root is made, default /var/tmp),
# FRESH_MIRROR (default http://deb.debian.org/debian), FRESH_KEEP=1 (keep the
# unmounted root for a look afterwards).
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
mirror=${FRESH_MIRROR:-http://deb.debian.org/debian}
parent=${FRESH_DIR:-/var/tmp}
say() { printf 'fresh-debian: %s\n' "$*"; }
now() { date +%s; }

[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, chroot, mount)"; exit 2; }
git -C "$src" diff --quiet HEAD -- || say "uncommitted changes are not tested, only HEAD"

root=""
cleanup() {
  rc=$?
  trap - EXIT INT TERM
  [ -n "$root" ] && [ -d "$root" ] || exit "$rc"
  rm -f "$root.debootstrap.log"
  # Processes left in the root (a spiked, a test's child) keep mounts busy.
  for sig in TERM KILL; do
    for p in /proc/[0-9]*; do
      [ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -s "$sig" "${p#/proc/}" 2>/dev/null
    done
    sleep 1
  done
  for m in $(awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" || say "cannot unmount $m"
  done
  if awk -v r="$root/" 'index($2, r) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    say "something is still mounted under $root: left in place"
    rc=1
  elif [ "${FRESH_KEEP:-0}" = 1 ]; then
    say "kept $root (unmounted)"
  else
    rm -rf --one-file-system "$root"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap on this machine"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >/dev/null ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y --no-install-recommends debootstrap >/dev/null; }
fi

mkdir -p "$parent"
root=$(mktemp -d "$parent/spike-fresh.XXXXXX")
root=$(cd "$root" && pwd -P) # as /proc/<pid>/root names it
chmod 755 "$root"
t0=$(now)

say "debootstrap --variant=minbase bookworm into $root"
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1; then
  tail -n 20 "$root.debootstrap.log"
  exit 1
fi
t_boot=$(now)

mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
rm -f "$root/dev/ptmx" && ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# What the Debian installer writes and debootstrap does not: without it
# "localhost" does not resolve, and test_relay's broker (node
# NAME@localhost) cannot start.
[ -e "$root/etc/hosts" ] ||
  printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"

# The clone comes from a bundle of HEAD: what git inside the root fetches
# is exactly the commit, with nothing of this checkout's build tree.
git -C "$src" bundle create -q "$root/root/spike.bundle" HEAD
commit=$(git -C "$src" rev-parse --short HEAD)

# in_root SCRIPT [WRAPPER...]: run SCRIPT with bash in the root, in a clean
# environment like a root login on the fresh machine; WRAPPER, when given,
# runs the chroot.
in_root() {
  script=$1
  shift
  "$@" chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "set -euo pipefail; $script"
}

# What the README asks of a machine: git and make, no compiler (make run
# installs gcc; cc would otherwise be the clang that make test installs).
say "apt-get install make git"
in_root 'export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends make git >/root/apt.log 2>&1 ||
    { tail -n 20 /root/apt.log; exit 1; }'
in_root "git -c advice.detachedHead=false clone -q /root/spike.bundle /root/spike"
t_tools=$(now)

# make run, then GET the demo event and reserve a unit; $1: where it
# listens (make run's RUN_LISTEN). Waits for its first start, which
# installs the compiler and libraries and builds.
run_check() {
  cat <<EOF
cd /root/spike
setsid make run RUN_LISTEN=$1 >/root/run.log 2>&1 </dev/null &
pid=\$!
trap "kill -TERM -- -\$pid 2>/dev/null; wait \$pid || true" EXIT
for i in \$(seq 1 900); do
  curl -fsS http://$1/api/v1/events/1 >/root/event.json 2>/dev/null && break
  kill -0 \$pid 2>/dev/null || { cat /root/run.log; exit 1; }
  sleep 1
done
echo "GET event 1: \$(head -c 160 /root/event.json)"
code=\$(curl -sS -o /root/order.json -w "%{http_code}" -X POST \\
  http://$1/api/v1/events/1/orders \\
  -H "Content-Type: application/json" -d '{"user_id":"42"}')
echo "POST order: \$code \$(head -c 160 /root/order.json)"
[ "\$code" = 201 ]
EOF
}

# make run first, as the README lists it, with the network its first start
# needs for apt, on a port of this machine that is free.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
  2>/dev/null || echo 18080)
say "make run (RUN_LISTEN=127.0.0.1:$port): GET the demo event, reserve one unit"
in_root "$(run_check 127.0.0.1:$port)"
in_root 'rm -rf /root/spike/data'
t_run=$(now)

# make deb before make test has installed the test tools, as a packager
# would run it: dpkg-buildpackage wants build-essential, which nothing
# else installs (outside QA: it refused to start, 2026-11-29)
say "make deb"
in_root 'cd /root/spike && make deb >/root/deb.log 2>&1 || { tail -n 30 /root/deb.log; exit 1; }'
in_root 'ls /root/spike/build/deb/libspike1_*.deb /root/spike/build/deb/libspike-dev_*.deb /root/spike/build/deb/spiked_*.deb'
t_deb=$(now)

say "make test on $commit"
in_root 'cd /root/spike && make test 2>&1 | tee /root/test.log'
summary=$(in_root 'grep "suites passed" /root/test.log | tail -n 1')
t_test=$(now)

# make run as written, on 127.0.0.1:8080: on a network of its own when this
# machine can make one, so a spiked already on this machine's port 8080
# does not get in the way (everything is installed by now).
say "make run: GET the demo event, reserve one unit"
if command -v unshare >/dev/null && command -v ip >/dev/null && unshare --net true 2>/dev/null; then
  in_root "$(run_check 127.0.0.1:8080)" unshare --net /bin/sh -c 'ip link set lo up && exec "$@"' sh
else
  in_root "$(run_check 127.0.0.1:8080)"
fi

say "debootstrap $((t_boot - t0)) s, make git $((t_tools - t_boot)) s," \
  "make run $((t_run - t_tools)) s, make deb $((t_deb - t_run)) s, make test $((t_test - t_deb)) s," \
  "total $((t_test - t0)) s"
say "make test: $summary"
say "passed on a fresh Debian 12 (commit $commit)"
