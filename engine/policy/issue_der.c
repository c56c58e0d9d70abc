/* The issued certificate written as DER (see issue_internal.h).
 *
 * Why: building an X509 object and X509_sign cost ~4 % of scepd's CPU per enrollment outside
 * the CA's private-key operation (docs/benchmarks.md): X509_NAME_set copies each name through
 * an encode and a decode, every extension is allocated, encoded and stacked, X509_sign fetches
 * a digest and a signature algorithm and encodes the TBS, and the certificate was encoded
 * again for the store record and the CertRep. Here the parts every certificate of the CA
 * shares (AlgorithmIdentifier, issuer name, authorityKeyIdentifier, CDP, AIA, each profile's
 * constant extensions) are encoded once, the per-certificate parts (serial, validity, subject,
 * the request's SubjectPublicKeyInfo as sent, SKI, SAN) are written around them in one buffer,
 * and a signature context prepared once per issuer is duplicated per certificate (no fetch).
 */
#include "engine/policy/issue_internal.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "engine/common/keyclock.h"
#include "engine/scep/der.h"
#include "engine/scep/reject.h"

#define AID_MAX 128

struct issue_der {
    EVP_PKEY_CTX *sign_tmpl;        /* sign-initialised for the CA key, digest set: dup'd per use */
    EVP_MD *md;                     /* the signature's digest, fetched once */
    EVP_MD *sha1;                   /* for the subjectKeyIdentifier */
    size_t sig_max;
    uint8_t aid[AID_MAX];           /* signature AlgorithmIdentifier, as the provider gives it */
    size_t aid_len;
    uint8_t *issuer;                /* the CA certificate's subject, as encoded there */
    size_t issuer_len;
    uint8_t *tail;                  /* AKI, then CDP and AIA when configured: whole Extensions */
    size_t tail_len;
    size_t aki_len;                 /* the AKI's part of tail: the SAN goes after it */
};

/* extnID of subjectKeyIdentifier and subjectAltName; TRUE for critical. */
static const uint8_t OID_SKI[] = { 0x06, 0x03, 0x55, 0x1d, 0x0e };
static const uint8_t OID_SAN[] = { 0x06, 0x03, 0x55, 0x1d, 0x11 };
static const uint8_t CRITICAL[] = { 0x01, 0x01, 0xff };
#define SKI_LEN 20                  /* SHA-1 */
#define SKI_EXT_LEN (2 + sizeof(OID_SKI) + 2 + 2 + SKI_LEN)

static size_t tlv(size_t n)
{
    return der_hdr_size(n) + n;
}

static uint8_t *put(uint8_t *w, const void *p, size_t n)
{
    memcpy(w, p, n);
    return w + n;
}

void issue_der_destroy(issue_der *d)
{
    if (d == NULL)
        return;
    EVP_PKEY_CTX_free(d->sign_tmpl);
    EVP_MD_free(d->md);
    EVP_MD_free(d->sha1);
    free(d->issuer);
    free(d->tail);
    free(d);
}

/* Appends the DER of e (may be NULL) to d->tail. 0 or -1. */
static int tail_add(issue_der *d, const X509_EXTENSION *e)
{
    int n = e != NULL ? i2d_X509_EXTENSION(e, NULL) : 0;
    if (n < 0)
        return -1;
    if (n == 0)
        return 0;
    uint8_t *t = realloc(d->tail, d->tail_len + (size_t)n), *w;
    if (t == NULL)
        return -1;
    d->tail = t;
    w = t + d->tail_len;
    if (i2d_X509_EXTENSION(e, &w) != n)
        return -1;
    d->tail_len += (size_t)n;
    return 0;
}

/* The signature context: what X509_sign would set up per call, made once. The
 * AlgorithmIdentifier is the provider's (what ASN1_item_sign_ctx writes), so token keys
 * (hsm/prov_signature.c) and software keys both say what they sign with. 0 or -1. */
static int make_signer(issue_der *d, EVP_PKEY *key, const char *md_name)
{
    OSSL_PARAM params[2];
    const EVP_MD *legacy = EVP_get_digestbyname(md_name);

    if (legacy == NULL || (d->md = EVP_MD_fetch(NULL, md_name, NULL)) == NULL ||
        (d->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL)) == NULL)
        return -1;
    d->sign_tmpl = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
    if (d->sign_tmpl == NULL || EVP_PKEY_sign_init(d->sign_tmpl) != 1 ||
        EVP_PKEY_CTX_set_signature_md(d->sign_tmpl, legacy) != 1)
        return -1;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA &&
        EVP_PKEY_CTX_set_rsa_padding(d->sign_tmpl, RSA_PKCS1_PADDING) != 1)
        return -1;
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, d->aid,
                                                  sizeof(d->aid));
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_PKEY_CTX_get_params(d->sign_tmpl, params) != 1 || params[0].return_size == 0 ||
        params[0].return_size > sizeof(d->aid))
        return -1;
    d->aid_len = params[0].return_size;
    int size = EVP_PKEY_get_size(key);
    if (size <= 0)
        return -1;
    d->sig_max = (size_t)size;
    return 0;
}

