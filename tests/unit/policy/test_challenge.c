/* Unit tests for engine/policy/challenge.c: generation, hashing, record encoding, and every outcome
 * of challenge_verify. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/x509v3.h>

#include "engine/policy/challenge.h"

static const uint8_t KEY[] = "server-key-0123456789";
#define NOW 1700000000

static X509_NAME *dn(const char *cn)
{
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Corp", -1, -1, 0);
    return n;
}

static void test_generate(void **state)
{
    (void)state;
    char a[CHALLENGE_VALUE_LEN + 1], b[CHALLENGE_VALUE_LEN + 1];
    assert_int_equal(challenge_generate(a, sizeof(a)), 0);
    assert_int_equal(challenge_generate(b, sizeof(b)), 0);
    assert_int_equal(strlen(a), CHALLENGE_VALUE_LEN);
    assert_string_not_equal(a, b);
    for (size_t i = 0; i < CHALLENGE_VALUE_LEN; i++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", a[i]));
    assert_int_equal(challenge_generate(a, CHALLENGE_VALUE_LEN), -1);
}

static void test_hash(void **state)
{
    (void)state;
    uint8_t h1[32], h2[32], h3[32], h4[32];
    assert_int_equal(challenge_hash(KEY, sizeof(KEY), "abc", 3, h1), 0);
    assert_int_equal(challenge_hash(KEY, sizeof(KEY), "abc", 3, h2), 0);
    assert_memory_equal(h1, h2, 32);                        /* deterministic: one lookup */
    assert_int_equal(challenge_hash(KEY, sizeof(KEY), "abd", 3, h3), 0);
    assert_memory_not_equal(h1, h3, 32);
    assert_int_equal(challenge_hash(NULL, 0, "abc", 3, h4), 0);   /* keyless works, differs */
    assert_memory_not_equal(h1, h4, 32);
}

/* Known answers: HMAC-SHA256(key, "scepd-challenge-v1" || value), computed outside scepd with
 *   python3 -c 'import hmac,hashlib; print(hmac.new(b"server-key-0123456789\0",
 *               b"scepd-challenge-v1abc", hashlib.sha256).hexdigest())'
 * and checked with `printf 'scepd-challenge-v1abc' | openssl dgst -sha256 -mac HMAC -macopt
 * hexkey:7365727665722d6b65792d3031323334353637383900` (KEY is sizeof(KEY) = 22 bytes, its
 * NUL included). The keyless hash is HMAC with an empty key (`-macopt hexkey:` with
 * `openssl mac -digest SHA256 HMAC`). A change of the tag, the digest or the key handling
 * invalidates every stored challenge, so it must show here. */
static void test_hash_known_answer(void **state)
{
    (void)state;
    static const uint8_t keyed[32] = {
        0xc3, 0x5f, 0x51, 0x26, 0x67, 0x31, 0xd9, 0x71, 0x65, 0x7d, 0x29, 0xb7, 0xc7, 0x91, 0x63, 0xbc,
        0x33, 0x3e, 0x71, 0x94, 0x4b, 0x46, 0xb7, 0x97, 0xf7, 0x8e, 0xec, 0xb1, 0xc0, 0xd6, 0x95, 0x1d,
    };
    static const uint8_t keyless[32] = {
        0x03, 0x8e, 0x97, 0x45, 0x72, 0xd8, 0xec, 0x3c, 0xd1, 0x2b, 0x1d, 0xd9, 0xe7, 0x67, 0xfa, 0xf4,
        0x5b, 0xfa, 0x11, 0x58, 0xd3, 0x39, 0x92, 0x5c, 0x76, 0x8b, 0x14, 0x5a, 0x5f, 0x34, 0x7a, 0x05,
    };
    uint8_t h[32];
    assert_int_equal(challenge_hash(KEY, sizeof(KEY), "abc", 3, h), 0);
    assert_memory_equal(h, keyed, 32);
    assert_int_equal(challenge_hash(NULL, 0, "abc", 3, h), 0);
    assert_memory_equal(h, keyless, 32);
    /* a zero-length key is the keyless hash, not an error */
    assert_int_equal(challenge_hash(KEY, 0, "abc", 3, h), 0);
    assert_memory_equal(h, keyless, 32);
}

