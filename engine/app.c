/* A running scepd: routing, crypto workers, commit callback. See app.h. */
#include "engine/app.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/audit.h"
#include "engine/ca.h"
#include "engine/challenge.h"
#include "engine/crl.h"
#include "engine/enroll.h"
#include "engine/http.h"
#include "engine/issue.h"
#include "engine/job.h"
#include "engine/ocsp.h"
#include "engine/profile.h"
#include "engine/shard.h"
#include "engine/store.h"
#include "hsm/hsm.h"

#define JOB_MAX_ATTEMPTS 4

/* Jobs a shard collected during one batch of completions; touched only by that shard's
 * thread, handed to the workers by on_flush. */
typedef struct stage {
    job *head, *tail;
    char headers[256];     /* extra header lines of an immediate answer (304) */
} stage;

typedef struct worker {
    struct app   *app;
    pthread_t     thread;
    int           started;
} worker;

struct app {
    config        cfg;
    audit        *audit;
    ca_set       *ca;
    issuer       *issuer;
    store        *store;
    uint32_t      nshards;
    shard       **shards;
    pthread_t    *shard_threads;
    stage        *stages;          /* one per shard */
    OSSL_PROVIDER *legacy;         /* loaded only for allow_des_requests */
    int           nworkers;
    worker       *workers;
    int           stop_fd;         /* eventfd: app_stop -> app_run */
    /* The crypto workers' queue: one lock per pushed list, one wake-up per list. */
    pthread_mutex_t q_mu;
    pthread_cond_t  q_cv;
    job          *q_head, *q_tail;
    size_t        q_len;
    int           q_stopping;
    /* Revocation, CRL, OCSP. */
    crl_signer   *crl_signer;
    crl_cache    *crls;
    char          crl_path[2 * CONFIG_PATH_MAX + 2];
    ocsp_responder *ocsp;
    uint8_t       admin_hash[32];  /* SHA-256 of the admin bearer token */
    int           has_admin;
    /* The CRL publisher thread: decides when to rebuild, waits for the worker's JOB_CRL. */
    pthread_t     pub_thread;
    int           pub_started;
    pthread_mutex_t pub_mu;
    pthread_cond_t  pub_cv;
    int           pub_stop, pub_wake;
    job          *pub_done;
};

static const char CT_TEXT[] = "text/plain";

/* ------------------------------------------------------------------ job lifecycle */

static void job_release(shard_reply *r)
{
    job *j = JOB_OF_REPLY(r);
    if (j->unhold != NULL)
        j->unhold(j->hold);
    if (j->ext_free != NULL)
        j->ext_free(j->ext);
    free(j->msg);
    free(j->body);
    free(j->cert_der);
    free(j);
}

static job *job_new(app *a, int kind, conn_ref ref, const char *peer, const char *pname)
{
    job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->owner = a;
    j->kind = kind;
    j->reply.ref = ref;
    j->reply.release = job_release;
    snprintf(j->peer, sizeof(j->peer), "%s", peer != NULL ? peer : "");
    snprintf(j->profile, sizeof(j->profile), "%s", pname);
    return j;
}

/* Appends a linked list of jobs to the worker queue. */
static void queue_push(app *a, job *head)
{
    job *tail = head;
    size_t n = 1;
    if (head == NULL)
        return;
    while (tail->next != NULL) {
        tail = tail->next;
        n++;
    }
    pthread_mutex_lock(&a->q_mu);
    if (a->q_tail != NULL)
        a->q_tail->next = head;
    else
        a->q_head = head;
    a->q_tail = tail;
    a->q_len += n;
    if (n > 1)
        pthread_cond_broadcast(&a->q_cv);
    else
        pthread_cond_signal(&a->q_cv);
    pthread_mutex_unlock(&a->q_mu);
}

/* Takes a fair share of the queue (ceil(len / workers)), or NULL when stopping and empty. */
static job *queue_take(app *a)
{
    job *head = NULL;
    pthread_mutex_lock(&a->q_mu);
    while (a->q_head == NULL && !a->q_stopping)
        pthread_cond_wait(&a->q_cv, &a->q_mu);
    if (a->q_head != NULL) {
        size_t share = (a->q_len + (size_t)a->nworkers - 1) / (size_t)a->nworkers;
        size_t taken = 1;
        head = a->q_head;
        job *last = head;
        for (; taken < share && last->next != NULL; taken++)
            last = last->next;
        a->q_head = last->next;
        if (a->q_head == NULL)
            a->q_tail = NULL;
        last->next = NULL;
        a->q_len -= taken;
    }
    pthread_mutex_unlock(&a->q_mu);
    return head;
}

/* Sends each job's reply to its shard: one shard_deliver per shard per call. */
static void deliver(app *a, job *list)
{
    shard_reply *heads[64] = {0};
    shard_reply **per = a->nshards <= 64 ? heads : calloc(a->nshards, sizeof(*per));
    if (per == NULL) {
        for (job *j = list, *n; j != NULL; j = n) {    /* fall back to one at a time */
            n = j->next;
            j->reply.next = NULL;
            shard_deliver(a->shards[j->reply.ref.shard], &j->reply);
        }
        return;
    }
    for (job *j = list, *n; j != NULL; j = n) {
        n = j->next;
        j->next = NULL;
        j->reply.next = per[j->reply.ref.shard];
        per[j->reply.ref.shard] = &j->reply;
    }
    for (uint32_t i = 0; i < a->nshards; i++)
        if (per[i] != NULL)
            shard_deliver(a->shards[i], per[i]);
    if (per != heads)
        free(per);
}

/* ------------------------------------------------------------------ crypto workers */

static void health(app *a, job *j)
{
    int ok = store_ping(a->store) == 0 && (a->ca->token == NULL || hsm_ping(a->ca->token) == 0);
    enroll_http_error(j, ok ? 200 : 503, ok ? "ok\n" : "unavailable\n");
    j->reply.resp.close = 0;
}

static void set_body(job *j, int status, const char *ct, uint8_t *body, size_t len)
{
    free(j->body);
    j->body = body;
    j->body_len = len;
    j->reply.resp.status = status;
    j->reply.resp.content_type = ct;
    j->reply.resp.body = body;
    j->reply.resp.body_len = len;
    j->reply.resp.extra_headers = NULL;
    j->reply.resp.close = 0;
}

/* An OCSP request on a worker: cached answer, or the statuses from the store and one
 * signature with the delegated key. */
static void ocsp_job(app *a, store_reader *reader, job *j)
{
    uint8_t *out = NULL;
    size_t len = 0;
    int status = 0, cached = 0;
    if (ocsp_respond(a->ocsp, reader, j->msg, j->msg_len, (int64_t)time(NULL), &out, &len,
                     &status, &cached) != 0) {
        enroll_http_error(j, 503, "busy\n");
        return;
    }
    if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        audit_fields f = {.diag = status == OCSP_RESPONSE_STATUS_MALFORMEDREQUEST ? "ocsp_malformed"
                                : status == OCSP_RESPONSE_STATUS_UNAUTHORIZED ? "ocsp_unauthorized"
                                : "ocsp_internal",
                          .peer = j->peer, .failinfo = -1, .http_status = 200};
        audit_emit(a->audit, AUDIT_OCSP_FAILED, &f);
    }
    set_body(j, 200, "application/ocsp-response", out, len);
}

