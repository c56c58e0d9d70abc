/* shard: io_uring event loop of one thread. See shard.h and docs/http.md.
 *
 * Every submission carries user_data = op (8 bits) | slot (24 bits) | generation (32 bits).
 * A connection slot goes back to the free list only when none of its operations is still in
 * the kernel, and its generation is bumped when it closes, so a completion or a delivered
 * reply for an earlier connection in the same slot is recognised and dropped.
 */
#include "engine/net/shard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SHARD_RING_ENTRIES 4096
#define SHARD_SLOT_MAX     ((1u << 24) - 1)
#define RBUF_INITIAL       (16 * 1024)
#define RBUF_MIN_FREE      2048
#define RBUF_SLACK         (8 * 1024)     /* request line, pipelined bytes after a body */
#define WBUF_KEEP          (16 * 1024)    /* larger send buffers are freed at close */
#define LINGER_MS          2000           /* drain after an error reply before closing */
#define TICK_MIN_MS        50
#define TICK_MAX_MS        1000

enum op { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_TICK, OP_EVENT, OP_CANCEL };

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
    uint32_t        gen;
    enum conn_state st;
    unsigned        recv_busy : 1, send_busy : 1, close_after : 1, keep_alive : 1,
                    peer_eof : 1, head_ok : 1;
    char           *rbuf;
    size_t          rcap, rpos, rlen;    /* unconsumed input is rbuf[rpos..rlen) */
    size_t          scanned, parsed_at;  /* bytes of the current request scanned / parsed */
    size_t          head_len, body_len;  /* valid when head_ok */
    char           *wbuf;
    size_t          wcap;
    struct iovec    iov[2];
    int             iov_idx, iov_cnt;
    struct msghdr   msg;
    shard_reply    *reply;               /* deferred reply whose body is being sent */
    uint64_t        req_start;           /* ms of the first byte of the request, 0 if none */
    uint64_t        last_active;         /* ms of the last progress (idle, send stall) */
    uint64_t        linger_until;
    char            peer[64];
} conn;

struct shard {
    uint32_t          index;
    shard_handler_fn  fn;
    shard_flush_fn    flush;
    shard_reject_fn   on_reject;
    void             *ctx;
    http_limits       lim;
    size_t            rbuf_max;
    int               header_to_ms, idle_to_ms;
    uint64_t          tick_ms;

    struct io_uring   ring;
    int               ring_ok;
    unsigned          inflight;          /* submitted operations without a completion */
    int               lfd, efd;
    uint16_t          port;
    uint64_t          evbuf;
    struct __kernel_timespec tick_ts;
    struct sockaddr_storage  acc_addr;
    socklen_t         acc_len;
    int               accept_armed, accept_paused, tick_armed, ev_armed, stopping;

    conn             *conns;
    uint32_t          max;
    uint32_t         *freelist;
    uint32_t          nfree;
    atomic_size_t     nused;

    pthread_mutex_t   mu;
    int               mu_ok;
    shard_reply      *pend_head, *pend_tail;
    atomic_int        stop_req;

    uint64_t          now;               /* monotonic ms, refreshed once per batch */
    time_t            date_t;
    char              date[40];
};

static uint64_t ud_pack(enum op op, uint32_t slot, uint32_t gen)
{
    return (uint64_t)op << 56 | (uint64_t)(slot & SHARD_SLOT_MAX) << 32 | gen;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void update_date(shard *s)
{
    time_t t = time(NULL);
    if (t == s->date_t)
        return;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    s->date_t = t;
}

/* Counts the operation as in flight; submits to make room when the SQ ring is full. */
static struct io_uring_sqe *get_sqe(shard *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (sqe == NULL) {
        io_uring_submit(&s->ring);
        sqe = io_uring_get_sqe(&s->ring);
    }
    if (sqe != NULL)
        s->inflight++;
    return sqe;
}

static uint32_t slot_of(const shard *s, const conn *c)
{
    return (uint32_t)(c - s->conns);
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default:  return status < 300 ? "OK" : status < 400 ? "Redirect" :
                     status < 500 ? "Client Error" : "Server Error";
    }
}

