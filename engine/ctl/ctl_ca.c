/* scepctl ca ... / ra ...: CA lifecycle. See ctl_ca.h and docs/ca.md. This file: the command
 * table, the helpers every command shares (keys, files, options), setting up a CA
 * (init-root, init-intermediate, import) and exporting it; ctl_ca_rollover.c renews. */
#include "engine/ctl/ctl_ca.h"
#include "engine/ctl/ctl_ca_internal.h"
#include "engine/ctl/ctl_cert.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "engine/pki/ca.h"
#include "hsm/hsm.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: scepctl -c CONF ca|ra COMMAND (keys: rsa:2048|rsa:3072|rsa:4096|ec:P-256|ec:P-384)\n"
            "  ca init-root --subject DN [--key SPEC] [--days N]     new self-signed root CA\n"
            "  ca init-intermediate --subject DN [--key SPEC] --csr-out FILE\n"
            "                                 new CA key, CSR for an enterprise CA to sign\n"
            "  ca import --cert FILE [--chain FILE] [--force]\n"
            "                                 install the signed CA certificate and its chain\n"
            "  ca stage-next [--subject DN] [--key SPEC] [--days N]\n"
            "                                 next CA (self-signed) served by GetNextCACert\n"
            "  ca activate-next               switch to the staged CA (restart scepd after)\n"
            "  ca export --der|--pem [--root|--all] [--out FILE]\n"
            "  ra renew [--days N] [--new-key] [--subject DN]\n");
}

/* ---- keys ------------------------------------------------------------------------------------ */

static int spec_ok(const char *s)
{
    static const char *const ok[] = { "rsa:2048", "rsa:3072", "rsa:4096", "ec:P-256", "ec:P-384" };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (strcmp(s, ok[i]) == 0)
            return 1;
    return 0;
}

int ctl_ca_open_token(const config *cfg, hsm_token **tok)
{
    char pin[256], err[256];
    if (cfg->key_mode != CONFIG_KEYS_PKCS11)
        return 0;
    if (config_read_pin(cfg, pin, sizeof(pin), err, sizeof(err)) != 0) {
        fprintf(stderr, "scepctl: %s\n", err);
        return -1;
    }
    int e = config_apply_module_env(cfg) != 0
                ? -1
                : hsm_token_open(cfg->pkcs11_module, cfg->token_label, pin, tok);
    OPENSSL_cleanse(pin, sizeof(pin));
    if (e != 0) {
        fprintf(stderr, "scepctl: token '%s': %s\n", cfg->token_label, hsm_last_error());
        return -1;
    }
    return 0;
}

/* A new key: inside the token under label, or a new 0600 PEM file (never replaced). */
EVP_PKEY *ctl_ca_new_key(hsm_token *tok, const char *label, const char *file, const char *spec)
{
    EVP_PKEY *k = NULL;
    if (tok != NULL) {
        if (hsm_key_generate(tok, label, spec, &k) != 0) {
            fprintf(stderr, "scepctl: generate key '%s' in the token: %s\n", label,
                    hsm_last_error());
            return NULL;
        }
        return k;
    }
    if ((k = ctl_key_file_new(file, spec)) == NULL)
        fprintf(stderr, "scepctl: cannot create key file %s: %s\n", file,
                errno == EEXIST ? "exists" : strerror(errno));
    return k;
}

EVP_PKEY *ctl_ca_load_key(hsm_token *tok, const char *label, const char *file)
{
    EVP_PKEY *k = NULL;
    if (tok != NULL) {
        if (hsm_key_load(tok, label, &k) != 0)
            return NULL;
        return k;
    }
    return ca_read_key_file(file);
}

/* ---- files ----------------------------------------------------------------------------------- */

int ctl_ca_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    int ok = f != NULL && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f != NULL && fclose(f) != 0)
        ok = 0;
    if (!ok)
        fprintf(stderr, "scepctl: cannot write %s\n", path);
    return ok ? 0 : -1;
}

