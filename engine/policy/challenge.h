/* challenge: one-time challenge passwords, without storage.
 *
 * A one-time challenge is a random URL-safe string (24 random bytes, base64url without
 * padding: 32 characters, 192 bits), handed to an MDM or an administrator, consumed by exactly
 * one enrollment, with an expiry and optionally the subject / subjectAltNames the CSR must
 * carry (the Intune policy-module check).
 *
 * Storage (the caller's LMDB db "challenges"): key = challenge_hash(value), value =
 * challenge_encode(record). The value itself is never stored. The hash is HMAC-SHA256 keyed
 * with an optional server key over "scepd-challenge-v1" || value: deterministic, so the
 * record is found by one lookup of the presented value (a per-record salt would need a scan);
 * with a key (e.g. read from a file shared by all nodes) a stolen store cannot even be used to
 * test guesses offline. Without a key it is a plain domain-separated hash, which is sound
 * because values carry 192 bits of entropy.
 *
 * Consumption: the caller, inside one write transaction, looks the record up, calls
 * challenge_verify, and on CHALLENGE_OK calls challenge_mark_used and writes it back (keep
 * used records until expiry so reuse is reported as "used", not "wrong").
 */
#ifndef SCEPD_CHALLENGE_H
#define SCEPD_CHALLENGE_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/x509v3.h>

#include "engine/scep/reject.h"

#define CHALLENGE_VALUE_LEN   32          /* characters of a generated challenge */
#define CHALLENGE_HASH_LEN    32
#define CHALLENGE_PROFILE_MAX 64          /* profile name, NUL included */
#define CHALLENGE_SUBJECT_MAX 1024        /* DER of the bound Name */
#define CHALLENGE_SAN_MAX     4096        /* DER of the bound GeneralNames */
#define CHALLENGE_RECORD_MAX  (1 + 1 + CHALLENGE_HASH_LEN + 3 * 8 + 3 * 2 + \
                               CHALLENGE_PROFILE_MAX + CHALLENGE_SUBJECT_MAX + CHALLENGE_SAN_MAX)

/* Each verdict names the REJ_ row (engine/scep/reject.h) a refusal is answered with; the
 * failInfo, the audit diagnostic and the text are that row's. */
/*  X(name,             REJ_ row) */
#define CHALLENGE_RESULTS(X) \
    X(OK,               NONE) \
    X(WRONG,            CHAL_WRONG) \
    X(EXPIRED,          CHAL_EXPIRED) \
    X(USED,             CHAL_USED) \
    X(MISMATCH_SUBJECT, CHAL_SUBJECT) \
    X(MISMATCH_SAN,     CHAL_SAN) \
    X(PROFILE,          CHAL_PROFILE)

enum challenge_result {
#define X(name, rej) CHALLENGE_##name,
    CHALLENGE_RESULTS(X)
#undef X
    CHALLENGE__COUNT
};
/* The REJ_ row's diagnostic and text for a verdict; "unknown" when out of range. */
const char *challenge_result_diag(int r);
const char *challenge_result_text(int r);

/* Plain data; no pointers, copy freely. */
typedef struct challenge_record {
    uint8_t  hash[CHALLENGE_HASH_LEN];
    char     profile[CHALLENGE_PROFILE_MAX];
    int64_t  created, expires;             /* seconds since the epoch */
    int      used;
    int64_t  used_at;
    uint8_t  subject_der[CHALLENGE_SUBJECT_MAX];   /* 0 bytes: no subject bound */
    size_t   subject_len;
    uint8_t  san_der[CHALLENGE_SAN_MAX];           /* 0 bytes: no SANs bound */
    size_t   san_len;
} challenge_record;

/* Writes a new random challenge (CHALLENGE_VALUE_LEN chars of [A-Za-z0-9_-]) and a NUL into
 * out (outlen >= CHALLENGE_VALUE_LEN + 1). 0 or -1 (no randomness, buffer too small). */
int challenge_generate(char *out, size_t outlen);

/* HMAC-SHA256(key, "scepd-challenge-v1" || value). key may be NULL with keylen 0. 0 or -1. */
int challenge_hash(const uint8_t *key, size_t keylen, const char *value, size_t len,
                   uint8_t out[CHALLENGE_HASH_LEN]);

