/*
 * unpack.c - what a buffer is (container type detection by content) and the unpacking
 * dispatcher: the configuration switches and the size and depth limits, then the unpacker.
 *
 * Detection never looks at a name. Every type is recognised by its magic bytes and then by
 * structure that random bytes or text cannot fake by accident: a header checksum or CRC where the
 * format has one (TAR, XZ, 7z, RAR, ARJ, LHA), fields that must agree with each other where it
 * does not (ISO 9660's both-endian numbers, CPIO's digit fields and NUL-terminated name, CAB's
 * reserved zeros and version, a ZIP's end record pointing back at its directory). A text file that
 * merely starts with "PK", "7z" or "Rar!" is not a container. The checks cost a few dozen bytes
 * for most types; the ZIP end record search reads at most the last 64 KiB backwards with memrchr.
 *
 * Self-extractors: a ZIP is found through its end record whatever precedes it. A buffer that is an
 * executable (MZ or ELF) is also searched, over its first SFX_WINDOW bytes, for an embedded 7z,
 * RAR, CAB, ARJ or LHA archive, which must pass the same checks (LHA's, being the weakest, must
 * also be followed by another valid header or the end marker). The archive then starts there.
 * The checksums that search computes are bounded in total (SFX_CRC_BUDGET).
 */
#include "unpack.h"
#include "unpack_archive.h"
#include "unpack_office.h"

#include <string.h>
#include <zlib.h>

/* How far into an executable an embedded archive is looked for. */
#define SFX_WINDOW (1024u * 1024u)

/*
 * Bytes of header checksums the search may compute in all, so that a stub stuffed with decoy
 * signatures (each claiming a 64 KiB header) costs a millisecond, not seconds.
 */
#define SFX_CRC_BUDGET (1024u * 1024u)

/* The longest name a CPIO header may announce and still be taken for one. */
#define CPIO_NAME_MAX 4096u

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t rd16be(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t rd64be(const uint8_t *p)
{
    return (uint64_t)rd32be(p) << 32 | rd32be(p + 4);
}

/* CRC-32 (the ZIP/gzip polynomial) of p[0..n). */
static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt k = n > 1u << 30 ? 1u << 30 : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

uint16_t engine__crc16_arc(uint16_t c, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (uint16_t)((c & 1u) ? (c >> 1) ^ 0xA001u : c >> 1);
    }
    return c;
}

/*
 * Takes cost bytes of checksum work from *budget (NULL: unlimited). Returns false, and empties
 * the budget, when there is not enough left. Can't fail.
 */
static bool spend(size_t *budget, size_t cost)
{
    if (budget == NULL)
        return true;
    if (*budget < cost) {
        *budget = 0;
        return false;
    }
    *budget -= cost;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Compression layers.                                                                         */

/* gzip: 1F 8B, method deflate, reserved flag bits clear, and room for the fixed header. */
static bool is_gzip(const uint8_t *p, size_t n)
{
    return n >= 10 && p[0] == 0x1F && p[1] == 0x8B && p[2] == 8 && (p[3] & 0xE0u) == 0;
}

/*
 * bzip2: "BZh", a block size digit, then the end-of-stream magic, or the block magic (which is
 * printable: "1AY&SY") followed by the block CRC, a clear "randomised" bit and a 24-bit origin
 * pointer inside the block, which text cannot give.
 */
static bool is_bzip2(const uint8_t *p, size_t n)
{
    static const uint8_t block[6] = {0x31, 0x41, 0x59, 0x26, 0x53, 0x59};
    static const uint8_t eos[6] = {0x17, 0x72, 0x45, 0x38, 0x50, 0x90};
    if (n < 10 || memcmp(p, "BZh", 3) != 0 || p[3] < '1' || p[3] > '9')
        return false;
    if (memcmp(p + 4, eos, 6) == 0)
        return true;
    if (n < 18 || memcmp(p + 4, block, 6) != 0 || (p[14] & 0x80u) != 0)
        return false;
    uint32_t orig = (uint32_t)(p[14] & 0x7Fu) << 17 | (uint32_t)p[15] << 9 | (uint32_t)p[16] << 1 |
                    (uint32_t)(p[17] >> 7);
    return orig < (uint32_t)(p[3] - '0') * 100000u;
}

/* xz: the stream header magic, flags with only a check type, and their CRC-32. */
static bool is_xz(const uint8_t *p, size_t n)
{
    static const uint8_t magic[6] = {0xFD, '7', 'z', 'X', 'Z', 0x00};
    return n >= 12 && memcmp(p, magic, 6) == 0 && p[6] == 0 && (p[7] & 0xF0u) == 0 &&
           crc32_of(p + 6, 2) == rd32(p + 8);
}

/* ------------------------------------------------------------------------------------------ */
/* Archives with a magic at their start.                                                       */

/* 7z: signature, major version 0, and the CRC-32 of the start header. */
static bool is_7z(const uint8_t *p, size_t n, size_t *budget)
{
    static const uint8_t sig[6] = {'7', 'z', 0xBC, 0xAF, 0x27, 0x1C};
    return n >= 32 && memcmp(p, sig, 6) == 0 && p[6] == 0 && spend(budget, 20) &&
           crc32_of(p + 12, 20) == rd32(p + 8);
}

/* Reads a RAR5 variable-length integer (at most 10 bytes). Returns its length, 0 if bad. */
static size_t rar5_vint(const uint8_t *p, size_t n, uint64_t *v)
{
    *v = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        *v |= (uint64_t)(p[i] & 0x7Fu) << (7 * i);
        if ((p[i] & 0x80u) == 0)
            return i + 1;
    }
    return 0;
}

