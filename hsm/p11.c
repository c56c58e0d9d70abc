/* hsm/p11.c: PKCS#11 module loading, token login, sessions, object lookup, errors. */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "hsm/internal.h"

/* Per-thread error text and attached session: owned by the thread, so no lock. */
static _Thread_local char err_buf[256];
static _Thread_local const char *err_msg;
static _Thread_local hsm_token *tls_tok;
static _Thread_local CK_SESSION_HANDLE tls_sess;

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

const char *hsm_rv_name(CK_RV rv)
{
    switch (rv) {
#define R(x) case x: return #x;
    R(CKR_OK) R(CKR_HOST_MEMORY) R(CKR_GENERAL_ERROR) R(CKR_FUNCTION_FAILED)
    R(CKR_ARGUMENTS_BAD) R(CKR_ATTRIBUTE_SENSITIVE) R(CKR_ATTRIBUTE_TYPE_INVALID)
    R(CKR_DEVICE_ERROR) R(CKR_DEVICE_REMOVED) R(CKR_ENCRYPTED_DATA_INVALID)
    R(CKR_ENCRYPTED_DATA_LEN_RANGE) R(CKR_KEY_HANDLE_INVALID) R(CKR_KEY_TYPE_INCONSISTENT)
    R(CKR_KEY_FUNCTION_NOT_PERMITTED) R(CKR_MECHANISM_INVALID) R(CKR_MECHANISM_PARAM_INVALID)
    R(CKR_OBJECT_HANDLE_INVALID) R(CKR_OPERATION_ACTIVE) R(CKR_PIN_INCORRECT)
    R(CKR_PIN_LOCKED) R(CKR_SESSION_HANDLE_INVALID) R(CKR_SESSION_COUNT)
    R(CKR_TEMPLATE_INCOMPLETE) R(CKR_TEMPLATE_INCONSISTENT) R(CKR_TOKEN_NOT_PRESENT)
    R(CKR_USER_NOT_LOGGED_IN) R(CKR_USER_ALREADY_LOGGED_IN) R(CKR_BUFFER_TOO_SMALL)
    R(CKR_CRYPTOKI_NOT_INITIALIZED) R(CKR_CRYPTOKI_ALREADY_INITIALIZED) R(CKR_DATA_LEN_RANGE)
    R(CKR_DATA_INVALID) R(CKR_SLOT_ID_INVALID)
#undef R
    default: return "CKR_(other)";
    }
}

/* Token labels are blank-padded to 32 bytes, not NUL-terminated. */
static int label_matches(const CK_UTF8CHAR padded[32], const char *want)
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

static CK_RV find_slot(hsm_token *t, const char *label, CK_SLOT_ID *out)
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
        if (label_matches(ti.label, label)) {
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
    return t->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, out);
}

