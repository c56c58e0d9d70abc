#!/usr/bin/env bash
# The store cannot commit: a PKIOperation that would issue a certificate gets HTTP 503, no
# certificate leaves the server (the signed CertRep is dropped), its transaction has one
# STORE_FAILURE (3001) event and the certificate is not in the store; once the store writes
# again the same transaction enrolls.
#
# How the commit fails: scepd runs with SIGXFSZ ignored and, for the fault, a file-size limit
# (RLIMIT_FSIZE, set on the running process with prlimit) of two LMDB pages. The kernel then
# refuses with EFBIG every write at or beyond that offset: every data page a commit writes
# (page 2 onward), while the two meta pages stay writable, so LMDB aborts the transaction and
# the environment stays sound. Unlike a full disk this needs no mount, and unlike free space
# it does not depend on which pages LMDB reuses. The audit log and scepd's log are files too:
# they must still be below the limit, which the test checks before it relies on them.
. "$(dirname "$0")/lib.sh"
. "$SRC/tests/p11fault/p11fault.sh"
REQ=$BUILD/tests/scep_req

init_state
trap '' XFSZ            # inherited by scepd: a refused write returns EFBIG instead of killing it
start_scepd
cd "$T"

enroll() { local n=$1; shift; "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --key "$T/$n.key" --cert-out "$T/$n.pem" "$@" > "$T/$n.out" 2> "$T/$n.err" || true; }
succeeded() { grep -q '^status=SUCCESS failinfo=- ' "$T/$1.out" || { echo "  got: $(cat "$T/$1.out" "$T/$1.err")" >&2; return 1; }; }
verifies() { openssl verify -CAfile "$STATE/ca.pem" "$T/$1.pem" >/dev/null; }
is() { [ "$1" = "$2" ] || { echo "  got '$1', want '$2'" >&2; return 1; }; }
count() { "$BUILD/scepctl" -c "$CONF" cert count; }

enroll before --cn before
check "store writable: enrollment SUCCESS" succeeded before
check "store writable: certificate verifies" verifies before
n_certs=$(count)

# --- the store refuses every data-page write ---
psize=$(mdb_stat -e "$STATE/store" | sed -n 's/^ *Page size: *//p')
limit=$((2 * psize))
small() { local f; for f in "$STATE/audit.log" "$T/scepd.log"; do
  [ "$(stat -c %s "$f")" -lt $((limit - 1024)) ] || { echo "  $f too big for the fault" >&2; return 1; }; done; }
check "LMDB page size known ($psize)" test "$psize" -ge 512
check "the logs stay writable under the limit" small
prlimit --pid "$SCEPD_PID" --fsize="$limit":
check "scepd runs with the file-size limit" is "$(prlimit --pid "$SCEPD_PID" --fsize --noheadings --output SOFT | tr -d ' ')" "$limit"

enroll_emit full --challenge "$CHALLENGE_VALUE" --cn full
tx_full=$TXID
pki_post full > full.code
check "commit fails: PKIOperation answered HTTP 503 in plain text" is "$(cat full.code)" "503 text/plain"
check "commit fails: the body says retry, no pkiMessage" grep -q "store unavailable, retry later" full.body
check "commit fails: the 503 says when to retry (Retry-After: 2)" grep -qi '^Retry-After: 2' full.hdr
audit_wait "$tx_full" 3001
ev=$(audit_of "$tx_full" 3001)
check "commit fails: one STORE_FAILURE (3001) event for the transaction" is "$(grep -c . <<<"$ev")" 1
check "commit fails: event name STORE_FAILURE" is "$(json_get "$ev" name)" STORE_FAILURE
check "commit fails: event http_status 503" is "$(json_get "$ev" http_status)" 503
check "commit fails: event has no failInfo (no CertRep sent)" is "$(json_get "$ev" failinfo)" ""
check "commit fails: event detail is the write error" is "$(json_get "$ev" detail)" "File too large"
lost=$(json_get "$ev" serial)
check "commit fails: event names the certificate that was not sent" test -n "$lost"
check "commit fails: no ISSUED (1000) event for it" is "$(audit_of "$tx_full" 1000)" ""
check "commit fails: GetCACaps still 200" is "$(http_get operation=GetCACaps | cut -d' ' -f1)" 200
check "commit fails: scepd is still running" kill -0 "$SCEPD_PID"

# --- the store writes again ---
prlimit --pid "$SCEPD_PID" --fsize=unlimited:
check "commit failed: the certificate is not in the store" is "$(count)" "$n_certs"
check "commit failed: its serial is unknown" sh -c "'$BUILD/scepctl' -c '$CONF' cert show '$lost' 2>&1 | grep -q ': not found\$'"
enroll full --cn full
check "store back: the refused transaction enrolls (SUCCESS)" succeeded full
check "store back: same transactionID" is "$(sed -n 's/^txid=//p' full.out)" "$tx_full"
check "store back: its certificate verifies" verifies full
check "store back: a new serial, not the one never sent" \
  test "$(openssl x509 -in full.pem -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')" != "$lost"
audit_wait "$tx_full" 1000
check "store back: audit ISSUED (1000) for it" is "$(audit_of "$tx_full" 1000 | grep -c .)" 1
enroll after --cn after
check "store back: a new enrollment SUCCESS" succeeded after
check "store back: the store has every certificate sent" is "$(count)" "$((n_certs + 2))"
finish
