#!/usr/bin/env bash
# Revocation end to end: certificates issued through SCEP, revoked through the admin API and
# scepctl; the CRL at /crl/ca.crl and through SCEP GetCRL, OpenSSL's CRL check and OCSP
# client against scepd's responder, renewal refused for a revoked certificate.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req

init_state
start_scepd
cd "$T"
B="http://127.0.0.1:$PORT"
C=$CHALLENGE_VALUE
TOKEN=$(cat "$STATE/admin-token")

enroll() { "$REQ" enroll --url "$URL" --challenge "$C" --cn "$1" --cert-out "$1.pem" --key "$1.key" > "$1.out" 2>&1; }
serial() { openssl x509 -in "$1.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f'; }
crl_number() { openssl crl -inform DER -in "$1" -noout -crlnumber | cut -d= -f2; }
# wait_crl_number N: until /crl/ca.crl has a CRL number above N (rebuild_delay is 2 s)
wait_crl_above() {
  for _ in $(seq 1 100); do
    curl -fsS -o cur.crl "$B/crl/ca.crl" 2>/dev/null && [ "$(($(crl_number cur.crl)))" -gt "$1" ] && return 0
    sleep 0.1
  done
  return 1
}
revoke() { curl -s -o "$1.json" -w '%{http_code}' -X POST "${@:2}" "$ADMIN_URL/admin/revocations"; }
ocsp() { openssl ocsp -issuer "$STATE/ca.pem" -url "$B/ocsp" -CAfile "$STATE/ca.pem" "$@" 2>&1; }

enroll dev-a; enroll dev-b; enroll dev-c
check "three certificates issued" grep -q "status=SUCCESS" dev-c.out
for n in dev-a dev-b dev-c; do
  check "$n: certificate verifies against the served chain" verify_cert "$n.pem"
done
SA=$(serial dev-a); SB=$(serial dev-b); SC=$(serial dev-c)

# --- the CRL before any revocation ---
check "GET /crl/ca.crl: 200 with ETag and Last-Modified" \
  sh -c "curl -fsS -D h0 -o crl0.der '$B/crl/ca.crl' && grep -qi '^ETag: \"' h0 && grep -qi '^Last-Modified: ' h0 && grep -qi 'Content-Type: application/pkix-crl' h0"
check "initial CRL: no entries, signed by the CA" \
  sh -c "openssl crl -inform DER -in crl0.der -CAfile '$STATE/ca.pem' -noout -text 2>&1 | grep -q 'No Revoked Certificates' && openssl crl -inform DER -in crl0.der -CAfile '$STATE/ca.pem' -noout 2>&1 | grep -q 'verify OK'"
etag=$(sed -n 's/^ETag: *//Ip' h0 | tr -d '\r')
check "If-None-Match with the current ETag: 304" \
  test "$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$B/crl/ca.crl")" = 304
N0=$(($(crl_number crl0.der)))
check "issued certificates carry no CDP when crl_url is unset (port 0 here)" \
  sh -c "! openssl x509 -in dev-a.pem -noout -text | grep -q 'CRL Distribution'"

# --- admin API ---
check "admin: no token -> 401" test "$(revoke noauth -d "serial=$SA")" = 401
check "admin: wrong token -> 401" test "$(revoke badauth -H 'Authorization: Bearer nottherighttokenatall' -d "serial=$SA")" = 401
check "admin on the SCEP listener: 404" \
  test "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" -d "serial=$SA" "$B/admin/revocations")" = 404
check "admin: unknown serial -> 404" \
  test "$(revoke unk -H "Authorization: Bearer $TOKEN" -d 'serial=40000000000000000000000000000001')" = 404
check "admin: bad reason -> 400" \
  test "$(revoke badr -H "Authorization: Bearer $TOKEN" -d "{\"serial\":\"$SA\",\"reason\":\"bored\"}")" = 400
check "admin: bad serial -> 400" \
  test "$(revoke bads -H "Authorization: Bearer $TOKEN" -d '{"serial":"xyz"}')" = 400
check "admin: revoke dev-a (JSON, keyCompromise) -> 200" \
  test "$(revoke ra -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "{\"serial\":\"$SA\",\"reason\":\"keyCompromise\",\"invalidity_date\":\"1700000000\"}")" = 200
check "admin: answer says revoked" grep -q '"status":"revoked"' ra.json
check "admin: revoking again is idempotent (200, already_revoked, same time)" \
  sh -c "test \"\$(curl -s -o ra2.json -w '%{http_code}' -X POST -H 'Authorization: Bearer $TOKEN' -d 'serial=$SA&reason=superseded' '$ADMIN_URL/admin/revocations')\" = 200 && grep -q already_revoked ra2.json && grep -q keyCompromise ra2.json"
