/*
 * test_verdicts.c - the broker's verdict cache (broker/src/verdicts.c): hits and misses by key and
 * generation, replacement within a set, a zero-sized cache, and many threads at once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "verdicts.h"

static void key_of(uint64_t n, uint8_t key[32])
{
    memset(key, 0, 32);
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)((n * 0x9E3779B97F4A7C15ull) >> (i % 8 * 8)) ^ (uint8_t)i;
    memcpy(key + 8, &n, sizeof(n));
}

static void test_hit_and_generation(void **state)
{
    (void)state;
    broker_verdicts *vc = broker_verdicts_create(1024);
    assert_non_null(vc);
    uint8_t k[32];
    key_of(1, k);
    broker_verdict v = {.amsi_result = 32768}, out;
    strcpy(v.rule, "Rule");
    strcpy(v.object, ">base64@3");
    assert_false(broker_verdicts_get(vc, k, 1, &out));
    broker_verdicts_put(vc, k, 1, &v);
    assert_true(broker_verdicts_get(vc, k, 1, &out));
    assert_int_equal(out.amsi_result, 32768);
    assert_string_equal(out.rule, "Rule");
    assert_string_equal(out.object, ">base64@3");
    /* A reload (new generation) makes every entry stale. */
    assert_false(broker_verdicts_get(vc, k, 2, &out));
    v.amsi_result = 1;
    broker_verdicts_put(vc, k, 2, &v);
    assert_true(broker_verdicts_get(vc, k, 2, &out));
    assert_int_equal(out.amsi_result, 1);
    assert_false(broker_verdicts_get(vc, k, 1, &out));
    broker_verdicts_destroy(vc);
}

static void test_bounded(void **state)
{
    (void)state;
    broker_verdicts *vc = broker_verdicts_create(256);
    broker_verdict v = {.amsi_result = 1}, out;
    uint8_t k[32];
    for (uint64_t i = 0; i < 100000; i++) {
        key_of(i, k);
        broker_verdicts_put(vc, k, 7, &v);
    }
    size_t hits = 0;
    for (uint64_t i = 0; i < 100000; i++) {
        key_of(i, k);
        hits += broker_verdicts_get(vc, k, 7, &out);
    }
    /* At most the capacity survives; the most recent ones do. */
    assert_true(hits <= 256);
    assert_true(hits > 0);
    key_of(99999, k);
    assert_true(broker_verdicts_get(vc, k, 7, &out));
    broker_verdicts_destroy(vc);
}

static void test_zero_size_and_null(void **state)
{
    (void)state;
    broker_verdicts *vc = broker_verdicts_create(0);
    assert_non_null(vc);
    uint8_t k[32];
    key_of(5, k);
    broker_verdict v = {.amsi_result = 1}, out;
    broker_verdicts_put(vc, k, 1, &v);
    assert_false(broker_verdicts_get(vc, k, 1, &out));
    broker_verdicts_destroy(vc);
    broker_verdicts_destroy(NULL);
    assert_false(broker_verdicts_get(NULL, k, 1, &out));
    broker_verdicts_put(NULL, k, 1, &v);
}

static broker_verdicts *shared;

static void *hammer(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg * 1000000u;
    broker_verdict v = {.amsi_result = 32768}, out;
    uint8_t k[32];
    for (uint64_t i = 0; i < 20000; i++) {
        key_of(base + i % 500, k);
        if (!broker_verdicts_get(shared, k, 3, &out))
            broker_verdicts_put(shared, k, 3, &v);
        else if (out.amsi_result != 32768)
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    shared = broker_verdicts_create(4096);
    pthread_t th[4];
    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, hammer, (void *)i), 0);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        assert_null(rc);
    }
    broker_verdicts_destroy(shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_and_generation),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_zero_size_and_null),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
