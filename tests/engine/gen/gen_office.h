/*
 * gen_office.h - builds Office documents in memory for tests/engine/test_office.c, the Office fuzz
 * corpora and the bench: compound files and OOXML packages through libgsf's writers
 * (gsf_outfile_msole, gsf_outfile_zip), and the stream contents they hold written here from the
 * specifications: an [MS-OVBA] compressor, VBA `dir` and module streams, Ole10Native packages,
 * a Word FIB with a piece table, BIFF8 records, PowerPoint records with a zlib-compressed
 * ExOleObjStg.
 *
 * Every function returns 0, or -1 when memory runs out or libgsf fails. Buffers are gen_buf
 * (gen_containers.h), freed with gen_buf_free(). Call gen_office_init() once first.
 */
#ifndef GEN_OFFICE_H
#define GEN_OFFICE_H

#include "gen_containers.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* gsf_init(), once. */
void gen_office_init(void);

/* [MS-OVBA] 2.4.1 compression of in[0..n) (greedy matching, raw chunks where they are smaller). */
int gen_ovba_compress(const void *in, size_t n, gen_buf *out);

/* One stream of a compound file or part of a package: a '/'-separated path and its bytes. */
typedef struct gen_part {
    const char *path;
    const void *data;
    size_t len;
} gen_part;

/*
 * A compound file holding the streams (storages created from the paths; streams of one storage
 * must be listed together). clsid: the root's class id (16 bytes) or NULL.
 */
int gen_ole2(const gen_part *parts, size_t n, const uint8_t *clsid, gen_buf *out);

/* A ZIP package (deflated members, in the given order) through gsf_outfile_zip. */
int gen_ooxml(const gen_part *parts, size_t n, gen_buf *out);

/* The compressed `dir` stream of a VBA project whose modules' streams are `names`, each with its
 * source at text_offset[i]. */
int gen_vba_dir(const char *const *names, const uint32_t *text_offset, size_t n, gen_buf *out);

/* A module stream: `pcode` filler bytes (its text offset), then the compressed source. */
int gen_vba_module(const char *source, size_t pcode, gen_buf *out);

/*
 * The streams of a VBA project under `storage` ("Macros/VBA", "VBA", "_VBA_PROJECT_CUR/VBA"):
 * dir, _VBA_PROJECT, and one module `name` holding `source`. parts[0..3) are filled and point
 * into bufs[0..3), which the caller frees; `paths` receives the three paths (3 x 128 bytes).
 */
int gen_vba_project(const char *storage, const char *name, const char *source, gen_part parts[3],
                    gen_buf bufs[3], char paths[3][128]);

/* An Ole10Native stream: an OLE Package of `data` with its label and source path. */
int gen_ole10native(const char *label, const char *path, const void *data, size_t len,
                    gen_buf *out);

/*
 * A Word 97 WordDocument stream whose text (UTF-16LE in the stream) is `text`, and its 1Table
 * stream with the piece table. encrypted sets fEncrypted.
 */
int gen_word(const char *text, bool encrypted, gen_buf *word, gen_buf *table);

/* A BIFF8 Workbook stream: BOF, FILEPASS when encrypted, a LABEL record with `text`, EOF. */
int gen_workbook(const char *text, bool encrypted, gen_buf *out);

/*
 * A BIFF8 Workbook stream whose shared string table holds "first" (8-bit) and `text` as UTF-16,
 * the latter cut in the middle by a CONTINUE record (which restarts with its flags byte).
 */
int gen_workbook_sst(const char *text, gen_buf *out);

/* A PowerPoint Document stream holding one ExOleObjStg of `obj`, zlib-compressed or not. */
int gen_ppt_document(const void *obj, size_t len, bool compressed, gen_buf *out);

/*
 * A compound file written by hand (not libgsf): a root storage and `entries` - 1 empty streams,
 * linked as one chain of right siblings (chain) or as a balanced tree. Used to check that the
 * directory walk refuses what would make libgsf recurse or work without bound.
 */
int gen_ole2_directory(unsigned entries, bool chain, gen_buf *out);

/* The class id of an MSI database. */
extern const uint8_t gen_msi_clsid[16];

/* Windows Installer's packing of a stream name (two characters to one code point), as UTF-8. */
void gen_msi_name(const char *name, char *out, size_t cap);

#endif
