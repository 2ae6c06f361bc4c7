/*
 * peers.c - amsibench's peers (see peers.h): the dispatch, the raw Hyperscan peer and the clamd
 * peer. The libyara peer is in peer_yara.c.
 */
#include "peers.h"

#include "bench_util.h"
#include "rulesub.h"

#include <hs.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLAMD_EXE        "/usr/sbin/clamd"
#define CLAMD_START_MS   60000
#define CLAMD_TIMEOUT_MS 30000
#define CLAMD_CHUNK      (256u << 10)

struct bench_peer {
    bench_peer_kind kind;
    char describe[256];
    /* hyperscan */
    rulesub rules;
    hs_database_t *db;
    hs_scratch_t *proto;      /* cloned for every worker */
    unsigned *pattern_string; /* pattern id -> global string index */
    unsigned *rule_base;      /* rule -> index of its first string */
    unsigned nstrings;        /* all strings of all rules */
    /* yara */
    bench__yara *yara;
    /* clamd */
    char dir[160], socket[192];
    pid_t clamd;
};

struct bench_peer_worker {
    bench_peer *peer;
    hs_scratch_t *scratch;
    uint32_t *counts; /* per global string index */
    void *yara;
};

static const char *const peer_names[BENCH_PEER_KINDS] = {"hyperscan", "yara", "clamd"};

const char *bench_peer_name(bench_peer_kind kind)
{
    return kind < BENCH_PEER_KINDS ? peer_names[kind] : "?";
}

int bench_peer_parse(const char *name)
{
    for (int i = 0; i < BENCH_PEER_KINDS; i++)
        if (strcmp(name, peer_names[i]) == 0)
            return i;
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Raw Hyperscan.                                                                              */

/*
 * Compiles every string of every rule into one block-mode database. An expression Hyperscan
 * refuses is left out (and counted) so that one odd regex does not cost the whole peer.
 */
static int hs_peer_create(bench_peer *p, const char *rules, char *why, size_t cap)
{
    if (rulesub_load(&p->rules, rules) != 0) {
        snprintf(why, cap, "cannot read the rules %s", rules);
        return -1;
    }
    size_t maxpat = 0;
    for (size_t r = 0; r < p->rules.n; r++)
        maxpat += 2 * p->rules.rules[r].nstrings;
    char **exprs = calloc(maxpat + 1, sizeof(*exprs));
    unsigned *flags = calloc(maxpat + 1, sizeof(*flags)), *ids = calloc(maxpat + 1, sizeof(*ids));
    p->pattern_string = calloc(maxpat + 1, sizeof(*p->pattern_string));
    p->rule_base = calloc(p->rules.n + 1, sizeof(*p->rule_base));
    int rc = -1;
    unsigned n = 0, dropped = 0, conditions = 0;
    if (exprs == NULL || flags == NULL || ids == NULL || p->pattern_string == NULL ||
        p->rule_base == NULL) {
        snprintf(why, cap, "out of memory");
        goto out;
    }
    for (size_t r = 0; r < p->rules.n; r++) {
        const rulesub_rule *rule = &p->rules.rules[r];
        p->rule_base[r] = p->nstrings;
        conditions += rule->cond_ok;
        for (unsigned s = 0; s < rule->nstrings; s++, p->nstrings++)
            for (int wide = 0; wide < 2; wide++) {
                const rulesub_string *str = &rule->strings[s];
                if ((wide && !(str->wide && str->kind == RULESUB_TEXT)) ||
                    (!wide && !str->ascii && str->kind == RULESUB_TEXT))
                    continue;
                size_t len = 8 * str->len + 64;
                if ((exprs[n] = malloc(len)) == NULL ||
                    rulesub_to_hs(str, wide, exprs[n], len, &flags[n]) != 0) {
                    free(exprs[n]);
                    exprs[n] = NULL;
                    dropped++;
                    continue;
                }
                flags[n] |= HS_FLAG_ALLOWEMPTY;
                ids[n] = n;
                p->pattern_string[n] = p->nstrings;
                n++;
            }
    }
    for (;;) {
        hs_compile_error_t *err = NULL;
        if (hs_compile_multi((const char *const *)exprs, flags, ids, n, HS_MODE_BLOCK, NULL, &p->db,
                             &err) == HS_SUCCESS)
            break;
        int at = err ? err->expression : -1;
        if (at < 0 || (unsigned)at >= n) {
            snprintf(why, cap, "hs_compile_multi: %s", err ? err->message : "failed");
            hs_free_compile_error(err);
            goto out;
        }
        hs_free_compile_error(err);
        free(exprs[at]);
        memmove(&exprs[at], &exprs[at + 1], (n - (unsigned)at - 1) * sizeof(*exprs));
        memmove(&flags[at], &flags[at + 1], (n - (unsigned)at - 1) * sizeof(*flags));
        memmove(&ids[at], &ids[at + 1], (n - (unsigned)at - 1) * sizeof(*ids));
        n--;
        dropped++;
    }
    if (hs_alloc_scratch(p->db, &p->proto) != HS_SUCCESS) {
        snprintf(why, cap, "hs_alloc_scratch failed");
        goto out;
    }
    snprintf(p->describe, sizeof(p->describe),
             "hs_scan of %u patterns from %zu rules (%u dropped); conditions of %u rules evaluated "
             "on the matches",
             n, p->rules.n, dropped, conditions);
    rc = 0;
out:
    for (unsigned i = 0; exprs && i < n; i++)
        free(exprs[i]);
    free(exprs);
    free(flags);
    free(ids);
    return rc;
}

static int hs_on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned fl,
                       void *ctx)
{
    bench_peer_worker *w = ctx;
    (void)from;
    (void)to;
    (void)fl;
    w->counts[w->peer->pattern_string[id]]++;
    return 0;
}

