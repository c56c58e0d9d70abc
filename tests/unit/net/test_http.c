/* Tests for engine/net/http.c. Every input is placed right before a PROT_NONE page, so a read
 * one byte past the end crashes the test instead of passing silently. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/net/http.h"

static void *g_map;
static size_t g_maplen;

/* Copies n bytes so that they end exactly at a guard page. Valid until the next call. */
static const char *guard(const void *src, size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (n + pg - 1) / pg * pg;
    if (body == 0)
        body = pg;
    if (g_map != NULL)
        munmap(g_map, g_maplen);
    g_maplen = body + pg;
    g_map = mmap(NULL, g_maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(g_map != MAP_FAILED);
    assert_int_equal(mprotect((char *)g_map + body, pg, PROT_NONE), 0);
    char *p = (char *)g_map + body - n;
    if (n > 0)
        memcpy(p, src, n);
    return p;
}

static const http_limits LIM = { .max_url = 65534, .max_header = 16384, .max_body = 262144 };

static int parse_lim(const char *s, size_t n, const http_limits *lim, http_request *r)
{
    return http_parse_request(guard(s, n), n, lim, r);
}

static int parse(const char *s, http_request *r)
{
    return parse_lim(s, strlen(s), &LIM, r);
}

static int slice_is(http_slice s, const char *lit)
{
    return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

/* Feeds every prefix: each must give -2 or the final answer, and the full input must give
 * want. Checks incremental parsing is consistent with one-shot parsing. */
static void check_prefixes(const char *s, size_t n, const http_limits *lim, int want)
{
    http_request r;
    for (size_t k = 0; k < n; k++) {
        int rc = parse_lim(s, k, lim, &r);
        if (rc != -2 && rc != want)
            fail_msg("prefix %zu of %zu: got %d, want -2 or %d", k, n, rc, want);
        if (want > 0 && rc != -2)
            fail_msg("prefix %zu: success before the head ended", k);
    }
    assert_int_equal(parse_lim(s, n, lim, &r), want);
}

static void test_simple_get(void **state)
{
    http_request r;
    const char *s = "GET /scep?operation=GetCACaps&message=x HTTP/1.1\r\n"
                    "Host: example\r\n"
                    "User-Agent:  sscep  \t\r\n"
                    "\r\n";
    assert_int_equal(parse(s, &r), (int)strlen(s));
    assert_true(slice_is(r.method, "GET"));
    assert_true(slice_is(r.target, "/scep?operation=GetCACaps&message=x"));
    assert_true(slice_is(r.path, "/scep"));
    assert_true(slice_is(r.query, "operation=GetCACaps&message=x"));
    assert_int_equal(r.minor_version, 1);
    assert_int_equal(r.nheaders, 2);
    assert_true(slice_is(r.headers[1].name, "User-Agent"));
    assert_true(slice_is(r.headers[1].value, "sscep"));
    assert_int_equal(r.content_length, 0);
    assert_int_equal(r.keep_alive, 1);
    assert_int_equal(r.header_len, strlen(s));

    http_slice v;
    assert_int_equal(http_find_header(&r, "HOST", &v), 1);
    assert_true(slice_is(v, "example"));
    assert_int_equal(http_find_header(&r, "Content-Type", &v), 0);
}

static void test_no_query_any_method(void **state)
{
    http_request r;
    assert_true(parse("PROPFIND /a/b HTTP/1.0\r\n\r\n", &r) > 0);
    assert_true(slice_is(r.method, "PROPFIND"));
    assert_true(slice_is(r.path, "/a/b"));
    assert_int_equal(r.query.n, 0);
    assert_int_equal(r.minor_version, 0);
    assert_int_equal(r.nheaders, 0);
    assert_int_equal(r.keep_alive, 0);
    assert_true(parse("GET /x? HTTP/1.1\r\n\r\n", &r) > 0);
    assert_true(slice_is(r.path, "/x"));
    assert_int_equal(r.query.n, 0);
}

static void test_post_body(void **state)
{
    http_request r;
    const char *s = "POST /scep?operation=PKIOperation HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    int rc = parse(s, &r);
    assert_int_equal(rc, (int)strlen(s) - 5);
    assert_int_equal(r.content_length, 5);
    assert_true(slice_is(r.method, "POST"));
}

static void test_bare_lf_and_leading_eol(void **state)
{
    http_request r;
    const char *s = "\r\n\nGET / HTTP/1.1\nHost: a\nX: b\n\n";
    assert_int_equal(parse(s, &r), (int)strlen(s));
    assert_int_equal(r.nheaders, 2);
    assert_true(slice_is(r.headers[1].value, "b"));
    /* Mixed line ends in one head. */
    s = "GET / HTTP/1.1\r\nA: 1\nB: 2\r\n\n";
    assert_int_equal(parse(s, &r), (int)strlen(s));
    assert_int_equal(r.nheaders, 2);
    /* Too many empty lines before the request line. */
    assert_int_equal(parse("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n", &r), -400);
}

static void test_keep_alive_matrix(void **state)
{
    http_request r;
    assert_true(parse("GET / HTTP/1.1\r\n\r\n", &r) > 0);
    assert_int_equal(r.keep_alive, 1);
    assert_true(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &r) > 0);
    assert_int_equal(r.keep_alive, 0);
    assert_true(parse("GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n", &r) > 0);
    assert_int_equal(r.keep_alive, 0);
    assert_true(parse("GET / HTTP/1.0\r\n\r\n", &r) > 0);
    assert_int_equal(r.keep_alive, 0);
    assert_true(parse("GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n", &r) > 0);
    assert_int_equal(r.keep_alive, 1);
    assert_true(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
                      &r) > 0);
    assert_int_equal(r.keep_alive, 0);
}

