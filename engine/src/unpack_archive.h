/*
 * unpack_archive.h - the archive and compression-layer unpackers behind engine__unpack(), and the
 * ZIP directory locator that type detection shares with them (private to unpack.c and
 * unpack_archive.c).
 *
 * unpack.c decides what a buffer is, whether the configuration lets it be unpacked and where the
 * container sits inside the buffer (a self-extractor's stub before it, or bytes after a ZIP's end
 * record, are cut off); unpack_archive.c then walks the container and hands every member to the
 * host. Nothing here checks the class switches, max_compound_size or max_recursion: the caller has.
 */
#ifndef ENGINE_UNPACK_ARCHIVE_H
#define ENGINE_UNPACK_ARCHIVE_H

#include "unpack.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where a ZIP's central directory is, all offsets into the buffer that was searched. */
typedef struct engine__zip_dir {
    size_t base;      /* where the archive starts: its own offsets are relative to this */
    size_t end;       /* just past the end of central directory record and its comment */
    size_t cd_start;  /* first central directory header */
    uint64_t cd_size; /* bytes of central directory headers */
    uint64_t entries; /* entries the end record announces */
} engine__zip_dir;

/*
 * Finds the end of central directory record of a ZIP in p[0..n) (searching the last 64 KiB plus
 * the record), follows a ZIP64 locator when there is one, and checks that the directory it
 * announces sits right before it and starts with a central directory header whose first local
 * header exists. Bytes before the archive (a self-extractor's stub) are allowed: their length is
 * `base`. With exact_end the record's comment must end the buffer; otherwise the last valid record
 * wins and later bytes are ignored. Returns true and fills *d when found. Can't fail.
 */
bool engine__zip_find_dir(const uint8_t *p, size_t n, bool exact_end, engine__zip_dir *d);

/*
 * Unpacks one container of type t (any archive or compression type: ZIP, GZIP, BZIP2, XZ, TAR, 7Z,
 * RAR, CAB, LHA, ISO, CPIO, XAR, AR, ARJ) held in data[0..len), the container starting at
 * data[0]. Members go to h->scan_child (or a stream child when larger than the member bound);
 * limits and parse errors are noted through h->note.
 *
 * Returns 0 when the container was walked (to its end, or until a limit, an error, or the host
 * said the request is finished), 1 for a type it has no unpacker for (nothing noted), or
 * ENGINE_ENOMEM.
 */
int engine__unpack_container(engine__unpack_host *h, engine__ctype t, const uint8_t *data,
                             size_t len);

#endif
