/* Unit tests for loadgen/scep_client*.c: messages are built with the library and taken apart
 * with OpenSSL directly; CertReps are built here with OpenSSL and parsed with the library. */
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
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "client/scep_client.h"

/* Shared, created once: keys are slow to make. */
static struct fixture {
    scepc_ctx *ctx;
    EVP_PKEY *ca_key, *ra_key, *client_key, *other_key;
    X509 *ca, *ra, *ra_enc, *ra_sign, *signer; /* signer: client's self-signed cert */
    X509_NAME *subject;
    scepc_caset *set;                          /* CA + RA */
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
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c));
    BN_free(bn);
    X509_set_version(c, X509_VERSION_3);
    X509_set_subject_name(c, n);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
    X509_gmtime_adj(X509_getm_notBefore(c), -60);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400);
    X509_set_pubkey(c, key);
    X509V3_set_ctx(&v3, issuer ? issuer : c, c, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE"
                                                                     : "CA:FALSE");
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    if (ku) {
        ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage, ku);
        X509_add_ext(c, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    X509_NAME_free(n);
    return c;
}

static int setup(void **state)
{
    STACK_OF(X509) *sk = sk_X509_new_null();

    assert_int_equal(scepc_ctx_create(NULL, NULL, &F.ctx), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.ca_key), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.ra_key), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.client_key), SCEPC_OK);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048", &F.other_key), SCEPC_OK);
    F.ca = make_cert("/CN=Test CA/O=scepd", F.ca_key, NULL, NULL, 1, "critical,keyCertSign,cRLSign");
    F.ra = make_cert("/CN=Test RA", F.ra_key, F.ca, F.ca_key, 0,
                     "critical,digitalSignature,keyEncipherment");
    F.ra_enc = make_cert("/CN=RA enc", F.ra_key, F.ca, F.ca_key, 0, "keyEncipherment");
    F.ra_sign = make_cert("/CN=RA sign", F.other_key, F.ca, F.ca_key, 0, "digitalSignature");
    assert_int_equal(scepc_name_parse("/CN=device-1/O=Fleet", &F.subject), SCEPC_OK);
    assert_int_equal(scepc_self_signed(F.ctx, F.client_key, F.subject, SCEPC_MD_SHA256, &F.signer),
                     SCEPC_OK);
    sk_X509_push(sk, F.ca);
    sk_X509_push(sk, F.ra);
    assert_int_equal(scepc_caset_from_certs(sk, &F.set), SCEPC_OK);
    sk_X509_free(sk);
    (void)state;
    return 0;
}

static int teardown(void **state)
{
    scepc_caset_destroy(F.set);
    scepc_ctx_destroy(F.ctx);
    EVP_PKEY_free(F.ca_key);
    EVP_PKEY_free(F.ra_key);
    EVP_PKEY_free(F.client_key);
    EVP_PKEY_free(F.other_key);
    X509_free(F.ca);
    X509_free(F.ra);
    X509_free(F.ra_enc);
    X509_free(F.ra_sign);
    X509_free(F.signer);
    X509_NAME_free(F.subject);
    (void)state;
    return 0;
}

/* ---- small helpers ---- */

static X509_REQ *make_csr(EVP_PKEY *key, const char *challenge)
{
    X509_REQ *req = NULL;
    assert_int_equal(scepc_build_csr(F.ctx, key, F.subject, challenge, NULL, 0, NULL,
                                     SCEPC_MD_SHA256, &req), SCEPC_OK);
    return req;
}

static CMS_ContentInfo *cms_from(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    assert_non_null(cms);
    return cms;
}

static const ASN1_STRING *attr(CMS_SignerInfo *si, const char *oid, int type)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    const ASN1_STRING *s = CMS_signed_get0_data_by_OBJ(si, o, -3, type);
    ASN1_OBJECT_free(o);
    return s;
}

static int str_eq(const ASN1_STRING *s, const void *data, size_t len)
{
    return s && (size_t)ASN1_STRING_length(s) == len && memcmp(ASN1_STRING_get0_data(s), data, len) == 0;
}

/* Builds a message with defaults (PKCSReq from a fresh CSR of client_key), lets the caller
 * adjust params first. */
static void build(scepc_msg_params *p, X509_REQ *csr, uint8_t **der, size_t *len, scepc_txn *txn,
                  int expect)
{
    if (!p->signer_cert) {
        p->signer_cert = F.signer;
        p->signer_key = F.client_key;
    }
    if (!p->ca)
        p->ca = F.set;
    if (!p->msgtype)
        p->msgtype = SCEPC_MSG_PKCSREQ;
    if (!p->csr)
        p->csr = csr;
    assert_int_equal(scepc_build_pkimessage(F.ctx, p, der, len, txn), expect);
}

/* Verifies the outer signature with the signer cert, then decrypts the envelope as the RA. */
static BIO *open_message(CMS_ContentInfo *cms, X509 *signer, int expect_verify)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    ASN1_OCTET_STRING **pos = CMS_get0_content(cms);
    CMS_ContentInfo *env;
    BIO *out = BIO_new(BIO_s_mem());

    sk_X509_push(sk, signer);
    assert_int_equal(CMS_verify(cms, sk, NULL, NULL, NULL,
                                CMS_NO_SIGNER_CERT_VERIFY | CMS_NOINTERN | CMS_BINARY) == 1,
                     expect_verify);
    sk_X509_free(sk);
    ERR_clear_error();
    assert_non_null(pos);
    assert_non_null(*pos);
    env = cms_from(ASN1_STRING_get0_data(*pos), (size_t)ASN1_STRING_length(*pos));
    assert_int_equal(OBJ_obj2nid(CMS_get0_type(env)), NID_pkcs7_enveloped);
    assert_int_equal(CMS_decrypt(env, F.ra_key, F.ra, NULL, out, CMS_BINARY), 1);
    CMS_ContentInfo_free(env);
    return out;
}

/* ---- GetCACaps ---- */

