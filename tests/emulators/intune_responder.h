/* intune_responder.h: what the three files of intune-responder share (intune_responder.c:
 * the event loop, connections, deadlines, setup; intune_responder_http.c: the HTTP/1.1
 * request head and the answers; intune_responder_calls.c: the Intune calls). One thread:
 * nothing here is locked. */
#ifndef SCEPD_TESTS_INTUNE_RESPONDER_H
#define SCEPD_TESTS_INTUNE_RESPONDER_H

#include <stddef.h>
#include <stdint.h>

#define HEAD_MAX   16384                  /* request line and headers */
#define LINGER_NS  2000000000ull          /* a closing connection is drained this long */
#define INTUNE_APP "0000000a-0000-0000-c000-000000000000"
#define SVC_VAL    "ScepRequestValidationFEService"
#define SVC_PKI    "PkiConnectorFEService"
#define API_SCOPE  "https://api.manage.microsoft.com//.default"
#define LISTEN_KEY UINT64_MAX
#define LIT(s)     s, sizeof(s) - 1

typedef struct {
    int       fd;                         /* -1: a free slot */
    uint32_t  gen;                        /* bumped at close: stale events and timers skip */
    uint32_t  events;                     /* what epoll watches now */
    char     *in;                         /* received, not consumed: in[0..in_len) */
    size_t    in_len, in_cap;
    char     *out;                        /* to send: out[out_off..out_len) */
    size_t    out_off, out_len, out_cap;
    unsigned  held : 1;                   /* a validateRequest answer waits at the heap */
    unsigned  held_close : 1;             /* ... and its request asked to close after it */
    unsigned  continued : 1;              /* "100 Continue" sent for the request at in[0] */
    unsigned  closing : 1;                /* no more requests: close once out is sent */
    unsigned  lingering : 1;              /* write side shut, input drained until EOF */
    unsigned  eof : 1;                    /* the peer sent FIN */
} conn;

typedef struct { uint64_t due; uint32_t slot, gen, linger; } deadline;

typedef struct {
    const char *method, *target, *auth;   /* slices of the connection's input */
    size_t method_len, path_len, auth_len; /* path_len: the target without its query */
    size_t head_len, body_len;
    int keep_alive, expect;
} req;

typedef struct {
    int         port;
    const char *secret, *tenant, *client_id;
    long        delay_ms, token_life;
    uint32_t    max_conns;
    size_t      max_body;
    int         ep, lfd, accept_off;
    uint64_t    now;                      /* CLOCK_MONOTONIC ns, read after each wake-up */
    conn       *conns;
    uint32_t   *free_slots, nfree;
    deadline   *heap;
    size_t      nheap, heap_cap;
    char        tok[2][48];               /* [0] the API token, [1] Graph's */
    uint64_t    tok_until[2];             /* when the last one issued expires */
    char        tok_path[320], disc[1024];
    size_t      disc_len;
    struct { uint64_t requests, validations, successes, failures, tokens, discoveries,
               downloads, uploads, bad, continues, connections, open, waiting,
               max_waiting; } st;
} rsp;


/* intune_responder.c: queues a deadline (linger: end the connection, else answer its held
 * validateRequest). 0, or -1 out of memory. */
int rsp_heap_push(rsp *R, uint64_t due, uint32_t slot, uint32_t gen, uint32_t linger);

/* intune_responder_http.c. rsp_grow: makes *cap >= need (<= limit), 0 or -1. rsp_out: queues
 * raw bytes (closing on out of memory). rsp_reply: queues one JSON answer, with
 * "Connection: close" and closing set when close; returns 0 (a handler ends with it).
 * rsp_parse_head: the request head at b[0..n): 0 (r's slices point into b), 1 incomplete,
 * or the HTTP status of the error (400, 413, 417, 431, 501, 505). */
int rsp_grow(char **buf, size_t *cap, size_t need, size_t limit);
void rsp_out(conn *c, const char *s, size_t n);
int rsp_reply(conn *c, int status, const char *body, size_t len, int close);
int rsp_parse_head(const char *b, size_t n, size_t max_body, req *r);
#define REPLY(c, status, lit, close) rsp_reply(c, status, LIT(lit), close)

/* intune_responder_calls.c: answers (or holds) one complete request, b its body; the
 * answer a held validateRequest gets when its time comes. */
void rsp_dispatch(rsp *R, conn *c, const req *r, const char *b);
extern const char rsp_validate_ok[];
extern const size_t rsp_validate_ok_len;

#endif
