/*
 * test_report_rsyslog.c - the declined-request reporter against a real collector: Debian's
 * rsyslogd, started privately on loopback by rsyslog_harness. Checks that rsyslog parses our
 * messages as RFC 5424 (PRI, APP-NAME, PROCID, MSGID, structured data with escapes, MSG) over UDP
 * and TCP, that messages survive a collector restart over TCP, and that drops are reported.
 *
 * Skipped when rsyslogd is not installed, unless AMSI_REQUIRE_RSYSLOG=1 (then it fails).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ratelimit/report.h"
#include "rsyslog_harness.h"
#include "syslog_parse.h"

#define WAIT_MS 15000

/* Creates and starts a harness; skips the test when rsyslogd is missing (unless required). */
static rsyslog_harness *collector(void)
{
    rsyslog_harness *h = NULL;
    int rc = rsyslog_harness_create(&h);
    if (rc == -ENOENT) {
        const char *req = getenv("AMSI_REQUIRE_RSYSLOG");
        if (req != NULL && strcmp(req, "1") == 0)
            fail_msg("rsyslogd not found (apt-get install rsyslog)");
        print_message("rsyslogd not installed: skipped\n");
        skip();
    }
    assert_int_equal(rc, 0);
    rc = rsyslog_harness_start(h);
    if (rc != 0)
        fail_msg("rsyslogd did not start: %s", strerror(-rc));
    return h;
}

static ratelimit_report *reporter(const char *scheme, uint16_t port, ...)
{
    ratelimit_report_config cfg;
    assert_int_equal(ratelimit_report_config_init(&cfg), 0);
    char err[256] = "", dest[64];
    snprintf(dest, sizeof(dest), "%s://127.0.0.1:%u", scheme, port);
    assert_int_equal(ratelimit_report_config_set(&cfg, "syslog", dest, err, sizeof(err)), 0);
    va_list ap;
    va_start(ap, port);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (k == NULL)
            break;
        const char *v = va_arg(ap, const char *);
        if (ratelimit_report_config_set(&cfg, k, v, err, sizeof(err)) != 0)
            fail_msg("%s=%s: %s", k, v, err);
    }
    va_end(ap);
    ratelimit_config limits;
    ratelimit_config_init(&limits);
    ratelimit_report *r = NULL;
    if (ratelimit_report_create(&cfg, &limits, &r, err, sizeof(err)) != 0)
        fail_msg("create: %s", err);
    ratelimit_report_config_cleanup(&cfg);
    assert_int_equal(ratelimit_report_start(r), 0);
    return r;
}

static void decline(ratelimit_report *r, pid_t pid, const char *exe, const char *app,
                    ratelimit_class cls, unsigned n)
{
    ratelimit_caller c = {
        .pid = pid, .uid = 1000, .start_time = 42, .exe = exe, .app = app, .app_len = strlen(app)};
    for (unsigned i = 0; i < n; i++)
        ratelimit_report_declined(r, &c, cls);
}

/* One received report, as rsyslog wrote it. */
typedef struct received {
    rsyslog_harness_line line;
    syslog_msg sd; /* sd_id and params */
    char text[16384];
    char raw[16384];
} received;

/* Waits for at least n lines and parses line i. */
static void get_line(rsyslog_harness *h, size_t n, size_t i, received *out)
{
    long got = rsyslog_harness_wait_lines(h, n, WAIT_MS);
    if (got < (long)n)
        fail_msg("rsyslog wrote %ld lines, expected %zu", got, n);
    char **lines;
    size_t count;
    assert_int_equal(rsyslog_harness_read_lines(h, &lines, &count), 0);
    assert_true(i < count);
    snprintf(out->text, sizeof(out->text), "%s", lines[i]);
    snprintf(out->raw, sizeof(out->raw), "%s", lines[i]);
    rsyslog_harness_lines_free(lines, count);
    if (rsyslog_harness_parse_line(out->text, &out->line) != 0)
        fail_msg("bad line: %s", out->raw);
    if (!syslog_parse_sd(out->line.sd, strlen(out->line.sd), &out->sd))
        fail_msg("structured data not parsed: %s", out->line.sd);
}

