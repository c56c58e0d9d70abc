/* Fuzz target for engine/scep/scep.c, the server side of the SCEP codec, and for what the
 * server does with an opened envelope (the CSR checks of engine/policy/issue.c). An input is
 * used one of two ways, by its first byte:
 *
 *  - 0x30 (a DER SEQUENCE): raw. scep_parse over the whole input (and, when it parses,
 *    scep_open_envelope with the fixed RA key below and scep_certrep as the server would
 *    answer), plus scep_open_envelope over the whole input taken as a pkcsPKIEnvelope, so the
 *    envelope code is reached without a valid signature.
 *  - anything else: structured. The input chooses a message (type, content cipher, digest,
 *    which attributes, their encodings, the transactionID and nonce bytes, signer key, a
 *    detached or corrupted signature) and gives its inner content; the harness envelopes the
 *    content to the RA and signs the pkiMessage with its own keys, so mutated content reaches
 *    the decryption and, for a PKCSReq/RenewalReq, the CSR checks (a CSR inside may be
 *    re-signed with a fixed key first, so its content is checked past the signature). The
 *    result of scep_parse is predicted from the choices and must be exactly that; an opened
 *    envelope must give back the content as enveloped; the answer (a CertRep SUCCESS with the
 *    issued certificate, GetCert's certificate or GetCRL's CRL, PENDING, or FAILURE) must
 *    parse back as a CertRep for the same transaction, and a SUCCESS must decrypt, with the
 *    signer's key, to the degenerate SignedData that was put in.
 * A refusal is any row of the reject table answered with a failInfo (the table, not a list of
 * codes, so a new row needs no harness change). Violated invariants abort(), so the replay
 * driver and libFuzzer both flag them.
 *
 * The raw seeds (tests/fuzz/corpus/fuzz_scep/) hold pkiMessages encrypted to this RA
 * certificate; a small RSA key keeps the private-key operation cheap. The structured seeds
 * are written by tests/fuzz/make_seeds.py. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>

#include "engine/common/config.h"
#include "engine/policy/issue.h"
#include "engine/scep/reject.h"
#include "engine/scep/scep.h"
#include "engine/scep/scep_oid.h"

#define FUZZ_CHALLENGE "fuzz-challenge"   /* the seed CSRs carry it */

