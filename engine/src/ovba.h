/*
 * ovba.h - VBA projects as [MS-OVBA] stores them (private to the engine): the compression of
 * module source and of the `dir` stream (MS-OVBA 2.4.1), and the module list the `dir` stream
 * holds (MS-OVBA 2.3.4.2).
 *
 * Everything here works on bytes in memory, reads nothing outside the spans it is given and
 * writes nothing past the capacity it is given. No global state; thread-safe.
 */
#ifndef ENGINE_OVBA_H
#define ENGINE_OVBA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Results of engine__ovba_decompress(). */
#define ENGINE__OVBA_OK      0  /* the whole container was decompressed */
#define ENGINE__OVBA_FULL    1  /* the output filled up to cap; more would have followed */
#define ENGINE__OVBA_EBADSIG -1 /* the container does not start with the signature byte 0x01 */
#define ENGINE__OVBA_ECORRUPT                                                                      \
    -2 /* a chunk header or copy token is invalid, or the input ends inside a chunk */

/*
 * Decompresses the CompressedContainer in[0..n) into out[0..cap). *out_len receives the bytes
 * written, also on failure (what came before the damage is kept, so a caller may still scan it).
 * A raw chunk is copied as far as the input goes (at most 4096 bytes); a chunk that decompresses
 * to more than 4096 bytes is corrupt. Returns one of the ENGINE__OVBA_* codes above. Can't fail
 * otherwise; never reads outside in[0..n) nor writes outside out[0..cap).
 */
int engine__ovba_decompress(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len);

/* One module of a VBA project, as the `dir` stream describes it. */
typedef struct engine__ovba_module {
    char stream[256];     /* MODULESTREAMNAME (MBCS bytes, NUL-terminated, cut to fit) */
    uint32_t text_offset; /* MODULEOFFSET: where the compressed source starts in the stream */
} engine__ovba_module;

/*
 * Reads the module records of a decompressed `dir` stream d[0..n) into mods[0..max). Records are
 * walked by their sizes (PROJECTVERSION's irregular size included) until the terminator or the
 * end of the data; a module counts once its MODULESTREAMNAME and its terminator were seen.
 * Returns the number of modules stored (at most max), or -1 when the data ends (inside a record
 * or before the terminator) before any module was found. Can't fail otherwise.
 */
int engine__ovba_dir_modules(const uint8_t *d, size_t n, engine__ovba_module *mods, size_t max);

#endif
