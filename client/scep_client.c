/* scepc: the client context, pkiMessage building and CertRep parsing (RFC 8894 section 3). */
#include "client/scep_client.h"

#include <limits.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

enum scepc_oid {
    OID_MSGTYPE, OID_STATUS, OID_FAILINFO, OID_SNONCE, OID_RNONCE, OID_TXID, OID_FAILTEXT,
    OID__COUNT
};

static const char *const oid_text[OID__COUNT] = {
    [OID_MSGTYPE] = "2.16.840.1.113733.1.9.2",
    [OID_STATUS] = "2.16.840.1.113733.1.9.3",
    [OID_FAILINFO] = "2.16.840.1.113733.1.9.4",
    [OID_SNONCE] = "2.16.840.1.113733.1.9.5",
    [OID_RNONCE] = "2.16.840.1.113733.1.9.6",
    [OID_TXID] = "2.16.840.1.113733.1.9.7",
    [OID_FAILTEXT] = "1.3.6.1.5.5.7.24.1",
};

static const char *const md_names[SCEPC_MD__COUNT] = {
    [SCEPC_MD_SHA1] = "SHA1", [SCEPC_MD_SHA256] = "SHA2-256",
    [SCEPC_MD_SHA384] = "SHA2-384", [SCEPC_MD_SHA512] = "SHA2-512",
};

static const char *const cipher_names[SCEPC_CIPHER__COUNT] = {
    [SCEPC_CIPHER_AES128] = "AES-128-CBC", [SCEPC_CIPHER_AES192] = "AES-192-CBC",
    [SCEPC_CIPHER_AES256] = "AES-256-CBC", [SCEPC_CIPHER_DES3] = "DES-EDE3-CBC",
};

/* OIDs are private ASN1_OBJECTs rather than registered NIDs, so the library needs no
 * process-wide registration and coexists with whatever the server code registers. */
struct scepc_ctx {
    OSSL_LIB_CTX *libctx;
    char *propq;
    EVP_MD *md[SCEPC_MD__COUNT];
    EVP_CIPHER *cipher[SCEPC_CIPHER__COUNT];
    ASN1_OBJECT *oid[OID__COUNT];
};

void scepc_ctx_destroy(scepc_ctx *ctx)
{
    if (!ctx)
        return;
    for (int i = 0; i < SCEPC_MD__COUNT; i++)
        EVP_MD_free(ctx->md[i]);
    for (int i = 0; i < SCEPC_CIPHER__COUNT; i++)
        EVP_CIPHER_free(ctx->cipher[i]);
    for (int i = 0; i < OID__COUNT; i++)
        ASN1_OBJECT_free(ctx->oid[i]);
    OPENSSL_free(ctx->propq);
    OPENSSL_free(ctx);
}

int scepc_ctx_create(OSSL_LIB_CTX *libctx, const char *propq, scepc_ctx **out)
{
    int rc = SCEPC_E_NOMEM;
    scepc_ctx *ctx = OPENSSL_zalloc(sizeof(*ctx));

    if (!ctx || (propq && !(ctx->propq = OPENSSL_strdup(propq))))
        goto out;
    ctx->libctx = libctx;
    for (int i = 0; i < OID__COUNT; i++)
        if (!(ctx->oid[i] = OBJ_txt2obj(oid_text[i], 1)))
            goto out;
    /* Optional algorithms (SHA-1, DES3) may be absent; their absence shows when used. */
    ERR_set_mark();
    for (int i = 0; i < SCEPC_MD__COUNT; i++)
        ctx->md[i] = EVP_MD_fetch(libctx, md_names[i], propq);
    for (int i = 0; i < SCEPC_CIPHER__COUNT; i++)
        ctx->cipher[i] = EVP_CIPHER_fetch(libctx, cipher_names[i], propq);
    ERR_pop_to_mark();
    rc = ctx->md[SCEPC_MD_SHA256] && ctx->cipher[SCEPC_CIPHER_AES128] ? SCEPC_OK : SCEPC_E_ALG;
out:
    if (rc == SCEPC_OK) {
        *out = ctx;
        ctx = NULL;
    }
    scepc_ctx_destroy(ctx);
    return rc;
}

