/* http: request-head parser and the small decoders of the SCEP routes. See http.h. */
#include "engine/net/http.h"

#include <limits.h>
#include <string.h>

/* Longest method token accepted; real ones are short, and an unbounded token would let a
 * client make us buffer forever before the first space. */
#define HTTP_METHOD_MAX 32
/* Empty lines tolerated before a request line (RFC 9112 2.2: robustness after a body). */
#define HTTP_LEADING_EOL_MAX 8

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return 1;
    default:
        return 0;
    }
}

/* Visible bytes; obs-text (>= 0x80) tolerated as clients send raw UTF-8 in the wild. */
static int is_target_char(unsigned char c)
{
    return c > 0x20 && c != 0x7f;
}

static int is_ctl_in_value(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static int slice_ieq(http_slice s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s.p[i]) != lower((unsigned char)lit[i]))
            return 0;
    return 1;
}

/* Comma-separated Connection tokens: sets *close / *ka when "close" / "keep-alive" appear. */
static void scan_connection(http_slice v, int *close, int *ka)
{
    size_t i = 0;
    while (i < v.n) {
        while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
            i++;
        size_t s = i;
        while (i < v.n && v.p[i] != ',' && v.p[i] != ' ' && v.p[i] != '\t')
            i++;
        http_slice tok = { v.p + s, i - s };
        if (slice_ieq(tok, "close"))
            *close = 1;
        else if (slice_ieq(tok, "keep-alive"))
            *ka = 1;
    }
}

/* Content-Length: 1*DIGIT. Saturates instead of overflowing so a 30-digit value is -413,
 * not a wrapped small number. Returns 0 or -400. */
static int parse_content_length(http_slice v, size_t *out)
{
    size_t n = 0;
    if (v.n == 0)
        return -400;
    for (size_t i = 0; i < v.n; i++) {
        unsigned char c = (unsigned char)v.p[i];
        if (c < '0' || c > '9')
            return -400;
        if (n > (SIZE_MAX - 9) / 10)
            n = SIZE_MAX;
        else
            n = n * 10 + (c - '0');
    }
    *out = n;
    return 0;
}

/* Request line (RFC 9112 3), after at most HTTP_LEADING_EOL_MAX empty lines: sets method,
 * target and minor_version and advances *pp past its line end. Returns 0, -2 or -4xx/-505. */
static int parse_request_line(const char **pp, const char *end, const http_limits *lim,
                              http_request *r)
{
    const char *p = *pp, *s;

    for (int i = 0; p < end && (*p == '\r' || *p == '\n'); i++, p++)
        if (i == HTTP_LEADING_EOL_MAX)
            return -400;

    s = p;
    while (p < end && is_tchar((unsigned char)*p)) {
        p++;
        if (p - s > HTTP_METHOD_MAX)
            return -400;
    }
    if (p == end)
        return -2;
    if (*p != ' ' || p == s)
        return -400;
    r->method = (http_slice){ s, (size_t)(p - s) };
    p++;

    s = p;
    while (p < end && is_target_char((unsigned char)*p)) {
        p++;
        if ((size_t)(p - s) > lim->max_url)
            return -414;
    }
    if (p == end)
        return -2;
    if (*p != ' ' || p == s)
        return -400;
    r->target = (http_slice){ s, (size_t)(p - s) };
    p++;

    static const char proto[] = "HTTP/";
    for (size_t i = 0; i < sizeof(proto) - 1; i++, p++) {
        if (p == end)
            return -2;
        if (*p != proto[i])
            return -400;
    }
    for (int i = 0; i < 3; i++) {
        if (p + i == end)
            return -2;
        unsigned char c = (unsigned char)p[i];
        if (i == 1 ? c != '.' : (c < '0' || c > '9'))
            return -400;
    }
    if (p[0] != '1' || (p[2] != '0' && p[2] != '1'))
        return -505;
    r->minor_version = p[2] - '0';
    p += 3;
    if (p == end)
        return -2;
    if (*p == '\r') {
        if (++p == end)
            return -2;
        if (*p != '\n')
            return -400;
    } else if (*p != '\n') {
        return -400;
    }
    *pp = p + 1;
    return 0;
}

