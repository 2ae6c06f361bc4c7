/*
 * peer_yara.c - the libyara peer of amsibench (see peers.h), and the rule compilation engine_bench
 * shares: full YARA semantics (no fast mode), one YR_SCANNER per thread, a callback that stops at
 * the first matching rule (a detection is a detection).
 */
#include "peers.h"

#include <yara.h>

#include <stdio.h>
#include <stdlib.h>

struct bench__yara {
    YR_RULES *rules;
};

typedef struct yara_worker {
    YR_SCANNER *scanner;
    bool matched;
} yara_worker;

/* Prints errors, and the first five warnings, of a compilation. */
static void on_compiler_message(int level, const char *file, int line, const YR_RULE *rule,
                                const char *message, void *user)
{
    unsigned *warnings = user;
    (void)rule;
    bool error = level == YARA_ERROR_LEVEL_ERROR;
    if (error || (*warnings)++ < 5)
        fprintf(stderr, "libyara: %s:%d: %s: %s\n", file ? file : "rules", line,
                error ? "error" : "warning", message);
}

int bench_yara_compile(const char *path, const char *text, YR_RULES **out)
{
    YR_COMPILER *comp = NULL;
    unsigned warnings = 0;
    *out = NULL;
    if (yr_compiler_create(&comp) != ERROR_SUCCESS)
        return -1;
    yr_compiler_set_callback(comp, on_compiler_message, &warnings);
    int errors = 0;
    if (path != NULL) {
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            fprintf(stderr, "libyara: cannot open %s\n", path);
            errors = 1;
        } else {
            errors = yr_compiler_add_file(comp, f, NULL, path);
            fclose(f);
        }
    } else {
        errors = yr_compiler_add_string(comp, text, NULL);
    }
    int rc = errors == 0 && yr_compiler_get_rules(comp, out) == ERROR_SUCCESS ? 0 : -1;
    yr_compiler_destroy(comp);
    if (warnings > 5)
        fprintf(stderr, "libyara: %u warnings in all\n", warnings);
    return rc;
}

int bench__yara_create(const char *rules, bench__yara **out, char *why, size_t cap)
{
    *out = NULL;
    if (yr_initialize() != ERROR_SUCCESS) {
        snprintf(why, cap, "yr_initialize failed");
        return -1;
    }
    bench__yara *y = calloc(1, sizeof(*y));
    if (y == NULL || bench_yara_compile(rules, NULL, &y->rules) != 0) {
        snprintf(why, cap, "libyara did not compile %s", rules);
        free(y);
        yr_finalize();
        return -1;
    }
    *out = y;
    return 0;
}

void bench__yara_destroy(bench__yara *y)
{
    if (y == NULL)
        return;
    yr_rules_destroy(y->rules);
    free(y);
    yr_finalize();
}

static int on_scan_message(YR_SCAN_CONTEXT *ctx, int message, void *data, void *user)
{
    yara_worker *w = user;
    (void)ctx;
    (void)data;
    if (message != CALLBACK_MSG_RULE_MATCHING)
        return CALLBACK_CONTINUE;
    w->matched = true;
    return CALLBACK_ABORT;
}

void *bench__yara_worker(bench__yara *y)
{
    yara_worker *w = calloc(1, sizeof(*w));
    if (w == NULL || yr_scanner_create(y->rules, &w->scanner) != ERROR_SUCCESS) {
        free(w);
        return NULL;
    }
    yr_scanner_set_callback(w->scanner, on_scan_message, w);
    yr_scanner_set_flags(w->scanner, SCAN_FLAGS_REPORT_RULES_MATCHING);
    return w;
}

void bench__yara_worker_destroy(void *p)
{
    yara_worker *w = p;
    if (w == NULL)
        return;
    yr_scanner_destroy(w->scanner);
    free(w);
}

int bench__yara_scan(void *p, const void *data, size_t len, bool *detected)
{
    yara_worker *w = p;
    w->matched = false;
    int rc = yr_scanner_scan_mem(w->scanner, data, len);
    *detected = w->matched;
    return rc == ERROR_SUCCESS || rc == ERROR_CALLBACK_ERROR ? 0 : -1;
}
