/* seed_store: fills a scepd store with N synthetic certificate records, for the store-size leg of
 * the benchmark (how throughput changes with 1,000,000 certificates already issued).
 *
 *   seed_store (-c scepd.conf | --store DIR) -n N [--revoked R] [--batch B] [--quiet]
 *
 * Run it while no scepd uses the store (LMDB allows one writer; store_put_sync refuses when a
 * writer thread runs in this process, and another process would just wait on the lock).
 *
 * Records look like what scepd writes: a ~1 KB X.509 DER (RSA-2048 subject key, client-auth
 * extensions, signed once with a throwaway key), a random 16-byte serial, a unique subject, a
 * 32-hex-digit transactionID and profile "default", so the three B-trees (certs, txid, subject)
 * get the same key shapes and random insertion order as real issuance. The DER of each record is the template
 * with its serial and CN patched in place: the signature no longer verifies, which nothing
 * in the store checks, and that keeps seeding at LMDB speed instead of signing speed.
 *
 * --revoked R also revokes R of the N certificates (spread evenly over them; R = N: all) with
 * STORE_PUT_REVOKE puts queued after the certificate puts of the same transaction, so the
 * revoked database, the certificate's status and the "rev_gen" counter are exactly what a
 * revocation through scepd or scepctl leaves, and the CRL builder reads them as such
 * (reason keyCompromise, revoked at the seeding time, who "seed_store").
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "engine/common/config.h"
#include "engine/store/store.h"

#define CN_DIGITS 12
#define CN_PREFIX "bench-device-"
#define CN_TEMPLATE CN_PREFIX "000000000000"
#define TXID_LEN 32          /* hex of 16 bytes, as SCEP clients usually send */
#define SUBJ_TXT_MAX 96
#define SEED_REASON 1        /* RFC 5280 keyCompromise: an entry with a reasonCode extension */
#define SEED_WHO "seed_store"

/* The template certificate and where the per-record fields sit inside it. */
typedef struct tmpl {
    unsigned char *der;
    size_t der_len;
    size_t serial_off;             /* 16 content bytes of the serial INTEGER */
    size_t cn_off;                 /* CN_DIGITS digits after CN_PREFIX       */
    size_t name_off, name_len;     /* the subject Name DER, for its hash     */
    int64_t not_before, not_after;
} tmpl;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const unsigned char *find(const unsigned char *hay, size_t hlen, const void *needle,
                                 size_t nlen)
{
    return memmem(hay, hlen, needle, nlen);
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    int ok = e != NULL && X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

/* Builds and signs the template once, then locates the fields to patch. */
static int tmpl_build(tmpl *t)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    X509 *x = X509_new();
    X509_NAME *subj = X509_NAME_new(), *iss = X509_NAME_new();
    ASN1_INTEGER *sn = ASN1_INTEGER_new();
    BIGNUM *bn = NULL;
    unsigned char serial[16], *der = NULL, *name = NULL;
    int der_len = 0, name_len = 0, rc = -1;
    X509V3_CTX ctx;

    if (key == NULL || x == NULL || subj == NULL || iss == NULL || sn == NULL)
        goto out;
    /* a fixed-width positive serial: top byte in 0x40..0x7f keeps the INTEGER 16 bytes long */
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto out;
    serial[0] = (unsigned char)((serial[0] & 0x3f) | 0x40);
    if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL || BN_to_ASN1_INTEGER(bn, sn) == NULL)
        goto out;
    if (!X509_NAME_add_entry_by_txt(subj, "CN", MBSTRING_ASC, (const unsigned char *)CN_TEMPLATE, -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(subj, "O", MBSTRING_ASC, (const unsigned char *)"scepd bench fleet", -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(iss, "CN", MBSTRING_ASC, (const unsigned char *)"scepd CA", -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(iss, "O", MBSTRING_ASC, (const unsigned char *)"scepd", -1, -1, 0))
        goto out;
    if (!X509_set_version(x, X509_VERSION_3) || !X509_set_serialNumber(x, sn) ||
        !X509_set_subject_name(x, subj) || !X509_set_issuer_name(x, iss) ||
        X509_gmtime_adj(X509_getm_notBefore(x), -300) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 365L * 86400) == NULL || !X509_set_pubkey(x, key))
        goto out;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature,keyEncipherment") != 0 ||
        add_ext(x, &ctx, NID_ext_key_usage, "clientAuth") != 0 ||
        add_ext(x, &ctx, NID_subject_key_identifier, "hash") != 0 ||
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") != 0 ||
        add_ext(x, &ctx, NID_subject_alt_name, "DNS:" CN_TEMPLATE ".devices.example.com") != 0 ||
        add_ext(x, &ctx, NID_crl_distribution_points, "URI:http://pki.example.com/scepd.crl") != 0)
        goto out;
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        goto out;
    if ((der_len = i2d_X509(x, &der)) <= 0 || (name_len = i2d_X509_NAME(subj, &name)) <= 0)
        goto out;

    const unsigned char *ps = find(der, (size_t)der_len, serial, sizeof(serial));
    const unsigned char *pn = find(der, (size_t)der_len, name, (size_t)name_len);
    const unsigned char *pc = pn == NULL ? NULL
                            : find(pn, (size_t)name_len, CN_TEMPLATE, strlen(CN_TEMPLATE));
    if (ps == NULL || pn == NULL || pc == NULL)
        goto out;
    struct tm tm;
    if (!ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm))
        goto out;
    t->not_before = (int64_t)timegm(&tm);
    if (!ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm))
        goto out;
    t->not_after = (int64_t)timegm(&tm);
    t->der = malloc((size_t)der_len);
    if (t->der == NULL)
        goto out;
    memcpy(t->der, der, (size_t)der_len);
    t->der_len = (size_t)der_len;
    t->serial_off = (size_t)(ps - der);
    t->name_off = (size_t)(pn - der);
    t->name_len = (size_t)name_len;
    t->cn_off = (size_t)(pc - der) + strlen(CN_PREFIX);
    rc = 0;