static void test_caps(void **state)
{
    const char *all = "POSTPKIOperation\nSHA-256\r\nsha-512\n  AES \nDES3\nSCEPStandard\n"
                      "Renewal\nGetNextCACert\nSHA-1\nUnknownThing\n";
    unsigned f = scepc_parse_caps(all, strlen(all));
    assert_int_equal(f, SCEPC_CAP_POSTPKIOPERATION | SCEPC_CAP_SHA256 | SCEPC_CAP_SHA512
                            | SCEPC_CAP_AES | SCEPC_CAP_DES3 | SCEPC_CAP_SCEPSTANDARD
                            | SCEPC_CAP_RENEWAL | SCEPC_CAP_GETNEXTCACERT | SCEPC_CAP_SHA1);
    assert_int_equal(scepc_parse_caps("Renewal", 7), SCEPC_CAP_RENEWAL);
    /* Length is honoured: "Renewal" cut to "Renew" is no capability. */
    assert_int_equal(scepc_parse_caps("Renewal", 5), 0);
    assert_int_equal(scepc_parse_caps("AESX\nxAES\nSHA-2560\n", 19), 0);
    assert_int_equal(scepc_parse_caps("", 0), 0);
    assert_int_equal(scepc_parse_caps(NULL, 10), 0);
    (void)state;
}

/* ---- GetCACert ---- */

static uint8_t *certs_only(STACK_OF(X509) *certs, int *len)
{
    PKCS7 *p7 = PKCS7_new();
    unsigned char *der = NULL;
    assert_true(PKCS7_set_type(p7, NID_pkcs7_signed));
    assert_true(PKCS7_content_new(p7, NID_pkcs7_data));
    for (int i = 0; i < sk_X509_num(certs); i++)
        assert_true(PKCS7_add_certificate(p7, sk_X509_value(certs, i)));
    *len = i2d_PKCS7(p7, &der);
    assert_true(*len > 0);
    PKCS7_free(p7);
    return der;
}

static void test_cacert_single(void **state)
{
    unsigned char *der = NULL;
    int len = i2d_X509(F.ca, &der);
    scepc_caset *set = NULL;

    assert_int_equal(scepc_parse_cacert(der, (size_t)len, "application/x-x509-ca-cert", &set),
                     SCEPC_OK);
    assert_int_equal(X509_cmp(scepc_caset_ca(set), F.ca), 0);
    assert_ptr_equal(scepc_caset_recipient(set), scepc_caset_ca(set));
    assert_ptr_equal(scepc_caset_signer(set), scepc_caset_ca(set));
    assert_int_equal(sk_X509_num(scepc_caset_certs(set)), 1);
    scepc_caset_destroy(set);
    set = NULL;
    /* Parameters and case in the content type; sniffing without one. */
    assert_int_equal(scepc_parse_cacert(der, (size_t)len, "Application/X-X509-CA-Cert; q=1",
                                        &set), SCEPC_OK);
    scepc_caset_destroy(set);
    set = NULL;
    assert_int_equal(scepc_parse_cacert(der, (size_t)len, NULL, &set), SCEPC_OK);
    scepc_caset_destroy(set);
    set = NULL;
    assert_int_equal(scepc_parse_cacert(der, (size_t)len, "text/plain", &set),
                     SCEPC_E_CACERT_CTYPE);
    assert_int_equal(scepc_parse_cacert(der, (size_t)len - 10, "application/x-x509-ca-cert",
                                        &set), SCEPC_E_CACERT_PARSE);
    /* A single cert announced as RA+CA PKCS#7 is not a PKCS#7. */
    assert_int_equal(scepc_parse_cacert(der, (size_t)len, "application/x-x509-ca-ra-cert", &set),
                     SCEPC_E_CACERT_PARSE);
    assert_int_equal(scepc_parse_cacert(der, 0, NULL, &set), SCEPC_E_CACERT_PARSE);
    assert_null(set);
    OPENSSL_free(der);
    (void)state;
}

static void test_cacert_chain(void **state)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    scepc_caset *set = NULL;
    uint8_t *der;
    int len;

    /* RA first, CA last: the order must not matter. */
    sk_X509_push(sk, F.ra);
    sk_X509_push(sk, F.ca);
    der = certs_only(sk, &len);
    assert_int_equal(scepc_parse_cacert(der, (size_t)len, "application/x-x509-ca-ra-cert", &set),
                     SCEPC_OK);
    assert_int_equal(X509_cmp(scepc_caset_ca(set), F.ca), 0);
    assert_int_equal(X509_cmp(scepc_caset_recipient(set), F.ra), 0);
    assert_int_equal(X509_cmp(scepc_caset_signer(set), F.ra), 0);
    scepc_caset_destroy(set);
    set = NULL;
    OPENSSL_free(der);

    /* Separate encryption and signing RA certificates. */
    sk_X509_zero(sk);
    sk_X509_push(sk, F.ca);
    sk_X509_push(sk, F.ra_sign);
    sk_X509_push(sk, F.ra_enc);
    der = certs_only(sk, &len);
    assert_int_equal(scepc_parse_cacert(der, (size_t)len, NULL, &set), SCEPC_OK);
    assert_int_equal(X509_cmp(scepc_caset_ca(set), F.ca), 0);
    assert_int_equal(X509_cmp(scepc_caset_recipient(set), F.ra_enc), 0);
    assert_int_equal(X509_cmp(scepc_caset_signer(set), F.ra_sign), 0);
    scepc_caset_destroy(set);
    set = NULL;
    OPENSSL_free(der);

    /* Only a signing RA, and a CA whose keyUsage forbids key transport: nobody to encrypt to. */
    sk_X509_zero(sk);
    sk_X509_push(sk, F.ca);
    sk_X509_push(sk, F.ra_sign);
    assert_int_equal(scepc_caset_from_certs(sk, &set), SCEPC_E_CACERT_NO_RECIPIENT);
    assert_null(set);

    /* No certificates at all. */
    sk_X509_zero(sk);
    der = certs_only(sk, &len);
    assert_int_equal(scepc_parse_cacert(der, (size_t)len, "application/x-x509-ca-ra-cert", &set),
                     SCEPC_E_CACERT_EMPTY);
    OPENSSL_free(der);
    assert_int_equal(scepc_caset_from_certs(NULL, &set), SCEPC_E_CACERT_EMPTY);
    assert_null(set);
    sk_X509_free(sk);
    (void)state;
}

/* ---- names, SANs, CSR ---- */

