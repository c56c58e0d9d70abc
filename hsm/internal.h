/* hsm/internal.h: shared by the files of hsm/ only. Nothing outside hsm/ includes this (it pulls
 * in the PKCS#11 header).
 *
 * Layering: p11.c owns the module, the token and its sessions (CK_RV inside); recover.c
 * reopens them after a fault and answers hsm_ping; rv.c names and classifies CK_RVs; pin.c
 * keeps the PIN in a locked page; keys.c turns token objects into EVP_PKEYs, generates key
 * pairs and finds loaded keys again after a recovery; prov*.c is the OpenSSL 3 provider
 * (1/0 at the OpenSSL boundary); test_hooks.c injects faults for the unit tests. The provider never sees a session: it calls hsm_p11_sign /
 * hsm_p11_decrypt with the token and object handle kept in the key.
 */
#ifndef SCEPD_HSM_INTERNAL_H
#define SCEPD_HSM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
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

/* The PIN, kept for re-login after a token fault (pin.c). page is an anonymous mapping of
 * pagelen bytes, mlock'ed and MADV_DONTDUMP, wiped and unmapped by hsm_pin_wipe. */
typedef struct {
    unsigned char *page;
    size_t pagelen;
    size_t len;
} hsm_pin;

int hsm_pin_keep(hsm_pin *p, const char *pin);      /* 0 or negative (error text set) */
void hsm_pin_wipe(hsm_pin *p);                      /* accepts a zeroed / wiped hsm_pin */

/* Public material of a loaded key, as first read; the object handle is re-found after a
 * recovery (the handle of a token object is only guaranteed while the application has a
 * session; SoftHSM forgets private handles at logout and all handles when the last session
 * closes, and numbers them afresh after C_Initialize). Owned by the token, freed at close;
 * every EVP_PKEY copy of the key points to the same entry. */
typedef struct hsm_keyref hsm_keyref;
typedef struct hsm_offload hsm_offload;

enum { HSM_KIND_RSA = 1, HSM_KIND_EC = 2 };

/* Provider key data. tok == NULL means a public-only key (imported from another provider's
 * key, e.g. a certificate's, so that EVP_PKEY_eq can compare). Owns n, e, pub; ref is borrowed
 * from the token (NULL for keys found for one call: probes, hsm_key_is_protected). */
typedef struct hsm_key {
    int kind;
    hsm_token *tok;
    hsm_keyref *ref;
    CK_OBJECT_HANDLE priv;      /* as found by the lookup that made this key */
    unsigned gen;               /* module generation priv was found in */
    BIGNUM *n, *e;              /* RSA */
    int curve_nid;              /* EC */
    unsigned char *pub;         /* EC: uncompressed point */
    size_t publen;
    int bits;
} hsm_key;

struct hsm_keyref {
    hsm_keyref *next;
    char *label;
    _Atomic CK_OBJECT_HANDLE handle;
    _Atomic unsigned gen;       /* module generation handle belongs to; stored after handle */
    hsm_key pub;                /* tok == NULL: public half only, to check a re-found key */
};

/* Lock order: keys_mu, then shared_mu, then module_lock. */
struct hsm_token {
    void *dl;
    CK_FUNCTION_LIST *f;
    char *label;                /* token label: the slot is found again by it */
    _Atomic CK_SLOT_ID slot;
    int owns_init;              /* we called C_Initialize, so we may C_Finalize */
    _Atomic int logged_in;      /* we logged in, so we log out */
    hsm_pin pin;
    /* Read-held around every call into the module that uses a session or slot; write-held
     * only to C_Finalize + C_Initialize, which invalidates every session and object handle
     * of every thread at once. gen counts those re-initialisations: a session or handle from
     * another generation is never passed to the module (numbers restart, so it could name
     * another thread's session or another object). */
    pthread_rwlock_t module_lock;
    _Atomic unsigned gen;
    pthread_mutex_t shared_mu;  /* guards the shared session for threads that never attached */
    CK_SESSION_HANDLE shared;
    unsigned shared_gen;
    int has_shared;
    _Atomic int attached;       /* threads attached */
    _Atomic int live;           /* attached threads whose session last worked */
    pthread_mutex_t keys_mu;    /* guards the list (not the atomics in its entries) */
    hsm_keyref *keys;
    hsm_offload *offload;       /* key threads for ASYNC jobs (offload.c); set before the
                                   token is shared, cleared by hsm_token_close */
};

