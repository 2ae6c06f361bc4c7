/*
 * report.c - the declined-request reporter: aggregates declined requests per process and window,
 * and sends one RFC 5424 syslog message per process and window to the administration server.
 *
 * Two halves share one object. The broker's worker threads call ratelimit_report_declined(), which
 * only counts: it hashes the caller's identity (pid and start time), takes the window mutex, finds
 * or claims the caller's slot in the current window's open-addressed table and bumps its counters.
 * That critical section is a few dozen instructions with no system call; the time is the caller's
 * (ratelimit_report_declined_at(), the monotonic time the broker already read for its decision)
 * or read before the lock, and kept monotonic (converted to wall-clock time when the message is
 * formatted, so a step of the wall clock cannot make `last` precede `first`); the copies of the
 * executable path and app name a caller's first decline of a window needs are allocated outside the
 * lock (the lock is then taken a second time). A window's table holds at most `max_procs` callers
 * (the rate-limit table size, at least 16, at most 16384); once it is full, further callers are
 * counted together in one aggregate entry, reported with pid="0", exe="*", app="*" and an empty
 * uid.
 *
 * The sender thread owns all I/O. At the end of each window (and when the reporter stops) it swaps
 * the current table with a spare one under the mutex, then, without the lock, formats one message
 * per caller into the backlog (a bounded FIFO; a message that finds it full is dropped and counted)
 * and sends the backlog in order. A message leaves the backlog only once it was written whole, so
 * a collector that went away gets it again after the reconnection. The number of messages lost
 * since the last one delivered is inserted, as the param `dropped`, into the next message sent.
 *
 * Transports: UDP (one datagram per message, no delivery guarantee: a failed send drops the
 * message), TCP and AF_UNIX stream sockets (RFC 6587 octet counting, "LEN SP MSG"), AF_UNIX
 * datagram sockets (one datagram per message, like /dev/log; `unix:PATH` tries a datagram socket
 * first and falls back to a stream one when the socket at PATH is a stream socket). Before each
 * write on a stream the sender polls the socket for a peer that closed (POLLRDHUP, POLLHUP, or a
 * readable end of file), so that a collector restart costs a reconnection rather than the next
 * message; reconnections back off from 100 ms to 5 s while the collector stays away. Every connect
 * and write is bounded by a timeout (2 s), and the final flush of ratelimit_report_stop() by a
 * budget of 3 s in all, so stop never hangs on a dead collector: it returns within about 5 s at
 * worst (a connect or write the sender thread had in progress, then the final flush).
 *
 * TCP without application acknowledgements (RFC 6587) cannot tell a message the kernel accepted
 * from one the collector read: a collector that dies with messages in its socket buffer loses
 * them. The reporter narrows the window (closed-peer check before each write), nothing more.
 *
 * Lock order: the window mutex and the control mutex are never held together.
 */
#include "ratelimit/report.h"

#include "etw/etw.h"
#include "parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SD_ID  "amsiDeclined@32473"
#define SD_NAME_MAX    32   /* RFC 5424 SD-NAME */
#define MSG_MAX        8192 /* bytes of one message, framing excluded */
#define EXE_PARAM_MAX  2048 /* bytes of the exe value in a message, escapes included */
#define APP_PARAM_MAX  512  /* bytes of the app value in a message */
#define APP_KEEP_MAX   256  /* bytes of a declared app name kept per caller */
#define IO_TIMEOUT_MS  2000 /* one connect, one write */
#define STOP_BUDGET_MS 3000 /* the whole final flush */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define PROCS_MIN      16
#define PROCS_MAX      16384
#define BACKLOG_MAX    1000000
#define MAX_ADDRS      8 /* addresses of a HOST name tried in turn */

/* ------------------------------------------------------------------------------------------ */
/* Configuration.                                                                              */

static const char *const severity_names[8] = {"emerg",   "alert",  "crit", "err",
                                              "warning", "notice", "info", "debug"};

static const struct {
    const char *name;
    int code;
} facility_names[] = {
    {"kern", 0},      {"user", 1},    {"mail", 2},    {"daemon", 3},  {"auth", 4},
    {"syslog", 5},    {"lpr", 6},     {"news", 7},    {"uucp", 8},    {"cron", 9},
    {"authpriv", 10}, {"ftp", 11},    {"local0", 16}, {"local1", 17}, {"local2", 18},
    {"local3", 19},   {"local4", 20}, {"local5", 21}, {"local6", 22}, {"local7", 23},
};

int ratelimit_report_config_init(ratelimit_report_config *cfg)
{
    *cfg = (ratelimit_report_config){
        .syslog = NULL, .window_s = 60, .severity = 4, .facility = 3, .backlog = 1000};
    cfg->sd_id = strdup(DEFAULT_SD_ID);
    return cfg->sd_id == NULL ? -ENOMEM : 0;
}

void ratelimit_report_config_cleanup(ratelimit_report_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->syslog);
    free(cfg->sd_id);
    cfg->syslog = NULL;
    cfg->sd_id = NULL;
}

/* Where messages go, parsed from the `syslog` key. */
typedef enum dest_kind { DEST_UDP, DEST_TCP, DEST_UNIX } dest_kind;

typedef struct dest {
    dest_kind kind;
    char host[256]; /* without the brackets of an IPv6 literal */
    char port[8];
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} dest;

/*
 * Parses "udp://HOST:PORT", "tcp://HOST:PORT" or "unix:PATH" (HOST a name, an IPv4 literal or an
 * IPv6 literal in brackets; PORT 1-65535; PATH absolute). Returns 0 or -EINVAL with err.
 */
