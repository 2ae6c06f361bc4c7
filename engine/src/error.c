/*
 * error.c - the engine's error table: names and messages for the ENGINE_E* codes, both generated
 * from ENGINE_ERRNO_MAP so they can never drift from the enum.
 */
#include "engine/engine.h"

#include <hs.h>

const char *engine_strerror(int err)
{
    switch (err) {
#define ENGINE__ERR_MSG(name, code, msg)                                                           \
    case code:                                                                                     \
        return msg;
        ENGINE_ERRNO_MAP(ENGINE__ERR_MSG)
#undef ENGINE__ERR_MSG
    }
    return "unknown error";
}

const char *engine_err_name(int err)
{
    switch (err) {
#define ENGINE__ERR_NAME(name, code, msg)                                                          \
    case code:                                                                                     \
        return "ENGINE_E" #name;
        ENGINE_ERRNO_MAP(ENGINE__ERR_NAME)
#undef ENGINE__ERR_NAME
    }
    return "ENGINE_EUNKNOWN";
}

int engine_check_platform(void)
{
    return hs_valid_platform() == HS_SUCCESS ? 0 : ENGINE_EPLATFORM;
}

const char *engine_hyperscan_version(void)
{
    return hs_version();
}

const char *engine_verdict_name(engine_verdict verdict)
{
    switch (verdict) {
    case ENGINE_VERDICT_CLEAN:
        return "clean";
    case ENGINE_VERDICT_DETECTED:
        return "detected";
    case ENGINE_VERDICT_LIMIT:
        return "limit";
    case ENGINE_VERDICT_ERROR:
        return "error";
    }
    return "unknown";
}
