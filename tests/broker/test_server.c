/*
 * test_server.c - the trace invariant of broker/src/server.c (DESIGN.md §7): every request the
 * broker reads ends in exactly one ScanDecision carrying its scan id, whatever the path, and the
 * decision's scanResult and status are what the client received.
 *
 * A server runs in this process with the in-process capture backend: a small pool queue, one pool
 * thread, unpacking with a recursion limit of 1, and a request limit of a burst of 80 scans and
 * then one a day (this process is its only caller). Clients drive every path through libamsi or
 * raw frames: clean,
 * detected, cached, session match, limit, too large, busy, malformed, ping and sessions, declined,
 * a client gone before its reply, and frames dropped when their connection closed. Then every
 * ScanRequest is paired with its ScanDecision, and every reply a client saw is checked against
 * the decision with its scan id.
 *
 * The one path not driven is an engine error: nothing a client sends makes the engine fail (it
 * needs an allocation failure); it goes through the same answer() as every other reply.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <zlib.h>

#include "amsi.h"
#include "amsi_protocol.h"
#include "broker/config.h"
#include "broker/server.h"
#include "etw/etw.h"

#define EICAR    "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
#define SPLIT_A  "Write-Output 'block one' # SPLIT-SIGNA"
#define SPLIT_B  "TURE-0123456789 # block two\n"
#define MAX_SEEN 256
#define BIG      (160u * 1024u) /* above pool_min: scanned in the pool */
#define WAIT_MS  20000
#define BURST    79 /* scans accepted before the request limit declines */
#define STR_(x)  #x
#define STR(x)   STR_(x)

/* What a client received for one request. */
typedef struct seen {
    uint64_t scan_id;
    uint32_t amsi_result;
    uint32_t status;
} seen;

typedef struct fixture {
    char dir[64];
    char sock[128];
    broker_config cfg;
    engine_rules *rules;
    broker_server *server;
    seen seen[MAX_SEEN];
    size_t nseen;
    size_t sent; /* frames written by raw clients that may never be answered */
} fixture;

static void note(fixture *f, uint64_t scan_id, uint32_t result, uint32_t status)
{
    assert_true(f->nseen < MAX_SEEN);
    f->seen[f->nseen++] = (seen){scan_id, result, status};
}

/* ------------------------------------------------------------------------------------------ */
/* Servers.                                                                                    */

