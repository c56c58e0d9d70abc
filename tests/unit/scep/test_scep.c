/* Unit tests for engine/scep/scep.c: pkiMessages are built as a client would (client/scep_client.h,
 * or OpenSSL's CMS API directly where a test needs a message the client library will not
 * make), taken apart with scep_parse / scep_open_envelope and a software RA key; CertReps from
 * scep_certrep are checked with the client's parser and with OpenSSL directly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "engine/scep/reject.h"
#include "engine/scep/scep.h"
#include "engine/scep/scep_oid.h"
#include "client/scep_client.h"

/* Created once: RSA keys are slow to make. */
static struct fixture {
    OSSL_PROVIDER *legacy, *deflt;
    EVP_CIPHER *des;                      /* single DES-CBC, from the legacy provider */
    scepc_ctx *ctx;
    EVP_PKEY *ca_key, *ra_key, *client_key, *other_key, *ec_key;
    X509 *ca, *ra, *other, *client, *ec_client; /* client certs are self-signed transients */
    X509_REQ *csr;
    uint8_t *csr_der;
    size_t csr_len;
    scepc_caset *set;                      /* CA + RA */
    const scep_oids *oids;
} F;

static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                       int ca, const char *ku)
{
    X509 *c = X509_new();
    X509_NAME *n = NULL;
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    unsigned char sn[8];

    assert_non_null(c);
    assert_int_equal(scepc_name_parse(cn, &n), SCEPC_OK);
    assert_int_equal(RAND_bytes(sn, sizeof(sn)), 1);
    sn[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(sn, sizeof(sn), NULL);
    assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)));
    BN_free(bn);
    assert_true(X509_set_version(c, X509_VERSION_3));
    assert_true(X509_set_subject_name(c, n));
    assert_true(X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n));
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(c), -60));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(c), 86400));
    assert_true(X509_set_pubkey(c, key));
    X509V3_set_ctx(&v3, issuer ? issuer : c, c, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
                              ca ? "critical,CA:TRUE" : "CA:FALSE");
    assert_non_null(ext);
    assert_true(X509_add_ext(c, ext, -1));
    X509_EXTENSION_free(ext);
    if (ku != NULL) {
        ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, ku);
        assert_non_null(ext);
        assert_true(X509_add_ext(c, ext, -1));
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    X509_NAME_free(n);
    return c;
}

static int setup(void **state)
{
    X509_NAME *subj = NULL;
    STACK_OF(X509) *sk = sk_X509_new_null();
    unsigned char *der = NULL;
    int n;

    (void)state;
    /* Single-DES messages can only be built with the legacy provider; loading it explicitly
     * hides the default provider unless that is loaded too. */
    F.legacy = OSSL_PROVIDER_load(NULL, "legacy");
    F.deflt = OSSL_PROVIDER_load(NULL, "default");
    assert_non_null(F.deflt);
    if (F.legacy != NULL)
        F.des = EVP_CIPHER_fetch(NULL, "DES-CBC", NULL);
    F.oids = scep_oid_get();
    assert_non_null(F.oids);
    assert_int_equal(scepc_ctx_create(NULL, NULL, &F.ctx), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.ca_key), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.ra_key), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.client_key), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.other_key), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "ec:P-256", &F.ec_key), SCEPC_OK);
    F.ca = make_cert("/CN=Test CA/O=scepd", F.ca_key, NULL, NULL, 1,
                     "critical,keyCertSign,cRLSign");
    F.ra = make_cert("/CN=Test RA/O=scepd", F.ra_key, F.ca, F.ca_key, 0,
                     "critical,digitalSignature,keyEncipherment");
    F.other = make_cert("/CN=Other RA/O=scepd", F.other_key, F.ca, F.ca_key, 0,
                        "critical,digitalSignature,keyEncipherment");
    assert_int_equal(scepc_name_parse("/CN=device-1/O=fleet", &subj), SCEPC_OK);
    assert_int_equal(scepc_self_signed(F.ctx, F.client_key, subj, SCEPC_MD_SHA256, &F.client),
                     SCEPC_OK);
    assert_int_equal(scepc_self_signed(F.ctx, F.ec_key, subj, SCEPC_MD_SHA256, &F.ec_client),
                     SCEPC_OK);
    assert_int_equal(scepc_build_csr(F.ctx, F.client_key, subj, "s3cret", NULL, 0, NULL,
                                     SCEPC_MD_SHA256, &F.csr), SCEPC_OK);
    n = i2d_X509_REQ(F.csr, &der);
    assert_true(n > 0);
    F.csr_der = der;
    F.csr_len = (size_t)n;
    assert_non_null(sk);
    assert_true(sk_X509_push(sk, F.ca));
    assert_true(sk_X509_push(sk, F.ra));
    assert_int_equal(scepc_caset_from_certs(sk, &F.set), SCEPC_OK);
    assert_ptr_equal(scepc_caset_recipient(F.set), F.ra);
    sk_X509_free(sk);
    X509_NAME_free(subj);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    scepc_caset_destroy(F.set);
    OPENSSL_free(F.csr_der);
    X509_REQ_free(F.csr);
    X509_free(F.ca);
    X509_free(F.ra);
    X509_free(F.other);
    X509_free(F.client);
    X509_free(F.ec_client);
    EVP_PKEY_free(F.ca_key);
    EVP_PKEY_free(F.ra_key);
    EVP_PKEY_free(F.client_key);
    EVP_PKEY_free(F.other_key);
    EVP_PKEY_free(F.ec_key);
    scepc_ctx_destroy(F.ctx);
    EVP_CIPHER_free(F.des);
    OSSL_PROVIDER_unload(F.legacy);
    OSSL_PROVIDER_unload(F.deflt);
    return 0;
}

/* ---- message builders ---- */

/* A PKCSReq as the project's client builds it. */
static void client_msg(scepc_md md, scepc_cipher cipher, X509 *signer, EVP_PKEY *key,
                       int corrupt, uint8_t **der, size_t *len, scepc_txn *txn)
{
    scepc_msg_params p;
    memset(&p, 0, sizeof(p));
    p.msgtype = SCEPC_MSG_PKCSREQ;
    p.csr = F.csr;
    p.signer_cert = signer;
    p.signer_key = key;
    p.ca = F.set;
    p.md = md;
    p.cipher = cipher;
    p.corrupt_signature = corrupt;
    assert_int_equal(scepc_build_pkimessage(F.ctx, &p, der, len, txn), SCEPC_OK);
}

