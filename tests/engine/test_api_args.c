/*
 * test_api_args.c - the argument-check test over the engine's public functions, in the manner of
 * Hyperscan's own header tests: every function of engine/include/engine/engine.h is called with
 * NULL and otherwise bad arguments, and the test asserts the documented return code, that output
 * parameters are left in a safe state, and that nothing crashes. Where a function takes a diag it
 * is called both with one (pre-filled with junk, to check the text comes back terminated) and with
 * NULL. Tests that need a rule set get a fresh one-rule set and scratch from a fixture and release
 * them in its teardown; tests that make temporary files or directories remove them and check they
 * are gone. A run under AddressSanitizer/LeakSanitizer shows that every path frees what it made.
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

#include "engine/engine.h"

/* One rule with one string; "needle" anywhere in the content matches it. */
static const char probe_rules[] = "rule api_args_probe\n"
                                  "{\n"
                                  "    strings:\n"
                                  "        $a = \"needle\"\n"
                                  "    condition:\n"
                                  "        $a\n"
                                  "}\n";

static const char haystack[] = "hay hay needle hay";

/* What the fixture hands each test. */
typedef struct fixture {
    engine_rules *rules;
    engine_scratch *scratch;
} fixture;

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* Fills a diag with non-zero junk, so a message that is not terminated shows up. */
static void diag_junk(engine_diag *diag)
{
    memset(diag, 'J', sizeof(*diag));
}

/* Asserts that both strings of a diag are terminated inside their arrays. */
static void diag_check_terminated(const engine_diag *diag)
{
    assert_non_null(memchr(diag->text, '\0', sizeof(diag->text)));
    assert_non_null(memchr(diag->file, '\0', sizeof(diag->file)));
}

/* Asserts that a result is the clean, empty result a failed or empty scan leaves. */
static void result_check_clean(const engine_result *r)
{
    assert_int_equal(r->verdict, ENGINE_VERDICT_CLEAN);
    assert_int_equal(r->match_count, 0);
    assert_null(r->matches);
    assert_null(r->object);
}

/* Asserts that a result is all zero bytes (what engine_result_cleanup leaves). */
static void result_check_zeroed(const engine_result *r)
{
    static const engine_result zero;

    assert_memory_equal(r, &zero, sizeof(zero));
}

/* Makes a fresh temporary directory under /tmp; the caller removes it with dir_remove(). */
static void dir_make(char *path, size_t size)
{
    assert_true(size > 32);
    snprintf(path, size, "/tmp/amsi-test-api-args-XXXXXX");
    assert_non_null(mkdtemp(path));
}

