/* tests/unit/test_hsm.c: hsm/ against a real SoftHSM2 token made in a temporary directory.
 * Without SoftHSM2 (the module or softhsm2-util missing) it fails when the environment says
 * SoftHSM should be there (SOFTHSM_MODULE set, as ctest does, or CI=true), and exits 77
 * (skipped) only when run by hand on a machine that has neither. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/cms.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "hsm/hsm.h"

#define PIN "1234"
#define NKEYS 4

static const char *module;
static char tmpdir[] = "/tmp/scepd-test-hsm-XXXXXX";
static hsm_token *tok;

static const struct {
    const char *label, *spec, *group;
    int bits, rsa;
} specs[NKEYS] = {
    { "rsa2048", "rsa:2048", NULL, 2048, 1 },
    { "rsa3072", "rsa:3072", NULL, 3072, 1 },
    { "ecp256", "ec:P-256", "prime256v1", 256, 0 },
    { "ecp384", "ec:P-384", "secp384r1", 384, 0 },
};
static EVP_PKEY *keys[NKEYS];
static X509 *certs[NKEYS];      /* self-signed by the HSM key, re-parsed: default provider key */

/* ---------- helpers ---------- */

static X509 *der_roundtrip(X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    const unsigned char *p = der;
    X509 *y = len > 0 ? d2i_X509(NULL, &p, len) : NULL;
    OPENSSL_free(der);
    return y;
}

static X509 *self_signed(EVP_PKEY *key, const char *cn, const EVP_MD *md)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, n);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    assert_int_equal(X509_set_pubkey(x, key), 1);   /* exports the public half */
    assert_true(X509_sign(x, key, md) > 0);
    X509_NAME_free(n);
    X509 *y = der_roundtrip(x);
    X509_free(x);
    assert_non_null(y);
    return y;
}

static CMS_ContentInfo *cms_roundtrip(CMS_ContentInfo *c)
{
    unsigned char *der = NULL;
    int len = i2d_CMS_ContentInfo(c, &der);
    const unsigned char *p = der;
    CMS_ContentInfo *d = len > 0 ? d2i_CMS_ContentInfo(NULL, &p, len) : NULL;
    OPENSSL_free(der);
    CMS_ContentInfo_free(c);
    return d;
}

static int sign_verify_once(EVP_PKEY *key, EVP_PKEY *pub, const unsigned char *msg, size_t len)
{
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    int ok = 0;
    EVP_MD_CTX *s = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
    if (EVP_DigestSignInit_ex(s, NULL, "SHA256", NULL, NULL, key, NULL) == 1
        && EVP_DigestSign(s, sig, &siglen, msg, len) == 1
        && EVP_DigestVerifyInit_ex(v, NULL, "SHA256", NULL, NULL, pub, NULL) == 1
        && EVP_DigestVerify(v, sig, siglen, msg, len) == 1)
        ok = 1;
    EVP_MD_CTX_free(s);
    EVP_MD_CTX_free(v);
    return ok;
}

/* ---------- setup ---------- */

static int rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

