/*
 * test_config.c - unit tests for broker/src/config.c: broker_config_init, _load, _set, _set_key,
 * _rule_paths and _cleanup. Each INI file is written by the test to a fresh mkstemp() file under
 * /tmp and removed (and proven gone) before the test ends. The tests check that `[engine]` keys
 * reach the engine configuration, that `rules` splits on commas and trims spaces, that every
 * problem comes back as ENGINE_ECONFIG (or ENGINE_ENOENT for a missing file) with a message of the
 * form "FILE:LINE: section.key: reason", that malformed `--set` overrides are refused without
 * touching the configuration, and that cleanup frees everything and may be repeated. A run under
 * AddressSanitizer/LeakSanitizer shows that nothing leaks.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/config.h"

/* A temporary INI file. */
typedef struct temp_ini {
    char path[64];
} temp_ini;

/* Writes text to a new temporary file under /tmp; remove it with temp_ini_remove(). */
static void temp_ini_write(temp_ini *t, const char *text)
{
    snprintf(t->path, sizeof(t->path), "/tmp/amsi-test-config-XXXXXX");
    int fd = mkstemp(t->path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* Removes a temporary file and proves it is gone. */
static void temp_ini_remove(const temp_ini *t)
{
    assert_int_equal(unlink(t->path), 0);
    assert_int_equal(access(t->path, F_OK), -1);
    assert_int_equal(errno, ENOENT);
}

/* Asserts that a configuration holds nothing (what init and cleanup leave besides defaults). */
static void config_check_empty(const broker_config *cfg)
{
    assert_null(cfg->rules);
    assert_int_equal(cfg->nrules, 0);
    assert_null(cfg->cache_dir);
}

/* Asserts that haystack contains needle, showing both when it does not. */
static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fail_msg("'%s' does not contain '%s'", haystack, needle);
}

/* Asserts that s ends with suffix. */
static void assert_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    if (n < m || strcmp(s + n - m, suffix) != 0)
        fail_msg("'%s' does not end with '%s'", s, suffix);
}

/* Loads text from a temporary file into cfg; returns the code and leaves the message in err. */
static int load_text(broker_config *cfg, const char *text, temp_ini *t, char *err, size_t errlen)
{
    temp_ini_write(t, text);
    int rc = broker_config_load(cfg, t->path, err, errlen);
    temp_ini_remove(t);
    return rc;
}

/* Loads text that must fail with ENGINE_ECONFIG; checks err starts with "FILE:LINE: ". */
static void load_bad(const char *text, unsigned line, char *err, size_t errlen)
{
    broker_config cfg;
    temp_ini t;
    char prefix[96];

    assert_int_equal(broker_config_init(&cfg), 0);
    err[0] = '\0';
    int rc = load_text(&cfg, text, &t, err, errlen);
    broker_config_cleanup(&cfg);
    if (rc != ENGINE_ECONFIG)
        fail_msg("load gave %d (%s), expected ENGINE_ECONFIG; err: %s", rc, engine_err_name(rc),
                 err);
    snprintf(prefix, sizeof(prefix), "%s:%u: ", t.path, line);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("'%s' does not start with '%s'", err, prefix);
}

/* ---------------------------------------------------------------------------------------------
 * init and cleanup
 * ------------------------------------------------------------------------------------------- */

/* init gives the engine defaults and no rules or cache; NULL is ENGINE_EINVAL. */
static void test_init_defaults(void **state)
{
    (void)state;
    broker_config cfg;
    engine_config want;

    memset(&cfg, 0xA5, sizeof(cfg));
    assert_int_equal(broker_config_init(&cfg), 0);
    engine_config_init(&want);
    assert_memory_equal(&cfg.engine, &want, sizeof(want));
    config_check_empty(&cfg);
    broker_config_cleanup(&cfg);

    assert_int_equal(broker_config_init(NULL), ENGINE_EINVAL);
}

