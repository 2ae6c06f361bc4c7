/*
 * protocol.c - the wire codec shared by libamsi and amsid: requests and replies to and from the
 * byte layouts documented in amsi_protocol.h, and the names and messages of the reply statuses.
 *
 * Every integer goes through the byte helpers below, which assemble little-endian values one byte
 * at a time: no struct is laid over a frame, no load is unaligned, and the result is the same on
 * any host byte order. Decoding treats the frame as hostile. Each field is checked against the
 * protocol's bounds before it is used, and lengths are compared with what is left of the frame
 * rather than added to an offset, so no 32- or 64-bit length from the peer can wrap size_t.
 *
 * The decoders accept exactly one encoding of a message (header_len equal to ours, no unknown
 * flags, no trailing bytes), and the encoders refuse or trim anything the decoders would refuse,
 * so an encoded frame always decodes and a decoded frame re-encodes to the same bytes.
 *
 * Versions. A frame's first 24 bytes (magic, version, type, flags, header_len, request_id) are
 * meant to keep their meaning in every version; a later version may append header fields, raise
 * header_len and bump the version. This side speaks version 1 only: any other version is refused
 * with AMSI_PROTO_EVERSION before the rest of the header is looked at (the request id is passed
 * up when the frame holds it, so the broker can answer UNSUPPORTED_VERSION to the right request).
 * A header_len larger than ours therefore never means "skip fields you don't know" here; in a
 * version 1 frame it must equal the constant, else AMSI_PROTO_EFIELD. A later decoder that still
 * accepts version 1 frames can use header_len to find where their strings start.
 *
 * Nothing here allocates or keeps state; every function is thread-safe.
 */
#include "amsi_protocol.h"

#include <limits.h>
#include <string.h>

/* Lengths from the wire are compared as uint64_t; that is only sound if size_t fits in it. */
_Static_assert(SIZE_MAX <= UINT64_MAX, "size_t wider than 64 bits");
_Static_assert(CHAR_BIT == 8, "the codec assumes 8-bit bytes");

/* Field offsets shared by both frames (the first 32 bytes have the same layout). */
#define OFF_MAGIC      0u
#define OFF_VERSION    4u
#define OFF_TYPE       6u
#define OFF_FLAGS      8u
#define OFF_HEADER_LEN 12u
#define OFF_REQUEST_ID 16u
#define OFF_SESSION_ID 24u
/* The bytes a frame needs before its version and its request id can be read. */
#define PREFIX_VERSION    (OFF_VERSION + 2u)
#define PREFIX_REQUEST_ID (OFF_REQUEST_ID + 8u)

/* Request-only offsets. */
#define REQ_OFF_APP_LEN     32u
#define REQ_OFF_NAME_LEN    36u
#define REQ_OFF_CONTENT_LEN 40u

/* Reply-only offsets. */
#define REP_OFF_STATUS      32u
#define REP_OFF_AMSI_RESULT 36u
#define REP_OFF_RETRY_AFTER 40u
#define REP_OFF_RULE_LEN    44u
#define REP_OFF_OBJECT_LEN  48u
#define REP_OFF_REASON_LEN  52u
#define REP_OFF_SCAN_ID     56u

_Static_assert(REQ_OFF_CONTENT_LEN + 8u == AMSI_PROTO_REQ_HEADER, "request header layout");
_Static_assert(REP_OFF_SCAN_ID + 8u == AMSI_PROTO_REP_HEADER, "reply header layout");

/* ---------------------------------------------------------------------------------------------
 * Little-endian byte helpers
 * ------------------------------------------------------------------------------------------- */

/* Reads the little-endian u16 at p. Can't fail; p needs 2 readable bytes. */
static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] | (unsigned)p[1] << 8);
}

/* Reads the little-endian u32 at p. Can't fail; p needs 4 readable bytes. */
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Reads the little-endian u64 at p. Can't fail; p needs 8 readable bytes. */
static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* Writes v at p as a little-endian u16. Can't fail; p needs 2 writable bytes. */
static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* Writes v at p as a little-endian u32. Can't fail; p needs 4 writable bytes. */
static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Writes v at p as a little-endian u64. Can't fail; p needs 8 writable bytes. */
static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

/* ---------------------------------------------------------------------------------------------
 * Statuses
 * ------------------------------------------------------------------------------------------- */