static int group_setup(void **state)
{
    char path[512], cmd[1024];
    FILE *f;
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/tokens", tmpdir);
    if (mkdir(path, 0700) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/softhsm2.conf", tmpdir);
    if ((f = fopen(path, "w")) == NULL)
        return -1;
    fprintf(f, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
            tmpdir);
    fclose(f);
    setenv("SOFTHSM2_CONF", path, 1);
    snprintf(cmd, sizeof(cmd),
             "softhsm2-util --init-token --free --label T --pin " PIN
             " --so-pin 5678 >/dev/null");
    if (system(cmd) != 0)
        return -1;
    if (hsm_token_open(module, "T", PIN, &tok) != 0) {
        fprintf(stderr, "open: %s\n", hsm_last_error());
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    for (int i = 0; i < NKEYS; i++) {
        EVP_PKEY_free(keys[i]);
        X509_free(certs[i]);
    }
    hsm_token_close(tok);
    rm_rf(tmpdir);
    return 0;
}

/* ---------- tests ---------- */

static void test_open_failures(void **state)
{
    hsm_token *t = (hsm_token *)0x1;
    assert_true(hsm_token_open(module, "no-such-token", PIN, &t) < 0);
    assert_ptr_equal(t, (hsm_token *)0x1);
    assert_non_null(strstr(hsm_last_error(), "not found"));
    assert_true(hsm_token_open("/nonexistent/libp11.so", "T", PIN, &t) < 0);
    assert_true(hsm_token_open(module, "T", NULL, &t) < 0);
    assert_ptr_equal(t, (hsm_token *)0x1);
    hsm_token_close(NULL);
}

static void test_open_wrong_pin(void **state)
{
    /* the shared token is already logged in; a second open must still check the PIN, so run
     * it on its own module instance: close ours first, then reopen */
    hsm_token *t = (hsm_token *)0x1;
    hsm_token_close(tok);
    tok = NULL;
    assert_true(hsm_token_open(module, "T", "0000", &t) < 0);
    assert_ptr_equal(t, (hsm_token *)0x1);
    assert_non_null(strstr(hsm_last_error(), "CKR_PIN_INCORRECT"));
    assert_int_equal(hsm_token_open(module, "T", PIN, &tok), 0);
}

static void test_generate(void **state)
{
    for (int i = 0; i < NKEYS; i++) {
        assert_int_equal(hsm_key_generate(tok, specs[i].label, specs[i].spec, &keys[i]), 0);
        assert_non_null(keys[i]);
        assert_true(EVP_PKEY_is_a(keys[i], specs[i].rsa ? "RSA" : "EC"));
        assert_int_equal(EVP_PKEY_get_bits(keys[i]), specs[i].bits);
        assert_int_equal(EVP_PKEY_get_id(keys[i]), specs[i].rsa ? EVP_PKEY_RSA : EVP_PKEY_EC);
        if (!specs[i].rsa) {
            char g[64];
            assert_int_equal(EVP_PKEY_get_utf8_string_param(keys[i], OSSL_PKEY_PARAM_GROUP_NAME,
                                                            g, sizeof(g), NULL), 1);
            assert_string_equal(g, specs[i].group);
        }
    }
    assert_int_equal(hsm_key_generate(tok, "nokey", "ec:P-256", NULL), 0);
    assert_true(hsm_key_generate(tok, "bad", "rsa:1024", NULL) < 0);
    assert_true(hsm_key_generate(tok, "bad", "dsa:2048", NULL) < 0);
    assert_true(hsm_key_generate(NULL, "bad", "rsa:2048", NULL) < 0);
}

static void test_duplicate_label_refused(void **state)
{
    EVP_PKEY *k = (EVP_PKEY *)0x1;
    assert_true(hsm_key_generate(tok, "rsa2048", "rsa:2048", &k) < 0);
    assert_ptr_equal(k, (EVP_PKEY *)0x1);
    assert_non_null(strstr(hsm_last_error(), "already exists"));
    assert_true(hsm_key_generate(tok, "ecp256", "ec:P-384", NULL) < 0);
}

static void test_load_by_label(void **state)
{
    EVP_PKEY *k = NULL;
    for (int i = 0; i < NKEYS; i++) {
        assert_int_equal(hsm_key_load(tok, specs[i].label, &k), 0);
        assert_int_equal(EVP_PKEY_eq(k, keys[i]), 1);
        assert_int_equal(EVP_PKEY_get_bits(k), specs[i].bits);
        EVP_PKEY_free(k);
        k = NULL;
    }
    k = (EVP_PKEY *)0x1;
    assert_true(hsm_key_load(tok, "missing", &k) < 0);
    assert_ptr_equal(k, (EVP_PKEY *)0x1);
    assert_non_null(strstr(hsm_last_error(), "missing"));
    assert_true(hsm_key_load(NULL, "rsa2048", &k) < 0);
    assert_int_equal(EVP_PKEY_eq(keys[0], keys[1]), 0);
}

static void test_x509_sign_and_eq(void **state)
{
    for (int i = 0; i < NKEYS; i++) {
        X509 *c = self_signed(keys[i], specs[i].label, EVP_sha256());
        EVP_PKEY *pub = X509_get0_pubkey(c);
        int want = specs[i].rsa ? NID_sha256WithRSAEncryption : NID_ecdsa_with_SHA256;
        assert_int_equal(X509_get_signature_nid(c), want);
        assert_int_equal(X509_verify(c, pub), 1);
        assert_int_equal(EVP_PKEY_eq(pub, keys[i]), 1);
        assert_int_equal(EVP_PKEY_eq(keys[i], pub), 1);
        assert_int_equal(X509_check_private_key(c, keys[i]), 1);
        certs[i] = c;
    }
    /* a certificate never matches another key, and its signature does not verify under it */
    assert_true(EVP_PKEY_eq(X509_get0_pubkey(certs[0]), keys[1]) != 1);
    assert_true(EVP_PKEY_eq(X509_get0_pubkey(certs[2]), keys[3]) != 1);
    assert_int_equal(X509_check_private_key(certs[0], keys[1]), 0);
    assert_true(X509_verify(certs[0], X509_get0_pubkey(certs[1])) != 1);
    ERR_clear_error();

    X509 *c = self_signed(keys[0], "sha384", EVP_sha384());
    assert_int_equal(X509_get_signature_nid(c), NID_sha384WithRSAEncryption);
    assert_int_equal(X509_verify(c, X509_get0_pubkey(c)), 1);
    X509_free(c);
    c = self_signed(keys[2], "sha512", EVP_sha512());
    assert_int_equal(X509_get_signature_nid(c), NID_ecdsa_with_SHA512);
    assert_int_equal(X509_verify(c, X509_get0_pubkey(c)), 1);
    X509_free(c);
}

static void cms_sign_verify(int i, const EVP_MD *md)
{
    static const char msg[] = "scep pkiMessage content";
    BIO *in = BIO_new_mem_buf(msg, sizeof(msg) - 1), *out = BIO_new(BIO_s_mem());
    CMS_ContentInfo *cms;
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509_STORE *st = X509_STORE_new();
    char *data;
    long n;

    sk_X509_push(sk, certs[i]);
    if (md == NULL) {
        cms = CMS_sign(certs[i], keys[i], NULL, in, CMS_BINARY);
    } else {
        cms = CMS_sign(NULL, NULL, NULL, NULL, CMS_BINARY | CMS_PARTIAL);
        assert_non_null(cms);
        assert_non_null(CMS_add1_signer(cms, certs[i], keys[i], md, CMS_BINARY));
        assert_int_equal(CMS_final(cms, in, NULL, CMS_BINARY), 1);
    }
    assert_non_null(cms);
    cms = cms_roundtrip(cms);
    assert_non_null(cms);
    CMS_SignerInfo *si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
    X509_ALGOR *dig = NULL, *sig = NULL;
    CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sig);
    assert_int_equal(OBJ_obj2nid(dig->algorithm), md != NULL ? EVP_MD_get_type(md) : NID_sha256);
    assert_int_equal(CMS_verify(cms, sk, st, NULL, out, CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY),
                     1);
    n = BIO_get_mem_data(out, &data);
    assert_int_equal(n, sizeof(msg) - 1);
    assert_memory_equal(data, msg, n);
    CMS_ContentInfo_free(cms);

    /* detached signature over other bytes must not verify */
    BIO_free(in);
    in = BIO_new_mem_buf(msg, sizeof(msg) - 1);
    cms = CMS_sign(certs[i], keys[i], NULL, in, CMS_BINARY | CMS_DETACHED);
    assert_non_null(cms);
    BIO *other = BIO_new_mem_buf("tampered", 8);
    assert_int_not_equal(CMS_verify(cms, sk, st, other, NULL,
                                    CMS_NO_SIGNER_CERT_VERIFY | CMS_BINARY | CMS_DETACHED), 1);
    ERR_clear_error();
    BIO_free(other);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    BIO_free(out);
    sk_X509_free(sk);
    X509_STORE_free(st);
}

static void test_cms_sign(void **state)
{
    for (int i = 0; i < NKEYS; i++) {
        cms_sign_verify(i, NULL);               /* default digest: SHA-256 */
        cms_sign_verify(i, EVP_sha512());
    }
}

static void test_prehashed_sign(void **state)
{
    unsigned char dgst[32], sig[1024];
    size_t siglen;
    RAND_bytes(dgst, sizeof(dgst));
    for (int i = 0; i < NKEYS; i++) {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, keys[i], NULL);
        assert_int_equal(EVP_PKEY_sign_init(c), 1);
        assert_true(EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) > 0);
        assert_int_equal(EVP_PKEY_sign(c, NULL, &siglen, dgst, sizeof(dgst)), 1);
        assert_int_equal((int)siglen, EVP_PKEY_get_size(keys[i]));
        assert_int_equal(EVP_PKEY_sign(c, sig, &siglen, dgst, sizeof(dgst)), 1);
        EVP_PKEY_CTX_free(c);
        c = EVP_PKEY_CTX_new_from_pkey(NULL, X509_get0_pubkey(certs[i]), NULL);
        assert_int_equal(EVP_PKEY_verify_init(c), 1);
        assert_true(EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) > 0);
        assert_int_equal(EVP_PKEY_verify(c, sig, siglen, dgst, sizeof(dgst)), 1);
        dgst[0] ^= 1;
        assert_int_not_equal(EVP_PKEY_verify(c, sig, siglen, dgst, sizeof(dgst)), 1);
        dgst[0] ^= 1;
        EVP_PKEY_CTX_free(c);
    }
}

