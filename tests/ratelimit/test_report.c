/*
 * test_report.c - tests of ratelimit/src/report.c, the declined-request reporter, against real
 * loopback collectors created here (UDP, TCP, AF_UNIX datagram and stream): configuration,
 * message form (parsed strictly), aggregation, windows, the flush at stop, a TCP collector
 * restart, backlog overflow, the aggregate entry of a full window, and many threads declining
 * while the sender flushes (the TSan case).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ratelimit/report.h"
#include "syslog_parse.h"

#define WAIT_MS 10000 /* how long a test waits for a message that must come */

/* ------------------------------------------------------------------------------------------ */
/* Loopback collectors.                                                                        */

static uint64_t now_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A UDP socket bound to 127.0.0.1 (port 0 = any); *port gets the port. */
static int udp_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(*port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A TCP listener on 127.0.0.1:*port (0 = any), SO_REUSEADDR so that it can be reopened. */
static int tcp_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(*port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* An AF_UNIX socket of type type bound at path (listening when a stream). */
static int unix_listener(const char *path, int type)
{
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    unlink(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (type == SOCK_STREAM)
        assert_int_equal(listen(fd, 4), 0);
    return fd;
}

static bool readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1;
}

/* Accepts one connection within ms; -1 on timeout. */
static int accept_within(int lfd, int ms)
{
    if (!readable(lfd, ms))
        return -1;
    return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

/* Receives one datagram within ms into buf (NUL-terminated). Returns its length or -1. */
static ssize_t recv_datagram(int fd, char *buf, size_t cap, int ms)
{
    if (!readable(fd, ms))
        return -1;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

/* Reads exactly n bytes within ms. */
static bool read_exact(int fd, char *buf, size_t n, int ms)
{
    uint64_t deadline = now_ns(CLOCK_MONOTONIC) + (uint64_t)ms * 1000000u;
    size_t got = 0;
    while (got < n) {
        uint64_t now = now_ns(CLOCK_MONOTONIC);
        if (now >= deadline || !readable(fd, (int)((deadline - now) / 1000000u) + 1))
            return false;
        ssize_t k = recv(fd, buf + got, n - got, 0);
        if (k <= 0)
            return false;
        got += (size_t)k;
    }
    return true;
}

/* Reads one RFC 6587 octet-counted frame ("LEN SP MSG") within ms. Returns its length or -1. */
static ssize_t recv_frame(int fd, char *buf, size_t cap, int ms)
{
    char digits[12];
    size_t n = 0;
    for (;;) {
        char c;
        if (!read_exact(fd, &c, 1, ms))
            return -1;
        if (c == ' ')
            break;
        assert_true(c >= '0' && c <= '9');
        assert_true(n < sizeof(digits) - 1);
        digits[n++] = c;
    }
    digits[n] = '\0';
    assert_true(n > 0 && digits[0] != '0');
    size_t len = strtoul(digits, NULL, 10);
    assert_true(len < cap);
    if (!read_exact(fd, buf, len, ms))
        return -1;
    buf[len] = '\0';
    return (ssize_t)len;
}

/* ------------------------------------------------------------------------------------------ */
/* Reporter set-up.                                                                            */

static ratelimit_config limits_default(void)
{
    ratelimit_config l;
    ratelimit_config_init(&l);
    return l;
}

/* Creates a started reporter for dest with extra key/value pairs (NULL-terminated). */
static ratelimit_report *reporter(const char *dest, const ratelimit_config *limits, ...)
{
    ratelimit_report_config cfg;
    assert_int_equal(ratelimit_report_config_init(&cfg), 0);
    char err[256] = "";
    assert_int_equal(ratelimit_report_config_set(&cfg, "syslog", dest, err, sizeof(err)), 0);
    va_list ap;
    va_start(ap, limits);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (k == NULL)
            break;
        const char *v = va_arg(ap, const char *);
        int rc = ratelimit_report_config_set(&cfg, k, v, err, sizeof(err));
        if (rc != 0)
            fail_msg("%s=%s: %s", k, v, err);
    }
    va_end(ap);
    ratelimit_config l = limits_default();
    ratelimit_report *r = NULL;
    int rc = ratelimit_report_create(&cfg, limits != NULL ? limits : &l, &r, err, sizeof(err));
    if (rc != 0)
        fail_msg("create: %s", err);
    ratelimit_report_config_cleanup(&cfg);
    assert_int_equal(ratelimit_report_start(r), 0);
    return r;
}

static ratelimit_caller caller(pid_t pid, uint64_t start, uid_t uid, const char *exe,
                               const char *app)
{
    return (ratelimit_caller){.pid = pid,
                              .uid = uid,
                              .start_time = start,
                              .exe = exe,
                              .app = app,
                              .app_len = app != NULL ? strlen(app) : 0};
}

static void decline_n(ratelimit_report *r, const ratelimit_caller *c, ratelimit_class cls,
                      unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        ratelimit_report_declined(r, c, cls);
}

static char dest_buf[160];

static const char *dest_inet(const char *scheme, uint16_t port)
{
    snprintf(dest_buf, sizeof(dest_buf), "%s://127.0.0.1:%u", scheme, port);
    return dest_buf;
}

static uint64_t param_u64(const syslog_msg *m, const char *name)
{
    const char *v = syslog_param_get(m, name);
    if (v == NULL)
        fail_msg("param %s missing", name);
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    assert_true(*v != '\0' && *end == '\0');
    return x;
}

/* Receives and parses one datagram message; fails the test when none comes. */
static void recv_udp_msg(int fd, syslog_msg *m)
{
    static char buf[65536];
    ssize_t n = recv_datagram(fd, buf, sizeof(buf), WAIT_MS);
    if (n < 0)
        fail_msg("no message within %d ms", WAIT_MS);
    if (!syslog_parse(buf, (size_t)n, m))
        fail_msg("not RFC 5424: %s", buf);
}

static void recv_tcp_msg(int fd, syslog_msg *m)
{
    static char buf[65536];
    ssize_t n = recv_frame(fd, buf, sizeof(buf), WAIT_MS);
    if (n < 0)
        fail_msg("no frame within %d ms", WAIT_MS);
    if (!syslog_parse(buf, (size_t)n, m))
        fail_msg("not RFC 5424: %s", buf);
}

/* ------------------------------------------------------------------------------------------ */
/* Configuration.                                                                              */

static void test_config_defaults(void **state)
{
    (void)state;
    ratelimit_report_config cfg;
    assert_int_equal(ratelimit_report_config_init(&cfg), 0);
    assert_null(cfg.syslog);
    assert_int_equal(cfg.window_s, 60);
    assert_int_equal(cfg.severity, 4);
    assert_int_equal(cfg.facility, 3);
    assert_string_equal(cfg.sd_id, "amsiDeclined@32473");
    assert_int_equal(cfg.backlog, 1000);
    ratelimit_report_config_cleanup(&cfg);
    ratelimit_report_config_cleanup(NULL);
}

static void test_config_good(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value;
        int severity, facility;
    } cases[] = {
        {"severity", "0", 0, -1},         {"severity", "7", 7, -1},
        {"severity", "emerg", 0, -1},     {"severity", "alert", 1, -1},
        {"severity", "crit", 2, -1},      {"severity", "err", 3, -1},
        {"severity", "warning", 4, -1},   {"severity", "notice", 5, -1},
        {"severity", "info", 6, -1},      {"severity", "DEBUG", 7, -1},
        {"facility", "0", -1, 0},         {"facility", "23", -1, 23},
        {"facility", "kern", -1, 0},      {"facility", "user", -1, 1},
        {"facility", "mail", -1, 2},      {"facility", "daemon", -1, 3},
        {"facility", "auth", -1, 4},      {"facility", "syslog", -1, 5},
        {"facility", "lpr", -1, 6},       {"facility", "news", -1, 7},
        {"facility", "uucp", -1, 8},      {"facility", "cron", -1, 9},
        {"facility", "authpriv", -1, 10}, {"facility", "ftp", -1, 11},
        {"facility", "local0", -1, 16},   {"facility", "local7", -1, 23},
    };
    char err[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ratelimit_report_config cfg;
        assert_int_equal(ratelimit_report_config_init(&cfg), 0);
        assert_int_equal(
            ratelimit_report_config_set(&cfg, cases[i].key, cases[i].value, err, sizeof(err)), 0);
        if (cases[i].severity >= 0)
            assert_int_equal(cfg.severity, cases[i].severity);
        if (cases[i].facility >= 0)
            assert_int_equal(cfg.facility, cases[i].facility);
        ratelimit_report_config_cleanup(&cfg);
    }

    static const char *const dests[] = {"udp://127.0.0.1:514", "tcp://localhost:6514",
                                        "udp://[::1]:1",       "tcp://[2001:db8::1]:65535",
                                        "unix:/dev/log",       "tcp://collector.example.com:601"};
    for (size_t i = 0; i < sizeof(dests) / sizeof(dests[0]); i++) {
        ratelimit_report_config cfg;
        assert_int_equal(ratelimit_report_config_init(&cfg), 0);
        int rc = ratelimit_report_config_set(&cfg, "syslog", dests[i], err, sizeof(err));
        if (rc != 0)
            fail_msg("%s: %s", dests[i], err);
        assert_string_equal(cfg.syslog, dests[i]);
        assert_int_equal(ratelimit_report_config_set(&cfg, "syslog", "", err, sizeof(err)), 0);
        assert_null(cfg.syslog);
        ratelimit_report_config_cleanup(&cfg);
    }

    ratelimit_report_config cfg;
    assert_int_equal(ratelimit_report_config_init(&cfg), 0);
    assert_int_equal(ratelimit_report_config_set(&cfg, "window_s", "1", err, sizeof(err)), 0);
    assert_int_equal(cfg.window_s, 1);
    assert_int_equal(ratelimit_report_config_set(&cfg, "backlog", "2", err, sizeof(err)), 0);
    assert_int_equal(cfg.backlog, 2);
    assert_int_equal(ratelimit_report_config_set(&cfg, "sd_id", "x@1", err, sizeof(err)), 0);
    assert_string_equal(cfg.sd_id, "x@1");
    assert_int_equal(
        ratelimit_report_config_set(&cfg, "sd_id", "siteDeclined@12345.1.2", err, sizeof(err)), 0);
    /* 32 characters, the most an SD-NAME may have. */
    assert_int_equal(ratelimit_report_config_set(&cfg, "sd_id", "abcdefghijklmnopqrstuvwxyz@12345",
                                                 err, sizeof(err)),
                     0);
    ratelimit_report_config_cleanup(&cfg);
}

static void test_config_bad(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value, *says;
    } cases[] = {
        {"syslog", "127.0.0.1:514", "expected udp://"},
        {"syslog", "http://127.0.0.1:514", "expected udp://"},
        {"syslog", "udp://127.0.0.1", "missing :PORT"},
        {"syslog", "udp://127.0.0.1:", "port"},
        {"syslog", "udp://127.0.0.1:0", "port"},
        {"syslog", "udp://127.0.0.1:65536", "port"},
        {"syslog", "tcp://127.0.0.1:51x", "port"},
        {"syslog", "tcp://:514", "host"},
        {"syslog", "tcp://::1:514", "brackets"},
        {"syslog", "tcp://[::1]514", "[IPV6]:PORT"},
        {"syslog", "tcp://[::1:514", "[IPV6]:PORT"},
        {"syslog", "tcp://a b:514", "bad character"},
        {"syslog", "unix:relative/path", "absolute"},
        {"syslog", "unix:", "absolute"},
        {"window_s", "0", "window_s"},
        {"window_s", "-1", "window_s"},
        {"window_s", "ten", "window_s"},
        {"window_s", "86401", "window_s"},
        {"severity", "8", "severity"},
        {"severity", "warnings", "severity"},
        {"severity", "", "severity"},
        {"facility", "24", "facility"},
        {"facility", "local8", "facility"},
        {"facility", "-3", "facility"},
        {"sd_id", "", "sd_id"},
        {"sd_id", "amsiDeclined", "NAME@NUMBER"},
        {"sd_id", "amsi Declined@32473", "sd_id"},
        {"sd_id", "amsi=x@32473", "sd_id"},
        {"sd_id", "amsi]x@32473", "sd_id"},
        {"sd_id", "amsi\"x@32473", "sd_id"},
        {"sd_id", "@32473", "sd_id"},
        {"sd_id", "amsi@", "sd_id"},
        {"sd_id", "amsi@32a", "sd_id"},
        {"sd_id", "amsi@1@2", "sd_id"},
        {"sd_id", "amsi@1.", "sd_id"},
        {"sd_id", "abcdefghijklmnopqrstuvwxyz@123456", "sd_id"}, /* 33 characters */
        {"backlog", "0", "backlog"},
        {"backlog", "1000001", "backlog"},
        {"backlog", "lots", "backlog"},
        {"colour", "blue", "unknown key"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ratelimit_report_config cfg;
        assert_int_equal(ratelimit_report_config_init(&cfg), 0);
        char err[256] = "";
        int rc = ratelimit_report_config_set(&cfg, cases[i].key, cases[i].value, err, sizeof(err));
        if (rc != -EINVAL)
            fail_msg("%s=%s accepted", cases[i].key, cases[i].value);
        if (strstr(err, cases[i].says) == NULL)
            fail_msg("%s=%s: error '%s' does not say '%s'", cases[i].key, cases[i].value, err,
                     cases[i].says);
        /* A rejected value leaves the configuration as it was. */
        assert_null(cfg.syslog);
        assert_int_equal(cfg.window_s, 60);
        assert_int_equal(cfg.severity, 4);
        assert_int_equal(cfg.facility, 3);
        assert_string_equal(cfg.sd_id, "amsiDeclined@32473");
        assert_int_equal(cfg.backlog, 1000);
        ratelimit_report_config_cleanup(&cfg);
    }
}

static void test_create_bad(void **state)
{
    (void)state;
    ratelimit_report_config cfg;
    assert_int_equal(ratelimit_report_config_init(&cfg), 0);
    ratelimit_config l = limits_default();
    char err[256] = "";
    static int dummy;
    ratelimit_report *r = (void *)&dummy; /* must be cleared on failure */
    cfg.syslog = strdup("udp://no-such-host.invalid:514");
    assert_int_equal(ratelimit_report_create(&cfg, &l, &r, err, sizeof(err)), -EINVAL);
    assert_null(r);
    assert_non_null(strstr(err, "no-such-host.invalid"));

    free(cfg.syslog);
    cfg.syslog = strdup("udp://127.0.0.1:514");
    cfg.window_s = 0; /* set directly, bypassing config_set */
    assert_int_equal(ratelimit_report_create(&cfg, &l, &r, err, sizeof(err)), -EINVAL);
    cfg.window_s = 60;
    free(cfg.sd_id);
    cfg.sd_id = strdup("no id");
    assert_int_equal(ratelimit_report_create(&cfg, &l, &r, err, sizeof(err)), -EINVAL);
    assert_int_equal(ratelimit_report_create(NULL, &l, &r, err, sizeof(err)), -EINVAL);
    ratelimit_report_config_cleanup(&cfg);

    /* NULL is accepted wherever the header says so. */
    ratelimit_report_destroy(NULL);
    ratelimit_report_stop(NULL);
    ratelimit_report_declined(NULL, NULL, RATELIMIT_SCAN);
    assert_int_equal(ratelimit_report_start(NULL), -EINVAL);
    ratelimit_report_stats st = {1, 1, 1};
    ratelimit_report_stats_get(NULL, &st);
    assert_int_equal(st.sent + st.dropped + st.pending, 0);
}

/* With no destination the reporter is off: it counts nothing and sends nothing. */
static void test_off(void **state)
{
    (void)state;
    ratelimit_report_config cfg;
    assert_int_equal(ratelimit_report_config_init(&cfg), 0);
    ratelimit_config l = limits_default();
    char err[256];
    ratelimit_report *r = NULL;
    assert_int_equal(ratelimit_report_create(&cfg, &l, &r, err, sizeof(err)), 0);
    assert_int_equal(ratelimit_report_start(r), 0);
    ratelimit_caller c = caller(10, 1, 0, "/bin/x", "x");
    decline_n(r, &c, RATELIMIT_SCAN, 10);
    ratelimit_report_stop(r);
    ratelimit_report_stats st;
    ratelimit_report_stats_get(r, &st);
    assert_int_equal(st.sent + st.dropped + st.pending, 0);
    ratelimit_report_destroy(r);
    ratelimit_report_config_cleanup(&cfg);
}

/* ------------------------------------------------------------------------------------------ */
/* Message form.                                                                               */

static void test_message_format(void **state)
{
    (void)state;
    uint16_t port = 0;
    int fd = udp_listener(&port);
    ratelimit_config l = limits_default();
    l.max_requests = 1234;
    l.interval_ms = 500;
    l.burst = 7;
    ratelimit_report *r = reporter(dest_inet("udp", port), &l, "severity", "crit", "facility",
                                   "local3", "sd_id", "siteDeclined@12345", NULL);
    /* An executable path with every character that needs escaping and two invalid UTF-8
     * sequences (a stray continuation byte, an overlong '/'), and a valid two-byte character. */
    const char *exe = "/opt/we\"ird\\dir]/b\x80in/\xc0\xaf/caf\xc3\xa9";
    const char app[] = "pwsh]\"x\\";
    ratelimit_caller c = caller(4242, 99, 1001, exe, app);
    /* Times go through the monotonic clock and back: allow a millisecond either way. */
    uint64_t before = now_ns(CLOCK_REALTIME) - 1000000;
    decline_n(r, &c, RATELIMIT_SCAN, 3);
    uint64_t after = now_ns(CLOCK_REALTIME) + 1000000;
    ratelimit_report_stop(r);

    syslog_msg m;
    recv_udp_msg(fd, &m);
    assert_int_equal(m.pri, 19 * 8 + 2);
    assert_int_equal(m.version, 1);
    uint64_t ts, first, last;
    assert_true(syslog_rfc3339_us(m.timestamp, &ts));
    assert_true(ts >= before);
    char host[256] = "";
    gethostname(host, sizeof(host));
    if (host[0] != '\0' && strchr(host, ' ') == NULL)
        assert_string_equal(m.hostname, host);
    assert_string_equal(m.app, "amsid");
    char pid[16];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    assert_string_equal(m.procid, pid);
    assert_string_equal(m.msgid, "declined");
    assert_string_equal(m.sd_id, "siteDeclined@12345");
    assert_string_equal(syslog_param_get(&m, "pid"), "4242");
    assert_string_equal(syslog_param_get(&m, "uid"), "1001");
    assert_string_equal(syslog_param_get(&m, "exe"),
                        "/opt/we\"ird\\dir]/b\xef\xbf\xbdin/\xef\xbf\xbd\xef\xbf\xbd/caf\xc3\xa9");
    assert_string_equal(syslog_param_get(&m, "app"), "pwsh]\"x\\");
    assert_int_equal(param_u64(&m, "count"), 3);
    assert_int_equal(param_u64(&m, "scans"), 3);
    assert_int_equal(param_u64(&m, "notifications"), 0);
    assert_null(syslog_param_get(&m, "dropped"));
    assert_true(syslog_rfc3339_us(syslog_param_get(&m, "first"), &first));
    assert_true(syslog_rfc3339_us(syslog_param_get(&m, "last"), &last));
    assert_true(before <= first && first <= last && last <= after);
    assert_string_equal(syslog_param_get(&m, "limit"), "scans 1234 per 500 ms, burst 7");
    assert_non_null(strstr(m.msg, "3 requests"));
    assert_non_null(strstr(m.msg, "4242"));

    /* The raw bytes: escapes are there, the reserved characters never appear unescaped. */
    ratelimit_report_stats st;
    ratelimit_report_stats_get(r, &st);
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.pending, 0);
    assert_false(readable(fd, 100)); /* exactly one message */
    ratelimit_report_destroy(r);
    close(fd);
}

/* The raw text of a message: escapes as RFC 5424 writes them. */
static void test_message_escapes_raw(void **state)
{
    (void)state;
    uint16_t port = 0;
    int fd = udp_listener(&port);
    ratelimit_report *r = reporter(dest_inet("udp", port), NULL, NULL);
    ratelimit_caller c = caller(7, 1, 0, "/a\"b\\c]d", "");
    ratelimit_report_declined(r, &c, RATELIMIT_NOTIFY);
    ratelimit_report_stop(r);
    char buf[65536];
    assert_true(recv_datagram(fd, buf, sizeof(buf), WAIT_MS) > 0);
    assert_non_null(strstr(buf, " exe=\"/a\\\"b\\\\c\\]d\""));
    assert_non_null(strstr(buf, " app=\"\""));
    assert_non_null(strstr(buf, "[amsiDeclined@32473 "));
    assert_true(strncmp(buf, "<28>1 ", 6) == 0); /* daemon.warning */
    syslog_msg m;
    assert_true(syslog_parse(buf, strlen(buf), &m));
    assert_string_equal(syslog_param_get(&m, "limit"),
                        "notifications 20000 per 1000 ms, burst 2000");
    ratelimit_report_destroy(r);
    close(fd);
}

/* Control characters and NUL in a declared app name become U+FFFD; overlong values are cut. */
static void test_message_odd_values(void **state)
{
    (void)state;
    uint16_t port = 0;
    int fd = udp_listener(&port);
    ratelimit_report *r = reporter(dest_inet("udp", port), NULL, NULL);
    static const char app[] = {'a', '\0', 'b', '\t', 'c', '\n'};
    ratelimit_caller c = caller(8, 1, 0, "/bin/x", NULL);
    c.app = app;
    c.app_len = sizeof(app);
    ratelimit_report_declined(r, &c, RATELIMIT_SCAN);
    char *longexe = malloc(5001);
    assert_non_null(longexe);
    for (int i = 0; i < 5000; i++)
        longexe[i] = i % 10 == 0 ? '/' : ']';
    longexe[5000] = '\0';
    ratelimit_caller d = caller(9, 1, 0, longexe, "x");
    ratelimit_report_declined(r, &d, RATELIMIT_SCAN);
    free(longexe);
    ratelimit_report_stop(r);
    for (int i = 0; i < 2; i++) {
        syslog_msg m;
        recv_udp_msg(fd, &m);
        if (strcmp(syslog_param_get(&m, "pid"), "8") == 0) {
            assert_string_equal(syslog_param_get(&m, "app"), "a\xef\xbf\xbd"
                                                             "b\xef\xbf\xbd"
                                                             "c\xef\xbf\xbd");
        } else {
            const char *exe = syslog_param_get(&m, "exe");
            size_t n = strlen(exe);
            assert_true(n > 1000 && n < 2048);
            assert_string_equal(exe + n - 3, "...");
            assert_true(strncmp(exe, "/]]]]]]]]]/]]", 13) == 0);
        }
    }
    ratelimit_report_destroy(r);
    close(fd);
}

/* declined_at(): the caller's monotonic times become first and last, to the microsecond. */
static void test_declined_at_times(void **state)
{
    (void)state;
    uint16_t port = 0;
    int fd = udp_listener(&port);
    ratelimit_report *r = reporter(dest_inet("udp", port), NULL, NULL);
    ratelimit_caller a = caller(11, 1, 0, "/bin/a", "a");
    uint64_t mono = now_ns(CLOCK_MONOTONIC);
    uint64_t wall = now_ns(CLOCK_REALTIME);
    /* Out of order, as times from several worker threads may arrive. */
    ratelimit_report_declined_at(r, &a, RATELIMIT_SCAN, mono - 2000000000u);
    ratelimit_report_declined_at(r, &a, RATELIMIT_SCAN, mono - 5000000000u);
    ratelimit_report_declined_at(r, &a, RATELIMIT_SCAN, mono - 3000000000u);
    ratelimit_report_declined_at(r, &a, RATELIMIT_SCAN, mono - 1500000000u);
    ratelimit_report_stop(r);
    syslog_msg m;
    recv_udp_msg(fd, &m);
    uint64_t first, last;
    assert_true(syslog_rfc3339_us(syslog_param_get(&m, "first"), &first));
    assert_true(syslog_rfc3339_us(syslog_param_get(&m, "last"), &last));
    assert_int_equal(param_u64(&m, "count"), 4);
    uint64_t span = last - first;
    assert_true(span >= 3499999000u && span <= 3500001000u);
    int64_t skew = (int64_t)(first - (wall - 5000000000u));
    assert_true(skew > -2000000 && skew < 2000000);
    ratelimit_report_destroy(r);
    close(fd);
}

/* ------------------------------------------------------------------------------------------ */
/* Aggregation and windows.                                                                    */

static void test_aggregation(void **state)
{
    (void)state;
    uint16_t port = 0;
    int fd = udp_listener(&port);
    ratelimit_report *r = reporter(dest_inet("udp", port), NULL, NULL);
    ratelimit_caller a = caller(100, 5, 1000, "/usr/bin/pwsh", "PowerShell_v1");
    ratelimit_caller a_app = caller(100, 5, 1000, "/usr/bin/pwsh", "PowerShell_v2");
    ratelimit_caller b = caller(200, 6, 0, "/usr/bin/python3", "macro");
    ratelimit_caller a_reused = caller(100, 77, 1000, "/usr/bin/other", ""); /* pid reused */
    decline_n(r, &a, RATELIMIT_SCAN, 500);
    decline_n(r, &b, RATELIMIT_NOTIFY, 300);
    decline_n(r, &a_app, RATELIMIT_NOTIFY, 20); /* the latest app name wins */
    decline_n(r, &b, RATELIMIT_NOTIFY, 1);
    decline_n(r, &a_reused, RATELIMIT_SCAN, 2);
    ratelimit_report_stop(r);

    bool seen_a = false, seen_b = false, seen_r = false;
    for (int i = 0; i < 3; i++) {
        syslog_msg m;
        recv_udp_msg(fd, &m);
        const char *exe = syslog_param_get(&m, "exe");
        if (strcmp(exe, "/usr/bin/pwsh") == 0) {
            seen_a = true;
            assert_string_equal(syslog_param_get(&m, "pid"), "100");
            assert_string_equal(syslog_param_get(&m, "uid"), "1000");
            assert_string_equal(syslog_param_get(&m, "app"), "PowerShell_v2");
            assert_int_equal(param_u64(&m, "count"), 520);
            assert_int_equal(param_u64(&m, "scans"), 500);
            assert_int_equal(param_u64(&m, "notifications"), 20);
            assert_string_equal(syslog_param_get(&m, "limit"),
                                "scans 2000 per 1000 ms, burst 200; notifications 20000 per "
                                "1000 ms, burst 2000");
        } else if (strcmp(exe, "/usr/bin/python3") == 0) {
            seen_b = true;
            assert_string_equal(syslog_param_get(&m, "pid"), "200");
            assert_int_equal(param_u64(&m, "count"), 301);
            assert_int_equal(param_u64(&m, "scans"), 0);
            assert_string_equal(syslog_param_get(&m, "app"), "macro");
        } else {
            seen_r = true;
            assert_string_equal(exe, "/usr/bin/other");
            assert_string_equal(syslog_param_get(&m, "pid"), "100");
            assert_int_equal(param_u64(&m, "count"), 2);
        }
    }
    assert_true(seen_a && seen_b && seen_r);
    assert_false(readable(fd, 200)); /* never more than one message per process */
    ratelimit_report_destroy(r);
    close(fd);
}

/* Two processes, N declines each in one window: exactly two messages. */
static void test_two_processes_two_messages(void **state)
{
    (void)state;
    uint16_t port = 0;
    int fd = udp_listener(&port);
    ratelimit_report *r = reporter(dest_inet("udp", port), NULL, NULL);
    ratelimit_caller a = caller(31, 1, 0, "/bin/a", "a");
    ratelimit_caller b = caller(32, 1, 0, "/bin/b", "b");
    for (int i = 0; i < 10000; i++) {
        ratelimit_report_declined(r, &a, RATELIMIT_SCAN);
        ratelimit_report_declined(r, &b, RATELIMIT_SCAN);
    }
    ratelimit_report_stop(r);
    uint64_t total = 0;
    for (int i = 0; i < 2; i++) {
        syslog_msg m;
        recv_udp_msg(fd, &m);
        assert_int_equal(param_u64(&m, "count"), 10000);
        total += param_u64(&m, "count");
    }
    assert_int_equal(total, 20000);
    assert_false(readable(fd, 200));
    ratelimit_report_stats st;
    ratelimit_report_stats_get(r, &st);
    assert_int_equal(st.sent, 2);
    ratelimit_report_destroy(r);
    close(fd);
}

static void test_window_boundaries(void **state)
{
    (void)state;
    uint16_t port = 0;
    int fd = udp_listener(&port);
    ratelimit_report *r = reporter(dest_inet("udp", port), NULL, "window_s", "1", NULL);
    ratelimit_caller a = caller(41, 1, 0, "/bin/a", "a");
    decline_n(r, &a, RATELIMIT_SCAN, 5);

    /* The first window ends by itself, without a stop. */
    syslog_msg m;
    recv_udp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "count"), 5);
    uint64_t first1, last1;
    assert_true(syslog_rfc3339_us(syslog_param_get(&m, "first"), &first1));
    assert_true(syslog_rfc3339_us(syslog_param_get(&m, "last"), &last1));

    /* The next window counts afresh. */
    decline_n(r, &a, RATELIMIT_SCAN, 3);
    recv_udp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "count"), 3);
    uint64_t first2;
    assert_true(syslog_rfc3339_us(syslog_param_get(&m, "first"), &first2));
    assert_true(first2 > last1);

    /* A window with no declines sends nothing. */
    assert_false(readable(fd, 1500));
    ratelimit_report_stop(r);
    assert_false(readable(fd, 100));
    ratelimit_report_destroy(r);
    close(fd);
}

