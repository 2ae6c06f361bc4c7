/*
 * unpack_office.c - OLE2 compound files (DOC, XLS, PPT, MSI, vbaProject.bin, embedded objects)
 * through libgsf, read from memory (see unpack_office.h).
 *
 * libgsf parses the sector tables and the directory; everything inside the streams is parsed
 * here, from the specifications ([MS-CFB] for the container, [MS-OVBA] for VBA, [MS-DOC] for the
 * FIB and the piece table, [MS-XLS] for BIFF records, [MS-PPT] for PowerPoint records, and the
 * OLE Packager's Ole10Native layout). Every storage is walked depth first, in directory order;
 * every stream is one child of the document, named by its path ("Macros/VBA/Module1"), counted
 * against max_files, read in CHUNK pieces each charged to the host (max_scan_size) and checked
 * against the clock. Streams that are containers (OLE2 inside OLE2, a cabinet inside an MSI) are
 * unpacked in turn by the host, one step deeper. Then, by what the stream is:
 *
 *  - a VBA module (a storage with a `dir` stream is a VBA project; the decompressed `dir` lists
 *    its modules and where each one's compressed source starts): the decompressed source is the
 *    child instead of the stream's raw bytes (p-code and compressed text match nothing useful);
 *  - `\x01Ole10Native`: its payload, named by the embedded file's name
 *    ("ObjectPool/_1/\x01Ole10Native>evil.ps1"), then the stream;
 *  - WordDocument: its text (the piece table in the sibling 0Table/1Table followed, UTF-16 pieces
 *    narrowed) as "WordDocument>text", then the stream; an fEncrypted FIB is noted;
 *  - Workbook/Book: the text of its shared strings (SST and CONTINUE) and LABEL records, UTF-16
 *    strings narrowed, as "Workbook>text", then the stream; a FILEPASS record is noted;
 *  - PowerPoint Document: each ExOleObjStg object, zlib-inflated when its record says compressed,
 *    as "PowerPoint Document>ExOleObjStg@OFFSET", then the stream.
 * What is decoded goes first so that a match in it is reported with its precise path. These
 * streams are recognised in any storage, so a document embedded in another is read the same way.
 *
 * Encryption is reported, not guessed: EncryptionInfo or EncryptedPackage (encrypted OOXML, and
 * the RC4 CryptoAPI of binary formats), EncryptedSummary (PowerPoint), Word's fEncrypted,
 * Excel's FILEPASS and PowerPoint's CryptSession10Container all note the error
 * "encrypted document"; what can be read is still scanned, and a detection wins.
 *
 * Names in object paths: control characters are written as \xNN (so "\x01Ole10Native" and
 * "\x05SummaryInformation" read as such) and '>' as '_'. MSI stream names, which Windows
 * Installer packs two characters to a code point in U+3800..U+4840, are unpacked to their text.
 *
 * Bombs: a compound file's streams may share sectors (a FAT whose chains merge), so their total
 * may pass the file's size many times; once the document has produced RATIO_FLOOR bytes, the
 * ratio of everything it produced to its size is held to max_ratio, as for solid archives.
 * Decompressed VBA source and PowerPoint objects count the same way, and each is bounded by the
 * member bound, min(max_scan_size, 64 MiB). Storage nesting is bounded by MAX_STORAGE_DEPTH.
 */
#include "unpack_office.h"

#include "ovba.h"
#include "text.h"

#include <gsf/gsf-infile-msole.h>
#include <gsf/gsf-infile.h>
#include <gsf/gsf-input-memory.h>
#include <gsf/gsf-utils.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#define ZLIB_CONST
#include <zlib.h>

/* Size of one read from libgsf or zlib. */
#define CHUNK (64u * 1024u)

/* Largest stream or decompressed object held whole in memory (also at most max_scan_size). */
#define MEMBER_BOUND_MAX (64u * 1024u * 1024u)

/* The document must have produced this much before the ratio cap applies. */
#define RATIO_FLOOR (1024u * 1024u)

/* Storages nested deeper than this are not walked (a real document nests three or four). */
#define MAX_STORAGE_DEPTH 32

/* Longest object path written for a stream. */
#define PATH_MAX_LEN 1024

/* Most modules read from one VBA project's dir stream, and the dir stream's decompressed size. */
#define MAX_MODULES 4096
#define DIR_MAX     (4u * 1024u * 1024u)

/* Most ExOleObjStg records taken from one PowerPoint Document stream. */
#define MAX_PPT_OBJECTS 1024

#define R_ENCRYPTED "encrypted document"

static pthread_once_t gsf_once = PTHREAD_ONCE_INIT;

static void quiet_log(const gchar *domain, GLogLevelFlags level, const gchar *message,
                      gpointer data)
{
    (void)domain;
    (void)level;
    (void)message;
    (void)data;
}

static void gsf_setup(void)
{
    /* libgsf's infile code logs in the default domain (NULL); nothing else in the process that
     * links the engine uses GLib's logging. */
    static const char *const domains[] = {NULL, "libgsf", "libgsf:msole", "libgsf:zip",
                                          "libgsf:open_pkg"};
    gsf_init();
    for (size_t i = 0; i < sizeof(domains) / sizeof(domains[0]); i++)
        g_log_set_handler(domains[i],
                          (GLogLevelFlags)(G_LOG_LEVEL_MASK & ~G_LOG_LEVEL_ERROR) |
                              G_LOG_FLAG_RECURSION,
                          quiet_log, NULL);
}

