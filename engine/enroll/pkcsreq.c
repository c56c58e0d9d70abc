/* PKCSReq and RenewalReq, phase by phase:
 *   signer check -> profile (a renewal: its lane) -> idempotence by transactionID ->
 *   repeated pending request -> one-time challenge -> hold for approval, or issue and record.
 * Each phase returns REJ_NONE to go on, or ends the pass (t->done: return t->next, the reply
 * set or, for JOB_COMMIT, the put prepared); any REJ_ code ends the transaction with a
 * CertRep FAILURE. A job the writer sends back (a conflict in the store) runs every phase
 * again and is answered from what the store then holds. */
#include "engine/enroll/enroll_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>

#include "engine/enroll/record.h"
#include "engine/enroll/validate.h"
#include "engine/pki/serial.h"
#include "engine/scep/reject.h"

typedef struct pkcsreq {
    const enroll_ctx *ctx;
    job              *j;
    scep_request     *req;
    int               ours;         /* the signer is a certificate of this CA */
    int               renewal;      /* RenewalReq, or a PKCSReq signed by one of ours */
    int               manual;       /* held for manual approval */
    int               onetime;      /* an initial request under a one-time-challenge profile,
                                       its challenge checked: the put consumes it */
    int               out_of_lane;  /* a renewal's binding refused it (the REJ_): enrolled as
                                       an initial request with the profile's challenge */
    int               done;         /* this pass ends: return next */
    int               next;         /* enum job_next */
    const char       *detail;       /* the profile's finer diagnostic of a refusal */
    X509_REQ         *csr;
    const profile    *prof;
    uint8_t           signer_serial[STORE_SERIAL_LEN];
    int64_t           old_nb, old_na;  /* the renewed certificate's validity */
    char              old_profile[ENROLL_PROFILE_MAX];
    uint8_t           key_hash[STORE_HASH_LEN], subj_hash[STORE_HASH_LEN];
    X509_NAME        *bound_subject;   /* a one-time challenge's bindings ("override") */
    GENERAL_NAMES    *bound_san;
} pkcsreq;

static void state_free(void *p)
{
    enroll_state *st = p;
    if (st == NULL)
        return;
    OPENSSL_cleanse(st->presented, sizeof(st->presented));
    X509_NAME_free(st->subject);
    GENERAL_NAMES_free(st->san);
    free(st->reqrec);
    X509_REQ_free(st->kept_csr);
    if (st->have_kept)
        scep_request_clear(&st->kept);
    free(st);
}

enroll_state *enroll_state_of(job *j)
{
    if (j->pki.state == NULL) {
        j->pki.state = calloc(1, sizeof(enroll_state));
        j->pki.state_free = state_free;
    }
    return j->pki.state;
}

int enroll_kept_request(job *j, scep_request *req)
{
    enroll_state *st = j->pki.state;
    if (st == NULL || !st->have_kept)
        return 0;
    *req = st->kept;
    memset(&st->kept, 0, sizeof(st->kept));
    st->have_kept = 0;
    return 1;
}

int enroll_notify_failed(const enroll_ctx *ctx, job *j, int *next)
{
    scep_request req;
    if (j->pki.mdm.revoking != 2)    /* stays 2: a run again (recover.c) answers the same */
        return 0;
    /* Rare (Intune did not acknowledge): the message is parsed again rather than kept through
     * the commit and the notification; its signature verified on the first pass already. */
    int rej = scep_parse(j->msg, j->msg_len, ctx->cfg->allow_sha1_messages, &req);
    if (rej == REJ_NONE) {
        *next = enroll_fail(ctx, j, &req, REJ_MDM_NOTIFY, NULL);
    } else {
        job_reply_text(j, 503, "cannot answer, retry later\n");
        *next = JOB_DELIVER;
    }
    scep_request_clear(&req);
    return 1;
}

static void stop_with(pkcsreq *t, int next)
{
    t->done = 1;
    t->next = next;
}

/* The envelope (single DES opened when some profile allows it: phase_profile decides), and
 * for a renewal the certificate that signed it. */
