/* hsm/p11.c: PKCS#11 module loading, token login, sessions, object lookup, errors.
 * Recovery after a fault is in recover.c, CK_RV names and classes in rv.c. */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "hsm/internal.h"

/* Per-thread error text, attached session and last result: owned by the thread, no lock. */
static _Thread_local char err_buf[256];
static _Thread_local const char *err_msg;
_Thread_local hsm_thread hsm_tls;

void hsm_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
    va_end(ap);
    err_msg = err_buf;
}

const char *hsm_last_error(void)
{
    return err_msg != NULL ? err_msg : "no error";
}

void hsm_note_rv(hsm_token *t, CK_RV rv)
{
    hsm_tls.last_rv = rv;
    if (HSM_FAULT_IS_LOSS(hsm_rv_fault(rv)) && hsm_tls.tok == t && hsm_tls.live) {
        hsm_tls.live = 0;
        atomic_fetch_sub(&t->live, hsm_tls.counted);
    }
}

hsm_fault hsm_last_fault(void)
{
    return hsm_rv_fault(hsm_tls.last_rv);
}

unsigned long hsm_last_rv(void)
{
    return (unsigned long)hsm_tls.last_rv;
}

const char *hsm_last_rv_name(void)
{
    return hsm_rv_name(hsm_tls.last_rv);
}

void hsm_fault_clear(void)
{
    hsm_tls.last_rv = CKR_OK;
}

uint64_t hsm_thread_ops(void)
{
    return hsm_tls.ops;
}

/* Token labels are blank-padded to 32 bytes, not NUL-terminated. */
int hsm_label_matches(const CK_UTF8CHAR padded[32], const char *want)
{
    size_t n = strlen(want);
    if (n > 32)
        return 0;
    if (memcmp(padded, want, n) != 0)
        return 0;
    for (size_t i = n; i < 32; i++)
        if (padded[i] != ' ')
            return 0;
    return 1;
}

CK_RV hsm_find_slot(hsm_token *t, CK_SLOT_ID *out)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    CK_RV rv = t->f->C_GetSlotList(CK_TRUE, NULL, &n);
    if (rv != CKR_OK)
        goto out;
    slots = calloc(n ? n : 1, sizeof(*slots));
    if (slots == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    rv = t->f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK)
        goto out;
    rv = CKR_TOKEN_NOT_PRESENT;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (t->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
            continue;
        if (hsm_label_matches(ti.label, t->label)) {
            *out = slots[i];
            rv = CKR_OK;
            break;
        }
    }
out:
    free(slots);
    return rv;
}

static CK_RV open_session(hsm_token *t, CK_SESSION_HANDLE *out)
{
    return t->f->C_OpenSession(atomic_load(&t->slot), CKF_SERIAL_SESSION | CKF_RW_SESSION,
                               NULL, NULL, out);
}

int hsm_token_open(const char *module_path, const char *token_label, const char *pin,
                   hsm_token **out)
{
    int rc = -1;
    CK_RV rv;
    CK_SLOT_ID slot;
    hsm_token *t = NULL;
    CK_C_GetFunctionList getfl;

    if (module_path == NULL || token_label == NULL || pin == NULL || out == NULL) {
        hsm_set_error("hsm_token_open: missing argument");
        goto out;
    }
    if (hsm_provider_ensure() != 0)
        goto out;
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        hsm_set_error("out of memory");
        goto out;
    }
    pthread_mutex_init(&t->shared_mu, NULL);
    pthread_mutex_init(&t->keys_mu, NULL);
    pthread_rwlock_init(&t->module_lock, NULL);
    if ((t->label = strdup(token_label)) == NULL) {
        hsm_set_error("out of memory");
        goto out;
    }
    if (hsm_pin_keep(&t->pin, pin) != 0)
        goto out;
    t->dl = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
    if (t->dl == NULL) {
        hsm_set_error("cannot load PKCS#11 module %s: %s", module_path, dlerror());
        goto out;
    }
    getfl = (CK_C_GetFunctionList)dlsym(t->dl, "C_GetFunctionList");
    if (getfl == NULL || getfl(&t->f) != CKR_OK || t->f == NULL) {
        hsm_set_error("%s: no C_GetFunctionList", module_path);
        t->f = NULL;
        goto out;
    }
    CK_C_INITIALIZE_ARGS ia = { .flags = CKF_OS_LOCKING_OK };
    rv = t->f->C_Initialize(&ia);
    if (rv == CKR_OK)
        t->owns_init = 1;
    else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        hsm_set_error("C_Initialize: %s", hsm_rv_name(rv));
        goto out;
    }
    rv = hsm_find_slot(t, &slot);
    if (rv != CKR_OK) {
        hsm_set_error("token \"%s\" not found: %s", token_label, hsm_rv_name(rv));
        goto out;
    }
    atomic_store(&t->slot, slot);
    rv = open_session(t, &t->shared);
    if (rv != CKR_OK) {
        hsm_set_error("C_OpenSession: %s", hsm_rv_name(rv));
        goto out;
    }
    t->has_shared = 1;
    rv = t->f->C_Login(t->shared, CKU_USER, t->pin.page, t->pin.len);
    if (rv == CKR_OK)
        atomic_store(&t->logged_in, 1);
    else if (rv != CKR_USER_ALREADY_LOGGED_IN) {
        hsm_set_error("C_Login on token \"%s\": %s", token_label, hsm_rv_name(rv));
        goto out;
    }
    rc = 0;
