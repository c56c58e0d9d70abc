/* The event loop: one epoll instance and one timerfd drive every connection. Requests are
 * prebuilt bytes; the loop only writes them, frames the responses and timestamps both ends,
 * so the client costs the server as little CPU as possible.
 *
 * Closed loop: each of C keep-alive connections sends its next request as soon as the
 * previous response is complete; the intended send time is the actual one.
 * Open loop: request k is due at t0 + k/rate whatever happens to earlier ones; due requests
 * wait in order for a free connection, and latency counts from the due time, so a stalled
 * server shows up as latency instead of as fewer requests (no coordinated omission). */
#include "loadgen/loadgen.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define NS 1000000000LL
#define PROGRESS_NS (NS / 4)
#define BUF_INIT 16384
#define BUF_MAX (16u << 20)

enum { C_CLOSED, C_CONNECTING, C_IDLE, C_BUSY };

typedef struct conn {
    int fd;
    int state;
    int reused;                    /* a response was completed on this connection */
    int retried;                   /* the current request was resent once already */
    lg_req *req;
    size_t off;                    /* bytes of req->http written */
    uint32_t events;               /* current epoll interest */
    int64_t deadline;
    uint8_t *buf;
    size_t len, cap;
} conn;

typedef struct loop {
    const lg_run_cfg *cfg;
    int ep;
    conn *conns;
    size_t busy;
    size_t done, failed;           /* responses seen / net errors + non-200 */
} loop;

double lg_proc_cpu_s(int pid)
{
    char path[64], buf[1024];
    FILE *f;
    size_t n;
    double rc = -1.0;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    if (!(f = fopen(path, "r")))
        return -1.0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may contain spaces and parentheses: fields count from the last ')'.
     * After it come state (field 3) ... utime (14), stime (15). */
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (p && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2) {
        long hz = sysconf(_SC_CLK_TCK);
        if (hz > 0)
            rc = (double)(ut + st) / (double)hz;
    }
    return rc;
}

