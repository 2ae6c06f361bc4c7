/*
 * test_ratelimit.c - tests of ratelimit/src/ratelimit.c: the configuration and its errors, the
 * exemption list, the GCRA arithmetic at its edges (burst used exactly, a clock that does not
 * advance, a clock that wraps), the caller table (reuse of idle entries, a full table and its
 * overflow entry, detach) and many threads deciding on one caller at once (run under TSan too:
 * the accepted count must be exact).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit/ratelimit.h"

#define MS 1000000ull

static ratelimit_config config(uint32_t max, uint32_t interval_ms, uint32_t burst)
{
    ratelimit_config c;
    ratelimit_config_init(&c);
    c.max_requests = max;
    c.interval_ms = interval_ms;
    c.burst = burst;
    return c;
}

static void test_config_defaults(void **state)
{
    (void)state;
    ratelimit_config c;
    ratelimit_config_init(&c);
    assert_true(c.enabled);
    assert_int_equal(c.max_requests, 2000);
    assert_int_equal(c.interval_ms, 1000);
    assert_int_equal(c.burst, 200);
    assert_int_equal(c.notify_max_requests, 20000);
    assert_int_equal(c.notify_burst, 2000);
    assert_int_equal(c.nexempt, 0);
    assert_int_equal(c.action, RATELIMIT_ALLOW);
    assert_int_equal(c.table_size, 4096);
    ratelimit_config_cleanup(&c);
    ratelimit_config_cleanup(NULL);
}

static void test_config_set(void **state)
{
    (void)state;
    ratelimit_config c;
    ratelimit_config_init(&c);
    char err[256] = "";
    assert_int_equal(ratelimit_config_set(&c, "max_requests", "50", err, sizeof(err)), 0);
    assert_int_equal(c.max_requests, 50);
    assert_int_equal(ratelimit_config_set(&c, "enabled", "0", err, sizeof(err)), 0);
    assert_false(c.enabled);
    assert_int_equal(ratelimit_config_set(&c, "enabled", "On", err, sizeof(err)), 0);
    assert_true(c.enabled);
    assert_int_equal(ratelimit_config_set(&c, "enabled", "false", err, sizeof(err)), 0);
    assert_false(c.enabled);
    assert_int_equal(ratelimit_config_set(&c, "action", "block", err, sizeof(err)), 0);
    assert_int_equal(c.action, RATELIMIT_BLOCK);
    assert_int_equal(ratelimit_config_set(&c, "burst", "0", err, sizeof(err)), 0);
    assert_int_equal(c.burst, 0);

    const struct {
        const char *key, *value, *why;
    } bad[] = {
        {"max_requests", "0", "whole number"},
        {"max_requests", "-1", "whole number"},
        {"max_requests", "1x", "whole number"},
        {"interval_ms", "", "whole number"},
        {"table_size", "0", "whole number"},
        {"enabled", "maybe", "boolean"},
        {"action", "deny", "allow"},
        {"exempt", "pwsh", "absolute"},
        {"exempt", "/usr/bin/pwsh:", "PATH"},
        {"exempt", "/usr/bin/pwsh:root", "uid"},
        {"exempt", ":1001", "absolute"},
        {"colour", "1", "unknown key"},
        {"burst", "99999999999", "whole number"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(ratelimit_config_set(&c, bad[i].key, bad[i].value, err, sizeof(err)),
                         -EINVAL);
        if (strstr(err, bad[i].why) == NULL)
            fail_msg("%s=%s: '%s' does not say '%s'", bad[i].key, bad[i].value, err, bad[i].why);
    }
    /* A refused value leaves the old one. */
    assert_int_equal(c.max_requests, 50);
    assert_int_equal(c.action, RATELIMIT_BLOCK);
    ratelimit_config_cleanup(&c);
}

