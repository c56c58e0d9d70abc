/* validate: the MDM step of a PKCSReq (challenge = intune | webhook, and the static challenge
 * a multi-kind profile tries first), seen from the server. The enrollment side runs on a
 * crypto worker inside enroll_process (pkcsreq.c's phase_validate); the server side
 * (engine/server/mdm_wire.c) hands the facts to the stage and brings the verdict back.
 *
 * A request is validated in two passes of the worker, holding no worker in between:
 *  1. enroll_validate finds no verdict: it keeps the request's facts in j->pki.mdm.facts
 *     (an enroll_mdm_facts) and the pass returns JOB_VALIDATE. No private-key operation of the
 *     CA was made yet (only the RA's envelope decryption).
 *  2. The server submits facts->req to the stage and drops the job; the stage's callback
 *     fills j->pki.mdm (done, result, diag, detail) and pushes the job onto a worker queue.
 *  3. The next pass runs every phase again (idempotent up to here) and enroll_validate
 *     answers from the verdict: allowed -> the phases go on to approval / issue; refused ->
 *     FAILURE with REJ_MDM_DENIED, REJ_MDM_TIMEOUT or REJ_MDM_UNAVAILABLE.
 * Audit: MDM_ALLOWED / MDM_DENIED once per verdict, then the request's own events.
 */
#ifndef SCEPD_ENROLL_VALIDATE_H
#define SCEPD_ENROLL_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "engine/enroll/enroll.h"
#include "engine/mdm/intune.h"
#include "engine/mdm/validate.h"
#include "engine/policy/profile.h"

#define ENROLL_MDM_SANS 16       /* subjectAltNames reported to the MDM (more: cut) */

/* The facts of one request as the stage wants them; req points into this struct. Owned by
 * the job (j->pki.mdm.facts, freed by j->pki.mdm.facts_free). */
typedef struct enroll_mdm_facts {
    mdm_request req;
    char        txid[SCEP_TXID_MAX + 1];
    char        profile[PROFILE_NAME_MAX];
    char        challenge[256];          /* cleansed on free */
    char        subject[512];
    char        peer[64];
    uint8_t    *csr;                     /* the PKCS#10 DER */
    size_t      csr_len;
    char       *sans[ENROLL_MDM_SANS];
    const char *san_ptrs[ENROLL_MDM_SANS];
    intune_cert_facts cert;              /* Intune: what successNotification reports of the */
    int         have_cert;               /* certificate, taken when it was built (pkcsreq.c) */
} enroll_mdm_facts;

/* phase_validate (worker): REJ_NONE with *next = -1 to go on to the next phase, REJ_NONE with
 * *next = JOB_VALIDATE to park the job (facts kept), or the REJ_ of the verdict with *detail
 * set (valid while j lives). prof and csr are the checked request's; renewal: a renewal
 * (never validated: its signer authorises it). */
int enroll_validate(const enroll_ctx *ctx, job *j, const scep_request *req, const profile *prof,
                    X509_REQ *csr, int renewal, const char **detail, int *next);

/* The REJ_ row of a verdict's diagnostic (enum mdm_diag): DENIED -> REJ_MDM_DENIED, TIMEOUT ->
 * REJ_MDM_TIMEOUT, anything else -> REJ_MDM_UNAVAILABLE. */
int enroll_mdm_reject(int diag);

/* The HRESULT Intune's failureNotification carries for a refusal after validation (rej; 0 or
 * REJ_NONE: the CA could not sign, HTTP 503). */
uint32_t enroll_mdm_hresult(int rej);

#endif
