/*
 * etw.c - the core of tracing: the enabled mask, the emit functions generated from the schema,
 * the `trace` configuration section, starting and stopping backends, and the schema's
 * descriptions (for the backends and the generated docs).
 *
 * Globals (the short list STYLE.md allows): etw__mask, the enabled mask every etw_enabled() reads;
 * `current`, the backend pointer; and the reader counters that let a backend be replaced while
 * other threads emit through it.
 *
 * Replacing a backend safely: emitters announce themselves in one of two counters, chosen by the
 * parity of a generation number. An emitter reads the generation g, increments inflight[g & 1],
 * checks that the generation is still g (else it undoes the increment and tries again), and only
 * then loads `current`. The stopper publishes the new pointer, bumps the generation, and waits
 * until inflight[g & 1] drains. All of these are sequentially consistent, so an emitter that could
 * still load the old pointer passed its generation check before the bump, hence incremented
 * before the stopper waits, and is waited for. Emitters arriving later count in the other counter,
 * so the wait ends as soon as the emits that were in flight finish, however busy the broker is.
 * Only enabled events touch the counters. start/stop are not thread-safe against each other.
 */
#include "etw_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Cache lines. etw__mask is read by every etw_enabled() on every thread, `current` and
 * `generation` by every enabled emit; all three change only on start, stop and filter changes.
 * The inflight counters take two locked updates per enabled emit. On one shared line (where the
 * linker put them), each emit took the line holding the mask away from every other core; so the
 * counters get a line of their own.
 */
_Alignas(ETW__CACHE_LINE) _Atomic uint64_t etw__mask = 0;

typedef struct etw__running {
    etw__backend *backend;
    uint8_t level;
    uint64_t keywords;
    uint32_t content_max;
} etw__running;

static etw__running *_Atomic current = NULL;
static _Atomic uint64_t generation = 0;
static struct {
    _Alignas(ETW__CACHE_LINE) _Atomic uint64_t n[2];
} inflight;

void etw__seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* --- Schema descriptions --- */

#define ETW__FIELD_INFO(type, name, doc) {#name, ETW_T_##type, doc},
#define ETW__FIELD_TABLE(name, level, kw, op, fields, doc)                                         \
    static const etw_field_info fields_##name[] = {fields(ETW__FIELD_INFO)};
ETW_EVENTS(ETW__FIELD_TABLE)
#undef ETW__FIELD_TABLE

#define ETW__EVENT_INFO(name, level, kw, op, fields, doc)                                          \
    {#name,       ETW_LEVEL_##level, ETW_KW_##kw,                                                  \
     ETW_OP_##op, fields_##name,     sizeof(fields_##name) / sizeof(fields_##name[0]),             \
     doc},
static const etw_event_info events[ETW_NEVENTS] = {ETW_EVENTS(ETW__EVENT_INFO)};
#undef ETW__EVENT_INFO

const etw_event_info *etw_event_describe(etw_event ev)
{
    if ((unsigned)ev >= ETW_NEVENTS)
        return NULL;
    return &events[ev];
}

int etw_event_lookup(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = 0; i < ETW_NEVENTS; i++)
        if (strcmp(events[i].name, name) == 0)
            return i;
    return -1;
}

const char *etw_type_name(etw_type type)
{
    switch (type) {
    case ETW_T_U8:
        return "u8";
    case ETW_T_U32:
        return "u32";
    case ETW_T_I32:
        return "i32";
    case ETW_T_U64:
        return "u64";
    case ETW_T_BOOL:
        return "bool";
    case ETW_T_STR:
        return "string";
    case ETW_T_HASH:
        return "sha256";
    case ETW_T_BLOB:
        return "bytes";
    }
    return "?";
}

const char *etw_level_name(uint8_t level)
{
    static const char *const names[] = {"?", "critical", "error", "warning", "info", "verbose"};
    return level <= 5 ? names[level] : "?";
}

#define ETW__KW_NAME(name, bit, doc)                                                               \
    if (keyword_bit == (uint64_t)(bit))                                                            \
        return #name;
const char *etw_keyword_name(uint64_t keyword_bit)
{
    ETW_KEYWORDS(ETW__KW_NAME)
    return "?";
}
#undef ETW__KW_NAME

const char *etw_backend_name(etw_backend_kind backend)
{
    switch (backend) {
    case ETW_BACKEND_NONE:
        return "none";
    case ETW_BACKEND_LTTNG:
        return "lttng";
    case ETW_BACKEND_JSONL:
        return "jsonl";
    case ETW_BACKEND_CAPTURE:
        return "capture";
    case ETW_BACKEND_ETW:
        return "etw";
    }
    return "?";
}

