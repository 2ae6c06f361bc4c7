/*
 * amsi.h - the Antimalware Scan Interface for Linux, with Microsoft's names, types, values and
 * parameter order, so code written against Windows' amsi.h builds and behaves the same here.
 *
 * Strings are UTF-16 as on Windows: WCHAR is 16 bits (not wchar_t, which is 32 bits on Linux), so
 * a buffer built for Windows means the same thing here. UTF-8 convenience calls for Linux callers
 * and one extended call (status, rule, object path, retry-after) follow the Windows API.
 *
 * Every call goes to the amsid broker over a local socket ($AMSI_BROKER_SOCKET, else
 * AMSI_DEFAULT_SOCKET). A call never hangs: after the timeout ($AMSI_TIMEOUT_MS, default 2000)
 * it fails open: *result = AMSI_RESULT_NOT_DETECTED and the HRESULT is AMSI_E_TIMEOUT.
 * All functions are thread-safe; one context may be used by many threads at once.
 */
#ifndef AMSI_H
#define AMSI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef AMSI_NO_WINDOWS_TYPES
typedef int32_t HRESULT;
typedef uint16_t WCHAR;
typedef const WCHAR *LPCWSTR;
typedef void *PVOID;
typedef uint32_t ULONG;
#endif

#define AMSI_DEFAULT_SOCKET "/run/amsi-broker/scan.sock"

typedef enum AMSI_RESULT {
    AMSI_RESULT_CLEAN = 0,
    AMSI_RESULT_NOT_DETECTED = 1,
    AMSI_RESULT_BLOCKED_BY_ADMIN_START = 0x4000,
    AMSI_RESULT_BLOCKED_BY_ADMIN_END = 0x4fff,
    AMSI_RESULT_DETECTED = 32768,
} AMSI_RESULT;

#define AmsiResultIsMalware(r) ((r) >= AMSI_RESULT_DETECTED)
#define AmsiResultIsBlockedByAdmin(r)                                                              \
    (((r) >= AMSI_RESULT_BLOCKED_BY_ADMIN_START) && ((r) <= AMSI_RESULT_BLOCKED_BY_ADMIN_END))

typedef struct HAMSICONTEXT__ *HAMSICONTEXT;
typedef struct HAMSISESSION__ *HAMSISESSION;

/* HRESULTs, with Windows' values where Windows has them. */
#define AMSI_S_OK              ((HRESULT)0)
#define AMSI_E_INVALIDARG      ((HRESULT)0x80070057)
#define AMSI_E_OUTOFMEMORY     ((HRESULT)0x8007000E)
#define AMSI_E_NOT_VALID_STATE ((HRESULT)0x8007139F)
/* Ours (facility ITF, codes 0x0A00..): the scan did not run; *result was set to fail open. */
#define AMSI_E_TIMEOUT     ((HRESULT)0x80040A01) /* the broker did not answer in time */
#define AMSI_E_UNAVAILABLE ((HRESULT)0x80040A02) /* no broker at the socket */
#define AMSI_E_THROTTLED   ((HRESULT)0x80040A03) /* declined: request limit exceeded */
#define AMSI_E_BUSY        ((HRESULT)0x80040A04) /* declined: scan queue full */
#define AMSI_E_TOO_LARGE   ((HRESULT)0x80040A05) /* content above the broker's maximum */
#define AMSI_E_BROKER      ((HRESULT)0x80040A06) /* the broker refused or failed the request */

HRESULT AmsiInitialize(LPCWSTR appName, HAMSICONTEXT *amsiContext);
void AmsiUninitialize(HAMSICONTEXT amsiContext);
HRESULT AmsiOpenSession(HAMSICONTEXT amsiContext, HAMSISESSION *amsiSession);
void AmsiCloseSession(HAMSICONTEXT amsiContext, HAMSISESSION amsiSession);
HRESULT AmsiScanBuffer(HAMSICONTEXT amsiContext, PVOID buffer, ULONG length, LPCWSTR contentName,
                       HAMSISESSION amsiSession, AMSI_RESULT *result);
HRESULT AmsiScanString(HAMSICONTEXT amsiContext, LPCWSTR string, LPCWSTR contentName,
                       HAMSISESSION amsiSession, AMSI_RESULT *result);
HRESULT AmsiNotifyOperation(HAMSICONTEXT amsiContext, PVOID buffer, ULONG length,
                            LPCWSTR contentName, AMSI_RESULT *result);

/* UTF-8 convenience for Linux callers: same semantics, strings in UTF-8. */
HRESULT AmsiInitializeA(const char *appName, HAMSICONTEXT *amsiContext);
HRESULT AmsiScanBufferA(HAMSICONTEXT amsiContext, const void *buffer, size_t length,
                        const char *contentName, HAMSISESSION amsiSession, AMSI_RESULT *result);
HRESULT AmsiScanStringA(HAMSICONTEXT amsiContext, const char *string, const char *contentName,
                        HAMSISESSION amsiSession, AMSI_RESULT *result);

/* What the extended call reports besides the result. */
typedef struct AMSI_SCAN_INFO {
    uint32_t status;         /* amsi_proto_status: 0 OK, 1 THROTTLED, 2 BUSY, ... */
    uint32_t retry_after_ms; /* THROTTLED: when to try again */
    uint64_t scan_id;        /* the broker's id for this decision (in its trace events) */
    char rule[256];          /* matched rule, "" when none */
    char object[1024];       /* object path of the match, e.g. "script>base64@12" */
    char reason[256];        /* limit or error reason, "" when none */
} AMSI_SCAN_INFO;

/*
 * AmsiScanBuffer plus what the broker said about it. info may be NULL. flags: AMSI_SCAN_UTF16
 * when the buffer is UTF-16LE text.
 */
#define AMSI_SCAN_UTF16 0x1u
HRESULT AmsiScanBufferEx(HAMSICONTEXT amsiContext, const void *buffer, size_t length,
                         const char *contentName, HAMSISESSION amsiSession, uint32_t flags,
                         AMSI_RESULT *result, AMSI_SCAN_INFO *info);

#ifdef __cplusplus
}
#endif
#endif
