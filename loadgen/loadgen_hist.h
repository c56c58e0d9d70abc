/* lgh: a log-linear latency histogram (HdrHistogram-like) for scep-loadgen.
 *
 * Values are unsigned integers (the load generator records nanoseconds). Values below
 * 2^LGH_SUB_BITS are counted exactly; above, every power-of-two range is cut into
 * 2^(LGH_SUB_BITS-1) equal buckets, so a reported value is at most 2^(1-LGH_SUB_BITS)
 * (about 0.1 %) above the true one. Values above LGH_MAX_VALUE are counted in the top bucket;
 * min and max are kept exactly. Recording is O(1) and allocation-free.
 *
 * Not thread-safe: one histogram per thread, merged afterwards. */
#ifndef SCEPD_LOADGEN_HIST_H
#define SCEPD_LOADGEN_HIST_H

#include <stdint.h>

#define LGH_SUB_BITS 11
#define LGH_MAX_BITS 40                       /* 2^40 ns: about 18 minutes */
#define LGH_MAX_VALUE ((UINT64_C(1) << LGH_MAX_BITS) - 1)

typedef struct lgh lgh;

/* Returns 0 or -ENOMEM; *out is owned (lgh_destroy). */
int lgh_create(lgh **out);
void lgh_destroy(lgh *h);                     /* accepts NULL */
void lgh_reset(lgh *h);

void lgh_record(lgh *h, uint64_t value);
void lgh_record_n(lgh *h, uint64_t value, uint64_t n);
/* Adds src's counts to dst. */
void lgh_merge(lgh *dst, const lgh *src);

uint64_t lgh_count(const lgh *h);
uint64_t lgh_min(const lgh *h);               /* 0 when empty */
uint64_t lgh_max(const lgh *h);               /* 0 when empty */
double lgh_mean(const lgh *h);                /* 0 when empty */
/* The value at percentile p (0..100): the highest value equivalent to the bucket holding
 * the ceil(p/100*count)-th smallest recording, capped at the exact max; 0 when empty. */
uint64_t lgh_percentile(const lgh *h, double p);

/* Bucket geometry, exposed for tests: the index for a value and the range [lo, hi] of
 * values sharing that index. */
unsigned lgh_index(uint64_t value);
uint64_t lgh_bucket_lo(unsigned index);
uint64_t lgh_bucket_hi(unsigned index);
unsigned lgh_nbuckets(void);

#endif
