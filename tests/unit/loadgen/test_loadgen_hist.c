/* Tests for loadgen/loadgen_hist.c (included directly: the loadgen is an executable, not a
 * library). Percentiles of known distributions, bucket geometry and precision, bounds,
 * merge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "loadgen/loadgen_hist.c"

#define REL_ERR (1.0 / (double)(1u << (LGH_SUB_BITS - 1)))

static lgh *mk(void)
{
    lgh *h = NULL;
    assert_int_equal(lgh_create(&h), 0);
    assert_non_null(h);
    return h;
}

/* The reported value is the bucket's highest equivalent: never below the true value, and
 * at most REL_ERR above it. */
static void assert_close_above(uint64_t got, uint64_t want)
{
    assert_true(got >= want);
    assert_true((double)(got - want) <= (double)want * REL_ERR);
}

static void test_empty(void **state)
{
    (void)state;
    lgh *h = mk();
    assert_int_equal(lgh_count(h), 0);
    assert_int_equal(lgh_min(h), 0);
    assert_int_equal(lgh_max(h), 0);
    assert_int_equal(lgh_percentile(h, 50.0), 0);
    assert_int_equal(lgh_percentile(h, 100.0), 0);
    assert_true(lgh_mean(h) == 0.0);
    lgh_destroy(h);
    lgh_destroy(NULL);
}

/* Below 2^LGH_SUB_BITS every value has its own bucket: percentiles are exact. */
static void test_exact_small_values(void **state)
{
    (void)state;
    lgh *h = mk();
    for (uint64_t v = 1000; v >= 1; v--)   /* order must not matter */
        lgh_record(h, v);
    assert_int_equal(lgh_count(h), 1000);
    assert_int_equal(lgh_min(h), 1);
    assert_int_equal(lgh_max(h), 1000);
    assert_int_equal(lgh_percentile(h, 50.0), 500);
    assert_int_equal(lgh_percentile(h, 90.0), 900);
    assert_int_equal(lgh_percentile(h, 99.0), 990);
    assert_int_equal(lgh_percentile(h, 99.9), 999);
    assert_int_equal(lgh_percentile(h, 100.0), 1000);
    assert_int_equal(lgh_percentile(h, 0.0), 1);
    assert_int_equal(lgh_percentile(h, 0.05), 1);     /* rank rounds up to 1 */
    assert_true(lgh_mean(h) > 500.49 && lgh_mean(h) < 500.51);
    lgh_destroy(h);
}

/* Uniform 1 us .. 1 s in 1 us steps (nanoseconds, as the loadgen records). */
static void test_uniform_large_values(void **state)
{
    (void)state;
    lgh *h = mk();
    for (uint64_t i = 1; i <= 1000000; i++)
        lgh_record(h, i * 1000);
    assert_close_above(lgh_percentile(h, 50.0), 500000000);
    assert_close_above(lgh_percentile(h, 90.0), 900000000);
    assert_close_above(lgh_percentile(h, 99.0), 990000000);
    assert_close_above(lgh_percentile(h, 99.9), 999000000);
    assert_int_equal(lgh_percentile(h, 100.0), 1000000000);
    assert_int_equal(lgh_max(h), 1000000000);
    assert_int_equal(lgh_min(h), 1000);
    assert_true(lgh_mean(h) > 500000499.0 && lgh_mean(h) < 500000501.0);
    lgh_destroy(h);
}

/* 99 % fast, 1 % slow: the tail percentiles must land on the slow mode. */
static void test_bimodal(void **state)
{
    (void)state;
    lgh *h = mk();
    lgh_record_n(h, 1000000, 9900);       /* 1 ms */
    lgh_record_n(h, 100000000, 100);      /* 100 ms */
    assert_close_above(lgh_percentile(h, 50.0), 1000000);
    assert_close_above(lgh_percentile(h, 99.0), 1000000);
    assert_close_above(lgh_percentile(h, 99.01), 100000000);
    assert_close_above(lgh_percentile(h, 99.9), 100000000);
    assert_int_equal(lgh_percentile(h, 99.9), 100000000);   /* capped at the exact max */
    lgh_destroy(h);
}

static void test_record_n_equals_repeated_record(void **state)
{
    (void)state;
    lgh *a = mk(), *b = mk();
    lgh_record_n(a, 123456789, 7);
    lgh_record_n(a, 5, 0);                /* n = 0 records nothing, not even min */
    for (int i = 0; i < 7; i++)
        lgh_record(b, 123456789);
    assert_int_equal(lgh_count(a), 7);
    assert_int_equal(lgh_min(a), 123456789);
    assert_int_equal(lgh_count(b), 7);
    assert_int_equal(lgh_max(a), lgh_max(b));
    assert_int_equal(lgh_percentile(a, 50.0), lgh_percentile(b, 50.0));
    assert_true(lgh_mean(a) == lgh_mean(b));
    lgh_destroy(a);
    lgh_destroy(b);
}

