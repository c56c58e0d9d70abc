/* hsm/offload.c: private-key operations of an OpenSSL ASYNC job run on a pool of threads.
 *
 * A thread that must never wait for the token (a shard doing a TLS handshake with the key in
 * the token) runs the handshake inside an ASYNC job (SSL_MODE_ASYNC). When the provider's
 * C_Sign / C_Decrypt is reached inside such a job and the token has a pool, the operation is
 * copied into a request and queued here instead; the job pauses, registering the request's
 * eventfd in its ASYNC_WAIT_CTX, so its owner sees SSL_ERROR_WANT_ASYNC and polls that fd. A
 * pool thread (attached to the token: a session of its own) runs the operation, stores the
 * result, marks the request done and writes the eventfd; the owner resumes the job, which
 * copies the result out.
 *
 * Ownership: a request is shared by the pool (until it wrote the eventfd) and the job (until
 * it resumed, or the wait ctx was freed without resuming it): two references, the last one
 * closes the eventfd and frees it. Nothing the pool touches lives on the job's stack, so a
 * job that is abandoned (resumed before the result is there: its connection is being freed)
 * returns CKR_FUNCTION_CANCELED at once and the pool's late result is simply dropped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/crypto.h>

#include "hsm/internal.h"

#define REQ_IO_MAX 1024             /* an RSA-8192 block */

typedef struct off_req {
    struct off_req *next;
    atomic_int refs;
    atomic_int done;
    int efd;
    int decrypt;
    hsm_key key;                    /* shallow copy: tok, ref, priv, gen; owns nothing */
    CK_MECHANISM_TYPE mech;
    unsigned char in[REQ_IO_MAX];
    size_t inlen;
    unsigned char out[REQ_IO_MAX];
    size_t outlen;                  /* capacity in, result out */
    CK_RV rv;
} off_req;

struct hsm_offload {
    hsm_token *tok;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    off_req *head, *tail;
    int stop;
    int nthreads;
    pthread_t *threads;
    atomic_uint_fast64_t done_ops;  /* operations the pool completed (CKR_OK) */
};

static void req_unref(off_req *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    if (r->efd >= 0)
        close(r->efd);
    OPENSSL_cleanse(r->out, sizeof(r->out));
    free(r);
}

/* The wait ctx is freed with the job's reference still held (its SSL freed without the job
 * being resumed): drop that reference. */
static void wait_cleanup(ASYNC_WAIT_CTX *w, const void *key, OSSL_ASYNC_FD fd, void *custom)
{
    (void)w;
    (void)key;
    (void)fd;
    req_unref(custom);
}