static const char RA_KEY_PEM[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBAO8L5QYrpjJJ5HzI\n"
    "JSUuHqe0jL3w0CBCGltUbRVQnjwwjn9LXqWpv4ulQ1rMh5hu1SobfhAu6fV1OjvJ\n"
    "UYz5o42vfYw3+bH4TLMDFJ+izcLAenHZnI6IrmttjJvLyNGd/FASu/E7ewTe8MKL\n"
    "nr4u0oHPNW9mO0amrAQqlW26GJYpAgMBAAECgYA6p8+FqRY5xrnjCHVc3yk0e3AB\n"
    "d2KKV84B1QCDN2nsWPnOMF9EBRf0GxQg5ojrFV8G2wIe1HQh/6bPXsG89tBzjUOW\n"
    "6sI/UkfoHaG8qvsrwvontT3Cqe88xj30BSmkT7nFA4JbSS1tGMRwVg9Lv4dAiA7+\n"
    "Z7vJSzaC3ObK0Vl+BQJBAP8dTbE1s9h9EiqhBAtkCMB9w2l91LDHW9xcJmNIQzaC\n"
    "tbm448+x7QKkDCwTKtQBIZZwlJukQ/lNojrM1IVkDCMCQQDv4FAgtCK7AXc1Kyde\n"
    "S/Yb+YS5ChR6N+uMwIp/5KZjjrtsfctY1IDIQ7deQvhh0ol626TUM8CkvlPfjSDF\n"
    "9wNDAkEApwXtZrbtHzCLY0N13WtJ25S7CmbqiC6NctEWBOw7rQWYqpZk+AbaUF9M\n"
    "5NJLuO9gqRjeAqRiKGdubibKgOaGlwJACAbYh4+fjeRpqcTM53HhRWRfFZYJw2E1\n"
    "p5sVx1vOWYyAJww6jrllqc3iR+wzxYo3AX5yEIu+yYR46AUf8J/oYwJAanQj/abW\n"
    "iZQXEFYPKALLeBpMMneJfq2WAoWERh/biPGTPSb3cnBlWlVwhQnXhUVuivQFSl5I\n"
    "OXloBMlFz+s1lw==\n"
    "-----END PRIVATE KEY-----\n";

static const char RA_CERT_PEM[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICRDCCAa2gAwIBAgIUPDiD9T4jpnHXnvBCSjQy53ktaZgwDQYJKoZIhvcNAQEL\n"
    "BQAwLjEWMBQGA1UEAwwNc2NlcGQgZnV6eiBSQTEUMBIGA1UECgwLc2NlcGQgdGVz\n"
    "dHMwIBcNMjYxMTIzMDIyNjM2WhgPMjEyNjEwMzAwMjI2MzZaMC4xFjAUBgNVBAMM\n"
    "DXNjZXBkIGZ1enogUkExFDASBgNVBAoMC3NjZXBkIHRlc3RzMIGfMA0GCSqGSIb3\n"
    "DQEBAQUAA4GNADCBiQKBgQDvC+UGK6YySeR8yCUlLh6ntIy98NAgQhpbVG0VUJ48\n"
    "MI5/S16lqb+LpUNazIeYbtUqG34QLun1dTo7yVGM+aONr32MN/mx+EyzAxSfos3C\n"
    "wHpx2ZyOiK5rbYyby8jRnfxQErvxO3sE3vDCi56+LtKBzzVvZjtGpqwEKpVtuhiW\n"
    "KQIDAQABo10wWzAdBgNVHQ4EFgQU4IqlHCQuub505wpGk2SsMJUYob4wHwYDVR0j\n"
    "BBgwFoAU4IqlHCQuub505wpGk2SsMJUYob4wDgYDVR0PAQH/BAQDAgWgMAkGA1Ud\n"
    "EwQCMAAwDQYJKoZIhvcNAQELBQADgYEAK2XvKeliaVNqP2vWbBuPO+TTA7vyTMgY\n"
    "fqy7PEGUzFmi2YPsWTZalkGbTUFVPtPFKE1yhODDgWaQCfbl4SlyIzcxOc9lkq3r\n"
    "d4WYF1YvOcBc+Zt0CsdRuoNebs5ymbGINJ3E4ZkEEmU+Xxw8QFvCgQftzTceDCm9\n"
    "PgYKYqhUHM8=\n"
    "-----END CERTIFICATE-----\n";

/* Built once per process; a fuzz target has no other place to keep it. */
static struct {
    int ready;
    OSSL_PROVIDER *legacy, *deflt;  /* kept so they stay reachable until exit */
    EVP_PKEY *ra_key;
    X509 *ra_cert;
    STACK_OF(X509) *certs;        /* what a SUCCESS carries */
    EVP_PKEY *signer_key[2];      /* the structured messages' signers: EC P-256, RSA 1024 */
    X509 *signer_cert[2];
    EVP_PKEY *csr_key;            /* re-signs a CSR found in the content */
    EVP_PKEY *ca_key;
    X509 *ca_cert;
    ca_set ca;
    issuer *initial;              /* challenge set, SHA-1 refused: PKCSReq */
    issuer *renewal;              /* no challenge, SHA-1 allowed: RenewalReq */
} G;

static X509 *self_signed(EVP_PKEY *key, const char *cn, int ca)
{
    X509 *x = X509_new();
    X509_NAME *n = x != NULL ? X509_get_subject_name(x) : NULL;
    if (n == NULL || !X509_set_version(x, X509_VERSION_3) ||
        !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ||
        !X509_set_issuer_name(x, n) || !ASN1_INTEGER_set(X509_get_serialNumber(x), ca ? 1 : 2) ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400) == NULL ||
        !X509_set_pubkey(x, key) || X509_sign(x, key, EVP_sha256()) <= 0)
        abort();
    return x;
}

static void init(void)
{
    BIO *kb = BIO_new_mem_buf(RA_KEY_PEM, -1), *cb = BIO_new_mem_buf(RA_CERT_PEM, -1);
    config cfg;

    /* Single DES (allow_des) can only be decrypted with the legacy provider; loading it
     * needs the default provider loaded explicitly too. Either may be missing. */
    G.legacy = OSSL_PROVIDER_load(NULL, "legacy");
    G.deflt = OSSL_PROVIDER_load(NULL, "default");
    if (kb == NULL || cb == NULL)
        abort();
    G.ra_key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    G.ra_cert = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    G.certs = sk_X509_new_null();
    if (G.ra_key == NULL || G.ra_cert == NULL || G.certs == NULL ||
        !sk_X509_push(G.certs, G.ra_cert))
        abort();
    BIO_free(kb);
    BIO_free(cb);

    G.signer_key[0] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    G.signer_key[1] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    G.csr_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    G.ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (G.signer_key[0] == NULL || G.signer_key[1] == NULL || G.csr_key == NULL ||
        G.ca_key == NULL)
        abort();
    G.signer_cert[0] = self_signed(G.signer_key[0], "fuzz device", 0);
    G.signer_cert[1] = self_signed(G.signer_key[1], "fuzz device rsa", 0);
    G.ca_cert = self_signed(G.ca_key, "Fuzz CA", 1);
    G.ca.ca_key = G.ca_key;
    G.ca.ca_cert = G.ca_cert;
    G.ca.ra_key = G.ra_key;
    G.ca.ra_cert = G.ra_cert;
    G.ca.ca_pub = X509_get0_pubkey(G.ca_cert);
    G.ca.ca_name = X509_get_subject_name(G.ca_cert);
    G.ca.ca_not_after = (int64_t)time(NULL) + 3650L * 86400;
    config_defaults(&cfg);
    cfg.allow_sha1 = 0;
    if (issuer_create(&cfg, &G.ca, FUZZ_CHALLENGE, &G.initial) != 0)
        abort();
    cfg.allow_sha1 = 1;
    if (issuer_create(&cfg, &G.ca, "", &G.renewal) != 0)
        abort();
    ERR_clear_error();
    G.ready = 1;
}

static void certrep(const scep_request *req, int status, int failinfo, const char *text)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    int rc = scep_certrep(req, status, failinfo, text, G.certs, G.ra_key, G.ra_cert, &out,
                          &outlen);
    if (rc == 0 && (out == NULL || outlen == 0))
        abort();
    if (rc != 0 && rc != -1)
        abort();
    free(out);
}