const EVP_MD *scepc_ctx_md(const scepc_ctx *ctx, scepc_md md)
{
    return md < SCEPC_MD__COUNT ? ctx->md[md] : NULL;
}

const EVP_CIPHER *scepc_ctx_cipher(const scepc_ctx *ctx, scepc_cipher cipher)
{
    return cipher < SCEPC_CIPHER__COUNT ? ctx->cipher[cipher] : NULL;
}

OSSL_LIB_CTX *scepc_ctx_libctx(const scepc_ctx *ctx) { return ctx->libctx; }
const char *scepc_ctx_propq(const scepc_ctx *ctx) { return ctx->propq; }

/* ---- pkiMessage ---- */

void scepc_hex(const uint8_t *b, size_t n, int upper, char *out)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

int scepc_txid_from_key(const scepc_ctx *ctx, const EVP_PKEY *key, char out[SCEPC_TXID_MAX + 1])
{
    unsigned char *spki = NULL;
    unsigned char dg[EVP_MAX_MD_SIZE];
    unsigned int dglen = 0;
    int n, rc = SCEPC_E_CRYPTO;

    if (!key)
        return SCEPC_E_ARG;
    if ((n = i2d_PUBKEY(key, &spki)) <= 0)
        goto out;
    if (!EVP_Digest(spki, (size_t)n, dg, &dglen, ctx->md[SCEPC_MD_SHA256], NULL))
        goto out;
    scepc_hex(dg, dglen, 1, out);
    rc = SCEPC_OK;
out:
    OPENSSL_free(spki);
    return rc;
}

