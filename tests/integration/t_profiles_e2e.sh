#!/usr/bin/env bash
# Profile rules that need a real client end to end: on the default paths (/scep and the NDES
# /cgi-bin/pkiclient.exe) the profile is chosen by the keyUsage the CSR asks for (NDES
# Signature / Encryption / GeneralPurpose templates); a shorter validity asked for with a
# privateKeyUsagePeriod in the CSR; and micromdm's scepclient against profile URLs with a
# static and a one-time challenge (also the manual-approval example: PENDING, approve, then
# the certificate, ~30 s because scepclient sleeps before asking again), and a reused one.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd scepclient

init_state
P=$STATE/profiles
# The examples all allow a shorter validity; this one does not. A one-time profile with
# automatic approval for scepclient (the shipped onetime example, manual, answers PENDING).
printf 'allow_shorter = no\nvalidity_days = 365\n' > "$P/fixed.conf"
printf 'challenge = onetime\n' > "$P/otp.conf"
# micromdm's scepclient 2.1.0 encrypts with single DES, which a profile must allow (off by
# default, docs/profiles.md): the profiles it enrolls under below do, as legacy.conf does.
for p in vpn otp manual; do printf 'allow_des = yes\n' >> "$P/$p.conf"; done
check "example profiles: signature/encryption template classes, no allow_shorter = no" \
  sh -c "grep -q '^template = signature' '$P/signature.conf' && grep -q '^template = encryption' '$P/encryption.conf' && ! grep -q '^allow_shorter *= *no' '$SRC'/conf/profiles/*.conf"
start_scepd
cd "$T"
B="http://127.0.0.1:$PORT"
C=$CHALLENGE_VALUE

# req NAME URL ARGS...: scep_req enroll, output in $T/NAME.out, certificate in $T/NAME.pem.
req() {
  local n=$1 u=$2; shift 2
  "$REQ" enroll --url "$u" --challenge "$C" --cn "$n" --cert-out "$T/$n.pem" "$@" \
    > "$T/$n.out" 2>"$T/$n.err" || true
}
status_is() { grep -q "status=$2 failinfo=$3 " "$T/$1.out" || { echo "  got: $(grep status= "$T/$1.out" || cat "$T/$1.err")" >&2; return 1; }; }
serial_of() { sed -n 's/.*serial=\([0-9A-Fa-f]*\).*/\1/p' "$T/$1.out" | tr 'A-F' 'a-f' | head -n1; }
# issued_under NAME PROFILE: the ISSUED audit event of NAME's certificate names PROFILE.
issued_under() {
  local s; s=$(serial_of "$1")
  [ -n "$s" ] && grep '"event":1000' "$STATE/audit.log" | grep "\"serial\":\"$s\"" | grep -q "\"profile\":\"$2\""
}
# ku_is NAME TEXT: the issued keyUsage, as openssl prints it, is exactly TEXT.
ku_is() {
  local got; got=$(openssl x509 -in "$T/$1.pem" -noout -ext keyUsage 2>/dev/null | tail -n +2 | sed 's/^ *//')
  [ "$got" = "$2" ] || { echo "  got keyUsage: '$got'" >&2; return 1; }
}
eku_has() { openssl x509 -in "$T/$1.pem" -noout -ext extendedKeyUsage 2>/dev/null | grep -q "$2"; }
days_left() { echo $(( ($(date -d "$(openssl x509 -in "$T/$1.pem" -noout -enddate | cut -d= -f2)" +%s) - $(date +%s)) / 86400 )); }
# days_about NAME N: notAfter is now + N days within a day.
days_about() { local d; d=$(days_left "$1"); [ "$d" -ge $(($2 - 1)) ] && [ "$d" -le "$2" ] || { echo "  got $d days" >&2; return 1; }; }
no_pup() { ! openssl x509 -in "$T/$1.pem" -noout -text | grep -qi "Private Key Usage Period"; }
# in_profile TXID PROFILE: the latest audit event of the transaction names PROFILE.
in_profile() { audit_of "$1" | grep -q "\"profile\":\"$2\"" || { log "  not under profile $2: $(audit_of "$1")"; return 1; }; }
# ok_cert NAME: SUCCESS, and the certificate verifies against the served chain.
ok_cert() { status_is "$1" SUCCESS - && verify_cert "$T/$1.pem"; }

