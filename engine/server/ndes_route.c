/* GET /certsrv/mscep_admin/: NDES's administrator page, carrying a fresh one-time challenge
 * (engine/mdm/ndes.h for what of NDES's page is matched), for MDMs and scripts written for
 * NDES (Ivanti EPM, Jamf, PowerShell scrapers). HTTP Basic against [ndes] users_file; the
 * challenge (16 hex digits, NDES's shape) is recorded like any one-time challenge of
 * [ndes] profile (ttl [ndes] ttl, used once) and the page is answered from the commit
 * callback, so a value the client sees is always durable.
 *
 * Users file: "name:password" lines ('#' comments, blank lines ignored). Only SHA-256 hashes
 * of "name:password" are kept in memory, compared in constant time against every entry. */
#include "engine/server/app_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "engine/common/file.h"
#include "engine/mdm/mdm_config.h"
#include "engine/mdm/ndes.h"
#include "engine/policy/challenge.h"
#include "engine/policy/profile.h"

#define NDES_USERS_MAX 64

struct ndes_state {
    uint8_t  users[NDES_USERS_MAX][32];   /* SHA-256 of "name:password" */
    size_t   nusers;
    uint8_t *ca_der;                      /* the CA certificate (the page's thumbprint) */
    size_t   ca_len;
};

static const char AUTH_HEADERS[] = "WWW-Authenticate: Basic realm=\"scepd\"\r\n";

/* Reads the users file into st. 0 or -1 with err. */
static int load_users(struct ndes_state *st, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    if (file_read(path, 1 << 20, &text, &len) != 0) {
        snprintf(err, errlen, "[ndes] users_file %s: cannot read it", path);
        return -1;
    }
    int rc = -1;
    for (char *line = text, *next; line != NULL && line < text + len; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        if (strchr(line, ':') == NULL || line[0] == ':' || st->nusers == NDES_USERS_MAX) {
            snprintf(err, errlen, "[ndes] users_file %s: want \"name:password\" lines (at most "
                     "%d)", path, NDES_USERS_MAX);
            goto out;
        }
        if (EVP_Digest(line, n, st->users[st->nusers], NULL, EVP_sha256(), NULL) != 1)
            goto out;
        st->nusers++;
    }
    if (st->nusers == 0) {
        snprintf(err, errlen, "[ndes] users_file %s: no user", path);
        goto out;
    }
    rc = 0;
out:
    OPENSSL_cleanse(text, len);
    free(text);
    return rc;
}

int ndes_route_setup(app *a, char *err, size_t errlen)
{
    const mdm_config *mc = a->mdm_cfg;
    struct ndes_state *st = NULL;
    unsigned char *der = NULL;
    int rc = -1;

    if (mc == NULL || mc->ndes_users_file[0] == '\0')
        return 0;
    const profile *p = profile_set_find(issuer_profiles(app_issuer(a)), mc->ndes_profile,
                                        strlen(mc->ndes_profile));
    if (p == NULL || p->challenge != PROFILE_CHALLENGE_ONETIME) {
        snprintf(err, errlen, "[ndes] profile '%s': no such profile with challenge = onetime",
                 mc->ndes_profile);
        goto out;
    }
    if ((st = calloc(1, sizeof(*st))) == NULL || load_users(st, mc->ndes_users_file, err,
                                                            errlen) != 0)
        goto out;
    int dl = i2d_X509(a->ca->ca_cert, &der);
    if (dl <= 0 || (st->ca_der = malloc((size_t)dl)) == NULL)
        goto out;
    memcpy(st->ca_der, der, (size_t)dl);
    st->ca_len = (size_t)dl;
    a->ndes = st;
    st = NULL;
    rc = 0;
out:
    OPENSSL_free(der);
    if (st != NULL) {
        OPENSSL_cleanse(st->users, sizeof(st->users));
        free(st->ca_der);
        free(st);
    }
    return rc;
}

void ndes_route_free(app *a)
{
    struct ndes_state *st = a->ndes;
    if (st == NULL)
        return;
    OPENSSL_cleanse(st->users, sizeof(st->users));
    free(st->ca_der);
    free(st);
    a->ndes = NULL;
}

int ndes_route_match(http_slice path)
{
    static const char *const paths[] = { "/certsrv/mscep_admin", "/certsrv/mscep_admin/",
                                         "/certsrv/mscep_admin/default.asp" };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        if (path.n == strlen(paths[i]) && strncasecmp(path.p, paths[i], path.n) == 0)
            return 1;
    return 0;
}

/* 1 when the request carries Basic credentials of a listed user; who gets the name. Every
 * entry is compared (no early exit on a match). */
