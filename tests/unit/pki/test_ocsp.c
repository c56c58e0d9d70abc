/* engine/pki/ocsp.c: request parsing limits, good / revoked / unknown from a real LMDB store,
 * signatures checked with OpenSSL's OCSP verifier, nonce echo, the pre-signed cache and its
 * invalidation by a revocation, error responses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "engine/pki/ocsp.h"
#include "engine/store/store.h"

typedef struct fixture {
    EVP_PKEY *ca_key, *resp_key;
    X509 *ca, *resp, *other_ca;
    char dir[64];
    store *st;
    store_reader *rd;
    ocsp_responder *r;
    uint8_t good[16], revoked[16];
} fixture;

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, int ocsp)
{
    X509 *x = X509_new();
    X509V3_CTX ctx;
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer != NULL ? issuer : x));
    ASN1_INTEGER_set(X509_get_serialNumber(x), 2);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    if (ocsp) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_ext_key_usage, "OCSPSigning");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    } else {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    X509_sign(x, issuer_key, EVP_sha256());
    return x;
}

static void put_cert(store *st, const uint8_t serial[16])
{
    store_put p;
    memset(&p, 0, sizeof(p));
    memcpy(p.cert.serial, serial, 16);
    p.cert.der = (const uint8_t *)"\x30\x00";
    p.cert.der_len = 2;
    assert_int_equal(store_put_sync(st, &p), 0);
    assert_int_equal(p.result, STORE_OK);
}

static void revoke(store *st, const uint8_t serial[16], int reason, int64_t when)
{
    store_put p;
    memset(&p, 0, sizeof(p));
    p.kind = STORE_PUT_REVOKE;
    memcpy(p.rev.serial, serial, 16);
    p.rev.reason = reason;
    p.rev.revoked_at = when;
    assert_int_equal(store_put_sync(st, &p), 0);
    assert_int_equal(p.result, STORE_OK);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    f->resp_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    f->ca = make_cert("test CA", f->ca_key, NULL, f->ca_key, 0);
    f->resp = make_cert("test OCSP", f->resp_key, f->ca, f->ca_key, 1);
    f->other_ca = make_cert("test CA", f->resp_key, NULL, f->resp_key, 0);  /* same name, other key */
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_ocsp.XXXXXX");
    if (mkdtemp(f->dir) == NULL || store_open(f->dir, 0, &f->st) != 0 ||
        store_reader_create(f->st, &f->rd) != 0 ||
        ocsp_responder_create(f->ca, f->resp, f->resp_key, 3600, 1, &f->r) != 0)
        return -1;
    RAND_bytes(f->good, 16);
    RAND_bytes(f->revoked, 16);
    f->good[0] = 0x41;
    f->revoked[0] = 0x42;
    put_cert(f->st, f->good);
    put_cert(f->st, f->revoked);
    revoke(f->st, f->revoked, 1, 1700000000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    ocsp_responder_destroy(f->r);
    store_reader_destroy(f->rd);
    store_close(f->st);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0) { /* best effort */ }
    X509_free(f->ca);
    X509_free(f->resp);
    X509_free(f->other_ca);
    EVP_PKEY_free(f->ca_key);
    EVP_PKEY_free(f->resp_key);
    free(f);
    return 0;
}

/* An OCSPRequest DER for n serials under issuer, hashed with md; nonce optional. */
static uint8_t *request(X509 *issuer, const EVP_MD *md, const uint8_t (*serials)[16], int n,
                        int nonce, OCSP_REQUEST **keep, size_t *len)
{
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    for (int i = 0; i < n; i++) {
        BIGNUM *bn = BN_bin2bn(serials[i], 16, NULL);
        ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
        OCSP_CERTID *id = OCSP_cert_id_new(md, X509_get_subject_name(issuer),
                                           X509_get0_pubkey_bitstr(issuer), ai);
        assert_non_null(OCSP_request_add0_id(req, id));
        ASN1_INTEGER_free(ai);
        BN_free(bn);
    }
    if (nonce)
        assert_int_equal(OCSP_request_add1_nonce(req, NULL, 16), 1);
    unsigned char *der = NULL;
    int l = i2d_OCSP_REQUEST(req, &der);
    assert_true(l > 0);
    uint8_t *out = malloc((size_t)l);
    memcpy(out, der, (size_t)l);
    OPENSSL_free(der);
    *len = (size_t)l;
    if (keep != NULL)
        *keep = req;
    else
        OCSP_REQUEST_free(req);
    return out;
}

