/* intune: token cache, Graph service discovery and the Intune calls (wire contract in
 * intune.h). Everything but the mdm_notify_* / mdm_revocations_* entry points, which only
 * copy their arguments and post an op, runs on the stage thread. */
#include "engine/mdm/intune.h"
#include "engine/mdm/mdm_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#define API_VALIDATION "2018-02-20"
#define API_PKI        "5019-05-05"
#define REV_MAX        500

enum svc { SVC_VALIDATION = 0, SVC_PKI = 1, SVC__COUNT };
static const char *const svc_names[SVC__COUNT] = { "ScepRequestValidationFEService",
                                                   "PkiConnectorFEService" };

enum tok { TOK_API = 0, TOK_GRAPH = 1 };

enum action { A_VALIDATE, A_SUCCESS, A_FAILURE, A_DOWNLOAD, A_UPLOAD };
static const struct { const char *suffix; int svc; const char *api; } actions[] = {
    [A_VALIDATE] = { "ScepActions/validateRequest", SVC_VALIDATION, API_VALIDATION },
    [A_SUCCESS]  = { "ScepActions/successNotification", SVC_VALIDATION, API_VALIDATION },
    [A_FAILURE]  = { "ScepActions/failureNotification", SVC_VALIDATION, API_VALIDATION },
    [A_DOWNLOAD] = { "CertificateAuthorityRequests/downloadRevocationRequests", SVC_PKI, API_PKI },
    [A_UPLOAD]   = { "CertificateAuthorityRequests/uploadRevocationResults", SVC_PKI, API_PKI },
};

typedef struct token {
    char     *value;
    int64_t   expires_ms, refresh_ms;   /* monotonic */
    mdm_xfer *xfer;                     /* a fetch in progress */
    mdm_op   *waiters;
    int       which;                    /* enum tok */
} token;

struct intune_state {
    mdm_stage *s;
    token      tok[2];
    char      *url[SVC__COUNT];
    int        configured[SVC__COUNT];  /* from the configuration: never forgotten */
    mdm_xfer  *disc;
    mdm_op    *disc_waiters;
};

typedef struct iop {
    mdm_op              base;
    int                 action;
    char                txid[256];
    char               *json;           /* the request body */
    char               *csr_b64;        /* A_SUCCESS: body built on the stage thread */
    uint8_t            *cert;
    size_t              cert_len;
    int                 reauth_done, rediscover_done, disc_tried;
    mdm_revocation     *revs;           /* A_DOWNLOAD's answer */
    size_t              nrevs;
    mdm_done_fn         done;
    mdm_revocations_fn  rdone;
    void               *arg;
} iop;

static void iop_advance(iop *op);

/* ---- small helpers ------------------------------------------------------------------------ */

int intune_code_known(const char *code)
{
    static const char *const codes[] = {
#define X(name) #name,
        INTUNE_CODES(X)
#undef X
    };
    for (size_t i = 0; code != NULL && i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(code, codes[i]) == 0)
            return 1;
    return 0;
}

void intune_description(char dst[256], const char *src)
{
    size_t len = src != NULL ? strlen(src) : 0, n = len < 255 ? len : 255;
    if (n < len)
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    for (size_t i = 0; i < n; i++)
        dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? ' ' : src[i];
    dst[n] = '\0';
}

int intune_cert_facts_get(const uint8_t *der, size_t len, intune_cert_facts *out)
{
    const unsigned char *p = der;
    X509 *c = d2i_X509(NULL, &p, (long)len);
    BIO *bio = NULL;
    BIGNUM *bn = NULL;
    char *hex = NULL;
    int rc = -1;
    intune_cert_facts f;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    struct tm tm;
    if (c == NULL || p != der + len || !X509_digest(c, EVP_sha1(), md, &mdlen) || mdlen != 20)
        goto out;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(f.thumbprint + 2 * i, 3, "%02X", md[i]);
    if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), NULL)) == NULL ||
        (hex = BN_bn2hex(bn)) == NULL || strlen(hex) >= sizeof(f.serial))
        goto out;
    snprintf(f.serial, sizeof(f.serial), "%s", hex);
    if (!ASN1_TIME_to_tm(X509_get0_notAfter(c), &tm) ||
        strftime(f.expiry, sizeof(f.expiry), "%Y-%m-%dT%H:%M:%S.000Z", &tm) == 0)
        goto out;
    if ((bio = BIO_new(BIO_s_mem())) == NULL ||
        X509_NAME_print_ex(bio, X509_get_issuer_name(c), 0, XN_FLAG_RFC2253) < 0)
        goto out;
    int n = BIO_read(bio, f.issuer, sizeof(f.issuer) - 1);
    f.issuer[n > 0 ? n : 0] = '\0';
    rc = 0;