/* A session borrowed for one operation; release with hsm_sess_put (always, even when
 * hsm_sess_get failed; a second put does nothing). gen: the module generation it belongs
 * to, stable while it is held. */
typedef struct {
    hsm_token *t;
    CK_SESSION_HANDLE h;
    unsigned gen;
    int locked;
    int rdlocked;
} hsm_sess;

/* Per-thread state: the attached session and the last result (p11.c owns it). */
typedef struct {
    hsm_token *tok;             /* attached to, or NULL */
    CK_SESSION_HANDLE h;
    unsigned gen;
    int has_sess;               /* h is open (recovery may have left the thread without one) */
    int live;                   /* session worked at its last use (in tok->live if counted) */
    int counted;                /* counted in tok->attached / tok->live (hsm_ping): workers
                                   are, the offload key threads are not */
    CK_RV last_rv;
    uint64_t ops;               /* private-key operations completed */
} hsm_thread;

extern _Thread_local hsm_thread hsm_tls;

/* errors (p11.c, rv.c) */
void hsm_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *hsm_rv_name(CK_RV rv);
hsm_fault hsm_rv_fault(CK_RV rv);
/* Records rv as the calling thread's last result; a loss marks its session dead. */
void hsm_note_rv(hsm_token *t, CK_RV rv);

/* sessions (p11.c) */
CK_RV hsm_sess_get(hsm_token *t, hsm_sess *s);
void hsm_sess_put(hsm_sess *s);
CK_RV hsm_find_slot(hsm_token *t, CK_SLOT_ID *out);   /* under module_lock (read) */
int hsm_label_matches(const CK_UTF8CHAR padded[32], const char *want);
/* hsm_thread_attach with counted = 0 for threads hsm_ping must not answer for (the offload
 * key threads: /healthz speaks for the crypto workers). */
int hsm_thread_attach_as(hsm_token *t, int counted);
/* Attached thread: closes its session if it is of the current generation; uncounts it. */
void hsm_thread_drop_session(hsm_token *t);

/* One private-key operation (init + op) with k on a borrowed session. *outlen in: capacity.
 * hsm_p11_sign / hsm_p11_decrypt hand it to the offload pool inside an ASYNC job; the pool's
 * threads call hsm_p11_private_op itself (C_SignInit + C_Sign or C_DecryptInit + C_Decrypt on
 * the calling thread; records the result for the thread). */
CK_RV hsm_p11_private_op(const hsm_key *k, int decrypt, CK_MECHANISM *mech,
                         const unsigned char *in, size_t inlen, unsigned char *out,
                         size_t *outlen);
CK_RV hsm_p11_sign(const hsm_key *k, CK_MECHANISM *mech, const unsigned char *in,
                   size_t inlen, unsigned char *out, size_t *outlen);
CK_RV hsm_p11_decrypt(const hsm_key *k, CK_MECHANISM *mech, const unsigned char *in,
                      size_t inlen, unsigned char *out, size_t *outlen);

/* offload (offload.c): 1 when an operation with k goes to the token's key threads (a pool
 * exists and the caller runs inside an OpenSSL ASYNC job); hsm_offload_run then queues it and
 * pauses the job until it is done. An operation a request cannot carry (a mechanism with
 * parameters, input over 1024 bytes) fails with CKR_MECHANISM_PARAM_INVALID instead of
 * running on the caller's thread. */
int hsm_offload_wanted(const hsm_key *k);
CK_RV hsm_offload_run(const hsm_key *k, int decrypt, CK_MECHANISM *mech,
                      const unsigned char *in, size_t inlen, unsigned char *out,
                      size_t *outlen);

/* test_hooks.c: calls the observer a unit test installed (hsm_test_set_op_observer) before
 * each private-key operation reaches the module, on the thread that calls the module. */
void hsm_test_note_private_op(void);

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
/* Finds every loaded key again on the calling thread's session and checks it is the same key
 * (public half). CKR_OK, or the failing call's CK_RV (CKR_GENERAL_ERROR: missing/other key). */
CK_RV hsm_keys_resolve(hsm_token *t);
void hsm_keys_free(hsm_token *t);

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
