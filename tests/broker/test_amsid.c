/*
 * test_amsid.c - integration tests for the amsid broker and libamsi: each group starts the real
 * daemon (AMSI_BINARY_DIR/broker/amsid) on sockets in a temporary directory and drives it through
 * the AMSI API, through raw SOCK_SEQPACKET connections built with the wire codec, and through
 * amsictl.
 *
 * Groups: "main" (default settings) covers every AMSI call, sessions, large content, malformed
 * frames, pipelining, clients that misbehave or die, 1000 connections, many threads, reloads under
 * load, declared identity, amsictl, and libamsi facing no broker or a fake one that answers
 * oddly; "limits" runs a daemon with a 4 KiB inline maximum, a 1 MiB request maximum and a pool
 * of one thread behind a 2-slot queue; "restart" stops, kills, drains and restarts its daemon
 * under scanning clients; "rules" adds a rule file the test rewrites, to reload new rules and
 * broken ones.
 *
 * Every test proves it cleaned up: its teardown waits until the broker reports no open connection
 * and no session, finds the broker's descriptor count back where it was, and checks that the test
 * process has the same descriptors and child processes as before. Each group's teardown stops the
 * daemon with SIGTERM and requires exit status 0 within 10 s. Tests never assert timings, only
 * "did not hang" bounds that a loaded machine meets with a wide margin.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "lttng_harness.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "amsi.h"
#include "amsi_protocol.h"
#include "rsyslog_harness.h"
#include "syslog_parse.h"

#ifndef AMSI_SOURCE_DIR
#error "AMSI_SOURCE_DIR must name the source tree"
#endif
#ifndef AMSI_BINARY_DIR
#error "AMSI_BINARY_DIR must name the build tree"
#endif
#ifndef AMSI_TEST_DATA
#error "AMSI_TEST_DATA must name the tests directory"
#endif

#define AMSID_PATH    AMSI_BINARY_DIR "/broker/amsid"
#define AMSICTL_PATH  AMSI_BINARY_DIR "/broker/amsictl"
#define FLOOD_PATH    AMSI_BINARY_DIR "/tests/amsi_flood"
#define AMSISCAN_PATH AMSI_BINARY_DIR "/broker/amsiscan"

/* Under a sanitizer everything runs several times slower: the start-up bound grows with it. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TEST_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TEST_SANITIZER 1
#endif
#endif
#ifdef TEST_SANITIZER
#define START_TIMEOUT_MS 60000
#else
#define START_TIMEOUT_MS 20000
#endif

#define STOP_TIMEOUT_MS  10000 /* SIGTERM to exit: the drain bound */
#define REPLY_TIMEOUT_MS 10000 /* a raw request to its reply */
#define SETTLE_MS        10000 /* counters and descriptors back to their baseline */
/* libamsi's timeout for every context unless a test says otherwise: generous, so that only a
 * broker that really stopped answering makes a call fail. */
#define DEFAULT_TIMEOUT_MS "20000"

#define EICAR       "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
#define AMSI_SAMPLE "AMSI Test Sample: 7e72c3ce-861b-4339-8740-0ac1484c1386"
#define CLEAN_TEXT  "Write-Host 'hello, world'\n$total = 1 + 2\nGet-Date\n"
/* Test_Split_Signature (tests/broker/data/test.yar) cut in two. */
#define SPLIT_A    "Write-Output 'block one' # SPLIT-SIGNA"
#define SPLIT_B    "TURE-0123456789 # block two\n"
#define SPLIT_RULE "Test_Split_Signature"

/* The HRESULT a test may see besides S_OK when the broker is away: fail open. */
#define IS_FAIL_OPEN_HR(hr) ((hr) == AMSI_E_UNAVAILABLE || (hr) == AMSI_E_TIMEOUT)

/* ------------------------------------------------------------------------------------------ */
/* Small helpers.                                                                              */

/* Milliseconds on CLOCK_MONOTONIC. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Writes v at p as a little-endian u16/u32/u64 (to corrupt frames by hand). */
static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ASCII to NUL-terminated UTF-16 in out (cap units). */
static void to_wide(const char *s, WCHAR *out, size_t cap)
{
    size_t i = 0;
    for (; s[i] != '\0' && i + 1 < cap; i++)
        out[i] = (WCHAR)(unsigned char)s[i];
    out[i] = 0;
}

/*
 * A malloc'd buffer of len bytes of harmless script lines, with EICAR at its very end when asked.
 * Returns NULL when out of memory.
 */
static char *make_filler(size_t len, bool eicar_at_end)
{
    static const char line[] = "Write-Output 'filler line for a large script block'\n";
    char *buf = malloc(len);
    if (buf == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        buf[i] = line[i % (sizeof(line) - 1)];
    if (eicar_at_end && len >= sizeof(EICAR) - 1)
        memcpy(buf + len - (sizeof(EICAR) - 1), EICAR, sizeof(EICAR) - 1);
    return buf;
}

/* A memfd holding data with the given seals (0: unsealed). Returns the fd or -1. */
static int make_memfd(const void *data, size_t len, int seals)
{
    int fd = memfd_create("amsid-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n <= 0) {
            close(fd);
            return -1;
        }
        p += n;
        left -= (size_t)n;
    }
    if (seals != 0 && fcntl(fd, F_ADD_SEALS, seals) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

#define ALL_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

/* Entries in a /proc/.../fd directory (less one when it is this process's own, for the directory
 * being read). -1 when unreadable. */
static int count_dir_fds(const char *path, bool self)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return self ? n - 1 : n;
}

static int count_fds(void)
{
    return count_dir_fds("/proc/self/fd", true);
}

static int count_proc_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    return count_dir_fds(path, false);
}

/* Processes (zombies included) whose parent is this process. */
static int count_children(void)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    pid_t self = getpid();
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
        long ppid = 0;
        char state;
        if (p != NULL && sscanf(p + 1, " %c %ld", &state, &ppid) == 2 && ppid == (long)self)
            n++;
    }
    closedir(d);
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Helper child processes: tracked so that a failed test cannot leave one behind.              */

#define MAX_HELPERS 16
static pid_t helper_pids[MAX_HELPERS];

/* Forks a helper that dies with this process. Returns the pid (0 in the child) or -1. */
static pid_t fork_helper(void)
{
    pid_t parent = getpid();
    int slot = -1;
    for (int i = 0; i < MAX_HELPERS && slot < 0; i++)
        if (helper_pids[i] == 0)
            slot = i;
    if (slot < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        return 0;
    }
    if (pid > 0)
        helper_pids[slot] = pid;
    return pid;
}

/*
 * Waits up to timeout_ms for a helper to end and reaps it. Returns true with its wait status in
 * *status; false (after killing and reaping it) when it did not end in time.
 */
static bool reap_helper(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = now_ms() + timeout_ms;
    int st = 0;
    bool ended = false;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            ended = true;
            break;
        }
        if (r < 0 && errno != EINTR)
            break;
        if (now_ms() >= deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        sleep_ms(5);
    }
    for (int i = 0; i < MAX_HELPERS; i++)
        if (helper_pids[i] == pid)
            helper_pids[i] = 0;
    if (status)
        *status = st;
    return ended;
}

/* Kills and reaps helpers a failed test left behind. Returns how many there were. */
static int reap_leftover_helpers(void)
{
    int n = 0;
    for (int i = 0; i < MAX_HELPERS; i++) {
        if (helper_pids[i] != 0) {
            kill(helper_pids[i], SIGKILL);
            reap_helper(helper_pids[i], STOP_TIMEOUT_MS, NULL);
            n++;
        }
    }
    return n;
}

/*
 * Runs argv (argv[0] a path) with stdout captured into out (cap bytes, NUL-terminated) and stderr
 * discarded. Returns its exit status, or -1 when it could not run, was killed or did not end
 * within timeout_ms (it is then killed).
 */
static int run_capture(char *const argv[], char *out, size_t cap, int timeout_ms)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork_helper();
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        if (nul < 0 || dup2(nul, 0) < 0 || dup2(p[1], 1) < 0 || dup2(nul, 2) < 0)
            _exit(127);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    int64_t deadline = now_ms() + timeout_ms;
    size_t used = 0;
    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, (int)left) == 0)
            break;
        char chunk[512];
        ssize_t n = read(p[0], chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t take = (size_t)n < cap - 1 - used ? (size_t)n : cap - 1 - used;
        memcpy(out + used, chunk, take);
        used += take;
    }
    close(p[0]);
    out[used] = '\0';
    int st;
    int64_t left = deadline - now_ms();
    if (!reap_helper(pid, left > 0 ? (int)left : 0, &st))
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* The daemon.                                                                                 */

#define MAX_EXTRA 8 /* --set values a group may add */

typedef struct broker_proc {
    char dir[64];         /* the group's temporary directory */
    char live_rules[128]; /* a third rule file in dir that tests rewrite, or "" */
    char sock[128];
    char ctl[128];
    char log[128];
    char set_ctl[160];
    char set_rules[2 * PATH_MAX];
    const char *extra[MAX_EXTRA]; /* further --set values */
    size_t nextra;
    pid_t pid; /* -1 when not running */
} broker_proc;

/* Pids of running daemons, killed at exit should a test abort. */
static pid_t daemon_pids[4];

static void kill_daemons_at_exit(void)
{
    for (size_t i = 0; i < sizeof(daemon_pids) / sizeof(daemon_pids[0]); i++) {
        if (daemon_pids[i] > 0) {
            kill(daemon_pids[i], SIGKILL);
            waitpid(daemon_pids[i], NULL, 0);
            daemon_pids[i] = 0;
        }
    }
}

static void daemon_register(pid_t pid, bool add)
{
    for (size_t i = 0; i < sizeof(daemon_pids) / sizeof(daemon_pids[0]); i++) {
        if (add && daemon_pids[i] == 0) {
            daemon_pids[i] = pid;
            return;
        }
        if (!add && daemon_pids[i] == pid) {
            daemon_pids[i] = 0;
            return;
        }
    }
}

/* Prints the daemon's log (its stderr) to help read a failure. */
static void broker_print_log(const broker_proc *b)
{
    FILE *f = fopen(b->log, "r");
    if (f == NULL)
        return;
    fprintf(stderr, "---- %s ----\n", b->log);
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL)
        fputs(line, stderr);
    fprintf(stderr, "---- end of log ----\n");
    fclose(f);
}

/* Connects a raw SOCK_SEQPACKET socket to path. Returns the fd or -1. */
static int raw_connect(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return -1;
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends one control command and reads the answer into out. Returns false on any failure. */
static bool ctl_query(const broker_proc *b, const char *cmd, char *out, size_t cap)
{
    int fd = raw_connect(b->ctl);
    if (fd < 0)
        return false;
    bool ok = false;
    size_t len = strlen(cmd);
    if (send(fd, cmd, len, MSG_NOSIGNAL) == (ssize_t)len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 60000) == 1) {
            ssize_t n = recv(fd, out, cap - 1, 0);
            if (n > 0) {
                out[n] = '\0';
                ok = true;
            }
        }
    }
    close(fd);
    return ok;
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

/*
 * Looks key up in a flat JSON object of unsigned integers, checking the whole text is such an
 * object. Returns 0 with *out set when found, 1 when the object is well formed but lacks the key,
 * -1 when the text is not such an object (or holds the key twice).
 */
static int json_u64(const char *text, const char *key, uint64_t *out)
{
    const char *p = skip_ws(text);
    int found = 1;
    if (*p++ != '{')
        return -1;
    p = skip_ws(p);
    if (*p == '}') {
        p++;
    } else {
        for (;;) {
            if (*p++ != '"')
                return -1;
            const char *k = p;
            while (*p != '\0' && *p != '"' && *p != '\\')
                p++;
            if (*p != '"')
                return -1;
            size_t klen = (size_t)(p - k);
            p = skip_ws(p + 1);
            if (*p++ != ':')
                return -1;
            p = skip_ws(p);
            if (!isdigit((unsigned char)*p))
                return -1;
            errno = 0;
            char *end;
            unsigned long long v = strtoull(p, &end, 10);
            if (errno != 0)
                return -1;
            p = skip_ws(end);
            if (klen == strlen(key) && memcmp(k, key, klen) == 0) {
                if (found == 0)
                    return -1;
                *out = v;
                found = 0;
            }
            if (*p == ',') {
                p = skip_ws(p + 1);
                continue;
            }
            if (*p++ != '}')
                return -1;
            break;
        }
    }
    return *skip_ws(p) == '\0' ? found : -1;
}

/* One counter from `stats --json`. Returns false when it could not be read. */
static bool broker_stat(const broker_proc *b, const char *key, uint64_t *v)
{
    char out[8192];
    return ctl_query(b, "stats --json", out, sizeof(out)) && json_u64(out, key, v) == 0;
}

/* Waits until a counter equals want. Returns false (after printing it) when it never did. */
static bool wait_stat(const broker_proc *b, const char *key, uint64_t want, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    uint64_t v = UINT64_MAX;
    for (;;) {
        if (broker_stat(b, key, &v) && v == want)
            return true;
        if (now_ms() >= deadline)
            break;
        sleep_ms(20);
    }
    fprintf(stderr, "stats %s: %llu, expected %llu\n", key, (unsigned long long)v,
            (unsigned long long)want);
    return false;
}

/* Runs `amsictl --control CTL cmd` and returns its exit status, output in out. */
static int amsictl(const broker_proc *b, const char *cmd, char *out, size_t cap)
{
    char *argv[] = {(char *)AMSICTL_PATH, (char *)"--control", (char *)b->ctl, (char *)cmd, NULL};
    return run_capture(argv, out, cap, 120000);
}

/* Writes text to path (replacing it). Returns false on failure. */
static bool write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/*
 * Builds the daemon's paths and settings in a new temporary directory; with live_rules, a third
 * rule file there holding live_rules. Returns false on failure.
 */
static bool broker_prepare(broker_proc *b, const char *const *extra, size_t nextra,
                           const char *live_rules)
{
    memset(b, 0, sizeof(*b));
    b->pid = -1;
    snprintf(b->dir, sizeof(b->dir), "/tmp/amsid-test-XXXXXX");
    if (mkdtemp(b->dir) == NULL)
        return false;
    snprintf(b->sock, sizeof(b->sock), "%s/scan.sock", b->dir);
    snprintf(b->ctl, sizeof(b->ctl), "%s/ctl.sock", b->dir);
    snprintf(b->log, sizeof(b->log), "%s/amsid.log", b->dir);
    snprintf(b->set_ctl, sizeof(b->set_ctl), "broker.control_socket=%s", b->ctl);
    if (live_rules != NULL) {
        snprintf(b->live_rules, sizeof(b->live_rules), "%s/live.yar", b->dir);
        if (!write_file(b->live_rules, live_rules))
            return false;
    }
    snprintf(b->set_rules, sizeof(b->set_rules),
             "engine.rules=%s/engine/rules/default.yar,%s/broker/data/test.yar%s%s",
             AMSI_SOURCE_DIR, AMSI_TEST_DATA, live_rules ? "," : "", b->live_rules);
    for (size_t i = 0; i < nextra && i < MAX_EXTRA; i++)
        b->extra[b->nextra++] = extra[i];
    return true;
}

/*
 * Starts amsid in the foreground (stderr appended to the log) and waits until it accepts scan
 * connections and answers "ping" on the control socket. Returns false, after printing the log,
 * when it died or never became ready (it is then killed).
 */
