/*
 * platform_posix.c - the backends a Linux build has (LTTng, JSON lines, capture), and the clock
 * and yield the core needs. The Windows build links platform_windows.c instead.
 */
#include "etw_internal.h"

#include <errno.h>
#include <sched.h>
#include <time.h>

int etw__platform_create(const etw_config *cfg, etw__backend **out, char *err, size_t errlen)
{
    switch (cfg->backend) {
    case ETW_BACKEND_LTTNG:
        return etw__lttng_create(cfg, out, err, errlen);
    case ETW_BACKEND_JSONL:
        return etw__jsonl_create(cfg, out, err, errlen);
    case ETW_BACKEND_CAPTURE:
        return etw__capture_create(cfg, out, err, errlen);
    case ETW_BACKEND_NONE:
    case ETW_BACKEND_ETW:
        break;
    }
    etw__seterr(err, errlen, "trace.backend: %s is not available on this platform",
                etw_backend_name(cfg->backend));
    return -EINVAL;
}

void etw__platform_yield(void)
{
    sched_yield();
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t etw__platform_realtime_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

uint64_t etw__platform_monotonic_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}