/* A refusal is any row of the reject table answered with a failInfo (the table, not a list
 * of codes, so a new row needs no harness change); a refused envelope leaves no inner. */
static void check_opened(const scep_request *req, int rc, int allow_des)
{
    if (rc == REJ_NONE) {
        if (req->inner == NULL || req->inner_len == 0)
            abort();
        if (scep_cipher_for_nid(req->cipher_nid) == NULL &&
            !(allow_des && req->cipher_nid == NID_des_cbc))
            abort();
    } else if (rc < 0 || rc >= REJ__COUNT || reject_failinfo(rc) == SCEP_FAIL_NONE ||
               req->inner != NULL) {
        abort();
    }
}

/* The raw path: the input as a pkiMessage, then as a pkcsPKIEnvelope. */
static void raw(const uint8_t *data, size_t size)
{
    scep_request req;

    /* Exact-size copy so an over-read is caught by ASan. */
    uint8_t *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return;
    if (size > 0)
        memcpy(buf, data, size);

    int allow = size > 0 ? data[size - 1] & 1 : 0;
    int rc = scep_parse(buf, size, allow, &req);
    if (rc < 0 || rc >= REJ__COUNT)
        abort();
    if (rc == REJ_NONE) {
        /* An accepted transactionID is what was sent: printable ASCII, no NUL, no cut. */
        for (size_t i = 0; i < req.txid_len; i++)
            if (req.txid[i] < 0x20 || req.txid[i] > 0x7e)
                abort();
        if (req.txid_len == 0 || req.txid_len > SCEP_TXID_MAX || !req.has_nonce ||
            strlen(req.txid) != req.txid_len || req.txid_sent == NULL ||
            (size_t)req.txid_sent->length != req.txid_len ||
            req.msg_type < 0 || req.signer == NULL || req.cms == NULL ||
            (req.envelope == NULL) != (req.envelope_len == 0))
            abort();
        int orc = scep_open_envelope(&req, G.ra_key, G.ra_cert, allow);
        check_opened(&req, orc, allow);
        if (orc == REJ_NONE)
            certrep(&req, SCEP_SUCCESS, SCEP_FAIL_NONE, NULL);
        else
            certrep(&req, SCEP_FAILURE, reject_failinfo(orc), reject_text(orc));
    } else if (rc != REJ_NOT_PKIMESSAGE) {
        /* Parsed far enough to be answered: the server sends a signed FAILURE. */
        if (reject_failinfo(rc) == SCEP_FAIL_NONE)
            abort();
        certrep(&req, SCEP_FAILURE, reject_failinfo(rc), reject_text(rc));
        certrep(&req, SCEP_PENDING, SCEP_FAIL_NONE, NULL);
    }
    scep_request_clear(&req);
    if (req.cms != NULL || req.signer != NULL || req.envelope != NULL || req.inner != NULL)
        abort();

    /* The whole input as the pkcsPKIEnvelope of an already verified request. */
    memset(&req, 0, sizeof(req));
    if (size > 0) {
        req.envelope = buf;        /* borrowed: scep_request_clear does not free it */
        req.envelope_len = size;
        check_opened(&req, scep_open_envelope(&req, G.ra_key, G.ra_cert, allow), allow);
    }
    scep_request_clear(&req);
    free(buf);
}

