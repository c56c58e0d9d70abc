/* config: the INI-style configuration file (format in config.h and docs/configuration.md):
 * defaults, lines, sections, quoting, the cross-key checks, loading, and the secret files.
 * What each key is and how its value is parsed is the table of config_keys.c. */
#include "engine/common/config.h"
#include "engine/common/config_keys.h"
#include "engine/common/file.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define CFG_FILE_MAX   (1u << 20)   /* a configuration file larger than this is a mistake */
#define CFG_SECRET_MAX 4096         /* PIN / challenge files */

static void set_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src);
}

void config_defaults(config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    set_str(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = 8080;
    set_str(cfg->admin_listen_host, sizeof(cfg->admin_listen_host), "127.0.0.1");
    cfg->admin_listen_port = 8081;
    cfg->admin_auth_fail_max = 5;
    cfg->admin_auth_fail_window_s = 60;
    cfg->max_url = 65534;
    cfg->max_header = 16384;
    cfg->max_body = 256 * 1024;
    cfg->header_timeout_ms = 10000;
    cfg->idle_timeout_ms = 60000;
    cfg->max_conns = 4096;
    cfg->request_timeout_ms = 10000;
    cfg->yield_to_workers = 1;
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

static int parse_line(config *cfg, const char *p, const char *end, int *section,
                      const char *base_dir, char *why, size_t whylen)
{
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
        int i = config_section_find(name, nl);
        if (i >= 0) {
            *section = i;
            return 0;
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
    return config_key_set(cfg, *section, p, kl, eq + 1, end, base_dir, why, whylen);
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
