/*
 * test_unpack.c - container detection and the archive unpackers (engine/src/unpack.c,
 * engine/src/unpack_archive.c).
 *
 * Containers are built at test time into a temporary directory: with Debian's tools by
 * tests/engine/gen/make_unpack_samples.sh (zip, tar, 7z, gcab, genisoimage, cpio, bsdtar, ar, gzip,
 * bzip2, xz, arj), and in memory by tests/engine/gen/gen_containers.c (RAR 4/5, LHA, ZIPs with
 * 100,000 or overlapping entries, compression bombs). Each one holds evil.ps1, whose text carries
 * SIG, somewhere inside.
 *
 * engine__unpack() is driven through a fake host that does what the scanner does with children:
 * records each one's object path and size (and whether it holds SIG), unpacks it in turn one level
 * deeper, meters charges against max_scan_size, keeps the notes, and optionally stops at the
 * first child holding SIG. The cases assert the children, their object paths and the notes. Every
 * input is a heap block of exactly its size, so AddressSanitizer sees any read past it.
 *
 * The same containers also go through engine_scan_buffer() with a rule on SIG (the scanner as
 * the host), checking verdicts, object paths and reasons end to end. Building with
 * UNPACK_VIA_SCAN=0 leaves that part out, for a build of the unpacker alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zlib.h>

#include "engine/engine.h"
#include "gen/gen_containers.h"
#include "unpack.h"

#ifndef AMSI_SOURCE_DIR
#define AMSI_SOURCE_DIR "."
#endif
#ifndef UNPACK_VIA_SCAN
#define UNPACK_VIA_SCAN 1
#endif

#define SIG "AMSI-UNPACK-SIGNATURE-41c7"

#define EVIL_SIZE  81u    /* bytes of evil.ps1 as the script writes it */
#define CLEAN_SIZE 25490u /* bytes of clean.txt */

/* The directory the samples were built in (group setup). */
static char sample_dir[256];

/* ---------------------------------------------------------------------------------------------
 * The fake host
 * ------------------------------------------------------------------------------------------- */

typedef struct fake {
    engine_config cfg;
    char path[1024];   /* object path of the object being unpacked */
    char log[8192];    /* children: "path(len)" + "!" if SIG inside + "~" for a stream, ' | ' */
    char notes[2048];  /* notes: "reason" + " [E]" for errors, joined by ' | ' */
    unsigned children; /* children seen (all, also past the log's room) */
    unsigned sig_children;
    uint64_t charged;
    bool finished;
    bool stop_on_sig;     /* a child holding SIG finishes the request (a detection) */
    unsigned time_calls;  /* out_of_time() calls so far */
    unsigned time_budget; /* out_of_time() is true after this many calls (0: never) */
    int nested_rc;        /* the first negative engine__unpack() result of a child */
    unsigned streams_open, streams_close;
    bool in_stream;
    char stream_name[1100];
    uint64_t stream_len;
    bool stream_sig;
    char stream_tail[sizeof(SIG)]; /* the last bytes written, for SIG across writes */
    size_t tail_len;
} fake;

static fake *fake_of(engine__unpack_host *h)
{
    return h->opaque;
}

static void append(char *buf, size_t cap, const char *text)
{
    size_t n = strlen(buf);
    if (n + 1 < cap)
        snprintf(buf + n, cap - n, "%s%s", n ? " | " : "", text);
}

static bool fake_scan_child(engine__unpack_host *h, const uint8_t *data, size_t len,
                            const char *name);

static bool fake_stream_open(engine__unpack_host *h, const char *name)
{
    fake *f = fake_of(h);
    assert_false(f->in_stream);
    f->in_stream = true;
    f->streams_open++;
    snprintf(f->stream_name, sizeof(f->stream_name), "%s>%s", f->path, name);
    f->stream_len = 0;
    f->stream_sig = false;
    f->tail_len = 0;
    return f->finished;
}

static bool fake_stream_write(engine__unpack_host *h, const uint8_t *data, size_t len)
{
    fake *f = fake_of(h);
    assert_true(f->in_stream);
    f->stream_len += len;
    /* SIG split across writes: look at the previous tail followed by this write's head. */
    char joint[2 * sizeof(SIG)];
    size_t head = len < sizeof(SIG) ? len : sizeof(SIG);
    memcpy(joint, f->stream_tail, f->tail_len);
    memcpy(joint + f->tail_len, data, head);
    if (memmem(joint, f->tail_len + head, SIG, strlen(SIG)) || memmem(data, len, SIG, strlen(SIG)))
        f->stream_sig = true;
    size_t keep = len < sizeof(SIG) - 1 ? len : sizeof(SIG) - 1;
    if (f->tail_len + keep > sizeof(SIG) - 1) {
        size_t drop = f->tail_len + keep - (sizeof(SIG) - 1);
        memmove(f->stream_tail, f->stream_tail + drop, f->tail_len - drop);
        f->tail_len -= drop;
    }
    memcpy(f->stream_tail + f->tail_len, data + len - keep, keep);
    f->tail_len += keep;
    return f->finished;
}

static bool fake_stream_close(engine__unpack_host *h)
{
    fake *f = fake_of(h);
    assert_true(f->in_stream);
    f->in_stream = false;
    f->streams_close++;
    f->children++;
    char entry[1200];
    snprintf(entry, sizeof(entry), "%s(%llu)%s~", f->stream_name, (unsigned long long)f->stream_len,
             f->stream_sig ? "!" : "");
    append(f->log, sizeof(f->log), entry);
    if (f->stream_sig) {
        f->sig_children++;
        if (f->stop_on_sig)
            f->finished = true;
    }
    return f->finished;
}

static void fake_note(engine__unpack_host *h, const char *reason, bool error)
{
    fake *f = fake_of(h);
    assert_non_null(reason);
    char entry[256];
    snprintf(entry, sizeof(entry), "%s%s", reason, error ? " [E]" : "");
    append(f->notes, sizeof(f->notes), entry);
    /* The scanner ends the request on the request-wide limits. */
    if (!error && (strcmp(reason, "Limits.Exceeded.MaxScanSize") == 0 ||
                   strcmp(reason, "Limits.Exceeded.MaxScanTime") == 0))
        f->finished = true;
}

static bool fake_charge(engine__unpack_host *h, uint64_t bytes)
{
    fake *f = fake_of(h);
    if (f->charged + bytes > f->cfg.max_scan_size) {
        fake_note(h, "Limits.Exceeded.MaxScanSize", false);
        return false;
    }
    f->charged += bytes;
    return true;
}

static bool fake_out_of_time(engine__unpack_host *h)
{
    fake *f = fake_of(h);
    f->time_calls++;
    if (f->time_budget != 0 && f->time_calls > f->time_budget) {
        if (!f->finished)
            fake_note(h, "Limits.Exceeded.MaxScanTime", false);
        return true;
    }
    return false;
}

static engine__unpack_host fake_host(fake *f, unsigned depth)
{
    engine__unpack_host h = {
        .cfg = &f->cfg,
        .depth = depth,
        .scan_child = fake_scan_child,
        .stream_open = fake_stream_open,
        .stream_write = fake_stream_write,
        .stream_close = fake_stream_close,
        .charge = fake_charge,
        .note = fake_note,
        .out_of_time = fake_out_of_time,
        .opaque = f,
    };
    return h;
}

