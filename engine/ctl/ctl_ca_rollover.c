/* scepctl ra renew / ca stage-next / ca activate-next: new keys and certificates for a CA in
 * service: the RA certificate renewed under the current CA, and a next CA staged (served by
 * GetNextCACert) and then switched to. See docs/ca.md. */
#include "engine/ctl/ctl_ca.h"
#include "engine/ctl/ctl_ca_internal.h"
#include "engine/ctl/ctl_cert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "engine/pki/ca.h"
#include "hsm/hsm.h"

int ctl_ca_ra_renew(const config *cfg, int argc, char **argv)
{
    struct opts o;
    hsm_token *tok = NULL;
    EVP_PKEY *ca_key = NULL, *ra_key = NULL;
    X509 *ca = NULL, *old = NULL, *ra = NULL;
    X509_NAME *dn = NULL;
    char label[LABEL_MAX], ra_label[LABEL_MAX], path[CONFIG_PATH_MAX + 16];
    int rc = 1, generated = 0;

    if (ctl_ca_parse_opts(argc, argv, O_DAYS | O_NEWKEY | O_SUBJECT, &o) != 0)
        return 2;
    if (o.days == 0)
        o.days = 365;
    if (cfg->ra_cert[0] == '\0') {
        fprintf(stderr, "scepctl: [keys] ra_cert is not set: the CA acts as RA\n");
        goto out;
    }
    if ((ca = ca_read_cert(cfg->ca_cert)) == NULL) {
        fprintf(stderr, "scepctl: cannot read %s\n", cfg->ca_cert);
        goto out;
    }
    old = ca_read_cert(cfg->ra_cert);
    if (o.subject != NULL)
        dn = ctl_parse_dn(o.subject);
    else if (old != NULL)
        dn = X509_NAME_dup(X509_get_subject_name(old));
    else
        dn = ctl_parse_dn("/CN=scepd RA");
    if (dn == NULL)
        goto out;
    ctl_ca_label(cfg, label);
    ca_key_label(cfg->ra_cert, cfg->ra_key_label, ra_label, sizeof(ra_label));
    if (ctl_ca_open_token(cfg, &tok) != 0)
        goto out;
    if ((ca_key = ctl_ca_load_key(tok, label, cfg->ca_key_file)) == NULL ||
        EVP_PKEY_eq(X509_get0_pubkey(ca), ca_key) != 1) {
        fprintf(stderr, "scepctl: CA key not found or not matching %s\n", cfg->ca_cert);
        goto out;
    }
    if (!o.new_key)
        ra_key = ctl_ca_load_key(tok, ra_label, cfg->ra_key_file);
    if (ra_key == NULL) {
        /* A new RA key: under a fresh label (token labels are not renamed), or as a new file
         * swapped in once the certificate is written. */
        if (tok != NULL) {
            if (o.new_key)
                snprintf(ra_label, sizeof(ra_label), "%.40s-%lld", cfg->ra_key_label,
                         (long long)time(NULL));
            if ((ra_key = ctl_ca_new_key(tok, ra_label, NULL, "rsa:2048")) == NULL)
                goto out;
        } else {
            snprintf(path, sizeof(path), "%s.new", cfg->ra_key_file);
            unlink(path);
            if ((ra_key = ctl_ca_new_key(NULL, NULL, path, "rsa:2048")) == NULL)
                goto out;
        }
        generated = 1;
    }
    if ((ra = ctl_make_cert(dn, ra_key, ca, ca_key, o.days, CTL_CERT_RA)) == NULL) {
        fprintf(stderr, "scepctl: cannot issue the RA certificate\n");
        goto out;
    }
    if (ctl_ca_keep_prev(cfg->ra_cert) != 0 || ctl_write_certs(cfg->ra_cert, NULL, ra) != 0)
        goto out;
    if (tok != NULL && strcmp(ra_label, cfg->ra_key_label) != 0) {
        snprintf(path, sizeof(path), "%s.label", cfg->ra_cert);
        if (ctl_ca_write_text(path, ra_label) != 0)
            goto out;
    } else if (tok == NULL && generated) {
        snprintf(path, sizeof(path), "%s.new", cfg->ra_key_file);
        if (ctl_ca_keep_prev(cfg->ra_key_file) != 0 || rename(path, cfg->ra_key_file) != 0) {
            fprintf(stderr, "scepctl: cannot install the new RA key file\n");
            goto out;
        }
    }
    printf("RA certificate: %s (key %s); restart scepd to use it\n", cfg->ra_cert,
           tok != NULL ? ra_label : cfg->ra_key_file);
    rc = 0;
out:
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    X509_free(ca);
    X509_free(old);
    X509_free(ra);
    X509_NAME_free(dn);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(ra_key);
    hsm_token_close(tok);
    return rc;
}

