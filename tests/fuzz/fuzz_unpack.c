/*
 * fuzz_unpack.c - libFuzzer target for container detection and the archive unpackers
 * (engine/src/unpack.c, engine/src/unpack_archive.c, and through them libarchive, zlib, libbz2,
 * liblzma and arj.c), driven through a fake host as the scanner drives them: every child is
 * checked (a name, bytes that can be read end to end) and unpacked in turn one level deeper.
 *
 * Each input is tried twice: as it is, and with the checksum that detection verifies for its
 * apparent type recomputed (7z start header, xz stream flags, RAR 4/5 main header, ARJ main
 * header, LHA level 0/1 header sum, the first TAR header), so mutations of header fields get past
 * detection to the readers behind it.
 *
 * Limits are small so that a compression bomb or a deep chain costs one bounded unit, not a
 * timeout: 1 MiB of output per input, 3 levels, 64 members, and a "clock" of 20,000 checks.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Iengine/include -Iengine/src \
 *            $(pkg-config --cflags libgsf-1 liblhasa) engine/src/unpack.c \
 *            engine/src/unpack_archive.c engine/src/unpack_office.c engine/src/ovba.c \
 *            engine/src/text.c engine/src/arj.c engine/src/config.c tests/fuzz/fuzz_unpack.c \
 *            $(pkg-config --libs libgsf-1 liblhasa) -larchive -lz -llzma -lbz2 -o /tmp/fuzz_unpack
 * Run:   cp -r tests/fuzz/corpus/unpack /tmp/unpack_corpus && \
 *        /tmp/fuzz_unpack -max_len=65536 -runs=1000000 /tmp/unpack_corpus
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "unpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fails loudly (a crash the fuzzer reports) when the unpacker breaks a promise of unpack.h. */
static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

typedef struct fuzz_host {
    engine_config cfg;
    uint64_t charged;
    unsigned clock;
    unsigned notes;
    bool in_stream;
    unsigned opens, closes;
    volatile uint8_t sink;
} fuzz_host;

static fuzz_host *state(engine__unpack_host *h)
{
    return h->opaque;
}

/* Reads a child's first and last byte, so a wrong length is out of bounds for ASan. */
static void touch(fuzz_host *f, const uint8_t *p, size_t n)
{
    check(n == 0 || p != NULL);
    if (n > 0)
        f->sink = (uint8_t)(p[0] ^ p[n - 1]);
}

static bool fz_scan_child(engine__unpack_host *h, const uint8_t *data, size_t len,
                          const char *name);

static bool fz_stream_open(engine__unpack_host *h, const char *name)
{
    fuzz_host *f = state(h);
    check(name != NULL && !f->in_stream);
    f->in_stream = true;
    f->opens++;
    return false;
}

static bool fz_stream_write(engine__unpack_host *h, const uint8_t *data, size_t len)
{
    fuzz_host *f = state(h);
    check(f->in_stream);
    touch(f, data, len);
    return false;
}

static bool fz_stream_close(engine__unpack_host *h)
{
    fuzz_host *f = state(h);
    check(f->in_stream);
    f->in_stream = false;
    f->closes++;
    return false;
}

static bool fz_charge(engine__unpack_host *h, uint64_t bytes)
{
    fuzz_host *f = state(h);
    if (f->charged + bytes > f->cfg.max_scan_size)
        return false;
    f->charged += bytes;
    return true;
}

static void fz_note(engine__unpack_host *h, const char *reason, bool error)
{
    (void)error;
    check(reason != NULL && reason[0] != '\0');
    state(h)->notes++;
}

static bool fz_out_of_time(engine__unpack_host *h)
{
    return ++state(h)->clock > 20000;
}

static engine__unpack_host host_at(fuzz_host *f, unsigned depth)
{
    engine__unpack_host h = {
        .cfg = &f->cfg,
        .depth = depth,
        .scan_child = fz_scan_child,
        .stream_open = fz_stream_open,
        .stream_write = fz_stream_write,
        .stream_close = fz_stream_close,
        .charge = fz_charge,
        .note = fz_note,
        .out_of_time = fz_out_of_time,
        .opaque = f,
    };
    return h;
}

