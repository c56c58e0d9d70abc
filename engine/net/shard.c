/* shard: io_uring event loop of one thread (the pieces: shard_internal.h). See shard.h and
 * docs/http.md.
 *
 * Every submission carries user_data = op (8 bits) | slot (24 bits) | generation (32 bits).
 * A connection slot goes back to the free list only when none of its operations is still in
 * the kernel, and its generation is bumped when it closes, so a completion or a delivered
 * reply for an earlier connection in the same slot is recognised and dropped.
 */
#include "engine/net/shard.h"
#include "engine/net/shard_internal.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SHARD_RING_ENTRIES 4096
#define RBUF_SLACK         (8 * 1024)     /* request line, pipelined bytes after a body */
#define TICK_MIN_MS        50
#define TICK_MAX_MS        1000

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void update_date(shard *s)
{
    time_t t = time(NULL);
    if (t == s->date_t)
        return;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(s->date, sizeof(s->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    s->date_t = t;
}

/* Counts the operation as in flight; submits to make room when the SQ ring is full. */
struct io_uring_sqe *shard_get_sqe(shard *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);
    if (sqe == NULL) {
        io_uring_submit(&s->ring);
        sqe = io_uring_get_sqe(&s->ring);
    }
    if (sqe != NULL)
        s->inflight++;
    return sqe;
}

void shard_arm_accept(shard *s)
{
    if (s->accept_paused || s->nfree == 0 || s->stopping)
        return;
    for (unsigned i = 0; i < s->nlst; i++) {
        shard_listener *l = &s->lst[i];
        if (l->armed)
            continue;
        struct io_uring_sqe *sqe = shard_get_sqe(s);
        if (sqe == NULL)
            return;
        l->addr_len = sizeof(l->addr);
        io_uring_prep_accept(sqe, l->fd, (struct sockaddr *)&l->addr, &l->addr_len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
        io_uring_sqe_set_data64(sqe, ud_pack(OP_ACCEPT, i, 0));
        l->armed = 1;
    }
}

static void arm_tick(shard *s)
{
    if (s->tick_armed || s->stopping)
        return;
    struct io_uring_sqe *sqe = shard_get_sqe(s);
    if (sqe == NULL)
        return;
    s->tick_ts.tv_sec = (long long)(s->tick_ms / 1000);
    s->tick_ts.tv_nsec = (long long)(s->tick_ms % 1000) * 1000000;
    io_uring_prep_timeout(sqe, &s->tick_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_TICK, 0, 0));
    s->tick_armed = 1;
}

static void arm_event(shard *s)
{
    if (s->ev_armed || s->stopping)
        return;
    struct io_uring_sqe *sqe = shard_get_sqe(s);
    if (sqe == NULL)
        return;
    io_uring_prep_read(sqe, s->efd, &s->evbuf, sizeof(s->evbuf), 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_EVENT, 0, 0));
    s->ev_armed = 1;
}

void shard_cancel_op(shard *s, uint64_t ud)
{
    struct io_uring_sqe *sqe = shard_get_sqe(s);
    if (sqe == NULL)
        return;
    io_uring_prep_cancel64(sqe, ud, 0);
    io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, 0));
}

static void on_accept(shard *s, shard_listener *l, int res)
{
    l->armed = 0;
    if (res >= 0) {
        if (s->stopping || s->nfree == 0)
            close(res);
        else
            shard_conn_open(s, res, l);
    } else {
        switch (-res) {
        case ECONNABORTED: case EINTR: case EAGAIN: case EPROTO: case ENETDOWN:
        case ENOPROTOOPT: case EHOSTDOWN: case ENONET: case EHOSTUNREACH: case ENETUNREACH:
        case EPERM:
            break;      /* this connection's problem: take the next */
        default:
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM or worse: never spin; resume when a
             * connection closes or at the next tick. */
            s->accept_paused = 1;
            break;
        }
    }
    shard_arm_accept(s);
}

