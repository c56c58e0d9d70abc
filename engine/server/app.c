/* A running scepd: start and stop, and the jobs of a connection. The crypto workers are in
 * worker.c, the commit callback in commit.c, routing in route.c, the admin API in admin.c,
 * the CRL publisher in publisher.c. */
#include "engine/server/app_internal.h"

#include <errno.h>
#include <poll.h>
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
#include "engine/server/store_events.h"
#include "hsm/hsm.h"

/* Threads signing TLS handshakes with a token key: two keep one slow C_Sign from delaying
 * every other handshake; more would only queue at the token. */
#define TLS_KEY_THREADS 2

/* Released on the shard thread (or at teardown, with every other thread stopped): the
 * answer of a deferred request is counted here, in its shard's slot. */
void app_job_release(shard_reply *r)
{
    job *j = JOB_OF_REPLY(r);
    app *a = j->owner;
    if (j->m_op > 0 && r->resp.status != 0 && a->metrics != NULL) {
        metrics_slot *ms = metrics_shard(a->metrics, r->ref.shard);
        m_request(ms, (enum m_op)(j->m_op - 1), r->resp.status);
        m_observe(&ms->request_seconds[j->m_op - 1], metrics_now_ns() - j->m_start_ns);
    }
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

void app_count_request(app *a, uint32_t shard_index, int op, int status)
{
    m_request(metrics_shard(a->metrics, shard_index), (enum m_op)op, status);
}

/* The request metrics' operation of a job kind (a /metrics answer sets its own). */
static int kind_op(int kind)
{
    switch (kind) {
    case JOB_PKIOPERATION: return M_OP_PKIOPERATION;
    case JOB_HEALTH:       return M_OP_HEALTHZ;
    case JOB_OCSP:         return M_OP_OCSP;
    case JOB_REVOKE:       return M_OP_ADMIN_REVOKE;
    case JOB_HELD:         return M_OP_CRL;
    case JOB_CHALLENGE:    return M_OP_ADMIN_CHALLENGE;
    default:               return M_OP_OTHER;
    }
}

job *app_job_new(app *a, int kind, conn_ref ref, const char *peer, const char *pname)
{
    job *j = job_new(kind, peer, pname);
    if (j == NULL)
        return NULL;
    j->m_op = kind_op(kind) + 1;
    j->m_start_ns = metrics_now_ns();
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

uint16_t app_admin_port(const app *a)
{
    return a->admin_port;
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

/* This thread's pin on the current issuer (app_issuer). */
static _Thread_local issuer *t_pin;

const issuer *app_issuer(const app *a)
{
    return issuer_slot_get(a->policy, &t_pin);
}

void app_issuer_unpin(void)
{
    issuer_destroy(t_pin);
    t_pin = NULL;
}

/* The issuer for cfg: its challenge, and the profiles directory replacing the built-in
 * "default" profile (no directory: the built-in). At start and on reload. */
static int build_issuer(app *a, const config *cfg, issuer **out, char *err, size_t errlen)
{
    char challenge[256] = "", perr[512];
    profile_set *set = NULL;
    issuer *is = NULL;
    struct stat pst;
    int rc = -1;

    if (config_read_challenge(cfg, challenge, sizeof(challenge)) < 0) {
        snprintf(err, errlen, "cannot read the challenge (challenge_file %s)", cfg->challenge_file);
        goto out;
    }
    if (issuer_create(cfg, a->ca, challenge, &is) != 0) {
        snprintf(err, errlen, "cannot prepare certificate extensions for this CA");
        goto out;
    }
    if (stat(cfg->profiles_dir, &pst) == 0) {
        if (profile_set_load_dir(cfg->profiles_dir, &set, perr, sizeof(perr)) != 0 ||
            issuer_set_profiles(is, set, perr, sizeof(perr)) != 0) {
            snprintf(err, errlen, "profiles %s: %s", cfg->profiles_dir, perr);
            goto out;
        }
        set = NULL;   /* the issuer's now */
    } else if (errno != ENOENT) {
        snprintf(err, errlen, "profiles %s: %s", cfg->profiles_dir, strerror(errno));
        goto out;
    }
    /* Single DES lives in OpenSSL's legacy provider: loaded only once a profile allows it
     * (main thread; it stays loaded until the end). */
    if (a->legacy == NULL && profile_set_allows_des(issuer_profiles(is)) &&
        (a->legacy = OSSL_PROVIDER_load(NULL, "legacy")) == NULL) {
        snprintf(err, errlen, "a profile has allow_des = yes, which needs OpenSSL's legacy "
                 "provider; it did not load");
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(challenge, sizeof(challenge));
    profile_set_destroy(set);
    if (rc == 0) {
        *out = is;
        is = NULL;
    }
    issuer_destroy(is);
    return rc;
}

static uint64_t tls_key_ops(void *token)
{
    return hsm_offload_ops(token);
}

/* The HTTPS context: the key from its PEM file, or from the token ([tls] key_label), whose
 * handshake signatures then run on the token's key threads, never on a shard. */
static int tls_setup(app *a, tls_ctx **out, char *err, size_t errlen)
{
    const config *cfg = &a->cfg;
    EVP_PKEY *key = NULL;
    int rc = -1;
    if (cfg->tls_key_label[0] == '\0')
        return tls_ctx_create(cfg, out, err, errlen);
    if (a->ca->token == NULL) {
        snprintf(err, errlen, "[tls] key_label needs the keys in a token ([keys] mode = pkcs11)");
        goto out;
    }
    if (hsm_key_load(a->ca->token, cfg->tls_key_label, &key) != 0) {
        snprintf(err, errlen, "[tls] key_label '%s': %s", cfg->tls_key_label, hsm_last_error());
        goto out;
    }
    if (hsm_offload_start(a->ca->token, TLS_KEY_THREADS) != 0) {
        snprintf(err, errlen, "[tls] key threads: %s", hsm_last_error());
        goto out;
    }
    metrics_set_key_ops(a->metrics, tls_key_ops, a->ca->token);
    rc = tls_ctx_create_with_key(cfg, key, out, err, errlen);
out:
    EVP_PKEY_free(key);
    return rc;
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
    /* The admin listener must not share the SCEP ports (plain or TLS): with SO_REUSEPORT
     * both sockets would bind it and the kernel would spread devices' connections over the
     * admin one. */
    if (cfg->admin_listen_host[0] != '\0' && cfg->admin_listen_port != 0 &&
        (cfg->admin_listen_port == cfg->listen_port ||
         (cfg->tls_listen_host[0] != '\0' && cfg->admin_listen_port == cfg->tls_listen_port))) {
        snprintf(err, errlen, "[admin] listen %s:%u uses a SCEP listener's port; give it its "
                 "own port (or \"none\")", cfg->admin_listen_host, cfg->admin_listen_port);
        return -1;
    }
    /* Enrollments are counted per profile: the names, in the set's order at start (a reload
     * registers the profiles it adds: app_reload). */
    size_t np = 0;
    const profile *prof = profile_set_items(issuer_profiles(app_issuer(a)), &np);
    const char **names = calloc(np + 1, sizeof(*names));
    if (names == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < np; i++)
        names[i] = prof[i].name;
    int me = metrics_create(a->nshards, a->nworkers, names, np, &a->metrics);
    free(names);
    if (me != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* HTTPS ([tls] listen): one context, each shard takes its own reference. */
    tls_ctx *tls = NULL;
    if (cfg->tls_listen_host[0] != '\0' && tls_setup(a, &tls, err, errlen) != 0)
        return -1;
    /* Shard 0 binds first; with port 0 the others reuse the ports it got. */
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
                                                   scfg.tls_listen_port, tls, SHARD_ROLE_SCEP,
                                                   &scfg.tls_listen_port)) != 0) {
            snprintf(err, errlen, "tls listen on %s:%u: %s", cfg->tls_listen_host,
                     cfg->tls_listen_port, strerror(-e));
            tls_ctx_free(tls);
            return -1;
        }
        if (cfg->admin_listen_host[0] != '\0' &&
            (e = shard_add_listener(a->shards[i], scfg.admin_listen_host,
                                    scfg.admin_listen_port, NULL, SHARD_ROLE_ADMIN,
                                    &scfg.admin_listen_port)) != 0) {
            snprintf(err, errlen, "[admin] listen on %s:%u: %s", cfg->admin_listen_host,
                     cfg->admin_listen_port, strerror(-e));
            tls_ctx_free(tls);
            return -1;
        }
        shard_set_flush(a->shards[i], route_flush);
        shard_set_reject(a->shards[i], route_http_reject);
        shard_set_expire(a->shards[i], worker_expired);
        if (i == 0)
            scfg.listen_port = shard_port(a->shards[0]);
    }
    a->cfg.listen_port = scfg.listen_port;
    if (cfg->admin_listen_host[0] != '\0') {
        a->cfg.admin_listen_port = scfg.admin_listen_port;
        a->admin_port = scfg.admin_listen_port;
    }
    tls_ctx_free(tls);
    return 0;
}

int app_create(const config *cfg, app **out, char *err, size_t errlen)
{
    app *a = calloc(1, sizeof(*a));
    char pin[256] = "";
    issuer *is = NULL;
    int rc = -1;

    if (a == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->cfg = *cfg;
    a->cfg_file = *cfg;
    a->stop_fd = -1;
    a->reload_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&a->q_mu, NULL);
    pthread_cond_init(&a->q_cv, NULL);
    pthread_mutex_init(&a->pub_mu, NULL);
    pthread_cond_init(&a->pub_cv, NULL);
    authlimit_init(&a->authlimit, cfg->admin_auth_fail_max, cfg->admin_auth_fail_window_s);
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
    if (build_issuer(a, cfg, &is, err, errlen) != 0)
        goto out;
    if (a->reload_fd < 0 || issuer_slot_create(is, &a->policy) != 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    is = NULL;
    int src = store_open(cfg->store_path, cfg->store_map_size, &a->store);
    if (src != 0) {
        snprintf(err, errlen, "store %s: %s", cfg->store_path, store_strerror(src));
        goto out;
    }
    store_events_start(a->store, a->audit);
    if (revocation_setup(a, err, errlen) != 0)
        goto out;
    if (mdm_wire_setup(a, err, errlen) != 0)
        goto out;
    if (make_shards(a, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    OPENSSL_cleanse(pin, sizeof(pin));
    issuer_destroy(is);
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
    app_issuer_unpin();
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
        a->workers[i].m = metrics_worker(a->metrics, i);
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
    if ((e = intune_revoke_start(a)) != 0)      /* [intune] revocation_poll_interval */
        fprintf(stderr, "scepd: Intune revocation sync thread: %s; sync is off\n",
                strerror(-e));
    {
        audit_fields f = {.detail = "ready", .failinfo = -1};
        audit_emit(a->audit, AUDIT_STARTED, &f);
    }
    /* systemd (Type=notify): the listeners are bound and the token logged in (app_create),
     * the workers, the publisher and the shards run. */
    sdnotify("READY=1");
    /* This thread (main) waits for app_stop and does the reloads SIGHUP asks for. */
    for (;;) {
        struct pollfd p[2] = {{.fd = a->stop_fd, .events = POLLIN},
                              {.fd = a->reload_fd, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents != 0)
            break;
        uint64_t v;
        if (p[1].revents != 0 && read(a->reload_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
            app_reload(a);
    }
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
    intune_revoke_stop(a);     /* before the stage and the writer go away */
    mdm_wire_teardown(a);      /* its callbacks post to the workers and the writer */
    pthread_mutex_lock(&a->q_mu);
    a->q_stopping = 1;
    pthread_cond_broadcast(&a->q_cv);
    pthread_mutex_unlock(&a->q_mu);
    for (int i = 0; i < a->nworkers; i++)
        if (a->workers[i].started)
            pthread_join(a->workers[i].thread, NULL);
    store_writer_stop(a->store);
    admit_flush(&a->admit, a->audit, 1);
    authlimit_flush(&a->authlimit, a->audit, app_now_ms(), 1);
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

void app_set_config_file(app *a, const char *path)
{
    snprintf(a->cfg_path, sizeof(a->cfg_path), "%s", path != NULL ? path : "");
}

void app_request_reload(app *a)
{
    uint64_t one = 1;
    if (a != NULL && a->reload_fd >= 0 && write(a->reload_fd, &one, sizeof(one)) < 0) {
        /* nothing to do from a signal handler; a reload already asked for is pending */
    }
}

static void reload_event(app *a, int event, const char *detail)
{
    audit_fields f = {.detail = detail, .failinfo = -1};
    audit_emit(a->audit, event, &f);
    fprintf(stderr, "scepd: reload: %s\n", detail);
}

int app_reload(app *a)
{
    config next = {0};
    issuer *is = NULL;
    char why[1024], keys[512], detail[2600];
    int rc = -1;

    int e = audit_reopen(a->audit, 2000);
    if (e != 0) {
        snprintf(detail, sizeof(detail), "audit log %s: %s", a->cfg.audit_log, strerror(-e));
        reload_event(a, AUDIT_LOG_REOPEN_FAILED, detail);
    }
    if (a->cfg_path[0] == '\0') {
        snprintf(detail, sizeof(detail), "the configuration file is not known; only the audit "
                 "log was reopened");
        goto refused;
    }
    if (config_load(&next, a->cfg_path, why, sizeof(why)) != 0) {
        snprintf(detail, sizeof(detail), "%s: %s; the running configuration is kept",
                 a->cfg_path, why);
        goto refused;
    }
    if (config_restart_changes(&a->cfg_file, &next, keys, sizeof(keys)) > 0) {
        snprintf(detail, sizeof(detail), "%s: changed keys need a restart: %s; nothing was "
                 "reloaded, the running configuration is kept", a->cfg_path, keys);
        goto refused;
    }
    if (build_issuer(a, &next, &is, why, sizeof(why)) != 0) {
        snprintf(detail, sizeof(detail), "%s; the running profiles and challenges are kept", why);
        goto refused;
    }
    /* What the new set serves, for the event. */
    size_t n = 0, len = 0;
    const profile *items = profile_set_items(issuer_profiles(is), &n);
    len = (size_t)snprintf(detail, sizeof(detail), "%zu profile%s:", n, n == 1 ? "" : "s");
    for (size_t i = 0; i < n && len < sizeof(detail); i++)
        len += (size_t)snprintf(detail + len, sizeof(detail) - len, "%s %s", i > 0 ? "," : "",
                                items[i].name);
    /* New profiles get their own metrics label before the first request can see them. */
    for (size_t i = 0; i < n; i++) {
        const char *name = items[i].name;
        metrics_add_profiles(a->metrics, &name, 1);
    }
    issuer_slot_swap(a->policy, is);
    is = NULL;
    reload_event(a, AUDIT_CONFIG_RELOADED, detail);
    rc = e == 0 ? 0 : -1;
    goto out;
refused:
    reload_event(a, AUDIT_CONFIG_RELOAD_FAILED, detail);
out:
    OPENSSL_cleanse(&next, sizeof(next));   /* may hold the challenge */
    issuer_destroy(is);
    return rc;
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
    mdm_wire_free(a);
    store_close(a->store);
    crl_cache_destroy(a->crls);
    crl_signer_destroy(a->crl_signer);
    ocsp_responder_destroy(a->ocsp);
    app_issuer_unpin();        /* this thread's, if setup (ndes_route.c) pinned one */
    issuer_slot_destroy(a->policy);
    ca_free(a->ca);
    audit_close(a->audit);
    if (a->stop_fd >= 0)
        close(a->stop_fd);
    if (a->reload_fd >= 0)
        close(a->reload_fd);
    pthread_mutex_destroy(&a->q_mu);
    pthread_cond_destroy(&a->q_cv);
    pthread_mutex_destroy(&a->pub_mu);
    pthread_cond_destroy(&a->pub_cv);
    authlimit_destroy(&a->authlimit);
    metrics_destroy(a->metrics);
    free(a);
}
