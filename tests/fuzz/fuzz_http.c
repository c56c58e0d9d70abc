/* Fuzz target for engine/net/http.c: request-head parsing (checked against every prefix for
 * incremental consistency), query-parameter lookup, percent- and base64-decoding of the
 * SCEP "message" parameter, and a base64 encode/decode round trip of the raw input.
 * Violated invariants abort(), so the replay driver and libFuzzer both flag them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/net/http.h"

static const http_limits LIM = { .max_url = 2048, .max_header = 1024, .max_body = 4096 };

static void check_decoders(http_slice v)
{
    char *pd = malloc(v.n + 1);
    uint8_t *bd = malloc(3 * (v.n / 4) + 3);
    if (pd == NULL || bd == NULL)
        goto out;
    long n = http_percent_decode(v, pd, 0);
    if (n > (long)v.n)
        abort();
    long m = http_base64_decode(v.p, v.n, bd);
    if (m > (long)(3 * (v.n / 4) + 3))
        abort();
    if (n >= 0) {
        m = http_base64_decode(pd, (size_t)n, bd);
        if (m > (long)(3 * ((size_t)n / 4) + 3))
            abort();
    }
out:
    free(pd);
    free(bd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exact-size copy so an over-read is caught by ASan. */
    char *buf = malloc(size ? size : 1);
    if (buf == NULL)
        return 0;
    buf[0] = '\0';
    if (size > 0)
        memcpy(buf, data, size);

    http_request req;
    int rc = http_parse_request(buf, size, &LIM, &req);
    if (rc > 0) {
        if ((size_t)rc > size || req.header_len != (size_t)rc || req.nheaders > HTTP_MAX_HEADERS)
            abort();
        if (req.target.n > LIM.max_url || req.content_length > LIM.max_body)
            abort();
        http_slice v;
        (void)http_find_header(&req, "host", &v);
        if (http_query_param(req.query, "message", &v))
            check_decoders(v);
        (void)http_query_param(req.query, "operation", &v);
    } else if (rc != -2 && rc != -400 && rc != -413 && rc != -414 && rc != -431 &&
               rc != -501 && rc != -505) {
        abort();
    }

    /* Every prefix must answer -2 or the final answer. Bounded to keep replay fast. */
    if (size <= 1024) {
        for (size_t k = 0; k < size; k++) {
            http_request r2;
            int p = http_parse_request(buf, k, &LIM, &r2);
            if (p != -2 && p != rc)
                abort();
            if (rc > 0 && k < (size_t)rc && p != -2)
                abort();
        }
    }

    /* The whole input as a query string and as base64 text. */
    http_slice all = { buf, size };
    http_slice v;
    if (http_query_param(all, "message", &v))
        check_decoders(v);
    check_decoders(all);

    char *enc = malloc(4 * ((size + 2) / 3) + 1);
    uint8_t *dec = malloc(3 * ((4 * ((size + 2) / 3)) / 4) + 3);
    if (enc != NULL && dec != NULL) {
        size_t el = http_base64_encode(data, size, enc);
        long dl = http_base64_decode(enc, el, dec);
        if (dl != (long)size || (size > 0 && memcmp(dec, data, size) != 0))
            abort();
    }
    free(enc);
    free(dec);
    free(buf);
    return 0;
}
