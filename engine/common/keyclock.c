/* keyclock: per-thread CPU time inside private-key operations (keyclock.h). */
#include "engine/common/keyclock.h"

#include <time.h>

static _Thread_local uint64_t t_ns, t_ops;

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t keyclock_begin(void)
{
    return thread_cpu_ns();
}

void keyclock_end(uint64_t t0)
{
    uint64_t now = thread_cpu_ns();
    if (t0 != 0 && now >= t0)          /* a failed clock read counts the operation, not time */
        t_ns += now - t0;
    t_ops++;
}

uint64_t keyclock_thread_ns(void)
{
    return t_ns;
}

uint64_t keyclock_thread_ops(void)
{
    return t_ops;
}