static int hs_peer_scan(bench_peer_worker *w, const void *data, size_t len, bool *detected)
{
    bench_peer *p = w->peer;
    memset(w->counts, 0, p->nstrings * sizeof(*w->counts));
    if (hs_scan(p->db, data, (unsigned)len, 0, w->scratch, hs_on_match, w) != HS_SUCCESS)
        return -1;
    *detected = false;
    for (size_t r = 0; r < p->rules.n && !*detected; r++) {
        const uint32_t *c = w->counts + p->rule_base[r];
        bool any = false;
        for (unsigned s = 0; s < p->rules.rules[r].nstrings && !any; s++)
            any = c[s] > 0;
        *detected = any && rulesub_eval(&p->rules.rules[r], c);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* clamd.                                                                                      */

/* Writes the rules that have a ClamAV form into path. Returns how many, or -1. */
static int write_ldb(const rulesub *rs, const char *path, bool with_hex)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    int n = 0;
    char *line = malloc(1u << 16);
    for (size_t r = 0; line && r < rs->n; r++) {
        bool hex = false;
        for (unsigned s = 0; s < rs->rules[r].nstrings; s++)
            hex = hex || rs->rules[r].strings[s].kind == RULESUB_HEX;
        if ((hex && !with_hex) || rulesub_to_ldb(&rs->rules[r], line, 1u << 16) != 0)
            continue;
        fprintf(f, "%s\n", line);
        n++;
    }
    free(line);
    return fclose(f) == 0 && n > 0 ? n : -1;
}

/* A stream connection to clamd with send and receive timeouts, or -1. */
static int clamd_connect(const char *path)
{
    int fd = bench_unix_connect(path, SOCK_STREAM);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = CLAMD_TIMEOUT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

static bool send_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads clamd's answer (up to a NUL or the end) into out. Returns its length or -1. */
static ssize_t read_reply(int fd, char *out, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = recv(fd, out + n, cap - 1 - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (memchr(out, '\0', n))
            break;
    }
    out[n] = '\0';
    return n > 0 ? (ssize_t)n : -1;
}

static int clamd_scan(bench_peer *p, const void *data, size_t len, bool *detected)
{
    int fd = clamd_connect(p->socket);
    if (fd < 0)
        return -1;
    bool ok = send_all(fd, "zINSTREAM", 10);
    const uint8_t *b = data;
    for (size_t off = 0; ok && off < len; off += CLAMD_CHUNK) {
        size_t n = len - off < CLAMD_CHUNK ? len - off : CLAMD_CHUNK;
        uint8_t head[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
        ok = send_all(fd, head, 4) && send_all(fd, b + off, n);
    }
    static const uint8_t end[4] = {0};
    char reply[512];
    ok = ok && send_all(fd, end, 4) && read_reply(fd, reply, sizeof(reply)) > 0;
    close(fd);
    if (!ok)
        return -1;
    size_t rl = strlen(reply);
    while (rl > 0 && (reply[rl - 1] == '\n' || reply[rl - 1] == '\0'))
        reply[--rl] = '\0';
    if (rl >= 5 && strcmp(reply + rl - 5, "FOUND") == 0) {
        *detected = true;
        return 0;
    }
    *detected = false;
    return rl >= 2 && strcmp(reply + rl - 2, "OK") == 0 ? 0 : -1;
}

/* Starts clamd on the configuration in p->dir and waits for PONG. Returns 0 or -1. */
static int clamd_start(bench_peer *p, const char *conf, const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        signal(SIGINT, SIG_IGN);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        char arg[256];
        snprintf(arg, sizeof(arg), "--config-file=%s", conf);
        execl(CLAMD_EXE, CLAMD_EXE, arg, "--foreground", (char *)NULL);
        _exit(127);
    }
    p->clamd = pid;
    uint64_t give_up = bench_now_ns() + (uint64_t)CLAMD_START_MS * 1000000u;
    while (bench_now_ns() < give_up) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            p->clamd = -1;
            return -1;
        }
        int fd = clamd_connect(p->socket);
        if (fd >= 0) {
            char reply[64];
            bool pong = send_all(fd, "zPING", 6) && read_reply(fd, reply, sizeof(reply)) > 0 &&
                        strncmp(reply, "PONG", 4) == 0;
            close(fd);
            if (pong)
                return 0;
        }
        bench_sleep_ms(50);
    }
    bench_stop_process(pid, 5000);
    p->clamd = -1;
    return -1;
}

