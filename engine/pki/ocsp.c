/* OCSP request parsing, status lookup, signing and the pre-signed response cache.
 * See ocsp.h. */
#include "engine/pki/ocsp.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#define CACHE_SLOTS   65536u     /* power of two; a full slot is simply replaced */
#define UNKNOWN_TTL   60         /* "unknown" answers are cached briefly: the serial may be
                                    issued later (with random serials, practically never) */
#define NHASH 4

static const int hash_nids[NHASH] = { NID_sha1, NID_sha256, NID_sha384, NID_sha512 };

/* ------------------------------------------------------------------ parsing */

void ocsp_query_clear(ocsp_query *q)
{
    OCSP_REQUEST_free(q->req);
    memset(q, 0, sizeof(*q));
}

static int hash_known(int nid)
{
    for (int i = 0; i < NHASH; i++)
        if (hash_nids[i] == nid)
            return 1;
    return 0;
}

int ocsp_parse_request(const uint8_t *der, size_t len, ocsp_query *q)
{
    const unsigned char *p = der;
    int rc = OCSP_RESPONSE_STATUS_MALFORMEDREQUEST;

    memset(q, 0, sizeof(*q));
    if (der == NULL || len == 0 || len > (1u << 20))
        goto out;
    q->req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
    if (q->req == NULL || p != der + len)
        goto out;
    int n = OCSP_request_onereq_count(q->req);
    if (n <= 0 || n > OCSP_MAX_IDS)
        goto out;
    for (int i = 0; i < n; i++) {
        ocsp_id *id = &q->ids[i];
        ASN1_OCTET_STRING *nh = NULL, *kh = NULL;
        ASN1_OBJECT *md = NULL;
        ASN1_INTEGER *sn = NULL;
        id->cid = OCSP_onereq_get0_id(OCSP_request_onereq_get0(q->req, i));
        if (id->cid == NULL || OCSP_id_get0_info(&nh, &md, &kh, &sn, id->cid) != 1 ||
            nh == NULL || kh == NULL || md == NULL || sn == NULL)
            goto out;
        id->hash_nid = OBJ_obj2nid(md);
        if (!hash_known(id->hash_nid))
            goto out;
        id->name_hash = ASN1_STRING_get0_data(nh);
        id->name_hash_len = ASN1_STRING_length(nh);
        id->key_hash = ASN1_STRING_get0_data(kh);
        id->key_hash_len = ASN1_STRING_length(kh);
        /* A serial we could have issued: positive, at most 20 octets. Others stay
         * serial_len 0 and are answered "unknown". */
        const unsigned char *sb = ASN1_STRING_get0_data(sn);
        int sl = ASN1_STRING_length(sn);
        while (sl > 0 && sb[0] == 0) {
            sb++;
            sl--;
        }
        if (ASN1_STRING_type(sn) == V_ASN1_INTEGER && sl > 0 && sl <= OCSP_SERIAL_MAX) {
            memcpy(id->serial, sb, (size_t)sl);
            id->serial_len = (size_t)sl;
        }
    }
    q->n = (size_t)n;
    q->has_nonce = OCSP_REQUEST_get_ext_by_NID(q->req, NID_id_pkix_OCSP_Nonce, -1) >= 0;
    rc = 0;
out:
    ERR_clear_error();
    return rc;
}

/* ------------------------------------------------------------------ responder */

typedef struct cache_slot {
    uint8_t  key[2 + OCSP_SERIAL_MAX];   /* hash index, serial length, serial */
    int      used;
    uint64_t rev_gen;
    int64_t  expires;
    uint8_t *der;
    size_t   len;
} cache_slot;

struct ocsp_responder {
    X509     *resp_cert;
    EVP_PKEY *resp_key;
    const EVP_MD *md;
    int       validity_s;
    int       use_nonce;
    /* The CA's name and key hashes under each hash algorithm a request may use. */
    uint8_t   name_hash[NHASH][EVP_MAX_MD_SIZE];
    uint8_t   key_hash[NHASH][EVP_MAX_MD_SIZE];
    unsigned  hash_len[NHASH];
    uint8_t   err_malformed[5], err_internal[5], err_unauthorized[5];
    pthread_mutex_t mu;
    cache_slot *cache;
    uint64_t  n_signed, n_cached;
};

