/*
 * test_arj.c - unit tests for engine/src/arj.c, the ARJ reader.
 *
 * Real archives made by Debian's arj 3.10 are committed under tests/engine/data/arj (made by
 * tests/engine/gen/make_arj_samples.sh): every method on a 200 KiB file of text and random bytes
 * (longer than the 26,624-byte window, so matches wrap around it), several members with a
 * directory and an empty file, a garbled member and the first piece of a multi-volume archive.
 * The test rebuilds the members' contents with the script's generator and compares byte for byte.
 * Other inputs are built here: truncated and corrupted copies of the fixtures, self-extractor
 * prefixes, headers claiming huge sizes, and hand-made headers and bit streams that poke at each
 * check. Inputs are heap blocks of exactly their size, so AddressSanitizer sees any read past them.
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

#include "arj.h"

#ifndef AMSI_TEST_DATA
#define AMSI_TEST_DATA "tests"
#endif
#define ARJ_DATA AMSI_TEST_DATA "/engine/data/arj/"

#define BIG_SIZE    204800u
#define MARKER      "AMSI-BROKER-ARJ-PLANTED-MARKER"
#define MAX_MEMBERS 16

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* The fixture script's content generator, step for step (see make_arj_samples.sh). */
static uint32_t gen_next(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* Writes the generator's first n bytes to out. */
static void gen_big(uint8_t *out, size_t n)
{
    static const char *const words[16] = {
        "alpha", "bravo",  "charlie", "delta", "echo", "foxtrot",  "golf",  "hotel",
        "india", "juliet", "kilo",    "lima",  "mike", "november", "oscar", "papa"};
    uint32_t s = 0x2545F491u;
    size_t pos = 0;
    unsigned line = 0;
    while (pos < n) {
        size_t end = n - pos > 4096 ? pos + 4096 : n;
        for (int i = 0; i < 64 && pos < end; i++, pos++)
            out[pos] = (uint8_t)(gen_next(&s) & 0xFF);
        while (pos < end) {
            char tmp[128];
            int k = snprintf(tmp, sizeof(tmp), "%06u", line++);
            for (int w = 0; w < 6; w++)
                k += snprintf(tmp + k, sizeof(tmp) - (size_t)k, " %s", words[gen_next(&s) & 15]);
            tmp[k++] = '\n';
            for (int i = 0; i < k && pos < end; i++, pos++)
                out[pos] = (uint8_t)tmp[i];
        }
    }
}

/* Returns the n-byte generator output from byte `from` to its end in a fresh heap block. */
static uint8_t *gen_tail(size_t n, size_t from)
{
    uint8_t *all = malloc(n);
    assert_non_null(all);
    gen_big(all, n);
    memmove(all, all + from, n - from);
    return all;
}

/* Reads a fixture into a heap block of exactly its size. */
static uint8_t *load(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s%s", ARJ_DATA, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open fixture %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    uint8_t *p = malloc((size_t)n);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* Returns a heap copy of p[0..n) of exactly n bytes (at least one byte is allocated). */
static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    assert_non_null(q);
    if (n)
        memcpy(q, p, n);
    return q;
}

static bool contains(const uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return true;
    return false;
}

/* Continues a bitwise CRC-32 (pre-inverted), independent of the one under test. */
static uint32_t crc32_more(uint32_t c, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return c;
}

static uint32_t crc32_ref(const uint8_t *p, size_t n)
{
    return crc32_more(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
}

/* The outcome of walking a whole archive. */
typedef struct walk_result {
    int open_rc;                /* engine__arj_open() */
    int end_rc;                 /* the engine__arj_next() that stopped the walk */
    int members;                /* members seen */
    int member_rc[MAX_MEMBERS]; /* the last engine__arj_read() of each */
    uint64_t member_out[MAX_MEMBERS];
    uint32_t member_crc[MAX_MEMBERS]; /* CRC-32 of what each produced */
} walk_result;

/*
 * Opens d[0..n), reads every member with reads of at most cap bytes, and records what happened.
 * Checks on the way that no read reports more than cap bytes or more than the member's size.
 */
static void walk(const uint8_t *d, size_t n, size_t cap, walk_result *w)
{
    engine__arj_entry e;
    memset(w, 0, sizeof(*w));
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    engine__arj *a = NULL;
    w->open_rc = engine__arj_open(d, n, &a);
    if (w->open_rc != 0) {
        assert_null(a);
        free(buf);
        return;
    }
    int rc;
    while ((rc = engine__arj_next(a, &e)) == 0) {
        int i = w->members < MAX_MEMBERS ? w->members : MAX_MEMBERS - 1;
        uint64_t out = 0;
        uint32_t crc = 0xFFFFFFFFu;
        size_t got;
        int r;
        while ((r = engine__arj_read(a, buf, cap, &got)) == 0 && got > 0) {
            assert_true(got <= cap);
            out += got;
            assert_true(out <= e.orig_size);
            crc = crc32_more(crc, buf, got);
        }
        assert_int_equal(got, 0);
        w->member_rc[i] = r;
        w->member_out[i] = out;
        w->member_crc[i] = crc ^ 0xFFFFFFFFu;
        w->members++;
    }
    w->end_rc = rc;
    assert_int_equal(engine__arj_next(a, &e), rc); /* the end, or the error, is sticky */
    engine__arj_close(a);
    free(buf);
}

/* Extracts the member called name with reads of cap bytes. Returns its bytes (heap) or NULL. */
static uint8_t *extract(const uint8_t *d, size_t n, const char *name, size_t cap,
                        engine__arj_entry *e, size_t *out_len, int *read_rc)
{
    engine__arj *a = NULL;
    assert_int_equal(engine__arj_open(d, n, &a), 0);
    uint8_t *chunk = malloc(cap);
    assert_non_null(chunk);
    uint8_t *out = NULL;
    int rc;
    while ((rc = engine__arj_next(a, e)) == 0) {
        if (strcmp(e->name, name) != 0)
            continue;
        out = malloc(e->orig_size ? e->orig_size : 1);
        assert_non_null(out);
        size_t len = 0, got;
        int r;
        while ((r = engine__arj_read(a, chunk, cap, &got)) == 0 && got > 0) {
            assert_true(got <= cap);
            assert_true(len + got <= e->orig_size);
            memcpy(out + len, chunk, got);
            len += got;
        }
        *out_len = len;
        *read_rc = r;
        break;
    }
    if (out == NULL)
        fail_msg("member %s not found (next returned %d)", name, rc);
    engine__arj_close(a);
    free(chunk);
    return out;
}

/* Checks that the member `name` of fixture `file` holds exactly want[0..want_len). */
static void check_member(const char *file, const char *name, const uint8_t *want, size_t want_len,
                         unsigned method, size_t cap)
{
    size_t n, len = 0;
    int rc = -100;
    engine__arj_entry e;
    uint8_t *d = load(file, &n);
    uint8_t *got = extract(d, n, name, cap, &e, &len, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(e.method, method);
    assert_int_equal(e.orig_size, want_len);
    assert_int_equal(len, want_len);
    assert_int_equal(e.crc32, crc32_ref(want, want_len));
    assert_memory_equal(got, want, want_len);
    free(got);
    free(d);
}

/* ---------------------------------------------------------------------------------------------
 * Hand-made archives
 * ------------------------------------------------------------------------------------------- */

/* A growing byte buffer of fixed capacity. */
typedef struct outbuf {
    uint8_t p[8192];
    size_t n;
} outbuf;

static void put8(outbuf *b, unsigned v)
{
    assert_true(b->n < sizeof(b->p));
    b->p[b->n++] = (uint8_t)v;
}

static void put16(outbuf *b, unsigned v)
{
    put8(b, v & 0xFF);
    put8(b, (v >> 8) & 0xFF);
}

static void put32(outbuf *b, uint32_t v)
{
    put16(b, v & 0xFFFF);
    put16(b, v >> 16);
}

static void put_bytes(outbuf *b, const void *p, size_t n)
{
    assert_true(n <= sizeof(b->p) - b->n);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* What a hand-made header says. */
typedef struct hdr_spec {
    unsigned first; /* first_hdr_size (30 unless set) */
    unsigned flags;
    unsigned method;
    unsigned type;
    uint32_t comp;
    uint32_t orig;
    uint32_t crc;
    const char *name;
    bool no_nul;    /* leave the name unterminated, with no comment */
    bool bad_crc;   /* store a wrong header CRC */
    size_t ext_len; /* one extended header of this many bytes */
    bool ext_bad_crc;
} hdr_spec;

/* Appends a header (basic header, CRC, extended headers, terminator) as spec says. */
static void put_header(outbuf *b, const hdr_spec *s)
{
    uint8_t basic[3000];
    unsigned first = s->first ? s->first : 30;
    memset(basic, 0, sizeof(basic));
    basic[0] = (uint8_t)first;
    basic[1] = 11;
    basic[2] = 1;
    basic[3] = 2;
    basic[4] = (uint8_t)s->flags;
    basic[5] = (uint8_t)s->method;
    basic[6] = (uint8_t)s->type;
    for (int i = 0; i < 4; i++) {
        basic[12 + i] = (uint8_t)(s->comp >> (8 * i));
        basic[16 + i] = (uint8_t)(s->orig >> (8 * i));
        basic[20 + i] = (uint8_t)(s->crc >> (8 * i));
    }
    size_t size = first;
    size_t nl = strlen(s->name);
    memcpy(basic + size, s->name, nl);
    size += nl;
    if (!s->no_nul)
        size += 2; /* the name's NUL and an empty comment */
    put8(b, 0x60);
    put8(b, 0xEA);
    put16(b, (unsigned)size);
    put_bytes(b, basic, size);
    put32(b, crc32_ref(basic, size) ^ (s->bad_crc ? 1u : 0u));
    if (s->ext_len) {
        uint8_t ext[64];
        assert_true(s->ext_len <= sizeof(ext));
        memset(ext, 0x5A, s->ext_len);
        put16(b, (unsigned)s->ext_len);
        put_bytes(b, ext, s->ext_len);
        put32(b, crc32_ref(ext, s->ext_len) ^ (s->ext_bad_crc ? 1u : 0u));
    }
    put16(b, 0);
}

static void put_main(outbuf *b)
{
    hdr_spec m = {.type = 2, .name = "made.arj"};
    put_header(b, &m);
}

static void put_end(outbuf *b)
{
    put8(b, 0x60);
    put8(b, 0xEA);
    put16(b, 0);
}

/* An archive of one member whose data is data[0..n), described by *s (sizes filled in if 0). */
static void make_one(outbuf *b, hdr_spec *s, const uint8_t *data, size_t n)
{
    b->n = 0;
    put_main(b);
    if (s->comp == 0)
        s->comp = (uint32_t)n;
    put_header(b, s);
    put_bytes(b, data, n);
    put_end(b);
}

/* An MSB-first bit writer for hand-made compressed streams. */
typedef struct bitwriter {
    uint8_t p[256];
    size_t nbits;
} bitwriter;

static void put_bits(bitwriter *w, unsigned n, uint32_t v)
{
    for (unsigned i = n; i-- > 0;) {
        assert_true(w->nbits / 8 < sizeof(w->p));
        if ((v >> i) & 1u)
            w->p[w->nbits / 8] |= (uint8_t)(0x80u >> (w->nbits % 8));
        w->nbits++;
    }
}

static size_t bit_bytes(const bitwriter *w)
{
    return (w->nbits + 7) / 8;
}

/* Reads the single member of b with reads of cap bytes; returns the final read code. */
static int read_one(const outbuf *b, size_t cap, uint8_t *out, size_t out_cap, size_t *out_len)
{
    uint8_t *d = dup_bytes(b->p, b->n);
    engine__arj *a = NULL;
    engine__arj_entry e;
    int rc = engine__arj_open(d, b->n, &a);
    assert_int_equal(rc, 0);
    assert_int_equal(engine__arj_next(a, &e), 0);
    size_t len = 0, got;
    uint8_t *chunk = malloc(cap);
    assert_non_null(chunk);
    while ((rc = engine__arj_read(a, chunk, cap, &got)) == 0 && got > 0) {
        if (len + got <= out_cap && out != NULL)
            memcpy(out + len, chunk, got);
        len += got;
    }
    *out_len = len;
    free(chunk);
    engine__arj_close(a);
    free(d);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Tests: real archives
 * ------------------------------------------------------------------------------------------- */

static void test_stored(void **state)
{
    (void)state;
    const char hello[] = "hello world\n";
    check_member("stored.arj", "hello.txt", (const uint8_t *)hello, 12, 0, 4096);
    uint8_t *readme = gen_tail(2048, 1024);
    check_member("stored.arj", "multi/docs/readme.txt", readme, 1024, 0, 4096);
    check_member("stored.arj", "multi/docs/readme.txt", readme, 1024, 0, 1);
    free(readme);
}

/* Methods 1 to 4 on the 200 KiB file, with several read sizes, including 1 byte at a time. */
static void test_methods_round_trip(void **state)
{
    (void)state;
    uint8_t *big = malloc(BIG_SIZE);
    assert_non_null(big);
    gen_big(big, BIG_SIZE);
    static const size_t caps[] = {1, 7, 4096, 300000};
    for (unsigned m = 1; m <= 4; m++) {
        char file[32];
        snprintf(file, sizeof(file), "big_m%u.arj", m);
        for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
            check_member(file, "big.txt", big, BIG_SIZE, m, caps[i]);
    }
    free(big);
}

static void test_multiple_members(void **state)
{
    (void)state;
    size_t n;
    uint8_t *d = load("multi.arj", &n);
    engine__arj *a = NULL;
    engine__arj_entry e;
    assert_int_equal(engine__arj_open(d, n, &a), 0);
    bool seen_dir = false, seen_empty = false, seen_hello = false, seen_readme = false,
         seen_planted = false;
    uint8_t buf[512];
    int rc;
    while ((rc = engine__arj_next(a, &e)) == 0) {
        size_t total = 0, got;
        int r;
        uint8_t *all = malloc(e.orig_size + 1);
        assert_non_null(all);
        while ((r = engine__arj_read(a, buf, sizeof(buf), &got)) == 0 && got > 0) {
            memcpy(all + total, buf, got);
            total += got;
        }
        assert_int_equal(r, 0);
        assert_int_equal(total, e.orig_size);
        assert_int_equal(e.flags & ENGINE__ARJ_FLAG_GARBLED, 0);
        if (strcmp(e.name, "docs") == 0) {
            seen_dir = true;
            assert_int_equal(e.file_type, ENGINE__ARJ_TYPE_DIR);
            assert_int_equal(e.orig_size, 0);
        } else if (strcmp(e.name, "empty") == 0) {
            seen_empty = true;
            assert_int_equal(e.file_type, ENGINE__ARJ_TYPE_BINARY);
            assert_int_equal(e.orig_size, 0);
        } else if (strcmp(e.name, "hello.txt") == 0) {
            seen_hello = true;
            assert_memory_equal(all, "hello world\n", 12);
        } else if (strcmp(e.name, "docs/readme.txt") == 0) {
            seen_readme = true;
            assert_int_equal(e.method, ENGINE__ARJ_METHOD_MOST);
            uint8_t *want = gen_tail(2048, 1024);
            assert_int_equal(total, 1024);
            assert_memory_equal(all, want, 1024);
            free(want);
        } else if (strcmp(e.name, "planted.txt") == 0) {
            seen_planted = true;
            assert_int_equal(e.method, ENGINE__ARJ_METHOD_MOST);
            assert_true(contains(all, total, MARKER));
        } else {
            fail_msg("unexpected member %s", e.name);
        }
        free(all);
    }
    assert_int_equal(rc, 1);
    assert_true(seen_dir && seen_empty && seen_hello && seen_readme && seen_planted);
    /* The marker is only visible once decompressed. */
    assert_false(contains(d, n, MARKER));
    engine__arj_close(a);
    free(d);
}

/* The planted member's exact bytes: 700 generated bytes, the marker line, the same 700 again. */
static void test_planted_string(void **state)
{
    (void)state;
    uint8_t *part = gen_tail(1500, 800);
    const char mid[] = "\n" MARKER "\n";
    size_t want_len = 700 + strlen(mid) + 700;
    uint8_t *want = malloc(want_len);
    assert_non_null(want);
    memcpy(want, part, 700);
    memcpy(want + 700, mid, strlen(mid));
    memcpy(want + 700 + strlen(mid), part, 700);
    check_member("multi.arj", "planted.txt", want, want_len, 1, 1);
    check_member("multi.arj", "planted.txt", want, want_len, 1, 4096);
    free(want);
    free(part);
}

static void test_garbled(void **state)
{
    (void)state;
    size_t n;
    uint8_t *d = load("garbled.arj", &n);
    engine__arj *a = NULL;
    engine__arj_entry e;
    uint8_t buf[64];
    size_t got = 99;
    assert_int_equal(engine__arj_open(d, n, &a), 0);
    assert_int_equal(engine__arj_next(a, &e), 0);
    assert_string_equal(e.name, "multi/planted.txt");
    assert_true(e.flags & ENGINE__ARJ_FLAG_GARBLED);
    assert_int_equal(engine__arj_read(a, buf, sizeof(buf), &got), ENGINE__ARJ_EENCRYPTED);
    assert_int_equal(got, 0);
    assert_int_equal(engine__arj_read(a, buf, sizeof(buf), &got), ENGINE__ARJ_EENCRYPTED);
    assert_int_equal(engine__arj_next(a, &e), 1);
    assert_false(contains(d, n, MARKER));
    engine__arj_close(a);
    free(d);
}

/* The first piece of a two-volume archive: the member is flagged and holds the file's start. */
static void test_volume(void **state)
{
    (void)state;
    size_t n, len = 0;
    int rc = -100;
    engine__arj_entry e;
    uint8_t *d = load("volume1.arj", &n);
    uint8_t *got = extract(d, n, "big.txt", 1000, &e, &len, &rc);
    assert_int_equal(rc, 0);
    assert_true(e.flags & ENGINE__ARJ_FLAG_VOLUME);
    assert_true(e.orig_size < BIG_SIZE);
    uint8_t *big = malloc(BIG_SIZE);
    assert_non_null(big);
    gen_big(big, BIG_SIZE);
    assert_int_equal(len, e.orig_size);
    assert_memory_equal(got, big, len);
    free(big);
    free(got);
    free(d);
}

/* Every prefix of an archive fails with ETRUNC somewhere, never crashes, never yields junk. */
static void check_prefixes(const char *file, size_t step)
{
    size_t n;
    uint8_t *d = load(file, &n);
    walk_result w;
    walk(d, n, 4096, &w);
    assert_int_equal(w.open_rc, 0);
    assert_int_equal(w.end_rc, 1);

    for (size_t len = 0; len < n; len += (len < 300 || n - len < 300) ? 1 : step) {
        uint8_t *p = dup_bytes(d, len);
        walk(p, len, 4096, &w);
        if (len == 0) {
            assert_int_equal(w.open_rc, ENGINE__ARJ_EFORMAT);
        } else if (w.open_rc != 0) {
            assert_int_equal(w.open_rc, ENGINE__ARJ_ETRUNC);
        } else {
            assert_int_equal(w.end_rc, ENGINE__ARJ_ETRUNC);
            for (int i = 0; i < w.members && i < MAX_MEMBERS; i++)
                assert_true(w.member_rc[i] == 0 || w.member_rc[i] == ENGINE__ARJ_ETRUNC ||
                            w.member_rc[i] == ENGINE__ARJ_EENCRYPTED);
        }
        free(p);
    }
    free(d);
}

static void test_truncated(void **state)
{
    (void)state;
    check_prefixes("stored.arj", 1);
    check_prefixes("multi.arj", 1);
    check_prefixes("garbled.arj", 1);
    check_prefixes("volume1.arj", 37);
    check_prefixes("big_m1.arj", 997);
    check_prefixes("big_m2.arj", 1999);
    check_prefixes("big_m3.arj", 1999);
    check_prefixes("big_m4.arj", 997);
}

/* Returns true when the walk found every member intact and a clean end. */
static bool walk_ok(const walk_result *w)
{
    if (w->open_rc != 0 || w->end_rc != 1)
        return false;
    for (int i = 0; i < w->members && i < MAX_MEMBERS; i++)
        if (w->member_rc[i] != 0 && w->member_rc[i] != ENGINE__ARJ_EENCRYPTED)
            return false;
    return true;
}

/* Returns true when every code in the walk is one a corrupt archive may produce. */
static bool walk_codes_sane(const walk_result *w)
{
    if (w->open_rc != 0)
        return w->open_rc == ENGINE__ARJ_EFORMAT || w->open_rc == ENGINE__ARJ_ETRUNC;
    if (w->end_rc != 1 && w->end_rc != ENGINE__ARJ_EFORMAT && w->end_rc != ENGINE__ARJ_ETRUNC)
        return false;
    for (int i = 0; i < w->members && i < MAX_MEMBERS; i++) {
        int r = w->member_rc[i];
        if (r != 0 && r != ENGINE__ARJ_EFORMAT && r != ENGINE__ARJ_ETRUNC &&
            r != ENGINE__ARJ_ECRC && r != ENGINE__ARJ_EMETHOD && r != ENGINE__ARJ_EENCRYPTED)
            return false;
    }
    return true;
}

/*
 * Any one byte changed, anywhere: never a crash, only the codes a corrupt archive may give, and
 * never different data passed off as good. (A change can go unnoticed only where it changes
 * nothing read: the unused low bits of a stream's last byte, or a garbled member's data.)
 */
static void check_every_byte(const char *file, size_t step)
{
    size_t n;
    uint8_t *d = load(file, &n);
    walk_result good;
    walk(d, n, 4096, &good);
    assert_true(walk_ok(&good));
    static const uint8_t xors[] = {0x01, 0x80, 0xFF};
    for (size_t i = 0; i < n; i += step) {
        for (size_t k = 0; k < sizeof(xors); k++) {
            uint8_t *p = dup_bytes(d, n);
            p[i] ^= xors[k];
            walk_result w;
            walk(p, n, 333, &w);
            if (!walk_codes_sane(&w))
                fail_msg("%s: byte %zu ^ %02x: odd codes", file, i, xors[k]);
            if (walk_ok(&w) && (w.members != good.members || memcmp(w.member_crc, good.member_crc,
                                                                    sizeof(good.member_crc)) != 0))
                fail_msg("%s: byte %zu ^ %02x changed the output unnoticed", file, i, xors[k]);
            free(p);
        }
    }
    free(d);
}

static void test_corrupted(void **state)
{
    (void)state;
    size_t n;
    walk_result w;

    /* A byte of a stored member's data: the data CRC. */
    uint8_t *d = load("stored.arj", &n);
    d[n - 4 - 500] ^= 0x20;
    walk(d, n, 4096, &w);
    assert_int_equal(w.open_rc, 0);
    assert_int_equal(w.members, 2);
    assert_int_equal(w.member_rc[1], ENGINE__ARJ_ECRC);
    assert_int_equal(w.end_rc, 1);
    free(d);

    /* A byte in the middle of compressed data, each method. */
    for (unsigned m = 1; m <= 4; m++) {
        char file[32];
        snprintf(file, sizeof(file), "big_m%u.arj", m);
        d = load(file, &n);
        d[n / 2] ^= 0x10;
        walk(d, n, 4096, &w);
        assert_int_equal(w.open_rc, 0);
        assert_int_equal(w.members, 1);
        assert_true(w.member_rc[0] == ENGINE__ARJ_ECRC || w.member_rc[0] == ENGINE__ARJ_EFORMAT ||
                    w.member_rc[0] == ENGINE__ARJ_ETRUNC);
        assert_int_equal(w.end_rc, 1);
        free(d);
    }

    /* The main header (its CRC): not an archive; a member header: the walk stops there. */
    d = load("multi.arj", &n);
    d[10] ^= 0x01;
    walk(d, n, 4096, &w);
    assert_int_equal(w.open_rc, ENGINE__ARJ_EFORMAT);
    free(d);

    d = load("stored.arj", &n);
    size_t main_end = 4 + (size_t)(d[2] | d[3] << 8) + 4 + 2;
    d[main_end + 4 + 12] ^= 0x01; /* the first member's compressed size */
    walk(d, n, 4096, &w);
    assert_int_equal(w.open_rc, 0);
    assert_int_equal(w.members, 0);
    assert_int_equal(w.end_rc, ENGINE__ARJ_EFORMAT);
    free(d);

    /* Every byte of the small archives, every 61st of a large one. */
    check_every_byte("stored.arj", 1);
    check_every_byte("multi.arj", 1);
    check_every_byte("garbled.arj", 1);
    check_every_byte("big_m4.arj", 613);
}

/* A self-extractor's stub before the archive, with decoy ids in it. */
static void test_sfx_prefix(void **state)
{
    (void)state;
    size_t n;
    uint8_t *d = load("multi.arj", &n);
    static const size_t prefixes[] = {1, 2, 3, 4, 100, 5000, ENGINE__ARJ_SFX_MAX - 1};
    uint32_t s = 12345;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t pre = prefixes[i];
        uint8_t *p = malloc(pre + n);
        assert_non_null(p);
        for (size_t k = 0; k < pre; k++) {
            uint8_t byte = (uint8_t)gen_next(&s);
            p[k] = byte == 0x60 ? 0x61 : byte;
        }
        p[0] = 'M';
        if (pre > 1)
            p[1] = 'Z';
        if (pre >= 200) {
            /* Decoys: an id with an absurd size, one with a plausible size and a bad CRC. */
            memcpy(p + 40, "\x60\xEA\xFF\xFF", 4);
            memcpy(p + 80, "\x60\xEA\x30\x00\x22\x0B\x01\x02\x10\x00\x02", 11);
        }
        memcpy(p + pre, d, n);
        walk_result w;
        walk(p, pre + n, 4096, &w);
        assert_int_equal(w.open_rc, 0);
        assert_int_equal(w.members, 5);
        assert_true(walk_ok(&w));
        free(p);
    }

    /* A stub as long as the search window hides the archive. */
    size_t pre = ENGINE__ARJ_SFX_MAX;
    uint8_t *p = calloc(1, pre + n);
    assert_non_null(p);
    memcpy(p + pre, d, n);
    walk_result w;
    walk(p, pre + n, 4096, &w);
    assert_int_equal(w.open_rc, ENGINE__ARJ_EFORMAT);
    free(p);

    /*
     * Decoys that pass every check but the CRC, one every 4 bytes: a few are skipped, but past the
     * search's budget (1 MiB of checked headers, some 400 of these) the archive is not looked for.
     */
    static const size_t decoys[] = {10, 1000};
    for (size_t i = 0; i < sizeof(decoys) / sizeof(decoys[0]); i++) {
        size_t stub = decoys[i] * 4 + 8;
        p = malloc(stub + n);
        assert_non_null(p);
        memset(p, 'x', stub);
        for (size_t k = 0; k < decoys[i]; k++)
            memcpy(p + 4 * k, "\x60\xEA\x02\x0A", 4); /* size 0x0A02, file type 2 at +10 */
        memcpy(p + stub, d, n);
        walk(p, stub + n, 4096, &w);
        assert_int_equal(w.open_rc, i == 0 ? 0 : ENGINE__ARJ_EFORMAT);
        free(p);
    }
    free(d);

    /* Not an archive at all, and ids alone. */
    static const uint8_t junk[] = "this is not an archive \x60\xEA";
    uint8_t *q = dup_bytes(junk, sizeof(junk) - 1);
    walk(q, sizeof(junk) - 1, 16, &w);
    assert_int_equal(w.open_rc, ENGINE__ARJ_ETRUNC);
    free(q);
    q = dup_bytes(junk, 10);
    walk(q, 10, 16, &w);
    assert_int_equal(w.open_rc, ENGINE__ARJ_EFORMAT);
    free(q);
}

/* Rewrites the sizes of the first member header of d and fixes its CRC. */
static void patch_sizes(uint8_t *d, uint32_t comp, uint32_t orig)
{
    size_t main_end = 4 + (size_t)(d[2] | d[3] << 8) + 4 + 2;
    uint8_t *h = d + main_end;
    size_t size = (size_t)(h[2] | h[3] << 8);
    uint8_t *b = h + 4;
    for (int i = 0; i < 4; i++) {
        b[12 + i] = (uint8_t)(comp >> (8 * i));
        b[16 + i] = (uint8_t)(orig >> (8 * i));
    }
    uint32_t crc = crc32_ref(b, size);
    for (int i = 0; i < 4; i++)
        b[size + (size_t)i] = (uint8_t)(crc >> (8 * i));
}

static uint32_t first_comp_size(const uint8_t *d)
{
    size_t main_end = 4 + (size_t)(d[2] | d[3] << 8) + 4 + 2;
    const uint8_t *b = d + main_end + 4;
    return (uint32_t)b[12] | (uint32_t)b[13] << 8 | (uint32_t)b[14] << 16 | (uint32_t)b[15] << 24;
}

static void test_huge_claimed_sizes(void **state)
{
    (void)state;
    size_t n;
    walk_result w;

    /* A stored member claiming 4 GiB: what is there, then ETRUNC. */
    uint8_t *d = load("stored.arj", &n);
    patch_sizes(d, 0xFFFFFFFFu, 0xFFFFFFFFu);
    walk(d, n, 4096, &w);
    assert_int_equal(w.open_rc, 0);
    assert_int_equal(w.members, 1);
    assert_int_equal(w.member_rc[0], ENGINE__ARJ_ETRUNC);
    assert_true(w.member_out[0] > 0 && w.member_out[0] < n);
    assert_int_equal(w.end_rc, ENGINE__ARJ_ETRUNC);
    free(d);

    for (unsigned m = 1; m <= 4; m++) {
        char file[32];
        snprintf(file, sizeof(file), "big_m%u.arj", m);
        d = load(file, &n);
        uint32_t comp = first_comp_size(d);

        /* Claims 4 GiB of output: the real bytes, then the stream runs dry. */
        patch_sizes(d, comp, 0xFFFFFFFFu);
        walk(d, n, 65536, &w);
        assert_int_equal(w.members, 1);
        assert_true(w.member_rc[0] == ENGINE__ARJ_ETRUNC || w.member_rc[0] == ENGINE__ARJ_EFORMAT);
        assert_true(w.member_out[0] >= BIG_SIZE && w.member_out[0] < BIG_SIZE + 1024);
        assert_int_equal(w.end_rc, 1);

        /* Claims fewer bytes than it has: the CRC of the shorter output fails. */
        patch_sizes(d, comp, 1000);
        walk(d, n, 65536, &w);
        assert_int_equal(w.member_rc[0], ENGINE__ARJ_ECRC);
        assert_int_equal(w.member_out[0], 1000);

        /* Claims more compressed bytes than the archive has: the member reads, the walk ends. */
        patch_sizes(d, 0xFFFFFFF0u, BIG_SIZE);
        walk(d, n, 65536, &w);
        assert_int_equal(w.member_rc[0], 0);
        assert_int_equal(w.member_out[0], BIG_SIZE);
        assert_int_equal(w.end_rc, ENGINE__ARJ_ETRUNC);
        free(d);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Tests: hand-made headers and streams
 * ------------------------------------------------------------------------------------------- */

static void test_headers(void **state)
{
    (void)state;
    static outbuf b;
    static const uint8_t data[] = "abc";
    size_t len;
    uint8_t out[16];

    /* A valid stored member with an extended header, which is skipped. */
    hdr_spec s = {.name = "x", .orig = 3, .crc = crc32_ref(data, 3), .ext_len = 20};
    make_one(&b, &s, data, 3);
    assert_int_equal(read_one(&b, 16, out, sizeof(out), &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "abc", 3);

    /* Extra data in the fixed part (first_hdr_size 34, EXTFILE): ext_pos is reported. */
    hdr_spec s2 = {.name = "x",
                   .orig = 3,
                   .crc = crc32_ref(data, 3),
                   .first = 34,
                   .flags = ENGINE__ARJ_FLAG_EXTFILE};
    make_one(&b, &s2, data, 3);
    assert_int_equal(read_one(&b, 1, out, sizeof(out), &len), 0);
    assert_int_equal(len, 3);

    /* Each broken header: the walk stops with EFORMAT. */
    hdr_spec bad[] = {
        {.name = "x", .orig = 3, .bad_crc = true},
        {.name = "x", .orig = 3, .no_nul = true},
        {.name = "x", .orig = 3, .ext_len = 8, .ext_bad_crc = true},
        {.name = "x", .orig = 3, .first = 29},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bad[i].crc = crc32_ref(data, 3);
        make_one(&b, &bad[i], data, 3);
        uint8_t *d = dup_bytes(b.p, b.n);
        walk_result w;
        walk(d, b.n, 16, &w);
        assert_int_equal(w.open_rc, 0);
        assert_int_equal(w.members, 0);
        assert_int_equal(w.end_rc, ENGINE__ARJ_EFORMAT);
        free(d);
    }

    /* A header size over 2600 bytes. */
    b.n = 0;
    put_main(&b);
    put8(&b, 0x60);
    put8(&b, 0xEA);
    put16(&b, 2601);
    uint8_t *d = dup_bytes(b.p, b.n);
    walk_result w;
    walk(d, b.n, 16, &w);
    assert_int_equal(w.end_rc, ENGINE__ARJ_EFORMAT);
    free(d);

    /* A main header with a member's file type is not one. */
    b.n = 0;
    hdr_spec notmain = {.type = 0, .name = "a"};
    put_header(&b, &notmain);
    put_end(&b);
    d = dup_bytes(b.p, b.n);
    walk(d, b.n, 16, &w);
    assert_int_equal(w.open_rc, ENGINE__ARJ_EFORMAT);
    free(d);

    /* The longest name a header can hold comes back whole. */
    char name[2600];
    memset(name, 'n', 2565);
    name[2565] = '\0';
    hdr_spec longname = {.name = name, .orig = 3, .crc = crc32_ref(data, 3)};
    make_one(&b, &longname, data, 3);
    d = dup_bytes(b.p, b.n);
    engine__arj *a = NULL;
    engine__arj_entry e;
    assert_int_equal(engine__arj_open(d, b.n, &a), 0);
    assert_int_equal(engine__arj_next(a, &e), 0);
    assert_int_equal(strlen(e.name), 2565);
    engine__arj_close(a);
    free(d);
}

static void test_methods_and_flags(void **state)
{
    (void)state;
    static outbuf b;
    static const uint8_t data[] = "abc";
    size_t len;

    /* Methods beyond 4. */
    for (unsigned m = 5; m <= 9; m++) {
        hdr_spec s = {.name = "x", .method = m, .orig = 3, .crc = crc32_ref(data, 3)};
        make_one(&b, &s, data, 3);
        assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_EMETHOD);
        assert_int_equal(len, 0);
    }
    /* Garbled wins over everything else. */
    hdr_spec g = {.name = "x", .method = 9, .flags = ENGINE__ARJ_FLAG_GARBLED, .orig = 3};
    make_one(&b, &g, data, 3);
    assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_EENCRYPTED);
    /* A stored member whose sizes disagree. */
    hdr_spec st = {.name = "x", .orig = 2, .crc = crc32_ref(data, 2)};
    make_one(&b, &st, data, 3);
    assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_EFORMAT);
    /* An empty member with a non-zero CRC. */
    hdr_spec em = {.name = "x", .orig = 0, .crc = 1};
    make_one(&b, &em, data, 0);
    assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_ECRC);
}

/*
 * Method 1 block header with single-symbol tables: t and p tables of one symbol, and a c table
 * whose only symbol is c; each symbol then costs no bits at all.
 */
static void put_single_block(bitwriter *w, unsigned count, unsigned c)
{
    put_bits(w, 16, count);
    put_bits(w, 5, 0); /* t: n = 0 */
    put_bits(w, 5, 0); /*    the single symbol */
    put_bits(w, 9, 0); /* c: n = 0 */
    put_bits(w, 9, c);
    put_bits(w, 5, 0); /* p: n = 0 */
    put_bits(w, 5, 0);
}

/* Builds a one-member archive of method m over the stream w, claiming orig bytes with crc. */
static void make_stream(outbuf *b, unsigned m, const bitwriter *w, uint32_t orig, uint32_t crc)
{
    hdr_spec s = {.name = "s", .method = m, .orig = orig, .crc = crc};
    make_one(b, &s, w->p, bit_bytes(w));
}

static void test_streams(void **state)
{
    (void)state;
    static outbuf b;
    static uint8_t out[4096];
    size_t len;
    uint8_t ten_a[10];
    memset(ten_a, 'A', sizeof(ten_a));

    /* Ten literals 'A' from a zero-bit code. */
    bitwriter w = {{0}, 0};
    put_single_block(&w, 10, 'A');
    make_stream(&b, 1, &w, 10, crc32_ref(ten_a, 10));
    assert_int_equal(read_one(&b, 3, out, sizeof(out), &len), 0);
    assert_int_equal(len, 10);
    assert_memory_equal(out, ten_a, 10);

    /* One literal then matches of length 256 at distance 1 (c = 509, p slot 0). */
    w = (bitwriter){{0}, 0};
    put_single_block(&w, 1, 'B');
    put_single_block(&w, 4, 509);
    uint8_t many_b[1025];
    memset(many_b, 'B', sizeof(many_b));
    make_stream(&b, 2, &w, 1025, crc32_ref(many_b, 1025));
    assert_int_equal(read_one(&b, 100, out, sizeof(out), &len), 0);
    assert_int_equal(len, 1025);
    assert_memory_equal(out, many_b, 1025);

    /* The same stream claiming 4 GiB: the next block header is past the data. */
    make_stream(&b, 2, &w, 0xFFFFFFFFu, 0);
    assert_int_equal(read_one(&b, 4096, NULL, 0, &len), ENGINE__ARJ_ETRUNC);
    assert_int_equal(len, 1025);

    /* A match before anything was written. */
    w = (bitwriter){{0}, 0};
    put_single_block(&w, 1, 300);
    make_stream(&b, 3, &w, 10, 0);
    assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_EFORMAT);

    /* Single symbols out of range (c = 510, t = 19). */
    w = (bitwriter){{0}, 0};
    put_single_block(&w, 1, 510);
    make_stream(&b, 1, &w, 10, 0);
    assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_EFORMAT);
    w = (bitwriter){{0}, 0};
    put_bits(&w, 16, 1);
    put_bits(&w, 5, 0);
    put_bits(&w, 5, 19);
    make_stream(&b, 1, &w, 10, 0);
    assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_EFORMAT);

    /*
     * Pretables that are over-subscribed (1,1,1), incomplete (1), too many (20), too long, or all
     * zero (a table that decodes nothing, used for the c table).
     */
    static const struct {
        unsigned n;
        unsigned lens[4];
    } pre[] = {{3, {1, 1, 1}}, {1, {1}}, {20, {0}}, {2, {7, 7}}, {3, {0, 0, 0}}};
    for (size_t i = 0; i < sizeof(pre) / sizeof(pre[0]); i++) {
        w = (bitwriter){{0}, 0};
        put_bits(&w, 16, 1);
        put_bits(&w, 5, pre[i].n);
        for (unsigned k = 0; k < pre[i].n && k < 3; k++) {
            if (pre[i].lens[k] < 7) {
                put_bits(&w, 3, pre[i].lens[k]);
            } else {
                put_bits(&w, 3, 7);
                put_bits(&w, 11, 0x7FF); /* 7 + 11 = 18 > 16 */
            }
            if (k == 2)
                put_bits(&w, 2, 0);
        }
        put_bits(&w, 9, 5); /* a c table of 5 lengths, coded with the pretable */
        put_bits(&w, 32, 0);
        make_stream(&b, 1, &w, 10, 0);
        assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_EFORMAT);
    }

    /* A c table of 511 lengths (there are 510 symbols). */
    w = (bitwriter){{0}, 0};
    put_bits(&w, 16, 1);
    put_bits(&w, 5, 0);
    put_bits(&w, 5, 3);
    put_bits(&w, 9, 511);
    put_bits(&w, 32, 0);
    make_stream(&b, 1, &w, 10, 0);
    assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_EFORMAT);

    /* Method 4: a literal 'x' (0 then 8 bits), then a match of 3 at distance 1 (1 0 0, 0 + 9). */
    w = (bitwriter){{0}, 0};
    put_bits(&w, 1, 0);
    put_bits(&w, 8, 'x');
    put_bits(&w, 3, 4); /* 1 0, then 1 bit 0: length code 1 = match of 3 */
    put_bits(&w, 1, 0);
    put_bits(&w, 9, 0);
    make_stream(&b, 4, &w, 4, crc32_ref((const uint8_t *)"xxxx", 4));
    assert_int_equal(read_one(&b, 1, out, sizeof(out), &len), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(out, "xxxx", 4);

    /* Method 4: a match first. */
    w = (bitwriter){{0}, 0};
    put_bits(&w, 3, 4);
    put_bits(&w, 10, 0);
    make_stream(&b, 4, &w, 4, 0);
    assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_EFORMAT);

    /* Method 4 claiming 4 GiB from three bytes of zeros: literals until the bits run out. */
    w = (bitwriter){{0}, 0};
    put_bits(&w, 24, 0);
    make_stream(&b, 4, &w, 0xFFFFFFFFu, 0);
    assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_ETRUNC);
    assert_int_equal(len, 2); /* 9 bits each: two whole literals fit in 24 bits */

    /* No bits at all. */
    w = (bitwriter){{0}, 0};
    make_stream(&b, 1, &w, 5, 0);
    assert_int_equal(read_one(&b, 16, NULL, 0, &len), ENGINE__ARJ_ETRUNC);
    assert_int_equal(len, 0);
}