static void test_name_parse(void **state)
{
    X509_NAME *n = NULL;
    char buf[256];

    assert_int_equal(scepc_name_parse("/CN=a\\/b/O=Org/C=DE", &n), SCEPC_OK);
    assert_int_equal(X509_NAME_entry_count(n), 3);
    X509_NAME_get_text_by_NID(n, NID_commonName, buf, sizeof(buf));
    assert_string_equal(buf, "a/b");
    X509_NAME_free(n);
    n = NULL;
    assert_int_equal(scepc_name_parse("CN=x", &n), SCEPC_E_SUBJECT);
    assert_int_equal(scepc_name_parse("/CN", &n), SCEPC_E_SUBJECT);
    assert_int_equal(scepc_name_parse("/=x", &n), SCEPC_E_SUBJECT);
    assert_int_equal(scepc_name_parse("/NOSUCHTYPE=x", &n), SCEPC_E_SUBJECT);
    assert_int_equal(scepc_name_parse("/", &n), SCEPC_E_SUBJECT);
    assert_int_equal(scepc_name_parse(NULL, &n), SCEPC_E_SUBJECT);
    assert_null(n);
    ERR_clear_error();
    (void)state;
}

static void test_san_parse(void **state)
{
    scepc_san s;
    assert_int_equal(scepc_san_parse("DNS:host.example", &s), SCEPC_OK);
    assert_int_equal(s.type, SCEPC_SAN_DNS);
    assert_string_equal(s.value, "host.example");
    assert_int_equal(scepc_san_parse("upn:user@corp", &s), SCEPC_OK);
    assert_int_equal(s.type, SCEPC_SAN_UPN);
    assert_int_equal(scepc_san_parse("dns:", &s), SCEPC_E_SAN);
    assert_int_equal(scepc_san_parse("x400:foo", &s), SCEPC_E_SAN);
    (void)state;
}

static const ASN1_STRING *csr_challenge(X509_REQ *req, int *type)
{
    int i = X509_REQ_get_attr_by_NID(req, NID_pkcs9_challengePassword, -1);
    if (i < 0)
        return NULL;
    ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(X509_REQ_get_attr(req, i), 0);
    *type = t->type;
    return t->value.asn1_string;
}

static void test_csr(void **state)
{
    scepc_san sans[5];
    X509_REQ *req = NULL;
    STACK_OF(X509_EXTENSION) *extra = sk_X509_EXTENSION_new_null(), *exts;
    GENERAL_NAMES *gens;
    BASIC_CONSTRAINTS *bc;
    int type = -1, seen = 0;

    assert_int_equal(scepc_san_parse("dns:dev.example.com", &sans[0]), SCEPC_OK);
    assert_int_equal(scepc_san_parse("email:dev@example.com", &sans[1]), SCEPC_OK);
    assert_int_equal(scepc_san_parse("uri:urn:uuid:1234", &sans[2]), SCEPC_OK);
    assert_int_equal(scepc_san_parse("upn:dev@corp.example", &sans[3]), SCEPC_OK);
    assert_int_equal(scepc_san_parse("ip:192.0.2.7", &sans[4]), SCEPC_OK);
    sk_X509_EXTENSION_push(extra, X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints,
                                                      "critical,CA:TRUE"));
    assert_int_equal(scepc_build_csr(F.ctx, F.client_key, F.subject, "s3cret", sans, 5, extra,
                                     SCEPC_MD_SHA256, &req), SCEPC_OK);
    assert_int_equal(X509_REQ_verify(req, F.client_key), 1);
    assert_int_equal(X509_NAME_cmp(X509_REQ_get_subject_name(req), F.subject), 0);
    assert_true(str_eq(csr_challenge(req, &type), "s3cret", 6));
    assert_int_equal(type, V_ASN1_PRINTABLESTRING);

    exts = X509_REQ_get_extensions(req);
    assert_int_equal(sk_X509_EXTENSION_num(exts), 2);
    gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 5);
    for (int i = 0; i < 5; i++) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        int gtype;
        void *v = GENERAL_NAME_get0_value(g, &gtype);
        switch (gtype) {
        case GEN_DNS: assert_true(str_eq(v, "dev.example.com", 15)); seen |= 1; break;
        case GEN_EMAIL: assert_true(str_eq(v, "dev@example.com", 15)); seen |= 2; break;
        case GEN_URI: assert_true(str_eq(v, "urn:uuid:1234", 13)); seen |= 4; break;
        case GEN_IPADD: assert_true(str_eq(v, "\xc0\x00\x02\x07", 4)); seen |= 16; break;
        case GEN_OTHERNAME: {
            ASN1_OBJECT *oid;
            ASN1_TYPE *val;
            char txt[64];
            assert_true(GENERAL_NAME_get0_otherName(g, &oid, &val));
            OBJ_obj2txt(txt, sizeof(txt), oid, 1);
            assert_string_equal(txt, "1.3.6.1.4.1.311.20.2.3");
            assert_int_equal(val->type, V_ASN1_UTF8STRING);
            assert_true(str_eq(val->value.utf8string, "dev@corp.example", 16));
            seen |= 8;
            break;
        }
        default: fail();
        }
    }
    assert_int_equal(seen, 31);
    GENERAL_NAMES_free(gens);
    bc = X509V3_get_d2i(exts, NID_basic_constraints, NULL, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    BASIC_CONSTRAINTS_free(bc);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    req = NULL;

    /* Non-printable challenge characters need UTF8String; no challenge, no SANs, no ext. */
    assert_int_equal(scepc_build_csr(F.ctx, F.client_key, F.subject, "p@ss_w\xc3\xb6rd", NULL, 0,
                                     NULL, SCEPC_MD_SHA512, &req), SCEPC_OK);
    assert_true(str_eq(csr_challenge(req, &type), "p@ss_w\xc3\xb6rd", 10));
    assert_int_equal(type, V_ASN1_UTF8STRING);
    exts = X509_REQ_get_extensions(req);
    assert_int_equal(sk_X509_EXTENSION_num(exts), 0);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    req = make_csr(F.client_key, NULL);
    assert_null(csr_challenge(req, &type));
    X509_REQ_free(req);
    req = NULL;

    /* A SAN that is not IA5 text, a bad IP. */
    scepc_san bad = { SCEPC_SAN_DNS, "h\xc3\xb6st" };
    assert_int_equal(scepc_build_csr(F.ctx, F.client_key, F.subject, NULL, &bad, 1, NULL,
                                     SCEPC_MD_SHA256, &req), SCEPC_E_SAN);
    bad.type = SCEPC_SAN_IP;
    bad.value = "300.1.1.1";
    assert_int_equal(scepc_build_csr(F.ctx, F.client_key, F.subject, NULL, &bad, 1, NULL,
                                     SCEPC_MD_SHA256, &req), SCEPC_E_SAN);
    assert_int_equal(scepc_build_csr(F.ctx, NULL, F.subject, NULL, NULL, 0, NULL,
                                     SCEPC_MD_SHA256, &req), SCEPC_E_ARG);
    assert_null(req);
    sk_X509_EXTENSION_pop_free(extra, X509_EXTENSION_free);
    ERR_clear_error();
    (void)state;
}

