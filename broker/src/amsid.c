/*
 * amsid - the AMSI scan broker.
 *
 *   amsid [--config FILE] [--foreground] [--socket PATH] [--set SECTION.KEY=VALUE]...
 *
 * main() owns what is process-wide: the configuration, the first compile, signals (SIGHUP
 * reloads, SIGTERM/SIGINT drain and exit 0), and the control socket (`amsictl ping|stats|reload|
 * shutdown`, for root, the broker's own user, or the configured control_group). The scan server
 * runs on its own threads (server.c). A reload compiles on this thread, so scans never wait for
 * it, and swaps the rule set only when the compile succeeded.
 */
#include "broker/config.h"
#include "broker/server.h"
#include "engine/engine.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

typedef struct daemon_state {
    const char *config_path;
    char **sets;
    size_t nsets;
    const char *socket_override;
    broker_config cfg;
    broker_server *server;
    int control_fd;
    bool running;
    const char *stop_reason; /* for BrokerStop */
} daemon_state;

static void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void log_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("amsid: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Reads the configuration: defaults, the file, then the overrides. Returns 0 or -1 (logged). */
static int load_config(daemon_state *d, broker_config *cfg)
{
    char err[512];
    if (broker_config_init(cfg) != 0) {
        log_msg("out of memory");
        return -1;
    }
    if (d->config_path && broker_config_load(cfg, d->config_path, err, sizeof(err)) != 0) {
        log_msg("%s", err);
        broker_config_cleanup(cfg);
        return -1;
    }
    for (size_t i = 0; i < d->nsets; i++) {
        if (broker_config_set(cfg, d->sets[i], err, sizeof(err)) != 0) {
            log_msg("--set %s", err);
            broker_config_cleanup(cfg);
            return -1;
        }
    }
    if (d->socket_override &&
        broker_config_set_key(cfg, "broker", "socket", d->socket_override, err, sizeof(err)) != 0) {
        log_msg("--socket: %s", err);
        broker_config_cleanup(cfg);
        return -1;
    }
    return 0;
}

/* Compiles the configured rules. Returns the set or NULL (logged). */
static engine_rules *compile_rules(const broker_config *cfg)
{
    size_t n;
    const char *const *paths = broker_config_rule_paths(cfg, &n);
    engine_compile_options opts = {.cache_dir = cfg->cache_dir};
    engine_rules *rules = NULL;
    engine_diag diag;
    int rc = engine_rules_compile_files(paths, n, &opts, &rules, &diag);
    if (rc != 0) {
        log_msg("rules: %s", diag.text[0] ? diag.text : engine_strerror(rc));
        return NULL;
    }
    log_msg("%zu rules loaded in %.1f ms%s (Hyperscan %s)", engine_rules_count(rules),
            engine_rules_compile_ms(rules), engine_rules_from_cache(rules) ? " from the cache" : "",
            engine_hyperscan_version());
    return rules;
}

/* True when two strings are equal, NULL counting as "". */
static bool same_text(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/*
 * Takes the trace section of a reloaded configuration: new filters at once, or a new backend
 * (started before the old one stops; on failure the old one keeps running, and the reload says
 * so in the log). On success *next moves into the daemon's configuration.
 */
static void apply_trace(daemon_state *d, etw_config *next)
{
    etw_config *cur = &d->cfg.trace;
    char err[256] = "";
    if (next->backend == cur->backend && same_text(next->jsonl_path, cur->jsonl_path) &&
        same_text(next->lttng_library, cur->lttng_library) &&
        next->content_max == cur->content_max) {
        etw_set_filter(next->level, next->keywords);
    } else if (etw_start(next, err, sizeof(err)) != 0) {
        log_msg("reload: trace: %s; tracing goes on as before", err);
        return;
    }
    etw_config old = *cur;
    *cur = *next;
    *next = old;
}

/* Reloads rules (and their engine settings) from the configuration. Returns 0 or -1. */
static int reload(daemon_state *d, char *msg, size_t cap)
{
    broker_config cfg;
    if (load_config(d, &cfg) != 0) {
        snprintf(msg, cap, "error: reload failed: configuration error (see the log)");
        return -1;
    }
    engine_rules *rules = compile_rules(&cfg);
    apply_trace(d, &cfg.trace);
    broker_config_cleanup(&cfg);
    ETW_EMIT(ConfigReload, .ok = rules != NULL,
             .rules = rules ? (uint32_t)engine_rules_count(rules) : 0,
             .compile_ms = rules ? (uint32_t)engine_rules_compile_ms(rules) : 0,
             .cached = rules && engine_rules_from_cache(rules),
             .error = rules ? "" : "rule error (see the log)");
    if (rules == NULL) {
        snprintf(msg, cap, "error: reload failed: rule error (see the log); the old rules stay");
        return -1;
    }
    broker_server_swap_rules(d->server, rules);
    snprintf(msg, cap, "reloaded: %zu rules", engine_rules_count(rules));
    engine_rules_unref(rules);
    log_msg("%s", msg);
    return 0;
}

/* Creates the directory a socket lives in, when missing (mode 0755). */
static void make_parent_dir(const char *path)
{
    char dir[256];
    const char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path || (size_t)(slash - path) >= sizeof(dir))
        return;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        log_msg("cannot create %s: %s", dir, strerror(errno));
}

/* Creates the control socket: mode 0660, group control_group when set. */
static int control_listen(const broker_config *cfg)
{
    const char *path = cfg->broker.control_socket;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (path == NULL || strlen(path) >= sizeof(addr.sun_path))
        return -1;
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 16) != 0) {
        log_msg("control socket %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    chmod(path, 0660);
    if (cfg->broker.control_group) {
        struct group *g = getgrnam(cfg->broker.control_group);
        if (g == NULL || chown(path, (uid_t)-1, g->gr_gid) != 0)
            log_msg("control_group %s: cannot apply", cfg->broker.control_group);
    }
    return fd;
}

/* True when the peer may use the control socket. */
static bool control_allowed(const broker_config *cfg, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return false;
    if (cred.uid == 0 || cred.uid == geteuid())
        return true;
    if (cfg->broker.control_group) {
        struct group *g = getgrnam(cfg->broker.control_group);
        if (g && cred.gid == g->gr_gid)
            return true;
    }
    return false;
}

/* The counters `amsictl stats` prints, in order. */
static const struct {
    const char *name;
    size_t offset;
} stats_fields[] = {
#define FIELD(f)                                                                                   \
    {                                                                                              \
#f, offsetof(broker_stats, f)                                                              \
    }
    FIELD(connections),
    FIELD(open_connections),
    FIELD(requests),
    FIELD(scans),
    FIELD(notifications),
    FIELD(detected),
    FIELD(clean),
    FIELD(limits),
    FIELD(bad_requests),
    FIELD(too_large),
    FIELD(busy),
    FIELD(engine_errors),
    FIELD(sessions_open),
    FIELD(session_matches),
    FIELD(bytes_scanned),
    FIELD(reloads),
    FIELD(cache_hits),
    FIELD(pool_scans),
    FIELD(declined),
    FIELD(exempt_requests),
    FIELD(reports_sent),
    FIELD(reports_dropped),
    FIELD(reports_pending),
    FIELD(generation),
    FIELD(p50_ns),
    FIELD(p90_ns),
    FIELD(p99_ns),
    FIELD(p999_ns),
    FIELD(max_ns),
#undef FIELD
};

/* Formats the server's counters as "name value" lines or one JSON object. */
static void stats_text(daemon_state *d, bool json, char *out, size_t cap)
{
    broker_stats st;
    broker_server_stats(d->server, &st);
    size_t w = 0;
    if (json)
        w += (size_t)snprintf(out, cap, "{");
    for (size_t i = 0; i < sizeof(stats_fields) / sizeof(stats_fields[0]) && w < cap; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&st + stats_fields[i].offset, sizeof(v));
        const char *sep = i == 0 ? "" : json ? ", " : "\n";
        w += (size_t)snprintf(out + w, cap - w, json ? "%s\"%s\": %llu" : "%s%s %llu", sep,
                              stats_fields[i].name, (unsigned long long)v);
    }
    if (json && w < cap)
        snprintf(out + w, cap - w, "}");
}

