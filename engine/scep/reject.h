/* Every reason scepd refuses a parsed pkiMessage, in one table: the failInfo the CertRep
 * carries, the audit diagnostic code, and the failInfoText / log text. */
#ifndef SCEPD_REJECT_H
#define SCEPD_REJECT_H

#include "engine/scep/scep.h"

/* DECRYPT, BAD_CSR and BAD_QUERY answer identically (failInfo and text): a failed RSA
 * PKCS#1 v1.5 unwrap and a successful unwrap that yields garbage must look the same to the
 * client, or scepd is a padding oracle for the RA key (Bleichenbacher). OpenSSL 3.0 has no
 * implicit rejection. The audit diagnostics stay distinct. */
/*  X(name,              failInfo,        diag code,              text) */
#define SCEP_REJECTS(X) \
    X(NONE,               NONE,            "ok",                   "no error") \
    X(NOT_PKIMESSAGE,     NONE,            "not_pkimessage",       "body is not a SCEP pkiMessage") \
    X(MISSING_ATTR,       BADREQUEST,      "missing_attribute",    "transactionID, senderNonce or messageType missing or malformed") \
    X(BAD_TXID,           BADREQUEST,      "bad_transaction_id",   "transactionID longer than 128 bytes or not printable ASCII") \
    X(NO_SIGNER_CERT,     BADREQUEST,      "no_signer_cert",       "signer certificate not included") \
    X(SIG_DIGEST,         BADALG,          "digest_not_allowed",   "signature digest algorithm not allowed") \
    X(BAD_SIGNATURE,      BADMESSAGECHECK, "bad_signature",        "pkiMessage signature does not verify") \
    X(UNKNOWN_TYPE,       BADREQUEST,      "unknown_message_type", "messageType not supported") \
    X(NO_ENVELOPE,        BADREQUEST,      "no_envelope",          "pkcsPKIEnvelope missing or not an EnvelopedData") \
    X(CIPHER,             BADALG,          "cipher_not_allowed",   "content-encryption algorithm not allowed (AES-CBC or DES3 only)") \
    X(DECRYPT,            BADMESSAGECHECK, "decrypt_failed",       "pkcsPKIEnvelope does not decrypt to a valid request") \
    X(BAD_CSR,            BADMESSAGECHECK, "bad_csr",              "pkcsPKIEnvelope does not decrypt to a valid request") \
    X(CSR_SIG_ALG,        BADALG,          "csr_alg_not_allowed",  "PKCS#10 signature algorithm not allowed") \
    X(POP,                BADMESSAGECHECK, "pop_failed",           "PKCS#10 signature (proof of possession) does not verify") \
    X(KEY_TYPE,           BADALG,          "key_not_allowed",      "key type, size or curve not allowed by the profile (default RSA 2048-4096, EC P-256/P-384)") \
    X(EMPTY_SUBJECT,      BADREQUEST,      "empty_subject",        "request has neither a subject nor a subjectAltName") \
    X(CA_REQUESTED,       BADREQUEST,      "ca_requested",         "a CA certificate was requested (basicConstraints CA:TRUE)") \
    X(SAN_TYPE,           BADREQUEST,      "san_not_allowed",      "subjectAltName type not allowed by the profile, or malformed (default DNS, email, URI, UPN)") \
    X(NO_CHALLENGE_SET,   BADREQUEST,      "enrollment_disabled",  "initial enrollment needs a challenge and none is configured") \
    X(CHALLENGE,          BADREQUEST,      "bad_challenge",        "challenge password missing or wrong") \
    X(TXID_CONFLICT,      BADREQUEST,      "txid_conflict",        "transactionID already used with another request") \
    X(REPLAY_REVOKED,     BADREQUEST,      "replay_revoked",       "the certificate issued for this transaction was revoked; enroll with a new key") \
    X(RENEW_SIGNER,       BADREQUEST,      "renewal_signer",       "renewal must be signed by a certificate this CA issued") \
    X(RENEW_UNKNOWN,      BADREQUEST,      "renewal_unknown_cert", "renewal signer certificate is not in the store") \
    X(RENEW_EXPIRED,      BADTIME,         "renewal_expired",      "renewal signer certificate has expired or is not yet valid") \
    X(RENEW_REVOKED,      BADREQUEST,      "renewal_revoked",      "renewal signer certificate is revoked") \
    X(RENEW_PROFILE,      BADREQUEST,      "renewal_profile",      "a renewal stays in the profile of the certificate it renews (or one whose renew_from names it)") \
    X(RENEW_SUBJECT,      BADREQUEST,      "renewal_subject",      "renewal subject differs from the certificate it renews") \
    X(RENEW_SAN,          BADREQUEST,      "renewal_san",          "renewal subjectAltNames differ from the certificate it renews") \
    X(CA_EXPIRED,         BADTIME,         "ca_expired",           "the CA certificate has expired") \
    X(UNKNOWN_TXN,        BADCERTID,       "unknown_transaction",  "no certificate for this transaction") \
    X(UNKNOWN_CERT,       BADCERTID,       "unknown_certificate",  "no certificate with this issuer and serial") \
    X(BAD_QUERY,          BADMESSAGECHECK, "bad_query",            "pkcsPKIEnvelope does not decrypt to a valid request") \
    X(NO_CRL,             BADREQUEST,      "no_crl",               "no CRL has been published yet") \
    X(NO_PROFILE,         BADREQUEST,      "no_profile",           "no profile matches the request and there is no default profile") \
    X(KEY_USAGE,          BADALG,          "profile_key_usage",    "key type cannot perform the key usage of the profile") \
    X(UPN_REQUIRED,       BADREQUEST,      "profile_upn_required", "the profile (smart card logon) requires a UPN subjectAltName") \
    X(SUBJECT_LENGTH,     BADREQUEST,      "profile_subject_length", "a subject attribute is longer than the profile allows") \
    X(SUBJECT_CHARS,      BADREQUEST,      "profile_subject_chars", "a subject attribute has characters the profile does not allow") \
    X(VALIDITY_REQUEST,   BADTIME,         "profile_validity_request", "requested notAfter (privateKeyUsagePeriod) is malformed or not in the future") \
    X(BEYOND_CA,          BADTIME,         "profile_beyond_ca",    "validity would extend past the CA certificate (profile beyond_ca = refuse)") \
    X(RENEW_EARLY,        BADREQUEST,      "profile_renewal_early", "renewal before the renewal threshold of the profile") \
    X(CHAL_WRONG,         BADREQUEST,      "challenge_wrong",      "one-time challenge missing, unknown or wrong") \
    X(CHAL_EXPIRED,       BADREQUEST,      "challenge_expired",    "one-time challenge expired") \
    X(CHAL_USED,          BADREQUEST,      "challenge_used",       "one-time challenge already used") \
    X(CHAL_SUBJECT,       BADREQUEST,      "challenge_subject",    "request subject differs from the one bound to the challenge") \
    X(CHAL_SAN,           BADREQUEST,      "challenge_san",        "request subjectAltNames differ from the ones bound to the challenge") \
    X(CHAL_PROFILE,       BADREQUEST,      "challenge_profile",    "one-time challenge was issued for another profile") \
    X(REQUEST_DENIED,     BADREQUEST,      "request_denied",       "the request was denied by an administrator") \
    X(MDM_DENIED,         BADREQUEST,      "mdm_denied",           "the MDM (Intune or webhook) refused the request") \
    X(MDM_UNAVAILABLE,    BADREQUEST,      "mdm_unavailable",      "the MDM service could not be reached, failed or answered unreadably") \
    X(MDM_TIMEOUT,        BADREQUEST,      "mdm_timeout",          "the MDM service did not answer in time") \
    X(MDM_NOTIFY,         BADREQUEST,      "mdm_notify_failed",    "Intune did not acknowledge the issued certificate; it was revoked") \
    X(INTERNAL,           BADREQUEST,      "internal_error",       "internal error while processing the request")

enum scep_reject {
#define X(name, fi, diag, text) REJ_##name,
    SCEP_REJECTS(X)
#undef X
    REJ__COUNT
};

int reject_failinfo(int rej);       /* SCEP_FAIL_* or SCEP_FAIL_NONE */
const char *reject_diag(int rej);   /* stable machine code for audit events */
const char *reject_text(int rej);   /* human text, also sent as failInfoText */

#endif
