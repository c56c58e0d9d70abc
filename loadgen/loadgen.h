/* scep-loadgen internals shared by its modules (not a library):
 *   loadgen.c        main, command line, setup phases
 *   loadgen_http.c   URL, request bytes, the blocking setup GET (lg_http_); framing: client/
 *   loadgen_net.c    the event loop (epoll) that drives every connection (lg_run)
 *   loadgen_pool.c   device key pool cached on disk (lg_pool_)
 *   loadgen_build.c  prebuilding every request before the timed phase (lg_build)
 *   loadgen_check.c  CertRep checks after the timed phase (lg_check)
 *   loadgen_report.c text report and the --json object (lg_report)
 *   loadgen_hist.c   latency histogram (lgh_)
 * Time values are CLOCK_MONOTONIC nanoseconds (lg_now()). */
#ifndef SCEPD_LOADGEN_H
#define SCEPD_LOADGEN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/provider.h>

#include "client/scep_client.h"
#include "client/scep_http.h"

enum { LG_EXIT_OK = 0, LG_EXIT_FAILED = 1, LG_EXIT_SETUP = 2 };

typedef struct lg_url {
    scepc_url url;                    /* host, port, path */
    struct sockaddr_storage addr;     /* resolved once, at parse time */
    socklen_t addrlen;
} lg_url;

/* What the event loop saw for one request. */
enum lg_net {
    LG_NET_NONE = 0,     /* not sent */
    LG_NET_OK,           /* a complete HTTP response */
    LG_NET_CONNECT,      /* connect() failed */
    LG_NET_IO,           /* send/recv failed or the peer closed mid-response */
    LG_NET_TIMEOUT,      /* no complete response within --timeout */
    LG_NET_PROTO,        /* the response is not HTTP/1.x we can frame */
};

/* One prebuilt SCEP transaction and what happened to it. */
typedef struct lg_req {
    /* built before the run (lg_build); owned */
    uint8_t *http;
    size_t http_len;
    scepc_txn txn;
    X509 *signer_cert;
    EVP_PKEY *signer_key;
    EVP_PKEY *subject_key;
    int renewal;
    /* filled by the event loop */
    int64_t t_intended, t_sent, t_done;
    int net;                       /* enum lg_net */
    int measured;                  /* inside the timed phase */
    int http_status;
    uint8_t *body;                 /* owned; only for HTTP 200 */
    size_t body_len;
    /* filled by lg_check */
    int ok;                        /* SUCCESS and every check passed */
    char kind[48];                 /* error kind when !ok: http_503, failinfo_badRequest, ... */
    X509 *issued;                  /* owned, only when lg_check was asked to keep it */
} lg_req;

void lg_req_clear(lg_req *r);      /* frees what r owns; accepts a zeroed record */

int64_t lg_now(void);

/* ---- loadgen_http.c ---- */
/* "http://host[:port][/path]"; resolves host. Returns 0 or -1 (message on stderr). */
int lg_url_parse(const char *text, lg_url *u);
/* The complete request bytes for a PKIOperation by POST or GET (owned, free()). */
int lg_http_request(const lg_url *u, int get, const uint8_t *der, size_t len,
                    uint8_t **out, size_t *out_len);

/* Blocking GET ?operation=op for the setup phase. *body owned (scepc_free), NUL-terminated. */
int lg_http_get(const lg_url *u, const char *op, int *status, char *ctype, size_t ctype_cap,
                uint8_t **body, size_t *body_len);

/* ---- loadgen_net.c ---- */
typedef struct lg_run_cfg {
    const lg_url *url;
    int concurrency;
    double rate;                   /* requests/s; 0 = closed loop */
    double warmup_s;
    double duration_s;             /* > 0: duration mode */
    size_t count;                  /* count mode: measured requests to send */
    double timeout_s;
    int server_pid;                /* 0: none */
    const char *metrics_url;       /* scepd's /metrics (admin listener); NULL: none */
    int progress;                  /* live line on stdout (a TTY) */
    volatile sig_atomic_t *stop;   /* set by SIGINT: stop sending, finish what is in flight */
} lg_run_cfg;