# --- the scep_req options themselves: the CSR carries what was asked ---
"$REQ" enroll --ca-dir "$STATE" --challenge "$C" --cn emit --key-usage digitalSignature \
  --valid-days 30 --emit "$T/emit.der" >/dev/null 2>&1 || true
check "scep_req --key-usage/--valid-days: request emitted" test -s "$T/emit.der"
check "scep_req: unknown --key-usage name is a usage error (exit 1)" \
  sh -c "'$REQ' enroll --url '$B/scep' --key-usage frobnicate >/dev/null 2>&1; test \$? -eq 1"
check "scep_req: non-numeric --valid-days is a usage error (exit 1)" \
  sh -c "'$REQ' enroll --url '$B/scep' --valid-days 3x >/dev/null 2>&1; test \$? -eq 1"

# --- default path: profile chosen by the requested keyUsage (NDES templates) ---
for path in scep cgi-bin/pkiclient.exe; do
  u="$B/$path"; t=${path//\//_}; t=${t//./_}
  req "$t-sig" "$u" --key-usage digitalSignature
  check "/$path keyUsage digitalSignature only: SUCCESS, certificate verifies" ok_cert "$t-sig"
  check_audit "/$path signature-only CSR: audit ISSUED under profile signature" issued_under "$t-sig" signature
  check "/$path signature-only CSR: keyUsage of the signature profile" \
    ku_is "$t-sig" "Digital Signature, Non Repudiation"
  check "/$path signature-only CSR: EKU emailProtection of the signature profile" \
    eku_has "$t-sig" "E-mail Protection"

  req "$t-enc" "$u" --key-usage keyEncipherment
  check "/$path keyUsage keyEncipherment only: SUCCESS, certificate verifies" ok_cert "$t-enc"
  check_audit "/$path encryption-only CSR: audit ISSUED under profile encryption" issued_under "$t-enc" encryption
  check "/$path encryption-only CSR: keyUsage of the encryption profile" \
    ku_is "$t-enc" "Key Encipherment, Data Encipherment"

  req "$t-both" "$u" --key-usage digitalSignature,keyEncipherment
  check "/$path keyUsage signature + encryption: SUCCESS, certificate verifies" ok_cert "$t-both"
  check_audit "/$path both: audit ISSUED under profile default" issued_under "$t-both" default
  check "/$path both: keyUsage of the default profile" \
    ku_is "$t-both" "Digital Signature, Key Encipherment"
  check "/$path both: EKU clientAuth only" ext_is "$T/$t-both.pem" extendedKeyUsage "TLS Web Client Authentication"
  check "/$path both: basicConstraints critical CA:FALSE" ext_is "$T/$t-both.pem" basicConstraints "CA:FALSE" critical
done
req nonrep "$B/scep" --key-usage nonRepudiation
check_audit "/scep keyUsage nonRepudiation only: under profile signature" issued_under nonrep signature
check "/scep keyUsage nonRepudiation only: certificate verifies" ok_cert nonrep
req dataenc "$B/scep" --key-usage dataEncipherment
check_audit "/scep keyUsage dataEncipherment only: under profile encryption" issued_under dataenc encryption
check "/scep keyUsage dataEncipherment only: certificate verifies" ok_cert dataenc
req noku "$B/scep"
check_audit "/scep no keyUsage: under profile default" issued_under noku default
check "/scep no keyUsage: certificate verifies" ok_cert noku
# The encryption profile is RSA only: an EC key asking for encryption alone is refused there.
req ec-enc "$B/scep" --key-usage keyEncipherment --key-type ec:P-256
check "/scep EC key, keyEncipherment only: FAILURE badAlg, key_not_allowed (encryption profile is RSA only)" \
  expect_failure ec-enc 2000 key_not_allowed badAlg
# The refusal's audit event names the profile the keyUsage selected.
check_audit "audit: key_not_allowed / profile_key_type under profile encryption" \
  sh -c "grep '\"txid\":\"$(txid_of ec-enc)\"' '$STATE/audit.log' | grep '\"diag\":\"key_not_allowed\"' | grep '\"profile\":\"encryption\"' | grep -q '\"detail\":\"profile_key_type\"'"
# A named profile path wins over the requested keyUsage.
req named "$B/scep/default" --key-usage keyEncipherment
check_audit "/scep/default with keyEncipherment only: stays under profile default" issued_under named default
check "/scep/default with keyEncipherment only: certificate verifies" ok_cert named
check "/scep/default: keyUsage of the default profile, not the CSR's" \
  ku_is named "Digital Signature, Key Encipherment"

# --- shorter validity (privateKeyUsagePeriod notAfter in the extensionRequest) ---
req short "$B/scep/default" --valid-days 30
check "allow_shorter: --valid-days 30 SUCCESS, certificate verifies" ok_cert short
check "allow_shorter: notAfter = now + 30 days (±1)" days_about short 30
check "allow_shorter: no privateKeyUsagePeriod in the certificate" no_pup short
req short-def "$B/scep" --valid-days 30 --key-usage digitalSignature
check "default path, signature profile: SUCCESS, certificate verifies" ok_cert short-def
check "default path, signature profile: notAfter = now + 30 days (±1)" days_about short-def 30
check "default path: no privateKeyUsagePeriod in the certificate" no_pup short-def
req longer "$B/scep/default" --valid-days 1000
check "asking for more than the profile maximum: SUCCESS, certificate verifies" ok_cert longer
check "asking for more: still the profile's 365 days" days_about longer 365
check "asking for more: no privateKeyUsagePeriod in the certificate" no_pup longer
req past "$B/scep/default" --valid-days -1
check "allow_shorter, end in the past: FAILURE badTime, profile_validity_request" \
  expect_failure past 2000 profile_validity_request badTime
check_audit "audit: the refusal names profile default" in_profile "$(txid_of past)" default
req fixed "$B/scep/fixed" --valid-days 30
check "allow_shorter = no: --valid-days 30 ignored, SUCCESS, certificate verifies" ok_cert fixed
check "allow_shorter = no: notAfter = the profile's 365 days" days_about fixed 365
check "allow_shorter = no: no privateKeyUsagePeriod in the certificate" no_pup fixed

# --- micromdm scepclient against profile URLs (need_cmd above: no silent skip) ---
# sc NAME URL CHALLENGE: scepclient in its own directory (it writes ./self.pem); the audit
# position before it in MARK[NAME], to find its one transaction afterwards (sc_txid).
declare -A MARK
sc() {
  MARK[$1]=$(audit_mark)
  mkdir -p "$T/sc-$1" && (cd "$T/sc-$1" && timeout 120 scepclient -server-url "$2" -challenge "$3" \
    -private-key dev.key -certificate dev.pem -cn "$1" -organization fleet >"$T/sc-$1.log" 2>&1) || true
}
sc_serial() { openssl x509 -in "$T/sc-$1/dev.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f'; }
sc_issued_under() {
  local s; s=$(sc_serial "$1") && [ -n "$s" ] \
    && grep '"event":1000' "$STATE/audit.log" | grep "\"serial\":\"$s\"" | grep -q "\"profile\":\"$2\""
}
sc_ok() {
  test -s "$T/sc-$1/dev.pem" && ! grep -q failInfo "$T/sc-$1.log" \
    && verify_cert "$T/sc-$1/dev.pem" \
    || { tail -n 5 "$T/sc-$1.log" >&2; return 1; }
}
sc_txid() { new_txid "${MARK[$1]}"; }
# sc_refused NAME EVENT DIAG PROFILE: scepclient's one transaction was refused with EVENT,
# DIAG and badRequest (it prints failInfo badRequest), under PROFILE.
sc_refused() {
  local tx
  tx=$(sc_txid "$1") && expect_refusal "$tx" "$2" "$3" badRequest && in_profile "$tx" "$4"
}

sc vpn-dev "$B/scep/vpn" "$C"
check "scepclient /scep/vpn (static challenge): certificate verifies" sc_ok vpn-dev
check_audit "scepclient /scep/vpn: audit ISSUED under profile vpn" sc_issued_under vpn-dev vpn
check "scepclient /scep/vpn: EKU ipsecIKE" \
  sh -c "openssl x509 -in '$T/sc-vpn-dev/dev.pem' -noout -ext extendedKeyUsage | grep -qi 'ipsec Internet Key Exchange'"
check "scepclient /scep/vpn: 730-day profile validity" \
  sh -c "d=\$(( (\$(date -d \"\$(openssl x509 -in '$T/sc-vpn-dev/dev.pem' -noout -enddate | cut -d= -f2)\" +%s) - \$(date +%s)) / 86400 )); [ \$d -ge 729 ] && [ \$d -le 730 ]"
sc vpn-bad "$B/scep/vpn" wrong-password
check "scepclient /scep/vpn wrong static challenge: failInfo badRequest" \
  grep -q "failInfo: badRequest" "$T/sc-vpn-bad.log"
check "scepclient wrong static challenge: no certificate" test ! -s "$T/sc-vpn-bad/dev.pem"
check "scepclient wrong static challenge: its transaction audited bad_challenge under vpn" \
  sc_refused vpn-bad 2000 bad_challenge vpn

V=$("$BUILD/scepctl" -c "$CONF" challenge new --profile otp --ttl 10m)
sc otp-1 "$B/scep/otp" "$V"
check "scepclient /scep/otp (one-time challenge): certificate verifies" sc_ok otp-1
check_audit "scepclient /scep/otp: audit ISSUED under profile otp" sc_issued_under otp-1 otp
sc otp-2 "$B/scep/otp" "$V"
check "scepclient reusing the one-time challenge: failInfo badRequest" \
  grep -q "failInfo: badRequest" "$T/sc-otp-2.log"
check "scepclient reuse: no certificate written" test ! -s "$T/sc-otp-2/dev.pem"
check "scepclient reuse: its transaction audited 2002 challenge_used under profile otp" \
  sc_refused otp-2 2002 challenge_used otp

# The shipped one-time example, manual: scepclient gets PENDING, sleeps 30 s and asks again;
# approved meanwhile, it gets the certificate. The challenge is then spent.
VM=$("$BUILD/scepctl" -c "$CONF" challenge new --profile manual --ttl 10m)
MARK[man-1]=$(audit_mark)
mkdir -p "$T/sc-man-1"
(cd "$T/sc-man-1" && timeout 120 scepclient -server-url "$B/scep/manual" -challenge "$VM" \
  -private-key dev.key -certificate dev.pem -cn man-1 >"$T/sc-man-1.log" 2>&1) &
SCPID=$!
TXM=""
for _ in $(seq 1 100); do
  TXM=$("$BUILD/scepctl" -c "$CONF" request list | awk '/CN=man-1/ && /pending/ {print $1}' | head -n1)
  [ -n "$TXM" ] && break
  sleep 0.1
done
check "scepclient /scep/manual: request pending" test -n "$TXM"
APPROVED=$("$BUILD/scepctl" -c "$CONF" request approve "$TXM" 2>&1 | sed -n 's/.*approved serial=\([0-9a-fA-F]*\).*/\1/p' | tr 'A-F' 'a-f')
wait "$SCPID" || true
check "scepclient /scep/manual: PENDING then the certificate after approval" sc_ok man-1
check "scepclient /scep/manual: it is the approved certificate" test "$(sc_serial man-1)" = "$APPROVED"
sc man-2 "$B/scep/manual" "$VM"
check "scepclient reusing the manual profile's one-time challenge: failInfo badRequest" \
  grep -q "failInfo: badRequest" "$T/sc-man-2.log"
check "scepclient manual reuse: its transaction audited 2002 challenge_used under profile manual" \
  sc_refused man-2 2002 challenge_used manual
finish