/* cleanup accepts NULL, and may run twice after init or after a load that allocated. */
static void test_cleanup_twice(void **state)
{
    (void)state;
    broker_config cfg;
    char err[256];

    broker_config_cleanup(NULL);

    assert_int_equal(broker_config_init(&cfg), 0);
    broker_config_cleanup(&cfg);
    config_check_empty(&cfg);
    broker_config_cleanup(&cfg);
    config_check_empty(&cfg);

    assert_int_equal(broker_config_init(&cfg), 0);
    assert_int_equal(broker_config_set(&cfg, "engine.rules=a.yar,b.yar", err, sizeof(err)), 0);
    assert_int_equal(broker_config_set(&cfg, "engine.cache_dir=/tmp/x", err, sizeof(err)), 0);
    broker_config_cleanup(&cfg);
    config_check_empty(&cfg);
    broker_config_cleanup(&cfg);
    config_check_empty(&cfg);
}

/* ---------------------------------------------------------------------------------------------
 * load
 * ------------------------------------------------------------------------------------------- */

/* The brief's example file: every value is applied and the rest keeps its default. */
static void test_load_applies_values(void **state)
{
    (void)state;
    broker_config cfg;
    engine_config want;
    temp_ini t;
    char err[256] = "";

    assert_int_equal(broker_config_init(&cfg), 0);
    int rc = load_text(&cfg,
                       "; amsi-broker test configuration\n"
                       "# another comment style\n"
                       "\n"
                       "[engine]\n"
                       "max_files = 10\n"
                       "scan_archives = yes\n"
                       "rules = a.yar, b.yar\n"
                       "cache_dir = /tmp/x\n",
                       &t, err, sizeof(err));
    if (rc != 0)
        fail_msg("load failed (%d): %s", rc, err);
    assert_int_equal(cfg.engine.max_files, 10);
    assert_true(cfg.engine.scan_archives);
    assert_int_equal(cfg.nrules, 2);
    assert_string_equal(cfg.rules[0], "a.yar");
    assert_string_equal(cfg.rules[1], "b.yar");
    assert_non_null(cfg.cache_dir);
    assert_string_equal(cfg.cache_dir, "/tmp/x");

    /* Everything else is untouched. */
    engine_config_init(&want);
    want.max_files = 10;
    want.scan_archives = true;
    assert_memory_equal(&cfg.engine, &want, sizeof(want));
    broker_config_cleanup(&cfg);
}

/* A later load overrides what an earlier one set and replaces the rule list. */
static void test_load_twice_overrides(void **state)
{
    (void)state;
    broker_config cfg;
    temp_ini t;
    char err[256] = "";

    assert_int_equal(broker_config_init(&cfg), 0);
    assert_int_equal(load_text(&cfg,
                               "[engine]\nmax_files = 10\nrules = a.yar, b.yar, c.yar\n"
                               "cache_dir = /tmp/x\n",
                               &t, err, sizeof(err)),
                     0);
    assert_int_equal(load_text(&cfg, "[engine]\nmax_files = 20\nrules = d.yar\ncache_dir =\n", &t,
                               err, sizeof(err)),
                     0);
    assert_int_equal(cfg.engine.max_files, 20);
    assert_int_equal(cfg.nrules, 1);
    assert_string_equal(cfg.rules[0], "d.yar");
    assert_null(cfg.cache_dir);
    broker_config_cleanup(&cfg);
}

/* An empty file and a file with only an empty [engine] section load and change nothing. */
static void test_load_empty(void **state)
{
    (void)state;
    static const char *const texts[] = {"", "\n\n", "; only a comment\n", "[engine]\n"};

    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        broker_config cfg;
        engine_config want;
        temp_ini t;
        char err[256] = "";

        assert_int_equal(broker_config_init(&cfg), 0);
        assert_int_equal(load_text(&cfg, texts[i], &t, err, sizeof(err)), 0);
        engine_config_init(&want);
        assert_memory_equal(&cfg.engine, &want, sizeof(want));
        config_check_empty(&cfg);
        broker_config_cleanup(&cfg);
    }
}

