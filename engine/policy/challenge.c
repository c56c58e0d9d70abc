/* One-time challenges: generation, hashing, record encoding, verification. See challenge.h. */
#include "engine/policy/challenge.h"
#include "engine/scep/reject.h"

#include <stdlib.h>

#include <string.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define CHALLENGE_RECORD_VERSION 1
static const char HASH_TAG[] = "scepd-challenge-v1";

static const int rejects[] = {
#define X(name, rej) [CHALLENGE_##name] = REJ_##rej,
    CHALLENGE_RESULTS(X)
#undef X
};

int challenge_reject_code(int verdict)
{
    return verdict >= 0 && verdict < CHALLENGE__COUNT ? rejects[verdict] : REJ_CHAL_WRONG;
}

const char *challenge_result_diag(int r)
{
    return r >= 0 && r < CHALLENGE__COUNT ? reject_diag(rejects[r]) : "unknown";
}

const char *challenge_result_text(int r)
{
    return r >= 0 && r < CHALLENGE__COUNT ? reject_text(rejects[r]) : "unknown";
}

int challenge_generate(char *out, size_t outlen)
{
    static const char b64u[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t r[CHALLENGE_VALUE_LEN * 3 / 4];
    if (outlen < CHALLENGE_VALUE_LEN + 1 || RAND_bytes(r, sizeof(r)) != 1)
        return -1;
    for (size_t i = 0, o = 0; i < sizeof(r); i += 3) {
        uint32_t v = (uint32_t)r[i] << 16 | (uint32_t)r[i + 1] << 8 | r[i + 2];
        out[o++] = b64u[(v >> 18) & 63];
        out[o++] = b64u[(v >> 12) & 63];
        out[o++] = b64u[(v >> 6) & 63];
        out[o++] = b64u[v & 63];
    }
    out[CHALLENGE_VALUE_LEN] = '\0';
    OPENSSL_cleanse(r, sizeof(r));
    return 0;
}

int challenge_hash(const uint8_t *key, size_t keylen, const char *value, size_t len,
                   uint8_t out[CHALLENGE_HASH_LEN])
{
    static const uint8_t nokey[1] = { 0 };
    int rc = -1;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *mctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    size_t outl = 0;
    if (mctx == NULL ||
        EVP_MAC_init(mctx, key != NULL && keylen > 0 ? key : nokey,
                     key != NULL && keylen > 0 ? keylen : 0, params) != 1 ||
        EVP_MAC_update(mctx, (const uint8_t *)HASH_TAG, sizeof(HASH_TAG) - 1) != 1 ||
        EVP_MAC_update(mctx, (const uint8_t *)value, len) != 1 ||
        EVP_MAC_final(mctx, out, &outl, CHALLENGE_HASH_LEN) != 1 || outl != CHALLENGE_HASH_LEN)
        goto out;
    rc = 0;
out:
    EVP_MAC_CTX_free(mctx);
    EVP_MAC_free(mac);
    ERR_clear_error();
    return rc;
}

int challenge_record_init(challenge_record *rec, const uint8_t *key, size_t keylen,
                          const char *value, size_t len, const char *profile, int64_t now,
                          int64_t ttl_s, const X509_NAME *subject, const GENERAL_NAMES *san)
{
    challenge_record *r = OPENSSL_zalloc(sizeof(*r));
    unsigned char *der = NULL;
    int rc = -1;

    if (r == NULL || ttl_s <= 0 || profile == NULL ||
        strlen(profile) >= sizeof(r->profile) || now > INT64_MAX - ttl_s)
        goto out;
    if (challenge_hash(key, keylen, value, len, r->hash) != 0)
        goto out;
    memcpy(r->profile, profile, strlen(profile) + 1);
    r->created = now;
    r->expires = now + ttl_s;
    if (subject != NULL && X509_NAME_entry_count(subject) > 0) {
        const unsigned char *d = NULL;
        size_t dl = 0;
        if (X509_NAME_get0_der(subject, &d, &dl) != 1 || dl > sizeof(r->subject_der))
            goto out;
        memcpy(r->subject_der, d, dl);
        r->subject_len = dl;
    }
    if (san != NULL && sk_GENERAL_NAME_num(san) > 0) {
        int n = i2d_GENERAL_NAMES(san, &der);
        if (n <= 0 || (size_t)n > sizeof(r->san_der))
            goto out;
        memcpy(r->san_der, der, (size_t)n);
        r->san_len = (size_t)n;
    }
    rc = 0;
out:
    if (rc == 0)
        *rec = *r;
    OPENSSL_clear_free(r, sizeof(*r));
    OPENSSL_free(der);
    ERR_clear_error();
    return rc;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint8_t *put_blob(uint8_t *p, const void *b, size_t n)
{
    *p++ = (uint8_t)(n >> 8);
    *p++ = (uint8_t)n;
    memcpy(p, b, n);
    return p + n;
}

/* Layout: version u8, flags u8 (bit 0: used), hash[32], created i64, expires i64,
 * used_at i64, then three u16-length-prefixed blobs: profile, subject DER, SAN DER. */
int challenge_encode(const challenge_record *rec, uint8_t *out, size_t outlen)
{
    size_t plen = strnlen(rec->profile, sizeof(rec->profile));
    size_t need = 2 + CHALLENGE_HASH_LEN + 24 + 6 + plen + rec->subject_len + rec->san_len;
    if (plen >= sizeof(rec->profile) || rec->subject_len > sizeof(rec->subject_der) ||
        rec->san_len > sizeof(rec->san_der) || need > outlen)
        return -1;
    uint8_t *p = out;
    *p++ = CHALLENGE_RECORD_VERSION;
    *p++ = rec->used ? 1 : 0;
    memcpy(p, rec->hash, CHALLENGE_HASH_LEN);
    p += CHALLENGE_HASH_LEN;
    p = put_u64(p, (uint64_t)rec->created);
    p = put_u64(p, (uint64_t)rec->expires);
    p = put_u64(p, (uint64_t)rec->used_at);
    p = put_blob(p, rec->profile, plen);
    p = put_blob(p, rec->subject_der, rec->subject_len);
    p = put_blob(p, rec->san_der, rec->san_len);
    return (int)(p - out);
}

static int get_blob(const uint8_t **p, const uint8_t *end, void *dst, size_t cap, size_t *n)
{
    if (end - *p < 2)
        return -1;
    size_t l = (size_t)(*p)[0] << 8 | (*p)[1];
    *p += 2;
    if (l > cap || (size_t)(end - *p) < l)
        return -1;
    memcpy(dst, *p, l);
    *p += l;
    *n = l;
    return 0;
}

int challenge_decode(const uint8_t *in, size_t len, challenge_record *rec)
{
    challenge_record *r = OPENSSL_zalloc(sizeof(*r));
    const uint8_t *p = in, *end = in + len;
    size_t plen = 0;
    int rc = -1;

    if (r == NULL || len < 2 + CHALLENGE_HASH_LEN + 24 || in[0] != CHALLENGE_RECORD_VERSION ||
        (in[1] & ~1u) != 0)
        goto out;
    r->used = in[1] & 1;
    p += 2;
    memcpy(r->hash, p, CHALLENGE_HASH_LEN);
    p += CHALLENGE_HASH_LEN;
    r->created = (int64_t)get_u64(p);
    r->expires = (int64_t)get_u64(p + 8);
    r->used_at = (int64_t)get_u64(p + 16);
    p += 24;
    if (get_blob(&p, end, r->profile, sizeof(r->profile) - 1, &plen) != 0 ||
        memchr(r->profile, '\0', plen) != NULL ||
        get_blob(&p, end, r->subject_der, sizeof(r->subject_der), &r->subject_len) != 0 ||
        get_blob(&p, end, r->san_der, sizeof(r->san_der), &r->san_len) != 0 || p != end)
        goto out;
    r->profile[plen] = '\0';
    rc = 0;
out:
    if (rc == 0)
        *rec = *r;
    OPENSSL_clear_free(r, sizeof(*r));
    return rc;
}

X509_NAME *challenge_bound_subject(const challenge_record *rec)
{
    const unsigned char *p = rec->subject_der;
    X509_NAME *n;
    if (rec->subject_len == 0)
        return NULL;
    n = d2i_X509_NAME(NULL, &p, (long)rec->subject_len);
    if (n != NULL && p != rec->subject_der + rec->subject_len) {
        X509_NAME_free(n);
        n = NULL;
    }
    ERR_clear_error();
    return n;
}

GENERAL_NAMES *challenge_bound_san(const challenge_record *rec)
{
    const unsigned char *p = rec->san_der;
    GENERAL_NAMES *g;
    if (rec->san_len == 0)
        return NULL;
    g = d2i_GENERAL_NAMES(NULL, &p, (long)rec->san_len);
    if (g != NULL && p != rec->san_der + rec->san_len) {
        GENERAL_NAMES_free(g);
        g = NULL;
    }
    ERR_clear_error();
    return g;
}

static int has_name(const GENERAL_NAMES *set, GENERAL_NAME *gn)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(set); i++)
        if (GENERAL_NAME_cmp(sk_GENERAL_NAME_value(set, i), gn) == 0)
            return 1;
    return 0;
}