static int phase_signer(pkcsreq *t)
{
    const enroll_ctx *ctx = t->ctx;
    int rej;
    if (t->req->inner != NULL) {
        /* The pass after MDM validation: the request the first pass parsed, verified and
         * opened (enroll_kept_request), so the RA key is not used twice. */
        rej = REJ_NONE;
    } else {
        rej = scep_open_envelope(t->req, ctx->ca->ra_key, ctx->ca->ra_cert,
                                 profile_set_allows_des(issuer_profiles(ctx->issuer)));
    }
    if (rej != REJ_NONE || !t->renewal)
        return rej;
    int store_rc = STORE_OK;
    rej = !t->ours ? REJ_RENEW_SIGNER
        : enroll_check_renewal_signer(ctx, t->req->signer, t->signer_serial, &t->old_nb,
                                      &t->old_na, t->old_profile, &store_rc);
#ifdef SCEPD_MUTANT_RENEW_NO_SIGNER_CHECK   /* test-only breakage, docs/testing-mutants.md */
    rej = REJ_NONE;
#endif
    if (enroll_store_lost(store_rc)) {  /* the store did not answer: 503, the client retries */
        stop_with(t, enroll_store_unavailable(ctx, t->j, t->req, "renewal signer lookup",
                                              store_rc));
        rej = REJ_NONE;
    }
    return rej;
}

/* The profile (the URL's; a renewal on the default path stays under the profile of the
 * certificate it renews), the envelope's cipher and the CSR checked under it. */
static int phase_profile(pkcsreq *t)
{
    job *j = t->j;
    char url_profile[ENROLL_PROFILE_MAX];
    snprintf(url_profile, sizeof(url_profile), "%s", j->profile);
    const char *want = url_profile;
    const char *old = t->old_profile[0] != '\0' ? t->old_profile : PROFILE_LEGACY_NAME;
    if (want[0] == '\0' && t->renewal &&
        profile_set_find(issuer_profiles(t->ctx->issuer), old, strlen(old)) != NULL)
        want = old;
    enroll_state *st = j->pki.state;
    int rej;
    if (st != NULL && st->kept_csr != NULL) {
        /* The pass after MDM validation (phase_validate kept it with the request). */
        t->csr = st->kept_csr;
        st->kept_csr = NULL;
        rej = issue_check_parsed(t->ctx->issuer, t->csr, 1, want, !t->renewal, &t->prof,
                                 &t->detail);
    } else {
        rej = issue_check_request(t->ctx->issuer, t->req->inner, t->req->inner_len, want,
                                  !t->renewal, &t->prof, &t->csr, &t->detail);
    }
    if (t->prof != NULL)
        snprintf(j->profile, sizeof(j->profile), "%s", t->prof->name);
    int pc = t->prof != NULL ? profile_check_cipher(t->prof, t->req->cipher_nid) : PROFILE_OK;
    if (pc != PROFILE_OK) {
        t->detail = profile_result_diag(pc);
        return issue_profile_reject(pc);
    }
    if (rej != REJ_NONE)
        return rej;
    enroll_name_text(X509_REQ_get_subject_name(t->csr), j->pki.subject,
                     sizeof(j->pki.subject));
    return REJ_NONE;
}

/* The initial-enrollment authorisation of the chosen profile, for a renewal out of its lane:
 * REJ_NONE when the request carries what an initial request there needs (the static
 * challenge, or nothing under challenge = none). A one-time challenge is only looked for
 * here: phase_onetime decides, after the replay (a repeated transaction has consumed it). */
static int initial_challenge(pkcsreq *t)
{
    if (t->prof->challenge != PROFILE_CHALLENGE_ONETIME)
        return issue_check_challenge(t->ctx->issuer, t->prof, t->csr);
    return X509_REQ_get_attr_by_NID(t->csr, NID_pkcs9_challengePassword, -1) >= 0
               ? REJ_NONE : REJ_CHALLENGE;
}

/* A renewal stays in its lane: the profile of the certificate it renews (or one whose
 * renew_from names it), that certificate's subject and SANs (unless renew_may_change allows
 * a change; an "override" source keeps the old certificate's), within the threshold. Out of
 * its lane, a request that also carries a valid challenge of the chosen profile is an initial
 * enrollment there (RFC 8894 allows a PKCSReq signed by an existing certificate); anything
 * else is refused with the binding's own diagnostic. */
