/*
 * test_config.c - unit tests for engine/src/config.c: the `engine` section's defaults and the
 * parser behind engine_config_set(). The test keeps its own list of every key with its field,
 * type and documented bounds, and drives each key through valid values, both ends of its range,
 * one step past each end, boolean spellings, K/M/G suffixes, junk, negatives and overflow. After
 * every rejected value it checks that the whole structure is byte-for-byte what it was before, and
 * that the error message names the key. Error buffers are surrounded by guard bytes, so a message
 * written past errlen is caught. Nothing here allocates, so there is nothing to clean up.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "engine/engine.h"

/* How a key's field is stored. */
typedef enum field_type { FIELD_BOOL, FIELD_SIZE, FIELD_U64, FIELD_UINT } field_type;

/* One configuration key as the header and the config reference describe it. */
typedef struct key_info {
    const char *name;
    field_type type;
    size_t offset;
    uint64_t def;
    uint64_t min;
    uint64_t max;
} key_info;

/* The fields of one key_info row; the key name is the field name. */
#define KEY_INFO(f, t, d, lo, hi) #f, t, offsetof(engine_config, f), d, lo, hi

static const key_info keys[] = {
    {KEY_INFO(narrow_utf16, FIELD_BOOL, 1, 0, 1)},
    {KEY_INFO(normalize, FIELD_BOOL, 1, 0, 1)},
    {KEY_INFO(decode_base64, FIELD_BOOL, 1, 0, 1)},
    {KEY_INFO(min_base64, FIELD_SIZE, 32, 8, 1u << 20)},
    {KEY_INFO(max_decode, FIELD_SIZE, 4u << 20, 1024, 1u << 30)},
    {KEY_INFO(max_decode_total, FIELD_SIZE, 16u << 20, 1024, 1u << 30)},
    {KEY_INFO(max_decode_depth, FIELD_UINT, 3, 0, 16)},
    {KEY_INFO(scan_archives, FIELD_BOOL, 0, 0, 1)},
    {KEY_INFO(scan_packages, FIELD_BOOL, 0, 0, 1)},
    {KEY_INFO(scan_office, FIELD_BOOL, 1, 0, 1)},
    {KEY_INFO(max_compound_size, FIELD_U64, 8388608, 0, UINT64_MAX)},
    {KEY_INFO(max_recursion, FIELD_UINT, 16, 0, 64)},
    {KEY_INFO(max_files, FIELD_UINT, 1000, 1, UINT_MAX)},
    {KEY_INFO(max_scan_size, FIELD_U64, 104857600, 1, UINT64_MAX)},
    {KEY_INFO(max_ratio, FIELD_UINT, 250, 1, UINT_MAX)},
    {KEY_INFO(max_scan_time_ms, FIELD_UINT, 30000, 1, UINT_MAX)},
};

#undef KEY_INFO

#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* Guard bytes around error buffers. */
#define GUARD      0x5A
#define GUARD_SIZE 16

/* An error buffer with guard bytes on both sides. */
typedef struct err_buf {
    char before[GUARD_SIZE];
    char text[256];
    char after[GUARD_SIZE];
} err_buf;

/* Fills an error buffer (text and guards) with the guard byte. */
static void err_buf_reset(err_buf *e)
{
    memset(e, GUARD, sizeof(*e));
}

/*
 * Asserts that nothing was written outside e->text[0..errlen) and, when a message is expected
 * (written), that it is terminated inside the buffer.
 */
static void err_buf_check(const err_buf *e, size_t errlen, bool written)
{
    for (size_t i = 0; i < GUARD_SIZE; i++) {
        assert_int_equal((unsigned char)e->before[i], GUARD);
        assert_int_equal((unsigned char)e->after[i], GUARD);
    }
    for (size_t i = errlen; i < sizeof(e->text); i++)
        assert_int_equal((unsigned char)e->text[i], GUARD);
    if (written && errlen > 0)
        assert_non_null(memchr(e->text, '\0', errlen));
}

