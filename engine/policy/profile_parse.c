/* Certificate profiles: the text of one profile file parsed into a profile (keys, word lists,
 * cross-key rules), the defaults, and the result table. See profile.h and docs/profiles.md. */
#include "engine/policy/profile.h"
#include "engine/policy/profile_internal.h"

#include "engine/common/config.h"
#include "engine/common/file.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>

#define PROFILE_LINE_MAX 4096
#define OID_SMARTCARD_LOGON "1.3.6.1.4.1.311.20.2.2"

static const struct { int rej; const char *detail; } results[] = {
#define X(name, rej, detail) { REJ_##rej, detail },
    PROFILE_RESULTS(X)
#undef X
};

const char *profile_result_diag(int r)
{
    if (r < 0 || r >= PROFILE__COUNT)
        return "unknown";
    return results[r].detail != NULL ? results[r].detail : reject_diag(results[r].rej);
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
    p->approve_renewals = 1;
    p->challenges = PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_STATIC);
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
static const struct word renew_change_words[] = {
    { "subject", PROFILE_RENEW_SUBJECT }, { "san", PROFILE_RENEW_SAN }, { NULL, 0 },
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
        err_set(why, whylen, "unknown %s '%.*s'", a->what, (int)n, s);
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
        err_set(why, whylen, "empty %s list", what);
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
        err_set(why, whylen, "bad %s '%.*s' (a known name or a dotted OID)", a->what, (int)n, s);
        return -1;
    }
    if (a->count >= PROFILE_OID_MAX) {
        err_set(why, whylen, "too many %s entries (max %d)", a->what, PROFILE_OID_MAX);
        return -1;
    }
    if (oid != NULL)
        snprintf(a->list[a->count], 64, "%s", oid);
    else
        snprintf(a->list[a->count], 64, "%.*s", (int)n, s);
    for (int k = 0; k < a->count; k++) {
        if (strcmp(a->list[k], a->list[a->count]) == 0) {
            err_set(why, whylen, "duplicate %s '%.*s'", a->what, (int)n, s);
            return -1;
        }
    }
    a->count++;
    return 0;
}

static int name_ok(const char *s);

/* One name of renew_from: a profile name (it need not exist any more: the profile a template
 * migration retires is the one its certificates renew from). */