static int clamd_peer_create(bench_peer *p, const char *rules, const char *workdir, char *why,
                             size_t cap)
{
    if (access(CLAMD_EXE, X_OK) != 0) {
        snprintf(why, cap, "%s not installed (apt-get install clamav-daemon)", CLAMD_EXE);
        return 1;
    }
    if (rulesub_load(&p->rules, rules) != 0) {
        snprintf(why, cap, "cannot read the rules %s", rules);
        return -1;
    }
    char db[224], conf[224], log[224], ldb[256];
    snprintf(p->dir, sizeof(p->dir), "%s/clamd", workdir);
    snprintf(p->socket, sizeof(p->socket), "%s/clamd.sock", p->dir);
    snprintf(db, sizeof(db), "%s/db", p->dir);
    snprintf(conf, sizeof(conf), "%s/clamd.conf", p->dir);
    snprintf(log, sizeof(log), "%s/clamd.log", p->dir);
    snprintf(ldb, sizeof(ldb), "%s/bench.ldb", db);
    if ((mkdir(p->dir, 0700) != 0 && errno != EEXIST) ||
        (mkdir(db, 0700) != 0 && errno != EEXIST)) {
        snprintf(why, cap, "cannot create %s: %s", db, strerror(errno));
        return -1;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    FILE *f = fopen(conf, "w");
    if (f == NULL) {
        snprintf(why, cap, "cannot write %s: %s", conf, strerror(errno));
        return -1;
    }
    /* Limits as high as the broker's, archives and OLE2 on, as the mixed workload needs. */
    fprintf(f,
            "LocalSocket %s\nDatabaseDirectory %s\nTemporaryDirectory %s\nLogFile %s\n"
            "Foreground yes\nMaxThreads %ld\nMaxConnectionQueueLength 200\n"
            "StreamMaxLength 256M\nMaxScanSize 256M\nMaxFileSize 256M\nScanArchive yes\n"
            "ScanOLE2 yes\nBytecode no\nSelfCheck 0\nConcurrentDatabaseReload no\n",
            p->socket, db, p->dir, log, cores > 0 ? 2 * cores : 4);
    if (fclose(f) != 0) {
        snprintf(why, cap, "cannot write %s", conf);
        return -1;
    }
    /* With the hex strings first; if clamd refuses them, once more with text strings only. */
    for (int with_hex = 1; with_hex >= 0; with_hex--) {
        int n = write_ldb(&p->rules, ldb, with_hex);
        if (n < 0) {
            snprintf(why, cap, "cannot write %s", ldb);
            return -1;
        }
        if (clamd_start(p, conf, log) == 0) {
            snprintf(p->describe, sizeof(p->describe),
                     "clamd (pid %ld, %ld threads) with %d of %zu rules as ClamAV logical "
                     "signatures%s; INSTREAM, one connection per scan",
                     (long)p->clamd, cores > 0 ? 2 * cores : 4, n, p->rules.n,
                     with_hex ? "" : " (text strings only)");
            return 0;
        }
    }
    snprintf(why, cap, "clamd did not start (log: %s)", log);
    bench_show_log(log);
    return -1;
}

/* Removes the clamd directory (what this program wrote there, and clamd's leftovers). */
static void clamd_remove(bench_peer *p)
{
    static const char *const names[] = {"db/bench.ldb", "clamd.conf", "clamd.sock", "clamd.log"};
    char path[256];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", p->dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/db", p->dir);
    rmdir(path);
    rmdir(p->dir);
}

