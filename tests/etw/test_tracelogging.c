/*
 * test_tracelogging.c - etw/src/tracelogging.c: the Windows TraceLogging provider traits, event
 * metadata and payload layout, byte for byte, checked on Linux. The expected bytes are written
 * out by hand from the format (tracelogging.h), not produced by the code under test; the provider
 * GUID is recomputed from the provider name with SHA-1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "tracelogging.h"

#include <openssl/sha.h>
#include <string.h>

static void test_provider_traits(void **state)
{
    (void)state;
    static const uint8_t want[] = {0x0e, 0x00, 'a', 'm', 's', 'i', '_',
                                   'b',  'r',  'o', 'k', 'e', 'r', 0x00};
    uint8_t buf[64];
    memset(buf, 0xAA, sizeof(buf));
    assert_int_equal(etw__tlg_provider_traits(buf, sizeof(buf)), sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(buf[sizeof(want)], 0xAA); /* nothing written past the blob */
    /* Too small: the size is still reported, nothing past cap is written. */
    memset(buf, 0xAA, sizeof(buf));
    assert_int_equal(etw__tlg_provider_traits(buf, 4), sizeof(want));
    assert_int_equal(buf[4], 0xAA);
}

static void test_engine_error_metadata(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x37, 0x00,                                                           /* size 55 */
        0x00,                                                                 /* no tags */
        'E',  'n',  'g', 'i',  'n',  'e',  'E',  'r',  'r',  'o',  'r', 0x00, /* event name */
        's',  'c',  'a', 'n',  '_',  'i',  'd',  0x00, 0x0a,                  /* UINT64 */
        'p',  'i',  'd', 0x00, 0x08,                                          /* UINT32 */
        'e',  'r',  'r', 'o',  'r',  0x00, 0x07,                              /* INT32 */
        'm',  'e',  's', 's',  'a',  'g',  'e',  0x00, 0x82, 0x23,            /* ANSISTRING, UTF8 */
        'o',  'b',  'j', 'e',  'c',  't',  0x00, 0x82, 0x23,                  /* ANSISTRING, UTF8 */
    };
    uint8_t buf[256];
    assert_int_equal(etw__tlg_event_metadata(ETW_EV_EngineError, buf, sizeof(buf)), sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

static void test_config_reload_metadata(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        0x39, 0x00, 0x00, /* size 57, tags */
        'C',  'o',  'n',  'f',  'i',  'g',  'R',  'e',  'l',  'o', 'a',  'd',
        0x00, 'o',  'k',  0x00, 0x84, 0x03,                                    /* UINT8, BOOLEAN */
        'r',  'u',  'l',  'e',  's',  0x00, 0x08,                              /* UINT32 */
        'c',  'o',  'm',  'p',  'i',  'l',  'e',  '_',  'm',  's', 0x00, 0x08, /* UINT32 */
        'c',  'a',  'c',  'h',  'e',  'd',  0x00, 0x84, 0x03,                  /* UINT8, BOOLEAN */
        'e',  'r',  'r',  'o',  'r',  0x00, 0x82, 0x23,                        /* ANSISTRING */
    };
    uint8_t buf[256];
    assert_int_equal(etw__tlg_event_metadata(ETW_EV_ConfigReload, buf, sizeof(buf)), sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

/* The whole ScanDecision blob, field by field from the schema's order and types. */
static void test_scan_decision_metadata(void **state)
{
    (void)state;
    static const uint8_t want[] = "\x00\x00"                  /* size, patched below */
                                  "\x00"                      /* tags */
                                  "ScanDecision\0"            /* name */
                                  "scan_id\0\x0a"             /* UINT64 */
                                  "session\0\x0a"             /* UINT64 */
                                  "scanStatus\0\x04"          /* UINT8 */
                                  "scanResult\0\x08"          /* UINT32 */
                                  "appname\0\x82\x23"         /* ANSISTRING, UTF8 */
                                  "contentname\0\x82\x23"     /* ANSISTRING, UTF8 */
                                  "contentsize\0\x0a"         /* UINT64 */
                                  "originalsize\0\x0a"        /* UINT64 */
                                  "hash\0\x02"                /* ANSISTRING (hex) */
                                  "contentFiltered\0\x84\x03" /* UINT8, BOOLEAN */
                                  "pid\0\x08"                 /* UINT32 */
                                  "uid\0\x08"                 /* UINT32 */
                                  "exe\0\x82\x23"             /* ANSISTRING, UTF8 */
                                  "rule\0\x82\x23"            /* ANSISTRING, UTF8 */
                                  "object\0\x82\x23"          /* ANSISTRING, UTF8 */
                                  "reason\0\x82\x23"          /* ANSISTRING, UTF8 */
                                  "status\0\x82\x23"          /* ANSISTRING, UTF8 */
                                  "latency_ns\0\x0a"          /* UINT64 */
                                  "cached\0\x84\x03"          /* UINT8, BOOLEAN */
                                  "throttled\0\x84\x03"       /* UINT8, BOOLEAN */
                                  "exempt\0\x84\x03"          /* UINT8, BOOLEAN */
                                  "content\0\x0e";            /* BINARY */
    size_t n = sizeof(want) - 1;                              /* the literal's own NUL */
    uint8_t expect[512];
    memcpy(expect, want, n);
    expect[0] = (uint8_t)(n & 0xff);
    expect[1] = (uint8_t)(n >> 8);
    uint8_t buf[512];
    assert_int_equal(etw__tlg_event_metadata(ETW_EV_ScanDecision, buf, sizeof(buf)), n);
    assert_memory_equal(buf, expect, n);
    assert_int_equal(n, 0xea);
    assert_int_equal(etw__tlg_event_metadata(ETW_NEVENTS, buf, sizeof(buf)), 0);
}

/* Every event's blob: its size field equals its length and it ends with a field's type byte. */
static void test_all_metadata_sizes(void **state)
{
    (void)state;
    for (int i = 0; i < ETW_NEVENTS; i++) {
        uint8_t buf[1024];
        size_t n = etw__tlg_event_metadata((etw_event)i, buf, sizeof(buf));
        assert_true(n > 3 && n <= sizeof(buf));
        assert_int_equal(buf[0] | buf[1] << 8, n);
        assert_int_equal(buf[2], 0);
        assert_string_equal((const char *)buf + 3, etw_event_describe((etw_event)i)->name);
    }
}

/* {2493763a-f1c9-5e87-4960-8a6737eb7a59} is the name-based GUID of "amsi_broker". */
static void test_provider_guid(void **state)
{
    (void)state;
    static const uint8_t ns[16] = {0x48, 0x2C, 0x2D, 0xB2, 0xC3, 0x90, 0x47, 0xC8,
                                   0x87, 0xF8, 0x1A, 0x15, 0xBF, 0xC1, 0x30, 0xFB};
    uint8_t in[16 + 2 * sizeof(ETW_PROVIDER_NAME)];
    size_t n = 0;
    memcpy(in, ns, 16);
    n = 16;
    for (const char *p = ETW_PROVIDER_NAME; *p; p++) {
        char c = *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
        in[n++] = 0; /* UTF-16BE */
        in[n++] = (uint8_t)c;
    }
    uint8_t h[SHA_DIGEST_LENGTH];
    SHA1(in, n, h);
    h[7] = (uint8_t)((h[7] & 0x0F) | 0x50);
    const etw_tlg_guid *g = &etw__tlg_provider_guid;
    assert_int_equal(g->data1, (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 |
                                   (uint32_t)h[3] << 24);
    assert_int_equal(g->data2, h[4] | h[5] << 8);
    assert_int_equal(g->data3, h[6] | h[7] << 8);
    assert_memory_equal(g->data4, h + 8, 8);
    assert_int_equal(g->data1, 0x2493763a);
}

static void test_payload_layout(void **state)
{
    (void)state;
    etw__vals_ScanDecision v;
    memset(&v, 0, sizeof(v));
    for (size_t i = 0; i < ETW__N_ScanDecision; i++) {
        v.a[i].s = NULL;
        v.a[i].len = 0;
    }
    v.f.scan_id.u = 0x0102030405060708ull;
    v.f.scanStatus.u = 1;
    v.f.appname.s = "pwsh";
    v.f.appname.len = 4;
    v.f.contentname.s = "";
    v.f.hash.s = "";
    v.f.exe.s = v.f.rule.s = v.f.object.s = v.f.reason.s = v.f.status.s = "";
    v.f.content.s = "abc";
    v.f.content.len = 3;
    uint16_t lens[ETW__N_ScanDecision];
    etw_tlg_data d[64];
    assert_int_equal(etw__tlg_max_data(ETW_EV_ScanDecision), ETW__N_ScanDecision + 1);
    size_t n = etw__tlg_payload(ETW_EV_ScanDecision, v.a, lens, d);
    assert_int_equal(n, ETW__N_ScanDecision + 1);
    static const uint32_t sizes[] = {8, 8, 1, 4, 5, 1, 8, 8, 1, 1, 4, 4,
                                     1, 1, 1, 1, 1, 8, 1, 1, 1, 2, 3};
    assert_int_equal(n, sizeof(sizes) / sizeof(sizes[0]));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(d[i].size, sizes[i]);
    assert_ptr_equal(d[0].ptr, &v.f.scan_id.u);
    assert_memory_equal(d[4].ptr, "pwsh", 5); /* with its NUL */
    assert_int_equal(*(const uint16_t *)d[21].ptr, 3);
    assert_memory_equal(d[22].ptr, "abc", 3);
    assert_int_equal(etw__tlg_payload(ETW_NEVENTS, v.a, lens, d), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provider_traits),
        cmocka_unit_test(test_engine_error_metadata),
        cmocka_unit_test(test_config_reload_metadata),
        cmocka_unit_test(test_scan_decision_metadata),
        cmocka_unit_test(test_all_metadata_sizes),
        cmocka_unit_test(test_provider_guid),
        cmocka_unit_test(test_payload_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
