/* SCEP transactions on a crypto worker: parse, then one handler per message type. See
 * enroll.h; the files of this folder are listed in enroll_internal.h. */
#include "engine/enroll/enroll_internal.h"

#include "engine/scep/reject.h"

int enroll_process(const enroll_ctx *ctx, job *j)
{
    scep_request req;
    int next;
    if (enroll_notify_failed(ctx, j, &next))     /* Intune did not acknowledge: FAILURE */
        return next;
    /* The pass after MDM validation takes the request the first pass parsed (pkcsreq.c). */
    int rej = enroll_kept_request(j, &req) ? REJ_NONE
            : scep_parse(j->msg, j->msg_len, ctx->cfg->allow_sha1_messages, &req);

    j->pki.subject[0] = '\0';
    j->pki.serial_hex[0] = '\0';
    if (rej == REJ_NOT_PKIMESSAGE) {
        audit_fields f = {.diag = reject_diag(rej), .peer = j->peer, .profile = j->profile,
                          .failinfo = -1, .http_status = 400};
        audit_emit(ctx->audit, AUDIT_HTTP_REJECTED, &f);
        job_reply_text(j, 400, "body is not a SCEP pkiMessage\n");
        next = JOB_DELIVER;
    } else if (rej != REJ_NONE) {
        next = enroll_fail(ctx, j, &req, rej, NULL);
    } else {
        switch (req.msg_type) {
        case SCEP_MSG_PKCSREQ:
        case SCEP_MSG_RENEWALREQ:
            next = enroll_pkcsreq(ctx, j, &req);
            break;
        case SCEP_MSG_CERTPOLL:
            next = enroll_certpoll(ctx, j, &req);
            break;
        case SCEP_MSG_GETCERT:
            next = enroll_getcert(ctx, j, &req);
            break;
        case SCEP_MSG_GETCRL:
            next = enroll_getcrl(ctx, j, &req);
            break;
        default:
            next = enroll_fail(ctx, j, &req, REJ_UNKNOWN_TYPE, NULL);
            break;
        }
    }
    scep_request_clear(&req);
    return next;
}