typedef struct crl_fill {
    crl_builder *b;
    int rc;
} crl_fill;

static int crl_add_one(const store_revocation *rv, void *arg)
{
    crl_fill *f = arg;
    f->rc = crl_builder_add(f->b, rv->serial, STORE_SERIAL_LEN, rv->revoked_at, rv->reason,
                            rv->invalidity);
    return f->rc;
}

static void crl_handoff(app *a, job *j)
{
    pthread_mutex_lock(&a->pub_mu);
    a->pub_done = j;
    pthread_cond_broadcast(&a->pub_cv);
    pthread_mutex_unlock(&a->pub_mu);
}

/* The publisher's build on a worker: every revocation from one snapshot into the DER
 * builder (the snapshot ends before the signature), one CA signature, then the new CRL
 * number goes to the writer; the CRL is published only once that number is durable.
 * Returns 1 when j->put must be committed, 0 when j went back to the publisher (failure). */
static int crl_job(app *a, store_reader *reader, job *j)
{
    crl_builder *b = NULL;
    uint64_t gen = 0, number = 0;
    size_t n = 0;
    int rc = -1;

    if (store_reader_begin(reader) != 0)
        goto out;
    if (store_get_counters(reader, &gen, &number) == 0 && store_count_revoked(reader, &n) == 0 &&
        crl_builder_create(n, &b) == 0) {
        crl_fill f = {b, 0};
        rc = store_foreach_revoked(reader, crl_add_one, &f);
    }
    store_reader_end(reader);
    if (rc != 0)
        goto out;
    rc = -1;
    if (number < j->crl_number)
        number = j->crl_number;
    number++;
    int64_t now = (int64_t)time(NULL);
    uint8_t *der = NULL;
    size_t len = 0;
    if (crl_builder_sign(b, a->crl_signer, number, now, now + a->cfg.crl_validity_s, &der,
                         &len) != 0)
        goto out;
    free(j->body);
    j->body = der;
    j->body_len = len;
    j->crl_number = number;
    j->crl_rev_gen = gen;
    j->crl_this_update = now;
    j->crl_next_update = now + a->cfg.crl_validity_s;
    memset(&j->put, 0, sizeof(j->put));
    j->put.kind = STORE_PUT_CRL_NUMBER;
    j->put.crl_number = number;
    rc = 0;
out:
    crl_builder_destroy(b);
    if (rc != 0) {
        j->crl_ok = 0;
        crl_handoff(a, j);
        return 0;
    }
    return 1;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    app *a = w->app;
    store_reader *reader = NULL;

    if (a->ca->token != NULL && hsm_thread_attach(a->ca->token) != 0) {
        fprintf(stderr, "scepd: worker cannot open a PKCS#11 session: %s\n", hsm_last_error());
        audit_fields f = {.detail = "worker cannot open a PKCS#11 session", .failinfo = -1};
        audit_emit(a->audit, AUDIT_HSM_FAILURE, &f);
    }
    if (store_reader_create(a->store, &reader) != 0) {
        fprintf(stderr, "scepd: worker cannot create a store reader\n");
        return NULL;
    }
    enroll_ctx ctx = {&a->cfg, a->ca, a->issuer, a->audit, reader, a->crls};
    for (;;) {
        job *batch = queue_take(a);
        if (batch == NULL)
            break;
        job *out = NULL;
        store_put *commit = NULL, **ctail = &commit;
        for (job *j = batch, *n; j != NULL; j = n) {
            n = j->next;
            j->next = NULL;
            if (j->kind == JOB_HEALTH) {
                health(a, j);
            } else if (j->kind == JOB_OCSP) {
                ocsp_job(a, reader, j);
            } else if (j->kind == JOB_CRL) {
                if (crl_job(a, reader, j)) {
                    j->put.next = NULL;
                    *ctail = &j->put;
                    ctail = &j->put.next;
                }
                continue;
            } else if (enroll_process(&ctx, j) == JOB_COMMIT) {
                j->put.next = NULL;
                *ctail = &j->put;
                ctail = &j->put.next;
                continue;
            }
            j->next = out;
            out = j;
        }
        if (commit != NULL)
            store_submit(a->store, commit);
        deliver(a, out);
    }
    store_reader_destroy(reader);
    if (a->ca->token != NULL)
        hsm_thread_detach();
    return NULL;
}

/* Writer thread: the answer to POST /admin/revocations, once the revocation is durable. */
static void revoke_committed(app *a, job *j)
{
    const store_revocation *rv = &j->put.rev;
    int rc = j->put.result, status;
    char *body = malloc(256);
    const char *state;

    switch (rc) {
    case STORE_OK:              status = 200; state = "revoked"; break;
    case STORE_ALREADY_REVOKED: status = 200; state = "already_revoked"; break;
    case STORE_NOTFOUND:        status = 404; state = "unknown_serial"; break;
    default:                    status = 503; state = "store_failure"; break;
    }
    audit_fields f = {.serial = j->serial_hex, .peer = j->peer, .detail = j->who,
                      .diag = rc == STORE_OK ? NULL : state, .failinfo = -1,
                      .http_status = status};
    /* A repeated revocation is not a failure: the first one stands (idempotent). */
    int ok = rc == STORE_OK || rc == STORE_ALREADY_REVOKED;
    audit_emit(a->audit, ok ? AUDIT_REVOKED : AUDIT_REVOKE_FAILED, &f);
    if (body == NULL) {
        enroll_http_error(j, 503, "out of memory\n");
        return;
    }
    int n = snprintf(body, 256, "{\"serial\":\"%s\",\"status\":\"%s\"", j->serial_hex, state);
    if (rc == STORE_OK || rc == STORE_ALREADY_REVOKED)
        n += snprintf(body + n, 256 - (size_t)n, ",\"reason\":\"%s\",\"revoked_at\":%lld",
                      crl_reason_name(rv->reason), (long long)rv->revoked_at);
    n += snprintf(body + n, 256 - (size_t)n, "}\n");
    set_body(j, status, "application/json", (uint8_t *)body, (size_t)n);
    if (rc == STORE_OK) {
        pthread_mutex_lock(&a->pub_mu);       /* the publisher rebuilds the CRL soon */
        a->pub_wake = 1;
        pthread_cond_broadcast(&a->pub_cv);
        pthread_mutex_unlock(&a->pub_mu);
    }
}

/* Writer thread: the answer to POST /admin/challenges, once the challenge is durable. The
 * value itself is only in this answer (the store keeps its hash). */
