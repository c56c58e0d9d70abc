/* keyclock: the CPU time the calling thread spends inside private-key operations.
 *
 * The three private-key operations of an enrollment (the RA's decryption of the request's
 * content key, the CA's signature of the certificate, the RA's signature of the CertRep) are
 * bracketed by keyclock_begin/keyclock_end where they are made; the crypto worker reads the
 * thread's running totals around each job and adds the difference to its metrics slot
 * (scepd_private_key_cpu_seconds_total, scepd_private_key_timed_operations_total). Dividing the
 * server's CPU time by that figure gives its distance from the crypto floor measured in the
 * same process over the same seconds, which the machine's drift cannot move (bench/ceiling
 * measures the floor beside the run instead: docs/benchmarks.md).
 *
 * With token keys the time is the calling thread's while the token works in it (SoftHSM); a
 * network HSM's own time is not on this machine's clock and is not counted.
 *
 * Threads: every function works on the calling thread's totals only (thread-local, no lock).
 * Cost: two clock_gettime(CLOCK_THREAD_CPUTIME_ID) per operation (a system call each, under a
 * microsecond against half a millisecond for an RSA-2048 private operation).
 */
#ifndef SCEPD_KEYCLOCK_H
#define SCEPD_KEYCLOCK_H

#include <stdint.h>

/* The thread's CPU time now, in ns: pass it to keyclock_end. */
uint64_t keyclock_begin(void);
/* Adds the thread CPU time since t0 (from keyclock_begin) and one operation to the totals. */
void     keyclock_end(uint64_t t0);
/* The calling thread's totals since it started: CPU ns inside timed operations, and their
 * number. */
uint64_t keyclock_thread_ns(void);
uint64_t keyclock_thread_ops(void);

#endif