out:
    if (rc == 0)
        *out = f;
    OPENSSL_free(hex);
    BN_free(bn);
    BIO_free(bio);
    X509_free(c);
    return rc;
}

static void uuid_v4(char out[37])
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

static char *join_url(const char *base, const char *a, const char *b)
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
static const char *jstr(json_t *o, const char *name)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
        if (strcasecmp(k, name) == 0 && json_is_string(v))
            return json_string_value(v);
    return NULL;
}

static json_t *jget(json_t *o, const char *name)
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

static void advance_list(mdm_op *list)
{
    while (list != NULL) {
        mdm_op *n = list->wait_next;
        list->wait_next = NULL;
        iop_advance((iop *)list);
        list = n;
    }
}

/* ---- tokens ------------------------------------------------------------------------------- */

static int token_usable(const token *t)
{
    return t->value != NULL && mdm_now_ms() < t->expires_ms;
}

static void token_drop(token *t)
{
    if (t->value != NULL) {
        OPENSSL_cleanse(t->value, strlen(t->value));
        free(t->value);
        t->value = NULL;
    }
}

static intune_state *state_of_token(token *t)
{
    return (intune_state *)((char *)(t - t->which) - offsetof(intune_state, tok));
}

static void token_done(mdm_xfer *x)
{
    token *t = x->owner;
    intune_state *st = state_of_token(t);
    mdm_stage *s = st->s;
    mdm_verdict v;
    memset(&v, 0, sizeof(v));
    json_t *root = NULL;
    int ok = 0;
    if (mdm_xfer_ok(x) && (root = json_loadb(x->resp, x->resp_len, 0, NULL)) != NULL) {
        const char *at = jstr(root, "access_token");
        json_t *ei = jget(root, "expires_in");
        long long life = json_is_integer(ei) ? json_integer_value(ei)
                       : json_is_string(ei) ? atoll(json_string_value(ei)) : 0;
        char *copy = at != NULL && at[0] != '\0' && life > 0 ? strdup(at) : NULL;
        if (copy != NULL) {
            int64_t now = mdm_now_ms(), ms = life * 1000;
            int64_t guard = ms / 10 < 30000 ? ms / 10 : 30000;
            token_drop(t);
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
            mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_AUTH, "", "token request refused (check "
                            "tenant, client_id and the secret)");
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

static void token_fetch(token *t)
{
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
    if (form_add(&body, &len, &cap, "grant_type", "client_credentials", 18) != 0 ||
        form_add(&body, &len, &cap, "client_id", c->client_id, strlen(c->client_id)) != 0 ||
        form_add(&body, &len, &cap, "client_secret", c->client_secret, c->client_secret_len) != 0 ||
        form_add(&body, &len, &cap, "scope", scope, strlen(scope)) != 0 ||
        (url = join_url(c->login_url, c->tenant, "/oauth2/v2.0/token")) == NULL)
        goto fail;
    struct curl_slist *h = curl_slist_append(NULL,
                                             "Content-Type: application/x-www-form-urlencoded");
    t->xfer = mdm_xfer_new(s, url, h, body, len, c->intune_ca_file, token_done, t);
    body = NULL;
    free(url);
    if (t->xfer == NULL)
        goto fail;
    mdm_xfer_start(t->xfer);
    return;
fail:
    if (body != NULL) {
        OPENSSL_cleanse(body, len);
        free(body);
    }
    mdm_verdict v;
    memset(&v, 0, sizeof(v));
    mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_UNAVAILABLE, "", "out of memory");
    mdm_op *w = t->waiters;
    t->waiters = NULL;
    fail_list(w, &v);
}

static void token_wait(token *t, mdm_op *op)
{
    op->wait_next = t->waiters;
    t->waiters = op;
    if (t->xfer == NULL)
        token_fetch(t);
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
        json_is_array(list = jget(root, "value"))) {
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e) {
            const char *name = jstr(e, "providerName");
            const char *uri = jstr(e, "uri");
            if (name == NULL)
                name = jstr(e, "serviceName");
            for (int k = 0; name != NULL && uri != NULL && k < SVC__COUNT; k++) {
                if (strcasecmp(name, svc_names[k]) != 0 || st->configured[k] ||
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
            token_drop(&st->tok[TOK_GRAPH]);
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
    mdm_verdict v;
    atomic_fetch_add(&s->discoveries, 1);
    if (asprintf(&url, "%s/v1.0/servicePrincipals/appId=%s/endpoints", s->cfg.graph_url,
                 s->cfg.intune_app_id) < 0) {
        url = NULL;
        goto fail;
    }
    char rid[37], ridh[64];
    uuid_v4(rid);
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
    memset(&v, 0, sizeof(v));
    mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_UNAVAILABLE, "", "out of memory");
    mdm_op *w = st->disc_waiters;
    st->disc_waiters = NULL;
    fail_list(w, &v);
}

/* ---- the service calls -------------------------------------------------------------------- */

static void svc_done(mdm_xfer *x)
{
    iop *op = x->owner;
    intune_state *st = op->base.stage->intune;
    int svc = actions[op->action].svc;
    mdm_verdict v;
    memset(&v, 0, sizeof(v));
    v.http_status = (int)x->status;
    v.attempts = x->attempts;
    if (x->cc == CURLE_OK && x->status == 401 && !op->reauth_done) {
        op->reauth_done = 1;
        token_drop(&st->tok[TOK_API]);
        mdm_xfer_free(x);
        op->base.xfer = NULL;
        iop_advance(op);
        return;
    }
    int moved = (x->cc == CURLE_COULDNT_CONNECT || x->cc == CURLE_COULDNT_RESOLVE_HOST ||
                 (x->cc == CURLE_OK && x->status == 404));
    if (moved && !op->rediscover_done && !st->configured[svc]) {
        op->rediscover_done = 1;
        op->disc_tried = 0;
        free(st->url[svc]);
        st->url[svc] = NULL;
        mdm_xfer_free(x);
        op->base.xfer = NULL;
        iop_advance(op);
        return;
    }
    if (!mdm_xfer_ok(x)) {
        mdm_verdict_from_xfer(x, &v);
        mdm_op_complete(&op->base, &v);
        return;
    }
    json_t *root = json_loadb(x->resp, x->resp_len, 0, NULL);
    if (root == NULL || !json_is_object(root)) {
        mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_BAD_ANSWER, "", "answer is not a JSON object");
        goto done;
    }
    if (op->action == A_DOWNLOAD) {
        json_t *list = jget(root, "value"), *e;
        size_t i;
        if (!json_is_array(list)) {
            mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_BAD_ANSWER, "", "no value list");
            goto done;
        }
        op->revs = calloc(json_array_size(list) + 1, sizeof(*op->revs));
        if (op->revs == NULL) {
            mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_UNAVAILABLE, "", "out of memory");
            goto done;
        }
        json_array_foreach(list, i, e) {
            const char *ctx = jstr(e, "requestContext"), *ser = jstr(e, "serialNumber");
            const char *iss = jstr(e, "issuerName"), *cac = jstr(e, "caConfiguration");
            if (ctx == NULL || ser == NULL)
                continue;                 /* both are required; others are skipped */
            mdm_revocation *r = &op->revs[op->nrevs++];
            snprintf(r->request_context, sizeof(r->request_context), "%s", ctx);
            snprintf(r->serial, sizeof(r->serial), "%s", ser);
            snprintf(r->issuer_name, sizeof(r->issuer_name), "%s", iss != NULL ? iss : "");
            snprintf(r->ca_configuration, sizeof(r->ca_configuration), "%s",
                     cac != NULL ? cac : "");
        }
        mdm_verdict_set(&v, MDM_ALLOW, MDM_DIAG_OK, "", NULL);
        goto done;
    }
    if (op->action == A_UPLOAD) {
        if (json_is_true(jget(root, "value")))
            mdm_verdict_set(&v, MDM_ALLOW, MDM_DIAG_OK, "", NULL);
        else
            mdm_verdict_set(&v, MDM_DENY, MDM_DIAG_DENIED, "", "Intune did not accept the results");
        goto done;
    }
    json_t *inner = jget(root, "value");
    json_t *obj = json_is_object(inner) ? inner : root;
    const char *code = jstr(obj, "code"), *desc = jstr(obj, "errorDescription");
    if (code == NULL)
        mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_BAD_ANSWER, "", "answer has no code");
    else if (strcmp(code, "Success") == 0)
        mdm_verdict_set(&v, MDM_ALLOW, MDM_DIAG_OK, code, NULL);
    else
        mdm_verdict_set(&v, MDM_DENY, MDM_DIAG_DENIED, code,
                        desc != NULL && desc[0] != '\0' ? desc : code);
