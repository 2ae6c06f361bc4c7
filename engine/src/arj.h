/*
 * arj.h - a reader for ARJ archives (private to the engine). No library reads ARJ, so the engine
 * carries its own: a pull-style reader over an archive held whole in memory that walks the member
 * headers and decompresses one member at a time into the caller's buffer, so a member of any size
 * is never held whole.
 *
 * Supported: stored members (method 0), the LZ77+Huffman methods 1 to 3 ("most", "medium", "fast";
 * one decoder serves all three) and method 4 ("fastest"). Garbled (password protected) members are
 * reported as such and never guessed at. Each piece of a multi-volume archive is read as the
 * archive it is: a member continued in the next volume is decoded up to the end of this piece.
 *
 * The reader is defensive: every header is bounds- and CRC-checked, every bit read stays inside
 * the member's compressed bytes (running past them is ENGINE__ARJ_ETRUNC), Huffman tables are built
 * only from complete, valid code lengths, and the decompression state has a fixed size whatever
 * the headers claim. It never caps the output: a member may legitimately expand 1000-fold, so
 * ratio and size limits are the caller's (DESIGN.md §6).
 *
 * Thread safety: a reader is owned by one thread at a time; distinct readers share nothing.
 */
#ifndef ENGINE_ARJ_H
#define ENGINE_ARJ_H

#include <stddef.h>
#include <stdint.h>

/*
 * The reader's error codes: XX(name, code, message). Codes are never renumbered or reused.
 * "Corrupt" compressed data (an invalid Huffman table, a match reaching before the start of the
 * member) is ENGINE__ARJ_EFORMAT; a member whose data decodes but does not match its CRC is
 * ENGINE__ARJ_ECRC.
 */
#define ENGINE__ARJ_ERRNO_MAP(XX)                                                                  \
    XX(EFORMAT, -1, "not an ARJ archive, or a corrupt header or compressed stream")                \
    XX(ETRUNC, -2, "ARJ archive truncated")                                                        \
    XX(ECRC, -3, "ARJ member CRC mismatch")                                                        \
    XX(EMETHOD, -4, "unsupported ARJ compression method")                                          \
    XX(EENCRYPTED, -5, "ARJ member is garbled (password protected)")                               \
    XX(ENOMEM, -6, "out of memory")                                                                \
    XX(EINVAL, -7, "invalid argument, or call out of order")

typedef enum engine__arj_errno {
#define ENGINE__ARJ_ERRNO_ENUM(name, code, msg) ENGINE__ARJ_##name = (code),
    ENGINE__ARJ_ERRNO_MAP(ENGINE__ARJ_ERRNO_ENUM)
#undef ENGINE__ARJ_ERRNO_ENUM
} engine__arj_errno;

/* Bits of engine__arj_entry.flags, as stored in the member header. */
#define ENGINE__ARJ_FLAG_GARBLED 0x01u /* encrypted with a password */
#define ENGINE__ARJ_FLAG_VOLUME  0x04u /* continued in the next volume */
#define ENGINE__ARJ_FLAG_EXTFILE 0x08u /* continues a member of the previous volume */
#define ENGINE__ARJ_FLAG_PATHSYM 0x10u /* path separators were translated to '/' */
#define ENGINE__ARJ_FLAG_BACKUP  0x20u /* marked as a backup */

/* Values of engine__arj_entry.method. */
#define ENGINE__ARJ_METHOD_STORED  0u
#define ENGINE__ARJ_METHOD_MOST    1u
#define ENGINE__ARJ_METHOD_MEDIUM  2u
#define ENGINE__ARJ_METHOD_FAST    3u
#define ENGINE__ARJ_METHOD_FASTEST 4u

/* Values of engine__arj_entry.file_type. */
#define ENGINE__ARJ_TYPE_BINARY  0u
#define ENGINE__ARJ_TYPE_TEXT    1u
#define ENGINE__ARJ_TYPE_COMMENT 2u
#define ENGINE__ARJ_TYPE_DIR     3u
#define ENGINE__ARJ_TYPE_LABEL   4u
#define ENGINE__ARJ_TYPE_CHAPTER 5u

/*
 * Room for a member name and its NUL. A basic header holds at most 2600 bytes, so every name an
 * archive can carry fits whole.
 */
#define ENGINE__ARJ_NAME_MAX 2600u

/* How far into the input engine__arj_open() looks for the main header (a self-extractor's stub). */
#define ENGINE__ARJ_SFX_MAX (128u * 1024u)

