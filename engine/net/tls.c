/* tls: OpenSSL over the connection's own buffers (see tls.h). The BIO is a source/sink of
 * our own: reads take ciphertext from the input buffer the shard's recv filled, writes
 * append to the output buffer the shard's send drains. Two output buffers alternate, so the
 * one a send is reading from never moves while OpenSSL queues more (a TLS 1.3 ticket, an
 * alert, the next records of a response). */
#include "engine/net/tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define TLS_IN_CAP   (34 * 1024)      /* two full records: one recv never splits less */
#define TLS_OUT_MAX  (512 * 1024)     /* queued ciphertext cap: a peer that never reads
                                         cannot make OpenSSL queue without bound */

#ifndef TCP_ULP
#define TCP_ULP 31
#endif

struct tls_ctx {
    atomic_int  refs;
    SSL_CTX    *ssl;
    BIO_METHOD *bio;
};

typedef struct obuf {
    uint8_t *p;
    size_t   pos, len, cap;
} obuf;

struct tls_conn {
    SSL     *ssl;
    int      async;         /* the handshake's job is paused (TLS_ASYNC) */
    pthread_t async_thread; /* ... on this thread, the only one that may resume it */
    uint8_t *in;
    size_t   in_pos, in_len;
    obuf     out[2];        /* out[sending] is what tls_out_next handed out */
    int      sending;
    int      ready;
};

static int obuf_append(obuf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        while (ncap < b->len + n)
            ncap *= 2;
        uint8_t *nb = realloc(b->p, ncap);
        if (nb == NULL)
            return -1;
        b->p = nb;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

size_t tls_out_pending(const tls_conn *t)
{
    return (t->out[0].len - t->out[0].pos) + (t->out[1].len - t->out[1].pos);
}

static int cbio_write(BIO *b, const char *data, size_t n, size_t *written)
{
    tls_conn *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (tls_out_pending(t) + n > TLS_OUT_MAX || obuf_append(&t->out[!t->sending], data, n) != 0)
        return 0;
    *written = n;
    return 1;
}

static int cbio_read(BIO *b, char *data, size_t n, size_t *readbytes)
{
    tls_conn *t = BIO_get_data(b);
    size_t avail = t->in_len - t->in_pos;
    BIO_clear_retry_flags(b);
    if (avail == 0) {
        BIO_set_retry_read(b);
        return 0;
    }
    if (n > avail)
        n = avail;
    memcpy(data, t->in + t->in_pos, n);
    t->in_pos += n;
    *readbytes = n;
    return 1;
}

static long cbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    tls_conn *t = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return (long)(t->in_len - t->in_pos);
    case BIO_CTRL_WPENDING:
        return (long)tls_out_pending(t);
    default:
        return 0;
    }
}

static int cbio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* Offers HTTP/1.1 to a client that negotiates ALPN (curl offers h2 first); a client that
 * offers neither gets no ALPN answer rather than a failed handshake. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned i = 0; i < inlen;) {
        unsigned l = in[i];
        if (i + 1 + l > inlen)
            break;
        if (l == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)l;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static void ssl_err(char *err, size_t errlen, const char *what, const char *path)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "tls: %s%s%s%s%s", what, path ? " " : "", path ? path : "",
             r ? ": " : "", r ? r : "");
    ERR_clear_error();
}

int tls_ctx_create(const config *cfg, tls_ctx **out, char *err, size_t errlen)
{
    return tls_ctx_create_with_key(cfg, NULL, out, err, errlen);
}

/* The server key: the token key given (async mode), or the PEM file of cfg->tls_key. */
static int use_key(tls_ctx *t, const config *cfg, EVP_PKEY *key, char *err, size_t errlen)
{
    if (key == NULL) {
        if (SSL_CTX_use_PrivateKey_file(t->ssl, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
            ssl_err(err, errlen, "cannot load key", cfg->tls_key);
            return -1;
        }
        return 0;
    }
    if (cfg->tls_key[0] != '\0') {
        snprintf(err, errlen, "tls: key and key_label are both set; keep one");
        return -1;
    }
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC) {
        snprintf(err, errlen, "tls: key_label must name an EC key (TLS 1.3 signs with RSA-PSS, "
                 "which the token provider does not do)");
        return -1;
    }
    if (!ASYNC_is_capable()) {
        snprintf(err, errlen, "tls: a token key needs OpenSSL ASYNC jobs, not available here");
        return -1;
    }
    if (SSL_CTX_use_PrivateKey(t->ssl, key) != 1) {
        ssl_err(err, errlen, "cannot use the token key", NULL);
        return -1;
    }
    SSL_CTX_set_mode(t->ssl, SSL_MODE_ASYNC);
    return 0;
}

