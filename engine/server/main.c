/* scepd: the SCEP server. Usage: scepd -c CONFIG [--port-file FILE] */
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

static void on_hup(int sig)
{
    (void)sig;
    app_request_reload(g_app);
}

static void usage(void)
{
    fprintf(stderr, "usage: scepd -c CONFIG [--port-file FILE]\n"
                    "  The PIN is read from [keys] pin_file or the SCEPD_PIN environment variable.\n"
                    "  SIGHUP reopens the audit log and reloads profiles and challenges.\n");
}

int main(int argc, char **argv)
{
    const char *conf = NULL, *port_file = NULL;
    char err[512];
    config cfg;

    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
            conf = argv[++i];
        else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
            port_file = argv[++i];
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
    if (port_file != NULL) {
        FILE *f = fopen(port_file, "w");
        if (f != NULL) {
            fprintf(f, "%u\n", app_port(g_app));
            fclose(f);
        }
    }
    int rc = app_run(g_app);
    app_destroy(g_app);
    fprintf(stderr, "scepd: stopped\n");
    return rc == 0 ? 0 : 1;
}