static int parse_dest(const char *s, dest *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof(*d));
    const char *rest;
    if (strncmp(s, "unix:", 5) == 0) {
        d->kind = DEST_UNIX;
        rest = s + 5;
        if (strncmp(rest, "//", 2) == 0)
            rest += 2; /* accept unix:///path too */
        if (rest[0] != '/') {
            snprintf(err, errlen, "syslog: '%s': unix:PATH needs an absolute path", s);
            return -EINVAL;
        }
        if (strlen(rest) >= sizeof(d->path)) {
            snprintf(err, errlen, "syslog: '%s': socket path longer than %zu bytes", s,
                     sizeof(d->path) - 1);
            return -EINVAL;
        }
        strcpy(d->path, rest);
        return 0;
    }
    if (strncmp(s, "udp://", 6) == 0) {
        d->kind = DEST_UDP;
    } else if (strncmp(s, "tcp://", 6) == 0) {
        d->kind = DEST_TCP;
    } else {
        snprintf(err, errlen,
                 "syslog: '%s': expected udp://HOST:PORT, tcp://HOST:PORT or unix:PATH", s);
        return -EINVAL;
    }
    rest = s + 6;
    const char *host = rest, *host_end, *port;
    if (*rest == '[') {
        host = rest + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL || host_end[1] != ':') {
            snprintf(err, errlen, "syslog: '%s': expected [IPV6]:PORT", s);
            return -EINVAL;
        }
        port = host_end + 2;
    } else {
        host_end = strrchr(rest, ':');
        if (host_end == NULL) {
            snprintf(err, errlen, "syslog: '%s': missing :PORT", s);
            return -EINVAL;
        }
        if (memchr(rest, ':', (size_t)(host_end - rest)) != NULL) {
            snprintf(err, errlen, "syslog: '%s': an IPv6 address goes in brackets: [::1]:514", s);
            return -EINVAL;
        }
        port = host_end + 1;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0 || hlen >= sizeof(d->host)) {
        snprintf(err, errlen, "syslog: '%s': missing or overlong host", s);
        return -EINVAL;
    }
    for (size_t i = 0; i < hlen; i++)
        if ((unsigned char)host[i] <= ' ' || host[i] == '/' || host[i] == '@' ||
            (unsigned char)host[i] >= 0x7f) {
            snprintf(err, errlen, "syslog: '%s': bad character in host", s);
            return -EINVAL;
        }
    uint64_t p;
    if (!ratelimit__parse_number(port, 1, 65535, &p)) {
        snprintf(err, errlen, "syslog: '%s': port must be a number from 1 to 65535", s);
        return -EINVAL;
    }
    memcpy(d->host, host, hlen);
    snprintf(d->port, sizeof(d->port), "%u", (unsigned)p);
    return 0;
}

/*
 * True when s is a legal SD-ID for our own element: an SD-NAME (1-32 printable US-ASCII
 * characters, none of '=', ' ', ']', '"') of the form NAME@NUMBER, where NAME has no '@' and
 * NUMBER is a private enterprise number (digits, optionally dot-separated sub-identifiers).
 */
static bool valid_sd_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SD_NAME_MAX)
        return false;
    const char *at = strchr(s, '@');
    if (at == NULL || at == s || strchr(at + 1, '@') != NULL)
        return false;
    for (const char *p = s; p < at; p++)
        if (*p < 33 || *p > 126 || *p == '=' || *p == ']' || *p == '"')
            return false;
    const char *num = at + 1;
    if (*num < '0' || *num > '9')
        return false;
    for (const char *p = num; *p != '\0'; p++) {
        if (*p == '.') {
            if (p[1] < '0' || p[1] > '9')
                return false;
        } else if (*p < '0' || *p > '9') {
            return false;
        }
    }
    return true;
}

/* Parses a severity: 0-7 or its RFC 5424 keyword ("warning"; also "error", "warn"). */
static int parse_severity(const char *s)
{
    uint64_t v;
    if (ratelimit__parse_number(s, 0, 7, &v))
        return (int)v;
    for (int i = 0; i < 8; i++)
        if (strcasecmp(s, severity_names[i]) == 0)
            return i;
    if (strcasecmp(s, "error") == 0)
        return 3;
    if (strcasecmp(s, "warn") == 0)
        return 4;
    return -1;
}

/* Parses a facility: 0-23 or its keyword ("daemon", "local0", ...). */
static int parse_facility(const char *s)
{
    uint64_t v;
    if (ratelimit__parse_number(s, 0, 23, &v))
        return (int)v;
    for (size_t i = 0; i < sizeof(facility_names) / sizeof(facility_names[0]); i++)
        if (strcasecmp(s, facility_names[i].name) == 0)
            return facility_names[i].code;
    return -1;
}

/* Replaces *slot with a copy of value. Returns 0 or -ENOMEM (then *slot is unchanged). */
static int replace_string(char **slot, const char *value)
{
    char *copy = strdup(value);
    if (copy == NULL)
        return -ENOMEM;
    free(*slot);
    *slot = copy;
    return 0;
}

int ratelimit_report_config_set(ratelimit_report_config *cfg, const char *key, const char *value,
                                char *err, size_t errlen)
{
    uint64_t v;
    if (cfg == NULL || key == NULL || value == NULL) {
        snprintf(err, errlen, "report: no key or value");
        return -EINVAL;
    }
    if (strcmp(key, "syslog") == 0) {
        if (value[0] == '\0') {
            free(cfg->syslog);
            cfg->syslog = NULL;
            return 0;
        }
        dest d;
        int rc = parse_dest(value, &d, err, errlen);
        return rc < 0 ? rc : replace_string(&cfg->syslog, value);
    }
    if (strcmp(key, "window_s") == 0) {
        if (!ratelimit__parse_number(value, 1, 86400, &v)) {
            snprintf(err, errlen, "window_s: '%s': expected seconds from 1 to 86400", value);
            return -EINVAL;
        }
        cfg->window_s = (uint32_t)v;
        return 0;
    }
    if (strcmp(key, "severity") == 0) {
        int sev = parse_severity(value);
        if (sev < 0) {
            snprintf(err, errlen,
                     "severity: '%s': expected 0-7 or emerg, alert, crit, err, warning, notice, "
                     "info, debug",
                     value);
            return -EINVAL;
        }
        cfg->severity = sev;
        return 0;
    }
    if (strcmp(key, "facility") == 0) {
        int fac = parse_facility(value);
        if (fac < 0) {
            snprintf(err, errlen,
                     "facility: '%s': expected 0-23 or kern, user, mail, daemon, auth, syslog, "
                     "lpr, news, uucp, cron, authpriv, ftp, local0-local7",
                     value);
            return -EINVAL;
        }
        cfg->facility = fac;
        return 0;
    }
    if (strcmp(key, "sd_id") == 0) {
        if (!valid_sd_id(value)) {
            snprintf(err, errlen,
                     "sd_id: '%s': expected NAME@NUMBER, at most 32 printable ASCII characters "
                     "without '=', ']', '\"' or spaces (e.g. amsiDeclined@32473)",
                     value);
            return -EINVAL;
        }
        return replace_string(&cfg->sd_id, value);
    }
    if (strcmp(key, "backlog") == 0) {
        if (!ratelimit__parse_number(value, 1, BACKLOG_MAX, &v)) {
            snprintf(err, errlen, "backlog: '%s': expected a number of messages from 1 to %d",
                     value, BACKLOG_MAX);
            return -EINVAL;
        }
        cfg->backlog = (uint32_t)v;
        return 0;
    }
    snprintf(err, errlen, "unknown key '%s' in section report", key);
    return -EINVAL;
}