issue_der *issue_der_create(const ca_set *ca, const char *md_name, const X509_EXTENSION *cdp,
                            const X509_EXTENSION *aia)
{
    issue_der *d = calloc(1, sizeof(*d));
    const unsigned char *name = NULL;
    size_t name_len = 0;
    int type = EVP_PKEY_get_base_id(ca->ca_key), ok = 0;

    if (d == NULL || (type != EVP_PKEY_RSA && type != EVP_PKEY_EC))
        goto out;
    if (make_signer(d, ca->ca_key, md_name) != 0)
        goto out;
    /* The X509 path's issuer is a copy of ca_name, whose encoding is the CA certificate's. */
    if (X509_NAME_get0_der(ca->ca_name, &name, &name_len) != 1 || name_len == 0 ||
        (d->issuer = malloc(name_len)) == NULL)
        goto out;
    memcpy(d->issuer, name, name_len);
    d->issuer_len = name_len;
    if (profile_aki_extension_der(ca->ca_cert, &d->tail, &d->tail_len) != 0)
        goto out;
    d->aki_len = d->tail_len;
    if (tail_add(d, cdp) != 0 || tail_add(d, aia) != 0)
        goto out;
    ok = 1;
out:
    if (!ok) {
        issue_der_destroy(d);
        d = NULL;
    }
    ERR_clear_error();
    return d;
}

void issue_der_exts_make(const profile *p, issue_der_exts *e)
{
    memset(e, 0, sizeof(*e));
    for (int rsa = 0; rsa < 2; rsa++)
        if (profile_fixed_extensions_der(p, rsa, &e->der[rsa], &e->len[rsa]) != 0)
            e->der[rsa] = NULL;
}

void issue_der_exts_clear(issue_der_exts *e)
{
    free(e->der[0]);
    free(e->der[1]);
    memset(e, 0, sizeof(*e));
}

/* Year, month, day of a day count since 1970-01-01 (proleptic Gregorian; the civil-from-days
 * algorithm). gmtime_r would do, but takes glibc's time zone lock on every call. */