static bool fake_scan_child(engine__unpack_host *h, const uint8_t *data, size_t len,
                            const char *name)
{
    fake *f = fake_of(h);
    assert_non_null(name);
    assert_false(f->in_stream);
    size_t at = strlen(f->path);
    snprintf(f->path + at, sizeof(f->path) - at, ">%s", name);
    bool sig = memmem(data, len, SIG, strlen(SIG)) != NULL;
    char entry[1200];
    snprintf(entry, sizeof(entry), "%s(%zu)%s", f->path, len, sig ? "!" : "");
    append(f->log, sizeof(f->log), entry);
    f->children++;
    if (sig) {
        f->sig_children++;
        if (f->stop_on_sig)
            f->finished = true;
    }
    if (!f->finished) {
        /* A copy of the child on the heap at its exact size, as the scanner could hand it. */
        uint8_t *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, data, len);
        engine__unpack_host child = fake_host(f, h->depth + 1);
        int rc = engine__unpack(&child, copy, len);
        if (rc < 0 && f->nested_rc == 0)
            f->nested_rc = rc;
        assert_true(rc == 0 || rc == 1);
        free(copy);
    }
    f->path[at] = '\0';
    return f->finished;
}

/* A fake with every container class on and the documented default limits. */
static void fake_init(fake *f)
{
    memset(f, 0, sizeof(*f));
    engine_config_init(&f->cfg);
    f->cfg.scan_archives = true;
    f->cfg.scan_packages = true;
    f->cfg.scan_office = true;
}

/* Unpacks data as the request named `name`; returns engine__unpack()'s result. */
static int run(fake *f, const char *name, const uint8_t *data, size_t len)
{
    f->log[0] = f->notes[0] = '\0';
    snprintf(f->path, sizeof(f->path), "%s", name);
    engine__unpack_host h = fake_host(f, 0);
    int rc = engine__unpack(&h, data, len);
    assert_false(f->in_stream);
    assert_int_equal(f->streams_open, f->streams_close);
    return rc;
}

/* got equals want, where a '*' in want stands for a run of digits (sizes that vary by tool). */
static bool text_matches(const char *got, const char *want)
{
    while (*want != '\0') {
        if (*want == '*') {
            if (*got < '0' || *got > '9')
                return false;
            while (*got >= '0' && *got <= '9')
                got++;
            want++;
        } else if (*got++ != *want++) {
            return false;
        }
    }
    return *got == '\0';
}

static void expect_text(const char *what, const char *got, const char *want)
{
    if (!text_matches(got, want))
        fail_msg("%s:\n  got  [%s]\n  want [%s]", what, got, want);
}

/* ---------------------------------------------------------------------------------------------
 * Inputs
 * ------------------------------------------------------------------------------------------- */

typedef struct blob {
    uint8_t *p;
    size_t n;
} blob;

/* Reads a sample into a heap block of exactly its size. */
static blob load(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", sample_dir, name);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        fail_msg("cannot open sample %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    rewind(fp);
    blob b = {malloc(n > 0 ? (size_t)n : 1), (size_t)n};
    assert_non_null(b.p);
    assert_int_equal(fread(b.p, 1, b.n, fp), b.n);
    fclose(fp);
    return b;
}

/* A heap copy of a generated buffer (exact size), freeing the generator's buffer. */
static blob from_gen(gen_buf *g)
{
    blob b = {malloc(g->n ? g->n : 1), g->n};
    assert_non_null(b.p);
    memcpy(b.p, g->p, g->n);
    gen_buf_free(g);
    return b;
}

static blob from_bytes(const void *p, size_t n)
{
    blob b = {malloc(n ? n : 1), n};
    assert_non_null(b.p);
    memcpy(b.p, p, n);
    return b;
}

/* Runs one sample through a default fake and checks the children and notes. */
static void check_sample(const char *name, const char *want_children, const char *want_notes)
{
    fake f;
    fake_init(&f);
    blob b = load(name);
    int rc = run(&f, name, b.p, b.n);
    free(b.p);
    assert_int_equal(rc, 0);
    assert_int_equal(f.nested_rc, 0);
    char what[300];
    snprintf(what, sizeof(what), "children of %s", name);
    expect_text(what, f.log, want_children);
    snprintf(what, sizeof(what), "notes of %s", name);
    expect_text(what, f.notes, want_notes);
}

/* The usual two members of a sample, with their object paths under `root`. */
static void check_pair(const char *name, const char *dir)
{
    char want[600];
    snprintf(want, sizeof(want), "%s>%sclean.txt(%u) | %s>%sevil.ps1(%u)!", name, dir, CLEAN_SIZE,
             name, dir, EVIL_SIZE);
    check_sample(name, want, "");
}

/* ---------------------------------------------------------------------------------------------
 * Setup
 * ------------------------------------------------------------------------------------------- */

static int build_samples(void **state)
{
    (void)state;
    snprintf(sample_dir, sizeof(sample_dir), "%s/amsi-unpack-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(sample_dir) == NULL)
        return -1;
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "sh '%s/tests/engine/gen/make_unpack_samples.sh' '%s'",
             AMSI_SOURCE_DIR, sample_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_unpack: building the samples failed (see above for the tool)\n");
        return -1;
    }
    return 0;
}

