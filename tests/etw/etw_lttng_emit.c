/*
 * etw_lttng_emit - the traced program of test_etw_lttng: starts the lttng backend (dlopen of
 * libamsi-lttng.so given as argv[1]) and emits a known workload: argv[2] ScanDecision events
 * (scan_id 1..N, every fifth one detected, every seventh one without a hash) with a ScanRequest
 * before each, and one of every other event. test_etw_lttng.c checks the trace against the same
 * rules.
 */
#include "etw/etw.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: etw_lttng_emit LIBRARY COUNT\n");
        return 2;
    }
    etw_config cfg;
    char err[512];
    etw_config_init(&cfg);
    if (etw_config_set(&cfg, "backend", "lttng", err, sizeof(err)) != 0 ||
        etw_config_set(&cfg, "lttng_library", argv[1], err, sizeof(err)) != 0 ||
        etw_config_set(&cfg, "level", "verbose", err, sizeof(err)) != 0 ||
        etw_config_set(&cfg, "keywords", "all", err, sizeof(err)) != 0 ||
        etw_start(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "etw_lttng_emit: %s\n", err);
        etw_config_cleanup(&cfg);
        return 1;
    }
    etw_config_cleanup(&cfg);
    static const uint8_t hash[32] = {0xde, 0xad, 0xbe, 0xef};
    unsigned long count = strtoul(argv[2], NULL, 10);
    ETW_EMIT(BrokerStart, .pid = 1, .version = "0.1.0", .config = "/etc/amsid.conf", .workers = 2,
             .rules = 10, .backend = "lttng");
    ETW_EMIT(ClientConnect, .conn_id = 1, .pid = 4242, .uid = 1000, .exe = "/usr/bin/pwsh");
    ETW_EMIT(SessionOpen, .conn_id = 1, .session = 9, .pid = 4242, .appname = "pwsh");
    for (unsigned long i = 1; i <= count; i++) {
        int detected = i % 5 == 0;
        ETW_EMIT(ScanRequest, .scan_id = i, .session = 9, .conn_id = 1, .pid = 4242,
                 .appname = i % 2 ? "wscript \"q\"" : "pwsh", .contentsize = 16, .kind = "buffer");
        ETW_EMIT(ScanDecision, .scan_id = i, .session = 9, .scanStatus = 1,
                 .scanResult = detected ? 32768u : 1u, .appname = i % 2 ? "wscript \"q\"" : "pwsh",
                 .contentname = "block.ps1", .contentsize = 16, .originalsize = 32,
                 .hash = i % 7 ? hash : NULL, .pid = 4242, .uid = 1000, .exe = "/usr/bin/pwsh",
                 .rule = detected ? "AMSI_Test_Sample" : "", .status = "OK", .latency_ns = 1000 + i,
                 .content = "Write-Host hello", .content_len = 16);
    }
    ETW_EMIT(RequestDeclined, .scan_id = count + 1, .pid = 4242, .class = "scan",
             .retry_after_ns = 5000, .action = "allow");
    ETW_EMIT(LimitExceeded, .scan_id = count + 2, .limit = "Limits.Exceeded.MaxScanTime",
             .value = 2, .max = 1);
    ETW_EMIT(QueueFull, .scan_id = count + 3, .depth = 64, .capacity = 64);
    ETW_EMIT(EngineError, .scan_id = count + 4, .error = -7, .message = "engine failed");
    ETW_EMIT(ReportSent, .exe = "/usr/bin/pwsh", .count = 3, .collector = "udp://127.0.0.1:514",
             .ok = true);
    ETW_EMIT(ConfigReload, .ok = true, .rules = 11, .compile_ms = 25);
    ETW_EMIT(SessionClose, .conn_id = 1, .session = 9, .pid = 4242, .scans = count);
    ETW_EMIT(ClientDisconnect, .conn_id = 1, .pid = 4242, .requests = count, .reason = "closed");
    ETW_EMIT(BrokerStop, .pid = 1, .reason = "SIGTERM", .requests = count);
    etw_stats st;
    etw_get_stats(&st);
    etw_stop();
    printf("written %llu dropped %llu\n", (unsigned long long)st.written,
           (unsigned long long)st.dropped);
    return 0;
}