static void test_pss_refused(void **state)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = NULL;
    assert_int_equal(EVP_DigestSignInit_ex(m, &pc, "SHA256", NULL, NULL, keys[0], NULL), 1);
    assert_true(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) <= 0);
    int pad = 0;
    assert_true(EVP_PKEY_CTX_get_rsa_padding(pc, &pad) > 0);
    assert_int_equal(pad, RSA_PKCS1_PADDING);
    EVP_MD_CTX_free(m);
    ERR_clear_error();
}

/* Encrypts msg in software to the certificate's key, decrypts through the HSM key. */
static void decrypt_case(int i, int pad, const EVP_MD *md, const char *label)
{
    unsigned char msg[32], ct[512], pt[512];
    size_t ctlen = sizeof(ct), ptlen = 0;
    EVP_PKEY_CTX *e = EVP_PKEY_CTX_new_from_pkey(NULL, X509_get0_pubkey(certs[i]), NULL);
    EVP_PKEY_CTX *d = EVP_PKEY_CTX_new_from_pkey(NULL, keys[i], NULL);
    RAND_bytes(msg, sizeof(msg));

    assert_int_equal(EVP_PKEY_encrypt_init(e), 1);
    assert_true(EVP_PKEY_CTX_set_rsa_padding(e, pad) > 0);
    assert_int_equal(EVP_PKEY_decrypt_init(d), 1);
    assert_true(EVP_PKEY_CTX_set_rsa_padding(d, pad) > 0);
    if (md != NULL) {
        assert_true(EVP_PKEY_CTX_set_rsa_oaep_md(e, md) > 0);
        assert_true(EVP_PKEY_CTX_set_rsa_oaep_md(d, md) > 0);
    }
    if (label != NULL) {
        assert_true(EVP_PKEY_CTX_set0_rsa_oaep_label(e, OPENSSL_strdup(label), strlen(label)) > 0);
        assert_true(EVP_PKEY_CTX_set0_rsa_oaep_label(d, OPENSSL_strdup(label), strlen(label)) > 0);
    }
    assert_int_equal(EVP_PKEY_encrypt(e, ct, &ctlen, msg, sizeof(msg)), 1);
    assert_int_equal(EVP_PKEY_decrypt(d, NULL, &ptlen, ct, ctlen), 1);
    assert_int_equal((int)ptlen, EVP_PKEY_get_size(keys[i]));
    assert_int_equal(EVP_PKEY_decrypt(d, pt, &ptlen, ct, ctlen), 1);
    assert_int_equal(ptlen, sizeof(msg));
    assert_memory_equal(pt, msg, sizeof(msg));

    ct[ctlen / 2] ^= 0x40;              /* corrupted ciphertext must fail */
    ptlen = sizeof(pt);
    assert_true(EVP_PKEY_decrypt(d, pt, &ptlen, ct, ctlen) <= 0 || ptlen != sizeof(msg)
                || memcmp(pt, msg, sizeof(msg)) != 0);
    ERR_clear_error();
    EVP_PKEY_CTX_free(e);
    EVP_PKEY_CTX_free(d);
}

