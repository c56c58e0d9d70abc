# Shared helpers for the integration tests: a fresh state directory (SoftHSM token, keys,
# store), a scepd on a loopback port chosen by the kernel, assertions, cleanup.
set -euo pipefail

SRC=${SCEPD_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${SCEPD_BUILD:-$SRC/build}
T=$(mktemp -d /tmp/scepd-it.XXXXXX)
SCEPD_PID=""
PASSED=0
FAILED=0

log() { printf '%s\n' "$*" >&2; }

# Stops scepd with SIGTERM and checks how it ended: a clean shutdown exits 0, and under
# ASan/UBSan (make test-asan) a leak or error report makes the exit status non-zero.
stop_scepd() {
  local pid=$SCEPD_PID rc=0
  SCEPD_PID=""
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    # Up to 60 s: an ASan build's exit (the leak check) on two loaded cores is slow.
    local end=$((SECONDS + 60))
    while [ "$SECONDS" -lt "$end" ] && kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  if [ "$rc" -ne 0 ] || grep -q "Sanitizer" "$T/scepd.log" 2>/dev/null; then
    FAILED=$((FAILED + 1))
    log "FAIL - scepd did not shut down cleanly (exit $rc)"
    grep -A30 "Sanitizer" "$T/scepd.log" 2>/dev/null | head -40 >&2 || true
  fi
}

cleanup() {
  local rc=$?
  stop_scepd
  if [ $rc -ne 0 ] || [ $FAILED -ne 0 ]; then
    log "--- scepd log ---"; cat "$T/scepd.log" 2>/dev/null | tail -n 40 >&2 || true
    log "--- audit log (tail) ---"; tail -n 20 "$T/state/audit.log" 2>/dev/null >&2 || true
  fi
  [ -n "${KEEP_T:-}" ] && { log "kept $T"; return; }
  rm -rf "$T"
}
trap cleanup EXIT

# init_state [KEYS=pkcs11|file]: a state directory at $T/state, audit log to a file.
init_state() {
  LISTEN=127.0.0.1:0 AUDIT_LOG=audit.log BUILD="$BUILD" SHARDS=2 WORKERS=2 \
    KEYS=${KEYS:-pkcs11} CHALLENGE=${CHALLENGE:-sesame} "$SRC/scripts/init-state.sh" "$T/state"
  STATE=$T/state
  CONF=$STATE/scepd.conf
  CHALLENGE_VALUE=$(cat "$STATE/challenge")
  # With LISTEN on port 0, init-state.sh puts the admin listener on a kernel-chosen port too
  # (its default, 127.0.0.1:8081, would be shared by every test running at once).
  grep -q '^listen *= *127.0.0.1:0$' <(sed -n '/^\[admin\]/,/^\[/p' "$CONF") ||
    { log "init_state: no [admin] listen = 127.0.0.1:0 in $CONF"; return 1; }
}

# start_scepd: scepd in the background; PORT/URL: the SCEP listener, ADMIN_PORT/ADMIN_URL
# (http://127.0.0.1:P, no trailing slash): the admin listener (/admin/..., /metrics).
# Healthy within 60 s (an ASan scepd opening its token on two loaded cores); scepd writes
# the admin port file before the SCEP one, each with one write of "n\n".
start_scepd() {
  local end=$((SECONDS + 60))
  rm -f "$T/port" "$T/admin-port"
  "$BUILD/scepd" -c "$CONF" --port-file "$T/port" --admin-port-file "$T/admin-port" \
    >"$T/scepd.log" 2>&1 &
  SCEPD_PID=$!
  while [ "$SECONDS" -lt "$end" ]; do
    if [ -s "$T/port" ]; then
      PORT=$(cat "$T/port")
      URL="http://127.0.0.1:$PORT/scep"
      ADMIN_PORT=$(cat "$T/admin-port" 2>/dev/null || echo 0)
      ADMIN_URL="http://127.0.0.1:$ADMIN_PORT"
      if curl -fsS --max-time 10 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then return 0; fi
    fi
    kill -0 "$SCEPD_PID" 2>/dev/null || { cat "$T/scepd.log" >&2; return 1; }
    sleep 0.05
  done
  log "scepd did not become healthy within 60 s"; cat "$T/scepd.log" >&2; return 1
}

# free_port: a loopback TCP port, free when picked, for a listener whose port must be written
# into a configuration beforehand (scepd's [tls] listen, haproxy, Patroni, etcd). Not from
# bind(port 0): such a port is in the kernel's ephemeral range (ip_local_port_range), so
# between the pick and the listener's bind the kernel could hand it to another test's
# listener or outgoing connection (and scepd's SO_REUSEPORT would share it with another
# scepd). Random outside that range, never twice in one test ($T/ports).
free_port() {
  python3 - "$T/ports" <<'PY'
import random, socket, sys
lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
try:
    taken = {int(l) for l in open(sys.argv[1])}
except OSError:
    taken = set()
pool = [p for p in list(range(10000, lo)) + list(range(hi + 1, 65536)) if p not in taken]
random.shuffle(pool)
for p in pool:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    with open(sys.argv[1], "a") as f:
        f.write("%d\n" % p)
    print(p)
    sys.exit(0)
sys.exit("free_port: no free port outside %d-%d" % (lo, hi))
PY
}

ok()   { PASSED=$((PASSED + 1)); log "ok   - $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
# check_audit WHAT CMD...: check for a read-only look at the audit log, tried again for up
# to 10 s (audit_retry below: scepd writes the log a moment after it answered).
check_audit() { local what=$1; shift; if audit_retry "$@"; then ok "$what"; else fail "$what"; fi; }

# scepd writes its audit log from a writer thread, a moment after the answer went out (the
# shards and workers only queue the record): a check of the log that fails is tried again for
# up to 10 s before it counts as failed, and a mark waits until the log has stopped growing,
# so that the lines of the transaction before it are not counted after it.
audit_retry() {
  local i
  for i in $(seq 1 100); do "$@" 2>/dev/null && return 0; sleep 0.1; done
  "$@"
}
audit_lines() { wc -l < "$STATE/audit.log"; }
audit_settle() {
  local i n m
  n=$(audit_lines)
  for i in $(seq 1 50); do
    sleep 0.2
    m=$(audit_lines)
    [ "$m" = "$n" ] && return 0
    n=$m
  done
}

# audit_has FRAGMENT: the audit log has a line containing the given JSON fragment. For
# successes and non-transaction events only; a refusal is checked with expect_refusal.
audit_has() { audit_retry grep -q -- "$1" "$STATE/audit.log"; }

# --- requirements: a test that cannot run is skipped (77) on a developer machine, but fails
# where the suite's dependencies are supposed to be there: SCEPD_REQUIRE_ALL=1, CI=true, or
# the marker scripts/install-deps.sh leaves in the build directory (make test runs it).
require_all() {
  [ "${SCEPD_REQUIRE_ALL:-}" = 1 ] || [ "${CI:-}" = true ] || [ -e "$BUILD/.deps-installed" ]
}
# need WHAT COMMAND...: runs COMMAND; if it fails, WHAT is missing: exit 1 when everything is
# required, else 77 (ctest: skipped). Call it before the first check, so a skip hides nothing.
need() {
  local what=$1; shift
  "$@" >/dev/null 2>&1 && return 0
  if require_all; then log "FAIL - $what missing (SCEPD_REQUIRE_ALL / CI / deps marker)"; exit 1; fi
  log "SKIP - $what missing"; exit 77
}
need_cmd() { local c; for c in "$@"; do need "$c" command -v "$c"; done; }

# --- refusals: the answer on the wire and the audit event of that one transaction ---

# failinfo_num NAME|NUMBER: the failInfo number (RFC 8894 3.2.1.4.5) of badAlg .. badCertId.
failinfo_num() {
  case $1 in
    badAlg|0) echo 0 ;; badMessageCheck|1) echo 1 ;; badRequest|2) echo 2 ;;
    badTime|3) echo 3 ;; badCertId|4) echo 4 ;; *) return 1 ;;
  esac
}
# diag_text DIAG: the failInfoText of a diagnostic, from engine/scep/reject.h.
diag_text() {
  sed -n "s/^ *X([A-Z_]*, *[A-Z]*, *\"$1\", *\"\(.*\)\") *\\\\\{0,1\}\$/\1/p" "$SRC/engine/scep/reject.h"
}
# txid_of NAME|FILE: the transactionID scep_req printed (first txid= line).
reply_file() { if [ -f "$1" ]; then echo "$1"; else echo "$T/$1.out"; fi; }
txid_of() { sed -n 's/^txid=//p' "$(reply_file "$1")" | head -n1; }
# reply_of NAME|FILE: "status|failinfo|failInfoText" of the last CertRep scep_req decoded.
reply_of() {
  awk '/^status=/ { st = $1; fi = $2; sub(/^status=/, "", st); sub(/^failinfo=/, "", fi); txt = "" }
       /^failinfotext=/ { txt = substr($0, 14) }
       END { if (st != "") printf "%s|%s|%s\n", st, fi, txt }' "$(reply_file "$1")"
}
# audit_of TXID: the latest audit line of that transaction.
audit_of() { grep -F -e "\"txid\":\"$1\"" -e "\"txid\":\"$1@" "$STATE/audit.log" | tail -n1; }

