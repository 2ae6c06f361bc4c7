/*
 * test_ring.c - unit tests for broker/src/ring.c, the bounded MPMC queue, one thread at a time
 * except where a second thread is needed to sleep in broker_ring_pop_wait(). The tests call every
 * function with bad arguments, check that the capacity is rounded up to a power of two (at least
 * 2) and that a ring holds exactly that many items, FIFO order, -EAGAIN when full and when empty,
 * many laps of wraparound, close (pushes refused with -EPIPE, the rest drained, then -ECANCELED,
 * a sleeping consumer woken), a push waking a sleeping consumer, and pop_wait timeouts (only that
 * they answer -ETIMEDOUT and never much early: tests do not assert timings). Each test ends with
 * broker_ring_cleanup() and checks the handle is zeroed; a run under AddressSanitizer and
 * LeakSanitizer shows that nothing leaks. The stress tests are in test_ring_stress.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ring.h"

/* Under a sanitizer, a huge allocation must come back NULL instead of stopping the test. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TEST_RING_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TEST_RING_SANITIZER 1
#endif
#endif
#ifdef TEST_RING_SANITIZER
const char *__asan_default_options(void);
const char *__tsan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
const char *__tsan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif

/* Nanoseconds on CLOCK_MONOTONIC. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Cleans r up and checks that the handle is zeroed (so a second cleanup is harmless). */
static void ring_done(broker_ring *r)
{
    broker_ring_cleanup(r);
    assert_null(r->shared);
    assert_int_equal(broker_ring_capacity(r), 0);
    broker_ring_cleanup(r);
}

/* Stands for an item: only its address matters. */
static int items[64];

static void test_bad_arguments(void **state)
{
    (void)state;
    broker_ring r;
    void *item = &items[0];

    assert_int_equal(broker_ring_init(NULL, 8), -EINVAL);
    memset(&r, 0xA5, sizeof(r));
    assert_int_equal(broker_ring_init(&r, 0), -EINVAL);
    assert_null(r.shared); /* left zeroed: cleanup and every call below are harmless */
    assert_int_equal(broker_ring_init(&r, BROKER_RING_MAX_CAPACITY + 1), -EINVAL);
    assert_int_equal(broker_ring_init(&r, SIZE_MAX), -EINVAL);

    /* A zeroed (never or no longer initialised) ring and NULL are refused, not crashed on. */
    assert_int_equal(broker_ring_try_push(NULL, item), -EINVAL);
    assert_int_equal(broker_ring_try_push(&r, item), -EINVAL);
    assert_int_equal(broker_ring_try_pop(NULL, &item), -EINVAL);
    assert_int_equal(broker_ring_try_pop(&r, &item), -EINVAL);
    assert_int_equal(broker_ring_pop_wait(NULL, &item, 0), -EINVAL);
    assert_int_equal(broker_ring_pop_wait(&r, &item, -1), -EINVAL);
    assert_ptr_equal(item, &items[0]);
    broker_ring_close(NULL);
    broker_ring_close(&r);
    assert_int_equal(broker_ring_size_approx(NULL), 0);
    assert_int_equal(broker_ring_size_approx(&r), 0);
    assert_int_equal(broker_ring_capacity(NULL), 0);
    assert_int_equal(broker_ring_capacity(&r), 0);
    broker_ring_cleanup(NULL);
    broker_ring_cleanup(&r);

    /* A NULL out-parameter on a live ring. */
    assert_int_equal(broker_ring_init(&r, 4), 0);
    assert_int_equal(broker_ring_try_push(&r, item), 0);
    assert_int_equal(broker_ring_try_pop(&r, NULL), -EINVAL);
    assert_int_equal(broker_ring_pop_wait(&r, NULL, 0), -EINVAL);
    assert_int_equal(broker_ring_size_approx(&r), 1); /* still there */
    ring_done(&r);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    broker_ring r;
    /* 2^56 slots of 16 bytes: more than any address space, so the allocation must fail. */
    assert_int_equal(broker_ring_init(&r, BROKER_RING_MAX_CAPACITY), -ENOMEM);
    assert_null(r.shared);
    ring_done(&r);
}

static void test_capacity_rounding(void **state)
{
    (void)state;
    static const size_t asked[] = {1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 1000, 1024};
    static const size_t got[] = {2, 2, 4, 4, 8, 8, 8, 16, 64, 64, 128, 1024, 1024};
    for (size_t i = 0; i < sizeof(asked) / sizeof(asked[0]); i++) {
        broker_ring r;
        assert_int_equal(broker_ring_init(&r, asked[i]), 0);
        assert_int_equal(broker_ring_capacity(&r), got[i]);
        /* It holds exactly that many. */
        size_t n = 0;
        while (broker_ring_try_push(&r, &items[0]) == 0)
            n++;
        assert_int_equal(n, got[i]);
        assert_int_equal(broker_ring_size_approx(&r), got[i]);
        ring_done(&r);
    }
}

