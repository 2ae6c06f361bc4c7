/*
 * lttng_harness.c - see lttng_harness.h.
 */
#include "lttng_harness.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The pid in a pid file, or 0. */
static pid_t read_pid(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    return (pid_t)pid;
}

int lttng_harness_start(const char *home, pid_t *started)
{
    *started = 0;
    if (setenv("LTTNG_HOME", home, 1) != 0)
        return -1;
    if (system("lttng list >/dev/null 2>&1") == 0)
        return 0; /* a daemon already answers: use it */
    int rc = system("lttng-sessiond --daemonize --no-kernel");
    if (rc != 0) {
        fprintf(stderr, "lttng-sessiond --daemonize --no-kernel exited with %d\n", rc);
        return -1;
    }
    char pidfile[512];
    if (geteuid() == 0)
        snprintf(pidfile, sizeof(pidfile), "/var/run/lttng/lttng-sessiond.pid");
    else
        snprintf(pidfile, sizeof(pidfile), "%s/.lttng/lttng-sessiond.pid", home);
    for (int i = 0; i < 100 && *started == 0; i++) {
        *started = read_pid(pidfile);
        if (*started == 0)
            sleep_ms(50);
    }
    if (*started == 0)
        fprintf(stderr, "lttng-sessiond wrote no pid to %s\n", pidfile);
    return *started > 0 ? 0 : -1;
}

void lttng_harness_stop(pid_t started)
{
    if (started <= 0)
        return;
    kill(started, SIGTERM);
    for (int i = 0; i < 100 && kill(started, 0) == 0; i++)
        sleep_ms(50);
}

int lttng_harness_run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "`%s` exited with %d\n", cmd, rc);
    return rc;
}
