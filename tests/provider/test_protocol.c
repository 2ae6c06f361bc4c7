/*
 * test_protocol.c - unit tests for provider/src/protocol.c: the request and reply codec and the
 * status table.
 *
 * Every frame handed to a decoder is a heap block of exactly the frame's length, so a run under
 * AddressSanitizer catches any read past it. Random round trips use a seeded generator, so every
 * run sees the same frames. Besides round trips, the tests craft a frame for each error code,
 * cut valid frames at every offset, flip every bit of the headers and predict the outcome, check
 * the byte layout against hand-written frames (so a symmetric encoder/decoder bug cannot hide),
 * and check the UTF-8-safe cutting of over-long reply strings.
 *
 * The seed frames of the fuzz corpus (tests/fuzz/corpus/protocol) come from here: with
 * AMSI_FUZZ_CORPUS set to a directory the corpus test writes them there, and when the build
 * defines AMSI_SOURCE_DIR it checks that the committed files still match them byte for byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "amsi_protocol.h"

/* Room for the largest request header with both strings. */
#define REQ_HEAD_MAX (AMSI_PROTO_REQ_HEADER + AMSI_PROTO_MAX_APP + AMSI_PROTO_MAX_NAME)

/* How many random frames the round-trip and mutation tests push through. */
#define ROUND_TRIPS 5000
#define MUTATIONS   20000

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* A seeded splitmix64 generator; each test owns one. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15u);

    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* A number in [0, n); 0 when n is 0. */
static size_t rng_below(rng *r, size_t n)
{
    return n == 0 ? 0 : (size_t)(rng_next(r) % n);
}

/* A length in [0, max], with 0 and max themselves drawn far more often than chance. */
static uint32_t rng_len(rng *r, uint32_t max)
{
    switch (rng_below(r, 8)) {
    case 0:
        return 0;
    case 1:
        return max;
    default:
        return (uint32_t)rng_below(r, (size_t)max + 1);
    }
}

/* A 64-bit value, often one of the edges (0, 1, 2^32, 2^64-1). */
static uint64_t rng_u64(rng *r)
{
    static const uint64_t edges[] = {0, 1, UINT32_MAX, (uint64_t)UINT32_MAX + 1, UINT64_MAX};

    if (rng_below(r, 4) == 0)
        return edges[rng_below(r, sizeof(edges) / sizeof(edges[0]))];
    return rng_next(r);
}

/* Fills p[0..n) with random bytes. */
static void rng_fill(rng *r, void *p, size_t n)
{
    uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rng_next(r);
}

/* A heap copy of p[0..n) of exactly n bytes, so reads past it are caught by ASan. */
static uint8_t *dup_exact(const void *p, size_t n)
{
    uint8_t *q = malloc(n == 0 ? 1 : n);

    assert_non_null(q);
    if (n > 0)
        memcpy(q, p, n);
    return q;
}

/* Little-endian writers for crafting frames by hand, independent of the codec. */
static void le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/*
 * Encodes req and appends its inline content (req->content, unless AMSI_PROTO_F_MEMFD), giving a
 * heap frame of exactly its length in *n. Fails the test if encoding fails.
 */
static uint8_t *build_request(const amsi_proto_request *req, size_t *n)
{
    static uint8_t head[REQ_HEAD_MAX];
    size_t hlen = 0;
    size_t clen = 0;
    uint8_t *frame;

    assert_int_equal(amsi_proto_encode_request(req, head, sizeof(head), &hlen), 0);
    assert_int_equal(hlen, AMSI_PROTO_REQ_HEADER + req->app_len + req->name_len);
    if ((req->flags & AMSI_PROTO_F_MEMFD) == 0)
        clen = (size_t)req->content_len;
    frame = malloc(hlen + clen);
    assert_non_null(frame);
    memcpy(frame, head, hlen);
    if (clen > 0)
        memcpy(frame + hlen, req->content, clen);
    *n = hlen + clen;
    return frame;
}

/* Encodes rep into a heap frame of exactly its length (*n). Fails the test if encoding fails. */
static uint8_t *build_reply(const amsi_proto_reply *rep, size_t *n)
{
    uint8_t buf[AMSI_PROTO_MAX_REPLY];
    size_t len = 0;

    assert_int_equal(amsi_proto_encode_reply(rep, buf, sizeof(buf), &len), 0);
    *n = len;
    return dup_exact(buf, len);
}

/*
 * The exact-size copy of the frame last handed to a decoder by the helpers below. Decoded
 * pointers point into it, so it lives until the next helper call or the end of the test
 * (release_held(), every test's teardown).
 */
static uint8_t *held;

static int release_held(void **state)
{
    (void)state;
    free(held);
    held = NULL;
    return 0;
}

/* Decodes a heap copy of exactly n bytes of frame as a request; the copy stays in held. */
static int decode_request_exact(const uint8_t *frame, size_t n, amsi_proto_request *out)
{
    release_held(NULL);
    held = dup_exact(frame, n);
    return amsi_proto_decode_request(held, n, out);
}

/* Decodes a heap copy of exactly n bytes of frame as a reply; the copy stays in held. */
static int decode_reply_exact(const uint8_t *frame, size_t n, amsi_proto_reply *out)
{
    release_held(NULL);
    held = dup_exact(frame, n);
    return amsi_proto_decode_reply(held, n, out);
}

/* Checks that a decoded request carries the same fields and bytes as the one encoded. */
static void assert_request_equal(const amsi_proto_request *want, const amsi_proto_request *got)
{
    assert_int_equal(got->version, AMSI_PROTO_VERSION);
    assert_int_equal(got->type, want->type);
    assert_int_equal(got->flags, want->flags);
    assert_true(got->request_id == want->request_id);
    assert_true(got->session_id == want->session_id);
    assert_int_equal(got->app_len, want->app_len);
    assert_int_equal(got->name_len, want->name_len);
    assert_true(got->content_len == want->content_len);
    assert_non_null(got->app);
    assert_non_null(got->name);
    assert_memory_equal(got->app, want->app == NULL ? "" : want->app, got->app_len);
    assert_memory_equal(got->name, want->name == NULL ? "" : want->name, got->name_len);
    if ((want->flags & AMSI_PROTO_F_MEMFD) != 0) {
        assert_null(got->content);
    } else {
        assert_non_null(got->content);
        if (got->content_len > 0)
            assert_memory_equal(got->content, want->content, (size_t)got->content_len);
    }
}

/* Checks that a decoded reply carries the same fields and bytes as the one encoded. */
static void assert_reply_equal(const amsi_proto_reply *want, const amsi_proto_reply *got)
{
    assert_true(got->request_id == want->request_id);
    assert_true(got->session_id == want->session_id);
    assert_true(got->scan_id == want->scan_id);
    assert_int_equal(got->status, want->status);
    assert_int_equal(got->amsi_result, want->amsi_result);
    assert_int_equal(got->retry_after_ms, want->retry_after_ms);
    assert_int_equal(got->rule_len, want->rule_len);
    assert_int_equal(got->object_len, want->object_len);
    assert_int_equal(got->reason_len, want->reason_len);
    assert_memory_equal(got->rule, want->rule == NULL ? "" : want->rule, got->rule_len);
    assert_memory_equal(got->object, want->object == NULL ? "" : want->object, got->object_len);
    assert_memory_equal(got->reason, want->reason == NULL ? "" : want->reason, got->reason_len);
}

/* A SCAN request with short strings and 16 inline content bytes, shared by several tests. */
static const char sample_app[] = "pwsh!";
static const char sample_name[] = "a.ps1:1";
static const uint8_t sample_content[16] = "Write-Host 'hi'";

static amsi_proto_request sample_request(void)
{
    amsi_proto_request req = {
        .type = AMSI_PROTO_SCAN,
        .flags = 0,
        .request_id = 0x0102030405060708u,
        .session_id = 0x1112131415161718u,
        .app = sample_app,
        .app_len = 5,
        .name = sample_name,
        .name_len = 7,
        .content = sample_content,
        .content_len = sizeof(sample_content),
    };
    return req;
}

/* A reply with three short strings, shared by several tests. */
static amsi_proto_reply sample_reply(void)
{
    amsi_proto_reply rep = {
        .request_id = 0x0102030405060708u,
        .session_id = 0x1112131415161718u,
        .scan_id = 0x2122232425262728u,
        .status = AMSI_PROTO_STATUS_OK,
        .amsi_result = 32768,
        .retry_after_ms = 0,
        .rule = "r_1",
        .rule_len = 3,
        .object = "a.zip",
        .object_len = 5,
        .reason = "none",
        .reason_len = 4,
    };
    return rep;
}

