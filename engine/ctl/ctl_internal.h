/* ctl_internal: what the command files of scepctl share (ctl.c: usage, dispatch and these
 * helpers; ctl_init.c, ctl_issued.c, ctl_crl.c, ctl_challenge.c, ctl_request.c: one command
 * group each). Every helper that can fail prints its own "scepctl: ..." line on stderr.
 * Not for use outside engine/ctl/. */
#ifndef SCEPD_CTL_INTERNAL_H
#define SCEPD_CTL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/common/audit.h"
#include "engine/common/config.h"
#include "engine/pki/ca.h"
#include "engine/policy/profile.h"
#include "engine/store/store.h"

/* Room for ctl_who_am_i's text. */
#define CTL_WHO_MAX 160

/* The usage text of every command but ca|ra (ctl_ca.c has its own), on stderr. */
void ctl_usage(void);

/* Opens the configured store and, when r is not NULL, a reader on it; 0, or the store error
 * (message printed). The caller destroys *r and closes *s, also after a failure. */
int ctl_store_open(const config *cfg, store **s, store_reader **r);

/* t (seconds since the epoch) as "YYYY-MM-DDTHH:MM:SSZ" (out: at least 21 bytes). */
void ctl_iso_time(int64_t t, char *out, size_t outlen);

/* Who is acting, for the audit log and a request's decided_by: "scepctl uid=N user=NAME". */
void ctl_who_am_i(char *who, size_t len);

/* The audit log scepd writes to, opened for appending; NULL when there is none to share
 * (audit_log = "-") or it cannot be opened. Caller closes with audit_close. */
audit *ctl_audit(const config *cfg);

/* The profiles of [profiles] dir; 0, or -1 (message printed). Caller destroys *out. */
int ctl_load_profiles(const config *cfg, profile_set **out);

/* The CA scepd uses (reading the token PIN in pkcs11 mode); 0, or -1 (message printed).
 * Caller frees *ca with ca_free, also after a failure. */
int ctl_load_ca(const config *cfg, ca_set **ca);

/* The commands. argc/argv are the words after the command name; each returns the exit
 * status: 0 done, 1 failed (message on stderr), 2 usage. */
int ctl_cmd_init(const config *cfg, int argc, char **argv);      /* ctl_init.c */
int ctl_cmd_cert(const config *cfg, int argc, char **argv);      /* ctl_issued.c */
int ctl_cmd_revoke(const config *cfg, int argc, char **argv);    /* ctl_issued.c */
int ctl_cmd_crl(const config *cfg, int argc, char **argv);       /* ctl_crl.c */
int ctl_cmd_challenge(const config *cfg, int argc, char **argv); /* ctl_challenge.c */
int ctl_cmd_request(const config *cfg, int argc, char **argv);   /* ctl_request.c */
int ctl_cmd_store(const config *cfg, int argc, char **argv);     /* ctl_store.c */

#endif
