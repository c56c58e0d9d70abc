/* Fuzz target for tests/emulators/intune_responder_http.c and _calls.c, the request parser
 * and the Intune calls of intune-responder (the benchmarks' stand-in for Intune): the input is
 * a byte stream on one connection. Each head is parsed, checked against the limits and its
 * own prefix (one byte less is "incomplete"), then answered as the responder would (routes,
 * tokens with a form body, bearer checks, the transactionId check), with every answer framed
 * as one HTTP/1.1 response. Violated invariants abort(), so the replay driver and libFuzzer
 * both flag them. The deadline heap is the event loop's (not linked): held answers count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/emulators/intune_responder.h"

#define MAX_BODY 4096

static size_t held;

int rsp_heap_push(rsp *R, uint64_t due, uint32_t slot, uint32_t gen, uint32_t linger)
{
    (void)R; (void)due; (void)slot; (void)gen; (void)linger;
    held++;
    return 0;
}

/* The answer queued in c->out is "HTTP/1.1 " ... with a Content-Length matching its body. */
static void check_answer(const conn *c, size_t from)
{
    const char *a = c->out + from;
    size_t n = c->out_len - from;
    if (n < 12 || memcmp(a, "HTTP/1.1 ", 9) != 0)
        abort();
    const char *cl = memmem(a, n, "Content-Length: ", 16), *end = memmem(a, n, "\r\n\r\n", 4);
    if (cl == NULL || end == NULL || cl > end)
        abort();
    size_t len = strtoul(cl + 16, NULL, 10);
    if ((size_t)(end + 4 - a) + len != n)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);       /* exact size, so ASan sees an over-read */
    rsp R;
    conn c;
    memset(&R, 0, sizeof(R));
    memset(&c, 0, sizeof(c));
    if (buf == NULL)
        return 0;
    if (size > 0)
        memcpy(buf, data, size);
    R.secret = "s";
    R.tenant = "t";
    R.client_id = "c";
    R.token_life = 60;
    R.delay_ms = size % 2;                     /* held or answered at once */
    R.conns = &c;
    R.now = 1;
    memcpy(R.tok[0], "tok-api-x", 10);
    memcpy(R.tok[1], "tok-graph-x", 12);
    R.tok_until[0] = R.tok_until[1] = 2;
    memcpy(R.tok_path, "/t/oauth2/v2.0/token", 21);
    memcpy(R.disc, "{}", 3);
    R.disc_len = 2;
    size_t off = 0;
    while (off < size) {
        req r;
        int rc = rsp_parse_head(buf + off, size - off, MAX_BODY, &r);
        if (rc == 1)
            break;
        if (rc != 0) {
            if (rc != 400 && rc != 413 && rc != 417 && rc != 431 && rc != 501 && rc != 505)
                abort();
            break;
        }
        if (r.head_len > HEAD_MAX || r.head_len > size - off || r.body_len > MAX_BODY ||
            r.method < buf + off || r.target + r.path_len > buf + off + r.head_len ||
            (r.auth != NULL && r.auth + r.auth_len > buf + off + r.head_len))
            abort();
        req p;
        if (rsp_parse_head(buf + off, r.head_len - 1, MAX_BODY, &p) != 1)
            abort();
        if (r.body_len > size - off - r.head_len)
            break;
        size_t before = c.out_len, was_held = held;
        c.closing = 0;
        rsp_dispatch(&R, &c, &r, buf + off + r.head_len);
        if (held == was_held)
            check_answer(&c, before);
        else if (c.out_len != before)
            abort();                           /* a held request answers nothing yet */
        c.held = 0;
        off += r.head_len + r.body_len;
    }
    free(c.out);
    free(buf);
    return 0;
}