out:
    if (rc == 0) {
        *out = t;
        t = NULL;
    }
    hsm_token_close(t);
    return rc;
}

void hsm_token_close(hsm_token *t)
{
    if (t == NULL)
        return;
    hsm_offload_stop(t);        /* its threads detach before the module goes */
    if (t->f != NULL) {
        if (hsm_tls.tok == t)
            hsm_thread_detach();
        int shared_ok = t->has_shared && t->shared_gen == atomic_load(&t->gen);
        if (shared_ok && atomic_load(&t->logged_in))
            t->f->C_Logout(t->shared);
        if (shared_ok)
            t->f->C_CloseSession(t->shared);
        if (t->owns_init)
            t->f->C_Finalize(NULL);
    }
    if (t->dl != NULL)
        dlclose(t->dl);
    hsm_keys_free(t);
    hsm_pin_wipe(&t->pin);
    free(t->label);
    pthread_rwlock_destroy(&t->module_lock);
    pthread_mutex_destroy(&t->keys_mu);
    pthread_mutex_destroy(&t->shared_mu);
    free(t);
}

int hsm_thread_attach(hsm_token *t)
{
    return hsm_thread_attach_as(t, 1);
}

int hsm_thread_attach_as(hsm_token *t, int counted)
{
    CK_SESSION_HANDLE h;
    CK_RV rv;
    if (t == NULL) {
        hsm_set_error("hsm_thread_attach: no token");
        return -1;
    }
    if (hsm_tls.tok != NULL) {
        hsm_set_error("thread already attached");
        return -1;
    }
    hsm_tls = (hsm_thread){ .tok = t, .ops = hsm_tls.ops, .counted = counted ? 1 : 0 };
    atomic_fetch_add(&t->attached, hsm_tls.counted);
    pthread_rwlock_rdlock(&t->module_lock);
    rv = open_session(t, &h);
    if (rv == CKR_OK) {
        hsm_tls.h = h;
        hsm_tls.gen = atomic_load(&t->gen);
        hsm_tls.has_sess = 1;
        hsm_tls.live = 1;
        atomic_fetch_add(&t->live, hsm_tls.counted);
    }
    pthread_rwlock_unlock(&t->module_lock);
    hsm_tls.last_rv = rv;
    if (rv != CKR_OK) {
        hsm_set_error("C_OpenSession: %s", hsm_rv_name(rv));
        return -1;
    }
    return 0;
}

void hsm_thread_drop_session(hsm_token *t)
{
    if (hsm_tls.has_sess) {
        pthread_rwlock_rdlock(&t->module_lock);
        if (hsm_tls.gen == atomic_load(&t->gen))
            t->f->C_CloseSession(hsm_tls.h);
        pthread_rwlock_unlock(&t->module_lock);
    }
    if (hsm_tls.live)
        atomic_fetch_sub(&t->live, hsm_tls.counted);
    hsm_tls.has_sess = 0;
    hsm_tls.live = 0;
}

void hsm_thread_detach(void)
{
    hsm_token *t = hsm_tls.tok;
    if (t == NULL)
        return;
    hsm_thread_drop_session(t);
    atomic_fetch_sub(&t->attached, hsm_tls.counted);
    hsm_tls.tok = NULL;
}

/* The attached session when this thread attached to t, else the shared one under its mutex
 * (held until hsm_sess_put, so init and operation stay paired). Either way the module is
 * read-locked until the put, so no re-initialisation happens under a call. A session of an
 * older module generation (or none) is refused without calling the module. */
CK_RV hsm_sess_get(hsm_token *t, hsm_sess *s)
{
    CK_RV rv = CKR_OK;
    s->t = t;
    s->locked = 0;
    if (hsm_tls.tok != t) {
        pthread_mutex_lock(&t->shared_mu);
        s->locked = 1;
    }
    pthread_rwlock_rdlock(&t->module_lock);
    s->rdlocked = 1;
    s->gen = atomic_load(&t->gen);
    if (s->locked) {
        s->h = t->shared;
        if (!t->has_shared || t->shared_gen != s->gen)
            rv = CKR_SESSION_HANDLE_INVALID;
    } else {
        s->h = hsm_tls.h;
        if (!hsm_tls.has_sess || hsm_tls.gen != s->gen)
            rv = CKR_SESSION_HANDLE_INVALID;
    }
    if (rv != CKR_OK)
        hsm_set_error("no usable PKCS#11 session (recovery needed)");
    return rv;
}

void hsm_sess_put(hsm_sess *s)
{
    if (s->rdlocked)
        pthread_rwlock_unlock(&s->t->module_lock);
    if (s->locked)
        pthread_mutex_unlock(&s->t->shared_mu);
    s->rdlocked = 0;
    s->locked = 0;
}

