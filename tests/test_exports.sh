#!/bin/sh
# tests/test_exports.sh -- what an embedder links. Installs libspike into a
# scratch prefix with `make install`, then checks that the installed
# libspike.so and libspike.a define no global name outside spike_* and every
# name spike.h exports, and that tests/clash.c -- a program with its own
# recover(), store_open() and log_line() -- links against each of them and
# still gets libspike's recovery. One line per case, then "N passed, M
# failed"; exit 1 on any failure. Run by tests/run.sh, or alone from anywhere.
set -u
cd "$(dirname "$0")/.." || exit 1
CC=${CC:-cc}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spike-exports.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
prefix=$tmp/prefix
CFLAGS_CLASH="-std=gnu11 -Wall -Wextra -Wpedantic -Werror -g"
. tests/check.sh

# A fresh make: the one running tests/run.sh, if any, keeps its jobserver.
install_prefix() {
  env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -s install PREFIX="$prefix" &&
    [ -f "$prefix/lib/libspike.a" ] && [ -f "$prefix/lib/libspike.so.0" ]
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

pc() { PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config "$@" spike; }

clash_shared() {
  $CC $CFLAGS_CLASH -o "$tmp/clash-shared" tests/clash.c $(pc --cflags --libs) \
    -Wl,-rpath,"$prefix/lib" &&
    "$tmp/clash-shared" "$tmp/data-shared"
}

clash_static() {
  $CC $CFLAGS_CLASH -o "$tmp/clash-static" tests/clash.c $(pc --cflags) "$prefix/lib/libspike.a" \
    $(pc --static --libs | sed 's/\(^\| \)-lspike\( \|$\)/ /') &&
    "$tmp/clash-static" "$tmp/data-static"
}

check "make install into a scratch prefix" install_prefix
check "libspike.so defines only spike_*" only_spike "$prefix/lib/libspike.so.0" -D
check "libspike.a defines only spike_*" only_spike "$prefix/lib/libspike.a" -g
check "libspike.so exports all of spike.h" exports_api "$prefix/lib/libspike.so.0" -D
check "libspike.a exports all of spike.h" exports_api "$prefix/lib/libspike.a" -g
check "own recover() etc. + libspike.so: recovery" clash_shared
check "own recover() etc. + libspike.a: recovery" clash_static

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
