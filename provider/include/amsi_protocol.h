/*
 * amsi_protocol.h - the wire protocol between libamsi (the client) and amsid (the broker), and its
 * codec. Both sides use these functions; nothing else builds or parses a frame.
 *
 * Transport: AF_UNIX, SOCK_SEQPACKET, one message per frame (DESIGN.md §5). All integers are
 * little-endian, fixed width, at fixed offsets; strings are UTF-8 byte runs with explicit lengths
 * (no terminator on the wire). Every field from the peer is untrusted: decoding checks each length
 * against the frame and the protocol's bounds before anything is used.
 *
 * Request frame (client -> broker):
 *   offset size field
 *   0      4    magic          AMSI_PROTO_MAGIC ("AMSB")
 *   4      2    version        AMSI_PROTO_VERSION
 *   6      2    type           amsi_proto_type (SCAN, NOTIFY, SESSION_OPEN, SESSION_CLOSE, PING)
 *   8      4    flags          AMSI_PROTO_F_*
 *   12     4    header_len     AMSI_PROTO_REQ_HEADER (a later version may append fields)
 *   16     8    request_id     chosen by the client; echoed in the reply
 *   24     8    session_id     0 = none; else an id from a SESSION_OPEN reply on this connection
 *   32     4    app_len        declared application name (AmsiInitialize), <= AMSI_PROTO_MAX_APP
 *   36     4    name_len       content name (AmsiScanBuffer's contentName), <= AMSI_PROTO_MAX_NAME
 *   40     8    content_len    content bytes: inline in this frame, or the size of the memfd
 *   48     -    app name, content name, then content (inline only)
 * With AMSI_PROTO_F_MEMFD the content travels as one sealed memfd in SCM_RIGHTS and the frame
 * holds no content bytes; content_len is the memfd's size.
 *
 * Reply frame (broker -> client):
 *   0      4    magic
 *   4      2    version
 *   6      2    type           AMSI_PROTO_REPLY
 *   8      4    flags          0
 *   12     4    header_len     AMSI_PROTO_REP_HEADER
 *   16     8    request_id     the request's (0 when the request could not be read at all)
 *   24     8    session_id     the session (SESSION_OPEN: the new id)
 *   32     4    status         amsi_proto_status
 *   36     4    amsi_result    AMSI_RESULT value
 *   40     4    retry_after_ms THROTTLED: when to try again; else 0
 *   44     4    rule_len       matched rule name, <= AMSI_PROTO_MAX_RULE
 *   48     4    object_len     object path of the match, <= AMSI_PROTO_MAX_OBJECT
 *   52     4    reason_len     reason (limit name, error text), <= AMSI_PROTO_MAX_REASON
 *   56     8    scan_id        the broker's id for the decision (trace events carry it)
 *   64     -    rule, object, reason
 */
#ifndef AMSI_PROTOCOL_H
#define AMSI_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AMSI_PROTO_MAGIC      0x42534D41u /* "AMSB" read as a little-endian u32 */
#define AMSI_PROTO_VERSION    1u
#define AMSI_PROTO_REQ_HEADER 48u
#define AMSI_PROTO_REP_HEADER 64u

#define AMSI_PROTO_MAX_APP    1024u
#define AMSI_PROTO_MAX_NAME   4096u
#define AMSI_PROTO_MAX_RULE   256u
#define AMSI_PROTO_MAX_OBJECT 4096u
#define AMSI_PROTO_MAX_REASON 512u
/* The largest reply frame: header and the three bounded strings. */
#define AMSI_PROTO_MAX_REPLY                                                                       \
    (AMSI_PROTO_REP_HEADER + AMSI_PROTO_MAX_RULE + AMSI_PROTO_MAX_OBJECT + AMSI_PROTO_MAX_REASON)

typedef enum amsi_proto_type {
    AMSI_PROTO_SCAN = 1,          /* AmsiScanBuffer / AmsiScanString */
    AMSI_PROTO_NOTIFY = 2,        /* AmsiNotifyOperation */
    AMSI_PROTO_SESSION_OPEN = 3,  /* AmsiOpenSession: no content */
    AMSI_PROTO_SESSION_CLOSE = 4, /* AmsiCloseSession: no content */
    AMSI_PROTO_PING = 5,          /* liveness; no content */
    AMSI_PROTO_REPLY = 0x81,
} amsi_proto_type;

/* Request flags. */
#define AMSI_PROTO_F_UTF16 0x1u /* content is UTF-16LE (AmsiScanString, wide notifications) */
#define AMSI_PROTO_F_MEMFD 0x2u /* content is a sealed memfd passed with SCM_RIGHTS */
#define AMSI_PROTO_F_KNOWN (AMSI_PROTO_F_UTF16 | AMSI_PROTO_F_MEMFD)

/* The AMSI_RESULT a broker sends when its policy blocks (AMSI_RESULT_BLOCKED_BY_ADMIN_START). */
#define AMSI_PROTO_RESULT_BLOCKED_BY_ADMIN 0x4000u

