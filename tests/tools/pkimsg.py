"""DER surgery on SCEP pkiMessages (CMS SignedData) for integration tests: a request that
scep_req cannot build (its client library never encrypts with single DES, never sends a
transactionID longer than 128 bytes or with a NUL) is a request scep_req emitted, reshaped
here and re-signed with the requester's key, so everything but the defect stays sound.

  resign IN OUT CONTENT KEY MD  replace eContent with the bytes of CONTENT (e.g. an
                                EnvelopedData from openssl cms -encrypt), fix messageDigest
                                and re-sign the signed attributes with KEY
  set-txid IN OUT HEX KEY MD    replace the transactionID's value with the bytes HEX and
                                re-sign (the content stays)
  env-alg IN                    the contentEncryptionAlgorithm OID (dotted) of the
                                EnvelopedData a SignedData carries (a CertRep SUCCESS)
  attrs IN                      the signed attributes: OID-hex value-hex, one a line

Only definite lengths (DER). Re-signing uses openssl dgst, PKCS#1 v1.5 or ECDSA per KEY.
"""
import hashlib
import subprocess
import sys

OID_MESSAGE_DIGEST = bytes.fromhex('06092a864886f70d010904')
OID_TRANSACTION_ID = bytes.fromhex('060a6086480186f845010907')


def tlv(b, i):
    """(tag, start of content, end of content) of the element at i."""
    tag = b[i]
    n = b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7f
        n = int.from_bytes(b[i:i + k], 'big')
        i += k
    return tag, i, i + n


def children(b, start, end):
    """[(tag, element start, content start, content end)] of the elements in [start, end)."""
    out, i = [], start
    while i < end:
        tag, cs, ce = tlv(b, i)
        out.append((tag, i, cs, ce))
        i = ce
    return out


def enc(tag, content):
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        nb = n.to_bytes((n.bit_length() + 7) // 8, 'big')
        length = bytes([0x80 | len(nb)]) + nb
    return bytes([tag]) + length + content


def whole(b, k):
    return b[k[1]:k[3]]


def signed_data(b):
    """ContentInfo's children (OID, [0]) and SignedData's children."""
    _, cs, ce = tlv(b, 0)
    ci = children(b, cs, ce)
    _, scs, sce = tlv(b, ci[1][2])
    return ci, children(b, scs, sce)


def econtent(b, sd):
    """The eContent bytes of SignedData's encapContentInfo (b'' when absent)."""
    encap = children(b, sd[2][2], sd[2][3])
    if len(encap) < 2:
        return b''
    octets = children(b, encap[1][2], encap[1][3])[0]
    return b[octets[2]:octets[3]]


def signer_fields(b, sd):
    si = children(b, sd[-1][2], sd[-1][3])[0]
    return children(b, si[2], si[3])


def resign(b, content, attr_edit, keyfile, md):
    """SignedData b with eContent content (None: unchanged), each signed attribute passed
    through attr_edit(oid_tlv, attribute_bytes), re-signed with keyfile."""
    ci, sd = signed_data(b)
    parts = [whole(b, k) for k in sd]
    if content is None:
        content = econtent(b, sd)
    else:
        encap = children(b, sd[2][2], sd[2][3])
        parts[2] = enc(0x30, whole(b, encap[0]) + enc(0xa0, enc(0x04, content)))
    fields = signer_fields(b, sd)
    signed = next(k for k in fields if k[0] == 0xa0)
    attrs = []
    for a in children(b, signed[2], signed[3]):
        ab = whole(b, a)
        oid = whole(b, children(b, a[2], a[3])[0])
        if oid == OID_MESSAGE_DIGEST:
            ab = enc(0x30, oid + enc(0x31, enc(0x04, hashlib.new(md, content).digest())))
        attrs.append(attr_edit(oid, ab))
    body = b''.join(attrs)
    # The signature covers the attributes DER-encoded as a SET (RFC 5652 5.4).
    sig = subprocess.run(['openssl', 'dgst', '-' + md, '-sign', keyfile, '-binary'],
                         input=enc(0x31, body), capture_output=True, check=True).stdout
    new_fields = []
    for k in fields:
        if k is signed:
            new_fields.append(enc(0xa0, body))
        elif k[0] == 0x04:
            new_fields.append(enc(0x04, sig))
        else:
            new_fields.append(whole(b, k))
    parts[-1] = enc(0x31, enc(0x30, b''.join(new_fields)))
    return enc(0x30, whole(b, ci[0]) + enc(0xa0, enc(0x30, b''.join(parts))))


def set_txid(value):
    def edit(oid, ab):
        if oid != OID_TRANSACTION_ID:
            return ab
        return enc(0x30, oid + enc(0x31, enc(0x13, value)))   # PrintableString, as clients send
    return edit


def env_alg(b):
    _, sd = signed_data(b)
    env = econtent(b, sd)
    _, cs, ce = tlv(env, 0)
    ci = children(env, cs, ce)
    _, ecs, ece = tlv(env, ci[1][2])
    eci = next(k for k in children(env, ecs, ece) if k[0] == 0x30)   # EncryptedContentInfo
    alg = children(env, eci[2], eci[3])[1]
    oid = children(env, alg[2], alg[3])[0]
    raw = env[oid[2]:oid[3]]
    arcs, n = [raw[0] // 40, raw[0] % 40], 0
    for c in raw[1:]:
        n = (n << 7) | (c & 0x7f)
        if not c & 0x80:
            arcs.append(n)
            n = 0
    return '.'.join(map(str, arcs))


def attrs(b):
    _, sd = signed_data(b)
    signed = next(k for k in signer_fields(b, sd) if k[0] == 0xa0)
    for a in children(b, signed[2], signed[3]):
        oid, vals = children(b, a[2], a[3])
        print(b[oid[2]:oid[3]].hex(), b[vals[2]:vals[3]].hex())


def main(argv):
    cmd, args = argv[1], argv[2:]
    data = open(args[0], 'rb').read()
    if cmd == 'env-alg':
        print(env_alg(data))
        return 0
    if cmd == 'attrs':
        attrs(data)
        return 0
    if cmd == 'resign':
        out = resign(data, open(args[2], 'rb').read(), lambda oid, ab: ab, args[3], args[4])
    elif cmd == 'set-txid':
        out = resign(data, None, set_txid(bytes.fromhex(args[2])), args[3], args[4])
    else:
        sys.exit('unknown command ' + cmd)
    open(args[1], 'wb').write(out)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