typedef struct lg_run_stats {
    int64_t t_start, t_measure, t_last_done;
    size_t sent, measured_sent;
    int exhausted;                 /* ran out of prebuilt requests before the end */
    int interrupted;
    int cpu_ok;
    double server_cpu_s;           /* utime+stime of --server-pid over the timed phase */
    int keyop_ok;
    double keyop_cpu_s, keyop_ops; /* --metrics-url, over the timed phase: scepd's CPU inside
                                    * private-key operations (CPU per sampled operation x
                                    * operations) and their number */
} lg_run_stats;

/* Sends reqs in order over cfg->concurrency keep-alive connections from one epoll loop and
 * records timings, HTTP status and bodies in each record. Returns 0, or -1 on a local
 * failure (epoll, memory). */
int lg_run(const lg_run_cfg *cfg, lg_req *reqs, size_t nreq, lg_run_stats *st);
/* utime+stime of pid in seconds; -1 when unreadable. */
double lg_proc_cpu_s(int pid);
/* scepd's private-key counters (engine/common/keyclock.h) from its /metrics at url. */
typedef struct lg_keyop {
    double ops, sampled, sampled_s;
} lg_keyop;
/* 0, or -1 when not fetched or not found. */
int lg_scrape_keyop(const char *url, lg_keyop *k);

/* ---- loadgen_pool.c ---- */
/* n keys of type spec, read from dir/<spec>/ or generated there (threads in parallel).
 * *out is an owned array (lg_pool_free). */
int lg_pool_load(const char *dir, const char *spec, size_t n, int threads, int verbose,
                 EVP_PKEY ***out);
void lg_pool_free(EVP_PKEY **pool, size_t n);
/* The default cache directory: $XDG_CACHE_HOME/scep-loadgen, ~/.cache/scep-loadgen, else
 * /tmp/scep-loadgen-<uid>. */
void lg_pool_default_dir(char *buf, size_t cap);

/* ---- loadgen_build.c ---- */
typedef struct lg_build_cfg {
    const lg_url *url;
    int get;
    scepc_md md;
    scepc_cipher cipher;
    const char *challenge;         /* in every CSR (peers such as micromdm want it on
                                    * renewals too); may be NULL */
    const uint8_t *cacert;         /* GetCACert reply, parsed again by each thread */
    size_t cacert_len;
    const char *cacert_ctype;
    EVP_PKEY **pool;
    size_t npool;
    const char *runid;             /* makes subjects unique across runs */
    size_t first_seq;              /* sequence number of reqs[0] (subject CN) */
    int threads;
    int progress;
} lg_build_cfg;
/* Builds reqs[0..n): a RenewalReq where reqs[i].renewal is set (signer_cert/signer_key
 * already filled), else a PKCSReq with a self-signed transient signer. Unique subject,
 * transactionID and senderNonce each. Returns 0 or a scepc error (message on stderr). */
int lg_build(const lg_build_cfg *cfg, lg_req *reqs, size_t n);

/* ---- loadgen_check.c ---- */
/* OpenSSL's legacy provider (single DES) with the default one beside it, loaded into the
 * default library context; unload releases both (accepts a zeroed struct). */
typedef struct lg_legacy {
    OSSL_PROVIDER *legacy, *deflt;
} lg_legacy;
int lg_legacy_load(lg_legacy *p);
void lg_legacy_unload(lg_legacy *p);

/* Checks every sent request's response and sets ok/kind (keep_certs: also issued). When a
 * reply does not decrypt and the legacy provider is not loaded yet (single-DES peers), loads
 * it into *legacy and checks those replies again. Returns 0 or -1 on a local failure. */
int lg_check(const uint8_t *cacert, size_t cacert_len, const char *ctype, int threads,
             int keep_certs, lg_legacy *legacy, lg_req *reqs, size_t n);

/* ---- loadgen_report.c ---- */
typedef struct lg_report_in {
    const char *label, *url, *key_type, *cipher, *md, *method;
    int concurrency;
    double rate;                   /* 0: closed loop */
    double renewal_share;
    int server_pid;
    const char *metrics_url;       /* NULL: no private-key CPU figures */
    size_t setup_enrollments;      /* untimed: calibration and renewal certificates */
} lg_report_in;
/* Prints the report to stdout, writes json_path (may be NULL). Returns the exit code:
 * LG_EXIT_OK without errors, LG_EXIT_FAILED with any, LG_EXIT_SETUP if the JSON cannot be
 * written. */
int lg_report(const lg_report_in *in, const lg_run_stats *st, const lg_req *reqs, size_t n,
              const char *json_path);

#endif
