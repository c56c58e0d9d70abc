#!/usr/bin/env python3
"""Writes the seed corpora of fuzz_store, fuzz_challenge, fuzz_client, the structured inputs of fuzz_config, the OCSP requests of
fuzz_ocsp, and the structured inputs of fuzz_pending, fuzz_scep and fuzz_ocsp
(tests/fuzz/corpus/).

The seeds are small hand-built records in the layouts of docs/store.md and
engine/policy/challenge.c, HTTP answers as scepd sends them, and certificates made with the
openssl command line. Run it again only to regenerate; the files are committed, and ctest
replays them. Findings (crash reproducers) are added to the corpora by hand, not here.

usage: tests/fuzz/make_seeds.py [CORPUS_DIR] [--only TARGET,...]
       (default: the corpus folder beside this file, every target; --only rewrites just those
       targets' seeds, since certificates and keys are made afresh each time)
"""
import os
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ARGS = sys.argv[1:]
ONLY = None
if "--only" in ARGS:
    i = ARGS.index("--only")
    ONLY = set(ARGS[i + 1].split(","))
    del ARGS[i:i + 2]
ROOT = ARGS[0] if ARGS else os.path.join(HERE, "corpus")
CSR_DIR = os.path.join(HERE, "corpus", "fuzz_csr")


def wanted(target):
    return ONLY is None or target in ONLY


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- DER helpers (short definite lengths are enough for seeds) ----
def tlv(tag, body):
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    if n < 0x100:
        return bytes([tag, 0x81, n]) + body
    return bytes([tag, 0x82, n >> 8, n & 0xFF]) + body


def name_der(*rdns):
    oids = {"CN": b"\x55\x04\x03", "O": b"\x55\x04\x0a", "OU": b"\x55\x04\x0b"}
    sets = b"".join(tlv(0x31, tlv(0x30, tlv(0x06, oids[t]) + tlv(0x0C, v.encode())))
                    for t, v in rdns)
    return tlv(0x30, sets)


def san_der():
    return tlv(0x30, tlv(0x82, b"device-01.example") + tlv(0x81, b"ops@example.org")
               + tlv(0x86, b"tag:microsoft.com,2022-09-14:sid:S-1-5-21"))


# ---- fuzz_store: u8 db, u8 klen, u16 LE vlen, key, value ----
CERTS, TXID, SUBJECT, REVOKED, META = range(5)


def srec(db, key, val):
    return bytes([db, len(key)]) + struct.pack("<H", len(val)) + key + val


def cert_val(status=0, subject=b"CN=device-01", txid=b"tx-0001", profile=b"default",
             der=b"\x30\x03\x02\x01\x01", lens=None, version=1):
    hdr = bytes([version, status, 0, 0]) + struct.pack("<qqq", 1700000000, 1731536000, 1700000001)
    hdr += bytes(range(32)) + bytes(range(32, 64))
    lens = lens or (len(subject), len(txid), len(profile), len(der))
    hdr += struct.pack("<IIII", *lens)
    return hdr + subject + txid + profile + der


def rev_val(reason=1, who=b"scepctl", version=1, wholen=None):
    return (bytes([version, reason, 0, 0]) + struct.pack("<I", len(who) if wholen is None else wholen)
            + struct.pack("<qq", 1710000000, 0) + who)


SN1 = bytes(range(0x40, 0x50))
SN2 = bytes(range(0x50, 0x60))
SUBJH = bytes(range(32, 64))