/* The pending window goes out at stop, long before its end. */
static void test_flush_at_stop(void **state)
{
    (void)state;
    uint16_t port = 0;
    int fd = udp_listener(&port);
    ratelimit_report *r = reporter(dest_inet("udp", port), NULL, "window_s", "3600", NULL);
    ratelimit_caller a = caller(51, 1, 0, "/bin/a", "a");
    decline_n(r, &a, RATELIMIT_NOTIFY, 42);
    assert_false(readable(fd, 300));
    ratelimit_report_stop(r);
    syslog_msg m;
    recv_udp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "count"), 42);
    assert_int_equal(param_u64(&m, "notifications"), 42);
    ratelimit_report_destroy(r);

    /* Declines counted before start are flushed by a stop without a start, and destroy alone
     * flushes too. */
    ratelimit_report_config cfg;
    assert_int_equal(ratelimit_report_config_init(&cfg), 0);
    char err[256];
    assert_int_equal(
        ratelimit_report_config_set(&cfg, "syslog", dest_inet("udp", port), err, sizeof(err)), 0);
    ratelimit_config l = limits_default();
    assert_int_equal(ratelimit_report_create(&cfg, &l, &r, err, sizeof(err)), 0);
    decline_n(r, &a, RATELIMIT_SCAN, 2);
    ratelimit_report_destroy(r);
    recv_udp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "count"), 2);
    ratelimit_report_config_cleanup(&cfg);
    close(fd);
}

