#!/usr/bin/env bash
# Manual approval end to end (conf/profiles/manual.conf: approval = manual, one-time
# challenge): PKCSReq -> PENDING, repeated PKCSReq -> PENDING, scepctl request list/approve/deny,
# then the client's CertPoll gets the certificate or FAILURE; audit events for each step.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req

init_state
start_scepd
cd "$T"
B="http://127.0.0.1:$PORT/scep/manual"
ctl() { "$BUILD/scepctl" -c "$CONF" "$@"; }
statuses() { grep -o 'status=[A-Z]* failinfo=[A-Za-z-]*' "$T/$1.out" | tr '\n' ' '; }
txid_of() { sed -n 's/^txid=//p' "$T/$1.out" | head -n1; }

V=$(ctl challenge new --profile manual --ttl 10m)
"$REQ" enroll --url "$B" --challenge "$V" --cn manual-1 --key m1.key > m1.out 2>&1 || true
TX=$(txid_of m1)
check "manual profile: PKCSReq answered PENDING" grep -q "status=PENDING" m1.out
check_audit "audit: REQUEST_PENDING (1500)" sh -c "grep '\"event\":1500' '$STATE/audit.log' | grep -q '\"profile\":\"manual\"'"
check "request list shows it pending" sh -c "'$BUILD/scepctl' -c '$CONF' request list | grep -F -- '$TX' | grep -q pending"
"$REQ" enroll --url "$B" --challenge "$V" --cn manual-1 --key m1.key --txid "$TX" --poll > m1b.out 2>&1 || true
check "repeated PKCSReq and CertPoll while pending: PENDING, PENDING" \
  test "$(statuses m1b)" = "status=PENDING failinfo=- status=PENDING failinfo=- "
check "nothing issued yet" test "$(ctl cert count)" = 0

out=$(ctl request approve "$TX")
check "scepctl request approve" grep -q "approved serial=" <<<"$out"
serial=$(sed -n 's/.*serial=//p' <<<"$out")
check_audit "audit: REQUEST_APPROVED (1501) with the serial" \
  sh -c "grep '\"event\":1501' '$STATE/audit.log' | grep -q '$serial'"
check "approving twice fails" sh -c "! '$BUILD/scepctl' -c '$CONF' request approve '$TX' 2>/dev/null"
check "request list no longer shows it; --all does (approved)" \
  sh -c "! '$BUILD/scepctl' -c '$CONF' request list | grep -qF -- '$TX' && '$BUILD/scepctl' -c '$CONF' request list --all | grep -F -- '$TX' | grep -q approved"
"$REQ" enroll --url "$B" --challenge "$V" --cn manual-1 --key m1.key --txid "$TX" --poll --cert-out m1.pem > m1c.out 2>&1 || true
check "CertPoll after approval: SUCCESS" sh -c "statuses() { grep -o 'status=[A-Z]*' '$T/m1c.out' | tail -n1; }; [ \"\$(statuses)\" = status=SUCCESS ]"
check "the certificate is the approved one" \
  test "$(openssl x509 -in m1.pem -noout -serial | cut -d= -f2 | tr A-F a-f)" = "$serial"
check "the approved certificate verifies against the served chain" verify_cert m1.pem
check "audit: CertPoll answered (1003) for that transaction and serial" expect_event m1c 1003
check "store: the certificate, under profile manual" sh -c "'$BUILD/scepctl' -c '$CONF' cert show '$serial' | grep -q '^profile: manual'"

# --- denial ---
V2=$(ctl challenge new --profile manual --ttl 10m)
"$REQ" enroll --url "$B" --challenge "$V2" --cn manual-2 --key m2.key > m2.out 2>&1 || true
TX2=$(txid_of m2)
check "second request: PENDING" grep -q "status=PENDING" m2.out
check "scepctl request deny" sh -c "'$BUILD/scepctl' -c '$CONF' request deny '$TX2' | grep -q denied"
check "audit: REQUEST_DENIED (1502)" audit_has '"event":1502'
"$REQ" enroll --url "$B" --challenge "$V2" --cn manual-2 --key m2.key --txid "$TX2" --poll > m2b.out 2>&1 || true
check "after denial: PKCSReq and CertPoll get FAILURE badRequest" \
  test "$(statuses m2b)" = "status=FAILURE failinfo=badRequest status=FAILURE failinfo=badRequest "
check "after denial: the CertPoll's CertRep and audit event say request_denied" \
  expect_failure m2b 2000 request_denied badRequest
check "after denial: both refusals of that transaction are audited request_denied" \
  test "$(grep -F "\"txid\":\"$TX2\"" "$STATE/audit.log" | tail -n2 | grep -c '"event":2000,"name":"REQUEST_REJECTED","diag":"request_denied","failinfo":2,')" = 2
check "approve after deny fails" sh -c "! '$BUILD/scepctl' -c '$CONF' request approve '$TX2' 2>/dev/null"
check "unknown request id fails" sh -c "! '$BUILD/scepctl' -c '$CONF' request approve nosuchtxid 2>/dev/null"
check "exactly one certificate issued" test "$(ctl cert count)" = 1

# Another key under a pending transactionID is a conflict, not a second request.
V3=$(ctl challenge new --profile manual --ttl 10m)
"$REQ" enroll --url "$B" --challenge "$V3" --cn manual-3 --key m3.key > m3.out 2>&1 || true
TX3=$(txid_of m3)
"$REQ" enroll --url "$B" --challenge "$V3" --cn manual-3 --txid "$TX3" > m3b.out 2>&1 || true
check "same transactionID, another key while pending: FAILURE badRequest, txid_conflict" \
  expect_failure m3b 2000 txid_conflict badRequest

finish