static void test_pipelined(void **state)
{
    const char *s = "POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                    "GET /b HTTP/1.1\r\n\r\n"
                    "GET /c HTTP/1.1\r\n\r\n";
    size_t n = strlen(s), off = 0;
    const char *g = guard(s, n);
    const char *want[] = { "/a", "/b", "/c" };
    http_request r;
    for (int i = 0; i < 3; i++) {
        int rc = http_parse_request(g + off, n - off, &LIM, &r);
        assert_true(rc > 0);
        assert_true(slice_is(r.path, want[i]));
        off += (size_t)rc + r.content_length;
    }
    assert_int_equal(off, n);
}

static void test_incremental(void **state)
{
    static const struct { const char *s; int want; } cases[] = {
        { "GET /scep?operation=GetCACert HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 0 },
        { "\nPOST / HTTP/1.0\nContent-Length: 10\n\n", 0 },
        { "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 0 },
        { "GET / HTTP/2.0\r\n\r\n", -505 },
        { "GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", -400 },
        { "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", -501 },
        { "GET / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", -413 },
        { "GET / HTTP/1.1\rX\n\r\n", -400 },
        { "G@T / HTTP/1.1\r\n\r\n", -400 },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = strlen(cases[i].s);
        check_prefixes(cases[i].s, n, &LIM, cases[i].want == 0 ? (int)n : cases[i].want);
    }
    /* Limit errors, with small limits so every prefix can be tried. */
    http_limits small = { .max_url = 10, .max_header = 20, .max_body = 100 };
    const char *u = "GET /0123456789ab HTTP/1.1\r\n\r\n";
    check_prefixes(u, strlen(u), &small, -414);
    const char *h = "GET / HTTP/1.1\r\nX-Long: 0123456789012345\r\n\r\n";
    check_prefixes(h, strlen(h), &small, -431);
}

static void test_414(void **state)
{
    http_request r;
    http_limits lim = LIM;
    size_t n = 70000;
    char *s = malloc(n + 64);
    assert_non_null(s);
    memcpy(s, "GET /", 5);
    memset(s + 5, 'a', n);
    /* Rejected before the line ends: only the target bytes so far, no space, no CRLF. */
    assert_int_equal(parse_lim(s, 5 + n, &lim, &r), -414);
    /* Exactly max_url bytes of target is fine... */
    size_t t = lim.max_url - 1;
    memcpy(s + 5 + t, " HTTP/1.1\r\n\r\n", 13);
    assert_int_equal(parse_lim(s, 5 + t + 13, &lim, &r), (int)(5 + t + 13));
    assert_int_equal(r.target.n, lim.max_url);
    /* ...one more is not, even with the rest of the line present. */
    s[5 + t] = 'a';
    memcpy(s + 5 + t + 1, " HTTP/1.1\r\n\r\n", 13);
    assert_int_equal(parse_lim(s, 5 + t + 14, &lim, &r), -414);
    /* With fewer bytes than the limit it is only incomplete. */
    assert_int_equal(parse_lim(s, 5 + 1000, &lim, &r), -2);
    free(s);
}

static void test_431(void **state)
{
    http_request r;
    http_limits lim = { .max_url = 100, .max_header = 40, .max_body = 100 };
    /* Header block "X: 0123...\r\n\r\n" of exactly 40 bytes passes, 41 fails. */
    char s[256];
    const char *line = "GET / HTTP/1.1\r\n";
    size_t vlen = 40 - 3 - 2 - 2;
    snprintf(s, sizeof(s), "%sX: %.*s\r\n\r\n", line, (int)vlen,
             "0123456789012345678901234567890123456789");
    assert_int_equal(strlen(s), strlen(line) + 40);
    assert_int_equal(parse_lim(s, strlen(s), &lim, &r), (int)strlen(s));
    snprintf(s, sizeof(s), "%sX: %.*s\r\n\r\n", line, (int)vlen + 1,
             "0123456789012345678901234567890123456789");
    assert_int_equal(parse_lim(s, strlen(s), &lim, &r), -431);
    /* An unterminated block longer than the limit is rejected early. */
    snprintf(s, sizeof(s), "%sX: %s", line, "0123456789012345678901234567890123456789");
    assert_int_equal(parse_lim(s, strlen(s), &lim, &r), -431);
    /* And a shorter unterminated one is only incomplete. */
    snprintf(s, sizeof(s), "%sX: 01", line);
    assert_int_equal(parse_lim(s, strlen(s), &lim, &r), -2);
}

static void test_header_count(void **state)
{
    http_request r;
    char s[2048];
    for (int count = HTTP_MAX_HEADERS; count <= HTTP_MAX_HEADERS + 1; count++) {
        size_t o = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\n");
        for (int i = 0; i < count; i++)
            o += (size_t)snprintf(s + o, sizeof(s) - o, "H%d: v\r\n", i);
        o += (size_t)snprintf(s + o, sizeof(s) - o, "\r\n");
        int rc = parse_lim(s, o, &LIM, &r);
        if (count == HTTP_MAX_HEADERS) {
            assert_int_equal(rc, (int)o);
            assert_int_equal(r.nheaders, HTTP_MAX_HEADERS);
        } else {
            assert_int_equal(rc, -431);
        }
    }
}

static void test_content_length(void **state)
{
    http_request r;
    http_limits lim = { .max_url = 100, .max_header = 1000, .max_body = 100 };
    const char *ok[] = { "Content-Length: 100\r\n", "content-length:0\r\n",
                         "Content-Length: 7\r\nContent-Length: 7\r\n" };
    const char *bad400[] = { "Content-Length: \r\n", "Content-Length: -1\r\n",
                             "Content-Length: 1 2\r\n", "Content-Length: 0x10\r\n",
                             "Content-Length: 7\r\nContent-Length: 8\r\n",
                             "Content-Length: 5, 5\r\n" };
    const char *bad413[] = { "Content-Length: 101\r\n",
                             "Content-Length: 99999999999999999999999999999999\r\n" };
    char s[256];
    for (size_t i = 0; i < 3; i++) {
        snprintf(s, sizeof(s), "POST / HTTP/1.1\r\n%s\r\n", ok[i]);
        assert_true(parse_lim(s, strlen(s), &lim, &r) > 0);
    }
    assert_int_equal(r.content_length, 7);
    for (size_t i = 0; i < 6; i++) {
        snprintf(s, sizeof(s), "POST / HTTP/1.1\r\n%s\r\n", bad400[i]);
        assert_int_equal(parse_lim(s, strlen(s), &lim, &r), -400);
    }
    for (size_t i = 0; i < 2; i++) {
        snprintf(s, sizeof(s), "POST / HTTP/1.1\r\n%s\r\n", bad413[i]);
        assert_int_equal(parse_lim(s, strlen(s), &lim, &r), -413);
    }
}

static void test_transfer_encoding(void **state)
{
    http_request r;
    assert_int_equal(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r), -501);
    assert_int_equal(parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &r),
                     -501);
    assert_true(parse("POST / HTTP/1.1\r\nTransfer-Encoding: Identity\r\n\r\n", &r) > 0);
}

