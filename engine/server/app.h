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
/* The configuration file app_reload reads again (main.c: the -c file). */
void app_set_config_file(app *a, const char *path);
/* Async-signal-safe (SIGHUP): app_run's thread runs app_reload. */
void app_request_reload(app *a);
/* Reopens the audit log (logrotate), then reads the configuration file again. When it
 * parses, changes no key that needs a restart (config_restart_changes: listeners, token,
 * keys, store...), and its profiles and static challenges load, the new set replaces the
 * old at once: requests that start afterwards see it, requests already running finish
 * under the old one, which is freed after them. Otherwise nothing changes. Audited as
 * CONFIG_RELOADED, CONFIG_RELOAD_FAILED (with the reason) and LOG_REOPEN_FAILED. One thread
 * at a time (app_run's). Returns 0, or -1 when anything was refused. */
int  app_reload(app *a);
void app_destroy(app *a);   /* accepts NULL; after app_run returned */

/* The port shard 0 is bound to (when the configuration asked for port 0). */
uint16_t app_port(const app *a);

#endif
