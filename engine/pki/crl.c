/* CRL construction (hand-written DER), signing, snapshots and the CRL file. See crl.h. */
#include "engine/pki/crl.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "engine/common/file.h"
#include "engine/common/hex.h"
#include "engine/scep/der.h"

#define CRL_ENTRY_MAX 96       /* one encoded entry: 2 + 22 + 17 + 2 + 12 + 21 bytes at most */
#define CRL_HDR_MAX   6        /* tag + 0x84 + 4 length bytes */

static const struct { const char *name; int code; } reasons[] = {
    { "unspecified", 0 }, { "keyCompromise", 1 }, { "cACompromise", 2 },
    { "affiliationChanged", 3 }, { "superseded", 4 }, { "cessationOfOperation", 5 },
    { "privilegeWithdrawn", 9 }, { "aACompromise", 10 },
};

int crl_reason_from_name(const char *name)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (strcmp(name, reasons[i].name) == 0)
            return reasons[i].code;
    return -1;
}

const char *crl_reason_name(int reason)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].code == reason)
            return reasons[i].name;
    return "unspecified";
}

/* ------------------------------------------------------------------ DER helpers
 * Headers come from engine/scep/der.h; the primitives only a CRL needs are here. */

/* UTCTime for 1950..2049, GeneralizedTime otherwise (RFC 5280 4.1.2.5); force_gen for
 * invalidityDate, which is always GeneralizedTime. */
static uint8_t *der_time(uint8_t *p, int64_t t, int force_gen)
{
    struct tm tm;
    time_t tt = (time_t)t;
    char buf[64];
    if (gmtime_r(&tt, &tm) == NULL)
        memset(&tm, 0, sizeof(tm));
    int year = tm.tm_year + 1900;
    if (!force_gen && year >= 1950 && year < 2050) {
        snprintf(buf, sizeof(buf), "%02d%02d%02d%02d%02d%02dZ", year % 100, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        p = der_hdr(p, 0x17, 13);
        memcpy(p, buf, 13);
        return p + 13;
    }
    snprintf(buf, sizeof(buf), "%04d%02d%02d%02d%02d%02dZ", year % 10000, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    p = der_hdr(p, 0x18, 15);
    memcpy(p, buf, 15);
    return p + 15;
}

/* A non-negative INTEGER from big-endian unsigned bytes (minimal encoding). */
static uint8_t *der_uint(uint8_t *p, const uint8_t *b, size_t n)
{
    while (n > 1 && b[0] == 0) {
        b++;
        n--;
    }
    int pad = (b[0] & 0x80) != 0;
    p = der_hdr(p, 0x02, n + (size_t)pad);
    if (pad)
        *p++ = 0;
    memcpy(p, b, n);
    return p + n;
}

static uint8_t *der_u64(uint8_t *p, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * (7 - i)));
    return der_uint(p, b, 8);
}

/* ------------------------------------------------------------------ signer */

struct crl_signer {
    EVP_PKEY *key;
    const EVP_MD *md;
    uint8_t *algid;  size_t algid_len;     /* signatureAlgorithm DER */
    uint8_t *issuer; size_t issuer_len;    /* issuer Name DER */
    uint8_t *aki;    size_t aki_len;       /* AKI extension DER (whole Extension) */
};

void crl_signer_destroy(crl_signer *s)
{
    if (s == NULL)
        return;
    EVP_PKEY_free(s->key);
    OPENSSL_free(s->algid);
    OPENSSL_free(s->issuer);
    OPENSSL_free(s->aki);
    free(s);
}

/* The AKI extension: keyIdentifier = the CA's SKI, or SHA-1 of its key bits without one. */
static int make_aki(X509 *ca, uint8_t **out, size_t *outlen)
{
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    X509_EXTENSION *e = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = -1, n;
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(ca);

    if (akid == NULL || (akid->keyid = ASN1_OCTET_STRING_new()) == NULL)
        goto out;
    if (ski != NULL) {
        if (!ASN1_OCTET_STRING_set(akid->keyid, ASN1_STRING_get0_data(ski), ASN1_STRING_length(ski)))
            goto out;
    } else if (X509_pubkey_digest(ca, EVP_sha1(), md, &mdlen) != 1 ||
               !ASN1_OCTET_STRING_set(akid->keyid, md, (int)mdlen)) {
        goto out;
    }
    e = X509V3_EXT_i2d(NID_authority_key_identifier, 0, akid);
    unsigned char *der = NULL;
    if (e == NULL || (n = i2d_X509_EXTENSION(e, &der)) <= 0)
        goto out;
    *out = der;
    *outlen = (size_t)n;
    rc = 0;
out:
    AUTHORITY_KEYID_free(akid);
    X509_EXTENSION_free(e);
    return rc;
}