/* Whether a request type carries content. */
static int has_content(uint32_t type)
{
    return type == AMSI_PROTO_SCAN || type == AMSI_PROTO_NOTIFY;
}

/* ---------------------------------------------------------------------------------------------
 * Layout against hand-written bytes
 * ------------------------------------------------------------------------------------------- */

/* The encoder writes every field little-endian at its documented offset. */
static void test_request_layout(void **state)
{
    amsi_proto_request req = sample_request();
    uint8_t want[AMSI_PROTO_REQ_HEADER + 12];
    uint8_t buf[128];
    size_t len = 0;

    (void)state;
    req.flags = AMSI_PROTO_F_UTF16;
    memset(want, 0, sizeof(want));
    memcpy(want, "AMSB", 4);
    le16(want + 4, 1);
    le16(want + 6, AMSI_PROTO_SCAN);
    le32(want + 8, AMSI_PROTO_F_UTF16);
    le32(want + 12, 48);
    le64(want + 16, 0x0102030405060708u);
    le64(want + 24, 0x1112131415161718u);
    le32(want + 32, 5);
    le32(want + 36, 7);
    le64(want + 40, 16);
    memcpy(want + 48, "pwsh!a.ps1:1", 12);
    /* Spot-check the little-endian writer itself: request_id's low byte comes first. */
    assert_int_equal(want[16], 0x08);
    assert_int_equal(want[23], 0x01);

    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

/* The decoder reads every field little-endian at its documented offset. */
static void test_request_layout_decode(void **state)
{
    uint8_t frame[AMSI_PROTO_REQ_HEADER + 2 + 3 + 4];
    amsi_proto_request req;

    (void)state;
    memset(frame, 0, sizeof(frame));
    memcpy(frame, "AMSB", 4);
    le16(frame + 4, 1);
    le16(frame + 6, AMSI_PROTO_NOTIFY);
    le32(frame + 8, AMSI_PROTO_F_UTF16);
    le32(frame + 12, 48);
    le64(frame + 16, 0xA1A2A3A4A5A6A7A8u);
    le64(frame + 24, 0xB1B2B3B4B5B6B7B8u);
    le32(frame + 32, 2);
    le32(frame + 36, 3);
    le64(frame + 40, 4);
    memcpy(frame + 48, "abxyz1234", 9);

    assert_int_equal(decode_request_exact(frame, sizeof(frame), &req), 0);
    assert_int_equal(req.version, 1);
    assert_int_equal(req.type, AMSI_PROTO_NOTIFY);
    assert_int_equal(req.flags, AMSI_PROTO_F_UTF16);
    assert_true(req.request_id == 0xA1A2A3A4A5A6A7A8u);
    assert_true(req.session_id == 0xB1B2B3B4B5B6B7B8u);
    assert_int_equal(req.app_len, 2);
    assert_int_equal(req.name_len, 3);
    assert_true(req.content_len == 4);
}

/* The reply's fields sit at their documented offsets, both ways. */
static void test_reply_layout(void **state)
{
    amsi_proto_reply rep = sample_reply();
    amsi_proto_reply got;
    uint8_t want[AMSI_PROTO_REP_HEADER + 12];
    uint8_t buf[AMSI_PROTO_MAX_REPLY];
    size_t len = 0;

    (void)state;
    rep.status = AMSI_PROTO_STATUS_THROTTLED;
    rep.retry_after_ms = 0xC1C2C3C4u;
    rep.amsi_result = 0xD1D2D3D4u;
    memset(want, 0, sizeof(want));
    memcpy(want, "AMSB", 4);
    le16(want + 4, 1);
    le16(want + 6, 0x81);
    le32(want + 8, 0);
    le32(want + 12, 64);
    le64(want + 16, rep.request_id);
    le64(want + 24, rep.session_id);
    le32(want + 32, AMSI_PROTO_STATUS_THROTTLED);
    le32(want + 36, 0xD1D2D3D4u);
    le32(want + 40, 0xC1C2C3C4u);
    le32(want + 44, 3);
    le32(want + 48, 5);
    le32(want + 52, 4);
    le64(want + 56, rep.scan_id);
    memcpy(want + 64, "r_1a.zipnone", 12);

    assert_int_equal(amsi_proto_encode_reply(&rep, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    assert_int_equal(decode_reply_exact(want, sizeof(want), &got), 0);
    assert_reply_equal(&rep, &got);
}

/* ---------------------------------------------------------------------------------------------
 * Random round trips
 * ------------------------------------------------------------------------------------------- */

/*
 * Random requests of every type survive encode and decode field for field, the decoded pointers
 * lie inside the frame in wire order, and re-encoding the decoded request gives the same bytes.
 */
static void test_request_round_trip(void **state)
{
    static char app[AMSI_PROTO_MAX_APP];
    static char name[AMSI_PROTO_MAX_NAME];
    static uint8_t content[70000];
    static uint8_t again[REQ_HEAD_MAX];
    rng r = {0x5EED0001u};
    unsigned seen[AMSI_PROTO_PING + 1] = {0};

    (void)state;
    for (int i = 0; i < ROUND_TRIPS; i++) {
        amsi_proto_request req = {0};
        amsi_proto_request got;
        size_t n, again_len = 0;
        uint8_t *frame;

        req.type = (uint16_t)(AMSI_PROTO_SCAN + rng_below(&r, 5));
        req.version = (uint16_t)rng_next(&r); /* ignored by the encoder */
        req.flags = (uint32_t)rng_below(&r, 4);
        if (!has_content(req.type))
            req.flags &= ~AMSI_PROTO_F_MEMFD;
        req.request_id = rng_u64(&r);
        req.session_id = rng_u64(&r);
        req.app_len = rng_len(&r, AMSI_PROTO_MAX_APP);
        req.name_len = rng_len(&r, AMSI_PROTO_MAX_NAME);
        rng_fill(&r, app, req.app_len);
        rng_fill(&r, name, req.name_len);
        req.app = app;
        req.name = name;
        if (!has_content(req.type)) {
            req.content_len = 0;
        } else if ((req.flags & AMSI_PROTO_F_MEMFD) != 0) {
            req.content_len = rng_u64(&r);
            req.content = NULL;
        } else {
            req.content_len =
                rng_below(&r, 16) == 0 ? rng_below(&r, sizeof(content) + 1) : rng_len(&r, 2048);
            rng_fill(&r, content, (size_t)req.content_len);
            req.content = content;
        }
        seen[req.type]++;

        frame = build_request(&req, &n);
        assert_int_equal(amsi_proto_decode_request(frame, n, &got), 0);
        assert_request_equal(&req, &got);
        assert_ptr_equal(got.app, (const char *)frame + AMSI_PROTO_REQ_HEADER);
        assert_ptr_equal(got.name, got.app + got.app_len);
        if (got.content != NULL)
            assert_ptr_equal(got.content, (const uint8_t *)got.name + got.name_len);

        assert_int_equal(amsi_proto_encode_request(&got, again, sizeof(again), &again_len), 0);
        assert_int_equal(again_len, AMSI_PROTO_REQ_HEADER + got.app_len + got.name_len);
        assert_memory_equal(again, frame, again_len);
        free(frame);
    }
    for (unsigned t = AMSI_PROTO_SCAN; t <= AMSI_PROTO_PING; t++)
        assert_true(seen[t] > ROUND_TRIPS / 10);
}

/* Random replies survive encode and decode, and re-encode to the same bytes. */
static void test_reply_round_trip(void **state)
{
    static char rule[AMSI_PROTO_MAX_RULE];
    static char object[AMSI_PROTO_MAX_OBJECT];
    static char reason[AMSI_PROTO_MAX_REASON];
    rng r = {0x5EED0002u};

    (void)state;
    for (int i = 0; i < ROUND_TRIPS; i++) {
        amsi_proto_reply rep = {0};
        amsi_proto_reply got;
        uint8_t again[AMSI_PROTO_MAX_REPLY];
        size_t n, again_len = 0;
        uint8_t *frame;

        rep.request_id = rng_u64(&r);
        rep.session_id = rng_u64(&r);
        rep.scan_id = rng_u64(&r);
        rep.status = rng_below(&r, 2) ? (uint32_t)rng_below(&r, 12) : (uint32_t)rng_next(&r);
        rep.amsi_result = (uint32_t)rng_next(&r);
        rep.retry_after_ms = (uint32_t)rng_next(&r);
        /* ASCII only, so no string is shortened by the UTF-8 cut (tested on its own below). */
        rep.rule_len = rng_len(&r, AMSI_PROTO_MAX_RULE);
        rep.object_len = rng_len(&r, AMSI_PROTO_MAX_OBJECT);
        rep.reason_len = rng_len(&r, AMSI_PROTO_MAX_REASON);
        rng_fill(&r, rule, rep.rule_len);
        rng_fill(&r, object, rep.object_len);
        rng_fill(&r, reason, rep.reason_len);
        for (size_t k = 0; k < rep.rule_len; k++)
            rule[k] = (char)(rule[k] & 0x7F);
        for (size_t k = 0; k < rep.object_len; k++)
            object[k] = (char)(object[k] & 0x7F);
        for (size_t k = 0; k < rep.reason_len; k++)
            reason[k] = (char)(reason[k] & 0x7F);
        rep.rule = rule;
        rep.object = object;
        rep.reason = reason;

        frame = build_reply(&rep, &n);
        assert_int_equal(n, AMSI_PROTO_REP_HEADER + rep.rule_len + rep.object_len + rep.reason_len);
        assert_int_equal(amsi_proto_decode_reply(frame, n, &got), 0);
        assert_reply_equal(&rep, &got);
        assert_ptr_equal(got.rule, (const char *)frame + AMSI_PROTO_REP_HEADER);
        assert_ptr_equal(got.object, got.rule + got.rule_len);
        assert_ptr_equal(got.reason, got.object + got.object_len);

        assert_int_equal(amsi_proto_encode_reply(&got, again, sizeof(again), &again_len), 0);
        assert_int_equal(again_len, n);
        assert_memory_equal(again, frame, n);
        free(frame);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Each error code from a crafted frame
 * ------------------------------------------------------------------------------------------- */

/* Frames cut before the magic or version, or before the whole header, are ESHORT. */
static void test_request_eshort_header(void **state)
{
    amsi_proto_request req = sample_request();
    amsi_proto_request got;
    size_t n;
    uint8_t *frame = build_request(&req, &n);

    (void)state;
    assert_int_equal(amsi_proto_decode_request(NULL, 0, &got), AMSI_PROTO_ESHORT);
    assert_int_equal(amsi_proto_decode_request(NULL, 100, &got), AMSI_PROTO_ESHORT);
    assert_int_equal(decode_request_exact(frame, 0, &got), AMSI_PROTO_ESHORT);
    assert_int_equal(decode_request_exact(frame, 3, &got), AMSI_PROTO_ESHORT);
    assert_int_equal(decode_request_exact(frame, 5, &got), AMSI_PROTO_ESHORT);
    assert_int_equal(decode_request_exact(frame, AMSI_PROTO_REQ_HEADER - 1, &got),
                     AMSI_PROTO_ESHORT);
    /* A cut header still names its request (see test_failure_names_request) ... */
    assert_true(got.request_id == req.request_id);
    assert_int_equal(got.version, AMSI_PROTO_VERSION);
    assert_null(got.app);
    assert_int_equal(got.type, 0);
    /* ... unless the request id itself is cut, or even the version. */
    assert_int_equal(decode_request_exact(frame, 23, &got), AMSI_PROTO_ESHORT);
    assert_true(got.request_id == 0);
    assert_int_equal(got.version, AMSI_PROTO_VERSION);
    assert_int_equal(decode_request_exact(frame, 5, &got), AMSI_PROTO_ESHORT);
    assert_int_equal(got.version, 0);
    free(frame);
}

/* Strings or inline content that run past the frame are ESHORT, however large they claim. */
static void test_request_eshort_lengths(void **state)
{
    amsi_proto_request req = sample_request();
    amsi_proto_request got;
    size_t n;
    uint8_t *frame = build_request(&req, &n);

    (void)state;
    /* app_len covers the rest of the frame and then some (still within its bound). */
    le32(frame + 32, (uint32_t)(n - AMSI_PROTO_REQ_HEADER + 1));
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_ESHORT);
    le32(frame + 32, 5);
    /* name_len past the end. */
    le32(frame + 36, AMSI_PROTO_MAX_NAME);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_ESHORT);
    le32(frame + 36, 7);
    /* content_len one more than the bytes present, and the largest possible. */
    le64(frame + 40, 17);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_ESHORT);
    le64(frame + 40, UINT64_MAX);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_ESHORT);
    le64(frame + 40, (uint64_t)SIZE_MAX - AMSI_PROTO_REQ_HEADER);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_ESHORT);
    le64(frame + 40, 16);
    assert_int_equal(decode_request_exact(frame, n, &got), 0);
    free(frame);
}

