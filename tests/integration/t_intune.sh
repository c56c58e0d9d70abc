#!/usr/bin/env bash
# Intune's SCEP validation end to end, against tests/emulators/intune_emulator.py on loopback:
# a profile with challenge = intune asks validateRequest before signing, sends
# successNotification (thumbprint, serial, expiry of the certificate issued) before the
# CertRep, and failureNotification for a refusal after validation. Denial, a failing service
# (5xx), a slow one (timeout) and an unacknowledged successNotification (the certificate is
# recorded, then revoked) are each FAILURE badRequest with their own diagnostic and audit
# events; a full validation stage is HTTP 503 with Retry-After.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/mdm_lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl python3

init_state
P=$STATE/profiles
printf 'challenge = intune\n' > "$P/intune.conf"
printf 'challenge = intune\nvalidity_days = 36500\nbeyond_ca = refuse\n' > "$P/intune-long.conf"
start_emulator intune intune_emulator.py --secret emulator-secret
EP=$EMU_PORT
CTL="http://127.0.0.1:$EP/_control"
printf 'emulator-secret\n' > "$STATE/intune.secret"
intune_conf "$EP" "max_in_flight = 1
timeout = 4s
connect_timeout = 1s
retries = 1
retry_backoff = 50ms" "client_secret_file = intune.secret"
use_mdm_config
start_scepd
cd "$T"
B="http://127.0.0.1:$PORT/scep"
knob() { curl -fsS -X POST -d "$1" "$CTL" >/dev/null; }
req() {
  local n=$1 p=$2; shift 2
  "$REQ" enroll --url "$B/$p" "$@" > "$T/$n.out" 2>"$T/$n.err" || true
}
status_is() { grep -q "status=$2 failinfo=$3 " "$T/$1.out" || { echo "  got: $(grep status= "$T/$1.out" || cat "$T/$1.err")" >&2; return 1; }; }
# has_event NAME EVENT FRAGMENT: an audit line of NAME's transaction with EVENT and FRAGMENT.
has_event() { grep -F "\"txid\":\"$(txid_of "$1")" "$STATE/audit.log" | grep -F "\"event\":$2," | grep -qF -- "$3"; }
calls() { calls_where "$T/intune.calls" "$1"; }
tx_calls() { calls "c['path'].endswith('/$2') and c['body']['${3:-request}']['transactionId'] == '$(txid_of "$1")'"; }

# --- allowed: validate -> sign -> commit -> successNotification -> CertRep
req ok intune --challenge "intune-challenge-blob-1" --cn dev-1 --key dev-1.key --cert-out ok.pem
check "allowed: SUCCESS, the certificate verifies, ISSUED" \
  sh -c "grep -q 'status=SUCCESS failinfo=- ' '$T/ok.out'" 
check "allowed: certificate verifies" verify_cert "$T/ok.pem"
check "allowed: audit ISSUED (1000) for the transaction" expect_event ok 1000
check "allowed: audit MDM_ALLOWED (1600) naming intune" has_event ok 1600 '"detail":"intune'
vr=$(tx_calls ok validateRequest)
check "validateRequest sent once, carrying the transaction and the CSR" \
  python3 -c "import json,sys,base64; r=json.loads(sys.argv[1])['body']['request']; base64.b64decode(r['certificateRequest']); sys.exit(0 if r['callerInfo'] else 1)" "$vr"
serial=$(openssl x509 -in ok.pem -noout -serial | cut -d= -f2 | tr 'a-f' 'A-F')
thumb=$(openssl x509 -in ok.pem -noout -fingerprint -sha1 | cut -d= -f2 | tr -d : | tr 'a-f' 'A-F')
expiry=$(date -u -d "$(openssl x509 -in ok.pem -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%S.000Z)
sn=$(tx_calls ok successNotification notification)
check "successNotification sent once for the transaction" test "$(grep -c . <<<"$sn")" = 1
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['body']['notification'].get(sys.argv[2], ''))" "$sn" "$1"; }
check "successNotification: certificateThumbprint is the SHA-1 of the certificate ($thumb)" \
  test "$(field certificateThumbprint)" = "$thumb"
check "successNotification: certificateSerialNumber is its serial ($serial)" \
  test "$(field certificateSerialNumber | sed 's/^0*//')" = "$(sed 's/^0*//' <<<"$serial")"