static void challenge_committed(app *a, job *j)
{
    int ok = j->put.result == STORE_OK && j->put.verdict == 0;
    audit_fields f = {.profile = j->profile, .peer = j->peer, .detail = j->who,
                      .diag = ok ? NULL : "store_failure", .failinfo = -1,
                      .http_status = ok ? 201 : 503};
    audit_emit(a->audit, ok ? AUDIT_CHALLENGE_CREATED : AUDIT_STORE_FAILURE, &f);
    if (!ok) {
        enroll_http_error(j, 503, "store unavailable, retry later\n");
        j->reply.resp.close = 0;
        return;
    }
    char *body = malloc(512);
    if (body == NULL) {
        enroll_http_error(j, 503, "out of memory\n");
        return;
    }
    int n = snprintf(body, 512, "{\"challenge\":\"%s\",\"profile\":\"%s\",\"expires\":%lld}\n",
                     j->txkey, j->profile, (long long)j->crl_next_update);
    OPENSSL_cleanse(j->txkey, sizeof(j->txkey));
    set_body(j, 201, "application/json", (uint8_t *)body, (size_t)n);
}

/* Writer thread: a new challenge record, written only when its key is new. */
static int challenge_insert(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                            size_t *nl)
{
    job *j = arg;
    (void)cur_len;
    if (cur != NULL)
        return 1;
    *nv = j->msg;
    *nl = j->msg_len;
    return 0;
}

/* Store writer thread: the batch is durable. Certificates may now leave the server. */
static void on_committed(store_put *batch, void *arg)
{
    app *a = arg;
    job *out = NULL, *retry = NULL;

    for (store_put *p = batch, *n; p != NULL; p = n) {
        n = p->next;
        job *j = JOB_OF_PUT(p);
        j->next = NULL;
        if (j->kind == JOB_CRL) {
            j->crl_ok = p->result == STORE_OK;
            crl_handoff(a, j);
            continue;
        }
        if (j->kind == JOB_REVOKE) {
            revoke_committed(a, j);
            j->next = out;
            out = j;
            continue;
        }
        if (j->kind == JOB_CHALLENGE) {
            challenge_committed(a, j);
            j->next = out;
            out = j;
            continue;
        }
        if (p->result == STORE_OK && j->requeue) {
            /* The one-time challenge was checked (and consumed when right) in this commit:
             * the worker now issues, or answers the refusal it was told. */
            j->requeue = 0;
            j->chal_done = 1;
            j->chal_verdict = p->verdict;
            if (p->verdict == 0) {
                audit_fields f = {.diag = "challenge_ok", .txid = j->txkey, .profile = j->profile,
                                  .subject = j->subject, .peer = j->peer, .failinfo = -1};
                audit_emit(a->audit, AUDIT_CHALLENGE_CONSUMED, &f);
            }
            j->next = retry;
            retry = j;
        } else if (p->result == STORE_OK) {
            audit_fields f = {.txid = j->txkey, .profile = j->profile, .subject = j->subject,
                              .serial = j->serial_hex, .peer = j->peer,
                              .detail = j->audit_detail, .failinfo = -1};
            audit_emit(a->audit, j->audit_event, &f);
            j->next = out;
            out = j;
        } else if ((p->result == STORE_DUP_SERIAL || p->result == STORE_DUP_TXID) &&
                   ++j->attempts < JOB_MAX_ATTEMPTS) {
            /* A serial collision or a concurrent request of the same transaction: do the
             * worker pass again (new serial, or answer from what the store now holds). */
            j->next = retry;
            retry = j;
        } else {
            audit_fields f = {.txid = j->txkey, .subject = j->subject, .serial = j->serial_hex,
                              .peer = j->peer, .detail = store_strerror(p->result), .failinfo = -1,
                              .http_status = 503};
            audit_emit(a->audit, AUDIT_STORE_FAILURE, &f);
            enroll_http_error(j, 503, "store unavailable, retry later\n");
            j->next = out;
            out = j;
        }
    }
    queue_push(a, retry);
    deliver(a, out);
}

/* ------------------------------------------------------------------ routing (shard thread) */

static void stage_job(app *a, job *j)
{
    stage *st = &a->stages[j->reply.ref.shard];
    j->next = NULL;
    if (st->tail != NULL)
        st->tail->next = j;
    else
        st->head = j;
    st->tail = j;
}

/* End of a shard's completion batch: everything it staged goes to the workers at once. */
static void on_flush(void *ctx, uint32_t shard_index)
{
    app *a = ctx;
    stage *st = &a->stages[shard_index];
    if (st->head == NULL)
        return;
    queue_push(a, st->head);
    st->head = st->tail = NULL;
}

static int path_is(http_slice path, const char *s, int icase)
{
    size_t n = strlen(s);
    if (path.n != n)
        return 0;
    return icase ? strncasecmp(path.p, s, n) == 0 : memcmp(path.p, s, n) == 0;
}

/* SCEP paths: /scep, /scep/<profile>[/...], and the NDES-compatible names. pname gets the
 * profile the URL names, or "" for the default path (chosen by keyUsage). Returns 1, 0 for
 * a path that is not SCEP, -1 for an unknown profile. */
static int scep_path(const app *a, http_slice path, char *pname, size_t plen)
{
    pname[0] = '\0';
    if (path_is(path, "/cgi-bin/pkiclient.exe", 1) || path_is(path, "/certsrv/mscep/mscep.dll", 1) ||
        path_is(path, "/certsrv/mscep/mscep.dll/pkiclient.exe", 1) || path_is(path, "/scep", 0))
        return 1;
    if (path.n < 6 || memcmp(path.p, "/scep/", 6) != 0)
        return 0;
    const char *name = path.p + 6, *end = path.p + path.n;
    const char *slash = memchr(name, '/', (size_t)(end - name));
    size_t n = (size_t)((slash != NULL ? slash : end) - name);
    /* "/scep/" and "/scep/pkiclient.exe" (clients that append the CGI name) are the default. */
    if (n == 0 || (n == 13 && slash == NULL && strncasecmp(name, "pkiclient.exe", 13) == 0))
        return 1;
    if (n >= plen || profile_set_find(issuer_profiles(a->issuer), name, n) == NULL)
        return -1;
    memcpy(pname, name, n);
    pname[n] = '\0';
    return 1;
}

static int respond(http_response *resp, int status, const char *ct, const void *body, size_t len)
{
    resp->status = status;
    resp->content_type = ct;
    resp->body = body;
    resp->body_len = len;
    resp->extra_headers = NULL;
    resp->close = status >= 400 && status != 404;
    return APP_RESPOND;
}

/* Refusals made by the HTTP layer itself (limits, timeouts, malformed requests). */
static void on_http_reject(void *ctx, int status, const char *reason, const char *peer)
{
    app *a = ctx;
    audit_fields f = {.diag = "http", .peer = peer, .detail = reason, .failinfo = -1,
                      .http_status = status};
    audit_emit(a->audit, AUDIT_HTTP_REJECTED, &f);
}

static int reject(app *a, http_response *resp, int status, const char *reason, const char *peer)
{
    on_http_reject(a, status, reason, peer);
    return respond(resp, status, CT_TEXT, reason, strlen(reason));
}