static void test_fifo_order(void **state)
{
    (void)state;
    broker_ring r;
    assert_int_equal(broker_ring_init(&r, 64), 0);
    for (size_t i = 0; i < 64; i++) {
        assert_int_equal(broker_ring_try_push(&r, &items[i]), 0);
        assert_int_equal(broker_ring_size_approx(&r), i + 1);
    }
    for (size_t i = 0; i < 64; i++) {
        void *item = NULL;
        assert_int_equal(broker_ring_try_pop(&r, &item), 0);
        assert_ptr_equal(item, &items[i]);
        assert_int_equal(broker_ring_size_approx(&r), 63 - i);
    }
    /* NULL is an item like any other, and pop_wait takes the same order. */
    assert_int_equal(broker_ring_try_push(&r, NULL), 0);
    assert_int_equal(broker_ring_try_push(&r, &items[1]), 0);
    void *item = &items[2];
    assert_int_equal(broker_ring_pop_wait(&r, &item, 0), 0);
    assert_null(item);
    assert_int_equal(broker_ring_pop_wait(&r, &item, -1), 0);
    assert_ptr_equal(item, &items[1]);
    ring_done(&r);
}

static void test_full_and_empty(void **state)
{
    (void)state;
    broker_ring r;
    assert_int_equal(broker_ring_init(&r, 8), 0);

    /* Empty: -EAGAIN, and the out-parameter is untouched. */
    void *item = &items[9];
    assert_int_equal(broker_ring_try_pop(&r, &item), -EAGAIN);
    assert_int_equal(broker_ring_pop_wait(&r, &item, 0), -ETIMEDOUT);
    assert_ptr_equal(item, &items[9]);

    /* Full exactly at the capacity, and again after each pop makes room for one. */
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(broker_ring_try_push(&r, &items[i]), 0);
    assert_int_equal(broker_ring_try_push(&r, &items[8]), -EAGAIN);
    assert_int_equal(broker_ring_try_push(&r, &items[8]), -EAGAIN);
    assert_int_equal(broker_ring_size_approx(&r), 8);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(broker_ring_try_pop(&r, &item), 0);
        assert_ptr_equal(item, &items[i]);
        assert_int_equal(broker_ring_try_push(&r, &items[8 + i]), 0);
        assert_int_equal(broker_ring_try_push(&r, &items[20]), -EAGAIN);
    }
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(broker_ring_try_pop(&r, &item), 0);
        assert_ptr_equal(item, &items[8 + i]);
    }
    assert_int_equal(broker_ring_try_pop(&r, &item), -EAGAIN);
    assert_int_equal(broker_ring_size_approx(&r), 0);
    ring_done(&r);
}

static void test_wraparound(void **state)
{
    (void)state;
    broker_ring r;
    assert_int_equal(broker_ring_init(&r, 4), 0);
    /* Batches of 1..4 items, many laps round the 4 slots; values run on so order is checked. */
    uintptr_t next_push = 0, next_pop = 0;
    for (int lap = 0; lap < 100000; lap++) {
        size_t batch = (size_t)lap % 4 + 1;
        for (size_t i = 0; i < batch; i++)
            assert_int_equal(broker_ring_try_push(&r, (void *)(next_push++ + 1)), 0);
        if (batch == 4)
            assert_int_equal(broker_ring_try_push(&r, (void *)1), -EAGAIN);
        assert_int_equal(broker_ring_size_approx(&r), batch);
        for (size_t i = 0; i < batch; i++) {
            void *item = NULL;
            assert_int_equal(broker_ring_try_pop(&r, &item), 0);
            assert_true((uintptr_t)item == ++next_pop);
        }
        void *item = NULL;
        assert_int_equal(broker_ring_try_pop(&r, &item), -EAGAIN);
    }
    assert_true(next_pop == next_push);
    ring_done(&r);
}

