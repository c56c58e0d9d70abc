/* The CRL publisher thread: decides when to rebuild and publishes what a worker built. */
#include "engine/server/app_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void publisher_handoff(app *a, job *j)
{
    pthread_mutex_lock(&a->pub_mu);
    a->pub_done = j;
    pthread_cond_broadcast(&a->pub_cv);
    pthread_mutex_unlock(&a->pub_mu);
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
    if (crl_snapshot_create(j->body, j->body_len, j->crl.number, j->crl.this_update,
                            j->crl.next_update, &snap) != 0) {
        j->body = NULL;
        return -1;
    }
    j->body = NULL;
    crl_cache_set(a->crls, snap);
    snprintf(detail, sizeof(detail), "crl_number=%llu bytes=%zu",
             (unsigned long long)j->crl.number, j->body_len);
    audit_fields f = {.detail = detail, .failinfo = -1};
    audit_emit(a->audit, AUDIT_CRL_PUBLISHED, &f);
    return 0;
}

#define CRL_LOCK_RETRY_MS  250      /* another node builds: its build takes ~ a signature */
#define CRL_FAIL_RETRY_MS  10000
#define CRL_DEFER_EVENT_MS 1000     /* at most one CRL_DEFERRED a second */

/* One build on a worker, waited for, then published. Under the CRL lock. Returns the
 * time of the next attempt (0: as soon as due). */
static int64_t crl_build(app *a, uint64_t cur_number, uint64_t gen, int64_t ms,
                         uint64_t *built_gen, int64_t *change_seen)
{
    int64_t retry_at = 0;
    job *j = job_new(JOB_CRL, NULL, NULL);
    if (j == NULL)
        return ms + CRL_FAIL_RETRY_MS;
    j->owner = a;
    j->crl.number = cur_number;
    worker_queue_push(a, j);
    pthread_mutex_lock(&a->pub_mu);
    while (a->pub_done == NULL)
        pthread_cond_wait(&a->pub_cv, &a->pub_mu);
    a->pub_done = NULL;
    pthread_mutex_unlock(&a->pub_mu);
    if (j->crl.ok && crl_publish(a, j) == 0) {
        *built_gen = j->crl.rev_gen;
        *change_seen = *built_gen == gen ? 0 : ms;
    } else {
        audit_fields f = {.diag = "crl_build", .detail = "CRL build, signature or commit failed; retrying in 10 s",
                          .failinfo = -1};
        audit_emit(a->audit, AUDIT_CRL_FAILED, &f);
        retry_at = ms + CRL_FAIL_RETRY_MS;
    }
    job_free(j);
    return retry_at;
}

/* Decides when to rebuild: when none is published, when 3/4 of its validity has passed,
 * and rebuild_delay after the store's revocation generation moved (revocations from the
 * admin API wake it at once; scepctl's are seen by polling once a second). Several
 * revocations within the delay make one CRL. Building and signing run on a worker. On a
 * shared PostgreSQL store the build, its number's commit and the publication happen under
 * the cluster's CRL lock (store_crl_lock, on this thread's reader connection): a node that
 * finds it taken tries again shortly (CRL_DEFERRED, at most one a second) and then numbers
 * its CRL after the one the other node committed. */
void *publisher_main(void *arg)
{
    app *a = arg;
    store_reader *reader = NULL;
    uint64_t built_gen = UINT64_MAX;
    int64_t change_seen = 0, retry_at = 0, deferred_at = 0;
    unsigned long long deferred = 0;

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
            /* One node of a cluster builds at a time (store_crl_lock); another node's
             * build means a later try here, with the number after the one it commits. */
            int lk = store_crl_lock(reader);
            if (lk == 0) {
                retry_at = crl_build(a, cur_number, gen, ms, &built_gen, &change_seen);
                store_crl_unlock(reader);
            } else {
                retry_at = ms + (lk == STORE_CONFLICT ? CRL_LOCK_RETRY_MS : CRL_FAIL_RETRY_MS);
                if (lk == STORE_CONFLICT)
                    deferred++;
                if (lk == STORE_CONFLICT && ms - deferred_at >= CRL_DEFER_EVENT_MS) {
                    audit_fields f = {.diag = "crl_locked", .failinfo = -1, .count = deferred,
                                      .detail = "another node holds the CRL lock: build put off"};
                    audit_emit(a->audit, AUDIT_CRL_DEFERRED, &f);
                    deferred = 0;
                    deferred_at = ms;
                }
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