/* DER SEQUENCE { a, b } of two DER encodings. */
static int der_seq2(const unsigned char *a, int alen, const unsigned char *b, int blen,
                    unsigned char **out, int *outlen)
{
    int total = ASN1_object_size(1, alen + blen, V_ASN1_SEQUENCE);
    unsigned char *buf, *p;

    if (total <= 0 || !(buf = OPENSSL_malloc((size_t)total)))
        return SCEPC_E_NOMEM;
    p = buf;
    ASN1_put_object(&p, 1, alen + blen, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(p, a, (size_t)alen);
    memcpy(p + alen, b, (size_t)blen);
    *out = buf;
    *outlen = total;
    return SCEPC_OK;
}

/* The content of the pkcsPKIEnvelope for each message type. */
static int build_inner(const scepc_msg_params *p, unsigned char **out, int *outlen)
{
    int rc = SCEPC_E_CRYPTO, n1 = 0, n2 = 0;
    unsigned char *d1 = NULL, *d2 = NULL;
    const X509_NAME *issuer = p->issuer ? p->issuer : X509_get_subject_name(scepc_caset_ca(p->ca));

    switch (p->msgtype) {
    case SCEPC_MSG_PKCSREQ:
    case SCEPC_MSG_RENEWALREQ:
        if (!p->csr)
            return SCEPC_E_ARG;
        if ((n1 = i2d_X509_REQ(p->csr, &d1)) <= 0)
            goto out;
        *out = d1;
        *outlen = n1;
        d1 = NULL;
        rc = SCEPC_OK;
        break;
    case SCEPC_MSG_CERTPOLL: {
        /* IssuerAndSubject ::= SEQUENCE { issuer Name, subject Name } */
        const X509_NAME *subject = p->csr ? X509_REQ_get_subject_name(p->csr) : p->subject;
        if (!subject)
            return SCEPC_E_ARG;
        if ((n1 = i2d_X509_NAME(issuer, &d1)) <= 0 || (n2 = i2d_X509_NAME(subject, &d2)) <= 0)
            goto out;
        rc = der_seq2(d1, n1, d2, n2, out, outlen);
        break;
    }
    case SCEPC_MSG_GETCERT:
    case SCEPC_MSG_GETCRL:
        /* IssuerAndSerialNumber ::= SEQUENCE { issuer Name, serialNumber INTEGER } */
        if (!p->serial)
            return SCEPC_E_ARG;
        if ((n1 = i2d_X509_NAME(issuer, &d1)) <= 0
            || (n2 = i2d_ASN1_INTEGER(p->serial, &d2)) <= 0)
            goto out;
        rc = der_seq2(d1, n1, d2, n2, out, outlen);
        break;
    default:
        rc = SCEPC_E_ARG;
        break;
    }
out:
    OPENSSL_free(d1);
    OPENSSL_free(d2);
    return rc;
}

/* pkcsPKIEnvelope: ContentInfo(EnvelopedData) to the CA set's recipient. */
static int build_envelope(const scepc_ctx *ctx, const scepc_msg_params *p,
                          const unsigned char *inner, int inner_len, unsigned char **out,
                          int *outlen)
{
    int rc = SCEPC_E_CRYPTO, n;
    CMS_ContentInfo *env = NULL;
    CMS_RecipientInfo *ri;
    BIO *in = NULL;
    unsigned char *der = NULL;
    const EVP_CIPHER *cipher = scepc_ctx_cipher(ctx, p->cipher);
    const unsigned int flags = CMS_BINARY | CMS_PARTIAL;

    if (!cipher)
        return SCEPC_E_ALG;
    if (!(in = BIO_new_mem_buf(inner, inner_len))
        || !(env = CMS_encrypt_ex(NULL, NULL, cipher, flags, ctx->libctx, ctx->propq))
        || !(ri = CMS_add1_recipient_cert(env, scepc_caset_recipient(p->ca),
                                          flags | (p->oaep ? CMS_KEY_PARAM : 0))))
        goto out;
    if (p->oaep) {
        EVP_PKEY_CTX *pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
        if (!pctx || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0) {
            rc = SCEPC_E_ALG;
            goto out;
        }
    }
    if (!CMS_final(env, in, NULL, CMS_BINARY) || (n = i2d_CMS_ContentInfo(env, &der)) <= 0)
        goto out;
    *out = der;
    *outlen = n;
    rc = SCEPC_OK;
out:
    CMS_ContentInfo_free(env);
    BIO_free(in);
    return rc;
}

static int add_attr(CMS_SignerInfo *si, const ASN1_OBJECT *oid, int type, const void *data,
                    int len)
{
    return CMS_signed_add1_attr_by_OBJ(si, oid, type, data, len) ? SCEPC_OK : SCEPC_E_CRYPTO;
}

/* Flips the last byte of the signature value: still well-formed DER for RSA and ECDSA,
 * but no longer a valid signature. */
static int corrupt_signature(CMS_SignerInfo *si)
{
    ASN1_OCTET_STRING *sig = CMS_SignerInfo_get0_signature(si);
    unsigned char *copy;
    int len, rc = SCEPC_E_CRYPTO;

    if (!sig || (len = ASN1_STRING_length(sig)) <= 0)
        return rc;
    if (!(copy = OPENSSL_memdup(ASN1_STRING_get0_data(sig), (size_t)len)))
        return SCEPC_E_NOMEM;
    copy[len - 1] ^= 0x01;
    if (ASN1_STRING_set(sig, copy, len))
        rc = SCEPC_OK;
    OPENSSL_free(copy);
    return rc;
}

int scepc_build_pkimessage(const scepc_ctx *ctx, const scepc_msg_params *p, uint8_t **der,
                           size_t *der_len, scepc_txn *txn)
{
    int rc = SCEPC_E_CRYPTO, inner_len = 0, env_len = 0, n;
    unsigned char *inner = NULL, *env = NULL, *msg = NULL;
    CMS_ContentInfo *cms = NULL;
    CMS_SignerInfo *si;
    BIO *envbio = NULL;
    X509 *fake = NULL, *sign_cert;
    EVP_PKEY *sign_key;
    scepc_txn t;
    char num[16];
    const EVP_MD *md;
    const unsigned int flags = CMS_BINARY | CMS_PARTIAL | CMS_NOSMIMECAP;

    if (!ctx || !p || !der || !der_len || !txn || !p->signer_cert || !p->signer_key || !p->ca)
        return SCEPC_E_ARG;
    if (!(md = scepc_ctx_md(ctx, p->md)))
        return SCEPC_E_ALG;
    memset(&t, 0, sizeof(t));
    if (p->txid) {
        size_t l = strlen(p->txid);
        if (l == 0 || l > SCEPC_TXID_MAX)
            return SCEPC_E_TXID;
        memcpy(t.txid, p->txid, l + 1);
    } else {
        const EVP_PKEY *k = p->csr ? X509_REQ_get0_pubkey((X509_REQ *)p->csr)
                                   : X509_get0_pubkey(p->signer_cert);
        if ((rc = scepc_txid_from_key(ctx, k, t.txid)) != SCEPC_OK)
            return rc;
    }
    if (p->sender_nonce)
        memcpy(t.sender_nonce, p->sender_nonce, SCEPC_NONCE_LEN);
    else if (RAND_bytes_ex(ctx->libctx, t.sender_nonce, SCEPC_NONCE_LEN, 0) <= 0)
        return SCEPC_E_CRYPTO;
    t.msgtype = p->wire_msgtype ? p->wire_msgtype : p->msgtype;

    if ((rc = build_inner(p, &inner, &inner_len)) != SCEPC_OK
        || (rc = build_envelope(ctx, p, inner, inner_len, &env, &env_len)) != SCEPC_OK)
        goto out;
    rc = SCEPC_E_CRYPTO;

    /* With wrong_key, sign through a copy of the signer cert carrying the wrong public key:
     * the SignerIdentifier (issuer + serial) still names signer_cert, which is the cert the
     * message carries, but the signature is made with another key. */
    sign_cert = p->signer_cert;
    sign_key = p->signer_key;
    if (p->wrong_key) {
        if (!(fake = X509_dup(p->signer_cert)) || !X509_set_pubkey(fake, p->wrong_key))
            goto out;
        sign_cert = fake;
        sign_key = p->wrong_key;
    }
    if (!(envbio = BIO_new_mem_buf(env, env_len))
        || !(cms = CMS_sign_ex(NULL, NULL, NULL, NULL, flags, ctx->libctx, ctx->propq))
        || !(si = CMS_add1_signer(cms, sign_cert, sign_key, md,
                                  flags | (p->wrong_key ? CMS_NOCERTS : 0))))
        goto out;
    if (p->wrong_key && !CMS_add1_cert(cms, p->signer_cert))
        goto out;
    snprintf(num, sizeof(num), "%d", t.msgtype);
    if ((rc = add_attr(si, ctx->oid[OID_TXID], V_ASN1_PRINTABLESTRING, t.txid,
                       (int)strlen(t.txid))) != SCEPC_OK
        || (rc = add_attr(si, ctx->oid[OID_MSGTYPE], V_ASN1_PRINTABLESTRING, num,
                          (int)strlen(num))) != SCEPC_OK
        || (rc = add_attr(si, ctx->oid[OID_SNONCE], V_ASN1_OCTET_STRING, t.sender_nonce,
                          SCEPC_NONCE_LEN)) != SCEPC_OK)
        goto out;
    rc = SCEPC_E_CRYPTO;
    if (!CMS_final(cms, envbio, NULL, CMS_BINARY))
        goto out;
    if (p->corrupt_signature && (rc = corrupt_signature(si)) != SCEPC_OK)
        goto out;
    rc = SCEPC_E_CRYPTO;
    if ((n = i2d_CMS_ContentInfo(cms, &msg)) <= 0)
        goto out;
    rc = SCEPC_OK;
out:
    if (rc == SCEPC_OK) {
        *der = msg;
        *der_len = (size_t)n;
        *txn = t;
        msg = NULL;
    }
    OPENSSL_free(msg);
    OPENSSL_free(inner);
    OPENSSL_free(env);
    BIO_free(envbio);
    CMS_ContentInfo_free(cms);
    X509_free(fake);
    return rc;
}

/* ---- CertRep ---- */

void scepc_result_clear(scepc_result *r)
{
    if (!r)
        return;
    OPENSSL_free(r->failinfo_text);
    sk_X509_pop_free(r->certs, X509_free);
    sk_X509_CRL_pop_free(r->crls, X509_CRL_free);
    memset(r, 0, sizeof(*r));
    r->failinfo = SCEPC_FAIL_NONE;
}

/* The single value of a single-valued signed attribute, if it has the given type. */
static const ASN1_STRING *get_attr(const scepc_ctx *ctx, const CMS_SignerInfo *si, int oid,
                                   int type)
{
    return CMS_signed_get0_data_by_OBJ(si, ctx->oid[oid], -3, type);
}

/* A PrintableString holding a small decimal number (messageType, pkiStatus, failInfo). */
static int get_num(const scepc_ctx *ctx, const CMS_SignerInfo *si, int oid, int *out)
{
    const ASN1_STRING *s = get_attr(ctx, si, oid, V_ASN1_PRINTABLESTRING);
    const unsigned char *d;
    int len, v = 0;

    if (!s || (len = ASN1_STRING_length(s)) < 1 || len > 4)
        return 0;
    d = ASN1_STRING_get0_data(s);
    for (int i = 0; i < len; i++) {
        if (d[i] < '0' || d[i] > '9')
            return 0;
        v = v * 10 + (d[i] - '0');
    }
    *out = v;
    return 1;
}

static CMS_ContentInfo *d2i_cms(const scepc_ctx *ctx, const unsigned char *der, long len)
{
    CMS_ContentInfo *cms = CMS_ContentInfo_new_ex(ctx->libctx, ctx->propq);
    const unsigned char *p = der;

    if (cms && !d2i_CMS_ContentInfo(&cms, &p, len)) {
        CMS_ContentInfo_free(cms);
        cms = NULL;
    }
    return cms;
}

/* SUCCESS: decrypt the envelope with our key, then take the certs-only SignedData apart. */
static int open_success(const scepc_ctx *ctx, CMS_ContentInfo *cms, const scepc_expect *exp,
                        scepc_result *res)
{
    int rc;
    ASN1_OCTET_STRING **pos = CMS_get0_content(cms);
    CMS_ContentInfo *env = NULL, *inner = NULL;
    BIO *plain = NULL;
    char *data = NULL;
    long dlen;

    if (!pos || !*pos || ASN1_STRING_length(*pos) <= 0)
        return SCEPC_E_REP_NO_CONTENT;
    rc = SCEPC_E_REP_DECRYPT;
    if (!exp->signer_key
        || !(env = d2i_cms(ctx, ASN1_STRING_get0_data(*pos), ASN1_STRING_length(*pos)))
        || OBJ_obj2nid(CMS_get0_type(env)) != NID_pkcs7_enveloped
        || !(plain = BIO_new(BIO_s_mem()))
        || !CMS_decrypt(env, exp->signer_key, exp->signer_cert, NULL, plain, CMS_BINARY))
        goto out;
    rc = SCEPC_E_REP_INNER;
    if ((dlen = BIO_get_mem_data(plain, &data)) <= 0
        || !(inner = d2i_cms(ctx, (const unsigned char *)data, dlen))
        || OBJ_obj2nid(CMS_get0_type(inner)) != NID_pkcs7_signed)
        goto out;
    res->certs = CMS_get1_certs(inner);
    res->crls = CMS_get1_crls(inner);
    rc = SCEPC_E_REP_NO_CERT;
    if (sk_X509_num(res->certs) <= 0 && sk_X509_CRL_num(res->crls) <= 0)
        goto out;
    rc = SCEPC_OK;
    if (exp->subject_key) {
        rc = SCEPC_E_REP_KEY_MISMATCH;
        for (int i = 0; i < sk_X509_num(res->certs); i++)
            if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(res->certs, i)), exp->subject_key)
                == 1) {
                res->cert = sk_X509_value(res->certs, i);
                rc = SCEPC_OK;
                break;
            }
    } else if (sk_X509_num(res->certs) > 0) {
        res->cert = sk_X509_value(res->certs, 0);
    }
