/*
 * engine_bench.c - throughput and per-buffer latency of the scan engine on PowerShell-like script
 * buffers (1-64 KiB by default), measured in one run against two references that use the same
 * rules: raw hs_scan over the same patterns compiled by hand (the floor) and libyara over the same
 * rule text (the peer). It also measures a warm restart: compiling 10,000 rules from the cache.
 *
 * Method. A seeded generator writes a rule set in the engine's YARA subset and a corpus of script
 * buffers per size; a small share of the buffers carries every string of one rule, so that some
 * scans detect. Every target first scans the whole corpus once: that warms caches and checks that
 * the engine (views off) and libyara find the same rules in every buffer. Then, for --repeat
 * rounds, each size is scanned by each target in turn for --duration seconds, the targets
 * interleaved (A B C D, B C D A, ...) so that noise on a shared machine hits all of them alike.
 * A round yields one throughput per target and the ratios between targets of that round;
 * figures are median [min..max] over rounds. Latency is the time of each call (one
 * clock_gettime() per call, so it includes the result cleanup and the loop), collected over all
 * rounds in a log-linear histogram (about 1.5 % resolution) per target and size.
 *
 * The program prints figures and exits 0 whether the goals are met or not; it exits 1 only when
 * it could not run (bad option, a compile or scan error).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <engine/engine.h>

#include <hs.h>
#include <yara.h>

#include "peers.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__GNUC__)
#define BENCH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define BENCH_PRINTF(f, a)
#endif

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PICK(r, a)   ((a)[rng_below((r), ARRAY_LEN(a))])

#define MAX_SIZES        16
#define MAX_RULE_STRINGS 4

/* ------------------------------------------------------------------------------------------ */
/* Small utilities: fatal errors, allocation, growable strings, time.                          */

static _Noreturn void die(const char *fmt, ...) BENCH_PRINTF(1, 2);

/* Prints "engine_bench: <message>" to stderr and exits 1. */
static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("engine_bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* malloc() that exits on failure: this is a program, and a benchmark short of memory is moot. */
static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        die("out of memory (%zu bytes)", n);
    }
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        die("out of memory (%zu x %zu bytes)", n, size);
    }
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL) {
        die("out of memory (%zu bytes)", n);
    }
    return q;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

/* A growable byte string, always NUL-terminated once anything was added. */
typedef struct sbuf {
    char *p;
    size_t len;
    size_t cap;
} sbuf;

static void sb_reserve(sbuf *b, size_t extra)
{
    size_t cap = b->cap ? b->cap : 256;
    if (b->len + extra + 1 <= b->cap) {
        return;
    }
    while (cap < b->len + extra + 1) {
        cap *= 2;
    }
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

static void sb_addn(sbuf *b, const void *p, size_t n)
{
    sb_reserve(b, n);
    if (n > 0) {
        memcpy(b->p + b->len, p, n);
    }
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_adds(sbuf *b, const char *s)
{
    sb_addn(b, s, strlen(s));
}

static void sb_addc(sbuf *b, char c)
{
    sb_addn(b, &c, 1);
}

static void sb_printf(sbuf *b, const char *fmt, ...) BENCH_PRINTF(2, 3);

/* Appends printf-formatted text. */
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_list ap2;
    int n;

    va_start(ap, fmt);
    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        die("vsnprintf failed");
    }
    sb_reserve(b, (size_t)n);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

static void sb_free(sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = 0;
    b->cap = 0;
}

/* CLOCK_MONOTONIC in nanoseconds. */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t t0)
{
    return (double)(now_ns() - t0) / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, minimum and maximum of n values (n > 0); the input is left as it was. */
typedef struct summary {
    double med;
    double min;
    double max;
} summary;

static summary summarize(const double *v, size_t n)
{
    summary s = {0.0, 0.0, 0.0};
    double *c;

    if (n == 0) {
        return s;
    }
    c = xmalloc(n * sizeof *c);
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_double);
    s.med = (n % 2) ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2.0;
    s.min = c[0];
    s.max = c[n - 1];
    free(c);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* Latency histogram: log-linear buckets, 64 per power of two (under 1.6 % relative error).     */

#define HIST_SUB_BITS 6u
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_BUCKETS  ((64u - HIST_SUB_BITS + 1u) * HIST_SUB)

typedef struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t n;
    uint64_t max;
} hist;

static unsigned log2_floor(uint64_t v)
{
#if defined(__GNUC__)
    return 63u - (unsigned)__builtin_clzll(v);
#else
    unsigned e = 0;
    while (v >>= 1) {
        e++;
    }
    return e;
#endif
}

static unsigned hist_index(uint64_t v)
{
    unsigned shift;
    if (v < HIST_SUB) {
        return (unsigned)v;
    }
    shift = log2_floor(v) - HIST_SUB_BITS;
    return (shift + 1u) * HIST_SUB + (unsigned)((v >> shift) & (HIST_SUB - 1u));
}

/* A value inside bucket i (its middle). */
static uint64_t hist_value(unsigned i)
{
    unsigned shift;
    uint64_t low;
    if (i < HIST_SUB) {
        return i;
    }
    shift = i / HIST_SUB - 1u;
    low = ((uint64_t)HIST_SUB + (i % HIST_SUB)) << shift;
    return low + (((uint64_t)1 << shift) - 1u) / 2u;
}

static void hist_add(hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->n++;
    if (v > h->max) {
        h->max = v;
    }
}