/*
 * RAR 1.5-4.x: the marker block, then the main archive header (type 0x73) whose 16-bit CRC
 * checks. RAR 5: its marker, then a main (or archive encryption) header whose CRC-32 checks.
 */
static bool is_rar(const uint8_t *p, size_t n, size_t *budget)
{
    if (n < 20 || memcmp(p, "Rar!\x1A\x07", 6) != 0)
        return false;
    if (p[6] == 0x00) {
        size_t hs = rd16(p + 12);
        if (p[9] != 0x73 || hs < 13 || n - 7 < hs || !spend(budget, hs))
            return false;
        return (crc32_of(p + 9, hs - 2) & 0xFFFFu) == rd16(p + 7);
    }
    if (p[6] != 0x01 || p[7] != 0x00)
        return false;
    uint64_t hsize, type;
    size_t k = rar5_vint(p + 12, n - 12, &hsize);
    if (k == 0 || hsize == 0 || hsize > n - 12 - k)
        return false;
    if (rar5_vint(p + 12 + k, (size_t)hsize, &type) == 0 || (type != 1 && type != 4) ||
        !spend(budget, k + (size_t)hsize))
        return false;
    return crc32_of(p + 12, k + (size_t)hsize) == rd32(p + 8);
}

/*
 * CAB: "MSCF", the reserved fields zero, version 1.3, at least one folder and one file, and a
 * file list inside the cabinet. `whole`: the cabinet must also fit in the buffer (for one found
 * inside an executable).
 */
static bool is_cab(const uint8_t *p, size_t n, bool whole)
{
    if (n < 36 || memcmp(p, "MSCF", 4) != 0 || rd32(p + 4) != 0 || rd32(p + 12) != 0 ||
        rd32(p + 20) != 0 || p[24] != 3 || p[25] != 1)
        return false;
    uint32_t cb = rd32(p + 8), coff = rd32(p + 16);
    if (cb < 36 || coff < 36 || coff >= cb || rd16(p + 26) == 0 || rd16(p + 28) == 0)
        return false;
    return !whole || cb <= n;
}

/* XAR: "xar!", a header of at least 28 bytes, version 1, a table of contents, a known checksum. */
static bool is_xar(const uint8_t *p, size_t n)
{
    if (n < 28 || memcmp(p, "xar!", 4) != 0)
        return false;
    uint16_t hs = rd16be(p + 4);
    uint64_t toc = rd64be(p + 8);
    return hs >= 28 && hs <= n && rd16be(p + 6) == 1 && toc > 0 && toc <= n - hs &&
           rd32be(p + 24) <= 4;
}

