/*
 * text.c - the engine's views of script text.
 *
 * AMSI hosts hand the broker script blocks as raw bytes, most often UTF-16LE. Before matching,
 * the engine derives several views of a block: the text narrowed to UTF-8, a normalised view that
 * undoes cheap PowerShell obfuscation (case, backticks, 'Invo'+'ke' concatenations, whitespace),
 * the base64 runs inside it decoded, and those decoded blobs decompressed when they are raw
 * deflate, zlib, gzip or xz streams. Each result becomes a child object that is scanned again.
 *
 * These functions run on every scanned buffer, so each is a single bounded pass, and each treats
 * its input as hostile: any bytes at all give a shorter or empty output, never an access outside
 * the caller's buffers. Nothing here keeps state between calls.
 */
#define ZLIB_CONST
#include "text.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/*
 * The normalised view has an AVX2 loop, compiled for any x86-64 GCC or Clang build through a
 * function target attribute and used when the CPU reports AVX2; other builds use SSE2 or plain C.
 */
#if defined(__x86_64__) && defined(__SSE2__) && (defined(__GNUC__) || defined(__clang__))
#define TEXT_HAVE_AVX2 1
#include <immintrin.h>
#else
#define TEXT_HAVE_AVX2 0
#endif

#include <limits.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* How many leading bytes engine__utf16le_detect() looks at. */
#define TEXT_DETECT_PREFIX 512

/* Runs shorter than this are never reported by engine__base64_next(). */
#define TEXT_B64_MIN_RUN 8

/* A decompressed stream must yield this many bytes, or end properly, to count as one. */
#define TEXT_MIN_OUT 16

/* Bounds on the first output allocation of engine__decompress(); it then doubles. */
#define TEXT_OUT_FIRST_MIN 256
#define TEXT_OUT_FIRST_MAX (64 * 1024)

/* The xz decoder's memory limit: enough for streams made with xz -9 / -9e (65 MiB). */
#define TEXT_XZ_MEMLIMIT ((uint64_t)80 << 20)

/*
 * The base64 class table: 0 for a byte outside the alphabet, else the character's 6-bit value
 * plus one. The standard (+ /) and URL-safe (- _) alphabets share the table; '=' is not in it.
 */
static const uint8_t text_b64[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['-'] = 63,
    ['/'] = 64, ['_'] = 64,
};

/*
 * Bytes that make up a base64 run: the standard alphabet only. PowerShell's FromBase64String and
 * -EncodedCommand take nothing else, and counting '-' and '_' would turn every long
 * Verb-Noun-Name identifier into a run to decode.
 */
static const uint8_t text_b64_run[256] = {
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1,
    ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1,
    ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['+'] = 1, ['/'] = 1,
};

/* ---------------------------------------------------------------------------------------------
 * UTF-16LE
 * ------------------------------------------------------------------------------------------- */

/*
 * Looks for the caller's hint, the BOM, or the NUL pattern of mostly-ASCII UTF-16LE in the first
 * TEXT_DETECT_PREFIX bytes. Can't fail; a NULL buffer is not UTF-16LE.
 */
bool engine__utf16le_detect(const uint8_t *p, size_t n, bool hinted)
{
    size_t m, i, even, odd;
    size_t even_nul = 0, odd_nul = 0;

    if (p == NULL || n < 2)
        return false;
    if (hinted)
        return true;
    if (p[0] == 0xFF && p[1] == 0xFE)
        return true;
    if (n < 8)
        return false;

    /* Most content is not UTF-16: four of the first eight odd bytes not NUL settles it. */
    odd_nul = 0;
    for (i = 1; i < 16 && i < n; i += 2)
        odd_nul += p[i] == 0;
    if (n >= 16 && odd_nul < 5)
        return false;
    odd_nul = 0;

    m = n < TEXT_DETECT_PREFIX ? n : TEXT_DETECT_PREFIX;
    for (i = 0; i + 1 < m; i += 2) {
        even_nul += p[i] == 0;
        odd_nul += p[i + 1] == 0;
    }
    if (m & 1)
        even_nul += p[m - 1] == 0;

    odd = m / 2;
    even = m - odd;
    return odd_nul * 10 >= odd * 9 && even_nul * 10 < even;
}

/*
 * Writes code point cp as UTF-8 at out[w], if all of its bytes fit below cap. Returns how many
 * bytes it wrote, 0 when the sequence does not fit (nothing is written then).
 */
