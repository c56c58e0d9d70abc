/* intune_responder_calls.c: the Intune calls intune-responder answers, in
 * intune_emulator.py's JSON shapes (the contract: engine/mdm/intune.h): the token endpoint,
 * Graph discovery, ScepActions and the revocation calls, and GET /_stats. */
#include "intune_responder.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* The member "name" of the first object it appears in after p: the byte after its ':', or
 * NULL. A key spelt as a value could fool it: the check is minimal by design (the Python
 * emulator checks every member; this one only what a CA cannot do without). */
static const char *member(const char *p, const char *e, const char *name)
{
    size_t nl = strlen(name);
    while (p < e && (p = memchr(p, '"', (size_t)(e - p))) != NULL) {
        if ((size_t)(e - p) > nl + 1 && memcmp(p + 1, name, nl) == 0 && p[nl + 1] == '"') {
            const char *q = skip_ws(p + nl + 2, e);
            if (q < e && *q == ':')
                return skip_ws(q + 1, e);
        }
        p++;
    }
    return NULL;
}

/* The body is a JSON object whose member `outer` is an object holding a non-blank string
 * "transactionId" (the ScepActions bodies: {"request": {...}} or {"notification": {...}}). */
static int body_has_txid(const char *b, size_t n, const char *outer)
{
    const char *e = b + n, *p = skip_ws(b, e);
    while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        e--;
    if (p == e || *p != '{' || e[-1] != '}')
        return 0;
    if ((p = member(p + 1, e, outer)) == NULL || *p != '{' ||
        (p = member(p + 1, e, "transactionId")) == NULL || p == e || *p != '"')
        return 0;
    int blank = 1;
    for (p++; p < e && *p != '"'; p++) {
        if (*p == '\\' && ++p == e)
            return 0;
        if (*p != ' ')
            blank = 0;
    }
    return p < e && !blank;
}

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
         : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* A form value (application/x-www-form-urlencoded) decoded into dst; -1 if malformed or
 * longer than cap - 1. */
static int form_value(const char *v, size_t n, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%') {
            int hi = i + 2 < n ? hexval(v[i + 1]) : -1, lo = i + 2 < n ? hexval(v[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        dst[o++] = ch;
    }
    dst[o] = '\0';
    return 0;
}

/* POST /{tenant}/oauth2/v2.0/token, client credentials with the secret. */
static int token(rsp *R, conn *c, const req *r, const char *b, int close)
{
    char grant[64] = "", id[128] = "", secret[512] = "", scope[256] = "";
    static const struct { const char *name; size_t off, cap; } fields[] = {
        { "grant_type", 0, 64 }, { "client_id", 1, 128 }, { "client_secret", 2, 512 },
        { "scope", 3, 256 },
    };
    char *dst[] = { grant, id, secret, scope };
    const char *p = b, *e = b + r->body_len;
    R->st.tokens++;
    while (p < e) {
        const char *amp = memchr(p, '&', (size_t)(e - p)), *pe = amp != NULL ? amp : e;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        for (size_t k = 0; eq != NULL && k < sizeof(fields) / sizeof(fields[0]); k++)
            if ((size_t)(eq - p) == strlen(fields[k].name) &&
                memcmp(p, fields[k].name, (size_t)(eq - p)) == 0 &&
                form_value(eq + 1, (size_t)(pe - eq - 1), dst[fields[k].off], fields[k].cap))
                return REPLY(c, 400, "{\"error\":\"invalid_request\"}", close);
        p = pe + 1;
    }
    if (r->path_len != strlen(R->tok_path) || memcmp(r->target, R->tok_path, r->path_len) != 0 ||
        strcmp(id, R->client_id) != 0 || secret[0] == '\0' || strcmp(secret, R->secret) != 0 ||
        strcmp(grant, "client_credentials") != 0)
        return REPLY(c, 401, "{\"error\":\"invalid_client\"}", close);
    size_t sl = strlen(scope);
    int kind = strcmp(scope, API_SCOPE) == 0 ? 0
             : sl > 9 && strcmp(scope + sl - 9, "/.default") == 0 && strstr(scope, "graph") ? 1
             : -1;
    if (kind < 0)
        return REPLY(c, 400, "{\"error\":\"invalid_scope\"}", close);
    R->tok_until[kind] = R->now + (uint64_t)R->token_life * 1000000000ull;
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"token_type\":\"Bearer\",\"expires_in\":%ld,"
                     "\"ext_expires_in\":%ld,\"access_token\":\"%s\"}", R->token_life,
                     R->token_life, R->tok[kind]);
    return rsp_reply(c, 200, body, (size_t)n, close);
}

static int bearer(const rsp *R, const req *r, int kind)
{
    size_t n = strlen(R->tok[kind]);
    return r->auth_len == 7 + n && strncasecmp(r->auth, "Bearer ", 7) == 0 &&
           memcmp(r->auth + 7, R->tok[kind], n) == 0 && R->now < R->tok_until[kind];
}

