/*
 * broker_bench.c - what amsid adds to a scan, measured end to end against an echo floor in the
 * same run (DESIGN.md §8).
 *
 * Two servers answer the same requests through the same client code: libamsi's AmsiScanBuffer,
 * pointed at a server's socket with AMSI_BROKER_SOCKET.
 *  - floor:  an echo server forked from this program with the broker's shape (one epoll thread
 *            per core, each accepting with EPOLLEXCLUSIVE, one recvmsg and one send per request).
 *            It decodes each request and answers with the reply amsid sends for a clean script
 *            (a 64-byte frame carrying the request id), and scans nothing.
 *  - broker: the real amsid with the bundled rules, started and stopped by this program.
 * The difference between the two is what the broker adds per request: the content hash and the
 * verdict cache, the scan, and its bookkeeping.
 *
 * Content is generated PowerShell of exactly --size bytes. Every request is made unique by a
 * stamp in its first line, so the verdict cache (keyed by a hash of the content) never answers.
 * A third target, "cached", sends the broker 16 blocks over and over, so the cache answers nearly
 * every request.
 *
 * Each of --repeat rounds measures every target for --duration seconds, cut into slices of
 * --slice seconds that alternate between the targets (A B C A B C ..., the first target rotating
 * from round to round), so that noise on a shared machine lands on every target alike:
 *  - one client: a closed loop of AmsiScanBuffer calls from this process, each call timed with
 *    clock_gettime; p50/p90/p99/p99.9/max from all samples of the round.
 *  - N clients: N forked processes, one thread each, connected to every target, run closed loops
 *    on the slice's target and switch together; total calls per second of the target's slices.
 * Each slice starts with a few unrecorded calls. The server's CPU time per call (user + system,
 * from /proc/<pid>/stat) is read around every slice, to show where the difference goes.
 * Figures are printed as median [min..max] over rounds. The goals are judged on the median of
 * figures computed within each round (broker and floor measured in the same seconds), which moves
 * less than a ratio of two medians.
 *
 * The program exits 0 whenever it could measure, whether the goals are met or not, and 1 on a bad
 * option or when a server could not be started or failed requests.
 */
#include "amsi.h"
#include "amsi_protocol.h"
#include "bench_util.h"
#include "echo.h"
#include "gen.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS   256
#define CACHED_BLOCKS 16
#define WARMUP_CALLS  200
#define INLINE_MAX    (1u << 20) /* amsid's default broker.inline_max */
#define NTARGETS      4
#define MAX_SETS      16
#define MAX_SLICES    1024 /* slices of one multi-client round, all targets together */

/* The goals of the issue, stated for 4 KiB script blocks and 8 client processes. */
#define GOAL_P50_DELTA_US   8.0
#define GOAL_P99_MAX_RATIO  2.0
#define GOAL_THROUGHPUT_PCT 80.0
/* The rate-limit issue's goal: a declined request costs little more than the echo floor. */
#define GOAL_DECLINED_P50_DELTA_US 3.0

/*
 * Set by SIGINT/SIGTERM; every loop checks it and the program leaves through its normal
 * clean-up (servers stopped, temporary directory removed). The only mutable global.
 */
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct bench_opts {
    const char *amsid;
    const char *rules;
    size_t size;
    unsigned clients;
    double duration;
    unsigned repeat;
    unsigned threads;           /* server threads for amsid and the echo server; 0 = one per core */
    double slice;               /* seconds per slice */
    const char *sets[MAX_SETS]; /* --set overrides passed on to amsid */
    unsigned nsets;
    uint64_t seed;
    unsigned target_mask; /* bit t: measure targets[t] */
    bool run_one, run_multi;
    bool quick;
} bench_opts;

/* One server to measure against. */
typedef struct target {
    const char *label;
    char socket[108];
    pid_t server; /* for its CPU time */
    bool repeat_content;
    HRESULT expect;   /* what a call answers besides S_OK (declined: AMSI_E_THROTTLED) */
    HAMSICONTEXT ctx; /* this process's context for the one-client runs */
} target;

/* What one run of one target produced. */
typedef struct run_result {
    double p50, p90, p99, p999, max; /* us (one-client runs) */
    double calls_per_s;
    double server_cpu_us; /* server CPU time per call */
    uint64_t calls, errors, detected;
    bool done;
} run_result;

/* The median and range of one figure over rounds. */
typedef struct stat3 {
    double med, min, max;
    bool valid;
} stat3;

/* Generated content: blocks[i] has size bytes, with a stamp in its first line. */
typedef struct corpus {
    uint8_t **blocks;
    size_t n;
    size_t size;
} corpus;

/* One slice of a multi-client run: which target the clients call, and until when. */
typedef struct slice_plan {
    unsigned target;
    uint64_t deadline_ns;
} slice_plan;

/*
 * Shared with the client processes of a multi-client run (an anonymous shared mapping). The
 * parent fills plan[p], then publishes p in phase and wakes the clients (a futex on phase); a
 * client runs each published slice until its deadline and then sleeps on phase again. stop is
 * set before the last bump of phase.
 */
typedef struct client_share {
    _Atomic uint32_t phase;
    _Atomic uint32_t stop;
    slice_plan plan[MAX_SLICES + 2];
    struct {
        uint64_t calls[NTARGETS], errors[NTARGETS], detected[NTARGETS];
    } slot[MAX_CLIENTS];
} client_share;

