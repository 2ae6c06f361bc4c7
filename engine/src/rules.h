/*
 * rules.h - the engine's private rule representation, shared by the parser (rules_parse.c), the
 * compiler (rules_compile.c), the cache (cache.c) and the scanner (scan.c).
 *
 * A parsed rule set is a flat arena: rules point into one array of strings (global string index =
 * position in that array) and one array of condition nodes. The compiler turns each string into one
 * or more Hyperscan patterns; a pattern id indexes engine__pattern, which says which string it
 * counts for and how to check `fullword`. After a scan, conditions are evaluated on the per-string
 * hit counts.
 */
#ifndef ENGINE_RULES_H
#define ENGINE_RULES_H

#include "engine/engine.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hs.h>

typedef enum engine__str_kind {
    ENGINE__STR_TEXT = 0,
    ENGINE__STR_HEX = 1,
    ENGINE__STR_REGEX = 2,
} engine__str_kind;

#define ENGINE__MOD_NOCASE   0x01u
#define ENGINE__MOD_ASCII    0x02u
#define ENGINE__MOD_WIDE     0x04u
#define ENGINE__MOD_FULLWORD 0x08u
#define ENGINE__MOD_PRIVATE  0x10u

/* One string of one rule. */
typedef struct engine__string {
    char *id; /* without the '$'; "" for an anonymous string */
    engine__str_kind kind;
    unsigned mods; /* ENGINE__MOD_* */
    uint8_t *text; /* TEXT: the literal bytes; HEX/REGEX: a Hyperscan expression */
    size_t text_len;
    unsigned hs_flags; /* HEX/REGEX: flags for the expression */
    size_t fixed_len;  /* length in bytes of every match (ASCII form), 0 when it varies */
    bool literal;      /* HEX without wildcards was turned into literal bytes in text */
    bool counted;      /* some condition uses #id */
    uint32_t rule;     /* index of the owning rule */
    unsigned line;
} engine__string;

typedef enum engine__op {
    ENGINE__OP_TRUE,
    ENGINE__OP_FALSE,
    ENGINE__OP_AND,      /* a, b: node indices */
    ENGINE__OP_OR,       /* a, b */
    ENGINE__OP_NOT,      /* a */
    ENGINE__OP_STRING,   /* a: global string index; true when it has a hit */
    ENGINE__OP_OF,       /* value: how many (-1 = all); set/nset: global string indices */
    ENGINE__OP_CMP,      /* cmp: comparison; a, b: integer nodes */
    ENGINE__OP_INT,      /* value */
    ENGINE__OP_COUNT,    /* a: global string index; its hit count */
    ENGINE__OP_FILESIZE, /* the scanned object's size */
} engine__op;

typedef enum engine__cmp {
    ENGINE__CMP_LT,
    ENGINE__CMP_LE,
    ENGINE__CMP_GT,
    ENGINE__CMP_GE,
    ENGINE__CMP_EQ,
    ENGINE__CMP_NE,
} engine__cmp;

typedef struct engine__node {
    engine__op op;
    engine__cmp cmp;
    uint32_t a, b;
    int64_t value;
    uint32_t *set;
    uint32_t nset;
} engine__node;

typedef struct engine__meta {
    char *key;
    char *value; /* as text; strings unquoted and unescaped */
} engine__meta;

typedef struct engine__rule {
    char *name;
    const char *file; /* one of engine__ruleset.files */
    unsigned line;
    char **tags;
    size_t ntags;
    engine__meta *meta;
    size_t nmeta;
    uint32_t first_string; /* global index of its first string */
    uint32_t nstrings;
    uint32_t root;   /* condition root node */
    bool normalized; /* tag `normalized`: also matched against the normalised view */
    bool hit_gated;  /* the condition is false whenever none of its strings has a hit */
    bool any_hit;    /* the condition holds as soon as any of its strings has a hit */
} engine__rule;

/* The parsed rule set: everything the parser produced, owned by one object. */
typedef struct engine__ruleset {
    engine__rule *rules;
    size_t nrules, caprules;
    engine__string *strings;
    size_t nstrings, capstrings;
    engine__node *nodes;
    size_t nnodes, capnodes;
    uint8_t hash[32]; /* SHA-256 over every file's text, in the order read */
    char **files;     /* every file read (or the text's name), owned here */
    size_t nfiles;
    struct engine__arena_chunk *arena; /* names, ids, texts, meta, sets (rules_parse.c) */
    uint32_t *names;  /* open-addressing index of rule names: rule index + 1, 0 = empty */
    size_t names_cap; /* a power of two, at least twice nrules */
} engine__ruleset;

