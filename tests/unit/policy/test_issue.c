/* Unit tests for engine/policy/issue.c: CSRs are built with the project's client library (or with
 * OpenSSL directly for requests it will not make), checked with issue_check_csr and turned
 * into certificates with issue_build against a software CA filled into a ca_set by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "engine/common/config.h"
#include "engine/policy/issue.h"
#include "tests/unit/policy/policy_test_ca.h"
#include "engine/scep/reject.h"
#include "client/scep_client.h"

#define CHALLENGE "s3cret"

typedef struct test_ca {
    EVP_PKEY *key;
    X509 *cert;
    ca_set set;
} test_ca;

/* Created once: keys are slow to make. */
static struct fixture {
    scepc_ctx *ctx;
    config cfg;
    test_ca ca;           /* P-256, valid 10 years, with SKI */
    test_ca short_ca;     /* expires in 10 days */
    test_ca expired_ca;   /* expired yesterday */
    test_ca noski_ca;     /* no subjectKeyIdentifier */
    test_ca p384_ca;      /* P-384: signs with SHA-384 */
    issuer *is;           /* ca, challenge CHALLENGE */
    issuer *is_nochal;    /* ca, empty challenge */
    EVP_PKEY *rsa, *ec, *ec384, *other;
    X509_NAME *subject;
} F;

static void make_ca(test_ca *ca, const char *keyspec, const char *cn, long nb_off, long na_off,
                    int with_ski)
{
    X509_NAME *n = NULL;
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    uint8_t sn[8];

    assert_int_equal(scepc_keygen(F.ctx, keyspec, &ca->key), SCEPC_OK);
    ca->cert = X509_new();
    assert_non_null(ca->cert);
    assert_int_equal(scepc_name_parse(cn, &n), SCEPC_OK);
    assert_int_equal(RAND_bytes(sn, sizeof(sn)), 1);
    sn[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(sn, sizeof(sn), NULL);
    assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(ca->cert)));
    BN_free(bn);
    assert_true(X509_set_version(ca->cert, X509_VERSION_3));
    assert_true(X509_set_subject_name(ca->cert, n));
    assert_true(X509_set_issuer_name(ca->cert, n));
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(ca->cert), nb_off));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(ca->cert), na_off));
    assert_true(X509_set_pubkey(ca->cert, ca->key));
    X509V3_set_ctx(&v3, ca->cert, ca->cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    assert_true(X509_add_ext(ca->cert, ext, -1));
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
    assert_true(X509_add_ext(ca->cert, ext, -1));
    X509_EXTENSION_free(ext);
    if (with_ski) {
        ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
        assert_non_null(ext);
        assert_true(X509_add_ext(ca->cert, ext, -1));
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(ca->cert, ca->key, EVP_sha256()) > 0);
    X509_NAME_free(n);

    test_ca_set_fill(&ca->set, ca->key, ca->cert);
}

static void free_ca(test_ca *ca)
{
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(scepc_ctx_create(NULL, NULL, &F.ctx), SCEPC_OK);
    config_defaults(&F.cfg);
    F.cfg.validity_days = 365;
    F.cfg.allow_sha1 = 0;
    make_ca(&F.ca, "ec:P-256", "/CN=Issue CA/O=scepd", -3600, 10L * 365 * 86400, 1);
    make_ca(&F.short_ca, "ec:P-256", "/CN=Short CA/O=scepd", -3600, 10L * 86400, 1);
    make_ca(&F.expired_ca, "ec:P-256", "/CN=Expired CA/O=scepd", -20L * 86400, -86400, 1);
    make_ca(&F.noski_ca, "ec:P-256", "/CN=No SKI CA/O=scepd", -3600, 365L * 86400, 0);
    make_ca(&F.p384_ca, "ec:P-384", "/CN=P-384 CA/O=scepd", -3600, 365L * 86400, 1);
    assert_int_equal(issuer_create(&F.cfg, &F.ca.set, CHALLENGE, &F.is), 0);
    assert_int_equal(issuer_create(&F.cfg, &F.ca.set, "", &F.is_nochal), 0);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.rsa), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.other), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "ec:P-256", &F.ec), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "ec:P-384", &F.ec384), SCEPC_OK);
    assert_int_equal(scepc_name_parse("/CN=device-1/O=fleet", &F.subject), SCEPC_OK);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    issuer_destroy(F.is);
    issuer_destroy(F.is_nochal);
    issuer_destroy(NULL);
    free_ca(&F.ca);
    free_ca(&F.short_ca);
    free_ca(&F.expired_ca);
    free_ca(&F.noski_ca);
    free_ca(&F.p384_ca);
    EVP_PKEY_free(F.rsa);
    EVP_PKEY_free(F.other);
    EVP_PKEY_free(F.ec);
    EVP_PKEY_free(F.ec384);
    X509_NAME_free(F.subject);
    scepc_ctx_destroy(F.ctx);
    return 0;
}

/* ---- helpers ---- */

typedef struct der_buf {
    uint8_t *p;
    size_t n;
} der_buf;

static der_buf req_der(X509_REQ *req)
{
    unsigned char *d = NULL;
    int n = i2d_X509_REQ(req, &d);
    assert_true(n > 0);
    return (der_buf){ d, (size_t)n };
}

static der_buf csr(EVP_PKEY *key, const X509_NAME *subject, const char *challenge,
                   const scepc_san *sans, size_t nsans, STACK_OF(X509_EXTENSION) *extra,
                   scepc_md md)
{
    X509_REQ *req = NULL;
    assert_int_equal(scepc_build_csr(F.ctx, key, subject, challenge, sans, nsans, extra, md,
                                     &req), SCEPC_OK);
    der_buf d = req_der(req);
    X509_REQ_free(req);
    return d;
}

static der_buf simple_csr(EVP_PKEY *key, const char *challenge)
{
    return csr(key, F.subject, challenge, NULL, 0, NULL, SCEPC_MD_SHA256);
}

static int check(const issuer *is, der_buf d, int need_challenge)
{
    X509_REQ *out = NULL;
    int rc = issue_check_csr(is, d.p, d.n, need_challenge, &out);
    if (rc == REJ_NONE)
        assert_non_null(out);
    else
        assert_null(out);
    X509_REQ_free(out);
    return rc;
}

/* Checks d and issues a certificate for it (both must succeed). */
static X509 *issue(const issuer *is, der_buf d)
{
    X509_REQ *req = NULL;
    X509 *cert = NULL;
    assert_int_equal(issue_check_csr(is, d.p, d.n, 1, &req), REJ_NONE);
    assert_int_equal(issue_build(is, req, &cert), REJ_NONE);
    assert_non_null(cert);
    X509_REQ_free(req);
    return cert;
}

