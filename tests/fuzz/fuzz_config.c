/* Fuzz target for engine/common/config.c with config_keys.c (the main file) and
 * engine/mdm/mdm_config.c (the MDM stage's file).
 *
 * Raw inputs (first byte < 0x80): the bytes into config_parse (with and without base_dir),
 * mdm_config_parse and the value parsers (config_parse_duration_ms, config_parse_size).
 *
 * Structured inputs (first byte >= 0x80): the bytes choose keys of either file from the
 * harness's copy of the key tables and a value of the key's type (integers, sizes and
 * durations with units, in and out of range; booleans; listen addresses; modes; URLs allowed
 * or not; paths; secret files from a scratch folder: good, empty, with a NUL, too long), and
 * the harness writes well-formed lines ([section], key = value, quoted or not, CRLF or not),
 * sometimes a wrong section. Each value's acceptance is predicted: a line predicted bad makes
 * the parse fail; a parse that succeeds holds exactly the last value written for each typed
 * key and every integer within its table range.
 *
 * Layout: flags (bit 0: the MDM file, bit 1: CRLF, bit 2: the scratch folder as base_dir,
 * bit 3: also load it from a file), then per line (at most 48): key index into the table
 * below, style (0x01 blank before '=', 0x08 blank before a section, 0x10 quoted, 0x20 tab
 * indent, 0x40 repeat the section header, 0x47 all set: a wrong section, 0x80 a comment after
 * an unquoted value), then the value's bytes, read by the key's type.
 *
 * With flag 8 (and the scratch folder as base) the same text is also loaded from a file and
 * must give the same verdict.
 *
 * Always: a failure leaves a NUL-terminated error text; a success leaves terminated strings.
 * Violated invariants abort(). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/common/config.h"
#include "engine/mdm/mdm_config.h"

#define DAY_MS 86400000LL

enum kind { INT, SIZE, MS, SEC, STR, PATH, BOOL, LISTEN, MODE, URL, SECRET, ENC, MINT };

struct key {
    const char *section, *name;
    enum kind kind;
    size_t off, size;
    long long min, max;
};

#define C(f) offsetof(config, f), sizeof(((config *)0)->f)
#define M(f) offsetof(mdm_config, f), sizeof(((mdm_config *)0)->f)

/* The main file (engine/common/config_keys.c, cfg_keys). */
static const struct key MAIN[] = {
    { "server", "listen", LISTEN, C(listen_port), 0, 0 },
    { "server", "shards", INT, C(shards), 0, 256 },
    { "server", "crypto_workers", INT, C(workers), 0, 1024 },
    { "server", "max_url", SIZE, C(max_url), 256, 16LL << 20 },
    { "server", "max_header", SIZE, C(max_header), 1024, 16LL << 20 },
    { "server", "max_body", SIZE, C(max_body), 1024, 1LL << 30 },
    { "server", "header_timeout", MS, C(header_timeout_ms), 1, DAY_MS },
    { "server", "idle_timeout", MS, C(idle_timeout_ms), 1, DAY_MS },
    { "server", "max_connections", INT, C(max_conns), 1, 1000000 },
    { "server", "queue_max", INT, C(queue_max), 0, 1000000 },
    { "server", "request_timeout", MS, C(request_timeout_ms), 1, DAY_MS },
    { "server", "state_dir", PATH, C(state_dir), 0, 0 },
    { "keys", "mode", MODE, C(key_mode), 0, 0 },
    { "keys", "token_label", STR, C(token_label), 0, 0 },
    { "keys", "pin_file", PATH, C(pin_file), 0, 0 },
    { "keys", "ca_key_label", STR, C(ca_key_label), 0, 0 },
    { "store", "map_size", SIZE, C(store_map_size), 1LL << 20, 1LL << 40 },
    { "store", "batch_max", INT, C(batch_max), 1, 65536 },
    { "issue", "validity_days", INT, C(validity_days), 1, 36500 },
    { "issue", "backdate", SEC, C(backdate_s), 0, 30 * DAY_MS },
    { "issue", "challenge", STR, C(challenge), 0, 0 },
    { "issue", "challenge_file", PATH, C(challenge_file), 0, 0 },
    { "issue", "allow_sha1", BOOL, C(allow_sha1), 0, 0 },
    { "issue", "allow_sha1_messages", BOOL, C(allow_sha1_messages), 0, 0 },
    { "issue", "crl_url", STR, C(crl_url), 0, 0 },
    { "crl", "validity", SEC, C(crl_validity_s), 60000, 366 * DAY_MS },
    { "crl", "rebuild_delay", MS, C(crl_rebuild_delay_ms), 0, 3600000 },
    { "ocsp", "validity", SEC, C(ocsp_validity_s), 60000, 7 * DAY_MS },
    { "ocsp", "nonce", BOOL, C(ocsp_nonce), 0, 0 },
    { "admin", "token_file", PATH, C(admin_token_file), 0, 0 },
    { "admin", "listen", LISTEN, C(admin_listen_port), 1, 0 },
    { "admin", "auth_fail_max", INT, C(admin_auth_fail_max), 1, 1000000 },
    { "admin", "auth_fail_window", SEC, C(admin_auth_fail_window_s), 1000, DAY_MS },
    { "tls", "listen", LISTEN, C(tls_listen_port), 0, 0 },
    { "tls", "min_version", STR, C(tls_min_version), 0, 0 },
};

