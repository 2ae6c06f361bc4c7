/*
 * test_default_rules.c - tests the bundled rule set, engine/rules/default.yar.
 *
 * The set must compile with the engine, hold at least 32 rules, and every rule must come with two
 * samples in tests/engine/data/rules/: <rule>.pos, which the rule detects, and <rule>.neg, a near
 * miss that no rule of the set detects. Also: EICAR is found inside a larger buffer, and the AMSI
 * test sample is found in ASCII and in UTF-16LE. A failing sample is named in the output; all
 * failures are listed before the test fails.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "engine/engine.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULES_FILE  AMSI_SOURCE_DIR "/engine/rules/default.yar"
#define SAMPLES_DIR AMSI_TEST_DATA "/engine/data/rules"
#define MIN_RULES   32

static const char eicar[] = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
static const char amsi_sample[] = "AMSI Test Sample: 7e72c3ce-861b-4339-8740-0ac1484c1386";

/* What every test shares: the compiled bundled rules and one scratch. */
typedef struct fixture {
    engine_rules *rules;
    engine_scratch *scratch;
} fixture;

/* Compiles default.yar and allocates the scratch; prints the compiler's reason on failure. */
static int group_setup(void **state)
{
    const char *paths[] = {RULES_FILE};
    engine_diag diag;
    fixture *fx;
    int rc;

    rc = engine_check_platform();
    if (rc != 0) {
        print_error("engine_check_platform: %s\n", engine_strerror(rc));
        return -1;
    }
    fx = calloc(1, sizeof(*fx));
    if (fx == NULL)
        return -1;
    memset(&diag, 0, sizeof(diag));
    rc = engine_rules_compile_files(paths, 1, NULL, &fx->rules, &diag);
    if (rc != 0) {
        print_error("%s does not compile: %s: %s\n", RULES_FILE, engine_err_name(rc), diag.text);
        free(fx);
        return -1;
    }
    rc = engine_scratch_create(fx->rules, &fx->scratch);
    if (rc != 0) {
        print_error("engine_scratch_create: %s\n", engine_strerror(rc));
        engine_rules_unref(fx->rules);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

/* Releases the scratch and the rules. */
static int group_teardown(void **state)
{
    fixture *fx = *state;

    if (fx != NULL) {
        engine_scratch_destroy(fx->scratch);
        engine_rules_unref(fx->rules);
        free(fx);
    }
    return 0;
}

/* Reads a whole file into a malloc'd buffer; returns NULL (and prints why) when it cannot. */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long size;

    if (f == NULL) {
        print_error("missing sample: %s\n", path);
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)size + 1);
        if (buf != NULL && fread(buf, 1, (size_t)size, f) != (size_t)size) {
            free(buf);
            buf = NULL;
        }
        *len = (size_t)size;
    }
    fclose(f);
    if (buf == NULL)
        print_error("cannot read sample: %s\n", path);
    return buf;
}

/* Prints the matches of a result, one per line, after the name of what was scanned. */
static void print_matches(const char *what, const engine_result *res)
{
    print_error("  %s: verdict %s, amsi_result %d, %zu match(es)\n", what,
                engine_verdict_name(res->verdict), res->amsi_result, res->match_count);
    for (size_t i = 0; i < res->match_count; i++)
        print_error("    %s at %s (view %d)\n", res->matches[i].rule, res->matches[i].object,
                    (int)res->matches[i].view);
}

/* The match for `rule` in res, or NULL. */
static const engine_match *find_match(const engine_result *res, const char *rule)
{
    for (size_t i = 0; i < res->match_count; i++)
        if (strcmp(res->matches[i].rule, rule) == 0)
            return &res->matches[i];
    return NULL;
}

/* The value of meta key `key` of a match, or NULL. */
static const char *match_meta(const engine_match *m, const char *key)
{
    for (size_t i = 0; i < m->meta_count; i++)
        if (strcmp(m->meta_keys[i], key) == 0)
            return m->meta_values[i];
    return NULL;
}