static const char *error_text(int status)
{
    switch (status) {
    case 408: return "request head not received in time\n";
    case 413: return "request body too large\n";
    case 414: return "request-target too long\n";
    case 431: return "request header fields too large\n";
    case 501: return "transfer-encoding not supported\n";
    case 505: return "only HTTP/1.0 and HTTP/1.1 are supported\n";
    case 500: return "internal error\n";
    default:  return "malformed request\n";
    }
}

static void arm_accept(shard *s)
{
    if (s->accept_armed || s->accept_paused || s->nfree == 0 || s->stopping)
        return;
    struct io_uring_sqe *sqe = get_sqe(s);
    if (sqe == NULL)
        return;
    s->acc_len = sizeof(s->acc_addr);
    io_uring_prep_accept(sqe, s->lfd, (struct sockaddr *)&s->acc_addr, &s->acc_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_ACCEPT, 0, 0));
    s->accept_armed = 1;
}

static void arm_tick(shard *s)
{
    if (s->tick_armed || s->stopping)
        return;
    struct io_uring_sqe *sqe = get_sqe(s);
    if (sqe == NULL)
        return;
    s->tick_ts.tv_sec = (long long)(s->tick_ms / 1000);
    s->tick_ts.tv_nsec = (long long)(s->tick_ms % 1000) * 1000000;
    io_uring_prep_timeout(sqe, &s->tick_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_TICK, 0, 0));
    s->tick_armed = 1;
}

static void arm_event(shard *s)
{
    if (s->ev_armed || s->stopping)
        return;
    struct io_uring_sqe *sqe = get_sqe(s);
    if (sqe == NULL)
        return;
    io_uring_prep_read(sqe, s->efd, &s->evbuf, sizeof(s->evbuf), 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_EVENT, 0, 0));
    s->ev_armed = 1;
}

static void cancel_op(shard *s, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    if (sqe == NULL)
        return;
    io_uring_prep_cancel64(sqe, ud, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, 0));
}

/* Returns the slot to the free list once the kernel holds nothing of it any more. */
static void conn_finalize(shard *s, conn *c)
{
    if (c->reply != NULL) {
        shard_reply *r = c->reply;
        c->reply = NULL;
        r->release(r);
    }
    if (c->rcap > RBUF_INITIAL) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
    if (c->wcap > WBUF_KEEP) {
        free(c->wbuf);
        c->wbuf = NULL;
        c->wcap = 0;
    }
    c->st = C_FREE;
    s->freelist[s->nfree++] = slot_of(s, c);
    atomic_fetch_sub(&s->nused, 1);
    /* A freed descriptor may be what an EMFILE pause was waiting for. */
    s->accept_paused = 0;
    arm_accept(s);
}

/* Errors on one connection end that connection only. In-flight operations are cancelled;
 * their completions arrive with the old generation and only free the slot. */
static void conn_close(shard *s, conn *c)
{
    if (c->fd < 0)
        return;
    uint32_t slot = slot_of(s, c);
    if (c->recv_busy)
        cancel_op(s, ud_pack(OP_RECV, slot, c->gen));
    if (c->send_busy)
        cancel_op(s, ud_pack(OP_SEND, slot, c->gen));
    close(c->fd);
    c->fd = -1;
    c->gen++;
    c->st = C_CLOSING;
    if (!c->recv_busy && !c->send_busy)
        conn_finalize(s, c);
}

static int rbuf_reserve(shard *s, conn *c, size_t want_free)
{
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    } else if (c->rpos > 0 && c->rcap - c->rlen < want_free) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->rcap - c->rlen >= want_free || c->rcap >= s->rbuf_max)
        return 0;
    size_t ncap = c->rcap ? c->rcap * 2 : RBUF_INITIAL;
    if (ncap < c->rlen + want_free)
        ncap = c->rlen + want_free;
    if (ncap > s->rbuf_max)
        ncap = s->rbuf_max;
    char *nb = realloc(c->rbuf, ncap);
    if (nb == NULL)
        return -ENOMEM;
    c->rbuf = nb;
    c->rcap = ncap;
    return 0;
}

/* Keeps one recv outstanding while there is room: it also notices a client that goes away
 * while its request is with the app. The buffer moves only here, when no recv is running. */
