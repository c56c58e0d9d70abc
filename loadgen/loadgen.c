/* scep-loadgen: a SCEP (RFC 8894) load generator. See docs/loadgen.md.
 *
 * Phases: GetCACaps + GetCACert; device key pool; (closed loop with --duration or --warmup)
 * an untimed calibration run that sizes the prebuilt set; (--renewal-share) untimed
 * enrollments whose certificates sign the RenewalReqs; prebuilding every request; the timed
 * run; checking every response; the report. */
#include "loadgen/loadgen.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#define DEFAULT_POOL 64
#define DEFAULT_MAX_PREBUILT 200000
#define CAL_MIN 64
#define CAL_MAX 2000

typedef struct opts {
    const char *url, *challenge, *method, *cipher, *md, *key_type, *key_cache, *json, *label;
    const char *metrics_url;
    int concurrency, concurrency_set, server_pid, legacy, quiet, threads;
    int duration_set, count_set;   /* given on the command line */
    double duration, warmup, rate, renewal_share, timeout;
    size_t count, pool, max_requests;
    scepc_md md_id;
    scepc_cipher cipher_id;
} opts;

static volatile sig_atomic_t g_stop;   /* set by SIGINT during the timed run only */

static void on_sigint(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: scep-loadgen --url URL [--challenge X] [--concurrency C]\n"
            "         [--duration SEC | --count N] [--warmup SEC] [--rate R]\n"
            "         [--method post|get] [--cipher aes128|aes256|des3] [--md sha256|sha512]\n"
            "         [--key-type rsa:2048|rsa:3072|ec:P-256|ec:P-384] [--renewal-share F]\n"
            "         [--key-cache DIR] [--pool N] [--max-requests N] [--timeout SEC]\n"
            "         [--json FILE] [--server-pid PID] [--legacy] [--quiet] [--label NAME]\n"
            "         [--threads N] [--metrics-url URL]\n"
            "Closed loop over C keep-alive connections, or open loop at R requests/s (latency\n"
            "from the intended send time). Exit 0: no errors; 1: a request failed or a reply\n"
            "failed validation; 2: usage or setup error.\n");
}

static int num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

/* A whole number in [lo, hi]. */
static int whole(const char *s, double lo, double hi, double *out)
{
    return num(s, lo, hi, out) != 0 || *out != floor(*out) ? -1 : 0;
}

/* getopt_long codes; O_URL + i names long_opts[i]. */
enum { O_URL = 256, O_CHAL, O_CONC, O_DUR, O_COUNT, O_WARM, O_RATE, O_METHOD, O_CIPHER, O_MD,
       O_KEYTYPE, O_RENEW, O_CACHE, O_POOL, O_JSON, O_PID, O_LEGACY, O_QUIET, O_LABEL,
       O_MAXREQ, O_TIMEOUT, O_THREADS, O_METRICS, O_HELP };
static const struct option long_opts[] = {
    { "url", 1, NULL, O_URL }, { "challenge", 1, NULL, O_CHAL },
    { "concurrency", 1, NULL, O_CONC }, { "duration", 1, NULL, O_DUR },
    { "count", 1, NULL, O_COUNT }, { "warmup", 1, NULL, O_WARM }, { "rate", 1, NULL, O_RATE },
    { "method", 1, NULL, O_METHOD }, { "cipher", 1, NULL, O_CIPHER }, { "md", 1, NULL, O_MD },
    { "key-type", 1, NULL, O_KEYTYPE }, { "renewal-share", 1, NULL, O_RENEW },
    { "key-cache", 1, NULL, O_CACHE }, { "pool", 1, NULL, O_POOL },
    { "json", 1, NULL, O_JSON }, { "server-pid", 1, NULL, O_PID },
    { "legacy", 0, NULL, O_LEGACY }, { "quiet", 0, NULL, O_QUIET },
    { "label", 1, NULL, O_LABEL }, { "max-requests", 1, NULL, O_MAXREQ },
    { "timeout", 1, NULL, O_TIMEOUT }, { "threads", 1, NULL, O_THREADS },
    { "metrics-url", 1, NULL, O_METRICS }, { "help", 0, NULL, O_HELP }, { NULL, 0, NULL, 0 },
};

