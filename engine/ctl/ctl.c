/* scepctl: administration of a scepd installation, reading the same configuration file.
 *
 *   scepctl -c CONF init [--ca-subject DN] [--ca-key SPEC] [--ra-subject DN] [--no-ra]
 *                        [--days N]                                            (ctl_init.c)
 *   scepctl -c CONF cert list [--revoked] | cert show SERIAL | cert count    (ctl_issued.c)
 *   scepctl -c CONF revoke SERIAL [--reason NAME] [--invalidity-date EPOCH]  (ctl_issued.c)
 *   scepctl -c CONF challenge new --profile P [--ttl 60m] [--subject DN] [--san LIST]
 *                                                                          (ctl_challenge.c)
 *   scepctl -c CONF request list [--all] | request approve|deny TXID        (ctl_request.c)
 *   scepctl -c CONF crl bench N   (not in the usage text: CRL build+sign timing; ctl_crl.c)
 *   scepctl -c CONF ca ... | ra ...                           (ctl_ca.c, ctl_ca_rollover.c)
 *
 * This file: the usage text, the command table, and the helpers of ctl_internal.h.
 */
#include "engine/ctl/ctl_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "engine/ctl/ctl_ca.h"

void ctl_usage(void)
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
            "  request deny TXID     refuse it (the client's CertPoll gets FAILURE)\n"
            "  store migrate       create or upgrade the store's schema (docs/ha.md)\n"
            "  store copy --from LOCATION --to LOCATION\n"
            "       copy every record into an empty store; LOCATION: lmdb:PATH,\n"
            "       postgresql:CONNINFO or a path (LMDB)\n");
}

int ctl_store_open(const config *cfg, store **s, store_reader **r)
{
    int e = store_open(cfg->store_path, cfg->store_map_size, s);
    if (e == 0 && r != NULL)
        e = store_reader_create(*s, r);
    if (e != 0)
        fprintf(stderr, "scepctl: store %s: %s\n", cfg->store_path, store_strerror(e));
    return e;
}

void ctl_iso_time(int64_t t, char *out, size_t outlen)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void ctl_who_am_i(char *who, size_t len)
{
    const char *user = getenv("USER");
    snprintf(who, len, "scepctl uid=%u%s%s", (unsigned)getuid(), user ? " user=" : "",
             user ? user : "");
}

/* Events scepctl causes go to the same audit file as scepd's (one O_APPEND write per line);
 * with audit_log = "-" (scepd's stdout) there is no file to share, so none is written. */
audit *ctl_audit(const config *cfg)
{
    audit *a = NULL;
    if (strcmp(cfg->audit_log, "-") == 0 || audit_open(cfg->audit_log, &a) != 0)
        return NULL;
    return a;
}

int ctl_load_profiles(const config *cfg, profile_set **out)
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

int ctl_load_ca(const config *cfg, ca_set **ca)
{
    char pin[256] = "", err[512];
    int rc = -1;
    if (cfg->key_mode == CONFIG_KEYS_PKCS11 &&
        config_read_pin(cfg, pin, sizeof(pin), err, sizeof(err)) != 0)
        fprintf(stderr, "scepctl: %s\n", err);
    else if (ca_load(cfg, pin, ca, err, sizeof(err)) != 0)
        fprintf(stderr, "scepctl: %s\n", err);
    else
        rc = 0;
    OPENSSL_cleanse(pin, sizeof(pin));
    return rc;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

/* The commands of ctl_internal.h; "ca" and "ra" go to ctl_ca_main with their own name. */
static const struct command {
    const char *name;
    int (*run)(const config *cfg, int argc, char **argv);
} commands[] = {
    {"init", ctl_cmd_init},
    {"cert", ctl_cmd_cert},
    {"revoke", ctl_cmd_revoke},
    {"crl", ctl_cmd_crl},
    {"challenge", ctl_cmd_challenge},
    {"request", ctl_cmd_request},
    {"store", ctl_cmd_store},
    {NULL, NULL},
};

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
        ctl_usage();
        return 2;
    }
    if (config_load(&cfg, conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "scepctl: %s: %s\n", conf, err);
        return 1;
    }
    if (strcmp(argv[i], "ca") == 0 || strcmp(argv[i], "ra") == 0)
        return ctl_ca_main(&cfg, argc - i, argv + i);
    for (const struct command *c = commands; c->name != NULL; c++)
        if (strcmp(argv[i], c->name) == 0)
            return c->run(&cfg, argc - i - 1, argv + i + 1);
    ctl_usage();
    return 2;
}