/* A wrong magic is EMAGIC as soon as the four bytes are there. */
static void test_request_emagic(void **state)
{
    amsi_proto_request req = sample_request();
    amsi_proto_request got;
    amsi_proto_reply rgot;
    size_t n;
    uint8_t *frame = build_request(&req, &n);

    (void)state;
    frame[3] = 'C';
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EMAGIC);
    assert_int_equal(decode_request_exact(frame, 4, &got), AMSI_PROTO_EMAGIC);
    assert_int_equal(decode_request_exact(frame, 3, &got), AMSI_PROTO_ESHORT);
    assert_int_equal(decode_reply_exact(frame, n, &rgot), AMSI_PROTO_EMAGIC);
    /* The magic in big-endian byte order is not ours either. */
    memcpy(frame, "BSMA", 4);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EMAGIC);
    free(frame);
}

/*
 * Another version is EVERSION whatever follows, even in a frame shorter than our header; the
 * request id is passed up when the first 24 bytes are there, and the version always.
 */
static void test_request_eversion(void **state)
{
    static const uint16_t versions[] = {0, 2, 0x100, 0xFFFF};
    amsi_proto_request req = sample_request();
    amsi_proto_request got;
    amsi_proto_reply rgot;
    size_t n;
    uint8_t *frame = build_request(&req, &n);

    (void)state;
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        le16(frame + 4, versions[i]);
        assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EVERSION);
        assert_int_equal(got.version, versions[i]);
        assert_true(got.request_id == req.request_id);
        assert_null(got.app);
        assert_int_equal(decode_request_exact(frame, 24, &got), AMSI_PROTO_EVERSION);
        assert_true(got.request_id == req.request_id);
        assert_int_equal(decode_request_exact(frame, 23, &got), AMSI_PROTO_EVERSION);
        assert_true(got.request_id == 0);
        assert_int_equal(got.version, versions[i]);
        assert_int_equal(decode_request_exact(frame, 6, &got), AMSI_PROTO_EVERSION);
        assert_int_equal(decode_request_exact(frame, 5, &got), AMSI_PROTO_ESHORT);
        assert_int_equal(decode_reply_exact(frame, n, &rgot), AMSI_PROTO_EVERSION);
        assert_true(rgot.request_id == req.request_id);
    }
    /* A version 2 frame with a longer header is still refused by version, not by its length. */
    le16(frame + 4, 2);
    le32(frame + 12, 64);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EVERSION);
    free(frame);
}

/* Types that are not requests are ETYPE, including REPLY. */
static void test_request_etype(void **state)
{
    static const uint16_t types[] = {0, 6, 7, 0x80, AMSI_PROTO_REPLY, 0x0101, 0xFFFF};
    amsi_proto_request req = sample_request();
    amsi_proto_request got;
    size_t n;
    uint8_t *frame = build_request(&req, &n);

    (void)state;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        le16(frame + 6, types[i]);
        assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_ETYPE);
    }
    free(frame);
}

/*
 * Field faults are EFIELD: header_len other than ours, unknown flags, strings over their bounds,
 * content or MEMFD on the types that carry none.
 */
