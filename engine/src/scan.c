/*
 * scan.c - scanning: per-thread scratch, the match callback, condition evaluation, the object
 * pipeline (raw bytes, UTF-16 narrowed view, normalised view, decoded children) and streams.
 *
 * How a view is scanned: Hyperscan calls on_match() for every pattern match; the callback checks
 * `fullword` (exactly as YARA: the byte before and after, or the UTF-16 character before and after,
 * must not be an ASCII letter or digit), then bumps the saturating hit count of the pattern's
 * string and remembers the string the first time it is hit. After the scan only rules that own a
 * touched string, plus the few rules whose condition can hold without any hit (`not $a`,
 * `filesize < 10`, `true`), are evaluated; then the touched counts are reset. Nothing is cleared
 * in proportion to the rule set, so a scan costs what its input and its matches cost.
 *
 * Objects: the scan stops descending as soon as something is detected (AMSI needs one verdict);
 * every rule that matched the views scanned so far is reported.
 */
#include "rules.h"
#include "text.h"
#include "unpack.h"

#include <limits.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* The largest max_decode_depth the configuration accepts (engine/src/config.c). */
#define ENGINE__MAX_DECODE_DEPTH 16

/*
 * Buffers kept by a scratch between scans (narrowed and normalised views, and unpacked members
 * held whole): how many nested objects may hold one at once, and how many bytes the kept ones may
 * total. A buffer for an object nested deeper, or one that would push the total past the bound,
 * is its own and is freed after use.
 */
#define VIEW_SLOTS    8
#define VIEW_KEEP_MAX ((size_t)64 << 20)

/* View buffers from this size on are 2 MiB-aligned and advised as huge pages. */
#define VIEW_HUGE ((size_t)2 << 20)

/* ------------------------------------------------------------------------------------------ */
/* Scratch.                                                                                    */

struct engine_scratch {
    hs_scratch_t *hs;
    const hs_database_t *prepared[ENGINE__DB_COUNT];
    uint32_t *hits;    /* per string; all zero between scans */
    uint32_t *touched; /* strings hit in the current view */
    size_t ntouched;
    size_t cap_strings;
    uint32_t *rule_mark; /* == view_epoch: evaluated in this view */
    uint32_t *rule_done; /* == req_epoch: already reported in this request */
    uint32_t *matched;   /* rules that hold in the current view */
    size_t cap_rules;
    uint32_t view_epoch;
    uint32_t req_epoch;
    uint8_t *decode_buf[ENGINE__MAX_DECODE_DEPTH]; /* decoded base64, one buffer per depth */
    size_t decode_cap[ENGINE__MAX_DECODE_DEPTH];
    uint8_t *view_buf[VIEW_SLOTS]; /* view buffers, used last in, first out */
    size_t view_cap[VIEW_SLOTS];
    size_t view_kept; /* sum of view_cap */
    unsigned view_used;
};

/* A Hyperscan error as the engine's. */
static int hs_failure(hs_error_t rc)
{
    return rc == HS_NOMEM ? ENGINE_ENOMEM : ENGINE_EHYPERSCAN;
}

/* Makes the scratch fit `rules`: arrays and Hyperscan scratch. Returns 0 or a negative code. */
static int scratch_prepare(engine_scratch *s, const engine_rules *rules)
{
    size_t ns = rules->set.nstrings ? rules->set.nstrings : 1;
    size_t nr = rules->set.nrules ? rules->set.nrules : 1;
    if (ns > s->cap_strings) {
        uint32_t *h = calloc(ns, sizeof(uint32_t));
        uint32_t *t = malloc(ns * sizeof(uint32_t));
        if (h == NULL || t == NULL) {
            free(h);
            free(t);
            return ENGINE_ENOMEM;
        }
        free(s->hits);
        free(s->touched);
        s->hits = h;
        s->touched = t;
        s->cap_strings = ns;
    }
    if (nr > s->cap_rules) {
        uint32_t *m = calloc(nr, sizeof(uint32_t));
        uint32_t *d = calloc(nr, sizeof(uint32_t));
        uint32_t *x = malloc(nr * sizeof(uint32_t));
        if (m == NULL || d == NULL || x == NULL) {
            free(m);
            free(d);
            free(x);
            return ENGINE_ENOMEM;
        }
        free(s->rule_mark);
        free(s->rule_done);
        free(s->matched);
        s->rule_mark = m;
        s->rule_done = d;
        s->matched = x;
        s->cap_rules = nr;
        s->view_epoch = s->req_epoch = 0;
    }
    for (int i = 0; i < ENGINE__DB_COUNT; i++) {
        const hs_database_t *db = rules->dbs[i].db;
        if (db == NULL || s->prepared[i] == db)
            continue;
        hs_error_t rc = hs_alloc_scratch(db, &s->hs);
        if (rc != HS_SUCCESS)
            return hs_failure(rc);
        s->prepared[i] = db;
    }
    return 0;
}

