/* keyclock: the CPU time the calling thread spends inside private-key operations.
 *
 * The three private-key operations of an enrollment (the RA's decryption of the request's
 * content key, the CA's signature of the certificate, the RA's signature of the CertRep) are
 * bracketed by keyclock_begin/keyclock_end where they are made; the crypto worker reads the
 * thread's running totals around each job and adds the differences to its metrics slot
 * (scepd_private_key_operations_total, scepd_private_key_sampled_operations_total,
 * scepd_private_key_sampled_cpu_seconds_total). Server CPU divided by (CPU per sampled
 * operation x operations) is its distance from the crypto floor, measured in the same process
 * over the same seconds, which the machine's drift cannot move (bench/ceiling measures the
 * floor beside the run instead: docs/benchmarks.md).
 *
 * Sampling: reading a thread's CPU clock is a system call (CLOCK_THREAD_CPUTIME_ID has no vDSO
 * path); timing every operation cost 0.5 % of the server's CPU in a profile. So each thread
 * times a random one operation in KEYCLOCK_EVERY and counts every one. Random, not every
 * n-th: OpenSSL renews an RSA key's blinding every 32 uses, an operation that costs about a
 * fifth more, and a period of 8 timed all of them (a 15 % bias, measured).
 *
 * With token keys the time is the calling thread's while the token works in it (SoftHSM); a
 * network HSM's own time is not on this machine's clock and is not counted.
 *
 * Threads: every function works on the calling thread's totals only (thread-local, no lock).
 */
#ifndef SCEPD_KEYCLOCK_H
#define SCEPD_KEYCLOCK_H

#include <stdint.h>

#define KEYCLOCK_EVERY 8            /* a thread times one operation in this many (a power
                                     * of 2), at random */

/* A token for keyclock_end: the thread's CPU time in ns when this operation is sampled, else
 * 0. Brackets do not nest. */
uint64_t keyclock_begin(void);
/* Counts one operation; when t0 came from a sampled keyclock_begin, adds the CPU time since. */
void     keyclock_end(uint64_t t0);

/* The calling thread's totals since it started. */
typedef struct keyclock_totals {
    uint64_t ops;                  /* every bracketed operation */
    uint64_t sampled;              /* those that were timed */
    uint64_t sampled_ns;           /* their CPU time */
} keyclock_totals;
keyclock_totals keyclock_thread(void);

#endif
