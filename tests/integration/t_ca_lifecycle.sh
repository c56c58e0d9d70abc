#!/usr/bin/env bash
# CA lifecycle with scepctl ca/ra: an intermediate CA (key generated in the SoftHSM token)
# signed by an external root made here with the openssl command, imported with its chain,
# served in GetCACert and issuing certificates that verify up to that root; then export,
# RA renewal, rollover (stage-next -> GetNextCACert and GetCACaps -> activate-next).
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req
CTL=$BUILD/scepctl

init_state
# The delegated OCSP responder certificate was issued by the CA init_state made; this test
# replaces that CA, so it runs without /ocsp.
sed -i '/^cert = ocsp.pem/d' "$CONF"
ctl() { "$CTL" -c "$CONF" "$@"; }

# --- external root, by openssl alone ---
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/root.key" -out "$T/root.pem" -days 3650 \
  -subj "/CN=External Root/O=Example" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null

# --- intermediate: new key label in the token, CSR out ---
sed -i 's/^ca_key_label = .*/ca_key_label = ica/' "$CONF"
check "init-intermediate writes a CSR" ctl ca init-intermediate --subject "/CN=scepd Issuing CA/O=Example" \
  --key rsa:3072 --csr-out "$T/ica.csr"
check "CSR is self-consistent and asks for CA:TRUE" sh -c \
  "openssl req -in '$T/ica.csr' -noout -verify 2>&1 | grep -q 'verify OK' && openssl req -in '$T/ica.csr' -noout -text | grep -q 'CA:TRUE'"
check "init-intermediate refuses an existing key label" sh -c \
  "! '$CTL' -c '$CONF' ca init-intermediate --subject /CN=x --csr-out '$T/x.csr' 2>/dev/null"

cat > "$T/ica.ext" <<EOF
basicConstraints=critical,CA:TRUE,pathlen:0
keyUsage=critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid:always
EOF
openssl x509 -req -in "$T/ica.csr" -CA "$T/root.pem" -CAkey "$T/root.key" -CAcreateserial \
  -days 1825 -extfile "$T/ica.ext" -out "$T/ica.pem" 2>/dev/null

# --- import: refusals first ---
check "import refuses a certificate for another key" sh -c \
  "! '$CTL' -c '$CONF' ca import --cert '$T/root.pem' --force 2>/dev/null"
check "import refuses a chain that did not issue the certificate" sh -c \
  "! '$CTL' -c '$CONF' ca import --cert '$T/ica.pem' --chain '$STATE/ca.pem' --force 2>/dev/null"
check "import refuses to replace ca.pem without --force" sh -c \
  "! '$CTL' -c '$CONF' ca import --cert '$T/ica.pem' --chain '$T/root.pem' 2>/dev/null"
check "import installs the intermediate and its chain" ctl ca import --cert "$T/ica.pem" \
  --chain "$T/root.pem" --force
check "ca.pem is now the intermediate" cmp <(openssl x509 -in "$STATE/ca.pem" -outform DER) \
  <(openssl x509 -in "$T/ica.pem" -outform DER)
check "ca-chain.pem holds the root" cmp <(openssl x509 -in "$STATE/ca-chain.pem" -outform DER) \
  <(openssl x509 -in "$T/root.pem" -outform DER)
check "ra renew issues the RA certificate from the intermediate" ctl ra renew --days 200
check "RA certificate verifies up to the root" sh -c \
  "openssl verify -CAfile '$T/root.pem' -untrusted '$STATE/ca.pem' '$STATE/ra.pem' >/dev/null"
check "RA certificate: digitalSignature + keyEncipherment" sh -c \
  "openssl x509 -in '$STATE/ra.pem' -noout -ext keyUsage | grep -q 'Digital Signature, Key Encipherment'"

# --- serve and enroll ---
start_scepd
curl -s -o "$T/cacert.p7" "$URL?operation=GetCACert"
openssl pkcs7 -inform DER -in "$T/cacert.p7" -print_certs -out "$T/cacert.pem" 2>/dev/null
check "GetCACert carries RA, intermediate and root" test "$(grep -c 'BEGIN CERTIFICATE' "$T/cacert.pem")" = 3
check "GetCACert includes the intermediate" grep -q "subject=CN = scepd Issuing CA" "$T/cacert.pem"
check "GetCACert includes the root" grep -q "subject=CN = External Root" "$T/cacert.pem"
check "GetCACaps does not offer GetNextCACert before staging" sh -c \
  "! curl -s '$URL?operation=GetCACaps' | grep -q GetNextCACert"
