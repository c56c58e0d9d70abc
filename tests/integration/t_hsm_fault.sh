#!/usr/bin/env bash
# The HSM fails under scepd: SoftHSM behind the fault-injecting PKCS#11 module
# (tests/p11fault). While C_Sign answers CKR_DEVICE_ERROR a PKIOperation gets HTTP 503 (the
# client retries later), never a CertRep, and its transaction has one HSM_FAILURE (3000) event
# naming the CKR; GetCACaps and GetCACert keep answering; once the fault is gone the same
# transaction enrolls. The module's call log shows which token calls each request made.
. "$(dirname "$0")/lib.sh"
. "$SRC/tests/p11fault/p11fault.sh"
REQ=$BUILD/tests/scep_req
C_OK='C_Sign CKR_OK real'
C_FAULT='C_Sign CKR_DEVICE_ERROR fault'

init_state
p11fault_use
start_scepd
cd "$T"

# enroll NAME ARGS...: a full enrollment through scep_req (CertRep verified); output NAME.out.
enroll() { local n=$1; shift; "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --key "$T/$n.key" --cert-out "$T/$n.pem" "$@" > "$T/$n.out" 2> "$T/$n.err" || true; }
succeeded() { grep -q '^status=SUCCESS failinfo=- ' "$T/$1.out" || { echo "  got: $(cat "$T/$1.out" "$T/$1.err")" >&2; return 1; }; }
verifies() { openssl verify -CAfile "$STATE/ca.pem" "$T/$1.pem" >/dev/null; }
is() { [ "$1" = "$2" ] || { echo "  got '$1', want '$2'" >&2; return 1; }; }

# refused_503 NAME: NAME.msg was answered 503 in plain text, no pkiMessage.
refused_503() { is "$(cat "$T/$1.code")" "503 text/plain"; }

# hsm_event_ok TXID: exactly one HSM_FAILURE event for the transaction, with the HTTP status
# the client got and the token's answer, and no failInfo (no CertRep was sent); and no
# rejection or issuance event for it.
hsm_event_ok() {
  local lines line n
  lines=$(audit_of "$1" 3000)
  n=$(grep -c . <<<"$lines" || true)
  [ "$n" -eq 1 ] || { echo "  $n HSM_FAILURE events for $1: $lines" >&2; return 1; }
  line=$lines
  is "$(json_get "$line" name)" HSM_FAILURE &&
  is "$(json_get "$line" http_status)" 503 &&
  is "$(json_get "$line" failinfo)" "" &&
  { grep -q CKR_DEVICE_ERROR <<<"$(json_get "$line" diag) $(json_get "$line" detail)" ||
    { echo "  no CKR_DEVICE_ERROR in diag/detail: $line" >&2; return 1; }; } &&
  is "$(audit_of "$1" 2000)" "" &&
  is "$(audit_of "$1" 1000)" ""
}

# --- transparent: the module only forwards ---
m=$(p11fault_mark)
enroll before --cn before
check "through the fault module: enrollment SUCCESS" succeeded before
check "through the fault module: certificate verifies" verifies before
check "call log: one RA decryption (C_Decrypt)" is "$(p11fault_count "$m" 'C_Decrypt CKR_OK real')" 1
check "call log: CA and RA signatures (2 x C_Sign)" is "$(p11fault_count "$m" "$C_OK")" 2
check "call log: nothing injected" is "$(p11fault_count "$m" '[A-Za-z_]+ [A-Z_x0-9]+ (fault|dead)')" 0
n_certs=$("$BUILD/scepctl" -c "$CONF" cert count)

# --- the next C_Sign fails once ---
p11fault_set "fail C_Sign 1 CKR_DEVICE_ERROR"
m=$(p11fault_mark)
enroll_emit once --challenge "$CHALLENGE_VALUE" --cn once
tx_once=$TXID
pki_post once > once.code
check "C_Sign fails once: PKIOperation answered HTTP 503" refused_503 once
check_audit "C_Sign fails once: audit HSM_FAILURE (3000) with http_status 503 and the CKR" hsm_event_ok "$tx_once"
check "C_Sign fails once: the decryption ran once" is "$(p11fault_count "$m" 'C_Decrypt CKR_OK real')" 1
check "C_Sign fails once: one injected C_Sign failure" is "$(p11fault_count "$m" "$C_FAULT")" 1
check "C_Sign fails once: no signature completed" is "$(p11fault_count "$m" "$C_OK")" 0
m=$(p11fault_mark)
enroll next --cn next
check "fault used up: the next enrollment SUCCESS" succeeded next
check "fault used up: its certificate verifies" verifies next
check "fault used up: CA and RA signatures ran" is "$(p11fault_count "$m" "$C_OK")" 2

# --- every C_Sign fails until the fault is cleared ---
p11fault_set "fail C_Sign always CKR_DEVICE_ERROR"
m=$(p11fault_mark)
enroll_emit down1 --challenge "$CHALLENGE_VALUE" --cn down1
tx_down1=$TXID
pki_post down1 > down1.code
enroll_emit down2 --challenge "$CHALLENGE_VALUE" --cn down2 --cipher des3
tx_down2=$TXID
pki_post down2 > down2.code
check "C_Sign always fails: first PKIOperation HTTP 503" refused_503 down1
check "C_Sign always fails: second PKIOperation HTTP 503" refused_503 down2
check_audit "C_Sign always fails: audit 3000 for the first transaction" hsm_event_ok "$tx_down1"
check_audit "C_Sign always fails: audit 3000 for the second transaction" hsm_event_ok "$tx_down2"
check "C_Sign always fails: GetCACaps still 200" is "$(http_get operation=GetCACaps | cut -d' ' -f1)" 200
check "C_Sign always fails: GetCACert still 200 with the CA/RA chain" \
  is "$(http_get operation=GetCACert)" "200 application/x-x509-ca-ra-cert"
check "C_Sign always fails: no signature completed" is "$(p11fault_count "$m" "$C_OK")" 0
check "C_Sign always fails: each request tried its CA signature" \
  test "$(p11fault_count "$m" "$C_FAULT")" -ge 2
check "C_Sign always fails: one decryption per request" is "$(p11fault_count "$m" 'C_Decrypt CKR_OK real')" 2
check "C_Sign always fails: nothing stored" is "$("$BUILD/scepctl" -c "$CONF" cert count)" "$((n_certs + 1))"

# --- fault cleared: the refused transactions enroll ---
p11fault_set
enroll down1 --cn down1
check "fault cleared: the refused transaction enrolls (SUCCESS)" succeeded down1
check "fault cleared: same transactionID as the refused request" is "$(sed -n 's/^txid=//p' down1.out)" "$tx_down1"
check "fault cleared: its certificate verifies" verifies down1
audit_wait "$tx_down1" 1000
check "fault cleared: audit ISSUED (1000) for it" is "$(audit_of "$tx_down1" 1000 | grep -c .)" 1
enroll after --cn after
check "fault cleared: a new enrollment SUCCESS" succeeded after
check "fault cleared: store has every certificate sent" is "$("$BUILD/scepctl" -c "$CONF" cert count)" "$((n_certs + 3))"
finish