int engine_scratch_create(const engine_rules *rules, engine_scratch **out)
{
    if (rules == NULL || out == NULL)
        return ENGINE_EINVAL;
    *out = NULL;
    engine_scratch *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return ENGINE_ENOMEM;
    int rc = scratch_prepare(s, rules);
    if (rc != 0) {
        engine_scratch_destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

void engine_scratch_destroy(engine_scratch *s)
{
    if (s == NULL)
        return;
    hs_free_scratch(s->hs);
    free(s->hits);
    free(s->touched);
    free(s->rule_mark);
    free(s->rule_done);
    free(s->matched);
    for (int i = 0; i < ENGINE__MAX_DECODE_DEPTH; i++)
        free(s->decode_buf[i]);
    for (int i = 0; i < VIEW_SLOTS; i++)
        free(s->view_buf[i]);
    free(s);
}

/* Decode buffers up to this size stay with the scratch when it is trimmed (the common case). */
#define DECODE_KEEP_TRIMMED ((size_t)64 << 10)

size_t engine_scratch_trim(engine_scratch *s)
{
    size_t freed = 0;
    if (s == NULL || s->view_used != 0)
        return 0;
    for (int i = 0; i < VIEW_SLOTS; i++) {
        freed += s->view_cap[i];
        free(s->view_buf[i]);
        s->view_buf[i] = NULL;
        s->view_cap[i] = 0;
    }
    s->view_kept = 0;
    for (int i = 0; i < ENGINE__MAX_DECODE_DEPTH; i++) {
        if (s->decode_cap[i] <= DECODE_KEEP_TRIMMED)
            continue;
        freed += s->decode_cap[i];
        free(s->decode_buf[i]);
        s->decode_buf[i] = NULL;
        s->decode_cap[i] = 0;
    }
    return freed;
}

/*
 * Allocates a view buffer of cap bytes. From VIEW_HUGE on it is 2 MiB-aligned and advised as
 * huge pages: a view is written once, front to back, and on a virtual machine the faults of
 * 4 KiB pages cost more than producing the view (see unpack_archive.c's member buffers).
 * Returns NULL when memory ran out.
 */
static uint8_t *view_alloc(size_t cap)
{
    if (cap < VIEW_HUGE)
        return malloc(cap);
    void *p = NULL;
    size_t rounded = (cap + VIEW_HUGE - 1) & ~(VIEW_HUGE - 1);
    if (posix_memalign(&p, VIEW_HUGE, rounded) != 0)
        return NULL;
    madvise(p, rounded, MADV_HUGEPAGE);
    return p;
}

/*
 * Makes the buffer of a slot hold at least cap bytes, keeping the first len bytes of old (the
 * buffer the caller had from this slot, or NULL). A slot keeps its buffer between scans, so a
 * request of the size the last one had costs nothing: fresh large buffers cost a page fault per
 * page on every scan, which on the benchmark machine was the largest part of the normalised
 * view's cost and a good part of an unpacked member's. A slot past VIEW_SLOTS, or a buffer that
 * would take the kept total past VIEW_KEEP_MAX, is not kept: the caller's release frees it.
 * Returns NULL when memory ran out (old is then untouched).
 */
static uint8_t *pool_reserve(engine_scratch *s, unsigned slot, uint8_t *old, size_t len, size_t cap)
{
    bool kept = slot < VIEW_SLOTS && s->view_buf[slot] != NULL;
    if (kept && s->view_cap[slot] >= cap && (old == NULL || old == s->view_buf[slot]))
        return s->view_buf[slot];
    uint8_t *p = view_alloc(cap);
    if (p == NULL)
        return NULL;
    if (len > 0)
        memcpy(p, old, len);
    if (old != NULL && !(kept && old == s->view_buf[slot]))
        free(old);
    if (slot >= VIEW_SLOTS)
        return p;
    if (kept) {
        s->view_kept -= s->view_cap[slot];
        free(s->view_buf[slot]);
        s->view_buf[slot] = NULL;
        s->view_cap[slot] = 0;
    }
    if (s->view_kept + cap <= VIEW_KEEP_MAX) {
        s->view_buf[slot] = p;
        s->view_cap[slot] = cap;
        s->view_kept += cap;
    }
    return p;
}

/* Frees p unless the slot keeps it. Can't fail. */
static void pool_drop(engine_scratch *s, unsigned slot, uint8_t *p)
{
    if (slot >= VIEW_SLOTS || p != s->view_buf[slot])
        free(p);
}

/*
 * A view buffer of at least cap bytes for the object being scanned, from the next slot; released
 * with view_release() in reverse order of acquisition (nested objects take the slots after
 * their parent's). Returns NULL when memory ran out; the slot must still be released.
 */
static uint8_t *view_acquire(engine_scratch *s, size_t cap)
{
    return pool_reserve(s, s->view_used++, NULL, 0, cap);
}

/* Gives back the slot view_acquire() took last, and its buffer p (NULL is fine). */
static void view_release(engine_scratch *s, uint8_t *p)
{
    pool_drop(s, --s->view_used, p);
}

/* Next epoch for a mark array; on wrap the array is cleared so stale marks cannot collide. */
static uint32_t next_epoch(uint32_t *epoch, uint32_t *marks, size_t n)
{
    if (++*epoch == 0) {
        memset(marks, 0, n * sizeof(uint32_t));
        *epoch = 1;
    }
    return *epoch;
}

/* ------------------------------------------------------------------------------------------ */
/* Result memory: an arena freed in one call.                                                  */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} arena_chunk;

static void *arena_alloc(engine_result *res, size_t n)
{
    n = (n + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    arena_chunk *c = res->arena__;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > 4096 ? n : 4096;
        arena_chunk *nc = malloc(sizeof(*nc) + cap);
        if (nc == NULL)
            return NULL;
        nc->next = c;
        nc->used = 0;
        nc->cap = cap;
        res->arena__ = nc;
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static char *arena_strdup(engine_result *res, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = arena_alloc(res, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void engine_result_cleanup(engine_result *res)
{
    if (res == NULL)
        return;
    arena_chunk *c = res->arena__;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(res->matches);
    memset(res, 0, sizeof(*res));
}

static void result_init(engine_result *res)
{
    memset(res, 0, sizeof(*res));
    res->verdict = ENGINE_VERDICT_CLEAN;
    res->amsi_result = ENGINE_AMSI_NOT_DETECTED;
}

/* An object in the tree being scanned; its path is built only when something matches in it. */
typedef struct object {
    const struct object *parent;
    const char *name;
} object;

/* Writes the path of o ("root>child>...") into the arena. */
static char *object_path(engine_result *res, const object *o)
{
    size_t n = 0;
    for (const object *p = o; p; p = p->parent)
        n += strlen(p->name) + 1;
    char *path = arena_alloc(res, n);
    if (path == NULL)
        return NULL;
    size_t end = n - 1;
    path[end] = '\0';
    for (const object *p = o; p; p = p->parent) {
        size_t len = strlen(p->name);
        end -= len;
        memcpy(path + end, p->name, len);
        if (p->parent)
            path[--end] = '>';
    }
    return path;
}

/* Appends a match of rule r found in object o. Returns 0 or ENGINE_ENOMEM. */
static int result_add(engine_result *res, const engine_rules *rules, uint32_t r, const object *o,
                      engine_view view)
{
    const engine__rule *rule = &rules->set.rules[r];
    engine_match *m = realloc(res->matches, (res->match_count + 1) * sizeof(*m));
    if (m == NULL)
        return ENGINE_ENOMEM;
    res->matches = m;
    m = &res->matches[res->match_count];
    memset(m, 0, sizeof(*m));
    m->rule = arena_strdup(res, rule->name);
    m->object = object_path(res, o);
    m->view = view;
    if (rule->nmeta > 0) {
        const char **keys = arena_alloc(res, rule->nmeta * sizeof(char *));
        const char **values = arena_alloc(res, rule->nmeta * sizeof(char *));
        if (keys == NULL || values == NULL)
            return ENGINE_ENOMEM;
        for (size_t i = 0; i < rule->nmeta; i++) {
            keys[i] = arena_strdup(res, rule->meta[i].key);
            values[i] = arena_strdup(res, rule->meta[i].value);
            if (keys[i] == NULL || values[i] == NULL)
                return ENGINE_ENOMEM;
        }
        m->meta_keys = keys;
        m->meta_values = values;
        m->meta_count = rule->nmeta;
    }
    if (m->rule == NULL || m->object == NULL)
        return ENGINE_ENOMEM;
    res->match_count++;
    if (res->object == NULL)
        res->object = m->object;
    res->verdict = ENGINE_VERDICT_DETECTED;
    res->amsi_result = ENGINE_AMSI_DETECTED;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The match callback.                                                                         */

/* A fullword check that needs bytes not seen yet (streams only). */
typedef struct pending {
    uint32_t pattern;
    unsigned long long end;
} pending;

typedef struct match_ctx {
    const engine__pattern *pats;
    const uint8_t *data; /* the bytes of this scan call */
    size_t len;
    uint64_t base;       /* stream offset of data[0] */
    const uint8_t *hist; /* the hist_len bytes just before base */
    size_t hist_len;
    bool at_end; /* no bytes will follow data */
    uint32_t *hits;
    uint32_t *touched;
    size_t *ntouched;
    pending **pend; /* streams: undecided fullword checks; NULL in block mode */
    size_t *npend, *cappend;
    bool oom;
} match_ctx;

static const uint8_t ascii_alnum[256] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1,
    ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1,
    ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
    ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* The byte at stream offset off, or -1 when it is not available (not seen yet, or forgotten). */
static int byte_at(const match_ctx *m, uint64_t off)
{
    if (off >= m->base) {
        uint64_t i = off - m->base;
        return i < m->len ? m->data[i] : -1;
    }
    uint64_t back = m->base - off;
    return back <= m->hist_len ? m->hist[m->hist_len - back] : -1;
}

static bool alnum_at(const match_ctx *m, uint64_t off)
{
    int b = byte_at(m, off);
    return b >= 0 && ascii_alnum[b];
}

/*
 * YARA's fullword test for a match ending at `end`: 1 passes, 0 fails, -1 cannot be decided yet
 * because the bytes after the match have not arrived (streams).
 */
static int fullword_ok(const match_ctx *m, const engine__pattern *p, uint64_t end)
{
    uint64_t start = end - p->len;
    if (p->wide) {
        if (start >= 2 && byte_at(m, start - 1) == 0 && alnum_at(m, start - 2))
            return 0;
        int a0 = byte_at(m, end), a1 = byte_at(m, end + 1);
        if (a0 < 0 || a1 < 0)
            return m->at_end ? 1 : -1;
        return (a1 == 0 && ascii_alnum[a0]) ? 0 : 1;
    }
    if (start >= 1 && alnum_at(m, start - 1))
        return 0;
    int a = byte_at(m, end);
    if (a < 0)
        return m->at_end ? 1 : -1;
    return ascii_alnum[a] ? 0 : 1;
}

static void count_hit(match_ctx *m, uint32_t string)
{
    uint32_t h = m->hits[string];
    if (h == 0)
        m->touched[(*m->ntouched)++] = string;
    if (h != UINT32_MAX)
        m->hits[string] = h + 1;
}

static int on_match(unsigned int id, unsigned long long from, unsigned long long to,
                    unsigned int flags, void *ctx)
{
    (void)from;
    (void)flags;
    match_ctx *m = ctx;
    const engine__pattern *p = &m->pats[id];
    if (p->fullword) {
        int ok = fullword_ok(m, p, to);
        if (ok == 0)
            return 0;
        if (ok < 0) {
            if (*m->npend == *m->cappend) {
                size_t ncap = *m->cappend ? *m->cappend * 2 : 8;
                pending *np = realloc(*m->pend, ncap * sizeof(pending));
                if (np == NULL) {
                    m->oom = true;
                    return 1;
                }
                *m->pend = np;
                *m->cappend = ncap;
            }
            (*m->pend)[(*m->npend)++] = (pending){id, to};
            return 0;
        }
    }
    count_hit(m, p->string);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Evaluation.                                                                                 */

typedef struct scan_ctx {
    const engine_rules *rules;
    engine_scratch *s;
    const engine_config *cfg;
    engine_result *res;
    uint64_t deadline_ns;
    size_t decode_left;
    uint64_t unpacked; /* bytes produced by unpackers (max_scan_size) */
    bool halted;       /* a request-wide limit (time, scan size) ended the scan */
    bool noted_error;  /* the first note was a parse error, not a limit */
    int err;
} scan_ctx;

/*
 * The clock of max_scan_time_ms. The coarse clock is the kernel's last tick (a few ms old at
 * most, 4 ms on the development VM) and costs a few ns to read, where the precise one reads the
 * (virtual) time-stamp counter: it was 5 % of a 4 KiB script's scan, read before each base64 child
 * of the text. A deadline of seconds needs no better than a tick.
 */
static uint64_t deadline_clock_ns(void)
{
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * True when rule r holds and has not been reported in this request; marks it evaluated. touched
 * says one of the rule's strings was hit, which settles `$a` and `any of them` without a walk.
 */
static bool eval_rule(const engine_rules *rules, engine_scratch *s, uint32_t r,
                      const uint32_t *hits, uint64_t size, engine_view view, bool touched)
{
    if (s->rule_mark[r] == s->view_epoch || s->rule_done[r] == s->req_epoch)
        return false;
    s->rule_mark[r] = s->view_epoch;
    const engine__rule *rule = &rules->set.rules[r];
    if (view == ENGINE_VIEW_NORMALIZED && !rule->normalized)
        return false;
    if (!(touched && rule->any_hit) && !engine__rule_eval(&rules->set, rule, hits, size))
        return false;
    s->rule_done[r] = s->req_epoch;
    return true;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/*
 * Evaluates the rules a view's hits can affect plus the always-evaluated ones, and reports the
 * ones that hold in rule order. Returns 0 or ENGINE_ENOMEM.
 */
static int evaluate(const engine_rules *rules, engine_scratch *s, const uint32_t *hits,
                    const uint32_t *touched, size_t ntouched, uint64_t size, engine_result *res,
                    const object *o, engine_view view)
{
    next_epoch(&s->view_epoch, s->rule_mark, s->cap_rules);
    size_t n = 0;
    for (size_t i = 0; i < ntouched; i++) {
        uint32_t r = rules->set.strings[touched[i]].rule;
        if (eval_rule(rules, s, r, hits, size, view, true))
            s->matched[n++] = r;
    }
    for (size_t i = 0; i < rules->nalways; i++)
        if (eval_rule(rules, s, rules->always_eval[i], hits, size, view, false))
            s->matched[n++] = rules->always_eval[i];
    if (n > 1)
        qsort(s->matched, n, sizeof(uint32_t), cmp_u32);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = result_add(res, rules, s->matched[i], o, view);
    return rc;
}

static void reset_hits(uint32_t *hits, const uint32_t *touched, size_t ntouched)
{
    for (size_t i = 0; i < ntouched; i++)
        hits[touched[i]] = 0;
}

static int stream_scan_whole(scan_ctx *c, const uint8_t *data, size_t len, const object *o,
                             engine_view view);

/* hs_scan() of data[0..len), len < 4 GiB, an empty block included (Hyperscan wants a pointer). */
static hs_error_t block_scan(const hs_database_t *db, const uint8_t *data, size_t len,
                             hs_scratch_t *hs, match_event_handler cb, void *ctx)
{
    static const char empty[1] = {0};
    return hs_scan(db, len ? (const char *)data : empty, (unsigned)len, 0, hs, cb, ctx);
}

/* Scans one view of an object with database dbi and evaluates the rules. */
static void scan_view(scan_ctx *c, int dbi, const uint8_t *data, size_t len, const object *o,
                      engine_view view)
{
    if (c->err)
        return;
    engine_scratch *s = c->s;
    const engine__db *db = &c->rules->dbs[dbi];
    if (len > (size_t)UINT_MAX / 2 && db->db != NULL) {
        /* Block mode takes at most 4 GiB: scan huge views in stream mode instead. */
        c->err = stream_scan_whole(c, data, len, o, view);
        return;
    }
    s->ntouched = 0;
    if (db->db != NULL) {
        match_ctx m = {.pats = db->pats,
                       .data = data,
                       .len = len,
                       .at_end = true,
                       .hits = s->hits,
                       .touched = s->touched,
                       .ntouched = &s->ntouched};
        hs_error_t rc = block_scan(db->db, data, len, s->hs, on_match, &m);
        if (rc != HS_SUCCESS) {
            reset_hits(s->hits, s->touched, s->ntouched);
            c->err = hs_failure(rc);
            return;
        }
        c->res->bytes_scanned += len;
    }
    c->err = evaluate(c->rules, s, s->hits, s->touched, s->ntouched, len, c->res, o, view);
    reset_hits(s->hits, s->touched, s->ntouched);
}

static int gate_hit(unsigned int id, unsigned long long from, unsigned long long to,
                    unsigned int flags, void *ctx)
{
    (void)id, (void)from, (void)to, (void)flags, (void)ctx;
    return 1; /* one hit opens the gate: stop here */
}

/*
 * Whether the normalised view needs its full scan: true when the rules have no gate database
 * (rules_compile.c, plan_gate()) or a string of it occurs in the view (fullword or not: the full
 * scan decides). False when no normalized rule can hold on the view, or on an error (in c->err).
 */
static bool norm_gate_open(scan_ctx *c, const uint8_t *data, size_t len)
{
    const hs_database_t *gate = c->rules->dbs[ENGINE__DB_NORM_GATE].db;
    if (gate == NULL || len > (size_t)UINT_MAX / 2)
        return true;
    hs_error_t rc = block_scan(gate, data, len, c->s->hs, gate_hit, NULL);
    if (rc == HS_SCAN_TERMINATED)
        return true;
    if (rc != HS_SUCCESS) {
        c->err = hs_failure(rc);
        return false;
    }
    c->res->bytes_scanned += len;
    return false;
}

/* True once the request has its answer (a detection), failed, or ran out of time. */
static bool stopped(const scan_ctx *c)
{
    return c->err || c->halted || c->res->verdict == ENGINE_VERDICT_DETECTED;
}

/*
 * Checks the clock against max_scan_time_ms; past it, the request stops with the MaxScanTime
 * reason. Called before each child object, not per view: a view's scan is linear in its size,
 * children are what multiply.
 */
static bool out_of_time(scan_ctx *c)
{
    if (!c->halted && deadline_clock_ns() > c->deadline_ns) {
        c->halted = true;
        if (c->res->reason == NULL)
            c->res->reason = "Limits.Exceeded.MaxScanTime";
    }
    return c->halted;
}

static void scan_object(scan_ctx *c, const uint8_t *data, size_t len, const object *o,
                        unsigned hints, unsigned depth, unsigned udepth);

/*
 * The scratch's decode buffer for one nesting depth, grown to at least cap bytes (each depth has
 * its own: a child's children are decoded while the parent's buffer is still in use). Returns
 * NULL when memory ran out.
 */
static uint8_t *decode_buffer(engine_scratch *s, unsigned depth, size_t cap)
{
    if (depth >= ENGINE__MAX_DECODE_DEPTH)
        return NULL;
    if (s->decode_cap[depth] < cap) {
        size_t ncap = cap < 4096 ? 4096 : cap;
        uint8_t *p = realloc(s->decode_buf[depth], ncap);
        if (p == NULL)
            return NULL;
        s->decode_buf[depth] = p;
        s->decode_cap[depth] = ncap;
    }
    return s->decode_buf[depth];
}

/* Writes "base64@OFF" into name (at least 28 bytes), without snprintf's cost. Can't fail. */
static void base64_name(char *name, size_t off)
{
    char digits[24];
    size_t k = 0;
    do {
        digits[k++] = (char)('0' + off % 10);
        off /= 10;
    } while (off > 0);
    memcpy(name, "base64@", 7);
    for (size_t i = 0; i < k; i++)
        name[7 + i] = digits[k - 1 - i];
    name[7 + k] = '\0';
}

/* Decodes the base64 runs of text and scans each result (and its decompression) as a child. */
static void scan_base64_children(scan_ctx *c, const uint8_t *text, size_t len, const object *o,
                                 unsigned depth, unsigned udepth)
{
    size_t pos = 0;
    engine__span sp;
    while (!stopped(c) && !out_of_time(c) && c->decode_left > 0 &&
           engine__base64_next(text, len, &pos, c->cfg->min_base64, &sp)) {
        size_t cap = sp.len / 4 * 3 + 3;
        if (cap > c->cfg->max_decode)
            cap = c->cfg->max_decode;
        if (cap > c->decode_left)
            cap = c->decode_left;
        uint8_t *buf = decode_buffer(c->s, depth, cap);
        if (buf == NULL) {
            c->err = ENGINE_ENOMEM;
            return;
        }
        size_t n = engine__base64_decode(text + sp.off, sp.len, buf, cap);
        c->decode_left -= n;
        char name[40];
        base64_name(name, sp.off);
        object child = {o, name};
        scan_object(c, buf, n, &child, 0, depth + 1, udepth);
        if (!stopped(c) && !out_of_time(c) && depth + 1 < c->cfg->max_decode_depth) {
            size_t max_out =
                c->cfg->max_decode < c->decode_left ? c->cfg->max_decode : c->decode_left;
            uint8_t *out = NULL;
            size_t out_len = 0;
            engine__codec codec = ENGINE__CODEC_NONE;
            bool truncated = false;
            int rc = max_out > 0
                         ? engine__decompress(buf, n, max_out, &out, &out_len, &codec, &truncated)
                         : -1;
            if (rc == -2) {
                c->err = ENGINE_ENOMEM;
            } else if (rc == 0) {
                c->decode_left -= out_len < c->decode_left ? out_len : c->decode_left;
                object inner = {&child, engine__codec_name(codec)};
                scan_object(c, out, out_len, &inner, 0, depth + 2, udepth);
            }
            free(out);
        }
    }
}

/*
 * Scans one object: its raw bytes, its UTF-16 narrowed view, its normalised view, then its
 * decoded children. Errors are left in c->err.
 */
/* ------------------------------------------------------------------------------------------ */
/* The unpackers' host (unpack.h).                                                            */

typedef struct unpack_frame {
    engine__unpack_host h;
    scan_ctx *c;
    const object *parent;
    unsigned udepth;
    engine_stream *stream;
    object stream_obj;
    char *stream_name;
    unsigned slot; /* the scratch's buffer slot lent for members, when has_slot */
    bool has_slot;
} unpack_frame;

/* Lends the unpacker a member buffer from the scratch's slots (see pool_reserve()). */
static uint8_t *host_buffer_grow(engine__unpack_host *h, uint8_t *old, size_t len, size_t cap)
{
    unpack_frame *f = h->opaque;
    engine_scratch *s = f->c->s;
    if (!f->has_slot) {
        f->slot = s->view_used++;
        f->has_slot = true;
    }
    return pool_reserve(s, f->slot, old, len, cap);
}

/* Takes a member buffer back; the slot is free for others until the next host_buffer_grow(). */
static void host_buffer_done(engine__unpack_host *h, uint8_t *p)
{
    unpack_frame *f = h->opaque;
    engine_scratch *s = f->c->s;
    if (!f->has_slot) {
        free(p);
        return;
    }
    s->view_used--;
    f->has_slot = false;
    pool_drop(s, f->slot, p);
}

static bool host_scan_child(engine__unpack_host *h, const uint8_t *data, size_t len,
                            const char *name)
{
    unpack_frame *f = h->opaque;
    object child = {f->parent, name[0] ? name : "?"};
    scan_object(f->c, data, len, &child, 0, 0, f->udepth + 1);
    return stopped(f->c) || out_of_time(f->c);
}

/* Appends copies of another result's matches (a stream child's) to the request's result. */
static int result_merge(engine_result *res, const engine_result *from)
{
    for (size_t i = 0; i < from->match_count; i++) {
        const engine_match *m = &from->matches[i];
        engine_match *all = realloc(res->matches, (res->match_count + 1) * sizeof(*all));
        if (all == NULL)
            return ENGINE_ENOMEM;
        res->matches = all;
        engine_match *d = &all[res->match_count];
        memset(d, 0, sizeof(*d));
        d->rule = arena_strdup(res, m->rule);
        d->object = arena_strdup(res, m->object);
        d->view = m->view;
        if (d->rule == NULL || d->object == NULL)
            return ENGINE_ENOMEM;
        res->match_count++;
        if (res->object == NULL)
            res->object = d->object;
        res->verdict = ENGINE_VERDICT_DETECTED;
        res->amsi_result = ENGINE_AMSI_DETECTED;
    }
    return 0;
}

static bool host_stream_open(engine__unpack_host *h, const char *name)
{
    unpack_frame *f = h->opaque;
    scan_ctx *c = f->c;
    if (f->stream != NULL || stopped(c))
        return true;
    f->stream_obj = (object){f->parent, name[0] ? name : "?"};
    engine_result tmp;
    result_init(&tmp);
    char *path = object_path(&tmp, &f->stream_obj);
    f->stream_name = path ? strdup(path) : NULL;
    engine_result_cleanup(&tmp);
    int rc =
        f->stream_name ? engine_stream_open(c->rules, f->stream_name, &f->stream) : ENGINE_ENOMEM;
    if (rc != 0)
        c->err = rc;
    return stopped(c);
}

static bool host_stream_write(engine__unpack_host *h, const uint8_t *data, size_t len)
{
    unpack_frame *f = h->opaque;
    scan_ctx *c = f->c;
    if (f->stream == NULL || stopped(c))
        return true;
    int rc = engine_stream_write(f->stream, c->s, data, len, NULL);
    if (rc != 0)
        c->err = rc;
    c->res->bytes_scanned += len;
    return stopped(c) || out_of_time(c);
}

static bool host_stream_close(engine__unpack_host *h)
{
    unpack_frame *f = h->opaque;
    scan_ctx *c = f->c;
    if (f->stream == NULL)
        return stopped(c);
    engine_result r;
    int rc = engine_stream_close(f->stream, c->s, &r);
    f->stream = NULL;
    free(f->stream_name);
    f->stream_name = NULL;
    if (rc == 0) {
        rc = result_merge(c->res, &r);
        engine_result_cleanup(&r);
    }
    if (rc != 0)
        c->err = rc;
    return stopped(c);
}

static bool host_charge(engine__unpack_host *h, uint64_t bytes)
{
    unpack_frame *f = h->opaque;
    scan_ctx *c = f->c;
    if (c->unpacked + bytes > c->cfg->max_scan_size) {
        c->halted = true;
        if (c->res->reason == NULL)
            c->res->reason = "Limits.Exceeded.MaxScanSize";
        return false;
    }
    c->unpacked += bytes;
    return true;
}

static void host_note(engine__unpack_host *h, const char *reason, bool error)
{
    unpack_frame *f = h->opaque;
    if (f->c->res->reason == NULL) {
        f->c->res->reason = reason;
        f->c->noted_error = error;
    }
}

static bool host_out_of_time(engine__unpack_host *h)
{
    unpack_frame *f = h->opaque;
    return out_of_time(f->c);
}

/* Unpacks o when it is a container the configuration allows. Returns true when it was one. */
static bool unpack_object(scan_ctx *c, const uint8_t *data, size_t len, const object *o,
                          unsigned udepth)
{
    const engine_config *cfg = c->cfg;
    /* engine__unpack() alone decides what the configuration lets it unpack. */
    unpack_frame f = {.h = {.cfg = cfg,
                            .depth = udepth,
                            .scan_child = host_scan_child,
                            .stream_open = host_stream_open,
                            .stream_write = host_stream_write,
                            .stream_close = host_stream_close,
                            .charge = host_charge,
                            .note = host_note,
                            .out_of_time = host_out_of_time,
                            .buffer_grow = host_buffer_grow,
                            .buffer_done = host_buffer_done},
                      .c = c,
                      .parent = o,
                      .udepth = udepth};
    f.h.opaque = &f;
    int rc = engine__unpack(&f.h, data, len);
    if (f.stream != NULL)
        host_stream_close(&f.h);
    if (f.has_slot)
        host_buffer_done(&f.h, NULL);
    if (rc < 0)
        c->err = rc;
    return rc == 0;
}

static void scan_object(scan_ctx *c, const uint8_t *data, size_t len, const object *o,
                        unsigned hints, unsigned depth, unsigned udepth)
{
    if (stopped(c))
        return;
    const engine_config *cfg = c->cfg;
    /*
     * A container is unpacked first, so a match inside a member is reported with the member's
     * path; its raw bytes are scanned after (stored members, or what the unpacker could not
     * reach), and being binary, it gets no script views.
     */
    if (!(hints & ENGINE_HINT_NOT_CONTAINER) && unpack_object(c, data, len, o, udepth)) {
        if (!stopped(c))
            scan_view(c, ENGINE__DB_RAW, data, len, o, ENGINE_VIEW_RAW);
        return;
    }
    scan_view(c, ENGINE__DB_RAW, data, len, o, ENGINE_VIEW_RAW);
    const uint8_t *text = data;
    size_t tlen = len;
    uint8_t *narrow = NULL;
    bool narrowed = false;
    if (!stopped(c) && cfg->narrow_utf16 &&
        engine__utf16le_detect(data, len, (hints & ENGINE_HINT_UTF16LE) != 0)) {
        size_t cap = len / 2 * 3 + 1;
        narrow = view_acquire(c->s, cap);
        narrowed = true;
        if (narrow == NULL) {
            c->err = ENGINE_ENOMEM;
            view_release(c->s, NULL);
            return;
        }
        tlen = engine__utf16le_narrow(data, len, narrow, cap);
        text = narrow;
        scan_view(c, ENGINE__DB_RAW, text, tlen, o, ENGINE_VIEW_NARROWED);
    }
    if (!stopped(c) && cfg->normalize && c->rules->has_normalized && tlen > 0) {
        uint8_t *norm = view_acquire(c->s, tlen);
        if (norm == NULL) {
            c->err = ENGINE_ENOMEM;
        } else {
            size_t nlen = engine__normalize(text, tlen, norm, tlen);
            if (norm_gate_open(c, norm, nlen))
                scan_view(c, ENGINE__DB_NORM, norm, nlen, o, ENGINE_VIEW_NORMALIZED);
        }
        view_release(c->s, norm);
    }
    if (cfg->decode_base64 && depth < cfg->max_decode_depth)
        scan_base64_children(c, text, tlen, o, depth, udepth);
    if (narrowed)
        view_release(c->s, narrow);
}

int engine_scan_buffer(const engine_rules *rules, engine_scratch *scratch, const engine_config *cfg,
                       const void *data, size_t len, const char *name, unsigned hints,
                       engine_result *result)
{
    if (result)
        result_init(result);
    if (rules == NULL || scratch == NULL || result == NULL || (data == NULL && len > 0))
        return ENGINE_EINVAL;
    engine_config defaults;
    if (cfg == NULL) {
        engine_config_init(&defaults);
        cfg = &defaults;
    }
    int rc = scratch_prepare(scratch, rules);
    if (rc != 0)
        return rc;
    next_epoch(&scratch->req_epoch, scratch->rule_done, scratch->cap_rules);
    scratch->view_used = 0;
    scan_ctx c = {.rules = rules,
                  .s = scratch,
                  .cfg = cfg,
                  .res = result,
                  .deadline_ns = deadline_clock_ns() + (uint64_t)cfg->max_scan_time_ms * 1000000u,
                  .decode_left = cfg->max_decode_total};
    object root = {NULL, name ? name : "buffer"};
    scan_object(&c, data, len, &root, hints, 0, 0);
    if (c.err != 0) {
        engine_result_cleanup(result);
        return c.err;
    }
    if (result->verdict != ENGINE_VERDICT_DETECTED && result->reason != NULL)
        result->verdict = c.noted_error ? ENGINE_VERDICT_ERROR : ENGINE_VERDICT_LIMIT;
    else if (result->verdict == ENGINE_VERDICT_DETECTED)
        result->reason = NULL; /* detection wins over any limit or error */
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Streams.                                                                                    */

struct engine_stream {
    engine_rules *rules;
    hs_stream_t *hs;
    char *name;
    uint64_t total;
    uint8_t *hist; /* the last hist_len bytes written */
    size_t hist_len, hist_cap;
    uint32_t *hits;    /* per string, for the whole stream */
    uint32_t *touched; /* strings ever hit */
    size_t ntouched;
    pending *pend;
    size_t npend, cappend;
    bool failed;
};

/* The longest fullword pattern of the stream database, plus the two bytes around it. */
static size_t hist_need(const engine_rules *rules)
{
    const engine__db *db = &rules->dbs[ENGINE__DB_STREAM];
    size_t need = 0;
    for (uint32_t i = 0; i < db->npats; i++)
        if (db->pats[i].fullword && db->pats[i].len + 2u > need)
            need = db->pats[i].len + 2u;
    return need;
}

int engine_stream_open(const engine_rules *rules, const char *name, engine_stream **out)
{
    if (rules == NULL || out == NULL)
        return ENGINE_EINVAL;
    *out = NULL;
    engine_stream *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return ENGINE_ENOMEM;
    size_t ns = rules->set.nstrings ? rules->set.nstrings : 1;
    st->name = strdup(name ? name : "stream");
    st->hits = calloc(ns, sizeof(uint32_t));
    st->touched = malloc(ns * sizeof(uint32_t));
    st->hist_cap = hist_need(rules);
    st->hist = malloc(st->hist_cap ? st->hist_cap : 1);
    int rc = 0;
    if (st->name == NULL || st->hits == NULL || st->touched == NULL || st->hist == NULL)
        rc = ENGINE_ENOMEM;
    const hs_database_t *db = rules->dbs[ENGINE__DB_STREAM].db;
    if (rc == 0 && db != NULL) {
        hs_error_t hrc = hs_open_stream(db, 0, &st->hs);
        if (hrc != HS_SUCCESS)
            rc = hs_failure(hrc);
    }
    st->rules = engine_rules_ref((engine_rules *)rules);
    if (rc != 0) {
        engine_stream_close(st, NULL, NULL);
        return rc;
    }
    *out = st;
    return 0;
}

static match_ctx stream_ctx(engine_stream *st, const uint8_t *data, size_t len, bool at_end)
{
    return (match_ctx){.pats = st->rules->dbs[ENGINE__DB_STREAM].pats,
                       .data = data,
                       .len = len,
                       .base = st->total,
                       .hist = st->hist,
                       .hist_len = st->hist_len,
                       .at_end = at_end,
                       .hits = st->hits,
                       .touched = st->touched,
                       .ntouched = &st->ntouched,
                       .pend = &st->pend,
                       .npend = &st->npend,
                       .cappend = &st->cappend};
}

/* Decides the pending fullword checks that the new bytes (or the end) make decidable. */
static void resolve_pending(engine_stream *st, match_ctx *m)
{
    size_t keep = 0;
    for (size_t i = 0; i < st->npend; i++) {
        const engine__pattern *p = &m->pats[st->pend[i].pattern];
        int ok = fullword_ok(m, p, st->pend[i].end);
        if (ok > 0)
            count_hit(m, p->string);
        else if (ok < 0)
            st->pend[keep++] = st->pend[i];
    }
    st->npend = keep;
}

/* Keeps the last hist_cap bytes of the stream. */
static void remember(engine_stream *st, const uint8_t *data, size_t len)
{
    if (st->hist_cap == 0)
        return;
    if (len >= st->hist_cap) {
        memcpy(st->hist, data + len - st->hist_cap, st->hist_cap);
        st->hist_len = st->hist_cap;
        return;
    }
    size_t keep = st->hist_len + len > st->hist_cap ? st->hist_cap - len : st->hist_len;
    memmove(st->hist, st->hist + st->hist_len - keep, keep);
    memcpy(st->hist + keep, data, len);
    st->hist_len = keep + len;
}

/* Fills result with every rule that holds over the stream so far. */
static int stream_result(engine_stream *st, engine_scratch *scratch, engine_result *result,
                         engine_view view)
{
    int rc = scratch_prepare(scratch, st->rules);
    if (rc != 0)
        return rc;
    next_epoch(&scratch->req_epoch, scratch->rule_done, scratch->cap_rules);
    object root = {NULL, st->name};
    rc = evaluate(st->rules, scratch, st->hits, st->touched, st->ntouched, st->total, result, &root,
                  view);
    result->bytes_scanned = st->total;
    return rc;
}

/* Scans data through stream mode in pieces Hyperscan accepts. */
static int stream_feed(engine_stream *st, engine_scratch *scratch, const uint8_t *data, size_t len)
{
    const size_t piece_max = 1u << 30;
    do {
        size_t piece = len < piece_max ? len : piece_max;
        match_ctx m = stream_ctx(st, data, piece, false);
        resolve_pending(st, &m);
        if (st->hs != NULL && piece > 0) {
            hs_error_t rc = hs_scan_stream(st->hs, (const char *)data, (unsigned)piece, 0,
                                           scratch->hs, on_match, &m);
            if (m.oom)
                return ENGINE_ENOMEM;
            if (rc != HS_SUCCESS)
                return hs_failure(rc);
        }
        remember(st, data, piece);
        st->total += piece;
        data += piece;
        len -= piece;
    } while (len > 0);
    return 0;
}

/* Ends the Hyperscan stream: end-anchored matches and undecided fullword checks are settled. */
static int stream_finish(engine_stream *st, engine_scratch *scratch)
{
    match_ctx m = stream_ctx(st, NULL, 0, true);
    resolve_pending(st, &m);
    if (st->hs == NULL)
        return 0;
    hs_error_t rc = hs_close_stream(st->hs, scratch ? scratch->hs : NULL, on_match, &m);
    st->hs = NULL;
    if (m.oom)
        return ENGINE_ENOMEM;
    return rc == HS_SUCCESS ? 0 : ENGINE_EHYPERSCAN;
}

int engine_stream_write(engine_stream *st, engine_scratch *scratch, const void *data, size_t len,
                        engine_result *result)
{
    if (result)
        result_init(result);
    if (st == NULL || scratch == NULL || (data == NULL && len > 0))
        return ENGINE_EINVAL;
    if (st->failed || (st->hs == NULL && st->rules->dbs[ENGINE__DB_STREAM].db != NULL))
        return ENGINE_EINVAL;
    int rc = scratch_prepare(scratch, st->rules);
    if (rc == 0)
        rc = stream_feed(st, scratch, data, len);
    if (rc == 0 && result)
        rc = stream_result(st, scratch, result, ENGINE_VIEW_RAW);
    if (rc != 0) {
        st->failed = true;
        engine_result_cleanup(result);
    }
    return rc;
}

int engine_stream_write_script(engine_stream *st, engine_scratch *scratch, const void *data,
                               size_t len, unsigned hints, engine_result *result)
{
    if (data == NULL || !engine__utf16le_detect(data, len, (hints & ENGINE_HINT_UTF16LE) != 0))
        return engine_stream_write(st, scratch, data, len, result);
    size_t cap = len / 2 * 3 + 1;
    uint8_t *text = malloc(cap);
    if (text == NULL) {
        if (result)
            result_init(result);
        return ENGINE_ENOMEM;
    }
    size_t n = engine__utf16le_narrow(data, len, text, cap);
    int rc = engine_stream_write(st, scratch, text, n, result);
    free(text);
    return rc;
}

int engine_stream_close(engine_stream *st, engine_scratch *scratch, engine_result *result)
{
    if (result)
        result_init(result);
    if (st == NULL)
        return 0;
    /* A result needs the end-of-stream matches, which need a scratch. */
    int rc = scratch == NULL && result != NULL ? ENGINE_EINVAL : 0;
    if (scratch != NULL && !st->failed) {
        rc = scratch_prepare(scratch, st->rules);
        if (rc == 0)
            rc = stream_finish(st, scratch);
        if (rc == 0 && result)
            rc = stream_result(st, scratch, result, ENGINE_VIEW_RAW);
    } else if (st->hs != NULL) {
        hs_close_stream(st->hs, NULL, NULL, NULL);
    }
    if (rc != 0)
        engine_result_cleanup(result);
    free(st->hist);
    free(st->hits);
    free(st->touched);
    free(st->pend);
    free(st->name);
    engine_rules_unref(st->rules);
    free(st);
    return rc;
}

/* Scans a view too large for block mode through a temporary stream. */
static int stream_scan_whole(scan_ctx *c, const uint8_t *data, size_t len, const object *o,
                             engine_view view)
{
    engine_stream *st;
    int rc = engine_stream_open(c->rules, o->name, &st);
    if (rc != 0)
        return rc;
    rc = stream_feed(st, c->s, data, len);
    if (rc == 0)
        rc = stream_finish(st, c->s);
    if (rc == 0) {
        rc = evaluate(c->rules, c->s, st->hits, st->touched, st->ntouched, len, c->res, o, view);
        c->res->bytes_scanned += len;
    }
    st->failed = true; /* already finished: close only frees */
    engine_stream_close(st, NULL, NULL);
    return rc;
}
