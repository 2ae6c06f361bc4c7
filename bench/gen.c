/*
 * gen.c - generated PowerShell-like script text for the broker benchmarks (see gen.h): comments,
 * cmdlet pipelines, .NET calls, hashtables, paths and an occasional base64 blob, all benign.
 */
#include "gen.h"

#include "bench_util.h"

#include <stdio.h>
#include <string.h>

static const char *pick(uint64_t *s, const char *const *list, size_t n)
{
    return list[bench_rng_next(s) % n];
}

#define PICK(s, list) pick(s, list, sizeof(list) / sizeof(list[0]))

static const char *const verbs[] = {"Get",    "Set",     "New",    "Remove", "Test",  "Add",
                                    "Update", "Export",  "Import", "Sync",   "Start", "Stop",
                                    "Find",   "Resolve", "Clear",  "Backup"};
static const char *const nouns[] = {
    "Inventory", "Report",  "Mailbox", "Printer",   "Share",   "Quota",    "Build",
    "Release",   "Package", "Tenant",  "Cache",     "Session", "Schedule", "Archive",
    "Config",    "License", "Volume",  "Partition", "Account", "Policy",   "Snapshot"};
static const char *const vars[] = {"items", "result", "path",   "entry",  "server", "user",
                                   "share", "file",   "report", "config", "node",   "target",
                                   "row",   "task",   "folder", "record", "group",  "disk"};
static const char *const places[] = {"C:\\ProgramData\\Contoso", "D:\\Builds\\nightly",
                                     "\\\\fs01\\deploy",         "C:\\Windows\\Temp\\ops",
                                     "E:\\Archive\\2024",        "C:\\Users\\Public\\Reports"};
static const char *const exts[] = {"log", "csv", "json", "xml", "txt", "config", "ps1", "psd1"};
static const char *const colours[] = {"Green", "Yellow", "Cyan", "Gray", "White", "Magenta"};
static const char *const classes[] = {"Service",        "LogicalDisk",     "Process",
                                      "NetworkAdapter", "OperatingSystem", "Product"};
static const char *const vendors[] = {"Contoso", "Fabrikam", "Northwind", "Tailspin", "Litware"};

