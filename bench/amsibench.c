/*
 * amsibench.c - the latency benchmark of amsi-broker (DESIGN.md §8, bench/README.md).
 *
 * It drives the real amsid through the real libamsi from N forked client processes with T
 * threads each, and in the same invocation an echo floor (the same socket type and frames, no
 * scan) and peers (raw Hyperscan, libyara, clamd) on the same buffers and rules. Every target of
 * a round runs once, in an order that rotates from round to round (A B C, B C A, ...), so noise
 * on the machine lands on all of them alike; --repeat K rounds give median [min..max].
 *
 * Open loop (the default): each thread has a fixed schedule (rate / (N * T) per second, phases
 * spread evenly) and a request's latency is measured from the time the schedule intended to send
 * it, so a stall of the target shows in the percentiles instead of slowing the load down
 * (coordinated omission corrected). Service time (send to reply) and schedule lag (intended to
 * actual send) are recorded beside it. Closed loop (--closed): every thread sends its next request
 * when the last one is answered, which measures the most the target can do.
 *
 * Latencies go into HDR-style histograms (hist.h), one per thread, merged exactly per run, never
 * averaged. Detections are compared in a check pass before the runs: every item is scanned once
 * by every target and the verdicts set against the broker's.
 */
#include "amsi.h"
#include "bench_util.h"
#include "echo.h"
#include "gen.h"
#include "hist.h"
#include "peers.h"
#include "workload.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS      64
#define MAX_THREADS      64
#define MAX_SPECS        16
#define MAX_SETS         16
#define MAX_ROUNDS       100
#define MAX_CHECK_ITEMS  2000
#define INLINE_MAX       (1u << 20) /* amsid's default broker.inline_max */
#define CLIENT_TIMEOUT   "30000" /* AMSI_TIMEOUT_MS: a large scan on a busy box is slow, not lost */
#define FLOOD_POLITE_RPS 200.0   /* per polite process when --flood has no --rate */

/* The goals of issue 7. */
#define GOAL_P50_DELTA_NS 8000.0
#define GOAL_P99_RATIO    2.0
#define GOAL_TPUT_PCT     80.0
#define GOAL_YARA_X       3.0
#define GOAL_CLAMD_X      30.0
#define GOAL_MIXED_RATIO  2.0
#define GOAL_FLOOD_RATIO  2.0

/*
 * Set by SIGINT/SIGTERM in this process and in the client processes (which inherit the handler):
 * every loop checks it, and the program leaves through its clean-up. The only mutable global.
 */
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef enum target_kind {
    TG_BROKER,
    TG_FLOOR,
    TG_HYPERSCAN,
    TG_YARA,
    TG_CLAMD,
    TG_KINDS
} target_kind;

static const char *const target_names[TG_KINDS] = {"broker", "floor", "hyperscan", "yara", "clamd"};

typedef struct opts {
    const char *socket; /* an existing broker; NULL: start our own */
    const char *amsid, *rules;
    bench_workload_kind wl;
    const char *dir;
    size_t size_min, size_max;
    bool size_set, utf16;
    unsigned clients, threads;
    double rate;
    bool rate_set, closed;
    double duration, warmup;
    unsigned repeat;
    bool floor;
    unsigned peer_mask; /* bit k: bench_peer_kind k */
    const char *json, *csv, *plot;
    bool quick, flood;
    double signed_pct, large_pct;
    unsigned nitems;
    const char *sets[MAX_SETS];
    unsigned nsets;
    const char *variant;       /* a second broker with this --set, measured beside the first */
    const char *variant_amsid; /* the second broker's binary (default: --amsid) */
    double variant_goal;       /* > 0: the variant's throughput must reach this % of the first's */
    const char *markdown;
    uint64_t seed;
} opts;

/* One target and workload variant measured in every round. */
typedef struct spec {
    target_kind target;
    char workload[128]; /* the rows' workload label */
    bool large;         /* mixed: draw large items too */
    bool flood;         /* a flooding process runs beside the clients */
    const char *socket;
    bench_peer *peer;
    pid_t server;    /* for the noise accounting: amsid, echo or clamd */
    bench_hist *all; /* latency merged over rounds (for the plot) */
} spec;

/* What one client process hands back (in shared memory). */
typedef struct slot {
    bench_hist lat, svc, lag, small;
    uint64_t count, errors, declined, busy, detections, unsent;
    uint64_t first_send, last_done; /* measured window, for throughput */
    int done;
} slot;

/* Shared between the parent and the client processes of one run. */
typedef struct run_share {
    _Atomic uint64_t go_ns; /* 0 until the parent starts the run */
    _Atomic int abort;
    slot slots[];
} run_share;

/* One run's figures: a row of the JSON, CSV and table. */
typedef struct row {
    unsigned spec, round;
    bool closed;
    unsigned clients, threads;
    double offered, achieved;
    uint64_t count, errors, declined, busy, detections, unsent;
    uint64_t p50, p90, p99, p999, p9999, max;
    double mean;
    uint64_t svc_p50, svc_p99, lag_p50, lag_p99, small_p50, small_p99, small_count;
    double noise_pct;
    bool ok;
    bool flooder; /* the flooding process of a --flood run, beside the polite clients' row */
} row;

/* The detection check: what each target said of each checked item. */
typedef struct check {
    size_t n;
    bool ran[TG_KINDS];
    uint64_t detected[TG_KINDS], mismatches[TG_KINDS], errors[TG_KINDS];
    uint64_t planted;
} check;

typedef struct bench {
    opts o;
    char tmpdir[64];
    char scan_sock[108], ctl_sock[108], amsid_log[128];
    char alt_sock[108], alt_ctl[108], alt_log[128];
    char echo_sock[108];
    pid_t amsid_pid, alt_pid, echo_pid;
    unsigned server_threads;
    bench_workload wl;
    size_t max_small; /* largest small item, for the threads' stamp buffers */
    bench_peer *peers[BENCH_PEER_KINDS];
    spec specs[MAX_SPECS];
    unsigned nspecs;
    row *rows;
    unsigned nrows;
    check chk;
    double calibrated_rps;
    bool spin; /* open-loop waits may spin: enough cores for clients and servers */
    char size_label[48];
    uint64_t run_seq;
} bench;

/* ------------------------------------------------------------------------------------------ */
/* Clients: what every thread of every client process does.                                    */

static const WCHAR content_name[] = {'a', 'm', 's', 'i', 'b', 'e', 'n', 'c', 'h', 0};

/* What a request came to, in order of gravity (a session reports the graver of its two scans). */
typedef enum outcome { OUT_CLEAN, OUT_DETECTED, OUT_DECLINED, OUT_BUSY, OUT_ERROR } outcome;

/* One thread's state during a run. */
typedef struct worker {
    const bench *b;
    const spec *sp;
    HAMSICONTEXT ctx;
    bench_peer_worker *pw;
    unsigned gidx, nthreads_total;
    bool flooder;
    bool large_lane; /* mixed: this process's thread that sends the large items */
    uint64_t rng, stamp;
    uint8_t *buf; /* private copy of a stampable item */
    slot *out;    /* this thread's figures (private until merged) */
    run_share *share;
    pthread_barrier_t *ready;
    int setup_failed;
} worker;

/* The outcome of an HRESULT and result from libamsi. */
static outcome amsi_outcome(HRESULT hr, AMSI_RESULT r)
{
    if (hr == AMSI_S_OK)
        return AmsiResultIsMalware(r)          ? OUT_DETECTED
               : AmsiResultIsBlockedByAdmin(r) ? OUT_DECLINED
                                               : OUT_CLEAN;
    if (hr == AMSI_E_THROTTLED)
        return OUT_DECLINED;
    if (hr == AMSI_E_BUSY)
        return OUT_BUSY;
    return OUT_ERROR;
}

/*
 * Sends one item to a target the way its workload says: a notification, a session of two
 * buffers (the outcome is the worse of the two), or one scan. Peers scan the whole item.
 */
static outcome send_item(HAMSICONTEXT ctx, bench_peer_worker *pw, bench_workload_kind wl,
                         const bench_item *it, const uint8_t *data)
{
    if (pw != NULL) {
        bool det = false;
        if (bench_peer_scan(pw, data, it->len, &det) != 0)
            return OUT_ERROR;
        return det ? OUT_DETECTED : OUT_CLEAN;
    }
    AMSI_RESULT r = AMSI_RESULT_NOT_DETECTED, r2 = AMSI_RESULT_NOT_DETECTED;
    uint32_t flags = it->utf16 ? AMSI_SCAN_UTF16 : 0;
    HRESULT hr;
    if (wl == BENCH_WL_NOTIFY && !it->large) {
        hr = AmsiNotifyOperation(ctx, (PVOID)(uintptr_t)data, (ULONG)it->len, content_name, &r);
        return amsi_outcome(hr, r);
    }
    if (wl != BENCH_WL_SESSIONS || it->large) {
        hr = AmsiScanBufferEx(ctx, data, it->len, it->name, NULL, flags, &r, NULL);
        return amsi_outcome(hr, r);
    }
    HAMSISESSION s = NULL;
    hr = AmsiOpenSession(ctx, &s);
    if (hr != AMSI_S_OK)
        return amsi_outcome(hr, r);
    hr = AmsiScanBufferEx(ctx, data, it->split, it->name, s, flags, &r, NULL);
    outcome o1 = amsi_outcome(hr, r);
    hr =
        AmsiScanBufferEx(ctx, data + it->split, it->len - it->split, it->name, s, flags, &r2, NULL);
    outcome o2 = amsi_outcome(hr, r2);
    AmsiCloseSession(ctx, s);
    return o1 > o2 ? o1 : o2;
}

