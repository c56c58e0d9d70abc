/* The CertRep's SignedData written as DER. See certrep_der.h. */
#include "engine/scep/certrep_der.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "engine/common/keyclock.h"
#include "engine/scep/der.h"

/* Object identifiers, DER with their tag. */
#define SCEP_ATTR_OID(x) { 0x06, 0x0a, 0x60, 0x86, 0x48, 0x01, 0x86, 0xf8, 0x45, 0x01, 0x09, x }
#define PKCS9_OID(x) { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, x }
static const uint8_t OID_MESSAGE_TYPE[] = SCEP_ATTR_OID(2);
static const uint8_t OID_PKI_STATUS[] = SCEP_ATTR_OID(3);
static const uint8_t OID_FAIL_INFO[] = SCEP_ATTR_OID(4);
static const uint8_t OID_SENDER_NONCE[] = SCEP_ATTR_OID(5);
static const uint8_t OID_RECIPIENT_NONCE[] = SCEP_ATTR_OID(6);
static const uint8_t OID_TRANSACTION_ID[] = SCEP_ATTR_OID(7);
static const uint8_t OID_FAIL_INFO_TEXT[] = { 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x18, 0x01 };
static const uint8_t OID_CONTENT_TYPE[] = PKCS9_OID(3);
static const uint8_t OID_MESSAGE_DIGEST[] = PKCS9_OID(4);
static const uint8_t OID_SIGNING_TIME[] = PKCS9_OID(5);
static const uint8_t OID_SIGNED_DATA[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02 };
static const uint8_t OID_DATA[] = { 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01 };

/* AlgorithmIdentifiers: the digest with absent parameters, the signature as CMS writes it. */
#define DIGEST_ALG(x) { 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, x }
#define ECDSA_ALG(x) { 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, x }
static const uint8_t ALG_SHA256[] = DIGEST_ALG(1), ALG_SHA384[] = DIGEST_ALG(2),
                     ALG_SHA512[] = DIGEST_ALG(3);
static const uint8_t ALG_ECDSA_SHA256[] = ECDSA_ALG(2), ALG_ECDSA_SHA384[] = ECDSA_ALG(3),
                     ALG_ECDSA_SHA512[] = ECDSA_ALG(4);
static const uint8_t ALG_RSA[] = { 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d,
                                   0x01, 0x01, 0x01, 0x05, 0x00 };

#define MAX_ATTRS 11

/* One signed attribute: SEQUENCE { oid, SET { tag value } }. */
typedef struct attr {
    const uint8_t *oid;
    size_t oid_len;
    uint8_t tag;
    const uint8_t *v;
    size_t vlen;
} attr;

/* The encoded pieces the SignedData is assembled from. */
typedef struct parts {
    attr a[MAX_ATTRS];
    int n;
    const uint8_t *dig_alg, *sig_alg;
    size_t dig_alg_len, sig_alg_len;
    uint8_t *sattrs;                 /* SET OF the attributes, sorted, universal SET tag */
    size_t sattrs_len;
    uint8_t *sig;
    size_t sig_len;
} parts;

static size_t tlv(size_t n)
{
    return der_hdr_size(n) + n;
}

static void add(parts *p, const uint8_t *oid, size_t oid_len, uint8_t tag, const void *v,
                size_t vlen)
{
    p->a[p->n++] = (attr){ oid, oid_len, tag, v, vlen };
}

static size_t attr_len(const attr *a)
{
    return tlv(a->oid_len + tlv(tlv(a->vlen)));
}

static uint8_t *attr_write(uint8_t *p, const attr *a)
{
    p = der_hdr(p, 0x30, a->oid_len + tlv(tlv(a->vlen)));
    memcpy(p, a->oid, a->oid_len);
    p += a->oid_len;
    p = der_hdr(p, 0x31, tlv(a->vlen));
    p = der_hdr(p, a->tag, a->vlen);
    if (a->vlen > 0)
        memcpy(p, a->v, a->vlen);
    return p + a->vlen;
}

/* X.690 11.6 as OpenSSL sorts a SET OF: the encodings compared as octet strings, a prefix
 * first. */
static int enc_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c != 0 ? c : alen < blen ? -1 : alen > blen;
}