/* DER EnvelopedData of content to recipient with cipher. */
static void make_envelope(const EVP_CIPHER *cipher, X509 *recipient, const uint8_t *content,
                          size_t len, uint8_t **out, size_t *outlen)
{
    STACK_OF(X509) *r = sk_X509_new_null();
    BIO *in = BIO_new_mem_buf(content, (int)len);
    unsigned char *der = NULL;

    assert_non_null(r);
    assert_non_null(in);
    assert_true(sk_X509_push(r, recipient));
    CMS_ContentInfo *env = CMS_encrypt(r, in, cipher, CMS_BINARY);
    assert_non_null(env);
    int n = i2d_CMS_ContentInfo(env, &der);
    assert_true(n > 0);
    *out = der;
    *outlen = (size_t)n;
    CMS_ContentInfo_free(env);
    BIO_free(in);
    sk_X509_free(r);
}

/* Knobs for a hand-built pkiMessage; zero means "as a correct client would". */
typedef struct msg_opts {
    const EVP_MD *md;              /* NULL: SHA-256 */
    int no_txid, no_nonce, no_msgtype;
    int nonce_len;                 /* 0: 16 */
    int nonce_printable;           /* senderNonce as a PrintableString instead of OCTET STRING */
    const char *txid;              /* NULL: "TXID-1" */
    size_t txid_len;               /* 0: strlen(txid) (set it for a txid with a NUL) */
    const char *msgtype;           /* NULL: "19" */
    int no_cert;                   /* leave the signer certificate out */
    X509 *extra_cert;              /* an unrelated certificate to carry instead */
    int two_signers;
    const uint8_t *content;        /* eContent (NULL: empty) */
    size_t content_len;
} msg_opts;

static const uint8_t NONCE[32] = { 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                   0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xf0, 0x01,
                                   0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09 };

static void add_attrs(CMS_SignerInfo *si, const msg_opts *o)
{
    const char *txid = o->txid != NULL ? o->txid : "TXID-1";
    const char *mt = o->msgtype != NULL ? o->msgtype : "19";
    int nlen = o->nonce_len != 0 ? o->nonce_len : SCEP_NONCE_LEN;

    size_t tlen = o->txid_len != 0 ? o->txid_len : strlen(txid);

    if (!o->no_txid)
        assert_int_equal(CMS_signed_add1_attr_by_NID(si, F.oids->transaction_id,
                                                     V_ASN1_PRINTABLESTRING, txid,
                                                     (int)tlen), 1);
    if (!o->no_msgtype)
        assert_int_equal(CMS_signed_add1_attr_by_NID(si, F.oids->message_type,
                                                     V_ASN1_PRINTABLESTRING, mt,
                                                     (int)strlen(mt)), 1);
    if (!o->no_nonce)
        assert_int_equal(CMS_signed_add1_attr_by_NID(si, F.oids->sender_nonce,
                                                     o->nonce_printable ? V_ASN1_PRINTABLESTRING
                                                                        : V_ASN1_OCTET_STRING,
                                                     o->nonce_printable ? (const void *)"ABCDEFGHIJKLMNOP"
                                                                        : (const void *)NONCE,
                                                     nlen), 1);
}

static void build_msg(const msg_opts *o, uint8_t **out, size_t *outlen)
{
    const unsigned int flags = CMS_BINARY | CMS_PARTIAL | CMS_NOSMIMECAP;
    const EVP_MD *md = o->md != NULL ? o->md : EVP_sha256();
    unsigned char *der = NULL;
    CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
    assert_non_null(cms);
    CMS_SignerInfo *si = CMS_add1_signer(cms, F.client, F.client_key, md,
                                         flags | (o->no_cert ? CMS_NOCERTS : 0));
    assert_non_null(si);
    add_attrs(si, o);
    if (o->two_signers) {
        si = CMS_add1_signer(cms, F.other, F.other_key, md, flags);
        assert_non_null(si);
        add_attrs(si, o);
    }
    if (o->extra_cert != NULL)
        assert_true(CMS_add1_cert(cms, o->extra_cert));
    BIO *in = BIO_new_mem_buf(o->content != NULL ? (const void *)o->content : (const void *)"",
                              (int)o->content_len);
    assert_non_null(in);
    assert_int_equal(CMS_final(cms, in, NULL, CMS_BINARY), 1);
    int n = i2d_CMS_ContentInfo(cms, &der);
    assert_true(n > 0);
    *out = der;
    *outlen = (size_t)n;
    BIO_free(in);
    CMS_ContentInfo_free(cms);
}

static int parse_opts(const msg_opts *o, int allow_sha1, scep_request *req)
{
    uint8_t *der = NULL;
    size_t len = 0;
    build_msg(o, &der, &len);
    int rc = scep_parse(der, len, allow_sha1, req);
    OPENSSL_free(der);
    return rc;
}

/* Parses a client-built message and opens it; asserts both succeed. */
static void parse_and_open(scepc_md md, scepc_cipher cipher, X509 *signer, EVP_PKEY *key,
                           scep_request *req, scepc_txn *txn)
{
    uint8_t *der = NULL;
    size_t len = 0;
    client_msg(md, cipher, signer, key, 0, &der, &len, txn);
    assert_int_equal(scep_parse(der, len, 0, req), REJ_NONE);
    assert_int_equal(scep_open_envelope(req, F.ra_key, F.ra, 0), REJ_NONE);
    scepc_free(der);
}

/* ---- scep_parse ---- */

static void test_parse_valid_pkcsreq(void **state)
{
    uint8_t *der = NULL;
    size_t len = 0;
    scepc_txn txn;
    scep_request req;

    (void)state;
    client_msg(SCEPC_MD_SHA256, SCEPC_CIPHER_AES128, F.client, F.client_key, 0, &der, &len,
               &txn);
    assert_int_equal(scep_parse(der, len, 0, &req), REJ_NONE);
    assert_int_equal(req.msg_type, SCEP_MSG_PKCSREQ);
    assert_int_equal(req.txid_len, strlen(txn.txid));
    assert_memory_equal(req.txid, txn.txid, req.txid_len);
    assert_int_equal(req.has_nonce, 1);
    assert_memory_equal(req.sender_nonce, txn.sender_nonce, SCEP_NONCE_LEN);
    assert_int_equal(req.sig_md_nid, NID_sha256);
    assert_non_null(req.signer);
    assert_int_equal(X509_cmp(req.signer, F.client), 0);
    assert_non_null(req.cms);
    assert_non_null(req.envelope);
    assert_true(req.envelope_len > 0);
    assert_null(req.inner);
    /* The eContent is the EnvelopedData the client made. */
    const unsigned char *p = req.envelope;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)req.envelope_len);
    assert_non_null(p7);
    assert_true(PKCS7_type_is_enveloped(p7));
    PKCS7_free(p7);
    scep_request_clear(&req);
    assert_null(req.cms);
    assert_null(req.signer);
    assert_null(req.envelope);
    assert_int_equal(req.msg_type, -1);
    scep_request_clear(NULL);
    scepc_free(der);
}

