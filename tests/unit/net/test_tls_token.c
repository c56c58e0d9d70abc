/* Tests for the token-key path of engine/net/tls.c and shard_tls.c with hsm/offload.c: a real
 * shard on 127.0.0.1 whose TLS key is a P-256 key in a SoftHSM token. The provider's test
 * observer (hsm/test_hooks.h) sees every private-key operation on the thread that calls the
 * module: it records that thread and can hold the operation, which stands for a slow HSM
 * without any timing. Proves the handshake's C_Sign runs on a key thread, never the shard's,
 * that the shard serves other connections while a handshake waits for the token, and that a
 * connection closed while its handshake waits unwinds cleanly (ASan/LSan in build-asan). */
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
#include <sys/stat.h>
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
#include "hsm/hsm.h"
#include "hsm/test_hooks.h"

#define PIN "1234"

static char g_dir[64], g_cert[128];
static hsm_token *g_tok;
static EVP_PKEY *g_key;

/* What the observer saw, and the gate that holds operations while g_hold is set. */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_hold, g_waiting;
static atomic_int g_ops, g_on_shard;
static pthread_t g_shard_thread;
static atomic_int g_shard_known;

static void observer(void)
{
    if (atomic_load(&g_shard_known) && pthread_equal(pthread_self(), g_shard_thread))
        atomic_fetch_add(&g_on_shard, 1);
    atomic_fetch_add(&g_ops, 1);
    pthread_mutex_lock(&g_mu);
    g_waiting++;
    pthread_cond_broadcast(&g_cv);
    while (g_hold)
        pthread_cond_wait(&g_cv, &g_mu);
    g_waiting--;
    pthread_mutex_unlock(&g_mu);
}

static void hold(int on)
{
    pthread_mutex_lock(&g_mu);
    g_hold = on;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

/* Waits (generously) until n operations are held in the observer. */
static int wait_held(int n)
{
    struct timespec until;
    int ok;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&g_mu);
    while (g_waiting < n && pthread_cond_timedwait(&g_cv, &g_mu, &until) == 0)
        ;
    ok = g_waiting >= n;
    pthread_mutex_unlock(&g_mu);
    return ok;
}

typedef struct srv {
    shard     *s;
    pthread_t  th;
    int        run_rc;
    uint16_t   port, tls_port;
} srv;

static int handler(void *ctx, const http_request *req, const uint8_t *body, size_t body_len,
                   conn_ref ref, const char *peer, http_response *resp)
{
    (void)ctx; (void)req; (void)body; (void)body_len; (void)ref; (void)peer;
    resp->status = 200;
    resp->content_type = "text/plain";
    resp->body = (const uint8_t *)"ok\n";
    resp->body_len = 3;
    return APP_RESPOND;
}

static void *run_thread(void *arg)
{
    srv *t = arg;
    t->run_rc = shard_run(t->s);
    return NULL;
}

static srv *srv_start(void)
{
    config cfg;
    char err[256];
    tls_ctx *tls = NULL;
    config_defaults(&cfg);
    snprintf(cfg.listen_host, sizeof(cfg.listen_host), "127.0.0.1");
    cfg.listen_port = 0;
    cfg.header_timeout_ms = 60000;      /* the held handshakes must not time out */
    cfg.max_conns = 16;
    snprintf(cfg.tls_listen_host, sizeof(cfg.tls_listen_host), "127.0.0.1");
    snprintf(cfg.tls_cert, sizeof(cfg.tls_cert), "%s", g_cert);
    cfg.tls_key[0] = '\0';
    srv *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    assert_int_equal(tls_ctx_create_with_key(&cfg, g_key, &tls, err, sizeof(err)), 0);
    assert_int_equal(shard_create(&cfg, 0, handler, t, &t->s), 0);
    assert_int_equal(shard_add_listener(t->s, "127.0.0.1", 0, tls, SHARD_ROLE_SCEP,
                                        &t->tls_port), 0);
    tls_ctx_free(tls);
    t->port = shard_port(t->s);
    assert_int_equal(pthread_create(&t->th, NULL, run_thread, t), 0);
    g_shard_thread = t->th;
    atomic_store(&g_shard_known, 1);
    return t;
}

static void srv_stop(srv *t)
{
    shard_stop(t->s);
    pthread_join(t->th, NULL);
    atomic_store(&g_shard_known, 0);
    assert_int_equal(t->run_rc, 0);
    shard_destroy(t->s);
    free(t);
}

