/*
 * hist.h - a log-linear latency histogram in the manner of HdrHistogram: values from 1 ns to
 * 60 s kept to 3 significant digits (every bucket is at most 1/1024 of its value wide) in a fixed
 * array of counters, so recording is one index computation and one increment, and histograms
 * recorded by different threads or processes merge exactly by adding counters.
 *
 * Percentiles are computed from the merged counts, never averaged across histograms. The struct
 * holds its counters inline (no allocation), so it can live in shared memory and be copied.
 * A histogram is not thread-safe: each thread records into its own, and they are merged after.
 */
#ifndef BENCH_HIST_H
#define BENCH_HIST_H

#include <stdbool.h>
#include <stdint.h>

/* Sub-buckets per power of two: 2^11, so each bucket spans at most 1/1024 of its value. */
#define BENCH_HIST_SUB_BITS 11u
#define BENCH_HIST_SUB      (1u << BENCH_HIST_SUB_BITS)
/* The largest value kept exactly to 3 digits: 60 s in ns. Larger values count as overflow. */
#define BENCH_HIST_MAX_NS 60000000000ull
/* Buckets: 0 .. 2047 one wide, then 1024 per power of two up to 2^36 (covers 60 s). */
#define BENCH_HIST_BUCKETS (BENCH_HIST_SUB + (36u - BENCH_HIST_SUB_BITS) * (BENCH_HIST_SUB / 2u))

typedef struct bench_hist {
    uint64_t count;    /* values recorded, overflow included */
    uint64_t overflow; /* values above BENCH_HIST_MAX_NS (recorded as BENCH_HIST_MAX_NS) */
    uint64_t min, max; /* exact extremes of what was recorded (after clamping) */
    double sum;        /* for the mean */
    uint64_t counts[BENCH_HIST_BUCKETS];
} bench_hist;

/* Empties h. Can't fail. */
void bench_hist_init(bench_hist *h);
/*
 * Records one value in ns. 0 is recorded as 1 (the lowest value); a value above
 * BENCH_HIST_MAX_NS is recorded as BENCH_HIST_MAX_NS and counted in overflow. Can't fail.
 */
void bench_hist_record(bench_hist *h, uint64_t ns);
/* Adds every count of src to dst (dst may already hold values). Can't fail. */
void bench_hist_merge(bench_hist *dst, const bench_hist *src);
/*
 * The value at percentile pct (0 < pct <= 100) by nearest rank: the highest value equivalent to
 * the bucket holding the ceil(pct/100 * count)-th smallest value, but never above the exact max.
 * pct <= 0 gives min, pct >= 100 gives max. Returns 0 for an empty histogram.
 */
uint64_t bench_hist_percentile(const bench_hist *h, double pct);
/* The mean of the recorded values, 0 when empty. */
double bench_hist_mean(const bench_hist *h);

/* The bucket of a value, and the lowest and highest values of a bucket (for the tests). */
unsigned bench_hist_index(uint64_t ns);
uint64_t bench_hist_lowest(unsigned index);
uint64_t bench_hist_highest(unsigned index);

#endif
