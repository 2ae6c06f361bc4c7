/*
 * workload.c - builds the items amsibench sends (see workload.h). Script text comes from gen.c;
 * ZIP containers from the tests' own container generator (tests/engine/gen); gzip from zlib.
 */
#include "workload.h"

#include "bench_util.h"
#include "gen.h"
#include "gen_containers.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define LARGE_SCRIPT_SIZE (512u << 10) /* above amsid's pool_min (256 KiB): the pool lane */
#define MAX_DIR_FILES     20000
#define MAX_DIR_FILE      (64u << 20)
#define MAX_DIR_BYTES     (1024ull << 20)

/*
 * Lines that each make one rule of the bundled default.yar match, and that libyara and the
 * generated ClamAV signatures find too (no UTF-16 narrowing or normalisation needed).
 */
static const char *const plants[] = {
    "$probe = 'AMSI Test Sample: 7e72c3ce-861b-4339-8740-0ac1484c1386'\n",
    "$test = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'\n",
    "[Ref].Assembly.GetType('System.Management.Automation.AmsiUtils').GetField("
    "'amsiInitFailed','NonPublic,Static').SetValue($null,$true)\n",
};
#define NPLANTS (sizeof(plants) / sizeof(plants[0]))

const char *bench_workload_name(bench_workload_kind kind)
{
    static const char *const names[] = {"scripts", "notify", "mixed", "sessions", "dir"};
    return kind <= BENCH_WL_DIR ? names[kind] : "?";
}

/* A size in [lo, hi], log-uniform so that small and large blocks are both well represented. */
static size_t pick_size(uint64_t *rng, size_t lo, size_t hi)
{
    if (hi <= lo)
        return lo;
    double f = (double)(bench_rng_next(rng) >> 11) / 9007199254740992.0;
    size_t s = (size_t)((double)lo * pow((double)hi / (double)lo, f));
    return s < lo ? lo : s > hi ? hi : s;
}

/*
 * Writes a plant line into a generated block of len bytes at a line start after the stamp line,
 * so the signature stands on its own line. Returns the offset where it starts.
 */
static size_t plant_into(uint64_t *rng, uint8_t *p, size_t len, const char *line)
{
    size_t ll = strlen(line), first = strlen(BENCH_STAMP_PREFIX) + BENCH_STAMP_DIGITS + 1;
    size_t room = len - ll - first, at = first + (size_t)(bench_rng_next(rng) % (room + 1));
    while (at > first && p[at - 1] != '\n')
        at--;
    memcpy(p + at, line, ll);
    return at;
}

/* Adds an item (takes data). Returns 0 or -1 (out of memory; data freed). */
static int add_item(bench_workload *w, size_t *cap, bench_item *it)
{
    if (w->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        bench_item *ni = realloc(w->items, nc * sizeof(*ni));
        if (ni == NULL) {
            free(it->data);
            return -1;
        }
        w->items = ni;
        *cap = nc;
    }
    w->items[w->n++] = *it;
    w->bytes += it->len;
    if (it->large)
        w->nlarge++;
    else
        w->nsmall++;
    return 0;
}

/* One small item: a script block (or notification, or session) of the spec's size. */
static int small_item(bench_workload *w, size_t *cap, const bench_workload_spec *s, uint64_t *rng,
                      size_t idx)
{
    size_t len = pick_size(rng, s->size_min, s->size_max);
    size_t chars = s->utf16 ? len / 2 : len;
    if (chars < BENCH_GEN_MIN_SIZE + 160)
        chars = BENCH_GEN_MIN_SIZE + 160; /* room for the longest plant line */
    uint8_t *p = malloc(s->utf16 ? 2 * chars : chars);
    if (p == NULL)
        return -1;
    bench_gen_script(rng, p, chars);
    bench_item it = {.data = p, .len = chars, .utf16 = s->utf16, .stampable = true};
    /* Spread the signed items evenly: item idx is signed when the running share crosses one. */
    it.planted = floor((double)(idx + 1) * s->signed_pct / 100.0 + 0.5) >
                 floor((double)idx * s->signed_pct / 100.0 + 0.5);
    size_t at = 0;
    const char *line = plants[idx % NPLANTS];
    if (it.planted)
        at = plant_into(rng, p, chars, line);
    switch (s->kind) {
    case BENCH_WL_NOTIFY:
        it.kind = "notify";
        break;
    case BENCH_WL_SESSIONS:
        it.kind = "session";
        /* The first buffer ends in the middle of the signature (or of the block). */
        it.split = it.planted ? at + strlen(line) / 2 : chars / 2;
        break;
    default:
        it.kind = "script";
        break;
    }
    if (s->utf16) {
        bench_gen_widen(p, chars, p);
        it.len = 2 * chars;
        it.split *= 2;
    }
    snprintf(it.name, sizeof(it.name), "bench-%zu.ps1", idx);
    return add_item(w, cap, &it);
}