/* The MDM file (engine/mdm/mdm_config.c, keys). */
static const struct key MDM[] = {
    { "mdm", "max_in_flight", MINT, M(max_in_flight), 1, 100000 },
    { "mdm", "timeout", MS, M(timeout_ms), 100, 600000 },
    { "mdm", "connect_timeout", MS, M(connect_timeout_ms), 100, 600000 },
    { "mdm", "retries", MINT, M(retries), 0, 10 },
    { "mdm", "retry_backoff", MS, M(retry_backoff_ms), 0, 60000 },
    { "mdm", "max_connections", MINT, M(max_connections), 1, 10000 },
    { "intune", "tenant", STR, M(tenant), 0, 0 },
    { "intune", "client_id", STR, M(client_id), 0, 0 },
    { "intune", "client_secret_file", SECRET, M(client_secret), 0, 0 },
    { "intune", "client_certificate", PATH, M(client_certificate), 0, 0 },
    { "intune", "client_key", PATH, M(client_key), 0, 0 },
    { "intune", "client_key_label", STR, M(client_key_label), 0, 0 },
    { "intune", "client_assertion_alg", STR, M(client_assertion_alg), 0, 0 },
    { "intune", "login_url", URL, M(login_url), 0, 0 },
    { "intune", "validation_url", URL, M(validation_url), 0, 0 },
    { "intune", "refresh_margin", MS, M(refresh_margin_ms), 0, DAY_MS },
    { "intune", "revocation_poll_interval", MS, M(revocation_poll_ms), 0, DAY_MS },
    { "webhook", "url", URL, M(webhook_url), 0, 0 },
    { "webhook", "secret_file", SECRET, M(webhook_secret), 0, 0 },
    { "webhook", "signature_header", STR, M(signature_header), 0, 0 },
    { "ndes", "ttl", SEC, M(ndes_ttl_s), 1000, 7 * DAY_MS },
    { "ndes", "encoding", ENC, M(ndes_encoding), 0, 0 },
    { "ndes", "users_file", PATH, M(ndes_users_file), 0, 0 },
    { "ndes", "profile", STR, M(ndes_profile), 0, 0 },
};

#define NMAIN (sizeof(MAIN) / sizeof(MAIN[0]))
#define NMDM (sizeof(MDM) / sizeof(MDM[0]))

/* Secret files in a scratch folder made once: name, content, length, accepted length. */
static const struct { const char *name, *body; size_t len; long ok; } SECRETS[] = {
    { "s_ok", "secret-value\n", 13, 12 },
    { "s_crlf", "abc\r\n\r\n", 7, 3 },
    { "s_empty", "", 0, -1 },
    { "s_newlines", "\n\r\n", 3, -1 },
    { "s_nul", "a\0b", 3, -1 },
    { "s_missing", NULL, 0, -1 },
};
static char G_dir[64];

static void init_dir(void)
{
    if (G_dir[0] != '\0')
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(G_dir, sizeof(G_dir), "%s/fzcfgXXXXXX", tmp != NULL && strlen(tmp) < 40 ? tmp : "/tmp");
    if (mkdtemp(G_dir) == NULL)
        abort();
    for (size_t i = 0; i < sizeof(SECRETS) / sizeof(SECRETS[0]); i++) {
        char path[128];
        if (SECRETS[i].body == NULL)
            continue;
        snprintf(path, sizeof(path), "%s/%s", G_dir, SECRETS[i].name);
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(SECRETS[i].body, 1, SECRETS[i].len, f) != SECRETS[i].len ||
            fclose(f) != 0)
            abort();
    }
    /* exactly MDM_SECRET_MAX - 1 bytes (accepted) and MDM_SECRET_MAX bytes (refused) */
    for (int big = 0; big < 2; big++) {
        char path[128];
        snprintf(path, sizeof(path), "%s/s_%s", G_dir, big ? "big" : "max");
        FILE *f = fopen(path, "wb");
        for (int i = 0; f != NULL && i < MDM_SECRET_MAX - 1 + big; i++)
            fputc('k', f);
        if (f == NULL || fclose(f) != 0)
            abort();
    }
}