/* Reads the field a key describes, widened to 64 bits. */
static uint64_t field_get(const engine_config *cfg, const key_info *k)
{
    const char *field = (const char *)cfg + k->offset;
    switch (k->type) {
    case FIELD_BOOL:
        return *(const bool *)(const void *)field ? 1 : 0;
    case FIELD_SIZE:
        return *(const size_t *)(const void *)field;
    case FIELD_U64:
        return *(const uint64_t *)(const void *)field;
    case FIELD_UINT:
        return *(const unsigned *)(const void *)field;
    }
    fail_msg("unknown field type");
    return 0;
}

/* Looks a key up in the test's table; fails the test when it is not there. */
static const key_info *key_find(const char *name)
{
    size_t i = 0;

    while (i + 1 < N_KEYS && strcmp(keys[i].name, name) != 0)
        i++;
    assert_string_equal(keys[i].name, name);
    return &keys[i];
}

/* Sets key to value on a fresh default configuration, expects success and returns the field. */
static uint64_t set_ok(const char *key, const char *value)
{
    engine_config cfg;
    err_buf e;

    engine_config_init(&cfg);
    err_buf_reset(&e);
    int rc = engine_config_set(&cfg, key, value, e.text, sizeof(e.text));
    if (rc != 0)
        fail_msg("engine.%s = '%s' was refused (%d): %.*s", key, value, rc, (int)sizeof(e.text),
                 e.text);
    err_buf_check(&e, sizeof(e.text), false);
    return field_get(&cfg, key_find(key));
}

/*
 * Sets key to value on a configuration whose fields were all changed from the defaults, expects
 * ENGINE_ECONFIG, an error that names the key, and the structure unchanged byte for byte.
 */
static void set_bad(const char *key, const char *value)
{
    engine_config cfg, before;
    err_buf e;
    char want[96];

    engine_config_init(&cfg);
    /* Move every field off its default so "unchanged" cannot mean "reset to the default". */
    assert_int_equal(engine_config_set(&cfg, "narrow_utf16", "0", NULL, 0), 0);
    assert_int_equal(engine_config_set(&cfg, "scan_archives", "1", NULL, 0), 0);
    assert_int_equal(engine_config_set(&cfg, "min_base64", "40", NULL, 0), 0);
    assert_int_equal(engine_config_set(&cfg, "max_recursion", "7", NULL, 0), 0);
    assert_int_equal(engine_config_set(&cfg, "max_files", "77", NULL, 0), 0);
    assert_int_equal(engine_config_set(&cfg, "max_scan_size", "12345", NULL, 0), 0);
    assert_int_equal(engine_config_set(&cfg, "max_compound_size", "999", NULL, 0), 0);
    memcpy(&before, &cfg, sizeof(cfg));

    err_buf_reset(&e);
    int rc = engine_config_set(&cfg, key, value, e.text, sizeof(e.text));
    if (rc != ENGINE_ECONFIG)
        fail_msg("engine.%s = '%s' gave %d, expected ENGINE_ECONFIG", key, value, rc);
    err_buf_check(&e, sizeof(e.text), true);
    snprintf(want, sizeof(want), "engine.%s", key);
    if (strstr(e.text, want) == NULL)
        fail_msg("error for engine.%s = '%s' does not name the key: %s", key, value, e.text);
    assert_memory_equal(&cfg, &before, sizeof(cfg));

    /* The same failure with no error buffer at all. */
    assert_int_equal(engine_config_set(&cfg, key, value, NULL, 0), ENGINE_ECONFIG);
    assert_memory_equal(&cfg, &before, sizeof(cfg));
}

/* ---------------------------------------------------------------------------------------------
 * Defaults
 * ------------------------------------------------------------------------------------------- */

