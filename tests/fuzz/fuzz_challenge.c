/* Fuzz target for engine/policy/challenge.c and the operator text scepctl passes with a
 * challenge or a serial: challenge_decode (the store value of a one-time challenge) with
 * challenge_encode, challenge_verify and the bound subject / SANs of what decodes; the input
 * as text into challenge_parse_subject, challenge_parse_san, challenge_create and serial_parse
 * (engine/pki/serial.c).
 *
 * Invariants: decode -> encode is the identity; a verdict is a row of CHALLENGE_RESULTS whose
 * REJ_ row carries a failInfo (the table, not a list of codes); a record bound to a subject
 * and SANs accepts exactly those (its own value, profile, before expiry) and answers "used"
 * once consumed; a parsed serial prints and parses back to the same bytes. Violated
 * invariants abort(), so the replay driver and libFuzzer both flag them.
 *
 * Structured inputs (first byte >= 0x80): the bytes describe a profile's
 * challenge list and a one-time challenge's bindings; the harness writes the profile text and
 * the scepctl subject / SAN text, builds the same Name and GeneralNames itself, and checks the
 * predicted outcome of profile_parse (the list rules of profile.h), challenge_create and every
 * verdict of challenge_verify (value, server key, profile, used, expiry, subject, SAN set in
 * any order, one name more or less), and the static compare of engine/policy/issue.c
 * (issue_static_challenge, issue_check_challenge) for a profile that parses.
 *
 * Layout (bytes past the end read as 0): flags (bit 0: ttl may be <= 0, bit 1: a server key,
 * bit 2: the result tables); the challenge list (kinds mask with 0x20 a bogus word, 0x40 a
 * challenge_password, 0x80 subject_source = override; order; separator); the password token;
 * when the profile parses, the static check (selector, string type, main and other password
 * tokens); the subject (count, then attribute and token each); the SANs (count, then kind and
 * value each); ttl (2 bytes); day; server key (length, bytes). A token is a length byte and
 * one byte per character. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "engine/pki/serial.h"
#include "engine/policy/challenge.h"
#include "engine/common/config.h"
#include "engine/policy/issue.h"
#include "engine/policy/profile.h"
#include "engine/scep/reject.h"

#define VALUE "fuzz-value"

static void fuzz_challenge_structured(const uint8_t *data, size_t size);

static void check_verdict(int v)
{
    if (v < 0 || v >= CHALLENGE__COUNT)
        abort();
    int rej = challenge_reject_code(v);
    if (rej < 0 || rej >= REJ__COUNT || (v == CHALLENGE_OK) != (rej == REJ_NONE) ||
        (v != CHALLENGE_OK && reject_failinfo(rej) == SCEP_FAIL_NONE))
        abort();
}

/* rec holds VALUE's hash (no server key): the bindings it carries must be accepted. */
static void check_bound(challenge_record *rec, const X509_NAME *subject, const GENERAL_NAMES *san)
{
    unsigned both = CHALLENGE_CHECK_SUBJECT | CHALLENGE_CHECK_SAN;
    int v = challenge_verify(rec, NULL, 0, VALUE, strlen(VALUE), rec->profile, rec->created,
                             both, subject, san);
    check_verdict(v);
    if (v != CHALLENGE_OK)
        abort();
    v = challenge_verify(rec, NULL, 0, VALUE "x", strlen(VALUE) + 1, NULL, rec->created, 0,
                         NULL, NULL);
    if (v != CHALLENGE_WRONG)
        abort();
    v = challenge_verify(rec, NULL, 0, VALUE, strlen(VALUE), NULL, rec->expires, 0, NULL, NULL);
    if (v != CHALLENGE_EXPIRED)
        abort();
    challenge_mark_used(rec, rec->created);
    v = challenge_verify(rec, NULL, 0, VALUE, strlen(VALUE), NULL, rec->created, both, subject,
                         san);
    if (v != CHALLENGE_USED)
        abort();
}