/* p->sattrs: the attributes encoded one by one, then written as a SET in sorted order. */
static int encode_attrs(parts *p)
{
    size_t off[MAX_ATTRS], len[MAX_ATTRS], total = 0;
    int order[MAX_ATTRS], rc = -1;

    for (int i = 0; i < p->n; i++) {
        len[i] = attr_len(&p->a[i]);
        off[i] = total;
        total += len[i];
    }
    uint8_t *tmp = malloc(total), *w = tmp;
    if (tmp == NULL || (p->sattrs = malloc(tlv(total))) == NULL)
        goto out;
    for (int i = 0; i < p->n; i++) {
        w = attr_write(w, &p->a[i]);
        int j = i;              /* insertion sort: at most MAX_ATTRS entries */
        for (; j > 0 && enc_cmp(tmp + off[order[j - 1]], len[order[j - 1]], tmp + off[i],
                                len[i]) > 0; j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    w = der_hdr(p->sattrs, 0x31, total);
    for (int i = 0; i < p->n; i++) {
        memcpy(w, tmp + off[order[i]], len[order[i]]);
        w += len[order[i]];
    }
    p->sattrs_len = (size_t)(w - p->sattrs);
    rc = 0;
out:
    free(tmp);
    return rc;
}

/* signingTime as X509_gmtime_adj writes it: UTCTime through 2049, GeneralizedTime after. */
static size_t signing_time(char buf[16], uint8_t *tag)
{
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL)
        return 0;
    int y = tm.tm_year + 1900;
    *tag = y >= 1950 && y < 2050 ? 0x17 : 0x18;
    int n = *tag == 0x17
        ? snprintf(buf, 16, "%02d%02d%02d%02d%02d%02dZ", y % 100, tm.tm_mon + 1, tm.tm_mday,
                   tm.tm_hour, tm.tm_min, tm.tm_sec)
        : snprintf(buf, 16, "%04d%02d%02d%02d%02d%02dZ", y % 10000, tm.tm_mon + 1, tm.tm_mday,
                   tm.tm_hour, tm.tm_min, tm.tm_sec);
    return n > 0 && n < 16 ? (size_t)n : 0;
}

/* The algorithm identifiers for key and md; 0 when this writer does not cover them. */
static int pick_algs(parts *p, EVP_PKEY *key, const EVP_MD *md)
{
    int nid = EVP_MD_get_type(md), ec = EVP_PKEY_is_a(key, "EC");
    if (!ec && !EVP_PKEY_is_a(key, "RSA"))
        return 0;
#define PICK(dig, ecdsa) (p->dig_alg = dig, p->dig_alg_len = sizeof(dig), \
                          p->sig_alg = ec ? ecdsa : ALG_RSA, \
                          p->sig_alg_len = ec ? sizeof(ecdsa) : sizeof(ALG_RSA), 1)
    switch (nid) {
    case NID_sha256: return PICK(ALG_SHA256, ALG_ECDSA_SHA256);
    case NID_sha384: return PICK(ALG_SHA384, ALG_ECDSA_SHA384);
    case NID_sha512: return PICK(ALG_SHA512, ALG_ECDSA_SHA512);
    default: return 0;
    }
#undef PICK
}

/* A sign-initialised context per thread for the last (key, md) it signed with; every
 * signature runs on a copy (EVP_PKEY_CTX_dup), as issue_der.c does for the CA.
 * Why: EVP_DigestSignInit_ex per reply fetched the signature and the digest and set up a
 * context again (~0.5 % of an enrollment). The template holds a reference on the key, so a
 * key freed by a reload cannot come back at the same address while it is cached here. */
typedef struct signer_tmpl {
    EVP_PKEY *key;
    const EVP_MD *md;
    EVP_PKEY_CTX *ctx;
} signer_tmpl;

static pthread_key_t g_signer;
static int g_signer_ok;
static pthread_once_t g_signer_once = PTHREAD_ONCE_INIT;

static void signer_free(void *p)
{
    signer_tmpl *t = p;
    if (t != NULL)
        EVP_PKEY_CTX_free(t->ctx);
    free(t);
}

static void signer_init(void)
{
    g_signer_ok = pthread_key_create(&g_signer, signer_free) == 0;
}

/* This thread's template for key and md, made when the last one was for another pair;
 * NULL when it cannot be made (the CertRep then fails, as a failing EVP_DigestSignInit_ex
 * made it fail before). */