/* What the framing headers said so far. */
typedef struct framing {
    int have_cl, conn_close, conn_ka;
} framing;

/* Content-Length (all copies equal, within max_body), Transfer-Encoding (identity only) and
 * Connection. Returns 0 or -400/-413/-501. */
static int framing_header(http_slice name, http_slice value, const http_limits *lim,
                          http_request *r, framing *f)
{
    if (slice_ieq(name, "content-length")) {
        size_t cl;
        if (parse_content_length(value, &cl) != 0)
            return -400;
        if (f->have_cl && cl != r->content_length)
            return -400;
        if (cl > lim->max_body)
            return -413;
        r->content_length = cl;
        f->have_cl = 1;
    } else if (slice_ieq(name, "transfer-encoding")) {
        if (!slice_ieq(value, "identity"))
            return -501;
    } else if (slice_ieq(name, "connection")) {
        scan_connection(value, &f->conn_close, &f->conn_ka);
    }
    return 0;
}

/* Header block up to and including its empty line: fills headers/nheaders and, through
 * framing_header, the framing; advances *pp. Every byte read must lie within max_header of
 * the block's start. Returns 0, -2 or -4xx/-501. */
static int parse_header_block(const char **pp, const char *end, const http_limits *lim,
                              http_request *r, framing *f)
{
    const char *p = *pp, *s;
    const char *hend = ((size_t)(end - p) > lim->max_header) ? p + lim->max_header : end;
    int rc;

#define NEED(q) do { if ((q) >= hend) return hend < end ? -431 : -2; } while (0)
    for (;;) {
        NEED(p);
        if (*p == '\r') {
            p++;
            NEED(p);
            if (*p != '\n')
                return -400;
            p++;
            break;
        }
        if (*p == '\n') {
            p++;
            break;
        }
        if (r->nheaders == HTTP_MAX_HEADERS)
            return -431;
        s = p;
        for (;;) {
            NEED(p);
            if (!is_tchar((unsigned char)*p))
                break;
            p++;
        }
        if (*p != ':' || p == s)
            return -400;
        http_slice name = { s, (size_t)(p - s) };
        p++;
        for (;;) {
            NEED(p);
            if (*p != ' ' && *p != '\t')
                break;
            p++;
        }
        s = p;
        for (;;) {
            NEED(p);
            if (*p == '\r' || *p == '\n')
                break;
            if (is_ctl_in_value((unsigned char)*p))
                return -400;
            p++;
        }
        const char *ve = p;
        while (ve > s && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (*p == '\r') {
            p++;
            NEED(p);
            if (*p != '\n')
                return -400;
        }
        p++;
        http_slice value = { s, (size_t)(ve - s) };
        r->headers[r->nheaders].name = name;
        r->headers[r->nheaders].value = value;
        r->nheaders++;
        if ((rc = framing_header(name, value, lim, r, f)) != 0)
            return rc;
    }
#undef NEED
    *pp = p;
    return 0;
}

/* The parse works on a local request and copies it out only on success. Limits are checked
 * byte by byte as the scan advances, so for any prefix of a stream the result is either -2
 * or exactly the result of the whole stream (what makes incremental feeding safe) and an
 * oversized target or header block is rejected as soon as its first excess byte arrives. */
int http_parse_request(const char *buf, size_t len, const http_limits *lim, http_request *out)
{
    http_request r;
    const char *p = buf, *end = buf + len;
    framing f = { 0, 0, 0 };
    int rc;

    r.nheaders = 0;
    r.content_length = 0;
    if ((rc = parse_request_line(&p, end, lim, &r)) != 0)
        return rc;
    if ((rc = parse_header_block(&p, end, lim, &r, &f)) != 0)
        return rc;

    if ((size_t)(p - buf) > INT_MAX)
        return -431;
    r.keep_alive = f.conn_close ? 0 : (r.minor_version == 1 ? 1 : f.conn_ka);
    r.header_len = (size_t)(p - buf);
    const char *q = memchr(r.target.p, '?', r.target.n);
    if (q != NULL) {
        r.path = (http_slice){ r.target.p, (size_t)(q - r.target.p) };
        r.query = (http_slice){ q + 1, r.target.n - r.path.n - 1 };
    } else {
        r.path = r.target;
        r.query = (http_slice){ r.target.p + r.target.n, 0 };
    }

    out->method = r.method;
    out->target = r.target;
    out->path = r.path;
    out->query = r.query;
    out->minor_version = r.minor_version;
    memcpy(out->headers, r.headers, r.nheaders * sizeof(r.headers[0]));
    out->nheaders = r.nheaders;
    out->content_length = r.content_length;
    out->keep_alive = r.keep_alive;
    out->header_len = r.header_len;
    return (int)r.header_len;
}

int http_find_header(const http_request *req, const char *name, http_slice *value)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (slice_ieq(req->headers[i].name, name)) {
            *value = req->headers[i].value;
            return 1;
        }
    }
    return 0;
}