static void make(challenge_record *r, const char *value, X509_NAME *subject, GENERAL_NAMES *san)
{
    assert_int_equal(challenge_record_init(r, KEY, sizeof(KEY), value, strlen(value), "wifi", NOW,
                                           3600, subject, san), 0);
}

static void test_record_roundtrip(void **state)
{
    (void)state;
    challenge_record r, d;
    uint8_t buf[CHALLENGE_RECORD_MAX];
    X509_NAME *n = dn("dev-1");
    GENERAL_NAMES *g = challenge_parse_san("dns:dev-1.corp,upn:dev1@corp");
    make(&r, "value", n, g);
    challenge_mark_used(&r, NOW + 5);
    int len = challenge_encode(&r, buf, sizeof(buf));
    assert_true(len > 0);
    assert_int_equal(challenge_decode(buf, (size_t)len, &d), 0);
    assert_memory_equal(d.hash, r.hash, 32);
    assert_string_equal(d.profile, "wifi");
    assert_int_equal(d.created, NOW);
    assert_int_equal(d.expires, NOW + 3600);
    assert_int_equal(d.used, 1);
    assert_int_equal(d.used_at, NOW + 5);
    assert_int_equal(d.subject_len, r.subject_len);
    assert_memory_equal(d.subject_der, r.subject_der, r.subject_len);
    assert_int_equal(d.san_len, r.san_len);
    X509_NAME *bn = challenge_bound_subject(&d);
    assert_int_equal(X509_NAME_cmp(bn, n), 0);
    X509_NAME_free(bn);
    GENERAL_NAMES *bg = challenge_bound_san(&d);
    assert_int_equal(sk_GENERAL_NAME_num(bg), 2);
    GENERAL_NAMES_free(bg);

    /* every truncation and any trailing byte is refused; output too small refused */
    for (int i = 0; i < len; i++)
        assert_int_equal(challenge_decode(buf, (size_t)i, &d), -1);
    buf[len] = 0;
    assert_int_equal(challenge_decode(buf, (size_t)len + 1, &d), -1);
    assert_int_equal(challenge_encode(&r, buf, (size_t)len - 1), -1);
    buf[0] = 2;                                     /* unknown version */
    assert_int_equal(challenge_decode(buf, (size_t)len, &d), -1);
    buf[0] = 1;
    buf[1] = 2;                                     /* unknown flag */
    assert_int_equal(challenge_decode(buf, (size_t)len, &d), -1);

    /* no bindings */
    challenge_record e;
    make(&e, "v2", NULL, NULL);
    len = challenge_encode(&e, buf, sizeof(buf));
    assert_int_equal(challenge_decode(buf, (size_t)len, &d), 0);
    assert_int_equal(d.subject_len, 0);
    assert_null(challenge_bound_subject(&d));
    assert_null(challenge_bound_san(&d));
    X509_NAME_free(n);
    GENERAL_NAMES_free(g);
}