/* A generated script of len bytes in a new buffer, planted when plant. NULL when out of memory. */
static uint8_t *script(uint64_t *rng, size_t len, bool plant, unsigned which)
{
    uint8_t *p = malloc(len);
    if (p == NULL)
        return NULL;
    bench_gen_script(rng, p, len);
    if (plant)
        plant_into(rng, p, len, plants[which % NPLANTS]);
    return p;
}

/* A gzip member of n bytes (zlib). Returns 0 or -1. */
static int gzip_of(const uint8_t *in, size_t n, gen_buf *out)
{
    z_stream z = {0};
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t cap = deflateBound(&z, (uLong)n);
    out->p = malloc(cap);
    if (out->p == NULL) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = out->p;
    z.avail_out = (uInt)cap;
    int rc = deflate(&z, Z_FINISH);
    out->n = cap - z.avail_out;
    out->cap = cap;
    deflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : -1;
}

/*
 * One large item of the mixed workload, by turn: a ZIP of four scripts, a gzip'd script, an
 * OOXML document (a ZIP with a document part and a macro part), a script above the pool size.
 * Half carry a signature (in a member, for containers): of every eight, the last four.
 */
static int large_item(bench_workload *w, size_t *cap, uint64_t *rng, size_t idx)
{
    bool plant = idx % 8 >= 4; /* the second four of every eight */
    bench_item it = {.large = true, .planted = plant};
    gen_buf out = {0};
    uint8_t *parts[4] = {0};
    int rc = -1;
    switch (idx % 4) {
    case 0: {
        gen_zip z = {0};
        int e = 0;
        for (unsigned i = 0; i < 4; i++) {
            char name[32];
            snprintf(name, sizeof(name), "scripts/part%u.ps1", i);
            if ((parts[i] = script(rng, 64u << 10, plant && i == 2, (unsigned)idx)) == NULL)
                e = -1;
            else
                e |= gen_zip_add(&z, name, parts[i], 64u << 10);
        }
        if (e == 0 && gen_zip_finish(&z, &out) == 0)
            rc = 0;
        else
            gen_zip_free(&z);
        it.kind = "zip";
        break;
    }
    case 1:
        if ((parts[0] = script(rng, 192u << 10, plant, (unsigned)idx)) != NULL)
            rc = gzip_of(parts[0], 192u << 10, &out);
        it.kind = "gzip";
        break;
    case 2: {
        static const char types[] =
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Types xmlns=\"http://schemas.openxmlformats"
            ".org/package/2006/content-types\"><Override PartName=\"/word/document.xml\" "
            "ContentType=\"application/vnd.ms-word.document.macroEnabled.main+xml\"/></Types>";
        gen_zip z = {0};
        int e = gen_zip_add(&z, "[Content_Types].xml", types, sizeof(types) - 1);
        if ((parts[0] = script(rng, 96u << 10, false, 0)) == NULL ||
            (parts[1] = script(rng, 32u << 10, plant, (unsigned)idx)) == NULL)
            e = -1;
        else
            e |= gen_zip_add(&z, "word/document.xml", parts[0], 96u << 10) |
                 gen_zip_add(&z, "word/vbaProject.bin", parts[1], 32u << 10);
        if (e == 0 && gen_zip_finish(&z, &out) == 0)
            rc = 0;
        else
            gen_zip_free(&z);
        it.kind = "docx";
        break;
    }
    default:
        if ((out.p = script(rng, LARGE_SCRIPT_SIZE, plant, (unsigned)idx)) != NULL) {
            out.n = LARGE_SCRIPT_SIZE;
            rc = 0;
        }
        it.kind = "large";
        break;
    }
    for (unsigned i = 0; i < 4; i++)
        free(parts[i]);
    if (rc != 0) {
        gen_buf_free(&out);
        return -1;
    }
    it.data = out.p;
    it.len = out.n;
    snprintf(it.name, sizeof(it.name), "bench-large-%zu.%s", idx, it.kind);
    return add_item(w, cap, &it);
}

