/* config: the INI-style configuration file (format in config.h and docs/configuration.md).
 * One table describes every key (section, name, type, field, limits), so parsing, range
 * checks and error messages stay uniform and no key can be forgotten by one of them. */
#include "engine/common/config.h"
#include "engine/common/file.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#define CFG_FILE_MAX   (1u << 20)   /* a configuration file larger than this is a mistake */
#define CFG_SECRET_MAX 4096         /* PIN / challenge files */
#define CFG_DAY_MS     86400000LL

enum cfg_type {
    T_LISTEN,   /* host:port into listen_host / listen_port            */
    T_INT,      /* decimal integer in [min, max] into int               */
    T_SIZE,     /* size with optional unit in [min, max] into size_t    */
    T_MS,       /* duration in [min, max] ms into int milliseconds      */
    T_SEC,      /* duration in [min, max] ms, whole seconds, into int s */
    T_STR,      /* string into char[size]                               */
    T_PATH,     /* string, relative paths resolved against base_dir     */
    T_LOG,      /* T_PATH, except "-" (stdout) stays as is              */
    T_MODE,     /* pkcs11 | file                                        */
    T_BOOL,     /* yes/no/true/false/1/0 into int                       */
    T_LISTEN_TLS, /* host:port into tls_listen_host / tls_listen_port   */
};

struct cfg_key {
    const char *section;
    const char *name;
    enum cfg_type type;
    size_t off, size;
    long long min, max;
};

#define F(field) offsetof(config, field), sizeof(((config *)0)->field)

static const struct cfg_key cfg_keys[] = {
    { "server", "listen",          T_LISTEN, F(listen_port), 0, 0 },
    { "server", "shards",          T_INT,  F(shards), 0, 256 },
    { "server", "crypto_workers",  T_INT,  F(workers), 0, 1024 },
    { "server", "max_url",         T_SIZE, F(max_url), 256, 16LL << 20 },
    { "server", "max_header",      T_SIZE, F(max_header), 1024, 16LL << 20 },
    { "server", "max_body",        T_SIZE, F(max_body), 1024, 1LL << 30 },
    { "server", "header_timeout",  T_MS,   F(header_timeout_ms), 1, CFG_DAY_MS },
    { "server", "idle_timeout",    T_MS,   F(idle_timeout_ms), 1, CFG_DAY_MS },
    { "server", "max_connections", T_INT,  F(max_conns), 1, 1000000 },
    { "server", "queue_max",       T_INT,  F(queue_max), 0, 1000000 },
    { "server", "request_timeout", T_MS,   F(request_timeout_ms), 1, CFG_DAY_MS },
    { "server", "state_dir",       T_PATH, F(state_dir), 0, 0 },
    { "server", "audit_log",       T_LOG,  F(audit_log), 0, 0 },
    { "server", "mdm_config",      T_PATH, F(mdm_config), 0, 0 },
    { "keys", "mode",              T_MODE, F(key_mode), 0, 0 },
    { "keys", "pkcs11_module",     T_STR,  F(pkcs11_module), 0, 0 },
    { "keys", "token_label",       T_STR,  F(token_label), 0, 0 },
    { "keys", "pin_file",          T_PATH, F(pin_file), 0, 0 },
    { "keys", "module_env",        T_STR,  F(module_env), 0, 0 },
    { "keys", "ca_key_label",      T_STR,  F(ca_key_label), 0, 0 },
    { "keys", "ra_key_label",      T_STR,  F(ra_key_label), 0, 0 },
    { "keys", "ca_key_file",       T_PATH, F(ca_key_file), 0, 0 },
    { "keys", "ra_key_file",       T_PATH, F(ra_key_file), 0, 0 },
    { "keys", "ca_cert",           T_PATH, F(ca_cert), 0, 0 },
    { "keys", "ra_cert",           T_PATH, F(ra_cert), 0, 0 },
    { "store", "path",             T_PATH, F(store_path), 0, 0 },
    { "store", "map_size",         T_SIZE, F(store_map_size), 1LL << 20, 1LL << 40 },
    { "store", "batch_max",        T_INT,  F(batch_max), 1, 65536 },
    { "store", "backend",          T_STR,  F(store_backend), 0, 0 },
    { "store", "conninfo",         T_STR,  F(store_conninfo), 0, 0 },
    { "issue", "validity_days",    T_INT,  F(validity_days), 1, 36500 },
    { "issue", "backdate",         T_SEC,  F(backdate_s), 0, 30 * CFG_DAY_MS },
    { "issue", "challenge",        T_STR,  F(challenge), 0, 0 },
    { "issue", "challenge_file",   T_PATH, F(challenge_file), 0, 0 },
    { "issue", "allow_sha1",       T_BOOL, F(allow_sha1), 0, 0 },
    { "issue", "allow_sha1_messages", T_BOOL, F(allow_sha1_messages), 0, 0 },
    { "issue", "crl_url",          T_STR,  F(crl_url), 0, 0 },
    { "issue", "ocsp_url",         T_STR,  F(ocsp_url), 0, 0 },
    { "issue", "profiles_dir",     T_PATH, F(profiles_dir), 0, 0 },
    { "crl", "validity",           T_SEC,  F(crl_validity_s), 60000, 366 * CFG_DAY_MS },
    { "crl", "rebuild_delay",      T_MS,   F(crl_rebuild_delay_ms), 0, 3600000 },
    { "crl", "file",               T_PATH, F(crl_file), 0, 0 },
    { "ocsp", "cert",              T_PATH, F(ocsp_cert), 0, 0 },
    { "ocsp", "key_label",         T_STR,  F(ocsp_key_label), 0, 0 },
    { "ocsp", "key_file",          T_PATH, F(ocsp_key_file), 0, 0 },
    { "ocsp", "validity",          T_SEC,  F(ocsp_validity_s), 60000, 7 * CFG_DAY_MS },
    { "ocsp", "nonce",             T_BOOL, F(ocsp_nonce), 0, 0 },
    { "admin", "token_file",       T_PATH, F(admin_token_file), 0, 0 },
    { "tls", "listen",             T_LISTEN_TLS, F(tls_listen_port), 0, 0 },
    { "tls", "cert",               T_PATH, F(tls_cert), 0, 0 },
    { "tls", "key",                T_PATH, F(tls_key), 0, 0 },
    { "tls", "min_version",        T_STR,  F(tls_min_version), 0, 0 },
};