static STACK_OF(X509_EXTENSION) *exts_of(const char *const *specs)
{
    STACK_OF(X509_EXTENSION) *sk = sk_X509_EXTENSION_new_null();
    assert_non_null(sk);
    for (size_t i = 0; specs[i] != NULL; i += 2) {
        X509_EXTENSION *e = X509V3_EXT_conf(NULL, NULL, specs[i], specs[i + 1]);
        assert_non_null(e);
        assert_true(sk_X509_EXTENSION_push(sk, e));
    }
    return sk;
}

static void expect_rc(const char *what, int got, int want)
{
    if (got != want)
        fail_msg("%s: got %s, want %s", what, reject_diag(got), reject_diag(want));
}

/* ---- issue_check_csr ---- */

static void test_check_valid(void **state)
{
    (void)state;
    EVP_PKEY *keys[] = { F.rsa, F.ec, F.ec384 };
    for (size_t i = 0; i < 3; i++) {
        der_buf d = simple_csr(keys[i], CHALLENGE);
        expect_rc("valid", check(F.is, d, 1), REJ_NONE);
        OPENSSL_free(d.p);
    }
    /* SHA-384 and SHA-512 signatures are fine too. */
    der_buf d = csr(F.ec, F.subject, CHALLENGE, NULL, 0, NULL, SCEPC_MD_SHA512);
    expect_rc("sha512", check(F.is, d, 1), REJ_NONE);
    OPENSSL_free(d.p);
    d = csr(F.rsa, F.subject, CHALLENGE, NULL, 0, NULL, SCEPC_MD_SHA384);
    expect_rc("sha384", check(F.is, d, 1), REJ_NONE);
    OPENSSL_free(d.p);
}

static void test_check_out_is_the_request(void **state)
{
    der_buf d = simple_csr(F.ec, CHALLENGE);
    X509_REQ *out = NULL;
    (void)state;
    assert_int_equal(issue_check_csr(F.is, d.p, d.n, 1, &out), REJ_NONE);
    assert_int_equal(X509_NAME_cmp(X509_REQ_get_subject_name(out), F.subject), 0);
    EVP_PKEY *key = issue_csr_key(out);
    assert_int_equal(EVP_PKEY_eq(key, F.ec), 1);
    EVP_PKEY_free(key);
    X509_REQ_free(out);
    OPENSSL_free(d.p);
}

static void test_check_bad_der(void **state)
{
    static const uint8_t garbage[] = "-----BEGIN CERTIFICATE REQUEST-----";
    der_buf d = simple_csr(F.rsa, CHALLENGE);
    uint8_t *buf = malloc(d.n + 2);
    (void)state;

    expect_rc("garbage", check(F.is, (der_buf){ (uint8_t *)garbage, sizeof(garbage) - 1 }, 1),
              REJ_BAD_CSR);
    expect_rc("empty", check(F.is, (der_buf){ (uint8_t *)garbage, 0 }, 1), REJ_BAD_CSR);
    expect_rc("truncated", check(F.is, (der_buf){ d.p, d.n - 1 }, 1), REJ_BAD_CSR);
    expect_rc("half", check(F.is, (der_buf){ d.p, d.n / 2 }, 1), REJ_BAD_CSR);
    assert_non_null(buf);
    memcpy(buf, d.p, d.n);
    buf[d.n] = 0x00;
    buf[d.n + 1] = 0x00;
    expect_rc("trailing", check(F.is, (der_buf){ buf, d.n + 2 }, 1), REJ_BAD_CSR);
    expect_rc("untouched", check(F.is, (der_buf){ buf, d.n }, 1), REJ_NONE);
    free(buf);
    OPENSSL_free(d.p);
}

static void test_check_key_type(void **state)
{
    EVP_PKEY *k = NULL;
    (void)state;

    const char *bad[] = { "rsa:1024", "ec:P-521", "ec:secp256k1", "ed25519" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(scepc_keygen(F.ctx, bad[i], &k), SCEPC_OK);
        der_buf d = simple_csr(k, CHALLENGE);
        expect_rc(bad[i], check(F.is, d, 1), REJ_KEY_TYPE);
        OPENSSL_free(d.p);
        EVP_PKEY_free(k);
        k = NULL;
    }
}

static void test_check_sig_alg(void **state)
{
    issuer *sha1_ok = NULL;
    config cfg = F.cfg;
    X509_REQ *req = NULL;
    (void)state;

    der_buf d = csr(F.rsa, F.subject, CHALLENGE, NULL, 0, NULL, SCEPC_MD_SHA1);
    expect_rc("sha1", check(F.is, d, 1), REJ_CSR_SIG_ALG);
    cfg.allow_sha1 = 1;
    assert_int_equal(issuer_create(&cfg, &F.ca.set, CHALLENGE, &sha1_ok), 0);
    expect_rc("sha1 allowed", check(sha1_ok, d, 1), REJ_NONE);
    OPENSSL_free(d.p);

    /* MD5 stays refused even where SHA-1 is allowed. */
    assert_int_equal(scepc_build_csr(F.ctx, F.rsa, F.subject, CHALLENGE, NULL, 0, NULL,
                                     SCEPC_MD_SHA256, &req), SCEPC_OK);
    assert_true(X509_REQ_sign(req, F.rsa, EVP_md5()) > 0);
    d = req_der(req);
    expect_rc("md5", check(sha1_ok, d, 1), REJ_CSR_SIG_ALG);
    OPENSSL_free(d.p);
    X509_REQ_free(req);
    issuer_destroy(sha1_ok);
}

static void test_check_pop(void **state)
{
    X509_REQ *req = NULL;
    (void)state;

    /* Last byte of the DER is the last byte of the signature value. */
    der_buf d = simple_csr(F.rsa, CHALLENGE);
    d.p[d.n - 1] ^= 0x01;
    expect_rc("tampered signature", check(F.is, d, 1), REJ_POP);
    OPENSSL_free(d.p);

    /* A request for one key signed with another. */
    assert_int_equal(scepc_build_csr(F.ctx, F.rsa, F.subject, CHALLENGE, NULL, 0, NULL,
                                     SCEPC_MD_SHA256, &req), SCEPC_OK);
    assert_true(X509_REQ_sign(req, F.other, EVP_sha256()) > 0);
    assert_true(X509_REQ_set_pubkey(req, F.rsa));
    d = req_der(req);
    expect_rc("wrong key", check(F.is, d, 1), REJ_POP);
    OPENSSL_free(d.p);
    X509_REQ_free(req);
}

