/* hsm/internal.h: shared by the files of hsm/ only. Nothing outside hsm/ includes this (it pulls
 * in the PKCS#11 header).
 *
 * Layering: p11.c owns the module, the token and its sessions (CK_RV inside); keys.c turns
 * token objects into EVP_PKEYs and generates key pairs; prov*.c is the OpenSSL 3 provider
 * (1/0 at the OpenSSL boundary). The provider never sees a session: it calls hsm_p11_sign /
 * hsm_p11_decrypt with the token and object handle kept in the key.
 */
#ifndef SCEPD_HSM_INTERNAL_H
#define SCEPD_HSM_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <p11-kit/pkcs11.h>
#include <openssl/bn.h>
#include <openssl/core.h>

#include "hsm/hsm.h"

#define HSM_PROV_NAME "scepd-hsm"
#define HSM_PROV_PROPQ "provider=scepd-hsm"
/* Private import parameter: an octet string holding one `hsm_key *` (by value) whose contents
 * the keymgmt copies. Only hsm_key_load builds it. */
#define HSM_PARAM_REF "scepd-hsm-ref"

struct hsm_token {
    void *dl;
    CK_FUNCTION_LIST *f;
    CK_SLOT_ID slot;
    int owns_init;              /* we called C_Initialize and so must C_Finalize */
    int logged_in;              /* we logged in, so we log out */
    pthread_mutex_t shared_mu;  /* guards `shared` for threads that never attached */
    CK_SESSION_HANDLE shared;
    int has_shared;
};

/* A session borrowed for one operation; release with hsm_sess_put. */
typedef struct {
    hsm_token *t;
    CK_SESSION_HANDLE h;
    int locked;
} hsm_sess;

enum { HSM_KIND_RSA = 1, HSM_KIND_EC = 2 };

/* Provider key data. tok == NULL means a public-only key (imported from another provider's
 * key, e.g. a certificate's, so that EVP_PKEY_eq can compare). Owns n, e, pub. */
typedef struct hsm_key {
    int kind;
    hsm_token *tok;
    CK_OBJECT_HANDLE priv;
    BIGNUM *n, *e;              /* RSA */
    int curve_nid;              /* EC */
    unsigned char *pub;         /* EC: uncompressed point */
    size_t publen;
    int bits;
} hsm_key;

/* errors (p11.c) */
void hsm_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *hsm_rv_name(CK_RV rv);

/* sessions (p11.c) */
CK_RV hsm_sess_get(hsm_token *t, hsm_sess *s);
void hsm_sess_put(hsm_sess *s);

/* One private-key operation (init + op) on a borrowed session. *outlen in: capacity. */
CK_RV hsm_p11_sign(hsm_token *t, CK_OBJECT_HANDLE key, CK_MECHANISM *mech,
                   const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen);
CK_RV hsm_p11_decrypt(hsm_token *t, CK_OBJECT_HANDLE key, CK_MECHANISM *mech,
                      const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen);

/* Object lookup on session s: exactly one object of class with the attribute (type, val, len).
 * CKR_OK and *out, or CKR_GENERAL_ERROR with *count set to 0 / >1 (count may be NULL). */
CK_RV hsm_find_one(hsm_sess *s, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type, const void *val,
                   size_t len, CK_OBJECT_HANDLE *out, int *count);
/* Reads one variable-length attribute; *out is OPENSSL_malloc'ed, caller frees. */
CK_RV hsm_get_attr(hsm_sess *s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
                   unsigned char **out, size_t *outlen);

/* keys (keys.c) */
void hsm_key_clear(hsm_key *k);
int hsm_key_copy(hsm_key *dst, const hsm_key *src);   /* 1/0 */
int hsm_key_size(const hsm_key *k);                   /* bytes of a signature / RSA block */

/* provider (prov.c): registers and loads "default" and "scepd-hsm" once per process. 0/neg. */
int hsm_provider_ensure(void);
int hsm_digest_info_prefix(int mdnid, const unsigned char **p, size_t *len);
const EVP_MD *hsm_prov_md(int mdnid);                 /* fetched once; NULL if unsupported */

/* dispatch tables */
extern const OSSL_DISPATCH hsm_rsa_keymgmt_functions[];
extern const OSSL_DISPATCH hsm_ec_keymgmt_functions[];
extern const OSSL_DISPATCH hsm_rsa_signature_functions[];
extern const OSSL_DISPATCH hsm_ecdsa_signature_functions[];
extern const OSSL_DISPATCH hsm_rsa_asym_cipher_functions[];

#endif
