/* scepctl: administration of a scepd installation, reading the same configuration file.
 *
 *   scepctl -c CONF init [--ca-subject DN] [--ca-key SPEC] [--ra-subject DN] [--no-ra]
 *                        [--days N]
 *   scepctl -c CONF cert list [--revoked]
 *   scepctl -c CONF cert show SERIAL
 *   scepctl -c CONF cert count
 *   scepctl -c CONF revoke SERIAL [--reason NAME] [--invalidity-date EPOCH_SECONDS]
 *   scepctl -c CONF challenge new --profile P [--ttl 60m] [--subject DN] [--san LIST]
 *   scepctl -c CONF request list [--all]
 *   scepctl -c CONF request approve|deny TXID
 *   scepctl -c CONF crl bench N        (not in the usage text: CRL build+sign timing)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "engine/common/audit.h"
#include "engine/pki/ca.h"
#include "engine/policy/challenge.h"
#include "engine/common/config.h"
#include "engine/common/hex.h"
#include "engine/ctl/ctl_cert.h"
#include "engine/pki/crl.h"
#include "engine/pki/serial.h"
#include "engine/ctl/ctl_ca.h"
#include "engine/enroll/pending.h"
#include "engine/enroll/record.h"
#include "engine/policy/issue.h"
#include "engine/policy/profile.h"
#include "engine/store/store.h"
#include "hsm/hsm.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: scepctl -c CONF COMMAND\n"
            "  init [--ca-subject DN] [--ca-key rsa:2048|rsa:3072|rsa:4096|ec:P-256|ec:P-384]\n"
            "       [--ra-subject DN] [--no-ra] [--days N]\n"
            "       create the CA key (in the token, or a PEM file in file mode), a self-signed\n"
            "       CA certificate, the RA key and RA certificate, and the store\n"
            "       with [ocsp] cert set, also the OCSP responder key ([ocsp] key_label in the\n"
            "       token, or key_file) and its certificate (id-kp-OCSPSigning, ocsp-nocheck)\n"
            "  cert list [--revoked]  issued certificates: serial, status, notAfter, subject;\n"
            "                      --revoked: revocations: serial, time, reason, who, subject\n"
            "  cert show SERIAL    one certificate (text and PEM)\n"
            "  cert count          number of issued certificates\n"
            "  revoke SERIAL [--reason NAME] [--invalidity-date EPOCH_SECONDS]\n"
            "       revoke a certificate (idempotent). NAME: unspecified, keyCompromise,\n"
            "       cACompromise, affiliationChanged, superseded, cessationOfOperation,\n"
            "       privilegeWithdrawn, aACompromise. scepd publishes a new CRL within seconds.\n"
            "  challenge new --profile P [--ttl 60m] [--subject /CN=x/O=y] [--san dns:a,upn:b@c]\n"
            "       a one-time challenge for profile P (challenge = onetime), printed alone on\n"
            "       stdout; --subject/--san bind the request to those names\n"
            "  request list [--all]  requests waiting for approval (--all: decided ones too)\n"
            "  request approve TXID  issue the certificate (the client gets it by CertPoll)\n"
            "  request deny TXID     refuse it (the client's CertPoll gets FAILURE)\n");
}

static int cmd_init(const config *cfg, int argc, char **argv)
{
    const char *ca_subject = "/CN=scepd CA", *ra_subject = NULL, *ca_spec = "rsa:2048";
    int days = 3650, with_ra = 1, rc = 1;
    hsm_token *tok = NULL;
    EVP_PKEY *ca_key = NULL, *ra_key = NULL;
    X509 *ca = NULL, *ra = NULL, *ocsp = NULL;
    X509_NAME *ca_dn = NULL, *ra_dn = NULL, *ocsp_dn = NULL;
    EVP_PKEY *ocsp_key = NULL;
    char pin[256], err[256], ra_default[300];

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--ca-subject") == 0 && i + 1 < argc)
            ca_subject = argv[++i];
        else if (strcmp(argv[i], "--ra-subject") == 0 && i + 1 < argc)
            ra_subject = argv[++i];
        else if (strcmp(argv[i], "--ca-key") == 0 && i + 1 < argc)
            ca_spec = argv[++i];
        else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc)
            days = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-ra") == 0)
            with_ra = 0;
        else {
            usage();
            return 2;
        }
    }
    if (ra_subject == NULL) {
        snprintf(ra_default, sizeof(ra_default), "%s RA", ca_subject);
        ra_subject = ra_default;
    }
    if (days <= 0 || (ca_dn = ctl_parse_dn(ca_subject)) == NULL || (ra_dn = ctl_parse_dn(ra_subject)) == NULL) {
        fprintf(stderr, "scepctl: bad subject or validity\n");
        goto out;
    }
    if (access(cfg->ca_cert, F_OK) == 0) {
        fprintf(stderr, "scepctl: %s exists: refusing to replace a CA\n", cfg->ca_cert);
        goto out;
    }
    if (with_ra && cfg->ra_cert[0] == '\0') {
        fprintf(stderr, "scepctl: [keys] ra_cert is not set (use --no-ra for a CA-only set-up)\n");
        goto out;
    }
    if (cfg->key_mode == CONFIG_KEYS_PKCS11) {
        if (config_read_pin(cfg, pin, sizeof(pin), err, sizeof(err)) != 0) {
            fprintf(stderr, "scepctl: %s\n", err);
            goto out;
        }
        int e = config_apply_module_env(cfg) != 0 ? -1
                : hsm_token_open(cfg->pkcs11_module, cfg->token_label, pin, &tok);
        OPENSSL_cleanse(pin, sizeof(pin));
        if (e != 0 || hsm_key_generate(tok, cfg->ca_key_label, ca_spec, &ca_key) != 0 ||
            (with_ra && hsm_key_generate(tok, cfg->ra_key_label, "rsa:2048", &ra_key) != 0)) {
            fprintf(stderr, "scepctl: token: %s\n", hsm_last_error());
            goto out;
        }
    } else {
        if ((ca_key = ctl_key_file_new(cfg->ca_key_file, ca_spec)) == NULL ||
            (with_ra && (ra_key = ctl_key_file_new(cfg->ra_key_file, "rsa:2048")) == NULL)) {
            fprintf(stderr, "scepctl: cannot create key files\n");
            goto out;
        }
    }
    ca = ctl_make_cert(ca_dn, ca_key, NULL, ca_key, days, CTL_CERT_CA);
    if (ca == NULL || ctl_write_certs(cfg->ca_cert, NULL, ca) != 0) {
        fprintf(stderr, "scepctl: cannot create the CA certificate\n");
        goto out;
    }
    if (with_ra) {
        ra = ctl_make_cert(ra_dn, ra_key, ca, ca_key, days, CTL_CERT_RA);
        if (ra == NULL || ctl_write_certs(cfg->ra_cert, NULL, ra) != 0) {
            fprintf(stderr, "scepctl: cannot create the RA certificate\n");
            goto out;
        }
    }
    if (cfg->ocsp_cert[0] != '\0') {
        char dn[400];
        snprintf(dn, sizeof(dn), "%s OCSP", ca_subject);
        int kr = -1;
        if ((ocsp_dn = ctl_parse_dn(dn)) != NULL) {
            if (cfg->key_mode == CONFIG_KEYS_PKCS11)
                kr = hsm_key_generate(tok, cfg->ocsp_key_label, "ec:P-256", &ocsp_key);
            else
                kr = (ocsp_key = ctl_key_file_new(cfg->ocsp_key_file, "ec:P-256")) != NULL ? 0 : -1;
        }
        if (kr != 0) {
            fprintf(stderr, "scepctl: cannot create the OCSP key: %s\n",
                    cfg->key_mode == CONFIG_KEYS_PKCS11 ? hsm_last_error() : cfg->ocsp_key_file);
            goto out;
        }
        ocsp = ctl_make_cert(ocsp_dn, ocsp_key, ca, ca_key, days, CTL_CERT_OCSP);
        if (ocsp == NULL || ctl_write_certs(cfg->ocsp_cert, NULL, ocsp) != 0) {
            fprintf(stderr, "scepctl: cannot create the OCSP responder certificate\n");
            goto out;
        }
    }
    store *s = NULL;
    int src = store_open(cfg->store_path, cfg->store_map_size, &s);
    store_close(s);
    if (src != 0) {
        fprintf(stderr, "scepctl: store %s: %s\n", cfg->store_path, store_strerror(src));
        goto out;
    }
    printf("CA certificate: %s\n", cfg->ca_cert);
    if (with_ra)
        printf("RA certificate: %s\n", cfg->ra_cert);
    if (ocsp != NULL)
        printf("OCSP responder certificate: %s\n", cfg->ocsp_cert);
    printf("store: %s\n", cfg->store_path);
    rc = 0;
out:
    /* The PKCS#11 module may leave OpenSSL errors of its own (SoftHSM's optional rdrand
     * engine): only a failure's errors are worth printing. */
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    X509_free(ca);
    X509_free(ra);
    X509_free(ocsp);
    X509_NAME_free(ca_dn);
    X509_NAME_free(ra_dn);
    X509_NAME_free(ocsp_dn);
    EVP_PKEY_free(ocsp_key);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(ra_key);
    hsm_token_close(tok);
    return rc;
}

