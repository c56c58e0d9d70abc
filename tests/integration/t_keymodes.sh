#!/usr/bin/env bash
# Key and CA variants: software keys (PEM files, [keys] mode = file) with the CA acting as RA
# (GetCACert answers the CA alone, DER), and an EC P-384 CA in the SoftHSM token (RA RSA).
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd scepclient

# --- file keys, no separate RA ---
KEYS=file init_state
sed -i '/^ra_cert/d; /^ra_key_file/d' "$CONF"
check "file mode: CA key is a PEM file, no token" sh -c "test -s '$STATE/ca.key' && test ! -d '$STATE/tokens'"
check "file mode: CA key file is private (0600)" test "$(stat -c %a "$STATE/ca.key")" = 600
start_scepd
ct=$(curl -s -o "$T/ca.der" -w '%{content_type}' "$URL?operation=GetCACert")
check "CA alone: GetCACert is application/x-x509-ca-cert" test "$ct" = "application/x-x509-ca-cert"
check "CA alone: GetCACert body is the CA's DER" \
  cmp "$T/ca.der" <(openssl x509 -in "$STATE/ca.pem" -outform DER)
"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn file-1 --cert-out "$T/f1.pem" > "$T/f1.out" 2>&1 || true
check "file mode: PKCSReq SUCCESS" grep -q "status=SUCCESS" "$T/f1.out"
check "file mode: certificate verifies against the served CA" verify_cert "$T/f1.pem"
check "file mode: audit ISSUED for that transaction and serial" expect_event "$T/f1.out" 1000
# scepclient encrypts with single DES: the legacy profile (conf/profiles/legacy.conf).
mkdir -p "$T/dev" && (cd "$T/dev" && scepclient -server-url "$URL/legacy" -challenge "$CHALLENGE_VALUE" \
  -private-key d.key -certificate d.pem -cn file-scepclient >"$T/sc.log" 2>&1 || true)
check "file mode, CA as RA: micromdm scepclient enrolls (certificate verifies)" verify_cert "$T/dev/d.pem"
stop_scepd
rm -rf "$STATE"

# --- EC P-384 CA in the token ---
CA_KEY=ec:P-384 init_state
check "EC CA: CA key is EC P-384" sh -c "openssl x509 -in '$STATE/ca.pem' -noout -text | grep -q 'NIST CURVE: P-384'"
start_scepd
"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn ec-ca-1 --cert-out "$T/e1.pem" > "$T/e1.out" 2>&1 || true
check "EC CA: PKCSReq SUCCESS" grep -q "status=SUCCESS" "$T/e1.out"
check "EC CA: certificate verifies against the served chain" verify_cert "$T/e1.pem"
check "EC CA: signed with ecdsa-with-SHA384" sh -c "openssl x509 -in '$T/e1.pem' -noout -text | grep -q 'Signature Algorithm: ecdsa-with-SHA384'"
finish