done:
    v.http_status = (int)x->status;
    v.attempts = x->attempts;
    json_decref(root);
    mdm_op_complete(&op->base, &v);
}

static void svc_send(iop *op)
{
    mdm_stage *s = op->base.stage;
    intune_state *st = s->intune;
    const char *a = actions[op->action].api;
    char *url = join_url(st->url[actions[op->action].svc], actions[op->action].suffix, NULL);
    char *auth = NULL, *body = strdup(op->json);
    char rid[37], ridh[64], api[64], ua[200];
    struct curl_slist *h = NULL;
    mdm_verdict v;
    if (url == NULL || body == NULL ||
        asprintf(&auth, "Authorization: Bearer %s", st->tok[TOK_API].value) < 0) {
        free(url);
        free(body);
        memset(&v, 0, sizeof(v));
        mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_UNAVAILABLE, "", "out of memory");
        mdm_op_complete(&op->base, &v);
        return;
    }
    uuid_v4(rid);
    snprintf(ridh, sizeof(ridh), "client-request-id: %s", rid);
    snprintf(api, sizeof(api), "api-version: %s", a);
    snprintf(ua, sizeof(ua), "UserAgent: %s", s->cfg.provider);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json");
    h = curl_slist_append(h, ridh);
    h = curl_slist_append(h, api);
    h = curl_slist_append(h, ua);
    OPENSSL_cleanse(auth, strlen(auth));
    free(auth);
    op->base.xfer = mdm_xfer_new(s, url, h, body, strlen(body), s->cfg.intune_ca_file, svc_done,
                                 op);
    free(url);
    if (op->base.xfer == NULL) {
        memset(&v, 0, sizeof(v));
        mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_UNAVAILABLE, "", "out of memory");
        mdm_op_complete(&op->base, &v);
        return;
    }
    mdm_xfer_start(op->base.xfer);
}