void engine__office_global_init(void)
{
    pthread_once(&gsf_once, gsf_setup);
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ------------------------------------------------------------------------------------------ */
/* Record parsers (no libgsf, no host: pure functions on bytes).                               */

/* Copies the NUL-terminated string at p[*i..n) (its end must be inside) and moves past it. */
static bool cstring(const uint8_t *p, size_t n, size_t *i, const char **s)
{
    if (*i >= n)
        return false;
    const uint8_t *z = memchr(p + *i, 0, n - *i);
    if (z == NULL)
        return false;
    *s = (const char *)(p + *i);
    *i = (size_t)(z - p) + 1;
    return true;
}

/* The last component of a Windows or POSIX path, bytes unsafe in an object path replaced. */
static void base_name(const char *s, char *out, size_t cap)
{
    const char *b = s;
    for (const char *q = s; *q; q++)
        if (*q == '\\' || *q == '/' || *q == ':')
            b = q + 1;
    size_t k = 0;
    for (; *b && k + 1 < cap; b++)
        out[k++] = ((unsigned char)*b < 0x20 || *b == '>') ? '_' : *b;
    out[k] = '\0';
}

int engine__ole10native_parse(const uint8_t *p, size_t n, engine__native *out)
{
    memset(out, 0, sizeof(*out));
    if (n < 4)
        return -1;
    size_t total = rd32(p);
    size_t end = total < n - 4 ? 4 + total : n;
    /* A package: flags, label, source path, 4 bytes, temporary path with its length, data. */
    size_t i = 6;
    const char *label = NULL, *path = NULL;
    if (end >= 6 && cstring(p, end, &i, &label) && cstring(p, end, &i, &path) && end - i >= 8) {
        i += 4;
        size_t tl = rd32(p + i);
        i += 4;
        if (tl <= end - i && end - i - tl >= 4) {
            i += tl;
            size_t dl = rd32(p + i);
            i += 4;
            if (dl <= end - i) {
                base_name(path, out->name, sizeof(out->name));
                if (out->name[0] == '\0')
                    base_name(label, out->name, sizeof(out->name));
                if (out->name[0] == '\0')
                    snprintf(out->name, sizeof(out->name), "native");
                out->data = p + i;
                out->len = dl;
                return 0;
            }
        }
    }
    /* Not a package: the object's own bytes follow the size. */
    if (end <= 4)
        return -1;
    snprintf(out->name, sizeof(out->name), "native");
    out->data = p + 4;
    out->len = end - 4;
    return 0;
}

int engine__ppt_next(const uint8_t *s, size_t n, size_t *pos, engine__ppt_object *obj)
{
    size_t i = *pos;
    while (i <= n && n - i >= 8) {
        uint16_t verinst = rd16(s + i);
        uint16_t type = rd16(s + i + 2);
        size_t len = rd32(s + i + 4);
        size_t at = i;
        if ((verinst & 0xFu) == 0xFu) {
            /* A container: its children follow its header. */
            i += 8;
            if (type == 0x2F14u) {
                *pos = len <= n - i ? i + len : n;
                return ENGINE__PPT_ENCRYPTED;
            }
            continue;
        }
        i += 8;
        if (len > n - i) {
            *pos = n;
            return ENGINE__PPT_ECORRUPT;
        }
        const uint8_t *d = s + i;
        i += len;
        if (type != 0x1011u)
            continue;
        memset(obj, 0, sizeof(*obj));
        obj->offset = at;
        obj->compressed = (verinst >> 4) == 1;
        if (obj->compressed) {
            if (len < 4)
                continue;
            obj->size = rd32(d);
            obj->data = d + 4;
            obj->len = len - 4;
        } else {
            obj->data = d;
            obj->len = len;
        }
        *pos = i;
        return ENGINE__PPT_OBJECT;
    }
    *pos = n;
    return ENGINE__PPT_END;
}

bool engine__word_fib(const uint8_t *wd, size_t wn, bool *encrypted, bool *table1)
{
    *encrypted = *table1 = false;
    if (wn < 32 || rd16(wd) != 0xA5ECu)
        return false;
    uint16_t flags = rd16(wd + 0x0A);
    *encrypted = (flags & 0x0100u) != 0;
    *table1 = (flags & 0x0200u) != 0;
    return true;
}

/* Offset of the FibRgFcLcb blob and its pair count in a Word 97+ FIB, or false. */
static bool fib_fclcb(const uint8_t *wd, size_t wn, size_t *at, size_t *pairs)
{
    size_t i = 32;
    if (wn - i < 2)
        return false;
    size_t csw = rd16(wd + i);
    i += 2 + csw * 2;
    if (i > wn || wn - i < 2)
        return false;
    size_t cslw = rd16(wd + i);
    i += 2 + cslw * 4;
    if (i > wn || wn - i < 2)
        return false;
    *pairs = rd16(wd + i);
    i += 2;
    if (*pairs > (wn - i) / 8)
        *pairs = (wn - i) / 8;
    *at = i;
    return true;
}

size_t engine__word_text(const uint8_t *wd, size_t wn, const uint8_t *tbl, size_t tn, uint8_t *out,
                         size_t cap)
{
    bool enc, t1;
    size_t at, pairs;
    if (!engine__word_fib(wd, wn, &enc, &t1) || enc || rd16(wd + 2) < 101 ||
        !fib_fclcb(wd, wn, &at, &pairs) || pairs <= 33 || tbl == NULL)
        return 0;
    size_t fc = rd32(wd + at + 33 * 8), lcb = rd32(wd + at + 33 * 8 + 4);
    if (fc > tn || lcb > tn - fc)
        return 0;
    const uint8_t *clx = tbl + fc;
    size_t i = 0;
    /* Prc entries (formatting), then the Pcdt. */
    while (i < lcb && clx[i] == 0x01) {
        if (lcb - i < 3)
            return 0;
        i += 3 + rd16(clx + i + 1);
    }
    if (i >= lcb || clx[i] != 0x02 || lcb - i < 5)
        return 0;
    size_t plc = rd32(clx + i + 1);
    i += 5;
    if (plc > lcb - i || plc < 16)
        return 0;
    const uint8_t *cps = clx + i;
    size_t np = (plc - 4) / 12;
    const uint8_t *pcds = cps + 4 * (np + 1);
    size_t o = 0;
    for (size_t k = 0; k < np && o < cap; k++) {
        uint32_t c0 = rd32(cps + 4 * k), c1 = rd32(cps + 4 * (k + 1));
        if (c1 <= c0)
            continue;
        size_t chars = c1 - c0;
        uint32_t fcv = rd32(pcds + 8 * k + 2);
        bool compressed = (fcv & 0x40000000u) != 0;
        size_t off = fcv & 0x3FFFFFFFu;
        if (compressed) {
            off /= 2;
            if (off >= wn)
                continue;
            size_t m = chars < wn - off ? chars : wn - off;
            if (m > cap - o)
                m = cap - o;
            memcpy(out + o, wd + off, m);
            o += m;
        } else {
            if (off >= wn)
                continue;
            size_t m = chars < (wn - off) / 2 ? chars * 2 : (wn - off) & ~(size_t)1;
            o += engine__utf16le_narrow(wd + off, m, out + o, cap - o);
        }
    }
    return o;
}

bool engine__excel_encrypted(const uint8_t *s, size_t n)
{
    size_t i = 0;
    for (unsigned k = 0; k < 100000 && n - i >= 4; k++) {
        uint16_t type = rd16(s + i), len = rd16(s + i + 2);
        if (k == 0 && type != 0x0809u && type != 0x0409u && type != 0x0209u && type != 0x0009u)
            return false;
        if (type == 0x002Fu)
            return true;
        if (type == 0x000Au) /* EOF of the globals substream */
            return false;
        i += 4;
        if (len > n - i)
            return false;
        i += len;
    }
    return false;
}

/*
 * BIFF8 string text. An SST record and the CONTINUE records after it form one byte sequence cut
 * into segments; a string's characters may cross a segment boundary, and the continuation then
 * starts with a fresh flags byte saying whether the rest is 8-bit or UTF-16 ([MS-XLS] 2.5.293,
 * 2.4.58). The cursor below walks such a sequence.
 */
typedef struct biff_cursor {
    const uint8_t *s; /* the stream */
    size_t n;
    size_t seg, seg_end; /* current segment [seg, seg_end) of the stream */
    size_t next;         /* offset of the record after the current segment */
} biff_cursor;

/* Moves to the next CONTINUE record's payload. Returns false when there is none. */
static bool biff_next_segment(biff_cursor *c)
{
    size_t i = c->next;
    if (i > c->n || c->n - i < 4 || rd16(c->s + i) != 0x003Cu)
        return false;
    size_t len = rd16(c->s + i + 2);
    if (len > c->n - i - 4)
        return false;
    c->seg = i + 4;
    c->seg_end = i + 4 + len;
    c->next = c->seg_end;
    return true;
}

/* Reads k bytes (numbers, runs), crossing segments as needed; p may be NULL to skip. */
static bool biff_bytes(biff_cursor *c, uint8_t *p, size_t k)
{
    while (k > 0) {
        if (c->seg == c->seg_end && !biff_next_segment(c))
            return false;
        size_t m = c->seg_end - c->seg < k ? c->seg_end - c->seg : k;
        if (p != NULL) {
            memcpy(p, c->s + c->seg, m);
            p += m;
        }
        c->seg += m;
        k -= m;
    }
    return true;
}

/* Appends cch characters (8-bit or UTF-16 by `high`, the flag changing at segment boundaries) as
 * UTF-8 to out[*o..cap). Returns false when the data ends first. */
static bool biff_chars(biff_cursor *c, size_t cch, bool high, uint8_t *out, size_t cap, size_t *o)
{
    while (cch > 0) {
        if (c->seg == c->seg_end) {
            if (!biff_next_segment(c))
                return false;
            if (c->seg < c->seg_end)
                high = (c->s[c->seg++] & 0x01u) != 0;
            continue;
        }
        size_t avail = c->seg_end - c->seg, w = high ? 2 : 1;
        size_t m = avail / w < cch ? avail / w : cch;
        if (m == 0) {
            c->seg = c->seg_end; /* half a UTF-16 unit: skip it */
            continue;
        }
        const uint8_t *p = c->s + c->seg;
        if (high) {
            *o += engine__utf16le_narrow(p, m * 2, out + *o, cap - *o);
        } else {
            for (size_t i = 0; i < m && cap - *o >= 2; i++) {
                if (p[i] < 0x80) {
                    out[(*o)++] = p[i];
                } else { /* Latin-1 to UTF-8 */
                    out[(*o)++] = (uint8_t)(0xC0 | p[i] >> 6);
                    out[(*o)++] = (uint8_t)(0x80 | (p[i] & 0x3F));
                }
            }
        }
        c->seg += m * w;
        cch -= m;
    }
    return true;
}

size_t engine__excel_text(const uint8_t *s, size_t n, uint8_t *out, size_t cap)
{
    size_t o = 0, i = 0;
    for (unsigned k = 0; k < 1000000 && n - i >= 4 && cap - o > 8; k++) {
        uint16_t type = rd16(s + i);
        size_t len = rd16(s + i + 2);
        if (len > n - i - 4)
            break;
        biff_cursor c = {s, n, i + 4, i + 4 + len, i + 4 + len};
        i += 4 + len;
        if (type == 0x00FCu) { /* SST: two counts, then XLUnicodeRichExtendedStrings */
            uint8_t cnt[8], h[4];
            if (!biff_bytes(&c, cnt, 8))
                continue;
            uint32_t unique = rd32(cnt + 4);
            for (uint32_t u = 0; u < unique && cap - o > 8; u++) {
                if (!biff_bytes(&c, h, 3))
                    break;
                size_t cch = rd16(h);
                uint8_t flags = h[2];
                uint32_t runs = 0, ext = 0;
                if ((flags & 0x08u) && biff_bytes(&c, h, 2))
                    runs = rd16(h);
                if ((flags & 0x04u) && biff_bytes(&c, h, 4))
                    ext = rd32(h);
                if (!biff_chars(&c, cch, (flags & 0x01u) != 0, out, cap - 1, &o))
                    break;
                out[o++] = '\n';
                if (!biff_bytes(&c, NULL, (size_t)runs * 4) || !biff_bytes(&c, NULL, ext))
                    break;
            }
            i = c.next;                           /* past the CONTINUE records the strings used */
        } else if (type == 0x0204u && len >= 9) { /* LABEL: row, col, ixfe, XLUnicodeString */
            size_t cch = rd16(s + c.seg + 6);
            c.seg += 9;
            if (biff_chars(&c, cch, (s[c.seg - 1] & 0x01u) != 0, out, cap - 1, &o))
                out[o++] = '\n';
        }
    }
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* The walk.                                                                                   */

typedef struct office {
    engine__unpack_host *h;
    engine__ctype type;
    uint64_t len;      /* the document's size */
    uint64_t produced; /* bytes all its streams and decompressed objects produced */
    unsigned taken;    /* streams taken (max_files) */
    size_t bound;      /* largest stream or object held in memory */
    bool stop;         /* the host said the request is finished, or a limit stopped the walk */
    bool encrypted;    /* noted once */
} office;

/* A VBA project's modules, for the storage being walked. */
typedef struct vba_project {
    engine__ovba_module *mods;
    int count;
} vba_project;

static void note_encrypted(office *o)
{
    if (!o->encrypted) {
        o->encrypted = true;
        o->h->note(o->h, R_ENCRYPTED, true);
    }
}

/*
 * Counts n produced bytes: clock, scan size, then the document's ratio. Returns false (and sets
 * o->stop) when the walk must end.
 */
static bool produce(office *o, size_t n)
{
    engine__unpack_host *h = o->h;
    if (h->out_of_time(h) || !h->charge(h, n)) {
        o->stop = true;
        return false;
    }
    o->produced += n;
    if (o->produced >= RATIO_FLOOR &&
        (o->len == 0 || o->produced / o->len > (uint64_t)h->cfg->max_ratio)) {
        h->note(h, "Limits.Exceeded.MaxRatio", false);
        o->stop = true;
        return false;
    }
    return true;
}

/*
 * How many more bytes the document may produce before the ratio cap stops it (one more than
 * that trips it), so that a decompressor's output buffer is never larger than what could be
 * kept. Can't fail.
 */
static size_t ratio_allowance(const office *o)
{
    uint64_t r = (uint64_t)o->h->cfg->max_ratio + 1;
    uint64_t limit = o->len > UINT64_MAX / r ? UINT64_MAX : o->len * r;
    if (limit < RATIO_FLOOR)
        limit = RATIO_FLOOR;
    uint64_t allow = limit > o->produced ? limit - o->produced : 0;
    return allow < SIZE_MAX - 1 ? (size_t)allow + 1 : SIZE_MAX;
}

/* Hands one child to the host. Returns false when the walk must end. */
static bool child(office *o, const uint8_t *p, size_t n, const char *name)
{
    if (o->stop)
        return false;
    if (o->h->scan_child(o->h, p, n, name))
        o->stop = true;
    return !o->stop;
}

/* Appends one UTF-8 code point to out[*k..cap). */
static void put_utf8(char *out, size_t cap, size_t *k, uint32_t c)
{
    char tmp[4];
    size_t m;
    if (c < 0x80) {
        tmp[0] = (char)c;
        m = 1;
    } else if (c < 0x800) {
        tmp[0] = (char)(0xC0 | c >> 6);
        tmp[1] = (char)(0x80 | (c & 0x3F));
        m = 2;
    } else {
        tmp[0] = (char)(0xE0 | c >> 12);
        tmp[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        tmp[2] = (char)(0x80 | (c & 0x3F));
        m = 3;
    }
    if (cap - *k > m) {
        memcpy(out + *k, tmp, m);
        *k += m;
    }
}

/* Decodes one UTF-8 sequence at s (libgsf gives valid UTF-8); 0xFFFD for anything else. */
static uint32_t get_utf8(const unsigned char **s)
{
    const unsigned char *p = *s;
    if (p[0] < 0x80) {
        *s = p + 1;
        return p[0];
    }
    if ((p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) {
        *s = p + 2;
        return (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
    }
    if ((p[0] & 0xF0) == 0xE0 && (p[1] & 0xC0) == 0x80 && (p[2] & 0xC0) == 0x80) {
        *s = p + 3;
        return (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
    }
    *s = p + 1;
    return 0xFFFD;
}

/*
 * Appends a stream or storage name to an object path: control characters as \xNN, '>' as '_',
 * and (msi) Windows Installer's packed characters unpacked: U+3800..U+47FF hold two characters
 * of "0-9A-Za-z._" (low six bits first), U+4800..U+483F one, U+4840 marks a table.
 */
static void put_name(char *out, size_t cap, size_t *k, const char *name, bool msi)
{
    static const char msi_chars[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._";
    const unsigned char *s = (const unsigned char *)name;
    while (*s && cap - *k > 1) {
        uint32_t c = get_utf8(&s);
        if (msi && c >= 0x3800 && c < 0x4800) {
            put_utf8(out, cap, k, (unsigned char)msi_chars[(c - 0x3800) & 0x3F]);
            put_utf8(out, cap, k, (unsigned char)msi_chars[((c - 0x3800) >> 6) & 0x3F]);
        } else if (msi && c >= 0x4800 && c < 0x4840) {
            put_utf8(out, cap, k, (unsigned char)msi_chars[c - 0x4800]);
        } else if (msi && c == 0x4840) {
            put_utf8(out, cap, k, '!');
        } else if (c < 0x20 || c == 0x7F) {
            if (cap - *k > 4) {
                snprintf(out + *k, cap - *k, "\\x%02X", (unsigned)c);
                *k += 4;
            }
        } else {
            put_utf8(out, cap, k, c == '>' ? '_' : c);
        }
    }
    out[*k] = '\0';
}

/*
 * Reads a whole stream (at most o->bound bytes) into a new buffer, charging each piece. A stream
 * larger than the bound is not read here: *big is set and NULL returned. Returns NULL also when
 * the walk must end or libgsf fails (noted as "ole2: truncated"); *err is set for out of memory.
 */
static uint8_t *read_stream(office *o, GsfInput *in, size_t *len, bool *big, int *err)
{
    *len = 0;
    *big = false;
    gsf_off_t size = gsf_input_size(in);
    if (size < 0 || (uint64_t)size > o->bound) {
        *big = size > 0;
        return NULL;
    }
    size_t n = (size_t)size;
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        *err = ENGINE_ENOMEM;
        return NULL;
    }
    for (size_t got = 0; got < n;) {
        size_t k = n - got < CHUNK ? n - got : CHUNK;
        if (!produce(o, k)) {
            free(buf);
            return NULL;
        }
        if (gsf_input_read(in, k, buf + got) == NULL) {
            o->h->note(o->h, "ole2: truncated", true);
            /* What was read is still worth scanning. */
            *len = got;
            return buf;
        }
        got += k;
    }
    *len = n;
    return buf;
}

/* Streams a stream larger than the bound to a stream child. */
static int stream_big(office *o, GsfInput *in, const char *name)
{
    engine__unpack_host *h = o->h;
    uint8_t *buf = malloc(CHUNK);
    if (buf == NULL)
        return ENGINE_ENOMEM;
    if (h->stream_open(h, name)) {
        o->stop = true;
        free(buf);
        return 0;
    }
    gsf_off_t left = gsf_input_size(in);
    while (left > 0 && !o->stop) {
        size_t k = (uint64_t)left < CHUNK ? (size_t)left : CHUNK;
        if (!produce(o, k))
            break;
        if (gsf_input_read(in, k, buf) == NULL) {
            h->note(h, "ole2: truncated", true);
            break;
        }
        if (h->stream_write(h, buf, k))
            o->stop = true;
        left -= (gsf_off_t)k;
    }
    if (h->stream_close(h))
        o->stop = true;
    free(buf);
    return 0;
}

/*
 * Inflates a compressed ExOleObjStg (zlib) into a new buffer of at most min(announced size,
 * bound) bytes, charging as it goes. Returns the buffer (its length in *out_len), or NULL when
 * nothing came out; *err for out of memory.
 */
static uint8_t *inflate_object(office *o, const engine__ppt_object *obj, size_t *out_len, int *err)
{
    *out_len = 0;
    size_t cap = obj->size < o->bound ? obj->size : o->bound;
    size_t allow = ratio_allowance(o);
    if (cap > allow)
        cap = allow;
    if (cap == 0)
        return NULL;
    uint8_t *buf = malloc(cap);
    if (buf == NULL) {
        *err = ENGINE_ENOMEM;
        return NULL;
    }
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit(&z) != Z_OK) {
        free(buf);
        *err = ENGINE_ENOMEM;
        return NULL;
    }
    z.next_in = obj->data;
    z.avail_in = obj->len > (1u << 30) ? 1u << 30 : (uInt)obj->len;
    size_t o_len = 0;
    for (;;) {
        size_t room = cap - o_len < CHUNK ? cap - o_len : CHUNK;
        if (room == 0)
            break;
        z.next_out = buf + o_len;
        z.avail_out = (uInt)room;
        int rc = inflate(&z, Z_NO_FLUSH);
        size_t got = room - z.avail_out;
        if (got > 0 && !produce(o, got))
            break;
        o_len += got;
        if (rc == Z_STREAM_END)
            break;
        if (rc == Z_MEM_ERROR) {
            *err = ENGINE_ENOMEM;
            break;
        }
        if (rc != Z_OK || got == 0) {
            o->h->note(o->h, "ppt: corrupt embedded object", true);
            break;
        }
    }
    inflateEnd(&z);
    *out_len = o_len;
    if (o_len == 0 || *err != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The embedded objects of a PowerPoint Document stream s[0..n), each as a child. */
static int ppt_objects(office *o, const uint8_t *s, size_t n, const char *path)
{
    size_t pos = 0;
    engine__ppt_object obj;
    for (unsigned k = 0; k < MAX_PPT_OBJECTS && !o->stop; k++) {
        int r = engine__ppt_next(s, n, &pos, &obj);
        if (r == ENGINE__PPT_END)
            break;
        if (r == ENGINE__PPT_ECORRUPT) {
            o->h->note(o->h, "ppt: corrupt record", true);
            break;
        }
        if (r == ENGINE__PPT_ENCRYPTED) {
            note_encrypted(o);
            continue;
        }
        if (o->h->out_of_time(o->h)) {
            o->stop = true;
            break;
        }
        char name[PATH_MAX_LEN + 64];
        snprintf(name, sizeof(name), "%s>ExOleObjStg@%zu", path, obj.offset);
        if (!obj.compressed) {
            child(o, obj.data, obj.len, name);
            continue;
        }
        int err = 0;
        size_t ol = 0;
        uint8_t *out = inflate_object(o, &obj, &ol, &err);
        if (out != NULL)
            child(o, out, ol, name);
        free(out);
        if (err != 0)
            return err;
    }
    return 0;
}

/* Reads the whole stream `name` of storage dir, or NULL (not there, too big, or failed). */
static uint8_t *sibling_stream(office *o, GsfInfile *dir, const char *name, size_t *len, int *err)
{
    GsfInput *in = gsf_infile_child_by_name(dir, name);
    if (in == NULL)
        return NULL;
    bool big;
    uint8_t *p = NULL;
    if (!GSF_IS_INFILE(in) || gsf_infile_num_children(GSF_INFILE(in)) < 0)
        p = read_stream(o, in, len, &big, err);
    g_object_unref(in);
    return p;
}

/* Scans the text extracted from a document stream as the child "PATH>text", when there is any
 * and the scan size allows it. */
static void text_child(office *o, const uint8_t *text, size_t tl, const char *path)
{
    if (tl > 0 && produce(o, tl)) {
        char name[PATH_MAX_LEN + 16];
        snprintf(name, sizeof(name), "%s>text", path);
        child(o, text, tl, name);
    }
}

/* Word: the FIB's encryption flag, then the text through the piece table. */
static int word_text(office *o, GsfInfile *dir, const uint8_t *wd, size_t wn, const char *path)
{
    bool enc, t1;
    if (!engine__word_fib(wd, wn, &enc, &t1))
        return 0;
    if (enc) {
        note_encrypted(o);
        return 0;
    }
    int err = 0;
    size_t tn = 0;
    uint8_t *tbl = sibling_stream(o, dir, t1 ? "1Table" : "0Table", &tn, &err);
    if (tbl == NULL)
        return err;
    /* Pieces may repeat, but the text is bounded by the document's stream, narrowed. */
    size_t cap = wn / 2 * 3 + 1;
    if (cap > o->bound)
        cap = o->bound;
    uint8_t *text = malloc(cap);
    if (text == NULL) {
        free(tbl);
        return ENGINE_ENOMEM;
    }
    size_t tl = engine__word_text(wd, wn, tbl, tn, text, cap);
    free(tbl);
    text_child(o, text, tl, path);
    free(text);
    return 0;
}

/* Excel: the text of its shared strings and labels, as "Workbook>text". */
static int excel_text(office *o, const uint8_t *s, size_t n, const char *path)
{
    size_t cap = n / 2 * 3 + 16;
    if (cap > o->bound)
        cap = o->bound;
    uint8_t *text = malloc(cap);
    if (text == NULL)
        return ENGINE_ENOMEM;
    size_t tl = engine__excel_text(s, n, text, cap);
    text_child(o, text, tl, path);
    free(text);
    return 0;
}

/* A VBA module: its compressed source from text_offset, decompressed, as the child. */
static int vba_module(office *o, const uint8_t *s, size_t n, uint32_t text_offset, const char *path)
{
    if (text_offset >= n) {
        o->h->note(o->h, "vba: corrupt module", true);
        child(o, s, n, path);
        return 0;
    }
    /* A chunk of at most 4098 bytes yields 4096: the source is at most about the stream's size
     * times 4096/3 (copy tokens), bounded by the member bound and charged below. */
    size_t comp = n - text_offset;
    size_t cap = comp > o->bound / 1366 ? o->bound : comp * 1366 + 4096;
    if (cap > o->bound)
        cap = o->bound;
    size_t allow = ratio_allowance(o);
    if (cap > allow)
        cap = allow;
    uint8_t *src = malloc(cap);
    if (src == NULL)
        return ENGINE_ENOMEM;
    size_t sl = 0;
    int rc = engine__ovba_decompress(s + text_offset, comp, src, cap, &sl);
    if (rc < 0)
        o->h->note(o->h, "vba: corrupt module", true);
    if (sl > 0 && produce(o, sl))
        child(o, src, sl, path);
    else if (sl == 0)
        child(o, s, n, path);
    free(src);
    return 0;
}

/* Reads a storage's `dir` stream, when it has one, into its module list. */
static int vba_project_read(office *o, GsfInfile *dir, vba_project *vp)
{
    vp->mods = NULL;
    vp->count = 0;
    GsfInput *in = gsf_infile_child_by_name(dir, "dir");
    if (in == NULL)
        return 0;
    int err = 0;
    size_t n = 0;
    bool big = false;
    uint8_t *raw = NULL;
    if (!GSF_IS_INFILE(in) || gsf_infile_num_children(GSF_INFILE(in)) < 0)
        raw = read_stream(o, in, &n, &big, &err);
    g_object_unref(in);
    if (raw == NULL)
        return err;
    uint8_t *d = malloc(DIR_MAX);
    vp->mods = malloc(MAX_MODULES * sizeof(*vp->mods));
    if (d == NULL || vp->mods == NULL) {
        free(raw);
        free(d);
        free(vp->mods);
        vp->mods = NULL;
        return ENGINE_ENOMEM;
    }
    size_t dl = 0;
    int rc = engine__ovba_decompress(raw, n, d, DIR_MAX, &dl);
    free(raw);
    int count =
        rc == ENGINE__OVBA_EBADSIG ? -1 : engine__ovba_dir_modules(d, dl, vp->mods, MAX_MODULES);
    free(d);
    if (count < 0 || rc < 0)
        o->h->note(o->h, "vba: corrupt dir stream", true);
    vp->count = count > 0 ? count : 0;
    return 0;
}

/* The module of vp whose stream is `name`, or NULL. */
static const engine__ovba_module *vba_find(const vba_project *vp, const char *name)
{
    for (int i = 0; i < vp->count; i++)
        if (strcasecmp(vp->mods[i].stream, name) == 0)
            return &vp->mods[i];
    return NULL;
}

/* One stream of storage dir at `path` (its own name `name`). */
static int do_stream(office *o, GsfInfile *dir, GsfInput *in, const char *path, const char *name,
                     const vba_project *vp)
{
    engine__unpack_host *h = o->h;
    if (o->taken >= h->cfg->max_files) {
        h->note(h, "Limits.Exceeded.MaxFiles", false);
        o->stop = true;
        return 0;
    }
    o->taken++;
    int err = 0;
    size_t n = 0;
    bool big = false;
    uint8_t *s = read_stream(o, in, &n, &big, &err);
    if (s == NULL) {
        if (big && !o->stop)
            return stream_big(o, in, path);
        return err;
    }
    const engine__ovba_module *m = vba_find(vp, name);
    if (m != NULL) {
        err = vba_module(o, s, n, m->text_offset, path);
    } else if (strcmp(name, "\001Ole10Native") == 0) {
        /* The payload first, so that a match in it names the embedded file. */
        engine__native nat;
        if (engine__ole10native_parse(s, n, &nat) == 0 && nat.len > 0) {
            char cname[PATH_MAX_LEN + 160];
            snprintf(cname, sizeof(cname), "%s>%s", path, nat.name);
            child(o, nat.data, nat.len, cname);
        }
        child(o, s, n, path);
    } else {
        /* What is decoded from a stream goes first, then the stream's own bytes. */
        if (strcmp(name, "WordDocument") == 0) {
            err = word_text(o, dir, s, n, path);
        } else if (strcmp(name, "Workbook") == 0 || strcmp(name, "Book") == 0) {
            if (engine__excel_encrypted(s, n))
                note_encrypted(o);
            else
                err = excel_text(o, s, n, path);
        } else if (strcmp(name, "PowerPoint Document") == 0) {
            err = ppt_objects(o, s, n, path);
        }
        if (err == 0)
            child(o, s, n, path);
    }
    free(s);
    return err;
}

/* Walks one storage: its VBA project if it is one, then every child in directory order. */
static int walk(office *o, GsfInfile *dir, char *path, size_t plen, unsigned level)
{
    if (level >= MAX_STORAGE_DEPTH) {
        o->h->note(o->h, "ole2: storages nested too deep", true);
        return 0;
    }
    vba_project vp;
    int err = vba_project_read(o, dir, &vp);
    int count = gsf_infile_num_children(dir);
    for (int i = 0; i < count && err == 0 && !o->stop; i++) {
        if (o->h->out_of_time(o->h)) {
            o->stop = true;
            break;
        }
        const char *name = gsf_infile_name_by_index(dir, i);
        GsfInput *in = gsf_infile_child_by_index(dir, i);
        if (in == NULL || name == NULL) {
            o->h->note(o->h, "ole2: corrupt", true);
            if (in != NULL)
                g_object_unref(in);
            continue;
        }
        size_t k = plen;
        if (k > 0 && k + 1 < PATH_MAX_LEN)
            path[k++] = '/';
        path[k] = '\0';
        put_name(path, PATH_MAX_LEN, &k, name, o->type == ENGINE__CT_MSI);
        int sub = GSF_IS_INFILE(in) ? gsf_infile_num_children(GSF_INFILE(in)) : -1;
        if (sub >= 0)
            err = walk(o, GSF_INFILE(in), path, k, level + 1);
        else
            err = do_stream(o, dir, in, path, name, &vp);
        path[plen] = '\0';
        g_object_unref(in);
    }
    free(vp.mods);
    return err;
}

/*
 * A check of the compound file's directory before libgsf parses it. libgsf 1.14.50 builds its
 * directory tree recursively, one stack frame per step along the sibling and child links, and
 * inserts each entry into a sorted list: a crafted 6 MiB file whose 50,000 entries form one
 * sibling chain overflows the stack (a crash of the scanning process) after seconds of
 * quadratic work; entry 0 with siblings of its own makes it leak those entries. So the tree is
 * walked here first, iteratively, from the sector tables ([MS-CFB] 2.2 header, 2.3 FAT, 2.5
 * DIFAT, 2.6 directory): entry 0 must be a sibling-free root storage (type 5), no entry may be
 * reached twice (a cycle), the links must not nest deeper than DIR_MAX_DEPTH (a real file's
 * red-black trees stay under 2 log2(n) + its storage nesting) and at most DIR_MAX_ENTRIES
 * entries may be reachable. A file failing any of these is "ole2: corrupt" (or "ole2: directory
 * too large") and libgsf never sees it. Found by tests/fuzz/fuzz_ole2.c and by hand.
 */
#define DIR_MAX_DEPTH   256
#define DIR_MAX_ENTRIES 8192

#define CFB_FREE       0xFFFFFFFFu
#define CFB_ENDOFCHAIN 0xFFFFFFFEu
#define CFB_MAXREGSECT 0xFFFFFFFAu

/* Outcomes of the check besides 0 and ENGINE_ENOMEM (positive, so never an error code). */
#define CFB_BAD 2 /* malformed: refused as corrupt */
#define CFB_BIG 3 /* more reachable entries than DIR_MAX_ENTRIES */

/* The sector tables of a compound file in memory. */
typedef struct cfb {
    const uint8_t *p;
    size_t n;
    unsigned shift;
    size_t ssz;    /* sector size */
    size_t nsect;  /* sectors the file holds after its header */
    uint32_t *fat; /* FAT sector ids, from the DIFAT */
    size_t nfat;
} cfb;

/* The file offset of sector s, or 0 when it is not inside the file. */
static size_t cfb_sector(const cfb *c, uint32_t s)
{
    if (s > CFB_MAXREGSECT || s >= c->nsect)
        return 0;
    return ((size_t)s + 1) << c->shift;
}

/* The FAT entry of sector s (the next sector of its chain), or CFB_FREE when unreadable. */
static uint32_t cfb_next(const cfb *c, uint32_t s)
{
    size_t per = c->ssz / 4;
    size_t k = s / per;
    if (k >= c->nfat)
        return CFB_FREE;
    size_t at = cfb_sector(c, c->fat[k]);
    if (at == 0)
        return CFB_FREE;
    return rd32(c->p + at + (s % per) * 4);
}

/* Reads the header and the DIFAT. Returns 0, CFB_BAD for a malformed file, or ENGINE_ENOMEM. */
static int cfb_open(cfb *c, const uint8_t *p, size_t n)
{
    memset(c, 0, sizeof(*c));
    if (n < 512)
        return CFB_BAD;
    c->p = p;
    c->n = n;
    c->shift = rd16(p + 30);
    if (c->shift != 9 && c->shift != 12)
        return CFB_BAD;
    c->ssz = (size_t)1 << c->shift;
    if (n <= c->ssz)
        return CFB_BAD;
    c->nsect = (n - c->ssz) / c->ssz;
    size_t want = rd32(p + 44);
    if (want > c->nsect)
        return CFB_BAD;
    c->fat = malloc((want ? want : 1) * sizeof(*c->fat));
    if (c->fat == NULL)
        return ENGINE_ENOMEM;
    for (size_t i = 0; i < 109 && c->nfat < want; i++)
        c->fat[c->nfat++] = rd32(p + 76 + 4 * i);
    uint32_t ds = rd32(p + 68);
    for (size_t hops = 0; c->nfat < want && hops <= c->nsect; hops++) {
        size_t at = cfb_sector(c, ds);
        if (at == 0)
            return CFB_BAD;
        size_t per = c->ssz / 4 - 1;
        for (size_t i = 0; i < per && c->nfat < want; i++)
            c->fat[c->nfat++] = rd32(p + at + 4 * i);
        ds = rd32(p + at + 4 * per);
    }
    return c->nfat == want ? 0 : CFB_BAD;
}

/* Checks the directory tree as described above. Returns 0, CFB_BAD, CFB_BIG or ENGINE_ENOMEM. */
static int cfb_check_directory(const cfb *c)
{
    /* The directory's sectors, in chain order. */
    size_t cap = c->nsect < 65536 ? c->nsect : 65536, nd = 0;
    uint32_t *secs = malloc((cap ? cap : 1) * sizeof(*secs));
    if (secs == NULL)
        return ENGINE_ENOMEM;
    uint32_t s = rd32(c->p + 48);
    while (s != CFB_ENDOFCHAIN && nd < cap && cfb_sector(c, s) != 0) {
        secs[nd++] = s;
        s = cfb_next(c, s);
    }
    size_t per = c->ssz / 128, nent = nd * per;
    int rc = nd == 0 ? CFB_BAD : 0;
    uint8_t *seen = rc == 0 ? calloc(nent, 1) : NULL;
    struct {
        uint32_t id, depth;
    } *stack = rc == 0 ? malloc(sizeof(*stack) * (DIR_MAX_ENTRIES * 3 + 3)) : NULL;
    if (rc == 0 && (seen == NULL || stack == NULL))
        rc = ENGINE_ENOMEM;
    size_t top = 0, count = 0;
    if (rc == 0) {
        const uint8_t *root = c->p + cfb_sector(c, secs[0]);
        if (root[0x42] != 5 || rd32(root + 0x44) != CFB_FREE || rd32(root + 0x48) != CFB_FREE)
            rc = CFB_BAD;
        stack[top].id = 0;
        stack[top++].depth = 0;
    }
    while (rc == 0 && top > 0) {
        top--;
        uint32_t id = stack[top].id, depth = stack[top].depth;
        if (id >= nent || seen[id]) {
            rc = CFB_BAD;
            break;
        }
        seen[id] = 1;
        if (++count > DIR_MAX_ENTRIES) {
            rc = CFB_BIG;
            break;
        }
        if (depth > DIR_MAX_DEPTH) {
            rc = CFB_BAD;
            break;
        }
        const uint8_t *e = c->p + cfb_sector(c, secs[id / per]) + (id % per) * 128;
        uint8_t type = e[0x42];
        if (type != 1 && type != 2 && type != 5)
            continue; /* libgsf skips it, and its links */
        uint32_t links[3] = {rd32(e + 0x44), rd32(e + 0x48), type == 2 ? CFB_FREE : rd32(e + 0x4C)};
        for (int k = 0; k < 3; k++)
            if (links[k] != CFB_FREE && !(id == 0 && k < 2)) {
                stack[top].id = links[k];
                stack[top++].depth = depth + 1;
            }
    }
    free(stack);
    free(seen);
    free(secs);
    return rc;
}

/* Runs the directory check; notes why a file is refused. Returns 0 (go on), 1 (refused) or
 * ENGINE_ENOMEM. */
static int precheck(engine__unpack_host *h, const uint8_t *data, size_t len)
{
    cfb c;
    int rc = cfb_open(&c, data, len);
    if (rc == 0)
        rc = cfb_check_directory(&c);
    free(c.fat);
    if (rc == ENGINE_ENOMEM)
        return rc;
    if (rc == CFB_BIG)
        h->note(h, "ole2: directory too large", true);
    else if (rc != 0)
        h->note(h, "ole2: corrupt", true);
    return rc == 0 ? 0 : 1;
}

int engine__unpack_ole2(engine__unpack_host *h, engine__ctype t, const uint8_t *data, size_t len)
{
    int pre = precheck(h, data, len);
    if (pre != 0)
        return pre == 1 ? 0 : pre;
    engine__office_global_init();
    uint64_t bound =
        h->cfg->max_scan_size < MEMBER_BOUND_MAX ? h->cfg->max_scan_size : MEMBER_BOUND_MAX;
    office o = {.h = h, .type = t, .len = len, .bound = bound > 0 ? (size_t)bound : 1};
    GsfInput *in = gsf_input_memory_new(data, (gsf_off_t)len, FALSE);
    if (in == NULL)
        return ENGINE_ENOMEM;
    GError *gerr = NULL;
    GsfInfile *root = gsf_infile_msole_new(in, &gerr);
    g_object_unref(in);
    if (root == NULL) {
        if (gerr != NULL)
            g_error_free(gerr);
        h->note(h, "ole2: corrupt", true);
        return 0;
    }
    static const char *const enc_streams[] = {"EncryptionInfo", "EncryptedPackage",
                                              "EncryptedSummary"};
    for (size_t i = 0; i < sizeof(enc_streams) / sizeof(enc_streams[0]); i++) {
        GsfInput *e = gsf_infile_child_by_name(root, enc_streams[i]);
        if (e != NULL) {
            note_encrypted(&o);
            g_object_unref(e);
        }
    }
    char *path = malloc(PATH_MAX_LEN);
    int err = path == NULL ? ENGINE_ENOMEM : 0;
    if (path != NULL) {
        path[0] = '\0';
        err = walk(&o, root, path, 0, 0);
    }
    free(path);
    g_object_unref(root);
    return err;
}