/* A window whose table is full counts the rest in the aggregate entry (pid 0, exe "*"). */
static void test_full_window_aggregate(void **state)
{
    (void)state;
    uint16_t port = 0;
    int fd = udp_listener(&port);
    ratelimit_config l = limits_default();
    l.table_size = 16;
    ratelimit_report *r = reporter(dest_inet("udp", port), &l, NULL);
    for (pid_t p = 1; p <= 20; p++) {
        ratelimit_caller c = caller(1000 + p, 1, 0, "/bin/flood", "f");
        decline_n(r, &c, RATELIMIT_SCAN, (unsigned)p);
    }
    ratelimit_report_stop(r);
    int individual = 0, aggregate = 0;
    uint64_t total = 0;
    for (int i = 0; i < 17; i++) {
        syslog_msg m;
        recv_udp_msg(fd, &m);
        total += param_u64(&m, "count");
        if (strcmp(syslog_param_get(&m, "pid"), "0") == 0) {
            aggregate++;
            assert_string_equal(syslog_param_get(&m, "exe"), "*");
            assert_string_equal(syslog_param_get(&m, "uid"), "");
            assert_int_equal(param_u64(&m, "count"), 17 + 18 + 19 + 20);
        } else {
            individual++;
        }
    }
    assert_int_equal(individual, 16);
    assert_int_equal(aggregate, 1);
    assert_int_equal(total, 20 * 21 / 2);
    assert_false(readable(fd, 200));
    ratelimit_report_destroy(r);
    close(fd);
}

