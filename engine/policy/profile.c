/* Certificate profiles: parsing and decisions. See profile.h and docs/profiles.md. */
#include "engine/policy/profile.h"

#include "engine/common/config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#define PROFILE_FILE_MAX (256u * 1024)
#define PROFILE_LINE_MAX 4096
#define OID_SMARTCARD_LOGON "1.3.6.1.4.1.311.20.2.2"

static const struct { const char *diag, *text, *fi; } results[] = {
#define X(name, fi, diag, text) { diag, text, #fi },
    PROFILE_RESULTS(X)
#undef X
};

const char *profile_result_diag(int r)
{
    return r >= 0 && r < PROFILE__COUNT ? results[r].diag : "unknown";
}

const char *profile_result_text(int r)
{
    return r >= 0 && r < PROFILE__COUNT ? results[r].text : "unknown";
}

const char *profile_result_failinfo(int r)
{
    return r >= 0 && r < PROFILE__COUNT ? results[r].fi : "BADREQUEST";
}

void profile_defaults(profile *p, const char *name)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name != NULL ? name : "default");
    p->key_usage = PROFILE_KU_DIGITAL_SIGNATURE | PROFILE_KU_KEY_ENCIPHERMENT;
    p->eku_count = 1;
    snprintf(p->eku[0], sizeof(p->eku[0]), "1.3.6.1.5.5.7.3.2");
    p->template_class = PROFILE_TEMPLATE_GENERAL;
    p->san_types = PROFILE_SAN_DNS | PROFILE_SAN_EMAIL | PROFILE_SAN_URI | PROFILE_SAN_UPN;
    p->validity_days = 365;
    p->allow_shorter = 1;
    p->beyond_ca = PROFILE_BEYOND_CA_CAP;
    p->key_types = PROFILE_KEY_RSA | PROFILE_KEY_EC;
    p->rsa_min_bits = 2048;
    p->rsa_max_bits = 4096;
    p->ec_curves = PROFILE_CURVE_P256 | PROFILE_CURVE_P384;
    p->hashes = PROFILE_HASH_SHA256 | PROFILE_HASH_SHA384 | PROFILE_HASH_SHA512;
    p->renewal_threshold_percent = 20;
}

/* ---- parsing ------------------------------------------------------------------------------ */

struct word { const char *name; unsigned bit; };

