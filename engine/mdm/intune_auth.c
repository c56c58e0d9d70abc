/* intune_auth: how scepd reaches and proves itself to Intune's services (intune_internal.h):
 * the OAuth2 client-credentials tokens (one for the Intune API, one for Microsoft Graph),
 * cached and renewed before they expire, and Graph's discovery of the service URLs. Stage
 * thread only. */
#include "engine/mdm/intune_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

const char *const intune_svc_names[SVC__COUNT] = { "ScepRequestValidationFEService",
                                                   "PkiConnectorFEService" };

void intune_uuid_v4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        memset(b, 0, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

/* application/x-www-form-urlencoded value, appended to *buf (len / cap track it). */
static int form_add(char **buf, size_t *len, size_t *cap, const char *name, const char *v,
                    size_t vlen)
{
    size_t need = *len + strlen(name) + 2 + 3 * vlen + 1;
    if (need > *cap) {
        char *n = realloc(*buf, need);
        if (n == NULL)
            return -1;
        *buf = n;
        *cap = need;
    }
    *len += (size_t)sprintf(*buf + *len, "%s%s=", *len > 0 ? "&" : "", name);
    for (size_t i = 0; i < vlen; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~')
            (*buf)[(*len)++] = (char)ch;
        else
            *len += (size_t)sprintf(*buf + *len, "%%%02X", ch);
    }
    (*buf)[*len] = '\0';
    return 0;
}

char *intune_join_url(const char *base, const char *a, const char *b)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    char *u = NULL;
    if (asprintf(&u, "%.*s/%s%s", (int)bl, base, a, b != NULL ? b : "") < 0)
        return NULL;
    return u;
}

/* A string member, case-insensitive name (Newtonsoft and Gson spell them differently). */
const char *intune_jstr(json_t *o, const char *name)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
        if (strcasecmp(k, name) == 0 && json_is_string(v))
            return json_string_value(v);
    return NULL;
}

json_t *intune_jget(json_t *o, const char *name)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
        if (strcasecmp(k, name) == 0)
            return v;
    return NULL;
}

static void fail_list(mdm_op *list, const mdm_verdict *v)
{
    while (list != NULL) {
        mdm_op *n = list->wait_next;
        list->wait_next = NULL;
        mdm_op_complete(list, v);
        list = n;
    }
}

void intune_fail_oom(mdm_op **listp)
{
    mdm_op *list = *listp;
    *listp = NULL;
    mdm_verdict v;
    memset(&v, 0, sizeof(v));
    mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_UNAVAILABLE, "", "out of memory");
    fail_list(list, &v);
}

/* Each waiter's start runs again: it finds what it waited for, or decides it is missing. */
static void advance_list(mdm_op *list)
{
    while (list != NULL) {
        mdm_op *n = list->wait_next;
        list->wait_next = NULL;
        list->start(list);
        list = n;
    }
}

/* ---- tokens ------------------------------------------------------------------------------- */

int intune_token_usable(const intune_token *t)
{
    return t->value != NULL && mdm_now_ms() < t->expires_ms;
}

void intune_token_drop(intune_token *t)
{
    if (t->value != NULL) {
        OPENSSL_cleanse(t->value, strlen(t->value));
        free(t->value);
        t->value = NULL;
    }
}

static intune_state *state_of_token(intune_token *t)
{
    return (intune_state *)((char *)(t - t->which) - offsetof(intune_state, tok));
}