/* --- clients --------------------------------------------------------------------------- */

static int tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = { 60, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        assert_int_equal(errno, EINTR);     /* io_uring task work; completes on its own */
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };
        int pr;
        while ((pr = poll(&pfd, 1, 30000)) < 0 && errno == EINTR)
            ;
        assert_int_equal(pr, 1);
    }
    return fd;
}

/* Plain GET on the shard's plain listener: 1 when "200" came back. */
static int plain_get(uint16_t port)
{
    char buf[512];
    size_t len = 0;
    int fd = tcp_connect(port);
    const char *rq = "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    ssize_t w;
    while ((w = write(fd, rq, strlen(rq))) < 0 && errno == EINTR)
        ;
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return strstr(buf, "HTTP/1.1 200") == buf;
}

static int interrupted(SSL *ssl, int ret)
{
    int e = SSL_get_error(ssl, ret);
    int again = errno == EINTR &&
                (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE);
    if (again)
        ERR_clear_error();
    return again;
}

typedef struct tls_job {
    uint16_t port;
    int max_version;
    pthread_t th;
    int ok;                 /* handshake done and "ok" answered */
    atomic_int finished;
} tls_job;

/* One HTTPS request: handshake (verifying the token-key certificate), GET, read the answer. */
static void *tls_get(void *arg)
{
    tls_job *j = arg;
    char buf[512];
    size_t len = 0, n = 0;
    int fd = tcp_connect(j->port), r;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, g_cert, NULL) != 1)
        goto out;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (j->max_version != 0)
        SSL_CTX_set_max_proto_version(ctx, j->max_version);
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set1_host(ssl, "localhost");
    while ((r = SSL_connect(ssl)) != 1 && interrupted(ssl, r))
        ;
    if (r != 1)
        goto out;
    const char *rq = "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    while (SSL_write_ex(ssl, rq, strlen(rq), &n) != 1)
        if (!interrupted(ssl, 0))
            goto out;
    for (;;) {
        if (SSL_read_ex(ssl, buf + len, sizeof(buf) - 1 - len, &n) == 1) {
            len += n;
            continue;
        }
        if (!interrupted(ssl, 0))
            break;
    }
    buf[len] = '\0';
    j->ok = strstr(buf, "HTTP/1.1 200") == buf && strstr(buf, "ok\n") != NULL;
out:
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    atomic_store(&j->finished, 1);
    return NULL;
}

static void tls_start(tls_job *j, uint16_t port, int max_version)
{
    memset(j, 0, sizeof(*j));
    j->port = port;
    j->max_version = max_version;
    assert_int_equal(pthread_create(&j->th, NULL, tls_get, j), 0);
}

/* --- tests ----------------------------------------------------------------------------- */

/* TLS 1.3 and 1.2 handshakes with the token key: each signs once, on a key thread. */
static void test_signs_on_key_thread(void **state)
{
    (void)state;
    srv *t = srv_start();
    int ops0 = atomic_load(&g_ops);
    uint64_t off0 = hsm_offload_ops(g_tok);
    tls_job a, b;
    tls_start(&a, t->tls_port, 0);
    pthread_join(a.th, NULL);
    tls_start(&b, t->tls_port, TLS1_2_VERSION);
    pthread_join(b.th, NULL);
    assert_true(a.ok);
    assert_true(b.ok);
    assert_int_equal(atomic_load(&g_ops) - ops0, 2);
    assert_int_equal(hsm_offload_ops(g_tok) - off0, 2);
    assert_int_equal(atomic_load(&g_on_shard), 0);
    srv_stop(t);
}

/* A handshake held at the token: the shard answers a plain request and completes another
 * TLS handshake's other steps meanwhile; the held one completes once the token answers. */
static void test_slow_token_does_not_stall(void **state)
{
    (void)state;
    srv *t = srv_start();
    tls_job a;
    hold(1);
    tls_start(&a, t->tls_port, 0);
    assert_true(wait_held(1));                      /* a's C_Sign is at the "token" */
    for (int i = 0; i < 3; i++)
        assert_true(plain_get(t->port));            /* served while it waits */
    assert_int_equal(atomic_load(&a.finished), 0);  /* still held: the ordering is certain */
    hold(0);
    pthread_join(a.th, NULL);
    assert_true(a.ok);
    assert_int_equal(atomic_load(&g_on_shard), 0);
    srv_stop(t);
}

