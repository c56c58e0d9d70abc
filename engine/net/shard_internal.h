/* shard_internal: what the files of a shard share. Not a public API (see shard.h).
 *
 *   shard.c         the event loop: ring, accept/tick/event operations, completions,
 *                   timeouts, reply delivery, create/run/stop/destroy
 *   shard_conn.c    one connection: open, receive, parse and dispatch, close, finalize
 *   shard_send.c    writing responses and what follows a sent one (keep-alive, linger)
 *   shard_listen.c  the listening sockets (each tagged plain or TLS, and SCEP or admin)
 *   shard_tls.c     a TLS connection: handshake, decrypting into the read buffer,
 *                   encrypting responses (over tls.h)
 *
 * Everything here runs on the shard's own thread except where shard.h says otherwise.
 */
#ifndef SCEPD_SHARD_INTERNAL_H
#define SCEPD_SHARD_INTERNAL_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "engine/common/config.h"
#include "engine/net/http.h"
#include "engine/net/shard.h"
#include "engine/net/tls.h"

#define SHARD_SLOT_MAX     ((1u << 24) - 1)
#define RBUF_INITIAL       (16 * 1024)
#define SHARD_LISTEN_MAX   4

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_TICK, OP_EVENT, OP_CANCEL,
          OP_TLS_ASYNC /* a poll on a paused handshake's wait fd (shard_tls.c) */ };

enum conn_state {
    C_FREE,      /* in the free list */
    C_READ,      /* reading / parsing a request */
    C_WAIT,      /* request handed to the app, reply deferred */
    C_SEND,      /* response being sent */
    C_LINGER,    /* response sent, write side shut, draining input until EOF or timeout */
    C_CLOSING,   /* fd closed, operations still in the kernel */
};

typedef struct conn {
    int             fd;
    _Atomic uint32_t gen;                /* read by other threads: shard_ref_live */
    enum conn_state st;
    unsigned        recv_busy : 1, send_busy : 1, close_after : 1, keep_alive : 1,
                    peer_eof : 1, head_ok : 1, tls_bye : 1;
    uint8_t         listener;            /* index of the listener that accepted it */
    tls_conn       *tls;                 /* NULL on a plain connection */
    char           *rbuf;
    size_t          rcap, rpos, rlen;    /* unconsumed input is rbuf[rpos..rlen) */
    size_t          scanned, parsed_at;  /* bytes of the current request scanned / parsed */
    size_t          head_len, body_len;  /* valid when head_ok */
    char           *wbuf;
    size_t          wcap;
    struct iovec    iov[2];              /* the response; plaintext under TLS */
    int             iov_idx, iov_cnt;
    struct msghdr   msg;
    shard_reply    *reply;               /* deferred reply whose body is being sent */
    uint64_t        req_start;           /* ms of the first byte of the request (of the
                                            connection while a TLS handshake runs), 0 if none */
    uint64_t        last_active;         /* ms of the last progress (idle, send stall) */
    uint64_t        wait_start;          /* ms the request was handed to the app (C_WAIT) */
    uint64_t        linger_until;
    char            peer[64];
} conn;

/* One listening socket; accepts on it are armed and completed independently. */
typedef struct shard_listener {
    int               fd;
    uint16_t          port;
    enum shard_listen_kind kind;
    tls_ctx          *tls;               /* a reference; NULL for plain */
    enum shard_role   role;              /* copied into conn_ref.role at dispatch */
    int               armed;
    struct sockaddr_storage addr;        /* of the connection being accepted */
    socklen_t         addr_len;
} shard_listener;

struct shard {
    uint32_t          index;
    shard_handler_fn  fn;
    shard_flush_fn    flush;
    shard_reject_fn   on_reject;
    shard_expire_fn   on_expire;
    void             *ctx;
    http_limits       lim;
    size_t            rbuf_max;
    int               header_to_ms, idle_to_ms;
    int               wait_to_ms;        /* C_WAIT limit: request_timeout + grace, 0: none */
    uint64_t          tick_ms;

    struct io_uring   ring;
    int               ring_ok;
    unsigned          inflight;          /* submitted operations without a completion */
    shard_listener    lst[SHARD_LISTEN_MAX];
    unsigned          nlst;
    int               efd;
    uint64_t          evbuf;
    struct __kernel_timespec tick_ts;
    int               accept_paused, tick_armed, ev_armed, stopping;

    conn             *conns;
    uint32_t          max;
    uint32_t         *freelist;
    uint32_t          nfree;
    atomic_size_t     nused;

    /* Delivered replies (shard_deliver, any thread) wait in pend_head..pend_tail under mu.
     * waiting is 1 from the moment the loop, holding mu, found the list empty and is about
     * to sleep in the kernel, until it is back (set under mu, cleared without it): a
     * deliverer writes the eventfd only when it makes the list non-empty while waiting is
     * 1. The reasoning that no reply is stranded is in shard.c (shard_deliver). */
    pthread_mutex_t   mu;
    int               mu_ok;
    shard_reply      *pend_head, *pend_tail;
    atomic_int        waiting;
    atomic_int        stop_req;

