/* hsm/recover.c: getting a thread's session back after a session, login or token loss, and
 * the health check that reports whether any session works. Semantics in hsm.h ("Recovery").
 *
 * Who may C_Finalize: only a recovering thread, only when this token handle initialised the
 * module, only with module_lock write-held (so no other thread is inside the module), and only
 * if the generation it saw is still current (so N workers hitting one fault finalize once).
 */
#include <string.h>
#include <time.h>

#include "hsm/internal.h"

#define REINIT_WAIT_S 2         /* longest wait for other threads' calls before finalizing */

/* Under module_lock (read): finds the slot by label, opens a session, logs in when the token
 * says the application is not logged in. CKR_OK and *out, or the failing call's CK_RV. */
static CK_RV reopen(hsm_token *t, CK_SESSION_HANDLE *out)
{
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE h;
    CK_SESSION_INFO si;
    CK_RV rv = hsm_find_slot(t, &slot);
    if (rv != CKR_OK) {
        hsm_set_error("token \"%s\" not found: %s", t->label, hsm_rv_name(rv));
        return rv;
    }
    atomic_store(&t->slot, slot);
    rv = t->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
    if (rv != CKR_OK) {
        hsm_set_error("C_OpenSession: %s", hsm_rv_name(rv));
        return rv;
    }
    rv = t->f->C_GetSessionInfo(h, &si);
    if (rv != CKR_OK)
        hsm_set_error("C_GetSessionInfo: %s", hsm_rv_name(rv));
    else if (si.state != CKS_RW_USER_FUNCTIONS && si.state != CKS_RO_USER_FUNCTIONS) {
        rv = t->f->C_Login(h, CKU_USER, t->pin.page, t->pin.len);
        if (rv == CKR_USER_ALREADY_LOGGED_IN)
            rv = CKR_OK;
        if (rv == CKR_OK)
            atomic_store(&t->logged_in, 1);
        else
            hsm_set_error("C_Login on token \"%s\": %s", t->label, hsm_rv_name(rv));
    }
    if (rv == CKR_OK)
        *out = h;
    else
        t->f->C_CloseSession(h);
    return rv;
}

/* C_Finalize + C_Initialize, unless someone else already did it since generation seen.
 * 0 when the module is (now) of a newer generation, negative when this thread may not or
 * could not do it. */
static int reinit(hsm_token *t, unsigned seen)
{
    struct timespec until;
    CK_C_INITIALIZE_ARGS ia = { .flags = CKF_OS_LOCKING_OK };
    CK_RV rv = CKR_OK;

    if (!t->owns_init) {
        hsm_set_error("module initialised by another user in this process: not re-initialised");
        return -1;
    }
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += REINIT_WAIT_S;
    if (pthread_rwlock_timedwrlock(&t->module_lock, &until) != 0) {
        hsm_set_error("module busy: other calls did not finish within %d s", REINIT_WAIT_S);
        return -1;
    }
    if (atomic_load(&t->gen) == seen) {
        t->f->C_Finalize(NULL);
        rv = t->f->C_Initialize(&ia);
        if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
            rv = CKR_OK;
        atomic_fetch_add(&t->gen, 1);
    }
    pthread_rwlock_unlock(&t->module_lock);
    if (rv != CKR_OK) {
        hsm_set_error("C_Initialize: %s", hsm_rv_name(rv));
        return -1;
    }
    return 0;
}

/* Closes the session being replaced (attached: the thread's; else the shared one, whose mutex
 * the caller holds) if it is of the current generation. */
static void drop_old(hsm_token *t, int attached)
{
    if (attached) {
        hsm_thread_drop_session(t);
        return;
    }
    if (t->has_shared) {
        pthread_rwlock_rdlock(&t->module_lock);
        if (t->shared_gen == atomic_load(&t->gen))
            t->f->C_CloseSession(t->shared);
        pthread_rwlock_unlock(&t->module_lock);
    }
    t->has_shared = 0;
}

int hsm_thread_recover(hsm_token *t)
{
    int attached;
    CK_SESSION_HANDLE h;
    CK_RV rv = CKR_OK;

    if (t == NULL) {
        hsm_set_error("hsm_thread_recover: no token");
        return -1;
    }
    attached = hsm_tls.tok == t;
    if (!attached)
        pthread_mutex_lock(&t->shared_mu);
    drop_old(t, attached);
    for (int attempt = 0; attempt < 2; attempt++) {
        unsigned seen;
        pthread_rwlock_rdlock(&t->module_lock);
        seen = atomic_load(&t->gen);
        rv = reopen(t, &h);
        if (rv == CKR_OK && attached) {
            hsm_tls.h = h;
            hsm_tls.gen = seen;
            hsm_tls.has_sess = 1;
        } else if (rv == CKR_OK) {
            t->shared = h;
            t->shared_gen = seen;
            t->has_shared = 1;
        }
        pthread_rwlock_unlock(&t->module_lock);
        if (rv == CKR_OK || attempt > 0 || hsm_rv_fault(rv) != HSM_FAULT_TOKEN)
            break;
        if (reinit(t, seen) != 0)
            break;
    }
    if (!attached)
        pthread_mutex_unlock(&t->shared_mu);
    /* on the new session (takes the locks itself) */
    if (rv == CKR_OK)
        rv = hsm_keys_resolve(t);
    if (rv == CKR_OK && attached) {
        hsm_tls.live = 1;
        atomic_fetch_add(&t->live, hsm_tls.counted);
    }
    hsm_tls.last_rv = rv;
    return rv == CKR_OK ? 0 : -1;
}

int hsm_ping(hsm_token *t)
{
    CK_TOKEN_INFO ti;
    CK_SESSION_INFO si;
    hsm_sess s;
    CK_RV rv;
    int rc = -1;

    if (t == NULL) {
        hsm_set_error("hsm_ping: no token");
        return -1;
    }
    if (pthread_rwlock_tryrdlock(&t->module_lock) != 0) {
        hsm_set_error("PKCS#11 module being re-initialised");
        return -1;
    }
    rv = t->f->C_GetTokenInfo(atomic_load(&t->slot), &ti);
    pthread_rwlock_unlock(&t->module_lock);
    if (rv != CKR_OK) {
        hsm_set_error("C_GetTokenInfo: %s", hsm_rv_name(rv));
        goto out;
    }
    if (!hsm_label_matches(ti.label, t->label)) {
        hsm_set_error("another token is in the slot of \"%s\"", t->label);
        goto out;
    }
    /* the caller's own session when it is a live worker's, or the shared one when no thread is
     * attached (scepctl, start-up); an unattached caller of a running server is answered from
     * the workers' state, since the shared session may wait for its own recovery */
    if (hsm_tls.tok == t ? hsm_tls.live : atomic_load(&t->attached) == 0) {
        rv = hsm_sess_get(t, &s);
        if (rv == CKR_OK)
            rv = t->f->C_GetSessionInfo(s.h, &si);
        hsm_sess_put(&s);
        hsm_note_rv(t, rv);
        if (rv != CKR_OK && hsm_tls.tok != t) {
            hsm_set_error("C_GetSessionInfo: %s", hsm_rv_name(rv));
            goto out;
        }
    }
    if (atomic_load(&t->attached) > 0 && atomic_load(&t->live) == 0) {
        hsm_set_error("no PKCS#11 session is usable");
        goto out;
    }
    rc = 0;
out:
    return rc;
}