/* Stores option c with argument a. Returns 0, -1 for a bad value, 1 for an unknown option. */
static int set_opt(opts *o, int c, const char *a)
{
    double v;
    int rc = 0;

    switch (c) {
    case O_URL: o->url = a; break;
    case O_CHAL: o->challenge = a; break;
    case O_CONC:
        if ((rc = whole(a, 1, 10000, &v)) == 0) {
            o->concurrency = (int)v;
            o->concurrency_set = 1;
        }
        break;
    case O_DUR:
        if ((rc = num(a, 0.001, 86400, &o->duration)) == 0)
            o->duration_set = 1;
        break;
    case O_COUNT:
        if ((rc = whole(a, 1, 1e7, &v)) == 0) {
            o->count = (size_t)v;
            o->count_set = 1;
        }
        break;
    case O_WARM: rc = num(a, 0, 3600, &o->warmup); break;
    case O_RATE: rc = num(a, 0.001, 1e6, &o->rate); break;
    case O_METHOD:
        if (strcmp(a, "post") != 0 && strcmp(a, "get") != 0)
            rc = -1;
        else
            o->method = a;
        break;
    case O_CIPHER: o->cipher = a; break;
    case O_MD: o->md = a; break;
    case O_KEYTYPE: o->key_type = a; break;
    case O_RENEW: rc = num(a, 0, 1, &o->renewal_share); break;
    case O_CACHE: o->key_cache = a; break;
    case O_POOL:
        if ((rc = whole(a, 1, 100000, &v)) == 0)
            o->pool = (size_t)v;
        break;
    case O_JSON: o->json = a; break;
    case O_PID:
        if ((rc = whole(a, 1, 4194304, &v)) == 0)
            o->server_pid = (int)v;
        break;
    case O_LEGACY: o->legacy = 1; break;
    case O_QUIET: o->quiet = 1; break;
    case O_LABEL: o->label = a; break;
    case O_METRICS: o->metrics_url = a; break;
    case O_MAXREQ:
        if ((rc = whole(a, 1, 1e7, &v)) == 0)
            o->max_requests = (size_t)v;
        break;
    case O_TIMEOUT: rc = num(a, 0.01, 3600, &o->timeout); break;
    case O_THREADS:
        if ((rc = whole(a, 1, 64, &v)) == 0)
            o->threads = (int)v;
        break;
    case O_HELP: usage(stdout); exit(0);
    default: rc = 1;
    }
    return rc;
}

/* Cross-option rules and defaults that depend on other options. Returns 0 or -1 (message
 * on stderr). */
static int check_opts(opts *o)
{
    int rc = -1;

    if (o->duration_set && o->count_set) {
        fprintf(stderr, "scep-loadgen: --duration and --count exclude each other\n");
        goto out;
    }
    if (o->count_set)
        o->duration = 0;
    if (o->max_requests && o->count_set && o->max_requests < o->count) {
        fprintf(stderr, "scep-loadgen: --max-requests is below --count\n");
        goto out;
    }
    if (scepc_md_from_name(o->md, &o->md_id) != SCEPC_OK
        || scepc_cipher_from_name(o->cipher, &o->cipher_id) != SCEPC_OK) {
        fprintf(stderr, "scep-loadgen: unknown --md %s or --cipher %s\n", o->md, o->cipher);
        goto out;
    }
    /* An open loop needs spare connections to keep sending while the server is slow. */
    if (o->rate > 0 && !o->concurrency_set)
        o->concurrency = 64;
    if (o->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = n < 1 ? 1 : n > 64 ? 64 : (int)n;
    }
    rc = 0;
out:
    return rc;
}