/* ------------------------------------------------------------------------------------------ */
/* Transports.                                                                                 */

static void temp_socket_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "/tmp/amsi-report-%ld-%s", (long)getpid(), name);
}

static void test_unix_dgram(void **state)
{
    (void)state;
    char path[108], dest[120];
    temp_socket_path(path, sizeof(path), "dgram");
    int fd = unix_listener(path, SOCK_DGRAM);
    snprintf(dest, sizeof(dest), "unix:%s", path);
    ratelimit_report *r = reporter(dest, NULL, NULL);
    ratelimit_caller a = caller(61, 1, 0, "/bin/a", "a");
    decline_n(r, &a, RATELIMIT_SCAN, 9);
    ratelimit_report_stop(r);
    char buf[65536];
    ssize_t n = recv_datagram(fd, buf, sizeof(buf), WAIT_MS);
    assert_true(n > 0);
    assert_true(buf[0] == '<'); /* no octet count on a datagram socket */
    syslog_msg m;
    assert_true(syslog_parse(buf, (size_t)n, &m));
    assert_int_equal(param_u64(&m, "count"), 9);
    ratelimit_report_destroy(r);
    close(fd);
    unlink(path);
}

static void test_unix_stream_fallback(void **state)
{
    (void)state;
    char path[108], dest[120];
    temp_socket_path(path, sizeof(path), "stream");
    int lfd = unix_listener(path, SOCK_STREAM);
    snprintf(dest, sizeof(dest), "unix:%s", path);
    ratelimit_report *r = reporter(dest, NULL, NULL);
    ratelimit_caller a = caller(62, 1, 0, "/bin/a", "a");
    ratelimit_caller b = caller(63, 1, 0, "/bin/b", "b");
    decline_n(r, &a, RATELIMIT_SCAN, 4);
    decline_n(r, &b, RATELIMIT_SCAN, 6);
    ratelimit_report_stop(r);
    int fd = accept_within(lfd, WAIT_MS);
    assert_true(fd >= 0);
    uint64_t total = 0;
    for (int i = 0; i < 2; i++) {
        syslog_msg m;
        recv_tcp_msg(fd, &m); /* octet-counted */
        total += param_u64(&m, "count");
    }
    assert_int_equal(total, 10);
    ratelimit_report_destroy(r);
    close(fd);
    close(lfd);
    unlink(path);
}