static void set_events(loop *L, conn *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = { .events = ev, .data.ptr = c };
    epoll_ctl(L->ep, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

static void conn_close(loop *L, conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(L->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_CLOSED;
    c->reused = 0;
    c->len = 0;
    c->events = 0;
}

/* Ends the current request with outcome net; keeps the connection unless told. */
static void finish(loop *L, conn *c, int net, const scepc_http_frame *r, int keep)
{
    lg_req *q = c->req;
    q->t_done = lg_now();
    q->net = net;
    if (net == LG_NET_OK) {
        q->http_status = r->status;
        if (r->status == 200 && r->body_len > 0 && (q->body = malloc(r->body_len))) {
            memcpy(q->body, r->body, r->body_len);
            q->body_len = r->body_len;
        }
        if (r->status != 200)
            L->failed++;
    } else {
        L->failed++;
    }
    L->done++;
    L->busy--;
    c->req = NULL;
    c->retried = 0;
    c->len = 0;
    if (!keep) {
        conn_close(L, c);
    } else {
        c->state = C_IDLE;
        c->reused = 1;
        set_events(L, c, EPOLLIN);      /* EOF on an idle connection closes it */
    }
}

static int retry(loop *L, conn *c);

static void do_write(loop *L, conn *c)
{
    lg_req *q = c->req;
    while (c->off < q->http_len) {
        ssize_t w = send(c->fd, q->http + c->off, q->http_len - c->off, MSG_NOSIGNAL);
        if (w > 0) {
            c->off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(L, c, EPOLLIN | EPOLLOUT);
            return;
        }
        if (!retry(L, c))
            finish(L, c, LG_NET_IO, NULL, 0);
        return;
    }
    set_events(L, c, EPOLLIN);
}

static int open_conn(loop *L, conn *c)
{
    const lg_url *u = L->cfg->url;
    int one = 1;
    int fd = socket(u->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->len = 0;
    c->reused = 0;
    struct epoll_event e = { .events = EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, fd, &e) != 0) {
        close(fd);
        c->fd = -1;
        return -1;
    }
    c->events = EPOLLOUT;
    if (connect(fd, (const struct sockaddr *)&u->addr, u->addrlen) != 0 && errno != EINPROGRESS) {
        conn_close(L, c);
        return -1;
    }
    c->state = C_CONNECTING;
    return 0;
}

static void start(loop *L, conn *c, lg_req *q, int64_t now)
{
    c->req = q;
    c->off = 0;
    c->len = 0;
    q->t_sent = now;
    c->deadline = now + (int64_t)(L->cfg->timeout_s * (double)NS);
    L->busy++;
    if (c->state == C_CLOSED) {
        if (open_conn(L, c) != 0)
            finish(L, c, LG_NET_CONNECT, NULL, 0);
        return;
    }
    c->state = C_BUSY;
    do_write(L, c);
}

/* The peer closed or reset a reused keep-alive connection before answering: it had timed
 * the connection out just as we wrote. Like browsers, resend once on a new connection. */
static int retry(loop *L, conn *c)
{
    if (!c->reused || c->len != 0 || c->retried)
        return 0;
    lg_req *q = c->req;
    conn_close(L, c);
    c->retried = 1;
    c->req = q;
    c->off = 0;
    if (open_conn(L, c) != 0) {
        finish(L, c, LG_NET_CONNECT, NULL, 0);
        return 1;
    }
    return 1;
}

static void on_readable(loop *L, conn *c)
{
    for (;;) {
        if (c->cap - c->len < 4096) {
            size_t ncap = c->cap ? c->cap * 2 : BUF_INIT;
            uint8_t *nb;
            if (ncap > BUF_MAX || !(nb = realloc(c->buf, ncap))) {
                if (c->req)
                    finish(L, c, LG_NET_PROTO, NULL, 0);
                else
                    conn_close(L, c);
                return;
            }
            c->buf = nb;
            c->cap = ncap;
        }
        ssize_t got = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (!c->req) {                 /* idle: the server closed, or sent junk */
            conn_close(L, c);
            return;
        }
        if (got < 0) {
            if (!retry(L, c))
                finish(L, c, LG_NET_IO, NULL, 0);
            return;
        }
        c->len += (size_t)got;
        scepc_http_frame r;
        long used = scepc_http_parse(c->buf, c->len, got == 0, &r);
        if (used < 0) {
            finish(L, c, LG_NET_PROTO, NULL, 0);
            return;
        }
        if (used > 0) {
            /* 1xx interim responses are skipped; anything after the response is junk. */
            if (r.status < 200) {
                memmove(c->buf, c->buf + used, c->len - (size_t)used);
                c->len -= (size_t)used;
                continue;
            }
            finish(L, c, LG_NET_OK, &r, !r.close && (size_t)used == c->len && got != 0);
            return;
        }
        if (got == 0) {
            if (!retry(L, c))
                finish(L, c, LG_NET_IO, NULL, 0);
            return;
        }
    }
}

static void on_event(loop *L, conn *c, uint32_t ev)
{
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
            finish(L, c, LG_NET_CONNECT, NULL, 0);
            return;
        }
        c->state = C_BUSY;
        do_write(L, c);
        return;
    }
    if (c->state == C_BUSY && (ev & EPOLLOUT) && c->req && c->off < c->req->http_len) {
        do_write(L, c);
        if (c->state != C_BUSY)
            return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        on_readable(L, c);
}

static void progress(const loop *L, int64_t now, int64_t t0, size_t *last_done, int64_t *last_t)
{
    double dt = (double)(now - *last_t) / NS;
    double r = dt > 0 ? (double)(L->done - *last_done) / dt : 0.0;
    printf("\r%7.1fs  done %zu  http/net errors %zu  in flight %zu  %.0f/s   ",
           (double)(now - t0) / NS, L->done, L->failed, L->busy, r);
    fflush(stdout);
    *last_done = L->done;
    *last_t = now;
}

/* Where the run stands: its clock marks, how far sending got, and the stats it fills. */
typedef struct sched {
    const lg_run_cfg *cfg;
    lg_req *reqs;
    size_t nreq;
    int open;                      /* open loop (cfg->rate > 0) */
    int measuring, sending_done;
    int64_t t0, t_measure, t_end, period;
    size_t next;                   /* next request to hand to a connection */
    size_t due;                    /* open loop: requests released so far */
    size_t measured_due;
    int64_t last_prog_t, next_prog;
    size_t last_prog_done;
    double cpu0;                   /* server CPU seconds when measuring began, or -1 */
    int key0_ok;                   /* --metrics-url read when measuring began */
    lg_keyop key0;
    lg_run_stats s;
} sched;

/* One epoll instance holding a timerfd (data.ptr NULL) and nconn closed connections. */
static int loop_open(loop *L, size_t nconn, int *tfd)
{
    int rc = -1;

    if (!(L->conns = calloc(nconn, sizeof(*L->conns))))
        goto out;
    for (size_t i = 0; i < nconn; i++)
        L->conns[i].fd = -1;
    if ((L->ep = epoll_create1(EPOLL_CLOEXEC)) < 0
        || (*tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0)
        goto out;
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = NULL };
    if (epoll_ctl(L->ep, EPOLL_CTL_ADD, *tfd, &e) != 0)
        goto out;
    rc = 0;
out:
    return rc;
}

/* Accepts what a failed loop_open left. */
static void loop_close(loop *L, size_t nconn, int tfd)
{
    if (L->conns) {
        for (size_t i = 0; i < nconn; i++) {
            if (L->conns[i].fd >= 0)
                close(L->conns[i].fd);
            free(L->conns[i].buf);
        }
    }
    free(L->conns);
    if (tfd >= 0)
        close(tfd);
    if (L->ep >= 0)
        close(L->ep);
}

static void sched_init(sched *S, const lg_run_cfg *cfg, lg_req *reqs, size_t nreq)
{
    *S = (sched){ .cfg = cfg, .reqs = reqs, .nreq = nreq, .open = cfg->rate > 0, .cpu0 = -1.0 };
    if (S->open)
        S->period = (int64_t)((double)NS / cfg->rate);
    if (S->period < 1)
        S->period = 1;
    S->t0 = lg_now();
    S->t_measure = S->t0 + (int64_t)(cfg->warmup_s * (double)NS);
    S->t_end = cfg->duration_s > 0 ? S->t_measure + (int64_t)(cfg->duration_s * (double)NS)
                                   : INT64_MAX;
    S->s.t_start = S->t0;
    S->s.t_measure = S->t_measure;
    S->last_prog_t = S->t0;
    S->next_prog = S->t0 + PROGRESS_NS;
}

/* Start of the timed phase and SIGINT, both seen at the top of each turn. */
static void sched_tick(sched *S, int64_t now)
{
    const lg_run_cfg *cfg = S->cfg;

    if (!S->measuring && now >= S->t_measure) {
        S->measuring = 1;
        if (cfg->server_pid > 0)
            S->cpu0 = lg_proc_cpu_s(cfg->server_pid);
        if (cfg->metrics_url != NULL)
            S->key0_ok = lg_scrape_keyop(cfg->metrics_url, &S->key0) == 0;
    }
    if (cfg->stop && *cfg->stop && !S->sending_done) {
        S->sending_done = 1;
        S->s.interrupted = 1;
    }
}

/* Open loop: release every request whose time has come. */
static void sched_release_due(sched *S, int64_t now)
{
    while (S->open && !S->sending_done) {
        int64_t when = S->t0 + (int64_t)S->due * S->period;
        if (when > now)
            break;
        if (when >= S->t_end || (S->cfg->duration_s <= 0 && S->measured_due == S->cfg->count)) {
            S->sending_done = 1;
            break;
        }
        if (S->due == S->nreq) {
            S->s.exhausted = 1;
            S->sending_done = 1;
            break;
        }
        lg_req *q = &S->reqs[S->due++];
        q->t_intended = when;
        q->measured = when >= S->t_measure;
        S->measured_due += (size_t)q->measured;
    }
}

/* The request an idle connection sends next, or NULL: a released one in the open loop, the
 * next one now in the closed loop until the run's end. */
static lg_req *sched_take(sched *S, int64_t now)
{
    lg_req *q = NULL;

    if (S->open) {
        if (S->next < S->due)
            q = &S->reqs[S->next++];
    } else if (!S->sending_done) {
        if (now >= S->t_end || (S->cfg->duration_s <= 0 && S->s.measured_sent == S->cfg->count)) {
            S->sending_done = 1;
        } else if (S->next == S->nreq) {
            S->s.exhausted = 1;
            S->sending_done = 1;
        } else {
            q = &S->reqs[S->next++];
            q->t_intended = now;
            q->measured = now >= S->t_measure;
        }
    }
    if (q) {
        S->s.sent++;
        S->s.measured_sent += (size_t)q->measured;
    }
    return q;
}

/* The earliest of: a connection's deadline, the next open-loop release, the end of a
 * closed-loop run, the start of the timed phase, the next progress line (printed here when
 * due). INT64_MAX when nothing is pending. */
static int64_t sched_wake(sched *S, const loop *L, size_t nconn, int64_t now)
{
    int64_t wake = INT64_MAX;

    for (size_t i = 0; i < nconn; i++)
        if (L->conns[i].req && L->conns[i].deadline < wake)
            wake = L->conns[i].deadline;
    if (S->open && !S->sending_done) {
        int64_t when = S->t0 + (int64_t)S->due * S->period;
        if (when < wake)
            wake = when;
    }
    if (!S->open && !S->sending_done && S->t_end < wake)
        wake = S->t_end;
    if (!S->measuring && S->t_measure < wake)
        wake = S->t_measure;
    if (S->cfg->progress) {
        if (now >= S->next_prog) {
            progress(L, now, S->t0, &S->last_prog_done, &S->last_prog_t);
            S->next_prog = now + PROGRESS_NS;
        }
        if (S->next_prog < wake)
            wake = S->next_prog;
    }
    return wake;
}

static void arm_timer(int tfd, int64_t wake, int64_t now)
{
    struct itimerspec its = { 0 };

    if (wake <= now)
        wake = now + 1;
    its.it_value.tv_sec = wake / NS;
    its.it_value.tv_nsec = wake % NS;
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* After the loop: last completion in the timed phase, server CPU, clearing the live line. */
static void sched_finish(sched *S)
{
    const lg_run_cfg *cfg = S->cfg;

    for (size_t i = 0; i < S->nreq; i++) {
        const lg_req *q = &S->reqs[i];
        if (q->measured && q->net != LG_NET_NONE && q->t_done > S->s.t_last_done)
            S->s.t_last_done = q->t_done;
    }
    if (cfg->server_pid > 0 && S->cpu0 >= 0) {
        double cpu1 = lg_proc_cpu_s(cfg->server_pid);
        if (cpu1 >= 0) {
            S->s.cpu_ok = 1;
            S->s.server_cpu_s = cpu1 - S->cpu0;
        }
    }
    lg_keyop k1;
    if (cfg->metrics_url != NULL && S->key0_ok && lg_scrape_keyop(cfg->metrics_url, &k1) == 0 &&
        k1.sampled > S->key0.sampled) {
        /* the CPU of the operations timed, scaled to all of them (keyclock.h: sampling) */
        S->s.keyop_ok = 1;
        S->s.keyop_ops = k1.ops - S->key0.ops;
        S->s.keyop_cpu_s = (k1.sampled_s - S->key0.sampled_s) / (k1.sampled - S->key0.sampled) *
                           S->s.keyop_ops;
    }
    if (cfg->progress) {
        printf("\r\033[K");
        fflush(stdout);
    }
}

int lg_run(const lg_run_cfg *cfg, lg_req *reqs, size_t nreq, lg_run_stats *st)
{
    loop L = { .cfg = cfg, .ep = -1 };
    sched S;
    int tfd = -1, rc = -1;
    size_t nconn = (size_t)cfg->concurrency;
    struct epoll_event evs[64];

    if (loop_open(&L, nconn, &tfd) != 0)
        goto out;
    sched_init(&S, cfg, reqs, nreq);
    for (;;) {
        int64_t now = lg_now();

        sched_tick(&S, now);
        sched_release_due(&S, now);
        for (size_t i = 0; i < nconn; i++) {
            conn *c = &L.conns[i];
            if (c->req && c->deadline <= now)
                finish(&L, c, LG_NET_TIMEOUT, NULL, 0);
            if (c->req)
                continue;
            lg_req *q = sched_take(&S, now);
            if (q)
                start(&L, c, q, now);
        }
        if (S.sending_done && L.busy == 0 && (!S.open || S.next == S.due))
            break;

        int64_t wake = sched_wake(&S, &L, nconn, now);
        if (wake != INT64_MAX)
            arm_timer(tfd, wake, now);
        int n = epoll_wait(L.ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), wake == INT64_MAX ? 1000 : -1);
        if (n < 0 && errno != EINTR)
            goto out;
        for (int i = 0; i < n; i++) {
            if (!evs[i].data.ptr) {
                uint64_t x;
                if (read(tfd, &x, sizeof(x)) < 0) {
                    /* nothing due yet (EAGAIN): the loop re-reads the clock anyway */
                }
                continue;
            }
            on_event(&L, evs[i].data.ptr, evs[i].events);
        }
    }
    sched_finish(&S);
    *st = S.s;
    rc = 0;
out:
    loop_close(&L, nconn, tfd);
    return rc;
}