static void test_parse_unknown_type_parses(void **state)
{
    /* The type number is the caller's business: parse reports it as sent. */
    scep_request req;
    msg_opts o = { .msgtype = "99" };
    (void)state;
    assert_int_equal(parse_opts(&o, 0, &req), REJ_NONE);
    assert_int_equal(req.msg_type, 99);
    assert_int_equal(req.txid_len, 6);
    assert_memory_equal(req.txid, "TXID-1", 6);
    assert_memory_equal(req.sender_nonce, NONCE, SCEP_NONCE_LEN);
    assert_null(req.envelope);         /* empty eContent: no envelope */
    scep_request_clear(&req);
}

static void test_parse_not_pkimessage(void **state)
{
    uint8_t *der = NULL, *buf = NULL;
    size_t len = 0;
    scepc_txn txn;
    scep_request req;
    static const uint8_t garbage[] = "this is not DER at all, just text";
    static const uint8_t seq[] = { 0x30, 0x03, 0x02, 0x01, 0x05 };

    (void)state;
    assert_int_equal(scep_parse(garbage, sizeof(garbage) - 1, 0, &req), REJ_NOT_PKIMESSAGE);
    scep_request_clear(&req);
    assert_int_equal(scep_parse(seq, sizeof(seq), 0, &req), REJ_NOT_PKIMESSAGE);
    scep_request_clear(&req);
    assert_int_equal(scep_parse(garbage, 0, 0, &req), REJ_NOT_PKIMESSAGE);
    scep_request_clear(&req);

    client_msg(SCEPC_MD_SHA256, SCEPC_CIPHER_AES128, F.client, F.client_key, 0, &der, &len,
               &txn);
    /* Truncated by one byte, and to half. */
    assert_int_equal(scep_parse(der, len - 1, 0, &req), REJ_NOT_PKIMESSAGE);
    scep_request_clear(&req);
    assert_int_equal(scep_parse(der, len / 2, 0, &req), REJ_NOT_PKIMESSAGE);
    scep_request_clear(&req);
    /* Trailing bytes after a valid message. */
    buf = malloc(len + 1);
    assert_non_null(buf);
    memcpy(buf, der, len);
    buf[len] = 0;
    assert_int_equal(scep_parse(buf, len + 1, 0, &req), REJ_NOT_PKIMESSAGE);
    scep_request_clear(&req);
    /* The message itself is still good. */
    assert_int_equal(scep_parse(buf, len, 0, &req), REJ_NONE);
    /* An EnvelopedData where a SignedData belongs. */
    uint8_t *env = malloc(req.envelope_len);
    size_t envlen = req.envelope_len;
    assert_non_null(env);
    memcpy(env, req.envelope, envlen);
    scep_request_clear(&req);
    assert_int_equal(scep_parse(env, envlen, 0, &req), REJ_NOT_PKIMESSAGE);
    scep_request_clear(&req);
    free(env);
    free(buf);
    scepc_free(der);
}

static void test_parse_two_signers(void **state)
{
    scep_request req;
    msg_opts o = { .two_signers = 1 };
    (void)state;
    assert_int_equal(parse_opts(&o, 0, &req), REJ_NOT_PKIMESSAGE);
    scep_request_clear(&req);
}

static void test_parse_missing_attrs(void **state)
{
    scep_request req;
    char longtxid[SCEP_TXID_MAX + 2];
    (void)state;

    const msg_opts cases[] = {
        { .no_txid = 1 },
        { .no_nonce = 1 },
        { .no_msgtype = 1 },
        { .nonce_len = 8 },
        { .nonce_len = 17 },
        { .nonce_printable = 1 },      /* right length, wrong type */
        { .msgtype = "PKCSReq" },
        { .msgtype = "1x" },
        { .msgtype = "" },
        { .msgtype = "12345" },        /* longer than any type number */
        { .txid = "" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = parse_opts(&cases[i], 0, &req);
        if (rc != REJ_MISSING_ATTR)
            fail_msg("case %zu: got %s", i, reject_diag(rc));
        scep_request_clear(&req);
    }
    /* The longest accepted transactionID, and every printable byte. */
    memset(longtxid, 'A', sizeof(longtxid) - 1);
    longtxid[SCEP_TXID_MAX] = '\0';
    msg_opts ok = { .txid = longtxid };
    assert_int_equal(parse_opts(&ok, 0, &req), REJ_NONE);
    assert_int_equal(req.txid_len, SCEP_TXID_MAX);
    assert_string_equal(req.txid, longtxid);
    scep_request_clear(&req);
    char all[0x7f - 0x20 + 1];
    for (int c = 0x20; c < 0x7f; c++)
        all[c - 0x20] = (char)c;
    all[sizeof(all) - 1] = '\0';
    ok.txid = all;
    assert_int_equal(parse_opts(&ok, 0, &req), REJ_NONE);
    assert_string_equal(req.txid, all);
    scep_request_clear(&req);
}

/* A transactionID that is too long or not printable ASCII is refused, never cut: before,
 * "AB\0CD" was the transaction "AB" and 129 bytes were "missing". The CertRep echoes the
 * bytes as sent; req->txid only shows them for the audit log. */
static void test_parse_bad_txid(void **state)
{
    scep_request req;
    char longtxid[SCEP_TXID_MAX + 2];
    uint8_t *rep = NULL;
    size_t rep_len = 0;
    (void)state;

    memset(longtxid, 'A', sizeof(longtxid) - 1);
    longtxid[sizeof(longtxid) - 1] = '\0';
    const struct { msg_opts o; const char *shown; } cases[] = {
        { { .txid = "AB\0CD", .txid_len = 5 }, "AB?CD" },
        { { .txid = "\0" , .txid_len = 1 }, "?" },
        { { .txid = "tx\001id" }, "tx?id" },
        { { .txid = "tx\nid" }, "tx?id" },
        { { .txid = "tx\177id" }, "tx?id" },
        { { .txid = "tx\303\251" }, "tx??" },          /* UTF-8 e-acute: not ASCII */
        { { .txid = longtxid }, NULL },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = parse_opts(&cases[i].o, 0, &req);
        if (rc != REJ_BAD_TXID)
            fail_msg("case %zu: got %s", i, reject_diag(rc));
        assert_int_equal(strlen(req.txid), req.txid_len);
        if (cases[i].shown != NULL) {
            assert_string_equal(req.txid, cases[i].shown);
        } else {
            assert_int_equal(req.txid_len, SCEP_TXID_MAX);
            assert_memory_equal(req.txid, longtxid, SCEP_TXID_MAX - 3);
            assert_string_equal(req.txid + SCEP_TXID_MAX - 3, "...");
        }
        /* The FAILURE echoes the transactionID byte for byte. */
        assert_int_equal(scep_certrep(&req, SCEP_FAILURE, reject_failinfo(rc), reject_text(rc),
                                      NULL, F.ra_key, F.ra, &rep, &rep_len), 0);
        const unsigned char *p = rep;
        CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)rep_len);
        assert_non_null(cms);
        CMS_SignerInfo *si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
        X509_ATTRIBUTE *a = CMS_signed_get_attr(
            si, CMS_signed_get_attr_by_NID(si, F.oids->transaction_id, -1));
        assert_non_null(a);
        ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(a, 0);
        size_t want = cases[i].o.txid_len != 0 ? cases[i].o.txid_len : strlen(cases[i].o.txid);
        assert_int_equal(t->value.asn1_string->length, (int)want);
        assert_memory_equal(t->value.asn1_string->data, cases[i].o.txid, want);
        CMS_ContentInfo_free(cms);
        free(rep);
        rep = NULL;
        scep_request_clear(&req);
    }
}

