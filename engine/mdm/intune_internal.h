/* intune_internal: the seam between intune_auth.c (who Intune's services are and how scepd
 * proves who it is: the OAuth2 token cache and Graph service discovery)
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

struct intune_state {
    mdm_stage    *s;
    intune_token  tok[TOK__COUNT];
    char         *url[SVC__COUNT];
    int           configured[SVC__COUNT];  /* from the configuration: never forgotten */
    mdm_xfer     *disc;
    mdm_op       *disc_waiters;
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

/* ---- helpers shared by both files ---- */
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