static void token_done(mdm_xfer *x)
{
    intune_token *t = x->owner;
    intune_state *st = state_of_token(t);
    mdm_stage *s = st->s;
    mdm_verdict v;
    memset(&v, 0, sizeof(v));
    json_t *root = NULL;
    int ok = 0;
    if (mdm_xfer_ok(x) && (root = json_loadb(x->resp, x->resp_len, 0, NULL)) != NULL) {
        const char *at = intune_jstr(root, "access_token");
        json_t *ei = intune_jget(root, "expires_in");
        long long life = json_is_integer(ei) ? json_integer_value(ei)
                       : json_is_string(ei) ? atoll(json_string_value(ei)) : 0;
        char *copy = at != NULL && at[0] != '\0' && life > 0 ? strdup(at) : NULL;
        if (copy != NULL) {
            int64_t now = mdm_now_ms(), ms = life * 1000;
            int64_t guard = ms / 10 < 30000 ? ms / 10 : 30000;
            intune_token_drop(t);
            t->value = copy;
            t->expires_ms = now + ms - guard;
            t->refresh_ms = t->expires_ms - s->cfg.refresh_margin_ms;
            if (t->refresh_ms < now + ms / 2)
                t->refresh_ms = now + ms / 2;
            ok = 1;
        }
    }
    if (!ok) {
        mdm_verdict_from_xfer(x, &v);
        if (x->cc == CURLE_OK && (x->status == 400 || x->status == 401 || x->status == 403))
            mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_AUTH, "", st->cred != NULL
                            ? "token request refused (check tenant, client_id and the "
                              "certificate registered with the app)"
                            : "token request refused (check tenant, client_id and the secret)");
        else if (mdm_xfer_ok(x))
            mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_BAD_ANSWER, "", "token answer unreadable");
        v.http_status = (int)x->status;
        v.attempts = x->attempts;
    }
    json_decref(root);
    mdm_xfer_free(x);
    t->xfer = NULL;
    mdm_op *w = t->waiters;
    t->waiters = NULL;
    if (ok)
        advance_list(w);
    else
        fail_list(w, &v);                /* a failed background refresh keeps the old token */
}

/* The client's proof: the secret, or a fresh assertion for the token endpoint url. */
static int add_credential(intune_state *st, const char *url, char **body, size_t *len,
                          size_t *cap)
{
    const mdm_config *c = &st->s->cfg;
    if (st->cred == NULL)
        return form_add(body, len, cap, "client_secret", c->client_secret,
                        c->client_secret_len);
    static const char type[] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    char *jwt = intune_cred_assertion(st->cred, c->client_id, url);
    int rc = jwt == NULL ? -1
             : form_add(body, len, cap, "client_assertion_type", type, sizeof(type) - 1) != 0 ||
               form_add(body, len, cap, "client_assertion", jwt, strlen(jwt)) != 0 ? -1 : 0;
    free(jwt);
    return rc;
}

int intune_token_due(const intune_token *t)
{
    return intune_token_usable(t) && mdm_now_ms() >= t->refresh_ms;
}

void intune_token_fetch(intune_token *t)
{
    if (t->xfer != NULL)
        return;
    intune_state *st = state_of_token(t);
    mdm_stage *s = st->s;
    const mdm_config *c = &s->cfg;
    char *body = NULL, *url = NULL, scope[MDM_URL_MAX + 16];
    size_t len = 0, cap = 0;
    if (t->which == TOK_API) {
        snprintf(scope, sizeof(scope), "%s/.default", c->resource);
    } else {
        snprintf(scope, sizeof(scope), "%s", c->graph_scope);
    }
    atomic_fetch_add(&s->token_fetches, 1);
    if ((url = intune_join_url(c->login_url, c->tenant, "/oauth2/v2.0/token")) == NULL ||
        form_add(&body, &len, &cap, "grant_type", "client_credentials", 18) != 0 ||
        form_add(&body, &len, &cap, "client_id", c->client_id, strlen(c->client_id)) != 0 ||
        add_credential(st, url, &body, &len, &cap) != 0 ||
        form_add(&body, &len, &cap, "scope", scope, strlen(scope)) != 0)
        goto fail;
    struct curl_slist *h = curl_slist_append(NULL,
                                             "Content-Type: application/x-www-form-urlencoded");
    t->xfer = mdm_xfer_new(s, url, h, body, len, c->intune_ca_file, token_done, t);
    body = NULL;
    free(url);
    url = NULL;
    if (t->xfer == NULL)
        goto fail;
    mdm_xfer_start(t->xfer);
    return;
fail:
    free(url);
    if (body != NULL) {
        OPENSSL_cleanse(body, len);
        free(body);
    }
    intune_fail_oom(&t->waiters);
}

void intune_token_wait(intune_token *t, mdm_op *op)
{
    op->wait_next = t->waiters;
    t->waiters = op;
    intune_token_fetch(t);
}

/* ---- discovery ---------------------------------------------------------------------------- */

