#!/bin/sh
# tests/test_exports.sh -- what an embedder gets from the package. Installs
# libspike with `make install DESTDIR=...` (the default PREFIX and multiarch
# LIBDIR, as a distribution would), then checks, against the installed
# files only:
#   - the layout: libspike.so.N (its soname), the dev symlink, libspike.a,
#     spike.h, spike_uv.h, spike.pc, spike-uv.pc; libspike.so needs no libuv;
#   - libspike.so and libspike.a define no global name outside spike_* and
#     every name spike.h exports;
#   - the ABI of the installed libspike.so against the committed baseline
#     (abi/, abidiff: any change but an added function fails), and an added
#     function only with a version past the baseline's;
#   - tests/clash.c -- with its own recover(), store_open(), log_line() --
#     links against each library and still gets libspike's recovery;
#   - examples/ builds from a copy with its own Makefile and pkg-config only
#     (shared, and the epoll one static too), and each example plays a sale;
#   - the complete programs in docs/embedding.md build and run as printed;
#   - make uninstall leaves nothing behind.
# One line per case, then "N passed, M failed"; exit 1 on any failure. Run
# by tests/run.sh, or alone from anywhere.
set -u
cd "$(dirname "$0")/.." || exit 1
CC=${CC:-cc}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spike-exports.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
root=$tmp/root
CFLAGS_CLASH="-std=gnu11 -Wall -Wextra -Wpedantic -Werror -g"
log=$tmp/log
. tests/check.sh

# A fresh make: the one running tests/run.sh, if any, keeps its jobserver.
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -s "$@"; }

LIBDIR=$(mk print-LIBDIR)
INCLUDEDIR=$(mk print-INCLUDEDIR)
PCDIR=$(mk print-PKGCONFIGDIR)
SONAME=$(mk print-SONAME)
lib=$root$LIBDIR

install_destdir() {
  mk install DESTDIR="$root" || return 1
  for f in "$lib/$SONAME" "$lib/libspike.a" "$root$INCLUDEDIR/spike.h" \
    "$root$INCLUDEDIR/spike_uv.h" "$root$PCDIR/spike.pc" "$root$PCDIR/spike-uv.pc"; do
    [ -f "$f" ] || { echo "missing: $f"; return 1; }
  done
  [ "$(readlink "$lib/libspike.so")" = "$SONAME" ] || { echo "libspike.so -> $SONAME"; return 1; }
}

# The soname is the file's name; the library needs nothing of libuv's or
# libjwt's (spiked's, not libspike's).
soname_and_needed() {
  readelf -d "$lib/$SONAME" >"$tmp/dyn" || return 1
  grep -q "SONAME.*\[$SONAME\]" "$tmp/dyn" || { echo "soname is not $SONAME"; cat "$tmp/dyn"; return 1; }
  if grep -E 'NEEDED.*(libuv|libjwt)' "$tmp/dyn"; then echo "^ libspike.so needs these"; return 1; fi
}

# The global names a library defines, one a line: nm_defined FILE NM_FLAGS...
nm_defined() {
  f=$1
  shift
  nm "$@" --defined-only "$f" >"$tmp/nm" || return 1
  awk 'NF == 3 { print $3 }' "$tmp/nm" | sort -u
}

only_spike() {
  nm_defined "$@" >"$tmp/names" || return 1
  if grep -v '^spike_' "$tmp/names"; then
    echo "^ defined and global in $1 without the spike_ prefix"
    echo "(objects built before -fvisibility=hidden? make clean)"
    return 1
  fi
}

# Every function and table spike.h marks SPIKE_EXTERN is defined.
exports_api() {
  nm_defined "$@" >"$tmp/names" || return 1
  sed -n 's/^SPIKE_EXTERN .*[ *]\(spike_[a-z0-9_]*\)[[(].*/\1/p' include/spike.h | sort -u >"$tmp/api"
  [ -s "$tmp/api" ] || { echo "no SPIKE_EXTERN declarations found in include/spike.h"; return 1; }
  missing=$(comm -23 "$tmp/api" "$tmp/names")
  [ -z "$missing" ] || { echo "spike.h declares, $1 does not export: $missing"; return 1; }
}

abi_baseline() {
  command -v abidiff >/dev/null || { echo "abidiff missing: make deps (abigail-tools)"; return 1; }
  abidiff --no-added-syms --headers-dir2 "$root$INCLUDEDIR" --drop-private-types \
    --suppressions abi/suppressions.abignore "abi/$SONAME.abi" "$lib/$SONAME"
}

