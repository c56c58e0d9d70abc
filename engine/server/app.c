/* A running scepd: jobs, the crypto workers and their queue, the commit callback, start and
 * stop. Routing is in route.c, the admin API in admin.c, the CRL publisher in publisher.c. */
#include "engine/server/app_internal.h"

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
#include "engine/common/audit.h"
#include "engine/pki/ca.h"
#include "engine/policy/challenge.h"
#include "engine/pki/crl.h"
#include "engine/enroll/enroll.h"
#include "engine/net/http.h"
#include "engine/policy/issue.h"
#include "engine/server/job.h"
#include "engine/pki/ocsp.h"
#include "engine/policy/profile.h"
#include "engine/net/shard.h"
#include "engine/store/store.h"
#include "hsm/hsm.h"

/* ------------------------------------------------------------------ job lifecycle */

void app_job_release(shard_reply *r)
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

job *app_job_new(app *a, int kind, conn_ref ref, const char *peer, const char *pname)
{
    job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->owner = a;
    j->kind = kind;
    j->reply.ref = ref;
    j->reply.release = app_job_release;
    snprintf(j->peer, sizeof(j->peer), "%s", peer != NULL ? peer : "");
    snprintf(j->profile, sizeof(j->profile), "%s", pname);
    return j;
}

/* Appends a linked list of jobs to the worker queue. */
void app_queue_push(app *a, job *head)
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
    app_queue_push(a, retry);
    deliver(a, out);
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
        int e = shard_create(&scfg, i, route_request, a, &a->shards[i]);
        if (e != 0) {
            snprintf(err, errlen, "listen on %s:%u: %s", cfg->listen_host, cfg->listen_port,
                     strerror(-e));
            goto out;
        }
        shard_set_flush(a->shards[i], route_flush);
        shard_set_reject(a->shards[i], route_http_reject);
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
        app_job_release(&j->reply);
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