const char *amsi_proto_status_name(uint32_t status)
{
    switch (status) {
#define AMSI_PROTO__STATUS_NAME(name, code, msg)                                                   \
    case code:                                                                                     \
        return #name;
        AMSI_PROTO_STATUS_MAP(AMSI_PROTO__STATUS_NAME)
#undef AMSI_PROTO__STATUS_NAME
    }
    return "UNKNOWN";
}

const char *amsi_proto_status_message(uint32_t status)
{
    switch (status) {
#define AMSI_PROTO__STATUS_MSG(name, code, msg)                                                    \
    case code:                                                                                     \
        return msg;
        AMSI_PROTO_STATUS_MAP(AMSI_PROTO__STATUS_MSG)
#undef AMSI_PROTO__STATUS_MSG
    }
    return "unknown status";
}

/* ---------------------------------------------------------------------------------------------
 * Shared header checks
 * ------------------------------------------------------------------------------------------- */

/*
 * Checks the parts of a frame's header that every version and both directions share: the magic,
 * the version, and that len covers header bytes (our header size for version 1). Once the magic
 * matched, *version and *request_id get the frame's values when it holds them, whatever the
 * outcome, so a caller can name the request in its answer; they are left alone otherwise.
 * Returns 0, AMSI_PROTO_ESHORT, AMSI_PROTO_EMAGIC or AMSI_PROTO_EVERSION.
 */
static int check_prefix(const uint8_t *frame, size_t len, size_t header, uint16_t *version,
                        uint64_t *request_id)
{
    if (frame == NULL || len < OFF_VERSION)
        return AMSI_PROTO_ESHORT;
    if (get_u32(frame + OFF_MAGIC) != AMSI_PROTO_MAGIC)
        return AMSI_PROTO_EMAGIC;
    if (len < PREFIX_VERSION)
        return AMSI_PROTO_ESHORT;
    *version = get_u16(frame + OFF_VERSION);
    if (len >= PREFIX_REQUEST_ID)
        *request_id = get_u64(frame + OFF_REQUEST_ID);
    if (*version != AMSI_PROTO_VERSION)
        return AMSI_PROTO_EVERSION;
    if (len < header)
        return AMSI_PROTO_ESHORT;
    return 0;
}

/* Whether type is one a client may send. Can't fail. */
static int is_request_type(uint32_t type)
{
    return type >= AMSI_PROTO_SCAN && type <= AMSI_PROTO_PING;
}

/* Whether a request of this type carries content (SCAN, NOTIFY). Can't fail. */
static int type_has_content(uint32_t type)
{
    return type == AMSI_PROTO_SCAN || type == AMSI_PROTO_NOTIFY;
}

/*
 * Checks the request fields that do not depend on the frame's length: type, flags, string
 * bounds, and the no-content rule for SESSION_OPEN, SESSION_CLOSE and PING. Shared by the
 * encoder and the decoder so the two cannot disagree. Returns 0, AMSI_PROTO_ETYPE or
 * AMSI_PROTO_EFIELD.
 */
