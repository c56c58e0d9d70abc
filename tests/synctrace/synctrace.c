/* synctrace: an LD_PRELOAD library that writes, in one global order, the events a durability
 * check needs: LMDB puts and commits, writes and syncs of files, and bytes handed to the
 * kernel on sockets. tests/integration/t_durability.sh runs scepd under it and
 * tests/synctrace/check.awk decides from the log whether every reply left after a sync that
 * covers its commit.
 *
 * Why these hooks: scepd sends through io_uring (engine/net/shard.c), which no libc hook sees.
 * The SQ tail becomes visible to the kernel only inside liburing's submit and wait calls, so
 * those are wrapped and the SQEs still pending at their entry (sq.sqe_head..sq.sqe_tail) are
 * logged as sends before the real call runs: a send is recorded no later than the kernel can
 * see it. A sync is recorded when it has returned successfully (with the sequence number of
 * its start, to tell which writes it covers). libc send paths on sockets are logged too.
 *
 * Log (SYNCTRACE_LOG=path; without it every hook only passes through), one event a line:
 *   <seq> <tid> <event> key=value...
 *   put            dbi= key=<hex> vlen= rc=          (mdb_put, at its return)
 *   commit_enter                                      (mdb_txn_commit, at its start)
 *   commit_leave   enter=<seq> rc=
 *   fwrite         call= fd= path= len= dsync=0|1 enter=<seq> rc=   (non-socket descriptors)
 *   sync           call= fd= path= enter=<seq> rc=   (fdatasync, fsync, msync; at return)
 *   sync_range     fd= path= enter=<seq> rc=         (sync_file_range: not a durability point)
 *   uring_sync     op= fd= path=                     (an fsync SQE submitted: not counted)
 *   send           via=uring|libc op= fd= len= data=<hex>   (at submission / call start)
 * seq is one counter for the process, taken under the log lock, so the file is in seq order.
 * Paths have blanks replaced by '?'. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define SEND_MAX   (256 * 1024)   /* bytes of one send written to the log */
#define KEY_MAX    256            /* bytes of one mdb_put key written to the log */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t log_seq;
static int log_fd = -2;            /* -2: not opened yet, -1: tracing off */

/* The next symbol of that name after this library (libc, liblmdb, liburing). */
static void *next_sym(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);
    if (p == NULL) {
        static const char msg[] = "synctrace: a traced symbol is missing\n";
        syscall(SYS_write, 2, msg, sizeof(msg) - 1);
        abort();
    }
    return p;
}

