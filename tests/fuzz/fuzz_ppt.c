/*
 * fuzz_ppt.c - libFuzzer target for the PowerPoint record walker (engine__ppt_next() in
 * engine/src/unpack_office.c): every record it returns must lie inside the stream, the walk must
 * end, and a compressed object is inflated (bounded) as the unpacker would.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iengine/include \
 *            -Iengine/src $(pkg-config --cflags libgsf-1 libhs) engine/src/[a-z]*.c
 * tests/fuzz/fuzz_ppt.c \
 *            $(pkg-config --libs libgsf-1 libhs libarchive liblzma libcrypto zlib) -lbz2 -lm
 * -lpthread \ -o /tmp/fuzz_ppt Run:   cp -r tests/fuzz/corpus/ppt /tmp/ppt_corpus && /tmp/fuzz_ppt
 * -runs=1000000 /tmp/ppt_corpus
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "unpack_office.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *s = malloc(size ? size : 1);
    uint8_t out[16384];
    if (s == NULL)
        return 0;
    if (size)
        memcpy(s, data, size);
    size_t pos = 0, last = 0;
    engine__ppt_object obj;
    for (unsigned k = 0; k < 100000; k++) {
        int r = engine__ppt_next(s, size, &pos, &obj);
        check(pos <= size);
        if (r == ENGINE__PPT_END || r == ENGINE__PPT_ECORRUPT)
            break;
        check(k == 0 || pos > last);
        last = pos;
        if (r != ENGINE__PPT_OBJECT)
            continue;
        check(obj.data >= s && obj.len <= size && obj.data + obj.len <= s + size);
        check(obj.offset + 8 <= size);
        if (obj.compressed) {
            z_stream z;
            memset(&z, 0, sizeof(z));
            if (inflateInit(&z) != Z_OK)
                break;
            z.next_in = (Bytef *)(uintptr_t)obj.data;
            z.avail_in = (uInt)obj.len;
            z.next_out = out;
            z.avail_out = sizeof(out);
            (void)inflate(&z, Z_NO_FLUSH);
            inflateEnd(&z);
        } else if (obj.len > 0) {
            check(obj.data[0] == s[obj.data - s]);
        }
    }
    free(s);
    return 0;
}
