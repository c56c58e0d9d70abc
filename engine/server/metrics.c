/* metrics: per-thread slots and the Prometheus text exposition. See metrics.h. */
#include "engine/server/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#ifndef SCEPD_VERSION
#define SCEPD_VERSION "dev"
#endif

static const double lat_bounds[M_LAT_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
    10,
};
static const unsigned batch_bounds[M_BATCH_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024};

static const int status_codes[M_STATUS_COUNT - 1] = {
    200, 201, 304, 400, 401, 403, 404, 405, 408, 413, 414, 429, 431, 500, 503,
};

static const char *const op_names[M_OP_COUNT] = {
    [M_OP_GETCACAPS] = "GetCACaps", [M_OP_GETCACERT] = "GetCACert",
    [M_OP_GETNEXTCACERT] = "GetNextCACert", [M_OP_PKIOPERATION] = "PKIOperation",
    [M_OP_HEALTHZ] = "healthz", [M_OP_CRL] = "crl", [M_OP_OCSP] = "ocsp",
    [M_OP_ADMIN_REVOKE] = "admin_revocations", [M_OP_ADMIN_CHALLENGE] = "admin_challenges",
    [M_OP_METRICS] = "metrics", [M_OP_OTHER] = "other",
};
static const char *const outcome_names[M_OUTCOME_COUNT] = {
    [M_ISSUED] = "issued", [M_RENEWED] = "renewed", [M_REPLAYED] = "replayed",
    [M_PENDING] = "pending", [M_REFUSED] = "refused",
};
static const char *const phase_names[M_PHASE_COUNT] = {
    [M_PHASE_ENVELOPE] = "envelope", [M_PHASE_ISSUE] = "issue",
};

/* Profiles: an append-only table of capacity cap. A name is written before nprof is
 * released past it, so a reader that loads nprof (acquire) sees whole names; names are never
 * removed (a profile a reload dropped keeps its counters until a restart), and index cap is
 * "other" (no profile, or the table was full). Only metrics_add_profiles appends. */
struct metrics {
    uint32_t      nshards;
    int           nworkers;
    _Atomic size_t nprof;
    size_t        cap;
    char        **prof;            /* cap slots, nprof in use */
    metrics_slot *slots;           /* shards, then workers, then the writer */
    uint64_t    (*key_ops)(void *); /* TLS key threads' completed operations, or NULL */
    void         *key_ctx;
    size_t        nslots;
};

uint64_t metrics_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int metrics_create(uint32_t nshards, int nworkers, const char *const *profiles,
                   size_t nprofiles, metrics **out)
{
    metrics *m = calloc(1, sizeof(*m));
    int rc = -ENOMEM;
    if (m == NULL)
        return rc;
    m->nshards = nshards;
    m->nworkers = nworkers;
    m->nslots = (size_t)nshards + (size_t)nworkers + 1;
    m->slots = calloc(m->nslots, sizeof(*m->slots));
    m->cap = nprofiles + M_PROFILE_SPARE;
    m->prof = calloc(m->cap, sizeof(*m->prof));
    atomic_init(&m->nprof, 0);
    if (m->slots == NULL || m->prof == NULL)
        goto out;
    for (size_t i = 0; i < m->nslots; i++) {
        m->slots[i].enroll = calloc((m->cap + 1) * M_OUTCOME_COUNT, sizeof(m_counter));
        m->slots[i].refused = calloc((m->cap + 1) * REJ__COUNT, sizeof(m_counter));
        if (m->slots[i].enroll == NULL || m->slots[i].refused == NULL)
            goto out;
    }
    if (metrics_add_profiles(m, profiles, nprofiles) != 0)
        goto out;
    rc = 0;
out:
    if (rc == 0) {
        *out = m;
        m = NULL;
    }
    metrics_destroy(m);
    return rc;
}

void metrics_destroy(metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; m->slots != NULL && i < m->nslots; i++) {
        free(m->slots[i].enroll);
        free(m->slots[i].refused);
    }
    for (size_t i = 0; m->prof != NULL && i < m->cap; i++)
        free(m->prof[i]);
    free(m->prof);
    free(m->slots);
    free(m);
}

metrics_slot *metrics_shard(metrics *m, uint32_t i)
{
    return &m->slots[i];
}

metrics_slot *metrics_worker(metrics *m, int i)
{
    return &m->slots[m->nshards + (size_t)i];
}