static void ensure_recv(shard *s, conn *c)
{
    if (c->fd < 0 || c->recv_busy || c->peer_eof || s->stopping)
        return;
    if (c->st == C_LINGER)
        c->rpos = c->rlen = 0;
    size_t want = RBUF_MIN_FREE;
    if (c->head_ok && c->head_len + c->body_len > c->rlen - c->rpos)
        want = c->head_len + c->body_len - (c->rlen - c->rpos);
    if (rbuf_reserve(s, c, want) != 0) {
        conn_close(s, c);
        return;
    }
    if (c->rcap == c->rlen)
        return;     /* full of pipelined input: read again once the app consumed some */
    struct io_uring_sqe *sqe = get_sqe(s);
    if (sqe == NULL) {
        conn_close(s, c);
        return;
    }
    io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_RECV, slot_of(s, c), c->gen));
    c->recv_busy = 1;
}

static void submit_send(shard *s, conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    if (sqe == NULL) {
        conn_close(s, c);
        return;
    }
    memset(&c->msg, 0, sizeof(c->msg));
    c->msg.msg_iov = &c->iov[c->iov_idx];
    c->msg.msg_iovlen = (size_t)(c->iov_cnt - c->iov_idx);
    io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND, slot_of(s, c), c->gen));
    c->send_busy = 1;
}

/* Serializes the head (and, for an immediate response, a copy of the body) into the
 * connection's write buffer and starts sending. A deferred reply's body is sent from the
 * reply itself, which is released once the send completes. */
static void start_response(shard *s, conn *c, const http_response *resp, shard_reply *reply)
{
    int close_after = !c->keep_alive || resp->close || s->stopping;
    const char *ct = resp->content_type;
    const char *extra = resp->extra_headers ? resp->extra_headers : "";
    size_t copy = reply == NULL ? resp->body_len : 0;
    size_t need = 200 + strlen(s->date) + (ct ? strlen(ct) : 0) + strlen(extra) + copy;

    if (need > c->wcap) {
        char *nb = realloc(c->wbuf, need);
        if (nb == NULL) {
            if (reply != NULL)
                reply->release(reply);
            conn_close(s, c);
            return;
        }
        c->wbuf = nb;
        c->wcap = need;
    }
    int n = snprintf(c->wbuf, c->wcap,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\n%s%s%sContent-Length: %zu\r\n"
                     "Connection: %s\r\n%s\r\n",
                     resp->status, reason(resp->status), s->date,
                     ct ? "Content-Type: " : "", ct ? ct : "", ct ? "\r\n" : "",
                     resp->body_len, close_after ? "close" : "keep-alive", extra);
    size_t hlen = (size_t)n;
    if (copy > 0)
        memcpy(c->wbuf + hlen, resp->body, copy);
    c->iov[0].iov_base = c->wbuf;
    c->iov[0].iov_len = hlen + copy;
    c->iov_cnt = 1;
    if (reply != NULL && resp->body_len > 0) {
        c->iov[1].iov_base = (void *)resp->body;
        c->iov[1].iov_len = resp->body_len;
        c->iov_cnt = 2;
    }
    c->iov_idx = 0;
    c->reply = reply;
    c->close_after = close_after;
    c->st = C_SEND;
    c->last_active = s->now;
    submit_send(s, c);
}

static void send_error(shard *s, conn *c, int status)
{
    const char *text = error_text(status);
    http_response r = {
        .status = status, .content_type = "text/plain", .body = (const uint8_t *)text,
        .body_len = strlen(text), .close = 1,
    };
    c->keep_alive = 0;
    if (s->on_reject != NULL)
        s->on_reject(s->ctx, status, text, c->peer);
    start_response(s, c, &r, NULL);
}

static void dispatch(shard *s, conn *c, const http_request *req, const uint8_t *body)
{
    conn_ref ref = { .shard = s->index, .slot = slot_of(s, c), .gen = c->gen };
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    c->keep_alive = req->keep_alive;
    int v = s->fn(s->ctx, req, body, c->body_len, ref, c->peer, &resp);
    if (v == APP_DEFER) {
        c->st = C_WAIT;
        return;
    }
    if (v != APP_RESPOND) {
        send_error(s, c, 500);
        return;
    }
    start_response(s, c, &resp, NULL);
}

