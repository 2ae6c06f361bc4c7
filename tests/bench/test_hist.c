/*
 * test_hist.c - the benchmark's latency histogram (bench/hist.c): bucket bounds, percentiles
 * against sorted samples, merging, the edges (0, 1 ns, 60 s) and overflow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hist.h"

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The exact nearest-rank percentile of sorted samples. */
static uint64_t exact(const uint64_t *sorted, size_t n, double pct)
{
    double want = pct / 100.0 * (double)n;
    size_t rank = (size_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    return sorted[rank - 1];
}

/* Every value lies in its bucket, buckets tile the range, and each is narrow enough. */
static void test_bounds(void **state)
{
    (void)state;
    for (unsigned i = 1; i < BENCH_HIST_BUCKETS; i++) {
        assert_true(bench_hist_lowest(i) == bench_hist_highest(i - 1) + 1);
        uint64_t lo = bench_hist_lowest(i), hi = bench_hist_highest(i);
        assert_true(hi - lo <= lo / 1024);
        assert_int_equal(bench_hist_index(lo), i);
        assert_int_equal(bench_hist_index(hi), i);
    }
    assert_true(bench_hist_index(BENCH_HIST_MAX_NS) < BENCH_HIST_BUCKETS);
    uint64_t s = 7;
    for (int k = 0; k < 100000; k++) {
        uint64_t v = rng(&s) % BENCH_HIST_MAX_NS + 1;
        unsigned i = bench_hist_index(v);
        assert_true(bench_hist_lowest(i) <= v && v <= bench_hist_highest(i));
    }
}

/* Percentiles of log-uniform samples agree with the sorted samples to 3 significant digits. */
static void test_percentiles(void **state)
{
    (void)state;
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof(*v));
    bench_hist *h = malloc(sizeof(*h));
    assert_non_null(v);
    assert_non_null(h);
    bench_hist_init(h);
    uint64_t s = 42;
    double sum = 0;
    for (size_t i = 0; i < N; i++) {
        unsigned bits = (unsigned)(rng(&s) % 34) + 1;
        v[i] = rng(&s) % (1ull << bits) + 1;
        bench_hist_record(h, v[i]);
        sum += (double)v[i];
    }
    qsort(v, N, sizeof(*v), cmp_u64);
    static const double pcts[] = {0.001, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 99.999};
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        uint64_t want = exact(v, N, pcts[i]), got = bench_hist_percentile(h, pcts[i]);
        assert_true(got >= want);
        assert_true(got - want <= want / 1000 + 1);
    }
    assert_int_equal(bench_hist_percentile(h, 0), v[0]);
    assert_int_equal(bench_hist_percentile(h, 100), v[N - 1]);
    assert_int_equal(h->min, v[0]);
    assert_int_equal(h->max, v[N - 1]);
    assert_int_equal(h->count, N);
    assert_true(bench_hist_mean(h) > sum / N * 0.999999 && bench_hist_mean(h) < sum / N * 1.000001);
    free(v);
    free(h);
}

/* Histograms merged give exactly the histogram of all values recorded in one. */
static void test_merge(void **state)
{
    (void)state;
    bench_hist *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b)), *all = malloc(sizeof(*all));
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(all);
    bench_hist_init(a);
    bench_hist_init(b);
    bench_hist_init(all);
    uint64_t s = 3;
    for (int i = 0; i < 50000; i++) {
        uint64_t x = rng(&s) % 100000 + 1000, y = rng(&s) % 5000000 + 1;
        bench_hist_record(a, x);
        bench_hist_record(b, y);
        bench_hist_record(all, x);
        bench_hist_record(all, y);
    }
    bench_hist_merge(a, b);
    assert_memory_equal(a->counts, all->counts, sizeof(a->counts));
    assert_int_equal(a->count, all->count);
    assert_int_equal(a->min, all->min);
    assert_int_equal(a->max, all->max);
    assert_int_equal(bench_hist_percentile(a, 99), bench_hist_percentile(all, 99));
    /* Merging an empty histogram changes nothing; merging into an empty one copies. */
    bench_hist_init(b);
    bench_hist_merge(a, b);
    assert_int_equal(a->count, all->count);
    assert_int_equal(a->min, all->min);
    bench_hist_merge(b, all);
    assert_int_equal(b->min, all->min);
    assert_int_equal(b->max, all->max);
    assert_int_equal(bench_hist_percentile(b, 50), bench_hist_percentile(all, 50));
    free(a);
    free(b);
    free(all);
}

/* The edges: empty, zero, one value, 60 s and beyond. */
static void test_edges_and_overflow(void **state)
{
    (void)state;
    bench_hist *h = malloc(sizeof(*h));
    assert_non_null(h);
    bench_hist_init(h);
    assert_int_equal(bench_hist_percentile(h, 50), 0);
    assert_true(bench_hist_mean(h) == 0);
    bench_hist_record(h, 0);
    assert_int_equal(h->min, 1);
    assert_int_equal(bench_hist_percentile(h, 50), 1);
    bench_hist_init(h);
    bench_hist_record(h, 123456789);
    assert_int_equal(bench_hist_percentile(h, 50), 123456789);
    assert_int_equal(bench_hist_percentile(h, 99.99), 123456789);
    bench_hist_record(h, BENCH_HIST_MAX_NS);
    assert_int_equal(h->overflow, 0);
    bench_hist_record(h, BENCH_HIST_MAX_NS + 1);
    bench_hist_record(h, UINT64_MAX);
    assert_int_equal(h->overflow, 2);
    assert_int_equal(h->count, 4);
    assert_int_equal(h->max, BENCH_HIST_MAX_NS);
    assert_int_equal(bench_hist_percentile(h, 100), BENCH_HIST_MAX_NS);
    uint64_t p25 = bench_hist_percentile(h, 25);
    assert_true(p25 >= 123456789 && p25 - 123456789 <= 123456789 / 1000);
    uint64_t p90 = bench_hist_percentile(h, 90);
    assert_true(p90 <= BENCH_HIST_MAX_NS && p90 >= BENCH_HIST_MAX_NS - BENCH_HIST_MAX_NS / 1024);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_edges_and_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