def store_seeds():
    good = (srec(META, b"schema", struct.pack("<I", 1)) + srec(CERTS, SN1, cert_val())
            + srec(TXID, b"tx-0001", SN1 + bytes(range(32))) + srec(SUBJECT, SUBJH, SN1)
            + srec(META, b"rev_gen", struct.pack("<Q", 0)) + srec(META, b"crl_number", struct.pack("<Q", 3)))
    write("fuzz_store", "one_cert", good)
    write("fuzz_store", "revoked", srec(CERTS, SN1, cert_val(status=1)) + srec(CERTS, SN2, cert_val(txid=b""))
          + srec(REVOKED, SN1, rev_val()) + srec(META, b"rev_gen", struct.pack("<Q", 1))
          + srec(SUBJECT, SUBJH, SN1) + srec(SUBJECT, SUBJH, SN2))
    write("fuzz_store", "bad_lengths", srec(CERTS, SN1, cert_val(lens=(100, 0, 0, 0))))
    write("fuzz_store", "bad_version", srec(CERTS, SN1, cert_val(version=2)) + srec(REVOKED, SN1, rev_val(version=9)))
    write("fuzz_store", "bad_reason", srec(CERTS, SN1, cert_val()) + srec(REVOKED, SN1, rev_val(reason=7)))
    write("fuzz_store", "bad_wholen", srec(CERTS, SN1, cert_val()) + srec(REVOKED, SN1, rev_val(wholen=200)))
    write("fuzz_store", "bad_counter", srec(CERTS, SN1, cert_val()) + srec(META, b"rev_gen", b"\x01\x02"))
    write("fuzz_store", "bad_schema", srec(META, b"schema", struct.pack("<I", 2)))
    write("fuzz_store", "dangling_index", srec(SUBJECT, SUBJH, SN2) + srec(TXID, b"short", b"\x00" * 7))
    write("fuzz_store", "short_serial", srec(CERTS, b"\x01\x02", cert_val()))
    write("fuzz_store", "empty", b"")


# ---- fuzz_challenge: version, flags, hash[32], created, expires, used_at, 3 u16 blobs ----
def chal(profile=b"wifi", subject=b"", san=b"", flags=0, version=1):
    out = bytes([version, flags]) + bytes(range(32)) + struct.pack(">qqq", 1700000000, 1700003600, 0)
    for b in (profile, subject, san):
        out += struct.pack(">H", len(b)) + b
    return out


def challenge_seeds():
    write("fuzz_challenge", "record_bound.bin",
          chal(subject=name_der(("CN", "device-01"), ("O", "Fuzz")), san=san_der()))
    write("fuzz_challenge", "record_used.bin", chal(profile=b"vpn", flags=1))
    write("fuzz_challenge", "record_bad_subject.bin", chal(subject=b"\x30\x05\x31\x03\x30\x01\x00"))
    write("fuzz_challenge", "record_trailing.bin", chal() + b"\x00")
    write("fuzz_challenge", "subject.txt", b"/CN=device-01/O=Example Org/OU=Fleet")
    write("fuzz_challenge", "san_list.txt",
          b"dns:device-01.example,email:ops@example.org,upn:user@realm.example,"
          b"uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1,ip:10.0.0.1")
    write("fuzz_challenge", "san_ipv6.txt", b"ip:fe80::1,dns:a")
    write("fuzz_challenge", "serial_pairs.txt", b"00:8f:aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88")
    write("fuzz_challenge", "serial_plain.txt", b"0a1B2c")
    for name, data in challenge_struct():
        write("fuzz_challenge", name, data)


# Structured fuzz_challenge inputs (layout in the harness): flags, challenge list (kinds mask,
# order, separator), subject entries, SAN entries, ttl, day, server key.
TOK = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@"


def tok(text):
    return bytes([len(text) - 1]) + bytes(TOK.index(c) for c in text)


def challenge_struct():
    """After the list header comes the profile's password token, then (when the profile
    parses) the static check's bytes: selector, string type, main and other password."""
    subj = bytes([2, 0]) + tok("device01") + bytes([1]) + tok("Fuzz")
    san = bytes([3, 0]) + tok("device01.example") + bytes([3, 10, 0, 0, 1]) + bytes([4]) + tok("user")
    ttl = struct.pack("<H", 3600)
    key = bytes([15]) + bytes(range(1, 17))
    stat = tok("pw") + bytes([0, 0]) + tok("main") + tok("other")
    yield "struct_static_compare.bin", bytes([0x80, 0x41, 0, 0]) + stat + bytes([0, 0]) + struct.pack("<H", 60) + b"\x00"
    yield "struct_static_main_utf8.bin", bytes([0x80, 0x01, 0, 0]) + tok("pw") + bytes([2, 1]) + tok("main") + tok("x") + bytes([0, 0, 1, 0, 0])
    yield "struct_onetime_static_bound.bin", bytes([0x86, 0x03, 0, 0]) + stat + san + ttl + b"\x01" + key
    yield "struct_onetime_override.bin", bytes([0x80, 0x82, 1, 1]) + subj + bytes([0]) + ttl + b"\x02"
    yield "struct_static_password.bin", bytes([0x80, 0x41, 2, 2, 0, 0]) + ttl + b"\x00"
    yield "struct_intune_static.bin", bytes([0x80, 0x09, 3, 3, 0]) + san + ttl + b"\x00"
    yield "struct_webhook_onetime_refused.bin", bytes([0x80, 0x12, 0, 0, 0, 0]) + b"\x00\x00\x00"
    yield "struct_none_alone.bin", bytes([0x85, 0x04, 0, 0, 1, 5]) + tok("x_y@z") + bytes([0]) + ttl + b"\x00"


