/* hsm/prov_signature.c: signature "RSA" (PKCS#1 v1.5) and "ECDSA" of the scepd-hsm provider.
 *
 * The message is hashed in software (the digest itself is no secret), then one C_Sign runs on
 * the token: CKM_RSA_PKCS over the DER DigestInfo, or CKM_ECDSA over the digest with the raw
 * r||s turned into a DER ECDSA-Sig-Value. PSS is refused: the pad mode and AlgorithmIdentifier
 * this context reports are what X509/CMS code writes into the structures it signs.
 */
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "hsm/internal.h"

typedef struct {
    int kind;                   /* HSM_KIND_RSA or HSM_KIND_EC */
    hsm_key *key;               /* borrowed: the EVP_PKEY_CTX keeps the EVP_PKEY alive */
    const EVP_MD *md;           /* from the provider's cache, not owned */
    EVP_MD_CTX *mdctx;
} sig_ctx;

static OSSL_FUNC_signature_newctx_fn rsa_newctx, ecdsa_newctx;
static OSSL_FUNC_signature_freectx_fn sig_freectx;
static OSSL_FUNC_signature_dupctx_fn sig_dupctx;
static OSSL_FUNC_signature_sign_init_fn sig_sign_init;
static OSSL_FUNC_signature_sign_fn sig_sign;
static OSSL_FUNC_signature_digest_sign_init_fn sig_digest_sign_init;
static OSSL_FUNC_signature_digest_sign_update_fn sig_digest_sign_update;
static OSSL_FUNC_signature_digest_sign_final_fn sig_digest_sign_final;
static OSSL_FUNC_signature_get_ctx_params_fn sig_get_ctx_params;
static OSSL_FUNC_signature_gettable_ctx_params_fn sig_gettable_ctx_params;
static OSSL_FUNC_signature_set_ctx_params_fn sig_set_ctx_params;
static OSSL_FUNC_signature_settable_ctx_params_fn sig_settable_ctx_params;

static void *newctx(int kind)
{
    sig_ctx *c = OPENSSL_zalloc(sizeof(*c));
    if (c != NULL)
        c->kind = kind;
    return c;
}

static void *rsa_newctx(void *provctx, const char *propq)
{
    return newctx(HSM_KIND_RSA);
}

static void *ecdsa_newctx(void *provctx, const char *propq)
{
    return newctx(HSM_KIND_EC);
}

static void sig_freectx(void *vctx)
{
    sig_ctx *c = vctx;
    if (c == NULL)
        return;
    EVP_MD_CTX_free(c->mdctx);
    OPENSSL_free(c);
}

static void *sig_dupctx(void *vctx)
{
    const sig_ctx *src = vctx;
    sig_ctx *c = OPENSSL_memdup(src, sizeof(*src));
    if (c == NULL)
        return NULL;
    c->mdctx = NULL;
    if (src->mdctx != NULL) {
        c->mdctx = EVP_MD_CTX_new();
        if (c->mdctx == NULL || !EVP_MD_CTX_copy_ex(c->mdctx, src->mdctx)) {
            sig_freectx(c);
            return NULL;
        }
    }
    return c;
}

static int set_md_by_name(sig_ctx *c, const char *name)
{
    const EVP_MD *legacy = EVP_get_digestbyname(name);
    const EVP_MD *md = legacy != NULL ? hsm_prov_md(EVP_MD_get_type(legacy)) : NULL;
    if (md == NULL) {
        hsm_set_error("digest %s not supported for HSM signatures", name);
        return 0;
    }
    c->md = md;
    return 1;
}

static int init_key(sig_ctx *c, void *provkey, const OSSL_PARAM params[])
{
    hsm_key *k = provkey;
    if (k == NULL || k->tok == NULL || k->kind != c->kind) {
        hsm_set_error("not a token private key of the right type");
        return 0;
    }
    c->key = k;
    return sig_set_ctx_params(c, params);
}

static int sig_sign_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
    sig_ctx *c = vctx;
    c->md = NULL;
    return init_key(c, provkey, params);
}