/* ar: the global header, then nothing (an empty archive) or a member header ending in "`\n". */
static bool is_ar(const uint8_t *p, size_t n)
{
    if (n < 8 || memcmp(p, "!<arch>\n", 8) != 0)
        return false;
    return n == 8 || (n >= 68 && p[66] == '`' && p[67] == '\n');
}

/*
 * ARJ: a main header (id 60 EA, a size of 30 to 2600, file type 2, a name and comment that end in
 * NUL) whose CRC-32 checks: what engine__arj_open() accepts.
 */
static bool is_arj(const uint8_t *p, size_t n, size_t *budget)
{
    if (n < 4 || p[0] != 0x60 || p[1] != 0xEA)
        return false;
    size_t hs = rd16(p + 2);
    if (hs < 30 || hs > 2600 || n - 4 < hs + 4)
        return false;
    const uint8_t *b = p + 4;
    if (b[0] < 30 || b[0] > hs || b[6] != 2 || !spend(budget, hs) ||
        crc32_of(b, hs) != rd32(b + hs))
        return false;
    const uint8_t *nul = memchr(b + b[0], 0, hs - b[0]);
    return nul != NULL && memchr(nul + 1, 0, (size_t)(b + hs - (nul + 1))) != NULL;
}

/*
 * OLE2 (Compound File Binary): signature, byte order mark, version 3 with 512-byte sectors or 4
 * with 4096-byte ones. An MSI database, patch or transform is one whose root storage has the
 * installer's class id. Returns ENGINE__CT_NONE, _OLE2 or _MSI.
 */
static engine__ctype ole2_type(const uint8_t *p, size_t n)
{
    static const uint8_t sig[8] = {0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1};
    static const uint8_t msi_tail[12] = {0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46};
    if (n < 512 || memcmp(p, sig, 8) != 0 || rd16(p + 28) != 0xFFFEu)
        return ENGINE__CT_NONE;
    uint16_t major = rd16(p + 26), shift = rd16(p + 30);
    if (!((major == 3 && shift == 9) || (major == 4 && shift == 12)))
        return ENGINE__CT_NONE;
    uint64_t dir = ((uint64_t)rd32(p + 48) + 1) << shift;
    if (dir < n && n - dir >= 128) {
        const uint8_t *root = p + dir;
        uint32_t clsid = rd32(root + 80);
        if (root[66] == 5 &&
            (clsid == 0x000C1082u || clsid == 0x000C1084u || clsid == 0x000C1086u) &&
            memcmp(root + 84, msi_tail, sizeof(msi_tail)) == 0)
            return ENGINE__CT_MSI;
    }
    return ENGINE__CT_OLE2;
}

/* An LHA method id at m: -lh0- to -lh7-, -lhd- (a directory), -lzs-, -lz4-, -lz5-. */
static bool lha_method_ok(const uint8_t *m, unsigned level)
{
    if (m[0] != '-' || m[1] != 'l' || m[4] != '-')
        return false;
    if (m[2] == 'h')
        return (m[3] >= '0' && m[3] <= '7') || m[3] == 'd';
    return m[2] == 'z' && level == 0 && (m[3] == 's' || m[3] == '4' || m[3] == '5');
}

/*
 * The size of the valid LHA header at p (levels 0 to 3), or 0. Levels 0 and 1 must match their
 * header checksum, level 2 its header CRC-16 (kept in an extended header); level 3, rare and
 * without a cheap check, needs its fixed fields. *next receives the offset of the next header.
 */
