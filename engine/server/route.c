/* HTTP routing on the shard threads: SCEP operations, /healthz, /crl, /ocsp, /admin. */
#include "engine/server/app_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine/net/http.h"
#include "engine/policy/profile.h"

/* ------------------------------------------------------------------ routing (shard thread) */

void route_stage(app *a, job *j)
{
    stage *st = &a->stages[j->reply.ref.shard];
    j->next = NULL;
    if (st->tail != NULL)
        st->tail->next = j;
    else
        st->head = j;
    st->tail = j;
}

/* End of a shard's completion batch: everything it staged goes to the workers at once.
 * Refusal and drop counts older than a second are audited here too. */
void route_flush(void *ctx, uint32_t shard_index)
{
    app *a = ctx;
    stage *st = &a->stages[shard_index];
    admit_flush(&a->admit, a->audit, 0);
    if (st->head == NULL)
        return;
    worker_queue_push(a, st->head);
    st->head = st->tail = NULL;
}

static int path_is(http_slice path, const char *s, int icase)
{
    size_t n = strlen(s);
    if (path.n != n)
        return 0;
    return icase ? strncasecmp(path.p, s, n) == 0 : memcmp(path.p, s, n) == 0;
}

/* SCEP paths: /scep, /scep/<profile>[/...], and the NDES-compatible names. pname gets the
 * profile the URL names, or "" for the default path (chosen by keyUsage). Returns 1, 0 for
 * a path that is not SCEP, -1 for an unknown profile. */
static int scep_path(const app *a, http_slice path, char *pname, size_t plen)
{
    pname[0] = '\0';
    if (path_is(path, "/cgi-bin/pkiclient.exe", 1) || path_is(path, "/certsrv/mscep/mscep.dll", 1) ||
        path_is(path, "/certsrv/mscep/mscep.dll/pkiclient.exe", 1) || path_is(path, "/scep", 0))
        return 1;
    if (path.n < 6 || memcmp(path.p, "/scep/", 6) != 0)
        return 0;
    const char *name = path.p + 6, *end = path.p + path.n;
    const char *slash = memchr(name, '/', (size_t)(end - name));
    size_t n = (size_t)((slash != NULL ? slash : end) - name);
    /* "/scep/" and "/scep/pkiclient.exe" (clients that append the CGI name) are the default. */
    if (n == 0 || (n == 13 && slash == NULL && strncasecmp(name, "pkiclient.exe", 13) == 0))
        return 1;
    if (n >= plen || profile_set_find(issuer_profiles(app_issuer(a)), name, n) == NULL)
        return -1;
    memcpy(pname, name, n);
    pname[n] = '\0';
    return 1;
}

int route_respond(http_response *resp, int status, const char *ct, const void *body, size_t len)
{
    job_answer(resp, status, ct, body, len);
    return APP_RESPOND;
}

/* Refusals made by the HTTP layer itself (limits, timeouts, malformed requests). */
void route_http_reject(void *ctx, int status, const char *reason, const char *peer)
{
    app *a = ctx;
    audit_fields f = {.diag = "http", .peer = peer, .detail = reason, .failinfo = -1,
                      .http_status = status};
    audit_emit(a->audit, AUDIT_HTTP_REJECTED, &f);
}

int route_reject(app *a, http_response *resp, int status, const char *reason, const char *peer)
{
    route_http_reject(a, status, reason, peer);
    return route_respond(resp, status, CT_TEXT, reason, strlen(reason));
}

#define BUSY_TEXT "server busy, retry later\n"

/* Bounded admission, decided before anything is decoded or copied (and before any crypto):
 * a job of class cls for the workers, counted (admit.h) and with its deadline, or NULL with
 * resp set: 503 with Retry-After when the workers' queue is full (counted and audited at a
 * bounded rate), 503 when out of memory. */
static job *admit_job(app *a, enum admit_class cls, int kind, conn_ref ref, const char *peer,
                      const char *pname, http_response *resp)
{
    job *j = NULL;
    if (!admit_take(&a->admit, cls)) {
        stage *st = &a->stages[ref.shard];
        admit_note(&a->admit, a->audit, ADMIT_REFUSED, peer);
        snprintf(st->headers, sizeof(st->headers), "Retry-After: %u\r\n",
                 admit_retry_after(&a->admit));
        route_respond(resp, 503, CT_TEXT, BUSY_TEXT, strlen(BUSY_TEXT));
        resp->extra_headers = st->headers;
        return NULL;
    }
    if ((j = app_job_new(a, kind, ref, peer, pname)) == NULL) {
        admit_release(&a->admit);
        route_respond(resp, 503, CT_TEXT, BUSY_TEXT, strlen(BUSY_TEXT));
        return NULL;
    }
    j->admitted = 1;
    j->deadline_ms = app_now_ms() + (uint64_t)a->cfg.request_timeout_ms;
    return j;
}