static size_t text_put_utf8(uint32_t cp, uint8_t *out, size_t w, size_t cap)
{
    size_t len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;

    if (cap - w < len)
        return 0;
    switch (len) {
    case 1:
        out[w] = (uint8_t)cp;
        break;
    case 2:
        out[w] = (uint8_t)(0xC0 | (cp >> 6));
        out[w + 1] = (uint8_t)(0x80 | (cp & 0x3F));
        break;
    case 3:
        out[w] = (uint8_t)(0xE0 | (cp >> 12));
        out[w + 1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[w + 2] = (uint8_t)(0x80 | (cp & 0x3F));
        break;
    default:
        out[w] = (uint8_t)(0xF0 | (cp >> 18));
        out[w + 1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        out[w + 2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[w + 3] = (uint8_t)(0x80 | (cp & 0x3F));
        break;
    }
    return len;
}

/*
 * Converts code units one by one, pairing surrogates, and stops at the first code point whose
 * UTF-8 form does not fit in what is left of out. Can't fail.
 */
size_t engine__utf16le_narrow(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    size_t i = 0, w = 0;

    if (in == NULL || out == NULL)
        return 0;
    if (n >= 2 && in[0] == 0xFF && in[1] == 0xFE)
        i = 2;

    while (n - i >= 2) {
        uint32_t cp = (uint32_t)in[i] | (uint32_t)in[i + 1] << 8;
        size_t len;

        if (cp < 0x80) {
            if (w == cap)
                break;
            out[w++] = (uint8_t)cp;
            i += 2;
            continue;
        }
        i += 2;
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            uint32_t low = 0;

            if (cp <= 0xDBFF && n - i >= 2)
                low = (uint32_t)in[i] | (uint32_t)in[i + 1] << 8;
            if (low >= 0xDC00 && low <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                i += 2;
            } else {
                cp = 0xFFFD;
            }
        }
        len = text_put_utf8(cp, out, w, cap);
        if (len == 0)
            break;
        w += len;
    }
    return w;
}

/* ---------------------------------------------------------------------------------------------
 * The normalised view
 * ------------------------------------------------------------------------------------------- */

/* True for the whitespace the normalised view collapses: space, tab, LF, VT, FF, CR. */
static bool text_is_space(uint8_t c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Folds an ASCII capital to lower case; every other byte is returned as it is. */
static uint8_t text_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c | 0x20) : c;
}

/*
 * Skips what may separate the pieces of a concatenation: whitespace, and a backtick followed by
 * whitespace (PowerShell's line continuation). Returns the index of the first other byte, or n.
 */
static size_t text_skip_gap(const uint8_t *in, size_t n, size_t i)
{
    while (i < n) {
        if (text_is_space(in[i]))
            i++;
        else if (in[i] == '`' && i + 1 < n && text_is_space(in[i + 1]))
            i += 2;
        else
            break;
    }
    return i;
}

/*
 * Called just after the closing quote of a string piece at in[i - 1]: if what follows is
 * gap '+' gap and an opening quote (either kind), stores that quote's index in *next and returns
 * true. Returns false, touching nothing, when the string is not continued.
 */
static bool text_join_next(const uint8_t *in, size_t n, size_t i, size_t *next)
{
    i = text_skip_gap(in, n, i);
    if (i == n || in[i] != '+')
        return false;
    i = text_skip_gap(in, n, i + 1);
    if (i == n || (in[i] != '\'' && in[i] != '"'))
        return false;
    *next = i;
    return true;
}

#if defined(__SSE2__)
/*
 * The vector loops' step once a vector of `width` (16 or 32) bytes at in[*i] is stored at
 * out[*w]: ws has a bit per whitespace byte, mk per mark (backtick, joinable quote). Takes every
 * byte up to the first mark or the first whitespace byte after whitespace (*sp: the byte before
 * was whitespace), and skips such a whitespace run to its end. Returns true when it stopped at a
 * mark, for the scalar code. Can't fail.
 */
static inline bool text_norm_advance(uint32_t ws, uint32_t mk, unsigned width, size_t *i, size_t *w,
                                     bool *sp)
{
    uint32_t all = width == 32 ? UINT32_MAX : (1u << width) - 1;
    uint32_t stop = mk | (ws & (((ws << 1) | (*sp ? 1u : 0u)) & all));
    if (stop == 0) {
        *i += width;
        *w += width;
        *sp = (ws >> (width - 1)) & 1u;
        return false;
    }
    unsigned take = (unsigned)__builtin_ctz(stop);
    if (take > 0)
        *sp = (ws >> (take - 1)) & 1u;
    *i += take;
    *w += take;
    if ((mk >> take) & 1u)
        return true;
    /* A whitespace run: the space was written before it; skip it to its end (or the vector's). */
    uint32_t rest = ~(ws >> take) & (all >> take);
    *i += rest ? (unsigned)__builtin_ctz(rest) : width - take;
    *sp = true;
    return false;
}

/* Bytes of v from '\t' to '\r' (tab, LF, VT, FF, CR): they become a space. */
static inline __m128i text_ctrl16(__m128i v)
{
    return _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('\t' - 1)),
                         _mm_cmplt_epi8(v, _mm_set1_epi8('\r' + 1)));
}

/* Whitespace: those and ' '. */
static inline __m128i text_blank16(__m128i v)
{
    return _mm_or_si128(text_ctrl16(v), _mm_cmpeq_epi8(v, _mm_set1_epi8(' ')));
}

/*
 * The vector part of engine__normalize: copies the bytes at in[*i..] to out[*w..] while no byte
 * needs a decision, 16 or 32 at a time. Letters are lower-cased, every whitespace byte that does
 * not follow whitespace is written as one space, and a whitespace byte that follows whitespace is
 * skipped together with the rest of its run (*space says whether the byte before in[*i] was
 * whitespace). It stops at a backtick (an escape) or at a quote that may start a join: '+' or a
 * backtick after it, or whitespace and then whitespace, '+' or a backtick (any other quote cannot
 * start one and is copied); the scalar code decides those. It also stops when fewer than a
 * vector's width of input (plus the two bytes after) or output is left. Each byte handled here
 * gets exactly what the scalar code would give it. Can't fail.
 */