int hsm_token_open(const char *module_path, const char *token_label, const char *pin,
                   hsm_token **out)
{
    int rc = -1;
    CK_RV rv;
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
    t->dl = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
    if (t->dl == NULL) {
        hsm_set_error("cannot load PKCS#11 module %s: %s", module_path, dlerror());
        goto out;
    }
    getfl = (CK_C_GetFunctionList)dlsym(t->dl, "C_GetFunctionList");
    if (getfl == NULL || getfl(&t->f) != CKR_OK || t->f == NULL) {
        hsm_set_error("%s: no C_GetFunctionList", module_path);
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
    rv = find_slot(t, token_label, &t->slot);
    if (rv != CKR_OK) {
        hsm_set_error("token \"%s\" not found: %s", token_label, hsm_rv_name(rv));
        goto out;
    }
    rv = open_session(t, &t->shared);
    if (rv != CKR_OK) {
        hsm_set_error("C_OpenSession: %s", hsm_rv_name(rv));
        goto out;
    }
    t->has_shared = 1;
    rv = t->f->C_Login(t->shared, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
    if (rv == CKR_OK)
        t->logged_in = 1;
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
    if (t->f != NULL) {
        if (tls_tok == t)
            hsm_thread_detach();
        if (t->logged_in)
            t->f->C_Logout(t->shared);
        if (t->has_shared)
            t->f->C_CloseSession(t->shared);
        if (t->owns_init)
            t->f->C_Finalize(NULL);
    }
    if (t->dl != NULL)
        dlclose(t->dl);
    pthread_mutex_destroy(&t->shared_mu);
    free(t);
}

int hsm_thread_attach(hsm_token *t)
{
    CK_SESSION_HANDLE h;
    CK_RV rv;
    if (t == NULL) {
        hsm_set_error("hsm_thread_attach: no token");
        return -1;
    }
    if (tls_tok != NULL) {
        hsm_set_error("thread already attached");
        return -1;
    }
    rv = open_session(t, &h);
    if (rv != CKR_OK) {
        hsm_set_error("C_OpenSession: %s", hsm_rv_name(rv));
        return -1;
    }
    tls_tok = t;
    tls_sess = h;
    return 0;
}

void hsm_thread_detach(void)
{
    if (tls_tok == NULL)
        return;
    tls_tok->f->C_CloseSession(tls_sess);
    tls_tok = NULL;
}

/* The attached session when this thread attached to t, else the shared one under its mutex
 * (held until hsm_sess_put, so init and operation stay paired). */
CK_RV hsm_sess_get(hsm_token *t, hsm_sess *s)
{
    s->t = t;
    if (tls_tok == t) {
        s->h = tls_sess;
        s->locked = 0;
        return CKR_OK;
    }
    pthread_mutex_lock(&t->shared_mu);
    s->h = t->shared;
    s->locked = 1;
    return CKR_OK;
}

void hsm_sess_put(hsm_sess *s)
{
    if (s->locked)
        pthread_mutex_unlock(&s->t->shared_mu);
    s->locked = 0;
}

int hsm_ping(hsm_token *t)
{
    hsm_sess s;
    CK_SESSION_INFO si;
    CK_RV rv;
    if (t == NULL) {
        hsm_set_error("hsm_ping: no token");
        return -1;
    }
    hsm_sess_get(t, &s);
    rv = t->f->C_GetSessionInfo(s.h, &si);
    hsm_sess_put(&s);
    if (rv != CKR_OK) {
        hsm_set_error("C_GetSessionInfo: %s", hsm_rv_name(rv));
        return -1;
    }
    return 0;
}

OSSL_LIB_CTX *hsm_libctx(hsm_token *t)
{
    return NULL;
}

CK_RV hsm_p11_sign(hsm_token *t, CK_OBJECT_HANDLE key, CK_MECHANISM *mech,
                   const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen)
{
    hsm_sess s;
    CK_ULONG n = *outlen;
    CK_RV rv;
    hsm_sess_get(t, &s);
    rv = t->f->C_SignInit(s.h, mech, key);
    if (rv == CKR_OK) {
        rv = t->f->C_Sign(s.h, (CK_BYTE *)in, inlen, out, &n);
        /* a too-small buffer leaves the operation active; end it so the session stays usable */
        if (rv == CKR_BUFFER_TOO_SMALL) {
            unsigned char *big = OPENSSL_malloc(n);
            if (big != NULL)
                t->f->C_Sign(s.h, (CK_BYTE *)in, inlen, big, &n);
            OPENSSL_clear_free(big, n);
        }
    }
    hsm_sess_put(&s);
    if (rv == CKR_OK)
        *outlen = n;
    else
        hsm_set_error("C_Sign: %s", hsm_rv_name(rv));
    return rv;
}

CK_RV hsm_p11_decrypt(hsm_token *t, CK_OBJECT_HANDLE key, CK_MECHANISM *mech,
                      const unsigned char *in, size_t inlen, unsigned char *out, size_t *outlen)
{
    hsm_sess s;
    CK_ULONG n = *outlen;
    CK_RV rv;
    hsm_sess_get(t, &s);
    rv = t->f->C_DecryptInit(s.h, mech, key);
    if (rv == CKR_OK) {
        rv = t->f->C_Decrypt(s.h, (CK_BYTE *)in, inlen, out, &n);
        if (rv == CKR_BUFFER_TOO_SMALL) {
            unsigned char *big = OPENSSL_malloc(n);
            if (big != NULL)
                t->f->C_Decrypt(s.h, (CK_BYTE *)in, inlen, big, &n);
            OPENSSL_clear_free(big, n);
        }
    }
    hsm_sess_put(&s);
    if (rv == CKR_OK)
        *outlen = n;
    else
        hsm_set_error("C_Decrypt: %s", hsm_rv_name(rv));
    return rv;
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
