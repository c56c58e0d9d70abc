/* JSON-lines audit log. See audit.h.
 *
 * Asynchronous mode: each ring is a byte ring of records (4-byte length, then the line,
 * both possibly wrapping) under its own mutex. The writer thread sleeps on an eventfd that
 * a producer writes only when it is the first to queue since the writer last looked
 * (wake_pending), so a burst costs one wake-up. The writer thread runs SCHED_OTHER even when
 * scepd gives its other threads SCHED_BATCH ([server] yield_to_workers): a line reaches the
 * target as soon after the answer as before, which operators and the tests rely on (a linger
 * of 4 ms after each wake-up halved its wake-ups but made the log lag; not kept). Before
 * each write to a pipe or socket the writer polls it for POLLOUT with a short timeout and
 * writes at most PIPE_BUF bytes, whole lines: a pipe nobody reads holds the writer in poll
 * (where it still sees audit_stop), never in write(2). A regular file is always writable:
 * it is not polled. */
#include "engine/common/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define AUDIT_LINE_MAX  4096            /* one line, "}\n" included */
#define AUDIT_CHUNK     PIPE_BUF        /* one write(2): whole lines, atomic on a pipe */
#define AUDIT_POLL_MS   200             /* how often a blocked writer checks for stop */

typedef struct ring {
    pthread_mutex_t mu;
    uint8_t        *buf;
    size_t          cap;
    size_t          head, tail;         /* bytes ever written / read; used = head - tail */
} ring;

struct audit {
    int fd;
    int owns_fd;
    int fd_regular;                     /* the target is a regular file (writer's) */
    char *path;                         /* owns_fd: what audit_reopen opens again */
    /* audit_reopen after audit_start: asked by any thread, done by the writer. */
    pthread_mutex_t reopen_mu;
    pthread_cond_t  reopen_cv;
    unsigned        reopen_asked, reopen_done;
    int             reopen_rc;
    atomic_int      reopen_pending;
    atomic_ulong write_errors;
    atomic_ullong dropped;              /* total, for audit_dropped */
    atomic_ullong unreported;           /* dropped since the last LOG_DROPPED line */
    /* Asynchronous mode (audit_start). */
    ring          *rings;
    unsigned       nrings;
    int            efd;
    atomic_int     wake_pending;
    atomic_int     stopping;
    int            stop_wait_ms;
    pthread_t      thread;
    int            started;
};

/* The ring the calling thread was bound to, for the audit it was bound with. */
static _Thread_local const audit *bound_audit;
static _Thread_local unsigned bound_ring;

const char *audit_event_name(int event)
{
    switch (event) {
#define X(name, id, text) case id: return #name;
    AUDIT_EVENTS(X)
#undef X
    default: return "UNKNOWN";
    }
}