static void test_tcp(void **state)
{
    (void)state;
    uint16_t port = 0;
    int lfd = tcp_listener(&port);
    ratelimit_report *r = reporter(dest_inet("tcp", port), NULL, NULL);
    ratelimit_caller a = caller(71, 1, 0, "/bin/a", "a");
    ratelimit_caller b = caller(72, 1, 0, "/bin/b", "b");
    decline_n(r, &a, RATELIMIT_SCAN, 11);
    decline_n(r, &b, RATELIMIT_NOTIFY, 12);
    ratelimit_report_stop(r);
    int fd = accept_within(lfd, WAIT_MS);
    assert_true(fd >= 0);
    uint64_t total = 0;
    for (int i = 0; i < 2; i++) {
        syslog_msg m;
        recv_tcp_msg(fd, &m);
        total += param_u64(&m, "count");
    }
    assert_int_equal(total, 23);
    ratelimit_report_destroy(r);
    char c;
    assert_true(read_exact(fd, &c, 1, 1000) == false); /* closed, nothing more */
    close(fd);
    close(lfd);
}

static void test_tcp_ipv6_literal(void **state)
{
    (void)state;
    int lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(lfd, 4) != 0) {
        if (lfd >= 0)
            close(lfd);
        skip(); /* no IPv6 loopback here */
    }
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    char dest[64];
    snprintf(dest, sizeof(dest), "tcp://[::1]:%u", ntohs(a.sin6_port));
    ratelimit_report *r = reporter(dest, NULL, NULL);
    ratelimit_caller c = caller(73, 1, 0, "/bin/a", "a");
    decline_n(r, &c, RATELIMIT_SCAN, 2);
    ratelimit_report_stop(r);
    int fd = accept_within(lfd, WAIT_MS);
    assert_true(fd >= 0);
    syslog_msg m;
    recv_tcp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "count"), 2);
    ratelimit_report_destroy(r);
    close(fd);
    close(lfd);
}