int crl_signer_create(EVP_PKEY *key, X509 *ca_cert, const EVP_MD *md, crl_signer **out)
{
    crl_signer *s = calloc(1, sizeof(*s));
    X509_ALGOR *alg = NULL;
    int rc = -1, sig_nid = NID_undef, n;
    int base = EVP_PKEY_get_base_id(key);

    if (s == NULL)
        goto out;
    if (md == NULL)
        md = base == EVP_PKEY_EC && EVP_PKEY_get_bits(key) == 384 ? EVP_sha384() : EVP_sha256();
    s->md = md;
    if (!EVP_PKEY_up_ref(key))
        goto out;
    s->key = key;
    if (!OBJ_find_sigid_by_algs(&sig_nid, EVP_MD_get_type(md), base) ||
        (alg = X509_ALGOR_new()) == NULL ||
        !X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), base == EVP_PKEY_RSA ? V_ASN1_NULL : V_ASN1_UNDEF,
                         NULL))
        goto out;
    if ((n = i2d_X509_ALGOR(alg, &s->algid)) <= 0)
        goto out;
    s->algid_len = (size_t)n;
    if ((n = i2d_X509_NAME(X509_get_subject_name(ca_cert), &s->issuer)) <= 0)
        goto out;
    s->issuer_len = (size_t)n;
    if (make_aki(ca_cert, &s->aki, &s->aki_len) != 0)
        goto out;
    rc = 0;
out:
    X509_ALGOR_free(alg);
    ERR_clear_error();
    if (rc == 0) {
        *out = s;
        s = NULL;
    }
    crl_signer_destroy(s);
    return rc;
}

/* ------------------------------------------------------------------ builder */

struct crl_builder {
    uint8_t *buf;          /* the encoded revokedCertificates entries, back to back */
    size_t   len, cap;
    size_t   count;
};

int crl_builder_create(size_t hint, crl_builder **out)
{
    crl_builder *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    b->cap = hint > 0 && hint < ((size_t)1 << 26) ? hint * 52 : 4096;
    b->buf = malloc(b->cap);
    if (b->buf == NULL) {
        free(b);
        return -ENOMEM;
    }
    *out = b;
    return 0;
}

void crl_builder_destroy(crl_builder *b)
{
    if (b == NULL)
        return;
    free(b->buf);
    free(b);
}

size_t crl_builder_count(const crl_builder *b)
{
    return b->count;
}

static const uint8_t OID_REASON[] = { 0x06, 0x03, 0x55, 0x1d, 0x15 };
static const uint8_t OID_INVALIDITY[] = { 0x06, 0x03, 0x55, 0x1d, 0x18 };
static const uint8_t OID_CRL_NUMBER[] = { 0x06, 0x03, 0x55, 0x1d, 0x14 };

int crl_builder_add(crl_builder *b, const uint8_t *serial, size_t serial_len,
                    int64_t revoked_at, int reason, int64_t invalidity)
{
    uint8_t body[CRL_ENTRY_MAX], ext[48], *p = body, *q = ext;

    if (serial == NULL || serial_len == 0 || serial_len > 20 || reason < 0 || reason > 10)
        return -EINVAL;
    p = der_uint(p, serial, serial_len);
    p = der_time(p, revoked_at, 0);
    /* crlEntryExtensions: reasonCode (when not unspecified), invalidityDate (when given). */
    if (reason != 0) {
        q = der_hdr(q, 0x30, sizeof(OID_REASON) + 5);
        memcpy(q, OID_REASON, sizeof(OID_REASON));
        q += sizeof(OID_REASON);
        q = der_hdr(q, 0x04, 3);
        *q++ = 0x0a;
        *q++ = 1;
        *q++ = (uint8_t)reason;
    }
    if (invalidity != 0) {
        q = der_hdr(q, 0x30, sizeof(OID_INVALIDITY) + 2 + 17);
        memcpy(q, OID_INVALIDITY, sizeof(OID_INVALIDITY));
        q += sizeof(OID_INVALIDITY);
        q = der_hdr(q, 0x04, 17);
        q = der_time(q, invalidity, 1);
    }
    if (q > ext) {
        p = der_hdr(p, 0x30, (size_t)(q - ext));
        memcpy(p, ext, (size_t)(q - ext));
        p += q - ext;
    }
    size_t n = (size_t)(p - body);
    size_t need = der_hdr_size(n) + n;
    if (b->len + need > b->cap) {
        size_t cap = b->cap * 2 > b->len + need ? b->cap * 2 : b->len + need;
        uint8_t *nb = realloc(b->buf, cap);
        if (nb == NULL)
            return -ENOMEM;
        b->buf = nb;
        b->cap = cap;
    }
    uint8_t *w = der_hdr(b->buf + b->len, 0x30, n);
    memcpy(w, body, n);
    b->len = (size_t)(w + n - b->buf);
    b->count++;
    return 0;
}