static void test_record_init_limits(void **state)
{
    (void)state;
    challenge_record r;
    char longname[100];
    memset(longname, 'p', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    memset(&r, 0x11, sizeof(r));
    assert_int_equal(challenge_record_init(&r, NULL, 0, "v", 1, longname, NOW, 60, NULL, NULL), -1);
    assert_int_equal(challenge_record_init(&r, NULL, 0, "v", 1, "p", NOW, 0, NULL, NULL), -1);
    assert_int_equal(challenge_record_init(&r, NULL, 0, "v", 1, "p", INT64_MAX - 5, 60, NULL, NULL), -1);
    assert_int_equal(((unsigned char *)&r)[0], 0x11);          /* untouched */
    /* a subject too big for the record */
    X509_NAME *n = X509_NAME_new();
    char v[200];
    memset(v, 'x', sizeof(v) - 1);
    v[sizeof(v) - 1] = '\0';
    for (int i = 0; i < 8; i++)
        X509_NAME_add_entry_by_txt(n, "1.2.3.4", MBSTRING_ASC, (const unsigned char *)v, -1, -1, 0);
    assert_int_equal(challenge_record_init(&r, NULL, 0, "v", 1, "p", NOW, 60, n, NULL), -1);
    X509_NAME_free(n);
}

static void test_verify_outcomes(void **state)
{
    (void)state;
    challenge_record r;
    X509_NAME *n = dn("dev-1"), *other = dn("dev-2");
    GENERAL_NAMES *g = challenge_parse_san("dns:dev-1.corp,upn:dev1@corp");
    GENERAL_NAMES *g_reordered = challenge_parse_san("upn:dev1@corp,dns:dev-1.corp");
    GENERAL_NAMES *g_less = challenge_parse_san("dns:dev-1.corp");
    GENERAL_NAMES *g_more = challenge_parse_san("dns:dev-1.corp,upn:dev1@corp,dns:evil.corp");
    const unsigned both = CHALLENGE_CHECK_SUBJECT | CHALLENGE_CHECK_SAN;
    make(&r, "the-value", n, g);

    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "wifi", NOW, both, n, g),
                     CHALLENGE_OK);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, NULL, NOW, both, n,
                                      g_reordered), CHALLENGE_OK);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-valuf", 9, "wifi", NOW, both, n, g),
                     CHALLENGE_WRONG);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 8, "wifi", NOW, both, n, g),
                     CHALLENGE_WRONG);
    assert_int_equal(challenge_verify(&r, NULL, 0, "the-value", 9, "wifi", NOW, both, n, g),
                     CHALLENGE_WRONG);                         /* other server key */
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), NULL, 0, "wifi", NOW, both, n, g),
                     CHALLENGE_WRONG);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "vpn", NOW, both, n, g),
                     CHALLENGE_PROFILE);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "wifi", NOW + 3599,
                                      both, n, g), CHALLENGE_OK);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "wifi", NOW + 3600,
                                      both, n, g), CHALLENGE_EXPIRED);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "wifi", NOW, both,
                                      other, g), CHALLENGE_MISMATCH_SUBJECT);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "wifi", NOW, both,
                                      NULL, g), CHALLENGE_MISMATCH_SUBJECT);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "wifi", NOW, both, n,
                                      g_less), CHALLENGE_MISMATCH_SAN);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "wifi", NOW, both, n,
                                      g_more), CHALLENGE_MISMATCH_SAN);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "wifi", NOW, both, n,
                                      NULL), CHALLENGE_MISMATCH_SAN);
    /* override mode: the caller skips the comparisons */
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "wifi", NOW, 0, other,
                                      NULL), CHALLENGE_OK);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "wifi", NOW,
                                      CHALLENGE_CHECK_SAN, other, g), CHALLENGE_OK);
    /* used beats expiry and mismatch */
    challenge_mark_used(&r, NOW + 1);
    assert_int_equal(challenge_verify(&r, KEY, sizeof(KEY), "the-value", 9, "wifi", NOW + 9999,
                                      both, other, NULL), CHALLENGE_USED);
    /* unbound record: anything goes */
    challenge_record u;
    make(&u, "free", NULL, NULL);
    assert_int_equal(challenge_verify(&u, KEY, sizeof(KEY), "free", 4, "wifi", NOW, both, other,
                                      NULL), CHALLENGE_OK);

    assert_string_equal(challenge_result_diag(CHALLENGE_EXPIRED), "challenge_expired");
    assert_string_equal(challenge_result_diag(CHALLENGE__COUNT), "unknown");
    assert_string_equal(challenge_result_text(CHALLENGE_USED), "one-time challenge already used");
    X509_NAME_free(n);
    X509_NAME_free(other);
    GENERAL_NAMES_free(g);
    GENERAL_NAMES_free(g_reordered);
    GENERAL_NAMES_free(g_less);
    GENERAL_NAMES_free(g_more);
}