/* --- The enabled mask --- */

static uint64_t mask_for(uint8_t level, uint64_t keywords)
{
    uint64_t mask = 0;
    for (unsigned i = 0; i < ETW_NEVENTS; i++)
        if (events[i].level <= level && (events[i].keyword & keywords) != 0)
            mask |= (uint64_t)1 << i;
    if (keywords & ETW_KW_CONTENT)
        mask |= ETW_MASK_CONTENT;
    return mask;
}

/*
 * Takes a reference on the running backend and returns it with *slot set for leave(), or returns
 * NULL when none runs.
 */
static etw__running *enter(unsigned *slot)
{
    for (;;) {
        uint64_t g = atomic_load_explicit(&generation, memory_order_seq_cst);
        *slot = (unsigned)(g & 1);
        atomic_fetch_add_explicit(&inflight.n[*slot], 1, memory_order_seq_cst);
        if (atomic_load_explicit(&generation, memory_order_seq_cst) == g)
            break;
        atomic_fetch_sub_explicit(&inflight.n[*slot], 1, memory_order_release);
    }
    etw__running *r = atomic_load_explicit(&current, memory_order_seq_cst);
    if (r == NULL)
        atomic_fetch_sub_explicit(&inflight.n[*slot], 1, memory_order_release);
    return r;
}

static void leave(unsigned slot)
{
    atomic_fetch_sub_explicit(&inflight.n[slot], 1, memory_order_release);
}

/* Publishes r (may be NULL) and destroys the backend it replaces once no emit uses it. */
static void publish(etw__running *r)
{
    etw__running *old = atomic_exchange_explicit(&current, r, memory_order_seq_cst);
    atomic_store_explicit(&etw__mask, r ? mask_for(r->level, r->keywords) : 0,
                          memory_order_seq_cst);
    uint64_t g = atomic_fetch_add_explicit(&generation, 1, memory_order_seq_cst);
    while (atomic_load_explicit(&inflight.n[g & 1], memory_order_acquire) != 0)
        etw__platform_yield();
    if (old == NULL)
        return;
    old->backend->destroy(old->backend);
    free(old);
}

/* --- Filling the values of an event --- */

/* A STR value: "" for NULL; its length only when the backend reads it. */
static void fill_str(etw_value *v, const char *s, bool with_len)
{
    v->s = s ? s : "";
    v->len = with_len ? strlen(v->s) : 0;
}

/*
 * The two hex digits of every byte value: a HASH is then 32 two-byte copies instead of a shift,
 * a mask and two lookups per byte.
 */
#define HEX_DIGIT(n)   ((char)((n) < 10 ? (n) + '0' : (n) + ('a' - 10)))
#define HEX_PAIR(n)    {HEX_DIGIT((n) / 16), HEX_DIGIT((n) % 16)},
#define HEX_PAIRS4(n)  HEX_PAIR(n) HEX_PAIR((n) + 1) HEX_PAIR((n) + 2) HEX_PAIR((n) + 3)
#define HEX_PAIRS16(n) HEX_PAIRS4(n) HEX_PAIRS4((n) + 4) HEX_PAIRS4((n) + 8) HEX_PAIRS4((n) + 12)
#define HEX_PAIRS64(n)                                                                             \
    HEX_PAIRS16(n) HEX_PAIRS16((n) + 16) HEX_PAIRS16((n) + 32) HEX_PAIRS16((n) + 48)
static const char hex_pairs[256][2] = {HEX_PAIRS64(0) HEX_PAIRS64(64) HEX_PAIRS64(128)
                                           HEX_PAIRS64(192)};
#undef HEX_PAIRS64
#undef HEX_PAIRS16
#undef HEX_PAIRS4
#undef HEX_PAIR
#undef HEX_DIGIT

static void fill_hash(etw_value *v, const uint8_t *hash, char hex[2 * ETW_HASH_BYTES + 1])
{
    if (hash == NULL) {
        v->s = "";
        v->len = 0;
        return;
    }
    for (size_t i = 0; i < ETW_HASH_BYTES; i++)
        memcpy(&hex[2 * i], hex_pairs[hash[i]], 2);
    hex[2 * ETW_HASH_BYTES] = '\0';
    v->s = hex;
    v->len = 2 * ETW_HASH_BYTES;
}