static void test_decrypt(void **state)
{
    for (int i = 0; i < 2; i++) {
        decrypt_case(i, RSA_PKCS1_PADDING, NULL, NULL);
        decrypt_case(i, RSA_PKCS1_OAEP_PADDING, NULL, NULL);           /* SHA-1 */
        decrypt_case(i, RSA_PKCS1_OAEP_PADDING, EVP_sha256(), NULL);
        decrypt_case(i, RSA_PKCS1_OAEP_PADDING, EVP_sha256(), "scep");
    }
    /* a wrong OAEP digest on the decrypt side fails */
    unsigned char msg[16] = "0123456789abcdef", ct[512], pt[512];
    size_t ctlen = sizeof(ct), ptlen = sizeof(pt);
    EVP_PKEY_CTX *e = EVP_PKEY_CTX_new_from_pkey(NULL, X509_get0_pubkey(certs[0]), NULL);
    EVP_PKEY_CTX *d = EVP_PKEY_CTX_new_from_pkey(NULL, keys[0], NULL);
    assert_int_equal(EVP_PKEY_encrypt_init(e), 1);
    assert_true(EVP_PKEY_CTX_set_rsa_padding(e, RSA_PKCS1_OAEP_PADDING) > 0);
    assert_true(EVP_PKEY_CTX_set_rsa_oaep_md(e, EVP_sha256()) > 0);
    assert_int_equal(EVP_PKEY_encrypt(e, ct, &ctlen, msg, sizeof(msg)), 1);
    assert_int_equal(EVP_PKEY_decrypt_init(d), 1);
    assert_true(EVP_PKEY_CTX_set_rsa_padding(d, RSA_PKCS1_OAEP_PADDING) > 0);
    assert_true(EVP_PKEY_CTX_set_rsa_oaep_md(d, EVP_sha384()) > 0);
    assert_true(EVP_PKEY_decrypt(d, pt, &ptlen, ct, ctlen) <= 0);
    /* unsupported padding is refused up front */
    assert_true(EVP_PKEY_CTX_set_rsa_padding(d, RSA_NO_PADDING) <= 0);
    EVP_PKEY_CTX_free(e);
    EVP_PKEY_CTX_free(d);
    /* EC keys do not decrypt */
    d = EVP_PKEY_CTX_new_from_pkey(NULL, keys[2], NULL);
    assert_true(EVP_PKEY_decrypt_init(d) <= 0);
    EVP_PKEY_CTX_free(d);
    ERR_clear_error();
}