/* Answers der and checks the response signature against the CA; returns the basic response. */
static OCSP_BASICRESP *answer(fixture *f, const uint8_t *der, size_t len, int *cached,
                              uint8_t **raw, size_t *raw_len)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    int status = -1, c = -1;
    assert_int_equal(ocsp_respond(f->r, f->rd, der, len, (int64_t)time(NULL), &out, &outlen, &status, &c), 0);
    assert_int_equal(status, OCSP_RESPONSE_STATUS_SUCCESSFUL);
    const unsigned char *p = out;
    OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)outlen);
    assert_non_null(resp);
    assert_int_equal(OCSP_response_status(resp), OCSP_RESPONSE_STATUS_SUCCESSFUL);
    OCSP_BASICRESP *bs = OCSP_response_get1_basic(resp);
    assert_non_null(bs);
    X509_STORE *xs = X509_STORE_new();
    X509_STORE_add_cert(xs, f->ca);
    assert_int_equal(OCSP_basic_verify(bs, NULL, xs, 0), 1);
    X509_STORE_free(xs);
    OCSP_RESPONSE_free(resp);
    if (cached != NULL)
        *cached = c;
    if (raw != NULL) {
        *raw = out;
        *raw_len = outlen;
    } else {
        free(out);
    }
    return bs;
}

static int status_of(OCSP_BASICRESP *bs, int idx, int *reason, ASN1_GENERALIZEDTIME **rev)
{
    OCSP_SINGLERESP *sr = OCSP_resp_get0(bs, idx);
    ASN1_GENERALIZEDTIME *tu = NULL, *nu = NULL;
    assert_non_null(sr);
    int st = OCSP_single_get0_status(sr, reason, rev, &tu, &nu);
    assert_non_null(tu);
    assert_non_null(nu);
    return st;
}

static void test_good_revoked_unknown(void **state)
{
    fixture *f = *state;
    uint8_t serials[3][16];
    memcpy(serials[0], f->good, 16);
    memcpy(serials[1], f->revoked, 16);
    memset(serials[2], 0x33, 16);                     /* never issued */
    size_t len;
    uint8_t *der = request(f->ca, EVP_sha1(), serials, 3, 0, NULL, &len);
    OCSP_BASICRESP *bs = answer(f, der, len, NULL, NULL, NULL);
    int reason = -5;
    ASN1_GENERALIZEDTIME *rev = NULL;
    assert_int_equal(status_of(bs, 0, &reason, &rev), V_OCSP_CERTSTATUS_GOOD);
    assert_int_equal(status_of(bs, 1, &reason, &rev), V_OCSP_CERTSTATUS_REVOKED);
    assert_int_equal(reason, OCSP_REVOKED_STATUS_KEYCOMPROMISE);
    assert_int_equal(ASN1_TIME_cmp_time_t(rev, 1700000000), 0);
    assert_int_equal(status_of(bs, 2, &reason, &rev), V_OCSP_CERTSTATUS_UNKNOWN);
    OCSP_BASICRESP_free(bs);
    free(der);
}

