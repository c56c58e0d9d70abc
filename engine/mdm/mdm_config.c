/* mdm_config: the [mdm] / [intune] / [webhook] / [ndes] file (format in mdm_config.h). One key
 * table, as in engine/common/config.c, so parsing, limits and messages stay uniform. */
#include "engine/mdm/mdm_config.h"

#include "engine/common/config.h"
#include "engine/common/file.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#define MDM_FILE_MAX (1u << 20)
#define MDM_LINE_MAX 4096
#define DAY_MS 86400000LL

enum key_type { K_INT, K_MS, K_SEC, K_STR, K_URL, K_PATH, K_SECRET, K_ENCODING };

struct key {
    const char   *section, *name;
    enum key_type type;
    size_t        off, size, len_off;   /* len_off: K_SECRET's length field */
    long long     min, max;
};

#define F(field) offsetof(mdm_config, field), sizeof(((mdm_config *)0)->field), 0
#define S(field, len) offsetof(mdm_config, field), sizeof(((mdm_config *)0)->field), \
                      offsetof(mdm_config, len)

static const struct key keys[] = {
    { "mdm", "max_in_flight",       K_INT, F(max_in_flight), 1, 100000 },
    { "mdm", "timeout",             K_MS,  F(timeout_ms), 100, 600000 },
    { "mdm", "connect_timeout",     K_MS,  F(connect_timeout_ms), 100, 600000 },
    { "mdm", "retries",             K_INT, F(retries), 0, 10 },
    { "mdm", "retry_backoff",       K_MS,  F(retry_backoff_ms), 0, 60000 },
    { "mdm", "max_connections",     K_INT, F(max_connections), 1, 10000 },
    { "intune", "tenant",           K_STR, F(tenant), 0, 0 },
    { "intune", "client_id",        K_STR, F(client_id), 0, 0 },
    { "intune", "client_secret_file", K_SECRET, S(client_secret, client_secret_len), 0, 0 },
    { "intune", "client_certificate", K_PATH, F(client_certificate), 0, 0 },
    { "intune", "client_key",       K_PATH, F(client_key), 0, 0 },
    { "intune", "client_key_label", K_STR, F(client_key_label), 0, 0 },
    { "intune", "client_assertion_alg", K_STR, F(client_assertion_alg), 0, 0 },
    { "intune", "provider",         K_STR, F(provider), 0, 0 },
    { "intune", "login_url",        K_URL, F(login_url), 0, 0 },
    { "intune", "graph_url",        K_URL, F(graph_url), 0, 0 },
    { "intune", "graph_scope",      K_STR, F(graph_scope), 0, 0 },
    { "intune", "resource",         K_STR, F(resource), 0, 0 },
    { "intune", "intune_app_id",    K_STR, F(intune_app_id), 0, 0 },
    { "intune", "validation_url",   K_URL, F(validation_url), 0, 0 },
    { "intune", "pki_url",          K_URL, F(pki_url), 0, 0 },
    { "intune", "refresh_margin",   K_MS,  F(refresh_margin_ms), 0, DAY_MS },
    { "intune", "ca_file",          K_PATH, F(intune_ca_file), 0, 0 },
    { "intune", "revocation_poll_interval", K_MS, F(revocation_poll_ms), 0, DAY_MS },
    { "intune", "ca_configuration", K_STR, F(ca_configuration), 0, 0 },
    { "webhook", "url",             K_URL, F(webhook_url), 0, 0 },
    { "webhook", "secret_file",     K_SECRET, S(webhook_secret, webhook_secret_len), 0, 0 },
    { "webhook", "ca_file",         K_PATH, F(webhook_ca_file), 0, 0 },
    { "webhook", "signature_header", K_STR, F(signature_header), 0, 0 },
    { "ndes", "ttl",                K_SEC, F(ndes_ttl_s), 1000, 7 * DAY_MS },
    { "ndes", "encoding",           K_ENCODING, F(ndes_encoding), 0, 0 },
    { "ndes", "ca_name",            K_STR, F(ndes_ca_name), 0, 0 },
    { "ndes", "users_file",         K_PATH, F(ndes_users_file), 0, 0 },
    { "ndes", "profile",            K_STR, F(ndes_profile), 0, 0 },
};

