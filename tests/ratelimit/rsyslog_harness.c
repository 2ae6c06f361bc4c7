/*
 * rsyslog_harness.c - a private rsyslogd for tests (see rsyslog_harness.h for the API).
 *
 * The daemon runs as `rsyslogd -n -f CONF -i PIDFILE` (no fork, so it stays our child and
 * waitpid() tells when it is gone). Readiness is read from /proc/net/tcp and /proc/net/udp (the
 * loopback port listening, resp. bound) rather than by probing, so that the harness never holds
 * a port rsyslogd is about to bind.
 */
#include "rsyslog_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define READY_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS  5000

struct rsyslog_harness {
    char binary[4096];
    char dir[64];
    char conf[128], out[128], pidfile[128], errlog[128], work[128];
    uint16_t tcp_port, udp_port;
    pid_t pid; /* 0 when not running */
    bool started_once;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Finds the rsyslogd binary into buf. Returns false when there is none. */
static bool find_binary(char *buf, size_t len)
{
    const char *env = getenv("RSYSLOGD");
    if (env != NULL && env[0] != '\0') {
        snprintf(buf, len, "%s", env);
        return access(buf, X_OK) == 0;
    }
    if (access("/usr/sbin/rsyslogd", X_OK) == 0) {
        snprintf(buf, len, "/usr/sbin/rsyslogd");
        return true;
    }
    const char *path = getenv("PATH");
    if (path == NULL)
        return false;
    while (*path != '\0') {
        const char *end = strchr(path, ':');
        size_t n = end != NULL ? (size_t)(end - path) : strlen(path);
        if (n > 0 && (size_t)snprintf(buf, len, "%.*s/rsyslogd", (int)n, path) < len &&
            access(buf, X_OK) == 0)
            return true;
        path += n;
        if (*path == ':')
            path++;
    }
    return false;
}

/* A free loopback port of socket type type, found by binding port 0. Returns 0 on failure. */
static uint16_t free_port(int type)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    uint16_t port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Writes the private config for the current ports. Returns 0 or a negative errno. */
static int write_config(rsyslog_harness *h)
{
    FILE *f = fopen(h->conf, "w");
    if (f == NULL)
        return -errno;
    fprintf(f,
            "# Private rsyslogd for amsi-broker tests: loopback inputs only, one output file.\n"
            "global(workDirectory=\"%s\" maxMessageSize=\"64k\"\n"
            "       processInternalMessages=\"on\")\n"
            "module(load=\"imudp\")\n"
            "module(load=\"imtcp\")\n"
            "input(type=\"imudp\" address=\"127.0.0.1\" port=\"%u\")\n"
            "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"%u\")\n"
            "template(name=\"amsiHarness\" type=\"string\"\n"
            "         string=\"%%pri%% %%timereported:::date-rfc3339%% %%hostname%% "
            "%%app-name%% %%procid%% %%msgid%% %%structured-data%% %%msg%%\\n\")\n"
            "if $app-name != \"rsyslogd\" then {\n"
            "    action(type=\"omfile\" file=\"%s\" template=\"amsiHarness\")\n"
            "}\n",
            h->work, h->udp_port, h->tcp_port, h->out);
    int rc = ferror(f) ? -EIO : 0;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

static int pick_ports(rsyslog_harness *h)
{
    h->tcp_port = free_port(SOCK_STREAM);
    h->udp_port = free_port(SOCK_DGRAM);
    if (h->tcp_port == 0 || h->udp_port == 0)
        return -EADDRNOTAVAIL;
    return write_config(h);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

int rsyslog_harness_create(rsyslog_harness **out)
{
    *out = NULL;
    rsyslog_harness *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    if (!find_binary(h->binary, sizeof(h->binary))) {
        free(h);
        return -ENOENT;
    }
    snprintf(h->dir, sizeof(h->dir), "/tmp/amsi-rsyslog-XXXXXX");
    if (mkdtemp(h->dir) == NULL) {
        int rc = -errno;
        free(h);
        return rc;
    }
    snprintf(h->conf, sizeof(h->conf), "%s/rsyslog.conf", h->dir);
    snprintf(h->out, sizeof(h->out), "%s/received.log", h->dir);
    snprintf(h->pidfile, sizeof(h->pidfile), "%s/rsyslogd.pid", h->dir);
    snprintf(h->errlog, sizeof(h->errlog), "%s/rsyslogd.stderr", h->dir);
    snprintf(h->work, sizeof(h->work), "%s/work", h->dir);
    int rc = mkdir(h->work, 0700) == 0 ? 0 : -errno;
    if (rc == 0)
        rc = pick_ports(h);
    if (rc < 0) {
        nftw(h->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
        free(h);
        return rc;
    }
    *out = h;
    return 0;
}

/*
 * True when /proc/net/<file> lists a socket on 127.0.0.1:port (or 0.0.0.0:port) in state st
 * (hex, "0A" = TCP LISTEN, "07" = UDP bound).
 */
static bool proc_net_has(const char *file, uint16_t port, const char *st)
{
    FILE *f = fopen(file, "r");
    if (f == NULL)
        return false;
    char line[512], loop[32], any[32];
    snprintf(loop, sizeof(loop), "0100007F:%04X", port);
    snprintf(any, sizeof(any), "00000000:%04X", port);
    bool found = false;
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        char local[64], remote[64], state[8];
        if (sscanf(line, " %*[^:]: %63s %63s %7s", local, remote, state) == 3 &&
            (strcmp(local, loop) == 0 || strcmp(local, any) == 0) && strcmp(state, st) == 0)
            found = true;
    }
    fclose(f);
    return found;
}

/* Copies rsyslogd's stderr to ours (after a failed start). */
static void dump_stderr(const rsyslog_harness *h)
{
    FILE *f = fopen(h->errlog, "r");
    if (f == NULL)
        return;
    char line[512];
    fprintf(stderr, "rsyslog_harness: rsyslogd (%s) said:\n", h->binary);
    while (fgets(line, sizeof(line), f) != NULL)
        fprintf(stderr, "  %s", line);
    fclose(f);
}

/* Spawns rsyslogd and waits until it listens. */
static int spawn_once(rsyslog_harness *h)
{
    unlink(h->pidfile); /* a stale one (after SIGKILL) would make rsyslogd refuse to start */
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0)
        return -rc;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, h->errlog, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char opt_n[] = "-n", opt_f[] = "-f", opt_i[] = "-i";
    char *argv[] = {h->binary, opt_n, opt_f, h->conf, opt_i, h->pidfile, NULL};
    pid_t pid;
    rc = posix_spawn(&pid, h->binary, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -rc;
    h->pid = pid;

    uint64_t deadline = mono_ms() + READY_TIMEOUT_MS;
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            h->pid = 0;
            return -ECHILD;
        }
        if (proc_net_has("/proc/net/tcp", h->tcp_port, "0A") &&
            proc_net_has("/proc/net/udp", h->udp_port, "07"))
            return 0;
        if (mono_ms() >= deadline) {
            rsyslog_harness_stop(h);
            return -ETIMEDOUT;
        }
        sleep_ms(20);
    }
}

int rsyslog_harness_start(rsyslog_harness *h)
{
    if (h == NULL)
        return -EINVAL;
    if (h->pid > 0)
        return -EALREADY;
    int attempts = h->started_once ? 1 : 3;
    int rc = -ECHILD;
    for (int i = 0; i < attempts; i++) {
        if (i > 0) {
            rc = pick_ports(h); /* a port may have been taken since create */
            if (rc < 0)
                return rc;
        }
        rc = spawn_once(h);
        if (rc == 0) {
            h->started_once = true;
            return 0;
        }
        if (rc != -ECHILD)
            break;
    }
    dump_stderr(h);
    return rc;
}

int rsyslog_harness_stop(rsyslog_harness *h)
{
    if (h == NULL || h->pid <= 0)
        return -ESRCH;
    kill(h->pid, SIGTERM);
    uint64_t deadline = mono_ms() + STOP_TIMEOUT_MS;
    int status;
    for (;;) {
        pid_t w = waitpid(h->pid, &status, WNOHANG);
        if (w == h->pid || (w < 0 && errno == ECHILD))
            break;
        if (mono_ms() >= deadline) {
            kill(h->pid, SIGKILL);
            waitpid(h->pid, &status, 0);
            break;
        }
        sleep_ms(10);
    }
    h->pid = 0;
    return 0;
}

void rsyslog_harness_destroy(rsyslog_harness *h)
{
    if (h == NULL)
        return;
    if (h->pid > 0)
        rsyslog_harness_stop(h);
    nftw(h->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(h);
}

uint16_t rsyslog_harness_tcp_port(const rsyslog_harness *h)
{
    return h->tcp_port;
}

uint16_t rsyslog_harness_udp_port(const rsyslog_harness *h)
{
    return h->udp_port;
}

const char *rsyslog_harness_output(const rsyslog_harness *h)
{
    return h->out;
}

const char *rsyslog_harness_dir(const rsyslog_harness *h)
{
    return h->dir;
}

/* Reads the whole output file into a NUL-terminated buffer (*len bytes). */
static int slurp(const rsyslog_harness *h, char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(h->out, "r");
    if (f == NULL) {
        if (errno != ENOENT)
            return -errno;
        *buf = calloc(1, 1);
        return *buf == NULL ? -ENOMEM : 0;
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b != NULL) {
        if (cap - n < 2048) {
            char *nb = realloc(b, cap * 2);
            if (nb == NULL) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t k = fread(b + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0)
            break;
    }
    fclose(f);
    if (b == NULL)
        return -ENOMEM;
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

long rsyslog_harness_wait_lines(rsyslog_harness *h, size_t n, int timeout_ms)
{
    uint64_t deadline = mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        char *buf;
        size_t len;
        int rc = slurp(h, &buf, &len);
        if (rc < 0)
            return rc;
        size_t lines = 0;
        for (size_t i = 0; i < len; i++)
            lines += buf[i] == '\n';
        free(buf);
        if (lines >= n || mono_ms() >= deadline)
            return (long)lines;
        sleep_ms(20);
    }
}

void rsyslog_harness_lines_free(char **lines, size_t n)
{
    if (lines == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

int rsyslog_harness_read_lines(rsyslog_harness *h, char ***lines, size_t *n)
{
    *lines = NULL;
    *n = 0;
    char *buf;
    size_t len;
    int rc = slurp(h, &buf, &len);
    if (rc < 0)
        return rc;
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        count += buf[i] == '\n';
    char **out = calloc(count + 1, sizeof(char *));
    if (out == NULL) {
        free(buf);
        return -ENOMEM;
    }
    size_t k = 0;
    for (char *p = buf; k < count;) {
        char *nl = strchr(p, '\n');
        out[k] = strndup(p, (size_t)(nl - p));
        if (out[k] == NULL) {
            rsyslog_harness_lines_free(out, k);
            free(buf);
            return -ENOMEM;
        }
        k++;
        p = nl + 1;
    }
    free(buf);
    *lines = out;
    *n = count;
    return 0;
}

/* Cuts the next space-separated field off *p. */
static const char *field(char **p)
{
    char *start = *p;
    char *sp = strchr(start, ' ');
    if (sp == NULL || sp == start)
        return NULL;
    *sp = '\0';
    *p = sp + 1;
    return start;
}

int rsyslog_harness_parse_line(char *line, rsyslog_harness_line *out)
{
    memset(out, 0, sizeof(*out));
    char *p = line;
    const char *pri = field(&p);
    if (pri == NULL)
        return -EINVAL;
    char *end;
    long v = strtol(pri, &end, 10);
    if (*end != '\0' || v < 0 || v > 191)
        return -EINVAL;
    out->pri = (int)v;
    if ((out->timestamp = field(&p)) == NULL || (out->hostname = field(&p)) == NULL ||
        (out->app = field(&p)) == NULL || (out->procid = field(&p)) == NULL ||
        (out->msgid = field(&p)) == NULL)
        return -EINVAL;
    /* STRUCTURED-DATA: "-" or elements [...] whose values may hold escaped '"', '\' and ']'. */
    char *sd = p;
    if (*p == '-') {
        p++;
    } else {
        while (*p == '[') {
            bool quoted = false;
            for (p++;; p++) {
                if (*p == '\0')
                    return -EINVAL;
                if (quoted && *p == '\\' && p[1] != '\0')
                    p++;
                else if (*p == '"')
                    quoted = !quoted;
                else if (!quoted && *p == ']')
                    break;
            }
            p++;
        }
        if (p == sd)
            return -EINVAL;
    }
    if (*p == ' ') {
        *p = '\0';
        out->msg = p + 1;
    } else if (*p == '\0') {
        out->msg = p;
    } else {
        return -EINVAL;
    }
    out->sd = sd;
    return 0;
}