/* Scans a buffer with the default configuration; prints the reason when the scan cannot run. */
static bool scan(const fixture *fx, const void *data, size_t len, unsigned hints,
                 engine_result *res, const char *what)
{
    int rc;

    memset(res, 0, sizeof(*res));
    rc = engine_scan_buffer(fx->rules, fx->scratch, NULL, data, len, NULL, hints, res);
    if (rc != 0) {
        print_error("FAIL %s: engine_scan_buffer returned %s\n", what, engine_err_name(rc));
        return false;
    }
    return true;
}

/* Releases a result and checks that it was zeroed. Returns true when it was. */
static bool cleanup(engine_result *res)
{
    engine_result_cleanup(res);
    return res->match_count == 0 && res->matches == NULL && res->object == NULL;
}

/*
 * Checks that `rule` detects the buffer: verdict DETECTED, AMSI_RESULT_DETECTED, the rule among
 * the matches, with the required meta. Prints `what` and the matches on failure.
 */
static bool expect_detected(const fixture *fx, const void *data, size_t len, unsigned hints,
                            const char *rule, const char *what)
{
    engine_result res;
    const engine_match *m;
    const char *author;
    bool ok;

    if (!scan(fx, data, len, hints, &res, what))
        return false;
    m = find_match(&res, rule);
    ok = res.verdict == ENGINE_VERDICT_DETECTED && res.amsi_result == ENGINE_AMSI_DETECTED &&
         m != NULL;
    if (!ok) {
        print_error("FAIL %s: expected rule %s to match\n", what, rule);
        print_matches(what, &res);
    } else {
        author = match_meta(m, "author");
        if (match_meta(m, "description") == NULL || author == NULL ||
            strcmp(author, "amsi-broker") != 0) {
            print_error("FAIL %s: rule %s lacks meta description or author = \"amsi-broker\"\n",
                        what, rule);
            ok = false;
        }
    }
    if (!cleanup(&res)) {
        print_error("FAIL %s: engine_result_cleanup left the result non-zero\n", what);
        ok = false;
    }
    return ok;
}

/* Checks that no rule detects the buffer: verdict CLEAN, AMSI_RESULT_NOT_DETECTED, no matches. */
static bool expect_clean(const fixture *fx, const void *data, size_t len, const char *what)
{
    engine_result res;
    bool ok;

    if (!scan(fx, data, len, 0, &res, what))
        return false;
    ok = res.verdict == ENGINE_VERDICT_CLEAN && res.amsi_result == ENGINE_AMSI_NOT_DETECTED &&
         res.match_count == 0;
    if (!ok) {
        print_error("FAIL %s: expected no match\n", what);
        print_matches(what, &res);
    }
    if (!cleanup(&res)) {
        print_error("FAIL %s: engine_result_cleanup left the result non-zero\n", what);
        ok = false;
    }
    return ok;
}

/* The set compiled (group setup) and holds at least MIN_RULES named rules. */
static void test_rule_count(void **state)
{
    const fixture *fx = *state;
    size_t count = engine_rules_count(fx->rules);

    if (count < MIN_RULES)
        print_error("%s has %zu rules, expected at least %d\n", RULES_FILE, count, MIN_RULES);
    assert_true(count >= MIN_RULES);
    for (size_t i = 0; i < count; i++) {
        const char *name = engine_rules_name(fx->rules, i);
        assert_non_null(name);
        assert_true(name[0] != '\0');
    }
    assert_null(engine_rules_name(fx->rules, count));
}

/* Every rule detects its .pos sample and no rule detects any .neg sample. */
static void test_rule_samples(void **state)
{
    const fixture *fx = *state;
    size_t count = engine_rules_count(fx->rules);
    unsigned failures = 0;

    for (size_t i = 0; i < count; i++) {
        const char *name = engine_rules_name(fx->rules, i);
        char path[1024];
        uint8_t *data;
        size_t len = 0;

        snprintf(path, sizeof(path), "%s/%s.pos", SAMPLES_DIR, name);
        data = read_file(path, &len);
        if (data == NULL || !expect_detected(fx, data, len, 0, name, path))
            failures++;
        free(data);

        snprintf(path, sizeof(path), "%s/%s.neg", SAMPLES_DIR, name);
        data = read_file(path, &len);
        if (data == NULL || !expect_clean(fx, data, len, path))
            failures++;
        free(data);
    }
    if (failures != 0)
        print_error("%u sample check(s) failed\n", failures);
    assert_int_equal(failures, 0);
}

