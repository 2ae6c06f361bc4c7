/*
 * test_etw.c - the etw library: schema and generated descriptions, the enabled mask by level and
 * keyword, configuration errors, the capture backend, the JSON lines backend (each line parsed by
 * python3's json module), the CONTENT keyword and its cap, swapping backends under concurrent
 * emitters, and the README events table matching the schema.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "etw/etw.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void start_with(const char *backend, const char *level, const char *keywords,
                       const char *path)
{
    etw_config cfg;
    char err[256] = "";
    etw_config_init(&cfg);
    assert_int_equal(etw_config_set(&cfg, "backend", backend, err, sizeof(err)), 0);
    if (level)
        assert_int_equal(etw_config_set(&cfg, "level", level, err, sizeof(err)), 0);
    if (keywords)
        assert_int_equal(etw_config_set(&cfg, "keywords", keywords, err, sizeof(err)), 0);
    if (path)
        assert_int_equal(etw_config_set(&cfg, "jsonl_path", path, err, sizeof(err)), 0);
    int rc = etw_start(&cfg, err, sizeof(err));
    if (rc != 0)
        fail_msg("etw_start: %s", err);
    etw_config_cleanup(&cfg);
}

static void test_schema(void **state)
{
    (void)state;
    assert_int_equal(ETW_NEVENTS, 14);
    assert_int_equal(etw_event_lookup("ScanDecision"), ETW_EV_ScanDecision);
    assert_int_equal(etw_event_lookup("NoSuchEvent"), -1);
    assert_null(etw_event_describe(ETW_NEVENTS));
    const etw_event_info *d = etw_event_describe(ETW_EV_ScanDecision);
    assert_string_equal(d->name, "ScanDecision");
    assert_int_equal(d->level, ETW_LEVEL_INFO);
    assert_int_equal(d->keyword, ETW_KW_SCAN);
    assert_int_equal(d->opcode, ETW_OP_STOP);
    assert_int_equal(etw_event_describe(ETW_EV_ScanRequest)->opcode, ETW_OP_START);
    static const char *const want[] = {
        "scan_id",     "session",      "scanStatus", "scanResult",      "appname", "contentname",
        "contentsize", "originalsize", "hash",       "contentFiltered", "pid",     "uid",
        "exe",         "rule",         "object",     "reason",          "status",  "latency_ns",
        "cached",      "throttled",    "exempt",     "content"};
    assert_int_equal(d->nfields, sizeof(want) / sizeof(want[0]));
    for (size_t i = 0; i < d->nfields; i++)
        assert_string_equal(d->fields[i].name, want[i]);
    assert_int_equal(d->fields[8].type, ETW_T_HASH);
    assert_int_equal(d->fields[21].type, ETW_T_BLOB);
    /* Every event has a level 1-5, exactly one keyword that is not CONTENT, and unique names. */
    for (int i = 0; i < ETW_NEVENTS; i++) {
        const etw_event_info *e = etw_event_describe((etw_event)i);
        assert_in_range(e->level, 1, 5);
        assert_true(e->keyword != 0 && (e->keyword & (e->keyword - 1)) == 0);
        assert_true(e->keyword != ETW_KW_CONTENT);
        assert_true(e->nfields > 0);
        for (size_t f = 0; f < e->nfields; f++)
            for (size_t g = f + 1; g < e->nfields; g++)
                assert_string_not_equal(e->fields[f].name, e->fields[g].name);
    }
    assert_string_equal(etw_keyword_name(ETW_KW_THROTTLE), "THROTTLE");
    assert_string_equal(etw_keyword_name(3), "?");
    assert_string_equal(etw_level_name(2), "error");
    assert_string_equal(etw_level_name(9), "?");
    assert_string_equal(etw_type_name(ETW_T_HASH), "sha256");
}