static void test_parse_san(void **state)
{
    (void)state;
    GENERAL_NAMES *g = challenge_parse_san(
        "dns:a.example,email:a@example.com,uri:tag:microsoft.com,2022-09-14:sid:S-1-5-21-1,"
        "upn:u@corp,ip:10.1.2.3");
    assert_non_null(g);
    assert_int_equal(sk_GENERAL_NAME_num(g), 5);
    GENERAL_NAME *uri = sk_GENERAL_NAME_value(g, 2);
    assert_int_equal(uri->type, GEN_URI);
    assert_string_equal((const char *)ASN1_STRING_get0_data(uri->d.uniformResourceIdentifier),
                        "tag:microsoft.com,2022-09-14:sid:S-1-5-21-1");
    GENERAL_NAME *upn = sk_GENERAL_NAME_value(g, 3);
    assert_int_equal(upn->type, GEN_OTHERNAME);
    assert_int_equal(OBJ_obj2nid(upn->d.otherName->type_id), NID_ms_upn);
    assert_int_equal(upn->d.otherName->value->type, V_ASN1_UTF8STRING);
    assert_int_equal(sk_GENERAL_NAME_value(g, 4)->type, GEN_IPADD);
    GENERAL_NAMES_free(g);
    assert_null(challenge_parse_san(""));
    assert_null(challenge_parse_san(NULL));
    assert_null(challenge_parse_san("dns:"));
    assert_null(challenge_parse_san("x400:foo"));
    assert_null(challenge_parse_san("nocolon"));
    assert_null(challenge_parse_san("ip:not-an-ip"));
}

static void test_parse_subject(void **state)
{
    (void)state;
    X509_NAME *n = challenge_parse_subject("/CN=dev-9/O=corp");
    assert_non_null(n);
    assert_int_equal(X509_NAME_entry_count(n), 2);
    X509_NAME_free(n);
    const char *bad[] = { "", "CN=x", "/CN", "/CN=", "/=x", "/NOPE=x", "/", NULL };
    for (int i = 0; bad[i] != NULL; i++)
        if ((n = challenge_parse_subject(bad[i])) != NULL) {
            X509_NAME_free(n);
            fail_msg("accepted '%s'", bad[i]);
        }
    assert_null(challenge_parse_subject(NULL));
}

static void test_create(void **state)
{
    (void)state;
    char v[CHALLENGE_VALUE_LEN + 1], v2[CHALLENGE_VALUE_LEN + 1];
    uint8_t key[CHALLENGE_HASH_LEN], h[CHALLENGE_HASH_LEN], rec[CHALLENGE_RECORD_MAX];
    size_t len = 0;
    const char *why = NULL;
    challenge_record r;

    assert_int_equal(challenge_create("otp", 1000, 60, "/CN=a", "dns:a.example", v, key, rec,
                                      &len, &why), 0);
    assert_null(why);
    assert_int_equal(strlen(v), CHALLENGE_VALUE_LEN);
    assert_int_equal(challenge_hash(NULL, 0, v, strlen(v), h), 0);
    assert_memory_equal(h, key, sizeof(h));
    assert_int_equal(challenge_decode(rec, len, &r), 0);
    assert_string_equal(r.profile, "otp");
    assert_int_equal(r.expires, 1060);
    assert_true(r.subject_len > 0 && r.san_len > 0);
    assert_int_equal(challenge_verify(&r, NULL, 0, v, strlen(v), "otp", 1001, 0, NULL, NULL),
                     CHALLENGE_OK);
    /* two challenges differ */
    assert_int_equal(challenge_create("otp", 1000, 60, NULL, "", v2, key, rec, &len, &why), 0);
    assert_string_not_equal(v, v2);
    assert_int_equal(challenge_decode(rec, len, &r), 0);
    assert_int_equal(r.subject_len, 0);
    assert_int_equal(r.san_len, 0);
    /* refusals say why and write nothing */
    v2[0] = '\0';
    assert_int_equal(challenge_create("otp", 1000, 60, "CN=x", NULL, v2, key, rec, &len, &why), -1);
    assert_non_null(why);
    assert_int_equal(v2[0], '\0');
    assert_int_equal(challenge_create("otp", 1000, 60, NULL, "bogus:x", v2, key, rec, &len, &why), -1);
    assert_int_equal(challenge_create("otp", 1000, 0, NULL, NULL, v2, key, rec, &len, &why), -1);
    assert_int_equal(v2[0], '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_hash_known_answer),
        cmocka_unit_test(test_record_roundtrip),
        cmocka_unit_test(test_record_init_limits),
        cmocka_unit_test(test_verify_outcomes),
        cmocka_unit_test(test_parse_san),
        cmocka_unit_test(test_parse_subject),
        cmocka_unit_test(test_create),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