metrics_slot *metrics_writer(metrics *m)
{
    return &m->slots[m->nslots - 1];
}

size_t metrics_profile_index(const metrics *m, const char *name)
{
    size_t n = atomic_load_explicit(&m->nprof, memory_order_acquire);
    for (size_t i = 0; name != NULL && i < n; i++)
        if (strcmp(m->prof[i], name) == 0)
            return i;
    return m->cap;
}

void metrics_set_key_ops(metrics *m, uint64_t (*fn)(void *ctx), void *ctx)
{
    m->key_ops = fn;
    m->key_ctx = ctx;
}

int metrics_add_profiles(metrics *m, const char *const *names, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        size_t have = atomic_load_explicit(&m->nprof, memory_order_relaxed);
        if (metrics_profile_index(m, names[i]) != m->cap)
            continue;
        if (have == m->cap) {
            rc = rc < 0 ? rc : rc + 1;      /* counted as "other" */
            continue;
        }
        if ((m->prof[have] = strdup(names[i])) == NULL) {
            rc = -ENOMEM;
            continue;
        }
        atomic_store_explicit(&m->nprof, have + 1, memory_order_release);
    }
    return rc;
}

void m_observe(m_hist *h, uint64_t ns)
{
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (i < M_LAT_BUCKETS && s > lat_bounds[i])
        i++;
    m_inc(&h->bucket[i]);
    m_add(&h->sum_ns, ns);
}

void m_observe_batch(m_batch_hist *h, uint64_t n)
{
    size_t i = 0;
    while (i < M_BATCH_BUCKETS && n > batch_bounds[i])
        i++;
    m_inc(&h->bucket[i]);
    m_add(&h->sum, n);
}

void m_request(metrics_slot *s, enum m_op op, int status)
{
    size_t i = 0;
    while (i < M_STATUS_COUNT - 1 && status_codes[i] != status)
        i++;
    m_inc(&s->requests[op][i]);
}

void m_enroll(const metrics *m, metrics_slot *s, const char *profile, enum m_outcome o, int rej)
{
    size_t p = metrics_profile_index(m, profile);
    m_inc(&s->enroll[p * M_OUTCOME_COUNT + o]);
    if (o == M_REFUSED && rej >= 0 && rej < REJ__COUNT)
        m_inc(&s->refused[p * REJ__COUNT + (size_t)rej]);
}

void m_hsm_error(metrics_slot *s, const char *ckr_name)
{
    int n = atomic_load_explicit(&s->hsm_nerr, memory_order_relaxed);
    for (int i = 0; i < n; i++) {
        if (strcmp(s->hsm_err[i].name, ckr_name) == 0) {
            m_inc(&s->hsm_err[i].count);
            return;
        }
    }
    if (n == M_CKR_MAX) {
        m_inc(&s->hsm_err_other);
        return;
    }
    snprintf(s->hsm_err[n].name, sizeof(s->hsm_err[n].name), "%s", ckr_name);
    m_inc(&s->hsm_err[n].count);
    /* The name is complete before a scrape can see the slot in use. */
    atomic_store_explicit(&s->hsm_nerr, n + 1, memory_order_release);
}

/* ---------------------------------------------------------------- rendering */

typedef struct out {
    char  *p;
    size_t len, cap;
    int    oom;
} out;

static void put(out *o, const char *fmt, ...)
{
    for (;;) {
        if (o->oom)
            return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t ncap = o->cap * 2 + (size_t)n;
        char *np = realloc(o->p, ncap);
        if (np == NULL) {
            o->oom = 1;
            return;
        }
        o->p = np;
        o->cap = ncap;
    }
}

