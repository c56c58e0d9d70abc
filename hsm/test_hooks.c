/* hsm/test_hooks.c: see test_hooks.h. Not used by the server. */
#include <string.h>

#include "hsm/internal.h"
#include "hsm/test_hooks.h"

static int result(const char *what, CK_RV rv)
{
    if (rv == CKR_OK)
        return 0;
    hsm_set_error("%s: %s", what, hsm_rv_name(rv));
    return -1;
}

int hsm_test_close_all_sessions(hsm_token *t)
{
    CK_RV rv;
    pthread_rwlock_rdlock(&t->module_lock);
    rv = t->f->C_CloseAllSessions(atomic_load(&t->slot));
    pthread_rwlock_unlock(&t->module_lock);
    return result("C_CloseAllSessions", rv);
}

int hsm_test_logout(hsm_token *t)
{
    CK_SESSION_HANDLE h;
    CK_RV rv;
    pthread_rwlock_rdlock(&t->module_lock);
    rv = t->f->C_OpenSession(atomic_load(&t->slot), CKF_SERIAL_SESSION, NULL, NULL, &h);
    if (rv == CKR_OK) {
        rv = t->f->C_Logout(h);
        t->f->C_CloseSession(h);
    }
    pthread_rwlock_unlock(&t->module_lock);
    return result("C_Logout", rv);
}

int hsm_test_finalize(hsm_token *t)
{
    CK_RV rv;
    pthread_rwlock_wrlock(&t->module_lock);
    rv = t->f->C_Finalize(NULL);
    pthread_rwlock_unlock(&t->module_lock);
    return result("C_Finalize", rv);
}

int hsm_test_destroy_key(hsm_token *t, const char *label)
{
    hsm_sess s;
    CK_OBJECT_HANDLE h;
    CK_RV rv = hsm_sess_get(t, &s);
    if (rv == CKR_OK)
        rv = hsm_find_one(&s, CKO_PRIVATE_KEY, CKA_LABEL, label, strlen(label), &h, NULL);
    if (rv == CKR_OK)
        rv = t->f->C_DestroyObject(s.h, h);
    hsm_sess_put(&s);
    return result("C_DestroyObject", rv);
}

const void *hsm_test_pin_page(hsm_token *t, size_t *len)
{
    *len = t->pin.pagelen;
    return t->pin.page;
}

static _Atomic(hsm_test_op_fn) op_observer;

void hsm_test_set_op_observer(hsm_test_op_fn fn)
{
    atomic_store(&op_observer, fn);
}

void hsm_test_note_private_op(void)
{
    hsm_test_op_fn fn = atomic_load_explicit(&op_observer, memory_order_relaxed);
    if (fn != NULL)
        fn();
}