/* The keys a reload applies (config_restart_changes): all in [issue], read into the issuer. */
static const char *const cfg_reloadable[] = { "validity_days", "backdate", "challenge",
                                              "challenge_file", "allow_sha1", "crl_url",
                                              "ocsp_url", "profiles_dir" };

/* Removed switches: "off" still loads (configurations copied from older examples carry
 * it) and means nothing; "on" is refused with what replaced the key, so an installation
 * that relied on it learns so at start instead of answering its clients differently. */
static const struct { const char *section, *name, *replaced_by; } cfg_retired[] = {
    { "issue", "allow_des_requests",
      "single DES (an RFC 8894 MUST NOT) is allowed per profile now: remove the line and set "
      "allow_des = yes in the profile the old clients use (conf/profiles/legacy.conf is one; "
      "docs/profiles.md)" },
};

static const char *const cfg_sections[] = { "server", "keys", "store", "issue", "crl", "ocsp",
                                            "admin", "tls" };

static void set_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

void config_defaults(config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    set_str(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = 8080;
    cfg->max_url = 65534;
    cfg->max_header = 16384;
    cfg->max_body = 256 * 1024;
    cfg->header_timeout_ms = 10000;
    cfg->idle_timeout_ms = 60000;
    cfg->max_conns = 4096;
    cfg->request_timeout_ms = 10000;
    set_str(cfg->state_dir, sizeof(cfg->state_dir), ".");
    set_str(cfg->audit_log, sizeof(cfg->audit_log), "-");
    cfg->key_mode = CONFIG_KEYS_PKCS11;
    set_str(cfg->pkcs11_module, sizeof(cfg->pkcs11_module), "/usr/lib/softhsm/libsofthsm2.so");
    set_str(cfg->token_label, sizeof(cfg->token_label), "scepd");
    set_str(cfg->ca_key_label, sizeof(cfg->ca_key_label), "ca");
    set_str(cfg->ra_key_label, sizeof(cfg->ra_key_label), "ra");
    set_str(cfg->store_path, sizeof(cfg->store_path), "store");
    cfg->store_map_size = 64u << 20;
    cfg->batch_max = 256;
    cfg->validity_days = 365;
    cfg->backdate_s = 300;
    cfg->allow_sha1 = 0;
    cfg->allow_sha1_messages = 0;
    set_str(cfg->profiles_dir, sizeof(cfg->profiles_dir), "profiles");
    cfg->crl_validity_s = 86400;
    cfg->crl_rebuild_delay_ms = 2000;
    set_str(cfg->crl_file, sizeof(cfg->crl_file), "crl/ca.crl");
    set_str(cfg->ocsp_key_label, sizeof(cfg->ocsp_key_label), "ocsp");
    cfg->ocsp_validity_s = 3600;
    cfg->ocsp_nonce = 1;
    set_str(cfg->tls_min_version, sizeof(cfg->tls_min_version), "1.2");
}

/* Parses an unsigned decimal number with an optional unit suffix; returns the suffix. */
static const char *parse_uint(const char *s, unsigned long long *out)
{
    if (!isdigit((unsigned char)*s))
        return NULL;
    unsigned long long v = 0;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (ULLONG_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
    }
    *out = v;
    return s;
}

long long config_parse_duration_ms(const char *s)
{
    static const struct { const char *unit; unsigned long long ms; } units[] = {
        { "", 1000 }, { "s", 1000 }, { "ms", 1 }, { "m", 60000 }, { "h", 3600000 },
        { "d", 86400000 },
    };
    unsigned long long v;
    const char *u = s != NULL ? parse_uint(s, &v) : NULL;
    if (u == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(u, units[i].unit) != 0)
            continue;
        if (v > (unsigned long long)LLONG_MAX / units[i].ms)
            return -1;
        return (long long)(v * units[i].ms);
    }
    return -1;
}

