/* mdm_config: the configuration of the MDM validation stage (docs in README.md here).
 *
 * Its own INI file (the main configuration names it; see README.md "Wiring"), in the syntax
 * of engine/common/config.h (values parsed by config_parse_value), with four sections:
 *
 *   [mdm]      max_in_flight = 256       requests admitted at once (mdm_submit: -EAGAIN past it)
 *              timeout = 10s             per HTTP attempt (connect included)
 *              connect_timeout = 3s
 *              retries = 2               further attempts after a transport error, 5xx or 429
 *              retry_backoff = 200ms     first pause; doubled per attempt, +-25 % jitter
 *              max_connections = 32      libcurl's pool of reusable connections
 *   [intune]   tenant = contoso.onmicrosoft.com (or the tenant GUID)
 *              client_id = <Entra application ID>
 *              client_secret_file = intune.secret
 *                 or client_certificate = app.pem and client_key = app.key (a PEM file) or
 *                    client_key_label = intune-app (a key on scepd's PKCS#11 token)
 *              client_assertion_alg = PS256 | RS256   (RS256 for a token key: the token's
 *                                        provider signs PKCS#1 v1.5 only)
 *              provider = "scepd/1.0"    callerInfo and the UserAgent header
 *              login_url = https://login.microsoftonline.com
 *              graph_url = https://graph.microsoft.com
 *              graph_scope = https://graph.microsoft.com/.default
 *              resource = https://api.manage.microsoft.com/   (scope: resource + "/.default")
 *              intune_app_id = 0000000a-0000-0000-c000-000000000000
 *              validation_url =          ScepRequestValidationFEService base; empty: discovered
 *              pki_url =                 PkiConnectorFEService base; empty: discovered
 *              refresh_margin = 5m       a token is renewed this long before it expires
 *              ca_file =                 PEM bundle for TLS; empty: the system store
 *              ca_configuration = "scepd"   successNotification's caConfiguration
 *              revocation_poll_interval = 0   how often Intune's revocation requests are
 *                                        fetched and carried out (15m, ...); 0: never
 *   [webhook]  url = https://mdm.example/scep-check
 *              secret_file = webhook.secret   HMAC-SHA256 key (whole file, trailing CR/LF cut)
 *              ca_file = webhook-ca.pem       PEM bundle the webhook's certificate must chain to
 *              signature_header = X-Scepd-Signature
 *   [ndes]     ttl = 60m                 lifetime of a challenge minted for the NDES page
 *              encoding = utf-16le | utf-8
 *              ca_name = "scepd"         the CA name the page shows
 *              users_file = ndes.users   who may fetch the page (HTTP Basic): "name:password"
 *                                        lines, '#' comments; empty: the page is off (404)
 *              profile = ndes            the profile (challenge = onetime) it mints for
 *
 * URLs must be https://, except http:// to a loopback host (127.0.0.1, ::1, localhost): the
 * emulators of the tests. Unknown sections or keys are errors, as in the main file.
 */
#ifndef SCEPD_MDM_CONFIG_H
#define SCEPD_MDM_CONFIG_H

#include <stddef.h>

#define MDM_URL_MAX     512
#define MDM_SECRET_MAX  512

enum mdm_ndes_encoding { MDM_NDES_UTF16LE = 0, MDM_NDES_UTF8 = 1 };

/* Plain data; secrets inline (cleanse with mdm_config_cleanse when done). */
typedef struct mdm_config {
    /* [mdm] */
    int    max_in_flight;
    int    timeout_ms;
    int    connect_timeout_ms;
    int    retries;
    int    retry_backoff_ms;
    int    max_connections;
    /* [intune]: enabled when tenant is set */
    char   tenant[128];
    char   client_id[64];
    char   client_secret[MDM_SECRET_MAX];      /* read from client_secret_file */
    size_t client_secret_len;
    /* ... or a certificate credential (a client_assertion JWT; intune.h): */
    char   client_certificate[1024];          /* the certificate registered with the app */
    char   client_key[1024];                  /* its PEM private key file, or: */
    char   client_key_label[64];              /* the label of its key on scepd's token */
    char   client_assertion_alg[8];           /* "PS256" (default) or "RS256" */
    void  *client_token_key;                  /* not from the file: the EVP_PKEY of
                                                 client_key_label, loaded by the owner (the
                                                 server, from its token) before
                                                 mdm_stage_create and freed after
                                                 mdm_stage_destroy */
    char   provider[128];
    char   login_url[MDM_URL_MAX];
    char   graph_url[MDM_URL_MAX];
    char   graph_scope[MDM_URL_MAX];
    char   resource[MDM_URL_MAX];
    char   intune_app_id[64];
    char   validation_url[MDM_URL_MAX];
    char   pki_url[MDM_URL_MAX];
    int    refresh_margin_ms;
    char   intune_ca_file[1024];
    int    revocation_poll_ms;                /* 0: no revocation sync */
    char   ca_configuration[128];             /* successNotification's caConfiguration */
    /* [webhook]: enabled when url is set */
    char   webhook_url[MDM_URL_MAX];
    unsigned char webhook_secret[MDM_SECRET_MAX];   /* read from secret_file */
    size_t webhook_secret_len;
    char   webhook_ca_file[1024];
    char   signature_header[64];
    /* [ndes] */
    int    ndes_ttl_s;
    int    ndes_encoding;                     /* enum mdm_ndes_encoding */
    char   ndes_ca_name[128];
    char   ndes_users_file[1024];             /* Basic-auth users ("name:password" lines);
                                                 empty: no NDES page */
    char   ndes_profile[64];                  /* the one-time-challenge profile the page
                                                 mints for */
} mdm_config;

/* Fills *c with the defaults above (Intune and webhook disabled). */
void mdm_config_defaults(mdm_config *c);

/* Parses text (len bytes) over *c; base_dir resolves relative file names (may be NULL).
 * Secret files are read here. Returns 0, or -1 with "line N: reason" in err (errlen bytes;
 * err may be NULL); on failure *c is unchanged. Cross-key rules checked at the end: Intune
 * needs tenant, client_id and one credential (a secret, or a certificate with a key file or
 * a key label; PS256 not with a label); the webhook needs a secret. */
int mdm_config_parse(mdm_config *c, const char *text, size_t len, const char *base_dir,
                     char *err, size_t errlen);

/* Reads and parses a file (defaults first; relative names against its directory).
 * Returns 0, or -1 with err set; *c is written only on success. */
int mdm_config_load(mdm_config *c, const char *path, char *err, size_t errlen);

/* 1 when a section is configured. */
int mdm_config_intune_enabled(const mdm_config *c);
int mdm_config_webhook_enabled(const mdm_config *c);

/* Overwrites the secrets in *c. */
void mdm_config_cleanse(mdm_config *c);

/* 1 when url is https://, or http:// to a loopback host; 0 otherwise. */
int mdm_url_allowed(const char *url);

#endif
