#!/usr/bin/env bash
# Two scepd nodes on one PostgreSQL store (issue 11): one one-time challenge, two different
# requests (own keys, own transactionIDs) carrying it, sent to the two nodes at the same
# moment: exactly one certificate. The other request is refused (FAILURE badRequest,
# challenge_used), the challenge is consumed once (one CHALLENGE_CONSUMED across the nodes'
# audit logs) and the store holds one certificate per challenge. Several rounds, so each node
# wins some of the races.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl

init_state
printf 'challenge = onetime\n' > "$STATE/profiles/otp.conf"
pg_start
pg_node_conf "$STATE/node-a.conf" a
pg_node_conf "$STATE/node-b.conf" b
node_start a "$STATE/node-a.conf"
node_start b "$STATE/node-b.conf"
URL=${NODE_URL[a]}
cd "$T"
"$REQ" cacert --url "${NODE_URL[a]}/otp" --out "$T/cadir" >/dev/null

post() {
  curl -s -o "$T/$1.rep" -w '%{http_code}' -H 'Content-Type: application/x-pki-message' \
    --data-binary @"$T/$1.der" "${NODE_URL[$2]}/otp?operation=PKIOperation" > "$T/$1.http"
}
decode() {
  "$REQ" enroll --decode-reply "$T/$1.rep" --state "$T/$1.der.state" --cert-out "$T/$1.pem" \
    > "$T/$1.out" 2>&1 || true
}
txid() { sed -n 's/^txid=//p' "$T/$1.out" | head -n1; }
events() { cat "$STATE"/audit-a.log "$STATE"/audit-b.log | grep -F "\"txid\":\"$1\"" || true; }

ROUNDS=6
wins_a=0; wins_b=0
for i in $(seq 1 $ROUNDS); do
  v=$("$BUILD/scepctl" -c "$STATE/node-a.conf" challenge new --profile otp --ttl 10m)
  for who in a b; do
    "$REQ" enroll --ca-dir "$T/cadir" --challenge "$v" --cn "otp$i$who" --key "$T/otp$i$who.key" \
      --emit "$T/otp$i$who.der" > "$T/otp$i$who.emit" 2>&1
  done
  post "otp${i}a" a & pa=$!
  post "otp${i}b" b & pb=$!
  wait $pa $pb
  decode "otp${i}a"; decode "otp${i}b"
  ok_n=0; used_n=0; consumed=0
  for who in a b; do
    n=otp$i$who
    if grep -q 'status=SUCCESS' "$T/$n.out"; then
      ok_n=$((ok_n + 1)); winner=$who
      verify_cert "$T/$n.pem" || fail "$n: the certificate does not verify"
    elif grep -q 'status=FAILURE failinfo=badRequest' "$T/$n.out" &&
         events "$(txid "$n")" | grep '"event":2002' | grep -q '"diag":"challenge_used"'; then
      used_n=$((used_n + 1))
    else
      log "  $n: $(grep -E 'status=|error=' "$T/$n.out" | head -n1) http=$(cat "$T/$n.http")"
    fi
    consumed=$((consumed + $(events "$(txid "$n")" | grep -c '"event":1401' || true)))
  done
  check "round $i: one SUCCESS and one challenge_used refusal (got $ok_n, $used_n)" \
    test "$ok_n/$used_n" = 1/1
  check "round $i: the challenge was consumed once across the nodes (CHALLENGE_CONSUMED x$consumed)" \
    test "$consumed" = 1
  [ "$ok_n" = 1 ] && { [ "$winner" = a ] && wins_a=$((wins_a + 1)) || wins_b=$((wins_b + 1)); }
done
log "  node a won $wins_a rounds, node b $wins_b"
check "the store holds one certificate per challenge ($ROUNDS)" \
  test "$(pg_sql 'SELECT count(*) FROM scepd_certs')" = $ROUNDS
node_stop a
node_stop b
finish
