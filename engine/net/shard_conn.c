/* shard: one connection's life on its shard: open, receive into the growing read buffer,
 * parse and dispatch buffered requests in order (pipelining), close and finalize once the
 * kernel holds nothing of the slot. Runs on the shard's thread only. */
#include "engine/net/shard.h"
#include "engine/net/shard_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF_MIN_FREE      2048
#define WBUF_KEEP          (16 * 1024)    /* larger send buffers are freed at close */

/* Returns the slot to the free list once the kernel holds nothing of it any more. */
void shard_conn_finalize(shard *s, conn *c)
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
    tls_conn_destroy(c->tls);
    c->tls = NULL;
    c->st = C_FREE;
    s->freelist[s->nfree++] = slot_of(s, c);
    atomic_fetch_sub(&s->nused, 1);
    /* A freed descriptor may be what an EMFILE pause was waiting for. */
    s->accept_paused = 0;
    shard_arm_accept(s);
}

/* Errors on one connection end that connection only. In-flight operations are cancelled;
 * their completions arrive with the old generation and only free the slot. */
void shard_conn_close(shard *s, conn *c)
{
    if (c->fd < 0)
        return;
    uint32_t slot = slot_of(s, c);
    if (c->recv_busy)
        shard_cancel_op(s, ud_pack(OP_RECV, slot, c->gen));
    if (c->send_busy)
        shard_cancel_op(s, ud_pack(OP_SEND, slot, c->gen));
    close(c->fd);
    c->fd = -1;
    c->gen++;
    c->st = C_CLOSING;
    if (!c->recv_busy && !c->send_busy)
        shard_conn_finalize(s, c);
}

int shard_rbuf_reserve(shard *s, conn *c, size_t want_free)
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

size_t shard_rbuf_want(const conn *c)
{
    size_t want = RBUF_MIN_FREE;
    if (c->head_ok && c->head_len + c->body_len > c->rlen - c->rpos)
        want = c->head_len + c->body_len - (c->rlen - c->rpos);
    return want;
}

/* Keeps one recv outstanding while there is room: it also notices a client that goes away
 * while its request is with the app. The buffer moves only here, when no recv is running. */
void shard_ensure_recv(shard *s, conn *c)
{
    if (c->tls != NULL) {
        shard_tls_ensure_recv(s, c);
        return;
    }
    if (c->fd < 0 || c->recv_busy || c->peer_eof || s->stopping)
        return;
    if (c->st == C_LINGER)
        c->rpos = c->rlen = 0;
    if (shard_rbuf_reserve(s, c, shard_rbuf_want(c)) != 0) {
        shard_conn_close(s, c);
        return;
    }
    if (c->rcap == c->rlen)
        return;     /* full of pipelined input: read again once the app consumed some */
    struct io_uring_sqe *sqe = shard_get_sqe(s);
    if (sqe == NULL) {
        shard_conn_close(s, c);
        return;
    }
    io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_RECV, slot_of(s, c), c->gen));
    c->recv_busy = 1;
}

static void dispatch(shard *s, conn *c, const http_request *req, const uint8_t *body)
{
    conn_ref ref = { .shard = s->index, .slot = slot_of(s, c), .gen = c->gen,
                     .role = s->lst[c->listener].role };
    http_response resp;
    memset(&resp, 0, sizeof(resp));
    c->keep_alive = req->keep_alive;
    int v = s->fn(s->ctx, req, body, c->body_len, ref, c->peer, &resp);
    if (v == APP_DEFER) {
        c->st = C_WAIT;
        c->wait_start = s->now;
        return;
    }
    if (v != APP_RESPOND) {
        shard_send_error(s, c, 500);
        return;
    }
    shard_start_response(s, c, &resp, NULL);
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
void shard_process(shard *s, conn *c)
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
                shard_send_error(s, c, -rc);
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
            shard_send_error(s, c, 500);
            break;
        }
        dispatch(s, c, &req, (const uint8_t *)b + c->head_len);
        c->rpos += c->head_len + c->body_len;
        c->head_ok = 0;
        c->scanned = c->parsed_at = 0;
        c->req_start = 0;
    }
    if (c->st == C_READ && c->peer_eof)
        shard_conn_close(s, c);
}

void shard_on_recv(shard *s, conn *c, int res)
{
    if (res == -EINTR || res == -EAGAIN) {
        shard_ensure_recv(s, c);
        return;
    }
    if (res == 0 && c->st == C_SEND) {
        /* Half-closed: finish what was asked, including pipelined requests, then close. */
        c->peer_eof = 1;
        return;
    }
    if (res <= 0) {
        shard_conn_close(s, c);
        return;
    }
    if (c->tls != NULL) {
        shard_tls_on_recv(s, c, (size_t)res);
        return;
    }
    if (c->st == C_LINGER) {
        c->rpos = c->rlen = 0;
    } else {
        c->rlen += (size_t)res;
        if (c->st == C_READ)
            shard_process(s, c);
    }
    shard_ensure_recv(s, c);
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

void shard_conn_open(shard *s, int fd, shard_listener *l)
{
    tls_conn *t = NULL;
    if (l->tls != NULL && tls_conn_create(l->tls, &t) != 0) {
        close(fd);      /* out of memory: this connection's problem only */
        return;
    }
    uint32_t slot = s->freelist[--s->nfree];
    conn *c = &s->conns[slot];
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->tls = t;
    c->listener = (uint8_t)(l - s->lst);
    c->tls_bye = 0;
    c->fd = fd;
    c->st = C_READ;
    c->recv_busy = c->send_busy = c->close_after = c->keep_alive = 0;
    c->peer_eof = c->head_ok = 0;
    c->rpos = c->rlen = 0;
    c->scanned = c->parsed_at = c->head_len = c->body_len = 0;
    c->reply = NULL;
    /* A handshake is bounded by the header timeout from the accept on. */
    c->req_start = t != NULL ? s->now : 0;
    c->last_active = s->now;
    format_peer(&l->addr, c->peer, sizeof(c->peer));
    atomic_fetch_add(&s->nused, 1);
    shard_ensure_recv(s, c);
}