static void test_exemptions(void **state)
{
    (void)state;
    ratelimit_config c;
    ratelimit_config_init(&c);
    char err[256];
    assert_int_equal(ratelimit_config_set(&c, "exempt",
                                          " /usr/bin/pwsh , /opt/ci/bin/:1001,/srv/a:b/tool:7,",
                                          err, sizeof(err)),
                     0);
    assert_int_equal(c.nexempt, 3);
    assert_true(ratelimit_exempt(&c, "/usr/bin/pwsh", 0));
    assert_true(ratelimit_exempt(&c, "/usr/bin/pwsh", 1000));
    assert_false(ratelimit_exempt(&c, "/usr/bin/pwsh2", 0));
    assert_false(ratelimit_exempt(&c, "/usr/bin/pws", 0));
    assert_true(ratelimit_exempt(&c, "/opt/ci/bin/runner", 1001));
    assert_true(ratelimit_exempt(&c, "/opt/ci/bin/sub/runner", 1001));
    assert_false(ratelimit_exempt(&c, "/opt/ci/bin/runner", 1002));
    assert_false(ratelimit_exempt(&c, "/opt/ci/binx", 1001));
    assert_false(ratelimit_exempt(&c, "/opt/ci/bin", 1001)); /* the directory itself */
    assert_true(ratelimit_exempt(&c, "/srv/a:b/tool", 7));   /* the last ':' splits off the uid */
    assert_false(ratelimit_exempt(&c, "/srv/a:b/tool", 8));
    assert_false(ratelimit_exempt(&c, "", 0));
    assert_false(ratelimit_exempt(&c, NULL, 0));
    /* A later value replaces the list; "" empties it. */
    assert_int_equal(ratelimit_config_set(&c, "exempt", "", err, sizeof(err)), 0);
    assert_int_equal(c.nexempt, 0);
    assert_false(ratelimit_exempt(&c, "/usr/bin/pwsh", 0));
    /* A bad entry anywhere refuses the whole value and keeps the old list. */
    assert_int_equal(ratelimit_config_set(&c, "exempt", "/a", err, sizeof(err)), 0);
    assert_int_equal(ratelimit_config_set(&c, "exempt", "/b,relative", err, sizeof(err)), -EINVAL);
    assert_int_equal(c.nexempt, 1);
    assert_true(ratelimit_exempt(&c, "/a", 0));
    ratelimit_config_cleanup(&c);
}

static void test_describe(void **state)
{
    (void)state;
    ratelimit_config c = config(2000, 1000, 200);
    char buf[128];
    ratelimit_describe(&c, RATELIMIT_SCAN, buf, sizeof(buf));
    assert_string_equal(buf, "scans 2000 per 1000 ms, burst 200");
    ratelimit_describe(&c, RATELIMIT_NOTIFY, buf, sizeof(buf));
    assert_string_equal(buf, "notifications 20000 per 1000 ms, burst 2000");
}

/* Counts the requests accepted at one instant. */
static unsigned accepted_at(ratelimit_table *t, ratelimit_handle *h, const ratelimit_key *k,
                            ratelimit_class cls, uint64_t now, unsigned tries)
{
    unsigned n = 0;
    for (unsigned i = 0; i < tries; i++)
        n += ratelimit_decide(t, h, k, cls, now, NULL);
    return n;
}

static void test_burst_exactly(void **state)
{
    (void)state;
    ratelimit_config c = config(100, 1000, 20); /* T = 10 ms, tau = 200 ms */
    ratelimit_table *t;
    assert_int_equal(ratelimit_table_create(&c, &t), 0);
    ratelimit_key k = {.pid = 42, .start_time = 777};
    ratelimit_handle h = {0};
    uint64_t now = 5000 * MS;
    assert_true(ratelimit_attach(t, &k, now, &h));
    /* A quiet caller: burst + 1 at once, not one more. */
    assert_int_equal(accepted_at(t, &h, &k, RATELIMIT_SCAN, now, 21), 21);
    uint64_t retry = 0;
    assert_false(ratelimit_decide(t, &h, &k, RATELIMIT_SCAN, now, &retry));
    assert_int_equal(retry, 10 * MS);
    /* One nanosecond early is still too early; on time is accepted, once. */
    assert_false(ratelimit_decide(t, &h, &k, RATELIMIT_SCAN, now + 10 * MS - 1, &retry));
    assert_int_equal(retry, 1);
    assert_true(ratelimit_decide(t, &h, &k, RATELIMIT_SCAN, now + 10 * MS, &retry));
    assert_int_equal(retry, 0);
    assert_false(ratelimit_decide(t, &h, &k, RATELIMIT_SCAN, now + 10 * MS, NULL));
    /* The other class has its own bucket. */
    assert_int_equal(accepted_at(t, &h, &k, RATELIMIT_NOTIFY, now, 5000), 2001);
    /* After a long quiet spell the whole burst is back, not more. */
    assert_int_equal(accepted_at(t, &h, &k, RATELIMIT_SCAN, now + 3600000 * MS, 100), 21);
    ratelimit_stats st;
    ratelimit_table_stats(t, &st);
    assert_int_equal(st.declined[RATELIMIT_SCAN], 3 + 79);
    assert_int_equal(st.declined[RATELIMIT_NOTIFY], 5000 - 2001);
    assert_int_equal(st.overflowed, 0);
    ratelimit_table_destroy(t);
}

