/* Jobs and the server's one response setter. See job.h. */
#include "engine/server/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

job *job_new(int kind, const char *peer, const char *profile)
{
    job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->kind = kind;
    snprintf(j->peer, sizeof(j->peer), "%s", peer != NULL ? peer : "");
    snprintf(j->profile, sizeof(j->profile), "%s", profile != NULL ? profile : "");
    return j;
}

void job_free(job *j)
{
    if (j == NULL)
        return;
    switch (j->kind) {
    case JOB_PKIOPERATION:
        if (j->pki.state_free != NULL)
            j->pki.state_free(j->pki.state);
        if (j->pki.mdm.facts_free != NULL)
            j->pki.mdm.facts_free(j->pki.mdm.facts);
        free(j->pki.cert_der);
        break;
    case JOB_HELD:
        if (j->held.unhold != NULL)
            j->held.unhold(j->held.hold);
        break;
    case JOB_CHALLENGE:
        OPENSSL_cleanse(j->challenge.value, sizeof(j->challenge.value));
        break;
    default:
        break;
    }
    free(j->msg);
    free(j->body);
    free(j);
}

void job_answer(http_response *resp, int status, const char *content_type, const void *body,
                size_t len)
{
    resp->status = status;
    resp->content_type = content_type;
    resp->body = body;
    resp->body_len = len;
    resp->extra_headers = NULL;
    resp->close = 0;
}

void job_reply(job *j, int status, const char *content_type, uint8_t *body, size_t len)
{
    if (j->body != body)
        free(j->body);
    j->body = body;
    j->body_len = len;
    job_answer(&j->reply.resp, status, content_type, body, len);
}

void job_reply_text(job *j, int status, const char *text)
{
    free(j->body);
    j->body = NULL;
    j->body_len = 0;
    job_answer(&j->reply.resp, status, "text/plain", text, strlen(text));
}

void job_reply_later(job *j, const char *text, unsigned after_s)
{
    job_reply_text(j, 503, text);
    snprintf(j->headers, sizeof(j->headers), "Retry-After: %u\r\n", after_s);
    j->reply.resp.extra_headers = j->headers;
}

int job_insert_new(const uint8_t *cur, size_t cur_len, void *arg, const uint8_t **nv,
                   size_t *nl)
{
    job *j = arg;
    (void)cur_len;
    if (cur != NULL)
        return 1;
    *nv = j->msg;
    *nl = j->msg_len;
    return 0;
}
