/* authlimit: failed admin authentications counted per peer address, refused with 429 once
 * there were `max` in a window, and audited once per address and window.
 *
 * A window opens with an address's first failure and lasts `window_ms`. Once the address
 * has `max` failures in it, every admin request from that address is refused (429,
 * Retry-After: what is left of the window) before its token is looked at, so a correct
 * guess does not count either. When the window ends one AUDIT_ADMIN_AUTH_FAILED event
 * carries the count of failures and refusals (authlimit_flush).
 *
 * A fixed table of AUTHLIMIT_SLOTS addresses; when it is full the entry whose window
 * started first is audited and reused. The key is the address without the port: each new
 * connection has a new port, and every shard shares the one table (connections from one
 * address are spread over the shards).
 *
 * Threads: any (one mutex). Only admin-listener requests and one check per shard-0 batch
 * (authlimit_due, a relaxed load) touch it, never a SCEP request.
 */
#ifndef SCEPD_AUTHLIMIT_H
#define SCEPD_AUTHLIMIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "engine/common/audit.h"

#define AUTHLIMIT_SLOTS 256

typedef struct authlimit_entry {
    char     addr[48];      /* "" when free */
    uint64_t start_ms;      /* window start, CLOCK_MONOTONIC ms */
    uint32_t failed;        /* wrong or missing tokens in the window */
    uint32_t refused;       /* 429s in the window */
} authlimit_entry;

typedef struct authlimit {
    pthread_mutex_t  mu;
    uint32_t         max;
    uint64_t         window_ms;
    _Atomic uint64_t due_ms;    /* earliest end of a window with a count to audit */
    authlimit_entry  tab[AUTHLIMIT_SLOTS];
} authlimit;

void authlimit_init(authlimit *l, int max, int window_s);
void authlimit_destroy(authlimit *l);
/* 1 when peer ("ip:port", "[v6]:port") is refused now: *retry_s gets the seconds left of
 * its window (at least 1) and the refusal is counted. 0 otherwise. */
int  authlimit_blocked(authlimit *l, const char *peer, uint64_t now_ms, unsigned *retry_s);
/* A failed authentication from peer (au: for the event of a window it closes or evicts). */
void authlimit_failed(authlimit *l, audit *au, const char *peer, uint64_t now_ms);
/* 1 when a window may have ended with a count to audit (cheap, no lock). */
int  authlimit_due(const authlimit *l, uint64_t now_ms);
/* Audits the windows that ended (all of them with force, at shutdown). */
void authlimit_flush(authlimit *l, audit *au, uint64_t now_ms, int force);

#endif