static size_t lha_header(const uint8_t *p, size_t n, size_t *next, size_t *budget)
{
    if (n < 26 || p[0] == 0 || !lha_method_ok(p + 2, p[20]))
        return 0;
    unsigned level = p[20];
    uint32_t comp = rd32(p + 7);
    size_t hs;
    if (level <= 1) {
        hs = (size_t)p[0] + 2;
        size_t fixed = level == 0 ? 24 : 27;
        if ((level == 1 && p[19] != 0x20) || hs > n || hs < fixed + p[21] || !spend(budget, hs))
            return 0;
        uint8_t sum = 0;
        for (size_t i = 2; i < hs; i++)
            sum = (uint8_t)(sum + p[i]);
        if (sum != p[1])
            return 0;
    } else if (level == 2) {
        hs = rd16(p);
        if (p[19] != 0x20 || hs < 26 || hs > n || !spend(budget, hs))
            return 0;
        size_t q = 24, crc_at = 0;
        for (;;) {
            if (hs - q < 2)
                return 0;
            size_t es = rd16(p + q);
            if (es == 0)
                break;
            if (es < 3 || hs - q < es)
                return 0;
            if (p[q + 2] == 0x00 && es >= 5)
                crc_at = q + 3;
            q += es;
        }
        if (crc_at == 0)
            return 0;
        static const uint8_t zero[2] = {0, 0};
        uint16_t c = engine__crc16_arc(0, p, crc_at);
        c = engine__crc16_arc(c, zero, 2);
        c = engine__crc16_arc(c, p + crc_at + 2, hs - crc_at - 2);
        if (c != rd16(p + crc_at))
            return 0;
    } else if (level == 3) {
        if (n < 32 || rd16(p) != 4 || p[19] != 0x20)
            return 0;
        hs = rd32(p + 24);
        if (hs < 32 || hs > n)
            return 0;
    } else {
        return 0;
    }
    *next = hs + comp < hs ? SIZE_MAX : hs + comp;
    return hs;
}

/*
 * An LHA archive at p. `strict` (for one found inside an executable): the member's data must also
 * be followed by the end of the buffer, the end marker (a 0 byte) or another valid header.
 */
static bool is_lha(const uint8_t *p, size_t n, bool strict, size_t *budget)
{
    size_t next;
    if (lha_header(p, n, &next, budget) == 0)
        return false;
    if (!strict)
        return true;
    if (next > n)
        return false;
    size_t dummy;
    return next == n || p[next] == 0 || lha_header(p + next, n - next, &dummy, budget) != 0;
}

/* True when every byte of p[0..n) is a digit of the base (8 or 16). */
static bool all_digits(const uint8_t *p, size_t n, unsigned base, uint64_t *value)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d;
        if (p[i] >= '0' && p[i] <= '7')
            d = p[i] - '0';
        else if (base == 16 && (p[i] == '8' || p[i] == '9'))
            d = p[i] - '0';
        else if (base == 16 && p[i] >= 'a' && p[i] <= 'f')
            d = p[i] - 'a' + 10u;
        else if (base == 16 && p[i] >= 'A' && p[i] <= 'F')
            d = p[i] - 'A' + 10u;
        else
            return false;
        v = v * base + d;
    }
    *value = v;
    return true;
}

/* A CPIO mode's file type is one a file system has, or the mode is 0 (the trailer's). */
static bool cpio_mode_ok(uint64_t mode)
{
    switch (mode & 0170000u) {
    case 0100000: /* regular */
    case 0040000: /* directory */
    case 0120000: /* symbolic link */
    case 0020000: /* character device */
    case 0060000: /* block device */
    case 0010000: /* FIFO */
    case 0140000: /* socket */
        return true;
    default:
        return mode == 0;
    }
}

/* A CPIO name of namesize bytes (NUL included) at p: inside the buffer, non-empty, NUL-ended. */
static bool cpio_name_ok(const uint8_t *p, size_t n, size_t at, uint64_t namesize)
{
    if (namesize < 2 || namesize > CPIO_NAME_MAX || at > n || n - at < namesize)
        return false;
    return p[at + namesize - 1] == 0 && memchr(p + at, 0, (size_t)namesize - 1) == NULL;
}

/*
 * CPIO, every variant: "070701"/"070702" (new ASCII, 13 hex fields), "070707" (old ASCII, octal
 * fields), old binary in either byte order. All numeric fields must be digits of their base, the
 * mode a real file type, and the name NUL-terminated exactly where its size says.
 */
