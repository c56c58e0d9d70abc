/* scepd configuration: parsed once at start, immutable afterwards (the only global state).
 *
 * File format (INI-style, documented in docs/configuration.md and conf/scepd.conf.example):
 *   # comment            ; comment
 *   [section]
 *   key = value          (whitespace around key and value is trimmed; value may be "quoted")
 * Unknown sections or keys are errors (typos must not silently fall back to defaults).
 * Relative paths are resolved against the directory of the configuration file.
 */
#ifndef SCEPD_CONFIG_H
#define SCEPD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_PATH_MAX 1024

enum config_key_mode { CONFIG_KEYS_PKCS11 = 0, CONFIG_KEYS_FILE = 1 };

typedef struct config {
    /* [server] */
    char     listen_host[64];     /* listen = 127.0.0.1:8080 (host:port, [v6]:port)   */
    uint16_t listen_port;
    int      shards;              /* shards = 0 -> number of online CPUs              */
    int      workers;             /* crypto_workers = 0 -> number of online CPUs      */
    size_t   max_url;             /* max_url = 65534                                  */
    size_t   max_header;          /* max_header = 16384 (header block after the URL)  */
    size_t   max_body;            /* max_body = 262144                                */
    int      header_timeout_ms;   /* header_timeout = 10s                             */
    int      idle_timeout_ms;     /* idle_timeout = 60s                               */
    int      max_conns;           /* max_connections = 4096 (per shard)               */
    int      queue_max;           /* queue_max = 0 -> 100 per crypto worker: requests
                                     admitted to the workers and not yet answered      */
    int      request_timeout_ms;  /* request_timeout = 10s: a queued request older than
                                     this is dropped (503) before its next private-key
                                     operation                                        */
    int      yield_to_workers;    /* yield_to_workers = yes: every thread but the crypto
                                     workers and the audit writer runs SCHED_BATCH, so
                                     its wake-ups do not preempt a private-key operation
                                     (main.c)                                          */
    char     state_dir[CONFIG_PATH_MAX];   /* state_dir = .                           */
    char     audit_log[CONFIG_PATH_MAX];   /* audit_log = "-" (stdout) or a path      */
    char     mdm_config[CONFIG_PATH_MAX];  /* mdm_config = mdm.conf: the MDM validation
                                              stage's own file (engine/mdm/mdm_config.h,
                                              docs/mdm.md); empty: no stage             */

    /* [keys] */
    enum config_key_mode key_mode;         /* mode = pkcs11 | file                    */
    char     pkcs11_module[CONFIG_PATH_MAX];
    char     token_label[64];
    char     pin_file[CONFIG_PATH_MAX];    /* or env SCEPD_PIN when empty             */
    char     module_env[CONFIG_PATH_MAX];  /* NAME=VALUE set before the module loads,
                                              e.g. SOFTHSM2_CONF=/path/softhsm2.conf   */
    char     ca_key_label[64];
    char     ra_key_label[64];
    char     ca_key_file[CONFIG_PATH_MAX]; /* file mode: PEM private keys             */
    char     ra_key_file[CONFIG_PATH_MAX];
    char     ca_cert[CONFIG_PATH_MAX];     /* PEM or DER                              */
    char     ra_cert[CONFIG_PATH_MAX];     /* empty: the CA key decrypts and signs    */

    /* [store] */
    char     store_path[CONFIG_PATH_MAX];  /* directory of the LMDB environment       */
    size_t   store_map_size;               /* initial map size; grows on MDB_MAP_FULL */
    int      batch_max;                    /* group-commit batch size cap (256)       */
    char     store_backend[16];            /* backend = lmdb (default) | postgresql   */
    char     store_conninfo[CONFIG_PATH_MAX - 16]; /* conninfo = libpq connection string
                                              (postgresql); config_parse then sets
                                              store_path to "postgresql:" CONNINFO, the
                                              location store_open takes (docs/ha.md)  */

    /* [issue] */
    int      validity_days;                /* validity = 365                          */
    int      backdate_s;                   /* notBefore = now - backdate (300)        */
    char     challenge[256];               /* static challenge password               */
    char     challenge_file[CONFIG_PATH_MAX]; /* alternative to challenge =           */
    int      allow_sha1;                   /* allow_sha1 = no: SHA-1 on CSRs          */
    int      allow_sha1_messages;          /* allow_sha1_messages = no: SHA-1 on the
                                              pkiMessage signature only              */
    char     crl_url[512];                 /* CDP URI in issued certs; empty: none    */
    char     ocsp_url[512];                /* AIA OCSP URI in issued certs; empty: none */
    char     profiles_dir[CONFIG_PATH_MAX]; /* profiles_dir = profiles: one <name>.conf per
                                              profile (docs/profiles.md); a missing
                                              directory means the built-in "default" only */

    /* [crl] */
    int      crl_validity_s;               /* validity = 24h: nextUpdate - thisUpdate */
    int      crl_rebuild_delay_ms;         /* rebuild_delay = 2s: coalesces revocations */
    char     crl_file[CONFIG_PATH_MAX];    /* file = crl/ca.crl (under state_dir when
                                              relative): last good CRL, served at start */

    /* [ocsp] */
    char     ocsp_cert[CONFIG_PATH_MAX];   /* delegated responder cert; empty: no /ocsp */
    char     ocsp_key_label[64];           /* key_label = ocsp (pkcs11 mode)          */
    char     ocsp_key_file[CONFIG_PATH_MAX]; /* file mode: PEM private key            */
    int      ocsp_validity_s;              /* validity = 1h: nextUpdate of responses  */
    int      ocsp_nonce;                   /* nonce = yes: echo a request nonce (then
                                              the response is signed per request)    */

    /* [admin] */
    char     admin_token_file[CONFIG_PATH_MAX]; /* bearer token for /admin/...; empty:
                                              the admin API is disabled (404)        */
    char     admin_listen_host[64];        /* listen = 127.0.0.1:8081: the admin listener
                                              (/admin/..., /metrics, /healthz); "none":
                                              none (host left empty)                 */
    uint16_t admin_listen_port;
    int      admin_auth_fail_max;          /* auth_fail_max = 5: failed bearer tokens
                                              from one address per window, then 429   */
    int      admin_auth_fail_window_s;     /* auth_fail_window = 60s                  */

    /* [tls] (docs/configuration.md, [tls]; docs/http.md, TLS) */
    char     tls_listen_host[64];          /* listen = 0.0.0.0:8443; empty (default): no
                                              HTTPS listener                         */
    uint16_t tls_listen_port;
    char     tls_cert[CONFIG_PATH_MAX];    /* PEM: server certificate, then its chain */
    char     tls_key[CONFIG_PATH_MAX];     /* PEM private key file (or key_label)      */
    char     tls_key_label[64];            /* key_label = tls: the key in the token     */
    char     tls_min_version[8];           /* min_version = 1.2 | 1.3                */
} config;