/* Removes an empty temporary directory and proves it is gone. */
static void dir_remove(const char *path)
{
    assert_int_equal(rmdir(path), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(errno, ENOENT);
}

/* Writes text into dir/name; the caller removes it with file_remove(). */
static void file_write(const char *dir, const char *name, const char *text, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Removes a file and proves it is gone. */
static void file_remove(const char *path)
{
    assert_int_equal(unlink(path), 0);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(errno, ENOENT);
}

/* Fixture: one compiled rule set and a scratch for it. */
static int setup_rules(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));

    if (fx == NULL)
        return -1;
    if (engine_rules_compile_string(probe_rules, "probe.yar", NULL, &fx->rules, NULL) != 0 ||
        engine_scratch_create(fx->rules, &fx->scratch) != 0) {
        engine_rules_unref(fx->rules);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

/* Releases the fixture's scratch and rule set. */
static int teardown_rules(void **state)
{
    fixture *fx = *state;

    engine_scratch_destroy(fx->scratch);
    engine_rules_unref(fx->rules);
    free(fx);
    *state = NULL;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Error table and platform (argument-free, but part of "every public function")
 * ------------------------------------------------------------------------------------------- */

/* The functions without pointer arguments accept any value. */
static void test_plain_functions(void **state)
{
    (void)state;
    assert_non_null(engine_strerror(-12345));
    assert_non_null(engine_err_name(12345));
    assert_non_null(engine_verdict_name((engine_verdict)-1));
    assert_int_equal(engine_check_platform(), 0);
    assert_non_null(engine_hyperscan_version());
}

/* ---------------------------------------------------------------------------------------------
 * engine_rules_compile_files
 * ------------------------------------------------------------------------------------------- */

/* NULL paths, no paths, a NULL path inside the array and NULL out are ENGINE_EINVAL. */
static void test_compile_files_null_args(void **state)
{
    (void)state;
    static const char *const one[] = {"/nonexistent/amsi-test.yar"};
    static const char *const with_null[] = {NULL};
    engine_rules *out = NULL;
    engine_diag diag;

    diag_junk(&diag);
    assert_int_equal(engine_rules_compile_files(NULL, 1, NULL, &out, &diag), ENGINE_EINVAL);
    assert_null(out);
    diag_check_terminated(&diag);
    assert_int_equal(engine_rules_compile_files(NULL, 1, NULL, &out, NULL), ENGINE_EINVAL);
    assert_null(out);

    diag_junk(&diag);
    assert_int_equal(engine_rules_compile_files(one, 0, NULL, &out, &diag), ENGINE_EINVAL);
    assert_null(out);
    diag_check_terminated(&diag);
    assert_int_equal(engine_rules_compile_files(NULL, 0, NULL, &out, NULL), ENGINE_EINVAL);

    diag_junk(&diag);
    assert_int_equal(engine_rules_compile_files(one, 1, NULL, NULL, &diag), ENGINE_EINVAL);
    diag_check_terminated(&diag);
    assert_int_equal(engine_rules_compile_files(one, 1, NULL, NULL, NULL), ENGINE_EINVAL);
    assert_int_equal(engine_rules_compile_files(NULL, 0, NULL, NULL, NULL), ENGINE_EINVAL);

    diag_junk(&diag);
    assert_int_equal(engine_rules_compile_files(with_null, 1, NULL, &out, &diag), ENGINE_EINVAL);
    assert_null(out);
    diag_check_terminated(&diag);
}

/* A path that does not exist is ENGINE_ENOENT and the diag names the file. */
static void test_compile_files_missing_path(void **state)
{
    (void)state;
    char dir[64], path[128];
    engine_rules *out = NULL;
    engine_diag diag;

    dir_make(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/missing.yar", dir);
    const char *const paths[] = {path};

    diag_junk(&diag);
    assert_int_equal(engine_rules_compile_files(paths, 1, NULL, &out, &diag), ENGINE_ENOENT);
    assert_null(out);
    diag_check_terminated(&diag);
    assert_string_equal(diag.file, path);
    assert_non_null(strstr(diag.text, path));

    assert_int_equal(engine_rules_compile_files(paths, 1, NULL, &out, NULL), ENGINE_ENOENT);
    assert_null(out);

    /* A missing path after a good one still fails, and frees what the good one produced. */
    char good[128];
    file_write(dir, "good.yar", probe_rules, good, sizeof(good));
    const char *const both[] = {good, path};
    diag_junk(&diag);
    assert_int_equal(engine_rules_compile_files(both, 2, NULL, &out, &diag), ENGINE_ENOENT);
    assert_null(out);
    assert_string_equal(diag.file, path);
    file_remove(good);

    dir_remove(dir);
}

/* A directory with no *.yar or *.yara file is ENGINE_ENOENT and the diag names the directory. */
static void test_compile_files_empty_dir(void **state)
{
    (void)state;
    char dir[64], other[128];
    engine_rules *out = NULL;
    engine_diag diag;

    dir_make(dir, sizeof(dir));
    const char *const paths[] = {dir};

    diag_junk(&diag);
    assert_int_equal(engine_rules_compile_files(paths, 1, NULL, &out, &diag), ENGINE_ENOENT);
    assert_null(out);
    diag_check_terminated(&diag);
    assert_non_null(strstr(diag.text, dir));
    assert_int_equal(engine_rules_compile_files(paths, 1, NULL, &out, NULL), ENGINE_ENOENT);

    /* Files with other extensions do not count. */
    file_write(dir, "readme.txt", probe_rules, other, sizeof(other));
    diag_junk(&diag);
    assert_int_equal(engine_rules_compile_files(paths, 1, NULL, &out, &diag), ENGINE_ENOENT);
    assert_null(out);
    assert_non_null(strstr(diag.text, dir));
    file_remove(other);

    dir_remove(dir);
}

/* A directory of rules and a single file both compile; this is the positive control. */
static void test_compile_files_ok(void **state)
{
    (void)state;
    char dir[64], file[128];
    engine_rules *out = NULL;

    dir_make(dir, sizeof(dir));
    file_write(dir, "probe.yar", probe_rules, file, sizeof(file));
    const char *const by_dir[] = {dir};
    const char *const by_file[] = {file};

    assert_int_equal(engine_rules_compile_files(by_dir, 1, NULL, &out, NULL), 0);
    assert_non_null(out);
    assert_int_equal(engine_rules_count(out), 1);
    engine_rules_unref(out);
    out = NULL;
    assert_int_equal(engine_rules_compile_files(by_file, 1, NULL, &out, NULL), 0);
    assert_non_null(out);
    engine_rules_unref(out);

    file_remove(file);
    dir_remove(dir);
}

/* ---------------------------------------------------------------------------------------------
 * engine_rules_compile_string
 * ------------------------------------------------------------------------------------------- */

/* NULL text or NULL out is ENGINE_EINVAL; name and options may be NULL. */
static void test_compile_string_null_args(void **state)
{
    (void)state;
    engine_rules *out = NULL;
    engine_diag diag;

    diag_junk(&diag);
    assert_int_equal(engine_rules_compile_string(NULL, NULL, NULL, &out, &diag), ENGINE_EINVAL);
    assert_null(out);
    diag_check_terminated(&diag);
    assert_int_equal(engine_rules_compile_string(NULL, "x.yar", NULL, &out, NULL), ENGINE_EINVAL);
    assert_null(out);

    diag_junk(&diag);
    assert_int_equal(engine_rules_compile_string(probe_rules, NULL, NULL, NULL, &diag),
                     ENGINE_EINVAL);
    diag_check_terminated(&diag);
    assert_int_equal(engine_rules_compile_string(probe_rules, NULL, NULL, NULL, NULL),
                     ENGINE_EINVAL);
    assert_int_equal(engine_rules_compile_string(NULL, NULL, NULL, NULL, NULL), ENGINE_EINVAL);

    /* The positive control: every optional argument NULL. */
    assert_int_equal(engine_rules_compile_string(probe_rules, NULL, NULL, &out, NULL), 0);
    assert_non_null(out);
    engine_rules_unref(out);

    /* Options with no cache directory are the same as no options. */
    const engine_compile_options opts = {.cache_dir = NULL};
    out = NULL;
    assert_int_equal(engine_rules_compile_string(probe_rules, NULL, &opts, &out, NULL), 0);
    assert_non_null(out);
    assert_false(engine_rules_from_cache(out));
    engine_rules_unref(out);
}

/* Text with no rules (empty, blank, only comments) is ENGINE_ERULES "no rules". */
static void test_compile_string_no_rules(void **state)
{
    (void)state;
    static const char *const texts[] = {"", " \n\t\n", "// nothing here\n", "/* nor here */"};

    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        engine_rules *out = NULL;
        engine_diag diag;

        diag_junk(&diag);
        assert_int_equal(engine_rules_compile_string(texts[i], NULL, NULL, &out, &diag),
                         ENGINE_ERULES);
        assert_null(out);
        diag_check_terminated(&diag);
        assert_non_null(strstr(diag.text, "no rules"));
        assert_int_equal(engine_rules_compile_string(texts[i], "n.yar", NULL, &out, NULL),
                         ENGINE_ERULES);
        assert_null(out);
    }
}

/* A syntax error is ENGINE_ERULES with the given name in the diag, and safe with no diag. */
static void test_compile_string_bad_rules(void **state)
{
    (void)state;
    static const char *const texts[] = {"rule",
                                        "rule {",
                                        "rule x {",
                                        "rule x { condition: }",
                                        "rule x { strings: $a = condition: $a }",
                                        "}",
                                        "\"",
                                        "rule x { condition: $missing }"};

    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        engine_rules *out = NULL;
        engine_diag diag;

        diag_junk(&diag);
        assert_int_equal(engine_rules_compile_string(texts[i], "bad.yar", NULL, &out, &diag),
                         ENGINE_ERULES);
        assert_null(out);
        diag_check_terminated(&diag);
        assert_non_null(strstr(diag.text, "bad.yar"));
        assert_int_equal(engine_rules_compile_string(texts[i], NULL, NULL, &out, NULL),
                         ENGINE_ERULES);
        assert_null(out);
    }
}

/* A cache directory that cannot be made or used only costs speed: the compile still succeeds. */
static void test_compile_bad_cache_dir(void **state)
{
    (void)state;
    char dir[64], file[128];
    engine_rules *out = NULL;

    /* Under /proc nothing can be created. */
    const engine_compile_options in_proc = {.cache_dir = "/proc/amsi-test-no-such-dir/cache"};
    assert_int_equal(engine_rules_compile_string(probe_rules, NULL, &in_proc, &out, NULL), 0);
    assert_non_null(out);
    assert_false(engine_rules_from_cache(out));
    engine_rules_unref(out);
    out = NULL;

    /* A regular file where the directory should be. */
    dir_make(dir, sizeof(dir));
    file_write(dir, "not-a-dir", "", file, sizeof(file));
    const engine_compile_options on_file = {.cache_dir = file};
    assert_int_equal(engine_rules_compile_string(probe_rules, NULL, &on_file, &out, NULL), 0);
    assert_non_null(out);
    assert_false(engine_rules_from_cache(out));
    engine_rules_unref(out);
    file_remove(file);
    dir_remove(dir);
}

/* ---------------------------------------------------------------------------------------------
 * Rule set accessors and reference counting
 * ------------------------------------------------------------------------------------------- */

/* Every accessor accepts NULL and answers "nothing". */
static void test_rules_accessors_null(void **state)
{
    (void)state;
    uint8_t hash[32];
    static const uint8_t zero[32];

    assert_null(engine_rules_ref(NULL));
    engine_rules_unref(NULL);
    assert_int_equal(engine_rules_count(NULL), 0);
    assert_null(engine_rules_name(NULL, 0));
    assert_null(engine_rules_name(NULL, SIZE_MAX));
    memset(hash, 0xAA, sizeof(hash));
    engine_rules_hash(NULL, hash);
    assert_memory_equal(hash, zero, sizeof(hash));
    assert_false(engine_rules_from_cache(NULL));
    assert_true(engine_rules_compile_ms(NULL) == 0.0);
}

/* With a real set: index out of range gives NULL, and ref/unref keep the set alive in between. */
static void test_rules_accessors_real(void **state)
{
    fixture *fx = *state;
    uint8_t hash[32];
    static const uint8_t zero[32];

    assert_int_equal(engine_rules_count(fx->rules), 1);
    assert_string_equal(engine_rules_name(fx->rules, 0), "api_args_probe");
    assert_null(engine_rules_name(fx->rules, 1));
    assert_null(engine_rules_name(fx->rules, 1000));
    assert_null(engine_rules_name(fx->rules, SIZE_MAX));
    engine_rules_hash(fx->rules, hash);
    assert_memory_not_equal(hash, zero, sizeof(hash));
    assert_false(engine_rules_from_cache(fx->rules));
    assert_true(engine_rules_compile_ms(fx->rules) >= 0.0);

    assert_ptr_equal(engine_rules_ref(fx->rules), fx->rules);
    assert_ptr_equal(engine_rules_ref(fx->rules), fx->rules);
    engine_rules_unref(fx->rules);
    engine_rules_unref(fx->rules);
    /* Still alive: the fixture's reference remains. */
    assert_int_equal(engine_rules_count(fx->rules), 1);
}

/* ---------------------------------------------------------------------------------------------
 * Scratch
 * ------------------------------------------------------------------------------------------- */

/* NULL rules or NULL out is ENGINE_EINVAL; destroying NULL is a no-op. */
static void test_scratch_null_args(void **state)
{
    fixture *fx = *state;
    engine_scratch *s = NULL;

    assert_int_equal(engine_scratch_create(NULL, &s), ENGINE_EINVAL);
    assert_null(s);
    assert_int_equal(engine_scratch_create(fx->rules, NULL), ENGINE_EINVAL);
    assert_int_equal(engine_scratch_create(NULL, NULL), ENGINE_EINVAL);
    engine_scratch_destroy(NULL);

    assert_int_equal(engine_scratch_create(fx->rules, &s), 0);
    assert_non_null(s);
    engine_scratch_destroy(s);
}

/* ---------------------------------------------------------------------------------------------
 * engine_scan_buffer and engine_result_cleanup
 * ------------------------------------------------------------------------------------------- */

/* Each required argument NULL, and data NULL with len > 0, is ENGINE_EINVAL. */
static void test_scan_buffer_null_args(void **state)
{
    fixture *fx = *state;
    engine_result r;
    const size_t n = sizeof(haystack) - 1;

    memset(&r, 0x77, sizeof(r));
    assert_int_equal(engine_scan_buffer(NULL, fx->scratch, NULL, haystack, n, NULL, 0, &r),
                     ENGINE_EINVAL);
    result_check_clean(&r);
    engine_result_cleanup(&r);

    memset(&r, 0x77, sizeof(r));
    assert_int_equal(engine_scan_buffer(fx->rules, NULL, NULL, haystack, n, NULL, 0, &r),
                     ENGINE_EINVAL);
    result_check_clean(&r);
    engine_result_cleanup(&r);

    assert_int_equal(engine_scan_buffer(fx->rules, fx->scratch, NULL, haystack, n, NULL, 0, NULL),
                     ENGINE_EINVAL);

    memset(&r, 0x77, sizeof(r));
    assert_int_equal(engine_scan_buffer(fx->rules, fx->scratch, NULL, NULL, 1, NULL, 0, &r),
                     ENGINE_EINVAL);
    result_check_clean(&r);
    engine_result_cleanup(&r);

    memset(&r, 0x77, sizeof(r));
    assert_int_equal(engine_scan_buffer(fx->rules, fx->scratch, NULL, NULL, SIZE_MAX, NULL, 0, &r),
                     ENGINE_EINVAL);
    result_check_clean(&r);
    engine_result_cleanup(&r);

    assert_int_equal(engine_scan_buffer(NULL, NULL, NULL, NULL, 5, NULL, 0, NULL), ENGINE_EINVAL);

    /* The scratch still works after the refused calls. */
    assert_int_equal(engine_scan_buffer(fx->rules, fx->scratch, NULL, haystack, n, NULL, 0, &r), 0);
    assert_int_equal(r.verdict, ENGINE_VERDICT_DETECTED);
    engine_result_cleanup(&r);
}

/* data NULL with len 0 is a valid, empty scan: it runs and finds nothing. */
static void test_scan_buffer_null_empty(void **state)
{
    fixture *fx = *state;
    engine_result r;
    engine_config cfg;

    memset(&r, 0x77, sizeof(r));
    assert_int_equal(engine_scan_buffer(fx->rules, fx->scratch, NULL, NULL, 0, NULL, 0, &r), 0);
    result_check_clean(&r);
    assert_int_equal(r.amsi_result, ENGINE_AMSI_NOT_DETECTED);
    assert_int_equal(r.bytes_scanned, 0);
    engine_result_cleanup(&r);
    result_check_zeroed(&r);

    /* The same with an explicit configuration, a name and the UTF-16 hint. */
    engine_config_init(&cfg);
    assert_int_equal(
        engine_scan_buffer(fx->rules, fx->scratch, &cfg, NULL, 0, "empty", ENGINE_HINT_UTF16LE, &r),
        0);
    result_check_clean(&r);
    engine_result_cleanup(&r);

    /* A non-NULL pointer with len 0 is the same empty scan. */
    assert_int_equal(engine_scan_buffer(fx->rules, fx->scratch, NULL, haystack, 0, NULL, 0, &r), 0);
    result_check_clean(&r);
    engine_result_cleanup(&r);
}

/* Hint bits the header does not define are ignored rather than breaking the scan. */
static void test_scan_buffer_unknown_hints(void **state)
{
    fixture *fx = *state;
    engine_result r;

    assert_int_equal(engine_scan_buffer(fx->rules, fx->scratch, NULL, haystack,
                                        sizeof(haystack) - 1, NULL, ~0u, &r),
                     0);
    assert_int_equal(r.verdict, ENGINE_VERDICT_DETECTED);
    engine_result_cleanup(&r);
}

/* cleanup accepts NULL, a zeroed result, a scanned result, and the same result twice. */
static void test_result_cleanup(void **state)
{
    fixture *fx = *state;
    engine_result r;

    engine_result_cleanup(NULL);

    memset(&r, 0, sizeof(r));
    engine_result_cleanup(&r);
    result_check_zeroed(&r);
    engine_result_cleanup(&r);
    result_check_zeroed(&r);

    /* A result that holds a match (arena and match array), cleaned twice in a row. */
    assert_int_equal(engine_scan_buffer(fx->rules, fx->scratch, NULL, haystack,
                                        sizeof(haystack) - 1, NULL, 0, &r),
                     0);
    assert_int_equal(r.verdict, ENGINE_VERDICT_DETECTED);
    assert_int_equal(r.match_count, 1);
    assert_string_equal(r.matches[0].rule, "api_args_probe");
    assert_string_equal(r.object, "buffer");
    engine_result_cleanup(&r);
    result_check_zeroed(&r);
    engine_result_cleanup(&r);
    result_check_zeroed(&r);

    /* A clean result, cleaned twice. */
    assert_int_equal(engine_scan_buffer(fx->rules, fx->scratch, NULL, "hay", 3, NULL, 0, &r), 0);
    assert_int_equal(r.verdict, ENGINE_VERDICT_CLEAN);
    engine_result_cleanup(&r);
    engine_result_cleanup(&r);
    result_check_zeroed(&r);
}

/* ---------------------------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------------------------- */

/* open with NULL rules or NULL out is ENGINE_EINVAL; a NULL name is fine. */
static void test_stream_open_null_args(void **state)
{
    fixture *fx = *state;
    engine_stream *st = NULL;

    assert_int_equal(engine_stream_open(NULL, "s", &st), ENGINE_EINVAL);
    assert_null(st);
    assert_int_equal(engine_stream_open(NULL, NULL, &st), ENGINE_EINVAL);
    assert_null(st);
    assert_int_equal(engine_stream_open(fx->rules, "s", NULL), ENGINE_EINVAL);
    assert_int_equal(engine_stream_open(NULL, NULL, NULL), ENGINE_EINVAL);

    assert_int_equal(engine_stream_open(fx->rules, NULL, &st), 0);
    assert_non_null(st);
    assert_int_equal(engine_stream_close(st, fx->scratch, NULL), 0);
}

/* write with NULL stream, NULL scratch, or NULL data and len > 0 is ENGINE_EINVAL. */
static void test_stream_write_null_args(void **state)
{
    fixture *fx = *state;
    engine_stream *st = NULL;
    engine_result r;

    assert_int_equal(engine_stream_write(NULL, fx->scratch, "x", 1, NULL), ENGINE_EINVAL);
    memset(&r, 0x77, sizeof(r));
    assert_int_equal(engine_stream_write(NULL, fx->scratch, "x", 1, &r), ENGINE_EINVAL);
    result_check_clean(&r);
    engine_result_cleanup(&r);
    assert_int_equal(engine_stream_write(NULL, NULL, NULL, 0, NULL), ENGINE_EINVAL);

    assert_int_equal(engine_stream_open(fx->rules, "s", &st), 0);
    assert_int_equal(engine_stream_write(st, NULL, "x", 1, NULL), ENGINE_EINVAL);
    memset(&r, 0x77, sizeof(r));
    assert_int_equal(engine_stream_write(st, NULL, "x", 1, &r), ENGINE_EINVAL);
    result_check_clean(&r);
    engine_result_cleanup(&r);
    assert_int_equal(engine_stream_write(st, fx->scratch, NULL, 1, NULL), ENGINE_EINVAL);
    memset(&r, 0x77, sizeof(r));
    assert_int_equal(engine_stream_write(st, fx->scratch, NULL, SIZE_MAX, &r), ENGINE_EINVAL);
    result_check_clean(&r);
    engine_result_cleanup(&r);

    /* NULL data with len 0 is an empty write. */
    assert_int_equal(engine_stream_write(st, fx->scratch, NULL, 0, NULL), 0);
    assert_int_equal(engine_stream_write(st, fx->scratch, NULL, 0, &r), 0);
    result_check_clean(&r);
    assert_int_equal(r.bytes_scanned, 0);
    engine_result_cleanup(&r);

    /* The refused writes did not spoil the stream: a split signature is still found. */
    assert_int_equal(engine_stream_write(st, fx->scratch, "hay nee", 7, NULL), 0);
    assert_int_equal(engine_stream_write(st, fx->scratch, "dle hay", 7, &r), 0);
    assert_int_equal(r.verdict, ENGINE_VERDICT_DETECTED);
    assert_int_equal(r.bytes_scanned, 14);
    engine_result_cleanup(&r);
    assert_int_equal(engine_stream_close(st, fx->scratch, &r), 0);
    assert_int_equal(r.verdict, ENGINE_VERDICT_DETECTED);
    assert_string_equal(r.object, "s");
    engine_result_cleanup(&r);
}

/* close accepts NULL (returns 0 and leaves result clean) and NULL scratch/result. */
static void test_stream_close_null_args(void **state)
{
    fixture *fx = *state;
    engine_stream *st = NULL;
    engine_result r;

    assert_int_equal(engine_stream_close(NULL, NULL, NULL), 0);
    assert_int_equal(engine_stream_close(NULL, fx->scratch, NULL), 0);
    memset(&r, 0x77, sizeof(r));
    assert_int_equal(engine_stream_close(NULL, fx->scratch, &r), 0);
    result_check_clean(&r);
    engine_result_cleanup(&r);
    memset(&r, 0x77, sizeof(r));
    assert_int_equal(engine_stream_close(NULL, NULL, &r), 0);
    result_check_clean(&r);
    engine_result_cleanup(&r);

    /* A stream closed with no scratch and no result is just freed. */
    assert_int_equal(engine_stream_open(fx->rules, NULL, &st), 0);
    assert_int_equal(engine_stream_write(st, fx->scratch, haystack, sizeof(haystack) - 1, NULL), 0);
    assert_int_equal(engine_stream_close(st, NULL, NULL), 0);

    /* A stream never written to, closed with a scratch and a result: clean, named "stream". */
    assert_int_equal(engine_stream_open(fx->rules, NULL, &st), 0);
    assert_int_equal(engine_stream_close(st, fx->scratch, &r), 0);
    result_check_clean(&r);
    engine_result_cleanup(&r);

    /* A stream closed with a result but no scratch is freed either way; the result is safe. */
    assert_int_equal(engine_stream_open(fx->rules, NULL, &st), 0);
    assert_int_equal(engine_stream_write(st, fx->scratch, "x", 1, NULL), 0);
    memset(&r, 0x77, sizeof(r));
    (void)engine_stream_close(st, NULL, &r);
    assert_null(r.matches);
    engine_result_cleanup(&r);
    result_check_zeroed(&r);
}

/* A stream keeps its rule set alive after the caller drops its own reference. */
static void test_stream_holds_reference(void **state)
{
    fixture *fx = *state;
    engine_rules *extra = engine_rules_ref(fx->rules);
    engine_stream *st = NULL;
    engine_result r;

    assert_int_equal(engine_stream_open(extra, "held", &st), 0);
    engine_rules_unref(extra);
    assert_int_equal(engine_stream_write(st, fx->scratch, "needle", 6, NULL), 0);
    assert_int_equal(engine_stream_close(st, fx->scratch, &r), 0);
    assert_int_equal(r.verdict, ENGINE_VERDICT_DETECTED);
    engine_result_cleanup(&r);
}

/* ---------------------------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------------------------- */

/* engine_config_init(NULL) is a no-op; engine_config_set refuses NULLs with ENGINE_EINVAL. */
static void test_config_null_args(void **state)
{
    (void)state;
    engine_config cfg;
    char err[128];

    engine_config_init(NULL);
    engine_config_init(&cfg);
    assert_int_equal(engine_config_set(NULL, "max_files", "1", err, sizeof(err)), ENGINE_EINVAL);
    assert_int_equal(engine_config_set(&cfg, NULL, "1", err, sizeof(err)), ENGINE_EINVAL);
    assert_int_equal(engine_config_set(&cfg, "max_files", NULL, err, sizeof(err)), ENGINE_EINVAL);
    assert_int_equal(engine_config_set(NULL, NULL, NULL, NULL, 0), ENGINE_EINVAL);
    assert_int_equal(engine_config_set(&cfg, "no_such_key", "1", NULL, 0), ENGINE_ECONFIG);
    assert_int_equal(cfg.max_files, 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_functions),
        cmocka_unit_test(test_compile_files_null_args),
        cmocka_unit_test(test_compile_files_missing_path),
        cmocka_unit_test(test_compile_files_empty_dir),
        cmocka_unit_test(test_compile_files_ok),
        cmocka_unit_test(test_compile_string_null_args),
        cmocka_unit_test(test_compile_string_no_rules),
        cmocka_unit_test(test_compile_string_bad_rules),
        cmocka_unit_test(test_compile_bad_cache_dir),
        cmocka_unit_test(test_rules_accessors_null),
        cmocka_unit_test_setup_teardown(test_rules_accessors_real, setup_rules, teardown_rules),
        cmocka_unit_test_setup_teardown(test_scratch_null_args, setup_rules, teardown_rules),
        cmocka_unit_test_setup_teardown(test_scan_buffer_null_args, setup_rules, teardown_rules),
        cmocka_unit_test_setup_teardown(test_scan_buffer_null_empty, setup_rules, teardown_rules),
        cmocka_unit_test_setup_teardown(test_scan_buffer_unknown_hints, setup_rules,
                                        teardown_rules),
        cmocka_unit_test_setup_teardown(test_result_cleanup, setup_rules, teardown_rules),
        cmocka_unit_test_setup_teardown(test_stream_open_null_args, setup_rules, teardown_rules),
        cmocka_unit_test_setup_teardown(test_stream_write_null_args, setup_rules, teardown_rules),
        cmocka_unit_test_setup_teardown(test_stream_close_null_args, setup_rules, teardown_rules),
        cmocka_unit_test_setup_teardown(test_stream_holds_reference, setup_rules, teardown_rules),
        cmocka_unit_test(test_config_null_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