static void test_parse_missing_attrs_still_echoed(void **state)
{
    /* A FAILURE must echo what did arrive: the nonce survives a missing transactionID. */
    scep_request req;
    msg_opts o = { .no_txid = 1 };
    (void)state;
    assert_int_equal(parse_opts(&o, 0, &req), REJ_MISSING_ATTR);
    assert_int_equal(req.has_nonce, 1);
    assert_memory_equal(req.sender_nonce, NONCE, SCEP_NONCE_LEN);
    assert_int_equal(req.msg_type, 19);
    scep_request_clear(&req);
}

static void test_parse_no_signer_cert(void **state)
{
    scep_request req;
    msg_opts o = { .no_cert = 1 };
    (void)state;
    assert_int_equal(parse_opts(&o, 0, &req), REJ_NO_SIGNER_CERT);
    assert_null(req.signer);
    scep_request_clear(&req);
    /* Some certificate, but not the signer's. */
    msg_opts o2 = { .no_cert = 1, .extra_cert = F.other };
    assert_int_equal(parse_opts(&o2, 0, &req), REJ_NO_SIGNER_CERT);
    scep_request_clear(&req);
}

static void test_parse_digests(void **state)
{
    uint8_t *der = NULL;
    size_t len = 0;
    scepc_txn txn;
    scep_request req;
    (void)state;

    client_msg(SCEPC_MD_SHA1, SCEPC_CIPHER_AES128, F.client, F.client_key, 0, &der, &len, &txn);
    assert_int_equal(scep_parse(der, len, 0, &req), REJ_SIG_DIGEST);
    scep_request_clear(&req);
    assert_int_equal(scep_parse(der, len, 1, &req), REJ_NONE);
    assert_int_equal(req.sig_md_nid, NID_sha1);
    scep_request_clear(&req);
    scepc_free(der);

    const scepc_md good[] = { SCEPC_MD_SHA384, SCEPC_MD_SHA512 };
    const int good_nid[] = { NID_sha384, NID_sha512 };
    for (size_t i = 0; i < 2; i++) {
        client_msg(good[i], SCEPC_CIPHER_AES128, F.client, F.client_key, 0, &der, &len, &txn);
        assert_int_equal(scep_parse(der, len, 0, &req), REJ_NONE);
        assert_int_equal(req.sig_md_nid, good_nid[i]);
        scep_request_clear(&req);
        scepc_free(der);
    }

    msg_opts md5 = { .md = EVP_md5() };
    assert_int_equal(parse_opts(&md5, 0, &req), REJ_SIG_DIGEST);
    scep_request_clear(&req);
    assert_int_equal(parse_opts(&md5, 1, &req), REJ_SIG_DIGEST);
    scep_request_clear(&req);
    msg_opts sha224 = { .md = EVP_sha224() };
    assert_int_equal(parse_opts(&sha224, 1, &req), REJ_SIG_DIGEST);
    scep_request_clear(&req);
}

static void test_parse_bad_signature(void **state)
{
    uint8_t *der = NULL;
    size_t len = 0;
    scepc_txn txn;
    scep_request req;
    scepc_msg_params p;
    (void)state;

    client_msg(SCEPC_MD_SHA256, SCEPC_CIPHER_AES128, F.client, F.client_key, 1, &der, &len,
               &txn);
    assert_int_equal(scep_parse(der, len, 0, &req), REJ_BAD_SIGNATURE);
    assert_null(req.envelope);
    scep_request_clear(&req);
    scepc_free(der);

    /* Signed by another key while naming the included certificate. */
    memset(&p, 0, sizeof(p));
    p.msgtype = SCEPC_MSG_PKCSREQ;
    p.csr = F.csr;
    p.signer_cert = F.client;
    p.signer_key = F.client_key;
    p.wrong_key = F.other_key;
    p.ca = F.set;
    p.md = SCEPC_MD_SHA256;
    assert_int_equal(scepc_build_pkimessage(F.ctx, &p, &der, &len, &txn), SCEPC_OK);
    assert_int_equal(scep_parse(der, len, 0, &req), REJ_BAD_SIGNATURE);
    scep_request_clear(&req);
    scepc_free(der);

    /* Content changed after signing: the messageDigest attribute no longer matches. */
    uint8_t content[64];
    memset(content, 'A', sizeof(content));
    msg_opts o = { .content = content, .content_len = sizeof(content) };
    build_msg(&o, &der, &len);
    uint8_t *hit = NULL;
    for (size_t i = 0; i + sizeof(content) <= len; i++)
        if (memcmp(der + i, content, sizeof(content)) == 0) {
            hit = der + i;
            break;
        }
    assert_non_null(hit);
    hit[10] ^= 1;
    assert_int_equal(scep_parse(der, len, 0, &req), REJ_BAD_SIGNATURE);
    scep_request_clear(&req);
    OPENSSL_free(der);
}

/* ---- scep_open_envelope ---- */

