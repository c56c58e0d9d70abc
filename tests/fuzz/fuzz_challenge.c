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
 * invariants abort(), so the replay driver and libFuzzer both flag them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "engine/pki/serial.h"
#include "engine/policy/challenge.h"
#include "engine/scep/reject.h"

#define VALUE "fuzz-value"

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
static void check_init(const char *profile, const X509_NAME *subject, const GENERAL_NAMES *san)
{
    challenge_record rec, back;
    uint8_t enc[CHALLENGE_RECORD_MAX];

    if (challenge_record_init(&rec, NULL, 0, VALUE, strlen(VALUE), profile, 1700000000, 3600,
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
