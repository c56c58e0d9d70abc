/* hsm/prov_keymgmt.c: keymgmt "RSA" and "EC" of the scepd-hsm provider.
 *
 * A key is either a token key (tok != NULL: handle of the private key plus the public material
 * read from the token) or a public-only key. Public-only keys exist because OpenSSL compares a
 * certificate's key (default provider) with ours by importing the certificate key here and
 * calling match; private material from another provider is refused, so a software private key
 * is never mistaken for one of ours.
 *
 * Export hands out the public parts only and fails when the private key is asked for: OpenSSL
 * then runs the operation with our own signature / asym-cipher instead of another provider's
 * (which would receive a public-only key and fail).
 */
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

#include "hsm/internal.h"

static OSSL_FUNC_keymgmt_new_fn rsa_new, ec_new;
static OSSL_FUNC_keymgmt_free_fn km_free;
static OSSL_FUNC_keymgmt_dup_fn km_dup;
static OSSL_FUNC_keymgmt_has_fn km_has;
static OSSL_FUNC_keymgmt_get_params_fn km_get_params;
static OSSL_FUNC_keymgmt_gettable_params_fn rsa_gettable_params, ec_gettable_params;
static OSSL_FUNC_keymgmt_match_fn km_match;
static OSSL_FUNC_keymgmt_import_fn km_import;
static OSSL_FUNC_keymgmt_import_types_fn rsa_import_types, ec_import_types;
static OSSL_FUNC_keymgmt_export_fn km_export;
static OSSL_FUNC_keymgmt_export_types_fn rsa_export_types, ec_export_types;
static OSSL_FUNC_keymgmt_query_operation_name_fn ec_query_operation_name;

static hsm_key *key_new(int kind)
{
    hsm_key *k = OPENSSL_zalloc(sizeof(*k));
    if (k != NULL)
        k->kind = kind;
    return k;
}

static void *rsa_new(void *provctx)
{
    return key_new(HSM_KIND_RSA);
}

static void *ec_new(void *provctx)
{
    return key_new(HSM_KIND_EC);
}

static void km_free(void *keydata)
{
    hsm_key *k = keydata;
    if (k == NULL)
        return;
    hsm_key_clear(k);
    OPENSSL_free(k);
}

static void *km_dup(const void *from, int selection)
{
    const hsm_key *src = from;
    hsm_key *k = key_new(src->kind);
    if (k != NULL && !hsm_key_copy(k, src)) {
        km_free(k);
        k = NULL;
    }
    return k;
}

static int has_public(const hsm_key *k)
{
    return k->kind == HSM_KIND_RSA ? (k->n != NULL && k->e != NULL) : k->pub != NULL;
}

static int km_has(const void *keydata, int selection)
{
    const hsm_key *k = keydata;
    int ok = 1;
    if (k == NULL)
        return 0;
    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)
        ok = ok && k->tok != NULL;
    if (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY)
        ok = ok && has_public(k);
    if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) && k->kind == HSM_KIND_EC)
        ok = ok && k->curve_nid != NID_undef;
    return ok;
}

static int security_bits(const hsm_key *k)
{
    if (k->kind == HSM_KIND_RSA)
        return BN_security_bits(k->bits, -1);
    return k->bits / 2;
}

static int km_get_params(void *keydata, OSSL_PARAM params[])
{
    hsm_key *k = keydata;
    OSSL_PARAM *p;

    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_BITS)) != NULL
        && !OSSL_PARAM_set_int(p, k->bits))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_SECURITY_BITS)) != NULL
        && !OSSL_PARAM_set_int(p, security_bits(k)))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MAX_SIZE)) != NULL
        && !OSSL_PARAM_set_int(p, hsm_key_size(k)))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST)) != NULL
        && !OSSL_PARAM_set_utf8_string(p, "SHA256"))
        return 0;
    if (k->kind == HSM_KIND_RSA) {
        if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_RSA_N)) != NULL
            && (k->n == NULL || !OSSL_PARAM_set_BN(p, k->n)))
            return 0;
        if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_RSA_E)) != NULL
            && (k->e == NULL || !OSSL_PARAM_set_BN(p, k->e)))
            return 0;
        return 1;
    }
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_GROUP_NAME)) != NULL
        && !OSSL_PARAM_set_utf8_string(p, OBJ_nid2sn(k->curve_nid)))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY)) != NULL
        && (k->pub == NULL || !OSSL_PARAM_set_octet_string(p, k->pub, k->publen)))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PUB_KEY)) != NULL
        && (k->pub == NULL || !OSSL_PARAM_set_octet_string(p, k->pub, k->publen)))
        return 0;
    return 1;
}

static const OSSL_PARAM *rsa_gettable_params(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_END,
    };
    return p;
}

static const OSSL_PARAM *ec_gettable_params(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_END,
    };
    return p;
}

/* Private keys cannot be compared (they never leave the token); equal public halves are what
 * "this certificate belongs to this key" means. */
static int km_match(const void *a, const void *b, int selection)
{
    const hsm_key *x = a, *y = b;
    if (x->kind != y->kind)
        return 0;
    if (x->kind == HSM_KIND_EC && (selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS)
        && x->curve_nid != y->curve_nid)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == 0)
        return 1;
    if (!has_public(x) || !has_public(y))
        return 0;
    if (x->kind == HSM_KIND_RSA)
        return BN_cmp(x->n, y->n) == 0 && BN_cmp(x->e, y->e) == 0;
    return x->curve_nid == y->curve_nid && x->publen == y->publen
           && memcmp(x->pub, y->pub, x->publen) == 0;
}