static void run_one(hsm_offload *o, off_req *r)
{
    CK_MECHANISM mech = { r->mech, NULL, 0 };
    size_t n = r->outlen;
    CK_RV rv = hsm_p11_private_op(&r->key, r->decrypt, &mech, r->in, r->inlen, r->out, &n);
    /* A lost session or token: this thread recovers and tries once more (the failed call
     * completed nothing, so a retry cannot sign twice). */
    if (rv != CKR_OK && HSM_FAULT_IS_LOSS(hsm_rv_fault(rv)) && hsm_thread_recover(o->tok) == 0) {
        n = r->outlen;
        rv = hsm_p11_private_op(&r->key, r->decrypt, &mech, r->in, r->inlen, r->out, &n);
    }
    r->rv = rv;
    if (rv == CKR_OK) {
        r->outlen = n;
        atomic_fetch_add(&o->done_ops, 1);
    }
    atomic_store_explicit(&r->done, 1, memory_order_release);
    uint64_t one = 1;
    while (write(r->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
    req_unref(r);
}

static void *pool_main(void *arg)
{
    hsm_offload *o = arg;
    /* Not counted by hsm_ping: /healthz speaks for the crypto workers. Without a session
     * yet, the first operation recovers one. */
    hsm_thread_attach_as(o->tok, 0);
    pthread_mutex_lock(&o->mu);
    for (;;) {
        while (o->head == NULL && !o->stop)
            pthread_cond_wait(&o->cv, &o->mu);
        off_req *r = o->head;
        if (r == NULL)
            break;                  /* stopping, and the queue is drained */
        o->head = r->next;
        if (o->head == NULL)
            o->tail = NULL;
        pthread_mutex_unlock(&o->mu);
        run_one(o, r);
        pthread_mutex_lock(&o->mu);
    }
    pthread_mutex_unlock(&o->mu);
    hsm_thread_detach();
    return NULL;
}

int hsm_offload_start(hsm_token *t, int nthreads)
{
    hsm_offload *o = NULL;
    int rc = -1;
    if (t == NULL || t->offload != NULL || nthreads < 1) {
        hsm_set_error("offload: no token, already started, or no threads");
        return -1;
    }
    if (!ASYNC_is_capable()) {
        hsm_set_error("offload: this OpenSSL has no ASYNC job support");
        return -1;
    }
    o = calloc(1, sizeof(*o));
    if (o == NULL || (o->threads = calloc((size_t)nthreads, sizeof(*o->threads))) == NULL)
        goto out;
    o->tok = t;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    atomic_init(&o->done_ops, 0);
    for (; o->nthreads < nthreads; o->nthreads++)
        if (pthread_create(&o->threads[o->nthreads], NULL, pool_main, o) != 0)
            goto out;
    t->offload = o;
    o = NULL;
    rc = 0;
out:
    if (rc != 0) {
        hsm_set_error("offload: cannot start the key threads");
        if (o != NULL && o->threads != NULL) {
            t->offload = o;
            hsm_offload_stop(t);
        } else {
            free(o);
        }
    }
    return rc;
}

void hsm_offload_stop(hsm_token *t)
{
    hsm_offload *o = t != NULL ? t->offload : NULL;
    if (o == NULL)
        return;
    pthread_mutex_lock(&o->mu);
    o->stop = 1;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    for (int i = 0; i < o->nthreads; i++)
        pthread_join(o->threads[i], NULL);
    t->offload = NULL;
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
    free(o->threads);
    free(o);
}

uint64_t hsm_offload_ops(hsm_token *t)
{
    return t != NULL && t->offload != NULL ? atomic_load(&t->offload->done_ops) : 0;
}

int hsm_offload_wanted(const hsm_key *k)
{
    return k->tok->offload != NULL && ASYNC_get_current_job() != NULL;
}

/* Inside an ASYNC job: queue, pause until the pool is done, copy the result out. */
CK_RV hsm_offload_run(const hsm_key *k, int decrypt, CK_MECHANISM *mech,
                      const unsigned char *in, size_t inlen, unsigned char *out,
                      size_t *outlen)
{
    hsm_offload *o = k->tok->offload;
    ASYNC_WAIT_CTX *w = ASYNC_get_wait_ctx(ASYNC_get_current_job());
    CK_RV rv = CKR_HOST_MEMORY;
    off_req *r = NULL;
    /* What a request cannot carry fails here rather than running on the calling thread:
     * inside a job is a thread that must not call the token. TLS needs neither. */
    if (mech->pParameter != NULL || inlen > REQ_IO_MAX) {
        rv = CKR_MECHANISM_PARAM_INVALID;
        goto out;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        goto out;
    atomic_init(&r->refs, 2);
    atomic_init(&r->done, 0);
    r->efd = w != NULL ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
    r->decrypt = decrypt;
    r->key = *k;
    r->key.n = r->key.e = NULL;
    r->key.pub = NULL;
    r->mech = mech->mechanism;
    memcpy(r->in, in, inlen);
    r->inlen = inlen;
    r->outlen = *outlen < REQ_IO_MAX ? *outlen : REQ_IO_MAX;
    if (w == NULL || r->efd < 0 || !ASYNC_WAIT_CTX_set_wait_fd(w, r, r->efd, r, wait_cleanup)) {
        rv = CKR_GENERAL_ERROR;
        goto out;
    }
    pthread_mutex_lock(&o->mu);
    if (o->tail != NULL)
        o->tail->next = r;
    else
        o->head = r;
    o->tail = r;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
    ASYNC_pause_job();
    ASYNC_WAIT_CTX_clear_fd(w, r);
    if (!atomic_load_explicit(&r->done, memory_order_acquire)) {
        rv = CKR_FUNCTION_CANCELED;     /* resumed early: the caller is giving up */
    } else {
        rv = r->rv;
        if (rv == CKR_OK && r->outlen > *outlen)
            rv = CKR_BUFFER_TOO_SMALL;
        if (rv == CKR_OK) {
            memcpy(out, r->out, r->outlen);
            *outlen = r->outlen;
        }
    }
    req_unref(r);       /* the job's; a key thread holds its own until it wrote the fd */
    r = NULL;
out:
    if (r != NULL) {                    /* never queued: both references are ours */
        atomic_store(&r->refs, 1);
        req_unref(r);
    }
    if (rv != CKR_OK)
        hsm_set_error("%s (offloaded): %s", decrypt ? "C_Decrypt" : "C_Sign", hsm_rv_name(rv));
    return rv;
}