/* The q-quantile (0 < q <= 1) in nanoseconds; 0 for an empty histogram. */
static uint64_t hist_quantile(const hist *h, double q)
{
    uint64_t want;
    uint64_t seen = 0;
    if (h->n == 0) {
        return 0;
    }
    want = (uint64_t)(q * (double)h->n);
    if ((double)want < q * (double)h->n) {
        want++;
    }
    if (want == 0) {
        want = 1;
    }
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= want) {
            uint64_t v = hist_value(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

/* ------------------------------------------------------------------------------------------ */
/* Deterministic random numbers (splitmix64), so a seed reproduces rules and corpus exactly.    */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static size_t rng_below(rng *r, size_t n)
{
    return n ? (size_t)(rng_next(r) % n) : 0;
}

/* Uniform in [lo, hi]. */
static size_t rng_range(rng *r, size_t lo, size_t hi)
{
    return lo + rng_below(r, hi - lo + 1);
}

static bool rng_pct(rng *r, unsigned pct)
{
    return rng_below(r, 100) < pct;
}

/* ------------------------------------------------------------------------------------------ */
/* Vocabulary. Benign words build the corpus; "rare" words (tool and technique names) appear    */
/* only in rules and planted lines, so a rule fires only where it was planted, while the        */
/* benign words shared by rules and corpus give Hyperscan realistic partial and common hits.    */

static const char *const benign_verbs[] = {
    "Get",     "Set",    "New",      "Remove", "Add",     "Start",   "Stop",     "Test",
    "Import",  "Export", "Write",    "Read",   "Convert", "Invoke",  "Update",   "Select",
    "Measure", "Out",    "Format",   "Join",   "Split",   "Resolve", "Copy",     "Move",
    "Clear",   "Wait",   "Register", "Enable", "Disable", "Restart", "Compress", "Expand"};

static const char *const benign_nouns[] = {
    "ChildItem",   "Item",          "Content",     "Process",    "Service",      "Location",
    "Path",        "Object",        "Member",      "Variable",   "Date",         "Random",
    "Host",        "Output",        "Json",        "Csv",        "Xml",          "WebRequest",
    "RestMethod",  "Command",       "Module",      "Acl",        "ItemProperty", "EventLog",
    "CimInstance", "WmiObject",     "NetAdapter",  "Credential", "SecureString", "Job",
    "Alias",       "ScheduledTask", "Certificate", "FileHash",   "Archive",      "String",
    "Table",       "List",          "Transcript",  "Culture"};

static const char *const benign_vars[] = {
    "path",     "item",    "items", "result", "count",    "name",    "config",  "file",
    "files",    "content", "data",  "url",    "response", "user",    "session", "service",
    "proc",     "value",   "key",   "entry",  "output",   "logFile", "timeout", "retry",
    "index",    "server",  "root",  "dest",   "src",      "line",    "lines",   "report",
    "settings", "cred",    "job",   "tmp",    "archive",  "hash",    "stamp",   "module"};

static const char *const benign_words[] = {"the",           "a",         "of",         "to",
                                           "and",           "check",     "if",         "file",
                                           "exists",        "create",    "backup",     "folder",
                                           "for",           "each",      "user",       "log",
                                           "entries",       "older",     "than",       "days",
                                           "remove",        "temporary", "files",      "update",
                                           "configuration", "settings",  "read",       "write",
                                           "service",       "status",    "return",     "value",
                                           "retry",         "on",        "failure",    "connect",
                                           "server",        "parse",     "response",   "output",
                                           "report",        "save",      "results",    "load",
                                           "module",        "default",   "path",       "script",
                                           "version",       "copy",      "archive",    "compress",
                                           "old",           "logs",      "current",    "session",
                                           "set",           "timeout",   "skip",       "empty",
                                           "lines",         "trim",      "whitespace", "done",
                                           "TODO:",         "NOTE:",     "is",         "not",
                                           "with",          "from",      "in",         "we"};

static const char *const benign_params[] = {"-Path $path",
                                            "-Name $name",
                                            "-Force",
                                            "-Recurse",
                                            "-Filter *.log",
                                            "-Value $value",
                                            "-ErrorAction Stop",
                                            "-Verbose",
                                            "-Encoding UTF8",
                                            "-Credential $cred",
                                            "-ComputerName $server",
                                            "-Uri $url",
                                            "-OutFile $dest",
                                            "-Property Name, Length",
                                            "-First 10",
                                            "-Depth 3",
                                            "-NoTypeInformation",
                                            "-Append",
                                            "-Wait",
                                            "-PassThru",
                                            "-Include *.ps1",
                                            "-Destination $dest",
                                            "-TimeoutSec 30",
                                            "-Raw"};

static const char *const dotnet_calls[] = {
    "[System.IO.File]::ReadAllText($path)",
    "[System.IO.Path]::Combine($root, $name)",
    "[System.IO.Directory]::GetFiles($root, '*.log')",
    "[System.Text.Encoding]::UTF8.GetBytes($content)",
    "[System.Convert]::ToBase64String($data)",
    "[System.Environment]::GetEnvironmentVariable('PATH')",
    "[System.DateTime]::Now.ToString('yyyyMMdd-HHmmss')",
    "[System.Net.Dns]::GetHostName()",
    "[System.Math]::Round($value, 2)",
    "[System.Guid]::NewGuid().ToString()",
    "[System.Diagnostics.Process]::GetCurrentProcess()",
    "[System.Security.Principal.WindowsIdentity]::GetCurrent().Name",
    "[System.Threading.Thread]::Sleep(500)",
    "[System.IO.Compression.ZipFile]::ExtractToDirectory($archive, $dest)",
    "[System.Net.ServicePointManager]::SecurityProtocol",
    "[System.Collections.Generic.List[string]]::new()"};

/* Benign phrases some rules also use (with rare strings, under `all`-like conditions only). */
static const char *const common_strings[] = {"Invoke-Expression",
                                             "New-Object",
                                             "Net.WebClient",
                                             "DownloadString",
                                             "FromBase64String",
                                             "Start-Process",
                                             "-NoProfile",
                                             "Get-ChildItem",
                                             "Out-Null",
                                             "Write-Host",
                                             "$env:TEMP",
                                             "ConvertTo-Json",
                                             "Invoke-WebRequest",
                                             "-ErrorAction SilentlyContinue",
                                             "[System.Text.Encoding]::UTF8"};

/* Lines using the common phrases, as ordinary admin scripts do. */
static const char *const common_lines[] = {
    "$wc = New-Object Net.WebClient",
    "$json = $data | ConvertTo-Json -Depth 4",
    "Start-Process -FilePath $exe -ArgumentList $arguments -Wait",
    "powershell.exe -NoProfile -ExecutionPolicy RemoteSigned -File $script",
    "$bytes = [System.Text.Encoding]::UTF8.GetBytes($text)",
    "Invoke-Expression $command",
    "$page = (New-Object Net.WebClient).DownloadString($url)",
    "$raw = [System.Convert]::FromBase64String($encoded)",
    "Remove-Item $tmp -ErrorAction SilentlyContinue | Out-Null",
    "$out = Join-Path $env:TEMP 'report.txt'",
    "Invoke-WebRequest -Uri $url -OutFile $out -UseBasicParsing",
    "Get-ChildItem -Path $env:TEMP -Filter *.tmp | Remove-Item -Force",
    "Write-Host 'done' -ForegroundColor Green",
    "New-Item -ItemType Directory -Path $dest -Force | Out-Null"};

static const char *const rare_words[] = {
    "Mimikatz", "Kerberoast",  "Shellcode", "Injector",  "AmsiBypass", "Obfuscat",   "Dropper",
    "Beacon",   "Stager",      "Keylogger", "Exfiltrat", "Ransom",     "Payload",    "Hollowing",
    "Spoofer",  "Persistence", "LsassDump", "Hooker",    "Patcher",    "Reflective", "Meterpreter",
    "Empire",   "Cobalt",      "Sliver",    "Rubeus",    "Seatbelt",   "Sharphound", "Powerview",
    "Nishang",  "Unicorn",     "Covenant",  "Koadic",    "Pupy",       "Merlin",     "Havoc",
    "Brute",    "Harvester",   "Scraper",   "Tunnel",    "Implant",    "Rootkit",    "Backdoor",
    "Loader",   "Crypter",     "Packer",    "Wiper",     "Miner",      "Stealer",    "Grabber",
    "Trojan"};

static const char *const dotnet_namespaces[] = {"IO",
                                                "Net",
                                                "Runtime.InteropServices",
                                                "Reflection",
                                                "Management.Automation",
                                                "Security.Cryptography",
                                                "Diagnostics"};
static const char *const dotnet_methods[] = {"Load", "Invoke", "Run",    "Execute", "Create",
                                             "Open", "Start",  "Inject", "Decode",  "Patch"};
static const char *const api_prefixes[] = {"Virtual", "Nt",    "Zw",   "Rtl",   "Create",
                                           "Open",    "Write", "Read", "Query", "Set"};
static const char *const api_suffixes[] = {"Ex", "Memory", "Process", "Thread", "Section",
                                           "W",  "A",      "Handle",  "Token",  "Context"};

/* Byte sequences that hex rules often start with (PE header, common shellcode prologues). */
static const uint8_t hex_prefixes[][6] = {
    {0x4D, 0x5A, 0x90, 0x00, 0, 0},       {0xFC, 0xE8, 0x82, 0x00, 0x00, 0x00},
    {0xFC, 0x48, 0x83, 0xE4, 0xF0, 0},    {0xE8, 0x00, 0x00, 0x00, 0x00, 0x5B},
    {0x64, 0xA1, 0x30, 0x00, 0x00, 0x00}, {0x31, 0xC0, 0x50, 0x68, 0, 0}};
static const size_t hex_prefix_len[] = {4, 6, 5, 6, 6, 4};

/* ------------------------------------------------------------------------------------------ */
/* Rule generation. Each string is produced at once as YARA source, as the Hyperscan           */
/* expressions the floor uses, and as one byte sequence that matches it (for planting).        */

/* One byte sequence that matches one string of a rule. */
typedef struct plant {
    uint8_t *p;
    size_t n;
    bool hex; /* binary: planted in a comment line rather than a quoted string */
} plant;

typedef struct gen_rule {
    char name[24];
    plant plants[MAX_RULE_STRINGS];
    size_t nplants;
} gen_rule;

typedef struct ruleset {
    size_t nrules;
    gen_rule *rules;
    sbuf text; /* the YARA source of all rules */
    /* The floor's patterns: expression, flags, id (= rule index). */
    char **hs_exprs;
    unsigned *hs_flags;
    unsigned *hs_ids;
    size_t nhs;
    size_t hs_cap;
    size_t n_text;
    size_t n_hex;
    size_t n_regex;
} ruleset;

static void rs_add_hs(ruleset *rs, char *expr, unsigned flags, unsigned id)
{
    if (rs->nhs == rs->hs_cap) {
        rs->hs_cap = rs->hs_cap ? rs->hs_cap * 2 : 1024;
        rs->hs_exprs = xrealloc(rs->hs_exprs, rs->hs_cap * sizeof *rs->hs_exprs);
        rs->hs_flags = xrealloc(rs->hs_flags, rs->hs_cap * sizeof *rs->hs_flags);
        rs->hs_ids = xrealloc(rs->hs_ids, rs->hs_cap * sizeof *rs->hs_ids);
    }
    rs->hs_exprs[rs->nhs] = expr;
    rs->hs_flags[rs->nhs] = flags;
    rs->hs_ids[rs->nhs] = id;
    rs->nhs++;
}

static void plant_set(plant *pl, const sbuf *bytes, bool hex)
{
    pl->p = xmalloc(bytes->len ? bytes->len : 1);
    memcpy(pl->p, bytes->p, bytes->len);
    pl->n = bytes->len;
    pl->hex = hex;
}

static char lower_ascii(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static char upper_ascii(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

static bool is_alnum_ascii(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A lower-case copy of a word into buf (cap bytes). */
static const char *lowered(const char *w, char *buf, size_t cap)
{
    size_t i = 0;
    for (; w[i] != '\0' && i + 1 < cap; i++) {
        buf[i] = lower_ascii(w[i]);
    }
    buf[i] = '\0';
    return buf;
}

/* A PowerShell/.NET-ish string of 6-30 characters holding at least one rare word. */
static void gen_text_value(rng *r, sbuf *v)
{
    char low[32];
    char low2[32];
    do {
        v->len = 0;
        switch (rng_below(r, 6)) {
        case 0:
            sb_printf(v, "%s-%s%s", PICK(r, benign_verbs), PICK(r, rare_words),
                      PICK(r, benign_nouns));
            break;
        case 1:
            sb_printf(v, "[System.%s.%s]::%s", PICK(r, dotnet_namespaces), PICK(r, rare_words),
                      PICK(r, dotnet_methods));
            break;
        case 2:
            sb_printf(v, "%s%s%s", PICK(r, api_prefixes), PICK(r, rare_words),
                      PICK(r, api_suffixes));
            break;
        case 3:
            sb_printf(v, "%s %s %s", PICK(r, benign_words),
                      lowered(PICK(r, rare_words), low, sizeof low),
                      lowered(PICK(r, benign_nouns), low2, sizeof low2));
            break;
        case 4:
            sb_printf(v, "$%s%s", lowered(PICK(r, rare_words), low, sizeof low),
                      PICK(r, benign_nouns));
            break;
        default:
            sb_printf(v, "%s.%s(", PICK(r, rare_words), PICK(r, dotnet_methods));
            break;
        }
    } while (v->len < 6 || v->len > 30);
}

/* "\xHH" for each byte of p[0..n), with a NUL after each byte when wide. */
static char *hs_literal(const char *p, size_t n, bool wide)
{
    sbuf e = {0};
    for (size_t i = 0; i < n; i++) {
        sb_printf(&e, "\\x%02x", (unsigned)(unsigned char)p[i]);
        if (wide) {
            sb_adds(&e, "\\x00");
        }
    }
    return e.p;
}

/* A text string: YARA source into yar, Hyperscan patterns into rs, a matching instance into pl. */
static void gen_text_string(rng *r, ruleset *rs, unsigned rule, sbuf *yar, unsigned idx,
                            bool common, plant *pl)
{
    sbuf v = {0};
    sbuf inst = {0};
    bool nocase = rng_pct(r, 25);
    unsigned wide_pick = (unsigned)rng_below(r, 100);
    bool wide = wide_pick < 20;
    bool ascii = !(wide_pick >= 15 && wide_pick < 20); /* 15 % ascii wide, 5 % wide only */
    bool fullword = false;
    unsigned hsflags = nocase ? HS_FLAG_CASELESS : 0u;

    if (common) {
        sb_adds(&v, PICK(r, common_strings));
        wide = false;
        ascii = true;
    } else {
        gen_text_value(r, &v);
        fullword =
            !wide && is_alnum_ascii(v.p[0]) && is_alnum_ascii(v.p[v.len - 1]) && rng_pct(r, 10);
    }
    sb_printf(yar, "        $s%u = \"%s\"", idx, v.p);
    if (nocase) {
        sb_adds(yar, " nocase");
    }
    if (wide) {
        sb_adds(yar, ascii ? " ascii wide" : " wide");
    }
    if (fullword) {
        sb_adds(yar, " fullword");
    }
    sb_addc(yar, '\n');

    if (ascii) {
        rs_add_hs(rs, hs_literal(v.p, v.len, false), hsflags, rule);
    }
    if (wide) {
        rs_add_hs(rs, hs_literal(v.p, v.len, true), hsflags, rule);
    }

    /* The instance: the ascii or the wide form, its case shuffled when nocase. */
    {
        bool as_wide = wide && (!ascii || rng_pct(r, 50));
        for (size_t i = 0; i < v.len; i++) {
            char c = v.p[i];
            if (nocase && rng_pct(r, 50)) {
                c = rng_pct(r, 50) ? lower_ascii(c) : upper_ascii(c);
            }
            sb_addc(&inst, c);
            if (as_wide) {
                sb_addc(&inst, '\0');
            }
        }
    }
    plant_set(pl, &inst, false);
    rs->n_text++;
    sb_free(&v);
    sb_free(&inst);
}

/* A run of n fixed random bytes, or a known prefix when `prefix` is set. */
static void hex_fixed_run(rng *r, size_t n, bool prefix, sbuf *yar, sbuf *hs, sbuf *inst)
{
    size_t k = prefix ? rng_below(r, ARRAY_LEN(hex_prefixes)) : 0;
    if (prefix) {
        n = hex_prefix_len[k];
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t b = prefix ? hex_prefixes[k][i] : (uint8_t)rng_below(r, 256);
        sb_printf(yar, " %02X", (unsigned)b);
        sb_printf(hs, "\\x%02x", (unsigned)b);
        sb_addc(inst, (char)b);
    }
}

/* A hex string: fixed runs of 2-6 bytes separated by wildcards, nibbles, jumps, alternatives. */
static void gen_hex_string(rng *r, ruleset *rs, unsigned rule, sbuf *yar, unsigned idx, plant *pl)
{
    sbuf hs = {0};
    sbuf inst = {0};
    bool prefix = rng_pct(r, 30);
    size_t gaps = rng_range(r, prefix ? 1 : 0, 3); /* a shared prefix alone would be a dup */

    sb_printf(yar, "        $s%u = {", idx);
    hex_fixed_run(r, rng_range(r, 3, 6), prefix, yar, &hs, &inst);
    for (size_t g = 0; g < gaps; g++) {
        switch (rng_below(r, 5)) {
        case 0: { /* ?? wildcards */
            size_t n = rng_range(r, 1, 2);
            for (size_t i = 0; i < n; i++) {
                sb_adds(yar, " ??");
                sb_adds(&hs, ".");
                sb_addc(&inst, (char)rng_below(r, 256));
            }
            break;
        }
        case 1: { /* nibble: ?A (low nibble fixed) or A? (high nibble fixed) */
            unsigned nib = (unsigned)rng_below(r, 16);
            unsigned other = (unsigned)rng_below(r, 16);
            if (rng_pct(r, 50)) {
                sb_printf(yar, " ?%X", nib);
                sb_adds(&hs, "[");
                for (unsigned h = 0; h < 16; h++) {
                    sb_printf(&hs, "\\x%02x", (h << 4) | nib);
                }
                sb_adds(&hs, "]");
                sb_addc(&inst, (char)((other << 4) | nib));
            } else {
                sb_printf(yar, " %X?", nib);
                sb_printf(&hs, "[\\x%02x-\\x%02x]", nib << 4, (nib << 4) | 0xFu);
                sb_addc(&inst, (char)((nib << 4) | other));
            }
            break;
        }
        case 2: { /* fixed jump [n] */
            size_t n = rng_range(r, 1, 6);
            sb_printf(yar, " [%zu]", n);
            sb_printf(&hs, ".{%zu}", n);
            for (size_t i = 0; i < n; i++) {
                sb_addc(&inst, (char)rng_below(r, 256));
            }
            break;
        }
        case 3: { /* range jump [n-m] */
            size_t lo = rng_range(r, 1, 4);
            size_t hi = lo + rng_range(r, 1, 6);
            size_t n = rng_range(r, lo, hi);
            sb_printf(yar, " [%zu-%zu]", lo, hi);
            sb_printf(&hs, ".{%zu,%zu}", lo, hi);
            for (size_t i = 0; i < n; i++) {
                sb_addc(&inst, (char)rng_below(r, 256));
            }
            break;
        }
        default: { /* alternatives ( AA BB | CC ) */
            size_t nalt = rng_range(r, 2, 3);
            size_t pick = rng_below(r, nalt);
            sb_adds(yar, " (");
            sb_adds(&hs, "(?:");
            for (size_t a = 0; a < nalt; a++) {
                size_t n = rng_range(r, 1, 3);
                if (a > 0) {
                    sb_adds(yar, " |");
                    sb_adds(&hs, "|");
                }
                for (size_t i = 0; i < n; i++) {
                    uint8_t b = (uint8_t)rng_below(r, 256);
                    sb_printf(yar, " %02X", (unsigned)b);
                    sb_printf(&hs, "\\x%02x", (unsigned)b);
                    if (a == pick) {
                        sb_addc(&inst, (char)b);
                    }
                }
            }
            sb_adds(yar, " )");
            sb_adds(&hs, ")");
            break;
        }
        }
        hex_fixed_run(r, rng_range(r, 2, 5), false, yar, &hs, &inst);
    }
    sb_adds(yar, " }\n");
    rs_add_hs(rs, hs.p, HS_FLAG_DOTALL, rule);
    plant_set(pl, &inst, true);
    rs->n_hex++;
    sb_free(&inst);
}

/* A regular expression around rare words, never matching the empty string. */
static void gen_regex_string(rng *r, ruleset *rs, unsigned rule, sbuf *yar, unsigned idx, plant *pl)
{
    sbuf re = {0};
    sbuf inst = {0};
    const char *w = PICK(r, rare_words);
    const char *w2 = PICK(r, rare_words);
    bool icase = rng_pct(r, 40);
    bool dotall = false;
    bool nocase_mod = false;
    char low[32];

    switch (rng_below(r, 7)) {
    case 0: {
        const char *verb = PICK(r, benign_verbs);
        size_t n = rng_range(r, 3, 12);
        sb_printf(&re, "%s-[A-Z][a-z]{3,12}%s", verb, w);
        sb_printf(&inst, "%s-Q", verb);
        for (size_t i = 0; i < n; i++) {
            sb_addc(&inst, (char)('a' + rng_below(r, 26)));
        }
        sb_adds(&inst, w);
        break;
    }
    case 1:
        sb_printf(&re, "%s[0-9]{2,6}\\.(dll|exe|ps1)", w);
        sb_printf(&inst, "%s%zu.%s", w, rng_range(r, 10, 99999), rng_pct(r, 50) ? "dll" : "ps1");
        break;
    case 2:
        sb_printf(&re, "\\$%s[A-Za-z0-9_]{0,16}\\s*=\\s*\\[(byte|char)\\[\\]\\]", w);
        sb_printf(&inst, "$%sBuf = [byte[]]", w);
        break;
    case 3: {
        const char *noun = PICK(r, benign_nouns);
        sb_printf(&re, "(%s|%s)-(%s|%s)[0-9]{1,3}", w, w2, PICK(r, rare_words), noun);
        sb_printf(&inst, "%s-%s%zu", w2, noun, rng_range(r, 0, 999));
        break;
    }
    case 4:
        sb_printf(&re, "%s\\s+-[A-Za-z]{2,12}\\s+0x[0-9A-Fa-f]{4,8}", w);
        sb_printf(&inst, "%s -Address 0x%06zx", w, rng_range(r, 0x100000, 0xFFFFFF));
        break;
    case 5:
        dotall = rng_pct(r, 50);
        sb_printf(&re, "%s.{1,24}%s", w, w2);
        sb_printf(&inst, "%s %s %s", w, lowered(PICK(r, benign_words), low, sizeof low), w2);
        break;
    default:
        sb_printf(&re, "[Ss]ystem\\.%s\\.[A-Z][A-Za-z]{2,16}", w);
        sb_printf(&inst, "System.%s.%s", w, PICK(r, dotnet_methods));
        break;
    }
    if (icase && rng_pct(r, 25)) {
        icase = false;
        nocase_mod = true;
    }
    sb_printf(yar, "        $s%u = /%s/%s%s%s\n", idx, re.p, icase ? "i" : "", dotall ? "s" : "",
              nocase_mod ? " nocase" : "");
    rs_add_hs(rs, re.p,
              ((icase || nocase_mod) ? HS_FLAG_CASELESS : 0u) | (dotall ? HS_FLAG_DOTALL : 0u),
              rule);
    plant_set(pl, &inst, false);
    rs->n_regex++;
    sb_free(&inst);
}

/* Appends rule number `rule` (1-4 strings, one of four condition shapes) to rs. */
static void gen_one_rule(rng *r, ruleset *rs, unsigned rule)
{
    gen_rule *gr = &rs->rules[rule];
    sbuf *t = &rs->text;
    size_t nstr = rng_pct(r, 30) ? 1 : rng_range(r, 2, MAX_RULE_STRINGS);
    unsigned cond = (unsigned)rng_below(r, 100);
    int common_at = -1;

    snprintf(gr->name, sizeof gr->name, "bench_%05u", rule);
    if (nstr == 1) {
        cond = 0;
    }
    /* 0-44 any of them, 45-64 2 of them, 65-79 all of them, 80-99 $s0 and ... */
    if (cond >= 65 && rng_pct(r, 35)) {
        common_at = 0; /* required by both `all of them` and the `$s0 and ...` shapes */
    }
    sb_printf(t, "rule %s\n{\n    meta:\n        description = \"generated\"\n    strings:\n",
              gr->name);
    for (size_t i = 0; i < nstr; i++) {
        unsigned kind = (unsigned)rng_below(r, 100);
        plant *pl = &gr->plants[i];
        if ((int)i == common_at || kind < 80) {
            gen_text_string(r, rs, rule, t, (unsigned)i, (int)i == common_at, pl);
        } else if (kind < 92) {
            gen_hex_string(r, rs, rule, t, (unsigned)i, pl);
        } else {
            gen_regex_string(r, rs, rule, t, (unsigned)i, pl);
        }
    }
    gr->nplants = nstr;
    sb_adds(t, "    condition:\n        ");
    if (cond < 45) {
        sb_adds(t, "any of them");
    } else if (cond < 65) {
        sb_adds(t, "2 of them");
    } else if (cond < 80) {
        sb_adds(t, "all of them");
    } else if (nstr == 2) {
        sb_adds(t, "$s0 and $s1");
    } else if (nstr == 3) {
        sb_adds(t, "$s0 and ($s1 or $s2)");
    } else {
        sb_adds(t, "$s0 and ($s1 or $s2) and $s3");
    }
    sb_adds(t, "\n}\n\n");
}

static void ruleset_generate(ruleset *rs, size_t nrules, uint64_t seed)
{
    rng r = {seed};
    memset(rs, 0, sizeof *rs);
    rs->nrules = nrules;
    rs->rules = xcalloc(nrules, sizeof *rs->rules);
    sb_adds(&rs->text, "// Generated by engine_bench: PowerShell/.NET-style rules.\n\n");
    for (size_t i = 0; i < nrules; i++) {
        gen_one_rule(&r, rs, (unsigned)i);
    }
}

static void ruleset_free(ruleset *rs)
{
    for (size_t i = 0; i < rs->nrules; i++) {
        for (size_t j = 0; j < rs->rules[i].nplants; j++) {
            free(rs->rules[i].plants[j].p);
        }
    }
    for (size_t i = 0; i < rs->nhs; i++) {
        free(rs->hs_exprs[i]);
    }
    free(rs->rules);
    free(rs->hs_exprs);
    free(rs->hs_flags);
    free(rs->hs_ids);
    sb_free(&rs->text);
    memset(rs, 0, sizeof *rs);
}

/* ------------------------------------------------------------------------------------------ */
/* Corpus: PowerShell-like script buffers of exact sizes.                                      */

typedef struct corpus {
    size_t size;
    size_t n;
    uint8_t **bufs;
    long *planted; /* rule index planted in buffer i, or -1 */
    size_t nplanted;
} corpus;

static void indent(sbuf *o, unsigned depth)
{
    for (unsigned i = 0; i < depth; i++) {
        sb_adds(o, "    ");
    }
}

static void base64_encode(const uint8_t *p, size_t n, sbuf *o)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8) | p[i + 2];
        sb_addc(o, tab[(v >> 18) & 63u]);
        sb_addc(o, tab[(v >> 12) & 63u]);
        sb_addc(o, tab[(v >> 6) & 63u]);
        sb_addc(o, tab[v & 63u]);
    }
    if (i + 1 == n) {
        uint32_t v = (uint32_t)p[i] << 16;
        sb_addc(o, tab[(v >> 18) & 63u]);
        sb_addc(o, tab[(v >> 12) & 63u]);
        sb_adds(o, "==");
    } else if (i + 2 == n) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8);
        sb_addc(o, tab[(v >> 18) & 63u]);
        sb_addc(o, tab[(v >> 12) & 63u]);
        sb_addc(o, tab[(v >> 6) & 63u]);
        sb_addc(o, '=');
    }
}