int config_parse_size(const char *s, size_t *out)
{
    static const struct { const char *unit; int shift; } units[] = {
        { "", 0 }, { "b", 0 },
        { "k", 10 }, { "kb", 10 }, { "kib", 10 },
        { "m", 20 }, { "mb", 20 }, { "mib", 20 },
        { "g", 30 }, { "gb", 30 }, { "gib", 30 },
        { "t", 40 }, { "tb", 40 }, { "tib", 40 },
    };
    unsigned long long v;
    const char *u = s != NULL ? parse_uint(s, &v) : NULL;
    if (u == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(u, units[i].unit) != 0)
            continue;
        if (v > (unsigned long long)SIZE_MAX >> units[i].shift)
            return -1;
        *out = (size_t)(v << units[i].shift);
        return 0;
    }
    return -1;
}

/* host:port or [v6]:port. Hosts are names or addresses; a bare IPv6 address needs brackets
 * because its last colon would be ambiguous. */
static int parse_listen(const char *v, char *host, size_t hostlen, uint16_t *port,
                        char *why, size_t whylen)
{
    const char *h = v, *hend, *p;
    if (*v == '[') {
        h = v + 1;
        hend = strchr(h, ']');
        if (hend == NULL || hend[1] != ':' || memchr(h, ':', (size_t)(hend - h)) == NULL) {
            err_set(why, whylen, "bad listen address '%s' (want [v6addr]:port)", v);
            return -1;
        }
        p = hend + 2;
    } else {
        hend = strrchr(v, ':');
        if (hend == NULL || memchr(v, ':', (size_t)(hend - v)) != NULL) {
            err_set(why, whylen, "bad listen address '%s' (want host:port or [v6addr]:port)", v);
            return -1;
        }
        p = hend + 1;
    }
    size_t hl = (size_t)(hend - h);
    if (hl == 0) {
        err_set(why, whylen, "listen address '%s' has no host", v);
        return -1;
    }
    for (size_t i = 0; i < hl; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_' && c != ':' && c != '%') {
            err_set(why, whylen, "bad character in listen host '%.*s'", (int)hl, h);
            return -1;
        }
    }
    if (hl >= hostlen) {
        err_set(why, whylen, "listen host too long (max %zu bytes)", hostlen - 1);
        return -1;
    }
    unsigned long long pv;
    const char *end = parse_uint(p, &pv);
    if (end == NULL || *end != '\0' || pv > 65535) {
        err_set(why, whylen, "bad port in '%s' (want 0..65535)", v);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)pv;
    return 0;
}