/*
 * Parses rule files or a rule text into *set (zeroed by the caller). Exactly one of paths/text is
 * used. Returns 0 or ENGINE_ERULES/ENGINE_EIO/ENGINE_ENOENT/ENGINE_ENOMEM with diag filled.
 * The set is released with engine__ruleset_cleanup() in every case.
 */
int engine__rules_parse_files(engine__ruleset *set, const char *const *paths, size_t npaths,
                              engine_diag *diag);
int engine__rules_parse_text(engine__ruleset *set, const char *text, const char *name,
                             engine_diag *diag);
void engine__ruleset_cleanup(engine__ruleset *set);

/* Evaluates a rule's condition over per-string hit counts and the object size. Can't fail. */
bool engine__rule_eval(const engine__ruleset *set, const engine__rule *rule, const uint32_t *hits,
                       uint64_t filesize);

/*
 * The gate of condition subtree `node` (see rules_parse.c): engine__gate_cost() returns its cost,
 * HUGE_VAL when the subtree may hold with no hit at all; engine__gate_mark() sets mark[i] (by
 * global string index) for every string of the gate it chose. Can't fail.
 */
double engine__gate_cost(const engine__ruleset *set, uint32_t node);
void engine__gate_mark(const engine__ruleset *set, uint32_t node, bool *mark);

/* Fills diag with "file:line: reason". */
void engine__diag_set(engine_diag *diag, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* What one Hyperscan pattern id stands for. */
typedef struct engine__pattern {
    uint32_t string;  /* global string index */
    uint32_t len;     /* match length in bytes when fixed, else 0 */
    uint8_t wide;     /* the UTF-16LE form of a text string */
    uint8_t fullword; /* check the bytes around the match */
} engine__pattern;

/* A compiled database and the patterns behind its ids. */
typedef struct engine__db {
    hs_database_t *db;     /* NULL when it has no patterns */
    engine__pattern *pats; /* indexed by Hyperscan id */
    uint32_t npats;
    size_t mapped; /* > 0: db lives in an anonymous mapping of this size (cache.c) */
} engine__db;

/* Frees a database however it was allocated. Accepts an empty one. */
void engine__db_free(engine__db *db);

/*
 * Which database: block mode over all rules, block mode over the normalized rules, stream mode,
 * and the normalised view's gate (block mode over a gate of every normalized rule; no database
 * when some normalized rule has no gate, or its gate is all its strings).
 */
enum {
    ENGINE__DB_RAW = 0,
    ENGINE__DB_NORM = 1,
    ENGINE__DB_STREAM = 2,
    ENGINE__DB_NORM_GATE = 3,
    ENGINE__DB_COUNT = 4
};

struct engine_rules {
    atomic_uint refs;
    engine__ruleset set;
    engine__db dbs[ENGINE__DB_COUNT];
    uint32_t *always_eval; /* rules whose condition may hold without any hit */
    size_t nalways;
    bool has_normalized;
    bool from_cache;
    double compile_ms;
};

/*
 * Builds the pattern tables for every database of rules->set (cheap, deterministic) and either
 * loads the databases from the cache or compiles them (then stores them in the cache).
 */
int engine__rules_build(engine_rules *rules, const engine_compile_options *options,
                        engine_diag *diag);

/*
 * Cache (cache.c). The key is the SHA-256 of the rule text hash, the Hyperscan version, the
 * platform and the compile plan of every database, so any change to any of them misses.
 * engine__cache_load() fills rules->dbs[*].db and returns 0 on a hit, 1 on a miss or an unusable
 * entry (which is then ignored), or ENGINE_ENOMEM. engine__cache_store() writes an entry
 * atomically (temporary file + rename); it is best effort and returns 0 or a negative code.
 */
int engine__cache_load(engine_rules *rules, const char *dir, const uint8_t key[32]);
int engine__cache_store(const engine_rules *rules, const char *dir, const uint8_t key[32]);

#endif
