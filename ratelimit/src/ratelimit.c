/*
 * ratelimit.c - per-process request limits: configuration, exemptions and the caller table.
 *
 * The bucket: GCRA ("generic cell rate algorithm", the virtual-scheduling form of a token bucket).
 * A class allows one request per emission interval T = interval / max_requests, and tolerates
 * requests that arrive up to tau = burst * T early. Each caller keeps one number per class, its
 * theoretical arrival time (TAT): when it would be "on time" again. A request at time now is
 * accepted when TAT - tau <= now, and then moves TAT to max(TAT, now) + T; otherwise it is
 * declined and may retry after TAT - tau - now. A quiet caller (TAT in the past) may therefore send
 * burst + 1 requests at one instant, and over a long run max_requests per interval. All times are
 * unsigned 64-bit nanoseconds compared through their signed difference, so the arithmetic is right
 * across a wrap of the clock.
 *
 * The table: table_size entries, each one cache line, allocated at start. An entry holds a tag (a
 * hash of the caller's pid and start time, never 0) and one TAT per class. A caller lives in one of
 * PROBE consecutive entries from its hash. An entry whose TATs have all passed is in exactly the
 * state of a caller never seen, so a newcomer may take it over, whoever held it: the table never
 * grows and needs no sweeper. Taking an entry is a compare-and-swap on the tag; two connections of
 * one process attaching at once may both claim an entry, and then both keep the one with the
 * lower index (each rescans after claiming), releasing the other.
 *
 * A decision is one load of the tag (is the entry still ours?) and a compare-and-swap loop on one
 * TAT, no lock. The one race: a decision that loaded the tag just before another caller took the
 * entry over (possible only after this caller's time had passed) charges that one request to the
 * newcomer, who starts with no debt anyway.
 *
 * A newcomer that finds every entry of its window held by callers in debt shares the overflow
 * entry: one bucket with the same limits for all such callers together, so a crowd of processes
 * cannot escape the limit by filling the table, and an honest newcomer still gets its share.
 */
#include "ratelimit/ratelimit.h"

#include "parse.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PROBE 64 /* entries a caller may live in, from its hash */

/* ------------------------------------------------------------------------------------------ */
/* Configuration.                                                                              */

void ratelimit_config_init(ratelimit_config *cfg)
{
    *cfg = (ratelimit_config){.enabled = true,
                              .max_requests = 2000,
                              .interval_ms = 1000,
                              .burst = 200,
                              .notify_max_requests = 20000,
                              .notify_burst = 2000,
                              .action = RATELIMIT_ALLOW,
                              .table_size = 4096};
}

static void exemptions_free(ratelimit_exemption *ex, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ex[i].path);
    free(ex);
}

void ratelimit_config_cleanup(ratelimit_config *cfg)
{
    if (cfg == NULL)
        return;
    exemptions_free(cfg->exempt, cfg->nexempt);
    cfg->exempt = NULL;
    cfg->nexempt = 0;
}

bool ratelimit__parse_number(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return false;
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (d > max || v > (max - d) / 10)
            return false; /* past max (and never past UINT64_MAX) */
        v = v * 10 + d;
    }
    if (*s != '\0' || v < min)
        return false;
    *out = v;
    return true;
}