static const struct word ku_words[] = {
    { "digitalSignature", PROFILE_KU_DIGITAL_SIGNATURE },
    { "nonRepudiation", PROFILE_KU_NON_REPUDIATION },
    { "contentCommitment", PROFILE_KU_NON_REPUDIATION },
    { "keyEncipherment", PROFILE_KU_KEY_ENCIPHERMENT },
    { "dataEncipherment", PROFILE_KU_DATA_ENCIPHERMENT },
    { "keyAgreement", PROFILE_KU_KEY_AGREEMENT },
    { NULL, 0 },
};
static const struct word san_words[] = {
    { "dns", PROFILE_SAN_DNS }, { "email", PROFILE_SAN_EMAIL }, { "uri", PROFILE_SAN_URI },
    { "upn", PROFILE_SAN_UPN }, { "ip", PROFILE_SAN_IP }, { NULL, 0 },
};
static const struct word key_words[] = {
    { "rsa", PROFILE_KEY_RSA }, { "ec", PROFILE_KEY_EC }, { NULL, 0 },
};
static const struct word curve_words[] = {
    { "P-256", PROFILE_CURVE_P256 }, { "prime256v1", PROFILE_CURVE_P256 },
    { "P-384", PROFILE_CURVE_P384 }, { "secp384r1", PROFILE_CURVE_P384 },
    { "P-521", PROFILE_CURVE_P521 }, { "secp521r1", PROFILE_CURVE_P521 }, { NULL, 0 },
};
static const struct word hash_words[] = {
    { "sha1", PROFILE_HASH_SHA1 }, { "sha224", PROFILE_HASH_SHA224 },
    { "sha256", PROFILE_HASH_SHA256 }, { "sha384", PROFILE_HASH_SHA384 },
    { "sha512", PROFILE_HASH_SHA512 }, { NULL, 0 },
};
static const struct word eku_names[] = {   /* bit unused; OID in eku_oids at the same index */
    { "clientAuth", 0 }, { "serverAuth", 0 }, { "ipsecIKE", 0 }, { "smartcardLogon", 0 },
    { "emailProtection", 0 }, { "codeSigning", 0 }, { "timeStamping", 0 }, { "OCSPSigning", 0 },
    { NULL, 0 },
};
static const char *const eku_oids[] = {
    "1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.17", OID_SMARTCARD_LOGON,
    "1.3.6.1.5.5.7.3.4", "1.3.6.1.5.5.7.3.3", "1.3.6.1.5.5.7.3.8", "1.3.6.1.5.5.7.3.9",
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int word_lookup(const struct word *w, const char *s, size_t n)
{
    for (int i = 0; w[i].name != NULL; i++)
        if (strlen(w[i].name) == n && strncasecmp(w[i].name, s, n) == 0)
            return i;
    return -1;
}

/* Calls fn for each item of a list separated by commas and/or blanks. */
typedef int (*item_fn)(const char *s, size_t n, void *arg, char *why, size_t whylen);
static int for_items(const char *v, item_fn fn, void *arg, char *why, size_t whylen)
{
    const char *p = v;
    int count = 0;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        const char *s = p;
        while (*p != '\0' && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if (fn(s, (size_t)(p - s), arg, why, whylen) != 0)
            return -1;
        count++;
    }
    return count;
}

struct bits_arg { const struct word *words; unsigned bits; const char *what; };
static int bits_item(const char *s, size_t n, void *arg, char *why, size_t whylen)
{
    struct bits_arg *a = arg;
    int i = word_lookup(a->words, s, n);
    if (i < 0) {
        set_err(why, whylen, "unknown %s '%.*s'", a->what, (int)n, s);
        return -1;
    }
    a->bits |= a->words[i].bit;
    return 0;
}

static int parse_bits(const char *v, const struct word *words, const char *what, int allow_none,
                      unsigned *out, char *why, size_t whylen)
{
    struct bits_arg a = { words, 0, what };
    if (allow_none && strcasecmp(v, "none") == 0) {
        *out = 0;
        return 0;
    }
    int n = for_items(v, bits_item, &a, why, whylen);
    if (n < 0)
        return -1;
    if (n == 0 && !allow_none) {
        set_err(why, whylen, "empty %s list", what);
        return -1;
    }
    *out = a.bits;
    return 0;
}

/* A dotted OID: at least two arcs, first 0..2, digits only, no leading zeros. */
static int dotted_oid_ok(const char *s, size_t n)
{
    size_t arcs = 0, i = 0;
    if (n == 0 || n >= 64 || s[0] < '0' || s[0] > '2')
        return 0;
    while (i < n) {
        size_t start = i;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
        if (i == start || (s[start] == '0' && i - start > 1) || i - start > 9)
            return 0;
        arcs++;
        if (i < n) {
            if (s[i] != '.' || i + 1 == n)
                return 0;
            i++;
        }
    }
    return arcs >= 2;
}

struct oid_arg { char (*list)[64]; int count; int names; const char *what; };
static int oid_item(const char *s, size_t n, void *arg, char *why, size_t whylen)
{
    struct oid_arg *a = arg;
    const char *oid = NULL;
    int i = a->names ? word_lookup(eku_names, s, n) : -1;
    if (i >= 0)
        oid = eku_oids[i];
    else if (!dotted_oid_ok(s, n)) {
        set_err(why, whylen, "bad %s '%.*s' (a known name or a dotted OID)", a->what, (int)n, s);
        return -1;
    }
    if (a->count >= PROFILE_OID_MAX) {
        set_err(why, whylen, "too many %s entries (max %d)", a->what, PROFILE_OID_MAX);
        return -1;
    }
    if (oid != NULL)
        snprintf(a->list[a->count], 64, "%s", oid);
    else
        snprintf(a->list[a->count], 64, "%.*s", (int)n, s);
    for (int k = 0; k < a->count; k++) {
        if (strcmp(a->list[k], a->list[a->count]) == 0) {
            set_err(why, whylen, "duplicate %s '%.*s'", a->what, (int)n, s);
            return -1;
        }
    }
    a->count++;
    return 0;
}

static int parse_int(const char *v, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!isdigit((unsigned char)v[0]) || *end != '\0' || errno != 0 || n < lo || n > hi)
        return -1;
    *out = (int)n;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "on"))
        *out = 1;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") ||
             !strcasecmp(v, "off"))
        *out = 0;
    else
        return -1;
    return 0;
}

static int choice(const char *v, const char *const *names, int *out)
{
    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return -1;
}

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= PROFILE_NAME_MAX || s[0] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.')
            return 0;
    }
    return 1;
}

static const char *const template_names[] = { "general", "signature", "encryption", NULL };
static const char *const source_names[] = { "request", "require", "override", NULL };
static const char *const beyond_names[] = { "cap", "refuse", NULL };
static const char *const approval_names[] = { "auto", "manual", NULL };
static const char *const challenge_names[] = { "static", "onetime", "none", NULL };
static const char *const chars_names[] = { "any", "printable", "ascii", NULL };

