/*
 * bench_util.h - what the broker benchmark programs (amsibench, broker_bench, soak) share: the
 * clock, a seeded generator, and starting, reaching, asking and stopping the amsid they measure.
 */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * --set values that keep amsid's request limits on (each request still pays for its decision)
 * but far above what a benchmark sends, so that nothing is declined: the benchmarks measure
 * scanning, and declining has a target of its own.
 */
#define BENCH_HIGH_LIMITS_MAX   "ratelimit.max_requests=100000000"
#define BENCH_HIGH_LIMITS_BURST "ratelimit.burst=100000000"
#define BENCH_HIGH_LIMITS_NMAX  "ratelimit.notify_max_requests=100000000"

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);
void bench_sleep_ms(unsigned ms);
/* Sleeps until CLOCK_MONOTONIC reads t (ns); returns early only when *stop is set. */
void bench_sleep_until(uint64_t t, const volatile sig_atomic_t *stop);
/* splitmix64: a small, good generator; the same seed gives the same sequence. */
uint64_t bench_rng_next(uint64_t *state);
/* An AF_UNIX socket of type (SOCK_SEQPACKET, SOCK_STREAM) connected to path, or -1. */
int bench_unix_connect(const char *path, int type);
/* True when a SOCK_SEQPACKET connect to path succeeds (the server is up). */
bool bench_can_connect(const char *path);
/* Parses a decimal number in [min, max] (the whole string). Returns false when it is not one. */
bool bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Copies a log file to stderr (to explain a server that did not come up). */
void bench_show_log(const char *path);
/*
 * The amsid to run: the one the build names when it exists, else amsid beside this executable
 * (installed), else <exe dir>/../broker/amsid (in buf).
 */
const char *bench_default_amsid(char *buf, size_t cap);
/*
 * The rules to give it: the bundled rules the build names when readable, else the installed
 * copy when the build names one, else engine/rules/default.yar.
 */
const char *bench_default_rules(void);
/*
 * SIGTERM, then waits up to timeout_ms for the process to exit (SIGKILL after that). Returns its
 * exit status, 128 + signal when a signal ended it, or -1 (not ours, or it had to be killed).
 */
int bench_stop_process(pid_t pid, unsigned timeout_ms);

/* How to start an amsid for a benchmark. */
typedef struct bench_amsid {
    const char *exe;         /* the amsid executable */
    const char *rules;       /* engine.rules */
    const char *socket;      /* scan socket */
    const char *control;     /* control socket */
    const char *log;         /* its stdout and stderr go here */
    unsigned threads;        /* broker.threads; 0 leaves amsid's default */
    const char *const *sets; /* more --set values (SECTION.KEY=VALUE), nsets of them */
    unsigned nsets;
    const char *const *user_sets; /* and the command line's, after them (nuser_sets) */
    unsigned nuser_sets;
} bench_amsid;

/*
 * Starts amsid in the foreground (engine.cache_dir empty, so every start compiles) and waits up
 * to 60 s until its scan socket accepts a connection. The child gets SIGTERM when the caller
 * dies. Returns its pid, or -1 with a message and the log on stderr (it could not start, exited,
 * or did not open its socket in time; then it has been killed and reaped). Gives up early when
 * *stop is set.
 */
pid_t bench_amsid_start(const bench_amsid *a, const volatile sig_atomic_t *stop);
/* Sends cmd on a control socket and copies the answer into out. Returns 0 or -1 (2 s bound). */
int bench_control(const char *control, const char *cmd, char *out, size_t cap);
/* CPU time (user + system, all threads) of a process in ns from /proc/<pid>/stat; 0 if unknown. */
uint64_t bench_proc_cpu_ns(pid_t pid);

#endif
