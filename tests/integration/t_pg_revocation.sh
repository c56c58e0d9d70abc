#!/usr/bin/env bash
# Two scepd nodes on one PostgreSQL store (issue 11), revocation and CRL:
#   - a certificate revoked through node A's admin API: the very next OCSP answer of node B
#     says revoked (no time asserted: node B reads the shared store on every OCSP request,
#     and the admin API answers only after the revocation committed), and so does scepctl;
#   - node B's CRL lists it once it republished (polled; the bound is rebuild_delay plus
#     the publisher's 1 s poll);
#   - while both nodes publish CRLs after revocations made on both, no CRL number is
#     published twice: the numbers in the two nodes' CRL_PUBLISHED events are all distinct,
#     increase on each node, and the store's crl_number is the largest.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl openssl

init_state
pg_start
for n in a b; do
  pg_node_conf "$STATE/node-$n.conf" $n
  sed -i 's/^rebuild_delay = .*/rebuild_delay = 100ms/' "$STATE/node-$n.conf"
done
node_start a "$STATE/node-a.conf"
node_start b "$STATE/node-b.conf"
URL=${NODE_URL[a]}
A="http://127.0.0.1:${NODE_PORT[a]}"
B="http://127.0.0.1:${NODE_PORT[b]}"
TOKEN=$(cat "$STATE/admin-token")
cd "$T"

enroll() {
  "$REQ" enroll --url "${NODE_URL[$2]}" --challenge "$CHALLENGE_VALUE" --cn "$1" --key "$1.key" \
    --cert-out "$1.pem" > "$1.out" 2>&1 || true
}
serial() { openssl x509 -in "$1.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f'; }
ocsp_at() { openssl ocsp -issuer "$STATE/ca.pem" -url "$1/ocsp" -CAfile "$STATE/ca.pem" -cert "$2.pem" 2>&1; }
revoke_at() {
  curl -s -o "$2.json" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
    -d "serial=$(serial "$2")&reason=keyCompromise" "$1/admin/revocations"
}
crl_has() {
  curl -fsS -o "$3" "$1/crl/ca.crl" 2>/dev/null &&
    openssl crl -inform DER -in "$3" -noout -text | grep -qi "$2"
}

enroll dev-1 a
enroll dev-2 b
check "certificates issued on node A and node B" sh -c "grep -q status=SUCCESS dev-1.out && grep -q status=SUCCESS dev-2.out"
check "node B's OCSP: dev-1 (issued on A) is good" sh -c "ocsp_out=\$(openssl ocsp -issuer '$STATE/ca.pem' -url '$B/ocsp' -CAfile '$STATE/ca.pem' -cert dev-1.pem 2>&1); echo \"\$ocsp_out\" | grep -q 'dev-1.pem: good'"

# --- revocation on A, seen by B's very next OCSP answer ---
st=$(revoke_at "${NODE_ADMIN[a]}" dev-1)
o=$(ocsp_at "$B" dev-1)
check "node A's admin API revoked dev-1 (200)" test "$st" = 200
check "node B's next OCSP answer: dev-1 revoked" grep -q 'dev-1.pem: revoked' <<<"$o"
check "node B's OCSP: dev-2 still good" sh -c "openssl ocsp -issuer '$STATE/ca.pem' -url '$B/ocsp' -CAfile '$STATE/ca.pem' -cert dev-2.pem 2>&1 | grep -q 'dev-2.pem: good'"
check "scepctl on the shared store lists the revocation" \
  sh -c "'$BUILD/scepctl' -c '$STATE/node-b.conf' cert list --revoked | grep -q '^$(serial dev-1) '"
seen=0
for _ in $(seq 1 100); do crl_has "$B" "$(serial dev-1)" b.crl && { seen=1; break; }; sleep 0.1; done
check "node B's CRL lists dev-1 (revoked on A)" test $seen = 1
seen=0
for _ in $(seq 1 100); do crl_has "$A" "$(serial dev-1)" a.crl && { seen=1; break; }; sleep 0.1; done
check "node A's CRL lists it too" test $seen = 1

# --- both nodes publish while revocations arrive on both ---
for i in $(seq 1 8); do
  n=r$i; node=$([ $((i % 2)) = 0 ] && echo a || echo b)
  enroll $n $node
  revoke_at "$([ $node = a ] && echo "${NODE_ADMIN[b]}" || echo "${NODE_ADMIN[a]}")" $n > /dev/null
  sleep 0.3
done
# the last revocation reaches both CRLs
for url in "$A" "$B"; do
  seen=0
  for _ in $(seq 1 100); do crl_has "$url" "$(serial r8)" last.crl && { seen=1; break; }; sleep 0.1; done
  check "$url: the CRL lists the last revocation" test $seen = 1
done
nums() { grep '"event":1200' "$STATE/audit-$1.log" | sed -n 's/.*crl_number=\([0-9]*\).*/\1/p'; }
na=$(nums a | tr '\n' ' '); nb=$(nums b | tr '\n' ' ')
log "  node A published CRL numbers: $na"
log "  node B published CRL numbers: $nb"
check "both nodes published CRLs" sh -c "[ -n '$na' ] && [ -n '$nb' ]"
check "no CRL number was published twice across the nodes" \
  test "$( (nums a; nums b) | sort -n | uniq -d | wc -l)" = 0
check "node A's CRL numbers strictly increase" sh -c "nums_sorted=\$(printf '%s\n' $na | sort -n -u | tr '\n' ' '); [ \"\$nums_sorted\" = '$na' ]"
check "node B's CRL numbers strictly increase" sh -c "nums_sorted=\$(printf '%s\n' $nb | sort -n -u | tr '\n' ' '); [ \"\$nums_sorted\" = '$nb' ]"
max=$( (nums a; nums b) | sort -n | tail -n1)
check "the store's crl_number is the largest published ($max)" \
  test "$(pg_sql "SELECT value FROM scepd_meta WHERE name = 'crl_number'")" = "$max"
check "the store holds 9 revocations" test "$(pg_sql 'SELECT count(*) FROM scepd_revoked')" = 9
node_stop a
node_stop b
finish