/* ------------------------------------------------------------------ structured messages */

/* What the first bytes of a structured input choose (layout in make_seeds.py):
 *   b0  bits 0-2 messageType (PKCSReq, RenewalReq, CertPoll, GetCert, GetCRL, CertRep, "1x",
 *       "12345"), bit 3 allow SHA-1 / single DES, bit 4 re-sign a CSR in the content,
 *       bits 5-7 content cipher (AES-128/192/256-CBC, DES3, DES, Camellia, AES-GCM, none: the
 *       content itself as the eContent)
 *   b1  bits 0-2 digest (SHA-256/384/512, SHA-1, SHA-224, SHA3-256, SHA-256, SHA-512), bit 3
 *       no senderNonce, bit 4 a 15-byte nonce, bit 5 no transactionID, bit 6 no messageType,
 *       bit 7 RSA signer (else EC)
 *   b2  bit 0 no signer certificate, bit 1 signature corrupted, bit 2 transactionID as
 *       UTF8String, bit 3 messageType = decimal of b3, bit 4 an unknown attribute too,
 *       bit 5 detached content, bit 6 messageType as an INTEGER, bit 7 nonce as a
 *       PrintableString
 *   b3  messageType number (b2 bit 3), b4 transactionID length, then the transactionID,
 *   16 nonce bytes, and the rest: the inner content. */
typedef struct choice {
    int type_sel, allow, resign, cipher_sel, md_sel, no_nonce, short_nonce, no_txid, no_type,
        rsa, no_cert, corrupt, txid_utf8, type_num, extra_attr, detached, type_int, nonce_str;
    int type_value;
    const uint8_t *txid;
    size_t txid_len;
    uint8_t nonce[SCEP_NONCE_LEN];
    const uint8_t *inner;
    size_t inner_len;
} choice;

static const int TYPES[6] = { SCEP_MSG_PKCSREQ, SCEP_MSG_RENEWALREQ, SCEP_MSG_CERTPOLL,
                              SCEP_MSG_GETCERT, SCEP_MSG_GETCRL, SCEP_MSG_CERTREP };

static int take_choice(const uint8_t *d, size_t n, choice *c)
{
    memset(c, 0, sizeof(*c));
    if (n < 5)
        return -1;
    c->type_sel = d[0] & 7;
    c->allow = d[0] >> 3 & 1;
    c->resign = d[0] >> 4 & 1;
    c->cipher_sel = d[0] >> 5;
    c->md_sel = d[1] & 7;
    c->no_nonce = d[1] >> 3 & 1;
    c->short_nonce = d[1] >> 4 & 1;
    c->no_txid = d[1] >> 5 & 1;
    c->no_type = d[1] >> 6 & 1;
    c->rsa = d[1] >> 7;
    c->no_cert = d[2] & 1;
    c->corrupt = d[2] >> 1 & 1;
    c->txid_utf8 = d[2] >> 2 & 1;
    c->type_num = d[2] >> 3 & 1;
    c->extra_attr = d[2] >> 4 & 1;
    c->detached = d[2] >> 5 & 1;
    c->type_int = d[2] >> 6 & 1;
    c->nonce_str = d[2] >> 7;
    c->type_value = c->type_num ? d[3] : c->type_sel < 6 ? TYPES[c->type_sel] : -1;
    size_t at = 5, tl = d[4];
    if (tl > n - at)
        tl = n - at;
    c->txid = d + at;
    c->txid_len = tl;
    at += tl;
    for (size_t i = 0; i < SCEP_NONCE_LEN; i++)
        c->nonce[i] = at < n ? d[at++] : 0;
    c->inner = d + at;
    c->inner_len = n - at;
    return 0;
}