#define REAL(fn) \
    static __typeof__(&fn) real_##fn; \
    if (real_##fn == NULL) real_##fn = (__typeof__(&fn))next_sym(#fn)

/* Opens the log on first use; the lock is held. */
static int log_open_locked(void)
{
    if (log_fd == -2) {
        const char *path = getenv("SYNCTRACE_LOG");
        log_fd = path == NULL || *path == '\0'
                     ? -1
                     : (int)syscall(SYS_openat, AT_FDCWD, path,
                                    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (log_fd < -1)
            log_fd = -1;
    }
    return log_fd;
}

static int tracing(void)
{
    pthread_mutex_lock(&log_mu);
    int fd = log_open_locked();
    pthread_mutex_unlock(&log_mu);
    return fd >= 0;
}

/* Takes the next sequence number without writing a line (the start of a call). */
static uint64_t seq_take(void)
{
    pthread_mutex_lock(&log_mu);
    uint64_t s = ++log_seq;
    pthread_mutex_unlock(&log_mu);
    return s;
}

/* Writes one event line: "<seq> <tid> " then the formatted text, then an optional hex dump
 * ("data=" or "key=" is part of fmt) of len bytes gathered from iov. Returns its seq. */
static uint64_t log_event(const struct iovec *iov, size_t iovcnt, size_t len, const char *fmt,
                          ...)
{
    static const char hexd[] = "0123456789abcdef";
    char head[1024];
    va_list ap;
    va_start(ap, fmt);
    int hn = vsnprintf(head, sizeof(head), fmt, ap);
    va_end(ap);
    if (hn < 0)
        return 0;
    if ((size_t)hn >= sizeof(head))
        hn = (int)sizeof(head) - 1;
    char *hex = NULL;
    size_t xn = 0;
    if (len > 0) {
        hex = malloc(2 * len + 1);
        if (hex == NULL)
            len = 0;
        for (size_t i = 0, left = len; i < iovcnt && left > 0; i++) {
            const unsigned char *b = iov[i].iov_base;
            size_t n = iov[i].iov_len < left ? iov[i].iov_len : left;
            for (size_t j = 0; j < n; j++) {
                hex[xn++] = hexd[b[j] >> 4];
                hex[xn++] = hexd[b[j] & 15];
            }
            left -= n;
        }
    }
    uint64_t seq = 0;
    pthread_mutex_lock(&log_mu);
    if (log_open_locked() >= 0) {
        char pre[64];
        seq = ++log_seq;
        int pn = snprintf(pre, sizeof(pre), "%llu %ld ", (unsigned long long)seq,
                          (long)syscall(SYS_gettid));
        struct iovec out[4] = { { pre, (size_t)pn }, { head, (size_t)hn }, { hex, xn },
                                { "\n", 1 } };
        syscall(SYS_writev, log_fd, out, 4);
    }
    pthread_mutex_unlock(&log_mu);
    free(hex);
    return seq;
}

static int is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

static void fd_path(int fd, char *out, size_t cap)
{
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, cap - 1);
    if (n < 0)
        n = snprintf(out, cap, "?");
    out[n] = '\0';
    for (char *p = out; *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '\n')
            *p = '?';
}

/* The file mapped at addr, from /proc/self/maps ("?" if none): msync names no descriptor. */
static void map_path(const void *addr, char *out, size_t cap)
{
    snprintf(out, cap, "?");
    FILE *f = fopen("/proc/self/maps", "re");
    if (f == NULL)
        return;
    char line[4096];
    uintptr_t a = (uintptr_t)addr;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;
        int off = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &off) < 2 || off == 0)
            continue;
        if (a >= lo && a < hi) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(out, cap, "%s", line + off);
            break;
        }
    }
    fclose(f);
    for (char *p = out; *p; p++)
        if (*p == ' ' || *p == '\t')
            *p = '?';
}

static int fd_dsync(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & (O_DSYNC | O_SYNC)) != 0;
}

static size_t iov_total(const struct iovec *iov, size_t n)
{
    size_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += iov[i].iov_len;
    return t;
}

static void trace_send(const char *via, const char *op, int fd, const struct iovec *iov,
                       size_t iovcnt)
{
    size_t len = iov_total(iov, iovcnt);
    log_event(iov, iovcnt, len < SEND_MAX ? len : SEND_MAX,
              "send via=%s op=%s fd=%d len=%zu data=", via, op, fd, len);
}

static void trace_fwrite(const char *call, int fd, size_t len, uint64_t enter, ssize_t rc)
{
    char path[512];
    fd_path(fd, path, sizeof(path));
    log_event(NULL, 0, 0, "fwrite call=%s fd=%d path=%s len=%zu dsync=%d enter=%llu rc=%zd",
              call, fd, path, len, fd_dsync(fd), (unsigned long long)enter, rc);
}

static void trace_sync(const char *call, int fd, uint64_t enter, int rc)
{
    char path[512];
    fd_path(fd, path, sizeof(path));
    log_event(NULL, 0, 0, "sync call=%s fd=%d path=%s enter=%llu rc=%d", call, fd, path,
              (unsigned long long)enter, rc);
}

/* ---- syncs ---- */

int fdatasync(int fd)
{
    REAL(fdatasync);
    if (!tracing())
        return real_fdatasync(fd);
    uint64_t enter = seq_take();
    int rc = real_fdatasync(fd);
    int e = errno;
    trace_sync("fdatasync", fd, enter, rc);
    errno = e;
    return rc;
}

int fsync(int fd)
{
    REAL(fsync);
    if (!tracing())
        return real_fsync(fd);
    uint64_t enter = seq_take();
    int rc = real_fsync(fd);
    int e = errno;
    trace_sync("fsync", fd, enter, rc);
    errno = e;
    return rc;
}

