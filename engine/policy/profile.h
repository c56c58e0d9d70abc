/* profile: certificate profiles (conf/profiles/<name>.conf), the rules one kind of certificate
 * is issued under, and the pure decision functions the enrollment path applies.
 *
 * File format: the INI dialect of the main configuration (comments '#' ';', key = value,
 * values may be "quoted"), one [profile] section (optional header); unknown keys are errors
 * "file:line: reason". Every key, its default and its meaning: docs/profiles.md. The defaults
 * reproduce the built-in behaviour of issue.c (keyUsage digitalSignature (+keyEncipherment
 * for RSA), EKU clientAuth, SAN DNS/email/URI/UPN from the request, 365 days capped at the
 * CA, RSA 2048..4096, EC P-256/P-384, SHA-256/384/512, renewal in the last 20 %, automatic
 * approval, the static challenge of the main configuration).
 *
 * A loaded profile is immutable and may be read from any thread. A profile_set owns its
 * profiles; pointers into it stay valid until profile_set_destroy.
 *
 * Decision functions return PROFILE_OK or another PROFILE_* result (X-macro below: name, the
 * REJ_ row that answers it, the finer audit detail). They never allocate unless stated.
 */
#ifndef SCEPD_PROFILE_H
#define SCEPD_PROFILE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <openssl/x509v3.h>

#include "engine/scep/reject.h"

/* The REJ_ row (engine/scep/reject.h) a result is answered with: the SCEP failInfo, the
 * audit diagnostic and the failInfoText are that row's, spelled nowhere else. detail is the
 * profile's finer code for the audit event's "detail" field, where it says more than the
 * row's diagnostic (KEY_SIZE and KEY_CURVE are both REJ_KEY_TYPE); NULL: the row's. */
/*  X(name,             REJ_ row,          detail) */
#define PROFILE_RESULTS(X) \
    X(OK,               NONE,              NULL) \
    X(KEY_TYPE,         KEY_TYPE,          "profile_key_type") \
    X(KEY_SIZE,         KEY_TYPE,          "profile_key_size") \
    X(KEY_CURVE,        KEY_TYPE,          "profile_key_curve") \
    X(KEY_USAGE,        KEY_USAGE,         NULL) \
    X(HASH,             CSR_SIG_ALG,       "profile_hash") \
    X(SAN_TYPE,         SAN_TYPE,          "profile_san_type") \
    X(SAN_UPN_REQUIRED, UPN_REQUIRED,      NULL) \
    X(SAN_INVALID,      SAN_TYPE,          "profile_san_invalid") \
    X(SUBJECT_EMPTY,    EMPTY_SUBJECT,     "profile_subject_empty") \
    X(SUBJECT_LENGTH,   SUBJECT_LENGTH,    NULL) \
    X(SUBJECT_CHARS,    SUBJECT_CHARS,     NULL) \
    X(VALIDITY_REQUEST, VALIDITY_REQUEST,  NULL) \
    X(BEYOND_CA,        BEYOND_CA,         NULL) \
    X(CA_EXPIRED,       CA_EXPIRED,        "profile_ca_expired") \
    X(RENEWAL_EARLY,    RENEW_EARLY,       NULL) \
    X(RENEWAL_EXPIRED,  RENEW_EXPIRED,     "profile_renewal_expired") \
    X(RENEWAL_PROFILE,  RENEW_PROFILE,     NULL) \
    X(RENEWAL_SUBJECT,  RENEW_SUBJECT,     NULL) \
    X(RENEWAL_SAN,      RENEW_SAN,         NULL) \
    X(INTERNAL,         INTERNAL,          "profile_internal") \
    X(CIPHER_DES,       CIPHER,            "profile_des")

enum profile_result {
#define X(name, rej, detail) PROFILE_##name,
    PROFILE_RESULTS(X)
#undef X
    PROFILE__COUNT
};

/* The audit detail of a result: its own code, else its REJ_ row's diagnostic; "unknown" when
 * out of range. The REJ_ row itself: issue_profile_reject (engine/policy/issue.h). */
const char *profile_result_diag(int r);

/* keyUsage bits as the profile names them (not OpenSSL's KU_ values). */
enum {
    PROFILE_KU_DIGITAL_SIGNATURE = 1u << 0,
    PROFILE_KU_NON_REPUDIATION   = 1u << 1,
    PROFILE_KU_KEY_ENCIPHERMENT  = 1u << 2,
    PROFILE_KU_DATA_ENCIPHERMENT = 1u << 3,
    PROFILE_KU_KEY_AGREEMENT     = 1u << 4,
};
enum { PROFILE_SAN_DNS = 1u << 0, PROFILE_SAN_EMAIL = 1u << 1, PROFILE_SAN_URI = 1u << 2,
       PROFILE_SAN_UPN = 1u << 3, PROFILE_SAN_IP = 1u << 4 };
