/* scepctl crl bench N: N synthetic revocations through the CRL builder and the CA key scepd
 * uses, timing the encoding and the signature apart (not in the usage text; the figures in
 * docs/operations.md come from it).
 * See ctl_internal.h. */
#include "engine/ctl/ctl_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/rand.h>

#include "engine/pki/crl.h"

static double secs_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* n random 16-byte serials (positive, top bits 01), spread over a day, reasons 0..5, one in
 * ten with an invalidity date: a CRL shaped like a busy CA's. */
static int bench_fill(crl_builder *b, size_t n, int64_t now)
{
    uint8_t serial[16];
    for (size_t i = 0; i < n; i++) {
        if (RAND_bytes(serial, sizeof(serial)) != 1)
            return -1;
        serial[0] = (uint8_t)((serial[0] & 0x3f) | 0x40);
        if (crl_builder_add(b, serial, sizeof(serial), now - (int64_t)(i % 86400), (int)(i % 6),
                            i % 10 == 0 ? now - 86400 : 0) != 0)
            return -1;
    }
    return 0;
}

int ctl_cmd_crl(const config *cfg, int argc, char **argv)
{
    ca_set *ca = NULL;
    crl_signer *sg = NULL;
    crl_builder *b = NULL;
    uint8_t *der = NULL;
    size_t len = 0;
    int rc = 1;

    if (argc != 2 || strcmp(argv[0], "bench") != 0 || atol(argv[1]) <= 0) {
        ctl_usage();
        return 2;
    }
    size_t n = (size_t)atol(argv[1]);
    if (ctl_load_ca(cfg, &ca) != 0)
        goto out;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int64_t now = (int64_t)time(NULL);
    if (crl_signer_create(ca->ca_key, ca->ca_cert, NULL, &sg) != 0 ||
        crl_builder_create(n, &b) != 0 || bench_fill(b, n, now) != 0)
        goto out;
    double t_build = secs_since(&t0);
    if (crl_builder_sign(b, sg, 1, now, now + 86400, &der, &len) != 0)
        goto out;
    double t_total = secs_since(&t0);
    printf("entries=%zu bytes=%zu encode_s=%.3f sign_s=%.3f total_s=%.3f\n", n, len, t_build,
           t_total - t_build, t_total);
    rc = 0;
out:
    free(der);
    crl_builder_destroy(b);
    crl_signer_destroy(sg);
    ca_free(ca);
    return rc;
}