static void words(rng *r, sbuf *o, size_t lo, size_t hi)
{
    size_t n = rng_range(r, lo, hi);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            sb_addc(o, ' ');
        }
        sb_adds(o, PICK(r, benign_words));
    }
}

/* Appends one line of benign script; depth tracks open braces. */
static void gen_line(rng *r, sbuf *o, unsigned *depth)
{
    unsigned kind = (unsigned)rng_below(r, 1000);

    if (*depth > 0 && kind < 110) {
        (*depth)--;
        indent(o, *depth);
        sb_adds(o, rng_pct(r, 10) ? "} else {\n" : "}\n");
        if (o->p[o->len - 2] == '{') {
            (*depth)++;
        }
        return;
    }
    indent(o, *depth);
    if (kind < 230) {
        sb_adds(o, "# ");
        words(r, o, 3, 12);
        sb_addc(o, '\n');
    } else if (kind < 360) {
        sb_printf(o, "$%s = %s-%s %s", PICK(r, benign_vars), PICK(r, benign_verbs),
                  PICK(r, benign_nouns), PICK(r, benign_params));
        if (rng_pct(r, 50)) {
            sb_printf(o, " %s", PICK(r, benign_params));
        }
        sb_addc(o, '\n');
    } else if (kind < 450) {
        sb_printf(o, "%s-%s %s | Where-Object { $_.%s -%s %zu } | %s-%s %s\n",
                  PICK(r, benign_verbs), PICK(r, benign_nouns), PICK(r, benign_params),
                  rng_pct(r, 50) ? "Length" : "Count", rng_pct(r, 50) ? "gt" : "le",
                  rng_range(r, 1, 4096), rng_pct(r, 50) ? "Select" : "Sort",
                  rng_pct(r, 50) ? "Object" : "Item", PICK(r, benign_params));
    } else if (kind < 530) {
        sb_printf(o, "$%s = %s\n", PICK(r, benign_vars), PICK(r, dotnet_calls));
    } else if (kind < 590 && *depth < 6) {
        switch (rng_below(r, 5)) {
        case 0:
            sb_printf(o, "if ($%s -eq $null) {\n", PICK(r, benign_vars));
            break;
        case 1:
            sb_printf(o, "foreach ($%s in $%s) {\n", PICK(r, benign_vars), PICK(r, benign_vars));
            break;
        case 2:
            sb_printf(o, "function %s-%s {\n", PICK(r, benign_verbs), PICK(r, benign_nouns));
            break;
        case 3:
            sb_adds(o, "try {\n");
            break;
        default:
            sb_printf(o, "while ($%s -lt %zu) {\n", PICK(r, benign_vars), rng_range(r, 2, 100));
            break;
        }
        (*depth)++;
    } else if (kind < 690) {
        static const char *const writers[] = {"Write-Host", "Write-Verbose", "Write-Output",
                                              "Write-Warning", "Write-Debug"};
        sb_printf(o, "%s \"", PICK(r, writers));
        words(r, o, 2, 7);
        sb_printf(o, ": $%s\"\n", PICK(r, benign_vars));
    } else if (kind < 740) {
        sb_printf(o, "$%s = @{ Name = '%s'; Count = %zu; Enabled = $%s }\n", PICK(r, benign_vars),
                  PICK(r, benign_words), rng_range(r, 0, 500), rng_pct(r, 50) ? "true" : "false");
    } else if (kind < 790) {
        if (rng_pct(r, 50)) {
            sb_printf(o, "param([string]$%s, [int]$%s = %zu, [switch]$Force)\n",
                      PICK(r, benign_vars), PICK(r, benign_vars), rng_range(r, 1, 60));
        } else {
            sb_printf(o, "$%s = @('%s', '%s', '%s')\n", PICK(r, benign_vars), PICK(r, benign_words),
                      PICK(r, benign_words), PICK(r, benign_words));
        }
    } else if (kind < 840) {
        sb_printf(o, "%s\n", PICK(r, common_lines));
    } else if (kind < 850) {
        uint8_t raw[450];
        size_t n = rng_range(r, 30, sizeof raw);
        for (size_t i = 0; i < n; i++) {
            raw[i] = (uint8_t)rng_below(r, 256);
        }
        sb_printf(o, "$%s = '", PICK(r, benign_vars));
        base64_encode(raw, n, o);
        sb_adds(o, "'\n");
    } else if (kind < 930) {
        if (rng_pct(r, 50)) {
            sb_printf(o, "$%s = 'C:\\%s\\%s\\%s.%s'\n", PICK(r, benign_vars),
                      rng_pct(r, 50) ? "ProgramData" : "Users", PICK(r, benign_words),
                      PICK(r, benign_vars), rng_pct(r, 50) ? "log" : "json");
        } else {
            sb_printf(o, "Copy-Item -Path $%s -Destination 'D:\\Backup\\%s' -Force\n",
                      PICK(r, benign_vars), PICK(r, benign_words));
        }
    } else if (*depth > 0) {
        o->len -= 4u * *depth; /* an empty line carries no indent */
        o->p[o->len] = '\n';
        o->len++;
        o->p[o->len] = '\0';
    } else {
        sb_addc(o, '\n');
    }
}