static int phase_lane(pkcsreq *t)
{
    X509 *old = t->req->signer;
    GENERAL_NAMES *old_san = NULL, *csr_san = NULL;
    int rej = REJ_NONE;

    if (!t->renewal)
        goto out;
    old_san = X509_get_ext_d2i(old, NID_subject_alt_name, NULL, NULL);
    csr_san = issue_requested_san(t->csr);
    int pr = profile_check_renewal(t->prof, t->old_profile, X509_get_subject_name(old), old_san,
                                   X509_REQ_get_subject_name(t->csr), csr_san);
    if (pr != PROFILE_OK) {
        rej = issue_profile_reject(pr);
        if (initial_challenge(t) == REJ_NONE) {
            t->out_of_lane = rej;
            t->renewal = 0;
            rej = REJ_NONE;
        }
        goto out;
    }
    rej = REJ_INTERNAL;
    if (t->prof->subject_source == PROFILE_SOURCE_OVERRIDE &&
        (t->bound_subject = X509_NAME_dup(X509_get_subject_name(old))) == NULL)
        goto out;
    if (t->prof->san_source == PROFILE_SOURCE_OVERRIDE) {
        t->bound_san = old_san != NULL ? old_san : GENERAL_NAMES_new();
        old_san = NULL;
        if (t->bound_san == NULL)
            goto out;
    }
    rej = REJ_NONE;
    pr = profile_renewal_allowed(t->prof, time(NULL), t->old_nb, t->old_na);
    if (pr != PROFILE_OK) {
        t->detail = profile_result_diag(pr);
        rej = issue_profile_reject(pr);
    }
out:
    GENERAL_NAMES_free(old_san);
    GENERAL_NAMES_free(csr_san);
    if (rej == REJ_NONE)
        t->manual = t->prof->approval == PROFILE_APPROVAL_MANUAL &&
                    (!t->renewal || !t->prof->approve_renewals);
    return rej;
}

/* Idempotence: the same transaction (a renewal is keyed by its signer too) with the same key
 * and subject gets the certificate already issued; anything else under that transactionID
 * is a conflict. */
static int phase_replay(pkcsreq *t)
{
    job *j = t->j;
    uint8_t serial[STORE_SERIAL_LEN], old_key[STORE_HASH_LEN];
    X509 *cert = NULL;
    store_cert meta;
    int rej = REJ_INTERNAL;

    if (t->renewal) {
        char sh[2 * STORE_SERIAL_LEN + 1];
        serial_to_hex(t->signer_serial, sh);
        snprintf(j->pki.txkey, sizeof(j->pki.txkey), "%s@%s", t->req->txid, sh);
    } else {
        snprintf(j->pki.txkey, sizeof(j->pki.txkey), "%s", t->req->txid);
    }
    if (issue_spki_hash(X509_REQ_get_X509_PUBKEY(t->csr), t->key_hash) != 0 ||
        issue_name_hash(X509_REQ_get_subject_name(t->csr), t->subj_hash) != 0)
        goto out;
    int trc = enroll_lookup_txid(t->ctx, j->pki.txkey, serial, old_key);
    if (trc == STORE_NOTFOUND) {
        rej = REJ_NONE;     /* a new transaction */
        goto out;
    }
    if (enroll_store_lost(trc)) {   /* the store did not answer (PostgreSQL reconnecting) */
        stop_with(t, enroll_store_unavailable(t->ctx, j, t->req, "transactionID lookup", trc));
        rej = REJ_NONE;
        goto out;
    }
    if (trc != STORE_OK || enroll_stored_cert(t->ctx, serial, &cert, &meta, NULL) != STORE_OK)
        goto out;
    rej = REJ_TXID_CONFLICT;
    if (memcmp(old_key, t->key_hash, STORE_HASH_LEN) != 0 ||
        memcmp(meta.subject_hash, t->subj_hash, STORE_HASH_LEN) != 0)
        goto out;
    serial_to_hex(serial, j->pki.serial_hex);
    /* A revoked certificate is not handed out again as a success (an Intune notification
     * that failed, an operator's revocation): the device enrolls again with a new key, which
     * gives a new transactionID (RFC 8894 3.2.1.1). */
    rej = REJ_REPLAY_REVOKED;
    if (meta.status == STORE_CERT_REVOKED)
        goto out;
    rej = REJ_INTERNAL;
    if (enroll_certrep(t->ctx, j, t->req, SCEP_SUCCESS, REJ_NONE, cert) != 0)
        goto out;
    enroll_emit(t->ctx, j, t->req, AUDIT_REPLAYED, REJ_NONE, NULL);
    stop_with(t, JOB_DELIVER);
    rej = REJ_NONE;
out:
    X509_free(cert);
    return rej;
}

