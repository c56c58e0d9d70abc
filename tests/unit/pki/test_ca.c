/* Unit tests for engine/pki/ca.c: chain files, GetCACert bodies (DER, RA+CA, RA+CA+chain), the
 * staged next CA (GetNextCACert SignedData, GetCACaps), key label files, and the refusals.
 * Software keys (file mode) made here with OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>

#include "engine/pki/ca.h"

static struct {
    char dir[64];
    EVP_PKEY *root_key, *ica_key, *ra_key, *next_key, *other_key;
    X509 *root, *ica, *ra, *next, *other;
    config cfg;
} F;

static X509 *mk(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, int ca)
{
    X509 *x = X509_new();
    X509V3_CTX ctx;
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer != NULL ? issuer : x));
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400 * 30);
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&ctx, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
                                            ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    X509_sign(x, issuer_key, EVP_sha256());
    return x;
}

static void path(char *out, const char *name)
{
    snprintf(out, CONFIG_PATH_MAX, "%s/%s", F.dir, name);
}

static void write_pem(const char *name, X509 *a, X509 *b)
{
    char p[CONFIG_PATH_MAX];
    path(p, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    PEM_write_X509(f, a);
    if (b != NULL)
        PEM_write_X509(f, b);
    fclose(f);
}

static void write_key(const char *name, EVP_PKEY *k)
{
    char p[CONFIG_PATH_MAX];
    path(p, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

static void rm(const char *name)
{
    char p[CONFIG_PATH_MAX];
    path(p, name);
    unlink(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(F.dir, sizeof(F.dir), "/tmp/test_ca.XXXXXX");
    if (mkdtemp(F.dir) == NULL)
        return -1;
    F.root_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    F.ica_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    F.ra_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    F.next_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    F.other_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    F.root = mk("Root", F.root_key, NULL, F.root_key, 1);
    F.ica = mk("Issuing", F.ica_key, F.root, F.root_key, 1);
    F.ra = mk("RA", F.ra_key, F.ica, F.ica_key, 0);
    F.next = mk("Next", F.next_key, NULL, F.next_key, 1);
    F.other = mk("Other", F.other_key, NULL, F.other_key, 1);
    write_pem("ca.pem", F.ica, NULL);
    write_pem("ra.pem", F.ra, NULL);
    write_key("ca.key", F.ica_key);
    write_key("ra.key", F.ra_key);
    config_defaults(&F.cfg);
    F.cfg.key_mode = CONFIG_KEYS_FILE;
    path(F.cfg.ca_cert, "ca.pem");
    path(F.cfg.ra_cert, "ra.pem");
    path(F.cfg.ca_key_file, "ca.key");
    path(F.cfg.ra_key_file, "ra.key");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    const char *files[] = { "ca.pem", "ra.pem", "ca.key", "ra.key", "ca-chain.pem", "next-ca.pem",
                            "alt-chain.pem", "alt-next.pem", "ca.pem.label", "empty.pem" };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        rm(files[i]);
    rmdir(F.dir);
    EVP_PKEY_free(F.root_key);
    EVP_PKEY_free(F.ica_key);
    EVP_PKEY_free(F.ra_key);
    EVP_PKEY_free(F.next_key);
    EVP_PKEY_free(F.other_key);
    X509_free(F.root);
    X509_free(F.ica);
    X509_free(F.ra);
    X509_free(F.next);
    X509_free(F.other);
    return 0;
}

static STACK_OF(X509) *p7_certs(const uint8_t *der, size_t len, PKCS7 **keep)
{
    const unsigned char *p = der;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)len);
    assert_non_null(p7);
    assert_true(PKCS7_type_is_signed(p7));
    *keep = p7;
    return p7->d.sign->cert;
}

static void test_ra_ca_no_chain(void **state)
{
    (void)state;
    ca_set *ca = NULL;
    char err[256];
    assert_int_equal(ca_load(&F.cfg, NULL, &ca, err, sizeof(err)), 0);
    assert_string_equal(ca->cacert_type, "application/x-x509-ca-ra-cert");
    PKCS7 *p7;
    STACK_OF(X509) *certs = p7_certs(ca->cacert_body, ca->cacert_len, &p7);
    assert_int_equal(sk_X509_num(certs), 2);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 0), F.ra), 0);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 1), F.ica), 0);
    PKCS7_free(p7);
    assert_int_equal(sk_X509_num(ca->chain), 0);
    assert_int_equal(ca->has_next, 0);
    assert_null(strstr(ca->caps, "GetNextCACert"));
    assert_int_equal(ca->caps_len, strlen(ca->caps));
    ca_free(ca);
}

static void test_chain(void **state)
{
    (void)state;
    ca_set *ca = NULL;
    char err[256];
    write_pem("ca-chain.pem", F.root, NULL);
    assert_int_equal(ca_load(&F.cfg, NULL, &ca, err, sizeof(err)), 0);
    PKCS7 *p7;
    STACK_OF(X509) *certs = p7_certs(ca->cacert_body, ca->cacert_len, &p7);
    assert_int_equal(sk_X509_num(certs), 3);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 2), F.root), 0);
    PKCS7_free(p7);
    assert_int_equal(sk_X509_num(ca->chain), 1);
    ca_free(ca);

    /* CA alone plus a chain: still the certs-only PKCS#7 */
    config c = F.cfg;
    c.ra_cert[0] = '\0';
    ca = NULL;
    write_pem("ca.pem", F.ica, NULL);
    c.ra_key_file[0] = '\0';
    /* the CA key is EC: not usable as RA, so that load must fail with a reason */
    assert_int_equal(ca_load(&c, NULL, &ca, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "must be RSA"));
    assert_null(ca);

    /* a chain that did not issue the CA */
    write_pem("ca-chain.pem", F.other, NULL);
    assert_int_equal(ca_load(&F.cfg, NULL, &ca, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "did not issue"));
    /* a chain certificate that is not a CA */
    write_pem("ca-chain.pem", F.ra, NULL);
    assert_int_equal(ca_load(&F.cfg, NULL, &ca, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a CA"));
    /* unreadable chain */
    char p[CONFIG_PATH_MAX];
    path(p, "ca-chain.pem");
    FILE *f = fopen(p, "w");
    fputs("garbage\n", f);
    fclose(f);
    assert_int_equal(ca_load(&F.cfg, NULL, &ca, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot read the CA chain"));
    rm("ca-chain.pem");

    /* explicit path through ca_paths */
    write_pem("alt-chain.pem", F.root, NULL);
    char alt[CONFIG_PATH_MAX];
    path(alt, "alt-chain.pem");
    ca_paths extra = { alt, NULL };
    assert_int_equal(ca_load_ex(&F.cfg, NULL, &extra, &ca, err, sizeof(err)), 0);
    assert_int_equal(sk_X509_num(ca->chain), 1);
    ca_free(ca);
}

static void test_next(void **state)
{
    (void)state;
    ca_set *ca = NULL;
    char err[256];
    write_pem("next-ca.pem", F.next, F.ra);
    assert_int_equal(ca_load(&F.cfg, NULL, &ca, err, sizeof(err)), 0);
    assert_int_equal(ca->has_next, 1);
    assert_non_null(strstr(ca->caps, "GetNextCACert\n"));
    assert_int_equal(ca->caps_len, strlen(ca->caps));
    assert_string_equal(ca->nextca_type, "application/x-x509-next-ca-cert");

    /* SignedData by the current CA over a degenerate PKCS#7 of the next CA (+ RA) */
    const unsigned char *p = ca->nextca_body;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)ca->nextca_len);
    assert_non_null(cms);
    X509_STORE *st = X509_STORE_new();
    X509_STORE_add_cert(st, F.root);
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    sk_X509_push(untrusted, F.ica);
    BIO *out = BIO_new(BIO_s_mem());
    assert_int_equal(CMS_verify(cms, untrusted, st, NULL, out, CMS_BINARY), 1);
    STACK_OF(X509) *signers = CMS_get0_signers(cms);
    assert_int_equal(X509_cmp(sk_X509_value(signers, 0), F.ica), 0);
    sk_X509_free(signers);
    BUF_MEM *bm;
    BIO_get_mem_ptr(out, &bm);
    PKCS7 *p7;
    STACK_OF(X509) *certs = p7_certs((const uint8_t *)bm->data, bm->length, &p7);
    assert_int_equal(sk_X509_num(certs), 2);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 0), F.next), 0);
    PKCS7_free(p7);
    BIO_free(out);
    sk_X509_free(untrusted);
    X509_STORE_free(st);
    CMS_ContentInfo_free(cms);
    ca_free(ca);

    /* a next file whose first certificate is not a CA is refused */
    write_pem("next-ca.pem", F.ra, NULL);
    assert_int_equal(ca_load(&F.cfg, NULL, &ca, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not a CA"));
    rm("next-ca.pem");

    /* explicit path */
    write_pem("alt-next.pem", F.next, NULL);
    char alt[CONFIG_PATH_MAX];
    path(alt, "alt-next.pem");
    ca_paths extra = { NULL, alt };
    assert_int_equal(ca_load_ex(&F.cfg, NULL, &extra, &ca, err, sizeof(err)), 0);
    assert_int_equal(ca->has_next, 1);
    ca_free(ca);
}

static void test_helpers(void **state)
{
    (void)state;
    char p[CONFIG_PATH_MAX], label[64];
    STACK_OF(X509) *sk = NULL;
    config c;
    config_defaults(&c);
    snprintf(c.ca_cert, sizeof(c.ca_cert), "ca.pem");
    ca_default_path(&c, "next-ca.pem", p, sizeof(p));
    assert_string_equal(p, "next-ca.pem");
    ca_default_path(&F.cfg, "next-ca.pem", p, sizeof(p));
    assert_non_null(strstr(p, F.dir));

    ca_key_label(F.cfg.ca_cert, "ca", label, sizeof(label));
    assert_string_equal(label, "ca");
    path(p, "ca.pem.label");
    FILE *f = fopen(p, "w");
    fputs("ca-next2\n", f);
    fclose(f);
    ca_key_label(F.cfg.ca_cert, "ca", label, sizeof(label));
    assert_string_equal(label, "ca-next2");
    rm("ca.pem.label");

    write_pem("alt-chain.pem", F.ica, F.root);
    path(p, "alt-chain.pem");
    assert_int_equal(ca_read_certs(p, &sk), 0);
    assert_int_equal(sk_X509_num(sk), 2);
    assert_int_equal(ca_check_chain(F.ra, sk, p, sizeof(p)), 0);
    sk_X509_pop_free(sk, X509_free);
    sk = NULL;
    path(p, "empty.pem");
    fclose(fopen(p, "w"));
    assert_int_equal(ca_read_certs(p, &sk), -1);
    assert_null(sk);
    assert_int_equal(ca_read_certs("/nonexistent", &sk), -1);
    /* chain in the wrong order */
    STACK_OF(X509) *wrong = sk_X509_new_null();
    sk_X509_push(wrong, F.root);
    sk_X509_push(wrong, F.ica);
    char err[256];
    assert_int_equal(ca_check_chain(F.ra, wrong, err, sizeof(err)), -1);
    sk_X509_free(wrong);

    /* the GetCACert DER when CA alone with no chain: RSA CA acting as RA */
    EVP_PKEY *rk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    X509 *rca = mk("RSA CA", rk, NULL, rk, 1);
    write_pem("ca.pem", rca, NULL);
    write_key("ca.key", rk);
    config solo = F.cfg;
    solo.ra_cert[0] = '\0';
    ca_set *ca = NULL;
    assert_int_equal(ca_load(&solo, NULL, &ca, err, sizeof(err)), 0);
    assert_string_equal(ca->cacert_type, "application/x-x509-ca-cert");
    unsigned char *der = NULL;
    int n = i2d_X509(rca, &der);
    assert_int_equal(ca->cacert_len, (size_t)n);
    assert_memory_equal(ca->cacert_body, der, (size_t)n);
    OPENSSL_free(der);
    ca_free(ca);
    ca_free(NULL);
    /* restore */
    write_pem("ca.pem", F.ica, NULL);
    write_key("ca.key", F.ica_key);
    X509_free(rca);
    EVP_PKEY_free(rk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ra_ca_no_chain),
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_next),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