# audit_mark: the number of audit lines so far. new_txid MARK: the one transactionID of the
# audit lines written after MARK (fails unless exactly one): how a refusal of a client that
# does not print its transactionID (micromdm's scepclient) is bound to its transaction.
audit_mark() { audit_settle; audit_lines; }
new_txids() { tail -n +$(($1 + 1)) "$STATE/audit.log" | sed -n 's/.*"txid":"\([^"@]*\)[^"]*".*/\1/p' | sort -u; }
has_new_txids() { test -n "$(new_txids "$1")"; }
new_txid() {
  local ids
  audit_retry has_new_txids "$1"
  audit_settle
  ids=$(new_txids "$1")
  [ -n "$ids" ] && [ "$(wc -l <<<"$ids")" -eq 1 ] || { log "  want one new transaction; got: '${ids//$'\n'/ }'"; return 1; }
  echo "$ids"
}
# expect_refusal TXID EVENT DIAG FAILINFO: the latest audit event of transaction TXID is
# EVENT (2000, 2002) with diag DIAG and failinfo FAILINFO (name or number) together.
expect_refusal() { audit_retry expect_refusal_once "$@"; }
expect_refusal_once() {
  local txid=$1 ev=$2 diag=$3 fi line
  fi=$(failinfo_num "$4") || { log "  expect_refusal: unknown failinfo $4"; return 1; }
  [ -n "$txid" ] || { log "  expect_refusal: no transactionID"; return 1; }
  line=$(audit_of "$txid")
  case $line in
    *"\"event\":$ev,"*"\"diag\":\"$diag\",\"failinfo\":$fi,"*"\"txid\":\"$txid\""*) return 0 ;;
  esac
  log "  want event $ev diag $diag failinfo $fi for txid $txid; got: ${line:-no audit line}"
  return 1
}
# expect_failure NAME|FILE EVENT DIAG FAILINFO: scep_req's last CertRep in $T/NAME.out is
# FAILURE with FAILINFO and DIAG's failInfoText, and its transaction's audit event (above).
expect_failure() {
  local rep want
  rep=$(reply_of "$1")
  want="FAILURE|$4|$(diag_text "$3")"
  if [ "$rep" != "$want" ]; then
    log "  want CertRep '$want'; got: '${rep:-$(tail -n 3 "$(reply_file "$1")" 2>/dev/null)}'"
    return 1
  fi
  expect_refusal "$(txid_of "$1")" "$2" "$3" "$4"
}
# expect_detail NAME|FILE DETAIL: the latest audit event of NAME's transaction has that
# detail (the profile rule behind a refusal: profile_key_type, profile_hash, ...).
expect_detail() { audit_retry expect_detail_once "$@"; }
expect_detail_once() {
  local line
  line=$(audit_of "$(txid_of "$1")")
  case $line in *"\"detail\":\"$2\""*) return 0 ;; esac
  log "  want detail $2; got: ${line:-no audit line}"
  return 1
}
# expect_event NAME|FILE EVENT: the audit log has EVENT (1000 issued, 1001 renewed, 1002
# replayed, 1003 returned, ...) for scep_req's transaction in NAME, naming the serial of the
# certificate scep_req printed.
expect_event() { audit_retry expect_event_once "$@"; }
expect_event_once() {
  local txid serial line got
  txid=$(txid_of "$1")
  serial=$(sed -n 's/.*status=SUCCESS failinfo=- serial=\([0-9A-Fa-f]*\).*/\1/p' "$(reply_file "$1")" | tail -n1 | tr 'A-F' 'a-f' | sed 's/^0*//')
  # Events after the store commit name the store's transaction key: a renewal's is
  # TXID@<signer serial>.
  line=$(grep -F -e "\"txid\":\"$txid\"" -e "\"txid\":\"$txid@" "$STATE/audit.log" | grep -F -- "\"event\":$2," | tail -n1)
  got=$(sed -n 's/.*"serial":"\([0-9a-f]*\)".*/\1/p' <<<"$line" | sed 's/^0*//')
  # GetCRL answers name no certificate: the event of the transaction is enough there.
  if grep -q 'status=SUCCESS failinfo=- serial=- ' "$(reply_file "$1")"; then
    [ -n "$txid" ] && [ -n "$line" ] && return 0
  fi
  [ -n "$txid" ] && [ -n "$serial" ] && [ "$got" = "$serial" ] && return 0
  log "  want event $2 serial ${serial:-?} for txid ${txid:-?}; got: ${line:-no audit line}"
  return 1
}
# expect_http_refusal PORT STATUS DIAG: an HTTP-level refusal (event 2001) of the one
# connection from local port PORT (curl -w '%{local_port}'), with its status and diag.
expect_http_refusal() { audit_retry expect_http_refusal_once "$@"; }
expect_http_refusal_once() {
  local line
  line=$(grep -F -- "\"peer\":\"127.0.0.1:$1\"" "$STATE/audit.log" | tail -n1)
  case $line in
    *'"event":2001,'*"\"diag\":\"$3\","*"\"http_status\":$2,"*) return 0 ;;
  esac
  log "  want event 2001 diag $3 http_status $2 for peer port $1; got: ${line:-no audit line}"
  return 1
}