typedef struct insert {
    size_t at;
    size_t k;
} insert;

static int cmp_insert(const void *a, const void *b)
{
    size_t x = ((const insert *)a)->at;
    size_t y = ((const insert *)b)->at;
    return (x > y) - (x < y);
}

/* One buffer of exactly `size` bytes; when rule is not NULL, one line per string of it. */
static uint8_t *gen_buffer(rng *r, size_t size, const gen_rule *rule)
{
    sbuf lines[MAX_RULE_STRINGS];
    insert ins[MAX_RULE_STRINGS];
    size_t nlines = 0;
    size_t plant_len = 0;
    sbuf text = {0};
    unsigned depth = 0;
    uint8_t *out = xmalloc(size);
    size_t pos = 0;
    size_t from = 0;

    memset(lines, 0, sizeof lines);
    if (rule != NULL) {
        for (size_t i = 0; i < rule->nplants; i++) {
            const plant *pl = &rule->plants[i];
            sb_adds(&lines[i], pl->hex ? "# " : "$v = '");
            sb_addn(&lines[i], pl->p, pl->n);
            sb_adds(&lines[i], pl->hex ? "\n" : "'\n");
            plant_len += lines[i].len;
        }
        nlines = rule->nplants;
        if (plant_len > size) {
            nlines = 0; /* cannot fit: leave this buffer clean */
            plant_len = 0;
        }
    }
    sb_addn(&text, "", 0); /* allocated even when the planted lines fill the buffer */
    while (text.len < size - plant_len) {
        gen_line(r, &text, &depth);
    }
    text.len = size - plant_len;

    /* Insert each planted line at a line start of the benign text. */
    for (size_t i = 0; i < nlines; i++) {
        size_t at = rng_below(r, text.len + 1);
        while (at > 0 && at < text.len && text.p[at - 1] != '\n') {
            at++;
        }
        ins[i].at = at;
        ins[i].k = i;
    }
    qsort(ins, nlines, sizeof ins[0], cmp_insert);
    for (size_t i = 0; i < nlines; i++) {
        memcpy(out + pos, text.p + from, ins[i].at - from);
        pos += ins[i].at - from;
        from = ins[i].at;
        memcpy(out + pos, lines[ins[i].k].p, lines[ins[i].k].len);
        pos += lines[ins[i].k].len;
    }
    memcpy(out + pos, text.p + from, text.len - from);
    pos += text.len - from;
    if (pos != size) {
        die("internal: buffer of %zu bytes instead of %zu", pos, size);
    }
    for (size_t i = 0; i < MAX_RULE_STRINGS; i++) {
        sb_free(&lines[i]);
    }
    sb_free(&text);
    return out;
}

/* n buffers of `size` bytes; every (100 / plant_pct)-th one (at least one) carries a rule. */
static void corpus_generate(corpus *c, const ruleset *rs, size_t size, size_t n, unsigned plant_pct,
                            uint64_t seed)
{
    rng r = {seed ^ ((uint64_t)size * 0x100000001B3u)};
    size_t every = plant_pct ? 100u / plant_pct : 0;

    c->size = size;
    c->n = n;
    c->bufs = xcalloc(n, sizeof *c->bufs);
    c->planted = xcalloc(n, sizeof *c->planted);
    c->nplanted = 0;
    for (size_t i = 0; i < n; i++) {
        bool carry = every > 0 && (i % every == every / 2 || (n <= every / 2 && i == n / 2));
        const gen_rule *rule = NULL;
        c->planted[i] = -1;
        if (carry && rs->nrules > 0) {
            size_t k = rng_below(&r, rs->nrules);
            rule = &rs->rules[k];
            c->planted[i] = (long)k;
            c->nplanted++;
        }
        c->bufs[i] = gen_buffer(&r, size, rule);
    }
}

/* Writes each buffer to dir/<KiB>k-<index>[-<planted rule>].ps1; exits on failure. */
static void corpus_dump(const corpus *c, const ruleset *rs, const char *dir)
{
    for (size_t i = 0; i < c->n; i++) {
        sbuf path = {0};
        FILE *f;
        sb_printf(&path, "%s/%zuk-%04zu%s%s.ps1", dir, c->size / 1024, i,
                  c->planted[i] >= 0 ? "-" : "",
                  c->planted[i] >= 0 ? rs->rules[(size_t)c->planted[i]].name : "");
        f = fopen(path.p, "wb");
        if (f == NULL || fwrite(c->bufs[i], 1, c->size, f) != c->size || fclose(f) != 0) {
            die("cannot write %s", path.p);
        }
        sb_free(&path);
    }
}

static void corpus_free(corpus *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->bufs[i]);
    }
    free(c->bufs);
    free(c->planted);
    memset(c, 0, sizeof *c);
}

/* ------------------------------------------------------------------------------------------ */
/* Options.                                                                                    */

/*
 * hs_scan: the floor. engine: default views. engine-raw: views off (the like-for-like with the
 * other targets). libyara: yr_rules_scan_mem(), which sets up a scanner per call.
 * libyara-scanner: one yr_scanner reused (as the engine reuses its scratch), the stronger peer.
 */
enum { T_HS, T_ENGINE, T_ENGINE_RAW, T_YARA, T_YARA_SCANNER, T_COUNT };

static const char *const target_names[T_COUNT] = {"hs_scan", "engine", "engine-raw", "libyara",
                                                  "libyara-scanner"};