static void test_check_basic_constraints(void **state)
{
    (void)state;
    static const char *const ca_true[] = { "basicConstraints", "critical,CA:TRUE", NULL };
    static const char *const ca_true_nc[] = { "basicConstraints", "CA:TRUE,pathlen:0", NULL };
    static const char *const ca_false[] = { "basicConstraints", "critical,CA:FALSE", NULL };
    static const char *const false_then_true[] = { "basicConstraints", "CA:FALSE",
                                                   "basicConstraints", "CA:TRUE", NULL };
    const struct { const char *const *spec; int want; } cases[] = {
        { ca_true, REJ_CA_REQUESTED },
        { ca_true_nc, REJ_CA_REQUESTED },
        { false_then_true, REJ_CA_REQUESTED },
        { ca_false, REJ_NONE },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        STACK_OF(X509_EXTENSION) *x = exts_of(cases[i].spec);
        der_buf d = csr(F.rsa, F.subject, CHALLENGE, NULL, 0, x, SCEPC_MD_SHA256);
        expect_rc(cases[i].spec[1], check(F.is, d, 1), cases[i].want);
        OPENSSL_free(d.p);
        sk_X509_EXTENSION_pop_free(x, X509_EXTENSION_free);
    }
}

/* A subjectAltName extension of one GENERAL_NAME. */
static STACK_OF(X509_EXTENSION) *san_ext(GENERAL_NAME *gn)
{
    GENERAL_NAMES *gns = GENERAL_NAMES_new();
    STACK_OF(X509_EXTENSION) *sk = sk_X509_EXTENSION_new_null();
    assert_non_null(gns);
    assert_non_null(sk);
    assert_true(sk_GENERAL_NAME_push(gns, gn));
    X509_EXTENSION *e = X509V3_EXT_i2d(NID_subject_alt_name, 0, gns);
    assert_non_null(e);
    assert_true(sk_X509_EXTENSION_push(sk, e));
    GENERAL_NAMES_free(gns);
    return sk;
}

static void test_check_san_types(void **state)
{
    (void)state;

    scepc_san ip = { SCEPC_SAN_IP, "192.0.2.7" };
    der_buf d = csr(F.rsa, F.subject, CHALLENGE, &ip, 1, NULL, SCEPC_MD_SHA256);
    expect_rc("ip", check(F.is, d, 1), REJ_SAN_TYPE);
    OPENSSL_free(d.p);

    /* An allowed name next to a forbidden one does not help. */
    scepc_san mixed[] = { { SCEPC_SAN_DNS, "device-1.example" }, { SCEPC_SAN_IP, "::1" } };
    d = csr(F.rsa, F.subject, CHALLENGE, mixed, 2, NULL, SCEPC_MD_SHA256);
    expect_rc("dns+ip", check(F.is, d, 1), REJ_SAN_TYPE);
    OPENSSL_free(d.p);

    GENERAL_NAME *gn = GENERAL_NAME_new();
    X509_NAME *dn = NULL;
    assert_int_equal(scepc_name_parse("/CN=evil/O=other", &dn), SCEPC_OK);
    GENERAL_NAME_set0_value(gn, GEN_DIRNAME, dn);
    STACK_OF(X509_EXTENSION) *x = san_ext(gn);
    d = csr(F.rsa, F.subject, CHALLENGE, NULL, 0, x, SCEPC_MD_SHA256);
    expect_rc("dirName", check(F.is, d, 1), REJ_SAN_TYPE);
    OPENSSL_free(d.p);
    sk_X509_EXTENSION_pop_free(x, X509_EXTENSION_free);

    /* otherName that is not a UPN, and a UPN that is not a UTF8String. */
    ASN1_TYPE *v = ASN1_TYPE_new();
    ASN1_UTF8STRING *s = ASN1_UTF8STRING_new();
    assert_true(ASN1_STRING_set(s, "x", 1));
    ASN1_TYPE_set(v, V_ASN1_UTF8STRING, s);
    gn = GENERAL_NAME_new();
    assert_true(GENERAL_NAME_set0_othername(gn, OBJ_txt2obj("1.3.6.1.4.1.99999.7", 1), v));
    x = san_ext(gn);
    d = csr(F.rsa, F.subject, CHALLENGE, NULL, 0, x, SCEPC_MD_SHA256);
    expect_rc("otherName", check(F.is, d, 1), REJ_SAN_TYPE);
    OPENSSL_free(d.p);
    sk_X509_EXTENSION_pop_free(x, X509_EXTENSION_free);

    v = ASN1_TYPE_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    assert_true(ASN1_STRING_set(ia5, "user@example", 12));
    ASN1_TYPE_set(v, V_ASN1_IA5STRING, ia5);
    gn = GENERAL_NAME_new();
    assert_true(GENERAL_NAME_set0_othername(gn, OBJ_nid2obj(NID_ms_upn), v));
    x = san_ext(gn);
    d = csr(F.rsa, F.subject, CHALLENGE, NULL, 0, x, SCEPC_MD_SHA256);
    expect_rc("upn ia5", check(F.is, d, 1), REJ_SAN_TYPE);
    OPENSSL_free(d.p);
    sk_X509_EXTENSION_pop_free(x, X509_EXTENSION_free);

    /* The allowed types, all together. */
    scepc_san ok[] = { { SCEPC_SAN_DNS, "device-1.example" },
                       { SCEPC_SAN_EMAIL, "dev@example.org" },
                       { SCEPC_SAN_URI, "urn:uuid:8a7f0c3e-1d4b-4c55-9d6e-0f1a2b3c4d5e" },
                       { SCEPC_SAN_UPN, "dev@corp.example" } };
    d = csr(F.rsa, F.subject, CHALLENGE, ok, 4, NULL, SCEPC_MD_SHA256);
    expect_rc("allowed", check(F.is, d, 1), REJ_NONE);
    OPENSSL_free(d.p);
}

static void test_check_empty_subject(void **state)
{
    X509_NAME *empty = X509_NAME_new();
    scepc_san dns = { SCEPC_SAN_DNS, "device-1.example" };
    (void)state;

    der_buf d = csr(F.ec, empty, CHALLENGE, NULL, 0, NULL, SCEPC_MD_SHA256);
    expect_rc("empty", check(F.is, d, 1), REJ_EMPTY_SUBJECT);
    OPENSSL_free(d.p);
    d = csr(F.ec, empty, CHALLENGE, &dns, 1, NULL, SCEPC_MD_SHA256);
    expect_rc("empty+san", check(F.is, d, 1), REJ_NONE);
    OPENSSL_free(d.p);
    X509_NAME_free(empty);
}