struct in { const uint8_t *p; size_t n; };

static unsigned take(struct in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

/* What a line is predicted to do: ok, and the value (number, or string) it leaves. */
struct pred { int ok; long long num; char str[1100]; };

static void token(struct in *in, char *out, size_t cap)
{
    static const char set[] = "abcdefghijklmnopqrstuvwxyz0123456789._-";
    unsigned b = take(in);
    size_t n = b < 250 ? b % 20 : 600 + (size_t)(b - 250) * 100;  /* sometimes too long */
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = set[(i < 20 ? take(in) : i) % (sizeof(set) - 1)];
    out[n] = '\0';
}

/* A number: small, around the key's range, or huge. */
static unsigned long long number(struct in *in, const struct key *k, unsigned long long unit)
{
    unsigned sel = take(in) % 4;
    unsigned long long r = (unsigned long long)(take(in) | take(in) << 8 | take(in) << 16);
    unsigned long long span = (unsigned long long)(k->max > 0 ? k->max : 65536) / (unit ? unit : 1);
    switch (sel) {
    case 0: return r & 0xff;
    case 1: return span + (r & 3) - 1;          /* just inside / outside the maximum */
    case 2: return r % (span + 2);
    default: return (r & 1) ? 99999999999999999ULL : 184467440737095516ULL * 100;
    }
}

static void numeric(struct in *in, const struct key *k, char *v, size_t cap, struct pred *pr)
{
    static const struct { const char *u; long long ms; } durs[] = {
        { "", 1000 }, { "s", 1000 }, { "ms", 1 }, { "m", 60000 }, { "h", 3600000 },
        { "d", 86400000 }, { "w", -1 }, { "MS", -1 },
    };
    static const struct { const char *u; int shift; } sizes[] = {
        { "", 0 }, { "k", 10 }, { "KiB", 10 }, { "m", 20 }, { "MB", 20 }, { "g", 30 },
        { "t", 40 }, { "q", -1 },
    };
    unsigned u = take(in) % 8;
    if (k->kind == INT || k->kind == MINT) {
        int neg = k->kind == MINT && (take(in) & 7) == 0;
        unsigned long long n = number(in, k, 1);
        snprintf(v, cap, "%s%llu", neg ? "-" : "", n);
        pr->ok = n <= (unsigned long long)k->max && (neg ? n == 0 && k->min == 0
                                                        : n >= (unsigned long long)k->min);
        pr->num = neg ? 0 : (long long)n;
    } else if (k->kind == SIZE) {
        unsigned long long n = number(in, k, sizes[u].shift > 0 ? 1ULL << sizes[u].shift : 1);
        snprintf(v, cap, "%llu%s", n, sizes[u].u);
        pr->ok = sizes[u].shift >= 0 && n <= (SIZE_MAX >> sizes[u].shift);
        unsigned long long b = pr->ok ? n << sizes[u].shift : 0;
        pr->ok = pr->ok && b >= (unsigned long long)k->min && b <= (unsigned long long)k->max;
        pr->num = (long long)b;
    } else {
        unsigned long long n = number(in, k, durs[u].ms > 0 ? (unsigned long long)durs[u].ms : 1);
        snprintf(v, cap, "%llu%s", n, durs[u].u);
        pr->ok = durs[u].ms > 0 && n <= (unsigned long long)INT64_MAX / (unsigned long long)durs[u].ms;
        long long ms = pr->ok ? (long long)n * durs[u].ms : 0;
        pr->ok = pr->ok && ms >= k->min && ms <= k->max && (k->kind != SEC || ms % 1000 == 0);
        pr->num = k->kind == SEC ? ms / 1000 : ms;
    }
}

static void listen_value(struct in *in, const struct key *k, char *v, size_t cap, struct pred *pr)
{
    static const struct { const char *h; int ok; } hosts[] = {
        { "127.0.0.1", 1 }, { "localhost", 1 }, { "[::1]", 1 }, { "[fe80::1%eth0]", 1 },
        { "0.0.0.0", 1 }, { "::1", 0 }, { "", 0 }, { "[1.2.3.4]", 0 }, { "bad*host", 0 },
        { "none", -1 },
    };
    unsigned h = take(in) % 10;
    unsigned long long port = (take(in) & 1) ? (unsigned long long)(take(in) | take(in) << 8)
                                             : 65530 + take(in) % 10;
    if (hosts[h].ok < 0) {
        snprintf(v, cap, "none");
        pr->ok = k->min == 1;     /* only [admin] listen takes "none" */
        pr->num = 0;
        return;
    }
    snprintf(v, cap, "%s:%llu", hosts[h].h, port);
    pr->ok = hosts[h].ok && port <= 65535;
    pr->num = (long long)port;
}

static void url_value(struct in *in, char *v, size_t cap, struct pred *pr)
{
    static const struct { const char *pre; int ok; } pres[] = {
        { "https://", 1 }, { "HTTPS://", 1 }, { "http://127.0.0.1", 2 }, { "http://localhost", 2 },
        { "http://[::1]", 2 }, { "http://localhostx", 0 }, { "http://example.com", 0 },
        { "ftp://", 0 },
    };
    static const char *const seps[] = { "", ":8080", "/path", "x" };
    unsigned p = take(in) % 8, s = take(in) % 4;
    char t[24];
    token(in, t, sizeof(t));
    if ((take(in) & 15) == 0) {
        v[0] = '\0';
        pr->ok = 1;
    } else {
        snprintf(v, cap, "%s%s%s", pres[p].pre, seps[s], t);
        pr->ok = pres[p].ok == 1 ? v[strlen(pres[p].pre)] != '\0'
               : pres[p].ok == 2 ? s != 3 && !(s == 0 && t[0] != '\0') : 0;
    }
    snprintf(pr->str, sizeof(pr->str), "%s", v);
}

/* A string, path or secret file name, with the value it leaves. */
static void text_value(struct in *in, const struct key *k, int mdm, const char *base, char *v,
                       size_t cap, struct pred *pr)
{
    if (k->kind == SECRET) {
        unsigned s = take(in) % 8;
        static const char *const extra[] = { "s_max", "s_big" };
        const char *name = s < 6 ? SECRETS[s].name : extra[s - 6];
        long ok = s < 6 ? SECRETS[s].ok : s == 6 ? MDM_SECRET_MAX - 1 : -1;
        if (base == NULL || (take(in) & 3) == 0)
            snprintf(v, cap, "%s/%s", G_dir, name);      /* absolute */
        else
            snprintf(v, cap, "%s", name);
        pr->ok = ok >= 0;
        pr->num = ok;
        return;
    }
    unsigned how = take(in) & 7;
    token(in, v, cap);
    if (how == 0)
        memmove(v, "/abs/", 5), v[5] = v[5] != '\0' ? v[5] : 'x';
    else if (how == 1 && k->kind == PATH)   /* a file that exists (challenge, token) */
        snprintf(v, cap, "%s", SECRETS[take(in) % 6].name);
    int resolve = k->kind == PATH && base != NULL && v[0] != '\0' && v[0] != '/';
    int n = resolve ? snprintf(pr->str, sizeof(pr->str), "%s/%s", base, v)
                    : snprintf(pr->str, sizeof(pr->str), "%s", v);
    pr->ok = n >= 0 && (size_t)n < k->size && (size_t)n < sizeof(pr->str);
    (void)mdm;
}

static void word_value(struct in *in, const struct key *k, char *v, size_t cap, struct pred *pr)
{
    static const struct { const char *w; int val; } bools[] = {
        { "yes", 1 }, { "TRUE", 1 }, { "1", 1 }, { "On", 1 }, { "no", 0 }, { "false", 0 },
        { "0", 0 }, { "OFF", 0 }, { "maybe", -1 }, { "", -1 }, { "yes!", -1 },
    };
    static const struct { const char *w; int val; } modes[] = {
        { "pkcs11", CONFIG_KEYS_PKCS11 }, { "file", CONFIG_KEYS_FILE }, { "File", -1 }, { "hsm", -1 },
    };
    static const struct { const char *w; int val; } encs[] = {
        { "utf-16le", MDM_NDES_UTF16LE }, { "UTF-16", MDM_NDES_UTF16LE }, { "utf-8", MDM_NDES_UTF8 },
        { "latin1", -1 },
    };
    unsigned c = take(in);
    int val;
    if (k->kind == BOOL) {
        snprintf(v, cap, "%s", bools[c % 11].w);
        val = bools[c % 11].val;
    } else if (k->kind == MODE) {
        snprintf(v, cap, "%s", modes[c % 4].w);
        val = modes[c % 4].val;
    } else {
        snprintf(v, cap, "%s", encs[c % 4].w);
        val = encs[c % 4].val;
    }
    pr->ok = val >= 0;
    pr->num = val;
}

static void value(struct in *in, const struct key *k, int mdm, const char *base, char *v,
                  size_t cap, struct pred *pr)
{
    pr->str[0] = '\0';
    switch (k->kind) {
    case INT: case MINT: case SIZE: case MS: case SEC: numeric(in, k, v, cap, pr); break;
    case LISTEN: listen_value(in, k, v, cap, pr); break;
    case URL: url_value(in, v, cap, pr); break;
    case BOOL: case MODE: case ENC: word_value(in, k, v, cap, pr); break;
    default: text_value(in, k, mdm, base, v, cap, pr); break;
    }
}

/* A parse that succeeded: every key's last value as predicted, integers within range. */
static void check_values(const char *obj, const struct key *keys, size_t n,
                         const struct pred *preds, const int *set)
{
    for (size_t i = 0; i < n; i++) {
        const struct key *k = &keys[i];
        const char *f = obj + k->off;
        long long got;
        switch (k->kind) {
        case INT: case MINT: case MS: case SEC: case BOOL: case MODE: case ENC:
            got = *(const int *)f;
            break;
        case SIZE:
            got = (long long)*(const size_t *)f;
            break;
        case LISTEN:
            got = *(const uint16_t *)f;
            break;
        case SECRET:
            got = (long long)*(const size_t *)(f + k->size);
            if (got > MDM_SECRET_MAX - 1 || (got > 0 && (size_t)got != strlen(f)))
                abort();
            break;
        default:
            if (memchr(f, '\0', k->size) == NULL ||
                (set[i] && strcmp(f, preds[i].str) != 0))
                abort();
            continue;
        }
        long long scaled = k->kind == SEC ? got * 1000 : got;
        if ((k->kind == INT || k->kind == MINT || k->kind == SIZE || k->kind == MS ||
             k->kind == SEC) && (scaled < k->min || scaled > k->max))
            abort();
        if (set[i] && got != preds[i].num)
            abort();
    }
}

/* The same text as a file in the scratch folder: config_load / mdm_config_load (defaults,
 * names against the file's folder) agree with the parse against that folder. */
static void check_load(const char *text, size_t len, int mdm, int want)
{
    char path[128], err[160];
    snprintf(path, sizeof(path), "%s/f.conf", G_dir);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0)
        abort();
    memset(err, 'x', sizeof(err));
    int rc;
    if (mdm) {
        mdm_config *c = malloc(sizeof(*c));
        if (c == NULL)
            abort();
        rc = mdm_config_load(c, path, err, sizeof(err));
        if (rc == 0)
            mdm_config_cleanse(c);
        free(c);
    } else {
        config *c = malloc(sizeof(*c));
        if (c == NULL)
            abort();
        rc = config_load(c, path, err, sizeof(err));
        free(c);
    }
    if ((rc == 0) != (want == 0) || (rc != 0 && memchr(err, '\0', sizeof(err)) == NULL))
        abort();
}

