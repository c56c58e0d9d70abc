#include "engine/scep/scep_oid.h"

#include <pthread.h>
#include <openssl/objects.h>

static scep_oids g_oids;      /* written once under pthread_once, read-only afterwards */
static int g_oids_ok;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int oid_nid(const char *oid, const char *sn, const char *ln)
{
    int nid = OBJ_txt2nid(oid);
    if (nid == NID_undef)
        nid = OBJ_create(oid, sn, ln);
    return nid;
}

static void init_once(void)
{
    g_oids.message_type = oid_nid("2.16.840.1.113733.1.9.2", "scepMessageType", "SCEP messageType");
    g_oids.pki_status = oid_nid("2.16.840.1.113733.1.9.3", "scepPkiStatus", "SCEP pkiStatus");
    g_oids.fail_info = oid_nid("2.16.840.1.113733.1.9.4", "scepFailInfo", "SCEP failInfo");
    g_oids.sender_nonce = oid_nid("2.16.840.1.113733.1.9.5", "scepSenderNonce", "SCEP senderNonce");
    g_oids.recipient_nonce = oid_nid("2.16.840.1.113733.1.9.6", "scepRecipientNonce", "SCEP recipientNonce");
    g_oids.transaction_id = oid_nid("2.16.840.1.113733.1.9.7", "scepTransactionID", "SCEP transactionID");
    g_oids.fail_info_text = oid_nid("1.3.6.1.5.5.7.24.1", "scepFailInfoText", "SCEP failInfoText");
    g_oids.upn = NID_ms_upn;
    g_oids_ok = g_oids.message_type != NID_undef && g_oids.pki_status != NID_undef &&
                g_oids.fail_info != NID_undef && g_oids.sender_nonce != NID_undef &&
                g_oids.recipient_nonce != NID_undef && g_oids.transaction_id != NID_undef &&
                g_oids.fail_info_text != NID_undef;
}

const scep_oids *scep_oid_get(void)
{
    pthread_once(&g_once, init_once);
    return g_oids_ok ? &g_oids : NULL;
}