static void test_check_challenge(void **state)
{
    (void)state;
    const struct { const char *chal; int need; const issuer *is; int want; } cases[] = {
        { CHALLENGE, 1, F.is, REJ_NONE },
        { "wrong", 1, F.is, REJ_CHALLENGE },
        { "S3CRET", 1, F.is, REJ_CHALLENGE },
        { "s3cre", 1, F.is, REJ_CHALLENGE },
        { "s3cret ", 1, F.is, REJ_CHALLENGE },
        { NULL, 1, F.is, REJ_CHALLENGE },
        { CHALLENGE, 1, F.is_nochal, REJ_NO_CHALLENGE_SET },
        { NULL, 1, F.is_nochal, REJ_NO_CHALLENGE_SET },
        { "", 1, F.is_nochal, REJ_NO_CHALLENGE_SET },
        /* Renewal: no challenge needed, and a wrong one does not matter. */
        { NULL, 0, F.is, REJ_NONE },
        { "wrong", 0, F.is, REJ_NONE },
        { NULL, 0, F.is_nochal, REJ_NONE },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        der_buf d = simple_csr(F.ec, cases[i].chal);
        char what[64];
        snprintf(what, sizeof(what), "case %zu (%s)", i, cases[i].chal ? cases[i].chal : "none");
        expect_rc(what, check(cases[i].is, d, cases[i].need), cases[i].want);
        OPENSSL_free(d.p);
    }
}

static void test_check_challenge_utf8(void **state)
{
    /* A UTF8String challenge matches byte for byte. */
    issuer *is = NULL;
    const char *chal = "p\xc3\xa4ssw\xc3\xb6rt";
    (void)state;
    assert_int_equal(issuer_create(&F.cfg, &F.ca.set, chal, &is), 0);
    der_buf d = simple_csr(F.ec, chal);
    expect_rc("utf8", check(is, d, 1), REJ_NONE);
    expect_rc("utf8 vs other", check(F.is, d, 1), REJ_CHALLENGE);
    OPENSSL_free(d.p);
    issuer_destroy(is);
}

/* ---- issue_build ---- */

static X509_EXTENSION *ext_by_nid(X509 *c, int nid)
{
    int idx = X509_get_ext_by_NID(c, nid, -1);
    if (idx < 0)
        return NULL;
    assert_int_equal(X509_get_ext_by_NID(c, nid, idx), -1);   /* exactly once */
    return X509_get_ext(c, idx);
}

static void assert_profile(X509 *c, const test_ca *ca, EVP_PKEY *key, int rsa)
{
    /* v3, issuer, subject, key, signature */
    assert_int_equal(X509_get_version(c), X509_VERSION_3);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(c), X509_get_subject_name(ca->cert)), 0);
    /* The key is the request's SubjectPublicKeyInfo, copied as encoded (issue.h). */
    unsigned char *want = NULL, *got = NULL;
    int wn = i2d_PUBKEY(key, &want), gn = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c), &got);
    assert_true(wn > 0 && wn == gn && memcmp(want, got, (size_t)wn) == 0);
    OPENSSL_free(want);
    OPENSSL_free(got);
    assert_int_equal(X509_verify(c, ca->key), 1);
    assert_int_equal(X509_check_issued(ca->cert, c), X509_V_OK);

    /* serial: 16 bytes, positive, top byte 0x40..0x7f (so DER needs no 0x00 pad) */
    const ASN1_INTEGER *sn = X509_get0_serialNumber(c);
    assert_int_equal(ASN1_STRING_type(sn), V_ASN1_INTEGER);
    assert_int_equal(ASN1_STRING_length(sn), 16);
    uint8_t b0 = ASN1_STRING_get0_data(sn)[0];
    assert_true(b0 >= 0x40 && b0 <= 0x7f);
    unsigned char *der = NULL;
    int n = i2d_ASN1_INTEGER((ASN1_INTEGER *)sn, &der);
    assert_int_equal(n, 18);
    assert_int_equal(der[1], 16);
    OPENSSL_free(der);

    /* basicConstraints critical CA:FALSE */
    X509_EXTENSION *e = ext_by_nid(c, NID_basic_constraints);
    assert_non_null(e);
    assert_int_equal(X509_EXTENSION_get_critical(e), 1);
    BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(e);
    assert_non_null(bc);
    assert_false(bc->ca);
    assert_null(bc->pathlen);
    BASIC_CONSTRAINTS_free(bc);
    assert_int_equal(X509_check_ca(c), 0);

    /* keyUsage critical */
    e = ext_by_nid(c, NID_key_usage);
    assert_non_null(e);
    assert_int_equal(X509_EXTENSION_get_critical(e), 1);
    assert_int_equal(X509_get_key_usage(c),
                     rsa ? (KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT) : KU_DIGITAL_SIGNATURE);

    /* EKU: clientAuth, nothing else */
    e = ext_by_nid(c, NID_ext_key_usage);
    assert_non_null(e);
    EXTENDED_KEY_USAGE *eku = X509V3_EXT_d2i(e);
    assert_non_null(eku);
    assert_int_equal(sk_ASN1_OBJECT_num(eku), 1);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)), NID_client_auth);
    EXTENDED_KEY_USAGE_free(eku);

    /* SKI = SHA-1 of the subject key bits; AKI = the CA's SKI */
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(c);
    assert_non_null(ski);
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    assert_int_equal(X509_pubkey_digest(c, EVP_sha1(), md, &mdlen), 1);
    assert_int_equal(ASN1_STRING_length(ski), (int)mdlen);
    assert_memory_equal(ASN1_STRING_get0_data(ski), md, mdlen);
    assert_non_null(ext_by_nid(c, NID_authority_key_identifier));
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(c);
    assert_non_null(akid);
    const ASN1_OCTET_STRING *ca_ski = X509_get0_subject_key_id(ca->cert);
    if (ca_ski != NULL) {
        assert_int_equal(ASN1_OCTET_STRING_cmp(akid, ca_ski), 0);
    } else {
        assert_int_equal(X509_pubkey_digest(ca->cert, EVP_sha1(), md, &mdlen), 1);
        assert_int_equal(ASN1_STRING_length(akid), (int)mdlen);
        assert_memory_equal(ASN1_STRING_get0_data(akid), md, mdlen);
    }
}