int challenge_same_names(const GENERAL_NAMES *a, const GENERAL_NAMES *b)
{
    for (int i = 0; i < sk_GENERAL_NAME_num(a); i++)
        if (!has_name(b, sk_GENERAL_NAME_value(a, i)))
            return 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(b); i++)
        if (!has_name(a, sk_GENERAL_NAME_value(b, i)))
            return 0;
    return 1;
}

int challenge_verify(const challenge_record *rec, const uint8_t *key, size_t keylen,
                     const char *presented, size_t plen, const char *profile, int64_t now,
                     unsigned flags, const X509_NAME *csr_subject, const GENERAL_NAMES *csr_san)
{
    uint8_t h[CHALLENGE_HASH_LEN];
    int rc = CHALLENGE_WRONG;

    if (presented == NULL || challenge_hash(key, keylen, presented, plen, h) != 0 ||
        CRYPTO_memcmp(h, rec->hash, sizeof(h)) != 0)
        goto out;
    rc = CHALLENGE_PROFILE;
    if (profile != NULL && strcmp(profile, rec->profile) != 0)
        goto out;
    rc = CHALLENGE_USED;
    if (rec->used)
        goto out;
    rc = CHALLENGE_EXPIRED;
    if (now >= rec->expires)
        goto out;
    if ((flags & CHALLENGE_CHECK_SUBJECT) && rec->subject_len > 0) {
        X509_NAME *bound = challenge_bound_subject(rec);
        int same = bound != NULL && csr_subject != NULL && X509_NAME_cmp(bound, csr_subject) == 0;
        X509_NAME_free(bound);
        rc = CHALLENGE_MISMATCH_SUBJECT;
        if (!same)
            goto out;
    }
    if ((flags & CHALLENGE_CHECK_SAN) && rec->san_len > 0) {
        GENERAL_NAMES *bound = challenge_bound_san(rec);
        int same = bound != NULL && csr_san != NULL && challenge_same_names(bound, csr_san);
        GENERAL_NAMES_free(bound);
        rc = CHALLENGE_MISMATCH_SAN;
        if (!same)
            goto out;
    }
    rc = CHALLENGE_OK;
out:
    OPENSSL_cleanse(h, sizeof(h));
    ERR_clear_error();
    return rc;
}