/* Buckets tile [0, LGH_MAX_VALUE] without gaps or overlaps, indices grow with values, and
 * every bucket is narrower than REL_ERR of its lowest value. */
static void test_bucket_geometry(void **state)
{
    (void)state;
    unsigned n = lgh_nbuckets();
    assert_int_equal(lgh_bucket_lo(0), 0);
    for (unsigned i = 0; i + 1 < n; i++) {
        assert_int_equal(lgh_bucket_hi(i) + 1, lgh_bucket_lo(i + 1));
        assert_int_equal(lgh_index(lgh_bucket_lo(i)), i);
        assert_int_equal(lgh_index(lgh_bucket_hi(i)), i);
        if (lgh_bucket_lo(i) > 0)
            assert_true((double)(lgh_bucket_hi(i) - lgh_bucket_lo(i))
                        <= (double)lgh_bucket_lo(i) * REL_ERR);
    }
    assert_int_equal(lgh_bucket_hi(n - 1), LGH_MAX_VALUE);
    assert_int_equal(lgh_index(LGH_MAX_VALUE), n - 1);
    for (unsigned b = 1; b < LGH_MAX_BITS; b++) {
        uint64_t p = UINT64_C(1) << b;
        assert_true(lgh_index(p - 1) < lgh_index(p));
        assert_true(lgh_index(p) <= lgh_index(p + 1));
    }
}

/* Out-of-range values: counted in the top bucket, max stays exact. */
static void test_bounds(void **state)
{
    (void)state;
    lgh *h = mk();
    lgh_record(h, 0);
    lgh_record(h, UINT64_MAX);
    lgh_record(h, LGH_MAX_VALUE + 12345);
    assert_int_equal(lgh_index(UINT64_MAX), lgh_nbuckets() - 1);
    assert_int_equal(lgh_count(h), 3);
    assert_int_equal(lgh_min(h), 0);
    assert_int_equal(lgh_max(h), UINT64_MAX);
    assert_int_equal(lgh_percentile(h, 10.0), 0);
    assert_int_equal(lgh_percentile(h, 50.0), LGH_MAX_VALUE);
    assert_int_equal(lgh_percentile(h, 100.0), UINT64_MAX);
    lgh_reset(h);
    assert_int_equal(lgh_count(h), 0);
    assert_int_equal(lgh_percentile(h, 50.0), 0);
    lgh_destroy(h);
}

/* Merging per-thread histograms equals recording everything in one. */
static void test_merge(void **state)
{
    (void)state;
    lgh *a = mk(), *b = mk(), *all = mk(), *empty = mk();
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = x % 50000000;
        lgh_record(i % 3 ? a : b, v);
        lgh_record(all, v);
    }
    lgh_record(b, 900000000);
    lgh_record(all, 900000000);
    lgh_merge(a, b);
    assert_int_equal(lgh_count(a), lgh_count(all));
    assert_int_equal(lgh_min(a), lgh_min(all));
    assert_int_equal(lgh_max(a), 900000000);
    for (double p = 0.0; p <= 100.0; p += 0.5)
        assert_int_equal(lgh_percentile(a, p), lgh_percentile(all, p));
    assert_int_equal(lgh_percentile(a, 99.9), lgh_percentile(all, 99.9));
    assert_true(lgh_mean(a) - lgh_mean(all) < 1e-6 && lgh_mean(all) - lgh_mean(a) < 1e-6);

    /* empty into full: no change; full into empty: a copy, min included */
    lgh_merge(a, empty);
    assert_int_equal(lgh_count(a), lgh_count(all));
    assert_int_equal(lgh_min(a), lgh_min(all));
    lgh_merge(empty, all);
    assert_int_equal(lgh_min(empty), lgh_min(all));
    assert_int_equal(lgh_max(empty), lgh_max(all));
    assert_int_equal(lgh_percentile(empty, 50.0), lgh_percentile(all, 50.0));
    lgh_destroy(a);
    lgh_destroy(b);
    lgh_destroy(all);
    lgh_destroy(empty);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_exact_small_values),
        cmocka_unit_test(test_uniform_large_values),
        cmocka_unit_test(test_bimodal),
        cmocka_unit_test(test_record_n_equals_repeated_record),
        cmocka_unit_test(test_bucket_geometry),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
