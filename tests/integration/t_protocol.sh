#!/usr/bin/env bash
# Every SCEP failure path and protocol variant through the project's own client against a live
# scepd (SoftHSM keys): exact pkiStatus / failInfo in the CertRep, and the audit diagnostic.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req

init_state
start_scepd
cd "$T"

# req NAME ARGS...: runs scep_req enroll, output in $T/NAME.out
req() { local n=$1; shift; "$REQ" enroll --url "$URL" "$@" > "$T/$n.out" 2>"$T/$n.err" || true; }
status_is() { grep -q "status=$2 failinfo=$3 " "$T/$1.out" || { echo "  got: $(grep status= "$T/$1.out" || cat "$T/$1.err")" >&2; return 1; }; }
serial_of() { sed -n 's/.*serial=\([0-9A-Fa-f]*\).*/\1/p' "$T/$1.out" | tr 'A-F' 'a-f' | head -n1; }
C=$CHALLENGE_VALUE

# --- successful variants ---
req ok-post --challenge "$C" --cn ok-post --cert-out ok-post.pem --key ok-post.key
check "POST PKCSReq: SUCCESS" status_is ok-post SUCCESS -
check "POST PKCSReq: certificate verifies against the served chain" verify_cert ok-post.pem
req ok-get --challenge "$C" --cn ok-get --get --cert-out ok-get.pem
check "GET PKCSReq (percent-encoded base64): SUCCESS" status_is ok-get SUCCESS -
req ok-des3 --challenge "$C" --cn ok-des3 --cipher des3 --md sha512 --cert-out ok-des3.pem
check "DES3 + SHA-512: SUCCESS" status_is ok-des3 SUCCESS -
req ok-aes256 --challenge "$C" --cn ok-aes256 --cipher aes256 --cert-out ok-aes256.pem
check "AES-256: SUCCESS" status_is ok-aes256 SUCCESS -
req ok-oaep --challenge "$C" --cn ok-oaep --oaep --cert-out ok-oaep.pem
check "RSA-OAEP key transport: SUCCESS" status_is ok-oaep SUCCESS -
req ok-ec --challenge "$C" --cn ok-ec --key-type ec:P-256 --cert-out ok-ec.pem
check "EC P-256 device key: SUCCESS" status_is ok-ec SUCCESS -
check "EC certificate: keyUsage critical, digitalSignature only" \
  ext_is ok-ec.pem keyUsage "Digital Signature" critical
req ok-ec384 --challenge "$C" --cn ok-ec384 --key-type ec:P-384 --cert-out ok-ec384.pem
check "EC P-384 device key: SUCCESS" status_is ok-ec384 SUCCESS -
req ok-rsa4k --challenge "$C" --cn ok-rsa4k --key-type rsa:4096 --cert-out ok-rsa4k.pem
check "RSA-4096 device key: SUCCESS" status_is ok-rsa4k SUCCESS -
for n in ok-get ok-des3 ok-aes256 ok-oaep ok-ec ok-ec384 ok-rsa4k; do
  check "$n: certificate verifies against the served chain" verify_cert "$n.pem"
  check "$n: audit ISSUED (1000) for its transaction and serial" expect_event "$n" 1000
done
req ok-san --challenge "$C" --cn ok-san --san dns:dev.example.com --san email:dev@example.com \
  --san uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1 --san upn:dev@corp.example --cert-out ok-san.pem
check "SANs (DNS, email, URI, UPN): SUCCESS" status_is ok-san SUCCESS -
check "SANs: certificate verifies against the served chain" verify_cert ok-san.pem
check "issued SAN: exactly the DNS name, email, Intune SID URI and UPN value asked for" \
  ext_is ok-san.pem subjectAltName "DNS:dev.example.com, email:dev@example.com, URI:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1, othername: UPN::dev@corp.example"
# The UPN is an otherName of type 1.3.6.1.4.1.311.20.2.3 holding a UTF8String: read the value
# from the DER, not from openssl's rendering.
check "issued SAN: the UPN otherName's UTF8String is dev@corp.example" \
  test "$(upn_of ok-san.pem)" = dev@corp.example
txt=$(openssl x509 -in ok-post.pem -noout -text)
check "issued: basicConstraints critical CA:FALSE" ext_is ok-post.pem basicConstraints "CA:FALSE" critical
check "issued: keyUsage critical digitalSignature, keyEncipherment (RSA)" \
  ext_is ok-post.pem keyUsage "Digital Signature, Key Encipherment" critical
check "issued: EKU clientAuth only" ext_is ok-post.pem extendedKeyUsage "TLS Web Client Authentication"
check "issued: SKI present" grep -q "Subject Key Identifier" <<<"$txt"
check "issued: AKI is the CA's SKI" test "$(openssl x509 -in ok-post.pem -noout -ext authorityKeyIdentifier | tail -n1 | tr -d ' ' | sed 's/^keyid://')" = "$(openssl x509 -in "$STATE/ca.pem" -noout -ext subjectKeyIdentifier | tail -n1 | tr -d ' ')"
check "issued: X.509 v3" grep -q "Version: 3" <<<"$txt"
ca_end=$(date -d "$(openssl x509 -in "$STATE/ca.pem" -noout -enddate | cut -d= -f2)" +%s)
cert_end=$(date -d "$(openssl x509 -in ok-post.pem -noout -enddate | cut -d= -f2)" +%s)
check "issued: notAfter within the CA's validity" test "$cert_end" -le "$ca_end"
check "audit: issuance event 1000 for its transaction and serial" expect_event ok-post 1000