void challenge_mark_used(challenge_record *rec, int64_t now)
{
#ifdef SCEPD_MUTANT_CHALLENGE_NOT_MARKED   /* test-only breakage, docs/testing-mutants.md */
    return;
#endif
    rec->used = 1;
    rec->used_at = now;
}

static GENERAL_NAME *make_name(const char *type, size_t tl, const char *v)
{
    GENERAL_NAME *gn = NULL;
    if (*v == '\0')
        return NULL;
    if (tl == 3 && strncmp(type, "upn", 3) == 0) {
        ASN1_OBJECT *oid = OBJ_nid2obj(NID_ms_upn);
        ASN1_TYPE *val = ASN1_TYPE_new();
        ASN1_UTF8STRING *s = ASN1_UTF8STRING_new();
        gn = GENERAL_NAME_new();
        if (gn == NULL || val == NULL || s == NULL || !ASN1_STRING_set(s, v, -1)) {
            GENERAL_NAME_free(gn);
            ASN1_TYPE_free(val);
            ASN1_UTF8STRING_free(s);
            return NULL;
        }
        ASN1_TYPE_set(val, V_ASN1_UTF8STRING, s);
        if (!GENERAL_NAME_set0_othername(gn, OBJ_dup(oid), val)) {
            GENERAL_NAME_free(gn);
            ASN1_TYPE_free(val);
            return NULL;
        }
        return gn;
    }
    int t = tl == 3 && !strncmp(type, "dns", 3) ? GEN_DNS
          : tl == 5 && !strncmp(type, "email", 5) ? GEN_EMAIL
          : tl == 3 && !strncmp(type, "uri", 3) ? GEN_URI
          : tl == 2 && !strncmp(type, "ip", 2) ? GEN_IPADD : -1;
    if (t < 0)
        return NULL;
    ASN1_STRING *s = t == GEN_IPADD ? a2i_IPADDRESS(v) : ASN1_IA5STRING_new();
    gn = GENERAL_NAME_new();
    if (s == NULL || gn == NULL || (t != GEN_IPADD && !ASN1_STRING_set(s, v, -1))) {
        ASN1_STRING_free(s);
        GENERAL_NAME_free(gn);
        return NULL;
    }
    GENERAL_NAME_set0_value(gn, t, s);
    return gn;
}

