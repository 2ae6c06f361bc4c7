/*
 * unpack_archive.c - the archive unpackers: libarchive for ZIP/JAR, TAR, 7z, RAR, CAB, LHA, ISO
 * 9660, CPIO, XAR and ar; liblhasa for LHA archives using methods libarchive lacks (ICE's
 * -lh1-); zlib, libbz2 and liblzma for single-stream gzip, bzip2 and xz; the engine's own reader
 * (arj.c) for ARJ; and a ZIP directory check of our own before any ZIP is inflated.
 *
 * Every member goes the same way (the "member sink"): each chunk the reader produces is first
 * charged to the host (max_scan_size), then counted against the ratio cap, then kept. A member is
 * kept in memory up to the member bound, min(max_scan_size, 64 MiB), and handed whole to
 * h->scan_child, so a container inside it is unpacked in turn by the host; a larger member becomes
 * a stream child (raw bytes only): what was kept is written first, then every further chunk.
 * Memory is therefore bounded by the bound per nesting level, and all levels together by
 * max_scan_size, since every kept byte was charged.
 *
 * libarchive is told the format detection found and nothing else, and no filters at all: a
 * container is never read as a different format than the one its bytes proved, and libarchive's
 * external-program filters (lrzip, lzop, grzip ...) can never run. Compression layers are decoded
 * here, each as one unpack step with one child named "gzip", "bzip2" or "xz" (concatenated gzip
 * members, bzip2 streams and xz streams are one child).
 *
 * The ratio cap (max_ratio, checked once the current member has produced RATIO_FLOOR bytes):
 *  - gzip, bzip2, xz: bytes produced / compressed bytes the decoder consumed so far;
 *  - ARJ: the member's bytes / its compressed size from its header;
 *  - LHA read by liblhasa: the member's bytes / the input its decoder consumed so far;
 *  - ZIP, TAR, CPIO, ISO, XAR, ar, LHA (a member's data is its own): the member's bytes / the
 *    input libarchive consumed while producing them (archive_filter_bytes(a, -1), which moves
 *    exactly as the decoder takes bytes; libarchive exposes no compressed size per entry). A TAR
 *    sparse file or an ISO whose files share an extent consumes next to nothing and trips it;
 *  - 7z, RAR, CAB (members of one solid block or folder share compressed bytes, so a member's
 *    own share is unknown): everything the container produced so far / the container's size.
 *
 * ZIP bombs: before libarchive sees a ZIP, its whole central directory is walked here and each
 * entry's local range (local header, name, extra field and compressed data) is collected; when
 * two ranges overlap (entries sharing compressed data, the "better zip bomb") nothing is inflated
 * and Limits.Exceeded.OverlappingEntries is noted. libarchive then reads the ZIP through its
 * central directory (its seekable reader, which returns entries in local header order: directory
 * order in the archives common tools write); a ZIP without a directory (cut short, or
 * written to a pipe), or whose directory libarchive cannot read, is read through its local
 * headers.
 *
 * Parse errors are noted with a static reason "FORMAT: truncated" / "corrupt" / "CRC mismatch" /
 * "unsupported method" / "encrypted member"; members read before the error were already scanned
 * and a member cut by an error is scanned as far as it got. A member-level error (bad CRC,
 * unsupported method, encrypted member) moves on to the next member; an archive-level one stops.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memrchr, strcasestr */
#endif
#include "unpack_archive.h"

#include "arj.h"

#include <archive.h>
#include <archive_entry.h>
#include <bzlib.h>
#include <errno.h>
#include <lhasa.h>
#include <limits.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#define ZLIB_CONST
#include <zlib.h>

/* Size of one read from any decoder. */
#define CHUNK (64u * 1024u)

/* Largest member held whole in memory; the bound is also at most max_scan_size. */
#define MEMBER_BOUND_MAX (64u * 1024u * 1024u)

/* Member buffers from this size on are aligned and advised as huge pages. */
#define HUGE_PAGE (2u * 1024u * 1024u)

/* First allocation for a member; it then doubles up to the bound. */
#define MEMBER_FIRST_CAP (256u * 1024u)

/* A member must have produced this much before the ratio cap applies. */
#define RATIO_FLOOR (1024u * 1024u)

/* Memory liblzma may use for one xz stream (xz -9 needs 65 MiB). */
#define XZ_MEMLIMIT (256u * 1024u * 1024u)

/* Consecutive libarchive header failures tolerated before the archive is given up. */
#define MAX_HEADER_FAILURES 16

/* Internal outcomes: go on, stop walking this container (noted or asked by the host). */
enum { GO = 0, STOP = 1 };

/* Kinds of parse error, each with a static reason per format. */
enum { R_TRUNC, R_CORRUPT, R_CRC, R_METHOD, R_ENCRYPTED, R_COUNT };

#define REASONS(f)                                                                                 \
    {                                                                                              \
        f ": truncated", f ": corrupt", f ": CRC mismatch", f ": unsupported method",              \
            f ": encrypted member"                                                                 \
    }

static const char *const reasons[][R_COUNT] = {
    [ENGINE__CT_NONE] = REASONS("container"), [ENGINE__CT_ZIP] = REASONS("zip"),
    [ENGINE__CT_GZIP] = REASONS("gzip"),      [ENGINE__CT_BZIP2] = REASONS("bzip2"),
    [ENGINE__CT_XZ] = REASONS("xz"),          [ENGINE__CT_TAR] = REASONS("tar"),
    [ENGINE__CT_7Z] = REASONS("7z"),          [ENGINE__CT_RAR] = REASONS("rar"),
    [ENGINE__CT_CAB] = REASONS("cab"),        [ENGINE__CT_LHA] = REASONS("lha"),
    [ENGINE__CT_ISO] = REASONS("iso9660"),    [ENGINE__CT_CPIO] = REASONS("cpio"),
    [ENGINE__CT_XAR] = REASONS("xar"),        [ENGINE__CT_AR] = REASONS("ar"),
    [ENGINE__CT_ARJ] = REASONS("arj"),
};

