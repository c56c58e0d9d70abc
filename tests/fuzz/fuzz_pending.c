/* Fuzz target for the pending-request codec (engine/enroll/pending.c: the store value of a
 * request under a manual-approval profile, read by CertPoll and scepctl) and for what
 * `scepctl request approve` does with a decoded record: the CSR it holds issued under the
 * profile it names (engine/ctl/ctl_request.c request_issue: d2i_X509_REQ, then
 * issue_build_profile; the CSR was checked when the request was held, so its signature is not
 * checked again).
 *
 * Each input is used twice:
 *  - raw: the bytes as a record. A refused input is fine; an accepted one re-encodes to a
 *    fixed point (decode -> encode is not the identity: the reserved bytes are dropped, a
 *    string is cut at a NUL inside it).
 *  - structured: the bytes as the fields of a record (status, times, hashes, a profile chosen
 *    among the harness's or given as text, the strings, the CSR: the rest), so that nearly
 *    every input is a valid record. It must encode, decode to the same fields, refuse every
 *    cut and an extra byte, take a decision (status, decided_at, decided_by, serial) as
 *    ctl_request.c's decide() does and keep the rest, and, when the profile exists, pass or
 *    fail the worker's check of the CSR and, when the CSR parses, issue under that profile: a certificate signed by the CA with the request's key,
 *    or a refusal that is a row of the reject table answered with a failInfo.
 * Violated invariants abort(), so the replay driver and libFuzzer both flag them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "engine/common/config.h"
#include "engine/enroll/pending.h"
#include "engine/policy/issue.h"
#include "engine/policy/profile.h"
#include "engine/scep/reject.h"

/* Manual-approval profiles as an administrator writes them (docs/profiles.md). */
static const struct { const char *name, *text; } PROFILES[] = {
    { "held", "[profile]\napproval = manual\nchallenge = none\n" },
    { "held_vpn", "[profile]\napproval = manual\nkey_usage = digitalSignature, keyEncipherment\n"
                  "eku = ipsecIKE, clientAuth\nsan_types = dns, ip\nvalidity_days = 30\n"
                  "challenge = none\nbeyond_ca = refuse\n" },
    { "held_smartcard", "[profile]\napproval = manual\nkey_usage = digitalSignature\n"
                        "eku = smartcardLogon, clientAuth\nsan_types = upn, email\n"
                        "san_required = upn\nchallenge = none\n" },
    { "held_signature", "[profile]\napproval = manual\ntemplate = signature\n"
                        "subject_max_length = 16\nsubject_chars = printable\nchallenge = none\n" },
};
#define NPROFILES (sizeof(PROFILES) / sizeof(PROFILES[0]))

/* Built once per process; a fuzz target has no other place to keep it. */
static struct {
    int ready;
    EVP_PKEY *ca_key;
    X509 *ca_cert;
    ca_set ca;
    issuer *is;
} G;

static void init(void)
{
    config cfg;
    X509_NAME *n = X509_NAME_new();
    profile ps[NPROFILES];
    profile_set *set = NULL;
    char err[256];

    G.ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    G.ca_cert = X509_new();
    if (n == NULL || G.ca_key == NULL || G.ca_cert == NULL ||
        !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"Fuzz CA",
                                    -1, -1, 0) ||
        !X509_set_version(G.ca_cert, X509_VERSION_3) ||
        !ASN1_INTEGER_set(X509_get_serialNumber(G.ca_cert), 1) ||
        !X509_set_subject_name(G.ca_cert, n) || !X509_set_issuer_name(G.ca_cert, n) ||
        X509_gmtime_adj(X509_getm_notBefore(G.ca_cert), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(G.ca_cert), 3650L * 86400) == NULL ||
        !X509_set_pubkey(G.ca_cert, G.ca_key) || X509_sign(G.ca_cert, G.ca_key, EVP_sha256()) <= 0)
        abort();
    X509_NAME_free(n);
    G.ca.ca_key = G.ca.ra_key = G.ca_key;
    G.ca.ca_cert = G.ca.ra_cert = G.ca_cert;
    G.ca.ca_pub = X509_get0_pubkey(G.ca_cert);
    G.ca.ca_name = X509_get_subject_name(G.ca_cert);
    G.ca.ca_not_after = (int64_t)time(NULL) + 3650L * 86400;
    config_defaults(&cfg);
    for (size_t i = 0; i < NPROFILES; i++)
        if (profile_parse(PROFILES[i].text, strlen(PROFILES[i].text), PROFILES[i].name, "fuzz",
                          "/", &ps[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "fuzz_pending: profile %s: %s\n", PROFILES[i].name, err);
            abort();
        }
    if (issuer_create(&cfg, &G.ca, "", &G.is) != 0 ||
        profile_set_from(ps, NPROFILES, &set, err, sizeof(err)) != 0 ||
        issuer_set_profiles(G.is, set, err, sizeof(err)) != 0)
        abort();
    ERR_clear_error();
    G.ready = 1;
}

