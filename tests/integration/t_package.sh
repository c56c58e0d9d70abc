#!/usr/bin/env bash
# The Debian package (packaging/, cmake/Packaging.cmake; docs/packaging.md): builds it in a
# temporary build directory as `make deb` does, checks its control data, its contents, the
# conffiles, the maintainer scripts and the systemd unit (systemd-analyze verify and
# security, the io_uring system calls left allowed), that the packaged configuration loads,
# and lintian: any error or warning not overridden (with a reason) fails. Last, scepd under a
# fake NOTIFY_SOCKET must say READY=1 once it serves and STOPPING=1 when told to stop.
source "$(dirname "$0")/lib.sh"

command -v lintian >/dev/null || { log "lintian is not installed (scripts/install-deps.sh)"; exit 1; }

# ---- build
deb=$("$SRC/packaging/build-deb.sh" "$T/deb-build" 2 2>"$T/build.log" | tail -n 1) ||
  { tail -n 40 "$T/build.log" >&2; fail "packaging/build-deb.sh"; finish; exit 1; }
check "a .deb was built" test -s "$deb"

# ---- control data
info=$(dpkg-deb -I "$deb")
field() { dpkg-deb -f "$deb" "$1"; }
check "Package: scepd" test "$(field Package)" = scepd
check "version = packaging/changelog" \
  test "$(field Version)" = "$(dpkg-parsechangelog -l "$SRC/packaging/changelog" -S Version)"
for dep in adduser libc6 libssl3 liblmdb0 liburing2; do
  check "Depends: $dep" grep -Eq "(^|, )$dep( |,|$)" <<<"$(field Depends)"
done
for m in postinst prerm postrm conffiles md5sums; do
  check "control member $m" grep -Eq "^ +[0-9]+ bytes, +[0-9]+ lines +\*? +$m( |$)" <<<"$info"
done

# ---- contents
dpkg-deb -c "$deb" | awk '{print $2 " " $6}' >"$T/contents"
has() { grep -q -- " \./$1\$" "$T/contents"; }
for p in usr/sbin/scepd usr/sbin/scepctl usr/bin/scep-loadgen etc/scepd/scepd.conf \
         lib/systemd/system/scepd.service etc/logrotate.d/scepd \
         usr/share/man/man8/scepd.8.gz usr/share/man/man8/scepctl.8.gz \
         usr/share/man/man1/scep-loadgen.1.gz usr/share/man/man5/scepd.conf.5.gz \
         usr/share/doc/scepd/copyright usr/share/doc/scepd/changelog.Debian.gz \
         usr/share/doc/scepd/examples/scepd.conf.example usr/share/doc/scepd/configuration.md \
         usr/share/doc/scepd/packaging.md usr/share/lintian/overrides/scepd; do
  check "contains /$p" has "$p"
done
for f in "$SRC"/conf/profiles/*.conf; do
  [ "$(basename "$f")" = legacy.conf ] && continue
  check "contains /etc/scepd/profiles/$(basename "$f")" has "etc/scepd/profiles/$(basename "$f")"
done
check "the single-DES legacy profile is not enabled (/etc)" bash -c '! grep -q "etc/scepd/profiles/legacy.conf" "$1"' _ "$T/contents"
check "the legacy profile ships as an example" has "usr/share/doc/scepd/examples/profiles/legacy.conf"
check "every file is root:root" test -z "$(awk '$1 != "root/root"' "$T/contents")"
check "no /var in the package (the maintainer scripts make it)" \
  test -z "$(grep ' \./var/' "$T/contents" || true)"

R=$T/root
mkdir -p "$R" "$T/control"
dpkg-deb -x "$deb" "$R"
dpkg-deb -e "$deb" "$T/control"
check "conffiles = every file under /etc" \
  test "$(sort "$T/control/conffiles")" = "$(cd "$R" && find etc -type f | sed 's|^|/|' | sort)"
check "unit = packaging/scepd.service" cmp -s "$R/lib/systemd/system/scepd.service" \
  "$SRC/packaging/scepd.service"

# ---- maintainer scripts
for s in postinst prerm postrm; do
  check "$s: sh -n" sh -n "$T/control/$s"
  check "$s: mode 0755" test "$(stat -c %a "$T/control/$s")" = 755
done
check "postinst creates the scepd system user" \
  grep -Eq -- '--system .*--group .* scepd$' <<<"$(grep -A1 'adduser ' "$T/control/postinst" | tr -d '\\\n')"
check "postinst makes /var/lib/scepd scepd:scepd 0750" \
  grep -q 'install -d -o scepd -g scepd -m 0750 "$d"' "$T/control/postinst"
check "postinst covers /var/lib/scepd and /var/log/scepd" \
  grep -q 'for d in /var/lib/scepd /var/log/scepd' "$T/control/postinst"
check "postrm purge keeps a non-empty /var/lib/scepd (the CA)" \
  grep -q 'rmdir --ignore-fail-on-non-empty /var/lib/scepd' "$T/control/postrm"

# ---- the packaged configuration: loads (scepctl prints the ca usage, exit 2, only after
# config_load succeeded) and keeps every key of the example.
rc=0; "$T/deb-build/scepctl" -c "$R/etc/scepd/scepd.conf" ca >"$T/conf.out" 2>&1 || rc=$?
check "the packaged scepd.conf loads" test "$rc" -eq 2 -a -n "$(grep '^usage:' "$T/conf.out")"
keys() { sed -n 's/^\([a-z_0-9]*\) *=.*/\1/p' "$1"; }
check "the packaged scepd.conf has every key of the example" \
  test "$(keys "$SRC/conf/scepd.conf.example")" = "$(keys "$R/etc/scepd/scepd.conf")"
