/*
 * config.c - the INI configuration (see include/broker/config.h). libinih does the parsing; this
 * file routes each key to the module that owns it and turns every problem into one line naming
 * the file, line, key and reason.
 */
#include "broker/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

static const char *const bundled_rules[] = {AMSI_DEFAULT_RULES};
static const char *const installed_rules[] = {AMSI_INSTALLED_RULES};

int broker_config_init(broker_config *cfg)
{
    if (cfg == NULL)
        return ENGINE_EINVAL;
    memset(cfg, 0, sizeof(*cfg));
    engine_config_init(&cfg->engine);
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

int broker_config_load(broker_config *cfg, const char *path, char *err, size_t errlen)
{
    if (cfg == NULL || path == NULL)
        return ENGINE_EINVAL;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        if (errlen > 0)
            snprintf(err, errlen, "%s: %s", path, strerror(e));
        return e == ENOENT ? ENGINE_ENOENT : ENGINE_EIO;
    }
    load_ctx ctx = {.cfg = cfg};
    int line = ini_parse_file(f, on_ini, &ctx);
    fclose(f);
    if (line == 0)
        return 0;
    if (errlen > 0) {
        if (line < 0)
            snprintf(err, errlen, "%s: cannot read", path);
        else if (ctx.rc != 0)
            snprintf(err, errlen, "%s:%d: %s", path, line, ctx.msg);
        else
            snprintf(err, errlen, "%s:%d: syntax error", path, line);
    }
    if (ctx.rc == ENGINE_ENOMEM)
        return ENGINE_ENOMEM;
    return line < 0 ? ENGINE_EIO : ENGINE_ECONFIG;
}
