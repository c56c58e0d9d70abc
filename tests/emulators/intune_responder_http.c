/* intune_responder_http.c: intune-responder's HTTP/1.1 (RFC 9112): the request head,
 * parsed in place (no copy: req's slices point into the connection's input) with explicit
 * limits, and the answers queued on a connection's output. intune_responder.h says more. */
#include "intune_responder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int rsp_grow(char **buf, size_t *cap, size_t need, size_t limit)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap * 2 > need ? *cap * 2 : need;
    n = n > limit ? limit : n;
    char *b = need <= limit ? realloc(*buf, n) : NULL;
    if (b == NULL)
        return -1;
    *buf = b;
    *cap = n;
    return 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default:  return "Error";
    }
}

void rsp_out(conn *c, const char *s, size_t n)
{
    if (rsp_grow(&c->out, &c->out_cap, c->out_len + n, SIZE_MAX / 2) != 0) {
        c->closing = 1;
        return;
    }
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

/* Queues one JSON answer; close: the connection ends after it (says so in the header).
 * Returns 0, so that a handler can end with `return rsp_reply(...)`. */
int rsp_reply(conn *c, int status, const char *body, size_t len, int close)
{
    char head[192];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu"
                     "\r\n%s\r\n", status, reason(status), len,
                     close ? "Connection: close\r\n" : "");
    rsp_out(c, head, (size_t)n);
    rsp_out(c, body, len);
    if (close)
        c->closing = 1;
    return 0;
}

/* ---- HTTP/1.1 request head (RFC 9112): 0 parsed, 1 need more, else the error status ---- */

static int tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* The byte after the blank line ending the head, or NULL while it is incomplete. */
static const char *head_end(const char *b, const char *end)
{
    const char *p = b;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        p++;
        if (p < end && p[0] == '\n')
            return p + 1;
        if (p + 1 < end && p[0] == '\r' && p[1] == '\n')
            return p + 2;
    }
    return NULL;
}

/* One line of a complete head (CRLF or a bare LF, so there is one before end): its slice,
 * *p moved past it. */
static void next_line(const char **p, const char *end, const char **line, size_t *len)
{
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    *line = *p;
    *len = (size_t)(nl - *p);
    if (*len > 0 && (*line)[*len - 1] == '\r')
        (*len)--;
    *p = nl + 1;
}

static int request_line(const char *l, size_t n, req *r, int *http11)
{
    const char *sp1 = memchr(l, ' ', n), *end = l + n;
    const char *sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
    if (sp2 == NULL || sp1 == l || sp1 - l > 16 || sp2 == sp1 + 1 || sp1[1] != '/')
        return 400;
    for (const char *q = l; q < sp1; q++)
        if (!tchar((unsigned char)*q))
            return 400;
    for (const char *q = sp1 + 1; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return 400;
    size_t vl = (size_t)(end - sp2 - 1);
    const char *v = sp2 + 1;
    if (vl != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' || v[5] > '9' ||
        v[7] < '0' || v[7] > '9')
        return 400;
    if (v[5] != '1')
        return 505;
    *http11 = v[7] != '0';
    r->method = l;
    r->method_len = (size_t)(sp1 - l);
    r->target = sp1 + 1;
    const char *q = memchr(r->target, '?', (size_t)(sp2 - r->target));
    r->path_len = (size_t)((q != NULL ? q : sp2) - r->target);
    return 0;
}

/* Does the comma-separated list v (a Connection value) hold the token t? */
static int has_token(const char *v, size_t n, const char *t)
{
    size_t tl = strlen(t), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i - s == tl && strncasecmp(v + s, t, tl) == 0)
            return 1;
    }
    return 0;
}

/* One header field; *seen_len / *hosts count Content-Length and Host for the checks after. */
static int header(const char *l, size_t n, req *r, int *close, int *keep, int *hosts,
                  int *seen_len)
{
    const char *colon = memchr(l, ':', n), *v, *e = l + n;
    if (colon == NULL || colon == l)
        return 400;                        /* also an obs-fold line, which starts with SP */
    for (const char *q = l; q < colon; q++)
        if (!tchar((unsigned char)*q))
            return 400;
    for (v = colon + 1; v < e && (*v == ' ' || *v == '\t'); v++)
        ;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    for (const char *q = v; q < e; q++)
        if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
            return 400;
    size_t nl = (size_t)(colon - l), vl = (size_t)(e - v);
#define NAME_IS(s) (nl == sizeof(s) - 1 && strncasecmp(l, s, nl) == 0)
    if (NAME_IS("content-length")) {
        size_t len = 0;
        if (vl == 0 || vl > 12)
            return 400;
        for (size_t i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9')
                return 400;
            len = len * 10 + (size_t)(v[i] - '0');
        }
        if (*seen_len && len != r->body_len)
            return 400;
        *seen_len = 1;
        r->body_len = len;
    } else if (NAME_IS("transfer-encoding")) {
        return 501;                        /* scepd's libcurl sends Content-Length */
    } else if (NAME_IS("connection")) {
        *close |= has_token(v, vl, "close");
        *keep |= has_token(v, vl, "keep-alive");
    } else if (NAME_IS("expect")) {
        if (vl != 12 || strncasecmp(v, "100-continue", 12) != 0)
            return 417;
        r->expect = 1;
    } else if (NAME_IS("host")) {
        (*hosts)++;
    } else if (NAME_IS("authorization")) {
        r->auth = v;
        r->auth_len = vl;
    }
#undef NAME_IS
    return 0;
}

int rsp_parse_head(const char *b, size_t n, size_t max_body, req *r)
{
    const char *end = head_end(b, b + n), *p = b, *line;
    size_t len;
    int http11 = 1, close = 0, keep = 0, hosts = 0, seen_len = 0, rc;
    memset(r, 0, sizeof(*r));
    if (end == NULL)
        return n > HEAD_MAX ? 431 : 1;
    if ((size_t)(end - b) > HEAD_MAX)
        return 431;
    if (memchr(b, '\0', (size_t)(end - b)) != NULL)
        return 400;
    r->head_len = (size_t)(end - b);
    next_line(&p, end, &line, &len);
    if ((rc = request_line(line, len, r, &http11)) != 0)
        return rc;
    for (;;) {
        next_line(&p, end, &line, &len);
        if (len == 0)
            break;
        if ((rc = header(line, len, r, &close, &keep, &hosts, &seen_len)) != 0)
            return rc;
    }
    if ((http11 && hosts != 1) || hosts > 1)
        return 400;
    if (r->body_len > max_body)
        return 413;
    r->keep_alive = http11 ? !close : keep && !close;
    return 0;
}