# Structured fuzz_config inputs (layout in the harness): flags (bit 0 the MDM file, bit 1
# CRLF, bit 2 relative names against a scratch folder), then per line: key index, style, value
# bytes (the value's meaning follows the key's type).
def config_struct():
    yield "struct_main_numbers.bin", bytes([0x80, 1, 0, 0, 0, 5, 0, 0, 3, 0x11, 1, 2, 0, 16, 0,
                                            6, 0x80, 2, 2, 0x10, 0x27, 0, 19, 0, 0, 0, 3, 0, 0])
    yield "struct_main_words.bin", bytes([0x86, 0, 0, 2, 1, 0x90, 0x10, 12, 0, 1, 21, 0x21, 0,
                                          27, 1, 8, 29, 0, 9, 20, 0x10, 5, 1, 2, 3, 4, 5, 0])
    yield "struct_main_paths.bin", bytes([0x84, 11, 0, 6, 1, 2, 3, 4, 5, 6, 0, 14, 0, 3, 7, 7, 7, 0,
                                          28, 0, 4, 0, 1, 2, 3, 0])
    yield "struct_mdm_webhook.bin", bytes([0x85, 17, 0, 0, 0, 5, 1, 2, 3, 4, 5, 1, 18, 0, 0, 1])
    yield "struct_mdm_intune.bin", bytes([0x87, 6, 0, 5, 1, 2, 3, 4, 5, 0, 7, 0, 4, 1, 2, 3, 4, 0,
                                          8, 0, 1, 1, 13, 0, 2, 1, 0, 0, 1, 0x10, 0, 0, 50, 0, 0,
                                          3, 0, 0, 0, 4, 0])
    yield "struct_mdm_ndes.bin", bytes([0x81, 20, 0, 1, 0, 60, 0, 0, 21, 0, 2, 23, 0, 4, 1, 2, 3,
                                        4, 0, 22, 0, 0, 0])
    yield "struct_main_load.bin", bytes([0x8c, 1, 0, 0, 0, 5, 0, 0, 21, 0, 1, 0, 2])
    yield "struct_mdm_load.bin", bytes([0x8d, 17, 0, 0, 0, 5, 1, 2, 3, 4, 5, 1, 18, 0, 0, 1])
    yield "struct_mdm_bad_section.bin", bytes([0x81, 0, 0x47, 0, 0, 8, 0, 0])


