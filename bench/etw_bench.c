/*
 * etw_bench - what tracing costs per event: the disabled check, and an enabled ScanDecision emit
 * through each backend. Prints nanoseconds per event; asserts nothing.
 *
 *   etw_bench [--lttng-library PATH] [--jsonl PATH] [--iterations N]
 *
 * Rows:
 *   loop                  the empty measuring loop (subtract it mentally)
 *   disabled etw_enabled  etw_enabled(ScanDecision) with no backend: the cost amsid pays per
 *                         decision when tracing is off
 *   disabled ETW_EMIT     the same through ETW_EMIT with a dozen initialisers (not evaluated)
 *   filtered ETW_EMIT     a backend runs, but the event's level is filtered out
 *   capture               enabled, in-memory capture (cleared every 100000 events)
 *   jsonl                 enabled, one JSON line per event appended to a file (default /dev/null)
 *   lttng                 enabled in amsid's mask, through libamsi-lttng.so: with no LTTng session
 *                         this is the cost of a loaded but idle provider; run the bench inside an
 *                         LTTng session that enables amsi_broker:* to measure recording
 */
#include "etw/etw.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef ETW_BENCH_LTTNG_LIBRARY
#define ETW_BENCH_LTTNG_LIBRARY "libamsi-lttng.so"
#endif

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const uint8_t hash[32] = {0x12, 0x34, 0x56, 0x78};
static volatile uint64_t sink;

static void emit_one(uint64_t i)
{
    ETW_EMIT(ScanDecision, .scan_id = i, .session = 7, .scanStatus = 1, .scanResult = 1,
             .appname = "pwsh", .contentname = "block.ps1", .contentsize = 4096,
             .originalsize = 8192, .hash = hash, .pid = 4242, .uid = 1000, .exe = "/usr/bin/pwsh",
             .status = "OK", .latency_ns = 15000 + (i & 1023));
}

static void report(const char *what, uint64_t t0, uint64_t t1, uint64_t n)
{
    printf("%-24s %10.2f ns/event   (%llu events)\n", what, (double)(t1 - t0) / (double)n,
           (unsigned long long)n);
}

static int start(const char *backend, const char *level, const char *key, const char *value)
{
    etw_config cfg;
    char err[512];
    etw_config_init(&cfg);
    int rc = etw_config_set(&cfg, "backend", backend, err, sizeof(err));
    if (rc == 0 && level)
        rc = etw_config_set(&cfg, "level", level, err, sizeof(err));
    if (rc == 0 && key)
        rc = etw_config_set(&cfg, key, value, err, sizeof(err));
    if (rc == 0)
        rc = etw_start(&cfg, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "etw_bench: %s: %s\n", backend, err);
    etw_config_cleanup(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    const char *lttng = ETW_BENCH_LTTNG_LIBRARY;
    const char *jsonl = "/dev/null";
    uint64_t n = 100000000, ne = 1000000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--lttng-library") == 0 && i + 1 < argc) {
            lttng = argv[++i];
        } else if (strcmp(argv[i], "--jsonl") == 0 && i + 1 < argc) {
            jsonl = argv[++i];
        } else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc) {
            n = strtoull(argv[++i], NULL, 10);
            ne = n / 100 ? n / 100 : 1;
        } else {
            fprintf(stderr, "usage: etw_bench [--lttng-library PATH] [--jsonl PATH] "
                            "[--iterations N]\n");
            return 2;
        }
    }

    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        sink = i;
    report("loop", t0, now_ns(), n);

    etw_stop();
    uint64_t hits = 0;
    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        sink = i;
        if (etw_enabled(ScanDecision))
            hits++;
    }
    report("disabled etw_enabled", t0, now_ns(), n);

    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        sink = i;
        emit_one(i);
    }
    report("disabled ETW_EMIT", t0, now_ns(), n);

    if (start("capture", "warning", NULL, NULL) == 0) {
        t0 = now_ns();
        for (uint64_t i = 0; i < n; i++) {
            sink = i;
            emit_one(i);
        }
        report("filtered ETW_EMIT", t0, now_ns(), n);
    }

    if (start("capture", NULL, NULL, NULL) == 0) {
        uint64_t total = 0;
        for (uint64_t done = 0; done < ne; done += 100000) {
            uint64_t chunk = ne - done < 100000 ? ne - done : 100000;
            uint64_t c0 = now_ns();
            for (uint64_t i = 0; i < chunk; i++)
                emit_one(done + i);
            total += now_ns() - c0;
            etw_capture_clear();
        }
        report("capture", 0, total, ne);
    }

    if (start("jsonl", NULL, "jsonl_path", jsonl) == 0) {
        t0 = now_ns();
        for (uint64_t i = 0; i < ne; i++)
            emit_one(i);
        report("jsonl", t0, now_ns(), ne);
    }

    if (start("lttng", NULL, "lttng_library", lttng) == 0) {
        t0 = now_ns();
        for (uint64_t i = 0; i < ne; i++)
            emit_one(i);
        report("lttng", t0, now_ns(), ne);
    }
    etw_stop();
    return hits != 0;
}
