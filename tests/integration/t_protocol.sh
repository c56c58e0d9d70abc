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
check "POST PKCSReq: certificate verifies" sh -c "openssl verify -CAfile '$STATE/ca.pem' ok-post.pem >/dev/null"
req ok-get --challenge "$C" --cn ok-get --get --cert-out ok-get.pem
check "GET PKCSReq (percent-encoded base64): SUCCESS" status_is ok-get SUCCESS -
req ok-des3 --challenge "$C" --cn ok-des3 --cipher des3 --md sha512
check "DES3 + SHA-512: SUCCESS" status_is ok-des3 SUCCESS -
req ok-aes256 --challenge "$C" --cn ok-aes256 --cipher aes256
check "AES-256: SUCCESS" status_is ok-aes256 SUCCESS -
req ok-oaep --challenge "$C" --cn ok-oaep --oaep
check "RSA-OAEP key transport: SUCCESS" status_is ok-oaep SUCCESS -
req ok-ec --challenge "$C" --cn ok-ec --key-type ec:P-256 --cert-out ok-ec.pem
check "EC P-256 device key: SUCCESS" status_is ok-ec SUCCESS -
check "EC certificate: keyUsage digitalSignature only" \
  sh -c "openssl x509 -in ok-ec.pem -noout -ext keyUsage | grep -q 'Digital Signature\$'"
req ok-ec384 --challenge "$C" --cn ok-ec384 --key-type ec:P-384
check "EC P-384 device key: SUCCESS" status_is ok-ec384 SUCCESS -
req ok-rsa4k --challenge "$C" --cn ok-rsa4k --key-type rsa:4096
check "RSA-4096 device key: SUCCESS" status_is ok-rsa4k SUCCESS -
req ok-san --challenge "$C" --cn ok-san --san dns:dev.example.com --san email:dev@example.com \
  --san uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1 --san upn:dev@corp.example --cert-out ok-san.pem
check "SANs (DNS, email, URI, UPN): SUCCESS" status_is ok-san SUCCESS -
san=$(openssl x509 -in ok-san.pem -noout -ext subjectAltName 2>/dev/null)
check "issued SAN has the DNS name" grep -q "DNS:dev.example.com" <<<"$san"
check "issued SAN has the email" grep -q "email:dev@example.com" <<<"$san"
check "issued SAN has the Intune SID URI" grep -q "URI:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1" <<<"$san"
check "issued SAN has the UPN" grep -q "UPN" <<<"$san"
txt=$(openssl x509 -in ok-post.pem -noout -text)
check "issued: basicConstraints critical CA:FALSE" grep -A1 -q "Basic Constraints: critical" <<<"$txt"
check "issued: keyUsage critical digitalSignature, keyEncipherment (RSA)" grep -A1 "Key Usage: critical" <<<"$txt" -q
check "issued: EKU clientAuth only" sh -c "openssl x509 -in ok-post.pem -noout -ext extendedKeyUsage | tail -n1 | grep -qx ' *TLS Web Client Authentication'"
check "issued: SKI present" grep -q "Subject Key Identifier" <<<"$txt"
check "issued: AKI is the CA's SKI" test "$(openssl x509 -in ok-post.pem -noout -ext authorityKeyIdentifier | tail -n1 | tr -d ' ' | sed 's/^keyid://')" = "$(openssl x509 -in "$STATE/ca.pem" -noout -ext subjectKeyIdentifier | tail -n1 | tr -d ' ')"
check "issued: X.509 v3" grep -q "Version: 3" <<<"$txt"
ca_end=$(date -d "$(openssl x509 -in "$STATE/ca.pem" -noout -enddate | cut -d= -f2)" +%s)
cert_end=$(date -d "$(openssl x509 -in ok-post.pem -noout -enddate | cut -d= -f2)" +%s)
check "issued: notAfter within the CA's validity" test "$cert_end" -le "$ca_end"
check "audit: issuance event 1000" audit_has '"event":1000,"name":"ISSUED"'

# --- idempotence by transactionID ---
serial=$(serial_of ok-post)
req again --challenge "$C" --cn ok-post --key ok-post.key
check "same transactionID + same CSR: SUCCESS" status_is again SUCCESS -
check "same transactionID + same CSR: the same certificate" test "$(serial_of again)" = "$serial"
check "audit: replay event 1002" audit_has '"event":1002'
txid=$(sed -n 's/^txid=//p' "$T/ok-post.out")
req conflict --challenge "$C" --cn other-device --txid "$txid"
check "same transactionID + another CSR: FAILURE badRequest" status_is conflict FAILURE badRequest
check "audit: txid_conflict" audit_has '"diag":"txid_conflict"'

