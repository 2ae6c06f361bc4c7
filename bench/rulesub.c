/*
 * rulesub.c - reads the YARA subset of the bundled rules for the peers (see rulesub.h).
 *
 * The reader works on the text with comments blanked out, then walks rule by rule: the header
 * (`rule NAME : tags {`), `meta:` (skipped), `strings:` (each `$id = "text" | { hex } | /re/`
 * with its modifiers), and `condition:` up to the closing brace, which a recursive-descent parser
 * turns into a tree of at most RULESUB_MAX_NODES nodes.
 */
#include "rulesub.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Blanks out // and block comments, leaving strings, hex strings and regexes as they are. */
static void strip_comments(char *t)
{
    char prev_sig = '\0'; /* the last non-blank character outside comments */
    for (char *p = t; *p; p++) {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (!*p)
                return;
            prev_sig = '"';
        } else if (*p == '/' && p[1] == '*') {
            char *e = strstr(p + 2, "*/");
            char *end = e ? e + 2 : p + strlen(p);
            for (; p < end; p++)
                if (*p != '\n')
                    *p = ' ';
            p--;
        } else if (*p == '/' && p[1] == '/') {
            while (*p && *p != '\n')
                *p++ = ' ';
            if (!*p)
                return;
        } else if (*p == '/' && prev_sig == '=') {
            for (p++; *p && *p != '/' && *p != '\n'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (!*p)
                return;
            prev_sig = '/';
        } else if (!isspace((unsigned char)*p)) {
            prev_sig = *p;
        }
    }
}

static const char *skip_ws(const char *p)
{
    while (isspace((unsigned char)*p))
        p++;
    return p;
}

