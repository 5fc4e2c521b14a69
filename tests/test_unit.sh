#!/bin/sh
# tests/test_unit.sh -- spiked as `make install` leaves it for systemd:
# the unit file passes `systemd-analyze verify`, its sandboxing scores as
# systemd-analyze security's "OK" or better, it asks for what
# docs/operations.md promises (a dynamic user, a state directory, a
# read-only system, no new privileges, a descriptor limit), and the
# installed spiked reads the installed config file. One line per case,
# then "N passed, M failed"; exit 1 on any failure. Run by tests/run.sh.
set -u
cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spike-unit.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
log=$tmp/log
. tests/check.sh

# Installed under a scratch PREFIX with no DESTDIR, so the unit's
# ExecStart names a binary that exists and verify can check it.
prefix=$tmp/usr
unit=$prefix/lib/systemd/system/spiked.service
conf=$tmp/etc/spike/spiked.conf

# A fresh make: the one running tests/run.sh, if any, keeps its jobserver.
install_it() {
  env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -s install-spiked \
    PREFIX="$prefix" SYSCONFDIR="$tmp/etc"
}

# verify prints its findings and may still exit 0: any output fails.
verify() {
  systemd-analyze verify "$unit" >"$tmp/verify" 2>&1 || { cat "$tmp/verify"; return 1; }
  [ ! -s "$tmp/verify" ] || { cat "$tmp/verify"; return 1; }
}

# "Overall exposure level for spiked.service: 1.4 OK": under 3.0.
exposure() {
  systemd-analyze security --offline=yes "$unit" >"$tmp/sec" 2>&1 || { cat "$tmp/sec"; return 1; }
  level=$(sed -n 's/.*Overall exposure level for spiked.service: \([0-9.]*\).*/\1/p' "$tmp/sec")
  echo "exposure $level"
  [ -n "$level" ] && awk -v l="$level" 'BEGIN { exit !(l < 3.0) }'
}

asks_for() {
  # SystemCallErrorNumber: without it a call the filter refuses kills
  # spiked, and the backup thread's setpriority is one (route backups
  # killed it under this unit).
  for k in DynamicUser=yes StateDirectory=spike ProtectSystem=strict NoNewPrivileges=yes \
    LimitNOFILE=65536 "ExecStart=$prefix/bin/spiked --config $conf" SystemCallErrorNumber=EPERM \
    RestartPreventExitStatus=2; do
    grep -qx "$k" "$unit" || { echo "missing: $k"; return 1; }
  done
}

# --check-config reads the config file and the environment and checks
# them, so a key the parser does not know fails here.
reads_config() { "$prefix/bin/spiked" --config "$conf" --check-config; }

check "make install-spiked" install_it
check "systemd-analyze verify" verify
check "sandboxing exposure under 3.0" exposure
check "unit asks for the sandbox" asks_for
check "installed config parses" reads_config

summary
