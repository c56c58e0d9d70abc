/* shard: one thread, one io_uring, SO_REUSEPORT listeners, its own connections. Each
 * listener has a kind (plain HTTP, or HTTPS when given a TLS context) and a role (the SCEP
 * one of shard_create, an admin one added by shard_add_listener).
 *
 * A shard accepts connections, reads and parses HTTP/1.1 requests (keep-alive, pipelining:
 * requests on one connection are answered in order, one at a time), enforces the limits of
 * the configuration (URL 414, headers 431, body 413, header/idle timeouts, connection cap:
 * at the cap it stops accepting until a connection closes) and hands each complete request
 * to the application's handler (shard_handler_fn). Nothing on a shard blocks: no PKCS#11, no
 * fsync.
 *
 * Answers computed elsewhere (crypto workers, store writer) come back through
 * shard_deliver(): one lock and one eventfd write per list, drained by the shard in a batch.
 * A reply for a connection that has since closed (slot reused: generation differs) is
 * released without being sent. A deferred request waits at most request_timeout +
 * SHARD_WAIT_GRACE_MS for its reply: past that the shard answers 503 with Retry-After itself
 * and closes the connection (a private-key call that hangs must not hold a client forever),
 * and the reply, when it comes, is released unsent.
 *
 * On a TLS listener the same connection machine runs over tls.h: the handshake first
 * (bounded by the header timeout), then records decrypted into the parser's buffer and
 * responses encrypted before they are sent; limits, timeouts and pipelining are the same.
 */
#ifndef SCEPD_SHARD_H
#define SCEPD_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "engine/common/config.h"
#include "engine/net/http.h"
#include "engine/net/tls.h"

typedef struct shard shard;

/* How long past request_timeout a deferred request waits before the shard answers it: the
 * workers drop what is still queued at request_timeout and answer it themselves, so the
 * shard's own 503 is for a reply that is stuck (a hung PKCS#11 call, a store that does not
 * commit). Timeouts are checked on the shard's tick, so a 503 may come up to a tick later. */
#define SHARD_WAIT_GRACE_MS 500

/* What a listening socket speaks. */
enum shard_listen_kind { SHARD_LISTEN_PLAIN = 0, SHARD_LISTEN_TLS = 1 };

/* What a listening socket serves; every connection carries the role of the listener that
 * accepted it (conn_ref.role), so the application routes by it. */
enum shard_role { SHARD_ROLE_SCEP = 0, SHARD_ROLE_ADMIN = 1 };

/* Identifies one connection of one shard at one point in time. */
typedef struct conn_ref {
    uint32_t shard;    /* shard index */
    uint32_t slot;     /* connection slot in that shard */
    uint32_t gen;      /* slot generation when the request was read */
    uint32_t role;     /* enum shard_role of the listener that accepted the connection */
} conn_ref;

typedef struct http_response {
    int         status;           /* 200, 400, ... */
    const char *content_type;     /* static string, or NULL for none */
    const uint8_t *body;          /* body bytes; lifetime: see below */
    size_t      body_len;
    const char *extra_headers;    /* static, each line ending "\r\n", or NULL */
    int         close;            /* close the connection after this response */
} http_response;

/* A reply delivered asynchronously. The shard calls release(r) exactly once when it no
 * longer needs r or the body (after the send completed, or at once if the connection is
 * gone). The owner (the app's job) embeds this struct. */
typedef struct shard_reply {
    struct shard_reply *next;
    conn_ref            ref;
    http_response       resp;
    void              (*release)(struct shard_reply *r);
} shard_reply;

/* What a handler returns. Part of the shard's contract with its application (the shard acts
 * on it, and engine/net includes nothing of the server), so it is declared here. */
enum app_verdict { APP_RESPOND = 0, APP_DEFER = 1 };

