/*
 * test_cache.c - the serialized database cache (engine/src/cache.c): a second compile of the same
 * rules loads from the cache and scans identically; a change to the rules misses; a damaged or
 * truncated entry is ignored and rewritten, never trusted; an unwritable cache directory only
 * costs the cache.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/engine.h"

static const char rules_text[] =
    "rule lit { strings: $a = \"AmsiScanBuffer\" condition: $a }\n"
    "rule hex { strings: $a = { 4D 5A ?? 00 } condition: $a }\n"
    "rule re { strings: $a = /virtualalloc.{0,40}createthread/is condition: $a }\n"
    "rule norm : normalized { strings: $a = \"invoke-expression\" condition: $a }\n";

typedef struct fixture {
    char dir[64];
    char cache[128];
    char rules[128];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    strcpy(f->dir, "/tmp/amsi-cache-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->cache, sizeof(f->cache), "%s/cache", f->dir);
    snprintf(f->rules, sizeof(f->rules), "%s/r.yar", f->dir);
    FILE *fp = fopen(f->rules, "w");
    if (fp == NULL)
        return -1;
    fputs(rules_text, fp);
    fclose(fp);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc;
}

static engine_rules *compile_cached(const fixture *f)
{
    const char *paths[] = {f->rules};
    engine_compile_options opts = {.cache_dir = f->cache};
    engine_rules *rules = NULL;
    engine_diag diag;
    int rc = engine_rules_compile_files(paths, 1, &opts, &rules, &diag);
    if (rc != 0)
        fail_msg("compile: %s", diag.text);
    return rules;
}

/* The only entry in the cache directory, or fails. */
static void entry_path(const fixture *f, char *out, size_t cap)
{
    DIR *d = opendir(f->cache);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(out, cap, "%s/%s", f->cache, e->d_name);
        n++;
    }
    closedir(d);
    assert_int_equal(n, 1);
    assert_non_null(strstr(out, ".hsc"));
}

static void assert_detects(engine_rules *rules)
{
    static const struct {
        const char *data;
        size_t len;
        const char *rule;
    } cases[] = {
        {"x AmsiScanBuffer", 16, "lit"},
        {"MZ\x90\x00", 4, "hex"},
        {"VirtualAlloc(...)\nCreateThread", 30, "re"},
        {"I`nv`oke-Expression", 19, "norm"},
    };
    engine_scratch *s = NULL;
    assert_int_equal(engine_scratch_create(rules, &s), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        engine_result res;
        assert_int_equal(
            engine_scan_buffer(rules, s, NULL, cases[i].data, cases[i].len, NULL, 0, &res), 0);
        assert_int_equal(res.match_count, 1);
        assert_string_equal(res.matches[0].rule, cases[i].rule);
        engine_result_cleanup(&res);
    }
    engine_stream *st = NULL;
    assert_int_equal(engine_stream_open(rules, NULL, &st), 0);
    assert_int_equal(engine_stream_write(st, s, "AmsiScan", 8, NULL), 0);
    engine_result res;
    assert_int_equal(engine_stream_write(st, s, "Buffer", 6, &res), 0);
    assert_int_equal(res.match_count, 1);
    engine_result_cleanup(&res);
    assert_int_equal(engine_stream_close(st, s, NULL), 0);
    engine_scratch_destroy(s);
}

static void test_second_compile_loads_from_cache(void **state)
{
    fixture *f = *state;
    engine_rules *cold = compile_cached(f);
    assert_false(engine_rules_from_cache(cold));
    assert_detects(cold);
    engine_rules *warm = compile_cached(f);
    assert_true(engine_rules_from_cache(warm));
    assert_detects(warm);
    uint8_t h1[32], h2[32];
    engine_rules_hash(cold, h1);
    engine_rules_hash(warm, h2);
    assert_memory_equal(h1, h2, 32);
    engine_rules_unref(cold);
    engine_rules_unref(warm);
}

static void test_changed_rules_miss(void **state)
{
    fixture *f = *state;
    engine_rules_unref(compile_cached(f));
    FILE *fp = fopen(f->rules, "a");
    assert_non_null(fp);
    fputs("rule extra { strings: $a = \"extra-rule\" condition: $a }\n", fp);
    fclose(fp);
    engine_rules *r = compile_cached(f);
    assert_false(engine_rules_from_cache(r));
    assert_int_equal(engine_rules_count(r), 5);
    engine_rules_unref(r);
    r = compile_cached(f);
    assert_true(engine_rules_from_cache(r));
    engine_rules_unref(r);
}

/* Overwrites the entry with its first `keep` bytes, then flips byte `flip` if non-negative. */
static void damage(const char *path, long keep, long flip)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)size);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
    fclose(fp);
    if (keep > size)
        keep = size;
    if (flip >= 0 && flip < keep)
        buf[flip] ^= 0x5a;
    fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, (size_t)keep, fp), (size_t)keep);
    fclose(fp);
    free(buf);
}

static void test_damaged_entry_is_rewritten(void **state)
{
    fixture *f = *state;
    engine_rules_unref(compile_cached(f));
    char path[512];
    entry_path(f, path, sizeof(path));
    static const struct {
        long keep, flip;
    } cases[] = {
        {0, -1},         /* empty */
        {20, -1},        /* inside the key */
        {100, -1},       /* inside the first database */
        {1L << 30, 2},   /* bad magic */
        {1L << 30, 12},  /* key mismatch */
        {1L << 30, 40},  /* database size */
        {1L << 30, 300}, /* database bytes */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        damage(path, cases[i].keep, cases[i].flip);
        engine_rules *r = compile_cached(f);
        /* Every kind of damage is noticed (Hyperscan checks a CRC over each database). */
        assert_false(engine_rules_from_cache(r));
        assert_detects(r);
        engine_rules_unref(r);
        r = compile_cached(f);
        assert_true(engine_rules_from_cache(r));
        assert_detects(r);
        engine_rules_unref(r);
    }
}

static void test_unwritable_cache_dir(void **state)
{
    fixture *f = *state;
    /* A file where the directory should be: compiles, just without a cache. */
    snprintf(f->cache, sizeof(f->cache), "%s/r.yar", f->dir);
    engine_rules *r = compile_cached(f);
    assert_false(engine_rules_from_cache(r));
    assert_detects(r);
    engine_rules_unref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_second_compile_loads_from_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changed_rules_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_entry_is_rewritten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_cache_dir, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