int crl_builder_sign(const crl_builder *b, const crl_signer *s, uint64_t number,
                     int64_t this_update, int64_t next_update, uint8_t **der, size_t *len)
{
    uint8_t head[64], crlext[64], *h = head, *e = crlext;
    EVP_MD_CTX *mctx = NULL;
    uint8_t *out = NULL, *sig = NULL;
    size_t siglen = 0;
    int rc = -1;

    /* Fixed TBS fields before the entries: version v2, signature, issuer, the two times. */
    h = der_hdr(h, 0x02, 1);
    *h++ = 1;
    size_t times_len;
    {
        uint8_t *t0 = h;
        h = der_time(h, this_update, 0);
        h = der_time(h, next_update, 0);
        times_len = (size_t)(h - t0);
    }
    /* crlExtensions [0] { SEQUENCE { AKI, CRLNumber } } */
    uint8_t num[16], *np = der_u64(num, number);
    size_t num_len = (size_t)(np - num);
    size_t cn_inner = sizeof(OID_CRL_NUMBER) + der_hdr_size(num_len) + num_len;
    e = der_hdr(e, 0x30, cn_inner);
    memcpy(e, OID_CRL_NUMBER, sizeof(OID_CRL_NUMBER));
    e += sizeof(OID_CRL_NUMBER);
    e = der_hdr(e, 0x04, num_len);
    memcpy(e, num, num_len);
    e += num_len;
    size_t cn_len = (size_t)(e - crlext);
    size_t exts_seq = s->aki_len + cn_len;
    size_t exts_len = der_hdr_size(der_hdr_size(exts_seq) + exts_seq) +
                      der_hdr_size(exts_seq) + exts_seq;

    size_t version_len = 3;
    size_t entries_len = b->len > 0 ? der_hdr_size(b->len) + b->len : 0;
    size_t tbs_inner = version_len + s->algid_len + s->issuer_len + times_len + entries_len +
                       exts_len;
    size_t tbs_len = der_hdr_size(tbs_inner) + tbs_inner;

    size_t maxsig = (size_t)EVP_PKEY_get_size(s->key);
    size_t cap = CRL_HDR_MAX + tbs_len + s->algid_len + CRL_HDR_MAX + 1 + maxsig;
    out = malloc(cap);
    if (out == NULL || maxsig == 0)
        goto out;
    uint8_t *tbs = out + CRL_HDR_MAX, *p = tbs;
    p = der_hdr(p, 0x30, tbs_inner);
    memcpy(p, head, version_len);
    p += version_len;
    memcpy(p, s->algid, s->algid_len);
    p += s->algid_len;
    memcpy(p, s->issuer, s->issuer_len);
    p += s->issuer_len;
    memcpy(p, head + version_len, times_len);
    p += times_len;
    if (b->len > 0) {
        p = der_hdr(p, 0x30, b->len);
        memcpy(p, b->buf, b->len);
        p += b->len;
    }
    p = der_hdr(p, 0xa0, der_hdr_size(exts_seq) + exts_seq);
    p = der_hdr(p, 0x30, exts_seq);
    memcpy(p, s->aki, s->aki_len);
    p += s->aki_len;
    memcpy(p, crlext, cn_len);
    p += cn_len;
    if ((size_t)(p - tbs) != tbs_len)
        goto out;

    /* The private-key operation: one signature over the whole TBSCertList. */
    sig = malloc(maxsig);
    mctx = EVP_MD_CTX_new();
    siglen = maxsig;
    if (sig == NULL || mctx == NULL ||
        EVP_DigestSignInit(mctx, NULL, s->md, NULL, s->key) != 1 ||
        EVP_DigestSign(mctx, sig, &siglen, tbs, tbs_len) != 1)
        goto out;

    memcpy(p, s->algid, s->algid_len);
    p += s->algid_len;
    p = der_hdr(p, 0x03, siglen + 1);
    *p++ = 0;
    memcpy(p, sig, siglen);
    p += siglen;
    size_t body = (size_t)(p - tbs);
    size_t hs = der_hdr_size(body);
    der_hdr(tbs - hs, 0x30, body);
    memmove(out, tbs - hs, hs + body);
    *der = out;
    *len = hs + body;
    out = NULL;
    rc = 0;
out:
    free(out);
    free(sig);
    EVP_MD_CTX_free(mctx);
    ERR_clear_error();
    return rc;
}

/* ------------------------------------------------------------------ snapshots */

struct crl_snapshot_priv {
    crl_snapshot pub;        /* first: the public view */
    atomic_int refs;
    uint8_t *der;
};