/* Fills rec for a new challenge: hash of value, profile, created = now, expires = now + ttl,
 * optional bindings (subject / san may be NULL). 0, or -1 when a binding does not fit the
 * limits above, the profile name is too long or ttl_s <= 0. */
int challenge_record_init(challenge_record *rec, const uint8_t *key, size_t keylen,
                          const char *value, size_t len, const char *profile, int64_t now,
                          int64_t ttl_s, const X509_NAME *subject, const GENERAL_NAMES *san);

/* Versioned big-endian encoding for a store value. challenge_encode writes at most
 * CHALLENGE_RECORD_MAX bytes into out and returns the length, or -1 when outlen is too small.
 * challenge_decode accepts exactly one encoded record (no trailing bytes); 0 or -1. */
int challenge_encode(const challenge_record *rec, uint8_t *out, size_t outlen);
int challenge_decode(const uint8_t *in, size_t len, challenge_record *rec);

enum { CHALLENGE_CHECK_SUBJECT = 1, CHALLENGE_CHECK_SAN = 2 };

/* Checks a presented challenge against its record, in this order: value (constant-time
 * compare of hashes) -> WRONG, profile (when profile != NULL) -> PROFILE, used -> USED,
 * now >= expires -> EXPIRED, then, when flags ask and the record binds them, the CSR's
 * subject (X509_NAME_cmp) -> MISMATCH_SUBJECT and SAN set (same names, any order, no extra)
 * -> MISMATCH_SAN. Pass flags 0 for a profile whose subject/SAN source is "override" (the
 * binding then replaces the CSR's; see challenge_bound_subject / challenge_bound_san). */
int challenge_verify(const challenge_record *rec, const uint8_t *key, size_t keylen,
                     const char *presented, size_t plen, const char *profile, int64_t now,
                     unsigned flags, const X509_NAME *csr_subject, const GENERAL_NAMES *csr_san);

/* 1 when a and b hold the same set of names (any order; NULL is the empty set), else 0: the
 * SAN comparison of challenge_verify, also used for a renewal against the renewed
 * certificate (engine/enroll/pkcsreq.c). */
int challenge_same_names(const GENERAL_NAMES *a, const GENERAL_NAMES *b);

/* Marks rec consumed at now. */
void challenge_mark_used(challenge_record *rec, int64_t now);

/* The bindings, decoded (caller frees); NULL when none is bound or on error. */
X509_NAME *challenge_bound_subject(const challenge_record *rec);
GENERAL_NAMES *challenge_bound_san(const challenge_record *rec);

/* Parses "dns:host,email:a@b,uri:...,upn:user@realm,ip:10.0.0.1" (as scepctl --san takes it)
 * into GeneralNames (caller frees). An entry ends at a comma followed by a known "type:", so a
 * value may contain commas (Intune's "uri:tag:microsoft.com,2022-09-14:sid:S-1-5-..."). NULL on
 * an empty or malformed list. */
GENERAL_NAMES *challenge_parse_san(const char *list);

/* Parses a subject written "/CN=name/O=org" (UTF-8 values; the form scepctl takes) into a
 * Name (caller frees). NULL when empty or malformed. */
X509_NAME *challenge_parse_subject(const char *dn);

/* A new one-time challenge for profile, valid ttl_s seconds from now, optionally bound to
 * subject_dn ("/CN=..", may be NULL or "") and san_list (challenge_parse_san, may be NULL or
 * ""): writes the value (CHALLENGE_VALUE_LEN chars + NUL), its store key (challenge_hash,
 * no server key) and the encoded record (rec_out, CHALLENGE_RECORD_MAX bytes; *rec_len).
 * 0, or -1 with *why set to a static reason. */
int challenge_create(const char *profile, int64_t now, int64_t ttl_s, const char *subject_dn,
                     const char *san_list, char value[CHALLENGE_VALUE_LEN + 1],
                     uint8_t key[CHALLENGE_HASH_LEN], uint8_t *rec_out, size_t *rec_len,
                     const char **why);

/* The REJ_ code (engine/scep/reject.h) a verdict is answered with (the REJ_ column of
 * CHALLENGE_RESULTS): REJ_NONE for CHALLENGE_OK, REJ_CHAL_WRONG when out of range. */
int challenge_reject_code(int verdict);

#endif
