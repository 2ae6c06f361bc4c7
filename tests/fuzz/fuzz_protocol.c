/*
 * fuzz_protocol.c - libFuzzer target for provider/src/protocol.c.
 *
 * Each input is decoded both as a request and as a reply. Whatever decodes is encoded again and
 * must come back as the very same bytes (the codec accepts exactly one encoding of a message),
 * and decoding that re-encoded frame must give identical fields. The input also drives the reply
 * encoder directly, with string lengths of up to twice their bounds, to exercise the UTF-8 cut:
 * the sent strings must be prefixes within their bounds that end on a character boundary. Any
 * mismatch traps, so libFuzzer reports it as a crash.
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Iprovider/include provider/src/protocol.c
 * tests/fuzz/fuzz_protocol.c. Seeds: tests/fuzz/corpus/protocol (written by
 * tests/provider/test_protocol.c).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "amsi_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Room for the largest request header with both strings. */
#define REQ_HEAD_MAX (AMSI_PROTO_REQ_HEADER + AMSI_PROTO_MAX_APP + AMSI_PROTO_MAX_NAME)

/* Traps unless cond holds. */
static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

/* Whether two decoded requests carry the same fields and string and content bytes. */
static int request_same(const amsi_proto_request *a, const amsi_proto_request *b)
{
    if (a->version != b->version || a->type != b->type || a->flags != b->flags ||
        a->request_id != b->request_id || a->session_id != b->session_id ||
        a->app_len != b->app_len || a->name_len != b->name_len ||
        a->content_len != b->content_len || (a->content == NULL) != (b->content == NULL))
        return 0;
    if (memcmp(a->app, b->app, a->app_len) != 0 || memcmp(a->name, b->name, a->name_len) != 0)
        return 0;
    return a->content == NULL || memcmp(a->content, b->content, (size_t)a->content_len) == 0;
}

/* Whether two decoded replies carry the same fields and string bytes. */
static int reply_same(const amsi_proto_reply *a, const amsi_proto_reply *b)
{
    if (a->request_id != b->request_id || a->session_id != b->session_id ||
        a->scan_id != b->scan_id || a->status != b->status || a->amsi_result != b->amsi_result ||
        a->retry_after_ms != b->retry_after_ms || a->rule_len != b->rule_len ||
        a->object_len != b->object_len || a->reason_len != b->reason_len)
        return 0;
    return memcmp(a->rule, b->rule, a->rule_len) == 0 &&
           memcmp(a->object, b->object, a->object_len) == 0 &&
           memcmp(a->reason, b->reason, a->reason_len) == 0;
}

/* Decodes data as a request; on success re-encodes it and checks bytes and fields. */
static void fuzz_request(const uint8_t *data, size_t size)
{
    static uint8_t again[REQ_HEAD_MAX];
    static uint8_t whole[1u << 20];
    amsi_proto_request req, req2;
    size_t len = 0;
    int rc = amsi_proto_decode_request(data, size, &req);

    check(rc <= 0 && rc >= AMSI_PROTO_ELONG && rc != AMSI_PROTO_ESPACE);
    if (rc != 0) {
        /* A failure passes up at most the version and the request id, and only after the magic
         * matched. */
        check(req.type == 0 && req.flags == 0 && req.session_id == 0 && req.app == NULL &&
              req.name == NULL && req.content == NULL && req.app_len == 0 && req.name_len == 0 &&
              req.content_len == 0);
        if (rc == AMSI_PROTO_EMAGIC || size < 24)
            check(req.request_id == 0);
        return;
    }
    check(amsi_proto_encode_request(&req, again, sizeof(again), &len) == 0);
    check(len <= size && memcmp(again, data, len) == 0);
    if (req.content == NULL) {
        check(len == size);
    } else {
        check(req.content == data + len && req.content_len == size - len);
    }
    /* The encoder's bytes plus the content, decoded again, give the same fields. */
    if (size <= sizeof(whole)) {
        memcpy(whole, again, len);
        if (req.content != NULL && req.content_len > 0)
            memcpy(whole + len, req.content, (size_t)req.content_len);
        check(amsi_proto_decode_request(whole, size, &req2) == 0);
        check(request_same(&req, &req2));
    }
}

