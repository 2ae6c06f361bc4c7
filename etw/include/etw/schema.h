/*
 * schema.h - every trace event of amsi-broker, declared once (DESIGN.md §7).
 *
 * This file is the single source of truth for tracing. It holds only X-macros; everything else
 * (the event structs and emit functions of <etw/etw.h>, the enabled check, the LTTng tracepoint
 * provider, the Windows TraceLogging metadata, the JSON lines writer, the capture backend and the
 * events table of etw/README.md) is expanded from it by the C preprocessor.
 *
 * ETW_EVENTS(E) calls E(Name, LEVEL, KEYWORD, OPCODE, FIELDS, "description") once per event:
 *   Name     the event name; the LTTng event is `amsi_broker:Name`, the ETW event `Name`.
 *   LEVEL    CRITICAL, ERROR, WARNING, INFO or VERBOSE (ETW levels 1 to 5).
 *   KEYWORD  one keyword (see ETW_KEYWORDS): the group the event is enabled with.
 *   OPCODE   START, STOP or INFO (ETW opcodes 1, 2, 0).
 *   FIELDS   an X-macro F(TYPE, name, "description") per field, in payload order.
 *
 * Field types: U8, U32, I32, U64, BOOL, STR (UTF-8 text; NULL is emitted as ""), HASH (SHA-256,
 * given as 32 bytes or NULL, emitted as 64 lowercase hex digits or "") and BLOB (bytes given as a
 * pointer and a `<name>_len`, emitted only while the CONTENT keyword is on, capped at the
 * configured `content_max`; otherwise empty).
 *
 * Rules for changing it: events and keywords are only ever appended (an event's position is its
 * number and its bit in the enabled mask); a field is never removed or retyped, new fields go at
 * the end of their event. Every field is always present in every backend: 0 or "" when it does not
 * apply. After editing, regenerate the README table (`etw_schema --markdown`); a test fails until
 * it matches.
 */
#ifndef ETW_SCHEMA_H
#define ETW_SCHEMA_H

/* The provider: LTTng provider name (a C identifier) and ETW provider name. */
#define ETW_PROVIDER_NAME "amsi_broker"

/*
 * Keywords: K(NAME, bit value, "description"). At most one keyword per event; CONTENT belongs to
 * no event: it switches on the `content` field of ScanDecision. Bits 48-63 are reserved by ETW.
 */
#define ETW_KEYWORDS(K)                                                                            \
    K(LIFECYCLE, 0x1, "broker start, stop and configuration reloads")                              \
    K(CONNECTION, 0x2, "client connections")                                                       \
    K(SESSION, 0x4, "AMSI sessions")                                                               \
    K(SCAN, 0x8, "scan requests and their decisions")                                              \
    K(THROTTLE, 0x10, "declined requests, full queues and the reports about them")                 \
    K(LIMIT, 0x20, "scan limits that stopped scanning")                                            \
    K(ERROR, 0x40, "engine errors")                                                                \
    K(CONTENT, 0x100, "opt-in: the scanned content itself in ScanDecision (sensitive)")

#define ETW_FIELDS_BrokerStart(F)                                                                  \
    F(U32, pid, "process id of amsid")                                                             \
    F(STR, version, "amsi-broker version")                                                         \
    F(STR, config, "path of the configuration file")                                               \
    F(U32, workers, "I/O-and-scan threads")                                                        \
    F(U32, rules, "rules loaded")                                                                  \
    F(STR, backend, "trace backend in use (lttng, jsonl, ...)")

#define ETW_FIELDS_BrokerStop(F)                                                                   \
    F(U32, pid, "process id of amsid")                                                             \
    F(STR, reason, "why it stops (SIGTERM, control, error)")                                       \
    F(U64, uptime_ms, "milliseconds since BrokerStart")                                            \
    F(U64, requests, "requests answered since start")

#define ETW_FIELDS_ConfigReload(F)                                                                 \
    F(BOOL, ok, "the new configuration and rules are in use")                                      \
    F(U32, rules, "rules in the set now in use")                                                   \
    F(U32, compile_ms, "milliseconds spent compiling (or loading from cache)")                     \
    F(BOOL, cached, "the databases came from the serialized cache")                                \
    F(STR, error, "why the reload failed (file:line: reason); empty when ok")