/* engine_config_init gives exactly the documented defaults, whatever the memory held before. */
static void test_defaults_exact(void **state)
{
    (void)state;
    engine_config cfg;

    memset(&cfg, 0xA5, sizeof(cfg));
    engine_config_init(&cfg);
    assert_true(cfg.narrow_utf16);
    assert_true(cfg.normalize);
    assert_true(cfg.decode_base64);
    assert_int_equal(cfg.min_base64, 32);
    assert_int_equal(cfg.max_decode, 4u * 1024 * 1024);
    assert_int_equal(cfg.max_decode_total, 16u * 1024 * 1024);
    assert_int_equal(cfg.max_decode_depth, 3);
    assert_false(cfg.scan_archives);
    assert_false(cfg.scan_packages);
    assert_true(cfg.scan_office);
    assert_int_equal(cfg.max_compound_size, 8388608);
    assert_int_equal(cfg.max_recursion, 16);
    assert_int_equal(cfg.max_files, 1000);
    assert_int_equal(cfg.max_scan_size, 104857600);
    assert_int_equal(cfg.max_ratio, 250);
    assert_int_equal(cfg.max_scan_time_ms, 30000);

    for (size_t i = 0; i < N_KEYS; i++)
        assert_int_equal(field_get(&cfg, &keys[i]), keys[i].def);

    /* Initialising twice gives the same bytes (padding included). */
    engine_config again;
    memset(&again, 0x3C, sizeof(again));
    engine_config_init(&again);
    assert_memory_equal(&cfg, &again, sizeof(cfg));
}

/* engine_config_init accepts NULL. */
static void test_init_null(void **state)
{
    (void)state;
    engine_config_init(NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Valid values
 * ------------------------------------------------------------------------------------------- */

/* Every key accepts a value inside its range and stores exactly that value in its own field. */
static void test_every_key_accepts_valid_value(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_info *k = &keys[i];
        engine_config cfg, expect;
        uint64_t v = k->type == FIELD_BOOL ? !k->def : k->min + 1;
        char text[32];

        snprintf(text, sizeof(text), "%llu", (unsigned long long)v);
        engine_config_init(&cfg);
        engine_config_init(&expect);
        assert_int_equal(engine_config_set(&cfg, k->name, text, NULL, 0), 0);
        assert_int_equal(field_get(&cfg, k), v);
        /* No other field moved. */
        for (size_t j = 0; j < N_KEYS; j++)
            if (j != i)
                assert_int_equal(field_get(&cfg, &keys[j]), field_get(&expect, &keys[j]));
    }
}

/* Both ends of every numeric range are accepted; one step outside either end is refused. */
static void test_range_bounds(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_info *k = &keys[i];
        char text[32];

        if (k->type == FIELD_BOOL)
            continue;
        snprintf(text, sizeof(text), "%llu", (unsigned long long)k->min);
        assert_int_equal(set_ok(k->name, text), k->min);
        snprintf(text, sizeof(text), "%llu", (unsigned long long)k->max);
        assert_int_equal(set_ok(k->name, text), k->max);
        if (k->min > 0) {
            snprintf(text, sizeof(text), "%llu", (unsigned long long)(k->min - 1));
            set_bad(k->name, text);
        }
        if (k->max < UINT64_MAX) {
            snprintf(text, sizeof(text), "%llu", (unsigned long long)(k->max + 1));
            set_bad(k->name, text);
        }
    }
}

/* The out-of-range values the brief names, and a few more with suffixes. */
static void test_out_of_range(void **state)
{
    (void)state;
    set_bad("max_recursion", "65");
    set_bad("max_files", "0");
    set_bad("max_ratio", "0");
    set_bad("max_scan_time_ms", "0");
    set_bad("max_scan_size", "0");
    set_bad("max_decode_depth", "17");
    set_bad("min_base64", "7");
    set_bad("min_base64", "2M");
    set_bad("max_decode", "1023");
    set_bad("max_decode", "2G");
    set_bad("max_decode_total", "1025M");
    set_bad("max_files", "4G");         /* 2^32 does not fit an unsigned field */
    set_bad("max_files", "4294967296"); /* nor written out */
    set_bad("max_scan_time_ms", "99999999999");
    assert_int_equal(set_ok("max_recursion", "64"), 64);
    assert_int_equal(set_ok("max_recursion", "0"), 0);
    assert_int_equal(set_ok("max_files", "1"), 1);
    assert_int_equal(set_ok("max_files", "4294967295"), UINT_MAX);
    assert_int_equal(set_ok("max_decode", "1G"), 1u << 30);
    assert_int_equal(set_ok("min_base64", "1M"), 1u << 20);
}