/* Copies value (or base_dir/value for a relative path) into dst without truncating. */
static int store_string(const struct cfg_key *k, char *dst, const char *v, const char *base_dir,
                        char *why, size_t whylen)
{
    bool resolve = (k->type == T_PATH || (k->type == T_LOG && strcmp(v, "-") != 0))
                   && base_dir != NULL && v[0] != '\0' && v[0] != '/';
    int n = resolve ? snprintf(dst, k->size, "%s/%s", base_dir, v)
                    : snprintf(dst, k->size, "%s", v);
    if (n < 0 || (size_t)n >= k->size) {
        err_set(why, whylen, "value too long for '%s' (max %zu bytes%s)", k->name, k->size - 1,
                resolve ? " after resolving against the configuration directory" : "");
        return -1;
    }
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = { "yes", "true", "1", "on" };
    static const char *const no[] = { "no", "false", "0", "off" };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(v, yes[i]) == 0) { *out = 1; return 0; }
        if (strcasecmp(v, no[i]) == 0) { *out = 0; return 0; }
    }
    return -1;
}

/* Applies one key's value to cfg; on error writes the reason (without "line N") to why. */
static int apply_key(config *cfg, const struct cfg_key *k, const char *v, const char *base_dir,
                     char *why, size_t whylen)
{
    char *field = (char *)cfg + k->off;
    switch (k->type) {
    case T_LISTEN:
        return parse_listen(v, cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port,
                            why, whylen);
    case T_LISTEN_TLS:
        return parse_listen(v, cfg->tls_listen_host, sizeof(cfg->tls_listen_host),
                            &cfg->tls_listen_port, why, whylen);
    case T_INT: {
        unsigned long long n;
        const char *end = parse_uint(v, &n);
        if (end == NULL || *end != '\0' || n < (unsigned long long)k->min
            || n > (unsigned long long)k->max) {
            err_set(why, whylen, "bad value '%s' for '%s' (want an integer %lld..%lld)", v,
                    k->name, k->min, k->max);
            return -1;
        }
        *(int *)field = (int)n;
        return 0;
    }
    case T_SIZE: {
        size_t n;
        if (config_parse_size(v, &n) != 0 || n < (unsigned long long)k->min
            || n > (unsigned long long)k->max) {
            err_set(why, whylen, "bad size '%s' for '%s' (want %lld..%lld bytes, units k/m/g)",
                    v, k->name, k->min, k->max);
            return -1;
        }
        *(size_t *)field = n;
        return 0;
    }
    case T_MS:
    case T_SEC: {
        long long ms = config_parse_duration_ms(v);
        if (ms < k->min || ms > k->max || (k->type == T_SEC && ms % 1000 != 0)) {
            err_set(why, whylen, "bad duration '%s' for '%s' (want %lldms..%llds%s)", v, k->name,
                    k->min, k->max / 1000, k->type == T_SEC ? ", whole seconds" : "");
            return -1;
        }
        *(int *)field = (int)(k->type == T_SEC ? ms / 1000 : ms);
        return 0;
    }
    case T_STR:
    case T_PATH:
    case T_LOG:
        return store_string(k, field, v, base_dir, why, whylen);
    case T_MODE:
        if (strcmp(v, "pkcs11") == 0) {
            cfg->key_mode = CONFIG_KEYS_PKCS11;
        } else if (strcmp(v, "file") == 0) {
            cfg->key_mode = CONFIG_KEYS_FILE;
        } else {
            err_set(why, whylen, "bad mode '%s' (want pkcs11 or file)", v);
            return -1;
        }
        return 0;
    case T_BOOL:
        if (parse_bool(v, (int *)field) != 0) {
            err_set(why, whylen, "bad value '%s' for '%s' (want yes/no/true/false/1/0)", v,
                    k->name);
            return -1;
        }
        return 0;
    }
    return -1;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Extracts a value from [p, end) into out (NUL-terminated). Quoted values keep everything
 * between the quotes (\" and \\ escape); unquoted values end at a '#' or ';' that follows
 * whitespace, and trailing whitespace is trimmed. */
int config_parse_value(const char *p, const char *end, char *out, size_t outlen,
                       char *why, size_t whylen)
{
    size_t n = 0;
    while (p < end && is_blank(*p))
        p++;
    if (p < end && *p == '"') {
        p++;
        for (;;) {
            if (p >= end) {
                err_set(why, whylen, "unterminated quote");
                return -1;
            }
            char c = *p++;
            if (c == '"')
                break;
            if (c == '\\' && p < end && (*p == '"' || *p == '\\'))
                c = *p++;
            if (n + 1 >= outlen) {
                err_set(why, whylen, "value too long");
                return -1;
            }
            out[n++] = c;
        }
        while (p < end && is_blank(*p))
            p++;
        if (p < end && *p != '#' && *p != ';') {
            err_set(why, whylen, "text after closing quote");
            return -1;
        }
    } else {
        for (const char *q = p; q < end; q++) {
            if ((*q == '#' || *q == ';') && (q == p || is_blank(q[-1])))
                break;
            if (*q == '"') {
                err_set(why, whylen, "quote inside an unquoted value");
                return -1;
            }
            if (n + 1 >= outlen) {
                err_set(why, whylen, "value too long");
                return -1;
            }
            out[n++] = *q;
        }
        while (n > 0 && is_blank(out[n - 1]))
            n--;
    }
    out[n] = '\0';
    if (strlen(out) != n) {
        err_set(why, whylen, "NUL byte in value");
        return -1;
    }
    return 0;
}

/* A key that is not in cfg_keys: 0 for a retired switch set off, else -1 with why. */
static int retired_key(const char *sname, const char *key, size_t kl, const char *v,
                       const char *end, char *why, size_t whylen)
{
    char value[64], vwhy[128];
    for (size_t i = 0; i < sizeof(cfg_retired) / sizeof(cfg_retired[0]); i++) {
        if (strcmp(cfg_retired[i].section, sname) != 0 || strlen(cfg_retired[i].name) != kl ||
            memcmp(cfg_retired[i].name, key, kl) != 0)
            continue;
        int on = 1;
        if (config_parse_value(v, end, value, sizeof(value), vwhy, sizeof(vwhy)) != 0)
            value[0] = '\0';
        else if (parse_bool(value, &on) == 0 && !on)
            return 0;
        err_set(why, whylen, "'%s = %s' is no longer supported (only 'no' is still accepted): %s",
                cfg_retired[i].name, value, cfg_retired[i].replaced_by);
        return -1;
    }
    err_set(why, whylen, "unknown key '%.*s' in [%s]", (int)(kl > 64 ? 64 : kl), key, sname);
    return -1;
}

static int parse_line(config *cfg, const char *p, const char *end, int *section,
                      const char *base_dir, char *why, size_t whylen)
{
    char value[CONFIG_PATH_MAX + 64];
    while (p < end && is_blank(*p))
        p++;
    while (end > p && (is_blank(end[-1]) || end[-1] == '\r'))
        end--;
    if (p == end || *p == '#' || *p == ';')
        return 0;

    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (close == NULL) {
            err_set(why, whylen, "missing ']' in section header");
            return -1;
        }
        const char *rest = close + 1;
        while (rest < end && is_blank(*rest))
            rest++;
        if (rest < end && *rest != '#' && *rest != ';') {
            err_set(why, whylen, "text after section header");
            return -1;
        }
        const char *name = p + 1;
        size_t nl = (size_t)(close - name);
        while (nl > 0 && is_blank(*name)) { name++; nl--; }
        while (nl > 0 && is_blank(name[nl - 1]))
            nl--;
        for (size_t i = 0; i < sizeof(cfg_sections) / sizeof(cfg_sections[0]); i++) {
            if (strlen(cfg_sections[i]) == nl && memcmp(cfg_sections[i], name, nl) == 0) {
                *section = (int)i;
                return 0;
            }
        }
        err_set(why, whylen, "unknown section [%.*s]", (int)(nl > 64 ? 64 : nl), name);
        return -1;
    }

    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (eq == NULL) {
        err_set(why, whylen, "expected 'key = value'");
        return -1;
    }
    const char *kend = eq;
    while (kend > p && is_blank(kend[-1]))
        kend--;
    size_t kl = (size_t)(kend - p);
    if (kl == 0) {
        err_set(why, whylen, "missing key before '='");
        return -1;
    }
    if (*section < 0) {
        err_set(why, whylen, "key '%.*s' outside a section", (int)(kl > 64 ? 64 : kl), p);
        return -1;
    }
    const char *sname = cfg_sections[*section];
    const struct cfg_key *k = NULL;
    for (size_t i = 0; i < sizeof(cfg_keys) / sizeof(cfg_keys[0]); i++) {
        if (strcmp(cfg_keys[i].section, sname) == 0 && strlen(cfg_keys[i].name) == kl
            && memcmp(cfg_keys[i].name, p, kl) == 0) {
            k = &cfg_keys[i];
            break;
        }
    }
    if (k == NULL)
        return retired_key(sname, p, kl, eq + 1, end, why, whylen);
    char vwhy[128];
    if (config_parse_value(eq + 1, end, value, sizeof(value), vwhy, sizeof(vwhy)) != 0) {
        err_set(why, whylen, "%s for '%s'", vwhy, k->name);
        return -1;
    }
    return apply_key(cfg, k, value, base_dir, why, whylen);
}

/* [store] backend: lmdb keeps store_path (a directory); postgresql makes it the location
 * "postgresql:CONNINFO" that store_open recognises, so callers need not know the backend. */
static int store_location(config *cfg, char *err, size_t errlen)
{
    if (cfg->store_backend[0] == '\0' || strcmp(cfg->store_backend, "lmdb") == 0)
        return 0;
    if (strcmp(cfg->store_backend, "postgresql") != 0) {
        err_set(err, errlen, "bad [store] backend '%s' (want lmdb or postgresql)",
                cfg->store_backend);
        return -1;
    }
    if (cfg->store_conninfo[0] == '\0') {
        err_set(err, errlen, "[store] backend = postgresql needs conninfo");
        return -1;
    }
    snprintf(cfg->store_path, sizeof(cfg->store_path), "postgresql:%s", cfg->store_conninfo);
    return 0;
}

int config_parse(config *cfg, const char *text, size_t len, const char *base_dir,
                 char *err, size_t errlen)
{
    config tmp = *cfg;
    int section = -1, line = 0, rc = -1;
    char why[CONFIG_PATH_MAX + 256];
    size_t pos = 0;

    if (text == NULL && len > 0) {
        err_set(err, errlen, "line 0: no text");
        goto out;
    }
    while (pos < len) {
        line++;
        const char *start = text + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t ll = nl != NULL ? (size_t)(nl - start) : len - pos;
        pos += ll + (nl != NULL);
        if (memchr(start, '\0', ll) != NULL) {
            err_set(err, errlen, "line %d: NUL byte", line);
            goto out;
        }
        if (parse_line(&tmp, start, start + ll, &section, base_dir, why, sizeof(why)) != 0) {
            err_set(err, errlen, "line %d: %s", line, why);
            goto out;
        }
    }
    if (tmp.challenge[0] != '\0' && tmp.challenge_file[0] != '\0') {
        err_set(err, errlen, "line %d: challenge and challenge_file are both set", line);
        goto out;
    }
    if (store_location(&tmp, err, errlen) != 0)
        goto out;
    rc = 0;
out:
    if (rc == 0)
        *cfg = tmp;
    OPENSSL_cleanse(&tmp, sizeof(tmp));   /* may hold the challenge */
    return rc;
}

int config_load(config *cfg, const char *path, char *err, size_t errlen)
{
    int rc = -1, e = 0;
    char *text = NULL, *dir = NULL, *real = NULL;
    size_t len = 0;
    config tmp;

    config_defaults(&tmp);
    if ((e = file_read(path, CFG_FILE_MAX, &text, &len)) != 0) {
        err_set(err, errlen, "%s: %s", path, strerror(-e));
        goto out;
    }
    /* Resolve against the file's real directory so paths survive a later chdir. */
    dir = strdup(path);
    if (dir == NULL) {
        err_set(err, errlen, "%s: out of memory", path);
        goto out;
    }
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        free(dir);
        dir = strdup(".");
    } else if (slash == dir) {
        slash[1] = '\0';
    } else {
        *slash = '\0';
    }
    real = dir != NULL ? realpath(dir, NULL) : NULL;
    if (real == NULL) {
        err_set(err, errlen, "%s: cannot resolve directory: %s", path, strerror(errno));
        goto out;
    }
    /* "/" as base would give "//x": harmless, but keep paths tidy. */
    if (config_parse(&tmp, text, len, strcmp(real, "/") == 0 ? "" : real, err, errlen) != 0)
        goto out;
    /* The default "profiles" is relative to the configuration file like any written path. */
    if (tmp.profiles_dir[0] != '/') {
        char rel[CONFIG_PATH_MAX];
        set_str(rel, sizeof(rel), tmp.profiles_dir);
        if ((size_t)snprintf(tmp.profiles_dir, sizeof(tmp.profiles_dir), "%s/%s",
                             strcmp(real, "/") == 0 ? "" : real, rel) >= sizeof(tmp.profiles_dir)) {
            err_set(err, errlen, "%s: profiles_dir too long", path);
            goto out;
        }
    }
    rc = 0;
out:
    if (rc == 0)
        *cfg = tmp;
    OPENSSL_cleanse(&tmp, sizeof(tmp));
    if (text != NULL) {
        OPENSSL_cleanse(text, len);
        free(text);
    }
    free(dir);
    free(real);
    return rc;
}

