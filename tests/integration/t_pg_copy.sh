#!/usr/bin/env bash
# Moving an installation between the backends (issue 11): scepctl store migrate creates the
# PostgreSQL schema; scepctl store copy moves an LMDB store with certificates, a revocation,
# a CRL number, an unused one-time challenge and a pending request into PostgreSQL, where a
# scepd node serves all of it (replay, OCSP, CRL, the challenge, the approval); and back into
# a new LMDB directory, which lists the same records. A non-empty destination is refused.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl openssl

init_state
printf 'challenge = onetime\n' > "$STATE/profiles/otp.conf"
start_scepd
cd "$T"
ctl() { "$BUILD/scepctl" -c "$@"; }
for n in c1 c2 c3; do
  "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn $n --key $n.key --cert-out $n.pem \
    > $n.out 2>&1 || true
done
check "three certificates issued on LMDB" sh -c "grep -q status=SUCCESS c1.out && grep -q status=SUCCESS c3.out"
S2=$(openssl x509 -in c2.pem -noout -serial | cut -d= -f2)
check "c2 revoked on LMDB" ctl "$CONF" revoke "$S2" --reason superseded
for _ in $(seq 1 60); do
  curl -fsS -o lm.crl "http://127.0.0.1:$PORT/crl/ca.crl" &&
    openssl crl -inform DER -in lm.crl -noout -text | grep -qi "$S2" && break
  sleep 0.1
done
V=$(ctl "$CONF" challenge new --profile otp --ttl 60m)
VM=$(ctl "$CONF" challenge new --profile manual --ttl 60m)
"$REQ" enroll --url "$URL/manual" --challenge "$VM" --cn pend --key pend.key > pend.out 2>&1 || true
check "a request waits for approval on LMDB" grep -q status=PENDING pend.out
stop_scepd
ctl "$CONF" cert list > lmdb.list
ctl "$CONF" cert list --revoked > lmdb.revoked
ctl "$CONF" request list > lmdb.requests

pg_start
pg_node_conf "$STATE/node-a.conf" a
check "scepctl store migrate creates the schema" sh -c "'$BUILD/scepctl' -c '$STATE/node-a.conf' store migrate | grep -q 'schema 1 (created)'"
check "store migrate again: already current" sh -c "'$BUILD/scepctl' -c '$STATE/node-a.conf' store migrate | grep -q 'already current'"
check "store copy lmdb -> postgresql" \
  ctl "$CONF" store copy --from "lmdb:$STATE/store" --to "postgresql:$PG_CONNINFO"
check "a second copy into the now non-empty store is refused" \
  sh -c "! '$BUILD/scepctl' -c '$CONF' store copy --from 'lmdb:$STATE/store' --to 'postgresql:$PG_CONNINFO' 2>copy2.err && grep -q 'not empty' copy2.err"
ctl "$STATE/node-a.conf" cert list > pg.list
ctl "$STATE/node-a.conf" cert list --revoked > pg.revoked
ctl "$STATE/node-a.conf" request list > pg.requests
check "PostgreSQL lists the same certificates" cmp lmdb.list pg.list
check "PostgreSQL lists the same revocation" cmp lmdb.revoked pg.revoked
check "PostgreSQL lists the same pending request" cmp lmdb.requests pg.requests
check "the CRL number came along" \
  test "$(pg_sql "SELECT value FROM scepd_meta WHERE name = 'crl_number'")" -ge 1

node_start a "$STATE/node-a.conf"
URL=${NODE_URL[a]}
A="http://127.0.0.1:${NODE_PORT[a]}"
check "the node on PostgreSQL: OCSP says c2 revoked" \
  sh -c "openssl ocsp -issuer '$STATE/ca.pem' -url '$A/ocsp' -CAfile '$STATE/ca.pem' -cert c2.pem 2>&1 | grep -q 'c2.pem: revoked'"
check "... and c1 good" \
  sh -c "openssl ocsp -issuer '$STATE/ca.pem' -url '$A/ocsp' -CAfile '$STATE/ca.pem' -cert c1.pem 2>&1 | grep -q 'c1.pem: good'"
"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn c1 --key c1.key --cert-out c1b.pem \
  > c1b.out 2>&1 || true
check "the node on PostgreSQL issues new certificates" grep -q status=SUCCESS c1b.out
"$REQ" enroll --url "$URL/otp" --challenge "$V" --cn otp --key otp.key --cert-out otp.pem > otp.out 2>&1 || true
check "the copied one-time challenge works on PostgreSQL" grep -q status=SUCCESS otp.out
TX=$(sed -n 's/^txid=//p' pend.out | head -n1)
check "scepctl request approve on the shared store" ctl "$STATE/node-a.conf" request approve "$TX"
"$REQ" enroll --url "$URL/manual" --challenge "$VM" --cn pend --key pend.key --poll --txid "$TX" --cert-out pend.pem > poll.out 2>&1 || true
check "the approved request's CertPoll gets the certificate" grep -q status=SUCCESS poll.out
node_stop a

check "store copy postgresql -> lmdb (a new directory)" \
  ctl "$CONF" store copy --from "postgresql:$PG_CONNINFO" --to "lmdb:$T/back"
sed "s|^path = store|path = $T/back|" "$CONF" > back.conf
ctl "$STATE/node-a.conf" cert list > pg2.list
ctl back.conf cert list > back.list
check "the LMDB copy lists what PostgreSQL holds" sh -c "cmp pg2.list back.list && [ \$(wc -l < back.list) -ge 5 ]"
check "the LMDB copy keeps the revocation" sh -c "ctl_out=\$('$BUILD/scepctl' -c back.conf cert list --revoked); echo \"\$ctl_out\" | grep -qi '^$S2 '"

# --- the configuration keys ---
sed 's|^path = store|backend = postgres|' "$CONF" > bad1.conf
check "[store] backend = postgres (a typo) is refused" \
  sh -c "! '$BUILD/scepctl' -c bad1.conf cert count 2>bad1.err && grep -q \"bad \[store\] backend 'postgres'\" bad1.err"
sed 's|^path = store|backend = postgresql|' "$CONF" > bad2.conf
check "[store] backend = postgresql without conninfo is refused" \
  sh -c "! '$BUILD/scepctl' -c bad2.conf cert count 2>bad2.err && grep -q 'needs conninfo' bad2.err"
finish
