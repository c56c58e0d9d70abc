/* Unit tests for engine/scep/fastpath.c: scep_parse takes a client's ordinary PKCSReq on the
 * fast path (the signer certificate's key left undecoded, its key decoded once) and still
 * decides everything else the ordinary way; scep_fast_verify refuses what CMS_verify refuses;
 * scep_fast_envelope's EnvelopedData decrypts with OpenSSL's CMS_decrypt and has the shape and
 * size of CMS_encrypt's for the same recipient, cipher and content. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/cms.h>
#include <openssl/err.h>

#include "engine/scep/fastpath.h"
#include "engine/scep/keycache.h"
#include "engine/scep/reject.h"
#include "engine/scep/scep.h"
#include "client/scep_client.h"

static struct fixture {
    scepc_ctx *ctx;
    EVP_PKEY *ra_key, *client_key;
    X509 *ra, *client;
    X509_REQ *csr;
    scepc_caset *set;
} F;

static int setup(void **state)
{
    X509_NAME *subj = NULL;
    STACK_OF(X509) *sk = sk_X509_new_null();

    (void)state;
    assert_int_equal(scepc_ctx_create(NULL, NULL, &F.ctx), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.ra_key), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.client_key), SCEPC_OK);
    assert_int_equal(scepc_name_parse("/CN=Test RA/O=scepd", &subj), SCEPC_OK);
    assert_int_equal(scepc_self_signed(F.ctx, F.ra_key, subj, SCEPC_MD_SHA256, &F.ra), SCEPC_OK);
    X509_NAME_free(subj);
    assert_int_equal(scepc_name_parse("/CN=device-1/O=fleet", &subj), SCEPC_OK);
    assert_int_equal(scepc_self_signed(F.ctx, F.client_key, subj, SCEPC_MD_SHA256, &F.client),
                     SCEPC_OK);
    assert_int_equal(scepc_build_csr(F.ctx, F.client_key, subj, "s3cret", NULL, 0, NULL,
                                     SCEPC_MD_SHA256, &F.csr), SCEPC_OK);
    X509_NAME_free(subj);
    assert_non_null(sk);
    assert_true(sk_X509_push(sk, F.ra));
    assert_int_equal(scepc_caset_from_certs(sk, &F.set), SCEPC_OK);
    sk_X509_free(sk);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    scepc_caset_destroy(F.set);
    X509_REQ_free(F.csr);
    X509_free(F.ra);
    X509_free(F.client);
    EVP_PKEY_free(F.ra_key);
    EVP_PKEY_free(F.client_key);
    scepc_ctx_destroy(F.ctx);
    return 0;
}

static void message(scepc_md md, int corrupt, uint8_t **der, size_t *len)
{
    scepc_msg_params p;
    scepc_txn txn;
    memset(&p, 0, sizeof(p));
    p.msgtype = SCEPC_MSG_PKCSREQ;
    p.csr = F.csr;
    p.signer_cert = F.client;
    p.signer_key = F.client_key;
    p.ca = F.set;
    p.md = md;
    p.cipher = SCEPC_CIPHER_AES128;
    p.corrupt_signature = corrupt;
    assert_int_equal(scepc_build_pkimessage(F.ctx, &p, der, len, &txn), SCEPC_OK);
}

/* A good message: verified on the fast path (the signer's own key was never decoded, the
 * request carries the key decoded once); the envelope still opens. */
static void test_parse_fast(void **state)
{
    static const scepc_md mds[] = { SCEPC_MD_SHA256, SCEPC_MD_SHA512 };
    (void)state;
    for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++) {
        uint8_t *der = NULL;
        size_t len = 0;
        scep_request req;
        message(mds[i], 0, &der, &len);
        assert_int_equal(scep_parse(der, len, 0, &req), REJ_NONE);
        assert_non_null(req.signer);
        assert_null(X509_get0_pubkey(req.signer));
        ERR_clear_error();
        assert_non_null(req.signer_key);
        assert_int_equal(EVP_PKEY_eq(req.signer_key, F.client_key), 1);
        /* What the enrollment later does with the signer (renewal: ca_issued, X509_cmp)
         * works on the fast-parsed certificate as on an ordinary one. */
        assert_int_equal(X509_verify(req.signer, F.client_key), 1);
        assert_int_equal(X509_verify(req.signer, F.ra_key), 0);
        assert_int_equal(X509_cmp(req.signer, F.client), 0);
        assert_int_equal(X509_cmp(req.signer, F.ra) == 0, 0);
        ERR_clear_error();
        assert_int_equal(scep_open_envelope(&req, F.ra_key, F.ra, 0), REJ_NONE);
        assert_non_null(req.inner);
        scep_request_clear(&req);
        free(der);
    }
}

/* A corrupted signature: refused by the fast path, decided (refused) by the ordinary one. */
static void test_parse_bad_signature(void **state)
{
    uint8_t *der = NULL;
    size_t len = 0;
    scep_request req;
    (void)state;
    message(SCEPC_MD_SHA256, 1, &der, &len);
    assert_int_equal(scep_parse(der, len, 0, &req), REJ_BAD_SIGNATURE);
    scep_request_clear(&req);
    free(der);
}