static void test_zero_burst(void **state)
{
    (void)state;
    ratelimit_config c = config(1000, 1000, 0); /* T = 1 ms */
    ratelimit_table *t;
    assert_int_equal(ratelimit_table_create(&c, &t), 0);
    ratelimit_key k = {.pid = 1, .start_time = 1};
    ratelimit_handle h = {0};
    ratelimit_attach(t, &k, 0, &h);
    uint64_t now = 1;
    unsigned ok = 0;
    /* Steady arrivals every half-interval: exactly one in two accepted. */
    for (int i = 0; i < 1000; i++, now += MS / 2)
        ok += ratelimit_decide(t, &h, &k, RATELIMIT_SCAN, now, NULL);
    assert_int_equal(ok, 500);
    ratelimit_table_destroy(t);
}

static void test_clock_still(void **state)
{
    (void)state;
    ratelimit_config c = config(10, 1000, 3);
    ratelimit_table *t;
    assert_int_equal(ratelimit_table_create(&c, &t), 0);
    ratelimit_key k = {.pid = 9, .start_time = 9};
    ratelimit_handle h = {0};
    ratelimit_attach(t, &k, 123, &h);
    /* A clock that never advances never refills: 4 accepted, then never again, and the retry
     * hint stays the same instead of growing with each refusal. */
    assert_int_equal(accepted_at(t, &h, &k, RATELIMIT_SCAN, 123, 1000), 4);
    uint64_t r1, r2;
    assert_false(ratelimit_decide(t, &h, &k, RATELIMIT_SCAN, 123, &r1));
    assert_false(ratelimit_decide(t, &h, &k, RATELIMIT_SCAN, 123, &r2));
    assert_int_equal(r1, 100 * MS);
    assert_int_equal(r1, r2);
    ratelimit_table_destroy(t);
}

static void test_clock_wrap(void **state)
{
    (void)state;
    ratelimit_config c = config(100, 1000, 5); /* T = 10 ms */
    ratelimit_table *t;
    assert_int_equal(ratelimit_table_create(&c, &t), 0);
    ratelimit_key k = {.pid = 3, .start_time = 3};
    ratelimit_handle h = {0};
    uint64_t now = UINT64_MAX - 25 * MS; /* the clock wraps within the test */
    ratelimit_attach(t, &k, now, &h);
    assert_int_equal(accepted_at(t, &h, &k, RATELIMIT_SCAN, now, 10), 6);
    uint64_t retry;
    assert_false(ratelimit_decide(t, &h, &k, RATELIMIT_SCAN, now, &retry));
    assert_int_equal(retry, 10 * MS);
    /* The TAT now lies past zero (now + 60 ms). 30 ms later, past the wrap too, three more are
     * due (TATs now + 60, 70 and 80 ms are within tau = 50 ms of now + 30 ms). */
    now += 30 * MS;
    assert_true(now < 30 * MS);
    assert_int_equal(accepted_at(t, &h, &k, RATELIMIT_SCAN, now, 50), 3);
    /* And a long quiet spell after the wrap restores the burst, not a huge credit. */
    assert_int_equal(accepted_at(t, &h, &k, RATELIMIT_SCAN, now + 10000 * MS, 50), 6);
    ratelimit_table_destroy(t);
}

