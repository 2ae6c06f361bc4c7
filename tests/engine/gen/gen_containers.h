/*
 * gen_containers.h - builds containers in memory for tests/engine/test_unpack.c and the unpack
 * fuzz corpus where no free Debian tool writes them (RAR 4 and RAR 5, LHA) or where a tool would
 * be slow or cannot write what a test needs (ZIPs with 100,000 entries, overlapping entries,
 * compression bombs). Only stored (uncompressed) members are written, except for the bombs, whose
 * deflate stream is built from one compressed megabyte of zeros repeated.
 *
 * Every function returns 0, or -1 when memory runs out. Buffers are freed with gen_buf_free().
 */
#ifndef GEN_CONTAINERS_H
#define GEN_CONTAINERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct gen_buf {
    uint8_t *p;
    size_t n, cap;
} gen_buf;

void gen_buf_free(gen_buf *b);
int gen_put(gen_buf *b, const void *p, size_t n);

/* A ZIP written entry by entry: local headers now, the central directory at gen_zip_finish(). */
typedef struct gen_zip {
    gen_buf out;
    gen_buf cd;
    uint32_t count;
} gen_zip;

/* Adds a stored entry. */
int gen_zip_add(gen_zip *z, const char *name, const void *data, size_t len);
/* Adds an entry whose compressed bytes are given (method 8 for deflate). */
int gen_zip_add_raw(gen_zip *z, const char *name, uint16_t method, const void *comp, size_t clen,
                    uint32_t crc, uint32_t usize);
/* Writes the central directory and end record into *out (moved from z, which is reset). */
int gen_zip_finish(gen_zip *z, gen_buf *out);
/* Frees a gen_zip that was not finished. */
void gen_zip_free(gen_zip *z);

/* A ZIP of `entries` stored one-byte files named f00000, f00001 ... */
int gen_zip_many(unsigned entries, gen_buf *out);

/*
 * A ZIP bomb of the overlapping kind: one local header whose deflate data is `mib` MiB of zeros,
 * and `entries` central directory entries all pointing at it.
 */
int gen_zip_overlap(unsigned entries, unsigned mib, gen_buf *out);

/* A raw deflate stream of `mib` MiB of zeros, and the CRC-32 of what it inflates to. */
int gen_deflate_zeros(unsigned mib, gen_buf *raw, uint32_t *crc);
/* A gzip member holding `mib` MiB of zeros. */
int gen_gzip_zeros(unsigned mib, gen_buf *out);
/* A ZIP with one deflated entry `name` holding `mib` MiB of zeros (mib < 4096). */
int gen_zip_zeros(const char *name, unsigned mib, gen_buf *out);

/* RAR 4 and RAR 5 archives with one stored member. */
int gen_rar4_stored(const char *name, const void *data, size_t len, gen_buf *out);
int gen_rar5_stored(const char *name, const void *data, size_t len, gen_buf *out);

/* An LHA archive with one stored (-lh0-) member, header level 0, 1 or 2, and the end marker. */
int gen_lha_stored(int level, const char *name, const void *data, size_t len, gen_buf *out);

#endif
