#!/usr/bin/env bash
# A one-time challenge is consumed in the transaction that records what it pays for, never
# before (docs/store.md "Conditional puts"): when issuance fails after the challenge was
# checked (the CA signature fails in the HSM; the store cannot commit) the client gets 503 and
# the challenge still serves its retry; concurrent duplicates of one request both get the same
# certificate; under manual approval a second request of the transaction with another key is
# refused txid_conflict, whichever the store took first.
. "$(dirname "$0")/lib.sh"
# p11fault.sh defines its own audit_of (TXID EVENT), which would shadow lib.sh's (TXID, used by
# expect_failure): keep lib.sh's under its name, p11fault.sh's as events_of.
eval "$(declare -f audit_of | sed '1s/^audit_of/lib_audit_of/')"
. "$SRC/tests/p11fault/p11fault.sh"
eval "$(declare -f audit_of | sed '1s/^audit_of/events_of/')"
eval "$(declare -f lib_audit_of | sed '1s/^lib_audit_of/audit_of/')"
REQ=$BUILD/tests/scep_req
need_cmd curl prlimit mdb_stat

init_state
P=$STATE/profiles
printf 'challenge = onetime\n' > "$P/otp.conf"
printf 'challenge = onetime\napproval = manual\n' > "$P/manual-otp.conf"
p11fault_use
trap '' XFSZ            # inherited by scepd: a refused write returns EFBIG instead of killing it
start_scepd
cd "$T"
B="http://127.0.0.1:$PORT/scep"

new() { "$BUILD/scepctl" -c "$CONF" challenge new --ttl 10m "$@"; }
is() { [ "$1" = "$2" ] || { echo "  got '$1', want '$2'" >&2; return 1; }; }
count() { "$BUILD/scepctl" -c "$CONF" cert count; }
# emit NAME PROFILE ARGS...: a PKCSReq for /scep/PROFILE into NAME.msg (key NAME.key); TXID.
emit() {
  local n=$1 p=$2; shift 2
  "$REQ" enroll --url "$B/$p" --key "$T/$n.key" --emit "$T/$n.msg" "$@" > "$T/$n.emit" 2> "$T/$n.err" ||
    { cat "$T/$n.err" >&2; return 1; }
  TXID=$(sed -n 's/^txid=//p' "$T/$n.emit")
}
# post NAME PROFILE [TAG]: POSTs NAME.msg; "STATUS CONTENT_TYPE" in NAME[TAG].code, the body
# in NAME[TAG].body.
post() {
  curl -s -o "$T/$1${3:-}.body" -w '%{http_code} %{content_type}' --data-binary @"$T/$1.msg" \
    "$B/$2?operation=PKIOperation" > "$T/$1${3:-}.code"
}
# at_once NAME PROFILE TAG NAME PROFILE TAG: two posts at the same time (waits for those two
# only: scepd is a child of this shell too).
at_once() {
  local p1 p2
  post "$1" "$2" "$3" & p1=$!
  post "$4" "$5" "$6" & p2=$!
  wait "$p1" "$p2"
}
# decode NAME [TAG]: scep_req's reading of NAME[TAG].body into NAME[TAG].out.
decode() { "$REQ" enroll --decode-reply "$T/$1${2:-}.body" --emit "$T/$1.msg" > "$T/$1${2:-}.out" 2>&1 || true; }
serial_of() { sed -n 's/.*status=SUCCESS failinfo=- serial=\([0-9A-Fa-f]*\).*/\1/p' "$T/$1.out" | tr 'A-F' 'a-f'; }
consumed() { events_of "$1" 1401 | grep -c . || true; }
# issued_consumed_once TXID: one ISSUED (1000) event of TXID and its challenge consumed once;
# read from the audit log, so checked with check_audit / audit_retry (written a moment after
# the answer).
issued_consumed_once() {
  [ "$(grep -F "\"txid\":\"$1\"" "$STATE/audit.log" | grep -c '"event":1000,')" = 1 ] &&
    [ "$(consumed "$1")" = 1 ]
}
# pending_consumed_once TXID: one pending request of TXID, its challenge consumed once.
pending_consumed_once() {
  [ "$("$BUILD/scepctl" -c "$CONF" request list | grep -cF -- "$1")" = 1 ] && [ "$(consumed "$1")" = 1 ]
}
# enroll NAME PROFILE ARGS...: a full enrollment with scep_req (same key as NAME.msg).
enroll() { local n=$1 p=$2; shift 2; "$REQ" enroll --url "$B/$p" --key "$T/$n.key" --cert-out "$T/$n.pem" "$@" > "$T/$n.out" 2> "$T/$n.err" || true; }
succeeded() { grep -q '^status=SUCCESS failinfo=- ' "$T/$1.out" || { echo "  got: $(cat "$T/$1.out" "$T/$1.err")" >&2; return 1; }; }