static void test_separate_callers(void **state)
{
    (void)state;
    ratelimit_config c = config(10, 1000, 0);
    ratelimit_table *t;
    assert_int_equal(ratelimit_table_create(&c, &t), 0);
    /* Same pid, other start time: a reused pid is a new caller. */
    ratelimit_key a = {.pid = 100, .start_time = 1}, b = {.pid = 100, .start_time = 2};
    ratelimit_handle ha = {0}, hb = {0}, ha2 = {0};
    ratelimit_attach(t, &a, 0, &ha);
    ratelimit_attach(t, &b, 0, &hb);
    assert_int_not_equal(ha.slot, hb.slot);
    assert_int_equal(accepted_at(t, &ha, &a, RATELIMIT_SCAN, 1, 5), 1);
    assert_int_equal(accepted_at(t, &hb, &b, RATELIMIT_SCAN, 1, 5), 1);
    /* A second connection of the same process shares its bucket. */
    ratelimit_attach(t, &a, 1, &ha2);
    assert_int_equal(ha2.slot, ha.slot);
    assert_int_equal(accepted_at(t, &ha2, &a, RATELIMIT_SCAN, 1, 5), 0);
    ratelimit_table_destroy(t);
}

static void test_full_table(void **state)
{
    (void)state;
    ratelimit_config c = config(10, 1000, 1); /* T = 100 ms, tau = 100 ms */
    c.table_size = 4;
    ratelimit_table *t;
    assert_int_equal(ratelimit_table_create(&c, &t), 0);
    ratelimit_key k[6];
    ratelimit_handle h[6];
    uint64_t now = 1000 * MS;
    for (int i = 0; i < 4; i++) {
        k[i] = (ratelimit_key){.pid = 200 + i, .start_time = 5};
        h[i] = (ratelimit_handle){0};
        assert_true(ratelimit_attach(t, &k[i], now, &h[i]));
        /* Each spends its burst: in debt for the next 100 ms. */
        assert_int_equal(accepted_at(t, &h[i], &k[i], RATELIMIT_SCAN, now, 3), 2);
    }
    /* The table is full of callers in debt: newcomers share the overflow entry, whose bucket
     * has the same limit for all of them together. */
    k[4] = (ratelimit_key){.pid = 300, .start_time = 5};
    k[5] = (ratelimit_key){.pid = 301, .start_time = 5};
    h[4] = h[5] = (ratelimit_handle){0};
    assert_false(ratelimit_attach(t, &k[4], now, &h[4]));
    assert_false(ratelimit_attach(t, &k[5], now, &h[5]));
    assert_int_equal(h[4].slot, h[5].slot);
    assert_int_equal(accepted_at(t, &h[4], &k[4], RATELIMIT_SCAN, now, 3) +
                         accepted_at(t, &h[5], &k[5], RATELIMIT_SCAN, now, 3),
                     2);
    ratelimit_stats st;
    ratelimit_table_stats(t, &st);
    assert_int_equal(st.overflowed, 6);
    /* Once an entry's time has passed (200 ms: its TAT), an overflowed caller takes it over on
     * its next decision; the previous holder, coming back, finds no debt either. */
    now += 200 * MS;
    assert_true(ratelimit_decide(t, &h[4], &k[4], RATELIMIT_SCAN, now, NULL));
    assert_true(h[4].slot < 4);
    assert_int_equal(accepted_at(t, &h[4], &k[4], RATELIMIT_SCAN, now, 5), 1);
    ratelimit_table_destroy(t);
}

