/*
 * etw_win_check.c - a tiny Windows program that starts the ETW backend and emits one of every
 * event. Linux CI only cross-compiles and links it with mingw-w64 (target etw_mingw_check) to
 * prove the Windows backend builds; on Windows it is a smoke test to run under `wpr -start`.
 */
#include "etw/etw.h"

#include <stdio.h>

int main(void)
{
    etw_config cfg;
    char err[256];
    etw_config_init(&cfg);
    if (etw_config_set(&cfg, "backend", "etw", err, sizeof(err)) != 0 ||
        etw_config_set(&cfg, "level", "verbose", err, sizeof(err)) != 0 ||
        etw_config_set(&cfg, "keywords", "all", err, sizeof(err)) != 0 ||
        etw_start(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "etw_win_check: %s\n", err);
        etw_config_cleanup(&cfg);
        return 1;
    }
    static const unsigned char hash[32] = {1, 2, 3};
#define EMIT_ONE(name, level, kw, op, fields, doc)                                                 \
    {                                                                                              \
        const etw_##name ev = {0};                                                                 \
        etw_emit_##name(&ev);                                                                      \
    }
    ETW_EVENTS(EMIT_ONE)
#undef EMIT_ONE
    ETW_EMIT(ScanDecision, .scan_id = 1, .scanResult = 32768, .appname = "check", .hash = hash,
             .content = "Invoke-Expression", .content_len = 17, .status = "OK");
    etw_stop();
    etw_config_cleanup(&cfg);
    puts("etw_win_check: events written");
    return 0;
}
