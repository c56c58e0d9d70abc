/* See scep_http.h. The framer came from scep-loadgen (its event loop still calls it); the
 * blocking exchange replaced the reader of tests/tools/scep_req, which waited for the close. */
#include "client/scep_http.h"
#include "client/scep_client.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

int scepc_url_parse(const char *s, scepc_url *u)
{
    scepc_url t;
    const char *host, *colon, *slash;
    size_t hl;

    memset(&t, 0, sizeof(t));
    if (s == NULL || strncmp(s, "http://", 7) != 0)
        return SCEPC_E_ARG;
    host = s + 7;
    slash = strchr(host, '/');
    if (!slash)
        slash = host + strlen(host);
    colon = memchr(host, ':', (size_t)(slash - host));
    hl = (size_t)((colon ? colon : slash) - host);
    if (hl == 0 || hl >= sizeof(t.host))
        return SCEPC_E_ARG;
    memcpy(t.host, host, hl);
    if (colon) {
        size_t pl = (size_t)(slash - colon - 1);
        if (pl == 0 || pl >= sizeof(t.port) || strspn(colon + 1, "0123456789") < pl)
            return SCEPC_E_ARG;
        memcpy(t.port, colon + 1, pl);
    } else {
        strcpy(t.port, "80");
    }
    if (snprintf(t.path, sizeof(t.path), "%s", *slash ? slash : "/") >= (int)sizeof(t.path) ||
        strpbrk(t.path, "?# \r\n"))
        return SCEPC_E_ARG;
    *u = t;
    return SCEPC_OK;
}

char *scepc_http_b64_query(const uint8_t *der, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t cap = 4 * ((len + 2) / 3) + 1;
    unsigned char *b64 = len <= INT32_MAX / 2 ? OPENSSL_malloc(cap) : NULL;
    char *out = NULL, *w;
    int n;

    if (!b64 || (n = EVP_EncodeBlock(b64, der, (int)len)) < 0 ||
        !(out = OPENSSL_malloc((size_t)n * 3 + 1)))
        goto done;
    w = out;
    for (int i = 0; i < n; i++) {
        unsigned char c = b64[i];
        if (c == '+' || c == '/' || c == '=') {
            *w++ = '%';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        } else {
            *w++ = (char)c;
        }
    }
    *w = '\0';
done:
    OPENSSL_free(b64);
    return out;
}

/* Chunked body at p[0..len): decodes into out (may equal p; output never overtakes input).
 * Returns the bytes the body occupies including the last chunk and trailers, 0 for "need
 * more", -1 for malformed. */
static long dechunk(uint8_t *p, size_t len, size_t *out_len)
{
    size_t r = 0, w = 0;
    for (;;) {
        size_t n = 0, digits = 0;
        while (r < len && ((p[r] >= '0' && p[r] <= '9') || ((p[r] | 0x20) >= 'a' && (p[r] | 0x20) <= 'f'))) {
            int d = p[r] <= '9' ? p[r] - '0' : (p[r] | 0x20) - 'a' + 10;
            if (n > (SIZE_MAX >> 5))
                return -1;
            n = n * 16 + (size_t)d;
            r++;
            digits++;
        }
        uint8_t *lf = memchr(p + r, '\n', len - r);
        if (!lf)
            return len - r > 1024 ? -1 : 0;
        if (digits == 0)
            return -1;
        r = (size_t)(lf - p) + 1;           /* chunk extensions ignored */
        if (n == 0) {
            /* trailers until an empty line */
            for (;;) {
                uint8_t *e = memchr(p + r, '\n', len - r);
                if (!e)
                    return 0;
                size_t ll = (size_t)(e - (p + r));
                r = (size_t)(e - p) + 1;
                if (ll == 0 || (ll == 1 && e[-1] == '\r'))
                    break;
            }
            *out_len = w;
            return (long)r;
        }
        if (len - r < n + 2)
            return 0;
        memmove(p + w, p + r, n);
        w += n;
        r += n;
        if (p[r] == '\r')
            r++;
        if (p[r] != '\n')
            return -1;
        r++;
    }
}

static int token_in(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    while (*v) {
        v += strspn(v, " \t,");
        size_t l = strcspn(v, " \t,");
        if (l == tl && strncasecmp(v, tok, tl) == 0)
            return 1;
        v += l;
    }
    return 0;
}