/* One member, as its header describes it. Fields are copied out; nothing points into the input. */
typedef struct engine__arj_entry {
    char name[ENGINE__ARJ_NAME_MAX]; /* as stored (no path sanitising), NUL-terminated */
    uint32_t orig_size;              /* bytes engine__arj_read() will produce */
    uint32_t comp_size;              /* bytes of compressed data in the archive */
    uint32_t crc32;                  /* CRC-32 of the original bytes */
    uint32_t mtime;                  /* MS-DOS date and time of last modification */
    uint32_t ext_pos;                /* offset in the whole file of a continued piece (EXTFILE) */
    size_t header_offset;            /* where the member's header starts in the input */
    uint16_t file_mode;              /* host file mode bits */
    uint8_t method;                  /* ENGINE__ARJ_METHOD_* (others are reported as found) */
    uint8_t flags;                   /* ENGINE__ARJ_FLAG_* */
    uint8_t file_type;               /* ENGINE__ARJ_TYPE_* */
    uint8_t host_os;                 /* 0 MS-DOS, 2 UNIX, ... */
} engine__arj_entry;

typedef struct engine__arj engine__arj;

/*
 * Opens a reader over data[0..len). The main header is looked for first at offset 0, then at
 * every later offset below ENGINE__ARJ_SFX_MAX (a self-extracting archive starts with an
 * executable stub); the first offset holding the ARJ id 0x60 0xEA, a plausible size, a first
 * header size of at least 30, the main header's file type (2), NUL-terminated name and comment
 * and a matching header CRC-32 wins. Extended headers after it are checked and skipped. The search
 * CRC-checks at most 1 MiB of candidate headers in all, so a stub stuffed with decoys costs a few
 * milliseconds and then reads as ENGINE__ARJ_EFORMAT.
 *
 * data:  the whole archive; it must stay valid and unchanged until engine__arj_close(). May be
 *        NULL when len is 0.
 * out:   receives the reader; the caller frees it with engine__arj_close(). Set to NULL on failure.
 *
 * Returns 0; ENGINE__ARJ_EFORMAT when no main header is found; ENGINE__ARJ_ETRUNC when the only
 * candidates ran past the end of the input; ENGINE__ARJ_ENOMEM; ENGINE__ARJ_EINVAL for NULL out.
 * Allocates one fixed-size block (about 55 KiB) whatever the input.
 */
int engine__arj_open(const uint8_t *data, size_t len, engine__arj **out);

/*
 * Moves to the next member and fills *e with its header. The previous member's data need not have
 * been read: the next header is located from the compressed size, so a member that failed to
 * decode does not stop the walk.
 *
 * Returns 0 with *e filled; 1 at the end-of-archive marker (and every call after it);
 * ENGINE__ARJ_EFORMAT for a header that is not one (bad id, size or CRC, name without NUL);
 * ENGINE__ARJ_ETRUNC when the input ends before the next header or marker; ENGINE__ARJ_EINVAL for
 * NULL arguments. A header error is sticky: later calls return it again.
 */
int engine__arj_next(engine__arj *a, engine__arj_entry *e);

/*
 * Decompresses the current member into buf[0..cap), at most cap bytes per call, and stores the
 * count in *got. Call it until *got is 0: that call checks the CRC-32 of everything produced and
 * returns ENGINE__ARJ_ECRC on a mismatch, 0 otherwise. When decoding fails after some bytes were
 * produced in a call, those bytes are returned first (return 0, *got > 0) and the error on the next
 * call; every error of a member is sticky until engine__arj_next().
 *
 * Returns 0; ENGINE__ARJ_EENCRYPTED for a garbled member; ENGINE__ARJ_EMETHOD for a method other
 * than 0 to 4; ENGINE__ARJ_ETRUNC when the member's compressed bytes end (or the input ends)
 * before the member does; ENGINE__ARJ_EFORMAT for a corrupt compressed stream (or a stored member
 * whose sizes disagree); ENGINE__ARJ_ECRC as above; ENGINE__ARJ_EINVAL for NULL arguments, cap 0,
 * or no current member (before the first engine__arj_next() or after it returned non-zero).
 * Each call's work is bounded by cap plus one Huffman block header.
 */
int engine__arj_read(engine__arj *a, uint8_t *buf, size_t cap, size_t *got);

/* Frees the reader. Accepts NULL. */
void engine__arj_close(engine__arj *a);

/* Returns the message for an ENGINE__ARJ_* code ("unknown error" otherwise). Can't fail. */
const char *engine__arj_strerror(int err);

/* Returns the name of an ENGINE__ARJ_* code ("ENGINE__ARJ_EUNKNOWN" otherwise). Can't fail. */
const char *engine__arj_err_name(int err);

#endif