#define ETW_FIELDS_ClientConnect(F)                                                                \
    F(U64, conn_id, "connection id, unique for the broker's lifetime")                             \
    F(U32, pid, "client pid (SO_PEERCRED)")                                                        \
    F(U32, uid, "client uid (SO_PEERCRED)")                                                        \
    F(U32, gid, "client gid (SO_PEERCRED)")                                                        \
    F(STR, exe, "client executable (/proc/pid/exe); sensitive")                                    \
    F(BOOL, exempt, "the executable is on the continuous-integration list")

#define ETW_FIELDS_ClientDisconnect(F)                                                             \
    F(U64, conn_id, "connection id")                                                               \
    F(U32, pid, "client pid")                                                                      \
    F(U32, uid, "client uid")                                                                      \
    F(STR, exe, "client executable; sensitive")                                                    \
    F(U64, requests, "requests received on the connection")                                        \
    F(STR, reason, "closed, error, stalled (replies unread), malformed, shutdown")

#define ETW_FIELDS_SessionOpen(F)                                                                  \
    F(U64, conn_id, "connection id")                                                               \
    F(U64, session, "session id (scoped to its connection)")                                       \
    F(U32, pid, "client pid")                                                                      \
    F(STR, appname, "application name given to AmsiInitialize (untrusted); sensitive")

#define ETW_FIELDS_SessionClose(F)                                                                 \
    F(U64, conn_id, "connection id")                                                               \
    F(U64, session, "session id")                                                                  \
    F(U32, pid, "client pid")                                                                      \
    F(U64, scans, "requests in the session")                                                       \
    F(U64, bytes, "content bytes scanned in the session")

#define ETW_FIELDS_ScanRequest(F)                                                                  \
    F(U64, scan_id, "request id, unique for the broker's lifetime; pairs with ScanDecision")       \
    F(U64, session, "AMSI session id, 0 without a session")                                        \
    F(U64, conn_id, "connection id")                                                               \
    F(U32, pid, "client pid")                                                                      \
    F(U32, uid, "client uid")                                                                      \
    F(STR, appname, "application name (untrusted); sensitive")                                     \
    F(STR, contentname, "content name given by the client; sensitive")                             \
    F(U64, contentsize, "content bytes received")                                                  \
    F(STR, kind, "buffer, string or notify")

#define ETW_FIELDS_ScanDecision(F)                                                                 \
    F(U64, scan_id, "request id; exactly one ScanDecision per ScanRequest")                        \
    F(U64, session, "AMSI session id, 0 without a session")                                        \
    F(U8, scanStatus, "1 when the content got a verdict (scanned, or from the cache), else 0")     \
    F(U32, scanResult, "AMSI_RESULT the client received (32768 = detected)")                       \
    F(STR, appname, "application name (untrusted); sensitive")                                     \
    F(STR, contentname, "content name given by the client; sensitive")                             \
    F(U64, contentsize, "content bytes received")                                                  \
    F(U64, originalsize, "content bytes before narrowing/decoding (as AMSI reports it)")           \
    F(HASH, hash, "SHA-256 of the content, 64 hex digits; empty when not computed")                \
    F(BOOL, contentFiltered, "the content field was left out or cut (keyword off or capped)")      \
    F(U32, pid, "client pid")                                                                      \
    F(U32, uid, "client uid")                                                                      \
    F(STR, exe, "client executable; sensitive")                                                    \
    F(STR, rule, "matched rule, empty when clean")                                                 \
    F(STR, object, "object path inside the content, e.g. a.zip>b.tar>evil.ps1")                    \
    F(STR, reason, "limit or error reason, empty otherwise")                                       \
    F(STR, status, "reply status (OK, THROTTLED, BUSY, ...), CLIENT_GONE or DROPPED")              \
    F(U64, latency_ns, "from request received to reply sent")                                      \
    F(BOOL, cached, "the verdict came from the verdict cache")                                     \
    F(BOOL, throttled, "the request was declined by the rate limit")                               \
    F(BOOL, exempt, "the caller is exempt from rate limiting")                                     \
    F(BLOB, content, "the scanned bytes, only with keyword CONTENT, capped; sensitive")