static void sweep(shard *s)
{
    uint64_t now = s->now;
    for (uint32_t i = 0; i < s->max; i++) {
        conn *c = &s->conns[i];
        if (c->fd < 0)
            continue;
        switch (c->st) {
        case C_READ:
            if (c->tls != NULL && !tls_conn_ready(c->tls)) {
                if (s->header_to_ms > 0 && now - c->req_start >= (uint64_t)s->header_to_ms)
                    shard_tls_handshake_timeout(s, c);
            } else if (c->req_start != 0) {
                if (s->header_to_ms > 0 && now - c->req_start >= (uint64_t)s->header_to_ms)
                    shard_send_error(s, c, 408);
            } else if (s->idle_to_ms > 0 && now - c->last_active >= (uint64_t)s->idle_to_ms) {
                shard_conn_close(s, c);
            }
            break;
        case C_SEND:
            /* A client that stops reading holds the slot no longer than an idle one. */
            if (s->idle_to_ms > 0 && now - c->last_active >= (uint64_t)s->idle_to_ms)
                shard_conn_close(s, c);
            break;
        case C_LINGER:
            if (now >= c->linger_until)
                shard_conn_close(s, c);
            break;
        case C_WAIT:
            /* The app owes a reply; past the wait limit the client gets a 503 now and the
             * reply is released unsent when it comes (deliver_one: no longer C_WAIT). */
            if (s->wait_to_ms > 0 && now - c->wait_start >= (uint64_t)s->wait_to_ms)
                shard_wait_expired(s, c);
            break;
        default:
            break;
        }
    }
}

static void on_tick(shard *s)
{
    s->tick_armed = 0;
    update_date(s);
    sweep(s);
    if (s->accept_paused) {
        s->accept_paused = 0;
        shard_arm_accept(s);
    }
    arm_tick(s);
}

static void deliver_one(shard *s, shard_reply *r)
{
    conn *c = NULL;
    if (r->ref.shard == s->index && r->ref.slot < s->max)
        c = &s->conns[r->ref.slot];
    if (c == NULL || c->fd < 0 || c->gen != r->ref.gen || c->st != C_WAIT) {
        r->release(r);
        return;
    }
    shard_start_response(s, c, &r->resp, r);
    if (c->fd >= 0)
        shard_ensure_recv(s, c);
}

static void deliver_list(shard *s, shard_reply *list)
{
    while (list != NULL) {
        shard_reply *next = list->next;
        list->next = NULL;
        deliver_one(s, list);
        list = next;
    }
}

/* Takes the delivered replies. None: marks the loop as about to sleep (s->waiting), in the
 * same critical section that saw the list empty, so a deliverer that comes after it sees
 * the mark and writes the eventfd (shard_deliver). */
