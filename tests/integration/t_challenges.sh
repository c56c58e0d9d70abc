#!/usr/bin/env bash
# One-time challenges end to end: created by scepctl and by POST /admin/challenges, consumed
# exactly once through real SCEP requests; reuse, expiry, wrong value, wrong profile and
# subject/SAN mismatch each give FAILURE badRequest with their own audit diagnostic; bound
# names override the CSR's; challenges are stored hashed and survive a restart.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req
command -v curl >/dev/null || { log "curl missing"; exit 77; }

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
# rejected DIAG: a CHALLENGE_REJECTED event with that diag
rejected() { grep '"event":2002' "$STATE/audit.log" | grep -q "\"diag\":\"$1\""; }

V1=$(new --profile otp --ttl 60m)
check "scepctl challenge new prints the challenge alone (32 URL-safe chars)" \
  sh -c "[ \"\$(printf '%s' '$V1' | wc -l)\" = 0 ] && printf '%s' '$V1' | grep -Eqx '[A-Za-z0-9_-]{32}'"
check "audit: CHALLENGE_CREATED" audit_has '"event":1400'
check "the challenge is not stored in clear" sh -c "! grep -qa -- '$V1' '$STATE/store/data.mdb'"
req ok otp --challenge "$V1" --cn otp-1 --key otp-1.key --cert-out otp-1.pem
check "one-time challenge: SUCCESS" status_is ok SUCCESS -
check "audit: CHALLENGE_CONSUMED (1401) then ISSUED" \
  sh -c "grep -q '\"event\":1401' '$STATE/audit.log' && grep '\"event\":1000' '$STATE/audit.log' | grep -q '\"profile\":\"otp\"'"
req again otp --challenge "$V1" --cn otp-1 --key otp-1.key
check "same transaction repeated: the same certificate (no second consumption needed)" \
  test "$(serial_of again)" = "$(serial_of ok)"
req reuse otp --challenge "$V1" --cn otp-2
check "reuse: FAILURE badRequest" status_is reuse FAILURE badRequest
check "audit: challenge_used (2002)" rejected challenge_used
req wrong otp --challenge "not-a-challenge-we-ever-issued-x" --cn otp-3
check "unknown value: FAILURE badRequest" status_is wrong FAILURE badRequest
check "audit: challenge_wrong" rejected challenge_wrong
req none otp --no-challenge --cn otp-4
check "no challenge on a onetime profile: FAILURE badRequest" status_is none FAILURE badRequest
req static otp --challenge "$CHALLENGE_VALUE" --cn otp-5
check "the static challenge does not open a onetime profile" status_is static FAILURE badRequest

VE=$(new --profile otp --ttl 1s)
sleep 2.2
req expired otp --challenge "$VE" --cn otp-6
check "expired: FAILURE badRequest" status_is expired FAILURE badRequest
check "audit: challenge_expired" rejected challenge_expired

VP=$(new --profile otp --ttl 10m)
req prof otp-bound --challenge "$VP" --cn otp-7
check "challenge of another profile: FAILURE badRequest" status_is prof FAILURE badRequest
check "audit: challenge_profile" rejected challenge_profile
req prof-ok otp --challenge "$VP" --cn otp-7
check "a refused attempt does not consume it: SUCCESS at its own profile" status_is prof-ok SUCCESS -

VS=$(new --profile otp-bound --ttl 10m --subject /CN=dev-9/O=corp --san dns:dev-9.corp.example,upn:dev9@corp.example)
req subj otp-bound --challenge "$VS" --subject /CN=other/O=corp --san dns:dev-9.corp.example --san upn:dev9@corp.example
check "subject differs from the bound one: FAILURE badRequest" status_is subj FAILURE badRequest
check "audit: challenge_subject" rejected challenge_subject
req san otp-bound --challenge "$VS" --subject /CN=dev-9/O=corp --san dns:evil.example --san upn:dev9@corp.example
check "SANs differ from the bound ones: FAILURE badRequest" status_is san FAILURE badRequest
check "audit: challenge_san" rejected challenge_san
req bound otp-bound --challenge "$VS" --subject /CN=dev-9/O=corp --san upn:dev9@corp.example --san dns:dev-9.corp.example
check "matching subject and SANs (any order): SUCCESS" status_is bound SUCCESS -

VO=$(new --profile otp-override --ttl 10m --subject /CN=from-mdm/O=corp --san dns:from-mdm.corp.example)
req over otp-override --challenge "$VO" --cn whatever-the-device-says --cert-out over.pem
check "override: SUCCESS" status_is over SUCCESS -
check "override: subject from the challenge" sh -c "openssl x509 -in over.pem -noout -subject | grep -q 'CN *= *from-mdm'"
check "override: SAN from the challenge" sh -c "openssl x509 -in over.pem -noout -ext subjectAltName | grep -q 'DNS:from-mdm.corp.example'"

# --- admin API ---
code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
check "POST /admin/challenges without a token: 401" \
  test "$(code -X POST -d '{"profile":"otp"}' "http://127.0.0.1:$PORT/admin/challenges")" = 401
check "POST /admin/challenges for an unknown profile: 400" \
  test "$(code -H "Authorization: Bearer $TOKEN" -d '{"profile":"nope"}' "http://127.0.0.1:$PORT/admin/challenges")" = 400
check "POST /admin/challenges for a static profile: 400" \
  test "$(code -H "Authorization: Bearer $TOKEN" -d '{"profile":"default"}' "http://127.0.0.1:$PORT/admin/challenges")" = 400
check "POST /admin/challenges: 201" \
  test "$(code -H "Authorization: Bearer $TOKEN" -d '{"profile":"otp","ttl":"5m","san":"dns:api.example"}' "http://127.0.0.1:$PORT/admin/challenges")" = 201
VA=$(sed -n 's/.*"challenge":"\([^"]*\)".*/\1/p' "$T/body")
check "admin API answers JSON with the challenge and its expiry" sh -c "grep -q '\"profile\":\"otp\"' '$T/body' && grep -q '\"expires\":' '$T/body' && [ ${#VA} -eq 32 ]"
req api otp --challenge "$VA" --cn api-1 --san dns:api.example
check "challenge from the admin API: SUCCESS" status_is api SUCCESS -

# --- durability across a restart ---
VR=$(new --profile otp --ttl 10m)
stop_scepd
start_scepd
B="http://127.0.0.1:$PORT/scep"
req restart otp --challenge "$VR" --cn otp-r
check "challenge created before a restart: SUCCESS after it" status_is restart SUCCESS -
req restart-reuse otp --challenge "$V1" --cn otp-r2
check "used before the restart: still used after it" status_is restart-reuse FAILURE badRequest

finish
