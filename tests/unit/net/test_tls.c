/* Tests for engine/net/tls.c and shard_tls.c: a real shard on 127.0.0.1 with a TLS listener
 * (a self-signed P-256 certificate made here), OpenSSL clients over blocking sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "engine/common/config.h"
#include "engine/net/shard.h"
#include "engine/net/tls.h"

#define BIG_LEN (3u << 20)

static char g_dir[64];
static char g_cert[128], g_key[128], g_other_key[128];

typedef struct srv {
    shard          *s;
    tls_ctx        *tls;
    pthread_t       th;
    int             run_rc;
    uint16_t        port, tls_port;
    atomic_int      rejects, last_reject;
    pthread_mutex_t mu;
    char            reason[192];
    conn_ref        ref;
    atomic_int      deferred;
    char            out[256];
    uint8_t        *echo;
    uint8_t        *big;
} srv;

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
    (void)peer;
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
        resp->body = t->echo;
        resp->body_len = body_len;
        return APP_RESPOND;
    }
    if (path_is(req, "/big")) {
        resp->body = t->big;
        resp->body_len = BIG_LEN;
        return APP_RESPOND;
    }
    int n = snprintf(t->out, sizeof(t->out), "%.*s %.*s body=%zu\n", (int)req->method.n,
                     req->method.p, (int)req->target.n, req->target.p, body_len);
    resp->body = (const uint8_t *)t->out;
    resp->body_len = (size_t)n;
    resp->close = path_is(req, "/close");
    return APP_RESPOND;
}

static void on_reject(void *ctx, int status, const char *reason, const char *peer)
{
    srv *t = ctx;
    (void)peer;
    pthread_mutex_lock(&t->mu);
    snprintf(t->reason, sizeof(t->reason), "%s", reason);
    pthread_mutex_unlock(&t->mu);
    atomic_store(&t->last_reject, status);
    atomic_fetch_add(&t->rejects, 1);
}

static void *run_thread(void *arg)
{
    srv *t = arg;
    t->run_rc = shard_run(t->s);
    return NULL;
}

static void tls_config(config *cfg, const char *min_version)
{
    config_defaults(cfg);
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = 0;
    cfg->header_timeout_ms = 2000;   /* a handshake on a loaded 2-core machine can take a while */
    cfg->idle_timeout_ms = 5000;
    cfg->max_conns = 16;
    cfg->max_body = 8u << 20;
    snprintf(cfg->tls_listen_host, sizeof(cfg->tls_listen_host), "127.0.0.1");
    snprintf(cfg->tls_cert, sizeof(cfg->tls_cert), "%s", g_cert);
    snprintf(cfg->tls_key, sizeof(cfg->tls_key), "%s", g_key);
    snprintf(cfg->tls_min_version, sizeof(cfg->tls_min_version), "%s", min_version);
}

static srv *srv_start(const char *min_version)
{
    config cfg;
    char err[256];
    tls_config(&cfg, min_version);
    srv *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    pthread_mutex_init(&t->mu, NULL);
    t->echo = malloc(cfg.max_body);
    t->big = malloc(BIG_LEN);
    assert_non_null(t->echo);
    assert_non_null(t->big);
    for (size_t i = 0; i < BIG_LEN; i++)
        t->big[i] = (uint8_t)(i * 7 + i / 251);
    assert_int_equal(tls_ctx_create(&cfg, &t->tls, err, sizeof(err)), 0);
    assert_int_equal(shard_create(&cfg, 0, handler, t, &t->s), 0);
    assert_int_equal(shard_add_listener(t->s, "127.0.0.1", 0, t->tls, SHARD_ROLE_SCEP,
                                        &t->tls_port), 0);
    tls_ctx_free(t->tls);       /* the shard holds its own reference */
    t->port = shard_port(t->s);
    assert_int_equal(shard_listen_port(t->s, SHARD_LISTEN_TLS), t->tls_port);
    assert_int_equal(shard_listen_port(t->s, SHARD_LISTEN_PLAIN), t->port);
    assert_true(t->tls_port != 0 && t->tls_port != t->port);
    shard_set_reject(t->s, on_reject);
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

/* --- the test certificate --------------------------------------------------------- */

static void write_key(EVP_PKEY *k, const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
}

static int make_files(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/test_tls.XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    snprintf(g_cert, sizeof(g_cert), "%s/cert.pem", g_dir);
    snprintf(g_key, sizeof(g_key), "%s/key.pem", g_dir);
    snprintf(g_other_key, sizeof(g_other_key), "%s/other.pem", g_dir);
    EVP_PKEY *k = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (k == NULL || other == NULL || x == NULL)
        return -1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                               -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, k);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
                                              "IP:127.0.0.1,DNS:localhost");
    if (san == NULL || X509_add_ext(x, san, -1) != 1 || X509_sign(x, k, EVP_sha256()) == 0)
        return -1;
    X509_EXTENSION_free(san);
    FILE *f = fopen(g_cert, "w");
    if (f == NULL)
        return -1;
    PEM_write_X509(f, x);
    fclose(f);
    write_key(k, g_key);
    write_key(other, g_other_key);
    X509_free(x);
    EVP_PKEY_free(k);
    EVP_PKEY_free(other);
    return 0;
}