/* Reads a secret file, strips trailing CR/LF; returns its length or -1 with errno-ish reason. */
static int read_secret(const char *path, char *buf, size_t buflen, char *err, size_t errlen,
                       const char *what)
{
    int rc = -1, e = 0;
    char *text = NULL;
    size_t len = 0;
    if ((e = file_read(path, CFG_SECRET_MAX, &text, &len)) != 0) {
        err_set(err, errlen, "%s file %s: %s", what, path, strerror(-e));
        goto out;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len == 0) {
        err_set(err, errlen, "%s file %s is empty", what, path);
        goto out;
    }
    if (memchr(text, '\0', len) != NULL) {
        err_set(err, errlen, "%s file %s contains a NUL byte", what, path);
        goto out;
    }
    if (len >= buflen || len > INT_MAX) {
        err_set(err, errlen, "%s in %s too long (max %zu bytes)", what, path,
                buflen > 0 ? buflen - 1 : 0);
        goto out;
    }
    memcpy(buf, text, len);
    buf[len] = '\0';
    rc = (int)len;
out:
    if (text != NULL) {
        OPENSSL_cleanse(text, len);
        free(text);
    }
    return rc;
}

int config_read_pin(const config *cfg, char *pin, size_t pinlen, char *err, size_t errlen)
{
    if (cfg->pin_file[0] != '\0')
        return read_secret(cfg->pin_file, pin, pinlen, err, errlen, "PIN") < 0 ? -1 : 0;
    const char *env = getenv("SCEPD_PIN");
    if (env == NULL || env[0] == '\0') {
        err_set(err, errlen, "no PIN: set [keys] pin_file or the environment variable SCEPD_PIN");
        return -1;
    }
    size_t len = strlen(env);
    if (len >= pinlen) {
        err_set(err, errlen, "PIN in SCEPD_PIN too long (max %zu bytes)",
                pinlen > 0 ? pinlen - 1 : 0);
        return -1;
    }
    memcpy(pin, env, len + 1);
    return 0;
}

