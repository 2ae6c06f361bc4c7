/*
 * bench_util.c - helpers shared by the broker benchmark programs (see bench_util.h).
 */
#include "bench_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void bench_sleep_until(uint64_t t, const volatile sig_atomic_t *stop)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !(stop && *stop))
        ;
}

uint64_t bench_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int bench_unix_connect(const char *path, int type)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return -1;
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

bool bench_can_connect(const char *path)
{
    int fd = bench_unix_connect(path, SOCK_SEQPACKET);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

bool bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

void bench_show_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[512];
    fprintf(stderr, "--- %s\n", path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

/* Writes <directory of this executable>/tail into buf. Returns buf, or NULL when it does not fit.
 */
static const char *beside_exe(char *buf, size_t cap, const char *tail)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash == NULL)
        return NULL;
    *slash = '\0';
    int w = snprintf(buf, cap, "%s/%s", exe, tail);
    return w > 0 && (size_t)w < cap ? buf : NULL;
}

const char *bench_default_amsid(char *buf, size_t cap)
{
#ifdef AMSI_BENCH_AMSID
    if (access(AMSI_BENCH_AMSID, X_OK) == 0)
        return AMSI_BENCH_AMSID;
#endif
    /* Installed side by side (bin/amsid), or run from a build tree (bench/../broker/amsid). */
    const char *p = beside_exe(buf, cap, "amsid");
    if (p != NULL && access(p, X_OK) == 0)
        return p;
    p = beside_exe(buf, cap, "../broker/amsid");
    return p != NULL ? p : "amsid";
}

const char *bench_default_rules(void)
{
#ifdef AMSI_BENCH_RULES
    if (access(AMSI_BENCH_RULES, R_OK) == 0)
        return AMSI_BENCH_RULES;
#endif
#ifdef AMSI_BENCH_INSTALLED_RULES
    if (access(AMSI_BENCH_INSTALLED_RULES, R_OK) == 0)
        return AMSI_BENCH_INSTALLED_RULES;
#endif
    return "engine/rules/default.yar";
}

int bench_stop_process(pid_t pid, unsigned timeout_ms)
{
    if (pid <= 0)
        return -1;
    kill(pid, SIGTERM);
    for (unsigned waited = 0; waited < timeout_ms; waited += 10) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (r < 0)
            return -1;
        bench_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

pid_t bench_amsid_start(const bench_amsid *a, const volatile sig_atomic_t *stop)
{
    enum { FIXED_ARGS = 12, MAX_ARGS = 64 };
    char set_ctl[160], set_rules[PATH_MAX + 16], set_threads[48];
    snprintf(set_ctl, sizeof(set_ctl), "broker.control_socket=%s", a->control);
    snprintf(set_rules, sizeof(set_rules), "engine.rules=%s", a->rules);
    snprintf(set_threads, sizeof(set_threads), "broker.threads=%u", a->threads);
    const char *argv[MAX_ARGS] = {
        a->exe,  "--foreground", "--socket", a->socket,           "--set", set_ctl,
        "--set", set_rules,      "--set",    "engine.cache_dir=", "--set", set_threads};
    unsigned argc = a->threads ? FIXED_ARGS : FIXED_ARGS - 2;
    for (unsigned i = 0; i < a->nsets + a->nuser_sets && argc + 3 < MAX_ARGS; i++) {
        argv[argc++] = "--set";
        argv[argc++] = i < a->nsets ? a->sets[i] : a->user_sets[i - a->nsets];
    }
    argv[argc] = NULL;
    const char *me = program_invocation_short_name;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "%s: fork: %s\n", me, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        signal(SIGINT, SIG_IGN); /* the parent stops it with SIGTERM during its clean-up */
        int log = open(a->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (log >= 0) {
            dup2(log, STDOUT_FILENO);
            dup2(log, STDERR_FILENO);
        }
        execv(a->exe, (char *const *)(uintptr_t)argv);
        fprintf(stderr, "cannot run %s: %s\n", a->exe, strerror(errno));
        _exit(127);
    }
    uint64_t give_up = bench_now_ns() + 60ull * 1000000000u;
    while (!(stop && *stop) && bench_now_ns() < give_up) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "%s: amsid exited before serving\n", me);
            bench_show_log(a->log);
            return -1;
        }
        if (bench_can_connect(a->socket))
            return pid;
        bench_sleep_ms(10);
    }
    fprintf(stderr, "%s: amsid did not open %s\n", me, a->socket);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    bench_show_log(a->log);
    return -1;
}

int bench_control(const char *control, const char *cmd, char *out, size_t cap)
{
    if (cap == 0)
        return -1;
    int fd = bench_unix_connect(control, SOCK_SEQPACKET);
    if (fd < 0)
        return -1;
    ssize_t n = -1;
    size_t len = strlen(cmd);
    if (send(fd, cmd, len, MSG_NOSIGNAL) == (ssize_t)len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 2000) == 1)
            n = recv(fd, out, cap - 1, 0);
    }
    close(fd);
    if (n <= 0)
        return -1;
    out[n] = '\0';
    return 0;
}

uint64_t bench_proc_cpu_ns(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    /* After the command name: field 3 (state) ... field 14 utime, field 15 stime. */
    unsigned long long utime = 0, stime = 0;
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) !=
        2)
        return 0;
    long hz = sysconf(_SC_CLK_TCK);
    return (utime + stime) * (1000000000ull / (uint64_t)(hz > 0 ? hz : 100));
}