static void test_version(void **state)
{
    http_request r;
    assert_int_equal(parse("GET / HTTP/2.0\r\n\r\n", &r), -505);
    assert_int_equal(parse("GET / HTTP/1.2\r\n\r\n", &r), -505);
    assert_int_equal(parse("GET / HTTP/0.9\r\n\r\n", &r), -505);
    assert_int_equal(parse("GET / HTTP/1.10\r\n\r\n", &r), -400);
    assert_int_equal(parse("GET / HTTP/1.x\r\n\r\n", &r), -400);
    assert_int_equal(parse("GET / HTTPS/1.1\r\n\r\n", &r), -400);
    assert_int_equal(parse("GET / http/1.1\r\n\r\n", &r), -400);
    assert_int_equal(parse("GET /\r\n\r\n", &r), -400);
}

static void test_malformed(void **state)
{
    http_request r;
    static const char *bad[] = {
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",   /* a TLS ClientHello */
        " / HTTP/1.1\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET /a\x01 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/1.1\r\n: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\n\rX",
        "GET\t/ HTTP/1.1\r\n\r\n",
        "GETTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT / HTTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], &r);
        if (rc != -400)
            fail_msg("case %zu: got %d", i, rc);
    }
    /* A NUL inside a value. */
    static const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    assert_int_equal(parse_lim(nul, sizeof(nul) - 1, &LIM, &r), -400);
    /* Empty input and a lone method are incomplete, not errors. */
    assert_int_equal(parse_lim("", 0, &LIM, &r), -2);
    assert_int_equal(parse("GET", &r), -2);
    /* Tabs and obs-text in values are allowed. */
    assert_true(parse("GET / HTTP/1.1\r\nX: a\tb\xc3\xa9\r\n\r\n", &r) > 0);
}

