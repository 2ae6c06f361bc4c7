/*
 * etw.h - trace events of amsi-broker (DESIGN.md §7): one schema (<etw/schema.h>), several
 * backends (none, LTTng-UST, JSON lines, in-process capture, and on Windows ETW TraceLogging).
 *
 * How the broker emits an event:
 *
 *     if (etw_enabled(ScanDecision)) {            // one relaxed load and a bit test
 *         etw_ScanDecision ev = {.scan_id = id, .scanResult = result, .status = "OK", ...};
 *         etw_emit_ScanDecision(&ev);
 *     }
 *
 * or, equivalently, ETW_EMIT(ScanDecision, .scan_id = id, .scanResult = result, ...): the
 * initialisers (and anything they compute) are evaluated only when the event is enabled. Fields
 * not named are 0 or "" in the event; every field is always present in every backend.
 *
 * An event is enabled when a backend is started, the event's level is at most the configured
 * `level` and its keyword is among the configured `keywords`. The check is an inline load of one
 * global mask (the only mutable state here besides the backend pointer), so a disabled event costs
 * about a nanosecond. With the LTTng backend an enabled event also needs an LTTng session that
 * enabled it; otherwise the call returns inside the provider library after LTTng's own check.
 *
 * Thread safety: the emit functions and etw_enabled() may be called from any number of threads at
 * once, also while another thread runs etw_start(), etw_stop() or etw_set_filter(). Configuration
 * functions work on a caller-owned etw_config and are not thread-safe on the same config.
 */
#ifndef ETW_ETW_H
#define ETW_ETW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etw/schema.h"

/* ETW levels. */
#define ETW_LEVEL_CRITICAL 1
#define ETW_LEVEL_ERROR    2
#define ETW_LEVEL_WARNING  3
#define ETW_LEVEL_INFO     4
#define ETW_LEVEL_VERBOSE  5

/* ETW opcodes. */
#define ETW_OP_INFO  0
#define ETW_OP_START 1
#define ETW_OP_STOP  2

/* Keyword bits: ETW_KW_SCAN, ETW_KW_CONTENT, ... */
#define ETW__KW_DEFINE(name, bit, doc) ETW_KW_##name = (uint64_t)(bit),
enum { ETW_KEYWORDS(ETW__KW_DEFINE) };
#undef ETW__KW_DEFINE

/* Every keyword of the schema. */
#define ETW__KW_OR(name, bit, doc) | (uint64_t)(bit)
#define ETW_KW_ALL                 ((uint64_t)0 ETW_KEYWORDS(ETW__KW_OR))

/* Event numbers: ETW_EV_BrokerStart = 0, ... in schema order; also the event's mask bit. */
#define ETW__EV_DEFINE(name, level, kw, op, fields, doc) ETW_EV_##name,
typedef enum etw_event { ETW_EVENTS(ETW__EV_DEFINE) ETW_NEVENTS } etw_event;
#undef ETW__EV_DEFINE

/* The C type of each schema field type, as the caller fills it in. */
#define ETW__MEMBER_U8(name)   uint8_t name;
#define ETW__MEMBER_U32(name)  uint32_t name;
#define ETW__MEMBER_I32(name)  int32_t name;
#define ETW__MEMBER_U64(name)  uint64_t name;
#define ETW__MEMBER_BOOL(name) bool name;
/* STR: UTF-8, NUL-terminated, NULL = ""; HASH: 32 bytes of SHA-256 or NULL; BLOB: bytes, len. */
#define ETW__MEMBER_STR(name)  const char *name;
#define ETW__MEMBER_HASH(name) const uint8_t *name;
#define ETW__MEMBER_BLOB(name)                                                                     \
    const void *name;                                                                              \
    size_t name##_len;
#define ETW__MEMBER(type, name, doc) ETW__MEMBER_##type(name)

/*
 * One struct per event, named etw_<Event>, with the schema's fields as members. The caller owns
 * it and everything it points to; the emit function copies what it keeps.
 */
#define ETW__STRUCT(name, level, kw, op, fields, doc)                                              \
    typedef struct etw_##name {                                                                    \
        fields(ETW__MEMBER)                                                                        \
    } etw_##name;
ETW_EVENTS(ETW__STRUCT)
#undef ETW__STRUCT

/*
 * One emit function per event: etw_emit_ScanDecision(const etw_ScanDecision *ev), ... Writes the
 * event to the current backend when it is enabled (it checks again, so calling it without
 * etw_enabled() is correct, only slower when disabled). ev may be NULL (nothing is written).
 * Never fails: tracing is lossy by design, and a backend that cannot write counts a drop
 * (etw_stats()). Thread-safe.
 */
