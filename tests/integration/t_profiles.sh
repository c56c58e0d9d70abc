#!/usr/bin/env bash
# Certificate profiles end to end: every example profile of conf/profiles served at
# /scep/<name>, and test profiles for each rule (key, hash, subject, SAN, validity, renewal,
# policies). Issued extensions are checked with openssl, refusals by failInfo and audit diag.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req

init_state
P=$STATE/profiles
check "init-state copied every example profile" \
  test "$(ls "$P" | wc -l)" -eq "$(ls "$SRC"/conf/profiles/*.conf | wc -l)"
cat > "$P/strict.conf" <<'CONF'
key_types = ec
ec_curves = P-256
hashes = sha384
subject_max_length = 12
subject_chars = printable
policies = 1.2.3.4.5, 2.16.840.1.101.2.1.11.5
san_types = dns
CONF
cat > "$P/long-cap.conf" <<'CONF'
validity_days = 20000
beyond_ca = cap
CONF
cat > "$P/long-refuse.conf" <<'CONF'
validity_days = 20000
beyond_ca = refuse
CONF
cat > "$P/short.conf" <<'CONF'
validity_days = 7
renewal_threshold_percent = 20
CONF
cat > "$P/rsa3k.conf" <<'CONF'
key_types = rsa
rsa_min_bits = 3072
CONF
start_scepd
cd "$T"
B="http://127.0.0.1:$PORT/scep"
C=$CHALLENGE_VALUE

# req NAME PROFILE ARGS...: scep_req enroll at /scep/PROFILE ("-": the default path).
req() {
  local n=$1 p=$2; shift 2
  local u="$B/$p"; [ "$p" = - ] && u=$B
  "$REQ" enroll --url "$u" --challenge "$C" "$@" > "$T/$n.out" 2>"$T/$n.err" || true
}
status_is() { grep -q "status=$2 failinfo=$3 " "$T/$1.out" || { echo "  got: $(grep status= "$T/$1.out" || cat "$T/$1.err")" >&2; return 1; }; }
serial_of() { sed -n 's/.*serial=\([0-9A-Fa-f]*\).*/\1/p' "$T/$1.out" | tr 'A-F' 'a-f' | head -n1; }
# refused NAME DIAG FAILINFO [DETAIL]: NAME's CertRep is FAILURE FAILINFO with DIAG's text,
# its transaction's audit event is 2000 with DIAG and FAILINFO (and the profile rule DETAIL).
refused() {
  expect_failure "$1" 2000 "$2" "$3" || return 1
  [ -z "${4:-}" ] || expect_detail "$1" "$4"
}
ext() { openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null | tail -n +2; }
days_left() { echo $(( ($(date -d "$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)" +%s) - $(date +%s)) / 86400 )); }

# --- routing ---
for p in default signature encryption wifi vpn smartcard email manual; do
  check "GetCACaps at /scep/$p" test "$(curl -s -o /dev/null -w '%{http_code}' "$B/$p?operation=GetCACaps")" = 200
done
check "unknown profile /scep/nope: 404" test "$(curl -s -o /dev/null -w '%{http_code}' "$B/nope?operation=GetCACaps")" = 404
req defpath - --cn def-1 --cert-out def-1.pem
check "default path: SUCCESS under profile default" status_is defpath SUCCESS -
check "default path: certificate verifies against the served chain" verify_cert def-1.pem
check "default path: store record names profile default" \
  sh -c "'$BUILD/scepctl' -c '$CONF' cert show $(serial_of defpath) | grep -q '^profile: default'"

# --- smart card logon ---
req sc smartcard --cn alice --san upn:alice@corp.example --cert-out sc.pem
check "smartcard + UPN: SUCCESS" status_is sc SUCCESS -
check "smartcard: certificate verifies against the served chain" verify_cert sc.pem
check "smartcard: EKU smart card logon + clientAuth" \
  ext_is sc.pem extendedKeyUsage "Microsoft Smartcard Login, TLS Web Client Authentication"
check "smartcard: the SAN is the UPN alone" ext_is sc.pem subjectAltName "othername: UPN::alice@corp.example"
check "smartcard: the UPN otherName's value" test "$(upn_of sc.pem)" = alice@corp.example
check_audit "smartcard: audit ISSUED with profile smartcard" \
  sh -c "grep -F '\"txid\":\"$(txid_of sc)\"' '$STATE/audit.log' | grep '\"event\":1000' | grep -q '\"profile\":\"smartcard\"'"
