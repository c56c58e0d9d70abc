/* ceiling: the crypto ceiling of a scepd state directory, in private-key operations per second
 * and in enrollments per second.
 *
 *   ceiling -c scepd.conf [--threads N] [--seconds S] [--json FILE]
 *
 * A PKCSReq costs three private-key operations: the RA decrypts the envelope, the CA signs the
 * certificate, the RA signs the CertRep (with no RA the CA key does all three). No server can
 * issue faster than those operations run, so the benchmark reports every server against
 *
 *     ceiling = 1 / (1/ra_decrypt_per_s + 1/ca_sign_per_s + 1/ra_sign_per_s)
 *
 * measured here with the key types of the state directory and as many threads as scepd runs
 * crypto workers (crypto_workers, 0 = online CPUs), each thread with its own context (software)
 * or its own PKCS#11 session (token): (a) OpenSSL in software (the state's PEM keys in file
 * mode, fresh keys of the same types otherwise), (b) PKCS#11 C_Sign / C_Decrypt on the token's
 * CA and RA keys (pkcs11 mode only) through hsm_probe_*. Prints one JSON object.
 *
 * It also reports the crypto floor in CPU time: the CPU milliseconds the three operations of
 * one enrollment take (thread CPU time / operations, summed over decrypt + CA sign + RA sign),
 * the figure a server's CPU per enrollment is compared with. It moves less than the rates when
 * other processes share the machine. (SoftHSM runs in the calling thread, so the same holds.)
 *
 * And the public-key operations no SCEP server can skip either, with a device key of
 * --device-key (default rsa:2048, scep-loadgen's default): two verifications (the request's
 * signature, the CSR's proof of possession) and one encryption (the reply's content key to
 * the device), in software, as public_cpu_ms_per_enrollment. The private floor plus that is
 * the floor of any SCEP server with these keys (docs/benchmarks.md, "How far the floor is").
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "engine/common/config.h"
#include "hsm/hsm.h"

#define HSM_CHUNK 32     /* token operations per probe call: amortises the key lookup */
#define SW_CHUNK  16
#define MAX_THREADS 256

enum op { OP_SIGN, OP_DECRYPT, OP_VERIFY, OP_ENCRYPT };

/* One measurement: what every thread runs and what it reports back. */
typedef struct probe {
    enum op op;
    EVP_PKEY *key;          /* software: shared, read-only; each thread has its own ctx */
    hsm_token *tok;         /* token: NULL for software */
    const char *label;
    double seconds;
    pthread_barrier_t *start;
    /* per-thread results */
    long long ops;
    double t0, t1;
    double cpu;             /* this thread's CPU seconds over the timed window */
    int rc;
} probe;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The calling thread's CPU time: on a shared machine the CPU cost of an operation is steadier
 * than its wall-clock rate, and it is what the server's CPU per enrollment is compared with. */
static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A ready EVP_PKEY_CTX for PKCS#1 v1.5 / ECDSA over SHA-256 (sign) or PKCS#1 v1.5 decrypt,
 * plus the input it works on: a SHA-256 digest, or a ciphertext made with the public half. */
/* OP_VERIFY: in = a SHA-256 digest then its PKCS#1 v1.5 signature, ctx verify-initialised;
 * OP_ENCRYPT: in = a 32-byte content key, ctx encrypt-initialised (RSA keys only). */
static int public_setup(const probe *p, EVP_PKEY_CTX *ctx, unsigned char *in, size_t *inlen)
{
    bool rsa = EVP_PKEY_is_a(p->key, "RSA");
    unsigned int n = 32;
    size_t siglen = 1024 - 32;
    EVP_PKEY_CTX *sctx = NULL;
    int rc = -1;

    if (p->op == OP_ENCRYPT) {
        memset(in, 0x5a, 32);
        *inlen = 32;
        return rsa && EVP_PKEY_encrypt_init(ctx) > 0 &&
               EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0 ? 0 : -1;
    }
    if ((sctx = EVP_PKEY_CTX_new_from_pkey(NULL, p->key, NULL)) == NULL ||
        !EVP_Digest("scepd ceiling", 13, in, &n, EVP_sha256(), NULL) ||
        EVP_PKEY_sign_init(sctx) <= 0 || EVP_PKEY_verify_init(ctx) <= 0 ||
        (rsa && (EVP_PKEY_CTX_set_rsa_padding(sctx, RSA_PKCS1_PADDING) <= 0 ||
                 EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)) ||
        EVP_PKEY_CTX_set_signature_md(sctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) <= 0 ||
        EVP_PKEY_sign(sctx, in + 32, &siglen, in, 32) <= 0)
        goto out;
    *inlen = 32 + siglen;
    rc = 0;
out:
    EVP_PKEY_CTX_free(sctx);
    return rc;
}

