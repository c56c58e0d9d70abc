/* intune_cred: the Entra certificate credential, a client_assertion JWT instead of a client
 * secret (Microsoft identity platform, "certificate credentials"; RFC 7523 section 2.2 and
 * RFC 7515):
 *   header  {"alg":"PS256","typ":"JWT","x5t#S256":<base64url SHA-256 of the certificate DER>}
 *        or {"alg":"RS256","typ":"JWT","x5t":<base64url SHA-1 of it>} (the older form)
 *   claims  {"aud": the token endpoint URL, "iss": client_id, "sub": client_id,
 *            "jti": a fresh UUID, "nbf" and "iat": now, "exp": now + 10 minutes}
 *   signature over base64url(header) "." base64url(claims): RSASSA-PSS SHA-256 (MGF1
 *            SHA-256, salt 32 bytes, RFC 7518 section 3.5) or RSASSA-PKCS1-v1_5 SHA-256.
 * The key is a PEM file, or an EVP_PKEY the owner loaded from its PKCS#11 token through the
 * scepd-hsm provider (client_key_label; the provider signs PKCS#1 v1.5 only, hence RS256).
 * Loaded at intune_state_create; an assertion is signed per token request, on the stage
 * thread (once an hour or so: the tokens are cached). */
#include "engine/mdm/intune.h"
#include "engine/mdm/intune_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define ASSERTION_LIFE_S 600

struct intune_cred {
    EVP_PKEY *key;
    int       pss;           /* PS256; else RS256 */
    char      header[160];   /* base64url of the header JSON */
};

/* base64url without padding (RFC 7515 section 2) of n bytes; caller frees. */
static char *b64url(const uint8_t *b, size_t n)
{
    char *s = mdm_base64(b, n);
    if (s == NULL)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (s[i] == '=')
            break;
        s[j++] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    }
    s[j] = '\0';
    return s;
}

static char *b64url_str(const char *s)
{
    return b64url((const uint8_t *)s, strlen(s));
}

static X509 *read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    EVP_PKEY *k = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f != NULL)
        fclose(f);
    return k;
}

/* The header (base64url) with the certificate's thumbprint. 0 or -1. */
static int make_header(intune_cred *cr, X509 *cert)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *thumb = NULL, *json = NULL, *enc = NULL;
    int rc = -1;
    if (!X509_digest(cert, cr->pss ? EVP_sha256() : EVP_sha1(), md, &mdlen) ||
        (thumb = b64url(md, mdlen)) == NULL)
        goto out;
    json_t *h = json_pack("{s:s,s:s,s:s}", "alg", cr->pss ? "PS256" : "RS256", "typ", "JWT",
                          cr->pss ? "x5t#S256" : "x5t", thumb);
    json = h != NULL ? json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(h);
    if (json == NULL || (enc = b64url_str(json)) == NULL || strlen(enc) >= sizeof(cr->header))
        goto out;
    snprintf(cr->header, sizeof(cr->header), "%s", enc);
    rc = 0;
out:
    free(thumb);
    free(json);
    free(enc);
    return rc;
}

int intune_cred_load(const mdm_config *c, intune_cred **out, char *why, size_t whylen)
{
    intune_cred *cr = calloc(1, sizeof(*cr));
    X509 *cert = NULL;
    int rc = -EINVAL;
    if (cr == NULL) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    cr->pss = strcmp(c->client_assertion_alg, "RS256") != 0;
    if ((cert = read_cert(c->client_certificate)) == NULL) {
        snprintf(why, whylen, "client_certificate %s: not a PEM certificate", c->client_certificate);
        goto out;
    }
    if (c->client_key_label[0] != '\0') {
        if ((cr->key = c->client_token_key) == NULL || !EVP_PKEY_up_ref(cr->key)) {
            cr->key = NULL;
            snprintf(why, whylen, "client_key_label %s: no token key given", c->client_key_label);
            goto out;
        }
    } else if ((cr->key = read_key(c->client_key)) == NULL) {
        snprintf(why, whylen, "client_key %s: not a PEM private key", c->client_key);
        goto out;
    }
    if (EVP_PKEY_get_base_id(cr->key) != EVP_PKEY_RSA ||
        EVP_PKEY_eq(X509_get0_pubkey(cert), cr->key) != 1) {
        snprintf(why, whylen, "the client key is not the RSA key of client_certificate");
        goto out;
    }
    if (make_header(cr, cert) != 0) {
        snprintf(why, whylen, "cannot build the assertion header");
        goto out;
    }
    rc = 0;
out:
    X509_free(cert);
    if (rc == 0)
        *out = cr;
    else
        intune_cred_free(cr);
    return rc;
}

void intune_cred_free(intune_cred *cr)
{
    if (cr == NULL)
        return;
    EVP_PKEY_free(cr->key);
    free(cr);
}

/* The signature (base64url) over input. NULL on error. */
static char *sign(intune_cred *cr, const char *input)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char *sig = NULL;
    size_t len = 0;
    char *out = NULL;
    if (ctx == NULL || EVP_DigestSignInit(ctx, &pctx, EVP_sha256(), NULL, cr->key) != 1)
        goto done;
    if (cr->pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
                    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
                    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1))
        goto done;
    if (EVP_DigestSign(ctx, NULL, &len, (const unsigned char *)input, strlen(input)) != 1 ||
        (sig = malloc(len)) == NULL ||
        EVP_DigestSign(ctx, sig, &len, (const unsigned char *)input, strlen(input)) != 1)
        goto done;
    out = b64url(sig, len);
done:
    free(sig);
    EVP_MD_CTX_free(ctx);
    return out;
}

char *intune_cred_assertion(intune_cred *cr, const char *client_id, const char *aud)
{
    char jti[37], *json = NULL, *claims = NULL, *input = NULL, *sig = NULL, *jwt = NULL;
    intune_uuid_v4(jti);
    json_int_t now = (json_int_t)time(NULL);
    json_t *c = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I}", "aud", aud, "iss", client_id,
                          "sub", client_id, "jti", jti, "nbf", now, "iat", now, "exp",
                          now + ASSERTION_LIFE_S);
    json = c != NULL ? json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(c);
    if (json == NULL || (claims = b64url_str(json)) == NULL ||
        asprintf(&input, "%s.%s", cr->header, claims) < 0) {
        input = NULL;
        goto out;
    }
    if ((sig = sign(cr, input)) == NULL || asprintf(&jwt, "%s.%s", input, sig) < 0)
        jwt = NULL;
out:
    free(json);
    free(claims);
    free(input);
    free(sig);
    return jwt;
}

int intune_cred_check(const mdm_config *c, char *why, size_t whylen)
{
    intune_cred *cr = NULL;
    if (!mdm_config_intune_enabled(c) || c->client_certificate[0] == '\0')
        return 0;
    int rc = intune_cred_load(c, &cr, why, whylen);
    char *probe = rc == 0 ? intune_cred_assertion(cr, c->client_id, "probe") : NULL;
    if (rc == 0 && probe == NULL) {
        snprintf(why, whylen, "the client key cannot sign a %s assertion",
                 c->client_assertion_alg);
        rc = -EINVAL;
    }
    free(probe);
    intune_cred_free(cr);
    return rc;
}