static const EVP_MD *choice_md(const choice *c)
{
    switch (c->md_sel) {
    case 1: return EVP_sha384();
    case 2: case 7: return EVP_sha512();
    case 3: return EVP_sha1();
    case 4: return EVP_sha224();
    case 5: return EVP_sha3_256();
    default: return EVP_sha256();
    }
}

/* The cipher chosen; NULL with *raw_content set for "no envelope". */
static const EVP_CIPHER *choice_cipher(const choice *c, int *raw_content)
{
    *raw_content = 0;
    switch (c->cipher_sel) {
    case 0: return EVP_aes_128_cbc();
    case 1: return EVP_aes_192_cbc();
    case 2: return EVP_aes_256_cbc();
    case 3: return EVP_des_ede3_cbc();
    case 4: return EVP_des_cbc();
    case 5: return EVP_camellia_128_cbc();
    case 6: return EVP_aes_128_gcm();
    default: *raw_content = 1; return NULL;
    }
}

/* A CSR in the content re-signed with the fixed key (its content kept), else a copy. */
static uint8_t *inner_content(const choice *c, size_t *len)
{
    uint8_t *out = NULL;
    const unsigned char *p = c->inner;
    X509_REQ *csr = c->resign ? d2i_X509_REQ(NULL, &p, (long)c->inner_len) : NULL;
    unsigned char *der = NULL;
    int n;
    if (csr != NULL && X509_REQ_set_pubkey(csr, G.csr_key) &&
        X509_REQ_sign(csr, G.csr_key, EVP_sha256()) > 0 && (n = i2d_X509_REQ(csr, &der)) > 0) {
        out = malloc((size_t)n);
        if (out != NULL)
            memcpy(out, der, (size_t)n);
        *len = (size_t)n;
    } else {
        out = malloc(c->inner_len ? c->inner_len : 1);
        if (out != NULL && c->inner_len > 0)
            memcpy(out, c->inner, c->inner_len);
        *len = c->inner_len;
    }
    OPENSSL_free(der);
    X509_REQ_free(csr);
    ERR_clear_error();
    return out;
}

/* The eContent: the content enveloped to the RA (or as is). NULL when OpenSSL cannot make
 * that envelope (a cipher its providers lack): the input is skipped. */
static uint8_t *envelope(const choice *c, const uint8_t *inner, size_t len, size_t *out_len)
{
    int raw_content;
    const EVP_CIPHER *cipher = choice_cipher(c, &raw_content);
    uint8_t *out = NULL;
    if (raw_content) {
        out = malloc(len ? len : 1);
        if (out != NULL && len > 0)
            memcpy(out, inner, len);
        *out_len = len;
        return out;
    }
    STACK_OF(X509) *recips = sk_X509_new_null();
    BIO *in = BIO_new_mem_buf(len > 0 ? inner : (const uint8_t *)"", (int)len);
    CMS_ContentInfo *env = NULL;
    unsigned char *der = NULL;
    int n = 0;
    if (recips != NULL && in != NULL && sk_X509_push(recips, G.ra_cert) &&
        (env = CMS_encrypt(recips, in, cipher, CMS_BINARY)) != NULL &&
        (n = i2d_CMS_ContentInfo(env, &der)) > 0 && (out = malloc((size_t)n)) != NULL) {
        memcpy(out, der, (size_t)n);
        *out_len = (size_t)n;
    }
    OPENSSL_free(der);
    CMS_ContentInfo_free(env);
    BIO_free(in);
    sk_X509_free(recips);
    ERR_clear_error();
    return out;
}

static int add_attr(CMS_SignerInfo *si, int nid, int type, const void *v, int len)
{
    return CMS_signed_add1_attr_by_NID(si, nid, type, v, len) == 1;
}

