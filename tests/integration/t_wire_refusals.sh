#!/usr/bin/env bash
# The refusals that need a malformed pkiMessage, produced on the wire: each request is built
# by scep_req (--emit) and, where scep_req has no option for the defect, reshaped by a small
# DER editor below (drop the certificates, replace the signed content and re-sign it with the
# requester's key, corrupt the RSA-encrypted content key) or by openssl cms. Every refusal is
# checked as the CertRep FAILURE the client decodes (failInfo and failInfoText) and as the
# audit event of that transaction (event, diag and failinfo together). The padding-oracle
# property on the wire: a decryption failure and an undecodable CSR answer with byte-for-byte
# the same pkiStatus, failInfo and failInfoText attributes.
. "$(dirname "$0")/lib.sh"
REQ=$BUILD/tests/scep_req
need_cmd python3 curl

# Software keys (KEYS=file): the CA key is a PEM file, so the test can make certificates the
# CA signed but never issued through scepd. SHA-1 signed pkiMessages refused (the default
# of conf/scepd.conf.example; init-state allows them for old clients).
KEYS=file init_state
sed -i 's/^allow_sha1_messages = yes$/allow_sha1_messages = no/' "$CONF"
# A profile whose key usage an EC key cannot perform (key transport) but whose key types
# admit EC: the key-usage rule, not the key-type rule, refuses.
printf '[profile]\nkey_usage = keyEncipherment\nkey_types = rsa, ec\n' > "$STATE/profiles/kt.conf"
grep -q '^allow_sha1_messages = no$' "$CONF" || { log "cannot set allow_sha1_messages = no"; exit 1; }
start_scepd
cd "$T"
C=$CHALLENGE_VALUE
"$REQ" cacert --url "$URL" --out "$T/cadir" > cacert.out
check "GetCACert: the CA and the RA (recipient) certificates" test -s cadir/ca.pem -a -s cadir/ra.pem

# --- the DER editor ---
cat > pkimsg.py <<'PY'
"""Minimal DER surgery on SCEP pkiMessages (CMS SignedData) and EnvelopedData.

strip-certs IN OUT              drop SignedData.certificates (the signature stays valid)
resign IN OUT CONTENT KEY MD    replace eContent with CONTENT's bytes, fix messageDigest,
                                re-sign the signed attributes with KEY (openssl dgst -MD)
corrupt-key IN OUT              flip bytes of the first recipient's encryptedKey
flip-last IN OUT                flip the last byte (a CSR's signature)
attrs IN                        print the signed attributes of a CertRep: OID hex-of-values
"""
import hashlib, subprocess, sys

def tlv(b, i):
    tag = b[i]; i += 1
    n = b[i]; i += 1
    if n & 0x80:
        k = n & 0x7f
        n = int.from_bytes(b[i:i + k], 'big'); i += k
    return tag, i, i + n           # tag, content start, content end

def kids(b, start, end):
    out, i = [], start
    while i < end:
        tag, cs, ce = tlv(b, i)
        out.append((tag, i, cs, ce))
        i = ce
    return out