/* A client gone while its handshake waits for the token: the connection closes without
 * waiting, the key thread's late result is dropped, and the next handshake works. */
static void test_close_while_waiting(void **state)
{
    (void)state;
    srv *t = srv_start();
    hold(1);
    int fd = tcp_connect(t->tls_port);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_connect_state(ssl);
    /* Only the ClientHello: a non-blocking step that sends it and returns wanting a read. */
    struct timeval tv = { 0, 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    SSL_do_handshake(ssl);
    ERR_clear_error();
    assert_true(wait_held(1));
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);                                      /* the peer is gone */
    assert_true(plain_get(t->port));                /* the shard saw the EOF meanwhile */
    hold(0);
    tls_job b;
    tls_start(&b, t->tls_port, 0);
    pthread_join(b.th, NULL);
    assert_true(b.ok);
    srv_stop(t);                                    /* and the shutdown has nothing pending */
}

/* An RSA token key is refused (TLS 1.3 would want RSA-PSS), so are key and key_label both. */
static void test_ctx_refusals(void **state)
{
    (void)state;
    config cfg;
    char err[256];
    tls_ctx *x = NULL;
    EVP_PKEY *rsa = NULL;
    config_defaults(&cfg);
    snprintf(cfg.tls_cert, sizeof(cfg.tls_cert), "%s", g_cert);
    snprintf(cfg.tls_key, sizeof(cfg.tls_key), "%s", g_cert);
    assert_int_equal(tls_ctx_create_with_key(&cfg, g_key, &x, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "both set"));
    cfg.tls_key[0] = '\0';
    assert_int_equal(hsm_key_generate(g_tok, "tls-rsa", "rsa:2048", &rsa), 0);
    assert_int_equal(tls_ctx_create_with_key(&cfg, rsa, &x, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "EC key"));
    EVP_PKEY_free(rsa);
}

/* --- fixtures -------------------------------------------------------------------------- */

static int make_cert(void)
{
    X509 *x = X509_new();
    int ok = 0;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
                               -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, g_key);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *san = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name,
                                              "IP:127.0.0.1,DNS:localhost");
    FILE *f = NULL;
    /* Signed by the token key itself, on this (unattached) thread, before any observer. */
    if (san == NULL || X509_add_ext(x, san, -1) != 1 || X509_sign(x, g_key, EVP_sha256()) == 0)
        goto out;
    if ((f = fopen(g_cert, "w")) == NULL)
        goto out;
    ok = PEM_write_X509(f, x) == 1;
out:
    if (f != NULL)
        fclose(f);
    X509_EXTENSION_free(san);
    X509_free(x);
    return ok ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    char path[160], cmd[320];
    const char *module = getenv("SOFTHSM_MODULE");
    if (module == NULL || *module == '\0')
        module = "/usr/lib/softhsm/libsofthsm2.so";
    snprintf(g_dir, sizeof(g_dir), "/tmp/test_tls_token.XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    snprintf(g_cert, sizeof(g_cert), "%s/cert.pem", g_dir);
    snprintf(path, sizeof(path), "%s/tokens", g_dir);
    if (mkdir(path, 0700) != 0)
        return -1;
    snprintf(path, sizeof(path), "%s/softhsm2.conf", g_dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n",
            g_dir);
    fclose(f);
    setenv("SOFTHSM2_CONF", path, 1);
    snprintf(cmd, sizeof(cmd), "softhsm2-util --init-token --free --label T --pin " PIN
             " --so-pin 5678 >/dev/null 2>&1");
    if (system(cmd) != 0 || hsm_token_open(module, "T", PIN, &g_tok) != 0 ||
        hsm_key_generate(g_tok, "tls", "ec:P-256", &g_key) != 0 || make_cert() != 0 ||
        hsm_offload_start(g_tok, 2) != 0) {
        fprintf(stderr, "setup: %s\n", hsm_last_error());
        return -1;
    }
    hsm_test_set_op_observer(observer);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    hsm_test_set_op_observer(NULL);
    EVP_PKEY_free(g_key);
    hsm_token_close(g_tok);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signs_on_key_thread),
        cmocka_unit_test(test_slow_token_does_not_stall),
        cmocka_unit_test(test_close_while_waiting),
        cmocka_unit_test(test_ctx_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