/* The application's request handler (scepd's: route_request, engine/server/route.c), given to
 * shard_create with its ctx.
 * Called on the shard thread for each complete request; req slices, body and peer ("ip:port",
 * "[v6]:port" for IPv6) are valid only during the call.
 * APP_RESPOND: *resp is filled; resp->body must stay valid until the next handler call on
 *   this shard or until shard_run returns (static or shard-owned memory; the shard copies it
 *   into its send buffer before returning to the loop).
 * APP_DEFER: the app will call shard_deliver() later with a reply for ref; the connection
 *   reads no further request until that reply is sent. If the client goes away first, the
 *   reply is released unsent when it arrives. */
typedef int (*shard_handler_fn)(void *ctx, const http_request *req, const uint8_t *body,
                                size_t body_len, conn_ref ref, const char *peer,
                                http_response *resp);

/* Called on the shard thread after each batch of completions has been handled: the app
 * hands the requests it collected during the batch to other threads in one go (one lock and
 * one wake-up per batch, not per request). */
typedef void (*shard_flush_fn)(void *ctx, uint32_t shard_index);

/* Creates the ring and the plain HTTP SCEP listener (SO_REUSEPORT on cfg->listen_host:
 * listen_port). Returns 0 or -errno. */
int  shard_create(const config *cfg, uint32_t index, shard_handler_fn fn, void *ctx,
                  shard **out);
/* Adds a listener of role on host:port (SO_REUSEPORT) before shard_run: plain HTTP when tls
 * is NULL, else HTTPS with that context (the shard takes its own reference). *port_out (may
 * be NULL) gets the bound port. Returns 0, -ENOSPC when the shard has its maximum of
 * listeners, or -errno. */
int  shard_add_listener(shard *s, const char *host, uint16_t port, tls_ctx *tls,
                        enum shard_role role, uint16_t *port_out);
/* Called on the shard thread when the shard itself refuses a request (400/408/413/414/431/
 * 501/505 from the parser or a timer, 500 on an internal error), so the app can audit it.
 * A TLS connection that fails its handshake is reported too, with a reason starting
 * "tls: ": 400 (garbage, an alert, plain HTTP on the TLS port: that one is answered with a
 * plain-text 400) or 408 (no complete handshake within the header timeout). */
typedef void (*shard_reject_fn)(void *ctx, int status, const char *reason, const char *peer);

/* Called on the shard thread when a deferred request had no reply within the wait limit
 * (request_timeout + SHARD_WAIT_GRACE_MS), just before the shard answers it 503 and closes,
 * so the app can audit it. Returns the Retry-After seconds of that 503. ref and peer are the
 * request's (peer valid during the call). Without the hook: Retry-After 1. */
typedef unsigned (*shard_expire_fn)(void *ctx, conn_ref ref, const char *peer);

/* Sets the end-of-batch hook (before shard_run; optional). */
void shard_set_flush(shard *s, shard_flush_fn fn);
/* Sets the reject hook (before shard_run; optional). */
void shard_set_reject(shard *s, shard_reject_fn fn);
/* Sets the expire hook (before shard_run; optional). */
void shard_set_expire(shard *s, shard_expire_fn fn);
/* Runs the loop on the calling thread until shard_stop(). Returns 0 or -errno. */
int  shard_run(shard *s);
/* Asks the loop to stop (any thread, async-signal-safe: one eventfd write). */
void shard_stop(shard *s);
/* Closes connections, releases pending replies, frees. Accepts NULL. After shard_run returned. */
void shard_destroy(shard *s);
/* Hands a list of replies to the shard (any thread). */
void shard_deliver(shard *s, shard_reply *list);
/* Port the plain SCEP listener of shard_create is bound to (useful when listen_port is 0). */
uint16_t shard_port(const shard *s);
/* 1 while the connection ref names is still open (its slot generation has not moved), 0
 * once it closed; any thread, a snapshot (an open connection may close right after). Lets
 * the app drop work whose client has gone. */
int shard_ref_live(const shard *s, conn_ref ref);
/* Port of the first listener of that kind, 0 if there is none. */
uint16_t shard_listen_port(const shard *s, enum shard_listen_kind kind);
/* Connections currently holding a slot (open or still closing); any thread, a snapshot for
 * metrics and tests. */
size_t shard_conn_count(const shard *s);

#endif