enum { PROFILE_KEY_RSA = 1u << 0, PROFILE_KEY_EC = 1u << 1 };
enum { PROFILE_CURVE_P256 = 1u << 0, PROFILE_CURVE_P384 = 1u << 1, PROFILE_CURVE_P521 = 1u << 2 };
enum { PROFILE_HASH_SHA1 = 1u << 0, PROFILE_HASH_SHA224 = 1u << 1, PROFILE_HASH_SHA256 = 1u << 2,
       PROFILE_HASH_SHA384 = 1u << 3, PROFILE_HASH_SHA512 = 1u << 4 };

enum profile_template { PROFILE_TEMPLATE_GENERAL = 0, PROFILE_TEMPLATE_SIGNATURE,
                        PROFILE_TEMPLATE_ENCRYPTION };
/* Where the subject (or the SANs) of the issued certificate come from. */
enum profile_source {
    PROFILE_SOURCE_REQUEST = 0,  /* the CSR's, checked against the rules               */
    PROFILE_SOURCE_REQUIRE,      /* the CSR's, and it must equal the challenge binding  */
    PROFILE_SOURCE_OVERRIDE,     /* the challenge binding replaces the CSR's            */
};
enum profile_beyond_ca { PROFILE_BEYOND_CA_CAP = 0, PROFILE_BEYOND_CA_REFUSE };
enum profile_approval { PROFILE_APPROVAL_AUTO = 0, PROFILE_APPROVAL_MANUAL };
/* What a renewal may change against the certificate it renews (renew_may_change). */
enum { PROFILE_RENEW_SUBJECT = 1u << 0, PROFILE_RENEW_SAN = 1u << 1 };
enum profile_challenge {
    PROFILE_CHALLENGE_STATIC = 0, /* challenge_password(_file), else the main config's  */
    PROFILE_CHALLENGE_ONETIME,    /* one-time challenges (engine/policy/challenge.h)           */
    PROFILE_CHALLENGE_NONE,       /* initial enrollment without a challenge (renewal only
                                     if also nothing else authorises: use with care)    */
    PROFILE_CHALLENGE_INTUNE,     /* Intune validates the request (engine/mdm/intune.h)     */
    PROFILE_CHALLENGE_WEBHOOK,    /* the challenge webhook decides (engine/mdm/webhook.h)  */
};
/* challenge = a list ("onetime, static"): every kind listed is accepted, tried in a fixed
 * order whatever the order written (docs/profiles.md): static (compared, nothing consumed),
 * then onetime (consumed in the store) or the MDM (intune or webhook: its verdict is final).
 * profile.challenge is then the kind that decides when static does not match: onetime or the
 * MDM when listed, else static (none stands alone). At most one MDM; an MDM does not combine
 * with onetime. */
#define PROFILE_CHALLENGE_BIT(kind) (1u << (kind))
/* The kinds a profile p accepts (a profile built without the parser has challenges 0: its
 * one kind). */
#define PROFILE_CHALLENGES(p) \
    ((p)->challenges != 0 ? (p)->challenges : PROFILE_CHALLENGE_BIT((p)->challenge))

#define PROFILE_NAME_MAX  64
#define PROFILE_OID_MAX   16      /* EKUs, policies: entries per profile */
#define PROFILE_PATH_MAX  1024
#define PROFILE_RENEW_FROM_MAX 8  /* renew_from: profiles listed */
/* The profile a certificate record without one (written before records named their profile)
 * counts as. */
#define PROFILE_LEGACY_NAME "default"

/* Read-only after load. Fields are public so the wiring code can read the plain settings
 * (approval, challenge, template, sources); the rules are applied with the functions below. */