out:
    OPENSSL_free(der);
    OPENSSL_free(name);
    BN_free(bn);
    ASN1_INTEGER_free(sn);
    X509_NAME_free(subj);
    X509_NAME_free(iss);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* Per-batch buffers: the puts and the bytes they point at (valid until the commit returns). */
typedef struct batch {
    store_put *puts;               /* n cert puts, then up to n revoke puts */
    unsigned char *der;            /* n * der_len */
    char *txid;                    /* n * TXID_LEN */
    char *subj;                    /* n * SUBJ_TXT_MAX */
    int n;
} batch;

static void batch_free(batch *b)
{
    free(b->puts);
    free(b->der);
    free(b->txid);
    free(b->subj);
}

static int batch_alloc(batch *b, int n, size_t der_len)
{
    b->n = n;
    b->puts = calloc(2 * (size_t)n, sizeof(*b->puts));
    b->der = malloc((size_t)n * der_len);
    b->txid = malloc((size_t)n * TXID_LEN);
    b->subj = malloc((size_t)n * SUBJ_TXT_MAX);
    return b->puts && b->der && b->txid && b->subj ? 0 : -1;
}

static void hexify(const unsigned char *in, size_t n, char *out)
{
    static const char hx[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
}

/* Fills puts [0, count) of b with records first_index.. and links them. */
static int batch_fill(batch *b, const tmpl *t, const unsigned char nonce[16],
                      unsigned long long first_index, int count, int64_t now)
{
    unsigned char serials[16 * 1024];
    int done = 0;

    while (done < count) {
        int chunk = count - done < 1024 ? count - done : 1024;
        if (RAND_bytes(serials, 16 * chunk) != 1)
            return -1;
        for (int k = 0; k < chunk; k++) {
            int i = done + k;
            unsigned long long idx = first_index + (unsigned long long)i;
            store_put *p = &b->puts[i];
            unsigned char *der = b->der + (size_t)i * t->der_len;
            char *txid = b->txid + (size_t)i * TXID_LEN;
            char *subj = b->subj + (size_t)i * SUBJ_TXT_MAX;
            unsigned char hin[24], h[32];
            unsigned int hl = 32;
            char digits[CN_DIGITS + 1];

            memset(p, 0, sizeof(*p));
            memcpy(der, t->der, t->der_len);
            unsigned char *sn = serials + 16 * k;
            sn[0] = (unsigned char)((sn[0] & 0x3f) | 0x40);   /* same width as the template */
            memcpy(der + t->serial_off, sn, 16);
            snprintf(digits, sizeof(digits), "%0*llu", CN_DIGITS, idx % 1000000000000ULL);
            memcpy(der + t->cn_off, digits, CN_DIGITS);

            memcpy(p->cert.serial, sn, 16);
            p->cert.status = STORE_CERT_VALID;
            p->cert.not_before = t->not_before;
            p->cert.not_after = t->not_after;
            p->cert.issued_at = now;
            if (!EVP_Digest(der + t->name_off, t->name_len, p->cert.subject_hash, &hl,
                            EVP_sha256(), NULL))
                return -1;
            /* distinct per record and per run: hash of the run nonce and the index */
            memcpy(hin, nonce, 16);
            memcpy(hin + 16, &idx, 8);
            hl = 32;
            if (!EVP_Digest(hin, sizeof(hin), h, &hl, EVP_sha256(), NULL))
                return -1;
            hexify(h, TXID_LEN / 2, txid);
            memcpy(p->cert.key_hash, h, 32);
            p->cert.key_hash[0] ^= 0x5a;   /* not literally the txid's bytes */
            int sl = snprintf(subj, SUBJ_TXT_MAX, "CN=" CN_PREFIX "%s, O=scepd bench fleet", digits);
            p->cert.subject = subj;
            p->cert.subject_len = (size_t)sl;
            p->cert.txid = txid;
            p->cert.txid_len = TXID_LEN;
            p->cert.profile = "default";
            p->cert.profile_len = 7;
            p->cert.der = der;
            p->cert.der_len = t->der_len;
            p->next = i + 1 < count ? &b->puts[i + 1] : NULL;
        }
        done += chunk;
    }
    return 0;
}

/* Whether record idx of total is one of the revoked ones: R of N spread evenly (floor steps). */
static bool is_revoked(unsigned long long idx, long long total, long long revoked)
{
    unsigned long long n = (unsigned long long)total, r = (unsigned long long)revoked;
    return r > 0 && ((idx + 1) * r) / n != (idx * r) / n;
}

/* Appends a revoke put after the last put of the list for every revoked record among the
 * count cert puts of b (first_index..). Returns how many were added. */
static int batch_add_revokes(batch *b, unsigned long long first_index, int count,
                             long long total, long long revoked, int64_t now)
{
    store_put *tail = &b->puts[count - 1];
    int added = 0;
    for (int i = 0; i < count; i++) {
        if (!is_revoked(first_index + (unsigned long long)i, total, revoked))
            continue;
        store_put *p = &b->puts[count + added];
        memset(p, 0, sizeof(*p));
        p->kind = STORE_PUT_REVOKE;
        memcpy(p->rev.serial, b->puts[i].cert.serial, STORE_SERIAL_LEN);
        p->rev.reason = SEED_REASON;
        p->rev.revoked_at = now;
        p->rev.who = SEED_WHO;
        p->rev.who_len = strlen(SEED_WHO);
        tail->next = p;
        tail = p;
        added++;
    }
    return added;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: seed_store (-c scepd.conf | --store DIR) -n N [--revoked R] [--batch B]\n"
               "                  [--quiet]\n"
               "  Writes N synthetic ~1 KB certificate records into the store, B per write\n"
               "  transaction (default 20000), and revokes R of them (default 0; R <= N,\n"
               "  spread evenly, reason keyCompromise) in the same transactions.\n"
               "  Run while no scepd uses the store.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "store", required_argument, NULL, 'S' },
        { "count", required_argument, NULL, 'n' },
        { "revoked", required_argument, NULL, 'r' },
        { "batch", required_argument, NULL, 'b' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *conf = NULL, *path = NULL;
    long long total = -1, revoked = 0;
    int bsize = 20000, c, rc = 1;
    bool quiet = false;
    config cfg;
    char err[256];
    tmpl t = { 0 };
    batch b = { 0 };
    store *st = NULL;
    unsigned char nonce[16];

    while ((c = getopt_long(argc, argv, "c:S:n:r:b:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': conf = optarg; break;
        case 'S': path = optarg; break;
        case 'n': total = atoll(optarg); break;
        case 'r': revoked = atoll(optarg); break;
        case 'b': bsize = atoi(optarg); break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if ((conf == NULL) == (path == NULL) || total < 0 || revoked < 0 ||
        revoked > total || bsize < 1 || bsize > 1000000 ||
        optind != argc) {
        usage(stderr);
        return 2;
    }
    if (conf != NULL) {
        if (config_load(&cfg, conf, err, sizeof(err)) != 0) {
            fprintf(stderr, "seed_store: %s: %s\n", conf, err);
            goto out;
        }
        path = cfg.store_path;
    }
    if (tmpl_build(&t) != 0 || RAND_bytes(nonce, sizeof(nonce)) != 1) {
        fprintf(stderr, "seed_store: cannot build the template certificate\n");
        ERR_print_errors_fp(stderr);
        goto out;
    }
    /* ~1.4 KB per record over three trees (+ ~100 B per revocation, and the rewritten
     * record's old pages until the commit): start big rather than double the map repeatedly */
    size_t map = (size_t)total * 4096 + (size_t)revoked * 512 + ((size_t)256 << 20);
    int orc = store_open(path, map, &st);
    if (orc != 0) {
        fprintf(stderr, "seed_store: %s: %s\n", path, store_strerror(orc));
        goto out;
    }
    if (batch_alloc(&b, bsize, t.der_len) != 0) {
        fprintf(stderr, "seed_store: out of memory\n");
        goto out;
    }
    double t0 = now_s(), last = t0;
    long long written = 0, dups = 0, nrev = 0;
    int64_t now = (int64_t)time(NULL);
    while (written + dups < total) {
        int n = total - written - dups < bsize ? (int)(total - written - dups) : bsize;
        if (batch_fill(&b, &t, nonce, (unsigned long long)(written + dups), n, now) != 0) {
            fprintf(stderr, "seed_store: cannot build records\n");
            goto out;
        }
        int adds = batch_add_revokes(&b, (unsigned long long)(written + dups), n, total,
                                     revoked, now);
        int wrc = store_put_sync(st, &b.puts[0]);
        if (wrc != 0) {
            fprintf(stderr, "seed_store: commit: %s\n", store_strerror(wrc));
            goto out;
        }
        for (int i = 0; i < n; i++) {
            if (b.puts[i].result == STORE_OK)
                written++;
            else if (b.puts[i].result == STORE_DUP_SERIAL)
                dups++;   /* 2^-126 per pair: only if RAND_bytes is broken */
            else {
                fprintf(stderr, "seed_store: put: %s\n", store_strerror(b.puts[i].result));
                goto out;
            }
        }
        for (int i = n; i < n + adds; i++) {
            /* STORE_NOTFOUND: its certificate was a duplicate serial, not written */
            if (b.puts[i].result == STORE_OK)
                nrev++;
            else if (b.puts[i].result != STORE_NOTFOUND) {
                fprintf(stderr, "seed_store: revoke: %s\n", store_strerror(b.puts[i].result));
                goto out;
            }
        }
        double tn = now_s();
        if (!quiet && tn - last >= 2.0) {
            fprintf(stderr, "seed_store: %lld/%lld, %lld revoked (%.0f/s)\n", written, total,
                    nrev, (double)written / (tn - t0));
            last = tn;
        }
    }
    double secs = now_s() - t0;
    printf("{\"store\":\"%s\",\"seeded\":%lld,\"revoked\":%lld,\"duplicates\":%lld,"
           "\"der_bytes\":%zu,\"seconds\":%.2f,\"records_per_s\":%.0f}\n",
           path, written, nrev, dups, t.der_len, secs, secs > 0 ? (double)written / secs : 0.0);
    rc = dups == 0 ? 0 : 1;
out:
    batch_free(&b);
    store_close(st);
    free(t.der);
    return rc;
}