/* "\n\n" or "\n\r\n": a head may be complete. */
static int has_head_end(const char *p, size_t n)
{
    const char *end = p + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        p++;
        if (p < end && *p == '\n')
            return 1;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
            return 1;
    }
    return 0;
}

/* Parses and dispatches requests already buffered, one at a time (pipelining keeps order).
 * The parser restarts from the request's first byte, so it is run only when a head may be
 * complete or when the input has doubled since the last try: a client trickling a long head
 * byte by byte costs linear, not quadratic, parsing; limits still trip early. */
static void process(shard *s, conn *c)
{
    while (c->st == C_READ && c->fd >= 0) {
        size_t avail = c->rlen - c->rpos;
        if (avail == 0)
            break;
        if (c->req_start == 0)
            c->req_start = s->now;
        const char *b = c->rbuf + c->rpos;
        http_request req;
        int have_req = 0;
        if (!c->head_ok) {
            size_t from = c->scanned > 3 ? c->scanned - 3 : 0;
            int found = has_head_end(b + from, avail - from);
            c->scanned = avail;
            if (!found && avail < 2 * c->parsed_at && avail < s->rbuf_max)
                break;
            c->parsed_at = avail;
            int rc = http_parse_request(b, avail, &s->lim, &req);
            if (rc == -2 && avail >= s->rbuf_max)
                rc = -400;
            if (rc == -2)
                break;
            if (rc < 0) {
                send_error(s, c, -rc);
                break;
            }
            c->head_ok = 1;
            c->head_len = (size_t)rc;
            c->body_len = req.content_length;
            have_req = 1;
        }
        if (avail < c->head_len + c->body_len)
            break;
        if (!have_req && http_parse_request(b, c->head_len, &s->lim, &req) != (int)c->head_len) {
            send_error(s, c, 500);
            break;
        }
        dispatch(s, c, &req, (const uint8_t *)b + c->head_len);
        c->rpos += c->head_len + c->body_len;
        c->head_ok = 0;
        c->scanned = c->parsed_at = 0;
        c->req_start = 0;
    }
    if (c->st == C_READ && c->peer_eof)
        conn_close(s, c);
}

static void begin_linger(shard *s, conn *c)
{
    /* Closing with unread input would send RST and could destroy the error reply before the
     * client reads it; shut the write side and drain for a while instead. */
    shutdown(c->fd, SHUT_WR);
    c->st = C_LINGER;
    c->linger_until = s->now + LINGER_MS;
}

static void on_send(shard *s, conn *c, int res)
{
    if (res <= 0) {
        conn_close(s, c);
        return;
    }
    size_t n = (size_t)res;
    while (n > 0 && c->iov_idx < c->iov_cnt) {
        struct iovec *v = &c->iov[c->iov_idx];
        if (n >= v->iov_len) {
            n -= v->iov_len;
            c->iov_idx++;
        } else {
            v->iov_base = (char *)v->iov_base + n;
            v->iov_len -= n;
            n = 0;
        }
    }
    c->last_active = s->now;
    if (c->iov_idx < c->iov_cnt && c->iov[c->iov_idx].iov_len > 0) {
        submit_send(s, c);
        return;
    }
    if (c->reply != NULL) {
        shard_reply *r = c->reply;
        c->reply = NULL;
        r->release(r);
    }
    if (c->close_after) {
        if (c->peer_eof) {
            conn_close(s, c);
            return;
        }
        begin_linger(s, c);
    } else {
        c->st = C_READ;
        process(s, c);
    }
    ensure_recv(s, c);
}

static void on_recv(shard *s, conn *c, int res)
{
    if (res == -EINTR || res == -EAGAIN) {
        ensure_recv(s, c);
        return;
    }
    if (res == 0 && c->st == C_SEND) {
        /* Half-closed: finish what was asked, including pipelined requests, then close. */
        c->peer_eof = 1;
        return;
    }
    if (res <= 0) {
        conn_close(s, c);
        return;
    }
    if (c->st == C_LINGER) {
        c->rpos = c->rlen = 0;
    } else {
        c->rlen += (size_t)res;
        if (c->st == C_READ)
            process(s, c);
    }
    ensure_recv(s, c);
}

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else {
        snprintf(out, outlen, "unknown");
    }
}