/* Decodes the PKIOperation message of a GET (percent-encoded base64) or POST (DER; base64
 * tolerated). Returns a malloc'd DER or NULL. */
static uint8_t *pki_message(const http_request *req, const uint8_t *body, size_t body_len,
                            int is_get, size_t *outlen)
{
    char *txt = NULL;
    const char *b64 = NULL;
    size_t b64len = 0;
    uint8_t *der = NULL;

    if (is_get) {
        http_slice m;
        if (!http_query_param(req->query, "message", &m) || m.n == 0)
            return NULL;
        txt = malloc(m.n + 1);
        if (txt == NULL)
            return NULL;
        long n = http_percent_decode(m, txt, 0);
        if (n <= 0)
            goto out;
        b64 = txt;
        b64len = (size_t)n;
    } else {
        if (body_len == 0)
            return NULL;
        if (body[0] == 0x30) {     /* DER SEQUENCE: the normal case */
            der = malloc(body_len);
            if (der != NULL) {
                memcpy(der, body, body_len);
                *outlen = body_len;
            }
            return der;
        }
        b64 = (const char *)body;
        b64len = body_len;
    }
    der = malloc(3 * (b64len / 4) + 3);
    if (der != NULL) {
        long n = http_base64_decode(b64, b64len, der);
        if (n <= 0) {
            free(der);
            der = NULL;
        } else {
            *outlen = (size_t)n;
        }
    }
out:
    free(txt);
    return der;
}

static int prefix_is(http_slice path, const char *s)
{
    size_t n = strlen(s);
    return path.n >= n && memcmp(path.p, s, n) == 0;
}

static void unhold_crl(void *p)
{
    crl_snapshot_unref(p);
}

/* GET /crl/ca.crl: the published CRL, by reference (no copy of a large CRL); 304 when the
 * client already has it. */
static int serve_crl(app *a, const http_request *req, conn_ref ref, const char *peer,
                     http_response *resp)
{
    crl_snapshot *crl = crl_cache_get(a->crls);
    http_slice inm;
    if (crl == NULL)
        return respond(resp, 503, CT_TEXT, "no CRL published yet\n", 21);
    if (http_find_header(req, "If-None-Match", &inm) && inm.n == strlen(crl->etag) &&
        memcmp(inm.p, crl->etag, inm.n) == 0) {
        stage *st = &a->stages[ref.shard];
        snprintf(st->headers, sizeof(st->headers), "%s", crl->headers);
        crl_snapshot_unref(crl);
        respond(resp, 304, NULL, NULL, 0);
        resp->extra_headers = st->headers;
        return APP_RESPOND;
    }
    job *j = job_new(a, JOB_HELD, ref, peer, "");
    if (j == NULL) {
        crl_snapshot_unref(crl);
        return respond(resp, 503, CT_TEXT, "busy\n", 5);
    }
    j->hold = crl;
    j->unhold = unhold_crl;
    snprintf(j->headers, sizeof(j->headers), "%s", crl->headers);
    j->reply.resp.status = 200;
    j->reply.resp.content_type = "application/pkix-crl";
    j->reply.resp.body = crl->der;
    j->reply.resp.body_len = crl->len;
    j->reply.resp.extra_headers = j->headers;
    shard_deliver(a->shards[ref.shard], &j->reply);
    return APP_DEFER;
}

/* /ocsp: POST with the DER request as body, or GET /ocsp/<base64, percent-encoded>. */
static int ocsp_route(app *a, const http_request *req, const uint8_t *body, size_t body_len,
                      int is_get, int is_post, conn_ref ref, const char *peer, http_response *resp)
{
    uint8_t *der = NULL;
    size_t len = 0;
    if (a->ocsp == NULL)
        return reject(a, resp, 404, "OCSP responder not configured\n", peer);
    if (is_post && path_is(req->path, "/ocsp", 0)) {
        if (body_len == 0)
            return reject(a, resp, 400, "empty OCSP request\n", peer);
        der = malloc(body_len);
        if (der == NULL)
            return respond(resp, 503, CT_TEXT, "busy\n", 5);
        memcpy(der, body, body_len);
        len = body_len;
    } else if (is_get && req->path.n > 6) {
        http_slice enc = {req->path.p + 6, req->path.n - 6};
        char *txt = malloc(enc.n + 1);
        long n = txt != NULL ? http_percent_decode(enc, txt, 0) : -1;
        der = n > 0 ? malloc(3 * ((size_t)n / 4) + 3) : NULL;
        long m = der != NULL ? http_base64_decode(txt, (size_t)n, der) : -1;
        free(txt);
        if (m <= 0) {
            free(der);
            return reject(a, resp, 400, "OCSP GET request is not base64\n", peer);
        }
        len = (size_t)m;
    } else {
        reject(a, resp, 405, "method not allowed\n", peer);
        resp->extra_headers = "Allow: GET, POST\r\n";
        return APP_RESPOND;
    }
    job *j = job_new(a, JOB_OCSP, ref, peer, "");
    if (j == NULL) {
        free(der);
        return respond(resp, 503, CT_TEXT, "busy\n", 5);
    }
    j->msg = der;
    j->msg_len = len;
    stage_job(a, j);
    return APP_DEFER;
}

/* The value of "key" in a flat JSON object of strings ({"serial":"..","reason":".."}) or
 * in a form body (serial=..&reason=..). Returns 1 and a NUL-terminated copy, 0 if absent,
 * -1 if malformed or too long. */
static int body_field(const uint8_t *body, size_t len, const char *key, char *out, size_t outlen)
{
    size_t i = 0, kl = strlen(key);
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i < len && body[i] == '{') {
        for (size_t k = i; k + kl + 2 <= len; k++) {
            if (body[k] != '"' || memcmp(body + k + 1, key, kl) != 0 || body[k + 1 + kl] != '"')
                continue;
            size_t v = k + kl + 2;
            while (v < len && (body[v] == ' ' || body[v] == ':' || body[v] == '\t'))
                v++;
            if (v >= len || body[v] != '"')
                return -1;
            size_t e = ++v;
            while (e < len && body[e] != '"' && body[e] != '\\')
                e++;
            if (e >= len || body[e] != '"' || e - v >= outlen)
                return -1;
            memcpy(out, body + v, e - v);
            out[e - v] = '\0';
            return 1;
        }
        return 0;
    }
    http_slice form = {(const char *)body, len}, v;
    if (!http_query_param(form, key, &v))
        return 0;
    if (v.n >= outlen)
        return -1;
    long n = http_percent_decode(v, out, 1);
    if (n < 0)
        return -1;
    out[n] = '\0';
    return 1;
}

static int parse_serial_hex(const char *s, uint8_t out[STORE_SERIAL_LEN])
{
    size_t n = strlen(s);
    uint8_t b[STORE_SERIAL_LEN] = {0};
    if (n == 0 || n > 2 * STORE_SERIAL_LEN)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = s[n - 1 - i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0)
            return -1;
        b[STORE_SERIAL_LEN - 1 - i / 2] |= (uint8_t)(i % 2 ? v << 4 : v);
    }
    memcpy(out, b, sizeof(b));
    return 0;
}