static void disc_done(mdm_xfer *x)
{
    intune_state *st = x->owner;
    mdm_verdict v;
    memset(&v, 0, sizeof(v));
    json_t *root = NULL, *list;
    int ok = 0;
    if (mdm_xfer_ok(x) && (root = json_loadb(x->resp, x->resp_len, 0, NULL)) != NULL &&
        json_is_array(list = intune_jget(root, "value"))) {
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
            const char *name = intune_jstr(e, "providerName");
            const char *uri = intune_jstr(e, "uri");
            if (name == NULL)
                name = intune_jstr(e, "serviceName");
            for (int k = 0; name != NULL && uri != NULL && k < SVC__COUNT; k++) {
                if (strcasecmp(name, intune_svc_names[k]) != 0 || st->configured[k] ||
                    !mdm_url_allowed(uri))
                    continue;
                free(st->url[k]);
                st->url[k] = strdup(uri);
            }
        }
        ok = 1;
    }
    if (!ok) {
        mdm_verdict_from_xfer(x, &v);
        if (mdm_xfer_ok(x))
            mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_BAD_ANSWER, "", "discovery answer unreadable");
        if (x->status == 401)
            intune_token_drop(&st->tok[TOK_GRAPH]);
    }
    json_decref(root);
    mdm_xfer_free(x);
    st->disc = NULL;
    mdm_op *w = st->disc_waiters;
    st->disc_waiters = NULL;
    if (ok)
        advance_list(w);
    else
        fail_list(w, &v);
}

static void disc_start(intune_state *st)
{
    mdm_stage *s = st->s;
    char *url = NULL, *auth = NULL;
    struct curl_slist *h = NULL;
    atomic_fetch_add(&s->discoveries, 1);
    if (asprintf(&url, "%s/v1.0/servicePrincipals/appId=%s/endpoints", s->cfg.graph_url,
                 s->cfg.intune_app_id) < 0) {
        url = NULL;
        goto fail;
    }
    char rid[37], ridh[64];
    intune_uuid_v4(rid);
    snprintf(ridh, sizeof(ridh), "client-request-id: %s", rid);
    if (asprintf(&auth, "Authorization: Bearer %s", st->tok[TOK_GRAPH].value) < 0) {
        auth = NULL;
        goto fail;
    }
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, ridh);
    h = curl_slist_append(h, "Accept: application/json");
    OPENSSL_cleanse(auth, strlen(auth));
    free(auth);
    st->disc = mdm_xfer_new(s, url, h, NULL, 0, s->cfg.intune_ca_file, disc_done, st);
    free(url);
    if (st->disc == NULL)
        goto fail_nourl;
    mdm_xfer_start(st->disc);
    return;
fail:
    free(url);
fail_nourl:
    intune_fail_oom(&st->disc_waiters);
}

void intune_discover(intune_state *st, mdm_op *op)
{
    op->wait_next = st->disc_waiters;
    st->disc_waiters = op;
    if (st->disc == NULL)
        disc_start(st);
}

/* ---- state -------------------------------------------------------------------------------- */

int intune_state_create(mdm_stage *s, intune_state **out)
{
    intune_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    st->s = s;
    st->tok[TOK_API].which = TOK_API;
    st->tok[TOK_GRAPH].which = TOK_GRAPH;
    char why[256];
    if (s->cfg.client_certificate[0] != '\0') {
        int rc = intune_cred_load(&s->cfg, &st->cred, why, sizeof(why));
        if (rc != 0) {
            intune_state_free(st);
            return rc;
        }
    }
    const char *cfg_url[SVC__COUNT] = { s->cfg.validation_url, s->cfg.pki_url };
    for (int k = 0; k < SVC__COUNT; k++) {
        if (cfg_url[k][0] == '\0')
            continue;
        st->configured[k] = 1;
        if ((st->url[k] = strdup(cfg_url[k])) == NULL) {
            intune_state_free(st);
            return -ENOMEM;
        }
    }
    *out = st;
    return 0;
}

/* At destroy, after the thread has stopped and every op has been completed. */
void intune_state_free(intune_state *st)
{
    if (st == NULL)
        return;
    for (int i = 0; i < 2; i++) {
        mdm_xfer_free(st->tok[i].xfer);
        intune_token_drop(&st->tok[i]);
    }
    mdm_xfer_free(st->disc);
    intune_cred_free(st->cred);
    for (int k = 0; k < SVC__COUNT; k++)
        free(st->url[k]);
    free(st);
}