# ---- fuzz_client: HTTP answers, GetCACert bodies, tool arguments ----
def openssl(*args, **kw):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def certs(tmp):
    ca_key, ra_key = os.path.join(tmp, "ca.key"), os.path.join(tmp, "ra.key")
    ca, ra, p7 = (os.path.join(tmp, n) for n in ("ca.der", "ra.der", "cara.p7"))
    for k in (ca_key, ra_key):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", k)
    openssl("req", "-x509", "-new", "-key", ca_key, "-subj", "/CN=Seed CA", "-days", "3650",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-outform", "DER", "-out", ca)
    csr = os.path.join(tmp, "ra.csr")
    openssl("req", "-new", "-key", ra_key, "-subj", "/CN=Seed RA", "-out", csr)
    ext = os.path.join(tmp, "ra.ext")
    with open(ext, "w") as f:
        f.write("keyUsage=critical,digitalSignature,keyAgreement\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAform", "DER", "-CAkey", ca_key, "-set_serial", "2",
            "-days", "3650", "-extfile", ext, "-outform", "DER", "-out", ra)
    pems = []
    for d in (ca, ra):
        pem = d + ".pem"
        openssl("x509", "-inform", "DER", "-in", d, "-out", pem)
        pems.append(pem)
    args = ["crl2pkcs7", "-nocrl", "-outform", "DER", "-out", p7]
    for p in pems:
        args += ["-certfile", p]
    openssl(*args)
    return [open(p, "rb").read() for p in (ca, p7)]


def http(status, headers, body=b"", reason=b"OK"):
    h = b"HTTP/1.1 %d %s\r\n" % (status, reason)
    for k, v in headers:
        h += k + b": " + v + b"\r\n"
    return h + b"\r\n" + body


def client_seeds():
    caps = b"POSTPKIOperation\nSHA-256\r\nAES\n  SCEPStandard  \nRenewal\nGetNextCACert\nDES3\nSHA-1\nSHA-512\n"
    with tempfile.TemporaryDirectory() as tmp:
        ca, p7 = certs(tmp)
    write("fuzz_client", "caps_cl", http(200, [(b"Content-Type", b"text/plain"),
                                                (b"Content-Length", b"%d" % len(caps))], caps))
    chunked = b"%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (10, caps[:10], len(caps) - 10, caps[10:])
    write("fuzz_client", "caps_chunked", http(200, [(b"Transfer-Encoding", b"chunked"),
                                                     (b"Connection", b"keep-alive")], chunked))
    write("fuzz_client", "close_framed", b"HTTP/1.0 200 OK\nContent-Type: text/plain\n\nAES\nSHA-256\n")
    write("fuzz_client", "no_content", http(204, [(b"Connection", b"close")], reason=b"No Content"))
    write("fuzz_client", "cacert_single", http(200, [(b"Content-Type", b"application/x-x509-ca-cert"),
                                                      (b"Content-Length", b"%d" % len(ca))], ca))
    write("fuzz_client", "cacert_ra", http(200, [(b"Content-Type", b"application/x-x509-ca-ra-cert; charset=x"),
                                                  (b"Content-Length", b"%d" % len(p7))], p7))
    write("fuzz_client", "busy_503", http(503, [(b"Retry-After", b"1"), (b"Content-Length", b"0")],
                                          reason=b"Service Unavailable"))
    write("fuzz_client", "bad_status", b"HTTP/1.1 20 OK\r\n\r\n")
    write("fuzz_client", "cert.der", ca)
    write("fuzz_client", "url.txt", b"http://scep.example:8080/scep/pkiclient.exe")
    write("fuzz_client", "subject.txt", b"/CN=device\\/01/O=Example/OU=Fleet")
    write("fuzz_client", "san.txt", b"upn:user@realm.example")


# ---- fuzz_ocsp: requests for the harness's store (serial 1 good, 2 revoked, others unknown);
# the harness re-addresses every CertID to its own CA, so any issuer will do ----
def ocsp_seeds():
    with tempfile.TemporaryDirectory() as tmp:
        key, ca = os.path.join(tmp, "ca.key"), os.path.join(tmp, "ca.pem")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
        openssl("req", "-x509", "-new", "-key", key, "-subj", "/CN=Seed CA", "-out", ca)
        for name, args in (("statuses.der", ["-serial", "1", "-serial", "2", "-serial", "3", "-no_nonce"]),
                           ("nonce_good.der", ["-serial", "1"]),
                           ("sha256_revoked.der", ["-sha256", "-serial", "2", "-no_nonce"])):
            out = os.path.join(tmp, name)
            openssl("ocsp", "-issuer", ca, *args, "-reqout", out)
            write("fuzz_ocsp", name, open(out, "rb").read())


# ---- fuzz_pending, structured: flags | created | [decided_at] | key_hash | [serial] | pick |
# [profile text] | subject | peer | [decided_by] | csr (see the harness); the CSRs are
# fuzz_csr's seeds ----
def pstr(b):
    return bytes([len(b)]) + b


def pending_seeds():
    csrs = sorted(os.listdir(CSR_DIR))
    for i, name in enumerate(csrs):
        csr = open(os.path.join(CSR_DIR, name), "rb").read()
        pick = i % 4                       # the harness's four manual-approval profiles
        rec = (bytes([0x00]) + struct.pack(">q", 1700000000 + i) + bytes(range(32)) + bytes([pick])
               + pstr(b"CN=dev") + pstr(b"192.0.2.%d:40000" % i) + csr)
        write("fuzz_pending", "struct_%s" % name, rec)
    decided = (bytes([0x1d]) + struct.pack(">qq", 1700000000, 1700000600) + bytes(32)
               + bytes(range(16)) + bytes([200]) + pstr(b"gone_profile") + pstr(b"CN=x")
               + pstr(b"-") + pstr(b"scepctl root@host") + b"\x30\x00")
    write("fuzz_pending", "struct_decided", decided)


# ---- fuzz_scep, structured: b0 type|allow|resign|cipher, b1 digest|nonce|txid|type|rsa,
# b2 cert|corrupt|utf8|typenum|extra|detached|typeint|noncestr, b3 type number, b4 txid
# length, txid, 16-byte nonce, inner content (see the harness); b0 must not be 0x30 (raw) ----
def scep_struct(b0, b1=0, b2=0, b3=0, txid=b"fuzz-tx-0001", inner=b"", nonce=bytes(range(16))):
    assert b0 != 0x30
    return bytes([b0, b1, b2, b3, len(txid)]) + txid + nonce + inner


def scep_seeds():
    PKCSREQ, RENEWAL, POLL, GETCERT, GETCRL = 0, 1, 2, 3, 4
    ALLOW, RESIGN = 0x08, 0x10
    AES128, AES256, DES3, DES, CAMELLIA, GCM, RAW = 0, 2 << 5, 3 << 5, 4 << 5, 5 << 5, 6 << 5, 7 << 5
    RSA = 0x80
    csrs = sorted(os.listdir(CSR_DIR))
    for i, name in enumerate(csrs):
        csr = open(os.path.join(CSR_DIR, name), "rb").read()
        write("fuzz_scep", "struct_pkcsreq_%s" % name,
              scep_struct(PKCSREQ | RESIGN | (AES128, AES256, DES3)[i % 3], RSA if i % 2 else 0,
                          txid=b"tx-%s" % name.encode(), inner=csr))
    csr = open(os.path.join(CSR_DIR, csrs[0]), "rb").read()
    write("fuzz_scep", "struct_renewal_des3", scep_struct(RENEWAL | RESIGN | DES3, 1, inner=csr))
    write("fuzz_scep", "struct_pkcsreq_des_allowed", scep_struct(PKCSREQ | ALLOW | RESIGN | DES, 3, inner=csr))
    write("fuzz_scep", "struct_pkcsreq_not_resigned", scep_struct(PKCSREQ | AES256, RSA, inner=csr))
    ias = tlv(0x30, name_der(("CN", "Fuzz CA")) + tlv(0x02, b"\x40" + bytes(15)))
    ias_subject = tlv(0x30, name_der(("CN", "Fuzz CA")) + name_der(("CN", "dev")))
    write("fuzz_scep", "struct_getcert", scep_struct(GETCERT, RSA, inner=ias))
    write("fuzz_scep", "struct_getcrl", scep_struct(GETCRL | AES256, 2, inner=ias))
    write("fuzz_scep", "struct_certpoll", scep_struct(POLL | DES3, 0, inner=ias_subject))
    write("fuzz_scep", "struct_camellia", scep_struct(PKCSREQ | CAMELLIA, inner=csr))
    write("fuzz_scep", "struct_gcm", scep_struct(PKCSREQ | GCM, inner=csr))
    write("fuzz_scep", "struct_raw_content", scep_struct(GETCERT | RAW, inner=ias))
    write("fuzz_scep", "struct_sha1_refused", scep_struct(PKCSREQ, 3, inner=csr))
    write("fuzz_scep", "struct_sha224", scep_struct(PKCSREQ, 4, inner=csr))
    write("fuzz_scep", "struct_corrupt", scep_struct(PKCSREQ, RSA, 0x02, inner=csr))
    write("fuzz_scep", "struct_no_cert", scep_struct(PKCSREQ, 0, 0x01, inner=csr))
    write("fuzz_scep", "struct_detached", scep_struct(PKCSREQ, 0, 0x20, inner=csr))
    write("fuzz_scep", "struct_type_number", scep_struct(PKCSREQ, 0, 0x08 | 0x10, 99, inner=csr))
    write("fuzz_scep", "struct_attr_types", scep_struct(PKCSREQ, 0, 0x04 | 0x40 | 0x80, inner=csr))
    write("fuzz_scep", "struct_txid_long", scep_struct(PKCSREQ, 0, txid=b"t" * 200, inner=csr))
    write("fuzz_scep", "struct_txid_control", scep_struct(PKCSREQ, 0, txid=b"tx\x01\x7f", inner=csr))
    write("fuzz_scep", "struct_missing", scep_struct(6, 0x08 | 0x20, inner=csr))


# ---- fuzz_ocsp, structured: b0 count|nonce|critical|odd length|extension, b1 responder|
# requestorName|twice, then per CertID a flags byte (hash, issuer, negative, serial kind) and
# the serial's bytes (see the harness); b0 must not be 0x30 (raw) ----
def ocsp_struct_seeds():
    SHA1, SHA256, SHA384, SHA512, MD5, SHA224 = range(6)
    OTHER_CA, OTHER_KEY, CUT_NAME, NEG = 0x08, 0x10, 0x18, 0x20
    KNOWN, ZERO, FULL = 0x40, 0x80, 0xC0
    NONCE, CRIT, ODD, EXT = 0x10, 0x20, 0x40, 0x80

    def seed(name, b0, b1, ids, tail=b""):
        assert b0 != 0x30
        write("fuzz_ocsp", "struct_" + name, bytes([b0, b1]) + b"".join(ids) + tail)

    seed("good_sha1", 1, 0, [bytes([SHA1 | KNOWN, 0])])
    seed("statuses", 3, 0, [bytes([SHA256 | KNOWN, i]) for i in range(3)])
    seed("nonce_echo", 1 | NONCE, 0, [bytes([SHA384 | KNOWN, 1])], bytes(range(16)))
    seed("nonce_not_echoed", 1 | NONCE, 1, [bytes([SHA512 | KNOWN, 2])], bytes(range(16)))
    seed("nonce_odd_critical", 1 | NONCE | CRIT | ODD, 0, [bytes([SHA1 | FULL])], b"\x01" + bytes(40))
    seed("other_ca", 2, 0, [bytes([SHA1 | KNOWN, 0]), bytes([SHA1 | OTHER_CA | KNOWN, 0])])
    seed("other_key", 1, 0, [bytes([SHA256 | OTHER_KEY | KNOWN, 0])])
    seed("cut_name", 1, 0, [bytes([SHA256 | CUT_NAME | KNOWN, 0])])
    seed("md5", 1, 0, [bytes([MD5 | KNOWN, 0])])
    seed("sha224", 1, 0, [bytes([SHA224 | KNOWN, 0])])
    seed("nine", 9, 0, [bytes([SHA1 | KNOWN, i % 3]) for i in range(9)])
    seed("none", 0, 0, [])
    seed("full_and_zero", 2, 4, [bytes([SHA256 | FULL]), bytes([SHA256 | ZERO])])
    seed("negative", 1, 4, [bytes([SHA1 | NEG | KNOWN, 0])])
    seed("long_serial", 1, 0, [bytes([SHA1, 21]) + bytes(range(1, 22))])
    seed("extension_name_twice", 1 | EXT, 6, [bytes([SHA1 | KNOWN, 1])])
    seed("eight_mixed", 8, 0, [bytes([(SHA1, SHA256, SHA384, SHA512)[i % 4] | (KNOWN, FULL, ZERO, KNOWN)[i % 4], i % 3])
                               for i in range(8)])


if wanted("fuzz_store"):
    store_seeds()
if wanted("fuzz_challenge"):
    challenge_seeds()
if wanted("fuzz_config"):
    for name, data in config_struct():
        write("fuzz_config", name, data)
if wanted("fuzz_client"):
    client_seeds()
if wanted("fuzz_ocsp"):
    ocsp_seeds()
    ocsp_struct_seeds()
if wanted("fuzz_pending"):
    pending_seeds()
if wanted("fuzz_scep"):
    scep_seeds()