int tls_ctx_create_with_key(const config *cfg, EVP_PKEY *key, tls_ctx **out, char *err,
                            size_t errlen)
{
    tls_ctx *t = NULL;
    int rc = -1;
    int floor = 0;

    if (strcmp(cfg->tls_min_version, "1.2") == 0) {
        floor = TLS1_2_VERSION;
    } else if (strcmp(cfg->tls_min_version, "1.3") == 0) {
        floor = TLS1_3_VERSION;
    } else {
        snprintf(err, errlen, "tls: min_version '%s' (want 1.2 or 1.3)", cfg->tls_min_version);
        goto out;
    }
    if (cfg->tls_cert[0] == '\0' || (cfg->tls_key[0] == '\0' && key == NULL)) {
        snprintf(err, errlen, "tls: listen is set, so cert and key (or key_label) are needed");
        goto out;
    }
    /* A token object is named by [tls] key_label, which arranges for its signatures to run
     * off the shards; a pkcs11: URI in key would not. The configuration resolved the value as
     * a relative path, so the URI may follow a directory. */
    const char *base = strrchr(cfg->tls_key, '/');
    if (strncmp(base != NULL ? base + 1 : cfg->tls_key, "pkcs11:", 7) == 0 ||
        strncmp(cfg->tls_key, "pkcs11:", 7) == 0) {
        snprintf(err, errlen, "tls: key must be a PEM file, not a token object (name a token "
                 "key with key_label: its signatures then run off the shards)");
        goto out;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        goto out;
    }
    atomic_init(&t->refs, 1);
    ERR_clear_error();
    t->ssl = SSL_CTX_new(TLS_server_method());
    t->bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "scepd shard conn");
    if (t->ssl == NULL || t->bio == NULL ||
        !BIO_meth_set_write_ex(t->bio, cbio_write) || !BIO_meth_set_read_ex(t->bio, cbio_read) ||
        !BIO_meth_set_ctrl(t->bio, cbio_ctrl) || !BIO_meth_set_create(t->bio, cbio_create)) {
        ssl_err(err, errlen, "cannot create the context", NULL);
        goto out;
    }
    if (SSL_CTX_use_certificate_chain_file(t->ssl, cfg->tls_cert) != 1) {
        ssl_err(err, errlen, "cannot load cert", cfg->tls_cert);
        goto out;
    }
    if (use_key(t, cfg, key, err, errlen) != 0)
        goto out;
    if (SSL_CTX_check_private_key(t->ssl) != 1) {
        ssl_err(err, errlen, "key does not match cert", cfg->tls_cert);
        goto out;
    }
    SSL_CTX_set_min_proto_version(t->ssl, floor);
    /* No renegotiation (TLS 1.2): input after the handshake is application data only.
     * Resumption works by stateless tickets; the server-side cache would be one lock shared
     * by every shard. Idle keep-alive connections give their record buffers back. */
    SSL_CTX_set_options(t->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(t->ssl, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(t->ssl, alpn_select, NULL);
    rc = 0;
out:
    if (rc == 0) {
        *out = t;
        t = NULL;
    }
    tls_ctx_free(t);
    return rc;
}

tls_ctx *tls_ctx_ref(tls_ctx *t)
{
    atomic_fetch_add(&t->refs, 1);
    return t;
}

void tls_ctx_free(tls_ctx *t)
{
    if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    SSL_CTX_free(t->ssl);
    BIO_meth_free(t->bio);
    free(t);
}

int tls_ktls_available(void)
{
    int lfd = -1, cfd = -1, ok = 0;
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || cfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(lfd, 1) != 0 || getsockname(lfd, (struct sockaddr *)&a, &len) != 0 ||
        connect(cfd, (struct sockaddr *)&a, sizeof(a)) != 0)
        goto out;
    /* The ULP attaches only to an established socket. */
    ok = setsockopt(cfd, IPPROTO_TCP, TCP_ULP, "tls", 3) == 0;
out:
    if (cfd >= 0)
        close(cfd);
    if (lfd >= 0)
        close(lfd);
    return ok;
}

int tls_conn_create(tls_ctx *ctx, tls_conn **out)
{
    tls_conn *t = calloc(1, sizeof(*t));
    BIO *b = NULL;
    int rc = -ENOMEM;
    if (t == NULL)
        goto out;
    t->in = malloc(TLS_IN_CAP);
    t->ssl = SSL_new(ctx->ssl);
    b = BIO_new(ctx->bio);
    if (t->in == NULL || t->ssl == NULL || b == NULL)
        goto out;
    BIO_set_data(b, t);
    SSL_set_bio(t->ssl, b, b);      /* one BIO both ways: SSL takes the one reference */
    b = NULL;
    SSL_set_accept_state(t->ssl);
    rc = 0;
out:
    if (rc == 0) {
        *out = t;
        t = NULL;
    }
    BIO_free(b);
    ERR_clear_error();
    tls_conn_destroy(t);
    return rc;
}

