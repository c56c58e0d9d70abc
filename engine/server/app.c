/* A running scepd: start and stop, and the jobs of a connection. The crypto workers are in
 * worker.c, the commit callback in commit.c, routing in route.c, the admin API in admin.c,
 * the CRL publisher in publisher.c. */
#include "engine/server/app_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

#include "engine/common/sdnotify.h"
#include "engine/policy/profile.h"
#include "hsm/hsm.h"

void app_job_release(shard_reply *r)
{
    job *j = JOB_OF_REPLY(r);
    if (j->admitted)
        admit_release(&((app *)j->owner)->admit);
    job_free(j);
}

uint64_t app_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

job *app_job_new(app *a, int kind, conn_ref ref, const char *peer, const char *pname)
{
    job *j = job_new(kind, peer, pname);
    if (j == NULL)
        return NULL;
    j->owner = a;
    j->reply.ref = ref;
    j->reply.release = app_job_release;
    return j;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

uint16_t app_port(const app *a)
{
    return a->nshards > 0 ? shard_port(a->shards[0]) : 0;
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
        } else if ((ocsp_key = ca_read_key_file(cfg->ocsp_key_file)) == NULL) {
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

/* A profiles directory replaces the built-in "default" profile; none: the built-in. */
static int load_profiles(app *a, char *err, size_t errlen)
{
    const config *cfg = &a->cfg;
    struct stat pst;
    if (stat(cfg->profiles_dir, &pst) == 0) {
        profile_set *set = NULL;
        char perr[512];
        if (profile_set_load_dir(cfg->profiles_dir, &set, perr, sizeof(perr)) != 0 ||
            issuer_set_profiles(a->issuer, set, perr, sizeof(perr)) != 0) {
            profile_set_destroy(set);
            snprintf(err, errlen, "profiles %s: %s", cfg->profiles_dir, perr);
            return -1;
        }
    } else if (errno != ENOENT) {
        snprintf(err, errlen, "profiles %s: %s", cfg->profiles_dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* The stop eventfd, the shards (bound) and the tables sized by the shard and worker counts. */
static int make_shards(app *a, char *err, size_t errlen)
{
    const config *cfg = &a->cfg;
    a->stop_fd = eventfd(0, EFD_CLOEXEC);
    a->nshards = (uint32_t)(cfg->shards > 0 ? cfg->shards : online_cpus());
    a->nworkers = cfg->workers > 0 ? cfg->workers : online_cpus();
    admit_init(&a->admit, cfg->queue_max, a->nworkers);
    a->shards = calloc(a->nshards, sizeof(*a->shards));
    a->shard_threads = calloc(a->nshards, sizeof(*a->shard_threads));
    a->stages = calloc(a->nshards, sizeof(*a->stages));
    a->workers = calloc((size_t)a->nworkers, sizeof(*a->workers));
    if (a->stop_fd < 0 || a->shards == NULL || a->shard_threads == NULL || a->workers == NULL ||
        a->stages == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* HTTPS ([tls] listen): one context, each shard takes its own reference. */
    tls_ctx *tls = NULL;
    if (cfg->tls_listen_host[0] != '\0' && tls_ctx_create(cfg, &tls, err, errlen) != 0)
        return -1;
    /* Shard 0 binds first; with port 0 the others reuse the port it got. */
    config scfg = a->cfg;
    for (uint32_t i = 0; i < a->nshards; i++) {
        int e = shard_create(&scfg, i, route_request, a, &a->shards[i]);
        if (e != 0) {
            snprintf(err, errlen, "listen on %s:%u: %s", cfg->listen_host, cfg->listen_port,
                     strerror(-e));
            tls_ctx_free(tls);
            return -1;
        }
        if (tls != NULL && (e = shard_add_listener(a->shards[i], scfg.tls_listen_host,
                                                   scfg.tls_listen_port, tls,
                                                   &scfg.tls_listen_port)) != 0) {
            snprintf(err, errlen, "tls listen on %s:%u: %s", cfg->tls_listen_host,
                     cfg->tls_listen_port, strerror(-e));
            tls_ctx_free(tls);
            return -1;
        }
        shard_set_flush(a->shards[i], route_flush);
        shard_set_reject(a->shards[i], route_http_reject);
        if (i == 0)
            scfg.listen_port = shard_port(a->shards[0]);
    }
    a->cfg.listen_port = scfg.listen_port;
    tls_ctx_free(tls);
    return 0;
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
    config_forget_pin_env();
    if (config_read_challenge(cfg, challenge, sizeof(challenge)) < 0) {
        snprintf(err, errlen, "cannot read the challenge (challenge_file %s)", cfg->challenge_file);
        goto out;
    }
    if (issuer_create(cfg, a->ca, challenge, &a->issuer) != 0) {
        snprintf(err, errlen, "cannot prepare certificate extensions for this CA");
        goto out;
    }
    if (load_profiles(a, err, errlen) != 0)
        goto out;
    /* Single DES lives in OpenSSL's legacy provider: loaded only when a profile allows it. */
    if (profile_set_allows_des(issuer_profiles(a->issuer)) &&
        (a->legacy = OSSL_PROVIDER_load(NULL, "legacy")) == NULL) {
        snprintf(err, errlen, "a profile has allow_des = yes, which needs OpenSSL's legacy "
                 "provider; it did not load");
        goto out;
    }
    int src = store_open(cfg->store_path, cfg->store_map_size, &a->store);
    if (src != 0) {
        snprintf(err, errlen, "store %s: %s", cfg->store_path, store_strerror(src));
        goto out;
    }
    if (revocation_setup(a, err, errlen) != 0)
        goto out;
    if (make_shards(a, err, errlen) != 0)
        goto out;
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

/* A shard thread: its audit lines go to its own ring, so it never waits for the target. */
static void *shard_main(void *arg)
{
    stage *st = arg;
    audit_bind_thread(st->app->audit, st->index + 1);
    shard_run(st->app->shards[st->index]);
    return NULL;
}

int app_run(app *a)
{
    int rc = -1;
    uint32_t started_shards = 0;

    int e = audit_start(a->audit, a->nshards + 1, APP_AUDIT_RING);
    if (e != 0)
        fprintf(stderr, "scepd: audit writer thread: %s; audit lines are written in place\n",
                strerror(-e));
    if (store_writer_start(a->store, a->cfg.batch_max, commit_done, a) != 0)
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
    for (; started_shards < a->nshards; started_shards++) {
        stage *st = &a->stages[started_shards];
        st->app = a;
        st->index = started_shards;
        if (pthread_create(&a->shard_threads[started_shards], NULL, shard_main, st) != 0)
            goto stop;
    }
    {
        audit_fields f = {.detail = "ready", .failinfo = -1};
        audit_emit(a->audit, AUDIT_STARTED, &f);
    }
    /* systemd (Type=notify): the listeners are bound and the token logged in (app_create),
     * the workers, the publisher and the shards run. */
    sdnotify("READY=1");
    uint64_t v;
    while (read(a->stop_fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
    rc = 0;
stop:
    sdnotify("STOPPING=1");
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
    admit_flush(&a->admit, a->audit, 1);
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
