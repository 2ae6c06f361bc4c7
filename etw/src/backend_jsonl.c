/*
 * backend_jsonl.c - JSON lines: one object per event, appended to a file, for hosts without
 * LTTng. Each line is {"event":..., "level":..., "keyword":..., "ts_ns":..., <fields in schema
 * order>}. ts_ns is CLOCK_REALTIME in nanoseconds. Text fields are JSON strings: valid UTF-8 is
 * copied, control characters are escaped, and each byte that is not part of a valid UTF-8
 * sequence becomes U+FFFD. A BLOB (ScanDecision.content) is base64. HASH is 64 hex digits or "".
 *
 * A line is formatted in memory and written with one write() on an O_APPEND descriptor, so lines
 * from concurrent threads (or processes) never interleave. A failed write counts a drop.
 */
#include "etw_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct jsonl {
    etw__backend base;
    int fd;
} jsonl;

typedef struct out {
    char *p;
    size_t n;
} out;

static void put(out *o, const char *s, size_t n)
{
    memcpy(o->p + o->n, s, n);
    o->n += n;
}

static void putc1(out *o, char c)
{
    o->p[o->n++] = c;
}

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when the byte at s does not start one. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t min, cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, min = 0x80, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, min = 0x800, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* Worst case: every byte becomes \u00XX or U+FFFD (6 and 3 bytes), plus the quotes. */
static size_t str_bound(size_t len)
{
    return 6 * len + 2;
}

static void put_str(out *o, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    putc1(o, '"');
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            putc1(o, '\\');
            putc1(o, (char)c);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            const char *esc = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
            if (esc) {
                put(o, esc, 2);
            } else {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                put(o, u, 6);
            }
            i++;
        } else {
            size_t n = utf8_seq(s + i, len - i);
            if (n == 0) {
                put(o, "\xEF\xBF\xBD", 3);
                i++;
            } else {
                put(o, (const char *)s + i, n);
                i += n;
            }
        }
    }
    putc1(o, '"');
}

static void put_base64(out *o, const unsigned char *s, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    putc1(o, '"');
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63], tab[v & 63]};
        put(o, q, 4);
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], '=', '='};
        put(o, q, 4);
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63], '='};
        put(o, q, 4);
    }
    putc1(o, '"');
}

static void put_u64(out *o, uint64_t v)
{
    int k = snprintf(o->p + o->n, 24, "%" PRIu64, v);
    if (k > 0)
        o->n += (size_t)k;
}

static void put_i64(out *o, int64_t v)
{
    int k = snprintf(o->p + o->n, 24, "%" PRId64, v);
    if (k > 0)
        o->n += (size_t)k;
}

static void jsonl_emit(etw__backend *b, etw_event ev, const etw_value *v)
{
    jsonl *j = (jsonl *)b;
    const etw_event_info *info = etw_event_describe(ev);
    size_t bound = 128;
    for (size_t i = 0; i < info->nfields; i++) {
        bound += strlen(info->fields[i].name) + 8 + 24;
        if (info->fields[i].type == ETW_T_BLOB)
            bound += (v[i].len + 2) / 3 * 4 + 2;
        else if (info->fields[i].type == ETW_T_STR || info->fields[i].type == ETW_T_HASH)
            bound += str_bound(v[i].len);
    }
    bound += strlen(info->name);
    char stackbuf[8192];
    char *heap = NULL;
    out o = {stackbuf, 0};
    if (bound > sizeof(stackbuf)) {
        heap = malloc(bound);
        if (heap == NULL) {
            atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
            return;
        }
        o.p = heap;
    }
    char head[160];
    int k = snprintf(head, sizeof(head),
                     "{\"event\":\"%s\",\"level\":%u,\"keyword\":%" PRIu64 ",\"ts_ns\":%" PRIu64,
                     info->name, info->level, info->keyword, etw__platform_realtime_ns());
    put(&o, head, (size_t)k);
    for (size_t i = 0; i < info->nfields; i++) {
        const etw_field_info *f = &info->fields[i];
        putc1(&o, ',');
        putc1(&o, '"');
        put(&o, f->name, strlen(f->name));
        put(&o, "\":", 2);
        switch (f->type) {
        case ETW_T_U8:
        case ETW_T_U32:
        case ETW_T_U64:
            put_u64(&o, v[i].u);
            break;
        case ETW_T_I32:
            put_i64(&o, (int64_t)v[i].u);
            break;
        case ETW_T_BOOL:
            if (v[i].u)
                put(&o, "true", 4);
            else
                put(&o, "false", 5);
            break;
        case ETW_T_STR:
        case ETW_T_HASH:
            put_str(&o, v[i].s, v[i].len);
            break;
        case ETW_T_BLOB:
            put_base64(&o, (const unsigned char *)v[i].s, v[i].len);
            break;
        }
    }
    put(&o, "}\n", 2);

    const char *p = o.p;
    size_t left = o.n;
    while (left > 0) {
        ssize_t w = write(j->fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    free(heap);
}

static void jsonl_destroy(etw__backend *b)
{
    jsonl *j = (jsonl *)b;
    fsync(j->fd);
    close(j->fd);
    free(j);
}

int etw__jsonl_create(const etw_config *cfg, etw__backend **out_backend, char *err, size_t errlen)
{
    if (cfg->jsonl_path == NULL || cfg->jsonl_path[0] == '\0') {
        etw__seterr(err, errlen, "trace.jsonl_path is required with backend = jsonl");
        return -EINVAL;
    }
    jsonl *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        etw__seterr(err, errlen, "trace: out of memory");
        return -ENOMEM;
    }
    j->fd = open(cfg->jsonl_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (j->fd < 0) {
        int e = errno;
        etw__seterr(err, errlen, "trace.jsonl_path: cannot open %s: %s", cfg->jsonl_path,
                    strerror(e));
        free(j);
        return -e;
    }
    j->base.kind = ETW_BACKEND_JSONL;
    j->base.emit = jsonl_emit;
    j->base.destroy = jsonl_destroy;
    *out_backend = &j->base;
    return 0;
}