static void test_request_efield(void **state)
{
    static const uint32_t header_lens[] = {0, 47, 49, 64, 0xFFFFFFFF};
    amsi_proto_request req = sample_request();
    amsi_proto_request got;
    size_t n;
    uint8_t *frame = build_request(&req, &n);

    (void)state;
    for (size_t i = 0; i < sizeof(header_lens) / sizeof(header_lens[0]); i++) {
        le32(frame + 12, header_lens[i]);
        assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    }
    le32(frame + 12, 48);
    for (int bit = 2; bit < 32; bit++) {
        le32(frame + 8, 1u << bit);
        assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    }
    le32(frame + 8, 0);
    le32(frame + 32, AMSI_PROTO_MAX_APP + 1);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    le32(frame + 32, 0xFFFFFFFF);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    le32(frame + 32, 5);
    le32(frame + 36, AMSI_PROTO_MAX_NAME + 1);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    le32(frame + 36, 0xFFFFFFFF);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    le32(frame + 36, 7);
    assert_int_equal(decode_request_exact(frame, n, &got), 0);
    free(frame);

    /* No content on SESSION_OPEN, SESSION_CLOSE, PING: neither bytes nor a memfd. */
    for (uint16_t t = AMSI_PROTO_SESSION_OPEN; t <= AMSI_PROTO_PING; t++) {
        /* Inline content bytes. */
        req = sample_request();
        frame = build_request(&req, &n);
        le16(frame + 6, t);
        assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EFIELD);
        free(frame);

        /* A memfd, even of size 0. */
        req.flags = AMSI_PROTO_F_MEMFD;
        req.content_len = 0;
        frame = build_request(&req, &n);
        le16(frame + 6, t);
        assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EFIELD);

        /* No flag, no bytes, but a content_len. */
        le32(frame + 8, 0);
        le64(frame + 40, UINT64_MAX);
        assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EFIELD);
        le64(frame + 40, 1);
        assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EFIELD);

        /* The same frame with content_len 0 is fine, and so is the UTF-16 flag. */
        le64(frame + 40, 0);
        assert_int_equal(decode_request_exact(frame, n, &got), 0);
        assert_int_equal(got.type, t);
        assert_non_null(got.content);
        assert_true(got.content_len == 0);
        le32(frame + 8, AMSI_PROTO_F_UTF16);
        assert_int_equal(decode_request_exact(frame, n, &got), 0);
        free(frame);
    }
}

/* Bytes beyond what the lengths account for are ELONG, including any bytes with MEMFD. */
static void test_request_elong(void **state)
{
    amsi_proto_request req = sample_request();
    amsi_proto_request got;
    size_t n;
    uint8_t *frame = build_request(&req, &n);

    (void)state;
    le64(frame + 40, 15);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_ELONG);
    le64(frame + 40, 0);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_ELONG);
    /* MEMFD: the content bytes in the frame are not allowed, whatever content_len says. */
    le32(frame + 8, AMSI_PROTO_F_MEMFD);
    le64(frame + 40, 16);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_ELONG);
    le64(frame + 40, UINT64_MAX);
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_ELONG);
    /* Without the content bytes, the MEMFD frame is valid. */
    assert_int_equal(decode_request_exact(frame, n - 16, &got), 0);
    assert_null(got.content);
    assert_true(got.content_len == UINT64_MAX);
    free(frame);
}

/* A NULL output is EFIELD; the decoders touch nothing then. */
static void test_decode_null_args(void **state)
{
    amsi_proto_request req = sample_request();
    amsi_proto_reply rep = sample_reply();
    size_t n, rn;
    uint8_t *frame = build_request(&req, &n);
    uint8_t *rframe = build_reply(&rep, &rn);

    (void)state;
    assert_int_equal(amsi_proto_decode_request(frame, n, NULL), AMSI_PROTO_EFIELD);
    assert_int_equal(amsi_proto_decode_reply(rframe, rn, NULL), AMSI_PROTO_EFIELD);
    free(frame);
    free(rframe);
}

/* Whether a failed request decode left every field but version and request_id at zero. */
static int request_rest_zero(const amsi_proto_request *got)
{
    return got->type == 0 && got->flags == 0 && got->session_id == 0 && got->app == NULL &&
           got->app_len == 0 && got->name == NULL && got->name_len == 0 && got->content == NULL &&
           got->content_len == 0;
}

/*
 * Once the magic matched, every failure still passes up the request id (and version), so the
 * broker can say BAD_REQUEST or TOO_LARGE to the right request; nothing else is filled.
 */
static void test_failure_names_request(void **state)
{
    amsi_proto_request req = sample_request();
    amsi_proto_request got;
    amsi_proto_reply rep = sample_reply();
    amsi_proto_reply rgot;
    size_t n, rn;
    uint8_t *frame = build_request(&req, &n);
    uint8_t *rframe = build_reply(&rep, &rn);
    /* Each case: offset and value of a 32-bit field to overwrite, and the expected error. */
    static const struct {
        size_t off;
        uint32_t value;
        int want;
    } cases[] = {
        {6, AMSI_PROTO_REPLY, AMSI_PROTO_ETYPE}, /* type (low half of the u32 at 6: flags 0) */
        {8, 0x10, AMSI_PROTO_EFIELD},            /* unknown flag */
        {12, 49, AMSI_PROTO_EFIELD},             /* header_len */
        {32, AMSI_PROTO_MAX_APP + 1, AMSI_PROTO_EFIELD},
        {36, 100, AMSI_PROTO_ESHORT}, /* name runs past the frame */
        {40, 15, AMSI_PROTO_ELONG},   /* a content byte left over */
        {4, 0x0002, AMSI_PROTO_EVERSION},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t *bad = dup_exact(frame, n);

        if (cases[i].off == 6) {
            le16(bad + 6, (uint16_t)cases[i].value);
        } else if (cases[i].off == 4) {
            le16(bad + 4, (uint16_t)cases[i].value);
        } else {
            le32(bad + cases[i].off, cases[i].value);
        }
        assert_int_equal(amsi_proto_decode_request(bad, n, &got), cases[i].want);
        assert_true(got.request_id == req.request_id);
        assert_int_equal(got.version, cases[i].off == 4 ? 2 : AMSI_PROTO_VERSION);
        assert_true(request_rest_zero(&got));
        free(bad);
    }
    /* A wrong magic: nothing at all. */
    frame[1] ^= 1;
    assert_int_equal(decode_request_exact(frame, n, &got), AMSI_PROTO_EMAGIC);
    assert_true(got.request_id == 0 && got.version == 0 && request_rest_zero(&got));

    /* Replies: the request id only. */
    le32(rframe + 8, 1);
    assert_int_equal(decode_reply_exact(rframe, rn, &rgot), AMSI_PROTO_EFIELD);
    assert_true(rgot.request_id == rep.request_id);
    assert_true(rgot.session_id == 0 && rgot.scan_id == 0 && rgot.status == 0);
    assert_null(rgot.rule);
    le32(rframe + 8, 0);
    le32(rframe + 44, 0); /* the rule's bytes are left over */
    assert_int_equal(decode_reply_exact(rframe, rn, &rgot), AMSI_PROTO_ELONG);
    assert_true(rgot.request_id == rep.request_id);
    assert_int_equal(rgot.rule_len, 0);
    rframe[0] ^= 1;
    assert_int_equal(decode_reply_exact(rframe, rn, &rgot), AMSI_PROTO_EMAGIC);
    assert_true(rgot.request_id == 0);
    free(frame);
    free(rframe);
}

/* Reply decoding: each error code from a crafted frame. */
static void test_reply_errors(void **state)
{
    amsi_proto_reply rep = sample_reply();
    amsi_proto_reply got;
    size_t n;
    uint8_t *frame = build_reply(&rep, &n);

    (void)state;
    assert_int_equal(amsi_proto_decode_reply(NULL, 0, &got), AMSI_PROTO_ESHORT);
    assert_int_equal(decode_reply_exact(frame, 0, &got), AMSI_PROTO_ESHORT);
    assert_int_equal(decode_reply_exact(frame, AMSI_PROTO_REP_HEADER - 1, &got), AMSI_PROTO_ESHORT);
    /* A request's header is shorter than a reply's... */
    {
        amsi_proto_request req = sample_request();
        size_t qn;
        uint8_t *q;

        q = build_request(&req, &qn);
        assert_true(qn >= AMSI_PROTO_REP_HEADER);
        assert_int_equal(decode_reply_exact(q, AMSI_PROTO_REQ_HEADER, &got), AMSI_PROTO_ESHORT);
        /* ... and one long enough is the wrong type. */
        assert_int_equal(decode_reply_exact(q, qn, &got), AMSI_PROTO_ETYPE);
        free(q);
    }

    frame[0] ^= 0x20;
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_EMAGIC);
    frame[0] ^= 0x20;
    le16(frame + 4, 7);
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_EVERSION);
    assert_true(got.request_id == rep.request_id);
    le16(frame + 4, 1);
    for (uint16_t t = 0; t < 0x100; t++) {
        le16(frame + 6, t);
        assert_int_equal(decode_reply_exact(frame, n, &got),
                         t == AMSI_PROTO_REPLY ? 0 : AMSI_PROTO_ETYPE);
    }
    le16(frame + 6, AMSI_PROTO_REPLY);
    le32(frame + 8, 1);
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    le32(frame + 8, 0);
    le32(frame + 12, 48);
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    le32(frame + 12, 65);
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    le32(frame + 12, 64);
    le32(frame + 44, AMSI_PROTO_MAX_RULE + 1);
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    le32(frame + 44, 3);
    le32(frame + 48, AMSI_PROTO_MAX_OBJECT + 1);
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    le32(frame + 48, 5);
    le32(frame + 52, AMSI_PROTO_MAX_REASON + 1);
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    le32(frame + 52, 0xFFFFFFFF);
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_EFIELD);
    /* Lengths within bounds that disagree with the frame. */
    le32(frame + 52, 5);
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_ESHORT);
    le32(frame + 52, 3);
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_ELONG);
    le32(frame + 52, AMSI_PROTO_MAX_REASON);
    le32(frame + 48, AMSI_PROTO_MAX_OBJECT);
    le32(frame + 44, AMSI_PROTO_MAX_RULE);
    assert_int_equal(decode_reply_exact(frame, n, &got), AMSI_PROTO_ESHORT);
    le32(frame + 52, 4);
    le32(frame + 48, 5);
    le32(frame + 44, 3);
    assert_int_equal(decode_reply_exact(frame, n, &got), 0);
    free(frame);
}

