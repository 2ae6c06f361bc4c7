/*
 * fuzz_ovba.c - libFuzzer target for engine/src/ovba.c: [MS-OVBA] decompression into outputs of
 * several capacities (each result must be a prefix of the unbounded one), and the dir stream's
 * module list read from both the decompressed output and the raw input.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -Iengine/src engine/src/ovba.c \
 *            tests/fuzz/fuzz_ovba.c -o /tmp/fuzz_ovba
 * Run:   cp -r tests/fuzz/corpus/ovba /tmp/ovba_corpus && /tmp/fuzz_ovba -runs=1000000
 * /tmp/ovba_corpus
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ovba.h"

/* Output bound per input (16 chunks' worth): enough for every check, cheap per execution. */
#define OUT_CAP (64u * 1024u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fails loudly (a crash the fuzzer reports) when the decompressor breaks a promise of ovba.h. */
static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

static void modules(const uint8_t *d, size_t n)
{
    engine__ovba_module mods[8];
    int k = engine__ovba_dir_modules(d, n, mods, 8);
    check(k >= -1 && k <= 8);
    for (int i = 0; i < k; i++)
        check(memchr(mods[i].stream, 0, sizeof(mods[i].stream)) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t full[OUT_CAP], part[4099];
    uint8_t *in = malloc(size ? size : 1);
    if (in == NULL)
        return 0;
    if (size)
        memcpy(in, data, size);
    size_t n = 0;
    int rc = engine__ovba_decompress(in, size, full, OUT_CAP, &n);
    check(rc >= ENGINE__OVBA_ECORRUPT && rc <= ENGINE__OVBA_FULL && n <= OUT_CAP);
    static const size_t caps[] = {0, 1, 7, 4096, 4099};
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        size_t m = 0;
        int r = engine__ovba_decompress(in, size, part, caps[i], &m);
        check(m <= caps[i] && m <= n && memcmp(part, full, m) == 0);
        if (r == ENGINE__OVBA_OK)
            check(m == n);
    }
    modules(full, n);
    modules(in, size);
    free(in);
    return 0;
}