static int sw_setup(const probe *p, EVP_PKEY_CTX **out, unsigned char *in, size_t *inlen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, p->key, NULL);
    EVP_PKEY_CTX *enc = NULL;
    bool rsa = EVP_PKEY_is_a(p->key, "RSA");
    int rc = -1;

    if (ctx == NULL)
        goto out;
    if (p->op == OP_VERIFY || p->op == OP_ENCRYPT) {
        rc = public_setup(p, ctx, in, inlen);
        goto out;
    }
    if (p->op == OP_SIGN) {
        unsigned int n = 32;
        if (EVP_PKEY_sign_init(ctx) <= 0 ||
            (rsa && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0) ||
            EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) <= 0 ||
            !EVP_Digest("scepd ceiling", 13, in, &n, EVP_sha256(), NULL))
            goto out;
        *inlen = 32;
    } else {
        unsigned char msg[32] = { 0 };   /* an AES-256 content key is this size */
        size_t ctlen = 1024;
        enc = EVP_PKEY_CTX_new_from_pkey(NULL, p->key, NULL);
        if (!rsa || enc == NULL || EVP_PKEY_encrypt_init(enc) <= 0 ||
            EVP_PKEY_CTX_set_rsa_padding(enc, RSA_PKCS1_PADDING) <= 0 ||
            EVP_PKEY_encrypt(enc, in, &ctlen, msg, sizeof(msg)) <= 0 ||
            EVP_PKEY_decrypt_init(ctx) <= 0 ||
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0)
            goto out;
        *inlen = ctlen;
    }
    rc = 0;
out:
    EVP_PKEY_CTX_free(enc);
    if (rc == 0)
        *out = ctx;
    else
        EVP_PKEY_CTX_free(ctx);
    return rc;
}

static int sw_chunk(const probe *p, EVP_PKEY_CTX *ctx, const unsigned char *in, size_t inlen)
{
    unsigned char buf[1024];
    for (int i = 0; i < SW_CHUNK; i++) {
        size_t outlen = sizeof(buf);
        int ok;
        switch (p->op) {
        case OP_SIGN: ok = EVP_PKEY_sign(ctx, buf, &outlen, in, inlen); break;
        case OP_DECRYPT: ok = EVP_PKEY_decrypt(ctx, buf, &outlen, in, inlen); break;
        case OP_VERIFY: ok = EVP_PKEY_verify(ctx, in + 32, inlen - 32, in, 32); break;
        default: ok = EVP_PKEY_encrypt(ctx, buf, &outlen, in, inlen); break;
        }
        if (ok <= 0)
            return -1;
    }
    return SW_CHUNK;
}

static int hsm_chunk(const probe *p)
{
    int rc = p->op == OP_SIGN ? hsm_probe_sign(p->tok, p->label, HSM_CHUNK)
                              : hsm_probe_decrypt(p->tok, p->label, HSM_CHUNK);
    return rc == 0 ? HSM_CHUNK : -1;
}

/* Thread body: set up outside the timed window, meet the others at the barrier, then run
 * whole chunks until this thread's own deadline. */
static void *probe_thread(void *arg)
{
    probe *p = arg;
    EVP_PKEY_CTX *ctx = NULL;
    unsigned char in[1024];
    size_t inlen = 0;
    bool attached = false;
    int setup = 0;

    p->rc = -1;
    if (p->tok != NULL)
        setup = hsm_thread_attach(p->tok);
    else
        setup = sw_setup(p, &ctx, in, &inlen);
    attached = p->tok != NULL && setup == 0;
    pthread_barrier_wait(p->start);   /* every thread waits, even one that failed */
    if (setup != 0)
        goto out;
    p->t0 = now_s();
    double cpu0 = thread_cpu_s();
    double deadline = p->t0 + p->seconds;
    for (;;) {
        int n = p->tok != NULL ? hsm_chunk(p) : sw_chunk(p, ctx, in, inlen);
        if (n < 0)
            goto out;
        p->ops += n;
        p->t1 = now_s();
        if (p->t1 >= deadline)
            break;
    }
    p->cpu = thread_cpu_s() - cpu0;
    p->rc = 0;
out:
    if (attached)
        hsm_thread_detach();
    EVP_PKEY_CTX_free(ctx);
    return NULL;
}