/* ------------------------------------------------------------------------------------------ */
/* The reporter's state.                                                                       */

/* One declined caller in one window. tag 0 = free slot. */
typedef struct slot {
    uint64_t tag;
    pid_t pid;
    uid_t uid;
    uint64_t start_time;
    uint64_t count[RATELIMIT_NCLASSES];
    uint64_t first_ns, last_ns; /* CLOCK_MONOTONIC */
    char *exe;                  /* owned */
    char *app;                  /* owned, app_len bytes, not NUL-terminated; may be NULL */
    size_t app_len;
} slot;

/* One window's table: `cap` slots (a power of two, twice max_procs) and the aggregate entry. */
typedef struct window {
    slot *slots;
    uint32_t used;
    slot aggregate; /* tag != 0 once used */
} window;

/* A formatted message waiting in the backlog. sd_end is where ` dropped="N"` goes. */
typedef struct message {
    char *text;
    size_t len;
    size_t sd_end;
    /* What the ReportSent trace event says about it. */
    char *exe, *app; /* owned; NULL when the copy failed */
    uid_t uid;
    uint64_t count, first_ns, last_ns; /* CLOCK_REALTIME */
} message;

struct ratelimit_report {
    /* Immutable after create. */
    bool active; /* a destination is configured */
    dest dest;
    struct sockaddr_storage addr[MAX_ADDRS]; /* what HOST resolved to, in getaddrinfo's order */
    socklen_t addrlen[MAX_ADDRS];
    unsigned naddr;
    uint32_t window_s;
    int pri;
    char sd_id[SD_NAME_MAX + 1];
    char hostname[256];
    char procid[16];
    char collector[128]; /* the destination as configured, for trace events */
    char limit_desc[RATELIMIT_NCLASSES][96];
    uint32_t cap, mask, max_procs;

    /* The window, under wlock. */
    pthread_mutex_t wlock;
    window win[2];
    window *cur;

    /* The sender thread's control, under ctl. */
    pthread_mutex_t ctl;
    pthread_cond_t wake;
    bool stopping;
    bool running;
    bool flushed; /* stop() made its final flush since the last start() */
    pthread_t thread;

    /* Sender-thread only (or the caller of stop() once the thread is joined). */
    message *backlog; /* ring of backlog_cap */
    uint32_t backlog_cap, head, count;
    uint64_t unreported_dropped;
    int fd;
    int sotype;           /* SOCK_STREAM or SOCK_DGRAM once known, for unix: */
    unsigned cur_addr;    /* index of the address in use */
    uint64_t retry_at_ns; /* monotonic; no connection attempt before */
    uint32_t backoff_ms;

    atomic_uint_fast64_t sent, dropped, pending;
};

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Mixes a caller's identity into a tag, never 0. */
static uint64_t caller_tag(pid_t pid, uint64_t start_time)
{
    uint64_t x = ((uint64_t)(uint32_t)pid << 32) ^ start_time ^ 0x9e3779b97f4a7c15u;
    x ^= start_time >> 29;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    x ^= x >> 31;
    return x == 0 ? 1 : x;
}

/* Copies the host name, made a legal RFC 5424 HOSTNAME (printable ASCII, "-" when empty). */
static void load_hostname(char *buf, size_t len)
{
    if (gethostname(buf, len) != 0)
        buf[0] = '\0';
    buf[len - 1] = '\0';
    for (char *p = buf; *p != '\0'; p++)
        if (*p < 33 || *p > 126)
            *p = '_';
    if (buf[0] == '\0')
        snprintf(buf, len, "-");
}

/*
 * Resolves the destination into r->addr (up to MAX_ADDRS addresses, e.g. ::1 and 127.0.0.1 for
 * "localhost"; they are tried in turn when one refuses). Returns 0 or -EINVAL with err.
 */
static int resolve_dest(ratelimit_report *r, char *err, size_t errlen)
{
    if (r->dest.kind == DEST_UNIX) {
        struct sockaddr_un *un = (struct sockaddr_un *)&r->addr[0];
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, r->dest.path);
        r->addrlen[0] = (socklen_t)sizeof(*un);
        r->naddr = 1;
        return 0;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = r->dest.kind == DEST_TCP ? SOCK_STREAM : SOCK_DGRAM,
                             .ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(r->dest.host, r->dest.port, &hints, &res);
    if (rc == EAI_NONAME || rc == EAI_ADDRFAMILY || rc == EAI_NODATA) {
        /* AI_ADDRCONFIG hides loopback-only families on hosts without other addresses. */
        hints.ai_flags = AI_NUMERICSERV;
        rc = getaddrinfo(r->dest.host, r->dest.port, &hints, &res);
    }
    if (rc != 0) {
        snprintf(err, errlen, "syslog: cannot resolve '%s': %s", r->dest.host, gai_strerror(rc));
        return -EINVAL;
    }
    r->naddr = 0;
    for (struct addrinfo *ai = res; ai != NULL && r->naddr < MAX_ADDRS; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(r->addr[0]))
            continue;
        memcpy(&r->addr[r->naddr], ai->ai_addr, ai->ai_addrlen);
        r->addrlen[r->naddr] = ai->ai_addrlen;
        r->naddr++;
    }
    freeaddrinfo(res);
    if (r->naddr == 0) {
        snprintf(err, errlen, "syslog: '%s' has no usable address", r->dest.host);
        return -EINVAL;
    }
    return 0;
}