static void test_self_signed_and_keys(void **state)
{
    EVP_PKEY *ec = NULL;
    X509 *c = NULL;

    assert_int_equal(X509_verify(F.signer, F.client_key), 1);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(F.signer), F.subject), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(F.signer), F.subject), 0);
    assert_int_equal(scepc_keygen(F.ctx, "ec:P-256", &ec), SCEPC_OK);
    assert_int_equal(EVP_PKEY_get_id(ec), EVP_PKEY_EC);
    assert_int_equal(scepc_self_signed(F.ctx, ec, F.subject, SCEPC_MD_SHA384, &c), SCEPC_OK);
    assert_int_equal(X509_verify(c, ec), 1);
    X509_free(c);
    EVP_PKEY_free(ec);
    ec = NULL;
    assert_int_equal(scepc_keygen(F.ctx, "rsa:12", &ec), SCEPC_E_KEYSPEC);
    assert_int_equal(scepc_keygen(F.ctx, "rsa:2048x", &ec), SCEPC_E_KEYSPEC);
    assert_int_equal(scepc_keygen(F.ctx, "ec:NoSuchCurve", &ec), SCEPC_E_KEYSPEC);
    assert_int_equal(scepc_keygen(F.ctx, "dsa:1024", &ec), SCEPC_E_KEYSPEC);
    assert_null(ec);
    ERR_clear_error();
    (void)state;
}

/* ---- pkiMessage ---- */

static void test_pkcsreq_message(void **state)
{
    X509_REQ *csr = make_csr(F.client_key, "secret");
    scepc_msg_params p = { .cipher = SCEPC_CIPHER_AES128, .md = SCEPC_MD_SHA256 };
    uint8_t *der = NULL;
    size_t len = 0;
    scepc_txn txn;
    CMS_ContentInfo *cms;
    CMS_SignerInfo *si;
    X509_ALGOR *dig = NULL;
    unsigned char *spki = NULL, *csrder = NULL, h[32];
    char hex[65];
    int n;
    BIO *inner;
    char *data;
    long dlen;

    build(&p, csr, &der, &len, &txn, SCEPC_OK);
    cms = cms_from(der, len);
    assert_int_equal(OBJ_obj2nid(CMS_get0_type(cms)), NID_pkcs7_signed);
    assert_int_equal(OBJ_obj2nid(CMS_get0_eContentType(cms)), NID_pkcs7_data);
    assert_int_equal(sk_CMS_SignerInfo_num(CMS_get0_SignerInfos(cms)), 1);
    si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
    assert_int_equal(CMS_SignerInfo_cert_cmp(si, F.signer), 0);
    CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, NULL);
    assert_int_equal(OBJ_obj2nid(dig->algorithm), NID_sha256);
    /* The signer cert travels in the message. */
    STACK_OF(X509) *certs = CMS_get1_certs(cms);
    assert_int_equal(sk_X509_num(certs), 1);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 0), F.signer), 0);
    sk_X509_pop_free(certs, X509_free);

    /* transactionID: hex SHA-256 of the CSR's SubjectPublicKeyInfo. */
    n = i2d_PUBKEY(X509_REQ_get0_pubkey(csr), &spki);
    assert_true(EVP_Digest(spki, (size_t)n, h, NULL, EVP_sha256(), NULL));
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02X", h[i]);
    OPENSSL_free(spki);
    assert_string_equal(txn.txid, hex);
    assert_true(str_eq(attr(si, "2.16.840.1.113733.1.9.7", V_ASN1_PRINTABLESTRING), hex, 64));
    assert_true(str_eq(attr(si, "2.16.840.1.113733.1.9.2", V_ASN1_PRINTABLESTRING), "19", 2));
    assert_true(str_eq(attr(si, "2.16.840.1.113733.1.9.5", V_ASN1_OCTET_STRING),
                       txn.sender_nonce, 16));
    assert_int_equal(txn.msgtype, 19);
    /* No reply attributes in a request. */
    assert_null(attr(si, "2.16.840.1.113733.1.9.3", V_ASN1_PRINTABLESTRING));
    assert_null(attr(si, "2.16.840.1.113733.1.9.6", V_ASN1_OCTET_STRING));

    inner = open_message(cms, F.signer, 1);
    dlen = BIO_get_mem_data(inner, &data);
    n = i2d_X509_REQ(csr, &csrder);
    assert_int_equal(dlen, n);
    assert_memory_equal(data, csrder, (size_t)n);
    OPENSSL_free(csrder);
    BIO_free(inner);
    CMS_ContentInfo_free(cms);
    scepc_free(der);

    /* Two messages differ in their nonces. */
    scepc_txn txn2;
    build(&p, csr, &der, &len, &txn2, SCEPC_OK);
    assert_memory_not_equal(txn.sender_nonce, txn2.sender_nonce, 16);
    assert_string_equal(txn.txid, txn2.txid);
    scepc_free(der);
    X509_REQ_free(csr);
    (void)state;
}

/* Content-encryption and key-transport algorithms, read with the PKCS#7 structures. */
static void envelope_algs(const uint8_t *der, size_t len, int *cipher_nid, int *kt_nid)
{
    CMS_ContentInfo *cms = cms_from(der, len);
    ASN1_OCTET_STRING **pos = CMS_get0_content(cms);
    const unsigned char *p = ASN1_STRING_get0_data(*pos);
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, ASN1_STRING_length(*pos));
    assert_non_null(p7);
    assert_true(PKCS7_type_is_enveloped(p7));
    *cipher_nid = OBJ_obj2nid(p7->d.enveloped->enc_data->algorithm->algorithm);
    *kt_nid = OBJ_obj2nid(
        sk_PKCS7_RECIP_INFO_value(p7->d.enveloped->recipientinfo, 0)->key_enc_algor->algorithm);
    PKCS7_free(p7);
    CMS_ContentInfo_free(cms);
}

