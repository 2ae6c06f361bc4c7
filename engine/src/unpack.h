/*
 * unpack.h - containers (private to the engine): type detection by content, and unpackers that
 * turn a container into child objects which the scanner scans like any other object (raw bytes,
 * views, and containers inside them, recursively).
 *
 * The scanner (scan.c) is the host: unpackers never call the scanner directly, only the host's
 * functions below, so limits, object paths and verdicts stay in one place. An unpacker's job is
 * to parse defensively, meter every byte it produces, and report what stopped it.
 */
#ifndef ENGINE_UNPACK_H
#define ENGINE_UNPACK_H

#include "engine/engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a buffer is, from its first bytes and structure (never from a name). */
typedef enum engine__ctype {
    ENGINE__CT_NONE = 0, /* not a container: scanned raw only */
    ENGINE__CT_ZIP,      /* ZIP and JAR (including a self-extracting prefix) */
    ENGINE__CT_OOXML,    /* a ZIP holding [Content_Types].xml: docx, xlsx, pptx ... */
    ENGINE__CT_GZIP,
    ENGINE__CT_BZIP2,
    ENGINE__CT_XZ,
    ENGINE__CT_TAR,
    ENGINE__CT_7Z,
    ENGINE__CT_RAR,
    ENGINE__CT_CAB,
    ENGINE__CT_LHA,
    ENGINE__CT_ISO,
    ENGINE__CT_CPIO,
    ENGINE__CT_XAR,
    ENGINE__CT_AR, /* ar, and so .deb */
    ENGINE__CT_ARJ,
    ENGINE__CT_OLE2, /* DOC, XLS, PPT: Compound File Binary */
    ENGINE__CT_MSI,  /* an OLE2 file whose root is an installer database, patch or transform */
} engine__ctype;

/* Which config switch a type answers to. */
typedef enum engine__cclass {
    ENGINE__CC_ARCHIVE, /* scan_archives */
    ENGINE__CC_PACKAGE, /* scan_packages: CAB, MSI, ar/.deb */
    ENGINE__CC_OFFICE,  /* scan_office: OLE2 documents, OOXML */
} engine__cclass;

/* The type of p[0..n). Can't fail. */
engine__ctype engine__detect_type(const uint8_t *p, size_t n);

/*
 * CRC-16/ARC (polynomial 0xA001 reflected, initial 0), LHA's header and data CRC: continues c
 * over n bytes. Can't fail.
 */
uint16_t engine__crc16_arc(uint16_t c, const uint8_t *p, size_t n);
/* "zip", "gzip", ... for object paths of compression layers and for messages. */
const char *engine__ctype_name(engine__ctype t);
engine__cclass engine__ctype_class(engine__ctype t);

/* The scanner's side, handed to every unpacker. */
typedef struct engine__unpack_host engine__unpack_host;
struct engine__unpack_host {
    const engine_config *cfg;
    unsigned depth; /* unpack steps above the object being unpacked (0 for the request) */

    /*
     * Scans one extracted member, held whole in memory, as a child object called `name`
     * (the last component of its object path, e.g. "payload.tar" or "gzip"). The child is
     * itself unpacked when it is a container (one more step). Returns true when the request
     * is finished (something detected, a limit or the time ran out, or an error): the unpacker
     * then stops at once.
     */
    bool (*scan_child)(engine__unpack_host *h, const uint8_t *data, size_t len, const char *name);

    /*
     * For members too large to hold: a stream child. Bytes written are scanned in stream mode
     * (raw bytes only, no views, no recursion) and the rules are evaluated at close. Each call
     * returns true when the request is finished, as scan_child does.
     */
    bool (*stream_open)(engine__unpack_host *h, const char *name);
    bool (*stream_write)(engine__unpack_host *h, const uint8_t *data, size_t len);
    bool (*stream_close)(engine__unpack_host *h);

    /*
     * Counts bytes an unpacker produced (every read loop calls it before using the bytes).
     * Returns false, after noting Limits.Exceeded.MaxScanSize, when the request's total would
     * pass max_scan_size.
     */
    bool (*charge)(engine__unpack_host *h, uint64_t bytes);

    /*
     * Notes why scanning was not complete: a limit ("Limits.Exceeded.MaxFiles" ... as static
     * strings) or a parse error (error = true, reason a short static text such as
     * "zip: CRC mismatch"). The first note decides the reason; detection always wins over it.
     */
    void (*note)(engine__unpack_host *h, const char *reason, bool error);

    /* True once max_scan_time_ms has passed (the time limit is noted then). */
    bool (*out_of_time)(engine__unpack_host *h);

    /*
     * Optional (both NULL: the unpacker allocates member buffers itself). buffer_grow returns a
     * buffer of at least cap bytes holding the first len bytes of old (NULL at first), which it
     * replaces; the host may keep it between requests, so its size is usually there already.
     * Returns NULL when memory ran out (old is then still valid). buffer_done gives the buffer
     * back (NULL is fine); it is not touched after. An unpacker holds one such buffer at a time,
     * and calls neither while a child it handed to scan_child is being scanned.
     */
    uint8_t *(*buffer_grow)(engine__unpack_host *h, uint8_t *old, size_t len, size_t cap);
    void (*buffer_done)(engine__unpack_host *h, uint8_t *p);

    void *opaque; /* the scanner's */
};

/*
 * Unpacks data when it is a container the configuration allows: children go to the host.
 * Returns 1 when data is not a container (or its class is switched off, or it is larger than
 * max_compound_size, which is noted as Limits.Exceeded.MaxCompoundSize), 0 when it was
 * unpacked (fully or until a limit or an error, both noted), ENGINE_ENOMEM when memory ran out.
 */
int engine__unpack(engine__unpack_host *h, const uint8_t *data, size_t len);

#endif
