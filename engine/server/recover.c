/* A crypto worker's HSM recovery: outage state, backoff, retry once. See recover.h. */
#include "engine/server/recover.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void recover_init(recover *r, hsm_token *token, audit *au, int index)
{
    memset(r, 0, sizeof(*r));
    r->token = token;
    r->audit = au;
    r->index = index;
    r->rng = 0x9e3779b9u ^ (uint32_t)mono_ms() ^ ((uint32_t)index * 0x85ebca6bu);
    if (r->rng == 0)
        r->rng = 1;
}

int recover_down(const recover *r)
{
    return r->down;
}

int recover_will_retry(void *arg, const char **cause)
{
    const recover *r = arg;
    if (cause != NULL)
        *cause = r != NULL && r->down ? r->why : NULL;
    return r != NULL && r->token != NULL && !r->final && HSM_FAULT_IS_LOSS(hsm_last_fault()) &&
           hsm_thread_ops() == r->ops0;
}

/* After a failed attempt: 50 ms doubling to the cap, +-25 % jitter so that workers that lost
 * their sessions together do not all knock on the module at the same moments. */
static void back_off(recover *r)
{
    unsigned b = r->backoff_ms == 0 ? RECOVER_BACKOFF_MIN_MS : r->backoff_ms * 2;
    if (b > RECOVER_BACKOFF_MAX_MS)
        b = RECOVER_BACKOFF_MAX_MS;
    r->backoff_ms = b;
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 17;
    r->rng ^= r->rng << 5;
    r->next_ms = mono_ms() + b - b / 4 + r->rng % (b / 2 + 1);
}

/* The calling thread's last result is a loss this worker had not seen yet. */
static void outage_begin(recover *r)
{
    char detail[320];
    snprintf(r->rv, sizeof(r->rv), "%s", hsm_last_rv_name());
    memcpy(r->why, r->rv, sizeof(r->why));
    snprintf(detail, sizeof(detail), "worker %d lost its PKCS#11 session: %s; recovering",
             r->index, hsm_last_error());
    audit_fields f = {.diag = r->rv, .detail = detail, .failinfo = -1};
    audit_emit(r->audit, AUDIT_HSM_FAILURE, &f);
    r->down = 1;
    r->since_ms = mono_ms();
    r->next_ms = r->since_ms;       /* the first attempt at once: session faults clear so */
    r->backoff_ms = 0;
    r->refused = 0;
}

/* One recovery attempt when in an outage and its backoff has passed. 1 when the worker has a
 * session (again), 0 while it is still down. */
static int attempt(recover *r)
{
    if (!r->down)
        return 1;
    if (mono_ms() < r->next_ms)
        return 0;
    if (hsm_thread_recover(r->token) != 0) {
        snprintf(r->why, sizeof(r->why), "%s", hsm_last_rv_name());
        back_off(r);
        return 0;
    }
    char detail[160];
    snprintf(detail, sizeof(detail), "worker %d has a PKCS#11 session again after %llu ms",
             r->index, (unsigned long long)(mono_ms() - r->since_ms));
    audit_fields f = {.diag = r->rv, .detail = detail, .failinfo = -1, .count = r->refused};
    audit_emit(r->audit, AUDIT_HSM_RECOVERED, &f);
    r->down = 0;
    r->backoff_ms = 0;
    r->refused = 0;
    return 1;
}

int recover_run(recover *r, job *j, int (*run)(void *arg, job *j), void *arg)
{
    int next;
    if (r->token == NULL)
        return run(arg, j);
    int up = attempt(r);
    for (int pass = 0;; pass++) {
        r->final = pass > 0 || !up;
        hsm_fault_clear();
        r->ops0 = hsm_thread_ops();
        next = run(arg, j);
        if (!HSM_FAULT_IS_LOSS(hsm_last_fault()))
            break;
        /* decided before the recovery attempt replaces the thread's last result */
        int again = next >= 0 && recover_will_retry(r, NULL);
        if (!r->down)
            outage_begin(r);
        up = attempt(r);
        if (!again)
            break;
    }
    if (r->down && next >= 0 && j->reply.resp.status == 503)
        r->refused++;
    return next;
}
