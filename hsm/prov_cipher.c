/* hsm/prov_cipher.c: asym-cipher "RSA" of the scepd-hsm provider (decryption only).
 *
 * PKCS#1 v1.5: C_Decrypt with CKM_RSA_PKCS. OAEP: C_Decrypt with CKM_RSA_PKCS_OAEP and the
 * requested hash / MGF1 / label. Some tokens (SoftHSM 2.6 among them) accept OAEP with SHA-1
 * and no label only; when the token rejects the parameters at C_DecryptInit, the block is
 * decrypted raw (CKM_RSA_X_509, still inside the token) and the OAEP encoding is checked here,
 * in constant time up to the final verdict.
 */
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

#include "hsm/internal.h"

typedef struct {
    hsm_key *key;               /* borrowed from the EVP_PKEY */
    int pad;                    /* RSA_PKCS1_PADDING or RSA_PKCS1_OAEP_PADDING */
    const EVP_MD *oaep_md;      /* NULL: SHA-1 */
    const EVP_MD *mgf1_md;      /* NULL: same as oaep_md */
    unsigned char *label;
    size_t labellen;
} ciph_ctx;

static OSSL_FUNC_asym_cipher_newctx_fn ciph_newctx;
static OSSL_FUNC_asym_cipher_freectx_fn ciph_freectx;
static OSSL_FUNC_asym_cipher_dupctx_fn ciph_dupctx;
static OSSL_FUNC_asym_cipher_decrypt_init_fn ciph_decrypt_init;
static OSSL_FUNC_asym_cipher_decrypt_fn ciph_decrypt;
static OSSL_FUNC_asym_cipher_get_ctx_params_fn ciph_get_ctx_params;
static OSSL_FUNC_asym_cipher_gettable_ctx_params_fn ciph_gettable_ctx_params;
static OSSL_FUNC_asym_cipher_set_ctx_params_fn ciph_set_ctx_params;
static OSSL_FUNC_asym_cipher_settable_ctx_params_fn ciph_settable_ctx_params;

static void *ciph_newctx(void *provctx)
{
    ciph_ctx *c = OPENSSL_zalloc(sizeof(*c));
    if (c != NULL)
        c->pad = RSA_PKCS1_PADDING;
    return c;
}

static void ciph_freectx(void *vctx)
{
    ciph_ctx *c = vctx;
    if (c == NULL)
        return;
    OPENSSL_free(c->label);
    OPENSSL_free(c);
}

static void *ciph_dupctx(void *vctx)
{
    const ciph_ctx *src = vctx;
    ciph_ctx *c = OPENSSL_memdup(src, sizeof(*src));
    if (c == NULL)
        return NULL;
    c->label = NULL;
    if (src->label != NULL && (c->label = OPENSSL_memdup(src->label, src->labellen)) == NULL) {
        ciph_freectx(c);
        return NULL;
    }
    return c;
}

static int ciph_decrypt_init(void *vctx, void *provkey, const OSSL_PARAM params[])
{
    ciph_ctx *c = vctx;
    hsm_key *k = provkey;
    if (k == NULL || k->tok == NULL || k->kind != HSM_KIND_RSA) {
        hsm_set_error("not an RSA token private key");
        return 0;
    }
    c->key = k;
    c->pad = RSA_PKCS1_PADDING;
    c->oaep_md = c->mgf1_md = NULL;
    OPENSSL_free(c->label);
    c->label = NULL;
    c->labellen = 0;
    return ciph_set_ctx_params(c, params);
}

static const EVP_MD *oaep_md(const ciph_ctx *c)
{
    return c->oaep_md != NULL ? c->oaep_md : hsm_prov_md(NID_sha1);
}

static const EVP_MD *mgf1_md(const ciph_ctx *c)
{
    return c->mgf1_md != NULL ? c->mgf1_md : oaep_md(c);
}

static int ck_hash(const EVP_MD *md, CK_MECHANISM_TYPE *hash, CK_RSA_PKCS_MGF_TYPE *mgf)
{
    switch (EVP_MD_get_type(md)) {
    case NID_sha1: *hash = CKM_SHA_1; *mgf = CKG_MGF1_SHA1; return 1;
    case NID_sha224: *hash = CKM_SHA224; *mgf = CKG_MGF1_SHA224; return 1;
    case NID_sha256: *hash = CKM_SHA256; *mgf = CKG_MGF1_SHA256; return 1;
    case NID_sha384: *hash = CKM_SHA384; *mgf = CKG_MGF1_SHA384; return 1;
    case NID_sha512: *hash = CKM_SHA512; *mgf = CKG_MGF1_SHA512; return 1;
    default: return 0;
    }
}

