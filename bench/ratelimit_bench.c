/*
 * ratelimit_bench.c - the cost of one rate-limit decision (ratelimit_decide), the figure the
 * rate-limit issue asks to keep under 100 ns.
 *
 * Three cases, each timed over many decisions with the monotonic clock read once per batch:
 *  - one thread, one caller, accepted (a limit so high it never declines);
 *  - one thread, one caller, declined (a limit already spent);
 *  - T threads (one per core), one caller each, and T threads on one shared caller, the
 *    contended case (every decision a compare-and-swap on the same cache line).
 * The clock read the broker does per request is not included: it reads it anyway for its own
 * latency figures. Prints ns per decision, median [min..max] over --repeat rounds.
 */
#include "bench_util.h"
#include "ratelimit/ratelimit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GOAL_NS 100.0

typedef struct job {
    ratelimit_table *t;
    ratelimit_key key;
    uint64_t n;
    uint64_t now; /* fixed clock: decisions are independent of time passing */
    double ns_per;
    unsigned accepted;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    ratelimit_handle h = {0};
    ratelimit_attach(j->t, &j->key, j->now, &h);
    unsigned ok = 0;
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < j->n; i++)
        ok += ratelimit_decide(j->t, &h, &j->key, RATELIMIT_SCAN, j->now + i, NULL);
    j->ns_per = (double)(bench_now_ns() - t0) / (double)j->n;
    j->accepted = ok;
    return NULL;
}

/* Runs nthreads jobs on table t, on one caller (shared) or one each; returns mean ns/decision. */
static double run_case(ratelimit_table *t, unsigned nthreads, bool shared, uint64_t n)
{
    job jobs[64];
    pthread_t th[64];
    for (unsigned i = 0; i < nthreads; i++) {
        jobs[i] = (job){.t = t,
                        .key = {.pid = shared ? 1 : (pid_t)(100 + i), .start_time = 42},
                        .n = n,
                        .now = 1000000000ull};
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    double sum = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        sum += jobs[i].ns_per;
    }
    return sum / nthreads;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    unsigned repeat = 5;
    uint64_t n = 20000000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
            repeat = (unsigned)atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0)
            n = 2000000, repeat = 3;
        else {
            fprintf(stderr, "usage: ratelimit_bench [--repeat K] [--quick]\n");
            return 1;
        }
    }
    if (repeat == 0 || repeat > 64)
        repeat = 5;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned nthreads = cores > 1 ? (unsigned)(cores > 64 ? 64 : cores) : 2;

    ratelimit_config open, spent;
    ratelimit_config_init(&open);
    open.max_requests = 100000000;
    open.burst = 100000000;
    ratelimit_config_init(&spent);
    spent.max_requests = 1;
    spent.burst = 0;
    spent.interval_ms = 86400000;

    static const char *const names[] = {"1 thread, accepted", "1 thread, declined",
                                        "threads, a caller each", "threads, one shared caller"};
    double v[4][64];
    for (unsigned r = 0; r < repeat; r++) {
        ratelimit_table *a, *d;
        if (ratelimit_table_create(&open, &a) != 0 || ratelimit_table_create(&spent, &d) != 0) {
            fprintf(stderr, "ratelimit_bench: out of memory\n");
            return 1;
        }
        v[0][r] = run_case(a, 1, true, n);
        v[1][r] = run_case(d, 1, true, n);
        v[2][r] = run_case(a, nthreads, false, n / nthreads);
        v[3][r] = run_case(a, nthreads, true, n / nthreads);
        ratelimit_table_destroy(a);
        ratelimit_table_destroy(d);
    }
    printf("ratelimit_bench: ns per ratelimit_decide, %u threads in the threaded cases, %u rounds "
           "of %llu decisions; median [min..max]\n",
           nthreads, repeat, (unsigned long long)n);
    for (int c = 0; c < 4; c++) {
        qsort(v[c], repeat, sizeof(double), cmp_double);
        double med = v[c][repeat / 2];
        printf("  %-28s %7.1f [%.1f..%.1f] ns  %s\n", names[c], med, v[c][0], v[c][repeat - 1],
               c < 3 ? (med < GOAL_NS ? "PASS (< 100 ns)" : "MISS (>= 100 ns)")
                     : "(contended, for reference)");
    }
    ratelimit_config_cleanup(&open);
    ratelimit_config_cleanup(&spent);
    return 0;
}
