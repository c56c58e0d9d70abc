/* Unit tests for engine/scep/envelope_der.c: the envelopes clients send (OpenSSL's CMS_encrypt
 * with each allowed cipher, to one or several recipients; encryptedContent in chunks, definite
 * or indefinite) are opened by the DER reader with the result of the CMS path; a wrong key
 * gives REJ_DECRYPT through the random-key path; what the reader does not take (BER lengths
 * around it, another cipher, no recipient for the RA, trailing bytes, any truncation) is left
 * to the CMS path, which answers as before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "engine/scep/der.h"
#include "engine/scep/envelope_der.h"
#include "engine/scep/reject.h"
#include "engine/scep/scep.h"
#include "client/scep_client.h"
#include "tests/unit/scep/scep_test_certs.h"

static struct fixture {
    scepc_ctx *ctx;
    EVP_PKEY *ra_key, *other_key;
    X509 *ra, *other;
    uint8_t content[700];
} F;

static X509 *self_signed(EVP_PKEY *key, const char *name)
{
    return test_self_signed(F.ctx, key, name);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(scepc_ctx_create(NULL, NULL, &F.ctx), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.ra_key), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.other_key), SCEPC_OK);
    F.ra = self_signed(F.ra_key, "/CN=Test RA/O=scepd");
    F.other = self_signed(F.other_key, "/CN=Other CA/O=scepd");
    assert_int_equal(RAND_bytes(F.content, sizeof(F.content)), 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    X509_free(F.ra);
    X509_free(F.other);
    EVP_PKEY_free(F.ra_key);
    EVP_PKEY_free(F.other_key);
    scepc_ctx_destroy(F.ctx);
    return 0;
}

/* content enveloped by CMS_encrypt to r1 (and r2), DER; BER with indefinite lengths when
 * stream. */
static void envelope(const EVP_CIPHER *cipher, X509 *r1, X509 *r2, const uint8_t *content,
                     size_t len, int stream, uint8_t **out, size_t *outlen)
{
    STACK_OF(X509) *r = sk_X509_new_null();
    BIO *in = BIO_new_mem_buf(content, (int)len), *mem = BIO_new(BIO_s_mem());
    char *data = NULL;
    assert_true(sk_X509_push(r, r1));
    if (r2 != NULL)
        assert_true(sk_X509_push(r, r2));
    CMS_ContentInfo *cms = CMS_encrypt(r, stream ? NULL : in, cipher,
                                       CMS_BINARY | (stream ? CMS_STREAM : 0));
    assert_non_null(cms);
    if (stream)
        assert_int_equal(i2d_CMS_bio_stream(mem, cms, in, CMS_STREAM | CMS_BINARY), 1);
    else
        assert_true(i2d_CMS_bio(mem, cms) == 1);
    long n = BIO_get_mem_data(mem, &data);
    assert_true(n > 0);
    *out = malloc((size_t)n);
    memcpy(*out, data, (size_t)n);
    *outlen = (size_t)n;
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    BIO_free(mem);
    sk_X509_free(r);
}

/* Both ways of opening: the DER reader (want_der, or NOT_HANDLED) and scep_open_envelope
 * (want); on REJ_NONE the content comes back. */
static void open_both(const uint8_t *env, size_t len, int want_der, int want,
                      const uint8_t *content, size_t content_len)
{
    scep_request req;
    memset(&req, 0, sizeof(req));
    req.envelope = env;
    req.envelope_len = len;
    assert_int_equal(scep_envelope_der(&req, F.ra_key, F.ra), want_der);
    if (want_der == REJ_NONE) {
        assert_int_equal(req.inner_len, content_len);
        assert_memory_equal(req.inner, content, content_len);
    } else {
        assert_null(req.inner);
    }
    scep_request_clear(&req);
    memset(&req, 0, sizeof(req));
    req.envelope = env;
    req.envelope_len = len;
    assert_int_equal(scep_open_envelope(&req, F.ra_key, F.ra, 0), want);
    if (want == REJ_NONE) {
        assert_int_equal(req.inner_len, content_len);
        assert_memory_equal(req.inner, content, content_len);
    }
    scep_request_clear(&req);
}

