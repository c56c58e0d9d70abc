/* HTTP/1.1 for scep-loadgen: URL parsing, prebuilt request bytes, a response framer that the
 * event loop calls on every read, and a small blocking client for the setup phase. */
#include "loadgen/loadgen.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define SETUP_TIMEOUT_MS 30000
#define SETUP_MAX_BODY (4u << 20)

int64_t lg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int lg_url_parse(const char *s, lg_url *u)
{
    const char *host, *colon, *slash;
    size_t hl;
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
    int rc = -1, gai;

    memset(u, 0, sizeof(*u));
    if (strncmp(s, "http://", 7) != 0) {
        fprintf(stderr, "scep-loadgen: only http:// URLs are supported: %s\n", s);
        return -1;
    }
    host = s + 7;
    slash = strchr(host, '/');
    if (!slash)
        slash = host + strlen(host);
    colon = memchr(host, ':', (size_t)(slash - host));
    hl = (size_t)((colon ? colon : slash) - host);
    if (hl == 0 || hl >= sizeof(u->host))
        goto bad;
    memcpy(u->host, host, hl);
    if (colon) {
        size_t pl = (size_t)(slash - colon - 1);
        if (pl == 0 || pl >= sizeof(u->port) || strspn(colon + 1, "0123456789") < pl)
            goto bad;
        memcpy(u->port, colon + 1, pl);
    } else {
        strcpy(u->port, "80");
    }
    if (snprintf(u->path, sizeof(u->path), "%s", *slash ? slash : "/") >= (int)sizeof(u->path)
        || strpbrk(u->path, "?# \r\n"))
        goto bad;
    if ((gai = getaddrinfo(u->host, u->port, &hints, &ai)) != 0) {
        fprintf(stderr, "scep-loadgen: cannot resolve %s: %s\n", u->host, gai_strerror(gai));
        return -1;
    }
    memcpy(&u->addr, ai->ai_addr, ai->ai_addrlen);
    u->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    rc = 0;
    return rc;
bad:
    fprintf(stderr, "scep-loadgen: bad URL %s (want http://host[:port]/path)\n", s);
    return rc;
}

/* Standard base64, percent-encoded for a query string (RFC 8894 section 4.1). */
static char *b64_query(const uint8_t *der, size_t len)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    unsigned char *b64 = malloc(cap);
    char *out = NULL, *w;
    int n;

    if (!b64 || (n = EVP_EncodeBlock(b64, der, (int)len)) < 0
        || !(out = malloc((size_t)n * 3 + 1)))
        goto done;
    w = out;
    for (int i = 0; i < n; i++) {
        unsigned char c = b64[i];
        if (c == '+' || c == '/' || c == '=') {
            static const char hex[] = "0123456789ABCDEF";
            *w++ = '%';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        } else {
            *w++ = (char)c;
        }
    }
    *w = '\0';
done:
    free(b64);
    return out;
}

int lg_http_request(const lg_url *u, int get, const uint8_t *der, size_t len, uint8_t **out,
                    size_t *out_len)
{
    char *msg = NULL, *buf = NULL;
    int n, rc = -1;

    if (get) {
        if (!(msg = b64_query(der, len)))
            goto out;
        n = asprintf(&buf, "GET %s?operation=PKIOperation&message=%s HTTP/1.1\r\n"
                           "Host: %s:%s\r\nUser-Agent: scep-loadgen\r\n\r\n",
                     u->path, msg, u->host, u->port);
        if (n < 0) {
            buf = NULL;
            goto out;
        }
    } else {
        char head[2600];
        int hl = snprintf(head, sizeof(head),
                          "POST %s?operation=PKIOperation HTTP/1.1\r\nHost: %s:%s\r\n"
                          "User-Agent: scep-loadgen\r\nContent-Type: application/x-pki-message\r\n"
                          "Content-Length: %zu\r\n\r\n", u->path, u->host, u->port, len);
        if (hl < 0 || (size_t)hl >= sizeof(head) || !(buf = malloc((size_t)hl + len)))
            goto out;
        memcpy(buf, head, (size_t)hl);
        memcpy(buf + hl, der, len);
        n = (int)((size_t)hl + len);
    }
    *out = (uint8_t *)buf;
    *out_len = (size_t)n;
    buf = NULL;
    rc = 0;
out:
    free(msg);
    free(buf);
    return rc;
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

long lg_http_parse(uint8_t *buf, size_t len, int eof, lg_http_resp *r)
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
                if (end == v || errno || x > (64u << 20))
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

/* Blocking helpers for the setup phase, bounded by SETUP_TIMEOUT_MS per step. */
static int wait_fd(int fd, short ev)
{
    struct pollfd p = { .fd = fd, .events = ev };
    int n;
    do
        n = poll(&p, 1, SETUP_TIMEOUT_MS);
    while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -1;
}

int lg_http_get(const lg_url *u, const char *op, int *status, char *ctype, size_t ctype_cap,
                uint8_t **body, size_t *body_len)
{
    int fd = -1, rc = -1;
    char *req = NULL;
    uint8_t *buf = NULL;
    size_t cap = 65536, n = 0;
    int rl;

    rl = asprintf(&req, "GET %s?operation=%s HTTP/1.1\r\nHost: %s:%s\r\n"
                        "User-Agent: scep-loadgen\r\nConnection: close\r\n\r\n",
                  u->path, op, u->host, u->port);
    if (rl < 0) {
        req = NULL;
        goto out;
    }
    if ((fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        goto out;
    if (connect(fd, (const struct sockaddr *)&u->addr, u->addrlen) != 0)
        goto out;
    for (size_t off = 0; off < (size_t)rl;) {
        ssize_t w = send(fd, req + off, (size_t)rl - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto out;
        off += (size_t)w;
    }
    if (!(buf = malloc(cap)))
        goto out;
    for (;;) {
        lg_http_resp r;
        long used;
        ssize_t got;
        if (wait_fd(fd, POLLIN) != 0)
            goto out;
        got = recv(fd, buf + n, cap - n - 1, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            goto out;
        n += (size_t)got;
        used = lg_http_parse(buf, n, got == 0, &r);
        if (used < 0)
            goto out;
        if (used > 0) {
            uint8_t *b = malloc(r.body_len + 1);
            if (!b)
                goto out;
            memcpy(b, r.body, r.body_len);
            b[r.body_len] = '\0';
            *status = r.status;
            snprintf(ctype, ctype_cap, "%s", r.ctype);
            *body = b;
            *body_len = r.body_len;
            rc = 0;
            goto out;
        }
        if (got == 0)
            goto out;
        if (cap - n < 4096) {
            uint8_t *nb;
            if (cap >= SETUP_MAX_BODY || !(nb = realloc(buf, cap * 2)))
                goto out;
            buf = nb;
            cap *= 2;
        }
    }
out:
    if (fd >= 0)
        close(fd);
    free(req);
    free(buf);
    return rc;
}
