#!/usr/bin/env bash
# Single DES (RFC 8894 7.5: MUST NOT) is a profile's allow_des, off by default: on the state
# `make run` creates (scripts/init-state.sh) the default profile refuses a single-DES request
# with FAILURE badAlg (cipher_not_allowed, detail profile_des) and the shipped legacy profile
# (/scep/legacy) issues it, with the reply in DES3. Both with a request scep_req emitted and
# re-enveloped in DES-CBC (tests/tools/pkimsg.py), and with micromdm's scepclient 2.1.0,
# which always encrypts with DES-CBC. The retired global allow_des_requests: "= yes" (what
# make run used to write) stops scepd at start with what replaced it; "= no" still loads.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd scepclient python3 curl openssl
need "OpenSSL's legacy provider (DES-CBC)" \
  openssl enc -des-cbc -provider legacy -provider default -K 0001020304050607 -iv 0001020304050607 -in /dev/null

init_state
check "make run's configuration has no global single-DES switch" \
  sh -c "! grep -q 'allow_des' '$CONF'"
check "make run's profiles: legacy allows single DES, default says no, no other allows it" \
  sh -c "grep -q '^allow_des = yes' '$STATE/profiles/legacy.conf' && grep -q '^allow_des = no' '$STATE/profiles/default.conf' && test \"\$(grep -l '^allow_des *= *yes' '$STATE'/profiles/*.conf)\" = '$STATE/profiles/legacy.conf'"
start_scepd
cd "$T"
C=$CHALLENGE_VALUE
"$REQ" cacert --url "$URL" --out "$T/cadir" > cacert.out
check "GetCACert: the CA and the RA (recipient) certificates" test -s cadir/ca.pem -a -s cadir/ra.pem
pkimsg() { python3 "$SRC/tests/tools/pkimsg.py" "$@"; }

# des_req NAME URL: a PKCSReq whose pkcsPKIEnvelope is the CSR encrypted with DES-CBC to the
# RA, otherwise as scep_req emits it (signer, attributes), POSTed to URL; scep_req decodes
# the CertRep against the emitted state into NAME.out.
des_req() {
  local n=$1 u=$2
  "$REQ" enroll --ca-dir "$T/cadir" --challenge "$C" --cn "$n" --key "$T/$n.key" \
    --emit "$T/$n.der" > "$T/$n.emit" 2>&1
  cat > "$T/$n.cnf" <<CNF
[req]
distinguished_name = dn
attributes = attrs
prompt = no
[dn]
CN = $n
[attrs]
challengePassword = $C
CNF
  openssl req -new -key "$T/$n.key" -config "$T/$n.cnf" -outform DER -out "$T/$n.csr"
  openssl cms -encrypt -binary -des-cbc -provider legacy -provider default -in "$T/$n.csr" \
    -outform DER -out "$T/$n.env" "$T/cadir/ra.pem"
  pkimsg resign "$T/$n.der" "$T/$n-des.der" "$T/$n.env" "$T/$n.key" sha256
  curl -s -o "$T/$n.rep" -H 'Content-Type: application/x-pki-message' \
    --data-binary @"$T/$n-des.der" "$u?operation=PKIOperation" > /dev/null
  "$REQ" enroll --decode-reply "$T/$n.rep" --state "$T/$n.der.state" > "$T/$n.out" 2>&1 || true
}

# --- scep_req: default path and default profile refuse, legacy issues ---
des_req des-root "$URL"
check "single-DES request envelope is DES-CBC" \
  sh -c "openssl cms -cmsout -print -inform DER -in '$T/des-root.env' | grep -q 'algorithm: des-cbc'"
check "single DES on /scep (default profile): FAILURE badAlg, cipher_not_allowed" \
  expect_failure des-root 2000 cipher_not_allowed badAlg
check "single DES on /scep: audit detail profile_des" expect_detail des-root profile_des
check_audit "single DES on /scep: audit names profile default" \
  sh -c "grep -F '\"txid\":\"$(txid_of des-root)\"' '$STATE/audit.log' | tail -n1 | grep -q '\"profile\":\"default\"'"
