/* scepctl init: a new installation's keys, certificates and store. The CA key (and the RA
 * and OCSP responder keys) are generated inside the token in pkcs11 key mode, or written as
 * new 0600 PEM files in file mode; nothing that exists is replaced. See ctl_internal.h. */
#include "engine/ctl/ctl_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "engine/ctl/ctl_ca_internal.h"
#include "engine/ctl/ctl_cert.h"
#include "hsm/hsm.h"

struct init_opts {
    const char *ca_subject, *ra_subject, *ca_spec;
    int days, with_ra;
    char ra_default[300];   /* "<CA subject> RA" when --ra-subject is not given */
};

/* What init makes, freed in one place (init_free). */
struct init_made {
    hsm_token *tok;
    EVP_PKEY *ca_key, *ra_key, *ocsp_key;
    X509 *ca, *ra, *ocsp;
    X509_NAME *ca_dn, *ra_dn, *ocsp_dn;
};

static int init_parse(int argc, char **argv, struct init_opts *o)
{
    o->ca_subject = "/CN=scepd CA";
    o->ra_subject = NULL;
    o->ca_spec = "rsa:2048";
    o->days = 3650;
    o->with_ra = 1;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--ca-subject") == 0 && i + 1 < argc)
            o->ca_subject = argv[++i];
        else if (strcmp(argv[i], "--ra-subject") == 0 && i + 1 < argc)
            o->ra_subject = argv[++i];
        else if (strcmp(argv[i], "--ca-key") == 0 && i + 1 < argc)
            o->ca_spec = argv[++i];
        else if (strcmp(argv[i], "--days") == 0 && i + 1 < argc)
            o->days = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-ra") == 0)
            o->with_ra = 0;
        else
            return -1;
    }
    if (o->ra_subject == NULL) {
        snprintf(o->ra_default, sizeof(o->ra_default), "%s RA", o->ca_subject);
        o->ra_subject = o->ra_default;
    }
    return 0;
}

/* Refuses what init must not do (bad names, an existing CA, an RA without a path). */
static int init_check(const config *cfg, const struct init_opts *o, struct init_made *m)
{
    if (o->days <= 0 || (m->ca_dn = ctl_parse_dn(o->ca_subject)) == NULL ||
        (m->ra_dn = ctl_parse_dn(o->ra_subject)) == NULL) {
        fprintf(stderr, "scepctl: bad subject or validity\n");
        return -1;
    }
    if (access(cfg->ca_cert, F_OK) == 0) {
        fprintf(stderr, "scepctl: %s exists: refusing to replace a CA\n", cfg->ca_cert);
        return -1;
    }
    if (o->with_ra && cfg->ra_cert[0] == '\0') {
        fprintf(stderr, "scepctl: [keys] ra_cert is not set (use --no-ra for a CA-only set-up)\n");
        return -1;
    }
    return 0;
}

/* The CA key and, unless --no-ra, the RA key: in the token (opened here, kept in m->tok for
 * the OCSP key) or as new files, as `ca init-root` makes them. */
static int init_keys(const config *cfg, const struct init_opts *o, struct init_made *m)
{
    if (ctl_ca_open_token(cfg, &m->tok) != 0 ||
        (m->ca_key = ctl_ca_new_key(m->tok, cfg->ca_key_label, cfg->ca_key_file, o->ca_spec)) == NULL)
        return -1;
    if (o->with_ra &&
        (m->ra_key = ctl_ca_new_key(m->tok, cfg->ra_key_label, cfg->ra_key_file, "rsa:2048")) == NULL)
        return -1;
    return 0;
}

/* The self-signed CA certificate and the RA certificate it issues. */
static int init_certs(const config *cfg, const struct init_opts *o, struct init_made *m)
{
    m->ca = ctl_make_cert(m->ca_dn, m->ca_key, NULL, m->ca_key, o->days, CTL_CERT_CA);
    if (m->ca == NULL || ctl_write_certs(cfg->ca_cert, NULL, m->ca) != 0) {
        fprintf(stderr, "scepctl: cannot create the CA certificate\n");
        return -1;
    }
    if (o->with_ra) {
        m->ra = ctl_make_cert(m->ra_dn, m->ra_key, m->ca, m->ca_key, o->days, CTL_CERT_RA);
        if (m->ra == NULL || ctl_write_certs(cfg->ra_cert, NULL, m->ra) != 0) {
            fprintf(stderr, "scepctl: cannot create the RA certificate\n");
            return -1;
        }
    }
    return 0;
}

/* With [ocsp] cert set: the responder's P-256 key and certificate, "<CA subject> OCSP". */
static int init_ocsp(const config *cfg, const struct init_opts *o, struct init_made *m)
{
    char dn[400];
    if (cfg->ocsp_cert[0] == '\0')
        return 0;
    snprintf(dn, sizeof(dn), "%s OCSP", o->ca_subject);
    if ((m->ocsp_dn = ctl_parse_dn(dn)) == NULL ||
        (m->ocsp_key = ctl_ca_new_key(m->tok, cfg->ocsp_key_label, cfg->ocsp_key_file, "ec:P-256")) == NULL)
        return -1;
    m->ocsp = ctl_make_cert(m->ocsp_dn, m->ocsp_key, m->ca, m->ca_key, o->days, CTL_CERT_OCSP);
    if (m->ocsp == NULL || ctl_write_certs(cfg->ocsp_cert, NULL, m->ocsp) != 0) {
        fprintf(stderr, "scepctl: cannot create the OCSP responder certificate\n");
        return -1;
    }
    return 0;
}

static void init_free(struct init_made *m)
{
    X509_free(m->ca);
    X509_free(m->ra);
    X509_free(m->ocsp);
    X509_NAME_free(m->ca_dn);
    X509_NAME_free(m->ra_dn);
    X509_NAME_free(m->ocsp_dn);
    EVP_PKEY_free(m->ocsp_key);
    EVP_PKEY_free(m->ca_key);
    EVP_PKEY_free(m->ra_key);
    hsm_token_close(m->tok);
}

int ctl_cmd_init(const config *cfg, int argc, char **argv)
{
    struct init_opts o;
    struct init_made m = {0};
    store *s = NULL;
    int rc = 1;

    if (init_parse(argc, argv, &o) != 0) {
        ctl_usage();
        return 2;
    }
    if (init_check(cfg, &o, &m) != 0 || init_keys(cfg, &o, &m) != 0 ||
        init_certs(cfg, &o, &m) != 0 || init_ocsp(cfg, &o, &m) != 0)
        goto out;
    int e = ctl_store_open(cfg, &s, NULL);
    store_close(s);
    if (e != 0)
        goto out;
    printf("CA certificate: %s\n", cfg->ca_cert);
    if (o.with_ra)
        printf("RA certificate: %s\n", cfg->ra_cert);
    if (m.ocsp != NULL)
        printf("OCSP responder certificate: %s\n", cfg->ocsp_cert);
    printf("store: %s\n", cfg->store_path);
    rc = 0;
out:
    /* The PKCS#11 module may leave OpenSSL errors of its own (SoftHSM's optional rdrand
     * engine): only a failure's errors are worth printing. */
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    init_free(&m);
    return rc;
}