/* `rules` splits on commas, trims spaces, and skips empty items. */
static void test_rules_split_and_trim(void **state)
{
    (void)state;
    broker_config cfg;
    char err[256] = "";

    assert_int_equal(broker_config_init(&cfg), 0);
    assert_int_equal(broker_config_set_key(&cfg, "engine", "rules",
                                           "  a.yar ,b.yar,, c d.yar ,  ,/r/e.yar  ", err,
                                           sizeof(err)),
                     0);
    assert_int_equal(cfg.nrules, 4);
    assert_string_equal(cfg.rules[0], "a.yar");
    assert_string_equal(cfg.rules[1], "b.yar");
    assert_string_equal(cfg.rules[2], "c d.yar");
    assert_string_equal(cfg.rules[3], "/r/e.yar");

    /* Setting again replaces the list. */
    assert_int_equal(broker_config_set(&cfg, "engine.rules=x.yar", err, sizeof(err)), 0);
    assert_int_equal(cfg.nrules, 1);
    assert_string_equal(cfg.rules[0], "x.yar");

    /* Only separators: no rules, so the bundled default applies again. */
    assert_int_equal(broker_config_set_key(&cfg, "engine", "rules", " , ,, ", err, sizeof(err)), 0);
    assert_int_equal(cfg.nrules, 0);
    assert_int_equal(broker_config_set_key(&cfg, "engine", "rules", "", err, sizeof(err)), 0);
    assert_int_equal(cfg.nrules, 0);
    broker_config_cleanup(&cfg);
}

/* An unknown key is ENGINE_ECONFIG with "FILE:LINE: engine.KEY: unknown key". */
static void test_load_unknown_key(void **state)
{
    (void)state;
    char err[512];

    load_bad("[engine]\nmax_files = 10\nbogus_key = 1\nscan_office = no\n", 3, err, sizeof(err));
    assert_contains(err, "engine.bogus_key");
    assert_contains(err, "unknown key");
    assert_ends_with(err, ": engine.bogus_key: unknown key");
}

/* A bad value is ENGINE_ECONFIG naming the file, the line and the key. */
static void test_load_bad_value(void **state)
{
    (void)state;
    char err[512];

    load_bad("[engine]\n\nmax_files = 0\n", 3, err, sizeof(err));
    assert_contains(err, "engine.max_files");
    load_bad("[engine]\nscan_archives = perhaps\n", 2, err, sizeof(err));
    assert_contains(err, "engine.scan_archives");
    assert_contains(err, "perhaps");
}

/* Section `ratelimit` reaches the rate-limit module; its errors name section, key and value. */
static void test_load_ratelimit(void **state)
{
    (void)state;
    broker_config cfg;
    temp_ini t;
    char err[512] = "";
    assert_int_equal(broker_config_init(&cfg), 0);
    assert_true(cfg.ratelimit.enabled);
    assert_int_equal(cfg.ratelimit.max_requests, 2000);
    assert_int_equal(load_text(&cfg,
                               "[ratelimit]\nmax_requests = 50\nburst = 0\naction = block\n"
                               "exempt = /usr/bin/pwsh, /opt/ci/bin/:1001\n",
                               &t, err, sizeof(err)),
                     0);
    assert_int_equal(cfg.ratelimit.max_requests, 50);
    assert_int_equal(cfg.ratelimit.burst, 0);
    assert_int_equal(cfg.ratelimit.action, RATELIMIT_BLOCK);
    assert_int_equal(cfg.ratelimit.nexempt, 2);
    assert_true(ratelimit_exempt(&cfg.ratelimit, "/opt/ci/bin/x", 1001));
    assert_int_equal(broker_config_set(&cfg, "ratelimit.enabled=0", err, sizeof(err)), 0);
    assert_false(cfg.ratelimit.enabled);
    assert_int_equal(broker_config_set(&cfg, "ratelimit.burst=lots", err, sizeof(err)),
                     ENGINE_ECONFIG);
    assert_contains(err, "ratelimit.burst");
    assert_contains(err, "lots");
    assert_int_equal(broker_config_set(&cfg, "ratelimit.rate=5", err, sizeof(err)), ENGINE_ECONFIG);
    assert_contains(err, "ratelimit.rate");
    assert_contains(err, "unknown key");
    broker_config_cleanup(&cfg);

    load_bad("[report]\nsyslog = ftp://collector\n", 2, err, sizeof(err));
    assert_contains(err, "report.syslog");
    load_bad("[report]\nwindow_s = 0\n", 2, err, sizeof(err));
    assert_contains(err, "report.window_s");
    load_bad("[ratelimit]\nexempt = pwsh\n", 2, err, sizeof(err));
    assert_contains(err, "ratelimit.exempt");
    assert_contains(err, "absolute");
}

