/* webhook: the generic challenge webhook (the step-ca model), on the stage thread of
 * validate.h (mdm_submit with MDM_WEBHOOK).
 *
 * Request: POST {url}, Content-Type: application/json, body (compact JSON, keys in this order):
 *   {"version":1, "id":"<32 hex: random, unique per call, for replay detection>",
 *    "timestamp":<unix seconds>, "transactionId":"...", "profile":"...", "challenge":"...",
 *    "csr":"<base64 of the PKCS#10 DER>", "subject":"<RFC 2253>",
 *    "subjectAltNames":["dns:host", "uri:...", ...], "peer":"ip:port"}
 * (absent facts are JSON null; subjectAltNames is [] when none.)
 * Signature header (name configurable, default X-Scepd-Signature):
 *   X-Scepd-Signature: t=<timestamp>,v1=<hex HMAC-SHA256>
 * where the HMAC key is the shared secret (the secret file's bytes, trailing CR/LF removed)
 * and the signed bytes are exactly: the decimal timestamp, one '.', the body bytes as sent.
 * The receiver recomputes it, compares in constant time, and should refuse a timestamp more
 * than a few minutes off or an id it has seen. A retry resends the same body and signature.
 *
 * Answer: HTTP 200 with {"allow": true} or {"allow": false, "reason": "...", "code": "..."}
 * ("reason" and "code" optional, go to the audit event). Any other status is an error (5xx
 * and 429 retried); no redirects are followed. TLS: the webhook's certificate must chain to
 * ca_file (or the system store when it is empty) and match the URL's host.
 */
#ifndef SCEPD_MDM_WEBHOOK_H
#define SCEPD_MDM_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

/* Writes the 64 lower-case hex digits of HMAC-SHA256(key, "<t>." || body) and a NUL.
 * 0 or -1. */
int webhook_sign(const uint8_t *key, size_t keylen, long long t, const char *body, size_t len,
                 char out[65]);

#endif