typedef struct bench {
    bench_opts o;
    char tmpdir[64];
    char ctl_socket[108], declined_ctl[108];
    char amsid_log[128], declined_log[128];
    pid_t echo_pid, amsid_pid, declined_pid;
    unsigned server_threads;
    corpus content;
    target targets[NTARGETS];
    unsigned active[NTARGETS]; /* the measured targets, in table order */
    unsigned nactive;
    uint64_t *samples[NTARGETS]; /* one-client latencies of the current round */
    size_t sample_cap;
    client_share *share;
    uint64_t next_stamp; /* this process's stamps: 0xFFFF << 48 | counter */
    uint32_t run_id;     /* multi-client runs so far; their stamps start with it */
    run_result *one;     /* [round][target] */
    run_result *multi;   /* [round][target] */
} bench;

static const WCHAR content_name[] = {'b', 'e', 'n', 'c', 'h', '.', 'p', 's', '1', 0};

/* ------------------------------------------------------------------------------------------ */
/* Content: PowerShell-like script blocks.                                                     */

/* Generates the corpus. Returns 0 or -1 (out of memory). */
static int corpus_init(corpus *c, size_t size, uint64_t seed)
{
    size_t n = (64u << 20) / size;
    n = n > 256 ? 256 : n < CACHED_BLOCKS ? CACHED_BLOCKS : n;
    c->blocks = calloc(n, sizeof(*c->blocks));
    if (c->blocks == NULL)
        return -1;
    c->n = n;
    c->size = size;
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        if ((c->blocks[i] = malloc(size)) == NULL)
            return -1;
        bench_gen_script(&s, c->blocks[i], size);
    }
    return 0;
}

static void corpus_cleanup(corpus *c)
{
    for (size_t i = 0; c->blocks && i < c->n; i++)
        free(c->blocks[i]);
    free(c->blocks);
    c->blocks = NULL;
}

/*
 * The block for call number k: a unique stamp (the verdict cache cannot answer), or for a
 * repeating target one of CACHED_BLOCKS fixed blocks. Stamping happens outside the timed call.
 */
static uint8_t *next_block(corpus *c, bool repeat, uint64_t k, uint64_t unique_stamp)
{
    if (repeat) {
        uint8_t *b = c->blocks[k % CACHED_BLOCKS];
        bench_gen_stamp(b, 0xCAC4Eu << 8 | (k % CACHED_BLOCKS));
        return b;
    }
    uint8_t *b = c->blocks[k % c->n];
    bench_gen_stamp(b, unique_stamp);
    return b;
}

/* ------------------------------------------------------------------------------------------ */
/* amsid.                                                                                      */

/*
 * Starts amsid with the socket, control socket and log given and the limits given (--set
 * values), plus --set values from the command line. Returns its pid or -1 (reported).
 */
static pid_t start_amsid(bench *b, const char *socket_path, const char *ctl, const char *log_path,
                         const char *const *limits, unsigned nlimits)
{
    bench_amsid a = {.exe = b->o.amsid,
                     .rules = b->o.rules,
                     .socket = socket_path,
                     .control = ctl,
                     .log = log_path,
                     .threads = b->o.threads,
                     .sets = limits,
                     .nsets = nlimits,
                     .user_sets = b->o.sets,
                     .nuser_sets = b->o.nsets};
    return bench_amsid_start(&a, &g_stop);
}

/* ------------------------------------------------------------------------------------------ */
/* Measurements.                                                                               */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank percentile q of n sorted samples, in us. */
static double percentile_us(const uint64_t *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / 1000.0;
}

/* Calls a target count times without recording (connections, caches and branch predictors). */
static void warm_up(HAMSICONTEXT ctx, corpus *c, bool repeat, unsigned count, uint64_t *stamp)
{
    for (unsigned k = 0; k < count && !g_stop; k++) {
        AMSI_RESULT r;
        uint8_t *blk = next_block(c, repeat, k, (*stamp)++);
        (void)AmsiScanBuffer(ctx, blk, (ULONG)c->size, content_name, NULL, &r);
    }
}

/* What a target's slices of one round added up to. */
typedef struct one_acc {
    size_t n;
    uint64_t elapsed_ns, cpu_ns, errors, detected;
} one_acc;

/*
 * One slice of a one-client run, this process: a short warm-up (the other targets ran since),
 * then a closed loop for slice_ns, every call timed and recorded in the target's samples.
 */
static void one_client_slice(bench *b, unsigned t, uint64_t slice_ns, one_acc *acc)
{
    target *tg = &b->targets[t];
    uint64_t *samples = b->samples[t];
    warm_up(tg->ctx, &b->content, tg->repeat_content, WARMUP_CALLS / 8, &b->next_stamp);
    size_t n = acc->n;
    uint64_t cpu0 = bench_proc_cpu_ns(tg->server);
    uint64_t start = bench_now_ns(), deadline = start + slice_ns, now = start;
    while (now < deadline && n < b->sample_cap && !g_stop) {
        AMSI_RESULT res;
        uint8_t *blk = next_block(&b->content, tg->repeat_content, n, b->next_stamp++);
        uint64_t t0 = bench_now_ns();
        HRESULT hr = AmsiScanBuffer(tg->ctx, blk, (ULONG)b->content.size, content_name, NULL, &res);
        now = bench_now_ns();
        samples[n++] = now - t0;
        if (hr != AMSI_S_OK && hr != tg->expect)
            acc->errors++;
        else if (AmsiResultIsMalware(res))
            acc->detected++;
    }
    acc->cpu_ns += bench_proc_cpu_ns(tg->server) - cpu0;
    acc->elapsed_ns += now - start;
    acc->n = n;
}

