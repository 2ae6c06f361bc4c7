/*
 * test_yara_diff.c - differential test of the engine against libyara 4.2.
 *
 * What it proves: for a generated rule set inside the YARA subset the engine implements (at least
 * 500 rules mixing text strings with every modifier combination, hex strings with wildcards,
 * nibbles, jumps and alternatives, regular expressions, and every condition form of the subset)
 * and at least 1,000 generated buffers (ASCII text, UTF-16LE text and binary), the engine reports
 * exactly the set of rules libyara reports, buffer by buffer. The engine's extra views (UTF-16
 * narrowing, the normalised view, base64 decoding) and unpacking are switched off, since libyara
 * has none of them. A second test runs hand-written cases at the edges of YARA's semantics
 * (fullword next to '_' or a lone byte after a UTF-16 word, overlapping counts, `\s` and `\v`,
 * unbounded jumps far apart, filesize limits) through the same comparison.
 *
 * The generator is deterministic: a splitmix64 stream from a fixed seed (AMSI_DIFF_SEED=<number>
 * in the environment picks another one for exploration; the seed is printed; AMSI_DIFF_DUMP=<dir>
 * writes the rule set and the buffers there, for reproducing a difference by hand). Buffers are
 * built from a small vocabulary of words joined by varying separators (space, '.', '_', '-',
 * newline, digits, letters, nothing), so `fullword` boundaries fall both ways, with case changes,
 * samples of the rules' own strings planted in them (wildcards, jumps and classes filled at
 * random), random bytes and machine-code fragments. A third of the buffers is UTF-16LE, a third
 * binary.
 *
 * Where libyara's behaviour differs from the plain meaning of a rule, the generator stays clear
 * of it, so that any remaining difference is a bug in one of the two:
 *  - libyara's regex engine looks at most YR_RE_SCAN_LIMIT (4096) bytes from an atom, so a regex
 *    or jump match longer than that is missed. Regexes here have bounded `.` and negated classes,
 *    and unbounded repeats only over classes that separators break; hex jumps are at most 16
 *    bytes. An unbounded hex jump `[n-]` is split by libyara into a chain of strings whose gap
 *    limit (RE_MAX_RANGE, 32767) is larger than any buffer here, so it is exact.
 *  - libyara tries `ascii` before `wide` at each offset and keeps one match per offset, so a string
 *    whose two forms can match at the same offset (one character, or a NUL after the first) counts
 *    once. Text strings here have at least two characters and no NUL.
 *  - libyara keeps one match per start offset for strings of varying length (regexes, hex strings
 *    with jumps or alternatives of different lengths), Hyperscan reports end offsets: counts of
 *    those differ, and the subset only allows `#x` on fixed-length strings. The generator uses
 *    `#x` only on text strings and fixed-length hex strings.
 *  - `0 of (...)` changed meaning between YARA versions; the generator never writes it.
 *  - A libyara 4.2 bug: its fast matcher for hex strings (yr_re_fast_exec) misses some matches of
 *    a hex string with two or more variable jumps (VirusTotal/yara#2065, fixed upstream after
 *    4.2). Such strings reach libyara written as the equivalent regex, which its general regex
 *    engine matches correctly, while the engine gets the hex string; next to an unbounded jump the
 *    generator writes only fixed jumps (see put_hex_as_regex()).
 * Everything else is expected to agree: `fullword` uses isalnum() (so '_' is a boundary), a
 * `wide fullword` match is blocked only by an alphanumeric byte followed (or preceded) by a NUL,
 * `nocase` folds ASCII letters only, `\s` includes \v and \f, `.` excludes \n without the `s` flag.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <yara.h>

#include "engine/engine.h"

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

#define DIFF_DEFAULT_SEED 0x5eedd1ffa3b17e55ull
#define DIFF_RULES        600
#define DIFF_BUFFERS      1200
#define DIFF_MAX_BUFFER   8192
#define DIFF_MAX_STRINGS  8
#define DIFF_MAX_HEX      34
#define DIFF_MAX_PIECES   5
#define DIFF_MAX_TEXT     40
#define DIFF_MAX_DETAILS  25 /* differing buffers printed in full */

/* ------------------------------------------------------------------------------------------ */
/* Deterministic random numbers (splitmix64).                                                  */

typedef struct prng {
    uint64_t state;
} prng;

