/*
 * rules_compile.c - turns a parsed rule set into Hyperscan databases.
 *
 * Every string becomes one or more patterns: a text string gives its ASCII form and/or its UTF-16LE
 * ("wide") form, a hex string without wildcards is a literal, other hex strings and regular
 * expressions are Hyperscan expressions. Each pattern is validated on its own before the set is
 * compiled, so a bad one is reported against its rule and line. A database whose patterns are all
 * literals goes through the literal API (hs_compile_lit_multi); one that mixes literals with
 * expressions cannot (Hyperscan databases are one or the other), so its literals are escaped to
 * \xHH expressions and Hyperscan's own literal analysis takes over.
 *
 * Four databases come from three plans: block mode over all rules (RAW), block mode over the
 * rules tagged `normalized` with their text strings made caseless (NORM), stream mode over all
 * rules (STREAM; block and stream mode share one plan), and the normalised view's gate
 * (NORM_GATE: NORM's plan narrowed to a gate of every normalized rule, see plan_gate()).
 */
#include "rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

/*
 * The plan of one database: parallel arrays indexed by pattern id. Expressions point into the
 * rule set's strings where they can (borrowed); UTF-16 forms and escaped literals are owned.
 */
typedef struct plan {
    const char **exprs;
    bool *owned;
    size_t *lens;
    unsigned *flags;
    unsigned *ids;
    engine__pattern *pats;
    uint32_t n, cap;
    bool all_literal;
    bool escaped; /* literals already rewritten as \xHH expressions */
} plan;

static void plan_cleanup(plan *p)
{
    for (uint32_t i = 0; i < p->n; i++)
        if (p->owned[i])
            free((void *)(uintptr_t)p->exprs[i]);
    free(p->exprs);
    free(p->owned);
    free(p->lens);
    free(p->flags);
    free(p->ids);
    free(p->pats);
    memset(p, 0, sizeof(*p));
}

/* Grows one parallel array to ncap elements. Returns false when memory ran out. */
static bool plan_grow(void **arr, uint32_t ncap, size_t esz)
{
    void *p = realloc(*arr, ncap * esz);
    if (p == NULL)
        return false;
    *arr = p;
    return true;
}

/*
 * Appends one pattern. expr is borrowed unless owned is true, in which case the plan frees it
 * (also on failure). Returns 0 or ENGINE_ENOMEM.
 */
static int plan_add(plan *p, const uint8_t *expr, size_t len, bool owned, unsigned flags,
                    bool literal, engine__pattern pat)
{
    if (p->n == p->cap) {
        uint32_t ncap = p->cap ? p->cap * 2 : 64;
        if (!plan_grow((void **)&p->exprs, ncap, sizeof(*p->exprs)) ||
            !plan_grow((void **)&p->owned, ncap, sizeof(*p->owned)) ||
            !plan_grow((void **)&p->lens, ncap, sizeof(*p->lens)) ||
            !plan_grow((void **)&p->flags, ncap, sizeof(*p->flags)) ||
            !plan_grow((void **)&p->ids, ncap, sizeof(*p->ids)) ||
            !plan_grow((void **)&p->pats, ncap, sizeof(*p->pats))) {
            if (owned)
                free((void *)(uintptr_t)expr);
            return ENGINE_ENOMEM;
        }
        p->cap = ncap;
    }
    p->exprs[p->n] = (const char *)expr;
    p->owned[p->n] = owned;
    p->lens[p->n] = len;
    p->flags[p->n] = flags;
    p->ids[p->n] = p->n;
    p->pats[p->n] = pat;
    if (!literal)
        p->all_literal = false;
    p->n++;
    return 0;
}

/* The UTF-16LE form of bytes: each byte followed by NUL. */
static uint8_t *widen(const uint8_t *s, size_t n)
{
    uint8_t *w = malloc(2 * n + 1);
    if (w == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        w[2 * i] = s[i];
        w[2 * i + 1] = 0;
    }
    return w;
}

/*
 * Plans the patterns of the all-rules databases (normalized = false: block and stream mode
 * share it) or of the normalized database, of only the strings marked in `only` when it is not
 * NULL. Returns 0 or ENGINE_ENOMEM.
 */