static const char *const sections[] = { "mdm", "intune", "webhook", "ndes" };

static void set(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

void mdm_config_defaults(mdm_config *c)
{
    memset(c, 0, sizeof(*c));
    c->max_in_flight = 256;
    c->timeout_ms = 10000;
    c->connect_timeout_ms = 3000;
    c->retries = 2;
    c->retry_backoff_ms = 200;
    c->max_connections = 32;
    set(c->provider, sizeof(c->provider), "scepd/1.0");
    set(c->login_url, sizeof(c->login_url), "https://login.microsoftonline.com");
    set(c->graph_url, sizeof(c->graph_url), "https://graph.microsoft.com");
    set(c->graph_scope, sizeof(c->graph_scope), "https://graph.microsoft.com/.default");
    set(c->resource, sizeof(c->resource), "https://api.manage.microsoft.com/");
    set(c->intune_app_id, sizeof(c->intune_app_id), "0000000a-0000-0000-c000-000000000000");
    c->refresh_margin_ms = 300000;
    set(c->client_assertion_alg, sizeof(c->client_assertion_alg), "PS256");
    set(c->ca_configuration, sizeof(c->ca_configuration), "scepd");
    set(c->signature_header, sizeof(c->signature_header), "X-Scepd-Signature");
    c->ndes_ttl_s = 3600;
    c->ndes_encoding = MDM_NDES_UTF16LE;
    set(c->ndes_ca_name, sizeof(c->ndes_ca_name), "scepd");
}

void mdm_config_cleanse(mdm_config *c)
{
    OPENSSL_cleanse(c->client_secret, sizeof(c->client_secret));
    OPENSSL_cleanse(c->webhook_secret, sizeof(c->webhook_secret));
    c->client_secret_len = c->webhook_secret_len = 0;
}

int mdm_config_intune_enabled(const mdm_config *c)
{
    return c->tenant[0] != '\0';
}

int mdm_config_webhook_enabled(const mdm_config *c)
{
    return c->webhook_url[0] != '\0';
}

int mdm_url_allowed(const char *url)
{
    static const char *const loopback[] = { "127.0.0.1", "[::1]", "localhost" };
    if (strncasecmp(url, "https://", 8) == 0)
        return url[8] != '\0';
    if (strncasecmp(url, "http://", 7) != 0)
        return 0;
    const char *h = url + 7;
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        size_t n = strlen(loopback[i]);
        if (strncasecmp(h, loopback[i], n) == 0 && (h[n] == ':' || h[n] == '/' || h[n] == '\0'))
            return 1;
    }
    return 0;
}