static void text_norm_sse2(const uint8_t *in, size_t n, size_t *pi, uint8_t *out, size_t cap,
                           size_t *pw, bool *space)
{
    size_t i = *pi, w = *pw;
    bool sp = *space;

    while (n - i >= 18 && cap - w >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
        __m128i n1 = _mm_loadu_si128((const __m128i *)(const void *)(in + i + 1));
        __m128i n2 = _mm_loadu_si128((const __m128i *)(const void *)(in + i + 2));
        __m128i ctrl = text_ctrl16(v);
        __m128i blank = _mm_or_si128(ctrl, _mm_cmpeq_epi8(v, _mm_set1_epi8(' ')));
        __m128i quote = _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\'')),
                                     _mm_cmpeq_epi8(v, _mm_set1_epi8('"')));
        /* A quote can start a join only when '+' or a backtick follows it, or whitespace and then
         * whitespace, '+' or a backtick: any other quote is copied like a letter. */
        __m128i b1 = text_blank16(n1), b2 = text_blank16(n2);
        __m128i p1 = _mm_or_si128(_mm_cmpeq_epi8(n1, _mm_set1_epi8('+')),
                                  _mm_cmpeq_epi8(n1, _mm_set1_epi8('`')));
        __m128i p2 = _mm_or_si128(_mm_cmpeq_epi8(n2, _mm_set1_epi8('+')),
                                  _mm_cmpeq_epi8(n2, _mm_set1_epi8('`')));
        __m128i joinable = _mm_or_si128(p1, _mm_and_si128(b1, _mm_or_si128(b2, p2)));
        __m128i marks =
            _mm_or_si128(_mm_and_si128(quote, joinable), _mm_cmpeq_epi8(v, _mm_set1_epi8('`')));
        __m128i upper = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('A' - 1)),
                                      _mm_cmplt_epi8(v, _mm_set1_epi8('Z' + 1)));
        __m128i o = _mm_add_epi8(v, _mm_and_si128(upper, _mm_set1_epi8(0x20)));
        o = _mm_or_si128(_mm_andnot_si128(ctrl, o), _mm_and_si128(ctrl, _mm_set1_epi8(' ')));
        _mm_storeu_si128((__m128i *)(void *)(out + w), o);

        if (text_norm_advance((uint32_t)_mm_movemask_epi8(blank),
                              (uint32_t)_mm_movemask_epi8(marks), 16, &i, &w, &sp))
            break;
    }
    *pi = i;
    *pw = w;
    *space = sp;
}
#endif

#if TEXT_HAVE_AVX2
/* text_ctrl16() and text_blank16() 32 bytes at a time. */
__attribute__((target("avx2"))) static inline __m256i text_ctrl32(__m256i v)
{
    return _mm256_and_si256(_mm256_cmpgt_epi8(v, _mm256_set1_epi8('\t' - 1)),
                            _mm256_cmpgt_epi8(_mm256_set1_epi8('\r' + 1), v));
}

__attribute__((target("avx2"))) static inline __m256i text_blank32(__m256i v)
{
    return _mm256_or_si256(text_ctrl32(v), _mm256_cmpeq_epi8(v, _mm256_set1_epi8(' ')));
}

/* text_norm_sse2() 32 bytes at a time, for CPUs with AVX2 (checked by the caller). */
__attribute__((target("avx2"))) static void text_norm_avx2(const uint8_t *in, size_t n, size_t *pi,
                                                           uint8_t *out, size_t cap, size_t *pw,
                                                           bool *space)
{
    size_t i = *pi, w = *pw;
    bool sp = *space;

    while (n - i >= 34 && cap - w >= 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(in + i));
        __m256i n1 = _mm256_loadu_si256((const __m256i *)(const void *)(in + i + 1));
        __m256i n2 = _mm256_loadu_si256((const __m256i *)(const void *)(in + i + 2));
        __m256i ctrl = text_ctrl32(v);
        __m256i blank = _mm256_or_si256(ctrl, _mm256_cmpeq_epi8(v, _mm256_set1_epi8(' ')));
        __m256i quote = _mm256_or_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('\'')),
                                        _mm256_cmpeq_epi8(v, _mm256_set1_epi8('"')));
        /* As in text_norm_sse2(): only a quote that '+' or a backtick follows, or whitespace and
         * then whitespace, '+' or a backtick, can start a join. */
        __m256i b1 = text_blank32(n1), b2 = text_blank32(n2);
        __m256i p1 = _mm256_or_si256(_mm256_cmpeq_epi8(n1, _mm256_set1_epi8('+')),
                                     _mm256_cmpeq_epi8(n1, _mm256_set1_epi8('`')));
        __m256i p2 = _mm256_or_si256(_mm256_cmpeq_epi8(n2, _mm256_set1_epi8('+')),
                                     _mm256_cmpeq_epi8(n2, _mm256_set1_epi8('`')));
        __m256i joinable = _mm256_or_si256(p1, _mm256_and_si256(b1, _mm256_or_si256(b2, p2)));
        __m256i marks = _mm256_or_si256(_mm256_and_si256(quote, joinable),
                                        _mm256_cmpeq_epi8(v, _mm256_set1_epi8('`')));
        __m256i upper = _mm256_and_si256(_mm256_cmpgt_epi8(v, _mm256_set1_epi8('A' - 1)),
                                         _mm256_cmpgt_epi8(_mm256_set1_epi8('Z' + 1), v));
        __m256i o = _mm256_add_epi8(v, _mm256_and_si256(upper, _mm256_set1_epi8(0x20)));
        o = _mm256_blendv_epi8(o, _mm256_set1_epi8(' '), ctrl);
        _mm256_storeu_si256((__m256i *)(void *)(out + w), o);

        if (text_norm_advance((uint32_t)_mm256_movemask_epi8(blank),
                              (uint32_t)_mm256_movemask_epi8(marks), 32, &i, &w, &sp))
            break;
    }
    *pi = i;
    *pw = w;
    *space = sp;
}
#endif