static void window_release(ratelimit_report *r, window *w);

int ratelimit_report_create(const ratelimit_report_config *cfg, const ratelimit_config *limits,
                            ratelimit_report **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg == NULL || limits == NULL) {
        snprintf(err, errlen, "report: no configuration");
        return -EINVAL;
    }
    if (cfg->window_s < 1 || cfg->severity < 0 || cfg->severity > 7 || cfg->facility < 0 ||
        cfg->facility > 23 || cfg->backlog < 1 || cfg->backlog > BACKLOG_MAX) {
        snprintf(err, errlen, "report: window_s, severity, facility or backlog out of range");
        return -EINVAL;
    }
    const char *sd_id = cfg->sd_id != NULL ? cfg->sd_id : DEFAULT_SD_ID;
    if (!valid_sd_id(sd_id)) {
        snprintf(err, errlen, "sd_id: '%s' is not a legal SD-ID of the form NAME@NUMBER", sd_id);
        return -EINVAL;
    }
    ratelimit_report *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->fd = -1;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->window_s = cfg->window_s;
    r->pri = cfg->facility * 8 + cfg->severity;
    strcpy(r->sd_id, sd_id);
    load_hostname(r->hostname, sizeof(r->hostname));
    snprintf(r->procid, sizeof(r->procid), "%ld", (long)getpid());
    for (int c = 0; c < RATELIMIT_NCLASSES; c++)
        ratelimit_describe(limits, (ratelimit_class)c, r->limit_desc[c], sizeof(r->limit_desc[c]));
    uint32_t procs = limits->table_size;
    procs = procs < PROCS_MIN ? PROCS_MIN : procs > PROCS_MAX ? PROCS_MAX : procs;
    r->max_procs = procs;
    r->cap = 1;
    while (r->cap < 2 * procs)
        r->cap <<= 1;
    r->mask = r->cap - 1;
    r->backlog_cap = cfg->backlog;
    atomic_init(&r->sent, 0);
    atomic_init(&r->dropped, 0);
    atomic_init(&r->pending, 0);

    int rc = 0;
    bool wlock = false, ctl = false, wake = false;
    if (cfg->syslog != NULL && cfg->syslog[0] != '\0') {
        r->active = true;
        snprintf(r->collector, sizeof(r->collector), "%s", cfg->syslog);
        rc = parse_dest(cfg->syslog, &r->dest, err, errlen);
        if (rc == 0)
            rc = resolve_dest(r, err, errlen);
        if (rc < 0)
            goto fail;
        r->sotype = r->dest.kind == DEST_TCP ? SOCK_STREAM : SOCK_DGRAM;
        r->win[0].slots = calloc(r->cap, sizeof(slot));
        r->win[1].slots = calloc(r->cap, sizeof(slot));
        r->backlog = calloc(r->backlog_cap, sizeof(message));
        if (r->win[0].slots == NULL || r->win[1].slots == NULL || r->backlog == NULL) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    r->cur = &r->win[0];
    rc = -pthread_mutex_init(&r->wlock, NULL);
    if (rc < 0)
        goto fail;
    wlock = true;
    rc = -pthread_mutex_init(&r->ctl, NULL);
    if (rc < 0)
        goto fail;
    ctl = true;
    pthread_condattr_t ca;
    rc = -pthread_condattr_init(&ca);
    if (rc < 0)
        goto fail;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    rc = -pthread_cond_init(&r->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (rc < 0)
        goto fail;
    wake = true;
    *out = r;
    return 0;

fail:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "report: out of memory");
    if (wake)
        pthread_cond_destroy(&r->wake);
    if (ctl)
        pthread_mutex_destroy(&r->ctl);
    if (wlock)
        pthread_mutex_destroy(&r->wlock);
    free(r->win[0].slots);
    free(r->win[1].slots);
    free(r->backlog);
    free(r);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Counting (any thread).                                                                      */

/* The slot of tag in w, or the free slot where it would go. Called with wlock held. */
static slot *window_find(const ratelimit_report *r, window *w, uint64_t tag, pid_t pid,
                         uint64_t start_time)
{
    for (uint32_t i = (uint32_t)tag & r->mask;; i = (i + 1) & r->mask) {
        slot *s = &w->slots[i];
        if (s->tag == 0 || (s->tag == tag && s->pid == pid && s->start_time == start_time))
            return s;
    }
}

/* Adds one decline at now to s. Called with wlock held. */
static void slot_count(slot *s, ratelimit_class cls, uint64_t now)
{
    if (s->count[0] + s->count[1] == 0) {
        s->first_ns = s->last_ns = now;
    } else if ((int64_t)(now - s->first_ns) < 0) {
        s->first_ns = now; /* times from several threads need not arrive in order */
    } else if ((int64_t)(now - s->last_ns) > 0) {
        s->last_ns = now;
    }
    s->count[cls]++;
}

static bool app_same(const slot *s, const ratelimit_caller *who)
{
    size_t n = who->app_len > APP_KEEP_MAX ? APP_KEEP_MAX : who->app_len;
    return s->app_len == n && (n == 0 || memcmp(s->app, who->app, n) == 0);
}

void ratelimit_report_declined(ratelimit_report *r, const ratelimit_caller *who,
                               ratelimit_class cls)
{
    if (r == NULL || who == NULL || !r->active)
        return;
    ratelimit_report_declined_at(r, who, cls, clock_ns(CLOCK_MONOTONIC));
}

void ratelimit_report_declined_at(ratelimit_report *r, const ratelimit_caller *who,
                                  ratelimit_class cls, uint64_t now)
{
    if (r == NULL || who == NULL || !r->active || (unsigned)cls >= RATELIMIT_NCLASSES)
        return;
    uint64_t tag = caller_tag(who->pid, who->start_time);

    /* Fast path: the caller already has a slot in this window, with the same app name. */
    pthread_mutex_lock(&r->wlock);
    slot *s = window_find(r, r->cur, tag, who->pid, who->start_time);
    if (s->tag != 0 && app_same(s, who)) {
        slot_count(s, cls, now);
        pthread_mutex_unlock(&r->wlock);
        return;
    }
    pthread_mutex_unlock(&r->wlock);

    /* Slow path: copy the strings without the lock, then look again (the window may have
     * changed meanwhile). A failed allocation degrades to the aggregate entry. */
    size_t app_len = who->app_len > APP_KEEP_MAX ? APP_KEEP_MAX : who->app_len;
    char *exe = strdup(who->exe != NULL ? who->exe : "");
    char *app = app_len > 0 && who->app != NULL ? malloc(app_len) : NULL;
    if (app != NULL)
        memcpy(app, who->app, app_len);
    else
        app_len = 0;
    char *old_app = NULL;

    pthread_mutex_lock(&r->wlock);
    window *w = r->cur;
    s = window_find(r, w, tag, who->pid, who->start_time);
    if (s->tag != 0) {
        if (!app_same(s, who) && (app != NULL || who->app_len == 0)) {
            old_app = s->app;
            s->app = app;
            s->app_len = app_len;
            app = NULL;
        }
    } else if (exe != NULL && w->used < r->max_procs) {
        *s = (slot){.tag = tag,
                    .pid = who->pid,
                    .uid = who->uid,
                    .start_time = who->start_time,
                    .exe = exe,
                    .app = app,
                    .app_len = app_len};
        w->used++;
        exe = NULL;
        app = NULL;
    } else {
        s = &w->aggregate;
        s->tag = 1;
    }
    slot_count(s, cls, now);
    pthread_mutex_unlock(&r->wlock);
    free(exe);
    free(app);
    free(old_app);
}

/* ------------------------------------------------------------------------------------------ */
/* Formatting (sender thread).                                                                 */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool full;
} sbuf;