/* nftw() has no user pointer: the directory walk's state, set only during the walk. */
static struct {
    bench_workload *w;
    size_t *cap;
    int error;
} g_walk;

/* Reads one regular file into an item. Unreadable files are skipped with a warning. */
static int walk_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F || !S_ISREG(st->st_mode) || st->st_size == 0)
        return 0;
    if (g_walk.w->n >= MAX_DIR_FILES || g_walk.w->bytes + (uint64_t)st->st_size > MAX_DIR_BYTES)
        return 1;
    if ((uint64_t)st->st_size > MAX_DIR_FILE) {
        fprintf(stderr, "amsibench: skipping %s (over 64 MiB)\n", path);
        return 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    uint8_t *p = fd >= 0 ? malloc((size_t)st->st_size) : NULL;
    size_t got = 0;
    while (p != NULL && got < (size_t)st->st_size) {
        ssize_t r = read(fd, p + got, (size_t)st->st_size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (fd >= 0)
        close(fd);
    if (p == NULL || got == 0) {
        fprintf(stderr, "amsibench: skipping %s: %s\n", path, strerror(errno));
        free(p);
        return 0;
    }
    bench_item it = {.data = p, .len = got, .kind = "file"};
    snprintf(it.name, sizeof(it.name), "%s", path);
    if (add_item(g_walk.w, g_walk.cap, &it) != 0) {
        g_walk.error = ENOMEM;
        return 1;
    }
    return 0;
}

int bench_workload_init(bench_workload *w, const bench_workload_spec *s)
{
    *w = (bench_workload){0};
    size_t cap = 0;
    uint64_t rng = s->seed;
    if (s->kind == BENCH_WL_DIR) {
        g_walk.w = w;
        g_walk.cap = &cap;
        g_walk.error = 0;
        int rc = nftw(s->dir, walk_one, 32, FTW_PHYS);
        g_walk.w = NULL;
        if (rc < 0 || g_walk.error) {
            fprintf(stderr, "amsibench: cannot read %s: %s\n", s->dir,
                    strerror(g_walk.error ? g_walk.error : errno));
            bench_workload_cleanup(w);
            return -1;
        }
        if (w->n == 0) {
            fprintf(stderr, "amsibench: no readable files under %s\n", s->dir);
            return -1;
        }
        return 0;
    }
    for (size_t i = 0; i < s->nitems; i++)
        if (small_item(w, &cap, s, &rng, i) != 0)
            goto oom;
    if (s->kind == BENCH_WL_MIXED && s->large_pct > 0) {
        /* Enough large items that large_pct of the requests drawn at random are large. */
        size_t nl = (size_t)ceil((double)s->nitems * s->large_pct / (100.0 - s->large_pct));
        nl = nl < 8 ? 8 : nl > 64 ? 64 : nl;
        for (size_t i = 0; i < nl; i++)
            if (large_item(w, &cap, &rng, i) != 0)
                goto oom;
    }
    return 0;
oom:
    fprintf(stderr, "amsibench: out of memory generating the workload\n");
    bench_workload_cleanup(w);
    return -1;
}

void bench_workload_cleanup(bench_workload *w)
{
    for (size_t i = 0; w->items && i < w->n; i++)
        free(w->items[i].data);
    free(w->items);
    *w = (bench_workload){0};
}