static shard_reply *take_or_mark_waiting(shard *s, int mark)
{
    pthread_mutex_lock(&s->mu);
    shard_reply *list = s->pend_head;
    s->pend_head = s->pend_tail = NULL;
    if (list == NULL && mark)
        atomic_store_explicit(&s->waiting, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
    return list;
}

static void on_event(shard *s)
{
    s->ev_armed = 0;
    if (atomic_load(&s->stop_req)) {
        s->stopping = 1;
        return;     /* pending replies are released by shard_destroy */
    }
    deliver_list(s, take_or_mark_waiting(s, 0));
    arm_event(s);
}

static void on_cqe(shard *s, const struct io_uring_cqe *cqe)
{
    uint64_t ud = io_uring_cqe_get_data64(cqe);
    enum op op = (enum op)(ud >> 56);
    s->inflight--;
    switch (op) {
    case OP_ACCEPT: {
        uint32_t li = (uint32_t)(ud >> 32) & SHARD_SLOT_MAX;
        if (li < s->nlst)
            on_accept(s, &s->lst[li], cqe->res);
        break;
    }
    case OP_TICK:
        on_tick(s);
        break;
    case OP_EVENT:
        on_event(s);
        break;
    case OP_TLS_ASYNC:
        shard_tls_on_async(s, ud, cqe->res);
        break;
    case OP_RECV:
    case OP_SEND: {
        uint32_t slot = (uint32_t)(ud >> 32) & SHARD_SLOT_MAX;
        uint32_t gen = (uint32_t)ud;
        if (slot >= s->max)
            break;
        conn *c = &s->conns[slot];
        if (op == OP_RECV)
            c->recv_busy = 0;
        else
            c->send_busy = 0;
        if (c->fd < 0 || c->gen != gen) {
            if (c->st == C_CLOSING && !c->recv_busy && !c->send_busy)
                shard_conn_finalize(s, c);
            break;
        }
        if (op == OP_RECV)
            shard_on_recv(s, c, cqe->res);
        else
            shard_on_send(s, c, cqe->res);
        break;
    }
    default:
        break;      /* OP_CANCEL */
    }
}

static void close_all(shard *s);

int shard_create(const config *cfg, uint32_t index, shard_handler_fn fn, void *ctx,
                 shard **out)
{
    shard *s = NULL;
    int rc = 0;

    if (cfg == NULL || fn == NULL || out == NULL || cfg->max_conns < 1 ||
        (uint32_t)cfg->max_conns > SHARD_SLOT_MAX) {
        rc = -EINVAL;
        goto out;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    s->efd = -1;
    s->index = index;
    s->fn = fn;
    s->ctx = ctx;
    s->lim.max_url = cfg->max_url;
    s->lim.max_header = cfg->max_header;
    s->lim.max_body = cfg->max_body;
    s->rbuf_max = cfg->max_url + cfg->max_header + cfg->max_body + RBUF_SLACK;
    s->header_to_ms = cfg->header_timeout_ms;
    s->idle_to_ms = cfg->idle_timeout_ms;
    s->wait_to_ms = cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms + SHARD_WAIT_GRACE_MS
                                                : 0;
    /* Ticks at a quarter of the shortest timeout: a timeout fires at most 25% late. */
    uint64_t shortest = TICK_MAX_MS * 4;
    if (s->header_to_ms > 0 && (uint64_t)s->header_to_ms < shortest)
        shortest = (uint64_t)s->header_to_ms;
    if (s->idle_to_ms > 0 && (uint64_t)s->idle_to_ms < shortest)
        shortest = (uint64_t)s->idle_to_ms;
    if (s->wait_to_ms > 0 && (uint64_t)s->wait_to_ms < shortest)
        shortest = (uint64_t)s->wait_to_ms;
    s->tick_ms = shortest / 4 < TICK_MIN_MS ? TICK_MIN_MS : shortest / 4;
    s->max = (uint32_t)cfg->max_conns;
    atomic_init(&s->nused, 0);
    atomic_init(&s->waiting, 0);
    atomic_init(&s->stop_req, 0);

    s->conns = calloc(s->max, sizeof(*s->conns));
    s->freelist = calloc(s->max, sizeof(*s->freelist));
    if (s->conns == NULL || s->freelist == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < s->max; i++) {
        s->conns[i].fd = -1;
        s->freelist[s->max - 1 - i] = i;
    }
    s->nfree = s->max;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        rc = -ENOMEM;
        goto out;
    }
    s->mu_ok = 1;
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->efd < 0) {
        rc = -errno;
        goto out;
    }
    rc = shard_add_listener(s, cfg->listen_host, cfg->listen_port, NULL, SHARD_ROLE_SCEP, NULL);
    if (rc != 0)
        goto out;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_COOP_TASKRUN;
    rc = io_uring_queue_init_params(SHARD_RING_ENTRIES, &s->ring, &p);
    if (rc == -EINVAL) {
        memset(&p, 0, sizeof(p));
        rc = io_uring_queue_init_params(SHARD_RING_ENTRIES, &s->ring, &p);
    }
    if (rc != 0)
        goto out;
    s->ring_ok = 1;
    s->now = mono_ms();
    update_date(s);
out:
    if (rc == 0) {
        *out = s;
        s = NULL;
    }
    shard_destroy(s);
    return rc;
}