static bool is_cpio(const uint8_t *p, size_t n)
{
    uint64_t mode = 0, namesize = 0, v = 0;
    if (n >= 110 && memcmp(p, "07070", 5) == 0 && (p[5] == '1' || p[5] == '2')) {
        if (!all_digits(p + 6, 104, 16, &v))
            return false;
        all_digits(p + 14, 8, 16, &mode);
        all_digits(p + 94, 8, 16, &namesize);
        return cpio_mode_ok(mode) && cpio_name_ok(p, n, 110, namesize);
    }
    if (n >= 76 && memcmp(p, "070707", 6) == 0) {
        if (!all_digits(p + 6, 70, 8, &v))
            return false;
        all_digits(p + 18, 6, 8, &mode);
        all_digits(p + 59, 6, 8, &namesize);
        return cpio_mode_ok(mode) && cpio_name_ok(p, n, 76, namesize);
    }
    if (n >= 26 && ((p[0] == 0xC7 && p[1] == 0x71) || (p[0] == 0x71 && p[1] == 0xC7))) {
        bool le = p[0] == 0xC7;
        mode = le ? rd16(p + 6) : rd16be(p + 6);
        namesize = le ? rd16(p + 20) : rd16be(p + 20);
        return cpio_mode_ok(mode) && cpio_name_ok(p, n, 26, namesize);
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Archives recognised by structure.                                                           */

/*
 * Parses a TAR numeric field: leading spaces, octal digits, then NUL or space to its end (GNU's
 * base-256 form, first byte 0x80 or 0xFF, is accepted as a number too). Returns false if malformed.
 */
static bool tar_number(const uint8_t *f, size_t n, uint64_t *v)
{
    size_t i = 0;
    *v = 0;
    if (f[0] == 0x80 || f[0] == 0xFF)
        return true;
    while (i < n && f[i] == ' ')
        i++;
    size_t digits = 0;
    while (i < n && f[i] >= '0' && f[i] <= '7') {
        *v = (*v << 3) | (uint64_t)(f[i] - '0');
        i++;
        digits++;
    }
    for (; i < n; i++)
        if (f[i] != ' ' && f[i] != 0)
            return false;
    return digits > 0 || f[0] == 0;
}

/*
 * A TAR header block at p (512 bytes): a name, numeric fields that parse, a known type flag, and a
 * header checksum that matches (as unsigned bytes, or signed as some old tars summed). The
 * checksum is what lets a v7 header, which has no magic, be told from random bytes.
 */
static bool is_tar(const uint8_t *p, size_t n)
{
    if (n < 512 || p[0] == 0)
        return false;
    uint64_t stored, v;
    if (!tar_number(p + 148, 8, &stored) || p[148] == 0x80 || p[148] == 0xFF || p[148] == 0)
        return false;
    static const size_t fields[][2] = {{100, 8}, {108, 8}, {116, 8}, {124, 12}, {136, 12}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (!tar_number(p + fields[i][0], fields[i][1], &v))
            return false;
    uint8_t type = p[156];
    if (type != 0 && !(type >= '0' && type <= '7') && strchr("LKxgXDMNSVA", type) == NULL)
        return false;
    uint64_t usum = 0;
    int64_t ssum = 0;
    for (size_t i = 0; i < 512; i++) {
        uint8_t b = (i >= 148 && i < 156) ? ' ' : p[i];
        usum += b;
        ssum += (int8_t)b;
    }
    return stored == usum || (int64_t)stored == ssum;
}

/*
 * ISO 9660: volume descriptors from sector 16 ("CD001", version 1), among them a primary one whose
 * both-endian numbers agree (volume size, set size, sequence, a 2048-byte block) and whose root
 * directory record has its fixed length.
 */
static bool is_iso(const uint8_t *p, size_t n)
{
    for (size_t s = 16; s < 32; s++) {
        size_t off = s * 2048;
        if (off > n || n - off < 2048)
            return false;
        const uint8_t *d = p + off;
        if (memcmp(d + 1, "CD001", 5) != 0 || d[6] != 1 || d[0] == 255)
            return false;
        if (d[0] != 1)
            continue;
        return rd32(d + 80) == rd32be(d + 84) && rd16(d + 120) == rd16be(d + 122) &&
               rd16(d + 124) == rd16be(d + 126) && rd16(d + 128) == 2048 &&
               rd16be(d + 130) == 2048 && d[156] == 34 && d[881] == 1;
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* ZIP.                                                                                        */

/* A plausible local file header at p: a known method and a name. */
static bool zip_local_ok(const uint8_t *p, size_t n)
{
    if (n < 30 || memcmp(p, "PK\x03\x04", 4) != 0 || (rd16(p + 4) & 0xFFu) > 100 ||
        rd16(p + 26) == 0)
        return false;
    switch (rd16(p + 8)) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
    case 5:
    case 6:
    case 8:
    case 9:
    case 10:
    case 12:
    case 14:
    case 18:
    case 19:
    case 93:
    case 95:
    case 96:
    case 97:
    case 98:
    case 99:
        return true;
    default:
        return false;
    }
}

/* True when one of the first central directory entries is "[Content_Types].xml". */
static bool zip_is_ooxml(const uint8_t *p, const engine__zip_dir *d)
{
    static const char ct[] = "[Content_Types].xml";
    size_t pos = d->cd_start;
    size_t end = d->cd_start + (size_t)d->cd_size;
    for (unsigned i = 0; i < 1024 && i < d->entries; i++) {
        if (pos > end || end - pos < 46 || memcmp(p + pos, "PK\x01\x02", 4) != 0)
            return false;
        size_t nl = rd16(p + pos + 28), xl = rd16(p + pos + 30), cl = rd16(p + pos + 32);
        if (end - pos - 46 < nl)
            return false;
        if (nl == sizeof(ct) - 1 && memcmp(p + pos + 46, ct, nl) == 0)
            return true;
        pos += 46 + nl + xl + cl;
    }
    return false;
}

/*
 * A ZIP: a local header at the start (or the empty archive's end record, or a spanning marker
 * before a local header), then the end record is looked for so that bytes after the archive are
 * cut off; or, whatever precedes it, an end record that exactly ends the buffer and whose directory
 * checks (a self-extractor). Sets *start and *end; returns _ZIP, _OOXML or _NONE.
 */
static engine__ctype zip_type(const uint8_t *p, size_t n, bool at_start, size_t *start, size_t *end)
{
    engine__zip_dir d;
    if (at_start) {
        bool local = zip_local_ok(p, n) ||
                     (n >= 34 && (memcmp(p, "PK\x07\x08", 4) == 0 || memcmp(p, "PK00", 4) == 0) &&
                      zip_local_ok(p + 4, n - 4));
        bool empty = n >= 22 && memcmp(p, "PK\x05\x06", 4) == 0 && 22u + rd16(p + 20) == n &&
                     rd16(p + 10) == 0;
        if (!local && !empty)
            return ENGINE__CT_NONE;
        if (engine__zip_find_dir(p, n, false, &d) && d.base == 0) {
            *start = 0;
            *end = d.end;
            return zip_is_ooxml(p, &d) ? ENGINE__CT_OOXML : ENGINE__CT_ZIP;
        }
        *start = 0;
        *end = n;
        static const char ct[] = "[Content_Types].xml";
        if (local && rd16(p + 26) == sizeof(ct) - 1 && n - 30 >= sizeof(ct) - 1 &&
            memcmp(p + 30, ct, sizeof(ct) - 1) == 0)
            return ENGINE__CT_OOXML;
        return ENGINE__CT_ZIP;
    }
    if (!engine__zip_find_dir(p, n, true, &d))
        return ENGINE__CT_NONE;
    *start = d.base;
    *end = d.end;
    return zip_is_ooxml(p, &d) ? ENGINE__CT_OOXML : ENGINE__CT_ZIP;
}

/* ------------------------------------------------------------------------------------------ */
/* Detection.                                                                                  */

/* A type found at p[0] by its magic and structure, or _NONE. */
static engine__ctype type_at_start(const uint8_t *p, size_t n, size_t *start, size_t *end)
{
    *start = 0;
    *end = n;
    if (n < 4)
        return ENGINE__CT_NONE;
    engine__ctype t = ENGINE__CT_NONE;
    switch (p[0]) {
    case 0x1F:
        t = is_gzip(p, n) ? ENGINE__CT_GZIP : t;
        break;
    case 'B':
        t = is_bzip2(p, n) ? ENGINE__CT_BZIP2 : t;
        break;
    case 0xFD:
        t = is_xz(p, n) ? ENGINE__CT_XZ : t;
        break;
    case '7':
        t = is_7z(p, n, NULL) ? ENGINE__CT_7Z : t;
        break;
    case 'R':
        t = is_rar(p, n, NULL) ? ENGINE__CT_RAR : t;
        break;
    case 'P':
        t = zip_type(p, n, true, start, end);
        break;
    case 'M':
        t = is_cab(p, n, false) ? ENGINE__CT_CAB : t;
        break;
    case 'x':
        t = is_xar(p, n) ? ENGINE__CT_XAR : t;
        break;
    case '!':
        t = is_ar(p, n) ? ENGINE__CT_AR : t;
        break;
    case 0x60:
        t = is_arj(p, n, NULL) ? ENGINE__CT_ARJ : t;
        break;
    case 0xD0:
        t = ole2_type(p, n);
        break;
    default:
        break;
    }
    /* An LHA header starts with its size, which may be any of the bytes above. */
    if (t != ENGINE__CT_NONE)
        return t;
    *start = 0;
    *end = n;
    if (is_cpio(p, n))
        return ENGINE__CT_CPIO;
    if (n >= 22 && p[2] == '-' && is_lha(p, n, false, NULL))
        return ENGINE__CT_LHA;
    return ENGINE__CT_NONE;
}

/*
 * Looks for an archive embedded in an executable's first SFX_WINDOW bytes. Only types whose
 * header carries a CRC or checksum are looked for, so a stray signature in code or data does not
 * count. Returns the type and sets *start, or _NONE.
 */
static engine__ctype sfx_search(const uint8_t *p, size_t n, size_t *start)
{
    size_t limit = n < SFX_WINDOW ? n : SFX_WINDOW;
    size_t budget = SFX_CRC_BUDGET;
    for (size_t i = 2; i + 4 <= limit && budget > 0; i++) {
        engine__ctype t = ENGINE__CT_NONE;
        size_t at = i;
        switch (p[i]) {
        case '7':
            if (p[i + 1] == 'z' && is_7z(p + i, n - i, &budget))
                t = ENGINE__CT_7Z;
            break;
        case 'R':
            if (p[i + 1] == 'a' && is_rar(p + i, n - i, &budget))
                t = ENGINE__CT_RAR;
            break;
        case 'M':
            if (p[i + 1] == 'S' && is_cab(p + i, n - i, true))
                t = ENGINE__CT_CAB;
            break;
        case 0x60:
            if (p[i + 1] == 0xEA && is_arj(p + i, n - i, &budget))
                t = ENGINE__CT_ARJ;
            break;
        case '-':
            at = i - 2;
            if (p[i + 1] == 'l' && is_lha(p + at, n - at, true, &budget))
                t = ENGINE__CT_LHA;
            break;
        default:
            break;
        }
        if (t != ENGINE__CT_NONE) {
            *start = at;
            return t;
        }
    }
    return ENGINE__CT_NONE;
}

/*
 * The type of p[0..n) and where the container sits in it: [*start, *end). Order matters where
 * two readings could both hold: magics at the start first, then TAR and ISO (whose structure is
 * checked at fixed places), then a ZIP found by its end record alone, then archives inside an
 * executable. Can't fail.
 */
static engine__ctype detect_span(const uint8_t *p, size_t n, size_t *start, size_t *end)
{
    *start = 0;
    *end = n;
    if (p == NULL || n < 4)
        return ENGINE__CT_NONE;
    engine__ctype t = type_at_start(p, n, start, end);
    if (t != ENGINE__CT_NONE)
        return t;
    *start = 0;
    *end = n;
    if (is_tar(p, n))
        return ENGINE__CT_TAR;
    if (is_iso(p, n))
        return ENGINE__CT_ISO;
    t = zip_type(p, n, false, start, end);
    if (t != ENGINE__CT_NONE)
        return t;
    *start = 0;
    *end = n;
    if ((p[0] == 'M' && p[1] == 'Z') || memcmp(p,
                                               "\x7F"
                                               "ELF",
                                               4) == 0) {
        t = sfx_search(p, n, start);
        if (t != ENGINE__CT_NONE)
            return t;
    }
    *start = 0;
    return ENGINE__CT_NONE;
}

engine__ctype engine__detect_type(const uint8_t *p, size_t n)
{
    size_t start, end;
    return detect_span(p, n, &start, &end);
}

const char *engine__ctype_name(engine__ctype t)
{
    switch (t) {
    case ENGINE__CT_ZIP:
        return "zip";
    case ENGINE__CT_OOXML:
        return "ooxml";
    case ENGINE__CT_GZIP:
        return "gzip";
    case ENGINE__CT_BZIP2:
        return "bzip2";
    case ENGINE__CT_XZ:
        return "xz";
    case ENGINE__CT_TAR:
        return "tar";
    case ENGINE__CT_7Z:
        return "7z";
    case ENGINE__CT_RAR:
        return "rar";
    case ENGINE__CT_CAB:
        return "cab";
    case ENGINE__CT_LHA:
        return "lha";
    case ENGINE__CT_ISO:
        return "iso9660";
    case ENGINE__CT_CPIO:
        return "cpio";
    case ENGINE__CT_XAR:
        return "xar";
    case ENGINE__CT_AR:
        return "ar";
    case ENGINE__CT_ARJ:
        return "arj";
    case ENGINE__CT_OLE2:
        return "ole2";
    case ENGINE__CT_MSI:
        return "msi";
    case ENGINE__CT_NONE:
    default:
        return "none";
    }
}

engine__cclass engine__ctype_class(engine__ctype t)
{
    switch (t) {
    case ENGINE__CT_CAB:
    case ENGINE__CT_AR:
    case ENGINE__CT_MSI:
        return ENGINE__CC_PACKAGE;
    case ENGINE__CT_OLE2:
    case ENGINE__CT_OOXML:
        return ENGINE__CC_OFFICE;
    default:
        return ENGINE__CC_ARCHIVE;
    }
}

/* Whether the configuration asks for this class to be unpacked. */
static bool class_enabled(const engine_config *cfg, engine__cclass c)
{
    switch (c) {
    case ENGINE__CC_PACKAGE:
        return cfg->scan_packages;
    case ENGINE__CC_OFFICE:
        return cfg->scan_office;
    case ENGINE__CC_ARCHIVE:
    default:
        return cfg->scan_archives;
    }
}

int engine_global_init(void)
{
    engine__office_global_init();
    return 0;
}

/*
 * The type of data[0..len) when it is a container cfg unpacks, and where it sits: [*start, *end);
 * else ENGINE__CT_NONE. Can't fail.
 */
static engine__ctype enabled_type(const engine_config *cfg, const uint8_t *data, size_t len,
                                  size_t *start, size_t *end)
{
    /*
     * With only scan_office on (the default), the only containers are OLE2 and OOXML (a ZIP
     * starting with a local header): a look at the first four bytes spares full detection for
     * the scripts the broker sees, including those that start with 'P' ("Param(").
     */
    if (data == NULL ||
        (!cfg->scan_archives && !cfg->scan_packages &&
         (!cfg->scan_office || len < 4 ||
          (memcmp(data, "PK\x03\x04", 4) != 0 && memcmp(data, "\xD0\xCF\x11\xE0", 4) != 0))))
        return ENGINE__CT_NONE;
    engine__ctype t = detect_span(data, len, start, end);
    return t != ENGINE__CT_NONE && class_enabled(cfg, engine__ctype_class(t)) ? t : ENGINE__CT_NONE;
}

bool engine_is_container(const engine_config *cfg, const void *data, size_t len)
{
    size_t start, end;
    return cfg != NULL && enabled_type(cfg, data, len, &start, &end) != ENGINE__CT_NONE;
}

int engine__unpack(engine__unpack_host *h, const uint8_t *data, size_t len)
{
    if (h == NULL || h->cfg == NULL)
        return 1;
    size_t start, end;
    engine__ctype t = enabled_type(h->cfg, data, len, &start, &end);
    if (t == ENGINE__CT_NONE)
        return 1;
    if (len > h->cfg->max_compound_size) {
        h->note(h, "Limits.Exceeded.MaxCompoundSize", false);
        return 1;
    }
    if (h->depth >= h->cfg->max_recursion) {
        h->note(h, "Limits.Exceeded.MaxRecursion", false);
        return 1;
    }
    if (t == ENGINE__CT_OLE2 || t == ENGINE__CT_MSI)
        return engine__unpack_ole2(h, t, data + start, end - start);
    return engine__unpack_container(h, t, data + start, end - start);
}