static void test_open_ciphers(void **state)
{
    static const struct { scepc_cipher c; int nid; } cases[] = {
        { SCEPC_CIPHER_AES128, NID_aes_128_cbc },
        { SCEPC_CIPHER_AES192, NID_aes_192_cbc },
        { SCEPC_CIPHER_AES256, NID_aes_256_cbc },
        { SCEPC_CIPHER_DES3, NID_des_ede3_cbc },
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        scep_request req;
        scepc_txn txn;
        parse_and_open(SCEPC_MD_SHA256, cases[i].c, F.client, F.client_key, &req, &txn);
        assert_int_equal(req.cipher_nid, cases[i].nid);
        assert_int_equal(req.inner_len, F.csr_len);
        assert_memory_equal(req.inner, F.csr_der, F.csr_len);
        scep_request_clear(&req);
        assert_null(req.inner);
    }
}

/* Single DES (a profile's allow_des) can only be exercised with OpenSSL's legacy provider
 * (ossl-modules/legacy.so, shipped with libssl3, which scepd loads when a profile allows DES): without
 * it these tests fail instead of passing as skipped. */
static void need_des(void)
{
    if (F.des == NULL)
        fail_msg("DES-CBC unavailable: OpenSSL's legacy provider did not load (%s)",
                 F.legacy == NULL ? "OSSL_PROVIDER_load(\"legacy\") failed" : "no DES-CBC in it");
}

static void test_open_single_des(void **state)
{
    uint8_t *env = NULL, *der = NULL;
    size_t envlen = 0, len = 0;
    scep_request req;
    (void)state;

    need_des();
    make_envelope(F.des, F.ra, F.csr_der, F.csr_len, &env, &envlen);
    msg_opts o = { .content = env, .content_len = envlen };
    build_msg(&o, &der, &len);

    assert_int_equal(scep_parse(der, len, 0, &req), REJ_NONE);
    assert_int_equal(scep_open_envelope(&req, F.ra_key, F.ra, 0), REJ_CIPHER);
    assert_null(req.inner);
    scep_request_clear(&req);

    assert_int_equal(scep_parse(der, len, 0, &req), REJ_NONE);
    assert_int_equal(scep_open_envelope(&req, F.ra_key, F.ra, 1), REJ_NONE);
    assert_int_equal(req.cipher_nid, NID_des_cbc);
    assert_int_equal(req.inner_len, F.csr_len);
    assert_memory_equal(req.inner, F.csr_der, F.csr_len);
    scep_request_clear(&req);
    OPENSSL_free(der);
    OPENSSL_free(env);
}

static void test_open_other_cipher(void **state)
{
    /* Neither AES-CBC nor DES3 nor (allowed) DES: refused whatever allow_des says. */
    uint8_t *env = NULL, *der = NULL;
    size_t envlen = 0, len = 0;
    scep_request req;
    (void)state;

    make_envelope(EVP_camellia_128_cbc(), F.ra, F.csr_der, F.csr_len, &env, &envlen);
    msg_opts o = { .content = env, .content_len = envlen };
    build_msg(&o, &der, &len);
    for (int allow_des = 0; allow_des <= 1; allow_des++) {
        assert_int_equal(scep_parse(der, len, 0, &req), REJ_NONE);
        assert_int_equal(scep_open_envelope(&req, F.ra_key, F.ra, allow_des), REJ_CIPHER);
        scep_request_clear(&req);
    }
    OPENSSL_free(der);
    OPENSSL_free(env);
}

static void test_open_other_recipient(void **state)
{
    uint8_t *env = NULL, *der = NULL;
    size_t envlen = 0, len = 0;
    scep_request req;
    (void)state;

    make_envelope(EVP_aes_128_cbc(), F.other, F.csr_der, F.csr_len, &env, &envlen);
    msg_opts o = { .content = env, .content_len = envlen };
    build_msg(&o, &der, &len);
    assert_int_equal(scep_parse(der, len, 0, &req), REJ_NONE);
    assert_int_equal(scep_open_envelope(&req, F.ra_key, F.ra, 0), REJ_DECRYPT);
    assert_null(req.inner);
    scep_request_clear(&req);
    /* Our certificate but another key (a mismatched RA key/cert pair). */
    OPENSSL_free(env);
    make_envelope(EVP_aes_128_cbc(), F.ra, F.csr_der, F.csr_len, &env, &envlen);
    OPENSSL_free(der);
    o.content = env;
    o.content_len = envlen;
    build_msg(&o, &der, &len);
    assert_int_equal(scep_parse(der, len, 0, &req), REJ_NONE);
    assert_int_equal(scep_open_envelope(&req, F.other_key, F.ra, 0), REJ_DECRYPT);
    scep_request_clear(&req);
    OPENSSL_free(der);
    OPENSSL_free(env);
}

static void test_open_no_envelope(void **state)
{
    scep_request req;
    (void)state;

    /* Empty eContent. */
    msg_opts o = { 0 };
    assert_int_equal(parse_opts(&o, 0, &req), REJ_NONE);
    assert_null(req.envelope);
    assert_int_equal(scep_open_envelope(&req, F.ra_key, F.ra, 0), REJ_NO_ENVELOPE);
    scep_request_clear(&req);
    /* eContent that is a bare CSR, not an EnvelopedData. */
    msg_opts o2 = { .content = F.csr_der, .content_len = F.csr_len };
    assert_int_equal(parse_opts(&o2, 0, &req), REJ_NONE);
    assert_non_null(req.envelope);
    assert_int_equal(scep_open_envelope(&req, F.ra_key, F.ra, 0), REJ_NO_ENVELOPE);
    scep_request_clear(&req);
    /* eContent that is a SignedData (a pkiMessage inside a pkiMessage). */
    uint8_t *inner = NULL;
    size_t inner_len = 0;
    msg_opts o3 = { 0 };
    build_msg(&o3, &inner, &inner_len);
    msg_opts o4 = { .content = inner, .content_len = inner_len };
    assert_int_equal(parse_opts(&o4, 0, &req), REJ_NONE);
    assert_int_equal(scep_open_envelope(&req, F.ra_key, F.ra, 0), REJ_NO_ENVELOPE);
    scep_request_clear(&req);
    OPENSSL_free(inner);
}

/* ---- scep_certrep ---- */

static CMS_SignerInfo *only_signer(CMS_ContentInfo *cms)
{
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
    assert_non_null(sis);
    assert_int_equal(sk_CMS_SignerInfo_num(sis), 1);
    return sk_CMS_SignerInfo_value(sis, 0);
}

