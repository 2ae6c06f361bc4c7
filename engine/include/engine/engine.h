/*
 * engine.h - the scan engine's interface: YARA-subset rules compiled to Hyperscan databases,
 * per-thread scratch, buffer and stream scans, verdicts with the object path of a match.
 *
 * Model: compile and scan are separate. A compiled rule set (engine_rules) is immutable and
 * reference-counted, so any number of threads may scan with it at once and a reload can swap it
 * while scans in flight finish on the old one. Each thread owns an engine_scratch. A verdict is not
 * an error: every scan function returns 0 when the scan ran and fills an engine_result, or a
 * negative ENGINE_E* code when it could not run.
 */
#ifndef ENGINE_ENGINE_H
#define ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Error codes: negative, never renumbered or reused. One table yields the code, its name and its
 * message (engine_strerror(), engine_err_name()).
 */
#define ENGINE_ERRNO_MAP(X)                                                                        \
    X(OK, 0, "success")                                                                            \
    X(NOMEM, -1, "out of memory")                                                                  \
    X(INVAL, -2, "invalid argument")                                                               \
    X(IO, -3, "cannot read file")                                                                  \
    X(RULES, -4, "rule error")                                                                     \
    X(HYPERSCAN, -5, "Hyperscan error")                                                            \
    X(PLATFORM, -6, "this CPU is not supported by the installed Hyperscan")                        \
    X(CONFIG, -7, "bad configuration value")                                                       \
    X(NOENT, -8, "no such file or directory")                                                      \
    X(INTERNAL, -9, "internal error")

#define ENGINE__ERR_ENUM(name, code, msg) ENGINE_E##name = (code),
enum engine_error { ENGINE_ERRNO_MAP(ENGINE__ERR_ENUM) };
#undef ENGINE__ERR_ENUM

/* The message for an error code ("unknown error" for a code not in the table). Can't fail. */
const char *engine_strerror(int err);
/* The name of an error code, e.g. "ENGINE_ENOMEM" ("ENGINE_EUNKNOWN" if not in the table). */
const char *engine_err_name(int err);

/* AMSI_RESULT values the engine reports (identical to amsi.h's). */
#define ENGINE_AMSI_NOT_DETECTED 1
#define ENGINE_AMSI_DETECTED     32768

/*
 * Checks once that the CPU can run the installed Hyperscan (hs_valid_platform()). Call before
 * compiling or scanning; the other functions also check and return ENGINE_EPLATFORM.
 * Returns 0 or ENGINE_EPLATFORM. Thread-safe.
 */
int engine_check_platform(void);

/*
 * Process-wide set-up of the libraries the engine unpacks with: libgsf (OLE2 documents) needs
 * gsf_init() once before any thread uses it, and its log domains are silenced (a malformed
 * document would otherwise print warnings on stderr). Call once from main() before starting
 * threads and before the first scan. Calling it again is harmless; the OLE2 unpacker also calls
 * it on first use as a safety net, but only a call before threads start is what libgsf promises
 * to support. Returns 0 (reserved for failures of future libraries). Thread-safe (pthread_once).
 */
int engine_global_init(void);

/* The Hyperscan version string, for logs. Can't fail. */
const char *engine_hyperscan_version(void);

/* ------------------------------------------------------------------------------------------ */
/* Configuration: the `engine` section of the config file.                                     */

typedef struct engine_config {
    /* Views of script content (DESIGN.md §6). All on by default. */
    bool narrow_utf16;       /* detect UTF-16LE and also scan it narrowed to UTF-8 */
    bool normalize;          /* scan the normalised view for rules that ask for it */
    bool decode_base64;      /* decode base64 runs (and deflate/zlib/gzip/xz inside) as children */
    size_t min_base64;       /* shortest base64 run that is decoded (characters) */
    size_t max_decode;       /* output bytes per decoded blob (base64 or decompression) */
    size_t max_decode_total; /* decoded bytes per request, all blobs together */
    unsigned max_decode_depth; /* nested decode steps (base64 -> deflate -> base64 ...) */

    /* Unpacking (the unpacking issue); names and defaults fixed by the product. */
    bool scan_archives;
    bool scan_packages;
    bool scan_office;
    uint64_t max_compound_size;
    unsigned max_recursion;
    unsigned max_files;
    uint64_t max_scan_size;
    unsigned max_ratio;
    unsigned max_scan_time_ms;
} engine_config;

/* Fills *cfg with the documented defaults. Can't fail. */
void engine_config_init(engine_config *cfg);

/*
 * Sets one key of section `engine` from its text value, as the config file and
 * `--set engine.KEY=VALUE` give it. On failure writes a one-line reason into err (if errlen > 0).
 * Returns 0, ENGINE_EINVAL for NULL arguments, ENGINE_ECONFIG for an unknown key or bad value.
 */
int engine_config_set(engine_config *cfg, const char *key, const char *value, char *err,
                      size_t errlen);

