/*
 * amsiscan - scans files, directories or standard input and prints one line per input, the way
 * clamscan does: `PATH: RuleName FOUND [object path]`, `PATH: OK`, `PATH: LIMIT (reason)`,
 * `PATH: ERROR (reason)`; or, with --json, one JSON object per input.
 *
 * Exit status: 1 if anything was detected, else 2 if any input (or the rules, or the arguments)
 * had an error, else 0.
 *
 * Scanning goes through the broker (amsid) with libamsi, exactly as a script host's would, or
 * in-process with --local, with the same engine and configuration; both give the same answers.
 */
#include "amsi.h"
#include "amsi_protocol.h"
#include "broker/config.h"
#include "engine/engine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { EXIT_CLEAN = 0, EXIT_DETECTED = 1, EXIT_ERROR = 2 };

typedef struct app {
    broker_config cfg;
    bool local;
    HAMSICONTEXT amsi; /* broker mode */
    engine_rules *rules;
    engine_scratch *scratch;
    bool json;
    bool recursive;
    bool detected;
    bool error;
} app;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: amsiscan [--local | --socket PATH] [--config FILE] [--rules PATH]... "
            "[--set SECTION.KEY=VALUE]...\n"
            "                [--json] [-r] PATH... | -\n"
            "       amsiscan --check-rules PATH...\n"
            "\n"
            "  --local            scan in this process instead of through the broker\n"
            "  --socket PATH      the broker's scan socket (default: $AMSI_BROKER_SOCKET, else\n"
            "                     broker.socket of the configuration)\n"
            "  --config FILE      read the INI configuration (amsid.conf)\n"
            "  --rules PATH       rule file or directory of *.yar/*.yara (repeatable; default:\n"
            "                     the bundled engine/rules/default.yar)\n"
            "  --set S.K=V        override a configuration key, e.g. --set engine.max_files=10\n"
            "  --json             one JSON object per input\n"
            "  -r, --recursive    scan directories recursively\n"
            "  --check-rules PATH validate rules and exit (0 valid, 2 invalid)\n"
            "  -h, --help         this text\n"
            "\n"
            "Exit status: 1 if anything was detected, else 2 if any input had an error, else 0.\n");
}