static void test_build_profile(void **state)
{
    static const char *const extra_spec[] = {
        "keyUsage", "critical,keyCertSign,cRLSign,digitalSignature",
        "extendedKeyUsage", "serverAuth,codeSigning",
        "basicConstraints", "CA:FALSE",
        "nsComment", "copied blindly?",
        NULL,
    };
    scepc_san sans[] = { { SCEPC_SAN_DNS, "device-1.example" },
                         { SCEPC_SAN_EMAIL, "dev@example.org" },
                         { SCEPC_SAN_URI, "urn:uuid:8a7f0c3e-1d4b-4c55-9d6e-0f1a2b3c4d5e" },
                         { SCEPC_SAN_UPN, "dev@corp.example" } };
    STACK_OF(X509_EXTENSION) *extra = exts_of(extra_spec);
    (void)state;

    /* A private extension the profile knows nothing about. */
    ASN1_OBJECT *priv = OBJ_txt2obj("1.3.6.1.4.1.99999.42", 1);
    ASN1_OCTET_STRING *val = ASN1_OCTET_STRING_new();
    assert_true(ASN1_OCTET_STRING_set(val, (const unsigned char *)"\x05\x00", 2));
    X509_EXTENSION *pe = X509_EXTENSION_create_by_OBJ(NULL, priv, 0, val);
    assert_non_null(pe);
    assert_true(sk_X509_EXTENSION_push(extra, pe));

    der_buf d = csr(F.rsa, F.subject, CHALLENGE, sans, 4, extra, SCEPC_MD_SHA256);
    time_t before = time(NULL);
    X509 *c = issue(F.is, d);
    time_t after = time(NULL);

    assert_profile(c, &F.ca, F.rsa, 1);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(c), F.subject), 0);

    /* Validity: notBefore backdated, notAfter validity_days later. */
    int64_t nb = asn1_epoch(X509_get0_notBefore(c)), na = asn1_epoch(X509_get0_notAfter(c));
    assert_true(nb >= (int64_t)before - F.cfg.backdate_s);
    assert_true(nb <= (int64_t)after - F.cfg.backdate_s);
    assert_true(na >= (int64_t)before + 365 * 86400);
    assert_true(na <= (int64_t)after + 365 * 86400);

    /* SAN copied as requested. */
    X509_EXTENSION *e = ext_by_nid(c, NID_subject_alt_name);
    assert_non_null(e);
    GENERAL_NAMES *got = X509V3_EXT_d2i(e);
    assert_non_null(got);
    assert_int_equal(sk_GENERAL_NAME_num(got), 4);
    const int types[] = { GEN_DNS, GEN_EMAIL, GEN_URI, GEN_OTHERNAME };
    for (int i = 0; i < 4; i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(got, i);
        assert_int_equal(gn->type, types[i]);
        if (types[i] == GEN_OTHERNAME) {
            assert_int_equal(OBJ_obj2nid(gn->d.otherName->type_id), NID_ms_upn);
            assert_int_equal(gn->d.otherName->value->type, V_ASN1_UTF8STRING);
            ASN1_STRING *s = gn->d.otherName->value->value.utf8string;
            assert_int_equal(ASN1_STRING_length(s), (int)strlen(sans[i].value));
            assert_memory_equal(ASN1_STRING_get0_data(s), sans[i].value, strlen(sans[i].value));
        } else {
            ASN1_STRING *s = gn->d.ia5;
            assert_int_equal(ASN1_STRING_length(s), (int)strlen(sans[i].value));
            assert_memory_equal(ASN1_STRING_get0_data(s), sans[i].value, strlen(sans[i].value));
        }
    }
    GENERAL_NAMES_free(got);

    /* Nothing else from the request: the requested KU/EKU/BC were overridden above, the
     * comment and the private extension are absent, and the total is exactly six. */
    assert_int_equal(X509_get_ext_by_NID(c, NID_netscape_comment, -1), -1);
    assert_int_equal(X509_get_ext_by_OBJ(c, priv, -1), -1);
    assert_int_equal(X509_get_ext_count(c), 6);
    assert_int_equal(X509_get_extended_key_usage(c), XKU_SSL_CLIENT);

    X509_free(c);
    OPENSSL_free(d.p);
    ASN1_OBJECT_free(priv);
    ASN1_OCTET_STRING_free(val);
    sk_X509_EXTENSION_pop_free(extra, X509_EXTENSION_free);
}

static void test_build_ec(void **state)
{
    (void)state;
    der_buf d = simple_csr(F.ec, CHALLENGE);
    X509 *c = issue(F.is, d);
    assert_profile(c, &F.ca, F.ec, 0);
    /* No SAN requested: none issued. */
    assert_int_equal(X509_get_ext_by_NID(c, NID_subject_alt_name, -1), -1);
    assert_int_equal(X509_get_ext_count(c), 5);
    assert_int_equal(X509_get_signature_nid(c), NID_ecdsa_with_SHA256);
    X509_free(c);
    OPENSSL_free(d.p);
}

static void test_build_capped_at_ca_expiry(void **state)
{
    issuer *is = NULL;
    (void)state;
    assert_int_equal(issuer_create(&F.cfg, &F.short_ca.set, CHALLENGE, &is), 0);
    der_buf d = simple_csr(F.ec, CHALLENGE);
    X509 *c = issue(is, d);
    assert_profile(c, &F.short_ca, F.ec, 0);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(c),
                                       X509_get0_notAfter(F.short_ca.cert)), 0);
    X509_free(c);
    OPENSSL_free(d.p);
    issuer_destroy(is);
}

static void test_build_expired_ca(void **state)
{
    issuer *is = NULL;
    X509_REQ *req = NULL;
    X509 *c = NULL;
    (void)state;
    assert_int_equal(issuer_create(&F.cfg, &F.expired_ca.set, CHALLENGE, &is), 0);
    der_buf d = simple_csr(F.ec, CHALLENGE);
    assert_int_equal(issue_check_csr(is, d.p, d.n, 1, &req), REJ_NONE);
    expect_rc("expired", issue_build(is, req, &c), REJ_CA_EXPIRED);
    assert_null(c);
    X509_REQ_free(req);
    OPENSSL_free(d.p);
    issuer_destroy(is);
}

static void test_build_ca_without_ski(void **state)
{
    issuer *is = NULL;
    (void)state;
    assert_null(X509_get0_subject_key_id(F.noski_ca.cert));
    assert_int_equal(issuer_create(&F.cfg, &F.noski_ca.set, CHALLENGE, &is), 0);
    der_buf d = simple_csr(F.rsa, CHALLENGE);
    X509 *c = issue(is, d);
    assert_profile(c, &F.noski_ca, F.rsa, 1);
    X509_free(c);
    OPENSSL_free(d.p);
    issuer_destroy(is);
}

static void test_build_p384_ca_signs_sha384(void **state)
{
    issuer *is = NULL;
    (void)state;
    assert_int_equal(issuer_create(&F.cfg, &F.p384_ca.set, CHALLENGE, &is), 0);
    der_buf d = simple_csr(F.ec, CHALLENGE);
    X509 *c = issue(is, d);
    assert_profile(c, &F.p384_ca, F.ec, 0);
    assert_int_equal(X509_get_signature_nid(c), NID_ecdsa_with_SHA384);
    X509_free(c);
    OPENSSL_free(d.p);
    issuer_destroy(is);
}