/* One container being walked, and the member in progress. */
typedef struct walker {
    engine__unpack_host *h;
    engine__ctype type;
    uint64_t len;      /* the container's size */
    uint64_t produced; /* bytes all its members produced so far */
    unsigned taken;    /* members taken (max_files) */
    size_t bound;      /* largest member kept in memory */
    bool solid;        /* ratio over the whole container (7z, RAR, CAB) */
    bool flush;        /* when stopping inside a member: scan what it produced */
    uint8_t *chunk;    /* CHUNK bytes for readers */

    /* The member in progress. */
    const char *name;
    uint8_t *buf;
    size_t blen, bcap;
    bool streaming;      /* a stream child is open */
    uint64_t m_produced; /* bytes of this member */
} walker;

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* The static reason for an error kind of this walker's format. Can't fail. */
static const char *reason(const walker *w, int kind)
{
    size_t t = (size_t)w->type;
    if (t >= sizeof(reasons) / sizeof(reasons[0]) || reasons[t][0] == NULL)
        t = ENGINE__CT_NONE;
    return reasons[t][kind];
}

static void note_error(walker *w, int kind)
{
    w->h->note(w->h, reason(w, kind), true);
}

/* ------------------------------------------------------------------------------------------ */
/* The member sink.                                                                            */

static void member_begin(walker *w, const char *name)
{
    w->name = (name != NULL && name[0] != '\0') ? name : "?";
    w->blen = 0;
    w->streaming = false;
    w->m_produced = 0;
    w->flush = true;
}

/* Gives the member buffer back (to the host when it lent it). Can't fail. */
static void member_free(walker *w)
{
    if (w->h->buffer_done != NULL)
        w->h->buffer_done(w->h, w->buf);
    else
        free(w->buf);
    w->buf = NULL;
    w->bcap = 0;
}

/* Switches the member to a stream child and writes what was kept. Returns GO or STOP. */
static int member_to_stream(walker *w)
{
    engine__unpack_host *h = w->h;
    if (h->stream_open(h, w->name))
        return STOP;
    w->streaming = true;
    bool done = w->blen > 0 && h->stream_write(h, w->buf, w->blen);
    w->blen = 0;
    member_free(w);
    return done ? STOP : GO;
}

/*
 * Grows a member buffer to cap bytes, keeping its first len. Buffers of 2 MiB and more are
 * 2 MiB-aligned and advised as huge pages: a member is written once, front to back, into fresh
 * memory, and on a virtual machine the page faults of 4 KiB pages cost more than the inflate
 * (a 32 MiB gzip member: 8192 faults against 16). Returns NULL when memory ran out (old kept).
 */