/* ------------------------------------------------------------------------------------------ */
/* Dispatch.                                                                                   */

int bench_peer_create(bench_peer_kind kind, const char *rules, const char *workdir,
                      bench_peer **out, char *why, size_t cap)
{
    *out = NULL;
    bench_peer *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    p->kind = kind;
    p->clamd = -1;
    int rc;
    switch (kind) {
    case BENCH_PEER_HYPERSCAN:
        rc = hs_peer_create(p, rules, why, cap);
        break;
    case BENCH_PEER_YARA:
        rc = bench__yara_create(rules, &p->yara, why, cap);
        snprintf(p->describe, sizeof(p->describe),
                 "libyara %s in-process, one YR_SCANNER per thread, full semantics", rules);
        break;
    case BENCH_PEER_CLAMD:
        rc = clamd_peer_create(p, rules, workdir, why, cap);
        break;
    default:
        snprintf(why, cap, "unknown peer");
        rc = -1;
        break;
    }
    if (rc != 0) {
        bench_peer_destroy(p);
        return rc;
    }
    *out = p;
    return 0;
}

const char *bench_peer_describe(const bench_peer *p)
{
    return p->describe;
}

pid_t bench_peer_server(const bench_peer *p)
{
    return p->clamd;
}

void bench_peer_destroy(bench_peer *p)
{
    if (p == NULL)
        return;
    if (p->clamd > 0)
        bench_stop_process(p->clamd, 10000);
    if (p->dir[0])
        clamd_remove(p);
    hs_free_scratch(p->proto);
    hs_free_database(p->db);
    bench__yara_destroy(p->yara);
    rulesub_cleanup(&p->rules);
    free(p->pattern_string);
    free(p->rule_base);
    free(p);
}

int bench_peer_worker_create(bench_peer *p, bench_peer_worker **out)
{
    bench_peer_worker *w = calloc(1, sizeof(*w));
    *out = NULL;
    if (w == NULL)
        return -1;
    w->peer = p;
    int rc = 0;
    if (p->kind == BENCH_PEER_HYPERSCAN) {
        w->counts = calloc(p->nstrings + 1, sizeof(*w->counts));
        rc = w->counts && hs_clone_scratch(p->proto, &w->scratch) == HS_SUCCESS ? 0 : -1;
    } else if (p->kind == BENCH_PEER_YARA) {
        rc = (w->yara = bench__yara_worker(p->yara)) != NULL ? 0 : -1;
    }
    if (rc != 0) {
        bench_peer_worker_destroy(w);
        return -1;
    }
    *out = w;
    return 0;
}

void bench_peer_worker_destroy(bench_peer_worker *w)
{
    if (w == NULL)
        return;
    hs_free_scratch(w->scratch);
    bench__yara_worker_destroy(w->yara);
    free(w->counts);
    free(w);
}

int bench_peer_scan(bench_peer_worker *w, const void *data, size_t len, bool *detected)
{
    switch (w->peer->kind) {
    case BENCH_PEER_HYPERSCAN:
        return hs_peer_scan(w, data, len, detected);
    case BENCH_PEER_YARA:
        return bench__yara_scan(w->yara, data, len, detected);
    case BENCH_PEER_CLAMD:
        return clamd_scan(w->peer, data, len, detected);
    default:
        return -1;
    }
}
