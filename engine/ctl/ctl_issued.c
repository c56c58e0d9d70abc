/* scepctl cert list|show|count and revoke: the certificates scepd issued, as the store holds
 * them. Revocation writes the store directly (LMDB serialises this writer with scepd's; scepd
 * notices the new revocation generation and rebuilds its CRL). See ctl_internal.h. */
#include "engine/ctl/ctl_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "engine/pki/crl.h"
#include "engine/pki/serial.h"

static int list_one(const store_cert *c, void *arg)
{
    char when[32], sn[2 * STORE_SERIAL_LEN + 1];
    (void)arg;
    ctl_iso_time(c->not_after, when, sizeof(when));
    serial_to_hex(c->serial, sn);
    printf("%s  %-7s  %s  %.*s\n", sn, c->status == STORE_CERT_REVOKED ? "revoked" : "valid", when,
           (int)c->subject_len, c->subject);
    return 0;
}

/* One revocation: serial, time, reason, who, and the certificate's subject. */
static int list_revoked(const store_revocation *rv, void *arg)
{
    store_reader *r = arg;
    store_cert c;
    char when[32], sn[2 * STORE_SERIAL_LEN + 1];
    ctl_iso_time(rv->revoked_at, when, sizeof(when));
    int have = store_get_cert(r, rv->serial, &c) == STORE_OK;
    serial_to_hex(rv->serial, sn);
    printf("%s  %s  %-20s  %.*s  %.*s\n", sn, when, crl_reason_name(rv->reason), (int)rv->who_len,
           rv->who, have ? (int)c.subject_len : 1, have ? c.subject : "?");
    return 0;
}

/* cert show SERIAL: status, transaction, profile, then the certificate as text and PEM. */
static int cert_show(store_reader *r, const char *text)
{
    uint8_t serial[STORE_SERIAL_LEN];
    store_cert c;
    if (serial_parse(text, serial) != 0) {
        fprintf(stderr, "scepctl: %s\n", SERIAL_RULE);
        return 2;
    }
    int e = store_get_cert(r, serial, &c);
    if (e != STORE_OK) {
        fprintf(stderr, "scepctl: %s: %s\n", text, e == STORE_NOTFOUND ? "not found" : store_strerror(e));
        return 1;
    }
    const unsigned char *p = c.der;
    X509 *x = d2i_X509(NULL, &p, (long)c.der_len);
    if (x == NULL)
        return 1;
    printf("status: %s\ntransaction: %.*s\nprofile: %.*s\n",
           c.status == STORE_CERT_REVOKED ? "revoked" : "valid", (int)c.txid_len, c.txid,
           (int)c.profile_len, c.profile);
    X509_print_fp(stdout, x);
    PEM_write_X509(stdout, x);
    X509_free(x);
    return 0;
}

int ctl_cmd_cert(const config *cfg, int argc, char **argv)
{
    store *s = NULL;
    store_reader *r = NULL;
    int rc = 1, e;

    if (argc < 1) {
        ctl_usage();
        return 2;
    }
    if (ctl_store_open(cfg, &s, &r) != 0)
        goto out;
    if ((e = store_reader_begin(r)) != 0) {
        fprintf(stderr, "scepctl: store %s: %s\n", cfg->store_path, store_strerror(e));
        goto out;
    }
    if (strcmp(argv[0], "list") == 0 && argc == 2 && strcmp(argv[1], "--revoked") == 0) {
        rc = store_foreach_revoked(r, list_revoked, r) != 0 ? 1 : 0;
    } else if (strcmp(argv[0], "list") == 0 && argc == 1) {
        rc = store_foreach_cert(r, list_one, NULL) < 0 ? 1 : 0;
    } else if (strcmp(argv[0], "count") == 0) {
        size_t n = 0;
        if (store_count(r, &n) == 0) {
            printf("%zu\n", n);
            rc = 0;
        }
    } else if (strcmp(argv[0], "show") == 0 && argc == 2) {
        rc = cert_show(r, argv[1]);
    } else {
        ctl_usage();
        rc = 2;
    }
out:
    store_reader_destroy(r);
    store_close(s);
    return rc;
}

/* revoke's options after the serial; 0, or 2 (message or usage printed). */
static int revoke_parse(int argc, char **argv, int *reason, long long *inv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc) {
            if ((*reason = crl_reason_from_name(argv[++i])) < 0) {
                fprintf(stderr, "scepctl: unknown reason '%s' (RFC 5280 names, e.g. keyCompromise)\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--invalidity-date") == 0 && i + 1 < argc) {
            char *end = NULL;
            *inv = strtoll(argv[++i], &end, 10);
            if (end == argv[i] || *end != '\0' || *inv <= 0) {
                fprintf(stderr, "scepctl: --invalidity-date takes seconds since the epoch\n");
                return 2;
            }
        } else {
            ctl_usage();
            return 2;
        }
    }
    return 0;
}

/* Revokes one certificate (idempotent: a second revoke reports "already-revoked"). */
int ctl_cmd_revoke(const config *cfg, int argc, char **argv)
{
    uint8_t serial[STORE_SERIAL_LEN];
    int reason = 0, rc = 1;
    long long inv = 0;
    char who[CTL_WHO_MAX], when[32];
    store *s = NULL;

    if (argc < 1 || serial_parse(argv[0], serial) != 0) {
        fprintf(stderr, "scepctl: revoke needs a serial: %s\n", SERIAL_RULE);
        return 2;
    }
    if (revoke_parse(argc, argv, &reason, &inv) != 0)
        return 2;
    ctl_who_am_i(who, sizeof(who));
    if (ctl_store_open(cfg, &s, NULL) != 0)
        goto out;
    store_put p;
    memset(&p, 0, sizeof(p));
    p.kind = STORE_PUT_REVOKE;
    memcpy(p.rev.serial, serial, sizeof(serial));
    p.rev.reason = reason;
    p.rev.revoked_at = (int64_t)time(NULL);
    p.rev.invalidity = (int64_t)inv;
    p.rev.who = who;
    p.rev.who_len = strlen(who);
    int e = store_put_sync(s, &p);
    if (e != 0 || p.result < 0 || p.result == STORE_E_CORRUPT) {
        fprintf(stderr, "scepctl: revoke %s: %s\n", argv[0], store_strerror(e != 0 ? e : p.result));
        goto out;
    }
    if (p.result == STORE_NOTFOUND) {
        fprintf(stderr, "scepctl: %s: no certificate with this serial\n", argv[0]);
        goto out;
    }
    ctl_iso_time(p.rev.revoked_at, when, sizeof(when));
    printf("%s %s %s %s\n", argv[0], p.result == STORE_ALREADY_REVOKED ? "already-revoked" : "revoked",
           when, crl_reason_name(p.rev.reason));
    rc = 0;
out:
    store_close(s);
    return rc;
}