/* Decodes the PKIOperation message of a GET (percent-encoded base64) or POST (DER; base64
 * tolerated). Returns a malloc'd DER or NULL. */
static uint8_t *pki_message(const http_request *req, const uint8_t *body, size_t body_len,
                            int is_get, size_t *outlen)
{
    char *txt = NULL;
    const char *b64 = NULL;
    size_t b64len = 0;
    uint8_t *der = NULL;

    if (is_get) {
        http_slice m;
        if (!http_query_param(req->query, "message", &m) || m.n == 0)
            return NULL;
        txt = malloc(m.n + 1);
        if (txt == NULL)
            return NULL;
        long n = http_percent_decode(m, txt, 0);
        if (n <= 0)
            goto out;
        b64 = txt;
        b64len = (size_t)n;
    } else {
        if (body_len == 0)
            return NULL;
        if (body[0] == 0x30) {     /* DER SEQUENCE: the normal case */
            der = malloc(body_len);
            if (der != NULL) {
                memcpy(der, body, body_len);
                *outlen = body_len;
            }
            return der;
        }
        b64 = (const char *)body;
        b64len = body_len;
    }
    der = malloc(3 * (b64len / 4) + 3);
    if (der != NULL) {
        long n = http_base64_decode(b64, b64len, der);
        if (n <= 0) {
            free(der);
            der = NULL;
        } else {
            *outlen = (size_t)n;
        }
    }
out:
    free(txt);
    return der;
}

static int prefix_is(http_slice path, const char *s)
{
    size_t n = strlen(s);
    return path.n >= n && memcmp(path.p, s, n) == 0;
}

static void unhold_crl(void *p)
{
    crl_snapshot_unref(p);
}

/* GET /crl/ca.crl: the published CRL, by reference (no copy of a large CRL); 304 when the
 * client already has it. */
static int serve_crl(app *a, const http_request *req, conn_ref ref, const char *peer,
                     http_response *resp)
{
    crl_snapshot *crl = crl_cache_get(a->crls);
    http_slice inm;
    if (crl == NULL)
        return route_respond(resp, 503, CT_TEXT, "no CRL published yet\n", 21);
    if (http_find_header(req, "If-None-Match", &inm) && inm.n == strlen(crl->etag) &&
        memcmp(inm.p, crl->etag, inm.n) == 0) {
        stage *st = &a->stages[ref.shard];
        snprintf(st->headers, sizeof(st->headers), "%s", crl->headers);
        crl_snapshot_unref(crl);
        route_respond(resp, 304, NULL, NULL, 0);
        resp->extra_headers = st->headers;
        return APP_RESPOND;
    }
    job *j = app_job_new(a, JOB_HELD, ref, peer, "");
    if (j == NULL) {
        crl_snapshot_unref(crl);
        return route_respond(resp, 503, CT_TEXT, "busy\n", 5);
    }
    j->held.hold = crl;
    j->held.unhold = unhold_crl;
    snprintf(j->held.headers, sizeof(j->held.headers), "%s", crl->headers);
    job_answer(&j->reply.resp, 200, "application/pkix-crl", crl->der, crl->len);
    j->reply.resp.extra_headers = j->held.headers;
    shard_deliver(a->shards[ref.shard], &j->reply);
    return APP_DEFER;
}

/* /ocsp: POST with the DER request as body, or GET /ocsp/<base64, percent-encoded>. */
static int ocsp_route(app *a, const http_request *req, const uint8_t *body, size_t body_len,
                      int is_get, int is_post, conn_ref ref, const char *peer, http_response *resp)
{
    uint8_t *der = NULL;
    size_t len = 0;
    job *j = NULL;
    if (a->ocsp == NULL)
        return route_reject(a, resp, 404, "OCSP responder not configured\n", peer);
    if (is_post && path_is(req->path, "/ocsp", 0)) {
        if (body_len == 0)
            return route_reject(a, resp, 400, "empty OCSP request\n", peer);
        if ((j = admit_job(a, ADMIT_WORK, JOB_OCSP, ref, peer, "", resp)) == NULL)
            return APP_RESPOND;
        der = malloc(body_len);
        if (der == NULL) {
            app_job_release(&j->reply);
            return route_respond(resp, 503, CT_TEXT, BUSY_TEXT, strlen(BUSY_TEXT));
        }
        memcpy(der, body, body_len);
        len = body_len;
    } else if (is_get && req->path.n > 6) {
        http_slice enc = {req->path.p + 6, req->path.n - 6};
        if ((j = admit_job(a, ADMIT_WORK, JOB_OCSP, ref, peer, "", resp)) == NULL)
            return APP_RESPOND;
        char *txt = malloc(enc.n + 1);
        long n = txt != NULL ? http_percent_decode(enc, txt, 0) : -1;
        der = n > 0 ? malloc(3 * ((size_t)n / 4) + 3) : NULL;
        long m = der != NULL ? http_base64_decode(txt, (size_t)n, der) : -1;
        free(txt);
        if (m <= 0) {
            free(der);
            app_job_release(&j->reply);
            return route_reject(a, resp, 400, "OCSP GET request is not base64\n", peer);
        }
        len = (size_t)m;
    } else {
        route_reject(a, resp, 405, "method not allowed\n", peer);
        resp->extra_headers = "Allow: GET, POST\r\n";
        return APP_RESPOND;
    }
    j->msg = der;
    j->msg_len = len;
    route_stage(a, j);
    return APP_DEFER;
}