/* A fresh record for VALUE with these bindings round-trips and accepts them. */
static void check_init(const char *prof_name, const X509_NAME *subject, const GENERAL_NAMES *san)
{
    challenge_record rec, back;
    uint8_t enc[CHALLENGE_RECORD_MAX];

    if (challenge_record_init(&rec, NULL, 0, VALUE, strlen(VALUE), prof_name, 1700000000, 3600,
                              subject, san) != 0)
        return;     /* a binding over the limits */
    int n = challenge_encode(&rec, enc, sizeof(enc));
    if (n <= 0 || challenge_decode(enc, (size_t)n, &back) != 0 ||
        memcmp(back.hash, rec.hash, sizeof(rec.hash)) != 0 || strcmp(back.profile, rec.profile) != 0 ||
        back.subject_len != rec.subject_len || back.san_len != rec.san_len ||
        memcmp(back.subject_der, rec.subject_der, rec.subject_len) != 0 ||
        memcmp(back.san_der, rec.san_der, rec.san_len) != 0 || back.expires != rec.expires)
        abort();
    check_bound(&back, subject, san);
}

static void check_record(const uint8_t *data, size_t size)
{
    challenge_record rec;
    uint8_t enc[CHALLENGE_RECORD_MAX];

    if (challenge_decode(data, size, &rec) != 0)
        return;
    int n = challenge_encode(&rec, enc, sizeof(enc));
    if (n < 0 || (size_t)n != size || memcmp(enc, data, size) != 0)
        abort();    /* decode -> encode must be the identity */
    if (memchr(rec.profile, '\0', sizeof(rec.profile)) == NULL)
        abort();
    check_verdict(challenge_verify(&rec, NULL, 0, VALUE, strlen(VALUE), rec.profile, 0,
                                   CHALLENGE_CHECK_SUBJECT | CHALLENGE_CHECK_SAN, NULL, NULL));

    X509_NAME *subject = challenge_bound_subject(&rec);
    GENERAL_NAMES *san = challenge_bound_san(&rec);
    if ((subject == NULL && rec.subject_len > 0) || (san == NULL && rec.san_len > 0)) {
        /* a binding that does not decode refuses every request that is checked against it */
        int v = challenge_verify(&rec, NULL, 0, VALUE, strlen(VALUE), NULL, INT64_MIN,
                                 CHALLENGE_CHECK_SUBJECT | CHALLENGE_CHECK_SAN, NULL, NULL);
        check_verdict(v);
        if (v == CHALLENGE_OK)
            abort();
    }
    /* the same bindings in a record of our own are accepted */
    check_init(rec.profile, subject, san);
    X509_NAME_free(subject);
    GENERAL_NAMES_free(san);
}

