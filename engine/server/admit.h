/* admit: bounded admission of work to the crypto workers.
 *
 * Every job a shard hands to the workers (PKIOperation, OCSP, /healthz) is counted from the
 * moment the shard admits it until it is released (answer sent, or its connection gone):
 * queued, on a worker, at the store writer, or being sent. PKIOperation and OCSP are refused
 * once `max` jobs are counted; /healthz has HEALTH_RESERVE more, so it keeps reporting while
 * enrollments fill the queue and is bounded too. The memory of admitted work is therefore at
 * most (max + ADMIT_HEALTH_RESERVE) jobs (docs/architecture.md, "Bounded admission").
 *
 * Refusals and drops are counted and audited at a bounded rate: the first at once, then at
 * most one event per kind per second carrying the count since the previous one; admit_flush
 * writes what is left (at shutdown).
 *
 * Threads: every function may be called from any thread (atomics, no lock).
 */
#ifndef SCEPD_ADMIT_H
#define SCEPD_ADMIT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/common/audit.h"

#define ADMIT_PER_WORKER      100   /* queue_max = 0: 100 jobs per worker, about 0.5 s of
                                       queueing at SoftHSM's ~5 ms per enrollment */
#define ADMIT_HEALTH_RESERVE  64
#define ADMIT_RETRY_MAX_S     60

enum admit_class { ADMIT_WORK = 0, ADMIT_HEALTH = 1 };

/* What admit_note counts: each is one audit event and diag. */
enum admit_note { ADMIT_REFUSED = 0, ADMIT_DEADLINE = 1, ADMIT_GONE = 2,
                  ADMIT_EXPIRED = 3,  /* the shard answered a reply stuck past the deadline */
                  ADMIT_NNOTES };

typedef struct admit_rate {
    atomic_ullong pending;        /* not yet in an event */
    atomic_llong  last_s;         /* monotonic second of the last event */
} admit_rate;

typedef struct admit {
    size_t        max;            /* jobs counted at most (ADMIT_WORK) */
    int           workers;
    atomic_size_t inflight;
    atomic_ullong service_us;     /* moving average of a job's worker time, for Retry-After */
    admit_rate    notes[ADMIT_NNOTES];
} admit;

/* max_jobs 0: ADMIT_PER_WORKER * workers. */
void     admit_init(admit *ad, int max_jobs, int workers);
/* 1: counted (admit_release once when the job goes), 0: refused (full). */
int      admit_take(admit *ad, enum admit_class cls);
void     admit_release(admit *ad);
/* Seconds a refused client should wait: the time the workers need for the work admitted now
 * at the measured service time, 1..ADMIT_RETRY_MAX_S. */
unsigned admit_retry_after(const admit *ad);
/* A worker finished a job that took us microseconds of its time. */
void     admit_sample(admit *ad, uint64_t us);
/* Counts one refusal or drop; writes its audit event when the rate allows (peer: the latest
 * client, in the event). */
void     admit_note(admit *ad, audit *au, enum admit_note what, const char *peer);
/* Writes the events of counts not yet audited (at shutdown, and when a second has passed). */
void     admit_flush(admit *ad, audit *au, int force);

#endif
