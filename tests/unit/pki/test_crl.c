/* engine/pki/crl.c: hand-built CRL DER checked with OpenSSL's own parser and verifier, signer
 * variants, the size of a few-thousand-entry CRL, snapshots, the CRL file, reason names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "engine/pki/crl.h"

typedef struct fixture {
    EVP_PKEY *key;
    X509 *ca;
    char dir[64];
} fixture;

static X509 *self_signed(EVP_PKEY *key, const EVP_MD *md)
{
    X509 *x = X509_new();
    X509V3_CTX ctx;
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"test CA", -1, -1, 0);
    X509_set_issuer_name(x, n);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_key_identifier, "hash");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    X509_sign(x, key, md);
    return x;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    f->ca = self_signed(f->key, EVP_sha256());
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_crl.XXXXXX");
    if (f->key == NULL || f->ca == NULL || mkdtemp(f->dir) == NULL)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0) { /* best effort */ }
    X509_free(f->ca);
    EVP_PKEY_free(f->key);
    free(f);
    return 0;
}

static X509_CRL *sign_and_parse(crl_signer *s, crl_builder *b, uint64_t number, int64_t tu,
                                int64_t nu, size_t *len_out)
{
    uint8_t *der = NULL;
    size_t len = 0;
    assert_int_equal(crl_builder_sign(b, s, number, tu, nu, &der, &len), 0);
    const unsigned char *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
    assert_non_null(crl);
    assert_ptr_equal(p, der + len);      /* exactly one CRL, no trailing bytes */
    if (len_out != NULL)
        *len_out = len;
    free(der);
    return crl;
}

/* Reads one DER element at *p (< end): its tag byte, and *p moved past it (content skipped).
 * Returns the tag, or -1 if the element does not parse inside [*p, end). */
static int der_skip(const unsigned char **p, const unsigned char *end)
{
    const unsigned char *q = *p;
    long len = 0;
    int tag = 0, cls = 0;
    if (q >= end)
        return -1;
    int first = q[0];
    int r = ASN1_get_object(&q, &len, &tag, &cls, end - q);
    if (r & 0x80 || len > end - q)
        return -1;
    *p = q + len;
    return first;
}

/* The tag bytes of the TBSCertList's fields, in order (at most max), read from the DER of a
 * CertificateList: version, signature, issuer, thisUpdate, nextUpdate, then either
 * revokedCertificates (a SEQUENCE, 0x30) or straight the crlExtensions ([0], 0xa0). */
static int tbs_tags(const uint8_t *der, size_t len, int *tags, int max)
{
    const unsigned char *p = der, *end = der + len;
    long l = 0;
    int tag = 0, cls = 0, n = 0;
    assert_false(ASN1_get_object(&p, &l, &tag, &cls, (long)len) & 0x80);   /* CertificateList */
    assert_int_equal(tag, V_ASN1_SEQUENCE);
    assert_false(ASN1_get_object(&p, &l, &tag, &cls, end - p) & 0x80);     /* TBSCertList */
    assert_int_equal(tag, V_ASN1_SEQUENCE);
    const unsigned char *tbs_end = p + l;
    assert_true(tbs_end <= end);
    while (p < tbs_end && n < max) {
        int t = der_skip(&p, tbs_end);
        assert_true(t >= 0);
        tags[n++] = t;
    }
    assert_ptr_equal(p, tbs_end);
    return n;
}

