/*
 * test_ring_stress.c - multi-producer multi-consumer stress tests for broker/src/ring.c, meant to
 * be run under ThreadSanitizer as well as plainly.
 *
 * Each producer pushes pointers to records it has just written, tagged (producer id << 32 | seq);
 * the consumer reads the record after popping it, so a missing happens-before edge in the ring
 * shows up as a TSan report, and a torn hand-over as a bad tag. Consumers mix broker_ring_try_pop,
 * broker_ring_pop_wait for ever and pop_wait with a short timeout. At the end every item must have
 * been received exactly once, and each consumer must have seen each producer's items in increasing
 * order (FIFO per producer, per consumer). Producers retry on -EAGAIN, so small rings are full
 * most of the time. The end is signalled by broker_ring_close(), which must wake the consumers
 * sleeping for ever and let them drain the ring.
 *
 * Three more tests. In two, producers wait for each item to be consumed before pushing the next,
 * so a lost wakeup would stall an item for good (caught by a per-item deadline): slow producers,
 * so that consumers spend their time asleep on the futex, and a producer that pushes just as the
 * consumer ends its spin and goes to sleep, the moment a lost wakeup needs. The third closes the
 * ring while producers are pushing, to check that every push that succeeded is delivered and none
 * after the close is.
 *
 * No test can hang: a thread that has not finished within a generous time (STRESS_DEADLINE_S)
 * makes the test print what it knows and exit with a failure. Counts are reduced under
 * TSan so the whole file finishes in well under 30 seconds. Tests do not assert timings; the
 * figures printed (items/s, slow pop_wait calls) are for information.
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
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"

#if defined(__SANITIZE_THREAD__)
#define STRESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define STRESS_TSAN 1
#endif
#endif

#ifdef STRESS_TSAN
#define STRESS_ITEMS       400000 /* items per MPMC run */
#define STRESS_SLOW_ITEMS  200    /* items per producer in the parking test */
#define STRESS_TIGHT_ITEMS 5000   /* items in the wake race test */
#else
#define STRESS_ITEMS       2000000
#define STRESS_SLOW_ITEMS  400
#define STRESS_TIGHT_ITEMS 30000
#endif

/* A test that has not finished after this long has hung: it fails instead of waiting for ever. */
#define STRESS_DEADLINE_S 120
/* In the parking test, an item not consumed after this long was lost by a missed wakeup. */
#define STRESS_ITEM_DEADLINE_MS 5000