long scepc_http_parse(uint8_t *buf, size_t len, int eof, scepc_http_frame *r)
{
    uint8_t *eoh = NULL;
    int minor = 0, chunked = 0, ka = 0, cl_seen = 0;
    size_t clen = 0, hl;
    char line[512];

    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] == '\n' && (buf[i + 1] == '\n' || (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n'))) {
            eoh = buf + i + (buf[i + 1] == '\n' ? 2 : 3);
            break;
        }
    }
    if (!eoh)
        return len > 65536 ? -1 : 0;
    hl = (size_t)(eoh - buf);
    {
        uint8_t *nl = memchr(buf, '\n', hl);
        size_t ll = (size_t)(nl - buf);
        if (ll >= sizeof(line))
            return -1;
        memcpy(line, buf, ll);
        line[ll] = '\0';
        if (sscanf(line, "HTTP/1.%d %d", &minor, &r->status) != 2 || r->status < 100
            || r->status > 999)
            return -1;
        ka = minor >= 1;
        for (uint8_t *p = nl + 1; p < eoh;) {
            uint8_t *e = memchr(p, '\n', (size_t)(eoh - p));
            size_t l = (size_t)(e - p);
            if (l > 0 && p[l - 1] == '\r')
                l--;
            if (l == 0)
                break;
            if (l >= sizeof(line))
                l = sizeof(line) - 1;
            memcpy(line, p, l);
            line[l] = '\0';
            p = e + 1;
            char *v = strchr(line, ':');
            if (!v)
                continue;
            *v++ = '\0';
            v += strspn(v, " \t");
            if (strcasecmp(line, "Content-Length") == 0) {
                char *end;
                errno = 0;
                unsigned long long x = strtoull(v, &end, 10);
                if (end == v || errno || x > SCEPC_HTTP_BODY_MAX)
                    return -1;
                clen = (size_t)x;
                cl_seen = 1;
            } else if (strcasecmp(line, "Transfer-Encoding") == 0) {
                chunked = token_in(v, "chunked");
            } else if (strcasecmp(line, "Connection") == 0) {
                if (token_in(v, "close"))
                    ka = 0;
                else if (token_in(v, "keep-alive"))
                    ka = 1;
            } else if (strcasecmp(line, "Content-Type") == 0) {
                snprintf(r->ctype, sizeof(r->ctype), "%s", v);
            }
        }
    }
    r->close = !ka;
    if (r->status == 204 || r->status == 304 || r->status < 200)
        return (long)hl;
    if (chunked) {
        size_t out = 0;
        long used = dechunk(buf + hl, len - hl, &out);
        if (used <= 0)
            return used;
        r->body = buf + hl;
        r->body_len = out;
        return (long)hl + used;
    }
    if (cl_seen) {
        if (len - hl < clen)
            return 0;
        r->body = buf + hl;
        r->body_len = clen;
        return (long)(hl + clen);
    }
    /* Framed by the close. */
    r->close = 1;
    if (!eof)
        return 0;
    r->body = buf + hl;
    r->body_len = len - hl;
    return (long)len;
}

static int send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int connect_to(const scepc_url *u, int timeout_ms)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    int fd = -1;

    if (getaddrinfo(u->host, u->port, &hints, &ai) != 0)
        return -1;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        /* SO_SNDTIMEO bounds connect() too (Linux). */
        if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0 &&
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == 0 &&
            connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

int scepc_http_exchange(const scepc_url *u, const char *method, const char *query,
                        const char *content_type, const uint8_t *body, size_t blen,
                        const char *user_agent, int timeout_ms, size_t max_body,
                        scepc_http_reply *out)
{
    int fd = -1, rc = SCEPC_E_HTTP, hl;
    char *head = NULL, clen[192] = "";
    uint8_t *buf = NULL;
    size_t cap = 65536, n = 0;

    if (body != NULL)
        snprintf(clen, sizeof(clen), "Content-Type: %s\r\nContent-Length: %zu\r\n",
                 content_type != NULL ? content_type : "application/octet-stream", blen);
    hl = asprintf(&head, "%s %s%s%s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: %s\r\n"
                         "Connection: close\r\n%s\r\n",
                  method, u->path, query != NULL ? "?" : "", query != NULL ? query : "",
                  u->host, u->port, user_agent, clen);
    if (hl < 0) {
        head = NULL;
        rc = SCEPC_E_NOMEM;
        goto out;
    }
    if ((fd = connect_to(u, timeout_ms)) < 0 || send_all(fd, head, (size_t)hl) != 0 ||
        (body != NULL && send_all(fd, body, blen) != 0))
        goto out;
    if ((buf = OPENSSL_malloc(cap)) == NULL) {
        rc = SCEPC_E_NOMEM;
        goto out;
    }
    for (;;) {
        scepc_http_frame f;
        ssize_t got = recv(fd, buf + n, cap - n - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            goto out;
        n += (size_t)got;
        long used = scepc_http_parse(buf, n, got == 0, &f);
        if (used < 0)
            goto out;
        if (used > 0) {
            uint8_t *b = OPENSSL_malloc(f.body_len + 1);
            if (b == NULL) {
                rc = SCEPC_E_NOMEM;
                goto out;
            }
            memcpy(b, f.body, f.body_len);
            b[f.body_len] = '\0';
            memset(out, 0, sizeof(*out));
            out->status = f.status;
            snprintf(out->ctype, sizeof(out->ctype), "%s", f.ctype);
            out->body = b;
            out->len = f.body_len;
            rc = SCEPC_OK;
            goto out;
        }
        if (got == 0)
            goto out;
        if (cap - n < 4096) {
            uint8_t *nb;
            if (cap >= max_body || !(nb = OPENSSL_realloc(buf, cap * 2)))
                goto out;
            buf = nb;
            cap *= 2;
        }
    }
out:
    if (fd >= 0)
        close(fd);
    free(head);
    OPENSSL_free(buf);
    return rc;
}

void scepc_http_reply_free(scepc_http_reply *r)
{
    if (r == NULL)
        return;
    OPENSSL_free(r->body);
    memset(r, 0, sizeof(*r));
}