/* One structured file: lines for keys of the chosen table, then the parse. */
static void structured(const uint8_t *data, size_t size)
{
    struct in in = { data + 1, size - 1 };
    const int mdm = data[0] & 1, crlf = data[0] & 2;
    const char *base = (data[0] & 4) ? G_dir : NULL;
    const struct key *keys = mdm ? MDM : MAIN;
    const size_t nkeys = mdm ? NMDM : NMAIN;
    static struct pred preds[NMAIN > NMDM ? NMAIN : NMDM];
    int set[NMAIN > NMDM ? NMAIN : NMDM] = { 0 };
    size_t cap = 64 * 1200, off = 0;
    char *text = malloc(cap), v[1100];
    const char *section = "";
    int bad = 0;

    if (text == NULL)
        abort();
    for (int line = 0; line < 48 && in.n > 0; line++) {
        unsigned ki = take(&in), style = take(&in);
        const struct key *k = &keys[ki % nkeys];
        struct pred pr;
        value(&in, k, mdm, base, v, sizeof(v), &pr);
        if (strcmp(section, k->section) != 0 || (style & 0x40)) {
            int wrong = (style & 0x47) == 0x47;
            off += (size_t)snprintf(text + off, cap - off, "%s[%s]%s", (style & 8) ? " " : "",
                                    wrong ? "bogus" : k->section, crlf ? "\r\n" : "\n");
            bad |= wrong;
            section = k->section;
        }
        const char *q = (style & 0x10) ? "\"" : "";
        off += (size_t)snprintf(text + off, cap - off, "%s%s%s= %s%s%s%s%s",
                                (style & 0x20) ? "\t" : "", k->name, (style & 1) ? " " : "", q,
                                v, q, (style & 0x80) && !q[0] ? " # note" : "",
                                crlf ? "\r\n" : "\n");
        bad |= !pr.ok;
        size_t i = (size_t)(k - keys);
        preds[i] = pr;
        set[i] = 1;
    }

    char err[160];
    memset(err, 'x', sizeof(err));
    if (mdm) {
        mdm_config *c = malloc(sizeof(*c));
        if (c == NULL)
            abort();
        mdm_config_defaults(c);
        int rc = mdm_config_parse(c, text, off, base, err, sizeof(err));
        if ((rc != 0 && memchr(err, '\0', sizeof(err)) == NULL) || (rc == 0 && bad))
            abort();
        if (rc == 0)
            check_values((const char *)c, keys, nkeys, preds, set);
        if (base != NULL && (data[0] & 8))
            check_load(text, off, 1, rc);
        mdm_config_cleanse(c);
        free(c);
    } else {
        config *cfg = malloc(sizeof(*cfg)), *defaults = malloc(sizeof(*cfg));
        if (cfg == NULL || defaults == NULL)
            abort();
        config_defaults(cfg);
        config_defaults(defaults);
        int rc = config_parse(cfg, text, off, base, err, sizeof(err));
        if ((rc != 0 && memchr(err, '\0', sizeof(err)) == NULL) || (rc == 0 && bad))
            abort();
        if (rc == 0) {
            check_values((const char *)cfg, keys, nkeys, preds, set);
            char out[512], buf[256];
            memset(out, 'x', sizeof(out));
            int n = config_restart_changes(defaults, cfg, out, sizeof(out));
            if (n < 0 || memchr(out, '\0', sizeof(out)) == NULL)
                abort();
            int cl = config_read_challenge(cfg, buf, sizeof(buf));
            if (cl >= 0 && ((size_t)cl != strlen(buf) ||
                            (cfg->challenge_file[0] == '\0' && strcmp(buf, cfg->challenge) != 0)))
                abort();
            (void)config_read_admin_token(cfg, buf, sizeof(buf));
        }
        if (base != NULL && (data[0] & 8))
            check_load(text, off, 0, rc);
        free(cfg);
        free(defaults);
    }
    free(text);
}