/* Answers one control request on a connected control socket. */
static void control_serve(daemon_state *d, int fd)
{
    char cmd[256];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 1000) != 1) {
        close(fd);
        return;
    }
    ssize_t n = recv(fd, cmd, sizeof(cmd) - 1, 0);
    char out[4096];
    if (n <= 0) {
        close(fd);
        return;
    }
    cmd[n] = '\0';
    while (n > 0 && (cmd[n - 1] == '\n' || cmd[n - 1] == ' '))
        cmd[--n] = '\0';
    if (!control_allowed(&d->cfg, fd))
        snprintf(out, sizeof(out), "error: permission denied");
    else if (strcmp(cmd, "ping") == 0)
        snprintf(out, sizeof(out), "pong");
    else if (strcmp(cmd, "stats") == 0)
        stats_text(d, false, out, sizeof(out));
    else if (strcmp(cmd, "stats --json") == 0)
        stats_text(d, true, out, sizeof(out));
    else if (strcmp(cmd, "reload") == 0)
        reload(d, out, sizeof(out));
    else if (strcmp(cmd, "shutdown") == 0) {
        snprintf(out, sizeof(out), "stopping");
        d->running = false;
        d->stop_reason = "control";
    } else
        snprintf(out, sizeof(out),
                 "error: unknown command '%s' (ping, stats [--json], reload, "
                 "shutdown)",
                 cmd);
    (void)!send(fd, out, strlen(out), MSG_NOSIGNAL);
    close(fd);
}