/* The next 64 random bits. Can't fail. */
static uint64_t prng_next(prng *p)
{
    uint64_t z = (p->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A number in [0, n), n > 0. */
static uint32_t prng_below(prng *p, uint32_t n)
{
    return (uint32_t)(((prng_next(p) >> 32) * n) >> 32);
}

/* A number in [lo, hi]. */
static uint32_t prng_range(prng *p, uint32_t lo, uint32_t hi)
{
    return lo + prng_below(p, hi - lo + 1);
}

/* True with the given probability in percent. */
static bool prng_chance(prng *p, uint32_t percent)
{
    return prng_below(p, 100) < percent;
}

/* ------------------------------------------------------------------------------------------ */
/* Growable byte buffer, always NUL-terminated; allocation failure fails the test.             */

typedef struct dbuf {
    uint8_t *data;
    size_t len;
    size_t cap;
} dbuf;

static void dbuf_reserve(dbuf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    assert_non_null(p);
    b->data = p;
    b->cap = cap;
}

static void dbuf_put(dbuf *b, const void *src, size_t n)
{
    dbuf_reserve(b, n);
    if (n > 0)
        memcpy(b->data + b->len, src, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void dbuf_putc(dbuf *b, uint8_t c)
{
    dbuf_put(b, &c, 1);
}

static void dbuf_puts(dbuf *b, const char *s)
{
    dbuf_put(b, s, strlen(s));
}

static void dbuf_printf(dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void dbuf_printf(dbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    dbuf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void dbuf_free(dbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Vocabulary shared by rules and buffers, so that rules hit.                                  */

static const char *const vocab[] = {
    "Invoke",     "Expression", "amsi",     "AmsiUtils",    "Download",   "String",
    "Net",        "WebClient",  "Bypass",   "hidden",       "powershell", "cmd",
    "exe",        "MZ",         "x4d5a",    "eval",         "base64",     "FromBase64String",
    "Reflection", "Assembly",   "Load",     "VirtualAlloc", "kernel32",   "http",
    "payload",    "shell",      "mimikatz", "lsass",        "dump",       "token",
    "iex",        "Get",        "Set",      "Item",         "env",        "temp",
    "0x90",       "nop",        "ab",       "AB",           "a1",         "ScanBuffer",
    "Marshal",    "Copy",       "IEX",      "w00t",         "caf\xe9",    "na\xefve",
};

/* Separators between words: some alphanumeric, some empty, so fullword boundaries vary. */
static const char *const separators[] = {
    " ", " ", " ", ".", "_", "-",  "\n", "\t", ",",  "(",    ")", "'",    "\"",       "$",
    "=", ";", "",  "",  "1", "42", "x",  "Q",  "::", "\r\n", "/", "\x01", "\xc3\xa9",
};

/* Separators that are never alphanumeric, put around planted `fullword` strings. */
static const char *const word_breaks[] = {" ", ".", "_", "-", "\n", "(",
                                          ")", ",", ";", "'", "\t", "\xff"};

typedef struct byte_token {
    uint8_t len;
    uint8_t bytes[6];
} byte_token;

/* Machine-code-like fragments for binary buffers and hex strings. */
static const byte_token binary_tokens[] = {
    {4, {0x4d, 0x5a, 0x90, 0x00}},
    {4, {0x50, 0x45, 0x00, 0x00}},
    {5, {0xe8, 0x00, 0x00, 0x00, 0x00}},
    {2, {0xff, 0x25}},
    {2, {0x0f, 0x05}},
    {3, {0x48, 0x8b, 0x05}},
    {1, {0xcc}},
    {3, {0x90, 0x90, 0x90}},
    {4, {0x00, 0x00, 0x00, 0x00}},
    {1, {0xc3}},
    {3, {0x55, 0x8b, 0xec}},
    {2, {0x6a, 0x00}},
    {4, {0xde, 0xad, 0xbe, 0xef}},
    {2, {0x31, 0xc0}},
    {3, {0x8b, 0x45, 0xfc}},
};

static const char *pick_word(prng *p)
{
    return vocab[prng_below(p, COUNT_OF(vocab))];
}

/* A word of at least min_len characters. */
static const char *pick_word_min(prng *p, size_t min_len)
{
    for (;;) {
        const char *w = pick_word(p);
        if (strlen(w) >= min_len)
            return w;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The rule model: each string is kept in structured form so buffers can carry samples of it. */

enum str_kind { KIND_TEXT, KIND_HEX, KIND_REGEX };

#define M_NOCASE   0x01u
#define M_ASCII    0x02u
#define M_WIDE     0x04u
#define M_FULLWORD 0x08u
#define M_PRIVATE  0x10u

enum hex_type { HX_BYTE, HX_JUMP, HX_ALT };

/* One hex token: a (masked) byte, a jump, or an alternative of up to three short sequences. */
typedef struct hex_tok {
    uint8_t type;
    uint8_t value, mask; /* HX_BYTE: matches b when (b & mask) == value */
    uint8_t lo, hi;      /* HX_JUMP: [lo-hi]; hi == 0xff means unbounded */
    uint8_t nalt;        /* HX_ALT */
    uint8_t alt_len[3];
    uint8_t alt_value[3][3];
    uint8_t alt_mask[3][3];
} hex_tok;

enum re_type { RP_LIT, RP_CLASS, RP_ALT };

/* A regex character class: its source and bytes it surely matches (with or without nocase). */
typedef struct re_class {
    const char *src;
    const char *members;
    bool bounded; /* only bounded repeats: it can run over long stretches of a buffer */
} re_class;

static const re_class re_classes[] = {
    {"[a-z]", "abcdefghijklmnopqrstuvwxyz", false},
    {"[A-Z]", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", false},
    {"[0-9a-f]", "0123456789abcdef", false},
    {"[a-zA-Z0-9]", "abcdefghijkXYZ0123456789", false},
    {"[A-Za-z_]", "abcQRSTxyz_", false},
    {"\\d", "0123456789", false},
    {"\\w", "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789_", false},
    {"\\s", " \t\r\n\f\v", false},
    {"[._-]", "._-", false},
    {"[ \\x09]", " \t", false},
    {"[\\x30-\\x39]", "0123456789", false},
    {"[\\d.]", "0123456789.", false},
    {"[^0-9]", "abc XYZ.-_#", true},
    {"[^a-z\\x0a]", "019 .-_#", true},
    {".", "abcXYZ019 .-_#\t", true},
    {"\\W", " .-#()\n", true},
    {"\\S", "abcXYZ019.-", true},
    {"\\D", "abc .-XYZ", true},
};

/* One piece of a regex: a literal, a class with a repeat, or an alternation of words. */
typedef struct re_piece {
    uint8_t type;
    uint8_t cls;
    uint8_t nlit;
    uint8_t nalt;
    uint8_t alt_cls[3]; /* RP_ALT: a class after the word (0xff: none), alt_rep times */
    uint8_t alt_rep[3];
    uint8_t lit[24];
    uint16_t min, max; /* repeat bounds; max 0xffff means unbounded */
    char quant[16];    /* the repeat as written */
    const char *alts[3];
} re_piece;

typedef struct gen_string {
    uint8_t kind;
    char name[16]; /* without '$' */
    unsigned mods;
    bool countable; /* `#x` is allowed: text, or fixed-length hex */
    uint8_t bytes[DIFF_MAX_TEXT + 2];
    size_t nbytes;
    hex_tok hex[DIFF_MAX_HEX];
    size_t nhex;
    re_piece re[DIFF_MAX_PIECES];
    size_t nre;
    bool re_i, re_s;
} gen_string;

typedef struct gen_rule {
    gen_string strings[DIFF_MAX_STRINGS];
    unsigned nstrings;
} gen_rule;

enum buf_kind { BUF_TEXT, BUF_UTF16, BUF_BINARY, BUF_EDGE };

static const char *const buf_kind_names[] = {"text", "utf16le", "binary", "edge"};

typedef struct gen_buffer {
    uint8_t *data;
    size_t len;
    unsigned kind;
} gen_buffer;

/*
 * The rules and the buffers to scan. The rule set exists as the engine reads it (text) and as
 * libyara reads it (yara_text): the same rules, except that hex strings libyara 4.2 would misread
 * are given to it as equivalent regexes (see put_hex_as_regex()). Spans locate each rule in both.
 */
typedef struct rule_span {
    size_t off, len;   /* in text */
    size_t yoff, ylen; /* in yara_text */
} rule_span;

typedef struct corpus {
    dbuf text;
    dbuf yara_text;
    size_t nrules, caprules;
    rule_span *spans;
    gen_buffer *bufs;
    size_t nbufs, capbufs;
} corpus;

/* Appends one rule to both texts: engine_rule to text, yara_rule to yara_text. */
static void corpus_add_rule(corpus *c, const dbuf *engine_rule, const dbuf *yara_rule)
{
    if (c->nrules == c->caprules) {
        c->caprules = c->caprules ? c->caprules * 2 : 64;
        c->spans = realloc(c->spans, c->caprules * sizeof(*c->spans));
        assert_non_null(c->spans);
    }
    rule_span *sp = &c->spans[c->nrules++];
    sp->off = c->text.len;
    sp->len = engine_rule->len;
    sp->yoff = c->yara_text.len;
    sp->ylen = yara_rule->len;
    dbuf_put(&c->text, engine_rule->data, engine_rule->len);
    dbuf_put(&c->yara_text, yara_rule->data, yara_rule->len);
}

/* Takes ownership of b's bytes. */
static void corpus_add_buffer(corpus *c, dbuf *b, unsigned kind)
{
    if (c->nbufs == c->capbufs) {
        c->capbufs = c->capbufs ? c->capbufs * 2 : 64;
        c->bufs = realloc(c->bufs, c->capbufs * sizeof(*c->bufs));
        assert_non_null(c->bufs);
    }
    c->bufs[c->nbufs].data = b->data;
    c->bufs[c->nbufs].len = b->len;
    c->bufs[c->nbufs].kind = kind;
    c->nbufs++;
    b->data = NULL;
    b->len = b->cap = 0;
}

static void corpus_free(corpus *c)
{
    dbuf_free(&c->text);
    dbuf_free(&c->yara_text);
    free(c->spans);
    for (size_t i = 0; i < c->nbufs; i++)
        free(c->bufs[i].data);
    free(c->bufs);
    memset(c, 0, sizeof(*c));
}

/* ------------------------------------------------------------------------------------------ */
/* String generation.                                                                          */

static void put_text_literal(prng *p, dbuf *out, const uint8_t *s, size_t n)
{
    dbuf_putc(out, '"');
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c == '"')
            dbuf_puts(out, "\\\"");
        else if (c == '\\')
            dbuf_puts(out, "\\\\");
        else if (c == '\t')
            dbuf_puts(out, "\\t");
        else if (c == '\n')
            dbuf_puts(out, "\\n");
        else if (c == '\r')
            dbuf_puts(out, "\\r");
        else if (c < 0x20 || c >= 0x7f || prng_chance(p, 3))
            dbuf_printf(out, prng_chance(p, 50) ? "\\x%02x" : "\\x%02X", c);
        else
            dbuf_putc(out, c);
    }
    dbuf_putc(out, '"');
}

static const unsigned text_mod_combos[] = {
    0,
    0,
    0,
    M_NOCASE,
    M_NOCASE,
    M_WIDE,
    M_WIDE,
    M_ASCII,
    M_ASCII | M_WIDE,
    M_ASCII | M_WIDE,
    M_FULLWORD,
    M_FULLWORD,
    M_NOCASE | M_WIDE,
    M_NOCASE | M_ASCII | M_WIDE,
    M_NOCASE | M_FULLWORD,
    M_WIDE | M_FULLWORD,
    M_ASCII | M_WIDE | M_FULLWORD,
    M_NOCASE | M_WIDE | M_FULLWORD,
    M_NOCASE | M_ASCII | M_WIDE | M_FULLWORD,
};

static void gen_text_string(prng *p, gen_string *s)
{
    dbuf b = {0};
    uint32_t shape = prng_below(p, 100);
    if (shape < 55) {
        dbuf_puts(&b, pick_word(p));
    } else if (shape < 60) {
        /* A periodic string ("abab", "aaa"): planted copies next to each other overlap. */
        const char *w = pick_word(p);
        size_t unit = prng_range(p, 1, 2), total = prng_range(p, 2, 3) * unit;
        for (size_t i = 0; i < total; i++)
            dbuf_putc(&b, (uint8_t)w[i % unit]);
    } else if (shape < 80) {
        const char *sep;
        do {
            sep = separators[prng_below(p, COUNT_OF(separators))];
        } while (sep[0] == '\0');
        dbuf_puts(&b, pick_word(p));
        dbuf_puts(&b, sep);
        dbuf_puts(&b, pick_word(p));
    } else {
        const char *w = pick_word_min(p, 3);
        size_t wl = strlen(w);
        size_t flen = prng_range(p, 2, (uint32_t)wl);
        size_t off = prng_below(p, (uint32_t)(wl - flen + 1));
        dbuf_put(&b, w + off, flen);
    }
    if (b.len > DIFF_MAX_TEXT)
        b.len = DIFF_MAX_TEXT;
    if (prng_chance(p, 12)) {
        static const uint8_t specials[] = {'\t', '\n', '\r', '"', '\\'};
        uint8_t c = prng_chance(p, 50) ? specials[prng_below(p, COUNT_OF(specials))]
                                       : (uint8_t)prng_range(p, 1, 255);
        size_t at = prng_below(p, (uint32_t)b.len + 1);
        dbuf_putc(&b, 0);
        memmove(b.data + at + 1, b.data + at, b.len - 1 - at);
        b.data[at] = c;
    }
    memcpy(s->bytes, b.data, b.len);
    s->nbytes = b.len;
    dbuf_free(&b);
    s->mods = text_mod_combos[prng_below(p, COUNT_OF(text_mod_combos))];
    s->countable = true;
}

/* A masked hex byte: fixed, `??`, `X?` or `?X`. */
static void gen_hex_byte(prng *p, uint8_t base, bool fixed, uint8_t *value, uint8_t *mask)
{
    uint32_t r = fixed ? 100 : prng_below(p, 100);
    *mask = r < 12 ? 0x00 : r < 18 ? 0xf0 : r < 24 ? 0x0f : 0xff;
    *value = base & *mask;
}

static void gen_hex_string(prng *p, gen_string *s)
{
    uint8_t base[16];
    size_t n = 0;
    uint32_t src = prng_below(p, 100);
    if (src < 50) {
        unsigned k = prng_range(p, 1, 3);
        for (unsigned i = 0; i < k; i++) {
            const byte_token *t = &binary_tokens[prng_below(p, COUNT_OF(binary_tokens))];
            for (size_t j = 0; j < t->len && n < sizeof(base); j++)
                base[n++] = t->bytes[j];
        }
    } else if (src < 80) {
        const char *w = pick_word(p);
        for (size_t j = 0; w[j] != '\0' && n < 12; j++)
            base[n++] = (uint8_t)w[j];
    } else {
        size_t k = prng_range(p, 3, 8);
        for (size_t j = 0; j < k; j++)
            base[n++] = (uint8_t)prng_below(p, 256);
    }
    while (n < 2)
        base[n++] = (uint8_t)prng_below(p, 256);

    /* The first and last bytes stay fixed (YARA requires it); inner bytes may be wildcards,
     * alternatives, or be preceded by a jump. */
    bool fixed_len = true;
    s->nhex = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(s->nhex + 2 <= DIFF_MAX_HEX);
        bool edge = i == 0 || i == n - 1;
        if (!edge && prng_chance(p, 9)) {
            hex_tok *j = &s->hex[s->nhex++];
            memset(j, 0, sizeof(*j));
            j->type = HX_JUMP;
            uint32_t form = prng_below(p, 100);
            if (form < 35) {
                j->lo = j->hi = (uint8_t)prng_range(p, 1, 8);
            } else if (form < 90) {
                j->lo = (uint8_t)prng_range(p, 0, 6);
                j->hi = (uint8_t)prng_range(p, j->lo + 1u, 16);
            } else {
                j->lo = (uint8_t)prng_range(p, 0, 16);
                j->hi = 0xff;
            }
            if (j->lo != j->hi)
                fixed_len = false;
        }
        hex_tok *t = &s->hex[s->nhex++];
        memset(t, 0, sizeof(*t));
        if (!edge && prng_chance(p, 7)) {
            t->type = HX_ALT;
            t->nalt = (uint8_t)prng_range(p, 2, 3);
            for (unsigned a = 0; a < t->nalt; a++) {
                t->alt_len[a] = (uint8_t)prng_range(p, 1, 3);
                for (unsigned k = 0; k < t->alt_len[a]; k++) {
                    uint8_t b = a == 0 && k == 0 ? base[i] : (uint8_t)prng_below(p, 256);
                    gen_hex_byte(p, b, prng_chance(p, 70), &t->alt_value[a][k], &t->alt_mask[a][k]);
                }
                if (t->alt_len[a] != t->alt_len[0])
                    fixed_len = false;
            }
        } else {
            t->type = HX_BYTE;
            gen_hex_byte(p, base[i], edge, &t->value, &t->mask);
        }
    }
    /*
     * libyara splits a string at an unbounded jump and matches the parts with its fast hex matcher,
     * which can miss matches when a part has two variable jumps (see put_hex_as_regex()); such a
     * string cannot be handed to libyara as a regex either (an unbounded regex repeat stops at
     * YR_RE_SCAN_LIMIT). So next to an unbounded jump, the other jumps are fixed.
     */
    bool unbounded = false;
    for (size_t i = 0; i < s->nhex; i++)
        unbounded |= s->hex[i].type == HX_JUMP && s->hex[i].hi == 0xff;
    for (size_t i = 0; i < s->nhex && unbounded; i++) {
        hex_tok *j = &s->hex[i];
        if (j->type == HX_JUMP && j->hi != 0xff && j->lo != j->hi)
            j->lo = j->hi;
    }
    s->mods = prng_chance(p, 10) ? M_PRIVATE : 0;
    s->countable = fixed_len;
}

static void put_regex_literal(dbuf *out, const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c != 0 && strchr("\\.+*?()[]{}|^$/", c) != NULL) {
            dbuf_putc(out, '\\');
            dbuf_putc(out, c);
        } else if (c < 0x20 || c >= 0x7f) {
            dbuf_printf(out, "\\x%02x", c);
        } else {
            dbuf_putc(out, c);
        }
    }
}

/* Sets a piece's repeat: "" / "?" / "+" / "*" / "{n}" / "{n,m}". */
static void gen_repeat(prng *p, re_piece *rp, bool bounded)
{
    uint32_t r = prng_below(p, 100);
    if (r < 30) {
        rp->min = rp->max = 1;
        rp->quant[0] = '\0';
    } else if (r < 45) {
        rp->min = 0;
        rp->max = 1;
        strcpy(rp->quant, "?");
    } else if (r < 60 && !bounded) {
        rp->min = 1;
        rp->max = 0xffff;
        strcpy(rp->quant, "+");
    } else if (r < 70 && !bounded) {
        rp->min = 0;
        rp->max = 0xffff;
        strcpy(rp->quant, "*");
    } else if (r < 82) {
        rp->min = rp->max = (uint16_t)prng_range(p, 1, 4);
        snprintf(rp->quant, sizeof(rp->quant), "{%u}", rp->min);
    } else {
        rp->min = (uint16_t)prng_range(p, 0, 3);
        rp->max = (uint16_t)prng_range(p, rp->min + 1u, rp->min + 5u);
        snprintf(rp->quant, sizeof(rp->quant), "{%u,%u}", rp->min, rp->max);
    }
}

static void gen_regex_literal_piece(prng *p, re_piece *rp, size_t min_len, bool anchor)
{
    const char *w = pick_word_min(p, min_len);
    size_t wl = strlen(w);
    size_t flen = prng_chance(p, 70) ? wl : prng_range(p, (uint32_t)min_len, (uint32_t)wl);
    size_t off = prng_below(p, (uint32_t)(wl - flen + 1));
    rp->type = RP_LIT;
    memcpy(rp->lit, w + off, flen);
    rp->nlit = (uint8_t)flen;
    if (prng_chance(p, 8) && rp->nlit < sizeof(rp->lit))
        rp->lit[rp->nlit++] = (uint8_t)separators[prng_below(p, 9)][0];
    if (prng_chance(p, 8) && rp->nlit < sizeof(rp->lit)) {
        static const char meta[] = ".+*?()[]{}|^$/-";
        rp->lit[rp->nlit++] = (uint8_t)meta[prng_below(p, sizeof(meta) - 1)];
    }
    rp->min = rp->max = 1;
    rp->quant[0] = '\0';
    if (!anchor) {
        uint32_t r = prng_below(p, 100);
        if (r < 20) {
            rp->min = 0;
            strcpy(rp->quant, "?");
        } else if (r < 30) {
            rp->max = 2;
            strcpy(rp->quant, "{1,2}");
        }
    }
}

static void gen_regex_string(prng *p, gen_string *s)
{
    s->nre = prng_range(p, 1, 4);
    size_t anchor = prng_below(p, (uint32_t)s->nre);
    for (size_t i = 0; i < s->nre; i++) {
        re_piece *rp = &s->re[i];
        memset(rp, 0, sizeof(*rp));
        uint32_t r = prng_below(p, 100);
        if (i == anchor) {
            gen_regex_literal_piece(p, rp, 3, true);
        } else if (r < 45) {
            rp->type = RP_CLASS;
            rp->cls = (uint8_t)prng_below(p, COUNT_OF(re_classes));
            gen_repeat(p, rp, re_classes[rp->cls].bounded);
        } else if (r < 70) {
            rp->type = RP_ALT;
            rp->nalt = (uint8_t)prng_range(p, 2, 3);
            for (unsigned a = 0; a < rp->nalt; a++) {
                rp->alts[a] = pick_word(p);
                rp->alt_cls[a] = 0xff;
                if (prng_chance(p, 25)) {
                    rp->alt_cls[a] = (uint8_t)prng_below(p, COUNT_OF(re_classes));
                    rp->alt_rep[a] = (uint8_t)prng_range(p, 1, 3);
                }
            }
            rp->min = rp->max = 1;
            uint32_t q = prng_below(p, 100);
            if (q < 25) {
                rp->min = 0;
                strcpy(rp->quant, "?");
            } else if (q < 35) {
                rp->max = 2;
                strcpy(rp->quant, "{1,2}");
            }
        } else {
            gen_regex_literal_piece(p, rp, 2, false);
        }
    }
    s->re_i = prng_chance(p, 20);
    s->re_s = prng_chance(p, 15);
    s->mods = 0;
    if (prng_chance(p, 12))
        s->mods |= M_NOCASE;
    if (prng_chance(p, 10))
        s->mods |= M_ASCII;
    if (prng_chance(p, 10))
        s->mods |= M_PRIVATE;
    s->countable = false;
}

/* Writes one hex byte token: `4D`, `??`, `4?` or `?D`. */
static void put_hex_byte(dbuf *out, bool upper, uint8_t value, uint8_t mask)
{
    if (mask == 0x00)
        dbuf_puts(out, "??");
    else if (mask == 0xf0)
        dbuf_printf(out, upper ? "%X?" : "%x?", value >> 4);
    else if (mask == 0x0f)
        dbuf_printf(out, upper ? "?%X" : "?%x", value & 0x0f);
    else
        dbuf_printf(out, upper ? "%02X" : "%02x", value);
}

/* True when s is a hex string with two or more bounded jumps of variable length. */
static bool hex_has_two_variable_jumps(const gen_string *s)
{
    unsigned variable = 0;
    for (size_t i = 0; s->kind == KIND_HEX && i < s->nhex; i++) {
        const hex_tok *t = &s->hex[i];
        variable += t->type == HX_JUMP && t->lo != t->hi && t->hi != 0xff;
    }
    return variable >= 2;
}

/* One masked hex byte as a regex atom: `\x4d`, `[\x40-\x4f]`, `[\x0d\x1d...]`, `[\x00-\xff]`. */
static void put_regex_byte(dbuf *out, uint8_t value, uint8_t mask)
{
    if (mask == 0xff) {
        dbuf_printf(out, "\\x%02x", value);
    } else if (mask == 0x00) {
        dbuf_puts(out, "[\\x00-\\xff]");
    } else if (mask == 0xf0) {
        dbuf_printf(out, "[\\x%02x-\\x%02x]", value, value | 0x0f);
    } else {
        dbuf_putc(out, '[');
        for (unsigned hi = 0; hi < 16; hi++)
            dbuf_printf(out, "\\x%02x", (hi << 4) | value);
        dbuf_putc(out, ']');
    }
}

/*
 * Writes hex string s as the equivalent regular expression, for libyara only. libyara 4.2 runs
 * hex strings without alternatives through yr_re_fast_exec(), which misses matches when a hex
 * string has two variable jumps and a dead-end candidate position coincides with a live one
 * (upstream VirusTotal/yara#2065, fixed after 4.2; e.g. { 49 6E [5-15] 6F [1-10] 6B 65 } on
 * "InXXXXXoXoke", or { 42 [4-13] ?? 70 [0-16] 61 73 73 } on "BypassBypass"). Its general regex
 * engine has no such bug, so libyara gets the same pattern written as a regex. Jumps here are
 * bounded and short, so YR_RE_SCAN_LIMIT does not matter.
 */
static void put_hex_as_regex(const gen_string *s, dbuf *out)
{
    dbuf_putc(out, '/');
    for (size_t i = 0; i < s->nhex; i++) {
        const hex_tok *t = &s->hex[i];
        if (t->type == HX_JUMP) {
            assert_true(t->hi != 0xff);
            if (t->lo == t->hi)
                dbuf_printf(out, "[\\x00-\\xff]{%u}", t->lo);
            else
                dbuf_printf(out, "[\\x00-\\xff]{%u,%u}", t->lo, t->hi);
        } else if (t->type == HX_ALT) {
            dbuf_putc(out, '(');
            for (unsigned a = 0; a < t->nalt; a++) {
                if (a > 0)
                    dbuf_putc(out, '|');
                for (unsigned k = 0; k < t->alt_len[a]; k++)
                    put_regex_byte(out, t->alt_value[a][k], t->alt_mask[a][k]);
            }
            dbuf_putc(out, ')');
        } else {
            put_regex_byte(out, t->value, t->mask);
        }
    }
    dbuf_putc(out, '/');
    if (s->mods & M_PRIVATE)
        dbuf_puts(out, " private");
}

/* Writes string s as it appears after `$name = `. */
static void put_string_source(prng *p, const gen_string *s, dbuf *out)
{
    switch (s->kind) {
    case KIND_TEXT:
        put_text_literal(p, out, s->bytes, s->nbytes);
        break;
    case KIND_HEX: {
        bool upper = prng_chance(p, 80);
        bool compact = prng_chance(p, 10); /* `{4D5A??90}`: YARA needs no spaces */
        dbuf_puts(out, compact ? "{" : "{ ");
        for (size_t i = 0; i < s->nhex; i++) {
            const hex_tok *t = &s->hex[i];
            if (t->type == HX_JUMP) {
                if (t->hi == 0xff)
                    dbuf_printf(out, "[%u-]", t->lo);
                else if (t->lo == t->hi && (t->lo & 3) != 0)
                    dbuf_printf(out, "[%u]", t->lo);
                else if (t->lo == t->hi)
                    dbuf_printf(out, "[%u-%u]", t->lo, t->hi);
                else
                    dbuf_printf(out, "[%u-%u]", t->lo, t->hi);
            } else if (t->type == HX_ALT) {
                dbuf_puts(out, "(");
                for (unsigned a = 0; a < t->nalt; a++) {
                    dbuf_puts(out, a ? " | " : " ");
                    for (unsigned k = 0; k < t->alt_len[a]; k++) {
                        if (k > 0)
                            dbuf_putc(out, ' ');
                        put_hex_byte(out, upper, t->alt_value[a][k], t->alt_mask[a][k]);
                    }
                }
                dbuf_puts(out, " )");
            } else {
                put_hex_byte(out, upper, t->value, t->mask);
            }
            if (!compact)
                dbuf_putc(out, ' ');
        }
        dbuf_putc(out, '}');
        break;
    }
    case KIND_REGEX:
        dbuf_putc(out, '/');
        for (size_t i = 0; i < s->nre; i++) {
            const re_piece *rp = &s->re[i];
            if (rp->type == RP_LIT) {
                bool group = rp->quant[0] != '\0' && rp->nlit > 1;
                if (group)
                    dbuf_putc(out, '(');
                put_regex_literal(out, rp->lit, rp->nlit);
                if (group)
                    dbuf_putc(out, ')');
            } else if (rp->type == RP_CLASS) {
                dbuf_puts(out, re_classes[rp->cls].src);
            } else {
                dbuf_putc(out, '(');
                for (unsigned a = 0; a < rp->nalt; a++) {
                    if (a > 0)
                        dbuf_putc(out, '|');
                    put_regex_literal(out, (const uint8_t *)rp->alts[a], strlen(rp->alts[a]));
                    if (rp->alt_cls[a] != 0xff)
                        dbuf_printf(out, "%s{%u}", re_classes[rp->alt_cls[a]].src, rp->alt_rep[a]);
                }
                dbuf_putc(out, ')');
            }
            dbuf_puts(out, rp->quant);
        }
        dbuf_putc(out, '/');
        if (s->re_i)
            dbuf_putc(out, 'i');
        if (s->re_s)
            dbuf_putc(out, 's');
        break;
    default:
        fail();
    }

    /* Modifiers, in random order. */
    const char *mods[5];
    size_t nmods = 0;
    if (s->mods & M_NOCASE)
        mods[nmods++] = "nocase";
    if (s->mods & M_ASCII)
        mods[nmods++] = "ascii";
    if (s->mods & M_WIDE)
        mods[nmods++] = "wide";
    if (s->mods & M_FULLWORD)
        mods[nmods++] = "fullword";
    if (s->mods & M_PRIVATE)
        mods[nmods++] = "private";
    for (size_t i = nmods; i > 1; i--) {
        size_t j = prng_below(p, (uint32_t)i);
        const char *tmp = mods[i - 1];
        mods[i - 1] = mods[j];
        mods[j] = tmp;
    }
    for (size_t i = 0; i < nmods; i++) {
        dbuf_putc(out, ' ');
        dbuf_puts(out, mods[i]);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Condition generation. Every string must end up referenced (YARA rejects unused strings).    */

/* `filesize OP N`, with limits that split the buffer sizes used here (`==`, `!=` rarely). */
static void put_filesize_cmp(prng *p, dbuf *out)
{
    uint32_t o = prng_below(p, 100);
    const char *op = o < 24   ? "<"
                     : o < 48 ? "<="
                     : o < 72 ? ">"
                     : o < 96 ? ">="
                     : o < 98 ? "=="
                              : "!=";
    uint32_t r = prng_below(p, 100);
    if (r < 40)
        dbuf_printf(out, "filesize %s %uKB", op, prng_range(p, 1, 4));
    else if (r < 50)
        dbuf_printf(out, "filesize %s 1MB", op);
    else
        dbuf_printf(out, "filesize %s %u", op, prng_range(p, 8, 4096));
}

/* Writes `quantifier of (set)` over a random subset of the strings, using `$p*` wildcards. */
static void put_of_set(prng *p, const gen_rule *r, dbuf *out, uint32_t *refs)
{
    uint32_t members = 0;
    dbuf items = {0};
    size_t nitems = 0;
    static const char prefixes[] = "abc";
    for (size_t k = 0; k < 3; k++) {
        uint32_t with_prefix = 0;
        for (unsigned i = 0; i < r->nstrings; i++)
            if (r->strings[i].name[0] == prefixes[k])
                with_prefix |= 1u << i;
        if (with_prefix != 0 && prng_chance(p, 35)) {
            dbuf_printf(&items, "%s$%c*", nitems ? ", " : "", prefixes[k]);
            nitems++;
            members |= with_prefix;
        }
    }
    for (unsigned i = 0; i < r->nstrings; i++) {
        if (!(members & (1u << i)) && prng_chance(p, 40)) {
            dbuf_printf(&items, "%s$%s", nitems ? ", " : "", r->strings[i].name);
            nitems++;
            members |= 1u << i;
        }
    }
    if (members == 0) {
        unsigned i = prng_below(p, r->nstrings);
        dbuf_printf(&items, "$%s", r->strings[i].name);
        members = 1u << i;
    }
    unsigned count = (unsigned)__builtin_popcount(members);
    uint32_t q = prng_below(p, 100);
    if (q < 30)
        dbuf_puts(out, "any");
    else if (q < 52)
        dbuf_puts(out, "all");
    else if (q < 60)
        dbuf_puts(out, "none");
    else
        dbuf_printf(out, "%u", prng_range(p, 1, count));
    dbuf_printf(out, " of (%s)", (const char *)items.data);
    dbuf_free(&items);
    *refs |= members;
}

/* A condition leaf. */
static void gen_leaf(prng *p, const gen_rule *r, dbuf *out, uint32_t *refs)
{
    uint32_t all = r->nstrings ? (1u << r->nstrings) - 1 : 0;
    uint32_t w = prng_below(p, 100);
    if (r->nstrings == 0) {
        if (w < 94)
            put_filesize_cmp(p, out);
        else
            dbuf_puts(out, w < 97 ? "true" : "false");
        return;
    }
    unsigned i = prng_below(p, r->nstrings);
    if (w < 26) {
        dbuf_printf(out, "$%s", r->strings[i].name);
        *refs |= 1u << i;
    } else if (w < 40) {
        /* A count, on a countable string if there is one. */
        for (unsigned k = 0; k < r->nstrings && !r->strings[i].countable; k++)
            i = (i + 1) % r->nstrings;
        if (r->strings[i].countable) {
            /* Comparisons that usually depend on the count: n in a range where each op splits. */
            static const struct {
                const char *op;
                unsigned lo, hi;
            } counts[] = {{">", 0, 3},  {">=", 1, 4}, {"==", 1, 3}, {"<", 1, 3},  {"<=", 0, 2},
                          {"!=", 0, 2}, {">", 0, 1},  {"==", 0, 2}, {">", 4, 12}, {"<", 4, 12}};
            size_t k = prng_below(p, COUNT_OF(counts));
            dbuf_printf(out, "#%s %s %u", r->strings[i].name, counts[k].op,
                        prng_range(p, counts[k].lo, counts[k].hi));
        } else {
            dbuf_printf(out, "$%s", r->strings[i].name);
        }
        *refs |= 1u << i;
    } else if (w < 49) {
        dbuf_puts(out, "any of them");
        *refs = all;
    } else if (w < 56) {
        dbuf_puts(out, "all of them");
        *refs = all;
    } else if (w < 59) {
        dbuf_puts(out, "none of them");
        *refs = all;
    } else if (w < 65) {
        dbuf_printf(out, "%u of them", prng_range(p, 1, r->nstrings));
        *refs = all;
    } else if (w < 86) {
        put_of_set(p, r, out, refs);
    } else if (w < 95) {
        put_filesize_cmp(p, out);
    } else if (w < 96) {
        dbuf_puts(out, prng_chance(p, 70) ? "true" : "false");
    } else {
        dbuf_printf(out, "$%s", r->strings[i].name);
        *refs |= 1u << i;
    }
}

/* A condition; returns true when its text is already wrapped in parentheses. */
static bool gen_cond(prng *p, const gen_rule *r, unsigned depth, dbuf *out, uint32_t *refs)
{
    if (depth >= 3 || prng_chance(p, 35 + 20 * depth)) {
        gen_leaf(p, r, out, refs);
        return false;
    }
    uint32_t w = prng_below(p, 100);
    if (w < 80) {
        const char *op = w < 40 ? " and " : " or ";
        for (int side = 0; side < 2; side++) {
            dbuf sub = {0};
            bool atom = gen_cond(p, r, depth + 1, &sub, refs);
            bool paren = !atom && prng_chance(p, 70);
            dbuf_printf(out, "%s%s%s", paren ? "(" : "", (const char *)sub.data, paren ? ")" : "");
            dbuf_free(&sub);
            if (side == 0)
                dbuf_puts(out, op);
        }
        return false;
    }
    if (w < 92) {
        dbuf sub = {0};
        bool atom = gen_cond(p, r, depth + 1, &sub, refs);
        bool paren = !atom && prng_chance(p, 80);
        dbuf_printf(out, "not %s%s%s", paren ? "(" : "", (const char *)sub.data, paren ? ")" : "");
        dbuf_free(&sub);
        return false;
    }
    dbuf sub = {0};
    gen_cond(p, r, depth + 1, &sub, refs);
    dbuf_printf(out, "(%s)", (const char *)sub.data);
    dbuf_free(&sub);
    return true;
}

/* Writes the rule's condition, adding clauses for strings the random condition left unused. */
static void gen_condition(prng *p, const gen_rule *r, dbuf *out)
{
    uint32_t refs = 0;
    dbuf cond = {0};
    gen_cond(p, r, 0, &cond, &refs);
    uint32_t all = r->nstrings ? (1u << r->nstrings) - 1 : 0;
    uint32_t unused = all & ~refs;
    if (unused == 0) {
        dbuf_puts(out, (const char *)cond.data);
        dbuf_free(&cond);
        return;
    }
    dbuf list = {0};
    uint32_t form = prng_below(p, 100);
    const char *join = form < 35 ? " or " : form < 75 ? ", " : " and ";
    unsigned n = 0;
    for (unsigned i = 0; i < r->nstrings; i++) {
        if (unused & (1u << i)) {
            dbuf_printf(&list, "%s$%s", n ? join : "", r->strings[i].name);
            n++;
        }
    }
    const char *c = (const char *)cond.data;
    const char *l = (const char *)list.data;
    if (form < 35)
        dbuf_printf(out, "(%s) or %s", c, l);
    else if (form < 55)
        dbuf_printf(out, "(%s) and none of (%s)", c, l);
    else if (form < 75)
        dbuf_printf(out, "(%s) or %u of (%s)", c, prng_range(p, 1, n), l);
    else
        dbuf_printf(out, "(%s) and (%s)", c, l);
    dbuf_free(&list);
    dbuf_free(&cond);
}

static void gen_rule_strings(prng *p, gen_rule *r)
{
    static const unsigned nstr_weights[] = {0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3,
                                            3, 3, 3, 3, 4, 4, 4, 5, 6, 7, 8};
    r->nstrings = nstr_weights[prng_below(p, COUNT_OF(nstr_weights))];
    for (unsigned i = 0; i < r->nstrings; i++) {
        gen_string *s = &r->strings[i];
        memset(s, 0, sizeof(*s));
        snprintf(s->name, sizeof(s->name), "%c%u", "abc"[prng_below(p, 3)], i);
        uint32_t k = prng_below(p, 100);
        s->kind = k < 50 ? KIND_TEXT : k < 75 ? KIND_HEX : KIND_REGEX;
        if (s->kind == KIND_TEXT)
            gen_text_string(p, s);
        else if (s->kind == KIND_HEX)
            gen_hex_string(p, s);
        else
            gen_regex_string(p, s);
    }
}

/* Writes rule r to the engine's text and to libyara's (which differ only as put_hex_as_regex()
 * says). */
static void gen_rule_text(prng *p, const gen_rule *r, size_t index, dbuf *out, dbuf *yout)
{
    dbuf_printf(out, "rule r%04zu\n{\n", index);
    dbuf_printf(yout, "rule r%04zu\n{\n", index);
    if (r->nstrings > 0) {
        dbuf_puts(out, "    strings:\n");
        dbuf_puts(yout, "    strings:\n");
        for (unsigned i = 0; i < r->nstrings; i++) {
            dbuf line = {0};
            dbuf_printf(&line, "        $%s = ", r->strings[i].name);
            size_t prefix = line.len;
            put_string_source(p, &r->strings[i], &line);
            dbuf_put(yout, line.data, prefix);
            if (hex_has_two_variable_jumps(&r->strings[i]))
                put_hex_as_regex(&r->strings[i], yout);
            else
                dbuf_puts(yout, (const char *)line.data + prefix);
            dbuf_puts(out, (const char *)line.data);
            if (prng_chance(p, 5)) {
                dbuf_puts(out, " // \"not a string\" { 4D } /x/");
                dbuf_puts(yout, " // \"not a string\" { 4D } /x/");
            }
            dbuf_putc(out, '\n');
            dbuf_putc(yout, '\n');
            dbuf_free(&line);
        }
    }
    if (prng_chance(p, 5)) {
        dbuf_puts(out, "    /* $z0 = \"commented out\"\n       condition: true */\n");
        dbuf_puts(yout, "    /* $z0 = \"commented out\"\n       condition: true */\n");
    }
    dbuf cond = {0};
    gen_condition(p, r, &cond);
    dbuf_printf(out, "    condition:\n        %s\n}\n\n", (const char *)cond.data);
    dbuf_printf(yout, "    condition:\n        %s\n}\n\n", (const char *)cond.data);
    dbuf_free(&cond);
}

/* ------------------------------------------------------------------------------------------ */
/* Buffer generation.                                                                          */

static void put_maybe_wide(dbuf *out, const uint8_t *s, size_t n, bool wide)
{
    for (size_t i = 0; i < n; i++) {
        dbuf_putc(out, s[i]);
        if (wide)
            dbuf_putc(out, 0);
    }
}

/*
 * Flips the case of an ASCII letter half of the time. Latin-1 letters (0xC0-0xFE) are flipped
 * too, less often: `nocase` folds ASCII only, so such a flip must make both sides miss.
 */
static uint8_t flip_case(prng *p, uint8_t c)
{
    if (c < 0x80 && isalpha(c) && prng_chance(p, 50))
        return (uint8_t)(c ^ 0x20);
    if (c >= 0xc0 && c != 0xd7 && c != 0xdf && c != 0xf7 && c != 0xff && prng_chance(p, 30))
        return (uint8_t)(c ^ 0x20);
    return c;
}

/*
 * What one buffer is made of: a few words of the vocabulary and a few machine-code tokens, so
 * that a rule on one word matches some buffers and not others.
 */
typedef struct buf_style {
    const char *words[12];
    size_t nwords;
    const byte_token *tokens[6];
    size_t ntokens;
} buf_style;

static void pick_style(prng *p, buf_style *st)
{
    st->nwords = prng_range(p, 3, COUNT_OF(st->words));
    for (size_t i = 0; i < st->nwords; i++)
        st->words[i] = pick_word(p);
    st->ntokens = prng_range(p, 2, COUNT_OF(st->tokens));
    for (size_t i = 0; i < st->ntokens; i++)
        st->tokens[i] = &binary_tokens[prng_below(p, COUNT_OF(binary_tokens))];
}

/* A word of the buffer's vocabulary with a random case change. */
static void put_word(prng *p, const buf_style *st, dbuf *out, bool wide)
{
    const char *w = st->words[prng_below(p, (uint32_t)st->nwords)];
    uint8_t tmp[32];
    size_t n = strlen(w);
    uint32_t mode = prng_below(p, 100);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)w[i];
        if (mode >= 60 && mode < 75)
            c = (uint8_t)tolower(c);
        else if (mode >= 75 && mode < 90)
            c = (uint8_t)toupper(c);
        else if (mode >= 90)
            c = flip_case(p, c);
        tmp[i] = c;
    }
    put_maybe_wide(out, tmp, n, wide);
}

static void put_separator(prng *p, dbuf *out, bool wide)
{
    const char *s = separators[prng_below(p, COUNT_OF(separators))];
    put_maybe_wide(out, (const uint8_t *)s, strlen(s), wide);
}

/*
 * Appends bytes that string s matches: wildcards, jumps and classes filled at random, letters
 * flipped under nocase, the wide form when s allows it and want_wide asks for it. A fullword
 * string is usually framed by non-alphanumeric bytes (sometimes not, so the boundary check is
 * exercised both ways).
 */
static void put_sample(prng *p, const gen_string *s, bool want_wide, dbuf *out)
{
    dbuf raw = {0};
    bool nocase = (s->mods & M_NOCASE) || s->re_i;
    if (s->kind == KIND_TEXT) {
        for (size_t i = 0; i < s->nbytes; i++)
            dbuf_putc(&raw, nocase ? flip_case(p, s->bytes[i]) : s->bytes[i]);
    } else if (s->kind == KIND_HEX) {
        for (size_t i = 0; i < s->nhex; i++) {
            const hex_tok *t = &s->hex[i];
            if (t->type == HX_BYTE) {
                dbuf_putc(&raw, (uint8_t)((prng_below(p, 256) & ~t->mask) | t->value));
            } else if (t->type == HX_JUMP) {
                unsigned hi = t->hi == 0xff ? t->lo + 40u : t->hi;
                unsigned n = prng_range(p, t->lo, hi);
                for (unsigned k = 0; k < n; k++)
                    dbuf_putc(&raw, prng_chance(p, 50) ? (uint8_t)prng_below(p, 256) : 0x41);
            } else {
                unsigned a = prng_below(p, t->nalt);
                for (unsigned k = 0; k < t->alt_len[a]; k++)
                    dbuf_putc(&raw, (uint8_t)((prng_below(p, 256) & ~t->alt_mask[a][k]) |
                                              t->alt_value[a][k]));
            }
        }
    } else {
        for (size_t i = 0; i < s->nre; i++) {
            const re_piece *rp = &s->re[i];
            unsigned max = rp->max == 0xffff ? rp->min + 5u : rp->max;
            unsigned reps = prng_range(p, rp->min, max);
            for (unsigned k = 0; k < reps; k++) {
                if (rp->type == RP_LIT) {
                    for (size_t j = 0; j < rp->nlit; j++)
                        dbuf_putc(&raw, nocase ? flip_case(p, rp->lit[j]) : rp->lit[j]);
                } else if (rp->type == RP_CLASS) {
                    const char *m = re_classes[rp->cls].members;
                    uint8_t c = (uint8_t)m[prng_below(p, (uint32_t)strlen(m))];
                    if (s->re_s && re_classes[rp->cls].src[0] == '.' && prng_chance(p, 20))
                        c = '\n';
                    dbuf_putc(&raw, c);
                } else {
                    unsigned a = prng_below(p, rp->nalt);
                    const char *w = rp->alts[a];
                    for (size_t j = 0; w[j] != '\0'; j++)
                        dbuf_putc(&raw, nocase ? flip_case(p, (uint8_t)w[j]) : (uint8_t)w[j]);
                    if (rp->alt_cls[a] != 0xff) {
                        const char *m = re_classes[rp->alt_cls[a]].members;
                        for (unsigned j = 0; j < rp->alt_rep[a]; j++)
                            dbuf_putc(&raw, (uint8_t)m[prng_below(p, (uint32_t)strlen(m))]);
                    }
                }
            }
        }
    }

    bool wide = false;
    if (s->kind == KIND_TEXT && (s->mods & M_WIDE)) {
        bool can_ascii = (s->mods & M_ASCII) != 0;
        wide = !can_ascii || (want_wide ? prng_chance(p, 85) : prng_chance(p, 30));
    }
    bool frame = (s->mods & M_FULLWORD) && prng_chance(p, 70);
    if (frame) {
        const char *b = word_breaks[prng_below(p, COUNT_OF(word_breaks))];
        put_maybe_wide(out, (const uint8_t *)b, strlen(b), wide);
    }
    put_maybe_wide(out, raw.data, raw.len, wide);
    if (frame) {
        const char *b = word_breaks[prng_below(p, COUNT_OF(word_breaks))];
        put_maybe_wide(out, (const uint8_t *)b, strlen(b), wide);
    }
    dbuf_free(&raw);
}

static size_t pick_buffer_size(prng *p)
{
    uint32_t r = prng_below(p, 100);
    if (r < 3)
        return 0;
    if (r < 12)
        return prng_range(p, 1, 32);
    if (r < 50)
        return prng_range(p, 33, 512);
    if (r < 85)
        return prng_range(p, 513, 2048);
    return prng_range(p, 2049, DIFF_MAX_BUFFER - 1024);
}

/* Filler for one step of a buffer of the given kind. */
static void put_filler(prng *p, const buf_style *st, unsigned kind, dbuf *out)
{
    uint32_t r = prng_below(p, 100);
    if (kind == BUF_TEXT || kind == BUF_UTF16) {
        bool wide = kind == BUF_UTF16;
        if (r < 75) {
            put_word(p, st, out, wide);
            put_separator(p, out, wide);
        } else if (r < 85) {
            char digits[16];
            snprintf(digits, sizeof(digits), "%u", prng_below(p, 100000));
            put_maybe_wide(out, (const uint8_t *)digits, strlen(digits), wide);
        } else if (r < 92) {
            put_separator(p, out, wide);
        } else if (r < 96) {
            put_word(p, st, out, !wide); /* the other encoding, mixed in */
        } else if (r < 98) {
            dbuf_putc(out, (uint8_t)prng_range(p, 0x20, 0x7e)); /* shifts the UTF-16 alignment */
        } else {
            unsigned n = prng_range(p, 1, 8);
            for (unsigned i = 0; i < n; i++)
                dbuf_putc(out, (uint8_t)prng_below(p, 256));
        }
        return;
    }
    if (r < 45) {
        unsigned n = prng_range(p, 1, 24);
        for (unsigned i = 0; i < n; i++)
            dbuf_putc(out, (uint8_t)prng_below(p, 256));
    } else if (r < 70) {
        const byte_token *t = st->tokens[prng_below(p, (uint32_t)st->ntokens)];
        dbuf_put(out, t->bytes, t->len);
    } else if (r < 80) {
        put_word(p, st, out, false);
    } else if (r < 85) {
        put_word(p, st, out, true);
    } else if (r < 95) {
        unsigned n = prng_range(p, 1, 16);
        for (unsigned i = 0; i < n; i++)
            dbuf_putc(out, 0);
    } else {
        put_separator(p, out, false);
    }
}

typedef struct plant {
    uint32_t rule;
    uint32_t string;
} plant;

static void gen_buffer_bytes(prng *p, const gen_rule *rules, size_t nrules, unsigned kind,
                             dbuf *out)
{
    size_t target = pick_buffer_size(p);
    buf_style st;
    pick_style(p, &st);
    plant pending[4 * DIFF_MAX_STRINGS * 4];
    size_t npending = 0;
    unsigned nfocus = target == 0 ? 0 : prng_range(p, 1, 4);
    for (unsigned f = 0; f < nfocus; f++) {
        uint32_t ri = prng_below(p, (uint32_t)nrules);
        for (unsigned i = 0; i < rules[ri].nstrings; i++) {
            if (!prng_chance(p, 75))
                continue;
            unsigned copies = 1;
            if (rules[ri].strings[i].countable && prng_chance(p, 30))
                copies += prng_range(p, 1, 3);
            for (unsigned k = 0; k < copies; k++)
                pending[npending++] = (plant){ri, i};
        }
    }
    bool want_wide = kind == BUF_UTF16;
    while (out->len < target) {
        if (npending > 0 && prng_chance(p, 20)) {
            size_t k = prng_below(p, (uint32_t)npending);
            const plant pl = pending[k];
            pending[k] = pending[--npending];
            const gen_string *gs = &rules[pl.rule].strings[pl.string];
            put_sample(p, gs, want_wide, out);
            if (gs->countable && prng_chance(p, 25))
                put_sample(p, gs, want_wide, out); /* back to back: periodic strings overlap */
        } else if (prng_chance(p, 3)) {
            const gen_rule *r = &rules[prng_below(p, (uint32_t)nrules)];
            if (r->nstrings > 0)
                put_sample(p, &r->strings[prng_below(p, r->nstrings)], want_wide, out);
        } else {
            put_filler(p, &st, kind, out);
        }
    }
    for (size_t k = 0; k < npending && out->len + 512 < DIFF_MAX_BUFFER; k++) {
        if (prng_chance(p, 60)) {
            if (prng_chance(p, 50))
                put_filler(p, &st, kind, out);
            put_sample(p, &rules[pending[k].rule].strings[pending[k].string], want_wide, out);
        }
    }
    if (out->len > DIFF_MAX_BUFFER)
        out->len = DIFF_MAX_BUFFER;
}

/* Builds the generated corpus: nrules rules and nbufs buffers from the seed. */
static void gen_corpus(uint64_t seed, size_t nrules, size_t nbufs, corpus *c)
{
    prng p = {seed};
    gen_rule *rules = calloc(nrules, sizeof(*rules));
    assert_non_null(rules);
    dbuf_puts(&c->text, "/* generated by tests/engine/test_yara_diff.c */\n\n");
    dbuf_puts(&c->yara_text,
              "/* generated by tests/engine/test_yara_diff.c, libyara's copy */\n\n");
    for (size_t i = 0; i < nrules; i++) {
        gen_rule_strings(&p, &rules[i]);
        dbuf rule = {0}, yrule = {0};
        gen_rule_text(&p, &rules[i], i, &rule, &yrule);
        corpus_add_rule(c, &rule, &yrule);
        dbuf_free(&rule);
        dbuf_free(&yrule);
    }
    for (size_t i = 0; i < nbufs; i++) {
        dbuf b = {0};
        unsigned kind = (unsigned)(i % 3);
        gen_buffer_bytes(&p, rules, nrules, kind, &b);
        corpus_add_buffer(c, &b, kind);
    }
    free(rules);
}

/* ------------------------------------------------------------------------------------------ */
/* The comparison harness: the same rules in libyara and the engine, scanned buffer by buffer. */

typedef struct harness {
    const corpus *c;
    YR_RULES *yrules;
    engine_rules *erules;
    engine_scratch *scratch;
    engine_config cfg;
    uint8_t *yhit;
    uint8_t *ehit;
    size_t *rule_hits;  /* buffers each rule matched in libyara */
    size_t *rule_diffs; /* buffers on which each rule differs */
    size_t yara_matches;
    size_t engine_matches;
    size_t diff_buffers;
    size_t diff_pairs;
    size_t details;
    uint8_t *string_seen; /* per libyara string index: matched in some buffer */
    size_t nstrings;
    unsigned yara_errors;
    unsigned yara_warnings;
    bool yara_bad_name;
    bool yara_too_many;
} harness;

/* Rule index from a name "rNNNN", or SIZE_MAX. */
static size_t rule_index(const char *name, size_t nrules)
{
    if (name == NULL || name[0] != 'r' || !isdigit((unsigned char)name[1]))
        return SIZE_MAX;
    char *end;
    unsigned long v = strtoul(name + 1, &end, 10);
    if (*end != '\0' || v >= nrules)
        return SIZE_MAX;
    return (size_t)v;
}

/* Prints line `line` (1-based) of text, for compile errors. */
static void print_text_line(const char *text, unsigned line)
{
    const char *s = text;
    for (unsigned i = 1; i < line && s != NULL; i++) {
        s = strchr(s, '\n');
        if (s != NULL)
            s++;
    }
    if (s == NULL || line == 0)
        return;
    const char *e = strchr(s, '\n');
    int n = e ? (int)(e - s) : (int)strlen(s);
    printf("    | %.*s\n", n, s);
}

static void yara_compiler_report(int error_level, const char *file_name, int line_number,
                                 const YR_RULE *rule, const char *message, void *user_data)
{
    (void)rule;
    harness *h = user_data;
    if (error_level == YARA_ERROR_LEVEL_ERROR) {
        printf("libyara: %s:%d: %s\n", file_name ? file_name : "diff.yar", line_number, message);
        print_text_line((const char *)h->c->yara_text.data, (unsigned)line_number);
        h->yara_errors++;
    } else {
        h->yara_warnings++;
    }
}

/* libyara scan callback: marks matching rules. Never fails the test from inside libyara. */
static int yara_collect(YR_SCAN_CONTEXT *context, int message, void *message_data, void *user_data)
{
    harness *h = user_data;
    if (message == CALLBACK_MSG_RULE_MATCHING || message == CALLBACK_MSG_RULE_NOT_MATCHING) {
        /* Statistics only: which strings matched somewhere (chain parts other than the head
         * never hold confirmed matches, so they are left out). */
        const YR_RULE *rule = message_data;
        const YR_STRING *string;
        yr_rule_strings_foreach(rule, string)
        {
            if (string->chained_to == NULL && string->idx < h->nstrings &&
                context->matches[string->idx].head != NULL)
                h->string_seen[string->idx] = 1;
        }
    }
    if (message == CALLBACK_MSG_RULE_MATCHING) {
        const YR_RULE *rule = message_data;
        size_t i = rule_index(rule->identifier, h->c->nrules);
        if (i == SIZE_MAX)
            h->yara_bad_name = true;
        else
            h->yhit[i] = 1;
    } else if (message == CALLBACK_MSG_TOO_MANY_MATCHES) {
        h->yara_too_many = true;
    }
    return CALLBACK_CONTINUE;
}

static void harness_open(harness *h, const corpus *c)
{
    memset(h, 0, sizeof(*h));
    h->c = c;
    h->yhit = calloc(c->nrules, 1);
    h->ehit = calloc(c->nrules, 1);
    h->rule_hits = calloc(c->nrules, sizeof(size_t));
    h->rule_diffs = calloc(c->nrules, sizeof(size_t));
    assert_non_null(h->yhit);
    assert_non_null(h->ehit);
    assert_non_null(h->rule_hits);
    assert_non_null(h->rule_diffs);
    const char *text = (const char *)c->text.data;
    const char *ytext = (const char *)c->yara_text.data;

    assert_int_equal(yr_initialize(), ERROR_SUCCESS);
    YR_COMPILER *compiler = NULL;
    assert_int_equal(yr_compiler_create(&compiler), ERROR_SUCCESS);
    yr_compiler_set_callback(compiler, yara_compiler_report, h);
    int errors = yr_compiler_add_string(compiler, ytext, NULL);
    if (errors == 0)
        assert_int_equal(yr_compiler_get_rules(compiler, &h->yrules), ERROR_SUCCESS);
    yr_compiler_destroy(compiler);
    if (errors != 0)
        fail_msg("libyara rejected the rule set (%d errors): the generator left the subset",
                 errors);
    h->nstrings = h->yrules->num_strings;
    h->string_seen = calloc(h->nstrings + 1, 1);
    assert_non_null(h->string_seen);

    engine_diag diag;
    memset(&diag, 0, sizeof(diag));
    int rc = engine_rules_compile_string(text, "diff.yar", NULL, &h->erules, &diag);
    if (rc != 0) {
        printf("engine: %s (%s)\n", diag.text, engine_err_name(rc));
        print_text_line(text, diag.line);
        fail_msg("the engine rejected a rule set libyara accepts");
    }
    assert_int_equal(engine_rules_count(h->erules), c->nrules);
    for (size_t i = 0; i < c->nrules; i++)
        assert_int_equal(rule_index(engine_rules_name(h->erules, i), c->nrules), i);
    assert_int_equal(engine_scratch_create(h->erules, &h->scratch), 0);

    engine_config_init(&h->cfg);
    h->cfg.narrow_utf16 = false;
    h->cfg.normalize = false;
    h->cfg.decode_base64 = false;
    h->cfg.scan_archives = false;
    h->cfg.scan_packages = false;
    h->cfg.scan_office = false;
    h->cfg.max_scan_time_ms = 600000; /* a sanitizer build on a busy machine must not hit it */
}

static void harness_close(harness *h)
{
    engine_scratch_destroy(h->scratch);
    engine_rules_unref(h->erules);
    if (h->yrules != NULL)
        yr_rules_destroy(h->yrules);
    assert_int_equal(yr_finalize(), ERROR_SUCCESS);
    free(h->yhit);
    free(h->ehit);
    free(h->rule_hits);
    free(h->rule_diffs);
    free(h->string_seen);
    memset(h, 0, sizeof(*h));
}

/* Prints len bytes of rule text, each line indented. */
static void print_indented(const char *text, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(text, '\n', len);
        size_t n = nl ? (size_t)(nl - text) + 1 : len;
        if (n > 1)
            printf("      %.*s", (int)n, text);
        text += n;
        len -= n;
    }
    printf("\n");
}

static void hex_dump(const uint8_t *data, size_t len)
{
    size_t n = len < 256 ? len : 256;
    for (size_t off = 0; off < n; off += 16) {
        char line[128];
        int pos = snprintf(line, sizeof(line), "      %04zx ", off);
        for (size_t j = 0; j < 16; j++) {
            if (off + j < n)
                pos += snprintf(line + pos, sizeof(line) - (size_t)pos, " %02x", data[off + j]);
            else
                pos += snprintf(line + pos, sizeof(line) - (size_t)pos, "   ");
        }
        pos += snprintf(line + pos, sizeof(line) - (size_t)pos, "  |");
        for (size_t j = 0; j < 16 && off + j < n; j++) {
            uint8_t ch = data[off + j];
            line[pos++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '.';
        }
        snprintf(line + pos, sizeof(line) - (size_t)pos, "|");
        printf("%s\n", line);
    }
    if (len > n)
        printf("      ... %zu more bytes\n", len - n);
}

/* Scans buffer bi with both, compares the matched-rule sets and reports any difference. */
static void harness_scan(harness *h, size_t bi)
{
    static const uint8_t empty[1] = {0};
    const gen_buffer *b = &h->c->bufs[bi];
    const uint8_t *data = b->len > 0 ? b->data : empty;
    size_t nrules = h->c->nrules;
    memset(h->yhit, 0, nrules);
    memset(h->ehit, 0, nrules);

    int yrc =
        yr_rules_scan_mem(h->yrules, data, b->len,
                          SCAN_FLAGS_REPORT_RULES_MATCHING | SCAN_FLAGS_REPORT_RULES_NOT_MATCHING,
                          yara_collect, h, 0);
    assert_int_equal(yrc, ERROR_SUCCESS);
    assert_false(h->yara_bad_name);
    assert_false(h->yara_too_many);

    engine_result res;
    memset(&res, 0, sizeof(res));
    int rc = engine_scan_buffer(h->erules, h->scratch, &h->cfg, data, b->len, NULL, 0, &res);
    assert_int_equal(rc, 0);
    bool limited = res.verdict == ENGINE_VERDICT_LIMIT || res.verdict == ENGINE_VERDICT_ERROR;
    if (limited)
        printf("buffer %zu: engine verdict %s (%s)\n", bi, engine_verdict_name(res.verdict),
               res.reason ? res.reason : "no reason");
    size_t bad_names = 0, duplicates = 0;
    for (size_t i = 0; i < res.match_count; i++) {
        size_t ri = rule_index(res.matches[i].rule, nrules);
        if (ri == SIZE_MAX)
            bad_names++;
        else if (h->ehit[ri]++)
            duplicates++;
    }
    engine_result_cleanup(&res);
    assert_false(limited);
    assert_int_equal(bad_names, 0);
    assert_int_equal(duplicates, 0);

    size_t ndiff = 0;
    for (size_t i = 0; i < nrules; i++) {
        h->yara_matches += h->yhit[i];
        h->engine_matches += h->ehit[i];
        h->rule_hits[i] += h->yhit[i];
        if (h->yhit[i] != h->ehit[i]) {
            h->rule_diffs[i]++;
            ndiff++;
        }
    }
    if (ndiff == 0)
        return;
    h->diff_buffers++;
    h->diff_pairs += ndiff;
    if (h->details++ >= DIFF_MAX_DETAILS)
        return;
    printf("DIFFERENCE on buffer %zu (%s, %zu bytes): %zu rule(s)\n", bi, buf_kind_names[b->kind],
           b->len, ndiff);
    for (size_t i = 0; i < nrules; i++) {
        if (h->yhit[i] == h->ehit[i])
            continue;
        printf("  r%04zu: libyara %s, engine %s\n", i, h->yhit[i] ? "matches" : "does not match",
               h->ehit[i] ? "matches" : "does not match");
        const rule_span *sp = &h->c->spans[i];
        print_indented((const char *)h->c->text.data + sp->off, sp->len);
        if (sp->len != sp->ylen ||
            memcmp(h->c->text.data + sp->off, h->c->yara_text.data + sp->yoff, sp->len) != 0) {
            printf("    libyara's copy:\n");
            print_indented((const char *)h->c->yara_text.data + sp->yoff, sp->ylen);
        }
    }
    hex_dump(data, b->len);
}

/* Prints the per-rule summary of differences; returns the number of rules that differ. */
static size_t harness_summary(const harness *h)
{
    size_t rules_differing = 0;
    for (size_t i = 0; i < h->c->nrules; i++) {
        if (h->rule_diffs[i] == 0)
            continue;
        if (rules_differing++ < 40)
            printf("  r%04zu differs on %zu buffer(s) (libyara matched it on %zu)\n", i,
                   h->rule_diffs[i], h->rule_hits[i]);
    }
    printf("differences: %zu buffer(s), %zu (buffer, rule) pair(s), %zu rule(s); libyara %zu "
           "matches, engine %zu\n",
           h->diff_buffers, h->diff_pairs, rules_differing, h->yara_matches, h->engine_matches);
    return rules_differing;
}

/*
 * Prints how often libyara matched: a histogram of the share of buffers each rule matched, and
 * how many strings of each kind matched at least once. Returns the rules matched at least once.
 */
static size_t print_hit_stats(const harness *h)
{
    size_t nbufs = h->c->nbufs, nrules = h->c->nrules;
    static const char *const bucket_names[] = {"never", "<1%", "1-10%", "10-50%", ">50%", "always"};
    size_t buckets[6] = {0};
    size_t matched_once = 0;
    for (size_t i = 0; i < nrules; i++) {
        size_t n = h->rule_hits[i];
        matched_once += n > 0;
        size_t k = n == 0            ? 0
                   : n == nbufs      ? 5
                   : n * 100 < nbufs ? 1
                   : n * 10 < nbufs  ? 2
                   : n * 2 < nbufs   ? 3
                                     : 4;
        buckets[k]++;
    }
    printf("hits (libyara): %zu (buffer, rule) matches; %zu of %zu rules matched at least once\n",
           h->yara_matches, matched_once, nrules);
    printf("rules by share of buffers matched:");
    for (size_t k = 0; k < COUNT_OF(buckets); k++)
        printf(" %s=%zu", bucket_names[k], buckets[k]);
    printf("\n");

    static const char *const kind_names[] = {"text", "hex", "regex"};
    size_t seen[3] = {0}, total[3] = {0};
    const YR_RULE *rule;
    yr_rules_foreach(h->yrules, rule)
    {
        const YR_STRING *string;
        yr_rule_strings_foreach(rule, string)
        {
            if (string->chained_to != NULL)
                continue;
            size_t k = STRING_IS_HEX(string) ? 1 : STRING_IS_REGEXP(string) ? 2 : 0;
            total[k]++;
            seen[k] += h->string_seen[string->idx];
        }
    }
    printf("strings matched in at least one buffer (private ones included):");
    for (size_t k = 0; k < 3; k++)
        printf(" %s %zu/%zu", kind_names[k], seen[k], total[k]);
    printf("; libyara warnings %u\n", h->yara_warnings);
    return matched_once;
}

/* ------------------------------------------------------------------------------------------ */
/* Tests.                                                                                      */

static uint64_t diff_seed(void)
{
    const char *env = getenv("AMSI_DIFF_SEED");
    if (env == NULL || *env == '\0')
        return DIFF_DEFAULT_SEED;
    char *end;
    unsigned long long v = strtoull(env, &end, 0);
    if (*end != '\0')
        fail_msg("AMSI_DIFF_SEED must be a number, got '%s'", env);
    return (uint64_t)v;
}

/* With AMSI_DIFF_DUMP=<dir>, writes the rule set and every buffer there, for reproductions. */
static void dump_corpus(const corpus *c)
{
    const char *dir = getenv("AMSI_DIFF_DUMP");
    if (dir == NULL || *dir == '\0')
        return;
    char path[4096];
    snprintf(path, sizeof(path), "%s/diff.yar", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(c->text.data, 1, c->text.len, f), c->text.len);
    assert_int_equal(fclose(f), 0);
    snprintf(path, sizeof(path), "%s/diff-libyara.yar", dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(c->yara_text.data, 1, c->yara_text.len, f), c->yara_text.len);
    assert_int_equal(fclose(f), 0);
    for (size_t i = 0; i < c->nbufs; i++) {
        snprintf(path, sizeof(path), "%s/buf%04zu.%s", dir, i, buf_kind_names[c->bufs[i].kind]);
        f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(c->bufs[i].data, 1, c->bufs[i].len, f), c->bufs[i].len);
        assert_int_equal(fclose(f), 0);
    }
    printf("wrote the rule set and %zu buffers to %s\n", c->nbufs, dir);
}

/* Counts how the generated rule set covers the subset and prints it. */
static void print_rule_stats(const corpus *c)
{
    static const char *const words[] = {
        "nocase", "ascii",    "wide",  "fullword", "private", "{ ",      " /",      "[",
        "?? ",    "-]",       " | ",   "any of",   "all of",  "none of", "of them", "of (",
        "#",      "filesize", " not ", " and ",    " or ",    "KB",      "MB"};
    const char *text = (const char *)c->text.data;
    printf("rule set: %zu rules, %zu bytes; occurrences:", c->nrules, c->text.len);
    for (size_t i = 0; i < COUNT_OF(words); i++) {
        size_t n = 0;
        for (const char *s = strstr(text, words[i]); s != NULL; s = strstr(s + 1, words[i]))
            n++;
        printf(" '%s'=%zu", words[i], n);
        assert_true(n > 0);
    }
    printf("\n");
}

static void test_generated_rules_match_like_libyara(void **state)
{
    (void)state;
    uint64_t seed = diff_seed();
    printf("seed 0x%016llx (set AMSI_DIFF_SEED to change)\n", (unsigned long long)seed);
    corpus c;
    memset(&c, 0, sizeof(c));
    gen_corpus(seed, DIFF_RULES, DIFF_BUFFERS, &c);
    assert_true(c.nrules >= 500);
    assert_true(c.nbufs >= 1000);
    print_rule_stats(&c);
    dump_corpus(&c);

    size_t kinds[3] = {0}, bytes = 0;
    for (size_t i = 0; i < c.nbufs; i++) {
        kinds[c.bufs[i].kind]++;
        bytes += c.bufs[i].len;
    }
    printf("buffers: %zu (%zu text, %zu utf16le, %zu binary), %zu bytes\n", c.nbufs, kinds[0],
           kinds[1], kinds[2], bytes);

    harness h;
    harness_open(&h, &c);
    for (size_t i = 0; i < c.nbufs; i++)
        harness_scan(&h, i);

    size_t matched_once = print_hit_stats(&h);
    size_t rules_differing = harness_summary(&h);
    size_t yara_matches = h.yara_matches;
    size_t c_nrules = c.nrules;
    harness_close(&h);
    corpus_free(&c);

    /* The comparison is only worth something if the rules actually fire. */
    assert_true(yara_matches >= 2000);
    assert_true(matched_once * 2 >= c_nrules);
    assert_int_equal(rules_differing, 0);
}

/* Hand-written cases at the edges of YARA's semantics, compared the same way. */
typedef struct edge_string {
    const char *def;
    bool countable;
    const char *yara_def; /* what libyara gets instead, when not def (see put_hex_as_regex()) */
} edge_string;

static const edge_string edge_strings[] = {
    /* fullword: isalnum() decides, so '_' and bytes >= 0x80 are boundaries. */
    {"$a = \"amsi\" fullword", true, NULL},
    {"$a = \"amsi\" nocase fullword", true, NULL},
    /* wide fullword: a neighbour blocks only as an alphanumeric byte paired with a NUL. */
    {"$a = \"amsi\" wide fullword", true, NULL},
    {"$a = \"amsi\" ascii wide nocase fullword", true, NULL},
    /* Overlapping matches all count, in both forms. */
    {"$a = \"aa\"", true, NULL},
    {"$a = \"aba\" nocase", true, NULL},
    {"$a = \"Ab\" nocase ascii wide", true, NULL},
    {"$a = \"\\x00\\x01\"", true, NULL},
    {"$a = { 41 ?? 41 }", true, NULL},
    {"$a = { 4D ?A 9? 00 }", true, NULL},
    {"$a = { 4D 5A [10-] 50 45 }", false, NULL},
    {"$a = { 61 ( 62 | 63 64 ) 65 }", false, NULL},
    /* libyara 4.2 misses these (VirusTotal/yara#2065); it gets the equivalent regexes. */
    {"$a = { 49 6E [5-15] 6F [1-10] 6B 65 }", false,
     "$a = /In[\\x00-\\xff]{5,15}o[\\x00-\\xff]{1,10}ke/"},
    {"$a = { 42 [4-13] ?? 70 [0-16] 61 73 73 }", false,
     "$a = /B[\\x00-\\xff]{4,13}[\\x00-\\xff]p[\\x00-\\xff]{0,16}ass/"},
    /* \s includes \v and \f; `.` excludes \n unless /s; negated classes under nocase. */
    {"$a = /a\\sb/", false, NULL},
    {"$a = /ab.cd/", false, NULL},
    {"$a = /ab.cd/s", false, NULL},
    {"$a = /x[^a-z]y/ nocase", false, NULL},
    {"$a = /Invoke-?\\w{2,6}/i", false, NULL},
    {"$a = /a\\x00b/", false, NULL},
    /* The engine also counts fixed-width regexes (one match per start offset, as libyara). */
    {"$a = /a[0-9]a/", true, NULL},
};

static const char *const edge_conditions[] = {
    "$a", "none of them", "#a == 1", "#a == 2", "#a == 3", "#a > 3",
};

static void add_edge_buffer(corpus *c, const void *data, size_t len)
{
    dbuf b = {0};
    dbuf_put(&b, data, len);
    corpus_add_buffer(c, &b, BUF_EDGE);
}

#define EDGE(lit)     add_edge_buffer(&c, lit, sizeof(lit) - 1)
#define EDGE_RULE_FMT "rule r%04zu\n{\n    strings:\n        %s\n    condition:\n        %s\n}\n\n"

static void test_edge_cases_match_like_libyara(void **state)
{
    (void)state;
    corpus c;
    memset(&c, 0, sizeof(c));
    size_t n = 0;
    for (size_t i = 0; i < COUNT_OF(edge_strings); i++) {
        size_t nconditions = edge_strings[i].countable ? COUNT_OF(edge_conditions) : 2;
        for (size_t k = 0; k < nconditions; k++) {
            const char *ydef =
                edge_strings[i].yara_def ? edge_strings[i].yara_def : edge_strings[i].def;
            dbuf rule = {0}, yrule = {0};
            dbuf_printf(&rule, EDGE_RULE_FMT, n, edge_strings[i].def, edge_conditions[k]);
            dbuf_printf(&yrule, EDGE_RULE_FMT, n, ydef, edge_conditions[k]);
            corpus_add_rule(&c, &rule, &yrule);
            dbuf_free(&rule);
            dbuf_free(&yrule);
            n++;
        }
    }
    static const char *const size_conditions[] = {"filesize < 1KB", "filesize <= 1KB",
                                                  "filesize == 1024", "filesize > 1MB"};
    for (size_t k = 0; k < COUNT_OF(size_conditions); k++) {
        dbuf rule = {0};
        dbuf_printf(&rule, "rule r%04zu\n{\n    condition:\n        %s\n}\n\n", n++,
                    size_conditions[k]);
        corpus_add_rule(&c, &rule, &rule);
        dbuf_free(&rule);
    }

    EDGE("");
    EDGE("amsi");
    EDGE("x_amsi_y");
    EDGE("xamsi");
    EDGE("amsix");
    EDGE("1amsi");
    EDGE("AMSI!");
    EDGE("\xc3\xa9"
         "amsi\xc3\xa9");
    EDGE("a\0m\0s\0i\0");
    EDGE("x\0a\0m\0s\0i\0");
    EDGE("xa\0m\0s\0i\0");
    EDGE("a\0m\0s\0i\0x");
    EDGE("a\0m\0s\0i\0x\0");
    EDGE("a\0m\0s\0i\0xy");
    EDGE("-\0A\0M\0S\0I\0-\0");
    EDGE("_\0a\0m\0s\0i\0_\0");
    EDGE("aaaa");
    EDGE("aaa");
    EDGE("ABABA");
    EDGE("abababa");
    EDGE("Ab a\0B\0 AB");
    EDGE("AxAxA");
    EDGE("\x4d\x5a\x90\x00\x4d\x5a");
    EDGE("\x4d\x1a\x9f\x00");
    EDGE("abe acde ace abde");
    EDGE("a\vb a\fb");
    EDGE("a b");
    EDGE("ab\ncd");
    EDGE("abxcd");
    EDGE("xAy x1y x-y");
    EDGE("INVOKE-Expression");
    EDGE("invokeEx");
    EDGE("\0\x01\0\x01\0\x01");
    EDGE("a\0b a\0\0b");
    EDGE("a1a2a3a");
    EDGE("a1a a2a");
    EDGE("InXXXXXoXoke");
    EDGE("Invoke Invoke,Invoke");
    EDGE("BypassBypass");

    /* Unbounded jumps far apart, and buffers on both sides of the filesize limits. */
    dbuf big = {0};
    dbuf_put(&big, "MZ", 2);
    for (size_t i = 0; i < 6000; i++)
        dbuf_putc(&big, (uint8_t)('a' + i % 26));
    dbuf_put(&big, "PE", 2);
    corpus_add_buffer(&c, &big, BUF_EDGE);
    static const size_t sizes[] = {1023, 1024, 1025};
    for (size_t k = 0; k < COUNT_OF(sizes); k++) {
        dbuf sized = {0};
        for (size_t i = 0; i < sizes[k]; i++)
            dbuf_putc(&sized, (uint8_t)(i % 7 == 0 ? 'a' : ' '));
        corpus_add_buffer(&c, &sized, BUF_EDGE);
    }

    harness h;
    harness_open(&h, &c);
    for (size_t i = 0; i < c.nbufs; i++)
        harness_scan(&h, i);
    printf("edge cases: %zu rules x %zu buffers, %zu matches in libyara\n", c.nrules, c.nbufs,
           h.yara_matches);
    size_t rules_differing = harness_summary(&h);
    harness_close(&h);
    corpus_free(&c);
    assert_int_equal(rules_differing, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_cases_match_like_libyara),
        cmocka_unit_test(test_generated_rules_match_like_libyara),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
