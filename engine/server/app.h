/* app: a running scepd — configuration, CA material, store, shards, crypto workers, and the
 * routing of HTTP requests to SCEP operations.
 *
 * Threads: N shards (engine/net/shard.c; their handler is route_request in route.c), M crypto
 * workers (worker.c; each with its own PKCS#11 session and store reader), one store writer
 * (engine/store/store.c; its commit callback is commit.c), the CRL publisher (publisher.c).
 * Jobs move between them in batched lists (engine/server/job.h). The files' shared internals
 * are in app_internal.h.
 */
#ifndef SCEPD_APP_H
#define SCEPD_APP_H

#include <stddef.h>
#include <stdint.h>

#include "engine/common/config.h"

typedef struct app app;

/* Loads keys, certificates and the store, binds the listeners. Nothing runs yet.
 * Returns 0 or -1 with a message in err. */
int  app_create(const config *cfg, app **out, char *err, size_t errlen);
/* Starts every thread and blocks until app_stop(); then shuts down in order (shards stop
 * reading, workers finish queued jobs, the writer commits what it holds). Returns 0. */
int  app_run(app *a);
/* Async-signal-safe. */
void app_stop(app *a);
void app_destroy(app *a);   /* accepts NULL; after app_run returned */

/* The port shard 0 is bound to (when the configuration asked for port 0). */
uint16_t app_port(const app *a);
/* The port of the admin listener ([admin] listen), 0 when there is none. */
uint16_t app_admin_port(const app *a);

#endif