/* The signed attributes the choice asks for. */
static int add_attrs(const choice *c, CMS_SignerInfo *si)
{
    const scep_oids *o = scep_oid_get();
    char num[16];
    const char *type_txt = num;
    if (c->type_sel == 6 && !c->type_num)
        type_txt = "1x";
    else if (c->type_sel == 7 && !c->type_num)
        type_txt = "12345";
    else
        snprintf(num, sizeof(num), "%d", c->type_value);
    if (!c->no_txid && c->txid_len > 0 &&
        !add_attr(si, o->transaction_id, c->txid_utf8 ? V_ASN1_UTF8STRING : V_ASN1_PRINTABLESTRING,
                  c->txid, (int)c->txid_len))
        return -1;
    if (!c->no_type) {
        if (c->type_int) {
            ASN1_INTEGER *ai = ASN1_INTEGER_new();
            int ok = ai != NULL && ASN1_INTEGER_set(ai, c->type_value) &&
                     CMS_signed_add1_attr_by_NID(si, o->message_type, V_ASN1_INTEGER, ai, -1) == 1;
            ASN1_INTEGER_free(ai);
            if (!ok)
                return -1;
        } else if (!add_attr(si, o->message_type, V_ASN1_PRINTABLESTRING, type_txt,
                             (int)strlen(type_txt))) {
            return -1;
        }
    }
    if (!c->no_nonce &&
        !add_attr(si, o->sender_nonce, c->nonce_str ? V_ASN1_PRINTABLESTRING : V_ASN1_OCTET_STRING,
                  c->nonce, c->short_nonce ? SCEP_NONCE_LEN - 1 : SCEP_NONCE_LEN))
        return -1;
    if (c->extra_attr &&
        !add_attr(si, NID_pkcs9_unstructuredName, V_ASN1_PRINTABLESTRING, "fuzz", 4))
        return -1;
    return 0;
}

/* The pkiMessage the choice describes around econtent; NULL when it cannot be built. */
static uint8_t *pkimessage(const choice *c, const uint8_t *econtent, size_t elen, size_t *out_len)
{
    const unsigned int flags = CMS_BINARY | CMS_PARTIAL | CMS_NOSMIMECAP;
    CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
    CMS_SignerInfo *si = cms != NULL
        ? CMS_add1_signer(cms, G.signer_cert[c->rsa], G.signer_key[c->rsa], choice_md(c),
                          flags | (c->no_cert ? CMS_NOCERTS : 0))
        : NULL;
    BIO *in = BIO_new_mem_buf(elen > 0 ? econtent : (const uint8_t *)"", (int)elen);
    unsigned char *der = NULL;
    uint8_t *out = NULL;
    int n = 0;
    if (si == NULL || in == NULL || add_attrs(c, si) != 0)
        goto out;
    if (c->detached)
        CMS_set_detached(cms, 1);
    if (CMS_final(cms, in, NULL, CMS_BINARY) != 1)
        goto out;
    if (c->corrupt) {
        ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);
        if (sig == NULL || ASN1_STRING_length(sig) < 1)
            goto out;
        sig->data[ASN1_STRING_length(sig) - 1] ^= 0x01;
    }
    if ((n = i2d_CMS_ContentInfo(cms, &der)) > 0 && (out = malloc((size_t)n)) != NULL) {
        memcpy(out, der, (size_t)n);
        *out_len = (size_t)n;
    }
out:
    OPENSSL_free(der);
    BIO_free(in);
    CMS_ContentInfo_free(cms);
    ERR_clear_error();
    return out;
}

/* What scep_parse must say of the message the choice built. */
static int expected_parse(const choice *c)
{
    int txid_ok = c->txid_len <= SCEP_TXID_MAX;
    for (size_t i = 0; i < c->txid_len; i++)
        txid_ok = txid_ok && c->txid[i] >= 0x20 && c->txid[i] <= 0x7e;
    int type_ok = !c->no_type && !c->type_int && (c->type_num || c->type_sel < 6);
    int md = c->md_sel;
    int md_ok = md == 0 || md == 1 || md == 2 || md == 6 || md == 7 || (md == 3 && c->allow);
    if (c->no_txid || c->txid_len == 0 || c->no_nonce || c->short_nonce || c->nonce_str ||
        !type_ok)
        return REJ_MISSING_ATTR;
    if (!txid_ok)
        return REJ_BAD_TXID;
    if (c->no_cert)
        return REJ_NO_SIGNER_CERT;
    if (!md_ok)
        return REJ_SIG_DIGEST;
    if (c->corrupt || c->detached)      /* detached: nothing to check the signature over */
        return REJ_BAD_SIGNATURE;
    return REJ_NONE;
}

