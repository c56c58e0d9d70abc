/* Unit tests for engine/scep/certrep_der.c: the CertRep written as DER has the structure of the
 * one OpenSSL's CMS writes for the same request (the same elements, lengths, attributes in the
 * same sorted order, the same values but for the fresh senderNonce, signingTime, signature and
 * the random envelope), verifies with CMS_verify and with `openssl cms -verify`, for RSA and EC
 * signers and SHA-256/384/512; a signer it does not write (Ed25519) is left to CMS. */
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
#include <openssl/rand.h>

#include "engine/scep/certrep_der.h"
#include "engine/scep/fastpath.h"
#include "engine/scep/scep.h"
#include "engine/scep/scep_oid.h"
#include "client/scep_client.h"
#include "tests/unit/scep/scep_test_certs.h"

static struct fixture {
    scepc_ctx *ctx;
    EVP_PKEY *ra_key, *ec_key, *ed_key, *client_key;
    X509 *ra, *ec, *ed, *client;
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
    assert_int_equal(scepc_keygen(F.ctx, "ec:P-256", &F.ec_key), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "ed25519", &F.ed_key), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.client_key), SCEPC_OK);
    F.ra = self_signed(F.ra_key, "/CN=Test RA/O=scepd");
    F.ec = self_signed(F.ec_key, "/CN=Test EC RA/O=scepd");
    F.ed = self_signed(F.ed_key, "/CN=Test Ed RA/O=scepd");
    F.client = self_signed(F.client_key, "/CN=device-1/O=fleet");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    X509_free(F.ra);
    X509_free(F.ec);
    X509_free(F.ed);
    X509_free(F.client);
    EVP_PKEY_free(F.ra_key);
    EVP_PKEY_free(F.ec_key);
    EVP_PKEY_free(F.ed_key);
    EVP_PKEY_free(F.client_key);
    scepc_ctx_destroy(F.ctx);
    return 0;
}

/* A parsed request as scep_parse leaves it (txid, nonce, signer, digest). */
static void request(scep_request *req, int md_nid, ASN1_STRING *txid_sent)
{
    memset(req, 0, sizeof(*req));
    strcpy(req->txid, "txn-0001");
    req->txid_len = strlen(req->txid);
    req->txid_sent = txid_sent;
    req->has_nonce = 1;
    memset(req->sender_nonce, 0x5a, SCEP_NONCE_LEN);
    req->sig_md_nid = md_nid;
    req->cipher_nid = NID_aes_128_cbc;
    req->signer = F.client;
    req->signer_key = F.client_key;
}

/* The CertRep as the CMS path builds it (the reference: what scepd sent before certrep_der). */
static void reference(const scep_request *req, int status, int failinfo, const char *text,
                      const uint8_t *envelope, size_t elen, EVP_PKEY *key, X509 *cert,
                      const EVP_MD *md, uint8_t **out, size_t *outlen)
{
    const scep_oids *o = scep_oid_get();
    uint8_t nonce[SCEP_NONCE_LEN];
    char num[8];
    CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, NULL, CMS_PARTIAL | CMS_BINARY);
    assert_non_null(cms);
    CMS_SignerInfo *si = CMS_add1_signer(cms, cert, key, md,
                                         CMS_BINARY | CMS_NOSMIMECAP | CMS_PARTIAL);
    assert_non_null(si);
#define STR(nid, s, n) assert_int_equal(CMS_signed_add1_attr_by_NID(si, nid, \
                                        V_ASN1_PRINTABLESTRING, s, (int)(n)), 1)
    snprintf(num, sizeof(num), "%d", SCEP_MSG_CERTREP);
    STR(o->message_type, num, strlen(num));
    snprintf(num, sizeof(num), "%d", status);
    STR(o->pki_status, num, strlen(num));
    if (status == SCEP_FAILURE) {
        snprintf(num, sizeof(num), "%d", failinfo);
        STR(o->fail_info, num, strlen(num));
        assert_int_equal(CMS_signed_add1_attr_by_NID(si, o->fail_info_text, V_ASN1_UTF8STRING,
                                                     text, (int)strlen(text)), 1);
    }
    if (req->txid_sent != NULL)
        STR(o->transaction_id, req->txid_sent->data, req->txid_sent->length);
    else
        STR(o->transaction_id, req->txid, req->txid_len);