# --- failures ---
req badchal --challenge wrong --cn x1
check "wrong challenge: FAILURE badRequest" status_is badchal FAILURE badRequest
check "audit: bad_challenge" audit_has '"diag":"bad_challenge"'
req nochal --no-challenge --cn x2
check "no challenge: FAILURE badRequest" status_is nochal FAILURE badRequest
req badsig --challenge "$C" --cn x3 --bad-signature
check "corrupted signature: FAILURE badMessageCheck" status_is badsig FAILURE badMessageCheck
check "audit: bad_signature" audit_has '"diag":"bad_signature"'
req wrongkey --challenge "$C" --cn x4 --wrong-key
check "signed with a key not matching the signer cert: FAILURE badMessageCheck" status_is wrongkey FAILURE badMessageCheck
req unknown --challenge "$C" --cn x5 --msgtype 99
check "unknown messageType 99: FAILURE badRequest" status_is unknown FAILURE badRequest
check "audit: unknown_message_type" audit_has '"diag":"unknown_message_type"'
req catrue --challenge "$C" --cn x6 --ca-true
check "CSR asks for CA:TRUE: FAILURE badRequest" status_is catrue FAILURE badRequest
check "audit: ca_requested" audit_has '"diag":"ca_requested"'
req ipsan --challenge "$C" --cn x7 --san ip:10.0.0.1
check "IP SAN (not allowed): FAILURE badRequest" status_is ipsan FAILURE badRequest
check "audit: san_not_allowed" audit_has '"diag":"san_not_allowed"'
req sha1 --challenge "$C" --cn x8 --md sha1
check "SHA-1 signed CSR (allow_sha1 = no): FAILURE badAlg" status_is sha1 FAILURE badAlg
check "audit: csr_alg_not_allowed" audit_has '"diag":"csr_alg_not_allowed"'
req rsa1k --challenge "$C" --cn x10 --key-type rsa:1024
check "RSA-1024 device key: FAILURE badAlg" status_is rsa1k FAILURE badAlg
check "audit: key_not_allowed" audit_has '"diag":"key_not_allowed"'
req getcrl0 --challenge "$C" --cn x9 --msgtype 22
check "GetCRL whose content is a CSR, not IssuerAndSerialNumber: FAILURE badMessageCheck" \
  status_is getcrl0 FAILURE badMessageCheck
check "audit: bad_query (answered like a decryption failure: no padding oracle)" \
  audit_has '"diag":"bad_query"'

# --- renewal ---
req renew --renew-with ok-post.pem --renew-key ok-post.key --cn ok-post --key renewed.key --cert-out renewed.pem
check "RenewalReq signed by an issued certificate: SUCCESS" status_is renew SUCCESS -
check "RenewalReq: a new certificate" test "$(serial_of renew)" != "$serial"
check "audit: renewal event 1001" audit_has '"event":1001'
openssl req -x509 -newkey rsa:2048 -nodes -keyout foreign.key -subj "/CN=foreign" -days 2 -out foreign.pem 2>/dev/null
req renew-foreign --renew-with foreign.pem --renew-key foreign.key --cn foreign
check "RenewalReq signed by a foreign certificate: FAILURE badRequest" status_is renew-foreign FAILURE badRequest
check "audit: renewal_signer" audit_has '"diag":"renewal_signer"'
req pkcs-renew --challenge "$C" --cn ok-post --pkcsreq-signed-by renewed.pem --renew-key renewed.key
check "PKCSReq signed by an issued certificate (macOS/sscep renewal): SUCCESS" status_is pkcs-renew SUCCESS -

# --- CertPoll and GetCert ---
req poll --challenge "$C" --cn polled --poll
check "CertPoll after PKCSReq: SUCCESS with the certificate" sh -c "grep -c 'status=SUCCESS' '$T/poll.out' | grep -qx 2"
"$REQ" getcert --url "$URL" --serial "$serial" --key ok-post.key --cert ok-post.pem --cert-out got.pem > getcert.out 2>&1 || true
check "GetCert by issuer+serial: SUCCESS" grep -q "status=SUCCESS" getcert.out
check "GetCert: the certificate asked for" bash -c "cmp <(openssl x509 -in got.pem -outform DER) <(openssl x509 -in ok-post.pem -outform DER)"
"$REQ" getcert --url "$URL" --serial 40000000000000000000000000000001 --key ok-post.key --cert ok-post.pem > getcert2.out 2>&1 || true
check "GetCert for an unknown serial: FAILURE badCertId" grep -q "status=FAILURE failinfo=badCertId" getcert2.out

# Every certificate the clients got is in the store, and nothing else.
n=$("$BUILD/scepctl" -c "$CONF" cert count)
check "store count matches the issuances ($n)" test "$n" -eq "$(grep -c '"event":100[01],' "$STATE/audit.log")"
finish