/* The shipped amsid.conf documents every key with its default: it loads, and changes nothing. */
static void test_shipped_conf(void **state)
{
    (void)state;
    broker_config def, cfg;
    char err[512] = "";
    assert_int_equal(broker_config_init(&def), 0);
    assert_int_equal(broker_config_init(&cfg), 0);
    if (broker_config_load(&cfg, AMSI_SOURCE_DIR "/broker/amsid.conf", err, sizeof(err)) != 0)
        fail_msg("amsid.conf: %s", err);
    assert_memory_equal(&cfg.engine, &def.engine, sizeof(def.engine));
    assert_int_equal(cfg.ratelimit.max_requests, def.ratelimit.max_requests);
    assert_int_equal(cfg.ratelimit.interval_ms, def.ratelimit.interval_ms);
    assert_int_equal(cfg.ratelimit.burst, def.ratelimit.burst);
    assert_int_equal(cfg.ratelimit.notify_max_requests, def.ratelimit.notify_max_requests);
    assert_int_equal(cfg.ratelimit.notify_burst, def.ratelimit.notify_burst);
    assert_int_equal(cfg.ratelimit.nexempt, 0);
    assert_int_equal(cfg.ratelimit.action, def.ratelimit.action);
    assert_int_equal(cfg.ratelimit.table_size, def.ratelimit.table_size);
    assert_int_equal(cfg.ratelimit.enabled, def.ratelimit.enabled);
    assert_null(cfg.report.syslog);
    assert_int_equal(cfg.report.window_s, def.report.window_s);
    assert_int_equal(cfg.report.severity, def.report.severity);
    assert_int_equal(cfg.report.facility, def.report.facility);
    assert_string_equal(cfg.report.sd_id, def.report.sd_id);
    assert_int_equal(cfg.report.backlog, def.report.backlog);
    assert_int_equal(cfg.trace.backend, def.trace.backend);
    assert_int_equal(cfg.trace.level, def.trace.level);
    assert_int_equal(cfg.trace.keywords, def.trace.keywords);
    assert_int_equal(cfg.trace.content_max, def.trace.content_max);
    assert_null(cfg.trace.jsonl_path);
    assert_null(cfg.trace.lttng_library);
    broker_config_cleanup(&def);
    broker_config_cleanup(&cfg);
}

/* A key in an unknown section, or before any section, is refused naming the section. */
static void test_load_unknown_section(void **state)
{
    (void)state;
    char err[512];

    load_bad("[engine]\nmax_files = 10\n[nosuch]\nkey = 1\n", 4, err, sizeof(err));
    assert_contains(err, "nosuch");
    assert_contains(err, "unknown section");
    load_bad("max_files = 10\n", 1, err, sizeof(err));
    assert_contains(err, "unknown section");
}

/* A line that is not a section, a key = value pair or a comment is a syntax error at its line. */
static void test_load_syntax_error(void **state)
{
    (void)state;
    char err[512];

    load_bad("[engine]\nmax_files = 10\nthis line has no equals sign\n", 3, err, sizeof(err));
    assert_contains(err, "syntax");
    load_bad("[engine]\nmax_files = 10\n[engine\n", 3, err, sizeof(err));
    assert_contains(err, "syntax");
}

/*
 * The first error in the file is the one reported, and its line and reason belong together: a
 * syntax error on line 2 followed by an unknown key on line 4 is reported as the syntax error on
 * line 2, never as "line 2: unknown key".
 */
static void test_load_first_error_consistent(void **state)
{
    (void)state;
    char err[512];

    load_bad("[engine]\nno equals here\nmax_files = 10\nbogus_key = 1\n", 2, err, sizeof(err));
    assert_contains(err, "syntax");
    assert_null(strstr(err, "bogus_key"));

    load_bad("[engine]\nbogus_key = 1\nno equals here\n", 2, err, sizeof(err));
    assert_contains(err, "engine.bogus_key: unknown key");
}

/* A value longer than 200 characters is applied whole or refused naming the file. */
static void test_load_long_line(void **state)
{
    (void)state;
    char text[1024], err[512] = "";
    size_t n = (size_t)snprintf(text, sizeof(text), "[engine]\nrules = ");
    broker_config cfg;
    temp_ini t;

    for (int i = 0; i < 30; i++)
        n +=
            (size_t)snprintf(text + n, sizeof(text) - n, "%srules/file_%02d.yar", i ? ", " : "", i);
    snprintf(text + n, sizeof(text) - n, "\n");
    assert_true(n < sizeof(text) - 1);

    assert_int_equal(broker_config_init(&cfg), 0);
    int rc = load_text(&cfg, text, &t, err, sizeof(err));
    if (rc == 0) {
        assert_int_equal(cfg.nrules, 30);
        assert_string_equal(cfg.rules[29], "rules/file_29.yar");
    } else {
        assert_int_equal(rc, ENGINE_ECONFIG);
        assert_contains(err, t.path);
    }
    broker_config_cleanup(&cfg);
}