static void test_close(void **state)
{
    (void)state;
    broker_ring r;
    void *item = NULL;

    /* Closing an empty ring: pops answer -ECANCELED at once, whatever the timeout. */
    assert_int_equal(broker_ring_init(&r, 4), 0);
    broker_ring_close(&r);
    assert_int_equal(broker_ring_try_push(&r, &items[0]), -EPIPE);
    assert_int_equal(broker_ring_try_pop(&r, &item), -ECANCELED);
    assert_int_equal(broker_ring_pop_wait(&r, &item, 0), -ECANCELED);
    assert_int_equal(broker_ring_pop_wait(&r, &item, -1), -ECANCELED);
    ring_done(&r);

    /* Closing a full ring: pushes are refused, what is inside drains in order, then -ECANCELED. */
    assert_int_equal(broker_ring_init(&r, 4), 0);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(broker_ring_try_push(&r, &items[i]), 0);
    broker_ring_close(&r);
    broker_ring_close(&r); /* idempotent */
    assert_int_equal(broker_ring_try_push(&r, &items[5]), -EPIPE);
    assert_int_equal(broker_ring_size_approx(&r), 4);
    assert_int_equal(broker_ring_try_pop(&r, &item), 0);
    assert_ptr_equal(item, &items[0]);
    assert_int_equal(broker_ring_pop_wait(&r, &item, 0), 0);
    assert_ptr_equal(item, &items[1]);
    assert_int_equal(broker_ring_pop_wait(&r, &item, -1), 0);
    assert_ptr_equal(item, &items[2]);
    assert_int_equal(broker_ring_try_push(&r, &items[5]), -EPIPE); /* room now, still refused */
    assert_int_equal(broker_ring_try_pop(&r, &item), 0);
    assert_ptr_equal(item, &items[3]);
    item = NULL;
    assert_int_equal(broker_ring_try_pop(&r, &item), -ECANCELED);
    assert_int_equal(broker_ring_pop_wait(&r, &item, 100), -ECANCELED);
    assert_int_equal(broker_ring_pop_wait(&r, &item, -1), -ECANCELED);
    assert_null(item);
    assert_int_equal(broker_ring_size_approx(&r), 0);
    ring_done(&r);
}

/* A consumer thread that makes one broker_ring_pop_wait() call. */
typedef struct waiter {
    broker_ring *ring;
    int timeout_ms;
    int rc;
    void *item;
    int64_t elapsed_ns;
} waiter;

static void *waiter_main(void *arg)
{
    waiter *w = arg;
    int64_t t0 = now_ns();
    w->rc = broker_ring_pop_wait(w->ring, &w->item, w->timeout_ms);
    w->elapsed_ns = now_ns() - t0;
    return NULL;
}

/*
 * Consumers asleep in pop_wait are woken by close (all of them) and by a push. The timeout is long
 * (10 s) so that a missed wake shows up as -ETIMEDOUT, a failure, instead of a hang. The main
 * thread first sleeps long enough for the consumers to leave their spin and sleep on the futex.
 */
static void test_waiters_woken(void **state)
{
    (void)state;
    broker_ring r;
    assert_int_equal(broker_ring_init(&r, 4), 0);

    /* A push wakes a sleeping consumer and hands it the item. */
    waiter w = {&r, 10000, 1, NULL, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
    sleep_ms(50);
    assert_int_equal(broker_ring_try_push(&r, &items[7]), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.rc, 0);
    assert_ptr_equal(w.item, &items[7]);

    /* Close wakes every sleeping consumer, with -ECANCELED. */
    waiter ws[3];
    pthread_t ts[3];
    for (int i = 0; i < 3; i++) {
        ws[i] = (waiter){&r, i == 0 ? -1 : 10000, 1, NULL, 0};
        assert_int_equal(pthread_create(&ts[i], NULL, waiter_main, &ws[i]), 0);
    }
    sleep_ms(50);
    broker_ring_close(&r);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(ts[i], NULL), 0);
        assert_int_equal(ws[i].rc, -ECANCELED);
        assert_null(ws[i].item);
    }
    ring_done(&r);
}

/* pop_wait on an empty ring answers -ETIMEDOUT, and not early. */
static void test_pop_wait_timeout(void **state)
{
    (void)state;
    broker_ring r;
    assert_int_equal(broker_ring_init(&r, 2), 0);
    static const int timeouts[] = {1, 10, 50, 120};
    for (size_t i = 0; i < sizeof(timeouts) / sizeof(timeouts[0]); i++) {
        void *item = &items[3];
        int64_t t0 = now_ns();
        assert_int_equal(broker_ring_pop_wait(&r, &item, timeouts[i]), -ETIMEDOUT);
        int64_t elapsed = now_ns() - t0;
        /* Not early (1 ms of slack for clock granularity); no upper bound is asserted. */
        assert_true(elapsed + 1000000 >= (int64_t)timeouts[i] * 1000000);
        assert_ptr_equal(item, &items[3]);
    }
    /* The same from another thread, so a sleeping consumer's timeout is covered as well. */
    waiter w = {&r, 30, 1, NULL, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, waiter_main, &w), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.rc, -ETIMEDOUT);
    assert_true(w.elapsed_ns + 1000000 >= 30 * 1000000);
    ring_done(&r);
}

/* Cleanup accepts NULL, and leaves items alone (they are stack and static objects here). */
static void test_cleanup(void **state)
{
    (void)state;
    broker_ring_cleanup(NULL);
    broker_ring r;
    int local = 0;
    assert_int_equal(broker_ring_init(&r, 8), 0);
    assert_int_equal(broker_ring_try_push(&r, &local), 0);
    assert_int_equal(broker_ring_try_push(&r, &items[0]), 0);
    ring_done(&r);
    assert_int_equal(local, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_capacity_rounding),
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_full_and_empty),
        cmocka_unit_test(test_wraparound),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_waiters_woken),
        cmocka_unit_test(test_pop_wait_timeout),
        cmocka_unit_test(test_cleanup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