/* Copies src into dst (size bytes); callers have checked that it fits. */
static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int apply(profile *p, const char *k, const char *v, const char *base_dir, char *why,
                 size_t whylen)
{
    int n;
#define BAD(...) do { set_err(why, whylen, __VA_ARGS__); return -1; } while (0)
    if (!strcmp(k, "name")) {
        if (!name_ok(v))
            BAD("bad profile name '%s' (letters, digits, '-', '_', '.'; max %d)", v,
                PROFILE_NAME_MAX - 1);
        copy_str(p->name, sizeof(p->name), v);
    } else if (!strcmp(k, "description")) {
        if (strlen(v) >= sizeof(p->description))
            BAD("description too long");
        copy_str(p->description, sizeof(p->description), v);
    } else if (!strcmp(k, "key_usage")) {
        unsigned b;
        if (parse_bits(v, ku_words, "key usage", 0, &b, why, whylen) != 0)
            return -1;
        p->key_usage = b;
    } else if (!strcmp(k, "eku") || !strcmp(k, "policies")) {
        int is_eku = k[0] == 'e';
        struct oid_arg a = { is_eku ? p->eku : p->policy, 0, is_eku, is_eku ? "eku" : "policy" };
        if (strcasecmp(v, "none") != 0 && for_items(v, oid_item, &a, why, whylen) < 0)
            return -1;
        if (is_eku)
            p->eku_count = a.count;
        else
            p->policy_count = a.count;
    } else if (!strcmp(k, "template")) {
        if (choice(v, template_names, &n) != 0)
            BAD("bad template '%s' (general, signature or encryption)", v);
        p->template_class = (enum profile_template)n;
    } else if (!strcmp(k, "subject_source") || !strcmp(k, "san_source")) {
        if (choice(v, source_names, &n) != 0)
            BAD("bad %s '%s' (request, require or override)", k, v);
        if (k[1] == 'u')
            p->subject_source = (enum profile_source)n;
        else
            p->san_source = (enum profile_source)n;
    } else if (!strcmp(k, "san_types")) {
        unsigned b;
        if (parse_bits(v, san_words, "SAN type", 1, &b, why, whylen) != 0)
            return -1;
        p->san_types = b;
    } else if (!strcmp(k, "san_required")) {
        unsigned b;
        if (parse_bits(v, san_words, "SAN type", 1, &b, why, whylen) != 0)
            return -1;
        p->san_required = b;
    } else if (!strcmp(k, "subject_max_length")) {
        if (parse_int(v, 0, 65536, &p->subject_max_length) != 0)
            BAD("bad subject_max_length '%s' (0..65536, 0 = unlimited)", v);
    } else if (!strcmp(k, "subject_chars")) {
        if (choice(v, chars_names, &n) != 0)
            BAD("bad subject_chars '%s' (any, printable or ascii)", v);
        p->subject_chars = n;
    } else if (!strcmp(k, "validity_days")) {
        if (parse_int(v, 1, 36500, &p->validity_days) != 0)
            BAD("bad validity_days '%s' (1..36500)", v);
    } else if (!strcmp(k, "allow_shorter")) {
        if (parse_bool(v, &p->allow_shorter) != 0)
            BAD("bad allow_shorter '%s' (yes or no)", v);
    } else if (!strcmp(k, "beyond_ca")) {
        if (choice(v, beyond_names, &n) != 0)
            BAD("bad beyond_ca '%s' (cap or refuse)", v);
        p->beyond_ca = (enum profile_beyond_ca)n;
    } else if (!strcmp(k, "key_types")) {
        unsigned b;
        if (parse_bits(v, key_words, "key type", 0, &b, why, whylen) != 0)
            return -1;
        p->key_types = b;
    } else if (!strcmp(k, "rsa_min_bits")) {
        if (parse_int(v, 1024, 16384, &p->rsa_min_bits) != 0)
            BAD("bad rsa_min_bits '%s' (1024..16384)", v);
    } else if (!strcmp(k, "rsa_max_bits")) {
        if (parse_int(v, 1024, 16384, &p->rsa_max_bits) != 0)
            BAD("bad rsa_max_bits '%s' (1024..16384)", v);
    } else if (!strcmp(k, "ec_curves")) {
        unsigned b;
        if (parse_bits(v, curve_words, "curve", 1, &b, why, whylen) != 0)
            return -1;
        p->ec_curves = b;
    } else if (!strcmp(k, "hashes")) {
        unsigned b;
        if (parse_bits(v, hash_words, "hash", 0, &b, why, whylen) != 0)
            return -1;
        p->hashes = b;
    } else if (!strcmp(k, "renewal_threshold_percent")) {
        if (parse_int(v, 0, 100, &p->renewal_threshold_percent) != 0)
            BAD("bad renewal_threshold_percent '%s' (0..100)", v);
    } else if (!strcmp(k, "approval")) {
        if (choice(v, approval_names, &n) != 0)
            BAD("bad approval '%s' (auto or manual)", v);
        p->approval = (enum profile_approval)n;
    } else if (!strcmp(k, "challenge")) {
        if (choice(v, challenge_names, &n) != 0)
            BAD("bad challenge '%s' (static, onetime or none)", v);
        p->challenge = (enum profile_challenge)n;
    } else if (!strcmp(k, "challenge_password")) {
        if (strlen(v) >= sizeof(p->challenge_password))
            BAD("challenge_password too long (max %zu bytes)", sizeof(p->challenge_password) - 1);
        copy_str(p->challenge_password, sizeof(p->challenge_password), v);
    } else if (!strcmp(k, "challenge_password_file")) {
        int w = (v[0] != '/' && v[0] != '\0' && base_dir != NULL)
                    ? snprintf(p->challenge_password_file, sizeof(p->challenge_password_file),
                               "%s/%s", base_dir, v)
                    : snprintf(p->challenge_password_file, sizeof(p->challenge_password_file),
                               "%s", v);
        if (w < 0 || (size_t)w >= sizeof(p->challenge_password_file))
            BAD("challenge_password_file path too long");
    } else {
        BAD("unknown key '%s'", k);
    }
    return 0;
#undef BAD
}