int shard_add_listener(shard *s, const char *host, uint16_t port, tls_ctx *tls,
                       enum shard_role role, uint16_t *port_out)
{
    if (s->nlst == SHARD_LISTEN_MAX)
        return -ENOSPC;
    shard_listener *l = &s->lst[s->nlst];
    memset(l, 0, sizeof(*l));
    int rc = shard_open_listener(host, port, &l->fd, &l->port);
    if (rc != 0)
        return rc;
    l->kind = tls != NULL ? SHARD_LISTEN_TLS : SHARD_LISTEN_PLAIN;
    l->tls = tls != NULL ? tls_ctx_ref(tls) : NULL;
    l->role = role;
    s->nlst++;
    if (port_out != NULL)
        *port_out = l->port;
    return 0;
}

void shard_set_flush(shard *s, shard_flush_fn fn)
{
    s->flush = fn;
}

void shard_set_reject(shard *s, shard_reject_fn fn)
{
    s->on_reject = fn;
}

void shard_set_expire(shard *s, shard_expire_fn fn)
{
    s->on_expire = fn;
}

int shard_run(shard *s)
{
    int rc = 0;
    if (gettid() != getpid())          /* top -H, perf --sort comm; not the main thread */
        pthread_setname_np(pthread_self(), "scepd-shard");
    s->now = mono_ms();
    update_date(s);
    shard_arm_accept(s);
    arm_event(s);
    arm_tick(s);
    while (!s->stopping) {
        /* The eventfd read and the tick stay armed even if a full submission queue once
         * kept them from being re-armed (both are no-ops when armed). Replies delivered
         * while the loop was awake are taken here, without an eventfd round trip; only
         * when there are none does the loop sleep (shard_deliver). */
        arm_event(s);
        arm_tick(s);
        shard_reply *list = take_or_mark_waiting(s, 1);
        int r;
        if (list != NULL) {
            deliver_list(s, list);
            r = io_uring_submit(&s->ring);
        } else {
            r = io_uring_submit_and_wait(&s->ring, 1);
            atomic_store_explicit(&s->waiting, 0, memory_order_relaxed);
        }
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            rc = r;
            break;
        }
        s->now = mono_ms();
        update_date(s);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&s->ring, head, cqe) {
            on_cqe(s, cqe);
            seen++;
        }
        io_uring_cq_advance(&s->ring, seen);
        if (s->flush != NULL)
            s->flush(s->ctx, s->index);
        if (atomic_load(&s->stop_req))
            s->stopping = 1;
    }
    /* Tear down here, on the thread that submitted everything, so that no io_uring work
     * is left to interrupt the thread that later calls shard_destroy. */
    s->stopping = 1;
    close_all(s);
    return rc;
}

void shard_stop(shard *s)
{
    uint64_t one = 1;
    atomic_store(&s->stop_req, 1);
    if (write(s->efd, &one, sizeof(one)) < 0) {
        /* Counter saturated: a wake-up is already pending, and the flag is set. */
    }
}

/* Appends the list to the shard's pending replies and writes the eventfd only when this
 * call made the list non-empty while the loop is marked waiting (about to sleep, or asleep
 * in io_uring_enter). No reply is stranded, because the loop never sleeps on a non-empty
 * list without a wake-up on its way:
 * - The loop takes the list, and when it is empty sets waiting = 1, under mu
 *   (take_or_mark_waiting) before each io_uring_submit_and_wait; it clears waiting only
 *   after the wait returned. A deliverer reads waiting under mu too. So a deliverer that
 *   locks mu after the loop's check sees waiting = 1 and writes; one that locked it before
 *   had its replies taken by that check, and the loop does not sleep that round.
 * - A deliverer that finds the list non-empty does not write: whoever made it non-empty
 *   came after the loop's last take (a take empties the list), so either it saw waiting = 1
 *   and wrote, or it saw 0, meaning the loop had not yet checked, and the loop's next check
 *   takes both lists before any sleep.
 * - The written eventfd completes the read the loop keeps armed (arm_event; a write before
 *   the read is armed leaves the counter non-zero, so the read completes at once), and
 *   on_event takes the whole list. A wake-up that finds the list already taken (a check
 *   took it first) costs one empty pass, nothing else.
 * - A waiting that reads 1 after the loop woke (it is cleared without mu) only adds a
 *   spurious write. shard_stop writes unconditionally; pending replies left when the loop
 *   stops are released by shard_destroy. */