"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn ica-dev-1 --cert-out "$T/dev1.pem" >"$T/dev1.out" 2>&1 || true
check "PKCSReq under the intermediate: SUCCESS" grep -q "status=SUCCESS" "$T/dev1.out"
check "issued certificate verifies with -CAfile root -untrusted intermediate" sh -c \
  "openssl verify -CAfile '$T/root.pem' -untrusted '$T/ica.pem' '$T/dev1.pem' >/dev/null"
check "issued certificate verifies against the served chain (root anchor, intermediate, RA)" \
  verify_cert "$T/dev1.pem"
check "the served chain's only anchor is the external root" \
  cmp <(openssl x509 -in "$T/served-chain/anchors.pem" -outform DER) <(openssl x509 -in "$T/root.pem" -outform DER)
check "issued certificate does not verify against the root alone" sh -c \
  "! openssl verify -CAfile '$T/root.pem' '$T/dev1.pem' >/dev/null 2>&1"
stop_scepd

# --- export for the MDM trusted-root profile ---
check "export --der is the intermediate" cmp <(ctl ca export --der) <(openssl x509 -in "$T/ica.pem" -outform DER)
check "export --root --pem --out writes the root" ctl ca export --root --pem --out "$T/exp-root.pem"
check "exported root is the external root" cmp <(openssl x509 -in "$T/exp-root.pem" -outform DER) \
  <(openssl x509 -in "$T/root.pem" -outform DER)
check "export --all --pem has CA and chain" test "$(ctl ca export --all --pem | grep -c 'BEGIN CERTIFICATE')" = 2
check "export without a format is a usage error" sh -c "'$CTL' -c '$CONF' ca export 2>/dev/null; test \$? = 2"

# --- rollover ---
check "stage-next creates the next CA in the token" ctl ca stage-next --subject "/CN=scepd CA 2/O=Example" --key ec:P-384
check "stage-next refuses a second staging" sh -c "! '$CTL' -c '$CONF' ca stage-next 2>/dev/null"
check "next-ca.pem: the next CA first, then its RA" sh -c \
  "openssl x509 -in '$STATE/next-ca.pem' -noout -subject | grep -q 'scepd CA 2' && test \$(grep -c 'BEGIN CERT' '$STATE/next-ca.pem') = 2"
start_scepd
check "GetCACaps offers GetNextCACert while staged" sh -c "curl -s '$URL?operation=GetCACaps' | grep -q GetNextCACert"
ct=$(curl -s -o "$T/next.cms" -w '%{content_type}' "$URL?operation=GetNextCACert")
check "GetNextCACert is application/x-x509-next-ca-cert" test "$ct" = "application/x-x509-next-ca-cert"
check "GetNextCACert is signed by the current CA" sh -c \
  "openssl cms -verify -inform DER -in '$T/next.cms' -CAfile '$T/root.pem' -certfile '$T/ica.pem' -out '$T/next.p7' -binary 2>/dev/null"
check "GetNextCACert content carries the next CA" sh -c \
  "openssl pkcs7 -inform DER -in '$T/next.p7' -print_certs | grep -q 'subject=CN = scepd CA 2'"
stop_scepd
check "activate-next switches" ctl ca activate-next
check "ca.pem is the new CA, previous kept" sh -c \
  "openssl x509 -in '$STATE/ca.pem' -noout -subject | grep -q 'scepd CA 2' && test -s '$STATE/ca.pem.prev' && test ! -e '$STATE/next-ca.pem'"
start_scepd
check "after activation GetCACaps no longer offers GetNextCACert" sh -c \
  "! curl -s '$URL?operation=GetCACaps' | grep -q GetNextCACert"
"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn ica-dev-2 --cert-out "$T/dev2.pem" >"$T/dev2.out" 2>&1 || true
check "PKCSReq after rollover: SUCCESS" grep -q "status=SUCCESS" "$T/dev2.out"
check "new certificate verifies against the new CA" sh -c \
  "openssl verify -CAfile '$STATE/ca.pem' '$T/dev2.pem' >/dev/null"
check "new certificate verifies against the chain served after the rollover" verify_cert "$T/dev2.pem"
check "new certificate signed with ecdsa-with-SHA384" sh -c \
  "openssl x509 -in '$T/dev2.pem' -noout -text | grep -q 'ecdsa-with-SHA384'"
stop_scepd

# --- init-root refuses to replace a CA ---
check "init-root refuses when ca.pem exists" sh -c \
  "! '$CTL' -c '$CONF' ca init-root --subject /CN=again 2>/dev/null"
finish