static void check_text(const char *s)
{
    X509_NAME *name = challenge_parse_subject(s);
    GENERAL_NAMES *san = challenge_parse_san(s);

    if (name != NULL && X509_NAME_entry_count(name) < 1)
        abort();
    if (san != NULL && sk_GENERAL_NAME_num(san) < 1)
        abort();
    if (name != NULL || san != NULL)
        check_init("fuzz", name, san);
    X509_NAME_free(name);
    GENERAL_NAMES_free(san);

    char value[CHALLENGE_VALUE_LEN + 1];
    uint8_t key[CHALLENGE_HASH_LEN], rec_out[CHALLENGE_RECORD_MAX];
    size_t rec_len = 0;
    const char *why = NULL;
    if (challenge_create("fuzz", 1700000000, 60, s, NULL, value, key, rec_out, &rec_len, &why) == 0 ||
        challenge_create("fuzz", 1700000000, 60, NULL, s, value, key, rec_out, &rec_len, &why) == 0) {
        challenge_record rec;
        uint8_t h[CHALLENGE_HASH_LEN];
        if (rec_len > sizeof(rec_out) || challenge_decode(rec_out, rec_len, &rec) != 0 ||
            strlen(value) != CHALLENGE_VALUE_LEN ||
            strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
                CHALLENGE_VALUE_LEN ||
            challenge_hash(NULL, 0, value, CHALLENGE_VALUE_LEN, h) != 0 ||
            memcmp(h, key, sizeof(h)) != 0 || memcmp(rec.hash, key, sizeof(h)) != 0 ||
            challenge_verify(&rec, NULL, 0, value, CHALLENGE_VALUE_LEN, "fuzz", 1700000000, 0,
                             NULL, NULL) != CHALLENGE_OK)
            abort();
    } else if (why == NULL) {
        abort();
    }

    uint8_t sn[STORE_SERIAL_LEN], back[STORE_SERIAL_LEN];
    char hex[2 * STORE_SERIAL_LEN + 1];
    if (serial_parse(s, sn) == 0) {
        serial_to_hex(sn, hex);
        if (strlen(hex) != 2 * STORE_SERIAL_LEN || serial_parse(hex, back) != 0 ||
            memcmp(sn, back, sizeof(sn)) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 0 && data[0] >= 0x80) {
        fuzz_challenge_structured(data, size);
        ERR_clear_error();
        return 0;
    }
    /* An exact-size heap copy, so ASan sees any read past size. */
    uint8_t *in = malloc(size ? size : 1);
    char *s = malloc(size + 1);
    if (in == NULL || s == NULL)
        abort();
    if (size > 0)
        memcpy(in, data, size);
    check_record(in, size);

    memcpy(s, data, size);
    s[size] = '\0';
    check_text(s);
    free(in);
    free(s);
    ERR_clear_error();
    return 0;
}

/* ---- structured inputs ---- */

struct in { const uint8_t *p; size_t n; };

static unsigned take(struct in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

/* A token of 1..24 characters that neither the subject ('/', '=') nor the SAN syntax (',',
 * ':') splits, and never '!' (the harness's own extra name). */
static void token(struct in *in, char *out, size_t cap)
{
    static const char set[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@";
    size_t n = take(in) % 24 + 1;
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = set[take(in) % (sizeof(set) - 1)];
    out[n] = '\0';
}

/* A CA for issuer_create, made once per process. */
static ca_set *G_ca(void)
{
    static ca_set ca;
    static X509 *cert;
    if (cert == NULL) {
        EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        X509_NAME *n = X509_NAME_new();
        cert = X509_new();
        if (key == NULL || n == NULL || cert == NULL ||
            !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"Fuzz CA",
                                        -1, -1, 0) ||
            !X509_set_subject_name(cert, n) || !X509_set_issuer_name(cert, n) ||
            !X509_set_pubkey(cert, key) || X509_sign(cert, key, EVP_sha256()) <= 0)
            abort();
        X509_NAME_free(n);
        ca.ca_key = ca.ra_key = key;
        ca.ca_cert = ca.ra_cert = cert;
        ca.ca_pub = X509_get0_pubkey(cert);
        ca.ca_name = X509_get_subject_name(cert);
        ca.ca_not_after = INT64_C(4102444800);
    }
    return &ca;
}

/* The static challenge of a profile that parsed (pw: its challenge_password, "" for none)
 * under an issuer whose main challenge comes from the bytes: the presented challengePassword
 * (each string type, none, two values) is accepted exactly when it is a string type the
 * comparison takes and its bytes are the expected password's (the profile's, else the main
 * one; neither: REJ_NO_CHALLENGE_SET). */
static void check_static(struct in *in, const profile *prof, const char *pw)
{
    static const struct { int type, ok; } types[] = {
        { V_ASN1_PRINTABLESTRING, 1 }, { V_ASN1_UTF8STRING, 1 }, { V_ASN1_IA5STRING, 1 },
        { V_ASN1_T61STRING, 1 }, { V_ASN1_VISIBLESTRING, 0 }, { V_ASN1_OCTET_STRING, 0 },
    };
    char main_pw[32], other[32];
    unsigned sel = take(in), t = take(in) % 6;
    token(in, main_pw, sizeof(main_pw));
    token(in, other, sizeof(other));
    if (sel & 1)
        main_pw[0] = '\0';
    const char *want = pw[0] != '\0' ? pw : main_pw[0] != '\0' ? main_pw : NULL;
    const char *given = (sel >> 1) % 3 == 0 ? pw : (sel >> 1) % 3 == 1 ? main_pw : other;
    int attr = (sel & 0x40) == 0, twice = (sel & 0xc0) == 0xc0;

    config cfg;
    issuer *is = NULL;
    profile_set *set = NULL;
    char err[128];
    config_defaults(&cfg);
    if (issuer_create(&cfg, G_ca(), main_pw, &is) != 0 ||
        profile_set_from(prof, 1, &set, err, sizeof(err)) != 0 ||
        issuer_set_profiles(is, set, err, sizeof(err)) != 0)
        abort();
    const profile *p = profile_set_find(issuer_profiles(is), prof->name, strlen(prof->name));
    X509_REQ *req = X509_REQ_new();
    if (p == NULL || req == NULL)
        abort();
    if (attr) {
        if (!X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword, types[t].type,
                                       (const unsigned char *)given, (int)strlen(given)))
            abort();
        if (twice) {
            X509_ATTRIBUTE *a = X509_REQ_get_attr(req, 0);
            if (!X509_ATTRIBUTE_set1_data(a, V_ASN1_UTF8STRING, given, (int)strlen(given)))
                abort();
        }
    }
    int expected = want == NULL ? REJ_NO_CHALLENGE_SET
                 : attr && !twice && types[t].ok && strcmp(given, want) == 0 ? REJ_NONE
                 : REJ_CHALLENGE;
    if (issue_static_challenge(is, p, req) != expected ||
        issue_check_challenge(is, p, req) !=
            (p->challenge == PROFILE_CHALLENGE_STATIC ? expected : REJ_NONE))
        abort();
    X509_REQ_free(req);
    issuer_destroy(is);
    ERR_clear_error();
}

/* The challenge list of a profile: predicted exactly from the rules in profile.h. */
static void check_profile_list(struct in *in)
{
    static const char *const words[] = { "static", "onetime", "none", "intune", "webhook" };
    static const char *const seps[] = { ", ", ",", " , ", "\t,", " " };
    unsigned mask = take(in), order = take(in), sep = take(in) % 5, b = mask & 31;
    char text[512], list[128] = "", pw[32];
    size_t off = 0;
    int first = 1;

    for (unsigned i = 0; i < 5; i++) {
        unsigned w = (i + order) % 5;
        if (!(b & (1u << w)))
            continue;
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", first ? "" : seps[sep],
                                words[w]);
        first = 0;
    }
    if (mask & 0x20)
        snprintf(list + off, sizeof(list) - off, "%sbogus", first ? "" : ", ");
    token(in, pw, sizeof(pw));
    snprintf(text, sizeof(text), "challenge = %s\n%s%s%s%s", list,
             (mask & 0x40) ? "challenge_password = " : "", (mask & 0x40) ? pw : "",
             (mask & 0x40) ? "\n" : "",
             (mask & 0x80) ? "subject_source = override\n" : "");

    const unsigned mdm = PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_INTUNE) |
                         PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_WEBHOOK);
    int decides = PROFILE_CHALLENGE_STATIC;
    for (int c = PROFILE_CHALLENGE_ONETIME; c <= PROFILE_CHALLENGE_WEBHOOK; c++)
        if (c != PROFILE_CHALLENGE_NONE && (b & PROFILE_CHALLENGE_BIT(c)))
            decides = c;
    if (b == PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_NONE))
        decides = PROFILE_CHALLENGE_NONE;
    int ok = b != 0 && !(mask & 0x20) &&
             !((b & PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_NONE)) &&
               b != PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_NONE)) &&
             (b & mdm) != mdm &&
             !((b & mdm) && (b & PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_ONETIME))) &&
             !((mask & 0x40) && !(b & PROFILE_CHALLENGE_BIT(PROFILE_CHALLENGE_STATIC))) &&
             !((mask & 0x80) && decides != PROFILE_CHALLENGE_ONETIME);

    profile p;
    char err[128];
    memset(err, 'x', sizeof(err));
    int rc = profile_parse(text, strlen(text), "fuzz", "fuzz.conf", NULL, &p, err, sizeof(err));
    if ((rc == 0) != ok)
        abort();
    if (rc != 0 && memchr(err, '\0', sizeof(err)) == NULL)
        abort();
    if (rc == 0 && ((int)p.challenge != decides || PROFILE_CHALLENGES(&p) != b))
        abort();
    if (rc == 0)
        check_static(in, &p, (mask & 0x40) ? pw : "");
}

