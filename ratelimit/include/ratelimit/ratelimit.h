/*
 * ratelimit.h - per-process request limits for the broker (DESIGN.md §4b): a token bucket per
 * caller in GCRA form, a fixed-size table of callers, and the exemption list ("continuous
 * integration": trusted executables that are never declined and still scanned).
 *
 * A caller is a verified process identity (pid and start time, read from the kernel), never a
 * declared application name. Each caller has one 64-bit "theoretical arrival time" (TAT) per class
 * of request; a decision is one load and one compare-and-swap on it, with no lock. A caller that
 * sent nothing for a while has a TAT in the past, which is exactly the state of a caller never
 * seen, so its table entry counts as free and is reused: the table never grows and needs no
 * sweeper.
 *
 * Thread safety: ratelimit_decide(), ratelimit_attach() and ratelimit_detach() may be called from
 * any number of threads at once on one table. Configuration functions are not thread-safe.
 */
#ifndef RATELIMIT_RATELIMIT_H
#define RATELIMIT_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The classes of request, each with its own limit. */
typedef enum ratelimit_class {
    RATELIMIT_SCAN = 0,   /* AmsiScanBuffer, AmsiScanString */
    RATELIMIT_NOTIFY = 1, /* AmsiNotifyOperation */
    RATELIMIT_NCLASSES
} ratelimit_class;

/* What a declined client is told (section `ratelimit`, key `action`). */
typedef enum ratelimit_action {
    RATELIMIT_ALLOW = 0, /* fail open: AMSI_RESULT_NOT_DETECTED with the THROTTLED HRESULT */
    RATELIMIT_BLOCK = 1  /* fail closed: a blocked-by-admin result */
} ratelimit_action;

/* One exemption: an executable path, or a directory prefix ending in '/', optionally a uid. */
typedef struct ratelimit_exemption {
    char *path;
    bool prefix;  /* path ends in '/': every executable below it */
    bool any_uid; /* no ":uid" given */
    uid_t uid;
} ratelimit_exemption;

/* Section `ratelimit`. */
typedef struct ratelimit_config {
    bool enabled;
    uint32_t max_requests; /* scans per interval_ms per process */
    uint32_t interval_ms;
    uint32_t burst;               /* extra scans a quiet process may send at once */
    uint32_t notify_max_requests; /* notifications per interval_ms per process */
    uint32_t notify_burst;
    ratelimit_exemption *exempt;
    size_t nexempt;
    ratelimit_action action;
    uint32_t table_size; /* tracked processes */
} ratelimit_config;

/* Fills cfg with the documented defaults. Can't fail. Release with ratelimit_config_cleanup(). */
void ratelimit_config_init(ratelimit_config *cfg);

/*
 * Sets one key of section `ratelimit` from its text. Returns 0, -EINVAL (unknown key or bad
 * value; err says which and why) or -ENOMEM.
 */
int ratelimit_config_set(ratelimit_config *cfg, const char *key, const char *value, char *err,
                         size_t errlen);

/* Frees what cfg holds. Accepts NULL. */
void ratelimit_config_cleanup(ratelimit_config *cfg);

/*
 * True when a caller with this verified executable path and uid is on the exemption list. exe ""
 * (unknown, e.g. the process already exited) never matches. Can't fail.
 */
bool ratelimit_exempt(const ratelimit_config *cfg, const char *exe, uid_t uid);

/* The verified identity of a caller, as the table keys it. */
typedef struct ratelimit_key {
    pid_t pid;
    uint64_t start_time; /* process start time (clock ticks since boot); 0 when unknown */
} ratelimit_key;

/*
 * A caller's place in the table, kept by the broker per connection (several connections of one
 * process share one entry). Opaque; zero-initialise, then ratelimit_attach().
 */
typedef struct ratelimit_handle {
    uint64_t tag;  /* the caller's key, hashed; never 0 */
    uint32_t slot; /* entry index, or the overflow entry */
} ratelimit_handle;

typedef struct ratelimit_table ratelimit_table;

/*
 * Allocates a table of cfg->table_size entries (the limits are copied). Returns 0, -EINVAL or
 * -ENOMEM. Free with ratelimit_table_destroy().
 */
int ratelimit_table_create(const ratelimit_config *cfg, ratelimit_table **out);

/* Frees the table. Accepts NULL. */
void ratelimit_table_destroy(ratelimit_table *t);

/*
 * Finds or claims the entry of a caller and fills *h. When every entry the caller may use belongs
 * to another caller that is still in debt, the caller shares the overflow entry (one bucket with
 * the same limits, shared by every caller that found no room) and the function returns false;
 * otherwise true. now_ns is a monotonic clock in nanoseconds. Can't fail.
 */
bool ratelimit_attach(ratelimit_table *t, const ratelimit_key *key, uint64_t now_ns,
                      ratelimit_handle *h);

/*
 * Forgets a caller whose process has exited: its entry is free at once rather than when its time
 * passes. Must not be called for a process that may still send (a connection closing is not
 * enough: the process could reconnect to reset its bucket). Can't fail.
 */
void ratelimit_detach(ratelimit_table *t, const ratelimit_handle *h);

/*
 * Decides one request of class cls at time now_ns: true = accepted, false = declined, with
 * *retry_after_ns (may be NULL) the wait until a request of this class would be accepted. One
 * compare-and-swap on the caller's entry; re-attaches the caller when its entry was reused by
 * another process after its time had passed, and a caller on the overflow entry each time (so it
 * leaves the overflow entry as soon as there is room). Can't fail.
 */
bool ratelimit_decide(ratelimit_table *t, ratelimit_handle *h, const ratelimit_key *key,
                      ratelimit_class cls, uint64_t now_ns, uint64_t *retry_after_ns);

/* Counters of a table. */
typedef struct ratelimit_stats {
    uint64_t overflowed; /* decisions taken on the shared overflow entry (the table was full) */
    uint64_t declined[RATELIMIT_NCLASSES];
} ratelimit_stats;

/* Fills *st. Thread-safe. */
void ratelimit_table_stats(ratelimit_table *t, ratelimit_stats *st);

/* "2000 per 1000 ms, burst 200": the limit of a class, for reports. Can't fail. */
void ratelimit_describe(const ratelimit_config *cfg, ratelimit_class cls, char *buf, size_t len);

#endif