static bool fz_scan_child(engine__unpack_host *h, const uint8_t *data, size_t len, const char *name)
{
    fuzz_host *f = state(h);
    check(name != NULL && !f->in_stream);
    check(strlen(name) < (1u << 20));
    touch(f, data, len);
    engine__unpack_host child = host_at(f, h->depth + 1);
    int rc = engine__unpack(&child, data, len);
    check(rc == 0 || rc == 1 || rc == ENGINE_ENOMEM);
    return false;
}

/* Runs one buffer through detection and the unpacker. */
static void run(const uint8_t *data, size_t size)
{
    engine__ctype t = engine__detect_type(data, size);
    check((unsigned)t <= (unsigned)ENGINE__CT_MSI);
    check(engine__ctype_name(t) != NULL);
    check(engine__detect_type(data, size) == t);

    fuzz_host f;
    memset(&f, 0, sizeof(f));
    engine_config_init(&f.cfg);
    f.cfg.scan_archives = true;
    f.cfg.scan_packages = true;
    f.cfg.max_scan_size = 1u << 20;
    f.cfg.max_recursion = 3;
    f.cfg.max_files = 64;
    engine__unpack_host h = host_at(&f, 0);
    int rc = engine__unpack(&h, data, size);
    check(rc == 0 || rc == 1 || rc == ENGINE_ENOMEM);
    check(!f.in_stream && f.opens == f.closes);
    check(f.charged <= f.cfg.max_scan_size);
    if (t == ENGINE__CT_NONE)
        check(rc == 1 && f.notes == 0);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t crc_of(const uint8_t *p, size_t n)
{
    return (uint32_t)crc32(0L, p, (uInt)n);
}

/* Recomputes the checksum detection verifies for the type the first bytes suggest. */
static void fix_checksums(uint8_t *d, size_t n)
{
    if (n >= 32 && memcmp(d, "7z\xBC\xAF\x27\x1C", 6) == 0) {
        put32(d + 8, crc_of(d + 12, 20));
    } else if (n >= 12 && memcmp(d,
                                 "\xFD"
                                 "7zXZ\0",
                                 6) == 0) {
        put32(d + 8, crc_of(d + 6, 2));
    } else if (n >= 20 && memcmp(d, "Rar!\x1A\x07\x00", 7) == 0) {
        size_t hs = (size_t)(d[12] | d[13] << 8);
        if (hs >= 13 && n - 7 >= hs) {
            uint32_t c = crc_of(d + 9, hs - 2);
            d[7] = (uint8_t)c;
            d[8] = (uint8_t)(c >> 8);
        }
    } else if (n >= 20 && memcmp(d, "Rar!\x1A\x07\x01\x00", 8) == 0) {
        size_t k = 0, hs = 0;
        while (k < 3 && 12 + k < n) {
            hs |= (size_t)(d[12 + k] & 0x7F) << (7 * k);
            if ((d[12 + k++] & 0x80) == 0)
                break;
        }
        if (hs <= n - 12 - k)
            put32(d + 8, crc_of(d + 12, k + hs));
    } else if (n >= 8 && d[0] == 0x60 && d[1] == 0xEA) {
        size_t hs = (size_t)(d[2] | d[3] << 8);
        if (hs <= 2600 && n - 8 >= hs)
            put32(d + 4 + hs, crc_of(d + 4, hs));
    } else if (n >= 26 && d[2] == '-' && d[3] == 'l' && d[20] <= 1) {
        size_t hs = (size_t)d[0] + 2;
        uint8_t sum = 0;
        for (size_t i = 2; i < hs && i < n; i++)
            sum = (uint8_t)(sum + d[i]);
        d[1] = sum;
    } else if (n >= 512 && d[0] != 0) {
        unsigned sum = 0;
        for (size_t i = 0; i < 512; i++)
            sum += (i >= 148 && i < 156) ? ' ' : d[i];
        for (int i = 6; i >= 0; i--) {
            d[148 + i] = (uint8_t)('0' + (sum & 7));
            sum >>= 3;
        }
        d[155] = ' ';
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exactly-sized heap copies, so reading past the input is caught. */
    uint8_t *copy = calloc(1, size ? size : 1);
    if (copy == NULL)
        return 0;
    if (size)
        memcpy(copy, data, size);
    run(copy, size);
    fix_checksums(copy, size);
    run(copy, size);
    free(copy);
    return 0;
}