static void iso_time(int64_t t, char *out, size_t outlen)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int list_one(const store_cert *c, void *arg)
{
    char when[32], sn[2 * STORE_SERIAL_LEN + 1];
    (void)arg;
    iso_time(c->not_after, when, sizeof(when));
    serial_to_hex(c->serial, sn);
    printf("%s  %-7s  %s  %.*s\n", sn, c->status == STORE_CERT_REVOKED ? "revoked" : "valid", when,
           (int)c->subject_len, c->subject);
    return 0;
}

/* One revocation: serial, time, reason, who, and the certificate's subject. */
static int list_revoked(const store_revocation *rv, void *arg)
{
    store_reader *r = arg;
    store_cert c;
    char when[32], sn[2 * STORE_SERIAL_LEN + 1];
    iso_time(rv->revoked_at, when, sizeof(when));
    int have = store_get_cert(r, rv->serial, &c) == STORE_OK;
    serial_to_hex(rv->serial, sn);
    printf("%s  %s  %-20s  %.*s  %.*s\n", sn, when, crl_reason_name(rv->reason), (int)rv->who_len,
           rv->who, have ? (int)c.subject_len : 1, have ? c.subject : "?");
    return 0;
}

static int cmd_cert(const config *cfg, int argc, char **argv)
{
    store *s = NULL;
    store_reader *r = NULL;
    int rc = 1, e;

    if (argc < 1) {
        usage();
        return 2;
    }
    if ((e = store_open(cfg->store_path, cfg->store_map_size, &s)) != 0 ||
        (e = store_reader_create(s, &r)) != 0 || (e = store_reader_begin(r)) != 0) {
        fprintf(stderr, "scepctl: store %s: %s\n", cfg->store_path, store_strerror(e));
        goto out;
    }
    if (strcmp(argv[0], "list") == 0 && argc == 2 && strcmp(argv[1], "--revoked") == 0) {
        e = store_foreach_revoked(r, list_revoked, r);
        rc = e != 0 ? 1 : 0;
    } else if (strcmp(argv[0], "list") == 0 && argc == 1) {
        e = store_foreach_cert(r, list_one, NULL);
        rc = e < 0 ? 1 : 0;
    } else if (strcmp(argv[0], "count") == 0) {
        size_t n = 0;
        if (store_count(r, &n) == 0) {
            printf("%zu\n", n);
            rc = 0;
        }
    } else if (strcmp(argv[0], "show") == 0 && argc == 2) {
        uint8_t serial[STORE_SERIAL_LEN];
        store_cert c;
        if (serial_parse(argv[1], serial) != 0) {
            fprintf(stderr, "scepctl: %s\n", SERIAL_RULE);
            rc = 2;
            goto out;
        }
        e = store_get_cert(r, serial, &c);
        if (e != STORE_OK) {
            fprintf(stderr, "scepctl: %s: %s\n", argv[1], e == STORE_NOTFOUND ? "not found" : store_strerror(e));
            goto out;
        }
        const unsigned char *p = c.der;
        X509 *x = d2i_X509(NULL, &p, (long)c.der_len);
        if (x == NULL)
            goto out;
        printf("status: %s\ntransaction: %.*s\nprofile: %.*s\n",
               c.status == STORE_CERT_REVOKED ? "revoked" : "valid", (int)c.txid_len, c.txid,
               (int)c.profile_len, c.profile);
        X509_print_fp(stdout, x);
        PEM_write_X509(stdout, x);
        X509_free(x);
        rc = 0;
    } else {
        usage();
        rc = 2;
    }
out:
    store_reader_destroy(r);
    store_close(s);
    return rc;
}