/* Writes a stamp into an item's private copy (ASCII or UTF-16LE). Can't fail. */
static void stamp_copy(uint8_t *buf, const bench_item *it, uint64_t stamp)
{
    if (!it->utf16) {
        bench_gen_stamp(buf, stamp);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    size_t at = strlen(BENCH_STAMP_PREFIX);
    for (int i = BENCH_STAMP_DIGITS - 1; i >= 0; i--) {
        buf[2 * (at + (size_t)i)] = (uint8_t)hex[stamp & 0xF];
        stamp >>= 4;
    }
}

/* Picks the next item: a large one on the large lane, else a small one. */
static const bench_item *pick_item(worker *w)
{
    const bench_workload *wl = &w->b->wl;
    if (w->large_lane)
        return &wl->items[wl->nsmall + bench_rng_next(&w->rng) % wl->nlarge];
    return &wl->items[bench_rng_next(&w->rng) % wl->nsmall];
}

/*
 * The share of the offered rate that goes to large items: --large of it in the mixed workload
 * (with and without the large lane alike, so that both runs offer the same small load), else 0.
 */
static double large_share(const bench *b)
{
    return b->o.wl == BENCH_WL_MIXED && b->wl.nlarge > 0 ? b->o.large_pct / 100.0 : 0.0;
}

/* Whether a client process of spec sp runs a large lane beside its threads. */
static bool has_large_lane(const bench *b, const spec *sp, bool flooder)
{
    return sp->large && b->wl.nlarge > 0 && !flooder;
}

/*
 * Waits until the monotonic clock reads t. With spin (a core to spare for every client thread
 * beside the server's threads), it sleeps while more than SPIN_NS remain and then spins, so that
 * the scheduler's wake-up latency (tens of microseconds) does not become schedule lag at high
 * rates. Without, it only sleeps: on a machine with few cores a spinning client would take the
 * CPU the broker needs, and the wake-up latency shows in the lag column instead.
 */
#define SPIN_NS 80000u
#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() ((void)0)
#endif
static void wait_until(uint64_t t, bool spin)
{
    uint64_t now = bench_now_ns();
    if (now >= t)
        return;
    if (!spin) {
        bench_sleep_until(t, &g_stop);
        return;
    }
    if (t - now > SPIN_NS)
        bench_sleep_until(t - SPIN_NS, &g_stop);
    while (bench_now_ns() < t && !g_stop)
        cpu_relax();
}

/* Records one finished request in the thread's figures. */
static void record(worker *w, const bench_item *it, outcome o, uint64_t intended, uint64_t send,
                   uint64_t done)
{
    slot *s = w->out;
    uint64_t lat = done - intended;
    bench_hist_record(&s->lat, lat);
    bench_hist_record(&s->svc, done - send);
    bench_hist_record(&s->lag, send - intended);
    if (!it->large)
        bench_hist_record(&s->small, lat);
    s->count++;
    s->errors += o == OUT_ERROR;
    s->declined += o == OUT_DECLINED;
    s->busy += o == OUT_BUSY;
    s->detections += o == OUT_DETECTED;
    if (s->first_send == 0 || send < s->first_send)
        s->first_send = send;
    if (done > s->last_done)
        s->last_done = done;
}

/*
 * The load loop of one thread. Open loop: request k is due at go + phase + k * interval; the
 * thread sleeps until then when early and sends at once when late. Requests due in the warm-up
 * are sent but not recorded. When the run's end has passed by more than the grace period (half
 * the duration, at least 1 s) and the thread is still behind, it stops: the requests it never
 * sent are recorded at their lateness at that moment (a lower bound) and counted as unsent. Closed
 * loop: send, wait, send, until the end.
 */
static void load_loop(worker *w)
{
    const opts *o = &w->b->o;
    bool closed = o->closed || w->flooder;
    uint64_t go = atomic_load_explicit(&w->share->go_ns, memory_order_acquire);
    uint64_t warm_end = go + (uint64_t)(o->warmup * 1e9);
    uint64_t end = warm_end + (uint64_t)(o->duration * 1e9);
    double grace_s = o->duration / 2 > 1.0 ? o->duration / 2 : 1.0;
    uint64_t grace = (uint64_t)(grace_s * 1e9);
    /* The large lanes (one per process) share the large items' part of the rate; the small
     * threads share the rest. */
    double share = w->large_lane ? large_share(w->b) : 1.0 - large_share(w->b);
    double per_thread = o->rate * share / (double)w->nthreads_total;
    uint64_t interval = closed ? 0 : (uint64_t)(1e9 / per_thread);
    uint64_t phase = closed ? 0 : interval * w->gidx / w->nthreads_total;
    bench_sleep_until(go, &g_stop);
    for (uint64_t k = 0; !g_stop && !atomic_load_explicit(&w->share->abort, memory_order_relaxed);
         k++) {
        uint64_t intended = go + phase + k * interval;
        uint64_t now = bench_now_ns();
        if (closed ? now >= end : intended >= end)
            break;
        if (!closed && now > end + grace) {
            /* Too far behind: what was due and never sent enters at its lateness now. */
            for (uint64_t t = intended; t < end; t += interval)
                if (t >= warm_end) {
                    bench_hist_record(&w->out->lat, now - t);
                    w->out->unsent++;
                }
            break;
        }
        const bench_item *it = pick_item(w);
        const uint8_t *data = it->data;
        if (it->stampable) {
            memcpy(w->buf, it->data, it->len);
            stamp_copy(w->buf, it, w->stamp++);
            data = w->buf;
        }
        if (!closed)
            wait_until(intended, w->b->spin);
        uint64_t send = bench_now_ns();
        outcome out = send_item(w->ctx, w->pw, o->wl, it, data);
        uint64_t done = bench_now_ns();
        if ((closed ? send : intended) >= warm_end)
            record(w, it, out, closed ? send : intended, send, done);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    w->out = calloc(1, sizeof(*w->out)); /* zeroed: empty histograms, zero counters */
    w->buf = malloc(w->b->max_small + 16);
    if (w->out == NULL || w->buf == NULL ||
        (w->sp->peer && bench_peer_worker_create(w->sp->peer, &w->pw) != 0))
        w->setup_failed = 1;
    pthread_barrier_wait(w->ready);
    /* The process reports readiness here; then the parent publishes the start time. */
    pthread_barrier_wait(w->ready);
    if (!w->setup_failed)
        load_loop(w);
    return NULL;
}

/* Adds one thread's figures to a process's (or a run's) figures. */
static void slot_merge(slot *dst, const slot *src)
{
    bench_hist_merge(&dst->lat, &src->lat);
    bench_hist_merge(&dst->svc, &src->svc);
    bench_hist_merge(&dst->lag, &src->lag);
    bench_hist_merge(&dst->small, &src->small);
    dst->count += src->count;
    dst->errors += src->errors;
    dst->declined += src->declined;
    dst->busy += src->busy;
    dst->detections += src->detections;
    dst->unsent += src->unsent;
    if (src->first_send && (dst->first_send == 0 || src->first_send < dst->first_send))
        dst->first_send = src->first_send;
    if (src->last_done > dst->last_done)
        dst->last_done = src->last_done;
}

/*
 * A client process: one libamsi context (shared by its threads, as in a real host), T threads,
 * readiness reported on ready_fd ('R', or 'E' when something failed), then the run, then its
 * threads' figures merged into its slot. Never returns.
 */
static void client_main(const bench *b, const spec *sp, run_share *share, unsigned idx,
                        bool flooder, int ready_fd)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    prctl(PR_SET_TIMERSLACK, 1UL);
    unsigned nt = flooder ? 1 : b->o.threads;
    unsigned lanes = has_large_lane(b, sp, flooder) ? 1 : 0;
    HAMSICONTEXT ctx = NULL;
    if (sp->socket != NULL &&
        (setenv("AMSI_BROKER_SOCKET", sp->socket, 1) != 0 ||
         AmsiInitializeA(flooder ? "amsibench-flood" : "amsibench", &ctx) != AMSI_S_OK)) {
        (void)!write(ready_fd, "E", 1);
        _exit(1);
    }
    pthread_barrier_t ready;
    pthread_barrier_init(&ready, NULL, nt + lanes + 1);
    worker *ws = calloc(nt + lanes, sizeof(*ws));
    pthread_t *th = calloc(nt + lanes, sizeof(*th));
    if (ws == NULL || th == NULL) {
        (void)!write(ready_fd, "E", 1);
        _exit(1);
    }
    /* Threads 0..nt-1 send small items; thread nt, when there is a large lane, the large ones,
     * so that a large scan holds up no small request of its own thread (each call waits for its
     * reply): what the small threads see is what the broker's lanes make of the large scans. */
    for (unsigned t = 0; t < nt + lanes; t++) {
        bool lane = t == nt;
        ws[t] = (worker){.b = b,
                         .sp = sp,
                         .ctx = ctx,
                         .gidx = lane ? idx : idx * b->o.threads + t,
                         .nthreads_total = lane ? b->o.clients : b->o.clients * b->o.threads,
                         .flooder = flooder,
                         .large_lane = lane,
                         .rng = b->o.seed * 0x9E3779B97F4A7C15ull + (uint64_t)idx * 1000 + t +
                                b->run_seq * 7919,
                         .stamp = (b->run_seq << 44) | ((uint64_t)idx << 36) | ((uint64_t)t << 30),
                         .share = share,
                         .ready = &ready};
        if (pthread_create(&th[t], NULL, worker_main, &ws[t]) != 0) {
            (void)!write(ready_fd, "E", 1);
            _exit(1);
        }
    }
    pthread_barrier_wait(&ready);
    int failed = 0;
    for (unsigned t = 0; t < nt + lanes; t++)
        failed |= ws[t].setup_failed;
    (void)!write(ready_fd, failed ? "E" : "R", 1);
    close(ready_fd);
    /* Wait (bounded) for the start time; the parent sets abort when it gives up. */
    for (int i = 0; i < 60000 && !g_stop; i++) {
        if (atomic_load_explicit(&share->go_ns, memory_order_acquire) != 0 ||
            atomic_load_explicit(&share->abort, memory_order_acquire))
            break;
        bench_sleep_ms(1);
    }
    if (atomic_load_explicit(&share->go_ns, memory_order_acquire) == 0)
        atomic_store_explicit(&share->abort, 1, memory_order_release);
    pthread_barrier_wait(&ready);
    slot *mine = &share->slots[idx];
    for (unsigned t = 0; t < nt + lanes; t++) {
        pthread_join(th[t], NULL);
        if (ws[t].out != NULL)
            slot_merge(mine, ws[t].out);
        bench_peer_worker_destroy(ws[t].pw);
        free(ws[t].out);
        free(ws[t].buf);
    }
    free(ws);
    free(th);
    pthread_barrier_destroy(&ready);
    mine->done = !failed;
    if (ctx != NULL)
        AmsiUninitialize(ctx);
    _exit(0);
}

/* ------------------------------------------------------------------------------------------ */
/* Runs.                                                                                       */

/* CPU time of the whole machine (busy jiffies) and of this program's processes, in ns. */
typedef struct cpu_snap {
    uint64_t busy_ns, ours_ns, wall_ns;
} cpu_snap;

static uint64_t machine_busy_ns(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return 0;
    unsigned long long v[8] = {0};
    int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                     &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (got < 7)
        return 0;
    /* user nice system [idle iowait] irq softirq steal */
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    long hz = sysconf(_SC_CLK_TCK);
    return busy * (1000000000ull / (uint64_t)(hz > 0 ? hz : 100));
}

static void take_snap(const bench *b, const spec *sp, cpu_snap *s)
{
    struct rusage ru;
    uint64_t children = 0;
    if (getrusage(RUSAGE_CHILDREN, &ru) == 0)
        children = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
                   (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
    s->ours_ns = children + bench_proc_cpu_ns(getpid());
    pid_t servers[4] = {b->amsid_pid, b->alt_pid, b->echo_pid, sp->server};
    for (int i = 0; i < 4; i++)
        if (servers[i] > 0 && (i < 3 || (servers[i] != b->amsid_pid && servers[i] != b->alt_pid &&
                                         servers[i] != b->echo_pid)))
            s->ours_ns += bench_proc_cpu_ns(servers[i]);
    s->busy_ns = machine_busy_ns();
    s->wall_ns = bench_now_ns();
}

/* CPU taken by other processes between two snapshots, as a percentage of all cores' time. */
static double noise_pct(const cpu_snap *a, const cpu_snap *z)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    double wall = (double)(z->wall_ns - a->wall_ns) * (double)(cores > 0 ? cores : 1);
    double other = (double)(z->busy_ns - a->busy_ns) - (double)(z->ours_ns - a->ours_ns);
    if (wall <= 0 || other < 0)
        return 0;
    return 100.0 * other / wall;
}

/* Waits for a child until deadline (ns), then kills it. Returns its exit status or -1. */
static int reap(pid_t pid, uint64_t deadline)
{
    bool termed = false;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (r < 0)
            return -1;
        if (g_stop && !termed) {
            kill(pid, SIGTERM);
            termed = true;
        }
        if (bench_now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            return -1;
        }
        bench_sleep_ms(5);
    }
}

