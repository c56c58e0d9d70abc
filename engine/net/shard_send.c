/* shard: writing responses: the status line and headers serialized into the connection's
 * write buffer, the body sent from it or from a deferred reply, partial sends resumed, and what
 * follows a sent response (next pipelined request, or linger and close). */
#include "engine/net/shard.h"
#include "engine/net/shard_internal.h"

#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define LINGER_MS          2000           /* drain after an error reply before closing */

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

static void submit_send(shard *s, conn *c)
{
    struct io_uring_sqe *sqe = shard_get_sqe(s);
    if (sqe == NULL) {
        shard_conn_close(s, c);
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
void shard_start_response(shard *s, conn *c, const http_response *resp, shard_reply *reply)
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
            shard_conn_close(s, c);
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
    if (c->tls != NULL)
        shard_tls_send(s, c);
    else
        submit_send(s, c);
}

void shard_send_error(shard *s, conn *c, int status)
{
    const char *text = error_text(status);
    http_response r = {
        .status = status, .content_type = "text/plain", .body = (const uint8_t *)text,
        .body_len = strlen(text), .close = 1,
    };
    c->keep_alive = 0;
    if (s->on_reject != NULL)
        s->on_reject(s->ctx, status, text, c->peer);
    shard_start_response(s, c, &r, NULL);
}

void shard_wait_expired(shard *s, conn *c)
{
    static const char text[] = "no answer within the request deadline, retry later\n";
    conn_ref ref = { .shard = s->index, .slot = slot_of(s, c), .gen = c->gen,
                     .role = s->lst[c->listener].role };
    unsigned after = s->on_expire != NULL ? s->on_expire(s->ctx, ref, c->peer) : 1;
    char hdr[40];
    snprintf(hdr, sizeof(hdr), "Retry-After: %u\r\n", after);
    /* close: the connection never waits again under this generation, so the late reply
     * cannot be mistaken for the answer to a later request on it. */
    http_response r = {
        .status = 503, .content_type = "text/plain", .body = (const uint8_t *)text,
        .body_len = sizeof(text) - 1, .extra_headers = hdr, .close = 1,
    };
    c->keep_alive = 0;
    shard_start_response(s, c, &r, NULL);
}

void shard_begin_linger(shard *s, conn *c)
{
    /* Closing with unread input would send RST and could destroy the error reply before the
     * client reads it; shut the write side and drain for a while instead. */
    shutdown(c->fd, SHUT_WR);
    c->st = C_LINGER;
    c->linger_until = s->now + LINGER_MS;
}

void shard_on_send(shard *s, conn *c, int res)
{
    if (res <= 0) {
        shard_conn_close(s, c);
        return;
    }
    if (c->tls != NULL) {
        shard_tls_on_send(s, c, (size_t)res);
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
    shard_response_done(s, c);
}

void shard_response_done(shard *s, conn *c)
{
    if (c->reply != NULL) {
        shard_reply *r = c->reply;
        c->reply = NULL;
        r->release(r);
    }
    if (c->close_after) {
        if (c->peer_eof) {
            shard_conn_close(s, c);
            return;
        }
        shard_begin_linger(s, c);
    } else {
        c->st = C_READ;
        shard_process(s, c);
    }
    shard_ensure_recv(s, c);
}
