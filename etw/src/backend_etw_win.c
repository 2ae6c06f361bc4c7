/*
 * backend_etw_win.c - the Windows backend: registers provider amsi_broker with ETW and writes each
 * event with EventWriteTransfer() as a TraceLogging event whose metadata (tracelogging.c) is built
 * once at start from the schema. Windows only; Linux CI cross-compiles and links it with mingw-w64
 * as a check (etw/CMakeLists.txt, target etw_mingw_check).
 *
 * ETW's own filtering applies on top of the configured level and keywords: an event no session
 * enabled (EventProviderEnabled() false for its level and keyword) is not encoded.
 */
#include "tracelogging.h"

#include <windows.h>

#include <evntprov.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DESC_TYPE_EVENT_METADATA    1
#define DESC_TYPE_PROVIDER_METADATA 2
/* EventProviderSetTraits of the Windows SDK's EVENT_INFO_CLASS; mingw-w64's evntprov.h lacks it. */
#define INFO_SET_TRAITS ((EVENT_INFO_CLASS)2)

typedef struct win {
    etw__backend base;
    REGHANDLE handle;
    uint8_t traits[64];
    size_t traits_len;
    uint8_t *meta[ETW_NEVENTS];
    size_t meta_len[ETW_NEVENTS];
} win;

static void set_desc(EVENT_DATA_DESCRIPTOR *d, const void *p, size_t size, ULONG type)
{
    d->Ptr = (ULONGLONG)(ULONG_PTR)p;
    d->Size = (ULONG)size;
    d->Reserved = type; /* the low byte is the descriptor's Type */
}

static void win_emit(etw__backend *b, etw_event ev, const etw_value *v)
{
    win *w = (win *)b;
    const etw_event_info *info = etw_event_describe(ev);
    if (!EventProviderEnabled(w->handle, info->level, info->keyword))
        return;
    EVENT_DESCRIPTOR desc;
    memset(&desc, 0, sizeof(desc));
    desc.Channel = ETW_TLG_CHANNEL;
    desc.Level = info->level;
    desc.Opcode = info->opcode;
    desc.Keyword = info->keyword;

    EVENT_DATA_DESCRIPTOR data[2 + 64];
    uint16_t lens[64];
    etw_tlg_data pieces[64];
    if (etw__tlg_max_data(ev) > 64) {
        atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
        return;
    }
    set_desc(&data[0], w->traits, w->traits_len, DESC_TYPE_PROVIDER_METADATA);
    set_desc(&data[1], w->meta[ev], w->meta_len[ev], DESC_TYPE_EVENT_METADATA);
    size_t n = etw__tlg_payload(ev, v, lens, pieces);
    for (size_t i = 0; i < n; i++)
        set_desc(&data[2 + i], pieces[i].ptr, pieces[i].size, 0);
    if (EventWriteTransfer(w->handle, &desc, NULL, NULL, (ULONG)(2 + n), data) != ERROR_SUCCESS)
        atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
}

static void win_destroy(etw__backend *b)
{
    win *w = (win *)b;
    EventUnregister(w->handle);
    for (size_t i = 0; i < ETW_NEVENTS; i++)
        free(w->meta[i]);
    free(w);
}

int etw__win_create(const etw_config *cfg, etw__backend **out, char *err, size_t errlen)
{
    (void)cfg;
    win *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        etw__seterr(err, errlen, "trace: out of memory");
        return -ENOMEM;
    }
    w->traits_len = etw__tlg_provider_traits(w->traits, sizeof(w->traits));
    for (size_t i = 0; i < ETW_NEVENTS; i++) {
        w->meta_len[i] = etw__tlg_event_metadata((etw_event)i, NULL, 0);
        w->meta[i] = malloc(w->meta_len[i]);
        if (w->meta[i] == NULL) {
            win_destroy(&w->base);
            etw__seterr(err, errlen, "trace: out of memory");
            return -ENOMEM;
        }
        etw__tlg_event_metadata((etw_event)i, w->meta[i], w->meta_len[i]);
    }
    GUID guid;
    guid.Data1 = etw__tlg_provider_guid.data1;
    guid.Data2 = etw__tlg_provider_guid.data2;
    guid.Data3 = etw__tlg_provider_guid.data3;
    memcpy(guid.Data4, etw__tlg_provider_guid.data4, 8);
    ULONG rc = EventRegister(&guid, NULL, NULL, &w->handle);
    if (rc != ERROR_SUCCESS) {
        for (size_t i = 0; i < ETW_NEVENTS; i++)
            free(w->meta[i]);
        free(w);
        etw__seterr(err, errlen, "trace.backend = etw: EventRegister failed (%lu)", rc);
        return -EIO;
    }
    EventSetInformation(w->handle, INFO_SET_TRAITS, w->traits, (ULONG)w->traits_len);
    w->base.kind = ETW_BACKEND_ETW;
    w->base.emit = win_emit;
    w->base.destroy = win_destroy;
    *out = &w->base;
    return 0;
}
