#!/usr/bin/env bash
# Two scepd nodes on one PostgreSQL store (issue 11): the same PKCSReq (one transactionID,
# one key) POSTed to both nodes at the same moment yields one certificate: both answers
# are SUCCESS with the same certificate, the store holds one record for the transaction,
# and the node that lost the race answered from the store (REPLAYED). Repeated for several
# transactions, so the race is actually run both ways.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl

init_state
pg_start
pg_node_conf "$STATE/node-a.conf" a
pg_node_conf "$STATE/node-b.conf" b
node_start a "$STATE/node-a.conf"
node_start b "$STATE/node-b.conf"
URL=${NODE_URL[a]}   # verify_cert fetches the chain here
cd "$T"
"$REQ" cacert --url "${NODE_URL[a]}" --out "$T/cadir" >/dev/null

# post NAME NODE: NAME's pkiMessage to NODE; the CertRep decoded against NAME's state.
post() {
  curl -s -o "$T/$1.$2.rep" -w '%{http_code}' -H 'Content-Type: application/x-pki-message' \
    --data-binary @"$T/$1.der" "${NODE_URL[$2]}?operation=PKIOperation" > "$T/$1.$2.http"
}
decode() {
  "$REQ" enroll --decode-reply "$T/$1.$2.rep" --state "$T/$1.der.state" \
    --cert-out "$T/$1.$2.pem" > "$T/$1.$2.out" 2>&1 || true
}
serial_of() { sed -n 's/.*status=SUCCESS.*serial=\([0-9A-Fa-f]*\).*/\1/p' "$T/$1.out" | tr 'A-F' 'a-f'; }

ROUNDS=6
for i in $(seq 1 $ROUNDS); do
  n=dup$i
  "$REQ" enroll --ca-dir "$T/cadir" --challenge "$CHALLENGE_VALUE" --cn "$n" --key "$T/$n.key" \
    --emit "$T/$n.der" > "$T/$n.emit" 2>&1
  post "$n" a & pa=$!
  post "$n" b & pb=$!
  wait $pa $pb
  decode "$n" a
  decode "$n" b
done

for i in $(seq 1 $ROUNDS); do
  n=dup$i
  sa=$(serial_of "$n.a"); sb=$(serial_of "$n.b")
  txid=$(sed -n 's/^txid=//p' "$T/$n.a.out" | head -n1)
  check "$n: both nodes answer HTTP 200" sh -c "[ \"\$(cat $n.a.http)\" = 200 ] && [ \"\$(cat $n.b.http)\" = 200 ]"
  check "$n: both answers SUCCESS with one certificate (serial '$sa' = '$sb')" \
    sh -c "[ -n '$sa' ] && [ '$sa' = '$sb' ] && cmp -s '$n.a.pem' '$n.b.pem'"
  check "$n: the certificate verifies" verify_cert "$T/$n.a.pem"
  check "$n: one record for the transaction in PostgreSQL" \
    test "$(pg_sql "SELECT count(*) FROM scepd_certs WHERE txid = convert_to('$txid', 'UTF8')")" = 1
  ev=$(cat "$STATE"/audit-a.log "$STATE"/audit-b.log | grep -F "\"txid\":\"$txid\"" | grep -o '"event":100[02]' | sort | tr '\n' ' ')
  check "$n: audit: one ISSUED (1000), one REPLAYED (1002) across the nodes (got: $ev)" \
    test "$ev" = '"event":1000 "event":1002 '
done
check "the store holds exactly $ROUNDS certificates" test "$(pg_sql 'SELECT count(*) FROM scepd_certs')" = $ROUNDS
check "scepctl on the shared store counts them too" \
  sh -c "'$BUILD/scepctl' -c '$STATE/node-a.conf' cert count | grep -qx '$ROUNDS'"
node_stop a
node_stop b
finish