static int admin_reject_ev(app *a, int event, http_response *resp, int status,
                           const char *diag, const char *text, const char *peer)
{
    audit_fields f = {.diag = diag, .peer = peer, .detail = text, .failinfo = -1,
                      .http_status = status};
    audit_emit(a->audit, event, &f);
    respond(resp, status, CT_TEXT, text, strlen(text));
    resp->close = 0;
    if (status == 401)
        resp->extra_headers = "WWW-Authenticate: Bearer realm=\"scepd-admin\"\r\n";
    return APP_RESPOND;
}

static int admin_reject(app *a, http_response *resp, int status, const char *diag,
                        const char *text, const char *peer)
{
    return admin_reject_ev(a, AUDIT_REVOKE_FAILED, resp, status, diag, text, peer);
}

/* Bearer token check: both sides hashed, compared in constant time. */
static int admin_authorised(const app *a, const http_request *req)
{
    http_slice h;
    uint8_t got[32];
    if (!a->has_admin || !http_find_header(req, "Authorization", &h) || h.n < 8 ||
        strncasecmp(h.p, "Bearer ", 7) != 0)
        return 0;
    if (EVP_Digest(h.p + 7, h.n - 7, got, NULL, EVP_sha256(), NULL) != 1)
        return 0;
    return CRYPTO_memcmp(got, a->admin_hash, sizeof(got)) == 0;
}

/* POST /admin/revocations: the revocation goes straight to the store writer (no crypto);
 * the answer is sent from the commit callback. */
static int admin_revoke(app *a, const http_request *req, const uint8_t *body, size_t body_len,
                        int is_post, conn_ref ref, const char *peer, http_response *resp)
{
    char serial_txt[80], reason_txt[40], inv_txt[24];
    uint8_t serial[STORE_SERIAL_LEN];
    int reason = 0;
    long long inv = 0;

    if (!a->has_admin)
        return reject(a, resp, 404, "admin API disabled\n", peer);
    if (!admin_authorised(a, req))
        return admin_reject(a, resp, 401, "unauthorized", "missing or wrong bearer token\n", peer);
    if (!is_post) {
        reject(a, resp, 405, "method not allowed\n", peer);
        resp->extra_headers = "Allow: POST\r\n";
        return APP_RESPOND;
    }
    int hs = body_field(body, body_len, "serial", serial_txt, sizeof(serial_txt));
    if (hs != 1 || parse_serial_hex(serial_txt, serial) != 0)
        return admin_reject(a, resp, 400, "bad_serial", "serial missing or not 1-32 hex digits\n", peer);
    int hr = body_field(body, body_len, "reason", reason_txt, sizeof(reason_txt));
    if (hr < 0 || (hr == 1 && (reason = crl_reason_from_name(reason_txt)) < 0))
        return admin_reject(a, resp, 400, "bad_reason", "unknown reason (RFC 5280 name, e.g. keyCompromise)\n", peer);
    int hi = body_field(body, body_len, "invalidity_date", inv_txt, sizeof(inv_txt));
    if (hi < 0 || (hi == 1 && (sscanf(inv_txt, "%lld", &inv) != 1 || inv <= 0)))
        return admin_reject(a, resp, 400, "bad_invalidity", "invalidity_date must be seconds since the epoch\n", peer);
    job *j = job_new(a, JOB_REVOKE, ref, peer, "");
    if (j == NULL)
        return respond(resp, 503, CT_TEXT, "busy\n", 5);
    for (int i = 0; i < STORE_SERIAL_LEN; i++)
        snprintf(j->serial_hex + 2 * i, 3, "%02x", serial[i]);
    snprintf(j->who, sizeof(j->who), "admin-api %s", peer != NULL ? peer : "");
    store_revocation *rv = &j->put.rev;
    j->put.kind = STORE_PUT_REVOKE;
    memcpy(rv->serial, serial, sizeof(serial));
    rv->reason = reason;
    rv->revoked_at = (int64_t)time(NULL);
    rv->invalidity = (int64_t)inv;
    rv->who = j->who;
    rv->who_len = strlen(j->who);
    store_submit(a->store, &j->put);
    return APP_DEFER;
}

/* POST /admin/challenges {"profile":"P","ttl":"60m","subject":"/CN=..","san":"dns:.."}:
 * a new one-time challenge, stored (hashed) by the writer; the value is answered from the
 * commit callback. Generating it is cheap (random bytes, one hash): done right here. */
static int admin_challenge(app *a, const http_request *req, const uint8_t *body, size_t body_len,
                           int is_post, conn_ref ref, const char *peer, http_response *resp)
{
    char pname[64], ttl_txt[32], subject[512], san[1024];
    const char *why = NULL;

    if (!a->has_admin)
        return reject(a, resp, 404, "admin API disabled\n", peer);
    if (!admin_authorised(a, req))
        return admin_reject_ev(a, AUDIT_HTTP_REJECTED, resp, 401, "unauthorized", "missing or wrong bearer token\n", peer);
    if (!is_post) {
        reject(a, resp, 405, "method not allowed\n", peer);
        resp->extra_headers = "Allow: POST\r\n";
        return APP_RESPOND;
    }
    int hp = body_field(body, body_len, "profile", pname, sizeof(pname));
    const profile *prof = hp == 1 ? profile_set_find(issuer_profiles(a->issuer), pname,
                                                     strlen(pname)) : NULL;
    if (prof == NULL)
        return admin_reject_ev(a, AUDIT_HTTP_REJECTED, resp, 400, "bad_profile", "profile missing or unknown\n", peer);
    if (prof->challenge != PROFILE_CHALLENGE_ONETIME)
        return admin_reject_ev(a, AUDIT_HTTP_REJECTED, resp, 400, "bad_profile", "the profile does not use one-time challenges\n", peer);
    long long ttl_ms = 3600 * 1000LL;
    int ht = body_field(body, body_len, "ttl", ttl_txt, sizeof(ttl_txt));
    if (ht < 0 || (ht == 1 && ((ttl_ms = config_parse_duration_ms(ttl_txt)) < 1000)))
        return admin_reject_ev(a, AUDIT_HTTP_REJECTED, resp, 400, "bad_ttl", "ttl must be a duration of at least 1s (e.g. 60m)\n", peer);
    int hs = body_field(body, body_len, "subject", subject, sizeof(subject));
    int hn = body_field(body, body_len, "san", san, sizeof(san));
    if (hs < 0 || hn < 0)
        return admin_reject_ev(a, AUDIT_HTTP_REJECTED, resp, 400, "bad_binding", "subject or san malformed or too long\n", peer);
    job *j = job_new(a, JOB_CHALLENGE, ref, peer, prof->name);
    uint8_t *rec = malloc(CHALLENGE_RECORD_MAX);
    if (j == NULL || rec == NULL) {
        free(rec);
        if (j != NULL)
            job_release(&j->reply);
        return respond(resp, 503, CT_TEXT, "busy\n", 5);
    }
    int64_t now = (int64_t)time(NULL);
    size_t rec_len = 0;
    if (challenge_create(prof->name, now, ttl_ms / 1000, hs == 1 ? subject : NULL,
                         hn == 1 ? san : NULL, j->txkey, j->aux_key, rec, &rec_len, &why) != 0) {
        free(rec);
        job_release(&j->reply);
        char msg[200];
        snprintf(msg, sizeof(msg), "%s\n", why);
        audit_fields f = {.diag = "bad_binding", .peer = peer, .detail = why, .failinfo = -1,
                          .http_status = 400};
        audit_emit(a->audit, AUDIT_HTTP_REJECTED, &f);
        respond(resp, 400, CT_TEXT, why, strlen(why));
        resp->close = 0;
        return APP_RESPOND;
    }
    j->msg = rec;
    j->msg_len = rec_len;
    j->crl_next_update = now + ttl_ms / 1000;     /* the expiry, for the answer */
    snprintf(j->who, sizeof(j->who), "admin-api %s", peer != NULL ? peer : "");
    j->put.kind = STORE_PUT_UPDATE;
    j->put.aux_db = STORE_DB_CHALLENGES;
    j->put.aux_key = j->aux_key;
    j->put.aux_key_len = sizeof(j->aux_key);
    j->put.update = challenge_insert;
    j->put.update_arg = j;
    store_submit(a->store, &j->put);
    return APP_DEFER;
}

