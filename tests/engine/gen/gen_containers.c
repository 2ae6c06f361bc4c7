/*
 * gen_containers.c - in-memory container writers for the unpack tests (see gen_containers.h).
 *
 * Layouts written from the format notes: ZIP from PKWARE's APPNOTE (local header, central
 * directory, end record); RAR 4 from the RAR 2.9/3.x technote (marker block, archive header 0x73,
 * file header 0x74 with method 0x30 "store", end block 0x7B; header CRC = low 16 bits of the
 * CRC-32 from the type byte on); RAR 5 from its published format description (vint sizes, CRC-32
 * over the size field and header, main header type 1, file header type 2 with a data area,
 * end-of-archive type 5); LHA levels 0 to 2 from the LHa for UNIX header notes (level 0/1 header
 * sum, level 2 CRC-16 in extended header 0x00).
 */
#include "gen_containers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

void gen_buf_free(gen_buf *b)
{
    if (b == NULL)
        return;
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

int gen_put(gen_buf *b, const void *p, size_t n)
{
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (q == NULL)
            return -1;
        b->p = q;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->n, p, n);
    b->n += n;
    return 0;
}

static int put8(gen_buf *b, unsigned v)
{
    uint8_t c = (uint8_t)v;
    return gen_put(b, &c, 1);
}