OSSL_LIB_CTX *hsm_libctx(hsm_token *t)
{
    return NULL;
}

/* The handle k names in generation gen: an object handle found in an older generation is
 * refused, since numbering restarts after C_Initialize. */
static CK_RV key_handle(const hsm_key *k, unsigned gen, CK_OBJECT_HANDLE *out)
{
    if (k->ref == NULL) {
        *out = k->priv;
        return k->gen == gen ? CKR_OK : CKR_KEY_HANDLE_INVALID;
    }
    if (atomic_load(&k->ref->gen) != gen)
        return CKR_KEY_HANDLE_INVALID;
    *out = atomic_load(&k->ref->handle);
    return CKR_OK;
}

CK_RV hsm_p11_private_op(const hsm_key *k, int decrypt, CK_MECHANISM *mech,
                        const unsigned char *in, size_t inlen, unsigned char *out,
                        size_t *outlen)
{
    hsm_token *t = k->tok;
    CK_FUNCTION_LIST *f = t->f;
    hsm_sess s;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
    CK_ULONG n = *outlen;
    hsm_test_note_private_op();
    CK_RV rv = hsm_sess_get(t, &s);
    if (rv == CKR_OK)
        rv = key_handle(k, s.gen, &key);
    if (rv == CKR_OK)
        rv = decrypt ? f->C_DecryptInit(s.h, mech, key) : f->C_SignInit(s.h, mech, key);
    if (rv == CKR_OK) {
        rv = decrypt ? f->C_Decrypt(s.h, (CK_BYTE *)in, inlen, out, &n)
                     : f->C_Sign(s.h, (CK_BYTE *)in, inlen, out, &n);
        /* a too-small buffer leaves the operation active; end it so the session stays usable */
        if (rv == CKR_BUFFER_TOO_SMALL) {
            unsigned char *big = OPENSSL_malloc(n);
            if (big != NULL) {
                if (decrypt)
                    f->C_Decrypt(s.h, (CK_BYTE *)in, inlen, big, &n);
                else
                    f->C_Sign(s.h, (CK_BYTE *)in, inlen, big, &n);
            }
            OPENSSL_clear_free(big, n);
        }
    }
    hsm_sess_put(&s);
    hsm_note_rv(t, rv);
    if (rv == CKR_OK) {
        *outlen = n;
        hsm_tls.ops++;
    } else {
        hsm_set_error("%s: %s", decrypt ? "C_Decrypt" : "C_Sign", hsm_rv_name(rv));
    }
    return rv;
}

CK_RV hsm_p11_sign(const hsm_key *k, CK_MECHANISM *mech, const unsigned char *in,
                   size_t inlen, unsigned char *out, size_t *outlen)
{
    if (hsm_offload_wanted(k))
        return hsm_offload_run(k, 0, mech, in, inlen, out, outlen);
    return hsm_p11_private_op(k, 0, mech, in, inlen, out, outlen);
}

CK_RV hsm_p11_decrypt(const hsm_key *k, CK_MECHANISM *mech, const unsigned char *in,
                      size_t inlen, unsigned char *out, size_t *outlen)
{
    if (hsm_offload_wanted(k))
        return hsm_offload_run(k, 1, mech, in, inlen, out, outlen);
    return hsm_p11_private_op(k, 1, mech, in, inlen, out, outlen);
}

CK_RV hsm_find_one(hsm_sess *s, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type, const void *val,
                   size_t len, CK_OBJECT_HANDLE *out, int *count)
{
    CK_FUNCTION_LIST *f = s->t->f;
    CK_ATTRIBUTE tmpl[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { type, (void *)val, len },
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_RV rv = f->C_FindObjectsInit(s->h, tmpl, 2);
    if (rv != CKR_OK)
        return rv;
    rv = f->C_FindObjects(s->h, found, 2, &n);
    f->C_FindObjectsFinal(s->h);
    if (rv != CKR_OK)
        return rv;
    if (count != NULL)
        *count = (int)n;
    if (n != 1)
        return CKR_GENERAL_ERROR;
    *out = found[0];
    return CKR_OK;
}

CK_RV hsm_get_attr(hsm_sess *s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type,
                   unsigned char **out, size_t *outlen)
{
    CK_FUNCTION_LIST *f = s->t->f;
    CK_ATTRIBUTE a = { type, NULL, 0 };
    unsigned char *buf = NULL;
    CK_RV rv = f->C_GetAttributeValue(s->h, o, &a, 1);
    if (rv != CKR_OK)
        goto out;
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen == 0) {
        rv = CKR_ATTRIBUTE_TYPE_INVALID;
        goto out;
    }
    buf = OPENSSL_malloc(a.ulValueLen);
    if (buf == NULL) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    a.pValue = buf;
    rv = f->C_GetAttributeValue(s->h, o, &a, 1);
out:
    if (rv == CKR_OK) {
        *out = buf;
        *outlen = a.ulValueLen;
        buf = NULL;
    }
    OPENSSL_free(buf);
    return rv;
}