/* A number within [min, max] as a uint32_t (see ratelimit__parse_number). */
static bool parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t v;
    if (!ratelimit__parse_number(s, min, max, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Strips blanks at both ends of [*s, *e). */
static void trim(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
}

/*
 * Parses one exemption "PATH[:UID]" from [s, e). The uid is what follows the last ':' when that is
 * all digits; the path must be absolute. Returns 0, -EINVAL (with err) or -ENOMEM.
 */
static int parse_exemption(const char *s, const char *e, ratelimit_exemption *ex, char *err,
                           size_t errlen)
{
    trim(&s, &e);
    const char *colon = NULL;
    for (const char *p = e; p > s; p--)
        if (p[-1] == ':') {
            colon = p - 1;
            break;
        }
    *ex = (ratelimit_exemption){.any_uid = true};
    const char *pe = e;
    if (colon != NULL) {
        char num[16];
        size_t n = (size_t)(e - colon - 1);
        uint32_t uid;
        if (n == 0 || n >= sizeof(num)) {
            snprintf(err, errlen, "exempt: '%.*s': expected PATH or PATH:UID", (int)(e - s), s);
            return -EINVAL;
        }
        memcpy(num, colon + 1, n);
        num[n] = '\0';
        if (!parse_u32(num, 0, UINT32_MAX - 1, &uid)) {
            snprintf(err, errlen, "exempt: '%.*s': the uid after ':' must be a number",
                     (int)(e - s), s);
            return -EINVAL;
        }
        ex->any_uid = false;
        ex->uid = (uid_t)uid;
        pe = colon;
    }
    if (pe == s || *s != '/') {
        snprintf(err, errlen, "exempt: '%.*s': the executable path must be absolute", (int)(e - s),
                 s);
        return -EINVAL;
    }
    ex->path = strndup(s, (size_t)(pe - s));
    if (ex->path == NULL)
        return -ENOMEM;
    ex->prefix = pe[-1] == '/';
    return 0;
}

/* Replaces the exemption list with the comma-separated list in value ("" = none). */
static int set_exemptions(ratelimit_config *cfg, const char *value, char *err, size_t errlen)
{
    ratelimit_exemption *list = NULL;
    size_t n = 0;
    const char *p = value;
    while (*p) {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *s = p, *e = end;
        trim(&s, &e);
        if (s < e) {
            ratelimit_exemption *grown = realloc(list, (n + 1) * sizeof(*list));
            if (grown == NULL) {
                exemptions_free(list, n);
                return -ENOMEM;
            }
            list = grown;
            int rc = parse_exemption(s, e, &list[n], err, errlen);
            if (rc != 0) {
                exemptions_free(list, n);
                return rc;
            }
            n++;
        }
        p = *end ? end + 1 : end;
    }
    exemptions_free(cfg->exempt, cfg->nexempt);
    cfg->exempt = list;
    cfg->nexempt = n;
    return 0;
}

int ratelimit_config_set(ratelimit_config *cfg, const char *key, const char *value, char *err,
                         size_t errlen)
{
    static const struct {
        const char *name;
        size_t offset;
        uint32_t min, max;
    } numbers[] = {
        {"max_requests", offsetof(ratelimit_config, max_requests), 1, 100000000},
        {"interval_ms", offsetof(ratelimit_config, interval_ms), 1, 86400000},
        {"burst", offsetof(ratelimit_config, burst), 0, 100000000},
        {"notify_max_requests", offsetof(ratelimit_config, notify_max_requests), 1, 100000000},
        {"notify_burst", offsetof(ratelimit_config, notify_burst), 0, 100000000},
        {"table_size", offsetof(ratelimit_config, table_size), 1, 1u << 24},
    };
    if (cfg == NULL || key == NULL || value == NULL)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        if (strcmp(key, numbers[i].name) != 0)
            continue;
        uint32_t v;
        if (!parse_u32(value, numbers[i].min, numbers[i].max, &v)) {
            snprintf(err, errlen, "%s: '%s' is not a whole number from %u to %u", key, value,
                     numbers[i].min, numbers[i].max);
            return -EINVAL;
        }
        *(uint32_t *)(void *)((char *)cfg + numbers[i].offset) = v;
        return 0;
    }
    if (strcmp(key, "enabled") == 0) {
        static const char *const yes[] = {"1", "yes", "true", "on"}, *const no[] = {"0", "no",
                                                                                    "false", "off"};
        for (size_t i = 0; i < 4; i++)
            if (strcasecmp(value, yes[i]) == 0 || strcasecmp(value, no[i]) == 0) {
                cfg->enabled = strcasecmp(value, yes[i]) == 0;
                return 0;
            }
        snprintf(err, errlen, "enabled: '%s' is not a boolean (1/0, yes/no, true/false, on/off)",
                 value);
        return -EINVAL;
    }
    if (strcmp(key, "action") == 0) {
        if (strcmp(value, "allow") == 0)
            cfg->action = RATELIMIT_ALLOW;
        else if (strcmp(value, "block") == 0)
            cfg->action = RATELIMIT_BLOCK;
        else {
            snprintf(err, errlen, "action: '%s' is not 'allow' or 'block'", value);
            return -EINVAL;
        }
        return 0;
    }
    if (strcmp(key, "exempt") == 0)
        return set_exemptions(cfg, value, err, errlen);
    snprintf(err, errlen, "unknown key '%s'", key);
    return -EINVAL;
}

bool ratelimit_exempt(const ratelimit_config *cfg, const char *exe, uid_t uid)
{
    if (exe == NULL || exe[0] != '/')
        return false;
    for (size_t i = 0; i < cfg->nexempt; i++) {
        const ratelimit_exemption *ex = &cfg->exempt[i];
        if (!ex->any_uid && ex->uid != uid)
            continue;
        if (ex->prefix ? strncmp(exe, ex->path, strlen(ex->path)) == 0 : strcmp(exe, ex->path) == 0)
            return true;
    }
    return false;
}

void ratelimit_describe(const ratelimit_config *cfg, ratelimit_class cls, char *buf, size_t len)
{
    uint32_t max = cls == RATELIMIT_NOTIFY ? cfg->notify_max_requests : cfg->max_requests;
    uint32_t burst = cls == RATELIMIT_NOTIFY ? cfg->notify_burst : cfg->burst;
    snprintf(buf, len, "%s %u per %u ms, burst %u",
             cls == RATELIMIT_NOTIFY ? "notifications" : "scans", max, cfg->interval_ms, burst);
}

/* ------------------------------------------------------------------------------------------ */
/* The table.                                                                                  */

typedef struct entry {
    _Alignas(64) atomic_uint_fast64_t tag; /* 0 = never used */
    atomic_uint_fast64_t tat[RATELIMIT_NCLASSES];
} entry;

struct ratelimit_table {
    uint32_t size;                          /* entries, not counting the overflow entry */
    uint32_t probe;                         /* min(PROBE, size) */
    uint64_t emission[RATELIMIT_NCLASSES];  /* T, ns */
    uint64_t tolerance[RATELIMIT_NCLASSES]; /* tau, ns */
    atomic_uint_fast64_t overflowed;
    atomic_uint_fast64_t declined[RATELIMIT_NCLASSES];
    entry *entries; /* size + 1: the last one is the overflow entry */
};

/* True when time a is after time b, across a wrap of the clock. */
static bool after(uint64_t a, uint64_t b)
{
    return (int64_t)(a - b) > 0;
}

/* A hash of the caller's identity, never 0 (splitmix64 finaliser). */
static uint64_t key_tag(const ratelimit_key *key)
{
    uint64_t x = (uint64_t)(uint32_t)key->pid ^ (key->start_time * 0x9e3779b97f4a7c15ull);
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x ? x : 1;
}

int ratelimit_table_create(const ratelimit_config *cfg, ratelimit_table **out)
{
    if (cfg == NULL || out == NULL || cfg->table_size == 0 || cfg->interval_ms == 0 ||
        cfg->max_requests == 0 || cfg->notify_max_requests == 0)
        return -EINVAL;
    ratelimit_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->entries = aligned_alloc(64, ((size_t)cfg->table_size + 1) * sizeof(entry));
    if (t->entries == NULL) {
        free(t);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i <= cfg->table_size; i++) {
        atomic_init(&t->entries[i].tag, 0);
        for (int c = 0; c < RATELIMIT_NCLASSES; c++)
            atomic_init(&t->entries[i].tat[c], 0);
    }
    t->size = cfg->table_size;
    t->probe = cfg->table_size < PROBE ? cfg->table_size : PROBE;
    uint64_t interval = (uint64_t)cfg->interval_ms * 1000000u;
    const uint32_t max[RATELIMIT_NCLASSES] = {cfg->max_requests, cfg->notify_max_requests};
    const uint32_t burst[RATELIMIT_NCLASSES] = {cfg->burst, cfg->notify_burst};
    for (int c = 0; c < RATELIMIT_NCLASSES; c++) {
        t->emission[c] = interval / max[c] ? interval / max[c] : 1;
        t->tolerance[c] = t->emission[c] * burst[c];
    }
    *out = t;
    return 0;
}

void ratelimit_table_destroy(ratelimit_table *t)
{
    if (t == NULL)
        return;
    free(t->entries);
    free(t);
}

/*
 * True when the entry may be taken over: never used or released (tag 0; its TATs mean nothing), or
 * every TAT has passed so it holds no debt.
 */
static bool entry_idle(entry *e, uint64_t now)
{
    if (atomic_load_explicit(&e->tag, memory_order_acquire) == 0)
        return true;
    for (int c = 0; c < RATELIMIT_NCLASSES; c++)
        if (after(atomic_load_explicit(&e->tat[c], memory_order_relaxed), now))
            return false;
    return true;
}

/* The index of a caller's entry within its window, or UINT32_MAX. */
static uint32_t find(ratelimit_table *t, uint64_t tag)
{
    uint32_t home = (uint32_t)(tag % t->size);
    for (uint32_t i = 0; i < t->probe; i++) {
        uint32_t slot = (home + i) % t->size;
        if (atomic_load_explicit(&t->entries[slot].tag, memory_order_acquire) == tag)
            return slot;
    }
    return UINT32_MAX;
}

bool ratelimit_attach(ratelimit_table *t, const ratelimit_key *key, uint64_t now_ns,
                      ratelimit_handle *h)
{
    uint64_t tag = key_tag(key);
    h->tag = tag;
    uint32_t home = (uint32_t)(tag % t->size);
    for (;;) {
        uint32_t slot = find(t, tag);
        if (slot != UINT32_MAX) {
            h->slot = slot;
            return true;
        }
        /* Claim the first entry of the window that holds no debt. */
        bool claimed = false;
        for (uint32_t i = 0; i < t->probe && !claimed; i++) {
            slot = (home + i) % t->size;
            entry *e = &t->entries[slot];
            uint_fast64_t old = atomic_load_explicit(&e->tag, memory_order_relaxed);
            if (old == tag || !entry_idle(e, now_ns))
                continue;
            if (!atomic_compare_exchange_strong_explicit(&e->tag, &old, tag, memory_order_acq_rel,
                                                         memory_order_relaxed))
                continue;
            /* A fresh caller: no debt, and no TAT so old it would look like a future time. */
            for (int c = 0; c < RATELIMIT_NCLASSES; c++)
                atomic_store_explicit(&e->tat[c], now_ns, memory_order_relaxed);
            claimed = true;
        }
        if (!claimed) {
            h->slot = t->size;
            return false;
        }
        /* Another connection of this process may have claimed an entry at the same time: the
         * lower index wins, the other is released, and everyone finds the winner. */
        uint32_t first = find(t, tag);
        if (first != slot) {
            uint_fast64_t mine = tag;
            atomic_compare_exchange_strong_explicit(&t->entries[slot].tag, &mine, 0,
                                                    memory_order_acq_rel, memory_order_relaxed);
            if (first == UINT32_MAX)
                continue; /* ours was taken over already: start again */
            slot = first;
        }
        h->slot = slot;
        return true;
    }
}

void ratelimit_detach(ratelimit_table *t, const ratelimit_handle *h)
{
    if (h->slot >= t->size)
        return;
    uint_fast64_t mine = h->tag;
    atomic_compare_exchange_strong_explicit(&t->entries[h->slot].tag, &mine, 0,
                                            memory_order_acq_rel, memory_order_relaxed);
}

/*
 * The overflow entry starts with no TAT: the first caller to use it sets them to its clock (tag 0
 * -> 1), so a TAT of 0 cannot look like a time in the future of a clock near its wrap.
 */
static void overflow_first_use(ratelimit_table *t, uint64_t now)
{
    entry *e = &t->entries[t->size];
    if (atomic_load_explicit(&e->tag, memory_order_acquire) != 0)
        return;
    uint_fast64_t zero = 0;
    if (atomic_compare_exchange_strong_explicit(&e->tag, &zero, 2, memory_order_acq_rel,
                                                memory_order_acquire)) {
        for (int c = 0; c < RATELIMIT_NCLASSES; c++)
            atomic_store_explicit(&e->tat[c], now, memory_order_relaxed);
        atomic_store_explicit(&e->tag, 1, memory_order_release);
        return;
    }
    while (atomic_load_explicit(&e->tag, memory_order_acquire) != 1)
        ; /* another thread is setting it up: a few stores */
}

bool ratelimit_decide(ratelimit_table *t, ratelimit_handle *h, const ratelimit_key *key,
                      ratelimit_class cls, uint64_t now_ns, uint64_t *retry_after_ns)
{
    /* Our entry was taken over after our time had passed, or we share the overflow entry and
     * room may have appeared: find (or claim) a place again. */
    if (h->slot >= t->size ||
        atomic_load_explicit(&t->entries[h->slot].tag, memory_order_relaxed) != h->tag)
        if (!ratelimit_attach(t, key, now_ns, h))
            atomic_fetch_add_explicit(&t->overflowed, 1, memory_order_relaxed);
    if (h->slot == t->size)
        overflow_first_use(t, now_ns);
    atomic_uint_fast64_t *tat = &t->entries[h->slot].tat[cls];
    uint64_t emission = t->emission[cls], tolerance = t->tolerance[cls];
    uint_fast64_t old = atomic_load_explicit(tat, memory_order_relaxed);
    for (;;) {
        uint64_t start = after(old, now_ns) ? old : now_ns;
        if (after(start - tolerance, now_ns)) {
            if (retry_after_ns)
                *retry_after_ns = start - tolerance - now_ns;
            atomic_fetch_add_explicit(&t->declined[cls], 1, memory_order_relaxed);
            return false;
        }
        if (atomic_compare_exchange_weak_explicit(tat, &old, start + emission, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            if (retry_after_ns)
                *retry_after_ns = 0;
            return true;
        }
    }
}

void ratelimit_table_stats(ratelimit_table *t, ratelimit_stats *st)
{
    st->overflowed = atomic_load_explicit(&t->overflowed, memory_order_relaxed);
    for (int c = 0; c < RATELIMIT_NCLASSES; c++)
        st->declined[c] = atomic_load_explicit(&t->declined[c], memory_order_relaxed);
}