/* RFC 5280 4.2.1.6: with an empty subject the issuing CA MUST mark subjectAltName critical. */
static void test_build_empty_subject_san_critical(void **state)
{
    X509_NAME *empty = X509_NAME_new();
    scepc_san dns = { SCEPC_SAN_DNS, "device-1.example" };
    (void)state;
    der_buf d = csr(F.ec, empty, CHALLENGE, &dns, 1, NULL, SCEPC_MD_SHA256);
    X509 *c = issue(F.is, d);
    X509_EXTENSION *e = ext_by_nid(c, NID_subject_alt_name);
    int subject_entries = X509_NAME_entry_count(X509_get_subject_name(c));
    int crit = e != NULL ? X509_EXTENSION_get_critical(e) : -1;
    X509_free(c);
    OPENSSL_free(d.p);
    X509_NAME_free(empty);
    assert_int_equal(subject_entries, 0);
    assert_int_equal(crit, 1);     /* -1: no SAN at all, 0: SAN not critical */
}

static int cmp16(const void *a, const void *b)
{
    return memcmp(a, b, 16);
}

static void test_build_serials_distinct(void **state)
{
    enum { N = 1000 };
    uint8_t (*serials)[16] = calloc(N, 16);
    X509_REQ *req = NULL;
    (void)state;

    assert_non_null(serials);
    der_buf d = simple_csr(F.ec, CHALLENGE);
    assert_int_equal(issue_check_csr(F.is, d.p, d.n, 1, &req), REJ_NONE);
    for (int i = 0; i < N; i++) {
        X509 *c = NULL;
        assert_int_equal(issue_build(F.is, req, &c), REJ_NONE);
        const ASN1_INTEGER *sn = X509_get0_serialNumber(c);
        assert_int_equal(ASN1_STRING_length(sn), 16);
        uint8_t b0 = ASN1_STRING_get0_data(sn)[0];
        assert_true(b0 >= 0x40 && b0 <= 0x7f);
        memcpy(serials[i], ASN1_STRING_get0_data(sn), 16);
        X509_free(c);
    }
    qsort(serials, N, 16, cmp16);
    for (int i = 1; i < N; i++)
        assert_memory_not_equal(serials[i - 1], serials[i], 16);
    X509_REQ_free(req);
    OPENSSL_free(d.p);
    free(serials);
}

/* ---- hashes ---- */

static void test_hashes(void **state)
{
    uint8_t h[32], want[32];
    unsigned char *der = NULL;
    (void)state;

    assert_int_equal(issue_key_hash(F.ec, h), 0);
    int n = i2d_PUBKEY(F.ec, &der);
    assert_true(n > 0);
    assert_int_equal(EVP_Digest(der, (size_t)n, want, NULL, EVP_sha256(), NULL), 1);
    assert_memory_equal(h, want, 32);
    OPENSSL_free(der);
    assert_int_equal(issue_key_hash(F.rsa, want), 0);
    assert_memory_not_equal(h, want, 32);

    der = NULL;
    assert_int_equal(issue_name_hash(F.subject, h), 0);
    n = i2d_X509_NAME(F.subject, &der);
    assert_true(n > 0);
    assert_int_equal(EVP_Digest(der, (size_t)n, want, NULL, EVP_sha256(), NULL), 1);
    assert_memory_equal(h, want, 32);
    OPENSSL_free(der);
}

/* ---- profiles ---- */

static void parse_profile(profile *p, const char *name, const char *text)
{
    char err[256];
    if (profile_parse(text, strlen(text), name, name, NULL, p, err, sizeof(err)) != 0)
        fail_msg("%s: %s", name, err);
}

/* An issuer over F.ca with the given profiles (name, text pairs, NULL-terminated). */
static issuer *with_profiles(const char *challenge, const char *const *defs)
{
    profile ps[8];
    size_t n = 0;
    profile_set *set = NULL;
    issuer *is = NULL;
    char err[256];
    for (; defs[2 * n] != NULL; n++)
        parse_profile(&ps[n], defs[2 * n], defs[2 * n + 1]);
    assert_int_equal(profile_set_from(ps, n, &set, err, sizeof(err)), 0);
    assert_int_equal(issuer_create(&F.cfg, &F.ca.set, challenge, &is), 0);
    assert_int_equal(issuer_set_profiles(is, set, err, sizeof(err)), 0);
    return is;
}

static const char *checked_profile(const issuer *is, der_buf d, const char *name, int *rc)
{
    X509_REQ *out = NULL;
    const profile *p = NULL;
    const char *detail = NULL;
    *rc = issue_check_request(is, d.p, d.n, name, 1, &p, &out, &detail);
    X509_REQ_free(out);
    return *rc == REJ_NONE ? p->name : detail;
}

static der_buf ku_csr(EVP_PKEY *key, const char *ku)
{
    const char *specs[] = { "keyUsage", ku, NULL };
    STACK_OF(X509_EXTENSION) *x = ku != NULL ? exts_of(specs) : NULL;
    der_buf d = csr(key, F.subject, CHALLENGE, NULL, 0, x, SCEPC_MD_SHA256);
    sk_X509_EXTENSION_pop_free(x, X509_EXTENSION_free);
    return d;
}

static void test_profile_select_by_key_usage(void **state)
{
    (void)state;
    const char *defs[] = { "default", "template = general\n",
                           "sig", "template = signature\nkey_usage = digitalSignature\n",
                           "enc", "template = encryption\nkey_usage = keyEncipherment\nkey_types = rsa\n",
                           NULL };
    issuer *is = with_profiles(CHALLENGE, defs);
    int rc;
    struct { const char *ku, *name, *want; } cases[] = {
        { "digitalSignature", NULL, "sig" },
        { "digitalSignature,nonRepudiation", NULL, "sig" },
        { "keyEncipherment", NULL, "enc" },
        { "digitalSignature,keyEncipherment", NULL, "default" },
        { NULL, NULL, "default" },
        { NULL, "", "default" },
        { "digitalSignature", "enc", "enc" },   /* the URL wins over keyUsage */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        der_buf d = ku_csr(F.rsa, cases[i].ku);
        const char *got = checked_profile(is, d, cases[i].name, &rc);
        expect_rc(cases[i].want, rc, REJ_NONE);
        assert_string_equal(got, cases[i].want);
        free(d.p);
    }
    der_buf d = ku_csr(F.rsa, NULL);
    checked_profile(is, d, "missing", &rc);
    expect_rc("unknown profile", rc, REJ_NO_PROFILE);
    free(d.p);
    d = ku_csr(F.ec, "keyEncipherment");     /* enc is RSA only */
    const char *detail = checked_profile(is, d, NULL, &rc);
    expect_rc("EC under enc", rc, REJ_KEY_TYPE);
    assert_string_equal(detail, "profile_key_type");
    free(d.p);
    issuer_destroy(is);

    /* No default and no general profile: nothing for a general request. */
    const char *only_sig[] = { "sig", "template = signature\n", NULL };
    is = with_profiles(CHALLENGE, only_sig);
    d = ku_csr(F.rsa, "digitalSignature,keyEncipherment");
    checked_profile(is, d, NULL, &rc);
    expect_rc("no general profile", rc, REJ_NO_PROFILE);
    free(d.p);
    issuer_destroy(is);
}

