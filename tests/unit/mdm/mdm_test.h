/* Helpers shared by the tests of engine/mdm: start an emulator (tests/emulators/) as a child
 * process on 127.0.0.1 with a kernel-chosen port, read the calls it recorded, wait for a
 * verdict, and make a CSR or a certificate. Header-only: each test program includes it once. */
#ifndef SCEPD_TEST_MDM_H
#define SCEPD_TEST_MDM_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "engine/mdm/validate.h"

typedef struct emu {
    pid_t pid;
    int   port;
    char  dir[64];
    char  log[128];
} emu;

/* Starts python3 tests/emulators/<script> --log <dir>/calls.jsonl <args...> (NULL-ended). */
static inline int emu_start(emu *e, const char *script, const char *const *extra)
{
    const char *src = getenv("SCEPD_SRC");
    char path[1024], line[64];
    int fds[2];
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/scepd-mdm-XXXXXX");
    if (mkdtemp(e->dir) == NULL || pipe(fds) != 0)
        return -1;
    snprintf(e->log, sizeof(e->log), "%s/calls.jsonl", e->dir);
    snprintf(path, sizeof(path), "%s/tests/emulators/%s", src != NULL ? src : ".", script);
    const char *argv[32] = { "python3", path, "--log", e->log };
    int n = 4;
    for (; extra != NULL && *extra != NULL && n < 30; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    e->pid = fork();
    if (e->pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    int ok = f != NULL && fgets(line, sizeof(line), f) != NULL &&
             sscanf(line, "PORT %d", &e->port) == 1;
    if (f != NULL)
        fclose(f);
    return ok ? 0 : -1;
}

static inline void emu_stop(emu *e)
{
    char cmd[128];
    if (e->pid > 0) {
        kill(e->pid, SIGTERM);
        waitpid(e->pid, NULL, 0);
        e->pid = 0;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
    if (e->dir[0] != '\0' && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", e->dir);
}

/* A plain synchronous request to the emulator (knobs). Returns the HTTP status. */
static inline long emu_post(const emu *e, const char *path, const char *json)
{
    char url[256];
    long status = 0;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", e->port, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    FILE *null = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, null);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    fclose(null);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* The recorded calls (a JSON array, caller decrefs). */
static inline json_t *emu_calls(const emu *e)
{
    json_t *all = json_array();
    FILE *f = fopen(e->log, "r");
    char *line = NULL;
    size_t cap = 0;
    while (f != NULL && getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        if (j != NULL)
            json_array_append_new(all, j);
    }
    free(line);
    if (f != NULL)
        fclose(f);
    return all;
}

/* The last recorded call whose path ends with suffix (borrowed from calls), or NULL. */
static inline json_t *emu_last(json_t *calls, const char *suffix)
{
    json_t *hit = NULL;
    for (size_t i = 0; i < json_array_size(calls); i++) {
        json_t *c = json_array_get(calls, i);
        const char *p = json_string_value(json_object_get(c, "path"));
        size_t pl = p != NULL ? strlen(p) : 0, sl = strlen(suffix);
        if (pl >= sl && strcmp(p + pl - sl, suffix) == 0)
            hit = c;
    }
    return hit;
}

static inline size_t emu_count(json_t *calls, const char *suffix)
{
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(calls); i++) {
        const char *p = json_string_value(json_object_get(json_array_get(calls, i), "path"));
        size_t pl = p != NULL ? strlen(p) : 0, sl = strlen(suffix);
        n += pl >= sl && strcmp(p + pl - sl, suffix) == 0;
    }
    return n;
}

/* A verdict captured from the stage thread. */
typedef struct waiter {
    pthread_mutex_t m;
    pthread_cond_t  c;
    int             done;
    mdm_verdict     v;
    mdm_revocation  revs[8];
    size_t          nrevs;
} waiter;

static inline void waiter_init(waiter *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->m, NULL);
    pthread_cond_init(&w->c, NULL);
}

static inline void on_verdict(void *arg, const mdm_verdict *v)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->m);
    w->v = *v;
    w->done++;
    pthread_cond_broadcast(&w->c);
    pthread_mutex_unlock(&w->m);
}

static inline void on_revocations(void *arg, const mdm_verdict *v, const mdm_revocation *l, size_t n)
{
    waiter *w = arg;
    pthread_mutex_lock(&w->m);
    w->nrevs = n < 8 ? n : 8;
    if (n > 0)
        memcpy(w->revs, l, w->nrevs * sizeof(*l));
    w->v = *v;
    w->done++;
    pthread_cond_broadcast(&w->c);
    pthread_mutex_unlock(&w->m);
}

/* Waits for count callbacks (a generous bound: a hang is a failure, not a timing claim). */
static inline int waiter_wait(waiter *w, int count)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&w->m);
    while (w->done < count)
        if (pthread_cond_timedwait(&w->c, &w->m, &ts) == ETIMEDOUT)
            break;
    int done = w->done;
    pthread_mutex_unlock(&w->m);
    return done >= count ? 0 : -1;
}

/* Standard base64 without line breaks (caller frees): computed here, not by the module. */
static inline char *b64(const uint8_t *b, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, b, (int)n);
    return out;
}

/* A P-256 CSR for CN=cn (DER, caller frees). */
static uint8_t *make_csr(const char *cn, size_t *len)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509_REQ *r = X509_REQ_new();
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_REQ_set_subject_name(r, n);
    X509_REQ_set_pubkey(r, k);
    X509_REQ_sign(r, k, EVP_sha256());
    unsigned char *der = NULL;
    int l = i2d_X509_REQ(r, &der);
    *len = l > 0 ? (size_t)l : 0;
    X509_NAME_free(n);
    X509_REQ_free(r);
    EVP_PKEY_free(k);
    return der;
}

#endif