check "successNotification: certificateExpirationDateUtc is its notAfter ($expiry)" \
  test "$(field certificateExpirationDateUtc)" = "$expiry"
check "successNotification: issuingCertificateAuthority names the CA" \
  sh -c "printf '%s' '$(field issuingCertificateAuthority)' | grep -q 'CN=scepd CA'"
check "successNotification: caConfiguration and certificateAuthority (the CA's CN)" \
  test "$(field caConfiguration)/$(field certificateAuthority)" = "scepd/scepd CA"
check "no failureNotification for an issued certificate" test -z "$(tx_calls ok failureNotification notification)"

# --- a CSR whose own signature does not verify: refused before Intune is asked (the pass
# after a validation trusts the first pass's check of it, engine/enroll/pkcsreq.c)
"$REQ" cacert --url "$B/intune" --out "$T/cadir" > cadir.out
"$REQ" enroll --ca-dir "$T/cadir" --challenge "intune-challenge-blob-pop" --cn pop --key "$T/pop.key" \
  --emit "$T/pop.der" > pop.emit 2>&1
printf '[req]\ndistinguished_name = dn\nattributes = at\nprompt = no\n[dn]\nCN = pop\n[at]\nchallengePassword = intune-challenge-blob-pop\n' > pop.cnf
openssl req -new -key "$T/pop.key" -config pop.cnf -outform DER -out pop.csr
python3 -c "import sys; b=bytearray(open(sys.argv[1],'rb').read()); b[-1]^=1; open(sys.argv[2],'wb').write(b)" pop.csr pop-bad.csr
openssl cms -encrypt -binary -in pop-bad.csr -outform DER -out pop.env -aes128 "$T/cadir/ra.pem"
python3 "$SRC/tests/tools/pkimsg.py" resign pop.der pop-bad.der pop.env pop.key sha256
curl -s -o pop.rep -H 'Content-Type: application/x-pki-message' --data-binary @pop-bad.der \
  "$B/intune?operation=PKIOperation" > /dev/null
"$REQ" enroll --decode-reply pop.rep --state pop.der.state > pop.out 2>&1 || true
check "CSR signature broken: FAILURE badMessageCheck, pop_failed" expect_failure pop 2000 pop_failed badMessageCheck
check "CSR signature broken: Intune was not asked (no validateRequest)" \
  sh -c "test -n \"$(txid_of pop)\" && test -z \"$(tx_calls pop validateRequest)\""

# --- denied by Intune
knob '{"validate": "ChallengeExpired"}'
req deny intune --challenge "intune-challenge-blob-2" --cn dev-2
check "denied: FAILURE badRequest, mdm_denied (2000)" expect_failure deny 2000 mdm_denied badRequest
check "denied: audit MDM_DENIED (1601) with Intune's code" has_event deny 1601 'ChallengeExpired'
check "denied: no successNotification" test -z "$(tx_calls deny successNotification notification)"

# --- the service fails (5xx after the retry)
knob '{"validate": "5xx"}'
req down intune --challenge "intune-challenge-blob-3" --cn dev-3
check "5xx: FAILURE badRequest, mdm_unavailable (2000)" expect_failure down 2000 mdm_unavailable badRequest
check "5xx: audit MDM_DENIED (1601) diag mdm_unavailable" has_event down 1601 '"diag":"mdm_unavailable"'
check "5xx: validateRequest tried twice (retries = 1)" test "$(tx_calls down validateRequest | wc -l)" = 2

# --- the service is slow (per-attempt timeout 4s)
knob '{"validate": "allow", "delay_ms": 5000}'
req slow intune --challenge "intune-challenge-blob-4" --cn dev-4
check "timeout: FAILURE badRequest, mdm_timeout (2000)" expect_failure slow 2000 mdm_timeout badRequest
check "timeout: audit MDM_DENIED (1601) diag mdm_timeout" has_event slow 1601 '"diag":"mdm_timeout"'

# --- a full stage (max_in_flight = 1): HTTP 503 with Retry-After, no CertRep
knob '{"delay_ms": 1800}'
: > "$T/intune.calls.waiting"
"$REQ" enroll --url "$B/intune" --challenge "intune-challenge-blob-5" --cn dev-5 --emit "$T/busy.msg" > "$T/busy-emit.out" 2>&1 || true
req first intune --challenge "intune-challenge-blob-6" --cn dev-6 &
first=$!
for _ in $(seq 1 200); do    # until the first request's validateRequest is at the emulator
  grep -q validateRequest "$T/intune.calls.waiting" 2>/dev/null && break; sleep 0.05
