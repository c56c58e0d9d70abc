#!/usr/bin/env bash
# HAProxy (Debian package haproxy) in front of two scepd nodes on one PostgreSQL store
# (issue 11): load through HAProxy (scep-loadgen, plus scep_req clients that keep what they
# receive), node A killed with SIGKILL under that load.
#   - HAProxy's health check (GET /healthz on the SCEP port) marks node A down, node B keeps
#     serving through HAProxy: enrollments after the kill succeed;
#   - every certificate a client received (through HAProxy, from either node) is in the
#     store, no serial was handed out twice, and the store holds at least what scep-loadgen
#     counted as verified enrollments.
# HAProxy resends a request whose connection failed before any answer (retry-on
# conn-failure empty-response junk-response, option redispatch, the request buffered): a PKCSReq is idempotent by its
# transactionID, so a resent one that node A had committed gets the replay from node B.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg.sh"
REQ=$BUILD/tests/scep_req
LG=$BUILD/scep-loadgen
need "HAProxy (Debian package haproxy)" command -v haproxy
need_cmd curl openssl python3

init_state
pg_start
for n in a b; do pg_node_conf "$STATE/node-$n.conf" $n; done
node_start a "$STATE/node-a.conf"
node_start b "$STATE/node-b.conf"
cd "$T"
mkdir -p got

HP=$(free_port); SP=$(free_port)
cat > haproxy.cfg <<CFG
global
    maxconn 512
    pidfile $T/haproxy.pid
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch
    option http-buffer-request
    retry-on conn-failure empty-response junk-response
frontend scep
    bind 127.0.0.1:$HP
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 300ms fall 2 rise 2
    server a 127.0.0.1:${NODE_PORT[a]} check
    server b 127.0.0.1:${NODE_PORT[b]} check
frontend stats
    bind 127.0.0.1:$SP
    stats enable
    stats uri /stats
CFG
haproxy -f haproxy.cfg -db > haproxy.log 2>&1 &
HAPROXY_PID=$!
stop_haproxy() { kill "$HAPROXY_PID" 2>/dev/null || true; wait "$HAPROXY_PID" 2>/dev/null || true; }
trap 'rc=$?; stop_haproxy; (exit $rc); pg_cleanup' EXIT
URL="http://127.0.0.1:$HP/scep"
# state NODE: HAProxy's view of a server (UP, DOWN, ...) from the stats CSV
state() { curl -fsS "http://127.0.0.1:$SP/stats;csv" 2>/dev/null | awk -F, -v s="$1" '$1 == "nodes" && $2 == s { print $18 }'; }
# served NODE: requests HAProxy sent to a server (stot)
served() { curl -fsS "http://127.0.0.1:$SP/stats;csv" 2>/dev/null | awk -F, -v s="$1" '$1 == "nodes" && $2 == s { print $8 }'; }
until_state() { local i; for i in $(seq 1 300); do [ "$(state "$1")" = "$2" ] && return 0; sleep 0.1; done; return 1; }
check "HAProxy sees node A up" until_state a UP
check "HAProxy sees node B up" until_state b UP

client() {  # ID: enroll through HAProxy in a loop, keeping every certificate received
  local id=$1 i=0
  while [ ! -e stop ] && [ $i -lt 150 ]; do
    "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn "hp-$id-$i" --key-type ec:P-256 \
      --cert-out "got/$id-$i.pem" > "got/$id-$i.out" 2>&1 || true
    i=$((i + 1))
  done
}
pids=()
for id in 1 2; do client $id & pids+=($!); done
"$LG" --url "$URL" --challenge "$CHALLENGE_VALUE" --concurrency 4 --duration 10 --warmup 1 \
  --key-type ec:P-256 --pool 16 --key-cache "$T/keys" --json lg.json --label haproxy --quiet \
  > lg.out 2> lg.err &
LG_PID=$!
# kill node A once it has served under this load
for _ in $(seq 1 300); do [ "$(find got -name '*.pem' -size +0 | wc -l)" -ge 4 ] && break; sleep 0.1; done
served_a=$(served a)
node_kill a
check "node A had served requests through HAProxy before the kill ($served_a)" test "${served_a:-0}" -gt 0
check "HAProxy's health check marks the killed node A down" until_state a DOWN
check "node B is still up in HAProxy" test "$(state b)" = UP
served_b=$(served b)
# node B keeps serving through HAProxy: enrollments after A was marked down
ok_after=0
for i in 1 2 3 4 5; do
  "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn "after-$i" --key-type ec:P-256 \
    --cert-out "got/after-$i.pem" > "got/after-$i.out" 2>&1 || true
  grep -q status=SUCCESS "got/after-$i.out" && ok_after=$((ok_after + 1))
done
check "through HAProxy after the kill: 5 of 5 enrollments SUCCESS (node B)" test "$ok_after" = 5
check "HAProxy sent them to node B" test "$(served b)" -gt "$served_b"
touch stop
wait "$LG_PID" 2>/dev/null || true
wait "${pids[@]}" 2>/dev/null || true

jf() { grep -o "\"$1\":[^,}]*" lg.json | head -n1 | cut -d: -f2- | tr -d '"'; }
check "scep-loadgen wrote its report" test -s lg.json
completed=$(jf completed)
log "  scep-loadgen through HAProxy: completed ${completed:-?}, errors $(jf errors) $(grep -o '"errors_by_kind":{[^}]*}' lg.json)"
received=$(find got -name '*.pem' -size +0 | wc -l)
log "  scep_req clients received $received certificates"
missing=0
: > serials.txt
for f in got/*.pem; do
  [ -s "$f" ] || continue
  s=$(openssl x509 -in "$f" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
  echo "$s" >> serials.txt
  [ "$(pg_sql "SELECT count(*) FROM scepd_certs WHERE serial = '\\x$s'::bytea")" = 1 ] ||
    { missing=$((missing + 1)); log "not in the store: $f ($s)"; }
done
check "every certificate a client received is in the store" test "$missing" -eq 0
check "no serial was handed out twice" test "$(sort serials.txt | uniq -d | wc -l)" = 0
stored=$(pg_sql 'SELECT count(*) FROM scepd_certs')
log "  the store holds $stored certificates"
check "the store holds at least the clients' and scep-loadgen's verified enrollments" \
  test "$stored" -ge $(( received + ${completed:-0} ))
others=$(grep -L -e status=SUCCESS -e http=503 got/*.out || true)
for f in $others; do log "  $f: $(tr '\n' ' ' < "$f")"; done
check "no scep_req client got anything but SUCCESS or HTTP 503" test -z "$others"
stop_haproxy
node_stop b
finish