/* ---------------------------------------------------------------------------------------------
 * Booleans
 * ------------------------------------------------------------------------------------------- */

/* Every boolean key accepts the eight spellings in any letter case. */
static void test_bool_spellings(void **state)
{
    (void)state;
    static const char *const yes[] = {"1",    "yes", "true", "on",  "YES",  "Yes", "TRUE",
                                      "True", "ON",  "On",   "yEs", "tRuE", "oN"};
    static const char *const no[] = {"0",     "no",  "false", "off", "NO",    "No", "FALSE",
                                     "False", "OFF", "Off",   "nO",  "fAlSe", "oFf"};

    for (size_t i = 0; i < N_KEYS; i++) {
        const key_info *k = &keys[i];

        if (k->type != FIELD_BOOL)
            continue;
        for (size_t j = 0; j < sizeof(yes) / sizeof(yes[0]); j++)
            assert_int_equal(set_ok(k->name, yes[j]), 1);
        for (size_t j = 0; j < sizeof(no) / sizeof(no[0]); j++)
            assert_int_equal(set_ok(k->name, no[j]), 0);
    }
}

/* Anything else is refused for a boolean key. */
static void test_bool_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {"",     "2",   "-1",   "y",    "n",      "t",  "f",
                                      "yess", "tru", "offf", " yes", "yes ",   "01", "00",
                                      "10",   "1K",  "none", "nil",  "enable", "o",  "truex"};

    for (size_t i = 0; i < N_KEYS; i++) {
        const key_info *k = &keys[i];

        if (k->type != FIELD_BOOL)
            continue;
        for (size_t j = 0; j < sizeof(bad) / sizeof(bad[0]); j++)
            set_bad(k->name, bad[j]);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Integers
 * ------------------------------------------------------------------------------------------- */

/* K, M and G multiply by powers of 1024, in either case, with an optional B or iB after them. */
static void test_int_suffixes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t value;
    } cases[] = {
        {"8", 8},
        {"8K", 8ull << 10},
        {"8k", 8ull << 10},
        {"8KB", 8ull << 10},
        {"8kb", 8ull << 10},
        {"8M", 8ull << 20},
        {"8m", 8ull << 20},
        {"8MB", 8ull << 20},
        {"8Mb", 8ull << 20},
        {"1G", 1ull << 30},
        {"1g", 1ull << 30},
        {"1GB", 1ull << 30},
        {"3G", 3ull << 30},
        {"0K", 0},
        {"007", 7},
        {"16777215G", 16777215ull << 30},
        {"18446744073709551615", UINT64_MAX},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(set_ok("max_compound_size", cases[i].text), cases[i].value);
    assert_int_equal(set_ok("max_files", "2K"), 2048);
    assert_int_equal(set_ok("max_decode", "4M"), 4u << 20);
}

/* The binary-prefix spellings KiB, MiB and GiB mean the same as K, M and G. */
static void test_int_suffixes_iec(void **state)
{
    (void)state;
    assert_int_equal(set_ok("max_compound_size", "8KiB"), 8ull << 10);
    assert_int_equal(set_ok("max_compound_size", "8MiB"), 8ull << 20);
    assert_int_equal(set_ok("max_compound_size", "1GiB"), 1ull << 30);
    assert_int_equal(set_ok("max_decode", "4MiB"), 4u << 20);
}

/* A suffix that is neither B nor iB after K/M/G is junk. */
static void test_int_suffix_partial_rejected(void **state)
{
    (void)state;
    set_bad("max_compound_size", "8Mi");
    set_bad("max_compound_size", "8Ki");
}

/* Negatives, junk, empty strings, spaces, other bases and stray suffixes are refused. */
static void test_int_rejects_junk(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",    "-1",  "-0",   "+5",    " 5",   "5 ",  "\t5", "abc",   "5x",    "x5",
        "5KK", "5K5", "5KBB", "5MiBB", "0x10", "1.5", "1e3", "1,000", "1_000", "5T",
        "5P",  "5B",  "K",    "M5",    "--1",  "5-",  "yes", "true",  "\n",    "5\n",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set_bad("max_compound_size", bad[i]);
        set_bad("max_files", bad[i]);
    }
}