/* Reply status: never renumbered; new ones are appended. */
#define AMSI_PROTO_STATUS_MAP(X)                                                                   \
    X(OK, 0, "scanned")                                                                            \
    X(THROTTLED, 1, "declined: the caller exceeded its request limit")                             \
    X(BUSY, 2, "declined: the scan queue is full")                                                 \
    X(TOO_LARGE, 3, "content larger than the broker accepts")                                      \
    X(BAD_REQUEST, 4, "malformed request")                                                         \
    X(ENGINE_ERROR, 5, "the scan engine failed")                                                   \
    X(UNSUPPORTED_VERSION, 6, "unsupported protocol version")                                      \
    X(NO_SESSION, 7, "no such session on this connection")                                         \
    X(LIMIT, 8, "a scan limit stopped scanning")                                                   \
    X(SHUTTING_DOWN, 9, "the broker is stopping")

#define AMSI_PROTO__STATUS_ENUM(name, code, msg) AMSI_PROTO_STATUS_##name = (code),
typedef enum amsi_proto_status { AMSI_PROTO_STATUS_MAP(AMSI_PROTO__STATUS_ENUM) } amsi_proto_status;
#undef AMSI_PROTO__STATUS_ENUM

/* "OK", "THROTTLED", ... ("UNKNOWN" outside the table). Can't fail. */
const char *amsi_proto_status_name(uint32_t status);
/* A one-line description of a status. Can't fail. */
const char *amsi_proto_status_message(uint32_t status);

/* Codec errors: why a frame was refused (negative; 0 is success). */
#define AMSI_PROTO_ESHORT   (-1) /* shorter than its header or than its lengths say */
#define AMSI_PROTO_EMAGIC   (-2) /* not our magic */
#define AMSI_PROTO_EVERSION (-3) /* a version this side does not speak */
#define AMSI_PROTO_ETYPE    (-4) /* unknown or unexpected type */
#define AMSI_PROTO_EFIELD   (-5) /* a field out of bounds (string too long, unknown flag ...) */
#define AMSI_PROTO_ESPACE   (-6) /* the output buffer is too small (encoding) */
#define AMSI_PROTO_ELONG    (-7) /* longer than its lengths say (trailing bytes) */

/* A decoded request: pointers into the frame buffer (valid as long as it is). */
typedef struct amsi_proto_request {
    uint16_t version;
    uint16_t type;
    uint32_t flags;
    uint64_t request_id;
    uint64_t session_id;
    const char *app; /* not NUL-terminated */
    uint32_t app_len;
    const char *name;
    uint32_t name_len;
    const uint8_t *content; /* NULL with AMSI_PROTO_F_MEMFD */
    uint64_t content_len;
} amsi_proto_request;

/* A decoded reply: pointers into the frame buffer. */
typedef struct amsi_proto_reply {
    uint64_t request_id;
    uint64_t session_id;
    uint64_t scan_id;
    uint32_t status;
    uint32_t amsi_result;
    uint32_t retry_after_ms;
    const char *rule;
    uint32_t rule_len;
    const char *object;
    uint32_t object_len;
    const char *reason;
    uint32_t reason_len;
} amsi_proto_reply;

/*
 * Writes a request's header, app name and content name into buf (cap bytes) and returns the
 * header+strings length in *len. Inline content is not copied: the caller sends it as a second
 * iovec right after these bytes (so a 1 MiB script is never copied twice). With
 * AMSI_PROTO_F_MEMFD, req->content is ignored and content_len is the memfd size. req->version is
 * ignored (AMSI_PROTO_VERSION is written). Returns 0, AMSI_PROTO_EFIELD (anything decoding would
 * refuse: type, flags, bounds, content on a type without content) or AMSI_PROTO_ESPACE.
 * Thread-safe.
 */
int amsi_proto_encode_request(const amsi_proto_request *req, uint8_t *buf, size_t cap, size_t *len);

/*
 * Decodes and validates a request frame of len bytes. On success *req points into frame.
 * Returns 0 or a negative AMSI_PROTO_E* code; on failure (AMSI_PROTO_EVERSION and any other
 * error after the magic matched), req->request_id and req->version are still filled when the
 * frame holds them (24 and 6 bytes), so the reply can name the request; other fields are 0.
 * Thread-safe.
 */
int amsi_proto_decode_request(const uint8_t *frame, size_t len, amsi_proto_request *req);

/*
 * Encodes a whole reply frame into buf; strings longer than their bounds are cut at the bound
 * (on a UTF-8 character boundary). Returns 0 or AMSI_PROTO_ESPACE; *len gets the frame length.
 * A buffer of AMSI_PROTO_MAX_REPLY bytes always suffices. Thread-safe.
 */
int amsi_proto_encode_reply(const amsi_proto_reply *rep, uint8_t *buf, size_t cap, size_t *len);

/* Decodes and validates a reply frame. Returns 0 or a negative AMSI_PROTO_E* code. */
int amsi_proto_decode_reply(const uint8_t *frame, size_t len, amsi_proto_reply *rep);

#ifdef __cplusplus
}
#endif
#endif