static int remove_files(void **state)
{
    (void)state;
    unlink(g_cert);
    unlink(g_key);
    unlink(g_other_key);
    rmdir(g_dir);
    return 0;
}

/* --- client side ------------------------------------------------------------------- */

typedef struct tclient {
    int      fd;
    SSL_CTX *ctx;
    SSL     *ssl;
    char    *buf;
    size_t   len, cap;
} tclient;

static int tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = { 5, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A blocking connect may see EINTR from io_uring task work; it completes on its own. */
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        assert_int_equal(errno, EINTR);
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int pr;
        while ((pr = poll(&pfd, 1, 5000)) < 0 && errno == EINTR)
            ;
        assert_int_equal(pr, 1);
    }
    return fd;
}

/* Connects and handshakes; max_version 0 for any. Returns 1, or 0 when the handshake
 * failed (the connection stays open for the caller to inspect). */
/* A blocking call on this thread may be interrupted (io_uring task work signals the
 * process). OpenSSL reports an interrupted read or write either as SSL_ERROR_SYSCALL or, as its
 * socket BIO counts EINTR as retryable, as WANT_READ/WANT_WRITE; both mean "call again". A
 * receive timeout (SO_RCVTIMEO, EAGAIN) is not retried. */
static int interrupted(SSL *ssl, int ret)
{
    int e = SSL_get_error(ssl, ret);
    int again = errno == EINTR &&
                (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
    if (again)
        ERR_clear_error();
    return again;
}

static int tc_open(tclient *c, uint16_t port, int max_version, SSL_SESSION *sess)
{
    memset(c, 0, sizeof(*c));
    c->fd = tcp_connect(port);
    c->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(c->ctx);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    assert_int_equal(SSL_CTX_load_verify_locations(c->ctx, g_cert, NULL), 1);
    if (max_version != 0)
        SSL_CTX_set_max_proto_version(c->ctx, max_version);
    c->ssl = SSL_new(c->ctx);
    assert_non_null(c->ssl);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set1_host(c->ssl, "localhost");
    if (sess != NULL)
        SSL_set_session(c->ssl, sess);
    c->cap = 1 << 16;
    c->buf = malloc(c->cap);
    assert_non_null(c->buf);
    int r;
    while ((r = SSL_connect(c->ssl)) != 1 && interrupted(c->ssl, r))
        ;
    ERR_clear_error();
    return r == 1;
}

static void tc_close(tclient *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static void tc_send(tclient *c, const void *p, size_t n)
{
    size_t w = 0;
    while (n > 0) {
        int ok = SSL_write_ex(c->ssl, p, n, &w);
        if (!ok && interrupted(c->ssl, 0))
            continue;
        assert_true(ok);
        p = (const char *)p + w;
        n -= w;
    }
}

static void tc_sends(tclient *c, const char *s)
{
    tc_send(c, s, strlen(s));
}

/* One more chunk of plaintext: >0 bytes, 0 on close_notify, -1 on error or EOF. */
static int tc_fill(tclient *c)
{
    if (c->len == c->cap) {
        c->cap *= 2;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
    }
    for (;;) {
        size_t n = 0;
        if (SSL_read_ex(c->ssl, c->buf + c->len, c->cap - c->len, &n) == 1) {
            c->len += n;
            return (int)n;
        }
        if (interrupted(c->ssl, 0))
            continue;
        int e = SSL_get_error(c->ssl, 0);
        ERR_clear_error();
        return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    }
}

/* Reads one response; its status, and its body in *body (malloc'd, *blen bytes). */
static int tc_response(tclient *c, char *head, size_t headcap, uint8_t **body, size_t *blen)
{
    for (;;) {
        char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (e != NULL) {
            size_t hl = (size_t)(e + 4 - c->buf);
            const char *cl = memmem(c->buf, hl, "Content-Length: ", 16);
            assert_non_null(cl);
            size_t bl = strtoul(cl + 16, NULL, 10);
            if (c->len >= hl + bl) {
                int status = 0;
                assert_int_equal(sscanf(c->buf, "HTTP/1.1 %d", &status), 1);
                if (head != NULL) {
                    assert_true(hl < headcap);
                    memcpy(head, c->buf, hl);
                    head[hl] = '\0';
                }
                *body = malloc(bl + 1);
                assert_non_null(*body);
                memcpy(*body, c->buf + hl, bl);
                (*body)[bl] = 0;
                *blen = bl;
                memmove(c->buf, c->buf + hl + bl, c->len - hl - bl);
                c->len -= hl + bl;
                return status;
            }
        }
        if (tc_fill(c) <= 0)
            return -1;
    }
}

static void expect(tclient *c, int status, const char *want)
{
    uint8_t *body = NULL;
    size_t bl = 0;
    assert_int_equal(tc_response(c, NULL, 0, &body, &bl), status);
    if (want != NULL && strstr((char *)body, want) == NULL)
        fail_msg("body '%s' lacks '%s'", (char *)body, want);
    free(body);
}

/* 1 if the server closed the TCP connection within ms (unread bytes discarded). */
static int closed_within(int fd, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    char tmp[4096];
    while (now_ms() < end) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int pr = poll(&p, 1, (int)(end - now_ms()));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return 0;
        ssize_t n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 1;
    }
    return 0;
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

static void reason_has(srv *t, const char *want)
{
    pthread_mutex_lock(&t->mu);
    int ok = strstr(t->reason, want) != NULL;
    char copy[192];
    snprintf(copy, sizeof(copy), "%s", t->reason);
    pthread_mutex_unlock(&t->mu);
    if (!ok)
        fail_msg("reject reason '%s' lacks '%s'", copy, want);
}

/* --- tests ------------------------------------------------------------------------- */

/* TLS 1.3 by default, TLS 1.2 when the client caps it; keep-alive and pipelining; the plain
 * listener beside it still speaks plain HTTP. */
static void test_request_tls13_and_tls12(void **state)
{
    (void)state;
    srv *t = srv_start("1.2");
    const int versions[] = { 0, TLS1_2_VERSION };
    const int expect_v[] = { TLS1_3_VERSION, TLS1_2_VERSION };
    for (int i = 0; i < 2; i++) {
        tclient c;
        assert_true(tc_open(&c, t->tls_port, versions[i], NULL));
        assert_int_equal(SSL_version(c.ssl), expect_v[i]);
        tc_sends(&c, "GET /scep?operation=GetCACaps HTTP/1.1\r\nHost: x\r\n\r\n");
        expect(&c, 200, "GET /scep?operation=GetCACaps body=0");
        tc_sends(&c, "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                     "GET /c HTTP/1.1\r\n\r\n");
        expect(&c, 200, "GET /a body=0");
        expect(&c, 200, "POST /b body=3");
        expect(&c, 200, "GET /c body=0");
        tc_close(&c);
    }
    int fd = tcp_connect(t->port);
    const char req[] = "GET /plain HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof(req) - 1, 0), (ssize_t)(sizeof(req) - 1));
    char buf[512];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf) - 1, MSG_WAITALL)) < 0 && errno == EINTR)
        ;
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "GET /plain body=0"));
    close(fd);
    assert_int_equal(atomic_load(&t->rejects), 0);
    srv_stop(t);
}