static void who_am_i(char *who, size_t len)
{
    const char *user = getenv("USER");
    snprintf(who, len, "scepctl uid=%u%s%s", (unsigned)getuid(), user ? " user=" : "",
             user ? user : "");
}

/* Revokes one certificate directly in the store (LMDB serialises this writer with scepd's;
 * scepd notices the new revocation generation and rebuilds its CRL). */
static int cmd_revoke(const config *cfg, int argc, char **argv)
{
    uint8_t serial[STORE_SERIAL_LEN];
    int reason = 0, rc = 1;
    long long inv = 0;
    char who[160], when[32];
    store *s = NULL;

    if (argc < 1 || serial_parse(argv[0], serial) != 0) {
        fprintf(stderr, "scepctl: revoke needs a serial: %s\n", SERIAL_RULE);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc) {
            if ((reason = crl_reason_from_name(argv[++i])) < 0) {
                fprintf(stderr, "scepctl: unknown reason '%s' (RFC 5280 names, e.g. keyCompromise)\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--invalidity-date") == 0 && i + 1 < argc) {
            char *end = NULL;
            inv = strtoll(argv[++i], &end, 10);
            if (end == argv[i] || *end != '\0' || inv <= 0) {
                fprintf(stderr, "scepctl: --invalidity-date takes seconds since the epoch\n");
                return 2;
            }
        } else {
            usage();
            return 2;
        }
    }
    who_am_i(who, sizeof(who));
    int e = store_open(cfg->store_path, cfg->store_map_size, &s);
    if (e != 0) {
        fprintf(stderr, "scepctl: store %s: %s\n", cfg->store_path, store_strerror(e));
        goto out;
    }
    store_put p;
    memset(&p, 0, sizeof(p));
    p.kind = STORE_PUT_REVOKE;
    memcpy(p.rev.serial, serial, sizeof(serial));
    p.rev.reason = reason;
    p.rev.revoked_at = (int64_t)time(NULL);
    p.rev.invalidity = (int64_t)inv;
    p.rev.who = who;
    p.rev.who_len = strlen(who);
    e = store_put_sync(s, &p);
    if (e != 0 || p.result < 0 || p.result == STORE_E_CORRUPT) {
        fprintf(stderr, "scepctl: revoke %s: %s\n", argv[0], store_strerror(e != 0 ? e : p.result));
        goto out;
    }
    if (p.result == STORE_NOTFOUND) {
        fprintf(stderr, "scepctl: %s: no certificate with this serial\n", argv[0]);
        goto out;
    }
    iso_time(p.rev.revoked_at, when, sizeof(when));
    printf("%s %s %s %s\n", argv[0], p.result == STORE_ALREADY_REVOKED ? "already-revoked" : "revoked",
           when, crl_reason_name(p.rev.reason));
    rc = 0;
out:
    store_close(s);
    return rc;
}