/* The subject as scepctl takes it, and the same Name built here; *bad when OpenSSL refuses a
 * value for its attribute (serialNumber is a PrintableString: no '@' or '_'), which
 * challenge_create must refuse too. */
static X509_NAME *make_subject(struct in *in, char *text, size_t cap, int *bad)
{
    static const char *const attrs[] = { "CN", "O", "OU", "L", "ST", "serialNumber" };
    unsigned n = take(in) % 4;
    X509_NAME *name = X509_NAME_new();
    size_t off = 0;
    text[0] = '\0';
    if (name == NULL)
        abort();
    for (unsigned i = 0; i < n; i++) {
        char v[32];
        const char *a = attrs[take(in) % 6];
        token(in, v, sizeof(v));
        off += (size_t)snprintf(text + off, cap - off, "/%s=%s", a, v);
        if (!X509_NAME_add_entry_by_txt(name, a, MBSTRING_UTF8, (const unsigned char *)v, -1,
                                        -1, 0))
            *bad = 1;
    }
    ERR_clear_error();
    return name;
}

static GENERAL_NAME *make_gn(int type, const char *v)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_STRING *s = type == GEN_IPADD ? a2i_IPADDRESS(v) : ASN1_IA5STRING_new();
    if (gn == NULL || s == NULL || (type != GEN_IPADD && !ASN1_STRING_set(s, v, -1)))
        abort();
    GENERAL_NAME_set0_value(gn, type, s);
    return gn;
}