unsigned engine__normalize_vectors(void)
{
    unsigned v = 0;
#if defined(__SSE2__)
    v |= ENGINE__VEC_SSE2;
#endif
#if TEXT_HAVE_AVX2
    if (__builtin_cpu_supports("avx2"))
        v |= ENGINE__VEC_AVX2;
#endif
    return v;
}

size_t engine__normalize(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    return engine__normalize_with(in, n, out, cap, engine__normalize_vectors());
}

/*
 * One pass. A concatenation is recognised without tracking strings: a quote followed by
 * gap '+' gap and another quote is dropped together with them, so 'Invo'+'ke' becomes 'invoke'
 * and "a" + 'b' becomes "ab'. Tracking which quotes open strings would be fooled by a quote in a
 * comment (# don't) and stop all joining after it; the local rule cannot be. Each input byte
 * yields at most one output byte, so the view is never longer than its input. Output stops when
 * cap is reached; what was written is then a prefix of the full view.
 *
 * Ordinary text goes through the vector loop (AVX2 when the CPU has it, else SSE2), which stops
 * only at backticks and quotes; the scalar code below takes one byte (or an escape, or a join)
 * and hands back. Can't fail.
 */
size_t engine__normalize_with(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                              unsigned vectors)
{
    size_t i = 0, w = 0, next;
    bool space = false;

    if (in == NULL || out == NULL)
        return 0;
#if TEXT_HAVE_AVX2
    bool avx2 = (vectors & ENGINE__VEC_AVX2) != 0;
#endif
#if defined(__SSE2__)
    bool sse2 = (vectors & ENGINE__VEC_SSE2) != 0;
#endif
    (void)vectors;

    while (i < n && w < cap) {
#if TEXT_HAVE_AVX2
        if (avx2)
            text_norm_avx2(in, n, &i, out, cap, &w, &space);
#endif
#if defined(__SSE2__)
        if (sse2)
            text_norm_sse2(in, n, &i, out, cap, &w, &space);
        if (i >= n || w >= cap)
            break;
#endif
        uint8_t c = in[i++];
        bool escaped = false;

        if (c == '`') {
            if (i == n)
                break;
            c = in[i++];
            escaped = true;
        }
        if (text_is_space(c)) {
            if (!space)
                out[w++] = ' ';
            space = true;
            continue;
        }
        if (!escaped && (c == '\'' || c == '"') && text_join_next(in, n, i, &next)) {
            i = next + 1;
            continue;
        }
        out[w++] = text_lower(c);
        space = false;
    }
    return w;
}

/* ---------------------------------------------------------------------------------------------
 * Base64
 * ------------------------------------------------------------------------------------------- */

/*
 * The skip-ahead search. Invariant: no run of min_run or more alphabet characters starts in
 * [*pos, i). If the byte at k = i + min_run - 1 is outside the alphabet, every run starting in
 * [i, k] would have to contain it, so none does and i jumps to k + 1: on ordinary text most
 * probes land on punctuation or spaces, and only one byte in min_run is read. If the byte is in
 * the alphabet, the run holding it is measured backwards (never below i: the byte before i is
 * outside the alphabet, or i is *pos) and forwards; a long enough run is the answer, a short one
 * is skipped whole. Every byte is read at most twice. Can't fail.
 */
#if defined(__SSE2__)
/*
 * A bit per byte of p[0..16): set when the byte is in the standard base64 alphabet. Letters are
 * tested once after folding case with | 0x20 (which maps no other byte into a..z); bytes from 0x80
 * are negative as signed and fail every range. Can't fail.
 */
static unsigned text_b64_mask16(const uint8_t *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i l = _mm_or_si128(v, _mm_set1_epi8(0x20));
    __m128i alpha = _mm_and_si128(_mm_cmpgt_epi8(l, _mm_set1_epi8('a' - 1)),
                                  _mm_cmplt_epi8(l, _mm_set1_epi8('z' + 1)));
    __m128i slash_digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('/' - 1)),
                                        _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
    __m128i plus = _mm_cmpeq_epi8(v, _mm_set1_epi8('+'));
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(alpha, slash_digit), plus));
}
#endif

#if TEXT_HAVE_AVX2
/*
 * Skips 32 bytes at a time over text without a whole 16-byte block of base64: returns the offset
 * (a multiple of 16) of the first block of p[0..n) whose 16 bytes may all be in the alphabet, or
 * where fewer than 32 bytes are left. Classifies with two nibble lookups: the low nibble's table
 * says which high nibbles (2: + /, 3: digits, 4-7: letters) it is valid with, the high nibble's
 * table gives its bit. Bytes from 0x80 have high nibbles with no bit. Can't fail.
 */
