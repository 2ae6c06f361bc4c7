/*
 * etw_internal.h - what the core (etw.c), the backends and the LTTng provider library share: the
 * normalised field values every backend reads, the backend interface, and the per-platform hooks.
 *
 * An emit function turns the caller's event struct into an array of etw_value, one per schema
 * field in schema order: numbers in `u`, text in `s`/`len` (never NULL, NUL-terminated; `len` is
 * 0 for a backend that sets `str_len_unused`), a HASH as its 64 hex digits (or ""), a BLOB as
 * bytes already capped (or empty). For each event the array is also viewable as a struct with one
 * member per field (etw__vals_<Event>), which is how the LTTng tracepoints, generated from the
 * same schema, name them.
 */
#ifndef ETW_INTERNAL_H
#define ETW_INTERNAL_H

#include "etw/etw.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct etw_value {
    uint64_t u;    /* numbers; I32 sign-extended; BOOL 0/1 */
    const char *s; /* STR, HASH, BLOB: the bytes (NUL-terminated except BLOB) */
    size_t len;    /* their length, without the NUL (STR: 0 when the backend does not read it) */
} etw_value;

#define ETW__VAL_MEMBER(type, name, doc) etw_value name;
#define ETW__PLUS1(type, name, doc)      +1
#define ETW__VALS(name, level, kw, op, fields, doc)                                                \
    enum { ETW__N_##name = 0 fields(ETW__PLUS1) };                                                 \
    typedef union etw__vals_##name {                                                               \
        struct {                                                                                   \
            fields(ETW__VAL_MEMBER)                                                                \
        } f;                                                                                       \
        etw_value a[ETW__N_##name];                                                                \
    } etw__vals_##name;
ETW_EVENTS(ETW__VALS)
#undef ETW__VALS

/* Bytes of a HASH field and its hex text. */
#define ETW_HASH_BYTES        32
#define ETW_CONTENT_MAX_LIMIT 32768u

typedef struct etw__backend etw__backend;

/* What keeps data that every emit writes apart from data that every emit reads. */
#define ETW__CACHE_LINE 64

/* A backend: a struct of function pointers and counters, created by its constructor. */
struct etw__backend {
    etw_backend_kind kind;
    /*
     * True when the backend reads STR values as NUL-terminated text only (LTTng), so the emit
     * functions do not compute their length (`len` stays 0). Set by the constructor.
     */
    bool str_len_unused;
    /*
     * Optional: false when the backend would drop event ev anyway (LTTng: no session enabled it),
     * checked before the values are prepared. Thread-safe.
     */
    bool (*wants)(etw__backend *b, etw_event ev);
    /* Writes one event; v has etw_event_describe(ev)->nfields values. Thread-safe. */
    void (*emit)(etw__backend *b, etw_event ev, const etw_value *v);
    /* Flushes and frees the backend; no emit runs any more. */
    void (*destroy)(etw__backend *b);
    /*
     * Counters, updated by every emit on every thread: the padding keeps them off the cache line
     * of the members above, which every emit reads.
     */
    char pad_[ETW__CACHE_LINE];
    _Atomic uint64_t written;
    _Atomic uint64_t dropped;
};

/* Constructors. Each returns 0 or a negative errno, with a reason in err. */
int etw__jsonl_create(const etw_config *cfg, etw__backend **out, char *err, size_t errlen);
int etw__capture_create(const etw_config *cfg, etw__backend **out, char *err, size_t errlen);
int etw__lttng_create(const etw_config *cfg, etw__backend **out, char *err, size_t errlen);
int etw__win_create(const etw_config *cfg, etw__backend **out, char *err, size_t errlen);

/* Capture backend queries, on a backend of kind ETW_BACKEND_CAPTURE. */
size_t etw__capture_count(etw__backend *b, etw_event ev);
const etw_record *etw__capture_at(etw__backend *b, size_t i);
void etw__capture_clear(etw__backend *b);

/* Per-platform hooks (platform_posix.c, platform_windows.c). */
int etw__platform_create(const etw_config *cfg, etw__backend **out, char *err, size_t errlen);
void etw__platform_yield(void);
uint64_t etw__platform_realtime_ns(void);
uint64_t etw__platform_monotonic_ns(void);

/* snprintf into err when errlen > 0. */
void etw__seterr(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The ABI between etw.c and the dlopen'd LTTng provider library (libamsi-lttng.so). */
#define ETW__LTTNG_ABI    1u
#define ETW__LTTNG_SYMBOL "etw_lttng_provider_v1"
typedef struct etw__lttng_provider {
    uint32_t abi;     /* ETW__LTTNG_ABI */
    uint32_t nevents; /* ETW_NEVENTS it was built with */
    uint32_t nfields; /* fields of all events, a cheap check that the schemas agree */
    void (*emit)(etw_event ev, const etw_value *v);
    int (*enabled)(etw_event ev); /* nonzero when a session enabled the tracepoint */
} etw__lttng_provider;

#define ETW__COUNT_FIELDS(name, level, kw, op, fields, doc) +ETW__N_##name
#define ETW__TOTAL_FIELDS                                   (0 ETW_EVENTS(ETW__COUNT_FIELDS))

#endif
