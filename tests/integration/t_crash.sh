#!/usr/bin/env bash
# Invariant 2: a certificate that reached a client is durably stored. scepd is killed with
# SIGKILL while clients enroll; after a restart, every certificate any client received must be
# in the store, serials are unique, and the server issues again.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req

init_state
start_scepd
cd "$T"
mkdir -p got

client() {  # id: enroll in a loop until the server goes away
  local id=$1 i=0
  while [ $i -lt 400 ]; do
    "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn "crash-$id-$i" --key-type ec:P-256 \
      --cert-out "got/$id-$i.pem" >/dev/null 2>&1 || [ -s "got/$id-$i.pem" ] || return 0
    i=$((i + 1))
  done
}
for id in 1 2 3 4; do client $id & done
sleep 1.5
kill -KILL "$SCEPD_PID"
wait_for=$SCEPD_PID
SCEPD_PID=""
wait 2>/dev/null || true
while kill -0 "$wait_for" 2>/dev/null; do sleep 0.05; done

received=$(find got -name '*.pem' -size +0 | wc -l)
log "clients received $received certificates before the kill"
check "clients received certificates before the crash" test "$received" -gt 0

start_scepd
missing=0
for f in got/*.pem; do
  [ -s "$f" ] || continue
  s=$(openssl x509 -in "$f" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
  "$BUILD/scepctl" -c "$CONF" cert show "$s" >/dev/null 2>&1 || { missing=$((missing + 1)); log "not in store: $f ($s)"; }
done
check "every received certificate is in the store after the crash" test "$missing" -eq 0
check "every received certificate verifies against the served chain" \
  verify_cert $(find got -name '*.pem' -size +0)
stored=$("$BUILD/scepctl" -c "$CONF" cert count)
check "store holds at least what clients received ($stored >= $received)" test "$stored" -ge "$received"
dups=$("$BUILD/scepctl" -c "$CONF" cert list | awk '{print $1}' | sort | uniq -d | wc -l)
check "no serial appears twice" test "$dups" -eq 0
"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn after-crash --cert-out after.pem > after.out 2>&1 || true
check "scepd issues again after the restart" grep -q "status=SUCCESS" after.out
check "the certificate issued after the restart verifies" verify_cert after.pem
finish