#undef STR
    assert_int_equal(CMS_signed_add1_attr_by_NID(si, o->recipient_nonce, V_ASN1_OCTET_STRING,
                                                 req->sender_nonce, SCEP_NONCE_LEN), 1);
    assert_int_equal(RAND_bytes(nonce, sizeof(nonce)), 1);
    assert_int_equal(CMS_signed_add1_attr_by_NID(si, o->sender_nonce, V_ASN1_OCTET_STRING,
                                                 nonce, SCEP_NONCE_LEN), 1);
    if (envelope == NULL)
        CMS_set_detached(cms, 1);
    BIO *in = BIO_new_mem_buf(envelope != NULL ? envelope : (const uint8_t *)"", (int)elen);
    assert_non_null(in);
    assert_int_equal(CMS_final(cms, in, NULL, CMS_BINARY), 1);
    unsigned char *der = NULL;
    int n = i2d_CMS_ContentInfo(cms, &der);
    assert_true(n > 0);
    *out = der;
    *outlen = (size_t)n;
    BIO_free(in);
    CMS_ContentInfo_free(cms);
}

/* The DER tree flattened: each element's depth, tag and length, and the contents of primitive
 * elements except OCTET STRINGs (nonces, digest, signature, envelope) and times. */
static size_t skeleton(const uint8_t *p, size_t len, int depth, char *out, size_t at,
                       size_t cap)
{
    size_t i = 0;
    while (i < len) {
        uint8_t tag = p[i++];
        size_t n = p[i++];
        if (n & 0x80) {
            size_t k = n & 0x7f;
            n = 0;
            while (k-- > 0)
                n = n << 8 | p[i++];
        }
        assert_true(n <= len - i);
        at += (size_t)snprintf(out + at, cap - at, "%d:%02x:%zu ", depth, tag, n);
        if (tag & 0x20) {
            at = skeleton(p + i, n, depth + 1, out, at, cap);
        } else if (tag != 0x04 && tag != 0x17 && tag != 0x18) {
            for (size_t j = 0; j < n; j++)
                at += (size_t)snprintf(out + at, cap - at, "%02x", p[i + j]);
        }
        at += (size_t)snprintf(out + at, cap - at, ";");
        assert_true(at < cap - 8);
        i += n;
    }
    return at;
}

static void verify(const uint8_t *der, size_t len, X509 *cert, const uint8_t *envelope,
                   size_t elen)
{
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    STACK_OF(X509) *one = sk_X509_new_null();
    BIO *content = envelope == NULL ? BIO_new_mem_buf("", 0) : NULL;
    BIO *got = BIO_new(BIO_s_mem());
    char *data = NULL;
    assert_non_null(cms);
    assert_ptr_equal(p, der + len);
    assert_true(sk_X509_push(one, cert));
    assert_int_equal(CMS_verify(cms, one, NULL, content, got,
                                CMS_NO_SIGNER_CERT_VERIFY | CMS_NOINTERN | CMS_BINARY), 1);
    assert_int_equal(BIO_get_mem_data(got, &data), (long)elen);
    if (elen > 0)
        assert_memory_equal(data, envelope, elen);
    BIO_free(got);
    BIO_free(content);
    sk_X509_free(one);
    CMS_ContentInfo_free(cms);
}

/* `openssl cms -verify -noverify` accepts it (a detached FAILURE/PENDING over empty content). */
static void verify_cli(const uint8_t *der, size_t len, int detached)
{
    char path[] = "/tmp/test_certrep_der.XXXXXX", cmd[256];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, der, len), (ssize_t)len);
    close(fd);
    snprintf(cmd, sizeof(cmd),
             "openssl cms -verify -noverify -binary -inform DER -in %s %s -out /dev/null "
             ">/dev/null 2>&1", path, detached ? "-content /dev/null" : "");
    int rc = system(cmd);
    unlink(path);
    assert_int_equal(rc, 0);
}