/* Reads an identifier (letters, digits, '_') into out. Returns the end, or NULL when none. */
static const char *ident(const char *p, char *out, size_t cap)
{
    size_t n = 0;
    while (isalnum((unsigned char)p[n]) || p[n] == '_')
        n++;
    if (n == 0 || n >= cap)
        return NULL;
    memcpy(out, p, n);
    out[n] = '\0';
    return p + n;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Reads a "text" string (p at the quote) into s. Returns the end, or NULL. */
static const char *text_string(const char *p, rulesub_string *s)
{
    const char *q = p + 1;
    uint8_t *b = malloc(strlen(q) + 1);
    if (b == NULL)
        return NULL;
    size_t n = 0;
    for (; *q && *q != '"'; q++) {
        if (*q != '\\') {
            b[n++] = (uint8_t)*q;
            continue;
        }
        q++;
        switch (*q) {
        case 'n':
            b[n++] = '\n';
            break;
        case 't':
            b[n++] = '\t';
            break;
        case 'r':
            b[n++] = '\r';
            break;
        case 'x':
            if (hexval(q[1]) < 0 || hexval(q[2]) < 0) {
                free(b);
                return NULL;
            }
            b[n++] = (uint8_t)(hexval(q[1]) * 16 + hexval(q[2]));
            q += 2;
            break;
        case '\0':
            free(b);
            return NULL;
        default:
            b[n++] = (uint8_t)*q;
            break;
        }
    }
    if (*q != '"') {
        free(b);
        return NULL;
    }
    s->kind = RULESUB_TEXT;
    s->bytes = b;
    s->len = n;
    return q + 1;
}

/* Copies the source between delimiters (hex: {..}, regex: /../) into s. Returns the end or NULL. */
static const char *raw_string(const char *p, rulesub_string *s)
{
    const char *q = p + 1;
    char close = *p == '{' ? '}' : '/';
    while (*q && *q != close) {
        if (close == '/' && *q == '\\' && q[1])
            q++;
        q++;
    }
    if (*q != close)
        return NULL;
    s->len = (size_t)(q - p - 1);
    s->bytes = malloc(s->len + 1);
    if (s->bytes == NULL)
        return NULL;
    memcpy(s->bytes, p + 1, s->len);
    s->bytes[s->len] = '\0';
    s->kind = close == '}' ? RULESUB_HEX : RULESUB_REGEX;
    q++;
    if (close == '/')
        for (; *q == 'i' || *q == 's'; q++) {
            if (*q == 'i')
                s->nocase = true;
            else
                s->dotall = true;
        }
    return q;
}

/* ------------------------------------------------------------------------------------------ */
/* Conditions.                                                                                 */

typedef struct cparser {
    rulesub_rule *r;
    const char *p;
    bool ok;
} cparser;

static int node(cparser *c, rulesub_node n)
{
    if (c->r->nnodes == RULESUB_MAX_NODES) {
        c->ok = false;
        return 0;
    }
    c->r->nodes[c->r->nnodes] = n;
    return (int)c->r->nnodes++;
}

/* True (and advances) when the next word is kw. */
static bool word(cparser *c, const char *kw)
{
    const char *p = skip_ws(c->p);
    size_t n = strlen(kw);
    if (strncmp(p, kw, n) != 0 || isalnum((unsigned char)p[n]) || p[n] == '_')
        return false;
    c->p = p + n;
    return true;
}

static bool punct(cparser *c, char ch)
{
    const char *p = skip_ws(c->p);
    if (*p != ch)
        return false;
    c->p = p + 1;
    return true;
}

/* The string named id (a trailing '*' matches a prefix) as a mask; 0 when none. */
static uint64_t strings_named(const rulesub_rule *r, const char *id)
{
    size_t n = strlen(id);
    bool prefix = n > 0 && id[n - 1] == '*';
    uint64_t m = 0;
    for (unsigned i = 0; i < r->nstrings; i++)
        if (prefix ? strncmp(r->strings[i].id, id, n - 1) == 0 : strcmp(r->strings[i].id, id) == 0)
            m |= 1ull << i;
    return m;
}

/* Reads `$id` or `$prefix*` (after the '$' or '#'). */
static uint64_t string_ref(cparser *c, bool allow_prefix)
{
    char id[64];
    const char *e = ident(c->p, id, sizeof(id) - 1);
    if (e == NULL) {
        /* An anonymous "$" or "$*" means every string. */
        if (allow_prefix && *c->p == '*') {
            c->p++;
            return c->r->nstrings >= 64 ? ~0ull : (1ull << c->r->nstrings) - 1;
        }
        c->ok = false;
        return 0;
    }
    c->p = e;
    if (allow_prefix && *c->p == '*') {
        size_t n = strlen(id);
        id[n] = '*';
        id[n + 1] = '\0';
        c->p++;
    }
    uint64_t m = strings_named(c->r, id);
    if (m == 0)
        c->ok = false;
    return m;
}

static int expr(cparser *c);

/* The lowest string in a mask (0 for an empty mask, which the parser has already refused). */
static unsigned first_of(uint64_t m)
{
    return m ? (unsigned)__builtin_ctzll(m) : 0;
}

static int factor(cparser *c)
{
    if (word(c, "not")) {
        int a = factor(c);
        return node(c, (rulesub_node){.op = RULESUB_OP_NOT, .a = a});
    }
    if (punct(c, '(')) {
        int a = expr(c);
        if (!punct(c, ')'))
            c->ok = false;
        return a;
    }
    const char *p = skip_ws(c->p);
    if (*p == '$') {
        c->p = p + 1;
        uint64_t m = string_ref(c, false);
        return node(c, (rulesub_node){.op = RULESUB_OP_STR, .str = first_of(m)});
    }
    if (*p == '#') {
        c->p = p + 1;
        uint64_t m = string_ref(c, false);
        rulesub_node n = {.op = RULESUB_OP_COUNT, .str = first_of(m)};
        p = skip_ws(c->p);
        size_t oplen = (p[1] == '=') ? 2 : 1;
        if (!(strchr("<>=", *p) && *p) || (oplen == 1 && *p == '=')) {
            c->ok = false;
            return 0;
        }
        memcpy(n.cmp, p, oplen);
        char *end;
        n.n = (unsigned)strtoul(p + oplen, &end, 10);
        if (end == p + oplen)
            c->ok = false;
        c->p = end;
        return node(c, n);
    }
    rulesub_node n = {.op = RULESUB_OP_OF};
    if (word(c, "any"))
        n.n = 1;
    else if (word(c, "all"))
        n.n = 0;
    else if (isdigit((unsigned char)*p)) {
        char *end;
        n.n = (unsigned)strtoul(p, &end, 10);
        c->p = end;
    } else {
        c->ok = false;
        return 0;
    }
    if (!word(c, "of")) {
        c->ok = false;
        return 0;
    }
    if (word(c, "them")) {
        n.mask = c->r->nstrings >= 64 ? ~0ull : (1ull << c->r->nstrings) - 1;
    } else if (punct(c, '(')) {
        do {
            if (!punct(c, '$')) {
                c->ok = false;
                return 0;
            }
            n.mask |= string_ref(c, true);
        } while (punct(c, ','));
        if (!punct(c, ')'))
            c->ok = false;
    } else {
        c->ok = false;
    }
    return node(c, n);
}

static int term(cparser *c)
{
    int a = factor(c);
    while (c->ok && word(c, "and")) {
        int b = factor(c);
        a = node(c, (rulesub_node){.op = RULESUB_OP_AND, .a = a, .b = b});
    }
    return a;
}

static int expr(cparser *c)
{
    int a = term(c);
    while (c->ok && word(c, "or")) {
        int b = term(c);
        a = node(c, (rulesub_node){.op = RULESUB_OP_OR, .a = a, .b = b});
    }
    return a;
}

/* ------------------------------------------------------------------------------------------ */
/* Rules.                                                                                      */

static const char *skip_meta(const char *p)
{
    for (;;) {
        p = skip_ws(p);
        char id[64];
        const char *e = ident(p, id, sizeof(id));
        if (e == NULL || *skip_ws(e) != '=')
            return p;
        p = skip_ws(skip_ws(e) + 1);
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (*p)
                p++;
        } else {
            while (*p && !isspace((unsigned char)*p))
                p++;
        }
    }
}