/* Canonical codes for the lengths len[0..n): shorter codes first, equal lengths by symbol. */
static void canon_codes(const uint8_t *len, unsigned n, uint32_t *code)
{
    uint32_t next = 0;
    for (unsigned l = 1; l <= 16; l++) {
        for (unsigned sym = 0; sym < n; sym++)
            if (len[sym] == l)
                code[sym] = next++;
        next <<= 1;
    }
}

/* Writes a "t" or "p" code length: 3 bits, or 7 followed by v - 7 one bits and a zero. */
static void put_pt_len(bitwriter *w, unsigned v)
{
    if (v < 7) {
        put_bits(w, 3, v);
        return;
    }
    put_bits(w, 3, 7);
    for (unsigned k = 7; k < v; k++)
        put_bits(w, 1, 1);
    put_bits(w, 1, 0);
}

/*
 * A method-1 block whose tables have codes of every length up to 16, so symbols go through the
 * slow path behind the lookup tables: 16 literals 'a'..'p' with code lengths 1 to 16 (and 16), a
 * match symbol of 16 bits, and position slots 0 and 1 with 16-bit codes. It also uses all three
 * zero-run forms of the c table.
 */
static void test_long_codes(void **state)
{
    (void)state;
    static outbuf b;
    bitwriter w = {{0}, 0};
    uint8_t t_len[19], c_len[510], p_len[17];
    uint32_t t_code[19], c_code[510], p_code[17];

    for (unsigned i = 0; i < 19; i++)
        t_len[i] = i < 13 ? 4 : 5; /* 13/16 + 6/32 = 1 */
    memset(c_len, 0, sizeof(c_len));
    for (unsigned i = 0; i < 15; i++)
        c_len['a' + i] = (uint8_t)(i + 1);
    c_len['p'] = 16;
    c_len[256] = 16; /* a match of length 3 */
    p_len[0] = 16;
    p_len[1] = 16;
    for (unsigned j = 2; j < 17; j++)
        p_len[j] = (uint8_t)(17 - j);
    canon_codes(t_len, 19, t_code);
    canon_codes(c_len, 510, c_code);
    canon_codes(p_len, 17, p_code);

    put_bits(&w, 16, 19); /* symbols in the block */
    put_bits(&w, 5, 19);
    for (unsigned i = 0; i < 19; i++) {
        put_pt_len(&w, t_len[i]);
        if (i == 2)
            put_bits(&w, 2, 0);
    }
    put_bits(&w, 9, 257);
    /* 97 zeros as 1 + 18 + 78: t symbols 0, 1 (+4 bits), 2 (+9 bits). */
    put_bits(&w, t_len[0], t_code[0]);
    put_bits(&w, t_len[1], t_code[1]);
    put_bits(&w, 4, 18 - 3);
    put_bits(&w, t_len[2], t_code[2]);
    put_bits(&w, 9, 78 - 20);
    for (unsigned c = 'a'; c <= 'p'; c++)
        put_bits(&w, t_len[c_len[c] + 2], t_code[c_len[c] + 2]);
    put_bits(&w, t_len[2], t_code[2]); /* 143 zeros up to symbol 256 */
    put_bits(&w, 9, 143 - 20);
    put_bits(&w, t_len[18], t_code[18]);
    put_bits(&w, 5, 17);
    for (unsigned j = 0; j < 17; j++)
        put_pt_len(&w, p_len[j]);

    for (unsigned c = 'a'; c <= 'p'; c++)
        put_bits(&w, c_len[c], c_code[c]);
    put_bits(&w, c_len[256], c_code[256]); /* "ppp" from distance 1 */
    put_bits(&w, p_len[0], p_code[0]);
    put_bits(&w, c_len[256], c_code[256]); /* "ppp" from distance 2 (slot 1, no extra bits) */
    put_bits(&w, p_len[1], p_code[1]);
    put_bits(&w, c_len['p'], c_code['p']);

    const char want[] = "abcdefghijklmnopppppppp";
    uint8_t out[64];
    size_t len;
    make_stream(&b, 1, &w, 23, crc32_ref((const uint8_t *)want, 23));
    assert_int_equal(read_one(&b, 1, out, sizeof(out), &len), 0);
    assert_int_equal(len, 23);
    assert_memory_equal(out, want, 23);
    assert_int_equal(read_one(&b, 64, out, sizeof(out), &len), 0);
    assert_memory_equal(out, want, 23);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    size_t n, got = 7;
    uint8_t *d = load("stored.arj", &n);
    engine__arj *a = (engine__arj *)&n;
    engine__arj_entry e;
    uint8_t buf[8];

    assert_int_equal(engine__arj_open(d, n, NULL), ENGINE__ARJ_EINVAL);
    assert_int_equal(engine__arj_open(NULL, 5, &a), ENGINE__ARJ_EINVAL);
    assert_null(a);
    assert_int_equal(engine__arj_open(NULL, 0, &a), ENGINE__ARJ_EFORMAT);
    assert_null(a);
    assert_int_equal(engine__arj_next(NULL, &e), ENGINE__ARJ_EINVAL);
    assert_int_equal(engine__arj_read(NULL, buf, sizeof(buf), &got), ENGINE__ARJ_EINVAL);
    assert_int_equal(got, 0);

    assert_int_equal(engine__arj_open(d, n, &a), 0);
    assert_int_equal(engine__arj_next(a, NULL), ENGINE__ARJ_EINVAL);
    /* No current member yet. */
    assert_int_equal(engine__arj_read(a, buf, sizeof(buf), &got), ENGINE__ARJ_EINVAL);
    assert_int_equal(engine__arj_next(a, &e), 0);
    assert_int_equal(engine__arj_read(a, NULL, sizeof(buf), &got), ENGINE__ARJ_EINVAL);
    assert_int_equal(engine__arj_read(a, buf, 0, &got), ENGINE__ARJ_EINVAL);
    assert_int_equal(engine__arj_read(a, buf, sizeof(buf), NULL), ENGINE__ARJ_EINVAL);
    /* Skipping a member unread, then past the end. */
    assert_int_equal(engine__arj_next(a, &e), 0);
    assert_int_equal(engine__arj_next(a, &e), 1);
    assert_int_equal(engine__arj_read(a, buf, sizeof(buf), &got), ENGINE__ARJ_EINVAL);
    assert_int_equal(engine__arj_next(a, &e), 1);
    engine__arj_close(a);
    engine__arj_close(NULL);
    free(d);
}