static void test_reuse_and_detach(void **state)
{
    (void)state;
    ratelimit_config c = config(10, 1000, 0);
    c.table_size = 1;
    ratelimit_table *t;
    assert_int_equal(ratelimit_table_create(&c, &t), 0);
    ratelimit_key a = {.pid = 1, .start_time = 1}, b = {.pid = 2, .start_time = 1};
    ratelimit_handle ha = {0}, hb = {0};
    uint64_t now = 10 * MS;
    assert_true(ratelimit_attach(t, &a, now, &ha));
    assert_true(ratelimit_decide(t, &ha, &a, RATELIMIT_SCAN, now, NULL));
    /* a is in debt for 100 ms: b overflows. */
    assert_false(ratelimit_attach(t, &b, now, &hb));
    /* a's process exits: its entry is free at once. */
    ratelimit_detach(t, &ha);
    assert_true(ratelimit_attach(t, &b, now, &hb));
    assert_int_equal(hb.slot, 0);
    /* Detaching a handle whose entry is now someone else's changes nothing. */
    ratelimit_detach(t, &ha);
    assert_true(ratelimit_decide(t, &hb, &b, RATELIMIT_SCAN, now, NULL));
    assert_false(ratelimit_decide(t, &hb, &b, RATELIMIT_SCAN, now, NULL));
    /* An idle entry is reused without any sweep: after b's time passed, a takes it back, and
     * b's next decision finds it gone and goes to the overflow entry while a is in debt. */
    now += 100 * MS;
    assert_true(ratelimit_decide(t, &ha, &a, RATELIMIT_SCAN, now, NULL));
    assert_int_equal(ha.slot, 0);
    assert_true(ratelimit_decide(t, &hb, &b, RATELIMIT_SCAN, now, NULL));
    assert_int_equal(hb.slot, 1);
    ratelimit_table_destroy(t);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    ratelimit_table *t = NULL;
    ratelimit_config c = config(10, 1000, 0);
    assert_int_equal(ratelimit_table_create(NULL, &t), -EINVAL);
    assert_int_equal(ratelimit_table_create(&c, NULL), -EINVAL);
    c.table_size = 0;
    assert_int_equal(ratelimit_table_create(&c, &t), -EINVAL);
    c = config(0, 1000, 0);
    assert_int_equal(ratelimit_table_create(&c, &t), -EINVAL);
    assert_null(t);
    ratelimit_table_destroy(NULL);
    char err[64];
    assert_int_equal(ratelimit_config_set(NULL, "burst", "1", err, sizeof(err)), -EINVAL);
}

/* Many threads, one caller, one instant: exactly burst + 1 accepted in all. */
typedef struct race {
    ratelimit_table *t;
    ratelimit_key key;
    uint64_t now;
    unsigned tries;
    atomic_uint accepted;
} race;

static void *race_main(void *arg)
{
    race *r = arg;
    ratelimit_handle h = {0};
    ratelimit_attach(r->t, &r->key, r->now, &h);
    unsigned n = 0;
    for (unsigned i = 0; i < r->tries; i++)
        n += ratelimit_decide(r->t, &h, &r->key, RATELIMIT_SCAN, r->now, NULL);
    atomic_fetch_add_explicit(&r->accepted, n, memory_order_relaxed);
    return NULL;
}

static void test_threads_one_key(void **state)
{
    (void)state;
    enum { THREADS = 8 };
    ratelimit_config c = config(1000, 1000, 4999);
    ratelimit_table *t;
    assert_int_equal(ratelimit_table_create(&c, &t), 0);
    for (int round = 0; round < 20; round++) {
        race r = {
            .t = t, .key = {.pid = 4000 + round, .start_time = 1}, .now = 77 * MS, .tries = 2000};
        atomic_init(&r.accepted, 0);
        pthread_t th[THREADS];
        for (int i = 0; i < THREADS; i++)
            assert_int_equal(pthread_create(&th[i], NULL, race_main, &r), 0);
        for (int i = 0; i < THREADS; i++)
            pthread_join(th[i], NULL);
        /* All threads attached concurrently to one entry (a double claim would double the
         * allowance) and every CAS counted exactly once. */
        assert_int_equal(atomic_load(&r.accepted), 5000);
    }
    ratelimit_table_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),  cmocka_unit_test(test_config_set),
        cmocka_unit_test(test_exemptions),       cmocka_unit_test(test_describe),
        cmocka_unit_test(test_burst_exactly),    cmocka_unit_test(test_zero_burst),
        cmocka_unit_test(test_clock_still),      cmocka_unit_test(test_clock_wrap),
        cmocka_unit_test(test_separate_callers), cmocka_unit_test(test_full_table),
        cmocka_unit_test(test_reuse_and_detach), cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_threads_one_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