def enc(tag, content):
    n = len(content)
    if n < 0x80:
        ln = bytes([n])
    else:
        nb = n.to_bytes((n.bit_length() + 7) // 8, 'big')
        ln = bytes([0x80 | len(nb)]) + nb
    return bytes([tag]) + ln + content

def whole(b, k):                   # the full TLV bytes of a child
    return b[k[1]:k[3]]

def signed_data(b):
    _, cs, ce = tlv(b, 0)
    ci = kids(b, cs, ce)           # OID, [0]
    _, scs, sce = tlv(b, ci[1][2])
    return ci, kids(b, scs, sce)   # SignedData's children

def rewrap(b, ci, sd_children):
    sd = enc(0x30, b''.join(sd_children))
    return enc(0x30, whole(b, ci[0]) + enc(0xa0, sd))

MD_OID = bytes.fromhex('06092a864886f70d010904')

def resign(b, content, keyfile, md):
    ci, sd = signed_data(b)
    parts = [whole(b, k) for k in sd]
    # encapContentInfo: OID, [0] OCTET STRING
    ek = sd[2]
    ec = kids(b, ek[2], ek[3])
    new_encap = enc(0x30, whole(b, ec[0]) + enc(0xa0, enc(0x04, content)))
    parts[2] = new_encap
    # signerInfos: the one SignerInfo
    sis = sd[-1]
    si = kids(b, sis[2], sis[3])[0]
    f = kids(b, si[2], si[3])
    attrs_k = next(k for k in f if k[0] == 0xa0)
    attrs = []
    for a in kids(b, attrs_k[2], attrs_k[3]):
        ab = whole(b, a)
        inner = kids(b, a[2], a[3])
        if whole(b, inner[0]) == MD_OID:
            digest = hashlib.new(md, content).digest()
            ab = enc(0x30, MD_OID + enc(0x31, enc(0x04, digest)))
        attrs.append(ab)
    body = b''.join(attrs)
    tbs = enc(0x31, body)          # signed over as a SET (RFC 5652 5.4)
    sig = subprocess.run(['openssl', 'dgst', '-' + md, '-sign', keyfile, '-binary'],
                         input=tbs, capture_output=True, check=True).stdout
    new_f = []
    for k in f:
        if k is attrs_k:
            new_f.append(enc(0xa0, body))
        elif k[0] == 0x04:         # the signature value
            new_f.append(enc(0x04, sig))
        else:
            new_f.append(whole(b, k))
    new_si = enc(0x30, b''.join(new_f))
    parts[-1] = enc(0x31, new_si)
    return rewrap(b, ci, parts)

def strip_certs(b):
    ci, sd = signed_data(b)
    return rewrap(b, ci, [whole(b, k) for k in sd if k[0] != 0xa0])

def corrupt_key(b):
    _, cs, ce = tlv(b, 0)
    ci = kids(b, cs, ce)
    _, ecs, ece = tlv(b, ci[1][2])
    ed = kids(b, ecs, ece)
    ris = next(k for k in ed if k[0] == 0x31)
    ktri = kids(b, ris[2], ris[3])[0]
    ek = [k for k in kids(b, ktri[2], ktri[3]) if k[0] == 0x04][-1]
    out = bytearray(b)
    for i in range(ek[2], ek[3], 7):
        out[i] ^= 0x5a
    return bytes(out)

def attrs(b):
    ci, sd = signed_data(b)
    si = kids(b, sd[-1][2], sd[-1][3])[0]
    a0 = next(k for k in kids(b, si[2], si[3]) if k[0] == 0xa0)
    for a in kids(b, a0[2], a0[3]):
        oid, vals = kids(b, a[2], a[3])
        print(b[oid[2]:oid[3]].hex(), b[vals[2]:vals[3]].hex())

cmd, args = sys.argv[1], sys.argv[2:]
data = open(args[0], 'rb').read()
if cmd == 'attrs':
    attrs(data)
    sys.exit(0)
if cmd == 'strip-certs':
    out = strip_certs(data)
elif cmd == 'resign':
    out = resign(data, open(args[2], 'rb').read(), args[3], args[4])
elif cmd == 'corrupt-key':
    out = corrupt_key(data)
elif cmd == 'flip-last':
    out = data[:-1] + bytes([data[-1] ^ 0x01])
else:
    sys.exit('unknown command ' + cmd)
open(args[1], 'wb').write(out)
PY
pkimsg() { python3 "$T/pkimsg.py" "$@"; }

# emit NAME ARGS...: a PKCSReq from scep_req for the served CA set, key in NAME.key,
# message in NAME.der, its state (transactionID, nonce, keys) in NAME.der.state.
emit() {
  local n=$1; shift
  "$REQ" enroll --ca-dir "$T/cadir" --challenge "$C" --cn "$n" --key "$T/$n.key" \
    --emit "$T/$n.der" "$@" > "$T/$n.emit" 2>&1
}
# post NAME FILE: POSTs FILE as NAME's pkiMessage; scep_req decodes and verifies the CertRep
# against NAME's state (signature, transactionID, recipientNonce) into NAME.out.
post() {
  curl -s -o "$T/$1.rep" -w '%{http_code}' -H 'Content-Type: application/x-pki-message' \
    --data-binary @"$2" "$URL?operation=PKIOperation" > "$T/$1.http"
  "$REQ" enroll --decode-reply "$T/$1.rep" --state "$T/$1.der.state" > "$T/$1.out" 2>&1 || true
}
# csr NAME [KEY]: a PKCS#10 (DER, NAME.csr) with the challenge, for NAME's key.
csr() {
  cat > "$T/$1.cnf" <<CNF
[req]
distinguished_name = dn
attributes = attrs
prompt = no
[dn]
CN = $1
[attrs]
challengePassword = $C
CNF
  openssl req -new -key "${2:-$T/$1.key}" -config "$T/$1.cnf" -outform DER -out "$T/$1.csr"
}
# envelope IN OUT CIPHER [RECIPIENT]: an EnvelopedData of IN to the RA (or RECIPIENT).
envelope() {
  openssl cms -encrypt -binary -in "$1" -outform DER -out "$2" "-$3" "${4:-$T/cadir/ra.pem}"
}

# --- missing_attribute: a messageType that is not a number of 1 to 4 digits ---
"$REQ" enroll --url "$URL" --challenge "$C" --cn ma --msgtype 12345 > ma.out 2>&1 || true
check "messageType 12345 (malformed): FAILURE badRequest, missing_attribute" \
  expect_failure ma 2000 missing_attribute badRequest

# --- no_signer_cert: the SignedData without its certificates (signature still valid) ---
emit nsc
pkimsg strip-certs nsc.der nsc-stripped.der
post nsc nsc.der
check "control: the emitted request, unmodified, is issued" grep -q 'status=SUCCESS' nsc.out
post nsc nsc-stripped.der
check "signer certificate not included: FAILURE badRequest, no_signer_cert" \
  expect_failure nsc 2000 no_signer_cert badRequest

# --- digest_not_allowed: a SHA-1 signed pkiMessage with allow_sha1_messages = no ---
"$REQ" enroll --url "$URL" --challenge "$C" --cn dna --md sha1 > dna.out 2>&1 || true
check "SHA-1 signerInfo digest (allow_sha1_messages = no): FAILURE badAlg, digest_not_allowed" \
  expect_failure dna 2000 digest_not_allowed badAlg
check "digest_not_allowed: the audit detail names the digest" expect_detail dna SHA1

# --- no_envelope: signed content that is not an EnvelopedData (here the bare CSR) ---
emit ne
csr ne
pkimsg resign ne.der ne-bad.der ne.csr ne.key sha256
post ne ne-bad.der
check "content is a CSR, not a pkcsPKIEnvelope: FAILURE badRequest, no_envelope" \
  expect_failure ne 2000 no_envelope badRequest

# --- cipher_not_allowed: an envelope encrypted with Camellia-128-CBC ---
emit cna
csr cna
envelope cna.csr cna.env camellia-128-cbc
pkimsg resign cna.der cna-bad.der cna.env cna.key sha256
post cna cna-bad.der
check "Camellia-128-CBC envelope: FAILURE badAlg, cipher_not_allowed" \
  expect_failure cna 2000 cipher_not_allowed badAlg

# --- decrypt_failed: an envelope to another recipient; the RA's with a corrupted key ---
openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -subj "/CN=not the RA" -days 2 \
  -out other.pem 2>/dev/null
emit df
csr df
envelope df.csr df.env aes-128-cbc other.pem
pkimsg resign df.der df-bad.der df.env df.key sha256
post df df-bad.der
check "envelope for another recipient: FAILURE badMessageCheck, decrypt_failed" \
  expect_failure df 2000 decrypt_failed badMessageCheck
emit dk
csr dk
envelope dk.csr dk.env aes-128-cbc
pkimsg corrupt-key dk.env dk-corrupt.env
pkimsg resign dk.der dk-bad.der dk-corrupt.env dk.key sha256
post dk dk-bad.der
check "RA envelope with a corrupted encrypted key (PKCS#1 v1.5): FAILURE badMessageCheck, decrypt_failed" \
  expect_failure dk 2000 decrypt_failed badMessageCheck

# --- bad_csr: an envelope that decrypts to bytes that are not a PKCS#10 ---
emit bc
head -c 300 /dev/urandom > bc.junk
envelope bc.junk bc.env aes-128-cbc
pkimsg resign bc.der bc-bad.der bc.env bc.key sha256
post bc bc-bad.der
check "envelope decrypts to garbage: FAILURE badMessageCheck, bad_csr" \
  expect_failure bc 2000 bad_csr badMessageCheck

# --- no padding oracle: decryption failure and bad CSR answer identically on the wire ---
# pkiStatus 2.16.840.1.113733.1.9.3, failInfo .9.4, failInfoText 1.3.6.1.5.5.7.24.1.
wire_fail() { pkimsg attrs "$T/$1.rep" | grep -E '^(6086480186f8450109(03|04)|2b06010505071801) ' || true; }
for n in df dk bc; do wire_fail "$n" > "$n.attrs"; done
check "CertRep attributes found (pkiStatus, failInfo, failInfoText)" test "$(wc -l < bc.attrs)" = 3
check "no padding oracle: wrong recipient and bad CSR give byte-identical failure attributes" cmp df.attrs bc.attrs
check "no padding oracle: corrupted key and bad CSR give byte-identical failure attributes" cmp dk.attrs bc.attrs
check "no padding oracle: and the same as scep_req decoded (failInfo and failInfoText)" \
  test "$(reply_of df | cut -d'|' -f2-)" = "$(reply_of bc | cut -d'|' -f2-)"
check_audit "the audit diagnostics stay distinct (decrypt_failed, bad_csr)" \
  test "$(audit_of "$(txid_of df)" | grep -o '"diag":"[a-z_]*"')" != "$(audit_of "$(txid_of bc)" | grep -o '"diag":"[a-z_]*"')"

# --- pop_failed: the CSR's own signature (proof of possession) does not verify ---
emit pf
csr pf
pkimsg flip-last pf.csr pf-bad.csr
check "the CSR with the flipped signature is still well-formed DER" \
  sh -c "openssl req -inform DER -in pf-bad.csr -noout 2>/dev/null"
envelope pf-bad.csr pf.env aes-128-cbc
pkimsg resign pf.der pf-bad.der pf.env pf.key sha256
post pf pf-bad.der
check "CSR signature does not verify: FAILURE badMessageCheck, pop_failed" \
  expect_failure pf 2000 pop_failed badMessageCheck

# The editor itself: re-signing the unmodified content must give a request scepd issues, so
# the refusals above come from the defect, not from the re-signing.
emit rs
csr rs
envelope rs.csr rs.env aes-128-cbc
pkimsg resign rs.der rs-ok.der rs.env rs.key sha256
post rs rs-ok.der
check "control: a re-signed request with a sound envelope and CSR is issued" \
  sh -c "grep -q 'status=SUCCESS' '$T/rs.out'"

# --- renewal refusals with certificates the CA key signed outside scepd ---
openssl req -new -newkey rsa:2048 -nodes -keyout ext.key -subj /CN=outside -out ext.csr 2>/dev/null
openssl x509 -req -in ext.csr -CA "$STATE/ca.pem" -CAkey "$STATE/ca.key" -days 30 \
  -set_serial 0x3a00000000000000000000000000abcd -out ext.pem 2>/dev/null
"$REQ" enroll --url "$URL" --renew-with ext.pem --renew-key ext.key --cn outside > ru.out 2>&1 || true
check "RenewalReq signed by a CA-signed certificate not in the store: FAILURE badRequest, renewal_unknown_cert" \
  expect_failure ru 2000 renewal_unknown_cert badRequest
openssl x509 -req -in ext.csr -CA "$STATE/ca.pem" -CAkey "$STATE/ca.key" -days -1 \
  -set_serial 0x3a00000000000000000000000000abce -out old.pem 2>/dev/null
"$REQ" enroll --url "$URL" --renew-with old.pem --renew-key ext.key --cn outside > rx.out 2>&1 || true
check "RenewalReq signed by an expired CA-signed certificate: FAILURE badTime, renewal_expired" \
  expect_failure rx 2000 renewal_expired badTime

# --- unknown_transaction: a CertPoll for a transaction scepd never saw ---
"$REQ" enroll --url "$URL" --challenge "$C" --cn nobody --msgtype 20 > ut.out 2>&1 || true
check "CertPoll for an unknown transactionID: FAILURE badCertId, unknown_transaction" \
  expect_failure ut 2000 unknown_transaction badCertId

# --- profile_key_usage: an EC key under a key-transport profile ---
"$REQ" enroll --url "$URL/kt" --challenge "$C" --cn kt-ec --key-type ec:P-256 > ku.out 2>&1 || true
check "EC key under key_usage keyEncipherment: FAILURE badAlg, profile_key_usage" \
  expect_failure ku 2000 profile_key_usage badAlg

# --- the helpers can fail ---
fails() { ! "$@" 2>/dev/null; }
check "expect_refusal refuses another diag for the same transaction" \
  fails expect_refusal "$(txid_of bc)" 2000 decrypt_failed badMessageCheck
check "expect_refusal refuses another event for the same transaction" \
  fails expect_refusal "$(txid_of bc)" 2002 bad_csr badMessageCheck
check "expect_refusal refuses another failinfo for the same transaction" \
  fails expect_refusal "$(txid_of bc)" 2000 bad_csr badRequest
check "expect_refusal refuses the diag of another transaction" \
  fails expect_refusal "$(txid_of df)" 2000 bad_csr badMessageCheck
check "expect_failure refuses another failInfo for the same CertRep" \
  fails expect_failure bc 2000 bad_csr badRequest
check "nothing was issued but the two control requests" test "$("$BUILD/scepctl" -c "$CONF" cert count)" = 2
finish