#define STRESS_MAX_PRODUCERS 8
#define STRESS_MAX_CONSUMERS 8

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* xorshift64: a per-thread pseudo-random sequence for sleeps. */
static uint64_t next_random(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* How a consumer pops: 't' try_pop (yield when empty), 'w' pop_wait for ever, 'T' pop_wait 2 ms. */
typedef char consumer_mode;

/*
 * How producers pace their pushes. FLOOD: as fast as the ring takes them. SLEEP: sleep 0-400 us
 * before each push, then wait (sleeping) until the item is consumed, so that consumers sleep on
 * the futex between items. TIGHT: wait (spinning) until the item is consumed, then spin 0-3 us
 * before the next push, so that pushes land near the moment a consumer ends its spin (about 2 us)
 * and registers to sleep, where a lost wakeup would hide. (With the producer's seq_cst fence
 * removed from ring.c, this catches the lost wakeup in most runs on x86.)
 */
typedef enum stress_pace { STRESS_FLOOD, STRESS_SLEEP, STRESS_TIGHT } stress_pace;

/* One stress run: the ring, the records and the consumers' findings. */
typedef struct stress {
    broker_ring ring;
    int producers;
    int consumers;
    uint32_t per_producer; /* items each producer pushes (at most) */
    uint64_t *records;     /* records[p * per_producer + seq] = tag, written before the push */
    _Atomic uint8_t *seen; /* how many times each item was received */
    const char *modes;     /* one consumer_mode per consumer */
    stress_pace pace;      /* how producers space their pushes */
    bool stop_on_close;    /* close test: producers push until -EPIPE */
    int64_t deadline_ns;   /* the whole run must end by then */
    _Atomic uint64_t pushed[STRESS_MAX_PRODUCERS]; /* successful pushes per producer */
    _Atomic uint64_t received;
    _Atomic uint64_t errors;  /* duplicates, bad tags, order violations, bad return codes */
    _Atomic uint64_t lost;    /* parking test: items not consumed within the item deadline */
    _Atomic uint64_t retries; /* -EAGAIN answers to pushes */
    _Atomic uint64_t sleeps;  /* pop_wait calls that took over 20 us (so probably slept) */
    _Atomic int finished;     /* threads that have returned */
    char first_error[160];    /* written once, by whoever sets error_claimed */
    atomic_flag error_claimed;
} stress;

/* Counts an error, keeping the first message for the report. */
static void stress_error(stress *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void stress_error(stress *s, const char *fmt, ...)
{
    atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
    if (atomic_flag_test_and_set_explicit(&s->error_claimed, memory_order_relaxed))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->first_error, sizeof(s->first_error), fmt, ap);
    va_end(ap);
}

typedef struct worker {
    stress *s;
    int id;
    pthread_t thread;
} worker;

static bool item_consumed(stress *s, size_t index)
{
    return atomic_load_explicit(&s->seen[index], memory_order_acquire) != 0;
}

static void *producer_main(void *arg)
{
    worker *w = arg;
    stress *s = w->s;
    uint64_t rnd = 0x9E3779B97F4A7C15ull * (uint64_t)(w->id + 1);
    uint64_t retries = 0;
    for (uint32_t seq = 0; seq < s->per_producer; seq++) {
        size_t index = (size_t)w->id * s->per_producer + seq;
        uint64_t *rec = &s->records[index];
        *rec = (uint64_t)w->id << 32 | seq;
        if (s->pace == STRESS_SLEEP) {
            sleep_us((long)(next_random(&rnd) % 400)); /* long enough to outlast the spin */
        } else if (s->pace == STRESS_TIGHT && seq > 0) {
            int64_t until = now_ns() + (int64_t)(next_random(&rnd) % 3000);
            while (now_ns() < until)
                ;
        }
        int rc;
        for (;;) {
            rc = broker_ring_try_push(&s->ring, rec);
            if (rc != -EAGAIN)
                break;
            /* Full: the broker would answer BUSY; here, let the consumers run and retry. */
            if (++retries % 16 == 0) {
                sched_yield();
                if (now_ns() > s->deadline_ns) {
                    stress_error(s, "producer %d: ring full until the deadline", w->id);
                    goto out;
                }
            }
        }
        if (rc == -EPIPE && s->stop_on_close)
            break;
        if (rc != 0) {
            stress_error(s, "producer %d: push returned %d", w->id, rc);
            break;
        }
        atomic_fetch_add_explicit(&s->pushed[w->id], 1, memory_order_relaxed);
        if (s->pace != STRESS_FLOOD) {
            /* Wait until a consumer has the item: a lost wakeup would leave it in the ring. */
            int64_t limit = now_ns() + (int64_t)STRESS_ITEM_DEADLINE_MS * 1000000;
            while (!item_consumed(s, index) && now_ns() < limit) {
                if (s->pace == STRESS_SLEEP)
                    sleep_us(20);
            }
            if (!item_consumed(s, index)) {
                atomic_fetch_add_explicit(&s->lost, 1, memory_order_relaxed);
                stress_error(s, "producer %d: item %u not consumed within %d ms", w->id, seq,
                             STRESS_ITEM_DEADLINE_MS);
                break;
            }
        }
    }
out:
    atomic_fetch_add_explicit(&s->retries, retries, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->finished, 1, memory_order_release);
    return NULL;
}

/* Checks one received record: a valid tag, at its own address, in order, never seen before. */
static void consume(stress *s, int64_t *last, const void *item)
{
    const uint64_t *rec = item;
    uint64_t tag = *rec; /* a plain read: the ring must have ordered the producer's write */
    uint64_t p = tag >> 32;
    uint64_t seq = tag & 0xFFFFFFFFu;
    if (p >= (uint64_t)s->producers || seq >= s->per_producer ||
        rec != &s->records[p * s->per_producer + seq]) {
        stress_error(s, "bad item %p with tag %#llx", item, (unsigned long long)tag);
        return;
    }
    if ((int64_t)seq <= last[p])
        stress_error(s, "producer %llu: item %llu after %lld", (unsigned long long)p,
                     (unsigned long long)seq, (long long)last[p]);
    last[p] = (int64_t)seq;
    if (atomic_fetch_add_explicit(&s->seen[p * s->per_producer + seq], 1, memory_order_release))
        stress_error(s, "producer %llu: item %llu received twice", (unsigned long long)p,
                     (unsigned long long)seq);
}

static void *consumer_main(void *arg)
{
    worker *w = arg;
    stress *s = w->s;
    consumer_mode mode = s->modes[w->id];
    int64_t last[STRESS_MAX_PRODUCERS];
    for (int i = 0; i < STRESS_MAX_PRODUCERS; i++)
        last[i] = -1;
    uint64_t received = 0, sleeps = 0, polls = 0;
    for (;;) {
        void *item = NULL;
        int rc;
        if (mode == 't') {
            rc = broker_ring_try_pop(&s->ring, &item);
        } else {
            int64_t t0 = now_ns();
            rc = broker_ring_pop_wait(&s->ring, &item, mode == 'w' ? -1 : 2);
            if (now_ns() - t0 > 20000)
                sleeps++;
        }
        if (rc == 0) {
            consume(s, last, item);
            received++;
            continue;
        }
        if (rc == -ECANCELED)
            break;
        if (rc != -EAGAIN && rc != -ETIMEDOUT) {
            stress_error(s, "consumer %d: pop returned %d", w->id, rc);
            break;
        }
        if (rc == -EAGAIN)
            sched_yield();
        if (++polls % 64 == 0 && now_ns() > s->deadline_ns) {
            stress_error(s, "consumer %d: ring not closed by the deadline", w->id);
            break;
        }
    }
    atomic_fetch_add_explicit(&s->received, received, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sleeps, sleeps, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->finished, 1, memory_order_release);
    return NULL;
}

/*
 * Waits until `count` threads have finished. If they have not by the run's deadline, the run has
 * hung: report and exit with a failure (the threads still use the state, so returning to cmocka
 * is not an option).
 */
static void wait_finished(stress *s, int count, const char *what)
{
    while (atomic_load_explicit(&s->finished, memory_order_acquire) < count) {
        if (now_ns() > s->deadline_ns + 10 * (int64_t)1000000000) {
            fprintf(stderr,
                    "ring stress: %s hung: %d of %d threads finished, %llu items received, "
                    "first error: %s\n",
                    what, atomic_load(&s->finished), count,
                    (unsigned long long)atomic_load(&s->received), s->first_error);
            fflush(stderr);
            _exit(EXIT_FAILURE);
        }
        sleep_us(1000);
    }
}

/*
 * Runs producers x consumers over a ring of the given capacity. In the close test, the ring is
 * closed after close_after_us while producers are still pushing.
 */
static void run_stress(int producers, const char *modes, size_t capacity, uint32_t per_producer,
                       stress_pace pace, long close_after_us)
{
    int consumers = (int)strlen(modes);
    assert_true(producers >= 1 && producers <= STRESS_MAX_PRODUCERS);
    assert_true(consumers >= 1 && consumers <= STRESS_MAX_CONSUMERS);

    stress *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    size_t total = (size_t)producers * per_producer;
    s->records = calloc(total, sizeof(*s->records));
    s->seen = calloc(total, sizeof(*s->seen));
    assert_non_null(s->records);
    assert_non_null(s->seen);
    assert_int_equal(broker_ring_init(&s->ring, capacity), 0);
    s->producers = producers;
    s->consumers = consumers;
    s->per_producer = per_producer;
    s->modes = modes;
    s->pace = pace;
    s->stop_on_close = close_after_us >= 0;
    s->deadline_ns = now_ns() + (int64_t)STRESS_DEADLINE_S * 1000000000;
    atomic_flag_clear(&s->error_claimed);

    worker pw[STRESS_MAX_PRODUCERS], cw[STRESS_MAX_CONSUMERS];
    int64_t t0 = now_ns();
    for (int i = 0; i < consumers; i++) {
        cw[i] = (worker){s, i, 0};
        assert_int_equal(pthread_create(&cw[i].thread, NULL, consumer_main, &cw[i]), 0);
    }
    for (int i = 0; i < producers; i++) {
        pw[i] = (worker){s, i, 0};
        assert_int_equal(pthread_create(&pw[i].thread, NULL, producer_main, &pw[i]), 0);
    }
    if (close_after_us >= 0) {
        sleep_us(close_after_us);
        broker_ring_close(&s->ring);
    }
    wait_finished(s, producers, "producers");
    for (int i = 0; i < producers; i++)
        assert_int_equal(pthread_join(pw[i].thread, NULL), 0);
    /* All pushed: close so the consumers drain the ring and stop (and the sleepers wake). */
    broker_ring_close(&s->ring);
    wait_finished(s, producers + consumers, "consumers");
    for (int i = 0; i < consumers; i++)
        assert_int_equal(pthread_join(cw[i].thread, NULL), 0);
    double secs = (double)(now_ns() - t0) / 1e9;

    uint64_t pushed = 0;
    for (int p = 0; p < producers; p++)
        pushed += atomic_load(&s->pushed[p]);
    uint64_t received = atomic_load(&s->received);
    printf("  %d producers x %d consumers (%s), capacity %zu: %llu items in %.2f s (%.0f/s), "
           "%llu full retries, %llu pop_wait calls over 20 us\n",
           producers, consumers, modes, broker_ring_capacity(&s->ring),
           (unsigned long long)received, secs, (double)received / secs,
           (unsigned long long)atomic_load(&s->retries),
           (unsigned long long)atomic_load(&s->sleeps));
    if (atomic_load(&s->errors) != 0)
        print_error("  %llu errors, the first: %s\n", (unsigned long long)atomic_load(&s->errors),
                    s->first_error);
    assert_int_equal(atomic_load(&s->errors), 0);
    assert_int_equal(atomic_load(&s->lost), 0);

    /* Every successful push received exactly once, nothing else received. */
    assert_int_equal(received, pushed);
    for (int p = 0; p < producers; p++) {
        uint64_t n = atomic_load(&s->pushed[p]);
        if (close_after_us < 0)
            assert_int_equal(n, per_producer);
        for (uint32_t seq = 0; seq < per_producer; seq++)
            assert_int_equal(atomic_load(&s->seen[(size_t)p * per_producer + seq]),
                             seq < n ? 1 : 0);
    }
    void *item = NULL;
    assert_int_equal(broker_ring_try_pop(&s->ring, &item), -ECANCELED);
    assert_int_equal(broker_ring_size_approx(&s->ring), 0);

    broker_ring_cleanup(&s->ring);
    assert_null(s->ring.shared);
    free(s->records);
    free((void *)s->seen);
    free(s);
}

static void test_4x4(void **state)
{
    (void)state;
    run_stress(4, "twTw", 64, STRESS_ITEMS / 4, STRESS_FLOOD, -1);
}

static void test_1x8(void **state)
{
    (void)state;
    run_stress(1, "twTwwTtw", 1024, STRESS_ITEMS, STRESS_FLOOD, -1);
}

static void test_8x1(void **state)
{
    (void)state;
    run_stress(8, "w", 16, STRESS_ITEMS / 8, STRESS_FLOOD, -1);
    run_stress(8, "t", 16, STRESS_ITEMS / 8, STRESS_FLOOD, -1);
}

/* Tiny ring: constantly full and constantly wrapping. */
static void test_2x2_capacity_2(void **state)
{
    (void)state;
    run_stress(2, "wT", 2, STRESS_ITEMS / 8, STRESS_FLOOD, -1);
}

/*
 * Slow producers, each waiting for its item to be consumed before the next: the consumers sleep
 * on the futex between items, and every item depends on one wakeup. One producer is the strictest
 * form (no later push can rescue a missed wake); three exercise concurrent wakes.
 */
static void test_parked_consumers(void **state)
{
    (void)state;
    run_stress(1, "wwww", 8, STRESS_SLOW_ITEMS, STRESS_SLEEP, -1);
    run_stress(3, "wwwT", 8, STRESS_SLOW_ITEMS, STRESS_SLEEP, -1);
}

/*
 * One producer that pushes the next item a random 0-3 us after the previous one was consumed: the
 * pushes fall around the end of the consumers' spin, when they register as waiters and go to
 * sleep. A lost wakeup shows as an item not consumed within the item deadline.
 */
static void test_wake_race(void **state)
{
    (void)state;
    run_stress(1, "w", 8, STRESS_TIGHT_ITEMS, STRESS_TIGHT, -1);
    run_stress(1, "ww", 8, STRESS_TIGHT_ITEMS, STRESS_TIGHT, -1);
}

/* Close while producers push: each successful push is delivered once, and none after -EPIPE. */
static void test_close_while_pushing(void **state)
{
    (void)state;
    for (int round = 0; round < 5; round++)
        run_stress(4, "twT", 32, STRESS_ITEMS / 4, STRESS_FLOOD, 2000 + 3000 * round);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_4x4),
        cmocka_unit_test(test_1x8),
        cmocka_unit_test(test_8x1),
        cmocka_unit_test(test_2x2_capacity_2),
        cmocka_unit_test(test_parked_consumers),
        cmocka_unit_test(test_wake_race),
        cmocka_unit_test(test_close_while_pushing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
