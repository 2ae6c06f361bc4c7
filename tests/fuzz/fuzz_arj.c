/*
 * fuzz_arj.c - libFuzzer target for engine/src/arj.c: opens the input as an ARJ archive, walks
 * every member and reads each to its end through a small buffer, as the engine's unpacker would.
 *
 * Each input is tried twice: as it is, and with every header CRC along the header chain
 * recomputed, so mutations of header fields reach the checks behind the CRC instead of all
 * failing on it.
 *
 * Output is capped per input (a valid archive may expand a thousandfold, and the caller, not the
 * reader, enforces ratio limits), so a compression bomb costs one bounded unit, not a timeout.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Iengine/src engine/src/arj.c \
 *            tests/fuzz/fuzz_arj.c -o /tmp/fuzz_arj
 * Run:   cp -r tests/fuzz/corpus/arj /tmp/arj_corpus && /tmp/fuzz_arj -runs=1000000 /tmp/arj_corpus
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arj.h"

#define FUZZ_OUTPUT_CAP (256u * 1024u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fails loudly (a crash the fuzzer reports) when the reader breaks a promise of arj.h. */
static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c & 1u) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * Recomputes the CRC of each header along the chain the reader follows: the first 60 EA in the
 * input, then header after header (extended headers included), skipping each member's data by
 * its compressed size. Stops at anything that is not a header.
 */
static void fix_crcs(uint8_t *d, size_t n)
{
    const uint8_t *id = n >= 2 ? memchr(d, 0x60, n - 1) : NULL;
    while (id != NULL && id[1] != 0xEA)
        id = memchr(id + 1, 0x60, n - 1 - (size_t)(id + 1 - d));
    if (id == NULL)
        return;
    size_t pos = (size_t)(id - d);
    for (int hdr = 0; hdr < 64; hdr++) {
        if (n - pos < 4 || d[pos] != 0x60 || d[pos + 1] != 0xEA)
            return;
        size_t hs = (size_t)(d[pos + 2] | d[pos + 3] << 8);
        if (hs == 0 || hs > 2600 || n - pos - 4 < hs + 4)
            return;
        uint8_t *b = d + pos + 4;
        put32(b + hs, crc32_of(b, hs));
        size_t comp = hdr == 0 || hs < 16 ? 0
                                          : (size_t)b[12] | (size_t)b[13] << 8 |
                                                (size_t)b[14] << 16 | (size_t)b[15] << 24;
        size_t p = pos + 4 + hs + 4;
        for (;;) {
            if (n - p < 2)
                return;
            size_t es = (size_t)(d[p] | d[p + 1] << 8);
            p += 2;
            if (es == 0)
                break;
            if (n - p < es + 4)
                return;
            put32(d + p + es, crc32_of(d + p, es));
            p += es + 4;
        }
        if (comp > n - p)
            return;
        pos = p + comp;
    }
}

/* Opens data[0..size) and reads every member to its end (or the output cap). */
static void run(const uint8_t *data, size_t size)
{
    engine__arj *a = NULL;
    engine__arj_entry e;
    uint8_t buf[4096];
    size_t total = 0;

    int rc = engine__arj_open(data, size, &a);
    check(engine__arj_strerror(rc) != NULL && engine__arj_err_name(rc) != NULL);
    if (rc != 0) {
        check(a == NULL && rc < 0);
        return;
    }
    while ((rc = engine__arj_next(a, &e)) == 0) {
        check(memchr(e.name, 0, sizeof(e.name)) != NULL);
        uint64_t out = 0;
        size_t got = 0;
        /* Vary the read size: 1 or 61 bytes for the first 2 KiB of a member, then 4 KiB. */
        size_t small = (e.crc32 & 1u) ? 1 : 61;
        size_t cap = small;
        while ((rc = engine__arj_read(a, buf, cap, &got)) == 0 && got > 0) {
            check(got <= cap);
            out += got;
            check(out <= e.orig_size);
            total += got;
            if (total > FUZZ_OUTPUT_CAP)
                break;
            cap = out < 2048 ? small : sizeof(buf);
        }
        if (rc != 0)
            check(got == 0 && engine__arj_read(a, buf, cap, &got) == rc);
        if (total > FUZZ_OUTPUT_CAP)
            break;
    }
    check(rc <= 1);
    engine__arj_close(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size);
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    if (size)
        memcpy(copy, data, size);
    fix_crcs(copy, size);
    run(copy, size);
    free(copy);
    return 0;
}
