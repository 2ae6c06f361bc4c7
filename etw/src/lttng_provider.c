/*
 * lttng_provider.c - libamsi-lttng.so: the LTTng-UST tracepoint provider of amsi_broker, loaded
 * by backend_lttng.c with dlopen only when tracing is configured with backend = lttng. It defines
 * the tracepoints (lttng_tp.h) and exports one table, etw_lttng_provider_v1, through which amsid
 * emits: each call checks LTTng's own per-tracepoint enabled state first, so an event no session
 * enabled costs one branch here.
 */
#define LTTNG_UST_TRACEPOINT_CREATE_PROBES
#define LTTNG_UST_TRACEPOINT_DEFINE
#include "lttng_tp.h"

static void provider_emit(etw_event ev, const etw_value *v)
{
    switch (ev) {
#define ETW__TP_CASE(name, level, kw, op, fields, doc)                                             \
    case ETW_EV_##name:                                                                            \
        lttng_ust_tracepoint(amsi_broker, name, (const etw__vals_##name *)(const void *)v);        \
        break;
        ETW_EVENTS(ETW__TP_CASE)
#undef ETW__TP_CASE
    case ETW_NEVENTS:
        break;
    }
}

/* Whether any session enabled the event's tracepoint: amsid skips preparing the values if not. */
static int provider_enabled(etw_event ev)
{
    switch (ev) {
#define ETW__TP_ENABLED(name, level, kw, op, fields, doc)                                          \
    case ETW_EV_##name:                                                                            \
        return lttng_ust_tracepoint_enabled(amsi_broker, name) ? 1 : 0;
        ETW_EVENTS(ETW__TP_ENABLED)
#undef ETW__TP_ENABLED
    case ETW_NEVENTS:
        break;
    }
    return 0;
}

/* The one symbol backend_lttng.c looks up. */
extern const etw__lttng_provider etw_lttng_provider_v1;
const etw__lttng_provider etw_lttng_provider_v1 = {ETW__LTTNG_ABI, ETW_NEVENTS, ETW__TOTAL_FIELDS,
                                                   provider_emit, provider_enabled};