/* The content-encryption algorithm of a SUCCESS CertRep's envelope, and its digest. */
static void certrep_algs(const uint8_t *der, size_t len, int *cipher_nid, int *md_nid)
{
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    assert_non_null(cms);
    X509_ALGOR *dig = NULL;
    CMS_SignerInfo_get0_algs(only_signer(cms), NULL, NULL, &dig, NULL);
    assert_non_null(dig);
    *md_nid = OBJ_obj2nid(dig->algorithm);
    *cipher_nid = NID_undef;
    ASN1_OCTET_STRING **c = CMS_get0_content(cms);
    if (c != NULL && *c != NULL && (*c)->length > 0) {
        const unsigned char *q = (*c)->data;
        PKCS7 *p7 = d2i_PKCS7(NULL, &q, (*c)->length);
        assert_non_null(p7);
        assert_true(PKCS7_type_is_enveloped(p7));
        *cipher_nid = OBJ_obj2nid(p7->d.enveloped->enc_data->algorithm->algorithm);
        PKCS7_free(p7);
    }
    CMS_ContentInfo_free(cms);
}

static int certrep_has_content(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    assert_non_null(cms);
    ASN1_OCTET_STRING **c = CMS_get0_content(cms);
    int has = c != NULL && *c != NULL && (*c)->length > 0;
    CMS_ContentInfo_free(cms);
    return has;
}

static X509 *issued_for(EVP_PKEY *key)
{
    return make_cert("/CN=device-1/O=fleet", key, F.ca, F.ca_key, 0, "critical,digitalSignature");
}

static void test_certrep_success(void **state)
{
    static const struct { scepc_cipher c; int nid; scepc_md md; int md_nid; } cases[] = {
        { SCEPC_CIPHER_AES128, NID_aes_128_cbc, SCEPC_MD_SHA256, NID_sha256 },
        { SCEPC_CIPHER_AES192, NID_aes_192_cbc, SCEPC_MD_SHA384, NID_sha384 },
        { SCEPC_CIPHER_AES256, NID_aes_256_cbc, SCEPC_MD_SHA512, NID_sha512 },
        { SCEPC_CIPHER_DES3, NID_des_ede3_cbc, SCEPC_MD_SHA256, NID_sha256 },
    };
    X509 *issued = issued_for(F.client_key);
    STACK_OF(X509) *certs = sk_X509_new_null();
    (void)state;

    assert_non_null(certs);
    assert_true(sk_X509_push(certs, issued));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        scep_request req;
        scepc_txn txn;
        uint8_t *rep = NULL;
        size_t replen = 0;
        scepc_result res;
        int cipher_nid, md_nid;

        parse_and_open(cases[i].md, cases[i].c, F.client, F.client_key, &req, &txn);
        assert_int_equal(scep_certrep(&req, SCEP_SUCCESS, SCEP_FAIL_NONE, NULL, certs,
                                      F.ra_key, F.ra, &rep, &replen), 0);
        scepc_expect exp = { .txn = &txn, .signer_cert = F.client, .signer_key = F.client_key,
                             .subject_key = F.client_key };
        /* Checks signer, signature, messageType, txid echo, recipientNonce and a 16-byte
         * senderNonce, then decrypts with the client's key. */
        assert_int_equal(scepc_parse_certrep(F.ctx, rep, replen, F.set, &exp, &res), SCEPC_OK);
        assert_int_equal(res.status, SCEPC_SUCCESS);
        assert_int_equal(res.failinfo, SCEPC_FAIL_NONE);
        assert_non_null(res.cert);
        assert_int_equal(X509_cmp(res.cert, issued), 0);
        assert_int_equal(sk_X509_num(res.certs), 1);
        assert_memory_not_equal(res.server_nonce, txn.sender_nonce, SCEP_NONCE_LEN);
        certrep_algs(rep, replen, &cipher_nid, &md_nid);
        assert_int_equal(cipher_nid, cases[i].nid);
        assert_int_equal(md_nid, cases[i].md_nid);
        scepc_result_clear(&res);
        free(rep);
        scep_request_clear(&req);
    }
    sk_X509_free(certs);
    X509_free(issued);
}

static void test_certrep_success_ec_signer(void **state)
{
    /* An EC transient signer: the reply envelope uses key agreement instead of transport. */
    X509 *issued = issued_for(F.ec_key);
    STACK_OF(X509) *certs = sk_X509_new_null();
    scep_request req;
    scepc_txn txn;
    uint8_t *rep = NULL;
    size_t replen = 0;
    scepc_result res;
    (void)state;

    assert_true(sk_X509_push(certs, issued));
    assert_true(sk_X509_push(certs, F.ca));
    parse_and_open(SCEPC_MD_SHA256, SCEPC_CIPHER_AES256, F.ec_client, F.ec_key, &req, &txn);
    assert_int_equal(scep_certrep(&req, SCEP_SUCCESS, SCEP_FAIL_NONE, NULL, certs, F.ra_key,
                                  F.ra, &rep, &replen), 0);
    scepc_expect exp = { .txn = &txn, .signer_cert = F.ec_client, .signer_key = F.ec_key,
                         .subject_key = F.ec_key };
    assert_int_equal(scepc_parse_certrep(F.ctx, rep, replen, F.set, &exp, &res), SCEPC_OK);
    assert_int_equal(res.status, SCEPC_SUCCESS);
    assert_int_equal(sk_X509_num(res.certs), 2);
    assert_int_equal(X509_cmp(res.cert, issued), 0);
    scepc_result_clear(&res);
    free(rep);
    scep_request_clear(&req);
    sk_X509_free(certs);
    X509_free(issued);
}

static void test_certrep_des_request_gets_des3(void **state)
{
    uint8_t *env = NULL, *der = NULL, *rep = NULL;
    size_t envlen = 0, len = 0, replen = 0;
    scep_request req;
    int cipher_nid, md_nid;
    (void)state;

    need_des();
    X509 *issued = issued_for(F.client_key);
    STACK_OF(X509) *certs = sk_X509_new_null();
    assert_true(sk_X509_push(certs, issued));
    make_envelope(F.des, F.ra, F.csr_der, F.csr_len, &env, &envlen);
    msg_opts o = { .content = env, .content_len = envlen, .md = EVP_sha1() };
    build_msg(&o, &der, &len);
    assert_int_equal(scep_parse(der, len, 1, &req), REJ_NONE);
    assert_int_equal(scep_open_envelope(&req, F.ra_key, F.ra, 1), REJ_NONE);
    assert_int_equal(scep_certrep(&req, SCEP_SUCCESS, SCEP_FAIL_NONE, NULL, certs, F.ra_key,
                                  F.ra, &rep, &replen), 0);
    certrep_algs(rep, replen, &cipher_nid, &md_nid);
    assert_int_equal(cipher_nid, NID_des_ede3_cbc);   /* never single DES */
    assert_int_equal(md_nid, NID_sha256);             /* never SHA-1 */
    free(rep);
    scep_request_clear(&req);
    OPENSSL_free(der);
    OPENSSL_free(env);
    sk_X509_free(certs);
    X509_free(issued);
}