static bool broker_start(broker_proc *b)
{
    char *argv[8 + 2 * MAX_EXTRA + 1];
    size_t n = 0;
    argv[n++] = (char *)AMSID_PATH;
    argv[n++] = (char *)"--foreground";
    argv[n++] = (char *)"--socket";
    argv[n++] = b->sock;
    argv[n++] = (char *)"--set";
    argv[n++] = b->set_ctl;
    argv[n++] = (char *)"--set";
    argv[n++] = b->set_rules;
    for (size_t i = 0; i < b->nextra; i++) {
        argv[n++] = (char *)"--set";
        argv[n++] = (char *)b->extra[i];
    }
    argv[n] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        /* Only async-signal-safe calls here: other threads may be running in the parent. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int logfd = open(b->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int nul = open("/dev/null", O_RDWR);
        if (logfd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(logfd, 2) < 0)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], argv);
        _exit(127);
    }
    b->pid = pid;
    daemon_register(pid, true);

    int64_t deadline = now_ms() + START_TIMEOUT_MS;
    bool scan_ready = false;
    while (now_ms() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "amsid exited during start-up (status 0x%x)\n", st);
            daemon_register(pid, false);
            b->pid = -1;
            broker_print_log(b);
            return false;
        }
        if (!scan_ready) {
            int fd = raw_connect(b->sock);
            if (fd >= 0) {
                close(fd);
                scan_ready = true;
            }
        }
        char out[64];
        if (scan_ready && ctl_query(b, "ping", out, sizeof(out)) && strcmp(out, "pong") == 0)
            return true;
        sleep_ms(20);
    }
    fprintf(stderr, "amsid did not become ready within %d ms\n", START_TIMEOUT_MS);
    broker_print_log(b);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    daemon_register(pid, false);
    b->pid = -1;
    return false;
}

/*
 * Waits up to STOP_TIMEOUT_MS for the daemon to exit (something already told it to). Returns true
 * when it exited with status 0 in time and removed its sockets; otherwise prints why (and the
 * log), kills it if needed and returns false. The daemon is reaped either way.
 */
static bool broker_wait_exit(broker_proc *b, const char *why)
{
    if (b->pid <= 0)
        return false;
    int64_t deadline = now_ms() + STOP_TIMEOUT_MS;
    int st = 0;
    bool exited = false;
    while (now_ms() < deadline) {
        pid_t r = waitpid(b->pid, &st, WNOHANG);
        if (r == b->pid) {
            exited = true;
            break;
        }
        sleep_ms(10);
    }
    if (!exited) {
        fprintf(stderr, "amsid did not stop within %d ms of %s\n", STOP_TIMEOUT_MS, why);
        kill(b->pid, SIGKILL);
        waitpid(b->pid, &st, 0);
    }
    daemon_register(b->pid, false);
    b->pid = -1;
    bool ok = exited && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (exited && !ok)
        fprintf(stderr, "amsid ended with wait status 0x%x after %s\n", st, why);
    if (ok && (access(b->sock, F_OK) == 0 || access(b->ctl, F_OK) == 0)) {
        fprintf(stderr, "amsid left its sockets behind after a clean stop\n");
        ok = false;
    }
    if (!ok)
        broker_print_log(b);
    return ok;
}

/* Sends SIGTERM and waits for a clean exit (see broker_wait_exit()). */
static bool broker_stop(broker_proc *b)
{
    if (b->pid <= 0)
        return false;
    kill(b->pid, SIGCONT); /* in case a test left it stopped */
    kill(b->pid, SIGTERM);
    return broker_wait_exit(b, "SIGTERM");
}

/* SIGKILLs the daemon and reaps it (a crash, as far as clients can tell). */
static void broker_kill(broker_proc *b)
{
    if (b->pid <= 0)
        return;
    kill(b->pid, SIGKILL);
    waitpid(b->pid, NULL, 0);
    daemon_register(b->pid, false);
    b->pid = -1;
}

/* Removes the temporary directory and what is left in it. */
static void broker_remove_dir(broker_proc *b)
{
    DIR *d = opendir(b->dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[PATH_MAX];
            snprintf(path, sizeof(path), "%s/%s", b->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(b->dir);
}

/* ------------------------------------------------------------------------------------------ */
/* Fixtures.                                                                                   */

typedef struct group_state {
    broker_proc b;
    /* Baselines taken before each test. */
    int fds;
    int children;
    pid_t fds_of;
    int broker_fds;
} group_state;

static group_state main_group, limits_group, restart_group, rules_group, rate_group, block_group,
    report_group, window_group, lttng_group;
static int fixture_failures;

/* A group: a temporary directory and a daemon with the given extra settings. */
static int group_start(void **state, group_state *g, const char *const *extra, size_t nextra,
                       const char *live_rules)
{
    if (!broker_prepare(&g->b, extra, nextra, live_rules)) {
        fixture_failures++;
        return -1;
    }
    if (!broker_start(&g->b)) {
        broker_remove_dir(&g->b);
        fixture_failures++;
        return -1;
    }
    setenv("AMSI_BROKER_SOCKET", g->b.sock, 1);
    *state = g;
    return 0;
}

static int group_stop(void **state)
{
    group_state *g = *state;
    bool ok = broker_stop(&g->b);
    broker_remove_dir(&g->b);
    unsetenv("AMSI_BROKER_SOCKET");
    if (!ok || access(g->b.dir, F_OK) == 0) {
        fixture_failures++;
        return -1;
    }
    return 0;
}

/*
 * These groups test the protocol, threads, limits on content and restarts, all from this one
 * process, at rates far above the default per-process request limit: the limits are off here and
 * have a test of their own (test_ratelimit_broker), with several processes.
 */
#define NO_RATE_LIMIT "ratelimit.enabled=0"

static int main_group_setup(void **state)
{
    static const char *const extra[] = {NO_RATE_LIMIT};
    return group_start(state, &main_group, extra, 1, NULL);
}

static int limits_group_setup(void **state)
{
    static const char *const extra[] = {"broker.max_request_size=1M", "broker.inline_max=4096",
                                        "broker.queue_depth=2", "broker.pool_threads=1",
                                        NO_RATE_LIMIT};
    return group_start(state, &limits_group, extra, 5, NULL);
}

static int restart_group_setup(void **state)
{
    static const char *const extra[] = {NO_RATE_LIMIT};
    return group_start(state, &restart_group, extra, 1, NULL);
}

#define LIVE_RULE_ONE                                                                              \
    "rule Live_Rule_One\n{\n    strings:\n        $a = \"LIVE-RULE-ONE-MARKER\"\n"                 \
    "    condition:\n        $a\n}\n"
#define LIVE_RULE_TWO                                                                              \
    "rule Live_Rule_Two\n{\n    strings:\n        $a = \"LIVE-RULE-TWO-MARKER\"\n"                 \
    "    condition:\n        $a\n}\n"
#define LIVE_RULE_BROKEN "rule Live_Rule_Broken\n{\n    condition:\n        $nothing\n}\n"

static int rules_group_setup(void **state)
{
    return group_start(state, &rules_group, NULL, 0, LIVE_RULE_ONE);
}

/*
 * The request-limit groups: small limits so that a test process can exceed them tenfold, and
 * copies of amsi_flood under a directory of their own, so that the broker sees executables that
 * are exempt (ci/), exempt only for another uid (uid/), and not exempt (plain/).
 */
#define STR_(x) #x
#define STR(x)  STR_(x)
/* Low rates: a loaded machine still sends ten times as many on schedule, and a client stalled for
 * up to burst / max seconds catches up from its burst, so the accepted count stays exact. */
#define RATE_MAX     50 /* scans per second per process */
#define RATE_BURST   25
#define NOTIFY_MAX   100
#define NOTIFY_BURST 50

static char flood_dir[64];
static char flood_plain[128], flood_ci[128], flood_uid[128];

/* Copies the amsi_flood binary to path, executable. Returns false on failure. */
static bool copy_flood(const char *path)
{
    FILE *in = fopen(FLOOD_PATH, "rb");
    FILE *out = in ? fopen(path, "wb") : NULL;
    bool ok = in != NULL && out != NULL;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        ok = false;
    return ok && chmod(path, 0755) == 0;
}

/* Makes the flood directory and its three copies, once. */
static bool flood_prepare(void)
{
    if (flood_dir[0])
        return true;
    char sub[96];
    snprintf(flood_dir, sizeof(flood_dir), "/tmp/amsi-flood-XXXXXX");
    if (mkdtemp(flood_dir) == NULL) {
        flood_dir[0] = '\0';
        return false;
    }
    const char *names[] = {"plain", "ci", "uid"};
    char *paths[] = {flood_plain, flood_ci, flood_uid};
    for (int i = 0; i < 3; i++) {
        snprintf(sub, sizeof(sub), "%.63s/%s", flood_dir, names[i]);
        snprintf(paths[i], 128, "%s/amsi_flood", sub);
        if (mkdir(sub, 0755) != 0 || !copy_flood(paths[i]))
            return false;
    }
    return true;
}

static void flood_remove(void)
{
    if (!flood_dir[0])
        return;
    const char *paths[] = {flood_plain, flood_ci, flood_uid};
    char sub[192];
    for (int i = 0; i < 3; i++) {
        unlink(paths[i]);
        snprintf(sub, sizeof(sub), "%s", paths[i]);
        *strrchr(sub, '/') = '\0';
        rmdir(sub);
    }
    rmdir(flood_dir);
    flood_dir[0] = '\0';
}

/* The exemption setting of the request-limit groups: ci/ is exempt for every user; uid/amsi_flood
 * only for a uid that is not ours. */
static const char *flood_exempt_setting(void)
{
    static char exempt[512];
    snprintf(exempt, sizeof(exempt), "ratelimit.exempt=%s/ci/, %s:%u", flood_dir, flood_uid,
             (unsigned)getuid() + 1);
    return exempt;
}

static int rate_group_setup(void **state)
{
    if (!flood_prepare()) {
        fixture_failures++;
        return -1;
    }
    const char *exempt = flood_exempt_setting();
    const char *const extra[] = {"ratelimit.max_requests=" STR(RATE_MAX),
                                 "ratelimit.burst=" STR(RATE_BURST),
                                 "ratelimit.notify_max_requests=" STR(NOTIFY_MAX),
                                 "ratelimit.notify_burst=" STR(NOTIFY_BURST), exempt};
    return group_start(state, &rate_group, extra, 5, NULL);
}

static int block_group_setup(void **state)
{
    if (!flood_prepare()) {
        fixture_failures++;
        return -1;
    }
    static const char *const extra[] = {"ratelimit.max_requests=50", "ratelimit.burst=5",
                                        "ratelimit.action=block"};
    return group_start(state, &block_group, extra, 3, NULL);
}

/*
 * The report groups: a private rsyslogd on loopback (tests/ratelimit/rsyslog_harness.h) as the
 * administration server, and a broker reporting to it over TCP, with a window longer than any
 * test (the report goes out when the broker stops) or of one second.
 */
static rsyslog_harness *collector;

static int report_setup(void **state, group_state *g, const char *window)
{
    static char dest[2][64], win[2][32];
    int i = g == &report_group ? 0 : 1;
    if (!flood_prepare() || (collector == NULL && rsyslog_harness_create(&collector) != 0) ||
        rsyslog_harness_start(collector) != 0) {
        fprintf(stderr, "report tests: cannot start rsyslogd\n");
        fixture_failures++;
        return -1;
    }
    snprintf(dest[i], sizeof(dest[i]), "report.syslog=tcp://127.0.0.1:%u",
             (unsigned)rsyslog_harness_tcp_port(collector));
    snprintf(win[i], sizeof(win[i]), "report.window_s=%s", window);
    const char *extra[] = {"ratelimit.max_requests=" STR(RATE_MAX),
                           "ratelimit.burst=" STR(RATE_BURST), flood_exempt_setting(), dest[i],
                           win[i]};
    return group_start(state, g, extra, 5, NULL);
}

static int report_group_setup(void **state)
{
    return report_setup(state, &report_group, "3600");
}

static int window_group_setup(void **state)
{
    return report_setup(state, &window_group, "1");
}

static int report_group_stop(void **state)
{
    int rc = group_stop(state);
    if (collector != NULL)
        rsyslog_harness_stop(collector);
    return rc;
}

/*
 * The LTTng group: a real session daemon (started here when none answers; as root it is the
 * machine's), a session recording every amsi_broker event into a private directory with blocking
 * channels (no event lost), and a broker tracing to it (trace.backend = lttng) with a small pool
 * queue and a request limit this process will exceed.
 */
static char lttng_dir[64];
static char lttng_session[64];
static pid_t lttng_sessiond;

static int lttng_group_setup(void **state)
{
    snprintf(lttng_dir, sizeof(lttng_dir), "/tmp/amsid-lttng-XXXXXX");
    if (mkdtemp(lttng_dir) == NULL) {
        fixture_failures++;
        return -1;
    }
    if (lttng_harness_start(lttng_dir, &lttng_sessiond) != 0) {
        fixture_failures++;
        return -1;
    }
    snprintf(lttng_session, sizeof(lttng_session), "amsid%ld", (long)getpid());
    if (lttng_harness_run("lttng create %s --output='%s/trace' >/dev/null", lttng_session,
                          lttng_dir) != 0 ||
        lttng_harness_run(
            "lttng enable-channel --userspace --session=%s --subbuf-size=1M --num-subbuf=8 "
            "--blocking-timeout=inf chan >/dev/null",
            lttng_session) != 0 ||
        lttng_harness_run(
            "lttng enable-event --userspace --session=%s --channel=chan 'amsi_broker:*' "
            ">/dev/null",
            lttng_session) != 0 ||
        lttng_harness_run("lttng start %s >/dev/null", lttng_session) != 0) {
        fixture_failures++;
        return -1;
    }
    /* Blocking channels need the traced process's consent. */
    setenv("LTTNG_UST_ALLOW_BLOCKING", "1", 1);
    setenv("LTTNG_UST_REGISTER_TIMEOUT", "10000", 1);
    static const char *const extra[] = {"trace.backend=lttng",
                                        "trace.lttng_library=" AMSI_BINARY_DIR
                                        "/etw/libamsi-lttng.so",
                                        "trace.level=verbose",
                                        "broker.queue_depth=2",
                                        "broker.pool_threads=1",
                                        "ratelimit.max_requests=" STR(RATE_MAX),
                                        "ratelimit.burst=" STR(RATE_BURST),
                                        "report.syslog=udp://127.0.0.1:9"};
    int rc = group_start(state, &lttng_group, extra, 8, NULL);
    unsetenv("LTTNG_UST_ALLOW_BLOCKING");
    unsetenv("LTTNG_UST_REGISTER_TIMEOUT");
    return rc;
}

static int lttng_group_stop(void **state)
{
    int rc = group_stop(state);
    lttng_harness_run("lttng destroy %s >/dev/null 2>&1", lttng_session);
    lttng_harness_stop(lttng_sessiond);
    lttng_sessiond = 0;
    lttng_harness_run("rm -rf '%s'", lttng_dir);
    unsetenv("LTTNG_HOME");
    return rc;
}

/* The broker's descriptor count, once two readings 50 ms apart agree. */
static int settled_broker_fds(pid_t pid)
{
    int prev = count_proc_fds(pid);
    for (int i = 0; i < 100; i++) {
        sleep_ms(50);
        int cur = count_proc_fds(pid);
        if (cur == prev)
            return cur;
        prev = cur;
    }
    return prev;
}

static int test_setup(void **state)
{
    group_state *g = *state;
    if (g->b.pid <= 0)
        return -1;
    g->fds = count_fds();
    g->children = count_children();
    g->fds_of = g->b.pid;
    g->broker_fds = settled_broker_fds(g->b.pid);
    /* The counters must see what is there: the daemon is a child, stdio are descriptors. */
    if (g->children < 1 || g->fds < 3 || g->broker_fds < 3) {
        fprintf(stderr, "setup: cannot count children (%d) or descriptors (%d, amsid %d)\n",
                g->children, g->fds, g->broker_fds);
        return -1;
    }
    return 0;
}

/*
 * Checks that the test cleaned up after itself: no helper process left, the broker back to no
 * open connection and no session, its descriptors back to the baseline (unless it was restarted),
 * and this process holding the descriptors and children it had before.
 */
static int test_teardown(void **state)
{
    group_state *g = *state;
    int bad = 0;
    int left = reap_leftover_helpers();
    if (left != 0) {
        fprintf(stderr, "teardown: %d helper process(es) were still running\n", left);
        bad++;
    }
    if (g->b.pid > 0) {
        if (!wait_stat(&g->b, "open_connections", 0, SETTLE_MS))
            bad++;
        if (!wait_stat(&g->b, "sessions_open", 0, SETTLE_MS))
            bad++;
        if (g->b.pid == g->fds_of) {
            int64_t deadline = now_ms() + SETTLE_MS;
            int n = count_proc_fds(g->b.pid);
            while (n != g->broker_fds && now_ms() < deadline) {
                sleep_ms(20);
                n = count_proc_fds(g->b.pid);
            }
            if (n != g->broker_fds) {
                fprintf(stderr, "teardown: amsid holds %d descriptors, %d before the test\n", n,
                        g->broker_fds);
                bad++;
            }
        }
    }
    int fds = count_fds();
    if (fds != g->fds) {
        fprintf(stderr, "teardown: the test process holds %d descriptors, %d before\n", fds,
                g->fds);
        bad++;
    }
    int children = count_children();
    if (children != g->children) {
        fprintf(stderr, "teardown: %d child processes, %d before\n", children, g->children);
        bad++;
    }
    return bad ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* libamsi helpers.                                                                            */

/* A context created with AMSI_TIMEOUT_MS and AMSI_INLINE_MAX set as given (NULL: unset). */
static HAMSICONTEXT open_context(const char *app, const char *timeout_ms, const char *inline_max)
{
    HAMSICONTEXT ctx = NULL;
    if (timeout_ms)
        setenv("AMSI_TIMEOUT_MS", timeout_ms, 1);
    if (inline_max)
        setenv("AMSI_INLINE_MAX", inline_max, 1);
    HRESULT hr = AmsiInitializeA(app, &ctx);
    setenv("AMSI_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 1);
    unsetenv("AMSI_INLINE_MAX");
    return hr == AMSI_S_OK ? ctx : NULL;
}

/* Scans text and says whether the call succeeded with result want. Thread-safe. */
static bool scan_is(HAMSICONTEXT ctx, HAMSISESSION session, const char *text, AMSI_RESULT want)
{
    AMSI_RESULT r = (AMSI_RESULT)0x1234;
    HRESULT hr = AmsiScanBufferA(ctx, text, strlen(text), "test.ps1", session, &r);
    return hr == AMSI_S_OK && r == want;
}

/* Asserts that a scan of text succeeds with result want (the call and result are printed). */
#define assert_scan(ctx, session, text, want)                                                      \
    do {                                                                                           \
        AMSI_RESULT r_ = (AMSI_RESULT)0x1234;                                                      \
        HRESULT hr_ = AmsiScanBufferA((ctx), (text), strlen(text), "test.ps1", (session), &r_);    \
        assert_int_equal(hr_, AMSI_S_OK);                                                          \
        assert_int_equal(r_, (want));                                                              \
    } while (0)

/* ------------------------------------------------------------------------------------------ */
/* Raw protocol helpers.                                                                       */

#define RAW_APP  "amsid-test-raw"
#define RAW_NAME "raw.ps1"

/*
 * Encodes a request with the codec into buf (cap bytes), inline content appended unless flags has
 * AMSI_PROTO_F_MEMFD. Returns the frame length, 0 when it does not fit or the codec refused it.
 */
static size_t make_request(uint8_t *buf, size_t cap, uint16_t type, uint32_t flags, uint64_t id,
                           uint64_t session, const void *content, size_t content_len)
{
    amsi_proto_request req = {.type = type,
                              .flags = flags,
                              .request_id = id,
                              .session_id = session,
                              .app = RAW_APP,
                              .app_len = (uint32_t)strlen(RAW_APP),
                              .name = RAW_NAME,
                              .name_len = (uint32_t)strlen(RAW_NAME),
                              .content = content,
                              .content_len = content_len};
    size_t len = 0;
    if (amsi_proto_encode_request(&req, buf, cap, &len) != 0)
        return 0;
    if ((flags & AMSI_PROTO_F_MEMFD) == 0 && content_len > 0) {
        if (content_len > cap - len)
            return 0;
        memcpy(buf + len, content, content_len);
        len += content_len;
    }
    return len;
}

/* Sends one frame with nfds descriptors (at most 4) attached. Returns sendmsg's result. */
static ssize_t raw_send(int fd, const void *frame, size_t len, const int *fds, size_t nfds,
                        int flags)
{
    struct iovec iov = {.iov_base = (void *)(uintptr_t)frame, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctl;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *cm = &ctl.align; /* CMSG_FIRSTHDR of a buffer known to be large enough */
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    ssize_t n;
    do
        n = sendmsg(fd, &msg, MSG_NOSIGNAL | flags);
    while (n < 0 && errno == EINTR);
    return n;
}

/* Outcomes of waiting for a reply on a raw connection. */
enum { RAW_REPLY = 0, RAW_EOF = 1, RAW_TIMEOUT = 2, RAW_ERROR = 3, RAW_UNDECODABLE = 4 };

/*
 * Waits up to timeout_ms for one frame and decodes it as a reply into *rep (pointing into buf,
 * AMSI_PROTO_MAX_REPLY bytes). Returns RAW_REPLY, RAW_EOF (orderly close or ECONNRESET),
 * RAW_TIMEOUT, RAW_ERROR or RAW_UNDECODABLE.
 */
static int raw_recv_reply(int fd, uint8_t *buf, amsi_proto_reply *rep, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return RAW_TIMEOUT;
    if (n < 0)
        return RAW_ERROR;
    ssize_t len = recv(fd, buf, AMSI_PROTO_MAX_REPLY, MSG_DONTWAIT);
    if (len == 0 || (len < 0 && (errno == ECONNRESET || errno == EPIPE)))
        return RAW_EOF;
    if (len < 0)
        return RAW_ERROR;
    return amsi_proto_decode_reply(buf, (size_t)len, rep) == 0 ? RAW_REPLY : RAW_UNDECODABLE;
}

/* Whether the broker closed the connection: the next receive sees EOF or a reset in time. */
static bool raw_peer_closed(int fd, int timeout_ms)
{
    uint8_t buf[AMSI_PROTO_MAX_REPLY];
    amsi_proto_reply rep;
    return raw_recv_reply(fd, buf, &rep, timeout_ms) == RAW_EOF;
}

/*
 * Sends frame on a new connection and waits for one reply: returns its outcome (RAW_*) with the
 * reply's status and request id; *closed says whether the broker then closed the connection.
 */
static int raw_exchange(const char *sock, const void *frame, size_t len, const int *fds,
                        size_t nfds, uint32_t *status, uint64_t *request_id, bool *closed)
{
    int fd = raw_connect(sock);
    if (fd < 0)
        return RAW_ERROR;
    int rc = RAW_ERROR;
    if (raw_send(fd, frame, len, fds, nfds, 0) == (ssize_t)len) {
        uint8_t buf[AMSI_PROTO_MAX_REPLY];
        amsi_proto_reply rep;
        rc = raw_recv_reply(fd, buf, &rep, REPLY_TIMEOUT_MS);
        if (rc == RAW_REPLY) {
            *status = rep.status;
            *request_id = rep.request_id;
        }
        *closed = rc == RAW_EOF || raw_peer_closed(fd, REPLY_TIMEOUT_MS);
    }
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* 1. Every AMSI function.                                                                     */

static void test_api_scans(void **state)
{
    (void)state;
    HAMSICONTEXT ctx = NULL;
    AMSI_RESULT r;
    char eicar[] = EICAR;
    char clean[] = CLEAN_TEXT;

    assert_int_equal(AmsiInitialize(u"amsid-test \u00e9\u4e2d", &ctx), AMSI_S_OK);
    assert_non_null(ctx);

    /* AmsiScanBuffer: EICAR is malware, exactly AMSI_RESULT_DETECTED; clean text is not. */
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, eicar, (ULONG)strlen(eicar), u"eicar.txt", NULL, &r),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    assert_int_equal(r, 32768);
    assert_true(AmsiResultIsMalware(r));
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, clean, (ULONG)strlen(clean), u"clean.ps1", NULL, &r),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    assert_int_equal(r, 1);
    assert_false(AmsiResultIsMalware(r));
    /* No content name, and an empty buffer. */
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, eicar, (ULONG)strlen(eicar), NULL, NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, clean, 0, u"empty", NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);

    /* AmsiScanString: UTF-16 text. */
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanString(ctx, u"" AMSI_SAMPLE, u"sample.ps1", NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanString(ctx, u"" CLEAN_TEXT, u"clean.ps1", NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);

    /* AmsiNotifyOperation. */
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiNotifyOperation(ctx, eicar, (ULONG)strlen(eicar), u"notify", &r),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiNotifyOperation(ctx, clean, (ULONG)strlen(clean), u"notify", &r),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);

    /* AmsiOpenSession / AmsiCloseSession, with scans in between. */
    HAMSISESSION session = NULL;
    assert_int_equal(AmsiOpenSession(ctx, &session), AMSI_S_OK);
    assert_non_null(session);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, clean, (ULONG)strlen(clean), u"s1", session, &r),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, eicar, (ULONG)strlen(eicar), u"s2", session, &r),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    AmsiCloseSession(ctx, session);

    /* AmsiScanBufferEx: what the broker said, and scan ids that grow. */
    AMSI_SCAN_INFO info, info2;
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBufferEx(ctx, eicar, strlen(eicar), "eicar.ps1", NULL, 0, &r, &info),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    assert_int_equal(info.status, AMSI_PROTO_STATUS_OK);
    assert_string_equal(info.rule, "EICAR_Test_File");
    assert_string_equal(info.object, "eicar.ps1");
    assert_string_equal(info.reason, "");
    assert_int_equal(info.retry_after_ms, 0);
    assert_true(info.scan_id != 0);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBufferEx(ctx, clean, strlen(clean), "clean.ps1", NULL, 0, &r, &info2),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    assert_int_equal(info2.status, AMSI_PROTO_STATUS_OK);
    assert_string_equal(info2.rule, "");
    assert_true(info2.scan_id > info.scan_id);
    /* UTF-16 content flagged as such. */
    WCHAR wide[128];
    to_wide(AMSI_SAMPLE, wide, 128);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBufferEx(ctx, wide, 2 * strlen(AMSI_SAMPLE), "wide", NULL,
                                      AMSI_SCAN_UTF16, &r, &info),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    assert_string_equal(info.rule, "AMSI_Test_Sample");
    assert_true(info.scan_id > info2.scan_id);
    /* info may be NULL. */
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBufferEx(ctx, eicar, strlen(eicar), NULL, NULL, 0, &r, NULL),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    AmsiUninitialize(ctx);

    /* The UTF-8 calls. */
    ctx = NULL;
    assert_int_equal(AmsiInitializeA("amsid-test-utf8", &ctx), AMSI_S_OK);
    assert_non_null(ctx);
    assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
    assert_scan(ctx, NULL, CLEAN_TEXT, AMSI_RESULT_NOT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanStringA(ctx, AMSI_SAMPLE, "sample.ps1", NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanStringA(ctx, CLEAN_TEXT, NULL, NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    AmsiUninitialize(ctx);
}

static void test_api_bad_arguments(void **state)
{
    (void)state;
    HAMSICONTEXT ctx = NULL;
    HAMSISESSION session = NULL;
    AMSI_RESULT r;
    char eicar[] = EICAR;
    /* A handle that is not one: zeroed memory, so its magic is wrong. */
    static uint64_t fake[512];

    assert_int_equal(AmsiInitialize(NULL, &ctx), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiInitialize(u"x", NULL), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiInitializeA(NULL, &ctx), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiInitializeA("x", NULL), AMSI_E_INVALIDARG);
    assert_null(ctx);
    assert_int_equal(AmsiInitialize(u"amsid-test-args", &ctx), AMSI_S_OK);
    HAMSICONTEXT bad_ctx = (HAMSICONTEXT)(void *)fake;
    HAMSISESSION bad_session = (HAMSISESSION)(void *)fake;

    /* NULL or bogus context. */
    assert_int_equal(AmsiScanBuffer(NULL, eicar, 4, NULL, NULL, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanBuffer(bad_ctx, eicar, 4, NULL, NULL, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanString(NULL, u"x", NULL, NULL, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiNotifyOperation(NULL, eicar, 4, NULL, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanBufferA(NULL, eicar, 4, NULL, NULL, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanStringA(NULL, "x", NULL, NULL, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanBufferEx(NULL, eicar, 4, NULL, NULL, 0, &r, NULL), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiOpenSession(NULL, &session), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiOpenSession(bad_ctx, &session), AMSI_E_INVALIDARG);
    assert_null(session);

    /* NULL result. */
    assert_int_equal(AmsiScanBuffer(ctx, eicar, 4, NULL, NULL, NULL), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanString(ctx, u"x", NULL, NULL, NULL), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiNotifyOperation(ctx, eicar, 4, NULL, NULL), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanBufferA(ctx, eicar, 4, NULL, NULL, NULL), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanStringA(ctx, "x", NULL, NULL, NULL), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanBufferEx(ctx, eicar, 4, NULL, NULL, 0, NULL, NULL), AMSI_E_INVALIDARG);

    /* NULL buffer with a length; NULL strings. */
    assert_int_equal(AmsiScanBuffer(ctx, NULL, 10, NULL, NULL, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiNotifyOperation(ctx, NULL, 10, NULL, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanBufferA(ctx, NULL, 10, NULL, NULL, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanBufferEx(ctx, NULL, 10, NULL, NULL, 0, &r, NULL), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanString(ctx, NULL, NULL, NULL, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanStringA(ctx, NULL, NULL, NULL, &r), AMSI_E_INVALIDARG);

    /* A session that is not one; a flag AmsiScanBufferEx does not know; no session pointer. */
    assert_int_equal(AmsiScanBuffer(ctx, eicar, 4, NULL, bad_session, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanString(ctx, u"x", NULL, bad_session, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanBufferA(ctx, eicar, 4, NULL, bad_session, &r), AMSI_E_INVALIDARG);
    assert_int_equal(AmsiScanBufferEx(ctx, eicar, 4, NULL, NULL, 0x2u, &r, NULL),
                     AMSI_E_INVALIDARG);
    assert_int_equal(AmsiOpenSession(ctx, NULL), AMSI_E_INVALIDARG);

    /* The calls that return nothing accept anything. */
    AmsiCloseSession(NULL, NULL);
    AmsiCloseSession(ctx, NULL);
    AmsiCloseSession(ctx, bad_session);
    AmsiCloseSession(bad_ctx, bad_session);
    AmsiUninitialize(NULL);
    AmsiUninitialize(bad_ctx);

    /* The context still works after all that. */
    assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
    AmsiUninitialize(ctx);

    /* The result macros. */
    assert_false(AmsiResultIsBlockedByAdmin(0x3fff));
    assert_true(AmsiResultIsBlockedByAdmin(0x4000));
    assert_true(AmsiResultIsBlockedByAdmin(0x4fff));
    assert_false(AmsiResultIsBlockedByAdmin(0x5000));
    assert_false(AmsiResultIsBlockedByAdmin(AMSI_RESULT_NOT_DETECTED));
    assert_false(AmsiResultIsMalware(32767));
    assert_true(AmsiResultIsMalware(32768));
    assert_false(AmsiResultIsMalware(AMSI_RESULT_CLEAN));
    assert_int_equal(AMSI_RESULT_CLEAN, 0);
    assert_int_equal(AMSI_RESULT_BLOCKED_BY_ADMIN_START, 0x4000);
    assert_int_equal(AMSI_RESULT_BLOCKED_BY_ADMIN_END, 0x4fff);
}

/* ------------------------------------------------------------------------------------------ */
/* libamsi with no broker, and against a fake broker that answers oddly.                       */

static void test_api_no_broker(void **state)
{
    group_state *g = *state;
    char missing[128], file[128], stream[128], longpath[320];
    snprintf(missing, sizeof(missing), "%s/missing.sock", g->b.dir);
    snprintf(file, sizeof(file), "%s/regular-file", g->b.dir);
    snprintf(stream, sizeof(stream), "%s/stream.sock", g->b.dir);
    snprintf(longpath, sizeof(longpath), "%s/%0200d", g->b.dir, 0);
    assert_true(write_file(file, "not a socket\n"));
    /* A listening SOCK_STREAM socket: the wrong kind of socket. */
    int sfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(sfd >= 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, stream, strlen(stream) + 1);
    assert_int_equal(bind(sfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(sfd, 4), 0);

    const char *paths[] = {missing, file, stream, longpath};
    char eicar[] = EICAR;
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        setenv("AMSI_BROKER_SOCKET", paths[i], 1);
        HAMSICONTEXT ctx = open_context("amsid-test-nobroker", "2000", NULL);
        setenv("AMSI_BROKER_SOCKET", g->b.sock, 1);
        assert_non_null(ctx);
        AMSI_RESULT r = (AMSI_RESULT)0x1234;
        assert_int_equal(AmsiScanBuffer(ctx, eicar, (ULONG)strlen(eicar), u"x", NULL, &r),
                         AMSI_E_UNAVAILABLE);
        assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
        r = (AMSI_RESULT)0x1234;
        assert_int_equal(AmsiScanString(ctx, u"" AMSI_SAMPLE, u"x", NULL, &r), AMSI_E_UNAVAILABLE);
        assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
        r = (AMSI_RESULT)0x1234;
        assert_int_equal(AmsiNotifyOperation(ctx, eicar, (ULONG)strlen(eicar), u"x", &r),
                         AMSI_E_UNAVAILABLE);
        assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
        /* A session still opens (fail open) and its scans fail open too. */
        HAMSISESSION s = NULL;
        assert_int_equal(AmsiOpenSession(ctx, &s), AMSI_S_OK);
        assert_non_null(s);
        r = (AMSI_RESULT)0x1234;
        assert_int_equal(AmsiScanBuffer(ctx, eicar, (ULONG)strlen(eicar), u"x", s, &r),
                         AMSI_E_UNAVAILABLE);
        assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
        AmsiCloseSession(ctx, s);
        AmsiUninitialize(ctx);
    }
    close(sfd);
    unlink(stream);
    unlink(file);
}

/* How the fake broker answers one request. */
enum fake_mode {
    FAKE_OK_DETECTED,    /* a proper reply: DETECTED, rule, object, scan id */
    FAKE_WRONG_ID_FIRST, /* a DETECTED reply to another request id, then the real one (clean) */
    FAKE_THROTTLED,      /* THROTTLED, blocked by admin, retry after 1500 ms */
    FAKE_BUSY,           /* BUSY, claiming DETECTED */
    FAKE_UNKNOWN_STATUS, /* status 99, claiming DETECTED */
    FAKE_LONG_STRINGS,   /* rule, object and reason at their protocol bounds */
    FAKE_LIMIT,          /* LIMIT with a reason */
    FAKE_TOO_LARGE,      /* TOO_LARGE */
    FAKE_GARBAGE,        /* bytes that are no reply */
    FAKE_SILENT,         /* no answer at all */
    FAKE_CLOSE,          /* close the connection without answering */
    FAKE_VERSION_2,      /* a well-formed reply, but version 2 */
};

typedef struct fake_broker {
    int listen_fd;
    const int *modes;
    size_t nmodes;
    size_t next; /* the fake's thread only, until joined */
    atomic_bool stop;
    unsigned bad_frames; /* requests from libamsi that did not decode */
} fake_broker;

/* Encodes and sends one reply on fd. */
static void fake_send(int fd, const amsi_proto_reply *rep, uint16_t version)
{
    uint8_t frame[AMSI_PROTO_MAX_REPLY];
    size_t len;
    if (amsi_proto_encode_reply(rep, frame, sizeof(frame), &len) != 0)
        return;
    if (version != AMSI_PROTO_VERSION)
        put_le16(frame + 4, version);
    (void)!send(fd, frame, len, MSG_NOSIGNAL);
}

/* Answers one decoded request as the next mode says. Returns false to close the connection. */
static bool fake_answer(fake_broker *fb, int fd, const amsi_proto_request *req)
{
    static char rule[AMSI_PROTO_MAX_RULE], object[AMSI_PROTO_MAX_OBJECT],
        reason[AMSI_PROTO_MAX_REASON];
    int mode = fb->next < fb->nmodes ? fb->modes[fb->next++] : FAKE_CLOSE;
    amsi_proto_reply rep = {.request_id = req->request_id,
                            .session_id = req->session_id,
                            .scan_id = 4242,
                            .status = AMSI_PROTO_STATUS_OK,
                            .amsi_result = AMSI_RESULT_DETECTED,
                            .rule = "Fake_Rule",
                            .rule_len = 9,
                            .object = "fake>object",
                            .object_len = 11};
    switch (mode) {
    case FAKE_OK_DETECTED:
        break;
    case FAKE_WRONG_ID_FIRST:
        rep.request_id = req->request_id + 1000;
        fake_send(fd, &rep, AMSI_PROTO_VERSION);
        rep = (amsi_proto_reply){.request_id = req->request_id,
                                 .status = AMSI_PROTO_STATUS_OK,
                                 .amsi_result = AMSI_RESULT_NOT_DETECTED};
        break;
    case FAKE_THROTTLED:
        rep = (amsi_proto_reply){.request_id = req->request_id,
                                 .status = AMSI_PROTO_STATUS_THROTTLED,
                                 .amsi_result = AMSI_RESULT_BLOCKED_BY_ADMIN_START,
                                 .retry_after_ms = 1500};
        break;
    case FAKE_BUSY:
        rep.status = AMSI_PROTO_STATUS_BUSY;
        break;
    case FAKE_UNKNOWN_STATUS:
        rep.status = 99;
        break;
    case FAKE_LONG_STRINGS:
        memset(rule, 'R', sizeof(rule));
        memset(object, 'O', sizeof(object));
        memset(reason, 'X', sizeof(reason));
        rep.rule = rule;
        rep.rule_len = sizeof(rule);
        rep.object = object;
        rep.object_len = sizeof(object);
        rep.reason = reason;
        rep.reason_len = sizeof(reason);
        break;
    case FAKE_LIMIT:
        rep = (amsi_proto_reply){.request_id = req->request_id,
                                 .status = AMSI_PROTO_STATUS_LIMIT,
                                 .amsi_result = AMSI_RESULT_NOT_DETECTED,
                                 .reason = "Limits.Exceeded.MaxScanTime",
                                 .reason_len = 27};
        break;
    case FAKE_TOO_LARGE:
        rep.status = AMSI_PROTO_STATUS_TOO_LARGE;
        break;
    case FAKE_GARBAGE:
        (void)!send(fd, "this is not a reply frame at all", 32, MSG_NOSIGNAL);
        return true;
    case FAKE_SILENT:
        return true;
    case FAKE_VERSION_2:
        fake_send(fd, &rep, 2);
        return true;
    case FAKE_CLOSE:
    default:
        return false;
    }
    fake_send(fd, &rep, AMSI_PROTO_VERSION);
    return true;
}

/* The fake broker: one connection at a time, one mode per request, until told to stop. */
static void *fake_broker_main(void *arg)
{
    fake_broker *fb = arg;
    uint8_t buf[16384];
    int conn = -1;
    while (!atomic_load_explicit(&fb->stop, memory_order_acquire)) {
        struct pollfd p = {.fd = conn >= 0 ? conn : fb->listen_fd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1)
            continue;
        if (conn < 0) {
            conn = accept4(fb->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            continue;
        }
        ssize_t n = recv(conn, buf, sizeof(buf), 0);
        amsi_proto_request req;
        if (n > 0 && amsi_proto_decode_request(buf, (size_t)n, &req) != 0)
            fb->bad_frames++;
        else if (n > 0 && fake_answer(fb, conn, &req))
            continue;
        close(conn);
        conn = -1;
    }
    if (conn >= 0)
        close(conn);
    return NULL;
}

static void test_libamsi_odd_replies(void **state)
{
    group_state *g = *state;
    static const int modes[] = {FAKE_OK_DETECTED, FAKE_WRONG_ID_FIRST, FAKE_THROTTLED,
                                FAKE_BUSY,        FAKE_UNKNOWN_STATUS, FAKE_LONG_STRINGS,
                                FAKE_LIMIT,       FAKE_TOO_LARGE,      FAKE_GARBAGE,
                                FAKE_SILENT,      FAKE_CLOSE,          FAKE_OK_DETECTED,
                                FAKE_CLOSE,       FAKE_OK_DETECTED,    FAKE_VERSION_2};
    enum { STEPS = 14 };
    char path[128];
    snprintf(path, sizeof(path), "%s/fake.sock", g->b.dir);
    fake_broker fb = {.listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0),
                      .modes = modes,
                      .nmodes = sizeof(modes) / sizeof(modes[0])};
    atomic_init(&fb.stop, false);
    assert_true(fb.listen_fd >= 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fb.listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(fb.listen_fd, 16), 0);
    setenv("AMSI_BROKER_SOCKET", path, 1);
    HAMSICONTEXT ctx = open_context("amsid-test-fake", "1000", NULL);
    setenv("AMSI_BROKER_SOCKET", g->b.sock, 1);
    assert_non_null(ctx);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fake_broker_main, &fb), 0);

    /* The calls first (nothing asserted while the fake runs), then the checks. */
    HRESULT hr[STEPS];
    AMSI_RESULT r[STEPS];
    static AMSI_SCAN_INFO info[STEPS];
    for (int i = 0; i < STEPS; i++) {
        r[i] = (AMSI_RESULT)0x1234;
        hr[i] = AmsiScanBufferEx(ctx, EICAR, strlen(EICAR), "fake", NULL, 0, &r[i], &info[i]);
    }
    atomic_store_explicit(&fb.stop, true, memory_order_release);
    pthread_join(th, NULL);
    AmsiUninitialize(ctx);
    close(fb.listen_fd);
    unlink(path);

    assert_int_equal(fb.bad_frames, 0);
    /* 0: a proper reply. */
    assert_int_equal(hr[0], AMSI_S_OK);
    assert_int_equal(r[0], AMSI_RESULT_DETECTED);
    assert_string_equal(info[0].rule, "Fake_Rule");
    assert_string_equal(info[0].object, "fake>object");
    assert_int_equal(info[0].scan_id, 4242);
    /* 1: a reply to another request is skipped. */
    assert_int_equal(hr[1], AMSI_S_OK);
    assert_int_equal(r[1], AMSI_RESULT_NOT_DETECTED);
    assert_string_equal(info[1].rule, "");
    /* 2: throttled with ratelimit.action = block: the blocked-by-admin result is a verdict
     * (S_OK), since hosts ignore the result of a failed call; the status says THROTTLED. */
    assert_int_equal(hr[2], AMSI_S_OK);
    assert_int_equal(r[2], AMSI_RESULT_BLOCKED_BY_ADMIN_START);
    assert_true(AmsiResultIsBlockedByAdmin(r[2]));
    assert_int_equal(info[2].status, AMSI_PROTO_STATUS_THROTTLED);
    assert_int_equal(info[2].retry_after_ms, 1500);
    /* 3, 4: refusals fail open whatever result they claim. */
    assert_int_equal(hr[3], AMSI_E_BUSY);
    assert_int_equal(r[3], AMSI_RESULT_NOT_DETECTED);
    assert_int_equal(hr[4], AMSI_E_BROKER);
    assert_int_equal(r[4], AMSI_RESULT_NOT_DETECTED);
    /* 5: strings at the protocol bounds are cut to the info fields, NUL-terminated. */
    assert_int_equal(hr[5], AMSI_S_OK);
    assert_int_equal(strlen(info[5].rule), sizeof(info[5].rule) - 1);
    assert_int_equal(strlen(info[5].object), sizeof(info[5].object) - 1);
    assert_int_equal(strlen(info[5].reason), sizeof(info[5].reason) - 1);
    /* 6: a limit is a verdict. */
    assert_int_equal(hr[6], AMSI_S_OK);
    assert_int_equal(r[6], AMSI_RESULT_NOT_DETECTED);
    assert_int_equal(info[6].status, AMSI_PROTO_STATUS_LIMIT);
    assert_string_equal(info[6].reason, "Limits.Exceeded.MaxScanTime");
    /* 7..10: too large, garbage, silence, a close on a fresh connection. */
    assert_int_equal(hr[7], AMSI_E_TOO_LARGE);
    assert_int_equal(r[7], AMSI_RESULT_NOT_DETECTED);
    assert_int_equal(hr[8], AMSI_E_BROKER);
    assert_int_equal(r[8], AMSI_RESULT_NOT_DETECTED);
    assert_int_equal(hr[9], AMSI_E_TIMEOUT);
    assert_int_equal(r[9], AMSI_RESULT_NOT_DETECTED);
    assert_int_equal(hr[10], AMSI_E_UNAVAILABLE);
    assert_int_equal(r[10], AMSI_RESULT_NOT_DETECTED);
    /* 11, 12: a pooled connection that died is retried once on a new one. */
    assert_int_equal(hr[11], AMSI_S_OK);
    assert_int_equal(r[11], AMSI_RESULT_DETECTED);
    assert_int_equal(hr[12], AMSI_S_OK);
    assert_int_equal(r[12], AMSI_RESULT_DETECTED);
    /* 13: a reply in a version this side does not speak. */
    assert_int_equal(hr[13], AMSI_E_BROKER);
    assert_int_equal(r[13], AMSI_RESULT_NOT_DETECTED);
    assert_int_equal(fb.next, fb.nmodes);
}

/* ------------------------------------------------------------------------------------------ */
/* 2. Sessions.                                                                                */

static void test_sessions_split_signature(void **state)
{
    (void)state;
    HAMSICONTEXT ctx = open_context("amsid-test-sessions", NULL, NULL);
    assert_non_null(ctx);
    AMSI_RESULT r;
    AMSI_SCAN_INFO info;

    /* The whole signature in one buffer: the rule itself works. */
    assert_scan(ctx, NULL, SPLIT_A SPLIT_B, AMSI_RESULT_DETECTED);

    /* Without a session, neither half alone is anything. */
    assert_scan(ctx, NULL, SPLIT_A, AMSI_RESULT_NOT_DETECTED);
    assert_scan(ctx, NULL, SPLIT_B, AMSI_RESULT_NOT_DETECTED);

    /* One session: the second half completes the signature. */
    HAMSISESSION s = NULL;
    assert_int_equal(AmsiOpenSession(ctx, &s), AMSI_S_OK);
    assert_scan(ctx, s, SPLIT_A, AMSI_RESULT_NOT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBufferEx(ctx, SPLIT_B, strlen(SPLIT_B), "block2", s, 0, &r, &info),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    assert_string_equal(info.rule, SPLIT_RULE);
    assert_string_equal(info.object, "session");
    AmsiCloseSession(ctx, s);

    /* Two different sessions: each holds only half. */
    HAMSISESSION s1 = NULL, s2 = NULL;
    assert_int_equal(AmsiOpenSession(ctx, &s1), AMSI_S_OK);
    assert_int_equal(AmsiOpenSession(ctx, &s2), AMSI_S_OK);
    assert_scan(ctx, s1, SPLIT_A, AMSI_RESULT_NOT_DETECTED);
    assert_scan(ctx, s2, SPLIT_B, AMSI_RESULT_NOT_DETECTED);
    assert_scan(ctx, s1, CLEAN_TEXT, AMSI_RESULT_NOT_DETECTED);
    AmsiCloseSession(ctx, s1);
    AmsiCloseSession(ctx, s2);

    /* A session's halves interleaved with unrelated scans without a session. */
    assert_int_equal(AmsiOpenSession(ctx, &s), AMSI_S_OK);
    assert_scan(ctx, s, SPLIT_A, AMSI_RESULT_NOT_DETECTED);
    assert_scan(ctx, NULL, SPLIT_B, AMSI_RESULT_NOT_DETECTED);
    assert_scan(ctx, s, SPLIT_B, AMSI_RESULT_DETECTED);
    AmsiCloseSession(ctx, s);

    /* UTF-16 halves in a session (AmsiScanString). */
    WCHAR wa[128], wb[128];
    to_wide(SPLIT_A, wa, 128);
    to_wide(SPLIT_B, wb, 128);
    assert_int_equal(AmsiOpenSession(ctx, &s), AMSI_S_OK);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanString(ctx, wa, u"w1", s, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanString(ctx, wb, u"w2", s, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    AmsiCloseSession(ctx, s);
    /* ... and the same halves as UTF-16 without a session stay clean. */
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanString(ctx, wa, u"w1", NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanString(ctx, wb, u"w2", NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);

    /* A UTF-8 half then a UTF-16 half: the stream sees one text. */
    assert_int_equal(AmsiOpenSession(ctx, &s), AMSI_S_OK);
    assert_scan(ctx, s, SPLIT_A, AMSI_RESULT_NOT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanString(ctx, wb, u"w2", s, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    AmsiCloseSession(ctx, s);
    AmsiUninitialize(ctx);
}

/* Session ids on raw connections: scoped to their connection, bounded per connection. */
static void test_sessions_raw_scope(void **state)
{
    group_state *g = *state;
    uint8_t frame[512], buf[AMSI_PROTO_MAX_REPLY];
    amsi_proto_reply rep;
    size_t len;
    int a = raw_connect(g->b.sock);
    int b = raw_connect(g->b.sock);
    assert_true(a >= 0);
    assert_true(b >= 0);

    /* Open a session on a and write the first half into it. */
    len = make_request(frame, sizeof(frame), AMSI_PROTO_SESSION_OPEN, 0, 1, 0, NULL, 0);
    assert_true(len > 0);
    assert_int_equal(raw_send(a, frame, len, NULL, 0, 0), (ssize_t)len);
    assert_int_equal(raw_recv_reply(a, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_OK);
    assert_int_equal(rep.request_id, 1);
    uint64_t sid = rep.session_id;
    assert_true(sid != 0);
    len = make_request(frame, sizeof(frame), AMSI_PROTO_SCAN, 0, 2, sid, SPLIT_A, strlen(SPLIT_A));
    assert_int_equal(raw_send(a, frame, len, NULL, 0, 0), (ssize_t)len);
    assert_int_equal(raw_recv_reply(a, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_OK);
    assert_int_equal(rep.amsi_result, AMSI_RESULT_NOT_DETECTED);
    assert_int_equal(rep.session_id, sid);

    /* The same id on connection b is no session there, for scans and for closing. */
    len = make_request(frame, sizeof(frame), AMSI_PROTO_SCAN, 0, 3, sid, SPLIT_B, strlen(SPLIT_B));
    assert_int_equal(raw_send(b, frame, len, NULL, 0, 0), (ssize_t)len);
    assert_int_equal(raw_recv_reply(b, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_NO_SESSION);
    assert_int_equal(rep.request_id, 3);
    assert_int_equal(rep.amsi_result, AMSI_RESULT_NOT_DETECTED);
    len = make_request(frame, sizeof(frame), AMSI_PROTO_SESSION_CLOSE, 0, 4, sid, NULL, 0);
    assert_int_equal(raw_send(b, frame, len, NULL, 0, 0), (ssize_t)len);
    assert_int_equal(raw_recv_reply(b, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_NO_SESSION);

    /* On a, the second half completes the signature. */
    len = make_request(frame, sizeof(frame), AMSI_PROTO_SCAN, 0, 5, sid, SPLIT_B, strlen(SPLIT_B));
    assert_int_equal(raw_send(a, frame, len, NULL, 0, 0), (ssize_t)len);
    assert_int_equal(raw_recv_reply(a, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_OK);
    assert_int_equal(rep.amsi_result, AMSI_RESULT_DETECTED);
    assert_int_equal(rep.rule_len, strlen(SPLIT_RULE));
    assert_memory_equal(rep.rule, SPLIT_RULE, strlen(SPLIT_RULE));

    /* A session id never opened, and closing twice. */
    len = make_request(frame, sizeof(frame), AMSI_PROTO_SCAN, 0, 6, 0xdeadbeefull, CLEAN_TEXT,
                       strlen(CLEAN_TEXT));
    assert_int_equal(raw_send(a, frame, len, NULL, 0, 0), (ssize_t)len);
    assert_int_equal(raw_recv_reply(a, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_NO_SESSION);
    len = make_request(frame, sizeof(frame), AMSI_PROTO_SESSION_CLOSE, 0, 7, sid, NULL, 0);
    assert_int_equal(raw_send(a, frame, len, NULL, 0, 0), (ssize_t)len);
    assert_int_equal(raw_recv_reply(a, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_OK);
    assert_int_equal(raw_send(a, frame, len, NULL, 0, 0), (ssize_t)len);
    assert_int_equal(raw_recv_reply(a, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_NO_SESSION);

    /* sessions_per_conn (default 64): the next one is refused until one closes. */
    uint64_t first = 0;
    for (uint64_t i = 0; i < 64; i++) {
        len = make_request(frame, sizeof(frame), AMSI_PROTO_SESSION_OPEN, 0, 100 + i, 0, NULL, 0);
        assert_int_equal(raw_send(b, frame, len, NULL, 0, 0), (ssize_t)len);
        assert_int_equal(raw_recv_reply(b, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
        assert_int_equal(rep.status, AMSI_PROTO_STATUS_OK);
        assert_true(rep.session_id != 0);
        if (i == 0)
            first = rep.session_id;
    }
    uint64_t open_now = 0;
    assert_true(broker_stat(&g->b, "sessions_open", &open_now));
    assert_int_equal(open_now, 64);
    len = make_request(frame, sizeof(frame), AMSI_PROTO_SESSION_OPEN, 0, 200, 0, NULL, 0);
    assert_int_equal(raw_send(b, frame, len, NULL, 0, 0), (ssize_t)len);
    assert_int_equal(raw_recv_reply(b, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_not_equal(rep.status, AMSI_PROTO_STATUS_OK);
    len = make_request(frame, sizeof(frame), AMSI_PROTO_SESSION_CLOSE, 0, 201, first, NULL, 0);
    assert_int_equal(raw_send(b, frame, len, NULL, 0, 0), (ssize_t)len);
    assert_int_equal(raw_recv_reply(b, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_OK);
    len = make_request(frame, sizeof(frame), AMSI_PROTO_SESSION_OPEN, 0, 202, 0, NULL, 0);
    assert_int_equal(raw_send(b, frame, len, NULL, 0, 0), (ssize_t)len);
    assert_int_equal(raw_recv_reply(b, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_OK);

    /* Closing the connections closes their sessions (the teardown checks sessions_open). */
    close(a);
    close(b);
}

/* ------------------------------------------------------------------------------------------ */
/* 3. Large content.                                                                           */

#define LARGE_LEN (300u * 1024u)

/* Content above the client's inline maximum travels as a sealed memfd. */
static void test_large_content_memfd(void **state)
{
    (void)state;
    HAMSICONTEXT ctx = open_context("amsid-test-memfd", NULL, "4096");
    assert_non_null(ctx);
    assert_null(getenv("AMSI_INLINE_MAX"));
    char *big = make_filler(LARGE_LEN, true);
    char *clean = make_filler(LARGE_LEN, false);
    assert_non_null(big);
    assert_non_null(clean);
    AMSI_RESULT r;
    AMSI_SCAN_INFO info;

    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBufferEx(ctx, big, LARGE_LEN, "big.ps1", NULL, 0, &r, &info),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    assert_string_equal(info.rule, "EICAR_Test_File");
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, clean, LARGE_LEN, u"clean.ps1", NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);

    /* Just above the inline maximum, EICAR at the end; and the same through a notification. */
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, big + LARGE_LEN - 5000, 5000, u"small", NULL, &r),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiNotifyOperation(ctx, big, LARGE_LEN, u"notify", &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);

    /* A memfd half in a session, then an inline half. */
    char *half = make_filler(8192, false);
    assert_non_null(half);
    memcpy(half + 8192 - strlen(SPLIT_A), SPLIT_A, strlen(SPLIT_A));
    HAMSISESSION s = NULL;
    assert_int_equal(AmsiOpenSession(ctx, &s), AMSI_S_OK);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, half, 8192, u"half1", s, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    assert_scan(ctx, s, SPLIT_B, AMSI_RESULT_DETECTED);
    AmsiCloseSession(ctx, s);

    /* Many in a row: the broker unmaps and closes each (the teardown counts its descriptors). */
    for (int i = 0; i < 20; i++) {
        r = (AMSI_RESULT)0x1234;
        assert_int_equal(AmsiScanBuffer(ctx, (i & 1) ? big : clean, LARGE_LEN, u"loop", NULL, &r),
                         AMSI_S_OK);
        assert_int_equal(r, (i & 1) ? AMSI_RESULT_DETECTED : AMSI_RESULT_NOT_DETECTED);
    }
    free(half);
    free(big);
    free(clean);
    AmsiUninitialize(ctx);
}

/* Large content inline (the default 1 MiB inline maximum): the broker's pool lane. */
static void test_large_content_inline(void **state)
{
    (void)state;
    HAMSICONTEXT ctx = open_context("amsid-test-inline", NULL, NULL);
    assert_non_null(ctx);
    AMSI_RESULT r;
    const size_t mib = 1u << 20;
    char *big = make_filler(mib + 1, true);
    char *clean = make_filler(mib, false);
    assert_non_null(big);
    assert_non_null(clean);

    /* 300 KiB inline, EICAR at the end. */
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, big + mib + 1 - LARGE_LEN, LARGE_LEN, u"b", NULL, &r),
                     AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    /* Exactly the inline maximum (still inline), then one byte more (a memfd). */
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, big + 1, (ULONG)mib, u"b", NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, big, (ULONG)(mib + 1), u"b", NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, clean, (ULONG)mib, u"c", NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    free(big);
    free(clean);
    AmsiUninitialize(ctx);
}

/* ------------------------------------------------------------------------------------------ */
/* 4. Malformed frames.                                                                        */

typedef struct bad_frame {
    const char *what;
    uint8_t frame[256];
    size_t len;
    uint32_t status;     /* the reply's status */
    uint64_t request_id; /* the reply's request id (0: the frame has none), UINT64_MAX: any */
    bool reply_optional; /* a close without a reply is as good */
} bad_frame;

/* Fills the malformed-frame cases. Returns how many. */
static size_t make_bad_frames(bad_frame *c, size_t cap)
{
    size_t n = 0;
    uint8_t ping[256], scan[256];
    size_t ping_len = make_request(ping, sizeof(ping), AMSI_PROTO_PING, 0, 77, 0, NULL, 0);
    size_t scan_len =
        make_request(scan, sizeof(scan), AMSI_PROTO_SCAN, 0, 78, 0, CLEAN_TEXT, strlen(CLEAN_TEXT));
    if (ping_len == 0 || scan_len == 0 || cap < 16)
        return 0;
#define CASE(text, st, id)                                                                         \
    (c[n] = (bad_frame){.what = (text), .status = (st), .request_id = (id)}, &c[n++])
    bad_frame *f;

    f = CASE("garbage bytes", AMSI_PROTO_STATUS_BAD_REQUEST, UINT64_MAX);
    for (size_t i = 0; i < 64; i++)
        f->frame[i] = (uint8_t)(0xA5 ^ (i * 37));
    f->len = 64;

    f = CASE("a 10-byte frame", AMSI_PROTO_STATUS_BAD_REQUEST, 0);
    memcpy(f->frame, ping, 10);
    f->len = 10;

    f = CASE("a 2-byte frame", AMSI_PROTO_STATUS_BAD_REQUEST, 0);
    memcpy(f->frame, ping, 2);
    f->len = 2;

    f = CASE("an empty frame", AMSI_PROTO_STATUS_BAD_REQUEST, UINT64_MAX);
    f->len = 0;
    f->reply_optional = true; /* a zero-length message reads like an orderly close */

    f = CASE("wrong magic", AMSI_PROTO_STATUS_BAD_REQUEST, UINT64_MAX);
    memcpy(f->frame, ping, ping_len);
    memcpy(f->frame, "XXXX", 4);
    f->len = ping_len;

    f = CASE("version 2", AMSI_PROTO_STATUS_UNSUPPORTED_VERSION, 0x1122334455667788ull);
    memcpy(f->frame, ping, ping_len);
    put_le16(f->frame + 4, 2);
    put_le64(f->frame + 16, 0x1122334455667788ull);
    f->len = ping_len;

    f = CASE("version 0, only 24 bytes", AMSI_PROTO_STATUS_UNSUPPORTED_VERSION, 0x99ull);
    memcpy(f->frame, ping, 24);
    put_le16(f->frame + 4, 0);
    put_le64(f->frame + 16, 0x99ull);
    f->len = 24;

    f = CASE("app_len larger than the frame", AMSI_PROTO_STATUS_BAD_REQUEST, 78);
    memcpy(f->frame, scan, scan_len);
    put_le32(f->frame + 32, 1000);
    f->len = scan_len;

    f = CASE("name_len above its bound", AMSI_PROTO_STATUS_BAD_REQUEST, 78);
    memcpy(f->frame, scan, scan_len);
    put_le32(f->frame + 36, 0xFFFFFFF0u);
    f->len = scan_len;

    f = CASE("content_len 2^63", AMSI_PROTO_STATUS_BAD_REQUEST, 78);
    memcpy(f->frame, scan, scan_len);
    put_le64(f->frame + 40, 1ull << 63);
    f->len = scan_len;

    f = CASE("trailing bytes", AMSI_PROTO_STATUS_BAD_REQUEST, 78);
    memcpy(f->frame, scan, scan_len);
    put_le64(f->frame + 40, strlen(CLEAN_TEXT) - 5);
    f->len = scan_len;

    f = CASE("unknown flag bit", AMSI_PROTO_STATUS_BAD_REQUEST, 78);
    memcpy(f->frame, scan, scan_len);
    put_le32(f->frame + 8, 0x80u);
    f->len = scan_len;

    f = CASE("header_len 64", AMSI_PROTO_STATUS_BAD_REQUEST, 77);
    memcpy(f->frame, ping, ping_len);
    put_le32(f->frame + 12, 64);
    f->len = ping_len;

    f = CASE("unknown type 9", AMSI_PROTO_STATUS_BAD_REQUEST, 77);
    memcpy(f->frame, ping, ping_len);
    put_le16(f->frame + 6, 9);
    f->len = ping_len;

    f = CASE("a reply sent as a request", AMSI_PROTO_STATUS_BAD_REQUEST, 77);
    memcpy(f->frame, ping, ping_len);
    put_le16(f->frame + 6, AMSI_PROTO_REPLY);
    f->len = ping_len;

    f = CASE("a ping with content", AMSI_PROTO_STATUS_BAD_REQUEST, 77);
    memcpy(f->frame, ping, ping_len);
    memcpy(f->frame + ping_len, "abcd", 4);
    put_le64(f->frame + 40, 4);
    f->len = ping_len + 4;
#undef CASE
    return n;
}

static void test_malformed_frames(void **state)
{
    group_state *g = *state;
    bad_frame cases[32];
    size_t n = make_bad_frames(cases, 32);
    assert_true(n >= 10);
    HAMSICONTEXT ctx = open_context("amsid-test-malformed", NULL, NULL);
    assert_non_null(ctx);
    uint64_t bad_before = 0, bad_after = 0;
    assert_true(broker_stat(&g->b, "bad_requests", &bad_before));

    for (size_t i = 0; i < n; i++) {
        uint32_t status = UINT32_MAX;
        uint64_t id = UINT64_MAX;
        bool closed = false;
        int rc =
            raw_exchange(g->b.sock, cases[i].frame, cases[i].len, NULL, 0, &status, &id, &closed);
        if (rc == RAW_EOF && cases[i].reply_optional) {
            rc = RAW_REPLY; /* closed without a word: as good as the reply */
            status = cases[i].status;
            id = cases[i].request_id;
        }
        if (rc != RAW_REPLY)
            fail_msg("%s: no reply (outcome %d)", cases[i].what, rc);
        if (status != cases[i].status)
            fail_msg("%s: status %s, expected %s", cases[i].what, amsi_proto_status_name(status),
                     amsi_proto_status_name(cases[i].status));
        if (cases[i].request_id != UINT64_MAX && id != cases[i].request_id)
            fail_msg("%s: reply for request %llu, expected %llu", cases[i].what,
                     (unsigned long long)id, (unsigned long long)cases[i].request_id);
        if (!closed)
            fail_msg("%s: the broker kept the connection open", cases[i].what);
        /* Other clients are unaffected. */
        assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
    }
    assert_true(broker_stat(&g->b, "bad_requests", &bad_after));
    assert_true(bad_after >= bad_before + n - 1);

    /* Several bad frames on one connection before it is read: the first reply, then the end. */
    int fd = raw_connect(g->b.sock);
    assert_true(fd >= 0);
    assert_int_equal(raw_send(fd, cases[0].frame, cases[0].len, NULL, 0, 0), (ssize_t)cases[0].len);
    raw_send(fd, cases[4].frame, cases[4].len, NULL, 0, MSG_DONTWAIT);
    uint8_t buf[AMSI_PROTO_MAX_REPLY];
    amsi_proto_reply rep;
    assert_int_equal(raw_recv_reply(fd, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_BAD_REQUEST);
    assert_true(raw_peer_closed(fd, REPLY_TIMEOUT_MS));
    close(fd);

    assert_scan(ctx, NULL, CLEAN_TEXT, AMSI_RESULT_NOT_DETECTED);
    AmsiUninitialize(ctx);
}

/* Sends a memfd-flagged scan of claimed length len with the given descriptors; returns the reply
 * status (UINT32_MAX when there was none) and checks the request id. */
static uint32_t memfd_exchange(int fd, uint64_t id, uint64_t len, const int *fds, size_t nfds,
                               uint32_t *amsi_result)
{
    uint8_t frame[512], buf[AMSI_PROTO_MAX_REPLY];
    amsi_proto_reply rep;
    size_t flen =
        make_request(frame, sizeof(frame), AMSI_PROTO_SCAN, AMSI_PROTO_F_MEMFD, id, 0, NULL, len);
    if (flen == 0 || raw_send(fd, frame, flen, fds, nfds, 0) != (ssize_t)flen)
        return UINT32_MAX;
    if (raw_recv_reply(fd, buf, &rep, REPLY_TIMEOUT_MS) != RAW_REPLY || rep.request_id != id)
        return UINT32_MAX;
    *amsi_result = rep.amsi_result;
    return rep.status;
}

static void test_memfd_requests(void **state)
{
    group_state *g = *state;
    char *data = make_filler(64 * 1024, true);
    assert_non_null(data);
    const size_t len = 64 * 1024;
    int sealed = make_memfd(data, len, ALL_SEALS);
    int unsealed = make_memfd(data, len, 0);
    int no_write_seal = make_memfd(data, len, F_SEAL_SHRINK | F_SEAL_GROW);
    int p[2];
    assert_true(sealed >= 0);
    assert_true(unsealed >= 0);
    assert_true(no_write_seal >= 0);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    uint32_t res = 0;
    int fd;

    /* The MEMFD flag without a descriptor. */
    fd = raw_connect(g->b.sock);
    assert_true(fd >= 0);
    assert_int_equal(memfd_exchange(fd, 11, len, NULL, 0, &res), AMSI_PROTO_STATUS_BAD_REQUEST);
    assert_int_equal(res, AMSI_RESULT_NOT_DETECTED);
    close(fd);
    /* An unsealed memfd, one without F_SEAL_WRITE, a pipe, a size that is not the memfd's. */
    fd = raw_connect(g->b.sock);
    assert_true(fd >= 0);
    assert_int_equal(memfd_exchange(fd, 12, len, &unsealed, 1, &res),
                     AMSI_PROTO_STATUS_BAD_REQUEST);
    close(fd);
    fd = raw_connect(g->b.sock);
    assert_true(fd >= 0);
    assert_int_equal(memfd_exchange(fd, 13, len, &no_write_seal, 1, &res),
                     AMSI_PROTO_STATUS_BAD_REQUEST);
    close(fd);
    fd = raw_connect(g->b.sock);
    assert_true(fd >= 0);
    assert_int_equal(memfd_exchange(fd, 14, len, &p[0], 1, &res), AMSI_PROTO_STATUS_BAD_REQUEST);
    close(fd);
    fd = raw_connect(g->b.sock);
    assert_true(fd >= 0);
    assert_int_equal(memfd_exchange(fd, 15, len + 1, &sealed, 1, &res),
                     AMSI_PROTO_STATUS_BAD_REQUEST);
    close(fd);
    fd = raw_connect(g->b.sock);
    assert_true(fd >= 0);
    assert_int_equal(memfd_exchange(fd, 16, len - 1, &sealed, 1, &res),
                     AMSI_PROTO_STATUS_BAD_REQUEST);
    close(fd);

    /* A sealed memfd scans; extra descriptors are ignored (and closed: see the teardown). */
    fd = raw_connect(g->b.sock);
    assert_true(fd >= 0);
    res = 0;
    assert_int_equal(memfd_exchange(fd, 17, len, &sealed, 1, &res), AMSI_PROTO_STATUS_OK);
    assert_int_equal(res, AMSI_RESULT_DETECTED);
    int three[3] = {sealed, unsealed, p[1]};
    res = 0;
    assert_int_equal(memfd_exchange(fd, 18, len, three, 3, &res), AMSI_PROTO_STATUS_OK);
    assert_int_equal(res, AMSI_RESULT_DETECTED);
    /* A descriptor on a request without the flag is dropped too. */
    uint8_t frame[512], buf[AMSI_PROTO_MAX_REPLY];
    amsi_proto_reply rep;
    size_t flen = make_request(frame, sizeof(frame), AMSI_PROTO_PING, 0, 19, 0, NULL, 0);
    assert_int_equal(raw_send(fd, frame, flen, &sealed, 1, 0), (ssize_t)flen);
    assert_int_equal(raw_recv_reply(fd, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_OK);
    assert_int_equal(rep.request_id, 19);
    close(fd);

    close(sealed);
    close(unsealed);
    close(no_write_seal);
    close(p[0]);
    close(p[1]);
    free(data);

    HAMSICONTEXT ctx = open_context("amsid-test-memfd-after", NULL, NULL);
    assert_non_null(ctx);
    assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
    AmsiUninitialize(ctx);
}

/* Pipelined requests of every type on one connection, then a half close: every request is
 * answered, in order, before the broker ends the connection. */
static void test_pipelined_then_half_close(void **state)
{
    group_state *g = *state;
    enum { N = 40 };
    int fd = raw_connect(g->b.sock);
    assert_true(fd >= 0);
    uint8_t frame[512];
    uint32_t want_result[N + 1];
    for (uint64_t id = 1; id <= N; id++) {
        size_t len;
        switch (id % 5) {
        case 0:
            len = make_request(frame, sizeof(frame), AMSI_PROTO_PING, 0, id, 0, NULL, 0);
            want_result[id] = AMSI_RESULT_NOT_DETECTED;
            break;
        case 1:
            len =
                make_request(frame, sizeof(frame), AMSI_PROTO_SCAN, 0, id, 0, EICAR, strlen(EICAR));
            want_result[id] = AMSI_RESULT_DETECTED;
            break;
        case 2:
            len = make_request(frame, sizeof(frame), AMSI_PROTO_NOTIFY, 0, id, 0, CLEAN_TEXT,
                               strlen(CLEAN_TEXT));
            want_result[id] = AMSI_RESULT_NOT_DETECTED;
            break;
        case 3:
            len = make_request(frame, sizeof(frame), AMSI_PROTO_SESSION_OPEN, 0, id, 0, NULL, 0);
            want_result[id] = AMSI_RESULT_NOT_DETECTED;
            break;
        default:
            len = make_request(frame, sizeof(frame), AMSI_PROTO_NOTIFY, 0, id, 0, EICAR,
                               strlen(EICAR));
            want_result[id] = AMSI_RESULT_DETECTED;
            break;
        }
        assert_true(len > 0);
        assert_int_equal(raw_send(fd, frame, len, NULL, 0, 0), (ssize_t)len);
    }
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    for (uint64_t id = 1; id <= N; id++) {
        uint8_t buf[AMSI_PROTO_MAX_REPLY];
        amsi_proto_reply rep;
        int rc = raw_recv_reply(fd, buf, &rep, REPLY_TIMEOUT_MS);
        if (rc != RAW_REPLY)
            fail_msg("request %llu: no reply (outcome %d)", (unsigned long long)id, rc);
        assert_int_equal(rep.request_id, id);
        assert_int_equal(rep.status, AMSI_PROTO_STATUS_OK);
        assert_int_equal(rep.amsi_result, want_result[id]);
        if (id % 5 == 3)
            assert_true(rep.session_id != 0);
    }
    assert_true(raw_peer_closed(fd, REPLY_TIMEOUT_MS));
    close(fd);
}

/* ------------------------------------------------------------------------------------------ */
/* 5. Clients that do not play along.                                                          */

#define FLOOD_PINGS   500
#define FLOOD_TIME_MS 8000
#define DRAIN_IDLE_MS 3000

static void test_idle_and_non_reading_clients(void **state)
{
    group_state *g = *state;
    HAMSICONTEXT ctx = open_context("amsid-test-bystander", NULL, NULL);
    assert_non_null(ctx);
    int idle = raw_connect(g->b.sock);
    int flood = raw_connect(g->b.sock);
    assert_true(idle >= 0);
    assert_true(flood >= 0);
    assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);

    /* The flooder sends PINGs and never reads; a bystander scans all along. */
    unsigned scans = 0, scans_ok = 0, sent = 0;
    bool send_failed = false;
    int64_t deadline = now_ms() + FLOOD_TIME_MS;
    uint8_t frame[256];
    while (sent < FLOOD_PINGS && !send_failed && now_ms() < deadline) {
        size_t len = make_request(frame, sizeof(frame), AMSI_PROTO_PING, 0, sent + 1, 0, NULL, 0);
        ssize_t n = raw_send(flood, frame, len, NULL, 0, MSG_DONTWAIT);
        if (n == (ssize_t)len) {
            sent++;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd p = {.fd = flood, .events = POLLOUT};
            poll(&p, 1, 50);
        } else {
            send_failed = true; /* EPIPE / ECONNRESET: the broker dropped it */
        }
        if (sent % 25 == 0 || n < 0) {
            scans++;
            scans_ok += scan_is(ctx, NULL, (scans & 1) ? EICAR : CLEAN_TEXT,
                                (scans & 1) ? AMSI_RESULT_DETECTED : AMSI_RESULT_NOT_DETECTED);
        }
    }
    /* The flooder now reads nothing for longer than the broker's stall limit (5 s): the broker
     * stops reading its requests at once (backpressure), then drops it. Bystanders go on. */
    int64_t quiet_until = now_ms() + 7000;
    while (now_ms() < quiet_until) {
        scans++;
        scans_ok += scan_is(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
        usleep(20000);
    }

    /* When the flooder finally reads: its replies, then the end of the connection. */
    unsigned replies = 0, bad_replies = 0;
    bool eof = false;
    for (;;) {
        uint8_t buf[AMSI_PROTO_MAX_REPLY];
        amsi_proto_reply rep;
        int rc = raw_recv_reply(flood, buf, &rep, DRAIN_IDLE_MS);
        if (rc == RAW_REPLY) {
            replies++;
            bad_replies += rep.status != AMSI_PROTO_STATUS_OK || rep.request_id != replies;
            continue;
        }
        eof = rc == RAW_EOF;
        break;
    }
    close(flood);
    print_message("  flooder: %u of %d pings sent, %u replies read, send failed %d, eof %d\n", sent,
                  FLOOD_PINGS, replies, send_failed, eof);

    /* The idle client did not stop anyone either. */
    assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
    close(idle);
    AmsiUninitialize(ctx);

    assert_int_equal(scans_ok, scans);
    assert_int_equal(bad_replies, 0);
    assert_true(replies <= sent);
    /* The broker must not keep a client that stopped reading: it disconnects it. */
    assert_true(send_failed || eof);
}

/* ------------------------------------------------------------------------------------------ */
/* 6. Clients killed mid-scan.                                                                 */

/* Child: connects, sends one 1 MiB memfd scan; then exits, or tells the parent and waits to be
 * killed. Exit codes: 0 fine, 10+ a failed step. */
static void child_memfd_scan(const char *sock, int ready_fd, bool wait_for_kill)
{
    const size_t len = 1u << 20;
    int fd = raw_connect(sock);
    if (fd < 0)
        _exit(10);
    char *data = make_filler(len, true);
    if (data == NULL)
        _exit(11);
    int mfd = make_memfd(data, len, ALL_SEALS);
    if (mfd < 0)
        _exit(12);
    uint8_t frame[256];
    size_t flen =
        make_request(frame, sizeof(frame), AMSI_PROTO_SCAN, AMSI_PROTO_F_MEMFD, 1, 0, NULL, len);
    if (flen == 0 || raw_send(fd, frame, flen, &mfd, 1, 0) != (ssize_t)flen)
        _exit(13);
    if (ready_fd >= 0 && write(ready_fd, "r", 1) != 1)
        _exit(14);
    if (wait_for_kill)
        for (;;)
            pause();
    _exit(0);
}

/* Child: pipelines as many scans as the socket takes at once (300 KiB memfds for the pool lane,
 * 100 KiB inline for the inline lane), then exits without reading. */
static void child_pipelined_scans(const char *sock)
{
    int fd = raw_connect(sock);
    if (fd < 0)
        _exit(10);
    char *data = make_filler(LARGE_LEN, true);
    uint8_t *frame = malloc(LARGE_LEN + 512);
    if (data == NULL || frame == NULL)
        _exit(11);
    int mfd = make_memfd(data, LARGE_LEN, ALL_SEALS);
    if (mfd < 0)
        _exit(12);
    int sent = 0;
    for (uint64_t id = 1; id <= 32; id++) {
        bool big = id & 1;
        size_t flen = big ? make_request(frame, 512, AMSI_PROTO_SCAN, AMSI_PROTO_F_MEMFD, id, 0,
                                         NULL, LARGE_LEN)
                          : make_request(frame, LARGE_LEN + 512, AMSI_PROTO_SCAN, 0, id, 0,
                                         data + LARGE_LEN - 100 * 1024, 100 * 1024);
        if (raw_send(fd, frame, flen, &mfd, big ? 1 : 0, MSG_DONTWAIT) != (ssize_t)flen)
            break;
        sent++;
    }
    _exit(sent > 0 ? 0 : 13);
}

/* Child: scans 1 MiB buffers through libamsi (in a session too) until it is killed. */
static void child_libamsi_loop(int ready_fd)
{
    HAMSICONTEXT ctx = open_context("amsid-test-victim", NULL, NULL);
    char *data = make_filler((1u << 20) + 1, true);
    if (ctx == NULL || data == NULL)
        _exit(10);
    HAMSISESSION s = NULL;
    AmsiOpenSession(ctx, &s);
    AMSI_RESULT r;
    AmsiScanBufferA(ctx, SPLIT_A, strlen(SPLIT_A), "half", s, &r);
    if (write(ready_fd, "r", 1) != 1)
        _exit(11);
    for (unsigned i = 0;; i++)
        AmsiScanBufferA(ctx, data, (1u << 20) + (i & 1), "victim", (i & 2) ? s : NULL, &r);
}

/* Waits for one byte on fd (a child saying it is ready). */
static bool wait_ready_byte(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c;
    return poll(&p, 1, REPLY_TIMEOUT_MS) == 1 && read(fd, &c, 1) == 1;
}

static void test_client_killed_mid_scan(void **state)
{
    group_state *g = *state;
    uint64_t open0 = 0, sessions0 = 0;
    assert_true(wait_stat(&g->b, "open_connections", 0, SETTLE_MS));
    assert_true(broker_stat(&g->b, "open_connections", &open0));
    assert_true(broker_stat(&g->b, "sessions_open", &sessions0));
    int st;

    /* A child sends a 1 MiB scan and exits without reading. */
    for (int i = 0; i < 3; i++) {
        pid_t pid = fork_helper();
        assert_true(pid >= 0);
        if (pid == 0)
            child_memfd_scan(g->b.sock, -1, false);
        assert_true(reap_helper(pid, REPLY_TIMEOUT_MS, &st));
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }

    /* kill -9 once the request is sent, and kill -9 in the middle of libamsi calls. */
    for (int variant = 0; variant < 4; variant++) {
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        pid_t pid = fork_helper();
        if (pid == 0) {
            if (variant < 2)
                child_memfd_scan(g->b.sock, p[1], true);
            child_libamsi_loop(p[1]);
        }
        close(p[1]);
        bool ready = pid > 0 && wait_ready_byte(p[0]);
        close(p[0]);
        if (pid > 0 && ready && variant >= 2)
            sleep_ms(20 + 40 * (variant - 2)); /* well inside the scans */
        if (pid > 0) {
            kill(pid, SIGKILL);
            assert_true(reap_helper(pid, REPLY_TIMEOUT_MS, &st));
            assert_true(WIFSIGNALED(st));
            assert_int_equal(WTERMSIG(st), SIGKILL);
        }
        assert_true(pid > 0);
        assert_true(ready);
    }

    /* Pipelined inline scans, then exit. */
    pid_t pid = fork_helper();
    assert_true(pid >= 0);
    if (pid == 0)
        child_pipelined_scans(g->b.sock);
    assert_true(reap_helper(pid, REPLY_TIMEOUT_MS, &st));
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);

    /* The broker lives on: amsictl ping, connections and sessions back to the baseline. */
    char out[256];
    assert_int_equal(amsictl(&g->b, "ping", out, sizeof(out)), 0);
    assert_string_equal(out, "pong\n");
    assert_true(wait_stat(&g->b, "open_connections", open0, SETTLE_MS));
    assert_true(wait_stat(&g->b, "sessions_open", sessions0, SETTLE_MS));
    HAMSICONTEXT ctx = open_context("amsid-test-after-kill", NULL, NULL);
    assert_non_null(ctx);
    assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
    AmsiUninitialize(ctx);
}

/* ------------------------------------------------------------------------------------------ */
/* 8. A thousand connections.                                                                  */

#define MANY_CONNS 1000

static void test_thousand_connections(void **state)
{
    group_state *g = *state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 1100) {
        print_message("  skipped: RLIMIT_NOFILE hard limit %llu < 1100\n",
                      (unsigned long long)rl.rlim_max);
        skip();
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    int *fds = calloc(MANY_CONNS, sizeof(int));
    assert_non_null(fds);
    int opened = 0, sent = 0, ok = 0;
    for (int i = 0; i < MANY_CONNS; i++) {
        fds[i] = raw_connect(g->b.sock);
        if (fds[i] < 0)
            break;
        opened++;
    }
    uint8_t frame[256];
    for (int i = 0; i < opened; i++) {
        size_t len =
            make_request(frame, sizeof(frame), AMSI_PROTO_PING, 0, (uint64_t)i + 1, 0, NULL, 0);
        sent += raw_send(fds[i], frame, len, NULL, 0, 0) == (ssize_t)len;
    }
    for (int i = 0; i < opened; i++) {
        uint8_t buf[AMSI_PROTO_MAX_REPLY];
        amsi_proto_reply rep;
        ok += raw_recv_reply(fds[i], buf, &rep, REPLY_TIMEOUT_MS) == RAW_REPLY &&
              rep.status == AMSI_PROTO_STATUS_OK && rep.request_id == (uint64_t)i + 1;
    }
    bool all_open = wait_stat(&g->b, "open_connections", (uint64_t)opened, SETTLE_MS);
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    free(fds);
    assert_int_equal(opened, MANY_CONNS);
    assert_int_equal(sent, MANY_CONNS);
    assert_int_equal(ok, MANY_CONNS);
    assert_true(all_open);
    assert_true(wait_stat(&g->b, "open_connections", 0, SETTLE_MS));
}

/* ------------------------------------------------------------------------------------------ */
/* 9. Many threads on one context.                                                             */

#define THREADS          8
#define SCANS_PER_THREAD 300

typedef struct thread_job {
    HAMSICONTEXT ctx;
    unsigned index;
    unsigned scans, wrong;
    unsigned session_wrong;
} thread_job;

static void *many_threads_main(void *arg)
{
    thread_job *j = arg;
    char name[32];
    snprintf(name, sizeof(name), "thread-%u", j->index);
    for (unsigned i = 0; i < SCANS_PER_THREAD; i++) {
        bool bad = (i + j->index) % 3 == 0;
        AMSI_RESULT want = bad ? AMSI_RESULT_DETECTED : AMSI_RESULT_NOT_DETECTED;
        AMSI_RESULT r = (AMSI_RESULT)0x1234;
        HRESULT hr;
        if (i % 50 == 7) {
            want = AMSI_RESULT_DETECTED;
            hr = AmsiScanString(j->ctx, u"" AMSI_SAMPLE, u"t", NULL, &r);
        } else if (bad) {
            hr = AmsiScanBufferA(j->ctx, EICAR, strlen(EICAR), name, NULL, &r);
        } else {
            hr = AmsiScanBufferA(j->ctx, CLEAN_TEXT, strlen(CLEAN_TEXT), name, NULL, &r);
        }
        j->scans++;
        j->wrong += hr != AMSI_S_OK || r != want;
    }
    /* One session per thread: clean blocks, then the split signature. */
    HAMSISESSION s = NULL;
    if (AmsiOpenSession(j->ctx, &s) != AMSI_S_OK) {
        j->session_wrong++;
        return NULL;
    }
    for (int i = 0; i < 10; i++)
        j->session_wrong += !scan_is(j->ctx, s, CLEAN_TEXT, AMSI_RESULT_NOT_DETECTED);
    j->session_wrong += !scan_is(j->ctx, s, SPLIT_A, AMSI_RESULT_NOT_DETECTED);
    j->session_wrong += !scan_is(j->ctx, s, SPLIT_B, AMSI_RESULT_DETECTED);
    AmsiCloseSession(j->ctx, s);
    return NULL;
}

static void test_many_threads_one_context(void **state)
{
    (void)state;
    HAMSICONTEXT ctx = open_context("amsid-test-threads", NULL, NULL);
    assert_non_null(ctx);
    thread_job jobs[THREADS];
    pthread_t th[THREADS];
    bool started[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        jobs[i] = (thread_job){.ctx = ctx, .index = i};
        started[i] = pthread_create(&th[i], NULL, many_threads_main, &jobs[i]) == 0;
    }
    unsigned scans = 0, wrong = 0, session_wrong = 0, nstarted = 0;
    for (unsigned i = 0; i < THREADS; i++) {
        if (!started[i])
            continue;
        pthread_join(th[i], NULL);
        nstarted++;
        scans += jobs[i].scans;
        wrong += jobs[i].wrong;
        session_wrong += jobs[i].session_wrong;
    }
    AmsiUninitialize(ctx);
    assert_int_equal(nstarted, THREADS);
    assert_int_equal(scans, THREADS * SCANS_PER_THREAD);
    assert_int_equal(wrong, 0);
    assert_int_equal(session_wrong, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* 10. Reload under load.                                                                      */

typedef struct scan_loop {
    HAMSICONTEXT ctx;
    atomic_bool *stop;
    unsigned index;
    unsigned scans, wrong;
} scan_loop;

static void *scan_loop_main(void *arg)
{
    scan_loop *l = arg;
    for (unsigned i = 0; !atomic_load_explicit(l->stop, memory_order_acquire); i++) {
        bool bad = (i + l->index) & 1;
        l->scans++;
        l->wrong += !scan_is(l->ctx, NULL, bad ? EICAR : CLEAN_TEXT,
                             bad ? AMSI_RESULT_DETECTED : AMSI_RESULT_NOT_DETECTED);
    }
    return NULL;
}

#define LOAD_THREADS 4

static void test_reload_under_load(void **state)
{
    group_state *g = *state;
    uint64_t gen0 = 0, gen1 = 0, reloads0 = 0, reloads1 = 0;
    assert_true(broker_stat(&g->b, "generation", &gen0));
    assert_true(broker_stat(&g->b, "reloads", &reloads0));
    HAMSICONTEXT ctx = open_context("amsid-test-reload", NULL, NULL);
    assert_non_null(ctx);
    atomic_bool stop;
    atomic_init(&stop, false);
    scan_loop loops[LOAD_THREADS];
    pthread_t th[LOAD_THREADS];
    bool started[LOAD_THREADS];
    for (unsigned i = 0; i < LOAD_THREADS; i++) {
        loops[i] = (scan_loop){.ctx = ctx, .stop = &stop, .index = i};
        started[i] = pthread_create(&th[i], NULL, scan_loop_main, &loops[i]) == 0;
    }

    /* Nothing is asserted while the threads run: a failed assertion would leave them behind. */
    int ctl_failures = 0, hup_failures = 0;
    char out[512];
    for (int i = 0; i < 5; i++) {
        int rc = amsictl(&g->b, "reload", out, sizeof(out));
        if (rc != 0 || strncmp(out, "reloaded:", 9) != 0) {
            fprintf(stderr, "amsictl reload: exit %d, '%s'\n", rc, out);
            ctl_failures++;
        }
    }
    for (int i = 0; i < 3; i++) {
        uint64_t before = 0;
        if (!broker_stat(&g->b, "generation", &before) || kill(g->b.pid, SIGHUP) != 0 ||
            !wait_stat(&g->b, "generation", before + 1, 120000))
            hup_failures++;
    }
    atomic_store_explicit(&stop, true, memory_order_release);
    unsigned scans = 0, wrong = 0, nstarted = 0;
    for (unsigned i = 0; i < LOAD_THREADS; i++) {
        if (!started[i])
            continue;
        pthread_join(th[i], NULL);
        nstarted++;
        scans += loops[i].scans;
        wrong += loops[i].wrong;
    }
    AmsiUninitialize(ctx);
    print_message("  %u scans during 8 reloads\n", scans);

    assert_int_equal(nstarted, LOAD_THREADS);
    assert_int_equal(ctl_failures, 0);
    assert_int_equal(hup_failures, 0);
    assert_true(scans > 0);
    assert_int_equal(wrong, 0);
    assert_true(broker_stat(&g->b, "generation", &gen1));
    assert_true(broker_stat(&g->b, "reloads", &reloads1));
    assert_int_equal(gen1, gen0 + 8);
    assert_int_equal(reloads1, reloads0 + 8);
    /* The reloaded rules still hold the test rule. */
    ctx = open_context("amsid-test-reload-after", NULL, NULL);
    assert_non_null(ctx);
    assert_scan(ctx, NULL, SPLIT_A SPLIT_B, AMSI_RESULT_DETECTED);
    AmsiUninitialize(ctx);
}

/* ------------------------------------------------------------------------------------------ */
/* 11. The declared application name changes nothing.                                          */

static void test_declared_identity_ignored(void **state)
{
    (void)state;
    HAMSICONTEXT ps = NULL, evil = NULL;
    assert_int_equal(AmsiInitialize(u"powershell", &ps), AMSI_S_OK);
    assert_int_equal(AmsiInitialize(u"evil", &evil), AMSI_S_OK);
    static const char *const contents[] = {EICAR,   CLEAN_TEXT,      AMSI_SAMPLE, SPLIT_A,
                                           SPLIT_B, SPLIT_A SPLIT_B, ""};
    for (size_t i = 0; i < sizeof(contents) / sizeof(contents[0]); i++) {
        for (int notify = 0; notify < 2; notify++) {
            AMSI_RESULT r1 = (AMSI_RESULT)0x1234, r2 = (AMSI_RESULT)0x4321;
            AMSI_SCAN_INFO i1, i2;
            HRESULT h1, h2;
            if (notify) {
                char buf[256];
                memcpy(buf, contents[i], strlen(contents[i]) + 1);
                h1 = AmsiNotifyOperation(ps, buf, (ULONG)strlen(buf), u"n", &r1);
                h2 = AmsiNotifyOperation(evil, buf, (ULONG)strlen(buf), u"n", &r2);
                assert_int_equal(h1, AMSI_S_OK);
                assert_int_equal(h2, AMSI_S_OK);
                assert_int_equal(r1, r2);
                continue;
            }
            h1 = AmsiScanBufferEx(ps, contents[i], strlen(contents[i]), "x", NULL, 0, &r1, &i1);
            h2 = AmsiScanBufferEx(evil, contents[i], strlen(contents[i]), "x", NULL, 0, &r2, &i2);
            assert_int_equal(h1, AMSI_S_OK);
            assert_int_equal(h2, AMSI_S_OK);
            assert_int_equal(r1, r2);
            assert_int_equal(i1.status, i2.status);
            assert_string_equal(i1.rule, i2.rule);
            assert_string_equal(i1.object, i2.object);
            assert_string_equal(i1.reason, i2.reason);
        }
    }
    assert_scan(evil, NULL, EICAR, AMSI_RESULT_DETECTED);
    assert_scan(ps, NULL, EICAR, AMSI_RESULT_DETECTED);
    AmsiUninitialize(ps);
    AmsiUninitialize(evil);
}

/* ------------------------------------------------------------------------------------------ */
/* 12. amsictl.                                                                                */

/* ------------------------------------------------------------------------------------------ */
/* Request limits (DESIGN.md §4b), from several processes.                                     */

typedef struct flood_result {
    unsigned long long sent, accepted, declined, blocked, errors, elapsed_us, retry_ms;
} flood_result;

/* Starts a copy of amsi_flood with its report going to out. Returns its pid, or -1. */
static pid_t flood_start(const char *exe, double rate, double seconds, const char *app, bool notify,
                         const char *out)
{
    pid_t pid = fork_helper();
    if (pid != 0)
        return pid;
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, 1) < 0)
        _exit(127);
    char r[32], sec[32];
    snprintf(r, sizeof(r), "%g", rate);
    snprintf(sec, sizeof(sec), "%g", seconds);
    char *argv[] = {(char *)exe, (char *)"--rate", r,           (char *)"--seconds",
                    sec,         (char *)"--app",  (char *)app, NULL,
                    NULL};
    if (notify)
        argv[7] = (char *)"--notify";
    execv(exe, argv);
    _exit(127);
}

/* Waits for a flood to end and reads its report. Returns false (printing why) on failure. */
static bool flood_finish(pid_t pid, const char *out, flood_result *r)
{
    int st;
    memset(r, 0, sizeof(*r));
    if (pid < 0 || !reap_helper(pid, 120000, &st) || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "amsi_flood (%s) failed\n", out);
        return false;
    }
    FILE *f = fopen(out, "r");
    int n = f ? fscanf(f,
                       "sent=%llu accepted=%llu declined=%llu blocked=%llu errors=%llu "
                       "elapsed_us=%llu retry_ms=%llu",
                       &r->sent, &r->accepted, &r->declined, &r->blocked, &r->errors,
                       &r->elapsed_us, &r->retry_ms)
              : 0;
    if (f)
        fclose(f);
    unlink(out);
    if (n != 7) {
        fprintf(stderr, "amsi_flood (%s): unreadable report\n", out);
        return false;
    }
    return true;
}

/* Runs one flood to its end. */
static flood_result flood_run(const char *exe, double rate, double seconds, const char *app,
                              bool notify)
{
    group_state *g = &rate_group;
    char out[192];
    snprintf(out, sizeof(out), "%.63s/flood.out", g->b.dir);
    flood_result r;
    assert_true(flood_finish(flood_start(exe, rate, seconds, app, notify, out), out, &r));
    return r;
}

/*
 * Checks that a flood was held to its limit: accepted within 5 % of max x seconds + burst + 1
 * (the first request of a quiet caller, plus its burst, then one per interval / max), every other
 * request declined with a retry-after hint, none failed.
 */
static void assert_held_to(const flood_result *r, unsigned max, unsigned burst, const char *who)
{
    double expect = max * (double)r->elapsed_us / 1e6 + burst + 1;
    fprintf(stderr, "%s: sent %llu in %.3f s, accepted %llu (expected %.0f), declined %llu\n", who,
            r->sent, (double)r->elapsed_us / 1e6, r->accepted, expect, r->declined);
    assert_int_equal(r->errors, 0);
    assert_int_equal(r->blocked, 0);
    assert_int_equal(r->accepted + r->declined, r->sent);
    if (r->accepted < expect * 0.95 || r->accepted > expect * 1.05)
        fail_msg("%s: %llu accepted, not within 5%% of %.0f", who, r->accepted, expect);
    /* Notifications have no extended call: only scans report the retry-after hint. */
    assert_true(r->retry_ms >= 1 || strstr(who, "notification") != NULL);
}

/* Ten times the limit for 3 s: the accepted count is the limit's, and stats count the rest. */
static void test_ratelimit_flood_held(void **state)
{
    group_state *g = *state;
    uint64_t before = 0, after = 0;
    assert_true(broker_stat(&g->b, "declined", &before));
    flood_result r = flood_run(flood_plain, 10 * RATE_MAX, 3, "flood", false);
    assert_held_to(&r, RATE_MAX, RATE_BURST, "scans");
    assert_true(broker_stat(&g->b, "declined", &after));
    assert_int_equal(after - before, r.declined);
}

/* Notifications have their own limit, and do not use up the scans' bucket. */
static void test_ratelimit_notify_class(void **state)
{
    (void)state;
    flood_result r = flood_run(flood_plain, 10 * NOTIFY_MAX, 2, "flood", true);
    assert_held_to(&r, NOTIFY_MAX, NOTIFY_BURST, "notifications");
}

/*
 * One process floods while an exempt process sends as much and a polite one stays under its
 * limit, all at once: neither of the other two is ever declined.
 */
static void test_ratelimit_exempt_and_polite(void **state)
{
    group_state *g = *state;
    char out[3][192];
    const char *exe[3] = {flood_plain, flood_ci, flood_plain};
    double rate[3] = {10 * RATE_MAX, 10 * RATE_MAX, RATE_MAX / 2};
    pid_t pid[3];
    for (int i = 0; i < 3; i++) {
        snprintf(out[i], sizeof(out[i]), "%.63s/flood%d.out", g->b.dir, i);
        pid[i] = flood_start(exe[i], rate[i], 3, "concurrent", false, out[i]);
    }
    flood_result r[3];
    bool ok[3];
    for (int i = 0; i < 3; i++)
        ok[i] = flood_finish(pid[i], out[i], &r[i]);
    for (int i = 0; i < 3; i++)
        assert_true(ok[i]);
    assert_held_to(&r[0], RATE_MAX, RATE_BURST, "flooding process");
    fprintf(stderr, "exempt: %llu sent, %llu declined; polite: %llu sent, %llu declined\n",
            r[1].sent, r[1].declined, r[2].sent, r[2].declined);
    assert_int_equal(r[1].declined + r[1].blocked + r[1].errors, 0);
    assert_int_equal(r[1].accepted, r[1].sent);
    assert_int_equal(r[2].declined + r[2].blocked + r[2].errors, 0);
    assert_int_equal(r[2].accepted, r[2].sent);
    uint64_t exempt = 0;
    assert_true(broker_stat(&g->b, "exempt_requests", &exempt));
    assert_true(exempt >= r[1].sent);
}

/*
 * Exemptions follow the verified executable and uid, never the declared name: an exempt path
 * given as the application name, or an exempt executable run by another user, is still limited.
 */
static void test_ratelimit_no_bought_exemption(void **state)
{
    (void)state;
    flood_result r = flood_run(flood_plain, 10 * RATE_MAX, 2, flood_ci, false);
    assert_held_to(&r, RATE_MAX, RATE_BURST, "exempt path as app name");
    r = flood_run(flood_uid, 10 * RATE_MAX, 2, "flood", false);
    assert_held_to(&r, RATE_MAX, RATE_BURST, "exempt executable, other uid");
}

/*
 * ratelimit.action = block: a declined request gets S_OK with a blocked-by-admin result (what
 * hosts act on), and amsiscan prints THROTTLED for it.
 */
static void test_ratelimit_block_action(void **state)
{
    group_state *g = *state;
    char out[192];
    snprintf(out, sizeof(out), "%.63s/flood.out", g->b.dir);
    flood_result r;
    assert_true(flood_finish(flood_start(flood_plain, 500, 1, "flood", false, out), out, &r));
    assert_int_equal(r.errors, 0);
    assert_int_equal(r.declined, 0);
    assert_true(r.blocked > 0);
    assert_true(r.accepted >= 6 && r.accepted < 100);
    assert_int_equal(r.accepted + r.blocked, r.sent);

    /* amsiscan, scanning a directory through the broker, says THROTTLED for what was declined. */
    char dir[256], path[320];
    snprintf(dir, sizeof(dir), "%s/files", g->b.dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    for (int i = 0; i < 100; i++) {
        snprintf(path, sizeof(path), "%s/f%03d.ps1", dir, i);
        assert_true(write_file(path, "Write-Output 'hello'\n"));
    }
    static char output[65536];
    char *argv[] = {(char *)AMSISCAN_PATH, (char *)"--socket", g->b.sock, (char *)"-r", dir, NULL};
    int rc = run_capture(argv, output, sizeof(output), 60000);
    for (int i = 0; i < 100; i++) {
        snprintf(path, sizeof(path), "%s/f%03d.ps1", dir, i);
        unlink(path);
    }
    rmdir(dir);
    assert_true(rc > 0); /* not everything was scanned */
    assert_non_null(strstr(output, ": THROTTLED (retry after "));
    assert_non_null(strstr(output, ": OK\n"));
}

/* ------------------------------------------------------------------------------------------ */
/* Declined-request reports to a real syslog collector.                                        */

/* The collector's messages from one pid, parsed; returns how many (at most cap). */
static size_t reports_of(pid_t pid, syslog_msg *out, size_t cap)
{
    char **lines = NULL;
    size_t n = 0, found = 0;
    assert_int_equal(rsyslog_harness_read_lines(collector, &lines, &n), 0);
    char want[24];
    snprintf(want, sizeof(want), "%ld", (long)pid);
    for (size_t i = 0; i < n; i++) {
        rsyslog_harness_line l;
        if (rsyslog_harness_parse_line(lines[i], &l) != 0) {
            fail_msg("collector line %zu has not the template's shape", i);
        }
        syslog_msg m;
        memset(&m, 0, sizeof(m));
        if (!syslog_parse_sd(l.sd, strlen(l.sd), &m))
            fail_msg("structured data does not parse: %s", l.sd);
        const char *p = syslog_param_get(&m, "pid");
        if (p == NULL || strcmp(p, want) != 0)
            continue;
        /* Header: severity warning, facility daemon; app-name amsid; msgid declined. */
        assert_int_equal(l.pri, 3 * 8 + 4);
        assert_string_equal(l.app, "amsid");
        assert_string_equal(l.msgid, "declined");
        m.pri = l.pri;
        if (found < cap)
            out[found] = m;
        found++;
    }
    rsyslog_harness_lines_free(lines, n);
    return found;
}

/* Checks one report's fields against the process that was declined. */
static void assert_report_names(const syslog_msg *m, const char *exe, const char *app)
{
    char uid[16];
    snprintf(uid, sizeof(uid), "%u", (unsigned)getuid());
    assert_string_equal(m->sd_id, "amsiDeclined@32473");
    assert_string_equal(syslog_param_get(m, "uid"), uid);
    assert_string_equal(syslog_param_get(m, "exe"), exe);
    assert_string_equal(syslog_param_get(m, "app"), app);
    assert_string_equal(syslog_param_get(m, "limit"),
                        "scans " STR(RATE_MAX) " per 1000 ms, burst " STR(RATE_BURST));
    uint64_t first, last;
    assert_true(syslog_rfc3339_us(syslog_param_get(m, "first"), &first));
    assert_true(syslog_rfc3339_us(syslog_param_get(m, "last"), &last));
    assert_true(first <= last);
    assert_string_equal(syslog_param_get(m, "notifications"), "0");
    assert_string_equal(syslog_param_get(m, "count"), syslog_param_get(m, "scans"));
}

/*
 * A process floods while an exempt and a polite one scan; nothing is sent during the window;
 * when the broker stops, the pending window goes out: one message for the flooding process, with
 * its verified identity, its declared name, the count its client saw declined and the limit.
 */
static void test_report_flushed_at_stop(void **state)
{
    group_state *g = *state;
    char out[3][192];
    const char *exe[3] = {flood_plain, flood_ci, flood_plain};
    double rate[3] = {10 * RATE_MAX, 10 * RATE_MAX, RATE_MAX / 2};
    pid_t pid[3];
    for (int i = 0; i < 3; i++) {
        snprintf(out[i], sizeof(out[i]), "%.63s/flood%d.out", g->b.dir, i);
        pid[i] =
            flood_start(exe[i], rate[i], 2, i == 0 ? "Flood \"app\" ]" : "other", false, out[i]);
    }
    flood_result r[3];
    for (int i = 0; i < 3; i++)
        assert_true(flood_finish(pid[i], out[i], &r[i]));
    assert_true(r[0].declined > 0);
    assert_int_equal(r[1].declined + r[2].declined, 0);
    syslog_msg *m = calloc(4, sizeof(syslog_msg));
    assert_non_null(m);
    sleep_ms(300);
    assert_int_equal(reports_of(pid[0], m, 4), 0); /* the window is an hour */

    assert_true(broker_stop(&g->b));
    assert_true(rsyslog_harness_wait_lines(collector, 1, 20000) >= 1);
    assert_int_equal(reports_of(pid[0], m, 4), 1);
    assert_report_names(&m[0], flood_plain, "Flood \"app\" ]");
    char count[24];
    snprintf(count, sizeof(count), "%llu", r[0].declined);
    assert_string_equal(syslog_param_get(&m[0], "count"), count);
    assert_int_equal(reports_of(pid[1], m, 4) + reports_of(pid[2], m, 4), 0);
    free(m);
    assert_true(broker_start(&g->b));
}

/*
 * One-second windows across a collector restart: the process declined for 4 s gets a handful of
 * messages (one per window, never one per request), and the counts of all of them add up to what
 * its client saw declined, the ones sent while the collector was down included.
 */
static void test_report_windows_survive_restart(void **state)
{
    group_state *g = *state;
    char out[192];
    snprintf(out, sizeof(out), "%.63s/flood.out", g->b.dir);
    pid_t pid = flood_start(flood_plain, 10 * RATE_MAX, 4, "windowed", false, out);
    sleep_ms(1500);
    assert_int_equal(rsyslog_harness_stop(collector), 0);
    sleep_ms(1500);
    assert_int_equal(rsyslog_harness_start(collector), 0);
    flood_result r;
    assert_true(flood_finish(pid, out, &r));
    assert_true(r.declined > 0);
    /* The last window ends a second after the flood; the backlog went out on reconnect. */
    syslog_msg *m = calloc(16, sizeof(syslog_msg));
    assert_non_null(m);
    unsigned long long sum = 0;
    size_t n = 0;
    int64_t deadline = now_ms() + 20000;
    while (now_ms() < deadline) {
        n = reports_of(pid, m, 16);
        sum = 0;
        for (size_t i = 0; i < n && i < 16; i++)
            sum += strtoull(syslog_param_get(&m[i], "count"), NULL, 10);
        if (sum >= r.declined)
            break;
        sleep_ms(200);
    }
    fprintf(stderr, "reports: %zu messages for %llu declined requests (sum %llu)\n", n, r.declined,
            sum);
    assert_true(n >= 2 && n <= 8);
    assert_int_equal(sum, r.declined);
    for (size_t i = 0; i < n; i++)
        assert_report_names(&m[i], flood_plain, "windowed");
    uint64_t sent = 0;
    assert_true(broker_stat(&g->b, "reports_sent", &sent));
    assert_true(sent >= n);
    free(m);
}

/* ------------------------------------------------------------------------------------------ */
/* Every decision in a real LTTng trace.                                                       */

#define SEEN_MAX 512

typedef struct client_seen {
    uint64_t scan_id;
    uint32_t result, status;
} client_seen;

/* One scan through libamsi; records what the client got. */
static void seen_scan(HAMSICONTEXT ctx, const char *text, client_seen *seen, size_t *n)
{
    AMSI_RESULT r;
    AMSI_SCAN_INFO info;
    HRESULT hr = AmsiScanBufferEx(ctx, text, strlen(text), "lttng.ps1", NULL, 0, &r, &info);
    assert_true(hr == AMSI_S_OK || hr == AMSI_E_THROTTLED);
    assert_true(*n < SEEN_MAX);
    seen[(*n)++] = (client_seen){info.scan_id, (uint32_t)r, info.status};
}

/* The value after "name = " in a babeltrace2 text line (numbers, or strings without quotes). */
static bool bt_field(const char *line, const char *name, char *out, size_t cap)
{
    char key[64];
    snprintf(key, sizeof(key), " %s = ", name);
    const char *p = strstr(line, key);
    if (p == NULL)
        return false;
    p += strlen(key);
    size_t n = 0;
    if (*p == '"') {
        for (p++; *p && *p != '"' && n + 1 < cap; p++)
            out[n++] = *p;
    } else {
        for (; *p && *p != ',' && *p != ' ' && n + 1 < cap; p++)
            out[n++] = *p;
    }
    out[n] = '\0';
    return true;
}

/*
 * A mixed workload (clean, detected, busy, malformed, declined) against the traced broker; then
 * the broker stops, the trace is read back with babeltrace2, and what the clients saw is checked
 * against it: one ScanDecision per request, each reply's scan id with the same result and status,
 * one RequestDeclined per THROTTLED and one QueueFull per BUSY, and no event lost.
 */
static void test_lttng_every_decision(void **state)
{
    group_state *g = *state;
    static client_seen seen[SEEN_MAX];
    size_t n = 0, busy = 0, throttled = 0, malformed = 0;
    /* Busy: a long pool scan, then more than the two queue slots behind it (another round when
     * a loaded machine let the pool keep up). */
    size_t longest = 1000u * 1024u, small = 300u * 1024u; /* both above broker.pool_min */
    char *data = make_filler(longest, false);
    uint8_t *frame = malloc(longest + 512);
    assert_non_null(frame);
    for (int round = 0; round < 5 && busy == 0; round++) {
        int fd = raw_connect(g->b.sock);
        assert_true(fd >= 0);
        int sndbuf = 8 << 20;
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf));
        for (uint64_t id = 1; id <= 9; id++) {
            int k = snprintf(data, 40, "# lttng busy %d %llu\n", round, (unsigned long long)id);
            data[k] = '#';
            size_t len = make_request(frame, longest + 512, AMSI_PROTO_SCAN, 0, id, 0, data,
                                      id == 1 ? longest : small);
            assert_true(len > 0);
            assert_int_equal(raw_send(fd, frame, len, NULL, 0, 0), (ssize_t)len);
        }
        for (int i = 0; i < 9; i++) {
            uint8_t buf[AMSI_PROTO_MAX_REPLY];
            amsi_proto_reply rep;
            assert_int_equal(raw_recv_reply(fd, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
            seen[n++] = (client_seen){rep.scan_id, rep.amsi_result, rep.status};
            busy += rep.status == AMSI_PROTO_STATUS_BUSY;
        }
        close(fd);
    }
    free(frame);
    free(data);
    HAMSICONTEXT ctx = open_context("amsid-lttng", NULL, NULL);
    assert_non_null(ctx);
    char text[96];
    for (int i = 0; i < 20; i++) {
        snprintf(text, sizeof(text), "Write-Output 'clean %d'", i);
        seen_scan(ctx, text, seen, &n);
    }
    for (int i = 0; i < 5; i++)
        seen_scan(ctx, EICAR, seen, &n);
    /* Malformed: garbage, answered BAD_REQUEST before the broker closes the connection. */
    for (int i = 0; i < 3; i++) {
        int fd = raw_connect(g->b.sock);
        uint8_t junk[48];
        memset(junk, 0x41 + i, sizeof(junk));
        assert_int_equal(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
        uint8_t buf[AMSI_PROTO_MAX_REPLY];
        amsi_proto_reply rep;
        assert_int_equal(raw_recv_reply(fd, buf, &rep, REPLY_TIMEOUT_MS), RAW_REPLY);
        assert_int_equal(rep.status, AMSI_PROTO_STATUS_BAD_REQUEST);
        seen[n++] = (client_seen){rep.scan_id, rep.amsi_result, rep.status};
        malformed++;
        close(fd);
    }
    /* Declined: this process goes past its limit. */
    for (int i = 0; i < 3 * RATE_MAX; i++) {
        snprintf(text, sizeof(text), "Write-Output 'past the limit %d'", i);
        seen_scan(ctx, text, seen, &n);
    }
    AmsiUninitialize(ctx);
    for (size_t i = 0; i < n; i++)
        throttled += seen[i].status == AMSI_PROTO_STATUS_THROTTLED;
    print_message("  %zu replies: %zu busy, %zu malformed, %zu throttled\n", n, busy, malformed,
                  throttled);
    assert_true(busy >= 1);
    assert_true(throttled >= 1);

    /* Stop the broker (its last events are written), then the session, and read the trace. */
    assert_true(broker_stop(&g->b));
    assert_int_equal(lttng_harness_run("lttng stop %s >/dev/null", lttng_session), 0);
    char out[160], err[160];
    snprintf(out, sizeof(out), "%s/trace.txt", lttng_dir);
    snprintf(err, sizeof(err), "%s/trace.err", lttng_dir);
    assert_int_equal(
        lttng_harness_run("babeltrace2 '%s/trace' > '%s' 2> '%s'", lttng_dir, out, err), 0);
    FILE *ef = fopen(err, "r");
    assert_non_null(ef);
    char line[8192];
    while (fgets(line, sizeof(line), ef) != NULL)
        if (strstr(line, "discarded") != NULL || strstr(line, "lost") != NULL)
            fail_msg("babeltrace2: %s", line);
    fclose(ef);

    FILE *tf = fopen(out, "r");
    assert_non_null(tf);
    size_t requests = 0, decisions = 0, declined = 0, queue_full = 0, starts = 0, stops = 0,
           reports = 0;
    static uint8_t matched[SEEN_MAX];
    memset(matched, 0, sizeof(matched));
    static char big_line[1 << 16];
    while (fgets(big_line, sizeof(big_line), tf) != NULL) {
        if (strstr(big_line, "amsi_broker:ScanRequest:"))
            requests++;
        else if (strstr(big_line, "amsi_broker:RequestDeclined:"))
            declined++;
        else if (strstr(big_line, "amsi_broker:QueueFull:"))
            queue_full++;
        else if (strstr(big_line, "amsi_broker:BrokerStart:"))
            starts++;
        else if (strstr(big_line, "amsi_broker:BrokerStop:"))
            stops++;
        else if (strstr(big_line, "amsi_broker:ReportSent:"))
            reports++;
        if (strstr(big_line, "amsi_broker:ScanDecision:") == NULL)
            continue;
        decisions++;
        char id[32], result[32], status[64];
        assert_true(bt_field(big_line, "scan_id", id, sizeof(id)));
        assert_true(bt_field(big_line, "scanResult", result, sizeof(result)));
        assert_true(bt_field(big_line, "status", status, sizeof(status)));
        for (size_t i = 0; i < n; i++) {
            if (seen[i].scan_id != strtoull(id, NULL, 10))
                continue;
            matched[i]++;
            assert_int_equal(strtoul(result, NULL, 10), seen[i].result);
            assert_string_equal(status, amsi_proto_status_name(seen[i].status));
        }
    }
    fclose(tf);
    print_message("  trace: %zu ScanRequest, %zu ScanDecision, %zu RequestDeclined, %zu "
                  "QueueFull\n",
                  requests, decisions, declined, queue_full);
    for (size_t i = 0; i < n; i++)
        if (matched[i] != 1)
            fail_msg("scan id %llu: %u decisions in the trace", (unsigned long long)seen[i].scan_id,
                     matched[i]);
    assert_int_equal(requests, decisions);
    assert_true(decisions >= n);
    assert_int_equal(declined, throttled);
    assert_int_equal(queue_full, busy);
    assert_int_equal(stops, 1);
    assert_int_equal(reports, 1); /* this process, declined, reported when the broker stopped */
    assert_true(starts <= 1);     /* BrokerStart came before the session saw the broker, or not */
    assert_true(broker_start(&g->b));
}

static void test_amsictl(void **state)
{
    group_state *g = *state;
    char out[8192], wrong[200];
    HAMSICONTEXT ctx = open_context("amsid-test-ctl", NULL, NULL);
    assert_non_null(ctx);
    assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
    AmsiUninitialize(ctx);

    char *ping[] = {(char *)AMSICTL_PATH, (char *)"--control", g->b.ctl, (char *)"ping", NULL};
    assert_int_equal(run_capture(ping, out, sizeof(out), 60000), 0);
    assert_string_equal(out, "pong\n");

    char *json[] = {(char *)AMSICTL_PATH, (char *)"--control", g->b.ctl,
                    (char *)"stats",      (char *)"--json",    NULL};
    assert_int_equal(run_capture(json, out, sizeof(out), 60000), 0);
    uint64_t requests = 0, detected = 0, p99 = 0, v = 0;
    assert_int_equal(json_u64(out, "requests", &requests), 0);
    assert_int_equal(json_u64(out, "detected", &detected), 0);
    assert_int_equal(json_u64(out, "p99_ns", &p99), 0);
    assert_int_equal(json_u64(out, "open_connections", &v), 0);
    assert_int_equal(json_u64(out, "no_such_key", &v), 1);
    assert_true(requests >= 1);
    assert_true(detected >= 1);
    assert_true(p99 > 0);

    char *text[] = {(char *)AMSICTL_PATH, (char *)"--control", g->b.ctl, (char *)"stats", NULL};
    assert_int_equal(run_capture(text, out, sizeof(out), 60000), 0);
    assert_non_null(strstr(out, "requests "));

    char *unknown[] = {(char *)AMSICTL_PATH, (char *)"--control", g->b.ctl, (char *)"frobnicate",
                       NULL};
    assert_int_equal(run_capture(unknown, out, sizeof(out), 60000), 1);
    assert_int_equal(strncmp(out, "error:", 6), 0);

    snprintf(wrong, sizeof(wrong), "%s/no-such.sock", g->b.dir);
    char *unreachable[] = {(char *)AMSICTL_PATH, (char *)"--control", wrong, (char *)"ping", NULL};
    assert_int_equal(run_capture(unreachable, out, sizeof(out), 60000), 2);
    assert_string_equal(out, "");

    char *none[] = {(char *)AMSICTL_PATH, (char *)"--control", g->b.ctl, NULL};
    assert_int_equal(run_capture(none, out, sizeof(out), 60000), 2);
}

/* ------------------------------------------------------------------------------------------ */
/* 3b, 4b. The limits group: inline_max 4 KiB, max_request_size 1 MiB.                        */

static void test_limits_too_large(void **state)
{
    (void)state;
    HAMSICONTEXT ctx = open_context("amsid-test-limits", NULL, "4096");
    assert_non_null(ctx);
    const size_t mib = 1u << 20;
    char *big = make_filler(2 * mib, true);
    assert_non_null(big);
    AMSI_RESULT r;
    AMSI_SCAN_INFO info;

    /* 2 MiB: refused, fail open. */
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, big, (ULONG)(2 * mib), u"big", NULL, &r),
                     AMSI_E_TOO_LARGE);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBufferEx(ctx, big, 2 * mib, "big", NULL, 0, &r, &info),
                     AMSI_E_TOO_LARGE);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    assert_int_equal(info.status, AMSI_PROTO_STATUS_TOO_LARGE);
    /* One byte above the maximum is refused; exactly the maximum is scanned. */
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, big + mib - 1, (ULONG)(mib + 1), u"b", NULL, &r),
                     AMSI_E_TOO_LARGE);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    r = (AMSI_RESULT)0x1234;
    assert_int_equal(AmsiScanBuffer(ctx, big + mib, (ULONG)mib, u"b", NULL, &r), AMSI_S_OK);
    assert_int_equal(r, AMSI_RESULT_DETECTED);
    /* The context keeps working. */
    assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
    free(big);
    AmsiUninitialize(ctx);
}

/* An inline frame longer than the broker's inline maximum, sent raw. */
static void test_limits_oversized_inline_frame(void **state)
{
    group_state *g = *state;
    const size_t len = 16 * 1024;
    char *data = make_filler(len, true);
    uint8_t *frame = malloc(len + 512);
    assert_non_null(data);
    assert_non_null(frame);
    size_t flen = make_request(frame, len + 512, AMSI_PROTO_SCAN, 0, 4242, 0, data, len);
    assert_true(flen > len);
    uint32_t status = UINT32_MAX;
    uint64_t id = UINT64_MAX;
    bool closed = false;
    int rc = raw_exchange(g->b.sock, frame, flen, NULL, 0, &status, &id, &closed);
    free(frame);
    free(data);
    assert_int_equal(rc, RAW_REPLY);
    assert_int_equal(status, AMSI_PROTO_STATUS_TOO_LARGE);
    assert_int_equal(id, 4242);
    assert_true(closed);
    HAMSICONTEXT ctx = open_context("amsid-test-limits-after", NULL, NULL);
    assert_non_null(ctx);
    assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
    AmsiUninitialize(ctx);
}

/* libamsi sending inline more than the broker takes inline: a prompt TOO_LARGE, not a timeout. */
static void test_limits_client_inline_above_broker(void **state)
{
    (void)state;
    HAMSICONTEXT ctx = open_context("amsid-test-limits-inline", "5000", NULL);
    assert_non_null(ctx);
    char *data = make_filler(16 * 1024, true);
    assert_non_null(data);
    AMSI_RESULT r = (AMSI_RESULT)0x1234;
    int64_t t0 = now_ms();
    HRESULT hr = AmsiScanBuffer(ctx, data, 16 * 1024, u"inline", NULL, &r);
    int64_t took = now_ms() - t0;
    free(data);
    print_message("  16 KiB inline to a 4 KiB broker: hr 0x%08x after %lld ms\n", (unsigned)hr,
                  (long long)took);
    assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
    assert_int_equal(hr, AMSI_E_TOO_LARGE);
    assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
    AmsiUninitialize(ctx);
}

#define BUSY_REQUESTS 16

static void test_limits_busy(void **state)
{
    group_state *g = *state;
    const size_t len = 1u << 20; /* exactly max_request_size: accepted, scanned in the pool */
    uint64_t busy0 = 0, busy1 = 0;
    assert_true(broker_stat(&g->b, "busy", &busy0));
    char *data = make_filler(len, true);
    assert_non_null(data);
    int fd = raw_connect(g->b.sock);
    assert_true(fd >= 0);
    unsigned sent = 0;
    for (uint64_t id = 1; id <= BUSY_REQUESTS; id++) {
        /* Distinct content each time, so no verdict comes from the cache. */
        int n = snprintf(data, 32, "# request %llu\n", (unsigned long long)id);
        data[n] = '#';
        int mfd = make_memfd(data, len, ALL_SEALS);
        uint8_t frame[256];
        size_t flen = make_request(frame, sizeof(frame), AMSI_PROTO_SCAN, AMSI_PROTO_F_MEMFD, id, 0,
                                   NULL, len);
        if (mfd >= 0 && raw_send(fd, frame, flen, &mfd, 1, 0) == (ssize_t)flen)
            sent++;
        if (mfd >= 0)
            close(mfd);
    }
    free(data);
    unsigned ok = 0, busy = 0, other = 0, seen[BUSY_REQUESTS + 1] = {0};
    for (unsigned i = 0; i < sent; i++) {
        uint8_t buf[AMSI_PROTO_MAX_REPLY];
        amsi_proto_reply rep;
        if (raw_recv_reply(fd, buf, &rep, REPLY_TIMEOUT_MS) != RAW_REPLY || rep.request_id < 1 ||
            rep.request_id > BUSY_REQUESTS) {
            other++;
            break;
        }
        seen[rep.request_id]++;
        if (rep.status == AMSI_PROTO_STATUS_OK && rep.amsi_result == AMSI_RESULT_DETECTED)
            ok++;
        else if (rep.status == AMSI_PROTO_STATUS_BUSY &&
                 rep.amsi_result == AMSI_RESULT_NOT_DETECTED)
            busy++;
        else
            other++;
    }
    close(fd);
    assert_int_equal(sent, BUSY_REQUESTS);
    assert_int_equal(other, 0);
    for (unsigned id = 1; id <= BUSY_REQUESTS; id++)
        assert_int_equal(seen[id], 1);
    print_message("  %u scanned, %u refused BUSY\n", ok, busy);
    assert_true(ok >= 1);
    assert_true(busy >= 1);
    assert_true(broker_stat(&g->b, "busy", &busy1));
    assert_int_equal(busy1, busy0 + busy);
    HAMSICONTEXT ctx = open_context("amsid-test-busy-after", NULL, NULL);
    assert_non_null(ctx);
    assert_scan(ctx, NULL, EICAR, AMSI_RESULT_DETECTED);
    AmsiUninitialize(ctx);
}

/* ------------------------------------------------------------------------------------------ */
/* 7. The broker stopped, killed and restarted under a scanning client.                        */

typedef struct restart_loop {
    HAMSICONTEXT ctx;
    atomic_bool stop;
    atomic_uint ok, session_ok, unavailable, timeouts, wrong, other;
    atomic_llong max_ms;
} restart_loop;

static void *restart_loop_main(void *arg)
{
    restart_loop *l = arg;
    char eicar[] = EICAR;
    HAMSISESSION s = NULL;
    if (AmsiOpenSession(l->ctx, &s) != AMSI_S_OK)
        atomic_fetch_add(&l->other, 1);
    for (unsigned i = 0; !atomic_load_explicit(&l->stop, memory_order_acquire); i++) {
        AMSI_RESULT r = (AMSI_RESULT)0x1234;
        bool in_session = (i & 1) && s != NULL;
        int64_t t0 = now_ms();
        HRESULT hr =
            AmsiScanBuffer(l->ctx, eicar, (ULONG)strlen(eicar), u"loop", in_session ? s : NULL, &r);
        long long took = (long long)(now_ms() - t0);
        long long max = atomic_load(&l->max_ms);
        while (took > max && !atomic_compare_exchange_weak(&l->max_ms, &max, took))
            ;
        if (hr == AMSI_S_OK) {
            atomic_fetch_add(r == AMSI_RESULT_DETECTED ? &l->ok : &l->wrong, 1);
            if (in_session && r == AMSI_RESULT_DETECTED)
                atomic_fetch_add(&l->session_ok, 1);
        } else if (IS_FAIL_OPEN_HR(hr)) {
            atomic_fetch_add(hr == AMSI_E_TIMEOUT ? &l->timeouts : &l->unavailable, 1);
            if (r != AMSI_RESULT_NOT_DETECTED)
                atomic_fetch_add(&l->wrong, 1);
        } else {
            atomic_fetch_add(&l->other, 1);
        }
        sleep_ms(2);
    }
    AmsiCloseSession(l->ctx, s);
    return NULL;
}

/* Waits until *counter reaches at least want. */
static bool wait_counter(atomic_uint *counter, unsigned want, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (atomic_load(counter) < want) {
        if (now_ms() >= deadline)
            return false;
        sleep_ms(10);
    }
    return true;
}

static void test_broker_killed_and_restarted(void **state)
{
    group_state *g = *state;
    restart_loop l = {.ctx = open_context("amsid-test-restart", "500", NULL)};
    assert_non_null(l.ctx);
    atomic_init(&l.stop, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, restart_loop_main, &l), 0);

    /* Phases; nothing is asserted until the thread is joined. */
    bool warm = wait_counter(&l.ok, 10, 20000);

    /* A broker that stops answering (SIGSTOP): calls time out and fail open. */
    unsigned t0 = atomic_load(&l.timeouts);
    kill(g->b.pid, SIGSTOP);
    bool timed_out = wait_counter(&l.timeouts, t0 + 3, 20000);
    kill(g->b.pid, SIGCONT);
    unsigned ok0 = atomic_load(&l.ok);
    bool resumed = wait_counter(&l.ok, ok0 + 10, 20000);

    /* A broker that dies (SIGKILL): calls fail at once, open. */
    unsigned u0 = atomic_load(&l.unavailable);
    broker_kill(&g->b);
    bool unavailable = wait_counter(&l.unavailable, u0 + 5, 10000);
    unsigned ok_dead = atomic_load(&l.ok);
    sleep_ms(200);
    unsigned ok_dead_later = atomic_load(&l.ok);

    /* The same socket path again: the same context reconnects, sessions too. */
    bool restarted = broker_start(&g->b);
    unsigned ok1 = atomic_load(&l.ok), s1 = atomic_load(&l.session_ok);
    bool recovered = restarted && wait_counter(&l.ok, ok1 + 10, 10000) &&
                     wait_counter(&l.session_ok, s1 + 3, 10000);

    atomic_store_explicit(&l.stop, true, memory_order_release);
    pthread_join(th, NULL);
    AmsiUninitialize(l.ctx);
    print_message("  ok %u (session %u), unavailable %u, timeouts %u, longest call %lld ms\n",
                  atomic_load(&l.ok), atomic_load(&l.session_ok), atomic_load(&l.unavailable),
                  atomic_load(&l.timeouts), (long long)atomic_load(&l.max_ms));

    assert_true(warm);
    assert_true(timed_out);
    assert_true(resumed);
    assert_true(unavailable);
    assert_int_equal(ok_dead_later, ok_dead); /* nothing succeeded while no broker ran */
    assert_true(restarted);
    assert_true(recovered);
    assert_int_equal(atomic_load(&l.wrong), 0);
    assert_int_equal(atomic_load(&l.other), 0);
    assert_true(atomic_load(&l.max_ms) < 10000); /* never hung */
}

typedef struct drain_loop {
    HAMSICONTEXT ctx;
    atomic_bool *stop;
    atomic_uint *progress; /* successful scans, all threads */
    const char *big;
    size_t big_len;
    unsigned index;
    unsigned ok, fail_open, wrong, other;
    int64_t max_ms;
} drain_loop;

static void *drain_loop_main(void *arg)
{
    drain_loop *l = arg;
    for (unsigned i = 0; !atomic_load_explicit(l->stop, memory_order_acquire); i++) {
        bool big = (i + l->index) % 4 == 0;
        bool bad = big || (i & 1);
        const char *text = big ? l->big : bad ? EICAR : CLEAN_TEXT;
        size_t len = big ? l->big_len : strlen(text);
        AMSI_RESULT r = (AMSI_RESULT)0x1234;
        int64_t t0 = now_ms();
        HRESULT hr = AmsiScanBufferA(l->ctx, text, len, "drain", NULL, &r);
        int64_t took = now_ms() - t0;
        if (took > l->max_ms)
            l->max_ms = took;
        if (hr == AMSI_S_OK) {
            bool right = r == (bad ? AMSI_RESULT_DETECTED : AMSI_RESULT_NOT_DETECTED);
            l->ok += right;
            l->wrong += !right;
            atomic_fetch_add(l->progress, 1);
        } else if (IS_FAIL_OPEN_HR(hr) || hr == AMSI_E_BROKER) {
            /* AMSI_E_BROKER: the SHUTTING_DOWN answer. */
            l->fail_open++;
            l->wrong += r != AMSI_RESULT_NOT_DETECTED;
        } else {
            l->other++;
        }
        if (hr != AMSI_S_OK)
            sleep_ms(5);
    }
    return NULL;
}

#define DRAIN_THREADS 4

/* Stops the daemon with how() while DRAIN_THREADS threads scan; restarts it afterwards. */
static void drain_while_scanning(group_state *g, bool by_amsictl)
{
    const size_t big_len = 600 * 1024;
    char *big = make_filler(big_len, true);
    assert_non_null(big);
    HAMSICONTEXT ctx = open_context("amsid-test-drain", "5000", NULL);
    assert_non_null(ctx);
    atomic_bool stop;
    atomic_uint progress;
    atomic_init(&stop, false);
    atomic_init(&progress, 0);
    drain_loop loops[DRAIN_THREADS];
    pthread_t th[DRAIN_THREADS];
    bool started[DRAIN_THREADS];
    for (unsigned i = 0; i < DRAIN_THREADS; i++) {
        loops[i] = (drain_loop){.ctx = ctx,
                                .stop = &stop,
                                .progress = &progress,
                                .big = big,
                                .big_len = big_len,
                                .index = i};
        started[i] = pthread_create(&th[i], NULL, drain_loop_main, &loops[i]) == 0;
    }
    bool warm = wait_counter(&progress, 100, 20000);
    int ctl_rc = 0;
    char out[256] = "";
    if (by_amsictl)
        ctl_rc = amsictl(&g->b, "shutdown", out, sizeof(out));
    else
        kill(g->b.pid, SIGTERM);
    bool clean = broker_wait_exit(&g->b, by_amsictl ? "amsictl shutdown" : "SIGTERM");
    sleep_ms(300); /* the threads meet the missing broker */
    atomic_store_explicit(&stop, true, memory_order_release);
    unsigned ok = 0, fail_open = 0, wrong = 0, other = 0, nstarted = 0;
    int64_t max_ms = 0;
    for (unsigned i = 0; i < DRAIN_THREADS; i++) {
        if (!started[i])
            continue;
        pthread_join(th[i], NULL);
        nstarted++;
        ok += loops[i].ok;
        fail_open += loops[i].fail_open;
        wrong += loops[i].wrong;
        other += loops[i].other;
        if (loops[i].max_ms > max_ms)
            max_ms = loops[i].max_ms;
    }
    AmsiUninitialize(ctx);
    free(big);
    print_message("  %u scanned, %u failed open, longest call %lld ms\n", ok, fail_open,
                  (long long)max_ms);
    bool restarted = broker_start(&g->b);

    assert_int_equal(nstarted, DRAIN_THREADS);
    assert_true(warm);
    if (by_amsictl) {
        assert_int_equal(ctl_rc, 0);
        assert_string_equal(out, "stopping\n");
    }
    assert_true(clean);
    assert_true(fail_open > 0);
    assert_int_equal(wrong, 0);
    assert_int_equal(other, 0);
    assert_true(max_ms < 10000);
    assert_true(restarted);
}

static void test_drain_on_sigterm(void **state)
{
    drain_while_scanning(*state, false);
}

static void test_drain_on_amsictl_shutdown(void **state)
{
    drain_while_scanning(*state, true);
}

/* ------------------------------------------------------------------------------------------ */
/* Rules group: reloads that change the rules, and reloads that fail.                          */

/* The rule an Ex scan of text matched ("" when none), or "(failed)". */
static const char *matched_rule(HAMSICONTEXT ctx, HAMSISESSION s, const char *text, char *rule,
                                size_t cap)
{
    AMSI_RESULT r;
    AMSI_SCAN_INFO info;
    if (AmsiScanBufferEx(ctx, text, strlen(text), "live", s, 0, &r, &info) != AMSI_S_OK)
        return "(failed)";
    snprintf(rule, cap, "%s", info.rule);
    return rule;
}

static void test_reload_new_rules(void **state)
{
    group_state *g = *state;
    char out[512], rule[256];
    uint64_t gen0 = 0, gen = 0, reloads0 = 0, reloads = 0;
    assert_true(broker_stat(&g->b, "generation", &gen0));
    assert_true(broker_stat(&g->b, "reloads", &reloads0));
    HAMSICONTEXT ctx = open_context("amsid-test-live", NULL, NULL);
    assert_non_null(ctx);
    const char *one = "Write-Output 'LIVE-RULE-ONE-MARKER'";
    const char *two = "Write-Output 'LIVE-RULE-TWO-MARKER'";
    assert_string_equal(matched_rule(ctx, NULL, one, rule, sizeof(rule)), "Live_Rule_One");
    assert_string_equal(matched_rule(ctx, NULL, two, rule, sizeof(rule)), "");
    /* A session opened before the reloads. */
    HAMSISESSION s = NULL;
    assert_int_equal(AmsiOpenSession(ctx, &s), AMSI_S_OK);
    assert_scan(ctx, s, SPLIT_A, AMSI_RESULT_NOT_DETECTED);

    /* New rules: the old verdicts (cached too) give way. */
    assert_true(write_file(g->b.live_rules, LIVE_RULE_TWO));
    assert_int_equal(amsictl(&g->b, "reload", out, sizeof(out)), 0);
    assert_int_equal(strncmp(out, "reloaded:", 9), 0);
    assert_true(broker_stat(&g->b, "generation", &gen));
    assert_int_equal(gen, gen0 + 1);
    assert_string_equal(matched_rule(ctx, NULL, one, rule, sizeof(rule)), "");
    assert_string_equal(matched_rule(ctx, NULL, two, rule, sizeof(rule)), "Live_Rule_Two");
    assert_scan(ctx, s, SPLIT_B, AMSI_RESULT_DETECTED);
    AmsiCloseSession(ctx, s);

    /* A rule file that does not compile: amsictl reports the failure, the old rules stay. */
    assert_true(write_file(g->b.live_rules, LIVE_RULE_BROKEN));
    int rc = amsictl(&g->b, "reload", out, sizeof(out));
    print_message("  failed reload: exit %d, '%s'\n", rc, strtok(out, "\n"));
    assert_true(broker_stat(&g->b, "generation", &gen));
    assert_int_equal(gen, gen0 + 1);
    assert_string_equal(matched_rule(ctx, NULL, two, rule, sizeof(rule)), "Live_Rule_Two");
    /* SIGHUP with the same broken file: the daemon lives on, nothing changes. */
    assert_int_equal(kill(g->b.pid, SIGHUP), 0);
    assert_true(ctl_query(&g->b, "ping", out, sizeof(out))); /* answered after the reload try */
    assert_string_equal(out, "pong");
    assert_true(broker_stat(&g->b, "generation", &gen));
    assert_int_equal(gen, gen0 + 1);
    assert_string_equal(matched_rule(ctx, NULL, two, rule, sizeof(rule)), "Live_Rule_Two");
    /* Fixed again, by SIGHUP. */
    assert_true(write_file(g->b.live_rules, LIVE_RULE_ONE));
    assert_int_equal(kill(g->b.pid, SIGHUP), 0);
    assert_true(wait_stat(&g->b, "generation", gen0 + 2, 120000));
    assert_string_equal(matched_rule(ctx, NULL, one, rule, sizeof(rule)), "Live_Rule_One");
    assert_string_equal(matched_rule(ctx, NULL, two, rule, sizeof(rule)), "");
    assert_true(broker_stat(&g->b, "reloads", &reloads));
    assert_int_equal(reloads, reloads0 + 2);
    AmsiUninitialize(ctx);
    /* amsictl's contract: exit 1 when the broker answered with an error. */
    assert_int_equal(rc, 1);
}

/* ------------------------------------------------------------------------------------------ */

int main(void)
{
    /* Room for test 8 (the daemons inherit it too). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
    setenv("AMSI_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 1);
    unsetenv("AMSI_INLINE_MAX");
    atexit(kill_daemons_at_exit);

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)
    const struct CMUnitTest main_tests[] = {
        T(test_api_scans),
        T(test_api_bad_arguments),
        T(test_api_no_broker),
        T(test_libamsi_odd_replies),
        T(test_sessions_split_signature),
        T(test_sessions_raw_scope),
        T(test_large_content_memfd),
        T(test_large_content_inline),
        T(test_malformed_frames),
        T(test_pipelined_then_half_close),
        T(test_memfd_requests),
        T(test_idle_and_non_reading_clients),
        T(test_client_killed_mid_scan),
        T(test_thousand_connections),
        T(test_many_threads_one_context),
        T(test_reload_under_load),
        T(test_declared_identity_ignored),
        T(test_amsictl),
    };
    const struct CMUnitTest limits_tests[] = {
        T(test_limits_too_large),
        T(test_limits_oversized_inline_frame),
        T(test_limits_client_inline_above_broker),
        T(test_limits_busy),
    };
    const struct CMUnitTest restart_tests[] = {
        T(test_broker_killed_and_restarted),
        T(test_drain_on_sigterm),
        T(test_drain_on_amsictl_shutdown),
    };
    const struct CMUnitTest rules_tests[] = {
        T(test_reload_new_rules),
    };
    const struct CMUnitTest rate_tests[] = {
        T(test_ratelimit_flood_held),
        T(test_ratelimit_notify_class),
        T(test_ratelimit_exempt_and_polite),
        T(test_ratelimit_no_bought_exemption),
    };
    const struct CMUnitTest block_tests[] = {
        T(test_ratelimit_block_action),
    };
    const struct CMUnitTest report_tests[] = {
        T(test_report_flushed_at_stop),
    };
    const struct CMUnitTest window_tests[] = {
        T(test_report_windows_survive_restart),
    };
    const struct CMUnitTest lttng_tests[] = {
        T(test_lttng_every_decision),
    };
#undef T
    int failed = 0;
    failed += cmocka_run_group_tests_name("amsid", main_tests, main_group_setup, group_stop);
    failed +=
        cmocka_run_group_tests_name("amsid-limits", limits_tests, limits_group_setup, group_stop);
    failed += cmocka_run_group_tests_name("amsid-restart", restart_tests, restart_group_setup,
                                          group_stop);
    failed +=
        cmocka_run_group_tests_name("amsid-rules", rules_tests, rules_group_setup, group_stop);
    failed +=
        cmocka_run_group_tests_name("amsid-ratelimit", rate_tests, rate_group_setup, group_stop);
    failed += cmocka_run_group_tests_name("amsid-ratelimit-block", block_tests, block_group_setup,
                                          group_stop);
    failed += cmocka_run_group_tests_name("amsid-report", report_tests, report_group_setup,
                                          report_group_stop);
    failed += cmocka_run_group_tests_name("amsid-report-windows", window_tests, window_group_setup,
                                          report_group_stop);
    failed += cmocka_run_group_tests_name("amsid-lttng", lttng_tests, lttng_group_setup,
                                          lttng_group_stop);
    rsyslog_harness_destroy(collector);
    flood_remove();
    return failed + fixture_failures != 0;
}