__attribute__((target("avx2"))) static size_t text_b64_skip_avx2(const uint8_t *p, size_t n)
{
    const __m256i lo_lut =
        _mm256_setr_epi8(42, 62, 62, 62, 62, 62, 62, 62, 62, 62, 60, 21, 20, 20, 20, 21, 42, 62, 62,
                         62, 62, 62, 62, 62, 62, 62, 60, 21, 20, 20, 20, 21);
    const __m256i hi_lut = _mm256_setr_epi8(0, 0, 1, 2, 4, 8, 16, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                            1, 2, 4, 8, 16, 32, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m256i nib = _mm256_set1_epi8(0x0F);
    size_t i = 0;

    while (n - i >= 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p + i));
        __m256i lo = _mm256_shuffle_epi8(lo_lut, _mm256_and_si256(v, nib));
        __m256i hi = _mm256_shuffle_epi8(hi_lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), nib));
        uint32_t bad = (uint32_t)_mm256_movemask_epi8(
            _mm256_cmpeq_epi8(_mm256_and_si256(lo, hi), _mm256_setzero_si256()));
        if ((bad & 0xFFFFu) == 0)
            return i;
        if ((bad >> 16) == 0)
            return i + 16;
        i += 32;
    }
    return i;
}
#endif

/* Reports the run p[start..end) plus up to two '=' after it. */
static bool text_b64_found(const uint8_t *p, size_t n, size_t start, size_t end, size_t *pos,
                           engine__span *span)
{
    size_t pad = end;
    while (pad < n && pad - end < 2 && p[pad] == '=')
        pad++;
    span->off = start;
    span->len = pad - start;
    *pos = pad;
    return true;
}

bool engine__base64_next(const uint8_t *p, size_t n, size_t *pos, size_t min_run,
                         engine__span *span)
{
    size_t i;

    if (p == NULL || pos == NULL || span == NULL || *pos >= n)
        return false;
    if (min_run < TEXT_B64_MIN_RUN)
        min_run = TEXT_B64_MIN_RUN;

    i = *pos;
#if defined(__SSE2__)
    /*
     * Any run of 31 or more bytes holds a whole 16-byte block of the grid that starts at i, so
     * for such lengths only blocks that are all alphabet need a closer look: one load and a few
     * vector operations per 16 bytes of ordinary text.
     */
    if (min_run >= 31) {
#if TEXT_HAVE_AVX2
        bool avx2 = __builtin_cpu_supports("avx2");
#endif
        while (n - i >= 16) {
#if TEXT_HAVE_AVX2
            if (avx2) {
                i += text_b64_skip_avx2(p + i, n - i);
                if (n - i < 16)
                    break;
            }
#endif
            if (text_b64_mask16(p + i) != 0xFFFF) {
                i += 16;
                continue;
            }
            size_t start = i, end = i + 16;
            while (start > *pos && text_b64_run[p[start - 1]])
                start--;
            while (n - end >= 16 && text_b64_mask16(p + end) == 0xFFFF)
                end += 16;
            while (end < n && text_b64_run[p[end]])
                end++;
            if (end - start >= min_run)
                return text_b64_found(p, n, start, end, pos, span);
            if (end == n)
                return false;
            i = end + 1;
        }
        return false;
    }
#endif
    while (n - i >= min_run) {
        size_t k = i + min_run - 1;
        size_t start, end;

        if (text_b64_run[p[k]] == 0) {
            i = k + 1;
            continue;
        }
        start = k;
        while (start > i && text_b64_run[p[start - 1]] != 0)
            start--;
        end = k + 1;
        while (end < n && text_b64_run[p[end]] != 0)
            end++;

        if (end - start >= min_run)
            return text_b64_found(p, n, start, end, pos, span);
        if (end == n)
            break;
        i = end + 1;
    }
    return false;
}

/*
 * Decodes whole quads directly while they fit, then finishes bit by bit: a final group of two or
 * three characters yields one or two bytes, a lone character none. Stops at the first byte
 * outside the alphabet (which includes '=') or when cap is reached. Can't fail.
 */
size_t engine__base64_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
    size_t i = 0, w = 0;
    uint32_t acc = 0;
    unsigned bits = 0;

    if (in == NULL || out == NULL)
        return 0;

    while (n - i >= 4 && cap - w >= 3) {
        uint32_t a = text_b64[in[i]], b = text_b64[in[i + 1]];
        uint32_t c = text_b64[in[i + 2]], d = text_b64[in[i + 3]];
        uint32_t v;

        if (a == 0 || b == 0 || c == 0 || d == 0)
            break;
        v = (a - 1) << 18 | (b - 1) << 12 | (c - 1) << 6 | (d - 1);
        out[w] = (uint8_t)(v >> 16);
        out[w + 1] = (uint8_t)(v >> 8);
        out[w + 2] = (uint8_t)v;
        i += 4;
        w += 3;
    }

    while (i < n && w < cap) {
        uint32_t v = text_b64[in[i++]];

        if (v == 0)
            break;
        acc = ((acc << 6) | (v - 1)) & 0x3FFF;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[w++] = (uint8_t)(acc >> bits);
        }
    }
    return w;
}

/* ---------------------------------------------------------------------------------------------
 * Decompression
 * ------------------------------------------------------------------------------------------- */

/* Maps a codec to its name in object paths; an unknown value gives "". Can't fail. */
const char *engine__codec_name(engine__codec codec)
{
    switch (codec) {
    case ENGINE__CODEC_DEFLATE:
        return "deflate";
    case ENGINE__CODEC_ZLIB:
        return "zlib";
    case ENGINE__CODEC_GZIP:
        return "gzip";
    case ENGINE__CODEC_XZ:
        return "xz";
    case ENGINE__CODEC_NONE:
        break;
    }
    return "";
}