static int on_request(void *ctx, const http_request *req, const uint8_t *body, size_t body_len,
                      conn_ref ref, const char *peer, http_response *resp)
{
    app *a = ctx;
    char pname[64], op[64];
    int is_get = req->method.n == 3 && memcmp(req->method.p, "GET", 3) == 0;
    int is_post = req->method.n == 4 && memcmp(req->method.p, "POST", 4) == 0;

    if (path_is(req->path, "/healthz", 0)) {
        job *j = job_new(a, JOB_HEALTH, ref, peer, "");
        if (j == NULL)
            return respond(resp, 503, CT_TEXT, "busy\n", 5);
        stage_job(a, j);
        return APP_DEFER;
    }
    if (path_is(req->path, "/crl/ca.crl", 0)) {
        if (!is_get)
            return reject(a, resp, 405, "method not allowed\n", peer);
        return serve_crl(a, req, ref, peer, resp);
    }
    if (path_is(req->path, "/ocsp", 0) || prefix_is(req->path, "/ocsp/"))
        return ocsp_route(a, req, body, body_len, is_get, is_post, ref, peer, resp);
    if (path_is(req->path, "/admin/revocations", 0))
        return admin_revoke(a, req, body, body_len, is_post, ref, peer, resp);
    if (path_is(req->path, "/admin/challenges", 0))
        return admin_challenge(a, req, body, body_len, is_post, ref, peer, resp);
    int sp = scep_path(a, req->path, pname, sizeof(pname));
    if (sp == 0)
        return reject(a, resp, 404, "not found\n", peer);
    if (sp < 0)
        return reject(a, resp, 404, "unknown profile\n", peer);
    if (!is_get && !is_post) {
        reject(a, resp, 405, "method not allowed\n", peer);
        resp->extra_headers = "Allow: GET, POST\r\n";
        return APP_RESPOND;
    }
    http_slice opv;
    if (!http_query_param(req->query, "operation", &opv) || opv.n >= sizeof(op))
        return reject(a, resp, 400, "missing or bad operation parameter\n", peer);
    long oplen = http_percent_decode(opv, op, 1);
    if (oplen < 0)
        return reject(a, resp, 400, "bad operation parameter\n", peer);
    op[oplen] = '\0';

    if (strcmp(op, "GetCACaps") == 0)
        return respond(resp, 200, CT_TEXT, a->ca->caps, a->ca->caps_len);
    if (strcmp(op, "GetCACert") == 0)
        return respond(resp, 200, a->ca->cacert_type, a->ca->cacert_body, a->ca->cacert_len);
    if (strcmp(op, "GetNextCACert") == 0) {
        if (a->ca->has_next)
            return respond(resp, 200, a->ca->nextca_type, a->ca->nextca_body, a->ca->nextca_len);
        return reject(a, resp, 404, "no next CA certificate is staged\n", peer);
    }
    if (strcmp(op, "PKIOperation") != 0)
        return reject(a, resp, 400, "unknown operation\n", peer);

    size_t len = 0;
    uint8_t *der = pki_message(req, body, body_len, is_get, &len);
    if (der == NULL)
        return reject(a, resp, 400, "PKIOperation message missing or not base64\n", peer);
    job *j = job_new(a, JOB_PKIOPERATION, ref, peer, pname);
    if (j == NULL) {
        free(der);
        return respond(resp, 503, CT_TEXT, "busy\n", 5);
    }
    j->msg = der;
    j->msg_len = len;
    stage_job(a, j);
    return APP_DEFER;
}

/* ------------------------------------------------------------------ CRL publisher */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Saves and publishes what a JOB_CRL produced (its number is durable by now). */
static int crl_publish(app *a, job *j)
{
    crl_snapshot *snap = NULL;
    char detail[2 * CONFIG_PATH_MAX + 128];
    int e = crl_file_save(a->crl_path, j->body, j->body_len);
    if (e != 0) {
        snprintf(detail, sizeof(detail), "cannot save %s: %s", a->crl_path, strerror(-e));
        audit_fields f = {.diag = "crl_save", .detail = detail, .failinfo = -1};
        audit_emit(a->audit, AUDIT_CRL_FAILED, &f);
        /* Still served: the signed CRL is good, only the copy on disk is older. */
    }
    if (crl_snapshot_create(j->body, j->body_len, j->crl_number, j->crl_this_update,
                            j->crl_next_update, &snap) != 0) {
        j->body = NULL;
        return -1;
    }
    j->body = NULL;
    crl_cache_set(a->crls, snap);
    snprintf(detail, sizeof(detail), "crl_number=%llu bytes=%zu",
             (unsigned long long)j->crl_number, j->body_len);
    audit_fields f = {.detail = detail, .failinfo = -1};
    audit_emit(a->audit, AUDIT_CRL_PUBLISHED, &f);
    return 0;
}

/* Decides when to rebuild: when none is published, when 3/4 of its validity has passed,
 * and rebuild_delay after the store's revocation generation moved (revocations from the
 * admin API wake it at once; scepctl's are seen by polling once a second). Several
 * revocations within the delay make one CRL. Building and signing run on a worker. */