void tls_conn_destroy(tls_conn *t)
{
    if (t == NULL)
        return;
    if (t->async && pthread_equal(t->async_thread, pthread_self())) {
        /* Resumed before its result is there, the job fails its signature and ends; what
         * the failed handshake queues (an alert) is freed with the buffers. A job belongs to
         * the thread that runs it: on another (a teardown whose drain gave up) it is left. */
        SSL_do_handshake(t->ssl);
        ERR_clear_error();
    }
    SSL_free(t->ssl);
    free(t->in);
    free(t->out[0].p);
    free(t->out[1].p);
    free(t);
}

int tls_conn_async_fd(const tls_conn *t)
{
    OSSL_ASYNC_FD fds[2];
    size_t n = 0;
    if (!t->async || !SSL_get_all_async_fds(t->ssl, NULL, &n) || n != 1 ||
        !SSL_get_all_async_fds(t->ssl, fds, &n))
        return -1;
    return fds[0];
}

int tls_conn_ready(const tls_conn *t)
{
    return t->ready;
}

const char *tls_conn_version(const tls_conn *t)
{
    return SSL_get_version(t->ssl);
}

uint8_t *tls_in_space(tls_conn *t, size_t *room)
{
    if (t->in_pos == t->in_len) {
        t->in_pos = t->in_len = 0;
    } else if (t->in_pos > 0) {
        memmove(t->in, t->in + t->in_pos, t->in_len - t->in_pos);
        t->in_len -= t->in_pos;
        t->in_pos = 0;
    }
    *room = TLS_IN_CAP - t->in_len;
    return t->in + t->in_len;
}

void tls_in_commit(tls_conn *t, size_t n)
{
    t->in_len += n;
}

void tls_in_discard(tls_conn *t)
{
    t->in_pos = t->in_len = 0;
}

/* The reason of the first queued OpenSSL error, then an empty queue. */
static void failure(char *why, size_t whylen, const char *what)
{
    unsigned long e = ERR_peek_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    snprintf(why, whylen, "tls: %s%s%s", what, r ? ": " : "", r ? r : "");
    ERR_clear_error();
}

int tls_handshake(tls_conn *t, char *why, size_t whylen)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    t->async = 0;
    if (r == 1) {
        /* Nothing after the handshake signs: reads and writes leave async mode (no job, no
         * stack switch per record). */
        SSL_clear_mode(t->ssl, SSL_MODE_ASYNC);
        t->ready = 1;
        return TLS_DONE;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return TLS_AGAIN;
    if (e == SSL_ERROR_WANT_ASYNC) {
        t->async = 1;           /* paused: tls_conn_destroy unwinds it */
        t->async_thread = pthread_self();
        if (tls_conn_async_fd(t) >= 0)
            return TLS_ASYNC;
        snprintf(why, whylen, "tls: handshake paused without a wait fd");
        ERR_clear_error();
        return TLS_ERR;
    }
    unsigned long le = ERR_peek_error();
    if (ERR_GET_LIB(le) == ERR_LIB_SSL &&
        (ERR_GET_REASON(le) == SSL_R_HTTP_REQUEST ||
         ERR_GET_REASON(le) == SSL_R_HTTPS_PROXY_REQUEST)) {
        snprintf(why, whylen, "tls: plain HTTP on the TLS port");
        ERR_clear_error();
        return TLS_PLAIN;
    }
    failure(why, whylen, "handshake failed");
    return TLS_ERR;
}

int tls_read(tls_conn *t, char *dst, size_t cap, size_t *got, char *why, size_t whylen)
{
    size_t n = 0;
    ERR_clear_error();
    if (SSL_read_ex(t->ssl, dst, cap, &n) == 1) {
        *got = n;
        return TLS_DONE;
    }
    switch (SSL_get_error(t->ssl, 0)) {
    case SSL_ERROR_WANT_READ:
        return TLS_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_CLOSED;
    default:
        failure(why, whylen, "read failed");
        return TLS_ERR;
    }
}

int tls_write(tls_conn *t, const void *p, size_t n)
{
    size_t w = 0;
    if (n == 0)
        return 0;
    ERR_clear_error();
    /* The BIO takes everything or fails, so one call encrypts all n bytes or fails. */
    int ok = SSL_write_ex(t->ssl, p, n, &w) == 1 && w == n;
    ERR_clear_error();
    return ok ? 0 : -1;
}

void tls_shutdown(tls_conn *t)
{
    if (!t->ready)
        return;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
}

int tls_out_raw(tls_conn *t, const void *p, size_t n)
{
    return obuf_append(&t->out[!t->sending], p, n);
}

const uint8_t *tls_out_next(tls_conn *t, size_t *n)
{
    obuf *b = &t->out[t->sending];
    if (b->pos == b->len) {
        b->pos = b->len = 0;
        t->sending = !t->sending;
        b = &t->out[t->sending];
    }
    *n = b->len - b->pos;
    return b->p + b->pos;
}

void tls_out_sent(tls_conn *t, size_t n)
{
    t->out[t->sending].pos += n;
}
