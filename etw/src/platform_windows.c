/*
 * platform_windows.c - the backends a Windows build has (ETW TraceLogging, capture), and the
 * clock and yield the core needs. Linux builds link platform_posix.c instead.
 */
#include "etw_internal.h"

#include <windows.h>

#include <errno.h>

int etw__platform_create(const etw_config *cfg, etw__backend **out, char *err, size_t errlen)
{
    switch (cfg->backend) {
    case ETW_BACKEND_ETW:
        return etw__win_create(cfg, out, err, errlen);
    case ETW_BACKEND_CAPTURE:
        return etw__capture_create(cfg, out, err, errlen);
    case ETW_BACKEND_NONE:
    case ETW_BACKEND_LTTNG:
    case ETW_BACKEND_JSONL:
        break;
    }
    etw__seterr(err, errlen, "trace.backend: %s is not available on this platform",
                etw_backend_name(cfg->backend));
    return -EINVAL;
}

void etw__platform_yield(void)
{
    SwitchToThread();
}

uint64_t etw__platform_realtime_ns(void)
{
    FILETIME ft;
    GetSystemTimePreciseAsFileTime(&ft);
    uint64_t t = ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
    return (t - 116444736000000000ull) * 100u; /* 100 ns ticks since 1601 -> ns since 1970 */
}

uint64_t etw__platform_monotonic_ns(void)
{
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (uint64_t)((double)c.QuadPart * 1e9 / (double)f.QuadPart);
}