static void *publisher_main(void *arg)
{
    app *a = arg;
    store_reader *reader = NULL;
    uint64_t built_gen = UINT64_MAX;
    int64_t change_seen = 0, retry_at = 0;

    if (store_reader_create(a->store, &reader) != 0)
        return NULL;
    pthread_mutex_lock(&a->pub_mu);
    while (!a->pub_stop) {
        a->pub_wake = 0;
        pthread_mutex_unlock(&a->pub_mu);
        int64_t ms = now_ms(), now = ms / 1000;
        uint64_t gen = 0, num = 0;
        if (store_reader_begin(reader) == 0) {
            if (store_get_counters(reader, &gen, &num) != 0)
                gen = built_gen;
            store_reader_end(reader);
        }
        crl_snapshot *cur = crl_cache_get(a->crls);
        int stale = cur == NULL ||
                    now >= cur->next_update - (cur->next_update - cur->this_update) / 4;
        uint64_t cur_number = cur != NULL ? cur->number : 0;
        crl_snapshot_unref(cur);
        if (gen != built_gen && change_seen == 0)
            change_seen = ms;
        int due = stale || (gen != built_gen && ms - change_seen >= a->cfg.crl_rebuild_delay_ms);
        if (due && ms >= retry_at) {
            job *j = calloc(1, sizeof(*j));
            if (j != NULL) {
                j->owner = a;
                j->kind = JOB_CRL;
                j->crl_number = cur_number;
                queue_push(a, j);
                pthread_mutex_lock(&a->pub_mu);
                while (a->pub_done == NULL)
                    pthread_cond_wait(&a->pub_cv, &a->pub_mu);
                a->pub_done = NULL;
                pthread_mutex_unlock(&a->pub_mu);
                if (j->crl_ok && crl_publish(a, j) == 0) {
                    built_gen = j->crl_rev_gen;
                    change_seen = built_gen == gen ? 0 : ms;
                    retry_at = 0;
                } else {
                    audit_fields f = {.diag = "crl_build", .detail = "CRL build, signature or commit failed; retrying in 10 s",
                                      .failinfo = -1};
                    audit_emit(a->audit, AUDIT_CRL_FAILED, &f);
                    retry_at = ms + 10000;
                }
                free(j->body);
                free(j);
            }
            pthread_mutex_lock(&a->pub_mu);
            continue;
        }
        pthread_mutex_lock(&a->pub_mu);
        if (a->pub_stop || a->pub_wake)
            continue;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long step = a->cfg.crl_rebuild_delay_ms > 0 && a->cfg.crl_rebuild_delay_ms < 1000 &&
                    change_seen != 0 ? a->cfg.crl_rebuild_delay_ms : 1000;
        until.tv_nsec += step * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&a->pub_cv, &a->pub_mu, &until);
    }
    pthread_mutex_unlock(&a->pub_mu);
    store_reader_destroy(reader);
    return NULL;
}

/* ------------------------------------------------------------------ lifecycle */

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

uint16_t app_port(const app *a)
{
    return a->nshards > 0 ? shard_port(a->shards[0]) : 0;
}

static EVP_PKEY *read_key_file(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    return k;
}

/* CRL signer, the last good CRL from disk, the OCSP responder, the admin token. */
static int revocation_setup(app *a, char *err, size_t errlen)
{
    const config *cfg = &a->cfg;
    char token[256];
    X509 *ocsp_cert = NULL;
    EVP_PKEY *ocsp_key = NULL;
    int rc = -1;

    if (crl_signer_create(a->ca->ca_key, a->ca->ca_cert, NULL, &a->crl_signer) != 0 ||
        crl_cache_create(&a->crls) != 0) {
        snprintf(err, errlen, "cannot prepare CRL signing for this CA");
        goto out;
    }
    if (cfg->crl_file[0] == '/')
        snprintf(a->crl_path, sizeof(a->crl_path), "%s", cfg->crl_file);
    else
        snprintf(a->crl_path, sizeof(a->crl_path), "%s/%s", cfg->state_dir, cfg->crl_file);
    crl_snapshot *last = NULL;
    if (crl_file_load(a->crl_path, a->ca->ca_pub, &last) == 0)
        crl_cache_set(a->crls, last);      /* served until the first rebuild replaces it */
    if (cfg->ocsp_cert[0] != '\0') {
        if ((ocsp_cert = ca_read_cert(cfg->ocsp_cert)) == NULL) {
            snprintf(err, errlen, "cannot read the OCSP responder certificate %s", cfg->ocsp_cert);
            goto out;
        }
        if (a->ca->token != NULL) {
            if (hsm_key_load(a->ca->token, cfg->ocsp_key_label, &ocsp_key) != 0) {
                snprintf(err, errlen, "OCSP key '%s': %s", cfg->ocsp_key_label, hsm_last_error());
                goto out;
            }
        } else if ((ocsp_key = read_key_file(cfg->ocsp_key_file)) == NULL) {
            snprintf(err, errlen, "cannot read the OCSP key file %s", cfg->ocsp_key_file);
            goto out;
        }
        if (X509_check_private_key(ocsp_cert, ocsp_key) != 1 ||
            X509_check_issued(a->ca->ca_cert, ocsp_cert) != X509_V_OK) {
            snprintf(err, errlen, "%s does not match its key or was not issued by the CA",
                     cfg->ocsp_cert);
            goto out;
        }
        if (ocsp_responder_create(a->ca->ca_cert, ocsp_cert, ocsp_key, cfg->ocsp_validity_s,
                                  cfg->ocsp_nonce, &a->ocsp) != 0) {
            snprintf(err, errlen, "cannot prepare the OCSP responder");
            goto out;
        }
    }
    int tl = config_read_admin_token(cfg, token, sizeof(token));
    if (tl < 0) {
        snprintf(err, errlen, "admin token_file %s: unreadable, or shorter than 16 bytes",
                 cfg->admin_token_file);
        goto out;
    }
    if (tl > 0) {
        if (EVP_Digest(token, (size_t)tl, a->admin_hash, NULL, EVP_sha256(), NULL) != 1)
            goto out;
        a->has_admin = 1;
    }
    rc = 0;
out:
    OPENSSL_cleanse(token, sizeof(token));
    X509_free(ocsp_cert);
    EVP_PKEY_free(ocsp_key);
    return rc;
}