done
code=$(curl -s -o /dev/null -D "$T/busy.hdr" -w '%{http_code}' --data-binary @"$T/busy.msg" \
  -H 'Content-Type: application/x-pki-message' "$B/intune?operation=PKIOperation")
wait $first
check "a full validation stage: HTTP 503" test "$code" = 503
check "a full validation stage: Retry-After" grep -qi '^Retry-After: [0-9]' "$T/busy.hdr"
check "the request in flight meanwhile was issued (delay 1.8 s < timeout 4 s)" status_is first SUCCESS -

# --- a refusal after validation: failureNotification with an HRESULT
knob '{"delay_ms": 0}'
req long intune-long --challenge "intune-challenge-blob-7" --cn dev-7
check "after validation: FAILURE badTime, profile_beyond_ca" expect_failure long 2000 profile_beyond_ca badTime
fn=$(tx_calls long failureNotification notification)
check "after validation: failureNotification sent once" test "$(grep -c . <<<"$fn")" = 1
check "failureNotification: hResult CERTSRV_E_BAD_REQUESTSUBJECT (0x80094001)" \
  python3 -c "import json,sys; n=json.loads(sys.argv[1])['body']['notification']; h=n['hResult']; h=int(h,0) if isinstance(h,str) else h; sys.exit(0 if h & 0xffffffff == 0x80094001 and n['errorDescription'] else 1)" "$fn"

# --- Intune does not acknowledge the certificate: recorded, revoked, FAILURE
knob '{"notify_success": "5xx"}'
req nack intune --challenge "intune-challenge-blob-8" --cn dev-8
check "unacknowledged: FAILURE badRequest, mdm_notify_failed (2000)" expect_failure nack 2000 mdm_notify_failed badRequest
check "unacknowledged: the certificate was recorded (ISSUED) and then revoked (1100, mdm_notify_failed)" \
  sh -c "grep -F '\"txid\":\"$(txid_of nack)\"' '$STATE/audit.log' | grep -q '\"event\":1000,' && grep -F '\"txid\":\"$(txid_of nack)\"' '$STATE/audit.log' | grep '\"event\":1100,' | grep -q mdm_notify_failed"
check "unacknowledged: audit MDM_NOTIFY_FAILED (1602)" has_event nack 1602 'successNotification'
rserial=$(grep -F "\"txid\":\"$(txid_of nack)\"" "$STATE/audit.log" | grep '"event":1100,' | sed -n 's/.*"serial":"\([0-9a-f]*\)".*/\1/p')
check "unacknowledged: the store holds it revoked (scepctl cert list)" \
  sh -c "'$BUILD/scepctl' -c '$CONF' cert list 2>/dev/null | grep -i '$rserial' | grep -qi revoked"
knob '{"notify_success": "allow"}'

# --- stopping while a successNotification is in flight: the stage answers it "shutdown", the
# certificate is revoked, and the request is still answered (a worker signs the FAILURE, or a
# clean 503 once the workers stopped); scepd exits cleanly: no hang, no leak (stop_scepd
# counts a failure for either).
: > "$T/intune.calls.waiting"
knob '{"notify_delay_ms": 60000}'
req stop intune --challenge "intune-challenge-blob-9" --cn dev-9 &
client=$!
for _ in $(seq 1 600); do
  grep -q successNotification "$T/intune.calls.waiting" 2>/dev/null && break; sleep 0.05
done
check "stopping: the successNotification is in flight" grep -q successNotification "$T/intune.calls.waiting"
failed_before=$FAILED
stop_scepd
wait $client || true
check "stopping: scepd exited cleanly while the notification was in flight" test "$FAILED" = "$failed_before"
check "stopping: the certificate was revoked (1100, mdm_notify_failed)" has_event stop 1100 mdm_notify_failed
check "stopping: the request was answered, audited REQUEST_REJECTED (2000, mdm_notify_failed)" \
  has_event stop 2000 mdm_notify_failed
check "stopping: audit MDM_NOTIFY_FAILED (1602) naming the shutdown" has_event stop 1602 shutdown
knob '{"notify_delay_ms": 0}'

finish