typedef struct options {
    size_t rules;
    size_t sizes[MAX_SIZES]; /* bytes */
    size_t nsizes;
    double duration;
    unsigned repeat;
    bool quick;
    const char *json;
    bool yara;
    bool restart;
    size_t restart_rules;
    unsigned restart_warm;
    uint64_t seed;
    size_t corpus_bytes;
    unsigned plant_pct;
    const char *dump_rules;
    const char *dump_corpus;
    unsigned targets; /* bit per target */
    bool restart_only;
} options;

static void usage(FILE *f)
{
    fputs("usage: engine_bench [options]\n"
          "  --rules N          rules in the generated set (default 1000)\n"
          "  --sizes LIST       buffer sizes in KiB, comma-separated (default 1,4,16,64)\n"
          "  --duration S       seconds per target, size and round (default 0.5)\n"
          "  --repeat K         rounds (default 5)\n"
          "  --quick            small and fast: 0.1 s x 3 rounds, smaller corpus, 2000-rule "
          "restart\n"
          "  --json FILE        also write the figures as JSON\n"
          "  --no-yara          skip libyara\n"
          "  --no-restart       skip the warm-restart measurement\n"
          "  --restart-only     only the warm-restart measurement\n"
          "  --targets LIST     scan targets, comma-separated (default: all of hs_scan, engine,\n"
          "                     engine-raw, libyara, libyara-scanner); for profiling one\n"
          "  --restart-rules N  rules for the restart measurement (default 10000)\n"
          "  --restart-warm K   warm compiles (default 7)\n"
          "  --corpus-kib N     corpus bytes per size, in KiB (default 2048)\n"
          "  --plant PCT        percent of buffers carrying a rule's strings (default 1)\n"
          "  --seed N           generator seed (default 1)\n"
          "  --dump-rules FILE  write the generated rule set to FILE\n"
          "  --dump-corpus DIR  write the generated buffers to DIR (which must exist)\n",
          f);
}

static unsigned long long parse_u(const char *opt, const char *s, unsigned long long max)
{
    char *end = NULL;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (s[0] == '\0' || s[0] == '-' || *end != '\0' || errno != 0 || v > max) {
        die("%s: bad number '%s'", opt, s);
    }
    return v;
}

static void parse_sizes(options *o, const char *s)
{
    char buf[256];
    char *save = NULL;
    if (strlen(s) >= sizeof buf) {
        die("--sizes: list too long");
    }
    memcpy(buf, s, strlen(s) + 1);
    o->nsizes = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (o->nsizes == MAX_SIZES) {
            die("--sizes: at most %d sizes", MAX_SIZES);
        }
        o->sizes[o->nsizes++] = (size_t)parse_u("--sizes", tok, 1024 * 1024) * 1024u;
        if (o->sizes[o->nsizes - 1] == 0) {
            die("--sizes: a size must be at least 1 KiB");
        }
    }
    if (o->nsizes == 0) {
        die("--sizes: empty list");
    }
}

static unsigned parse_targets(const char *s)
{
    char buf[256];
    char *save = NULL;
    unsigned mask = 0;
    if (strlen(s) >= sizeof buf) {
        die("--targets: list too long");
    }
    memcpy(buf, s, strlen(s) + 1);
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        unsigned t = 0;
        while (t < T_COUNT && strcmp(tok, target_names[t]) != 0) {
            t++;
        }
        if (t == T_COUNT) {
            die("--targets: unknown target '%s'", tok);
        }
        mask |= 1u << t;
    }
    return mask;
}

static const char *need_arg(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        die("%s needs a value", argv[*i]);
    }
    (*i)++;
    return argv[*i];
}

static void parse_options(options *o, int argc, char **argv)
{
    memset(o, 0, sizeof *o);
    o->rules = 1000;
    parse_sizes(o, "1,4,16,64");
    o->duration = 0.5;
    o->repeat = 5;
    o->yara = true;
    o->restart = true;
    o->restart_rules = 10000;
    o->restart_warm = 7;
    o->seed = 1;
    o->corpus_bytes = 2048u * 1024u;
    o->plant_pct = 1;
    o->targets = (1u << T_COUNT) - 1u;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            o->quick = true;
            o->duration = 0.1;
            o->repeat = 3;
            o->restart_rules = 2000;
            o->restart_warm = 3;
            o->corpus_bytes = 512u * 1024u;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0) {
            continue;
        } else if (strcmp(a, "--rules") == 0) {
            o->rules = (size_t)parse_u(a, need_arg(argc, argv, &i), 1000000);
        } else if (strcmp(a, "--sizes") == 0) {
            parse_sizes(o, need_arg(argc, argv, &i));
        } else if (strcmp(a, "--duration") == 0) {
            char *end = NULL;
            const char *v = need_arg(argc, argv, &i);
            o->duration = strtod(v, &end);
            if (*end != '\0' || !(o->duration > 0.0) || o->duration > 3600.0) {
                die("--duration: bad value '%s'", v);
            }
        } else if (strcmp(a, "--repeat") == 0) {
            o->repeat = (unsigned)parse_u(a, need_arg(argc, argv, &i), 1000);
        } else if (strcmp(a, "--json") == 0) {
            o->json = need_arg(argc, argv, &i);
        } else if (strcmp(a, "--no-yara") == 0) {
            o->yara = false;
        } else if (strcmp(a, "--restart-only") == 0) {
            o->restart_only = true;
        } else if (strcmp(a, "--targets") == 0) {
            o->targets = parse_targets(need_arg(argc, argv, &i));
        } else if (strcmp(a, "--no-restart") == 0) {
            o->restart = false;
        } else if (strcmp(a, "--restart-rules") == 0) {
            o->restart_rules = (size_t)parse_u(a, need_arg(argc, argv, &i), 1000000);
        } else if (strcmp(a, "--restart-warm") == 0) {
            o->restart_warm = (unsigned)parse_u(a, need_arg(argc, argv, &i), 1000);
        } else if (strcmp(a, "--corpus-kib") == 0) {
            o->corpus_bytes = (size_t)parse_u(a, need_arg(argc, argv, &i), 1024 * 1024) * 1024u;
        } else if (strcmp(a, "--plant") == 0) {
            o->plant_pct = (unsigned)parse_u(a, need_arg(argc, argv, &i), 100);
        } else if (strcmp(a, "--seed") == 0) {
            o->seed = (uint64_t)parse_u(a, need_arg(argc, argv, &i), UINT64_MAX);
        } else if (strcmp(a, "--dump-rules") == 0) {
            o->dump_rules = need_arg(argc, argv, &i);
        } else if (strcmp(a, "--dump-corpus") == 0) {
            o->dump_corpus = need_arg(argc, argv, &i);
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else {
            usage(stderr);
            die("unknown option '%s'", a);
        }
    }
    if (o->restart_only) {
        o->nsizes = 0; /* no corpus, no scans */
        o->restart = true;
    }
    if (o->rules == 0 || o->repeat == 0 || o->restart_rules == 0 || o->restart_warm == 0) {
        die("--rules, --repeat, --restart-rules and --restart-warm must be at least 1");
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Targets.                                                                                    */

/* A list of rule names (for comparing what two targets found in one buffer). */
typedef struct namelist {
    char **v;
    size_t n;
    size_t cap;
} namelist;

static void namelist_add(namelist *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = xstrdup(s);
}

static void namelist_clear(namelist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    l->n = 0;
}

static void namelist_free(namelist *l)
{
    namelist_clear(l);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool namelist_has(const namelist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->v[i], s) == 0) {
            return true;
        }
    }
    return false;
}

/* Figures of one target at one size. */
typedef struct cell {
    double *mbps; /* per round */
    hist *lat;
    uint64_t calls;
} cell;

typedef struct bench {
    options opt;
    ruleset rs;
    bool enabled[T_COUNT];
    engine_rules *er;
    engine_scratch *es;
    engine_config cfg_default;
    engine_config cfg_raw;
    hs_database_t *hdb;
    hs_scratch_t *hscratch;
    YR_RULES *yrules;
    YR_SCANNER *yscanner;
    struct yara_ctx *yscanner_ctx;
    double compile_ms[T_COUNT];
    corpus corpora[MAX_SIZES];
    cell cells[MAX_SIZES][T_COUNT];
    /* The check pass. */
    size_t rules_found[MAX_SIZES][T_COUNT]; /* matched rules (hs_scan: pattern matches) */
    size_t planted_found[MAX_SIZES][T_COUNT];
    size_t mismatched[MAX_SIZES];
    size_t limit_verdicts[MAX_SIZES][T_COUNT];
    uint64_t engine_bytes[MAX_SIZES][T_COUNT]; /* bytes_scanned, all buffers */
} bench;

typedef struct yara_ctx {
    size_t rules;
    namelist *names;
} yara_ctx;

static int yara_callback(YR_SCAN_CONTEXT *context, int message, void *message_data, void *user_data)
{
    yara_ctx *y = user_data;
    (void)context;
    if (message == CALLBACK_MSG_RULE_MATCHING) {
        y->rules++;
        if (y->names != NULL) {
            const YR_RULE *rule = message_data;
            namelist_add(y->names, rule->identifier);
        }
    }
    return CALLBACK_CONTINUE;
}

/* The floor's match callback: counts and carries on. */
static int hs_count_cb(unsigned int id, unsigned long long from, unsigned long long to,
                       unsigned int flags, void *ctx)
{
    unsigned long *count = ctx;
    (void)id;
    (void)from;
    (void)to;
    (void)flags;
    (*count)++;
    return 0;
}

/*
 * One scan of p[0..n) by target t. Returns the matched rules (hs_scan: pattern matches); when
 * names is not NULL, adds the matched rule names to it; exits on a scan error.
 */
static size_t scan_one(bench *b, unsigned t, const uint8_t *p, size_t n, namelist *names,
                       engine_verdict *verdict, uint64_t *scanned)
{
    switch (t) {
    case T_HS: {
        unsigned long count = 0;
        hs_error_t rc =
            hs_scan(b->hdb, (const char *)p, (unsigned)n, 0, b->hscratch, hs_count_cb, &count);
        if (rc != HS_SUCCESS) {
            die("hs_scan failed: %d", rc);
        }
        return count;
    }
    case T_ENGINE:
    case T_ENGINE_RAW: {
        engine_result res;
        size_t m;
        int rc;
        memset(&res, 0, sizeof res);
        rc = engine_scan_buffer(b->er, b->es, t == T_ENGINE ? &b->cfg_default : &b->cfg_raw, p, n,
                                NULL, 0, &res);
        if (rc != 0) {
            die("engine_scan_buffer failed: %s (%s)", engine_strerror(rc), engine_err_name(rc));
        }
        m = res.match_count;
        if (names != NULL) {
            for (size_t i = 0; i < res.match_count; i++) {
                namelist_add(names, res.matches[i].rule);
            }
        }
        if (verdict != NULL) {
            *verdict = res.verdict;
        }
        if (scanned != NULL) {
            *scanned += res.bytes_scanned;
        }
        engine_result_cleanup(&res);
        return m;
    }
    case T_YARA_SCANNER: {
        int rc;
        b->yscanner_ctx->rules = 0;
        b->yscanner_ctx->names = names;
        rc = yr_scanner_scan_mem(b->yscanner, p, n);
        if (rc != ERROR_SUCCESS) {
            die("yr_scanner_scan_mem failed: error %d", rc);
        }
        return b->yscanner_ctx->rules;
    }
    default: {
        yara_ctx y = {0, names};
        int rc = yr_rules_scan_mem(b->yrules, p, n, SCAN_FLAGS_REPORT_RULES_MATCHING, yara_callback,
                                   &y, 0);
        if (rc != ERROR_SUCCESS) {
            die("yr_rules_scan_mem failed: error %d", rc);
        }
        return y.rules;
    }
    }
}