static int sig_digest_sign_init(void *vctx, const char *mdname, void *provkey,
                                const OSSL_PARAM params[])
{
    sig_ctx *c = vctx;
    if (!init_key(c, provkey, NULL))
        return 0;
    if (!set_md_by_name(c, mdname != NULL && *mdname != '\0' ? mdname : "SHA256"))
        return 0;
    if (c->mdctx == NULL && (c->mdctx = EVP_MD_CTX_new()) == NULL)
        return 0;
    if (!EVP_DigestInit_ex2(c->mdctx, c->md, NULL))
        return 0;
    return sig_set_ctx_params(c, params);
}

static int sig_digest_sign_update(void *vctx, const unsigned char *data, size_t datalen)
{
    sig_ctx *c = vctx;
    return c->mdctx != NULL && EVP_DigestUpdate(c->mdctx, data, datalen);
}

/* Raw r||s (two big-endian halves) to DER ECDSA-Sig-Value. */
static int ecdsa_raw_to_der(const unsigned char *raw, size_t len, unsigned char *out,
                            size_t *outlen, size_t outsize)
{
    int ok = 0;
    ECDSA_SIG *s = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, (int)(len / 2), NULL);
    BIGNUM *sv = BN_bin2bn(raw + len / 2, (int)(len / 2), NULL);
    int n;
    if (s == NULL || r == NULL || sv == NULL || len % 2 != 0)
        goto out;
    if (!ECDSA_SIG_set0(s, r, sv))
        goto out;
    r = sv = NULL;
    n = i2d_ECDSA_SIG(s, NULL);
    if (n <= 0 || (size_t)n > outsize)
        goto out;
    n = i2d_ECDSA_SIG(s, &out);
    *outlen = (size_t)n;
    ok = 1;
out:
    BN_free(r);
    BN_free(sv);
    ECDSA_SIG_free(s);
    return ok;
}

/* tbs is a digest (or, for RSA with no digest set, the exact block to pad). */
static int do_sign(sig_ctx *c, unsigned char *sig, size_t *siglen, size_t sigsize,
                   const unsigned char *tbs, size_t tbslen)
{
    unsigned char buf[EVP_MAX_MD_SIZE + 32];
    unsigned char raw[256];
    CK_MECHANISM mech = { 0, NULL, 0 };
    size_t need = (size_t)hsm_key_size(c->key);
    size_t n;

    if (sigsize < need) {
        hsm_set_error("signature buffer too small");
        return 0;
    }
    if (c->kind == HSM_KIND_RSA) {
        const unsigned char *pfx = NULL;
        size_t pfxlen = 0;
        mech.mechanism = CKM_RSA_PKCS;
        if (c->md != NULL) {
            if ((size_t)EVP_MD_get_size(c->md) != tbslen
                || !hsm_digest_info_prefix(EVP_MD_get_type(c->md), &pfx, &pfxlen))
                return 0;
            memcpy(buf, pfx, pfxlen);
            memcpy(buf + pfxlen, tbs, tbslen);
            tbs = buf;
            tbslen += pfxlen;
        }
        n = sigsize;
        if (hsm_p11_sign(c->key, &mech, tbs, tbslen, sig, &n) != CKR_OK)
            return 0;
        *siglen = n;
        return 1;
    }
    mech.mechanism = CKM_ECDSA;
    n = sizeof(raw);
    if (hsm_p11_sign(c->key, &mech, tbs, tbslen, raw, &n) != CKR_OK)
        return 0;
    return ecdsa_raw_to_der(raw, n, sig, siglen, sigsize);
}

static int sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                    const unsigned char *tbs, size_t tbslen)
{
    sig_ctx *c = vctx;
    if (c->key == NULL)
        return 0;
    if (sig == NULL) {
        *siglen = (size_t)hsm_key_size(c->key);
        return 1;
    }
    return do_sign(c, sig, siglen, sigsize, tbs, tbslen);
}