static uint8_t *member_alloc(uint8_t *old, size_t len, size_t cap)
{
    if (cap < HUGE_PAGE)
        return realloc(old, cap);
    void *nb = NULL;
    size_t rounded = (cap + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    if (posix_memalign(&nb, HUGE_PAGE, rounded) != 0)
        return NULL;
    madvise(nb, rounded, MADV_HUGEPAGE);
    if (len > 0)
        memcpy(nb, old, len);
    free(old);
    return nb;
}

/*
 * Makes room for n more bytes in the member buffer (n <= bound - blen), doubling it up to the
 * bound. Returns 0, or ENGINE_ENOMEM (the buffer is then unchanged).
 */
static int member_reserve(walker *w, size_t n)
{
    if (n <= w->bcap - w->blen)
        return 0;
    size_t cap = w->bcap ? w->bcap : MEMBER_FIRST_CAP < w->bound ? MEMBER_FIRST_CAP : w->bound;
    while (cap - w->blen < n)
        cap = cap > w->bound / 2 ? w->bound : cap * 2;
    uint8_t *nb = w->h->buffer_grow != NULL ? w->h->buffer_grow(w->h, w->buf, w->blen, cap)
                                            : member_alloc(w->buf, w->blen, cap);
    if (nb == NULL)
        return ENGINE_ENOMEM;
    w->buf = nb;
    w->bcap = cap;
    return 0;
}

/*
 * Keeps p[0..n) of the member (in memory or through the stream); p may be where out_buffer()
 * said to decode. Returns GO, STOP or ENOMEM.
 */
static int member_put(walker *w, const uint8_t *p, size_t n)
{
    if (!w->streaming && n > w->bound - w->blen) {
        int st = member_to_stream(w);
        if (st != GO)
            return st;
    }
    if (w->streaming)
        return w->h->stream_write(w->h, p, n) ? STOP : GO;
    if (p == w->buf + w->blen && n <= w->bcap - w->blen) {
        /* Decoded in place (see out_buffer()). */
        w->blen += n;
        return GO;
    }
    if (member_reserve(w, n) != 0)
        return ENGINE_ENOMEM;
    memcpy(w->buf + w->blen, p, n);
    w->blen += n;
    return GO;
}

/*
 * Where a decoder writes its next CHUNK bytes: straight into the member buffer when the member is
 * held whole and will stay so for another CHUNK (member_put() then only counts them), else the
 * walker's chunk, which member_put() copies. Saves a copy of every byte of a compression layer.
 * Can't fail: when the buffer cannot grow, the chunk is used and member_put() reports it.
 */
static uint8_t *out_buffer(walker *w)
{
    if (w->streaming || w->bound - w->blen < CHUNK || member_reserve(w, CHUNK) != 0)
        return w->chunk;
    return w->buf + w->blen;
}

/*
 * Ends the member: closes its stream child, or (with flush) scans what was kept as a child.
 * Returns GO, or STOP when the host says the request is finished.
 */
static int member_end(walker *w, bool flush)
{
    engine__unpack_host *h = w->h;
    bool done = false;
    if (w->streaming)
        done = h->stream_close(h);
    else if (flush && w->blen > 0)
        done = h->scan_child(h, w->buf, w->blen, w->name);
    w->streaming = false;
    w->blen = 0;
    return done ? STOP : GO;
}

/* True when num / den passes max_ratio (den 0 counts as infinite expansion). */
static bool ratio_over(uint64_t num, uint64_t den, unsigned max_ratio)
{
    return den == 0 || num / den > max_ratio;
}

/*
 * Takes p[0..n) that a decoder just produced for the member: time, charge, ratio (against
 * `compressed`, see the file comment), then keeps it. Returns GO, STOP or ENOMEM; on STOP,
 * w->flush says whether the partial member is still worth scanning.
 */
static int produce(walker *w, const uint8_t *p, size_t n, uint64_t compressed)
{
    engine__unpack_host *h = w->h;
    if (n == 0)
        return GO;
    if (h->out_of_time(h) || !h->charge(h, n)) {
        w->flush = false;
        return STOP;
    }
    w->produced += n;
    w->m_produced += n;
    int st = member_put(w, p, n);
    if (st != GO) {
        w->flush = false;
        return st;
    }
    if (w->m_produced >= RATIO_FLOOR) {
        bool over = w->solid ? ratio_over(w->produced, w->len, h->cfg->max_ratio)
                             : ratio_over(w->m_produced, compressed, h->cfg->max_ratio);
        if (over) {
            h->note(h, "Limits.Exceeded.MaxRatio", false);
            return STOP;
        }
    }
    return GO;
}

/* Counts one more member against max_files. Returns GO, or STOP after noting the limit. */
static int take_member(walker *w)
{
    if (w->taken >= w->h->cfg->max_files) {
        w->h->note(w->h, "Limits.Exceeded.MaxFiles", false);
        return STOP;
    }
    w->taken++;
    return GO;
}

/* ------------------------------------------------------------------------------------------ */
/* ZIP directory.                                                                              */

/*
 * Checks the end record at p[i] (its comment ending at rec_end): the ZIP64 record when a locator
 * precedes it, a directory that ends where the end record (or ZIP64 record) begins, and a first
 * directory entry pointing at a local header. Fills *d. Can't fail.
 */
static bool zip_dir_at(const uint8_t *p, size_t n, size_t i, size_t rec_end, engine__zip_dir *d)
{
    uint64_t entries = rd16(p + i + 10), cd_size = rd32(p + i + 12), cd_off = rd32(p + i + 16);
    size_t cd_end = i;
    if (i >= 20 + 56 && memcmp(p + i - 20, "PK\x06\x07", 4) == 0) {
        size_t loc = i - 20;
        uint64_t z64 = rd64(p + loc + 8);
        size_t rec = SIZE_MAX;
        if (memcmp(p + loc - 56, "PK\x06\x06", 4) == 0 && rd64(p + loc - 56 + 4) == 44)
            rec = loc - 56;
        else if (z64 <= loc - 56 && memcmp(p + z64, "PK\x06\x06", 4) == 0 &&
                 rd64(p + z64 + 4) == loc - z64 - 12)
            rec = (size_t)z64;
        if (rec != SIZE_MAX) {
            entries = rd64(p + rec + 32);
            cd_size = rd64(p + rec + 40);
            cd_off = rd64(p + rec + 48);
            cd_end = rec;
        }
    }
    if (cd_size > cd_end || cd_off > cd_end - cd_size)
        return false;
    size_t cd_start = cd_end - (size_t)cd_size;
    size_t base = cd_start - (size_t)cd_off;
    if (entries == 0) {
        if (cd_size != 0)
            return false;
    } else {
        if (cd_size < 46 || memcmp(p + cd_start, "PK\x01\x02", 4) != 0)
            return false;
        uint32_t lho = rd32(p + cd_start + 42);
        if (lho != 0xFFFFFFFFu && (lho > cd_start - base || cd_start - base - lho < 4 ||
                                   memcmp(p + base + lho, "PK\x03\x04", 4) != 0))
            return false;
    }
    (void)n;
    d->base = base;
    d->end = rec_end;
    d->cd_start = cd_start;
    d->cd_size = cd_size;
    d->entries = entries;
    return true;
}

bool engine__zip_find_dir(const uint8_t *p, size_t n, bool exact_end, engine__zip_dir *d)
{
    if (p == NULL || d == NULL || n < 22)
        return false;
    size_t lo = n - 22 > 65535 ? n - 22 - 65535 : 0;
    size_t hi = n - 22 + 1; /* candidates in [lo, hi) */
    while (hi > lo) {
        /* Looks for the signature's last byte, 6, which text and code seldom hold: a script full
         * of 'P's costs one memrchr, not one candidate per 'P'. */
        const uint8_t *q = memrchr(p + lo + 3, 6, hi - lo);
        if (q == NULL)
            return false;
        size_t i = (size_t)(q - p) - 3;
        hi = i;
        if (p[i] != 'P' || p[i + 1] != 'K' || p[i + 2] != 5)
            continue;
        size_t rec_end = i + 22 + rd16(p + i + 20);
        if (exact_end ? rec_end != n : rec_end > n)
            continue;
        if (zip_dir_at(p, n, i, rec_end, d))
            return true;
    }
    return false;
}

/* One entry's bytes in the archive: [start, end). */
typedef struct zip_range {
    uint64_t start, end;
} zip_range;

static int cmp_range(const void *a, const void *b)
{
    const zip_range *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/*
 * Reads the sizes and local header offset of the central directory entry at c (its extra field
 * holds the ZIP64 values of those that are 0xFFFFFFFF). Can't fail.
 */
static void zip_entry_sizes(const uint8_t *c, uint64_t *csize, uint64_t *lho)
{
    uint64_t usize = rd32(c + 24);
    *csize = rd32(c + 20);
    *lho = rd32(c + 42);
    size_t nl = rd16(c + 28), xl = rd16(c + 30);
    const uint8_t *x = c + 46 + nl, *xe = x + xl;
    while (xe - x >= 4) {
        size_t tag = rd16(x), sz = rd16(x + 2);
        const uint8_t *v = x + 4;
        if ((size_t)(xe - v) < sz)
            break;
        if (tag == 0x0001) {
            const uint8_t *ve = v + sz;
            if (usize == 0xFFFFFFFFu && ve - v >= 8) {
                usize = rd64(v);
                v += 8;
            }
            if (*csize == 0xFFFFFFFFu && ve - v >= 8) {
                *csize = rd64(v);
                v += 8;
            }
            if (*lho == 0xFFFFFFFFu && ve - v >= 8)
                *lho = rd64(v);
            break;
        }
        x = v + sz;
    }
}

/*
 * Walks the whole central directory of the ZIP in p[0..n) and sets *overlap when two entries'
 * local ranges overlap. Entries whose local header is missing are left to libarchive to report.
 * Returns 0 or ENGINE_ENOMEM.
 */
static int zip_check_overlap(const uint8_t *p, size_t n, const engine__zip_dir *d, bool *overlap)
{
    *overlap = false;
    uint64_t count = d->entries;
    if (count > d->cd_size / 46)
        count = d->cd_size / 46;
    if (count < 2)
        return 0;
    zip_range *r = malloc((size_t)count * sizeof(*r));
    if (r == NULL)
        return ENGINE_ENOMEM;
    size_t k = 0, pos = d->cd_start, cd_end = d->cd_start + (size_t)d->cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if (cd_end - pos < 46 || memcmp(p + pos, "PK\x01\x02", 4) != 0)
            break;
        const uint8_t *c = p + pos;
        size_t len = 46u + rd16(c + 28) + rd16(c + 30) + rd16(c + 32);
        if (cd_end - pos < len)
            break;
        uint64_t csize, lho;
        zip_entry_sizes(c, &csize, &lho);
        pos += len;
        if (lho > n - d->base || n - d->base - lho < 30)
            continue;
        const uint8_t *l = p + d->base + lho;
        if (memcmp(l, "PK\x03\x04", 4) != 0)
            continue;
        uint64_t start = d->base + lho;
        uint64_t data = start + 30 + rd16(l + 26) + rd16(l + 28);
        r[k].start = start;
        r[k].end = csize > UINT64_MAX - data ? UINT64_MAX : data + csize;
        k++;
    }
    qsort(r, k, sizeof(*r), cmp_range);
    uint64_t reach = 0;
    for (size_t i = 0; i < k && !*overlap; i++) {
        if (i > 0 && r[i].start < reach)
            *overlap = true;
        if (r[i].end > reach)
            reach = r[i].end;
    }
    free(r);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* libarchive.                                                                                 */

/* Sorts a libarchive error message into an error kind. Can't fail. */
static int la_kind(struct archive *a)
{
    const char *s = archive_error_string(a);
    if (s == NULL)
        return R_CORRUPT;
    if (strcasestr(s, "encrypt") || strcasestr(s, "passphrase") || strcasestr(s, "password"))
        return R_ENCRYPTED;
    if (strcasestr(s, "truncat") || strcasestr(s, "premature") || strcasestr(s, "unexpected end"))
        return R_TRUNC;
    if (strcasestr(s, "crc") || strcasestr(s, "checksum") || strcasestr(s, "digest"))
        return R_CRC;
    if (strcasestr(s, "unsupported") || strcasestr(s, "not supported") ||
        strcasestr(s, "unknown compression"))
        return R_METHOD;
    return R_CORRUPT;
}

/* Notes libarchive's current error. Returns ENGINE_ENOMEM when that is what it was, else STOP. */
static int la_fail(walker *w, struct archive *a)
{
    if (archive_errno(a) == ENOMEM)
        return ENGINE_ENOMEM;
    note_error(w, la_kind(a));
    return STOP;
}

/* Registers the one format detection found. */
static int la_enable(struct archive *a, engine__ctype t, bool zip_has_dir)
{
    switch (t) {
    case ENGINE__CT_ZIP:
        return zip_has_dir ? archive_read_support_format_zip_seekable(a)
                           : archive_read_support_format_zip_streamable(a);
    case ENGINE__CT_TAR:
        return archive_read_support_format_tar(a);
    case ENGINE__CT_7Z:
        return archive_read_support_format_7zip(a);
    case ENGINE__CT_RAR: {
        int r = archive_read_support_format_rar(a);
        return r == ARCHIVE_OK ? archive_read_support_format_rar5(a) : r;
    }
    case ENGINE__CT_CAB:
        return archive_read_support_format_cab(a);
    case ENGINE__CT_LHA:
        return archive_read_support_format_lha(a);
    case ENGINE__CT_ISO:
        return archive_read_support_format_iso9660(a);
    case ENGINE__CT_CPIO:
        return archive_read_support_format_cpio(a);
    case ENGINE__CT_XAR:
        return archive_read_support_format_xar(a);
    case ENGINE__CT_AR:
        return archive_read_support_format_ar(a);
    default:
        return ARCHIVE_FATAL;
    }
}

/* A member name for the object path ("?" when the archive gives none). */
static const char *la_name(struct archive_entry *e)
{
    const char *s = archive_entry_pathname(e);
    if (s == NULL || s[0] == '\0')
        s = archive_entry_pathname_utf8(e);
    return s != NULL && s[0] != '\0' ? s : "?";
}

/* Zeros for the holes of sparse members. */
static const uint8_t zeros[CHUNK];

/*
 * Feeds n bytes to the member in pieces of at most CHUNK (so limits are checked as finely as for
 * decoded data); p NULL means n zero bytes (a hole). Returns GO, STOP or ENGINE_ENOMEM.
 */
static int la_feed(walker *w, const uint8_t *p, uint64_t n, uint64_t compressed)
{
    while (n > 0) {
        size_t k = n > CHUNK ? CHUNK : (size_t)n;
        int st = produce(w, p != NULL ? p : zeros, k, compressed);
        if (st != GO)
            return st;
        if (p != NULL)
            p += k;
        n -= k;
    }
    return GO;
}

/*
 * Reads the current entry's data through the sink, block by block. Holes between blocks (sparse
 * files) are fed as zeros, and so is a hole at the end, though never past the entry's declared
 * size (libarchive's XAR reader reports a stale end offset). Returns GO (next entry), STOP or
 * ENGINE_ENOMEM.
 */
static int la_read_entry(walker *w, struct archive *a, struct archive_entry *e)
{
    member_begin(w, la_name(e));
    int64_t pos0 = archive_filter_bytes(a, -1);
    int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
    uint64_t out = 0;
    int st = GO;
    for (;;) {
        const void *blk = NULL;
        size_t n = 0;
        la_int64_t off = 0;
        int r = archive_read_data_block(a, &blk, &n, &off);
        int64_t pos = archive_filter_bytes(a, -1);
        uint64_t comp = pos > pos0 ? (uint64_t)(pos - pos0) : 0;
        if (r == ARCHIVE_EOF) {
            uint64_t end = off > 0 ? (uint64_t)off : 0;
            if (size >= 0 && end > (uint64_t)size)
                end = (uint64_t)size;
            if (end > out)
                st = la_feed(w, NULL, end - out, comp);
            break;
        }
        if (r < ARCHIVE_WARN || (r == ARCHIVE_OK && blk == NULL && n > 0)) {
            if (archive_errno(a) == ENOMEM) {
                member_end(w, false);
                return ENGINE_ENOMEM;
            }
            /* Some readers fail without a message when the input ends inside the data. */
            bool cut = archive_error_string(a) == NULL && size >= 0 && out < (uint64_t)size;
            note_error(w, cut ? R_TRUNC : la_kind(a));
            st = member_end(w, true);
            return st != GO ? st : r == ARCHIVE_FATAL ? STOP : GO;
        }
        if (n > 0 && off >= 0 && (uint64_t)off < out) {
            note_error(w, R_CORRUPT);
            st = member_end(w, true);
            return st != GO ? st : GO;
        }
        if (n > 0 && (uint64_t)off > out)
            st = la_feed(w, NULL, (uint64_t)off - out, comp);
        if (st == GO && n > 0) {
            out = (uint64_t)off;
            st = la_feed(w, blk, n, comp);
            out += n;
        }
        if (st == GO && r == ARCHIVE_WARN) {
            /* A warning on data is a member-level error (a bad CRC, typically): keep what was
             * read, report it, go on with the next member. */
            note_error(w, la_kind(a));
            return member_end(w, true);
        }
        if (st != GO)
            break;
    }
    if (st == ENGINE_ENOMEM) {
        member_end(w, false);
        return ENGINE_ENOMEM;
    }
    if (st != GO) {
        member_end(w, w->flush);
        return st;
    }
    return member_end(w, true);
}

/* la_run()'s answer when a ZIP's directory could not be read at all: try its local headers. */
#define RETRY_LOCAL 2

/*
 * Opens data[0..len) with the format of w->type and walks its entries. `by_dir`: a ZIP read
 * through its central directory; when that fails before the first entry (a directory libarchive
 * refuses), nothing is noted and RETRY_LOCAL is returned instead. Returns GO, STOP, RETRY_LOCAL
 * or ENGINE_ENOMEM.
 */
static int la_run(walker *w, const uint8_t *data, size_t len, bool by_dir)
{
    struct archive *a = archive_read_new();
    if (a == NULL)
        return ENGINE_ENOMEM;
    int rc = GO;
    bool any = false;
    if (la_enable(a, w->type, by_dir) != ARCHIVE_OK ||
        archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
        rc = by_dir && archive_errno(a) != ENOMEM ? RETRY_LOCAL : la_fail(w, a);
        goto out;
    }
    for (unsigned failures = 0;;) {
        if (w->h->out_of_time(w->h))
            break;
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r == ARCHIVE_FATAL) {
            rc = by_dir && !any && archive_errno(a) != ENOMEM ? RETRY_LOCAL : la_fail(w, a);
            break;
        }
        any = true;
        if (r == ARCHIVE_FAILED || r == ARCHIVE_RETRY) {
            if (archive_errno(a) == ENOMEM) {
                rc = ENGINE_ENOMEM;
                break;
            }
            note_error(w, la_kind(a));
            if (++failures > MAX_HEADER_FAILURES)
                break;
            continue;
        }
        failures = 0;
        mode_t type = archive_entry_filetype(e);
        if (type != AE_IFREG && type != 0)
            continue;
        if ((rc = take_member(w)) != GO)
            break;
        if (archive_entry_is_encrypted(e)) {
            note_error(w, R_ENCRYPTED);
            continue;
        }
        if ((rc = la_read_entry(w, a, e)) != GO)
            break;
    }
out:
    archive_read_free(a);
    return rc;
}

/*
 * Walks a container with libarchive; a ZIP is first checked for overlapping entries, and read
 * through its local headers when its central directory cannot be read. Returns 0 or
 * ENGINE_ENOMEM.
 */
static int walk_libarchive(walker *w, const uint8_t *data, size_t len)
{
    bool has_dir = false;
    if (w->type == ENGINE__CT_ZIP) {
        engine__zip_dir d;
        has_dir = engine__zip_find_dir(data, len, true, &d);
        if (has_dir) {
            bool overlap;
            if (zip_check_overlap(data, len, &d, &overlap) != 0)
                return ENGINE_ENOMEM;
            if (overlap) {
                w->h->note(w->h, "Limits.Exceeded.OverlappingEntries", false);
                return 0;
            }
        }
    }
    int rc = la_run(w, data, len, has_dir);
    if (rc == RETRY_LOCAL)
        rc = la_run(w, data, len, false);
    return rc == ENGINE_ENOMEM ? ENGINE_ENOMEM : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Compression layers.                                                                         */

/* Feeds at most 1 GiB at a time to decoders whose counts are 32-bit. */
static unsigned feed(size_t left)
{
    return left > (1u << 30) ? 1u << 30 : (unsigned)left;
}

/* gzip members, one after another, as one child. Returns GO, STOP or ENGINE_ENOMEM. */
static int layer_gzip(walker *w, const uint8_t *data, size_t len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return ENGINE_ENOMEM;
    z.next_in = data;
    z.avail_in = feed(len);
    int st = GO;
    for (;;) {
        if (z.avail_in == 0 && (size_t)(z.next_in - data) < len)
            z.avail_in = feed(len - (size_t)(z.next_in - data));
        uint8_t *out = out_buffer(w);
        z.next_out = out;
        z.avail_out = CHUNK;
        int rc = inflate(&z, Z_NO_FLUSH);
        size_t got = CHUNK - z.avail_out;
        size_t consumed = (size_t)(z.next_in - data);
        if ((st = produce(w, out, got, consumed)) != GO)
            break;
        if (rc == Z_STREAM_END) {
            /* Another member follows, or the rest is padding or trailing bytes, ignored. */
            if (len - consumed >= 10 && data[consumed] == 0x1F && data[consumed + 1] == 0x8B &&
                inflateReset(&z) == Z_OK)
                continue;
            break;
        }
        if (rc == Z_MEM_ERROR) {
            st = ENGINE_ENOMEM;
            break;
        }
        if (rc == Z_OK && !(z.avail_out > 0 && z.avail_in == 0 && consumed == len))
            continue;
        if (rc == Z_OK || rc == Z_BUF_ERROR)
            note_error(w, R_TRUNC);
        else if (z.msg != NULL && strstr(z.msg, "check") != NULL)
            note_error(w, R_CRC);
        else
            note_error(w, R_CORRUPT);
        break;
    }
    inflateEnd(&z);
    return st;
}

/* bzip2 streams, one after another, as one child. Returns GO, STOP or ENGINE_ENOMEM. */
static int layer_bzip2(walker *w, const uint8_t *data, size_t len)
{
    bz_stream s;
    memset(&s, 0, sizeof(s));
    if (BZ2_bzDecompressInit(&s, 0, 0) != BZ_OK)
        return ENGINE_ENOMEM;
    /* bzlib's input pointer is not const; it never writes through it. */
    s.next_in = (char *)(uintptr_t)data;
    s.avail_in = feed(len);
    int st = GO;
    for (;;) {
        size_t consumed = (size_t)((const uint8_t *)s.next_in - data);
        if (s.avail_in == 0 && consumed < len)
            s.avail_in = feed(len - consumed);
        uint8_t *out = out_buffer(w);
        s.next_out = (char *)out;
        s.avail_out = CHUNK;
        int rc = BZ2_bzDecompress(&s);
        size_t got = CHUNK - s.avail_out;
        consumed = (size_t)((const uint8_t *)s.next_in - data);
        if ((st = produce(w, out, got, consumed)) != GO)
            break;
        if (rc == BZ_STREAM_END) {
            if (len - consumed >= 10 && memcmp(data + consumed, "BZh", 3) == 0) {
                BZ2_bzDecompressEnd(&s);
                memset(&s, 0, sizeof(s));
                if (BZ2_bzDecompressInit(&s, 0, 0) != BZ_OK)
                    return ENGINE_ENOMEM;
                s.next_in = (char *)(uintptr_t)(data + consumed);
                s.avail_in = feed(len - consumed);
                continue;
            }
            break;
        }
        if (rc == BZ_MEM_ERROR) {
            st = ENGINE_ENOMEM;
            break;
        }
        if (rc == BZ_OK && !(s.avail_out > 0 && s.avail_in == 0 && consumed == len))
            continue;
        note_error(w, rc == BZ_OK ? R_TRUNC : R_CORRUPT);
        break;
    }
    BZ2_bzDecompressEnd(&s);
    return st;
}

/* xz streams (and their padding), one after another, as one child. */
static int layer_xz(walker *w, const uint8_t *data, size_t len)
{
    lzma_stream s = LZMA_STREAM_INIT;
    lzma_ret rc = lzma_stream_decoder(&s, XZ_MEMLIMIT, LZMA_CONCATENATED);
    if (rc != LZMA_OK)
        return rc == LZMA_MEM_ERROR ? ENGINE_ENOMEM : (note_error(w, R_CORRUPT), STOP);
    s.next_in = data;
    s.avail_in = len;
    int st = GO;
    for (;;) {
        uint8_t *out = out_buffer(w);
        s.next_out = out;
        s.avail_out = CHUNK;
        rc = lzma_code(&s, LZMA_FINISH);
        size_t got = CHUNK - s.avail_out;
        if ((st = produce(w, out, got, (uint64_t)(s.next_in - data))) != GO)
            break;
        if (rc == LZMA_OK)
            continue;
        if (rc == LZMA_STREAM_END)
            break;
        if (rc == LZMA_MEM_ERROR) {
            st = ENGINE_ENOMEM;
            break;
        }
        if (rc == LZMA_BUF_ERROR)
            note_error(w, R_TRUNC);
        else if (rc == LZMA_OPTIONS_ERROR || rc == LZMA_MEMLIMIT_ERROR)
            note_error(w, R_METHOD);
        else
            note_error(w, R_CORRUPT);
        break;
    }
    lzma_end(&s);
    return st;
}

/*
 * The object name of a gzip layer's content: "gzip", or "gzip>NAME" when the header carries the
 * original file name (gzip FILE does; tar czf does not), so a path reads
 * payload.tar.gz>gzip>payload.tar>evil.ps1. Only the name's last component is kept; bytes that
 * would confuse an object path ('>', control characters) become '_'. Can't fail.
 */
static const char *gzip_layer_name(const uint8_t *p, size_t n, char *buf, size_t cap)
{
    size_t i = 10;
    snprintf(buf, cap, "gzip");
    if (n < i || !(p[3] & 0x08))
        return buf;
    if (p[3] & 0x04) { /* FEXTRA: two length bytes, then that many */
        if (n < i + 2)
            return buf;
        i += 2 + (size_t)(p[i] | p[i + 1] << 8);
    }
    size_t start = i, end = i;
    while (end < n && p[end] != 0)
        end++;
    if (end >= n || end == start)
        return buf;
    for (size_t k = start; k < end; k++)
        if (p[k] == '/' || p[k] == '\\')
            start = k + 1;
    size_t w = strlen(buf);
    if (start < end && w + 1 < cap)
        buf[w++] = '>';
    for (size_t k = start; k < end && w + 1 < cap; k++)
        buf[w++] = (p[k] < 0x20 || p[k] == 0x7f || p[k] == '>') ? '_' : (char)p[k];
    buf[w] = '\0';
    return buf;
}

/* One compression layer as one child. Returns 0 or ENGINE_ENOMEM. */
static int walk_layer(walker *w, const uint8_t *data, size_t len)
{
    char gzname[256];
    member_begin(w, w->type == ENGINE__CT_GZIP ? gzip_layer_name(data, len, gzname, sizeof(gzname))
                                               : engine__ctype_name(w->type));
    int st;
    if (w->type == ENGINE__CT_GZIP)
        st = layer_gzip(w, data, len);
    else if (w->type == ENGINE__CT_BZIP2)
        st = layer_bzip2(w, data, len);
    else
        st = layer_xz(w, data, len);
    if (st == ENGINE_ENOMEM) {
        member_end(w, false);
        return ENGINE_ENOMEM;
    }
    member_end(w, st == GO || w->flush);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* ARJ.                                                                                        */

/* The error kind of an ENGINE__ARJ_* code. */
static int arj_kind(int err)
{
    switch (err) {
    case ENGINE__ARJ_ETRUNC:
        return R_TRUNC;
    case ENGINE__ARJ_ECRC:
        return R_CRC;
    case ENGINE__ARJ_EMETHOD:
        return R_METHOD;
    case ENGINE__ARJ_EENCRYPTED:
        return R_ENCRYPTED;
    default:
        return R_CORRUPT;
    }
}

/* Reads the current ARJ member through the sink. Returns GO, STOP or ENGINE_ENOMEM. */
static int arj_read_member(walker *w, engine__arj *a, const engine__arj_entry *e)
{
    member_begin(w, e->name);
    for (;;) {
        size_t got = 0;
        int r = engine__arj_read(a, w->chunk, CHUNK, &got);
        if (r == ENGINE__ARJ_ENOMEM) {
            member_end(w, false);
            return ENGINE_ENOMEM;
        }
        if (r != 0) {
            note_error(w, arj_kind(r));
            return member_end(w, true);
        }
        if (got == 0)
            return member_end(w, true);
        int st = produce(w, w->chunk, got, e->comp_size);
        if (st != GO) {
            member_end(w, st == STOP && w->flush);
            return st;
        }
    }
}

/* Walks an ARJ archive with engine__arj_*. Returns 0 or ENGINE_ENOMEM. */
static int walk_arj(walker *w, const uint8_t *data, size_t len)
{
    engine__arj *a = NULL;
    int r = engine__arj_open(data, len, &a);
    if (r == ENGINE__ARJ_ENOMEM)
        return ENGINE_ENOMEM;
    if (r != 0) {
        note_error(w, arj_kind(r));
        return 0;
    }
    engine__arj_entry *e = malloc(sizeof(*e));
    if (e == NULL) {
        engine__arj_close(a);
        return ENGINE_ENOMEM;
    }
    int st = GO;
    while (st == GO && !w->h->out_of_time(w->h)) {
        r = engine__arj_next(a, e);
        if (r == 1)
            break;
        if (r != 0) {
            note_error(w, arj_kind(r));
            break;
        }
        if (e->file_type != ENGINE__ARJ_TYPE_BINARY && e->file_type != ENGINE__ARJ_TYPE_TEXT)
            continue;
        if ((st = take_member(w)) != GO)
            break;
        if (e->flags & ENGINE__ARJ_FLAG_GARBLED) {
            note_error(w, R_ENCRYPTED);
            continue;
        }
        st = arj_read_member(w, a, e);
    }
    free(e);
    engine__arj_close(a);
    return st == ENGINE_ENOMEM ? ENGINE_ENOMEM : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* LHA methods libarchive cannot decode: liblhasa.                                             */

/*
 * libarchive decodes LHA members stored (-lh0-, -lz4-) or compressed with -lh5- to -lh7-; ICE
 * archives and old LHarc/LArc ones use -lh1- to -lh3-, -lzs- and -lz5-, which libarchive reports
 * as unsupported. An LHA archive whose headers name any method outside libarchive's set is read
 * with liblhasa instead (the whole archive, so every member is read once by one reader).
 */

/* liblhasa's input: the container in memory. */
typedef struct lhasa_mem {
    const uint8_t *p;
    size_t n, pos;
} lhasa_mem;

static int lhasa_read(void *handle, void *buf, size_t len)
{
    lhasa_mem *m = handle;
    size_t k = m->n - m->pos;
    if (k > len)
        k = len;
    if (k > INT_MAX)
        k = INT_MAX;
    memcpy(buf, m->p + m->pos, k);
    m->pos += k;
    return (int)k;
}

static int lhasa_skip(void *handle, size_t bytes)
{
    lhasa_mem *m = handle;
    if (bytes > m->n - m->pos) {
        m->pos = m->n;
        return 0;
    }
    m->pos += bytes;
    return 1;
}

static const LHAInputStreamType lhasa_mem_type = {lhasa_read, lhasa_skip, NULL};

/* Opens a liblhasa reader over data[0..len) (*m must outlive it). NULL when memory ran out. */
static LHAReader *lhasa_open(lhasa_mem *m, const uint8_t *data, size_t len, LHAInputStream **stream)
{
    *m = (lhasa_mem){data, len, 0};
    *stream = lha_input_stream_new(&lhasa_mem_type, m);
    if (*stream == NULL)
        return NULL;
    LHAReader *r = lha_reader_new(*stream);
    if (r == NULL) {
        lha_input_stream_free(*stream);
        return NULL;
    }
    lha_reader_set_dir_policy(r, LHA_READER_DIR_PLAIN);
    return r;
}

/* True when libarchive can decode every method named in the first headers of an LHA archive. */
static bool lha_libarchive_can(const uint8_t *data, size_t len)
{
    static const char *const known[] = {"-lh0-", "-lh5-", "-lh6-", "-lh7-", "-lhd-", "-lz4-"};
    lhasa_mem m;
    LHAInputStream *in;
    LHAReader *r = lhasa_open(&m, data, len, &in);
    if (r == NULL)
        return true;
    bool can = true;
    LHAFileHeader *hd;
    for (unsigned i = 0; can && i < 4096 && (hd = lha_reader_next_file(r)) != NULL; i++) {
        bool found = false;
        for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
            found = found || strcmp(hd->compress_method, known[k]) == 0;
        can = found;
    }
    lha_reader_free(r);
    lha_input_stream_free(in);
    return can;
}

/*
 * Reads the current liblhasa member through the sink. The ratio is taken against the input the
 * decoder actually consumed (m->pos moves as it reads), not the header's compressed size, which
 * the archive can set to anything. Returns GO, STOP or ENGINE_ENOMEM.
 */
static int lhasa_read_member(walker *w, LHAReader *r, const LHAFileHeader *hd, const char *name,
                             const lhasa_mem *m)
{
    size_t start = m->pos;
    member_begin(w, name);
    uint64_t out = 0;
    uint16_t crc = 0;
    for (;;) {
        size_t got = lha_reader_read(r, w->chunk, CHUNK);
        if (got == 0)
            break;
        crc = engine__crc16_arc(crc, w->chunk, got);
        out += got;
        int st = produce(w, w->chunk, got, m->pos - start);
        if (st != GO) {
            member_end(w, st == STOP && w->flush);
            return st;
        }
    }
    if (out < hd->length)
        note_error(w, out == 0 ? R_METHOD : R_TRUNC);
    else if (crc != hd->crc)
        note_error(w, R_CRC);
    return member_end(w, true);
}

/* Walks an LHA archive with liblhasa. Returns 0 or ENGINE_ENOMEM. */
static int walk_lhasa(walker *w, const uint8_t *data, size_t len)
{
    lhasa_mem m;
    LHAInputStream *in;
    LHAReader *r = lhasa_open(&m, data, len, &in);
    if (r == NULL)
        return ENGINE_ENOMEM;
    char *name = malloc(8192);
    if (name == NULL) {
        lha_reader_free(r);
        lha_input_stream_free(in);
        return ENGINE_ENOMEM;
    }
    int st = GO;
    while (st == GO && !w->h->out_of_time(w->h)) {
        LHAFileHeader *hd = lha_reader_next_file(r);
        if (hd == NULL) {
            /* The end marker (a zero byte) or the end of the data; anything else is damage. */
            if (m.pos < m.n && (m.pos == 0 || m.p[m.pos - 1] != 0))
                note_error(w, R_CORRUPT);
            break;
        }
        if (strcmp(hd->compress_method, "-lhd-") == 0 || hd->symlink_target != NULL)
            continue;
        if ((st = take_member(w)) != GO)
            break;
        snprintf(name, 8192, "%s%s", hd->path != NULL ? hd->path : "",
                 hd->filename != NULL ? hd->filename : "");
        st = lhasa_read_member(w, r, hd, name, &m);
    }
    free(name);
    lha_reader_free(r);
    lha_input_stream_free(in);
    return st == ENGINE_ENOMEM ? ENGINE_ENOMEM : 0;
}

/* ------------------------------------------------------------------------------------------ */

int engine__unpack_container(engine__unpack_host *h, engine__ctype t, const uint8_t *data,
                             size_t len)
{
    /* OOXML is a ZIP: its parts are members, and those that are OLE2 come back through the host. */
    if (t == ENGINE__CT_OOXML)
        t = ENGINE__CT_ZIP;
    switch (t) {
    case ENGINE__CT_ZIP:
    case ENGINE__CT_GZIP:
    case ENGINE__CT_BZIP2:
    case ENGINE__CT_XZ:
    case ENGINE__CT_TAR:
    case ENGINE__CT_7Z:
    case ENGINE__CT_RAR:
    case ENGINE__CT_CAB:
    case ENGINE__CT_LHA:
    case ENGINE__CT_ISO:
    case ENGINE__CT_CPIO:
    case ENGINE__CT_XAR:
    case ENGINE__CT_AR:
    case ENGINE__CT_ARJ:
        break;
    default:
        return 1;
    }
    uint64_t bound =
        h->cfg->max_scan_size < MEMBER_BOUND_MAX ? h->cfg->max_scan_size : MEMBER_BOUND_MAX;
    walker w = {
        .h = h,
        .type = t,
        .len = len,
        .bound = bound > 0 ? (size_t)bound : 1,
        .solid = t == ENGINE__CT_7Z || t == ENGINE__CT_RAR || t == ENGINE__CT_CAB,
    };
    w.chunk = malloc(CHUNK);
    if (w.chunk == NULL)
        return ENGINE_ENOMEM;
    int rc;
    if (t == ENGINE__CT_GZIP || t == ENGINE__CT_BZIP2 || t == ENGINE__CT_XZ)
        rc = walk_layer(&w, data, len);
    else if (t == ENGINE__CT_ARJ)
        rc = walk_arj(&w, data, len);
    else if (t == ENGINE__CT_LHA && !lha_libarchive_can(data, len))
        rc = walk_lhasa(&w, data, len);
    else
        rc = walk_libarchive(&w, data, len);
    member_free(&w);
    free(w.chunk);
    return rc;
}
