/* The admin listener ([admin] listen): POST /admin/revocations and POST /admin/challenges
 * with bearer-token auth (failed tries rate-limited per address, authlimit.h), GET /metrics
 * (metrics.h) and /healthz. Nothing here is reachable from the SCEP listener (route.c). */
#include "engine/server/app_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "engine/net/http.h"
#include "engine/pki/serial.h"
#include "engine/policy/challenge.h"
#include "engine/policy/profile.h"

/* The value of "key" in a flat JSON object of strings ({"serial":"..","reason":".."}) or
 * in a form body (serial=..&reason=..). Returns 1 and a NUL-terminated copy, 0 if absent,
 * -1 if malformed or too long. */
static int body_field(const uint8_t *body, size_t len, const char *key, char *out, size_t outlen)
{
    size_t i = 0, kl = strlen(key);
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i < len && body[i] == '{') {
        for (size_t k = i; k + kl + 2 <= len; k++) {
            if (body[k] != '"' || memcmp(body + k + 1, key, kl) != 0 || body[k + 1 + kl] != '"')
                continue;
            size_t v = k + kl + 2;
            while (v < len && (body[v] == ' ' || body[v] == ':' || body[v] == '\t'))
                v++;
            if (v >= len || body[v] != '"')
                return -1;
            size_t e = ++v;
            while (e < len && body[e] != '"' && body[e] != '\\')
                e++;
            if (e >= len || body[e] != '"' || e - v >= outlen)
                return -1;
            memcpy(out, body + v, e - v);
            out[e - v] = '\0';
            return 1;
        }
        return 0;
    }
    http_slice form = {(const char *)body, len}, v;
    if (!http_query_param(form, key, &v))
        return 0;
    if (v.n >= outlen)
        return -1;
    long n = http_percent_decode(v, out, 1);
    if (n < 0)
        return -1;
    out[n] = '\0';
    return 1;
}

static int admin_reject_ev(app *a, int event, http_response *resp, int status,
                           const char *diag, const char *text, const char *peer)
{
    audit_fields f = {.diag = diag, .peer = peer, .detail = text, .failinfo = -1,
                      .http_status = status};
    audit_emit(a->audit, event, &f);
    route_respond(resp, status, CT_TEXT, text, strlen(text));
    return APP_RESPOND;
}

/* A missing or wrong token: 401, counted for the address's window (authlimit.h), which is
 * audited once when the window ends, not here on every try. */
static int admin_unauthorised(app *a, conn_ref ref, const char *peer, http_response *resp)
{
    static const char text[] = "missing or wrong bearer token\n";
    authlimit_failed(&a->authlimit, a->audit, peer, app_now_ms());
    m_inc(&metrics_shard(a->metrics, ref.shard)->admin_auth_failed);
    route_respond(resp, 401, CT_TEXT, text, strlen(text));
    resp->extra_headers = "WWW-Authenticate: Bearer realm=\"scepd-admin\"\r\n";
    return APP_RESPOND;
}

static int admin_reject(app *a, http_response *resp, int status, const char *diag,
                        const char *text, const char *peer)
{
    return admin_reject_ev(a, AUDIT_REVOKE_FAILED, resp, status, diag, text, peer);
}

/* Bearer token check: both sides hashed, compared in constant time. */
static int admin_authorised(const app *a, const http_request *req)
{
    http_slice h;
    uint8_t got[32];
    if (!a->has_admin || !http_find_header(req, "Authorization", &h) || h.n < 8 ||
        strncasecmp(h.p, "Bearer ", 7) != 0)
        return 0;
    if (EVP_Digest(h.p + 7, h.n - 7, got, NULL, EVP_sha256(), NULL) != 1)
        return 0;
    return CRYPTO_memcmp(got, a->admin_hash, sizeof(got)) == 0;
}

/* What every admin POST endpoint checks first: the API is enabled, the caller holds the
 * token, the method is POST. 1 when one of them failed: the answer is set and *verdict is
 * what the handler returns; 0 to go on. */