static void cms_envelope(int i, const EVP_CIPHER *cipher, int oaep, int dec_key)
{
    static const char msg[] = "certificate signing request bytes";
    BIO *in = BIO_new_mem_buf(msg, sizeof(msg) - 1), *out = BIO_new(BIO_s_mem());
    STACK_OF(X509) *sk = sk_X509_new_null();
    CMS_ContentInfo *cms;
    char *data;
    long n;

    if (!oaep) {
        sk_X509_push(sk, certs[i]);
        cms = CMS_encrypt(sk, in, cipher, CMS_BINARY);
    } else {
        cms = CMS_encrypt(NULL, NULL, cipher, CMS_BINARY | CMS_PARTIAL);
        assert_non_null(cms);
        CMS_RecipientInfo *ri = CMS_add1_recipient_cert(cms, certs[i], CMS_KEY_PARAM);
        assert_non_null(ri);
        EVP_PKEY_CTX *pc = CMS_RecipientInfo_get0_pkey_ctx(ri);
        assert_true(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_OAEP_PADDING) > 0);
        assert_true(EVP_PKEY_CTX_set_rsa_oaep_md(pc, EVP_sha256()) > 0);
        assert_int_equal(CMS_final(cms, in, NULL, CMS_BINARY), 1);
    }
    assert_non_null(cms);
    cms = cms_roundtrip(cms);
    assert_non_null(cms);
    if (dec_key == i) {
        assert_int_equal(CMS_decrypt(cms, keys[dec_key], certs[i], NULL, out, CMS_BINARY), 1);
        n = BIO_get_mem_data(out, &data);
        assert_int_equal(n, sizeof(msg) - 1);
        assert_memory_equal(data, msg, n);
    } else {
        assert_int_not_equal(CMS_decrypt(cms, keys[dec_key], certs[i], NULL, out, CMS_BINARY), 1);
        ERR_clear_error();
    }
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    BIO_free(out);
    sk_X509_free(sk);
}

static void test_cms_decrypt(void **state)
{
    for (int i = 0; i < 2; i++) {
        cms_envelope(i, EVP_aes_128_cbc(), 0, i);
        cms_envelope(i, EVP_des_ede3_cbc(), 0, i);
        cms_envelope(i, EVP_aes_256_cbc(), 1, i);
    }
    cms_envelope(0, EVP_aes_128_cbc(), 0, 1);   /* wrong private key */
}

static void test_private_not_readable(void **state)
{
    for (int i = 0; i < NKEYS; i++)
        assert_int_equal(hsm_key_is_protected(tok, specs[i].label), 1);
    assert_true(hsm_key_is_protected(tok, "missing") < 0);
}

struct worker {
    int attach;
    int attach_rc, failures, done;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    unsigned char msg[64];
    if (w->attach) {
        w->attach_rc = hsm_thread_attach(tok);
        if (hsm_thread_attach(tok) == 0)        /* second attach must be refused */
            w->failures++;
    }
    for (int i = 0; i < 200; i++) {
        RAND_bytes(msg, sizeof(msg));
        int k = (i % 2) ? 0 : 2;                 /* alternate RSA and ECDSA */
        if (!sign_verify_once(keys[k], X509_get0_pubkey(certs[k]), msg, sizeof(msg)))
            w->failures++;
        w->done++;
    }
    if (w->attach)
        hsm_thread_detach();
    hsm_thread_detach();                        /* harmless when not attached */
    return NULL;
}

