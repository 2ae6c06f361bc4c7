/*
 * config.c - the INI configuration (see include/broker/config.h). libinih does the parsing; this
 * file routes each key to the module that owns it and turns every problem into one line naming
 * the file, line, key and reason.
 */
#include "broker/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

static const char *const bundled_rules[] = {AMSI_DEFAULT_RULES};
static const char *const installed_rules[] = {AMSI_INSTALLED_RULES};

typedef enum { BKEY_STRING, BKEY_UINT, BKEY_SIZE, BKEY_U64 } bkey_type;

/* Section `broker`: every key, its field, default and bounds (strings: default text). */
typedef struct broker_key {
    const char *name;
    bkey_type type;
    size_t offset;
    const char *def_text;
    uint64_t def, min, max;
} broker_key;

#define BKEY(name, type, text, def, min, max)                                                      \
    {                                                                                              \
#name, type, offsetof(broker_settings, name), text, def, min, max                          \
    }

static const broker_key broker_keys[] = {
    BKEY(socket, BKEY_STRING, "/run/amsi-broker/scan.sock", 0, 0, 0),
    BKEY(control_socket, BKEY_STRING, "/run/amsi-broker/control.sock", 0, 0, 0),
    BKEY(control_group, BKEY_STRING, "", 0, 0, 0),
    BKEY(threads, BKEY_UINT, NULL, 0, 0, 256),
    BKEY(pool_threads, BKEY_UINT, NULL, 0, 0, 256),
    BKEY(pool_nice, BKEY_UINT, NULL, 0, 0, 19),
    BKEY(spin_us, BKEY_UINT, NULL, 50, 0, 1000),
    BKEY(io_slice_us, BKEY_UINT, NULL, 100, 0, 100000),
    BKEY(pool_slice_us, BKEY_UINT, NULL, 20000, 0, 100000),
    BKEY(queue_depth, BKEY_UINT, NULL, 1024, 2, 1u << 20),
    BKEY(inline_max, BKEY_SIZE, NULL, 1u << 20, 4096, 64u << 20),
    BKEY(max_request_size, BKEY_U64, NULL, 256u << 20, 4096, 1ull << 40),
    BKEY(pool_min, BKEY_SIZE, NULL, 256u << 10, 0, 1ull << 40),
    BKEY(session_max_bytes, BKEY_U64, NULL, 16u << 20, 0, 1ull << 40),
    BKEY(session_idle_s, BKEY_UINT, NULL, 300, 1, 86400 * 7),
    BKEY(sessions_per_conn, BKEY_UINT, NULL, 64, 1, 65536),
    BKEY(cache_entries, BKEY_UINT, NULL, 4096, 0, 1u << 24),
};

#undef BKEY

/* Stores a value into the field a key names. Returns 0 or ENGINE_ENOMEM (strings). */
static int bkey_store(broker_settings *b, const broker_key *k, const char *text, uint64_t v)
{
    char *field = (char *)b + k->offset;
    switch (k->type) {
    case BKEY_STRING: {
        char *copy = text[0] ? strdup(text) : NULL;
        if (text[0] && copy == NULL)
            return ENGINE_ENOMEM;
        free(*(char **)(void *)field);
        *(char **)(void *)field = copy;
        return 0;
    }
    case BKEY_UINT:
        *(unsigned *)(void *)field = (unsigned)v;
        return 0;
    case BKEY_SIZE:
        *(size_t *)(void *)field = (size_t)v;
        return 0;
    case BKEY_U64:
        *(uint64_t *)(void *)field = v;
        return 0;
    }
    return 0;
}

