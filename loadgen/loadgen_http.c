/* HTTP/1.1 for scep-loadgen: the URL resolved once, prebuilt request bytes, and the setup
 * phase's blocking GET. The framing (scepc_http_parse, which the event loop calls on every
 * read) and the blocking exchange are the client library's (client/scep_http.h). */
#include "loadgen/loadgen.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/scep_http.h"


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
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
    int gai;

    memset(u, 0, sizeof(*u));
    if (strncmp(s, "http://", 7) != 0) {
        fprintf(stderr, "scep-loadgen: only http:// URLs are supported: %s\n", s);
        return -1;
    }
    if (scepc_url_parse(s, &u->url) != SCEPC_OK) {
        fprintf(stderr, "scep-loadgen: bad URL %s (want http://host[:port]/path)\n", s);
        return -1;
    }
    if ((gai = getaddrinfo(u->url.host, u->url.port, &hints, &ai)) != 0) {
        fprintf(stderr, "scep-loadgen: cannot resolve %s: %s\n", u->url.host, gai_strerror(gai));
        return -1;
    }
    memcpy(&u->addr, ai->ai_addr, ai->ai_addrlen);
    u->addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int lg_http_request(const lg_url *u, int get, const uint8_t *der, size_t len, uint8_t **out,
                    size_t *out_len)
{
    char *msg = NULL, *buf = NULL;
    int n, rc = -1;

    if (get) {
        if (!(msg = scepc_http_b64_query(der, len)))
            goto out;
        n = asprintf(&buf, "GET %s?operation=PKIOperation&message=%s HTTP/1.1\r\n"
                           "Host: %s:%s\r\nUser-Agent: scep-loadgen\r\n\r\n",
                     u->url.path, msg, u->url.host, u->url.port);
        if (n < 0) {
            buf = NULL;
            goto out;
        }
    } else {
        char head[2600];
        int hl = snprintf(head, sizeof(head),
                          "POST %s?operation=PKIOperation HTTP/1.1\r\nHost: %s:%s\r\n"
                          "User-Agent: scep-loadgen\r\nContent-Type: application/x-pki-message\r\n"
                          "Content-Length: %zu\r\n\r\n", u->url.path, u->url.host, u->url.port, len);
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
    scepc_free(msg);
    free(buf);
    return rc;
}

int lg_http_get(const lg_url *u, const char *op, int *status, char *ctype, size_t ctype_cap,
                uint8_t **body, size_t *body_len)
{
    char query[96];
    scepc_http_reply r;
    if ((size_t)snprintf(query, sizeof(query), "operation=%s", op) >= sizeof(query) ||
        scepc_http_exchange(&u->url, "GET", query, NULL, NULL, 0, "scep-loadgen",
                            SETUP_TIMEOUT_MS, SETUP_MAX_BODY, &r) != SCEPC_OK)
        return -1;
    *status = r.status;
    snprintf(ctype, ctype_cap, "%s", r.ctype);
    *body = r.body;     /* OPENSSL_malloc'd: free with scepc_free */
    *body_len = r.len;
    return 0;
}


/* A counter's value from Prometheus text: the line "name value" (no labels). */
static int metric_value(const char *text, size_t len, const char *name, double *v)
{
    size_t n = strlen(name);
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl != NULL ? nl : end;
        if ((size_t)(eol - p) > n + 1 && memcmp(p, name, n) == 0 && p[n] == ' ') {
            char num[64];
            size_t k = (size_t)(eol - p) - n - 1;
            if (k >= sizeof(num))
                return -1;
            memcpy(num, p + n + 1, k);
            num[k] = '\0';
            char *e;
            *v = strtod(num, &e);
            return e != num ? 0 : -1;
        }
        p = eol + 1;
    }
    return -1;
}

int lg_scrape_keyop(const char *url, lg_keyop *k)
{
    scepc_url u;
    scepc_http_reply r = {0};
    int rc = -1;
    if (scepc_url_parse(url, &u) != SCEPC_OK ||
        scepc_http_exchange(&u, "GET", NULL, NULL, NULL, 0, "scep-loadgen", SETUP_TIMEOUT_MS,
                            SETUP_MAX_BODY, &r) != SCEPC_OK)
        return -1;
    const char *t = (const char *)r.body;
    if (r.status == 200 && t != NULL &&
        metric_value(t, r.len, "scepd_private_key_operations_total", &k->ops) == 0 &&
        metric_value(t, r.len, "scepd_private_key_sampled_operations_total", &k->sampled) == 0 &&
        metric_value(t, r.len, "scepd_private_key_sampled_cpu_seconds_total", &k->sampled_s) == 0)
        rc = 0;
    scepc_http_reply_free(&r);
    return rc;
}