out:
    CMS_ContentInfo_free(env);
    CMS_ContentInfo_free(inner);
    BIO_free(plain);
    return rc;
}

int scepc_parse_certrep(const scepc_ctx *ctx, const uint8_t *der, size_t len,
                        const scepc_caset *ca, const scepc_expect *exp, scepc_result *out)
{
    int rc = SCEPC_E_REP_PARSE, v;
    CMS_ContentInfo *cms = NULL;
    CMS_SignerInfo *si;
    STACK_OF(CMS_SignerInfo) *sis;
    STACK_OF(X509) *signer = NULL;
    ASN1_OCTET_STRING **pos;
    BIO *empty = NULL;
    const ASN1_STRING *s;
    scepc_result res;
    X509 *expected;

    memset(&res, 0, sizeof(res));
    res.failinfo = SCEPC_FAIL_NONE;
    if (!ctx || !der || !ca || !exp || !exp->txn || !out)
        return SCEPC_E_ARG;
    if (len == 0 || len > LONG_MAX || !(cms = d2i_cms(ctx, der, (long)len))
        || OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed
        || !(sis = CMS_get0_SignerInfos(cms)) || sk_CMS_SignerInfo_num(sis) != 1)
        goto out;
    si = sk_CMS_SignerInfo_value(sis, 0);

    expected = scepc_caset_signer(ca);
    rc = SCEPC_E_REP_SIGNER;
    if (CMS_SignerInfo_cert_cmp(si, expected) != 0)
        goto out;
    /* Only the expected signer is offered (CMS_NOINTERN), so certificates the reply carries
     * cannot stand in for it. FAILURE and PENDING may omit eContent: verify over nothing. */
    rc = SCEPC_E_NOMEM;
    if (!(signer = sk_X509_new_null()) || !sk_X509_push(signer, expected))
        goto out;
    pos = CMS_get0_content(cms);
    if ((!pos || !*pos) && !(empty = BIO_new_mem_buf("", 0)))
        goto out;
    rc = SCEPC_E_REP_SIGNATURE;
    if (CMS_verify(cms, signer, NULL, empty, NULL,
                   CMS_NO_SIGNER_CERT_VERIFY | CMS_NOINTERN | CMS_BINARY) <= 0)
        goto out;

    rc = SCEPC_E_REP_MSGTYPE;
    if (!get_num(ctx, si, OID_MSGTYPE, &v) || v != SCEPC_MSG_CERTREP)
        goto out;
    rc = SCEPC_E_REP_TXID;
    s = get_attr(ctx, si, OID_TXID, V_ASN1_PRINTABLESTRING);
    if (!s || (size_t)ASN1_STRING_length(s) != strlen(exp->txn->txid)
        || memcmp(ASN1_STRING_get0_data(s), exp->txn->txid, strlen(exp->txn->txid)) != 0)
        goto out;
    rc = SCEPC_E_REP_RECIPIENT_NONCE;
    s = get_attr(ctx, si, OID_RNONCE, V_ASN1_OCTET_STRING);
    if (!s || ASN1_STRING_length(s) != SCEPC_NONCE_LEN
        || memcmp(ASN1_STRING_get0_data(s), exp->txn->sender_nonce, SCEPC_NONCE_LEN) != 0)
        goto out;
    rc = SCEPC_E_REP_SENDER_NONCE;
    s = get_attr(ctx, si, OID_SNONCE, V_ASN1_OCTET_STRING);
    if (!s || ASN1_STRING_length(s) != SCEPC_NONCE_LEN)
        goto out;
    memcpy(res.server_nonce, ASN1_STRING_get0_data(s), SCEPC_NONCE_LEN);
    rc = SCEPC_E_REP_STATUS;
    if (!get_num(ctx, si, OID_STATUS, &res.status)
        || (res.status != SCEPC_SUCCESS && res.status != SCEPC_FAILURE
            && res.status != SCEPC_PENDING))
        goto out;

    if (res.status == SCEPC_FAILURE) {
        rc = SCEPC_E_REP_FAILINFO;
        if (!get_num(ctx, si, OID_FAILINFO, &res.failinfo) || res.failinfo < 0
            || res.failinfo > SCEPC_FAIL_BADCERTID)
            goto out;
        s = get_attr(ctx, si, OID_FAILTEXT, V_ASN1_UTF8STRING);
        rc = SCEPC_E_NOMEM;
        if (s && !(res.failinfo_text = OPENSSL_strndup((const char *)ASN1_STRING_get0_data(s),
                                                       (size_t)ASN1_STRING_length(s))))
            goto out;
        rc = SCEPC_OK;
    } else if (res.status == SCEPC_SUCCESS) {
        rc = open_success(ctx, cms, exp, &res);
    } else {
        rc = SCEPC_OK;
    }
out:
    if (rc == SCEPC_OK) {
        *out = res;
    } else {
        scepc_result_clear(&res);
    }
    sk_X509_free(signer);
    BIO_free(empty);
    CMS_ContentInfo_free(cms);
    return rc;
}