static int set_broker_key(broker_settings *b, const char *key, const char *value, char *err,
                          size_t errlen)
{
    for (size_t i = 0; i < sizeof(broker_keys) / sizeof(broker_keys[0]); i++) {
        const broker_key *k = &broker_keys[i];
        if (strcmp(k->name, key) != 0)
            continue;
        uint64_t v = 0;
        if (k->type != BKEY_STRING) {
            if (engine_config_parse_size(value, &v) != 0) {
                if (errlen > 0)
                    snprintf(err, errlen, "broker.%s: '%s' is not a non-negative integer", key,
                             value);
                return ENGINE_ECONFIG;
            }
            if (v < k->min || v > k->max) {
                if (errlen > 0)
                    snprintf(err, errlen,
                             "broker.%s: %" PRIu64 " is out of range [%" PRIu64 "..%" PRIu64 "]",
                             key, v, k->min, k->max);
                return ENGINE_ECONFIG;
            }
        } else if ((strcmp(key, "socket") == 0 || strcmp(key, "control_socket") == 0) &&
                   (value[0] == '\0' || strlen(value) >= 108)) {
            if (errlen > 0)
                snprintf(err, errlen, "broker.%s: a socket path of 1 to 107 bytes is needed", key);
            return ENGINE_ECONFIG;
        }
        return bkey_store(b, k, value, v);
    }
    if (errlen > 0)
        snprintf(err, errlen, "broker.%s: unknown key", key);
    return ENGINE_ECONFIG;
}

int broker_config_init(broker_config *cfg)
{
    if (cfg == NULL)
        return ENGINE_EINVAL;
    memset(cfg, 0, sizeof(*cfg));
    engine_config_init(&cfg->engine);
    ratelimit_config_init(&cfg->ratelimit);
    etw_config_init(&cfg->trace);
    if (ratelimit_report_config_init(&cfg->report) != 0) {
        broker_config_cleanup(cfg);
        return ENGINE_ENOMEM;
    }
    for (size_t i = 0; i < sizeof(broker_keys) / sizeof(broker_keys[0]); i++) {
        const broker_key *k = &broker_keys[i];
        if (bkey_store(&cfg->broker, k, k->def_text ? k->def_text : "", k->def) != 0) {
            broker_config_cleanup(cfg);
            return ENGINE_ENOMEM;
        }
    }
    return 0;
}

void broker_config_cleanup(broker_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nrules; i++)
        free(cfg->rules[i]);
    free(cfg->rules);
    free(cfg->cache_dir);
    free(cfg->broker.socket);
    free(cfg->broker.control_socket);
    free(cfg->broker.control_group);
    ratelimit_config_cleanup(&cfg->ratelimit);
    ratelimit_report_config_cleanup(&cfg->report);
    etw_config_cleanup(&cfg->trace);
    memset(cfg, 0, sizeof(*cfg));
}

const char *const *broker_config_rule_paths(const broker_config *cfg, size_t *n)
{
    if (cfg->nrules > 0) {
        *n = cfg->nrules;
        return (const char *const *)cfg->rules;
    }
    *n = 1;
    /* A build tree runs its own bundled rules; an installed copy runs the installed ones. */
    return access(bundled_rules[0], R_OK) == 0 ? bundled_rules : installed_rules;
}

/* Replaces the rule list with the comma-separated paths in value. */
static int set_rules(broker_config *cfg, const char *value)
{
    for (size_t i = 0; i < cfg->nrules; i++)
        free(cfg->rules[i]);
    cfg->nrules = 0;
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *last = end;
        while (last > p && last[-1] == ' ')
            last--;
        if (last > p) {
            char **r = realloc(cfg->rules, (cfg->nrules + 1) * sizeof(char *));
            if (r == NULL)
                return ENGINE_ENOMEM;
            cfg->rules = r;
            if ((cfg->rules[cfg->nrules] = strndup(p, (size_t)(last - p))) == NULL)
                return ENGINE_ENOMEM;
            cfg->nrules++;
        }
        p = end;
    }
    return 0;
}

/*
 * Turns a module's answer to one key (0, -EINVAL with its reason in err, -ENOMEM) into this
 * file's codes, naming the section in the message.
 */