    uint64_t          now;               /* monotonic ms, refreshed once per batch */
    time_t            date_t;
    char              date[40];
};

/* user_data of a submission: op (8 bits) | slot (24 bits) | generation (32 bits). An
 * accept carries its listener's index as the slot. */
static inline uint64_t ud_pack(enum op op, uint32_t slot, uint32_t gen)
{
    return (uint64_t)op << 56 | (uint64_t)(slot & SHARD_SLOT_MAX) << 32 | gen;
}

static inline uint32_t slot_of(const shard *s, const conn *c)
{
    return (uint32_t)(c - s->conns);
}

/* ---- the loop (shard.c) ---- */

/* A submission queue entry, counted as in flight; submits to make room when the SQ ring is
 * full. NULL if there is still none. */
struct io_uring_sqe *shard_get_sqe(shard *s);
/* Arms an accept on each listener without one, unless accepting is paused, no slot is free
 * or the shard is stopping. */
void shard_arm_accept(shard *s);
/* Asks the kernel to cancel the operation with user_data ud. */
void shard_cancel_op(shard *s, uint64_t ud);

/* ---- one connection (shard_conn.c) ---- */

/* Takes a free slot (the caller checked there is one) for the fd accepted on listener l;
 * starts reading (a TLS listener's connection starts with its handshake). */
void shard_conn_open(shard *s, int fd, shard_listener *l);
/* Closes the connection and cancels its operations; the slot is finalized when none is left
 * in the kernel. No-op on a closed connection. */
void shard_conn_close(shard *s, conn *c);
/* Releases the connection's reply and big buffers and returns the slot to the free list. */
void shard_conn_finalize(shard *s, conn *c);
/* Keeps one recv outstanding while there is room in the read buffer (TLS: first decrypts
 * what is buffered, and parses it in C_READ). */
void shard_ensure_recv(shard *s, conn *c);
/* Makes room in the read buffer for want_free more bytes (grows up to rbuf_max). 0/-ENOMEM. */
int  shard_rbuf_reserve(shard *s, conn *c, size_t want_free);
/* How many free bytes the next read into the read buffer should have. */
size_t shard_rbuf_want(const conn *c);
/* Parses and dispatches the requests already buffered while the connection is in C_READ. */
void shard_process(shard *s, conn *c);
/* A recv completed with res (bytes or -errno). */
void shard_on_recv(shard *s, conn *c, int res);

/* ---- responses (shard_send.c) ---- */

/* Starts sending resp; reply (deferred answers) owns the body and is released after the
 * send, or at once if the send cannot start. NULL: the body is copied. */
void shard_start_response(shard *s, conn *c, const http_response *resp, shard_reply *reply);
/* Answers a request the shard itself refuses (status 4xx/5xx) and closes afterwards. */
void shard_send_error(shard *s, conn *c, int status);
/* The app's reply to the request c waits for is past the wait limit: answers 503 with
 * Retry-After (the expire hook audits it and says how long) and closes; the reply, when it
 * comes, finds the connection no longer in C_WAIT and is released unsent. */
void shard_wait_expired(shard *s, conn *c);
/* A send completed with res (bytes or -errno). */
void shard_on_send(shard *s, conn *c, int res);
/* Everything of the response has been sent: release the reply, then the next request or
 * the linger that ends the connection. */
void shard_response_done(shard *s, conn *c);
/* Shuts the write side and drains input for a while before closing (after an error reply). */
void shard_begin_linger(shard *s, conn *c);

/* ---- the listening sockets (shard_listen.c) ---- */

/* Binds and listens on host:port with SO_REUSEPORT; returns 0 with the fd and the bound port
 * (useful when port 0 was asked), or -errno. */
int shard_open_listener(const char *host, uint16_t port, int *fd_out, uint16_t *port_out);

/* ---- TLS connections (shard_tls.c) ---- */

/* A recv of ciphertext completed with res > 0 bytes: handshake or decrypt, then parse. */
void shard_tls_on_recv(shard *s, conn *c, size_t res);
/* Arms a recv into the TLS input buffer (after decrypting what it holds). */
void shard_tls_ensure_recv(shard *s, conn *c);
/* Encrypts the next part of the response in c->iov and sends it, or sends what is queued. */
void shard_tls_send(shard *s, conn *c);
/* A send of ciphertext completed with res > 0 bytes. */
void shard_tls_on_send(shard *s, conn *c, size_t res);
/* An OP_TLS_ASYNC poll completed (ud as submitted, res the poll result): the token's key
 * thread finished the handshake's signature, so the handshake goes on. Stale ones (the
 * connection closed meanwhile) are dropped: the poll holds no buffer of the slot. */
void shard_tls_on_async(shard *s, uint64_t ud, int res);
/* The sweep found a handshake older than the header timeout: count it and close. */
void shard_tls_handshake_timeout(shard *s, conn *c);

#endif