static void set(broker_config *cfg, const char *assignment)
{
    char err[256];
    if (broker_config_set(cfg, assignment, err, sizeof(err)) != 0)
        fail_msg("%s: %s", assignment, err);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/amsi-trace-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    char err[512];
    etw_config tc;
    etw_config_init(&tc);
    if (etw_config_set(&tc, "backend", "capture", err, sizeof(err)) != 0 ||
        etw_config_set(&tc, "level", "verbose", err, sizeof(err)) != 0 ||
        etw_config_set(&tc, "keywords", "all", err, sizeof(err)) != 0 ||
        etw_start(&tc, err, sizeof(err)) != 0) {
        fprintf(stderr, "capture backend: %s\n", err);
        return -1;
    }
    etw_config_cleanup(&tc);
    engine_global_init();
    const char *paths[] = {AMSI_SOURCE_DIR "/engine/rules/default.yar",
                           AMSI_TEST_DATA "/broker/data/test.yar"};
    engine_diag diag;
    if (engine_rules_compile_files(paths, 2, NULL, &f->rules, &diag) != 0) {
        fprintf(stderr, "rules: %s\n", diag.text);
        return -1;
    }
    snprintf(f->sock, sizeof(f->sock), "%s/scan.sock", f->dir);
    if (broker_config_init(&f->cfg) != 0)
        return -1;
    char a[192];
    snprintf(a, sizeof(a), "broker.socket=%s", f->sock);
    set(&f->cfg, a);
    set(&f->cfg, "broker.threads=1");
    set(&f->cfg, "broker.pool_threads=1");
    set(&f->cfg, "broker.queue_depth=2");
    set(&f->cfg, "broker.pool_min=128K");
    set(&f->cfg, "broker.max_request_size=1M");
    set(&f->cfg, "engine.scan_archives=1");
    set(&f->cfg, "engine.max_recursion=1");
    set(&f->cfg, "ratelimit.max_requests=1");
    set(&f->cfg, "ratelimit.burst=" STR(BURST));
    set(&f->cfg, "ratelimit.interval_ms=86400000");
    if (broker_server_create(&f->cfg, f->rules, -1, &f->server, err, sizeof(err)) != 0 ||
        broker_server_start(f->server) != 0) {
        fprintf(stderr, "server: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    broker_server_destroy(f->server);
    broker_config_cleanup(&f->cfg);
    engine_rules_unref(f->rules);
    etw_stop();
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Clients.                                                                                    */

/* One libamsi scan; notes what came back. */
static void amsi_scan(fixture *f, HAMSICONTEXT ctx, HAMSISESSION session, const void *data,
                      size_t len, uint32_t want_status, AMSI_RESULT want_result)
{
    AMSI_RESULT r;
    AMSI_SCAN_INFO info;
    HRESULT hr = AmsiScanBufferEx(ctx, data, len, "trace-test", session, 0, &r, &info);
    if (hr != AMSI_S_OK && hr != AMSI_E_THROTTLED && hr != AMSI_E_TOO_LARGE)
        fail_msg("AmsiScanBufferEx: 0x%08x", (unsigned)hr);
    assert_int_equal(info.status, want_status);
    assert_int_equal(r, want_result);
    note(f, info.scan_id, (uint32_t)r, info.status);
}

static int raw_connect(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    /* Room for several frames of BIG bytes (SEQPACKET frames must fit the send buffer whole). */
    int sndbuf = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    return fd;
}

/* Sends a request frame with inline content. Returns false when the broker had closed. */
static bool raw_send(fixture *f, int fd, uint16_t type, uint64_t id, const void *content,
                     size_t len)
{
    amsi_proto_request req = {.type = type,
                              .request_id = id,
                              .app = "raw",
                              .app_len = 3,
                              .name = "raw",
                              .name_len = 3,
                              .content = content,
                              .content_len = len};
    uint8_t head[512];
    size_t hlen;
    assert_int_equal(amsi_proto_encode_request(&req, head, sizeof(head), &hlen), 0);
    struct iovec iov[2] = {{head, hlen}, {(void *)(uintptr_t)content, len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
        return false;
    assert_int_equal(n, (ssize_t)(hlen + len));
    f->sent++;
    return true;
}

/* Reads one reply into *rep (buf holds it). Returns false on EOF or time-out. */
static bool raw_reply(int fd, uint8_t *buf, amsi_proto_reply *rep)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, WAIT_MS) != 1)
        return false;
    ssize_t n = recv(fd, buf, AMSI_PROTO_MAX_REPLY, 0);
    return n > 0 && amsi_proto_decode_reply(buf, (size_t)n, rep) == 0;
}

/* Bytes that compress into a gzip of a gzip: two unpack steps, past max_recursion = 1. */
static size_t gzip_twice(uint8_t *out, size_t cap)
{
    static const char text[] = "Write-Output 'nested twice'\n";
    uint8_t inner[256];
    const uint8_t *src = (const uint8_t *)text;
    size_t srclen = sizeof(text) - 1, n = 0;
    for (int round = 0; round < 2; round++) {
        uint8_t *dst = round == 0 ? inner : out;
        size_t dcap = round == 0 ? sizeof(inner) : cap;
        z_stream z = {0};
        assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
        z.next_in = (Bytef *)(uintptr_t)src;
        z.avail_in = (uInt)srclen;
        z.next_out = dst;
        z.avail_out = (uInt)dcap;
        assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
        n = z.total_out;
        deflateEnd(&z);
        src = inner;
        srclen = n;
    }
    return n;
}

/* Filler of len bytes, unique per tag (never answered from the cache). */
static uint8_t *filler(size_t len, unsigned tag)
{
    uint8_t *p = malloc(len);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)('a' + (i * 7 + tag) % 26);
    char head[32];
    int n = snprintf(head, sizeof(head), "# filler %u\n", tag);
    memcpy(p, head, (size_t)n);
    return p;
}

/* ------------------------------------------------------------------------------------------ */
/* The test.                                                                                   */

static void drive_libamsi(fixture *f)
{
    setenv("AMSI_BROKER_SOCKET", f->sock, 1);
    HAMSICONTEXT ctx;
    assert_int_equal(AmsiInitializeA("trace-test", &ctx), AMSI_S_OK);
    const char *clean = "Write-Output 'hello from the trace test'";
    broker_stats before, after;
    broker_server_stats(f->server, &before);
    amsi_scan(f, ctx, NULL, clean, strlen(clean), AMSI_PROTO_STATUS_OK, AMSI_RESULT_NOT_DETECTED);
    amsi_scan(f, ctx, NULL, clean, strlen(clean), AMSI_PROTO_STATUS_OK, AMSI_RESULT_NOT_DETECTED);
    amsi_scan(f, ctx, NULL, EICAR, strlen(EICAR), AMSI_PROTO_STATUS_OK, AMSI_RESULT_DETECTED);
    broker_server_stats(f->server, &after);
    assert_int_equal(after.pool_scans, before.pool_scans); /* small scripts: scanned inline */
    uint8_t gz[512];
    size_t gzlen = gzip_twice(gz, sizeof(gz));
    amsi_scan(f, ctx, NULL, gz, gzlen, AMSI_PROTO_STATUS_LIMIT, AMSI_RESULT_NOT_DETECTED);
    broker_server_stats(f->server, &before);
    /* A container goes to the pool however small it is. */
    assert_int_equal(before.pool_scans, after.pool_scans + 1);
    HAMSISESSION session;
    assert_int_equal(AmsiOpenSession(ctx, &session), AMSI_S_OK);
    amsi_scan(f, ctx, session, SPLIT_A, strlen(SPLIT_A), AMSI_PROTO_STATUS_OK,
              AMSI_RESULT_NOT_DETECTED);
    amsi_scan(f, ctx, session, SPLIT_B, strlen(SPLIT_B), AMSI_PROTO_STATUS_OK,
              AMSI_RESULT_DETECTED);
    AmsiCloseSession(ctx, session);
    /* Above max_request_size: libamsi sends a memfd, the broker refuses it. */
    uint8_t *big = filler(2u << 20, 1);
    amsi_scan(f, ctx, NULL, big, 2u << 20, AMSI_PROTO_STATUS_TOO_LARGE, AMSI_RESULT_NOT_DETECTED);
    free(big);
    AmsiUninitialize(ctx);
}

/* Scans until the request limit declines one (the burst is spent by then, or now). */
static void drive_declined(fixture *f)
{
    setenv("AMSI_BROKER_SOCKET", f->sock, 1);
    HAMSICONTEXT ctx;
    assert_int_equal(AmsiInitializeA("trace-test-limited", &ctx), AMSI_S_OK);
    const char *text = "Write-Output 'spend the burst'";
    for (int i = 0; i <= BURST; i++) {
        AMSI_RESULT r;
        AMSI_SCAN_INFO info;
        HRESULT hr = AmsiScanBufferEx(ctx, text, strlen(text), "burst", NULL, 0, &r, &info);
        note(f, info.scan_id, (uint32_t)r, info.status);
        if (hr == AMSI_E_THROTTLED) {
            assert_int_equal(info.status, AMSI_PROTO_STATUS_THROTTLED);
            assert_int_equal(r, AMSI_RESULT_NOT_DETECTED);
            assert_true(info.retry_after_ms > 0);
            break;
        }
        assert_int_equal(hr, AMSI_S_OK);
    }
    AmsiUninitialize(ctx);
    unsetenv("AMSI_BROKER_SOCKET");
}

/* Frames written at once to a one-thread pool with two queue slots: some get BUSY. */
static void drive_busy(fixture *f)
{
    enum { N = 8, ROUNDS = 5 };
    const size_t longest = 1000u * 1024u; /* keeps the one pool thread busy for a while */
    unsigned busy = 0, round;
    for (round = 0; round < ROUNDS && busy == 0; round++) {
        int fd = raw_connect(f->sock);
        uint8_t *first = filler(longest, 1000 + round);
        assert_true(raw_send(f, fd, AMSI_PROTO_SCAN, 99, first, longest));
        free(first);
        for (unsigned i = 0; i < N; i++) {
            uint8_t *data = filler(BIG, 100 + round * N + i);
            assert_true(raw_send(f, fd, AMSI_PROTO_SCAN, 100 + i, data, BIG));
            free(data);
        }
        for (unsigned i = 0; i < N + 1; i++) {
            uint8_t buf[AMSI_PROTO_MAX_REPLY];
            amsi_proto_reply rep;
            assert_true(raw_reply(fd, buf, &rep));
            note(f, rep.scan_id, rep.amsi_result, rep.status);
            busy += rep.status == AMSI_PROTO_STATUS_BUSY;
        }
        close(fd);
    }
    /* A machine too busy to let the worker read ahead of the pool may need another round. */
    print_message("  %u refused BUSY in %u round(s)\n", busy, round);
    assert_true(busy >= 1);
}

/* A ping, a malformed frame (answered BAD_REQUEST, then the connection closes) and a frame behind
 * it that may be dropped unread. */
static void drive_malformed(fixture *f)
{
    int fd = raw_connect(f->sock);
    assert_true(raw_send(f, fd, AMSI_PROTO_PING, 1, NULL, 0));
    uint8_t buf[AMSI_PROTO_MAX_REPLY];
    amsi_proto_reply rep;
    assert_true(raw_reply(fd, buf, &rep));
    note(f, rep.scan_id, rep.amsi_result, rep.status);
    uint8_t garbage[64];
    memset(garbage, 0x5a, sizeof(garbage));
    assert_int_equal(send(fd, garbage, sizeof(garbage), MSG_NOSIGNAL), (ssize_t)sizeof(garbage));
    f->sent++;
    (void)raw_send(f, fd, AMSI_PROTO_SCAN, 3, "behind", 6); /* may find the connection closed */
    assert_true(raw_reply(fd, buf, &rep));
    assert_int_equal(rep.status, AMSI_PROTO_STATUS_BAD_REQUEST);
    note(f, rep.scan_id, rep.amsi_result, rep.status);
    /* The frame behind was read and dropped with the connection, or answered before it. */
    if (raw_reply(fd, buf, &rep))
        note(f, rep.scan_id, rep.amsi_result, rep.status);
    close(fd);
}

/*
 * A long pool scan, two more queued behind it on the one pool thread, then the client leaves:
 * the queued ones (at least) find it gone when their turn comes.
 */
static void drive_client_gone(fixture *f)
{
    int fd = raw_connect(f->sock);
    const size_t longest = 1000u * 1024u; /* under inline_max and max_request_size */
    uint8_t *first = filler(longest, 2000), *a = filler(BIG, 2001), *b = filler(BIG, 2002);
    assert_true(raw_send(f, fd, AMSI_PROTO_SCAN, 199, first, longest));
    free(first);
    assert_true(raw_send(f, fd, AMSI_PROTO_SCAN, 200, a, BIG));
    assert_true(raw_send(f, fd, AMSI_PROTO_SCAN, 201, b, BIG));
    close(fd);
    free(a);
    free(b);
}

/* The fields of the ScanDecision with scan id id, or NULL; fails on a second one. */
static const etw_record *decision_of(uint64_t id)
{
    const etw_record *found = NULL;
    for (size_t i = 0;; i++) {
        const etw_record *r = etw_capture_at(i);
        if (r == NULL)
            break;
        if (etw_record_event(r) == ETW_EV_ScanDecision &&
            etw_record_u64(r, "scan_id", NULL) == id) {
            if (found != NULL)
                fail_msg("two ScanDecisions for scan id %llu", (unsigned long long)id);
            found = r;
        }
    }
    return found;
}

static void test_every_request_one_decision(void **state)
{
    fixture *f = *state;
    drive_libamsi(f);
    drive_busy(f);
    drive_malformed(f);
    drive_client_gone(f);
    drive_declined(f);
    /* Stopping the server finishes every request in flight: after that, every request read has
     * its decision. */
    broker_server_stop(f->server);

    size_t requests = etw_capture_count(ETW_EV_ScanRequest);
    size_t decisions = etw_capture_count(ETW_EV_ScanDecision);
    print_message("  %zu requests, %zu decisions, %zu replies seen by clients\n", requests,
                  decisions, f->nseen);
    assert_int_equal(requests, decisions);
    /* One-to-one: each request's scan id has exactly one decision. */
    size_t gone = 0, dropped = 0, cached = 0, throttled = 0;
    for (size_t i = 0;; i++) {
        const etw_record *r = etw_capture_at(i);
        if (r == NULL)
            break;
        if (etw_record_event(r) != ETW_EV_ScanRequest)
            continue;
        uint64_t id = etw_record_u64(r, "scan_id", NULL);
        const etw_record *d = decision_of(id);
        if (d == NULL)
            fail_msg("scan id %llu has no ScanDecision", (unsigned long long)id);
        const char *st = etw_record_str(d, "status", NULL);
        gone += strcmp(st, "CLIENT_GONE") == 0;
        dropped += strcmp(st, "DROPPED") == 0;
        cached += etw_record_u64(d, "cached", NULL) == 1;
        throttled += etw_record_u64(d, "throttled", NULL) == 1;
        /* Every field is present in every decision. */
        bool found;
        static const char *const fields[] = {
            "session", "scanStatus", "scanResult", "contentsize", "originalsize", "contentFiltered",
            "pid",     "uid",        "latency_ns", "cached",      "throttled",    "exempt"};
        for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
            etw_record_u64(d, fields[k], &found);
            assert_true(found);
        }
        static const char *const strs[] = {"appname", "contentname", "hash",   "exe",
                                           "rule",    "object",      "reason", "status"};
        for (size_t k = 0; k < sizeof(strs) / sizeof(strs[0]); k++)
            assert_non_null(etw_record_str(d, strs[k], NULL));
    }
    /* What each client received is what its decision says. */
    for (size_t i = 0; i < f->nseen; i++) {
        const etw_record *d = decision_of(f->seen[i].scan_id);
        if (d == NULL)
            fail_msg("reply with scan id %llu has no ScanDecision",
                     (unsigned long long)f->seen[i].scan_id);
        assert_int_equal(etw_record_u64(d, "scanResult", NULL), f->seen[i].amsi_result);
        assert_string_equal(etw_record_str(d, "status", NULL),
                            amsi_proto_status_name(f->seen[i].status));
    }
    assert_true(requests >= f->nseen + 3); /* the pool scans of the client that left */
    assert_true(gone >= 1);
    assert_true(cached >= 1);
    assert_int_equal(throttled, 1);
    print_message("  client gone %zu, dropped %zu, cached %zu, throttled %zu\n", gone, dropped,
                  cached, throttled);
    /* The statuses of every path were seen. */
    static const uint32_t statuses[] = {AMSI_PROTO_STATUS_OK,          AMSI_PROTO_STATUS_LIMIT,
                                        AMSI_PROTO_STATUS_TOO_LARGE,   AMSI_PROTO_STATUS_BUSY,
                                        AMSI_PROTO_STATUS_BAD_REQUEST, AMSI_PROTO_STATUS_THROTTLED};
    for (size_t k = 0; k < sizeof(statuses) / sizeof(statuses[0]); k++) {
        bool any = false;
        for (size_t i = 0; i < f->nseen; i++)
            any |= f->seen[i].status == statuses[k];
        if (!any)
            fail_msg("no reply with status %s", amsi_proto_status_name(statuses[k]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_request_one_decision),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