/* Cross-key rules, checked once the whole file is read. */
static int finish(profile *p, char *why, size_t whylen)
{
    p->smartcard_logon = 0;
    for (int i = 0; i < p->eku_count; i++)
        if (strcmp(p->eku[i], OID_SMARTCARD_LOGON) == 0)
            p->smartcard_logon = 1;
    if (p->rsa_min_bits > p->rsa_max_bits) {
        set_err(why, whylen, "rsa_min_bits %d > rsa_max_bits %d", p->rsa_min_bits, p->rsa_max_bits);
        return -1;
    }
    if ((p->key_types & PROFILE_KEY_EC) && p->ec_curves == 0) {
        set_err(why, whylen, "key_types has ec but ec_curves is empty");
        return -1;
    }
    if ((p->san_required & ~p->san_types) != 0) {
        set_err(why, whylen, "san_required names a type san_types does not allow");
        return -1;
    }
    if (p->smartcard_logon) {
        if (!(p->san_types & PROFILE_SAN_UPN)) {
            set_err(why, whylen, "smartcardLogon needs upn in san_types");
            return -1;
        }
        p->san_required |= PROFILE_SAN_UPN;
    }
    if (p->challenge_password[0] != '\0' && p->challenge_password_file[0] != '\0') {
        set_err(why, whylen, "set challenge_password or challenge_password_file, not both");
        return -1;
    }
    if (p->challenge != PROFILE_CHALLENGE_STATIC &&
        (p->challenge_password[0] != '\0' || p->challenge_password_file[0] != '\0')) {
        set_err(why, whylen, "challenge_password is only for challenge = static");
        return -1;
    }
    return 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

int profile_parse(const char *text, size_t len, const char *default_name, const char *file,
                  const char *base_dir, profile *out, char *err, size_t errlen)
{
    profile *p = malloc(sizeof(*p));
    char *val = malloc(PROFILE_LINE_MAX);
    char why[256] = "out of memory";
    const char *pos = text, *end = text + len;
    int line = 0, rc = -1, seen_section = 0;

    if (file == NULL)
        file = "profile";
    if (p == NULL || val == NULL)
        goto fail;
    if (default_name != NULL && !name_ok(default_name)) {
        snprintf(why, sizeof(why), "bad profile name '%s'", default_name);
        goto fail;
    }
    profile_defaults(p, default_name);
    while (pos < end) {
        const char *nl = memchr(pos, '\n', (size_t)(end - pos));
        const char *le = nl != NULL ? nl : end;
        const char *s = pos, *e = le;
        line++;
        pos = nl != NULL ? nl + 1 : end;
        if (e > s && e[-1] == '\r')
            e--;
        while (s < e && is_blank(*s))
            s++;
        if (memchr(s, '\0', (size_t)(e - s)) != NULL) {
            snprintf(why, sizeof(why), "NUL byte");
            goto fail;
        }
        if (s == e || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            const char *rb = memchr(s, ']', (size_t)(e - s));
            const char *t = rb != NULL ? rb + 1 : e;
            while (t < e && is_blank(*t))
                t++;
            if (rb == NULL || (t < e && *t != '#' && *t != ';')) {
                snprintf(why, sizeof(why), "malformed section header");
                goto fail;
            }
            if ((size_t)(rb - s - 1) != 7 || strncmp(s + 1, "profile", 7) != 0 || seen_section) {
                snprintf(why, sizeof(why), "unknown section '%.*s' (only one [profile])",
                         (int)(rb - s - 1) > 64 ? 64 : (int)(rb - s - 1), s + 1);
                goto fail;
            }
            seen_section = 1;
            continue;
        }
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (eq == NULL) {
            snprintf(why, sizeof(why), "expected key = value");
            goto fail;
        }
        const char *ke = eq;
        while (ke > s && is_blank(ke[-1]))
            ke--;
        char key[64];
        if (ke == s || (size_t)(ke - s) >= sizeof(key)) {
            snprintf(why, sizeof(why), "bad key");
            goto fail;
        }
        memcpy(key, s, (size_t)(ke - s));
        key[ke - s] = '\0';
        if (config_parse_value(eq + 1, e, val, PROFILE_LINE_MAX, why, sizeof(why)) != 0 ||
            apply(p, key, val, base_dir, why, sizeof(why)) != 0)
            goto fail;
    }
    line = 0;
    if (finish(p, why, sizeof(why)) != 0)
        goto fail;
    *out = *p;
    rc = 0;
    goto done;
fail:
    if (line > 0)
        set_err(err, errlen, "%s:%d: %s", file, line, why);
    else
        set_err(err, errlen, "%s: %s", file, why);
done:
    if (p != NULL)
        OPENSSL_cleanse(p, sizeof(*p));
    free(p);
    free(val);
    return rc;
}

static int read_file(const char *path, char **buf, size_t *len, size_t max)
{
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    size_t n = 0;
    int rc = -1;
    if (f == NULL)
        return -1;
    b = malloc(max + 1);
    if (b == NULL)
        goto out;
    n = fread(b, 1, max + 1, f);
    if (ferror(f) || n > max)
        goto out;
    b[n] = '\0';
    rc = 0;
out:
    fclose(f);
    if (rc == 0) {
        *buf = b;
        *len = n;
        b = NULL;
    }
    free(b);
    return rc;
}

int profile_load_file(const char *path, profile *out, char *err, size_t errlen)
{
    char *text = NULL, name[PROFILE_NAME_MAX], dir[PROFILE_PATH_MAX];
    size_t len = 0;
    const char *slash = strrchr(path, '/');
    const char *base = slash != NULL ? slash + 1 : path;
    size_t bl = strlen(base);
    int rc = -1;

    if (bl > 5 && strcmp(base + bl - 5, ".conf") == 0)
        bl -= 5;
    if (bl == 0 || bl >= sizeof(name)) {
        set_err(err, errlen, "%s: bad profile file name", path);
        return -1;
    }
    memcpy(name, base, bl);
    name[bl] = '\0';
    if (slash != NULL)
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    else
        snprintf(dir, sizeof(dir), ".");
    if (read_file(path, &text, &len, PROFILE_FILE_MAX) != 0) {
        set_err(err, errlen, "%s: cannot read (or larger than %u bytes)", path, PROFILE_FILE_MAX);
        return -1;
    }
    rc = profile_parse(text, len, name, path, dir, out, err, errlen);
    free(text);
    return rc;
}

int profile_read_challenge(const profile *p, char *buf, size_t buflen)
{
    char *text = NULL;
    size_t n = 0;
    if (p->challenge_password_file[0] == '\0') {
        n = strlen(p->challenge_password);
        if (n >= buflen)
            return -1;
        memcpy(buf, p->challenge_password, n + 1);
        return (int)n;
    }
    if (read_file(p->challenge_password_file, &text, &n, 4096) != 0)
        return -1;
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        n--;
    int rc = -1;
    if (n > 0 && n < buflen && memchr(text, '\0', n) == NULL) {
        memcpy(buf, text, n);
        buf[n] = '\0';
        rc = (int)n;
    }
    OPENSSL_cleanse(text, n);
    free(text);
    return rc;
}

/* ---- sets ---------------------------------------------------------------------------------- */

struct profile_set {
    profile *items;
    size_t n;
};

static int cmp_profile(const void *a, const void *b)
{
    return strcmp(((const profile *)a)->name, ((const profile *)b)->name);
}

void profile_set_destroy(profile_set *s)
{
    if (s == NULL)
        return;
    if (s->items != NULL)
        OPENSSL_cleanse(s->items, s->n * sizeof(profile));
    free(s->items);
    free(s);
}

int profile_set_from(const profile *profiles, size_t n, profile_set **out, char *err,
                     size_t errlen)
{
    profile_set *s = calloc(1, sizeof(*s));
    int rc = -1;
    if (s == NULL || (n > 0 && (s->items = calloc(n, sizeof(profile))) == NULL)) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    if (n > 0)
        memcpy(s->items, profiles, n * sizeof(profile));
    s->n = n;
    if (n > 1)
        qsort(s->items, n, sizeof(profile), cmp_profile);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(s->items[i - 1].name, s->items[i].name) == 0) {
            set_err(err, errlen, "duplicate profile name '%s'", s->items[i].name);
            goto out;
        }
    }
    rc = 0;