static void test_ciphers(void **state)
{
    const struct { const EVP_CIPHER *c; int nid; } cases[] = {
        { EVP_aes_128_cbc(), NID_aes_128_cbc }, { EVP_aes_192_cbc(), NID_aes_192_cbc },
        { EVP_aes_256_cbc(), NID_aes_256_cbc }, { EVP_des_ede3_cbc(), NID_des_ede3_cbc },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *env = NULL;
        size_t len = 0;
        scep_request req;
        envelope(cases[i].c, F.ra, NULL, F.content, sizeof(F.content), 0, &env, &len);
        open_both(env, len, REJ_NONE, REJ_NONE, F.content, sizeof(F.content));
        memset(&req, 0, sizeof(req));
        req.envelope = env;
        req.envelope_len = len;
        assert_int_equal(scep_envelope_der(&req, F.ra_key, F.ra), REJ_NONE);
        assert_int_equal(req.cipher_nid, cases[i].nid);
        scep_request_clear(&req);
        free(env);
    }
}

/* Several recipients: the RA's is found wherever it is; none for the RA: CMS decides. */
static void test_recipients(void **state)
{
    uint8_t *env = NULL;
    size_t len = 0;
    (void)state;
    envelope(EVP_aes_128_cbc(), F.other, F.ra, F.content, sizeof(F.content), 0, &env, &len);
    open_both(env, len, REJ_NONE, REJ_NONE, F.content, sizeof(F.content));
    free(env);
    envelope(EVP_aes_128_cbc(), F.other, NULL, F.content, sizeof(F.content), 0, &env, &len);
    open_both(env, len, SCEP_ENVELOPE_NOT_HANDLED, REJ_DECRYPT, NULL, 0);
    free(env);
}

/* The RA certificate with the wrong key: the unwrap fails, a random key decrypts (the padding
 * of the result is valid about once in 256 tries: then REJ_NONE with other bytes). */
static void test_wrong_key(void **state)
{
    uint8_t *env = NULL;
    size_t len = 0;
    int refused = 0;
    (void)state;
    envelope(EVP_aes_256_cbc(), F.ra, NULL, F.content, sizeof(F.content), 0, &env, &len);
    for (int i = 0; i < 20; i++) {
        scep_request req;
        memset(&req, 0, sizeof(req));
        req.envelope = env;
        req.envelope_len = len;
        int rc = scep_envelope_der(&req, F.other_key, F.ra);
        assert_true(rc == REJ_DECRYPT ||
                    (rc == REJ_NONE && (req.inner_len != sizeof(F.content) ||
                                        memcmp(req.inner, F.content, req.inner_len) != 0)));
        refused += rc == REJ_DECRYPT;
        scep_request_clear(&req);
    }
    assert_true(refused >= 15);
    free(env);
}

static uint8_t *wrap(uint8_t tag, const uint8_t *body, size_t len, size_t *outlen)
{
    uint8_t *b = malloc(der_hdr_size(len) + len);
    uint8_t *p = der_hdr(b, tag, len);
    memcpy(p, body, len);
    *outlen = der_hdr_size(len) + len;
    return b;
}

static uint8_t *cat(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, size_t *n)
{
    uint8_t *r = malloc(alen + blen);
    if (alen > 0)
        memcpy(r, a, alen);
    if (blen > 0)
        memcpy(r + alen, b, blen);
    *n = alen + blen;
    return r;
}

/* env (CMS_encrypt's DER) with its encryptedContent constructed from chunks of `chunk` bytes,
 * with a definite or indefinite length. */