static void put_bytes(sbuf *b, const char *s, size_t n)
{
    if (b->full || n > b->cap - b->len) {
        b->full = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_str(sbuf *b, const char *s)
{
    put_bytes(b, s, strlen(s));
}

static void put_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_fmt(sbuf *b, const char *fmt, ...)
{
    if (b->full)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= b->cap - b->len)
        b->full = true;
    else
        b->len += (size_t)n;
}

/*
 * Length of the valid UTF-8 sequence at s[0..n) (1-4), or 0 when s starts with an invalid one
 * (stray continuation byte, overlong form, surrogate, code point above U+10FFFF, truncation).
 */
static size_t utf8_valid(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/*
 * Appends s[0..n) as text: invalid UTF-8 bytes and control characters each become U+FFFD; with
 * escape, '"', '\' and ']' get a backslash (RFC 5424 PARAM-VALUE). At most max bytes are written;
 * a longer value is cut at a character boundary and ends with "...".
 */
static void put_text(sbuf *b, const char *s, size_t n, bool escape, size_t max)
{
    static const char repl[] = "\xef\xbf\xbd";
    const unsigned char *u = (const unsigned char *)s;
    size_t written = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_valid(u + i, n - i);
        const char *out = s + i;
        size_t outlen = len;
        char esc[2];
        if (len == 0 || u[i] < 0x20 || u[i] == 0x7f) {
            out = repl;
            outlen = 3;
            len = 1;
        } else if (escape && (s[i] == '"' || s[i] == '\\' || s[i] == ']')) {
            esc[0] = '\\';
            esc[1] = s[i];
            out = esc;
            outlen = 2;
        }
        if (written + outlen > max - 3) {
            put_str(b, "...");
            return;
        }
        put_bytes(b, out, outlen);
        written += outlen;
        i += len;
    }
}

static void put_param(sbuf *b, const char *name, const char *value, size_t n, size_t max)
{
    put_fmt(b, " %s=\"", name);
    put_text(b, value, n, true, max);
    put_bytes(b, "\"", 1);
}

/* Formats a CLOCK_REALTIME time as RFC 3339 UTC with microseconds. */
static void put_time(sbuf *b, uint64_t ns)
{
    time_t sec = (time_t)(ns / 1000000000u);
    struct tm tm;
    if (gmtime_r(&sec, &tm) == NULL) {
        put_str(b, "1970-01-01T00:00:00.000000Z");
        return;
    }
    put_fmt(b, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
            tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ns % 1000000000u / 1000));
}

/*
 * CLOCK_REALTIME minus CLOCK_MONOTONIC, now: added to a monotonic time it gives the wall-clock
 * time. Read between two monotonic readings to narrow the error to a fraction of a microsecond.
 */
static uint64_t realtime_offset(void)
{
    uint64_t m1 = clock_ns(CLOCK_MONOTONIC);
    uint64_t rt = clock_ns(CLOCK_REALTIME);
    uint64_t m2 = clock_ns(CLOCK_MONOTONIC);
    return rt - (m1 + (m2 - m1) / 2);
}

/*
 * Formats the message of one caller (or of the aggregate entry) into m; offset converts the
 * slot's monotonic times to wall-clock times. Returns false when out of memory.
 */
