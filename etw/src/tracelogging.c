/*
 * tracelogging.c - builds the TraceLogging provider and event metadata blobs and the payload
 * layout of each schema event (format in tracelogging.h). Platform-neutral: the Windows backend
 * calls it at start, the tests check its bytes on Linux.
 */
#include "tracelogging.h"

#include <string.h>

const etw_tlg_guid etw__tlg_provider_guid = {
    0x2493763a, 0xf1c9, 0x5e87, {0x49, 0x60, 0x8a, 0x67, 0x37, 0xeb, 0x7a, 0x59}};

typedef struct blob {
    uint8_t *buf;
    size_t cap;
    size_t n;
} blob;

static void put(blob *b, const void *p, size_t n)
{
    if (b->n + n <= b->cap)
        memcpy(b->buf + b->n, p, n);
    b->n += n;
}

static void put_u8(blob *b, uint8_t v)
{
    put(b, &v, 1);
}

static void put_name(blob *b, const char *s)
{
    put(b, s, strlen(s) + 1);
}

/* Stores the final size little-endian in the first two bytes. */
static size_t finish(blob *b)
{
    if (b->cap >= 2) {
        b->buf[0] = (uint8_t)(b->n & 0xFF);
        b->buf[1] = (uint8_t)(b->n >> 8);
    }
    return b->n;
}

size_t etw__tlg_provider_traits(uint8_t *buf, size_t cap)
{
    blob b = {buf, cap, 0};
    put(&b, "\0\0", 2);
    put_name(&b, ETW_PROVIDER_NAME);
    return finish(&b);
}

static void put_type(blob *b, etw_type t)
{
    switch (t) {
    case ETW_T_U8:
        put_u8(b, ETW_TLG_IN_UINT8);
        break;
    case ETW_T_U32:
        put_u8(b, ETW_TLG_IN_UINT32);
        break;
    case ETW_T_I32:
        put_u8(b, ETW_TLG_IN_INT32);
        break;
    case ETW_T_U64:
        put_u8(b, ETW_TLG_IN_UINT64);
        break;
    case ETW_T_BOOL:
        put_u8(b, ETW_TLG_IN_UINT8 | ETW_TLG_CHAIN);
        put_u8(b, ETW_TLG_OUT_BOOLEAN);
        break;
    case ETW_T_STR:
        put_u8(b, ETW_TLG_IN_ANSISTRING | ETW_TLG_CHAIN);
        put_u8(b, ETW_TLG_OUT_UTF8);
        break;
    case ETW_T_HASH:
        put_u8(b, ETW_TLG_IN_ANSISTRING);
        break;
    case ETW_T_BLOB:
        put_u8(b, ETW_TLG_IN_BINARY);
        break;
    }
}

size_t etw__tlg_event_metadata(etw_event ev, uint8_t *buf, size_t cap)
{
    const etw_event_info *info = etw_event_describe(ev);
    if (info == NULL)
        return 0;
    blob b = {buf, cap, 0};
    put(&b, "\0\0", 2);
    put_u8(&b, 0); /* no tags */
    put_name(&b, info->name);
    for (size_t i = 0; i < info->nfields; i++) {
        put_name(&b, info->fields[i].name);
        put_type(&b, info->fields[i].type);
    }
    return finish(&b);
}

size_t etw__tlg_max_data(etw_event ev)
{
    const etw_event_info *info = etw_event_describe(ev);
    if (info == NULL)
        return 0;
    size_t n = info->nfields;
    for (size_t i = 0; i < info->nfields; i++)
        n += info->fields[i].type == ETW_T_BLOB;
    return n;
}

size_t etw__tlg_payload(etw_event ev, const etw_value *v, uint16_t *lens, etw_tlg_data *d)
{
    const etw_event_info *info = etw_event_describe(ev);
    if (info == NULL)
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < info->nfields; i++) {
        switch (info->fields[i].type) {
        case ETW_T_U8:
        case ETW_T_BOOL:
            d[n++] = (etw_tlg_data){&v[i].u, 1};
            break;
        case ETW_T_U32:
        case ETW_T_I32:
            d[n++] = (etw_tlg_data){&v[i].u, 4};
            break;
        case ETW_T_U64:
            d[n++] = (etw_tlg_data){&v[i].u, 8};
            break;
        case ETW_T_STR:
        case ETW_T_HASH:
            d[n++] = (etw_tlg_data){v[i].s, (uint32_t)v[i].len + 1};
            break;
        case ETW_T_BLOB:
            lens[i] = (uint16_t)(v[i].len > 0xFFFF ? 0xFFFF : v[i].len);
            d[n++] = (etw_tlg_data){&lens[i], 2};
            d[n++] = (etw_tlg_data){v[i].s, lens[i]};
            break;
        }
    }
    return n;
}