static int join_path(char *dst, size_t size, const char *base, const char *v)
{
    int n = (v[0] == '/' || base == NULL || base[0] == '\0')
                ? snprintf(dst, size, "%s", v) : snprintf(dst, size, "%s/%s", base, v);
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* A secret file: whole content, trailing CR/LF stripped, non-empty, no NUL. */
static int read_secret(const char *path, unsigned char *dst, size_t size, size_t *len,
                       char *why, size_t whylen)
{
    char *buf = NULL;
    size_t n = 0;
    int rc = -1, e = file_read(path, size, &buf, &n);
    if (e != 0) {
        err_set(why, whylen, "%s: %s", path, e == -EFBIG ? "too large" : strerror(-e));
        goto out;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n == 0 || n >= size || memchr(buf, '\0', n) != NULL) {
        err_set(why, whylen, "%s: empty, too long or has a NUL byte", path);
        goto out;
    }
    memcpy(dst, buf, n);
    dst[n] = '\0';
    *len = n;
    rc = 0;
out:
    if (buf != NULL) {
        OPENSSL_cleanse(buf, n);
        free(buf);
    }
    return rc;
}

static int set_key(mdm_config *c, const struct key *k, const char *v, const char *base,
                   char *why, size_t whylen)
{
    char *field = (char *)c + k->off;
    long long ms;
    char *end;
    switch (k->type) {
    case K_INT: {
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || n < k->min || n > k->max) {
            err_set(why, whylen, "%s: an integer in [%lld, %lld]", k->name, k->min, k->max);
            return -1;
        }
        *(int *)field = (int)n;
        return 0;
    }
    case K_MS:
    case K_SEC:
        ms = config_parse_duration_ms(v);
        if (ms < k->min || ms > k->max || (k->type == K_SEC && ms % 1000 != 0)) {
            err_set(why, whylen, "%s: a duration in [%lldms, %lldms]%s", k->name, k->min,
                    k->max, k->type == K_SEC ? ", whole seconds" : "");
            return -1;
        }
        *(int *)field = (int)(k->type == K_SEC ? ms / 1000 : ms);
        return 0;
    case K_URL:
        if (v[0] != '\0' && !mdm_url_allowed(v)) {
            err_set(why, whylen, "%s: https:// (http:// only to a loopback host)", k->name);
            return -1;
        }
        /* fall through */
    case K_STR:
        if (strlen(v) >= k->size) {
            err_set(why, whylen, "%s: too long", k->name);
            return -1;
        }
        set(field, k->size, v);
        return 0;
    case K_PATH:
        if (v[0] == '\0') {
            field[0] = '\0';
            return 0;
        }
        if (join_path(field, k->size, base, v) != 0) {
            err_set(why, whylen, "%s: path too long", k->name);
            return -1;
        }
        return 0;
    case K_SECRET: {
        char path[1024];
        if (join_path(path, sizeof(path), base, v) != 0) {
            err_set(why, whylen, "%s: path too long", k->name);
            return -1;
        }
        return read_secret(path, (unsigned char *)field, k->size,
                           (size_t *)((char *)c + k->len_off), why, whylen);
    }
    case K_ENCODING:
        if (strcasecmp(v, "utf-16le") == 0 || strcasecmp(v, "utf-16") == 0)
            *(int *)field = MDM_NDES_UTF16LE;
        else if (strcasecmp(v, "utf-8") == 0)
            *(int *)field = MDM_NDES_UTF8;
        else {
            err_set(why, whylen, "%s: utf-16le or utf-8", k->name);
            return -1;
        }
        return 0;
    }
    return -1;
}

static int cross_check(const mdm_config *c, char *why, size_t whylen)
{
    int cert = c->client_certificate[0] != '\0', file = c->client_key[0] != '\0';
    int label = c->client_key_label[0] != '\0', secret = c->client_secret_len > 0;
    if (mdm_config_intune_enabled(c) &&
        (c->client_id[0] == '\0' || secret + cert != 1 || cert != file + label)) {
        err_set(why, whylen, "[intune] needs tenant, client_id and one credential: "
                "client_secret_file, or client_certificate with client_key or client_key_label");
        return -1;
    }
    if (strcmp(c->client_assertion_alg, "PS256") != 0 &&
        strcmp(c->client_assertion_alg, "RS256") != 0) {
        err_set(why, whylen, "client_assertion_alg: PS256 or RS256");
        return -1;
    }
    if (label && strcmp(c->client_assertion_alg, "PS256") == 0) {
        err_set(why, whylen, "client_key_label: the token signs PKCS#1 v1.5 only; set "
                "client_assertion_alg = RS256");
        return -1;
    }
    if (mdm_config_webhook_enabled(c) && c->webhook_secret_len == 0) {
        err_set(why, whylen, "[webhook] needs secret_file");
        return -1;
    }
    return 0;
}

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r';
}