/* Values that do not fit 64 bits, written out or through a suffix, are refused. */
static void test_int_overflow(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "18446744073709551616", /* 2^64 */
        "99999999999999999999999999",
        "18014398509481984K",    /* 2^54 K = 2^64 */
        "17592186044416M",       /* 2^44 M = 2^64 */
        "17179869184G",          /* 2^34 G = 2^64 */
        "18446744073709551615K", /* UINT64_MAX K */
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        set_bad("max_compound_size", bad[i]);
        set_bad("max_scan_size", bad[i]);
    }
    /* Large values that still fit, up to the largest a G suffix can reach. */
    assert_int_equal(set_ok("max_compound_size", "17179869184K"), 1ull << 44);
    assert_int_equal(set_ok("max_compound_size", "17179869183G"), 17179869183ull << 30);
}

/* ---------------------------------------------------------------------------------------------
 * Keys, arguments, error buffers
 * ------------------------------------------------------------------------------------------- */

/* An unknown key is ENGINE_ECONFIG with a message that names it, and changes nothing. */
static void test_unknown_key(void **state)
{
    (void)state;
    static const char *const unknown[] = {
        "nope",       "",           "max_file",         "max_filess",
        " max_files", "max_files ", "engine.max_files", "rules"};

    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        engine_config cfg, before;
        err_buf e;
        char want[64];

        engine_config_init(&cfg);
        memcpy(&before, &cfg, sizeof(cfg));
        err_buf_reset(&e);
        assert_int_equal(engine_config_set(&cfg, unknown[i], "1", e.text, sizeof(e.text)),
                         ENGINE_ECONFIG);
        err_buf_check(&e, sizeof(e.text), true);
        snprintf(want, sizeof(want), "engine.%s:", unknown[i]);
        if (strstr(e.text, want) == NULL)
            fail_msg("error for unknown key '%s' does not name it: %s", unknown[i], e.text);
        assert_non_null(strstr(e.text, "unknown key"));
        assert_memory_equal(&cfg, &before, sizeof(cfg));
    }
}

/* NULL for the configuration, the key or the value is ENGINE_EINVAL, with or without err. */
static void test_null_args(void **state)
{
    (void)state;
    engine_config cfg, before;
    err_buf e;

    engine_config_init(&cfg);
    memcpy(&before, &cfg, sizeof(cfg));
    err_buf_reset(&e);
    assert_int_equal(engine_config_set(NULL, "max_files", "1", e.text, sizeof(e.text)),
                     ENGINE_EINVAL);
    assert_int_equal(engine_config_set(&cfg, NULL, "1", e.text, sizeof(e.text)), ENGINE_EINVAL);
    assert_int_equal(engine_config_set(&cfg, "max_files", NULL, e.text, sizeof(e.text)),
                     ENGINE_EINVAL);
    assert_int_equal(engine_config_set(NULL, NULL, NULL, NULL, 0), ENGINE_EINVAL);
    assert_int_equal(engine_config_set(&cfg, NULL, NULL, NULL, 0), ENGINE_EINVAL);
    assert_int_equal(engine_config_set(NULL, "max_files", "1", NULL, 0), ENGINE_EINVAL);
    err_buf_check(&e, sizeof(e.text), false);
    assert_memory_equal(&cfg, &before, sizeof(cfg));
}

/* err == NULL with errlen == 0 is safe on every path: success, bad value, range, unknown key. */
static void test_no_error_buffer(void **state)
{
    (void)state;
    engine_config cfg;

    engine_config_init(&cfg);
    assert_int_equal(engine_config_set(&cfg, "max_files", "5", NULL, 0), 0);
    assert_int_equal(cfg.max_files, 5);
    assert_int_equal(engine_config_set(&cfg, "max_files", "junk", NULL, 0), ENGINE_ECONFIG);
    assert_int_equal(engine_config_set(&cfg, "max_files", "0", NULL, 0), ENGINE_ECONFIG);
    assert_int_equal(engine_config_set(&cfg, "scan_office", "maybe", NULL, 0), ENGINE_ECONFIG);
    assert_int_equal(engine_config_set(&cfg, "no_such_key", "1", NULL, 0), ENGINE_ECONFIG);
    assert_int_equal(cfg.max_files, 5);
}

