/* intune: the Intune calls (wire contract in intune.h): validateRequest, success and failure
 * notifications, revocation download and upload. Tokens and service discovery are
 * intune_auth.c's (intune_internal.h). Everything but the mdm_notify_* / mdm_revocations_*
 * entry points, which only copy their arguments and post an op, runs on the stage thread. */
#include "engine/mdm/intune.h"
#include "engine/mdm/intune_internal.h"

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

enum action { A_VALIDATE, A_SUCCESS, A_FAILURE, A_DOWNLOAD, A_UPLOAD };
static const struct { const char *suffix; int svc; const char *api; } actions[] = {
    [A_VALIDATE] = { "ScepActions/validateRequest", SVC_VALIDATION, API_VALIDATION },
    [A_SUCCESS]  = { "ScepActions/successNotification", SVC_VALIDATION, API_VALIDATION },
    [A_FAILURE]  = { "ScepActions/failureNotification", SVC_VALIDATION, API_VALIDATION },
    [A_DOWNLOAD] = { "CertificateAuthorityRequests/downloadRevocationRequests", SVC_PKI, API_PKI },
    [A_UPLOAD]   = { "CertificateAuthorityRequests/uploadRevocationResults", SVC_PKI, API_PKI },
};

typedef struct iop {
    mdm_op              base;
    int                 action;
    char                txid[256];
    char               *json;           /* the request body */
    char               *csr_b64;        /* A_SUCCESS: body built on the stage thread */
    uint8_t            *cert;
    size_t              cert_len;
    intune_cert_facts  *facts;          /* A_SUCCESS with the facts given: cert not needed */
    int                 reauth_done, rediscover_done, disc_tried;
    mdm_revocation     *revs;           /* A_DOWNLOAD's answer */
    size_t              nrevs;
    mdm_done_fn         done;
    mdm_revocations_fn  rdone;
    void               *arg;
} iop;

static void iop_advance(iop *op);

/* ---- small helpers ------------------------------------------------------------------------ */

const char *mdm_revocation_error_name(int code)
{
    switch (code) {
#define X(name, num, wire) case num: return wire;
        MDM_REV_ERRORS(X)
#undef X
    default:
        return NULL;
    }
}

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

int intune_cert_facts_of(X509 *c, intune_cert_facts *out)
{
    BIO *bio = NULL;
    BIGNUM *bn = NULL;
    char *hex = NULL;
    int rc = -1;
    intune_cert_facts f;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    struct tm tm;
    if (c == NULL || !X509_digest(c, EVP_sha1(), md, &mdlen) || mdlen != 20)
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
    if (X509_NAME_get_text_by_NID(X509_get_issuer_name(c), NID_commonName, f.issuer_cn,
                                  sizeof(f.issuer_cn)) <= 0)
        snprintf(f.issuer_cn, sizeof(f.issuer_cn), "%s", f.issuer);
    rc = 0;
out:
    if (rc == 0)
        *out = f;
    OPENSSL_free(hex);
    BN_free(bn);
    BIO_free(bio);
    return rc;
}

int intune_cert_facts_get(const uint8_t *der, size_t len, intune_cert_facts *out)
{
    const unsigned char *p = der;
    X509 *c = d2i_X509(NULL, &p, (long)len);
    int rc = c != NULL && p == der + len ? intune_cert_facts_of(c, out) : -1;
    X509_free(c);
    return rc;
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
        intune_token_drop(&st->tok[TOK_API]);
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
        json_t *list = intune_jget(root, "value"), *e;
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
            const char *ctx = intune_jstr(e, "requestContext"), *ser = intune_jstr(e, "serialNumber");
            const char *iss = intune_jstr(e, "issuerName"), *cac = intune_jstr(e, "caConfiguration");
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
        json_t *val = intune_jget(root, "value");   /* true, or "true" as a string */
        if (json_is_true(val) ||
            (json_is_string(val) && strcasecmp(json_string_value(val), "true") == 0))
            mdm_verdict_set(&v, MDM_ALLOW, MDM_DIAG_OK, "", NULL);
        else
            mdm_verdict_set(&v, MDM_DENY, MDM_DIAG_DENIED, "", "Intune did not accept the results");
        goto done;
    }
    json_t *inner = intune_jget(root, "value");
    json_t *obj = json_is_object(inner) ? inner : root;
    const char *code = intune_jstr(obj, "code"), *desc = intune_jstr(obj, "errorDescription");
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
    char *url = intune_join_url(st->url[actions[op->action].svc], actions[op->action].suffix, NULL);
    char *auth = NULL, *body = strdup(op->json);
    char rid[37], ridh[64], api[64], ua[200];
    struct curl_slist *h = NULL;
    if (url == NULL || body == NULL ||
        asprintf(&auth, "Authorization: Bearer %s", st->tok[TOK_API].value) < 0) {
        free(url);
        free(body);
        mdm_op *one = &op->base;
        one->wait_next = NULL;
        intune_fail_oom(&one);
        return;
    }
    intune_uuid_v4(rid);
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
        mdm_op *one = &op->base;
        one->wait_next = NULL;
        intune_fail_oom(&one);
        return;
    }
    mdm_xfer_start(op->base.xfer);
}