static void test_disabled_without_backend(void **state)
{
    (void)state;
    etw_stop();
    for (int i = 0; i < ETW_NEVENTS; i++)
        assert_false(etw_event_enabled((etw_event)i));
    assert_int_equal(etw_backend(), ETW_BACKEND_NONE);
    etw_ScanDecision ev = {.scan_id = 1};
    etw_emit_ScanDecision(&ev); /* nothing runs: must not crash */
    etw_emit_ScanDecision(NULL);
    assert_int_equal(etw_capture_count(ETW_NEVENTS), 0);
    assert_null(etw_capture_at(0));
    etw_stats st;
    etw_get_stats(&st);
    assert_int_equal(st.written, 0);
    assert_int_equal(etw_set_filter(4, ETW_KW_ALL), 0);
    assert_int_equal(etw_set_filter(0, ETW_KW_ALL), -EINVAL);
    etw_stop(); /* twice is fine */
}

static void test_filter_level_keyword(void **state)
{
    (void)state;
    start_with("capture", "warning", "throttle,error", NULL);
    assert_int_equal(etw_backend(), ETW_BACKEND_CAPTURE);
    for (int i = 0; i < ETW_NEVENTS; i++) {
        const etw_event_info *e = etw_event_describe((etw_event)i);
        bool want =
            e->level <= ETW_LEVEL_WARNING && (e->keyword & (ETW_KW_THROTTLE | ETW_KW_ERROR)) != 0;
        assert_int_equal(etw_event_enabled((etw_event)i), want);
    }
    assert_true(etw_enabled(RequestDeclined));
    assert_true(etw_enabled(QueueFull));
    assert_true(etw_enabled(EngineError));
    assert_false(etw_enabled(ReportSent)); /* THROTTLE but info */
    assert_false(etw_enabled(ScanDecision));

    /* Arguments are not evaluated for a disabled event. */
    int evaluated = 0;
    ETW_EMIT(ScanDecision, .scan_id = (uint64_t)++evaluated);
    assert_int_equal(evaluated, 0);
    ETW_EMIT(QueueFull, .scan_id = (uint64_t)++evaluated, .depth = 7, .capacity = 8);
    assert_int_equal(evaluated, 1);
    etw_EngineError ee = {.scan_id = 3, .error = -5, .message = "boom"};
    etw_emit_EngineError(&ee);
    etw_ScanDecision sd = {.scan_id = 4};
    etw_emit_ScanDecision(&sd); /* disabled: not captured */
    assert_int_equal(etw_capture_count(ETW_NEVENTS), 2);
    assert_int_equal(etw_capture_count(ETW_EV_QueueFull), 1);
    const etw_record *r = etw_capture_at(1);
    assert_int_equal(etw_record_event(r), ETW_EV_EngineError);
    bool found;
    assert_int_equal((int64_t)etw_record_u64(r, "error", &found), -5);
    assert_true(found);
    assert_string_equal(etw_record_str(r, "message", NULL), "boom");
    assert_string_equal(etw_record_str(r, "object", NULL), ""); /* NULL is "" */

    /* A new filter applies at once. */
    assert_int_equal(etw_set_filter(ETW_LEVEL_VERBOSE, ETW_KW_SCAN), 0);
    assert_true(etw_enabled(ScanRequest));
    assert_true(etw_enabled(ScanDecision));
    assert_false(etw_enabled(EngineError));
    etw_stop();
    assert_false(etw_enabled(ScanDecision));
}