static int module_key(const char *section, const char *key, int rc, char *err, size_t errlen)
{
    if (rc == 0)
        return 0;
    if (rc == -ENOMEM)
        return ENGINE_ENOMEM;
    if (errlen > 0) {
        char why[256];
        snprintf(why, sizeof(why), "%s", err);
        size_t sl = strlen(section);
        if (strncmp(why, section, sl) == 0 && why[sl] == '.')
            snprintf(err, errlen, "%s", why); /* the module named section and key itself */
        else if (strncmp(why, key, strlen(key)) == 0 && why[strlen(key)] == ':')
            snprintf(err, errlen, "%s.%s", section, why);
        else
            snprintf(err, errlen, "%s.%s: %s", section, key, why);
    }
    return ENGINE_ECONFIG;
}

int broker_config_set_key(broker_config *cfg, const char *section, const char *key,
                          const char *value, char *err, size_t errlen)
{
    if (cfg == NULL || section == NULL || key == NULL || value == NULL)
        return ENGINE_EINVAL;
    if (strcmp(section, "engine") == 0) {
        if (strcmp(key, "rules") == 0)
            return set_rules(cfg, value);
        if (strcmp(key, "cache_dir") == 0) {
            char *dir = value[0] ? strdup(value) : NULL;
            if (value[0] && dir == NULL)
                return ENGINE_ENOMEM;
            free(cfg->cache_dir);
            cfg->cache_dir = dir;
            return 0;
        }
        return engine_config_set(&cfg->engine, key, value, err, errlen);
    }
    if (strcmp(section, "broker") == 0)
        return set_broker_key(&cfg->broker, key, value, err, errlen);
    if (strcmp(section, "ratelimit") == 0)
        return module_key("ratelimit", key,
                          ratelimit_config_set(&cfg->ratelimit, key, value, err, errlen), err,
                          errlen);
    if (strcmp(section, "trace") == 0)
        return module_key("trace", key, etw_config_set(&cfg->trace, key, value, err, errlen), err,
                          errlen);
    if (strcmp(section, "report") == 0)
        return module_key("report", key,
                          ratelimit_report_config_set(&cfg->report, key, value, err, errlen), err,
                          errlen);
    if (errlen > 0)
        snprintf(err, errlen, "%s.%s: unknown section '%s'", section, key, section);
    return ENGINE_ECONFIG;
}

int broker_config_set(broker_config *cfg, const char *assignment, char *err, size_t errlen)
{
    if (cfg == NULL || assignment == NULL)
        return ENGINE_EINVAL;
    const char *dot = strchr(assignment, '.');
    const char *eq = strchr(assignment, '=');
    if (dot == NULL || eq == NULL || dot > eq || dot == assignment || eq == dot + 1) {
        if (errlen > 0)
            snprintf(err, errlen, "'%s': expected SECTION.KEY=VALUE", assignment);
        return ENGINE_ECONFIG;
    }
    char section[64], key[128];
    size_t slen = (size_t)(dot - assignment), klen = (size_t)(eq - dot - 1);
    if (slen >= sizeof(section) || klen >= sizeof(key)) {
        if (errlen > 0)
            snprintf(err, errlen, "'%s': section or key too long", assignment);
        return ENGINE_ECONFIG;
    }
    memcpy(section, assignment, slen);
    section[slen] = '\0';
    memcpy(key, dot + 1, klen);
    key[klen] = '\0';
    return broker_config_set_key(cfg, section, key, eq + 1, err, errlen);
}

typedef struct load_ctx {
    broker_config *cfg;
    char msg[512];
    int rc;
} load_ctx;

static int on_ini(void *user, const char *section, const char *key, const char *value)
{
    load_ctx *ctx = user;
    if (ctx->rc != 0)
        return 0;
    ctx->rc = broker_config_set_key(ctx->cfg, section, key, value, ctx->msg, sizeof(ctx->msg));
    return ctx->rc == 0;
}

