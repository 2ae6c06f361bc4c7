/*
 * text.h - script text views (private to the engine): UTF-16LE detection and narrowing, the
 * normalised view, base64 runs, and decompression of decoded blobs.
 *
 * Every function here is pure (no global state), bounded by the caller's output capacity, and
 * safe on arbitrary bytes: bad input yields a shorter or empty output, never a read or write out
 * of bounds.
 */
#ifndef ENGINE_TEXT_H
#define ENGINE_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Decides whether p[0..n) is UTF-16LE text: true if `hinted` (the caller said so) and n is at
 * least 2, or if it starts with the BOM FF FE, or if it has at least 8 bytes, at least 5 of the
 * first 8 odd-offset bytes are NUL (a quick reject for the common case), and at least 90 % of
 * the bytes at odd offsets in the first 512 are NUL while fewer than 10 % at even offsets are.
 * Can't fail.
 */
bool engine__utf16le_detect(const uint8_t *p, size_t n, bool hinted);

/*
 * Narrows UTF-16LE to UTF-8: a leading BOM is dropped, surrogate pairs are combined, a lone
 * surrogate becomes U+FFFD, a trailing odd byte is dropped. Writes at most cap bytes to out and
 * never splits a UTF-8 sequence. Returns the number of bytes written. Output of n/2*3 bytes always
 * suffices. Can't fail.
 */
size_t engine__utf16le_narrow(const uint8_t *in, size_t n, uint8_t *out, size_t cap);

/*
 * The normalised view of script text (UTF-8 or ASCII in, same out):
 *  - ASCII letters folded to lower case (other bytes unchanged);
 *  - PowerShell backtick escapes removed: "`" followed by a character keeps the character
 *    (so I`nv`oke becomes invoke); a backtick at the end is dropped;
 *  - quoted string concatenations joined: a quote, optional whitespace, '+', optional
 *    whitespace and a quote are dropped together, so 'ab'+'cd' becomes 'abcd' and "ab" + 'cd'
 *    becomes "abcd' (no string tracking, so a stray quote in a comment changes nothing);
 *  - every run of whitespace (space, tab, CR, LF, VT, FF) becomes one space.
 * Writes at most cap bytes (the output is never longer than the input, so cap = n suffices).
 * Returns the number of bytes written. Can't fail.
 */
size_t engine__normalize(const uint8_t *in, size_t n, uint8_t *out, size_t cap);

/* Vector loops of the normalised view (bits of engine__normalize_vectors()). */
#define ENGINE__VEC_SSE2 0x1u
#define ENGINE__VEC_AVX2 0x2u

/* The vector loops this build and CPU can run. Can't fail. */
unsigned engine__normalize_vectors(void);

/*
 * engine__normalize() with only the vector loops in `vectors` (0: byte by byte), so that each
 * loop can be checked against the others on one machine. The output is the same for any set.
 * Can't fail.
 */
size_t engine__normalize_with(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                              unsigned vectors);

/* A run of bytes inside a buffer. */
typedef struct engine__span {
    size_t off;
    size_t len;
} engine__span;

/*
 * Finds the next run of at least min_run base64 characters (the standard alphabet A-Z a-z 0-9
 * + /, with up to two trailing '=') starting at or after *pos, skipping ahead cheaply over text
 * that cannot hold one (16 bytes at a time with SSE2 when min_run >= 31). On success stores the run
 * in *span, advances *pos past it and returns true; returns false when there is none. min_run below
 * 8 is treated as 8. Can't fail.
 */
bool engine__base64_next(const uint8_t *p, size_t n, size_t *pos, size_t min_run,
                         engine__span *span);

/*
 * Decodes base64 (standard or URL-safe alphabet; padding optional; stops at the first character
 * outside the alphabet or at '='). Writes at most cap bytes; returns the number written. Can't
 * fail.
 */
size_t engine__base64_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);

/* Compression formats recognised inside decoded blobs. */
typedef enum engine__codec {
    ENGINE__CODEC_NONE = 0,
    ENGINE__CODEC_DEFLATE, /* raw deflate, as .NET DeflateStream writes it */
    ENGINE__CODEC_ZLIB,
    ENGINE__CODEC_GZIP,
    ENGINE__CODEC_XZ,
} engine__codec;

/* The name used in object paths: "deflate", "zlib", "gzip", "xz" ("" for NONE). */
const char *engine__codec_name(engine__codec codec);

/*
 * Tries to decompress in[0..n): gzip (1F 8B) and xz (FD 37 7A 58 5A 00) by magic; input whose
 * first 64 bytes are at least 7/8 printable ASCII is taken as text and refused; then zlib by a
 * valid CMF/FLG header, else raw deflate. Succeeds only if the stream decodes without error for at
 * least 16 output bytes (or to its proper end); output beyond max_out is cut off and *truncated
 * set.
 *
 * out:       receives a malloc'd buffer the caller frees with free(); NULL when nothing decoded.
 * out_len:   its length.
 * codec:     which format decoded.
 * truncated: set when the output reached max_out before the stream's end.
 *
 * Returns 0 on success, -1 when the data is not a stream of any of these formats, -2 when memory
 * ran out.
 */
int engine__decompress(const uint8_t *in, size_t n, size_t max_out, uint8_t **out, size_t *out_len,
                       engine__codec *codec, bool *truncated);

/*
 * True when a raw inflate of in[0..n) (n >= 1) is sure to end in an error before it has produced
 * 17 bytes (see text.c), so engine__decompress() need not call zlib. Can't fail.
 */
bool engine__deflate_impossible(const uint8_t *in, size_t n);

#endif
