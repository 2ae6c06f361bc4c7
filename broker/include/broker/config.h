/*
 * config.h - the configuration file shared by amsid and amsiscan: one INI file (libinih), plus
 * `--set SECTION.KEY=VALUE` overrides applied after it. Each section is owned by the module it
 * configures; this file routes keys and owns the few that are about files (rules, cache).
 *
 * Sections today: `broker` (broker_settings), `engine` (engine_config keys, plus `rules` and
 * `cache_dir`), `ratelimit` (ratelimit_config), `report` (ratelimit_report_config) and `trace`
 * (etw_config).
 */
#ifndef BROKER_CONFIG_H
#define BROKER_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "etw/etw.h"
#include "ratelimit/ratelimit.h"
#include "ratelimit/report.h"

/* Section `broker`. */
typedef struct broker_settings {
    char *socket;               /* scan socket path */
    char *control_socket;       /* control socket path */
    char *control_group;        /* group allowed on the control socket besides root; NULL = root */
    unsigned threads;           /* I/O-and-scan threads; 0 = one per core */
    unsigned pool_threads;      /* scan pool threads for large content; 0 = one per core */
    unsigned pool_nice;         /* nice value of the pool threads (small scans come first) */
    unsigned spin_us;           /* an I/O thread polls this long for the next frame; 0 = never */
    unsigned io_slice_us;       /* scheduler slice the I/O threads ask for; 0 = the default */
    unsigned pool_slice_us;     /* scheduler slice the pool threads ask for; 0 = the default */
    unsigned queue_depth;       /* pool queue slots; a full queue answers BUSY */
    size_t inline_max;          /* largest content accepted inline in a frame */
    uint64_t max_request_size;  /* largest content accepted at all (memfd) */
    size_t pool_min;            /* content at least this large goes to the pool */
    uint64_t session_max_bytes; /* script bytes kept per session stream */
    unsigned session_idle_s;    /* a session unused this long is closed */
    unsigned sessions_per_conn;
    unsigned cache_entries; /* verdict cache size; 0 = off */
} broker_settings;

typedef struct broker_config {
    broker_settings broker;
    engine_config engine;
    ratelimit_config ratelimit;     /* section `ratelimit` */
    ratelimit_report_config report; /* section `report` */
    etw_config trace;               /* section `trace` */
    char **rules;                   /* rule files or directories; empty = the bundled default.yar */
    size_t nrules;
    char *cache_dir; /* serialized database cache; NULL = no cache */
} broker_config;

/* Fills cfg with the defaults. Returns 0 or ENGINE_ENOMEM. Release with broker_config_cleanup. */
int broker_config_init(broker_config *cfg);

/*
 * Reads an INI file into cfg (keys it sets override earlier values). On failure err holds
 * "FILE:LINE: reason". Returns 0, ENGINE_ENOENT/ENGINE_EIO (cannot read), ENGINE_ECONFIG or
 * ENGINE_ENOMEM.
 */
int broker_config_load(broker_config *cfg, const char *path, char *err, size_t errlen);

/*
 * Applies one override "SECTION.KEY=VALUE". Returns 0, ENGINE_ECONFIG (with err) or
 * ENGINE_ENOMEM.
 */
int broker_config_set(broker_config *cfg, const char *assignment, char *err, size_t errlen);

/* Sets one key of one section. Same returns as broker_config_set(). */
int broker_config_set_key(broker_config *cfg, const char *section, const char *key,
                          const char *value, char *err, size_t errlen);

/* The rule paths to compile: cfg->rules, or the bundled rules when none is configured. */
const char *const *broker_config_rule_paths(const broker_config *cfg, size_t *n);

/* Frees what cfg holds. Accepts NULL. */
void broker_config_cleanup(broker_config *cfg);

#endif
