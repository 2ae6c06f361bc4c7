/*
 * rules_parse.c - the YARA-subset parser: reads rule files (with `include`), checks that every
 * construct is inside the subset documented in engine/README.md, and builds the flat rule set of
 * rules.h. Anything outside the subset is rejected with "file:line: reason"; nothing is skipped or
 * guessed.
 *
 * The parser is a hand-written recursive descent over the file text. The lexer is context free
 * except for hex strings and regular expressions, which the string-definition parser reads itself
 * after the '='.
 */
#include "rules.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

#include <openssl/evp.h>

#define MAX_INCLUDE_DEPTH 16
#define MAX_FILE_SIZE     (64u << 20)
#define MAX_HEX_ALT_DEPTH 8

void engine__diag_set(engine_diag *diag, const char *file, unsigned line, const char *fmt, ...)
{
    if (diag == NULL)
        return;
    char reason[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    snprintf(diag->file, sizeof(diag->file), "%s", file ? file : "");
    diag->line = line;
    if (file && line)
        snprintf(diag->text, sizeof(diag->text), "%s:%u: %s", file, line, reason);
    else if (file)
        snprintf(diag->text, sizeof(diag->text), "%s: %s", file, reason);
    else
        snprintf(diag->text, sizeof(diag->text), "%s", reason);
}

/* ------------------------------------------------------------------------------------------ */
/* Growable arrays and the rule set.                                                           */

/* Makes room for one more element of size esz in *arr. Returns 0 or ENGINE_ENOMEM. */
static int grow(void **arr, size_t *cap, size_t n, size_t esz)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, ncap * esz);
    if (p == NULL)
        return ENGINE_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

/*
 * Grows the set's arrays ahead of parsing len bytes of rule text, from how much text a rule,
 * a string and a condition node take at the least in practice, so a large file is parsed
 * without the arrays being copied again and again. Returns 0 or ENGINE_ENOMEM.
 */
static int reserve_for(engine__ruleset *set, size_t len)
{
    struct {
        void **arr;
        size_t *cap;
        size_t n, want, esz;
    } a[] = {
        {(void **)&set->rules, &set->caprules, set->nrules, len / 128, sizeof(engine__rule)},
        {(void **)&set->strings, &set->capstrings, set->nstrings, len / 48, sizeof(engine__string)},
        {(void **)&set->nodes, &set->capnodes, set->nnodes, len / 24, sizeof(engine__node)},
    };
    for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++) {
        size_t need = a[i].n + a[i].want;
        if (need <= *a[i].cap)
            continue;
        void *p = realloc(*a[i].arr, need * a[i].esz);
        if (p == NULL)
            return ENGINE_ENOMEM;
        *a[i].arr = p;
        *a[i].cap = need;
    }
    return 0;
}

/* A chunk of the rule set's arena: names, ids, texts, meta and condition sets live here. */
typedef struct engine__arena_chunk {
    struct engine__arena_chunk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} engine__arena_chunk;

/* Allocates n bytes from the set's arena (aligned for any type). Returns NULL when out of memory.
 */