static bool format_message(const ratelimit_report *r, const slot *s, bool aggregate,
                           uint64_t offset, message *m)
{
    char *text = malloc(MSG_MAX);
    if (text == NULL)
        return false;
    sbuf b = {.p = text, .cap = MSG_MAX};
    uint64_t total = s->count[RATELIMIT_SCAN] + s->count[RATELIMIT_NOTIFY];

    put_fmt(&b, "<%d>1 ", r->pri);
    put_time(&b, clock_ns(CLOCK_REALTIME));
    put_fmt(&b, " %s amsid %s declined [%s", r->hostname, r->procid, r->sd_id);
    if (aggregate) {
        put_str(&b, " pid=\"0\" uid=\"\" exe=\"*\" app=\"*\"");
    } else {
        put_fmt(&b, " pid=\"%ld\" uid=\"%lu\"", (long)s->pid, (unsigned long)s->uid);
        put_param(&b, "exe", s->exe, strlen(s->exe), EXE_PARAM_MAX);
        put_param(&b, "app", s->app != NULL ? s->app : "", s->app_len, APP_PARAM_MAX);
    }
    put_fmt(&b, " count=\"%" PRIu64 "\" first=\"", total);
    put_time(&b, s->first_ns + offset);
    put_str(&b, "\" last=\"");
    put_time(&b, s->last_ns + offset);
    put_str(&b, "\" limit=\"");
    bool both = s->count[RATELIMIT_SCAN] > 0 && s->count[RATELIMIT_NOTIFY] > 0;
    for (int c = 0; c < RATELIMIT_NCLASSES; c++)
        if (s->count[c] > 0) {
            if (both && c == RATELIMIT_NOTIFY)
                put_str(&b, "; ");
            put_text(&b, r->limit_desc[c], strlen(r->limit_desc[c]), true,
                     sizeof(r->limit_desc[c]));
        }
    put_fmt(&b, "\" scans=\"%" PRIu64 "\" notifications=\"%" PRIu64 "\"", s->count[RATELIMIT_SCAN],
            s->count[RATELIMIT_NOTIFY]);
    size_t sd_end = b.len;
    put_str(&b, "] ");
    const char *plural = total == 1 ? "" : "s";
    if (aggregate) {
        put_fmt(&b,
                "%" PRIu64 " request%s declined by the rate limit from processes that found the "
                "window's table of %u processes full",
                total, plural, r->max_procs);
    } else {
        put_fmt(&b, "%" PRIu64 " request%s declined by the rate limit from pid %ld (", total,
                plural, (long)s->pid);
        put_text(&b, s->exe, strlen(s->exe), false, 256);
        put_str(&b, ")");
    }
    if (b.full) {
        /* Cannot happen with the bounds above; keep the message well-formed regardless. */
        free(text);
        return false;
    }
    m->text = text;
    m->len = b.len;
    m->sd_end = sd_end;
    m->exe = strdup(aggregate ? "*" : s->exe);
    m->app = aggregate ? strdup("*") : strndup(s->app ? s->app : "", s->app_len);
    m->uid = aggregate ? 0 : s->uid;
    m->count = total;
    m->first_ns = s->first_ns + offset;
    m->last_ns = s->last_ns + offset;
    return true;
}

/* ReportSent: a message went to the collector (ok) or was given up (dropped). */
static void trace_report(const ratelimit_report *r, const message *m, bool ok)
{
    ETW_EMIT(ReportSent, .exe = m->exe, .uid = (uint32_t)m->uid, .appname = m->app,
             .count = m->count, .first_ns = m->first_ns, .last_ns = m->last_ns,
             .collector = r->collector, .ok = ok);
}

/* Frees what a message owns. */
static void message_free(message *m)
{
    free(m->text);
    free(m->exe);
    free(m->app);
}

/* ------------------------------------------------------------------------------------------ */
/* The backlog and the transports (sender thread).                                             */

static void count_dropped(ratelimit_report *r, uint64_t n)
{
    r->unreported_dropped += n;
    atomic_fetch_add_explicit(&r->dropped, n, memory_order_relaxed);
}

/* Queues m (taking its text) or drops it when the backlog is full. */
static void backlog_push(ratelimit_report *r, message *m)
{
    if (r->count == r->backlog_cap) {
        trace_report(r, m, false);
        message_free(m);
        count_dropped(r, 1);
        return;
    }
    r->backlog[(r->head + r->count) % r->backlog_cap] = *m;
    r->count++;
    atomic_store_explicit(&r->pending, r->count, memory_order_relaxed);
}

static void backlog_pop(ratelimit_report *r)
{
    message_free(&r->backlog[r->head]);
    r->head = (r->head + 1) % r->backlog_cap;
    r->count--;
    atomic_store_explicit(&r->pending, r->count, memory_order_relaxed);
}

static void close_fd(ratelimit_report *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

/* Milliseconds left until deadline (monotonic ns), capped at cap_ms; 0 once passed. */
static int ms_left(uint64_t deadline, int cap_ms)
{
    uint64_t now = clock_ns(CLOCK_MONOTONIC);
    if (now >= deadline)
        return 0;
    uint64_t ms = (deadline - now + 999999) / 1000000;
    return ms > (uint64_t)cap_ms ? cap_ms : (int)ms;
}

/* Waits for events on fd for at most ms. Returns the revents, 0 on timeout. */
static short wait_fd(int fd, short events, int ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, ms);
        if (n > 0)
            return p.revents;
        if (n == 0 || errno != EINTR)
            return 0;
    }
}

/*
 * Opens a non-blocking socket of type sotype to address i of the destination, waiting for a
 * stream connection until the deadline (at most IO_TIMEOUT_MS). Returns the socket or a negative
 * errno.
 */
static int open_socket_to(ratelimit_report *r, unsigned i, int sotype, uint64_t deadline)
{
    int fd = socket(r->addr[i].ss_family, sotype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&r->addr[i], r->addrlen[i]) == 0)
        return fd;
    int e = errno;
    if (e == EINPROGRESS || e == EAGAIN) {
        short ev = wait_fd(fd, POLLOUT, ms_left(deadline, IO_TIMEOUT_MS));
        socklen_t len = sizeof(e);
        if (ev == 0)
            e = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
            e = errno;
        if (e == 0)
            return fd;
    }
    close(fd);
    return -e;
}

/*
 * Opens a socket to the destination: the address that worked last first, then the others in
 * turn. Returns the socket or the negative errno of the last attempt.
 */
static int open_socket(ratelimit_report *r, int sotype, uint64_t deadline)
{
    int fd = -ECONNREFUSED;
    for (unsigned k = 0; k < r->naddr; k++) {
        unsigned i = (r->cur_addr + k) % r->naddr;
        fd = open_socket_to(r, i, sotype, deadline);
        if (fd >= 0) {
            r->cur_addr = i;
            return fd;
        }
    }
    return fd;
}