/* What scep_open_envelope must say (REJ__COUNT: any documented result). */
static int expected_open(const choice *c, size_t inner_len)
{
    switch (c->cipher_sel) {
    case 0: case 1: case 2: case 3: return inner_len > 0 ? REJ_NONE : REJ_NO_ENVELOPE;
    case 4: return !c->allow ? REJ_CIPHER : inner_len > 0 ? REJ_NONE : REJ_NO_ENVELOPE;
    case 5: return REJ_CIPHER;
    case 6: return REJ_NO_ENVELOPE;       /* AuthEnvelopedData is not an EnvelopedData */
    default: return REJ__COUNT;
    }
}

static int choice_nid(const choice *c)
{
    static const int nids[5] = { NID_aes_128_cbc, NID_aes_192_cbc, NID_aes_256_cbc,
                                 NID_des_ede3_cbc, NID_des_cbc };
    return c->cipher_sel < 5 ? nids[c->cipher_sel] : NID_undef;
}

static int is_refusal(int rc)
{
    return rc > REJ_NONE && rc < REJ__COUNT && reject_failinfo(rc) != SCEP_FAIL_NONE;
}

/* The SUCCESS envelope decrypted with the requester's key (CMS directly: to an EC signer
 * the server uses key agreement, which the PKCS7 view of scep_open_envelope does not read). */
static int decrypt_reply(const scep_request *back, const scep_request *req, BIO *out)
{
    const unsigned char *p = back->envelope;
    CMS_ContentInfo *env = back->envelope != NULL
        ? d2i_CMS_ContentInfo(NULL, &p, (long)back->envelope_len) : NULL;
    EVP_PKEY *key = G.signer_key[X509_cmp(req->signer, G.signer_cert[1]) == 0];
    int ok = env != NULL && CMS_decrypt_set1_pkey_and_peer(env, key, req->signer, NULL) == 1 &&
             CMS_decrypt(env, NULL, NULL, NULL, out, CMS_BINARY) == 1;
    CMS_ContentInfo_free(env);
    return ok;
}

/* A CertRep SUCCESS for req parses back (REJ_NONE, messageType CertRep, the same
 * transactionID, signed by the RA) and decrypts with the signer's key to content. FAILURE
 * and PENDING are detached (no content), which scep_parse does not verify: not parsed back. */
static void check_reply(const scep_request *req, const uint8_t *rep, size_t len, int status,
                        const uint8_t *content, size_t content_len)
{
    scep_request back;
    BIO *out = NULL;
    char *got = NULL;
    if (status != SCEP_SUCCESS)
        return;
    if (scep_parse(rep, len, 0, &back) != REJ_NONE || back.msg_type != SCEP_MSG_CERTREP ||
        back.txid_len != req->txid_len || memcmp(back.txid, req->txid, req->txid_len) != 0 ||
        X509_cmp(back.signer, G.ra_cert) != 0 || (out = BIO_new(BIO_s_mem())) == NULL ||
        !decrypt_reply(&back, req, out) || BIO_get_mem_data(out, &got) != (long)content_len ||
        memcmp(got, content, content_len) != 0)
        abort();
    BIO_free(out);
    scep_request_clear(&back);
    ERR_clear_error();
}

/* Answers req as the server would and checks the answer; content: the SUCCESS degenerate. */
static void answer(const scep_request *req, int status, int rej, const uint8_t *content,
                   size_t content_len)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    int rc = scep_certrep_content(req, status, rej != REJ_NONE ? reject_failinfo(rej) : 0,
                                  rej != REJ_NONE ? reject_text(rej) : NULL, content,
                                  content_len, G.ra_key, G.ra_cert, &out, &outlen);
    if (rc != 0 || out == NULL || outlen == 0)
        abort();
    check_reply(req, out, outlen, status, content, content_len);
    free(out);
}

/* A PKCSReq or RenewalReq whose envelope opened: the CSR checks, and the CertRep. */
static void enroll(const scep_request *req)
{
    int initial = req->msg_type == SCEP_MSG_PKCSREQ;
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    uint8_t *deg = NULL;
    size_t deg_len = 0;
    int rej = issue_check_csr(initial ? G.initial : G.renewal, req->inner, req->inner_len,
                              initial, &csr);
    if (rej == REJ_NONE) {
        if (csr == NULL)
            abort();
        rej = issue_build(initial ? G.initial : G.renewal, csr, &cert);
        if ((rej == REJ_NONE) != (cert != NULL) || (rej != REJ_NONE && !is_refusal(rej)))
            abort();
    } else if (!is_refusal(rej) || csr != NULL) {
        abort();
    }
    if (rej == REJ_NONE) {
        STACK_OF(X509) *one = sk_X509_new_null();
        if (one == NULL || !sk_X509_push(one, cert) || scep_degenerate(one, &deg, &deg_len) != 0)
            abort();
        sk_X509_free(one);
        answer(req, SCEP_SUCCESS, REJ_NONE, deg, deg_len);
    } else {
        answer(req, SCEP_FAILURE, rej, NULL, 0);
    }
    free(deg);
    X509_free(cert);
    X509_REQ_free(csr);
    ERR_clear_error();
}