int app_create(const config *cfg, app **out, char *err, size_t errlen)
{
    app *a = calloc(1, sizeof(*a));
    char pin[256] = "", challenge[256] = "";
    int rc = -1;

    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->cfg = *cfg;
    a->stop_fd = -1;
    pthread_mutex_init(&a->q_mu, NULL);
    pthread_cond_init(&a->q_cv, NULL);
    pthread_mutex_init(&a->pub_mu, NULL);
    pthread_cond_init(&a->pub_cv, NULL);
    if (audit_open(cfg->audit_log, &a->audit) != 0) {
        snprintf(err, errlen, "cannot open audit log %s", cfg->audit_log);
        goto out;
    }
    if (cfg->key_mode == CONFIG_KEYS_PKCS11 &&
        config_read_pin(cfg, pin, sizeof(pin), err, errlen) != 0)
        goto out;
    if (ca_load(cfg, pin, &a->ca, err, errlen) != 0)
        goto out;
    /* Single DES lives in OpenSSL's legacy provider; load it only when asked to. */
    if (cfg->allow_des_requests && (a->legacy = OSSL_PROVIDER_load(NULL, "legacy")) == NULL) {
        snprintf(err, errlen, "allow_des_requests needs OpenSSL's legacy provider, which did not load");
        goto out;
    }
    if (config_read_challenge(cfg, challenge, sizeof(challenge)) < 0) {
        snprintf(err, errlen, "cannot read the challenge (challenge_file %s)", cfg->challenge_file);
        goto out;
    }
    if (issuer_create(cfg, a->ca, challenge, &a->issuer) != 0) {
        snprintf(err, errlen, "cannot prepare certificate extensions for this CA");
        goto out;
    }
    /* A profiles directory replaces the built-in "default" profile; none: the built-in. */
    struct stat pst;
    if (stat(cfg->profiles_dir, &pst) == 0) {
        profile_set *set = NULL;
        char perr[512];
        if (profile_set_load_dir(cfg->profiles_dir, &set, perr, sizeof(perr)) != 0 ||
            issuer_set_profiles(a->issuer, set, perr, sizeof(perr)) != 0) {
            profile_set_destroy(set);
            snprintf(err, errlen, "profiles %s: %s", cfg->profiles_dir, perr);
            goto out;
        }
    } else if (errno != ENOENT) {
        snprintf(err, errlen, "profiles %s: %s", cfg->profiles_dir, strerror(errno));
        goto out;
    }
    int src = store_open(cfg->store_path, cfg->store_map_size, &a->store);
    if (src != 0) {
        snprintf(err, errlen, "store %s: %s", cfg->store_path, store_strerror(src));
        goto out;
    }
    if (revocation_setup(a, err, errlen) != 0)
        goto out;
    a->stop_fd = eventfd(0, EFD_CLOEXEC);
    a->nshards = (uint32_t)(cfg->shards > 0 ? cfg->shards : online_cpus());
    a->nworkers = cfg->workers > 0 ? cfg->workers : online_cpus();
    a->shards = calloc(a->nshards, sizeof(*a->shards));
    a->shard_threads = calloc(a->nshards, sizeof(*a->shard_threads));
    a->stages = calloc(a->nshards, sizeof(*a->stages));
    a->workers = calloc((size_t)a->nworkers, sizeof(*a->workers));
    if (a->stop_fd < 0 || a->shards == NULL || a->shard_threads == NULL || a->workers == NULL ||
        a->stages == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    /* Shard 0 binds first; with port 0 the others reuse the port it got. */
    config scfg = a->cfg;
    for (uint32_t i = 0; i < a->nshards; i++) {
        int e = shard_create(&scfg, i, on_request, a, &a->shards[i]);
        if (e != 0) {
            snprintf(err, errlen, "listen on %s:%u: %s", cfg->listen_host, cfg->listen_port,
                     strerror(-e));
            goto out;
        }
        shard_set_flush(a->shards[i], on_flush);
        shard_set_reject(a->shards[i], on_http_reject);
        if (i == 0)
            scfg.listen_port = shard_port(a->shards[0]);
    }
    a->cfg.listen_port = scfg.listen_port;
    rc = 0;
out:
    OPENSSL_cleanse(pin, sizeof(pin));
    OPENSSL_cleanse(challenge, sizeof(challenge));
    if (rc == 0) {
        *out = a;
        a = NULL;
    }
    app_destroy(a);
    return rc;
}

static void *shard_main(void *arg)
{
    shard_run(arg);
    return NULL;
}

int app_run(app *a)
{
    int rc = -1;
    uint32_t started_shards = 0;

    if (store_writer_start(a->store, a->cfg.batch_max, on_committed, a) != 0)
        return -1;
    for (int i = 0; i < a->nworkers; i++) {
        a->workers[i].app = a;
        if (pthread_create(&a->workers[i].thread, NULL, worker_main, &a->workers[i]) != 0)
            goto stop;
        a->workers[i].started = 1;
    }
    if (pthread_create(&a->pub_thread, NULL, publisher_main, a) != 0)
        goto stop;
    a->pub_started = 1;
    for (; started_shards < a->nshards; started_shards++)
        if (pthread_create(&a->shard_threads[started_shards], NULL, shard_main,
                           a->shards[started_shards]) != 0)
            goto stop;
    {
        audit_fields f = {.detail = "ready", .failinfo = -1};
        audit_emit(a->audit, AUDIT_STARTED, &f);
    }
    uint64_t v;
    while (read(a->stop_fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    rc = 0;
stop:
    /* Order matters: no new requests, then every queued job is processed, then the writer
     * commits (and hands back) what it holds; only then do the shards go away. */
    for (uint32_t i = 0; i < started_shards; i++)
        shard_stop(a->shards[i]);
    for (uint32_t i = 0; i < started_shards; i++)
        pthread_join(a->shard_threads[i], NULL);
    if (a->pub_started) {      /* finishes a build in flight (workers still run) */
        pthread_mutex_lock(&a->pub_mu);
        a->pub_stop = 1;
        pthread_cond_broadcast(&a->pub_cv);
        pthread_mutex_unlock(&a->pub_mu);
        pthread_join(a->pub_thread, NULL);
        a->pub_started = 0;
    }
    pthread_mutex_lock(&a->q_mu);
    a->q_stopping = 1;
    pthread_cond_broadcast(&a->q_cv);
    pthread_mutex_unlock(&a->q_mu);
    for (int i = 0; i < a->nworkers; i++)
        if (a->workers[i].started)
            pthread_join(a->workers[i].thread, NULL);
    store_writer_stop(a->store);
    {
        audit_fields f = {.failinfo = -1};
        audit_emit(a->audit, AUDIT_STOPPED, &f);
    }
    return rc;
}

void app_stop(app *a)
{
    uint64_t one = 1;
    if (a != NULL && a->stop_fd >= 0 && write(a->stop_fd, &one, sizeof(one)) < 0) {
        /* nothing to do from a signal handler */
    }
}

void app_destroy(app *a)
{
    if (a == NULL)
        return;
    for (uint32_t i = 0; a->shards != NULL && i < a->nshards; i++)
        shard_destroy(a->shards[i]);
    /* Jobs left in the queue (only if app_run never ran its workers) */
    for (job *j = a->q_head, *n; j != NULL; j = n) {
        n = j->next;
        job_release(&j->reply);
    }
    free(a->shards);
    free(a->shard_threads);
    free(a->stages);
    if (a->legacy != NULL)
        OSSL_PROVIDER_unload(a->legacy);
    free(a->workers);
    store_close(a->store);
    crl_cache_destroy(a->crls);
    crl_signer_destroy(a->crl_signer);
    ocsp_responder_destroy(a->ocsp);
    issuer_destroy(a->issuer);
    ca_free(a->ca);
    audit_close(a->audit);
    if (a->stop_fd >= 0)
        close(a->stop_fd);
    pthread_mutex_destroy(&a->q_mu);
    pthread_cond_destroy(&a->q_cv);
    pthread_mutex_destroy(&a->pub_mu);
    pthread_cond_destroy(&a->pub_cv);
    free(a);
}