void shard_deliver(shard *s, shard_reply *list)
{
    uint64_t one = 1;
    if (list == NULL)
        return;
    shard_reply *tail = list;
    while (tail->next != NULL)
        tail = tail->next;
    pthread_mutex_lock(&s->mu);
    int wake = s->pend_head == NULL &&
               atomic_load_explicit(&s->waiting, memory_order_relaxed) != 0;
    if (s->pend_tail != NULL)
        s->pend_tail->next = list;
    else
        s->pend_head = list;
    s->pend_tail = tail;
    pthread_mutex_unlock(&s->mu);
    if (wake && write(s->efd, &one, sizeof(one)) < 0) {
        /* Counter saturated: a wake-up is already pending. */
    }
}

/* Cancels whatever is still in the kernel and waits (bounded) for it, so no buffer is freed
 * while the kernel may still use it. Completions only free slots: every connection has been
 * closed and s->stopping keeps anything from being re-armed. */
static void drain_ring(shard *s)
{
    struct io_uring_sqe *sqe = shard_get_sqe(s);
    if (sqe != NULL) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data64(sqe, ud_pack(OP_CANCEL, 0, 0));
    }
    io_uring_submit(&s->ring);
    while (s->inflight > 0) {
        struct __kernel_timespec ts = { .tv_sec = 1, .tv_nsec = 0 };
        struct io_uring_cqe *cqe;
        int r = io_uring_wait_cqe_timeout(&s->ring, &cqe, &ts);
        if (r == -EINTR)
            continue;
        if (r < 0)
            break;
        on_cqe(s, cqe);
        io_uring_cqe_seen(&s->ring, cqe);
    }
}

/* Closes every connection and waits for the kernel to let go of their buffers. Idempotent:
 * a second call finds nothing open and nothing in flight. */
static void close_all(shard *s)
{
    for (uint32_t i = 0; i < s->max; i++)
        shard_conn_close(s, &s->conns[i]);
    if (s->inflight > 0)
        drain_ring(s);
}

void shard_destroy(shard *s)
{
    if (s == NULL)
        return;
    s->stopping = 1;
    if (s->ring_ok) {
        close_all(s);
        io_uring_queue_exit(&s->ring);
    }
    if (s->conns != NULL) {
        for (uint32_t i = 0; i < s->max; i++) {
            conn *c = &s->conns[i];
            if (c->fd >= 0)
                close(c->fd);
            if (c->reply != NULL)
                c->reply->release(c->reply);
            free(c->rbuf);
            free(c->wbuf);
            tls_conn_destroy(c->tls);
        }
    }
    shard_reply *r = s->pend_head;
    while (r != NULL) {
        shard_reply *next = r->next;
        r->release(r);
        r = next;
    }
    for (unsigned i = 0; i < s->nlst; i++) {
        close(s->lst[i].fd);
        tls_ctx_free(s->lst[i].tls);
    }
    if (s->efd >= 0)
        close(s->efd);
    if (s->mu_ok)
        pthread_mutex_destroy(&s->mu);
    free(s->conns);
    free(s->freelist);
    free(s);
}

uint16_t shard_port(const shard *s)
{
    return s->nlst > 0 ? s->lst[0].port : 0;
}

uint16_t shard_listen_port(const shard *s, enum shard_listen_kind kind)
{
    for (unsigned i = 0; i < s->nlst; i++)
        if (s->lst[i].kind == kind)
            return s->lst[i].port;
    return 0;
}

size_t shard_conn_count(const shard *s)
{
    return atomic_load(&s->nused);
}

int shard_ref_live(const shard *s, conn_ref ref)
{
    if (ref.shard != s->index || ref.slot >= s->max)
        return 0;
    return atomic_load_explicit(&s->conns[ref.slot].gen, memory_order_relaxed) == ref.gen;
}