/* How a decoding attempt stopped. */
typedef enum text_stop {
    TEXT_STOP_END,   /* the stream ended properly */
    TEXT_STOP_INPUT, /* the input ran out before the stream's end */
    TEXT_STOP_FULL,  /* the output reached its hard limit */
    TEXT_STOP_ERROR, /* the decoder found bad data or an unsupported option */
    TEXT_STOP_NOMEM, /* an allocation failed */
} text_stop;

/*
 * The growing output of one decoding attempt. hard is one more than the most the caller may get
 * (and at least TEXT_MIN_OUT + 1), so filling it proves the output goes on past max_out.
 */
typedef struct text_out {
    uint8_t *buf;
    size_t len;
    size_t cap;
    size_t first;
    size_t hard;
} text_out;

/* Grows o's buffer geometrically, never past o->hard. Returns 0, or -1 when memory ran out. */
static int text_out_grow(text_out *o)
{
    size_t cap;
    uint8_t *buf;

    if (o->cap == 0)
        cap = o->first;
    else if (o->cap > o->hard / 2)
        cap = o->hard;
    else
        cap = o->cap * 2;
    buf = realloc(o->buf, cap);
    if (buf == NULL)
        return -1;
    o->buf = buf;
    o->cap = cap;
    return 0;
}

/*
 * Makes room for more output, growing the buffer when it is full. Returns true when there is
 * room; otherwise stores TEXT_STOP_FULL (at the hard limit) or TEXT_STOP_NOMEM in *stop.
 */
static bool text_out_room(text_out *o, text_stop *stop)
{
    if (o->len < o->cap)
        return true;
    if (o->cap == o->hard)
        *stop = TEXT_STOP_FULL;
    else if (text_out_grow(o) == 0)
        return true;
    else
        *stop = TEXT_STOP_NOMEM;
    return false;
}

/*
 * Inflates in[0..n) into o with zlib's windowBits (-15 raw, 15 zlib, 31 gzip). Feeds input in
 * pieces zlib's 32-bit counters can hold. Sets *all_in when every input byte was consumed.
 * Returns how it stopped; never fails otherwise.
 */
static text_stop text_inflate(const uint8_t *in, size_t n, int window_bits, text_out *o,
                              bool *all_in)
{
    z_stream zs;
    size_t left = n;
    text_stop stop;
    int rc;

    memset(&zs, 0, sizeof zs);
    rc = inflateInit2(&zs, window_bits);
    if (rc != Z_OK)
        return rc == Z_MEM_ERROR ? TEXT_STOP_NOMEM : TEXT_STOP_ERROR;
    zs.next_in = in;

    for (;;) {
        size_t room;

        if (zs.avail_in == 0 && left > 0) {
            zs.avail_in = left > UINT_MAX ? UINT_MAX : (uInt)left;
            left -= zs.avail_in;
        }
        if (!text_out_room(o, &stop))
            break;
        room = o->cap - o->len;
        zs.next_out = o->buf + o->len;
        zs.avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;

        rc = inflate(&zs, Z_NO_FLUSH);
        o->len = (size_t)(zs.next_out - o->buf);

        if (rc == Z_STREAM_END) {
            stop = TEXT_STOP_END;
            break;
        }
        /* Z_BUF_ERROR means no progress: with output room given, the input is used up. */
        if (rc == Z_BUF_ERROR ||
            (rc == Z_OK && zs.avail_out > 0 && zs.avail_in == 0 && left == 0)) {
            stop = TEXT_STOP_INPUT;
            break;
        }
        if (rc == Z_OK)
            continue;
        stop = rc == Z_MEM_ERROR ? TEXT_STOP_NOMEM : TEXT_STOP_ERROR;
        break;
    }
    *all_in = zs.avail_in == 0 && left == 0;
    inflateEnd(&zs);
    return stop;
}

/*
 * Decodes the single .xz stream in in[0..n) into o with liblzma, under TEXT_XZ_MEMLIMIT. Sets
 * *all_in when every input byte was consumed. Returns how it stopped; never fails otherwise.
 */
static text_stop text_unxz(const uint8_t *in, size_t n, text_out *o, bool *all_in)
{
    lzma_stream xs = LZMA_STREAM_INIT;
    text_stop stop;
    lzma_ret rc;

    rc = lzma_stream_decoder(&xs, TEXT_XZ_MEMLIMIT, 0);
    if (rc != LZMA_OK)
        return rc == LZMA_MEM_ERROR ? TEXT_STOP_NOMEM : TEXT_STOP_ERROR;
    xs.next_in = in;
    xs.avail_in = n;

    for (;;) {
        if (!text_out_room(o, &stop))
            break;
        xs.next_out = o->buf + o->len;
        xs.avail_out = o->cap - o->len;

        rc = lzma_code(&xs, LZMA_FINISH);
        o->len = (size_t)(xs.next_out - o->buf);

        if (rc == LZMA_OK)
            continue;
        if (rc == LZMA_STREAM_END)
            stop = TEXT_STOP_END;
        else if (rc == LZMA_BUF_ERROR)
            stop = TEXT_STOP_INPUT;
        else if (rc == LZMA_MEM_ERROR)
            stop = TEXT_STOP_NOMEM;
        else
            stop = TEXT_STOP_ERROR;
        break;
    }
    *all_in = xs.avail_in == 0;
    lzma_end(&xs);
    return stop;
}

