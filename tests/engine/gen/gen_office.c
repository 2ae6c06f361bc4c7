/*
 * gen_office.c - Office document writers for the tests (see gen_office.h).
 *
 * Layouts written from the specifications: [MS-OVBA] 2.4.1 (compression) and 2.3.4.2 (the dir
 * stream's records, PROJECTVERSION's irregular size included); [MS-DOC] 2.5.1 (FibBase, the
 * csw/cslw/cbRgFcLcb counts, fcClx as the 34th pair of FibRgFcLcb97) and 2.9.38 (the CLX, a Pcdt
 * holding a PlcPcd); [MS-XLS] 2.4 (BOF, FILEPASS, LABEL, EOF records); [MS-PPT] 2.3.1 (record
 * headers) and 2.10.34 (ExOleObjStg, compressed when recInstance is 1); the OLE Packager's
 * Ole10Native layout. The compound file and ZIP containers are libgsf's.
 */
#include "gen_office.h"

#include <gsf/gsf-outfile-msole.h>
#include <gsf/gsf-outfile-zip.h>
#include <gsf/gsf-outfile.h>
#include <gsf/gsf-output-memory.h>
#include <gsf/gsf-utils.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

const uint8_t gen_msi_clsid[16] = {0x84, 0x10, 0x0C, 0x00, 0, 0, 0, 0,
                                   0xC0, 0,    0,    0,    0, 0, 0, 0x46};

