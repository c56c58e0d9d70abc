/* Every reason scepd refuses a parsed pkiMessage, in one table: the failInfo the CertRep
 * carries, the audit diagnostic code, and the failInfoText / log text. */
#ifndef SCEPD_REJECT_H
#define SCEPD_REJECT_H

#include "engine/scep.h"

/*  X(name,              failInfo,        diag code,              text) */
#define SCEP_REJECTS(X) \
    X(NONE,               NONE,            "ok",                   "no error") \
    X(NOT_PKIMESSAGE,     NONE,            "not_pkimessage",       "body is not a SCEP pkiMessage") \
    X(MISSING_ATTR,       BADREQUEST,      "missing_attribute",    "transactionID, senderNonce or messageType missing or malformed") \
    X(NO_SIGNER_CERT,     BADREQUEST,      "no_signer_cert",       "signer certificate not included") \
    X(SIG_DIGEST,         BADALG,          "digest_not_allowed",   "signature digest algorithm not allowed") \
    X(BAD_SIGNATURE,      BADMESSAGECHECK, "bad_signature",        "pkiMessage signature does not verify") \
    X(UNKNOWN_TYPE,       BADREQUEST,      "unknown_message_type", "messageType not supported") \
    X(NO_ENVELOPE,        BADREQUEST,      "no_envelope",          "pkcsPKIEnvelope missing or not an EnvelopedData") \
    X(CIPHER,             BADALG,          "cipher_not_allowed",   "content-encryption algorithm not allowed (AES-CBC or DES3 only)") \
    X(DECRYPT,            BADMESSAGECHECK, "decrypt_failed",       "pkcsPKIEnvelope does not decrypt with the RA key") \
    X(BAD_CSR,            BADREQUEST,      "bad_csr",              "PKCS#10 request does not parse") \
    X(CSR_SIG_ALG,        BADALG,          "csr_alg_not_allowed",  "PKCS#10 signature algorithm not allowed") \
    X(POP,                BADMESSAGECHECK, "pop_failed",           "PKCS#10 signature (proof of possession) does not verify") \
    X(KEY_TYPE,           BADALG,          "key_not_allowed",      "key type or size not allowed (RSA 2048-4096, EC P-256/P-384)") \
    X(EMPTY_SUBJECT,      BADREQUEST,      "empty_subject",        "request has neither a subject nor a subjectAltName") \
    X(CA_REQUESTED,       BADREQUEST,      "ca_requested",         "a CA certificate was requested (basicConstraints CA:TRUE)") \
    X(SAN_TYPE,           BADREQUEST,      "san_not_allowed",      "subjectAltName type not allowed (DNS, email, URI, UPN)") \
    X(NO_CHALLENGE_SET,   BADREQUEST,      "enrollment_disabled",  "initial enrollment needs a challenge and none is configured") \
    X(CHALLENGE,          BADREQUEST,      "bad_challenge",        "challenge password missing or wrong") \
    X(TXID_CONFLICT,      BADREQUEST,      "txid_conflict",        "transactionID already used with another request") \
    X(RENEW_SIGNER,       BADREQUEST,      "renewal_signer",       "renewal must be signed by a certificate this CA issued") \
    X(RENEW_UNKNOWN,      BADREQUEST,      "renewal_unknown_cert", "renewal signer certificate is not in the store") \
    X(RENEW_EXPIRED,      BADTIME,         "renewal_expired",      "renewal signer certificate has expired or is not yet valid") \
    X(RENEW_REVOKED,      BADREQUEST,      "renewal_revoked",      "renewal signer certificate is revoked") \
    X(CA_EXPIRED,         BADTIME,         "ca_expired",           "the CA certificate has expired") \
    X(UNKNOWN_TXN,        BADCERTID,       "unknown_transaction",  "no certificate for this transaction") \
    X(UNKNOWN_CERT,       BADCERTID,       "unknown_certificate",  "no certificate with this issuer and serial") \
    X(BAD_QUERY,          BADREQUEST,      "bad_query",            "GetCert/CertPoll content does not parse") \
    X(NO_CRL,             BADREQUEST,      "no_crl",               "no CRL has been published yet") \
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
