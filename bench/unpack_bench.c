/*
 * unpack_bench.c - unpack-and-scan throughput against decompression alone, and peak memory while
 * the engine scans decompression bombs.
 *
 * Throughput. A seeded generator writes PowerShell-like script text (it compresses about 4:1, as
 * real scripts do) and packs it as one gzip member, as a ZIP of four deflated members, and as one
 * xz stream. For each, in the same run and the same process, two targets are timed:
 *  - `engine`: engine_scan_buffer() with the bundled rules (engine/rules/default.yar), the
 *    default configuration plus scan_archives and limits wide enough for the input: it detects the
 *    container, decompresses it, scans every member with all views (raw, UTF-16, normalised,
 *    base64 children) and the container's raw bytes;
 *  - `decode`: the same library decoding the same bytes into a 64 KiB buffer and nothing else
 *    (zlib inflate for gzip, libarchive reading every ZIP entry, liblzma for xz).
 * and, as a third line, `engine-raw`: the engine with the script views off (no UTF-16, normalised
 * or base64 views), which is the unpack path plus one Hyperscan pass per byte. Throughput is
 * uncompressed bytes per second; each figure is the median of --rounds rounds, the targets
 * interleaved within a round. The goal is engine/decode >= 80 %. A last line gives what each view
 * costs on the uncompressed text, in ns per byte.
 *
 * Members up to 64 MiB are held whole and scanned with every view; larger ones are scanned in
 * stream mode as they are produced (raw view only). --mib sets the text size (default 32: held
 * whole; try 96 for the streaming path).
 *
 * Bombs. Each bomb is built and scanned in a forked child; once it is built, the child resets its
 * peak resident size (/proc/self/clear_refs), so the peak (VmHWM) printed is the scan's own, next
 * to the resident size before the scan (the rules, the bomb's bytes, the parent's pages). Default
 * limits except where the bomb needs a larger max_compound_size to be unpacked at all.
 *
 * Usage: unpack_bench [--mib N] [--rounds N] [--only gzip|zip|xz] [--no-bombs] [--rules PATH]
 * The program prints figures and exits 0; it exits 1 only when it could not run.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <engine/engine.h>

#include "gen/gen_containers.h"
#include "gen/gen_office.h"

#include <archive.h>
#include <archive_entry.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#ifndef AMSI_BENCH_RULES
#define AMSI_BENCH_RULES "engine/rules/default.yar"
#endif

#define CHUNK (64u * 1024u)

static const char *rules_path = AMSI_BENCH_RULES;
static engine_rules *rules;
static engine_scratch *scratch;
static uint8_t chunk[CHUNK];

static _Noreturn void die(const char *what)
{
    fprintf(stderr, "unpack_bench: %s\n", what);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ------------------------------------------------------------------------------------------ */
/* Inputs.                                                                                     */

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* n bytes of script-like text: lines of verbs, nouns, variables and numbers. */
static uint8_t *make_text(size_t n)
{
    static const char *const words[] = {
        "Get-ChildItem",  "Set-Content", "$env:TEMP",    "-Recurse",   "Where-Object",
        "ForEach-Object", "$item.Name",  "Write-Output", "-Path",      "Select-String",
        "$_.Length",      "-gt",         "Out-File",     "Import-Csv", "$report",
        "Measure-Object", "-Sum",        "Sort-Object",  "-Unique",    "Test-Path"};
    uint8_t *p = malloc(n);
    if (p == NULL)
        die("out of memory");
    size_t i = 0;
    while (i < n) {
        char line[256];
        int k = snprintf(line, sizeof(line), "%s %s %s %u | %s\n", words[next_rand() % 20],
                         words[next_rand() % 20], words[next_rand() % 20], next_rand() % 100000u,
                         words[next_rand() % 20]);
        for (int j = 0; j < k && i < n; j++)
            p[i++] = (uint8_t)line[j];
    }
    return p;
}

/* zlib deflate of p[0..n) with the given window bits (31: gzip, -15: raw). */
static void deflate_to(const uint8_t *p, size_t n, int wbits, gen_buf *out)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        die("deflateInit2");
    size_t cap = deflateBound(&z, (uLong)n);
    out->p = malloc(cap);
    if (out->p == NULL)
        die("out of memory");
    out->cap = cap;
    z.next_in = (Bytef *)(uintptr_t)p;
    z.avail_in = (uInt)n;
    z.next_out = out->p;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        die("deflate");
    out->n = cap - z.avail_out;
    deflateEnd(&z);
}

