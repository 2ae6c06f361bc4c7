/*
 * config.h - the configuration file shared by amsid and amsiscan: one INI file (libinih), plus
 * `--set SECTION.KEY=VALUE` overrides applied after it. Each section is owned by the module it
 * configures; this file routes keys and owns the few that are about files (rules, cache).
 *
 * Sections today: `engine` (engine_config keys, plus `rules` and `cache_dir`). The broker,
 * ratelimit, trace and report sections arrive with their modules; until then they are refused.
 */
#ifndef BROKER_CONFIG_H
#define BROKER_CONFIG_H

#include <stddef.h>

#include "engine/engine.h"

typedef struct broker_config {
    engine_config engine;
    char **rules; /* rule files or directories; empty = the bundled default.yar */
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
