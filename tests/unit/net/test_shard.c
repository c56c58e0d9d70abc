/* Tests for engine/net/shard.c: a real shard on 127.0.0.1, an ephemeral port, a test handler,
 * and plain blocking client sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/common/config.h"
#include "engine/net/shard.h"

#define BIG_LEN (3u << 20)

typedef struct srv {
    shard          *s;
    pthread_t       th;
    int             run_rc;
    uint16_t        port;
    atomic_int      ncalls;
    atomic_int      deferred;      /* number of APP_DEFER verdicts so far */
    atomic_int      loops;         /* shard loop iterations (the flush hook runs once each) */
    atomic_int      rejects;       /* requests the shard refused itself (reject hook) */
    atomic_int      last_reject;   /* status of the last one */
    atomic_int      expired;       /* deferred requests past the wait limit (expire hook) */
    conn_ref        ref;           /* of the last deferred request */
    pthread_mutex_t mu;
    char            peer[64];
    char            out[256];
    uint8_t        *echo;
    uint8_t        *big;
} srv;

typedef struct test_reply {
    shard_reply  r;
    atomic_int  *released;
} test_reply;

static void reply_release(shard_reply *r)
{
    test_reply *t = (test_reply *)r;
    atomic_fetch_add(t->released, 1);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int path_is(const http_request *req, const char *p)
{
    return req->path.n == strlen(p) && memcmp(req->path.p, p, req->path.n) == 0;
}

static int handler(void *ctx, const http_request *req, const uint8_t *body, size_t body_len,
                   conn_ref ref, const char *peer, http_response *resp)
{
    srv *t = ctx;
    atomic_fetch_add(&t->ncalls, 1);
    pthread_mutex_lock(&t->mu);
    snprintf(t->peer, sizeof(t->peer), "%s", peer);
    pthread_mutex_unlock(&t->mu);

    resp->status = 200;
    resp->content_type = "text/plain";
    if (path_is(req, "/defer")) {
        pthread_mutex_lock(&t->mu);
        t->ref = ref;
        pthread_mutex_unlock(&t->mu);
        atomic_fetch_add(&t->deferred, 1);
        return APP_DEFER;
    }
    if (path_is(req, "/echo")) {
        memcpy(t->echo, body, body_len);
        resp->content_type = "application/octet-stream";
        resp->body = t->echo;
        resp->body_len = body_len;
        return APP_RESPOND;
    }
    if (path_is(req, "/big")) {
        resp->body = t->big;
        resp->body_len = BIG_LEN;
        return APP_RESPOND;
    }
    /* Anything else answers its own method and target, so order can be checked. */
    int n = snprintf(t->out, sizeof(t->out), "%.*s %.*s body=%zu\n", (int)req->method.n,
                     req->method.p, (int)req->target.n, req->target.p, body_len);
    resp->body = (const uint8_t *)t->out;
    resp->body_len = (size_t)n;
    resp->extra_headers = "X-Test: 1\r\n";
    resp->close = path_is(req, "/close");
    return APP_RESPOND;
}

static void on_flush(void *ctx, uint32_t index)
{
    srv *t = ctx;
    (void)index;
    atomic_fetch_add(&t->loops, 1);
}

static void on_reject(void *ctx, int status, const char *reason, const char *peer)
{
    srv *t = ctx;
    (void)reason;
    (void)peer;
    atomic_store(&t->last_reject, status);
    atomic_fetch_add(&t->rejects, 1);
}

static unsigned on_expire(void *ctx, conn_ref ref, const char *peer)
{
    srv *t = ctx;
    (void)ref;
    (void)peer;
    atomic_fetch_add(&t->expired, 1);
    return 7;
}

static void *run_thread(void *arg)
{
    srv *t = arg;
    t->run_rc = shard_run(t->s);
    return NULL;
}

static void base_config(config *cfg)
{
    config_defaults(cfg);
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = 0;
    cfg->header_timeout_ms = 3000;
    cfg->idle_timeout_ms = 5000;
    cfg->max_conns = 16;
    cfg->max_body = 8u << 20;
}

static srv *srv_start(const config *cfg)
{
    srv *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    pthread_mutex_init(&t->mu, NULL);
    t->echo = malloc(cfg->max_body + 1);
    t->big = malloc(BIG_LEN);
    assert_non_null(t->echo);
    assert_non_null(t->big);
    for (size_t i = 0; i < BIG_LEN; i++)
        t->big[i] = (uint8_t)(i * 7 + i / 251);
    assert_int_equal(shard_create(cfg, 0, handler, t, &t->s), 0);
    t->port = shard_port(t->s);
    assert_true(t->port != 0);
    shard_set_flush(t->s, on_flush);
    shard_set_reject(t->s, on_reject);
    shard_set_expire(t->s, on_expire);
    assert_int_equal(pthread_create(&t->th, NULL, run_thread, t), 0);
    return t;
}

static void srv_stop(srv *t)
{
    shard_stop(t->s);
    pthread_join(t->th, NULL);
    assert_int_equal(t->run_rc, 0);
    shard_destroy(t->s);
    pthread_mutex_destroy(&t->mu);
    free(t->echo);
    free(t->big);
    free(t);
}

static srv *srv_default(void)
{
    config cfg;
    base_config(&cfg);
    return srv_start(&cfg);
}

/* --- client side -------------------------------------------------------------------- */

typedef struct client {
    int    fd;
    char  *buf;
    size_t len, cap;
} client;

typedef struct response {
    int      status;
    char     head[4096];
    uint8_t *body;
    size_t   body_len;
} response;

/* rcvbuf > 0 shrinks the receive window so that big responses are sent in parts. */
static void client_open_rcvbuf(client *c, uint16_t port, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    if (rcvbuf > 0)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct timeval tv = { 5, 0 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A blocking connect may return EINTR when an io_uring ring this thread created is torn
     * down (its task work interrupts the call): the connection then completes on its own. */
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        assert_int_equal(errno, EINTR);
        struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
        int err = 0;
        socklen_t elen = sizeof(err);
        int pr;
        while ((pr = poll(&pfd, 1, 5000)) < 0 && errno == EINTR)
            ;
        assert_int_equal(pr, 1);
        assert_int_equal(getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen), 0);
        assert_int_equal(err, 0);
    }
    c->cap = 1 << 16;
    c->buf = malloc(c->cap);
    assert_non_null(c->buf);
}

