/* Unit tests for engine/scep/keycache.c: a key built from its numbers (the RSA and named-curve
 * EC shapes) is the key OpenSSL's own decode gives, and every other encoding (absent RSA
 * parameters, malformed RSAPublicKey, explicit EC parameters, a point off the curve) gets the
 * same answer as d2i_PUBKEY: the same key, or none. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "engine/scep/keycache.h"

static EVP_PKEY *gen(const char *type, const char *arg)
{
    EVP_PKEY *k = strcmp(type, "RSA") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)atoi(arg))
                                            : EVP_PKEY_Q_keygen(NULL, NULL, "EC", arg);
    assert_non_null(k);
    return k;
}

/* What scep_key_get1 and d2i_PUBKEY make of the SubjectPublicKeyInfo der: both nothing, or
 * equal keys. Returns 1 when a key came out. */
static int same_answer(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509_PUBKEY *spki = d2i_X509_PUBKEY(NULL, &p, (long)len);
    p = der;
    EVP_PKEY *ref = d2i_PUBKEY(NULL, &p, (long)len);
    if (ref != NULL && p != der + len) {
        EVP_PKEY_free(ref);
        ref = NULL;
    }
    EVP_PKEY *ours = spki != NULL ? scep_key_get1(spki) : NULL;
    if (ref == NULL) {
        assert_null(ours);
    } else {
        assert_non_null(ours);
        assert_int_equal(EVP_PKEY_eq(ours, ref), 1);
        assert_int_equal(EVP_PKEY_get_bits(ours), EVP_PKEY_get_bits(ref));
        assert_int_equal(EVP_PKEY_get_id(ours), EVP_PKEY_get_id(ref));
    }
    int got = ours != NULL;
    EVP_PKEY_free(ours);
    EVP_PKEY_free(ref);
    X509_PUBKEY_free(spki);
    return got;
}

static int same_answer_key(EVP_PKEY *k)
{
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(k, &der);
    assert_true(len > 0);
    int got = same_answer(der, (size_t)len);
    OPENSSL_free(der);
    return got;
}

/* The common shapes: RSA of several sizes, named curves with uncompressed and compressed
 * points. Each key twice (the second time from the cache). */
static void test_common_shapes(void **state)
{
    (void)state;
    static const char *const specs[][2] = {
        { "RSA", "2048" }, { "RSA", "3072" }, { "RSA", "1024" },
        { "EC", "P-256" }, { "EC", "P-384" }, { "EC", "P-521" },
    };
    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        EVP_PKEY *k = gen(specs[i][0], specs[i][1]);
        assert_int_equal(same_answer_key(k), 1);
        assert_int_equal(same_answer_key(k), 1);
        if (strcmp(specs[i][0], "EC") == 0) {
            assert_int_equal(EVP_PKEY_set_utf8_string_param(
                                 k, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed"), 1);
            assert_int_equal(same_answer_key(k), 1);
        }
        EVP_PKEY_free(k);
    }
}

/* Edits of an RSA-2048 SubjectPublicKeyInfo:
 *   30 82 01 22  30 0d 06 09 <rsaEncryption> 05 00  03 82 01 0f 00  30 82 01 0a
 *   02 82 01 01 00 <256 bytes n>  02 03 01 00 01 */
static void test_rsa_edits(void **state)
{
    (void)state;
    EVP_PKEY *k = gen("RSA", "2048");
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(k, &der);
    assert_int_equal(len, 294);
    assert_int_equal(der[17], 0x05);            /* the NULL parameters */
    assert_int_equal(der[24], 0x30);            /* RSAPublicKey */
    assert_int_equal(der[28], 0x02);            /* n */
    assert_int_equal(der[289], 0x02);           /* e */

    unsigned char b[400];
    /* parameters absent: 05 00 dropped, lengths fixed (OpenSSL ignores them for RSA) */
    memcpy(b, der, (size_t)len);
    b[3] = 0x20;
    b[5] = 0x0b;
    memmove(b + 17, b + 19, (size_t)len - 19);
    same_answer(b, (size_t)len - 2);
    /* e negative (its first byte 0x81) */
    memcpy(b, der, (size_t)len);
    b[291] = 0x81;
    same_answer(b, (size_t)len);
    /* n with one more leading zero (not minimal): lengths grow by one at each level */
    memcpy(b, der, 29);
    b[2] = 0x01; b[3] = 0x23;                    /* SPKI */
    b[21] = 0x01; b[22] = 0x10;                  /* BIT STRING */
    b[26] = 0x01; b[27] = 0x0b;                  /* RSAPublicKey */
    b[30] = 0x01; b[31] = 0x02;                  /* n */
    b[32] = 0x00;
    memcpy(b + 33, der + 32, (size_t)len - 32);
    same_answer(b, (size_t)len + 1);
    /* trailing byte inside the RSAPublicKey's BIT STRING */
    memcpy(b, der, (size_t)len);
    b[3] = 0x23;
    b[22] = 0x10;
    b[len] = 0x00;
    same_answer(b, (size_t)len + 1);
    /* e zero-length */
    memcpy(b, der, (size_t)len);
    b[290] = 0x00;
    same_answer(b, 291);
    OPENSSL_free(der);
    EVP_PKEY_free(k);
}

/* A P-256 point moved off the curve: no key either way. */
static void test_ec_off_curve(void **state)
{
    (void)state;
    EVP_PKEY *k = gen("EC", "P-256");
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(k, &der);
    assert_int_equal(len, 91);
    assert_int_equal(der[26], 0x04);            /* uncompressed point */
    der[len - 1] ^= 0x01;
    assert_int_equal(same_answer(der, (size_t)len), 0);
    OPENSSL_free(der);
    EVP_PKEY_free(k);
}

/* Explicit curve parameters are not the named-curve shape: decoded the ordinary way. */
static void test_ec_explicit(void **state)
{
    (void)state;
    EVP_PKEY *k = gen("EC", "P-256");
    assert_int_equal(EVP_PKEY_set_utf8_string_param(k, OSSL_PKEY_PARAM_EC_ENCODING,
                                                    OSSL_PKEY_EC_ENCODING_EXPLICIT), 1);
    same_answer_key(k);
    EVP_PKEY_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_shapes),
        cmocka_unit_test(test_rsa_edits),
        cmocka_unit_test(test_ec_off_curve),
        cmocka_unit_test(test_ec_explicit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
