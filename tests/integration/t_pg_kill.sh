#!/usr/bin/env bash
# Two scepd nodes on one PostgreSQL store (issue 11), a node killed under load: clients
# enroll on both nodes; node A is killed with SIGKILL. Every certificate a client received
# from either node is in the shared store (a CertRep leaves only after its COMMIT returned),
# node B keeps issuing, and a restarted node A serves the same records.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
REQ=$BUILD/tests/scep_req

init_state
pg_start
pg_node_conf "$STATE/node-a.conf" a
pg_node_conf "$STATE/node-b.conf" b
node_start a "$STATE/node-a.conf"
node_start b "$STATE/node-b.conf"
URL=${NODE_URL[b]}
cd "$T"
mkdir -p got

client() {  # NODE ID: enroll in a loop until the node goes away (or 200 rounds)
  local node=$1 id=$2 i=0
  while [ $i -lt 200 ]; do
    "$REQ" enroll --url "${NODE_URL[$node]}" --challenge "$CHALLENGE_VALUE" --cn "kill-$id-$i" \
      --key-type ec:P-256 --cert-out "got/$id-$i.pem" >/dev/null 2>&1 || [ -s "got/$id-$i.pem" ] || return 0
    i=$((i + 1))
    [ -e stop ] && return 0
  done
}
pids=()
for id in a1 a2 a3; do client a $id & pids+=($!); done
client b b1 & pids+=($!)
sleep 2
node_kill a
received_a=$(find got -name 'a*.pem' -size +0 | wc -l)
sleep 0.5
touch stop
wait "${pids[@]}" 2>/dev/null || true
received=$(find got -name '*.pem' -size +0 | wc -l)
log "clients received $received certificates ($received_a from node A before the kill)"
check "node A delivered certificates before it was killed" test "$received_a" -gt 0

missing=0
for f in got/*.pem; do
  [ -s "$f" ] || continue
  s=$(openssl x509 -in "$f" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
  [ "$(pg_sql "SELECT count(*) FROM scepd_certs WHERE serial = '\\x$s'::bytea")" = 1 ] ||
    { missing=$((missing + 1)); log "not in the store: $f ($s)"; }
done
check "every certificate a client received is in the shared store" test "$missing" -eq 0
stored=$(pg_sql 'SELECT count(*) FROM scepd_certs')
check "the store holds at least what clients received ($stored >= $received)" test "$stored" -ge "$received"
"$REQ" enroll --url "${NODE_URL[b]}" --challenge "$CHALLENGE_VALUE" --cn after-kill-b \
  --cert-out after-b.pem > after-b.out 2>&1 || true
check "node B issues after node A died" grep -q status=SUCCESS after-b.out
check "node B's certificate verifies" verify_cert after-b.pem
node_start a "$STATE/node-a.conf"
s=$(openssl x509 -in "$(find got -name 'a*.pem' -size +0 | head -n1)" -noout -serial | cut -d= -f2)
check "restarted node A: scepctl finds a certificate it issued before the kill" \
  sh -c "'$BUILD/scepctl' -c '$STATE/node-a.conf' cert show '$s' | grep -q '^status: valid'"
"$REQ" enroll --url "${NODE_URL[a]}" --challenge "$CHALLENGE_VALUE" --cn after-kill-a \
  --cert-out after-a.pem > after-a.out 2>&1 || true
check "restarted node A issues again" grep -q status=SUCCESS after-a.out
node_stop a
node_stop b
finish