/* Keeps the previous version of path as path.prev (replacing an older .prev). */
int ctl_ca_keep_prev(const char *path)
{
    char prev[CONFIG_PATH_MAX + 16];
    if (snprintf(prev, sizeof(prev), "%s.prev", path) >= (int)sizeof(prev)) {
        fprintf(stderr, "scepctl: path too long: %s\n", path);
        return -1;
    }
    if (access(path, F_OK) != 0)
        return 0;
    if (rename(path, prev) != 0) {
        fprintf(stderr, "scepctl: cannot rename %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- options --------------------------------------------------------------------------------- */

static int days_ok(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 36500) {
        fprintf(stderr, "scepctl: bad --days '%s' (1..36500)\n", s);
        return 0;
    }
    *out = (int)v;
    return 1;
}

int ctl_ca_parse_opts(int argc, char **argv, unsigned allowed, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->key = "rsa:2048";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((allowed & O_SUBJECT) && !strcmp(a, "--subject") && v) { o->subject = v; i++; }
        else if ((allowed & O_KEY) && !strcmp(a, "--key") && v) { o->key = v; i++; }
        else if ((allowed & O_DAYS) && !strcmp(a, "--days") && v) {
            if (!days_ok(v, &o->days))
                return -1;
            i++;
        }
        else if ((allowed & O_CSR) && !strcmp(a, "--csr-out") && v) { o->csr_out = v; i++; }
        else if ((allowed & O_CERT) && !strcmp(a, "--cert") && v) { o->cert = v; i++; }
        else if ((allowed & O_CHAIN) && !strcmp(a, "--chain") && v) { o->chain = v; i++; }
        else if ((allowed & O_OUT) && !strcmp(a, "--out") && v) { o->out = v; i++; }
        else if ((allowed & O_FORCE) && !strcmp(a, "--force")) o->force = 1;
        else if ((allowed & O_NEWKEY) && !strcmp(a, "--new-key")) o->new_key = 1;
        else if ((allowed & O_FORMAT) && !strcmp(a, "--der")) o->der = 1;
        else if ((allowed & O_FORMAT) && !strcmp(a, "--pem")) o->pem = 1;
        else if ((allowed & O_FORMAT) && !strcmp(a, "--root")) o->root = 1;
        else if ((allowed & O_FORMAT) && !strcmp(a, "--all")) o->all = 1;
        else {
            fprintf(stderr, "scepctl: unexpected argument '%s'\n", a);
            return -1;
        }
    }
    if ((allowed & O_KEY) && !spec_ok(o->key)) {
        fprintf(stderr, "scepctl: bad --key '%s'\n", o->key);
        return -1;
    }
    return 0;
}

void ctl_ca_label(const config *cfg, char *out)
{
    ca_key_label(cfg->ca_cert, cfg->ca_key_label, out, LABEL_MAX);
}

/* ---- commands -------------------------------------------------------------------------------- */

static int cmd_init_root(const config *cfg, int argc, char **argv)
{
    struct opts o;
    hsm_token *tok = NULL;
    EVP_PKEY *key = NULL;
    X509_NAME *dn = NULL;
    X509 *x = NULL;
    char label[LABEL_MAX];
    int rc = 1;

    if (ctl_ca_parse_opts(argc, argv, O_SUBJECT | O_KEY | O_DAYS, &o) != 0 || o.subject == NULL)
        return 2;
    if (o.days == 0)
        o.days = 3650;
    if ((dn = ctl_parse_dn(o.subject)) == NULL)
        goto out;
    if (access(cfg->ca_cert, F_OK) == 0) {
        fprintf(stderr, "scepctl: %s exists: refusing to replace a CA\n", cfg->ca_cert);
        goto out;
    }
    ctl_ca_label(cfg, label);
    if (ctl_ca_open_token(cfg, &tok) != 0 ||
        (key = ctl_ca_new_key(tok, label, cfg->ca_key_file, o.key)) == NULL)
        goto out;
    if ((x = ctl_make_cert(dn, key, NULL, key, o.days, CTL_CERT_CA)) == NULL ||
        ctl_write_certs(cfg->ca_cert, NULL, x) != 0)
        goto out;
    printf("root CA certificate: %s\n", cfg->ca_cert);
    rc = 0;
out:
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    X509_free(x);
    X509_NAME_free(dn);
    EVP_PKEY_free(key);
    hsm_token_close(tok);
    return rc;
}

static int cmd_init_intermediate(const config *cfg, int argc, char **argv)
{
    struct opts o;
    hsm_token *tok = NULL;
    EVP_PKEY *key = NULL;
    X509_NAME *dn = NULL;
    X509_REQ *req = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    char label[LABEL_MAX];
    FILE *f = NULL;
    int rc = 1;

    if (ctl_ca_parse_opts(argc, argv, O_SUBJECT | O_KEY | O_CSR, &o) != 0 || o.subject == NULL ||
        o.csr_out == NULL)
        return 2;
    if ((dn = ctl_parse_dn(o.subject)) == NULL)
        goto out;
    ctl_ca_label(cfg, label);
    if (ctl_ca_open_token(cfg, &tok) != 0 ||
        (key = ctl_ca_new_key(tok, label, cfg->ca_key_file, o.key)) == NULL)
        goto out;
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, NULL, NULL, NULL, NULL, 0);
    X509_EXTENSION *bc = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    X509_EXTENSION *ku = X509V3_EXT_conf_nid(NULL, &ctx, NID_key_usage,
                                             "critical,keyCertSign,cRLSign,digitalSignature");
    exts = sk_X509_EXTENSION_new_null();
    if (exts == NULL || bc == NULL || ku == NULL || !sk_X509_EXTENSION_push(exts, bc)) {
        X509_EXTENSION_free(bc);
        X509_EXTENSION_free(ku);
        goto out;
    }
    if (!sk_X509_EXTENSION_push(exts, ku)) {
        X509_EXTENSION_free(ku);
        goto out;
    }
    req = X509_REQ_new();
    if (req == NULL || !X509_REQ_set_version(req, 0) || !X509_REQ_set_subject_name(req, dn) ||
        !X509_REQ_set_pubkey(req, key) || !X509_REQ_add_extensions(req, exts) ||
        X509_REQ_sign(req, key, ctl_sign_md(key)) <= 0) {
        fprintf(stderr, "scepctl: cannot build the CSR\n");
        goto out;
    }
    f = fopen(o.csr_out, "w");
    if (f == NULL || PEM_write_X509_REQ(f, req) != 1) {
        fprintf(stderr, "scepctl: cannot write %s\n", o.csr_out);
        goto out;
    }
    printf("CSR: %s (key '%s'%s); have it signed as a CA, then: scepctl ca import --cert FILE --chain FILE\n",
           o.csr_out, tok != NULL ? label : cfg->ca_key_file, tok != NULL ? " in the token" : "");
    rc = 0;
out:
    if (f != NULL && fclose(f) != 0)
        rc = 1;
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    X509_NAME_free(dn);
    EVP_PKEY_free(key);
    hsm_token_close(tok);
    return rc;
}