/* Turns a target's samples and sums of one round into its figures. */
static void one_client_figures(bench *b, unsigned t, const one_acc *acc, run_result *r)
{
    uint64_t *samples = b->samples[t];
    size_t n = acc->n;
    qsort(samples, n, sizeof(uint64_t), cmp_u64);
    *r = (run_result){.calls = n, .errors = acc->errors, .detected = acc->detected};
    r->calls_per_s = acc->elapsed_ns ? (double)n / ((double)acc->elapsed_ns / 1e9) : 0;
    r->server_cpu_us = n ? (double)acc->cpu_ns / 1000.0 / (double)n : 0;
    r->p50 = percentile_us(samples, n, 0.50);
    r->p90 = percentile_us(samples, n, 0.90);
    r->p99 = percentile_us(samples, n, 0.99);
    r->p999 = percentile_us(samples, n, 0.999);
    r->max = n ? (double)samples[n - 1] / 1000.0 : 0;
    r->done = n > 0 && !g_stop;
}

/*
 * The one-client runs of a round: --duration per target, cut into slices of --slice seconds that
 * alternate between the targets (A B C A B C ..., starting with a different target each round),
 * so that noise on the machine lands on every target alike.
 */
static void run_one_client_round(bench *b, unsigned round)
{
    one_acc acc[NTARGETS] = {{0}};
    unsigned nslices = (unsigned)(b->o.duration / b->o.slice + 0.5);
    if (nslices < 1)
        nslices = 1;
    uint64_t slice_ns = (uint64_t)(b->o.duration * 1e9) / nslices;
    for (unsigned sl = 0; sl < nslices && !g_stop; sl++)
        for (unsigned i = 0; i < b->nactive && !g_stop; i++) {
            unsigned t = b->active[(round + sl + i) % b->nactive];
            one_client_slice(b, t, slice_ns, &acc[t]);
        }
    for (unsigned i = 0; i < b->nactive; i++) {
        unsigned t = b->active[i];
        one_client_figures(b, t, &acc[t], &b->one[round * NTARGETS + t]);
    }
}