# A function added since the baseline comes with a new version: a program
# that calls it must be able to ask for a library that has it (dpkg's
# shlibs record SPIKE_VERSION_STRING; spike_version() says it). The
# baseline's version is in abi/$SONAME.version, written by make abi-dump.
abi_added_bumps_version() {
  now=$(sed -n 's/^#define SPIKE_VERSION_STRING "\(.*\)"/\1/p' "$root$INCLUDEDIR/spike.h")
  then=$(cat "abi/$SONAME.version") || return 1
  abidiff --headers-dir2 "$root$INCLUDEDIR" --drop-private-types \
    --suppressions abi/suppressions.abignore "abi/$SONAME.abi" "$lib/$SONAME" >"$tmp/added"
  added=$(sed -n 's/^Functions changes summary:.* \([0-9][0-9]*\) Added function.*/\1/p' "$tmp/added")
  [ -s "$tmp/added" ] || added=0 # nothing changed at all: abidiff says nothing
  [ -n "$added" ] || { echo "no summary from abidiff:"; cat "$tmp/added"; return 1; }
  if [ "$added" != 0 ] && [ "$now" = "$then" ]; then
    cat "$tmp/added"
    echo "^ added since the baseline of $then, and spike.h still says $then: bump SPIKE_VERSION_* and run make abi-dump"
    return 1
  fi
}

# pkg-config as a build against the DESTDIR sees it: the sysroot prefixes
# the installed paths.
pc() {
  PKG_CONFIG_PATH="$root$PCDIR" PKG_CONFIG_SYSROOT_DIR="$root" pkg-config "$@"
}

clash_shared() {
  $CC $CFLAGS_CLASH -o "$tmp/clash-shared" tests/clash.c $(pc --cflags --libs spike) \
    -Wl,-rpath,"$lib" &&
    "$tmp/clash-shared" "$tmp/data-shared"
}

clash_static() {
  $CC $CFLAGS_CLASH -o "$tmp/clash-static" tests/clash.c $(pc --cflags spike) "$lib/libspike.a" \
    $(pc --static --libs spike | sed 's/\(^\| \)-lspike\( \|$\)/ /') &&
    "$tmp/clash-static" "$tmp/data-static"
}

# A gateway's build: a copy of examples/, its Makefile, pkg-config.
examples_build() {
  mkdir -p "$tmp/ex" && cp examples/Makefile examples/*.c "$tmp/ex/" &&
    PKG_CONFIG_PATH="$root$PCDIR" PKG_CONFIG_SYSROOT_DIR="$root" \
      make --no-print-directory -s -C "$tmp/ex" LDFLAGS="-Wl,-rpath,$lib" &&
    mkdir -p "$tmp/ex-static" && cp examples/Makefile examples/epoll.c "$tmp/ex-static/" &&
    PKG_CONFIG_PATH="$root$PCDIR" PKG_CONFIG_SYSROOT_DIR="$root" \
      make --no-print-directory -s -C "$tmp/ex-static" STATIC=1 epoll &&
    ! readelf -d "$tmp/ex-static/epoll" | grep -q 'NEEDED.*libspike'
}

run_example() { "$tmp/$1" "$tmp/data-$2" 2000; }

# docs/embedding.md's complete programs, as printed: each ```c block after a
# "<!-- file: NAME -->" line, built with pkg-config (spike-uv or spike) and
# run on a fresh directory.
doc_programs() {
  mkdir -p "$tmp/doc" &&
    awk -v dir="$tmp/doc" '
      /^<!-- file: .* -->$/ { name = $3; next }
      name != "" && /^```c$/ { out = dir "/" name; next }
      out != "" && /^```$/ { close(out); out = ""; name = ""; next }
      out != "" { print > out }' docs/embedding.md || return 1
  [ -s "$tmp/doc/gw_uv.c" ] && [ -s "$tmp/doc/gw_epoll.c" ] || { echo "programs not found"; return 1; }
  for f in gw_uv:spike-uv gw_epoll:spike; do
    prog=${f%%:*}
    pkg=${f#*:}
    $CC $CFLAGS_CLASH -o "$tmp/doc/$prog" "$tmp/doc/$prog.c" $(pc --cflags --libs "$pkg") \
      -Wl,-rpath,"$lib" &&
      "$tmp/doc/$prog" "$tmp/data-doc-$prog" || { echo "$prog failed"; return 1; }
  done
}

uninstall_all() {
  mk uninstall DESTDIR="$root" || return 1
  left=$(find "$root" -type f -o -type l)
  [ -z "$left" ] || { echo "left behind: $left"; return 1; }
}

check "make install DESTDIR: the layout" install_destdir
check "soname $SONAME; no libuv or libjwt needed" soname_and_needed
check "libspike.so defines only spike_*" only_spike "$lib/$SONAME" -D
check "libspike.a defines only spike_*" only_spike "$lib/libspike.a" -g
check "libspike.so exports all of spike.h" exports_api "$lib/$SONAME" -D
check "libspike.a exports all of spike.h" exports_api "$lib/libspike.a" -g
check "ABI: abidiff against abi/$SONAME.abi" abi_baseline
check "ABI: functions added since the baseline come with a new version" abi_added_bumps_version
check "own recover() etc. + libspike.so: recovery" clash_shared
check "own recover() etc. + libspike.a: recovery" clash_static
check "examples/ built by pkg-config (shared; epoll static)" examples_build
check "examples/embed (libuv, installed spike_uv.h)" run_example ex/embed embed
check "examples/epoll (edge-triggered, shared)" run_example ex/epoll epoll
check "examples/epoll (static libspike.a)" run_example ex-static/epoll epoll-static
check "docs/embedding.md's libuv and epoll programs" doc_programs
check "make uninstall leaves nothing" uninstall_all

summary