int route_request(void *ctx, const http_request *req, const uint8_t *body, size_t body_len,
                      conn_ref ref, const char *peer, http_response *resp)
{
    app *a = ctx;
    char pname[64], op[64];
    int is_get = req->method.n == 3 && memcmp(req->method.p, "GET", 3) == 0;
    int is_post = req->method.n == 4 && memcmp(req->method.p, "POST", 4) == 0;

    if (path_is(req->path, "/healthz", 0)) {
        job *j = admit_job(a, ADMIT_HEALTH, JOB_HEALTH, ref, peer, "", resp);
        if (j == NULL)
            return APP_RESPOND;
        route_stage(a, j);
        return APP_DEFER;
    }
    if (path_is(req->path, "/crl/ca.crl", 0)) {
        if (!is_get)
            return route_reject(a, resp, 405, "method not allowed\n", peer);
        return serve_crl(a, req, ref, peer, resp);
    }
    if (path_is(req->path, "/ocsp", 0) || prefix_is(req->path, "/ocsp/"))
        return ocsp_route(a, req, body, body_len, is_get, is_post, ref, peer, resp);
    if (path_is(req->path, "/admin/revocations", 0))
        return admin_revoke(a, req, body, body_len, is_post, ref, peer, resp);
    if (path_is(req->path, "/admin/challenges", 0))
        return admin_challenge(a, req, body, body_len, is_post, ref, peer, resp);
    if (ndes_route_match(req->path))
        return ndes_route(a, req, is_get, ref, peer, resp);
    int sp = scep_path(a, req->path, pname, sizeof(pname));
    if (sp == 0)
        return route_reject(a, resp, 404, "not found\n", peer);
    if (sp < 0)
        return route_reject(a, resp, 404, "unknown profile\n", peer);
    if (!is_get && !is_post) {
        route_reject(a, resp, 405, "method not allowed\n", peer);
        resp->extra_headers = "Allow: GET, POST\r\n";
        return APP_RESPOND;
    }
    http_slice opv;
    if (!http_query_param(req->query, "operation", &opv) || opv.n >= sizeof(op))
        return route_reject(a, resp, 400, "missing or bad operation parameter\n", peer);
    long oplen = http_percent_decode(opv, op, 1);
    if (oplen < 0)
        return route_reject(a, resp, 400, "bad operation parameter\n", peer);
    op[oplen] = '\0';

    if (strcmp(op, "GetCACaps") == 0)
        return route_respond(resp, 200, CT_TEXT, a->ca->caps, a->ca->caps_len);
    if (strcmp(op, "GetCACert") == 0)
        return route_respond(resp, 200, a->ca->cacert_type, a->ca->cacert_body, a->ca->cacert_len);
    if (strcmp(op, "GetNextCACert") == 0) {
        if (a->ca->has_next)
            return route_respond(resp, 200, a->ca->nextca_type, a->ca->nextca_body, a->ca->nextca_len);
        return route_reject(a, resp, 404, "no next CA certificate is staged\n", peer);
    }
    if (strcmp(op, "PKIOperation") != 0)
        return route_reject(a, resp, 400, "unknown operation\n", peer);

    size_t len = 0;
    job *j = admit_job(a, ADMIT_WORK, JOB_PKIOPERATION, ref, peer, pname, resp);
    if (j == NULL)
        return APP_RESPOND;
    uint8_t *der = pki_message(req, body, body_len, is_get, &len);
    if (der == NULL) {
        app_job_release(&j->reply);
        return route_reject(a, resp, 400, "PKIOperation message missing or not base64\n", peer);
    }
    j->msg = der;
    j->msg_len = len;
    route_stage(a, j);
    return APP_DEFER;
}
