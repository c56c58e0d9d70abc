/* config_keys: the table of every configuration key (section, name, type, field, limits), the
 * parsing of its values and the reload comparison over it, so range checks, error messages and
 * restart-only changes stay uniform and no key can be forgotten by one of them. Lines,
 * sections and quoting are config.c's. */
#include "engine/common/config.h"
#include "engine/common/config_keys.h"
#include "engine/common/file.h"

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

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
    T_LISTEN_ADMIN, /* host:port or "none" into admin_listen_host / _port */
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
    { "server", "yield_to_workers", T_BOOL, F(yield_to_workers), 0, 0 },
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
    { "admin", "listen",           T_LISTEN_ADMIN, F(admin_listen_port), 0, 0 },
    { "admin", "auth_fail_max",    T_INT,  F(admin_auth_fail_max), 1, 1000000 },
    { "admin", "auth_fail_window", T_SEC,  F(admin_auth_fail_window_s), 1000, CFG_DAY_MS },
    { "tls", "listen",             T_LISTEN_TLS, F(tls_listen_port), 0, 0 },
    { "tls", "cert",               T_PATH, F(tls_cert), 0, 0 },
    { "tls", "key",                T_PATH, F(tls_key), 0, 0 },
    { "tls", "key_label",          T_STR,  F(tls_key_label), 0, 0 },
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
    case T_LISTEN_ADMIN:
        if (strcmp(v, "none") == 0) {
            cfg->admin_listen_host[0] = '\0';
            cfg->admin_listen_port = 0;
            return 0;
        }
        return parse_listen(v, cfg->admin_listen_host, sizeof(cfg->admin_listen_host),
                            &cfg->admin_listen_port, why, whylen);
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

int config_section_find(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof(cfg_sections) / sizeof(cfg_sections[0]); i++)
        if (strlen(cfg_sections[i]) == n && memcmp(cfg_sections[i], name, n) == 0)
            return (int)i;
    return -1;
}

int config_key_set(config *cfg, int section, const char *key, size_t kl, const char *v,
                   const char *vend, const char *base_dir, char *why, size_t whylen)
{
    char value[CONFIG_PATH_MAX + 64], vwhy[128];
    const char *sname = cfg_sections[section];
    const struct cfg_key *k = NULL;

    for (size_t i = 0; i < sizeof(cfg_keys) / sizeof(cfg_keys[0]); i++) {
        if (strcmp(cfg_keys[i].section, sname) == 0 && strlen(cfg_keys[i].name) == kl
            && memcmp(cfg_keys[i].name, key, kl) == 0) {
            k = &cfg_keys[i];
            break;
        }
    }
    if (k == NULL)
        return retired_key(sname, key, kl, v, vend, why, whylen);
    if (config_parse_value(v, vend, value, sizeof(value), vwhy, sizeof(vwhy)) != 0) {
        err_set(why, whylen, "%s for '%s'", vwhy, k->name);
        return -1;
    }
    return apply_key(cfg, k, value, base_dir, why, whylen);
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