static int admin_gate(app *a, const http_request *req, int is_post, conn_ref ref,
                      const char *peer, http_response *resp, int *verdict)
{
    if (!a->has_admin) {
        *verdict = route_reject(a, resp, 404, "admin API disabled\n", peer);
    } else if (!admin_authorised(a, req)) {
        *verdict = admin_unauthorised(a, ref, peer, resp);
    } else if (!is_post) {
        route_reject(a, resp, 405, "method not allowed\n", peer);
        resp->extra_headers = "Allow: POST\r\n";
        *verdict = APP_RESPOND;
    } else {
        return 0;
    }
    return 1;
}

/* POST /admin/revocations: the revocation goes straight to the store writer (no crypto);
 * the answer is sent from the commit callback. */
static int admin_revoke(app *a, const http_request *req, const uint8_t *body, size_t body_len,
                        int is_post, conn_ref ref, const char *peer, http_response *resp)
{
    char serial_txt[80], reason_txt[40], inv_txt[24];
    uint8_t serial[STORE_SERIAL_LEN];
    int reason = 0;
    long long inv = 0;

    int verdict;
    if (admin_gate(a, req, is_post, ref, peer, resp, &verdict))
        return verdict;
    int hs = body_field(body, body_len, "serial", serial_txt, sizeof(serial_txt));
    if (hs != 1 || serial_parse(serial_txt, serial) != 0)
        return admin_reject(a, resp, 400, "bad_serial", "serial missing or not 1-32 hex digits (colons allowed)\n", peer);
    int hr = body_field(body, body_len, "reason", reason_txt, sizeof(reason_txt));
    if (hr < 0 || (hr == 1 && (reason = crl_reason_from_name(reason_txt)) < 0))
        return admin_reject(a, resp, 400, "bad_reason", "unknown reason (RFC 5280 name, e.g. keyCompromise)\n", peer);
    int hi = body_field(body, body_len, "invalidity_date", inv_txt, sizeof(inv_txt));
    if (hi < 0 || (hi == 1 && (sscanf(inv_txt, "%lld", &inv) != 1 || inv <= 0)))
        return admin_reject(a, resp, 400, "bad_invalidity", "invalidity_date must be seconds since the epoch\n", peer);
    job *j = app_job_new(a, JOB_REVOKE, ref, peer, "");
    if (j == NULL)
        return route_respond(resp, 503, CT_TEXT, "busy\n", 5);
    serial_to_hex(serial, j->revoke.serial_hex);
    snprintf(j->revoke.who, sizeof(j->revoke.who), "admin-api %s", peer != NULL ? peer : "");
    j->m_submit_ns = metrics_now_ns();
    store_revocation *rv = &j->put.rev;
    j->put.kind = STORE_PUT_REVOKE;
    memcpy(rv->serial, serial, sizeof(serial));
    rv->reason = reason;
    rv->revoked_at = (int64_t)time(NULL);
    rv->invalidity = (int64_t)inv;
    rv->who = j->revoke.who;
    rv->who_len = strlen(j->revoke.who);
    store_submit(a->store, &j->put);
    return APP_DEFER;
}

/* POST /admin/challenges {"profile":"P","ttl":"60m","subject":"/CN=..","san":"dns:.."}:
 * a new one-time challenge, stored (hashed) by the writer; the value is answered from the
 * commit callback. Generating it is cheap (random bytes, one hash): done right here. */
