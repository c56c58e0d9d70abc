/* A running scepd: routing, crypto workers, commit callback. See app.h. */
#include "engine/app.h"

#include <openssl/crypto.h>
#include <openssl/provider.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine/audit.h"
#include "engine/ca.h"
#include "engine/enroll.h"
#include "engine/http.h"
#include "engine/issue.h"
#include "engine/job.h"
#include "engine/shard.h"
#include "engine/store.h"
#include "hsm/hsm.h"

#define JOB_MAX_ATTEMPTS 4

/* Jobs a shard collected during one batch of completions; touched only by that shard's
 * thread, handed to the workers by on_flush. */
typedef struct stage {
    job *head, *tail;
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
    int           nworkers;
    worker       *workers;
    int           stop_fd;         /* eventfd: app_stop -> app_run */
    /* The crypto workers' queue: one lock per pushed list, one wake-up per list. */
    pthread_mutex_t q_mu;
    pthread_cond_t  q_cv;
    job          *q_head, *q_tail;
    size_t        q_len;
    int           q_stopping;
};

static const char CT_TEXT[] = "text/plain";

/* ------------------------------------------------------------------ job lifecycle */

static void job_release(shard_reply *r)
{
    job *j = JOB_OF_REPLY(r);
    free(j->msg);
    free(j->body);
    free(j->cert_der);
    free(j);
}

static job *job_new(app *a, int kind, conn_ref ref, const char *peer, const char *profile)
{
    job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->owner = a;
    j->kind = kind;
    j->reply.ref = ref;
    j->reply.release = job_release;
    snprintf(j->peer, sizeof(j->peer), "%s", peer != NULL ? peer : "");
    snprintf(j->profile, sizeof(j->profile), "%s", profile);
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
    enroll_ctx ctx = {&a->cfg, a->ca, a->issuer, a->audit, reader};
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

/* Store writer thread: the batch is durable. Certificates may now leave the server. */
static void on_committed(store_put *batch, void *arg)
{
    app *a = arg;
    job *out = NULL, *retry = NULL;

    for (store_put *p = batch, *n; p != NULL; p = n) {
        n = p->next;
        job *j = JOB_OF_PUT(p);
        j->next = NULL;
        if (p->result == STORE_OK) {
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

/* SCEP paths: /scep and anything below it, and the NDES-compatible names. */
static int scep_path(http_slice path, char *profile, size_t plen)
{
    snprintf(profile, plen, "default");
    if (path_is(path, "/cgi-bin/pkiclient.exe", 1) || path_is(path, "/certsrv/mscep/mscep.dll", 1) ||
        path_is(path, "/certsrv/mscep/mscep.dll/pkiclient.exe", 1) || path_is(path, "/scep", 0))
        return 1;
    return path.n >= 6 && memcmp(path.p, "/scep/", 6) == 0;
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

static int reject(app *a, http_response *resp, int status, const char *reason, const char *peer)
{
    audit_fields f = {.diag = "http", .peer = peer, .detail = reason, .failinfo = -1,
                      .http_status = status};
    audit_emit(a->audit, AUDIT_HTTP_REJECTED, &f);
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

static int on_request(void *ctx, const http_request *req, const uint8_t *body, size_t body_len,
                      conn_ref ref, const char *peer, http_response *resp)
{
    app *a = ctx;
    char profile[64], op[64];
    int is_get = req->method.n == 3 && memcmp(req->method.p, "GET", 3) == 0;
    int is_post = req->method.n == 4 && memcmp(req->method.p, "POST", 4) == 0;

    if (path_is(req->path, "/healthz", 0)) {
        job *j = job_new(a, JOB_HEALTH, ref, peer, "");
        if (j == NULL)
            return respond(resp, 503, CT_TEXT, "busy\n", 5);
        stage_job(a, j);
        return APP_DEFER;
    }
    if (!scep_path(req->path, profile, sizeof(profile)))
        return reject(a, resp, 404, "not found\n", peer);
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
    if (strcmp(op, "GetNextCACert") == 0)
        return reject(a, resp, 404, "no next CA certificate is staged\n", peer);
    if (strcmp(op, "PKIOperation") != 0)
        return reject(a, resp, 400, "unknown operation\n", peer);

    size_t len = 0;
    uint8_t *der = pki_message(req, body, body_len, is_get, &len);
    if (der == NULL)
        return reject(a, resp, 400, "PKIOperation message missing or not base64\n", peer);
    job *j = job_new(a, JOB_PKIOPERATION, ref, peer, profile);
    if (j == NULL) {
        free(der);
        return respond(resp, 503, CT_TEXT, "busy\n", 5);
    }
    j->msg = der;
    j->msg_len = len;
    stage_job(a, j);
    return APP_DEFER;
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
    if (cfg->allow_des_requests && OSSL_PROVIDER_load(NULL, "legacy") == NULL) {
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
    int src = store_open(cfg->store_path, cfg->store_map_size, &a->store);
    if (src != 0) {
        snprintf(err, errlen, "store %s: %s", cfg->store_path, store_strerror(src));
        goto out;
    }
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
    free(a->workers);
    store_close(a->store);
    issuer_destroy(a->issuer);
    ca_free(a->ca);
    audit_close(a->audit);
    if (a->stop_fd >= 0)
        close(a->stop_fd);
    pthread_mutex_destroy(&a->q_mu);
    pthread_cond_destroy(&a->q_cv);
    free(a);
}
