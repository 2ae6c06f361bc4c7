/*
 * report.h - declined-request reports to the administration server (DESIGN.md §4b): for each
 * process declined during a window, one RFC 5424 syslog message with structured data (SD-ID
 * `amsiDeclined@32473` by default: pid, uid, exe, app, count, first, last, limit), never one
 * message per declined request. Sent over UDP, TCP (RFC 6587 octet counting, reconnecting, with a
 * bounded backlog; what had to be dropped is counted and reported in the next message) or a local
 * AF_UNIX socket. The pending window is flushed when the reporter stops.
 *
 * A window holds at most max(16, min(limits->table_size, 16384)) processes; when it is full, the
 * processes that find no room are counted together in one aggregate entry, reported as pid="0",
 * uid="", exe="*", app="*". Params besides the eight above: `scans` and `notifications` (the count
 * by class) always, `dropped` (messages lost since the last one delivered) when not 0. `limit` is
 * ratelimit_describe() of each class declined, joined with "; " when both were.
 *
 * Thread safety: ratelimit_report_declined() and ratelimit_report_declined_at() may be called
 * from any number of threads at once, and ratelimit_report_stats_get() from any thread;
 * create/start/stop/destroy from one thread.
 */
#ifndef RATELIMIT_REPORT_H
#define RATELIMIT_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ratelimit/ratelimit.h"

/* Section `report`. */
typedef struct ratelimit_report_config {
    char *syslog;      /* "udp://HOST:PORT", "tcp://HOST:PORT", "unix:PATH"; NULL = off */
    uint32_t window_s; /* aggregation window, seconds */
    int severity;      /* RFC 5424 severity 0..7; default 4 (warning) */
    int facility;      /* RFC 5424 facility 0..23; default 3 (daemon) */
    char *sd_id;       /* structured data id; default "amsiDeclined@32473" */
    uint32_t backlog;  /* messages kept while the collector is unreachable */
} ratelimit_report_config;

/* Fills cfg with the defaults. Returns 0 or -ENOMEM. Release with ratelimit_report_config_cleanup.
 */
int ratelimit_report_config_init(ratelimit_report_config *cfg);

/*
 * Sets one key of section `report` from its text (severity and facility accept a number or a
 * name: "warning", "crit", "daemon", "local0", ...). Returns 0, -EINVAL (err says why) or -ENOMEM.
 */
int ratelimit_report_config_set(ratelimit_report_config *cfg, const char *key, const char *value,
                                char *err, size_t errlen);

/* Frees what cfg holds. Accepts NULL. */
void ratelimit_report_config_cleanup(ratelimit_report_config *cfg);

/* A declined caller, as the report names it. Strings need not outlive the call. */
typedef struct ratelimit_caller {
    pid_t pid;
    uid_t uid;
    uint64_t start_time; /* with pid, tells two processes that reused one pid apart */
    const char *exe;     /* verified executable path; "" when unknown */
    const char *app;     /* declared application name (not NUL-terminated), reported only */
    size_t app_len;
} ratelimit_caller;

typedef struct ratelimit_report ratelimit_report;

/*
 * Creates a reporter for cfg (copied); limits names the limit in force in each message and sizes
 * the window's table (only its numbers are used, not kept). A HOST name is resolved here, once.
 * Does not connect yet. With no destination (cfg->syslog NULL or "") the reporter is off: every
 * function works and does nothing. Returns 0, -EINVAL (bad value or destination, unresolvable
 * host; err says why) or -ENOMEM; *out is NULL on failure.
 */
int ratelimit_report_create(const ratelimit_report_config *cfg, const ratelimit_config *limits,
                            ratelimit_report **out, char *err, size_t errlen);

/*
 * Starts the sender thread (the first window starts now). Returns 0, -EALREADY (running), -EINVAL
 * (r NULL) or the negative errno of pthread_create(). May be called again after stop().
 */
int ratelimit_report_start(ratelimit_report *r);

/*
 * Counts one declined request of class cls from a caller into the current window. Cheap: a short
 * critical section, no system call, no allocation after a caller's first decline in a window.
 * Can't fail (a caller that finds the window's table full is counted in an aggregate entry).
 */
void ratelimit_report_declined(ratelimit_report *r, const ratelimit_caller *who,
                               ratelimit_class cls);

/*
 * Same, with the time of the decline given as now_ns from CLOCK_MONOTONIC (the time the broker
 * already read for ratelimit_decide()), which saves a clock read on the hot path. Times are
 * converted to wall-clock time when the message is formatted.
 */
void ratelimit_report_declined_at(ratelimit_report *r, const ratelimit_caller *who,
                                  ratelimit_class cls, uint64_t now_ns);

/* Counters of the reporter. */
typedef struct ratelimit_report_stats {
    uint64_t sent;    /* messages handed to the collector */
    uint64_t dropped; /* messages lost (backlog full, or UDP send failed) */
    uint64_t pending; /* messages waiting in the backlog */
} ratelimit_report_stats;

/* Fills *st (all zero for a NULL r). Thread-safe. Can't fail. */
void ratelimit_report_stats_get(ratelimit_report *r, ratelimit_report_stats *st);

/*
 * Joins the sender thread, ends the current window at once and sends its messages and the
 * backlog (best effort: the final flush has 3 s, and a connect or write in progress first ends
 * within 2 s, so a collector that does not answer cannot make it hang); what could not be sent
 * stays counted in `pending`. Also flushes declines counted before any start(). Accepts NULL.
 */
void ratelimit_report_stop(ratelimit_report *r);

/*
 * Stops (unless stopped since the last start) and frees. Messages still pending, and declines
 * counted after the last stop(), are lost. Accepts NULL.
 */
void ratelimit_report_destroy(ratelimit_report *r);

#endif
