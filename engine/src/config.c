/*
 * config.c - the `engine` section of the configuration: one table lists every key with its type,
 * field, default and bounds; engine_config_init() and engine_config_set() both read it, so a key's
 * default and its parser cannot drift apart. The config reference (amsid.conf) documents the same
 * keys.
 */
#include "engine/engine.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { KEY_BOOL, KEY_SIZE, KEY_U64, KEY_UINT } key_type;

typedef struct config_key {
    const char *name;
    key_type type;
    size_t offset;
    uint64_t def;
    uint64_t min;
    uint64_t max;
} config_key;

#define KEY(name, type, def, min, max)                                                             \
    {                                                                                              \
#name, type, offsetof(engine_config, name), def, min, max                                  \
    }

static const config_key config_keys[] = {
    KEY(narrow_utf16, KEY_BOOL, 1, 0, 1),
    KEY(normalize, KEY_BOOL, 1, 0, 1),
    KEY(decode_base64, KEY_BOOL, 1, 0, 1),
    KEY(min_base64, KEY_SIZE, 32, 8, 1u << 20),
    KEY(max_decode, KEY_SIZE, 4u << 20, 1024, 1u << 30),
    KEY(max_decode_total, KEY_SIZE, 16u << 20, 1024, 1u << 30),
    KEY(max_decode_depth, KEY_UINT, 3, 0, 16),
    KEY(scan_archives, KEY_BOOL, 0, 0, 1),
    KEY(scan_packages, KEY_BOOL, 0, 0, 1),
    KEY(scan_office, KEY_BOOL, 1, 0, 1),
    KEY(max_compound_size, KEY_U64, 8388608, 0, UINT64_MAX),
    KEY(max_recursion, KEY_UINT, 16, 0, 64),
    KEY(max_files, KEY_UINT, 1000, 1, UINT_MAX),
    KEY(max_scan_size, KEY_U64, 104857600, 1, UINT64_MAX),
    KEY(max_ratio, KEY_UINT, 250, 1, UINT_MAX),
    KEY(max_scan_time_ms, KEY_UINT, 30000, 1, UINT_MAX),
};

#undef KEY

/* Stores v into the field a key describes. Can't fail (v is within the key's bounds). */
static void key_store(engine_config *cfg, const config_key *k, uint64_t v)
{
    char *field = (char *)cfg + k->offset;
    switch (k->type) {
    case KEY_BOOL:
        *(bool *)(void *)field = v != 0;
        break;
    case KEY_SIZE:
        *(size_t *)(void *)field = (size_t)v;
        break;
    case KEY_U64:
        *(uint64_t *)(void *)field = v;
        break;
    case KEY_UINT:
        *(unsigned *)(void *)field = (unsigned)v;
        break;
    }
}

void engine_config_init(engine_config *cfg)
{
    if (cfg == NULL)
        return;
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < sizeof(config_keys) / sizeof(config_keys[0]); i++)
        key_store(cfg, &config_keys[i], config_keys[i].def);
}

int engine_config_parse_bool(const char *s, uint64_t *out)
{
    static const char *const yes[] = {"1", "yes", "true", "on"};
    static const char *const no[] = {"0", "no", "false", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

int engine_config_parse_size(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift != 0) {
        end++;
        if (*end == 'i' && (end[1] == 'B' || end[1] == 'b'))
            end += 2;
        else if (*end == 'B' || *end == 'b')
            end++;
        if (v > (UINT64_MAX >> shift))
            return -1;
        v <<= shift;
    }
    if (*end != '\0')
        return -1;
    *out = v;
    return 0;
}

int engine_config_set(engine_config *cfg, const char *key, const char *value, char *err,
                      size_t errlen)
{
    if (cfg == NULL || key == NULL || value == NULL)
        return ENGINE_EINVAL;
    for (size_t i = 0; i < sizeof(config_keys) / sizeof(config_keys[0]); i++) {
        const config_key *k = &config_keys[i];
        if (strcmp(k->name, key) != 0)
            continue;
        uint64_t v;
        int rc = k->type == KEY_BOOL ? engine_config_parse_bool(value, &v)
                                     : engine_config_parse_size(value, &v);
        if (rc != 0) {
            if (errlen > 0)
                snprintf(err, errlen, "engine.%s: '%s' is not %s", key, value,
                         k->type == KEY_BOOL ? "a boolean (0/1, yes/no, true/false, on/off)"
                                             : "a non-negative integer");
            return ENGINE_ECONFIG;
        }
        if (v < k->min || v > k->max) {
            if (errlen > 0)
                snprintf(err, errlen,
                         "engine.%s: %" PRIu64 " is out of range [%" PRIu64 "..%" PRIu64 "]", key,
                         v, k->min, k->max);
            return ENGINE_ECONFIG;
        }
        key_store(cfg, k, v);
        return 0;
    }
    if (errlen > 0)
        snprintf(err, errlen, "engine.%s: unknown key", key);
    return ENGINE_ECONFIG;
}