void config_forget_pin_env(void)
{
    /* /proc/<pid>/environ shows the environment block the process started with, not libc's
     * copy: overwrite the value in place (getenv points into that block until the variable
     * is changed), then drop the variable. */
    char *env = getenv("SCEPD_PIN");
    if (env != NULL)
        OPENSSL_cleanse(env, strlen(env));
    unsetenv("SCEPD_PIN");
}

int config_read_challenge(const config *cfg, char *buf, size_t buflen)
{
    if (cfg->challenge_file[0] != '\0')
        return read_secret(cfg->challenge_file, buf, buflen, NULL, 0, "challenge");
    size_t len = strlen(cfg->challenge);
    if (len >= buflen)
        return -1;
    memcpy(buf, cfg->challenge, len + 1);
    return (int)len;
}

int config_apply_module_env(const config *cfg)
{
    const char *eq = strchr(cfg->module_env, '=');
    char name[256];

    if (cfg->module_env[0] == '\0')
        return 0;
    if (eq == NULL || eq == cfg->module_env || (size_t)(eq - cfg->module_env) >= sizeof(name))
        return -1;
    memcpy(name, cfg->module_env, (size_t)(eq - cfg->module_env));
    name[eq - cfg->module_env] = '\0';
    return setenv(name, eq + 1, 1) == 0 ? 0 : -1;
}