out:
    if (rc == 0) {
        *out = s;
        s = NULL;
    }
    profile_set_destroy(s);
    return rc;
}

int profile_set_load_dir(const char *dir, profile_set **out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    profile *list = NULL;
    size_t n = 0, cap = 0;
    char path[PROFILE_PATH_MAX + 256];
    int rc = -1;
    struct dirent *de;

    if (d == NULL) {
        set_err(err, errlen, "%s: cannot open profile directory: %s", dir, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".conf") != 0)
            continue;
        if (n == cap) {
            size_t nc = cap == 0 ? 8 : cap * 2;
            profile *nl = realloc(list, nc * sizeof(profile));
            if (nl == NULL) {
                set_err(err, errlen, "out of memory");
                goto out;
            }
            list = nl;
            cap = nc;
        }
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path)) {
            set_err(err, errlen, "%s/%s: path too long", dir, de->d_name);
            goto out;
        }
        if (profile_load_file(path, &list[n], err, errlen) != 0)
            goto out;
        n++;
    }
    rc = profile_set_from(list, n, out, err, errlen);
out:
    closedir(d);
    if (list != NULL)
        OPENSSL_cleanse(list, cap * sizeof(profile));
    free(list);
    return rc;
}

const profile *profile_set_items(const profile_set *s, size_t *n)
{
    *n = s->n;
    return s->items;
}