/* The SAN list as scepctl takes it, and the same GeneralNames built here (upn through the
 * parser itself, whose othername is checked by the round trip). */
static GENERAL_NAMES *make_san(struct in *in, char *text, size_t cap)
{
    unsigned n = take(in) % 5;
    GENERAL_NAMES *san = GENERAL_NAMES_new();
    size_t off = 0;
    text[0] = '\0';
    if (san == NULL)
        abort();
    for (unsigned i = 0; i < n; i++) {
        char v[64], t[32];
        unsigned kind = take(in) % 5;
        const char *pre = off ? "," : "";
        GENERAL_NAME *gn;
        if (kind == 3) {
            unsigned a = take(in), b = take(in), c = take(in), d = take(in);
            if (a & 1)
                snprintf(v, sizeof(v), "%u.%u.%u.%u", a, b, c, d);
            else
                snprintf(v, sizeof(v), "fd%02x::%x:%x", b, c, d);
            off += (size_t)snprintf(text + off, cap - off, "%sip:%s", pre, v);
            gn = make_gn(GEN_IPADD, v);
        } else if (kind == 4) {
            token(in, t, sizeof(t));
            snprintf(v, sizeof(v), "%s@realm", t);
            off += (size_t)snprintf(text + off, cap - off, "%supn:%s", pre, v);
            GENERAL_NAMES *one = challenge_parse_san(text + off - strlen(v) - 4);
            if (one == NULL || sk_GENERAL_NAME_num(one) != 1)
                abort();
            gn = sk_GENERAL_NAME_pop(one);
            GENERAL_NAMES_free(one);
        } else {
            static const char *const names[] = { "dns", "email", "uri" };
            static const int types[] = { GEN_DNS, GEN_EMAIL, GEN_URI };
            token(in, v, sizeof(v));
            off += (size_t)snprintf(text + off, cap - off, "%s%s:%s", pre, names[kind], v);
            gn = make_gn(types[kind], v);
        }
        if (!sk_GENERAL_NAME_push(san, gn))
            abort();
    }
    return san;
}

static void expect_at(int got, int want, int line)
{
    check_verdict(got);
    if (got != want) {
        fprintf(stderr, "fuzz_challenge.c:%d: verdict %d, expected %d\n", line, got, want);
        abort();
    }
}
#define expect(got, want) expect_at((got), (want), __LINE__)