/* A BLOB is kept only while the CONTENT keyword is on, and capped; *filtered says it was cut. */
static void fill_blob(etw_value *v, const void *p, size_t len, const etw__running *r,
                      bool *filtered)
{
    v->s = "";
    v->len = 0;
    if (p == NULL || len == 0)
        return;
    if (!(atomic_load_explicit(&etw__mask, memory_order_relaxed) & ETW_MASK_CONTENT)) {
        *filtered = true;
        return;
    }
    v->s = p;
    v->len = len;
    if (len > r->content_max) {
        v->len = r->content_max;
        *filtered = true;
    }
}

/* ScanDecision.contentFiltered also says whether the emitter left content out. */
static void after_fill(etw_event ev, etw_value *a, bool filtered)
{
    if (ev == ETW_EV_ScanDecision && filtered)
        a[offsetof(etw__vals_ScanDecision, f.contentFiltered) / sizeof(etw_value)].u = 1;
}

#define FILL_U8(slot, ev, name)   (slot).u = (uint64_t)(ev)->name;
#define FILL_U32(slot, ev, name)  (slot).u = (uint64_t)(ev)->name;
#define FILL_U64(slot, ev, name)  (slot).u = (uint64_t)(ev)->name;
#define FILL_I32(slot, ev, name)  (slot).u = (uint64_t)(int64_t)(ev)->name;
#define FILL_BOOL(slot, ev, name) (slot).u = (ev)->name ? 1u : 0u;
#define FILL_STR(slot, ev, name)  fill_str(&(slot), (ev)->name, with_len);
#define FILL_HASH(slot, ev, name) fill_hash(&(slot), (ev)->name, hex);
#define FILL_BLOB(slot, ev, name) fill_blob(&(slot), (ev)->name, (ev)->name##_len, r, &filtered);
#define FILL(type, name, doc)                                                                      \
    vals.a[n].s = NULL;                                                                            \
    vals.a[n].len = 0;                                                                             \
    vals.a[n].u = 0;                                                                               \
    FILL_##type(vals.a[n], ev, name) n++;