static void test_empty_crl(void **state)
{
    fixture *f = *state;
    crl_signer *s = NULL;
    crl_builder *b = NULL;
    assert_int_equal(crl_signer_create(f->key, f->ca, NULL, &s), 0);
    assert_int_equal(crl_builder_create(0, &b), 0);
    int64_t now = (int64_t)time(NULL);
    X509_CRL *crl = sign_and_parse(s, b, 7, now, now + 3600, NULL);
    assert_int_equal(X509_CRL_verify(crl, f->key), 1);
    assert_int_equal(X509_CRL_get_version(crl), 1);            /* v2 */
    /* RFC 5280 5.1.2.6: the list is absent, not empty, when nothing is revoked. OpenSSL
     * decodes both the same way, so look at the DER: after thisUpdate and nextUpdate comes
     * crlExtensions [0] directly, no SEQUENCE (not even an empty 30 00). */
    uint8_t *der = NULL;
    size_t der_len = 0;
    int tags[8];
    assert_int_equal(crl_builder_sign(b, s, 7, now, now + 3600, &der, &der_len), 0);
    int n = tbs_tags(der, der_len, tags, 8);
    assert_int_equal(n, 6);
    assert_int_equal(tags[0], 0x02);                    /* version */
    assert_int_equal(tags[1], 0x30);                    /* signature */
    assert_int_equal(tags[2], 0x30);                    /* issuer */
    assert_true(tags[3] == 0x17 || tags[3] == 0x18);    /* thisUpdate */
    assert_true(tags[4] == 0x17 || tags[4] == 0x18);    /* nextUpdate */
    assert_int_equal(tags[5], 0xa0);                    /* crlExtensions, no revoked list */
    free(der);
    /* the same walk sees the list once there is an entry (the check can fail) */
    uint8_t one[16] = {0x40, 1};
    assert_int_equal(crl_builder_add(b, one, 16, now, 1, 0), 0);
    assert_int_equal(crl_builder_sign(b, s, 8, now, now + 3600, &der, &der_len), 0);
    assert_int_equal(tbs_tags(der, der_len, tags, 8), 7);
    assert_int_equal(tags[5], 0x30);
    assert_int_equal(tags[6], 0xa0);
    free(der);
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(f->ca)), 0);
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    assert_non_null(num);
    assert_int_equal(ASN1_INTEGER_get(num), 7);
    ASN1_INTEGER_free(num);
    AUTHORITY_KEYID *akid = X509_CRL_get_ext_d2i(crl, NID_authority_key_identifier, NULL, NULL);
    assert_non_null(akid);
    assert_int_equal(ASN1_OCTET_STRING_cmp(akid->keyid, X509_get0_subject_key_id(f->ca)), 0);
    AUTHORITY_KEYID_free(akid);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_CRL_get0_lastUpdate(crl), (time_t)now), 0);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_CRL_get0_nextUpdate(crl), (time_t)(now + 3600)), 0);
    assert_int_equal(X509_CRL_get_signature_nid(crl), NID_sha256WithRSAEncryption);
    X509_CRL_free(crl);
    crl_builder_destroy(b);
    crl_signer_destroy(s);
}

/* A few thousand entries: every one parses back with its serial, date, reason and
 * invalidity date; the time it takes is printed (the 1M measurement is in the docs). */
static void test_thousands(void **state)
{
    fixture *f = *state;
    enum { N = 5000 };
    crl_signer *s = NULL;
    crl_builder *b = NULL;
    struct timespec t0, t1;
    int64_t now = (int64_t)time(NULL);

    assert_int_equal(crl_signer_create(f->key, f->ca, NULL, &s), 0);
    assert_int_equal(crl_builder_create(N, &b), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++) {
        uint8_t serial[16] = {0x40};
        serial[14] = (uint8_t)(i >> 8);
        serial[15] = (uint8_t)i;
        int reason = i % 6;
        assert_int_equal(crl_builder_add(b, serial, 16, now - i, reason, i % 7 == 0 ? now - 86400 : 0), 0);
    }
    size_t len = 0;
    X509_CRL *crl = sign_and_parse(s, b, 1, now, now + 86400, &len);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    print_message("      %d entries, %zu bytes, %.1f ms build+sign\n", N, len,
                  (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    assert_int_equal(crl_builder_count(b), N);
    assert_int_equal(X509_CRL_verify(crl, f->key), 1);
    STACK_OF(X509_REVOKED) *rs = X509_CRL_get_REVOKED(crl);
    assert_int_equal(sk_X509_REVOKED_num(rs), N);
    for (int i = 0; i < N; i += 97) {
        X509_REVOKED *r = sk_X509_REVOKED_value(rs, i);
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(r), NULL);
        uint8_t got[16];
        assert_int_equal(BN_bn2binpad(bn, got, 16), 16);
        assert_int_equal(got[0], 0x40);
        assert_int_equal(got[14] << 8 | got[15], i);
        BN_free(bn);
        assert_int_equal(ASN1_TIME_cmp_time_t(X509_REVOKED_get0_revocationDate(r), (time_t)(now - i)), 0);
        ASN1_ENUMERATED *reason = X509_REVOKED_get_ext_d2i(r, NID_crl_reason, NULL, NULL);
        if (i % 6 == 0) {
            assert_null(reason);               /* unspecified is left out */
        } else {
            assert_non_null(reason);
            assert_int_equal(ASN1_ENUMERATED_get(reason), i % 6);
        }
        ASN1_ENUMERATED_free(reason);
        ASN1_GENERALIZEDTIME *inv = X509_REVOKED_get_ext_d2i(r, NID_invalidity_date, NULL, NULL);
        assert_int_equal(inv != NULL, i % 7 == 0);
        if (inv != NULL)
            assert_int_equal(ASN1_TIME_cmp_time_t(inv, (time_t)(now - 86400)), 0);
        ASN1_GENERALIZEDTIME_free(inv);
    }
    /* The same builder signs again with another number: entries are not consumed. */
    X509_CRL *again = sign_and_parse(s, b, 2, now, now + 86400, NULL);
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(again)), N);
    X509_CRL_free(again);
    X509_CRL_free(crl);
    crl_builder_destroy(b);
    crl_signer_destroy(s);
}