/* A short error buffer gets a truncated, terminated message and nothing past errlen. */
static void test_short_error_buffer(void **state)
{
    (void)state;
    static const size_t lens[] = {1, 2, 8, 17};

    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        engine_config cfg;
        err_buf e;

        engine_config_init(&cfg);
        err_buf_reset(&e);
        assert_int_equal(engine_config_set(&cfg, "no_such_key", "1", e.text, lens[i]),
                         ENGINE_ECONFIG);
        err_buf_check(&e, lens[i], true);
        assert_int_equal(strlen(e.text), lens[i] - 1);

        err_buf_reset(&e);
        assert_int_equal(engine_config_set(&cfg, "max_files", "junk", e.text, lens[i]),
                         ENGINE_ECONFIG);
        err_buf_check(&e, lens[i], true);

        err_buf_reset(&e);
        assert_int_equal(engine_config_set(&cfg, "max_files", "0", e.text, lens[i]),
                         ENGINE_ECONFIG);
        err_buf_check(&e, lens[i], true);
    }
}

/* A long, hostile value in the message is truncated safely. */
static void test_long_value_in_message(void **state)
{
    (void)state;
    char value[1024];
    engine_config cfg;
    err_buf e;

    memset(value, 'z', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    value[0] = '%';
    value[1] = 's';
    engine_config_init(&cfg);
    err_buf_reset(&e);
    assert_int_equal(engine_config_set(&cfg, "max_files", value, e.text, sizeof(e.text)),
                     ENGINE_ECONFIG);
    err_buf_check(&e, sizeof(e.text), true);
    assert_non_null(strstr(e.text, "engine.max_files"));
    assert_int_equal(cfg.max_files, 1000);
}

/* A later valid set overrides an earlier one; a failed set in between keeps the earlier value. */
static void test_set_sequence(void **state)
{
    (void)state;
    engine_config cfg;

    engine_config_init(&cfg);
    assert_int_equal(engine_config_set(&cfg, "max_recursion", "10", NULL, 0), 0);
    assert_int_equal(engine_config_set(&cfg, "max_recursion", "65", NULL, 0), ENGINE_ECONFIG);
    assert_int_equal(cfg.max_recursion, 10);
    assert_int_equal(engine_config_set(&cfg, "max_recursion", "-3", NULL, 0), ENGINE_ECONFIG);
    assert_int_equal(cfg.max_recursion, 10);
    assert_int_equal(engine_config_set(&cfg, "max_recursion", "20", NULL, 0), 0);
    assert_int_equal(cfg.max_recursion, 20);
    assert_int_equal(engine_config_set(&cfg, "scan_office", "off", NULL, 0), 0);
    assert_int_equal(engine_config_set(&cfg, "scan_office", "perhaps", NULL, 0), ENGINE_ECONFIG);
    assert_false(cfg.scan_office);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_exact),
        cmocka_unit_test(test_init_null),
        cmocka_unit_test(test_every_key_accepts_valid_value),
        cmocka_unit_test(test_range_bounds),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_bool_spellings),
        cmocka_unit_test(test_bool_rejects),
        cmocka_unit_test(test_int_suffixes),
        cmocka_unit_test(test_int_suffixes_iec),
        cmocka_unit_test(test_int_suffix_partial_rejected),
        cmocka_unit_test(test_int_rejects_junk),
        cmocka_unit_test(test_int_overflow),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_null_args),
        cmocka_unit_test(test_no_error_buffer),
        cmocka_unit_test(test_short_error_buffer),
        cmocka_unit_test(test_long_value_in_message),
        cmocka_unit_test(test_set_sequence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