static int admin_challenge(app *a, const http_request *req, const uint8_t *body, size_t body_len,
                           int is_post, conn_ref ref, const char *peer, http_response *resp)
{
    char pname[64], ttl_txt[32], subject[512], san[1024];
    const char *why = NULL;

    int verdict;
    if (admin_gate(a, req, is_post, ref, peer, resp, &verdict))
        return verdict;
    int hp = body_field(body, body_len, "profile", pname, sizeof(pname));
    const profile *prof = hp == 1 ? profile_set_find(issuer_profiles(app_issuer(a)), pname,
                                                     strlen(pname)) : NULL;
    if (prof == NULL)
        return admin_reject_ev(a, AUDIT_HTTP_REJECTED, resp, 400, "bad_profile", "profile missing or unknown\n", peer);
    if (prof->challenge != PROFILE_CHALLENGE_ONETIME)
        return admin_reject_ev(a, AUDIT_HTTP_REJECTED, resp, 400, "bad_profile", "the profile does not use one-time challenges\n", peer);
    long long ttl_ms = 3600 * 1000LL;
    int ht = body_field(body, body_len, "ttl", ttl_txt, sizeof(ttl_txt));
    if (ht < 0 || (ht == 1 && ((ttl_ms = config_parse_duration_ms(ttl_txt)) < 1000)))
        return admin_reject_ev(a, AUDIT_HTTP_REJECTED, resp, 400, "bad_ttl", "ttl must be a duration of at least 1s (e.g. 60m)\n", peer);
    int hs = body_field(body, body_len, "subject", subject, sizeof(subject));
    int hn = body_field(body, body_len, "san", san, sizeof(san));
    if (hs < 0 || hn < 0)
        return admin_reject_ev(a, AUDIT_HTTP_REJECTED, resp, 400, "bad_binding", "subject or san malformed or too long\n", peer);
    job *j = app_job_new(a, JOB_CHALLENGE, ref, peer, prof->name);
    uint8_t *rec = malloc(CHALLENGE_RECORD_MAX);
    if (j == NULL || rec == NULL) {
        free(rec);
        if (j != NULL)
            app_job_release(&j->reply);
        return route_respond(resp, 503, CT_TEXT, "busy\n", 5);
    }
    int64_t now = (int64_t)time(NULL);
    size_t rec_len = 0;
    if (challenge_create(prof->name, now, ttl_ms / 1000, hs == 1 ? subject : NULL,
                         hn == 1 ? san : NULL, j->challenge.value, j->challenge.key, rec, &rec_len,
                         &why) != 0) {
        free(rec);
        app_job_release(&j->reply);
        char msg[200];
        snprintf(msg, sizeof(msg), "%s\n", why);
        audit_fields f = {.diag = "bad_binding", .peer = peer, .detail = why, .failinfo = -1,
                          .http_status = 400};
        audit_emit(a->audit, AUDIT_HTTP_REJECTED, &f);
        return route_respond(resp, 400, CT_TEXT, why, strlen(why));
    }
    j->msg = rec;
    j->msg_len = rec_len;
    j->challenge.expires = now + ttl_ms / 1000;
    snprintf(j->challenge.who, sizeof(j->challenge.who), "admin-api %s", peer != NULL ? peer : "");
    j->put.kind = STORE_PUT_UPDATE;
    j->put.aux_db = STORE_DB_CHALLENGES;
    j->put.aux_key = j->challenge.key;
    j->put.aux_key_len = sizeof(j->challenge.key);
    j->put.update = job_insert_new;
    j->put.update_arg = j;
    j->m_submit_ns = metrics_now_ns();
    store_submit(a->store, &j->put);
    return APP_DEFER;
}

/* GET /metrics: rendered here on the shard from every thread's slot (a scrape is rare and
 * reads only), answered as a job that owns the text. */
