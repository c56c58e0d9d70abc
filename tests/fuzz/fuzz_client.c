/* Fuzz target for what the client library (client/) parses: the incremental HTTP response
 * framer scepc_http_parse of client/scep_http.c (the load generator calls it on every read of
 * a server's answer), then the framed body as a GetCACaps and a GetCACert answer (with the
 * frame's Content-Type), the whole input as a GetCACert body (content type sniffed), and as
 * text the URL, subject and subjectAltName parsers of the command-line tools; plus the GET
 * query encoder.
 *
 * Framer invariants: the result is -1, 0 or a length within the input; a framed response has
 * a status in 100..999, a body inside the bytes it occupies and a terminated Content-Type;
 * framing is incremental (every shorter prefix needs more, the framed bytes alone frame to the
 * same length, and the peer closing changes nothing once a response is framed). The framer
 * dechunks in place, so each call gets a fresh exact-size copy (ASan sees any over-read).
 * Violated invariants abort(), so the replay driver and libFuzzer both flag them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "client/scep_client.h"
#include "client/scep_http.h"

/* Frames data[0..len) from a fresh copy and checks the frame; *fr receives it with body
 * cleared (the copy is gone when this returns), the body bytes go to body_out (may be NULL). */
static long frame(const uint8_t *data, size_t len, int eof, scepc_http_frame *fr,
                  uint8_t *body_out)
{
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        abort();
    if (len > 0)
        memcpy(buf, data, len);
    long rc = scepc_http_parse(buf, len, eof, fr);
    if (rc < -1 || rc > (long)len)
        abort();
    if (rc > 0) {
        if (fr->status < 100 || fr->status > 999 || memchr(fr->ctype, '\0', sizeof(fr->ctype)) == NULL)
            abort();
        if (fr->body != NULL) {
            if (fr->body < buf || fr->body_len > (size_t)rc ||
                (size_t)(fr->body - buf) > (size_t)rc - fr->body_len)
                abort();
            if (body_out != NULL && fr->body_len > 0)
                memcpy(body_out, fr->body, fr->body_len);
        } else if (fr->body_len != 0) {
            abort();
        }
    }
    fr->body = NULL;
    free(buf);
    return rc;
}

#define ALL_CAPS (SCEPC_CAP_POSTPKIOPERATION | SCEPC_CAP_SHA1 | SCEPC_CAP_SHA256 | \
                  SCEPC_CAP_SHA512 | SCEPC_CAP_AES | SCEPC_CAP_DES3 | SCEPC_CAP_SCEPSTANDARD | \
                  SCEPC_CAP_RENEWAL | SCEPC_CAP_GETNEXTCACERT)

/* A server's answer body: capabilities are known flags; a CA set has its three roles among
 * its certificates; a refusal is a code of the error table. */
static void check_body(const uint8_t *body, size_t len, const char *ctype)
{
    scepc_caset *set = NULL;

    if ((scepc_parse_caps((const char *)body, len) & ~(unsigned)ALL_CAPS) != 0)
        abort();
    int rc = scepc_parse_cacert(body, len, ctype, &set);
    if (rc == SCEPC_OK) {
        STACK_OF(X509) *certs = scepc_caset_certs(set);
        if (set == NULL || sk_X509_num(certs) < 1 ||
            sk_X509_find(certs, scepc_caset_ca(set)) < 0 ||
            sk_X509_find(certs, scepc_caset_recipient(set)) < 0 ||
            sk_X509_find(certs, scepc_caset_signer(set)) < 0)
            abort();
    } else if (rc <= SCEPC_OK || rc >= SCEPC_E__COUNT || set != NULL) {
        abort();
    }
    scepc_caset_destroy(set);
    ERR_clear_error();
}