static int cmd_import(const config *cfg, int argc, char **argv)
{
    struct opts o;
    hsm_token *tok = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    char label[LABEL_MAX], chain_path[CONFIG_PATH_MAX], err[256];
    int rc = 1;

    if (ctl_ca_parse_opts(argc, argv, O_CERT | O_CHAIN | O_FORCE, &o) != 0 || o.cert == NULL)
        return 2;
    if ((cert = ca_read_cert(o.cert)) == NULL) {
        fprintf(stderr, "scepctl: cannot read %s\n", o.cert);
        goto out;
    }
    if (X509_check_ca(cert) < 1) {
        fprintf(stderr, "scepctl: %s is not a CA certificate (basicConstraints CA:TRUE)\n", o.cert);
        goto out;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
        fprintf(stderr, "scepctl: %s has expired\n", o.cert);
        goto out;
    }
    if (o.chain != NULL && ca_read_certs(o.chain, &chain) != 0) {
        fprintf(stderr, "scepctl: cannot read %s\n", o.chain);
        goto out;
    }
    if (chain == NULL && (chain = sk_X509_new_null()) == NULL)
        goto out;
    if (ca_check_chain(cert, chain, err, sizeof(err)) != 0) {
        fprintf(stderr, "scepctl: %s\n", err);
        goto out;
    }
    if (sk_X509_num(chain) > 0) {
        X509 *top = sk_X509_value(chain, sk_X509_num(chain) - 1);
        if (X509_NAME_cmp(X509_get_subject_name(top), X509_get_issuer_name(top)) == 0 &&
            X509_verify(top, X509_get0_pubkey(top)) != 1) {
            fprintf(stderr, "scepctl: the root's self-signature does not verify\n");
            goto out;
        }
    } else if (X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)) != 0) {
        fprintf(stderr, "scepctl: %s is not self-signed: give its issuers with --chain\n", o.cert);
        goto out;
    }
    ctl_ca_label(cfg, label);
    if (ctl_ca_open_token(cfg, &tok) != 0)
        goto out;
    if ((key = ctl_ca_load_key(tok, label, cfg->ca_key_file)) == NULL) {
        fprintf(stderr, "scepctl: CA key %s not found\n", tok != NULL ? label : cfg->ca_key_file);
        goto out;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(cert), key) != 1) {
        fprintf(stderr, "scepctl: %s does not match the CA key %s\n", o.cert,
                tok != NULL ? label : cfg->ca_key_file);
        goto out;
    }
    if (access(cfg->ca_cert, F_OK) == 0 && !o.force) {
        fprintf(stderr, "scepctl: %s exists (--force replaces it, keeping .prev)\n", cfg->ca_cert);
        goto out;
    }
    ca_default_path(cfg, "ca-chain.pem", chain_path, sizeof(chain_path));
    if (ctl_ca_keep_prev(cfg->ca_cert) != 0 || ctl_write_certs(cfg->ca_cert, NULL, cert) != 0 ||
        ctl_ca_keep_prev(chain_path) != 0 ||
        (sk_X509_num(chain) > 0 && ctl_write_certs(chain_path, chain, NULL) != 0))
        goto out;
    printf("CA certificate: %s\n", cfg->ca_cert);
    if (sk_X509_num(chain) > 0)
        printf("CA chain (%d certificate(s)): %s\n", sk_X509_num(chain), chain_path);
    if (cfg->ra_cert[0] != '\0')
        printf("issue the RA certificate from this CA: scepctl ra renew\n");
    rc = 0;