/* Serial encodings: leading zeros stripped, a high bit gets a 0x00 pad, 20-byte serials. */
static void test_serials_and_dates(void **state)
{
    fixture *f = *state;
    crl_signer *s = NULL;
    crl_builder *b = NULL;
    uint8_t s1[16] = {0}, s2[16], s3[20];
    s1[15] = 5;
    memset(s2, 0xff, sizeof(s2));
    memset(s3, 0x11, sizeof(s3));
    assert_int_equal(crl_signer_create(f->key, f->ca, NULL, &s), 0);
    assert_int_equal(crl_builder_create(0, &b), 0);
    assert_int_equal(crl_builder_add(b, s1, 16, 1000, 1, 0), 0);
    assert_int_equal(crl_builder_add(b, s2, 16, 4102444800LL, 0, 0), 0);   /* 2100: GeneralizedTime */
    assert_int_equal(crl_builder_add(b, s3, 20, -631152000LL, 0, 0), 0);   /* 1950 */
    int64_t tu = 2524608000LL;    /* 2050-01-01: thisUpdate as GeneralizedTime */
    X509_CRL *crl = sign_and_parse(s, b, UINT64_MAX, tu, tu + 60, NULL);
    assert_int_equal(X509_CRL_verify(crl, f->key), 1);
    STACK_OF(X509_REVOKED) *rs = X509_CRL_get_REVOKED(crl);
    assert_int_equal(sk_X509_REVOKED_num(rs), 3);
    assert_int_equal(ASN1_INTEGER_get(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(rs, 0))), 5);
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(rs, 1)), NULL);
    assert_false(BN_is_negative(bn));
    assert_int_equal(BN_num_bytes(bn), 16);
    BN_free(bn);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_REVOKED_get0_revocationDate(sk_X509_REVOKED_value(rs, 1)), 4102444800), 0);
    assert_int_equal(ASN1_TIME_cmp_time_t(X509_CRL_get0_lastUpdate(crl), (time_t)tu), 0);
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    uint64_t v = 0;
    assert_int_equal(ASN1_INTEGER_get_uint64(&v, num), 1);
    assert_true(v == UINT64_MAX);
    ASN1_INTEGER_free(num);
    X509_CRL_free(crl);
    crl_builder_destroy(b);
    crl_signer_destroy(s);
}

static void test_bad_entries(void **state)
{
    (void)state;
    crl_builder *b = NULL;
    uint8_t serial[21] = {1};
    assert_int_equal(crl_builder_create(0, &b), 0);
    assert_int_equal(crl_builder_add(b, NULL, 16, 0, 0, 0), -EINVAL);
    assert_int_equal(crl_builder_add(b, serial, 0, 0, 0, 0), -EINVAL);
    assert_int_equal(crl_builder_add(b, serial, 21, 0, 0, 0), -EINVAL);
    assert_int_equal(crl_builder_add(b, serial, 16, 0, 11, 0), -EINVAL);
    assert_int_equal(crl_builder_add(b, serial, 16, 0, -1, 0), -EINVAL);
    assert_int_equal(crl_builder_count(b), 0);
    crl_builder_destroy(b);
    crl_builder_destroy(NULL);
    crl_signer_destroy(NULL);
}

static void test_ec_p384_signer(void **state)
{
    (void)state;
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    X509 *ca = self_signed(k, EVP_sha384());
    crl_signer *s = NULL;
    crl_builder *b = NULL;
    uint8_t serial[16] = {0x55};
    assert_int_equal(crl_signer_create(k, ca, NULL, &s), 0);
    assert_int_equal(crl_builder_create(1, &b), 0);
    assert_int_equal(crl_builder_add(b, serial, 16, 1700000000, 4, 0), 0);
    X509_CRL *crl = sign_and_parse(s, b, 3, 1700000000, 1700086400, NULL);
    assert_int_equal(X509_CRL_get_signature_nid(crl), NID_ecdsa_with_SHA384);
    assert_int_equal(X509_CRL_verify(crl, k), 1);
    X509_CRL_free(crl);
    crl_builder_destroy(b);
    crl_signer_destroy(s);
    X509_free(ca);
    EVP_PKEY_free(k);
}