/*
 * A long line whose tail looks like a line of its own: the line is 211 characters, a single rule
 * path followed directly by "max_files=5". Reading it in 199-character pieces would set a cut
 * rule path and max_files = 5 and report success. It must instead be applied whole (one rule
 * with the full text, max_files untouched) or be refused.
 */
static void test_load_long_line_not_split(void **state)
{
    (void)state;
    char value[256], text[512], err[512] = "";
    const char *prefix = "rules = ";
    size_t vlen = 199 - strlen(prefix) + strlen("max_files=5");
    broker_config cfg;
    temp_ini t;

    assert_true(vlen < sizeof(value));
    memset(value, 'p', vlen);
    memcpy(value, "/rules/", 7);
    memcpy(value + vlen - strlen(".yarmax_files=5"), ".yarmax_files=5", strlen(".yarmax_files=5"));
    value[vlen] = '\0';
    snprintf(text, sizeof(text), "[engine]\n%s%s\n", prefix, value);

    assert_int_equal(broker_config_init(&cfg), 0);
    int rc = load_text(&cfg, text, &t, err, sizeof(err));
    /* Read what was applied, then free it, so a failed assertion leaks nothing. */
    unsigned max_files = cfg.engine.max_files;
    size_t nrules = cfg.nrules;
    bool whole = nrules == 1 && strcmp(cfg.rules[0], value) == 0;
    broker_config_cleanup(&cfg);
    if (rc == 0) {
        assert_int_equal(max_files, 1000);
        assert_int_equal(nrules, 1);
        assert_true(whole);
    } else {
        assert_int_equal(rc, ENGINE_ECONFIG);
        assert_contains(err, t.path);
    }
}

/* A missing file is ENGINE_ENOENT naming the file; NULL arguments are ENGINE_EINVAL. */
static void test_load_missing_file(void **state)
{
    (void)state;
    broker_config cfg;
    temp_ini t;
    char err[512] = "";

    /* Make a name that surely does not exist by creating and removing a file. */
    temp_ini_write(&t, "");
    temp_ini_remove(&t);

    assert_int_equal(broker_config_init(&cfg), 0);
    assert_int_equal(broker_config_load(&cfg, t.path, err, sizeof(err)), ENGINE_ENOENT);
    assert_contains(err, t.path);
    assert_int_equal(broker_config_load(&cfg, t.path, NULL, 0), ENGINE_ENOENT);
    assert_int_equal(broker_config_load(NULL, t.path, err, sizeof(err)), ENGINE_EINVAL);
    assert_int_equal(broker_config_load(&cfg, NULL, err, sizeof(err)), ENGINE_EINVAL);
    broker_config_cleanup(&cfg);
}