out:
    if (rc != 0)
        ERR_print_errors_fp(stderr);
    ERR_clear_error();
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    hsm_token_close(tok);
    return rc;
}

static int cmd_export(const config *cfg, int argc, char **argv)
{
    struct opts o;
    STACK_OF(X509) *chain = NULL, *out_certs = NULL;
    X509 *ca = NULL;
    char chain_path[CONFIG_PATH_MAX];
    FILE *f = NULL;
    int rc = 1;

    if (ctl_ca_parse_opts(argc, argv, O_FORMAT | O_OUT, &o) != 0 || o.der + o.pem != 1 ||
        o.root + o.all > 1 || (o.all && o.der))
        return 2;
    out_certs = sk_X509_new_null();
    if (out_certs == NULL || (ca = ca_read_cert(cfg->ca_cert)) == NULL) {
        fprintf(stderr, "scepctl: cannot read %s\n", cfg->ca_cert);
        goto out;
    }
    ca_default_path(cfg, "ca-chain.pem", chain_path, sizeof(chain_path));
    if (access(chain_path, F_OK) == 0 && ca_read_certs(chain_path, &chain) != 0) {
        fprintf(stderr, "scepctl: cannot read %s\n", chain_path);
        goto out;
    }
    X509 *top = sk_X509_num(chain) > 0 ? sk_X509_value(chain, sk_X509_num(chain) - 1) : ca;
    if (o.root) {
        if (X509_NAME_cmp(X509_get_subject_name(top), X509_get_issuer_name(top)) != 0) {
            fprintf(stderr, "scepctl: the chain does not include its root\n");
            goto out;
        }
        sk_X509_push(out_certs, top);
    } else {
        sk_X509_push(out_certs, ca);
        for (int i = 0; o.all && i < sk_X509_num(chain); i++)
            sk_X509_push(out_certs, sk_X509_value(chain, i));
    }
    f = o.out != NULL ? fopen(o.out, "wb") : stdout;
    if (f == NULL) {
        fprintf(stderr, "scepctl: cannot write %s\n", o.out);
        goto out;
    }
    int ok = 1;
    for (int i = 0; ok && i < sk_X509_num(out_certs); i++)
        ok = o.der ? i2d_X509_fp(f, sk_X509_value(out_certs, i)) == 1
                   : PEM_write_X509(f, sk_X509_value(out_certs, i)) == 1;
    if (fflush(f) != 0)
        ok = 0;
    rc = ok ? 0 : 1;
out:
    if (f != NULL && f != stdout && fclose(f) != 0)
        rc = 1;
    sk_X509_free(out_certs);
    sk_X509_pop_free(chain, X509_free);
    X509_free(ca);
    return rc;
}

int ctl_ca_main(const config *cfg, int argc, char **argv)
{
    static const struct {
        const char *group, *name;
        int (*fn)(const config *, int, char **);
    } cmds[] = {
        { "ca", "init-root", cmd_init_root },
        { "ca", "init-intermediate", cmd_init_intermediate },
        { "ca", "import", cmd_import },
        { "ca", "stage-next", ctl_ca_stage_next },
        { "ca", "activate-next", ctl_ca_activate_next },
        { "ca", "export", cmd_export },
        { "ra", "renew", ctl_ca_ra_renew },
    };
    if (argc >= 2) {
        for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
            if (strcmp(argv[0], cmds[i].group) == 0 && strcmp(argv[1], cmds[i].name) == 0) {
                int rc = cmds[i].fn(cfg, argc - 2, argv + 2);
                if (rc == 2)
                    usage();
                return rc;
            }
        }
    }
    usage();
    return 2;
}