/* Prints the source line `line` (1-based) of text, to show where a compile failed. */
static void print_source_line(const char *text, unsigned line)
{
    const char *p = text;
    for (unsigned i = 1; i < line && p != NULL; i++) {
        p = strchr(p, '\n');
        if (p != NULL) {
            p++;
        }
    }
    if (p != NULL && line > 0) {
        const char *e = strchr(p, '\n');
        fprintf(stderr, "  line %u: %.*s\n", line, (int)(e ? (size_t)(e - p) : strlen(p)), p);
    }
}

/* Compiles the generated rules for every enabled target; exits on any failure. */
static void compile_targets(bench *b)
{
    uint64_t t0;
    int rc;
    engine_diag diag;
    hs_compile_error_t *herr = NULL;

    memset(&diag, 0, sizeof diag);
    t0 = now_ns();
    rc = engine_rules_compile_string(b->rs.text.p, "bench.yar", NULL, &b->er, &diag);
    if (rc != 0) {
        fprintf(stderr, "engine_bench: engine rejected the generated rules: %s\n  %s\n",
                engine_strerror(rc), diag.text);
        print_source_line(b->rs.text.p, diag.line);
        exit(1);
    }
    b->compile_ms[T_ENGINE] = ms_since(t0);
    b->compile_ms[T_ENGINE_RAW] = b->compile_ms[T_ENGINE];
    if (engine_rules_count(b->er) != b->rs.nrules) {
        fprintf(stderr, "engine_bench: warning: engine counts %zu rules, %zu generated\n",
                engine_rules_count(b->er), b->rs.nrules);
    }
    rc = engine_scratch_create(b->er, &b->es);
    if (rc != 0) {
        die("engine_scratch_create failed: %s", engine_strerror(rc));
    }
    engine_config_init(&b->cfg_default);
    b->cfg_raw = b->cfg_default;
    b->cfg_raw.normalize = false;
    b->cfg_raw.decode_base64 = false;
    b->cfg_raw.narrow_utf16 = false;

    t0 = now_ns();
    if (hs_compile_multi((const char *const *)b->rs.hs_exprs, b->rs.hs_flags, b->rs.hs_ids,
                         (unsigned)b->rs.nhs, HS_MODE_BLOCK, NULL, &b->hdb, &herr) != HS_SUCCESS) {
        int at = herr ? herr->expression : -1;
        fprintf(stderr, "engine_bench: hs_compile_multi failed: %s (expression %d: %s)\n",
                herr ? herr->message : "?", at,
                at >= 0 && (size_t)at < b->rs.nhs ? b->rs.hs_exprs[at] : "-");
        hs_free_compile_error(herr);
        exit(1);
    }
    b->compile_ms[T_HS] = ms_since(t0);
    if (hs_alloc_scratch(b->hdb, &b->hscratch) != HS_SUCCESS) {
        die("hs_alloc_scratch failed");
    }

    if (b->enabled[T_YARA] || b->enabled[T_YARA_SCANNER]) {
        t0 = now_ns();
        if (bench_yara_compile(NULL, b->rs.text.p, &b->yrules) != 0) {
            die("libyara rejected the generated rules");
        }
        b->compile_ms[T_YARA] = ms_since(t0);
        b->compile_ms[T_YARA_SCANNER] = b->compile_ms[T_YARA];
        if (yr_scanner_create(b->yrules, &b->yscanner) != ERROR_SUCCESS) {
            die("yr_scanner_create failed");
        }
        b->yscanner_ctx = xcalloc(1, sizeof *b->yscanner_ctx);
        yr_scanner_set_callback(b->yscanner, yara_callback, b->yscanner_ctx);
        yr_scanner_set_flags(b->yscanner, SCAN_FLAGS_REPORT_RULES_MATCHING);
    }
}

/*
 * The check pass: every target scans every buffer once (this also warms caches). Compares the
 * rules found by engine-raw and libyara buffer by buffer and counts planted rules found.
 */
static void check_pass(bench *b, size_t si)
{
    const corpus *c = &b->corpora[si];
    namelist names[T_COUNT];
    size_t shown = 0;

    memset(names, 0, sizeof names);
    for (size_t i = 0; i < c->n; i++) {
        const char *planted = c->planted[i] >= 0 ? b->rs.rules[(size_t)c->planted[i]].name : NULL;
        for (unsigned t = 0; t < T_COUNT; t++) {
            engine_verdict v = ENGINE_VERDICT_CLEAN;
            if (!b->enabled[t]) {
                continue;
            }
            namelist_clear(&names[t]);
            b->rules_found[si][t] +=
                scan_one(b, t, c->bufs[i], c->size, t == T_HS ? NULL : &names[t], &v,
                         &b->engine_bytes[si][t]);
            if (v == ENGINE_VERDICT_LIMIT || v == ENGINE_VERDICT_ERROR) {
                b->limit_verdicts[si][t]++;
            }
            if (planted != NULL && t != T_HS && namelist_has(&names[t], planted)) {
                b->planted_found[si][t]++;
            }
        }
        if (b->enabled[T_YARA] && b->enabled[T_ENGINE_RAW]) {
            namelist *e = &names[T_ENGINE_RAW];
            namelist *y = &names[T_YARA];
            bool same = e->n == y->n;
            if (e->n > 1) {
                qsort(e->v, e->n, sizeof *e->v, cmp_str);
            }
            if (y->n > 1) {
                qsort(y->v, y->n, sizeof *y->v, cmp_str);
            }
            for (size_t k = 0; same && k < e->n; k++) {
                same = strcmp(e->v[k], y->v[k]) == 0;
            }
            if (!same) {
                b->mismatched[si]++;
                if (shown++ < 5) {
                    fprintf(stderr, "engine_bench: warning: %zu KiB buffer %zu (planted %s):",
                            c->size / 1024, i, planted ? planted : "none");
                    for (size_t k = 0; k < e->n; k++) {
                        if (!namelist_has(y, e->v[k])) {
                            fprintf(stderr, " +%s(engine only)", e->v[k]);
                        }
                    }
                    for (size_t k = 0; k < y->n; k++) {
                        if (!namelist_has(e, y->v[k])) {
                            fprintf(stderr, " -%s(libyara only)", y->v[k]);
                        }
                    }
                    fputc('\n', stderr);
                }
            }
        }
    }
    for (unsigned t = 0; t < T_COUNT; t++) {
        namelist_free(&names[t]);
    }
}

/*
 * One timed round: target t scans the corpus of size si in a loop for the configured duration
 * (at least 3 calls), one clock reading per call. Records throughput and latencies.
 */
static void run_round(bench *b, unsigned t, size_t si, unsigned round)
{
    const corpus *c = &b->corpora[si];
    cell *cl = &b->cells[si][t];
    uint64_t dur = (uint64_t)(b->opt.duration * 1e9);
    uint64_t start = now_ns();
    uint64_t tprev = start;
    uint64_t calls = 0;
    size_t i = 0;

    while (tprev - start < dur || calls < 3) {
        uint64_t tnow;
        scan_one(b, t, c->bufs[i], c->size, NULL, NULL, NULL);
        tnow = now_ns();
        hist_add(cl->lat, tnow - tprev);
        tprev = tnow;
        calls++;
        if (++i == c->n) {
            i = 0;
        }
    }
    cl->mbps[round] = (double)(calls * c->size) * 1e3 / (double)(tprev - start);
    cl->calls += calls;
}

/* ------------------------------------------------------------------------------------------ */
/* Warm restart.                                                                               */

typedef struct restart_result {
    bool ran;
    size_t rules;
    double cold_ms;
    double cold_compile_ms;
    bool cold_from_cache;
    double scratch_ms;
    double *warm_ms;
    double *warm_compile_ms;
    unsigned nwarm;
    unsigned warm_not_cached;
    size_t text_bytes;
} restart_result;

/* Removes a directory tree (files and subdirectories); best effort. */
static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    if (d == NULL) {
        unlink(path);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        sbuf p = {0};
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        sb_printf(&p, "%s/%s", path, e->d_name);
        if (lstat(p.p, &st) == 0 && S_ISDIR(st.st_mode)) {
            remove_tree(p.p);
        } else {
            unlink(p.p);
        }
        sb_free(&p);
    }
    closedir(d);
    rmdir(path);
}

static engine_rules *restart_compile(const char *path, const char *cache, double *wall_ms)
{
    const char *paths[1];
    engine_compile_options opts;
    engine_rules *rules = NULL;
    engine_diag diag;
    uint64_t t0;
    int rc;

    paths[0] = path;
    opts.cache_dir = cache;
    memset(&diag, 0, sizeof diag);
    t0 = now_ns();
    rc = engine_rules_compile_files(paths, 1, &opts, &rules, &diag);
    *wall_ms = ms_since(t0);
    if (rc != 0) {
        die("engine_rules_compile_files failed: %s: %s", engine_strerror(rc), diag.text);
    }
    return rules;
}

/* Compiles restart_rules rules from a file once cold, then restart_warm times from the cache. */
static void bench_restart(const options *o, restart_result *rr)
{
    ruleset rs;
    const char *tmp = getenv("TMPDIR");
    sbuf dir = {0};
    sbuf file = {0};
    sbuf cache = {0};
    FILE *f;
    engine_rules *rules;
    engine_scratch *scratch = NULL;
    uint64_t t0;

    memset(rr, 0, sizeof *rr);
    fprintf(stderr, "restart: generating %zu rules ...\n", o->restart_rules);
    ruleset_generate(&rs, o->restart_rules, o->seed ^ 0x5EED5EEDu);
    sb_printf(&dir, "%s/engine_bench.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(dir.p) == NULL) {
        die("mkdtemp %s: %s", dir.p, strerror(errno));
    }
    sb_printf(&file, "%s/rules.yar", dir.p);
    sb_printf(&cache, "%s/cache", dir.p);
    f = fopen(file.p, "w");
    if (f == NULL || fwrite(rs.text.p, 1, rs.text.len, f) != rs.text.len || fclose(f) != 0) {
        die("cannot write %s", file.p);
    }
    rr->rules = rs.nrules;
    rr->text_bytes = rs.text.len;

    fprintf(stderr, "restart: cold compile ...\n");
    rules = restart_compile(file.p, cache.p, &rr->cold_ms);
    rr->cold_compile_ms = engine_rules_compile_ms(rules);
    rr->cold_from_cache = engine_rules_from_cache(rules);
    t0 = now_ns();
    if (engine_scratch_create(rules, &scratch) != 0) {
        die("engine_scratch_create failed for the restart set");
    }
    rr->scratch_ms = ms_since(t0);
    engine_scratch_destroy(scratch);
    engine_rules_unref(rules);

    rr->nwarm = o->restart_warm;
    rr->warm_ms = xcalloc(rr->nwarm, sizeof *rr->warm_ms);
    rr->warm_compile_ms = xcalloc(rr->nwarm, sizeof *rr->warm_compile_ms);
    for (unsigned i = 0; i < rr->nwarm; i++) {
        rules = restart_compile(file.p, cache.p, &rr->warm_ms[i]);
        rr->warm_compile_ms[i] = engine_rules_compile_ms(rules);
        if (!engine_rules_from_cache(rules)) {
            rr->warm_not_cached++;
        }
        engine_rules_unref(rules);
    }
    rr->ran = true;
    remove_tree(dir.p);
    sb_free(&dir);
    sb_free(&file);
    sb_free(&cache);
    ruleset_free(&rs);
}

