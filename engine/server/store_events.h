/* store_events: the store's connection outages (PostgreSQL) into the audit log. */
#ifndef SCEPD_STORE_EVENTS_H
#define SCEPD_STORE_EVENTS_H

#include "engine/common/audit.h"
#include "engine/store/store.h"

/* Audits the outages of s (store_set_event_cb): STORE_UNAVAILABLE when a connection is lost
 * or cannot be established, STORE_RECOVERED when one is established again, each naming this
 * node (host name and process id), the connection and the database client's error. Called
 * once after store_open, before any thread uses s; au outlives s's threads. No-op for LMDB. */
void store_events_start(store *s, audit *au);

#endif
