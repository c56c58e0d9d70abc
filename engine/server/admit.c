/* Bounded admission and the rate-limited audit of refusals and drops. See admit.h. */
#include "engine/server/admit.h"

#include <time.h>

static const struct {
    int         event;
    const char *diag;
    int         http_status;    /* what the client got (0: nothing, it had gone) */
} note_info[ADMIT_NNOTES] = {
    [ADMIT_REFUSED]  = {AUDIT_OVERLOADED, "queue_full", 503},
    [ADMIT_DEADLINE] = {AUDIT_REQUEST_DROPPED, "deadline", 503},
    [ADMIT_GONE]     = {AUDIT_REQUEST_DROPPED, "client_gone", 0},
    [ADMIT_EXPIRED]  = {AUDIT_REQUEST_DROPPED, "reply_deadline", 503},
};

static long long mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec;
}

void admit_init(admit *ad, int max_jobs, int workers)
{
    ad->workers = workers > 0 ? workers : 1;
    ad->max = max_jobs > 0 ? (size_t)max_jobs : (size_t)ADMIT_PER_WORKER * (size_t)ad->workers;
    atomic_init(&ad->inflight, 0);
    atomic_init(&ad->service_us, 5000);
    for (int i = 0; i < ADMIT_NNOTES; i++) {
        atomic_init(&ad->notes[i].pending, 0);
        atomic_init(&ad->notes[i].last_s, -1);
    }
}

int admit_take(admit *ad, enum admit_class cls)
{
    size_t cap = ad->max + (cls == ADMIT_HEALTH ? ADMIT_HEALTH_RESERVE : 0);
    size_t n = atomic_load_explicit(&ad->inflight, memory_order_relaxed);
    do {
        if (n >= cap)
            return 0;
    } while (!atomic_compare_exchange_weak(&ad->inflight, &n, n + 1));
    return 1;
}

void admit_release(admit *ad)
{
    atomic_fetch_sub(&ad->inflight, 1);
}

unsigned admit_retry_after(const admit *ad)
{
    unsigned long long us = atomic_load_explicit(&ad->service_us, memory_order_relaxed);
    unsigned long long n = atomic_load_explicit(&ad->inflight, memory_order_relaxed);
    unsigned long long s = (n * us / (unsigned long long)ad->workers + 999999) / 1000000;
    return s < 1 ? 1 : s > ADMIT_RETRY_MAX_S ? ADMIT_RETRY_MAX_S : (unsigned)s;
}

void admit_sample(admit *ad, uint64_t us)
{
    /* An exponential average (1/8 weight); a lost update between workers does no harm. */
    unsigned long long old = atomic_load_explicit(&ad->service_us, memory_order_relaxed);
    atomic_store_explicit(&ad->service_us, old - old / 8 + us / 8, memory_order_relaxed);
}

/* Emits the event of note what if its second has come (or force); one thread wins. */
static void note_emit(admit *ad, audit *au, int what, const char *peer, int force)
{
    admit_rate *r = &ad->notes[what];
    long long now = mono_s(), last = atomic_load(&r->last_s);
    if (atomic_load(&r->pending) == 0 || (!force && last == now) ||
        !atomic_compare_exchange_strong(&r->last_s, &last, now))
        return;
    unsigned long long n = atomic_exchange(&r->pending, 0);
    if (n == 0)
        return;
    audit_fields f = {.diag = note_info[what].diag, .peer = peer, .failinfo = -1,
                      .http_status = note_info[what].http_status, .count = n};
    audit_emit(au, note_info[what].event, &f);
}

void admit_note(admit *ad, audit *au, enum admit_note what, const char *peer)
{
    atomic_fetch_add(&ad->notes[what].pending, 1);
    note_emit(ad, au, (int)what, peer, 0);
}

void admit_flush(admit *ad, audit *au, int force)
{
    for (int i = 0; i < ADMIT_NNOTES; i++)
        note_emit(ad, au, i, NULL, force);
}