static int renew_from_item(const char *s, size_t n, void *arg, char *why, size_t whylen)
{
    profile *p = arg;
    char name[PROFILE_NAME_MAX];
    if (n >= sizeof(name)) {
        err_set(why, whylen, "bad renew_from name '%.*s'", (int)n, s);
        return -1;
    }
    memcpy(name, s, n);
    name[n] = '\0';
    if (!name_ok(name)) {
        err_set(why, whylen, "bad renew_from name '%s'", name);
        return -1;
    }
    if (p->renew_from_count >= PROFILE_RENEW_FROM_MAX) {
        err_set(why, whylen, "too many renew_from entries (max %d)", PROFILE_RENEW_FROM_MAX);
        return -1;
    }
    memcpy(p->renew_from[p->renew_from_count++], name, n + 1);
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
static const struct word challenge_words[] = {
    { "static", PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_STATIC) },
    { "onetime", PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_ONETIME) },
    { "none", PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_NONE) },
    { "intune", PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_INTUNE) },
    { "webhook", PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_WEBHOOK) },
    { NULL, 0 },
};
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
#define BAD(...) do { err_set(why, whylen, __VA_ARGS__); return -1; } while (0)
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
    /* Renewal binding (docs/profiles.md "Renewal"): keys of this block. */
    } else if (!strcmp(k, "renew_from")) {
        p->renew_from_count = 0;
        if (strcasecmp(v, "none") != 0 && for_items(v, renew_from_item, p, why, whylen) < 0)
            return -1;
    } else if (!strcmp(k, "renew_may_change")) {
        unsigned b;
        if (parse_bits(v, renew_change_words, "renew_may_change entry", 1, &b, why, whylen) != 0)
            return -1;
        p->renew_may_change = b;
    } else if (!strcmp(k, "approve_renewals")) {
        if (parse_bool(v, &p->approve_renewals) != 0)
            BAD("bad approve_renewals '%s' (yes or no)", v);
    /* End of the renewal block. */
    } else if (!strcmp(k, "approval")) {
        if (choice(v, approval_names, &n) != 0)
            BAD("bad approval '%s' (auto or manual)", v);
        p->approval = (enum profile_approval)n;
    } else if (!strcmp(k, "challenge")) {
        /* A list: the kind that decides is the one after static (profile.h). */
        unsigned b;
        const unsigned mdm = PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_INTUNE) |
                             PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_WEBHOOK);
        if (parse_bits(v, challenge_words, "challenge", 0, &b, why, whylen) != 0)
            BAD("bad challenge '%s' (static, onetime, intune, webhook or none; a list such "
                "as 'onetime, static')", v);
        if ((b & PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_NONE)) &&
            b != PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_NONE))
            BAD("challenge = none combines with nothing");
        if ((b & mdm) == mdm)
            BAD("challenge: intune and webhook together (one MDM decides)");
        if ((b & mdm) && (b & PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_ONETIME)))
            BAD("challenge: an MDM (intune, webhook) combines with static only");
        n = PROFILE_CHALLENGE_STATIC;
        for (int c = PROFILE_CHALLENGE_STATIC; c <= PROFILE_CHALLENGE_WEBHOOK; c++)
            if (c != PROFILE_CHALLENGE_STATIC && (b & PROFILE_CHALLENGE_BIT(c)))
                n = c;
        p->challenge = (enum profile_challenge)n;
        p->challenges = b;
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
    /* Single DES is a MUST NOT of RFC 8894 (7.5): off unless a profile for old clients
     * says otherwise. */
    } else if (!strcmp(k, "allow_des")) {
        if (parse_bool(v, &p->allow_des) != 0)
            BAD("bad allow_des '%s' (yes or no)", v);
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
        err_set(why, whylen, "rsa_min_bits %d > rsa_max_bits %d", p->rsa_min_bits, p->rsa_max_bits);
        return -1;
    }
    if ((p->key_types & PROFILE_KEY_EC) && p->ec_curves == 0) {
        err_set(why, whylen, "key_types has ec but ec_curves is empty");
        return -1;
    }
    if ((p->san_required & ~p->san_types) != 0) {
        err_set(why, whylen, "san_required names a type san_types does not allow");
        return -1;
    }
    if (p->smartcard_logon) {
        if (!(p->san_types & PROFILE_SAN_UPN)) {
            err_set(why, whylen, "smartcardLogon needs upn in san_types");
            return -1;
        }
        p->san_required |= PROFILE_SAN_UPN;
    }
    if (p->challenge_password[0] != '\0' && p->challenge_password_file[0] != '\0') {
        err_set(why, whylen, "set challenge_password or challenge_password_file, not both");
        return -1;
    }
    if (!(PROFILE_CHALLENGES(p) & PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_STATIC)) &&
        (p->challenge_password[0] != '\0' || p->challenge_password_file[0] != '\0')) {
        err_set(why, whylen, "challenge_password is only for challenge = static");
        return -1;
    }
    /* The subject an override issues comes from a one-time challenge's binding; under any
     * other challenge there is none, and the CSR's subject would be issued unbound. */
    if (p->subject_source == PROFILE_SOURCE_OVERRIDE && p->challenge != PROFILE_CHALLENGE_ONETIME) {
        err_set(why, whylen, "subject_source = override needs challenge = onetime (the subject "
                "comes from the one-time challenge's binding)");
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
        err_set(err, errlen, "%s:%d: %s", file, line, why);
    else
        err_set(err, errlen, "%s: %s", file, why);
done:
    if (p != NULL)
        OPENSSL_cleanse(p, sizeof(*p));
    free(p);
    free(val);
    return rc;
}

unsigned profile_curve_bit(const char *group)
{
    int i = word_lookup(curve_words, group, strlen(group));
    return i < 0 ? 0 : curve_words[i].bit;
}