static int authorised(const struct ndes_state *st, const http_request *req, char *who,
                      size_t wholen)
{
    http_slice v;
    uint8_t cred[512], h[32];
    int ok = 0;
    if (!http_find_header(req, "Authorization", &v) || v.n < 7 || v.n > 600 ||
        strncasecmp(v.p, "Basic ", 6) != 0)
        return 0;
    long n = http_base64_decode(v.p + 6, v.n - 6, cred);
    if (n <= 0 || (size_t)n >= sizeof(cred) || memchr(cred, ':', (size_t)n) == NULL)
        goto out;
    if (EVP_Digest(cred, (size_t)n, h, NULL, EVP_sha256(), NULL) != 1)
        goto out;
    for (size_t i = 0; i < st->nusers; i++)
        ok |= CRYPTO_memcmp(h, st->users[i], sizeof(h)) == 0;
    if (ok) {
        size_t un = (size_t)((uint8_t *)memchr(cred, ':', (size_t)n) - cred);
        snprintf(who, wholen, "ndes %.*s", (int)(un < 60 ? un : 60), (const char *)cred);
    }
out:
    OPENSSL_cleanse(cred, sizeof(cred));
    return ok;
}

int ndes_route(app *a, const http_request *req, int is_get, conn_ref ref, const char *peer,
               http_response *resp)
{
    const mdm_config *mc = a->mdm_cfg;
    char who[80];
    challenge_record rec;
    job *j = NULL;

    if (a->ndes == NULL)
        return route_reject(a, resp, 404, "NDES page not configured\n", peer);
    if (!is_get) {
        route_reject(a, resp, 405, "method not allowed\n", peer);
        resp->extra_headers = "Allow: GET\r\n";
        return APP_RESPOND;
    }
    if (!authorised(a->ndes, req, who, sizeof(who))) {
        audit_fields f = {.diag = "unauthorized", .peer = peer, .failinfo = -1,
                          .detail = "NDES page: missing or wrong Basic credentials",
                          .http_status = 401};
        audit_emit(a->audit, AUDIT_HTTP_REJECTED, &f);
        route_respond(resp, 401, CT_TEXT, "authentication required\n", 24);
        resp->extra_headers = AUTH_HEADERS;
        return APP_RESPOND;
    }
    uint8_t *buf = malloc(CHALLENGE_RECORD_MAX);
    if (buf == NULL || (j = app_job_new(a, JOB_CHALLENGE, ref, peer, mc->ndes_profile)) == NULL)
        goto busy;
    j->m_op = M_OP_OTHER + 1;          /* the SCEP listener's page, not the admin API */
    int64_t now = (int64_t)time(NULL);
    char value[NDES_CHALLENGE_LEN + 1];
    if (ndes_challenge_generate(value) != 0 ||
        challenge_record_init(&rec, NULL, 0, value, strlen(value), mc->ndes_profile, now,
                              mc->ndes_ttl_s, NULL, NULL) != 0 ||
        challenge_hash(NULL, 0, value, strlen(value), j->challenge.key) != 0)
        goto busy;
    int n = challenge_encode(&rec, buf, CHALLENGE_RECORD_MAX);
    if (n < 0)
        goto busy;
    snprintf(j->challenge.value, sizeof(j->challenge.value), "%s", value);
    OPENSSL_cleanse(value, sizeof(value));
    j->msg = buf;
    j->msg_len = (size_t)n;
    j->challenge.expires = now + mc->ndes_ttl_s;
    j->challenge.ndes = 1;
    snprintf(j->challenge.who, sizeof(j->challenge.who), "%s %s", who, peer != NULL ? peer : "");
    j->put.kind = STORE_PUT_UPDATE;
    j->put.aux_db = STORE_DB_CHALLENGES;
    j->put.aux_key = j->challenge.key;
    j->put.aux_key_len = sizeof(j->challenge.key);
    j->put.update = job_insert_new;
    j->put.update_arg = j;
    store_submit(a->store, &j->put);
    return APP_DEFER;
busy:
    free(buf);
    if (j != NULL)
        app_job_release(&j->reply);
    return route_respond(resp, 503, CT_TEXT, "busy\n", 5);
}

void ndes_committed(app *a, job *j)
{
    const mdm_config *mc = a->mdm_cfg;
    int ok = j->put.result == STORE_OK && j->put.verdict == 0;
    uint8_t *page = NULL;
    size_t len = 0;
    const char *ct = NULL;
    audit_fields f = {.profile = j->profile, .peer = j->peer, .detail = j->challenge.who,
                      .diag = ok ? NULL : "store_failure", .failinfo = -1,
                      .http_status = ok ? 200 : 503};
    audit_emit(a->audit, ok ? AUDIT_CHALLENGE_CREATED : AUDIT_STORE_FAILURE, &f);
    ndes_page_in in = {.kind = NDES_PAGE_CHALLENGE, .encoding = mc->ndes_encoding,
                       .challenge = j->challenge.value,
                       .ttl_minutes = (mc->ndes_ttl_s + 59) / 60,
                       .ca_der = a->ndes->ca_der, .ca_len = a->ndes->ca_len,
                       .ca_name = mc->ndes_ca_name};
    if (ok && ndes_page(&in, &page, &len, &ct) == 0) {
        job_reply(j, 200, ct, page, len);
        snprintf(j->headers, sizeof(j->headers), "Cache-Control: no-store\r\n");
        j->reply.resp.extra_headers = j->headers;
    } else {
        job_reply_later(j, "store unavailable, retry later\n", STORE_RETRY_AFTER_S);
    }
    OPENSSL_cleanse(j->challenge.value, sizeof(j->challenge.value));
}
