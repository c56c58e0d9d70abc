/* Prebuilding: every request of a run is signed, encrypted and serialised as HTTP bytes
 * before the timed phase, on all cores, so the timed phase spends client CPU only on
 * send/recv. Each thread has its own scepc_ctx and its own copy of the CA set (scepc objects
 * are per thread); pool keys are shared read-only, which OpenSSL 3 allows. */
#include "loadgen/loadgen.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rand.h>

typedef struct build_job {
    const lg_build_cfg *cfg;
    lg_req *reqs;
    size_t n;
    atomic_size_t next;
    atomic_size_t built;
    atomic_int err;
    atomic_int running;
} build_job;

#define CHUNK 8

static int build_one(const lg_build_cfg *cfg, const scepc_ctx *ctx, const scepc_caset *ca,
                     size_t seq, lg_req *q)
{
    int err;
    char subj[160], txid[SCEPC_TXID_MAX + 1];
    uint8_t rnd[16], *der = NULL;
    size_t der_len = 0;
    X509_NAME *name = NULL;
    X509_REQ *csr = NULL;
    X509 *self = NULL;
    EVP_PKEY *key = cfg->pool[(q->renewal ? seq + cfg->npool / 2 : seq) % cfg->npool];

    snprintf(subj, sizeof(subj), "/CN=lg-%s-%zu/O=scep-loadgen", cfg->runid, seq);
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        err = SCEPC_E_CRYPTO;
        goto out;
    }
    scepc_hex(rnd, sizeof(rnd), 1, txid);
    if ((err = scepc_name_parse(subj, &name)) != SCEPC_OK
        || (err = scepc_build_csr(ctx, key, name, cfg->challenge, NULL, 0,
                                  NULL, cfg->md, &csr)) != SCEPC_OK)
        goto out;
    if (!q->renewal && (err = scepc_self_signed(ctx, key, name, cfg->md, &self)) != SCEPC_OK)
        goto out;
    {
        scepc_msg_params p = {
            .msgtype = q->renewal ? SCEPC_MSG_RENEWALREQ : SCEPC_MSG_PKCSREQ, .csr = csr,
            .signer_cert = q->renewal ? q->signer_cert : self,
            .signer_key = q->renewal ? q->signer_key : key, .ca = ca, .md = cfg->md,
            .cipher = cfg->cipher, .txid = txid,
        };
        if ((err = scepc_build_pkimessage(ctx, &p, &der, &der_len, &q->txn)) != SCEPC_OK)
            goto out;
    }
    if (lg_http_request(cfg->url, cfg->get, der, der_len, &q->http, &q->http_len) != 0) {
        err = SCEPC_E_NOMEM;
        goto out;
    }
    if (!q->renewal) {
        q->signer_cert = self;
        self = NULL;
        EVP_PKEY_up_ref(key);
        q->signer_key = key;
    }
    EVP_PKEY_up_ref(key);
    q->subject_key = key;
out:
    scepc_free(der);
    X509_NAME_free(name);
    X509_REQ_free(csr);
    X509_free(self);
    return err;
}

static void *build_worker(void *arg)
{
    build_job *j = arg;
    const lg_build_cfg *cfg = j->cfg;
    scepc_ctx *ctx = NULL;
    scepc_caset *ca = NULL;
    int err;

    if ((err = scepc_ctx_create(NULL, NULL, &ctx)) != SCEPC_OK
        || (err = scepc_parse_cacert(cfg->cacert, cfg->cacert_len, cfg->cacert_ctype, &ca))
               != SCEPC_OK) {
        atomic_store(&j->err, err);
        goto out;
    }
    for (;;) {
        size_t lo = atomic_fetch_add(&j->next, CHUNK);
        if (lo >= j->n || atomic_load(&j->err))
            break;
        size_t hi = lo + CHUNK < j->n ? lo + CHUNK : j->n;
        for (size_t i = lo; i < hi; i++) {
            if ((err = build_one(cfg, ctx, ca, cfg->first_seq + i, &j->reqs[i])) != SCEPC_OK) {
                unsigned long e = ERR_peek_last_error();
                fprintf(stderr, "scep-loadgen: building request %zu: %s (%s)\n", i,
                        scepc_strerror(err), e ? ERR_reason_error_string(e) : "-");
                atomic_store(&j->err, err);
                goto out;
            }
            atomic_fetch_add(&j->built, 1);
        }
    }
out:
    scepc_caset_destroy(ca);
    scepc_ctx_destroy(ctx);
    atomic_fetch_sub(&j->running, 1);
    return NULL;
}

int lg_build(const lg_build_cfg *cfg, lg_req *reqs, size_t n)
{
    build_job j = { .cfg = cfg, .reqs = reqs, .n = n };
    pthread_t tids[64];
    int nt = cfg->threads < 1 ? 1 : cfg->threads > 64 ? 64 : cfg->threads, started = 0;

    if (n == 0)
        return SCEPC_OK;
    atomic_store(&j.running, nt);
    for (int i = 0; i < nt; i++) {
        if (pthread_create(&tids[i], NULL, build_worker, &j) != 0) {
            atomic_fetch_sub(&j.running, nt - i);
            break;
        }
        started++;
    }
    if (started == 0)
        return SCEPC_E_NOMEM;
    while (cfg->progress && atomic_load(&j.running) > 0) {
        struct timespec ts = { 0, 200000000 };
        printf("\rbuilding requests %zu/%zu   ", atomic_load(&j.built), n);
        fflush(stdout);
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    if (cfg->progress) {
        printf("\r\033[K");
        fflush(stdout);
    }
    return atomic_load(&j.err);
}