/* Every verdict of challenge_verify for a record bound to subject and san. */
static void check_verdicts(const challenge_record *rec, const char *value, const uint8_t *key,
                           size_t kl, const X509_NAME *subject, const GENERAL_NAMES *san)
{
    const unsigned both = CHALLENGE_CHECK_SUBJECT | CHALLENGE_CHECK_SAN;
    const int64_t now = rec->created, end = rec->expires;
    size_t vl = strlen(value);
    int nsan = sk_GENERAL_NAME_num(san), nsub = X509_NAME_entry_count(subject);
    char wrong[CHALLENGE_VALUE_LEN + 2];

    expect(challenge_verify(rec, key, kl, value, vl, "fuzz", now, both, subject, san),
           CHALLENGE_OK);
    expect(challenge_verify(rec, key, kl, value, vl, NULL, end - 1, both, subject, san),
           CHALLENGE_OK);
    expect(challenge_verify(rec, key, kl, value, vl, NULL, end, both, subject, san),
           CHALLENGE_EXPIRED);
    expect(challenge_verify(rec, key, kl, value, vl, "other", now, 0, NULL, NULL),
           CHALLENGE_PROFILE);
    snprintf(wrong, sizeof(wrong), "%s", value);
    wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
    expect(challenge_verify(rec, key, kl, wrong, vl, "other", end, both, NULL, NULL),
           CHALLENGE_WRONG);
    expect(challenge_verify(rec, key, kl, value, vl - 1, NULL, now, 0, NULL, NULL),
           CHALLENGE_WRONG);
    /* HMAC pads its key with zero bytes: an all-zero server key is the same as none */
    int zero = 1;
    for (size_t i = 0; i < kl; i++)
        zero &= key[i] == 0;
    if (!zero)
        expect(challenge_verify(rec, NULL, 0, value, vl, NULL, now, 0, NULL, NULL),
               CHALLENGE_WRONG);

    /* the SAN set in reverse order is the same set; one name more or less is not */
    GENERAL_NAMES *rev = GENERAL_NAMES_new(), *more = GENERAL_NAMES_new();
    if (rev == NULL || more == NULL)
        abort();
    for (int i = nsan - 1; i >= 0; i--)
        if (!sk_GENERAL_NAME_push(rev, GENERAL_NAME_dup(sk_GENERAL_NAME_value(san, i))))
            abort();
    for (int i = 0; i < nsan; i++)
        if (!sk_GENERAL_NAME_push(more, GENERAL_NAME_dup(sk_GENERAL_NAME_value(san, i))))
            abort();
    if (!sk_GENERAL_NAME_push(more, make_gn(GEN_DNS, "extra!invalid")))
        abort();
    if (challenge_same_names(san, rev) != 1 || challenge_same_names(rev, san) != 1 ||
        challenge_same_names(san, more) != 0 || challenge_same_names(more, san) != 0)
        abort();
    expect(challenge_verify(rec, key, kl, value, vl, NULL, now, both, subject, rev),
           CHALLENGE_OK);
    expect(challenge_verify(rec, key, kl, value, vl, NULL, now, CHALLENGE_CHECK_SUBJECT,
                            subject, more), CHALLENGE_OK);
    expect(challenge_verify(rec, key, kl, value, vl, NULL, now, both, subject, more),
           nsan > 0 ? CHALLENGE_MISMATCH_SAN : CHALLENGE_OK);
    if (nsan > 0) {
        /* a set: a name bound twice is still there when one copy is dropped */
        GENERAL_NAME *gone = sk_GENERAL_NAME_pop(rev);
        int twice = 0;
        for (int i = 0; i < sk_GENERAL_NAME_num(rev); i++)
            twice |= GENERAL_NAME_cmp(sk_GENERAL_NAME_value(rev, i), gone) == 0;
        GENERAL_NAME_free(gone);
        expect(challenge_verify(rec, key, kl, value, vl, NULL, now, both, subject, rev),
               twice ? CHALLENGE_OK : CHALLENGE_MISMATCH_SAN);
    }

    X509_NAME *other = X509_NAME_dup(subject);
    if (other == NULL ||
        !X509_NAME_add_entry_by_txt(other, "OU", MBSTRING_UTF8, (const unsigned char *)"x", -1,
                                    -1, 0))
        abort();
    expect(challenge_verify(rec, key, kl, value, vl, NULL, now, both, other, san),
           nsub > 0 ? CHALLENGE_MISMATCH_SUBJECT : CHALLENGE_OK);
    expect(challenge_verify(rec, key, kl, value, vl, NULL, now, 0, other, more), CHALLENGE_OK);

    /* consumed: "used" after a right value and profile, before expiry and bindings */
    challenge_record used = *rec;
    challenge_mark_used(&used, now + 1);
    if (!used.used || used.used_at != now + 1)
        abort();
    expect(challenge_verify(&used, key, kl, value, vl, "fuzz", end, both, other, more),
           CHALLENGE_USED);
    expect(challenge_verify(&used, key, kl, value, vl, "other", now, 0, NULL, NULL),
           CHALLENGE_PROFILE);
    expect(challenge_verify(&used, key, kl, wrong, vl, "fuzz", now, 0, NULL, NULL),
           CHALLENGE_WRONG);
    X509_NAME_free(other);
    GENERAL_NAMES_free(rev);
    GENERAL_NAMES_free(more);
}