static void conn_open(shard *s, int fd)
{
    uint32_t slot = s->freelist[--s->nfree];
    conn *c = &s->conns[slot];
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->st = C_READ;
    c->recv_busy = c->send_busy = c->close_after = c->keep_alive = 0;
    c->peer_eof = c->head_ok = 0;
    c->rpos = c->rlen = 0;
    c->scanned = c->parsed_at = c->head_len = c->body_len = 0;
    c->reply = NULL;
    c->req_start = 0;
    c->last_active = s->now;
    format_peer(&s->acc_addr, c->peer, sizeof(c->peer));
    atomic_fetch_add(&s->nused, 1);
    ensure_recv(s, c);
}

static void on_accept(shard *s, int res)
{
    s->accept_armed = 0;
    if (res >= 0) {
        if (s->stopping || s->nfree == 0)
            close(res);
        else
            conn_open(s, res);
    } else {
        switch (-res) {
        case ECONNABORTED: case EINTR: case EAGAIN: case EPROTO: case ENETDOWN:
        case ENOPROTOOPT: case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case ENETUNREACH:
        case EPERM:
            break;      /* this connection's problem: take the next */
        default:
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM or worse: never spin; resume when a
             * connection closes or at the next tick. */
            s->accept_paused = 1;
            break;
        }
    }
    arm_accept(s);
}

static void sweep(shard *s)
{
    uint64_t now = s->now;
    for (uint32_t i = 0; i < s->max; i++) {
        conn *c = &s->conns[i];
        if (c->fd < 0)
            continue;
        switch (c->st) {
        case C_READ:
            if (c->req_start != 0) {
                if (s->header_to_ms > 0 && now - c->req_start >= (uint64_t)s->header_to_ms)
                    send_error(s, c, 408);
            } else if (s->idle_to_ms > 0 && now - c->last_active >= (uint64_t)s->idle_to_ms) {
                conn_close(s, c);
            }
            break;
        case C_SEND:
            /* A client that stops reading holds the slot no longer than an idle one. */
            if (s->idle_to_ms > 0 && now - c->last_active >= (uint64_t)s->idle_to_ms)
                conn_close(s, c);
            break;
        case C_LINGER:
            if (now >= c->linger_until)
                conn_close(s, c);
            break;
        default:
            break;      /* C_WAIT: the app owes a reply; never timed out here */
        }
    }
}

static void on_tick(shard *s)
{
    s->tick_armed = 0;
    update_date(s);
    sweep(s);
    if (s->accept_paused) {
        s->accept_paused = 0;
        arm_accept(s);
    }
    arm_tick(s);
}

static void deliver_one(shard *s, shard_reply *r)
{
    conn *c = NULL;
    if (r->ref.shard == s->index && r->ref.slot < s->max)
        c = &s->conns[r->ref.slot];
    if (c == NULL || c->fd < 0 || c->gen != r->ref.gen || c->st != C_WAIT) {
        r->release(r);
        return;
    }
    start_response(s, c, &r->resp, r);
    if (c->fd >= 0)
        ensure_recv(s, c);
}

static void on_event(shard *s)
{
    s->ev_armed = 0;
    if (atomic_load(&s->stop_req)) {
        s->stopping = 1;
        return;     /* pending replies are released by shard_destroy */
    }
    pthread_mutex_lock(&s->mu);
    shard_reply *list = s->pend_head;
    s->pend_head = s->pend_tail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (list != NULL) {
        shard_reply *next = list->next;
        list->next = NULL;
        deliver_one(s, list);
        list = next;
    }
    arm_event(s);
}

static void on_cqe(shard *s, const struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    enum op op = (enum op)(ud >> 56);
    s->inflight--;
    switch (op) {
    case OP_ACCEPT:
        on_accept(s, cqe->res);
        break;
    case OP_TICK:
        on_tick(s);
        break;
    case OP_EVENT:
        on_event(s);
        break;
    case OP_RECV:
    case OP_SEND: {
        uint32_t slot = (uint32_t)(ud >> 32) & SHARD_SLOT_MAX;
        uint32_t gen = (uint32_t)ud;
        if (slot >= s->max)
            break;
        conn *c = &s->conns[slot];
        if (op == OP_RECV)
            c->recv_busy = 0;
        else
            c->send_busy = 0;
        if (c->fd < 0 || c->gen != gen) {
            if (c->st == C_CLOSING && !c->recv_busy && !c->send_busy)
                conn_finalize(s, c);
            break;
        }
        if (op == OP_RECV)
            on_recv(s, c, cqe->res);
        else
            on_send(s, c, cqe->res);
        break;
    }
    default:
        break;      /* OP_CANCEL */
    }
}