des_req des-default "$URL/default"
check "single DES on /scep/default: FAILURE badAlg, cipher_not_allowed" \
  expect_failure des-default 2000 cipher_not_allowed badAlg
des_req des-wifi "$URL/wifi"
check "single DES on /scep/wifi (another shipped profile): FAILURE badAlg, cipher_not_allowed" \
  expect_failure des-wifi 2000 cipher_not_allowed badAlg
des_req des-legacy "$URL/legacy"
check "single DES on /scep/legacy: SUCCESS" grep -q '^status=SUCCESS' des-legacy.out
check "single DES on /scep/legacy: audit ISSUED with that serial" expect_event des-legacy 1000
check "single DES on /scep/legacy: audit detail says the reply is DES3" \
  expect_detail des-legacy "single-DES request, DES3 reply"
check "single DES on /scep/legacy: the CertRep's envelope is DES3 (1.2.840.113549.3.7), never DES" \
  test "$(pkimsg env-alg des-legacy.rep)" = 1.2.840.113549.3.7
# Control: the same request in AES on the default path is issued, so the refusal above is
# the cipher's.
"$REQ" enroll --url "$URL" --challenge "$C" --cn aes-root > aes-root.out 2>&1 || true
check "control: the same request in AES-128 on /scep: SUCCESS" grep -q '^status=SUCCESS' aes-root.out

# --- micromdm scepclient 2.1.0 (always DES-CBC) ---
# sc NAME URL: scepclient in its own directory (it keeps its transient signer in ./self.pem).
sc() {
  mkdir -p "$T/sc-$1" && (cd "$T/sc-$1" && timeout 120 scepclient -server-url "$2" \
    -challenge "$C" -private-key dev.key -certificate dev.pem -cn "$1" >"$T/sc-$1.log" 2>&1) || true
}
m=$(audit_mark)
sc sc-root "$URL"
check "scepclient on /scep: failInfo badAlg" grep -q "failInfo: badAlg" "$T/sc-sc-root.log"
check "scepclient on /scep: no certificate" test ! -s "$T/sc-sc-root/dev.pem"
check "scepclient on /scep: its transaction audited 2000 cipher_not_allowed badAlg" \
  expect_refusal "$(new_txid "$m")" 2000 cipher_not_allowed badAlg
m=$(audit_mark)
sc sc-legacy "$URL/legacy"
check "scepclient on /scep/legacy: certificate verifies" verify_cert "$T/sc-sc-legacy/dev.pem"
tx=$(new_txid "$m") || true
check_audit "scepclient on /scep/legacy: audit ISSUED under profile legacy, DES3 reply" \
  sh -c "grep -F '\"txid\":\"$tx\"' '$STATE/audit.log' | grep '\"event\":1000,' | grep '\"profile\":\"legacy\"' | grep -q 'single-DES request, DES3 reply'"
stop_scepd

# --- the retired global switch ---
sed -i 's/^allow_sha1_messages = yes$/&\nallow_des_requests = yes/' "$CONF"
check "allow_des_requests = yes written into [issue]" grep -q '^allow_des_requests = yes$' "$CONF"
rc=0; "$BUILD/scepd" -c "$CONF" > "$T/retired.log" 2>&1 || rc=$?
check "allow_des_requests = yes: scepd refuses to start" test "$rc" -ne 0
check "allow_des_requests = yes: the message names the key and its replacement" \
  grep -q "'allow_des_requests = yes' is no longer supported.*allow_des = yes in the profile" "$T/retired.log"
sed -i 's/^allow_des_requests = yes$/allow_des_requests = no/' "$CONF"
start_scepd
check "allow_des_requests = no (old examples): scepd starts" curl -fsS "http://127.0.0.1:$PORT/healthz" -o /dev/null
des_req des-after "$URL"
check "allow_des_requests = no: single DES on /scep still FAILURE badAlg" \
  expect_failure des-after 2000 cipher_not_allowed badAlg
finish