static void compare(int status, int md_nid, ASN1_STRING *txid, const uint8_t *envelope,
                    size_t elen, EVP_PKEY *key, X509 *cert)
{
    scep_request req;
    uint8_t *mine = NULL, *ref = NULL;
    size_t mine_len = 0, ref_len = 0;
    const EVP_MD *md = scep_fetched_md(md_nid);
    const char *text = "pkcsPKIEnvelope does not decrypt to a valid request";
    static char a[65536], b[65536];

    request(&req, md_nid, txid);
    assert_int_equal(scep_certrep_der(&req, status, SCEP_FAIL_BADMESSAGECHECK, text, envelope,
                                      elen, key, cert, md, &mine, &mine_len), 0);
    reference(&req, status, SCEP_FAIL_BADMESSAGECHECK, text, envelope, elen, key, cert, md,
              &ref, &ref_len);
    verify(mine, mine_len, cert, envelope, elen);
    verify_cli(mine, mine_len, envelope == NULL);
    if (EVP_PKEY_is_a(key, "RSA")) {      /* an ECDSA signature's length varies */
        assert_int_equal(mine_len, ref_len);
        skeleton(mine, mine_len, 0, a, 0, sizeof(a));
        skeleton(ref, ref_len, 0, b, 0, sizeof(b));
        assert_string_equal(a, b);
    } else {
        assert_true(mine_len + 3 >= ref_len && ref_len + 3 >= mine_len);
    }
    free(mine);
    OPENSSL_free(ref);
}

static void test_failure_pending(void **state)
{
    static const int mds[] = { NID_sha256, NID_sha384, NID_sha512 };
    (void)state;
    for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
        compare(SCEP_FAILURE, mds[i], NULL, NULL, 0, F.ra_key, F.ra);
        compare(SCEP_PENDING, mds[i], NULL, NULL, 0, F.ra_key, F.ra);
        compare(SCEP_FAILURE, mds[i], NULL, NULL, 0, F.ec_key, F.ec);
    }
}

/* SUCCESS carries the envelope as eContent; a transactionID as sent (even one refused for
 * its bytes, longer than SCEP_TXID_MAX) is echoed byte for byte. */
static void test_success(void **state)
{
    uint8_t env[1200];
    ASN1_STRING *tid = ASN1_STRING_type_new(V_ASN1_PRINTABLESTRING);
    char long_txid[300];
    (void)state;
    memset(long_txid, 'x', sizeof(long_txid));
    long_txid[5] = '\n';
    assert_int_equal(ASN1_STRING_set(tid, long_txid, sizeof(long_txid)), 1);
    assert_int_equal(RAND_bytes(env, sizeof(env)), 1);
    compare(SCEP_SUCCESS, NID_sha256, NULL, env, sizeof(env), F.ra_key, F.ra);
    compare(SCEP_SUCCESS, NID_sha512, tid, env, sizeof(env), F.ra_key, F.ra);
    compare(SCEP_SUCCESS, NID_sha256, NULL, env, 100, F.ec_key, F.ec);
    compare(SCEP_FAILURE, NID_sha256, tid, NULL, 0, F.ra_key, F.ra);
    ASN1_STRING_free(tid);
}

/* A signer the writer does not cover: 1, nothing written; scep_certrep_content then answers
 * through CMS (or fails as CMS does). */
static void test_not_covered(void **state)
{
    scep_request req;
    uint8_t *out = NULL;
    size_t len = 0;
    (void)state;
    request(&req, NID_sha256, NULL);
    assert_int_equal(scep_certrep_der(&req, SCEP_PENDING, 0, NULL, NULL, 0, F.ed_key, F.ed,
                                      scep_fetched_md(NID_sha256), &out, &len), 1);
    assert_null(out);
    assert_int_equal(scep_certrep_der(&req, SCEP_PENDING, 0, NULL, NULL, 0, F.ra_key, F.ra,
                                      scep_fetched_md(NID_sha1), &out, &len), 1);
    assert_null(out);
    ERR_clear_error();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failure_pending),
        cmocka_unit_test(test_success),
        cmocka_unit_test(test_not_covered),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