/* XORs MGF1(seed) into buf (RFC 8017 B.2.1). */
static int mgf1_xor(unsigned char *buf, size_t len, const unsigned char *seed, size_t seedlen,
                    const EVP_MD *md)
{
    int ok = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned int hlen = 0;
    if (ctx == NULL)
        goto out;
    for (uint32_t ctr = 0, done = 0; done < len; ctr++) {
        unsigned char cb[4] = { ctr >> 24, ctr >> 16, ctr >> 8, ctr };
        if (!EVP_DigestInit_ex2(ctx, md, NULL) || !EVP_DigestUpdate(ctx, seed, seedlen)
            || !EVP_DigestUpdate(ctx, cb, 4) || !EVP_DigestFinal_ex(ctx, h, &hlen))
            goto out;
        for (unsigned int i = 0; i < hlen && done < len; i++, done++)
            buf[done] ^= h[i];
    }
    ok = 1;
out:
    OPENSSL_cleanse(h, sizeof(h));
    EVP_MD_CTX_free(ctx);
    return ok;
}

static unsigned ct_is_zero(unsigned x)
{
    return 0u - (((~x & (x - 1)) >> (sizeof(unsigned) * 8 - 1)) & 1u);
}

static unsigned ct_eq(unsigned a, unsigned b)
{
    return ct_is_zero(a ^ b);
}

/* EME-OAEP decoding (RFC 8017 7.1.2 step 3) of the k-byte block em, which is modified. */
static int oaep_decode(const ciph_ctx *c, unsigned char *em, size_t k, unsigned char *out,
                       size_t outsize, size_t *outlen)
{
    const EVP_MD *md = oaep_md(c);
    size_t hlen = (size_t)EVP_MD_get_size(md);
    unsigned char lhash[EVP_MAX_MD_SIZE];
    unsigned char *seed = em + 1, *db = em + 1 + hlen;
    size_t dblen, idx = 0, mlen;
    unsigned good, found = 0, bad_ps = 0;

    if (k < 2 * hlen + 2)
        return 0;
    dblen = k - hlen - 1;
    if (!EVP_Digest(c->label != NULL ? c->label : (const unsigned char *)"", c->labellen,
                    lhash, NULL, md, NULL))
        return 0;
    if (!mgf1_xor(seed, hlen, db, dblen, mgf1_md(c)) || !mgf1_xor(db, dblen, seed, hlen, mgf1_md(c)))
        return 0;
    good = ct_is_zero(em[0]);
    good &= ct_is_zero((unsigned)CRYPTO_memcmp(db, lhash, hlen));
    for (size_t i = hlen; i < dblen; i++) {
        unsigned is1 = ct_eq(db[i], 1), is0 = ct_is_zero(db[i]);
        unsigned take = ~found & is1;
        idx = (take & (unsigned)i) | (~take & idx);
        bad_ps |= ~found & ~is0 & ~is1;
        found |= is1;
    }
    good &= found & ~bad_ps;
    mlen = dblen - idx - 1;
    if (!good || mlen > outsize) {
        hsm_set_error("OAEP decoding failed");
        return 0;
    }
    memcpy(out, db + idx + 1, mlen);
    *outlen = mlen;
    return 1;
}

static int decrypt_oaep(ciph_ctx *c, unsigned char *out, size_t *outlen, size_t outsize,
                        const unsigned char *in, size_t inlen, unsigned char *tmp, size_t k)
{
    CK_RSA_PKCS_OAEP_PARAMS op = { 0 };
    CK_RSA_PKCS_MGF_TYPE unused;
    CK_MECHANISM mech = { CKM_RSA_PKCS_OAEP, &op, sizeof(op) };
    size_t n = k;
    CK_RV rv;

    if (!ck_hash(oaep_md(c), &op.hashAlg, &unused) || !ck_hash(mgf1_md(c), &unused, &op.mgf))
        return 0;
    op.source = CKZ_DATA_SPECIFIED;
    op.pSourceData = c->labellen ? c->label : NULL;
    op.ulSourceDataLen = c->labellen;
    rv = hsm_p11_decrypt(c->key, &mech, in, inlen, tmp, &n);
    if (rv == CKR_OK) {
        if (n > outsize)
            return 0;
        memcpy(out, tmp, n);
        *outlen = n;
        return 1;
    }
    if (rv != CKR_ARGUMENTS_BAD && rv != CKR_MECHANISM_PARAM_INVALID)
        return 0;

    /* token cannot do these OAEP parameters: raw RSA on the token, OAEP check here */
    CK_MECHANISM raw = { CKM_RSA_X_509, NULL, 0 };
    n = k;
    if (inlen != k || hsm_p11_decrypt(c->key, &raw, in, inlen, tmp, &n) != CKR_OK)
        return 0;
    if (n < k) {                /* restore leading zeros a token may strip */
        memmove(tmp + (k - n), tmp, n);
        memset(tmp, 0, k - n);
    }
    return oaep_decode(c, tmp, k, out, outsize, outlen);
}