/* GetCert / GetCRL whose envelope opened: an IssuerAndSerialNumber, answered with the signer
 * certificate or, for GetCRL, the content itself as the "CRL" (copied, never parsed). */
static void query(const scep_request *req)
{
    const unsigned char *p = req->inner;
    PKCS7_ISSUER_AND_SERIAL *ias = d2i_PKCS7_ISSUER_AND_SERIAL(NULL, &p, (long)req->inner_len);
    uint8_t *deg = NULL;
    size_t deg_len = 0;
    if (ias == NULL) {
        answer(req, SCEP_FAILURE, REJ_BAD_QUERY, NULL, 0);
    } else {
        int rc = req->msg_type == SCEP_MSG_GETCRL
                     ? scep_degenerate_crl(req->inner, req->inner_len, &deg, &deg_len)
                     : scep_degenerate(G.certs, &deg, &deg_len);
        if (rc != 0 || deg == NULL)
            abort();
        answer(req, SCEP_SUCCESS, REJ_NONE, deg, deg_len);
    }
    free(deg);
    PKCS7_ISSUER_AND_SERIAL_free(ias);
    ERR_clear_error();
}

static void structured(const uint8_t *data, size_t size)
{
    choice c;
    scep_request req;
    uint8_t *inner = NULL, *econtent = NULL, *msg = NULL;
    size_t inner_len = 0, elen = 0, mlen = 0;

    memset(&req, 0, sizeof(req));
    if (take_choice(data, size, &c) != 0 || (inner = inner_content(&c, &inner_len)) == NULL ||
        (econtent = envelope(&c, inner, inner_len, &elen)) == NULL ||
        (msg = pkimessage(&c, econtent, elen, &mlen)) == NULL)
        goto out;
    int want = expected_parse(&c);
    int rc = scep_parse(msg, mlen, c.allow, &req);
    if (rc != want)
        abort();
    if (rc != REJ_NONE) {
        answer(&req, SCEP_FAILURE, rc, NULL, 0);
        goto out;
    }
    if (req.msg_type != c.type_value || req.txid_len != c.txid_len ||
        memcmp(req.txid, c.txid, c.txid_len) != 0 ||
        memcmp(req.sender_nonce, c.nonce, SCEP_NONCE_LEN) != 0 ||
        X509_cmp(req.signer, G.signer_cert[c.rsa]) != 0 || req.envelope_len != elen ||
        (elen > 0 && memcmp(req.envelope, econtent, elen) != 0))
        abort();
    int orc = scep_open_envelope(&req, G.ra_key, G.ra_cert, c.allow);
    int want_open = expected_open(&c, inner_len);
    check_opened(&req, orc, c.allow);
    if (want_open != REJ__COUNT && orc != want_open)
        abort();
    if (orc == REJ_NONE && want_open == REJ_NONE &&
        (req.inner_len != inner_len || memcmp(req.inner, inner, inner_len) != 0 ||
         req.cipher_nid != choice_nid(&c)))
        abort();
    if (orc != REJ_NONE)
        answer(&req, SCEP_FAILURE, orc, NULL, 0);
    else if (req.msg_type == SCEP_MSG_PKCSREQ || req.msg_type == SCEP_MSG_RENEWALREQ)
        enroll(&req);
    else if (req.msg_type == SCEP_MSG_GETCERT || req.msg_type == SCEP_MSG_GETCRL)
        query(&req);
    else if (req.msg_type == SCEP_MSG_CERTPOLL)
        answer(&req, SCEP_PENDING, REJ_NONE, NULL, 0);
    else
        answer(&req, SCEP_FAILURE, REJ_UNKNOWN_TYPE, NULL, 0);
out:
    scep_request_clear(&req);
    free(inner);
    free(econtent);
    free(msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!G.ready)
        init();
    if (size > 0 && data[0] == 0x30)
        raw(data, size);
    else
        structured(data, size);
    return 0;
}
