/*
 * workload.h - the content amsibench sends: generated script blocks (ASCII or UTF-16LE) with a
 * share carrying a signature, notifications, a mix of small blocks with archives, Office
 * documents and large scripts, sessions whose signature is split across two buffers, or the files
 * of a directory. A workload is a list of items built once, before any run, so every target gets
 * exactly the same bytes.
 */
#ifndef BENCH_WORKLOAD_H
#define BENCH_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum bench_workload_kind {
    BENCH_WL_SCRIPTS,
    BENCH_WL_NOTIFY,
    BENCH_WL_MIXED,
    BENCH_WL_SESSIONS,
    BENCH_WL_DIR,
} bench_workload_kind;

/* One request's content. */
typedef struct bench_item {
    uint8_t *data;
    size_t len;
    size_t split;     /* sessions: the first buffer is data[0..split), the second the rest */
    bool utf16;       /* UTF-16LE text (sent with AMSI_SCAN_UTF16) */
    bool planted;     /* carries a signature of the bundled rules */
    bool large;       /* mixed: an archive, document or large script (not a small block) */
    bool stampable;   /* starts with a generated stamp line that may be rewritten */
    const char *kind; /* "script", "notify", "session", "zip", "gzip", "docx", "large", "file" */
    char name[256];   /* content name: the file's path for dir:, else a generated name */
} bench_item;

typedef struct bench_workload_spec {
    bench_workload_kind kind;
    const char *dir;           /* BENCH_WL_DIR */
    size_t size_min, size_max; /* bytes per small item (UTF-16: bytes after widening) */
    bool utf16;
    double signed_pct; /* share of small items carrying a signature, 0 .. 100 */
    double large_pct;  /* mixed: share of large items, 0 .. 100 */
    unsigned nitems;   /* small items to generate (large ones come on top) */
    uint64_t seed;
} bench_workload_spec;

typedef struct bench_workload {
    bench_item *items;
    size_t n;
    size_t nsmall, nlarge;
    size_t bytes; /* all items together */
} bench_workload;

/*
 * Builds the items of spec into w. Returns 0, or -1 with a message on stderr (out of memory, an
 * unreadable or empty directory). w is left empty on failure; free it with bench_workload_cleanup.
 */
int bench_workload_init(bench_workload *w, const bench_workload_spec *spec);
void bench_workload_cleanup(bench_workload *w);
/* The name of a workload kind as --workload spells it. */
const char *bench_workload_name(bench_workload_kind kind);

#endif