static void check_framer(const uint8_t *data, size_t size)
{
    scepc_http_frame f, g;
    uint8_t *b1 = malloc(size ? size : 1), *b2 = malloc(size ? size : 1);
    if (b1 == NULL || b2 == NULL)
        abort();

    long rc = frame(data, size, 0, &f, b1);
    long rc_eof = frame(data, size, 1, &g, b2);
    if (rc > 0) {
        /* framed without the close: the close changes nothing */
        if (rc_eof != rc || g.status != f.status || g.body_len != f.body_len ||
            memcmp(b1, b2, f.body_len) != 0 || strcmp(f.ctype, g.ctype) != 0)
            abort();
        /* the framed bytes alone are the same response */
        if (frame(data, (size_t)rc, 0, &g, b2) != rc || g.body_len != f.body_len ||
            memcmp(b1, b2, f.body_len) != 0)
            abort();
        /* every shorter prefix needs more (sampled above 512 bytes to keep replay fast) */
        size_t step = rc <= 512 ? 1 : (size_t)rc / 64;
        for (size_t k = 0; k < (size_t)rc; k += step)
            if (frame(data, k, 0, &g, NULL) != 0)
                abort();
        check_body(b1, f.body_len, f.ctype[0] != '\0' ? f.ctype : NULL);
    } else if (rc == 0 && size > 0) {
        /* what needs more bytes was not refusable one byte earlier */
        if (frame(data, size - 1, 0, &g, NULL) == -1)
            abort();
    }
    free(b1);
    free(b2);
}

/* The input as text: a URL, a subject, a subjectAltName, as the tools take them. */
static void check_text(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    scepc_url u;
    X509_NAME *name = NULL;
    scepc_san san;
    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    int rc = scepc_name_parse(s, &name);
    if ((rc == SCEPC_OK) != (name != NULL) || (name != NULL && X509_NAME_entry_count(name) < 1) ||
        (rc != SCEPC_OK && rc != SCEPC_E_SUBJECT && rc != SCEPC_E_NOMEM))
        abort();
    X509_NAME_free(name);
    rc = scepc_san_parse(s, &san);
    if (rc == SCEPC_OK) {
        if (san.value <= s || san.value >= s + size || *san.value == '\0' ||
            (unsigned)san.type > SCEPC_SAN_IP)
            abort();
    } else if (rc != SCEPC_E_SAN) {
        abort();
    }
    ERR_clear_error();
    if (scepc_url_parse(s, &u) == SCEPC_OK) {
        size_t pl = strnlen(u.port, sizeof(u.port));
        if (memchr(u.host, '\0', sizeof(u.host)) == NULL || u.host[0] == '\0' ||
            pl == 0 || pl == sizeof(u.port) || strspn(u.port, "0123456789") != pl ||
            memchr(u.path, '\0', sizeof(u.path)) == NULL || u.path[0] != '/' ||
            strpbrk(u.path, "?# \r\n") != NULL)
            abort();
    }
    free(s);
}

/* The GET query is standard base64 with '+', '/' and '=' percent-encoded: undoing that must
 * give back the input. */
static void check_query(const uint8_t *data, size_t size)
{
    char *q = scepc_http_b64_query(data, size);
    if (q == NULL)
        abort();
    size_t n = strlen(q), w = 0;
    unsigned char *b64 = malloc(n + 1), *out = malloc(n + 3);
    if (b64 == NULL || out == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (q[i] == '%') {
            if (n - i < 3)
                abort();
            if (strncmp(q + i, "%2B", 3) == 0)
                b64[w++] = '+';
            else if (strncmp(q + i, "%2F", 3) == 0)
                b64[w++] = '/';
            else if (strncmp(q + i, "%3D", 3) == 0)
                b64[w++] = '=';
            else
                abort();
            i += 2;
        } else if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                          q[i]) != NULL) {
            b64[w++] = (unsigned char)q[i];
        } else {
            abort();
        }
    }
    if (w != 4 * ((size + 2) / 3))
        abort();
    int dl = EVP_DecodeBlock(out, b64, (int)w);
    /* EVP_DecodeBlock counts the padding bytes as output */
    size_t pad = size % 3 == 0 ? 0 : 3 - size % 3;
    if (dl < 0 || (size_t)dl != size + pad || (size > 0 && memcmp(out, data, size) != 0))
        abort();
    free(b64);
    free(out);
    scepc_free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size heap copy, so ASan sees any read past size. */
    uint8_t *in = malloc(size ? size : 1);
    if (in == NULL)
        abort();
    in[0] = 0;
    if (size > 0)
        memcpy(in, data, size);
    check_framer(in, size);
    check_body(in, size, NULL);
    check_text(in, size);
    if (size <= 4096)
        check_query(in, size);
    free(in);
    return 0;
}