/* Writes s as a JSON string (with quotes). */
static void json_string(FILE *out, const char *s)
{
    if (s == NULL) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

static const char *view_name(engine_view v)
{
    switch (v) {
    case ENGINE_VIEW_RAW:
        return "raw";
    case ENGINE_VIEW_NARROWED:
        return "narrowed";
    case ENGINE_VIEW_NORMALIZED:
        return "normalized";
    }
    return "raw";
}

/* Prints the outcome for one input and records it for the exit status. */
static void report(app *a, const char *path, const engine_result *res, const char *error)
{
    engine_verdict verdict = error ? ENGINE_VERDICT_ERROR : res->verdict;
    const char *reason = error ? error : res ? res->reason : NULL;
    if (verdict == ENGINE_VERDICT_DETECTED)
        a->detected = true;
    else if (verdict == ENGINE_VERDICT_ERROR)
        a->error = true;
    if (a->json) {
        fputs("{\"path\": ", stdout);
        json_string(stdout, path);
        printf(", \"verdict\": \"%s\", \"amsi_result\": %d, \"rules\": [",
               engine_verdict_name(verdict),
               verdict == ENGINE_VERDICT_DETECTED ? ENGINE_AMSI_DETECTED
                                                  : ENGINE_AMSI_NOT_DETECTED);
        size_t n = error ? 0 : res->match_count;
        for (size_t i = 0; i < n; i++) {
            fputs(i ? ", " : "", stdout);
            json_string(stdout, res->matches[i].rule);
        }
        fputs("], \"object\": ", stdout);
        json_string(stdout, error ? NULL : res->object);
        fputs(", \"reason\": ", stdout);
        json_string(stdout, verdict == ENGINE_VERDICT_DETECTED ? NULL : reason);
        fputs(", \"matches\": [", stdout);
        for (size_t i = 0; i < n; i++) {
            const engine_match *m = &res->matches[i];
            fputs(i ? ", {\"rule\": " : "{\"rule\": ", stdout);
            json_string(stdout, m->rule);
            fputs(", \"object\": ", stdout);
            json_string(stdout, m->object);
            printf(", \"view\": \"%s\", \"meta\": {", view_name(m->view));
            for (size_t j = 0; j < m->meta_count; j++) {
                fputs(j ? ", " : "", stdout);
                json_string(stdout, m->meta_keys[j]);
                fputs(": ", stdout);
                json_string(stdout, m->meta_values[j]);
            }
            fputs("}}", stdout);
        }
        fputs("]}\n", stdout);
        return;
    }
    switch (verdict) {
    case ENGINE_VERDICT_DETECTED:
        printf("%s: %s FOUND", path, res->matches[0].rule);
        if (res->object && strchr(res->object, '>'))
            printf(" [%s]", res->object);
        putchar('\n');
        break;
    case ENGINE_VERDICT_CLEAN:
        printf("%s: OK\n", path);
        break;
    case ENGINE_VERDICT_LIMIT:
        printf("%s: LIMIT (%s)\n", path, reason ? reason : "limit");
        break;
    case ENGINE_VERDICT_ERROR:
        printf("%s: ERROR (%s)\n", path, reason ? reason : "error");
        break;
    }
}

/* The root object's name: the file's base name. */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

/* What the broker's HRESULT means for a line of output. */
static const char *broker_error(HRESULT hr)
{
    switch (hr) {
    case AMSI_E_TIMEOUT:
        return "the broker did not answer in time";
    case AMSI_E_UNAVAILABLE:
        return "no broker at the socket";
    case AMSI_E_BUSY:
        return "the broker is busy";
    case AMSI_E_TOO_LARGE:
        return "larger than the broker accepts";
    case AMSI_E_OUTOFMEMORY:
        return "out of memory";
    case AMSI_E_INVALIDARG:
        return "the broker refused the request";
    default:
        return "the broker failed the request";
    }
}

/* Scans through the broker and reports the reply the way a local scan is reported. */
static void scan_broker(app *a, const char *path, const void *data, size_t len, const char *name)
{
    AMSI_RESULT r;
    AMSI_SCAN_INFO info;
    HRESULT hr = AmsiScanBufferEx(a->amsi, data, len, name, NULL, 0, &r, &info);
    if (info.status == AMSI_PROTO_STATUS_THROTTLED && (hr == AMSI_E_THROTTLED || hr == AMSI_S_OK)) {
        /* Declined by the broker's rate limit: not scanned, not a verdict on the input (with
         * ratelimit.action = block the result is blocked-by-admin, shown as amsi_result). */
        a->error = true;
        if (a->json) {
            fputs("{\"path\": ", stdout);
            json_string(stdout, path);
            printf(", \"verdict\": \"throttled\", \"amsi_result\": %d, \"rules\": [], "
                   "\"object\": null, \"reason\": \"retry after %u ms\"}\n",
                   (int)r, info.retry_after_ms);
        } else {
            printf("%s: THROTTLED (retry after %u ms)\n", path, info.retry_after_ms);
        }
        return;
    }
    if (hr != AMSI_S_OK) {
        report(a, path, NULL, broker_error(hr));
        return;
    }
    engine_match m = {.rule = info.rule, .object = info.object, .view = ENGINE_VIEW_RAW};
    engine_result res = {.verdict = ENGINE_VERDICT_CLEAN, .amsi_result = (int)r};
    if (AmsiResultIsMalware(r)) {
        res.verdict = ENGINE_VERDICT_DETECTED;
        res.match_count = 1;
        res.matches = &m;
        res.object = info.object;
    } else if (info.status == AMSI_PROTO_STATUS_LIMIT) {
        res.verdict =
            strncmp(info.reason, "Limits.", 7) == 0 ? ENGINE_VERDICT_LIMIT : ENGINE_VERDICT_ERROR;
        res.reason = info.reason;
    }
    report(a, path, &res, NULL);
}

static void scan_bytes(app *a, const char *path, const void *data, size_t len, const char *name)
{
    if (!a->local) {
        scan_broker(a, path, data, len, name);
        return;
    }
    engine_result res;
    int rc = engine_scan_buffer(a->rules, a->scratch, &a->cfg.engine, data, len, name, 0, &res);
    if (rc != 0) {
        report(a, path, NULL, engine_strerror(rc));
        return;
    }
    report(a, path, &res, NULL);
    engine_result_cleanup(&res);
}

/* Reads all of a descriptor into a malloc'd buffer. Returns 0 or an errno value. */
static int slurp(int fd, unsigned char **out, size_t *len)
{
    size_t cap = 65536, n = 0;
    unsigned char *buf = malloc(cap);
    if (buf == NULL)
        return ENOMEM;
    for (;;) {
        if (n == cap) {
            unsigned char *p = realloc(buf, cap * 2);
            if (p == NULL) {
                free(buf);
                return ENOMEM;
            }
            buf = p;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            free(buf);
            return e;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    *out = buf;
    *len = n;
    return 0;
}

static void scan_path(app *a, const char *path, bool top);

static void scan_dir(app *a, const char *path)
{
    struct dirent **ents;
    int n = scandir(path, &ents, NULL, alphasort);
    if (n < 0) {
        report(a, path, NULL, strerror(errno));
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0) {
            size_t len = strlen(path) + strlen(name) + 2;
            char *child = malloc(len);
            if (child == NULL) {
                report(a, path, NULL, strerror(ENOMEM));
            } else {
                snprintf(child, len, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/",
                         name);
                scan_path(a, child, false);
                free(child);
            }
        }
        free(ents[i]);
    }
    free(ents);
}

static void scan_path(app *a, const char *path, bool top)
{
    if (strcmp(path, "-") == 0 && top) {
        unsigned char *buf = NULL;
        size_t len = 0;
        int e = slurp(STDIN_FILENO, &buf, &len);
        if (e != 0) {
            report(a, "stdin", NULL, strerror(e));
            return;
        }
        scan_bytes(a, "stdin", buf, len, "stdin");
        free(buf);
        return;
    }
    struct stat st;
    if ((top ? stat(path, &st) : lstat(path, &st)) != 0) {
        report(a, path, NULL, strerror(errno));
        return;
    }
    if (S_ISDIR(st.st_mode)) {
        if (a->recursive)
            scan_dir(a, path);
        else
            report(a, path, NULL, "is a directory (use -r)");
        return;
    }
    if (!S_ISREG(st.st_mode)) {
        if (top)
            report(a, path, NULL, "not a regular file");
        return; /* symlinks and special files met while recursing are skipped */
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        report(a, path, NULL, strerror(errno));
        return;
    }
    if (st.st_size == 0) {
        scan_bytes(a, path, "", 0, base_name(path));
    } else {
        void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            report(a, path, NULL, strerror(errno));
        } else {
            scan_bytes(a, path, map, (size_t)st.st_size, base_name(path));
            munmap(map, (size_t)st.st_size);
        }
    }
    close(fd);
}

/* Compiles the configured rules, printing the diagnostic on failure. */
static int load_rules(app *a)
{
    size_t n;
    const char *const *paths = broker_config_rule_paths(&a->cfg, &n);
    engine_compile_options opts = {.cache_dir = a->cfg.cache_dir};
    engine_diag diag;
    int rc = engine_rules_compile_files(paths, n, &opts, &a->rules, &diag);
    if (rc != 0) {
        fprintf(stderr, "amsiscan: %s\n", diag.text[0] ? diag.text : engine_strerror(rc));
        return rc;
    }
    return 0;
}

int main(int argc, char **argv)
{
    enum { OPT_LOCAL = 256, OPT_CONFIG, OPT_RULES, OPT_SET, OPT_JSON, OPT_CHECK, OPT_SOCKET };
    static const struct option long_opts[] = {
        {"local", no_argument, NULL, OPT_LOCAL},
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"rules", required_argument, NULL, OPT_RULES},
        {"set", required_argument, NULL, OPT_SET},
        {"json", no_argument, NULL, OPT_JSON},
        {"recursive", no_argument, NULL, 'r'},
        {"check-rules", no_argument, NULL, OPT_CHECK},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    app a = {0};
    char err[512];
    broker_config_init(&a.cfg);
    const char *config = NULL, *socket_path = NULL;
    char **rules = calloc((size_t)argc, sizeof(char *));
    char **sets = calloc((size_t)argc, sizeof(char *));
    size_t nrules = 0, nsets = 0;
    bool check = false;
    int status = EXIT_ERROR;
    if (rules == NULL || sets == NULL) {
        fprintf(stderr, "amsiscan: out of memory\n");
        goto out;
    }
    int opt;
    while ((opt = getopt_long(argc, argv, "rh", long_opts, NULL)) != -1) {
        switch (opt) {
        case OPT_LOCAL:
            a.local = true;
            break;
        case OPT_SOCKET:
            socket_path = optarg;
            break;
        case OPT_CONFIG:
            config = optarg;
            break;
        case OPT_RULES:
            rules[nrules++] = optarg;
            break;
        case OPT_SET:
            sets[nsets++] = optarg;
            break;
        case OPT_JSON:
            a.json = true;
            break;
        case 'r':
            a.recursive = true;
            break;
        case OPT_CHECK:
            check = true;
            break;
        case 'h':
            usage(stdout);
            status = EXIT_CLEAN;
            goto out;
        default:
            usage(stderr);
            goto out;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "amsiscan: nothing to scan (give PATH... or -)\n");
        usage(stderr);
        goto out;
    }
    if (config && broker_config_load(&a.cfg, config, err, sizeof(err)) != 0) {
        fprintf(stderr, "amsiscan: %s\n", err);
        goto out;
    }
    for (size_t i = 0; i < nsets; i++) {
        if (broker_config_set(&a.cfg, sets[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "amsiscan: --set %s\n", err);
            goto out;
        }
    }
    if (check) {
        /* --check-rules: the operands are the rule paths. */
        engine_diag diag;
        engine_compile_options opts = {.cache_dir = NULL};
        int rc = engine_rules_compile_files((const char *const *)argv + optind,
                                            (size_t)(argc - optind), &opts, &a.rules, &diag);
        if (rc != 0) {
            fprintf(stderr, "%s\n", diag.text[0] ? diag.text : engine_strerror(rc));
            goto out;
        }
        printf("%zu rules OK\n", engine_rules_count(a.rules));
        status = EXIT_CLEAN;
        goto out;
    }
    if (nrules > 0) {
        char value[8192] = "";
        size_t used = 0;
        for (size_t i = 0; i < nrules; i++) {
            int w = snprintf(value + used, sizeof(value) - used, "%s%s", i ? "," : "", rules[i]);
            if (w < 0 || (size_t)w >= sizeof(value) - used) {
                fprintf(stderr, "amsiscan: too many --rules\n");
                goto out;
            }
            used += (size_t)w;
        }
        if (broker_config_set_key(&a.cfg, "engine", "rules", value, err, sizeof(err)) != 0) {
            fprintf(stderr, "amsiscan: out of memory\n");
            goto out;
        }
    }
    if (!a.local) {
        /* The broker's socket: --socket, else $AMSI_BROKER_SOCKET, else the configuration's. */
        const char *env = getenv("AMSI_BROKER_SOCKET");
        if (socket_path == NULL && (env == NULL || *env == '\0'))
            socket_path = a.cfg.broker.socket;
        if (socket_path != NULL && setenv("AMSI_BROKER_SOCKET", socket_path, 1) != 0) {
            fprintf(stderr, "amsiscan: out of memory\n");
            goto out;
        }
        if (nrules > 0)
            fprintf(stderr, "amsiscan: --rules applies to --local scans only; the broker scans "
                            "with its own rules\n");
        if (AmsiInitializeA("amsiscan", &a.amsi) != AMSI_S_OK) {
            fprintf(stderr, "amsiscan: cannot initialise the AMSI client\n");
            goto out;
        }
        for (int i = optind; i < argc; i++)
            scan_path(&a, argv[i], true);
        status = a.detected ? EXIT_DETECTED : a.error ? EXIT_ERROR : EXIT_CLEAN;
        goto out;
    }
    if (engine_check_platform() != 0) {
        fprintf(stderr, "amsiscan: %s (Hyperscan %s needs SSSE3 or better)\n",
                engine_strerror(ENGINE_EPLATFORM), engine_hyperscan_version());
        goto out;
    }
    engine_global_init(); /* before any thread: libgsf asks for it */
    if (load_rules(&a) != 0)
        goto out;
    int rc = engine_scratch_create(a.rules, &a.scratch);
    if (rc != 0) {
        fprintf(stderr, "amsiscan: %s\n", engine_strerror(rc));
        goto out;
    }
    for (int i = optind; i < argc; i++)
        scan_path(&a, argv[i], true);
    status = a.detected ? EXIT_DETECTED : a.error ? EXIT_ERROR : EXIT_CLEAN;
out:
    fflush(stdout);
    AmsiUninitialize(a.amsi);
    engine_scratch_destroy(a.scratch);
    engine_rules_unref(a.rules);
    broker_config_cleanup(&a.cfg);
    free(rules);
    free(sets);
    return status;
}