const profile *profile_set_find(const profile_set *s, const char *name, size_t namelen)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->items[i].name) == namelen && memcmp(s->items[i].name, name, namelen) == 0)
            return &s->items[i];
    return NULL;
}

/* ---- decisions ----------------------------------------------------------------------------- */

static unsigned effective_ku(const profile *p, EVP_PKEY *key)
{
    unsigned ku = p->key_usage;
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA)
        ku &= ~(unsigned)PROFILE_KU_KEY_AGREEMENT;
    else
        ku &= ~(unsigned)(PROFILE_KU_KEY_ENCIPHERMENT | PROFILE_KU_DATA_ENCIPHERMENT);
    return ku;
}

int profile_check_key(const profile *p, EVP_PKEY *pub)
{
    int rc = PROFILE_KEY_TYPE;
    switch (EVP_PKEY_get_base_id(pub)) {
    case EVP_PKEY_RSA: {
        int bits = EVP_PKEY_get_bits(pub);
        if (!(p->key_types & PROFILE_KEY_RSA))
            goto out;
        rc = PROFILE_KEY_SIZE;
        if (bits < p->rsa_min_bits || bits > p->rsa_max_bits)
            goto out;
        break;
    }
    case EVP_PKEY_EC: {
        char group[64];
        size_t glen = 0;
        int i;
        if (!(p->key_types & PROFILE_KEY_EC))
            goto out;
        rc = PROFILE_KEY_CURVE;
        if (EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           &glen) != 1 ||
            (i = word_lookup(curve_words, group, strlen(group))) < 0 ||
            !(p->ec_curves & curve_words[i].bit))
            goto out;
        break;
    }
    default:
        goto out;
    }
    rc = PROFILE_KEY_USAGE;
    if (p->key_usage != 0 && effective_ku(p, pub) == 0)
        goto out;
    rc = PROFILE_OK;
out:
    ERR_clear_error();
    return rc;
}

int profile_check_hash(const profile *p, int md_nid)
{
    unsigned bit;
    switch (md_nid) {
    case NID_sha1: bit = PROFILE_HASH_SHA1; break;
    case NID_sha224: bit = PROFILE_HASH_SHA224; break;
    case NID_sha256: bit = PROFILE_HASH_SHA256; break;
    case NID_sha384: bit = PROFILE_HASH_SHA384; break;
    case NID_sha512: bit = PROFILE_HASH_SHA512; break;
    default: return PROFILE_HASH;
    }
    return (p->hashes & bit) ? PROFILE_OK : PROFILE_HASH;
}

int profile_check_san(const profile *p, const GENERAL_NAMES *san)
{
    unsigned present = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(san); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(san, i);
        unsigned bit;
        switch (gn->type) {
        case GEN_DNS: bit = PROFILE_SAN_DNS; break;
        case GEN_EMAIL: bit = PROFILE_SAN_EMAIL; break;
        case GEN_URI: bit = PROFILE_SAN_URI; break;
        case GEN_IPADD: bit = PROFILE_SAN_IP; break;
        case GEN_OTHERNAME:
            if (OBJ_obj2nid(gn->d.otherName->type_id) != NID_ms_upn)
                return PROFILE_SAN_TYPE;
            if (gn->d.otherName->value == NULL ||
                gn->d.otherName->value->type != V_ASN1_UTF8STRING)
                return PROFILE_SAN_INVALID;
            bit = PROFILE_SAN_UPN;
            break;
        default:
            return PROFILE_SAN_TYPE;
        }
        if (!(p->san_types & bit))
            return PROFILE_SAN_TYPE;
        present |= bit;
    }
    unsigned missing = p->san_required & ~present;
    if (missing != 0)
        return (missing & PROFILE_SAN_UPN) ? PROFILE_SAN_UPN_REQUIRED : PROFILE_SAN_TYPE;
    return PROFILE_OK;
}

static int chars_ok(const profile *p, const unsigned char *s, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned char c = s[i];
        switch (p->subject_chars) {
        case PROFILE_CHARS_ANY:
            return 1;
        case PROFILE_CHARS_ASCII:
            if (c < 0x20 || c > 0x7e)
                return 0;
            break;
        case PROFILE_CHARS_PRINTABLE:
            if (!isalnum(c) && strchr(" '()+,-./:=?", c) == NULL)
                return 0;
            break;
        }
    }
    return 1;
}

int profile_check_subject(const profile *p, const X509_NAME *subject, const GENERAL_NAMES *san)
{
    int n = subject != NULL ? X509_NAME_entry_count(subject) : 0;
    if (n == 0)
        return sk_GENERAL_NAME_num(san) > 0 ? PROFILE_OK : PROFILE_SUBJECT_EMPTY;
    for (int i = 0; i < n; i++) {
        const ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, v);
        int rc = PROFILE_OK;
        if (len < 0)
            rc = PROFILE_SUBJECT_CHARS;
        else if (p->subject_max_length > 0 && len > p->subject_max_length)
            rc = PROFILE_SUBJECT_LENGTH;
        else if (!chars_ok(p, utf8, len))
            rc = PROFILE_SUBJECT_CHARS;
        OPENSSL_free(utf8);
        ERR_clear_error();
        if (rc != PROFILE_OK)
            return rc;
    }
    return PROFILE_OK;
}