static void xz_to(const uint8_t *p, size_t n, gen_buf *out)
{
    size_t cap = lzma_stream_buffer_bound(n), pos = 0;
    out->p = malloc(cap);
    if (out->p == NULL)
        die("out of memory");
    if (lzma_easy_buffer_encode(6, LZMA_CHECK_CRC64, NULL, p, n, out->p, &pos, cap) != LZMA_OK)
        die("xz encode");
    out->n = pos;
    out->cap = cap;
}

static void zip_to(const uint8_t *p, size_t n, gen_buf *out)
{
    gen_zip z = {0};
    size_t part = n / 4;
    for (int i = 0; i < 4; i++) {
        size_t len = i == 3 ? n - 3 * part : part;
        gen_buf raw = {0};
        deflate_to(p + i * part, len, -15, &raw);
        char name[32];
        snprintf(name, sizeof(name), "script%d.ps1", i);
        uint32_t crc = (uint32_t)crc32(0, p + i * part, (uInt)len);
        if (gen_zip_add_raw(&z, name, 8, raw.p, raw.n, crc, (uint32_t)len) != 0)
            die("zip");
        gen_buf_free(&raw);
    }
    if (gen_zip_finish(&z, out) != 0)
        die("zip");
}

/* ------------------------------------------------------------------------------------------ */
/* Decoding alone.                                                                             */

static volatile uint8_t sink;

static void decode_gzip(const gen_buf *b)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 31) != Z_OK)
        die("inflateInit2");
    z.next_in = b->p;
    z.avail_in = (uInt)b->n;
    int rc;
    do {
        z.next_out = chunk;
        z.avail_out = CHUNK;
        rc = inflate(&z, Z_NO_FLUSH);
        sink ^= chunk[0];
    } while (rc == Z_OK);
    inflateEnd(&z);
}

static void decode_xz(const gen_buf *b)
{
    lzma_stream s = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&s, UINT64_MAX, LZMA_CONCATENATED) != LZMA_OK)
        die("lzma_stream_decoder");
    s.next_in = b->p;
    s.avail_in = b->n;
    lzma_ret rc;
    do {
        s.next_out = chunk;
        s.avail_out = CHUNK;
        rc = lzma_code(&s, LZMA_FINISH);
        sink ^= chunk[0];
    } while (rc == LZMA_OK);
    lzma_end(&s);
}

static void decode_zip(const gen_buf *b)
{
    struct archive *a = archive_read_new();
    archive_read_support_format_zip_seekable(a);
    archive_read_open_memory(a, b->p, b->n);
    struct archive_entry *e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        const void *blk;
        size_t n;
        la_int64_t off;
        while (archive_read_data_block(a, &blk, &n, &off) == ARCHIVE_OK)
            sink ^= n ? *(const uint8_t *)blk : 0;
    }
    archive_read_free(a);
}

/* ------------------------------------------------------------------------------------------ */
/* Throughput.                                                                                 */

static void engine_scan(const gen_buf *b, const engine_config *cfg, const char *name)
{
    engine_result r;
    if (engine_scan_buffer(rules, scratch, cfg, b->p, b->n, name, 0, &r) != 0)
        die("scan failed");
    if (r.verdict != ENGINE_VERDICT_CLEAN) {
        fprintf(stderr, "unpack_bench: %s: verdict %s (%s)\n", name, engine_verdict_name(r.verdict),
                r.reason ? r.reason : r.object);
        exit(1);
    }
    engine_result_cleanup(&r);
}

/* The plain text itself, for the `scan text alone` figure: the engine with nothing to unpack. */
static gen_buf plain_text;