static int parse_opts(int argc, char **argv, opts *o)
{
    int c, rc = 0;

    *o = (opts){ .method = "post", .cipher = "aes128", .md = "sha256", .key_type = "rsa:2048",
                 .concurrency = 4, .timeout = 30.0, .pool = DEFAULT_POOL, .label = "",
                 .duration = 10.0 };
    while ((c = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if ((rc = set_opt(o, c, optarg)) < 0) {
            fprintf(stderr, "scep-loadgen: bad value for --%s: %s\n", long_opts[c - O_URL].name,
                    optarg);
            return -1;
        }
        if (rc > 0)
            goto bad_usage;
    }
    if (optind != argc || !o->url) {
        fprintf(stderr, "scep-loadgen: %s\n", optind != argc ? "unexpected argument" : "--url is required");
        goto bad_usage;
    }
    if (check_opts(o) != 0)
        goto bad_usage;
    return 0;
bad_usage:
    usage(stderr);
    return -1;
}

/* Frees an array of records. */
static void reqs_free(lg_req *r, size_t n)
{
    if (!r)
        return;
    for (size_t i = 0; i < n; i++)
        lg_req_clear(&r[i]);
    free(r);
}

typedef struct setup {
    lg_url url;
    uint8_t *cacert;
    size_t cacert_len;
    char ctype[128];
    EVP_PKEY **pool;
    char runid[16];
    size_t seq;                    /* next subject sequence number */
    size_t setup_enrollments;
} setup;

static int fetch_ca(const opts *o, setup *s)
{
    int status = 0, rc = -1;
    char ctype[128] = "";
    uint8_t *body = NULL;
    size_t len = 0;
    scepc_caset *ca = NULL;
    unsigned caps;

    if (lg_http_get(&s->url, "GetCACaps", &status, ctype, sizeof(ctype), &body, &len) != 0
        || status != 200) {
        fprintf(stderr, "scep-loadgen: GetCACaps from %s failed (HTTP %d)\n", o->url, status);
        goto out;
    }
    caps = scepc_parse_caps((const char *)body, len);
    if (!o->quiet) {
        if (strcmp(o->method, "post") == 0 && !(caps & SCEPC_CAP_POSTPKIOPERATION))
            fprintf(stderr, "scep-loadgen: note: server does not announce POSTPKIOperation\n");
        if (o->md_id == SCEPC_MD_SHA512 && !(caps & SCEPC_CAP_SHA512))
            fprintf(stderr, "scep-loadgen: note: server does not announce SHA-512\n");
        if (o->cipher_id == SCEPC_CIPHER_DES3 && !(caps & SCEPC_CAP_DES3))
            fprintf(stderr, "scep-loadgen: note: server does not announce DES3\n");
        if (o->cipher_id != SCEPC_CIPHER_DES3 && !(caps & SCEPC_CAP_AES))
            fprintf(stderr, "scep-loadgen: note: server does not announce AES\n");
        if (o->renewal_share > 0 && !(caps & SCEPC_CAP_RENEWAL))
            fprintf(stderr, "scep-loadgen: note: server does not announce Renewal\n");
    }
    scepc_free(body);
    body = NULL;
    if (lg_http_get(&s->url, "GetCACert", &status, ctype, sizeof(ctype), &body, &len) != 0
        || status != 200) {
        fprintf(stderr, "scep-loadgen: GetCACert from %s failed (HTTP %d)\n", o->url, status);
        goto out;
    }
    int err = scepc_parse_cacert(body, len, ctype[0] ? ctype : NULL, &ca);
    if (err != SCEPC_OK) {
        fprintf(stderr, "scep-loadgen: GetCACert reply: %s\n", scepc_strerror(err));
        goto out;
    }
    if (!o->quiet) {
        char r[256], g[256];
        X509_NAME_oneline(X509_get_subject_name(scepc_caset_recipient(ca)), r, sizeof(r));
        X509_NAME_oneline(X509_get_subject_name(scepc_caset_signer(ca)), g, sizeof(g));
        fprintf(stderr, "scep-loadgen: caps 0x%x; encrypting to %s; replies signed by %s\n", caps,
                r, g);
    }
    snprintf(s->ctype, sizeof(s->ctype), "%s", ctype);
    s->cacert = body;
    s->cacert_len = len;
    body = NULL;
    rc = 0;
out:
    scepc_caset_destroy(ca);
    scepc_free(body);
    return rc;
}

static lg_build_cfg build_cfg(const opts *o, setup *s, size_t first_seq)
{
    return (lg_build_cfg){
        .url = &s->url, .get = strcmp(o->method, "get") == 0, .md = o->md_id,
        .cipher = o->cipher_id, .challenge = o->challenge, .cacert = s->cacert,
        .cacert_len = s->cacert_len, .cacert_ctype = s->ctype[0] ? s->ctype : NULL,
        .pool = s->pool, .npool = o->pool, .runid = s->runid, .first_seq = first_seq,
        .threads = o->threads, .progress = !o->quiet && isatty(STDOUT_FILENO),
    };
}

/* An untimed closed-loop batch of n PKCSReqs, checked (keep: issued certificates kept).
 * *out owned by the caller; returns the number enrolled, or -1 on a local failure. */
static long untimed_batch(const opts *o, setup *s, size_t n, int keep, lg_legacy *legacy,
                          lg_req **out, double *elapsed_s)
{
    lg_req *r = calloc(n, sizeof(*r));
    lg_build_cfg b = build_cfg(o, s, s->seq);
    lg_run_cfg rc = { .url = &s->url, .concurrency = o->concurrency, .count = n,
                      .timeout_s = o->timeout };
    lg_run_stats st;
    long ok = 0;

    if (!r)
        return -1;
    s->seq += n;
    if (lg_build(&b, r, n) != SCEPC_OK || lg_run(&rc, r, n, &st) != 0
        || lg_check(s->cacert, s->cacert_len, b.cacert_ctype, o->threads, keep, legacy, r, n) != 0) {
        reqs_free(r, n);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        ok += r[i].ok;
    s->setup_enrollments += (size_t)ok;
    *elapsed_s = (double)(st.t_last_done - st.t_start) / 1e9;
    *out = r;
    return ok;
}

static const char *first_error(const lg_req *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!r[i].ok)
            return r[i].kind;
    return "-";
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Enrollments/s over the second half of a calibration batch: the first half pays for new
 * connections and cold caches. Only verified enrollments count, so a server that fails fast
 * (a wrong challenge) does not make us prebuild a mountain of requests. */
static double steady_rate(const lg_req *r, size_t n, double elapsed_s)
{
    int64_t *t = malloc(n * sizeof(*t));
    size_t m = 0;
    double x = 0;

    for (size_t i = 0; t && i < n; i++)
        if (r[i].ok)
            t[m++] = r[i].t_done;
    if (t && m >= 8) {
        qsort(t, m, sizeof(*t), cmp_i64);
        int64_t span = t[m - 1] - t[m / 2 - 1];
        if (span > 0)
            x = (double)(m - m / 2) * 1e9 / (double)span;
    } else if (elapsed_s > 0) {
        x = (double)m / elapsed_s;
    }
    free(t);
    return x;
}

/* How many requests to prebuild for the timed run. */
static int plan_total(const opts *o, setup *s, lg_legacy *legacy, size_t *total)
{
    size_t extra_c = (size_t)o->concurrency;
    if (o->rate > 0) {
        double planned = o->duration > 0 ? o->rate * (o->warmup + o->duration) + 1
                                         : (double)o->count + o->rate * o->warmup + 1;
        *total = o->max_requests ? o->max_requests : (size_t)ceil(planned);
        if (o->count && *total < o->count)
            *total = o->count;
        return 0;
    }
    if (o->max_requests) {
        *total = o->max_requests;
        return 0;
    }
    if (o->duration <= 0 && o->warmup <= 0) {
        *total = o->count;
        return 0;
    }
    /* Closed loop for a time: measure what the server does, prebuild 1.6 times that. */
    size_t k = (size_t)o->concurrency * 8;
    k = k < CAL_MIN ? CAL_MIN : k > CAL_MAX ? CAL_MAX : k;
    lg_req *r = NULL;
    double el = 0;
    long ok = untimed_batch(o, s, k, 0, legacy, &r, &el);
    if (ok < 0) {
        fprintf(stderr, "scep-loadgen: calibration run failed\n");
        return -1;
    }
    double x = steady_rate(r, k, el);
    if (!o->quiet)
        fprintf(stderr, "scep-loadgen: calibration: %ld/%zu enrolled in %.2f s (%.0f/s)%s%s\n", ok,
                k, el, x, ok < (long)k ? ", first error " : "", ok < (long)k ? first_error(r, k) : "");
    reqs_free(r, k);
    double want = o->duration > 0 ? x * (o->warmup + o->duration) * 1.6 + 2.0 * (double)extra_c
                                  : (double)o->count + x * o->warmup * 1.6 + (double)extra_c;
    if (want < (double)k)
        want = (double)k;
    if (want > DEFAULT_MAX_PREBUILT) {
        want = DEFAULT_MAX_PREBUILT;
        if (!o->quiet)
            fprintf(stderr, "scep-loadgen: prebuilding the cap of %d requests\n", DEFAULT_MAX_PREBUILT);
    }
    *total = (size_t)want;
    if (o->count && *total < o->count)
        *total = o->count;
    return 0;
}

/* Untimed enrollments whose certificates then sign the RenewalReqs (one each). */
static int setup_renewals(const opts *o, setup *s, lg_legacy *legacy, lg_req *reqs, size_t total)
{
    size_t nren = 0;
    for (size_t i = 0; i < total; i++) {
        /* Spread evenly: request i renews when floor((i+1)F) steps up. */
        reqs[i].renewal = (size_t)floor((double)(i + 1) * o->renewal_share)
                          > (size_t)floor((double)i * o->renewal_share);
        nren += (size_t)reqs[i].renewal;
    }
    if (nren == 0)
        return 0;
    lg_req *r = NULL;
    double el = 0;
    long ok = untimed_batch(o, s, nren, 1, legacy, &r, &el);
    if (ok < 0 || (size_t)ok != nren) {
        fprintf(stderr, "scep-loadgen: enrolling %zu certificates for the renewals failed (%s)\n",
                nren, ok < 0 ? "local error" : first_error(r, nren));
        reqs_free(r, ok < 0 ? 0 : nren);
        return -1;
    }
    if (!o->quiet)
        fprintf(stderr, "scep-loadgen: %zu certificates enrolled for RenewalReqs in %.2f s\n", nren, el);
    size_t j = 0;
    for (size_t i = 0; i < total; i++) {
        if (!reqs[i].renewal)
            continue;
        reqs[i].signer_cert = r[j].issued;
        r[j].issued = NULL;
        reqs[i].signer_key = r[j].subject_key;
        r[j].subject_key = NULL;
        j++;
    }
    reqs_free(r, nren);
    return 0;
}

int main(int argc, char **argv)
{
    opts o;
    setup s = { 0 };
    lg_req *reqs = NULL;
    size_t total = 0;
    int rc = LG_EXIT_SETUP;
    lg_legacy legacy = { 0 };
    char cache[4096];
    uint8_t rnd[6];
    lg_run_stats st;

    if (parse_opts(argc, argv, &o) != 0)
        return LG_EXIT_SETUP;
    if (o.legacy) {
        if (lg_legacy_load(&legacy) != 0) {
            fprintf(stderr, "scep-loadgen: cannot load OpenSSL's legacy provider\n");
            goto out;
        }
    }
    if (lg_url_parse(o.url, &s.url) != 0 || fetch_ca(&o, &s) != 0)
        goto out;
    if (o.key_cache)
        snprintf(cache, sizeof(cache), "%s", o.key_cache);
    else
        lg_pool_default_dir(cache, sizeof(cache));
    if (lg_pool_load(cache, o.key_type, o.pool, o.threads, !o.quiet, &s.pool) != 0)
        goto out;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto out;
    scepc_hex(rnd, sizeof(rnd), 0, s.runid);

    if (plan_total(&o, &s, &legacy, &total) != 0)
        goto out;
    if (!(reqs = calloc(total, sizeof(*reqs))))
        goto out;
    if (setup_renewals(&o, &s, &legacy, reqs, total) != 0)
        goto out;
    {
        lg_build_cfg b = build_cfg(&o, &s, s.seq);
        int64_t t = lg_now();
        if (lg_build(&b, reqs, total) != SCEPC_OK)
            goto out;
        s.seq += total;
        if (!o.quiet)
            fprintf(stderr, "scep-loadgen: %zu requests prebuilt in %.2f s (run %s)\n", total,
                    (double)(lg_now() - t) / 1e9, s.runid);
    }
    {
        lg_run_cfg rc_ = { .url = &s.url, .concurrency = o.concurrency, .rate = o.rate,
                           .warmup_s = o.warmup, .duration_s = o.duration, .count = o.count,
                           .timeout_s = o.timeout, .server_pid = o.server_pid,
                           .metrics_url = o.metrics_url,
                           .progress = !o.quiet && isatty(STDOUT_FILENO), .stop = &g_stop };
        struct sigaction sa = { .sa_handler = on_sigint };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        if (lg_run(&rc_, reqs, total, &st) != 0) {
            fprintf(stderr, "scep-loadgen: event loop failed: %s\n", strerror(errno));
            goto out;
        }
        signal(SIGINT, SIG_DFL);
    }
    if (lg_check(s.cacert, s.cacert_len, s.ctype[0] ? s.ctype : NULL, o.threads, 0, &legacy,
                 reqs, total) != 0) {
        fprintf(stderr, "scep-loadgen: cannot check the responses\n");
        goto out;
    }
    {
        lg_report_in in = { .label = o.label, .url = o.url, .key_type = o.key_type,
                            .cipher = o.cipher, .md = o.md, .method = o.method,
                            .concurrency = o.concurrency, .rate = o.rate,
                            .renewal_share = o.renewal_share, .server_pid = o.server_pid,
                            .metrics_url = o.metrics_url,
                            .setup_enrollments = s.setup_enrollments };
        rc = lg_report(&in, &st, reqs, total, o.json);
    }
out:
    reqs_free(reqs, total);
    lg_pool_free(s.pool, o.pool);
    scepc_free(s.cacert);
    lg_legacy_unload(&legacy);
    return rc;
}