static void test_config_errors(void **state)
{
    (void)state;
    etw_config cfg;
    char err[256];
    etw_config_init(&cfg);
    assert_int_equal(cfg.backend, ETW_BACKEND_NONE);
    assert_int_equal(cfg.level, 4);
    assert_int_equal(cfg.keywords & ETW_KW_CONTENT, 0);
    assert_int_equal(cfg.content_max, 4096);

    err[0] = '\0';
    assert_int_equal(etw_config_set(&cfg, "backend", "kafka", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "kafka"));
    assert_int_equal(etw_config_set(&cfg, "level", "0", err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_config_set(&cfg, "level", "6", err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_config_set(&cfg, "level", "loud", err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_config_set(&cfg, "level", "Verbose", err, sizeof(err)), 0);
    assert_int_equal(cfg.level, 5);
    assert_int_equal(etw_config_set(&cfg, "level", "2", err, sizeof(err)), 0);
    assert_int_equal(cfg.level, 2);
    assert_int_equal(etw_config_set(&cfg, "keywords", "scan,bogus", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "bogus"));
    assert_int_equal(etw_config_set(&cfg, "keywords", "scan,", err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_config_set(&cfg, "keywords", "", err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_config_set(&cfg, "keywords", "-1", err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_config_set(&cfg, "keywords", "scan | throttle", err, sizeof(err)), 0);
    assert_int_equal(cfg.keywords, ETW_KW_SCAN | ETW_KW_THROTTLE);
    assert_int_equal(etw_config_set(&cfg, "keywords", "0x108", err, sizeof(err)), 0);
    assert_int_equal(cfg.keywords, ETW_KW_SCAN | ETW_KW_CONTENT);
    assert_int_equal(etw_config_set(&cfg, "keywords", "ALL", err, sizeof(err)), 0);
    assert_int_equal(cfg.keywords, ETW_KW_ALL);
    assert_int_equal(etw_config_set(&cfg, "content_max", "40000", err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_config_set(&cfg, "content_max", "12abc", err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_config_set(&cfg, "content_max", "16", err, sizeof(err)), 0);
    /* An empty path is "not set" (amsid.conf lists every key, empty where there is no default). */
    assert_int_equal(etw_config_set(&cfg, "jsonl_path", "/tmp/x.jsonl", err, sizeof(err)), 0);
    assert_int_equal(etw_config_set(&cfg, "jsonl_path", "", err, sizeof(err)), 0);
    assert_null(cfg.jsonl_path);
    assert_int_equal(etw_config_set(&cfg, "lttng_library", "", err, sizeof(err)), 0);
    assert_null(cfg.lttng_library);
    assert_int_equal(etw_config_set(&cfg, "colour", "blue", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "colour"));
    assert_int_equal(etw_config_set(&cfg, NULL, "x", err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_config_set(&cfg, "level", NULL, NULL, 0), -EINVAL);

    /* jsonl without a path, an unwritable path, a missing provider library, etw on Linux. */
    assert_int_equal(etw_config_set(&cfg, "backend", "jsonl", err, sizeof(err)), 0);
    assert_int_equal(etw_start(&cfg, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "jsonl_path"));
    assert_int_equal(
        etw_config_set(&cfg, "jsonl_path", "/nonexistent/dir/x.jsonl", err, sizeof(err)), 0);
    assert_int_equal(etw_start(&cfg, err, sizeof(err)), -ENOENT);
    assert_int_equal(etw_config_set(&cfg, "backend", "lttng", err, sizeof(err)), 0);
    assert_int_equal(
        etw_config_set(&cfg, "lttng_library", "/nonexistent/libamsi-lttng.so", err, sizeof(err)),
        0);
    assert_int_equal(etw_start(&cfg, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "provider library"));
    assert_int_equal(etw_config_set(&cfg, "backend", "etw", err, sizeof(err)), 0);
    assert_int_equal(etw_start(&cfg, err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_start(NULL, err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_backend(), ETW_BACKEND_NONE);

    /* A failed start leaves the running backend alone. */
    start_with("capture", NULL, NULL, NULL);
    assert_int_equal(etw_start(&cfg, err, sizeof(err)), -EINVAL);
    assert_int_equal(etw_backend(), ETW_BACKEND_CAPTURE);
    etw_stop();
    etw_config_cleanup(&cfg);
    etw_config_cleanup(NULL);
}

static const uint8_t hash32[32] = {0x00, 0x01, 0xab, 0xcd, 0xef, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60,
                                   0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0, 0xd0, 0xe0, 0xf0, 0xff, 0x0f,
                                   0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5};

static void test_capture_fields(void **state)
{
    (void)state;
    start_with("capture", "verbose", "all", NULL); /* "all" includes CONTENT */
    const char content[] = "IEX (New-Object Net.WebClient)";
    ETW_EMIT(ScanDecision, .scan_id = 42, .session = 7, .scanStatus = 1, .scanResult = 32768,
             .appname = "pwsh", .contentname = "script.ps1", .contentsize = sizeof(content) - 1,
             .originalsize = 60, .hash = hash32, .pid = 1234, .uid = 1000, .exe = "/usr/bin/pwsh",
             .rule = "PS_IEX", .object = "script.ps1", .status = "OK", .latency_ns = 15000,
             .cached = true, .content = content, .content_len = sizeof(content) - 1);
    ETW_EMIT(ScanDecision, .scan_id = 43, .status = "THROTTLED", .throttled = true);
    assert_int_equal(etw_capture_count(ETW_EV_ScanDecision), 2);
    const etw_record *r = etw_capture_at(0);
    assert_non_null(r);
    assert_int_equal(etw_record_event(r), ETW_EV_ScanDecision);
    assert_true(etw_record_ts(r) > 0);
    assert_int_equal(etw_record_u64(r, "scan_id", NULL), 42);
    assert_int_equal(etw_record_u64(r, "scanResult", NULL), 32768);
    assert_int_equal(etw_record_u64(r, "cached", NULL), 1);
    assert_int_equal(etw_record_u64(r, "contentFiltered", NULL), 0);
    assert_string_equal(etw_record_str(r, "appname", NULL), "pwsh");
    assert_string_equal(etw_record_str(r, "hash", NULL),
                        "0001abcdef102030405060708090a0b0c0d0e0f0ff0f1e2d3c4b5a69788796a5");
    size_t len;
    const char *c = etw_record_str(r, "content", &len);
    assert_int_equal(len, sizeof(content) - 1);
    assert_memory_equal(c, content, len);
    bool found = true;
    assert_int_equal(etw_record_u64(r, "appname", &found), 0); /* not numeric */
    assert_false(found);
    assert_int_equal(etw_record_u64(r, "nope", &found), 0);
    assert_false(found);
    assert_null(etw_record_str(r, "nope", &len));
    assert_null(etw_record_str(r, "scan_id", NULL)); /* not text */

    /* Fields not given are 0 or "". */
    r = etw_capture_at(1);
    assert_int_equal(etw_record_u64(r, "session", NULL), 0);
    assert_string_equal(etw_record_str(r, "hash", NULL), "");
    assert_string_equal(etw_record_str(r, "rule", NULL), "");
    assert_string_equal(etw_record_str(r, "status", NULL), "THROTTLED");
    assert_int_equal(etw_record_u64(r, "throttled", NULL), 1);
    assert_null(etw_capture_at(2));

    etw_stats st;
    etw_get_stats(&st);
    assert_int_equal(st.written, 2);
    assert_int_equal(st.dropped, 0);
    etw_capture_clear();
    assert_int_equal(etw_capture_count(ETW_NEVENTS), 0);
    etw_stop();
}

static void test_content_keyword_and_cap(void **state)
{
    (void)state;
    char big[5000];
    memset(big, 'A', sizeof(big));

    /* CONTENT off (the default keywords): content left out, contentFiltered set. */
    start_with("capture", NULL, NULL, NULL);
    ETW_EMIT(ScanDecision, .scan_id = 1, .content = big, .content_len = 10);
    ETW_EMIT(ScanDecision, .scan_id = 2); /* no content at all: not filtered */
    const etw_record *r = etw_capture_at(0);
    size_t len = 99;
    assert_string_equal(etw_record_str(r, "content", &len), "");
    assert_int_equal(len, 0);
    assert_int_equal(etw_record_u64(r, "contentFiltered", NULL), 1);
    assert_int_equal(etw_record_u64(etw_capture_at(1), "contentFiltered", NULL), 0);
    etw_stop();

    /* CONTENT on: capped at content_max (default 4096). */
    start_with("capture", NULL, "scan,content", NULL);
    ETW_EMIT(ScanDecision, .scan_id = 3, .content = big, .content_len = sizeof(big));
    ETW_EMIT(ScanDecision, .scan_id = 4, .content = big, .content_len = 100);
    r = etw_capture_at(0);
    etw_record_str(r, "content", &len);
    assert_int_equal(len, 4096);
    assert_int_equal(etw_record_u64(r, "contentFiltered", NULL), 1);
    r = etw_capture_at(1);
    etw_record_str(r, "content", &len);
    assert_int_equal(len, 100);
    assert_int_equal(etw_record_u64(r, "contentFiltered", NULL), 0);
    etw_stop();
}

static char *temp_path(const char *suffix)
{
    char *p = malloc(256);
    assert_non_null(p);
    snprintf(p, 256, "/tmp/test_etw_%d_%s", (int)getpid(), suffix);
    unlink(p);
    return p;
}

/* Checks every line with python3's json module; the expectations are in the script. */
static const char json_check[] =
    "import json, sys\n"
    "lines = open(sys.argv[1], 'rb').read().split(b'\\n')\n"
    "assert lines[-1] == b'', 'missing final newline'\n"
    "objs = [json.loads(l.decode('utf-8')) for l in lines[:-1]]\n"
    "assert len(objs) == 4, len(objs)\n"
    "for o in objs:\n"
    "    assert list(o)[:4] == ['event', 'level', 'keyword', 'ts_ns'], list(o)\n"
    "    assert o['ts_ns'] > 1500000000 * 10**9\n"
    "d = objs[0]\n"
    "assert d['event'] == 'ScanDecision' and d['level'] == 4 and d['keyword'] == 8, d\n"
    "assert len(d) == 4 + 22, len(d)\n"
    "assert d['scan_id'] == 18446744073709551615, d['scan_id']\n"
    "assert d['appname'] == 'p\"w\\\\s\\n\\x01h\\u00e9\\U0001F600', repr(d['appname'])\n"
    "assert d['contentname'] == "
    "'\\ufffd\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|x\\ufffd\\ufffd', "
    "repr(d['contentname'])\n"
    "assert d['exe'] == '\\ufffd', repr(d['exe'])\n"
    "assert d['hash'] == '0001abcdef102030405060708090a0b0c0d0e0f0ff0f1e2d3c4b5a69788796a5'\n"
    "import base64\n"
    "assert base64.b64decode(d['content']) == b'\\x00\\xffab', d['content']\n"
    "assert d['cached'] is True and d['exempt'] is False\n"
    "e = objs[1]\n"
    "assert e['event'] == 'EngineError' and e['error'] == -22 and e['keyword'] == 64, e\n"
    "assert objs[2]['event'] == 'ConfigReload' and objs[2]['compile_ms'] == 12\n"
    "assert objs[3]['event'] == 'ScanDecision' and objs[3]['content'] == ''\n"
    "print('json ok')\n";

static void test_jsonl(void **state)
{
    (void)state;
    char *path = temp_path("events.jsonl");
    char *script = temp_path("check.py");
    start_with("jsonl", "verbose", "all", path);
    assert_int_equal(etw_backend(), ETW_BACKEND_JSONL);
    /* UTF-8 edge cases: a lone continuation byte, an overlong '/', a surrogate, a truncated
     * sequence at the end; control characters and quotes in a valid string. */
    ETW_EMIT(ScanDecision, .scan_id = UINT64_MAX,
             .appname = "p\"w\\s\n\001h\xc3\xa9\xf0\x9f\x98\x80",
             .contentname = "\x80\xbf|\xc0\xaf|\xed\xa0\x80|x\xe2\x82", .exe = "\xff",
             .hash = hash32, .cached = true,
             .content = "\x00\xff"
                        "ab",
             .content_len = 4);
    ETW_EMIT(EngineError, .error = -22, .message = "bad");
    ETW_EMIT(ConfigReload, .ok = true, .rules = 10, .compile_ms = 12);
    etw_set_filter(5, ETW_KW_SCAN); /* CONTENT now off */
    ETW_EMIT(ScanDecision, .scan_id = 5, .content = "x", .content_len = 1);
    etw_stats st;
    etw_get_stats(&st);
    assert_int_equal(st.written, 4);
    assert_int_equal(st.dropped, 0);
    etw_stop();

    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fputs(json_check, f);
    fclose(f);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "python3 %s %s", script, path);
    assert_int_equal(system(cmd), 0);
    unlink(path);
    unlink(script);
    free(path);
    free(script);
}

static void test_jsonl_large_and_append(void **state)
{
    (void)state;
    char *path = temp_path("large.jsonl");
    char *big = malloc(20000);
    assert_non_null(big);
    memset(big, '\x01', 19999); /* every byte escaped: \u0001 */
    big[19999] = '\0';
    start_with("jsonl", NULL, NULL, path);
    ETW_EMIT(ScanDecision, .scan_id = 1, .contentname = big);
    etw_stop();
    start_with("jsonl", NULL, NULL, path); /* appends */
    ETW_EMIT(ScanDecision, .scan_id = 2);
    etw_stop();
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "python3 -c \"import json,sys; o=[json.loads(l) for l in open(sys.argv[1])]; "
             "assert [x['scan_id'] for x in o]==[1,2]; assert len(o[0]['contentname'])==19999\" "
             "%s",
             path);
    assert_int_equal(system(cmd), 0);
    unlink(path);
    free(path);
    free(big);
}

/* Emitters keep going while the main thread swaps and stops backends (bounded, in case a swap
 * never returns: the test then fails by its timeout without filling the disk). */
static atomic_int stop_threads;

static void *emitter(void *arg)
{
    (void)arg;
    uint64_t i = 0;
    while (!atomic_load(&stop_threads) && i < 200000) {
        ETW_EMIT(ScanDecision, .scan_id = ++i, .appname = "thread", .hash = hash32);
        ETW_EMIT(ScanRequest, .scan_id = i);
    }
    return NULL;
}

static void test_swap_under_load(void **state)
{
    (void)state;
    char *path = temp_path("swap.jsonl");
    pthread_t t[3];
    atomic_store(&stop_threads, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, emitter, NULL), 0);
    for (int round = 0; round < 20; round++) {
        start_with("capture", "verbose", "all", NULL);
        usleep(2000);
        /* The emitters reach the capture backend; in the first round they may not have run yet
         * (a loaded machine, a sanitizer build), so it waits for them, up to 10 s. */
        for (int waited = 0; round == 0 && etw_capture_count(ETW_NEVENTS) == 0 && waited < 10000;
             waited++)
            usleep(1000);
        assert_true(etw_capture_count(ETW_NEVENTS) > 0 || round > 0);
        start_with("jsonl", NULL, NULL, path); /* replaces the capture backend */
        usleep(2000);
        etw_set_filter(5, ETW_KW_ALL);
        etw_stop();
        usleep(500);
    }
    atomic_store(&stop_threads, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "python3 -c \"import json,sys; [json.loads(l) for l in open(sys.argv[1])]\" %s", path);
    assert_int_equal(system(cmd), 0);
    unlink(path);
    free(path);
}

/* The events table in etw/README.md is the one the schema generates. */
static void test_readme_table(void **state)
{
    (void)state;
    static const char begin[] = "<!-- BEGIN GENERATED EVENTS: etw_schema --markdown -->\n";
    static const char end[] = "<!-- END GENERATED EVENTS -->";
    FILE *f = fopen(AMSI_SOURCE_DIR "/etw/README.md", "rb");
    assert_non_null(f);
    static char readme[1 << 18];
    size_t n = fread(readme, 1, sizeof(readme) - 1, f);
    fclose(f);
    readme[n] = '\0';
    char *b = strstr(readme, begin);
    assert_non_null(b);
    b += strlen(begin);
    char *e = strstr(b, end);
    assert_non_null(e);
    *e = '\0';
    size_t need = etw_schema_markdown(NULL, 0);
    char *gen = malloc(need + 1);
    assert_non_null(gen);
    assert_int_equal(etw_schema_markdown(gen, need + 1), need);
    if (strcmp(b, gen) != 0) {
        free(gen);
        fail_msg("etw/README.md's events table is out of date: regenerate it with "
                 "`build/etw/etw_schema --markdown` between the markers");
    }
    /* A short buffer gets a truncated, terminated text and the full length. */
    char small[16];
    assert_int_equal(etw_schema_markdown(small, sizeof(small)), need);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    free(gen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_disabled_without_backend),
        cmocka_unit_test(test_filter_level_keyword),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_capture_fields),
        cmocka_unit_test(test_content_keyword_and_cap),
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_jsonl_large_and_append),
        cmocka_unit_test(test_swap_under_load),
        cmocka_unit_test(test_readme_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
