/*
 * amsi_flood.c - a test client for the broker's request limits: one process sending scans (or
 * notifications) through libamsi on a fixed schedule, counting what came back. The rate-limit
 * tests run copies of it from different paths, so that the broker sees different executables.
 *
 *   amsi_flood --rate R --seconds S [--app NAME] [--notify]
 *
 * Prints one line: "sent=N accepted=A declined=D blocked=B errors=E elapsed_us=T retry_ms=M"
 * where declined counts THROTTLED replies that failed open (AMSI_E_THROTTLED), blocked those
 * answered with a blocked-by-admin result (ratelimit.action = block), errors anything else that
 * is not S_OK, elapsed_us the time from the first request to the last, and retry_ms the largest
 * retry-after hint seen. Exits 0, or 2 on bad arguments or when libamsi cannot start.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "amsi.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u), .tv_nsec = (long)(t % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0)
        ;
}

int main(int argc, char **argv)
{
    double rate = 0, seconds = 0;
    const char *app = "amsi_flood";
    bool notify = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc)
            rate = atof(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--app") == 0 && i + 1 < argc)
            app = argv[++i];
        else if (strcmp(argv[i], "--notify") == 0)
            notify = true;
        else {
            fprintf(stderr, "usage: amsi_flood --rate R --seconds S [--app NAME] [--notify]\n");
            return 2;
        }
    }
    if (rate <= 0 || seconds <= 0) {
        fprintf(stderr, "amsi_flood: --rate and --seconds must be positive\n");
        return 2;
    }
    HAMSICONTEXT ctx;
    if (AmsiInitializeA(app, &ctx) != AMSI_S_OK) {
        fprintf(stderr, "amsi_flood: AmsiInitializeA failed\n");
        return 2;
    }
    uint64_t n = (uint64_t)(rate * seconds + 0.5);
    uint64_t gap = (uint64_t)(1e9 / rate);
    uint64_t sent = 0, accepted = 0, declined = 0, blocked = 0, errors = 0, retry_ms = 0;
    uint64_t start = now_ns(), last = start;
    char text[128];
    for (uint64_t i = 0; i < n; i++) {
        uint64_t due = start + i * gap;
        if (now_ns() < due)
            sleep_until(due);
        int len =
            snprintf(text, sizeof(text), "Write-Output 'request %llu'", (unsigned long long)i);
        AMSI_RESULT r;
        AMSI_SCAN_INFO info = {0};
        HRESULT hr;
        last = now_ns();
        if (notify)
            hr = AmsiNotifyOperation(ctx, text, (ULONG)len, NULL, &r);
        else
            hr = AmsiScanBufferEx(ctx, text, (size_t)len, "flood", NULL, 0, &r, &info);
        sent++;
        if (hr == AMSI_E_THROTTLED)
            declined++;
        else if (hr == AMSI_S_OK && AmsiResultIsBlockedByAdmin(r))
            blocked++;
        else if (hr == AMSI_S_OK)
            accepted++;
        else
            errors++;
        if (info.retry_after_ms > retry_ms)
            retry_ms = info.retry_after_ms;
    }
    printf("sent=%llu accepted=%llu declined=%llu blocked=%llu errors=%llu elapsed_us=%llu "
           "retry_ms=%llu\n",
           (unsigned long long)sent, (unsigned long long)accepted, (unsigned long long)declined,
           (unsigned long long)blocked, (unsigned long long)errors,
           (unsigned long long)((last - start) / 1000u), (unsigned long long)retry_ms);
    AmsiUninitialize(ctx);
    return 0;
}