static void test_reason_names(void **state)
{
    (void)state;
    static const char *names[] = { "unspecified", "keyCompromise", "cACompromise",
        "affiliationChanged", "superseded", "cessationOfOperation", "privilegeWithdrawn",
        "aACompromise" };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        int code = crl_reason_from_name(names[i]);
        assert_true(code >= 0);
        assert_string_equal(crl_reason_name(code), names[i]);
    }
    assert_int_equal(crl_reason_from_name("keyCompromise"), 1);
    assert_int_equal(crl_reason_from_name("aACompromise"), 10);
    assert_int_equal(crl_reason_from_name("certificateHold"), -1);   /* holds are refused */
    assert_int_equal(crl_reason_from_name("removeFromCRL"), -1);
    assert_int_equal(crl_reason_from_name("KeyCompromise"), -1);     /* names are exact */
    assert_int_equal(crl_reason_from_name(""), -1);
}

static void test_snapshot_and_file(void **state)
{
    fixture *f = *state;
    crl_signer *s = NULL;
    crl_builder *b = NULL;
    uint8_t *der = NULL, serial[16] = {0x41};
    size_t len = 0;
    char path[128], bad[128];
    crl_snapshot *snap = NULL, *loaded = NULL;

    assert_int_equal(crl_signer_create(f->key, f->ca, NULL, &s), 0);
    assert_int_equal(crl_builder_create(0, &b), 0);
    assert_int_equal(crl_builder_add(b, serial, 16, 1700000000, 1, 0), 0);
    assert_int_equal(crl_builder_sign(b, s, 42, 1700000000, 1700086400, &der, &len), 0);
    snprintf(path, sizeof(path), "%s/crl/ca.crl", f->dir);   /* crl/ is created */
    assert_int_equal(crl_file_save(path, der, len), 0);
    assert_int_equal(crl_snapshot_create(der, len, 42, 1700000000, 1700086400, &snap), 0);
    assert_int_equal(strlen(snap->etag), 34);
    assert_true(strstr(snap->headers, "ETag: \"") != NULL);
    assert_true(strstr(snap->headers, "Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n") != NULL);

    assert_int_equal(crl_file_load(path, f->key, &loaded), 0);
    assert_int_equal(loaded->number, 42);
    assert_int_equal(loaded->this_update, 1700000000);
    assert_int_equal(loaded->next_update, 1700086400);
    assert_int_equal(loaded->len, snap->len);
    assert_memory_equal(loaded->der, snap->der, snap->len);
    assert_string_equal(loaded->etag, snap->etag);

    /* the cache hands out references; the old snapshot lives while referenced */
    crl_cache *c = NULL;
    assert_int_equal(crl_cache_create(&c), 0);
    assert_null(crl_cache_get(c));
    crl_cache_set(c, snap);
    crl_snapshot *held = crl_cache_get(c);
    assert_ptr_equal(held, snap);
    crl_cache_set(c, loaded);
    assert_int_equal(held->number, 42);       /* still valid */
    crl_snapshot_unref(held);
    crl_cache_destroy(c);
    crl_cache_destroy(NULL);
    crl_snapshot_unref(NULL);

    /* refused: another key, a truncated file, a missing file */
    EVP_PKEY *other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    crl_snapshot *x = NULL;
    assert_int_equal(crl_file_load(path, other, &x), -1);
    EVP_PKEY_free(other);
    snprintf(bad, sizeof(bad), "%s/short.crl", f->dir);
    FILE *fp = fopen(bad, "wb");
    fwrite("\x30\x82\x01", 1, 3, fp);
    fclose(fp);
    assert_int_equal(crl_file_load(bad, f->key, &x), -1);
    snprintf(bad, sizeof(bad), "%s/missing.crl", f->dir);
    assert_int_equal(crl_file_load(bad, f->key, &x), -1);
    assert_null(x);
    /* a directory that cannot be created */
    assert_true(crl_file_save("/proc/nonexistent/x/ca.crl", (const uint8_t *)"x", 1) < 0);
    crl_builder_destroy(b);
    crl_signer_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_crl),
        cmocka_unit_test(test_thousands),
        cmocka_unit_test(test_serials_and_dates),
        cmocka_unit_test(test_bad_entries),
        cmocka_unit_test(test_ec_p384_signer),
        cmocka_unit_test(test_reason_names),
        cmocka_unit_test(test_snapshot_and_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