static void close_all(shard *s);

static int resolve_host(const char *host, uint16_t port, struct sockaddr_storage *ss,
                        socklen_t *len)
{
    char h[64];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n >= sizeof(h))
        return -EINVAL;
    memcpy(h, host, n);
    h[n] = '\0';
    if (n == 0 || strcmp(h, "*") == 0)
        strcpy(h, "0.0.0.0");
    else if (strcmp(h, "localhost") == 0)
        strcpy(h, "127.0.0.1");

    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(port);
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(port);
        *len = sizeof(*a6);
        return 0;
    }
    return -EINVAL;
}

static int open_listener(const config *cfg, int *fd_out, uint16_t *port_out)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd = -1, one = 1;
    int rc = resolve_host(cfg->listen_host, cfg->listen_port, &ss, &len);
    if (rc != 0)
        goto out;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&ss, len) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
        rc = -errno;
        goto out;
    }
    len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        rc = -errno;
        goto out;
    }
    *port_out = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port);
out:
    if (rc == 0) {
        *fd_out = fd;
        fd = -1;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

int shard_create(const config *cfg, uint32_t index, shard_handler_fn fn, void *ctx,
                 shard **out)
{
    shard *s = NULL;
    int rc = 0;

    if (cfg == NULL || fn == NULL || out == NULL || cfg->max_conns < 1 ||
        (uint32_t)cfg->max_conns > SHARD_SLOT_MAX) {
        rc = -EINVAL;
        goto out;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    s->lfd = s->efd = -1;
    s->index = index;
    s->fn = fn;
    s->ctx = ctx;
    s->lim.max_url = cfg->max_url;
    s->lim.max_header = cfg->max_header;
    s->lim.max_body = cfg->max_body;
    s->rbuf_max = cfg->max_url + cfg->max_header + cfg->max_body + RBUF_SLACK;
    s->header_to_ms = cfg->header_timeout_ms;
    s->idle_to_ms = cfg->idle_timeout_ms;
    /* Ticks at a quarter of the shortest timeout: a timeout fires at most 25% late. */
    uint64_t shortest = TICK_MAX_MS * 4;
    if (s->header_to_ms > 0 && (uint64_t)s->header_to_ms < shortest)
        shortest = (uint64_t)s->header_to_ms;
    if (s->idle_to_ms > 0 && (uint64_t)s->idle_to_ms < shortest)
        shortest = (uint64_t)s->idle_to_ms;
    s->tick_ms = shortest / 4 < TICK_MIN_MS ? TICK_MIN_MS : shortest / 4;
    s->max = (uint32_t)cfg->max_conns;
    atomic_init(&s->nused, 0);
    atomic_init(&s->stop_req, 0);

    s->conns = calloc(s->max, sizeof(*s->conns));
    s->freelist = calloc(s->max, sizeof(*s->freelist));
    if (s->conns == NULL || s->freelist == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < s->max; i++) {
        s->conns[i].fd = -1;
        s->freelist[s->max - 1 - i] = i;
    }
    s->nfree = s->max;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        rc = -ENOMEM;
        goto out;
    }
    s->mu_ok = 1;
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        rc = -errno;
        goto out;
    }
    rc = open_listener(cfg, &s->lfd, &s->port);
    if (rc != 0)
        goto out;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_COOP_TASKRUN;
    rc = io_uring_queue_init_params(SHARD_RING_ENTRIES, &s->ring, &p);
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof(p));
        rc = io_uring_queue_init_params(SHARD_RING_ENTRIES, &s->ring, &p);
    }
    if (rc != 0)
        goto out;
    s->ring_ok = 1;
    s->now = mono_ms();
    update_date(s);
