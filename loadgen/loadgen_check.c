/* Response checks, after the timed phase so they cost the measurement nothing: every CertRep
 * goes through scepc_parse_certrep (signer, signature, messageType, transactionID,
 * recipientNonce, senderNonce, pkiStatus, failInfo, decryption, issued key == CSR key).
 * Whatever is not a verified SUCCESS gets an error kind. */
#include "loadgen/loadgen.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/provider.h>

typedef struct check_job {
    const uint8_t *cacert;
    size_t cacert_len;
    const char *ctype;
    int keep;
    int only_decrypt;              /* second pass: only REP_DECRYPT failures */
    lg_req *reqs;
    size_t n;
    atomic_size_t next;
    atomic_int failed;
} check_job;

void lg_req_clear(lg_req *r)
{
    if (!r)
        return;
    free(r->http);
    free(r->body);
    X509_free(r->signer_cert);
    X509_free(r->issued);
    EVP_PKEY_free(r->signer_key);
    EVP_PKEY_free(r->subject_key);
    memset(r, 0, sizeof(*r));
}

static void check_one(const scepc_ctx *ctx, const scepc_caset *ca, int keep, lg_req *q)
{
    static const char *const net_kind[] = {
        [LG_NET_NONE] = "not_sent", [LG_NET_OK] = "ok", [LG_NET_CONNECT] = "connect",
        [LG_NET_IO] = "io", [LG_NET_TIMEOUT] = "timeout", [LG_NET_PROTO] = "http_framing",
    };
    scepc_result res = { 0 };
    int err;

    q->ok = 0;
    if (q->net != LG_NET_OK) {
        snprintf(q->kind, sizeof(q->kind), "%s", net_kind[q->net]);
        return;
    }
    if (q->http_status != 200) {
        snprintf(q->kind, sizeof(q->kind), "http_%d", q->http_status);
        return;
    }
    scepc_expect e = { .txn = &q->txn, .signer_cert = q->signer_cert,
                       .signer_key = q->signer_key, .subject_key = q->subject_key };
    err = scepc_parse_certrep(ctx, q->body, q->body_len, ca, &e, &res);
    ERR_clear_error();
    if (err != SCEPC_OK) {
        snprintf(q->kind, sizeof(q->kind), "validation_%s", scepc_errname(err));
        return;
    }
    if (res.status == SCEPC_SUCCESS) {
        q->ok = 1;
        q->kind[0] = '\0';
        if (keep && res.cert && X509_up_ref(res.cert))
            q->issued = res.cert;
    } else if (res.status == SCEPC_FAILURE) {
        snprintf(q->kind, sizeof(q->kind), "failinfo_%s", scepc_failinfo_name(res.failinfo));
    } else {
        snprintf(q->kind, sizeof(q->kind), "pending");
    }
    scepc_result_clear(&res);
}

static void *check_worker(void *arg)
{
    check_job *j = arg;
    scepc_ctx *ctx = NULL;
    scepc_caset *ca = NULL;

    if (scepc_ctx_create(NULL, NULL, &ctx) != SCEPC_OK
        || scepc_parse_cacert(j->cacert, j->cacert_len, j->ctype, &ca) != SCEPC_OK) {
        atomic_store(&j->failed, 1);
        goto out;
    }
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n)
            break;
        lg_req *q = &j->reqs[i];
        if (j->only_decrypt && strcmp(q->kind, "validation_REP_DECRYPT") != 0)
            continue;
        check_one(ctx, ca, j->keep, q);
    }
out:
    scepc_caset_destroy(ca);
    scepc_ctx_destroy(ctx);
    return NULL;
}

static int run_pass(check_job *j, int threads)
{
    pthread_t tids[64];
    int started = 0;

    atomic_store(&j->next, 0);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&tids[i], NULL, check_worker, j) != 0)
            break;
        started++;
    }
    if (started == 0)
        return -1;
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    return atomic_load(&j->failed) ? -1 : 0;
}

int lg_legacy_load(lg_legacy *p)
{
    if (p->legacy)
        return 0;
    if (!(p->legacy = OSSL_PROVIDER_load(NULL, "legacy"))
        || !(p->deflt = OSSL_PROVIDER_load(NULL, "default"))) {
        lg_legacy_unload(p);
        return -1;
    }
    return 0;
}

void lg_legacy_unload(lg_legacy *p)
{
    if (p->deflt)
        OSSL_PROVIDER_unload(p->deflt);
    if (p->legacy)
        OSSL_PROVIDER_unload(p->legacy);
    p->deflt = p->legacy = NULL;
}

int lg_check(const uint8_t *cacert, size_t cacert_len, const char *ctype, int threads,
             int keep_certs, lg_legacy *legacy, lg_req *reqs, size_t n)
{
    check_job j = { .cacert = cacert, .cacert_len = cacert_len, .ctype = ctype,
                    .keep = keep_certs, .reqs = reqs, .n = n };
    size_t undecrypted = 0;

    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    if (run_pass(&j, threads) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        undecrypted += strcmp(reqs[i].kind, "validation_REP_DECRYPT") == 0;
    /* Peers such as micromdm encrypt CertReps with single DES, which lives in OpenSSL's
     * legacy provider. Loading it only now keeps it out of every run that does not need it. */
    if (undecrypted > 0 && !legacy->legacy) {
        if (lg_legacy_load(legacy) == 0) {
            fprintf(stderr, "scep-loadgen: %zu replies did not decrypt; loaded OpenSSL's legacy "
                            "provider (single-DES peer?) and checked them again\n", undecrypted);
            j.only_decrypt = 1;
            if (run_pass(&j, threads) != 0)
                return -1;
        }
        ERR_clear_error();
    }
    return 0;
}