static int remove_samples(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", sample_dir);
    if (system(cmd) != 0)
        return -1;
    /* Prove the directory is gone. */
    FILE *fp = fopen(sample_dir, "r");
    if (fp != NULL) {
        fclose(fp);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Detection
 * ------------------------------------------------------------------------------------------- */

static void test_detect_samples(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        engine__ctype type;
    } cases[] = {
        {"zip_deflate.zip", ENGINE__CT_ZIP},
        {"zip_stored.zip", ENGINE__CT_ZIP},
        {"zip_bzip2.zip", ENGINE__CT_ZIP},
        {"zip_zip64.zip", ENGINE__CT_ZIP},
        {"zip_dd.zip", ENGINE__CT_ZIP},
        {"zip_pipe.zip", ENGINE__CT_ZIP},
        {"app.jar", ENGINE__CT_ZIP},
        {"zip_enc.zip", ENGINE__CT_ZIP},
        {"ooxml.zip", ENGINE__CT_OOXML},
        {"sfx_zip.exe", ENGINE__CT_ZIP},
        {"sfx_zip_adj.exe", ENGINE__CT_ZIP},
        {"tar_ustar.tar", ENGINE__CT_TAR},
        {"tar_gnu.tar", ENGINE__CT_TAR},
        {"tar_pax.tar", ENGINE__CT_TAR},
        {"tar_v7.tar", ENGINE__CT_TAR},
        {"sparse.tar", ENGINE__CT_TAR},
        {"a.7z", ENGINE__CT_7Z},
        {"solid.7z", ENGINE__CT_7Z},
        {"enc.7z", ENGINE__CT_7Z},
        {"enchdr.7z", ENGINE__CT_7Z},
        {"sfx_7z.exe", ENGINE__CT_7Z},
        {"a.cab", ENGINE__CT_CAB},
        {"mszip.cab", ENGINE__CT_CAB},
        {"sfx_cab.exe", ENGINE__CT_CAB},
        {"a.iso", ENGINE__CT_ISO},
        {"newc.cpio", ENGINE__CT_CPIO},
        {"odc.cpio", ENGINE__CT_CPIO},
        {"crc.cpio", ENGINE__CT_CPIO},
        {"bin.cpio", ENGINE__CT_CPIO},
        {"a.xar", ENGINE__CT_XAR},
        {"a.ar", ENGINE__CT_AR},
        {"fake.deb", ENGINE__CT_AR},
        {"evil.ps1.gz", ENGINE__CT_GZIP},
        {"evil.ps1.bz2", ENGINE__CT_BZIP2},
        {"evil.ps1.xz", ENGINE__CT_XZ},
        {"cat.gz", ENGINE__CT_GZIP},
        {"a.arj", ENGINE__CT_ARJ},
        {"enc.arj", ENGINE__CT_ARJ},
        {"sfx_arj.exe", ENGINE__CT_ARJ},
        {"payload.tar.gz", ENGINE__CT_GZIP},
        {"l5.cpio", ENGINE__CT_CPIO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        blob b = load(cases[i].name);
        engine__ctype t = engine__detect_type(b.p, b.n);
        if (t != cases[i].type)
            fail_msg("%s: detected %s, want %s", cases[i].name, engine__ctype_name(t),
                     engine__ctype_name(cases[i].type));
        free(b.p);
    }

    const char *data = "hello " SIG "\n";
    for (int level = 0; level <= 2; level++) {
        gen_buf g = {0};
        assert_int_equal(gen_lha_stored(level, "evil.ps1", data, strlen(data), &g), 0);
        blob b = from_gen(&g);
        assert_int_equal(engine__detect_type(b.p, b.n), ENGINE__CT_LHA);
        free(b.p);
    }
    gen_buf g = {0};
    assert_int_equal(gen_rar4_stored("evil.ps1", data, strlen(data), &g), 0);
    blob b = from_gen(&g);
    assert_int_equal(engine__detect_type(b.p, b.n), ENGINE__CT_RAR);
    free(b.p);
    assert_int_equal(gen_rar5_stored("evil.ps1", data, strlen(data), &g), 0);
    b = from_gen(&g);
    assert_int_equal(engine__detect_type(b.p, b.n), ENGINE__CT_RAR);
    free(b.p);
}

/* xorshift64, for reproducible random bytes. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(rng_next(&seed) >> 24);
}

static void test_detect_lookalikes(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "PK is how this text file begins, and it is not a ZIP archive at all.\n",
        "PK\x03\x04 looks like a local header but the rest is prose, no method.\n",
        "7z is a fine archiver; this file merely talks about it for a while.\n",
        "7z\xBC\xAF\x27\x1C then garbage where the start header CRC should check out......",
        "Rar! is the start of this line, and the marker block never follows it.\n",
        "Rar!\x1A\x07\x00 marker, but no valid archive header after the marker block!!",
        "MSCF is a cabinet magic; this sentence has no reserved zero fields.\n",
        "!<arch>\nnot a member header, just a line of text that goes on and on and on and on.",
        "070707 is an old cpio magic and these are not octal fields, honest.\n",
        "0707010000 new cpio magic with hex-looking words but no real header here\n",
        "BZh91AY&SY looks a bit like bzip2 only by accident in this plain text file\n",
        "xar! followed by text instead of a big-endian header size and version\n",
        "\x1F\x8B but the method byte here is not deflate, it is plain text.\n",
        "xx-lh5- an LHA method id in the wrong place of an ordinary text line..\n",
        "MZ this pretends to be an executable that contains Rar! and 7z and -lh5- ids\n",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        blob b = from_bytes(texts[i], strlen(texts[i]));
        engine__ctype t = engine__detect_type(b.p, b.n);
        if (t != ENGINE__CT_NONE)
            fail_msg("text %zu detected as %s", i, engine__ctype_name(t));
        fake f;
        fake_init(&f);
        assert_int_equal(run(&f, "text", b.p, b.n), 1);
        expect_text("children", f.log, "");
        free(b.p);
    }

    /* Random bytes of many sizes, zeros, and text with "CD001" where ISO 9660 has it. */
    for (uint64_t seed = 1; seed <= 200; seed++) {
        size_t n = (size_t)(seed * 997 % 70000) + 1;
        uint8_t *p = malloc(n);
        assert_non_null(p);
        fill_random(p, n, seed);
        engine__ctype t = engine__detect_type(p, n);
        if (t != ENGINE__CT_NONE)
            fail_msg("random seed %llu (%zu bytes) detected as %s", (unsigned long long)seed, n,
                     engine__ctype_name(t));
        free(p);
    }
    size_t big = 1u << 20;
    uint8_t *p = malloc(big);
    assert_non_null(p);
    fill_random(p, big, 4242);
    p[0] = 'M';
    p[1] = 'Z';
    assert_int_equal(engine__detect_type(p, big), ENGINE__CT_NONE);
    memset(p, 0, big);
    assert_int_equal(engine__detect_type(p, big), ENGINE__CT_NONE);
    memset(p, 'a', 40000);
    memcpy(p + 0x8001, "CD001", 5);
    p[0x8000] = 1;
    p[0x8006] = 1;
    assert_int_equal(engine__detect_type(p, 40000), ENGINE__CT_NONE);
    /* A text block of 512 bytes is not a v7 TAR header. */
    memset(p, ' ', 512);
    memcpy(p, "readme.txt", 10);
    assert_int_equal(engine__detect_type(p, 512), ENGINE__CT_NONE);
    free(p);
    assert_int_equal(engine__detect_type(NULL, 0), ENGINE__CT_NONE);
}

/* An executable stuffed with decoy archive headers is searched in bounded time, and is none. */
static void test_detect_decoys(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        uint8_t decoy[16];
        size_t len;
    } decoys[] = {
        /* RAR 4 marker, then a main header claiming 65,535 bytes (a CRC over all of them). */
        {"rar4", {'R', 'a', 'r', '!', 0x1A, 7, 0, 0, 0, 0x73, 0, 0, 0xFF, 0xFF}, 14},
        /* RAR 5 marker, CRC, a 3-byte size of about 2 MiB, type 1. */
        {"rar5", {'R', 'a', 'r', '!', 0x1A, 7, 1, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x7F, 1}, 16},
        /* ARJ main header of 2600 bytes, file type 2. */
        {"arj", {0x60, 0xEA, 0x28, 0x0A, 30, 0, 0, 0, 0, 0, 2}, 11},
        /* LHA level 2 header of 65,535 bytes. */
        {"lha", {0xFF, 0xFF, '-', 'l', 'h', '5', '-'}, 7},
    };
    size_t n = 1u << 20;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t d = 0; d < sizeof(decoys) / sizeof(decoys[0]); d++) {
        memset(p, 0, n);
        for (size_t at = 2; at + 32 <= n; at += 32) {
            memcpy(p + at, decoys[d].decoy, decoys[d].len);
            if (decoys[d].name[0] == 'l') {
                p[at + 19] = 0x20;
                p[at + 20] = 2;
            }
        }
        p[0] = 'M';
        p[1] = 'Z';
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        engine__ctype t = engine__detect_type(p, n);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("      1 MiB stub of %s decoys: %.2f ms\n", decoys[d].name,
               (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
        assert_int_equal(t, ENGINE__CT_NONE);
    }
    free(p);
    assert_int_equal(engine__detect_type((const uint8_t *)"PK", 2), ENGINE__CT_NONE);
}

static void test_names_and_classes(void **state)
{
    (void)state;
    assert_string_equal(engine__ctype_name(ENGINE__CT_GZIP), "gzip");
    assert_string_equal(engine__ctype_name(ENGINE__CT_BZIP2), "bzip2");
    assert_string_equal(engine__ctype_name(ENGINE__CT_XZ), "xz");
    assert_string_equal(engine__ctype_name(ENGINE__CT_NONE), "none");
    assert_string_equal(engine__ctype_name((engine__ctype)999), "none");
    for (int t = ENGINE__CT_NONE; t <= ENGINE__CT_MSI; t++)
        assert_non_null(engine__ctype_name((engine__ctype)t));
    assert_int_equal(engine__ctype_class(ENGINE__CT_ZIP), ENGINE__CC_ARCHIVE);
    assert_int_equal(engine__ctype_class(ENGINE__CT_GZIP), ENGINE__CC_ARCHIVE);
    assert_int_equal(engine__ctype_class(ENGINE__CT_CAB), ENGINE__CC_PACKAGE);
    assert_int_equal(engine__ctype_class(ENGINE__CT_AR), ENGINE__CC_PACKAGE);
    assert_int_equal(engine__ctype_class(ENGINE__CT_MSI), ENGINE__CC_PACKAGE);
    assert_int_equal(engine__ctype_class(ENGINE__CT_OLE2), ENGINE__CC_OFFICE);
    assert_int_equal(engine__ctype_class(ENGINE__CT_OOXML), ENGINE__CC_OFFICE);
}

/* A minimal Compound File header with one directory sector; root class id as given. */
static blob make_ole2(uint32_t clsid0)
{
    size_t n = 512 * 3;
    uint8_t *p = calloc(1, n);
    assert_non_null(p);
    static const uint8_t sig[8] = {0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1};
    memcpy(p, sig, 8);
    p[24] = 0x3E;
    p[26] = 3;    /* major version 3 */
    p[28] = 0xFE; /* byte order */
    p[29] = 0xFF;
    p[30] = 9; /* 512-byte sectors */
    p[32] = 6;
    p[48] = 1; /* directory starts at sector 1, i.e. offset 1024 */
    uint8_t *root = p + 1024;
    memcpy(root, "R\0o\0o\0t\0", 8);
    root[66] = 5;
    for (int i = 0; i < 4; i++)
        root[80 + i] = (uint8_t)(clsid0 >> (8 * i));
    root[88] = 0xC0;
    root[95] = 0x46;
    blob b = {p, n};
    return b;
}

/*
 * Office types go to their unpackers (tests/engine/test_office.c has the documents): OOXML
 * through the ZIP walker, and a compound file whose tables libgsf refuses is an error.
 */
static void test_office_types(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    blob b = load("ooxml.zip");
    assert_int_equal(engine__detect_type(b.p, b.n), ENGINE__CT_OOXML);
    assert_int_equal(run(&f, "doc.docx", b.p, b.n), 0);
    expect_text("children", f.log, "doc.docx>[Content_Types].xml(*) | doc.docx>evil.ps1(81)!");
    expect_text("notes", f.notes, "");
    /* With scan_office alone (the default), OOXML is still unpacked. */
    f.cfg.scan_archives = f.cfg.scan_packages = false;
    assert_int_equal(run(&f, "doc.docx", b.p, b.n), 0);
    expect_text("children", f.log, "doc.docx>[Content_Types].xml(*) | doc.docx>evil.ps1(81)!");
    f.cfg.scan_office = false;
    assert_int_equal(run(&f, "doc.docx", b.p, b.n), 1);
    free(b.p);

    fake_init(&f);
    b = make_ole2(0x00020906u); /* a Word document's class id */
    assert_int_equal(engine__detect_type(b.p, b.n), ENGINE__CT_OLE2);
    assert_int_equal(run(&f, "doc.doc", b.p, b.n), 0);
    expect_text("notes", f.notes, "ole2: corrupt [E]");
    free(b.p);
    b = make_ole2(0x000C1084u);
    assert_int_equal(engine__detect_type(b.p, b.n), ENGINE__CT_MSI);
    assert_int_equal(run(&f, "setup.msi", b.p, b.n), 0);
    expect_text("notes", f.notes, "ole2: corrupt [E]");
    f.cfg.scan_packages = false;
    assert_int_equal(run(&f, "setup.msi", b.p, b.n), 1);
    free(b.p);
}

/* ---------------------------------------------------------------------------------------------
 * Every format
 * ------------------------------------------------------------------------------------------- */

static void test_zip_variants(void **state)
{
    (void)state;
    check_pair("zip_deflate.zip", "");
    check_pair("zip_stored.zip", "");
    check_pair("zip_bzip2.zip", "");
    check_pair("zip_zip64.zip", "");
    check_pair("zip_dd.zip", "");
    check_pair("sfx_zip.exe", "");
    check_pair("sfx_zip_adj.exe", "");
    check_sample("zip_pipe.zip", "zip_pipe.zip>-(81)!", "");
    check_sample("app.jar", "app.jar>META-INF/MANIFEST.MF(22) | app.jar>evil.ps1(81)!", "");
}

static void test_tar_variants(void **state)
{
    (void)state;
    check_pair("tar_ustar.tar", "");
    check_pair("tar_gnu.tar", "");
    check_pair("tar_pax.tar", "");
    check_pair("tar_v7.tar", "");
}

static void test_7z(void **state)
{
    (void)state;
    check_pair("a.7z", "");
    check_sample("solid.7z", "solid.7z>clean.txt(25490) | solid.7z>dir/evil.ps1(81)!", "");
    check_pair("sfx_7z.exe", "");
}

static void test_rar(void **state)
{
    (void)state;
    const char *data = "Invoke-Expression " SIG "\n";
    for (int v = 4; v <= 5; v++) {
        gen_buf g = {0};
        assert_int_equal(v == 4 ? gen_rar4_stored("dir/evil.ps1", data, strlen(data), &g)
                                : gen_rar5_stored("dir/evil.ps1", data, strlen(data), &g),
                         0);
        blob b = from_gen(&g);
        fake f;
        fake_init(&f);
        assert_int_equal(run(&f, "a.rar", b.p, b.n), 0);
        expect_text("children", f.log, "a.rar>dir/evil.ps1(45)!");
        expect_text("notes", f.notes, "");
        free(b.p);
    }
}

static void test_cab(void **state)
{
    (void)state;
    check_pair("a.cab", "");
    check_pair("mszip.cab", "");
    check_pair("sfx_cab.exe", "");
}

static void test_lha(void **state)
{
    (void)state;
    const char *data = "Invoke-Expression " SIG "\n";
    for (int level = 0; level <= 2; level++) {
        gen_buf g = {0};
        assert_int_equal(gen_lha_stored(level, "evil.ps1", data, strlen(data), &g), 0);
        blob b = from_gen(&g);
        fake f;
        fake_init(&f);
        assert_int_equal(run(&f, "a.lzh", b.p, b.n), 0);
        expect_text("children", f.log, "a.lzh>evil.ps1(45)!");
        expect_text("notes", f.notes, "");

        /* The same archive behind an executable stub (a self-extractor). */
        uint8_t *sfx = malloc(4096 + b.n);
        assert_non_null(sfx);
        memset(sfx, 'A', 4096);
        sfx[0] = 'M';
        sfx[1] = 'Z';
        memcpy(sfx + 4096, b.p, b.n);
        assert_int_equal(engine__detect_type(sfx, 4096 + b.n), ENGINE__CT_LHA);
        assert_int_equal(run(&f, "a.exe", sfx, 4096 + b.n), 0);
        expect_text("children", f.log, "a.exe>evil.ps1(45)!");
        free(sfx);
        free(b.p);
    }
}

/*
 * ICE archives are LHA archives whose members use -lh1- (LZHUF), which libarchive cannot decode:
 * they are read with liblhasa. tests/engine/data/lha/ice.lzh was written by
 * tests/engine/gen/make_ice_samples.sh (jLHA's -lh1- encoder, checked with lhasa).
 */
/* Reads a committed sample of tests/engine/data into a heap block of exactly its size. */
static blob load_data(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/engine/data/%s", AMSI_TEST_DATA, name);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        fail_msg("cannot open %s", path);
    uint8_t buf[65536];
    size_t n = fread(buf, 1, sizeof(buf), fp);
    fclose(fp);
    return from_bytes(buf, n);
}

static void test_lha_ice(void **state)
{
    (void)state;
    blob b = load_data("lha/ice.lzh");
    size_t n = b.n;
    assert_null(memmem(b.p, b.n, SIG, strlen(SIG)));
    assert_int_equal(engine__detect_type(b.p, b.n), ENGINE__CT_LHA);
    fake f;
    fake_init(&f);
    assert_int_equal(run(&f, "a.ice", b.p, b.n), 0);
    expect_text("children", f.log, "a.ice>script.ps1(4442)! | a.ice>big.ps1(219360)!");
    expect_text("notes", f.notes, "");

    /* A flipped bit in the compressed data: a CRC mismatch (or a member cut short), noted. */
    b.p[n / 2] ^= 0x10;
    assert_int_equal(run(&f, "a.ice", b.p, b.n), 0);
    if (strstr(f.notes, "lha: CRC mismatch [E]") == NULL &&
        strstr(f.notes, "lha: truncated [E]") == NULL)
        fail_msg("notes: %s", f.notes);
    b.p[n / 2] ^= 0x10;

    /* Cut inside the second member. */
    assert_int_equal(run(&f, "a.ice", b.p, b.n - 2000), 0);
    expect_text("notes", f.notes, "lha: truncated [E]");
    free(b.p);

    /* A header naming -lh1- over stored bytes decodes to garbage: an error, never a crash. */
    const char *data = "Invoke-Expression " SIG "\n";
    gen_buf g = {0};
    assert_int_equal(gen_lha_stored(0, "ice.ps1", data, strlen(data), &g), 0);
    assert_memory_equal(g.p + 2, "-lh0-", 5);
    g.p[5] = '1';
    uint8_t sum = 0;
    for (size_t i = 2; i < (size_t)g.p[0] + 2; i++)
        sum = (uint8_t)(sum + g.p[i]);
    g.p[1] = sum;
    b = from_gen(&g);
    assert_int_equal(run(&f, "b.ice", b.p, b.n), 0);
    assert_true(strstr(f.notes, "[E]") != NULL);
    free(b.p);
}

static void test_iso_cpio_xar_ar(void **state)
{
    (void)state;
    check_pair("a.iso", "");
    check_pair("newc.cpio", "");
    check_pair("odc.cpio", "");
    check_pair("crc.cpio", "");
    check_pair("bin.cpio", "");
    check_pair("a.xar", "");
    check_pair("a.ar", "");
}

static void test_deb(void **state)
{
    (void)state;
    check_sample("fake.deb",
                 "fake.deb>debian-binary(4) | fake.deb>control.tar.gz(*) | "
                 "fake.deb>control.tar.gz>gzip(10240) | "
                 "fake.deb>control.tar.gz>gzip>control(14) | fake.deb>data.tar.xz(*) | "
                 "fake.deb>data.tar.xz>xz(10240)! | "
                 "fake.deb>data.tar.xz>xz>usr/share/fake/evil.ps1(81)!",
                 "");
}

static void test_compression_layers(void **state)
{
    (void)state;
    check_sample("evil.ps1.gz", "evil.ps1.gz>gzip(81)!", "");
    check_sample("evil.ps1.bz2", "evil.ps1.bz2>bzip2(81)!", "");
    check_sample("evil.ps1.xz", "evil.ps1.xz>xz(81)!", "");
    /* Concatenated members and streams are one child. */
    check_sample("cat.gz", "cat.gz>gzip(25571)!", "");
    check_sample("cat.bz2", "cat.bz2>bzip2(25571)!", "");
    check_sample("cat.xz", "cat.xz>xz(25571)!", "");
}

static void test_arj(void **state)
{
    (void)state;
    check_pair("a.arj", "");
    check_pair("sfx_arj.exe", "");
}

/* ---------------------------------------------------------------------------------------------
 * Nesting
 * ------------------------------------------------------------------------------------------- */

/* sample.bin: a ZIP holding payload.tar.gz, which holds evil.ps1. */
static blob sample_bin(void)
{
    blob tgz = load("payload.tar.gz");
    gen_zip z = {0};
    gen_buf g = {0};
    assert_int_equal(gen_zip_add(&z, "payload.tar.gz", tgz.p, tgz.n), 0);
    assert_int_equal(gen_zip_finish(&z, &g), 0);
    free(tgz.p);
    return from_gen(&g);
}

static void test_nested_tar_gz(void **state)
{
    (void)state;
    /* sample.bin (a ZIP) > payload.tar.gz > gzip (the TAR) > evil.ps1. */
    blob b = sample_bin();
    fake f;
    fake_init(&f);
    assert_int_equal(run(&f, "sample.bin", b.p, b.n), 0);
    expect_text("children", f.log,
                "sample.bin>payload.tar.gz(*) | sample.bin>payload.tar.gz>gzip(10240)! | "
                "sample.bin>payload.tar.gz>gzip>evil.ps1(81)!");
    expect_text("notes", f.notes, "");

    /* .tar.gz is two steps: one step is not enough for the TAR. */
    fake_init(&f);
    f.cfg.max_recursion = 2;
    assert_int_equal(run(&f, "sample.bin", b.p, b.n), 0);
    expect_text("children", f.log,
                "sample.bin>payload.tar.gz(*) | sample.bin>payload.tar.gz>gzip(10240)!");
    expect_text("notes", f.notes, "Limits.Exceeded.MaxRecursion");
    free(b.p);
}

static void test_nested_chain_5(void **state)
{
    (void)state;
    static const char *const full =
        "l5.cpio>l4.7z(*) | l5.cpio>l4.7z>l3.tar.xz(*) | "
        "l5.cpio>l4.7z>l3.tar.xz>xz(10240)! | l5.cpio>l4.7z>l3.tar.xz>xz>l1.zip(*)! | "
        "l5.cpio>l4.7z>l3.tar.xz>xz>l1.zip>evil.ps1(81)!";
    blob b = load("l5.cpio");
    fake f;
    fake_init(&f);
    f.cfg.max_recursion = 5;
    assert_int_equal(run(&f, "l5.cpio", b.p, b.n), 0);
    expect_text("children", f.log, full);
    expect_text("notes", f.notes, "");

    fake_init(&f);
    f.cfg.max_recursion = 4;
    assert_int_equal(run(&f, "l5.cpio", b.p, b.n), 0);
    expect_text("children", f.log,
                "l5.cpio>l4.7z(*) | l5.cpio>l4.7z>l3.tar.xz(*) | "
                "l5.cpio>l4.7z>l3.tar.xz>xz(10240)! | l5.cpio>l4.7z>l3.tar.xz>xz>l1.zip(*)!");
    expect_text("notes", f.notes, "Limits.Exceeded.MaxRecursion");

    fake_init(&f);
    f.cfg.max_recursion = 0;
    assert_int_equal(run(&f, "l5.cpio", b.p, b.n), 1);
    expect_text("children", f.log, "");
    expect_text("notes", f.notes, "Limits.Exceeded.MaxRecursion");
    free(b.p);
}

/* A chain of 30 ZIPs, each inside the next: recursion ends it at max_recursion levels. */
static void test_recursive_chain(void **state)
{
    (void)state;
    gen_buf g = {0};
    gen_zip z = {0};
    assert_int_equal(gen_zip_add(&z, "core.ps1", SIG, strlen(SIG)), 0);
    assert_int_equal(gen_zip_finish(&z, &g), 0);
    for (int i = 0; i < 30; i++) {
        gen_zip outer = {0};
        gen_buf next = {0};
        assert_int_equal(gen_zip_add(&outer, "again.zip", g.p, g.n), 0);
        assert_int_equal(gen_zip_finish(&outer, &next), 0);
        gen_buf_free(&g);
        g = next;
    }
    blob b = from_gen(&g);
    fake f;
    fake_init(&f);
    assert_int_equal(run(&f, "bomb.zip", b.p, b.n), 0);
    assert_int_equal(f.children, 16);
    expect_text("notes", f.notes, "Limits.Exceeded.MaxRecursion");
    assert_int_equal(f.sig_children, 16); /* each level holds SIG, stored, inside it */
    free(b.p);
}

/* ---------------------------------------------------------------------------------------------
 * Limits
 * ------------------------------------------------------------------------------------------- */

static void test_max_files(void **state)
{
    (void)state;
    gen_buf g = {0};
    assert_int_equal(gen_zip_many(1000, &g), 0);
    blob b = from_gen(&g);
    fake f;
    fake_init(&f);
    assert_int_equal(run(&f, "a.zip", b.p, b.n), 0);
    assert_int_equal(f.children, 1000);
    expect_text("notes", f.notes, "");
    free(b.p);

    assert_int_equal(gen_zip_many(1001, &g), 0);
    b = from_gen(&g);
    fake_init(&f);
    assert_int_equal(run(&f, "a.zip", b.p, b.n), 0);
    assert_int_equal(f.children, 1000);
    expect_text("notes", f.notes, "Limits.Exceeded.MaxFiles");
    free(b.p);

    fake_init(&f);
    f.cfg.max_files = 1;
    b = load("tar_ustar.tar");
    assert_int_equal(run(&f, "a.tar", b.p, b.n), 0);
    expect_text("children", f.log, "a.tar>clean.txt(25490)");
    expect_text("notes", f.notes, "Limits.Exceeded.MaxFiles");
    free(b.p);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static void test_hundred_thousand_entries(void **state)
{
    (void)state;
    gen_buf g = {0};
    assert_int_equal(gen_zip_many(100000, &g), 0);
    blob b = from_gen(&g);
    fake f;
    fake_init(&f);
    f.cfg.max_compound_size = 64u << 20; /* the archive is larger than the default 8 MiB */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(run(&f, "many.zip", b.p, b.n), 0);
    printf("      100,000-entry ZIP (%zu bytes): %.3f s\n", b.n, seconds_since(&t0));
    assert_int_equal(f.children, 1000);
    expect_text("notes", f.notes, "Limits.Exceeded.MaxFiles");
    free(b.p);
}

static void test_max_scan_size(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    f.cfg.max_scan_size = 20000;
    blob b = load("zip_deflate.zip");
    assert_int_equal(run(&f, "a.zip", b.p, b.n), 0);
    expect_text("children", f.log, "");
    expect_text("notes", f.notes, "Limits.Exceeded.MaxScanSize");
    assert_true(f.charged <= 20000);
    free(b.p);

    /* A budget that covers the first member only. */
    fake_init(&f);
    f.cfg.max_scan_size = CLEAN_SIZE + 10;
    b = load("tar_ustar.tar");
    assert_int_equal(run(&f, "a.tar", b.p, b.n), 0);
    expect_text("children", f.log, "a.tar>clean.txt(25490)");
    expect_text("notes", f.notes, "Limits.Exceeded.MaxScanSize");
    free(b.p);
}

static void test_ratio_bombs(void **state)
{
    (void)state;
    static const unsigned sizes_mib[] = {1024, 10240};
    for (size_t i = 0; i < 2; i++) {
        gen_buf g = {0};
        assert_int_equal(gen_gzip_zeros(sizes_mib[i], &g), 0);
        blob b = from_gen(&g);
        fake f;
        fake_init(&f);
        f.cfg.max_compound_size = 64u << 20;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(run(&f, "zeros.gz", b.p, b.n), 0);
        printf("      gzip of %u MiB of zeros (%zu bytes): %.3f s, %llu bytes produced\n",
               sizes_mib[i], b.n, seconds_since(&t0), (unsigned long long)f.charged);
        expect_text("notes", f.notes, "Limits.Exceeded.MaxRatio");
        expect_text("children", f.log, "zeros.gz>gzip(1048576)");
        free(b.p);
    }

    gen_buf g = {0};
    assert_int_equal(gen_zip_zeros("zeros.bin", 1024, &g), 0);
    blob b = from_gen(&g);
    fake f;
    fake_init(&f);
    assert_int_equal(run(&f, "zeros.zip", b.p, b.n), 0);
    expect_text("notes", f.notes, "Limits.Exceeded.MaxRatio");
    expect_text("children", f.log, "zeros.zip>zeros.bin(1048576)");
    free(b.p);

    /* A sparse TAR member of 1 GiB with no data. */
    check_sample("sparse.tar", "sparse.tar>sparse.bin(1048576)", "Limits.Exceeded.MaxRatio");

    /* A higher cap lets the 1 GiB ZIP entry run into max_scan_size instead. */
    fake_init(&f);
    f.cfg.max_ratio = 100000;
    f.cfg.max_scan_size = 8u << 20;
    assert_int_equal(gen_zip_zeros("zeros.bin", 1024, &g), 0);
    b = from_gen(&g);
    assert_int_equal(run(&f, "zeros.zip", b.p, b.n), 0);
    expect_text("notes", f.notes, "Limits.Exceeded.MaxScanSize");
    free(b.p);
}

static void test_overlapping_entries(void **state)
{
    (void)state;
    gen_buf g = {0};
    assert_int_equal(gen_zip_overlap(1000, 1, &g), 0);
    blob b = from_gen(&g);
    assert_int_equal(engine__detect_type(b.p, b.n), ENGINE__CT_ZIP);
    fake f;
    fake_init(&f);
    assert_int_equal(run(&f, "overlap.zip", b.p, b.n), 0);
    expect_text("children", f.log, "");
    expect_text("notes", f.notes, "Limits.Exceeded.OverlappingEntries");
    assert_int_equal(f.charged, 0);
    free(b.p);
}

static void test_max_compound_size(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    blob b = load("zip_deflate.zip");
    f.cfg.max_compound_size = b.n - 1;
    assert_int_equal(run(&f, "a.zip", b.p, b.n), 1);
    expect_text("children", f.log, "");
    expect_text("notes", f.notes, "Limits.Exceeded.MaxCompoundSize");
    f.cfg.max_compound_size = b.n;
    f.notes[0] = '\0';
    assert_int_equal(run(&f, "a.zip", b.p, b.n), 0);
    expect_text("notes", f.notes, "");
    free(b.p);
}

static void test_class_switches(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    f.cfg.scan_archives = false;
    blob zip = load("zip_deflate.zip"), cab = load("a.cab"), ar = load("a.ar"),
         gz = load("evil.ps1.gz");
    assert_int_equal(run(&f, "a.zip", zip.p, zip.n), 1);
    assert_int_equal(run(&f, "a.gz", gz.p, gz.n), 1);
    expect_text("children", f.log, "");
    /* Packages follow their own switch. */
    assert_int_equal(run(&f, "a.cab", cab.p, cab.n), 0);
    expect_text("children", f.log, "a.cab>clean.txt(25490) | a.cab>evil.ps1(81)!");
    f.cfg.scan_packages = false;
    f.cfg.scan_archives = true;
    assert_int_equal(run(&f, "a.cab", cab.p, cab.n), 1);
    assert_int_equal(run(&f, "a.ar", ar.p, ar.n), 1);
    expect_text("children", f.log, "");
    expect_text("notes", f.notes, "");
    /* Off means off: no limit is noted either. */
    f.cfg.max_recursion = 0;
    f.cfg.scan_archives = false;
    assert_int_equal(run(&f, "a.zip", zip.p, zip.n), 1);
    expect_text("notes", f.notes, "");
    free(zip.p);
    free(cab.p);
    free(ar.p);
    free(gz.p);
}

static void test_out_of_time(void **state)
{
    (void)state;
    fake f;
    fake_init(&f);
    f.time_budget = 1;
    blob b = load("tar_ustar.tar");
    assert_int_equal(run(&f, "a.tar", b.p, b.n), 0);
    assert_true(f.children <= 1);
    expect_text("notes", f.notes, "Limits.Exceeded.MaxScanTime");
    free(b.p);

    /* A ratio bomb never gets far either. */
    gen_buf g = {0};
    assert_int_equal(gen_gzip_zeros(64, &g), 0);
    b = from_gen(&g);
    fake_init(&f);
    f.time_budget = 3;
    f.cfg.max_ratio = 1u << 30;
    assert_int_equal(run(&f, "z.gz", b.p, b.n), 0);
    expect_text("notes", f.notes, "Limits.Exceeded.MaxScanTime");
    assert_true(f.charged <= 4 * 65536);
    free(b.p);
}

static void test_host_stop(void **state)
{
    (void)state;
    /* The host's "finished" (a detection) stops the walk at once. */
    gen_zip z = {0};
    gen_buf g = {0};
    const char *evil = "x " SIG;
    assert_int_equal(gen_zip_add(&z, "first.ps1", evil, strlen(evil)), 0);
    assert_int_equal(gen_zip_add(&z, "second.txt", "hello", 5), 0);
    assert_int_equal(gen_zip_finish(&z, &g), 0);
    blob b = from_gen(&g);
    fake f;
    fake_init(&f);
    f.stop_on_sig = true;
    assert_int_equal(run(&f, "a.zip", b.p, b.n), 0);
    expect_text("children", f.log, "a.zip>first.ps1(28)!");
    free(b.p);

    /* Also from inside a nested container. */
    fake_init(&f);
    f.stop_on_sig = true;
    b = load("fake.deb");
    assert_int_equal(run(&f, "fake.deb", b.p, b.n), 0);
    assert_int_equal(f.sig_children, 1);
    assert_non_null(strstr(f.log, "fake.deb>data.tar.xz>xz(10240)!"));
    assert_null(strstr(f.log, "usr/share/fake/evil.ps1"));
    free(b.p);
}

/* A member over the member bound (64 MiB) goes to a stream child. */
/*
 * A gzip (of stored deflate blocks, so no expansion trips the ratio cap) of 80 MiB of random
 * bytes with SIG near the end: its one member is larger than the member bound (64 MiB).
 */
static blob big_stored_gzip(void)
{
    size_t n = 80u << 20;
    uint8_t *plain = malloc(n);
    assert_non_null(plain);
    fill_random(plain, n, 99);
    memcpy(plain + n - 1000, SIG, strlen(SIG));
    z_stream s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(deflateInit2(&s, 0, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&s, (uLong)n);
    uint8_t *gz = malloc(cap);
    assert_non_null(gz);
    s.next_in = plain;
    s.avail_in = (uInt)n;
    s.next_out = gz;
    s.avail_out = (uInt)cap;
    assert_int_equal(deflate(&s, Z_FINISH), Z_STREAM_END);
    blob b = {gz, cap - s.avail_out};
    deflateEnd(&s);
    free(plain);
    return b;
}

/* A member over the member bound goes to a stream child. */
static void test_big_member_streams(void **state)
{
    (void)state;
    blob gz = big_stored_gzip();
    fake f;
    fake_init(&f);
    f.cfg.max_compound_size = 1u << 30;
    assert_int_equal(run(&f, "big.gz", gz.p, gz.n), 0);
    expect_text("children", f.log, "big.gz>gzip(83886080)!~");
    expect_text("notes", f.notes, "");
    assert_int_equal(f.streams_open, 1);
    free(gz.p);
}

/* ---------------------------------------------------------------------------------------------
 * Damaged and encrypted containers
 * ------------------------------------------------------------------------------------------- */

/* Runs a damaged copy of a sample: first `keep` bytes, with byte `flip` (if < keep) inverted. */
static void check_damaged(const char *name, size_t keep, size_t flip, const char *want_children,
                          const char *want_notes)
{
    blob b = load(name);
    assert_true(keep <= b.n);
    blob d = from_bytes(b.p, keep);
    if (flip < keep)
        d.p[flip] ^= 0xFF;
    free(b.p);
    fake f;
    fake_init(&f);
    assert_int_equal(run(&f, name, d.p, d.n), 0);
    char what[300];
    snprintf(what, sizeof(what), "children of damaged %s", name);
    expect_text(what, f.log, want_children);
    snprintf(what, sizeof(what), "notes of damaged %s", name);
    expect_text(what, f.notes, want_notes);
    free(d.p);
}

/* The offset of the nth (from 0) occurrence of text in a sample. */
static size_t offset_of_nth(const char *name, const char *text, unsigned nth)
{
    blob b = load(name);
    size_t off = 0;
    for (unsigned i = 0;; i++) {
        const uint8_t *hit = memmem(b.p + off, b.n - off, text, strlen(text));
        assert_non_null(hit);
        off = (size_t)(hit - b.p);
        if (i == nth)
            break;
        off++;
    }
    free(b.p);
    return off;
}

static size_t offset_of(const char *name, const char *text)
{
    return offset_of_nth(name, text, 0);
}

static size_t size_of(const char *name)
{
    blob b = load(name);
    free(b.p);
    return b.n;
}

static void test_truncated(void **state)
{
    (void)state;
    /* Members read before the cut are kept; the cut one is scanned as far as it got. */
    size_t evil = offset_of("zip_stored.zip", "Write-Output");
    check_damaged("zip_stored.zip", evil + 20, SIZE_MAX,
                  "zip_stored.zip>clean.txt(25490) | zip_stored.zip>evil.ps1(20)",
                  "zip: truncated [E]");
    check_damaged("tar_ustar.tar", 15000, SIZE_MAX, "tar_ustar.tar>clean.txt(14488)",
                  "tar: truncated [E]");
    check_damaged("evil.ps1.gz", 60, SIZE_MAX, "evil.ps1.gz>gzip(49)", "gzip: truncated [E]");
    check_damaged("evil.ps1.bz2", 80, SIZE_MAX, "", "bzip2: truncated [E]");
    check_damaged("evil.ps1.xz", 100, SIZE_MAX, "evil.ps1.xz>xz(73)!", "xz: truncated [E]");
    check_damaged("a.arj", 700, SIZE_MAX, "a.arj>clean.txt(13080)",
                  "arj: truncated [E] | arj: truncated [E]");
    check_damaged("newc.cpio", 20000, SIZE_MAX, "newc.cpio>clean.txt(19880)",
                  "cpio: truncated [E]");
    check_damaged("a.ar", 20000, SIZE_MAX, "a.ar>clean.txt(19932)", "ar: truncated [E]");
    check_damaged("a.cab", 20000, SIZE_MAX, "a.cab>clean.txt(19897)", "cab: truncated [E]");
    check_damaged("a.7z", 400, SIZE_MAX, "", "7z: corrupt [E]");
}

static void test_corrupt(void **state)
{
    (void)state;
    size_t evil = offset_of("zip_stored.zip", "Write-Output");
    check_damaged("zip_stored.zip", size_of("zip_stored.zip"), evil,
                  "zip_stored.zip>clean.txt(25490) | zip_stored.zip>evil.ps1(81)!",
                  "zip: CRC mismatch [E]");
    size_t gz = size_of("evil.ps1.gz");
    check_damaged("evil.ps1.gz", gz, gz - 6, "evil.ps1.gz>gzip(81)!", "gzip: CRC mismatch [E]");
    check_damaged("evil.ps1.bz2", size_of("evil.ps1.bz2"), 50, "", "bzip2: corrupt [E]");
    check_damaged("evil.ps1.xz", size_of("evil.ps1.xz"), 60, "evil.ps1.xz>xz(81)",
                  "xz: corrupt [E]");
    size_t arj = size_of("a.arj");
    check_damaged("a.arj", arj, arj - 20, "a.arj>clean.txt(25490) | a.arj>evil.ps1(81)!",
                  "arj: CRC mismatch [E]");
    /* A central directory libarchive refuses: the members are read through their local
     * headers instead, with nothing lost and nothing to report. */
    size_t cd2 = offset_of_nth("zip_deflate.zip", "PK\x01\x02", 1);
    check_damaged("zip_deflate.zip", size_of("zip_deflate.zip"), cd2 + 3,
                  "zip_deflate.zip>clean.txt(25490) | zip_deflate.zip>evil.ps1(81)!", "");
    /* A TAR header whose checksum no longer matches. */
    size_t hdr = offset_of("tar_ustar.tar", "evil.ps1");
    check_damaged("tar_ustar.tar", size_of("tar_ustar.tar"), hdr, "tar_ustar.tar>clean.txt(25490)",
                  "tar: corrupt [E] | tar: corrupt [E]");
}

static void test_encrypted(void **state)
{
    (void)state;
    check_sample("zip_enc.zip", "", "zip: encrypted member [E] | zip: encrypted member [E]");
    check_sample("enc.7z", "", "7z: encrypted member [E] | 7z: encrypted member [E]");
    check_sample("enchdr.7z", "", "7z: encrypted member [E]");
    check_sample("enc.arj", "", "arj: encrypted member [E] | arj: encrypted member [E]");
}

/* ---------------------------------------------------------------------------------------------
 * Through the scanner (once scan.c hosts the unpacker)
 * ------------------------------------------------------------------------------------------- */

#if UNPACK_VIA_SCAN
/* Scans b as the request `name` and checks the verdict, and the object and reason when given. */
static void scan_expect(engine_rules *rules, engine_scratch *s, const engine_config *cfg,
                        const char *name, blob b, engine_verdict verdict, const char *object,
                        const char *reason)
{
    engine_result res;
    assert_int_equal(engine_scan_buffer(rules, s, cfg, b.p, b.n, name, 0, &res), 0);
    engine_verdict got = res.verdict;
    char obj[600], why[200];
    snprintf(obj, sizeof(obj), "%s", res.object ? res.object : "");
    snprintf(why, sizeof(why), "%s", res.reason ? res.reason : "");
    engine_result_cleanup(&res);
    free(b.p);
    if (got != verdict)
        fail_msg("%s: verdict %s, want %s (object %s, reason %s)", name, engine_verdict_name(got),
                 engine_verdict_name(verdict), obj, why);
    if (object != NULL)
        expect_text("object", obj, object);
    if (reason != NULL)
        expect_text("reason", why, reason);
}

static void test_via_scan(void **state)
{
    (void)state;
    engine_rules *rules = NULL;
    engine_diag diag;
    int rc = engine_rules_compile_string("rule Planted { strings: $a = \"" SIG "\" condition: $a }",
                                         "t.yar", NULL, &rules, &diag);
    if (rc != 0)
        fail_msg("compile: %s", diag.text);
    engine_scratch *s = NULL;
    assert_int_equal(engine_scratch_create(rules, &s), 0);
    engine_config cfg;
    engine_config_init(&cfg);
    cfg.scan_archives = true;
    cfg.scan_packages = true;

    scan_expect(rules, s, &cfg, "zip_deflate.zip", load("zip_deflate.zip"), ENGINE_VERDICT_DETECTED,
                "zip_deflate.zip>evil.ps1", NULL);
    scan_expect(rules, s, &cfg, "sample.bin", sample_bin(), ENGINE_VERDICT_DETECTED,
                "sample.bin>payload.tar.gz>gzip>evil.ps1", NULL);
    scan_expect(rules, s, &cfg, "l5.cpio", load("l5.cpio"), ENGINE_VERDICT_DETECTED,
                "l5.cpio>l4.7z>l3.tar.xz>xz>l1.zip>evil.ps1", NULL);
    scan_expect(rules, s, &cfg, "fake.deb", load("fake.deb"), ENGINE_VERDICT_DETECTED,
                "fake.deb>data.tar.xz>xz>usr/share/fake/evil.ps1", NULL);
    scan_expect(rules, s, &cfg, "a.cab", load("a.cab"), ENGINE_VERDICT_DETECTED, "a.cab>evil.ps1",
                NULL);
    scan_expect(rules, s, &cfg, "zip_enc.zip", load("zip_enc.zip"), ENGINE_VERDICT_ERROR, NULL,
                "zip: encrypted member");
    scan_expect(rules, s, &cfg, "a.ice", load_data("lha/ice.lzh"), ENGINE_VERDICT_DETECTED,
                "a.ice>script.ps1", NULL);
    scan_expect(rules, s, &cfg, "clean.ice", load_data("lha/ice_clean.lzh"), ENGINE_VERDICT_CLEAN,
                NULL, "");
    scan_expect(rules, s, &cfg, "sparse.tar", load("sparse.tar"), ENGINE_VERDICT_LIMIT, NULL,
                "Limits.Exceeded.MaxRatio");

    gen_buf g = {0};
    assert_int_equal(gen_gzip_zeros(10240, &g), 0);
    engine_config big = cfg;
    big.max_compound_size = 64u << 20;
    scan_expect(rules, s, &big, "zeros.gz", from_gen(&g), ENGINE_VERDICT_LIMIT, NULL,
                "Limits.Exceeded.MaxRatio");
    assert_int_equal(gen_zip_overlap(1000, 1, &g), 0);
    scan_expect(rules, s, &cfg, "overlap.zip", from_gen(&g), ENGINE_VERDICT_LIMIT, NULL,
                "Limits.Exceeded.OverlappingEntries");
    assert_int_equal(gen_zip_many(100000, &g), 0);
    scan_expect(rules, s, &big, "many.zip", from_gen(&g), ENGINE_VERDICT_LIMIT, NULL,
                "Limits.Exceeded.MaxFiles");
    big.max_compound_size = 1u << 30;
    scan_expect(rules, s, &big, "big.gz", big_stored_gzip(), ENGINE_VERDICT_DETECTED, "big.gz>gzip",
                NULL);

    /* Four steps reach l1.zip, whose stored member shows through its raw bytes; two steps
     * stop at the xz layer, whose raw bytes show nothing. */
    engine_config shallow = cfg;
    shallow.max_recursion = 4;
    scan_expect(rules, s, &shallow, "l5.cpio", load("l5.cpio"), ENGINE_VERDICT_DETECTED,
                "l5.cpio>l4.7z>l3.tar.xz>xz>l1.zip", NULL);
    shallow.max_recursion = 2;
    scan_expect(rules, s, &shallow, "l5.cpio", load("l5.cpio"), ENGINE_VERDICT_LIMIT, NULL,
                "Limits.Exceeded.MaxRecursion");
    engine_config small = cfg;
    small.max_compound_size = 100;
    scan_expect(rules, s, &small, "payload.tar.gz", load("payload.tar.gz"), ENGINE_VERDICT_LIMIT,
                NULL, "Limits.Exceeded.MaxCompoundSize");
    /* Raw bytes are still scanned: a stored member's signature is found without unpacking. */
    scan_expect(rules, s, &small, "zip_stored.zip", load("zip_stored.zip"), ENGINE_VERDICT_DETECTED,
                "zip_stored.zip", NULL);
    cfg.scan_archives = false;
    scan_expect(rules, s, &cfg, "payload.tar.gz", load("payload.tar.gz"), ENGINE_VERDICT_CLEAN,
                NULL, "");

    engine_scratch_destroy(s);
    engine_rules_unref(rules);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_samples),
        cmocka_unit_test(test_detect_lookalikes),
        cmocka_unit_test(test_detect_decoys),
        cmocka_unit_test(test_names_and_classes),
        cmocka_unit_test(test_office_types),
        cmocka_unit_test(test_zip_variants),
        cmocka_unit_test(test_tar_variants),
        cmocka_unit_test(test_7z),
        cmocka_unit_test(test_rar),
        cmocka_unit_test(test_cab),
        cmocka_unit_test(test_lha),
        cmocka_unit_test(test_lha_ice),
        cmocka_unit_test(test_iso_cpio_xar_ar),
        cmocka_unit_test(test_deb),
        cmocka_unit_test(test_compression_layers),
        cmocka_unit_test(test_arj),
        cmocka_unit_test(test_nested_tar_gz),
        cmocka_unit_test(test_nested_chain_5),
        cmocka_unit_test(test_recursive_chain),
        cmocka_unit_test(test_max_files),
        cmocka_unit_test(test_hundred_thousand_entries),
        cmocka_unit_test(test_max_scan_size),
        cmocka_unit_test(test_ratio_bombs),
        cmocka_unit_test(test_overlapping_entries),
        cmocka_unit_test(test_max_compound_size),
        cmocka_unit_test(test_class_switches),
        cmocka_unit_test(test_out_of_time),
        cmocka_unit_test(test_host_stop),
        cmocka_unit_test(test_big_member_streams),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_encrypted),
#if UNPACK_VIA_SCAN
        cmocka_unit_test(test_via_scan),
#endif
    };
    return cmocka_run_group_tests(tests, build_samples, remove_samples);
}
