#!/usr/bin/env bash
# Builds the Debian package from a build tree and checks it:
#   - cpack -G DEB succeeds (dependencies computed by dpkg-shlibdeps);
#   - dpkg-deb --info / --contents: fields, binary, unit, conffiles, man pages,
#     permissions of the files holding secrets;
#   - the shipped configuration, as unpacked, passes `pgmux --check`;
#   - the man pages format without groff warnings;
#   - `systemd-analyze verify` accepts the unit (ExecStart pointed at the
#     unpacked binary, since verify needs it to exist);
#   - as root on Debian, when no pgmux is installed: dpkg -i, the service
#     user, permissions, `pgmux --version`, `pgmux --check` as root and as the
#     service user, the unit enabled; then dpkg --purge, and the machine is
#     left as it was (the pgmux user and group are removed if this test
#     created them). PGMUX_TEST_DPKG_INSTALL=0 skips this part.
#
# Usage: test_deb.sh BUILD_DIR [CPACK]
# Exit status 0 = passed, 77 = skipped (a tool is missing; the reason is
# printed), anything else = failed.
set -euo pipefail

build=${1:?usage: test_deb.sh BUILD_DIR [CPACK]}
cpack=${2:-cpack}
build=$(cd "$build" && pwd)

skip() {
  echo "SKIP: $*"
  exit 77
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
ok() { echo "ok   $*"; }

for tool in "$cpack" dpkg-deb dpkg-shlibdeps systemd-analyze gzip; do
  command -v "$tool" >/dev/null 2>&1 ||
    skip "$tool not found (Debian: apt-get install dpkg-dev systemd; scripts/test installs them)"
done
[[ -f "$build/CPackConfig.cmake" ]] || fail "$build/CPackConfig.cmake missing: configure with the install/CPack section"
[[ -x "$build/pgmux" ]] || fail "$build/pgmux missing: build the pgmux target first"

tmp=$(mktemp -d /tmp/pgmux-deb-test.XXXXXX)
installed_by_us=0
user_existed=1
group_existed=1
cleanup() {
  local rc=$?
  if [[ $installed_by_us == 1 ]]; then
    dpkg --purge pgmux >/dev/null 2>&1 || true
  fi
  if [[ $user_existed == 0 ]] && getent passwd pgmux >/dev/null; then
    userdel pgmux >/dev/null 2>&1 || true
  fi
  if [[ $group_existed == 0 ]] && getent group pgmux >/dev/null; then
    groupdel pgmux >/dev/null 2>&1 || true
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT

# --- build --------------------------------------------------------------------
(cd "$build" && "$cpack" --config "$build/CPackConfig.cmake" -G DEB -B "$tmp/out") >"$tmp/cpack.log" 2>&1 ||
  { cat "$tmp/cpack.log"; fail "cpack -G DEB failed"; }
debs=("$tmp"/out/*.deb)
[[ ${#debs[@]} == 1 && -f ${debs[0]} ]] || fail "expected one .deb in $tmp/out, got: ${debs[*]}"
deb=${debs[0]}
ok "cpack -G DEB built $(basename "$deb")"

# --- metadata -----------------------------------------------------------------
info=$(dpkg-deb --info "$deb")
field() { dpkg-deb --field "$deb" "$1"; }
[[ $(field Package) == pgmux ]] || fail "Package: $(field Package)"
version=$("$build/pgmux" --version | awk '{print $2}')
[[ $(field Version) == "$version"-* ]] || fail "Version $(field Version) does not match pgmux --version ($version)"
[[ $(field Section) == database ]] || fail "Section: $(field Section)"
[[ -n $(field Maintainer) ]] || fail "no Maintainer"
[[ -n $(field Description) ]] || fail "no Description"
depends=$(field Depends)
for lib in adduser libc6 libuv1 libssl3 libstdc++6; do
  [[ $depends == *"$lib"* ]] || fail "Depends lacks $lib (dpkg-shlibdeps not run?): $depends"
done
for script in postinst prerm postrm conffiles; do
  grep -qw "$script" <<<"$info" || fail "control archive lacks $script"
done
ok "control fields: $(field Package) $(field Version) $(field Architecture), Depends: $depends"

mkdir "$tmp/control"
dpkg-deb --control "$deb" "$tmp/control"
diff <(sort "$tmp/control/conffiles") <(printf '%s\n' /etc/pgmux/pgmux.toml /etc/pgmux/userlist.txt) >/dev/null ||
  fail "conffiles: $(tr '\n' ' ' <"$tmp/control/conffiles")"
for script in postinst prerm postrm; do
  sh -n "$tmp/control/$script" || fail "$script: shell syntax error"
  [[ -x "$tmp/control/$script" ]] || fail "$script is not executable"
done
ok "conffiles and maintainer scripts"

contents=$(dpkg-deb --contents "$deb")
has() { # mode-prefix path
  grep -Eq "^$1 +root/root +[0-9]+ .* \./${2#/}\$" <<<"$contents" || fail "package lacks $2 (mode $1)"
}
has -rwxr-xr-x /usr/bin/pgmux
unit=$(grep -Eo '\./(usr/)?lib/systemd/system/pgmux\.service$' <<<"$contents") || fail "package lacks the unit"
unit=${unit#.}
has -rw-r--r-- "$unit"
has -rw-r--r-- /etc/pgmux/pgmux.toml
has -rw-r--r-- /etc/pgmux/userlist.txt
has -rw-r--r-- /usr/share/man/man1/pgmux.1.gz
has -rw-r--r-- /usr/share/man/man5/pgmux.toml.5.gz
ok "contents: /usr/bin/pgmux, $unit, /etc/pgmux/{pgmux.toml,userlist.txt}, man pages"

# --- the unpacked files ---------------------------------------------------------
root=$tmp/root
dpkg-deb --extract "$deb" "$root"
[[ $("$root/usr/bin/pgmux" --version) == "pgmux $version" ]] || fail "unpacked pgmux --version"
"$root/usr/bin/pgmux" --check --config "$root/etc/pgmux/pgmux.toml" >"$tmp/check.log" 2>&1 ||
  { cat "$tmp/check.log"; fail "the shipped configuration does not pass --check"; }
ok "the shipped configuration passes pgmux --check as unpacked"

if command -v groff >/dev/null 2>&1; then
  for page in "$root"/usr/share/man/man1/pgmux.1.gz "$root"/usr/share/man/man5/pgmux.toml.5.gz; do
    warnings=$(gzip -dc "$page" | LC_ALL=C.UTF-8 groff -man -ww -z -Tutf8 2>&1)
    [[ -z $warnings ]] || fail "$(basename "$page"): groff warnings: $warnings"
  done
  ok "man pages format without warnings"
fi

# systemd-analyze verify needs the Exec* binaries to exist: point the unit
# at the unpacked one. --man=no: the pages are not installed yet.
mkdir "$tmp/unit"
sed "s#/usr/bin/pgmux#$root/usr/bin/pgmux#g" "$root$unit" >"$tmp/unit/pgmux.service"
verify=$(systemd-analyze verify --man=no "$tmp/unit/pgmux.service" 2>&1) ||
  fail "systemd-analyze verify: $verify"
[[ -z $verify ]] || fail "systemd-analyze verify warnings: $verify"
for line in Type=notify "ExecReload=/bin/kill -HUP \$MAINPID" KillSignal=SIGTERM WatchdogSec=30s \
  User=pgmux Group=pgmux LimitNOFILE=65536 Restart=on-failure NoNewPrivileges=yes ProtectSystem=strict \
  "CapabilityBoundingSet=" RuntimeDirectory=pgmux LogsDirectory=pgmux; do
  grep -qxF -- "$line" "$root$unit" || fail "unit lacks $line"
done
ok "systemd-analyze verify accepts the unit"

# --- install and purge ------------------------------------------------------------
if [[ ${PGMUX_TEST_DPKG_INSTALL:-1} == 0 ]]; then
  echo "note: PGMUX_TEST_DPKG_INSTALL=0: not installing"
  exit 0
fi
if [[ $(id -u) != 0 ]] || ! command -v dpkg >/dev/null || [[ ! -f /etc/debian_version ]]; then
  echo "note: not root on Debian: dpkg -i / --purge not tried"
  exit 0
fi
if dpkg-query -W -f='${Status}' pgmux 2>/dev/null | grep -qv 'not-installed'; then
  echo "note: a pgmux package is already on this machine: not touching it"
  exit 0
fi
if [[ -e /usr/bin/pgmux || -e /etc/pgmux ]]; then
  echo "note: /usr/bin/pgmux or /etc/pgmux exists: not installing over it"
  exit 0
fi
getent passwd pgmux >/dev/null || user_existed=0
getent group pgmux >/dev/null || group_existed=0
# With systemd running, postinst starts the service on the shipped
# configuration's 127.0.0.1:6432, which something else (PgBouncer's default)
# may hold.
port_busy=0
if (exec 3<>/dev/tcp/127.0.0.1/6432) 2>/dev/null; then
  port_busy=1
fi

installed_by_us=1
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i failed"; }
ok "dpkg -i"

[[ $(/usr/bin/pgmux --version) == "pgmux $version" ]] || fail "/usr/bin/pgmux --version"
getent passwd pgmux >/dev/null || fail "postinst did not create the pgmux user"
IFS=: read -r _ _ uid gid _ _ shell < <(getent passwd pgmux)
[[ $uid -lt 1000 ]] || fail "pgmux is not a system user (uid $uid)"
[[ $(getent group pgmux | cut -d: -f3) == "$gid" ]] || fail "pgmux's primary group is not pgmux"
[[ $shell == */nologin || $shell == /bin/false ]] || fail "pgmux has a login shell: $shell"
for f in /etc/pgmux/pgmux.toml /etc/pgmux/userlist.txt; do
  [[ $(stat -c '%U:%G %a' "$f") == "root:pgmux 640" ]] || fail "$f is $(stat -c '%U:%G %a' "$f"), want root:pgmux 640"
done
ok "system user pgmux (uid $uid, shell $shell); configuration root:pgmux 0640"

/usr/bin/pgmux --check --config /etc/pgmux/pgmux.toml >"$tmp/check.log" 2>&1 ||
  { cat "$tmp/check.log"; fail "pgmux --check --config /etc/pgmux/pgmux.toml"; }
# The service runs as pgmux: it must be able to read what it is given.
if command -v runuser >/dev/null 2>&1; then
  runuser -u pgmux -- /usr/bin/pgmux --check --config /etc/pgmux/pgmux.toml >"$tmp/check.log" 2>&1 ||
    { cat "$tmp/check.log"; fail "pgmux --check as the pgmux user"; }
  ok "pgmux --check --config /etc/pgmux/pgmux.toml passes as root and as pgmux"
else
  ok "pgmux --check --config /etc/pgmux/pgmux.toml passes"
fi

if command -v deb-systemd-helper >/dev/null 2>&1; then
  # (deb-systemd-helper is-enabled only runs from maintainer scripts.)
  [[ -L /etc/systemd/system/multi-user.target.wants/pgmux.service ]] ||
    fail "postinst did not enable pgmux.service (no multi-user.target.wants symlink)"
  ok "pgmux.service enabled by deb-systemd-helper"
fi
if [[ ! -d /run/systemd/system ]]; then
  echo "note: systemd is not running here: the service was enabled, not started"
elif [[ $port_busy == 1 ]]; then
  echo "note: 127.0.0.1:6432 was already in use: not checking that the service started"
elif [[ -x /usr/sbin/policy-rc.d ]] && { /usr/sbin/policy-rc.d pgmux.service start >/dev/null 2>&1; [[ $? == 101 ]]; }; then
  echo "note: /usr/sbin/policy-rc.d forbids starting services here: postinst did not start pgmux.service"
else
  for _ in $(seq 50); do
    systemctl is-active --quiet pgmux.service && break
    sleep 0.1
  done
  systemctl is-active --quiet pgmux.service ||
    fail "postinst did not start pgmux.service: $(systemctl status pgmux.service --no-pager 2>&1 | tail -n 15)"
  status=$(systemctl show -p StatusText --value pgmux.service)
  [[ $status == "listening on "* ]] || fail "pgmux.service StatusText: $status"
  ok "systemd started pgmux.service (Type=notify): $status"
  systemctl reload pgmux.service || fail "systemctl reload pgmux"
  systemctl is-active --quiet pgmux.service || fail "pgmux.service not active after reload"
  ok "systemctl reload pgmux"
fi
# The installed unit as is, with its man pages now present when man exists.
man_opt=--man=no
command -v man >/dev/null 2>&1 && man_opt=--man=yes
verify=$(systemd-analyze verify "$man_opt" "$unit" 2>&1) || fail "systemd-analyze verify $unit: $verify"
[[ -z $verify ]] || fail "systemd-analyze verify $unit warnings: $verify"
ok "systemd-analyze verify $man_opt $unit (installed)"

dpkg --purge pgmux >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg --purge failed"; }
installed_by_us=0
for gone in /usr/bin/pgmux "$unit" /etc/pgmux /usr/share/man/man1/pgmux.1.gz \
  /etc/systemd/system/multi-user.target.wants/pgmux.service /var/log/pgmux \
  /var/lib/systemd/deb-systemd-helper-enabled/pgmux.service.dsh-also; do
  [[ ! -e $gone && ! -L $gone ]] || fail "$gone is still there after dpkg --purge"
done
if dpkg-query -W -f='${Status}' pgmux 2>/dev/null | grep -qv 'not-installed'; then
  fail "dpkg still knows pgmux: $(dpkg-query -W -f='${Status}' pgmux)"
fi
if [[ -d /run/systemd/system ]] && systemctl is-active --quiet pgmux.service; then
  fail "pgmux.service still running after dpkg --purge"
fi
ok "dpkg --purge removed every file"
# cleanup (trap) removes the user and group if this test created them.