static void test_ciphers_and_oaep(void **state)
{
    static const struct { scepc_cipher c; int nid; } t[] = {
        { SCEPC_CIPHER_AES128, NID_aes_128_cbc }, { SCEPC_CIPHER_AES192, NID_aes_192_cbc },
        { SCEPC_CIPHER_AES256, NID_aes_256_cbc }, { SCEPC_CIPHER_DES3, NID_des_ede3_cbc },
    };
    X509_REQ *csr = make_csr(F.client_key, "secret");
    uint8_t *der;
    size_t len;
    scepc_txn txn;
    int cnid, knid;

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        scepc_msg_params p = { .cipher = t[i].c, .md = SCEPC_MD_SHA512 };
        build(&p, csr, &der, &len, &txn, SCEPC_OK);
        envelope_algs(der, len, &cnid, &knid);
        assert_int_equal(cnid, t[i].nid);
        assert_int_equal(knid, NID_rsaEncryption);
        CMS_ContentInfo *cms = cms_from(der, len);
        BIO_free(open_message(cms, F.signer, 1));
        CMS_ContentInfo_free(cms);
        scepc_free(der);
    }
    scepc_msg_params p = { .cipher = SCEPC_CIPHER_AES256, .oaep = 1 };
    build(&p, csr, &der, &len, &txn, SCEPC_OK);
    envelope_algs(der, len, &cnid, &knid);
    assert_int_equal(knid, NID_rsaesOaep);
    CMS_ContentInfo *cms = cms_from(der, len);
    BIO_free(open_message(cms, F.signer, 1));
    CMS_ContentInfo_free(cms);
    scepc_free(der);
    X509_REQ_free(csr);
    (void)state;
}

static void check_issuer_and(BIO *inner, int with_serial, const ASN1_INTEGER *serial,
                             const X509_NAME *subject)
{
    char *data;
    long dlen = BIO_get_mem_data(inner, &data), hl;
    const unsigned char *p = (const unsigned char *)data, *end = p + dlen;
    int tag, xclass;
    X509_NAME *n;

    if (with_serial) {
        PKCS7_ISSUER_AND_SERIAL *ias = d2i_PKCS7_ISSUER_AND_SERIAL(NULL, &p, dlen);
        assert_non_null(ias);
        assert_int_equal(X509_NAME_cmp(ias->issuer, X509_get_subject_name(F.ca)), 0);
        assert_int_equal(ASN1_INTEGER_cmp(ias->serial, serial), 0);
        PKCS7_ISSUER_AND_SERIAL_free(ias);
        return;
    }
    assert_int_equal(ASN1_get_object(&p, &hl, &tag, &xclass, dlen) & 0x80, 0);
    assert_int_equal(tag, V_ASN1_SEQUENCE);
    assert_int_equal(p + hl, end);
    n = d2i_X509_NAME(NULL, &p, end - p);
    assert_non_null(n);
    assert_int_equal(X509_NAME_cmp(n, X509_get_subject_name(F.ca)), 0);
    X509_NAME_free(n);
    n = d2i_X509_NAME(NULL, &p, end - p);
    assert_non_null(n);
    assert_int_equal(X509_NAME_cmp(n, subject), 0);
    X509_NAME_free(n);
    assert_ptr_equal(p, end);
}

static void test_other_message_types(void **state)
{
    X509_REQ *csr = make_csr(F.client_key, NULL);
    ASN1_INTEGER *serial = ASN1_INTEGER_new();
    uint8_t *der;
    size_t len;
    scepc_txn txn;
    static const int types[] = { SCEPC_MSG_CERTPOLL, SCEPC_MSG_GETCERT, SCEPC_MSG_GETCRL,
                                 SCEPC_MSG_RENEWALREQ };
    static const char *const names[] = { "20", "21", "22", "17" };

    ASN1_INTEGER_set_uint64(serial, 0x1234567890abcdefULL);
    for (int i = 0; i < 4; i++) {
        scepc_msg_params p = { .msgtype = types[i], .serial = serial, .txid = "poll-me" };
        if (types[i] == SCEPC_MSG_RENEWALREQ) {
            /* Signed by an existing certificate (here: the RA's) rather than self-signed. */
            p.signer_cert = F.ra_enc;
            p.signer_key = F.ra_key;
            p.txid = NULL;
        }
        build(&p, csr, &der, &len, &txn, SCEPC_OK);
        CMS_ContentInfo *cms = cms_from(der, len);
        CMS_SignerInfo *si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
        assert_true(str_eq(attr(si, "2.16.840.1.113733.1.9.2", V_ASN1_PRINTABLESTRING),
                           names[i], 2));
        BIO *inner = open_message(cms, p.signer_cert, 1);
        if (types[i] == SCEPC_MSG_CERTPOLL) {
            assert_true(str_eq(attr(si, "2.16.840.1.113733.1.9.7", V_ASN1_PRINTABLESTRING),
                               "poll-me", 7));
            check_issuer_and(inner, 0, NULL, F.subject);
        } else if (types[i] == SCEPC_MSG_RENEWALREQ) {
            assert_int_equal(CMS_SignerInfo_cert_cmp(si, F.ra_enc), 0);
        } else {
            check_issuer_and(inner, 1, serial, NULL);
        }
        BIO_free(inner);
        CMS_ContentInfo_free(cms);
        scepc_free(der);
    }
    /* GetCert without a serial, PKCSReq without a CSR, CertPoll without any subject. */
    scepc_msg_params p1 = { .msgtype = SCEPC_MSG_GETCERT };
    build(&p1, csr, &der, &len, &txn, SCEPC_E_ARG);
    scepc_msg_params p2 = { .msgtype = SCEPC_MSG_PKCSREQ, .signer_cert = F.signer,
                            .signer_key = F.client_key, .ca = F.set };
    assert_int_equal(scepc_build_pkimessage(F.ctx, &p2, &der, &len, &txn), SCEPC_E_ARG);
    p2.msgtype = SCEPC_MSG_CERTPOLL;
    assert_int_equal(scepc_build_pkimessage(F.ctx, &p2, &der, &len, &txn), SCEPC_E_ARG);
    p2.msgtype = 99;
    p2.csr = csr;
    assert_int_equal(scepc_build_pkimessage(F.ctx, &p2, &der, &len, &txn), SCEPC_E_ARG);
    ASN1_INTEGER_free(serial);
    X509_REQ_free(csr);
    (void)state;
}