static void test_certrep_failure(void **state)
{
    scep_request req;
    scepc_txn txn;
    uint8_t *rep = NULL;
    size_t replen = 0;
    scepc_result res;
    (void)state;

    parse_and_open(SCEPC_MD_SHA256, SCEPC_CIPHER_AES128, F.client, F.client_key, &req, &txn);
    assert_int_equal(scep_certrep(&req, SCEP_FAILURE, SCEP_FAIL_BADREQUEST,
                                  reject_text(REJ_CHALLENGE), NULL, F.ra_key, F.ra, &rep,
                                  &replen), 0);
    assert_false(certrep_has_content(rep, replen));
    scepc_expect exp = { .txn = &txn, .signer_cert = F.client, .signer_key = F.client_key };
    assert_int_equal(scepc_parse_certrep(F.ctx, rep, replen, F.set, &exp, &res), SCEPC_OK);
    assert_int_equal(res.status, SCEPC_FAILURE);
    assert_int_equal(res.failinfo, SCEPC_FAIL_BADREQUEST);
    assert_non_null(res.failinfo_text);
    assert_string_equal(res.failinfo_text, reject_text(REJ_CHALLENGE));
    assert_null(res.certs);
    scepc_result_clear(&res);
    free(rep);

    /* Every failInfo value, without failInfoText. */
    for (int fi = SCEP_FAIL_BADALG; fi <= SCEP_FAIL_BADCERTID; fi++) {
        assert_int_equal(scep_certrep(&req, SCEP_FAILURE, fi, NULL, NULL, F.ra_key, F.ra, &rep,
                                      &replen), 0);
        assert_int_equal(scepc_parse_certrep(F.ctx, rep, replen, F.set, &exp, &res), SCEPC_OK);
        assert_int_equal(res.status, SCEPC_FAILURE);
        assert_int_equal(res.failinfo, fi);
        assert_null(res.failinfo_text);
        scepc_result_clear(&res);
        free(rep);
    }
    scep_request_clear(&req);
}

static void test_certrep_failure_after_failed_parse(void **state)
{
    /* A message that failed its signature check is still answered, echoing txid/nonce. */
    uint8_t *der = NULL, *rep = NULL;
    size_t len = 0, replen = 0;
    scepc_txn txn;
    scep_request req;
    scepc_result res;
    (void)state;

    client_msg(SCEPC_MD_SHA256, SCEPC_CIPHER_AES128, F.client, F.client_key, 1, &der, &len,
               &txn);
    assert_int_equal(scep_parse(der, len, 0, &req), REJ_BAD_SIGNATURE);
    assert_int_equal(scep_certrep(&req, SCEP_FAILURE, reject_failinfo(REJ_BAD_SIGNATURE),
                                  reject_text(REJ_BAD_SIGNATURE), NULL, F.ra_key, F.ra, &rep,
                                  &replen), 0);
    scepc_expect exp = { .txn = &txn, .signer_cert = F.client, .signer_key = F.client_key };
    assert_int_equal(scepc_parse_certrep(F.ctx, rep, replen, F.set, &exp, &res), SCEPC_OK);
    assert_int_equal(res.failinfo, SCEPC_FAIL_BADMESSAGECHECK);
    scepc_result_clear(&res);
    free(rep);
    scep_request_clear(&req);
    scepc_free(der);
}

static void test_certrep_pending(void **state)
{
    scep_request req;
    scepc_txn txn;
    uint8_t *rep = NULL;
    size_t replen = 0;
    scepc_result res;
    (void)state;

    parse_and_open(SCEPC_MD_SHA256, SCEPC_CIPHER_AES128, F.client, F.client_key, &req, &txn);
    assert_int_equal(scep_certrep(&req, SCEP_PENDING, SCEP_FAIL_NONE, NULL, NULL, F.ra_key,
                                  F.ra, &rep, &replen), 0);
    assert_false(certrep_has_content(rep, replen));
    scepc_expect exp = { .txn = &txn, .signer_cert = F.client, .signer_key = F.client_key };
    assert_int_equal(scepc_parse_certrep(F.ctx, rep, replen, F.set, &exp, &res), SCEPC_OK);
    assert_int_equal(res.status, SCEPC_PENDING);
    assert_int_equal(res.failinfo, SCEPC_FAIL_NONE);
    assert_null(res.certs);
    scepc_result_clear(&res);
    free(rep);
    scep_request_clear(&req);
}

static void test_certrep_fresh_nonces(void **state)
{
    scep_request req;
    scepc_txn txn;
    uint8_t *rep1 = NULL, *rep2 = NULL;
    size_t len1 = 0, len2 = 0;
    scepc_result r1, r2;
    (void)state;

    parse_and_open(SCEPC_MD_SHA256, SCEPC_CIPHER_AES128, F.client, F.client_key, &req, &txn);
    assert_int_equal(scep_certrep(&req, SCEP_PENDING, SCEP_FAIL_NONE, NULL, NULL, F.ra_key,
                                  F.ra, &rep1, &len1), 0);
    assert_int_equal(scep_certrep(&req, SCEP_PENDING, SCEP_FAIL_NONE, NULL, NULL, F.ra_key,
                                  F.ra, &rep2, &len2), 0);
    scepc_expect exp = { .txn = &txn, .signer_cert = F.client, .signer_key = F.client_key };
    assert_int_equal(scepc_parse_certrep(F.ctx, rep1, len1, F.set, &exp, &r1), SCEPC_OK);
    assert_int_equal(scepc_parse_certrep(F.ctx, rep2, len2, F.set, &exp, &r2), SCEPC_OK);
    assert_memory_not_equal(r1.server_nonce, r2.server_nonce, SCEP_NONCE_LEN);
    assert_memory_not_equal(r1.server_nonce, txn.sender_nonce, SCEP_NONCE_LEN);
    scepc_result_clear(&r1);
    scepc_result_clear(&r2);
    free(rep1);
    free(rep2);
    scep_request_clear(&req);
}

static void test_certrep_wrong_signer_detected(void **state)
{
    /* Guards the harness: a CertRep signed by another key must not pass the client check. */
    scep_request req;
    scepc_txn txn;
    uint8_t *rep = NULL;
    size_t replen = 0;
    scepc_result res;
    (void)state;

    parse_and_open(SCEPC_MD_SHA256, SCEPC_CIPHER_AES128, F.client, F.client_key, &req, &txn);
    assert_int_equal(scep_certrep(&req, SCEP_PENDING, SCEP_FAIL_NONE, NULL, NULL, F.other_key,
                                  F.other, &rep, &replen), 0);
    scepc_expect exp = { .txn = &txn, .signer_cert = F.client, .signer_key = F.client_key };
    assert_int_equal(scepc_parse_certrep(F.ctx, rep, replen, F.set, &exp, &res),
                     SCEPC_E_REP_SIGNER);
    free(rep);
    scep_request_clear(&req);
}