static void test_threads(void **state)
{
    struct worker w[3] = { { .attach = 1 }, { .attach = 0 }, { .attach = 1 } };
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w[i].done, 200);
        assert_int_equal(w[i].failures, 0);
        if (w[i].attach)
            assert_int_equal(w[i].attach_rc, 0);
    }
    assert_true(hsm_thread_attach(NULL) < 0);
}

static void test_ping(void **state)
{
    assert_int_equal(hsm_ping(tok), 0);
    assert_true(hsm_ping(NULL) < 0);
    assert_null(hsm_libctx(tok));
}

static void test_probes(void **state)
{
    assert_int_equal(hsm_probe_sign(tok, "rsa2048", 20), 0);
    assert_int_equal(hsm_probe_sign(tok, "ecp384", 20), 0);
    assert_int_equal(hsm_probe_decrypt(tok, "rsa3072", 20), 0);
    assert_true(hsm_probe_decrypt(tok, "ecp256", 1) < 0);
    assert_true(hsm_probe_sign(tok, "missing", 1) < 0);
    assert_int_equal(hsm_thread_attach(tok), 0);
    assert_int_equal(hsm_probe_sign(tok, "ecp256", 20), 0);
    hsm_thread_detach();
}

/* Loading the provider must not change how software keys (default provider) behave. */
static void test_software_keys_unaffected(void **state)
{
    unsigned char msg[32] = "software", ct[512], pt[512];
    size_t ctlen = sizeof(ct), ptlen = sizeof(pt);
    EVP_PKEY *rsa = EVP_RSA_gen(2048);
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    assert_non_null(rsa);
    assert_non_null(ec);
    assert_int_equal(sign_verify_once(rsa, rsa, msg, sizeof(msg)), 1);
    assert_int_equal(sign_verify_once(ec, ec, msg, sizeof(msg)), 1);
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, rsa, NULL);
    assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
    assert_int_equal(EVP_PKEY_encrypt(c, ct, &ctlen, msg, sizeof(msg)), 1);
    assert_int_equal(EVP_PKEY_decrypt_init(c), 1);
    assert_int_equal(EVP_PKEY_decrypt(c, pt, &ptlen, ct, ctlen), 1);
    assert_memory_equal(pt, msg, sizeof(msg));
    EVP_PKEY_CTX_free(c);
    X509 *x = self_signed(rsa, "soft", EVP_sha256());
    assert_int_equal(X509_verify(x, X509_get0_pubkey(x)), 1);
    assert_int_equal(X509_check_private_key(x, rsa), 1);
    assert_int_equal(X509_check_private_key(x, keys[0]), 0);
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

int main(void)
{
    const char *ci = getenv("CI");
    module = getenv("SOFTHSM_MODULE");
    int required = (module != NULL && *module != '\0') || (ci != NULL && strcmp(ci, "true") == 0);
    if (module == NULL || *module == '\0')
        module = "/usr/lib/softhsm/libsofthsm2.so";
    if (access(module, R_OK) != 0 || system("command -v softhsm2-util >/dev/null 2>&1") != 0) {
        if (required) {
            fprintf(stderr, "SoftHSM2 required (SOFTHSM_MODULE=%s%s) but %s is missing: FAILED\n",
                    module, ci != NULL && strcmp(ci, "true") == 0 ? ", CI=true" : "",
                    access(module, R_OK) != 0 ? "the module" : "softhsm2-util");
            return 1;
        }
        fprintf(stderr, "SoftHSM2 not available and not required: skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_failures),
        cmocka_unit_test(test_open_wrong_pin),
        cmocka_unit_test(test_generate),
        cmocka_unit_test(test_duplicate_label_refused),
        cmocka_unit_test(test_load_by_label),
        cmocka_unit_test(test_x509_sign_and_eq),
        cmocka_unit_test(test_cms_sign),
        cmocka_unit_test(test_prehashed_sign),
        cmocka_unit_test(test_pss_refused),
        cmocka_unit_test(test_decrypt),
        cmocka_unit_test(test_cms_decrypt),
        cmocka_unit_test(test_private_not_readable),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_ping),
        cmocka_unit_test(test_probes),
        cmocka_unit_test(test_software_keys_unaffected),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
