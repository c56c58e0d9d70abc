/* scepd: the SCEP server. Usage: scepd -c CONFIG [--port-file FILE] [--admin-port-file FILE] */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "engine/server/app.h"
#include "engine/common/config.h"

static app *g_app;   /* for the signal handler only */

/* Handlers only write an eventfd: the main thread (app_run) stops or reloads. */
static void on_signal(int sig)
{
    (void)sig;
    app_stop(g_app);
}

/* Writes port and a newline to path (NULL: nothing), for tests that let the kernel choose. */
static void write_port(const char *path, unsigned port)
{
    FILE *f = path != NULL ? fopen(path, "w") : NULL;
    if (f != NULL) {
        fprintf(f, "%u\n", port);
        fclose(f);
    }
}

static void on_hup(int sig)
{
    (void)sig;
    app_request_reload(g_app);
}

static void usage(void)
{
    fprintf(stderr, "usage: scepd -c CONFIG [--port-file FILE] [--admin-port-file FILE]\n"
                    "  The PIN is read from [keys] pin_file or the SCEPD_PIN environment variable.\n"
                    "  SIGHUP reopens the audit log and reloads profiles and challenges.\n");
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *port_file = NULL, *admin_port_file = NULL;
    char err[512];
    config cfg;

    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            conf = argv[++i];
        else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
            port_file = argv[++i];
        else if (strcmp(argv[i], "--admin-port-file") == 0 && i + 1 < argc)
            admin_port_file = argv[++i];
        else {
            usage();
            return 2;
        }
    }
    if (conf == NULL) {
        usage();
        return 2;
    }
    /* No core dumps and no ptrace by other users: the process holds the token PIN (in locked
     * memory, hsm/) and, in file mode, the CA key. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (config_load(&cfg, conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "scepd: %s: %s\n", conf, err);
        return 1;
    }
    /* yield_to_workers: this thread, alone so far, takes SCHED_BATCH and every thread created
     * from now on inherits it; the crypto workers take SCHED_OTHER back (worker_main), and so
     * does the audit writer (engine/common/audit.c: its lines follow the answers). A
     * woken SCHED_BATCH thread does not preempt the running one: the shards, the store
     * writer (about a dozen I/O wake-ups per synced commit) and the rest
     * wait for a worker's time slice to end, or for an idle CPU, instead of cutting a
     * private-key operation in two. Measured on two cores at 16-64 requests in flight: 6-8
     * preemptions of the workers per enrollment fell to 0.3-0.4 and the server's CPU per
     * enrollment over its private-key CPU by 3-7 %, p99 unchanged (docs/benchmarks.md,
     * lever s). Needs no privilege. */
    if (cfg.yield_to_workers) {
        struct sched_param sp = {.sched_priority = 0};
        if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0)
            fprintf(stderr, "scepd: yield_to_workers: SCHED_BATCH: %s (ignored)\n",
                    strerror(errno));
    }
    if (app_create(&cfg, &g_app, err, sizeof(err)) != 0) {
        fprintf(stderr, "scepd: %s\n", err);
        return 1;
    }
    app_set_config_file(g_app, conf);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_hup;
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    fprintf(stderr, "scepd: listening on http://%s:%u/scep\n", cfg.listen_host, app_port(g_app));
    if (app_admin_port(g_app) != 0)
        fprintf(stderr, "scepd: admin API and /metrics on http://%s:%u/\n",
                cfg.admin_listen_host, app_admin_port(g_app));
    /* The admin port first: a reader that waits for the SCEP port file finds both. */
    write_port(admin_port_file, app_admin_port(g_app));
    write_port(port_file, app_port(g_app));
    int rc = app_run(g_app);
    app_destroy(g_app);
    fprintf(stderr, "scepd: stopped\n");
    return rc == 0 ? 0 : 1;
}