/* The record's encoding: identity through decode, every cut refused, a short buffer refused. */
static void check_encoding(const challenge_record *rec, const X509_NAME *subject,
                           const GENERAL_NAMES *san, struct in *in)
{
    uint8_t enc[CHALLENGE_RECORD_MAX], enc2[CHALLENGE_RECORD_MAX];
    challenge_record back;
    int n = challenge_encode(rec, enc, sizeof(enc));
    if (n <= 0 || challenge_decode(enc, (size_t)n, &back) != 0 ||
        challenge_encode(&back, enc2, sizeof(enc2)) != n || memcmp(enc, enc2, (size_t)n) != 0 ||
        challenge_encode(rec, enc2, (size_t)n - 1) != -1)
        abort();
    size_t cut = (size_t)(take(in) | take(in) << 8) % (size_t)n;
    if (challenge_decode(enc, cut, &back) == 0)
        abort();
    X509_NAME *bs = challenge_bound_subject(rec);
    GENERAL_NAMES *bn = challenge_bound_san(rec);
    if ((X509_NAME_entry_count(subject) > 0) != (bs != NULL) ||
        (bs != NULL && X509_NAME_cmp(bs, subject) != 0) ||
        (sk_GENERAL_NAME_num(san) > 0) != (bn != NULL) || challenge_same_names(bn, san) != 1)
        abort();
    X509_NAME_free(bs);
    GENERAL_NAMES_free(bn);
}

static void check_tables(void)
{
    for (int v = -1; v <= CHALLENGE__COUNT; v++) {
        const char *d = challenge_result_diag(v), *t = challenge_result_text(v);
        int out = v < 0 || v >= CHALLENGE__COUNT;
        if (d == NULL || t == NULL || (out && strcmp(d, "unknown") != 0) ||
            (out && challenge_reject_code(v) != REJ_CHAL_WRONG))
            abort();
    }
    char small[CHALLENGE_VALUE_LEN];
    if (challenge_generate(small, sizeof(small)) != -1)
        abort();
}

static void fuzz_challenge_structured(const uint8_t *data, size_t size)
{
    struct in in = { data + 1, size - 1 };
    unsigned flags = data[0];
    char subj_text[512], san_text[1024];

    check_profile_list(&in);
    int bad = 0;
    X509_NAME *subject = make_subject(&in, subj_text, sizeof(subj_text), &bad);
    GENERAL_NAMES *san = make_san(&in, san_text, sizeof(san_text));
    int64_t ttl = (int64_t)(take(&in) | take(&in) << 8) - (flags & 1 ? 16 : 0);
    int64_t now = 1700000000 + (int64_t)take(&in) * 86400;
    uint8_t key[16], hkey[CHALLENGE_HASH_LEN], enc[CHALLENGE_RECORD_MAX];
    size_t kl = (flags & 2) ? 1 + take(&in) % sizeof(key) : 0, rec_len = 0;
    for (size_t i = 0; i < kl; i++)
        key[i] = (uint8_t)take(&in);
    char value[CHALLENGE_VALUE_LEN + 1];
    const char *why = NULL;

    if (flags & 4)
        check_tables();
    int rc = challenge_create("fuzz", now, ttl, subj_text, san_text, value, hkey, enc, &rec_len,
                              &why);
    if ((rc == 0) != (ttl > 0 && !bad) || (rc != 0 && why == NULL) || (rc == 0 && why != NULL))
        abort();
    if (rc == 0) {
        challenge_record rec;
        if (challenge_decode(enc, rec_len, &rec) != 0 || rec.created != now ||
            rec.expires != now + ttl || rec.used || strcmp(rec.profile, "fuzz") != 0)
            abort();
        check_encoding(&rec, subject, san, &in);
        check_verdicts(&rec, value, NULL, 0, subject, san);
        if (kl > 0) {
            /* the same challenge under a server key */
            challenge_record keyed;
            if (challenge_record_init(&keyed, key, kl, value, strlen(value), "fuzz", now, ttl,
                                      subject, san) != 0)
                abort();
            check_verdicts(&keyed, value, key, kl, subject, san);
        }
    }
    X509_NAME_free(subject);
    GENERAL_NAMES_free(san);
}