/* True if in[0..n) starts with a zlib header we can decode: deflate, window <= 32K, no dict. */
static bool text_is_zlib(const uint8_t *in, size_t n)
{
    if (n < 2)
        return false;
    return (in[0] & 0x0F) == 8 && (in[0] >> 4) <= 7 && (in[1] & 0x20) == 0 &&
           ((unsigned)in[0] << 8 | in[1]) % 31 == 0;
}

/*
 * Judges one attempt: 0 if it is a stream of its format, -1 if not, -2 if memory ran out. A
 * stream must give TEXT_MIN_OUT bytes before any error or the end of the input, or end properly
 * with some output. Raw deflate has no magic and no checksum, and random bytes inflate to a few
 * dozen bytes before an error about one time in fifty, so for it the bar is higher: any error
 * rejects it, and a short stream must also have used all the input.
 */
static int text_judge(text_stop stop, size_t len, bool raw, bool all_in)
{
    switch (stop) {
    case TEXT_STOP_NOMEM:
        return -2;
    case TEXT_STOP_FULL:
        return 0;
    case TEXT_STOP_END:
        if (len == 0 || (raw && len < TEXT_MIN_OUT && !all_in))
            return -1;
        return 0;
    case TEXT_STOP_ERROR:
        if (raw)
            return -1;
        break;
    case TEXT_STOP_INPUT:
        break;
    }
    return len >= TEXT_MIN_OUT ? 0 : -1;
}

/*
 * Picks the format by magic (xz, gzip), then by header (zlib, falling back to raw deflate when
 * that fails), else raw deflate, and decodes into a buffer that doubles from a size guessed from
 * n up to hard = max(max_out, TEXT_MIN_OUT) + 1 bytes, so no more than that is ever allocated or
 * produced, and a stream is checked for TEXT_MIN_OUT bytes even when max_out is smaller. Output
 * past max_out is dropped and *truncated set; with max_out 0 a stream is still recognised, and
 * the call succeeds with *out NULL and *truncated set. A stream cut short gives what it holds; so
 * does a zlib, gzip or xz stream that breaks after TEXT_MIN_OUT bytes (a bad checksum, say). A
 * stream that ends properly with no output at all counts as none. Returns 0, -1 (not a stream of
 * these formats, or bad arguments) or -2 (out of memory); on failure *out is NULL.
 */
/*
 * True when the first 64 bytes are at least 7/8 printable ASCII: compressed data is close to
 * random (about 3/8 printable), so such a blob is text and not worth a zlib attempt, which costs
 * two allocations. Can't fail.
 */
static bool text_looks_textual(const uint8_t *in, size_t n)
{
    size_t m = n < 64 ? n : 64, printable = 0, i = 0;

#if defined(__SSE2__)
    /* 16 at a time: bytes from 0x80 are negative as signed and fail the range test. */
    for (; m - i >= 16; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(in + i));
        __m128i ok = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8(0x1F)),
                                   _mm_cmplt_epi8(v, _mm_set1_epi8(0x7F)));
        ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('\t')));
        ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('\n')));
        ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, _mm_set1_epi8('\r')));
        printable += (size_t)__builtin_popcount((unsigned)_mm_movemask_epi8(ok));
    }
#endif
    for (; i < m; i++)
        printable +=
            (in[i] >= 0x20 && in[i] < 0x7F) || in[i] == '\t' || in[i] == '\n' || in[i] == '\r';
    return printable * 8 >= m * 7;
}

/* count bits of in from bit pos on, least significant first (deflate's order). */
static unsigned text_bits(const uint8_t *in, size_t pos, unsigned count)
{
    unsigned v = 0;
    for (unsigned k = 0; k < count; k++, pos++)
        v |= (unsigned)(in[pos >> 3] >> (pos & 7) & 1u) << k;
    return v;
}

/* A Huffman code of count bits from bit *pos on: deflate packs those most significant first. */
static unsigned text_code(const uint8_t *in, size_t *pos, unsigned count)
{
    unsigned v = 0;
    for (unsigned k = 0; k < count; k++, (*pos)++)
        v = v << 1 | (in[*pos >> 3] >> (*pos & 7) & 1u);
    return v;
}

/*
 * Whether a first block of fixed Huffman codes is sure to fail before more than TEXT_MIN_OUT
 * bytes came out: it is decoded up to its first back-reference, which fails when it names a
 * distance code 30 or 31 or reaches before the start (zlib's "invalid distance too far back"),
 * as do the literal/length codes 286 and 287. Undecided (false): the input ends first, the block
 * ends, more than TEXT_MIN_OUT literals, or a valid back-reference.
 */
static bool text_fixed_fails(const uint8_t *in, size_t n)
{
    static const uint16_t dist_base[30] = {
        1,   2,   3,   4,   5,   7,    9,    13,   17,   25,   33,   49,   65,    97,    129,
        193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577};
    size_t pos = 3, end = 8 * n;
    unsigned out = 0;
    for (;;) {
        if (pos + 9 > end)
            return false;
        unsigned code = text_code(in, &pos, 7), sym;
        if (code <= 23) {
            sym = 256 + code;
        } else {
            code = code << 1 | text_code(in, &pos, 1);
            if (code >= 48 && code <= 191)
                sym = code - 48;
            else if (code >= 192 && code <= 199)
                sym = 280 + code - 192;
            else
                sym = 144 + (code << 1 | text_code(in, &pos, 1)) - 400;
        }
        if (sym < 256) {
            if (++out > TEXT_MIN_OUT)
                return false;
            continue;
        }
        if (sym == 256)
            return false;
        if (sym > 285)
            return true;
        unsigned lextra = sym < 265 || sym == 285 ? 0 : (sym - 261) / 4;
        if (pos + lextra + 5 > end)
            return false;
        pos += lextra;
        unsigned d = text_code(in, &pos, 5);
        if (d > 29)
            return true;
        unsigned dextra = d < 4 ? 0 : (d - 2) / 2;
        if (pos + dextra > end)
            return false;
        return dist_base[d] + text_bits(in, pos, dextra) > out;
    }
}