static int sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen,
                                 size_t sigsize)
{
    sig_ctx *c = vctx;
    unsigned char dgst[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (c->key == NULL || c->mdctx == NULL)
        return 0;
    if (sig == NULL) {
        *siglen = (size_t)hsm_key_size(c->key);
        return 1;
    }
    if (!EVP_DigestFinal_ex(c->mdctx, dgst, &dlen))
        return 0;
    return do_sign(c, sig, siglen, sigsize, dgst, dlen);
}

/* DER AlgorithmIdentifier of the signature: NULL parameters for RSA, absent for ECDSA. */
static int algorithm_id(const sig_ctx *c, OSSL_PARAM *p)
{
    int ok = 0, sigid = NID_undef, len;
    int mdnid = c->md != NULL ? EVP_MD_get_type(c->md) : NID_sha256;
    int pknid = c->kind == HSM_KIND_RSA ? NID_rsaEncryption : NID_X9_62_id_ecPublicKey;
    X509_ALGOR *a = NULL;
    unsigned char *der = NULL;

    if (!OBJ_find_sigid_by_algs(&sigid, mdnid, pknid))
        goto out;
    if ((a = X509_ALGOR_new()) == NULL)
        goto out;
    if (!X509_ALGOR_set0(a, OBJ_nid2obj(sigid),
                         c->kind == HSM_KIND_RSA ? V_ASN1_NULL : V_ASN1_UNDEF, NULL))
        goto out;
    if ((len = i2d_X509_ALGOR(a, &der)) <= 0)
        goto out;
    ok = OSSL_PARAM_set_octet_string(p, der, (size_t)len);
out:
    OPENSSL_free(der);
    X509_ALGOR_free(a);
    return ok;
}

static int sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    sig_ctx *c = vctx;
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) != NULL
        && !algorithm_id(c, p))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST)) != NULL
        && !OSSL_PARAM_set_utf8_string(p, c->md != NULL ? EVP_MD_get0_name(c->md) : ""))
        return 0;
    if (c->kind == HSM_KIND_RSA
        && (p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE)) != NULL) {
        int ok = p->data_type == OSSL_PARAM_UTF8_STRING
                     ? OSSL_PARAM_set_utf8_string(p, OSSL_PKEY_RSA_PAD_MODE_PKCSV15)
                     : OSSL_PARAM_set_int(p, RSA_PKCS1_PADDING);
        if (!ok)
            return 0;
    }
    return 1;
}

static const OSSL_PARAM *sig_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL),
        OSSL_PARAM_END,
    };
    return p;
}

static int sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    sig_ctx *c = vctx;
    const OSSL_PARAM *p;

    if (params == NULL)
        return 1;
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST);
    if (p != NULL) {
        const char *name = NULL;
        if (!OSSL_PARAM_get_utf8_string_ptr(p, &name) || !set_md_by_name(c, name))
            return 0;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE);
    if (p != NULL && c->kind == HSM_KIND_RSA) {
        int mode = 0;
        const char *s = NULL;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &s))
                return 0;
            mode = strcmp(s, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? RSA_PKCS1_PADDING : -1;
        } else if (!OSSL_PARAM_get_int(p, &mode)) {
            return 0;
        }
        if (mode != RSA_PKCS1_PADDING) {
            hsm_set_error("only RSA PKCS#1 v1.5 signatures are supported");
            return 0;
        }
    }
    return 1;
}

static const OSSL_PARAM *sig_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
        OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL),
        OSSL_PARAM_END,
    };
    return p;
}

#define F(id, fn) { OSSL_FUNC_SIGNATURE_##id, (void (*)(void))fn }
#define COMMON                                                                               \
    F(FREECTX, sig_freectx), F(DUPCTX, sig_dupctx), F(SIGN_INIT, sig_sign_init),             \
    F(SIGN, sig_sign), F(DIGEST_SIGN_INIT, sig_digest_sign_init),                            \
    F(DIGEST_SIGN_UPDATE, sig_digest_sign_update),                                           \
    F(DIGEST_SIGN_FINAL, sig_digest_sign_final), F(GET_CTX_PARAMS, sig_get_ctx_params),      \
    F(GETTABLE_CTX_PARAMS, sig_gettable_ctx_params), F(SET_CTX_PARAMS, sig_set_ctx_params),  \
    F(SETTABLE_CTX_PARAMS, sig_settable_ctx_params)

const OSSL_DISPATCH hsm_rsa_signature_functions[] = {
    F(NEWCTX, rsa_newctx), COMMON, { 0, NULL },
};

const OSSL_DISPATCH hsm_ecdsa_signature_functions[] = {
    F(NEWCTX, ecdsa_newctx), COMMON, { 0, NULL },
};
#undef COMMON
#undef F
