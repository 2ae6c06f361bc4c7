/*
 * peers.h - what amsibench compares the broker with, run on the same buffers with the same rules:
 *  - hyperscan: raw in-process hs_scan of every string of the rule file (rulesub.h), with the
 *    rules' conditions evaluated on the strings that matched: the engine's core with nothing
 *    around it (no IPC, no views, no unpacking).
 *  - yara: libyara in-process with the same rule file, one YR_SCANNER per thread.
 *  - clamd: a clamd started for the run with a private configuration, socket and database (the
 *    rules written as ClamAV logical signatures), fed with INSTREAM on a new connection per scan
 *    as clamdscan does.
 * A peer that is not installed (no libyara at build time, no clamd executable) reports that it
 * is not available; the caller runs without it.
 *
 * A peer is created once, before the client processes fork; every thread then creates its own
 * worker (Hyperscan scratch, YARA scanner, nothing for clamd) and scans through it.
 */
#ifndef BENCH_PEERS_H
#define BENCH_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef enum bench_peer_kind {
    BENCH_PEER_HYPERSCAN,
    BENCH_PEER_YARA,
    BENCH_PEER_CLAMD,
    BENCH_PEER_KINDS
} bench_peer_kind;

typedef struct bench_peer bench_peer;
typedef struct bench_peer_worker bench_peer_worker;

/* "hyperscan", "yara", "clamd". */
const char *bench_peer_name(bench_peer_kind kind);
/* The kind named name; -1 when none. */
int bench_peer_parse(const char *name);

/*
 * Prepares a peer for the rule file rules. workdir is a private directory the peer may write to
 * (clamd's configuration, database and socket go in workdir/clamd). Returns 0 with *out set, 1
 * when the peer is not installed, or -1 when it failed; in both cases why says why.
 */
int bench_peer_create(bench_peer_kind kind, const char *rules, const char *workdir,
                      bench_peer **out, char *why, size_t cap);
/* One line on how the peer was set up (e.g. how many rules it took). */
const char *bench_peer_describe(const bench_peer *peer);
/* The peer's server process (clamd), or -1 for the in-process peers. */
pid_t bench_peer_server(const bench_peer *peer);
/* Stops the peer's server, removes its files and frees it. Accepts NULL. */
void bench_peer_destroy(bench_peer *peer);

/* A worker for the calling thread. Returns 0 or -1 (out of memory, or the peer's own error). */
int bench_peer_worker_create(bench_peer *peer, bench_peer_worker **out);
/* Accepts NULL. */
void bench_peer_worker_destroy(bench_peer_worker *w);
/* Scans len bytes; *detected is true when a rule matched. Returns 0, or -1 when the scan failed. */
int bench_peer_scan(bench_peer_worker *w, const void *data, size_t len, bool *detected);

/* ---- Internal: the libyara peer lives in peer_yara.c (or peer_yara_none.c without libyara). */
struct YR_RULES;
typedef struct bench__yara bench__yara;
int bench__yara_create(const char *rules, bench__yara **out, char *why, size_t cap);
void bench__yara_destroy(bench__yara *y);
void *bench__yara_worker(bench__yara *y);
void bench__yara_worker_destroy(void *w);
int bench__yara_scan(void *w, const void *data, size_t len, bool *detected);
/*
 * Compiles YARA rules from the file path (text NULL) or from text (path NULL) into *out, printing
 * the compiler's errors (and up to five warnings) on stderr. Returns 0 or -1. Shared with
 * engine_bench; only in builds with libyara.
 */
int bench_yara_compile(const char *path, const char *text, struct YR_RULES **out);

#endif
