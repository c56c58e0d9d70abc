/* hsm/prov.c: the "scepd-hsm" OpenSSL 3 provider: registration, algorithm tables, digest cache.
 *
 * The provider is process-wide state (OpenSSL's provider store is): it is registered and
 * loaded into the default library context once, next to "default", and never unloaded.
 * Provider algorithms carry no token; each key does. */
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/provider.h>

#include "hsm/internal.h"

#define RSA_NAMES "RSA:rsaEncryption:1.2.840.113549.1.1.1"
#define EC_NAMES "EC:id-ecPublicKey:1.2.840.10045.2.1"

static const OSSL_ALGORITHM keymgmt_algs[] = {
    { RSA_NAMES, HSM_PROV_PROPQ, hsm_rsa_keymgmt_functions, "scepd-hsm RSA key" },
    { EC_NAMES, HSM_PROV_PROPQ, hsm_ec_keymgmt_functions, "scepd-hsm EC key" },
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM signature_algs[] = {
    { RSA_NAMES, HSM_PROV_PROPQ, hsm_rsa_signature_functions, "RSA PKCS#1 v1.5 via C_Sign" },
    { "ECDSA", HSM_PROV_PROPQ, hsm_ecdsa_signature_functions, "ECDSA via C_Sign" },
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM asym_cipher_algs[] = {
    { RSA_NAMES, HSM_PROV_PROPQ, hsm_rsa_asym_cipher_functions, "RSA decrypt via C_Decrypt" },
    { NULL, NULL, NULL, NULL },
};

/* Digests fetched from "default" once, on first use (fetching inside provider init would
 * re-enter the provider store). */
static const int md_nids[] = { NID_sha1, NID_sha224, NID_sha256, NID_sha384, NID_sha512 };
#define MD_COUNT (sizeof(md_nids) / sizeof(md_nids[0]))

static pthread_once_t prov_once = PTHREAD_ONCE_INIT;
/* Held for the life of the process so neither provider is ever unloaded under a live key. */
static OSSL_PROVIDER *prov_default, *prov_hsm;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_cache[MD_COUNT];

static void md_fetch_all(void)
{
    for (size_t i = 0; i < MD_COUNT; i++)
        md_cache[i] = EVP_MD_fetch(NULL, OBJ_nid2sn(md_nids[i]), "provider=default");
}

const EVP_MD *hsm_prov_md(int mdnid)
{
    pthread_once(&md_once, md_fetch_all);
    for (size_t i = 0; i < MD_COUNT; i++)
        if (md_nids[i] == mdnid)
            return md_cache[i];
    return NULL;
}

/* RFC 8017 section 9.2 note 1: DER DigestInfo up to the digest bytes. */
int hsm_digest_info_prefix(int mdnid, const unsigned char **p, size_t *len)
{
    static const unsigned char sha1[] = { 0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03,
                                          0x02, 0x1a, 0x05, 0x00, 0x04, 0x14 };
#define SHA2(last, tot, dl) { 0x30, tot, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, \
                              0x03, 0x04, 0x02, last, 0x05, 0x00, 0x04, dl }
    static const unsigned char sha224[] = SHA2(0x04, 0x2d, 0x1c);
    static const unsigned char sha256[] = SHA2(0x01, 0x31, 0x20);
    static const unsigned char sha384[] = SHA2(0x02, 0x41, 0x30);
    static const unsigned char sha512[] = SHA2(0x03, 0x51, 0x40);
#undef SHA2
    switch (mdnid) {
    case NID_sha1: *p = sha1; *len = sizeof(sha1); return 1;
    case NID_sha224: *p = sha224; *len = sizeof(sha224); return 1;
    case NID_sha256: *p = sha256; *len = sizeof(sha256); return 1;
    case NID_sha384: *p = sha384; *len = sizeof(sha384); return 1;
    case NID_sha512: *p = sha512; *len = sizeof(sha512); return 1;
    default: return 0;
    }
}

static const OSSL_ALGORITHM *prov_query(void *provctx, int operation_id, int *no_cache)
{
    *no_cache = 0;
    switch (operation_id) {
    case OSSL_OP_KEYMGMT: return keymgmt_algs;
    case OSSL_OP_SIGNATURE: return signature_algs;
    case OSSL_OP_ASYM_CIPHER: return asym_cipher_algs;
    default: return NULL;
    }
}

static const OSSL_PARAM *prov_gettable_params(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, NULL, 0),
        OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, NULL),
        OSSL_PARAM_END,
    };
    return p;
}

static int prov_get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
    if (p != NULL && !OSSL_PARAM_set_utf8_ptr(p, HSM_PROV_NAME))
        return 0;
    p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS);
    if (p != NULL && !OSSL_PARAM_set_int(p, 1))
        return 0;
    return 1;
}

static void prov_teardown(void *provctx)
{
}

static const OSSL_DISPATCH prov_dispatch[] = {
    { OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))prov_teardown },
    { OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))prov_query },
    { OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))prov_gettable_params },
    { OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))prov_get_params },
    { 0, NULL },
};

static int prov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                     const OSSL_DISPATCH **out, void **provctx)
{
    /* typed so the compiler checks the entry points' signatures */
    OSSL_FUNC_provider_query_operation_fn *q = prov_query;
    OSSL_FUNC_provider_teardown_fn *td = prov_teardown;
    OSSL_FUNC_provider_gettable_params_fn *gp = prov_gettable_params;
    OSSL_FUNC_provider_get_params_fn *g = prov_get_params;
    (void)q; (void)td; (void)gp; (void)g;
    *out = prov_dispatch;
    *provctx = (void *)handle;
    return 1;
}

static void prov_register(void)
{
    /* Loading "default" explicitly keeps it: once any provider is loaded by hand, OpenSSL no
     * longer falls back to loading it implicitly. */
    if ((prov_default = OSSL_PROVIDER_load(NULL, "default")) == NULL)
        return;
    if (!OSSL_PROVIDER_add_builtin(NULL, HSM_PROV_NAME, prov_init))
        return;
    prov_hsm = OSSL_PROVIDER_load(NULL, HSM_PROV_NAME);
}

int hsm_provider_ensure(void)
{
    pthread_once(&prov_once, prov_register);
    if (prov_default == NULL || prov_hsm == NULL) {
        hsm_set_error("cannot load the scepd-hsm OpenSSL provider");
        return -1;
    }
    return 0;
}