/* ------------------------------------------------------------------------------------------ */
/* Reporting.                                                                                  */

typedef struct goal {
    char what[72];
    char scope[32];
    summary value;
    char unit[4]; /* "x" or "ms" */
    bool pass;
    const char *note;
} goal;

#define MAX_GOALS (4 * MAX_SIZES + 1)

static size_t ratio_rounds(const bench *b, size_t si, unsigned num, unsigned den, double *out)
{
    for (unsigned r = 0; r < b->opt.repeat; r++) {
        double d = b->cells[si][den].mbps[r];
        out[r] = d > 0.0 ? b->cells[si][num].mbps[r] / d : 0.0;
    }
    return b->opt.repeat;
}

static void format_summary(char *buf, size_t cap, summary s, int prec)
{
    snprintf(buf, cap, "%.*f [%.*f..%.*f]", prec, s.med, prec, s.min, prec, s.max);
}

/* The ratios the report shows: numerator and denominator targets. */
static const unsigned ratio_pairs[][2] = {{T_ENGINE, T_HS},
                                          {T_ENGINE_RAW, T_HS},
                                          {T_ENGINE, T_YARA},
                                          {T_ENGINE_RAW, T_YARA},
                                          {T_ENGINE, T_YARA_SCANNER}};

static void add_goal(goal *g, const char *what, const char *scope, summary value, const char *unit,
                     bool pass, const char *note)
{
    memset(g, 0, sizeof *g);
    snprintf(g->what, sizeof g->what, "%s", what);
    snprintf(g->scope, sizeof g->scope, "%s", scope);
    snprintf(g->unit, sizeof g->unit, "%s", unit);
    g->value = value;
    g->pass = pass;
    g->note = note;
}

/* Prints every table; fills goals[] (for the JSON too). */
static void print_results(bench *b, const restart_result *rr, goal *goals, size_t *ngoals)
{
    const options *o = &b->opt;
    double *tmp = xcalloc(o->repeat, sizeof *tmp);
    char s1[64];
    char s2[96];
    char label[32];

    printf("\nthroughput and latency (MB = 10^6 bytes; %u rounds x %.2f s per target and size; "
           "median [min..max] over rounds; latency percentiles over all rounds)\n",
           o->repeat, o->duration);
    printf("%-7s %-16s %-30s %-28s %9s %9s %9s\n", "size", "target", "MB/s", "buffers/s", "p50 us",
           "p99 us", "max us");
    for (size_t si = 0; si < o->nsizes; si++) {
        bool first = true;
        snprintf(label, sizeof label, "%zu KiB", o->sizes[si] / 1024);
        for (unsigned t = 0; t < T_COUNT; t++) {
            const cell *cl = &b->cells[si][t];
            summary mb;
            summary bs;
            if (!b->enabled[t]) {
                continue;
            }
            mb = summarize(cl->mbps, o->repeat);
            bs.med = mb.med * 1e6 / (double)o->sizes[si];
            bs.min = mb.min * 1e6 / (double)o->sizes[si];
            bs.max = mb.max * 1e6 / (double)o->sizes[si];
            format_summary(s1, sizeof s1, mb, 1);
            format_summary(s2, sizeof s2, bs, 0);
            printf("%-7s %-16s %-30s %-28s %9.2f %9.2f %9.2f\n", first ? label : "",
                   target_names[t], s1, s2, (double)hist_quantile(cl->lat, 0.50) / 1e3,
                   (double)hist_quantile(cl->lat, 0.99) / 1e3, (double)cl->lat->max / 1e3);
            first = false;
        }
    }

    printf("\nthroughput ratios (computed per round, then median [min..max])\n%-7s", "size");
    for (size_t k = 0; k < ARRAY_LEN(ratio_pairs); k++) {
        snprintf(s1, sizeof s1, "%s/%s", target_names[ratio_pairs[k][0]],
                 target_names[ratio_pairs[k][1]]);
        printf(" %-25s", s1);
    }
    printf("\n");
    for (size_t si = 0; si < o->nsizes; si++) {
        snprintf(label, sizeof label, "%zu KiB", o->sizes[si] / 1024);
        printf("%-7s", label);
        for (size_t k = 0; k < ARRAY_LEN(ratio_pairs); k++) {
            if (!b->enabled[ratio_pairs[k][0]] || !b->enabled[ratio_pairs[k][1]]) {
                snprintf(s1, sizeof s1, "-");
            } else {
                ratio_rounds(b, si, ratio_pairs[k][0], ratio_pairs[k][1], tmp);
                format_summary(s1, sizeof s1, summarize(tmp, o->repeat), 2);
            }
            printf(" %-25s", s1);
        }
        printf("\n");
    }

    printf("\ncheck pass (each buffer scanned once by each target; \"rules\" = matched rules over "
           "all buffers, \"pl.\" = planted rules found)\n");
    printf("%-7s %8s %8s %-18s %-18s %-18s %9s %13s\n", "size", "buffers", "planted",
           "engine rules/pl.", "engine-raw r./pl.", "libyara r./pl.", "mismatch", "engine bytes");
    for (size_t si = 0; si < o->nsizes; si++) {
        const corpus *c = &b->corpora[si];
        char cols[3][32];
        unsigned ts[3] = {T_ENGINE, T_ENGINE_RAW, T_YARA};
        for (unsigned k = 0; k < 3; k++) {
            if (!b->enabled[ts[k]]) {
                snprintf(cols[k], sizeof cols[k], "-");
            } else {
                snprintf(cols[k], sizeof cols[k], "%zu / %zu", b->rules_found[si][ts[k]],
                         b->planted_found[si][ts[k]]);
            }
        }
        snprintf(label, sizeof label, "%zu KiB", o->sizes[si] / 1024);
        printf("%-7s %8zu %8zu %-18s %-18s %-18s %9s %12.2fx\n", label, c->n, c->nplanted, cols[0],
               cols[1], cols[2],
               (b->enabled[T_YARA] && b->enabled[T_ENGINE_RAW]) ? (b->mismatched[si] ? "YES" : "no")
                                                                : "-",
               (double)b->engine_bytes[si][T_ENGINE] / (double)(c->n * c->size));
        if (b->limit_verdicts[si][T_ENGINE] || b->limit_verdicts[si][T_ENGINE_RAW]) {
            printf("        limit/error verdicts: engine %zu, engine-raw %zu\n",
                   b->limit_verdicts[si][T_ENGINE], b->limit_verdicts[si][T_ENGINE_RAW]);
        }
    }
    printf("(\"mismatch\": some buffer where engine-raw and libyara matched different rules; "
           "\"engine bytes\": bytes the engine\n passed to Hyperscan with default views, per input "
           "byte)\n");

    if (rr->ran) {
        summary w = summarize(rr->warm_ms, rr->nwarm);
        summary wc = summarize(rr->warm_compile_ms, rr->nwarm);
        printf("\nwarm restart: %zu rules (%zu KiB of rule text) through "
               "engine_rules_compile_files() with a cache dir\n",
               rr->rules, rr->text_bytes / 1024);
        printf("  cold:  %.1f ms wall, engine_rules_compile_ms %.1f, from_cache %s; then "
               "engine_scratch_create %.2f ms\n",
               rr->cold_ms, rr->cold_compile_ms, rr->cold_from_cache ? "true (!)" : "false",
               rr->scratch_ms);
        printf("  warm:  %.2f [%.2f..%.2f] ms wall, engine_rules_compile_ms %.2f [%.2f..%.2f]; "
               "%u runs, %u not from the cache\n",
               w.med, w.min, w.max, wc.med, wc.min, wc.max, rr->nwarm, rr->warm_not_cached);
    }

    /* Goals. */
    *ngoals = 0;
    for (size_t si = 0; si < o->nsizes; si++) {
        static const unsigned goal_pairs[][2] = {
            {T_ENGINE, T_HS}, {T_ENGINE_RAW, T_HS}, {T_ENGINE, T_YARA}, {T_ENGINE, T_YARA_SCANNER}};
        const char *note = o->rules != 1000 ? "goal is stated at 1000 rules" : NULL;
        snprintf(label, sizeof label, "%zu KiB", o->sizes[si] / 1024);
        for (size_t k = 0; k < ARRAY_LEN(goal_pairs); k++) {
            unsigned num = goal_pairs[k][0];
            unsigned den = goal_pairs[k][1];
            double want = den == T_HS ? 0.85 : 5.0;
            summary v;
            if (!b->enabled[num] || !b->enabled[den]) {
                continue;
            }
            snprintf(s1, sizeof s1, "%s >= %g x %s", target_names[num], want, target_names[den]);
            ratio_rounds(b, si, num, den, tmp);
            v = summarize(tmp, o->repeat);
            add_goal(&goals[(*ngoals)++], s1, label, v, "x", v.med >= want, note);
        }
    }
    if (rr->ran) {
        summary v = summarize(rr->warm_ms, rr->nwarm);
        snprintf(label, sizeof label, "%zu rules", rr->rules);
        add_goal(&goals[(*ngoals)++], "warm restart <= 50 ms", label, v, "ms",
                 v.med <= 50.0 && rr->warm_not_cached == 0,
                 rr->warm_not_cached  ? "some warm compiles did not use the cache"
                 : rr->rules != 10000 ? "goal is stated at 10000 rules"
                                      : NULL);
    }
    printf("\ngoals (verdict on the median; engine = default views, engine-raw = views off)\n");
    printf("%-36s %-12s %-28s %s\n", "goal", "at", "value", "verdict");
    for (size_t i = 0; i < *ngoals; i++) {
        const goal *g = &goals[i];
        format_summary(s1, sizeof s1, g->value, 2);
        snprintf(s2, sizeof s2, "%s %s", s1, g->unit);
        printf("%-36s %-12s %-28s %s", g->what, g->scope, s2, g->pass ? "PASS" : "MISS");
        if (g->note != NULL) {
            printf("  (%s)", g->note);
        }
        printf("\n");
    }
    free(tmp);
}