/* successNotification's body needs the certificate parsed: done here, off the workers. */
static int build_success(iop *op)
{
    intune_cert_facts f;
    if (intune_cert_facts_get(op->cert, op->cert_len, &f) != 0)
        return -1;
    json_t *j = json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s}}", "notification",
                          "transactionId", op->txid, "certificateRequest", op->csr_b64,
                          "certificateThumbprint", f.thumbprint, "certificateSerialNumber",
                          f.serial, "certificateExpirationDateUtc", f.expiry,
                          "issuingCertificateAuthority", f.issuer, "callerInfo",
                          op->base.stage->cfg.provider);
    op->json = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return op->json != NULL ? 0 : -1;
}

/* Moves the op on: certificate facts, API token, service URL (Graph token, discovery), then
 * the call. Each missing piece parks the op on that piece's waiter list. */
static void iop_advance(iop *op)
{
    mdm_stage *s = op->base.stage;
    intune_state *st = s->intune;
    int svc = actions[op->action].svc;
    mdm_verdict v;
    memset(&v, 0, sizeof(v));
    if (op->json == NULL && (op->action != A_SUCCESS || build_success(op) != 0)) {
        mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_BAD_ANSWER, "",
                        "the certificate to notify does not parse");
        mdm_op_complete(&op->base, &v);
        return;
    }
    token *t = &st->tok[TOK_API];
    if (!token_usable(t)) {
        token_wait(t, &op->base);
        return;
    }
    if (mdm_now_ms() >= t->refresh_ms && t->xfer == NULL)
        token_fetch(t);                         /* in the background: this one is still good */
    if (st->url[svc] == NULL) {
        if (op->disc_tried) {
            char why[160];
            snprintf(why, sizeof(why), "%s not found by Graph discovery", svc_names[svc]);
            mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_UNAVAILABLE, "", why);
            mdm_op_complete(&op->base, &v);
            return;
        }
        token *g = &st->tok[TOK_GRAPH];
        if (!token_usable(g)) {
            token_wait(g, &op->base);
            return;
        }
        op->disc_tried = 1;
        op->base.wait_next = st->disc_waiters;
        st->disc_waiters = &op->base;
        if (st->disc == NULL)
            disc_start(st);
        return;
    }
    svc_send(op);
}