/* Connects when not connected, unless a back-off is in force. Returns true when connected. */
static bool ensure_connected(ratelimit_report *r, uint64_t deadline, bool ignore_backoff)
{
    if (r->fd >= 0)
        return true;
    uint64_t now = clock_ns(CLOCK_MONOTONIC);
    if (!ignore_backoff && now < r->retry_at_ns)
        return false;
    int fd = open_socket(r, r->sotype, deadline);
    if (fd == -EPROTOTYPE && r->dest.kind == DEST_UNIX) {
        /* The socket at PATH is of the other type: switch for good. */
        r->sotype = r->sotype == SOCK_DGRAM ? SOCK_STREAM : SOCK_DGRAM;
        fd = open_socket(r, r->sotype, deadline);
    }
    if (fd < 0) {
        r->retry_at_ns = clock_ns(CLOCK_MONOTONIC) + (uint64_t)r->backoff_ms * 1000000u;
        r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
        return false;
    }
    r->fd = fd;
    r->backoff_ms = BACKOFF_MIN_MS;
    r->retry_at_ns = 0;
    return true;
}

/* True when the peer of a stream socket has closed its end (or the socket failed). */
static bool peer_closed(int fd)
{
    for (;;) {
        short ev = wait_fd(fd, POLLIN | POLLRDHUP, 0);
        if (ev & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
            return true;
        if (!(ev & POLLIN))
            return false;
        char junk[512]; /* a collector has nothing to say; discard what it says anyway */
        ssize_t n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
        if (n == 0)
            return true;
        if (n < 0)
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
}

/* Outcome of one send. */
typedef enum send_result { SENT, RETRY, DROP } send_result;

/*
 * Writes the whole iovec on a stream socket before the deadline. Returns false on any error or
 * timeout (the connection is then unusable: part of a frame may have gone).
 */
static bool write_all(int fd, struct iovec *iov, int iovcnt, uint64_t deadline)
{
    while (iovcnt > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return false;
            short ev = wait_fd(fd, POLLOUT, ms_left(deadline, IO_TIMEOUT_MS));
            if (!(ev & POLLOUT))
                return false;
            continue;
        }
        size_t done = (size_t)n;
        while (iovcnt > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return true;
}

/* Sends one datagram before the deadline. */
static send_result send_datagram(ratelimit_report *r, struct iovec *iov, int iovcnt,
                                 uint64_t deadline)
{
    bool retried = false;
    for (;;) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        if (sendmsg(r->fd, &mh, MSG_NOSIGNAL) >= 0)
            return SENT;
        int e = errno;
        if (e == EINTR)
            continue;
        if (e == EAGAIN || e == EWOULDBLOCK) {
            if (wait_fd(r->fd, POLLOUT, ms_left(deadline, IO_TIMEOUT_MS)) & POLLOUT)
                continue;
            return r->dest.kind == DEST_UDP ? DROP : RETRY;
        }
        if (e == EMSGSIZE)
            return DROP;
        if (r->dest.kind == DEST_UDP) {
            /* ECONNREFUSED reports an earlier datagram that found no listener: try this one
             * again, then on the next address of the host (e.g. 127.0.0.1 after ::1). */
            if (e == ECONNREFUSED && !retried) {
                retried = true;
                continue;
            }
            if (e == ECONNREFUSED && r->naddr > 1) {
                close_fd(r);
                r->cur_addr = (r->cur_addr + 1) % r->naddr;
                int fd = open_socket_to(r, r->cur_addr, SOCK_DGRAM, deadline);
                if (fd >= 0)
                    r->fd = fd;
            }
            return DROP;
        }
        /* unix datagram: the receiver went away or was re-created; reconnect and keep it. */
        close_fd(r);
        return RETRY;
    }
}

/*
 * Sends the message at the head of the backlog, with the unreported drop count inserted. Returns
 * SENT, RETRY (not connected or the connection failed; the message stays) or DROP.
 */
static send_result send_head(ratelimit_report *r, uint64_t deadline, bool ignore_backoff)
{
    if (r->fd >= 0 && r->sotype == SOCK_STREAM && peer_closed(r->fd)) {
        /* The collector closed (e.g. restarted): reconnect at once, before writing. */
        close_fd(r);
        ignore_backoff = true;
    }
    if (!ensure_connected(r, deadline, ignore_backoff))
        return RETRY;
    message *m = &r->backlog[r->head];
    char dropped[48] = "";
    size_t dlen = 0;
    uint64_t nd = r->unreported_dropped;
    if (nd > 0)
        dlen = (size_t)snprintf(dropped, sizeof(dropped), " dropped=\"%" PRIu64 "\"", nd);
    char frame[24];
    struct iovec iov[4];
    int k = 0;
    if (r->sotype == SOCK_STREAM) {
        int n = snprintf(frame, sizeof(frame), "%zu ", m->len + dlen);
        iov[k++] = (struct iovec){frame, (size_t)n};
    }
    iov[k++] = (struct iovec){m->text, m->sd_end};
    if (dlen > 0)
        iov[k++] = (struct iovec){dropped, dlen};
    iov[k++] = (struct iovec){m->text + m->sd_end, m->len - m->sd_end};

    send_result res;
    if (r->sotype == SOCK_STREAM) {
        res = write_all(r->fd, iov, k, deadline) ? SENT : RETRY;
        if (res == RETRY)
            close_fd(r);
    } else {
        res = send_datagram(r, iov, k, deadline);
    }
    if (res == SENT) {
        r->unreported_dropped -= nd;
        atomic_fetch_add_explicit(&r->sent, 1, memory_order_relaxed);
    }
    return res;
}

/*
 * Sends the backlog in order until it is empty, the transport is down, or the deadline passes.
 * With final, connection attempts ignore the back-off (the last chance at stop).
 */
static void flush_backlog(ratelimit_report *r, uint64_t deadline, bool final)
{
    bool reconnected = false;
    while (r->count > 0 && clock_ns(CLOCK_MONOTONIC) < deadline) {
        send_result res = send_head(r, deadline, final);
        if (res == SENT || res == DROP)
            trace_report(r, &r->backlog[r->head], res == SENT);
        if (res == SENT) {
            backlog_pop(r);
        } else if (res == DROP) {
            backlog_pop(r);
            count_dropped(r, 1);
        } else if (r->fd < 0 && !reconnected && r->retry_at_ns == 0) {
            /* The connection broke mid-write: one immediate reconnection before backing off. */
            reconnected = true;
        } else {
            return;
        }
    }
}

/* Frees the strings of w's slots and clears it for reuse. */
static void window_release(ratelimit_report *r, window *w)
{
    if (w->slots == NULL)
        return;
    for (uint32_t i = 0; i < r->cap; i++) {
        if (w->slots[i].tag != 0) {
            free(w->slots[i].exe);
            free(w->slots[i].app);
            w->slots[i] = (slot){0};
        }
    }
    w->aggregate = (slot){0};
    w->used = 0;
}

/*
 * Ends the current window: swaps it out, formats one message per caller into the backlog, sending
 * as it goes so that a large window does not overflow a backlog that a live collector drains.
 */
static void end_window(ratelimit_report *r, uint64_t deadline, bool final)
{
    pthread_mutex_lock(&r->wlock);
    window *w = r->cur;
    r->cur = w == &r->win[0] ? &r->win[1] : &r->win[0];
    pthread_mutex_unlock(&r->wlock);

    uint64_t offset = realtime_offset();
    for (uint32_t i = 0; i <= r->cap; i++) {
        bool aggregate = i == r->cap;
        slot *s = aggregate ? &w->aggregate : &w->slots[i];
        if (s->tag == 0)
            continue;
        message m;
        if (format_message(r, s, aggregate, offset, &m))
            backlog_push(r, &m);
        else
            count_dropped(r, 1);
        if (r->count == r->backlog_cap)
            flush_backlog(r, deadline, final);
    }
    window_release(r, w);
    flush_backlog(r, deadline, final);
}

/* ------------------------------------------------------------------------------------------ */
/* The sender thread.                                                                          */

static struct timespec to_timespec(uint64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000u),
                             .tv_nsec = (long)(ns % 1000000000u)};
}