# --- issued certificates ---

# served_chain DIR: the certificates GetCACert serves at $URL, one PEM file each in DIR,
# the self-signed ones (trust anchors) also in DIR/anchors.pem, the others in DIR/others.pem.
served_chain() {
  local d=$1 ct f
  rm -rf "$d" && mkdir -p "$d"
  ct=$(curl -fsS -o "$d/cacert.bin" -w '%{content_type}' "$URL?operation=GetCACert") || return 1
  case $ct in
    application/x-x509-ca-ra-cert*) openssl pkcs7 -inform DER -in "$d/cacert.bin" -print_certs -out "$d/all.pem" ;;
    application/x-x509-ca-cert*) openssl x509 -inform DER -in "$d/cacert.bin" -out "$d/all.pem" ;;
    *) log "  GetCACert: unexpected content type $ct"; return 1 ;;
  esac || return 1
  awk -v d="$d" '/-----BEGIN CERTIFICATE-----/ { n++; f = sprintf("%s/c%02d.pem", d, n) } f { print > f } /-----END CERTIFICATE-----/ { close(f); f = "" }' "$d/all.pem"
  : > "$d/anchors.pem"; : > "$d/others.pem"
  for f in "$d"/c*.pem; do
    if [ "$(openssl x509 -in "$f" -noout -subject -nameopt RFC2253 | cut -d= -f2-)" = \
         "$(openssl x509 -in "$f" -noout -issuer -nameopt RFC2253 | cut -d= -f2-)" ] \
       && openssl verify -x509_strict -CAfile "$f" "$f" >/dev/null 2>&1; then
      cat "$f" >> "$d/anchors.pem"
    else
      cat "$f" >> "$d/others.pem"
    fi
  done
  [ -s "$d/anchors.pem" ]
}
# verify_cert PEM...: each PEM verifies (openssl verify -x509_strict) against the chain the
# running scepd serves in GetCACert at $URL: its self-signed CA as the anchor, the rest
# untrusted (an intermediate CA, the RA).
verify_cert() {
  local d=$T/served-chain out f rc=0
  served_chain "$d" || { log "  verify_cert: cannot get the served chain"; return 1; }
  for f in "$@"; do
    [ -s "$f" ] || { log "  verify_cert: no certificate in $f"; rc=1; continue; }
    if [ -s "$d/others.pem" ]; then
      out=$(openssl verify -x509_strict -CAfile "$d/anchors.pem" -untrusted "$d/others.pem" "$f" 2>&1)
    else
      out=$(openssl verify -x509_strict -CAfile "$d/anchors.pem" "$f" 2>&1)
    fi
    [ "$out" = "$f: OK" ] || { log "  verify_cert $f: $out"; rc=1; }
  done
  return $rc
}
# upn_of PEM: the UPN otherName values (1.3.6.1.4.1.311.20.2.3, UTF8String) of PEM's
# subjectAltName, one a line, read from the DER rather than from openssl's rendering.
upn_of() {
  local der off
  der=$(mktemp "$T/upn.XXXXXX")
  openssl x509 -in "$1" -outform DER -out "$der" || return 1
  off=$(openssl asn1parse -inform DER -in "$der" | grep -A1 ':X509v3 Subject Alternative Name$' | tail -n1 | cut -d: -f1 | tr -d ' ')
  [ -n "$off" ] && openssl asn1parse -inform DER -in "$der" -strparse "$off" \
    | awk '/:Microsoft User Principal Name$/ { want = 1; next } want && /UTF8STRING/ { sub(/.*UTF8STRING *:/, ""); print; want = 0 }'
  rm -f "$der"
}
# ext_is PEM EXT VALUE [critical]: openssl's rendering of extension EXT (keyUsage,
# basicConstraints, extendedKeyUsage, subjectAltName, ...) of PEM is exactly VALUE (value
# lines trimmed and joined with "; "), critical exactly when "critical" is given.
ext_is() {
  local out head val crit=""
  out=$(openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null)
  head=$(head -n1 <<<"$out")
  val=$(tail -n +2 <<<"$out" | sed 's/^ *//; s/ *$//' | awk 'NR > 1 { printf "; " } { printf "%s", $0 }')
  case $head in *": critical") crit=critical ;; esac
  if [ -z "$head" ] || [ "$val" != "$3" ] || [ "$crit" != "${4:-}" ]; then
    log "  $1 $2: want '$3' ${4:-}; got '$val' $crit"
    return 1
  fi
}

finish() {
  stop_scepd
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