static int open_target(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int audit_open(const char *path, audit **out)
{
    audit *a = calloc(1, sizeof(*a));
    pthread_condattr_t ca;
    if (a == NULL)
        return -ENOMEM;
    a->efd = -1;
    if (path == NULL || strcmp(path, "-") == 0 || path[0] == '\0') {
        a->fd = STDOUT_FILENO;
    } else {
        if ((a->path = strdup(path)) == NULL) {
            free(a);
            return -ENOMEM;
        }
        a->fd = open_target(path);
        if (a->fd < 0) {
            int e = errno;
            free(a->path);
            free(a);
            return -e;
        }
        a->owns_fd = 1;
    }
    pthread_mutex_init(&a->reopen_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&a->reopen_cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = a;
    return 0;
}

/* Opens the path again and puts the new file under the old descriptor number (dup2 is
 * atomic against a concurrent write(2) on it). */
static int reopen_target(audit *a)
{
    if (!a->owns_fd)
        return 0;
    int fd = open_target(a->path), rc = 0;
    if (fd < 0)
        return -errno;
    if (dup2(fd, a->fd) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

static int is_regular(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

/* The writer's side of audit_reopen. */
static void writer_reopen(audit *a)
{
    if (!atomic_exchange(&a->reopen_pending, 0))
        return;
    pthread_mutex_lock(&a->reopen_mu);
    unsigned asked = a->reopen_asked;
    pthread_mutex_unlock(&a->reopen_mu);
    int rc = reopen_target(a);
    a->fd_regular = is_regular(a->fd);
    pthread_mutex_lock(&a->reopen_mu);
    a->reopen_done = asked;
    a->reopen_rc = rc;
    pthread_cond_broadcast(&a->reopen_cv);
    pthread_mutex_unlock(&a->reopen_mu);
}

/* Appends s as a JSON string body (escaped) to buf; returns the new length (bounded). */
static size_t json_str(char *buf, size_t len, size_t cap, const char *s)
{
    for (; s != NULL && *s != '\0' && len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[len++] = '\\';
            buf[len++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", c);
        } else {
            buf[len++] = (char)c;
        }
    }
    return len;
}

static size_t json_field(char *buf, size_t len, size_t cap, const char *key, const char *val)
{
    if (val == NULL || val[0] == '\0' || len + strlen(key) + 8 >= cap)
        return len;
    len += (size_t)snprintf(buf + len, cap - len, ",\"%s\":\"", key);
    len = json_str(buf, len, cap, val);
    if (len + 2 < cap)
        buf[len++] = '"';
    return len;
}

/* One event as a JSON line ending in '\n' into buf (AUDIT_LINE_MAX bytes); its length. */
static size_t format_line(char *buf, int event, const audit_fields *f)
{
    size_t len = 0, cap = AUDIT_LINE_MAX - 2;
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    len += strftime(buf, cap, "{\"ts\":\"%Y-%m-%dT%H:%M:%S", &tm);
    len += (size_t)snprintf(buf + len, cap - len, ".%03ldZ\",\"event\":%d,\"name\":\"%s\"",
                            (long)(tv.tv_usec / 1000), event, audit_event_name(event));
    if (f != NULL) {
        len = json_field(buf, len, cap, "diag", f->diag);
        if (f->failinfo >= 0 && len + 24 < cap)
            len += (size_t)snprintf(buf + len, cap - len, ",\"failinfo\":%d", f->failinfo);
        if (f->http_status > 0 && len + 24 < cap)
            len += (size_t)snprintf(buf + len, cap - len, ",\"http_status\":%d", f->http_status);
        if (f->count > 0 && len + 32 < cap)
            len += (size_t)snprintf(buf + len, cap - len, ",\"count\":%llu", f->count);
        len = json_field(buf, len, cap, "txid", f->txid);
        len = json_field(buf, len, cap, "profile", f->profile);
        len = json_field(buf, len, cap, "subject", f->subject);
        len = json_field(buf, len, cap, "serial", f->serial);
        len = json_field(buf, len, cap, "peer", f->peer);
        len = json_field(buf, len, cap, "detail", f->detail);
    }
    if (len > cap)
        len = cap;
    buf[len++] = '}';
    buf[len++] = '\n';
    return len;
}

/* ------------------------------------------------------------------------ the rings */

static void ring_put(ring *r, size_t pos, const void *src, size_t n)
{
    size_t at = pos % r->cap, first = n < r->cap - at ? n : r->cap - at;
    memcpy(r->buf + at, src, first);
    memcpy(r->buf, (const uint8_t *)src + first, n - first);
}

static void ring_get(const ring *r, size_t pos, void *dst, size_t n)
{
    size_t at = pos % r->cap, first = n < r->cap - at ? n : r->cap - at;
    memcpy(dst, r->buf + at, first);
    memcpy((uint8_t *)dst + first, r->buf, n - first);
}

/* Queues one line; 0, or -1 when the ring has no room (the line is dropped). */
static int ring_push(ring *r, const char *line, size_t len)
{
    uint32_t n = (uint32_t)len;
    int rc = -1;
    pthread_mutex_lock(&r->mu);
    if (r->cap - (r->head - r->tail) >= sizeof(n) + len) {
        ring_put(r, r->head, &n, sizeof(n));
        ring_put(r, r->head + sizeof(n), line, len);
        r->head += sizeof(n) + len;
        rc = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* Moves whole lines into out (cap bytes, at least AUDIT_LINE_MAX); returns the bytes. */
static size_t ring_take(ring *r, char *out, size_t cap)
{
    size_t got = 0;
    pthread_mutex_lock(&r->mu);
    while (r->head != r->tail) {
        uint32_t n;
        ring_get(r, r->tail, &n, sizeof(n));
        if (got + n > cap)
            break;
        ring_get(r, r->tail + sizeof(n), out + got, n);
        r->tail += sizeof(n) + n;
        got += n;
    }
    pthread_mutex_unlock(&r->mu);
    return got;
}

/* ----------------------------------------------------------------------- the writer */

/* Writes buf[0..len) of whole lines in chunks of at most AUDIT_CHUNK bytes, each after the
 * target polled writable. Returns 0, or -1 when stopping and the target stayed blocked past
 * the stop deadline (the rest is counted as dropped). */
static int write_lines(audit *a, const char *buf, size_t len, int64_t *deadline_ms)
{
    size_t off = 0;
    while (off < len) {
        size_t n = 0;
        while (off + n < len) {        /* whole lines up to AUDIT_CHUNK (one line at least) */
            const char *nl = memchr(buf + off + n, '\n', len - off - n);
            size_t line = nl != NULL ? (size_t)(nl - (buf + off + n)) + 1 : len - off - n;
            if (n > 0 && n + line > AUDIT_CHUNK)
                break;
            n += line;
        }
        struct pollfd p = {.fd = a->fd, .events = POLLOUT};
        int pr = a->fd_regular ? 1 : poll(&p, 1, AUDIT_POLL_MS);
        if (pr == 0 || (pr < 0 && errno == EINTR)) {
            if (atomic_load(&a->stopping)) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
                if (*deadline_ms == 0)
                    *deadline_ms = now + a->stop_wait_ms;
                else if (now >= *deadline_ms) {
                    size_t lost = 0;
                    for (size_t i = off; i < len; i++)
                        lost += buf[i] == '\n';
                    atomic_fetch_add(&a->dropped, lost);
                    atomic_fetch_add(&a->unreported, lost);
                    return -1;
                }
            }
            continue;
        }
        ssize_t w = write(a->fd, buf + off, n);
        if (w < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (w <= 0) {          /* the target refuses (EPIPE, ENOSPC...): counted, skipped */
            atomic_fetch_add(&a->write_errors, 1);
            w = (ssize_t)n;
        }
        off += (size_t)w;
    }
    return 0;
}

static void *writer_main(void *arg)
{
    audit *a = arg;
    char *buf = malloc(16 * AUDIT_LINE_MAX);
    struct sched_param sp = {.sched_priority = 0};

    pthread_setname_np(pthread_self(), "scepd-audit");
    pthread_setschedparam(pthread_self(), SCHED_OTHER, &sp);   /* see the top of this file */
    int64_t deadline = 0;
    int blocked = 0;

    for (;;) {
        atomic_store(&a->wake_pending, 0);
        writer_reopen(a);
        size_t moved = 0;
        for (unsigned i = 0; buf != NULL && !blocked && i < a->nrings; i++) {
            size_t n;
            while (!blocked && (n = ring_take(&a->rings[i], buf, 16 * AUDIT_LINE_MAX)) > 0) {
                moved += n;
                blocked = write_lines(a, buf, n, &deadline) != 0;
            }
        }
        unsigned long long lost = atomic_exchange(&a->unreported, 0);
        if (lost > 0 && !blocked && buf != NULL) {
            char line[AUDIT_LINE_MAX];
            audit_fields f = {.detail = "audit target did not keep up", .failinfo = -1,
                              .count = lost};
            blocked = write_lines(a, line, format_line(line, AUDIT_LOG_DROPPED, &f),
                                  &deadline) != 0;
        } else if (lost > 0) {
            atomic_fetch_add(&a->unreported, lost);
        }
        if (atomic_load(&a->stopping) && (moved == 0 || blocked || buf == NULL))
            break;
        if (moved > 0 || lost > 0)
            continue;
        struct pollfd p = {.fd = a->efd, .events = POLLIN};
        if (poll(&p, 1, -1) > 0) {
            uint64_t v;
            if (read(a->efd, &v, sizeof(v)) < 0) {
                /* EAGAIN after a spurious wake-up: look again anyway */
            }
        }
    }
    /* Lines the writer could not place at stop: counted as dropped. */
    for (unsigned i = 0; i < a->nrings; i++) {
        ring *r = &a->rings[i];
        pthread_mutex_lock(&r->mu);
        while (r->head != r->tail) {
            uint32_t n;
            ring_get(r, r->tail, &n, sizeof(n));
            r->tail += sizeof(n) + n;
            atomic_fetch_add(&a->dropped, 1);
            atomic_fetch_add(&a->unreported, 1);
        }
        pthread_mutex_unlock(&r->mu);
    }
    free(buf);
    return NULL;
}

int audit_start(audit *a, unsigned nrings, size_t ring_bytes)
{
    int rc = -ENOMEM;
    if (a == NULL || a->started || nrings == 0 || ring_bytes < AUDIT_LINE_MAX + 4)
        return -EINVAL;
    a->rings = calloc(nrings, sizeof(*a->rings));
    if (a->rings == NULL)
        goto out;
    for (a->nrings = 0; a->nrings < nrings; a->nrings++) {
        ring *r = &a->rings[a->nrings];
        if ((r->buf = malloc(ring_bytes)) == NULL)
            goto out;
        r->cap = ring_bytes;
        pthread_mutex_init(&r->mu, NULL);
    }
    if ((a->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        rc = -errno;
        goto out;
    }
    a->fd_regular = is_regular(a->fd);
    if ((rc = -pthread_create(&a->thread, NULL, writer_main, a)) != 0)
        goto out;
    a->started = 1;
out:
    if (rc != 0) {
        for (unsigned i = 0; a->rings != NULL && i < a->nrings; i++) {
            pthread_mutex_destroy(&a->rings[i].mu);
            free(a->rings[i].buf);
        }
        free(a->rings);
        a->rings = NULL;
        a->nrings = 0;
        if (a->efd >= 0)
            close(a->efd);
        a->efd = -1;
    }
    return rc;
}

void audit_bind_thread(audit *a, unsigned index)
{
    bound_audit = a;
    bound_ring = index;
}

static void wake_writer(audit *a)
{
    uint64_t one = 1;
    if (write(a->efd, &one, sizeof(one)) < 0) {
        /* the counter cannot overflow in practice; the writer also wakes on the next one */
    }
}

void audit_stop(audit *a, int wait_ms)
{
    if (a == NULL || !a->started)
        return;
    a->stop_wait_ms = wait_ms > 0 ? wait_ms : 1;
    atomic_store(&a->stopping, 1);
    wake_writer(a);
    pthread_join(a->thread, NULL);
    a->started = 0;
    if (atomic_load(&a->unreported) > 0)
        fprintf(stderr, "scepd: %llu audit lines dropped (audit target blocked or failing)\n",
                (unsigned long long)atomic_load(&a->unreported));
    for (unsigned i = 0; i < a->nrings; i++) {
        pthread_mutex_destroy(&a->rings[i].mu);
        free(a->rings[i].buf);
    }
    free(a->rings);
    a->rings = NULL;
    a->nrings = 0;
    close(a->efd);
    a->efd = -1;
}

void audit_close(audit *a)
{
    if (a == NULL)
        return;
    audit_stop(a, 2000);
    if (a->owns_fd)
        close(a->fd);
    pthread_mutex_destroy(&a->reopen_mu);
    pthread_cond_destroy(&a->reopen_cv);
    free(a->path);
    free(a);
}

int audit_reopen(audit *a, int wait_ms)
{
    struct timespec until;
    int rc = -ETIMEDOUT;

    if (a == NULL || !a->owns_fd)
        return 0;
    if (!a->started)
        return reopen_target(a);
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&a->reopen_mu);
    unsigned mine = ++a->reopen_asked;
    atomic_store(&a->reopen_pending, 1);
    pthread_mutex_unlock(&a->reopen_mu);
    wake_writer(a);
    pthread_mutex_lock(&a->reopen_mu);
    while ((int)(a->reopen_done - mine) < 0 &&
           pthread_cond_timedwait(&a->reopen_cv, &a->reopen_mu, &until) != ETIMEDOUT)
        ;
    if ((int)(a->reopen_done - mine) >= 0)
        rc = a->reopen_rc;
    pthread_mutex_unlock(&a->reopen_mu);
    return rc;
}

unsigned long long audit_dropped(const audit *a)
{
    return a != NULL ? atomic_load(&a->dropped) : 0;
}

void audit_emit(audit *a, int event, const audit_fields *f)
{
    char buf[AUDIT_LINE_MAX];

    if (a == NULL)
        return;
    size_t len = format_line(buf, event, f);
    if (!a->started) {
        if (write(a->fd, buf, len) != (ssize_t)len)
            atomic_fetch_add(&a->write_errors, 1);
        return;
    }
    ring *r = &a->rings[bound_audit == a && bound_ring < a->nrings ? bound_ring : 0];
    if (ring_push(r, buf, len) != 0) {
        atomic_fetch_add(&a->dropped, 1);
        atomic_fetch_add(&a->unreported, 1);
        return;
    }
    if (atomic_exchange(&a->wake_pending, 1) == 0)
        wake_writer(a);
}