static int stats(rsp *R, conn *c, int close)
{
    char body[512];
    int n = snprintf(body, sizeof(body),
        "{\"waiting\":%llu,\"max_waiting\":%llu,\"validations\":%llu,"
        "\"success_notifications\":%llu,\"failure_notifications\":%llu,\"tokens\":%llu,"
        "\"discoveries\":%llu,\"revocation_downloads\":%llu,\"revocation_uploads\":%llu,"
        "\"requests\":%llu,\"bad_requests\":%llu,\"continues\":%llu,\"connections\":%llu,"
        "\"open\":%llu}",
        (unsigned long long)R->st.waiting, (unsigned long long)R->st.max_waiting,
        (unsigned long long)R->st.validations, (unsigned long long)R->st.successes,
        (unsigned long long)R->st.failures, (unsigned long long)R->st.tokens,
        (unsigned long long)R->st.discoveries, (unsigned long long)R->st.downloads,
        (unsigned long long)R->st.uploads, (unsigned long long)R->st.requests,
        (unsigned long long)R->st.bad, (unsigned long long)R->st.continues,
        (unsigned long long)R->st.connections,
        (unsigned long long)R->st.open);
    return rsp_reply(c, 200, body, (size_t)n, close);
}

enum route { R_NONE, R_STATS, R_TOKEN, R_DISC, R_VALIDATE, R_SUCCESS, R_FAILURE, R_DOWN, R_UP };
static const struct { const char *path; int post; enum route id; } routes[] = {
    { "/_stats", 0, R_STATS },
    { "/v1.0/servicePrincipals/appId=" INTUNE_APP "/endpoints", 0, R_DISC },
    { "/" SVC_VAL "/ScepActions/validateRequest", 1, R_VALIDATE },
    { "/" SVC_VAL "/ScepActions/successNotification", 1, R_SUCCESS },
    { "/" SVC_VAL "/ScepActions/failureNotification", 1, R_FAILURE },
    { "/" SVC_PKI "/CertificateAuthorityRequests/downloadRevocationRequests", 1, R_DOWN },
    { "/" SVC_PKI "/CertificateAuthorityRequests/uploadRevocationResults", 1, R_UP },
    { "/oauth2/v2.0/token", 1, R_TOKEN },  /* a suffix: any tenant reaches token() */
};

static enum route route_of(const req *r, int *method_ok)
{
    int post = r->method_len == 4 && memcmp(r->method, "POST", 4) == 0;
    int get = r->method_len == 3 && memcmp(r->method, "GET", 3) == 0;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        size_t pl = strlen(routes[i].path);
        int hit = routes[i].id == R_TOKEN
                  ? r->path_len > pl && memcmp(r->target + r->path_len - pl, routes[i].path, pl) == 0
                  : r->path_len == pl && memcmp(r->target, routes[i].path, pl) == 0;
        if (hit) {
            *method_ok = routes[i].post ? post : get;
            return routes[i].id;
        }
    }
    return R_NONE;
}

static int hold(rsp *R, conn *c, int close)
{
    if (rsp_heap_push(R, R->now + (uint64_t)R->delay_ms * 1000000ull, (uint32_t)(c - R->conns),
                  c->gen, 0) != 0) {
        return REPLY(c, 500, "{\"error\":\"out of memory\"}", 1);
    }
    c->held = 1;
    c->held_close = close;
    if (++R->st.waiting > R->st.max_waiting)
        R->st.max_waiting = R->st.waiting;
    return 0;
}

const char rsp_validate_ok[] = "{\"code\":\"Success\",\"errorDescription\":\"\"}";
const size_t rsp_validate_ok_len = sizeof(rsp_validate_ok) - 1;

static int answer(rsp *R, conn *c, const req *r, const char *b)
{
    int ok = 0, close = !r->keep_alive;
    enum route id = route_of(r, &ok);
    R->st.requests++;
    if (id == R_NONE)
        return REPLY(c, 404, "{\"error\":\"not found\"}", close);
    if (!ok)
        return REPLY(c, 405, "{\"error\":\"method not allowed\"}", close);
    if (id == R_STATS)
        return stats(R, c, close);
    if (id == R_TOKEN)
        return token(R, c, r, b, close);
    if (!bearer(R, r, id == R_DISC))
        return REPLY(c, 401, "{\"error\":\"token refused\"}", close);
    switch (id) {
    case R_DISC:
        R->st.discoveries++;
        return rsp_reply(c, 200, R->disc, R->disc_len, close);
    case R_VALIDATE:
    case R_SUCCESS:
    case R_FAILURE:
        if (!body_has_txid(b, r->body_len, id == R_VALIDATE ? "request" : "notification")) {
            R->st.bad++;
            return REPLY(c, 400, "{\"code\":\"BadRequest\"}", close);
        }
        if (id == R_VALIDATE && R->delay_ms > 0)
            return hold(R, c, close);
        R->st.validations += id == R_VALIDATE;
        R->st.successes += id == R_SUCCESS;
        R->st.failures += id == R_FAILURE;
        return rsp_reply(c, 200, rsp_validate_ok, rsp_validate_ok_len, close);
    case R_DOWN:
        R->st.downloads++;
        return REPLY(c, 200, "{\"value\":[]}", close);
    case R_UP:
        R->st.uploads++;
        if (member(b, b + r->body_len, "results") == NULL) {
            R->st.bad++;
            return REPLY(c, 400, "{\"error\":\"ParameterDataInvalidError\"}", close);
        }
        return REPLY(c, 200, "{\"value\":true}", close);
    default:
        return REPLY(c, 404, "{\"error\":\"not found\"}", close);
    }
}


void rsp_dispatch(rsp *R, conn *c, const req *r, const char *b)
{
    (void)answer(R, c, r, b);
}