static void test_out_untouched_on_failure(void **state)
{
    http_request r;
    memset(&r, 0x5a, sizeof(r));
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\n", &r), -2);
    assert_int_equal(r.nheaders, (size_t)0x5a5a5a5a5a5a5a5aULL);
    assert_int_equal(parse("GET / HTTP/3.0\r\n\r\n", &r), -505);
    assert_int_equal(r.nheaders, (size_t)0x5a5a5a5a5a5a5a5aULL);
}

static void test_query_param(void **state)
{
    http_slice v;
    const char *q = "operation=PKIOperation&message=AB%2Bcd&flag&empty=&operationX=1";
    http_slice qs = { guard(q, strlen(q)), strlen(q) };
    assert_int_equal(http_query_param(qs, "operation", &v), 1);
    assert_true(slice_is(v, "PKIOperation"));
    assert_int_equal(http_query_param(qs, "message", &v), 1);
    assert_true(slice_is(v, "AB%2Bcd"));
    assert_int_equal(http_query_param(qs, "flag", &v), 1);
    assert_int_equal(v.n, 0);
    assert_int_equal(http_query_param(qs, "empty", &v), 1);
    assert_int_equal(v.n, 0);
    assert_int_equal(http_query_param(qs, "operationX", &v), 1);
    assert_true(slice_is(v, "1"));
    assert_int_equal(http_query_param(qs, "oper", &v), 0);
    assert_int_equal(http_query_param(qs, "Operation", &v), 0);
    assert_int_equal(http_query_param(qs, "missing", &v), 0);
    http_slice empty = { NULL, 0 };
    assert_int_equal(http_query_param(empty, "operation", &v), 0);
    const char *last = "a=1&operation=GetCACaps";
    http_slice ls = { guard(last, strlen(last)), strlen(last) };
    assert_int_equal(http_query_param(ls, "operation", &v), 1);
    assert_true(slice_is(v, "GetCACaps"));
}

static void test_percent_decode(void **state)
{
    char out[64];
    const char *s = "a%2Bb%2fc+d%3D%3d";
    http_slice in = { guard(s, strlen(s)), strlen(s) };
    long n = http_percent_decode(in, out, 0);
    assert_int_equal(n, 9);
    assert_memory_equal(out, "a+b/c+d==", 9);
    n = http_percent_decode(in, out, 1);
    assert_int_equal(n, 9);
    assert_memory_equal(out, "a+b/c d==", 9);
    static const char *bad[] = { "abc%", "abc%4", "%zz", "%4g", "%%41" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http_slice b = { guard(bad[i], strlen(bad[i])), strlen(bad[i]) };
        assert_int_equal(http_percent_decode(b, out, 0), -1);
    }
    /* In place. */
    char buf[] = "x%41%42y";
    http_slice ip = { buf, strlen(buf) };
    assert_int_equal(http_percent_decode(ip, buf, 0), 4);
    assert_memory_equal(buf, "xABy", 4);
    http_slice e = { NULL, 0 };
    assert_int_equal(http_percent_decode(e, out, 0), 0);
}

/* Decodes s through the guard page; returns the length, result in out. */
static long b64(const char *s, uint8_t *out)
{
    size_t n = strlen(s);
    return http_base64_decode(guard(s, n), n, out);
}

