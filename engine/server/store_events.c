/* store_events: the store's connection outages into the audit log. The store reports at a
 * bounded rate (store.h: at most one outage a second); this only words the event. The
 * callback runs on whichever thread noticed (a worker, the writer, the publisher): audit_emit
 * is safe from any of them. */
#include "engine/server/store_events.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char node_name[128];     /* written once by store_events_start, then read only */

static void on_event(void *arg, const store_event *ev)
{
    audit *au = arg;
    char detail[512];
    audit_fields f = {.failinfo = -1, .count = ev->count};
    if (ev->kind == STORE_EV_UNAVAILABLE) {
        snprintf(detail, sizeof(detail), "node %s: %s connection: %s", node_name, ev->conn,
                 ev->error);
        f.diag = "store_unavailable";
        f.detail = detail;
        audit_emit(au, AUDIT_STORE_UNAVAILABLE, &f);
    } else {
        snprintf(detail, sizeof(detail), "node %s: %s connection established again after %lld ms",
                 node_name, ev->conn, (long long)ev->down_ms);
        f.diag = "store_recovered";
        f.detail = detail;
        audit_emit(au, AUDIT_STORE_RECOVERED, &f);
    }
}

void store_events_start(store *s, audit *au)
{
    char host[64];
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "?");
    host[sizeof(host) - 1] = '\0';
    snprintf(node_name, sizeof(node_name), "%s pid %ld", host, (long)getpid());
    store_set_event_cb(s, on_event, au);
}