static void iop_start(mdm_op *o)
{
    iop_advance((iop *)o);
}

static void iop_free(iop *op)
{
    if (op->json != NULL) {
        OPENSSL_cleanse(op->json, strlen(op->json));
        free(op->json);
    }
    free(op->csr_b64);
    free(op->cert);
    free(op->revs);
    free(op);
}

static void iop_finish(mdm_op *o, const mdm_verdict *v)
{
    iop *op = (iop *)o;
    if (op->action == A_DOWNLOAD)
        op->rdone(op->arg, v, v->result == MDM_ALLOW ? op->revs : NULL,
                  v->result == MDM_ALLOW ? op->nrevs : 0);
    else if (op->done != NULL)
        op->done(op->arg, v);
    iop_free(op);
}

static iop *iop_new(int action, const char *txid)
{
    iop *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->action = action;
    op->base.start = iop_start;
    op->base.finish = iop_finish;
    snprintf(op->txid, sizeof(op->txid), "%s", txid != NULL ? txid : "");
    return op;
}

static int iop_post(mdm_stage *s, iop *op, int counted)
{
    int rc = mdm_stage_post(s, &op->base, counted);
    if (rc != 0)
        iop_free(op);
    return rc;
}

/* ---- entry points ------------------------------------------------------------------------- */

int intune_validate(mdm_stage *s, const mdm_request *f, mdm_done_fn done, void *arg)
{
    if (strlen(f->txid) >= 256)
        return -EINVAL;
    iop *op = iop_new(A_VALIDATE, f->txid);
    char *csr = mdm_base64(f->csr_der, f->csr_len);
    json_t *j = csr != NULL ? json_pack("{s:{s:s,s:s,s:s}}", "request", "transactionId", f->txid,
                                        "certificateRequest", csr, "callerInfo",
                                        s->cfg.provider) : NULL;
    free(csr);
    if (op == NULL || j == NULL || (op->json = json_dumps(j, JSON_COMPACT)) == NULL) {
        json_decref(j);
        if (op != NULL)
            iop_free(op);
        return -ENOMEM;
    }
    json_decref(j);
    op->done = done;
    op->arg = arg;
    return iop_post(s, op, 1);
}

int mdm_notify_success(mdm_stage *s, const char *txid, const uint8_t *csr_der, size_t csr_len,
                       const uint8_t *cert_der, size_t cert_len, mdm_done_fn done, void *arg)
{
    if (s == NULL || txid == NULL || txid[0] == '\0' || strlen(txid) >= 256 || csr_der == NULL ||
        csr_len == 0 || cert_der == NULL || cert_len == 0)
        return -EINVAL;
    if (s->intune == NULL)
        return -ENOTSUP;
    iop *op = iop_new(A_SUCCESS, txid);
    if (op == NULL)
        return -ENOMEM;
    op->csr_b64 = mdm_base64(csr_der, csr_len);
    op->cert = malloc(cert_len);
    if (op->csr_b64 == NULL || op->cert == NULL) {
        iop_free(op);
        return -ENOMEM;
    }
    memcpy(op->cert, cert_der, cert_len);
    op->cert_len = cert_len;
    op->done = done;
    op->arg = arg;
    return iop_post(s, op, 0);
}

