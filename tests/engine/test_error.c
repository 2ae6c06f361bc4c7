/*
 * test_error.c - unit tests for engine/src/error.c: the error table behind engine_strerror() and
 * engine_err_name(), the verdict names, and the two platform queries. The expected names and
 * messages are rebuilt here from ENGINE_ERRNO_MAP itself, so the test checks that every code of
 * the map reaches both functions, that every code, name and message is distinct, and that any code
 * outside the map falls back to "unknown error" / "ENGINE_EUNKNOWN". Nothing here allocates, so
 * there is nothing to clean up.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "engine/engine.h"

/* One row of ENGINE_ERRNO_MAP as the test expects the library to report it. */
typedef struct err_row {
    int code;      /* the number written in the map */
    int enum_code; /* the enumerator ENGINE_E<NAME> */
    const char *name;
    const char *msg;
} err_row;

#define TEST_ERR_ROW(name, code, msg) {(code), ENGINE_E##name, "ENGINE_E" #name, (msg)},
static const err_row err_rows[] = {ENGINE_ERRNO_MAP(TEST_ERR_ROW)};
#undef TEST_ERR_ROW

#define N_ERR_ROWS (sizeof(err_rows) / sizeof(err_rows[0]))

/* True when code is one of the map's codes. */
static bool code_in_map(int code)
{
    for (size_t i = 0; i < N_ERR_ROWS; i++)
        if (err_rows[i].code == code)
            return true;
    return false;
}

/* Every code of the map yields its own name and message, and the enumerator has the same value. */
static void test_every_code_has_name_and_message(void **state)
{
    (void)state;
    assert_true(N_ERR_ROWS >= 2);
    for (size_t i = 0; i < N_ERR_ROWS; i++) {
        const err_row *r = &err_rows[i];
        const char *name = engine_err_name(r->code);
        const char *msg = engine_strerror(r->code);

        assert_int_equal(r->enum_code, r->code);
        assert_non_null(name);
        assert_non_null(msg);
        assert_string_equal(name, r->name);
        assert_string_equal(msg, r->msg);
        assert_true(strncmp(name, "ENGINE_E", 8) == 0);
        assert_true(strlen(name) > 8);
        assert_true(strlen(msg) > 0);
        assert_string_not_equal(name, "ENGINE_EUNKNOWN");
        assert_string_not_equal(msg, "unknown error");
    }
}

/* The name suffix is an upper-case identifier, as the enumerators are written. */
static void test_names_are_upper_case_identifiers(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ERR_ROWS; i++) {
        const char *name = engine_err_name(err_rows[i].code);

        for (const char *p = name; *p != '\0'; p++)
            assert_true(isupper((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_');
    }
}

/* No two rows share a code, a name or a message. */
static void test_codes_names_messages_distinct(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ERR_ROWS; i++) {
        for (size_t j = i + 1; j < N_ERR_ROWS; j++) {
            assert_int_not_equal(err_rows[i].code, err_rows[j].code);
            assert_string_not_equal(engine_err_name(err_rows[i].code),
                                    engine_err_name(err_rows[j].code));
            assert_string_not_equal(engine_strerror(err_rows[i].code),
                                    engine_strerror(err_rows[j].code));
        }
    }
}

/* Success is 0 and every failure is negative, as the conventions require. */
static void test_codes_are_zero_or_negative(void **state)
{
    (void)state;
    assert_int_equal(ENGINE_EOK, 0);
    assert_string_equal(engine_err_name(0), "ENGINE_EOK");
    assert_string_equal(engine_strerror(0), "success");
    for (size_t i = 0; i < N_ERR_ROWS; i++)
        if (strcmp(err_rows[i].name, "ENGINE_EOK") != 0)
            assert_true(err_rows[i].code < 0);
}

/* Codes outside the map, including the extremes and the neighbours of real codes, fall back. */
static void test_unknown_codes(void **state)
{
    (void)state;
    static const int candidates[] = {1,     2,    42,      -10,     -11,      -100,
                                     -1000, 1000, INT_MAX, INT_MIN, -INT_MAX, -12};
    size_t checked = 0;

    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        int code = candidates[i];

        if (code_in_map(code))
            continue;
        assert_string_equal(engine_strerror(code), "unknown error");
        assert_string_equal(engine_err_name(code), "ENGINE_EUNKNOWN");
        checked++;
    }
    /* Every code just past the lowest one in the map is unknown too. */
    int lowest = 0;
    for (size_t i = 0; i < N_ERR_ROWS; i++)
        if (err_rows[i].code < lowest)
            lowest = err_rows[i].code;
    assert_false(code_in_map(lowest - 1));
    assert_string_equal(engine_strerror(lowest - 1), "unknown error");
    assert_string_equal(engine_err_name(lowest - 1), "ENGINE_EUNKNOWN");
    assert_true(checked >= 8);
}

/* The four verdicts have the documented names; a value outside the enum gets some other name. */
static void test_verdict_names(void **state)
{
    (void)state;
    assert_string_equal(engine_verdict_name(ENGINE_VERDICT_CLEAN), "clean");
    assert_string_equal(engine_verdict_name(ENGINE_VERDICT_DETECTED), "detected");
    assert_string_equal(engine_verdict_name(ENGINE_VERDICT_LIMIT), "limit");
    assert_string_equal(engine_verdict_name(ENGINE_VERDICT_ERROR), "error");

    const char *other = engine_verdict_name((engine_verdict)99);
    assert_non_null(other);
    assert_string_not_equal(other, "clean");
    assert_string_not_equal(other, "detected");
    assert_string_not_equal(other, "limit");
    assert_string_not_equal(other, "error");
}

/* The machine running the tests can run Hyperscan; asking again gives the same answer. */
static void test_check_platform(void **state)
{
    (void)state;
    assert_int_equal(engine_check_platform(), 0);
    assert_int_equal(engine_check_platform(), 0);
}

/* The Hyperscan version is a non-empty string that starts with a digit and does not change. */
static void test_hyperscan_version(void **state)
{
    (void)state;
    const char *v = engine_hyperscan_version();

    assert_non_null(v);
    assert_true(strlen(v) > 0);
    assert_true(isdigit((unsigned char)v[0]));
    assert_string_equal(engine_hyperscan_version(), v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_name_and_message),
        cmocka_unit_test(test_names_are_upper_case_identifiers),
        cmocka_unit_test(test_codes_names_messages_distinct),
        cmocka_unit_test(test_codes_are_zero_or_negative),
        cmocka_unit_test(test_unknown_codes),
        cmocka_unit_test(test_verdict_names),
        cmocka_unit_test(test_check_platform),
        cmocka_unit_test(test_hyperscan_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