/* Every sample file belongs to a rule of the set, so a renamed rule leaves no stale samples. */
static void test_no_orphan_samples(void **state)
{
    const fixture *fx = *state;
    size_t count = engine_rules_count(fx->rules);
    unsigned orphans = 0, files = 0;
    DIR *dir = opendir(SAMPLES_DIR);
    struct dirent *de;

    assert_non_null(dir);
    while ((de = readdir(dir)) != NULL) {
        const char *dot = strrchr(de->d_name, '.');
        bool known = false;

        if (de->d_name[0] == '.' || dot == NULL)
            continue;
        files++;
        if (strcmp(dot, ".pos") == 0 || strcmp(dot, ".neg") == 0) {
            size_t stem = (size_t)(dot - de->d_name);
            for (size_t i = 0; i < count && !known; i++) {
                const char *name = engine_rules_name(fx->rules, i);
                known = strlen(name) == stem && strncmp(name, de->d_name, stem) == 0;
            }
        }
        if (!known) {
            print_error("sample without a rule: %s/%s\n", SAMPLES_DIR, de->d_name);
            orphans++;
        }
    }
    closedir(dir);
    if (files != 2 * count)
        print_error("%s holds %u sample files, expected %zu (a .pos and a .neg per rule)\n",
                    SAMPLES_DIR, files, 2 * count);
    assert_int_equal(files, 2 * count);
    assert_int_equal(orphans, 0);
}

/* EICAR in the middle of a larger buffer of ordinary text is found. */
static void test_eicar_embedded(void **state)
{
    const fixture *fx = *state;
    const char *filler = "Quarterly report: all systems nominal, no incidents.\n";
    size_t flen = strlen(filler), elen = strlen(eicar), len = 0;
    char *buf = malloc(200 * flen + elen);

    assert_non_null(buf);
    for (int i = 0; i < 100; i++, len += flen)
        memcpy(buf + len, filler, flen);
    memcpy(buf + len, eicar, elen);
    len += elen;
    for (int i = 0; i < 100; i++, len += flen)
        memcpy(buf + len, filler, flen);

    assert_true(expect_detected(fx, buf, len, 0, "EICAR_Test_File", "EICAR inside 10 KB of text"));
    /* One byte less and it is not the test file. */
    assert_true(expect_clean(fx, buf, len - 100 * flen - 1, "EICAR without its last byte"));
    free(buf);
}

/* The AMSI test sample is found in ASCII and in UTF-16LE (with and without the caller's hint). */
static void test_amsi_sample(void **state)
{
    const fixture *fx = *state;
    size_t n = strlen(amsi_sample);
    uint8_t *wide = calloc(2 * n, 1);

    assert_non_null(wide);
    for (size_t i = 0; i < n; i++)
        wide[2 * i] = (uint8_t)amsi_sample[i];

    assert_true(expect_detected(fx, amsi_sample, n, 0, "AMSI_Test_Sample", "AMSI sample, ASCII"));
    assert_true(expect_detected(fx, wide, 2 * n, 0, "AMSI_Test_Sample", "AMSI sample, UTF-16LE"));
    assert_true(expect_detected(fx, wide, 2 * n, ENGINE_HINT_UTF16LE, "AMSI_Test_Sample",
                                "AMSI sample, UTF-16LE with hint"));
    free(wide);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule_count),        cmocka_unit_test(test_rule_samples),
        cmocka_unit_test(test_no_orphan_samples), cmocka_unit_test(test_eicar_embedded),
        cmocka_unit_test(test_amsi_sample),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
