/* webhook: builds and signs the webhook call, reads its answer (contract in webhook.h). The
 * body is built and signed by mdm_submit's caller thread; the exchange runs on the stage
 * thread. */
#include "engine/mdm/webhook.h"
#include "engine/mdm/mdm_internal.h"

#include "engine/common/hex.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

typedef struct wop {
    mdm_op        base;
    char         *body;
    size_t        body_len;
    char          sig_header[200];
    mdm_done_fn   done;
    void         *arg;
} wop;

int webhook_sign(const uint8_t *key, size_t keylen, long long t, const char *body, size_t len,
                 char out[65])
{
    char ts[32];
    int tl = snprintf(ts, sizeof(ts), "%lld.", t);
    unsigned char md[32];
    size_t mdlen = 0;
    int rc = -1;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (ctx == NULL || !EVP_MAC_init(ctx, key, keylen, params) ||
        !EVP_MAC_update(ctx, (const unsigned char *)ts, (size_t)tl) ||
        !EVP_MAC_update(ctx, (const unsigned char *)body, len) ||
        !EVP_MAC_final(ctx, md, &mdlen, sizeof(md)) || mdlen != sizeof(md))
        goto out;
    hex_encode(md, sizeof(md), out);
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

static void wop_done(mdm_xfer *x)
{
    wop *op = x->owner;
    mdm_verdict v;
    memset(&v, 0, sizeof(v));
    json_t *root = NULL, *allow;
    if (!mdm_xfer_ok(x) || x->status != 200) {
        mdm_verdict_from_xfer(x, &v);
        if (x->cc == CURLE_OK && x->status >= 200 && x->status < 300)
            mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_BAD_ANSWER, "", "webhook answered 2xx but not 200");
    } else if ((root = json_loadb(x->resp, x->resp_len, 0, NULL)) == NULL ||
               !json_is_boolean(allow = json_object_get(root, "allow"))) {
        mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_BAD_ANSWER, "",
                        "webhook answer is not {\"allow\": true|false, ...}");
    } else if (json_is_true(allow)) {
        mdm_verdict_set(&v, MDM_ALLOW, MDM_DIAG_OK, "", "allowed by the webhook");
    } else {
        json_t *r = json_object_get(root, "reason"), *c = json_object_get(root, "code");
        mdm_verdict_set(&v, MDM_DENY, MDM_DIAG_DENIED, json_is_string(c) ? json_string_value(c) : "",
                        json_is_string(r) ? json_string_value(r) : "denied by the webhook");
    }
    v.http_status = (int)x->status;
    v.attempts = x->attempts;
    json_decref(root);
    mdm_op_complete(&op->base, &v);
}

static void wop_start(mdm_op *o)
{
    wop *op = (wop *)o;
    mdm_stage *s = o->stage;
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json");
    h = curl_slist_append(h, op->sig_header);
    h = curl_slist_append(h, "Expect:");          /* no 100-continue round trip */
    o->xfer = mdm_xfer_new(s, s->cfg.webhook_url, h, op->body, op->body_len,
                           s->cfg.webhook_ca_file, wop_done, op);
    op->body = NULL;
    if (o->xfer == NULL) {
        mdm_verdict v;
        memset(&v, 0, sizeof(v));
        mdm_verdict_set(&v, MDM_ERROR, MDM_DIAG_UNAVAILABLE, "", "out of memory");
        mdm_op_complete(o, &v);
        return;
    }
    mdm_xfer_start(o->xfer);
}

static void wop_free(wop *op)
{
    if (op->body != NULL) {
        OPENSSL_cleanse(op->body, op->body_len);
        free(op->body);
    }
    free(op);
}

static void wop_finish(mdm_op *o, const mdm_verdict *v)
{
    wop *op = (wop *)o;
    op->done(op->arg, v);
    wop_free(op);
}

static json_t *str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

int webhook_validate(mdm_stage *s, const mdm_request *f, mdm_done_fn done, void *arg)
{
    wop *op = calloc(1, sizeof(*op));
    char *csr = mdm_base64(f->csr_der, f->csr_len), id[33], sig[65];
    unsigned char rnd[16];
    json_t *sans = json_array(), *j = NULL;
    int rc = -ENOMEM;
    long long t = (long long)time(NULL);
    if (op == NULL || csr == NULL || sans == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto out;
    hex_encode(rnd, sizeof(rnd), id);
    for (size_t i = 0; i < f->san_count; i++)
        if (f->sans[i] == NULL || json_array_append_new(sans, json_string(f->sans[i])) != 0) {
            rc = -EINVAL;                    /* NULL or not UTF-8 */
            goto out;
        }
    j = json_object();
    if (j == NULL ||
        json_object_set_new(j, "version", json_integer(1)) != 0 ||
        json_object_set_new(j, "id", json_string(id)) != 0 ||
        json_object_set_new(j, "timestamp", json_integer(t)) != 0 ||
        json_object_set_new(j, "transactionId", str_or_null(f->txid)) != 0 ||
        json_object_set_new(j, "profile", str_or_null(f->profile)) != 0 ||
        json_object_set_new(j, "challenge", str_or_null(f->challenge)) != 0 ||
        json_object_set_new(j, "csr", json_string(csr)) != 0 ||
        json_object_set_new(j, "subject", str_or_null(f->subject)) != 0 ||
        json_object_set(j, "subjectAltNames", sans) != 0 ||
        json_object_set_new(j, "peer", str_or_null(f->peer)) != 0) {
        rc = -EINVAL;                        /* a string that is not UTF-8 */
        goto out;
    }
    op->body = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (op->body == NULL)
        goto out;
    op->body_len = strlen(op->body);
    if (webhook_sign(s->cfg.webhook_secret, s->cfg.webhook_secret_len, t, op->body,
                     op->body_len, sig) != 0)
        goto out;
    snprintf(op->sig_header, sizeof(op->sig_header), "%s: t=%lld,v1=%s",
             s->cfg.signature_header, t, sig);
    op->base.start = wop_start;
    op->base.finish = wop_finish;
    op->done = done;
    op->arg = arg;
    rc = mdm_stage_post(s, &op->base, 1);
out:
    if (rc != 0 && op != NULL)
        wop_free(op);
    json_decref(j);
    json_decref(sans);
    free(csr);
    return rc;
}