static void throughput(const char *fmt, const gen_buf *b, size_t plain,
                       void (*decode)(const gen_buf *), int rounds)
{
    engine_config full, raw;
    engine_config_init(&full);
    full.scan_archives = true;
    full.max_compound_size = 1ull << 32;
    full.max_scan_size = 1ull << 32;
    full.max_scan_time_ms = 600000;
    raw = full;
    raw.narrow_utf16 = raw.normalize = raw.decode_base64 = false;
    double te[64], tr[64], td[64], ts[64];
    if (rounds > 64)
        rounds = 64;
    engine_scan(b, &full, fmt); /* warm up */
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        decode(b);
        double t1 = now();
        engine_scan(b, &full, fmt);
        double t2 = now();
        engine_scan(b, &raw, fmt);
        double t3 = now();
        engine_scan(&plain_text, &full, "text");
        double t4 = now();
        ts[r] = (double)plain / (t4 - t3) / 1e6;
        td[r] = (double)plain / (t1 - t0) / 1e6;
        te[r] = (double)plain / (t2 - t1) / 1e6;
        tr[r] = (double)plain / (t3 - t2) / 1e6;
    }
    double d = median(td, rounds), e = median(te, rounds), w = median(tr, rounds),
           sc = median(ts, rounds);
    printf("%-5s %6.1f MiB -> %5.1f MiB | decode %6.1f MB/s | engine %6.1f MB/s (%5.1f %%) | "
           "engine-raw %6.1f MB/s (%5.1f %%) | scan text alone %6.1f MB/s\n",
           fmt, (double)plain / 1048576.0, (double)b->n / 1048576.0, d, e, 100.0 * e / d, w,
           100.0 * w / d, sc);
}

/*
 * What each view costs on the text alone, in ns per byte (medians): every view, then one view
 * off at a time, then the raw view only. The differences are the normalised view (normalising and
 * its Hyperscan passes) and the base64 search; `raw only` is the raw view's Hyperscan pass.
 */
static void view_costs(int rounds)
{
    engine_config every, nonorm, nob64, raw;
    engine_config_init(&every);
    every.max_scan_size = 1ull << 32;
    every.max_scan_time_ms = 600000;
    nonorm = nob64 = raw = every;
    nonorm.normalize = false;
    nob64.decode_base64 = false;
    raw.narrow_utf16 = raw.normalize = raw.decode_base64 = false;
    const engine_config *cfgs[4] = {&every, &nonorm, &nob64, &raw};
    double t[4][64];
    if (rounds > 64)
        rounds = 64;
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 4; k++) {
            double t0 = now();
            engine_scan(&plain_text, cfgs[k], "text");
            t[k][r] = (now() - t0) * 1e9 / (double)plain_text.n;
        }
    printf("text  views, ns/B | every view %.3f | normalised off %.3f | base64 off %.3f | "
           "raw only %.3f\n",
           median(t[0], rounds), median(t[1], rounds), median(t[2], rounds), median(t[3], rounds));
}

/* ------------------------------------------------------------------------------------------ */
/* Bombs.                                                                                      */

typedef void (*bomb_fn)(gen_buf *out, engine_config *cfg);

static void bomb_gzip(gen_buf *out, engine_config *cfg)
{
    if (gen_gzip_zeros(10240, out) != 0)
        die("gen");
    cfg->max_compound_size = 64u << 20;
}

static void bomb_gzip_noratio(gen_buf *out, engine_config *cfg)
{
    bomb_gzip(out, cfg);
    cfg->max_ratio = 1u << 30;
}

static void bomb_nested(gen_buf *out, engine_config *cfg)
{
    gen_buf inner = {0};
    if (gen_gzip_zeros(10240, &inner) != 0)
        die("gen");
    gen_buf gz = {0};
    deflate_to(inner.p, inner.n, 31, &gz);
    gen_buf_free(&inner);
    gen_zip z = {0};
    if (gen_zip_add(&z, "zeros.gz.gz", gz.p, gz.n) != 0 || gen_zip_finish(&z, out) != 0)
        die("gen");
    gen_buf_free(&gz);
    (void)cfg;
}

static void bomb_nested_noratio(gen_buf *out, engine_config *cfg)
{
    bomb_nested(out, cfg);
    cfg->max_ratio = 1u << 30;
}

static void bomb_overlap(gen_buf *out, engine_config *cfg)
{
    if (gen_zip_overlap(2000, 1, out) != 0)
        die("gen");
    (void)cfg;
}

static void bomb_many(gen_buf *out, engine_config *cfg)
{
    if (gen_zip_many(100000, out) != 0)
        die("gen");
    cfg->max_compound_size = 64u << 20;
}