/*
 * The scan socket systemd passed (socket activation: LISTEN_PID is us and LISTEN_FDS >= 1, the
 * first descriptor is 3), or -1. The variables are cleared so children do not inherit them.
 */
static int systemd_socket(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    int fd = -1;
    if (pid && fds && strtol(pid, NULL, 10) == (long)getpid() && strtol(fds, NULL, 10) >= 1) {
        fd = 3;
        fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return fd;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: amsid [--config FILE] [--foreground] [--socket PATH] "
               "[--set SECTION.KEY=VALUE]...\n");
}

/* Detaches from the terminal; the parent exits once the child says it is serving. */
static int daemonize(int *ready_fd)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        close(pfd[1]);
        char c = 1;
        ssize_t n = read(pfd[0], &c, 1);
        _exit(n == 1 && c == 0 ? 0 : 1);
    }
    close(pfd[0]);
    setsid();
    *ready_fd = pfd[1];
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"foreground", no_argument, NULL, 'f'},
        {"socket", required_argument, NULL, 's'}, {"set", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    daemon_state d = {.control_fd = -1, .running = true};
    d.sets = calloc((size_t)argc, sizeof(char *));
    bool foreground = false;
    int opt;
    while (d.sets && (opt = getopt_long(argc, argv, "c:fs:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            d.config_path = optarg;
            break;
        case 'f':
            foreground = true;
            break;
        case 's':
            d.socket_override = optarg;
            break;
        case 'S':
            d.sets[d.nsets++] = optarg;
            break;
        case 'h':
            usage(stdout);
            free(d.sets);
            return 0;
        default:
            usage(stderr);
            free(d.sets);
            return 2;
        }
    }
    if (d.sets == NULL || optind != argc) {
        usage(stderr);
        free(d.sets);
        return 2;
    }
    if (engine_check_platform() != 0) {
        log_msg("%s (Hyperscan %s needs SSSE3 or better)", engine_strerror(ENGINE_EPLATFORM),
                engine_hyperscan_version());
        free(d.sets);
        return 1;
    }
    engine_global_init(); /* before any thread: libgsf asks for it */
    if (load_config(&d, &d.cfg) != 0) {
        free(d.sets);
        return 2;
    }
    /* One descriptor per client connection: take all the kernel allows this process. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    int ready_fd = -1;
    if (!foreground && daemonize(&ready_fd) != 0) {
        log_msg("cannot detach: %s", strerror(errno));
        return 1;
    }
    int status = 1;
    uint64_t started_ms = 0;
    broker_stats final_stats = {0};
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGPIPE);
    /* Blocked before any thread starts, so every thread inherits the mask. */
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    engine_rules *rules = compile_rules(&d.cfg);
    char err[512] = "";
    if (rules == NULL || sfd < 0)
        goto out;
    make_parent_dir(d.cfg.broker.socket);
    make_parent_dir(d.cfg.broker.control_socket);
    if (etw_start(&d.cfg.trace, err, sizeof(err)) != 0) {
        log_msg("trace: %s", err);
        goto out;
    }
    if (broker_server_create(&d.cfg, rules, systemd_socket(), &d.server, err, sizeof(err)) != 0) {
        log_msg("%s", err);
        goto out;
    }
    if (broker_server_start(d.server) != 0) {
        log_msg("cannot start threads");
        goto out;
    }
    d.control_fd = control_listen(&d.cfg);
    log_msg("serving on %s (control %s)", d.cfg.broker.socket,
            d.control_fd >= 0 ? d.cfg.broker.control_socket : "off");
    started_ms = monotonic_ms();
    {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        ETW_EMIT(BrokerStart, .pid = (uint32_t)getpid(), .version = AMSI_VERSION,
                 .config = d.config_path ? d.config_path : "",
                 .workers = d.cfg.broker.threads ? d.cfg.broker.threads
                                                 : (uint32_t)(cores > 0 ? cores : 1),
                 .rules = (uint32_t)engine_rules_count(rules),
                 .backend = etw_backend_name(etw_backend()));
    }
    if (ready_fd >= 0) {
        char ok = 0;
        (void)!write(ready_fd, &ok, 1);
        close(ready_fd);
        ready_fd = -1;
    }
    while (d.running) {
        struct pollfd p[2] = {{.fd = sfd, .events = POLLIN},
                              {.fd = d.control_fd, .events = POLLIN}};
        int n = poll(p, d.control_fd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGHUP) {
                    char msg[256];
                    reload(&d, msg, sizeof(msg));
                } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
                    d.running = false;
                    d.stop_reason = si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT";
                }
            }
        }
        if (d.control_fd >= 0 && (p[1].revents & POLLIN)) {
            int c = accept4(d.control_fd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0)
                control_serve(&d, c);
        }
    }
    log_msg("stopping: finishing requests in flight");
    broker_server_stop(d.server);
    broker_server_stats(d.server, &final_stats);
    status = 0;
out:
    if (ready_fd >= 0)
        close(ready_fd); /* the parent sees EOF and exits 1 */
    if (d.control_fd >= 0) {
        close(d.control_fd);
        unlink(d.cfg.broker.control_socket);
    }
    broker_server_destroy(d.server); /* closes the connections: their last events */
    if (status == 0)
        ETW_EMIT(BrokerStop, .pid = (uint32_t)getpid(),
                 .reason = d.stop_reason ? d.stop_reason : "SIGTERM",
                 .uptime_ms = monotonic_ms() - started_ms, .requests = final_stats.requests);
    engine_rules_unref(rules);
    if (sfd >= 0)
        close(sfd);
    etw_stop();
    broker_config_cleanup(&d.cfg);
    free(d.sets);
    if (status == 0)
        log_msg("stopped");
    return status;
}