/* A repeated PKCSReq of a request already waiting: PENDING again (or its denial). */
static int phase_repeat(pkcsreq *t)
{
    int again = 0;
    if (!t->manual)
        return REJ_NONE;
    int rej = enroll_approval_repeat(t->ctx, t->j, t->req, t->key_hash, &again);
    if (rej == REJ_NONE && again)
        stop_with(t, JOB_DELIVER);
    return rej;
}

/* MDM validation (intune, webhook) and a multi-kind profile's static challenge: validate.c. */
static int phase_validate(pkcsreq *t)
{
    int next = -1;
    int rej = enroll_validate(t->ctx, t->j, t->req, t->prof, t->csr, t->renewal, &t->detail,
                              &next);
    if (rej == REJ_NONE && next == JOB_VALIDATE) {
        /* Parked: the request moves into j's state for the next pass (enroll_kept_request,
         * phase_signer): no second scep_parse, no second decryption. Nothing reads t->req
         * after this phase (the pass ends); without a state the next pass parses again. */
        enroll_state *st = enroll_state_of(t->j);
        if (st != NULL) {
            if (st->have_kept)
                scep_request_clear(&st->kept);
            st->kept = *t->req;
            st->have_kept = 1;
            memset(t->req, 0, sizeof(*t->req));
            t->req->msg_type = -1;
            X509_REQ_free(st->kept_csr);
            st->kept_csr = t->csr;
            t->csr = NULL;
        }
    }
    if (rej == REJ_NONE && next >= 0)
        stop_with(t, next);
    return rej;
}

/* One-time challenge: checked here against the stored record (an "override" profile takes
 * its bindings); consumed by the writer with the certificate or the pending request (the
 * put's condition, see onetime.c). */
static int phase_onetime(pkcsreq *t)
{
    job *j = t->j;
    if (t->renewal || t->prof->challenge != PROFILE_CHALLENGE_ONETIME || j->pki.mdm.static_ok)
        return REJ_NONE;
    t->onetime = 1;
    int answered = 0;
    int rej = enroll_onetime_phase(t->ctx, j, t->req, t->prof, t->csr, &answered);
    if (answered) {         /* the store did not answer: 503, the client sends it again */
        stop_with(t, JOB_DELIVER);
        return REJ_NONE;
    }
    if (rej != REJ_NONE && t->out_of_lane) {
        /* A renewal out of its lane whose one-time challenge does not hold: the lane's
         * refusal, naming the challenge's verdict. */
        t->detail = reject_diag(rej);
        rej = t->out_of_lane;
    }
    if (rej != REJ_NONE)
        return rej;
    const enroll_state *st = j->pki.state;
    if (st != NULL && st->have_rec) {
        if (t->prof->subject_source == PROFILE_SOURCE_OVERRIDE)
            t->bound_subject = challenge_bound_subject(&st->rec);
        if (t->prof->san_source == PROFILE_SOURCE_OVERRIDE)
            t->bound_san = challenge_bound_san(&st->rec);
    }
    return REJ_NONE;
}

/* Manual approval: PENDING, committed with the stored request (and the one-time challenge
 * that pays for it). */
static int phase_hold(pkcsreq *t)
{
    if (!t->manual)
        return REJ_NONE;
    int rej = enroll_approval_hold(t->ctx, t->j, t->req, t->prof, t->key_hash);
    if (rej == REJ_NONE) {
        if (t->onetime)
            enroll_onetime_guard(t->j);
        stop_with(t, JOB_COMMIT);
    }
    return rej;
}

_Static_assert(sizeof(((issue_cert *)0)->serial) == STORE_SERIAL_LEN,
               "the issued serial is the store's key as is");