/* Reads a whole file. Returns 0 or an ENGINE_E* code with err filled. */
static int read_text(const char *path, char **out, size_t *out_len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        if (errlen > 0)
            snprintf(err, errlen, "%s: %s", path, strerror(e));
        return e == ENOENT ? ENGINE_ENOENT : ENGINE_EIO;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int rc = buf ? 0 : ENGINE_ENOMEM;
    while (rc == 0) {
        if (n + 1 == cap) {
            char *p = cap < (16u << 20) ? realloc(buf, cap * 2) : NULL;
            if (p == NULL) {
                rc = cap < (16u << 20) ? ENGINE_ENOMEM : ENGINE_ECONFIG;
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (rc == 0 && ferror(f)) {
        int e = errno;
        if (errlen > 0)
            snprintf(err, errlen, "%s: %s", path, strerror(e ? e : EIO));
        rc = ENGINE_EIO;
    } else if (rc != 0 && errlen > 0) {
        snprintf(err, errlen, "%s: %s", path,
                 rc == ENGINE_ENOMEM ? "out of memory" : "larger than 16 MiB");
    }
    fclose(f);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

/*
 * Finds the first line libinih would misread or only half report: a line longer than its fixed
 * buffer (it would split it), or one that is neither blank, a comment, a [section], a
 * continuation nor a key = value. Returns a pointer to the start of that line (and its number and
 * reason), or NULL when every line is fine. Parsing only the text before it leaves libinih no
 * syntax errors to find, so the line it reports is the line of our handler's reason.
 */
static char *first_bad_line(char *text, unsigned *bad_line, const char **why)
{
    unsigned line = 1;
    for (char *p = text; *p; line++) {
        char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *q = p;
        while (q < p + len && (*q == ' ' || *q == '\t' || *q == '\r'))
            q++;
        *why = NULL;
        if (len >= INI_MAX_LINE - 1)
            *why = "line too long";
        else if (q == p + len || *q == ';' || *q == '#' || q > p)
            *why = NULL; /* blank, comment, or a continuation of the previous value */
        else if (*q == '[' && memchr(q, ']', (size_t)(p + len - q)) == NULL)
            *why = "syntax error: section header without ']'";
        else if (*q != '[' && memchr(q, '=', (size_t)(p + len - q)) == NULL &&
                 memchr(q, ':', (size_t)(p + len - q)) == NULL)
            *why = "syntax error: expected KEY = VALUE";
        if (*why) {
            *bad_line = line;
            return p;
        }
        p = end ? end + 1 : p + len;
    }
    return NULL;
}

int broker_config_load(broker_config *cfg, const char *path, char *err, size_t errlen)
{
    if (cfg == NULL || path == NULL)
        return ENGINE_EINVAL;
    char *text = NULL;
    size_t len = 0;
    int rc = read_text(path, &text, &len, err, errlen);
    if (rc != 0)
        return rc;
    if (strlen(text) != len) {
        if (errlen > 0)
            snprintf(err, errlen, "%s: contains a NUL byte", path);
        free(text);
        return ENGINE_ECONFIG;
    }
    unsigned bad_line = 0;
    const char *why = NULL;
    char *bad = first_bad_line(text, &bad_line, &why);
    if (bad != NULL)
        *bad = '\0';
    load_ctx ctx = {.cfg = cfg};
    int line = ini_parse_string(text, on_ini, &ctx);
    free(text);
    if (line == 0 && bad == NULL)
        return 0;
    if (errlen > 0) {
        if (ctx.rc != 0)
            snprintf(err, errlen, "%s:%d: %s", path, line, ctx.msg);
        else if (bad != NULL)
            snprintf(err, errlen, "%s:%u: %s", path, bad_line, why);
        else
            snprintf(err, errlen, "%s:%d: syntax error", path, line);
    }
    return ctx.rc == ENGINE_ENOMEM ? ENGINE_ENOMEM : ENGINE_ECONFIG;
}
