/*
 * server.h - the scan server inside amsid: W I/O-and-scan threads, each with its own epoll set of
 * connections and its own engine scratch, answering AMSI requests on an AF_UNIX SOCK_SEQPACKET
 * socket (DESIGN.md §3, §5). The control socket, signals and reloads are driven by main().
 */
#ifndef BROKER_SERVER_H
#define BROKER_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "broker/config.h"
#include "engine/engine.h"

typedef struct broker_server broker_server;

/* Counters for `amsictl stats`. */
typedef struct broker_stats {
    uint64_t connections; /* accepted since start */
    uint64_t open_connections;
    uint64_t requests; /* frames answered */
    uint64_t scans;
    uint64_t notifications;
    uint64_t detected;
    uint64_t clean;
    uint64_t limits;
    uint64_t bad_requests;
    uint64_t too_large;
    uint64_t busy;
    uint64_t pool_scans; /* handed to the scan pool (large content, containers) */
    uint64_t engine_errors;
    uint64_t sessions_open;
    uint64_t session_matches;
    uint64_t bytes_scanned;
    uint64_t reloads;
    uint64_t cache_hits;      /* answered from the verdict cache */
    uint64_t declined;        /* THROTTLED: over the caller's request limit */
    uint64_t exempt_requests; /* scans and notifications from exempt callers */
    uint64_t reports_sent;    /* declined-request reports handed to the collector */
    uint64_t reports_dropped; /* reports lost (backlog full, collector unreachable) */
    uint64_t reports_pending; /* reports waiting for the collector */
    uint64_t generation;      /* rule set generation, 1 at start */
    /* Scan latency (receive to reply) over the last 4096 requests. */
    uint64_t p50_ns, p90_ns, p99_ns, p999_ns, max_ns;
} broker_stats;

/*
 * Creates the server: listens on listen_fd when it is >= 0 (a socket systemd passed in, already
 * listening), else binds cfg->broker.socket (mode 0666: any local user may scan). Takes a
 * reference to rules. Threads start with broker_server_start(). On failure err says why.
 * Returns 0 or a negative errno.
 */
int broker_server_create(const broker_config *cfg, engine_rules *rules, int listen_fd,
                         broker_server **out, char *err, size_t errlen);

/* Starts the threads. Returns 0 or a negative errno. */
int broker_server_start(broker_server *s);

/*
 * Swaps in a new rule set (the server takes a reference). Requests already running finish on the
 * old set; new ones use the new set. Thread-safe.
 */
void broker_server_swap_rules(broker_server *s, engine_rules *rules);

/* Fills *st. Thread-safe. */
void broker_server_stats(broker_server *s, broker_stats *st);

/*
 * Stops accepting, finishes the requests in flight, closes every connection and joins the threads.
 * Idempotent.
 */
void broker_server_stop(broker_server *s);

/* Stops (if needed) and frees the server; unlinks the socket. Accepts NULL. */
void broker_server_destroy(broker_server *s);

#endif
