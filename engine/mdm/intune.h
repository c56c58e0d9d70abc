/* intune: the client of Microsoft Intune's SCEP validation API for third-party CAs, on the
 * stage thread of validate.h (the public calls are mdm_submit with MDM_INTUNE,
 * mdm_notify_success / mdm_notify_failure and mdm_revocations_*).
 *
 * Wire contract (Microsoft's "Use APIs to add third-party CAs for SCEP to Intune" and the
 * reference library microsoft/Intune-Resource-Access src/CsrValidation; README.md has the
 * details):
 *  1. Token: POST {login_url}/{tenant}/oauth2/v2.0/token, form grant_type=client_credentials,
 *     client_id, client_secret (or, with a certificate credential, client_assertion_type =
 *     urn:ietf:params:oauth:client-assertion-type:jwt-bearer and client_assertion = a JWT
 *     signed with the app's certificate key: intune_cred.c), scope = {resource}/.default (resource
 *     "https://api.manage.microsoft.com/", hence the documented "//.default"); answer
 *     {"access_token", "expires_in" (number or string), "token_type"}. Cached; renewed
 *     refresh_margin before it expires (in the background while still valid), dropped on a
 *     401 from a service (one re-authentication per call).
 *  2. Discovery: GET {graph_url}/v1.0/servicePrincipals/appId={intune_app_id}/endpoints with a
 *     Graph token (scope graph_scope); {"value": [{"providerName": ..., "uri": ...}]}
 *     ("serviceName" of the older Azure AD Graph is accepted too). Cached; forgotten when a
 *     service cannot be reached or answers 404 (one rediscovery per call). validation_url /
 *     pki_url in the configuration skip it.
 *  3. ScepRequestValidationFEService, header api-version: 2018-02-20:
 *     POST ScepActions/validateRequest  {"request": {transactionId, certificateRequest,
 *       callerInfo}}
 *     POST ScepActions/successNotification {"notification": {transactionId,
 *       certificateRequest, certificateThumbprint, certificateSerialNumber,
 *       certificateExpirationDateUtc, issuingCertificateAuthority, callerInfo,
 *       caConfiguration ([intune] ca_configuration), certificateAuthority (the issuer's CN)}}
 *     POST ScepActions/failureNotification {"notification": {transactionId,
 *       certificateRequest, hResult, errorDescription, callerInfo}}
 *     each answered {"code": "Success" | <error code>, "errorDescription": ...}.
 *  4. PkiConnectorFEService, api-version: 5019-05-05 (sic, as the reference library sends):
 *     POST CertificateAuthorityRequests/downloadRevocationRequests {"downloadParameters":
 *       {maxRequests, issuerName}} -> {"value": [{requestContext, serialNumber, issuerName,
 *       caConfiguration}]}
 *     POST CertificateAuthorityRequests/uploadRevocationResults {"results": [{requestContext,
 *       succeeded, errorCode (by name: "None", "CertificateNotFoundError", ...), errorMessage
 *       (null when succeeded)}]} -> {"value": true} (or "true")
 * Every service call carries Authorization: Bearer, client-request-id (a fresh UUID, the
 * activity ID to quote to Microsoft), api-version and UserAgent (the provider string).
 */
#ifndef SCEPD_MDM_INTUNE_H
#define SCEPD_MDM_INTUNE_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "engine/mdm/mdm_config.h"
#include "engine/mdm/validate.h"

/* The codes validateRequest answers (the reference library's ErrorCode list). A code not in
 * this list is still a refusal, reported as is. */
#define INTUNE_CODES(X) \
    X(Success) X(CertificateRequestDecodingFailed) X(ChallengePasswordMissing) \
    X(ChallengeDeserializationError) X(ChallengeDecryptionError) X(ChallengeDecodingError) \
    X(ChallengeInvalidTimestamp) X(ChallengeExpired) X(SubjectNameMissing) \
    X(SubjectNameMismatch) X(SubjectAltNameMissing) X(SubjectAltNameMismatch) \
    X(KeyUsageMismatch) X(KeyLengthMismatch) X(EnhancedKeyUsageMissing) \
    X(EnhancedKeyUsageMismatch) X(AadKeyIdentifierListMissing) X(RegisteredKeyMismatch) \
    X(SigningCertThumbprintMismatch) X(ScepProfileNoLongerTargetedToTheClient) \
    X(SignatureValidationFailed) X(BadCertificateRequestIdInChallenge) \
    X(BadDeviceIdInChallenge) X(BadUserIdInChallenge)

/* 1 when code is one of INTUNE_CODES. */
int intune_code_known(const char *code);

/* The facts successNotification reports about a certificate: SHA-1 thumbprint (40 upper-case
 * hex digits), serial (upper-case hex, as Windows shows it), notAfter as
 * "YYYY-MM-DDThh:mm:ss.000Z" and the issuer DN (RFC 2253). 0 or -1 (not a certificate). */
typedef struct intune_cert_facts {
    char thumbprint[41];
    char serial[2 * 20 + 3];
    char expiry[32];
    char issuer[512];
    char issuer_cn[512];   /* the issuer's commonName (certificateAuthority); the DN if none */
} intune_cert_facts;
int intune_cert_facts_get(const uint8_t *der, size_t len, intune_cert_facts *out);
/* The same from a certificate already parsed (or just built): no decoding. Any thread. */
int intune_cert_facts_of(X509 *cert, intune_cert_facts *out);

/* mdm_notify_success with the certificate's facts already taken (intune_cert_facts_of on the
 * worker that built it and holds its X509): the stage thread does not parse the DER again
 * (in OpenSSL 3 d2i_X509 decodes the public key through the provider machinery). facts is
 * copied. Returns as mdm_notify_success. */
int mdm_notify_success_facts(mdm_stage *s, const char *txid, const uint8_t *csr_der,
                             size_t csr_len, const intune_cert_facts *facts, mdm_done_fn done,
                             void *arg);

/* Loads and tries the certificate credential of c ([intune] client_certificate with
 * client_key, or client_key_label with c->client_token_key set): 0 when there is none or it
 * signs; -errno with why filled otherwise. For the owner, before mdm_stage_create (which
 * only says -EINVAL). */
int intune_cred_check(const mdm_config *c, char *why, size_t whylen);

/* Copies at most 255 bytes of src into dst (256 bytes), cut at a UTF-8 character boundary,
 * control characters replaced by spaces. */
void intune_description(char dst[256], const char *src);

#endif