/* A directory is not a configuration file: loading it fails instead of reading nothing. */
static void test_load_directory(void **state)
{
    (void)state;
    broker_config cfg;
    char dir[64], err[512] = "";

    snprintf(dir, sizeof(dir), "/tmp/amsi-test-config-dir-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(broker_config_init(&cfg), 0);
    int rc = broker_config_load(&cfg, dir, err, sizeof(err));
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(access(dir, F_OK), -1);
    broker_config_cleanup(&cfg);
    if (rc == 0)
        fail_msg("loading the directory %s succeeded", dir);
    assert_int_equal(rc, ENGINE_EIO);
}

/* errlen 0 with err NULL is safe on every failing path of load. */
static void test_load_no_error_buffer(void **state)
{
    (void)state;
    broker_config cfg;
    temp_ini t;

    assert_int_equal(broker_config_init(&cfg), 0);
    assert_int_equal(load_text(&cfg, "[engine]\nbogus = 1\n", &t, NULL, 0), ENGINE_ECONFIG);
    assert_int_equal(load_text(&cfg, "[nosuch]\nk = 1\n", &t, NULL, 0), ENGINE_ECONFIG);
    assert_int_equal(load_text(&cfg, "[engine]\nnot a pair\n", &t, NULL, 0), ENGINE_ECONFIG);
    assert_int_equal(load_text(&cfg, "[engine]\nmax_files = 3\n", &t, NULL, 0), 0);
    assert_int_equal(cfg.engine.max_files, 3);
    broker_config_cleanup(&cfg);
}

/* ---------------------------------------------------------------------------------------------
 * set and set_key
 * ------------------------------------------------------------------------------------------- */

/* Well-formed overrides reach their keys. */
static void test_set_ok(void **state)
{
    (void)state;
    broker_config cfg;
    char err[256] = "";

    assert_int_equal(broker_config_init(&cfg), 0);
    assert_int_equal(broker_config_set(&cfg, "engine.max_files=7", err, sizeof(err)), 0);
    assert_int_equal(cfg.engine.max_files, 7);
    assert_int_equal(broker_config_set(&cfg, "engine.scan_archives=on", err, sizeof(err)), 0);
    assert_true(cfg.engine.scan_archives);
    assert_int_equal(broker_config_set(&cfg, "engine.max_scan_size=8MB", err, sizeof(err)), 0);
    assert_int_equal(cfg.engine.max_scan_size, 8u << 20);
    assert_int_equal(broker_config_set(&cfg, "engine.cache_dir=/tmp/y", err, sizeof(err)), 0);
    assert_string_equal(cfg.cache_dir, "/tmp/y");
    assert_int_equal(broker_config_set(&cfg, "engine.cache_dir=/tmp/z", err, sizeof(err)), 0);
    assert_string_equal(cfg.cache_dir, "/tmp/z");
    assert_int_equal(broker_config_set(&cfg, "engine.cache_dir=", err, sizeof(err)), 0);
    assert_null(cfg.cache_dir);
    /* Only the first '=' separates key from value. */
    assert_int_equal(broker_config_set(&cfg, "engine.rules=a=b.yar", err, sizeof(err)), 0);
    assert_int_equal(cfg.nrules, 1);
    assert_string_equal(cfg.rules[0], "a=b.yar");

    assert_int_equal(broker_config_set_key(&cfg, "engine", "max_recursion", "3", err, sizeof(err)),
                     0);
    assert_int_equal(cfg.engine.max_recursion, 3);
    broker_config_cleanup(&cfg);
}

/* Malformed overrides are ENGINE_ECONFIG with a message, and change nothing. */
static void test_set_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "enginemax",
        "engine.=3",
        ".x=1",
        "engine.max_files",
        "",
        "=1",
        ".=",
        "engine=1",
        "a=b.c",
        "engine.max_files=",
        "engine.max_files=x",
        "engine.nope=1",
        "nosuch.key=1",
    };
    broker_config cfg;
    engine_config before;

    assert_int_equal(broker_config_init(&cfg), 0);
    assert_int_equal(broker_config_set(&cfg, "engine.max_files=9", NULL, 0), 0);
    memcpy(&before, &cfg.engine, sizeof(before));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";

        int rc = broker_config_set(&cfg, bad[i], err, sizeof(err));
        if (rc != ENGINE_ECONFIG)
            fail_msg("'%s' gave %d, expected ENGINE_ECONFIG", bad[i], rc);
        assert_true(strlen(err) > 0);
        assert_int_equal(broker_config_set(&cfg, bad[i], NULL, 0), ENGINE_ECONFIG);
        assert_memory_equal(&cfg.engine, &before, sizeof(before));
        config_check_empty(&cfg);
    }
    broker_config_cleanup(&cfg);
}

/* An override into an unknown section names the section. */
static void test_set_unknown_section(void **state)
{
    (void)state;
    broker_config cfg;
    char err[256] = "";

    assert_int_equal(broker_config_init(&cfg), 0);
    assert_int_equal(broker_config_set(&cfg, "ratelimitx.rate=5", err, sizeof(err)),
                     ENGINE_ECONFIG);
    assert_contains(err, "ratelimitx");
    assert_contains(err, "unknown section");
    assert_int_equal(broker_config_set_key(&cfg, "nosuch", "k", "v", err, sizeof(err)),
                     ENGINE_ECONFIG);
    assert_contains(err, "nosuch");
    broker_config_cleanup(&cfg);
}

