/* keyclock: per-thread CPU time inside private-key operations (keyclock.h). */
#include "engine/common/keyclock.h"

#include <stdint.h>
#include <time.h>

static _Thread_local keyclock_totals t_tot;
static _Thread_local uint32_t t_rng;        /* xorshift32 state; 0 until first used */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Whether to time this operation: a thread's first, then one in KEYCLOCK_EVERY at random (a
 * statistical sample, not a secret: no cryptographic generator needed). */
static int sample_this(void)
{
    if (t_rng == 0) {
        t_rng = (uint32_t)(uintptr_t)&t_rng | 1u;   /* differs per thread */
        return 1;
    }
    t_rng ^= t_rng << 13;
    t_rng ^= t_rng >> 17;
    t_rng ^= t_rng << 5;
    return (t_rng & (KEYCLOCK_EVERY - 1)) == 0;
}

uint64_t keyclock_begin(void)
{
    return sample_this() ? thread_cpu_ns() : 0;
}

void keyclock_end(uint64_t t0)
{
    t_tot.ops++;
    if (t0 == 0)                       /* not sampled (or the clock could not be read) */
        return;
    uint64_t now = thread_cpu_ns();
    if (now >= t0) {
        t_tot.sampled++;
        t_tot.sampled_ns += now - t0;
    }
}

keyclock_totals keyclock_thread(void)
{
    return t_tot;
}
