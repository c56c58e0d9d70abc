/* Device key pool: key generation (RSA-3072 takes most of a second) would dominate short
 * runs, so keys are generated once, in parallel, and kept as PEM files under
 * DIR/<key type>/NNNNN.pem for the next run. A file that does not load is regenerated. */
#include "loadgen/loadgen.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct pool_job {
    char dir[4096];
    const char *spec;
    EVP_PKEY **keys;
    size_t n;
    atomic_size_t next;
    atomic_size_t generated;
    atomic_int failed;
} pool_job;

void lg_pool_default_dir(char *buf, size_t cap)
{
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (x && *x)
        snprintf(buf, cap, "%s/scep-loadgen", x);
    else if (home && *home && access(home, W_OK) == 0)
        snprintf(buf, cap, "%s/.cache/scep-loadgen", home);
    else
        snprintf(buf, cap, "/tmp/scep-loadgen-%u", (unsigned)getuid());
}

/* mkdir -p with mode 0700 for the directories it creates. */
static int mkdirs(const char *path)
{
    char tmp[4096];
    size_t l = strlen(path);
    if (l == 0 || l >= sizeof(tmp))
        return -1;
    memcpy(tmp, path, l + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static void *pool_worker(void *arg)
{
    pool_job *j = arg;
    scepc_ctx *ctx = NULL;

    if (scepc_ctx_create(NULL, NULL, &ctx) != SCEPC_OK) {
        atomic_store(&j->failed, 1);
        return NULL;
    }
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        char path[4200];
        EVP_PKEY *k = NULL;
        if (i >= j->n || atomic_load(&j->failed))
            break;
        snprintf(path, sizeof(path), "%s/%05zu.pem", j->dir, i);
        if (access(path, R_OK) == 0 && scepc_read_key(ctx, path, &k) == SCEPC_OK) {
            j->keys[i] = k;
            continue;
        }
        if (scepc_keygen(ctx, j->spec, &k) != SCEPC_OK) {
            atomic_store(&j->failed, 1);
            break;
        }
        if (scepc_write_key(path, k) != SCEPC_OK)
            fprintf(stderr, "scep-loadgen: cannot cache %s (continuing)\n", path);
        atomic_fetch_add(&j->generated, 1);
        j->keys[i] = k;
    }
    scepc_ctx_destroy(ctx);
    return NULL;
}

void lg_pool_free(EVP_PKEY **pool, size_t n)
{
    if (!pool)
        return;
    for (size_t i = 0; i < n; i++)
        EVP_PKEY_free(pool[i]);
    free(pool);
}

int lg_pool_load(const char *dir, const char *spec, size_t n, int threads, int verbose,
                 EVP_PKEY ***out)
{
    pool_job *j = calloc(1, sizeof(*j));
    pthread_t tids[64];
    int started = 0, rc = -1;
    char sub[64];

    if (!j || n == 0)
        goto out;
    /* "ec:P-256" -> "ec-P-256": a file name component. */
    snprintf(sub, sizeof(sub), "%s", spec);
    for (char *p = sub; *p; p++)
        if (*p == ':' || *p == '/')
            *p = '-';
    if (snprintf(j->dir, sizeof(j->dir), "%s/%s", dir, sub) >= (int)sizeof(j->dir)
        || mkdirs(j->dir) != 0) {
        fprintf(stderr, "scep-loadgen: cannot create key cache %s: %s\n", j->dir, strerror(errno));
        goto out;
    }
    j->spec = spec;
    j->n = n;
    if (!(j->keys = calloc(n, sizeof(*j->keys))))
        goto out;
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&tids[i], NULL, pool_worker, j) != 0)
            break;
        started++;
    }
    if (started == 0)
        goto out;
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    if (atomic_load(&j->failed)) {
        fprintf(stderr, "scep-loadgen: cannot generate %s keys\n", spec);
        goto out;
    }
    if (verbose)
        fprintf(stderr, "scep-loadgen: key pool %zu x %s (%zu generated, cache %s)\n", n, spec,
                atomic_load(&j->generated), j->dir);
    *out = j->keys;
    j->keys = NULL;
    rc = 0;
out:
    if (j)
        lg_pool_free(j->keys, n);
    free(j);
    return rc;
}