/* Sleeps while *word == expect, at most timeout_ms (a futex shared between processes). */
static void futex_wait(_Atomic uint32_t *word, uint32_t expect, unsigned timeout_ms)
{
    struct timespec ts = {.tv_sec = timeout_ms / 1000,
                          .tv_nsec = (long)(timeout_ms % 1000) * 1000000L};
    syscall(SYS_futex, (void *)word, FUTEX_WAIT, expect, &ts, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (void *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/*
 * A client process of a multi-client round: a context on every target, then the slices the
 * parent publishes, each a closed loop on one target until its deadline. Never returns.
 */
static void client_main(bench *b, unsigned idx, int ready_fd)
{
    HAMSICONTEXT ctx[NTARGETS] = {0};
    /* Stamps unique across rounds and clients; the parent's own stamps have all top bits set. */
    uint64_t stamp = (uint64_t)b->run_id << 40 | (uint64_t)idx << 32;
    for (unsigned i = 0; i < b->nactive; i++) {
        const target *t = &b->targets[b->active[i]];
        if (setenv("AMSI_BROKER_SOCKET", t->socket, 1) != 0 ||
            AmsiInitializeA("broker_bench", &ctx[b->active[i]]) != AMSI_S_OK) {
            (void)!write(ready_fd, "E", 1);
            _exit(1);
        }
        warm_up(ctx[b->active[i]], &b->content, t->repeat_content, WARMUP_CALLS / 4, &stamp);
    }
    (void)!write(ready_fd, "R", 1);
    close(ready_fd);
    client_share *sh = b->share;
    uint32_t seen = 0;
    uint64_t k = idx * 7919u, calls[NTARGETS] = {0}, errors[NTARGETS] = {0},
             detected[NTARGETS] = {0};
    for (;;) {
        uint32_t p = atomic_load_explicit(&sh->phase, memory_order_acquire);
        if (p == seen) {
            futex_wait(&sh->phase, seen, 200);
            continue;
        }
        seen = p;
        if (atomic_load_explicit(&sh->stop, memory_order_acquire) || p > MAX_SLICES)
            break;
        unsigned t = sh->plan[p].target;
        uint64_t deadline = sh->plan[p].deadline_ns;
        const target *tg = &b->targets[t];
        while (!g_stop && bench_now_ns() < deadline) {
            AMSI_RESULT res;
            uint8_t *blk = next_block(&b->content, tg->repeat_content, k++, stamp++);
            HRESULT hr =
                AmsiScanBuffer(ctx[t], blk, (ULONG)b->content.size, content_name, NULL, &res);
            calls[t]++;
            if (hr != AMSI_S_OK && hr != tg->expect)
                errors[t]++;
            else if (AmsiResultIsMalware(res))
                detected[t]++;
        }
    }
    for (unsigned t = 0; t < NTARGETS; t++) {
        sh->slot[idx].calls[t] = calls[t];
        sh->slot[idx].errors[t] = errors[t];
        sh->slot[idx].detected[t] = detected[t];
        AmsiUninitialize(ctx[t]);
    }
    _exit(0);
}

/*
 * The multi-client runs of a round: N client processes, each with a connection to every target,
 * run closed loops on one target at a time, all switching together: --duration per target cut
 * into slices of --slice seconds that alternate between the targets (the order rotating from
 * round to round), so noise on the machine lands on every target alike. After each slice the
 * parent waits 2 ms for calls in flight before it starts the next. Throughput is the calls of a
 * target over the time of its slices.
 */
static void run_multi_client_round(bench *b, unsigned round)
{
    unsigned n = b->o.clients;
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0)
        return;
    client_share *sh = b->share;
    memset(sh, 0, sizeof(*sh));
    pid_t pids[MAX_CLIENTS];
    unsigned started = 0;
    b->run_id++;
    fflush(NULL);
    for (unsigned i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0)
            break;
        if (pid == 0) {
            close(ready[0]);
            client_main(b, i, ready[1]);
        }
        pids[started++] = pid;
    }
    close(ready[1]);
    unsigned ready_count = 0;
    bool failed = started < n;
    while (ready_count < started && !g_stop) {
        char c;
        ssize_t got = read(ready[0], &c, 1);
        if (got == 1 && c == 'E')
            failed = true;
        if (got == 1)
            ready_count++;
        else if (got == 0 || (got < 0 && errno != EINTR))
            break;
    }
    close(ready[0]);
    failed = failed || ready_count < started;

    unsigned nslices = (unsigned)(b->o.duration / b->o.slice + 0.5);
    if (nslices < 1)
        nslices = 1;
    if (nslices * b->nactive > MAX_SLICES)
        nslices = MAX_SLICES / b->nactive;
    uint64_t slice_ns = (uint64_t)(b->o.duration * 1e9) / nslices;
    uint64_t cpu[NTARGETS] = {0}, elapsed[NTARGETS] = {0};
    uint32_t p = 0;
    for (unsigned sl = 0; sl < nslices && !failed && !g_stop; sl++) {
        for (unsigned i = 0; i < b->nactive && !g_stop; i++) {
            unsigned t = b->active[(round + sl + i) % b->nactive];
            p++;
            uint64_t cpu0 = bench_proc_cpu_ns(b->targets[t].server);
            uint64_t start = bench_now_ns();
            sh->plan[p] = (slice_plan){.target = t, .deadline_ns = start + slice_ns};
            atomic_store_explicit(&sh->phase, p, memory_order_release);
            futex_wake_all(&sh->phase);
            bench_sleep_until(start + slice_ns + 2000000u, &g_stop);
            cpu[t] += bench_proc_cpu_ns(b->targets[t].server) - cpu0;
            elapsed[t] += slice_ns;
        }
    }
    atomic_store_explicit(&sh->stop, 1, memory_order_release);
    atomic_store_explicit(&sh->phase, p + 1, memory_order_release);
    futex_wake_all(&sh->phase);
    for (unsigned i = 0; i < started; i++) {
        int status = 0;
        while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR)
            if (g_stop)
                kill(pids[i], SIGTERM);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed = true;
    }
    for (unsigned i = 0; i < b->nactive; i++) {
        unsigned t = b->active[i];
        run_result *r = &b->multi[round * NTARGETS + t];
        *r = (run_result){0};
        for (unsigned c = 0; c < started; c++) {
            r->calls += sh->slot[c].calls[t];
            r->errors += sh->slot[c].errors[t];
            r->detected += sh->slot[c].detected[t];
        }
        if (failed)
            r->errors++;
        r->calls_per_s = elapsed[t] ? (double)r->calls / ((double)elapsed[t] / 1e9) : 0;
        r->server_cpu_us = r->calls ? (double)cpu[t] / 1000.0 / (double)r->calls : 0;
        r->done = !failed && r->calls > 0 && !g_stop;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Figures.                                                                                    */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median and range of n values (n may be 0). */
static stat3 summarize(const double *v, unsigned n)
{
    stat3 s = {0};
    if (n == 0)
        return s;
    double tmp[256];
    n = n > 256 ? 256 : n;
    memcpy(tmp, v, n * sizeof(double));
    qsort(tmp, n, sizeof(double), cmp_double);
    s.min = tmp[0];
    s.max = tmp[n - 1];
    s.med = n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
    s.valid = true;
    return s;
}

static void fmt_stat(char *out, size_t cap, stat3 s, int prec, const char *unit)
{
    if (!s.valid)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%.*f%s [%.*f..%.*f]", prec, s.med, unit, prec, s.min, prec, s.max);
}

/* The same with explicit signs (differences). */
static void fmt_stat_signed(char *out, size_t cap, stat3 s, int prec, const char *unit)
{
    if (!s.valid)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%+.*f%s [%+.*f..%+.*f]", prec, s.med, unit, prec, s.min, prec, s.max);
}

/* Which figure of a run_result a table row shows. */
typedef enum figure {
    FIG_P50,
    FIG_P90,
    FIG_P99,
    FIG_P999,
    FIG_MAX,
    FIG_RATE,
    FIG_CPU,
} figure;

static double figure_of(const run_result *r, figure f)
{
    switch (f) {
    case FIG_P50:
        return r->p50;
    case FIG_P90:
        return r->p90;
    case FIG_P99:
        return r->p99;
    case FIG_P999:
        return r->p999;
    case FIG_MAX:
        return r->max;
    case FIG_RATE:
        return r->calls_per_s;
    case FIG_CPU:
        return r->server_cpu_us;
    }
    return 0;
}

/* One row: a figure of every target over the rounds. */
static void print_row(const bench *b, const run_result *runs, const char *label, figure f, int prec)
{
    printf("  %-22s", label);
    for (unsigned i = 0; i < b->nactive; i++) {
        unsigned t = b->active[i];
        double v[256];
        unsigned n = 0;
        for (unsigned r = 0; r < b->o.repeat && n < 256; r++)
            if (runs[r * NTARGETS + t].done)
                v[n++] = figure_of(&runs[r * NTARGETS + t], f);
        char cell[96];
        fmt_stat(cell, sizeof(cell), summarize(v, n), prec, "");
        printf("  %-26s", cell);
    }
    printf("\n");
}

typedef enum goal_kind {
    GOAL_P50_DELTA,
    GOAL_P99_RATIO,
    GOAL_THROUGHPUT,
    GOAL_DECLINED_P50
} goal_kind;

/* Prints one goal for target t against the floor (target 0), judged on the per-round median. */
static void print_goal(const bench *b, unsigned t, goal_kind kind, const char *label)
{
    double v[256];
    unsigned n = 0;
    for (unsigned r = 0; r < b->o.repeat && n < 256; r++) {
        const run_result *fl, *x;
        if (kind == GOAL_THROUGHPUT) {
            fl = &b->multi[r * NTARGETS];
            x = &b->multi[r * NTARGETS + t];
        } else {
            fl = &b->one[r * NTARGETS];
            x = &b->one[r * NTARGETS + t];
        }
        if (!fl->done || !x->done)
            continue;
        if (kind == GOAL_P50_DELTA || kind == GOAL_DECLINED_P50)
            v[n++] = x->p50 - fl->p50;
        else if (kind == GOAL_P99_RATIO)
            v[n++] = fl->p99 > 0 ? x->p99 / fl->p99 : 0;
        else
            v[n++] = fl->calls_per_s > 0 ? 100.0 * x->calls_per_s / fl->calls_per_s : 0;
    }
    stat3 s = summarize(v, n);
    char cell[96];
    bool pass = false;
    switch (kind) {
    case GOAL_P50_DELTA:
        fmt_stat_signed(cell, sizeof(cell), s, 1, " us");
        pass = s.valid && s.med <= GOAL_P50_DELTA_US;
        break;
    case GOAL_DECLINED_P50:
        fmt_stat_signed(cell, sizeof(cell), s, 1, " us");
        pass = s.valid && s.med <= GOAL_DECLINED_P50_DELTA_US;
        break;
    case GOAL_P99_RATIO:
        fmt_stat(cell, sizeof(cell), s, 2, " x");
        pass = s.valid && s.med <= GOAL_P99_MAX_RATIO;
        break;
    case GOAL_THROUGHPUT:
        fmt_stat(cell, sizeof(cell), s, 1, " %");
        pass = s.valid && s.med >= GOAL_THROUGHPUT_PCT;
        break;
    }
    printf("  %-44s  %-30s  %s\n", label, cell, !s.valid ? "-" : pass ? "PASS" : "MISS");
}

static void print_report(const bench *b)
{
    printf("\nbroker_bench: %zu-byte PowerShell-like script blocks through AmsiScanBuffer\n",
           b->o.size);
    printf("  floor:  echo server (%u threads, epoll, recvmsg + send, %u-byte reply), no scan\n",
           b->server_threads, AMSI_PROTO_REP_HEADER);
    printf("  broker: %s (%u threads), rules %s\n", b->o.amsid, b->server_threads, b->o.rules);
    for (unsigned i = 0; i < b->o.nsets; i++)
        printf("          --set %s\n", b->o.sets[i]);
    printf("  %u rounds of %.1f s per target and run, in %.2f s slices alternating between the "
           "targets; median [min..max] over rounds\n",
           b->o.repeat, b->o.duration, b->o.slice);
    printf("  cached = the broker fed %d repeating blocks (verdict cache hits); the other targets "
           "get a unique block per call\n",
           CACHED_BLOCKS);

    if (!b->o.run_one)
        goto multi;
    printf("\nOne client, closed loop: AmsiScanBuffer latency in us\n");
    printf("  %-22s", "");
    for (unsigned i = 0; i < b->nactive; i++)
        printf("  %-26s", b->targets[b->active[i]].label);
    printf("\n");
    print_row(b, b->one, "p50", FIG_P50, 1);
    print_row(b, b->one, "p90", FIG_P90, 1);
    print_row(b, b->one, "p99", FIG_P99, 1);
    print_row(b, b->one, "p99.9", FIG_P999, 1);
    print_row(b, b->one, "max", FIG_MAX, 0);
    print_row(b, b->one, "calls/s", FIG_RATE, 0);
    print_row(b, b->one, "server CPU us/call", FIG_CPU, 2);

multi:
    if (!b->o.run_multi)
        goto goals;
    printf("\n%u client processes, closed loop: total throughput\n", b->o.clients);
    printf("  %-22s", "");
    for (unsigned i = 0; i < b->nactive; i++)
        printf("  %-26s", b->targets[b->active[i]].label);
    printf("\n");
    print_row(b, b->multi, "calls/s", FIG_RATE, 0);
    print_row(b, b->multi, "server CPU us/call", FIG_CPU, 2);

goals:
    printf("\nGoals (figure computed within each round, median [min..max] over rounds)\n");
    printf("  %-44s  %-30s  %s\n", "goal", "broker - floor, broker / floor", "verdict");
    char label[96];
    print_goal(b, 1, GOAL_P50_DELTA, "1 client: p50 <= floor p50 + 8 us");
    print_goal(b, 1, GOAL_P99_RATIO, "1 client: p99 <= 2 x floor p99");
    snprintf(label, sizeof(label), "%u clients: >= 80 %% of floor throughput", b->o.clients);
    print_goal(b, 1, GOAL_THROUGHPUT, label);
    if (b->o.target_mask & 8u)
        print_goal(b, 3, GOAL_DECLINED_P50, "declined: p50 <= floor p50 + 3 us");
    if (b->o.target_mask & 4u) {
        printf("  (cached content, for reference)\n");
        print_goal(b, 2, GOAL_P50_DELTA, "1 client: p50 <= floor p50 + 8 us");
        print_goal(b, 2, GOAL_P99_RATIO, "1 client: p99 <= 2 x floor p99");
        print_goal(b, 2, GOAL_THROUGHPUT, label);
    }
    if (b->o.size != 4096 || b->o.clients != 8)
        printf("  note: the goals are stated for 4096-byte blocks and 8 clients; this run used "
               "%zu bytes and %u clients\n",
               b->o.size, b->o.clients);
    if (b->o.quick)
        printf("  note: --quick run: short runs, indicative figures only\n");

    uint64_t errors = 0, detected = 0;
    for (unsigned i = 0; i < b->o.repeat * NTARGETS; i++) {
        errors += b->one[i].errors + b->multi[i].errors;
        detected += b->one[i].detected + b->multi[i].detected;
    }
    printf("\nChecks: %llu failed calls, %llu detections on clean content (both should be 0)\n",
           (unsigned long long)errors, (unsigned long long)detected);
}

/* ------------------------------------------------------------------------------------------ */
/* Options and main.                                                                           */

static void usage(FILE *f)
{
    fputs("usage: broker_bench [--amsid PATH] [--rules PATH] [--size BYTES] [--clients N]\n"
          "                    [--duration S] [--repeat K] [--slice S] [--threads N]\n"
          "                    [--targets LIST] [--runs LIST] [--set S.K=V]... [--seed N]\n"
          "                    [--quick]\n"
          "  --amsid PATH    the broker to start (default: the build's broker/amsid)\n"
          "  --rules PATH    rule file for amsid (default: the bundled default.yar)\n"
          "  --size BYTES    script block size, 64 .. 1048576 (default 4096)\n"
          "  --clients N     client processes of the throughput run (default 8)\n"
          "  --duration S    seconds per target and run (default 2; --quick 0.5)\n"
          "  --repeat K      rounds (default 5; --quick 3)\n"
          "  --slice S       one-client runs alternate targets every S seconds (default 0.25)\n"
          "  --threads N     server threads for amsid and the echo floor (default: cores)\n"
          "  --targets LIST  of floor,broker,cached (default all; the goals need floor, broker)\n"
          "  --runs LIST     of one,multi (default both), e.g. --runs one under perf record\n"
          "  --set S.K=V     passed on to amsid (repeatable), e.g. --set engine.normalize=0\n"
          "  --seed N        content generator seed (default 1)\n"
          "  --quick         a short run (under 30 s)\n",
          f);
}

static const char *const target_names[NTARGETS] = {"floor", "broker", "cached", "declined"};

/* Parses a comma-separated list of names into a bit mask. Returns 0 or -1 (an unknown name). */
static int parse_list(const char *list, const char *const *names, unsigned n, unsigned *mask)
{
    *mask = 0;
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        unsigned i = 0;
        while (i < n && !(strlen(names[i]) == len && strncmp(p, names[i], len) == 0))
            i++;
        if (i == n)
            return -1;
        *mask |= 1u << i;
        p += len;
        if (*p == ',')
            p++;
    }
    return *mask ? 0 : -1;
}

/* Parses the command line. Returns 0, 1 (help printed) or -1 (bad option, usage printed). */
static int parse_opts(int argc, char **argv, bench_opts *o, char *amsid_buf, size_t cap)
{
    static const struct option opts[] = {{"amsid", required_argument, NULL, 'a'},
                                         {"rules", required_argument, NULL, 'r'},
                                         {"size", required_argument, NULL, 's'},
                                         {"clients", required_argument, NULL, 'c'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"repeat", required_argument, NULL, 'k'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"seed", required_argument, NULL, 'S'},
                                         {"slice", required_argument, NULL, 'l'},
                                         {"targets", required_argument, NULL, 'T'},
                                         {"runs", required_argument, NULL, 'R'},
                                         {"set", required_argument, NULL, 'x'},
                                         {"quick", no_argument, NULL, 'q'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *o = (bench_opts){.size = 4096,
                      .clients = 8,
                      .slice = 0.25,
                      .seed = 1,
                      .target_mask = 15u,
                      .run_one = true,
                      .run_multi = true};
    bool have_duration = false, have_repeat = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        uint64_t v = 0;
        char *end;
        switch (opt) {
        case 'a':
            o->amsid = optarg;
            break;
        case 'r':
            o->rules = optarg;
            break;
        case 's':
            if (!bench_parse_u64(optarg, 64, INLINE_MAX, &v))
                goto bad;
            o->size = (size_t)v;
            break;
        case 'c':
            if (!bench_parse_u64(optarg, 1, MAX_CLIENTS, &v))
                goto bad;
            o->clients = (unsigned)v;
            break;
        case 'd':
            o->duration = strtod(optarg, &end);
            if (*end != '\0' || !(o->duration >= 0.05 && o->duration <= 600))
                goto bad;
            have_duration = true;
            break;
        case 'k':
            if (!bench_parse_u64(optarg, 1, 256, &v))
                goto bad;
            o->repeat = (unsigned)v;
            have_repeat = true;
            break;
        case 't':
            if (!bench_parse_u64(optarg, 1, 64, &v))
                goto bad;
            o->threads = (unsigned)v;
            break;
        case 'S':
            if (!bench_parse_u64(optarg, 0, UINT64_MAX, &v))
                goto bad;
            o->seed = v;
            break;
        case 'x':
            if (o->nsets == MAX_SETS || strchr(optarg, '=') == NULL)
                goto bad;
            o->sets[o->nsets++] = optarg;
            break;
        case 'l':
            o->slice = strtod(optarg, &end);
            if (*end != '\0' || !(o->slice >= 0.01 && o->slice <= 600))
                goto bad;
            break;
        case 'T':
            if (parse_list(optarg, target_names, NTARGETS, &o->target_mask) != 0)
                goto bad;
            break;
        case 'R': {
            unsigned runs;
            static const char *const run_names[] = {"one", "multi"};
            if (parse_list(optarg, run_names, 2, &runs) != 0)
                goto bad;
            o->run_one = runs & 1u;
            o->run_multi = runs & 2u;
            break;
        }
        case 'q':
            o->quick = true;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc)
        goto bad;
    if (!have_duration)
        o->duration = o->quick ? 0.5 : 2.0;
    if (!have_repeat)
        o->repeat = o->quick ? 3 : 5;
    if (o->amsid == NULL)
        o->amsid = bench_default_amsid(amsid_buf, cap);
    if (o->rules == NULL)
        o->rules = bench_default_rules();
    return 0;
bad:
    fprintf(stderr, "broker_bench: bad option value or argument\n");
    usage(stderr);
    return -1;
}

/* Removes the temporary directory and what the servers left in it. */
static void remove_tmpdir(const bench *b)
{
    if (b->tmpdir[0] == '\0')
        return;
    static const char *const names[] = {"echo.sock",         "scan.sock",     "control.sock",
                                        "amsid.log",         "declined.sock", "declined-ctl.sock",
                                        "amsid-declined.log"};
    char path[192];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", b->tmpdir, names[i]);
        unlink(path);
    }
    rmdir(b->tmpdir);
}

/* Prints the broker's rule count line from its log ("N rules loaded ..."), when present. */
static void show_rules_line(const char *log)
{
    FILE *f = fopen(log, "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "rules loaded"))
            fprintf(stderr, "broker_bench: %s", line);
    fclose(f);
}

/* Runs the rounds. Returns 0, or -1 when stopped by a signal. */
static int run_rounds(bench *b)
{
    for (unsigned r = 0; r < b->o.repeat && !g_stop; r++) {
        if (b->o.run_one)
            run_one_client_round(b, r);
        if (b->o.run_multi && !g_stop)
            run_multi_client_round(b, r);
        fprintf(stderr, "round %u/%u:", r + 1, b->o.repeat);
        for (unsigned i = 0; i < b->nactive; i++) {
            unsigned t = b->active[i];
            const run_result *o1 = &b->one[r * NTARGETS + t], *m = &b->multi[r * NTARGETS + t];
            fprintf(stderr, "  %s p50 %.1f p99 %.1f us, %ux %.0f/s%s", b->targets[t].label, o1->p50,
                    o1->p99, b->o.clients, m->calls_per_s,
                    o1->errors || m->errors ? " (ERRORS)" : "");
        }
        fprintf(stderr, "\n");
    }
    return g_stop ? -1 : 0;
}

int main(int argc, char **argv)
{
    static bench b;
    char amsid_buf[PATH_MAX];
    int prc = parse_opts(argc, argv, &b.o, amsid_buf, sizeof(amsid_buf));
    if (prc != 0)
        return prc > 0 ? 0 : 1;
    if (access(b.o.amsid, X_OK) != 0) {
        fprintf(stderr, "broker_bench: cannot run amsid at %s (use --amsid PATH)\n", b.o.amsid);
        return 1;
    }
    if (access(b.o.rules, R_OK) != 0) {
        fprintf(stderr, "broker_bench: cannot read rules %s (use --rules PATH)\n", b.o.rules);
        return 1;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    b.server_threads = b.o.threads ? b.o.threads : (unsigned)(cores > 0 ? cores : 1);
    b.o.threads = b.server_threads;

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status = 1;
    const char *tmp = getenv("TMPDIR");
    snprintf(b.tmpdir, sizeof(b.tmpdir), "%s/amsi-bbench.XXXXXX",
             tmp && *tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    if (mkdtemp(b.tmpdir) == NULL) {
        fprintf(stderr, "broker_bench: mkdtemp: %s\n", strerror(errno));
        b.tmpdir[0] = '\0';
        return 1;
    }
    snprintf(b.ctl_socket, sizeof(b.ctl_socket), "%s/control.sock", b.tmpdir);
    snprintf(b.amsid_log, sizeof(b.amsid_log), "%s/amsid.log", b.tmpdir);
    snprintf(b.declined_ctl, sizeof(b.declined_ctl), "%s/declined-ctl.sock", b.tmpdir);
    snprintf(b.declined_log, sizeof(b.declined_log), "%s/amsid-declined.log", b.tmpdir);

    b.next_stamp = 0xFFFFull << 48;
    b.sample_cap = (size_t)(b.o.duration * 400000.0) + 100000;
    for (unsigned t = 0; t < NTARGETS; t++)
        if ((b.o.target_mask & (1u << t)) && (b.samples[t] = malloc(b.sample_cap * 8)) == NULL)
            b.sample_cap = 0;
    b.share =
        mmap(NULL, sizeof(client_share), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    b.one = calloc((size_t)b.o.repeat * NTARGETS, sizeof(run_result));
    b.multi = calloc((size_t)b.o.repeat * NTARGETS, sizeof(run_result));
    if (b.sample_cap == 0 || b.share == MAP_FAILED || b.one == NULL || b.multi == NULL ||
        corpus_init(&b.content, b.o.size, b.o.seed) != 0) {
        fprintf(stderr, "broker_bench: out of memory\n");
        goto out;
    }

    for (unsigned t = 0; t < NTARGETS; t++)
        if (b.o.target_mask & (1u << t))
            b.active[b.nactive++] = t;
    b.targets[0] = (target){.label = "floor"};
    b.targets[1] = (target){.label = "broker"};
    b.targets[2] = (target){.label = "broker cached", .repeat_content = true};
    /* A second amsid whose limit (one scan a day) declines every request after the first. */
    b.targets[3] = (target){.label = "broker declined", .expect = AMSI_E_THROTTLED};
    snprintf(b.targets[3].socket, sizeof(b.targets[3].socket), "%s/declined.sock", b.tmpdir);
    snprintf(b.targets[0].socket, sizeof(b.targets[0].socket), "%s/echo.sock", b.tmpdir);
    snprintf(b.targets[1].socket, sizeof(b.targets[1].socket), "%s/scan.sock", b.tmpdir);
    memcpy(b.targets[2].socket, b.targets[1].socket, sizeof(b.targets[2].socket));

    if ((b.o.target_mask & 1u) &&
        (b.echo_pid = bench_echo_start(b.targets[0].socket, b.server_threads, INLINE_MAX,
                                       BENCH_ECHO_SPIN_US)) < 0)
        goto out;
    static const char *const high_limits[] = {BENCH_HIGH_LIMITS_MAX, BENCH_HIGH_LIMITS_BURST,
                                              BENCH_HIGH_LIMITS_NMAX};
    static const char *const declining[] = {"ratelimit.max_requests=1",
                                            "ratelimit.interval_ms=86400000", "ratelimit.burst=0"};
    if ((b.o.target_mask & 6u) && (b.amsid_pid = start_amsid(&b, b.targets[1].socket, b.ctl_socket,
                                                             b.amsid_log, high_limits, 3)) < 0)
        goto out;
    if ((b.o.target_mask & 8u) &&
        (b.declined_pid = start_amsid(&b, b.targets[3].socket, b.declined_ctl, b.declined_log,
                                      declining, 3)) < 0)
        goto out;
    show_rules_line(b.amsid_log);
    fprintf(stderr, "broker_bench: echo pid %ld, amsid pid %ld, %u rounds of %.1f s\n",
            (long)b.echo_pid, (long)b.amsid_pid, b.o.repeat, b.o.duration);
    b.targets[0].server = b.echo_pid;
    b.targets[1].server = b.targets[2].server = b.amsid_pid;
    b.targets[3].server = b.declined_pid;
    for (unsigned i = 0; i < b.nactive; i++) {
        unsigned t = b.active[i];
        if (setenv("AMSI_BROKER_SOCKET", b.targets[t].socket, 1) != 0 ||
            AmsiInitializeA("broker_bench", &b.targets[t].ctx) != AMSI_S_OK) {
            fprintf(stderr, "broker_bench: AmsiInitializeA failed\n");
            goto out;
        }
    }
    /* A first call on each target proves it answers. */
    for (unsigned i = 0; i < b.nactive; i++) {
        unsigned t = b.active[i];
        AMSI_RESULT r;
        uint8_t *blk = next_block(&b.content, b.targets[t].repeat_content, 0, b.next_stamp++);
        HRESULT hr =
            AmsiScanBuffer(b.targets[t].ctx, blk, (ULONG)b.content.size, content_name, NULL, &r);
        if (hr != AMSI_S_OK && hr != b.targets[t].expect) {
            fprintf(stderr, "broker_bench: %s does not answer (HRESULT 0x%08x)\n",
                    b.targets[t].label, (unsigned)hr);
            goto out;
        }
    }
    if (run_rounds(&b) != 0) {
        fprintf(stderr, "broker_bench: stopped\n");
        goto out;
    }
    print_report(&b);
    char stats[4096];
    if (b.amsid_pid > 0 && bench_control(b.ctl_socket, "stats", stats, sizeof(stats)) == 0) {
        printf(
            "\namsid stats at the end (its latency percentiles cover its last 4096 requests):\n  ");
        for (const char *p = stats; *p; p++) {
            putchar(*p == '\n' ? ',' : *p);
            if (*p == '\n')
                putchar(' ');
        }
        printf("\n");
    }
    status = 0;
    for (unsigned i = 0; i < b.o.repeat * NTARGETS; i++)
        if (b.one[i].errors || b.multi[i].errors)
            status = 1;
out:
    for (unsigned t = 0; t < NTARGETS; t++)
        AmsiUninitialize(b.targets[t].ctx);
    if (b.amsid_pid > 0) {
        int rc = bench_stop_process(b.amsid_pid, 10000);
        if (rc != 0) {
            fprintf(stderr, "broker_bench: amsid exited with status %d\n", rc);
            bench_show_log(b.amsid_log);
            status = 1;
        }
    }
    if (b.declined_pid > 0 && bench_stop_process(b.declined_pid, 10000) != 0) {
        fprintf(stderr, "broker_bench: the declining amsid did not exit cleanly\n");
        bench_show_log(b.declined_log);
        status = 1;
    }
    if (b.echo_pid > 0)
        bench_stop_process(b.echo_pid, 10000);
    remove_tmpdir(&b);
    corpus_cleanup(&b.content);
    for (unsigned t = 0; t < NTARGETS; t++)
        free(b.samples[t]);
    free(b.one);
    free(b.multi);
    if (b.share != NULL && b.share != MAP_FAILED)
        munmap(b.share, sizeof(client_share));
    return status;
}