out:
    if (rc == 0) {
        *out = s;
        s = NULL;
    }
    shard_destroy(s);
    return rc;
}

void shard_set_flush(shard *s, shard_flush_fn fn)
{
    s->flush = fn;
}

void shard_set_reject(shard *s, shard_reject_fn fn)
{
    s->on_reject = fn;
}

int shard_run(shard *s)
{
    int rc = 0;
    s->now = mono_ms();
    update_date(s);
    arm_accept(s);
    arm_event(s);
    arm_tick(s);
    while (!s->stopping) {
        int r = io_uring_submit_and_wait(&s->ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            rc = r;
            break;
        }
        s->now = mono_ms();
        update_date(s);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&s->ring, head, cqe) {
            on_cqe(s, cqe);
            seen++;
        }
        io_uring_cq_advance(&s->ring, seen);
        if (s->flush != NULL)
            s->flush(s->ctx, s->index);
        if (atomic_load(&s->stop_req))
            s->stopping = 1;
    }
    /* Tear down here, on the thread that submitted everything, so that no io_uring work
     * is left to interrupt the thread that later calls shard_destroy. */
    s->stopping = 1;
    close_all(s);
    return rc;
}

void shard_stop(shard *s)
{
    uint64_t one = 1;
    atomic_store(&s->stop_req, 1);
    if (write(s->efd, &one, sizeof(one)) < 0) {
        /* Counter saturated: a wake-up is already pending, and the flag is set. */
    }
}

void shard_deliver(shard *s, shard_reply *list)
{
    uint64_t one = 1;
    if (list == NULL)
        return;
    shard_reply *tail = list;
    while (tail->next != NULL)
        tail = tail->next;
    pthread_mutex_lock(&s->mu);
    if (s->pend_tail != NULL)
        s->pend_tail->next = list;
    else
        s->pend_head = list;
    s->pend_tail = tail;
    pthread_mutex_unlock(&s->mu);
    if (write(s->efd, &one, sizeof(one)) < 0) {
        /* Counter saturated: a wake-up is already pending. */
    }
}

/* Cancels whatever is still in the kernel and waits (bounded) for it, so no buffer is freed
 * while the kernel may still use it. Completions only free slots: every connection has been
 * closed and s->stopping keeps anything from being re-armed. */
static void drain_ring(shard *s)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    if (sqe != NULL) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, 0));
    }
    io_uring_submit(&s->ring);
    while (s->inflight > 0) {
        struct __kernel_timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
        struct io_uring_cqe *cqe;
        int r = io_uring_wait_cqe_timeout(&s->ring, &cqe, &ts);
        if (r == -EINTR)
            continue;
        if (r < 0)
            break;
        on_cqe(s, cqe);
        io_uring_cqe_seen(&s->ring, cqe);
    }
}

/* Closes every connection and waits for the kernel to let go of their buffers. Idempotent:
 * a second call finds nothing open and nothing in flight. */
static void close_all(shard *s)
{
    for (uint32_t i = 0; i < s->max; i++)
        conn_close(s, &s->conns[i]);
    if (s->inflight > 0)
        drain_ring(s);
}

void shard_destroy(shard *s)
{
    if (s == NULL)
        return;
    s->stopping = 1;
    if (s->ring_ok) {
        close_all(s);
        io_uring_queue_exit(&s->ring);
    }
    if (s->conns != NULL) {
        for (uint32_t i = 0; i < s->max; i++) {
            conn *c = &s->conns[i];
            if (c->fd >= 0)
                close(c->fd);
            if (c->reply != NULL)
                c->reply->release(c->reply);
            free(c->rbuf);
            free(c->wbuf);
        }
    }
    shard_reply *r = s->pend_head;
    while (r != NULL) {
        shard_reply *next = r->next;
        r->release(r);
        r = next;
    }
    if (s->lfd >= 0)
        close(s->lfd);
    if (s->efd >= 0)
        close(s->efd);
    if (s->mu_ok)
        pthread_mutex_destroy(&s->mu);
    free(s->conns);
    free(s->freelist);
    free(s);
}

uint16_t shard_port(const shard *s)
{
    return s->port;
}

size_t shard_conn_count(const shard *s)
{
    return atomic_load(&s->nused);
}
