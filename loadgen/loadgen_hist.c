/* Log-linear histogram: group 0 holds values [0, 2^S) one per bucket; group g >= 1 holds
 * [2^(S+g-1), 2^(S+g)) in 2^(S-1) buckets of width 2^g. */
#include "loadgen/loadgen_hist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SUB (UINT64_C(1) << LGH_SUB_BITS)
#define HALF (SUB >> 1)
#define NGROUPS (LGH_MAX_BITS - LGH_SUB_BITS)
#define NBUCKETS ((unsigned)(SUB + NGROUPS * HALF))

struct lgh {
    uint64_t count, min, max;
    long double sum;
    uint64_t buckets[NBUCKETS];
};

unsigned lgh_nbuckets(void)
{
    return NBUCKETS;
}

unsigned lgh_index(uint64_t v)
{
    if (v > LGH_MAX_VALUE)
        v = LGH_MAX_VALUE;
    if (v < SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned g = msb - LGH_SUB_BITS + 1;
    return (unsigned)(SUB + (g - 1) * HALF + ((v >> g) - HALF));
}

uint64_t lgh_bucket_lo(unsigned i)
{
    if (i < SUB)
        return i;
    unsigned g = (unsigned)((i - SUB) / HALF) + 1;
    uint64_t off = (i - SUB) % HALF;
    return (HALF + off) << g;
}

uint64_t lgh_bucket_hi(unsigned i)
{
    if (i < SUB)
        return i;
    unsigned g = (unsigned)((i - SUB) / HALF) + 1;
    return lgh_bucket_lo(i) + (UINT64_C(1) << g) - 1;
}

int lgh_create(lgh **out)
{
    lgh *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    *out = h;
    return 0;
}

void lgh_destroy(lgh *h)
{
    free(h);
}

void lgh_reset(lgh *h)
{
    memset(h, 0, sizeof(*h));
}

void lgh_record_n(lgh *h, uint64_t v, uint64_t n)
{
    if (n == 0)
        return;
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (h->count == 0 || v > h->max)
        h->max = v;
    h->count += n;
    h->sum += (long double)v * (long double)n;
    h->buckets[lgh_index(v)] += n;
}

void lgh_record(lgh *h, uint64_t v)
{
    lgh_record_n(h, v, 1);
}

void lgh_merge(lgh *dst, const lgh *src)
{
    if (src->count == 0)
        return;
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (dst->count == 0 || src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->sum += src->sum;
    for (unsigned i = 0; i < NBUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
}

uint64_t lgh_count(const lgh *h)
{
    return h->count;
}

uint64_t lgh_min(const lgh *h)
{
    return h->count ? h->min : 0;
}

uint64_t lgh_max(const lgh *h)
{
    return h->count ? h->max : 0;
}

double lgh_mean(const lgh *h)
{
    return h->count ? (double)(h->sum / (long double)h->count) : 0.0;
}

uint64_t lgh_percentile(const lgh *h, double p)
{
    if (h->count == 0)
        return 0;
    if (!(p > 0.0))
        return h->min;
    if (p >= 100.0)
        return h->max;
    /* Rank of the recording asked for, 1-based; the epsilon keeps 50 % of 1000 at rank 500
     * when p/100*count comes out a hair above an integer; no libm for the unit test. */
    double want = p / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want - 1e-9)
        rank++;
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = lgh_bucket_hi(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}