for kv in "state_dir = /var/lib/scepd" "audit_log = /var/log/scepd/audit.log" \
          "path = /var/lib/scepd/store" "profiles_dir = /etc/scepd/profiles"; do
  check "scepd.conf: $kv" grep -q "^$kv\( \|$\)" "$R/etc/scepd/scepd.conf"
done

# ---- the unit
unit=$R/lib/systemd/system/scepd.service
for d in Type=notify User=scepd Group=scepd NoNewPrivileges=yes ProtectSystem=strict \
         ProtectHome=yes PrivateTmp=yes "ReadWritePaths=/var/lib/scepd /var/log/scepd" \
         CapabilityBoundingSet= AmbientCapabilities= Restart=on-failure LimitNOFILE=1048576 \
         "ExecStart=/usr/sbin/scepd -c /etc/scepd/scepd.conf"; do
  check "unit: $d" grep -qx -- "$d" "$unit"
done
# The unit's system call filter, expanded: io_uring_setup/enter/register must stay allowed.
expand() { for g in "$@"; do
  case $g in @*) expand $(systemd-analyze syscall-filter "$g" | sed -n 's/^    \([@a-z0-9_]\+\)$/\1/p') ;;
             *) echo "$g" ;; esac; done; }
allow=$(expand $(sed -n 's/^SystemCallFilter=\([^~].*\)/\1/p' "$unit") | sort -u)
deny=$(expand $(sed -n 's/^SystemCallFilter=~\(.*\)/\1/p' "$unit") | sort -u)
for sc in io_uring_setup io_uring_enter io_uring_register; do
  check "SystemCallFilter allows $sc" \
    test -n "$(grep -x "$sc" <<<"$allow")" -a -z "$(grep -x "$sc" <<<"$deny" || true)"
done
# verify/security read the unit in the package's tree, with the host's own units beside it
# (the targets it names), and its man pages for Documentation=.
cp -an /lib/systemd/system/. "$R/lib/systemd/system/"
rc=0; MANPATH=$R/usr/share/man systemd-analyze verify --root="$R" scepd.service >"$T/verify" 2>&1 || rc=$?
check "systemd-analyze verify: no complaint" test "$rc" -eq 0 -a ! -s "$T/verify"
cat "$T/verify" >&2
rc=0; systemd-analyze security --offline=yes --threshold=15 --root="$R" scepd.service \
  >"$T/security" 2>&1 || rc=$?
score=$(sed -n 's/.*Overall exposure level for scepd.service: \([0-9.]*\).*/\1/p' "$T/security")
log "systemd-analyze security: exposure ${score:-?}"
check "systemd-analyze security: exposure at most 1.5" \
  awk -v s="${score:-99}" 'BEGIN { exit !(s <= 1.5) }'

# ---- lintian: errors and warnings fail unless overridden; every override has a reason and
# is used.
ov=$SRC/packaging/lintian-overrides
check "every lintian override has a reason above it" \
  awk '/^#/ { c = 1; next } /^$/ { c = 0; next } { if (!c) bad = 1 } END { exit bad }' "$ov"
rc=0; lintian -I --pedantic --fail-on error,warning "$deb" >"$T/lintian" 2>&1 || rc=$?
grep -v '^running with root privileges' "$T/lintian" >&2 || true
check "lintian: no error or warning" test "$rc" -eq 0
check "lintian: no unused override" test -z "$(grep 'unused-override' "$T/lintian" || true)"

# ---- sd_notify: READY=1 once scepd serves, STOPPING=1 when it stops.
init_state
python3 - "$T/notify" "$T/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(120)
with open(sys.argv[2], "a") as log:
    try:
        while True:
            msg = s.recv(4096).decode()
            log.write(msg.rstrip("\n") + "\n")
            log.flush()
            if "STOPPING=1" in msg.split("\n"):
                break
    except socket.timeout:
        pass
PY
listener=$!
for _ in $(seq 1 100); do [ -S "$T/notify" ] && break; sleep 0.05; done
export NOTIFY_SOCKET=$T/notify
start_scepd
unset NOTIFY_SOCKET
for _ in $(seq 1 100); do grep -qx READY=1 "$T/notify.log" 2>/dev/null && break; sleep 0.05; done
check "scepd sent READY=1 (sdnotify wired into app_run, docs/packaging.md)" \
  grep -qx READY=1 "$T/notify.log"
stop_scepd
for _ in $(seq 1 100); do kill -0 "$listener" 2>/dev/null || break; sleep 0.05; done
check "scepd sent STOPPING=1 on SIGTERM" grep -qx STOPPING=1 "$T/notify.log"
kill "$listener" 2>/dev/null || true
wait "$listener" 2>/dev/null || true

finish
