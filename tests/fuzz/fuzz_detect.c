/*
 * fuzz_detect.c - libFuzzer target for container type detection alone (engine__detect_type() in
 * engine/src/unpack.c), which runs on every object the engine scans and so must be cheap and
 * safe on any bytes. Much faster per input than fuzz_unpack, so it reaches the structure checks
 * (TAR checksum, CPIO fields, LHA levels, the ZIP end record walk, the self-extractor search)
 * more often.
 *
 * Each input is looked at as it is, behind an executable stub ("MZ" and the bytes after it, for
 * the self-extractor search), and placed at offset 0x8000 (where ISO 9660 descriptors live, which
 * a fuzzer would otherwise have to grow 32 KiB of input to reach).
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Iengine/include -Iengine/src \
 *            $(pkg-config --cflags libgsf-1 liblhasa) engine/src/unpack.c \
 *            engine/src/unpack_archive.c engine/src/unpack_office.c engine/src/ovba.c \
 *            engine/src/text.c engine/src/arj.c engine/src/config.c tests/fuzz/fuzz_detect.c \
 *            $(pkg-config --libs libgsf-1 liblhasa) -larchive -lz -llzma -lbz2 -o /tmp/fuzz_detect
 * Run:   cp -r tests/fuzz/corpus/unpack /tmp/detect_corpus && \
 *        /tmp/fuzz_detect -runs=1000000 /tmp/detect_corpus
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "unpack.h"

#define ISO_AT 0x8000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

/* Detects the type of an exactly-sized heap copy of p[0..n) twice (it must not change). */
static void detect(const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL)
        return;
    if (n)
        memcpy(copy, p, n);
    engine__ctype t = engine__detect_type(copy, n);
    check((unsigned)t <= (unsigned)ENGINE__CT_MSI);
    check(engine__detect_type(copy, n) == t);
    check(engine__ctype_name(t) != NULL);
    engine__cclass c = engine__ctype_class(t);
    check(c == ENGINE__CC_ARCHIVE || c == ENGINE__CC_PACKAGE || c == ENGINE__CC_OFFICE);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    detect(data, size);

    uint8_t *b = calloc(1, ISO_AT + size + 2);
    if (b == NULL)
        return 0;
    b[0] = 'M';
    b[1] = 'Z';
    memcpy(b + 2, data, size);
    detect(b, size + 2);

    memset(b, 0, ISO_AT + 2);
    memcpy(b + ISO_AT, data, size);
    detect(b, ISO_AT + size);
    free(b);
    return 0;
}
