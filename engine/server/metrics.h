/* metrics: the server's counters and histograms, and their Prometheus text (format 0.0.4)
 * for GET /metrics on the admin listener (docs/operations.md, "Metrics").
 *
 * Every counter has one writer. Each shard, each crypto worker and the store writer own a
 * slot (metrics_slot) and only ever write their own; a scrape reads every slot and sums.
 * A slot's values are _Atomic only so that the scrape's concurrent read is defined: the
 * owner increments with a relaxed load and a relaxed store (no read-modify-write, no lock,
 * no cache line shared with another writer), the scrape loads relaxed. A scrape therefore
 * sees each value as it was at some recent moment, not one instant for all of them.
 *
 * Threads: metrics_create/destroy on the main thread before the others start / after they
 * stopped; m_* on the slot's owner; metrics_render on any thread (the shard that serves
 * /metrics).
 */
#ifndef SCEPD_METRICS_H
#define SCEPD_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/scep/reject.h"

typedef _Atomic uint64_t m_counter;

/* Latency buckets, seconds (upper bounds; +Inf is the last slot). */
#define M_LAT_BUCKETS 15
/* Batch size buckets (puts per commit). */
#define M_BATCH_BUCKETS 10

typedef struct m_hist {
    m_counter bucket[M_LAT_BUCKETS + 1];  /* non-cumulative: rendered cumulative */
    m_counter sum_ns;
} m_hist;

typedef struct m_batch_hist {
    m_counter bucket[M_BATCH_BUCKETS + 1];
    m_counter sum;
} m_batch_hist;

/* What a request was, for scepd_http_requests_total{operation}. */
enum m_op {
    M_OP_GETCACAPS = 0, M_OP_GETCACERT, M_OP_GETNEXTCACERT, M_OP_PKIOPERATION, M_OP_HEALTHZ,
    M_OP_CRL, M_OP_OCSP, M_OP_ADMIN_REVOKE, M_OP_ADMIN_CHALLENGE, M_OP_METRICS, M_OP_OTHER,
    M_OP_COUNT
};

/* HTTP statuses counted one by one; anything else is "other" (its class is in the label). */
#define M_STATUS_COUNT 16

/* Enrollment outcomes (scepd_enrollments_total{outcome}); a refusal is counted by its
 * diagnostic (REJ_*) in scepd_enrollments_refused_total{diag}. */
enum m_outcome { M_ISSUED = 0, M_RENEWED, M_REPLAYED, M_PENDING, M_REFUSED, M_OUTCOME_COUNT };

/* Phases of a PKCSReq timed on the worker (bounded by the enroll phase boundaries):
 * "envelope" = parse, signature check and RA decryption; "issue" = CA signature, CertRep
 * signature and the record. */
enum m_phase { M_PHASE_ENVELOPE = 0, M_PHASE_ISSUE, M_PHASE_COUNT };

/* Profiles a reload may add beyond those at start before new ones count as "other". */
#define M_PROFILE_SPARE 64

#define M_CKR_MAX 8            /* distinct CKR names counted per worker; more: "other" */

typedef struct m_ckr {
    char      name[40];        /* written once, before its count first moves */
    m_counter count;
} m_ckr;

/* One thread's slot. Which members move depends on the owner: shards count requests and
 * auth failures, workers the queue wait, phases, HSM, OCSP and refusals, the writer commits
 * and the committed outcomes. Enrollments are per profile: enroll[profile index][outcome],
 * with room for the profiles at start plus M_PROFILE_SPARE, and one more index meaning
 * "unknown/none" (label profile=""). */
typedef struct metrics_slot {
    m_counter    requests[M_OP_COUNT][M_STATUS_COUNT];
    m_hist       request_seconds[M_OP_COUNT];
    m_counter    admin_auth_failed, admin_rate_limited;
    m_hist       queue_wait;
    m_hist       phase[M_PHASE_COUNT];
    m_counter    hsm_ops;
    m_counter    keyop_ops, keyop_sampled, keyop_sampled_ns;   /* keyclock.h */
    m_ckr        hsm_err[M_CKR_MAX];
    m_counter    hsm_err_other;
    _Atomic int  hsm_nerr;               /* names in use in hsm_err */
    m_counter    ocsp_cached, ocsp_signed;
    m_batch_hist batch;
    m_hist       commit;
    m_counter   *enroll;                 /* (nprofiles + 1) * M_OUTCOME_COUNT */
    m_counter   *refused;                /* (nprofiles + 1) * REJ__COUNT */
} metrics_slot;

typedef struct metrics metrics;

/* A snapshot the renderer needs from the rest of the server, filled by the caller. */
typedef struct metrics_gauges {
    size_t        queue_len;             /* jobs in the crypto workers' queue */
    size_t        admitted;              /* jobs admitted and not yet released */
    size_t        admit_max;
    const size_t *shard_conns;           /* open connections, one per shard */
    int           have_crl;
    int64_t       crl_this_update;       /* seconds since the epoch */
    size_t        crl_bytes;
    uint64_t      crl_number;
} metrics_gauges;

/* nshards shard slots, nworkers worker slots and one writer slot; profiles: the names
 * enrollments are counted under (copied; nprofiles may be 0). Returns 0 or -ENOMEM. */
int  metrics_create(uint32_t nshards, int nworkers, const char *const *profiles,
                    size_t nprofiles, metrics **out);
void metrics_destroy(metrics *m);                 /* accepts NULL */
metrics_slot *metrics_shard(metrics *m, uint32_t i);
metrics_slot *metrics_worker(metrics *m, int i);
metrics_slot *metrics_writer(metrics *m);
/* Index of a profile name for the enroll/refused tables (the "other" index for unknown). Any
 * thread, concurrently with metrics_add_profiles. */
size_t metrics_profile_index(const metrics *m, const char *name);
/* Registers the names not known yet (a reload's new profiles), so their enrollments are
 * counted under their own label from now on; known ones are skipped. Names are never removed:
 * a profile a reload dropped keeps its series (frozen) until a restart. One thread at a time
 * (the one that reloads); readers need no lock. Returns 0, the number of names that did not
 * fit (counted as "other"), or -ENOMEM. */
int  metrics_add_profiles(metrics *m, const char *const *names, size_t n);
/* With a token TLS key: where scepd_tls_key_operations_total comes from (fn(ctx) is called by
 * every scrape, from the scraping shard: must be thread-safe). Set before the shards start. */
void metrics_set_key_ops(metrics *m, uint64_t (*fn)(void *ctx), void *ctx);

/* Owner-side updates. */
static inline void m_add(m_counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}
static inline void m_inc(m_counter *c)
{
    m_add(c, 1);
}
void m_observe(m_hist *h, uint64_t ns);
void m_observe_batch(m_batch_hist *h, uint64_t n);
void m_request(metrics_slot *s, enum m_op op, int status);
void m_enroll(const metrics *m, metrics_slot *s, const char *profile, enum m_outcome o, int rej);
/* A CK_RV name seen by a worker after a failed token operation. */
void m_hsm_error(metrics_slot *s, const char *ckr_name);

/* The whole exposition, malloc'd (*out, *len). Returns 0 or -ENOMEM. */
int  metrics_render(metrics *m, const metrics_gauges *g, char **out, size_t *len);

/* CLOCK_MONOTONIC in ns. */
uint64_t metrics_now_ns(void);

#endif