/* A HOST name: every address it resolves to is tried (localhost may give ::1 first). */
static void test_tcp_host_name(void **state)
{
    (void)state;
    uint16_t port = 0;
    int lfd = tcp_listener(&port); /* 127.0.0.1 only */
    char dest[64];
    snprintf(dest, sizeof(dest), "tcp://localhost:%u", port);
    ratelimit_report *r = reporter(dest, NULL, NULL);
    ratelimit_caller c = caller(74, 1, 0, "/bin/a", "a");
    decline_n(r, &c, RATELIMIT_SCAN, 3);
    ratelimit_report_stop(r);
    int fd = accept_within(lfd, WAIT_MS);
    assert_true(fd >= 0);
    syslog_msg m;
    recv_tcp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "count"), 3);
    ratelimit_report_destroy(r);
    close(fd);
    close(lfd);
}

/* The receiver of a unix datagram socket is re-created (like a syslog daemon restarting on
 * /dev/log): the reporter reconnects and the message is not lost. */
static void test_unix_dgram_recreated(void **state)
{
    (void)state;
    char path[108], dest[120];
    temp_socket_path(path, sizeof(path), "dgram2");
    int fd = unix_listener(path, SOCK_DGRAM);
    snprintf(dest, sizeof(dest), "unix:%s", path);
    ratelimit_report *r = reporter(dest, NULL, "window_s", "1", NULL);
    ratelimit_caller a = caller(64, 1, 0, "/bin/a", "a");
    decline_n(r, &a, RATELIMIT_SCAN, 1);
    char buf[65536];
    assert_true(recv_datagram(fd, buf, sizeof(buf), WAIT_MS) > 0);
    close(fd);
    fd = unix_listener(path, SOCK_DGRAM); /* unlinks and binds again */
    decline_n(r, &a, RATELIMIT_SCAN, 2);
    ssize_t n = recv_datagram(fd, buf, sizeof(buf), WAIT_MS);
    assert_true(n > 0);
    syslog_msg m;
    assert_true(syslog_parse(buf, (size_t)n, &m));
    assert_int_equal(param_u64(&m, "count"), 2);
    ratelimit_report_destroy(r);
    close(fd);
    unlink(path);
}