/*
 * True when a raw inflate of in[0..n) is sure to end in an error before it has produced more
 * than TEXT_MIN_OUT bytes, which engine__decompress() rejects whatever max_out is: a first block
 * of the reserved type 3; a stored block whose length and its one's complement disagree; a
 * dynamic block with more than 286 literal/length or 30 distance codes, or whose code length code
 * is not a complete prefix code (zlib's "invalid code lengths set"; with no code at all it fails
 * a step later, still before any output); a fixed block as text_fixed_fails() finds. Spares
 * zlib's allocations for nineteen random blobs in twenty. Can't fail.
 */
bool engine__deflate_impossible(const uint8_t *in, size_t n)
{
    unsigned type = (in[0] >> 1) & 3u;

    if (type == 3)
        return true;
    if (type == 0 && n >= 5)
        return (unsigned)(in[1] | in[2] << 8) != (~(unsigned)(in[3] | in[4] << 8) & 0xFFFFu);
    if (type == 1)
        return text_fixed_fails(in, n);
    if (type != 2 || n < 3)
        return false;
    if (text_bits(in, 3, 5) + 257 > 286 || text_bits(in, 8, 5) + 1 > 30)
        return true;
    unsigned ncodes = text_bits(in, 13, 4) + 4;
    if (17 + 3 * ncodes > 8 * n)
        return false; /* cut short: zlib waits for more input, the judge decides */
    unsigned count[8] = {0};
    for (unsigned i = 0; i < ncodes; i++)
        count[text_bits(in, 17 + 3 * i, 3)]++;
    int left = 1;
    for (unsigned len = 1; len < 8; len++) {
        left = 2 * left - (int)count[len];
        if (left < 0)
            return true; /* over-subscribed */
    }
    return left > 0; /* incomplete, or no code at all */
}

int engine__decompress(const uint8_t *in, size_t n, size_t max_out, uint8_t **out, size_t *out_len,
                       engine__codec *codec, bool *truncated)
{
    static const uint8_t xz_magic[6] = {0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00};
    text_out o = {0};
    engine__codec kind;
    text_stop stop;
    bool all_in = false;
    size_t len;
    int rc;

    if (out == NULL || out_len == NULL || codec == NULL || truncated == NULL)
        return -1;
    *out = NULL;
    *out_len = 0;
    *codec = ENGINE__CODEC_NONE;
    *truncated = false;
    if (in == NULL || n == 0)
        return -1;

    if (max_out < TEXT_MIN_OUT)
        o.hard = TEXT_MIN_OUT + 1;
    else
        o.hard = max_out == SIZE_MAX ? SIZE_MAX : max_out + 1;
    o.first = n > TEXT_OUT_FIRST_MAX / 4 ? TEXT_OUT_FIRST_MAX : n * 4;
    if (o.first < TEXT_OUT_FIRST_MIN)
        o.first = TEXT_OUT_FIRST_MIN;
    if (o.first > o.hard)
        o.first = o.hard;

    if (n >= sizeof xz_magic && memcmp(in, xz_magic, sizeof xz_magic) == 0) {
        kind = ENGINE__CODEC_XZ;
        stop = text_unxz(in, n, &o, &all_in);
    } else if (n >= 2 && in[0] == 0x1F && in[1] == 0x8B) {
        kind = ENGINE__CODEC_GZIP;
        stop = text_inflate(in, n, 31, &o, &all_in);
    } else if (text_looks_textual(in, n)) {
        return -1;
    } else if (text_is_zlib(in, n)) {
        kind = ENGINE__CODEC_ZLIB;
        stop = text_inflate(in, n, 15, &o, &all_in);
        if (text_judge(stop, o.len, false, all_in) == -1) {
            kind = ENGINE__CODEC_DEFLATE;
            o.len = 0;
            stop = engine__deflate_impossible(in, n) ? TEXT_STOP_ERROR
                                                     : text_inflate(in, n, -15, &o, &all_in);
        }
    } else {
        kind = ENGINE__CODEC_DEFLATE;
        stop = engine__deflate_impossible(in, n) ? TEXT_STOP_ERROR
                                                 : text_inflate(in, n, -15, &o, &all_in);
    }

    rc = text_judge(stop, o.len, kind == ENGINE__CODEC_DEFLATE, all_in);
    if (rc != 0) {
        free(o.buf);
        return rc;
    }

    len = o.len < max_out ? o.len : max_out;
    *codec = kind;
    *truncated = o.len > max_out;
    if (len == 0) {
        free(o.buf);
        return 0;
    }
    if (o.cap - len > TEXT_OUT_FIRST_MAX) {
        uint8_t *fit = realloc(o.buf, len);

        if (fit != NULL)
            o.buf = fit;
    }
    *out = o.buf;
    *out_len = len;
    return 0;
}