typedef struct profile {
    char     name[PROFILE_NAME_MAX];
    char     description[256];
    unsigned key_usage;            /* PROFILE_KU_*; encipherment bits dropped for EC keys,
                                      keyAgreement dropped for RSA keys                    */
    int      eku_count;
    char     eku[PROFILE_OID_MAX][64];      /* dotted OIDs, in file order                   */
    int      policy_count;
    char     policy[PROFILE_OID_MAX][64];   /* certificatePolicies OIDs                      */
    enum profile_template template_class;
    enum profile_source subject_source;
    enum profile_source san_source;
    unsigned san_types;            /* PROFILE_SAN_* allowed                                 */
    unsigned san_required;         /* PROFILE_SAN_* at least one of each required           */
    int      subject_max_length;   /* bytes per attribute value; 0 = unlimited              */
    enum { PROFILE_CHARS_ANY = 0, PROFILE_CHARS_PRINTABLE, PROFILE_CHARS_ASCII } subject_chars;
    int      validity_days;        /* maximum                                               */
    int      allow_shorter;        /* honour a requested shorter notAfter                   */
    enum profile_beyond_ca beyond_ca;
    unsigned key_types;            /* PROFILE_KEY_*                                          */
    int      rsa_min_bits, rsa_max_bits;
    unsigned ec_curves;            /* PROFILE_CURVE_*                                        */
    unsigned hashes;               /* PROFILE_HASH_*                                         */
    int      renewal_threshold_percent;
    int      renew_from_count;     /* other profiles whose certificates may renew here      */
    char     renew_from[PROFILE_RENEW_FROM_MAX][PROFILE_NAME_MAX];
    unsigned renew_may_change;     /* PROFILE_RENEW_*: what a renewal may change (0: nothing) */
    int      approve_renewals;     /* approval = manual: renewals approved automatically     */
    enum profile_approval approval;
    enum profile_challenge challenge;
    unsigned challenges;           /* PROFILE_CHALLENGE_BIT of every kind listed            */
    char     challenge_password[256];       /* static, inline (empty: see _file / main)     */
    char     challenge_password_file[PROFILE_PATH_MAX]; /* resolved against the profile dir */
    int      smartcard_logon;      /* derived: EKU list holds 1.3.6.1.4.1.311.20.2.2         */
    int      allow_des;            /* allow_des = no: single-DES request envelopes (RFC 8894
                                      7.5 MUST NOT; old clients only)                     */
} profile;

/* Fills *p with the defaults (today's built-in behaviour) and the given name. */
void profile_defaults(profile *p, const char *name);

/* Parses one profile over the defaults. text need not be NUL-terminated. file names the
 * source in messages ("file:line: reason"); base_dir resolves a relative password_file (may
 * be NULL). A "name =" key overrides default_name. Returns 0 and *out, or -1 with err set
 * (errlen bytes, always terminated; err may be NULL); *out untouched on failure. */
int profile_parse(const char *text, size_t len, const char *default_name, const char *file,
                  const char *base_dir, profile *out, char *err, size_t errlen);

/* Reads and parses one file; name defaults to the file name without ".conf". */
int profile_load_file(const char *path, profile *out, char *err, size_t errlen);

/* Reads the static challenge (inline or file, trailing CR/LF stripped) into buf. Returns its
 * length, 0 when the profile sets none (then the main configuration's applies), or -1. */
int profile_read_challenge(const profile *p, char *buf, size_t buflen);

typedef struct profile_set profile_set;

/* Loads every "*.conf" of dir (other files ignored), sorted by profile name. Duplicate names
 * and names that are not [A-Za-z0-9._-]+ are refused. An empty directory gives an empty set.
 * Returns 0 and *out or -1 with err. */
int profile_set_load_dir(const char *dir, profile_set **out, char *err, size_t errlen);
/* A set holding copies of the n given profiles (sorted; duplicates refused). For tests and
 * for installations without a profile directory (one built-in "default"). */
int profile_set_from(const profile *profiles, size_t n, profile_set **out, char *err,
                     size_t errlen);
void profile_set_destroy(profile_set *s);  /* accepts NULL */
/* The profiles, sorted by name; valid until destroy. */
const profile *profile_set_items(const profile_set *s, size_t *n);
const profile *profile_set_find(const profile_set *s, const char *name, size_t namelen);

/* --- decisions --------------------------------------------------------------------------- */

/* Key type, RSA size, EC curve, and that the key can do the profile's keyUsage (an EC key on
 * a keyEncipherment-only profile is refused with PROFILE_KEY_USAGE). */
int profile_check_key(const profile *p, EVP_PKEY *pub);

/* md_nid: the digest of the CSR signature (OBJ_find_sigid_algs). */
int profile_check_hash(const profile *p, int md_nid);

/* SAN types allowed, UPN well-formed, required types present (smart card logon: UPN).
 * san may be NULL (no SAN). */
int profile_check_san(const profile *p, const GENERAL_NAMES *san);

/* Subject rules: attribute value length and character class; an empty subject needs a SAN. */
int profile_check_subject(const profile *p, const X509_NAME *subject, const GENERAL_NAMES *san);

/* Chooses notAfter. requested_not_after = 0 when the client asked for nothing; a request is
 * honoured only with allow_shorter (longer requests are cut to validity_days). Past the CA's
 * notAfter: capped (*capped_out = 1) or PROFILE_BEYOND_CA. CA expired: PROFILE_CA_EXPIRED.
 * capped_out may be NULL. Out-parameters set only on PROFILE_OK. */
int profile_validity(const profile *p, time_t now, int64_t ca_not_after,
                     int64_t requested_not_after, int64_t *not_after_out, int *capped_out);