/* scep_fast_verify itself: the right key and digest verify; another key, another digest
 * than the SignerInfo's, or changed content do not. */
static void test_fast_verify(void **state)
{
    uint8_t *der = NULL;
    size_t len = 0;
    (void)state;
    message(SCEPC_MD_SHA256, 0, &der, &len);
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    assert_non_null(cms);
    CMS_SignerInfo *si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
    assert_int_equal(scep_fast_verify(cms, si, F.client_key, NID_sha256), 1);
    assert_int_equal(scep_fast_verify(cms, si, F.ra_key, NID_sha256), 0);
    assert_int_equal(scep_fast_verify(cms, si, F.client_key, NID_sha384), 0);
    assert_int_equal(scep_fast_verify(cms, si, NULL, NID_sha256), 0);
    ASN1_OCTET_STRING **content = CMS_get0_content(cms);
    assert_non_null(content);
    assert_non_null(*content);
    (*content)->data[(*content)->length / 2] ^= 1;
    assert_int_equal(scep_fast_verify(cms, si, F.client_key, NID_sha256), 0);
    CMS_ContentInfo_free(cms);
    free(der);
}

/* Same size and structure as CMS_encrypt's, and it decrypts to the content. */
static void test_envelope(void **state)
{
    static const int nids[] = { NID_aes_128_cbc, NID_aes_192_cbc, NID_aes_256_cbc,
                                NID_des_ede3_cbc };
    uint8_t content[300];
    (void)state;
    for (size_t i = 0; i < sizeof(content); i++)
        content[i] = (uint8_t)i;
    for (size_t i = 0; i < sizeof(nids) / sizeof(nids[0]); i++) {
        uint8_t *ours = NULL;
        size_t ours_len = 0;
        assert_int_equal(scep_fast_envelope(F.client, F.client_key, nids[i], content,
                                            sizeof(content), &ours, &ours_len), 0);
        /* CMS_encrypt's envelope for the same recipient, cipher, content */
        BIO *in = BIO_new_mem_buf(content, (int)sizeof(content));
        STACK_OF(X509) *r = sk_X509_new_null();
        assert_non_null(in);
        assert_true(sk_X509_push(r, F.client));
        CMS_ContentInfo *ref = CMS_encrypt(r, in, EVP_get_cipherbynid(nids[i]), CMS_BINARY);
        assert_non_null(ref);
        unsigned char *ref_der = NULL;
        int ref_len = i2d_CMS_ContentInfo(ref, &ref_der);
        assert_int_equal((int)ours_len, ref_len);
        /* DER: decodes and encodes to the same bytes; one KTRI naming the recipient */
        const unsigned char *p = ours;
        CMS_ContentInfo *env = d2i_CMS_ContentInfo(NULL, &p, (long)ours_len);
        assert_non_null(env);
        unsigned char *again = NULL;
        assert_int_equal(i2d_CMS_ContentInfo(env, &again), (int)ours_len);
        assert_memory_equal(again, ours, ours_len);
        assert_int_equal(OBJ_obj2nid(CMS_get0_type(env)), NID_pkcs7_enveloped);
        STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(env);
        assert_int_equal(sk_CMS_RecipientInfo_num(ris), 1);
        CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, 0);
        assert_int_equal(CMS_RecipientInfo_type(ri), CMS_RECIPINFO_TRANS);
        assert_int_equal(CMS_RecipientInfo_ktri_cert_cmp(ri, F.client), 0);
        /* the header bytes up to the encrypted key are the same as CMS_encrypt's */
        size_t same = 0;
        while (same < ours_len && ours[same] == ref_der[same])
            same++;
        assert_true(same > 30);
        BIO *out = BIO_new(BIO_s_mem());
        assert_int_equal(CMS_decrypt(env, F.client_key, F.client, NULL, out, CMS_BINARY), 1);
        char *plain = NULL;
        long n = BIO_get_mem_data(out, &plain);
        assert_int_equal(n, (long)sizeof(content));
        assert_memory_equal(plain, content, sizeof(content));
        BIO_free(out);
        OPENSSL_free(again);
        CMS_ContentInfo_free(env);
        OPENSSL_free(ref_der);
        CMS_ContentInfo_free(ref);
        sk_X509_free(r);
        BIO_free(in);
        free(ours);
    }
}

/* The per-thread decoder context decodes one key after another (it is reused). */
static void test_key_decode_repeated(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        X509 *c = i % 2 == 0 ? F.client : F.ra;
        EVP_PKEY *k = scep_key_get1(X509_get_X509_PUBKEY(c));
        assert_non_null(k);
        assert_int_equal(EVP_PKEY_eq(k, X509_get0_pubkey(c)), 1);
        EVP_PKEY_free(k);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_fast),
        cmocka_unit_test(test_parse_bad_signature),
        cmocka_unit_test(test_fast_verify),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_key_decode_repeated),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