check "audit: REVOKED 1100" audit_has '"event":1100,"name":"REVOKED"'
check "audit: unknown serial refused (1101)" audit_has '"event":1101,"name":"REVOKE_FAILED","diag":"unknown_serial"'

# --- scepctl ---
check "scepctl revoke dev-c (cessationOfOperation)" "$BUILD/scepctl" -c "$CONF" revoke "$SC" --reason cessationOfOperation
check "scepctl revoke again: idempotent" sh -c "'$BUILD/scepctl' -c '$CONF' revoke '$SC' | grep -q already-revoked"
check "scepctl revoke of an unknown serial fails" sh -c "! '$BUILD/scepctl' -c '$CONF' revoke 40000000000000000000000000000001 2>/dev/null"
check "scepctl revoke with an unknown reason fails" sh -c "! '$BUILD/scepctl' -c '$CONF' revoke '$SB' --reason bored 2>/dev/null"
# The same PKCSReq again (same key, same transactionID) after its certificate was revoked:
# not the revoked certificate as a SUCCESS, a FAILURE telling the device to use a new key.
TXA=$(sed -n 's/^txid=//p' dev-a.out | head -n1)
"$REQ" enroll --url "$URL" --challenge "$C" --cn dev-a --key dev-a.key --txid "$TXA" \
  --cert-out again-a.pem > again-a.out 2>&1 || true
check "replay of a revoked certificate's transaction: FAILURE badRequest, replay_revoked" \
  expect_failure again-a.out 2000 replay_revoked badRequest
check "replay of a revoked certificate's transaction: no certificate written" test ! -s again-a.pem
"$BUILD/scepctl" -c "$CONF" cert list --revoked > revoked.txt
check "cert list --revoked: both revocations, with reason and who" \
  sh -c "grep -q '$SA.*keyCompromise.*admin-api' revoked.txt && grep -q '$SC.*cessationOfOperation.*scepctl' revoked.txt && test \$(wc -l < revoked.txt) -eq 2"

# --- the CRL after the revocations (admin API wakes the publisher; scepctl is polled) ---
check "a new CRL is published within seconds" wait_crl_above "$N0"
for _ in $(seq 1 50); do
  curl -fsS -o crl1.der "$B/crl/ca.crl"
  openssl crl -inform DER -in crl1.der -noout -text | grep -qi "$SC" && break
  sleep 0.1
done
openssl crl -inform DER -in crl1.der -out crl1.pem
openssl crl -in crl1.pem -noout -text > crl1.txt
check "CRL lists dev-a and dev-c, not dev-b" sh -c "grep -qi '$SA' crl1.txt && grep -qi '$SC' crl1.txt && ! grep -qi '$SB' crl1.txt"
check "CRL: reason codes" sh -c "grep -q 'Key Compromise' crl1.txt && grep -q 'Cessation Of Operation' crl1.txt"
check "CRL: invalidity date" grep -q "Invalidity Date" crl1.txt
check "CRL: AKI is the CA's SKI" test "$(openssl crl -in crl1.pem -noout -text | grep -A1 'Authority Key Identifier' | tail -n1 | tr -d ' ' | sed 's/^keyid://')" = "$(openssl x509 -in "$STATE/ca.pem" -noout -ext subjectKeyIdentifier | tail -n1 | tr -d ' ')"
check "CRL number increased" test "$(($(crl_number crl1.der)))" -gt "$N0"
check "last good CRL on disk equals the one served" cmp crl1.der "$STATE/crl/ca.crl"
check "openssl verify -crl_check: revoked dev-a fails" \
  sh -c "! openssl verify -crl_check -CAfile '$STATE/ca.pem' -CRLfile crl1.pem dev-a.pem >/dev/null 2>&1"
check "openssl verify -crl_check: dev-b passes" \
  sh -c "openssl verify -crl_check -CAfile '$STATE/ca.pem' -CRLfile crl1.pem dev-b.pem >/dev/null 2>&1"

# --- GetCRL through SCEP ---
"$REQ" getcrl --url "$URL" --serial "$SB" --key dev-b.key --cert dev-b.pem --crl-out getcrl.pem > getcrl.out 2>&1 || true
check "GetCRL: SUCCESS" grep -q "status=SUCCESS" getcrl.out
check "GetCRL: the same CRL as /crl/ca.crl" sh -c "openssl crl -in getcrl.pem -outform DER | cmp - crl1.der"
check "audit: CRL_RETURNED 1004 for that transaction" expect_event getcrl.out 1004
"$REQ" getcrl --url "$URL" --serial 40000000000000000000000000000001 --key dev-b.key --cert dev-b.pem > getcrl2.out 2>&1 || true
check "GetCRL for a serial we never issued: FAILURE badCertId, unknown_certificate" \
  expect_failure getcrl2.out 2000 unknown_certificate badCertId