static void *sender_main(void *arg)
{
    ratelimit_report *r = arg;
    uint64_t window_ns = (uint64_t)r->window_s * 1000000000u;
    uint64_t window_end = clock_ns(CLOCK_MONOTONIC) + window_ns;
    /* Connect at once (a failure only starts the back-off): the collector's connection is there
     * from the start, like the broker's other descriptors, and an unreachable collector shows
     * in the counters before the first report. */
    (void)ensure_connected(r, clock_ns(CLOCK_MONOTONIC) + (uint64_t)IO_TIMEOUT_MS * 1000000u, true);

    pthread_mutex_lock(&r->ctl);
    while (!r->stopping) {
        uint64_t wake = window_end;
        if (r->count > 0 && r->retry_at_ns < wake)
            wake = r->retry_at_ns;
        struct timespec ts = to_timespec(wake);
        pthread_cond_timedwait(&r->wake, &r->ctl, &ts);
        if (r->stopping)
            break;
        pthread_mutex_unlock(&r->ctl);
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        if (now >= window_end) {
            window_end += window_ns;
            if (window_end <= now)
                window_end = now + window_ns;
            end_window(r, now + (uint64_t)IO_TIMEOUT_MS * 1000000u, false);
        } else if (r->count > 0 && now >= r->retry_at_ns) {
            flush_backlog(r, now + (uint64_t)IO_TIMEOUT_MS * 1000000u, false);
        }
        pthread_mutex_lock(&r->ctl);
    }
    pthread_mutex_unlock(&r->ctl);
    return NULL;
}

int ratelimit_report_start(ratelimit_report *r)
{
    if (r == NULL)
        return -EINVAL;
    if (!r->active)
        return 0;
    pthread_mutex_lock(&r->ctl);
    if (r->running) {
        pthread_mutex_unlock(&r->ctl);
        return -EALREADY;
    }
    r->stopping = false;
    r->flushed = false;
    int rc = pthread_create(&r->thread, NULL, sender_main, r);
    if (rc == 0)
        r->running = true;
    pthread_mutex_unlock(&r->ctl);
    return -rc;
}

void ratelimit_report_stop(ratelimit_report *r)
{
    if (r == NULL || !r->active)
        return;
    pthread_mutex_lock(&r->ctl);
    bool running = r->running;
    r->stopping = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->ctl);
    if (running)
        pthread_join(r->thread, NULL);
    pthread_mutex_lock(&r->ctl);
    r->running = false;
    pthread_mutex_unlock(&r->ctl);

    /* The final flush, on this thread now that the sender is gone. */
    uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + (uint64_t)STOP_BUDGET_MS * 1000000u;
    end_window(r, deadline, true);
    close_fd(r);
    r->flushed = true;
}

void ratelimit_report_stats_get(ratelimit_report *r, ratelimit_report_stats *st)
{
    if (st == NULL)
        return;
    if (r == NULL) {
        *st = (ratelimit_report_stats){0};
        return;
    }
    st->sent = atomic_load_explicit(&r->sent, memory_order_relaxed);
    st->dropped = atomic_load_explicit(&r->dropped, memory_order_relaxed);
    st->pending = atomic_load_explicit(&r->pending, memory_order_relaxed);
}

void ratelimit_report_destroy(ratelimit_report *r)
{
    if (r == NULL)
        return;
    if (!r->flushed)
        ratelimit_report_stop(r);
    if (r->active) {
        while (r->count > 0)
            backlog_pop(r);
        window_release(r, &r->win[0]);
        window_release(r, &r->win[1]);
    }
    free(r->win[0].slots);
    free(r->win[1].slots);
    free(r->backlog);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->ctl);
    pthread_mutex_destroy(&r->wlock);
    free(r);
}
