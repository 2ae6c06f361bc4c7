/*
 * rulesub.h - the bundled YARA rules as amsibench's peers need them. The raw Hyperscan peer and
 * the clamd peer cannot read YARA, so this reads the subset the rule files use (text strings with
 * nocase/wide/ascii/fullword, hex strings, regular expressions; conditions of and/or/not,
 * parentheses, `$s`, `#s OP N`, `any|all|N of them|($a, $p*)`) into a plain model: each rule's
 * strings as bytes or patterns, and its condition as a small tree that can be evaluated on the set
 * of strings that matched, or written as a ClamAV logical signature.
 *
 * A rule whose condition uses anything else (filesize, offsets, functions) is kept with
 * `cond_ok = false`: its strings are still scanned, it never reports a match.
 */
#ifndef BENCH_RULESUB_H
#define BENCH_RULESUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RULESUB_MAX_STRINGS 64
#define RULESUB_MAX_NODES   128

typedef enum rulesub_string_kind { RULESUB_TEXT, RULESUB_HEX, RULESUB_REGEX } rulesub_string_kind;

typedef struct rulesub_string {
    char id[64]; /* without the '$' */
    rulesub_string_kind kind;
    uint8_t *bytes; /* TEXT: the unescaped bytes; HEX and REGEX: the source between delimiters */
    size_t len;
    bool nocase, wide, ascii, fullword, dotall;
} rulesub_string;

typedef enum rulesub_op {
    RULESUB_OP_OR,
    RULESUB_OP_AND,
    RULESUB_OP_NOT,
    RULESUB_OP_STR,   /* string `str` matched */
    RULESUB_OP_COUNT, /* #str cmp n */
    RULESUB_OP_OF,    /* at least n (0: all) of the strings in mask */
} rulesub_op;

typedef struct rulesub_node {
    rulesub_op op;
    int a, b;      /* children (node indexes) */
    unsigned str;  /* STR, COUNT */
    char cmp[3];   /* COUNT: ">=", ">", "==", "<=", "<" */
    unsigned n;    /* COUNT: the number; OF: how many (0 = all) */
    uint64_t mask; /* OF: the strings */
} rulesub_node;

typedef struct rulesub_rule {
    char name[128];
    rulesub_string strings[RULESUB_MAX_STRINGS];
    unsigned nstrings;
    rulesub_node nodes[RULESUB_MAX_NODES];
    unsigned nnodes;
    int root;
    bool cond_ok;
} rulesub_rule;

typedef struct rulesub {
    rulesub_rule *rules;
    size_t n;
} rulesub;

/*
 * Reads the rule file at path. Returns 0, or -1 with a message on stderr (unreadable, or a rule
 * this reader cannot follow at all). Free with rulesub_cleanup().
 */
int rulesub_load(rulesub *rs, const char *path);
void rulesub_cleanup(rulesub *rs);
/*
 * Evaluates a rule's condition given each string's match count (counts[i] for string i).
 * False when the condition is outside the subset.
 */
bool rulesub_eval(const rulesub_rule *r, const uint32_t *counts);
/*
 * Writes rule r as one ClamAV logical signature line (.ldb) into out. Returns 0, or -1 when the
 * rule has no ClamAV form here (a regular expression, `not`, a condition outside the subset) or
 * out is too small.
 */
int rulesub_to_ldb(const rulesub_rule *r, char *out, size_t cap);
/*
 * Writes string s as a Hyperscan expression into out (text as \xHH literals, hex strings as
 * byte classes and bounded repeats, regular expressions as they are) and its flags (caseless,
 * dotall). A wide text string gives its UTF-16LE form; ascii+wide strings need two calls
 * (wide = false, then true). Returns 0 or -1 (out too small).
 */
int rulesub_to_hs(const rulesub_string *s, bool wide, char *out, size_t cap, unsigned *flags);

#endif