int profile_validity(const profile *p, time_t now, int64_t ca_not_after,
                     int64_t requested_not_after, int64_t *not_after_out, int *capped_out)
{
    int64_t t = (int64_t)now + (int64_t)p->validity_days * 86400;
    int capped = 0;
    if (ca_not_after <= (int64_t)now)
        return PROFILE_CA_EXPIRED;
    if (requested_not_after != 0 && p->allow_shorter) {
        if (requested_not_after <= (int64_t)now)
            return PROFILE_VALIDITY_REQUEST;
        if (requested_not_after < t)
            t = requested_not_after;
    }
    if (t > ca_not_after) {
        if (p->beyond_ca == PROFILE_BEYOND_CA_REFUSE)
            return PROFILE_BEYOND_CA;
        t = ca_not_after;
        capped = 1;
    }
    *not_after_out = t;
    if (capped_out != NULL)
        *capped_out = capped;
    return PROFILE_OK;
}

static int64_t time_epoch(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    return (int64_t)timegm(&tm);
}

int profile_requested_not_after(X509_REQ *csr, int64_t *out)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    int crit = 0, rc = -1;
    PKEY_USAGE_PERIOD *pup = X509V3_get_d2i(exts, NID_private_key_usage_period, &crit, NULL);
    if (pup == NULL) {
        if (crit == -1) {       /* absent */
            *out = 0;
            rc = 0;
        }
        goto out;
    }
    if (pup->notAfter != NULL) {
        int64_t t = time_epoch(pup->notAfter);
        if (t > 0) {
            *out = t;
            rc = 0;
        }
    }
out:
    PKEY_USAGE_PERIOD_free(pup);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return rc;
}

int profile_renewal_allowed(const profile *p, time_t now, int64_t old_not_before,
                            int64_t old_not_after)
{
    if ((int64_t)now >= old_not_after || old_not_after <= old_not_before)
        return PROFILE_RENEWAL_EXPIRED;
    /* 128-bit-free arithmetic: lifetimes are far below 2^63 / 100. */
    int64_t lifetime = old_not_after - old_not_before;
    int64_t window = lifetime / 100 * p->renewal_threshold_percent +
                     lifetime % 100 * p->renewal_threshold_percent / 100;
    return (int64_t)now >= old_not_after - window ? PROFILE_OK : PROFILE_RENEWAL_EARLY;
}

unsigned profile_requested_key_usage(X509_REQ *csr)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(csr);
    ASN1_BIT_STRING *ku = X509V3_get_d2i(exts, NID_key_usage, NULL, NULL);
    unsigned out = 0;
    if (ku != NULL) {
        if (ASN1_BIT_STRING_get_bit(ku, 0)) out |= PROFILE_KU_DIGITAL_SIGNATURE;
        if (ASN1_BIT_STRING_get_bit(ku, 1)) out |= PROFILE_KU_NON_REPUDIATION;
        if (ASN1_BIT_STRING_get_bit(ku, 2)) out |= PROFILE_KU_KEY_ENCIPHERMENT;
        if (ASN1_BIT_STRING_get_bit(ku, 3)) out |= PROFILE_KU_DATA_ENCIPHERMENT;
        if (ASN1_BIT_STRING_get_bit(ku, 4)) out |= PROFILE_KU_KEY_AGREEMENT;
    }
    ASN1_BIT_STRING_free(ku);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return out;
}

const profile *profile_select_for_key_usage(const profile *profiles, size_t n,
                                            unsigned requested_ku_bits)
{
    const unsigned sig = PROFILE_KU_DIGITAL_SIGNATURE | PROFILE_KU_NON_REPUDIATION;
    const unsigned enc = PROFILE_KU_KEY_ENCIPHERMENT | PROFILE_KU_DATA_ENCIPHERMENT |
                         PROFILE_KU_KEY_AGREEMENT;
    enum profile_template want = PROFILE_TEMPLATE_GENERAL;
    const profile *deflt = NULL, *general = NULL;

    if ((requested_ku_bits & sig) && !(requested_ku_bits & enc))
        want = PROFILE_TEMPLATE_SIGNATURE;
    else if ((requested_ku_bits & enc) && !(requested_ku_bits & sig))
        want = PROFILE_TEMPLATE_ENCRYPTION;
    for (size_t i = 0; i < n; i++) {
        if (want != PROFILE_TEMPLATE_GENERAL && profiles[i].template_class == want)
            return &profiles[i];
        if (strcmp(profiles[i].name, "default") == 0)
            deflt = &profiles[i];
        else if (general == NULL && profiles[i].template_class == PROFILE_TEMPLATE_GENERAL)
            general = &profiles[i];
    }
    return deflt != NULL ? deflt : general;
}