static void bomb_vba(gen_buf *out, engine_config *cfg)
{
    size_t n = 64u << 20;
    char *src = malloc(n + 1);
    if (src == NULL)
        die("out of memory");
    memset(src, 'A', n);
    src[n] = '\0';
    gen_part parts[3];
    gen_buf bufs[3];
    char paths[3][128];
    if (gen_vba_project("Macros/VBA", "Module1", src, parts, bufs, paths) != 0 ||
        gen_ole2(parts, 3, NULL, out) != 0)
        die("gen");
    free(src);
    for (int i = 0; i < 3; i++)
        gen_buf_free(&bufs[i]);
    (void)cfg;
}

/* A field of /proc/self/status in KiB ("VmRSS", "VmHWM"), or -1. */
static long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (f != NULL)
        fclose(f);
    return v;
}

/* Resets the peak resident size (VmHWM) to the current one (Linux >= 4.0). */
static bool reset_peak(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f == NULL)
        return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static void bomb(const char *name, bomb_fn make)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        engine_config cfg;
        engine_config_init(&cfg);
        cfg.scan_archives = true;
        gen_buf b = {0};
        make(&b, &cfg);
        /* The peak is reset once the bomb is built, so it measures the scan alone. */
        bool reset = reset_peak();
        long before = status_kib("VmRSS");
        double t0 = now();
        engine_result r;
        if (engine_scan_buffer(rules, scratch, &cfg, b.p, b.n, name, 0, &r) != 0)
            _exit(1);
        double t1 = now();
        long peak = reset ? status_kib("VmHWM") : -1;
        printf("%-26s %9.1f KiB in | %-8s %-36s | %5.2f s | RSS %6.1f MiB before the scan, peak "
               "%6.1f MiB (+%.1f)%s\n",
               name, (double)b.n / 1024.0, engine_verdict_name(r.verdict),
               r.reason ? r.reason : "-", t1 - t0, (double)before / 1024.0, (double)peak / 1024.0,
               (double)(peak - before) / 1024.0, reset ? "" : " (peak not resettable)");
        fflush(stdout);
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        printf("%-26s did not finish cleanly\n", name);
}

int main(int argc, char **argv)
{
    size_t mib = 32;
    int rounds = 5;
    bool bombs = true;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc)
            mib = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rules") == 0 && i + 1 < argc)
            rules_path = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--no-bombs") == 0)
            bombs = false;
        else
            die("usage: unpack_bench [--mib N] [--rounds N] [--only gzip|zip|xz] [--no-bombs] "
                "[--rules PATH]");
    }
    if (mib == 0 || rounds < 1)
        die("bad option value");
    if (engine_global_init() != 0)
        die("engine_global_init");
    engine_diag diag;
    if (engine_rules_compile_files(&rules_path, 1, NULL, &rules, &diag) != 0)
        die(diag.text);
    if (engine_scratch_create(rules, &scratch) != 0)
        die("scratch");

    size_t n = mib << 20;
    uint8_t *text = make_text(n);
    gen_buf gz = {0}, zip = {0}, xz = {0};
    bool all = only == NULL;
    if (all || strcmp(only, "gzip") == 0)
        deflate_to(text, n, 31, &gz);
    if (all || strcmp(only, "zip") == 0)
        zip_to(text, n, &zip);
    if (all || strcmp(only, "xz") == 0)
        xz_to(text, n, &xz);
    plain_text.p = text;
    plain_text.n = n;
    printf("unpack_bench: %zu MiB of script text, %d rounds (medians), rules %s\n", mib, rounds,
           rules_path);
    if (gz.n > 0)
        throughput("gzip", &gz, n, decode_gzip, rounds);
    if (zip.n > 0)
        throughput("zip", &zip, n, decode_zip, rounds);
    if (xz.n > 0)
        throughput("xz", &xz, n, decode_xz, rounds);
    view_costs(rounds);
    gen_buf_free(&gz);
    gen_buf_free(&zip);
    gen_buf_free(&xz);
    free(text);

    if (bombs) {
        printf("\nbombs (each in its own process; default limits unless noted)\n");
        bomb("gzip-10GiB-zeros", bomb_gzip);
        bomb("gzip-10GiB, no ratio cap", bomb_gzip_noratio);
        bomb("zip>gz>gz-10GiB", bomb_nested);
        bomb("zip>gz>gz, no ratio cap", bomb_nested_noratio);
        bomb("zip-overlap-2000x1MiB", bomb_overlap);
        bomb("zip-100000-entries", bomb_many);
        bomb("vba-64MiB-module", bomb_vba);
    }
    engine_scratch_destroy(scratch);
    engine_rules_unref(rules);
    return 0;
}