/* successNotification's body: the facts the caller took from its X509, or the certificate
 * parsed here. */
static int build_success(iop *op)
{
    intune_cert_facts f;
    if (op->facts != NULL)
        f = *op->facts;
    else if (intune_cert_facts_get(op->cert, op->cert_len, &f) != 0)
        return -1;
    const mdm_config *c = &op->base.stage->cfg;
    json_t *j = json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}}", "notification",
                          "transactionId", op->txid, "certificateRequest", op->csr_b64,
                          "certificateThumbprint", f.thumbprint, "certificateSerialNumber",
                          f.serial, "certificateExpirationDateUtc", f.expiry,
                          "issuingCertificateAuthority", f.issuer, "callerInfo", c->provider,
                          "caConfiguration", c->ca_configuration, "certificateAuthority",
                          f.issuer_cn);
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
    intune_token *t = &st->tok[TOK_API];
    if (!intune_token_usable(t)) {
        intune_token_wait(t, &op->base);
        return;
    }
    if (intune_token_due(t))
        intune_token_fetch(t);            /* in the background: this one is still good */
    if (st->url[svc] == NULL) {
        if (op->disc_tried) {
            char why[160];
            snprintf(why, sizeof(why), "%s not found by Graph discovery", intune_svc_names[svc]);
            mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_UNAVAILABLE, "", why);
            mdm_op_complete(&op->base, &v);
            return;
        }
        intune_token *g = &st->tok[TOK_GRAPH];
        if (!intune_token_usable(g)) {
            intune_token_wait(g, &op->base);
            return;
        }
        op->disc_tried = 1;
        intune_discover(st, &op->base);
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
    free(op->facts);
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

/* Posts a new op of action with body (a reference taken: released here) and its callback
 * (done, or rdone for A_DOWNLOAD). 0 or -errno, as mdm_stage_post; -ENOMEM when body is
 * NULL (a json_pack that failed). */
static int iop_submit(mdm_stage *s, int action, const char *txid, json_t *body, int counted,
                      mdm_done_fn done, mdm_revocations_fn rdone, void *arg)
{
    iop *op = iop_new(action, txid);
    int rc = -ENOMEM;
    if (op != NULL && body != NULL && (op->json = json_dumps(body, JSON_COMPACT)) != NULL) {
        op->done = done;
        op->rdone = rdone;
        op->arg = arg;
        rc = mdm_stage_post(s, &op->base, counted);
    }
    if (rc != 0 && op != NULL)
        iop_free(op);
    json_decref(body);
    return rc;
}

/* The checks every notification shares: -EINVAL, -ENOTSUP or 0. */
static int notify_check(mdm_stage *s, const char *txid, const uint8_t *csr_der, size_t csr_len)
{
    if (s == NULL || txid == NULL || txid[0] == '\0' || strlen(txid) >= 256 || csr_der == NULL ||
        csr_len == 0)
        return -EINVAL;
    return s->intune == NULL ? -ENOTSUP : 0;
}

/* ---- entry points ------------------------------------------------------------------------- */

int intune_validate(mdm_stage *s, const mdm_request *f, mdm_done_fn done, void *arg)
{
    if (strlen(f->txid) >= 256)
        return -EINVAL;
    char *csr = mdm_base64(f->csr_der, f->csr_len);
    json_t *j = csr != NULL ? json_pack("{s:{s:s,s:s,s:s}}", "request", "transactionId", f->txid,
                                        "certificateRequest", csr, "callerInfo",
                                        s->cfg.provider) : NULL;
    free(csr);
    return iop_submit(s, A_VALIDATE, f->txid, j, 1, done, NULL, arg);
}