static EVP_PKEY_CTX *signer_get(EVP_PKEY *key, const EVP_MD *md)
{
    pthread_once(&g_signer_once, signer_init);
    if (!g_signer_ok)
        return NULL;
    signer_tmpl *t = pthread_getspecific(g_signer);
    if (t == NULL && (t = calloc(1, sizeof(*t))) != NULL && pthread_setspecific(g_signer, t) != 0) {
        free(t);
        return NULL;
    }
    if (t == NULL)
        return NULL;
    if (t->ctx != NULL && t->key == key && t->md == md)
        return t->ctx;
    EVP_PKEY_CTX_free(t->ctx);
    *t = (signer_tmpl){ .key = key, .md = md, .ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL) };
    if (t->ctx == NULL || EVP_PKEY_sign_init(t->ctx) != 1 ||
        EVP_PKEY_CTX_set_signature_md(t->ctx, md) != 1 ||
        (EVP_PKEY_is_a(key, "RSA") && EVP_PKEY_CTX_set_rsa_padding(t->ctx, RSA_PKCS1_PADDING) != 1)) {
        EVP_PKEY_CTX_free(t->ctx);
        *t = (signer_tmpl){ 0 };
    }
    return t->ctx;
}

/* The signature over the DER SET OF, in the key's provider: the digest, then one sign on a
 * copy of this thread's template. Only the signing call is timed (keyclock.h), as for the
 * CA's signature in issue_der.c. */
static int sign_attrs(parts *p, EVP_PKEY *key, const EVP_MD *md)
{
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    EVP_PKEY_CTX *tmpl = signer_get(key, md), *c = NULL;
    int size = EVP_PKEY_get_size(key), ok = 0;

    if (tmpl == NULL || size <= 0 || (p->sig = malloc((size_t)size)) == NULL ||
        EVP_Digest(p->sattrs, p->sattrs_len, dg, &dlen, md, NULL) != 1 ||
        (c = EVP_PKEY_CTX_dup(tmpl)) == NULL)
        goto out;
    p->sig_len = (size_t)size;
    uint64_t t0 = keyclock_begin();
    ok = EVP_PKEY_sign(c, p->sig, &p->sig_len, dg, dlen) == 1;
    keyclock_end(t0);
out:
    EVP_PKEY_CTX_free(c);
    return ok && p->sig_len <= (size_t)size;
}

/* ContentInfo { signedData, [0] SignedData }, front to back (see certrep_der.h). */
static int assemble(const parts *p, X509 *cert, const uint8_t *envelope, size_t envelope_len,
                    uint8_t **out, size_t *outlen)
{
    const X509_NAME *issuer = X509_get_issuer_name(cert);
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    int cert_len = i2d_X509(cert, NULL);
    int issuer_len = i2d_X509_NAME(issuer, NULL);
    int serial_len = i2d_ASN1_INTEGER(serial, NULL);
    if (cert_len <= 0 || issuer_len <= 0 || serial_len <= 0)
        return -1;

    size_t ias = (size_t)issuer_len + (size_t)serial_len;
    size_t si = 3 + tlv(ias) + p->dig_alg_len + p->sattrs_len + p->sig_alg_len + tlv(p->sig_len);
    size_t econtent = envelope != NULL ? tlv(tlv(envelope_len)) : 0;
    size_t eci = sizeof(OID_DATA) + econtent;
    size_t sd = 3 + tlv(p->dig_alg_len) + tlv(eci) + tlv((size_t)cert_len) + tlv(tlv(si));
    size_t ci = sizeof(OID_SIGNED_DATA) + tlv(tlv(sd));
    size_t total = tlv(ci);
    uint8_t *b = malloc(total), *w = b;
    if (b == NULL)
        return -1;
    w = der_hdr(w, 0x30, ci);
    memcpy(w, OID_SIGNED_DATA, sizeof(OID_SIGNED_DATA));
    w += sizeof(OID_SIGNED_DATA);
    w = der_hdr(w, 0xa0, tlv(sd));
    w = der_hdr(w, 0x30, sd);
    *w++ = 0x02; *w++ = 0x01; *w++ = 0x01;                 /* version 1 */
    w = der_hdr(w, 0x31, p->dig_alg_len);
    memcpy(w, p->dig_alg, p->dig_alg_len);
    w += p->dig_alg_len;
    w = der_hdr(w, 0x30, eci);
    memcpy(w, OID_DATA, sizeof(OID_DATA));
    w += sizeof(OID_DATA);
    if (envelope != NULL) {
        w = der_hdr(w, 0xa0, tlv(envelope_len));
        w = der_hdr(w, 0x04, envelope_len);
        memcpy(w, envelope, envelope_len);
        w += envelope_len;
    }
    w = der_hdr(w, 0xa0, (size_t)cert_len);                /* certificates [0] */
    i2d_X509(cert, &w);
    w = der_hdr(w, 0x31, tlv(si));
    w = der_hdr(w, 0x30, si);
    *w++ = 0x02; *w++ = 0x01; *w++ = 0x01;                 /* SignerInfo version 1 */
    w = der_hdr(w, 0x30, ias);
    i2d_X509_NAME(issuer, &w);
    i2d_ASN1_INTEGER(serial, &w);
    memcpy(w, p->dig_alg, p->dig_alg_len);
    w += p->dig_alg_len;
    memcpy(w, p->sattrs, p->sattrs_len);
    *w = 0xa0;                                             /* signedAttrs [0] IMPLICIT */
    w += p->sattrs_len;
    memcpy(w, p->sig_alg, p->sig_alg_len);
    w += p->sig_alg_len;
    w = der_hdr(w, 0x04, p->sig_len);
    memcpy(w, p->sig, p->sig_len);
    w += p->sig_len;
    if ((size_t)(w - b) != total) {
        free(b);
        return -1;
    }
    *out = b;
    *outlen = total;
    return 0;
}

