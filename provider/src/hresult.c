/*
 * hresult.c - the one place where broker statuses and transport failures become HRESULTs and
 * fail-open results. Nothing else in libamsi picks an HRESULT for a scan outcome.
 */
#include "client.h"

HRESULT amsi__hresult_for_status(uint32_t status, uint32_t amsi_result, AMSI_RESULT *result)
{
    switch (status) {
    case AMSI_PROTO_STATUS_OK:
    case AMSI_PROTO_STATUS_LIMIT:
        /* A limit is a verdict the broker made (policy decided the result), not a failure. */
        *result = (AMSI_RESULT)amsi_result;
        return AMSI_S_OK;
    case AMSI_PROTO_STATUS_THROTTLED:
        /* The broker's policy (ratelimit.action) chose the result. `allow` fails open:
         * NOT_DETECTED with an HRESULT that says why nothing was scanned. `block` is a verdict:
         * S_OK with a blocked-by-admin result, which is what hosts act on (they ignore the
         * result of a failed call). AmsiScanBufferEx's status says THROTTLED either way. */
        if (AmsiResultIsBlockedByAdmin(amsi_result)) {
            *result = (AMSI_RESULT)amsi_result;
            return AMSI_S_OK;
        }
        *result = AMSI_RESULT_NOT_DETECTED;
        return AMSI_E_THROTTLED;
    case AMSI_PROTO_STATUS_BUSY:
        *result = AMSI_RESULT_NOT_DETECTED;
        return AMSI_E_BUSY;
    case AMSI_PROTO_STATUS_TOO_LARGE:
        *result = AMSI_RESULT_NOT_DETECTED;
        return AMSI_E_TOO_LARGE;
    case AMSI_PROTO_STATUS_BAD_REQUEST:
    case AMSI_PROTO_STATUS_NO_SESSION:
        *result = AMSI_RESULT_NOT_DETECTED;
        return AMSI_E_INVALIDARG;
    default:
        *result = AMSI_RESULT_NOT_DETECTED;
        return AMSI_E_BROKER;
    }
}

HRESULT amsi__hresult_for_transport(int err, AMSI_RESULT *result)
{
    /* Fail open: the host runs the script, and the HRESULT says why nothing was scanned. */
    if (result)
        *result = AMSI_RESULT_NOT_DETECTED;
    switch (err) {
    case AMSI__ETIMEDOUT:
        return AMSI_E_TIMEOUT;
    case AMSI__EUNAVAILABLE:
        return AMSI_E_UNAVAILABLE;
    case AMSI__ENOMEM:
        return AMSI_E_OUTOFMEMORY;
    default:
        return AMSI_E_BROKER;
    }
}
