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

/* Output bound per input: a chunk of 3 input bytes may yield 4096. */
#define OUT_CAP (1u << 20)

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
    uint8_t *in = malloc(size ? size : 1);
    uint8_t *full = malloc(OUT_CAP);
    uint8_t *part = malloc(4099);
    if (in == NULL || full == NULL || part == NULL)
        goto out;
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
out:
    free(in);
    free(full);
    free(part);
    return 0;
}