# --- the CA signature fails after the challenge was checked ---
V=$(new --profile otp)
emit hsm otp --challenge "$V" --cn otp-hsm
tx_hsm=$TXID
p11fault_set "fail C_Sign 1 CKR_DEVICE_ERROR"
post hsm otp
p11fault_set
check "CA signature fails: HTTP 503, no CertRep" is "$(cat hsm.code)" "503 text/plain"
audit_wait "$tx_hsm" 3000
check "CA signature fails: HSM_FAILURE (3000) for the transaction" is "$(events_of "$tx_hsm" 3000 | grep -c .)" 1
check "CA signature fails: the challenge is not consumed (no 1401)" is "$(consumed "$tx_hsm")" 0
enroll hsm otp --challenge "$V" --cn otp-hsm --txid "$tx_hsm"
check "the retry with the same challenge: SUCCESS" succeeded hsm
check "... the certificate verifies" verify_cert hsm.pem
check_audit "... ISSUED (1000) and CHALLENGE_CONSUMED (1401) once" \
  issued_consumed_once "$tx_hsm"
enroll hsm-again otp --challenge "$V" --cn otp-hsm-2
check "and then it is used: challenge_used (2002)" expect_failure hsm-again 2002 challenge_used badRequest

# --- the store cannot commit the certificate ---
V=$(new --profile otp)
emit store otp --challenge "$V" --cn otp-store
tx_store=$TXID
psize=$(mdb_stat -e "$STATE/store" | sed -n 's/^ *Page size: *//p')
limit=$((2 * psize))
small() { local f; for f in "$STATE/audit.log" "$T/scepd.log"; do
  [ "$(stat -c %s "$f")" -lt $((limit - 1024)) ] || { echo "  $f too big for the fault" >&2; return 1; }; done; }
check "the logs stay writable under the file-size limit" small
n_certs=$(count)
prlimit --pid "$SCEPD_PID" --fsize="$limit":
post store otp
prlimit --pid "$SCEPD_PID" --fsize=unlimited:
check "commit fails: HTTP 503, no CertRep" is "$(cat store.code)" "503 text/plain"
audit_wait "$tx_store" 3001
check "commit fails: STORE_FAILURE (3001) for the transaction" is "$(events_of "$tx_store" 3001 | grep -c .)" 1
check "commit fails: nothing stored" is "$(count)" "$n_certs"
enroll store otp --challenge "$V" --cn otp-store --txid "$tx_store"
check "the retry with the same challenge: SUCCESS" succeeded store
check_audit "... ISSUED once, the challenge consumed once" \
  issued_consumed_once "$tx_store"

# --- concurrent duplicates: both get the one certificate ---
dup_ok=0
for i in 1 2 3 4 5; do
  V=$(new --profile otp)
  emit "dup$i" otp --challenge "$V" --cn "otp-dup-$i"
  tx=$TXID
  before=$(count)
  at_once "dup$i" otp a "dup$i" otp b
  decode "dup$i" a
  decode "dup$i" b
  sa=$(serial_of "dup${i}a"); sb=$(serial_of "dup${i}b")
  if [ -n "$sa" ] && [ "$sa" = "$sb" ] && [ "$(count)" = $((before + 1)) ] &&
     audit_retry issued_consumed_once "$tx"; then
    dup_ok=$((dup_ok + 1))
  else
    log "  pair $i: a=$(grep status= "$T/dup${i}a.out" | head -n1) b=$(grep status= "$T/dup${i}b.out" | head -n1)"
  fi
done
check "5 pairs of concurrent duplicates: each pair SUCCESS with one certificate, issued and paid once" is "$dup_ok" 5

# --- manual approval: the store's "already exists" is honoured ---
V=$(new --profile manual-otp)
emit m1 manual-otp --challenge "$V" --cn otp-manual
tx_m=$TXID
emit m2 manual-otp --challenge "$V" --cn otp-manual --txid "$tx_m"
at_once m1 manual-otp "" m2 manual-otp ""
decode m1
decode m2
got=$(for n in m1 m2; do grep -o 'status=[A-Z]* failinfo=[A-Za-z-]*' "$T/$n.out" | head -n1; done | sort | tr '\n' ' ')
check "same transactionID, another key, at once: one PENDING, one FAILURE badRequest" \
  is "$got" "status=FAILURE failinfo=badRequest status=PENDING failinfo=- "
loser=m1; grep -q status=PENDING "$T/m1.out" && loser=m2
check "the other one: txid_conflict, as CertRep and audit event (2000)" expect_failure "$loser" 2000 txid_conflict badRequest
check_audit "one pending request, the challenge consumed once" \
  pending_consumed_once "$tx_m"
winner=m1; [ "$loser" = m1 ] && winner=m2
enroll "$winner" manual-otp --challenge "$V" --cn otp-manual --txid "$tx_m" --poll
check "the winner's repeated request and CertPoll: PENDING, PENDING" \
  is "$(grep -o 'status=[A-Z]* failinfo=[A-Za-z-]*' "$T/$winner.out" | tr '\n' ' ')" "status=PENDING failinfo=- status=PENDING failinfo=- "
finish
