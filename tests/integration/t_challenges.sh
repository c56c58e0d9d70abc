#!/usr/bin/env bash
# One-time challenges end to end: created by scepctl and by POST /admin/challenges, consumed
# exactly once through real SCEP requests; reuse, expiry, wrong value, wrong profile and
# subject/SAN mismatch each give FAILURE badRequest with their own audit diagnostic; bound
# names override the CSR's; challenges are stored hashed and survive a restart.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl

init_state
P=$STATE/profiles
printf 'challenge = onetime\n' > "$P/otp.conf"
printf 'challenge = onetime\nsubject_source = require\nsan_source = require\n' > "$P/otp-bound.conf"
printf 'challenge = onetime\nsubject_source = override\nsan_source = override\n' > "$P/otp-override.conf"
start_scepd
cd "$T"
B="http://127.0.0.1:$PORT/scep"
TOKEN=$(cat "$STATE/admin-token")

new() { "$BUILD/scepctl" -c "$CONF" challenge new "$@"; }
req() {
  local n=$1 p=$2; shift 2
  "$REQ" enroll --url "$B/$p" "$@" > "$T/$n.out" 2>"$T/$n.err" || true
}
status_is() { grep -q "status=$2 failinfo=$3 " "$T/$1.out" || { echo "  got: $(grep status= "$T/$1.out" || cat "$T/$1.err")" >&2; return 1; }; }
serial_of() { sed -n 's/.*serial=\([0-9A-Fa-f]*\).*/\1/p' "$T/$1.out" | tr 'A-F' 'a-f' | head -n1; }
# refused NAME DIAG: NAME's CertRep is FAILURE badRequest with DIAG's text, and its
# transaction's audit event is CHALLENGE_REJECTED (2002) with DIAG and badRequest.
refused() { expect_failure "$1" 2002 "$2" badRequest; }
# issued NAME: SUCCESS, the certificate ($T/NAME.pem) verifies, ISSUED for its transaction.
issued() { status_is "$1" SUCCESS - && verify_cert "$T/$1.pem" && expect_event "$1" 1000; }

V1=$(new --profile otp --ttl 60m)
check "scepctl challenge new prints the challenge alone (32 URL-safe chars)" \
  sh -c "[ \"\$(printf '%s' '$V1' | wc -l)\" = 0 ] && printf '%s' '$V1' | grep -Eqx '[A-Za-z0-9_-]{32}'"
check "audit: CHALLENGE_CREATED" audit_has '"event":1400'
check "the challenge is not stored in clear" sh -c "! grep -qa -- '$V1' '$STATE/store/data.mdb'"
req ok otp --challenge "$V1" --cn otp-1 --key otp-1.key --cert-out ok.pem
check "one-time challenge: SUCCESS, certificate verifies, ISSUED" issued ok
check_audit "audit: CHALLENGE_CONSUMED (1401) for that transaction, then ISSUED under profile otp" \
  sh -c "grep -F '\"txid\":\"$(txid_of ok)\"' '$STATE/audit.log' | grep -q '\"event\":1401' && grep -F '\"txid\":\"$(txid_of ok)\"' '$STATE/audit.log' | grep '\"event\":1000' | grep -q '\"profile\":\"otp\"'"
req again otp --challenge "$V1" --cn otp-1 --key otp-1.key --cert-out again.pem
check "same transaction repeated: the same certificate (no second consumption needed)" \
  test "$(serial_of again)" = "$(serial_of ok)"
check "same transaction repeated: the certificate verifies" verify_cert "$T/again.pem"
check "same transaction repeated: audit REPLAYED (1002) for it" expect_event again 1002
req reuse otp --challenge "$V1" --cn otp-2
check "reuse: FAILURE badRequest, challenge_used (2002)" refused reuse challenge_used
req wrong otp --challenge "not-a-challenge-we-ever-issued-x" --cn otp-3
check "unknown value: FAILURE badRequest, challenge_wrong" refused wrong challenge_wrong
req none otp --no-challenge --cn otp-4
check "no challenge on a onetime profile: FAILURE badRequest, challenge_wrong" refused none challenge_wrong
req static otp --challenge "$CHALLENGE_VALUE" --cn otp-5
check "the static challenge does not open a onetime profile: challenge_wrong" refused static challenge_wrong

