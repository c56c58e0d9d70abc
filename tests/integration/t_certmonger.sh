#!/usr/bin/env bash
# certmonger's scep-submit (an independent SCEP implementation) against scepd: GetCACaps,
# GetCACert, and PKIOperation with a pkiMessage built by the project's own client code; the
# tool verifies scepd's CertRep signature itself (and refuses it against a foreign CA).
. "$(dirname "$0")/lib.sh"
SUBMIT=/usr/lib/certmonger/scep-submit
need "certmonger's scep-submit" test -x "$SUBMIT"
REQ=$BUILD/tests/scep_req

init_state
start_scepd
cd "$T"

"$SUBMIT" -u "$URL" -c > caps.txt
for cap in POSTPKIOperation SHA-256 SHA-512 AES DES3 SCEPStandard Renewal; do
  check "GetCACaps advertises $cap" grep -qx "$cap" caps.txt
done
check "GetCACaps does not advertise GetNextCACert" sh -c '! grep -q GetNextCACert caps.txt'

"$SUBMIT" -u "$URL" -C > cacerts.pem
check "GetCACert returns two certificates (RA + CA)" test "$(grep -c 'BEGIN CERTIFICATE' cacerts.pem)" -eq 2
# Split the chain and compare each certificate with the files scepctl init wrote.
awk '/BEGIN CERT/{n++} {print > ("chain" n ".pem")}' cacerts.pem
fps=$(for f in chain1.pem chain2.pem; do openssl x509 -in $f -noout -fingerprint -sha256; done | sort)
want=$(for f in "$STATE/ca.pem" "$STATE/ra.pem"; do openssl x509 -in "$f" -noout -fingerprint -sha256; done | sort)
check "GetCACert chain is exactly the RA and CA certificates" test "$fps" = "$want"
check "RA certificate: digitalSignature + keyEncipherment" \
  sh -c "openssl x509 -in '$STATE/ra.pem' -noout -ext keyUsage | grep -q 'Digital Signature, Key Encipherment'"

enroll_via_submit() {  # name cipher md
  local name=$1 cipher=$2 md=$3
  "$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn "$name" --cipher "$cipher" \
    --md "$md" --emit "$T/$name.der" >/dev/null
  base64 -w0 "$T/$name.der" > "$T/$name.b64"
  "$SUBMIT" -u "$URL" -r "$STATE/ra.pem" -I "$STATE/ca.pem" -N "$STATE/ca.pem" \
    -p "$T/$name.b64" > "$T/$name.reply" 2>"$T/$name.err"
}

for combo in "cm-aes aes128 sha256" "cm-aes256 aes256 sha512" "cm-des3 des3 sha256"; do
  set -- $combo
  if enroll_via_submit "$1" "$2" "$3"; then ok "scep-submit accepts scepd's signed CertRep ($2/$3)"
  else fail "scep-submit rejected the CertRep ($2/$3): $(head -c 300 "$T/$1.err")"; fi
  "$REQ" enroll --decode-reply "$T/$1.reply" --state "$T/$1.der.state" --cert-out "$T/$1.pem" > "$T/$1.out" || true
  check "$1: envelope decrypts to the issued certificate" grep -q "status=SUCCESS" "$T/$1.out"
  check "$1: certificate verifies against the served chain" verify_cert "$T/$1.pem"
  serial=$(openssl x509 -in "$T/$1.pem" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f')
  check "$1: certificate is in the store" sh -c "'$BUILD/scepctl' -c '$CONF' cert show $serial | grep -q 'CN *= *$1'"
done

# Against a CA it does not trust, scep-submit must refuse the same kind of reply: proof that
# it checks the signature rather than printing whatever comes back.
openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -subj "/CN=other CA" -days 2 -out other.pem 2>/dev/null
"$REQ" enroll --url "$URL" --challenge "$CHALLENGE_VALUE" --cn cm-foreign --emit "$T/f.der" >/dev/null
base64 -w0 "$T/f.der" > "$T/f.b64"
if "$SUBMIT" -v -u "$URL" -r "$STATE/ra.pem" -I other.pem -N other.pem -R other.pem -p "$T/f.b64" >"$T/f.err" 2>&1; then
  fail "scep-submit accepted a CertRep it cannot chain to its CA"; tail -5 "$T/f.err" >&2
else
  check "scep-submit refuses the CertRep with a foreign CA" grep -q "failed to verify signature" "$T/f.err"
fi
finish