static atomic_int g_released;
static shard_reply g_reply;

static void release_fn(shard_reply *r)
{
    (void)r;
    atomic_fetch_add(&g_released, 1);
}

/* Bodies larger than a record and than the read buffer's first size, both ways; a 3 MiB
 * response (encrypted a chunk at a time); a deferred reply. */
static void test_large_and_deferred(void **state)
{
    (void)state;
    srv *t = srv_start("1.2");
    tclient c;
    assert_true(tc_open(&c, t->tls_port, 0, NULL));
    size_t n = 1u << 20;
    char *req = malloc(n + 128);
    assert_non_null(req);
    int hl = snprintf(req, 128, "POST /echo HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n);
    for (size_t i = 0; i < n; i++)
        req[hl + i] = (char)('a' + i % 26);
    tc_send(&c, req, (size_t)hl + n);
    uint8_t *body = NULL;
    size_t bl = 0;
    assert_int_equal(tc_response(&c, NULL, 0, &body, &bl), 200);
    assert_int_equal(bl, n);
    assert_memory_equal(body, req + hl, n);
    free(body);
    free(req);

    tc_sends(&c, "GET /big HTTP/1.1\r\n\r\n");
    assert_int_equal(tc_response(&c, NULL, 0, &body, &bl), 200);
    assert_int_equal(bl, BIG_LEN);
    assert_memory_equal(body, t->big, BIG_LEN);
    free(body);

    tc_sends(&c, "GET /defer HTTP/1.1\r\n\r\n");
    assert_true(wait_for(&t->deferred, 1, 5000));
    memset(&g_reply, 0, sizeof(g_reply));
    pthread_mutex_lock(&t->mu);
    g_reply.ref = t->ref;
    pthread_mutex_unlock(&t->mu);
    g_reply.resp.status = 200;
    g_reply.resp.content_type = "text/plain";
    g_reply.resp.body = (const uint8_t *)"deferred answer\n";
    g_reply.resp.body_len = 16;
    g_reply.release = release_fn;
    atomic_store(&g_released, 0);
    shard_deliver(t->s, &g_reply);
    expect(&c, 200, "deferred answer");
    assert_true(wait_for(&g_released, 1, 2000));
    tc_sends(&c, "GET /after HTTP/1.1\r\n\r\n");
    expect(&c, 200, "GET /after");
    tc_close(&c);
    srv_stop(t);
}

/* "Connection: close": the response, then close_notify (a clean TLS end), then EOF. */
static void test_close_notify(void **state)
{
    (void)state;
    srv *t = srv_start("1.2");
    tclient c;
    assert_true(tc_open(&c, t->tls_port, 0, NULL));
    tc_sends(&c, "GET /close HTTP/1.1\r\n\r\n");
    uint8_t *body = NULL;
    size_t bl = 0;
    char head[1024];
    assert_int_equal(tc_response(&c, head, sizeof(head), &body, &bl), 200);
    assert_non_null(strstr(head, "Connection: close\r\n"));
    free(body);
    assert_int_equal(tc_fill(&c), 0);       /* close_notify, not a truncation */
    tc_close(&c);
    srv_stop(t);
}

/* A resumed session (TLS 1.3 ticket) skips the certificate and the signature. */
static void test_resumption(void **state)
{
    (void)state;
    srv *t = srv_start("1.2");
    tclient c;
    assert_true(tc_open(&c, t->tls_port, 0, NULL));
    tc_sends(&c, "GET /one HTTP/1.1\r\n\r\n");
    expect(&c, 200, "GET /one");        /* the tickets came before the response */
    SSL_SESSION *sess = SSL_get1_session(c.ssl);
    assert_non_null(sess);
    assert_true(SSL_SESSION_is_resumable(sess));
    SSL_shutdown(c.ssl);        /* freed unshut, a session is marked not resumable */
    tc_close(&c);
    assert_true(tc_open(&c, t->tls_port, 0, sess));
    assert_true(SSL_session_reused(c.ssl));
    tc_sends(&c, "GET /two HTTP/1.1\r\n\r\n");
    expect(&c, 200, "GET /two");
    tc_close(&c);
    SSL_SESSION_free(sess);
    srv_stop(t);
}

/* Garbage instead of a ClientHello: closed, and counted by the reject hook. */
static void test_garbage_hello(void **state)
{
    (void)state;
    srv *t = srv_start("1.2");
    int fd = tcp_connect(t->tls_port);
    char junk[300];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(0x16 + i * 31);
    junk[0] = 0x7f;     /* not a handshake record */
    assert_int_equal(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    assert_true(closed_within(fd, 10000));
    close(fd);
    assert_true(wait_for(&t->rejects, 1, 2000));
    assert_int_equal(atomic_load(&t->last_reject), 400);
    reason_has(t, "tls: handshake failed");

    /* The shard is unharmed: the next client is served. */
    tclient c;
    assert_true(tc_open(&c, t->tls_port, 0, NULL));
    tc_sends(&c, "GET /next HTTP/1.1\r\n\r\n");
    expect(&c, 200, "GET /next");
    tc_close(&c);
    srv_stop(t);
}

/* Plain HTTP on the TLS port: a plain-text 400 that says so, then the close. */
static void test_plain_http_on_tls_port(void **state)
{
    (void)state;
    srv *t = srv_start("1.2");
    int fd = tcp_connect(t->tls_port);
    const char req[] = "GET /scep?operation=GetCACaps HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof(req) - 1, 0), (ssize_t)(sizeof(req) - 1));
    char buf[1024];
    size_t got = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    assert_true(strncmp(buf, "HTTP/1.1 400 ", 13) == 0);
    assert_non_null(strstr(buf, "this port speaks HTTPS"));
    close(fd);
    assert_true(wait_for(&t->rejects, 1, 2000));
    assert_int_equal(atomic_load(&t->last_reject), 400);
    reason_has(t, "plain HTTP");
    srv_stop(t);
}

/* A client that opens and never completes its handshake is closed after the header
 * timeout (2 s here), and counted. Half a ClientHello is as slow as none. */
static void test_slow_handshake(void **state)
{
    (void)state;
    srv *t = srv_start("1.2");
    int fd = tcp_connect(t->tls_port);
    const unsigned char partial[] = { 0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc };
    assert_int_equal(send(fd, partial, sizeof(partial), 0), (ssize_t)sizeof(partial));
    assert_true(closed_within(fd, 10000));
    close(fd);
    assert_true(wait_for(&t->rejects, 1, 2000));
    assert_int_equal(atomic_load(&t->last_reject), 408);
    reason_has(t, "handshake not completed in time");
    srv_stop(t);
}

/* min_version = 1.3 refuses a TLS 1.2 client. */
static void test_min_version(void **state)
{
    (void)state;
    srv *t = srv_start("1.3");
    tclient c;
    assert_false(tc_open(&c, t->tls_port, TLS1_2_VERSION, NULL));
    tc_close(&c);
    assert_true(wait_for(&t->rejects, 1, 2000));
    reason_has(t, "tls: handshake failed");
    assert_true(tc_open(&c, t->tls_port, 0, NULL));
    assert_int_equal(SSL_version(c.ssl), TLS1_3_VERSION);
    tc_close(&c);
    srv_stop(t);
}

static void test_ctx_errors(void **state)
{
    (void)state;
    config cfg;
    char err[256];
    tls_ctx *x = NULL;
    tls_config(&cfg, "1.1");
    assert_int_equal(tls_ctx_create(&cfg, &x, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "min_version"));
    tls_config(&cfg, "1.2");
    snprintf(cfg.tls_key, sizeof(cfg.tls_key), "%s", g_other_key);
    assert_int_equal(tls_ctx_create(&cfg, &x, err, sizeof(err)), -1);
    if (strstr(err, "mismatch") == NULL && strstr(err, "does not match") == NULL)
        fail_msg("%s", err);
    snprintf(cfg.tls_key, sizeof(cfg.tls_key), "pkcs11:token=scepd;object=tls");
    assert_int_equal(tls_ctx_create(&cfg, &x, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "PEM file"));
    snprintf(cfg.tls_key, sizeof(cfg.tls_key), "%s/missing.pem", g_dir);
    assert_int_equal(tls_ctx_create(&cfg, &x, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot load key"));
    cfg.tls_cert[0] = '\0';
    assert_int_equal(tls_ctx_create(&cfg, &x, err, sizeof(err)), -1);
    assert_null(x);
    tls_ctx_free(NULL);
    tls_conn_destroy(NULL);
    /* Whatever this kernel offers, the probe answers 0 or 1 and leaks nothing. */
    int k = tls_ktls_available();
    assert_true(k == 0 || k == 1);
}

/* The [tls] section of the configuration. */
static void test_config_keys(void **state)
{
    (void)state;
    config cfg;
    char err[256];
    config_defaults(&cfg);
    assert_string_equal(cfg.tls_listen_host, "");
    assert_string_equal(cfg.tls_min_version, "1.2");
    const char *text = "[tls]\nlisten = 0.0.0.0:8443\ncert = tls/cert.pem\nkey = /k.pem\n"
                       "min_version = 1.3\n";
    assert_int_equal(config_parse(&cfg, text, strlen(text), "/etc/scepd", err, sizeof(err)), 0);
    assert_string_equal(cfg.tls_listen_host, "0.0.0.0");
    assert_int_equal(cfg.tls_listen_port, 8443);
    assert_string_equal(cfg.tls_cert, "/etc/scepd/tls/cert.pem");
    assert_string_equal(cfg.tls_key, "/k.pem");
    assert_string_equal(cfg.tls_min_version, "1.3");
    assert_string_equal(cfg.listen_host, "127.0.0.1");   /* [server] listen untouched */
    const char *bad = "[tls]\nlisten = 8443\n";
    assert_int_equal(config_parse(&cfg, bad, strlen(bad), NULL, err, sizeof(err)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_keys),
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test(test_request_tls13_and_tls12),
        cmocka_unit_test(test_large_and_deferred),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_resumption),
        cmocka_unit_test(test_garbage_hello),
        cmocka_unit_test(test_plain_http_on_tls_port),
        cmocka_unit_test(test_slow_handshake),
        cmocka_unit_test(test_min_version),
    };
    if (getenv("TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("TEST_FILTER"));
    return cmocka_run_group_tests(tests, make_files, remove_files);
}
