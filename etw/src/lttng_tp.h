/*
 * lttng_tp.h - the LTTng-UST tracepoints of provider amsi_broker, one per schema event, generated
 * from <etw/schema.h>. Included only by lttng_provider.c (several times, as LTTng requires).
 *
 * Each tracepoint takes the event's normalised values (etw__vals_<Event>) and records every field
 * under its schema name: integers as integers, STR as a string, HASH as a text array of exactly
 * 64 characters, BLOB as a sequence of bytes. Event names are "amsi_broker:<Event>"; the ETW level
 * maps to the LTTng log level below, so `lttng enable-event --loglevel` filters like an ETW level
 * does.
 *
 * What a field costs in liblttng-ust 2.13 decides the types: every text field is copied a byte at a
 * time (a string after a strlen to size the event, a text array or sequence after nothing), and
 * every integer, length prefix included, is one call into the ring buffer. So STR stays a string
 * (a sequence_text would add a length field and its call, to save only the strlen), and HASH, whose
 * length is known, is a fixed text array: no strlen, no terminating NUL, still text for
 * babeltrace2, LTTng filters and the Linux WPA plugin. A missing hash (etw value "") is 64 NUL
 * bytes, which readers show as "" (babeltrace2 2.0.4 sometimes shows the previous event's value
 * instead, as it does for empty strings; see etw/README.md). Recording the 32 raw bytes would be a
 * single memcpy, but every reader then shows 32 separate integers.
 */
#undef LTTNG_UST_TRACEPOINT_PROVIDER
#define LTTNG_UST_TRACEPOINT_PROVIDER amsi_broker

#undef LTTNG_UST_TRACEPOINT_INCLUDE
#define LTTNG_UST_TRACEPOINT_INCLUDE "lttng_tp.h"

#if !defined(ETW_LTTNG_TP_H) || defined(LTTNG_UST_TRACEPOINT_HEADER_MULTI_READ)
#define ETW_LTTNG_TP_H

#include <lttng/tracepoint.h>

#include "etw_internal.h"

/* ETW level -> LTTng log level. */
#define ETW__LL_CRITICAL LTTNG_UST_TRACEPOINT_LOGLEVEL_CRIT
#define ETW__LL_ERROR    LTTNG_UST_TRACEPOINT_LOGLEVEL_ERR
#define ETW__LL_WARNING  LTTNG_UST_TRACEPOINT_LOGLEVEL_WARNING
#define ETW__LL_INFO     LTTNG_UST_TRACEPOINT_LOGLEVEL_INFO
#define ETW__LL_VERBOSE  LTTNG_UST_TRACEPOINT_LOGLEVEL_DEBUG

#define ETW__TP_U8(name)   lttng_ust_field_integer(uint8_t, name, (uint8_t)v->f.name.u)
#define ETW__TP_U32(name)  lttng_ust_field_integer(uint32_t, name, (uint32_t)v->f.name.u)
#define ETW__TP_I32(name)  lttng_ust_field_integer(int32_t, name, (int32_t)v->f.name.u)
#define ETW__TP_U64(name)  lttng_ust_field_integer(uint64_t, name, v->f.name.u)
#define ETW__TP_BOOL(name) lttng_ust_field_integer(uint8_t, name, (uint8_t)v->f.name.u)
#define ETW__TP_STR(name)  lttng_ust_field_string(name, v->f.name.s)
#define ETW__TP_HASH(name) lttng_ust_field_array_text(char, name, v->f.name.s, 2 * ETW_HASH_BYTES)
#define ETW__TP_BLOB(name)                                                                         \
    lttng_ust_field_sequence(uint8_t, name, (const uint8_t *)v->f.name.s, uint32_t,                \
                             (uint32_t)v->f.name.len)
#define ETW__TP_FIELD(type, name, doc) ETW__TP_##type(name)

#define ETW__TP_EVENT(name, level, kw, op, fields, doc)                                            \
    LTTNG_UST_TRACEPOINT_EVENT(amsi_broker, name, LTTNG_UST_TP_ARGS(const etw__vals_##name *, v),  \
                               LTTNG_UST_TP_FIELDS(fields(ETW__TP_FIELD)))                         \
    LTTNG_UST_TRACEPOINT_LOGLEVEL(amsi_broker, name, ETW__LL_##level)

ETW_EVENTS(ETW__TP_EVENT)

#endif

#include <lttng/tracepoint-event.h>
