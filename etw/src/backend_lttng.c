/*
 * backend_lttng.c - the LTTng-UST backend as amsid sees it: it loads the tracepoint provider
 * library (libamsi-lttng.so, built from lttng_provider.c) with dlopen and hands it each event.
 * amsid itself never links liblttng-ust; only this library does, so the broker runs on hosts
 * without LTTng as long as tracing is not configured with backend = lttng.
 *
 * The library is never unloaded: liblttng-ust starts threads and registers with the session
 * daemon when loaded, and does not support being unloaded while the process runs. Loading it
 * again (a reload that keeps backend = lttng) only takes another reference.
 */
#include "etw_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifndef ETW_LTTNG_LIBRARY
#define ETW_LTTNG_LIBRARY "libamsi-lttng.so"
#endif

typedef struct lttng {
    etw__backend base;
    const etw__lttng_provider *provider;
} lttng;

static void lttng_emit(etw__backend *b, etw_event ev, const etw_value *v)
{
    ((lttng *)b)->provider->emit(ev, v);
}

static bool lttng_wants(etw__backend *b, etw_event ev)
{
    return ((lttng *)b)->provider->enabled(ev) != 0;
}

static void lttng_destroy(etw__backend *b)
{
    free(b);
}

static void *load(const etw_config *cfg, char *why, size_t whylen)
{
    const char *paths[3] = {cfg->lttng_library, NULL, NULL};
    if (cfg->lttng_library == NULL) {
        paths[0] = ETW_LTTNG_LIBRARY;
#ifdef ETW_LTTNG_BUILD_LIBRARY
        paths[1] = ETW_LTTNG_BUILD_LIBRARY; /* running from the build tree */
#endif
    }
    void *h = NULL;
    for (size_t i = 0; i < 3 && paths[i] != NULL && h == NULL; i++) {
        h = dlopen(paths[i], RTLD_NOW | RTLD_LOCAL);
        if (h == NULL && i == 0) {
            const char *e = dlerror();
            etw__seterr(why, whylen, "%s", e ? e : paths[i]);
        }
    }
    return h;
}

int etw__lttng_create(const etw_config *cfg, etw__backend **out, char *err, size_t errlen)
{
    char why[512] = "";
    void *h = load(cfg, why, sizeof(why));
    if (h == NULL) {
        etw__seterr(err, errlen,
                    "trace.backend = lttng: cannot load the provider library (%s); is "
                    "liblttng-ust installed?",
                    why);
        return -ENOENT;
    }
    const etw__lttng_provider *p = dlsym(h, ETW__LTTNG_SYMBOL);
    if (p == NULL || p->abi != ETW__LTTNG_ABI || p->nevents != ETW_NEVENTS ||
        p->nfields != ETW__TOTAL_FIELDS || p->emit == NULL || p->enabled == NULL) {
        etw__seterr(err, errlen,
                    "trace.backend = lttng: the provider library does not match this amsid "
                    "(different schema or version)");
        return -EINVAL;
    }
    lttng *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        etw__seterr(err, errlen, "trace: out of memory");
        return -ENOMEM;
    }
    l->provider = p;
    l->base.kind = ETW_BACKEND_LTTNG;
    l->base.str_len_unused = true; /* lttng_tp.h records STR as NUL-terminated strings */
    l->base.wants = lttng_wants;
    l->base.emit = lttng_emit;
    l->base.destroy = lttng_destroy;
    *out = &l->base;
    return 0;
}