/* Waits until the reporter's counters satisfy pred, or WAIT_MS. */
static bool wait_stats(ratelimit_report *r, bool (*pred)(const ratelimit_report_stats *, uint64_t),
                       uint64_t arg)
{
    for (int i = 0; i < WAIT_MS / 10; i++) {
        ratelimit_report_stats st;
        ratelimit_report_stats_get(r, &st);
        if (pred(&st, arg))
            return true;
        usleep(10000);
    }
    return false;
}

static bool pending_is(const ratelimit_report_stats *st, uint64_t n)
{
    return st->pending == n;
}

static bool sent_is(const ratelimit_report_stats *st, uint64_t n)
{
    return st->sent == n;
}

/* The collector goes away and comes back on the same port: nothing is lost. */
static void test_tcp_collector_restart(void **state)
{
    (void)state;
    uint16_t port = 0;
    int lfd = tcp_listener(&port);
    ratelimit_report *r = reporter(dest_inet("tcp", port), NULL, "window_s", "1", NULL);
    ratelimit_caller a = caller(81, 1, 0, "/bin/a", "a");
    decline_n(r, &a, RATELIMIT_SCAN, 5);
    int fd = accept_within(lfd, WAIT_MS);
    assert_true(fd >= 0);
    syslog_msg m;
    recv_tcp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "count"), 5);
    assert_true(wait_stats(r, sent_is, 1)); /* out of the backlog, not just on the wire */

    /* The collector stops: its connection and its listener close. */
    close(fd);
    close(lfd);

    /* Declines in the next window: the message waits in the backlog. */
    decline_n(r, &a, RATELIMIT_SCAN, 6);
    assert_true(wait_stats(r, pending_is, 1));
    /* And one more window while the collector is still down. */
    ratelimit_caller b = caller(82, 1, 0, "/bin/b", "b");
    decline_n(r, &b, RATELIMIT_SCAN, 7);
    assert_true(wait_stats(r, pending_is, 2));

    /* The collector restarts on the same port; the backlog arrives in order, then new ones. */
    uint16_t again = port;
    lfd = tcp_listener(&again);
    assert_int_equal(again, port);
    fd = accept_within(lfd, WAIT_MS);
    assert_true(fd >= 0);
    recv_tcp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "count"), 6);
    assert_string_equal(syslog_param_get(&m, "pid"), "81");
    recv_tcp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "count"), 7);
    assert_string_equal(syslog_param_get(&m, "pid"), "82");
    assert_null(syslog_param_get(&m, "dropped"));
    decline_n(r, &a, RATELIMIT_SCAN, 8);
    recv_tcp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "count"), 8);

    ratelimit_report_stop(r);
    ratelimit_report_stats st;
    ratelimit_report_stats_get(r, &st);
    assert_int_equal(st.sent, 4);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.pending, 0);
    ratelimit_report_destroy(r);
    close(fd);
    close(lfd);
}

/* A collector restart detected before writing, with nothing pending in between. */
static void test_tcp_peer_close_detected(void **state)
{
    (void)state;
    uint16_t port = 0;
    int lfd = tcp_listener(&port);
    ratelimit_report *r = reporter(dest_inet("tcp", port), NULL, "window_s", "1", NULL);
    ratelimit_caller a = caller(85, 1, 0, "/bin/a", "a");
    decline_n(r, &a, RATELIMIT_SCAN, 1);
    int fd = accept_within(lfd, WAIT_MS);
    assert_true(fd >= 0);
    syslog_msg m;
    recv_tcp_msg(fd, &m);
    /* Restart quickly, between two windows: the listener stays, the connection goes. */
    close(fd);
    decline_n(r, &a, RATELIMIT_SCAN, 2);
    fd = accept_within(lfd, WAIT_MS);
    assert_true(fd >= 0);
    recv_tcp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "count"), 2);
    ratelimit_report_stop(r);
    ratelimit_report_stats st;
    ratelimit_report_stats_get(r, &st);
    assert_int_equal(st.sent, 2);
    assert_int_equal(st.dropped, 0);
    ratelimit_report_destroy(r);
    close(fd);
    close(lfd);
}

static bool dropped_at_least(const ratelimit_report_stats *st, uint64_t n)
{
    return st->dropped >= n;
}