void ocsp_responder_destroy(ocsp_responder *r)
{
    if (r == NULL)
        return;
    if (r->cache != NULL) {
        for (size_t i = 0; i < CACHE_SLOTS; i++)
            free(r->cache[i].der);
        free(r->cache);
        pthread_mutex_destroy(&r->mu);
    }
    X509_free(r->resp_cert);
    EVP_PKEY_free(r->resp_key);
    free(r);
}

int ocsp_responder_create(X509 *ca_cert, X509 *resp_cert, EVP_PKEY *resp_key, int validity_s,
                          int use_nonce, ocsp_responder **out)
{
    ocsp_responder *r = calloc(1, sizeof(*r));
    const unsigned char *name = NULL;
    size_t name_len = 0;
    int rc = -1;

    if (r == NULL)
        return -1;
    r->validity_s = validity_s;
    r->use_nonce = use_nonce;
    if (!X509_up_ref(resp_cert)) {
        free(r);
        return -1;
    }
    r->resp_cert = resp_cert;
    if (!EVP_PKEY_up_ref(resp_key))
        goto out;
    r->resp_key = resp_key;
    r->md = EVP_PKEY_get_base_id(resp_key) == EVP_PKEY_EC && EVP_PKEY_get_bits(resp_key) == 384
                ? EVP_sha384() : EVP_sha256();
    const ASN1_BIT_STRING *keybits = X509_get0_pubkey_bitstr(ca_cert);
    if (keybits == NULL || X509_NAME_get0_der(X509_get_subject_name(ca_cert), &name, &name_len) != 1)
        goto out;
    for (int i = 0; i < NHASH; i++) {
        const EVP_MD *md = EVP_get_digestbynid(hash_nids[i]);
        unsigned kl = 0;
        if (md == NULL ||
            EVP_Digest(name, name_len, r->name_hash[i], &r->hash_len[i], md, NULL) != 1 ||
            EVP_Digest(ASN1_STRING_get0_data(keybits), (size_t)ASN1_STRING_length(keybits),
                       r->key_hash[i], &kl, md, NULL) != 1)
            goto out;
    }
    /* OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } for the unsigned errors. */
    static const uint8_t hdr[4] = { 0x30, 0x03, 0x0a, 0x01 };
    memcpy(r->err_malformed, hdr, 4);
    r->err_malformed[4] = OCSP_RESPONSE_STATUS_MALFORMEDREQUEST;
    memcpy(r->err_internal, hdr, 4);
    r->err_internal[4] = OCSP_RESPONSE_STATUS_INTERNALERROR;
    memcpy(r->err_unauthorized, hdr, 4);
    r->err_unauthorized[4] = OCSP_RESPONSE_STATUS_UNAUTHORIZED;
    r->cache = calloc(CACHE_SLOTS, sizeof(*r->cache));
    if (r->cache == NULL)
        goto out;
    pthread_mutex_init(&r->mu, NULL);
    rc = 0;
out:
    ERR_clear_error();
    if (rc == 0) {
        *out = r;
        r = NULL;
    }
    ocsp_responder_destroy(r);
    return rc;
}

void ocsp_stats(ocsp_responder *r, uint64_t *signed_n, uint64_t *cached_n)
{
    pthread_mutex_lock(&r->mu);
    *signed_n = r->n_signed;
    *cached_n = r->n_cached;
    pthread_mutex_unlock(&r->mu);
}

static int hash_index(int nid)
{
    for (int i = 0; i < NHASH; i++)
        if (hash_nids[i] == nid)
            return i;
    return -1;
}

/* 1 if the CertID names our CA (both hashes under its algorithm). */
static int issuer_is_ours(const ocsp_responder *r, const ocsp_id *id)
{
    int h = hash_index(id->hash_nid);
    return h >= 0 && (unsigned)id->name_hash_len == r->hash_len[h] &&
           (unsigned)id->key_hash_len == r->hash_len[h] &&
           memcmp(id->name_hash, r->name_hash[h], r->hash_len[h]) == 0 &&
           memcmp(id->key_hash, r->key_hash[h], r->hash_len[h]) == 0;
}

typedef struct answer {
    int status;              /* V_OCSP_CERTSTATUS_* */
    int reason;
    int64_t revoked_at;
} answer;