/* Turns a run's merged figures into a row. */
static void fill_row(const bench *b, const slot *t, row *r, unsigned clients, unsigned threads,
                     bool closed)
{
    r->closed = closed;
    r->clients = clients;
    r->threads = threads;
    r->offered = closed ? 0 : b->o.rate;
    r->achieved = (double)t->count / b->o.duration;
    r->count = t->count;
    r->errors = t->errors;
    r->declined = t->declined;
    r->busy = t->busy;
    r->detections = t->detections;
    r->unsent = t->unsent;
    r->p50 = bench_hist_percentile(&t->lat, 50);
    r->p90 = bench_hist_percentile(&t->lat, 90);
    r->p99 = bench_hist_percentile(&t->lat, 99);
    r->p999 = bench_hist_percentile(&t->lat, 99.9);
    r->p9999 = bench_hist_percentile(&t->lat, 99.99);
    r->max = t->lat.max;
    r->mean = bench_hist_mean(&t->lat);
    r->svc_p50 = bench_hist_percentile(&t->svc, 50);
    r->svc_p99 = bench_hist_percentile(&t->svc, 99);
    r->lag_p50 = bench_hist_percentile(&t->lag, 50);
    r->lag_p99 = bench_hist_percentile(&t->lag, 99);
    r->small_p50 = bench_hist_percentile(&t->small, 50);
    r->small_p99 = bench_hist_percentile(&t->small, 99);
    r->small_count = t->small.count;
    r->ok = t->count > 0 && !g_stop;
}

/*
 * One run of one spec: forks the client processes (and the flooder), waits until every thread
 * is ready, publishes the start time, and collects the figures. Appends its row (and the
 * flooder's) to b->rows unless rows is false (calibration); *total gets the merged figures
 * when not NULL. Returns 0, or -1 when the clients could not start or the run was stopped.
 */
static int run_spec(bench *b, unsigned si, unsigned round, bool rows, double *achieved)
{
    spec *sp = &b->specs[si];
    unsigned n = b->o.clients + (sp->flood ? 1 : 0);
    size_t size = sizeof(run_share) + (size_t)n * sizeof(slot);
    run_share *sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    slot *total = calloc(1, sizeof(*total));
    int ready[2] = {-1, -1};
    pid_t pids[MAX_CLIENTS + 1];
    unsigned started = 0;
    int rc = -1;
    if (sh == MAP_FAILED || total == NULL || pipe2(ready, O_CLOEXEC) != 0) {
        fprintf(stderr, "amsibench: out of memory or descriptors for a run\n");
        goto out;
    }
    b->run_seq++;
    fflush(NULL);
    for (unsigned i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "amsibench: fork: %s\n", strerror(errno));
            break;
        }
        if (pid == 0) {
            close(ready[0]);
            client_main(b, sp, sh, i, sp->flood && i == b->o.clients, ready[1]);
        }
        pids[started++] = pid;
    }
    close(ready[1]);
    ready[1] = -1;
    unsigned nready = 0;
    bool failed = started < n;
    uint64_t give_up = bench_now_ns() + 60ull * 1000000000u;
    while (nready < started && !g_stop && bench_now_ns() < give_up) {
        struct pollfd p = {.fd = ready[0], .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        char c;
        ssize_t got = read(ready[0], &c, 1);
        if (got != 1)
            break;
        failed |= c != 'R';
        nready++;
    }
    failed |= nready < started || g_stop;
    if (failed) {
        fprintf(stderr, "amsibench: the %s clients did not start\n", target_names[sp->target]);
        atomic_store_explicit(&sh->abort, 1, memory_order_release);
        for (unsigned i = 0; i < started; i++)
            reap(pids[i], bench_now_ns() + 5000000000ull);
        goto out;
    }
    cpu_snap s0, s1;
    take_snap(b, sp, &s0);
    uint64_t go = bench_now_ns() + 20000000u;
    atomic_store_explicit(&sh->go_ns, go, memory_order_release);
    uint64_t end = go + (uint64_t)((b->o.warmup + b->o.duration) * 1e9);
    double grace = b->o.duration / 2 > 1.0 ? b->o.duration / 2 : 1.0;
    bench_sleep_until(end, &g_stop);
    uint64_t deadline = end + (uint64_t)((grace + 35.0) * 1e9);
    for (unsigned i = 0; i < started; i++)
        failed |= reap(pids[i], deadline) != 0 || !sh->slots[i].done;
    take_snap(b, sp, &s1);
    if (failed || g_stop) {
        if (!g_stop)
            fprintf(stderr, "amsibench: a %s client process failed\n", target_names[sp->target]);
        goto out;
    }
    for (unsigned i = 0; i < b->o.clients; i++)
        slot_merge(total, &sh->slots[i]);
    if (achieved)
        *achieved = (double)total->count / b->o.duration;
    if (rows) {
        row *r = &b->rows[b->nrows++];
        *r = (row){.spec = si, .round = round};
        fill_row(b, total, r, b->o.clients, b->o.threads, b->o.closed);
        r->noise_pct = noise_pct(&s0, &s1);
        bench_hist_merge(sp->all, &total->lat);
        if (sp->flood) {
            row *f = &b->rows[b->nrows++];
            *f = (row){.spec = si, .round = round};
            fill_row(b, &sh->slots[b->o.clients], f, 1, 1, true);
            f->flooder = true;
            f->noise_pct = r->noise_pct;
        }
    }
    rc = 0;
out:
    if (ready[0] >= 0)
        close(ready[0]);
    if (ready[1] >= 0)
        close(ready[1]);
    if (sh != MAP_FAILED)
        munmap(sh, size);
    free(total);
    return rc;
}

/*
 * The detection check: every small item (and every large one, up to MAX_CHECK_ITEMS in all) is
 * sent once to the broker and to every peer, here in this process, and each peer's verdicts are
 * set against the broker's.
 */