static unsigned long long param_u64(const received *m, const char *name)
{
    const char *v = syslog_param_get(&m->sd, name);
    if (v == NULL)
        fail_msg("param %s missing", name);
    return strtoull(v, NULL, 10);
}

static void wait_sent(ratelimit_report *r, uint64_t n)
{
    for (int i = 0; i < WAIT_MS / 10; i++) {
        ratelimit_report_stats st;
        ratelimit_report_stats_get(r, &st);
        if (st.sent >= n)
            return;
        usleep(10000);
    }
    fail_msg("reporter did not send %llu messages", (unsigned long long)n);
}

static void wait_pending(ratelimit_report *r, uint64_t n)
{
    for (int i = 0; i < WAIT_MS / 10; i++) {
        ratelimit_report_stats st;
        ratelimit_report_stats_get(r, &st);
        if (st.pending == n)
            return;
        usleep(10000);
    }
    fail_msg("reporter never had %llu messages pending", (unsigned long long)n);
}

/* Checks the fields every report has; pri is the expected PRI. */
static void check_common(const received *m, int pri)
{
    assert_int_equal(m->line.pri, pri);
    assert_string_equal(m->line.app, "amsid");
    assert_string_equal(m->line.msgid, "declined");
    char pid[16];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    assert_string_equal(m->line.procid, pid);
    assert_string_equal(m->sd.sd_id, "amsiDeclined@32473");
    uint64_t first, last;
    assert_true(syslog_rfc3339_us(syslog_param_get(&m->sd, "first"), &first));
    assert_true(syslog_rfc3339_us(syslog_param_get(&m->sd, "last"), &last));
    assert_true(first <= last);
    assert_non_null(strstr(m->line.msg, "declined"));
}

static void run_two_processes(const char *scheme, bool tcp)
{
    rsyslog_harness *h = collector();
    uint16_t port = tcp ? rsyslog_harness_tcp_port(h) : rsyslog_harness_udp_port(h);
    ratelimit_report *r =
        tcp ? reporter(scheme, port, "severity", "crit", "facility", "local0", NULL)
            : reporter(scheme, port, NULL);
    const char *weird = "/opt/a \"b\\c]\xff/pwsh";
    decline(r, 501, weird, "Power]Shell", RATELIMIT_SCAN, 250);
    decline(r, 502, "/usr/bin/python3", "macro", RATELIMIT_NOTIFY, 40);
    decline(r, 502, "/usr/bin/python3", "macro", RATELIMIT_SCAN, 2);
    ratelimit_report_stop(r);

    bool seen[2] = {false, false};
    for (size_t i = 0; i < 2; i++) {
        received m;
        get_line(h, 2, i, &m);
        check_common(&m, tcp ? 16 * 8 + 2 : 3 * 8 + 4);
        const char *pid = syslog_param_get(&m.sd, "pid");
        assert_non_null(pid);
        assert_string_equal(syslog_param_get(&m.sd, "uid"), "1000");
        if (strcmp(pid, "501") == 0) {
            seen[0] = true;
            assert_string_equal(syslog_param_get(&m.sd, "exe"), "/opt/a \"b\\c]\xef\xbf\xbd/pwsh");
            assert_string_equal(syslog_param_get(&m.sd, "app"), "Power]Shell");
            assert_int_equal(param_u64(&m, "count"), 250);
            assert_string_equal(syslog_param_get(&m.sd, "limit"),
                                "scans 2000 per 1000 ms, burst 200");
        } else {
            seen[1] = true;
            assert_string_equal(pid, "502");
            assert_string_equal(syslog_param_get(&m.sd, "exe"), "/usr/bin/python3");
            assert_int_equal(param_u64(&m, "count"), 42);
            assert_int_equal(param_u64(&m, "scans"), 2);
            assert_int_equal(param_u64(&m, "notifications"), 40);
            assert_non_null(strstr(syslog_param_get(&m.sd, "limit"), "; notifications 20000"));
        }
    }
    assert_true(seen[0] && seen[1]);
    assert_int_equal(rsyslog_harness_wait_lines(h, 3, 300), 2); /* one line per process */
    ratelimit_report_destroy(r);
    rsyslog_harness_destroy(h);
}

