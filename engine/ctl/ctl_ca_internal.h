/* ctl_ca_internal: what the files of `scepctl ca|ra` share (ctl_ca.c: command table, helpers,
 * setup and export; ctl_ca_rollover.c: RA renewal, next-CA staging and activation). Every
 * function prints its own message on stderr when it fails. Not for use outside ctl_ca*.c and
 * ctl_init.c (init makes its keys the same way). */
#ifndef SCEPD_CTL_CA_INTERNAL_H
#define SCEPD_CTL_CA_INTERNAL_H

#include <openssl/evp.h>

#include "engine/common/config.h"
#include "hsm/hsm.h"

#define LABEL_MAX 64

/* Options shared by the commands; each command says which it accepts. */
struct opts {
    const char *subject, *key, *csr_out, *cert, *chain, *out;
    int days, force, der, pem, root, all, new_key;
};

enum { O_SUBJECT = 1, O_KEY = 2, O_DAYS = 4, O_CSR = 8, O_CERT = 16, O_CHAIN = 32, O_FORCE = 64,
       O_FORMAT = 128, O_OUT = 256, O_NEWKEY = 512 };

/* Parses the options allowed (O_* bits) into o (defaults: --key rsa:2048); 0 or -1 (usage). */
int ctl_ca_parse_opts(int argc, char **argv, unsigned allowed, struct opts *o);

/* Opens the token in pkcs11 key mode (*tok stays NULL in file mode); 0 or -1. */
int ctl_ca_open_token(const config *cfg, hsm_token **tok);
/* A new key: inside the token under label, or a new 0600 PEM file (never replaced). */
EVP_PKEY *ctl_ca_new_key(hsm_token *tok, const char *label, const char *file, const char *spec);
/* An existing key: the token's under label, or the PEM file's; NULL if absent (no message). */
EVP_PKEY *ctl_ca_load_key(hsm_token *tok, const char *label, const char *file);
/* The CA key's token label (cfg's, or the one recorded beside the CA certificate), into
 * out[LABEL_MAX]. */
void ctl_ca_label(const config *cfg, char *out);

/* Writes text and a newline to path (replacing it); 0 or -1. */
int ctl_ca_write_text(const char *path, const char *text);
/* Keeps the previous version of path as path.prev (replacing an older .prev); 0 or -1. */
int ctl_ca_keep_prev(const char *path);

/* The commands of ctl_ca_rollover.c, called from the table in ctl_ca_main: argc/argv are the
 * options after the subcommand; they return 0, 1 (failed) or 2 (usage). */
int ctl_ca_ra_renew(const config *cfg, int argc, char **argv);
int ctl_ca_stage_next(const config *cfg, int argc, char **argv);
int ctl_ca_activate_next(const config *cfg, int argc, char **argv);

#endif
