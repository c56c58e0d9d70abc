#!/usr/bin/env bash
# The CRL of a cluster on PostgreSQL is built by one node at a time (issue 11): the build, the
# commit of its number and the publication run under a session advisory lock.
#   - The lock is really taken: while the test itself holds it, neither node publishes after
#     a revocation, both audit CRL_DEFERRED (diag crl_locked); released, both publish a CRL
#     listing it.
#   - Two nodes publishing concurrently (rebuild_delay 0, revocations arriving on both):
#     every CRL number is published once, and in the order of publication across both nodes
#     the numbers strictly increase (a node's CRL numbered after the one the other node
#     committed, because it builds only once the other released the lock); the store's
#     crl_number is the largest, and the CRLs the nodes serve at the end carry those numbers.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl openssl psql
CRL_LOCK=353553524517   # PG_CRL_LOCK, engine/store/pg/store_pg_internal.h

init_state
pg_start
for n in a b; do
  pg_node_conf "$STATE/node-$n.conf" $n
  sed -i 's/^rebuild_delay = .*/rebuild_delay = 0/' "$STATE/node-$n.conf"
done
node_start a "$STATE/node-a.conf"
node_start b "$STATE/node-b.conf"
A="http://127.0.0.1:${NODE_PORT[a]}"
B="http://127.0.0.1:${NODE_PORT[b]}"
cd "$T"