int msync(void *addr, size_t len, int flags)
{
    REAL(msync);
    if (!tracing())
        return real_msync(addr, len, flags);
    uint64_t enter = seq_take();
    int rc = real_msync(addr, len, flags);
    int e = errno;
    char path[512];
    map_path(addr, path, sizeof(path));
    /* MS_ASYNC only schedules the write-back: logged under another call name. */
    log_event(NULL, 0, 0, "sync call=%s fd=-1 path=%s enter=%llu rc=%d",
              (flags & MS_SYNC) ? "msync" : "msync_async", path, (unsigned long long)enter, rc);
    errno = e;
    return rc;
}

int sync_file_range(int fd, off_t off, off_t n, unsigned int flags)
{
    REAL(sync_file_range);
    if (!tracing())
        return real_sync_file_range(fd, off, n, flags);
    uint64_t enter = seq_take();
    int rc = real_sync_file_range(fd, off, n, flags);
    int e = errno;
    char path[512];
    fd_path(fd, path, sizeof(path));
    log_event(NULL, 0, 0, "sync_range fd=%d path=%s enter=%llu rc=%d", fd, path,
              (unsigned long long)enter, rc);
    errno = e;
    return rc;
}

/* ---- writes: files (what a sync must cover) and sockets (replies) ---- */

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(write);
    if (!tracing())
        return real_write(fd, buf, n);
    struct iovec v = { (void *)buf, n };
    if (is_socket(fd)) {
        trace_send("libc", "write", fd, &v, 1);
        return real_write(fd, buf, n);
    }
    uint64_t enter = seq_take();
    ssize_t rc = real_write(fd, buf, n);
    int e = errno;
    trace_fwrite("write", fd, n, enter, rc);
    errno = e;
    return rc;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(writev);
    if (!tracing())
        return real_writev(fd, iov, cnt);
    if (is_socket(fd)) {
        trace_send("libc", "writev", fd, iov, cnt > 0 ? (size_t)cnt : 0);
        return real_writev(fd, iov, cnt);
    }
    uint64_t enter = seq_take();
    ssize_t rc = real_writev(fd, iov, cnt);
    int e = errno;
    trace_fwrite("writev", fd, iov_total(iov, cnt > 0 ? (size_t)cnt : 0), enter, rc);
    errno = e;
    return rc;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite);
    if (!tracing())
        return real_pwrite(fd, buf, n, off);
    uint64_t enter = seq_take();
    ssize_t rc = real_pwrite(fd, buf, n, off);
    int e = errno;
    trace_fwrite("pwrite", fd, n, enter, rc);
    errno = e;
    return rc;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
    REAL(pwrite64);
    if (!tracing())
        return real_pwrite64(fd, buf, n, off);
    uint64_t enter = seq_take();
    ssize_t rc = real_pwrite64(fd, buf, n, off);
    int e = errno;
    trace_fwrite("pwrite64", fd, n, enter, rc);
    errno = e;
    return rc;
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    REAL(pwritev);
    if (!tracing())
        return real_pwritev(fd, iov, cnt, off);
    uint64_t enter = seq_take();
    ssize_t rc = real_pwritev(fd, iov, cnt, off);
    int e = errno;
    trace_fwrite("pwritev", fd, iov_total(iov, cnt > 0 ? (size_t)cnt : 0), enter, rc);
    errno = e;
    return rc;
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
    REAL(send);
    if (tracing()) {
        struct iovec v = { (void *)buf, n };
        trace_send("libc", "send", fd, &v, 1);
    }
    return real_send(fd, buf, n, flags);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to,
               socklen_t tl)
{
    REAL(sendto);
    if (tracing()) {
        struct iovec v = { (void *)buf, n };
        trace_send("libc", "sendto", fd, &v, 1);
    }
    return real_sendto(fd, buf, n, flags, to, tl);
}

ssize_t sendmsg(int fd, const struct msghdr *m, int flags)
{
    REAL(sendmsg);
    if (tracing())
        trace_send("libc", "sendmsg", fd, m->msg_iov, m->msg_iovlen);
    return real_sendmsg(fd, m, flags);
}

/* ---- LMDB: which commit holds a record ---- */

int mdb_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned int flags)
{
    REAL(mdb_put);
    int rc = real_mdb_put(txn, dbi, key, data, flags);
    if (tracing()) {
        struct iovec k = { key->mv_data, key->mv_size };
        size_t kl = key->mv_size < KEY_MAX ? key->mv_size : KEY_MAX;
        log_event(&k, 1, kl, "put dbi=%u vlen=%zu rc=%d key=", (unsigned)dbi, data->mv_size,
                  rc);
    }
    return rc;
}

