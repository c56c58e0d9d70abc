#!/usr/bin/env bash
# micromdm's scepclient (Debian package scep) enrolls against scepd with SoftHSM keys: a
# PKCSReq, then a RenewalReq with the certificate it got; both certificates verify against
# the CA with openssl and are in the store. It encrypts with single DES, so it enrolls at
# /scep/legacy, the profile that allows it (tests/integration/t_legacy_des.sh: elsewhere badAlg).
. "$(dirname "$0")/lib.sh"
need_cmd scepclient

init_state
start_scepd
LEGACY=$URL/legacy

mkdir -p "$T/device" && cd "$T/device"
m=$(audit_mark)
scepclient -server-url "$LEGACY" -challenge "$CHALLENGE_VALUE" -private-key dev.key \
  -certificate dev.pem -cn device-001 -organization fleet >"$T/c1.log" 2>&1 || { cat "$T/c1.log" >&2; fail "scepclient PKCSReq"; }
check "PKCSReq: certificate written" test -s dev.pem
check "PKCSReq: certificate verifies against the served chain" verify_cert dev.pem
serial1=$(openssl x509 -in dev.pem -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
check "PKCSReq: subject is the CSR's" sh -c "openssl x509 -in dev.pem -noout -subject | grep -q 'CN *= *device-001'"
check "PKCSReq: basicConstraints critical CA:FALSE" ext_is dev.pem basicConstraints "CA:FALSE" critical
check "PKCSReq: EKU clientAuth only" ext_is dev.pem extendedKeyUsage "TLS Web Client Authentication"
check "PKCSReq: 16-byte serial" test ${#serial1} -eq 32
check "PKCSReq: certificate is in the store" sh -c "'$BUILD/scepctl' -c '$CONF' cert list | grep -q '^$serial1 '"
tx1=$(new_txid "$m") || true
check_audit "PKCSReq: audit ISSUED (1000) for scepclient's one transaction, with the serial" \
  sh -c "[ -n '$tx1' ] && grep -F '\"txid\":\"$tx1\"' '$STATE/audit.log' | grep '\"event\":1000,' | grep -q '\"serial\":\"$serial1\"'"

# Renewal: scepclient signs with the certificate it already holds.
cp dev.pem dev1.pem
scepclient -server-url "$LEGACY" -private-key dev.key -certificate dev.pem -cn device-001 \
  -organization fleet >"$T/c2.log" 2>&1 || { cat "$T/c2.log" >&2; fail "scepclient renewal"; }
serial2=$(openssl x509 -in dev.pem -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
check "renewal: a new certificate was issued" test "$serial1" != "$serial2"
check "renewal: new certificate verifies against the served chain" verify_cert dev.pem
check "renewal: new certificate is in the store" sh -c "'$BUILD/scepctl' -c '$CONF' cert list | grep -q '^$serial2 '"
check_audit "renewal: audit RENEWED (1001) with the new serial" \
  sh -c "grep '\"event\":1001,' '$STATE/audit.log' | grep -q '\"serial\":\"$serial2\"'"
check "store holds exactly 2 certificates" test "$("$BUILD/scepctl" -c "$CONF" cert count)" = 2

# Wrong challenge from a real client: FAILURE badRequest, nothing issued. (scepclient keeps
# its transient signer in ./self.pem, so each device gets its own directory.)
mkdir -p "$T/intruder" && cd "$T/intruder"
m=$(audit_mark)
scepclient -server-url "$LEGACY" -challenge wrong -private-key bad.key -certificate bad.pem \
  -cn intruder >"$T/c3.log" 2>&1 || true
check "wrong challenge: FAILURE badRequest" grep -q "failInfo: badRequest" "$T/c3.log"
check "wrong challenge: no certificate written" test ! -s bad.pem
check "wrong challenge: scepclient's transaction audited 2000 bad_challenge badRequest" \
  expect_refusal "$(new_txid "$m")" 2000 bad_challenge badRequest
check "store still holds 2 certificates" test "$("$BUILD/scepctl" -c "$CONF" cert count)" = 2
finish