static uint64_t ld(const m_counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Sum of one counter over every slot: off is the counter's offset in metrics_slot. */
static uint64_t sum_at(const metrics *m, size_t off)
{
    uint64_t t = 0;
    for (size_t i = 0; i < m->nslots; i++)
        t += ld((const m_counter *)((const char *)&m->slots[i] + off));
    return t;
}

#define SUM(m, field) sum_at((m), offsetof(metrics_slot, field))

static void head(out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram series (labels: "" or `k="v"`), summed over the slots at hist offset off. */
static void hist_series(out *o, const metrics *m, const char *name, const char *labels,
                        size_t off)
{
    uint64_t cum = 0, sum_ns = 0;
    const char *sep = labels[0] != '\0' ? "," : "";
    for (size_t b = 0; b <= M_LAT_BUCKETS; b++) {
        cum += sum_at(m, off + offsetof(m_hist, bucket) + b * sizeof(m_counter));
        if (b < M_LAT_BUCKETS)
            put(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, lat_bounds[b],
                (unsigned long long)cum);
        else
            put(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                (unsigned long long)cum);
    }
    sum_ns = sum_at(m, off + offsetof(m_hist, sum_ns));
    if (labels[0] != '\0') {
        put(o, "%s_sum{%s} %.9f\n", name, labels, (double)sum_ns / 1e9);
        put(o, "%s_count{%s} %llu\n", name, labels, (unsigned long long)cum);
    } else {
        put(o, "%s_sum %.9f\n", name, (double)sum_ns / 1e9);
        put(o, "%s_count %llu\n", name, (unsigned long long)cum);
    }
}

static void render_requests(out *o, const metrics *m)
{
    head(o, "scepd_http_requests_total", "counter",
         "Requests answered by the application, by operation and HTTP status.");
    for (int op = 0; op < M_OP_COUNT; op++) {
        for (int s = 0; s < M_STATUS_COUNT; s++) {
            uint64_t n = sum_at(m, offsetof(metrics_slot, requests) +
                                   ((size_t)op * M_STATUS_COUNT + (size_t)s) * sizeof(m_counter));
            if (n == 0)
                continue;
            if (s < M_STATUS_COUNT - 1)
                put(o, "scepd_http_requests_total{operation=\"%s\",status=\"%d\"} %llu\n",
                    op_names[op], status_codes[s], (unsigned long long)n);
            else
                put(o, "scepd_http_requests_total{operation=\"%s\",status=\"other\"} %llu\n",
                    op_names[op], (unsigned long long)n);
        }
    }
    head(o, "scepd_request_duration_seconds", "histogram",
         "Deferred requests (answered by a worker or the store writer): from the complete "
         "request to the release of its answer, by operation.");
    for (int op = 0; op < M_OP_COUNT; op++) {
        char lab[64];
        size_t off = offsetof(metrics_slot, request_seconds) + (size_t)op * sizeof(m_hist);
        if (sum_at(m, off + offsetof(m_hist, sum_ns)) == 0 && op != M_OP_PKIOPERATION)
            continue;
        snprintf(lab, sizeof(lab), "operation=\"%s\"", op_names[op]);
        hist_series(o, m, "scepd_request_duration_seconds", lab, off);
    }
}

static void render_enroll(out *o, const metrics *m)
{
    head(o, "scepd_enrollments_total", "counter",
         "PKCSReq/RenewalReq transactions by profile and outcome (issued, renewed and pending "
         "once committed).");
    size_t np = atomic_load_explicit(&m->nprof, memory_order_acquire);
    for (size_t k = 0; k <= np; k++) {
        size_t p = k < np ? k : m->cap;         /* the profiles, then "other" */
        const char *pn = k < np ? m->prof[p] : "";
        for (int oc = 0; oc < M_OUTCOME_COUNT; oc++) {
            uint64_t n = 0;
            for (size_t i = 0; i < m->nslots; i++)
                n += ld(&m->slots[i].enroll[p * M_OUTCOME_COUNT + (size_t)oc]);
            if (n == 0 && k == np)
                continue;
            put(o, "scepd_enrollments_total{profile=\"%s\",outcome=\"%s\"} %llu\n", pn,
                outcome_names[oc], (unsigned long long)n);
        }
    }
    head(o, "scepd_enrollments_refused_total", "counter",
         "Refused SCEP transactions by profile and audit diagnostic (engine/scep/reject.h).");
    for (size_t k = 0; k <= np; k++) {
        size_t p = k < np ? k : m->cap;
        const char *pn = k < np ? m->prof[p] : "";
        for (int r = 0; r < REJ__COUNT; r++) {
            uint64_t n = 0;
            for (size_t i = 0; i < m->nslots; i++)
                n += ld(&m->slots[i].refused[p * REJ__COUNT + (size_t)r]);
            if (n > 0)
                put(o, "scepd_enrollments_refused_total{profile=\"%s\",diag=\"%s\"} %llu\n", pn,
                    reject_diag(r), (unsigned long long)n);
        }
    }
}

static void render_workers(out *o, const metrics *m)
{
    head(o, "scepd_queue_wait_seconds", "histogram",
         "Time jobs spent in the crypto workers' queue.");
    hist_series(o, m, "scepd_queue_wait_seconds", "", offsetof(metrics_slot, queue_wait));
    head(o, "scepd_enroll_phase_seconds", "histogram",
         "PKCSReq phases around the private-key operations: envelope (signature check and RA "
         "decryption), issue (CA signature and the signed CertRep).");
    for (int ph = 0; ph < M_PHASE_COUNT; ph++) {
        char lab[32];
        snprintf(lab, sizeof(lab), "phase=\"%s\"", phase_names[ph]);
        hist_series(o, m, "scepd_enroll_phase_seconds", lab,
                    offsetof(metrics_slot, phase) + (size_t)ph * sizeof(m_hist));
    }
    head(o, "scepd_hsm_operations_total", "counter",
         "Private-key operations the token completed (C_Sign, C_Decrypt).");
    put(o, "scepd_hsm_operations_total %llu\n", (unsigned long long)SUM(m, hsm_ops));
    head(o, "scepd_private_key_operations_total", "counter",
         "The enrollments' private-key operations the crypto workers made (RA decryption, CA "
         "and CertRep signatures), software or token keys.");
    put(o, "scepd_private_key_operations_total %llu\n", (unsigned long long)SUM(m, keyop_ops));
    head(o, "scepd_private_key_sampled_operations_total", "counter",
         "Those of them timed on the worker's CPU clock (one in 8).");
    put(o, "scepd_private_key_sampled_operations_total %llu\n",
        (unsigned long long)SUM(m, keyop_sampled));
    head(o, "scepd_private_key_sampled_cpu_seconds_total", "counter",
         "CPU time of the timed operations (with SoftHSM keys, the token's work in the worker "
         "too).");
    put(o, "scepd_private_key_sampled_cpu_seconds_total %.6f\n",
        (double)SUM(m, keyop_sampled_ns) / 1e9);
    if (m->key_ops != NULL) {
        head(o, "scepd_tls_key_operations_total", "counter",
             "TLS handshake signatures the token's key threads completed ([tls] key_label).");
        put(o, "scepd_tls_key_operations_total %llu\n",
            (unsigned long long)m->key_ops(m->key_ctx));
    }
    head(o, "scepd_hsm_errors_total", "counter",
         "Jobs whose last token call failed, by CK_RV name.");
    /* Names may repeat across workers: sum per distinct name. */
    for (size_t i = 0; i < m->nslots; i++) {
        int n = atomic_load_explicit(&m->slots[i].hsm_nerr, memory_order_acquire);
        for (int k = 0; k < n; k++) {
            const char *name = m->slots[i].hsm_err[k].name;
            int seen = 0;
            for (size_t pi = 0; pi < i && !seen; pi++) {
                int pn = atomic_load_explicit(&m->slots[pi].hsm_nerr, memory_order_acquire);
                for (int pk = 0; pk < pn && !seen; pk++)
                    seen = strcmp(m->slots[pi].hsm_err[pk].name, name) == 0;
            }
            if (seen)
                continue;
            uint64_t t = 0;
            for (size_t j = i; j < m->nslots; j++) {
                int jn = atomic_load_explicit(&m->slots[j].hsm_nerr, memory_order_acquire);
                for (int jk = 0; jk < jn; jk++)
                    if (strcmp(m->slots[j].hsm_err[jk].name, name) == 0)
                        t += ld(&m->slots[j].hsm_err[jk].count);
            }
            put(o, "scepd_hsm_errors_total{ckr=\"%s\"} %llu\n", name, (unsigned long long)t);
        }
    }
    uint64_t other = SUM(m, hsm_err_other);
    if (other > 0)
        put(o, "scepd_hsm_errors_total{ckr=\"other\"} %llu\n", (unsigned long long)other);
    head(o, "scepd_ocsp_responses_total", "counter",
         "OCSP responses by source: cache (a response signed earlier) or signed.");
    put(o, "scepd_ocsp_responses_total{source=\"cache\"} %llu\n",
        (unsigned long long)SUM(m, ocsp_cached));
    put(o, "scepd_ocsp_responses_total{source=\"signed\"} %llu\n",
        (unsigned long long)SUM(m, ocsp_signed));
}

static void render_store(out *o, const metrics *m)
{
    const metrics_slot *w = &m->slots[m->nslots - 1];
    uint64_t cum = 0;
    head(o, "scepd_store_batch_size", "histogram", "Puts per store commit callback batch.");
    for (size_t b = 0; b <= M_BATCH_BUCKETS; b++) {
        cum += ld(&w->batch.bucket[b]);
        if (b < M_BATCH_BUCKETS)
            put(o, "scepd_store_batch_size_bucket{le=\"%u\"} %llu\n", batch_bounds[b],
                (unsigned long long)cum);
        else
            put(o, "scepd_store_batch_size_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    put(o, "scepd_store_batch_size_sum %llu\nscepd_store_batch_size_count %llu\n",
        (unsigned long long)ld(&w->batch.sum), (unsigned long long)cum);
    head(o, "scepd_store_commit_seconds", "histogram",
         "From a put's submission to the store writer until its commit is durable.");
    hist_series(o, m, "scepd_store_commit_seconds", "", offsetof(metrics_slot, commit));
}

static void render_gauges(out *o, const metrics *m, const metrics_gauges *g)
{
    head(o, "scepd_queue_depth", "gauge", "Jobs waiting in the crypto workers' queue.");
    put(o, "scepd_queue_depth %zu\n", g->queue_len);
    head(o, "scepd_admitted_jobs", "gauge",
         "Jobs admitted and not yet released (queued, on a worker, at the writer, sending).");
    put(o, "scepd_admitted_jobs %zu\n", g->admitted);
    head(o, "scepd_admitted_jobs_max", "gauge", "The admission bound (queue_max).");
    put(o, "scepd_admitted_jobs_max %zu\n", g->admit_max);
    head(o, "scepd_open_connections", "gauge", "Connections holding a slot, per shard.");
    for (uint32_t i = 0; i < m->nshards; i++)
        put(o, "scepd_open_connections{shard=\"%u\"} %zu\n", i, g->shard_conns[i]);
    head(o, "scepd_admin_auth_failures_total", "counter",
         "Admin API requests with a missing or wrong bearer token.");
    put(o, "scepd_admin_auth_failures_total %llu\n",
        (unsigned long long)SUM(m, admin_auth_failed));
    head(o, "scepd_admin_rate_limited_total", "counter",
         "Admin API requests refused with 429 (too many failed authentications).");
    put(o, "scepd_admin_rate_limited_total %llu\n",
        (unsigned long long)SUM(m, admin_rate_limited));
    if (g->have_crl) {
        head(o, "scepd_crl_this_update_seconds", "gauge",
             "thisUpdate of the published CRL (seconds since the epoch); its age is "
             "time() - this value.");
        put(o, "scepd_crl_this_update_seconds %lld\n", (long long)g->crl_this_update);
        head(o, "scepd_crl_age_seconds", "gauge", "Seconds since the published CRL's thisUpdate.");
        put(o, "scepd_crl_age_seconds %lld\n", (long long)(time(NULL) - g->crl_this_update));
        head(o, "scepd_crl_bytes", "gauge", "Size of the published CRL (DER).");
        put(o, "scepd_crl_bytes %zu\n", g->crl_bytes);
        head(o, "scepd_crl_number", "gauge", "cRLNumber of the published CRL.");
        put(o, "scepd_crl_number %llu\n", (unsigned long long)g->crl_number);
    }
    head(o, "scepd_build_info", "gauge", "Build of this scepd (always 1).");
    put(o, "scepd_build_info{version=\"%s\",openssl=\"%s\",shards=\"%u\",workers=\"%d\"} 1\n",
        SCEPD_VERSION, OpenSSL_version(OPENSSL_VERSION_STRING), m->nshards, m->nworkers);
}

int metrics_render(metrics *m, const metrics_gauges *g, char **outp, size_t *len)
{
    out o = {.p = malloc(16384), .cap = 16384};
    if (o.p == NULL)
        return -ENOMEM;
    render_requests(&o, m);
    render_enroll(&o, m);
    render_workers(&o, m);
    render_store(&o, m);
    render_gauges(&o, m, g);
    if (o.oom) {
        free(o.p);
        return -ENOMEM;
    }
    *outp = o.p;
    *len = o.len;
    return 0;
}