check "smartcard: audit ISSUED for that transaction and serial" expect_event sc 1000
req sc-noupn smartcard --cn bob --san email:bob@corp.example
check "smartcard without UPN: FAILURE badRequest, profile_upn_required" refused sc-noupn profile_upn_required badRequest
req sc-ec smartcard --cn carol --san upn:carol@corp.example --key-type ec:P-256
check "smartcard (key_types rsa) with an EC key: FAILURE badAlg, key_not_allowed / profile_key_type" \
  refused sc-ec key_not_allowed badAlg profile_key_type

# --- EKUs, key usage, SAN types of the examples ---
req vpn vpn --cn vpn-1 --san dns:vpn-1.example.com --cert-out vpn.pem
check "vpn: SUCCESS" status_is vpn SUCCESS -
check "vpn: certificate verifies against the served chain" verify_cert vpn.pem
check "vpn: EKU ipsecIKE" sh -c "openssl x509 -in vpn.pem -noout -ext extendedKeyUsage | grep -q 'ipsec Internet Key Exchange\|1.3.6.1.5.5.7.3.17'"
check "vpn: validity 730 days" test "$(days_left vpn.pem)" -ge 729
req email email --cn mail-1 --san email:m1@example.com --cert-out email.pem
check "email: SUCCESS, EKU emailProtection" sh -c "grep -q 'status=SUCCESS' email.out && openssl x509 -in email.pem -noout -ext extendedKeyUsage | grep -q 'E-mail Protection'"
check "email: certificate verifies against the served chain" verify_cert email.pem
req email-nomail email --cn mail-2 --san upn:m2@corp.example
check "email without the required email SAN: FAILURE badRequest, san_not_allowed / profile_san_type" \
  refused email-nomail san_not_allowed badRequest profile_san_type
req wifi wifi --cn wifi-1 --san dns:wifi-1.example.com --san uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21-42 --cert-out wifi.pem
check "wifi: SUCCESS" status_is wifi SUCCESS -
check "wifi: certificate verifies against the served chain" verify_cert wifi.pem
check "wifi: the DNS name and the Intune SID URI pass through, nothing else" \
  ext_is wifi.pem subjectAltName "DNS:wifi-1.example.com, URI:tag:microsoft.com,2022-09-14:sid:S-1-5-21-42"
req wifi-email wifi --cn wifi-2 --san email:w2@example.com
check "wifi (san_types dns, upn, uri): email SAN refused, san_not_allowed / profile_san_type" \
  refused wifi-email san_not_allowed badRequest profile_san_type
req sig signature --cn sig-1 --cert-out sig.pem
check "signature: SUCCESS" status_is sig SUCCESS -
check "signature: certificate verifies against the served chain" verify_cert sig.pem
check "signature: keyUsage critical digitalSignature, nonRepudiation" \
  ext_is sig.pem keyUsage "Digital Signature, Non Repudiation" critical
req enc encryption --cn enc-1 --cert-out enc.pem
check "encryption: SUCCESS" status_is enc SUCCESS -
check "encryption: certificate verifies against the served chain" verify_cert enc.pem
check "encryption: keyUsage critical keyEncipherment, dataEncipherment only" \
  ext_is enc.pem keyUsage "Key Encipherment, Data Encipherment" critical
check "issued: basicConstraints critical CA:FALSE" ext_is enc.pem basicConstraints "CA:FALSE" critical
req enc-ec encryption --cn enc-2 --key-type ec:P-256
check "encryption with an EC key: FAILURE badAlg, key_not_allowed / profile_key_type" \
  refused enc-ec key_not_allowed badAlg profile_key_type

# --- key, hash, subject rules ---
req rsa2k rsa3k --cn r2
check "rsa_min_bits 3072, RSA-2048: FAILURE badAlg, key_not_allowed / profile_key_size" \
  refused rsa2k key_not_allowed badAlg profile_key_size