static double secs_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* crl bench N: N synthetic revocations through the same builder and the CA key scepd uses. */
static int cmd_crl(const config *cfg, int argc, char **argv)
{
    char pin[256] = "", err[256];
    ca_set *ca = NULL;
    crl_signer *sg = NULL;
    crl_builder *b = NULL;
    uint8_t *der = NULL;
    size_t len = 0;
    int rc = 1;

    if (argc != 2 || strcmp(argv[0], "bench") != 0 || atol(argv[1]) <= 0) {
        usage();
        return 2;
    }
    size_t n = (size_t)atol(argv[1]);
    if (cfg->key_mode == CONFIG_KEYS_PKCS11 && config_read_pin(cfg, pin, sizeof(pin), err, sizeof(err)) != 0) {
        fprintf(stderr, "scepctl: %s\n", err);
        return 1;
    }
    int e = ca_load(cfg, pin, &ca, err, sizeof(err));
    OPENSSL_cleanse(pin, sizeof(pin));
    if (e != 0) {
        fprintf(stderr, "scepctl: %s\n", err);
        goto out;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (crl_signer_create(ca->ca_key, ca->ca_cert, NULL, &sg) != 0 || crl_builder_create(n, &b) != 0)
        goto out;
    uint8_t serial[16];
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < n; i++) {
        if (RAND_bytes(serial, sizeof(serial)) != 1)
            goto out;
        serial[0] = (uint8_t)((serial[0] & 0x3f) | 0x40);
        if (crl_builder_add(b, serial, sizeof(serial), now - (int64_t)(i % 86400), (int)(i % 6),
                            i % 10 == 0 ? now - 86400 : 0) != 0)
            goto out;
    }
    double t_build = secs_since(&t0);
    if (crl_builder_sign(b, sg, 1, now, now + 86400, &der, &len) != 0)
        goto out;
    double t_total = secs_since(&t0);
    printf("entries=%zu bytes=%zu encode_s=%.3f sign_s=%.3f total_s=%.3f\n", n, len, t_build,
           t_total - t_build, t_total);
    rc = 0;
out:
    free(der);
    crl_builder_destroy(b);
    crl_signer_destroy(sg);
    ca_free(ca);
    return rc;
}