static void next_paths(const config *cfg, char *next, char *next_label, char *next_keyfile)
{
    ca_default_path(cfg, "next-ca.pem", next, CONFIG_PATH_MAX);
    snprintf(next_label, CONFIG_PATH_MAX + 16, "%.*s.label", CONFIG_PATH_MAX - 1, next);
    snprintf(next_keyfile, CONFIG_PATH_MAX + 16, "%.*s.next", CONFIG_PATH_MAX - 1, cfg->ca_key_file);
}

int ctl_ca_stage_next(const config *cfg, int argc, char **argv)
{
    struct opts o;
    hsm_token *tok = NULL;
    EVP_PKEY *key = NULL, *ra_key = NULL;
    X509 *cur = NULL, *next = NULL, *ra = NULL;
    X509_NAME *dn = NULL;
    char label[LABEL_MAX], ra_label[LABEL_MAX], next_path[CONFIG_PATH_MAX];
    char label_path[CONFIG_PATH_MAX + 16], keyfile[CONFIG_PATH_MAX + 16];
    STACK_OF(X509) *certs = NULL;
    int rc = 1;

    if (ctl_ca_parse_opts(argc, argv, O_SUBJECT | O_KEY | O_DAYS | O_FORCE, &o) != 0)
        return 2;
    certs = sk_X509_new_null();
    if (o.days == 0)
        o.days = 3650;
    next_paths(cfg, next_path, label_path, keyfile);
    if (access(next_path, F_OK) == 0) {
        fprintf(stderr, "scepctl: a next CA is already staged (%s)\n", next_path);
        goto out;
    }
    if (certs == NULL || (cur = ca_read_cert(cfg->ca_cert)) == NULL) {
        fprintf(stderr, "scepctl: cannot read %s\n", cfg->ca_cert);
        goto out;
    }
    dn = o.subject != NULL ? ctl_parse_dn(o.subject) : X509_NAME_dup(X509_get_subject_name(cur));
    if (dn == NULL)
        goto out;
    if (ctl_ca_open_token(cfg, &tok) != 0)
        goto out;
    ctl_ca_label(cfg, label);
    if (tok != NULL) {
        /* First free label among base-next, base-next2, ...: token labels are never reused. */
        char base[LABEL_MAX];
        snprintf(base, sizeof(base), "%.40s", label);
        char *dash = strstr(base, "-next");
        if (dash != NULL)
            *dash = '\0';
        for (int i = 1; i < 100 && key == NULL; i++) {
            EVP_PKEY *probe = NULL;
            if (i == 1)
                snprintf(label, sizeof(label), "%.40s-next", base);
            else
                snprintf(label, sizeof(label), "%.40s-next%d", base, i);
            if (hsm_key_load(tok, label, &probe) == 0) {
                EVP_PKEY_free(probe);
                continue;
            }
            if ((key = ctl_ca_new_key(tok, label, NULL, o.key)) == NULL)
                goto out;
        }
    } else {
        unlink(keyfile);
        key = ctl_ca_new_key(NULL, NULL, keyfile, o.key);
    }
    if (key == NULL)
        goto out;
    if ((next = ctl_make_cert(dn, key, NULL, key, o.days, CTL_CERT_CA)) == NULL) {
        fprintf(stderr, "scepctl: cannot build the next CA certificate\n");
        goto out;
    }
    if (!sk_X509_push(certs, next))
        goto out;
    if (cfg->ra_cert[0] != '\0') {
        X509 *old_ra = ca_read_cert(cfg->ra_cert);
        ca_key_label(cfg->ra_cert, cfg->ra_key_label, ra_label, sizeof(ra_label));
        ra_key = ctl_ca_load_key(tok, ra_label, cfg->ra_key_file);
        if (old_ra == NULL || ra_key == NULL) {
            X509_free(old_ra);
            fprintf(stderr, "scepctl: cannot load the RA certificate and key\n");
            goto out;
        }
        ra = ctl_make_cert(X509_get_subject_name(old_ra), ra_key, next, key, o.days, CTL_CERT_RA);
        X509_free(old_ra);
        if (ra == NULL || !sk_X509_push(certs, ra))
            goto out;
    }
    if ((tok != NULL && ctl_ca_write_text(label_path, label) != 0) || ctl_write_certs(next_path, certs, NULL) != 0)
        goto out;
    printf("next CA: %s (key %s); GetNextCACert serves it after a restart of scepd;\n"
           "switch with: scepctl ca activate-next\n", next_path, tok != NULL ? label : keyfile);
    rc = 0;
out:
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    sk_X509_free(certs);
    X509_free(cur);
    X509_free(next);
    X509_free(ra);
    X509_NAME_free(dn);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ra_key);
    hsm_token_close(tok);
    return rc;
}

