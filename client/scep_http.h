/* scepc_http: HTTP/1.1 over plain TCP for SCEP clients (RFC 8894 section 4.1): the URL, the
 * GET form of a message, a response framer, and one small blocking exchange.
 *
 * The framer is incremental and allocation-free, so scep-loadgen's epoll loop calls it on
 * every read; the blocking exchange (one request on a fresh connection, "Connection: close")
 * is what tests/tools/scep_req and the load generator's setup phase use. Error convention of
 * the library (scep_client.h): 0 or a positive scepc_err, out-parameters set only on success.
 */
#ifndef SCEPD_SCEP_HTTP_H
#define SCEPD_SCEP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define SCEPC_HTTP_BODY_MAX (64u << 20)   /* the framer refuses a larger Content-Length */

typedef struct scepc_url {
    char host[256];
    char port[8];
    char path[2048];       /* "/" when the URL has none */
} scepc_url;

/* "http://host[:port][/path]": port all digits, path without '?', '#', space, CR or LF.
 * SCEPC_OK, or SCEPC_E_ARG (u untouched). No name resolution. */
int scepc_url_parse(const char *text, scepc_url *u);

/* The message of a GET PKIOperation: standard base64, '+', '/' and '=' percent-encoded.
 * Owned, NUL-terminated (scepc_free); NULL when out of memory. */
char *scepc_http_b64_query(const uint8_t *der, size_t len);

/* One response framed in the caller's buffer. */
typedef struct scepc_http_frame {
    int status;
    int close;                 /* the connection cannot be reused */
    const uint8_t *body;       /* into the parsed buffer (a chunked body is decoded in place) */
    size_t body_len;
    char ctype[128];           /* Content-Type, "" when absent */
} scepc_http_frame;

/* Frames one response from buf[0..len). eof: the peer has closed (completes a response framed
 * by the close). Returns the bytes it occupies (> 0), 0 when more are needed, -1 when it
 * cannot be framed (picohttpparser's convention). buf is modified (dechunking). */
long scepc_http_parse(uint8_t *buf, size_t len, int eof, scepc_http_frame *r);

/* A whole answer, owned by the caller. */
typedef struct scepc_http_reply {
    int status;
    char ctype[128];
    uint8_t *body;             /* NUL-terminated (not counted in len) */
    size_t len;
} scepc_http_reply;

/* One blocking request: method path?query (query may be NULL) with body (may be NULL; sent
 * with content_type) on a fresh connection to u, each socket step bounded by timeout_ms,
 * at most max_body bytes of answer. SCEPC_OK and *out (any HTTP status; free with
 * scepc_http_reply_free), SCEPC_E_NOMEM, or SCEPC_E_HTTP (connect, send, receive or framing
 * failed). */
int scepc_http_exchange(const scepc_url *u, const char *method, const char *query,
                        const char *content_type, const uint8_t *body, size_t blen,
                        const char *user_agent, int timeout_ms, size_t max_body,
                        scepc_http_reply *out);

/* Frees what r owns and zeroes it; accepts a zeroed reply. */
void scepc_http_reply_free(scepc_http_reply *r);

#endif
