#!/usr/bin/env bash
# The lookups of CertPoll, GetCert and GetCRL on a PostgreSQL store that is away (issue 11):
# the request is fine, the store cannot be asked, so the client gets HTTP 503 with
# Retry-After and retries, not a CertRep FAILURE that would make it give up. Each 503 is
# audited STORE_FAILURE (diag store_unavailable, http_status 503, the message type in the
# detail). Once the database is back the same requests get their normal answers.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl openssl

init_state
pg_start
pg_node_conf "$STATE/node-a.conf" a
node_start a "$STATE/node-a.conf"
URL=${NODE_URL[a]}
H="http://127.0.0.1:${NODE_PORT[a]}/healthz"
AUDIT=$STATE/audit-a.log
cd "$T"

"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn dev --key dev.key --cert-out dev.pem \
  > dev.out 2>&1 || true
check "a certificate issued while the database is up" grep -q status=SUCCESS dev.out
TX=$(sed -n 's/^txid=//p' dev.out | head -n1)
SN=$(openssl x509 -in dev.pem -noout -serial | cut -d= -f2)
# A CertPoll of that transaction, signed with its key (the server reads only the signer and
# the transactionID of a CertPoll), kept to be sent raw while the database is away.
"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn dev --key dev.key --txid "$TX" \
  --msgtype 20 --emit poll.msg > poll-emit.out 2>&1 || true
check "a CertPoll message prepared" test -s poll.msg
# wait for the first CRL (GetCRL answers the published one)
for _ in $(seq 1 200); do curl -fsS -o /dev/null "http://127.0.0.1:${NODE_PORT[a]}/crl/ca.crl" 2>/dev/null && break; sleep 0.1; done

getcert() { "$REQ" getcert --url "$URL" --serial "$SN" --key dev.key --cert dev.pem --cert-out "$1.pem" > "$1.out" 2>&1 || true; }
getcrl()  { "$REQ" getcrl --url "$URL" --serial "$SN" --key dev.key --cert dev.pem --crl-out "$1.crl" > "$1.out" 2>&1 || true; }
certpoll() {
  curl -s -D "$1.hdr" -o "$1.body" -w '%{http_code}' -H 'Content-Type: application/x-pki-message' \
    --data-binary @poll.msg "$URL?operation=PKIOperation" > "$1.code" || true
}
# store_failure_for WHAT: a STORE_FAILURE audit line (event 3001) of transaction TX for WHAT,
# answered 503, with the diag store_unavailable. GetCert and GetCRL messages carry their own
# transactionIDs: those lines are found by the detail.
store_failure_for() {
  grep -F '"event":3001,' "$AUDIT" | grep -F '"diag":"store_unavailable"' |
    grep -F '"http_status":503' | grep -qF "store unavailable: $1 "
}

renew() { "$REQ" enroll --url "$URL" --cn dev --key "$1.key" --cert-out "$1.pem" \
  --renew-with dev.pem --renew-key dev.key > "$1.out" 2>&1 || true; }
enroll() { "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn "$1" --key "$1.key" \
  --cert-out "$1.pem" > "$1.out" 2>&1 || true; }

pg_stop
# Every worker's connection must notice: ask each message type until it is answered 503
# (bounded; the first request on a connection that was idle finds it dead and fails).
for _ in 1 2 3; do certpoll down-poll; getcert down-gc; getcrl down-crl; renew down-renew; enroll down-new; done
check "CertPoll while the database is down: HTTP 503" test "$(cat down-poll.code)" = 503
check "the CertPoll 503 has Retry-After: 2" grep -qi '^Retry-After: 2' down-poll.hdr
check "GetCert while the database is down: HTTP 503" grep -q '^http=503' down-gc.out
check "GetCRL while the database is down: HTTP 503" grep -q '^http=503' down-crl.out
check "RenewalReq while the database is down: HTTP 503 (the signer cannot be looked up)" \
  grep -q '^http=503' down-renew.out
check "PKCSReq while the database is down: HTTP 503 (the transactionID cannot be looked up)" \
  grep -q '^http=503' down-new.out
check "no CertRep FAILURE while the database is down" \
  sh -c "! grep -h status=FAILURE down-gc.out down-crl.out down-renew.out down-new.out"
check_audit "the RenewalReq's 503 audited STORE_FAILURE (renewal signer lookup)" \
  audit_retry store_failure_for "renewal signer lookup"
check_audit "the PKCSReq's 503 audited STORE_FAILURE (transactionID lookup)" \
  audit_retry store_failure_for "transactionID lookup"
check_audit "CertPoll's 503 audited STORE_FAILURE (store_unavailable, its txid)" \
  sh -c "grep -F '\"txid\":\"$TX\"' '$AUDIT' | grep -F '\"event\":3001,' | grep -F '\"http_status\":503' | grep -qF 'store unavailable: CertPoll '"
check_audit "GetCert's 503 audited STORE_FAILURE (store_unavailable)" store_failure_for GetCert
check_audit "GetCRL's 503 audited STORE_FAILURE (store_unavailable)" store_failure_for GetCRL
check "no REQUEST_REJECTED audited while the database is down" \
  sh -c "! grep -F '\"event\":2000,' '$AUDIT'"

pg_up
# back: each answer normal again (a worker's connection may be in its backoff, <= 2 s: the
# client retries on 503 as it should)
until_ok() {
  local what=$1 i
  for i in $(seq 1 40); do
    "$what" "up-$what"
    case $what in
      certpoll) [ "$(cat up-certpoll.code)" = 200 ] && return 0 ;;
      *) grep -q status=SUCCESS "up-$what.out" && return 0 ;;
    esac
    sleep 0.25
  done
  return 1
}
check "CertPoll after the database came back: HTTP 200" until_ok certpoll
check "GetCert after the database came back: SUCCESS" until_ok getcert
check "GetCert returns the certificate" cmp <(openssl x509 -in up-getcert.pem -outform DER) <(openssl x509 -in dev.pem -outform DER)
check "GetCRL after the database came back: SUCCESS" until_ok getcrl
check_audit "GetCert audited CERT_RETURNED after the restart" sh -c "grep -F '\"event\":1003,' '$AUDIT' | grep -qF GetCert"
check_audit "GetCRL audited CRL_RETURNED after the restart" grep -qF '"event":1004,' "$AUDIT"
node_stop a
finish