int ctl_ca_activate_next(const config *cfg, int argc, char **argv)
{
    hsm_token *tok = NULL;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *certs = NULL;
    char next_path[CONFIG_PATH_MAX], label_path[CONFIG_PATH_MAX + 16], keyfile[CONFIG_PATH_MAX + 16];
    char label[LABEL_MAX] = "", chain_path[CONFIG_PATH_MAX], path[CONFIG_PATH_MAX + 16];
    int rc = 1;

    (void)argv;
    if (argc != 0)
        return 2;
    next_paths(cfg, next_path, label_path, keyfile);
    if (ca_read_certs(next_path, &certs) != 0) {
        fprintf(stderr, "scepctl: no next CA staged (%s)\n", next_path);
        goto out;
    }
    X509 *next = sk_X509_value(certs, 0);
    if (ctl_ca_open_token(cfg, &tok) != 0)
        goto out;
    if (tok != NULL)
        ca_key_label(next_path, "", label, sizeof(label));
    key = ctl_ca_load_key(tok, label, keyfile);
    if (key == NULL || EVP_PKEY_eq(X509_get0_pubkey(next), key) != 1) {
        fprintf(stderr, "scepctl: the staged key does not match %s\n", next_path);
        goto out;
    }
    ca_default_path(cfg, "ca-chain.pem", chain_path, sizeof(chain_path));
    if (ctl_ca_keep_prev(cfg->ca_cert) != 0 || ctl_write_certs(cfg->ca_cert, NULL, next) != 0 ||
        ctl_ca_keep_prev(chain_path) != 0)
        goto out;
    snprintf(path, sizeof(path), "%s.label", cfg->ca_cert);
    if (tok != NULL) {
        if (ctl_ca_keep_prev(path) != 0 || ctl_ca_write_text(path, label) != 0)
            goto out;
    } else if (ctl_ca_keep_prev(cfg->ca_key_file) != 0 || rename(keyfile, cfg->ca_key_file) != 0) {
        fprintf(stderr, "scepctl: cannot install the next CA key file\n");
        goto out;
    }
    if (cfg->ra_cert[0] != '\0' && sk_X509_num(certs) > 1 &&
        (ctl_ca_keep_prev(cfg->ra_cert) != 0 || ctl_write_certs(cfg->ra_cert, NULL, sk_X509_value(certs, 1)) != 0))
        goto out;
    unlink(label_path);
    unlink(next_path);
    printf("active CA: %s (previous kept as %s.prev); restart scepd to serve it\n", cfg->ca_cert,
           cfg->ca_cert);
    rc = 0;
out:
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    sk_X509_pop_free(certs, X509_free);
    EVP_PKEY_free(key);
    hsm_token_close(tok);
    return rc;
}