/* backlog=2 with the collector down: the rest is dropped, counted and reported. */
static void test_backlog_overflow(void **state)
{
    (void)state;
    uint16_t port = 0;
    int lfd = tcp_listener(&port);
    close(lfd); /* nobody listens: connections are refused */
    ratelimit_report *r =
        reporter(dest_inet("tcp", port), NULL, "window_s", "1", "backlog", "2", NULL);
    for (pid_t p = 0; p < 5; p++) {
        ratelimit_caller c = caller(900 + p, 1, 0, "/bin/flood", "f");
        decline_n(r, &c, RATELIMIT_SCAN, 10);
    }
    assert_true(wait_stats(r, dropped_at_least, 3));
    ratelimit_report_stats st;
    ratelimit_report_stats_get(r, &st);
    assert_int_equal(st.dropped, 3);
    assert_int_equal(st.pending, 2);
    assert_int_equal(st.sent, 0);

    uint16_t again = port;
    lfd = tcp_listener(&again);
    int fd = accept_within(lfd, WAIT_MS);
    assert_true(fd >= 0);
    syslog_msg m;
    recv_tcp_msg(fd, &m);
    assert_int_equal(param_u64(&m, "dropped"), 3);
    assert_int_equal(param_u64(&m, "count"), 10);
    recv_tcp_msg(fd, &m);
    assert_null(syslog_param_get(&m, "dropped")); /* reported once */
    assert_true(wait_stats(r, sent_is, 2));
    ratelimit_report_stop(r);
    ratelimit_report_stats_get(r, &st);
    assert_int_equal(st.dropped, 3);
    assert_int_equal(st.pending, 0);
    ratelimit_report_destroy(r);
    close(fd);
    close(lfd);
}

/* stop() with the collector down keeps its promise: it returns, the message stays pending. */
static void test_stop_collector_down(void **state)
{
    (void)state;
    uint16_t port = 0;
    int lfd = tcp_listener(&port);
    close(lfd);
    ratelimit_report *r = reporter(dest_inet("tcp", port), NULL, NULL);
    ratelimit_caller a = caller(95, 1, 0, "/bin/a", "a");
    decline_n(r, &a, RATELIMIT_SCAN, 1);
    ratelimit_report_stop(r);
    ratelimit_report_stats st;
    ratelimit_report_stats_get(r, &st);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.pending, 1);
    ratelimit_report_destroy(r);
}

/* A collector that never answers (its accept queue is full, so connects hang): stop() still
 * returns after its time budget, with the message pending. A hang guard, not a timing test. */
static void test_stop_collector_silent(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 0), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        connect(fill[i], (struct sockaddr *)&a, sizeof(a));
    }
    usleep(100000);
    ratelimit_report *r = reporter(dest_inet("tcp", ntohs(a.sin_port)), NULL, NULL);
    ratelimit_caller c = caller(96, 1, 0, "/bin/a", "a");
    decline_n(r, &c, RATELIMIT_SCAN, 1);
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    ratelimit_report_stop(r);
    uint64_t took_ms = (now_ns(CLOCK_MONOTONIC) - t0) / 1000000u;
    ratelimit_report_stats st;
    ratelimit_report_stats_get(r, &st);
    print_message("stop with a silent collector took %llu ms, sent %llu\n",
                  (unsigned long long)took_ms, (unsigned long long)st.sent);
    assert_true(took_ms < 10000);
    assert_int_equal(st.sent + st.pending, 1);
    ratelimit_report_destroy(r);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(lfd);
}

/* ------------------------------------------------------------------------------------------ */
/* Concurrency: many threads decline while the sender swaps windows (run under TSan).           */

#define THREADS  4
#define PROCS    8
#define PER_PROC 20000

typedef struct worker_arg {
    ratelimit_report *r;
    int id;
} worker_arg;

static void *worker(void *p)
{
    worker_arg *w = p;
    char app[32];
    for (int i = 0; i < PER_PROC; i++) {
        for (int k = 0; k < PROCS; k++) {
            /* The app name changes now and then, which takes the slow path. */
            snprintf(app, sizeof(app), "app%d", (i / 5000 + w->id) % 3);
            ratelimit_caller c = caller(3000 + k, 1, 0, "/bin/many", app);
            ratelimit_report_declined(w->r, &c,
                                      (i + w->id) % 2 ? RATELIMIT_SCAN : RATELIMIT_NOTIFY);
        }
    }
    return NULL;
}

static void test_concurrent_declines(void **state)
{
    (void)state;
    uint16_t port = 0;
    int fd = udp_listener(&port);
    ratelimit_report *r = reporter(dest_inet("udp", port), NULL, "window_s", "1", NULL);
    pthread_t t[THREADS];
    worker_arg args[THREADS];
    uint64_t start = now_ns(CLOCK_MONOTONIC), rounds = 0;
    do {
        rounds++;
        for (int i = 0; i < THREADS; i++) {
            args[i] = (worker_arg){r, i};
            assert_int_equal(pthread_create(&t[i], NULL, worker, &args[i]), 0);
        }
        for (int i = 0; i < THREADS; i++)
            pthread_join(t[i], NULL);
        /* Repeat until at least one window ended while the threads ran (always, under TSan). */
    } while (now_ns(CLOCK_MONOTONIC) - start < 1200000000u);
    ratelimit_report_stop(r);
    ratelimit_report_stats st;
    ratelimit_report_stats_get(r, &st);
    assert_int_equal(st.dropped, 0);
    uint64_t total = 0;
    for (uint64_t i = 0; i < st.sent; i++) {
        syslog_msg m;
        recv_udp_msg(fd, &m);
        total += param_u64(&m, "count");
        assert_int_equal(param_u64(&m, "count"),
                         param_u64(&m, "scans") + param_u64(&m, "notifications"));
    }
    assert_true(st.sent >= 2 * PROCS); /* at least two windows */
    assert_int_equal(total, rounds * THREADS * PROCS * PER_PROC);
    ratelimit_report_destroy(r);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_good),
        cmocka_unit_test(test_config_bad),
        cmocka_unit_test(test_create_bad),
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_message_format),
        cmocka_unit_test(test_message_escapes_raw),
        cmocka_unit_test(test_message_odd_values),
        cmocka_unit_test(test_declined_at_times),
        cmocka_unit_test(test_aggregation),
        cmocka_unit_test(test_two_processes_two_messages),
        cmocka_unit_test(test_window_boundaries),
        cmocka_unit_test(test_flush_at_stop),
        cmocka_unit_test(test_full_window_aggregate),
        cmocka_unit_test(test_unix_dgram),
        cmocka_unit_test(test_unix_stream_fallback),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_tcp_ipv6_literal),
        cmocka_unit_test(test_tcp_collector_restart),
        cmocka_unit_test(test_tcp_peer_close_detected),
        cmocka_unit_test(test_backlog_overflow),
        cmocka_unit_test(test_stop_collector_down),
        cmocka_unit_test(test_stop_collector_silent),
        cmocka_unit_test(test_tcp_host_name),
        cmocka_unit_test(test_unix_dgram_recreated),
        cmocka_unit_test(test_concurrent_declines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