int crl_snapshot_create(uint8_t *der, size_t len, uint64_t number, int64_t this_update,
                        int64_t next_update, crl_snapshot **out)
{
    struct crl_snapshot_priv *s = calloc(1, sizeof(*s));
    unsigned char md[32];
    char lm[64];
    struct tm tm;
    time_t t = (time_t)this_update;

    if (s == NULL || EVP_Digest(der, len, md, NULL, EVP_sha256(), NULL) != 1 ||
        gmtime_r(&t, &tm) == NULL) {
        free(s);
        free(der);
        return -1;
    }
    s->der = der;
    s->pub.der = der;
    s->pub.len = len;
    s->pub.number = number;
    s->pub.this_update = this_update;
    s->pub.next_update = next_update;
    atomic_init(&s->refs, 1);
    s->pub.etag[0] = '"';
    hex_encode(md, 16, s->pub.etag + 1);
    s->pub.etag[33] = '"';
    s->pub.etag[34] = '\0';
    strftime(lm, sizeof(lm), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    long max_age = (long)(next_update - this_update) / 4;
    snprintf(s->pub.headers, sizeof(s->pub.headers),
             "ETag: %s\r\nLast-Modified: %s\r\nCache-Control: public, max-age=%ld\r\n",
             s->pub.etag, lm, max_age > 0 ? max_age : 0);
    *out = &s->pub;
    return 0;
}

crl_snapshot *crl_snapshot_ref(crl_snapshot *s)
{
    if (s != NULL)
        atomic_fetch_add(&((struct crl_snapshot_priv *)s)->refs, 1);
    return s;
}

void crl_snapshot_unref(crl_snapshot *s)
{
    struct crl_snapshot_priv *p = (struct crl_snapshot_priv *)s;
    if (p == NULL || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    free(p->der);
    free(p);
}

/* ------------------------------------------------------------------ file */

static int64_t asn1_time_secs(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* A published CRL file larger than this is not ours (a million entries is ~40 MB). */
#define CRL_FILE_MAX ((size_t)1 << 30)

int crl_file_load(const char *path, EVP_PKEY *ca_pub, crl_snapshot **out)
{
    char *buf = NULL;
    uint8_t *der = NULL;
    size_t len = 0;
    X509_CRL *crl = NULL;
    ASN1_INTEGER *num = NULL;
    int rc = -1;

    if (file_read(path, CRL_FILE_MAX, &buf, &len) != 0 || len == 0)
        goto out;
    der = (uint8_t *)buf;
    const unsigned char *p = der;
    crl = d2i_X509_CRL(NULL, &p, (long)len);
    if (crl == NULL || p != der + len || X509_CRL_verify(crl, ca_pub) != 1)
        goto out;
    num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    uint64_t n = 0;
    if (num == NULL || ASN1_INTEGER_get_uint64(&n, num) != 1)
        goto out;
    int64_t tu = asn1_time_secs(X509_CRL_get0_lastUpdate(crl));
    int64_t nu = asn1_time_secs(X509_CRL_get0_nextUpdate(crl));
    rc = crl_snapshot_create(der, len, n, tu, nu, out);
    der = NULL;
out:
    free(der);
    X509_CRL_free(crl);
    ASN1_INTEGER_free(num);
    ERR_clear_error();
    return rc;
}

int crl_file_save(const char *path, const uint8_t *der, size_t len)
{
    char *dcopy = strdup(path), tmp[4200];
    int fd = -1, dfd = -1, rc = 0;

    if (dcopy == NULL)
        return -ENOMEM;
    const char *dir = dirname(dcopy);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        rc = -errno;
        goto out;
    }
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
        rc = -ENAMETOOLONG;
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, der + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            goto out;
        }
        off += (size_t)n;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        rc = -errno;
        fd = -1;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = -errno;
        goto out;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0 && fsync(dfd) != 0)
        rc = -errno;
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    if (dfd >= 0)
        close(dfd);
    free(dcopy);
    return rc;
}

/* ------------------------------------------------------------------ cache */

struct crl_cache {
    pthread_mutex_t mu;
    crl_snapshot *cur;
};

int crl_cache_create(crl_cache **out)
{
    crl_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -1;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

void crl_cache_destroy(crl_cache *c)
{
    if (c == NULL)
        return;
    crl_snapshot_unref(c->cur);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

crl_snapshot *crl_cache_get(crl_cache *c)
{
    pthread_mutex_lock(&c->mu);
    crl_snapshot *s = crl_snapshot_ref(c->cur);
    pthread_mutex_unlock(&c->mu);
    return s;
}

void crl_cache_set(crl_cache *c, crl_snapshot *s)
{
    pthread_mutex_lock(&c->mu);
    crl_snapshot *old = c->cur;
    c->cur = s;
    pthread_mutex_unlock(&c->mu);
    crl_snapshot_unref(old);
}