/* How a client asks for a shorter validity: a privateKeyUsagePeriod (2.5.29.16) extension in
 * the CSR's extensionRequest whose notAfter is the wanted end (never copied into the
 * certificate). Returns 0 with *out = that time, 0 with *out = 0 when absent, -1 when the
 * extension is present but malformed. */
int profile_requested_not_after(X509_REQ *csr, int64_t *out);

/* Renewal allowed iff now lies in the last renewal_threshold_percent of [nb, na] and now < na:
 * PROFILE_OK, PROFILE_RENEWAL_EARLY or PROFILE_RENEWAL_EXPIRED. */
int profile_renewal_allowed(const profile *p, time_t now, int64_t old_not_before,
                            int64_t old_not_after);

/* A renewal under p of a certificate issued under old_profile ("" : a record from before
 * records named their profile, counted as PROFILE_LEGACY_NAME), whose subject and SANs were
 * old_subject / old_san, asking for csr_subject / csr_san (SANs may be NULL: none):
 * PROFILE_OK, PROFILE_RENEWAL_PROFILE (p is another profile and its renew_from does not name
 * old_profile), PROFILE_RENEWAL_SUBJECT (another subject: X509_NAME_cmp), PROFILE_RENEWAL_SAN
 * (another set of SANs), unless renew_may_change allows that change. A subject (SAN) whose
 * source is "override" is not compared: the renewal keeps the old certificate's (the caller
 * issues it with those). */
int profile_check_renewal(const profile *p, const char *old_profile,
                          const X509_NAME *old_subject, const GENERAL_NAMES *old_san,
                          const X509_NAME *csr_subject, const GENERAL_NAMES *csr_san);

/* keyUsage the CSR asks for (extensionRequest), as PROFILE_KU_* bits; 0 when none. */
unsigned profile_requested_key_usage(X509_REQ *csr);

/* Single DES-CBC (cipher_nid NID_des_cbc) only under allow_des = yes: PROFILE_OK or
 * PROFILE_CIPHER_DES. Every other cipher is the SCEP codec's business (scep_open_envelope
 * admits AES-CBC and DES3 only) and passes here. */
int profile_check_cipher(const profile *p, int cipher_nid);

/* Whether any profile of s allows single DES: then OpenSSL's legacy provider is loaded, and
 * a single-DES envelope is opened before its profile is known. */
int profile_set_allows_des(const profile_set *s);

/* Whether single DES is allowed for a message that carries no CSR (CertPoll, GetCert,
 * GetCRL): under the profile the URL names, or on the default path ("" or NULL) under the one
 * profile_select_for_key_usage picks for no keyUsage. 0 when there is no such profile. */
int profile_set_allows_des_for(const profile_set *s, const char *name);

/* NDES default-path mapping: signature bits only (digitalSignature/nonRepudiation) -> the
 * first profile with template = signature; encipherment bits only -> template = encryption;
 * both or none -> the profile named "default", else the first template = general profile.
 * Falls back to "default" / the first general profile when no profile has the wanted class.
 * NULL when n == 0 or nothing general exists. */
const profile *profile_select_for_key_usage(const profile *profiles, size_t n,
                                            unsigned requested_ku_bits);

/* Adds basicConstraints (critical CA:FALSE), keyUsage (critical), extendedKeyUsage,
 * certificatePolicies, SKI (hash of subject_key), AKI (ca's SKI, else SHA-1 of its key) and
 * subjectAltName (san; critical when cert's subject is empty) exactly per the profile.
 * cert's subject must be set first. san is checked with profile_check_san first (smart card
 * logon without UPN: PROFILE_SAN_UPN_REQUIRED). Nothing from the CSR is copied otherwise. */
int profile_add_extensions(const profile *p, X509 *cert, X509 *ca, EVP_PKEY *subject_key,
                           const GENERAL_NAMES *san);

/* The keyUsage bits (PROFILE_KU_*) issued for a subject key: rsa_key = 1 for RSA (no
 * keyAgreement), 0 for any other type (no encipherment bits). */
unsigned profile_key_usage_for(const profile *p, int rsa_key);

/* What profile_add_extensions adds that depends on nothing of the request, encoded once so a
 * certificate can be written as DER around it (engine/policy/issue_der.c): the first four
 * extensions (basicConstraints .. certificatePolicies) for a subject key of that type, and
 * the authorityKeyIdentifier for ca; each a whole DER Extension, back to back, the same bytes
 * profile_add_extensions puts in a certificate. *out malloc()ed (caller frees). 0 or -1. */
int profile_fixed_extensions_der(const profile *p, int rsa_key, uint8_t **out, size_t *outlen);
int profile_aki_extension_der(X509 *ca, uint8_t **out, size_t *outlen);

#endif