/* Decodes data as a reply; on success re-encodes it and checks bytes and fields. */
static void fuzz_reply(const uint8_t *data, size_t size)
{
    uint8_t again[AMSI_PROTO_MAX_REPLY];
    amsi_proto_reply rep, rep2;
    size_t len = 0;
    int rc = amsi_proto_decode_reply(data, size, &rep);

    check(rc <= 0 && rc >= AMSI_PROTO_ELONG && rc != AMSI_PROTO_ESPACE);
    if (rc != 0)
        return;
    check(size <= AMSI_PROTO_MAX_REPLY);
    check(amsi_proto_encode_reply(&rep, again, sizeof(again), &len) == 0);
    check(len == size && memcmp(again, data, size) == 0);
    check(amsi_proto_decode_reply(again, len, &rep2) == 0);
    check(reply_same(&rep, &rep2));
}

/* How many bytes a UTF-8 sequence led by b claims: 1 for ASCII and for stray bytes. */
static size_t claimed_len(uint8_t b)
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
 * Whether cut falls strictly inside a multi-byte sequence of s[0..n): a lead byte followed by
 * all the continuation bytes it claims.
 */
static int splits_sequence(const uint8_t *s, size_t n, size_t cut)
{
    for (size_t p = cut >= 3 ? cut - 3 : 0; p < cut; p++) {
        size_t l = claimed_len(s[p]), i = 1;

        if (l == 1 || p + l <= cut || p + l > n)
            continue;
        while (i < l && (s[p + i] & 0xC0u) == 0x80u)
            i++;
        if (i == l)
            return 1;
    }
    return 0;
}

/*
 * Checks one cut string: a prefix of what was given, the whole of it when it fits; else within
 * max, never inside a sequence, and shorter than max only to drop a lead byte (and its
 * continuations) whose sequence would reach past max.
 */
static void check_cut(const char *given, size_t given_len, const char *sent, size_t sent_len,
                      size_t max)
{
    const uint8_t *g = (const uint8_t *)given;

    check(sent_len <= max && sent_len <= given_len);
    check(memcmp(given, sent, sent_len) == 0);
    if (given_len <= max) {
        check(sent_len == given_len);
        return;
    }
    check(!splits_sequence(g, given_len, sent_len));
    if (sent_len < max) {
        check(sent_len + 3 >= max);
        check(claimed_len(g[sent_len]) > 1 && sent_len + claimed_len(g[sent_len]) > max);
        for (size_t i = sent_len + 1; i < max; i++)
            check((g[i] & 0xC0u) == 0x80u);
    }
}

/* Uses data as the three strings of a reply, with lengths up to twice their bounds. */
static void fuzz_reply_cut(const uint8_t *data, size_t size)
{
    uint8_t buf[AMSI_PROTO_MAX_REPLY];
    amsi_proto_reply rep = {0}, got;
    size_t len = 0, rule_len, object_len;

    if (size < 4)
        return;
    /* Two bytes choose how the rest is split between the rule and the object. */
    rule_len = (size_t)(data[0] | data[1] << 8) % (2 * AMSI_PROTO_MAX_RULE + 1);
    object_len = (size_t)(data[2] | data[3] << 8) % (2 * AMSI_PROTO_MAX_OBJECT + 1);
    data += 4;
    size -= 4;
    if (rule_len > size)
        rule_len = size;
    if (object_len > size - rule_len)
        object_len = size - rule_len;
    rep.rule = (const char *)data;
    rep.rule_len = (uint32_t)rule_len;
    rep.object = (const char *)data + rule_len;
    rep.object_len = (uint32_t)object_len;
    rep.reason = (const char *)data + rule_len + object_len;
    rep.reason_len = (uint32_t)(size - rule_len - object_len);
    if (rep.reason_len > 2 * AMSI_PROTO_MAX_REASON)
        rep.reason_len = 2 * AMSI_PROTO_MAX_REASON;
    check(amsi_proto_encode_reply(&rep, buf, sizeof(buf), &len) == 0);
    check(amsi_proto_decode_reply(buf, len, &got) == 0);
    check_cut(rep.rule, rep.rule_len, got.rule, got.rule_len, AMSI_PROTO_MAX_RULE);
    check_cut(rep.object, rep.object_len, got.object, got.object_len, AMSI_PROTO_MAX_OBJECT);
    check_cut(rep.reason, rep.reason_len, got.reason, got.reason_len, AMSI_PROTO_MAX_REASON);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_request(data, size);
    fuzz_reply(data, size);
    fuzz_reply_cut(data, size);
    return 0;
}