/* The comma that ends the entry at p: one followed by a known "type:" prefix, so that values
 * such as Intune's "tag:microsoft.com,2022-09-14:sid:..." keep their commas. */
static const char *next_entry(const char *p)
{
    static const char *const types[] = { "dns:", "email:", "uri:", "upn:", "ip:" };
    for (const char *c = strchr(p, ','); c != NULL; c = strchr(c + 1, ',')) {
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strncmp(c + 1, types[i], strlen(types[i])) == 0)
                return c;
    }
    return NULL;
}

GENERAL_NAMES *challenge_parse_san(const char *list)
{
    GENERAL_NAMES *out = GENERAL_NAMES_new();
    char buf[1024];
    const char *p = list;
    int ok = out != NULL && list != NULL;

    while (ok && *p != '\0') {
        const char *e = next_entry(p);
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        const char *colon = memchr(p, ':', n);
        if (colon == NULL || n >= sizeof(buf)) {
            ok = 0;
            break;
        }
        size_t vl = n - (size_t)(colon + 1 - p);
        memcpy(buf, colon + 1, vl);
        buf[vl] = '\0';
        GENERAL_NAME *gn = make_name(p, (size_t)(colon - p), buf);
        if (gn == NULL || !sk_GENERAL_NAME_push(out, gn)) {
            GENERAL_NAME_free(gn);
            ok = 0;
            break;
        }
        p = e != NULL ? e + 1 : p + n;
    }
    if (ok && sk_GENERAL_NAME_num(out) == 0)
        ok = 0;
    if (!ok) {
        GENERAL_NAMES_free(out);
        out = NULL;
    }
    ERR_clear_error();
    return out;
}

X509_NAME *challenge_parse_subject(const char *dn)
{
    X509_NAME *n = X509_NAME_new();
    char *copy = dn != NULL ? strdup(dn) : NULL, *save = NULL;
    int ok = 0;

    if (n == NULL || copy == NULL || copy[0] != '/')
        goto out;
    for (char *tok = strtok_r(copy, "/", &save); tok != NULL; tok = strtok_r(NULL, "/", &save)) {
        char *eq = strchr(tok, '=');
        if (eq == NULL || eq == tok || eq[1] == '\0')
            goto out;
        *eq = '\0';
        if (!X509_NAME_add_entry_by_txt(n, tok, MBSTRING_UTF8, (unsigned char *)eq + 1, -1, -1, 0))
            goto out;
    }
    ok = X509_NAME_entry_count(n) > 0;
out:
    free(copy);
    ERR_clear_error();
    if (!ok) {
        X509_NAME_free(n);
        n = NULL;
    }
    return n;
}

int challenge_create(const char *profile, int64_t now, int64_t ttl_s, const char *subject_dn,
                     const char *san_list, char value[CHALLENGE_VALUE_LEN + 1],
                     uint8_t key[CHALLENGE_HASH_LEN], uint8_t *rec_out, size_t *rec_len,
                     const char **why)
{
    X509_NAME *subject = NULL;
    GENERAL_NAMES *san = NULL;
    challenge_record *rec = malloc(sizeof(*rec));
    char v[CHALLENGE_VALUE_LEN + 1];
    int rc = -1, n;

    *why = "out of memory";
    if (rec == NULL)
        goto out;
    *why = "subject must be written /CN=name/O=org";
    if (subject_dn != NULL && subject_dn[0] != '\0' &&
        (subject = challenge_parse_subject(subject_dn)) == NULL)
        goto out;
    *why = "san must be a list like dns:host,email:a@b,upn:user@realm,uri:...,ip:10.0.0.1";
    if (san_list != NULL && san_list[0] != '\0' && (san = challenge_parse_san(san_list)) == NULL)
        goto out;
    *why = "no randomness";
    if (challenge_generate(v, sizeof(v)) != 0)
        goto out;
    *why = "ttl must be positive, profile name and bindings within their limits";
    if (challenge_record_init(rec, NULL, 0, v, strlen(v), profile, now, ttl_s, subject, san) != 0)
        goto out;
    *why = "record does not encode";
    if ((n = challenge_encode(rec, rec_out, CHALLENGE_RECORD_MAX)) < 0)
        goto out;
    memcpy(key, rec->hash, CHALLENGE_HASH_LEN);
    memcpy(value, v, sizeof(v));
    *rec_len = (size_t)n;
    *why = NULL;
    rc = 0;
out:
    OPENSSL_cleanse(v, sizeof(v));
    free(rec);
    X509_NAME_free(subject);
    GENERAL_NAMES_free(san);
    return rc;
}