static void same_or_abort(const pending_request *a, const pending_request *b)
{
    if (a->status != b->status || a->created != b->created || a->decided_at != b->decided_at ||
        memcmp(a->key_hash, b->key_hash, sizeof(a->key_hash)) != 0 ||
        memcmp(a->serial, b->serial, sizeof(a->serial)) != 0 ||
        strcmp(a->profile, b->profile) != 0 || strcmp(a->subject, b->subject) != 0 ||
        strcmp(a->peer, b->peer) != 0 || strcmp(a->decided_by, b->decided_by) != 0 ||
        a->csr_len != b->csr_len || (a->csr_len > 0 && memcmp(a->csr, b->csr, a->csr_len) != 0))
        abort();
}

/* Decodes a heap copy of exactly len bytes (so ASan sees a read past them). */
static int decode_copy(const uint8_t *p, size_t len, pending_request *out, uint8_t **keep)
{
    uint8_t *in = malloc(len ? len : 1);
    if (in == NULL)
        abort();
    if (len > 0)
        memcpy(in, p, len);
    int rc = pending_decode(in, len, out);
    if (keep != NULL && rc == 0)
        *keep = in;
    else
        free(in);
    return rc;
}

/* The raw path: the input as a record. */
static void raw(const uint8_t *data, size_t size)
{
    pending_request r1, r2, r3;
    uint8_t *in = NULL, *e1 = NULL, *e2 = NULL;
    size_t l1 = 0, l2 = 0;

    if (decode_copy(data, size, &r1, &in) != 0)
        return;
    if (r1.csr < in || r1.csr + r1.csr_len != in + size || r1.status < PENDING_WAITING ||
        r1.status > PENDING_DENIED || memchr(r1.profile, '\0', sizeof(r1.profile)) == NULL ||
        memchr(r1.subject, '\0', sizeof(r1.subject)) == NULL ||
        memchr(r1.peer, '\0', sizeof(r1.peer)) == NULL ||
        memchr(r1.decided_by, '\0', sizeof(r1.decided_by)) == NULL)
        abort();
    if (pending_encode(&r1, &e1, &l1) != 0 || l1 > size || pending_decode(e1, l1, &r2) != 0)
        abort();
    same_or_abort(&r1, &r2);
    if (pending_encode(&r2, &e2, &l2) != 0 || l2 != l1 || memcmp(e1, e2, l1) != 0 ||
        pending_decode(e2, l2, &r3) != 0)
        abort();
    same_or_abort(&r2, &r3);
    free(e1);
    free(e2);
    free(in);
}

/* Reads the structured input front to back; past the end it gives zeros. */
typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static uint8_t take8(reader *r)
{
    if (r->n == 0)
        return 0;
    r->n--;
    return *r->p++;
}

static void take(reader *r, void *out, size_t len)
{
    uint8_t *o = out;
    for (size_t i = 0; i < len; i++)
        o[i] = take8(r);
}

/* A string field: a length byte (cut to the field's capacity) and that many bytes. */
static void take_string(reader *r, char *out, size_t cap)
{
    size_t len = take8(r);
    if (len >= cap)
        len = cap - 1;
    take(r, out, len);
    out[len] = '\0';
}

/* `scepctl request approve`: the CSR issued under the record's profile. Before, the check
 * the worker made when it held the request (engine/enroll/pkcsreq.c: issue_check_request
 * under the record's profile): a refusal is a reject-table row with a failInfo. */
