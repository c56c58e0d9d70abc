/* authlimit: per-address failed-authentication windows. See authlimit.h. */
#include "engine/server/authlimit.h"

#include <stdio.h>
#include <string.h>

void authlimit_init(authlimit *l, int max, int window_s)
{
    memset(l, 0, sizeof(*l));
    pthread_mutex_init(&l->mu, NULL);
    l->max = max > 0 ? (uint32_t)max : 1;
    l->window_ms = (uint64_t)(window_s > 0 ? window_s : 1) * 1000u;
    atomic_init(&l->due_ms, UINT64_MAX);
}

void authlimit_destroy(authlimit *l)
{
    pthread_mutex_destroy(&l->mu);
}

/* The address part of "ip:port" or "[v6]:port". */
static void addr_of(const char *peer, char *out, size_t outlen)
{
    const char *p = peer != NULL ? peer : "";
    size_t n;
    if (*p == '[') {
        const char *e = strchr(p, ']');
        p++;
        n = e != NULL ? (size_t)(e - p) : strlen(p);
    } else {
        const char *c = strrchr(p, ':');
        n = c != NULL ? (size_t)(c - p) : strlen(p);
    }
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

static authlimit_entry *find(authlimit *l, const char *addr)
{
    for (size_t i = 0; i < AUTHLIMIT_SLOTS; i++)
        if (l->tab[i].addr[0] != '\0' && strcmp(l->tab[i].addr, addr) == 0)
            return &l->tab[i];
    return NULL;
}

static void emit(audit *au, authlimit_entry *e, uint64_t window_ms)
{
    char detail[128];
    if (e->failed + e->refused == 0)
        return;
    snprintf(detail, sizeof(detail), "%u failed, %u refused with 429 in %llus", e->failed,
             e->refused, (unsigned long long)(window_ms / 1000));
    audit_fields f = {.diag = e->refused > 0 ? "rate_limited" : "unauthorized", .peer = e->addr,
                      .detail = detail, .failinfo = -1,
                      .http_status = e->refused > 0 ? 429 : 401,
                      .count = (unsigned long long)e->failed + e->refused};
    audit_emit(au, AUDIT_ADMIN_AUTH_FAILED, &f);
}

/* Recomputes due_ms (under mu). */
static void update_due(authlimit *l)
{
    uint64_t due = UINT64_MAX;
    for (size_t i = 0; i < AUTHLIMIT_SLOTS; i++)
        if (l->tab[i].addr[0] != '\0' && l->tab[i].start_ms + l->window_ms < due)
            due = l->tab[i].start_ms + l->window_ms;
    atomic_store_explicit(&l->due_ms, due, memory_order_relaxed);
}

int authlimit_blocked(authlimit *l, const char *peer, uint64_t now_ms, unsigned *retry_s)
{
    char addr[48];
    int blocked = 0;
    addr_of(peer, addr, sizeof(addr));
    pthread_mutex_lock(&l->mu);
    authlimit_entry *e = find(l, addr);
    if (e != NULL && e->failed >= l->max && now_ms < e->start_ms + l->window_ms) {
        uint64_t left = e->start_ms + l->window_ms - now_ms;
        *retry_s = (unsigned)((left + 999) / 1000);
        e->refused++;
        blocked = 1;
    }
    pthread_mutex_unlock(&l->mu);
    return blocked;
}

void authlimit_failed(authlimit *l, audit *au, const char *peer, uint64_t now_ms)
{
    char addr[48];
    addr_of(peer, addr, sizeof(addr));
    pthread_mutex_lock(&l->mu);
    authlimit_entry *e = find(l, addr);
    if (e == NULL) {
        for (size_t i = 0; i < AUTHLIMIT_SLOTS && e == NULL; i++)
            if (l->tab[i].addr[0] == '\0')
                e = &l->tab[i];
    }
    if (e == NULL) {
        /* Full: the entry whose window started first makes room. */
        e = &l->tab[0];
        for (size_t i = 1; i < AUTHLIMIT_SLOTS; i++)
            if (l->tab[i].start_ms < e->start_ms)
                e = &l->tab[i];
    }
    if (e->addr[0] == '\0' || strcmp(e->addr, addr) != 0 ||
        now_ms >= e->start_ms + l->window_ms) {
        /* A new window: the previous one of this slot (ended, or evicted) is audited first. */
        if (e->addr[0] != '\0')
            emit(au, e, l->window_ms);
        memset(e, 0, sizeof(*e));
        snprintf(e->addr, sizeof(e->addr), "%s", addr);
        e->start_ms = now_ms;
    }
    e->failed++;
    update_due(l);
    pthread_mutex_unlock(&l->mu);
}

int authlimit_due(const authlimit *l, uint64_t now_ms)
{
    return now_ms >= atomic_load_explicit(&l->due_ms, memory_order_relaxed);
}

void authlimit_flush(authlimit *l, audit *au, uint64_t now_ms, int force)
{
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < AUTHLIMIT_SLOTS; i++) {
        authlimit_entry *e = &l->tab[i];
        if (e->addr[0] == '\0' || (!force && now_ms < e->start_ms + l->window_ms))
            continue;
        emit(au, e, l->window_ms);
        memset(e, 0, sizeof(*e));
    }
    update_due(l);
    pthread_mutex_unlock(&l->mu);
}