static int run_check(bench *b)
{
    check *c = &b->chk;
    const char *sock = b->o.socket ? b->o.socket : b->scan_sock;
    size_t n = b->wl.n < MAX_CHECK_ITEMS ? b->wl.n : MAX_CHECK_ITEMS;
    bool *broker = calloc(n + 1, sizeof(*broker));
    HAMSICONTEXT ctx = NULL;
    if (broker == NULL || setenv("AMSI_BROKER_SOCKET", sock, 1) != 0 ||
        AmsiInitializeA("amsibench-check", &ctx) != AMSI_S_OK) {
        fprintf(stderr, "amsibench: cannot reach the broker at %s for the check pass\n", sock);
        free(broker);
        return -1;
    }
    c->n = n;
    c->ran[TG_BROKER] = true;
    for (size_t i = 0; i < n && !g_stop; i++) {
        const bench_item *it = &b->wl.items[i];
        c->planted += it->planted;
        outcome o = send_item(ctx, NULL, b->o.wl, it, it->data);
        broker[i] = o == OUT_DETECTED;
        c->detected[TG_BROKER] += broker[i];
        c->errors[TG_BROKER] += o != OUT_DETECTED && o != OUT_CLEAN;
    }
    AmsiUninitialize(ctx);
    for (int k = 0; k < BENCH_PEER_KINDS && !g_stop; k++) {
        target_kind t = (target_kind)(TG_HYPERSCAN + k);
        bench_peer_worker *w = NULL;
        if (b->peers[k] == NULL || bench_peer_worker_create(b->peers[k], &w) != 0)
            continue;
        c->ran[t] = true;
        unsigned shown = 0;
        for (size_t i = 0; i < n && !g_stop; i++) {
            const bench_item *it = &b->wl.items[i];
            bool det = false;
            if (bench_peer_scan(w, it->data, it->len, &det) != 0) {
                c->errors[t]++;
                continue;
            }
            c->detected[t] += det;
            if (det != broker[i]) {
                c->mismatches[t]++;
                if (shown++ < 5)
                    fprintf(stderr,
                            "amsibench: check: %s says %s, broker says %s: %s (%s, %zu bytes)\n",
                            target_names[t], det ? "detected" : "clean",
                            broker[i] ? "detected" : "clean", it->name, it->kind, it->len);
            }
        }
        bench_peer_worker_destroy(w);
    }
    free(broker);
    return g_stop ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Figures.                                                                                    */

typedef struct stat3 {
    double med, min, max;
    unsigned n;
} stat3;

typedef enum figure {
    FIG_P50,
    FIG_P90,
    FIG_P99,
    FIG_P999,
    FIG_P9999,
    FIG_MAX,
    FIG_MEAN,
    FIG_RPS,
    FIG_SVC50,
    FIG_SVC99,
    FIG_LAG99,
    FIG_SMALL99,
    FIG_NOISE,
} figure;

static double figure_of(const row *r, figure f)
{
    switch (f) {
    case FIG_P50:
        return (double)r->p50;
    case FIG_P90:
        return (double)r->p90;
    case FIG_P99:
        return (double)r->p99;
    case FIG_P999:
        return (double)r->p999;
    case FIG_P9999:
        return (double)r->p9999;
    case FIG_MEAN:
        return r->mean;
    case FIG_MAX:
        return (double)r->max;
    case FIG_RPS:
        return r->achieved;
    case FIG_SVC50:
        return (double)r->svc_p50;
    case FIG_SVC99:
        return (double)r->svc_p99;
    case FIG_LAG99:
        return (double)r->lag_p99;
    case FIG_SMALL99:
        return (double)r->small_p99;
    case FIG_NOISE:
        return r->noise_pct;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static stat3 summarize(double *v, unsigned n)
{
    stat3 s = {.n = n};
    if (n == 0)
        return s;
    qsort(v, n, sizeof(*v), cmp_double);
    s.min = v[0];
    s.max = v[n - 1];
    s.med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    return s;
}

/* A figure of one spec's rows (or its flooder's) over the rounds. */
static stat3 spec_stat(const bench *b, unsigned si, bool flooder, figure f)
{
    double v[MAX_ROUNDS];
    unsigned n = 0;
    for (unsigned i = 0; i < b->nrows; i++) {
        const row *r = &b->rows[i];
        if (r->spec == si && r->flooder == flooder && r->ok && n < MAX_ROUNDS)
            v[n++] = figure_of(r, f);
    }
    return summarize(v, n);
}

/* The row of spec si in round k, or NULL. */
static const row *row_of(const bench *b, unsigned si, unsigned k)
{
    for (unsigned i = 0; i < b->nrows; i++)
        if (b->rows[i].spec == si && b->rows[i].round == k && !b->rows[i].flooder && b->rows[i].ok)
            return &b->rows[i];
    return NULL;
}

/* Sums a counter of one spec's rows. */
static uint64_t spec_sum(const bench *b, unsigned si, bool flooder, size_t offset)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < b->nrows; i++)
        if (b->rows[i].spec == si && b->rows[i].flooder == flooder)
            sum += *(const uint64_t *)(const void *)((const char *)&b->rows[i] + offset);
    return sum;
}

/* "12.3 [11.9..13.0]" in us (ns figures) or as is (rates, percentages). */
static void fmt3(char *out, size_t cap, stat3 s, double scale, int prec)
{
    if (s.n == 0)
        snprintf(out, cap, "-");
    else if (s.n == 1)
        snprintf(out, cap, "%.*f", prec, s.med / scale);
    else
        snprintf(out, cap, "%.*f [%.*f..%.*f]", prec, s.med / scale, prec, s.min / scale, prec,
                 s.max / scale);
}

/* A goal's verdict. */
typedef struct goal {
    char what[112];
    char value[96];
    const char *verdict; /* "PASS", "MISS" or "not measured" */
    char note[160];
} goal;

#define MAX_GOALS 9

/* Index of the spec with this target and workload label, or -1. */
static int find_spec(const bench *b, target_kind t, const char *workload)
{
    for (unsigned i = 0; i < b->nspecs; i++)
        if (b->specs[i].target == t && strcmp(b->specs[i].workload, workload) == 0)
            return (int)i;
    return -1;
}

/* Per-round values a op b of two specs' figures, summarized. op: 'd' difference, 'r' ratio. */
static stat3 paired(const bench *b, int sa, int sb, figure fa, figure fb, char op)
{
    double v[MAX_ROUNDS];
    unsigned n = 0;
    for (unsigned k = 0; k < b->o.repeat && n < MAX_ROUNDS; k++) {
        const row *ra = row_of(b, (unsigned)sa, k), *rb = row_of(b, (unsigned)sb, k);
        if (ra == NULL || rb == NULL)
            continue;
        double x = figure_of(ra, fa), y = figure_of(rb, fb);
        if (op == 'd')
            v[n++] = x - y;
        else if (y > 0)
            v[n++] = x / y;
    }
    return summarize(v, n);
}

static void goal_set(goal *g, const char *what, stat3 s, double scale, int prec, const char *unit,
                     bool pass, const char *why_not)
{
    snprintf(g->what, sizeof(g->what), "%s", what);
    g->note[0] = '\0';
    if (s.n == 0) {
        snprintf(g->value, sizeof(g->value), "-");
        g->verdict = "not measured";
        snprintf(g->note, sizeof(g->note), "%s", why_not);
        return;
    }
    char v[80];
    fmt3(v, sizeof(v), s, scale, prec);
    snprintf(g->value, sizeof(g->value), "%s%s", v, unit);
    g->verdict = pass ? "PASS" : "MISS";
}

/* Evaluates the issue's goals on what this run measured. Returns how many were written. */
static unsigned eval_goals(const bench *b, goal *g)
{
    const opts *o = &b->o;
    unsigned n = 0;
    const char *wl = bench_workload_name(o->wl);
    int br = find_spec(b, TG_BROKER, wl), fl = find_spec(b, TG_FLOOR, wl);
    bool four_k =
        o->wl == BENCH_WL_SCRIPTS && o->size_min == 4096 && o->size_max == 4096 && !o->utf16;
    stat3 none = {0};

    bool g1 = four_k && o->clients == 1 && o->threads == 1 && br >= 0 && fl >= 0;
    stat3 d = g1 ? paired(b, br, fl, FIG_P50, FIG_P50, 'd') : none;
    goal_set(&g[n++], "4 KiB scripts, 1 client: p50 <= floor p50 + 8 us", d, 1000.0, 1, " us",
             d.n && d.med <= GOAL_P50_DELTA_NS,
             "needs --workload scripts --size 4096 --clients 1 --threads 1 --floor");
    stat3 r = g1 ? paired(b, br, fl, FIG_P99, FIG_P99, 'r') : none;
    goal_set(&g[n++], "4 KiB scripts, 1 client: p99 <= 2 x floor p99", r, 1.0, 2, " x",
             r.n && r.med <= GOAL_P99_RATIO,
             "needs --workload scripts --size 4096 --clients 1 --threads 1 --floor");

    bool g2 = four_k && o->clients == 8 && o->closed && br >= 0 && fl >= 0;
    stat3 t = g2 ? paired(b, br, fl, FIG_RPS, FIG_RPS, 'r') : none;
    if (t.n) {
        t.med *= 100;
        t.min *= 100;
        t.max *= 100;
    }
    goal_set(&g[n++], "8 client processes, closed loop: >= 80 % of floor throughput", t, 1.0, 1,
             " %", t.n && t.med >= GOAL_TPUT_PCT,
             "needs --workload scripts --size 4096 --clients 8 --closed --floor");

    static const struct {
        target_kind t;
        double x;
        const char *what;
    } peers[] = {
        {TG_YARA, GOAL_YARA_X, "per-file p50 through the broker >= 3 x lower than libyara"},
        {TG_CLAMD, GOAL_CLAMD_X,
         "per-file p50 through the broker >= 30 x lower than clamd INSTREAM"}};
    for (size_t k = 0; k < 2; k++) {
        int ps = find_spec(b, peers[k].t, wl);
        stat3 x = ps >= 0 && br >= 0 ? paired(b, ps, br, FIG_P50, FIG_P50, 'r') : none;
        bool same = b->chk.ran[peers[k].t] && b->chk.mismatches[peers[k].t] == 0;
        goal_set(&g[n], peers[k].what, x, 1.0, 1, " x", x.n && x.med >= peers[k].x && same,
                 "needs --peer yara / --peer clamd (installed)");
        if (x.n && !same)
            snprintf(g[n].note, sizeof(g[n].note),
                     "detections differ from the broker's on %llu of %zu checked items",
                     (unsigned long long)b->chk.mismatches[peers[k].t], b->chk.n);
        n++;
    }

    int mx = find_spec(b, TG_BROKER, "mixed"), ms = find_spec(b, TG_BROKER, "mixed-small");
    stat3 m = mx >= 0 && ms >= 0 ? paired(b, mx, ms, FIG_SMALL99, FIG_SMALL99, 'r') : none;
    goal_set(&g[n++], "mixed: small-block p99 with large scans <= 2 x without", m, 1.0, 2, " x",
             m.n && m.med <= GOAL_MIXED_RATIO, "needs --workload mixed");

    char quiet[64], flooded[64];
    snprintf(quiet, sizeof(quiet), "%s-quiet", wl);
    snprintf(flooded, sizeof(flooded), "%s-flooded", wl);
    int fq = find_spec(b, TG_BROKER, quiet), ff = find_spec(b, TG_BROKER, flooded);
    stat3 f = fq >= 0 && ff >= 0 ? paired(b, ff, fq, FIG_P99, FIG_P99, 'r') : none;
    goal_set(&g[n++], "flood: polite clients' p99 beside a flooding process <= 2 x unloaded", f,
             1.0, 2, " x", f.n && f.med <= GOAL_FLOOD_RATIO, "needs --flood");

    if (o->variant_goal > 0) {
        /* The variant against the first broker, same workload, same rounds (e.g. tracing on
         * against off): throughput ratio. */
        char label[128], what[112];
        snprintf(label, sizeof(label), "%s+%s", wl, o->variant ? o->variant : "variant-amsid");
        int vs = find_spec(b, TG_BROKER, label);
        stat3 v = vs >= 0 && br >= 0 ? paired(b, vs, br, FIG_RPS, FIG_RPS, 'r') : none;
        if (v.n) {
            v.med *= 100;
            v.min *= 100;
            v.max *= 100;
        }
        snprintf(what, sizeof(what), "%.56s: >= %g %% of the first amsid's throughput",
                 o->variant ? o->variant : "the --variant-amsid binary", o->variant_goal);
        goal_set(&g[n++], what, v, 1.0, 1, " %", v.n && v.med >= o->variant_goal,
                 "needs --variant or --variant-amsid");
    }
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Output.                                                                                     */

static const char *mode_name(bool closed)
{
    return closed ? "closed" : "open";
}

/* The label of a spec's row: its target, and the workload variant when it differs. */
static void spec_label(const bench *b, unsigned si, bool flooder, char *out, size_t cap)
{
    const spec *sp = &b->specs[si];
    snprintf(out, cap, "%s %s%s", target_names[sp->target], sp->workload,
             flooder ? " (flooder)" : "");
}

static void print_table(const bench *b, const goal *g, unsigned ngoals)
{
    const opts *o = &b->o;
    if (o->wl == BENCH_WL_DIR)
        printf("\namsibench: workload dir:%s, %zu files, %.1f MiB", o->dir, b->wl.n,
               (double)b->wl.bytes / 1048576.0);
    else
        printf("\namsibench: workload %s, %s bytes%s", bench_workload_name(o->wl), b->size_label,
               o->utf16 ? " UTF-16LE" : "");
    if (o->wl != BENCH_WL_DIR)
        printf(", %.1f %% signed", o->signed_pct);
    if (o->wl == BENCH_WL_MIXED)
        printf(", %.1f %% large (archives, documents, 512 KiB scripts)", o->large_pct);
    printf("\n  %u client process%s x %u thread%s, ", o->clients, o->clients == 1 ? "" : "es",
           o->threads, o->threads == 1 ? "" : "s");
    if (o->closed)
        printf("closed loop");
    else
        printf("open loop at %.0f requests/s%s", o->rate,
               b->calibrated_rps > 0 ? " (50 % of the broker's closed-loop capacity)" : "");
    printf("; %u round%s of %.1f s (+%.1f s warm-up) per target, order rotating\n", o->repeat,
           o->repeat == 1 ? "" : "s", o->duration, o->warmup);
    if (b->calibrated_rps > 0)
        printf("  calibration: broker closed loop %.0f requests/s\n", b->calibrated_rps);
    printf("  broker: %s\n", o->socket ? o->socket : o->amsid);
    for (int k = 0; k < BENCH_PEER_KINDS; k++)
        if (b->peers[k])
            printf("  %s: %s\n", bench_peer_name((bench_peer_kind)k),
                   bench_peer_describe(b->peers[k]));
    if (o->floor)
        printf("  floor: echo server, %u threads, same socket type and frames, no scan\n",
               b->server_threads);

    printf("\nLatency in us (%s), median [min..max] over rounds\n",
           o->closed ? "closed loop: send to reply" : "open loop: from the intended send time");
    printf("  %-34s %-20s %-20s %-20s %-20s %-20s %-20s %-20s %s\n", "target workload", "p50",
           "p90", "p99", "p99.9", "p99.99", "max", "mean", "achieved req/s");
    for (unsigned si = 0; si < b->nspecs; si++)
        for (int fl = 0; fl < 1 + b->specs[si].flood; fl++) {
            char label[96], c[8][64];
            spec_label(b, si, fl, label, sizeof(label));
            static const figure figs[8] = {FIG_P50,   FIG_P90, FIG_P99,  FIG_P999,
                                           FIG_P9999, FIG_MAX, FIG_MEAN, FIG_RPS};
            for (int i = 0; i < 8; i++)
                fmt3(c[i], sizeof(c[i]), spec_stat(b, si, fl, figs[i]), i == 7 ? 1.0 : 1000.0,
                     i == 7 ? 0 : 1);
            printf("  %-34s %-20s %-20s %-20s %-20s %-20s %-20s %-20s %s\n", label, c[0], c[1],
                   c[2], c[3], c[4], c[5], c[6], c[7]);
        }

    printf("\nBeside it: service time (send to reply) and schedule lag (intended to actual send) "
           "in us, noise in %% of all cores\n");
    printf("  %-34s %-20s %-20s %-18s %-20s %-14s %s\n", "target workload", "service p50",
           "service p99", "lag p99", "small-block p99", "noise %", "counts (all rounds)");
    for (unsigned si = 0; si < b->nspecs; si++)
        for (int fl = 0; fl < 1 + b->specs[si].flood; fl++) {
            char label[96], c[5][64];
            spec_label(b, si, fl, label, sizeof(label));
            static const figure figs[5] = {FIG_SVC50, FIG_SVC99, FIG_LAG99, FIG_SMALL99, FIG_NOISE};
            for (int i = 0; i < 5; i++)
                fmt3(c[i], sizeof(c[i]), spec_stat(b, si, fl, figs[i]), i == 4 ? 1.0 : 1000.0, 1);
            printf("  %-34s %-20s %-20s %-18s %-20s %-14s n=%llu err=%llu declined=%llu busy=%llu "
                   "detected=%llu unsent=%llu\n",
                   label, c[0], c[1], c[2], c[3], c[4],
                   (unsigned long long)spec_sum(b, si, fl, offsetof(row, count)),
                   (unsigned long long)spec_sum(b, si, fl, offsetof(row, errors)),
                   (unsigned long long)spec_sum(b, si, fl, offsetof(row, declined)),
                   (unsigned long long)spec_sum(b, si, fl, offsetof(row, busy)),
                   (unsigned long long)spec_sum(b, si, fl, offsetof(row, detections)),
                   (unsigned long long)spec_sum(b, si, fl, offsetof(row, unsent)));
        }

    const check *c = &b->chk;
    printf("\nDetections (check pass: %zu items, each sent once to every target; %llu carry a "
           "planted signature)\n",
           c->n, (unsigned long long)c->planted);
    for (int t = 0; t < TG_KINDS; t++) {
        if (!c->ran[t])
            continue;
        printf("  %-10s detected %-6llu errors %-4llu", target_names[t],
               (unsigned long long)c->detected[t], (unsigned long long)c->errors[t]);
        if (t == TG_BROKER)
            printf("\n");
        else
            printf(" mismatches with the broker %llu%s\n", (unsigned long long)c->mismatches[t],
                   c->mismatches[t] ? "  <-- different detections (see stderr)" : "");
    }

    printf("\nGoals (each computed within a round, broker against the other in the same round; "
           "median [min..max])\n");
    for (unsigned i = 0; i < ngoals; i++) {
        printf("  %-74s %-26s %s", g[i].what, g[i].value, g[i].verdict);
        if (g[i].note[0])
            printf("  (%s)", g[i].note);
        printf("\n");
    }
    if (o->quick)
        printf("  note: --quick: short runs, indicative figures only\n");
}

/* Writes s as a JSON string. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* The column names of a row, in order, for JSON and CSV alike. */
static const char *const row_keys[] = {
    "target",         "workload",   "mode",        "clients",      "threads",      "size",
    "utf16",          "round",      "offered_rps", "achieved_rps", "count",        "p50_ns",
    "p90_ns",         "p99_ns",     "p999_ns",     "p9999_ns",     "max_ns",       "mean_ns",
    "errors",         "declined",   "busy",        "detections",   "unsent",       "service_p50_ns",
    "service_p99_ns", "lag_p50_ns", "lag_p99_ns",  "small_p50_ns", "small_p99_ns", "noise_pct"};
#define NROW_KEYS (sizeof(row_keys) / sizeof(row_keys[0]))

/* Writes the values of a row; strings quoted for JSON (quote = true) or CSV. */
static void row_values(FILE *f, const bench *b, const row *r, bool json)
{
    const spec *sp = &b->specs[r->spec];
    char wl[64];
    snprintf(wl, sizeof(wl), "%s%s", sp->workload, r->flooder ? "-flooder" : "");
    const char *strs[3] = {target_names[sp->target], wl, mode_name(r->closed)};
    const char *sep = json ? ", " : ",";
    for (int i = 0; i < 3; i++) {
        if (json) {
            fprintf(f, "%s\"%s\": ", i ? sep : "", row_keys[i]);
            json_str(f, strs[i]);
        } else {
            fprintf(f, "%s%s", i ? sep : "", strs[i]);
        }
    }
#define KEY(i) (json ? "\"" : ""), (json ? row_keys[i] : ""), (json ? "\": " : "")
    fprintf(f, "%s%s%s%s%u", sep, KEY(3), r->clients);
    fprintf(f, "%s%s%s%s%u", sep, KEY(4), r->threads);
    if (json) {
        fprintf(f, "%s\"size\": ", sep);
        json_str(f, b->size_label);
    } else {
        fprintf(f, "%s%s", sep, b->size_label);
    }
    fprintf(f, "%s%s%s%s%s", sep, KEY(6), b->o.utf16 ? "true" : "false");
    fprintf(f, "%s%s%s%s%u", sep, KEY(7), r->round);
    fprintf(f, "%s%s%s%s%.1f", sep, KEY(8), r->offered);
    fprintf(f, "%s%s%s%s%.1f", sep, KEY(9), r->achieved);
    const uint64_t u[] = {r->count,   r->p50,       r->p90,      r->p99,
                          r->p999,    r->p9999,     r->max,      (uint64_t)r->mean,
                          r->errors,  r->declined,  r->busy,     r->detections,
                          r->unsent,  r->svc_p50,   r->svc_p99,  r->lag_p50,
                          r->lag_p99, r->small_p50, r->small_p99};
    for (size_t i = 0; i < sizeof(u) / sizeof(u[0]); i++)
        fprintf(f, "%s%s%s%s%llu", sep, KEY(10 + i), (unsigned long long)u[i]);
    fprintf(f, "%s%s%s%s%.2f", sep, KEY(NROW_KEYS - 1), r->noise_pct);
#undef KEY
}

static int write_csv(const bench *b, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "amsibench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < NROW_KEYS; i++)
        fprintf(f, "%s%s", i ? "," : "", row_keys[i]);
    fputc('\n', f);
    for (unsigned i = 0; i < b->nrows; i++) {
        row_values(f, b, &b->rows[i], false);
        fputc('\n', f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

static int write_json(const bench *b, const char *path, const goal *g, unsigned ngoals, int argc,
                      char **argv)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "amsibench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\n  \"tool\": \"amsibench\",\n  \"date\": \"%s\",\n  \"command\": \"", date);
    for (int i = 0; i < argc; i++) {
        for (const char *p = argv[i]; *p; p++)
            if (*p == '"' || *p == '\\')
                fprintf(f, "\\%c", *p);
            else if ((unsigned char)*p >= 0x20)
                fputc(*p, f);
        if (i + 1 < argc)
            fputc(' ', f);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    fprintf(f, "\",\n  \"cores\": %ld,\n  \"calibrated_rps\": %.1f,\n  \"runs\": [\n", cores,
            b->calibrated_rps);
    for (unsigned i = 0; i < b->nrows; i++) {
        fprintf(f, "    {");
        row_values(f, b, &b->rows[i], true);
        fprintf(f, "}%s\n", i + 1 < b->nrows ? "," : "");
    }
    fprintf(f, "  ],\n  \"check\": {\"items\": %zu, \"planted\": %llu, \"targets\": [", b->chk.n,
            (unsigned long long)b->chk.planted);
    bool first = true;
    for (int t = 0; t < TG_KINDS; t++) {
        if (!b->chk.ran[t])
            continue;
        fprintf(f,
                "%s{\"target\": \"%s\", \"detections\": %llu, \"errors\": %llu, "
                "\"mismatches\": %llu}",
                first ? "" : ", ", target_names[t], (unsigned long long)b->chk.detected[t],
                (unsigned long long)b->chk.errors[t], (unsigned long long)b->chk.mismatches[t]);
        first = false;
    }
    fprintf(f, "]},\n  \"goals\": [\n");
    for (unsigned i = 0; i < ngoals; i++) {
        fprintf(f, "    {\"goal\": ");
        json_str(f, g[i].what);
        fprintf(f, ", \"value\": ");
        json_str(f, g[i].value);
        fprintf(f, ", \"verdict\": ");
        json_str(f, g[i].verdict);
        fprintf(f, ", \"note\": ");
        json_str(f, g[i].note);
        fprintf(f, "}%s\n", i + 1 < ngoals ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}

/*
 * Writes the run's summary as Markdown: one line on the setup, a table of median [min..max] per
 * target and workload (latency in us), the detection check and the goals.
 */
static int write_markdown(const bench *b, const char *path, const goal *g, unsigned ngoals)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "amsibench: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    const opts *o = &b->o;
    fprintf(f, "%u client process%s x %u thread%s, %s", o->clients, o->clients == 1 ? "" : "es",
            o->threads, o->threads == 1 ? "" : "s", o->closed ? "closed loop" : "open loop");
    if (!o->closed)
        fprintf(f, " at %.0f requests/s%s", o->rate,
                b->calibrated_rps > 0 ? " (50 % of the broker's closed-loop capacity)" : "");
    fprintf(f,
            "; workload %s, %s bytes%s; %u rounds of %.1f s. Latency in us%s; median "
            "[min..max] over rounds.\n\n",
            o->wl == BENCH_WL_DIR ? o->dir : bench_workload_name(o->wl), b->size_label,
            o->utf16 ? " UTF-16LE" : "", o->repeat, o->duration,
            o->closed ? "" : " from the intended send time");
    fprintf(f, "| target | workload | p50 | p90 | p99 | p99.9 | max | req/s | service p99 | "
               "small-block p99 | noise %% | errors | declined | busy |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (unsigned si = 0; si < b->nspecs; si++)
        for (int fl = 0; fl < 1 + b->specs[si].flood; fl++) {
            static const figure figs[] = {FIG_P50, FIG_P90,   FIG_P99,     FIG_P999, FIG_MAX,
                                          FIG_RPS, FIG_SVC99, FIG_SMALL99, FIG_NOISE};
            fprintf(f, "| %s | %s%s |", target_names[b->specs[si].target], b->specs[si].workload,
                    fl ? " (flooder)" : "");
            for (size_t i = 0; i < sizeof(figs) / sizeof(figs[0]); i++) {
                char c[64];
                bool raw = figs[i] == FIG_RPS || figs[i] == FIG_NOISE;
                fmt3(c, sizeof(c), spec_stat(b, si, fl, figs[i]), raw ? 1.0 : 1000.0,
                     figs[i] == FIG_RPS ? 0 : 1);
                fprintf(f, " %s |", c);
            }
            fprintf(f, " %llu | %llu | %llu |\n",
                    (unsigned long long)spec_sum(b, si, fl, offsetof(row, errors)),
                    (unsigned long long)spec_sum(b, si, fl, offsetof(row, declined)),
                    (unsigned long long)spec_sum(b, si, fl, offsetof(row, busy)));
        }
    fprintf(f, "\nDetection check (%zu items, %llu planted):", b->chk.n,
            (unsigned long long)b->chk.planted);
    for (int t = 0; t < TG_KINDS; t++)
        if (b->chk.ran[t])
            fprintf(f, " %s %llu%s", target_names[t], (unsigned long long)b->chk.detected[t],
                    t == TG_BROKER         ? ""
                    : b->chk.mismatches[t] ? " (MISMATCHES with the broker: see the log)"
                                           : " (same as the broker)");
    fprintf(f, ".\n\n");
    bool any = false;
    for (unsigned i = 0; i < ngoals; i++) {
        if (strcmp(g[i].verdict, "not measured") == 0)
            continue;
        if (!any)
            fprintf(f, "| goal | value | verdict |\n|---|---|---|\n");
        any = true;
        fprintf(f, "| %s | %s | **%s**%s%s |\n", g[i].what, g[i].value, g[i].verdict,
                g[i].note[0] ? " " : "", g[i].note);
    }
    if (any)
        fprintf(f, "\n");
    return fclose(f) == 0 ? 0 : -1;
}

/*
 * Draws latency against percentile (both on log scales, the percentile axis as 1 / (1 - p) so
 * the tail gets room), one line per target and workload, from each spec's latencies merged over
 * the rounds. gnuplot runs in a child with a bounded wait. Returns 0 or -1.
 */
static int write_plot(const bench *b, const char *png)
{
    char data[128], script[128];
    snprintf(data, sizeof(data), "%s/plot.dat", b->tmpdir);
    snprintf(script, sizeof(script), "%s/plot.gp", b->tmpdir);
    FILE *d = fopen(data, "w"), *s = fopen(script, "w");
    if (d == NULL || s == NULL) {
        if (d)
            fclose(d);
        if (s)
            fclose(s);
        return -1;
    }
    static const double pcts[] = {1,     10,     25,     50,      75,     90,    95,
                                  97,    99,     99.5,   99.7,    99.9,   99.95, 99.97,
                                  99.99, 99.995, 99.999, 99.9995, 99.9999};
    fprintf(s,
            "set terminal png size 1200,700\nset output '%s'\nset logscale xy\nset grid\n"
            "set key bottom right\nset format y '%%g'\nset xlabel 'percentile'\nset ylabel "
            "'latency (us)'\n"
            "set title 'amsibench: %s, %s bytes, %s'\n"
            "set xtics ('50%%%%' 2, '90%%%%' 10, '99%%%%' 100, '99.9%%%%' 1000, "
            "'99.99%%%%' 10000, '99.999%%%%' 100000, '99.9999%%%%' 1000000)\nplot ",
            png, bench_workload_name(b->o.wl), b->size_label,
            b->o.closed ? "closed loop" : "open loop");
    unsigned idx = 0;
    for (unsigned si = 0; si < b->nspecs; si++) {
        const bench_hist *h = b->specs[si].all;
        if (h->count == 0)
            continue;
        for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
            fprintf(d, "%g %g\n", 100.0 / (100.0 - pcts[i]),
                    (double)bench_hist_percentile(h, pcts[i]) / 1000.0);
        fprintf(d, "\n\n");
        char label[96];
        spec_label(b, si, false, label, sizeof(label));
        fprintf(s, "%s'%s' index %u with linespoints title '%s'", idx ? ", " : "", data, idx,
                label);
        idx++;
    }
    fprintf(s, "\n");
    bool ok = fclose(d) == 0;
    ok = fclose(s) == 0 && ok && idx > 0;
    if (!ok)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        fprintf(stderr, "amsibench: cannot run gnuplot (apt-get install gnuplot-nox): %s\n",
                strerror(errno));
        _exit(127);
    }
    int rc = reap(pid, bench_now_ns() + 30000000000ull);
    unlink(data);
    unlink(script);
    return rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Options.                                                                                    */

static void usage(FILE *f)
{
    fputs("usage: amsibench [--socket PATH] [--workload scripts|notify|mixed|sessions|dir:PATH]\n"
          "                 [--size BYTES | --size MIN-MAX] [--utf16] [--clients N] [--threads T]\n"
          "                 [--rate R | --closed] [--duration S] [--warmup S] [--repeat K]\n"
          "                 [--floor] [--peer clamd|yara|hyperscan]... [--rules PATH]\n"
          "                 [--json FILE] [--csv FILE] [--plot FILE.png] [--quick]\n"
          "                 [--flood] [--signed PCT] [--large PCT] [--items N] [--amsid PATH]\n"
          "                 [--set SECTION.KEY=VALUE]... [--variant SECTION.KEY=VALUE]\n"
          "                 [--markdown FILE] [--seed N]\n"
          "  --socket PATH   drive the broker already listening there (default: start the build's\n"
          "                  amsid on the bundled rules, limits out of reach, scan_archives on,\n"
          "                  verdict cache off)\n"
          "  --workload W    scripts (default), notify (AmsiNotifyOperation), mixed (small blocks\n"
          "                  with archives, Office documents and 512 KiB scripts), sessions (a\n"
          "                  signature split across two buffers of a session), dir:PATH (files)\n"
          "  --size B|A-B    bytes per small item (default 4096; notify 256; mixed 512-16384)\n"
          "  --utf16         script text as UTF-16LE\n"
          "  --clients N     client processes (default 1), --threads T threads each (default 1)\n"
          "  --rate R        open loop at R requests/s in all (default: 50 % of the broker's\n"
          "                  closed-loop capacity, measured first); --closed: closed loop\n"
          "  --duration S    measured seconds per run (default 1.5), --warmup S before (0.3)\n"
          "  --repeat K      rounds, each running every target once, order rotating (default 10)\n"
          "  --floor         the echo floor in the same rounds\n"
          "  --peer P        hyperscan, yara or clamd on the same buffers and rules (repeatable)\n"
          "  --rules PATH    rule file for amsid and the peers (default: the bundled default.yar)\n"
          "  --json F, --csv F, --plot F.png   per-run rows; latency plot (gnuplot)\n"
          "  --quick         a short run (under 30 s): 1.5 s runs, 2 rounds, 64 items\n"
          "  --flood         request limits at amsid's defaults; the clients are polite (default\n"
          "                  200 requests/s each) and run with and without a flooding process\n"
          "  --signed PCT    share of small items carrying a signature (default 1)\n"
          "  --large PCT     mixed: share of requests that are large items, sent by one\n"
          "                  more thread per process (default 5)\n"
          "  --items N       small items generated (default 256)\n"
          "  --amsid PATH    the amsid to start; --set S.K=V passed on to it (repeatable)\n"
          "  --variant S.K=V a second amsid with this setting too (several: S.K=V;S.K=V),\n"
          "                  measured in the same rounds\n"
          "  --variant-amsid PATH  the second amsid is this binary (e.g. a build without\n"
          "                  tracing), with or without --variant\n"
          "  --variant-goal PCT  judge the variant's throughput against the first broker's\n"
          "                  (e.g. trace.backend=lttng: tracing on against off)\n"
          "  --markdown F    the summary and goals as Markdown (for bench/RESULTS.md)\n"
          "  --seed N        generator seed (default 1)\n",
          f);
}

static bool parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max))
        return false;
    *out = v;
    return true;
}

/* --size BYTES or MIN-MAX. */
static bool parse_size(const char *s, opts *o)
{
    char a[32];
    const char *dash = strchr(s, '-');
    uint64_t lo, hi;
    if (dash == NULL) {
        if (!bench_parse_u64(s, 64, INLINE_MAX, &lo))
            return false;
        o->size_min = o->size_max = (size_t)lo;
        return true;
    }
    if ((size_t)(dash - s) >= sizeof(a))
        return false;
    memcpy(a, s, (size_t)(dash - s));
    a[dash - s] = '\0';
    if (!bench_parse_u64(a, 64, INLINE_MAX, &lo) ||
        !bench_parse_u64(dash + 1, 64, INLINE_MAX, &hi) || hi < lo)
        return false;
    o->size_min = (size_t)lo;
    o->size_max = (size_t)hi;
    return true;
}

static bool parse_workload(const char *s, opts *o)
{
    if (strncmp(s, "dir:", 4) == 0 && s[4]) {
        o->wl = BENCH_WL_DIR;
        o->dir = s + 4;
        return true;
    }
    for (int k = BENCH_WL_SCRIPTS; k < BENCH_WL_DIR; k++)
        if (strcmp(s, bench_workload_name((bench_workload_kind)k)) == 0) {
            o->wl = (bench_workload_kind)k;
            return true;
        }
    return false;
}

/* Parses the command line. Returns 0, 1 (help printed) or -1 (bad option, reported). */
static int parse_opts(int argc, char **argv, opts *o, char *amsid_buf, size_t cap)
{
    enum {
        O_SOCKET = 256,
        O_WORKLOAD,
        O_SIZE,
        O_UTF16,
        O_CLIENTS,
        O_THREADS,
        O_RATE,
        O_CLOSED,
        O_DURATION,
        O_WARMUP,
        O_REPEAT,
        O_FLOOR,
        O_PEER,
        O_RULES,
        O_JSON,
        O_CSV,
        O_PLOT,
        O_QUICK,
        O_FLOOD,
        O_SIGNED,
        O_LARGE,
        O_ITEMS,
        O_AMSID,
        O_SET,
        O_SEED,
        O_HELP,
        O_VARIANT,
        O_VARIANT_AMSID,
        O_VARIANT_GOAL,
        O_MARKDOWN
    };
    static const struct option lo[] = {{"socket", required_argument, NULL, O_SOCKET},
                                       {"workload", required_argument, NULL, O_WORKLOAD},
                                       {"size", required_argument, NULL, O_SIZE},
                                       {"utf16", no_argument, NULL, O_UTF16},
                                       {"clients", required_argument, NULL, O_CLIENTS},
                                       {"threads", required_argument, NULL, O_THREADS},
                                       {"rate", required_argument, NULL, O_RATE},
                                       {"closed", no_argument, NULL, O_CLOSED},
                                       {"duration", required_argument, NULL, O_DURATION},
                                       {"warmup", required_argument, NULL, O_WARMUP},
                                       {"repeat", required_argument, NULL, O_REPEAT},
                                       {"floor", no_argument, NULL, O_FLOOR},
                                       {"peer", required_argument, NULL, O_PEER},
                                       {"rules", required_argument, NULL, O_RULES},
                                       {"json", required_argument, NULL, O_JSON},
                                       {"csv", required_argument, NULL, O_CSV},
                                       {"plot", required_argument, NULL, O_PLOT},
                                       {"quick", no_argument, NULL, O_QUICK},
                                       {"flood", no_argument, NULL, O_FLOOD},
                                       {"signed", required_argument, NULL, O_SIGNED},
                                       {"large", required_argument, NULL, O_LARGE},
                                       {"items", required_argument, NULL, O_ITEMS},
                                       {"amsid", required_argument, NULL, O_AMSID},
                                       {"set", required_argument, NULL, O_SET},
                                       {"seed", required_argument, NULL, O_SEED},
                                       {"help", no_argument, NULL, O_HELP},
                                       {"variant", required_argument, NULL, O_VARIANT},
                                       {"variant-amsid", required_argument, NULL, O_VARIANT_AMSID},
                                       {"variant-goal", required_argument, NULL, O_VARIANT_GOAL},
                                       {"markdown", required_argument, NULL, O_MARKDOWN},
                                       {NULL, 0, NULL, 0}};
    *o = (opts){.clients = 1,
                .threads = 1,
                .repeat = 3,
                .signed_pct = 1,
                .large_pct = 5,
                .seed = 1,
                .duration = -1,
                .warmup = -1};
    bool have_repeat = false, have_items = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        uint64_t v = 0;
        int k;
        bool ok = true;
        switch (c) {
        case O_SOCKET:
            o->socket = optarg;
            break;
        case O_WORKLOAD:
            ok = parse_workload(optarg, o);
            break;
        case O_SIZE:
            ok = o->size_set = parse_size(optarg, o);
            break;
        case O_UTF16:
            o->utf16 = true;
            break;
        case O_CLIENTS:
            ok = bench_parse_u64(optarg, 1, MAX_CLIENTS, &v);
            o->clients = (unsigned)v;
            break;
        case O_THREADS:
            ok = bench_parse_u64(optarg, 1, MAX_THREADS, &v);
            o->threads = (unsigned)v;
            break;
        case O_RATE:
            ok = o->rate_set = parse_double(optarg, 1, 1e8, &o->rate);
            break;
        case O_CLOSED:
            o->closed = true;
            break;
        case O_DURATION:
            ok = parse_double(optarg, 0.1, 3600, &o->duration);
            break;
        case O_WARMUP:
            ok = parse_double(optarg, 0, 600, &o->warmup);
            break;
        case O_REPEAT:
            ok = have_repeat = bench_parse_u64(optarg, 1, MAX_ROUNDS, &v);
            o->repeat = (unsigned)v;
            break;
        case O_FLOOR:
            o->floor = true;
            break;
        case O_PEER:
            k = bench_peer_parse(optarg);
            ok = k >= 0;
            if (ok)
                o->peer_mask |= 1u << k;
            break;
        case O_RULES:
            o->rules = optarg;
            break;
        case O_JSON:
            o->json = optarg;
            break;
        case O_CSV:
            o->csv = optarg;
            break;
        case O_PLOT:
            o->plot = optarg;
            break;
        case O_QUICK:
            o->quick = true;
            break;
        case O_FLOOD:
            o->flood = true;
            break;
        case O_SIGNED:
            ok = parse_double(optarg, 0, 100, &o->signed_pct);
            break;
        case O_LARGE:
            ok = parse_double(optarg, 0, 99, &o->large_pct);
            break;
        case O_ITEMS:
            ok = have_items = bench_parse_u64(optarg, 1, 100000, &v);
            o->nitems = (unsigned)v;
            break;
        case O_AMSID:
            o->amsid = optarg;
            break;
        case O_SET:
            ok = o->nsets < MAX_SETS && strchr(optarg, '=') != NULL;
            if (ok)
                o->sets[o->nsets++] = optarg;
            break;
        case O_SEED:
            ok = bench_parse_u64(optarg, 0, UINT64_MAX, &v);
            o->seed = v;
            break;
        case O_VARIANT_AMSID:
            o->variant_amsid = optarg;
            break;
        case O_VARIANT_GOAL: {
            char *end;
            o->variant_goal = strtod(optarg, &end);
            ok = *end == '\0' && o->variant_goal > 0 && o->variant_goal <= 1000;
            break;
        }
        case O_VARIANT:
            o->variant = optarg;
            ok = strchr(optarg, '=') != NULL && strlen(optarg) < 96;
            break;
        case O_MARKDOWN:
            o->markdown = optarg;
            break;
        case O_HELP:
            usage(stdout);
            return 1;
        default:
            fprintf(stderr, "amsibench: unknown option or missing value: %s\n", argv[optind - 1]);
            usage(stderr);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "amsibench: bad value '%s' (see --help)\n", optarg ? optarg : "");
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "amsibench: unexpected argument %s\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    if (o->rate_set && o->closed) {
        fprintf(stderr, "amsibench: --rate and --closed exclude each other\n");
        return -1;
    }
    if ((o->variant || o->variant_amsid) && o->socket) {
        fprintf(stderr, "amsibench: --variant starts a second amsid of ours; drop --socket\n");
        return -1;
    }
    if (o->flood && o->closed) {
        fprintf(stderr, "amsibench: --flood runs polite clients on a schedule; drop --closed\n");
        return -1;
    }
    /* Many short rounds rather than a few long ones: on a shared machine the speed drifts over
     * seconds, so two targets compare best in runs next to each other, and the median of many
     * such pairs moves less from one invocation to the next (bench/README.md). */
    if (o->duration < 0)
        o->duration = 1.5;
    if (o->warmup < 0)
        o->warmup = 0.3;
    if (!have_repeat)
        o->repeat = o->quick ? 2 : 10;
    if (!have_items)
        o->nitems = o->quick ? 64 : 256;
    if (!o->size_set) {
        o->size_min = o->size_max = o->wl == BENCH_WL_NOTIFY ? 256 : 4096;
        if (o->wl == BENCH_WL_MIXED) {
            o->size_min = 512;
            o->size_max = 16384;
        }
    }
    if (o->amsid == NULL)
        o->amsid = bench_default_amsid(amsid_buf, cap);
    if (o->rules == NULL)
        o->rules = bench_default_rules();
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Set-up, rounds and clean-up.                                                                */

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

/*
 * Starts an amsid of ours: limits out of reach (or amsid's defaults), archives on, no cache, and
 * the variant's setting when asked.
 */
static pid_t start_broker(bench *b, const char *sock, const char *ctl, const char *log,
                          bool default_limits, const char *variant)
{
    const char *sets[12];
    unsigned n = 0;
    /* A variant may set several keys, separated by ';' (trace.backend=lttng;trace.level=5). */
    char vbuf[96];
    snprintf(vbuf, sizeof(vbuf), "%s", variant ? variant : "");
    for (char *save = NULL, *tok = strtok_r(vbuf, ";", &save); tok != NULL && n < 4;
         tok = strtok_r(NULL, ";", &save))
        sets[n++] = tok;
    sets[n++] = "engine.scan_archives=1";
    sets[n++] = "broker.cache_entries=0";
    if (!default_limits) {
        sets[n++] = BENCH_HIGH_LIMITS_MAX;
        sets[n++] = BENCH_HIGH_LIMITS_BURST;
        sets[n++] = BENCH_HIGH_LIMITS_NMAX;
    }
    bool alt = sock == b->alt_sock;
    bench_amsid a = {.exe = alt && b->o.variant_amsid ? b->o.variant_amsid : b->o.amsid,
                     .rules = b->o.rules,
                     .socket = sock,
                     .control = ctl,
                     .log = log,
                     .sets = sets,
                     .nsets = n,
                     .user_sets = b->o.sets,
                     .nuser_sets = b->o.nsets};
    return bench_amsid_start(&a, &g_stop);
}

static int add_spec(bench *b, target_kind t, const char *workload, bool large, bool flood,
                    const char *socket, bench_peer *peer, pid_t server)
{
    if (b->nspecs == MAX_SPECS)
        return -1;
    spec *sp = &b->specs[b->nspecs];
    *sp = (spec){.target = t,
                 .large = large,
                 .flood = flood,
                 .socket = socket,
                 .peer = peer,
                 .server = server};
    snprintf(sp->workload, sizeof(sp->workload), "%s", workload);
    if ((sp->all = calloc(1, sizeof(*sp->all))) == NULL)
        return -1;
    b->nspecs++;
    return 0;
}

/* The targets of every round, from the options. */
static int plan_specs(bench *b)
{
    const opts *o = &b->o;
    const char *wl = bench_workload_name(o->wl);
    const char *broker_sock = o->socket ? o->socket : b->scan_sock;
    bool mixed = o->wl == BENCH_WL_MIXED;
    int rc = 0;
    if (o->flood) {
        char q[64], f[64];
        const char *lim = o->socket ? o->socket : b->alt_sock;
        pid_t lp = o->socket ? -1 : b->alt_pid;
        snprintf(q, sizeof(q), "%s-quiet", wl);
        snprintf(f, sizeof(f), "%s-flooded", wl);
        rc |= add_spec(b, TG_BROKER, q, mixed, false, lim, NULL, lp);
        rc |= add_spec(b, TG_BROKER, f, mixed, true, lim, NULL, lp);
        return rc;
    }
    rc |= add_spec(b, TG_BROKER, wl, mixed, false, broker_sock, NULL, b->amsid_pid);
    if (o->variant || o->variant_amsid) {
        char label[128];
        snprintf(label, sizeof(label), "%s+%s", wl, o->variant ? o->variant : "variant-amsid");
        rc |= add_spec(b, TG_BROKER, label, mixed, false, b->alt_sock, NULL, b->alt_pid);
    }
    if (mixed)
        rc |= add_spec(b, TG_BROKER, "mixed-small", false, false, broker_sock, NULL, b->amsid_pid);
    if (o->floor)
        rc |= add_spec(b, TG_FLOOR, wl, mixed, false, b->echo_sock, NULL, b->echo_pid);
    for (int k = 0; k < BENCH_PEER_KINDS; k++)
        if (b->peers[k])
            rc |= add_spec(b, (target_kind)(TG_HYPERSCAN + k), wl, mixed, false, NULL, b->peers[k],
                           bench_peer_server(b->peers[k]));
    return rc;
}

/* Finds the broker's closed-loop capacity with the same clients (the open-loop default rate). */
static int calibrate(bench *b)
{
    opts saved = b->o;
    b->o.closed = true;
    b->o.duration = saved.duration < 2 ? saved.duration : 2;
    b->o.warmup = saved.warmup < 0.3 ? saved.warmup : 0.3;
    double rps = 0;
    int rc = run_spec(b, 0, 0, false, &rps);
    b->o = saved;
    if (rc != 0 || rps <= 0) {
        fprintf(stderr, "amsibench: the calibration run failed\n");
        return -1;
    }
    b->calibrated_rps = rps;
    b->o.rate = rps / 2;
    return 0;
}

static void size_label(bench *b)
{
    const opts *o = &b->o;
    if (o->wl == BENCH_WL_DIR)
        snprintf(b->size_label, sizeof(b->size_label), "files");
    else if (o->size_min == o->size_max)
        snprintf(b->size_label, sizeof(b->size_label), "%zu", o->size_min);
    else
        snprintf(b->size_label, sizeof(b->size_label), "%zu-%zu", o->size_min, o->size_max);
    if (o->wl == BENCH_WL_MIXED)
        strncat(b->size_label, "+large", sizeof(b->size_label) - strlen(b->size_label) - 1);
}

/* Starts what the run needs: amsid(s), the echo floor, the peers. Returns 0 or -1. */
static int start_servers(bench *b)
{
    const opts *o = &b->o;
    if (o->socket == NULL) {
        if (access(o->amsid, X_OK) != 0) {
            fprintf(stderr, "amsibench: cannot run amsid at %s (use --amsid or --socket)\n",
                    o->amsid);
            return -1;
        }
        if ((b->amsid_pid = start_broker(b, b->scan_sock, b->ctl_sock, b->amsid_log, false, NULL)) <
            0)
            return -1;
        if ((o->flood || o->variant || o->variant_amsid) &&
            (b->alt_pid =
                 start_broker(b, b->alt_sock, b->alt_ctl, b->alt_log, o->flood, o->variant)) < 0) {
            if (o->variant || o->variant_amsid)
                fprintf(stderr,
                        "amsibench: the broker with --variant %s did not start: that "
                        "setting is not available in this amsid\n",
                        o->variant ? o->variant : o->variant_amsid);
            return -1;
        }
    } else if (!bench_can_connect(o->socket)) {
        fprintf(stderr, "amsibench: no broker answers on %s\n", o->socket);
        return -1;
    }
    if (o->floor && (b->echo_pid = bench_echo_start(b->echo_sock, b->server_threads, INLINE_MAX,
                                                    BENCH_ECHO_SPIN_US)) < 0)
        return -1;
    for (int k = 0; k < BENCH_PEER_KINDS && !g_stop; k++) {
        if (!(o->peer_mask & (1u << k)))
            continue;
        char why[256] = "";
        int rc = bench_peer_create((bench_peer_kind)k, o->rules, b->tmpdir, &b->peers[k], why,
                                   sizeof(why));
        if (rc != 0)
            fprintf(stderr, "amsibench: peer %s %s: %s\n", bench_peer_name((bench_peer_kind)k),
                    rc > 0 ? "not available, skipped" : "failed, skipped", why);
    }
    return g_stop ? -1 : 0;
}

static void stop_servers(bench *b)
{
    for (int k = 0; k < BENCH_PEER_KINDS; k++) {
        bench_peer_destroy(b->peers[k]);
        b->peers[k] = NULL;
    }
    if (b->echo_pid > 0)
        bench_stop_process(b->echo_pid, 10000);
    pid_t brokers[2] = {b->amsid_pid, b->alt_pid};
    const char *logs[2] = {b->amsid_log, b->alt_log};
    for (int i = 0; i < 2; i++)
        if (brokers[i] > 0 && bench_stop_process(brokers[i], 15000) != 0) {
            fprintf(stderr, "amsibench: amsid did not exit cleanly\n");
            bench_show_log(logs[i]);
        }
    b->echo_pid = b->amsid_pid = b->alt_pid = -1;
}

int main(int argc, char **argv)
{
    static bench b;
    char amsid_buf[PATH_MAX];
    int prc = parse_opts(argc, argv, &b.o, amsid_buf, sizeof(amsid_buf));
    if (prc != 0)
        return prc > 0 ? 0 : 2;
    b.amsid_pid = b.alt_pid = b.echo_pid = -1;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    b.server_threads = (unsigned)(cores > 0 ? cores : 1);
    b.spin = (long)(b.o.clients * b.o.threads + b.server_threads) < cores;

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL);
    /* Calls wait for the broker this long before failing open (counted as errors). */
    setenv("AMSI_TIMEOUT_MS", CLIENT_TIMEOUT, 1);

    int status = 1;
    unsigned ngoals = 0;
    goal goals[MAX_GOALS];
    snprintf(b.tmpdir, sizeof(b.tmpdir), "/tmp/amsibench.XXXXXX");
    if (mkdtemp(b.tmpdir) == NULL) {
        fprintf(stderr, "amsibench: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    snprintf(b.scan_sock, sizeof(b.scan_sock), "%s/scan.sock", b.tmpdir);
    snprintf(b.ctl_sock, sizeof(b.ctl_sock), "%s/control.sock", b.tmpdir);
    snprintf(b.amsid_log, sizeof(b.amsid_log), "%s/amsid.log", b.tmpdir);
    snprintf(b.alt_sock, sizeof(b.alt_sock), "%s/alt.sock", b.tmpdir);
    snprintf(b.alt_ctl, sizeof(b.alt_ctl), "%s/alt-control.sock", b.tmpdir);
    snprintf(b.alt_log, sizeof(b.alt_log), "%s/amsid-alt.log", b.tmpdir);
    snprintf(b.echo_sock, sizeof(b.echo_sock), "%s/echo.sock", b.tmpdir);

    bench_workload_spec ws = {.kind = b.o.wl,
                              .dir = b.o.dir,
                              .size_min = b.o.size_min,
                              .size_max = b.o.size_max,
                              .utf16 = b.o.utf16,
                              .signed_pct = b.o.signed_pct,
                              .large_pct = b.o.wl == BENCH_WL_MIXED ? b.o.large_pct : 0,
                              .nitems = b.o.nitems,
                              .seed = b.o.seed};
    if (bench_workload_init(&b.wl, &ws) != 0)
        goto out;
    if (b.o.wl == BENCH_WL_DIR)
        b.wl.nsmall = b.wl.n, b.wl.nlarge = 0;
    for (size_t i = 0; i < b.wl.n; i++)
        if (b.wl.items[i].stampable && b.wl.items[i].len > b.max_small)
            b.max_small = b.wl.items[i].len;
    size_label(&b);
    if (access(b.o.rules, R_OK) != 0) {
        fprintf(stderr, "amsibench: cannot read the rules %s (use --rules)\n", b.o.rules);
        goto out;
    }
    fprintf(stderr, "amsibench: %zu items (%zu small, %zu large), %.1f MiB; starting servers\n",
            b.wl.n, b.wl.nsmall, b.wl.nlarge, (double)b.wl.bytes / 1048576.0);
    if (start_servers(&b) != 0 || plan_specs(&b) != 0)
        goto out;
    b.rows = calloc((size_t)b.o.repeat * (b.nspecs + 1), sizeof(*b.rows));
    if (b.rows == NULL)
        goto out;
    fprintf(stderr, "amsibench: check pass\n");
    if (run_check(&b) != 0)
        goto out;
    if (b.o.flood && !b.o.rate_set)
        b.o.rate = FLOOD_POLITE_RPS * b.o.clients;
    if (!b.o.closed && !b.o.rate_set && !b.o.flood) {
        fprintf(stderr, "amsibench: calibrating the open-loop rate (broker, closed loop)\n");
        if (calibrate(&b) != 0)
            goto out;
    }
    if (b.o.flood && b.o.rate / b.o.clients > 1500)
        fprintf(stderr,
                "amsibench: warning: %.0f requests/s per polite process is near amsid's "
                "default limit (2000/s)\n",
                b.o.rate / b.o.clients);
    for (unsigned r = 0; r < b.o.repeat && !g_stop; r++) {
        for (unsigned i = 0; i < b.nspecs && !g_stop; i++) {
            unsigned si = (r + i) % b.nspecs;
            if (run_spec(&b, si, r, true, NULL) != 0)
                goto out;
            const row *w = &b.rows[b.nrows - 1 - (b.specs[si].flood ? 1 : 0)];
            fprintf(stderr, "round %u/%u %-9s %-16s p50 %8.1f us  p99 %8.1f us  %9.0f req/s%s\n",
                    r + 1, b.o.repeat, target_names[b.specs[si].target], b.specs[si].workload,
                    (double)w->p50 / 1000, (double)w->p99 / 1000, w->achieved,
                    w->errors ? "  ERRORS" : "");
        }
    }
    if (g_stop)
        goto out;
    ngoals = eval_goals(&b, goals);
    print_table(&b, goals, ngoals);
    status = 0;
    if (b.o.json && write_json(&b, b.o.json, goals, ngoals, argc, argv) != 0)
        status = 1;
    if (b.o.csv && write_csv(&b, b.o.csv) != 0)
        status = 1;
    if (b.o.markdown && write_markdown(&b, b.o.markdown, goals, ngoals) != 0)
        status = 1;
    if (b.o.plot && write_plot(&b, b.o.plot) != 0) {
        fprintf(stderr, "amsibench: the plot %s was not drawn\n", b.o.plot);
        status = 1;
    }
out:
    if (g_stop)
        fprintf(stderr, "amsibench: stopped\n");
    stop_servers(&b);
    nftw(b.tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    bench_workload_cleanup(&b.wl);
    for (unsigned i = 0; i < b.nspecs; i++)
        free(b.specs[i].all);
    free(b.rows);
    return status;
}