/* Any status value is passed up unchanged; the client decides what an unknown one means. */
static void test_reply_any_status(void **state)
{
    static const uint32_t statuses[] = {0, 9, 10, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF};

    (void)state;
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        amsi_proto_reply rep = sample_reply();
        amsi_proto_reply got;
        size_t n;
        uint8_t *frame;

        rep.status = statuses[i];
        frame = build_reply(&rep, &n);
        assert_int_equal(amsi_proto_decode_reply(frame, n, &got), 0);
        assert_int_equal(got.status, statuses[i]);
        free(frame);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Boundaries
 * ------------------------------------------------------------------------------------------- */

/* Strings exactly at their bounds pass both ways; one byte more is EFIELD both ways. */
static void test_request_string_bounds(void **state)
{
    static char app[AMSI_PROTO_MAX_APP + 1];
    static char name[AMSI_PROTO_MAX_NAME + 1];
    static uint8_t buf[REQ_HEAD_MAX + 16];
    amsi_proto_request req = sample_request();
    amsi_proto_request got;
    size_t n, len = 0;
    uint8_t *frame;

    (void)state;
    memset(app, 'a', sizeof(app));
    memset(name, 'n', sizeof(name));
    req.app = app;
    req.name = name;
    req.app_len = AMSI_PROTO_MAX_APP;
    req.name_len = AMSI_PROTO_MAX_NAME;
    frame = build_request(&req, &n);
    assert_int_equal(n, REQ_HEAD_MAX + 16);
    assert_int_equal(amsi_proto_decode_request(frame, n, &got), 0);
    assert_request_equal(&req, &got);

    /* One over on the decoder: grow the frame by a byte and the length with it. */
    {
        uint8_t *big = malloc(n + 1);

        assert_non_null(big);
        memcpy(big, frame, n);
        big[n] = 'x';
        le32(big + 32, AMSI_PROTO_MAX_APP + 1);
        assert_int_equal(amsi_proto_decode_request(big, n + 1, &got), AMSI_PROTO_EFIELD);
        le32(big + 32, AMSI_PROTO_MAX_APP);
        le32(big + 36, AMSI_PROTO_MAX_NAME + 1);
        assert_int_equal(amsi_proto_decode_request(big, n + 1, &got), AMSI_PROTO_EFIELD);
        le32(big + 36, AMSI_PROTO_MAX_NAME);
        le64(big + 40, 17);
        assert_int_equal(amsi_proto_decode_request(big, n + 1, &got), 0);
        free(big);
    }
    free(frame);

    /* One over on the encoder. */
    req.app_len = AMSI_PROTO_MAX_APP + 1;
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), AMSI_PROTO_EFIELD);
    req.app_len = AMSI_PROTO_MAX_APP;
    req.name_len = AMSI_PROTO_MAX_NAME + 1;
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), AMSI_PROTO_EFIELD);
    req.name_len = UINT32_MAX;
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), AMSI_PROTO_EFIELD);
    assert_int_equal(len, 0); /* untouched on failure */
}

/* Empty strings and empty content are fine for every type. */
static void test_request_empty(void **state)
{
    (void)state;
    for (uint16_t t = AMSI_PROTO_SCAN; t <= AMSI_PROTO_PING; t++) {
        amsi_proto_request req = {.type = t};
        amsi_proto_request got;
        size_t n;
        uint8_t *frame = build_request(&req, &n);

        assert_int_equal(n, AMSI_PROTO_REQ_HEADER);
        assert_int_equal(amsi_proto_decode_request(frame, n, &got), 0);
        assert_request_equal(&req, &got);
        assert_true(got.content_len == 0);
        free(frame);
    }
}

/*
 * content_len 2^64-1 is fine with MEMFD (it is only the memfd's size), refused by the encoder
 * inline (no such frame fits in memory) and ESHORT for the decoder inline.
 */
static void test_request_huge_content(void **state)
{
    uint8_t buf[AMSI_PROTO_REQ_HEADER + 16];
    amsi_proto_request req = sample_request();
    amsi_proto_request got;
    size_t n, len = 0;
    uint8_t *frame;

    (void)state;
    req.flags = AMSI_PROTO_F_MEMFD | AMSI_PROTO_F_UTF16;
    req.content_len = UINT64_MAX;
    req.content = NULL;
    frame = build_request(&req, &n);
    assert_int_equal(n, AMSI_PROTO_REQ_HEADER + 12);
    assert_int_equal(amsi_proto_decode_request(frame, n, &got), 0);
    assert_request_equal(&req, &got);

    le32(frame + 8, AMSI_PROTO_F_UTF16);
    assert_int_equal(amsi_proto_decode_request(frame, n, &got), AMSI_PROTO_ESHORT);
    free(frame);

    req.flags = 0;
    req.content = sample_content;
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), AMSI_PROTO_EFIELD);
    /* The largest inline length whose frame length still fits in a size_t is encoded. */
    req.content_len = (uint64_t)SIZE_MAX - (AMSI_PROTO_REQ_HEADER + 12);
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, AMSI_PROTO_REQ_HEADER + 12);
    req.content_len++;
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), AMSI_PROTO_EFIELD);
}

/* The request encoder's own refusals: space, bad types and flags, NULL arguments. */
static void test_encode_request_errors(void **state)
{
    static const uint16_t bad_types[] = {0, 6, AMSI_PROTO_REPLY, 0xFFFF};
    uint8_t buf[AMSI_PROTO_REQ_HEADER + 12];
    amsi_proto_request req = sample_request();
    size_t len = 0;

    (void)state;
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf) - 1, &len),
                     AMSI_PROTO_ESPACE);
    assert_int_equal(amsi_proto_encode_request(&req, buf, 0, &len), AMSI_PROTO_ESPACE);
    assert_int_equal(amsi_proto_encode_request(&req, NULL, 0, &len), AMSI_PROTO_ESPACE);
    assert_int_equal(amsi_proto_encode_request(&req, NULL, 4096, &len), AMSI_PROTO_ESPACE);
    assert_int_equal(len, 0);
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, sizeof(buf));

    for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
        req.type = bad_types[i];
        assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len),
                         AMSI_PROTO_EFIELD);
    }
    req.type = AMSI_PROTO_SCAN;
    req.flags = 0x4;
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), AMSI_PROTO_EFIELD);
    req.flags = 0;

    /* Content on the types that carry none. */
    for (uint16_t t = AMSI_PROTO_SESSION_OPEN; t <= AMSI_PROTO_PING; t++) {
        req.type = t;
        assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len),
                         AMSI_PROTO_EFIELD);
        req.content_len = 0;
        req.flags = AMSI_PROTO_F_MEMFD;
        assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len),
                         AMSI_PROTO_EFIELD);
        req.flags = AMSI_PROTO_F_UTF16;
        assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), 0);
        req.flags = 0;
        req.content_len = 16;
    }
    req.type = AMSI_PROTO_SCAN;

    /* NULL strings with a length; NULL with length 0 is an empty string. */
    req.app = NULL;
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), AMSI_PROTO_EFIELD);
    req.app_len = 0;
    req.name = NULL;
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), AMSI_PROTO_EFIELD);
    req.name_len = 0;
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, AMSI_PROTO_REQ_HEADER);

    req = sample_request();
    assert_int_equal(amsi_proto_encode_request(NULL, buf, sizeof(buf), &len), AMSI_PROTO_EFIELD);
    assert_int_equal(amsi_proto_encode_request(&req, buf, sizeof(buf), NULL), AMSI_PROTO_EFIELD);
}