static void client_open(client *c, uint16_t port)
{
    client_open_rcvbuf(c, port, 0);
}

static void client_close(client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

/* Returns 0 when everything was written (the server may close early: then -1). */
static int client_send(client *c, const void *p, size_t n)
{
    const char *b = p;
    while (n > 0) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static void client_sends(client *c, const char *s)
{
    assert_int_equal(client_send(c, s, strlen(s)), 0);
}

/* Reads one complete response (head + Content-Length body). 0, or -1 on EOF/timeout. */
static int client_response(client *c, response *r)
{
    for (;;) {
        char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (e != NULL) {
            size_t hlen = (size_t)(e + 4 - c->buf);
            assert_true(hlen < sizeof(r->head));
            memcpy(r->head, c->buf, hlen);
            r->head[hlen] = '\0';
            assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
            const char *cl = strcasestr(r->head, "\r\nContent-Length: ");
            assert_non_null(cl);
            size_t blen = strtoul(cl + 18, NULL, 10);
            if (c->len >= hlen + blen) {
                r->body = malloc(blen + 1);
                assert_non_null(r->body);
                memcpy(r->body, c->buf + hlen, blen);
                r->body[blen] = '\0';
                r->body_len = blen;
                memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
                c->len -= hlen + blen;
                return 0;
            }
            if (c->cap < hlen + blen) {
                c->cap = hlen + blen;
                c->buf = realloc(c->buf, c->cap);
                assert_non_null(c->buf);
            }
        }
        if (c->len == c->cap) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
            assert_non_null(c->buf);
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR)
            continue;       /* io_uring task work of a torn-down ring can interrupt us */
        if (n <= 0) {
            print_message("client: recv %zd (%s) with %zu bytes buffered\n", n,
                          n < 0 ? strerror(errno) : "EOF", c->len);
            return -1;
        }
        c->len += (size_t)n;
    }
}

static void response_free(response *r)
{
    free(r->body);
    r->body = NULL;
}

/* Expects one response with this status whose body contains want (if not NULL). */
static void expect(client *c, int status, const char *want)
{
    response r;
    assert_int_equal(client_response(c, &r), 0);
    assert_int_equal(r.status, status);
    if (want != NULL && strstr((const char *)r.body, want) == NULL)
        fail_msg("body '%s' lacks '%s'", (const char *)r.body, want);
    response_free(&r);
}

/* 1 if the server closed the connection within ms (any unread bytes discarded). */
static int closed_within(client *c, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    char tmp[4096];
    while (now_ms() < end) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int pr = poll(&p, 1, (int)(end - now_ms()));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return 0;
        ssize_t n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 1;
    }
    return 0;
}

/* Reads until the server closes: the number of bytes that came before the close, or -1 when
 * it did not close within ms (a deadline for a hung test, not a measurement). */
static long bytes_before_close(client *c, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    char tmp[4096];
    long total = 0;
    while (now_ms() < end) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int pr = poll(&p, 1, (int)(end - now_ms()));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return -1;
        ssize_t n = recv(c->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return total;
        if (n > 0)
            total += n;
    }
    return -1;
}