static int serve_metrics(app *a, const http_request *req, conn_ref ref, const char *peer,
                         http_response *resp)
{
    size_t conns[64], *pc = a->nshards <= 64 ? conns : calloc(a->nshards, sizeof(*pc));
    char *text = NULL;
    size_t len = 0;
    int v;
    if (req->method.n != 3 || memcmp(req->method.p, "GET", 3) != 0) {
        route_reject(a, resp, 405, "method not allowed\n", peer);
        resp->extra_headers = "Allow: GET\r\n";
        v = APP_RESPOND;
        goto out;
    }
    if (pc == NULL) {
        v = route_respond(resp, 503, CT_TEXT, "busy\n", 5);
        goto out;
    }
    for (uint32_t i = 0; i < a->nshards; i++)
        pc[i] = shard_conn_count(a->shards[i]);
    metrics_gauges g = {.admitted = atomic_load(&a->admit.inflight), .admit_max = a->admit.max,
                        .shard_conns = pc};
    pthread_mutex_lock(&a->q_mu);
    g.queue_len = a->q_len;
    pthread_mutex_unlock(&a->q_mu);
    crl_snapshot *crl = crl_cache_get(a->crls);
    if (crl != NULL) {
        g.have_crl = 1;
        g.crl_this_update = crl->this_update;
        g.crl_bytes = crl->len;
        g.crl_number = crl->number;
        crl_snapshot_unref(crl);
    }
    job *j = app_job_new(a, JOB_HELD, ref, peer, "");
    if (j == NULL || metrics_render(a->metrics, &g, &text, &len) != 0) {
        if (j != NULL)
            app_job_release(&j->reply);
        v = route_respond(resp, 503, CT_TEXT, "busy\n", 5);
        goto out;
    }
    j->m_op = M_OP_METRICS + 1;
    job_reply(j, 200, "text/plain; version=0.0.4; charset=utf-8", (uint8_t *)text, len);
    shard_deliver(a->shards[ref.shard], &j->reply);
    v = APP_DEFER;
out:
    if (pc != conns)
        free(pc);
    return v;
}

static int path_eq(http_slice p, const char *s)
{
    return p.n == strlen(s) && memcmp(p.p, s, p.n) == 0;
}

/* Admin-API requests from an address past its failed-authentication limit are refused
 * before anything else (the token is not even compared). */
static int admin_api(app *a, const http_request *req, const uint8_t *body, size_t body_len,
                     conn_ref ref, const char *peer, http_response *resp, int challenge)
{
    int is_post = req->method.n == 4 && memcmp(req->method.p, "POST", 4) == 0;
    unsigned retry = 0;
    if (a->has_admin && authlimit_blocked(&a->authlimit, peer, app_now_ms(), &retry)) {
        static const char text[] = "too many failed authentications, retry later\n";
        stage *st = &a->stages[ref.shard];
        m_inc(&metrics_shard(a->metrics, ref.shard)->admin_rate_limited);
        snprintf(st->headers, sizeof(st->headers), "Retry-After: %u\r\n", retry);
        route_respond(resp, 429, CT_TEXT, text, strlen(text));
        resp->extra_headers = st->headers;
        return APP_RESPOND;
    }
    return challenge ? admin_challenge(a, req, body, body_len, is_post, ref, peer, resp)
                     : admin_revoke(a, req, body, body_len, is_post, ref, peer, resp);
}

int admin_route(app *a, const http_request *req, const uint8_t *body, size_t body_len,
                conn_ref ref, const char *peer, http_response *resp)
{
    int op = M_OP_OTHER, v;
    if (path_eq(req->path, "/metrics")) {
        op = M_OP_METRICS;
        v = serve_metrics(a, req, ref, peer, resp);
    } else if (path_eq(req->path, "/healthz")) {
        op = M_OP_HEALTHZ;
        v = route_health(a, ref, peer, resp);
    } else if (path_eq(req->path, "/admin/revocations")) {
        op = M_OP_ADMIN_REVOKE;
        v = admin_api(a, req, body, body_len, ref, peer, resp, 0);
    } else if (path_eq(req->path, "/admin/challenges")) {
        op = M_OP_ADMIN_CHALLENGE;
        v = admin_api(a, req, body, body_len, ref, peer, resp, 1);
    } else {
        v = route_reject(a, resp, 404, "not found\n", peer);
    }
    if (v == APP_RESPOND)
        app_count_request(a, ref.shard, op, resp->status);
    return v;
}