int mdm_notify_failure(mdm_stage *s, const char *txid, const uint8_t *csr_der, size_t csr_len,
                       uint32_t hresult, const char *description, mdm_done_fn done, void *arg)
{
    if (s == NULL || txid == NULL || txid[0] == '\0' || strlen(txid) >= 256 || csr_der == NULL ||
        csr_len == 0)
        return -EINVAL;
    if (s->intune == NULL)
        return -ENOTSUP;
    char desc[256];
    intune_description(desc, description);
    if (desc[0] == '\0')
        snprintf(desc, sizeof(desc), "0x%08X", hresult);
    iop *op = iop_new(A_FAILURE, txid);
    char *csr = mdm_base64(csr_der, csr_len);
    json_t *j = csr != NULL ? json_pack("{s:{s:s,s:s,s:I,s:s,s:s}}", "notification",
                                        "transactionId", txid, "certificateRequest", csr,
                                        "hResult", (json_int_t)hresult, "errorDescription", desc,
                                        "callerInfo", s->cfg.provider) : NULL;
    free(csr);
    if (op == NULL || j == NULL || (op->json = json_dumps(j, JSON_COMPACT)) == NULL) {
        json_decref(j);
        if (op != NULL)
            iop_free(op);
        return -ENOMEM;
    }
    json_decref(j);
    op->done = done;
    op->arg = arg;
    return iop_post(s, op, 0);
}

int mdm_revocations_download(mdm_stage *s, int max, const char *issuer_name,
                             mdm_revocations_fn done, void *arg)
{
    if (s == NULL || done == NULL || max < 1 || max > REV_MAX)
        return -EINVAL;
    if (s->intune == NULL)
        return -ENOTSUP;
    iop *op = iop_new(A_DOWNLOAD, "revocations");
    json_t *j = json_pack("{s:{s:i,s:o}}", "downloadParameters", "maxRequests", max,
                          "issuerName", issuer_name != NULL ? json_string(issuer_name)
                                                            : json_null());
    if (op == NULL || j == NULL || (op->json = json_dumps(j, JSON_COMPACT)) == NULL) {
        json_decref(j);
        if (op != NULL)
            iop_free(op);
        return -ENOMEM;
    }
    json_decref(j);
    op->rdone = done;
    op->arg = arg;
    return iop_post(s, op, 0);
}

int mdm_revocations_upload(mdm_stage *s, const mdm_revocation_result *r, size_t n,
                           mdm_done_fn done, void *arg)
{
    if (s == NULL || r == NULL || n == 0 || n > REV_MAX)
        return -EINVAL;
    if (s->intune == NULL)
        return -ENOTSUP;
    iop *op = iop_new(A_UPLOAD, "revocations");
    json_t *list = json_array(), *j = NULL;
    int bad = op == NULL || list == NULL;
    for (size_t i = 0; !bad && i < n; i++) {
        json_t *e = r[i].request_context != NULL
            ? json_pack("{s:s,s:b,s:i,s:s}", "requestContext", r[i].request_context,
                        "succeeded", r[i].succeeded != 0, "errorCode",
                        r[i].succeeded ? 0 : r[i].error_code, "errorMessage",
                        r[i].error_message != NULL ? r[i].error_message : "")
            : NULL;
        bad = e == NULL || json_array_append_new(list, e) != 0;
    }
    if (!bad)
        j = json_pack("{s:O}", "results", list);
    json_decref(list);
    if (bad || j == NULL || (op->json = json_dumps(j, JSON_COMPACT)) == NULL) {
        json_decref(j);
        if (op != NULL)
            iop_free(op);
        return bad && op != NULL && list != NULL ? -EINVAL : -ENOMEM;
    }
    json_decref(j);
    op->done = done;
    op->arg = arg;
    return iop_post(s, op, 0);
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
        token_drop(&st->tok[i]);
    }
    mdm_xfer_free(st->disc);
    for (int k = 0; k < SVC__COUNT; k++)
        free(st->url[k]);
    free(st);
}