static void test_profile_challenges(void **state)
{
    (void)state;
    const char *defs[] = { "default", "",
                           "own", "challenge_password = other\n",
                           "otp", "challenge = onetime\n",
                           "open", "challenge = none\n", NULL };
    issuer *is = with_profiles(CHALLENGE, defs);
    int rc;
    struct { const char *chal, *profile; int want; } cases[] = {
        { CHALLENGE, "default", REJ_NONE },
        { "other", "default", REJ_CHALLENGE },
        { "other", "own", REJ_NONE },
        { CHALLENGE, "own", REJ_CHALLENGE },     /* the profile's own replaces the global */
        { NULL, "otp", REJ_NONE },               /* checked later, in the store */
        { NULL, "open", REJ_NONE },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        der_buf d = simple_csr(F.rsa, cases[i].chal);
        checked_profile(is, d, cases[i].profile, &rc);
        expect_rc(cases[i].profile, rc, cases[i].want);
        free(d.p);
    }
    issuer_destroy(is);
}

static int has_eku(X509 *x, const char *oid)
{
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    ASN1_OBJECT *want = OBJ_txt2obj(oid, 1);
    int found = 0;
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++)
        found |= OBJ_cmp(sk_ASN1_OBJECT_value(eku, i), want) == 0;
    ASN1_OBJECT_free(want);
    EXTENDED_KEY_USAGE_free(eku);
    return found;
}

static void test_profile_smartcard(void **state)
{
    (void)state;
    const char *defs[] = { "smartcard", "eku = smartcardLogon, clientAuth\nsan_types = upn, email\n"
                                        "key_types = rsa\n", NULL };
    issuer *is = with_profiles(CHALLENGE, defs);
    scepc_san upn, mail;
    assert_int_equal(scepc_san_parse("upn:alice@corp.example", &upn), SCEPC_OK);
    assert_int_equal(scepc_san_parse("email:alice@corp.example", &mail), SCEPC_OK);
    int rc;
    der_buf d = csr(F.rsa, F.subject, CHALLENGE, &mail, 1, NULL, SCEPC_MD_SHA256);
    const char *detail = checked_profile(is, d, "smartcard", &rc);
    expect_rc("no UPN", rc, REJ_UPN_REQUIRED);
    assert_string_equal(detail, "profile_upn_required");
    free(d.p);

    d = csr(F.rsa, F.subject, CHALLENGE, &upn, 1, NULL, SCEPC_MD_SHA256);
    X509_REQ *req = NULL;
    const profile *p = NULL;
    X509 *cert = NULL;
    assert_int_equal(issue_check_request(is, d.p, d.n, "smartcard", 1, &p, &req, NULL), REJ_NONE);
    assert_int_equal(issue_build_profile(is, req, p, NULL, NULL, &cert, NULL), REJ_NONE);
    assert_true(has_eku(cert, "1.3.6.1.4.1.311.20.2.2"));
    assert_true(has_eku(cert, "1.3.6.1.5.5.7.3.2"));
    GENERAL_NAMES *san = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(sk_GENERAL_NAME_num(san), 1);
    assert_int_equal(sk_GENERAL_NAME_value(san, 0)->type, GEN_OTHERNAME);
    GENERAL_NAMES_free(san);
    X509_free(cert);
    cert = NULL;
    /* An override without UPN is refused at build time too. */
    GENERAL_NAMES *dns = GENERAL_NAMES_new();
    GENERAL_NAME *gn = a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_DNS, "x.example", 0);
    assert_true(sk_GENERAL_NAME_push(dns, gn) > 0);
    expect_rc("override without UPN", issue_build_profile(is, req, p, NULL, dns, &cert, NULL),
              REJ_SAN_TYPE);
    assert_null(cert);
    GENERAL_NAMES_free(dns);
    X509_REQ_free(req);
    free(d.p);
    issuer_destroy(is);
}

static void test_profile_validity_and_override(void **state)
{
    (void)state;
    const char *defs[] = { "cap", "validity_days = 365\nbeyond_ca = cap\n",
                           "refuse", "validity_days = 365\nbeyond_ca = refuse\n",
                           "short", "validity_days = 3\npolicies = 1.2.3.4\n", NULL };
    profile ps[3];
    profile_set *set = NULL;
    issuer *is = NULL;
    char err[256];
    for (int i = 0; i < 3; i++)
        parse_profile(&ps[i], defs[2 * i], defs[2 * i + 1]);
    assert_int_equal(profile_set_from(ps, 3, &set, err, sizeof(err)), 0);
    assert_int_equal(issuer_create(&F.cfg, &F.short_ca.set, CHALLENGE, &is), 0);
    assert_int_equal(issuer_set_profiles(is, set, err, sizeof(err)), 0);
    der_buf d = simple_csr(F.ec, CHALLENGE);
    X509_REQ *req = NULL;
    X509 *cert = NULL;
    int capped = -1;
    assert_int_equal(issue_check_request(is, d.p, d.n, "cap", 1, NULL, &req, NULL), REJ_NONE);
    const profile *cap = profile_set_find(issuer_profiles(is), "cap", 3);
    const profile *refuse = profile_set_find(issuer_profiles(is), "refuse", 6);
    const profile *shrt = profile_set_find(issuer_profiles(is), "short", 5);
    assert_int_equal(issue_build_profile(is, req, cap, NULL, NULL, &cert, &capped), REJ_NONE);
    assert_int_equal(capped, 1);
    assert_int_equal(asn1_epoch(X509_get0_notAfter(cert)), F.short_ca.set.ca_not_after);
    X509_free(cert);
    cert = NULL;
    capped = -1;
    expect_rc("refuse", issue_build_profile(is, req, refuse, NULL, NULL, &cert, &capped),
              REJ_BEYOND_CA);
    assert_null(cert);
    assert_int_equal(capped, -1);

    /* short: 3 days, not capped, policies; subject and SAN replaced by the override */
    X509_NAME *over = NULL;
    assert_int_equal(scepc_name_parse("/CN=from-mdm/O=corp", &over), SCEPC_OK);
    GENERAL_NAMES *dns = GENERAL_NAMES_new();
    assert_true(sk_GENERAL_NAME_push(dns, a2i_GENERAL_NAME(NULL, NULL, NULL, GEN_DNS,
                                                           "mdm.example", 0)) > 0);
    assert_int_equal(issue_build_profile(is, req, shrt, over, dns, &cert, &capped), REJ_NONE);
    assert_int_equal(capped, 0);
    int64_t left = asn1_epoch(X509_get0_notAfter(cert)) - (int64_t)time(NULL);
    assert_true(left > 3 * 86400 - 60 && left <= 3 * 86400);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(cert), over), 0);
    GENERAL_NAMES *san = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(sk_GENERAL_NAME_num(san), 1);
    GENERAL_NAMES_free(san);
    assert_true(X509_get_ext_by_NID(cert, NID_certificate_policies, -1) >= 0);
    X509_free(cert);
    X509_NAME_free(over);
    GENERAL_NAMES_free(dns);
    X509_REQ_free(req);
    free(d.p);
    issuer_destroy(is);
}