static void test_certrep_success_without_signer_fails(void **state)
{
    /* SUCCESS needs a recipient: a request without a signer certificate cannot get one. */
    scep_request req;
    uint8_t *rep = NULL;
    size_t replen = 0;
    msg_opts o = { .no_cert = 1 };
    X509 *issued = issued_for(F.client_key);
    STACK_OF(X509) *certs = sk_X509_new_null();
    (void)state;

    assert_true(sk_X509_push(certs, issued));
    assert_int_equal(parse_opts(&o, 0, &req), REJ_NO_SIGNER_CERT);
    assert_int_equal(scep_certrep(&req, SCEP_SUCCESS, SCEP_FAIL_NONE, NULL, certs, F.ra_key,
                                  F.ra, &rep, &replen), -1);
    assert_null(rep);
    scep_request_clear(&req);
    sk_X509_free(certs);
    X509_free(issued);
}

/* ---- scep_degenerate, names ---- */

static void test_degenerate(void **state)
{
    STACK_OF(X509) *certs = sk_X509_new_null();
    uint8_t *der = NULL;
    size_t len = 0;
    (void)state;

    assert_true(sk_X509_push(certs, F.ra));
    assert_true(sk_X509_push(certs, F.ca));
    assert_int_equal(scep_degenerate(certs, &der, &len), 0);
    const unsigned char *p = der;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)len);
    assert_non_null(p7);
    assert_ptr_equal(p, der + len);
    assert_true(PKCS7_type_is_signed(p7));
    assert_int_equal(sk_PKCS7_SIGNER_INFO_num(p7->d.sign->signer_info), 0);
    assert_int_equal(sk_X509_num(p7->d.sign->cert), 2);
    assert_int_equal(X509_cmp(sk_X509_value(p7->d.sign->cert, 0), F.ra), 0);
    assert_int_equal(X509_cmp(sk_X509_value(p7->d.sign->cert, 1), F.ca), 0);
    PKCS7_free(p7);
    /* RFC 8894 3.4: the content is omitted. SignedData's version and empty digestAlgorithms
     * are followed by encapContentInfo = SEQUENCE { id-data } and nothing else: no [0]
     * eContent (not even an empty OCTET STRING), then the certificates [0]. */
    static const uint8_t encap[] = {0x02, 0x01, 0x01, 0x31, 0x00, 0x30, 0x0b, 0x06, 0x09, 0x2a,
                                    0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0xa0};
    int found = 0;
    for (size_t i = 0; i + sizeof(encap) <= len; i++)
        found += memcmp(der + i, encap, sizeof(encap)) == 0;
    assert_int_equal(found, 1);
    free(der);

    /* Same through CMS: no eContent. */
    p = NULL;
    assert_int_equal(scep_degenerate(certs, &der, &len), 0);
    p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    assert_non_null(cms);
    ASN1_OCTET_STRING **content = CMS_get0_content(cms);
    assert_true(content == NULL || *content == NULL);
    CMS_ContentInfo_free(cms);
    free(der);

    /* The client's GetCACert parser agrees. */
    sk_X509_free(certs);
    certs = sk_X509_new_null();
    assert_true(sk_X509_push(certs, F.ca));
    assert_int_equal(scep_degenerate(certs, &der, &len), 0);
    scepc_caset *set = NULL;
    assert_int_equal(scepc_parse_cacert(der, len, "application/x-x509-ca-ra-cert", &set),
                     SCEPC_OK);
    assert_int_equal(X509_cmp(scepc_caset_ca(set), F.ca), 0);
    scepc_caset_destroy(set);
    free(der);
    sk_X509_free(certs);
}

static void test_failinfo_names(void **state)
{
    (void)state;
    assert_string_equal(scep_failinfo_name(SCEP_FAIL_BADALG), "badAlg");
    assert_string_equal(scep_failinfo_name(SCEP_FAIL_BADCERTID), "badCertId");
    assert_string_equal(scep_failinfo_name(SCEP_FAIL_NONE), "-");
    assert_string_equal(scep_failinfo_name(99), "-");
    assert_null(scep_cipher_for_nid(NID_des_cbc));
    assert_null(scep_cipher_for_nid(NID_aes_128_gcm));
    assert_non_null(scep_cipher_for_nid(NID_des_ede3_cbc));
}

/* A failed RSA unwrap and a successful one that yields garbage must be indistinguishable to
 * the client (no padding oracle for the RA key); only the audit diagnostics differ. */
static void test_no_padding_oracle(void **state)
{
    (void)state;
    const int same[] = {REJ_BAD_CSR, REJ_BAD_QUERY};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        assert_int_equal(reject_failinfo(same[i]), reject_failinfo(REJ_DECRYPT));
        assert_string_equal(reject_text(same[i]), reject_text(REJ_DECRYPT));
        assert_string_not_equal(reject_diag(same[i]), reject_diag(REJ_DECRYPT));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_padding_oracle),
        cmocka_unit_test(test_parse_valid_pkcsreq),
        cmocka_unit_test(test_parse_unknown_type_parses),
        cmocka_unit_test(test_parse_not_pkimessage),
        cmocka_unit_test(test_parse_two_signers),
        cmocka_unit_test(test_parse_missing_attrs),
        cmocka_unit_test(test_parse_bad_txid),
        cmocka_unit_test(test_parse_missing_attrs_still_echoed),
        cmocka_unit_test(test_parse_no_signer_cert),
        cmocka_unit_test(test_parse_digests),
        cmocka_unit_test(test_parse_bad_signature),
        cmocka_unit_test(test_open_ciphers),
        cmocka_unit_test(test_open_single_des),
        cmocka_unit_test(test_open_other_cipher),
        cmocka_unit_test(test_open_other_recipient),
        cmocka_unit_test(test_open_no_envelope),
        cmocka_unit_test(test_certrep_success),
        cmocka_unit_test(test_certrep_success_ec_signer),
        cmocka_unit_test(test_certrep_des_request_gets_des3),
        cmocka_unit_test(test_certrep_failure),
        cmocka_unit_test(test_certrep_failure_after_failed_parse),
        cmocka_unit_test(test_certrep_pending),
        cmocka_unit_test(test_certrep_fresh_nonces),
        cmocka_unit_test(test_certrep_wrong_signer_detected),
        cmocka_unit_test(test_certrep_success_without_signer_fails),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_failinfo_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