/* Issue (CA key), answer SUCCESS (RA key), and prepare the record: the certificate leaves
 * the server only once the writer has committed it. The certificate is handled as the DER
 * issued (issue_build_der): the record and the CertRep take those bytes, nothing re-encodes. */
static int phase_issue(pkcsreq *t)
{
    job *j = t->j;
    issue_cert ic;
    int capped = 0;

    memset(&ic, 0, sizeof(ic));
    int rej = issue_build_der(t->ctx->issuer, t->csr, t->prof, t->bound_subject, t->bound_san,
                              &ic, &capped);
    if (rej == REJ_INTERNAL) {
        stop_with(t, enroll_unavailable(t->ctx, j, t->req, "CA signature failed"));
        rej = REJ_NONE;
        goto out;
    }
    if (rej != REJ_NONE)
        goto out;
    if (t->bound_subject != NULL)     /* the subject issued: the binding's */
        enroll_name_text(t->bound_subject, j->pki.subject, sizeof(j->pki.subject));
    rej = REJ_INTERNAL;
    enroll_record m = {t->key_hash, t->subj_hash, j->pki.subject, j->pki.txkey, j->profile,
                       (int64_t)time(NULL)};
    memset(&j->put, 0, sizeof(j->put));
    free(j->pki.cert_der);
    j->pki.cert_der = ic.der;
    j->pki.cert_der_len = ic.der_len;
    ic.der = NULL;
    enroll_record_fill_der(&j->put.cert, ic.serial, ic.not_before, ic.not_after,
                           j->pki.cert_der, j->pki.cert_der_len, &m);
    if (enroll_certrep_der(t->ctx, j, t->req, j->pki.cert_der, j->pki.cert_der_len) != 0) {
        stop_with(t, enroll_unavailable(t->ctx, j, t->req, "cannot sign CertRep"));
        rej = REJ_NONE;
        goto out;
    }
    serial_to_hex(j->put.cert.serial, j->pki.serial_hex);
    enroll_mdm_facts *mf = j->pki.mdm.facts;
    if (j->pki.mdm.notify && mf != NULL)    /* successNotification's facts, from the DER */
        mf->have_cert = intune_cert_facts_get(j->pki.cert_der, j->pki.cert_der_len,
                                              &mf->cert) == 0;
    if (t->onetime)
        enroll_onetime_guard(j);
    j->pki.audit_event = t->renewal ? AUDIT_RENEWED : AUDIT_ISSUED;
    j->pki.audit_detail = capped ? "validity capped at CA notAfter"
                        : t->req->cipher_nid == NID_des_cbc ? "single-DES request, DES3 reply"
                        : t->out_of_lane ? "signed by an issued certificate out of its renewal "
                                           "lane: enrolled with the profile's challenge"
                        : NULL;
    stop_with(t, JOB_COMMIT);
    rej = REJ_NONE;
out:
    free(ic.der);
    return rej;
}

static int (*const phases[])(pkcsreq *) = {
    phase_signer, phase_profile, phase_lane, phase_replay, phase_repeat, phase_validate,
    phase_onetime,
    phase_hold, phase_issue,
};

int enroll_pkcsreq(const enroll_ctx *ctx, job *j, scep_request *req)
{
    pkcsreq t;
    int rej = REJ_NONE;

    memset(&t, 0, sizeof(t));
    t.ctx = ctx;
    t.j = j;
    t.req = req;
    t.ours = ca_issued(ctx->ca, req->signer);
    t.renewal = req->msg_type == SCEP_MSG_RENEWALREQ || t.ours;
    t.next = JOB_DELIVER;
    j->pki.chal_consumed = 0;
    for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]) && rej == REJ_NONE && !t.done;
         i++) {
        /* A client gone or past its deadline costs no further key operation. */
        if (i > 0 && ctx->cancelled != NULL && ctx->cancelled(ctx->cancel_arg, j)) {
            stop_with(&t, JOB_DELIVER);
            break;
        }
        rej = phases[i](&t);
    }
    X509_REQ_free(t.csr);
    X509_NAME_free(t.bound_subject);
    GENERAL_NAMES_free(t.bound_san);
    ERR_clear_error();
    if (rej != REJ_NONE)
        return enroll_fail(ctx, j, req, rej, t.detail);
    return t.next;
}