static void test_udp(void **state)
{
    (void)state;
    run_two_processes("udp", false);
}

static void test_tcp(void **state)
{
    (void)state;
    run_two_processes("tcp", true);
}

/* rsyslogd stops and starts again on the same port; the reporter reconnects, nothing is lost. */
static void test_tcp_collector_restart(void **state)
{
    (void)state;
    rsyslog_harness *h = collector();
    ratelimit_report *r = reporter("tcp", rsyslog_harness_tcp_port(h), "window_s", "1", NULL);
    decline(r, 601, "/bin/a", "a", RATELIMIT_SCAN, 5);
    received m;
    get_line(h, 1, 0, &m);
    assert_int_equal(param_u64(&m, "count"), 5);
    wait_sent(r, 1);

    assert_int_equal(rsyslog_harness_stop(h), 0);
    decline(r, 601, "/bin/a", "a", RATELIMIT_SCAN, 6);
    wait_pending(r, 1); /* the closed connection was noticed; the message waits */
    decline(r, 602, "/bin/b", "b", RATELIMIT_SCAN, 7);
    wait_pending(r, 2);

    assert_int_equal(rsyslog_harness_start(h), 0);
    get_line(h, 3, 1, &m);
    assert_string_equal(syslog_param_get(&m.sd, "pid"), "601");
    assert_int_equal(param_u64(&m, "count"), 6);
    get_line(h, 3, 2, &m);
    assert_string_equal(syslog_param_get(&m.sd, "pid"), "602");
    assert_int_equal(param_u64(&m, "count"), 7);
    assert_null(syslog_param_get(&m.sd, "dropped"));

    decline(r, 601, "/bin/a", "a", RATELIMIT_NOTIFY, 8);
    get_line(h, 4, 3, &m);
    assert_int_equal(param_u64(&m, "count"), 8);
    ratelimit_report_stop(r);
    ratelimit_report_stats st;
    ratelimit_report_stats_get(r, &st);
    assert_int_equal(st.sent, 4);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.pending, 0);
    ratelimit_report_destroy(r);
    rsyslog_harness_destroy(h);
}

/* With the collector down and backlog=1, the overflow is counted and rsyslog gets the count. */
static void test_tcp_dropped_reported(void **state)
{
    (void)state;
    rsyslog_harness *h = collector();
    uint16_t port = rsyslog_harness_tcp_port(h);
    assert_int_equal(rsyslog_harness_stop(h), 0);
    ratelimit_report *r = reporter("tcp", port, "window_s", "1", "backlog", "1", NULL);
    decline(r, 701, "/bin/a", "a", RATELIMIT_SCAN, 1);
    decline(r, 702, "/bin/b", "b", RATELIMIT_SCAN, 1);
    decline(r, 703, "/bin/c", "c", RATELIMIT_SCAN, 1);
    for (int i = 0; i < WAIT_MS / 10; i++) {
        ratelimit_report_stats st;
        ratelimit_report_stats_get(r, &st);
        if (st.dropped == 2 && st.pending == 1)
            break;
        usleep(10000);
    }
    assert_int_equal(rsyslog_harness_start(h), 0);
    received m;
    get_line(h, 1, 0, &m);
    assert_int_equal(param_u64(&m, "dropped"), 2);
    ratelimit_report_destroy(r);
    rsyslog_harness_destroy(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_udp),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_tcp_collector_restart),
        cmocka_unit_test(test_tcp_dropped_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