static void test_sha256_and_foreign_issuer(void **state)
{
    fixture *f = *state;
    uint8_t serials[1][16];
    memcpy(serials[0], f->good, 16);
    size_t len;
    uint8_t *der = request(f->ca, EVP_sha256(), serials, 1, 1, NULL, &len);
    OCSP_BASICRESP *bs = answer(f, der, len, NULL, NULL, NULL);
    assert_int_equal(status_of(bs, 0, NULL, NULL), V_OCSP_CERTSTATUS_GOOD);
    OCSP_BASICRESP_free(bs);
    free(der);
    /* same issuer name, another key: not ours -> unsigned "unauthorized" */
    der = request(f->other_ca, EVP_sha1(), serials, 1, 1, NULL, &len);
    uint8_t *out = NULL;
    size_t outlen = 0;
    int status = -1, cached = -1;
    assert_int_equal(ocsp_respond(f->r, f->rd, der, len, 0, &out, &outlen, &status, &cached), 0);
    assert_int_equal(status, OCSP_RESPONSE_STATUS_UNAUTHORIZED);
    static const uint8_t want[] = { 0x30, 0x03, 0x0a, 0x01, 0x06 };
    assert_int_equal(outlen, sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
    free(out);
    free(der);
}

static void test_nonce_echoed_not_cached(void **state)
{
    fixture *f = *state;
    uint8_t serials[1][16];
    memcpy(serials[0], f->good, 16);
    OCSP_REQUEST *req = NULL;
    size_t len;
    int cached = -1;
    uint8_t *der = request(f->ca, EVP_sha1(), serials, 1, 1, &req, &len);
    OCSP_BASICRESP *bs = answer(f, der, len, &cached, NULL, NULL);
    assert_int_equal(OCSP_check_nonce(req, bs), 1);      /* present and equal */
    assert_int_equal(cached, 0);
    OCSP_BASICRESP_free(bs);
    bs = answer(f, der, len, &cached, NULL, NULL);
    assert_int_equal(cached, 0);                         /* a nonce is never answered from cache */
    OCSP_BASICRESP_free(bs);
    OCSP_REQUEST_free(req);
    free(der);
}

static void test_cache_and_invalidation(void **state)
{
    fixture *f = *state;
    uint8_t serials[1][16], *r1 = NULL, *r2 = NULL;
    size_t len, l1, l2;
    int cached = -1;
    uint64_t s0, c0, s1, c1;
    RAND_bytes(serials[0], 16);
    serials[0][0] = 0x43;
    put_cert(f->st, serials[0]);
    uint8_t *der = request(f->ca, EVP_sha1(), serials, 1, 0, NULL, &len);
    ocsp_stats(f->r, &s0, &c0);
    OCSP_BASICRESP *bs = answer(f, der, len, &cached, &r1, &l1);
    assert_int_equal(cached, 0);
    assert_int_equal(status_of(bs, 0, NULL, NULL), V_OCSP_CERTSTATUS_GOOD);
    OCSP_BASICRESP_free(bs);
    bs = answer(f, der, len, &cached, &r2, &l2);
    assert_int_equal(cached, 1);
    assert_int_equal(l1, l2);
    assert_memory_equal(r1, r2, l1);                      /* the pre-signed bytes */
    OCSP_BASICRESP_free(bs);
    ocsp_stats(f->r, &s1, &c1);
    assert_int_equal(s1 - s0, 1);                         /* one signature for two answers */
    assert_int_equal(c1 - c0, 1);
    free(r1);
    free(r2);
    /* a revocation moves rev_gen: the cached "good" is not served any more */
    revoke(f->st, serials[0], 4, 1700000100);
    bs = answer(f, der, len, &cached, NULL, NULL);
    assert_int_equal(cached, 0);
    int reason = -5;
    assert_int_equal(status_of(bs, 0, &reason, NULL), V_OCSP_CERTSTATUS_REVOKED);
    assert_int_equal(reason, OCSP_REVOKED_STATUS_SUPERSEDED);
    OCSP_BASICRESP_free(bs);
    free(der);
}

static void expect_malformed(fixture *f, const uint8_t *der, size_t len)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    int status = -1, cached = -1;
    assert_int_equal(ocsp_respond(f->r, f->rd, der, len, 0, &out, &outlen, &status, &cached), 0);
    assert_int_equal(status, OCSP_RESPONSE_STATUS_MALFORMEDREQUEST);
    static const uint8_t want[] = { 0x30, 0x03, 0x0a, 0x01, 0x01 };
    assert_int_equal(outlen, sizeof(want));
    assert_memory_equal(out, want, sizeof(want));
    free(out);
}

static void test_malformed(void **state)
{
    fixture *f = *state;
    uint8_t serials[OCSP_MAX_IDS + 1][16];
    size_t len;
    memset(serials, 0x21, sizeof(serials));
    expect_malformed(f, (const uint8_t *)"garbage", 7);
    expect_malformed(f, (const uint8_t *)"", 0);
    expect_malformed(f, NULL, 0);
    uint8_t *der = request(f->ca, EVP_sha1(), serials, OCSP_MAX_IDS + 1, 0, NULL, &len);
    expect_malformed(f, der, len);                         /* too many CertIDs */
    free(der);
    der = request(f->ca, EVP_sha1(), serials, 1, 0, NULL, &len);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, der, len);
    longer[len] = 0;
    expect_malformed(f, longer, len + 1);                  /* trailing byte */
    expect_malformed(f, der, len - 1);                     /* truncated */
    free(longer);
    free(der);
    der = request(f->ca, EVP_md5(), serials, 1, 0, NULL, &len);
    expect_malformed(f, der, len);                         /* hash algorithm not accepted */
    free(der);
    /* an empty request list */
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    unsigned char *e = NULL;
    int el = i2d_OCSP_REQUEST(req, &e);
    expect_malformed(f, e, (size_t)el);
    OPENSSL_free(e);
    OCSP_REQUEST_free(req);
}

static void test_parse_serials(void **state)
{
    fixture *f = *state;
    ocsp_query q;
    uint8_t serials[1][16] = {{0}};
    serials[0][15] = 9;                                    /* leading zeros stripped */
    size_t len;
    uint8_t *der = request(f->ca, EVP_sha1(), serials, 1, 1, NULL, &len);
    assert_int_equal(ocsp_parse_request(der, len, &q), 0);
    assert_int_equal(q.n, 1);
    assert_int_equal(q.has_nonce, 1);
    assert_int_equal(q.ids[0].serial_len, 1);
    assert_int_equal(q.ids[0].serial[0], 9);
    assert_int_equal(q.ids[0].hash_nid, NID_sha1);
    assert_int_equal(q.ids[0].name_hash_len, 20);
    ocsp_query_clear(&q);
    ocsp_query_clear(&q);                                  /* clearing twice is harmless */
    free(der);
    ocsp_responder_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_revoked_unknown),
        cmocka_unit_test(test_sha256_and_foreign_issuer),
        cmocka_unit_test(test_nonce_echoed_not_cached),
        cmocka_unit_test(test_cache_and_invalidation),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_parse_serials),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