static void test_base64_decode_tolerant(void **state)
{
    /* Bytes chosen so the canonical encoding contains both '+' and '/':
     * fb ef be fb ff -> "++++ +/8=" */
    static const uint8_t want[] = { 0xfb, 0xef, 0xbe, 0xfb, 0xff };
    char canon[16];
    http_base64_encode(want, sizeof(want), canon);
    assert_string_equal(canon, "++++" "+/8=");
    const char *ok[] = {
        "+++++/8=",          /* canonical */
        "+++++/8",           /* missing padding */
        "     /8=",          /* space for plus (form-decoded) */
        "%2B%2B%2B%2B%2b%2F8%3D",  /* escapes left in place, either case */
        "++++\r\n+/8=\n",    /* line breaks */
        "-----_8",           /* URL-safe alphabet */
        "++\t++ /8%3d",      /* mixed */
    };
    uint8_t out[32];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        long n = b64(ok[i], out);
        if (n != (long)sizeof(want) || memcmp(out, want, sizeof(want)) != 0)
            fail_msg("form %zu (%s) decoded to %ld bytes", i, ok[i], n);
    }
    /* Padding variants. */
    assert_int_equal(b64("Zm8=", out), 2);
    assert_memory_equal(out, "fo", 2);
    assert_int_equal(b64("Zm8", out), 2);
    assert_int_equal(b64("Zg==", out), 1);
    assert_int_equal(b64("Zg=", out), 1);
    assert_int_equal(b64("Zg", out), 1);
    assert_int_equal(b64("Zg==\r\n", out), 1);
    assert_int_equal(b64("", out), 0);
    assert_int_equal(b64("\r\n", out), 0);
    /* A long MIME-wrapped string. */
    uint8_t raw[300];
    char enc[512], wrapped[600];
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (uint8_t)(i * 37 + 11);
    size_t el = http_base64_encode(raw, sizeof(raw), enc);
    size_t w = 0;
    for (size_t i = 0; i < el; i++) {
        wrapped[w++] = enc[i];
        if (i % 64 == 63) {
            wrapped[w++] = '\r';
            wrapped[w++] = '\n';
        }
    }
    wrapped[w] = '\0';
    uint8_t dec[400];
    assert_int_equal(b64(wrapped, dec), (long)sizeof(raw));
    assert_memory_equal(dec, raw, sizeof(raw));
}

static void test_base64_decode_invalid(void **state)
{
    uint8_t out[32];
    static const char *bad[] = {
        "Zm9v!",     /* invalid character */
        "Zm9vY",     /* length 1 mod 4 */
        "Z",
        "Zg==Zg==",  /* data after padding */
        "Zg===",     /* too much padding */
        "Zm9=v",
        "====",
        "Zm9v=",     /* padding after a full quantum */
        "Zm%",       /* malformed escapes */
        "Zm%4",
        "Zm%zz",
        "Zm%25",     /* %25 is '%', not base64 */
        "Zm9v.",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        long n = b64(bad[i], out);
        if (n != -1)
            fail_msg("case %zu (%s): got %ld", i, bad[i], n);
    }
}

static void test_base64_encode(void **state)
{
    static const struct { const char *in, *out; } v[] = {
        { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
    };
    char out[64];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t n = http_base64_encode((const uint8_t *)v[i].in, strlen(v[i].in), out);
        assert_int_equal(n, strlen(v[i].out));
        assert_string_equal(out, v[i].out);
    }
    /* Round trip every length up to 260 with all byte values. */
    uint8_t raw[260], dec[300];
    char enc[400];
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (uint8_t)(255 - i);
    for (size_t n = 0; n <= sizeof(raw); n++) {
        size_t el = http_base64_encode(raw, n, enc);
        assert_int_equal(el, 4 * ((n + 2) / 3));
        assert_int_equal(http_base64_decode(guard(enc, el), el, dec), (long)n);
        assert_memory_equal(dec, raw, n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_no_query_any_method),
        cmocka_unit_test(test_post_body),
        cmocka_unit_test(test_bare_lf_and_leading_eol),
        cmocka_unit_test(test_keep_alive_matrix),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_414),
        cmocka_unit_test(test_431),
        cmocka_unit_test(test_header_count),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_transfer_encoding),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_out_untouched_on_failure),
        cmocka_unit_test(test_query_param),
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_base64_decode_tolerant),
        cmocka_unit_test(test_base64_decode_invalid),
        cmocka_unit_test(test_base64_encode),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (g_map != NULL)
        munmap(g_map, g_maplen);
    return rc;
}
