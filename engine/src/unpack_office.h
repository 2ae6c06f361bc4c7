/*
 * unpack_office.h - the OLE2 (Compound File Binary) unpacker behind engine__unpack(): DOC, XLS,
 * PPT, MSI and any other compound file, through libgsf; and the record parsers it uses, exposed
 * here so that their fuzz targets can drive them alone (private to the engine).
 *
 * OOXML needs nothing of its own: it is a ZIP, walked by unpack_archive.c, and its parts that are
 * themselves OLE2 (vbaProject.bin, embeddings/oleObject1.bin) come back here through the host.
 */
#ifndef ENGINE_UNPACK_OFFICE_H
#define ENGINE_UNPACK_OFFICE_H

#include "unpack.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Initialises libgsf once per process (gsf_init) and silences its log domains, which would
 * otherwise print a warning per malformed document. Safe to call any number of times and from
 * any thread (pthread_once); engine_global_init() calls it. Can't fail.
 */
void engine__office_global_init(void);

/*
 * Unpacks the OLE2 file data[0..len) of type t (ENGINE__CT_OLE2 or ENGINE__CT_MSI): every stream
 * of every storage becomes a child named by its path ("Macros/VBA/ThisDocument"), VBA module
 * source is decompressed, Ole10Native payloads, Word text and PowerPoint embedded objects become
 * children of their stream, and encryption is noted as the error "encrypted document".
 * Nothing here checks the class switches, max_compound_size or max_recursion: the caller has.
 * Returns 0 (walked, until a limit, an error or the host's stop, all noted) or ENGINE_ENOMEM.
 */
int engine__unpack_ole2(engine__unpack_host *h, engine__ctype t, const uint8_t *data, size_t len);

/* The payload of an `\x01Ole10Native` stream (an OLE Package). */
typedef struct engine__native {
    const uint8_t *data; /* points into the stream */
    size_t len;
    char name[128]; /* the file name (last path component), else the label, else "native" */
} engine__native;

/*
 * Parses an Ole10Native stream p[0..n): total size, flags, label, source path, temporary path,
 * data size and data. A stream that is not a package (no labels) yields the bytes after the size
 * field, as far as the size says. Returns 0 and fills *out, or -1 when there is no payload at all.
 * Can't fail otherwise; *out points into p.
 */
int engine__ole10native_parse(const uint8_t *p, size_t n, engine__native *out);

/* One embedded object found in a PowerPoint Document stream. */
typedef struct engine__ppt_object {
    size_t offset;       /* of the ExOleObjStg record header in the stream */
    bool compressed;     /* recInstance 1: a 4-byte decompressed size, then a zlib stream */
    uint32_t size;       /* the decompressed size the record announces (compressed only) */
    const uint8_t *data; /* the record's data after the size field (compressed) or all of it */
    size_t len;
} engine__ppt_object;

/* engine__ppt_next() results. */
#define ENGINE__PPT_OBJECT    1  /* *obj was filled */
#define ENGINE__PPT_END       0  /* no more records */
#define ENGINE__PPT_ENCRYPTED 2  /* a CryptSession10Container: the document is encrypted */
#define ENGINE__PPT_ECORRUPT  -1 /* a record runs past the end of the stream */

/*
 * Walks the records of a PowerPoint Document stream s[0..n) from *pos, stepping into containers
 * (recVer 0xF) and over atoms, and stops at the next ExOleObjStg (recType 0x1011) or
 * CryptSession10Container (0x2F14). *pos is advanced past what was returned, so calling again
 * goes on. Returns one of the ENGINE__PPT_* codes. Can't fail otherwise.
 */
int engine__ppt_next(const uint8_t *s, size_t n, size_t *pos, engine__ppt_object *obj);

/*
 * Extracts the text of a Word 97-2003 document: the pieces that the piece table (the CLX at
 * fcClx in the table stream) points at in the WordDocument stream wd[0..wn), 8-bit pieces copied,
 * UTF-16LE pieces narrowed to UTF-8, into out[0..cap). tbl[0..tn) is the table stream named by
 * the FIB (0Table or 1Table). Returns the bytes written, or 0 when there is no piece table to
 * follow. Can't fail otherwise.
 */
size_t engine__word_text(const uint8_t *wd, size_t wn, const uint8_t *tbl, size_t tn, uint8_t *out,
                         size_t cap);

/* The FIB's fEncrypted flag and which table stream it names (1Table when *table1). */
bool engine__word_fib(const uint8_t *wd, size_t wn, bool *encrypted, bool *table1);

/*
 * The text of a BIFF8 Workbook stream s[0..n): every string of its shared string table (SST and
 * the CONTINUE records it spans) and of its LABEL records, 8-bit strings as Latin-1 and UTF-16
 * ones narrowed, each followed by a newline, into out[0..cap). Returns the bytes written. Can't
 * fail.
 */
size_t engine__excel_text(const uint8_t *s, size_t n, uint8_t *out, size_t cap);

/* True when the globals substream of a BIFF8 Workbook stream carries a FILEPASS record. */
bool engine__excel_encrypted(const uint8_t *s, size_t n);

#endif