/* Section or key names longer than the parser's buffers are refused, not overflowed. */
static void test_set_too_long(void **state)
{
    (void)state;
    broker_config cfg;
    char assignment[512], err[256] = "";

    assert_int_equal(broker_config_init(&cfg), 0);
    memset(assignment, 's', 300);
    snprintf(assignment + 300, sizeof(assignment) - 300, ".max_files=1");
    assert_int_equal(broker_config_set(&cfg, assignment, err, sizeof(err)), ENGINE_ECONFIG);
    assert_true(strlen(err) > 0);

    memcpy(assignment, "engine.", 7);
    memset(assignment + 7, 'k', 300);
    snprintf(assignment + 307, sizeof(assignment) - 307, "=1");
    assert_int_equal(broker_config_set(&cfg, assignment, err, sizeof(err)), ENGINE_ECONFIG);
    assert_true(strlen(err) > 0);
    broker_config_cleanup(&cfg);
}

/* NULL arguments to set and set_key are ENGINE_EINVAL. */
static void test_set_null_args(void **state)
{
    (void)state;
    broker_config cfg;
    char err[256];

    assert_int_equal(broker_config_init(&cfg), 0);
    assert_int_equal(broker_config_set(NULL, "engine.max_files=1", err, sizeof(err)),
                     ENGINE_EINVAL);
    assert_int_equal(broker_config_set(&cfg, NULL, err, sizeof(err)), ENGINE_EINVAL);
    assert_int_equal(broker_config_set_key(NULL, "engine", "max_files", "1", err, sizeof(err)),
                     ENGINE_EINVAL);
    assert_int_equal(broker_config_set_key(&cfg, NULL, "max_files", "1", err, sizeof(err)),
                     ENGINE_EINVAL);
    assert_int_equal(broker_config_set_key(&cfg, "engine", NULL, "1", err, sizeof(err)),
                     ENGINE_EINVAL);
    assert_int_equal(broker_config_set_key(&cfg, "engine", "max_files", NULL, err, sizeof(err)),
                     ENGINE_EINVAL);
    assert_int_equal(cfg.engine.max_files, 1000);
    broker_config_cleanup(&cfg);
}

/* ---------------------------------------------------------------------------------------------
 * rule_paths
 * ------------------------------------------------------------------------------------------- */

/* With no rules configured the bundled default.yar is the one path; otherwise the list is used. */
static void test_rule_paths(void **state)
{
    (void)state;
    broker_config cfg;
    size_t n = 99;

    assert_int_equal(broker_config_init(&cfg), 0);
    const char *const *paths = broker_config_rule_paths(&cfg, &n);
    assert_non_null(paths);
    assert_int_equal(n, 1);
    assert_non_null(paths[0]);
    assert_ends_with(paths[0], "default.yar");

    assert_int_equal(broker_config_set(&cfg, "engine.rules=one.yar, two", NULL, 0), 0);
    paths = broker_config_rule_paths(&cfg, &n);
    assert_int_equal(n, 2);
    assert_string_equal(paths[0], "one.yar");
    assert_string_equal(paths[1], "two");

    broker_config_cleanup(&cfg);
    paths = broker_config_rule_paths(&cfg, &n);
    assert_int_equal(n, 1);
    assert_ends_with(paths[0], "default.yar");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_defaults),
        cmocka_unit_test(test_cleanup_twice),
        cmocka_unit_test(test_load_applies_values),
        cmocka_unit_test(test_load_twice_overrides),
        cmocka_unit_test(test_load_empty),
        cmocka_unit_test(test_rules_split_and_trim),
        cmocka_unit_test(test_load_unknown_key),
        cmocka_unit_test(test_load_bad_value),
        cmocka_unit_test(test_load_unknown_section),
        cmocka_unit_test(test_load_ratelimit),
        cmocka_unit_test(test_shipped_conf),
        cmocka_unit_test(test_load_syntax_error),
        cmocka_unit_test(test_load_first_error_consistent),
        cmocka_unit_test(test_load_long_line),
        cmocka_unit_test(test_load_long_line_not_split),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_load_directory),
        cmocka_unit_test(test_load_no_error_buffer),
        cmocka_unit_test(test_set_ok),
        cmocka_unit_test(test_set_malformed),
        cmocka_unit_test(test_set_unknown_section),
        cmocka_unit_test(test_set_too_long),
        cmocka_unit_test(test_set_null_args),
        cmocka_unit_test(test_rule_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