/* Runs the probe on nthreads threads at once; *rate = all operations / overall wall time
 * (first start to last finish), so threads that did not overlap are not counted twice;
 * *cpu_ms = CPU milliseconds per operation (all threads' CPU time / all operations). */
static int run_probe(const probe *tmpl, int nthreads, double *rate, double *cpu_ms)
{
    probe ps[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    pthread_barrier_t bar;
    int started = 0, rc = -1;

    if (pthread_barrier_init(&bar, NULL, (unsigned)nthreads) != 0)
        return -1;
    for (int i = 0; i < nthreads; i++) {
        ps[i] = *tmpl;
        ps[i].start = &bar;
        ps[i].ops = 0;
        ps[i].t0 = ps[i].t1 = 0;
        ps[i].cpu = 0;
    }
    for (; started < nthreads; started++)
        if (pthread_create(&th[started], NULL, probe_thread, &ps[started]) != 0)
            break;
    if (started < nthreads) {
        /* the barrier would never open: nothing sensible to do but abort the process */
        fprintf(stderr, "ceiling: pthread_create failed\n");
        abort();
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    double t0 = 0, t1 = 0, cpu = 0;
    long long ops = 0;
    for (int i = 0; i < nthreads; i++) {
        if (ps[i].rc != 0)
            goto out;
        if (i == 0 || ps[i].t0 < t0)
            t0 = ps[i].t0;
        if (ps[i].t1 > t1)
            t1 = ps[i].t1;
        ops += ps[i].ops;
        cpu += ps[i].cpu;
    }
    if (t1 <= t0 || ops == 0)
        goto out;
    *rate = (double)ops / (t1 - t0);
    *cpu_ms = cpu * 1000.0 / (double)ops;
    rc = 0;
out:
    pthread_barrier_destroy(&bar);
    return rc;
}

/* "rsa:2048" / "ec:P-256" for a public key, so the software keys match the state's keys. */
static int key_spec(EVP_PKEY *k, char *buf, size_t len)
{
    if (EVP_PKEY_is_a(k, "RSA")) {
        snprintf(buf, len, "rsa:%d", EVP_PKEY_get_bits(k));
        return 0;
    }
    if (EVP_PKEY_is_a(k, "EC")) {
        char g[64];
        if (!EVP_PKEY_get_group_name(k, g, sizeof(g), NULL))
            return -1;
        const char *nist = strcmp(g, "prime256v1") == 0 ? "P-256"
                         : strcmp(g, "secp384r1") == 0 ? "P-384"
                         : strcmp(g, "secp521r1") == 0 ? "P-521" : g;
        snprintf(buf, len, "ec:%s", nist);
        return 0;
    }
    return -1;
}

static EVP_PKEY *cert_pubkey(const char *path)
{
    FILE *f = fopen(path, "rb");
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    if (f == NULL)
        return NULL;
    x = PEM_read_X509(f, NULL, NULL, NULL);
    if (x == NULL) {
        rewind(f);
        x = d2i_X509_fp(f, NULL);
    }
    fclose(f);
    if (x != NULL)
        k = X509_get_pubkey(x);
    X509_free(x);
    return k;
}

static EVP_PKEY *gen_key(const char *spec)
{
    if (strncmp(spec, "rsa:", 4) == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)atoi(spec + 4));
    if (strncmp(spec, "ec:", 3) == 0)
        return EVP_PKEY_Q_keygen(NULL, NULL, "EC", spec + 3);
    return NULL;
}

static EVP_PKEY *load_key_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    EVP_PKEY *k = NULL;
    if (f != NULL) {
        k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    return k;
}

/* Harmonic combination: seconds per enrollment are the sum of the seconds of its operations. */
static double ceiling_of(double dec, double ca_sign, double ra_sign)
{
    if (dec <= 0 || ca_sign <= 0 || ra_sign <= 0)
        return 0;
    return 1.0 / (1.0 / dec + 1.0 / ca_sign + 1.0 / ra_sign);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: ceiling -c scepd.conf [--threads N] [--seconds S] [--json FILE]\n"
               "               [--device-key rsa:BITS|ec:CURVE]\n"
               "  Measures private-key operations/s (OpenSSL software and, in pkcs11 mode,\n"
               "  the token) with the state's key types and crypto_workers threads; prints\n"
               "  JSON with the ceiling in enrollments/s (1 decrypt + 2 signs each), and the\n"
               "  CPU of the public-key operations with a device key (2 verifies + 1 encrypt).\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "threads", required_argument, NULL, 't' },
        { "seconds", required_argument, NULL, 's' },
        { "json", required_argument, NULL, 'j' },
        { "device-key", required_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *conf = NULL, *json = NULL, *dev_spec = "rsa:2048";
    int threads = 0, rc = 1, c;
    double seconds = 2.0;
    config cfg;
    char err[256], pin[256], ca_spec[80], ra_spec[80];
    EVP_PKEY *ca_pub = NULL, *ra_pub = NULL, *ca_sw = NULL, *ra_sw = NULL, *dev = NULL;
    double sw_verify = 0, sw_encrypt = 0, sc_verify = 0, sc_encrypt = 0;
    hsm_token *tok = NULL;
    bool have_ra;
    double sw_ca_sign = 0, sw_ra_sign = 0, sw_dec = 0, hw_ca_sign = 0, hw_ra_sign = 0, hw_dec = 0;
    /* CPU ms per operation, same order */
    double sc_ca = 0, sc_ra = 0, sc_dec = 0, hc_ca = 0, hc_ra = 0, hc_dec = 0;
    FILE *out = NULL;

    while ((c = getopt_long(argc, argv, "c:t:s:j:d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': conf = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 's': seconds = atof(optarg); break;
        case 'j': json = optarg; break;
        case 'd': dev_spec = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (conf == NULL || optind != argc || threads < 0 || threads > MAX_THREADS ||
        !(seconds > 0 && seconds <= 600)) {
        usage(stderr);
        return 2;
    }
    if (config_load(&cfg, conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "ceiling: %s: %s\n", conf, err);
        goto out;
    }
    if (threads == 0)
        threads = cfg.workers > 0 ? cfg.workers : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1 || threads > MAX_THREADS)
        threads = 1;

    have_ra = cfg.ra_cert[0] != '\0';
    ca_pub = cert_pubkey(cfg.ca_cert);
    ra_pub = have_ra ? cert_pubkey(cfg.ra_cert) : NULL;
    if (ca_pub == NULL || (have_ra && ra_pub == NULL) || key_spec(ca_pub, ca_spec, sizeof(ca_spec)) != 0 ||
        key_spec(have_ra ? ra_pub : ca_pub, ra_spec, sizeof(ra_spec)) != 0) {
        fprintf(stderr, "ceiling: cannot read the CA/RA certificates of %s\n", conf);
        goto out;
    }

    /* (a) software: the real PEM keys in file mode, fresh keys of the same types otherwise */
    bool share = !have_ra || (cfg.key_mode != CONFIG_KEYS_FILE && strcmp(ra_spec, ca_spec) == 0);
    if (cfg.key_mode == CONFIG_KEYS_FILE) {
        ca_sw = load_key_file(cfg.ca_key_file);
        ra_sw = share ? NULL : load_key_file(cfg.ra_key_file);
    } else {
        ca_sw = gen_key(ca_spec);
        ra_sw = share ? NULL : gen_key(ra_spec);
    }
    if (share && ca_sw != NULL && EVP_PKEY_up_ref(ca_sw))
        ra_sw = ca_sw;
    if (ca_sw == NULL || ra_sw == NULL) {
        fprintf(stderr, "ceiling: cannot load or generate software keys\n");
        goto out;
    }
    probe p = { .key = ca_sw, .seconds = seconds, .op = OP_SIGN };
    if (run_probe(&p, threads, &sw_ca_sign, &sc_ca) != 0)
        goto crypto_fail;
    sw_ra_sign = sw_ca_sign;
    sc_ra = sc_ca;
    if (strcmp(ra_spec, ca_spec) != 0) {
        p.key = ra_sw;
        if (run_probe(&p, threads, &sw_ra_sign, &sc_ra) != 0)
            goto crypto_fail;
    }
    p.key = ra_sw;
    p.op = OP_DECRYPT;
    if (EVP_PKEY_is_a(ra_sw, "RSA") && run_probe(&p, threads, &sw_dec, &sc_dec) != 0)
        goto crypto_fail;

    /* the device's public-key operations (software on every server) */
    if ((dev = gen_key(dev_spec)) == NULL) {
        fprintf(stderr, "ceiling: cannot generate a device key %s\n", dev_spec);
        goto out;
    }
    p.key = dev;
    p.op = OP_VERIFY;
    if (run_probe(&p, threads, &sw_verify, &sc_verify) != 0)
        goto crypto_fail;
    p.op = OP_ENCRYPT;
    if (EVP_PKEY_is_a(dev, "RSA") && run_probe(&p, threads, &sw_encrypt, &sc_encrypt) != 0)
        goto crypto_fail;

    /* (b) token: the state's own CA and RA keys, one session per thread */
    if (cfg.key_mode == CONFIG_KEYS_PKCS11) {
        const char *ra_label = have_ra ? cfg.ra_key_label : cfg.ca_key_label;
        if (config_apply_module_env(&cfg) != 0 ||
            config_read_pin(&cfg, pin, sizeof(pin), err, sizeof(err)) != 0) {
            fprintf(stderr, "ceiling: token settings of %s: %s\n", conf, err);
            goto out;
        }
        int orc = hsm_token_open(cfg.pkcs11_module, cfg.token_label, pin, &tok);
        OPENSSL_cleanse(pin, sizeof(pin));
        if (orc != 0) {
            fprintf(stderr, "ceiling: token: %s\n", hsm_last_error());
            goto out;
        }
        probe h = { .tok = tok, .label = cfg.ca_key_label, .seconds = seconds, .op = OP_SIGN };
        if (run_probe(&h, threads, &hw_ca_sign, &hc_ca) != 0)
            goto token_fail;
        hw_ra_sign = hw_ca_sign;
        hc_ra = hc_ca;
        if (strcmp(ra_spec, ca_spec) != 0) {
            h.label = ra_label;
            if (run_probe(&h, threads, &hw_ra_sign, &hc_ra) != 0)
                goto token_fail;
        }
        h.label = ra_label;
        h.op = OP_DECRYPT;
        if (strncmp(ra_spec, "rsa:", 4) == 0 && run_probe(&h, threads, &hw_dec, &hc_dec) != 0)
            goto token_fail;
    }

    out = json != NULL ? fopen(json, "w") : stdout;
    if (out == NULL) {
        fprintf(stderr, "ceiling: %s: %s\n", json, strerror(errno));
        goto out;
    }
    fprintf(out,
            "{\"threads\":%d,\"seconds\":%.1f,\"keys\":\"%s\",\"ca_key\":\"%s\",\"ra_key\":\"%s\","
            "\"private_ops_per_enrollment\":3,"
            "\"sw_sign_per_s\":%.1f,\"sw_ra_sign_per_s\":%.1f,\"sw_decrypt_per_s\":%.1f,"
            "\"hsm_sign_per_s\":%.1f,\"hsm_ra_sign_per_s\":%.1f,\"hsm_decrypt_per_s\":%.1f,"
            "\"sw_ceiling_enrollments_per_s\":%.1f,\"hsm_ceiling_enrollments_per_s\":%.1f,"
            "\"sw_floor_cpu_ms_per_enrollment\":%.3f,\"hsm_floor_cpu_ms_per_enrollment\":%.3f,"
            "\"device_key\":\"%s\",\"sw_verify_per_s\":%.1f,\"sw_encrypt_per_s\":%.1f,"
            "\"public_cpu_ms_per_enrollment\":%.3f}\n",
            threads, seconds, cfg.key_mode == CONFIG_KEYS_PKCS11 ? "pkcs11" : "file", ca_spec,
            ra_spec, sw_ca_sign, sw_ra_sign, sw_dec, hw_ca_sign, hw_ra_sign, hw_dec,
            ceiling_of(sw_dec, sw_ca_sign, sw_ra_sign), ceiling_of(hw_dec, hw_ca_sign, hw_ra_sign),
            sc_dec + sc_ca + sc_ra, hc_dec + hc_ca + hc_ra, dev_spec, sw_verify, sw_encrypt,
            2 * sc_verify + sc_encrypt);
    rc = fflush(out) == 0 ? 0 : 1;
    goto out;

crypto_fail:
    fprintf(stderr, "ceiling: software probe failed\n");
    ERR_print_errors_fp(stderr);
    goto out;
token_fail:
    fprintf(stderr, "ceiling: token probe failed: %s\n", hsm_last_error());
out:
    if (out != NULL && out != stdout)
        fclose(out);
    EVP_PKEY_free(ca_pub);
    EVP_PKEY_free(ra_pub);
    EVP_PKEY_free(ca_sw);
    EVP_PKEY_free(ra_sw);
    EVP_PKEY_free(dev);
    hsm_token_close(tok);
    return rc;
}