/* Reads the strings section. Returns the end, or NULL. */
static const char *read_strings(const char *p, rulesub_rule *r)
{
    for (;;) {
        p = skip_ws(p);
        if (*p != '$')
            return p;
        if (r->nstrings == RULESUB_MAX_STRINGS)
            return NULL;
        rulesub_string *s = &r->strings[r->nstrings];
        memset(s, 0, sizeof(*s));
        const char *e = ident(p + 1, s->id, sizeof(s->id));
        if (e == NULL)
            return NULL;
        p = skip_ws(e);
        if (*p != '=')
            return NULL;
        p = skip_ws(p + 1);
        e = *p == '"' ? text_string(p, s) : (*p == '{' || *p == '/') ? raw_string(p, s) : NULL;
        if (e == NULL)
            return NULL;
        r->nstrings++;
        p = e;
        for (;;) {
            char mod[32];
            const char *q = skip_ws(p);
            e = ident(q, mod, sizeof(mod));
            if (e == NULL || strcmp(mod, "condition") == 0)
                break;
            if (strcmp(mod, "nocase") == 0)
                s->nocase = true;
            else if (strcmp(mod, "wide") == 0)
                s->wide = true;
            else if (strcmp(mod, "ascii") == 0)
                s->ascii = true;
            else if (strcmp(mod, "fullword") == 0)
                s->fullword = true;
            else if (strcmp(mod, "private") != 0)
                return NULL;
            p = e;
        }
        if (!s->wide)
            s->ascii = true;
    }
}

/* Reads one rule at p (just after the keyword `rule`). Returns the end, or NULL. */
static const char *read_rule(const char *p, rulesub_rule *r)
{
    memset(r, 0, sizeof(*r));
    p = ident(skip_ws(p), r->name, sizeof(r->name));
    if (p == NULL || (p = strchr(p, '{')) == NULL)
        return NULL;
    p++;
    for (;;) {
        char sec[32];
        p = skip_ws(p);
        const char *e = ident(p, sec, sizeof(sec));
        if (e == NULL || *e != ':')
            return NULL;
        p = e + 1;
        if (strcmp(sec, "meta") == 0) {
            p = skip_meta(p);
        } else if (strcmp(sec, "strings") == 0) {
            if ((p = read_strings(p, r)) == NULL)
                return NULL;
        } else if (strcmp(sec, "condition") == 0) {
            const char *end = strchr(p, '}');
            if (end == NULL)
                return NULL;
            char *text = strndup(p, (size_t)(end - p));
            if (text == NULL)
                return NULL;
            cparser c = {.r = r, .p = text, .ok = true};
            r->root = expr(&c);
            r->cond_ok = c.ok && *skip_ws(c.p) == '\0';
            free(text);
            return end + 1;
        } else {
            return NULL;
        }
    }
}

