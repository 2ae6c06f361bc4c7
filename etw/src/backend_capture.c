/*
 * backend_capture.c - keeps every event in memory, with copies of its text and bytes, so tests can
 * check what the broker traced (etw_capture_count(), etw_capture_at(), etw_record_*()).
 *
 * Records live in one growable array of pointers, guarded by a spin lock (an atomic_flag: the
 * backend must build on Windows too, and the critical sections are a few instructions long). A
 * record is immutable once added, so the pointers handed out stay valid until the capture is
 * cleared or the backend destroyed. Out of memory drops the event and counts it.
 */
#include "etw_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct etw_record {
    etw_event ev;
    uint64_t ts_ns;
    size_t n;
    etw_value v[]; /* followed by the copied bytes */
};

typedef struct capture {
    etw__backend base;
    atomic_flag lock;
    etw_record **recs;
    size_t n, cap;
} capture;

static void lock(capture *c)
{
    while (atomic_flag_test_and_set_explicit(&c->lock, memory_order_acquire))
        etw__platform_yield();
}

static void unlock(capture *c)
{
    atomic_flag_clear_explicit(&c->lock, memory_order_release);
}

static void capture_emit(etw__backend *b, etw_event ev, const etw_value *v)
{
    capture *c = (capture *)b;
    const etw_event_info *info = etw_event_describe(ev);
    size_t bytes = 0;
    for (size_t i = 0; i < info->nfields; i++)
        if (v[i].s != NULL)
            bytes += v[i].len + 1;
    etw_record *r = malloc(sizeof(*r) + info->nfields * sizeof(etw_value) + bytes);
    if (r == NULL) {
        atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
        return;
    }
    r->ev = ev;
    r->ts_ns = etw__platform_monotonic_ns();
    r->n = info->nfields;
    char *p = (char *)&r->v[info->nfields];
    for (size_t i = 0; i < info->nfields; i++) {
        r->v[i] = v[i];
        if (v[i].s != NULL) {
            memcpy(p, v[i].s, v[i].len);
            p[v[i].len] = '\0';
            r->v[i].s = p;
            p += v[i].len + 1;
        }
    }
    lock(c);
    if (c->n == c->cap) {
        size_t ncap = c->cap ? 2 * c->cap : 64;
        etw_record **nrecs = realloc(c->recs, ncap * sizeof(*nrecs));
        if (nrecs == NULL) {
            unlock(c);
            free(r);
            atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
            return;
        }
        c->recs = nrecs;
        c->cap = ncap;
    }
    c->recs[c->n++] = r;
    unlock(c);
}

void etw__capture_clear(etw__backend *b)
{
    capture *c = (capture *)b;
    lock(c);
    for (size_t i = 0; i < c->n; i++)
        free(c->recs[i]);
    c->n = 0;
    unlock(c);
}

static void capture_destroy(etw__backend *b)
{
    capture *c = (capture *)b;
    etw__capture_clear(b);
    free(c->recs);
    free(c);
}

size_t etw__capture_count(etw__backend *b, etw_event ev)
{
    capture *c = (capture *)b;
    size_t n = 0;
    lock(c);
    if (ev >= ETW_NEVENTS) {
        n = c->n;
    } else {
        for (size_t i = 0; i < c->n; i++)
            n += c->recs[i]->ev == ev;
    }
    unlock(c);
    return n;
}

const etw_record *etw__capture_at(etw__backend *b, size_t i)
{
    capture *c = (capture *)b;
    lock(c);
    const etw_record *r = i < c->n ? c->recs[i] : NULL;
    unlock(c);
    return r;
}

int etw__capture_create(const etw_config *cfg, etw__backend **out, char *err, size_t errlen)
{
    (void)cfg;
    capture *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        etw__seterr(err, errlen, "trace: out of memory");
        return -ENOMEM;
    }
    atomic_flag_clear(&c->lock);
    c->base.kind = ETW_BACKEND_CAPTURE;
    c->base.emit = capture_emit;
    c->base.destroy = capture_destroy;
    *out = &c->base;
    return 0;
}

etw_event etw_record_event(const etw_record *r)
{
    return r->ev;
}

uint64_t etw_record_ts(const etw_record *r)
{
    return r->ts_ns;
}

static int field_index(const etw_record *r, const char *field)
{
    const etw_event_info *info = etw_event_describe(r->ev);
    for (size_t i = 0; i < info->nfields; i++)
        if (strcmp(info->fields[i].name, field) == 0)
            return (int)i;
    return -1;
}

uint64_t etw_record_u64(const etw_record *r, const char *field, bool *found)
{
    int i = r && field ? field_index(r, field) : -1;
    bool numeric = false;
    if (i >= 0) {
        etw_type t = etw_event_describe(r->ev)->fields[i].type;
        numeric = t != ETW_T_STR && t != ETW_T_HASH && t != ETW_T_BLOB;
    }
    if (found)
        *found = numeric;
    return numeric ? r->v[i].u : 0;
}

const char *etw_record_str(const etw_record *r, const char *field, size_t *len)
{
    int i = r && field ? field_index(r, field) : -1;
    if (i < 0 || r->v[i].s == NULL) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = r->v[i].len;
    return r->v[i].s;
}
