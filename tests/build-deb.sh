#!/bin/sh
# tests/build-deb.sh [OUT] -- build the Debian binary packages the way a
# packager would, and check what they hold. A copy of the tracked tree (as
# it is in the work tree) goes to OUT/spike-VERSION with packaging/debian
# as its debian/, then `dpkg-buildpackage -us -uc -b` runs there (dh,
# dpkg-buildflags' CPPFLAGS/CFLAGS/LDFLAGS, make lib, make install into
# debian/tmp with PREFIX=/usr and the multiarch LIBDIR, make abi-check).
# Then: libspike1 holds the soname, libspike-dev the headers, the archive
# and the .pc files, and examples/epoll.c builds against the unpacked -dev
# and runs; spiked holds the server, its unit and its conffile, depends on
# the libraries it links, and the unpacked one runs and checks its config. Needs debhelper and dpkg-dev (make deb-deps). One line per
# case, then "N passed, M failed". OUT defaults to a scratch directory,
# removed at the end; `make deb` keeps build/deb.
set -u
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
keep=${1:-}
if [ -n "$keep" ]; then
  mkdir -p "$keep" && out=$(cd "$keep" && pwd) || exit 1
else
  out=$(mktemp -d "${TMPDIR:-/tmp}/spike-deb.XXXXXX") || exit 1
  trap 'rm -rf "$out"' EXIT
fi
trap 'exit 1' INT TERM
version=$(sed -n 's/^#define SPIKE_VERSION_STRING "\(.*\)"/\1/p' include/spike.h)
src=$out/spike-$version
log=$out/log
. tests/check.sh

copy_tree() {
  rm -rf "$src" && mkdir -p "$src" &&
    git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$src" &&
    cp -r packaging/debian "$src/debian"
}

build() {
  for p in build-essential debhelper dpkg-dev; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' $p 2>/dev/null)" = installed ] ||
      { echo "$p is not installed: make deb-deps"; return 1; }
  done
  (cd "$src" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL dpkg-buildpackage -us -uc -b) \
    >"$out/build.log" 2>&1 || { tail -n 40 "$out/build.log"; return 1; }
  ls "$out"/libspike1_"$version"_*.deb "$out"/libspike-dev_"$version"_*.deb \
    "$out"/spiked_"$version"_*.deb
}

# The flags a packager sets reach every compile and link.
flags_used() {
  grep -q -- '-fstack-protector-strong' "$out/build.log" &&
    grep -q -- '-Wl,-z,relro' "$out/build.log" && grep -q -- '-Werror' "$out/build.log" &&
    ! grep -qi 'warning:' "$out/build.log"
}

contents() {
  dpkg-deb -c "$out"/libspike1_"$version"_*.deb >"$out/lib.txt" &&
    dpkg-deb -c "$out"/libspike-dev_"$version"_*.deb >"$out/dev.txt" || return 1
  grep -q "usr/lib/$ma/libspike.so.1\$" "$out/lib.txt" || { cat "$out/lib.txt"; return 1; }
  for f in usr/include/spike.h usr/include/spike_uv.h "usr/lib/$ma/libspike.a" \
    "usr/lib/$ma/libspike.so -> libspike.so.1" "usr/lib/$ma/pkgconfig/spike.pc" \
    "usr/lib/$ma/pkgconfig/spike-uv.pc"; do
    grep -q "$f" "$out/dev.txt" || { echo "libspike-dev lacks $f"; cat "$out/dev.txt"; return 1; }
  done
  dpkg-deb -f "$out"/libspike1_"$version"_*.deb Depends | grep -q liblmdb
}

# The server's package: the binary, the unit where Debian keeps them, the
# config as a conffile; the libraries it links among its dependencies.
server_contents() {
  deb=$(ls "$out"/spiked_"$version"_*.deb) || return 1
  dpkg-deb -c "$deb" >"$out/spiked.txt" || return 1
  for f in usr/bin/spiked lib/systemd/system/spiked.service etc/spike/spiked.conf \
    etc/logrotate.d/spiked usr/share/doc/spiked/operations.md.gz; do
    grep -q "\./$f\$" "$out/spiked.txt" || { echo "spiked lacks $f"; cat "$out/spiked.txt"; return 1; }
  done
  dpkg-deb -I "$deb" conffiles | grep -qx /etc/spike/spiked.conf || { echo "no conffile"; return 1; }
  dpkg-deb -I "$deb" postrm | grep -q 'rm -rf /var/log/spike' || { echo "purge keeps the logs"; return 1; }
  for d in libuv1 libjwt liblmdb; do
    dpkg-deb -f "$deb" Depends | grep -q "$d" || { echo "spiked does not depend on $d"; return 1; }
  done
  rm -rf "$out/root-spiked" && dpkg-deb -x "$deb" "$out/root-spiked" || return 1
  unit=$out/root-spiked/lib/systemd/system/spiked.service
  grep -q '^ExecStart=/usr/bin/spiked --config /etc/spike/spiked.conf' "$unit" &&
    grep -q '^Type=notify' "$unit"
}

# The unpacked server answers and takes its own configuration.
server_runs() {
  bin=$out/root-spiked/usr/bin/spiked
  "$bin" --version | grep -q "$version" &&
    "$bin" --config "$out/root-spiked/etc/spike/spiked.conf" --data "$out/srvdata" \
      --check-config 2>&1 | grep -q 'configuration ok'
}

# A gateway's build against the unpacked packages.
use_dev() {
  root=$out/root
  rm -rf "$root" && mkdir -p "$root" "$out/ex" &&
    dpkg-deb -x "$out"/libspike1_"$version"_*.deb "$root" &&
    dpkg-deb -x "$out"/libspike-dev_"$version"_*.deb "$root" &&
    cp examples/Makefile examples/epoll.c "$out/ex/" &&
    PKG_CONFIG_PATH="$root/usr/lib/$ma/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$root" \
      make --no-print-directory -s -C "$out/ex" epoll LDFLAGS="-Wl,-rpath,$root/usr/lib/$ma" &&
    "$out/ex/epoll" "$out/data" 1000
}

# Every library spiked and libspike build against (Makefile's DEB_RUN, the
# compiler and curl aside) is a Build-Depends: make deps installs them on
# this machine, so a missing one only fails in a clean chroot.
build_depends() {
  want=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s --no-print-directory print-DEB_RUN)
  have=$(sed -n '/^Build-Depends:/,/^[A-Z]/p' packaging/debian/control)
  for p in $want; do
    case $p in gcc|libc6-dev|curl) continue ;; esac
    echo "$have" | grep -q "[ ,]$p\([ ,(]\|\$\)" || { echo "Build-Depends lacks $p"; return 1; }
  done
}

ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
check "Build-Depends: every library the build needs" build_depends
check "copy of the tree with packaging/debian as debian/" copy_tree
check "dpkg-buildpackage -us -uc -b" build
check "dpkg-buildflags' CFLAGS and LDFLAGS used, -Werror, no warning" flags_used
check "libspike1: the soname; libspike-dev: headers, .a, .pc" contents
check "examples/epoll built against the unpacked packages, run" use_dev
check "spiked: the server, its unit and conffile; Depends: libuv1, libjwt, liblmdb" server_contents
check "spiked from the package: --version, --check-config of its own config" server_runs
[ -n "$keep" ] && ls "$out"/*.deb

summary