int rulesub_load(rulesub *rs, const char *path)
{
    *rs = (rulesub){0};
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "amsibench: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    char buf[65536];
    size_t n;
    while (m && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, m);
    fclose(f);
    if (m == NULL || fclose(m) != 0) {
        free(text);
        return -1;
    }
    strip_comments(text);
    size_t cap = 0;
    int rc = 0;
    for (const char *p = text; (p = strstr(p, "rule")) != NULL;) {
        bool word_start = p == text || !(isalnum((unsigned char)p[-1]) || p[-1] == '_');
        if (!word_start || !isspace((unsigned char)p[4])) {
            p += 4;
            continue;
        }
        if (rs->n == cap) {
            cap = cap ? 2 * cap : 64;
            rulesub_rule *nr = realloc(rs->rules, cap * sizeof(*nr));
            if (nr == NULL) {
                rc = -1;
                break;
            }
            rs->rules = nr;
        }
        const char *e = read_rule(p + 4, &rs->rules[rs->n]);
        if (e == NULL) {
            fprintf(stderr, "amsibench: cannot follow the rule at offset %zu of %s\n",
                    (size_t)(p - text), path);
            rs->n++;
            rc = -1;
            break;
        }
        rs->n++;
        p = e;
    }
    free(text);
    if (rc != 0)
        rulesub_cleanup(rs);
    return rc;
}

void rulesub_cleanup(rulesub *rs)
{
    for (size_t i = 0; rs->rules && i < rs->n; i++)
        for (unsigned j = 0; j < rs->rules[i].nstrings; j++)
            free(rs->rules[i].strings[j].bytes);
    free(rs->rules);
    *rs = (rulesub){0};
}

static bool eval_node(const rulesub_rule *r, int i, const uint32_t *counts)
{
    const rulesub_node *n = &r->nodes[i];
    switch (n->op) {
    case RULESUB_OP_OR:
        return eval_node(r, n->a, counts) || eval_node(r, n->b, counts);
    case RULESUB_OP_AND:
        return eval_node(r, n->a, counts) && eval_node(r, n->b, counts);
    case RULESUB_OP_NOT:
        return !eval_node(r, n->a, counts);
    case RULESUB_OP_STR:
        return counts[n->str] > 0;
    case RULESUB_OP_COUNT: {
        uint32_t v = counts[n->str];
        if (n->cmp[0] == '>')
            return n->cmp[1] == '=' ? v >= n->n : v > n->n;
        if (n->cmp[0] == '<')
            return n->cmp[1] == '=' ? v <= n->n : v < n->n;
        return v == n->n;
    }
    case RULESUB_OP_OF: {
        unsigned have = 0, total = 0;
        for (unsigned s = 0; s < r->nstrings; s++)
            if (n->mask >> s & 1u) {
                total++;
                have += counts[s] > 0;
            }
        return have >= (n->n ? n->n : total);
    }
    }
    return false;
}

bool rulesub_eval(const rulesub_rule *r, const uint32_t *counts)
{
    return r->cond_ok && r->nnodes > 0 && eval_node(r, r->root, counts);
}

/* ------------------------------------------------------------------------------------------ */
/* Output forms.                                                                               */

typedef struct out {
    char *p;
    size_t cap, n;
    bool ok;
} out;

static void put(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(o->p + o->n, o->n < o->cap ? o->cap - o->n : 0, fmt, ap);
    va_end(ap);
    if (w < 0 || o->n + (size_t)w >= o->cap)
        o->ok = false;
    else
        o->n += (size_t)w;
}

/* A YARA hex string as ClamAV hex (same tokens, `[n-m]` jumps as `{n-m}`). */
static bool hex_to_clamav(const rulesub_string *s, out *o)
{
    for (const char *p = (const char *)s->bytes; *p; p++) {
        if (isspace((unsigned char)*p))
            continue;
        if (isxdigit((unsigned char)*p) || *p == '?')
            put(o, "%c", tolower((unsigned char)*p));
        else if (*p == '(' || *p == ')' || *p == '|')
            put(o, "%c", *p);
        else if (*p == '[') {
            const char *e = strchr(p, ']');
            if (e == NULL)
                return false;
            put(o, "{");
            for (p++; p < e; p++)
                if (!isspace((unsigned char)*p))
                    put(o, "%c", *p);
            put(o, "}");
        } else {
            return false;
        }
    }
    return true;
}

/* The subsignature index list of a mask, joined with sep. */
static void mask_list(out *o, uint64_t mask, const char *sep)
{
    bool first = true;
    for (unsigned i = 0; i < 64; i++)
        if (mask >> i & 1u) {
            put(o, "%s%u", first ? "" : sep, i);
            first = false;
        }
}