#define ETW_FIELDS_RequestDeclined(F)                                                              \
    F(U64, scan_id, "request id")                                                                  \
    F(U32, pid, "client pid")                                                                      \
    F(U32, uid, "client uid")                                                                      \
    F(STR, exe, "client executable; sensitive")                                                    \
    F(STR, appname, "application name (untrusted); sensitive")                                     \
    F(STR, class, "scan or notify")                                                                \
    F(U64, retry_after_ns, "wait until a request of this class would be accepted")                 \
    F(STR, action, "allow (fail open) or block (fail closed)")

#define ETW_FIELDS_LimitExceeded(F)                                                                \
    F(U64, scan_id, "request id")                                                                  \
    F(U32, pid, "client pid")                                                                      \
    F(STR, limit, "the limit, e.g. Limits.Exceeded.MaxScanTime")                                   \
    F(STR, object, "object path where scanning stopped")                                           \
    F(U64, value, "the value reached")                                                             \
    F(U64, max, "the configured maximum")

#define ETW_FIELDS_QueueFull(F)                                                                    \
    F(U64, scan_id, "request id (answered BUSY)")                                                  \
    F(U32, pid, "client pid")                                                                      \
    F(U32, depth, "requests in the queue")                                                         \
    F(U32, capacity, "queue capacity")                                                             \
    F(U64, contentsize, "content bytes of the refused request")

#define ETW_FIELDS_EngineError(F)                                                                  \
    F(U64, scan_id, "request id, 0 outside a request")                                             \
    F(U32, pid, "client pid, 0 outside a request")                                                 \
    F(I32, error, "engine error code (negative)")                                                  \
    F(STR, message, "engine error message")                                                        \
    F(STR, object, "object path being scanned")

#define ETW_FIELDS_ReportSent(F)                                                                   \
    F(STR, exe, "executable the report is about; sensitive")                                       \
    F(U32, uid, "its uid")                                                                         \
    F(STR, appname, "application name last declared (untrusted); sensitive")                       \
    F(U64, count, "declined requests in the window")                                               \
    F(U64, first_ns, "first decline in the window (CLOCK_REALTIME ns)")                            \
    F(U64, last_ns, "last decline in the window (CLOCK_REALTIME ns)")                              \
    F(STR, collector, "where the report went")                                                     \
    F(BOOL, ok, "the collector accepted it")

#define ETW_EVENTS(E)                                                                              \
    E(BrokerStart, INFO, LIFECYCLE, START, ETW_FIELDS_BrokerStart, "amsid started serving")        \
    E(BrokerStop, INFO, LIFECYCLE, STOP, ETW_FIELDS_BrokerStop, "amsid stopped serving")           \
    E(ConfigReload, INFO, LIFECYCLE, INFO, ETW_FIELDS_ConfigReload,                                \
      "a reload of rules and configuration finished")                                              \
    E(ClientConnect, VERBOSE, CONNECTION, START, ETW_FIELDS_ClientConnect,                         \
      "a client process connected")                                                                \
    E(ClientDisconnect, VERBOSE, CONNECTION, STOP, ETW_FIELDS_ClientDisconnect,                    \
      "a client connection closed")                                                                \
    E(SessionOpen, VERBOSE, SESSION, START, ETW_FIELDS_SessionOpen, "AmsiOpenSession")             \
    E(SessionClose, VERBOSE, SESSION, STOP, ETW_FIELDS_SessionClose, "AmsiCloseSession")           \
    E(ScanRequest, VERBOSE, SCAN, START, ETW_FIELDS_ScanRequest,                                   \
      "a scan or notify request was received")                                                     \
    E(ScanDecision, INFO, SCAN, STOP, ETW_FIELDS_ScanDecision,                                     \
      "the answer to a request, whatever the path: one per request")                               \
    E(RequestDeclined, WARNING, THROTTLE, INFO, ETW_FIELDS_RequestDeclined,                        \
      "the rate limit declined a request")                                                         \
    E(LimitExceeded, WARNING, LIMIT, INFO, ETW_FIELDS_LimitExceeded,                               \
      "a scan limit stopped scanning")                                                             \
    E(QueueFull, WARNING, THROTTLE, INFO, ETW_FIELDS_QueueFull,                                    \
      "the scan queue was full: the request got BUSY")                                             \
    E(EngineError, ERROR, ERROR, INFO, ETW_FIELDS_EngineError, "the scan engine failed")           \
    E(ReportSent, INFO, THROTTLE, INFO, ETW_FIELDS_ReportSent,                                     \
      "an aggregated declined-request report went to the administration server")

#endif