int config_read_admin_token(const config *cfg, char *buf, size_t buflen)
{
    if (cfg->admin_token_file[0] == '\0') {
        if (buflen > 0)
            buf[0] = '\0';
        return 0;
    }
    int n = read_secret(cfg->admin_token_file, buf, buflen, NULL, 0, "admin token");
    if (n >= 0 && n < 16) {
        OPENSSL_cleanse(buf, buflen);
        return -1;
    }
    return n;
}

static bool reloadable(const struct cfg_key *k)
{
    if (strcmp(k->section, "issue") != 0)
        return false;
    for (size_t i = 0; i < sizeof(cfg_reloadable) / sizeof(cfg_reloadable[0]); i++)
        if (strcmp(k->name, cfg_reloadable[i]) == 0)
            return true;
    return false;
}

int config_restart_changes(const config *running, const config *next, char *out,
                           size_t outlen)
{
    size_t len = 0;
    int n = 0;

    if (outlen > 0)
        out[0] = '\0';
    for (size_t i = 0; i < sizeof(cfg_keys) / sizeof(cfg_keys[0]); i++) {
        const struct cfg_key *k = &cfg_keys[i];
        const char *x = (const char *)running + k->off, *y = (const char *)next + k->off;
        bool same;
        if (reloadable(k))
            continue;
        switch (k->type) {
        case T_LISTEN:
            same = running->listen_port == next->listen_port &&
                   strcmp(running->listen_host, next->listen_host) == 0;
            break;
        case T_STR:
        case T_PATH:
        case T_LOG:
            same = strncmp(x, y, k->size) == 0;
            break;
        default:
            same = memcmp(x, y, k->size) == 0;
            break;
        }
        if (same)
            continue;
        n++;
        if (len < outlen) {
            int w = snprintf(out + len, outlen - len, "%s[%s] %s", n > 1 ? ", " : "",
                             k->section, k->name);
            len += w > 0 ? (size_t)w : 0;
        }
    }
    return n;
}
