/* shard: a TLS connection. The same states as a plain one (shard_internal.h), with the
 * record layer in between: ciphertext is received into the tls_conn's input buffer, the
 * handshake runs first (C_READ, bounded by the header timeout from the accept), then records
 * are decrypted straight into the read buffer, where shard_process parses as for plain
 * HTTP. A response's plaintext (c->iov) is encrypted a chunk at a time and its ciphertext
 * sent from the tls_conn's output; OpenSSL's own output (tickets, alerts) goes out the same
 * way, whatever the state. With the key in the token the handshake may pause (TLS_ASYNC) while
 * a key thread signs: an io_uring poll on its wait fd (OP_TLS_ASYNC) resumes it, and input
 * arriving meanwhile waits in the tls_conn. Runs on the shard's thread only. */
#include "engine/net/shard.h"
#include "engine/net/shard_internal.h"
#include "engine/net/tls.h"

#include <liburing.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#define TLS_CHUNK (64 * 1024)      /* plaintext encrypted ahead of the socket */

static const char plain_refusal[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 34\r\n"
    "Connection: close\r\n\r\nthis port speaks HTTPS, not HTTP\r\n";

/* Encrypts up to TLS_CHUNK bytes of what is left of the response; once all of it is, queues
 * close_notify if the connection ends after it. */
static int encrypt_more(conn *c)
{
    size_t budget = TLS_CHUNK;
    while (budget > 0 && c->iov_idx < c->iov_cnt) {
        struct iovec *v = &c->iov[c->iov_idx];
        size_t n = v->iov_len < budget ? v->iov_len : budget;
        if (tls_write(c->tls, v->iov_base, n) != 0)
            return -1;
        v->iov_base = (char *)v->iov_base + n;
        v->iov_len -= n;
        budget -= n;
        if (v->iov_len == 0)
            c->iov_idx++;
    }
    if (c->iov_idx == c->iov_cnt && c->close_after && !c->tls_bye) {
        tls_shutdown(c->tls);
        c->tls_bye = 1;
    }
    return 0;
}

/* Keeps up to two chunks of the response encrypted ahead of the socket, so the next one is
 * ready when a send completes. */
static int top_up(conn *c)
{
    int more = c->st == C_SEND && (c->iov_idx < c->iov_cnt || (c->close_after && !c->tls_bye));
    if (more && tls_out_pending(c->tls) < 2 * TLS_CHUNK)
        return encrypt_more(c);
    return 0;
}

void shard_tls_send(shard *s, conn *c)
{
    if (c->fd < 0)
        return;
    if (!c->send_busy) {
        if (top_up(c) != 0) {
            shard_conn_close(s, c);
            return;
        }
        size_t n;
        const uint8_t *p = tls_out_next(c->tls, &n);
        if (n == 0) {
            if (c->st == C_SEND && c->iov_idx == c->iov_cnt && (!c->close_after || c->tls_bye))
                shard_response_done(s, c);
            return;
        }
        struct io_uring_sqe *sqe = shard_get_sqe(s);
        if (sqe == NULL) {
            shard_conn_close(s, c);
            return;
        }
        io_uring_prep_send(sqe, c->fd, p, n, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, ud_pack(OP_SEND, slot_of(s, c), c->gen));
        c->send_busy = 1;
    }
    if (top_up(c) != 0)
        shard_conn_close(s, c);
}

void shard_tls_on_send(shard *s, conn *c, size_t res)
{
    tls_out_sent(c->tls, res);
    c->last_active = s->now;
    shard_tls_send(s, c);
}

/* The handshake failed: counted by the reject hook, whatever OpenSSL queued (an alert) or
 * the plain-text refusal for plain HTTP sent, then the connection lingers and closes like
 * one that got an HTTP error. */
static void handshake_failed(shard *s, conn *c, int rc, const char *why)
{
    if (s->on_reject != NULL)
        s->on_reject(s->ctx, 400, why, c->peer);
    if (rc == TLS_PLAIN && tls_out_raw(c->tls, plain_refusal, sizeof(plain_refusal) - 1) != 0) {
        shard_conn_close(s, c);
        return;
    }
    c->keep_alive = 0;
    c->close_after = 1;
    c->tls_bye = 1;         /* no close_notify after a failed handshake */
    c->iov_idx = c->iov_cnt = 0;
    c->reply = NULL;
    c->st = C_SEND;
    c->last_active = s->now;
    shard_tls_send(s, c);
    shard_tls_ensure_recv(s, c);
}

void shard_tls_handshake_timeout(shard *s, conn *c)
{
    if (s->on_reject != NULL)
        s->on_reject(s->ctx, 408, "tls: handshake not completed in time", c->peer);
    shard_conn_close(s, c);
}

/* The handshake paused for the token's key threads: a poll on its wait fd resumes it. */
static void arm_async(shard *s, conn *c)
{
    int fd = tls_conn_async_fd(c->tls);
    struct io_uring_sqe *sqe = fd >= 0 ? shard_get_sqe(s) : NULL;
    if (sqe == NULL) {
        shard_conn_close(s, c);
        return;
    }
    io_uring_prep_poll_add(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_TLS_ASYNC, slot_of(s, c), c->gen));
}