int http_query_param(http_slice query, const char *name, http_slice *value)
{
    size_t nlen = strlen(name);
    size_t i = 0;
    while (i <= query.n && query.n > 0) {
        const char *seg = query.p + i;
        const char *amp = memchr(seg, '&', query.n - i);
        size_t slen = amp ? (size_t)(amp - seg) : query.n - i;
        const char *eq = memchr(seg, '=', slen);
        size_t klen = eq ? (size_t)(eq - seg) : slen;
        if (klen == nlen && memcmp(seg, name, nlen) == 0) {
            if (eq != NULL)
                *value = (http_slice){ eq + 1, slen - klen - 1 };
            else
                *value = (http_slice){ seg + slen, 0 };
            return 1;
        }
        if (amp == NULL)
            break;
        i += slen + 1;
    }
    return 0;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

long http_percent_decode(http_slice src, char *dst, int plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < src.n; i++) {
        unsigned char c = (unsigned char)src.p[i];
        if (c == '%') {
            if (src.n - i < 3)
                return -1;
            int hi = hexval((unsigned char)src.p[i + 1]);
            int lo = hexval((unsigned char)src.p[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        dst[o++] = (char)c;
    }
    return (long)o;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == ' ' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Percent escapes are undone here too, so a message that went through one encoding layer
 * more than expected (%2B, %2F, %3D left in place) still decodes. */
long http_base64_decode(const char *src, size_t n, uint8_t *dst)
{
    uint32_t acc = 0;
    int nacc = 0, pad = 0;
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '%') {
            if (n - i < 3)
                return -1;
            int hi = hexval((unsigned char)src[i + 1]);
            int lo = hexval((unsigned char)src[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\r' || c == '\n' || c == '\t' || c == '\f' || c == '\v')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        if (pad != 0)
            return -1;
        int v = b64val(c);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        if (++nacc == 4) {
            dst[o++] = (uint8_t)(acc >> 16);
            dst[o++] = (uint8_t)(acc >> 8);
            dst[o++] = (uint8_t)acc;
            nacc = 0;
            acc = 0;
        }
    }
    if (nacc == 1 || (pad != 0 && (nacc == 0 || nacc + pad > 4)))
        return -1;
    if (nacc == 2) {
        dst[o++] = (uint8_t)(acc >> 4);
    } else if (nacc == 3) {
        dst[o++] = (uint8_t)(acc >> 10);
        dst[o++] = (uint8_t)(acc >> 2);
    }
    return (long)o;
}

size_t http_base64_encode(const uint8_t *src, size_t n, char *dst)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        dst[o++] = tbl[v >> 18];
        dst[o++] = tbl[(v >> 12) & 63];
        dst[o++] = tbl[(v >> 6) & 63];
        dst[o++] = tbl[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)src[i] << 16;
        dst[o++] = tbl[v >> 18];
        dst[o++] = tbl[(v >> 12) & 63];
        dst[o++] = '=';
        dst[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
        dst[o++] = tbl[v >> 18];
        dst[o++] = tbl[(v >> 12) & 63];
        dst[o++] = tbl[(v >> 6) & 63];
        dst[o++] = '=';
    }
    dst[o] = '\0';
    return o;
}