/* ------------------------------------------------------------------ challenges, requests */

/* Events scepctl causes go to the same audit file as scepd's (one O_APPEND write per line);
 * with audit_log = "-" (scepd's stdout) there is no file to share, so none is written. */
static audit *ctl_audit(const config *cfg)
{
    audit *a = NULL;
    if (strcmp(cfg->audit_log, "-") == 0 || audit_open(cfg->audit_log, &a) != 0)
        return NULL;
    return a;
}

static int load_profiles(const config *cfg, profile_set **out)
{
    char err[512];
    struct stat st;
    if (stat(cfg->profiles_dir, &st) != 0) {
        fprintf(stderr, "scepctl: profiles directory %s: %s\n", cfg->profiles_dir, strerror(errno));
        return -1;
    }
    if (profile_set_load_dir(cfg->profiles_dir, out, err, sizeof(err)) != 0) {
        fprintf(stderr, "scepctl: %s\n", err);
        return -1;
    }
    return 0;
}

static int insert_new(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                      size_t *nl)
{
    const uint8_t **rec = arg;
    (void)cur_len;
    if (cur != NULL)
        return 1;
    *nv = rec[0];
    *nl = (size_t)(rec[1] - rec[0]);
    return 0;
}

static int cmd_challenge(const config *cfg, int argc, char **argv)
{
    const char *pname = NULL, *subject = NULL, *san = NULL, *why = NULL;
    long long ttl_ms = 3600 * 1000LL;
    profile_set *set = NULL;
    store *s = NULL;
    audit *au = NULL;
    uint8_t key[CHALLENGE_HASH_LEN], *rec = NULL;
    char value[CHALLENGE_VALUE_LEN + 1], who[160];
    size_t rec_len = 0;
    int rc = 1;

    if (argc < 1 || strcmp(argv[0], "new") != 0) {
        usage();
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--profile") == 0 && i + 1 < argc)
            pname = argv[++i];
        else if (strcmp(argv[i], "--ttl") == 0 && i + 1 < argc)
            ttl_ms = config_parse_duration_ms(argv[++i]);
        else if (strcmp(argv[i], "--subject") == 0 && i + 1 < argc)
            subject = argv[++i];
        else if (strcmp(argv[i], "--san") == 0 && i + 1 < argc)
            san = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (pname == NULL || ttl_ms < 1000) {
        fprintf(stderr, "scepctl: challenge new needs --profile and a --ttl of at least 1s\n");
        return 2;
    }
    if (load_profiles(cfg, &set) != 0)
        goto out;
    const profile *prof = profile_set_find(set, pname, strlen(pname));
    if (prof == NULL) {
        fprintf(stderr, "scepctl: no profile '%s' in %s\n", pname, cfg->profiles_dir);
        goto out;
    }
    if (prof->challenge != PROFILE_CHALLENGE_ONETIME) {
        fprintf(stderr, "scepctl: profile '%s' does not use one-time challenges (challenge = onetime)\n", pname);
        goto out;
    }
    int64_t now = (int64_t)time(NULL);
    if ((rec = malloc(CHALLENGE_RECORD_MAX)) == NULL ||
        challenge_create(prof->name, now, ttl_ms / 1000, subject, san, value, key, rec, &rec_len,
                         &why) != 0) {
        fprintf(stderr, "scepctl: %s\n", why != NULL ? why : "out of memory");
        rc = 2;
        goto out;
    }
    int e = store_open(cfg->store_path, cfg->store_map_size, &s);
    if (e != 0) {
        fprintf(stderr, "scepctl: store %s: %s\n", cfg->store_path, store_strerror(e));
        goto out;
    }
    const uint8_t *span[2] = {rec, rec + rec_len};
    store_put p;
    memset(&p, 0, sizeof(p));
    p.kind = STORE_PUT_UPDATE;
    p.aux_db = STORE_DB_CHALLENGES;
    p.aux_key = key;
    p.aux_key_len = sizeof(key);
    p.update = insert_new;
    p.update_arg = span;
    e = store_put_sync(s, &p);
    if (e != 0 || p.result != STORE_OK || p.verdict != 0) {
        fprintf(stderr, "scepctl: cannot store the challenge: %s\n",
                e != 0 ? store_strerror(e) : p.result != STORE_OK ? store_strerror(p.result)
                                                                  : "already exists");
        goto out;
    }
    who_am_i(who, sizeof(who));
    if ((au = ctl_audit(cfg)) != NULL) {
        audit_fields f = {.profile = prof->name, .detail = who, .failinfo = -1};
        audit_emit(au, AUDIT_CHALLENGE_CREATED, &f);
    }
    printf("%s\n", value);
    rc = 0;
out:
    OPENSSL_cleanse(value, sizeof(value));
    free(rec);
    audit_close(au);
    store_close(s);
    profile_set_destroy(set);
    return rc;
}

static int list_request(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                        void *arg)
{
    int all = *(int *)arg;
    pending_request r;
    char when[32];
    static const char *const names[] = {"pending", "approved", "denied"};
    if (pending_decode(val, vlen, &r) != 0) {
        printf("%.*s  (corrupt record)\n", (int)klen, (const char *)key);
        return 0;
    }
    if (!all && r.status != PENDING_WAITING)
        return 0;
    iso_time(r.created, when, sizeof(when));
    printf("%.*s  %-8s  %s  %-12s  %s  %s\n", (int)klen, (const char *)key, names[r.status], when,
           r.profile, r.peer[0] ? r.peer : "-", r.subject);
    return 0;
}

typedef struct decide_arg {
    int status;
    int64_t when;
    const char *who;
    const uint8_t *serial;
    uint8_t *buf;
} decide_arg;

/* Inside the write transaction: only a request still pending is decided. */
static int decide(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv, size_t *nl)
{
    decide_arg *d = arg;
    pending_request r;
    if (cur == NULL || pending_decode(cur, cur_len, &r) != 0)
        return 1;
    if (r.status != PENDING_WAITING)
        return 2;
    r.status = d->status;
    r.decided_at = d->when;
    snprintf(r.decided_by, sizeof(r.decided_by), "%s", d->who);
    if (d->serial != NULL)
        memcpy(r.serial, d->serial, STORE_SERIAL_LEN);
    free(d->buf);
    d->buf = NULL;
    if (pending_encode(&r, &d->buf, nl) != 0)
        return 3;
    *nv = d->buf;
    return 0;
}

static int asn1_serial(const ASN1_INTEGER *ai, uint8_t out[STORE_SERIAL_LEN])
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(ai, NULL);
    int rc = bn != NULL && !BN_is_negative(bn) && BN_num_bytes(bn) <= STORE_SERIAL_LEN &&
             BN_bn2binpad(bn, out, STORE_SERIAL_LEN) == STORE_SERIAL_LEN ? 0 : -1;
    BN_free(bn);
    return rc;
}