static uint8_t *rechunk(const uint8_t *env, size_t len, size_t chunk, int indef, size_t *outlen)
{
    der_in all = { env, env + len }, ci, exp, ed, eci, ct;
    assert_int_equal(der_take(&all, 0x30, &ci), 0);
    const uint8_t *oid = ci.p;
    assert_int_equal(der_take(&ci, 0x06, NULL), 0);
    size_t oid_len = (size_t)(ci.p - oid);
    assert_int_equal(der_take(&ci, 0xa0, &exp), 0);
    assert_int_equal(der_take(&exp, 0x30, &ed), 0);
    const uint8_t *head = ed.p;            /* version, recipientInfos */
    assert_int_equal(der_take(&ed, 0x02, NULL), 0);
    assert_int_equal(der_take(&ed, 0x31, NULL), 0);
    size_t head_len = (size_t)(ed.p - head);
    assert_int_equal(der_take(&ed, 0x30, &eci), 0);
    const uint8_t *algs = eci.p;           /* contentType, contentEncryptionAlgorithm */
    assert_int_equal(der_take(&eci, 0x06, NULL), 0);
    assert_int_equal(der_take(&eci, 0x30, NULL), 0);
    size_t algs_len = (size_t)(eci.p - algs);
    assert_int_equal(der_take(&eci, 0x80, &ct), 0);

    uint8_t *chunks = NULL, *t, *u;
    size_t n = 0, m, k;
    for (const uint8_t *p = ct.p; p < ct.end; p += m) {
        m = (size_t)(ct.end - p) < chunk ? (size_t)(ct.end - p) : chunk;
        t = wrap(0x04, p, m, &k);
        u = cat(chunks, n, t, k, &n);
        free(chunks);
        free(t);
        chunks = u;
    }
    if (indef) {
        static const uint8_t open[] = { 0xa0, 0x80 }, eoc[] = { 0x00, 0x00 };
        t = cat(open, 2, chunks, n, &k);
        u = cat(t, k, eoc, 2, &k);
        free(t);
    } else {
        u = wrap(0xa0, chunks, n, &k);
    }
    free(chunks);
    t = cat(algs, algs_len, u, k, &k);
    free(u);
    u = wrap(0x30, t, k, &k);               /* EncryptedContentInfo */
    free(t);
    t = cat(head, head_len, u, k, &k);
    free(u);
    u = wrap(0x30, t, k, &k);               /* EnvelopedData */
    free(t);
    t = wrap(0xa0, u, k, &k);
    free(u);
    u = cat(oid, oid_len, t, k, &k);
    free(t);
    t = wrap(0x30, u, k, outlen);
    free(u);
    return t;
}

/* encryptedContent in chunks (some clients send it so): read by the DER reader; the whole
 * envelope in BER with indefinite lengths: CMS, as before. */
static void test_chunks_and_ber(void **state)
{
    uint8_t *env = NULL, *c;
    size_t len = 0, clen;
    (void)state;
    envelope(EVP_aes_128_cbc(), F.ra, NULL, F.content, sizeof(F.content), 0, &env, &len);
    for (int indef = 0; indef < 2; indef++) {
        c = rechunk(env, len, 100, indef, &clen);
        open_both(c, clen, REJ_NONE, REJ_NONE, F.content, sizeof(F.content));
        free(c);
        c = rechunk(env, len, 7, indef, &clen);     /* chunks across cipher blocks */
        open_both(c, clen, REJ_NONE, REJ_NONE, F.content, sizeof(F.content));
        free(c);
    }
    free(env);
    envelope(EVP_aes_128_cbc(), F.ra, NULL, F.content, sizeof(F.content), 1, &env, &len);
    open_both(env, len, SCEP_ENVELOPE_NOT_HANDLED, REJ_NONE, F.content, sizeof(F.content));
    free(env);
}

/* Not handled: a cipher outside the table (CMS says REJ_CIPHER), trailing bytes (CMS takes the
 * envelope), every truncation (CMS refuses it); empty content decrypts to nothing, both ways
 * REJ_NO_ENVELOPE. */
static void test_left_to_cms(void **state)
{
    uint8_t *env = NULL, *longer;
    size_t len = 0;
    (void)state;
    envelope(EVP_camellia_128_cbc(), F.ra, NULL, F.content, sizeof(F.content), 0, &env, &len);
    open_both(env, len, SCEP_ENVELOPE_NOT_HANDLED, REJ_CIPHER, NULL, 0);
    free(env);

    envelope(EVP_aes_128_cbc(), F.ra, NULL, F.content, sizeof(F.content), 0, &env, &len);
    longer = malloc(len + 1);
    memcpy(longer, env, len);
    longer[len] = 0;
    open_both(longer, len + 1, SCEP_ENVELOPE_NOT_HANDLED, REJ_NONE, F.content,
              sizeof(F.content));
    free(longer);
    for (size_t cut = 1; cut < len; cut += cut < 400 ? 1 : 37) {
        scep_request req;
        memset(&req, 0, sizeof(req));
        req.envelope = env;
        req.envelope_len = cut;
        assert_int_equal(scep_envelope_der(&req, F.ra_key, F.ra), SCEP_ENVELOPE_NOT_HANDLED);
        scep_request_clear(&req);
    }
    free(env);

    envelope(EVP_aes_128_cbc(), F.ra, NULL, (const uint8_t *)"", 0, 0, &env, &len);
    open_both(env, len, REJ_NO_ENVELOPE, REJ_NO_ENVELOPE, NULL, 0);
    free(env);
    ERR_clear_error();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ciphers),
        cmocka_unit_test(test_recipients),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_chunks_and_ber),
        cmocka_unit_test(test_left_to_cms),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
