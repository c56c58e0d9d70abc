/* keyclock: every bracketed operation is counted, a random one in KEYCLOCK_EVERY is timed (the
 * thread's first always), and the time of a timed one is the thread CPU spent inside it; a
 * period that would alias with work repeating every 32 operations does not bias the sample. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>

#include "engine/common/keyclock.h"

/* Burns about us microseconds of this thread's CPU. */
static void spin_us(unsigned us)
{
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    do
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    while ((uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)b.tv_nsec -
               (uint64_t)a.tv_nsec < us * 1000u);
}

static void first_is_timed(void **state)
{
    (void)state;
    keyclock_totals k0 = keyclock_thread();
    assert_int_equal(k0.ops, 0);
    uint64_t t = keyclock_begin();
    assert_true(t != 0);
    spin_us(2000);
    keyclock_end(t);
    keyclock_totals k1 = keyclock_thread();
    assert_int_equal(k1.ops, 1);
    assert_int_equal(k1.sampled, 1);
    assert_true(k1.sampled_ns >= 2000000u);
    assert_true(k1.sampled_ns < 200000000u);      /* not wall time of anything else */
}

static void one_in_eight_unbiased(void **state)
{
    (void)state;
    enum { N = 16000 };
    keyclock_totals k0 = keyclock_thread();
    for (int i = 0; i < N; i++) {
        uint64_t t = keyclock_begin();
        if (i % 32 == 0)                  /* one costly operation in 32, as RSA blinding */
            spin_us(400);
        keyclock_end(t);
    }
    keyclock_totals k1 = keyclock_thread();
    uint64_t ops = k1.ops - k0.ops, sampled = k1.sampled - k0.sampled;
    assert_int_equal(ops, N);
    /* 1 in 8 at random: 2000 expected; far outside binomial noise below 1500 or above 2500 */
    assert_in_range(sampled, 1500, 2500);
    /* The sample's mean cost, scaled to all, is the true total (N/32 x 400 us = 200 ms) within
     * a third; a period of 8 would have timed every costly one (x4). */
    double est_ms = (double)(k1.sampled_ns - k0.sampled_ns) / (double)sampled * N / 1e6;
    assert_true(est_ms > 200.0 / 1.5);
    assert_true(est_ms < 200.0 * 1.5);
}

static void unsampled_costs_no_clock(void **state)
{
    (void)state;
    int zero = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t t = keyclock_begin();
        zero += t == 0;
        keyclock_end(t);
    }
    assert_true(zero > 500);             /* most operations read no clock at all */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_is_timed),
        cmocka_unit_test(one_in_eight_unbiased),
        cmocka_unit_test(unsampled_costs_no_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