static void test_negative_knobs(void **state)
{
    X509_REQ *csr = make_csr(F.client_key, "secret");
    uint8_t *der;
    size_t len;
    scepc_txn txn;
    char longid[SCEPC_TXID_MAX + 2];
    CMS_ContentInfo *cms;
    CMS_SignerInfo *si;

    /* Explicit txid and a message type the server does not know. */
    scepc_msg_params p = { .txid = "my-txid", .wire_msgtype = 99 };
    build(&p, csr, &der, &len, &txn, SCEPC_OK);
    assert_string_equal(txn.txid, "my-txid");
    assert_int_equal(txn.msgtype, 99);
    cms = cms_from(der, len);
    si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
    assert_true(str_eq(attr(si, "2.16.840.1.113733.1.9.2", V_ASN1_PRINTABLESTRING), "99", 2));
    assert_true(str_eq(attr(si, "2.16.840.1.113733.1.9.7", V_ASN1_PRINTABLESTRING), "my-txid", 7));
    BIO_free(open_message(cms, F.signer, 1));
    CMS_ContentInfo_free(cms);
    scepc_free(der);

    /* Corrupted signature: the message still parses, the signature fails. */
    scepc_msg_params p2 = { .corrupt_signature = 1 };
    build(&p2, csr, &der, &len, &txn, SCEPC_OK);
    cms = cms_from(der, len);
    BIO_free(open_message(cms, F.signer, 0));
    CMS_ContentInfo_free(cms);
    scepc_free(der);

    /* Wrong key: names the signer cert, carries it, but does not verify with it. */
    scepc_msg_params p3 = { .wrong_key = F.other_key };
    build(&p3, csr, &der, &len, &txn, SCEPC_OK);
    cms = cms_from(der, len);
    si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
    assert_int_equal(CMS_SignerInfo_cert_cmp(si, F.signer), 0);
    STACK_OF(X509) *certs = CMS_get1_certs(cms);
    assert_int_equal(sk_X509_num(certs), 1);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 0), F.signer), 0);
    sk_X509_pop_free(certs, X509_free);
    BIO_free(open_message(cms, F.signer, 0));
    CMS_ContentInfo_free(cms);
    scepc_free(der);

    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    scepc_msg_params p4 = { .txid = longid };
    build(&p4, csr, &der, &len, &txn, SCEPC_E_TXID);
    scepc_msg_params p5 = { .txid = "" };
    build(&p5, csr, &der, &len, &txn, SCEPC_E_TXID);
    scepc_msg_params p6 = { 0 };
    assert_int_equal(scepc_build_pkimessage(F.ctx, &p6, &der, &len, &txn), SCEPC_E_ARG);
    X509_REQ_free(csr);
    ERR_clear_error();
    (void)state;
}

/* ---- CertRep built here, parsed by the library ---- */

struct rep {
    X509 *sign_cert;
    EVP_PKEY *sign_key;
    const char *msgtype, *status, *failinfo, *failtext, *txid;
    const uint8_t *rnonce;
    int snonce_len;
    EVP_PKEY *issued_key;     /* SUCCESS: key in the issued cert */
    X509 *encrypt_to;         /* SUCCESS: envelope recipient */
    int no_content, corrupt;
};

static void add_str(CMS_SignerInfo *si, const char *oid, int type, const void *v, int len)
{
    ASN1_OBJECT *o = OBJ_txt2obj(oid, 1);
    /* len -1 would make OpenSSL read v as an ASN1_STRING. */
    if (len < 0)
        len = (int)strlen(v);
    assert_true(CMS_signed_add1_attr_by_OBJ(si, o, type, v, len));
    ASN1_OBJECT_free(o);
}

static uint8_t *make_certrep(const struct rep *r, const scepc_txn *txn, size_t *outlen)
{
    unsigned int flags = CMS_PARTIAL | CMS_BINARY | CMS_NOSMIMECAP;
    CMS_ContentInfo *cms;
    CMS_SignerInfo *si;
    BIO *content;
    unsigned char *env = NULL, *der = NULL;
    int envlen = 0, n;
    uint8_t snonce[32];
    const char *status = r->status ? r->status : "0";

    if (strcmp(status, "0") == 0 && !r->no_content) {
        /* Issued cert inside a certs-only SignedData, encrypted to the request's signer. */
        X509 *issued = make_cert("/CN=device-1/O=Fleet",
                                 r->issued_key ? r->issued_key : F.client_key, F.ca, F.ca_key, 0,
                                 "digitalSignature");
        STACK_OF(X509) *sk = sk_X509_new_null(), *rcpt = sk_X509_new_null();
        int ilen;
        sk_X509_push(sk, issued);
        sk_X509_push(sk, F.ca);
        uint8_t *inner = certs_only(sk, &ilen);
        BIO *ib = BIO_new_mem_buf(inner, ilen);
        sk_X509_push(rcpt, r->encrypt_to ? r->encrypt_to : F.signer);
        CMS_ContentInfo *e = CMS_encrypt(rcpt, ib, EVP_aes_128_cbc(), CMS_BINARY);
        assert_non_null(e);
        envlen = i2d_CMS_ContentInfo(e, &env);
        CMS_ContentInfo_free(e);
        BIO_free(ib);
        OPENSSL_free(inner);
        sk_X509_free(sk);
        sk_X509_free(rcpt);
        X509_free(issued);
        content = BIO_new_mem_buf(env, envlen);
    } else {
        flags |= CMS_DETACHED;
        content = BIO_new_mem_buf("", 0);
    }
    cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
    si = CMS_add1_signer(cms, r->sign_cert ? r->sign_cert : F.ra,
                         r->sign_key ? r->sign_key : F.ra_key, EVP_sha256(), flags);
    assert_non_null(si);
    add_str(si, "2.16.840.1.113733.1.9.2", V_ASN1_PRINTABLESTRING, r->msgtype ? r->msgtype : "3",
            -1);
    add_str(si, "2.16.840.1.113733.1.9.3", V_ASN1_PRINTABLESTRING, status, -1);
    if (r->failinfo)
        add_str(si, "2.16.840.1.113733.1.9.4", V_ASN1_PRINTABLESTRING, r->failinfo, -1);
    if (r->failtext)
        add_str(si, "1.3.6.1.5.5.7.24.1", V_ASN1_UTF8STRING, r->failtext, -1);
    add_str(si, "2.16.840.1.113733.1.9.7", V_ASN1_PRINTABLESTRING, r->txid ? r->txid : txn->txid,
            -1);
    add_str(si, "2.16.840.1.113733.1.9.6", V_ASN1_OCTET_STRING,
            r->rnonce ? r->rnonce : txn->sender_nonce, 16);
    RAND_bytes(snonce, sizeof(snonce));
    if (r->snonce_len >= 0)
        add_str(si, "2.16.840.1.113733.1.9.5", V_ASN1_OCTET_STRING, snonce,
                r->snonce_len ? r->snonce_len : 16);
    assert_true(CMS_final(cms, content, NULL, CMS_BINARY));
    if (r->corrupt) {
        ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);
        unsigned char *c = OPENSSL_memdup(ASN1_STRING_get0_data(sig), ASN1_STRING_length(sig));
        c[0] ^= 0x80;
        ASN1_STRING_set(sig, c, ASN1_STRING_length(sig));
        OPENSSL_free(c);
    }
    n = i2d_CMS_ContentInfo(cms, &der);
    assert_true(n > 0);
    *outlen = (size_t)n;
    CMS_ContentInfo_free(cms);
    BIO_free(content);
    OPENSSL_free(env);
    return der;
}