static void *set_alloc(engine__ruleset *set, size_t n)
{
    n = (n + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    engine__arena_chunk *c = set->arena;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        engine__arena_chunk *nc = malloc(sizeof(*nc) + cap);
        if (nc == NULL)
            return NULL;
        nc->next = c;
        nc->used = 0;
        nc->cap = cap;
        set->arena = nc;
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

/* Copies s[0..n) into the arena with a terminating NUL. */
static char *set_strndup(engine__ruleset *set, const char *s, size_t n)
{
    char *p = set_alloc(set, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void engine__ruleset_cleanup(engine__ruleset *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->nrules; i++) {
        free(set->rules[i].tags);
        free(set->rules[i].meta);
    }
    for (engine__arena_chunk *c = set->arena, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(set->rules);
    free(set->strings);
    free(set->nodes);
    free(set->names);
    for (size_t i = 0; i < set->nfiles; i++)
        free(set->files[i]);
    free(set->files);
    memset(set, 0, sizeof(*set));
}

/* ------------------------------------------------------------------------------------------ */
/* Lexer.                                                                                      */

typedef enum tok_kind {
    T_EOF,
    T_IDENT,  /* identifiers and keywords */
    T_STRID,  /* $name, $name*, $ or $* (text holds what follows '$', with any '*') */
    T_COUNT,  /* #name */
    T_OFFSET, /* @name (rejected) */
    T_LENGTH, /* !name (rejected) */
    T_STRING, /* "..." (raw text between the quotes, escapes not yet decoded) */
    T_NUMBER,
    T_PUNCT, /* one of ( ) { } , : = [ ] . - + * \ % & | ^ ~ */
    T_CMP,   /* < <= > >= == != */
    T_ERROR,
} tok_kind;

typedef struct token {
    tok_kind kind;
    const char *start; /* points into the source */
    size_t len;
    int64_t num;
    engine__cmp cmp;
    unsigned line;
} token;

typedef struct parser {
    engine__ruleset *set;
    engine_diag *diag;
    const char *file; /* name for messages */
    const char *dir;  /* directory for includes (with trailing '/'), or "" */
    const char *src;
    const char *p;
    const char *end;
    unsigned line;
    token tok;   /* the current token */
    int depth;   /* include depth */
    char **seen; /* canonical paths currently open, to refuse include cycles */
    size_t nseen;
    EVP_MD_CTX *sha;
    int err;
} parser;

/* Records an error at the current token's line (the first error wins). Returns ENGINE_ERULES. */
static int fail_at(parser *ps, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(parser *ps, unsigned line, const char *fmt, ...)
{
    if (ps->err == 0) {
        char reason[384];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        engine__diag_set(ps->diag, ps->file, line, "%s", reason);
        ps->err = ENGINE_ERULES;
    }
    return ps->err;
}

#define FAIL(ps, ...) fail_at((ps), (ps)->tok.line, __VA_ARGS__)

static int nomem(parser *ps)
{
    if (ps->err == 0) {
        engine__diag_set(ps->diag, ps->file, 0, "out of memory");
        ps->err = ENGINE_ENOMEM;
    }
    return ps->err;
}

static bool is_ident_start(int c)
{
    return isalpha(c) || c == '_';
}

static bool is_ident_char(int c)
{
    return isalnum(c) || c == '_';
}

/* Skips white space and comments, counting lines. Returns 0 or an error for an open comment. */
static int skip_space(parser *ps)
{
    for (;;) {
        while (ps->p < ps->end && isspace((unsigned char)*ps->p)) {
            if (*ps->p == '\n')
                ps->line++;
            ps->p++;
        }
        if (ps->p + 1 < ps->end && ps->p[0] == '/' && ps->p[1] == '/') {
            while (ps->p < ps->end && *ps->p != '\n')
                ps->p++;
            continue;
        }
        if (ps->p + 1 < ps->end && ps->p[0] == '/' && ps->p[1] == '*') {
            unsigned start = ps->line;
            ps->p += 2;
            while (ps->p + 1 < ps->end && !(ps->p[0] == '*' && ps->p[1] == '/')) {
                if (*ps->p == '\n')
                    ps->line++;
                ps->p++;
            }
            if (ps->p + 1 >= ps->end)
                return fail_at(ps, start, "unterminated comment");
            ps->p += 2;
            continue;
        }
        return 0;
    }
}

/* Reads the next token into ps->tok. Returns 0 or ENGINE_ERULES. */
static int next(parser *ps)
{
    if (ps->err)
        return ps->err;
    if (skip_space(ps))
        return ps->err;
    token *t = &ps->tok;
    memset(t, 0, sizeof(*t));
    t->line = ps->line;
    t->start = ps->p;
    if (ps->p >= ps->end) {
        t->kind = T_EOF;
        return 0;
    }
    char c = *ps->p;
    if (is_ident_start((unsigned char)c)) {
        while (ps->p < ps->end && is_ident_char((unsigned char)*ps->p))
            ps->p++;
        t->kind = T_IDENT;
    } else if (c == '$' || c == '#' || c == '@' || c == '!') {
        if (c == '!' && ps->p + 1 < ps->end && ps->p[1] == '=') {
            ps->p += 2;
            t->kind = T_CMP;
            t->cmp = ENGINE__CMP_NE;
            t->len = 2;
            return 0;
        }
        ps->p++;
        t->start = ps->p;
        while (ps->p < ps->end && is_ident_char((unsigned char)*ps->p))
            ps->p++;
        if (c == '$' && ps->p < ps->end && *ps->p == '*')
            ps->p++;
        t->kind = c == '$' ? T_STRID : c == '#' ? T_COUNT : c == '@' ? T_OFFSET : T_LENGTH;
        t->len = (size_t)(ps->p - t->start);
        return 0;
    } else if (c == '"') {
        ps->p++;
        t->start = ps->p;
        while (ps->p < ps->end && *ps->p != '"') {
            if (*ps->p == '\n')
                return FAIL(ps, "unterminated text string");
            if (*ps->p == '\\' && ps->p + 1 < ps->end)
                ps->p++;
            ps->p++;
        }
        if (ps->p >= ps->end)
            return FAIL(ps, "unterminated text string");
        t->kind = T_STRING;
        t->len = (size_t)(ps->p - t->start);
        ps->p++;
        return 0;
    } else if (isdigit((unsigned char)c)) {
        errno = 0;
        char *e;
        unsigned long long v;
        if (c == '0' && ps->p + 1 < ps->end && (ps->p[1] == 'x' || ps->p[1] == 'X'))
            v = strtoull(ps->p + 2, &e, 16);
        else
            v = strtoull(ps->p, &e, 10);
        if (errno != 0 || v > (unsigned long long)INT64_MAX)
            return FAIL(ps, "number out of range");
        if (e < ps->end - 1 && (e[0] == 'K' || e[0] == 'M') && e[1] == 'B') {
            unsigned shift = e[0] == 'K' ? 10 : 20;
            if (v > ((unsigned long long)INT64_MAX >> shift))
                return FAIL(ps, "number out of range");
            v <<= shift;
            e += 2;
        }
        if (e < ps->end && is_ident_char((unsigned char)*e))
            return FAIL(ps, "malformed number");
        ps->p = e;
        t->kind = T_NUMBER;
        t->num = (int64_t)v;
    } else if (c == '<' || c == '>' || c == '=') {
        bool eq = ps->p + 1 < ps->end && ps->p[1] == '=';
        if (c == '=' && !eq) {
            ps->p++;
            t->kind = T_PUNCT;
        } else {
            ps->p += eq ? 2 : 1;
            t->kind = T_CMP;
            t->cmp = c == '<'   ? (eq ? ENGINE__CMP_LE : ENGINE__CMP_LT)
                     : c == '>' ? (eq ? ENGINE__CMP_GE : ENGINE__CMP_GT)
                                : ENGINE__CMP_EQ;
        }
    } else if (strchr("(){},:[].-+*\\%&|^~/", c) != NULL) {
        ps->p++;
        t->kind = T_PUNCT;
    } else {
        return FAIL(ps, "unexpected character '%c'", isprint((unsigned char)c) ? c : '?');
    }
    t->len = (size_t)(ps->p - t->start);
    return 0;
}

static bool tok_is(const parser *ps, const char *word)
{
    size_t n = strlen(word);
    return (ps->tok.kind == T_IDENT || ps->tok.kind == T_PUNCT) && ps->tok.len == n &&
           memcmp(ps->tok.start, word, n) == 0;
}

static bool tok_punct(const parser *ps, char c)
{
    return ps->tok.kind == T_PUNCT && ps->tok.len == 1 && ps->tok.start[0] == c;
}

/* A printable rendering of the current token for messages (bounded). */
static const char *tok_text(const parser *ps, char *buf, size_t cap)
{
    if (ps->tok.kind == T_EOF)
        return "end of file";
    size_t n = ps->tok.len < cap - 1 ? ps->tok.len : cap - 1;
    memcpy(buf, ps->tok.start, n);
    buf[n] = '\0';
    return buf;
}

/* Requires the current token to be punctuation c and moves past it. */
static int expect_punct(parser *ps, char c, const char *what)
{
    char b[64];
    if (!tok_punct(ps, c))
        return FAIL(ps, "expected '%c' %s, found '%s'", c, what, tok_text(ps, b, sizeof(b)));
    return next(ps);
}

/* The current token's text, in the rule set's arena. */
static char *tok_dup(parser *ps)
{
    char *s = set_strndup(ps->set, ps->tok.start, ps->tok.len);
    if (s == NULL)
        nomem(ps);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* Text strings.                                                                               */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Decodes the escapes of a text string token into the arena (NUL-terminated). Returns 0 or an
 * error.
 */
static int decode_text(parser *ps, const token *t, uint8_t **out, size_t *out_len)
{
    uint8_t *buf = set_alloc(ps->set, t->len + 1);
    if (buf == NULL)
        return nomem(ps);
    size_t n = 0;
    for (size_t i = 0; i < t->len; i++) {
        char c = t->start[i];
        if (c != '\\') {
            buf[n++] = (uint8_t)c;
            continue;
        }
        char e = ++i < t->len ? t->start[i] : '\0';
        switch (e) {
        case '"':
        case '\\':
            buf[n++] = (uint8_t)e;
            break;
        case 't':
            buf[n++] = '\t';
            break;
        case 'n':
            buf[n++] = '\n';
            break;
        case 'r':
            buf[n++] = '\r';
            break;
        case 'x': {
            int hi = i + 1 < t->len ? hexval(t->start[i + 1]) : -1;
            int lo = i + 2 < t->len ? hexval(t->start[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                return fail_at(ps, t->line, "bad \\x escape in text string");
            }
            buf[n++] = (uint8_t)(hi * 16 + lo);
            i += 2;
            break;
        }
        default:
            return fail_at(ps, t->line, "illegal escape sequence '\\%c' in text string",
                           isprint((unsigned char)e) ? e : '?');
        }
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Hex strings, translated to Hyperscan expressions.                                           */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 64;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        char *p = realloc(b->s, ncap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = ncap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

typedef struct hexinfo {
    size_t min_len;     /* bytes of the shortest match */
    bool fixed;         /* every match has min_len bytes */
    bool has_wild;      /* wildcards, jumps or alternatives */
    size_t fixed_bytes; /* count of fully fixed bytes */
} hexinfo;

/*
 * Skips spaces, newlines and comments inside a hex string, as between tokens; an unterminated
 * comment is recorded as the error and the hex parser then stops at the end of the text.
 */
static void hex_skip(parser *ps)
{
    (void)skip_space(ps);
}

/* Reads a decimal number inside a jump. Returns -1 when there is none. */
static long hex_number(parser *ps)
{
    hex_skip(ps);
    if (ps->p >= ps->end || !isdigit((unsigned char)*ps->p))
        return -1;
    long v = 0;
    while (ps->p < ps->end && isdigit((unsigned char)*ps->p)) {
        v = v * 10 + (*ps->p - '0');
        if (v > 1000000)
            return -2;
        ps->p++;
    }
    return v;
}

/*
 * Parses a sequence of hex tokens up to '}' (depth 0) or ')' / '|' (inside alternatives),
 * appending the Hyperscan expression to b and describing it in *info. Returns 0 or an error.
 */
static int hex_seq(parser *ps, sbuf *b, hexinfo *info, int depth)
{
    memset(info, 0, sizeof(*info));
    info->fixed = true;
    size_t tokens = 0;
    for (;;) {
        hex_skip(ps);
        if (ps->p >= ps->end)
            return fail_at(ps, ps->line, "unterminated hex string");
        char c = *ps->p;
        if (c == '}' || c == ')' || c == '|') {
            if (depth == 0 && c != '}')
                return fail_at(ps, ps->line, "unexpected '%c' in hex string", c);
            if (depth > 0 && c == '}')
                return fail_at(ps, ps->line, "unterminated alternative in hex string");
            if (tokens == 0)
                return fail_at(ps, ps->line, "empty hex string or alternative");
            return 0;
        }
        tokens++;
        if (c == '[') {
            ps->p++;
            long lo = hex_number(ps), hi;
            hex_skip(ps);
            bool range = ps->p < ps->end && *ps->p == '-';
            if (range) {
                ps->p++;
                hi = hex_number(ps);
                if (lo == -1)
                    lo = 0;
            } else {
                hi = lo;
            }
            hex_skip(ps);
            if (ps->p >= ps->end || *ps->p != ']' || lo < 0 || hi == -2 || (!range && hi < 0))
                return fail_at(ps, ps->line, "malformed jump in hex string");
            ps->p++;
            if (hi >= 0 && hi < lo)
                return fail_at(ps, ps->line, "jump [%ld-%ld]: lower bound above upper bound", lo,
                               hi);
            if (hi < 0)
                sb_printf(b, ".{%ld,}", lo);
            else if (hi == lo)
                sb_printf(b, ".{%ld}", lo);
            else
                sb_printf(b, ".{%ld,%ld}", lo, hi);
            info->min_len += (size_t)lo;
            if (hi != lo)
                info->fixed = false;
            info->has_wild = true;
        } else if (c == '(') {
            if (depth >= MAX_HEX_ALT_DEPTH)
                return fail_at(ps, ps->line, "alternatives nested too deeply in hex string");
            ps->p++;
            sb_add(b, "(?:", 3);
            size_t alts = 0, amin = SIZE_MAX;
            size_t first_len = 0;
            bool fixed = true;
            for (;;) {
                hexinfo sub;
                if (hex_seq(ps, b, &sub, depth + 1))
                    return ps->err;
                if (alts == 0)
                    first_len = sub.min_len;
                else if (sub.min_len != first_len)
                    fixed = false;
                if (!sub.fixed)
                    fixed = false;
                if (sub.min_len < amin)
                    amin = sub.min_len;
                alts++;
                if (*ps->p == '|') {
                    ps->p++;
                    sb_add(b, "|", 1);
                    continue;
                }
                ps->p++; /* ')' */
                break;
            }
            sb_add(b, ")", 1);
            info->min_len += amin;
            info->fixed = info->fixed && fixed;
            info->has_wild = true;
        } else {
            if (c == '~')
                return fail_at(ps, ps->line, "'~' (not) in hex strings is not supported");
            if (ps->p + 1 >= ps->end)
                return fail_at(ps, ps->line, "unterminated hex string");
            char c2 = ps->p[1];
            int hi = hexval(c), lo = hexval(c2);
            if ((hi < 0 && c != '?') || (lo < 0 && c2 != '?'))
                return fail_at(ps, ps->line, "invalid hex digit '%c%c' in hex string", c, c2);
            ps->p += 2;
            if (hi >= 0 && lo >= 0) {
                sb_printf(b, "\\x%02x", hi * 16 + lo);
                info->fixed_bytes++;
            } else if (hi < 0 && lo < 0) {
                sb_add(b, ".", 1);
                info->has_wild = true;
            } else if (hi >= 0) {
                sb_printf(b, "[\\x%02x-\\x%02x]", hi * 16, hi * 16 + 15);
                info->has_wild = true;
            } else {
                sb_add(b, "[", 1);
                for (int h = 0; h < 16; h++)
                    sb_printf(b, "\\x%02x", h * 16 + lo);
                sb_add(b, "]", 1);
                info->has_wild = true;
            }
            info->min_len++;
        }
        if (b->oom)
            return nomem(ps);
    }
}

/* Extracts the bytes of a hex string with no wildcards, jumps or alternatives. */
static int hex_literal(engine__ruleset *set, const char *expr, uint8_t **out, size_t *out_len)
{
    size_t n = strlen(expr) / 4;
    uint8_t *buf = set_alloc(set, n + 1);
    if (buf == NULL)
        return ENGINE_ENOMEM;
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)(hexval(expr[4 * i + 2]) * 16 + hexval(expr[4 * i + 3]));
    *out = buf;
    *out_len = n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Regular expressions.                                                                        */

/*
 * Reads /.../flags from ps->p (just after the opening '/'), rewriting `\/` to `/` and `{,m}` to
 * `{0,m}`. Returns 0 or an error.
 */
static int regex_read(parser *ps, sbuf *b, unsigned *hs_flags)
{
    unsigned line = ps->line;
    bool in_class = false;
    while (ps->p < ps->end && (*ps->p != '/' || in_class)) {
        char c = *ps->p;
        if (c == '\n')
            return fail_at(ps, line, "unterminated regular expression");
        if (c == '\\' && ps->p + 1 < ps->end) {
            if (ps->p[1] == '/')
                sb_add(b, "/", 1);
            else
                sb_add(b, ps->p, 2);
            ps->p += 2;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = true;
            sb_add(b, ps->p, 1);
            ps->p++;
            /* A ']' right after '[' or '[^' is a literal. */
            if (ps->p < ps->end && *ps->p == '^') {
                sb_add(b, ps->p, 1);
                ps->p++;
            }
            if (ps->p < ps->end && *ps->p == ']') {
                sb_add(b, ps->p, 1);
                ps->p++;
            }
            continue;
        }
        if (c == ']' && in_class)
            in_class = false;
        if (c == '{' && !in_class && ps->p + 1 < ps->end && ps->p[1] == ',') {
            sb_add(b, "{0", 2);
            ps->p++;
            continue;
        }
        sb_add(b, ps->p, 1);
        ps->p++;
    }
    if (ps->p >= ps->end)
        return fail_at(ps, line, "unterminated regular expression");
    ps->p++;
    if (b->len == 0)
        return fail_at(ps, line, "empty regular expression");
    *hs_flags = 0;
    while (ps->p < ps->end && isalpha((unsigned char)*ps->p)) {
        if (*ps->p == 'i')
            *hs_flags |= HS_FLAG_CASELESS;
        else if (*ps->p == 's')
            *hs_flags |= HS_FLAG_DOTALL;
        else
            return fail_at(ps, line, "unsupported regular expression flag '%c' (only i and s)",
                           *ps->p);
        ps->p++;
    }
    if (b->oom)
        return nomem(ps);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Rules.                                                                                      */

static engine__rule *cur_rule(parser *ps)
{
    return &ps->set->rules[ps->set->nrules - 1];
}

/* Finds string `id` (without '$') of the current rule; returns its global index or -1. */
static long find_string(parser *ps, const char *id, size_t len)
{
    engine__rule *r = cur_rule(ps);
    for (uint32_t i = 0; i < r->nstrings; i++) {
        const char *sid = ps->set->strings[r->first_string + i].id;
        if (strlen(sid) == len && memcmp(sid, id, len) == 0 && len > 0)
            return (long)(r->first_string + i);
    }
    return -1;
}

static int parse_meta(parser *ps)
{
    engine__rule *r = cur_rule(ps);
    while (ps->tok.kind == T_IDENT && !tok_is(ps, "strings") && !tok_is(ps, "condition")) {
        char *key = tok_dup(ps);
        if (key == NULL)
            return ps->err;
        if (next(ps) || expect_punct(ps, '=', "after meta identifier"))
            return ps->err;
        char *value = NULL;
        if (ps->tok.kind == T_STRING) {
            uint8_t *v;
            size_t n;
            if (decode_text(ps, &ps->tok, &v, &n) == 0) {
                value = (char *)v;
                value[n] = '\0';
            }
        } else if (ps->tok.kind == T_NUMBER || tok_is(ps, "true") || tok_is(ps, "false")) {
            value = tok_dup(ps);
        } else if (tok_punct(ps, '-')) {
            if (next(ps) == 0 && ps->tok.kind == T_NUMBER) {
                value = set_alloc(ps->set, ps->tok.len + 2);
                if (value)
                    snprintf(value, ps->tok.len + 2, "-%.*s", (int)ps->tok.len, ps->tok.start);
                else
                    nomem(ps);
            } else {
                FAIL(ps, "expected a number after '-' in meta value");
            }
        } else {
            FAIL(ps, "meta value must be a string, an integer, true or false");
        }
        engine__meta *meta = value ? realloc(r->meta, (r->nmeta + 1) * sizeof(*meta)) : NULL;
        if (meta == NULL)
            return ps->err ? ps->err : nomem(ps);
        r->meta = meta;
        r->meta[r->nmeta].key = key;
        r->meta[r->nmeta].value = value;
        r->nmeta++;
        if (next(ps))
            return ps->err;
    }
    return ps->err;
}

/* Parses one string's modifiers for its kind. */
static int parse_modifiers(parser *ps, engine__string *s)
{
    while (ps->tok.kind == T_IDENT) {
        static const struct {
            const char *name;
            unsigned bit;
            unsigned kinds; /* bit per engine__str_kind */
        } mods[] = {
            {"nocase", ENGINE__MOD_NOCASE, 1u << ENGINE__STR_TEXT | 1u << ENGINE__STR_REGEX},
            {"ascii", ENGINE__MOD_ASCII, 1u << ENGINE__STR_TEXT | 1u << ENGINE__STR_REGEX},
            {"wide", ENGINE__MOD_WIDE, 1u << ENGINE__STR_TEXT},
            {"fullword", ENGINE__MOD_FULLWORD, 1u << ENGINE__STR_TEXT},
            {"private", ENGINE__MOD_PRIVATE, 7u},
        };
        static const char *const kind_names[] = {"text strings", "hex strings",
                                                 "regular expressions"};
        char b[64];
        size_t i;
        for (i = 0; i < sizeof(mods) / sizeof(mods[0]); i++)
            if (tok_is(ps, mods[i].name))
                break;
        if (i == sizeof(mods) / sizeof(mods[0])) {
            if (tok_is(ps, "xor") || tok_is(ps, "base64") || tok_is(ps, "base64wide"))
                return FAIL(ps, "string modifier '%s' is not supported",
                            tok_text(ps, b, sizeof(b)));
            break; /* the next string or section */
        }
        if (!(mods[i].kinds & (1u << s->kind)))
            return FAIL(ps, "modifier '%s' is not supported on %s", mods[i].name,
                        kind_names[s->kind]);
        if (s->mods & mods[i].bit)
            return FAIL(ps, "duplicated modifier '%s'", mods[i].name);
        s->mods |= mods[i].bit;
        if (next(ps))
            return ps->err;
    }
    return ps->err;
}

static int parse_strings(parser *ps)
{
    engine__rule *r = cur_rule(ps);
    while (ps->tok.kind == T_STRID) {
        unsigned line = ps->tok.line;
        if (ps->tok.len > 0 && ps->tok.start[ps->tok.len - 1] == '*')
            return FAIL(ps, "'*' is not allowed in a string identifier");
        if (ps->tok.len > 0 && find_string(ps, ps->tok.start, ps->tok.len) >= 0)
            return FAIL(ps, "duplicated string identifier '$%.*s'", (int)ps->tok.len,
                        ps->tok.start);
        if (grow((void **)&ps->set->strings, &ps->set->capstrings, ps->set->nstrings,
                 sizeof(engine__string)))
            return nomem(ps);
        engine__string *s = &ps->set->strings[ps->set->nstrings];
        memset(s, 0, sizeof(*s));
        s->line = line;
        s->rule = (uint32_t)(ps->set->nrules - 1);
        s->id = tok_dup(ps);
        if (s->id == NULL)
            return ps->err;
        ps->set->nstrings++;
        r->nstrings++;
        if (next(ps))
            return ps->err;
        if (!tok_punct(ps, '='))
            return FAIL(ps, "expected '=' after string identifier");
        /* Look at the raw text after '=' to tell hex and regex from the rest. */
        if (skip_space(ps))
            return ps->err;
        if (ps->p < ps->end && *ps->p == '{') {
            ps->p++;
            sbuf b = {0};
            hexinfo info;
            s->kind = ENGINE__STR_HEX;
            if (hex_seq(ps, &b, &info, 0)) {
                free(b.s);
                return ps->err;
            }
            ps->p++; /* '}' */
            if (info.fixed_bytes == 0) {
                free(b.s);
                return fail_at(ps, line, "hex string has no fixed byte");
            }
            if (!info.has_wild) {
                int rc = hex_literal(ps->set, b.s, &s->text, &s->text_len);
                free(b.s);
                if (rc)
                    return nomem(ps);
                s->literal = true;
            } else {
                s->text = (uint8_t *)set_strndup(ps->set, b.s, b.len);
                s->text_len = b.len;
                s->hs_flags = HS_FLAG_DOTALL;
                free(b.s);
                if (s->text == NULL)
                    return nomem(ps);
            }
            s->fixed_len = info.fixed ? info.min_len : 0;
        } else if (ps->p < ps->end && *ps->p == '/') {
            ps->p++;
            sbuf b = {0};
            s->kind = ENGINE__STR_REGEX;
            if (regex_read(ps, &b, &s->hs_flags)) {
                free(b.s);
                return ps->err;
            }
            s->text = (uint8_t *)set_strndup(ps->set, b.s, b.len);
            s->text_len = b.len;
            free(b.s);
            if (s->text == NULL)
                return nomem(ps);
        } else {
            if (next(ps))
                return ps->err;
            if (ps->tok.kind != T_STRING)
                return FAIL(ps, "expected a text string, hex string or regular expression");
            s->kind = ENGINE__STR_TEXT;
            if (decode_text(ps, &ps->tok, &s->text, &s->text_len))
                return ps->err;
            if (s->text_len == 0)
                return fail_at(ps, line, "empty text string");
            s->fixed_len = s->text_len;
        }
        if (next(ps) || parse_modifiers(ps, s))
            return ps->err;
        if (s->kind == ENGINE__STR_REGEX && (s->mods & ENGINE__MOD_NOCASE))
            s->hs_flags |= HS_FLAG_CASELESS;
    }
    return ps->err;
}

/* Appends a condition node; returns its index through *idx. */
static int add_node(parser *ps, const engine__node *n, uint32_t *idx)
{
    if (grow((void **)&ps->set->nodes, &ps->set->capnodes, ps->set->nnodes, sizeof(*n)))
        return nomem(ps);
    ps->set->nodes[ps->set->nnodes] = *n;
    *idx = (uint32_t)ps->set->nnodes++;
    return 0;
}

static int parse_expr(parser *ps, uint32_t *out);

/* Collects the strings of a set: `them` or `($a, $b*, ...)`. */
static int parse_string_set(parser *ps, uint32_t **set, uint32_t *nset)
{
    engine__rule *r = cur_rule(ps);
    bool *chosen = calloc(r->nstrings ? r->nstrings : 1, sizeof(bool));
    if (chosen == NULL)
        return nomem(ps);
    if (tok_is(ps, "them")) {
        if (r->nstrings == 0) {
            free(chosen);
            return FAIL(ps, "'them' used in a rule with no strings");
        }
        for (uint32_t i = 0; i < r->nstrings; i++)
            chosen[i] = true;
        next(ps);
    } else if (tok_punct(ps, '(')) {
        next(ps);
        for (;;) {
            if (ps->tok.kind != T_STRID) {
                free(chosen);
                return FAIL(ps, "expected a string identifier in the set");
            }
            bool wildcard = ps->tok.len > 0 && ps->tok.start[ps->tok.len - 1] == '*';
            size_t plen = wildcard ? ps->tok.len - 1 : ps->tok.len;
            bool any = false;
            for (uint32_t i = 0; i < r->nstrings; i++) {
                const char *sid = ps->set->strings[r->first_string + i].id;
                size_t slen = strlen(sid);
                if (wildcard
                        ? (slen >= plen && memcmp(sid, ps->tok.start, plen) == 0)
                        : (slen == plen && plen > 0 && memcmp(sid, ps->tok.start, plen) == 0)) {
                    chosen[i] = true;
                    any = true;
                }
            }
            if (!any) {
                free(chosen);
                return FAIL(ps, "undefined string identifier '$%.*s'", (int)ps->tok.len,
                            ps->tok.start);
            }
            next(ps);
            if (tok_punct(ps, ',')) {
                next(ps);
                continue;
            }
            if (tok_punct(ps, ')')) {
                next(ps);
                break;
            }
            free(chosen);
            return FAIL(ps, "expected ',' or ')' in the string set");
        }
    } else {
        free(chosen);
        return FAIL(ps, "expected 'them' or a string set after 'of'");
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->nstrings; i++)
        n += chosen[i];
    *set = set_alloc(ps->set, (n ? n : 1) * sizeof(uint32_t));
    if (*set == NULL) {
        free(chosen);
        return nomem(ps);
    }
    *nset = 0;
    for (uint32_t i = 0; i < r->nstrings; i++)
        if (chosen[i])
            (*set)[(*nset)++] = r->first_string + i;
    free(chosen);
    return ps->err;
}

/* FNV-1a over a rule name. */
static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

/* The index of the rule named s[0..n), or -1. Can't fail. */
static long name_find(const engine__ruleset *set, const char *s, size_t n)
{
    if (set->names_cap == 0)
        return -1;
    size_t mask = set->names_cap - 1;
    for (size_t i = name_hash(s, n) & mask;; i = (i + 1) & mask) {
        uint32_t v = set->names[i];
        if (v == 0)
            return -1;
        const char *name = set->rules[v - 1].name;
        if (strncmp(name, s, n) == 0 && name[n] == '\0')
            return (long)(v - 1);
    }
}

/* Indexes rule r by name, growing the table to keep it at most half full. */
static int name_add(engine__ruleset *set, size_t r)
{
    if (2 * (set->nrules + 1) > set->names_cap) {
        size_t cap = set->names_cap ? 2 * set->names_cap : 64;
        uint32_t *t = calloc(cap, sizeof(uint32_t));
        if (t == NULL)
            return ENGINE_ENOMEM;
        for (size_t i = 0; i < set->names_cap; i++) {
            uint32_t v = set->names[i];
            if (v == 0)
                continue;
            const char *name = set->rules[v - 1].name;
            size_t j = name_hash(name, strlen(name)) & (cap - 1);
            while (t[j] != 0)
                j = (j + 1) & (cap - 1);
            t[j] = v;
        }
        free(set->names);
        set->names = t;
        set->names_cap = cap;
    }
    const char *name = set->rules[r].name;
    size_t j = name_hash(name, strlen(name)) & (set->names_cap - 1);
    while (set->names[j] != 0)
        j = (j + 1) & (set->names_cap - 1);
    set->names[j] = (uint32_t)(r + 1);
    return 0;
}

/* Rejects constructs outside the subset with a precise reason. */
static int reject_unsupported(parser *ps, bool trailing)
{
    char b[64];
    const char *t = tok_text(ps, b, sizeof(b));
    switch (ps->tok.kind) {
    case T_OFFSET:
        return FAIL(ps, "match offsets (@%s) are not supported", t);
    case T_LENGTH:
        return FAIL(ps, "match lengths (!%s) are not supported", t);
    case T_IDENT:
        if (tok_is(ps, "at") || tok_is(ps, "in"))
            return FAIL(ps, "'%s' (string position) is not supported", t);
        if (tok_is(ps, "for"))
            return FAIL(ps, "'for' loops are not supported");
        if (tok_is(ps, "entrypoint"))
            return FAIL(ps, "'entrypoint' is not supported");
        if (tok_is(ps, "matches") || tok_is(ps, "contains") || tok_is(ps, "icontains") ||
            tok_is(ps, "startswith") || tok_is(ps, "endswith") || tok_is(ps, "iequals"))
            return FAIL(ps, "string operator '%s' is not supported", t);
        if (!strncmp(t, "uint", 4) || !strncmp(t, "int", 3))
            return FAIL(ps, "integer functions ('%s') are not supported", t);
        if (ps->set->nrules > 0 && tok_is(ps, cur_rule(ps)->name))
            return FAIL(ps, "a rule cannot refer to itself");
        if (trailing)
            break;
        if (name_find(ps->set, ps->tok.start, ps->tok.len) >= 0)
            return FAIL(ps, "rule references ('%s') are not supported", t);
        return FAIL(ps, "unknown identifier '%s'", t);
    case T_PUNCT:
        if (strchr("+-*\\%&|^~", ps->tok.start[0]))
            return FAIL(ps, "arithmetic and bitwise operators ('%s') are not supported", t);
        break;
    default:
        break;
    }
    if (trailing)
        return FAIL(ps, "unexpected '%s' after the condition; expected '}'", t);
    return FAIL(ps, "unexpected '%s' in condition", t);
}

/* integer operand: NUMBER, #id, filesize. Returns 1 (with *out set) if one was read, 0 if not. */
static int parse_int_operand(parser *ps, uint32_t *out)
{
    engine__node n = {0};
    if (ps->tok.kind == T_NUMBER) {
        n.op = ENGINE__OP_INT;
        n.value = ps->tok.num;
    } else if (ps->tok.kind == T_COUNT) {
        long si = find_string(ps, ps->tok.start, ps->tok.len);
        if (si < 0)
            return FAIL(ps, "undefined string identifier '#%.*s'", (int)ps->tok.len, ps->tok.start);
        n.op = ENGINE__OP_COUNT;
        n.a = (uint32_t)si;
        ps->set->strings[si].counted = true;
    } else if (tok_is(ps, "filesize")) {
        n.op = ENGINE__OP_FILESIZE;
    } else {
        return 0;
    }
    if (add_node(ps, &n, out) || next(ps))
        return ps->err;
    if (ps->tok.kind == T_PUNCT && ps->tok.len == 1 && strchr("+-*\\%&|^~", ps->tok.start[0]))
        return reject_unsupported(ps, false);
    if (tok_is(ps, "at") || tok_is(ps, "in"))
        return reject_unsupported(ps, false);
    return 1;
}

/* comparison := int cmp int */
static int parse_comparison(parser *ps, uint32_t left, uint32_t *out)
{
    if (ps->tok.kind != T_CMP) {
        return FAIL(ps, "an integer ('%s') must be compared with < <= > >= == !=",
                    ps->set->nodes[left].op == ENGINE__OP_FILESIZE ? "filesize" : "#...");
    }
    engine__node n = {.op = ENGINE__OP_CMP, .cmp = ps->tok.cmp, .a = left};
    if (next(ps))
        return ps->err;
    uint32_t right;
    int rc = parse_int_operand(ps, &right);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return FAIL(ps, "expected an integer, '#string' or 'filesize' after the comparison");
    n.b = right;
    if (ps->tok.kind == T_CMP)
        return FAIL(ps, "chained comparisons are not supported; use 'and'");
    return add_node(ps, &n, out);
}

static int parse_primary(parser *ps, uint32_t *out)
{
    engine__node n = {0};
    if (tok_is(ps, "true") || tok_is(ps, "false")) {
        n.op = tok_is(ps, "true") ? ENGINE__OP_TRUE : ENGINE__OP_FALSE;
        if (add_node(ps, &n, out) || next(ps))
            return ps->err;
        return 0;
    }
    if (tok_punct(ps, '(')) {
        if (next(ps) || parse_expr(ps, out))
            return ps->err;
        return expect_punct(ps, ')', "to close '('");
    }
    if (ps->tok.kind == T_STRID) {
        if (ps->tok.len == 0 || ps->tok.start[ps->tok.len - 1] == '*')
            return FAIL(ps, "'$%.*s' can only be used in a string set", (int)ps->tok.len,
                        ps->tok.start);
        long si = find_string(ps, ps->tok.start, ps->tok.len);
        if (si < 0)
            return FAIL(ps, "undefined string identifier '$%.*s'", (int)ps->tok.len, ps->tok.start);
        n.op = ENGINE__OP_STRING;
        n.a = (uint32_t)si;
        if (add_node(ps, &n, out) || next(ps))
            return ps->err;
        if (tok_is(ps, "at") || tok_is(ps, "in"))
            return reject_unsupported(ps, false);
        return 0;
    }
    /* N of / any of / all of / none of */
    bool quantifier = tok_is(ps, "any") || tok_is(ps, "all") || tok_is(ps, "none");
    if (quantifier || ps->tok.kind == T_NUMBER) {
        const char *save_p = ps->p;
        unsigned save_line = ps->line;
        token save = ps->tok;
        if (next(ps))
            return ps->err;
        if (tok_is(ps, "of")) {
            n.op = ENGINE__OP_OF;
            n.value = save.kind == T_NUMBER                          ? save.num
                      : save.start[0] == 'a' && save.start[1] == 'n' ? 1
                      : save.start[0] == 'n'                         ? 0
                                                                     : -1;
            bool none = save.kind == T_IDENT && save.start[0] == 'n';
            if (next(ps) || parse_string_set(ps, &n.set, &n.nset))
                return ps->err;
            if (tok_is(ps, "in") || tok_is(ps, "at"))
                return reject_unsupported(ps, false);
            /* none of: exactly zero hits, expressed as not (1 of set). */
            if (none) {
                n.value = 1;
                uint32_t inner;
                if (add_node(ps, &n, &inner))
                    return ps->err;
                engine__node neg = {.op = ENGINE__OP_NOT, .a = inner};
                return add_node(ps, &neg, out);
            }
            return add_node(ps, &n, out);
        }
        if (tok_punct(ps, '%'))
            return FAIL(ps, "percentages in 'of' expressions are not supported");
        if (quantifier)
            return fail_at(ps, save.line, "expected 'of' after '%.*s'", (int)save.len, save.start);
        /* A number that starts a comparison: rewind and read it as an integer. */
        ps->p = save_p;
        ps->line = save_line;
        ps->tok = save;
    }
    uint32_t left;
    int rc = parse_int_operand(ps, &left);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return parse_comparison(ps, left, out);
    if (ps->tok.kind == T_EOF || tok_punct(ps, '}'))
        return FAIL(ps, "incomplete condition");
    return reject_unsupported(ps, false);
}

static int parse_not(parser *ps, uint32_t *out)
{
    if (tok_is(ps, "not")) {
        uint32_t inner;
        if (next(ps) || parse_not(ps, &inner))
            return ps->err;
        engine__node n = {.op = ENGINE__OP_NOT, .a = inner};
        return add_node(ps, &n, out);
    }
    return parse_primary(ps, out);
}

static int parse_and(parser *ps, uint32_t *out)
{
    if (parse_not(ps, out))
        return ps->err;
    while (tok_is(ps, "and")) {
        uint32_t right;
        if (next(ps) || parse_not(ps, &right))
            return ps->err;
        engine__node n = {.op = ENGINE__OP_AND, .a = *out, .b = right};
        if (add_node(ps, &n, out))
            return ps->err;
    }
    return 0;
}

static int parse_expr(parser *ps, uint32_t *out)
{
    if (parse_and(ps, out))
        return ps->err;
    while (tok_is(ps, "or")) {
        uint32_t right;
        if (next(ps) || parse_and(ps, &right))
            return ps->err;
        engine__node n = {.op = ENGINE__OP_OR, .a = *out, .b = right};
        if (add_node(ps, &n, out))
            return ps->err;
    }
    return 0;
}

/* Marks the strings a condition subtree refers to (for the unreferenced-string check). */
static void mark_refs(const engine__ruleset *set, uint32_t node, bool *used, uint32_t first)
{
    const engine__node *n = &set->nodes[node];
    switch (n->op) {
    case ENGINE__OP_AND:
    case ENGINE__OP_OR:
    case ENGINE__OP_CMP:
        mark_refs(set, n->a, used, first);
        mark_refs(set, n->b, used, first);
        break;
    case ENGINE__OP_NOT:
        mark_refs(set, n->a, used, first);
        break;
    case ENGINE__OP_STRING:
    case ENGINE__OP_COUNT:
        used[n->a - first] = true;
        break;
    case ENGINE__OP_OF:
        for (uint32_t i = 0; i < n->nset; i++)
            used[n->set[i] - first] = true;
        break;
    default:
        break;
    }
}

/*
 * Gates: a gate of a condition subtree is a set of the rule's strings such that the subtree
 * cannot hold unless at least one of them has a hit, whatever the object size. A rule with a gate
 * is hit_gated: the scanner may skip it when none of its strings was hit. The normalised view's
 * prefilter (rules_compile.c) looks for a cheap gate of every normalized rule before it scans for
 * all of their strings.
 *
 * A gate's cost is the sum of its strings' costs: a literal costs 1 / (its length + 3 for every
 * byte outside [a-z0-9 -]), since long literals with punctuation are rare in scripts and cheap to
 * look for; an expression costs 1. `$a and ...` takes the cheaper side's gate, `... or ...` needs
 * both sides' gates, `k of (set)` any n - k + 1 members (the cheapest), `all of` its cheapest
 * member; `false` has the empty gate. Everything else (`not`, `filesize`, `#a == 0`) has none.
 */
#define GATE_NONE HUGE_VAL

static double string_cost(const engine__ruleset *set, uint32_t string)
{
    const engine__string *s = &set->strings[string];
    if (s->kind != ENGINE__STR_TEXT && !s->literal)
        return 1.0;
    double score = 0;
    for (size_t i = 0; i < s->text_len; i++) {
        uint8_t c = (uint8_t)tolower(s->text[i]);
        score += (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == ' ' || c == '-' ? 1 : 4;
    }
    return score > 0 ? 1.0 / score : 1.0;
}

/* For `#a > k` and the like: the string whose count must be positive, or -1. */
static int64_t cmp_gate_string(const engine__ruleset *set, const engine__node *n)
{
    /* #a > k, #a >= k+1, #a == k+1 (k >= 0), and the mirrored forms. */
    const engine__node *l = &set->nodes[n->a], *r = &set->nodes[n->b];
    engine__cmp c = n->cmp;
    if (l->op == ENGINE__OP_INT && r->op == ENGINE__OP_COUNT) {
        const engine__node *t = l;
        l = r;
        r = t;
        c = c == ENGINE__CMP_LT   ? ENGINE__CMP_GT
            : c == ENGINE__CMP_LE ? ENGINE__CMP_GE
            : c == ENGINE__CMP_GT ? ENGINE__CMP_LT
            : c == ENGINE__CMP_GE ? ENGINE__CMP_LE
                                  : c;
    }
    if (l->op != ENGINE__OP_COUNT || r->op != ENGINE__OP_INT)
        return -1;
    bool gated = (c == ENGINE__CMP_GT && r->value >= 0) || (c == ENGINE__CMP_GE && r->value >= 1) ||
                 (c == ENGINE__CMP_EQ && r->value >= 1);
    return gated ? (int64_t)l->a : -1;
}

/*
 * How many members of an `of` node a gate needs (its n - k + 1 cheapest), 0 when the node can
 * never hold, -1 when it holds with no hit at all.
 */
static int64_t of_gate_size(const engine__node *n)
{
    int64_t want = n->value < 0 ? (int64_t)n->nset : n->value;
    if (want == 0)
        return -1;
    if (n->value < 0)
        return n->nset > 0 ? 1 : 0; /* all of them: any one member */
    int64_t m = (int64_t)n->nset - want + 1;
    return m > 0 ? m : 0;
}

/*
 * Whether member i of an `of` node is among its m cheapest (ties: the earlier member). Ranking is
 * quadratic, so a set of more than GATE_RANK_MAX members is taken whole (still a gate).
 */
#define GATE_RANK_MAX 64
static bool of_member_chosen(const engine__ruleset *set, const engine__node *n, uint32_t i,
                             int64_t m)
{
    if (m >= (int64_t)n->nset || n->nset > GATE_RANK_MAX)
        return true;
    double ci = string_cost(set, n->set[i]);
    int64_t rank = 0;
    for (uint32_t j = 0; j < n->nset && rank < m; j++) {
        double cj = string_cost(set, n->set[j]);
        rank += cj < ci || (cj == ci && j < i);
    }
    return rank < m;
}

double engine__gate_cost(const engine__ruleset *set, uint32_t node)
{
    const engine__node *n = &set->nodes[node];
    switch (n->op) {
    case ENGINE__OP_FALSE:
        return 0;
    case ENGINE__OP_STRING:
        return string_cost(set, n->a);
    case ENGINE__OP_CMP: {
        int64_t s = cmp_gate_string(set, n);
        return s >= 0 ? string_cost(set, (uint32_t)s) : GATE_NONE;
    }
    case ENGINE__OP_OF: {
        int64_t m = of_gate_size(n);
        if (m < 0)
            return GATE_NONE;
        double cost = 0;
        for (uint32_t i = 0; i < n->nset && m > 0; i++)
            if (of_member_chosen(set, n, i, m))
                cost += string_cost(set, n->set[i]);
        return cost;
    }
    case ENGINE__OP_AND: {
        double a = engine__gate_cost(set, n->a), b = engine__gate_cost(set, n->b);
        return a <= b ? a : b;
    }
    case ENGINE__OP_OR:
        return engine__gate_cost(set, n->a) + engine__gate_cost(set, n->b);
    default:
        return GATE_NONE;
    }
}

void engine__gate_mark(const engine__ruleset *set, uint32_t node, bool *mark)
{
    const engine__node *n = &set->nodes[node];
    switch (n->op) {
    case ENGINE__OP_STRING:
        mark[n->a] = true;
        break;
    case ENGINE__OP_CMP: {
        int64_t s = cmp_gate_string(set, n);
        if (s >= 0)
            mark[s] = true;
        break;
    }
    case ENGINE__OP_OF: {
        int64_t m = of_gate_size(n);
        for (uint32_t i = 0; i < n->nset && m > 0; i++)
            if (of_member_chosen(set, n, i, m))
                mark[n->set[i]] = true;
        break;
    }
    case ENGINE__OP_AND:
        engine__gate_mark(
            set, engine__gate_cost(set, n->a) <= engine__gate_cost(set, n->b) ? n->a : n->b, mark);
        break;
    case ENGINE__OP_OR:
        engine__gate_mark(set, n->a, mark);
        engine__gate_mark(set, n->b, mark);
        break;
    default:
        break;
    }
}

static int parse_rule(parser *ps)
{
    char b[64];
    unsigned line = ps->tok.line;
    if (tok_is(ps, "private") || tok_is(ps, "global"))
        return FAIL(ps, "rule modifier '%s' is not supported", tok_text(ps, b, sizeof(b)));
    if (!tok_is(ps, "rule"))
        return FAIL(ps, "expected 'rule', 'include' or end of file, found '%s'",
                    tok_text(ps, b, sizeof(b)));
    if (next(ps))
        return ps->err;
    if (ps->tok.kind != T_IDENT)
        return FAIL(ps, "expected a rule name after 'rule'");
    static const char *const keywords[] = {
        "all",        "and",     "any",      "ascii",     "at",       "condition", "contains",
        "entrypoint", "false",   "filesize", "for",       "fullword", "global",    "import",
        "in",         "include", "matches",  "meta",      "nocase",   "none",      "not",
        "of",         "or",      "private",  "rule",      "strings",  "them",      "true",
        "wide",       "xor",     "base64",   "base64wide"};
    for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
        if (tok_is(ps, keywords[i]))
            return FAIL(ps, "'%s' is a keyword and cannot name a rule", keywords[i]);
    if (ps->tok.len > 128)
        return FAIL(ps, "rule name longer than 128 characters");
    if (name_find(ps->set, ps->tok.start, ps->tok.len) >= 0)
        return FAIL(ps, "duplicated rule name '%s'", tok_text(ps, b, sizeof(b)));
    if (grow((void **)&ps->set->rules, &ps->set->caprules, ps->set->nrules, sizeof(engine__rule)))
        return nomem(ps);
    engine__rule *r = &ps->set->rules[ps->set->nrules++];
    memset(r, 0, sizeof(*r));
    r->line = line;
    r->first_string = (uint32_t)ps->set->nstrings;
    r->name = tok_dup(ps);
    r->file = ps->file;
    if (r->name == NULL || name_add(ps->set, ps->set->nrules - 1) != 0)
        return nomem(ps);
    if (next(ps))
        return ps->err;
    if (tok_punct(ps, ':')) {
        if (next(ps))
            return ps->err;
        if (ps->tok.kind != T_IDENT || tok_is(ps, "meta") || tok_is(ps, "strings") ||
            tok_is(ps, "condition"))
            return FAIL(ps, "expected a tag after ':'");
        while (ps->tok.kind == T_IDENT) {
            char **tags = realloc(r->tags, (r->ntags + 1) * sizeof(char *));
            if (tags == NULL)
                return nomem(ps);
            r->tags = tags;
            if ((r->tags[r->ntags] = tok_dup(ps)) == NULL)
                return ps->err;
            if (strcmp(r->tags[r->ntags], "normalized") == 0)
                r->normalized = true;
            r->ntags++;
            if (next(ps))
                return ps->err;
        }
    }
    if (expect_punct(ps, '{', "to open the rule body"))
        return ps->err;
    if (tok_is(ps, "meta")) {
        if (next(ps) || expect_punct(ps, ':', "after 'meta'") || parse_meta(ps))
            return ps->err;
    }
    if (tok_is(ps, "strings")) {
        if (next(ps) || expect_punct(ps, ':', "after 'strings'"))
            return ps->err;
        if (ps->tok.kind != T_STRID)
            return FAIL(ps, "empty 'strings:' section");
        if (parse_strings(ps))
            return ps->err;
    }
    r = cur_rule(ps);
    for (size_t i = 0; i < r->nmeta; i++)
        if (strcmp(r->meta[i].key, "amsi_normalized") == 0 && strcmp(r->meta[i].value, "true") == 0)
            r->normalized = true;
    if (!tok_is(ps, "condition"))
        return FAIL(ps, "expected 'condition:' (sections are meta, strings, condition, in "
                        "that order)");
    if (next(ps) || expect_punct(ps, ':', "after 'condition'") || parse_expr(ps, &r->root))
        return ps->err;
    if (!tok_punct(ps, '}')) {
        if (ps->tok.kind == T_EOF)
            return FAIL(ps, "expected '}' to close the rule");
        return reject_unsupported(ps, true);
    }
    r = cur_rule(ps);
    if (r->nstrings > 0) {
        bool *used = calloc(r->nstrings, sizeof(bool));
        if (used == NULL)
            return nomem(ps);
        mark_refs(ps->set, r->root, used, r->first_string);
        for (uint32_t i = 0; i < r->nstrings; i++) {
            const engine__string *s = &ps->set->strings[r->first_string + i];
            if (!used[i]) {
                free(used);
                return fail_at(ps, s->line, "unreferenced string '$%s'", s->id);
            }
        }
        free(used);
    }
    r->hit_gated = engine__gate_cost(ps->set, r->root) != GATE_NONE;
    const engine__node *root = &ps->set->nodes[r->root];
    r->any_hit = root->op == ENGINE__OP_STRING ||
                 (root->op == ENGINE__OP_OF && root->value == 1 && root->nset == r->nstrings);
    return next(ps);
}

/* ------------------------------------------------------------------------------------------ */
/* Files.                                                                                      */

/* Keeps a copy of a file name for the rules that come from it. Returns it, or NULL. */
static const char *file_intern(engine__ruleset *set, const char *name)
{
    char **files = realloc(set->files, (set->nfiles + 1) * sizeof(char *));
    if (files == NULL)
        return NULL;
    set->files = files;
    char *copy = strdup(name);
    if (copy != NULL)
        set->files[set->nfiles++] = copy;
    return copy;
}

/* Reads a whole file into a NUL-terminated buffer. */
static int read_file(const char *path, char **out, size_t *len, engine_diag *diag, const char *from,
                     unsigned line)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        engine__diag_set(diag, from ? from : path, from ? line : 0, "%s%s: %s",
                         from ? "cannot include " : "cannot open ", path, strerror(e));
        return e == ENOENT ? ENGINE_ENOENT : ENGINE_EIO;
    }
    struct stat st;
    size_t cap = 4096, n = 0;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0 &&
        (uint64_t)st.st_size < MAX_FILE_SIZE)
        cap = (size_t)st.st_size + 2; /* one read, no regrowth; +1 to see the end */
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n + 1 >= cap) {
            if (cap >= MAX_FILE_SIZE) {
                free(buf);
                fclose(f);
                engine__diag_set(diag, path, 0, "rule file larger than %u MiB",
                                 MAX_FILE_SIZE >> 20);
                return ENGINE_ERULES;
            }
            char *p = realloc(buf, cap * 2);
            if (p == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    bool bad = buf != NULL && ferror(f);
    fclose(f);
    if (buf == NULL) {
        engine__diag_set(diag, path, 0, "out of memory");
        return ENGINE_ENOMEM;
    }
    if (bad) {
        free(buf);
        engine__diag_set(diag, path, 0, "read error");
        return ENGINE_EIO;
    }
    if (memchr(buf, '\0', n) != NULL) {
        free(buf);
        engine__diag_set(diag, path, 0, "rule file contains a NUL byte");
        return ENGINE_ERULES;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int parse_source(parser *ps);

/* Parses one file, as the top level or as an include from `parent`. */
static int parse_file(parser *parent, engine__ruleset *set, EVP_MD_CTX *sha, const char *path,
                      engine_diag *diag, int depth, char ***seen, size_t *nseen)
{
    if (depth > MAX_INCLUDE_DEPTH) {
        engine__diag_set(diag, parent ? parent->file : path, parent ? parent->tok.line : 0,
                         "includes nested deeper than %d", MAX_INCLUDE_DEPTH);
        return ENGINE_ERULES;
    }
    char *canon = realpath(path, NULL);
    if (canon == NULL) {
        int e = errno;
        engine__diag_set(diag, parent ? parent->file : path, parent ? parent->tok.line : 0,
                         "%s%s: %s", parent ? "cannot include " : "cannot open ", path,
                         strerror(e));
        return e == ENOENT ? ENGINE_ENOENT : ENGINE_EIO;
    }
    for (size_t i = 0; i < *nseen; i++) {
        if (strcmp((*seen)[i], canon) == 0) {
            engine__diag_set(diag, parent ? parent->file : path, parent ? parent->tok.line : 0,
                             "include cycle through %s", path);
            free(canon);
            return ENGINE_ERULES;
        }
    }
    char **ns = realloc(*seen, (*nseen + 1) * sizeof(char *));
    if (ns == NULL) {
        free(canon);
        return ENGINE_ENOMEM;
    }
    *seen = ns;
    (*seen)[(*nseen)++] = canon;

    char *text;
    size_t len;
    int rc = read_file(path, &text, &len, diag, parent ? parent->file : NULL,
                       parent ? parent->tok.line : 0);
    if (rc == 0) {
        char *dir = strdup(path);
        const char *fname = file_intern(set, path);
        if (dir == NULL || fname == NULL) {
            free(dir);
            free(text);
            rc = ENGINE_ENOMEM;
        } else {
            char *slash = strrchr(dir, '/');
            if (slash)
                slash[1] = '\0';
            else
                dir[0] = '\0';
            parser ps = {.set = set,
                         .diag = diag,
                         .file = fname,
                         .dir = dir,
                         .src = text,
                         .p = text,
                         .end = text + len,
                         .line = 1,
                         .depth = depth,
                         .seen = *seen,
                         .nseen = *nseen,
                         .sha = sha};
            EVP_DigestUpdate(sha, text, len);
            EVP_DigestUpdate(sha, "\0", 1);
            rc = reserve_for(set, len);
            if (rc == 0)
                rc = parse_source(&ps);
            *seen = ps.seen;
            *nseen = ps.nseen;
            free(dir);
            free(text);
        }
    }
    (*nseen)--;
    free((*seen)[*nseen]);
    return rc;
}

/* Parses the file or text in ps to the end. */
static int parse_source(parser *ps)
{
    if (next(ps))
        return ps->err;
    while (ps->tok.kind != T_EOF) {
        if (tok_is(ps, "import"))
            return FAIL(ps, "modules are not supported ('import')");
        if (tok_is(ps, "include")) {
            if (next(ps))
                return ps->err;
            if (ps->tok.kind != T_STRING)
                return FAIL(ps, "expected a file name in quotes after 'include'");
            uint8_t *name;
            size_t nlen;
            if (decode_text(ps, &ps->tok, &name, &nlen))
                return ps->err;
            size_t plen = strlen(ps->dir) + nlen + 1;
            char *path = malloc(plen);
            if (path == NULL)
                return nomem(ps);
            if (nlen > 0 && name[0] == '/')
                snprintf(path, plen, "%.*s", (int)nlen, (const char *)name);
            else
                snprintf(path, plen, "%s%.*s", ps->dir, (int)nlen, (const char *)name);
            int rc = parse_file(ps, ps->set, ps->sha, path, ps->diag, ps->depth + 1, &ps->seen,
                                &ps->nseen);
            free(path);
            if (rc) {
                ps->err = rc;
                return rc;
            }
            if (next(ps))
                return ps->err;
            continue;
        }
        if (parse_rule(ps))
            return ps->err;
    }
    return ps->err;
}

/* Lists *.yar / *.yara in a directory, sorted by name. */
static int list_dir(const char *dir, char ***out, size_t *n, engine_diag *diag)
{
    struct dirent **ents;
    int count = scandir(dir, &ents, NULL, alphasort);
    if (count < 0) {
        engine__diag_set(diag, dir, 0, "cannot read directory: %s", strerror(errno));
        return ENGINE_EIO;
    }
    int rc = 0;
    *out = NULL;
    *n = 0;
    for (int i = 0; i < count; i++) {
        const char *name = ents[i]->d_name;
        size_t len = strlen(name);
        bool yar = (len > 4 && strcmp(name + len - 4, ".yar") == 0) ||
                   (len > 5 && strcmp(name + len - 5, ".yara") == 0);
        if (yar && rc == 0) {
            char **p = realloc(*out, (*n + 1) * sizeof(char *));
            size_t plen = strlen(dir) + len + 2;
            char *path = malloc(plen);
            if (p == NULL || path == NULL) {
                free(path);
                if (p)
                    *out = p;
                rc = ENGINE_ENOMEM;
            } else {
                *out = p;
                snprintf(path, plen, "%s/%s", dir, name);
                (*out)[(*n)++] = path;
            }
        }
        free(ents[i]);
    }
    free(ents);
    if (rc == 0 && *n == 0) {
        engine__diag_set(diag, dir, 0, "no *.yar or *.yara files in directory");
        rc = ENGINE_ENOENT;
    }
    return rc;
}

static int finish(engine__ruleset *set, EVP_MD_CTX *sha, int rc, engine_diag *diag)
{
    if (rc == 0) {
        unsigned n = 0;
        EVP_DigestFinal_ex(sha, set->hash, &n);
        if (set->nrules == 0) {
            engine__diag_set(diag, NULL, 0, "no rules defined");
            rc = ENGINE_ERULES;
        }
    }
    EVP_MD_CTX_free(sha);
    return rc;
}

int engine__rules_parse_files(engine__ruleset *set, const char *const *paths, size_t npaths,
                              engine_diag *diag)
{
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    if (sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(sha);
        return ENGINE_ENOMEM;
    }
    int rc = 0;
    char **seen = NULL;
    size_t nseen = 0;
    for (size_t i = 0; i < npaths && rc == 0; i++) {
        struct stat st;
        if (paths[i] == NULL) {
            rc = ENGINE_EINVAL;
            break;
        }
        if (stat(paths[i], &st) != 0) {
            engine__diag_set(diag, paths[i], 0, "cannot open: %s", strerror(errno));
            rc = errno == ENOENT ? ENGINE_ENOENT : ENGINE_EIO;
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            char **files = NULL;
            size_t nfiles = 0;
            rc = list_dir(paths[i], &files, &nfiles, diag);
            for (size_t j = 0; j < nfiles && rc == 0; j++)
                rc = parse_file(NULL, set, sha, files[j], diag, 0, &seen, &nseen);
            for (size_t j = 0; j < nfiles; j++)
                free(files[j]);
            free(files);
        } else {
            rc = parse_file(NULL, set, sha, paths[i], diag, 0, &seen, &nseen);
        }
    }
    free(seen);
    return finish(set, sha, rc, diag);
}

int engine__rules_parse_text(engine__ruleset *set, const char *text, const char *name,
                             engine_diag *diag)
{
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    if (sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(sha);
        return ENGINE_ENOMEM;
    }
    size_t len = strlen(text);
    const char *fname = file_intern(set, name ? name : "<string>");
    if (fname == NULL) {
        EVP_MD_CTX_free(sha);
        return ENGINE_ENOMEM;
    }
    parser ps = {.set = set,
                 .diag = diag,
                 .file = fname,
                 .dir = "",
                 .src = text,
                 .p = text,
                 .end = text + len,
                 .line = 1,
                 .sha = sha};
    EVP_DigestUpdate(sha, text, len);
    EVP_DigestUpdate(sha, "\0", 1);
    int rc = reserve_for(set, len);
    if (rc == 0)
        rc = parse_source(&ps);
    for (size_t i = 0; i < ps.nseen; i++)
        free(ps.seen[i]);
    free(ps.seen);
    return finish(set, sha, rc, diag);
}

/* ------------------------------------------------------------------------------------------ */
/* Condition evaluation.                                                                       */

static int64_t eval_int(const engine__ruleset *set, uint32_t node, const uint32_t *hits,
                        uint64_t filesize)
{
    const engine__node *n = &set->nodes[node];
    switch (n->op) {
    case ENGINE__OP_INT:
        return n->value;
    case ENGINE__OP_COUNT:
        return hits[n->a];
    case ENGINE__OP_FILESIZE:
        return filesize > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)filesize;
    default:
        return 0;
    }
}

static bool eval(const engine__ruleset *set, uint32_t node, const uint32_t *hits, uint64_t filesize)
{
    const engine__node *n = &set->nodes[node];
    switch (n->op) {
    case ENGINE__OP_TRUE:
        return true;
    case ENGINE__OP_FALSE:
        return false;
    case ENGINE__OP_AND:
        return eval(set, n->a, hits, filesize) && eval(set, n->b, hits, filesize);
    case ENGINE__OP_OR:
        return eval(set, n->a, hits, filesize) || eval(set, n->b, hits, filesize);
    case ENGINE__OP_NOT:
        return !eval(set, n->a, hits, filesize);
    case ENGINE__OP_STRING:
        return hits[n->a] > 0;
    case ENGINE__OP_OF: {
        int64_t want = n->value < 0 ? (int64_t)n->nset : n->value;
        int64_t got = 0;
        for (uint32_t i = 0; i < n->nset && got < want; i++)
            got += hits[n->set[i]] > 0;
        return got >= want;
    }
    case ENGINE__OP_CMP: {
        int64_t a = eval_int(set, n->a, hits, filesize), b = eval_int(set, n->b, hits, filesize);
        switch (n->cmp) {
        case ENGINE__CMP_LT:
            return a < b;
        case ENGINE__CMP_LE:
            return a <= b;
        case ENGINE__CMP_GT:
            return a > b;
        case ENGINE__CMP_GE:
            return a >= b;
        case ENGINE__CMP_EQ:
            return a == b;
        case ENGINE__CMP_NE:
            return a != b;
        }
        return false;
    }
    default:
        return false;
    }
}

bool engine__rule_eval(const engine__ruleset *set, const engine__rule *rule, const uint32_t *hits,
                       uint64_t filesize)
{
    return eval(set, rule->root, hits, filesize);
}