static int ciph_decrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
                        const unsigned char *in, size_t inlen)
{
    ciph_ctx *c = vctx;
    size_t k, n;
    unsigned char *tmp = NULL;
    int ok = 0;

    if (c->key == NULL)
        return 0;
    k = (size_t)hsm_key_size(c->key);
    if (out == NULL) {
        *outlen = k;
        return 1;
    }
    if ((tmp = OPENSSL_malloc(k)) == NULL)
        goto out;
    if (c->pad == RSA_PKCS1_OAEP_PADDING) {
        ok = decrypt_oaep(c, out, outlen, outsize, in, inlen, tmp, k);
        goto out;
    }
    CK_MECHANISM mech = { CKM_RSA_PKCS, NULL, 0 };
    n = k;
    if (hsm_p11_decrypt(c->key, &mech, in, inlen, tmp, &n) != CKR_OK)
        goto out;
    if (n > outsize) {
        hsm_set_error("decrypt buffer too small");
        goto out;
    }
    memcpy(out, tmp, n);
    *outlen = n;
    ok = 1;
out:
    OPENSSL_clear_free(tmp, k);
    return ok;
}

static int ciph_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    ciph_ctx *c = vctx;
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL) {
        int ok;
        if (p->data_type == OSSL_PARAM_UTF8_STRING)
            ok = OSSL_PARAM_set_utf8_string(p, c->pad == RSA_PKCS1_OAEP_PADDING
                                                   ? OSSL_PKEY_RSA_PAD_MODE_OAEP
                                                   : OSSL_PKEY_RSA_PAD_MODE_PKCSV15);
        else
            ok = OSSL_PARAM_set_int(p, c->pad);
        if (!ok)
            return 0;
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL
        && !OSSL_PARAM_set_utf8_string(p, EVP_MD_get0_name(oaep_md(c))))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) != NULL
        && !OSSL_PARAM_set_utf8_string(p, EVP_MD_get0_name(mgf1_md(c))))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL)) != NULL
        && !OSSL_PARAM_set_octet_ptr(p, c->label, c->labellen))
        return 0;
    return 1;
}

static const OSSL_PARAM *ciph_gettable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_octet_ptr(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
        OSSL_PARAM_END,
    };
    return p;
}

static int md_param(const OSSL_PARAM *p, const EVP_MD **out)
{
    const char *name = NULL;
    const EVP_MD *legacy, *md;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &name))
        return 0;
    legacy = EVP_get_digestbyname(name);
    md = legacy != NULL ? hsm_prov_md(EVP_MD_get_type(legacy)) : NULL;
    if (md == NULL) {
        hsm_set_error("OAEP digest %s not supported", name);
        return 0;
    }
    *out = md;
    return 1;
}

static int ciph_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    ciph_ctx *c = vctx;
    const OSSL_PARAM *p;

    if (params == NULL)
        return 1;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL) {
        int mode = 0;
        if (p->data_type == OSSL_PARAM_UTF8_STRING) {
            const char *s = NULL;
            if (!OSSL_PARAM_get_utf8_string_ptr(p, &s))
                return 0;
            mode = strcmp(s, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0 ? RSA_PKCS1_PADDING
                   : strcmp(s, OSSL_PKEY_RSA_PAD_MODE_OAEP) == 0  ? RSA_PKCS1_OAEP_PADDING
                                                                  : -1;
        } else if (!OSSL_PARAM_get_int(p, &mode)) {
            return 0;
        }
        if (mode != RSA_PKCS1_PADDING && mode != RSA_PKCS1_OAEP_PADDING) {
            hsm_set_error("RSA padding %d not supported", mode);
            return 0;
        }
        c->pad = mode;
    }
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) != NULL
        && !md_param(p, &c->oaep_md))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) != NULL
        && !md_param(p, &c->mgf1_md))
        return 0;
    if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL)) != NULL) {
        void *buf = NULL;
        size_t len = 0;
        if (!OSSL_PARAM_get_octet_string(p, &buf, 0, &len))
            return 0;
        OPENSSL_free(c->label);
        c->label = buf;
        c->labellen = len;
    }
    return 1;
}

static const OSSL_PARAM *ciph_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST_PROPS, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST_PROPS, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
        OSSL_PARAM_END,
    };
    return p;
}

#define F(id, fn) { OSSL_FUNC_ASYM_CIPHER_##id, (void (*)(void))fn }
const OSSL_DISPATCH hsm_rsa_asym_cipher_functions[] = {
    F(NEWCTX, ciph_newctx), F(FREECTX, ciph_freectx), F(DUPCTX, ciph_dupctx),
    F(DECRYPT_INIT, ciph_decrypt_init), F(DECRYPT, ciph_decrypt),
    F(GET_CTX_PARAMS, ciph_get_ctx_params), F(GETTABLE_CTX_PARAMS, ciph_gettable_ctx_params),
    F(SET_CTX_PARAMS, ciph_set_ctx_params), F(SETTABLE_CTX_PARAMS, ciph_settable_ctx_params),
    { 0, NULL },
};
#undef F