static int plan_db(const engine_rules *rules, bool normalized, const bool *only, plan *p)
{
    const engine__ruleset *set = &rules->set;
    memset(p, 0, sizeof(*p));
    p->all_literal = true;
    /* At most two patterns per string (ASCII and UTF-16 forms): room for all at once. */
    uint32_t want = (uint32_t)(2 * set->nstrings + 1);
    if (!plan_grow((void **)&p->exprs, want, sizeof(*p->exprs)) ||
        !plan_grow((void **)&p->owned, want, sizeof(*p->owned)) ||
        !plan_grow((void **)&p->lens, want, sizeof(*p->lens)) ||
        !plan_grow((void **)&p->flags, want, sizeof(*p->flags)) ||
        !plan_grow((void **)&p->ids, want, sizeof(*p->ids)) ||
        !plan_grow((void **)&p->pats, want, sizeof(*p->pats)))
        return ENGINE_ENOMEM;
    p->cap = want;
    for (size_t i = 0; i < set->nstrings; i++) {
        const engine__string *s = &set->strings[i];
        const engine__rule *r = &set->rules[s->rule];
        if ((normalized && !r->normalized) || (only != NULL && !only[i]))
            continue;
        bool fullword = (s->mods & ENGINE__MOD_FULLWORD) != 0;
        /* No HS_FLAG_SINGLEMATCH: measured, it slows Hyperscan's scan more than the callbacks
         * it saves cost (bench/engine_bench, 1000 rules). */
        unsigned base = 0;
        engine__pattern pat = {
            .string = (uint32_t)i, .len = (uint32_t)s->fixed_len, .fullword = fullword};
        int rc = 0;
        if (s->kind == ENGINE__STR_TEXT || s->literal) {
            unsigned flags = base;
            if ((s->mods & ENGINE__MOD_NOCASE) || normalized)
                flags |= HS_FLAG_CASELESS;
            bool wide = (s->mods & ENGINE__MOD_WIDE) != 0;
            bool ascii = (s->mods & ENGINE__MOD_ASCII) != 0 || !wide;
            /* The normalised view is narrowed text: only ASCII forms apply there. */
            if (normalized) {
                ascii = true;
                wide = false;
            }
            if (ascii)
                rc = plan_add(p, s->text, s->text_len, false, flags, true, pat);
            if (rc == 0 && wide) {
                uint8_t *w = widen(s->text, s->text_len);
                if (w == NULL)
                    return ENGINE_ENOMEM;
                pat.wide = 1;
                pat.len = (uint32_t)(2 * s->text_len);
                rc = plan_add(p, w, 2 * s->text_len, true, flags, true, pat);
            }
        } else {
            rc = plan_add(p, s->text, s->text_len, false, base | s->hs_flags, false, pat);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/*
 * Plans the normalised view's gate. Scanning that view for every string of every normalized rule
 * costs several times what normalising it does, most of it spent on literals whose first or last
 * bytes are common in scripts. But the scanner evaluates each view on that view's hits alone, so
 * a normalized rule can hold on the view only if a string of its gate (rules_parse.c) has a hit
 * there. The gate database holds the union of the normalized rules' cheapest gates (for
 * `$a and any of ($b*)`, just $a); the scanner runs NORM only on a view where it finds something,
 * which changes no verdict. No gate (an empty plan) when some normalized rule may hold without a
 * hit, or when the gates take every string anyway. Returns 0 or ENGINE_ENOMEM.
 */
static int plan_gate(const engine_rules *rules, uint32_t nnorm, plan *p)
{
    const engine__ruleset *set = &rules->set;
    memset(p, 0, sizeof(*p));
    bool *mark = calloc(set->nstrings ? set->nstrings : 1, sizeof(bool));
    if (mark == NULL)
        return ENGINE_ENOMEM;
    for (size_t i = 0; i < set->nrules; i++) {
        const engine__rule *r = &set->rules[i];
        if (!r->normalized)
            continue;
        if (!r->hit_gated) {
            free(mark);
            return 0;
        }
        engine__gate_mark(set, r->root, mark);
    }
    uint32_t ngate = 0;
    for (size_t i = 0; i < set->nstrings; i++)
        ngate += mark[i];
    int rc = ngate < nnorm ? plan_db(rules, true, mark, p) : 0;
    free(mark);
    return rc;
}

/* Rewrites literal patterns of a mixed plan as \xHH expressions. Returns 0 or ENGINE_ENOMEM. */
static int plan_escape_literals(plan *p, const engine__ruleset *set)
{
    if (p->escaped)
        return 0;
    p->escaped = true;
    for (uint32_t i = 0; i < p->n; i++) {
        const engine__string *s = &set->strings[p->pats[i].string];
        if (s->kind != ENGINE__STR_TEXT && !s->literal)
            continue;
        char *e = malloc(4 * p->lens[i] + 1);
        if (e == NULL)
            return ENGINE_ENOMEM;
        for (size_t j = 0; j < p->lens[i]; j++)
            snprintf(e + 4 * j, 5, "\\x%02x", (unsigned char)p->exprs[i][j]);
        if (p->owned[i])
            free((void *)(uintptr_t)p->exprs[i]);
        p->exprs[i] = e;
        p->owned[i] = true;
        p->lens[i] = 4 * p->lens[i];
    }
    return 0;
}

/* Reports a Hyperscan error against the rule and line of pattern i's string. */
static void diag_pattern(const engine_rules *rules, const engine__pattern *pat, engine_diag *diag,
                         const char *what)
{
    const engine__string *s = &rules->set.strings[pat->string];
    const engine__rule *r = &rules->set.rules[s->rule];
    engine__diag_set(diag, r->file, s->line, "rule %s, string $%s: %s", r->name, s->id, what);
}

/*
 * Validates each expression on its own with hs_expression_info(): a pattern Hyperscan cannot
 * handle is reported against its rule. Also learns regex match widths: a fixed-width regex may be
 * counted (#a), a variable-width string may not, because Hyperscan reports match ends and YARA
 * counts match starts. Returns 0, ENGINE_ERULES or ENGINE_ENOMEM.
 */
static int validate_strings(engine_rules *rules, engine_diag *diag)
{
    engine__ruleset *set = &rules->set;
    for (size_t i = 0; i < set->nstrings; i++) {
        engine__string *s = &set->strings[i];
        const engine__rule *r = &set->rules[s->rule];
        if (s->kind != ENGINE__STR_TEXT && !s->literal) {
            hs_expr_info_t *info = NULL;
            hs_compile_error_t *err = NULL;
            if (hs_expression_info((const char *)s->text, s->hs_flags, &info, &err) != HS_SUCCESS) {
                engine__diag_set(diag, r->file, s->line, "rule %s, string $%s: %s", r->name, s->id,
                                 err && err->message ? err->message : "invalid pattern");
                hs_free_compile_error(err);
                return ENGINE_ERULES;
            }
            bool empty = info->min_width == 0;
            if (s->kind == ENGINE__STR_REGEX)
                s->fixed_len = info->max_width == info->min_width ? info->min_width : 0;
            free(info);
            if (empty) {
                engine__diag_set(diag, r->file, s->line,
                                 "rule %s, string $%s: pattern can match the empty string", r->name,
                                 s->id);
                return ENGINE_ERULES;
            }
        }
        if (s->counted && s->fixed_len == 0) {
            engine__diag_set(diag, r->file, s->line,
                             "rule %s: #%s counts a string whose matches vary in length, which "
                             "is not supported",
                             r->name, s->id);
            return ENGINE_ERULES;
        }
    }
    return 0;
}

/* Compiles one planned database (NULL db when the plan is empty). */
static int compile_db(const engine_rules *rules, plan *p, unsigned mode, hs_database_t **out,
                      engine_diag *diag)
{
    *out = NULL;
    if (p->n == 0)
        return 0;
    hs_compile_error_t *err = NULL;
    hs_error_t rc;
    if (p->all_literal) {
        rc = hs_compile_lit_multi(p->exprs, p->flags, p->ids, p->lens, p->n, mode, NULL, out, &err);
    } else {
        int erc = plan_escape_literals(p, &rules->set);
        if (erc)
            return erc;
        rc = hs_compile_multi(p->exprs, p->flags, p->ids, p->n, mode, NULL, out, &err);
    }
    if (rc != HS_SUCCESS) {
        const char *msg = err && err->message ? err->message : "compile failed";
        if (err && err->expression >= 0 && (uint32_t)err->expression < p->n)
            diag_pattern(rules, &p->pats[err->expression], diag, msg);
        else
            engine__diag_set(diag, NULL, 0, "Hyperscan: %s", msg);
        hs_free_compile_error(err);
        return rc == HS_NOMEM ? ENGINE_ENOMEM : ENGINE_ERULES;
    }
    return 0;
}

/* Finds the rules whose condition may hold with no hit at all. */
static int collect_always(engine_rules *rules)
{
    const engine__ruleset *set = &rules->set;
    rules->always_eval = malloc((set->nrules ? set->nrules : 1) * sizeof(uint32_t));
    if (rules->always_eval == NULL)
        return ENGINE_ENOMEM;
    for (size_t i = 0; i < set->nrules; i++) {
        if (!set->rules[i].hit_gated)
            rules->always_eval[rules->nalways++] = (uint32_t)i;
        if (set->rules[i].normalized)
            rules->has_normalized = true;
    }
    return 0;
}

/* Which plan each database is compiled from: block and stream mode share one. */
#define NPLANS 3
static const int plan_of[ENGINE__DB_COUNT] = {0, 1, 0, 2};
static const unsigned db_mode[ENGINE__DB_COUNT] = {HS_MODE_BLOCK, HS_MODE_BLOCK, HS_MODE_STREAM,
                                                   HS_MODE_BLOCK};

/* The cache key: rule text hash, Hyperscan version, platform, and every database's plan. */
static int cache_key(const engine_rules *rules, const plan *plans, uint8_t key[32])
{
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    if (sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(sha);
        return ENGINE_ENOMEM;
    }
    hs_platform_info_t platform;
    memset(&platform, 0, sizeof(platform));
    hs_populate_platform(&platform);
    const char *version = hs_version();
    EVP_DigestUpdate(sha, rules->set.hash, sizeof(rules->set.hash));
    EVP_DigestUpdate(sha, version, strlen(version) + 1);
    EVP_DigestUpdate(sha, &platform, sizeof(platform));
    EVP_DigestUpdate(sha, db_mode, sizeof(db_mode));
    for (int i = 0; i < NPLANS; i++) {
        const plan *p = &plans[i];
        uint32_t head[2] = {p->n, p->all_literal};
        EVP_DigestUpdate(sha, head, sizeof(head));
        for (uint32_t j = 0; j < p->n; j++) {
            uint64_t fields[2] = {p->lens[j], p->flags[j]};
            EVP_DigestUpdate(sha, fields, sizeof(fields));
            EVP_DigestUpdate(sha, p->exprs[j], p->lens[j]);
        }
    }
    unsigned n = 0;
    int ok = EVP_DigestFinal_ex(sha, key, &n);
    EVP_MD_CTX_free(sha);
    return ok == 1 ? 0 : ENGINE_EINTERNAL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int engine__rules_build(engine_rules *rules, const engine_compile_options *options,
                        engine_diag *diag)
{
    int rc = collect_always(rules);
    plan plans[NPLANS] = {0};
    for (int i = 0; i < 2 && rc == 0; i++)
        rc = plan_db(rules, i == 1, NULL, &plans[i]);
    if (rc == 0)
        rc = plan_gate(rules, plans[1].n, &plans[2]);
    const char *dir = options ? options->cache_dir : NULL;
    int cached = 1;
    uint8_t key[32];
    if (rc == 0 && dir != NULL) {
        rc = cache_key(rules, plans, key);
        if (rc == 0)
            cached = engine__cache_load(rules, dir, key);
        if (cached < 0)
            rc = cached;
    }
    /* Validation runs only when compiling: a cache entry exists only for rules that passed. */
    if (rc == 0 && cached != 0)
        rc = validate_strings(rules, diag);
    for (int i = 0; i < ENGINE__DB_COUNT && rc == 0 && cached != 0; i++)
        rc = compile_db(rules, &plans[plan_of[i]], db_mode[i], &rules->dbs[i].db, diag);
    for (int i = 0; i < ENGINE__DB_COUNT && rc == 0; i++) {
        const plan *p = &plans[plan_of[i]];
        rules->dbs[i].npats = p->n;
        rules->dbs[i].pats = malloc((p->n ? p->n : 1) * sizeof(engine__pattern));
        if (rules->dbs[i].pats == NULL)
            rc = ENGINE_ENOMEM;
        else if (p->n)
            memcpy(rules->dbs[i].pats, p->pats, p->n * sizeof(engine__pattern));
    }
    for (int i = 0; i < NPLANS; i++)
        plan_cleanup(&plans[i]);
    /* Best effort: a cache that cannot be written only makes the next start slower. */
    if (rc == 0 && cached != 0 && dir != NULL)
        engine__cache_store(rules, dir, key);
    rules->from_cache = rc == 0 && cached == 0;
    return rc;
}

static int compile_common(engine__ruleset *set, const engine_compile_options *options,
                          engine_rules **out, engine_diag *diag, double start, int rc)
{
    if (rc != 0) {
        engine__ruleset_cleanup(set);
        return rc;
    }
    engine_rules *rules = calloc(1, sizeof(*rules));
    if (rules == NULL) {
        engine__ruleset_cleanup(set);
        return ENGINE_ENOMEM;
    }
    rules->set = *set;
    atomic_init(&rules->refs, 1);
    rc = engine__rules_build(rules, options, diag);
    if (rc != 0) {
        engine_rules_unref(rules);
        return rc;
    }
    rules->compile_ms = now_ms() - start;
    *out = rules;
    return 0;
}

int engine_rules_compile_files(const char *const *paths, size_t npaths,
                               const engine_compile_options *options, engine_rules **out,
                               engine_diag *diag)
{
    if (diag)
        memset(diag, 0, sizeof(*diag));
    if (paths == NULL || npaths == 0 || out == NULL)
        return ENGINE_EINVAL;
    *out = NULL;
    if (engine_check_platform() != 0) {
        engine__diag_set(diag, NULL, 0, "%s", engine_strerror(ENGINE_EPLATFORM));
        return ENGINE_EPLATFORM;
    }
    double start = now_ms();
    engine__ruleset set = {0};
    int rc = engine__rules_parse_files(&set, paths, npaths, diag);
    return compile_common(&set, options, out, diag, start, rc);
}

int engine_rules_compile_string(const char *text, const char *name,
                                const engine_compile_options *options, engine_rules **out,
                                engine_diag *diag)
{
    if (diag)
        memset(diag, 0, sizeof(*diag));
    if (text == NULL || out == NULL)
        return ENGINE_EINVAL;
    *out = NULL;
    if (engine_check_platform() != 0) {
        engine__diag_set(diag, NULL, 0, "%s", engine_strerror(ENGINE_EPLATFORM));
        return ENGINE_EPLATFORM;
    }
    double start = now_ms();
    engine__ruleset set = {0};
    int rc = engine__rules_parse_text(&set, text, name, diag);
    return compile_common(&set, options, out, diag, start, rc);
}

engine_rules *engine_rules_ref(engine_rules *rules)
{
    if (rules != NULL)
        atomic_fetch_add_explicit(&rules->refs, 1, memory_order_relaxed);
    return rules;
}

void engine_rules_unref(engine_rules *rules)
{
    if (rules == NULL)
        return;
    /* Release: our writes happen before the free; acquire: the freeing thread sees them all. */
    if (atomic_fetch_sub_explicit(&rules->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int i = 0; i < ENGINE__DB_COUNT; i++) {
        engine__db_free(&rules->dbs[i]);
        free(rules->dbs[i].pats);
    }
    free(rules->always_eval);
    engine__ruleset_cleanup(&rules->set);
    free(rules);
}

size_t engine_rules_count(const engine_rules *rules)
{
    return rules ? rules->set.nrules : 0;
}

const char *engine_rules_name(const engine_rules *rules, size_t i)
{
    return rules && i < rules->set.nrules ? rules->set.rules[i].name : NULL;
}

void engine_rules_hash(const engine_rules *rules, uint8_t out[32])
{
    if (out == NULL)
        return;
    if (rules == NULL)
        memset(out, 0, 32);
    else
        memcpy(out, rules->set.hash, 32);
}

bool engine_rules_from_cache(const engine_rules *rules)
{
    return rules ? rules->from_cache : false;
}

double engine_rules_compile_ms(const engine_rules *rules)
{
    return rules ? rules->compile_ms : 0.0;
}