/*
 * The value syntax every config section shares. A boolean is 1/0, yes/no, true/false, on/off (any
 * case); a size is a decimal with an optional K, M or G suffix (powers of 1024, optionally
 * followed by B or iB). Return 0, or -1 for a malformed or overflowing value. Can't fail otherwise.
 */
int engine_config_parse_bool(const char *text, uint64_t *out);
int engine_config_parse_size(const char *text, uint64_t *out);

/* ------------------------------------------------------------------------------------------ */
/* Rules.                                                                                      */

typedef struct engine_rules engine_rules;

/* Where a rule error was found: "file:line: reason" in text, and its parts. */
typedef struct engine_diag {
    char text[512]; /* the whole message, e.g. "rules/a.yar:12: unknown string modifier 'xor'" */
    char file[256];
    unsigned line; /* 0 when the error is not tied to a line */
} engine_diag;

typedef struct engine_compile_options {
    /* Directory for the serialized database cache, created if missing; NULL = no cache. */
    const char *cache_dir;
} engine_compile_options;

/*
 * Reads, parses and compiles rule files. Each path is a file or a directory (its *.yar and
 * *.yara files, in name order, not recursive). `include "x.yar"` is resolved relative to the
 * including file. With options->cache_dir set, a rule set whose text, Hyperscan version and
 * platform match a cache entry loads its databases from it instead of compiling.
 *
 * paths:   npaths paths; not NULL.
 * options: may be NULL (no cache).
 * out:     receives the rule set (reference count 1); the caller releases it with
 *          engine_rules_unref().
 * diag:    may be NULL; on ENGINE_ERULES/ENGINE_EIO/ENGINE_ENOENT it names the file, line, reason.
 *
 * Returns 0, ENGINE_EINVAL, ENGINE_ENOMEM, ENGINE_EIO, ENGINE_ENOENT, ENGINE_ERULES,
 * ENGINE_EHYPERSCAN or ENGINE_EPLATFORM. Thread-safe (no shared state).
 */
int engine_rules_compile_files(const char *const *paths, size_t npaths,
                               const engine_compile_options *options, engine_rules **out,
                               engine_diag *diag);

/*
 * Like engine_rules_compile_files() for rules held in memory. `name` is used as the file name in
 * messages (NULL: "<string>"); `include` is resolved relative to the current directory.
 */
int engine_rules_compile_string(const char *text, const char *name,
                                const engine_compile_options *options, engine_rules **out,
                                engine_diag *diag);

/* Takes one more reference (NULL gives NULL). Thread-safe. */
engine_rules *engine_rules_ref(engine_rules *rules);
/* Drops one reference; the last one frees the set. Accepts NULL. Thread-safe. */
void engine_rules_unref(engine_rules *rules);

/* Number of rules in the set. */
size_t engine_rules_count(const engine_rules *rules);
/* Name of rule i (i < count), or NULL. The string lives as long as the set. */
const char *engine_rules_name(const engine_rules *rules, size_t i);
/* SHA-256 of the rule text (all files, includes resolved), the cache key's first part. */
void engine_rules_hash(const engine_rules *rules, uint8_t out[32]);
/* True when the databases came from the cache rather than from a compile. */
bool engine_rules_from_cache(const engine_rules *rules);
/* Wall time spent in parse + compile (or cache load), in milliseconds. */
double engine_rules_compile_ms(const engine_rules *rules);

/* ------------------------------------------------------------------------------------------ */
/* Scratch: one per thread.                                                                    */

typedef struct engine_scratch engine_scratch;

/*
 * Allocates scratch space usable with `rules` (and, after it grows itself, any other set).
 * Returns 0, ENGINE_EINVAL, ENGINE_ENOMEM or ENGINE_EHYPERSCAN. The caller frees it with
 * engine_scratch_destroy(). A scratch must not be used by two threads at once.
 */
int engine_scratch_create(const engine_rules *rules, engine_scratch **out);
/* Frees a scratch. Accepts NULL. */
void engine_scratch_destroy(engine_scratch *scratch);
/*
 * Frees the buffers a scratch keeps between scans for large content (views and unpacked members,
 * up to 64 MiB; decoded blobs above 64 KiB), so that a thread which served a large request gives
 * the memory back when it goes idle. The next large scan allocates them again. Returns the bytes
 * freed. Accepts NULL; must not be called during a scan with this scratch. Can't fail.
 */
size_t engine_scratch_trim(engine_scratch *scratch);

/* ------------------------------------------------------------------------------------------ */
/* Scanning.                                                                                   */

typedef enum engine_verdict {
    ENGINE_VERDICT_CLEAN = 0,
    ENGINE_VERDICT_DETECTED = 1,
    ENGINE_VERDICT_LIMIT = 2, /* a limit stopped full scanning; nothing detected */
    ENGINE_VERDICT_ERROR = 3, /* content could not be parsed; nothing detected */
} engine_verdict;

/* Caller hints about the content. */
#define ENGINE_HINT_UTF16LE 0x1u /* the caller says the content is UTF-16LE (AmsiScanString) */
/* The caller found with engine_is_container() (same config) that the content is not a container:
 * the scan skips detecting it again. Never changes a verdict. */