static void approve(const pending_request *rec)
{
    const profile *prof = profile_set_find(issuer_profiles(G.is), rec->profile,
                                           strlen(rec->profile));
    if (prof == NULL)
        return;
    const profile *chosen = NULL;
    const char *detail = NULL;
    X509_REQ *checked = NULL;
    int crc = issue_check_request(G.is, rec->csr, rec->csr_len, rec->profile, 1, &chosen,
                                  &checked, &detail);
    if ((crc == REJ_NONE && (checked == NULL || chosen != prof)) ||
        (crc != REJ_NONE && (crc < 0 || crc >= REJ__COUNT ||
                             reject_failinfo(crc) == SCEP_FAIL_NONE || checked != NULL)))
        abort();
    X509_REQ_free(checked);
    const unsigned char *p = rec->csr;
    X509_REQ *csr = d2i_X509_REQ(NULL, &p, (long)rec->csr_len);
    X509 *cert = NULL;
    if (csr == NULL) {
        ERR_clear_error();
        return;
    }
    int capped = 0;         /* set to 1 only when notAfter was cut */
    int rej = issue_build_profile(G.is, csr, prof, NULL, NULL, &cert, &capped);
    if (rej == REJ_NONE) {
        unsigned char *a = NULL, *b = NULL;
        int na = cert != NULL ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &a) : 0;
        int nb = i2d_X509_PUBKEY(X509_REQ_get_X509_PUBKEY(csr), &b);
        if (cert == NULL || (capped != 0 && capped != 1) || X509_check_ca(cert) != 0 ||
            X509_verify(cert, G.ca.ca_pub) != 1 ||
            X509_NAME_cmp(X509_get_issuer_name(cert), G.ca.ca_name) != 0 || na <= 0 ||
            na != nb || memcmp(a, b, (size_t)na) != 0)
            abort();
        OPENSSL_free(a);
        OPENSSL_free(b);
    } else if (rej <= REJ_NONE || rej >= REJ__COUNT || reject_failinfo(rej) == SCEP_FAIL_NONE ||
               cert != NULL) {
        abort();
    }
    X509_free(cert);
    X509_REQ_free(csr);
    ERR_clear_error();
}

/* The structured path: the input as the fields of a record. */
static void structured(const uint8_t *data, size_t size)
{
    pending_request rec, got, dec;
    uint8_t *e = NULL, *e2 = NULL, *keep = NULL;
    size_t el = 0, el2 = 0;
    reader rd = { data, size };

    memset(&rec, 0, sizeof(rec));
    uint8_t flags = take8(&rd);
    rec.status = flags % 3;
    take(&rd, &rec.created, sizeof(rec.created));
    if (flags & 0x04)
        take(&rd, &rec.decided_at, sizeof(rec.decided_at));
    take(&rd, rec.key_hash, sizeof(rec.key_hash));
    if (flags & 0x08)
        take(&rd, rec.serial, sizeof(rec.serial));
    uint8_t pick = take8(&rd);
    if (pick < 4 * NPROFILES)
        snprintf(rec.profile, sizeof(rec.profile), "%s", PROFILES[pick % NPROFILES].name);
    else
        take_string(&rd, rec.profile, sizeof(rec.profile));
    take_string(&rd, rec.subject, sizeof(rec.subject));
    take_string(&rd, rec.peer, sizeof(rec.peer));
    if (flags & 0x10)
        take_string(&rd, rec.decided_by, sizeof(rec.decided_by));
    rec.csr = rd.p;
    rec.csr_len = rd.n;

    if (pending_encode(&rec, &e, &el) != 0 || el < PENDING_FIXED_LEN ||
        decode_copy(e, el, &got, &keep) != 0)
        abort();
    same_or_abort(&rec, &got);
    free(keep);
    keep = NULL;
    /* The lengths add up exactly: a cut record, or one with a byte more, is refused. */
    size_t cut = el > 1 ? (size_t)(flags >> 5) * (el - 1) / 7 : 0;
    if (decode_copy(e, el - 1, &dec, NULL) == 0 || decode_copy(e, cut, &dec, NULL) == 0)
        abort();
    uint8_t *longer = malloc(el + 1);
    if (longer == NULL)
        abort();
    memcpy(longer, e, el);
    longer[el] = 0;
    if (decode_copy(longer, el + 1, &dec, NULL) == 0)
        abort();
    free(longer);

    /* A decision as ctl_request.c's decide() takes it, on a request still pending. */
    if (rec.status == PENDING_WAITING) {
        pending_request d = got;
        d.csr = rec.csr;            /* got's pointed into the copy freed above */
        d.status = flags & 0x80 ? PENDING_DENIED : PENDING_APPROVED;
        d.decided_at = (int64_t)time(NULL);
        snprintf(d.decided_by, sizeof(d.decided_by), "scepctl %s", rec.peer);
        d.serial[0] ^= 0x40;
        if (pending_encode(&d, &e2, &el2) != 0 || decode_copy(e2, el2, &dec, &keep) != 0)
            abort();
        same_or_abort(&d, &dec);
        if (strcmp(dec.profile, rec.profile) != 0 || dec.csr_len != rec.csr_len)
            abort();
        free(keep);
        approve(&rec);
    }
    free(e);
    free(e2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!G.ready)
        init();
    raw(data, size);
    structured(data, size);
    return 0;
}