#define ETW__EMIT_DEF(name, level, kw, op, fields, doc)                                            \
    void etw_emit_##name(const etw_##name *ev)                                                     \
    {                                                                                              \
        if (ev == NULL || !etw_enabled(name))                                                      \
            return;                                                                                \
        unsigned slot;                                                                             \
        etw__running *r = enter(&slot);                                                            \
        if (r == NULL)                                                                             \
            return;                                                                                \
        if (r->backend->wants != NULL && !r->backend->wants(r->backend, ETW_EV_##name)) {          \
            leave(slot);                                                                           \
            return;                                                                                \
        }                                                                                          \
        etw__vals_##name vals;                                                                     \
        char hex[2 * ETW_HASH_BYTES + 1];                                                          \
        bool filtered = false;                                                                     \
        const bool with_len = !r->backend->str_len_unused;                                         \
        size_t n = 0;                                                                              \
        (void)hex;                                                                                 \
        (void)with_len;                                                                            \
        fields(FILL);                                                                              \
        after_fill(ETW_EV_##name, vals.a, filtered);                                               \
        r->backend->emit(r->backend, ETW_EV_##name, vals.a);                                       \
        atomic_fetch_add_explicit(&r->backend->written, 1, memory_order_relaxed);                  \
        leave(slot);                                                                               \
    }
ETW_EVENTS(ETW__EMIT_DEF)
#undef ETW__EMIT_DEF

/* --- Configuration --- */

void etw_config_init(etw_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->backend = ETW_BACKEND_NONE;
    cfg->level = ETW_LEVEL_INFO;
    cfg->keywords = ETW_KW_ALL & ~(uint64_t)ETW_KW_CONTENT;
    cfg->content_max = 4096;
}

void etw_config_cleanup(etw_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->jsonl_path);
    free(cfg->lttng_library);
    etw_config_init(cfg);
}

static int ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char x = *a, y = *b;
        if (x >= 'A' && x <= 'Z')
            x = (char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (char)(y - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return *a == *b;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (*s == '\0' || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

#define ETW__KW_MATCH(name, bit, doc)                                                              \
    if (ieq(word, #name))                                                                          \
        return (uint64_t)(bit);
static uint64_t keyword_by_name(const char *word)
{
    ETW_KEYWORDS(ETW__KW_MATCH)
    return 0;
}
#undef ETW__KW_MATCH

/* "0x18", "all", "scan,throttle", "scan|content". */
static int parse_keywords(const char *value, uint64_t *out, char *err, size_t errlen)
{
    if (parse_u64(value, out) == 0)
        return 0;
    if (ieq(value, "all")) {
        *out = ETW_KW_ALL;
        return 0;
    }
    uint64_t kw = 0;
    const char *p = value;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strcspn(p, ",| \t");
        char word[32];
        if (n == 0 || n >= sizeof(word)) {
            etw__seterr(err, errlen, "trace.keywords: bad keyword list \"%s\"", value);
            return -EINVAL;
        }
        memcpy(word, p, n);
        word[n] = '\0';
        uint64_t bit = ieq(word, "all") ? ETW_KW_ALL : keyword_by_name(word);
        if (bit == 0) {
            etw__seterr(err, errlen, "trace.keywords: unknown keyword \"%s\"", word);
            return -EINVAL;
        }
        kw |= bit;
        p += n;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        if (*p != ',' && *p != '|') {
            etw__seterr(err, errlen, "trace.keywords: bad keyword list \"%s\"", value);
            return -EINVAL;
        }
        p++;
    }
    *out = kw;
    return 0;
}

static int set_string(char **slot, const char *value)
{
    char *copy = NULL;
    if (*value != '\0' && (copy = strdup(value)) == NULL)
        return -ENOMEM;
    free(*slot);
    *slot = copy;
    return 0;
}

int etw_config_set(etw_config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    if (cfg == NULL || key == NULL || value == NULL) {
        etw__seterr(err, errlen, "trace: missing key or value");
        return -EINVAL;
    }
    if (strcmp(key, "backend") == 0) {
        static const etw_backend_kind kinds[] = {ETW_BACKEND_NONE, ETW_BACKEND_LTTNG,
                                                 ETW_BACKEND_JSONL, ETW_BACKEND_CAPTURE,
                                                 ETW_BACKEND_ETW};
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
            if (ieq(value, etw_backend_name(kinds[i]))) {
                cfg->backend = kinds[i];
                return 0;
            }
        }
        etw__seterr(err, errlen,
                    "trace.backend: \"%s\" is not one of none, lttng, jsonl, capture, etw", value);
        return -EINVAL;
    }
    /* An empty path means "not set": no file (jsonl refuses to start), the default library. */
    if (strcmp(key, "jsonl_path") == 0)
        return set_string(&cfg->jsonl_path, value);
    if (strcmp(key, "lttng_library") == 0)
        return set_string(&cfg->lttng_library, value);
    if (strcmp(key, "level") == 0) {
        uint64_t v;
        for (uint8_t l = 1; l <= 5; l++) {
            if (ieq(value, etw_level_name(l))) {
                cfg->level = l;
                return 0;
            }
        }
        if (parse_u64(value, &v) == 0 && v >= 1 && v <= 5) {
            cfg->level = (uint8_t)v;
            return 0;
        }
        etw__seterr(err, errlen,
                    "trace.level: \"%s\" is not 1-5 or critical, error, warning, info, verbose",
                    value);
        return -EINVAL;
    }
    if (strcmp(key, "keywords") == 0)
        return parse_keywords(value, &cfg->keywords, err, errlen);
    if (strcmp(key, "content_max") == 0) {
        uint64_t v;
        if (parse_u64(value, &v) != 0 || v > ETW_CONTENT_MAX_LIMIT) {
            etw__seterr(err, errlen, "trace.content_max: \"%s\" is not a number of bytes 0-%u",
                        value, ETW_CONTENT_MAX_LIMIT);
            return -EINVAL;
        }
        cfg->content_max = (uint32_t)v;
        return 0;
    }
    etw__seterr(err, errlen, "trace: unknown key \"%s\"", key);
    return -EINVAL;
}

/* --- Starting and stopping --- */

int etw_start(const etw_config *cfg, char *err, size_t errlen)
{
    if (cfg == NULL || cfg->level < 1 || cfg->level > 5 ||
        cfg->content_max > ETW_CONTENT_MAX_LIMIT) {
        etw__seterr(err, errlen, "trace: invalid configuration");
        return -EINVAL;
    }
    if (cfg->backend == ETW_BACKEND_NONE) {
        publish(NULL);
        return 0;
    }
    etw__running *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        etw__seterr(err, errlen, "trace: out of memory");
        return -ENOMEM;
    }
    r->level = cfg->level;
    r->keywords = cfg->keywords;
    r->content_max = cfg->content_max;
    int rc = etw__platform_create(cfg, &r->backend, err, errlen);
    if (rc != 0) {
        free(r);
        return rc;
    }
    publish(r);
    return 0;
}

void etw_stop(void)
{
    publish(NULL);
}

int etw_set_filter(uint8_t level, uint64_t keywords)
{
    if (level < 1 || level > 5)
        return -EINVAL;
    unsigned slot;
    etw__running *r = enter(&slot);
    if (r == NULL)
        return 0;
    r->level = level;
    r->keywords = keywords;
    atomic_store_explicit(&etw__mask, mask_for(level, keywords), memory_order_seq_cst);
    leave(slot);
    return 0;
}

etw_backend_kind etw_backend(void)
{
    unsigned slot;
    etw__running *r = enter(&slot);
    if (r == NULL)
        return ETW_BACKEND_NONE;
    etw_backend_kind k = r->backend->kind;
    leave(slot);
    return k;
}

void etw_get_stats(etw_stats *st)
{
    if (st == NULL)
        return;
    memset(st, 0, sizeof(*st));
    unsigned slot;
    etw__running *r = enter(&slot);
    if (r == NULL)
        return;
    st->written = atomic_load_explicit(&r->backend->written, memory_order_relaxed);
    st->dropped = atomic_load_explicit(&r->backend->dropped, memory_order_relaxed);
    leave(slot);
}

/* --- Capture queries: forwarded to the running capture backend --- */

size_t etw_capture_count(etw_event ev)
{
    unsigned slot;
    etw__running *r = enter(&slot);
    if (r == NULL)
        return 0;
    size_t n = r->backend->kind == ETW_BACKEND_CAPTURE ? etw__capture_count(r->backend, ev) : 0;
    leave(slot);
    return n;
}

const etw_record *etw_capture_at(size_t i)
{
    unsigned slot;
    etw__running *r = enter(&slot);
    if (r == NULL)
        return NULL;
    const etw_record *rec =
        r->backend->kind == ETW_BACKEND_CAPTURE ? etw__capture_at(r->backend, i) : NULL;
    leave(slot);
    return rec;
}

void etw_capture_clear(void)
{
    unsigned slot;
    etw__running *r = enter(&slot);
    if (r == NULL)
        return;
    if (r->backend->kind == ETW_BACKEND_CAPTURE)
        etw__capture_clear(r->backend);
    leave(slot);
}

/* --- The documentation table --- */

typedef struct sbuf {
    char *buf;
    size_t len; /* capacity */
    size_t n;   /* length needed so far */
} sbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
sb_printf(sbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *dst = sb->n < sb->len ? sb->buf + sb->n : NULL;
    size_t room = sb->n < sb->len ? sb->len - sb->n : 0;
    int k = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (k > 0)
        sb->n += (size_t)k;
}

static const char *opcode_name(uint8_t op)
{
    return op == ETW_OP_START ? "start" : op == ETW_OP_STOP ? "stop" : "info";
}

#define ETW__KW_ROW(name, bit, doc) sb_printf(&sb, "| `%s` | 0x%x | %s |\n", #name, bit, doc);

size_t etw_schema_markdown(char *buf, size_t len)
{
    sbuf sb = {buf, len, 0};
    if (buf != NULL && len > 0)
        buf[0] = '\0';
    sb_printf(&sb, "Provider: `%s` (LTTng events `%s:<Event>`).\n\n", ETW_PROVIDER_NAME,
              ETW_PROVIDER_NAME);
    sb_printf(&sb, "| keyword | bit | meaning |\n|---|---|---|\n");
    ETW_KEYWORDS(ETW__KW_ROW)
    sb_printf(&sb, "\n| event | level | keyword | opcode | description |\n|---|---|---|---|---|\n");
    for (unsigned i = 0; i < ETW_NEVENTS; i++)
        sb_printf(&sb, "| %s | %u %s | `%s` | %s | %s |\n", events[i].name, events[i].level,
                  etw_level_name(events[i].level), etw_keyword_name(events[i].keyword),
                  opcode_name(events[i].opcode), events[i].doc);
    for (unsigned i = 0; i < ETW_NEVENTS; i++) {
        sb_printf(&sb, "\n#### %s\n\n| # | field | type | meaning |\n|---|---|---|---|\n",
                  events[i].name);
        for (size_t f = 0; f < events[i].nfields; f++)
            sb_printf(&sb, "| %u | `%s` | %s | %s |\n", (unsigned)(f + 1), events[i].fields[f].name,
                      etw_type_name(events[i].fields[f].type), events[i].fields[f].doc);
    }
    return sb.n;
}
#undef ETW__KW_ROW