int scep_certrep_der(const scep_request *req, int status, int failinfo, const char *failtext,
                     const uint8_t *envelope, size_t envelope_len, EVP_PKEY *key, X509 *cert,
                     const EVP_MD *md, uint8_t **out, size_t *outlen)
{
    parts p;
    char type[8], st[8], fi[8], when[16];
    uint8_t nonce[SCEP_NONCE_LEN], digest[EVP_MAX_MD_SIZE], time_tag = 0;
    unsigned int dlen = 0;
    size_t when_len = signing_time(when, &time_tag);
    int rc = -1;

    memset(&p, 0, sizeof(p));
    if (md == NULL || key == NULL || cert == NULL || !pick_algs(&p, key, md)) {
        rc = 1;
        goto out;
    }
    if (when_len == 0 || RAND_bytes(nonce, sizeof(nonce)) != 1 ||
        EVP_Digest(envelope != NULL ? envelope : (const uint8_t *)"", envelope_len, digest,
                   &dlen, md, NULL) != 1)
        goto out;
    snprintf(type, sizeof(type), "%d", SCEP_MSG_CERTREP);
    snprintf(st, sizeof(st), "%d", status);
    snprintf(fi, sizeof(fi), "%d", failinfo);
    add(&p, OID_MESSAGE_TYPE, sizeof(OID_MESSAGE_TYPE), V_ASN1_PRINTABLESTRING, type, strlen(type));
    add(&p, OID_PKI_STATUS, sizeof(OID_PKI_STATUS), V_ASN1_PRINTABLESTRING, st, strlen(st));
    if (status == SCEP_FAILURE) {
        add(&p, OID_FAIL_INFO, sizeof(OID_FAIL_INFO), V_ASN1_PRINTABLESTRING, fi, strlen(fi));
        if (failtext != NULL)
            add(&p, OID_FAIL_INFO_TEXT, sizeof(OID_FAIL_INFO_TEXT), V_ASN1_UTF8STRING, failtext,
                strlen(failtext));
    }
    /* The transactionID's bytes as sent, also when they were refused: the client matches
     * them. */
    if (req->txid_sent != NULL)
        add(&p, OID_TRANSACTION_ID, sizeof(OID_TRANSACTION_ID), V_ASN1_PRINTABLESTRING,
            req->txid_sent->data, (size_t)req->txid_sent->length);
    else if (req->txid_len > 0)
        add(&p, OID_TRANSACTION_ID, sizeof(OID_TRANSACTION_ID), V_ASN1_PRINTABLESTRING,
            req->txid, req->txid_len);
    if (req->has_nonce)
        add(&p, OID_RECIPIENT_NONCE, sizeof(OID_RECIPIENT_NONCE), V_ASN1_OCTET_STRING,
            req->sender_nonce, SCEP_NONCE_LEN);
    add(&p, OID_SENDER_NONCE, sizeof(OID_SENDER_NONCE), V_ASN1_OCTET_STRING, nonce, sizeof(nonce));
    add(&p, OID_CONTENT_TYPE, sizeof(OID_CONTENT_TYPE), V_ASN1_OBJECT, OID_DATA + 2,
        sizeof(OID_DATA) - 2);
    add(&p, OID_SIGNING_TIME, sizeof(OID_SIGNING_TIME), time_tag, when, when_len);
    add(&p, OID_MESSAGE_DIGEST, sizeof(OID_MESSAGE_DIGEST), V_ASN1_OCTET_STRING, digest, dlen);

    if (encode_attrs(&p) != 0 || !sign_attrs(&p, key, md))
        goto out;
    rc = assemble(&p, cert, envelope, envelope_len, out, outlen);
out:
    free(p.sattrs);
    free(p.sig);
    ERR_clear_error();
    return rc;
}