/* An A_SUCCESS op with the CSR (and then either the certificate or its facts) copied. */
static int notify_success_post(mdm_stage *s, const char *txid, const uint8_t *csr_der,
                               size_t csr_len, const uint8_t *cert_der, size_t cert_len,
                               const intune_cert_facts *facts, mdm_done_fn done, void *arg)
{
    int rc = notify_check(s, txid, csr_der, csr_len);
    if (rc != 0 || (facts == NULL && (cert_der == NULL || cert_len == 0)))
        return rc != 0 ? rc : -EINVAL;
    iop *op = iop_new(A_SUCCESS, txid);
    if (op == NULL)
        return -ENOMEM;
    op->csr_b64 = mdm_base64(csr_der, csr_len);
    if (facts != NULL) {
        if ((op->facts = malloc(sizeof(*op->facts))) != NULL)
            *op->facts = *facts;
    } else if ((op->cert = malloc(cert_len)) != NULL) {
        memcpy(op->cert, cert_der, cert_len);
        op->cert_len = cert_len;
    }
    if (op->csr_b64 == NULL || (op->facts == NULL && op->cert == NULL)) {
        iop_free(op);
        return -ENOMEM;
    }
    op->done = done;
    op->arg = arg;
    if ((rc = mdm_stage_post(s, &op->base, 0)) != 0)
        iop_free(op);
    return rc;
}

int mdm_notify_success(mdm_stage *s, const char *txid, const uint8_t *csr_der, size_t csr_len,
                       const uint8_t *cert_der, size_t cert_len, mdm_done_fn done, void *arg)
{
    return notify_success_post(s, txid, csr_der, csr_len, cert_der, cert_len, NULL, done, arg);
}

int mdm_notify_success_facts(mdm_stage *s, const char *txid, const uint8_t *csr_der,
                             size_t csr_len, const intune_cert_facts *facts, mdm_done_fn done,
                             void *arg)
{
    if (facts == NULL)
        return -EINVAL;
    return notify_success_post(s, txid, csr_der, csr_len, NULL, 0, facts, done, arg);
}

int mdm_notify_failure(mdm_stage *s, const char *txid, const uint8_t *csr_der, size_t csr_len,
                       uint32_t hresult, const char *description, mdm_done_fn done, void *arg)
{
    int rc = notify_check(s, txid, csr_der, csr_len);
    if (rc != 0)
        return rc;
    char desc[256];
    intune_description(desc, description);
    if (strspn(desc, " ") == strlen(desc))     /* the reference library refuses blank ones */
        snprintf(desc, sizeof(desc), "0x%08X", hresult);
    char *csr = mdm_base64(csr_der, csr_len);
    json_t *j = csr != NULL ? json_pack("{s:{s:s,s:s,s:I,s:s,s:s}}", "notification",
                                        "transactionId", txid, "certificateRequest", csr,
                                        "hResult", (json_int_t)hresult, "errorDescription", desc,
                                        "callerInfo", s->cfg.provider) : NULL;
    free(csr);
    return iop_submit(s, A_FAILURE, txid, j, 0, done, NULL, arg);
}

int mdm_revocations_download(mdm_stage *s, int max, const char *issuer_name,
                             mdm_revocations_fn done, void *arg)
{
    if (s == NULL || done == NULL || max < 1 || max > REV_MAX)
        return -EINVAL;
    if (s->intune == NULL)
        return -ENOTSUP;
    json_t *j = json_pack("{s:{s:i,s:o}}", "downloadParameters", "maxRequests", max,
                          "issuerName", issuer_name != NULL ? json_string(issuer_name)
                                                            : json_null());
    return iop_submit(s, A_DOWNLOAD, "revocations", j, 0, NULL, done, arg);
}

int mdm_revocations_upload(mdm_stage *s, const mdm_revocation_result *r, size_t n,
                           mdm_done_fn done, void *arg)
{
    if (s == NULL || r == NULL || n == 0 || n > REV_MAX)
        return -EINVAL;
    if (s->intune == NULL)
        return -ENOTSUP;
    for (size_t i = 0; i < n; i++)
        if (r[i].request_context == NULL ||
            mdm_revocation_error_name(r[i].succeeded ? MDM_REV_OK : r[i].error_code) == NULL ||
            (!r[i].succeeded && r[i].error_code == MDM_REV_OK))
            return -EINVAL;
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < n; i++) {
        /* Succeeded goes with None and no message (the reference library refuses others). */
        int ok = r[i].succeeded != 0;
        json_t *msg = !ok && r[i].error_message != NULL ? json_string(r[i].error_message)
                                                        : json_null();
        json_t *e = json_pack("{s:s,s:b,s:s,s:o}", "requestContext", r[i].request_context,
                              "succeeded", ok, "errorCode",
                              mdm_revocation_error_name(ok ? MDM_REV_OK : r[i].error_code),
                              "errorMessage", msg);
        if (e == NULL || json_array_append_new(list, e) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    json_t *j = list != NULL ? json_pack("{s:o}", "results", list) : NULL;
    return iop_submit(s, A_UPLOAD, "revocations", j, 0, done, NULL, arg);
}
