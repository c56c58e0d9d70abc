/* tls: TLS 1.2/1.3 for the shards' connections (docs/http.md, "TLS").
 *
 * OpenSSL never touches a socket here. Each connection's SSL reads and writes through a BIO
 * whose read side is the connection's ciphertext input buffer (filled by the shard's
 * io_uring recv) and whose write side is the connection's ciphertext output buffers (sent by
 * the shard's io_uring send). Plaintext is decrypted straight into the shard's read buffer,
 * where the zero-copy HTTP parser works as for plain HTTP. Nothing here blocks: every call
 * does what the bytes at hand allow and returns.
 *
 * The server key is a PEM file, or a key in the token ([tls] key_label). With a token key the
 * connections run in OpenSSL's async mode: the handshake's signature is queued to the token's
 * key threads (hsm_offload_start) and the handshake pauses (TLS_ASYNC) until the fd that
 * tls_conn_async_fd names is readable, so a shard never waits for a PKCS#11 call.
 *
 * Threads: a tls_ctx is immutable after tls_ctx_create and shared by every shard (reference
 * counted); a tls_conn belongs to one connection of one shard and is used by that shard's
 * thread only.
 */
#ifndef SCEPD_TLS_H
#define SCEPD_TLS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "engine/common/config.h"

typedef struct tls_ctx tls_ctx;
typedef struct tls_conn tls_conn;

/* Outcome of tls_handshake and tls_read. */
enum tls_rc {
    TLS_ERR       = -1,   /* fatal: why says what; output may hold an alert to send */
    TLS_PLAIN     = -2,   /* handshake: the client spoke plain HTTP to the TLS port */
    TLS_AGAIN     = 0,    /* needs more input */
    TLS_DONE      = 1,    /* handshake complete / plaintext delivered */
    TLS_CLOSED    = 2,    /* the peer sent close_notify */
    TLS_ASYNC     = 3,    /* handshake: paused for the token's key threads; poll
                             tls_conn_async_fd for input, then call tls_handshake again */
};

/* Loads cfg->tls_cert (PEM: the server certificate, then its chain) and cfg->tls_key (PEM
 * private key file), checks they match, and sets the protocol floor (cfg->tls_min_version
 * "1.2" or "1.3"). Returns 0 with *out (one reference), or -1 with a message in err. */
int  tls_ctx_create(const config *cfg, tls_ctx **out, char *err, size_t errlen);
/* The same with the server key given: key (not NULL; the context takes its own reference) is
 * a token key (hsm_key_load, EC only: TLS 1.3 signs RSA keys with PSS, which the token
 * provider does not do), whose signatures the caller has arranged to run off the shards
 * (hsm_offload_start); cfg->tls_key must be empty. Connections then run in async mode. */
int  tls_ctx_create_with_key(const config *cfg, EVP_PKEY *key, tls_ctx **out, char *err,
                             size_t errlen);
/* Takes one more reference. */
tls_ctx *tls_ctx_ref(tls_ctx *t);
/* Drops one reference; frees on the last. Accepts NULL. */
void tls_ctx_free(tls_ctx *t);
/* 1 if this kernel offers the kTLS upper layer protocol (setsockopt TCP_ULP "tls"), else 0.
 * scepd does not use kTLS (docs/http.md says why); bench/tls.sh reports this. */
int  tls_ktls_available(void);

/* A server-side connection in the accept state. Returns 0 or -ENOMEM. */
int  tls_conn_create(tls_ctx *ctx, tls_conn **out);
/* Frees the SSL and the buffers. Accepts NULL. A handshake paused on TLS_ASYNC is resumed
 * once first, so that it fails at once and its job ends (the key thread's late result is
 * dropped): never waits. */
void tls_conn_destroy(tls_conn *t);
/* While the last tls_handshake returned TLS_ASYNC: the fd to poll for input (readable once
 * the key thread is done); otherwise -1. */
int  tls_conn_async_fd(const tls_conn *t);
/* 1 once the handshake has completed. */
int  tls_conn_ready(const tls_conn *t);
/* The negotiated protocol ("TLSv1.3", ...) for logs and tests. */
const char *tls_conn_version(const tls_conn *t);

/* Input: where the next recv may write (*room bytes; 0 when the buffer is full of ciphertext
 * not yet decrypted), then how many bytes it wrote. The pointer stays valid until the next
 * tls_in_space, tls_in_discard or tls_conn_destroy: the shard calls tls_in_space only while
 * no recv is in flight. */
uint8_t *tls_in_space(tls_conn *t, size_t *room);
void     tls_in_commit(tls_conn *t, size_t n);
/* Drops buffered ciphertext (a lingering connection reads only to drain). */
void     tls_in_discard(tls_conn *t);

/* Advances the handshake with the buffered input. TLS_DONE, TLS_AGAIN, TLS_ASYNC (token key:
 * wait for tls_conn_async_fd; do not call again before it fired), TLS_PLAIN (nothing to send:
 * the caller may answer in plain HTTP with tls_out_raw) or TLS_ERR (why set). */
int  tls_handshake(tls_conn *t, char *why, size_t whylen);
/* Decrypts into dst (cap > 0 bytes): TLS_DONE with *got > 0, TLS_AGAIN, TLS_CLOSED or
 * TLS_ERR (why set). */
int  tls_read(tls_conn *t, char *dst, size_t cap, size_t *got, char *why, size_t whylen);
/* Encrypts n bytes of plaintext into the output. 0, or -1 (output over its cap, or an
 * OpenSSL failure). */
int  tls_write(tls_conn *t, const void *p, size_t n);
/* Queues close_notify (after a completed handshake only; otherwise a no-op). */
void tls_shutdown(tls_conn *t);
/* Appends bytes to the output unencrypted (the plain-HTTP answer to TLS_PLAIN). */
int  tls_out_raw(tls_conn *t, const void *p, size_t n);

/* Output: the bytes to send next (*n, 0 when nothing is queued). The returned range stays
 * put until tls_out_sent consumed all of it, even if more output is queued meanwhile, so a
 * send may be in flight on it. Call again only after the previous send completed. */
const uint8_t *tls_out_next(tls_conn *t, size_t *n);
/* The send completed with n bytes of the range tls_out_next gave. */
void tls_out_sent(tls_conn *t, size_t n);
/* Bytes queued and not yet sent. */
size_t tls_out_pending(const tls_conn *t);

#endif