#define ETW__EMIT_DECL(name, level, kw, op, fields, doc) void etw_emit_##name(const etw_##name *ev);
ETW_EVENTS(ETW__EMIT_DECL)
#undef ETW__EMIT_DECL

/* Mask bit that says the CONTENT keyword is on (above the event bits). */
#define ETW_MASK_CONTENT ((uint64_t)1 << 63)
_Static_assert(ETW_NEVENTS < 63, "the enabled mask has one bit per event");

/* The enabled mask: bit ETW_EV_x set = event x enabled. Read it through etw_enabled(). */
extern _Atomic uint64_t etw__mask;

/* True when event number ev is enabled. Thread-safe; about a nanosecond. */
static inline bool etw_event_enabled(etw_event ev)
{
    return (atomic_load_explicit(&etw__mask, memory_order_relaxed) >> (unsigned)ev) & 1u;
}

/*
 * etw_enabled(ScanDecision): true when the event is enabled. Test it before computing fields.
 * In a build without tracing (cmake -DAMSI_TRACE=OFF, which defines ETW_DISABLED for every user
 * of this header) it is the constant false, and every event with the code computing its fields
 * is compiled away; trace.backend then has no effect.
 */
#ifdef ETW_DISABLED
#define etw_enabled(EVENT) ((void)ETW_EV_##EVENT, false)
#else
#define etw_enabled(EVENT) etw_event_enabled(ETW_EV_##EVENT)
#endif

/* Emits EVENT with the given designated initialisers, evaluated only when it is enabled. */
#define ETW_EMIT(EVENT, ...)                                                                       \
    do {                                                                                           \
        if (etw_enabled(EVENT)) {                                                                  \
            const etw_##EVENT etw__ev = {__VA_ARGS__};                                             \
            etw_emit_##EVENT(&etw__ev);                                                            \
        }                                                                                          \
    } while (0)

/* Backends (section `trace`, key `backend`). */
typedef enum etw_backend_kind {
    ETW_BACKEND_NONE = 0,    /* nothing is traced; every event disabled */
    ETW_BACKEND_LTTNG = 1,   /* LTTng-UST through the dlopen'd provider library */
    ETW_BACKEND_JSONL = 2,   /* one JSON object per line, appended to jsonl_path */
    ETW_BACKEND_CAPTURE = 3, /* in memory, for tests: etw_capture_*() */
    ETW_BACKEND_ETW = 4      /* Windows ETW TraceLogging (Windows builds only) */
} etw_backend_kind;

/* Section `trace`. Defaults from etw_config_init(). */
typedef struct etw_config {
    etw_backend_kind backend; /* default none */
    char *jsonl_path;         /* required for jsonl */
    uint8_t level;            /* 1-5, events at this level or more severe; default 4 (info) */
    uint64_t keywords;        /* default every keyword but CONTENT */
    uint32_t content_max;     /* cap of ScanDecision.content in bytes; default 4096, max 32768 */
    char *lttng_library;      /* provider library path; default ETW_LTTNG_LIBRARY (see build) */
} etw_config;

/* Fills cfg with the defaults. Can't fail. Release with etw_config_cleanup(). */
void etw_config_init(etw_config *cfg);

/*
 * Sets one key of section `trace` from its text:
 *   backend       none | lttng | jsonl | capture | etw
 *   jsonl_path    file the jsonl backend appends to (created 0640)
 *   level         1-5 or critical | error | warning | info | verbose
 *   keywords      a number (0x18), "all", or names joined by ',' or '|' (scan,throttle)
 *   content_max   0-32768
 *   lttng_library path of libamsi-lttng.so
 * Returns 0, -EINVAL (unknown key or bad value; err says which and why) or -ENOMEM. err may be
 * NULL when errlen is 0. Not thread-safe on one cfg.
 */
