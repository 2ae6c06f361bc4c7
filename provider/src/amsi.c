/*
 * amsi.c - the AMSI API (amsi.h) over the broker transport: argument checks with Windows'
 * HRESULTs, UTF-16 names converted to UTF-8 for the wire, sessions bound to their own connection.
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>

#define CONTEXT_MAGIC      0x414d5349u /* "AMSI" */
#define SESSION_MAGIC      0x53455353u /* "SESS" */
#define DEFAULT_TIMEOUT_MS 2000
#define DEFAULT_INLINE_MAX (1u << 20)
#define DEFAULT_SPIN_US    50 /* see amsi_spin.h */

size_t amsi__utf16_len(LPCWSTR s)
{
    size_t n = 0;
    if (s != NULL)
        while (s[n] != 0)
            n++;
    return n;
}

char *amsi__utf16_to_utf8(LPCWSTR s, size_t max_units)
{
    size_t n = amsi__utf16_len(s);
    if (n > max_units)
        n = max_units;
    char *out = malloc(3 * n + 1);
    if (out == NULL)
        return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = s[i];
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < n && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (s[i + 1] - 0xDC00u);
            i++;
        } else if (cp >= 0xD800 && cp <= 0xDFFF) {
            cp = 0xFFFD;
        }
        if (cp < 0x80) {
            out[w++] = (char)cp;
        } else if (cp < 0x800) {
            out[w++] = (char)(0xC0 | cp >> 6);
            out[w++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[w++] = (char)(0xE0 | cp >> 12);
            out[w++] = (char)(0x80 | (cp >> 6 & 0x3F));
            out[w++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[w++] = (char)(0xF0 | cp >> 18);
            out[w++] = (char)(0x80 | (cp >> 12 & 0x3F));
            out[w++] = (char)(0x80 | (cp >> 6 & 0x3F));
            out[w++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    out[w] = '\0';
    return out;
}

/* An integer from the environment, or def when unset or malformed. */
static long env_long(const char *name, long def, long min, long max)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    return (*end != '\0' || n < min || n > max) ? def : n;
}

static bool valid_context(HAMSICONTEXT ctx)
{
    return ctx != NULL && ctx->magic == CONTEXT_MAGIC;
}

HRESULT AmsiInitializeA(const char *appName, HAMSICONTEXT *amsiContext)
{
    if (appName == NULL || amsiContext == NULL)
        return AMSI_E_INVALIDARG;
    HAMSICONTEXT ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return AMSI_E_OUTOFMEMORY;
    const char *path = getenv("AMSI_BROKER_SOCKET");
    size_t app_len = strnlen(appName, AMSI_PROTO_MAX_APP);
    ctx->app = strndup(appName, app_len);
    ctx->socket_path = strdup(path && *path ? path : AMSI_DEFAULT_SOCKET);
    if (ctx->app == NULL || ctx->socket_path == NULL) {
        free(ctx->app);
        free(ctx->socket_path);
        free(ctx);
        return AMSI_E_OUTOFMEMORY;
    }
    ctx->timeout_ms = (int)env_long("AMSI_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 1, 3600 * 1000);
    ctx->inline_max = (size_t)env_long("AMSI_INLINE_MAX", DEFAULT_INLINE_MAX, 0, 64L << 20);
    ctx->spin_ns = (uint64_t)env_long("AMSI_SPIN_US", DEFAULT_SPIN_US, 0, 1000) * 1000u;
    atomic_init(&ctx->next_id, 1);
    pthread_mutex_init(&ctx->lock, NULL);
    ctx->magic = CONTEXT_MAGIC;
    *amsiContext = ctx;
    return AMSI_S_OK;
}

HRESULT AmsiInitialize(LPCWSTR appName, HAMSICONTEXT *amsiContext)
{
    if (appName == NULL || amsiContext == NULL)
        return AMSI_E_INVALIDARG;
    char *app = amsi__utf16_to_utf8(appName, AMSI_PROTO_MAX_APP / 3);
    if (app == NULL)
        return AMSI_E_OUTOFMEMORY;
    HRESULT hr = AmsiInitializeA(app, amsiContext);
    free(app);
    return hr;
}

void AmsiUninitialize(HAMSICONTEXT amsiContext)
{
    if (!valid_context(amsiContext))
        return;
    amsiContext->magic = 0;
    amsi__conn *c = amsiContext->idle;
    while (c) {
        amsi__conn *next = c->next;
        amsi__conn_close(c);
        c = next;
    }
    pthread_mutex_destroy(&amsiContext->lock);
    free(amsiContext->app);
    free(amsiContext->socket_path);
    free(amsiContext);
}

/* Opens the session on s->conn (connecting first if needed). */
static HRESULT session_open_on(HAMSISESSION s)
{
    amsi__call call = {.type = AMSI_PROTO_SESSION_OPEN};
    amsi__answer answer;
    int rc = amsi__call_broker(s->ctx, &s->conn, &call, &answer);
    if (rc != 0)
        return amsi__hresult_for_transport(rc, NULL);
    if (answer.status != AMSI_PROTO_STATUS_OK)
        return AMSI_E_BROKER;
    s->id = answer.session_id;
    return AMSI_S_OK;
}

HRESULT AmsiOpenSession(HAMSICONTEXT amsiContext, HAMSISESSION *amsiSession)
{
    if (!valid_context(amsiContext) || amsiSession == NULL)
        return AMSI_E_INVALIDARG;
    HAMSISESSION s = calloc(1, sizeof(*s));
    if (s == NULL)
        return AMSI_E_OUTOFMEMORY;
    s->ctx = amsiContext;
    pthread_mutex_init(&s->lock, NULL);
    HRESULT hr = session_open_on(s);
    if (hr != AMSI_S_OK) {
        /* Fail open: a session that the broker cannot hold still scans, without history. */
        s->id = 0;
    }
    s->magic = SESSION_MAGIC;
    *amsiSession = s;
    return AMSI_S_OK;
}

void AmsiCloseSession(HAMSICONTEXT amsiContext, HAMSISESSION amsiSession)
{
    if (!valid_context(amsiContext) || amsiSession == NULL || amsiSession->magic != SESSION_MAGIC)
        return;
    amsiSession->magic = 0;
    if (amsiSession->conn != NULL && amsiSession->id != 0) {
        amsi__call call = {.type = AMSI_PROTO_SESSION_CLOSE, .session_id = amsiSession->id};
        amsi__answer answer;
        (void)amsi__call_broker(amsiContext, &amsiSession->conn, &call, &answer);
    }
    amsi__conn_close(amsiSession->conn);
    pthread_mutex_destroy(&amsiSession->lock);
    free(amsiSession);
}

/* The common path of every scan and notification. */
static HRESULT scan(HAMSICONTEXT ctx, uint16_t type, const void *buffer, size_t length,
                    const char *name, HAMSISESSION session, uint32_t flags, AMSI_RESULT *result,
                    AMSI_SCAN_INFO *info)
{
    if (!valid_context(ctx) || result == NULL || (buffer == NULL && length > 0))
        return AMSI_E_INVALIDARG;
    if (session != NULL && session->magic != SESSION_MAGIC)
        return AMSI_E_INVALIDARG;
    if (info)
        memset(info, 0, sizeof(*info));
    size_t name_len = name ? strnlen(name, AMSI_PROTO_MAX_NAME) : 0;
    amsi__call call = {.type = type,
                       .flags = flags,
                       .name = name ? name : "",
                       .name_len = name_len,
                       .content = buffer,
                       .content_len = length};
    amsi__answer answer;
    int rc;
    if (session != NULL) {
        pthread_mutex_lock(&session->lock);
        if (session->id == 0 || session->conn == NULL)
            (void)session_open_on(session);
        call.session_id = session->id;
        rc = amsi__call_broker(ctx, &session->conn, &call, &answer);
        if (rc == 0 && answer.status == AMSI_PROTO_STATUS_NO_SESSION) {
            /* The broker restarted: a new session on the new connection, then the scan again. */
            if (session_open_on(session) == AMSI_S_OK) {
                call.session_id = session->id;
                rc = amsi__call_broker(ctx, &session->conn, &call, &answer);
            }
        }
        pthread_mutex_unlock(&session->lock);
    } else {
        rc = amsi__call_broker(ctx, NULL, &call, &answer);
    }
    if (rc != 0)
        return amsi__hresult_for_transport(rc, result);
    if (info) {
        info->status = answer.status;
        info->retry_after_ms = answer.retry_after_ms;
        info->scan_id = answer.scan_id;
        memcpy(info->rule, answer.rule, sizeof(info->rule));
        memcpy(info->object, answer.object, sizeof(info->object));
        memcpy(info->reason, answer.reason, sizeof(info->reason));
    }
    return amsi__hresult_for_status(answer.status, answer.amsi_result, result);
}

HRESULT AmsiScanBufferEx(HAMSICONTEXT amsiContext, const void *buffer, size_t length,
                         const char *contentName, HAMSISESSION amsiSession, uint32_t flags,
                         AMSI_RESULT *result, AMSI_SCAN_INFO *info)
{
    if (flags & ~(uint32_t)AMSI_SCAN_UTF16)
        return AMSI_E_INVALIDARG;
    return scan(amsiContext, AMSI_PROTO_SCAN, buffer, length, contentName, amsiSession,
                (flags & AMSI_SCAN_UTF16) ? AMSI_PROTO_F_UTF16 : 0, result, info);
}

HRESULT AmsiScanBufferA(HAMSICONTEXT amsiContext, const void *buffer, size_t length,
                        const char *contentName, HAMSISESSION amsiSession, AMSI_RESULT *result)
{
    return scan(amsiContext, AMSI_PROTO_SCAN, buffer, length, contentName, amsiSession, 0, result,
                NULL);
}

HRESULT AmsiScanStringA(HAMSICONTEXT amsiContext, const char *string, const char *contentName,
                        HAMSISESSION amsiSession, AMSI_RESULT *result)
{
    if (string == NULL)
        return AMSI_E_INVALIDARG;
    return scan(amsiContext, AMSI_PROTO_SCAN, string, strlen(string), contentName, amsiSession, 0,
                result, NULL);
}

HRESULT AmsiScanBuffer(HAMSICONTEXT amsiContext, PVOID buffer, ULONG length, LPCWSTR contentName,
                       HAMSISESSION amsiSession, AMSI_RESULT *result)
{
    char *name = amsi__utf16_to_utf8(contentName, AMSI_PROTO_MAX_NAME / 3);
    if (name == NULL)
        return AMSI_E_OUTOFMEMORY;
    HRESULT hr =
        scan(amsiContext, AMSI_PROTO_SCAN, buffer, length, name, amsiSession, 0, result, NULL);
    free(name);
    return hr;
}

HRESULT AmsiScanString(HAMSICONTEXT amsiContext, LPCWSTR string, LPCWSTR contentName,
                       HAMSISESSION amsiSession, AMSI_RESULT *result)
{
    if (string == NULL)
        return AMSI_E_INVALIDARG;
    char *name = amsi__utf16_to_utf8(contentName, AMSI_PROTO_MAX_NAME / 3);
    if (name == NULL)
        return AMSI_E_OUTOFMEMORY;
    /* As on Windows: the string's UTF-16LE bytes, without the terminator. */
    HRESULT hr = scan(amsiContext, AMSI_PROTO_SCAN, string, 2 * amsi__utf16_len(string), name,
                      amsiSession, AMSI_PROTO_F_UTF16, result, NULL);
    free(name);
    return hr;
}

HRESULT AmsiNotifyOperation(HAMSICONTEXT amsiContext, PVOID buffer, ULONG length,
                            LPCWSTR contentName, AMSI_RESULT *result)
{
    char *name = amsi__utf16_to_utf8(contentName, AMSI_PROTO_MAX_NAME / 3);
    if (name == NULL)
        return AMSI_E_OUTOFMEMORY;
    HRESULT hr = scan(amsiContext, AMSI_PROTO_NOTIFY, buffer, length, name, NULL, 0, result, NULL);
    free(name);
    return hr;
}