void gen_office_init(void)
{
    static int done;
    if (!done) {
        gsf_init();
        done = 1;
    }
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

static void set32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ------------------------------------------------------------------------------------------ */
/* MS-OVBA compression.                                                                        */

/* The offset width of a copy token d bytes into its chunk (d >= 1). */
static unsigned bits_for(size_t d)
{
    unsigned bits = 4;
    while (bits < 12 && ((size_t)1 << bits) < d)
        bits++;
    return bits;
}

/* Compresses one chunk c[0..n) (n <= 4096) to its token sequences in *out. */
static int compress_chunk(const uint8_t *c, size_t n, gen_buf *out)
{
    size_t i = 0;
    while (i < n) {
        size_t flag_at = out->n;
        if (put8(out, 0) != 0)
            return -1;
        uint8_t flags = 0;
        for (int bit = 0; bit < 8 && i < n; bit++) {
            size_t best_len = 0, best_off = 0;
            if (i > 0) {
                unsigned bits = bits_for(i);
                size_t max_len = (0xFFFFu >> bits) + 3;
                size_t max_off = i < ((size_t)1 << bits) ? i : (size_t)1 << bits;
                for (size_t off = 1; off <= max_off; off++) {
                    size_t l = 0;
                    while (l < max_len && i + l < n && c[i + l] == c[i + l - off])
                        l++;
                    if (l > best_len) {
                        best_len = l;
                        best_off = off;
                    }
                }
            }
            if (best_len >= 3) {
                unsigned bits = bits_for(i);
                uint16_t tok = (uint16_t)(((best_off - 1) << (16 - bits)) | (best_len - 3));
                if (put16(out, tok) != 0)
                    return -1;
                flags |= (uint8_t)(1u << bit);
                i += best_len;
            } else {
                if (put8(out, c[i]) != 0)
                    return -1;
                i++;
            }
        }
        out->p[flag_at] = flags;
    }
    return 0;
}

int gen_ovba_compress(const void *in, size_t n, gen_buf *out)
{
    const uint8_t *p = in;
    if (put8(out, 0x01) != 0)
        return -1;
    for (size_t at = 0; at < n; at += 4096) {
        size_t k = n - at < 4096 ? n - at : 4096;
        gen_buf tmp = {0};
        if (compress_chunk(p + at, k, &tmp) != 0) {
            gen_buf_free(&tmp);
            return -1;
        }
        int rc;
        if (tmp.n > 4096) {
            /* A raw chunk: 4096 literal bytes, a short last chunk padded with zeros. */
            static const uint8_t zeros[4096];
            rc = put16(out, (4098 - 3) | 0x3000u) || gen_put(out, p + at, k) ||
                 gen_put(out, zeros, 4096 - k);
        } else {
            rc = put16(out, (unsigned)(tmp.n + 2 - 3) | 0xB000u) || gen_put(out, tmp.p, tmp.n);
        }
        gen_buf_free(&tmp);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Containers through libgsf.                                                                  */

#define MAX_LEVELS 8

/* Writes the parts into outfile, opening and closing storages (directories) as paths change. */
static int write_parts(GsfOutfile *root, const gen_part *parts, size_t n)
{
    GsfOutfile *stack[MAX_LEVELS];
    char names[MAX_LEVELS][64];
    int depth = 0;
    int rc = 0;
    stack[0] = root;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[512];
        snprintf(path, sizeof(path), "%s", parts[i].path);
        char *comp[MAX_LEVELS + 1];
        int nc = 0;
        for (char *tok = strtok(path, "/"); tok && nc <= MAX_LEVELS; tok = strtok(NULL, "/"))
            comp[nc++] = tok;
        if (nc == 0 || nc > MAX_LEVELS)
            return -1;
        /* Keep the storages the path shares with the open ones. */
        int keep = 0;
        while (keep < depth && keep < nc - 1 && strcmp(names[keep], comp[keep]) == 0)
            keep++;
        while (depth > keep) {
            gsf_output_close(GSF_OUTPUT(stack[depth]));
            g_object_unref(stack[depth]);
            depth--;
        }
        while (depth < nc - 1) {
            GsfOutput *d = gsf_outfile_new_child(stack[depth], comp[depth], TRUE);
            if (d == NULL)
                return -1;
            snprintf(names[depth], sizeof(names[depth]), "%s", comp[depth]);
            stack[++depth] = GSF_OUTFILE(d);
        }
        GsfOutput *s = gsf_outfile_new_child(stack[depth], comp[nc - 1], FALSE);
        if (s == NULL) {
            rc = -1;
            break;
        }
        if (parts[i].len > 0 && !gsf_output_write(s, parts[i].len, parts[i].data))
            rc = -1;
        gsf_output_close(s);
        g_object_unref(s);
    }
    while (depth > 0) {
        gsf_output_close(GSF_OUTPUT(stack[depth]));
        g_object_unref(stack[depth]);
        depth--;
    }
    return rc;
}

/* Closes the outfile and copies what its memory sink holds into *out. */
static int finish(GsfOutfile *of, GsfOutput *sink, gen_buf *out)
{
    gsf_output_close(GSF_OUTPUT(of));
    g_object_unref(of);
    if (!gsf_output_is_closed(sink))
        gsf_output_close(sink);
    const guint8 *bytes = gsf_output_memory_get_bytes(GSF_OUTPUT_MEMORY(sink));
    size_t size = (size_t)gsf_output_size(sink);
    int rc = bytes != NULL ? gen_put(out, bytes, size) : -1;
    g_object_unref(sink);
    return rc;
}

int gen_ole2(const gen_part *parts, size_t n, const uint8_t *clsid, gen_buf *out)
{
    gen_office_init();
    GsfOutput *sink = gsf_output_memory_new();
    GsfOutfile *ole = gsf_outfile_msole_new(sink);
    if (ole == NULL) {
        g_object_unref(sink);
        return -1;
    }
    if (clsid != NULL)
        gsf_outfile_msole_set_class_id(GSF_OUTFILE_MSOLE(ole), clsid);
    int rc = write_parts(ole, parts, n);
    if (finish(ole, sink, out) != 0)
        rc = -1;
    return rc;
}

int gen_ooxml(const gen_part *parts, size_t n, gen_buf *out)
{
    gen_office_init();
    GsfOutput *sink = gsf_output_memory_new();
    GsfOutfile *zip = gsf_outfile_zip_new(sink, NULL);
    if (zip == NULL) {
        g_object_unref(sink);
        return -1;
    }
    int rc = write_parts(zip, parts, n);
    if (finish(zip, sink, out) != 0)
        rc = -1;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* VBA.                                                                                        */

/* One dir record: id, size, data. */
static int rec(gen_buf *b, unsigned id, const void *data, size_t n)
{
    return put16(b, id) || put32(b, (uint32_t)n) || gen_put(b, data, n);
}

static int rec32(gen_buf *b, unsigned id, uint32_t v)
{
    return put16(b, id) || put32(b, 4) || put32(b, v);
}

static int rec16(gen_buf *b, unsigned id, unsigned v)
{
    return put16(b, id) || put32(b, 2) || put16(b, v);
}

/* A string as UTF-16LE (ASCII only). */
static int rec_wide(gen_buf *b, unsigned id, const char *s)
{
    size_t n = strlen(s);
    if (put16(b, id) || put32(b, (uint32_t)(2 * n)))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (put16(b, (unsigned char)s[i]))
            return -1;
    return 0;
}

int gen_vba_dir(const char *const *names, const uint32_t *text_offset, size_t n, gen_buf *out)
{
    gen_buf d = {0};
    int rc = rec32(&d, 0x0001, 1) || rec32(&d, 0x0002, 0x409) || rec32(&d, 0x0014, 0x409) ||
             rec16(&d, 0x0003, 1252) || rec(&d, 0x0004, "VBAProject", 10) ||
             rec(&d, 0x0005, "", 0) || rec(&d, 0x0040, "", 0) || rec(&d, 0x0006, "", 0) ||
             rec(&d, 0x003D, "", 0) || rec32(&d, 0x0007, 0) || rec32(&d, 0x0008, 0);
    /* PROJECTVERSION: Size says 4, then 4 + 2 bytes of version follow. */
    rc = rc || put16(&d, 0x0009) || put32(&d, 4) || put32(&d, 0x5A) || put16(&d, 2);
    rc = rc || rec(&d, 0x000C, "", 0) || rec(&d, 0x003C, "", 0);
    rc = rc || rec16(&d, 0x000F, (unsigned)n) || rec16(&d, 0x0013, 0xFFFF);
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t len = strlen(names[i]);
        rc = rec(&d, 0x0019, names[i], len) || rec_wide(&d, 0x0047, names[i]) ||
             rec(&d, 0x001A, names[i], len) || rec_wide(&d, 0x0032, names[i]) ||
             rec(&d, 0x001C, "", 0) || rec(&d, 0x0048, "", 0) ||
             rec32(&d, 0x0031, text_offset[i]) || rec32(&d, 0x001E, 0) ||
             rec16(&d, 0x002C, 0xFFFF) || rec(&d, 0x0021, "", 0) || rec(&d, 0x002B, "", 0);
    }
    rc = rc || rec(&d, 0x0010, "", 0);
    rc = rc || gen_ovba_compress(d.p, d.n, out);
    gen_buf_free(&d);
    return rc ? -1 : 0;
}

int gen_vba_module(const char *source, size_t pcode, gen_buf *out)
{
    for (size_t i = 0; i < pcode; i++)
        if (put8(out, (unsigned)(i * 7 + 1)) != 0)
            return -1;
    return gen_ovba_compress(source, strlen(source), out);
}

int gen_vba_project(const char *storage, const char *name, const char *source, gen_part parts[3],
                    gen_buf bufs[3], char paths[3][128])
{
    memset(bufs, 0, 3 * sizeof(*bufs));
    uint32_t off = 333;
    static const uint8_t vba_project[7] = {0xCC, 0x61, 0xFF, 0xFF, 0x00, 0x00, 0x00};
    if (gen_vba_dir(&name, &off, 1, &bufs[0]) || gen_put(&bufs[1], vba_project, 7) ||
        gen_vba_module(source, off, &bufs[2]))
        return -1;
    snprintf(paths[0], 128, "%s/dir", storage);
    snprintf(paths[1], 128, "%s/_VBA_PROJECT", storage);
    snprintf(paths[2], 128, "%s/%s", storage, name);
    for (int i = 0; i < 3; i++)
        parts[i] = (gen_part){paths[i], bufs[i].p, bufs[i].n};
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Embedded objects and document streams.                                                      */

int gen_ole10native(const char *label, const char *path, const void *data, size_t len, gen_buf *out)
{
    gen_buf b = {0};
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "C:\\Users\\x\\AppData\\Local\\Temp\\%s", label);
    size_t tl = strlen(tmp) + 1;
    int rc = put16(&b, 2) || gen_put(&b, label, strlen(label) + 1) ||
             gen_put(&b, path, strlen(path) + 1) || put16(&b, 0) || put16(&b, 3) ||
             put32(&b, (uint32_t)tl) || gen_put(&b, tmp, tl) || put32(&b, (uint32_t)len) ||
             gen_put(&b, data, len);
    rc = rc || put32(out, (uint32_t)b.n) || gen_put(out, b.p, b.n);
    gen_buf_free(&b);
    return rc ? -1 : 0;
}

int gen_word(const char *text, bool encrypted, gen_buf *word, gen_buf *table)
{
    size_t chars = strlen(text);
    const size_t text_at = 0x800;
    size_t size = text_at + 2 * chars + 512;
    uint8_t *w = calloc(1, size);
    if (w == NULL)
        return -1;
    set16(w, 0xA5EC);                                     /* wIdent */
    set16(w + 2, 0x00C1);                                 /* nFib: Word 97 */
    set16(w + 0x0A, 0x0200u | (encrypted ? 0x0100u : 0)); /* fWhichTblStm (1Table), fEncrypted */
    size_t i = 32;
    set16(w + i, 14); /* csw */
    i += 2 + 28;
    set16(w + i, 22);                          /* cslw */
    set32(w + i + 2 + 3 * 4, (uint32_t)chars); /* ccpText */
    i += 2 + 88;
    set16(w + i, 0x5D); /* cbRgFcLcb: Word 97 */
    i += 2;
    /* fcClx, lcbClx (pair 33): the CLX sits at the start of 1Table. */
    size_t plc = 4 * 2 + 8;
    set32(w + i + 33 * 8, 0);
    set32(w + i + 33 * 8 + 4, (uint32_t)(5 + plc));
    for (size_t k = 0; k < chars; k++)
        w[text_at + 2 * k] = (uint8_t)text[k];
    int rc = gen_put(word, w, size);
    free(w);
    /* Pcdt: 0x02, lcb, PlcPcd = CPs {0, chars}, one PCD {flags, fc, prm}. */
    rc = rc || put8(table, 0x02) || put32(table, (uint32_t)plc) || put32(table, 0) ||
         put32(table, (uint32_t)chars) || put16(table, 0) || put32(table, (uint32_t)text_at) ||
         put16(table, 0);
    return rc ? -1 : 0;
}

int gen_workbook(const char *text, bool encrypted, gen_buf *out)
{
    static const uint8_t bof[16] = {0x00, 0x06, 0x05, 0x00};
    size_t n = strlen(text);
    int rc = put16(out, 0x0809) || put16(out, 16) || gen_put(out, bof, 16);
    if (encrypted) {
        /* FILEPASS with RC4 CryptoAPI: wEncryptionType 1, then a fake header. */
        static const uint8_t fp[54] = {0x01, 0x00, 0x01, 0x00, 0x01, 0x00};
        rc = rc || put16(out, 0x002F) || put16(out, sizeof(fp)) || gen_put(out, fp, sizeof(fp));
    }
    /* LABEL: row, col, xf, then an XLUnicodeString (cch, flags 0 = 8-bit). */
    rc = rc || put16(out, 0x0204) || put16(out, (unsigned)(6 + 3 + n)) || put16(out, 0) ||
         put16(out, 0) || put16(out, 15) || put16(out, (unsigned)n) || put8(out, 0) ||
         gen_put(out, text, n);
    rc = rc || put16(out, 0x000A) || put16(out, 0);
    return rc ? -1 : 0;
}

int gen_workbook_sst(const char *text, gen_buf *out)
{
    static const uint8_t bof[16] = {0x00, 0x06, 0x05, 0x00};
    size_t n = strlen(text), half = n / 2;
    gen_buf sst = {0}, cont = {0};
    /* SST: counts, "first" 8-bit, then `text` UTF-16 with its first half here. */
    int rc = put32(&sst, 2) || put32(&sst, 2) || put16(&sst, 5) || put8(&sst, 0) ||
             gen_put(&sst, "first", 5) || put16(&sst, (unsigned)n) || put8(&sst, 0x01);
    for (size_t i = 0; i < half && rc == 0; i++)
        rc = put16(&sst, (unsigned char)text[i]);
    /* CONTINUE: a flags byte (UTF-16 again), then the rest. */
    rc = rc || put8(&cont, 0x01);
    for (size_t i = half; i < n && rc == 0; i++)
        rc = put16(&cont, (unsigned char)text[i]);
    rc = rc || put16(out, 0x0809) || put16(out, 16) || gen_put(out, bof, 16) ||
         put16(out, 0x00FC) || put16(out, (unsigned)sst.n) || gen_put(out, sst.p, sst.n) ||
         put16(out, 0x003C) || put16(out, (unsigned)cont.n) || gen_put(out, cont.p, cont.n) ||
         put16(out, 0x000A) || put16(out, 0);
    gen_buf_free(&sst);
    gen_buf_free(&cont);
    return rc ? -1 : 0;
}

int gen_ppt_document(const void *obj, size_t len, bool compressed, gen_buf *out)
{
    gen_buf body = {0};
    int rc = 0;
    if (compressed) {
        uLongf zl = compressBound((uLong)len);
        uint8_t *z = malloc(zl);
        if (z == NULL || compress2(z, &zl, obj, (uLong)len, 9) != Z_OK) {
            free(z);
            return -1;
        }
        rc = put32(&body, (uint32_t)len) || gen_put(&body, z, zl);
        free(z);
    } else {
        rc = gen_put(&body, obj, len);
    }
    /* A DocumentContainer with a DocumentAtom-sized atom, then the ExOleObjStg after it. */
    static const uint8_t doc_atom[40] = {0};
    size_t doc_len = 8 + sizeof(doc_atom);
    rc = rc || put16(out, 0x000F) || put16(out, 0x03E8) || put32(out, (uint32_t)doc_len) ||
         put16(out, 0x0001) || put16(out, 0x03E9) || put32(out, sizeof(doc_atom)) ||
         gen_put(out, doc_atom, sizeof(doc_atom));
    rc = rc || put16(out, compressed ? 0x0010 : 0x0000) || put16(out, 0x1011) ||
         put32(out, (uint32_t)body.n) || gen_put(out, body.p, body.n);
    gen_buf_free(&body);
    return rc ? -1 : 0;
}

/* Links entries [lo, hi) as a balanced tree; returns its root id (0xFFFFFFFF when empty). */
static uint32_t balance(uint8_t *dir, uint32_t lo, uint32_t hi)
{
    if (lo >= hi)
        return 0xFFFFFFFFu;
    uint32_t mid = lo + (hi - lo) / 2;
    set32(dir + mid * 128 + 0x44, balance(dir, lo, mid));
    set32(dir + mid * 128 + 0x48, balance(dir, mid + 1, hi));
    return mid;
}

int gen_ole2_directory(unsigned entries, bool chain, gen_buf *out)
{
    /* Header, FAT sectors, then the directory; 512-byte sectors, at most 109 FAT sectors. */
    size_t dir_secs = ((size_t)entries * 128 + 511) / 512;
    size_t fat_secs = (dir_secs + 127) / 128 + 1;
    if (entries < 1 || fat_secs > 109)
        return -1;
    size_t size = 512 * (1 + fat_secs + dir_secs);
    uint8_t *p = calloc(1, size);
    if (p == NULL)
        return -1;
    static const uint8_t sig[8] = {0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1};
    memcpy(p, sig, 8);
    set16(p + 24, 0x3E);
    set16(p + 26, 3);
    set16(p + 28, 0xFFFE);
    set16(p + 30, 9);
    set16(p + 32, 6);
    set32(p + 44, (uint32_t)fat_secs);
    set32(p + 48, (uint32_t)fat_secs);
    set32(p + 56, 4096);
    set32(p + 60, 0xFFFFFFFEu);
    set32(p + 68, 0xFFFFFFFEu);
    for (size_t i = 0; i < 109; i++)
        set32(p + 76 + 4 * i, i < fat_secs ? (uint32_t)i : 0xFFFFFFFFu);
    uint8_t *fat = p + 512;
    for (size_t i = 0; i < fat_secs * 128; i++)
        set32(fat + 4 * i, 0xFFFFFFFFu);
    for (size_t i = 0; i < fat_secs; i++)
        set32(fat + 4 * i, 0xFFFFFFFDu);
    for (size_t i = 0; i < dir_secs; i++) {
        size_t sct = fat_secs + i;
        set32(fat + 4 * sct, i + 1 < dir_secs ? (uint32_t)(sct + 1) : 0xFFFFFFFEu);
    }
    uint8_t *dir = p + 512 * (1 + fat_secs);
    for (uint32_t i = 0; i < entries; i++) {
        uint8_t *e = dir + (size_t)i * 128;
        char name[16];
        int k = i == 0 ? snprintf(name, sizeof(name), "Root Entry")
                       : snprintf(name, sizeof(name), "S%u", (unsigned)i);
        for (int j = 0; j < k; j++)
            e[2 * j] = (uint8_t)name[j];
        set16(e + 64, (unsigned)(2 * k + 2));
        e[66] = i == 0 ? 5 : 2;
        e[67] = 1;
        set32(e + 0x44, 0xFFFFFFFFu);
        set32(e + 0x48, chain && i > 0 && i + 1 < entries ? i + 1 : 0xFFFFFFFFu);
        set32(e + 0x4C, 0xFFFFFFFFu);
        set32(e + 116, 0xFFFFFFFEu);
    }
    uint32_t first = entries > 1 ? 1 : 0xFFFFFFFFu;
    if (!chain)
        first = balance(dir, 1, entries);
    set32(dir + 0x4C, first);
    int rc = gen_put(out, p, size);
    free(p);
    return rc;
}

void gen_msi_name(const char *name, char *out, size_t cap)
{
    static const char chars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz._";
    size_t k = 0, n = strlen(name);
    for (size_t i = 0; i < n && k + 4 < cap; i += 2) {
        const char *a = strchr(chars, name[i]);
        const char *b = i + 1 < n ? strchr(chars, name[i + 1]) : NULL;
        unsigned c = b != NULL ? 0x3800u + (unsigned)(a - chars) + ((unsigned)(b - chars) << 6)
                               : 0x4800u + (unsigned)(a - chars);
        out[k++] = (char)(0xE0 | c >> 12);
        out[k++] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[k++] = (char)(0x80 | (c & 0x3F));
    }
    out[k] = '\0';
}