int etw_config_set(etw_config *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Frees what cfg holds and leaves it as etw_config_init() made it. Accepts NULL. */
void etw_config_cleanup(etw_config *cfg);

/*
 * Starts tracing with cfg (copied), replacing the backend in use, if any (that one is stopped as
 * by etw_stop()). Returns 0; -EINVAL (bad config, or a backend this build does not have);
 * -ENOMEM; -ENOENT (the LTTng provider library cannot be loaded); or the negative errno of
 * opening jsonl_path. On error the previous backend keeps running, and err (if errlen > 0) says
 * why. Thread-safe against emitters; not against a concurrent etw_start()/etw_stop().
 */
int etw_start(const etw_config *cfg, char *err, size_t errlen);

/*
 * Stops tracing: disables every event, waits for emits in flight, flushes and closes the backend.
 * Captured events are freed. Safe to call when nothing was started. Thread-safe against emitters;
 * not against a concurrent etw_start()/etw_stop().
 */
void etw_stop(void);

/*
 * Changes level and keywords of the running backend at once (e.g. on reload), without reopening
 * it. Returns 0 or -EINVAL (level outside 1-5). Thread-safe against emitters.
 */
int etw_set_filter(uint8_t level, uint64_t keywords);

/* The backend running now (ETW_BACKEND_NONE when stopped). Thread-safe. */
etw_backend_kind etw_backend(void);

/* Counters of the running backend. */
typedef struct etw_stats {
    uint64_t written; /* events handed to the backend */
    uint64_t dropped; /* events the backend could not write (I/O error, out of memory) */
} etw_stats;

/* Fills *st (zeros when stopped). Thread-safe. */
void etw_get_stats(etw_stats *st);

/* Names for levels, keywords and backends ("info", "SCAN", "lttng"); "?" when unknown. Can't
 * fail; thread-safe; the strings are static. */
const char *etw_level_name(uint8_t level);
const char *etw_keyword_name(uint64_t keyword_bit);
const char *etw_backend_name(etw_backend_kind backend);

/* --- Schema introspection: the descriptions the backends and the docs are made from. --- */

typedef enum etw_type {
    ETW_T_U8,
    ETW_T_U32,
    ETW_T_I32,
    ETW_T_U64,
    ETW_T_BOOL,
    ETW_T_STR,
    ETW_T_HASH,
    ETW_T_BLOB
} etw_type;

typedef struct etw_field_info {
    const char *name;
    etw_type type;
    const char *doc;
} etw_field_info;

typedef struct etw_event_info {
    const char *name;
    uint8_t level;
    uint64_t keyword;
    uint8_t opcode;
    const etw_field_info *fields;
    size_t nfields;
    const char *doc;
} etw_event_info;

/* The description of event ev, or NULL when ev >= ETW_NEVENTS. Can't fail; thread-safe. */
const etw_event_info *etw_event_describe(etw_event ev);

/* The event numbered by its name ("ScanDecision"), or -1. Can't fail; thread-safe. */
int etw_event_lookup(const char *name);

/* The schema type's name as the docs write it ("u64", "string", "sha256", "bytes"). Can't fail;
 * thread-safe. */
const char *etw_type_name(etw_type type);

/*
 * Writes the markdown events table of etw/README.md (between its markers) to buf as a
 * NUL-terminated string. Returns the length it needs without the NUL (like snprintf): the text is
 * complete when the result is < len. buf may be NULL when len is 0. Can't fail; thread-safe.
 */
size_t etw_schema_markdown(char *buf, size_t len);

/*
 * --- Capture backend: events kept in memory, for tests. ---
 * The etw_record_*() accessors read an immutable record: they can't fail and are thread-safe.
 * r must be a record returned by etw_capture_at() and not yet freed; field may be NULL (no match).
 */

/* One captured event; read it with the accessors below. */
typedef struct etw_record etw_record;

/* Events captured so far of event ev, or of every event when ev is ETW_NEVENTS. Thread-safe. */
size_t etw_capture_count(etw_event ev);

/*
 * The i-th captured event (capture order), or NULL past the end or without a capture backend.
 * Valid until etw_capture_clear() or etw_stop(). Thread-safe.
 */
const etw_record *etw_capture_at(size_t i);

/* Forgets the captured events. Thread-safe. */
void etw_capture_clear(void);

/* Which event a record is. Can't fail. */
etw_event etw_record_event(const etw_record *r);

/* Monotonic timestamp of a record, in nanoseconds. Can't fail. */
uint64_t etw_record_ts(const etw_record *r);

/*
 * A numeric field (U8, U32, I32 sign-extended, U64, BOOL as 0/1) by name; *found (may be NULL)
 * says whether the record has that field. Can't fail.
 */
uint64_t etw_record_u64(const etw_record *r, const char *field, bool *found);

/*
 * A text field (STR; HASH as hex) or the bytes of a BLOB by name, with its length in *len (may be
 * NULL); NULL when the record has no such field. Can't fail.
 */
const char *etw_record_str(const etw_record *r, const char *field, size_t *len);

#endif
