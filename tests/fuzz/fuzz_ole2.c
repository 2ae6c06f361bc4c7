/*
 * fuzz_ole2.c - libFuzzer target for the OLE2 unpacker (engine/src/unpack_office.c, and through
 * it libgsf's compound file reader, the VBA, Word, Excel and PowerPoint parsers and ovba.c),
 * driven through a fake host as the scanner drives it: every child is checked (a name, bytes
 * readable end to end) and unpacked in turn one level deeper. The Ole10Native, Word text and
 * Excel (FILEPASS, strings) parsers are also run on the input directly, so mutations reach them
 * without a valid compound file around them.
 *
 * Inputs that do not start with the compound file signature get it (and a plausible header
 * field set) written over their first bytes, so most mutations reach libgsf's tables.
 *
 * Limits are small so that a bomb or a deep chain costs one bounded unit: 1 MiB of output per
 * input, 3 levels, 64 streams per document, a "clock" of 20,000 checks.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iengine/include \
 *            -Iengine/src $(pkg-config --cflags libgsf-1 libhs) engine/src/[a-z]*.c
 * tests/fuzz/fuzz_ole2.c \
 *            $(pkg-config --libs libgsf-1 libhs libarchive liblzma libcrypto zlib) -lbz2 -lm
 * -lpthread \ -o /tmp/fuzz_ole2
 * Run:   cp -r tests/fuzz/corpus/ole2 /tmp/ole2_corpus && \
 *        /tmp/fuzz_ole2 -max_len=65536 -runs=1000000 /tmp/ole2_corpus
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "unpack.h"
#include "unpack_office.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

typedef struct fuzz_host {
    engine_config cfg;
    uint64_t charged;
    unsigned clock;
    bool in_stream;
    unsigned opens, closes;
    volatile uint8_t sink;
} fuzz_host;

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
    fuzz_host *f = h->opaque;
    check(name != NULL && !f->in_stream);
    f->in_stream = true;
    f->opens++;
    return false;
}

static bool fz_stream_write(engine__unpack_host *h, const uint8_t *data, size_t len)
{
    fuzz_host *f = h->opaque;
    check(f->in_stream);
    touch(f, data, len);
    return false;
}

static bool fz_stream_close(engine__unpack_host *h)
{
    fuzz_host *f = h->opaque;
    check(f->in_stream);
    f->in_stream = false;
    f->closes++;
    return false;
}

static bool fz_charge(engine__unpack_host *h, uint64_t bytes)
{
    fuzz_host *f = h->opaque;
    if (f->charged + bytes > f->cfg.max_scan_size)
        return false;
    f->charged += bytes;
    return true;
}

static void fz_note(engine__unpack_host *h, const char *reason, bool error)
{
    (void)h;
    (void)error;
    check(reason != NULL && reason[0] != '\0');
}

static bool fz_out_of_time(engine__unpack_host *h)
{
    fuzz_host *f = h->opaque;
    return ++f->clock > 20000;
}

static engine__unpack_host host_at(fuzz_host *f, unsigned depth)
{
    engine__unpack_host h = {.cfg = &f->cfg,
                             .depth = depth,
                             .scan_child = fz_scan_child,
                             .stream_open = fz_stream_open,
                             .stream_write = fz_stream_write,
                             .stream_close = fz_stream_close,
                             .charge = fz_charge,
                             .note = fz_note,
                             .out_of_time = fz_out_of_time,
                             .opaque = f};
    return h;
}

static bool fz_scan_child(engine__unpack_host *h, const uint8_t *data, size_t len, const char *name)
{
    fuzz_host *f = h->opaque;
    check(name != NULL && !f->in_stream && strlen(name) < 4096);
    touch(f, data, len);
    engine__unpack_host child = host_at(f, h->depth + 1);
    int rc = engine__unpack(&child, data, len);
    check(rc == 0 || rc == 1 || rc == ENGINE_ENOMEM);
    return false;
}

static void parsers(const uint8_t *p, size_t n)
{
    engine__native nat;
    if (engine__ole10native_parse(p, n, &nat) == 0)
        check(nat.data >= p && nat.data + nat.len <= p + n && nat.name[0] != '\0');
    uint8_t out[4096];
    size_t half = n / 2;
    check(engine__word_text(p, half, p + half, n - half, out, sizeof(out)) <= sizeof(out));
    check(engine__word_text(p, n, p, n, out, 7) <= 7);
    (void)engine__excel_encrypted(p, n);
    check(engine__excel_text(p, n, out, sizeof(out)) <= sizeof(out));
    check(engine__excel_text(p, n, out, 7) <= 7);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t sig[8] = {0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1};
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    if (size)
        memcpy(copy, data, size);
    parsers(copy, size);
    if (size >= 512 && memcmp(copy, sig, 8) != 0) {
        memcpy(copy, sig, 8);
        copy[26] = 3; /* version 3, 512-byte sectors, little-endian */
        copy[27] = 0;
        copy[28] = 0xFE;
        copy[29] = 0xFF;
        copy[30] = 9;
        copy[31] = 0;
    }
    fuzz_host f;
    memset(&f, 0, sizeof(f));
    engine_config_init(&f.cfg);
    f.cfg.scan_packages = true;
    f.cfg.max_scan_size = 1u << 20;
    f.cfg.max_recursion = 3;
    f.cfg.max_files = 64;
    engine__unpack_host h = host_at(&f, 0);
    int rc = engine__unpack(&h, copy, size);
    check(rc == 0 || rc == 1 || rc == ENGINE_ENOMEM);
    check(!f.in_stream && f.opens == f.closes);
    check(f.charged <= f.cfg.max_scan_size);
    free(copy);
    return 0;
}
