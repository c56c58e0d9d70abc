#!/usr/bin/env bash
# RFC 8894 section 3.4: a degenerate certificates-only SignedData omits the content. The RA+CA
# GetCACert answer of a live scepd is checked in DER and by openssl's own CMS printer.
. "$(dirname "$0")/lib.sh"

init_state
start_scepd
cd "$T"

curl -fsS -o cacert.der -D cacert.hdr "$URL?operation=GetCACert"
check "GetCACert: RA + CA chain answered as application/x-x509-ca-ra-cert" \
  grep -qi '^content-type: application/x-x509-ca-ra-cert' cacert.hdr
openssl cms -inform DER -in cacert.der -cmsout -print > cacert.txt
check "openssl cms: eContentType id-data" grep -q 'eContentType: pkcs7-data' cacert.txt
check "openssl cms: eContent absent" grep -q 'eContent: <ABSENT>' cacert.txt
check "openssl cms: no signerInfos" grep -q 'signerInfos:$' cacert.txt
# In DER: SEQUENCE { OID id-data } directly followed by the certificates [0].
hex=$(od -An -v -tx1 cacert.der | tr -d ' \n')
check "DER: encapContentInfo is { id-data } with nothing after the OID" \
  grep -q '300b06092a864886f70d010701a0' <<<"$hex"
check "DER: no empty eContent OCTET STRING" \
  bash -c '! grep -q "06092a864886f70d010701a0020400" <<<"$1"' _ "$hex"
openssl pkcs7 -inform DER -in cacert.der -print_certs -out chain.pem
check "both certificates are in it (RA first, then CA)" \
  test "$(grep -c 'BEGIN CERTIFICATE' chain.pem)" -eq 2
finish