static int put16(gen_buf *b, unsigned v)
{
    uint8_t c[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    return gen_put(b, c, 2);
}

static int put32(gen_buf *b, uint32_t v)
{
    uint8_t c[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return gen_put(b, c, 4);
}

static void set16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static uint32_t crc_of(const void *p, size_t n)
{
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

/* ------------------------------------------------------------------------------------------ */
/* ZIP.                                                                                        */

int gen_zip_add_raw(gen_zip *z, const char *name, uint16_t method, const void *comp, size_t clen,
                    uint32_t crc, uint32_t usize)
{
    size_t nl = strlen(name);
    uint32_t off = (uint32_t)z->out.n;
    gen_buf *o = &z->out, *c = &z->cd;
    int e = 0;
    e |= put32(o, 0x04034B50u) | put16(o, 20) | put16(o, 0) | put16(o, method) | put16(o, 0) |
         put16(o, 0x21) | put32(o, crc) | put32(o, (uint32_t)clen) | put32(o, usize) |
         put16(o, (unsigned)nl) | put16(o, 0) | gen_put(o, name, nl) | gen_put(o, comp, clen);
    e |= put32(c, 0x02014B50u) | put16(c, 0x031E) | put16(c, 20) | put16(c, 0) | put16(c, method) |
         put16(c, 0) | put16(c, 0x21) | put32(c, crc) | put32(c, (uint32_t)clen) | put32(c, usize) |
         put16(c, (unsigned)nl) | put16(c, 0) | put16(c, 0) | put16(c, 0) | put16(c, 0) |
         put32(c, 0100644u << 16) | put32(c, off) | gen_put(c, name, nl);
    z->count++;
    return e ? -1 : 0;
}

int gen_zip_add(gen_zip *z, const char *name, const void *data, size_t len)
{
    return gen_zip_add_raw(z, name, 0, data, len, crc_of(data, len), (uint32_t)len);
}

void gen_zip_free(gen_zip *z)
{
    gen_buf_free(&z->out);
    gen_buf_free(&z->cd);
    z->count = 0;
}

int gen_zip_finish(gen_zip *z, gen_buf *out)
{
    uint32_t cd_off = (uint32_t)z->out.n;
    unsigned n16 = z->count > 0xFFFF ? 0xFFFF : z->count;
    gen_buf *o = &z->out;
    int e = gen_put(o, z->cd.p, z->cd.n);
    e |= put32(o, 0x06054B50u) | put16(o, 0) | put16(o, 0) | put16(o, n16) | put16(o, n16) |
         put32(o, (uint32_t)z->cd.n) | put32(o, cd_off) | put16(o, 0);
    gen_buf_free(&z->cd);
    if (e) {
        gen_zip_free(z);
        return -1;
    }
    *out = z->out;
    memset(&z->out, 0, sizeof(z->out));
    z->count = 0;
    return 0;
}

int gen_zip_many(unsigned entries, gen_buf *out)
{
    gen_zip z = {0};
    char name[32];
    for (unsigned i = 0; i < entries; i++) {
        snprintf(name, sizeof(name), "f%05u", i);
        if (gen_zip_add(&z, name, "x", 1) != 0) {
            gen_zip_free(&z);
            return -1;
        }
    }
    return gen_zip_finish(&z, out);
}

int gen_deflate_zeros(unsigned mib, gen_buf *raw, uint32_t *crc)
{
    static uint8_t zeros[1u << 20];
    z_stream s;
    memset(&s, 0, sizeof(s));
    if (deflateInit2(&s, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    /* One megabyte of zeros, ended by a full flush: byte-aligned and independent of what came
     * before, so it can be repeated. */
    uint8_t block[16384];
    gen_buf one = {0};
    s.next_in = zeros;
    s.avail_in = sizeof(zeros);
    int e = 0;
    do {
        s.next_out = block;
        s.avail_out = sizeof(block);
        deflate(&s, Z_FULL_FLUSH);
        e |= gen_put(&one, block, sizeof(block) - s.avail_out);
    } while (s.avail_out == 0);
    s.next_in = zeros;
    s.avail_in = 0;
    s.next_out = block;
    s.avail_out = sizeof(block);
    deflate(&s, Z_FINISH);
    size_t fin = sizeof(block) - s.avail_out;
    deflateEnd(&s);
    uLong c1 = crc32(0L, zeros, sizeof(zeros)), c = crc32(0L, Z_NULL, 0);
    for (unsigned i = 0; i < mib && !e; i++) {
        e |= gen_put(raw, one.p, one.n);
        c = crc32_combine(c, c1, (z_off_t)sizeof(zeros));
    }
    e |= gen_put(raw, block, fin);
    gen_buf_free(&one);
    *crc = (uint32_t)c;
    return e ? -1 : 0;
}

int gen_gzip_zeros(unsigned mib, gen_buf *out)
{
    static const uint8_t hdr[10] = {0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 2, 3};
    uint32_t crc;
    int e = gen_put(out, hdr, sizeof(hdr));
    e |= gen_deflate_zeros(mib, out, &crc);
    e |= put32(out, crc) | put32(out, (uint32_t)((uint64_t)mib << 20));
    return e ? -1 : 0;
}

int gen_zip_zeros(const char *name, unsigned mib, gen_buf *out)
{
    gen_buf raw = {0};
    uint32_t crc;
    gen_zip z = {0};
    if (gen_deflate_zeros(mib, &raw, &crc) != 0 ||
        gen_zip_add_raw(&z, name, 8, raw.p, raw.n, crc, (uint32_t)((uint64_t)mib << 20)) != 0) {
        gen_buf_free(&raw);
        gen_zip_free(&z);
        return -1;
    }
    gen_buf_free(&raw);
    return gen_zip_finish(&z, out);
}

int gen_zip_overlap(unsigned entries, unsigned mib, gen_buf *out)
{
    gen_buf raw = {0};
    uint32_t crc;
    gen_zip z = {0};
    char name[32];
    if (gen_deflate_zeros(mib, &raw, &crc) != 0 ||
        gen_zip_add_raw(&z, "kernel", 8, raw.p, raw.n, crc, (uint32_t)((uint64_t)mib << 20)))
        goto fail;
    /* Every further entry: a copy of the first central directory record (pointing at offset
     * 0) under another name. */
    uint8_t first[46];
    memcpy(first, z.cd.p, sizeof(first));
    for (unsigned i = 1; i < entries; i++) {
        snprintf(name, sizeof(name), "copy%05u", i);
        set16(first + 28, (unsigned)strlen(name));
        if (gen_put(&z.cd, first, sizeof(first)) != 0 || gen_put(&z.cd, name, strlen(name)) != 0)
            goto fail;
        z.count++;
    }
    gen_buf_free(&raw);
    return gen_zip_finish(&z, out);
fail:
    gen_buf_free(&raw);
    gen_zip_free(&z);
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* RAR.                                                                                        */

/* Finishes a RAR 4 header written at b->p[at] (CRC over everything after the CRC field). */
static void rar4_crc(gen_buf *b, size_t at)
{
    set16(b->p + at, crc_of(b->p + at + 2, b->n - at - 2) & 0xFFFFu);
}

int gen_rar4_stored(const char *name, const void *data, size_t len, gen_buf *out)
{
    size_t nl = strlen(name);
    int e = gen_put(out, "Rar!\x1A\x07\x00", 7);
    size_t at = out->n;
    e |= put16(out, 0) | put8(out, 0x73) | put16(out, 0) | put16(out, 13) | put16(out, 0) |
         put32(out, 0);
    if (e)
        return -1;
    rar4_crc(out, at);
    at = out->n;
    e |= put16(out, 0) | put8(out, 0x74) | put16(out, 0x8000) | put16(out, (unsigned)(32 + nl)) |
         put32(out, (uint32_t)len) | put32(out, (uint32_t)len) | put8(out, 3) |
         put32(out, crc_of(data, len)) | put32(out, 0x5A2F6000u) | put8(out, 29) | put8(out, 0x30) |
         put16(out, (unsigned)nl) | put32(out, 0100644u) | gen_put(out, name, nl);
    if (e)
        return -1;
    rar4_crc(out, at);
    e |= gen_put(out, data, len);
    at = out->n;
    e |= put16(out, 0) | put8(out, 0x7B) | put16(out, 0x4000) | put16(out, 7);
    if (e)
        return -1;
    rar4_crc(out, at);
    return 0;
}

static int vint(gen_buf *b, uint64_t v)
{
    int e = 0;
    do {
        e |= put8(b, (unsigned)((v & 0x7Fu) | (v > 0x7F ? 0x80u : 0)));
        v >>= 7;
    } while (v != 0);
    return e;
}

/* Writes one RAR 5 header: CRC-32, size, then the given header fields. */
static int rar5_header(gen_buf *out, const gen_buf *fields)
{
    gen_buf h = {0};
    int e = vint(&h, fields->n) | gen_put(&h, fields->p, fields->n);
    if (!e)
        e |= put32(out, crc_of(h.p, h.n)) | gen_put(out, h.p, h.n);
    gen_buf_free(&h);
    return e;
}

int gen_rar5_stored(const char *name, const void *data, size_t len, gen_buf *out)
{
    size_t nl = strlen(name);
    gen_buf f = {0};
    int e = gen_put(out, "Rar!\x1A\x07\x01\x00", 8);
    /* Main archive header: type 1, no flags, no archive flags. */
    e |= vint(&f, 1) | vint(&f, 0) | vint(&f, 0);
    e |= rar5_header(out, &f);
    f.n = 0;
    /* File header: type 2, data area present; data size; file flags: CRC-32 present; unpacked
     * size; attributes; CRC-32; compression info 0 (stored); host OS Unix; name. */
    e |= vint(&f, 2) | vint(&f, 0x02) | vint(&f, len) | vint(&f, 0x04) | vint(&f, len) |
         vint(&f, 0644) | put32(&f, crc_of(data, len)) | vint(&f, 0) | vint(&f, 1) | vint(&f, nl) |
         gen_put(&f, name, nl);
    e |= rar5_header(out, &f) | gen_put(out, data, len);
    f.n = 0;
    /* End of archive: type 5, no flags, not a volume. */
    e |= vint(&f, 5) | vint(&f, 0) | vint(&f, 0);
    e |= rar5_header(out, &f);
    gen_buf_free(&f);
    return e ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* LHA.                                                                                        */

static uint16_t crc16_arc(uint16_t c, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (uint16_t)((c & 1u) ? (c >> 1) ^ 0xA001u : c >> 1);
    }
    return c;
}

int gen_lha_stored(int level, const char *name, const void *data, size_t len, gen_buf *out)
{
    size_t nl = strlen(name);
    uint16_t dcrc = crc16_arc(0, data, len);
    size_t at = out->n;
    int e = 0;
    if (level == 0 || level == 1) {
        size_t hs = (level == 0 ? 24 : 27) + nl;
        e |= put8(out, (unsigned)(hs - 2)) | put8(out, 0) | gen_put(out, "-lh0-", 5) |
             put32(out, (uint32_t)len) | put32(out, (uint32_t)len) | put32(out, 0x5A2F6000u) |
             put8(out, level == 0 ? 0 : 0x20) | put8(out, (unsigned)level) |
             put8(out, (unsigned)nl) | gen_put(out, name, nl) | put16(out, dcrc);
        if (level == 1)
            e |= put8(out, 'U') | put16(out, 0);
        if (e)
            return -1;
        uint8_t sum = 0;
        for (size_t i = 2; i < hs; i++)
            sum = (uint8_t)(sum + out->p[at + i]);
        out->p[at + 1] = sum;
    } else {
        size_t hs = 24 + 5 + (3 + nl) + 2;
        e |= put16(out, (unsigned)hs) | gen_put(out, "-lh0-", 5) | put32(out, (uint32_t)len) |
             put32(out, (uint32_t)len) | put32(out, 1700000000u) | put8(out, 0x20) | put8(out, 2) |
             put16(out, dcrc) | put8(out, 'U');
        e |= put16(out, 5) | put8(out, 0x00) | put16(out, 0); /* header CRC */
        e |= put16(out, (unsigned)(3 + nl)) | put8(out, 0x01) | gen_put(out, name, nl); /* name */
        e |= put16(out, 0);
        if (e)
            return -1;
        set16(out->p + at + 27, crc16_arc(0, out->p + at, hs));
    }
    e |= gen_put(out, data, len) | put8(out, 0);
    return e ? -1 : 0;
}