int mdm_config_parse(mdm_config *c, const char *text, size_t len, const char *base_dir,
                     char *err, size_t errlen)
{
    mdm_config *tmp = malloc(sizeof(*tmp));
    char *val = malloc(MDM_LINE_MAX);
    char why[256] = "out of memory", section[32] = "";
    int line = 0, rc = -1;
    if (tmp == NULL || val == NULL)
        goto out;
    *tmp = *c;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *e = eol != NULL ? eol : end;
        line++;
        while (p < e && is_blank(*p))
            p++;
        if (p == e || *p == '#' || *p == ';')
            goto next;
        if (*p == '[') {
            const char *q = memchr(p, ']', (size_t)(e - p));
            size_t n = q != NULL ? (size_t)(q - p - 1) : 0;
            int known = 0;
            for (size_t i = 0; q != NULL && i < sizeof(sections) / sizeof(sections[0]); i++)
                known |= strlen(sections[i]) == n && strncmp(sections[i], p + 1, n) == 0;
            if (!known) {
                err_set(why, sizeof(why), "unknown section %.*s", (int)(e - p), p);
                goto fail;
            }
            snprintf(section, sizeof(section), "%.*s", (int)n, p + 1);
            goto next;
        }
        const char *eq = memchr(p, '=', (size_t)(e - p));
        if (eq == NULL || section[0] == '\0') {
            err_set(why, sizeof(why), eq == NULL ? "expected key = value" : "key outside a section");
            goto fail;
        }
        const char *ke = eq;
        while (ke > p && is_blank(ke[-1]))
            ke--;
        const struct key *k = NULL;
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (strcmp(keys[i].section, section) == 0 && strlen(keys[i].name) == (size_t)(ke - p) &&
                strncmp(keys[i].name, p, (size_t)(ke - p)) == 0)
                k = &keys[i];
        if (k == NULL) {
            err_set(why, sizeof(why), "unknown key [%s] %.*s", section, (int)(ke - p), p);
            goto fail;
        }
        const char *ve = e;
        while (ve > eq + 1 && is_blank(ve[-1]))
            ve--;
        if (config_parse_value(eq + 1, ve, val, MDM_LINE_MAX, why, sizeof(why)) != 0 ||
            set_key(tmp, k, val, base_dir, why, sizeof(why)) != 0)
            goto fail;
next:
        p = eol != NULL ? eol + 1 : end;
    }
    line = 0;
    if (cross_check(tmp, why, sizeof(why)) != 0)
        goto fail;
    *c = *tmp;
    rc = 0;
    goto out;
fail:
    if (line > 0)
        err_set(err, errlen, "line %d: %s", line, why);
    else
        err_set(err, errlen, "%s", why);
out:
    if (tmp != NULL) {
        mdm_config_cleanse(tmp);
        free(tmp);
    }
    if (val != NULL) {
        OPENSSL_cleanse(val, MDM_LINE_MAX);
        free(val);
    }
    if (rc != 0 && tmp == NULL)
        err_set(err, errlen, "out of memory");
    return rc;
}

int mdm_config_load(mdm_config *c, const char *path, char *err, size_t errlen)
{
    char *text = NULL, *dir = NULL;
    size_t len = 0;
    int rc = -1, e = file_read(path, MDM_FILE_MAX, &text, &len);
    if (e != 0) {
        err_set(err, errlen, "%s: %s", path, strerror(-e));
        goto out;
    }
    char *real = realpath(path, NULL);
    if (real != NULL) {
        char *slash = strrchr(real, '/');
        if (slash != NULL)
            *slash = '\0';
        dir = real;
    }
    mdm_config tmp;
    mdm_config_defaults(&tmp);
    if (mdm_config_parse(&tmp, text, len, dir, err, errlen) == 0) {
        *c = tmp;
        rc = 0;
    }
    mdm_config_cleanse(&tmp);
out:
    if (text != NULL) {
        OPENSSL_cleanse(text, len);
        free(text);
    }
    free(dir);
    return rc;
}