/* Fills *cfg with defaults (every field valid). */
void config_defaults(config *cfg);

/* Parses text (len bytes, need not be NUL-terminated) over the current contents of *cfg.
 * base_dir resolves relative paths (may be NULL: paths stay as written).
 * Returns 0, or -1 with a message "line N: reason" in err (errlen bytes, always terminated;
 * err may be NULL). On failure *cfg is left unchanged. */
int config_parse(config *cfg, const char *text, size_t len, const char *base_dir,
                 char *err, size_t errlen);

/* The value syntax shared by every INI-style file of scepd (this configuration, profiles):
 * extracts the value in [p, end) into out (outlen bytes, NUL-terminated). Quoted values keep
 * everything between the quotes (\" and \\ escape); unquoted values end at a '#' or ';'
 * that follows whitespace, may not contain '"', and lose trailing whitespace. Returns 0, or
 * -1 with a reason in why ("unterminated quote", "value too long", ...). */
int config_parse_value(const char *p, const char *end, char *out, size_t outlen, char *why,
                       size_t whylen);

/* Reads and parses a file (defaults first; relative paths against the real directory of the
 * file). Returns 0 or -1 with err set; *cfg is written only on success. */
int config_load(config *cfg, const char *path, char *err, size_t errlen);

/* SIGHUP (docs/operations.md "Reload"): the keys of [issue] that only shape the issued
 * certificates and the static challenges (validity_days, backdate, challenge,
 * challenge_file, allow_sha1, crl_url, ocsp_url, profiles_dir) take effect on reload; every
 * other key needs a restart. Writes the restart-only keys whose values differ between the
 * running configuration and next into out as "[section] key, ..." (outlen bytes, always
 * terminated; "" when none) and returns how many differ. */
int config_restart_changes(const config *running, const config *next, char *out,
                           size_t outlen);

/* Sets the environment variable named by module_env (NAME=VALUE) for the PKCS#11 module
 * (SoftHSM2 finds its tokens through SOFTHSM2_CONF). Call before loading the module.
 * Returns 0 (also when module_env is empty) or -1 when it is malformed. */
int config_apply_module_env(const config *cfg);

/* Reads the PIN from pin_file, or from env SCEPD_PIN when pin_file is empty. Trailing CR/LF
 * stripped; an empty PIN, a NUL byte or a PIN longer than pinlen - 1 is refused.
 * Returns 0 (pin NUL-terminated) or -1 with err set (err may be NULL). */
int config_read_pin(const config *cfg, char *pin, size_t pinlen, char *err, size_t errlen);

/* Erases SCEPD_PIN from the process: its bytes in the initial environment block (what
 * /proc/<pid>/environ shows) are overwritten, then the variable is removed. The server calls
 * it once the token is open (the token keeps the PIN in locked memory for re-login). */
void config_forget_pin_env(void);

/* Reads the challenge (challenge= or challenge_file=, trailing CR/LF stripped) into buf,
 * NUL-terminated. Returns its length (0 and "" when neither is set), or -1 when the file is
 * unreadable or empty, or the challenge does not fit buflen - 1 bytes. */
int config_read_challenge(const config *cfg, char *buf, size_t buflen);

/* Reads the admin bearer token (token_file, trailing CR/LF stripped; at least 16 bytes).
 * Returns its length, 0 when no token_file is set, or -1 (unreadable, too short or too long
 * for buflen - 1). */
int config_read_admin_token(const config *cfg, char *buf, size_t buflen);

/* Parses durations "30", "30s", "500ms", "10m", "2h", "7d" into milliseconds; -1 if bad. */
long long config_parse_duration_ms(const char *s);

/* Parses sizes "1024", "256k", "256KiB", "16m", "1g" into bytes; returns 0 or -1. */
int config_parse_size(const char *s, size_t *out);

#endif