VE=$(new --profile otp --ttl 1s)
sleep 2.2
req expired otp --challenge "$VE" --cn otp-6
check "expired: FAILURE badRequest, challenge_expired" refused expired challenge_expired

VP=$(new --profile otp --ttl 10m)
req prof otp-bound --challenge "$VP" --cn otp-7
check "challenge of another profile: FAILURE badRequest, challenge_profile" refused prof challenge_profile
req prof-ok otp --challenge "$VP" --cn otp-7 --cert-out prof-ok.pem
check "a refused attempt does not consume it: SUCCESS at its own profile" issued prof-ok

VS=$(new --profile otp-bound --ttl 10m --subject /CN=dev-9/O=corp --san dns:dev-9.corp.example,upn:dev9@corp.example)
req subj otp-bound --challenge "$VS" --subject /CN=other/O=corp --san dns:dev-9.corp.example --san upn:dev9@corp.example
check "subject differs from the bound one: FAILURE badRequest, challenge_subject" refused subj challenge_subject
req san otp-bound --challenge "$VS" --subject /CN=dev-9/O=corp --san dns:evil.example --san upn:dev9@corp.example
check "SANs differ from the bound ones: FAILURE badRequest, challenge_san" refused san challenge_san
req bound otp-bound --challenge "$VS" --subject /CN=dev-9/O=corp --san upn:dev9@corp.example --san dns:dev-9.corp.example --cert-out bound.pem
check "matching subject and SANs (any order): SUCCESS, verifies, ISSUED" issued bound
check "bound: the UPN value" test "$(upn_of bound.pem)" = dev9@corp.example

VO=$(new --profile otp-override --ttl 10m --subject /CN=from-mdm/O=corp --san dns:from-mdm.corp.example)
req over otp-override --challenge "$VO" --cn whatever-the-device-says --cert-out over.pem
check "override: SUCCESS, verifies, ISSUED" issued over
check "override: subject from the challenge" \
  test "$(openssl x509 -in over.pem -noout -subject -nameopt RFC2253)" = "subject=O=corp,CN=from-mdm"
check "override: SAN from the challenge, and only it" ext_is over.pem subjectAltName "DNS:from-mdm.corp.example"

# --- admin API ---
code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
check "POST /admin/challenges without a token: 401" \
  test "$(code -X POST -d '{"profile":"otp"}' "$ADMIN_URL/admin/challenges")" = 401
check "POST /admin/challenges for an unknown profile: 400" \
  test "$(code -H "Authorization: Bearer $TOKEN" -d '{"profile":"nope"}' "$ADMIN_URL/admin/challenges")" = 400
check "POST /admin/challenges for a static profile: 400" \
  test "$(code -H "Authorization: Bearer $TOKEN" -d '{"profile":"default"}' "$ADMIN_URL/admin/challenges")" = 400
check "POST /admin/challenges: 201" \
  test "$(code -H "Authorization: Bearer $TOKEN" -d '{"profile":"otp","ttl":"5m","san":"dns:api.example"}' "$ADMIN_URL/admin/challenges")" = 201
VA=$(sed -n 's/.*"challenge":"\([^"]*\)".*/\1/p' "$T/body")
check "admin API answers JSON with the challenge and its expiry" sh -c "grep -q '\"profile\":\"otp\"' '$T/body' && grep -q '\"expires\":' '$T/body' && [ ${#VA} -eq 32 ]"
req api otp --challenge "$VA" --cn api-1 --san dns:api.example --cert-out api.pem
check "challenge from the admin API: SUCCESS, verifies, ISSUED" issued api

# --- durability across a restart ---
VR=$(new --profile otp --ttl 10m)
stop_scepd
start_scepd
B="http://127.0.0.1:$PORT/scep"
req restart otp --challenge "$VR" --cn otp-r --cert-out restart.pem
check "challenge created before a restart: SUCCESS after it, verifies, ISSUED" issued restart
req restart-reuse otp --challenge "$V1" --cn otp-r2
check "used before the restart: still used after it (challenge_used)" refused restart-reuse challenge_used

finish