/* The status of one CertID from the store (the reader snapshot is open). */
static int lookup(const ocsp_responder *r, store_reader *reader, const ocsp_id *id, answer *a)
{
    uint8_t serial[STORE_SERIAL_LEN];
    store_cert c;
    store_revocation rv;
    int rc;

    a->status = V_OCSP_CERTSTATUS_UNKNOWN;
    a->reason = OCSP_REVOKED_STATUS_NOSTATUS;
    a->revoked_at = 0;
    if (!issuer_is_ours(r, id) || id->serial_len == 0 || id->serial_len > STORE_SERIAL_LEN)
        return 0;
    memset(serial, 0, sizeof(serial));
    memcpy(serial + STORE_SERIAL_LEN - id->serial_len, id->serial, id->serial_len);
    rc = store_get_cert(reader, serial, &c);
    if (rc == STORE_NOTFOUND)
        return 0;
    if (rc != STORE_OK)
        return -1;
    if (c.status != STORE_CERT_REVOKED) {
        a->status = V_OCSP_CERTSTATUS_GOOD;
        return 0;
    }
    rc = store_get_revocation(reader, serial, &rv);
    if (rc != STORE_OK)
        return -1;
    a->status = V_OCSP_CERTSTATUS_REVOKED;
    a->revoked_at = rv.revoked_at;
    a->reason = rv.reason != 0 ? rv.reason : OCSP_REVOKED_STATUS_NOSTATUS;
    return 0;
}

/* Builds and signs the BasicOCSPResponse for q (one private-key operation). */
static int sign_response(ocsp_responder *r, ocsp_query *q, const answer *ans, int64_t now,
                         uint8_t **out, size_t *outlen)
{
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    OCSP_RESPONSE *resp = NULL;
    ASN1_TIME *tu = ASN1_GENERALIZEDTIME_set(NULL, (time_t)now);
    ASN1_TIME *nu = ASN1_GENERALIZEDTIME_set(NULL, (time_t)(now + r->validity_s));
    ASN1_TIME *rt = NULL;
    unsigned char *der = NULL;
    int rc = -1, n;

    if (bs == NULL || tu == NULL || nu == NULL)
        goto out;
    for (size_t i = 0; i < q->n; i++) {
        ASN1_TIME_free(rt);
        rt = NULL;
        if (ans[i].status == V_OCSP_CERTSTATUS_REVOKED &&
            (rt = ASN1_GENERALIZEDTIME_set(NULL, (time_t)ans[i].revoked_at)) == NULL)
            goto out;
        if (OCSP_basic_add1_status(bs, q->ids[i].cid, ans[i].status, ans[i].reason, rt, tu,
                                   nu) == NULL)
            goto out;
    }
    if (r->use_nonce && q->has_nonce && OCSP_copy_nonce(bs, q->req) <= 0)
        goto out;
    if (OCSP_basic_sign(bs, r->resp_cert, r->resp_key, r->md, NULL, 0) != 1)
        goto out;
    resp = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
    if (resp == NULL || (n = i2d_OCSP_RESPONSE(resp, &der)) <= 0)
        goto out;
    if ((*out = malloc((size_t)n)) == NULL)
        goto out;
    memcpy(*out, der, (size_t)n);
    *outlen = (size_t)n;
    rc = 0;
out:
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    ASN1_TIME_free(tu);
    ASN1_TIME_free(nu);
    ASN1_TIME_free(rt);
    OPENSSL_free(der);
    ERR_clear_error();
    return rc;
}

static void cache_key(const ocsp_responder *r, const ocsp_id *id, uint8_t key[2 + OCSP_SERIAL_MAX])
{
    memset(key, 0, 2 + OCSP_SERIAL_MAX);
    key[0] = (uint8_t)(hash_index(id->hash_nid) | (issuer_is_ours(r, id) ? 0x80 : 0));
    key[1] = (uint8_t)id->serial_len;
    memcpy(key + 2, id->serial, id->serial_len);
}

static size_t cache_index(const uint8_t key[2 + OCSP_SERIAL_MAX])
{
    uint64_t h = 1469598103934665603ull;         /* FNV-1a */
    for (size_t i = 0; i < 2 + OCSP_SERIAL_MAX; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)(h & (CACHE_SLOTS - 1));
}

/* A copy of the cached response for key if it is still current. */
static int cache_get(ocsp_responder *r, const uint8_t *key, uint64_t rev_gen, int64_t now,
                     uint8_t **out, size_t *outlen)
{
    int hit = 0;
    pthread_mutex_lock(&r->mu);
    cache_slot *s = &r->cache[cache_index(key)];
    if (s->used && memcmp(s->key, key, sizeof(s->key)) == 0 && s->rev_gen == rev_gen &&
        now < s->expires && (*out = malloc(s->len)) != NULL) {
        memcpy(*out, s->der, s->len);
        *outlen = s->len;
        r->n_cached++;
        hit = 1;
    }
    pthread_mutex_unlock(&r->mu);
    return hit;
}