/* A real request's state, so replies are checked against what the library produced. */
static void request_txn(scepc_txn *txn)
{
    X509_REQ *csr = make_csr(F.client_key, "secret");
    scepc_msg_params p = { 0 };
    uint8_t *der;
    size_t len;
    build(&p, csr, &der, &len, txn, SCEPC_OK);
    scepc_free(der);
    X509_REQ_free(csr);
}

static int parse_rep(const struct rep *r, scepc_result *res)
{
    scepc_txn txn;
    size_t len;
    uint8_t *der;
    int rc;

    request_txn(&txn);
    der = make_certrep(r, &txn, &len);
    scepc_expect exp = { .txn = &txn, .signer_cert = F.signer, .signer_key = F.client_key,
                         .subject_key = F.client_key };
    memset(res, 0x5a, sizeof(*res));
    rc = scepc_parse_certrep(F.ctx, der, len, F.set, &exp, res);
    OPENSSL_free(der);
    ERR_clear_error();
    return rc;
}

static void test_certrep_success(void **state)
{
    struct rep r = { 0 };
    scepc_result res;

    assert_int_equal(parse_rep(&r, &res), SCEPC_OK);
    assert_int_equal(res.status, SCEPC_SUCCESS);
    assert_int_equal(res.failinfo, SCEPC_FAIL_NONE);
    assert_null(res.failinfo_text);
    assert_int_equal(sk_X509_num(res.certs), 2);
    assert_non_null(res.cert);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(res.cert), F.client_key), 1);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(res.cert), F.subject), 0);
    scepc_result_clear(&res);
    assert_null(res.certs);
    scepc_result_clear(&res);
    scepc_result_clear(NULL);
    (void)state;
}

static void test_certrep_failure_pending(void **state)
{
    struct rep r = { .status = "2", .failinfo = "4", .failtext = "no such certificate" };
    scepc_result res;

    assert_int_equal(parse_rep(&r, &res), SCEPC_OK);
    assert_int_equal(res.status, SCEPC_FAILURE);
    assert_int_equal(res.failinfo, SCEPC_FAIL_BADCERTID);
    assert_string_equal(res.failinfo_text, "no such certificate");
    assert_null(res.certs);
    assert_null(res.cert);
    scepc_result_clear(&res);

    for (int fi = 0; fi <= 4; fi++) {
        char v[2] = { (char)('0' + fi), 0 };
        struct rep r2 = { .status = "2", .failinfo = v };
        assert_int_equal(parse_rep(&r2, &res), SCEPC_OK);
        assert_int_equal(res.failinfo, fi);
        assert_null(res.failinfo_text);
        scepc_result_clear(&res);
    }
    struct rep r3 = { .status = "3" };
    assert_int_equal(parse_rep(&r3, &res), SCEPC_OK);
    assert_int_equal(res.status, SCEPC_PENDING);
    assert_int_equal(res.failinfo, SCEPC_FAIL_NONE);
    scepc_result_clear(&res);
    (void)state;
}

static void test_certrep_validation(void **state)
{
    static const uint8_t zero[16] = { 0 };
    scepc_result res;
    struct { struct rep r; int err; } t[] = {
        { { .txid = "someone-else" }, SCEPC_E_REP_TXID },
        { { .rnonce = zero }, SCEPC_E_REP_RECIPIENT_NONCE },
        { { .snonce_len = -1 }, SCEPC_E_REP_SENDER_NONCE },
        { { .snonce_len = 8 }, SCEPC_E_REP_SENDER_NONCE },
        { { .msgtype = "19" }, SCEPC_E_REP_MSGTYPE },
        { { .msgtype = "3x" }, SCEPC_E_REP_MSGTYPE },
        { { .corrupt = 1 }, SCEPC_E_REP_SIGNATURE },
        { { .status = "2", .corrupt = 1 }, SCEPC_E_REP_SIGNATURE },
        /* Signed by the CA while the set names the RA as CertRep signer. */
        { { .sign_cert = F.ca, .sign_key = F.ca_key }, SCEPC_E_REP_SIGNER },
        { { .issued_key = F.other_key }, SCEPC_E_REP_KEY_MISMATCH },
        { { .encrypt_to = F.ra }, SCEPC_E_REP_DECRYPT },
        { { .no_content = 1 }, SCEPC_E_REP_NO_CONTENT },
        { { .status = "1" }, SCEPC_E_REP_STATUS },
        { { .status = "2" }, SCEPC_E_REP_FAILINFO },
        { { .status = "2", .failinfo = "5" }, SCEPC_E_REP_FAILINFO },
    };

    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int rc = parse_rep(&t[i].r, &res);
        if (rc != t[i].err)
            print_error("case %zu: got %s, want %s\n", i, scepc_errname(rc),
                        scepc_errname(t[i].err));
        assert_int_equal(rc, t[i].err);
        /* res is untouched on failure. */
        assert_int_equal(res.status, 0x5a5a5a5a);
    }
    (void)state;
}