static void test_error_table(void **state)
{
    (void)state;
    static const int codes[] = {ENGINE__ARJ_EFORMAT, ENGINE__ARJ_ETRUNC,     ENGINE__ARJ_ECRC,
                                ENGINE__ARJ_EMETHOD, ENGINE__ARJ_EENCRYPTED, ENGINE__ARJ_ENOMEM,
                                ENGINE__ARJ_EINVAL};
    size_t k = sizeof(codes) / sizeof(codes[0]);
    for (size_t i = 0; i < k; i++) {
        assert_true(codes[i] < 0);
        assert_string_not_equal(engine__arj_strerror(codes[i]), "unknown error");
        assert_string_not_equal(engine__arj_err_name(codes[i]), "ENGINE__ARJ_EUNKNOWN");
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(codes[i], codes[j]);
            assert_string_not_equal(engine__arj_strerror(codes[i]), engine__arj_strerror(codes[j]));
        }
    }
    assert_string_equal(engine__arj_err_name(ENGINE__ARJ_ECRC), "ENGINE__ARJ_ECRC");
    assert_string_equal(engine__arj_strerror(0), "unknown error");
    assert_string_equal(engine__arj_strerror(-1000), "unknown error");
    assert_string_equal(engine__arj_err_name(1), "ENGINE__ARJ_EUNKNOWN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stored),           cmocka_unit_test(test_methods_round_trip),
        cmocka_unit_test(test_multiple_members), cmocka_unit_test(test_planted_string),
        cmocka_unit_test(test_garbled),          cmocka_unit_test(test_volume),
        cmocka_unit_test(test_truncated),        cmocka_unit_test(test_corrupted),
        cmocka_unit_test(test_sfx_prefix),       cmocka_unit_test(test_huge_claimed_sizes),
        cmocka_unit_test(test_headers),          cmocka_unit_test(test_methods_and_flags),
        cmocka_unit_test(test_streams),          cmocka_unit_test(test_long_codes),
        cmocka_unit_test(test_bad_arguments),    cmocka_unit_test(test_error_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