static void civil(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    unsigned doe = (unsigned)(days - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static uint8_t *digits(uint8_t *w, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        w[i] = (uint8_t)('0' + v % 10);
    return w + n;
}

/* UTCTime for the years 1950-2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5, and what
 * ASN1_TIME_set writes); at most 17 bytes at w. 0 or -1 (out of 0000-9999). */
static int put_time(uint8_t *w, int64_t t, size_t *len)
{
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400), year;
    unsigned secs = (unsigned)(t - days * 86400), mon, mday;

    civil(days, &year, &mon, &mday);
    if (year < 0 || year > 9999)
        return -1;
    int utc = year >= 1950 && year < 2050;
    uint8_t *p = w + 2;
    p = utc ? digits(p, (unsigned)(year % 100), 2) : digits(p, (unsigned)year, 4);
    p = digits(p, mon, 2);
    p = digits(p, mday, 2);
    p = digits(p, secs / 3600, 2);
    p = digits(p, secs / 60 % 60, 2);
    p = digits(p, secs % 60, 2);
    *p++ = 'Z';
    w[0] = utc ? 0x17 : 0x18;
    w[1] = (uint8_t)(p - w - 2);
    *len = (size_t)(p - w);
    return 0;
}

/* The request's SubjectPublicKeyInfo as the X509 path copies it: REJ_NONE and *der (caller
 * OPENSSL_free()s) with *bits, *nbits pointing at the key bits inside it, REJ_KEY_TYPE where
 * that copy would not be exact (algorithm parameters of a type no key has; a key bit string
 * with unused bits, or one the encoder would shorten), REJ_INTERNAL. */
static int spki_der(const X509_PUBKEY *spki, uint8_t **der, size_t *len, const uint8_t **bits,
                    size_t *nbits)
{
    ASN1_OBJECT *obj = NULL;
    const unsigned char *kb = NULL;
    int kn = 0, ptype = V_ASN1_UNDEF;
    X509_ALGOR *alg = NULL;
    unsigned char *enc = NULL;
    uint8_t hdr[8];

    if (X509_PUBKEY_get0_param(&obj, &kb, &kn, &alg, spki) != 1 || kn <= 0)
        return REJ_INTERNAL;
    X509_ALGOR_get0(NULL, &ptype, NULL, alg);
    if (ptype != V_ASN1_OBJECT && ptype != V_ASN1_SEQUENCE && ptype != V_ASN1_NULL &&
        ptype != V_ASN1_UNDEF)
        return REJ_KEY_TYPE;
    int n = i2d_X509_PUBKEY(spki, &enc);
    if (n <= 0)
        return REJ_INTERNAL;
    /* The encoding must end in BIT STRING { 0 unused bits, the key bits }: what the X509 path
     * writes after X509_PUBKEY_set0_param, which has no unused-bits count to carry. */
    size_t h = (size_t)(der_hdr(hdr, 0x03, (size_t)kn + 1) - hdr);
    size_t tail = h + 1 + (size_t)kn;
    if ((size_t)n < tail || memcmp(enc + n - tail, hdr, h) != 0 || enc[n - tail + h] != 0 ||
        memcmp(enc + n - kn, kb, (size_t)kn) != 0) {
        OPENSSL_free(enc);
        return REJ_KEY_TYPE;
    }
    *der = enc;
    *len = (size_t)n;
    *bits = enc + n - kn;
    *nbits = (size_t)kn;
    return REJ_NONE;
}

/* The subjectAltName Extension (critical when the subject is empty, RFC 5280 4.2.1.6) into a
 * malloc()ed buffer; *out NULL when san has no name. 0 or -1. */
static int san_ext(const GENERAL_NAMES *san, int critical, uint8_t **out, size_t *outlen)
{
    unsigned char *v = NULL;
    int ok = 0;

    *out = NULL;
    *outlen = 0;
    if (sk_GENERAL_NAME_num(san) <= 0)
        return 0;
    int vn = i2d_GENERAL_NAMES((GENERAL_NAMES *)san, &v);
    if (vn <= 0)
        goto out;
    size_t body = sizeof(OID_SAN) + (critical ? sizeof(CRITICAL) : 0) + tlv((size_t)vn);
    size_t total = tlv(body);
    uint8_t *b = malloc(total), *w = b;
    if (b == NULL)
        goto out;
    w = der_hdr(w, 0x30, body);
    w = put(w, OID_SAN, sizeof(OID_SAN));
    if (critical)
        w = put(w, CRITICAL, sizeof(CRITICAL));
    w = der_hdr(w, 0x04, (size_t)vn);
    put(w, v, (size_t)vn);
    *out = b;
    *outlen = total;
    ok = 1;
out:
    OPENSSL_free(v);
    return ok ? 0 : -1;
}

/* The pieces of one TBSCertificate, in order; lengths 0 for absent parts. */
typedef struct tbs_parts {
    uint8_t serial[2 + ISSUE_SERIAL_LEN];
    uint8_t times[2 * 17];
    size_t times_len;
    const uint8_t *subject;
    size_t subject_len;
    uint8_t *spki;                  /* OPENSSL_malloc()ed */
    size_t spki_len;
    uint8_t ski[SKI_EXT_LEN];
    uint8_t *san;                   /* malloc()ed */
    size_t san_len;
} tbs_parts;

/* The per-certificate parts, refused in the X509 path's order: the validity, the key's
 * encoding, the SANs. REJ_NONE or the answer. */
static int fill_parts(const issue_der *d, const issue_tbs *t, tbs_parts *p)
{
    const uint8_t *bits = NULL;
    size_t nbits = 0, l1 = 0, l2 = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc, pr;

    if (put_time(p->times, t->not_before, &l1) != 0 ||
        put_time(p->times + l1, t->not_after, &l2) != 0)
        return REJ_INTERNAL;
    p->times_len = l1 + l2;
    if ((rc = spki_der(t->spki, &p->spki, &p->spki_len, &bits, &nbits)) != REJ_NONE)
        return rc;
    if ((pr = profile_check_san(t->prof, t->san)) != PROFILE_OK)
        return issue_profile_reject(pr);
    p->serial[0] = 0x02;
    p->serial[1] = ISSUE_SERIAL_LEN;
    memcpy(p->serial + 2, t->serial, ISSUE_SERIAL_LEN);
    if (X509_NAME_get0_der(t->subject, &p->subject, &p->subject_len) != 1 ||
        EVP_Digest(bits, nbits, md, &mdlen, d->sha1, NULL) != 1 || mdlen != SKI_LEN ||
        san_ext(t->san, X509_NAME_entry_count(t->subject) == 0, &p->san, &p->san_len) != 0)
        return REJ_INTERNAL;
    uint8_t *w = der_hdr(p->ski, 0x30, SKI_EXT_LEN - 2);
    w = put(w, OID_SKI, sizeof(OID_SKI));
    w = der_hdr(w, 0x04, 2 + SKI_LEN);
    w = der_hdr(w, 0x04, SKI_LEN);
    put(w, md, SKI_LEN);
    return REJ_NONE;
}

/* Certificate { TBSCertificate, AlgorithmIdentifier, BIT STRING } with room for the
 * signature; *tbs, *tbs_len locate the TBS inside. The buffer holds the longest certificate
 * (signature of sig_max bytes); the caller writes the rest once the signature is made. */
static uint8_t *write_tbs(const issue_der *d, const issue_tbs *t, const tbs_parts *p,
                          uint8_t **tbs, size_t *tbs_len)
{
    static const uint8_t VERSION3[] = { 0xa0, 0x03, 0x02, 0x01, 0x02 };
    size_t exts = t->fixed_len + sizeof(p->ski) + d->tail_len + p->san_len;
    size_t body = sizeof(VERSION3) + sizeof(p->serial) + d->aid_len + d->issuer_len +
                  tlv(p->times_len) + p->subject_len + p->spki_len + tlv(tlv(exts));
    size_t outer_max = tlv(body) + d->aid_len + tlv(d->sig_max + 1);
    uint8_t *b = malloc(tlv(outer_max)), *w;
    if (b == NULL)
        return NULL;
    w = b + der_hdr_size(outer_max);   /* the outer header is written last, at its size */
    *tbs = w;
    w = der_hdr(w, 0x30, body);
    w = put(w, VERSION3, sizeof(VERSION3));
    w = put(w, p->serial, sizeof(p->serial));
    w = put(w, d->aid, d->aid_len);
    w = put(w, d->issuer, d->issuer_len);
    w = der_hdr(w, 0x30, p->times_len);
    w = put(w, p->times, p->times_len);
    w = put(w, p->subject, p->subject_len);
    w = put(w, p->spki, p->spki_len);
    w = der_hdr(w, 0xa3, tlv(exts));
    w = der_hdr(w, 0x30, exts);
    w = put(w, t->fixed, t->fixed_len);   /* the X509 path's order: profile_add_extensions */
    w = put(w, p->ski, sizeof(p->ski));
    w = put(w, d->tail, d->aki_len);
    if (p->san_len > 0)
        w = put(w, p->san, p->san_len);
    w = put(w, d->tail + d->aki_len, d->tail_len - d->aki_len);
    *tbs_len = (size_t)(w - *tbs);
    return b;
}

/* The CA's signature over tbs: the digest with the digest fetched once, then one sign on a
 * copy of the prepared context (a copy per call: a context is one thread's at a time). Only
 * the signing call is timed (keyclock.h). 1 or 0. */
static int sign(const issue_der *d, const uint8_t *tbs, size_t tbs_len, uint8_t *sig,
                size_t *sig_len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_PKEY_CTX *c = NULL;
    int ok = 0;

    if (EVP_Digest(tbs, tbs_len, md, &mdlen, d->md, NULL) != 1 ||
        (c = EVP_PKEY_CTX_dup(d->sign_tmpl)) == NULL)
        goto out;
    *sig_len = d->sig_max;
    uint64_t t0 = keyclock_begin();
    ok = EVP_PKEY_sign(c, sig, sig_len, md, mdlen) == 1;
    keyclock_end(t0);
out:
    EVP_PKEY_CTX_free(c);
    return ok && *sig_len <= d->sig_max;
}

int issue_der_sign(const issue_der *d, const issue_tbs *t, uint8_t **out, size_t *outlen)
{
    tbs_parts p;
    uint8_t *b = NULL, *tbs = NULL;
    size_t tbs_len = 0, sig_len = 0;

    memset(&p, 0, sizeof(p));
    int rc = fill_parts(d, t, &p);
    if (rc != REJ_NONE)
        goto out;
    rc = REJ_INTERNAL;
    if ((b = write_tbs(d, t, &p, &tbs, &tbs_len)) == NULL)
        goto out;
    uint8_t *w = tbs + tbs_len;
    w = put(w, d->aid, d->aid_len);
    /* BIT STRING { 0 unused bits, signature }: its header needs the signature's length, so
     * the signature is made at the longest header's offset and moved down if shorter. */
    size_t hmax = der_hdr_size(d->sig_max + 1);
    if (!sign(d, tbs, tbs_len, w + hmax + 1, &sig_len))
        goto out;
    size_t h = der_hdr_size(sig_len + 1);
    memmove(w + h + 1, w + hmax + 1, sig_len);
    w = der_hdr(w, 0x03, sig_len + 1);
    *w++ = 0x00;
    w += sig_len;
    size_t content = (size_t)(w - tbs);
    uint8_t *start = tbs - der_hdr_size(content);
    der_hdr(start, 0x30, content);
    size_t total = (size_t)(w - start);
    if (start != b)
        memmove(b, start, total);
    *out = b;
    *outlen = total;
    b = NULL;
    rc = REJ_NONE;
out:
    free(b);
    OPENSSL_free(p.spki);
    free(p.san);
    ERR_clear_error();
    return rc;
}