int mdb_txn_commit(MDB_txn *txn)
{
    REAL(mdb_txn_commit);
    if (!tracing())
        return real_mdb_txn_commit(txn);
    uint64_t enter = log_event(NULL, 0, 0, "commit_enter");
    int rc = real_mdb_txn_commit(txn);
    log_event(NULL, 0, 0, "commit_leave enter=%llu rc=%d", (unsigned long long)enter, rc);
    return rc;
}

/* ---- liburing: the SQEs the kernel is about to see ---- */

static void trace_pending(struct io_uring *ring)
{
    if (!tracing())
        return;
    unsigned shift = (ring->flags & IORING_SETUP_SQE128) ? 1 : 0;
    for (unsigned h = ring->sq.sqe_head; h != ring->sq.sqe_tail; h++) {
        const struct io_uring_sqe *q = &ring->sq.sqes[(h & ring->sq.ring_mask) << shift];
        int fixed = (q->flags & IOSQE_FIXED_FILE) != 0;
        struct iovec one = { (void *)(uintptr_t)q->addr, q->len };
        const struct msghdr *m = (const struct msghdr *)(uintptr_t)q->addr;
        switch (q->opcode) {
        case IORING_OP_SENDMSG:
        case IORING_OP_SENDMSG_ZC:
            trace_send(fixed ? "uring_fixed" : "uring", "sendmsg", q->fd, m->msg_iov,
                       m->msg_iovlen);
            break;
        case IORING_OP_SEND:
        case IORING_OP_SEND_ZC:
            trace_send(fixed ? "uring_fixed" : "uring", "send", q->fd, &one, 1);
            break;
        case IORING_OP_WRITE:
            if (fixed || is_socket(q->fd))
                trace_send(fixed ? "uring_fixed" : "uring", "write", q->fd, &one, 1);
            break;
        case IORING_OP_WRITEV:
            if (fixed || is_socket(q->fd))
                trace_send(fixed ? "uring_fixed" : "uring", "writev", q->fd,
                           (const struct iovec *)(uintptr_t)q->addr, q->len);
            break;
        case IORING_OP_FSYNC:
        case IORING_OP_SYNC_FILE_RANGE: {
            char path[512];
            fd_path(q->fd, path, sizeof(path));
            log_event(NULL, 0, 0, "uring_sync op=%u fd=%d path=%s", q->opcode, q->fd, path);
            break;
        }
        default:
            break;
        }
    }
}

int io_uring_submit(struct io_uring *ring)
{
    REAL(io_uring_submit);
    trace_pending(ring);
    return real_io_uring_submit(ring);
}

int io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr)
{
    REAL(io_uring_submit_and_wait);
    trace_pending(ring);
    return real_io_uring_submit_and_wait(ring, wait_nr);
}

int io_uring_submit_and_wait_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
                                     unsigned wait_nr, struct __kernel_timespec *ts,
                                     sigset_t *sigmask)
{
    REAL(io_uring_submit_and_wait_timeout);
    trace_pending(ring);
    return real_io_uring_submit_and_wait_timeout(ring, cqe_ptr, wait_nr, ts, sigmask);
}

int io_uring_submit_and_get_events(struct io_uring *ring)
{
    REAL(io_uring_submit_and_get_events);
    trace_pending(ring);
    return real_io_uring_submit_and_get_events(ring);
}

int io_uring_wait_cqes(struct io_uring *ring, struct io_uring_cqe **cqe_ptr, unsigned wait_nr,
                       struct __kernel_timespec *ts, sigset_t *sigmask)
{
    REAL(io_uring_wait_cqes);
    trace_pending(ring);
    return real_io_uring_wait_cqes(ring, cqe_ptr, wait_nr, ts, sigmask);
}

int io_uring_wait_cqe_timeout(struct io_uring *ring, struct io_uring_cqe **cqe_ptr,
                              struct __kernel_timespec *ts)
{
    REAL(io_uring_wait_cqe_timeout);
    trace_pending(ring);
    return real_io_uring_wait_cqe_timeout(ring, cqe_ptr, ts);
}