static int add_nid(X509 *x, int nid, int crit, void *value)
{
    return X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_REPLACE) == 1;
}

int profile_add_extensions(const profile *p, X509 *cert, X509 *ca, EVP_PKEY *subject_key,
                           const GENERAL_NAMES *san)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    CERTIFICATEPOLICIES *pol = sk_POLICYINFO_new_null();
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    ASN1_OCTET_STRING *ski = ASN1_OCTET_STRING_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc;

    rc = profile_check_san(p, san);
    if (rc != PROFILE_OK)
        goto out;
    rc = PROFILE_INTERNAL;
    if (bc == NULL || ku == NULL || eku == NULL || pol == NULL || akid == NULL || ski == NULL)
        goto out;
    bc->ca = 0;
#ifdef SCEPD_MUTANT_CA_TRUE   /* test-only breakage, docs/testing-mutants.md */
    bc->ca = 0xff;
#endif
    if (!add_nid(cert, NID_basic_constraints, 1, bc))
        goto out;

    unsigned bits = effective_ku(p, subject_key);
    if (bits != 0) {
        static const unsigned map[] = { PROFILE_KU_DIGITAL_SIGNATURE, PROFILE_KU_NON_REPUDIATION,
                                        PROFILE_KU_KEY_ENCIPHERMENT, PROFILE_KU_DATA_ENCIPHERMENT,
                                        PROFILE_KU_KEY_AGREEMENT };
        for (int i = 0; i < 5; i++)
            if ((bits & map[i]) && !ASN1_BIT_STRING_set_bit(ku, i, 1))
                goto out;
        if (!add_nid(cert, NID_key_usage, 1, ku))
            goto out;
    }
    for (int i = 0; i < p->eku_count; i++) {
        ASN1_OBJECT *o = OBJ_txt2obj(p->eku[i], 1);
        if (o == NULL || !sk_ASN1_OBJECT_push(eku, o)) {
            ASN1_OBJECT_free(o);
            goto out;
        }
    }
    if (p->eku_count > 0 && !add_nid(cert, NID_ext_key_usage, 0, eku))
        goto out;
    for (int i = 0; i < p->policy_count; i++) {
        POLICYINFO *pi = POLICYINFO_new();
        if (pi == NULL)
            goto out;
        ASN1_OBJECT_free(pi->policyid);
        pi->policyid = OBJ_txt2obj(p->policy[i], 1);
        if (pi->policyid == NULL || !sk_POLICYINFO_push(pol, pi)) {
            POLICYINFO_free(pi);
            goto out;
        }
    }
    if (p->policy_count > 0 && !add_nid(cert, NID_certificate_policies, 0, pol))
        goto out;

    /* SKI: SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 method 1), taken from the
     * certificate when it has them already (no re-encoding of subject_key). */
    const ASN1_BIT_STRING *kbits = X509_get0_pubkey_bitstr(cert);
    X509_PUBKEY *xpk = NULL;
    const unsigned char *pk = NULL;
    int pklen = 0;
    if (kbits != NULL && kbits->length > 0) {
        pk = kbits->data;
        pklen = kbits->length;
    } else if (!X509_PUBKEY_set(&xpk, subject_key) ||
               X509_PUBKEY_get0_param(NULL, &pk, &pklen, NULL, xpk) != 1) {
        X509_PUBKEY_free(xpk);
        goto out;
    }
    int got = EVP_Digest(pk, (size_t)pklen, md, &mdlen, EVP_sha1(), NULL) == 1;
    X509_PUBKEY_free(xpk);
    if (!got || !ASN1_OCTET_STRING_set(ski, md, (int)mdlen) ||
        !add_nid(cert, NID_subject_key_identifier, 0, ski))
        goto out;

    const ASN1_OCTET_STRING *ca_ski = X509_get0_subject_key_id(ca);
    if (ca_ski != NULL) {
        akid->keyid = ASN1_OCTET_STRING_dup(ca_ski);
    } else if (X509_pubkey_digest(ca, EVP_sha1(), md, &mdlen) == 1) {
        akid->keyid = ASN1_OCTET_STRING_new();
        if (akid->keyid != NULL && !ASN1_OCTET_STRING_set(akid->keyid, md, (int)mdlen))
            goto out;
    }
    if (akid->keyid == NULL || !add_nid(cert, NID_authority_key_identifier, 0, akid))
        goto out;

    if (sk_GENERAL_NAME_num(san) > 0) {
        int crit = X509_NAME_entry_count(X509_get_subject_name(cert)) == 0;
        if (!add_nid(cert, NID_subject_alt_name, crit, (void *)san))
            goto out;
    }
    rc = PROFILE_OK;
out:
    BASIC_CONSTRAINTS_free(bc);
    ASN1_BIT_STRING_free(ku);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    sk_POLICYINFO_pop_free(pol, POLICYINFO_free);
    AUTHORITY_KEYID_free(akid);
    ASN1_OCTET_STRING_free(ski);
    ERR_clear_error();
    return rc;
}
