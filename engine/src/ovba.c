/*
 * ovba.c - [MS-OVBA] decompression and the `dir` stream's module list (see ovba.h).
 *
 * The compression (MS-OVBA 2.4.1) is LZ77 in independent chunks of at most 4096 decompressed
 * bytes. A container is the signature byte 0x01 and a run of chunks; each chunk has a 16-bit
 * header: bits 0-11 are the chunk's size minus 3 (header included), bits 12-14 the signature
 * 0b011, bit 15 whether it is compressed. A raw chunk is 4096 literal bytes. A compressed chunk is
 * a run of token sequences: a flag byte, then eight tokens, bit i of the flag saying whether
 * token i is a literal byte (0) or a 16-bit copy token (1). A copy token splits into an offset
 * (high bits) and a length (low bits) where the split depends on how far into the chunk's output
 * the token stands: with d bytes already produced in this chunk, the offset takes
 * max(4, ceil(log2(d))) bits, so early tokens reach back little and copy long, late ones reach
 * back far and copy short. Offset and length are stored minus 1 and minus 3. A copy may overlap
 * its own output (offset 1, length 100 repeats one byte).
 *
 * Bounds: a copy reaching before the chunk's start, or a chunk producing more than 4096 bytes, is
 * corrupt; a header whose size passes the end of the input is taken as far as the input goes and
 * then reported corrupt (the bytes before are kept). Every output byte is checked against cap.
 */
#include "ovba.h"

#include <string.h>

#define CHUNK_OUT 4096u

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The offset width of a copy token d bytes into its chunk's output (d >= 1). Can't fail. */
static unsigned offset_bits(size_t d)
{
    unsigned bits = 4;
    while (bits < 12 && ((size_t)1 << bits) < d)
        bits++;
    return bits;
}

/*
 * Decompresses the token sequences of one compressed chunk c[0..n) to out[*pos..), the chunk's
 * output starting at `start`. Returns OK, FULL or ECORRUPT.
 */
static int chunk_tokens(const uint8_t *c, size_t n, uint8_t *out, size_t cap, size_t start,
                        size_t *pos)
{
    size_t i = 0, o = *pos;
    int rc = ENGINE__OVBA_OK;
    while (i < n) {
        uint8_t flags = c[i++];
        for (int bit = 0; bit < 8 && i < n; bit++) {
            if ((flags & (1u << bit)) == 0) {
                if (o - start >= CHUNK_OUT) {
                    rc = ENGINE__OVBA_ECORRUPT;
                    goto out;
                }
                if (o >= cap) {
                    rc = ENGINE__OVBA_FULL;
                    goto out;
                }
                out[o++] = c[i++];
                continue;
            }
            if (n - i < 2) {
                rc = ENGINE__OVBA_ECORRUPT;
                goto out;
            }
            uint16_t tok = rd16(c + i);
            i += 2;
            size_t d = o - start;
            if (d == 0) {
                rc = ENGINE__OVBA_ECORRUPT;
                goto out;
            }
            unsigned bits = offset_bits(d);
            size_t len = (size_t)(tok & (0xFFFFu >> bits)) + 3;
            size_t off = (size_t)(tok >> (16 - bits)) + 1;
            if (off > d || d + len > CHUNK_OUT) {
                rc = ENGINE__OVBA_ECORRUPT;
                goto out;
            }
            for (size_t k = 0; k < len; k++) {
                if (o >= cap) {
                    rc = ENGINE__OVBA_FULL;
                    goto out;
                }
                out[o] = out[o - off];
                o++;
            }
        }
    }
out:
    *pos = o;
    return rc;
}

int engine__ovba_decompress(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t o = 0;
    *out_len = 0;
    if (n < 1 || in[0] != 0x01)
        return ENGINE__OVBA_EBADSIG;
    size_t i = 1;
    int rc = ENGINE__OVBA_OK;
    while (i < n) {
        if (n - i < 2) {
            rc = ENGINE__OVBA_ECORRUPT;
            break;
        }
        uint16_t hdr = rd16(in + i);
        if (((hdr >> 12) & 0x7u) != 0x3u) {
            rc = ENGINE__OVBA_ECORRUPT;
            break;
        }
        size_t size = (size_t)(hdr & 0x0FFFu) + 3;
        bool cut = size > n - i;
        size_t avail = (cut ? n - i : size) - 2;
        const uint8_t *data = in + i + 2;
        size_t start = o;
        if (hdr & 0x8000u) {
            rc = chunk_tokens(data, avail, out, cap, start, &o);
        } else {
            size_t k = avail < CHUNK_OUT ? avail : CHUNK_OUT;
            if (k > cap - o) {
                k = cap - o;
                rc = ENGINE__OVBA_FULL;
            }
            memcpy(out + o, data, k);
            o += k;
        }
        if (rc != ENGINE__OVBA_OK)
            break;
        if (cut) {
            rc = ENGINE__OVBA_ECORRUPT;
            break;
        }
        i += size;
    }
    *out_len = o;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The dir stream.                                                                             */

/* Record ids of MS-OVBA 2.3.4.2 that matter here. */
#define ID_PROJECTVERSION    0x0009u
#define ID_PROJECTMODULES    0x000Fu
#define ID_MODULESTREAMNAME  0x001Au
#define ID_MODULEOFFSET      0x0031u
#define ID_MODULE_TERMINATOR 0x002Bu
#define ID_DIR_TERMINATOR    0x0010u

int engine__ovba_dir_modules(const uint8_t *d, size_t n, engine__ovba_module *mods, size_t max)
{
    size_t i = 0, count = 0;
    bool in_modules = false, have_name = false;
    engine__ovba_module cur;
    memset(&cur, 0, sizeof(cur));
    while (n - i >= 6) {
        uint16_t id = rd16(d + i);
        size_t size = rd32(d + i + 2);
        /* PROJECTVERSION says 4 but carries 6 bytes (Reserved = 4, then 4 + 2 of version). */
        if (id == ID_PROJECTVERSION)
            size = 6;
        i += 6;
        if (size > n - i)
            return count > 0 ? (int)count : -1;
        const uint8_t *v = d + i;
        i += size;
        if (id == ID_DIR_TERMINATOR)
            return (int)count;
        if (id == ID_PROJECTMODULES) {
            in_modules = true;
            continue;
        }
        if (!in_modules)
            continue;
        if (id == ID_MODULESTREAMNAME) {
            size_t k = size < sizeof(cur.stream) - 1 ? size : sizeof(cur.stream) - 1;
            memcpy(cur.stream, v, k);
            cur.stream[k] = '\0';
            have_name = k > 0 && memchr(cur.stream, 0, k) == NULL;
        } else if (id == ID_MODULEOFFSET && size >= 4) {
            cur.text_offset = rd32(v);
        } else if (id == ID_MODULE_TERMINATOR) {
            if (have_name && count < max)
                mods[count++] = cur;
            memset(&cur, 0, sizeof(cur));
            have_name = false;
        }
    }
    /* The data ended before the terminator. */
    return count > 0 ? (int)count : -1;
}