# --- OCSP ---
ocsp -cert dev-a.pem > o-a.txt
check "OCSP: dev-a revoked, with reason and time" sh -c "grep -q 'Response verify OK' o-a.txt && grep -q 'dev-a.pem: revoked' o-a.txt && grep -q 'Reason: keyCompromise' o-a.txt && grep -q 'Revocation Time' o-a.txt"
ocsp -cert dev-b.pem > o-b.txt
check "OCSP: dev-b good (nonce echoed: no nonce warning)" sh -c "grep -q 'Response verify OK' o-b.txt && grep -q 'dev-b.pem: good' o-b.txt && ! grep -qi 'nonce' o-b.txt"
ocsp -serial 0x40000000000000000000000000000001 > o-u.txt
check "OCSP: a serial never issued is unknown" grep -q ': unknown' o-u.txt
ocsp -cert dev-b.pem -no_nonce -VAfile "$STATE/ocsp.pem" > o-va.txt
check "OCSP with -VAfile (delegated responder certificate)" grep -q 'dev-b.pem: good' o-va.txt
req_b64=$(openssl ocsp -issuer "$STATE/ca.pem" -cert dev-a.pem -no_nonce -reqout - 2>/dev/null | base64 -w0)
check "OCSP GET /ocsp/<base64>: revoked" sh -c "curl -fsS -o get.ocsp '$B/ocsp/$(printf %s "$req_b64" | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')' && openssl ocsp -respin get.ocsp -resp_text -noverify 2>/dev/null | grep -q 'Cert Status: revoked'"
# the same nonce-less query twice: the second answer is the pre-signed one (byte-identical)
openssl ocsp -issuer "$STATE/ca.pem" -cert dev-b.pem -no_nonce -reqout q.der 2>/dev/null
curl -fsS -H 'Content-Type: application/ocsp-request' --data-binary @q.der -o r1.der "$B/ocsp"
curl -fsS -H 'Content-Type: application/ocsp-request' --data-binary @q.der -o r2.der "$B/ocsp"
check "OCSP: repeated nonce-less query answered from the cache (same bytes)" cmp r1.der r2.der
printf 'garbage' > bad.der
curl -fsS --data-binary @bad.der -o bad.ocsp "$B/ocsp"
check_audit "OCSP: garbage -> malformedRequest, audited" sh -c "openssl ocsp -respin bad.ocsp -resp_text 2>&1 | grep -qi 'malformedrequest' && grep -q '\"diag\":\"ocsp_malformed\"' '$STATE/audit.log'"

# --- renewal with a revoked certificate ---
"$REQ" enroll --url "$URL" --renew-with dev-a.pem --renew-key dev-a.key --cn dev-a --key renew.key > renew.out 2>&1 || true
check "RenewalReq signed by a revoked certificate: FAILURE badRequest, renewal_revoked" \
  expect_failure renew.out 2000 renewal_revoked badRequest
"$REQ" enroll --url "$URL" --challenge "$C" --cn dev-a --pkcsreq-signed-by dev-a.pem --renew-key dev-a.key > renew2.out 2>&1 || true
check "renewal-style PKCSReq signed by a revoked certificate: FAILURE badRequest, renewal_revoked" \
  expect_failure renew2.out 2000 renewal_revoked badRequest

# --- restart (with CDP/AIA URLs configured): the last good CRL is served at once ---
stop_scepd
# The two failed tries are audited once, with their count, when the window ends (here at
# shutdown, auth_fail_window being 60 s).
check_audit "audit: the 401s recorded once, with the count" \
  sh -c "grep '\"event\":2005' '$STATE/audit.log' | grep -q '\"diag\":\"unauthorized\".*\"count\":2\|\"count\":2.*\"diag\":\"unauthorized\"'"
cp "$STATE/crl/ca.crl" before.der
sed -i 's|^allow_sha1_messages = yes$|&\ncrl_url = http://pki.example.test/crl/ca.crl\nocsp_url = http://pki.example.test/ocsp|' "$CONF"
start_scepd
B="http://127.0.0.1:$PORT"
curl -fsS -o after.der "$B/crl/ca.crl"
check "after a restart a CRL is served immediately, never an older number" \
  test "$(($(crl_number after.der)))" -ge "$(($(crl_number before.der)))"
enroll dev-d
check "dev-d: certificate verifies against the served chain" verify_cert dev-d.pem
openssl x509 -in dev-d.pem -noout -text > dev-d.txt
check "crl_url set: issued certificate has the CRL Distribution Point" \
  sh -c "grep -A3 'CRL Distribution Points' dev-d.txt | grep -q 'URI:http://pki.example.test/crl/ca.crl'"
check "ocsp_url set: issued certificate has the AIA OCSP URI" \
  grep -q "OCSP - URI:http://pki.example.test/ocsp" dev-d.txt
finish