static bool ldb_node(const rulesub_rule *r, int i, out *o)
{
    const rulesub_node *n = &r->nodes[i];
    switch (n->op) {
    case RULESUB_OP_OR:
    case RULESUB_OP_AND:
        put(o, "(");
        if (!ldb_node(r, n->a, o))
            return false;
        put(o, n->op == RULESUB_OP_OR ? "|" : "&");
        if (!ldb_node(r, n->b, o))
            return false;
        put(o, ")");
        return true;
    case RULESUB_OP_NOT:
        return false;
    case RULESUB_OP_STR:
        put(o, "%u", n->str);
        return true;
    case RULESUB_OP_COUNT:
        if (strcmp(n->cmp, ">=") == 0 && n->n > 0)
            put(o, "%u>%u", n->str, n->n - 1);
        else if (strcmp(n->cmp, ">") == 0)
            put(o, "%u>%u", n->str, n->n);
        else if (strcmp(n->cmp, "==") == 0)
            put(o, "%u=%u", n->str, n->n);
        else
            return false;
        return true;
    case RULESUB_OP_OF:
        put(o, n->n > 1 ? "((" : "(");
        mask_list(o, n->mask, n->n == 0 ? "&" : "|");
        put(o, ")");
        if (n->n > 1)
            put(o, ">%u,%u)", n->n - 1, n->n);
        return true;
    }
    return false;
}

int rulesub_to_ldb(const rulesub_rule *r, char *buf, size_t cap)
{
    if (!r->cond_ok || r->nstrings == 0)
        return -1;
    out o = {.p = buf, .cap = cap, .ok = true};
    put(&o, "%s;Engine:81-255,Target:0;", r->name);
    if (!ldb_node(r, r->root, &o))
        return -1;
    for (unsigned i = 0; i < r->nstrings; i++) {
        const rulesub_string *s = &r->strings[i];
        put(&o, ";");
        if (s->kind == RULESUB_REGEX)
            return -1;
        if (s->kind == RULESUB_HEX) {
            if (!hex_to_clamav(s, &o))
                return -1;
            continue;
        }
        for (size_t k = 0; k < s->len; k++)
            put(&o, "%02x", s->bytes[k]);
        if (s->nocase || s->wide || s->fullword) {
            put(&o, "::");
            if (s->nocase)
                put(&o, "i");
            if (s->wide)
                put(&o, s->ascii ? "wa" : "w");
            if (s->fullword)
                put(&o, "f");
        }
    }
    return o.ok ? 0 : -1;
}

/* Hyperscan's flag values, repeated here so this file needs no Hyperscan header. */
#define RULESUB_HS_CASELESS 1u
#define RULESUB_HS_DOTALL   2u

int rulesub_to_hs(const rulesub_string *s, bool wide, char *buf, size_t cap, unsigned *flags)
{
    out o = {.p = buf, .cap = cap, .ok = true};
    *flags = (s->nocase ? RULESUB_HS_CASELESS : 0) | (s->dotall ? RULESUB_HS_DOTALL : 0);
    if (s->kind == RULESUB_REGEX) {
        put(&o, "%s", (const char *)s->bytes);
        return o.ok ? 0 : -1;
    }
    if (s->kind == RULESUB_TEXT) {
        for (size_t k = 0; k < s->len; k++)
            put(&o, wide ? "\\x%02x\\x00" : "\\x%02x", s->bytes[k]);
        return o.ok ? 0 : -1;
    }
    *flags |= RULESUB_HS_DOTALL;
    for (const char *p = (const char *)s->bytes; *p; p++) {
        if (isspace((unsigned char)*p))
            continue;
        if (*p == '(') {
            put(&o, "(?:");
        } else if (*p == ')' || *p == '|') {
            put(&o, "%c", *p);
        } else if (*p == '[') {
            unsigned lo = 0, hi = 0;
            int got = sscanf(p, "[%u-%u]", &lo, &hi);
            const char *e = strchr(p, ']');
            if (e == NULL)
                return -1;
            if (got == 2)
                put(&o, ".{%u,%u}", lo, hi);
            else if (got == 1 && memchr(p, '-', (size_t)(e - p)))
                put(&o, ".{%u,}", lo);
            else if (got == 1)
                put(&o, ".{%u}", lo);
            else
                put(&o, ".*");
            p = e;
        } else if (p[1] != '\0') {
            int h = hexval(p[0]), l = hexval(p[1]);
            if (h >= 0 && l >= 0)
                put(&o, "\\x%02x", h * 16 + l);
            else if (h < 0 && l < 0)
                put(&o, ".");
            else {
                put(&o, "[");
                for (int v = 0; v < 16; v++)
                    put(&o, "\\x%02x", h < 0 ? v * 16 + l : h * 16 + v);
                put(&o, "]");
            }
            p++;
        } else {
            return -1;
        }
    }
    return o.ok ? 0 : -1;
}