enroll() {
  "$REQ" enroll --url "${NODE_URL[$2]}" --challenge "$CHALLENGE_VALUE" --cn "$1" --key "$1.key" \
    --cert-out "$1.pem" > "$1.out" 2>&1 || true
}
serial() { openssl x509 -in "$1.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f'; }
revoke_at() {
  curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $(cat "$STATE/admin-token")" \
    -d "serial=$(serial "$2")&reason=keyCompromise" "$1/admin/revocations"
}
served_number() {
  curl -fsS -o "$2" "$1/crl/ca.crl" 2>/dev/null &&
    openssl crl -inform DER -in "$2" -noout -crlnumber | sed 's/.*=//; s/^0x//'
}
crl_has() {
  curl -fsS -o "$3" "$1/crl/ca.crl" 2>/dev/null &&
    openssl crl -inform DER -in "$3" -noout -text | grep -qi "$2"
}
# wait_for N CMD...: CMD until it succeeds, at most N tries 0.1 s apart
wait_for() { local i; for i in $(seq 1 "$1"); do "${@:2}" && return 0; sleep 0.1; done; return 1; }
# both nodes' first CRLs
check "both nodes serve a CRL" wait_for 300 sh -c "curl -fsS -o /dev/null '$A/crl/ca.crl' && curl -fsS -o /dev/null '$B/crl/ca.crl'"
enroll held a
check "a certificate issued" grep -q status=SUCCESS held.out

# --- the lock is taken: held by the test, no node publishes ---
holder() { psql "$PG_CONNINFO" -XAtq -c "SELECT pg_advisory_lock($CRL_LOCK)" -c "SELECT pg_sleep(3600)" > /dev/null 2>&1; }
holder &
HOLDER=$!
rp=()
check "the test holds the CRL lock" wait_for 300 sh -c \
  "[ \"\$(psql '$PG_CONNINFO' -XAtq -c \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND ((classid::int8 << 32) | objid::int8) = $CRL_LOCK\")\" = 1 ]"
pa=$(grep -c '"event":1200,' "$STATE/audit-a.log"); pb=$(grep -c '"event":1200,' "$STATE/audit-b.log")
check "held certificate revoked on node A" test "$(revoke_at "${NODE_ADMIN[a]}" held)" = 200
deferred() { grep -F '"event":1202,' "$STATE/audit-$1.log" | grep -qF '"diag":"crl_locked"'; }
check "node A puts its CRL build off (CRL_DEFERRED, crl_locked)" wait_for 300 deferred a
check "node B puts its CRL build off (CRL_DEFERRED, crl_locked)" wait_for 300 deferred b
check "while the lock is held neither node published a CRL" \
  sh -c "[ \$(grep -c '\"event\":1200,' '$STATE/audit-a.log') = $pa ] && [ \$(grep -c '\"event\":1200,' '$STATE/audit-b.log') = $pb ]"
check "neither serves a CRL listing the revocation yet" \
  sh -c "! (curl -fsS '$A/crl/ca.crl' | openssl crl -inform DER -noout -text | grep -qi '$(serial held)') &&
         ! (curl -fsS '$B/crl/ca.crl' | openssl crl -inform DER -noout -text | grep -qi '$(serial held)')"
pg_sql "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND ((classid::int8 << 32) | objid::int8) = $CRL_LOCK" > /dev/null
wait "$HOLDER" 2>/dev/null || true
check "released: node A's CRL lists the revocation" wait_for 300 crl_has "$A" "$(serial held)" a.crl
check "released: node B's CRL lists the revocation" wait_for 300 crl_has "$B" "$(serial held)" b.crl

# --- both nodes publish while revocations arrive on both ---
for i in $(seq 1 10); do
  node=$([ $((i % 2)) = 0 ] && echo a || echo b)
  enroll r$i $node
done
# two at a time, one on each node (wait only for these: the nodes are background jobs too)
for i in $(seq 1 10); do
  node=$([ $((i % 2)) = 0 ] && echo b || echo a)
  revoke_at "${NODE_ADMIN[$node]}" r$i > /dev/null &
  rp+=($!)
  if [ $((i % 2)) = 0 ]; then wait "${rp[@]}"; rp=(); fi
done
check "node A's CRL lists the last revocations" wait_for 300 sh -c "curl -fsS '$A/crl/ca.crl' | openssl crl -inform DER -noout -text | grep -qi '$(serial r10)' && curl -fsS '$A/crl/ca.crl' | openssl crl -inform DER -noout -text | grep -qi '$(serial r9)'"
check "node B's CRL lists the last revocations" wait_for 300 sh -c "curl -fsS '$B/crl/ca.crl' | openssl crl -inform DER -noout -text | grep -qi '$(serial r10)' && curl -fsS '$B/crl/ca.crl' | openssl crl -inform DER -noout -text | grep -qi '$(serial r9)'"
# CRL_PUBLISHED of both nodes in the order of publication (ts, ms): "ts number node"
published() {
  local n
  for n in a b; do
    grep -F '"event":1200,' "$STATE/audit-$n.log" |
      sed -n "s/.*\"ts\":\"\\([^\"]*\\)\".*crl_number=\\([0-9]*\\).*/\\1 \\2 $n/p"
  done | sort -k1,1 -k2,2n
}
published > pub.txt
log "  CRLs published (ts number node):"; sed 's/^/    /' pub.txt >&2
check "both nodes published CRLs" sh -c "grep -q ' a$' pub.txt && grep -q ' b$' pub.txt"
check "no CRL number was published twice across the nodes" test "$(cut -d' ' -f2 pub.txt | sort -n | uniq -d | wc -l)" = 0
check "in the order of publication, the numbers strictly increase across both nodes" \
  sh -c "cut -d' ' -f2 pub.txt | awk 'NR > 1 && \$1 <= prev { exit 1 } { prev = \$1 }'"
max=$(cut -d' ' -f2 pub.txt | sort -n | tail -n1)
check "the store's crl_number is the largest published ($max)" \
  test "$(pg_sql "SELECT value FROM scepd_meta WHERE name = 'crl_number'")" = "$max"
na=$(served_number "$A" a-end.crl); nb=$(served_number "$B" b-end.crl)
check "the CRLs served at the end carry published numbers ($na, $nb)" \
  sh -c "grep -q ' $((16#$na)) a$' pub.txt && grep -q ' $((16#$nb)) b$' pub.txt"
check "the two served CRLs have different numbers" test "$na" != "$nb"
node_stop a
node_stop b
finish