# --- idempotence by transactionID ---
serial=$(serial_of ok-post)
req again --challenge "$C" --cn ok-post --key ok-post.key --cert-out again.pem
check "same transactionID + same CSR: SUCCESS" status_is again SUCCESS -
check "same transactionID + same CSR: the same certificate" test "$(serial_of again)" = "$serial"
check "same transactionID + same CSR: the certificate verifies" verify_cert again.pem
check "audit: replay event 1002 for that transaction and serial" expect_event again 1002
txid=$(txid_of ok-post)
req conflict --challenge "$C" --cn other-device --txid "$txid"
check "same transactionID + another CSR: FAILURE badRequest, txid_conflict" \
  expect_failure conflict 2000 txid_conflict badRequest

# --- failures ---
req badchal --challenge wrong --cn x1
check "wrong challenge: FAILURE badRequest, bad_challenge" expect_failure badchal 2000 bad_challenge badRequest
req nochal --no-challenge --cn x2
check "no challenge: FAILURE badRequest, bad_challenge" expect_failure nochal 2000 bad_challenge badRequest
req badsig --challenge "$C" --cn x3 --bad-signature
check "corrupted signature: FAILURE badMessageCheck, bad_signature" \
  expect_failure badsig 2000 bad_signature badMessageCheck
req wrongkey --challenge "$C" --cn x4 --wrong-key
check "signed with a key not matching the signer cert: FAILURE badMessageCheck, bad_signature" \
  expect_failure wrongkey 2000 bad_signature badMessageCheck
req unknown --challenge "$C" --cn x5 --msgtype 99
check "unknown messageType 99: FAILURE badRequest, unknown_message_type" \
  expect_failure unknown 2000 unknown_message_type badRequest
req catrue --challenge "$C" --cn x6 --ca-true
check "CSR asks for CA:TRUE: FAILURE badRequest, ca_requested" expect_failure catrue 2000 ca_requested badRequest
req ipsan --challenge "$C" --cn x7 --san ip:10.0.0.1
check "IP SAN (not allowed): FAILURE badRequest, san_not_allowed" \
  expect_failure ipsan 2000 san_not_allowed badRequest
req sha1 --challenge "$C" --cn x8 --md sha1
check "SHA-1 signed CSR (profile hashes exclude SHA-1): FAILURE badAlg, csr_alg_not_allowed" \
  expect_failure sha1 2000 csr_alg_not_allowed badAlg
req rsa1k --challenge "$C" --cn x10 --key-type rsa:1024
check "RSA-1024 device key: FAILURE badAlg, key_not_allowed" expect_failure rsa1k 2000 key_not_allowed badAlg
req getcrl0 --challenge "$C" --cn x9 --msgtype 22
check "GetCRL whose content is a CSR, not IssuerAndSerialNumber: FAILURE badMessageCheck, bad_query" \
  expect_failure getcrl0 2000 bad_query badMessageCheck
check "bad_query answers with the text of a decryption failure (no padding oracle)" \
  test "$(diag_text bad_query)" = "$(diag_text decrypt_failed)"

# --- renewal ---
req renew --renew-with ok-post.pem --renew-key ok-post.key --cn ok-post --key renewed.key --cert-out renewed.pem
check "RenewalReq signed by an issued certificate: SUCCESS" status_is renew SUCCESS -
check "RenewalReq: a new certificate" test "$(serial_of renew)" != "$serial"
check "RenewalReq: the renewed certificate verifies" verify_cert renewed.pem
check "audit: renewal event 1001 for that transaction and serial" expect_event renew 1001
openssl req -x509 -newkey rsa:2048 -nodes -keyout foreign.key -subj "/CN=foreign" -days 2 -out foreign.pem 2>/dev/null
req renew-foreign --renew-with foreign.pem --renew-key foreign.key --cn foreign
check "RenewalReq signed by a foreign certificate: FAILURE badRequest, renewal_signer" \
  expect_failure renew-foreign 2000 renewal_signer badRequest
req pkcs-renew --challenge "$C" --cn ok-post --pkcsreq-signed-by renewed.pem --renew-key renewed.key --cert-out pkcs-renew.pem
check "PKCSReq signed by an issued certificate (macOS/sscep renewal): SUCCESS" status_is pkcs-renew SUCCESS -
check "PKCSReq renewal: the certificate verifies" verify_cert pkcs-renew.pem

# --- CertPoll and GetCert ---
req poll --challenge "$C" --cn polled --poll --cert-out polled.pem
check "CertPoll after PKCSReq: SUCCESS with the certificate" sh -c "grep -c 'status=SUCCESS' '$T/poll.out' | grep -qx 2"
check "CertPoll: the certificate verifies" verify_cert polled.pem
check "audit: CertPoll answered (1003) for that transaction and serial" expect_event poll 1003
"$REQ" getcert --url "$URL" --serial "$serial" --key ok-post.key --cert ok-post.pem --cert-out got.pem > getcert.out 2>&1 || true
check "GetCert by issuer+serial: SUCCESS" grep -q "status=SUCCESS" getcert.out
check "GetCert: the certificate asked for" bash -c "cmp <(openssl x509 -in got.pem -outform DER) <(openssl x509 -in ok-post.pem -outform DER)"
check "GetCert: the certificate verifies" verify_cert got.pem
"$REQ" getcert --url "$URL" --serial 40000000000000000000000000000001 --key ok-post.key --cert ok-post.pem > getcert2.out 2>&1 || true
check "GetCert for an unknown serial: FAILURE badCertId, unknown_certificate" \
  expect_failure getcert2.out 2000 unknown_certificate badCertId

# Every certificate the clients got is in the store, and nothing else.
n=$("$BUILD/scepctl" -c "$CONF" cert count)
issuances_are() { test "$1" -eq "$(grep -c '"event":100[01],' "$STATE/audit.log")"; }
check_audit "store count matches the issuances ($n)" issuances_are "$n"
finish
