/*
 * hist.c - the log-linear latency histogram (see hist.h).
 *
 * Layout: values below 2^11 have a bucket each. Above, a value v whose highest set bit is m
 * (m >= 11) is shifted right by m - 10, which leaves an 11-bit number s in [1024, 2047]; the
 * bucket is 2048 + (m - 11) * 1024 + (s - 1024). Every bucket above the first 2048 covers
 * [s << shift, ((s + 1) << shift) - 1], a width of at most v / 1024: three significant digits.
 */
#include "hist.h"

#include <string.h>

void bench_hist_init(bench_hist *h)
{
    memset(h, 0, sizeof(*h));
}

unsigned bench_hist_index(uint64_t v)
{
    if (v < BENCH_HIST_SUB)
        return (unsigned)v;
    unsigned m = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = m - (BENCH_HIST_SUB_BITS - 1u);
    unsigned s = (unsigned)(v >> shift);
    return BENCH_HIST_SUB + (m - BENCH_HIST_SUB_BITS) * (BENCH_HIST_SUB / 2u) +
           (s - BENCH_HIST_SUB / 2u);
}

uint64_t bench_hist_lowest(unsigned i)
{
    if (i < BENCH_HIST_SUB)
        return i;
    unsigned k = i - BENCH_HIST_SUB;
    unsigned shift = k / (BENCH_HIST_SUB / 2u) + 1u;
    uint64_t s = (uint64_t)(k % (BENCH_HIST_SUB / 2u)) + BENCH_HIST_SUB / 2u;
    return s << shift;
}

uint64_t bench_hist_highest(unsigned i)
{
    if (i < BENCH_HIST_SUB)
        return i;
    unsigned shift = (i - BENCH_HIST_SUB) / (BENCH_HIST_SUB / 2u) + 1u;
    return bench_hist_lowest(i) + ((uint64_t)1 << shift) - 1u;
}

void bench_hist_record(bench_hist *h, uint64_t v)
{
    if (v == 0)
        v = 1;
    if (v > BENCH_HIST_MAX_NS) {
        v = BENCH_HIST_MAX_NS;
        h->overflow++;
    }
    h->counts[bench_hist_index(v)]++;
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += (double)v;
}

void bench_hist_merge(bench_hist *dst, const bench_hist *src)
{
    if (src->count == 0)
        return;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
        dst->counts[i] += src->counts[i];
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->overflow += src->overflow;
    dst->sum += src->sum;
}

uint64_t bench_hist_percentile(const bench_hist *h, double pct)
{
    if (h->count == 0)
        return 0;
    if (pct <= 0)
        return h->min;
    if (pct >= 100)
        return h->max;
    double want = pct / 100.0 * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = bench_hist_highest(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double bench_hist_mean(const bench_hist *h)
{
    return h->count ? h->sum / (double)h->count : 0;
}
