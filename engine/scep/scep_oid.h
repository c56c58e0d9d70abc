/* SCEP attribute object identifiers, registered once per process (scep_oid_init is
 * idempotent and thread-safe; it reuses NIDs another part of the process registered). */
#ifndef SCEPD_SCEP_OID_H
#define SCEPD_SCEP_OID_H

typedef struct scep_oids {
    int message_type;     /* 2.16.840.1.113733.1.9.2 */
    int pki_status;       /* 2.16.840.1.113733.1.9.3 */
    int fail_info;        /* 2.16.840.1.113733.1.9.4 */
    int sender_nonce;     /* 2.16.840.1.113733.1.9.5 */
    int recipient_nonce;  /* 2.16.840.1.113733.1.9.6 */
    int transaction_id;   /* 2.16.840.1.113733.1.9.7 */
    int fail_info_text;   /* 1.3.6.1.5.5.7.24.1 */
    int upn;              /* 1.3.6.1.4.1.311.20.2.3 (otherName UPN) */
} scep_oids;

/* Returns the registered NIDs (never NULL after the first call succeeded; NULL if OpenSSL
 * could not register them). */
const scep_oids *scep_oid_get(void);

#endif