/* The reply encoder: ESPACE below the frame's size, and AMSI_PROTO_MAX_REPLY always enough. */
static void test_encode_reply_space(void **state)
{
    static char big[AMSI_PROTO_MAX_OBJECT * 2];
    amsi_proto_reply rep = sample_reply();
    amsi_proto_reply got;
    uint8_t buf[AMSI_PROTO_MAX_REPLY];
    size_t len = 0;

    (void)state;
    assert_int_equal(amsi_proto_encode_reply(&rep, buf, AMSI_PROTO_REP_HEADER + 11, &len),
                     AMSI_PROTO_ESPACE);
    assert_int_equal(amsi_proto_encode_reply(&rep, NULL, 0, &len), AMSI_PROTO_ESPACE);
    assert_int_equal(len, 0);
    assert_int_equal(amsi_proto_encode_reply(&rep, buf, AMSI_PROTO_REP_HEADER + 12, &len), 0);
    assert_int_equal(len, AMSI_PROTO_REP_HEADER + 12);
    assert_int_equal(amsi_proto_encode_reply(NULL, buf, sizeof(buf), &len), AMSI_PROTO_EFIELD);
    assert_int_equal(amsi_proto_encode_reply(&rep, buf, sizeof(buf), NULL), AMSI_PROTO_EFIELD);

    /* Every string far over its bound: cut to the bounds, and the largest frame fits. */
    memset(big, 'z', sizeof(big));
    rep.rule = big;
    rep.rule_len = UINT32_MAX; /* only the bound's worth is ever read */
    rep.object = big;
    rep.object_len = sizeof(big);
    rep.reason = big;
    rep.reason_len = AMSI_PROTO_MAX_REASON + 1;
    assert_int_equal(amsi_proto_encode_reply(&rep, buf, sizeof(buf) - 1, &len), AMSI_PROTO_ESPACE);
    assert_int_equal(amsi_proto_encode_reply(&rep, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, AMSI_PROTO_MAX_REPLY);
    assert_int_equal(decode_reply_exact(buf, len, &got), 0);
    assert_int_equal(got.rule_len, AMSI_PROTO_MAX_RULE);
    assert_int_equal(got.object_len, AMSI_PROTO_MAX_OBJECT);
    assert_int_equal(got.reason_len, AMSI_PROTO_MAX_REASON);

    /* NULL strings are sent empty, whatever their lengths say. */
    rep.rule = NULL;
    rep.object = NULL;
    rep.reason = NULL;
    assert_int_equal(amsi_proto_encode_reply(&rep, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, AMSI_PROTO_REP_HEADER);
    assert_int_equal(decode_reply_exact(buf, len, &got), 0);
    assert_int_equal(got.rule_len + got.object_len + got.reason_len, 0);
}

/* ---------------------------------------------------------------------------------------------
 * UTF-8 cutting
 * ------------------------------------------------------------------------------------------- */

/*
 * Encodes a reply whose rule is s[0..n) and returns the rule length that went on the wire,
 * after checking the sent bytes are a prefix of s. The rule is copied into an exact heap block,
 * so the cut can't look past what the caller handed over.
 */
static uint32_t sent_rule_len(const char *s, size_t n)
{
    amsi_proto_reply rep = sample_reply();
    amsi_proto_reply got;
    uint8_t buf[AMSI_PROTO_MAX_REPLY];
    size_t len = 0;
    char *copy = (char *)dup_exact(s, n);

    rep.rule = copy;
    rep.rule_len = (uint32_t)n;
    assert_int_equal(amsi_proto_encode_reply(&rep, buf, sizeof(buf), &len), 0);
    assert_int_equal(decode_reply_exact(buf, len, &got), 0);
    assert_true(got.rule_len <= AMSI_PROTO_MAX_RULE);
    assert_memory_equal(got.rule, s, got.rule_len);
    free(copy);
    return got.rule_len;
}

/*
 * Builds pad ASCII bytes then the UTF-8 sequence seq, then tail more ASCII bytes, and returns
 * the rule length sent.
 */
static uint32_t cut_with(size_t pad, const char *seq, size_t tail)
{
    char s[AMSI_PROTO_MAX_RULE * 2];
    size_t sl = strlen(seq);

    assert_true(pad + sl + tail <= sizeof(s));
    memset(s, 'p', pad);
    memcpy(s + pad, seq, sl);
    memset(s + pad + sl, 't', tail);
    return sent_rule_len(s, pad + sl + tail);
}

/* Over-long strings are cut at the bound, but never inside a multi-byte character. */
static void test_utf8_cut(void **state)
{
    static const char two[] = "\xC3\xA9";          /* é */
    static const char three[] = "\xE2\x82\xAC";    /* € */
    static const char four[] = "\xF0\x9F\x98\x80"; /* 😀 */
    const size_t max = AMSI_PROTO_MAX_RULE;
    char s[AMSI_PROTO_MAX_RULE * 2];

    (void)state;
    /* Exactly at the bound: sent whole; one byte over: cut to the bound. */
    memset(s, 'x', sizeof(s));
    assert_int_equal(sent_rule_len(s, max), max);
    assert_int_equal(sent_rule_len(s, max + 1), max);
    assert_int_equal(sent_rule_len(s, sizeof(s)), max);
    assert_int_equal(sent_rule_len(s, 0), 0);

    /* A 3-byte character straddling the bound is dropped whole, wherever it straddles. */
    assert_int_equal(cut_with(max - 1, three, 0), max - 1);
    assert_int_equal(cut_with(max - 2, three, 0), max - 2);
    assert_int_equal(cut_with(max - 1, three, 10), max - 1);
    /* ... and kept when it ends exactly at the bound, with or without more after it. */
    assert_int_equal(cut_with(max - 3, three, 0), max);
    assert_int_equal(cut_with(max - 3, three, 1), max);
    assert_int_equal(cut_with(max - 4, three, 5), max);

    assert_int_equal(cut_with(max - 1, two, 0), max - 1);
    assert_int_equal(cut_with(max - 2, two, 1), max);
    for (size_t k = 1; k <= 3; k++)
        assert_int_equal(cut_with(max - k, four, 2), max - k);
    assert_int_equal(cut_with(max - 4, four, 2), max);

    /* A string of only 3-byte characters: cut at the last whole one below the bound. */
    for (size_t i = 0; i + 3 <= sizeof(s); i += 3)
        memcpy(s + i, three, 3);
    assert_int_equal(sent_rule_len(s, 300), (max / 3) * 3);

    /* Bytes that are not UTF-8 (stray continuations) are cut at the bound. */
    memset(s, 0x80, sizeof(s));
    assert_int_equal(sent_rule_len(s, max + 10), max);
    /* A lead byte alone just below the bound is dropped. */
    memset(s, 'x', sizeof(s));
    s[max - 1] = (char)0xE2;
    assert_int_equal(sent_rule_len(s, max + 10), max - 1);
    /* A lead byte followed by more continuations than it claims: cut at the bound. */
    s[max - 5] = (char)0xC3;
    memset(s + max - 4, 0x80, 8);
    assert_int_equal(sent_rule_len(s, max + 10), max);

    /* The other two strings use their own bounds. */
    {
        static char obj[AMSI_PROTO_MAX_OBJECT + 8];
        static char rsn[AMSI_PROTO_MAX_REASON + 8];
        amsi_proto_reply rep = sample_reply();
        amsi_proto_reply got;
        uint8_t buf[AMSI_PROTO_MAX_REPLY];
        size_t len = 0;

        memset(obj, 'o', sizeof(obj));
        memcpy(obj + AMSI_PROTO_MAX_OBJECT - 2, four, 4);
        memset(rsn, 'r', sizeof(rsn));
        memcpy(rsn + AMSI_PROTO_MAX_REASON - 1, two, 2);
        rep.object = obj;
        rep.object_len = sizeof(obj);
        rep.reason = rsn;
        rep.reason_len = sizeof(rsn);
        assert_int_equal(amsi_proto_encode_reply(&rep, buf, sizeof(buf), &len), 0);
        assert_int_equal(decode_reply_exact(buf, len, &got), 0);
        assert_int_equal(got.object_len, AMSI_PROTO_MAX_OBJECT - 2);
        assert_int_equal(got.reason_len, AMSI_PROTO_MAX_REASON - 1);
        assert_int_equal(got.rule_len, 3);
    }
}

/*
 * Random UTF-8 text over the bound: the cut is a prefix, never more than three bytes short of
 * the bound, and ends on a character boundary of the original text.
 */
static void test_utf8_cut_random(void **state)
{
    static const char *const chars[] = {"a", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
    rng r = {0x5EED0003u};

    (void)state;
    for (int i = 0; i < 2000; i++) {
        char s[AMSI_PROTO_MAX_RULE + 64];
        uint8_t boundary[sizeof(s) + 1] = {0};
        size_t n = 0;
        uint32_t cut;

        boundary[0] = 1;
        while (n + 4 <= sizeof(s)) {
            const char *c = chars[rng_below(&r, 4)];
            size_t cl = strlen(c);

            memcpy(s + n, c, cl);
            n += cl;
            boundary[n] = 1;
        }
        cut = sent_rule_len(s, n);
        assert_true(cut <= AMSI_PROTO_MAX_RULE);
        assert_true(cut + 3 >= AMSI_PROTO_MAX_RULE);
        assert_true(boundary[cut]);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Truncation, extension and bit flips
 * ------------------------------------------------------------------------------------------- */

/* A few valid requests of every shape, built into exact heap frames. */
static uint8_t *nth_request_frame(int i, size_t *n)
{
    amsi_proto_request req = sample_request();

    switch (i) {
    case 0:
        break;
    case 1:
        req.type = AMSI_PROTO_NOTIFY;
        req.flags = AMSI_PROTO_F_UTF16;
        break;
    case 2:
        req.flags = AMSI_PROTO_F_MEMFD;
        req.content_len = 1u << 20;
        break;
    case 3:
        req.content_len = 0;
        break;
    case 4:
    case 5:
    case 6:
        req.type = (uint16_t)(AMSI_PROTO_SESSION_OPEN + (i - 4));
        req.content_len = 0;
        break;
    default:
        req.app_len = 0;
        req.name_len = 0;
        break;
    }
    return build_request(&req, n);
}

/* Every proper prefix of a valid frame is ESHORT; one extra byte is ELONG. */
static void test_request_truncation(void **state)
{
    (void)state;
    for (int i = 0; i < 8; i++) {
        size_t n;
        uint8_t *frame = nth_request_frame(i, &n);
        amsi_proto_request got;
        uint8_t *longer;

        for (size_t cut = 0; cut < n; cut++) {
            uint8_t *part = malloc(cut);

            if (cut > 0) {
                assert_non_null(part);
                memcpy(part, frame, cut);
            }
            assert_int_equal(amsi_proto_decode_request(part, cut, &got), AMSI_PROTO_ESHORT);
            assert_true(got.request_id == (cut >= 24 ? rd64(frame + 16) : 0));
            assert_int_equal(got.app_len, 0);
            free(part);
        }
        longer = malloc(n + 1);
        assert_non_null(longer);
        memcpy(longer, frame, n);
        longer[n] = 0;
        assert_int_equal(amsi_proto_decode_request(longer, n + 1, &got), AMSI_PROTO_ELONG);
        assert_int_equal(amsi_proto_decode_request(frame, n, &got), 0);
        free(longer);
        free(frame);
    }
}

/* The same for replies, with and without strings. */
static void test_reply_truncation(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        amsi_proto_reply rep = sample_reply();
        amsi_proto_reply got;
        size_t n;
        uint8_t *frame, *longer;

        if (i == 1)
            rep.rule = rep.object = rep.reason = NULL;
        if (i == 2)
            rep.object = NULL;
        frame = build_reply(&rep, &n);
        for (size_t cut = 0; cut < n; cut++) {
            uint8_t *part = malloc(cut);

            if (cut > 0) {
                assert_non_null(part);
                memcpy(part, frame, cut);
            }
            assert_int_equal(amsi_proto_decode_reply(part, cut, &got), AMSI_PROTO_ESHORT);
            assert_true(got.request_id == (cut >= 24 ? rep.request_id : 0));
            assert_int_equal(got.rule_len, 0);
            free(part);
        }
        longer = malloc(n + 1);
        assert_non_null(longer);
        memcpy(longer, frame, n);
        longer[n] = 'x';
        assert_int_equal(amsi_proto_decode_reply(longer, n + 1, &got), AMSI_PROTO_ELONG);
        free(longer);
        free(frame);
    }
}

/*
 * The outcome of a length field changed from old to now: EFIELD over the bound, ESHORT when the
 * frame no longer holds what it claims, ELONG when bytes are left over.
 */
static int length_flip_result(uint64_t old, uint64_t now, uint64_t max)
{
    if (now > max)
        return AMSI_PROTO_EFIELD;
    return now > old ? AMSI_PROTO_ESHORT : AMSI_PROTO_ELONG;
}

/*
 * Flips every bit of the sample request's header in turn and checks the exact outcome the
 * field's rules predict; a flip that leaves a valid frame must show up in the decoded field.
 */
static void test_request_bit_flips(void **state)
{
    amsi_proto_request req = sample_request();
    size_t n;
    uint8_t *frame = build_request(&req, &n);

    (void)state;
    for (size_t bit = 0; bit < AMSI_PROTO_REQ_HEADER * 8; bit++) {
        size_t off = bit / 8;
        amsi_proto_request got;
        int want, rc;

        frame[off] ^= (uint8_t)(1u << (bit % 8));
        if (off < 4) {
            want = AMSI_PROTO_EMAGIC;
        } else if (off < 6) {
            want = AMSI_PROTO_EVERSION;
        } else if (off < 8) {
            uint16_t t = (uint16_t)(frame[6] | frame[7] << 8);

            want = (t == AMSI_PROTO_SCAN || t == AMSI_PROTO_NOTIFY)         ? 0
                   : (t >= AMSI_PROTO_SESSION_OPEN && t <= AMSI_PROTO_PING) ? AMSI_PROTO_EFIELD
                                                                            : AMSI_PROTO_ETYPE;
        } else if (off < 12) {
            uint32_t f = rd32(frame + 8);

            want = f == AMSI_PROTO_F_UTF16   ? 0
                   : f == AMSI_PROTO_F_MEMFD ? AMSI_PROTO_ELONG
                                             : AMSI_PROTO_EFIELD;
        } else if (off < 16) {
            want = AMSI_PROTO_EFIELD;
        } else if (off < 32) {
            want = 0;
        } else if (off < 36) {
            want = length_flip_result(req.app_len, rd32(frame + 32), AMSI_PROTO_MAX_APP);
        } else if (off < 40) {
            want = length_flip_result(req.name_len, rd32(frame + 36), AMSI_PROTO_MAX_NAME);
        } else {
            want = length_flip_result(req.content_len, rd64(frame + 40), UINT64_MAX);
        }
        rc = decode_request_exact(frame, n, &got);
        assert_int_equal(rc, want);
        if (off >= 4 && off < 6) {
            assert_true(got.request_id == req.request_id);
            assert_int_equal(got.version, AMSI_PROTO_VERSION ^ (1u << (bit - 32)));
        }
        if (rc == 0) {
            assert_int_equal(got.type, frame[6] | frame[7] << 8);
            assert_int_equal(got.flags, rd32(frame + 8));
            assert_true(got.request_id == rd64(frame + 16));
            assert_true(got.session_id == rd64(frame + 24));
            assert_memory_equal(got.content, sample_content, sizeof(sample_content));
        }
        frame[off] ^= (uint8_t)(1u << (bit % 8));
    }
    free(frame);
}

/* The same for the reply's header. */
static void test_reply_bit_flips(void **state)
{
    amsi_proto_reply rep = sample_reply();
    size_t n;
    uint8_t *frame = build_reply(&rep, &n);

    (void)state;
    for (size_t bit = 0; bit < AMSI_PROTO_REP_HEADER * 8; bit++) {
        size_t off = bit / 8;
        amsi_proto_reply got;
        int want, rc;

        frame[off] ^= (uint8_t)(1u << (bit % 8));
        if (off < 4)
            want = AMSI_PROTO_EMAGIC;
        else if (off < 6)
            want = AMSI_PROTO_EVERSION;
        else if (off < 8)
            want = AMSI_PROTO_ETYPE;
        else if (off < 16)
            want = AMSI_PROTO_EFIELD; /* flags, header_len */
        else if (off < 44 || off >= 56)
            want = 0; /* ids, status, result, retry */
        else if (off < 48)
            want = length_flip_result(rep.rule_len, rd32(frame + 44), AMSI_PROTO_MAX_RULE);
        else if (off < 52)
            want = length_flip_result(rep.object_len, rd32(frame + 48), AMSI_PROTO_MAX_OBJECT);
        else
            want = length_flip_result(rep.reason_len, rd32(frame + 52), AMSI_PROTO_MAX_REASON);
        rc = decode_reply_exact(frame, n, &got);
        assert_int_equal(rc, want);
        if (rc == 0) {
            assert_true(got.request_id == rd64(frame + 16));
            assert_true(got.session_id == rd64(frame + 24));
            assert_int_equal(got.status, rd32(frame + 32));
            assert_int_equal(got.amsi_result, rd32(frame + 36));
            assert_int_equal(got.retry_after_ms, rd32(frame + 40));
            assert_true(got.scan_id == rd64(frame + 56));
        }
        frame[off] ^= (uint8_t)(1u << (bit % 8));
    }
    free(frame);
}

/*
 * Random byte mutations of valid frames: decoding never fails in an unlisted way, and whatever
 * decodes re-encodes to the very same bytes (the codec accepts one encoding per message).
 */
static void test_random_mutations(void **state)
{
    rng r = {0x5EED0004u};

    (void)state;
    for (int i = 0; i < MUTATIONS; i++) {
        int as_reply = (int)rng_below(&r, 2);
        size_t n, cut;
        uint8_t *frame, *part;
        int rc;

        if (as_reply) {
            amsi_proto_reply rep = sample_reply();

            frame = build_reply(&rep, &n);
        } else {
            frame = nth_request_frame((int)rng_below(&r, 8), &n);
        }
        for (size_t k = rng_below(&r, 4) + 1; k > 0; k--) {
            size_t at = rng_below(&r, n);

            frame[at] = rng_below(&r, 2) ? (uint8_t)rng_next(&r)
                                         : (uint8_t)(frame[at] ^ (1u << rng_below(&r, 8)));
        }
        /* Decode from an exact-size copy, kept alive while the decoded pointers are used. */
        cut = rng_below(&r, 8) == 0 ? rng_below(&r, n + 1) : n;
        part = dup_exact(frame, cut);
        if (as_reply) {
            amsi_proto_reply got;
            uint8_t again[AMSI_PROTO_MAX_REPLY];
            size_t len = 0;

            rc = amsi_proto_decode_reply(part, cut, &got);
            if (rc == 0) {
                assert_int_equal(amsi_proto_encode_reply(&got, again, sizeof(again), &len), 0);
                assert_int_equal(len, cut);
                assert_memory_equal(again, part, cut);
            }
        } else {
            amsi_proto_request got;
            static uint8_t again[REQ_HEAD_MAX];
            size_t len = 0;

            rc = amsi_proto_decode_request(part, cut, &got);
            if (rc == 0) {
                assert_int_equal(amsi_proto_encode_request(&got, again, sizeof(again), &len), 0);
                assert_memory_equal(again, part, len);
                if (got.content != NULL)
                    assert_true(len + got.content_len == cut);
                else
                    assert_int_equal(len, cut);
            }
        }
        free(part);
        assert_true(rc <= 0 && rc >= AMSI_PROTO_ELONG && rc != AMSI_PROTO_ESPACE);
        free(frame);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Statuses
 * ------------------------------------------------------------------------------------------- */

/* Every status in the table has its own name and message; anything else is UNKNOWN. */
static void test_status_names(void **state)
{
    static const uint32_t unknown[] = {10, 11, 0x81, 1000, 0x80000000, UINT32_MAX};
    unsigned count = 0;

    (void)state;
    /* A few by hand, so a broken generator cannot agree with itself. */
    assert_string_equal(amsi_proto_status_name(0), "OK");
    assert_string_equal(amsi_proto_status_message(0), "scanned");
    assert_string_equal(amsi_proto_status_name(1), "THROTTLED");
    assert_string_equal(amsi_proto_status_name(6), "UNSUPPORTED_VERSION");
    assert_string_equal(amsi_proto_status_name(9), "SHUTTING_DOWN");
    assert_string_equal(amsi_proto_status_message(9), "the broker is stopping");

#define CHECK_STATUS(name, code, msg)                                                              \
    assert_int_equal(AMSI_PROTO_STATUS_##name, code);                                              \
    assert_string_equal(amsi_proto_status_name(code), #name);                                      \
    assert_string_equal(amsi_proto_status_message(code), msg);                                     \
    assert_true(strlen(msg) > 0);                                                                  \
    count++;
    AMSI_PROTO_STATUS_MAP(CHECK_STATUS)
#undef CHECK_STATUS
    assert_int_equal(count, 10);
    /* Codes are dense from 0, so each has a distinct name. */
    for (uint32_t a = 0; a < count; a++)
        for (uint32_t b = a + 1; b < count; b++)
            assert_string_not_equal(amsi_proto_status_name(a), amsi_proto_status_name(b));

    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_string_equal(amsi_proto_status_name(unknown[i]), "UNKNOWN");
        assert_string_equal(amsi_proto_status_message(unknown[i]), "unknown status");
    }
}

/* ---------------------------------------------------------------------------------------------
 * Fuzz seed corpus
 * ------------------------------------------------------------------------------------------- */

/* The seed frames for tests/fuzz/corpus/protocol: one of each request shape and a few replies. */
static uint8_t *seed_frame(int i, const char **file, size_t *n)
{
    static const char *const names[] = {"req_scan",       "req_notify_utf16", "req_scan_memfd",
                                        "req_scan_empty", "req_session_open", "req_close",
                                        "req_ping",       "req_no_strings",   "rep_ok",
                                        "rep_empty",      "rep_object"};
    amsi_proto_reply rep = sample_reply();

    *file = names[i];
    if (i < 8)
        return nth_request_frame(i, n);
    if (i == 9) {
        rep.rule = rep.object = rep.reason = NULL;
        rep.status = AMSI_PROTO_STATUS_THROTTLED;
        rep.retry_after_ms = 250;
    }
    if (i == 10) {
        rep.object = "outer.zip>inner.tar>evil.ps1";
        rep.object_len = (uint32_t)strlen(rep.object);
        rep.status = AMSI_PROTO_STATUS_LIMIT;
    }
    return build_reply(&rep, n);
}

#define SEED_COUNT 11

/*
 * With AMSI_FUZZ_CORPUS set, writes the seed frames into that directory. When the build names
 * the source tree, checks that the committed corpus files still hold exactly these frames, so a
 * change to the wire layout shows up here too.
 */
static void test_fuzz_corpus(void **state)
{
    const char *out = getenv("AMSI_FUZZ_CORPUS");

    (void)state;
    for (int i = 0; i < SEED_COUNT; i++) {
        const char *file;
        char path[4096];
        size_t n;
        uint8_t *frame = seed_frame(i, &file, &n);
        amsi_proto_request req;
        amsi_proto_reply rep;

        assert_true(amsi_proto_decode_request(frame, n, &req) == 0 ||
                    amsi_proto_decode_reply(frame, n, &rep) == 0);
        if (out != NULL && out[0] != '\0') {
            FILE *f;

            snprintf(path, sizeof(path), "%s/%s", out, file);
            f = fopen(path, "wb");
            assert_non_null(f);
            assert_int_equal(fwrite(frame, 1, n, f), n);
            assert_int_equal(fclose(f), 0);
        }
#ifdef AMSI_SOURCE_DIR
        {
            uint8_t disk[AMSI_PROTO_MAX_REPLY + 1];
            size_t got;
            FILE *f;

            snprintf(path, sizeof(path), "%s/tests/fuzz/corpus/protocol/%s", AMSI_SOURCE_DIR, file);
            f = fopen(path, "rb");
            if (f == NULL)
                fail_msg("missing seed %s", path);
            got = fread(disk, 1, sizeof(disk), f);
            fclose(f);
            assert_int_equal(got, n);
            assert_memory_equal(disk, frame, n);
        }
#endif
        free(frame);
    }
}

/* Every test frees the last decoded frame copy when it ends. */
#define TEST(f) cmocka_unit_test_teardown(f, release_held)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_request_layout),         TEST(test_request_layout_decode),
        TEST(test_reply_layout),           TEST(test_request_round_trip),
        TEST(test_reply_round_trip),       TEST(test_request_eshort_header),
        TEST(test_request_eshort_lengths), TEST(test_request_emagic),
        TEST(test_request_eversion),       TEST(test_request_etype),
        TEST(test_request_efield),         TEST(test_request_elong),
        TEST(test_decode_null_args),       TEST(test_failure_names_request),
        TEST(test_reply_errors),           TEST(test_reply_any_status),
        TEST(test_request_string_bounds),  TEST(test_request_empty),
        TEST(test_request_huge_content),   TEST(test_encode_request_errors),
        TEST(test_encode_reply_space),     TEST(test_utf8_cut),
        TEST(test_utf8_cut_random),        TEST(test_request_truncation),
        TEST(test_reply_truncation),       TEST(test_request_bit_flips),
        TEST(test_reply_bit_flips),        TEST(test_random_mutations),
        TEST(test_status_names),           TEST(test_fuzz_corpus),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