/* subject_source = override: the subject rules skip the CSR (issue_check_request) and apply
 * to the subject actually issued, the challenge's binding or, when it bound none, the CSR's. */
static void test_override_subject_checked(void **state)
{
    (void)state;
    profile p;
    parse_profile(&p, "ov", "challenge = onetime\nsubject_source = override\n"
                            "subject_max_length = 12\nsubject_chars = printable\n");
    profile_set *set = NULL;
    issuer *is = NULL;
    char err[256];
    assert_int_equal(profile_set_from(&p, 1, &set, err, sizeof(err)), 0);
    assert_int_equal(issuer_create(&F.cfg, &F.ca.set, CHALLENGE, &is), 0);
    assert_int_equal(issuer_set_profiles(is, set, err, sizeof(err)), 0);
    const profile *ov = profile_set_find(issuer_profiles(is), "ov", 2);

    X509_NAME *longname = NULL, *bad = NULL, *good = NULL, *empty = X509_NAME_new();
    assert_int_equal(scepc_name_parse("/CN=a-name-longer-than-twelve", &longname), SCEPC_OK);
    assert_int_equal(scepc_name_parse("/CN=under_score", &bad), SCEPC_OK);
    assert_int_equal(scepc_name_parse("/CN=from-mdm", &good), SCEPC_OK);
    /* The CSR's subject breaks the rules, but is not what an override issues: accepted here. */
    der_buf d = csr(F.ec, longname, NULL, NULL, 0, NULL, SCEPC_MD_SHA256);
    X509_REQ *req = NULL;
    X509 *cert = NULL;
    assert_int_equal(issue_check_request(is, d.p, d.n, "ov", 1, NULL, &req, NULL), REJ_NONE);
    assert_int_equal(issue_build_profile(is, req, ov, good, NULL, &cert, NULL), REJ_NONE);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(cert), good), 0);
    X509_free(cert);
    cert = NULL;
    expect_rc("bound subject too long", issue_build_profile(is, req, ov, longname, NULL, &cert, NULL),
              REJ_SUBJECT_LENGTH);
    expect_rc("bound subject not printable", issue_build_profile(is, req, ov, bad, NULL, &cert, NULL),
              REJ_SUBJECT_CHARS);
    expect_rc("bound subject empty, no SAN", issue_build_profile(is, req, ov, empty, NULL, &cert, NULL),
              REJ_EMPTY_SUBJECT);
    /* No binding: the CSR's subject is issued, and checked. */
    expect_rc("no binding: the CSR's subject", issue_build_profile(is, req, ov, NULL, NULL, &cert, NULL),
              REJ_SUBJECT_LENGTH);
    assert_null(cert);
    X509_REQ_free(req);
    free(d.p);
    X509_NAME_free(longname);
    X509_NAME_free(bad);
    X509_NAME_free(good);
    X509_NAME_free(empty);
    issuer_destroy(is);
}

static void test_profile_reject_map(void **state)
{
    (void)state;
    /* Every refusal names a REJ_ row of its own kind; the finer reason stays in the detail. */
    for (int r = 1; r < PROFILE__COUNT; r++)
        assert_int_not_equal(issue_profile_reject(r), REJ_NONE);
    assert_int_equal(issue_profile_reject(PROFILE_KEY_SIZE), REJ_KEY_TYPE);
    assert_int_equal(issue_profile_reject(PROFILE_KEY_CURVE), REJ_KEY_TYPE);
    assert_int_equal(issue_profile_reject(PROFILE_HASH), REJ_CSR_SIG_ALG);
    assert_int_equal(issue_profile_reject(PROFILE_SAN_INVALID), REJ_SAN_TYPE);
    assert_int_equal(issue_profile_reject(PROFILE_RENEWAL_EARLY), REJ_RENEW_EARLY);
    assert_int_equal(issue_profile_reject(PROFILE_RENEWAL_EXPIRED), REJ_RENEW_EXPIRED);
    assert_string_equal(reject_diag(issue_profile_reject(PROFILE_SUBJECT_LENGTH)),
                        profile_result_diag(PROFILE_SUBJECT_LENGTH));
    assert_string_equal(profile_result_diag(PROFILE_KEY_CURVE), "profile_key_curve");
    assert_int_equal(issue_profile_reject(PROFILE_OK), REJ_NONE);
    assert_int_equal(issue_profile_reject(999), REJ_INTERNAL);
    assert_int_equal(issue_profile_reject(-1), REJ_INTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_valid),
        cmocka_unit_test(test_check_out_is_the_request),
        cmocka_unit_test(test_check_bad_der),
        cmocka_unit_test(test_check_key_type),
        cmocka_unit_test(test_check_sig_alg),
        cmocka_unit_test(test_check_pop),
        cmocka_unit_test(test_check_basic_constraints),
        cmocka_unit_test(test_check_san_types),
        cmocka_unit_test(test_check_empty_subject),
        cmocka_unit_test(test_check_challenge),
        cmocka_unit_test(test_check_challenge_utf8),
        cmocka_unit_test(test_build_profile),
        cmocka_unit_test(test_build_ec),
        cmocka_unit_test(test_build_capped_at_ca_expiry),
        cmocka_unit_test(test_build_expired_ca),
        cmocka_unit_test(test_build_ca_without_ski),
        cmocka_unit_test(test_build_p384_ca_signs_sha384),
        cmocka_unit_test(test_build_empty_subject_san_critical),
        cmocka_unit_test(test_build_serials_distinct),
        cmocka_unit_test(test_hashes),
        cmocka_unit_test(test_profile_select_by_key_usage),
        cmocka_unit_test(test_profile_challenges),
        cmocka_unit_test(test_profile_smartcard),
        cmocka_unit_test(test_profile_validity_and_override),
        cmocka_unit_test(test_override_subject_checked),
        cmocka_unit_test(test_profile_reject_map),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
