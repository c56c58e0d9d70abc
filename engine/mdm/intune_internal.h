/* intune_internal: the seam between intune_auth.c (who Intune's services are and how scepd
 * proves who it is: the OAuth2 token cache, the certificate credential of intune_cred.c, Graph
 * service discovery)
 * and intune.c (what scepd asks them: validation, notifications, revocations). Everything
 * here runs on the stage thread (mdm_internal.h).
 *
 * Waiting: an op that needs a token or a service URL that is not there yet parks on the
 * piece's waiter list (token_wait, intune_discover). When the piece arrives each waiter's
 * op->start runs again (it re-checks what it needs); when it cannot be had each waiter is
 * completed with the error verdict (mdm_op_complete). */
#ifndef SCEPD_MDM_INTUNE_INTERNAL_H
#define SCEPD_MDM_INTUNE_INTERNAL_H

#include <stdint.h>

#include <jansson.h>

#include "engine/mdm/mdm_internal.h"

enum intune_svc { SVC_VALIDATION = 0, SVC_PKI = 1, SVC__COUNT };
extern const char *const intune_svc_names[SVC__COUNT];   /* Graph's providerName values */

enum intune_tok { TOK_API = 0, TOK_GRAPH = 1, TOK__COUNT };

typedef struct intune_token {
    char     *value;
    int64_t   expires_ms, refresh_ms;   /* monotonic */
    mdm_xfer *xfer;                     /* a fetch in progress */
    mdm_op   *waiters;
    int       which;                    /* enum intune_tok */
} intune_token;

typedef struct intune_cred intune_cred;

struct intune_state {
    mdm_stage    *s;
    intune_token  tok[TOK__COUNT];
    char         *url[SVC__COUNT];
    int           configured[SVC__COUNT];  /* from the configuration: never forgotten */
    mdm_xfer     *disc;
    mdm_op       *disc_waiters;
    intune_cred  *cred;                    /* the certificate credential; NULL: the secret */
};

/* ---- tokens (intune_auth.c) ---- */
int  intune_token_usable(const intune_token *t);   /* a value that has not expired */
int  intune_token_due(const intune_token *t);      /* usable but past its refresh time */
void intune_token_drop(intune_token *t);           /* forgets (cleansed) the value */
void intune_token_fetch(intune_token *t);          /* starts a fetch unless one runs */
void intune_token_wait(intune_token *t, mdm_op *op);

/* ---- discovery (intune_auth.c): parks op until Graph has been asked for the service URLs
 * (st->url[] filled or still NULL: op->start decides). Needs a usable Graph token. ---- */
void intune_discover(intune_state *st, mdm_op *op);

/* ---- the certificate credential (intune_cred.c) ---- */
/* Loads client_certificate and its key (client_key, or c->client_token_key for
 * client_key_label) and checks they match. 0, or -EINVAL / -ENOMEM with why set. */
int   intune_cred_load(const mdm_config *c, intune_cred **out, char *why, size_t whylen);
void  intune_cred_free(intune_cred *cr);          /* accepts NULL */
/* A signed client_assertion for the token endpoint aud (caller frees); NULL on error. */
char *intune_cred_assertion(intune_cred *cr, const char *client_id, const char *aud);

/* ---- helpers shared by the files ---- */
void        intune_uuid_v4(char out[37]);
/* base + "/" + a + b (b may be NULL); trailing slashes of base dropped. Caller frees. */
char       *intune_join_url(const char *base, const char *a, const char *b);
/* Members by case-insensitive name (Newtonsoft and Gson spell them differently). */
const char *intune_jstr(json_t *o, const char *name);
json_t     *intune_jget(json_t *o, const char *name);
/* Takes the waiter list *list (left NULL) and completes each op with an ERROR verdict
 * (diag UNAVAILABLE, "out of memory"). */
void        intune_fail_oom(mdm_op **list);

#endif