static void test_certrep_garbage(void **state)
{
    scepc_txn txn;
    scepc_result res;
    scepc_expect exp = { .txn = &txn, .signer_cert = F.signer, .signer_key = F.client_key };
    unsigned char *der = NULL;
    int len;

    request_txn(&txn);
    assert_int_equal(scepc_parse_certrep(F.ctx, (const uint8_t *)"\x30\x03\x02\x01\x01", 5, F.set,
                                         &exp, &res), SCEPC_E_REP_PARSE);
    /* A SignedData without signers (the GetCACert kind) is no CertRep. */
    STACK_OF(X509) *sk = sk_X509_new_null();
    sk_X509_push(sk, F.ca);
    der = certs_only(sk, &len);
    assert_int_equal(scepc_parse_certrep(F.ctx, der, (size_t)len, F.set, &exp, &res),
                     SCEPC_E_REP_PARSE);
    /* A truncated CertRep. */
    struct rep r = { 0 };
    size_t rlen;
    uint8_t *rep = make_certrep(&r, &txn, &rlen);
    assert_int_equal(scepc_parse_certrep(F.ctx, rep, rlen / 2, F.set, &exp, &res),
                     SCEPC_E_REP_PARSE);
    /* GetCert-style expectation (no subject key): first cert returned. */
    assert_int_equal(scepc_parse_certrep(F.ctx, rep, rlen, F.set, &exp, &res), SCEPC_OK);
    assert_ptr_equal(res.cert, sk_X509_value(res.certs, 0));
    scepc_result_clear(&res);
    assert_int_equal(scepc_parse_certrep(F.ctx, rep, rlen, F.set, NULL, &res), SCEPC_E_ARG);
    OPENSSL_free(rep);
    OPENSSL_free(der);
    sk_X509_free(sk);
    ERR_clear_error();
    (void)state;
}

/* ---- misc ---- */

static void test_errors_and_names(void **state)
{
    for (int i = 0; i < SCEPC_E__COUNT; i++) {
        assert_non_null(scepc_strerror(i));
        for (int j = 0; j < i; j++)
            assert_string_not_equal(scepc_errname(i), scepc_errname(j));
    }
    assert_string_equal(scepc_errname(SCEPC_E_REP_TXID), "REP_TXID");
    assert_string_equal(scepc_strerror(-1), "unknown error");
    assert_string_equal(scepc_errname(SCEPC_E__COUNT), "UNKNOWN");
    assert_string_equal(scepc_status_name(SCEPC_PENDING), "PENDING");
    assert_string_equal(scepc_status_name(1), "?");
    assert_string_equal(scepc_failinfo_name(SCEPC_FAIL_BADMESSAGECHECK), "badMessageCheck");
    assert_string_equal(scepc_failinfo_name(SCEPC_FAIL_NONE), "-");
    assert_string_equal(scepc_failinfo_name(7), "?");

    scepc_md md;
    scepc_cipher c;
    assert_int_equal(scepc_md_from_name("SHA512", &md), SCEPC_OK);
    assert_int_equal(md, SCEPC_MD_SHA512);
    assert_int_equal(scepc_md_from_name("md5", &md), SCEPC_E_ARG);
    assert_int_equal(scepc_cipher_from_name("des3", &c), SCEPC_OK);
    assert_int_equal(c, SCEPC_CIPHER_DES3);
    assert_int_equal(scepc_cipher_from_name("des", &c), SCEPC_E_ARG);
    assert_non_null(scepc_ctx_md(F.ctx, SCEPC_MD_SHA384));

    /* A library context whose only provider offers no algorithms. */
    OSSL_LIB_CTX *lib = OSSL_LIB_CTX_new();
    OSSL_PROVIDER *null = OSSL_PROVIDER_load(lib, "null");
    scepc_ctx *ctx = NULL;
    assert_non_null(null);
    assert_int_equal(scepc_ctx_create(lib, "provider=null", &ctx), SCEPC_E_ALG);
    assert_null(ctx);
    OSSL_PROVIDER_unload(null);
    OSSL_LIB_CTX_free(lib);
    ERR_clear_error();
    scepc_ctx_destroy(NULL);
    assert_null(scepc_ctx_cipher(F.ctx, SCEPC_CIPHER__COUNT));
    (void)state;
}

static void test_files(void **state)
{
    char dir[] = "/tmp/test_client_XXXXXX";
    char path[256];
    X509 *c = NULL;
    EVP_PKEY *k = NULL;
    uint8_t *data = NULL;
    size_t len = 0;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/c.pem", dir);
    assert_int_equal(scepc_write_cert(path, F.ca, 1), SCEPC_OK);
    assert_int_equal(scepc_read_cert(path, &c), SCEPC_OK);
    assert_int_equal(X509_cmp(c, F.ca), 0);
    X509_free(c);
    unlink(path);
    snprintf(path, sizeof(path), "%s/c.der", dir);
    assert_int_equal(scepc_write_cert(path, F.ra, 0), SCEPC_OK);
    assert_int_equal(scepc_read_cert(path, &c), SCEPC_OK);
    assert_int_equal(X509_cmp(c, F.ra), 0);
    X509_free(c);
    c = NULL;
    assert_int_equal(scepc_read_file(path, &data, &len), SCEPC_OK);
    assert_int_equal(len, (size_t)i2d_X509(F.ra, NULL));
    scepc_free(data);
    unlink(path);
    snprintf(path, sizeof(path), "%s/k.pem", dir);
    assert_int_equal(scepc_write_key(path, F.client_key), SCEPC_OK);
    assert_int_equal(scepc_read_key(F.ctx, path, &k), SCEPC_OK);
    assert_int_equal(EVP_PKEY_eq(k, F.client_key), 1);
    EVP_PKEY_free(k);
    k = NULL;
    /* Not a certificate. */
    assert_int_equal(scepc_read_cert(path, &c), SCEPC_E_CRYPTO);
    unlink(path);
    assert_int_equal(scepc_read_key(F.ctx, path, &k), SCEPC_E_IO);
    assert_int_equal(scepc_read_cert(path, &c), SCEPC_E_IO);
    snprintf(path, sizeof(path), "%s/no/such/dir", dir);
    assert_int_equal(scepc_write_file(path, "x", 1), SCEPC_E_IO);
    assert_null(c);
    assert_null(k);
    rmdir(dir);
    ERR_clear_error();
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_cacert_single),
        cmocka_unit_test(test_cacert_chain),
        cmocka_unit_test(test_name_parse),
        cmocka_unit_test(test_san_parse),
        cmocka_unit_test(test_csr),
        cmocka_unit_test(test_self_signed_and_keys),
        cmocka_unit_test(test_pkcsreq_message),
        cmocka_unit_test(test_ciphers_and_oaep),
        cmocka_unit_test(test_other_message_types),
        cmocka_unit_test(test_negative_knobs),
        cmocka_unit_test(test_certrep_success),
        cmocka_unit_test(test_certrep_failure_pending),
        cmocka_unit_test(test_certrep_validation),
        cmocka_unit_test(test_certrep_garbage),
        cmocka_unit_test(test_errors_and_names),
        cmocka_unit_test(test_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