static int check_request_fields(uint32_t type, uint32_t flags, uint32_t app_len, uint32_t name_len,
                                uint64_t content_len)
{
    if (!is_request_type(type))
        return AMSI_PROTO_ETYPE;
    if ((flags & ~AMSI_PROTO_F_KNOWN) != 0)
        return AMSI_PROTO_EFIELD;
    if (app_len > AMSI_PROTO_MAX_APP || name_len > AMSI_PROTO_MAX_NAME)
        return AMSI_PROTO_EFIELD;
    if (!type_has_content(type) && (content_len != 0 || (flags & AMSI_PROTO_F_MEMFD) != 0))
        return AMSI_PROTO_EFIELD;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------------------- */

/*
 * Encoding refuses (AMSI_PROTO_EFIELD) anything decoding would refuse: a type that is not a
 * request type, unknown flags, strings over their bounds or NULL with a non-zero length, content
 * on a type without content, and inline content so long that the whole frame's length would not
 * fit in a size_t. req->version is ignored: the frame always says AMSI_PROTO_VERSION. A NULL req
 * or len is AMSI_PROTO_EFIELD; a NULL buf can only hold nothing (AMSI_PROTO_ESPACE). *len is
 * written only on success.
 */
int amsi_proto_encode_request(const amsi_proto_request *req, uint8_t *buf, size_t cap, size_t *len)
{
    size_t need;
    int rc;

    if (req == NULL || len == NULL)
        return AMSI_PROTO_EFIELD;
    rc = check_request_fields(req->type, req->flags, req->app_len, req->name_len, req->content_len);
    if (rc != 0)
        return AMSI_PROTO_EFIELD;
    if ((req->app == NULL && req->app_len != 0) || (req->name == NULL && req->name_len != 0))
        return AMSI_PROTO_EFIELD;
    /* Both strings are bounded, so this sum is small; only the content can be huge. */
    need = AMSI_PROTO_REQ_HEADER + (size_t)req->app_len + (size_t)req->name_len;
    if ((req->flags & AMSI_PROTO_F_MEMFD) == 0 && req->content_len > (uint64_t)(SIZE_MAX - need))
        return AMSI_PROTO_EFIELD;
    if (buf == NULL || cap < need)
        return AMSI_PROTO_ESPACE;

    put_u32(buf + OFF_MAGIC, AMSI_PROTO_MAGIC);
    put_u16(buf + OFF_VERSION, AMSI_PROTO_VERSION);
    put_u16(buf + OFF_TYPE, req->type);
    put_u32(buf + OFF_FLAGS, req->flags);
    put_u32(buf + OFF_HEADER_LEN, AMSI_PROTO_REQ_HEADER);
    put_u64(buf + OFF_REQUEST_ID, req->request_id);
    put_u64(buf + OFF_SESSION_ID, req->session_id);
    put_u32(buf + REQ_OFF_APP_LEN, req->app_len);
    put_u32(buf + REQ_OFF_NAME_LEN, req->name_len);
    put_u64(buf + REQ_OFF_CONTENT_LEN, req->content_len);
    if (req->app_len != 0)
        memcpy(buf + AMSI_PROTO_REQ_HEADER, req->app, req->app_len);
    if (req->name_len != 0)
        memcpy(buf + AMSI_PROTO_REQ_HEADER + req->app_len, req->name, req->name_len);
    *len = need;
    return 0;
}

/*
 * The checks run in wire order, so a frame with several faults reports the first: ESHORT when the
 * magic or version can't be read, EMAGIC, EVERSION, ESHORT when the header is cut, ETYPE,
 * EFIELD (header_len, flags, string bounds, content on a type without content), then the lengths
 * against the frame: a string or inline content running past the end is ESHORT, bytes left over
 * (including any content bytes with AMSI_PROTO_F_MEMFD) are ELONG. Each length is compared with
 * the bytes still unread and subtracted from them, so no sum can wrap. A NULL frame is ESHORT;
 * a NULL req is EFIELD. On failure *req is zeroed except that, once the magic matched,
 * req->version and req->request_id hold the frame's values when it is long enough for them (6
 * and 24 bytes), so the broker can answer UNSUPPORTED_VERSION, BAD_REQUEST or TOO_LARGE to the
 * right request.
 */
int amsi_proto_decode_request(const uint8_t *frame, size_t len, amsi_proto_request *req)
{
    uint16_t version = 0;
    uint64_t request_id = 0;
    size_t left;
    int rc;

    if (req == NULL)
        return AMSI_PROTO_EFIELD;
    memset(req, 0, sizeof(*req));
    rc = check_prefix(frame, len, AMSI_PROTO_REQ_HEADER, &version, &request_id);
    req->version = version;
    req->request_id = request_id;
    if (rc != 0)
        return rc;

    uint16_t type = get_u16(frame + OFF_TYPE);
    uint32_t flags = get_u32(frame + OFF_FLAGS);
    uint32_t header_len = get_u32(frame + OFF_HEADER_LEN);
    uint32_t app_len = get_u32(frame + REQ_OFF_APP_LEN);
    uint32_t name_len = get_u32(frame + REQ_OFF_NAME_LEN);
    uint64_t content_len = get_u64(frame + REQ_OFF_CONTENT_LEN);

    if (!is_request_type(type))
        return AMSI_PROTO_ETYPE;
    if (header_len != AMSI_PROTO_REQ_HEADER)
        return AMSI_PROTO_EFIELD;
    rc = check_request_fields(type, flags, app_len, name_len, content_len);
    if (rc != 0)
        return rc;

    left = len - AMSI_PROTO_REQ_HEADER;
    if (app_len > left)
        return AMSI_PROTO_ESHORT;
    left -= app_len;
    if (name_len > left)
        return AMSI_PROTO_ESHORT;
    left -= name_len;
    if ((flags & AMSI_PROTO_F_MEMFD) != 0) {
        if (left != 0)
            return AMSI_PROTO_ELONG;
    } else {
        if (content_len > (uint64_t)left)
            return AMSI_PROTO_ESHORT;
        if (content_len < (uint64_t)left)
            return AMSI_PROTO_ELONG;
    }

    req->type = type;
    req->flags = flags;
    req->session_id = get_u64(frame + OFF_SESSION_ID);
    req->app = (const char *)(frame + AMSI_PROTO_REQ_HEADER);
    req->app_len = app_len;
    req->name = req->app + app_len;
    req->name_len = name_len;
    if ((flags & AMSI_PROTO_F_MEMFD) == 0)
        req->content = (const uint8_t *)req->name + name_len;
    req->content_len = content_len;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------------------------- */

/* How many bytes a UTF-8 sequence that starts with byte b claims (1 for a stray byte). */
static size_t utf8_seq_len(uint8_t b)
{
    if ((b & 0xE0u) == 0xC0u)
        return 2;
    if ((b & 0xF0u) == 0xE0u)
        return 3;
    if ((b & 0xF8u) == 0xF0u)
        return 4;
    return 1;
}

/*
 * How many bytes of s[0..n) to send when the bound is max: all of them when they fit. Else the
 * cut is at max, moved back to the last character's lead byte when that lead (found among the
 * three bytes before the cut) claims more bytes than fit, so a character straddling the bound is
 * dropped whole. Only the lead is judged: a stray lead byte near the bound is dropped the same
 * way, and bytes with no lead in reach (not UTF-8) are cut at max. Only s[0..max) is read.
 * Can't fail.
 */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
    const uint8_t *u = (const uint8_t *)s;

    if (n <= max)
        return n;
    for (size_t k = max; k > 0 && max - k < 3; k--) {
        uint8_t b = u[k - 1];

        if ((b & 0xC0u) == 0x80u)
            continue; /* a continuation byte: its lead is further back */
        return k - 1 + utf8_seq_len(b) > max ? k - 1 : max;
    }
    return max;
}

/*
 * Strings over their bounds are cut (see utf8_cut()); a NULL string is sent as empty whatever its
 * length says. The frame's flags are 0 and its version AMSI_PROTO_VERSION; the status is sent as
 * given, known or not. A NULL rep or len is AMSI_PROTO_EFIELD (a case the header leaves out,
 * since it is a caller bug, not a frame fault); a NULL buf can only hold nothing
 * (AMSI_PROTO_ESPACE). *len is written only on success.
 */
int amsi_proto_encode_reply(const amsi_proto_reply *rep, uint8_t *buf, size_t cap, size_t *len)
{
    size_t rule_len, object_len, reason_len, need;
    uint8_t *p;

    if (rep == NULL || len == NULL)
        return AMSI_PROTO_EFIELD;
    rule_len = rep->rule == NULL ? 0 : utf8_cut(rep->rule, rep->rule_len, AMSI_PROTO_MAX_RULE);
    object_len =
        rep->object == NULL ? 0 : utf8_cut(rep->object, rep->object_len, AMSI_PROTO_MAX_OBJECT);
    reason_len =
        rep->reason == NULL ? 0 : utf8_cut(rep->reason, rep->reason_len, AMSI_PROTO_MAX_REASON);
    need = AMSI_PROTO_REP_HEADER + rule_len + object_len + reason_len;
    if (buf == NULL || cap < need)
        return AMSI_PROTO_ESPACE;

    put_u32(buf + OFF_MAGIC, AMSI_PROTO_MAGIC);
    put_u16(buf + OFF_VERSION, AMSI_PROTO_VERSION);
    put_u16(buf + OFF_TYPE, AMSI_PROTO_REPLY);
    put_u32(buf + OFF_FLAGS, 0);
    put_u32(buf + OFF_HEADER_LEN, AMSI_PROTO_REP_HEADER);
    put_u64(buf + OFF_REQUEST_ID, rep->request_id);
    put_u64(buf + OFF_SESSION_ID, rep->session_id);
    put_u32(buf + REP_OFF_STATUS, rep->status);
    put_u32(buf + REP_OFF_AMSI_RESULT, rep->amsi_result);
    put_u32(buf + REP_OFF_RETRY_AFTER, rep->retry_after_ms);
    put_u32(buf + REP_OFF_RULE_LEN, (uint32_t)rule_len);
    put_u32(buf + REP_OFF_OBJECT_LEN, (uint32_t)object_len);
    put_u32(buf + REP_OFF_REASON_LEN, (uint32_t)reason_len);
    put_u64(buf + REP_OFF_SCAN_ID, rep->scan_id);
    p = buf + AMSI_PROTO_REP_HEADER;
    if (rule_len != 0)
        memcpy(p, rep->rule, rule_len);
    p += rule_len;
    if (object_len != 0)
        memcpy(p, rep->object, object_len);
    p += object_len;
    if (reason_len != 0)
        memcpy(p, rep->reason, reason_len);
    *len = need;
    return 0;
}

/*
 * The checks run in wire order like the request's: ESHORT, EMAGIC, EVERSION, ESHORT for a cut
 * header, ETYPE unless the type is REPLY, EFIELD for header_len, non-zero flags or a string over
 * its bound, then ESHORT or ELONG when the strings do not fill the rest of the frame exactly. The
 * bounded lengths are checked before they are added, so their sum is small. The status is not
 * checked. A NULL frame is ESHORT; a NULL rep is EFIELD. On failure *rep is zeroed except that,
 * once the magic matched, rep->request_id holds the frame's when it has its first 24 bytes.
 */
int amsi_proto_decode_reply(const uint8_t *frame, size_t len, amsi_proto_reply *rep)
{
    uint16_t version = 0;
    uint64_t request_id = 0;
    size_t strings;
    int rc;

    if (rep == NULL)
        return AMSI_PROTO_EFIELD;
    memset(rep, 0, sizeof(*rep));
    rc = check_prefix(frame, len, AMSI_PROTO_REP_HEADER, &version, &request_id);
    rep->request_id = request_id;
    if (rc != 0)
        return rc;

    uint16_t type = get_u16(frame + OFF_TYPE);
    uint32_t flags = get_u32(frame + OFF_FLAGS);
    uint32_t header_len = get_u32(frame + OFF_HEADER_LEN);
    uint32_t rule_len = get_u32(frame + REP_OFF_RULE_LEN);
    uint32_t object_len = get_u32(frame + REP_OFF_OBJECT_LEN);
    uint32_t reason_len = get_u32(frame + REP_OFF_REASON_LEN);

    if (type != AMSI_PROTO_REPLY)
        return AMSI_PROTO_ETYPE;
    if (header_len != AMSI_PROTO_REP_HEADER || flags != 0)
        return AMSI_PROTO_EFIELD;
    if (rule_len > AMSI_PROTO_MAX_RULE || object_len > AMSI_PROTO_MAX_OBJECT ||
        reason_len > AMSI_PROTO_MAX_REASON)
        return AMSI_PROTO_EFIELD;
    strings = (size_t)rule_len + object_len + reason_len;
    if (strings > len - AMSI_PROTO_REP_HEADER)
        return AMSI_PROTO_ESHORT;
    if (strings < len - AMSI_PROTO_REP_HEADER)
        return AMSI_PROTO_ELONG;

    rep->session_id = get_u64(frame + OFF_SESSION_ID);
    rep->scan_id = get_u64(frame + REP_OFF_SCAN_ID);
    rep->status = get_u32(frame + REP_OFF_STATUS);
    rep->amsi_result = get_u32(frame + REP_OFF_AMSI_RESULT);
    rep->retry_after_ms = get_u32(frame + REP_OFF_RETRY_AFTER);
    rep->rule = (const char *)(frame + AMSI_PROTO_REP_HEADER);
    rep->rule_len = rule_len;
    rep->object = rep->rule + rule_len;
    rep->object_len = object_len;
    rep->reason = rep->object + object_len;
    rep->reason_len = reason_len;
    return 0;
}