req rsa3 rsa3k --cn r3 --key-type rsa:3072 --cert-out rsa3.pem
check "rsa_min_bits 3072, RSA-3072: SUCCESS" status_is rsa3 SUCCESS -
check "RSA-3072: certificate verifies against the served chain" verify_cert rsa3.pem
req st-ok strict --cn strict-1 --key-type ec:P-256 --md sha384 --san dns:s1.example.com --cert-out strict.pem
check "strict: EC P-256 + SHA-384 + short printable CN: SUCCESS" status_is st-ok SUCCESS -
check "strict: certificate verifies against the served chain" verify_cert strict.pem
check "strict: certificatePolicies from the profile" \
  sh -c "openssl x509 -in strict.pem -noout -ext certificatePolicies | grep -q 1.2.3.4.5 && openssl x509 -in strict.pem -noout -ext certificatePolicies | grep -q 2.16.840.1.101.2.1.11.5"
req st-rsa strict --cn strict-2 --md sha384
check "strict: RSA key: FAILURE badAlg, key_not_allowed / profile_key_type" \
  refused st-rsa key_not_allowed badAlg profile_key_type
req st-curve strict --cn strict-3 --key-type ec:P-384 --md sha384
check "strict: P-384: FAILURE badAlg, key_not_allowed / profile_key_curve" \
  refused st-curve key_not_allowed badAlg profile_key_curve
req st-hash strict --cn strict-4 --key-type ec:P-256 --md sha256
check "strict: SHA-256 CSR: FAILURE badAlg, csr_alg_not_allowed / profile_hash" \
  refused st-hash csr_alg_not_allowed badAlg profile_hash
req st-len strict --cn a-much-too-long-name --key-type ec:P-256 --md sha384
check "strict: CN over 12 bytes: FAILURE badRequest, profile_subject_length" \
  refused st-len profile_subject_length badRequest
req st-chars strict --cn 'a_b@c' --key-type ec:P-256 --md sha384
check "strict: CN outside PrintableString: FAILURE badRequest, profile_subject_chars" \
  refused st-chars profile_subject_chars badRequest
req st-san strict --cn s5 --key-type ec:P-256 --md sha384 --san email:x@example.com
check "strict: email SAN (san_types dns): FAILURE badRequest, san_not_allowed / profile_san_type" \
  refused st-san san_not_allowed badRequest profile_san_type

# --- validity ---
ca_end=$(date -d "$(openssl x509 -in "$STATE/ca.pem" -noout -enddate | cut -d= -f2)" +%s)
req cap long-cap --cn cap-1 --cert-out cap.pem
check "validity past the CA, beyond_ca = cap: SUCCESS" status_is cap SUCCESS -
check "capped: certificate verifies against the served chain" verify_cert cap.pem
check "capped: notAfter = the CA's notAfter" \
  test "$(date -d "$(openssl x509 -in cap.pem -noout -enddate | cut -d= -f2)" +%s)" = "$ca_end"
check_audit "audit: ISSUED says validity capped at CA notAfter" \
  sh -c "grep '\"event\":1000' '$STATE/audit.log' | grep '\"profile\":\"long-cap\"' | grep -q 'validity capped at CA notAfter'"
req refuse long-refuse --cn ref-1
check "validity past the CA, beyond_ca = refuse: FAILURE badTime, profile_beyond_ca" \
  refused refuse profile_beyond_ca badTime
req short short --cn short-1 --cert-out short.pem --key short.key
check "validity_days 7: certificate verifies against the served chain" verify_cert short.pem
check "validity_days 7: a 7-day certificate" sh -c "grep -q status=SUCCESS short.out && [ $(days_left short.pem 2>/dev/null || echo 0) -ge 6 ] && [ $(days_left short.pem 2>/dev/null || echo 99) -le 7 ]"

# --- renewal threshold ---
"$REQ" enroll --url "$B/short" --renew-with short.pem --renew-key short.key --cn short-1 > early.out 2>&1 || true
check "renewal right after issuance (threshold 20 %): FAILURE badRequest, profile_renewal_early" \
  refused early profile_renewal_early badRequest
req d2 - --cn def-2 --cert-out def-2.pem --key def-2.key
check "def-2: certificate verifies against the served chain" verify_cert def-2.pem
"$REQ" enroll --url "$B" --renew-with def-2.pem --renew-key def-2.key --cn def-2 --cert-out renew-def.pem > renew-def.out 2>&1 || true
check "renewal under default (threshold 100 %): SUCCESS" status_is renew-def SUCCESS -
check "renewal under default: certificate verifies against the served chain" verify_cert renew-def.pem
check "renewal under default: audit RENEWED (1001) for that transaction and serial" expect_event renew-def 1001

finish