static int readable_within(client *c, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    for (;;) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        uint64_t now = now_ms();
        int pr = poll(&p, 1, now >= end ? 0 : (int)(end - now));
        if (pr < 0 && errno == EINTR)
            continue;
        return pr > 0;
    }
}

static int wait_for(atomic_int *v, int want, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (atomic_load(v) < want) {
        if (now_ms() > end)
            return 0;
        sleep_ms(2);
    }
    return 1;
}

static int wait_conns(shard *s, size_t want, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (shard_conn_count(s) != want) {
        if (now_ms() > end)
            return 0;
        sleep_ms(2);
    }
    return 1;
}

/* --- tests -------------------------------------------------------------------------- */

static void test_get_and_post(void **state)
{
    srv *t = srv_default();
    client c;
    client_open(&c, t->port);
    client_sends(&c, "GET /scep?operation=GetCACaps HTTP/1.1\r\nHost: x\r\n\r\n");
    response r;
    assert_int_equal(client_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body, "GET /scep?operation=GetCACaps body=0\n");
    assert_non_null(strstr(r.head, "\r\nContent-Type: text/plain\r\n"));
    assert_non_null(strstr(r.head, "\r\nConnection: keep-alive\r\n"));
    assert_non_null(strstr(r.head, "\r\nX-Test: 1\r\n"));
    assert_non_null(strstr(r.head, "\r\nDate: "));
    response_free(&r);

    /* The peer string is the client's own address. */
    struct sockaddr_in me;
    socklen_t ml = sizeof(me);
    getsockname(c.fd, (struct sockaddr *)&me, &ml);
    char want[64];
    snprintf(want, sizeof(want), "127.0.0.1:%u", (unsigned)ntohs(me.sin_port));
    pthread_mutex_lock(&t->mu);
    assert_string_equal(t->peer, want);
    pthread_mutex_unlock(&t->mu);

    /* A POST body larger than the initial read buffer, sent in two writes. */
    size_t n = 100000;
    char *req = malloc(n + 128);
    assert_non_null(req);
    int hl = snprintf(req, 128, "POST /echo HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n);
    for (size_t i = 0; i < n; i++)
        req[hl + i] = (char)('a' + i % 26);
    assert_int_equal(client_send(&c, req, (size_t)hl + 10), 0);
    sleep_ms(20);
    assert_int_equal(client_send(&c, req + hl + 10, n - 10), 0);
    assert_int_equal(client_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, n);
    assert_memory_equal(r.body, req + hl, n);
    assert_non_null(strstr(r.head, "Content-Type: application/octet-stream\r\n"));
    response_free(&r);
    free(req);
    client_close(&c);
    srv_stop(t);
}

static void test_keepalive_sequential(void **state)
{
    srv *t = srv_default();
    client c;
    client_open(&c, t->port);
    for (int i = 0; i < 3; i++) {
        char req[64], want[64];
        snprintf(req, sizeof(req), "GET /n/%d HTTP/1.1\r\n\r\n", i);
        snprintf(want, sizeof(want), "GET /n/%d ", i);
        client_sends(&c, req);
        expect(&c, 200, want);
    }
    assert_int_equal(atomic_load(&t->ncalls), 3);
    assert_int_equal(shard_conn_count(t->s), 1);
    client_close(&c);
    assert_true(wait_conns(t->s, 0, 2000));
    srv_stop(t);
}

static void test_pipelined(void **state)
{
    srv *t = srv_default();
    client c;
    client_open(&c, t->port);
    client_sends(&c, "GET /n/1 HTTP/1.1\r\n\r\n"
                     "POST /n/2 HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"
                     "GET /n/3 HTTP/1.1\r\n\r\n");
    expect(&c, 200, "GET /n/1 body=0");
    expect(&c, 200, "POST /n/2 body=4");
    expect(&c, 200, "GET /n/3 body=0");
    client_close(&c);
    srv_stop(t);
}

static void test_half_close_pipelined(void **state)
{
    srv *t = srv_default();
    client c;
    client_open(&c, t->port);
    client_sends(&c, "GET /n/1 HTTP/1.1\r\n\r\nGET /n/2 HTTP/1.1\r\n\r\n");
    shutdown(c.fd, SHUT_WR);
    expect(&c, 200, "GET /n/1 ");
    expect(&c, 200, "GET /n/2 ");
    assert_true(closed_within(&c, 2000));
    client_close(&c);
    srv_stop(t);
}

static void test_connection_close(void **state)
{
    srv *t = srv_default();
    client c;
    response r;
    /* HTTP/1.0 without keep-alive. */
    client_open(&c, t->port);
    client_sends(&c, "GET /a HTTP/1.0\r\n\r\n");
    assert_int_equal(client_response(&c, &r), 0);
    assert_non_null(strstr(r.head, "Connection: close\r\n"));
    response_free(&r);
    assert_true(closed_within(&c, 2000));
    client_close(&c);
    /* HTTP/1.0 with keep-alive stays open. */
    client_open(&c, t->port);
    client_sends(&c, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_int_equal(client_response(&c, &r), 0);
    assert_non_null(strstr(r.head, "Connection: keep-alive\r\n"));
    response_free(&r);
    client_sends(&c, "GET /b HTTP/1.0\r\n\r\n");
    expect(&c, 200, "GET /b");
    client_close(&c);
    /* The app asks to close. */
    client_open(&c, t->port);
    client_sends(&c, "GET /close HTTP/1.1\r\n\r\n");
    assert_int_equal(client_response(&c, &r), 0);
    assert_non_null(strstr(r.head, "Connection: close\r\n"));
    response_free(&r);
    assert_true(closed_within(&c, 2000));
    client_close(&c);
    /* The client asks to close. */
    client_open(&c, t->port);
    client_sends(&c, "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n");
    expect(&c, 200, "GET /x");
    assert_true(closed_within(&c, 2000));
    client_close(&c);
    srv_stop(t);
}

typedef struct deliver_arg {
    shard       *s;
    shard_reply *list;
} deliver_arg;

static void *deliver_thread(void *arg)
{
    deliver_arg *d = arg;
    shard_deliver(d->s, d->list);
    return NULL;
}

static void deliver_from_thread(shard *s, shard_reply *list)
{
    pthread_t th;
    deliver_arg d = { s, list };
    assert_int_equal(pthread_create(&th, NULL, deliver_thread, &d), 0);
    pthread_join(th, NULL);
}

static void test_deferred(void **state)
{
    srv *t = srv_default();
    atomic_int released = 0;
    client c;
    client_open(&c, t->port);
    client_sends(&c, "GET /defer HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&t->deferred, 1, 2000));
    /* Nothing is sent until the reply comes. */
    assert_false(readable_within(&c, 100));

    test_reply tr;
    memset(&tr, 0, sizeof(tr));
    tr.released = &released;
    pthread_mutex_lock(&t->mu);
    tr.r.ref = t->ref;
    pthread_mutex_unlock(&t->mu);
    tr.r.resp.status = 200;
    tr.r.resp.content_type = "application/x-pki-message";
    tr.r.resp.body = (const uint8_t *)"deferred-body";
    tr.r.resp.body_len = 13;
    tr.r.release = reply_release;
    deliver_from_thread(t->s, &tr.r);

    response r;
    assert_int_equal(client_response(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal((char *)r.body, "deferred-body");
    assert_non_null(strstr(r.head, "Content-Type: application/x-pki-message\r\n"));
    response_free(&r);
    assert_true(wait_for(&released, 1, 2000));

    /* The connection goes on after a deferred reply. */
    client_sends(&c, "GET /after HTTP/1.1\r\n\r\n");
    expect(&c, 200, "GET /after");
    assert_int_equal(atomic_load(&released), 1);
    client_close(&c);
    srv_stop(t);
}

static void test_deferred_large_body(void **state)
{
    srv *t = srv_default();
    atomic_int released = 0;
    /* Larger than the kernel's send buffer limit plus a small receive window. */
    size_t blen = 8u << 20;
    uint8_t *body = malloc(blen);
    assert_non_null(body);
    for (size_t i = 0; i < blen; i++)
        body[i] = (uint8_t)(i ^ (i >> 9));
    client c;
    client_open_rcvbuf(&c, t->port, 16384);
    client_sends(&c, "GET /defer HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&t->deferred, 1, 2000));
    test_reply tr;
    memset(&tr, 0, sizeof(tr));
    tr.released = &released;
    pthread_mutex_lock(&t->mu);
    tr.r.ref = t->ref;
    pthread_mutex_unlock(&t->mu);
    tr.r.resp.status = 201;
    tr.r.resp.body = body;
    tr.r.resp.body_len = blen;
    tr.r.release = reply_release;
    shard_deliver(t->s, &tr.r);
    /* The body is still being sent: not released yet. */
    sleep_ms(100);
    assert_int_equal(atomic_load(&released), 0);
    response r;
    assert_int_equal(client_response(&c, &r), 0);
    assert_int_equal(r.status, 201);
    assert_null(strstr(r.head, "Content-Type"));
    assert_int_equal(r.body_len, blen);
    assert_memory_equal(r.body, body, blen);
    response_free(&r);
    assert_true(wait_for(&released, 1, 2000));
    client_close(&c);
    srv_stop(t);
    free(body);
}

static void test_large_immediate_response(void **state)
{
    srv *t = srv_default();
    client c;
    client_open(&c, t->port);
    client_sends(&c, "GET /big HTTP/1.1\r\n\r\nGET /n/after HTTP/1.1\r\n\r\n");
    sleep_ms(100);
    response r;
    assert_int_equal(client_response(&c, &r), 0);
    assert_int_equal(r.body_len, BIG_LEN);
    assert_memory_equal(r.body, t->big, BIG_LEN);
    response_free(&r);
    expect(&c, 200, "GET /n/after");
    client_close(&c);
    srv_stop(t);
}

static void test_stale_reply(void **state)
{
    srv *t = srv_default();
    atomic_int released = 0;
    client c;
    client_open(&c, t->port);
    client_sends(&c, "GET /defer HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&t->deferred, 1, 2000));
    conn_ref ref;
    pthread_mutex_lock(&t->mu);
    ref = t->ref;
    pthread_mutex_unlock(&t->mu);
    client_close(&c);
    /* The shard notices the client left and frees the slot... */
    assert_true(wait_conns(t->s, 0, 2000));

    /* ...so a reply for it, or for refs that never existed, is released unsent. A new
     * connection likely reuses the slot: the generation must tell them apart. */
    client c2;
    client_open(&c2, t->port);
    client_sends(&c2, "GET /defer HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&t->deferred, 2, 2000));
    conn_ref ref2;
    pthread_mutex_lock(&t->mu);
    ref2 = t->ref;
    pthread_mutex_unlock(&t->mu);

    test_reply tr[4];
    memset(tr, 0, sizeof(tr));
    for (int i = 0; i < 4; i++) {
        tr[i].released = &released;
        tr[i].r.release = reply_release;
        tr[i].r.resp.status = 200;
        tr[i].r.resp.body = (const uint8_t *)"stale";
        tr[i].r.resp.body_len = 5;
        tr[i].r.ref = ref;
        if (i > 0)
            tr[i - 1].r.next = &tr[i].r;
    }
    tr[1].r.ref.slot = 1u << 20;     /* no such slot */
    tr[2].r.ref.shard = 7;           /* another shard */
    tr[3].r.ref = ref2;              /* the live one, last in the list */
    tr[3].r.resp.body = (const uint8_t *)"fresh";
    deliver_from_thread(t->s, &tr[0].r);
    response r;
    assert_int_equal(client_response(&c2, &r), 0);
    assert_string_equal((char *)r.body, "fresh");
    response_free(&r);
    assert_true(wait_for(&released, 4, 2000));
    sleep_ms(50);
    assert_int_equal(atomic_load(&released), 4);
    client_close(&c2);
    srv_stop(t);
}

/* A deferred request whose reply does not come within request_timeout + grace (a worker
 * stuck in a PKCS#11 call) is answered 503 with Retry-After by the shard, which closes; the
 * reply that comes later (while the connection still lingers under the same generation, and
 * again after it closed) is released exactly once and never sent. */
static void test_deferred_past_deadline(void **state)
{
    config cfg;
    base_config(&cfg);
    cfg.request_timeout_ms = 300;
    srv *t = srv_start(&cfg);
    atomic_int released = 0;
    client c;
    client_open(&c, t->port);
    client_sends(&c, "GET /defer HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&t->deferred, 1, 2000));
    conn_ref ref;
    pthread_mutex_lock(&t->mu);
    ref = t->ref;
    pthread_mutex_unlock(&t->mu);

    /* The answer comes from the shard itself (a bound for a hung test, not a measurement). */
    assert_true(readable_within(&c, 10000));
    response r;
    assert_int_equal(client_response(&c, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.head, "Retry-After: 7\r\n"));
    assert_non_null(strstr(r.head, "Connection: close\r\n"));
    response_free(&r);
    assert_int_equal(atomic_load(&t->expired), 1);

    /* The late reply, most likely while the connection still lingers under the same
     * generation (the client has not closed): released, not sent. */
    test_reply tr[2];
    memset(tr, 0, sizeof(tr));
    for (int i = 0; i < 2; i++) {
        tr[i].released = &released;
        tr[i].r.release = reply_release;
        tr[i].r.ref = ref;
        tr[i].r.resp.status = 200;
        tr[i].r.resp.body = (const uint8_t *)"late";
        tr[i].r.resp.body_len = 4;
    }
    deliver_from_thread(t->s, &tr[0].r);
    assert_true(wait_for(&released, 1, 2000));
    /* Nothing follows the 503: the server's side ends with no further byte. */
    assert_int_equal(bytes_before_close(&c, 10000), 0);
    client_close(&c);
    assert_true(wait_conns(t->s, 0, 5000));
    assert_false(shard_ref_live(t->s, ref));

    /* The late reply may as well come after the connection closed (tr[1] plays that case):
     * released too, and a new connection, likely in the same slot, is not disturbed. */
    client c2;
    client_open(&c2, t->port);
    client_sends(&c2, "GET /n/fresh HTTP/1.1\r\n\r\n");
    expect(&c2, 200, "GET /n/fresh");
    deliver_from_thread(t->s, &tr[1].r);
    assert_true(wait_for(&released, 2, 2000));
    client_sends(&c2, "GET /n/again HTTP/1.1\r\n\r\n");
    expect(&c2, 200, "GET /n/again");
    sleep_ms(50);
    assert_int_equal(atomic_load(&released), 2);
    assert_int_equal(atomic_load(&t->expired), 1);
    client_close(&c2);
    srv_stop(t);
}

static void test_destroy_releases_pending(void **state)
{
    config cfg;
    base_config(&cfg);
    srv *t = srv_start(&cfg);
    atomic_int released = 0;
    client c;
    client_open(&c, t->port);
    client_sends(&c, "GET /defer HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&t->deferred, 1, 2000));
    shard_stop(t->s);
    pthread_join(t->th, NULL);
    assert_int_equal(t->run_rc, 0);
    /* Delivered after the loop ended: only shard_destroy can release it. */
    test_reply tr;
    memset(&tr, 0, sizeof(tr));
    tr.released = &released;
    tr.r.release = reply_release;
    pthread_mutex_lock(&t->mu);
    tr.r.ref = t->ref;
    pthread_mutex_unlock(&t->mu);
    shard_deliver(t->s, &tr.r);
    assert_int_equal(atomic_load(&released), 0);
    shard_destroy(t->s);
    assert_int_equal(atomic_load(&released), 1);
    assert_true(closed_within(&c, 1000));
    client_close(&c);
    pthread_mutex_destroy(&t->mu);
    free(t->echo);
    free(t->big);
    free(t);
}

/* Sends req (the server may stop reading early) and expects an error status and a close. */
static void expect_error(srv *t, const char *req, size_t n, int status)
{
    client c;
    client_open(&c, t->port);
    (void)client_send(&c, req, n);
    response r;
    assert_int_equal(client_response(&c, &r), 0);
    assert_int_equal(r.status, status);
    assert_non_null(strstr(r.head, "Connection: close\r\n"));
    assert_true(r.body_len > 0);
    response_free(&r);
    assert_true(closed_within(&c, 3000));
    client_close(&c);
}

static void test_limits(void **state)
{
    srv *t = srv_default();
    /* 414: a 70,000-byte URL (limit 65,534). */
    size_t n = 70000;
    char *req = malloc(n + 64);
    assert_non_null(req);
    memcpy(req, "GET /", 5);
    memset(req + 5, 'a', n);
    memcpy(req + 5 + n, " HTTP/1.1\r\n\r\n", 13);
    expect_error(t, req, 5 + n + 13, 414);
    /* 431: 20,000 bytes of headers (limit 16,384). */
    size_t o = (size_t)sprintf(req, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 200; i++)
        o += (size_t)sprintf(req + o, "X-H%03d: %090d\r\n", i, 0);
    o += (size_t)sprintf(req + o, "\r\n");
    expect_error(t, req, o, 431);
    free(req);
    /* 413: body over max_body (8 MiB in this config). */
    const char *big = "POST /echo HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n";
    expect_error(t, big, strlen(big), 413);
    /* 400: garbage, a TLS ClientHello, a bad Content-Length. */
    const char *g = "hello world\r\n\r\n";
    expect_error(t, g, strlen(g), 400);
    const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    expect_error(t, tls, sizeof(tls) - 1, 400);
    const char *bcl = "POST / HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n";
    expect_error(t, bcl, strlen(bcl), 400);
    /* 501 and 505. */
    const char *te = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    expect_error(t, te, strlen(te), 501);
    const char *v2 = "GET / HTTP/2.0\r\n\r\n";
    expect_error(t, v2, strlen(v2), 505);
    /* An error after a good pipelined request: the good one is answered first. */
    client c;
    client_open(&c, t->port);
    client_sends(&c, "GET /ok HTTP/1.1\r\n\r\nBAD\x01 / HTTP/1.1\r\n\r\n");
    expect(&c, 200, "GET /ok");
    expect(&c, 400, NULL);
    assert_true(closed_within(&c, 3000));
    client_close(&c);
    assert_int_equal(atomic_load(&t->ncalls), 1);
    srv_stop(t);
}

static void test_header_timeout(void **state)
{
    config cfg;
    base_config(&cfg);
    cfg.header_timeout_ms = 300;
    srv *t = srv_start(&cfg);
    client c;
    response r;
    /* An unfinished head. */
    /* An unfinished head: the shard itself answers 408 (its reject hook says so, the
     * handler never runs) and closes. The idle timeout (5 s) is longer, so it is the header
     * timer that fired, and an idle close would send nothing. */
    client_open(&c, t->port);
    client_sends(&c, "GET / HTTP/1.1\r\nHost: a\r\n");
    assert_int_equal(client_response(&c, &r), 0);
    assert_int_equal(r.status, 408);
    assert_non_null(strstr(r.head, "Connection: close\r\n"));
    assert_non_null(strstr((const char *)r.body, "request head not received in time"));
    response_free(&r);
    assert_int_equal(bytes_before_close(&c, 3000), 0);
    assert_int_equal(atomic_load(&t->rejects), 1);
    assert_int_equal(atomic_load(&t->last_reject), 408);
    client_close(&c);
    /* A complete head whose body never completes. */
    client_open(&c, t->port);
    client_sends(&c, "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    expect(&c, 408, NULL);
    assert_int_equal(bytes_before_close(&c, 3000), 0);
    assert_int_equal(atomic_load(&t->rejects), 2);
    client_close(&c);
    /* A head that arrives in two pieces (the shard has read the first: its loop turned) is
     * assembled and served, not refused. */
    client_open(&c, t->port);
    int loops0 = atomic_load(&t->loops);
    client_sends(&c, "GET /slow HTTP/1.1\r\n");
    assert_true(wait_for(&t->loops, loops0 + 1, 2000));
    client_sends(&c, "Host: a\r\n\r\n");
    expect(&c, 200, "GET /slow");
    client_close(&c);
    assert_int_equal(atomic_load(&t->ncalls), 1);
    assert_int_equal(atomic_load(&t->rejects), 2);
    srv_stop(t);
}

static void test_idle_timeout(void **state)
{
    config cfg;
    base_config(&cfg);
    cfg.idle_timeout_ms = 300;
    srv *t = srv_start(&cfg);
    client c;
    /* Connected, never sends: closed silently (no 408: the header timer, 3 s, did not fire;
     * nothing reported through the reject hook) and the slot is freed. */
    client_open(&c, t->port);
    assert_int_equal(bytes_before_close(&c, 3000), 0);
    assert_true(wait_conns(t->s, 0, 2000));
    assert_int_equal(atomic_load(&t->rejects), 0);
    client_close(&c);
    /* Idle after a response: the response, then a silent close. */
    client_open(&c, t->port);
    client_sends(&c, "GET / HTTP/1.1\r\n\r\n");
    expect(&c, 200, NULL);
    assert_int_equal(bytes_before_close(&c, 3000), 0);
    assert_int_equal(atomic_load(&t->rejects), 0);
    client_close(&c);
    /* A deferred request is not idle however long the app takes. */
    atomic_int released = 0;
    client_open(&c, t->port);
    client_sends(&c, "GET /defer HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&t->deferred, 1, 2000));
    assert_false(readable_within(&c, 800));
    test_reply tr;
    memset(&tr, 0, sizeof(tr));
    tr.released = &released;
    tr.r.release = reply_release;
    pthread_mutex_lock(&t->mu);
    tr.r.ref = t->ref;
    pthread_mutex_unlock(&t->mu);
    tr.r.resp.status = 200;
    tr.r.resp.body = (const uint8_t *)"late";
    tr.r.resp.body_len = 4;
    shard_deliver(t->s, &tr.r);
    expect(&c, 200, "late");
    assert_true(wait_for(&released, 1, 2000));
    client_close(&c);
    srv_stop(t);
}

static void test_connection_cap(void **state)
{
    config cfg;
    base_config(&cfg);
    cfg.max_conns = 2;
    srv *t = srv_start(&cfg);
    client a, b, c;
    client_open(&a, t->port);
    client_sends(&a, "GET /a HTTP/1.1\r\n\r\n");
    expect(&a, 200, "GET /a");
    client_open(&b, t->port);
    client_sends(&b, "GET /b HTTP/1.1\r\n\r\n");
    expect(&b, 200, "GET /b");
    /* The kernel completes the handshake, but the shard does not accept a third. */
    client_open(&c, t->port);
    client_sends(&c, "GET /c HTTP/1.1\r\n\r\n");
    assert_false(readable_within(&c, 300));
    assert_int_equal(shard_conn_count(t->s), 2);
    assert_int_equal(atomic_load(&t->ncalls), 2);
    client_close(&a);
    expect(&c, 200, "GET /c");
    assert_int_equal(shard_conn_count(t->s), 2);
    client_close(&b);
    client_close(&c);
    assert_true(wait_conns(t->s, 0, 2000));
    srv_stop(t);
}

/* Wakes the shard `rounds` times, one at a time, with a reply for a slot that does not exist
 * (released unsent on the shard thread), and returns how many loop iterations the shard ran
 * meanwhile. A shard that waits for events runs about one per wake-up (plus one or two per
 * tick that falls inside); one that spins on a failing operation runs thousands. */
static int loops_per_wakeups(srv *t, int rounds)
{
    atomic_int released = 0;
    test_reply tr;
    int loops0 = atomic_load(&t->loops);
    for (int i = 0; i < rounds; i++) {
        memset(&tr, 0, sizeof(tr));
        tr.released = &released;
        tr.r.release = reply_release;
        tr.r.ref.slot = 1u << 20;
        shard_deliver(t->s, &tr.r);
        assert_true(wait_for(&released, i + 1, 5000));
    }
    return atomic_load(&t->loops) - loops0;
}

static void test_emfile_pauses_accept(void **state)
{
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    /* io_uring reads the limit when the accept is queued: lower it before the shard starts.
     * Fill the descriptor table, then free one slot for the client's socket. */
    lim = old;
    lim.rlim_cur = 256;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &lim), 0);
    srv *t = srv_default();
    int fill[256], nfill = 0;
    /* Descriptors of earlier tests' rings and sockets may still be closing asynchronously:
     * keep taking free slots until none has appeared for three rounds of 50 ms. */
    for (int quiet = 0; quiet < 3; ) {
        int got = 0, fd;
        while (nfill < 256 && (fd = dup(0)) >= 0) {
            fill[nfill++] = fd;
            got = 1;
        }
        quiet = got ? 0 : quiet + 1;
        sleep_ms(50);
    }
    assert_true(nfill > 2);
    close(fill[--nfill]);
    client c;
    client_open(&c, t->port);
    client_sends(&c, "GET /emfile HTTP/1.1\r\n\r\n");
    /* accept fails with EMFILE: the shard must neither serve nor spin. Not spinning is
     * counted, not timed: its loop turns about once per event it is sent. */
    assert_false(readable_within(&c, 500));
    enum { ROUNDS = 200 };
    int loops = loops_per_wakeups(t, ROUNDS);
    print_message("      %d loop iterations for %d wake-ups while accept is paused\n", loops, ROUNDS);
    assert_true(loops >= ROUNDS);
    assert_true(loops <= 2 * ROUNDS + 50);
    assert_false(readable_within(&c, 0));
    assert_int_equal(atomic_load(&t->ncalls), 0);
    /* A descriptor becomes free: served at the next tick at the latest. */
    close(fill[--nfill]);
    expect(&c, 200, "GET /emfile");
    while (nfill > 0)
        close(fill[--nfill]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    client_close(&c);
    srv_stop(t);
}

static void test_create_errors(void **state)
{
    config cfg;
    shard *s = NULL;
    srv dummy;
    base_config(&cfg);
    cfg.max_conns = 0;
    assert_int_equal(shard_create(&cfg, 0, handler, &dummy, &s), -EINVAL);
    assert_null(s);
    base_config(&cfg);
    snprintf(cfg.listen_host, sizeof(cfg.listen_host), "not-an-address");
    assert_int_equal(shard_create(&cfg, 0, handler, &dummy, &s), -EINVAL);
    assert_null(s);
    base_config(&cfg);
    assert_int_equal(shard_create(&cfg, 0, NULL, &dummy, &s), -EINVAL);
    shard_destroy(NULL);

    /* Two shards on one port (SO_REUSEPORT), the second told the port of the first; IPv6. */
    shard *a = NULL, *b = NULL;
    assert_int_equal(shard_create(&cfg, 0, handler, &dummy, &a), 0);
    cfg.listen_port = shard_port(a);
    assert_int_equal(shard_create(&cfg, 1, handler, &dummy, &b), 0);
    assert_int_equal(shard_port(b), shard_port(a));
    shard_destroy(b);
    shard_destroy(a);
    snprintf(cfg.listen_host, sizeof(cfg.listen_host), "[::1]");
    cfg.listen_port = 0;
    int rc = shard_create(&cfg, 0, handler, &dummy, &a);
    assert_true(rc == 0 || rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT);
    shard_destroy(rc == 0 ? a : NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_get_and_post),
        cmocka_unit_test(test_keepalive_sequential),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_half_close_pipelined),
        cmocka_unit_test(test_connection_close),
        cmocka_unit_test(test_deferred),
        cmocka_unit_test(test_deferred_large_body),
        cmocka_unit_test(test_large_immediate_response),
        cmocka_unit_test(test_stale_reply),
        cmocka_unit_test(test_deferred_past_deadline),
        cmocka_unit_test(test_destroy_releases_pending),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_header_timeout),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_connection_cap),
        cmocka_unit_test(test_emfile_pauses_accept),
    };
    if (getenv("TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