/* Appends one generated statement (one or a few lines) to out at *w, within cap. */
static void gen_statement(uint64_t *s, char *out, size_t cap, size_t *w)
{
    char line[1024];
    unsigned n1 = (unsigned)(bench_rng_next(s) % 5000), n2 = (unsigned)(bench_rng_next(s) % 90) + 1;
    const char *v1 = PICK(s, vars), *v2 = PICK(s, vars), *noun = PICK(s, nouns);
    switch (bench_rng_next(s) % 15) {
    case 0:
        snprintf(line, sizeof(line), "# %s the %s %s entries for %s (%u kept)\n", PICK(s, verbs),
                 noun, PICK(s, nouns), PICK(s, vendors), n1);
        break;
    case 1:
        snprintf(line, sizeof(line),
                 "$%s%s = Get-ChildItem -Path '%s' -Recurse -Filter '*.%s' | Where-Object { "
                 "$_.Length -gt %u }\n",
                 v1, noun, PICK(s, places), PICK(s, exts), n1);
        break;
    case 2:
        snprintf(line, sizeof(line),
                 "foreach ($%s in $%ss) {\n    Write-Verbose \"Processing $($%s.Name) in "
                 "%s\"\n}\n",
                 v1, v2, v1, PICK(s, places));
        break;
    case 3:
        snprintf(line, sizeof(line), "$%s = [System.IO.Path]::Combine($env:TEMP, '%s-%u.%s')\n", v1,
                 noun, n1, PICK(s, exts));
        break;
    case 4:
        snprintf(line, sizeof(line),
                 "$%sConfig = @{ Name = '%s'; Retries = %u; Enabled = $true; Timeout = %u }\n", v1,
                 noun, n2 % 7, n1);
        break;
    case 5:
        snprintf(line, sizeof(line),
                 "if (Test-Path -Path $%s) { Remove-Item -Path $%s -Force -ErrorAction "
                 "SilentlyContinue }\n",
                 v1, v1);
        break;
    case 6:
        snprintf(line, sizeof(line),
                 "function %s-%s%s {\n    param([string]$Name, [int]$Count = %u)\n"
                 "    $out = New-Object System.Collections.Generic.List[string]\n"
                 "    return $out\n}\n",
                 PICK(s, verbs), PICK(s, vendors), noun, n2);
        break;
    case 7:
        snprintf(line, sizeof(line),
                 "Set-ItemProperty -Path 'HKCU:\\Software\\%s\\%s' -Name '%s' -Value %u\n",
                 PICK(s, vendors), noun, v1, n1);
        break;
    case 8:
        snprintf(line, sizeof(line),
                 "$%ss | Sort-Object -Property %s -Descending | Select-Object -First %u | "
                 "Export-Csv -Path '%s\\%s.csv' -NoTypeInformation\n",
                 v1, noun, n2, PICK(s, places), v2);
        break;
    case 9:
        snprintf(line, sizeof(line),
                 "Get-Service -Name '%s*' | Where-Object { $_.Status -eq 'Running' } | "
                 "ForEach-Object { $_.DisplayName }\n",
                 PICK(s, vendors));
        break;
    case 10:
        snprintf(line, sizeof(line),
                 "$%s = Get-CimInstance -ClassName Win32_%s -Filter \"Name like '%%%s%%'\"\n", v1,
                 PICK(s, classes), noun);
        break;
    case 11:
        snprintf(line, sizeof(line),
                 "Write-Host (\"{0} of {1}: {2}\" -f $%s, $total, '%s') -ForegroundColor %s\n", v1,
                 noun, PICK(s, colours));
        break;
    case 12:
        snprintf(line, sizeof(line),
                 "try {\n    $%s = Get-Content -Path '%s\\%s.json' -Raw | ConvertFrom-Json\n"
                 "} catch {\n    Write-Warning \"Cannot read %s: $_\"\n}\n",
                 v1, PICK(s, places), noun, noun);
        break;
    case 13:
        snprintf(line, sizeof(line), "$total += ($%s | Measure-Object -Property Length -Sum).Sum\n",
                 v1);
        break;
    default: {
        /* About one statement in 15 carries a base64 blob, which the engine decodes. */
        static const char b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char blob[200];
        size_t len = 4 * (10 + bench_rng_next(s) % 30);
        for (size_t i = 0; i < len; i++)
            blob[i] = b64[bench_rng_next(s) % 64];
        blob[len] = '\0';
        snprintf(line, sizeof(line), "$%sBlob = '%s'\n", v1, blob);
        break;
    }
    }
    size_t l = strlen(line);
    if (*w + l > cap)
        l = cap - *w;
    memcpy(out + *w, line, l);
    *w += l;
}

void bench_gen_stamp(uint8_t *block, uint64_t stamp)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t *p = block + strlen(BENCH_STAMP_PREFIX);
    for (int i = BENCH_STAMP_DIGITS - 1; i >= 0; i--) {
        p[i] = (uint8_t)hex[stamp & 0xF];
        stamp >>= 4;
    }
}

void bench_gen_script(uint64_t *s, uint8_t *block, size_t size)
{
    char *out = (char *)block;
    size_t w = (size_t)snprintf(out, size, "%s%0*d\n", BENCH_STAMP_PREFIX, BENCH_STAMP_DIGITS, 0);
    while (w < size)
        gen_statement(s, out, size, &w);
    out[size - 1] = '\n';
}

void bench_gen_widen(const uint8_t *in, size_t n, uint8_t *out)
{
    for (size_t i = n; i-- > 0;) {
        out[2 * i] = in[i];
        out[2 * i + 1] = 0;
    }
}
