/*
 * rsyslog_harness.h - a private rsyslogd (Debian's `rsyslog` package) as a real syslog collector
 * for tests. It runs in the foreground as a child of the test, with its own config, work
 * directory, pid file and output file in a fresh temporary directory, and listens only on
 * 127.0.0.1: imtcp (RFC 6587 octet counting and LF framing) and imudp on free ports chosen at
 * create. It loads no imuxsock and no imklog, so it neither takes /dev/log nor reads the kernel
 * log, and works as root in a container without systemd. Every message it receives, except
 * rsyslogd's own, is written to the output file as one line:
 *
 *     PRI TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
 *
 * (rsyslog template `%pri% %timereported:::date-rfc3339% %hostname% %app-name% %procid% %msgid%
 * %structured-data% %msg%`; STRUCTURED-DATA is kept byte for byte, escapes included, and is "-"
 * when the message had none). The output file survives a stop and a restart, which reuse the same
 * ports, so a test can take the collector away and bring it back.
 *
 * Typical use:
 *
 *     rsyslog_harness *h;
 *     int rc = rsyslog_harness_create(&h);
 *     if (rc == -ENOENT) skip();                         (rsyslogd not installed)
 *     assert_int_equal(rsyslog_harness_start(h), 0);
 *     ... send to tcp://127.0.0.1:<rsyslog_harness_tcp_port(h)> ...
 *     assert_true(rsyslog_harness_wait_lines(h, 2, 10000) >= 2);
 *     char **lines; size_t n;
 *     rsyslog_harness_read_lines(h, &lines, &n);
 *     rsyslog_harness_line l;
 *     rsyslog_harness_parse_line(lines[0], &l);
 *     rsyslog_harness_lines_free(lines, n);
 *     rsyslog_harness_stop(h);  rsyslog_harness_start(h);   (a collector restart, same ports)
 *     rsyslog_harness_destroy(h);                         (stops it, removes the directory)
 *
 * The binary is $RSYSLOGD when set, else /usr/sbin/rsyslogd, else `rsyslogd` on PATH. Functions
 * return 0 or a negative errno; none aborts. Not thread-safe: one thread drives one harness.
 */
#ifndef TESTS_RATELIMIT_RSYSLOG_HARNESS_H
#define TESTS_RATELIMIT_RSYSLOG_HARNESS_H

#include <stddef.h>
#include <stdint.h>

typedef struct rsyslog_harness rsyslog_harness;

/*
 * Finds rsyslogd, makes the temporary directory, picks two free loopback ports (TCP and UDP) and
 * writes the config. Does not start the daemon. Returns 0, -ENOENT (no rsyslogd binary), -ENOMEM
 * or another negative errno. Free with rsyslog_harness_destroy().
 */
int rsyslog_harness_create(rsyslog_harness **out);

/*
 * Starts rsyslogd and waits (at most 10 s) until it listens on both ports. On the first start,
 * if rsyslogd exits at once (a port was taken meanwhile), picks other ports and tries again
 * (twice); a restart keeps its ports. Returns 0, -EALREADY (running), -ETIMEDOUT (not listening
 * after 10 s; it is stopped) or -ECHILD (rsyslogd exited, e.g. its port was taken; its stderr is
 * printed to ours).
 */
int rsyslog_harness_start(rsyslog_harness *h);

/*
 * Stops rsyslogd (SIGTERM, SIGKILL after 5 s) and waits for it; its output is flushed to the
 * file. Returns 0, or -ESRCH when it was not running.
 */
int rsyslog_harness_stop(rsyslog_harness *h);

/* Stops the daemon when running, removes the temporary directory and frees h. Accepts NULL. */
void rsyslog_harness_destroy(rsyslog_harness *h);

/* The loopback TCP (imtcp) and UDP (imudp) ports; fixed for the life of h once started. */
uint16_t rsyslog_harness_tcp_port(const rsyslog_harness *h);
uint16_t rsyslog_harness_udp_port(const rsyslog_harness *h);

/* The path of the output file (one line per received message). */
const char *rsyslog_harness_output(const rsyslog_harness *h);

/* The temporary directory (config, work directory, pid file, rsyslogd's stderr). */
const char *rsyslog_harness_dir(const rsyslog_harness *h);

/*
 * Waits until the output file holds at least n complete lines or timeout_ms passes. Returns the
 * number of complete lines found (may be less than n on timeout), or a negative errno.
 */
long rsyslog_harness_wait_lines(rsyslog_harness *h, size_t n, int timeout_ms);

/*
 * Reads every complete line of the output file, without the newline. *lines is an array of *n
 * strings; free it with rsyslog_harness_lines_free(). Returns 0, -ENOMEM or a negative errno.
 */
int rsyslog_harness_read_lines(rsyslog_harness *h, char ***lines, size_t *n);

/* Frees what rsyslog_harness_read_lines() returned. Accepts NULL. */
void rsyslog_harness_lines_free(char **lines, size_t n);

/* One output line split into its fields; the pointers point into the line, which it modifies. */
typedef struct rsyslog_harness_line {
    int pri;
    const char *timestamp, *hostname, *app, *procid, *msgid;
    const char *sd; /* STRUCTURED-DATA as received, or "-" */
    const char *msg;
} rsyslog_harness_line;

/*
 * Splits line (modified in place: NULs are written between fields) into *out. Returns 0, or
 * -EINVAL when it does not have the template's shape.
 */
int rsyslog_harness_parse_line(char *line, rsyslog_harness_line *out);

#endif