static void cache_put(ocsp_responder *r, const uint8_t *key, uint64_t rev_gen, int64_t expires,
                      const uint8_t *der, size_t len)
{
    uint8_t *copy = malloc(len);
    if (copy == NULL)
        return;
    memcpy(copy, der, len);
    pthread_mutex_lock(&r->mu);
    cache_slot *s = &r->cache[cache_index(key)];
    free(s->der);
    memcpy(s->key, key, sizeof(s->key));
    s->used = 1;
    s->rev_gen = rev_gen;
    s->expires = expires;
    s->der = copy;
    s->len = len;
    pthread_mutex_unlock(&r->mu);
}

static int error_response(const uint8_t *bytes, uint8_t **out, size_t *outlen)
{
    if ((*out = malloc(5)) == NULL)
        return -1;
    memcpy(*out, bytes, 5);
    *outlen = 5;
    return 0;
}

int ocsp_respond(ocsp_responder *r, store_reader *reader, const uint8_t *der, size_t len,
                 int64_t now, uint8_t **out, size_t *outlen, int *status, int *cached)
{
    ocsp_query q;
    answer ans[OCSP_MAX_IDS];
    uint64_t rev_gen = 0, crl_number = 0;
    uint8_t key[2 + OCSP_SERIAL_MAX];
    int rc;

    *cached = 0;
    if (ocsp_parse_request(der, len, &q) != 0) {
        ocsp_query_clear(&q);
        *status = OCSP_RESPONSE_STATUS_MALFORMEDREQUEST;
        return error_response(r->err_malformed, out, outlen);
    }
    /* RFC 6960 2.3: a CertID of another issuer is not ours to answer (a client could not
     * verify our signature for it either). Costs no signature. */
    for (size_t i = 0; i < q.n; i++) {
        if (!issuer_is_ours(r, &q.ids[i])) {
            ocsp_query_clear(&q);
            *status = OCSP_RESPONSE_STATUS_UNAUTHORIZED;
            return error_response(r->err_unauthorized, out, outlen);
        }
    }
    /* One snapshot for the counter and the statuses, so the cache entry is labelled with
     * the generation its statuses belong to. */
    /* The cache key holds the serial and whether the issuer is ours, not the CertID: only a
     * request about one of our certificates (a serial we could have issued) is cached, so a
     * cached answer always carries the CertID that was asked for. */
    int cacheable = q.n == 1 && !(r->use_nonce && q.has_nonce) && q.ids[0].serial_len > 0 &&
                    issuer_is_ours(r, &q.ids[0]);
    rc = store_reader_begin(reader);
    if (rc == 0)
        rc = store_get_counters(reader, &rev_gen, &crl_number);
    if (rc == 0 && cacheable) {
        cache_key(r, &q.ids[0], key);
        if (cache_get(r, key, rev_gen, now, out, outlen)) {
            store_reader_end(reader);
            ocsp_query_clear(&q);
            *status = OCSP_RESPONSE_STATUS_SUCCESSFUL;
            *cached = 1;
            return 0;
        }
    }
    for (size_t i = 0; rc == 0 && i < q.n; i++)
        rc = lookup(r, reader, &q.ids[i], &ans[i]);
    store_reader_end(reader);
    if (rc != 0 || sign_response(r, &q, ans, now, out, outlen) != 0) {
        ocsp_query_clear(&q);
        *status = OCSP_RESPONSE_STATUS_INTERNALERROR;
        return error_response(r->err_internal, out, outlen);
    }
    pthread_mutex_lock(&r->mu);
    r->n_signed++;
    pthread_mutex_unlock(&r->mu);
    if (cacheable) {
        /* Re-signed half-way to nextUpdate, so a client never gets a nearly stale answer. */
        int64_t ttl = ans[0].status == V_OCSP_CERTSTATUS_UNKNOWN ? UNKNOWN_TTL : r->validity_s / 2;
        cache_put(r, key, rev_gen, now + ttl, *out, *outlen);
    }
    ocsp_query_clear(&q);
    *status = OCSP_RESPONSE_STATUS_SUCCESSFUL;
    return 0;
}