/* Runs the handshake over the buffered input. 0, or -1 when the connection failed it or
 * was closed. */
static int advance(shard *s, conn *c)
{
    char why[192];
    int rc = tls_handshake(c->tls, why, sizeof(why));
    if (rc == TLS_DONE) {
        c->req_start = 0;       /* the header timeout starts again with the request */
    } else if (rc == TLS_ASYNC) {
        arm_async(s, c);
    } else if (rc != TLS_AGAIN) {
        handshake_failed(s, c, rc, why);
        return -1;
    }
    return c->fd >= 0 ? 0 : -1;
}

void shard_tls_on_recv(shard *s, conn *c, size_t res)
{
    tls_in_commit(c->tls, res);
    if (c->st == C_LINGER || (!tls_conn_ready(c->tls) && c->st != C_READ)) {
        tls_in_discard(c->tls);     /* draining, or after a failed handshake */
    } else if (!tls_conn_ready(c->tls) && tls_conn_async_fd(c->tls) < 0) {
        if (advance(s, c) != 0)
            return;
    }   /* else paused for the key threads: the input waits for the resumed handshake */
    shard_tls_ensure_recv(s, c);
}

void shard_tls_on_async(shard *s, uint64_t ud, int res)
{
    uint32_t slot = (uint32_t)(ud >> 32) & SHARD_SLOT_MAX;
    if (slot >= s->max)
        return;
    conn *c = &s->conns[slot];
    if (c->fd < 0 || c->gen != (uint32_t)ud || c->tls == NULL || tls_conn_async_fd(c->tls) < 0)
        return;
    if (res < 0) {
        shard_conn_close(s, c);     /* cancelled (shutdown) or the poll failed */
        return;
    }
    if (advance(s, c) == 0)
        shard_tls_ensure_recv(s, c);
}

/* Decrypts buffered records into the read buffer while it has room, and parses them in
 * C_READ. Returns 0, or -1 when the connection was closed. */
static int decrypt(shard *s, conn *c)
{
    char why[192];
    int got_any = 0;
    while (!c->peer_eof) {
        if (shard_rbuf_reserve(s, c, shard_rbuf_want(c)) != 0) {
            shard_conn_close(s, c);
            return -1;
        }
        if (c->rcap == c->rlen)
            break;      /* full of pipelined input: the ciphertext waits */
        size_t got = 0;
        int rc = tls_read(c->tls, c->rbuf + c->rlen, c->rcap - c->rlen, &got, why, sizeof(why));
        if (rc == TLS_DONE) {
            c->rlen += got;
            got_any = 1;
        } else if (rc == TLS_CLOSED) {
            c->peer_eof = 1;
        } else if (rc == TLS_AGAIN) {
            break;
        } else {
            shard_conn_close(s, c);     /* a bad record ends the connection, as a reset does */
            return -1;
        }
    }
    if ((got_any || c->peer_eof) && c->st == C_READ)
        shard_process(s, c);
    if (c->fd >= 0 && c->peer_eof && c->st == C_WAIT) {
        shard_conn_close(s, c);     /* as plain: a client gone before its reply */
        return -1;
    }
    return c->fd >= 0 ? 0 : -1;
}

void shard_tls_ensure_recv(shard *s, conn *c)
{
    if (c->fd < 0)
        return;
    if (c->st != C_LINGER && tls_conn_ready(c->tls) && decrypt(s, c) != 0)
        return;
    shard_tls_send(s, c);       /* what the handshake or the reads queued */
    if (c->fd < 0 || c->recv_busy || c->peer_eof || s->stopping)
        return;
    if (c->st == C_LINGER)
        tls_in_discard(c->tls);
    size_t room;
    uint8_t *p = tls_in_space(c->tls, &room);
    if (room == 0)
        return;     /* ciphertext waits for room in the read buffer */
    struct io_uring_sqe *sqe = shard_get_sqe(s);
    if (sqe == NULL) {
        shard_conn_close(s, c);
        return;
    }
    io_uring_prep_recv(sqe, c->fd, p, room, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_RECV, slot_of(s, c), c->gen));
    c->recv_busy = 1;
}