#define ENGINE_HINT_NOT_CONTAINER 0x2u

/* Where a view of an object came from. */
typedef enum engine_view {
    ENGINE_VIEW_RAW = 0,        /* the bytes as given */
    ENGINE_VIEW_NARROWED = 1,   /* UTF-16LE narrowed to UTF-8 */
    ENGINE_VIEW_NORMALIZED = 2, /* the normalised script text */
} engine_view;

/* One matched rule. Strings are owned by the result. */
typedef struct engine_match {
    const char *rule;   /* rule name */
    const char *object; /* object path, outermost first, e.g. "buffer>base64@120>deflate" */
    engine_view view;
    size_t meta_count;
    const char *const *meta_keys;   /* meta identifiers, in rule order */
    const char *const *meta_values; /* their values as text (strings unquoted) */
} engine_match;

typedef struct engine_result {
    engine_verdict verdict;
    int amsi_result;    /* ENGINE_AMSI_DETECTED on a match, else ENGINE_AMSI_NOT_DETECTED */
    size_t match_count; /* each rule appears at most once, at its first object */
    engine_match *matches;
    const char *object;     /* the first match's object path, or NULL */
    const char *reason;     /* why scanning stopped or failed, e.g. "Limits.Exceeded.MaxScanTime";
                               NULL when it did not; static storage */
    uint64_t bytes_scanned; /* bytes passed to Hyperscan, all views and children */
    void *arena__;          /* private */
} engine_result;

/*
 * Scans one buffer: the raw bytes, then (per cfg) its UTF-16 narrowed view, its normalised view,
 * and decoded children, evaluating every rule's condition on each view.
 *
 * rules, scratch, data: not NULL (data may be NULL when len is 0).
 * cfg:    NULL for the defaults.
 * name:   the root object's name for object paths; NULL gives "buffer".
 * hints:  ENGINE_HINT_* bits.
 * result: filled on success; the caller releases it with engine_result_cleanup().
 *
 * Returns 0 when the scan ran (the verdict is in *result), ENGINE_EINVAL, ENGINE_ENOMEM or
 * ENGINE_EHYPERSCAN. Thread-safe as long as each thread uses its own scratch.
 */
int engine_scan_buffer(const engine_rules *rules, engine_scratch *scratch, const engine_config *cfg,
                       const void *data, size_t len, const char *name, unsigned hints,
                       engine_result *result);

/*
 * True when data[0..len) is a container that cfg unpacks (an archive or compressed stream with
 * scan_archives, a package with scan_packages, an Office file with scan_office), recognised by
 * content as engine_scan_buffer() recognises it. Its scan can cost far more than its size
 * suggests, so a broker hands such content to its pool instead of scanning it inline. Can't fail.
 */
bool engine_is_container(const engine_config *cfg, const void *data, size_t len);

/* Releases what a result holds and zeroes it. Accepts NULL and a zeroed result. */
void engine_result_cleanup(engine_result *result);

/* The verdict's name: "clean", "detected", "limit", "error". */
const char *engine_verdict_name(engine_verdict verdict);

/* ------------------------------------------------------------------------------------------ */
/* Streams: content that arrives in pieces (sessions, large unpacked members).                 */

typedef struct engine_stream engine_stream;

/*
 * Opens a stream over the raw bytes written to it, using the stream-mode database of `rules`
 * (which the stream keeps a reference to). A signature split across writes is found as if the
 * bytes had come in one buffer. `name` names the object in results (NULL gives "stream").
 * Returns 0, ENGINE_EINVAL, ENGINE_ENOMEM or ENGINE_EHYPERSCAN; the caller closes the stream with
 * engine_stream_close().
 */
int engine_stream_open(const engine_rules *rules, const char *name, engine_stream **out);

/*
 * Scans the next piece of the stream and evaluates the rules over everything written so far
 * (filesize = total bytes). result may be NULL; when given it is filled and must be cleaned up.
 * Returns 0, ENGINE_EINVAL, ENGINE_ENOMEM or ENGINE_EHYPERSCAN.
 */
int engine_stream_write(engine_stream *stream, engine_scratch *scratch, const void *data,
                        size_t len, engine_result *result);

/*
 * Like engine_stream_write() for script text: UTF-16LE content (hinted with ENGINE_HINT_UTF16LE,
 * or detected as engine_scan_buffer() does) is narrowed to UTF-8 first, so a session's stream
 * sees the same text whatever encoding each buffer came in. Same returns.
 */
int engine_stream_write_script(engine_stream *stream, engine_scratch *scratch, const void *data,
                               size_t len, unsigned hints, engine_result *result);

/*
 * Ends the stream (matches that needed the end of data are reported now), fills result if not
 * NULL, and frees the stream. Accepts NULL. scratch may be NULL only when result is NULL (the
 * stream is then just freed). Returns 0, ENGINE_EINVAL (result without scratch) or another
 * negative code; the stream is freed either way.
 */
int engine_stream_close(engine_stream *stream, engine_scratch *scratch, engine_result *result);

#ifdef __cplusplus
}
#endif
#endif
