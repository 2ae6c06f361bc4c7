/*
 * tracelogging.h - the Windows ETW TraceLogging encoding of the schema, in plain C that builds and
 * runs anywhere (the byte-exact tests run on Linux); only backend_etw_win.c calls Windows.
 *
 * TraceLogging events are self-describing: each EventWriteTransfer() carries, besides the
 * payload, a provider metadata blob (the provider traits: UINT16 size, the provider name, NUL) and
 * an event metadata blob:
 *
 *     UINT16 size                 total size of the blob, this field included, little-endian
 *     UINT8  tags = 0             event tags (none); the high bit would chain more tag bytes
 *     CHAR   name[]               event name, UTF-8, NUL-terminated
 *     per field:
 *       CHAR  name[]              field name, NUL-terminated
 *       UINT8 intype              how the payload is laid out; 0x80 = an outtype byte follows
 *       UINT8 outtype (optional)  how to show it
 *
 * Schema types map to in/out types as follows: U8 UINT8 (4); U32 UINT32 (8); I32 INT32 (7);
 * U64 UINT64 (10); BOOL UINT8 shown as BOOLEAN (4|0x80, 3); STR ANSISTRING shown as UTF-8
 * (2|0x80, 35); HASH ANSISTRING (2: 64 hex digits); BLOB BINARY (14: UINT16 length, then bytes).
 * Events use channel 11 (TraceLogging), the schema's level, opcode and keyword, id 0.
 */
#ifndef ETW_TRACELOGGING_H
#define ETW_TRACELOGGING_H

#include "etw_internal.h"

#include <stddef.h>
#include <stdint.h>

/* TraceLogging in-types and out-types used by the schema. */
#define ETW_TLG_IN_ANSISTRING 2
#define ETW_TLG_IN_INT32      7
#define ETW_TLG_IN_UINT8      4
#define ETW_TLG_IN_UINT32     8
#define ETW_TLG_IN_UINT64     10
#define ETW_TLG_IN_BINARY     14
#define ETW_TLG_CHAIN         0x80
#define ETW_TLG_OUT_BOOLEAN   3
#define ETW_TLG_OUT_UTF8      35
#define ETW_TLG_CHANNEL       11

/* A GUID laid out as Windows' GUID. */
typedef struct etw_tlg_guid {
    uint32_t data1;
    uint16_t data2;
    uint16_t data3;
    uint8_t data4[8];
} etw_tlg_guid;

/*
 * The provider id: the name-based GUID TraceLogging and EventSource derive from the provider name
 * (SHA-1 over a fixed namespace and the upper-cased name in UTF-16BE, version nibble 5), so
 * `*amsi_broker` in WPR or `tracelog -guid *amsi_broker` finds it:
 * {2493763a-f1c9-5e87-4960-8a6737eb7a59}.
 */
extern const etw_tlg_guid etw__tlg_provider_guid;

/*
 * Writes the provider traits blob into buf when it fits in cap bytes. Returns its size (like
 * snprintf: the blob is complete only when the result is <= cap). Can't fail.
 */
size_t etw__tlg_provider_traits(uint8_t *buf, size_t cap);

/*
 * Writes the metadata blob of event ev into buf when it fits. Returns its size (complete only
 * when <= cap), or 0 when ev is not an event. Can't fail.
 */
size_t etw__tlg_event_metadata(etw_event ev, uint8_t *buf, size_t cap);

/* One piece of payload: what an EVENT_DATA_DESCRIPTOR points at. */
typedef struct etw_tlg_data {
    const void *ptr;
    uint32_t size;
} etw_tlg_data;

/* Payload pieces event ev needs at most (a BLOB takes two). */
size_t etw__tlg_max_data(etw_event ev);

/*
 * Describes the payload of event ev with values v in d (at least etw__tlg_max_data(ev) entries),
 * in the order of its metadata. lens must have room for one UINT16 per field (BLOB lengths live
 * there). Numbers point into v (Windows is little-endian); strings include their NUL. Returns the
 * number of entries used. Can't fail.
 */
size_t etw__tlg_payload(etw_event ev, const etw_value *v, uint16_t *lens, etw_tlg_data *d);

#endif