/* Stores the EC public point uncompressed, whatever form it came in, and validates it. */
static int ec_set_public(hsm_key *k, int nid, const unsigned char *pt, size_t len)
{
    int ok = 0;
    EC_GROUP *g = EC_GROUP_new_by_curve_name(nid);
    EC_POINT *p = NULL;
    unsigned char *buf = NULL;
    size_t n;

    if (g == NULL || (p = EC_POINT_new(g)) == NULL)
        goto out;
    if (!EC_POINT_oct2point(g, p, pt, len, NULL))
        goto out;
    n = EC_POINT_point2buf(g, p, POINT_CONVERSION_UNCOMPRESSED, &buf, NULL);
    if (n == 0)
        goto out;
    OPENSSL_free(k->pub);
    k->pub = buf;
    k->publen = n;
    k->curve_nid = nid;
    k->bits = EC_GROUP_order_bits(g);
    buf = NULL;
    ok = 1;
out:
    OPENSSL_free(buf);
    EC_POINT_free(p);
    EC_GROUP_free(g);
    return ok;
}

static int import_public(hsm_key *k, int selection, const OSSL_PARAM params[])
{
    const OSSL_PARAM *p;
    if (k->kind == HSM_KIND_RSA) {
        BIGNUM *n = NULL, *e = NULL;
        if (OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_D) != NULL)
            return 0;
        if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) == 0)
            return 1;
        p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_N);
        if (p == NULL || !OSSL_PARAM_get_BN(p, &n))
            return 0;
        p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_E);
        if (p == NULL || !OSSL_PARAM_get_BN(p, &e)) {
            BN_free(n);
            return 0;
        }
        BN_free(k->n);
        BN_free(k->e);
        k->n = n;
        k->e = e;
        k->bits = BN_num_bits(n);
        return 1;
    }

    const char *group = NULL;
    const void *pub = NULL;
    size_t publen = 0;
    int nid;
    if (OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY) != NULL)
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
    if (p == NULL || !OSSL_PARAM_get_utf8_string_ptr(p, &group))
        return 0;
    nid = OBJ_sn2nid(group);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(group);
    if (nid == NID_undef)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) == 0) {
        k->curve_nid = nid;
        return 1;
    }
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY);
    if (p == NULL || !OSSL_PARAM_get_octet_string_ptr(p, &pub, &publen))
        return 0;
    return ec_set_public(k, nid, pub, publen);
}

static int km_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    hsm_key *k = keydata;
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, HSM_PARAM_REF);
    if (p != NULL) {
        const hsm_key *src;
        if (p->data_type != OSSL_PARAM_OCTET_STRING || p->data_size != sizeof(src))
            return 0;
        memcpy(&src, p->data, sizeof(src));
        if (src == NULL || src->kind != k->kind)
            return 0;
        return hsm_key_copy(k, src);
    }
    return import_public(k, selection, params);
}

static const OSSL_PARAM *rsa_import_types(int selection)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_octet_string(HSM_PARAM_REF, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_END,
    };
    return p;
}

static const OSSL_PARAM *ec_import_types(int selection)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_octet_string(HSM_PARAM_REF, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_END,
    };
    return p;
}

static int km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    hsm_key *k = keydata;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    int ok = 0;

    if (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)
        goto out;
    if ((bld = OSSL_PARAM_BLD_new()) == NULL)
        goto out;
    if (k->kind == HSM_KIND_RSA) {
        if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY)
            && (k->n == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, k->n)
                || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, k->e)))
            goto out;
    } else {
        if ((selection & (OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS | OSSL_KEYMGMT_SELECT_PUBLIC_KEY))
            && !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                                OBJ_nid2sn(k->curve_nid), 0))
            goto out;
        if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY)
            && (k->pub == NULL
                || !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, k->pub,
                                                     k->publen)))
            goto out;
    }
    if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
        goto out;
    ok = cb(params, cbarg);
out:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return ok;
}

static const OSSL_PARAM *rsa_export_types(int selection)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_END,
    };
    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ? NULL : p;
}

static const OSSL_PARAM *ec_export_types(int selection)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
        OSSL_PARAM_END,
    };
    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ? NULL : p;
}

/* EC keys sign with "ECDSA", not with an algorithm named after the key type. */
static const char *ec_query_operation_name(int operation_id)
{
    return operation_id == OSSL_OP_SIGNATURE ? "ECDSA" : NULL;
}

#define F(id, fn) { OSSL_FUNC_KEYMGMT_##id, (void (*)(void))fn }
const OSSL_DISPATCH hsm_rsa_keymgmt_functions[] = {
    F(NEW, rsa_new), F(FREE, km_free), F(DUP, km_dup), F(HAS, km_has),
    F(GET_PARAMS, km_get_params), F(GETTABLE_PARAMS, rsa_gettable_params),
    F(MATCH, km_match), F(IMPORT, km_import), F(IMPORT_TYPES, rsa_import_types),
    F(EXPORT, km_export), F(EXPORT_TYPES, rsa_export_types),
    { 0, NULL },
};

const OSSL_DISPATCH hsm_ec_keymgmt_functions[] = {
    F(NEW, ec_new), F(FREE, km_free), F(DUP, km_dup), F(HAS, km_has),
    F(GET_PARAMS, km_get_params), F(GETTABLE_PARAMS, ec_gettable_params),
    F(MATCH, km_match), F(IMPORT, km_import), F(IMPORT_TYPES, ec_import_types),
    F(EXPORT, km_export), F(EXPORT_TYPES, ec_export_types),
    F(QUERY_OPERATION_NAME, ec_query_operation_name),
    { 0, NULL },
};
#undef F
