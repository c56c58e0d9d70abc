#!/usr/bin/env bash
# A scepd node on PostgreSQL (issue 11) while the database goes away and comes back (a
# restart, as in a failover to the same address): while it is down, requests are answered
# 503 (the client retries) and /healthz says unavailable; the store failure is audited; once
# it is back the node reconnects by itself and issues again. Every certificate a client
# received is in the store. The outage is audited: STORE_UNAVAILABLE naming the node, the
# connection and libpq's error, then STORE_RECOVERED, at most one outage a second.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
REQ=$BUILD/tests/scep_req
need_cmd curl

init_state
pg_start
pg_node_conf "$STATE/node-a.conf" a
node_start a "$STATE/node-a.conf"
URL=${NODE_URL[a]}
H="http://127.0.0.1:${NODE_PORT[a]}/healthz"
cd "$T"
mkdir -p got

client() {
  local id=$1 i=0
  while [ ! -e stop ] && [ $i -lt 400 ]; do
    "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn "rs-$id-$i" --key-type ec:P-256 \
      --cert-out "got/$id-$i.pem" > "got/$id-$i.out" 2>&1 || true
    i=$((i + 1))
  done
}
pids=()
for id in 1 2; do client $id & pids+=($!); done
sleep 1
pg_stop
sleep 0.3
hz=$(curl -s -o /dev/null -w '%{http_code}' "$H")
"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn while-down --cert-out down.pem \
  > down.out 2>&1 || true
sleep 1
pg_up
ready=0
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$H")" = 200 ] && { ready=1; break; }
  sleep 0.1
done
sleep 1
touch stop
wait "${pids[@]}" 2>/dev/null || true

check "/healthz while the database is down: 503" test "$hz" = 503
check "an enrollment while the database is down: HTTP 503" grep -q 'http=503' down.out
check "the store failure is audited" sh -c "grep -q '\"name\":\"STORE_FAILURE\"' '$STATE/audit-a.log'"
check "/healthz is 200 again once the database is back" test $ready = 1
PID=${NODE_PID[a]}
grep -F '"event":3003,' "$STATE/audit-a.log" > unavail.lines || true
grep -F -e '"event":3003,' -e '"event":3004,' "$STATE/audit-a.log" > outage.lines || true
check "STORE_UNAVAILABLE audited, naming the node, its connection and libpq's error" \
  grep -Eq "\"detail\":\"node [^\"]* pid $PID: (writer|reader|health) connection: [^\"]*(server|connection|socket)" unavail.lines
check "STORE_RECOVERED audited after it (node, duration)" \
  sh -c "tail -n1 outage.lines | grep -Eq '\"event\":3004,.*\"detail\":\"node [^\"]* pid $PID: [a-z]+ connection established again after [0-9]+ ms'"
check "outage events alternate UNAVAILABLE / RECOVERED" \
  sh -c "sed -n 's/.*\"event\":\(300[34]\),.*/\1/p' outage.lines | uniq -d | grep -q . && exit 1 || exit 0"
# at most one outage reported a second (their own timestamps, ms)
gaps_ok() {
  local prev="" t ms
  while read -r t; do
    ms=$(date -u -d "${t%Z}" +%s%3N) || return 1
    if [ -n "$prev" ] && [ $((ms - prev)) -lt 990 ]; then log "  STORE_UNAVAILABLE $((ms - prev)) ms after the previous"; return 1; fi
    prev=$ms
  done < <(sed -n 's/.*"ts":"\([^"]*\)".*/\1/p' unavail.lines)
}
check "STORE_UNAVAILABLE at most once a second" gaps_ok
# as a client does: retry on 503 (a worker's connection may still be in its backoff, <= 2 s)
for _ in $(seq 1 10); do
  "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn after-restart --cert-out after.pem \
    > after.out 2>&1 || true
  grep -q http=503 after.out || break
  sleep 0.5
done
check "the node issues again after the database came back" grep -q status=SUCCESS after.out
check "the certificate verifies" verify_cert after.pem
received=$(find got -name '*.pem' -size +0 | wc -l)
log "clients received $received certificates"
missing=0
for f in got/*.pem after.pem; do
  [ -s "$f" ] || continue
  s=$(openssl x509 -in "$f" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
  [ "$(pg_sql "SELECT count(*) FROM scepd_certs WHERE serial = '\\x$s'::bytea")" = 1 ] ||
    { missing=$((missing + 1)); log "not in the store: $f ($s)"; }
done
check "every certificate a client received is in the store" test "$missing" -eq 0
others=$(grep -L -e status=SUCCESS -e http=503 got/*.out || true)
for f in $others; do log "  $f: $(tr '\n' ' ' < "$f")"; done
check "no other answer than SUCCESS or HTTP 503 reached a client" test -z "$others"
node_stop a
finish