/* approve: the certificate is issued here, with the CA key from the token, under the profile
 * the request was made for, and committed in the same transaction as the decision; the
 * client's next CertPoll finds it by transactionID. */
static int cmd_request(const config *cfg, int argc, char **argv)
{
    store *s = NULL;
    store_reader *r = NULL;
    audit *au = NULL;
    ca_set *ca = NULL;
    issuer *is = NULL;
    profile_set *set = NULL;
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    uint8_t *csr_der = NULL, *cert_der = NULL;
    char who[160], pin[256] = "", err[512], subject[512] = "", sn_hex[33] = "";
    pending_request rq;
    decide_arg d = {0};
    int rc = 1, e;

    if (argc < 1) {
        usage();
        return 2;
    }
    if ((e = store_open(cfg->store_path, cfg->store_map_size, &s)) != 0 ||
        (e = store_reader_create(s, &r)) != 0) {
        fprintf(stderr, "scepctl: store %s: %s\n", cfg->store_path, store_strerror(e));
        goto out;
    }
    if (strcmp(argv[0], "list") == 0 && argc <= 2) {
        int all = argc == 2 && strcmp(argv[1], "--all") == 0;
        if (argc == 2 && !all) {
            usage();
            rc = 2;
            goto out;
        }
        if ((e = store_reader_begin(r)) == 0)
            e = store_foreach_aux(r, STORE_DB_REQUESTS, list_request, &all);
        store_reader_end(r);
        rc = e == 0 ? 0 : 1;
        goto out;
    }
    int approve = strcmp(argv[0], "approve") == 0;
    if ((!approve && strcmp(argv[0], "deny") != 0) || argc != 2) {
        usage();
        rc = 2;
        goto out;
    }
    const char *id = argv[1];
    const uint8_t *v = NULL;
    size_t vl = 0;
    if (strlen(id) == 0 || strlen(id) > STORE_AUX_KEY_MAX || store_reader_begin(r) != 0)
        e = STORE_NOTFOUND;
    else
        e = store_get_aux(r, STORE_DB_REQUESTS, id, strlen(id), &v, &vl);
    if (e == 0 && pending_decode(v, vl, &rq) == 0 && (csr_der = malloc(rq.csr_len + 1)) != NULL) {
        memcpy(csr_der, rq.csr, rq.csr_len);
        rq.csr = csr_der;
    } else if (e == 0) {
        e = STORE_E_CORRUPT;
    }
    store_reader_end(r);
    if (e != 0) {
        fprintf(stderr, "scepctl: request %s: %s\n", id, e == STORE_NOTFOUND ? "not found" : store_strerror(e));
        goto out;
    }
    if (rq.status != PENDING_WAITING) {
        fprintf(stderr, "scepctl: request %s was already %s\n", id,
                rq.status == PENDING_APPROVED ? "approved" : "denied");
        goto out;
    }
    who_am_i(who, sizeof(who));
    store_put puts[2];
    memset(puts, 0, sizeof(puts));
    d.status = approve ? PENDING_APPROVED : PENDING_DENIED;
    d.when = (int64_t)time(NULL);
    d.who = who;
    puts[0].kind = STORE_PUT_UPDATE;
    puts[0].aux_db = STORE_DB_REQUESTS;
    puts[0].aux_key = id;
    puts[0].aux_key_len = strlen(id);
    puts[0].update = decide;
    puts[0].update_arg = &d;
    if (approve) {
        if (load_profiles(cfg, &set) != 0)
            goto out;
        const profile *prof = profile_set_find(set, rq.profile, strlen(rq.profile));
        if (prof == NULL) {
            fprintf(stderr, "scepctl: the request's profile '%s' no longer exists\n", rq.profile);
            goto out;
        }
        if (cfg->key_mode == CONFIG_KEYS_PKCS11 && config_read_pin(cfg, pin, sizeof(pin), err, sizeof(err)) != 0) {
            fprintf(stderr, "scepctl: %s\n", err);
            goto out;
        }
        char chal[256];
        e = ca_load(cfg, pin, &ca, err, sizeof(err));
        OPENSSL_cleanse(pin, sizeof(pin));
        if (e != 0) {
            fprintf(stderr, "scepctl: %s\n", err);
            goto out;
        }
        if (config_read_challenge(cfg, chal, sizeof(chal)) < 0)
            chal[0] = '\0';
        e = issuer_create(cfg, ca, chal, &is);
        OPENSSL_cleanse(chal, sizeof(chal));
        if (e != 0 || issuer_set_profiles(is, set, err, sizeof(err)) != 0) {
            fprintf(stderr, "scepctl: cannot prepare issuance: %s\n", e != 0 ? "CA" : err);
            goto out;
        }
        set = NULL;
        prof = profile_set_find(issuer_profiles(is), rq.profile, strlen(rq.profile));
        const unsigned char *pp = rq.csr;
        csr = d2i_X509_REQ(NULL, &pp, (long)rq.csr_len);
        int capped = 0;
        int rej = csr == NULL ? -1 : issue_build_profile(is, csr, prof, NULL, NULL, &cert, &capped);
        if (rej != 0) {
            fprintf(stderr, "scepctl: cannot issue for request %s (reject code %d)\n", id, rej);
            goto out;
        }
        uint8_t serial[STORE_SERIAL_LEN], subj_hash[32];
        int dlen = i2d_X509(cert, &cert_der);
        if (dlen <= 0 || asn1_serial(X509_get0_serialNumber(cert), serial) != 0 ||
            issue_name_hash(X509_REQ_get_subject_name(csr), subj_hash) != 0)
            goto out;
        for (int i = 0; i < STORE_SERIAL_LEN; i++)
            snprintf(sn_hex + 2 * i, 3, "%02x", serial[i]);
        snprintf(subject, sizeof(subject), "%s", rq.subject);
        enroll_record m = {rq.key_hash, subj_hash, subject, id, rq.profile, d.when};
        puts[0].next = &puts[1];
        puts[1].kind = STORE_PUT_CERT;
        if (enroll_record_fill(&puts[1].cert, cert, cert_der, (size_t)dlen, &m) != 0)
            goto out;
        memcpy((uint8_t *)(d.serial = malloc(STORE_SERIAL_LEN)), serial, STORE_SERIAL_LEN);
    }
    e = store_put_sync(s, &puts[0]);
    if (e != 0 || puts[0].result != STORE_OK || puts[0].verdict != 0 ||
        (approve && puts[1].result != STORE_OK)) {
        fprintf(stderr, "scepctl: request %s: %s\n", id,
                e != 0 ? store_strerror(e) : puts[0].verdict != 0 ? "no longer pending"
                : store_strerror(approve && puts[1].result != STORE_OK ? puts[1].result : puts[0].result));
        goto out;
    }
    if ((au = ctl_audit(cfg)) != NULL) {
        audit_fields f = {.txid = id, .profile = rq.profile, .subject = rq.subject,
                          .serial = approve ? sn_hex : NULL, .detail = who, .failinfo = -1};
        audit_emit(au, approve ? AUDIT_REQUEST_APPROVED : AUDIT_REQUEST_DENIED, &f);
    }
    if (approve)
        printf("%s approved serial=%s\n", id, sn_hex);
    else
        printf("%s denied\n", id);
    rc = 0;
out:
    free(d.buf);
    free((void *)d.serial);
    free(csr_der);
    OPENSSL_free(cert_der);
    X509_free(cert);
    X509_REQ_free(csr);
    issuer_destroy(is);
    ca_free(ca);
    profile_set_destroy(set);
    audit_close(au);
    store_reader_destroy(r);
    store_close(s);
    return rc;
}