static void json_summary(FILE *f, const char *key, summary s, const char *tail)
{
    fprintf(f, "\"%s\": {\"median\": %.4f, \"min\": %.4f, \"max\": %.4f}%s", key, s.med, s.min,
            s.max, tail);
}

static void write_json(const bench *b, const restart_result *rr, const goal *goals, size_t ngoals)
{
    const options *o = &b->opt;
    FILE *f = fopen(o->json, "w");
    double *tmp = xcalloc(o->repeat, sizeof *tmp);
    if (f == NULL) {
        die("cannot write %s: %s", o->json, strerror(errno));
    }
    fprintf(f,
            "{\n  \"rules\": %zu, \"strings\": {\"text\": %zu, \"hex\": %zu, \"regex\": %zu}, "
            "\"hs_patterns\": %zu,\n",
            b->rs.nrules, b->rs.n_text, b->rs.n_hex, b->rs.n_regex, b->rs.nhs);
    fprintf(f, "  \"seed\": %llu, \"duration_s\": %.3f, \"repeat\": %u, \"plant_pct\": %u,\n",
            (unsigned long long)o->seed, o->duration, o->repeat, o->plant_pct);
    fprintf(f, "  \"hyperscan\": \"%s\", \"libyara\": \"%s\",\n", hs_version(), YR_VERSION);
    fprintf(f, "  \"compile_ms\": {\"engine\": %.2f, \"hs_scan\": %.2f, \"libyara\": %.2f},\n",
            b->compile_ms[T_ENGINE], b->compile_ms[T_HS], b->compile_ms[T_YARA]);
    fprintf(f, "  \"sizes\": [\n");
    for (size_t si = 0; si < o->nsizes; si++) {
        const corpus *c = &b->corpora[si];
        bool first = true;
        fprintf(f, "    {\"size\": %zu, \"buffers\": %zu, \"planted\": %zu, \"mismatched\": %zu,\n",
                o->sizes[si], c->n, c->nplanted, b->mismatched[si]);
        fprintf(f, "     \"targets\": {");
        for (unsigned t = 0; t < T_COUNT; t++) {
            const cell *cl = &b->cells[si][t];
            if (!b->enabled[t]) {
                continue;
            }
            fprintf(f, "%s\n      \"%s\": {", first ? "" : ",", target_names[t]);
            first = false;
            json_summary(f, "mbps", summarize(cl->mbps, o->repeat), ", ");
            fprintf(f, "\"rounds_mbps\": [");
            for (unsigned r = 0; r < o->repeat; r++) {
                fprintf(f, "%s%.3f", r ? ", " : "", cl->mbps[r]);
            }
            fprintf(f,
                    "], \"p50_us\": %.3f, \"p99_us\": %.3f, \"max_us\": %.3f, \"calls\": %llu, "
                    "\"rules_found\": %zu}",
                    (double)hist_quantile(cl->lat, 0.50) / 1e3,
                    (double)hist_quantile(cl->lat, 0.99) / 1e3, (double)cl->lat->max / 1e3,
                    (unsigned long long)cl->calls, b->rules_found[si][t]);
        }
        fprintf(f, "},\n     \"ratios\": {");
        first = true;
        for (size_t k = 0; k < ARRAY_LEN(ratio_pairs); k++) {
            char key[64];
            if (!b->enabled[ratio_pairs[k][0]] || !b->enabled[ratio_pairs[k][1]]) {
                continue;
            }
            snprintf(key, sizeof key, "%s/%s", target_names[ratio_pairs[k][0]],
                     target_names[ratio_pairs[k][1]]);
            fprintf(f, "%s", first ? "" : ", ");
            first = false;
            ratio_rounds(b, si, ratio_pairs[k][0], ratio_pairs[k][1], tmp);
            json_summary(f, key, summarize(tmp, o->repeat), "");
        }
        fprintf(f, "}}%s\n", si + 1 < o->nsizes ? "," : "");
    }
    fprintf(f, "  ],\n");
    if (rr->ran) {
        fprintf(f,
                "  \"restart\": {\"rules\": %zu, \"cold_ms\": %.3f, \"cold_compile_ms\": %.3f, "
                "\"cold_from_cache\": %s, \"warm_not_cached\": %u, ",
                rr->rules, rr->cold_ms, rr->cold_compile_ms, rr->cold_from_cache ? "true" : "false",
                rr->warm_not_cached);
        json_summary(f, "warm_ms", summarize(rr->warm_ms, rr->nwarm), ", ");
        json_summary(f, "warm_compile_ms", summarize(rr->warm_compile_ms, rr->nwarm), "},\n");
    }
    fprintf(f, "  \"goals\": [\n");
    for (size_t i = 0; i < ngoals; i++) {
        fprintf(f, "    {\"goal\": \"%s\", \"at\": \"%s\", \"unit\": \"%s\", ", goals[i].what,
                goals[i].scope, goals[i].unit);
        json_summary(f, "value", goals[i].value, ", ");
        fprintf(f, "\"pass\": %s}%s\n", goals[i].pass ? "true" : "false",
                i + 1 < ngoals ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    free(tmp);
    if (fclose(f) != 0) {
        die("cannot write %s", o->json);
    }
}

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    bench *b = xcalloc(1, sizeof *b);
    restart_result rr;
    goal goals[MAX_GOALS];
    size_t ngoals = 0;
    uint64_t t0 = now_ns();
    int rc;

    setvbuf(stdout, NULL, _IOLBF, 0);
    parse_options(&b->opt, argc, argv);
    memset(&rr, 0, sizeof rr);
    for (unsigned t = 0; t < T_COUNT; t++) {
        b->enabled[t] =
            ((b->opt.targets >> t) & 1u) && ((t != T_YARA && t != T_YARA_SCANNER) || b->opt.yara);
    }
    engine_global_init();
    rc = engine_check_platform();
    if (rc != 0) {
        die("%s", engine_strerror(rc));
    }
    if (yr_initialize() != ERROR_SUCCESS) {
        die("yr_initialize failed");
    }

    ruleset_generate(&b->rs, b->opt.rules, b->opt.seed);
    if (b->opt.dump_rules != NULL) {
        FILE *f = fopen(b->opt.dump_rules, "w");
        if (f == NULL || fwrite(b->rs.text.p, 1, b->rs.text.len, f) != b->rs.text.len ||
            fclose(f) != 0) {
            die("cannot write %s", b->opt.dump_rules);
        }
    }
    printf("engine_bench: %zu rules (%zu text, %zu hex, %zu regex strings; %zu Hyperscan "
           "patterns), seed %llu\n",
           b->rs.nrules, b->rs.n_text, b->rs.n_hex, b->rs.n_regex, b->rs.nhs,
           (unsigned long long)b->opt.seed);
    printf("Hyperscan %s, libyara %s%s\n", engine_hyperscan_version(), YR_VERSION,
           b->opt.yara ? "" : " (not used)");

    if (b->opt.restart_only) {
        goto restart;
    }
    compile_targets(b);
    printf("compile: engine %.1f ms (engine_rules_compile_ms %.1f), hs_compile_multi %.1f ms",
           b->compile_ms[T_ENGINE], engine_rules_compile_ms(b->er), b->compile_ms[T_HS]);
    if (b->enabled[T_YARA]) {
        printf(", libyara %.1f ms", b->compile_ms[T_YARA]);
    }
    printf("\n");

    printf("corpus:");
    for (size_t si = 0; si < b->opt.nsizes; si++) {
        size_t size = b->opt.sizes[si];
        size_t n = b->opt.corpus_bytes / size;
        corpus_generate(&b->corpora[si], &b->rs, size, n < 16 ? 16 : n, b->opt.plant_pct,
                        b->opt.seed);
        printf("%s %zu KiB x %zu (%zu planted)", si ? "," : "", size / 1024, b->corpora[si].n,
               b->corpora[si].nplanted);
        if (b->opt.dump_corpus != NULL) {
            corpus_dump(&b->corpora[si], &b->rs, b->opt.dump_corpus);
        }
        for (unsigned t = 0; t < T_COUNT; t++) {
            b->cells[si][t].mbps = xcalloc(b->opt.repeat, sizeof(double));
            b->cells[si][t].lat = xcalloc(1, sizeof(hist));
        }
    }
    printf("\n");

    for (size_t si = 0; si < b->opt.nsizes; si++) {
        fprintf(stderr, "check pass: %zu KiB ...\n", b->opt.sizes[si] / 1024);
        check_pass(b, si);
        if (b->enabled[T_YARA] && b->enabled[T_YARA_SCANNER] &&
            b->rules_found[si][T_YARA_SCANNER] != b->rules_found[si][T_YARA]) {
            fprintf(stderr, "engine_bench: WARNING: %zu KiB: the two libyara APIs disagree\n",
                    b->opt.sizes[si] / 1024);
        }
        if (b->enabled[T_YARA] && b->enabled[T_ENGINE_RAW] &&
            b->rules_found[si][T_ENGINE_RAW] != b->rules_found[si][T_YARA]) {
            fprintf(stderr,
                    "engine_bench: WARNING: %zu KiB: engine-raw matched %zu rules, libyara %zu\n",
                    b->opt.sizes[si] / 1024, b->rules_found[si][T_ENGINE_RAW],
                    b->rules_found[si][T_YARA]);
        }
    }

    {
        unsigned order[T_COUNT];
        unsigned nt = 0;
        for (unsigned t = 0; t < T_COUNT; t++) {
            if (b->enabled[t]) {
                order[nt++] = t;
            }
        }
        for (unsigned r = 0; r < b->opt.repeat; r++) {
            fprintf(stderr, "round %u/%u ...\n", r + 1, b->opt.repeat);
            for (size_t si = 0; si < b->opt.nsizes; si++) {
                /* Rotate the order each round and size, so no target always runs first. */
                for (unsigned k = 0; k < nt; k++) {
                    run_round(b, order[(k + r + si) % nt], si, r);
                }
            }
        }
    }

restart:
    if (b->opt.restart) {
        bench_restart(&b->opt, &rr);
    }
    print_results(b, &rr, goals, &ngoals);
    if (b->opt.json != NULL) {
        write_json(b, &rr, goals, ngoals);
    }
    printf("\ntotal run time %.1f s\n", (double)(now_ns() - t0) / 1e9);

    free(rr.warm_ms);
    free(rr.warm_compile_ms);
    for (size_t si = 0; si < b->opt.nsizes; si++) {
        corpus_free(&b->corpora[si]);
        for (unsigned t = 0; t < T_COUNT; t++) {
            free(b->cells[si][t].mbps);
            free(b->cells[si][t].lat);
        }
    }
    engine_scratch_destroy(b->es);
    engine_rules_unref(b->er);
    hs_free_scratch(b->hscratch);
    hs_free_database(b->hdb);
    if (b->yscanner != NULL) {
        yr_scanner_destroy(b->yscanner);
    }
    free(b->yscanner_ctx);
    if (b->yrules != NULL) {
        yr_rules_destroy(b->yrules);
    }
    yr_finalize();
    ruleset_free(&b->rs);
    free(b);
    return 0;
}