static void raw(const uint8_t *data, size_t size)
{
    config cfg;
    char err[128];

    /* An exact-size heap copy, so ASan sees any read past len. */
    char *text = malloc(size ? size : 1);
    if (text == NULL)
        return;
    if (size > 0)
        memcpy(text, data, size);

    config_defaults(&cfg);
    memset(err, 'x', sizeof(err));
    if (config_parse(&cfg, text, size, "/base", err, sizeof(err)) != 0) {
        if (memchr(err, '\0', sizeof(err)) == NULL)
            abort();
    } else if (cfg.listen_host[sizeof(cfg.listen_host) - 1] != '\0'
               || cfg.state_dir[sizeof(cfg.state_dir) - 1] != '\0'
               || cfg.challenge[sizeof(cfg.challenge) - 1] != '\0') {
        abort();
    }
    config_defaults(&cfg);
    config_parse(&cfg, text, size, NULL, NULL, 0);

    mdm_config *m = malloc(sizeof(*m));
    if (m != NULL) {
        mdm_config_defaults(m);
        memset(err, 'x', sizeof(err));
        if (mdm_config_parse(m, text, size, G_dir, err, sizeof(err)) != 0 &&
            memchr(err, '\0', sizeof(err)) == NULL)
            abort();
        mdm_config_cleanse(m);
        free(m);
    }

    /* The value parsers take C strings. */
    char *s = malloc(size + 1);
    if (s != NULL) {
        memcpy(s, data, size);
        s[size] = '\0';
        size_t n;
        (void)config_parse_duration_ms(s);
        (void)config_parse_size(s, &n);
        free(s);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_dir();
    if (size > 0 && data[0] >= 0x80)
        structured(data, size);
    else
        raw(data, size);
    return 0;
}