int main(int argc, char **argv)
{
    const char *conf = NULL;
    char err[512];
    config cfg;
    int i = 1;

    if (argc > 2 && strcmp(argv[1], "-c") == 0) {
        conf = argv[2];
        i = 3;
    }
    if (conf == NULL || i >= argc) {
        usage();
        return 2;
    }
    if (config_load(&cfg, conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "scepctl: %s: %s\n", conf, err);
        return 1;
    }
    if (strcmp(argv[i], "init") == 0)
        return cmd_init(&cfg, argc - i - 1, argv + i + 1);
    if (strcmp(argv[i], "cert") == 0)
        return cmd_cert(&cfg, argc - i - 1, argv + i + 1);
    if (strcmp(argv[i], "ca") == 0 || strcmp(argv[i], "ra") == 0)
        return ctl_ca_main(&cfg, argc - i, argv + i);
    if (strcmp(argv[i], "revoke") == 0)
        return cmd_revoke(&cfg, argc - i - 1, argv + i + 1);
    if (strcmp(argv[i], "crl") == 0)
        return cmd_crl(&cfg, argc - i - 1, argv + i + 1);
    if (strcmp(argv[i], "challenge") == 0)
        return cmd_challenge(&cfg, argc - i - 1, argv + i + 1);
    if (strcmp(argv[i], "request") == 0)
        return cmd_request(&cfg, argc - i - 1, argv + i + 1);
    usage();
    return 2;
}
