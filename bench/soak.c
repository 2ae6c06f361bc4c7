/*
 * soak.c - a long run of mixed traffic through libamsi against amsid, watching the broker's
 * descriptors and memory. Not part of CI: it takes minutes and asserts on resources, not on time.
 *
 *   soak [--amsid PATH] [--rules PATH] | [--socket PATH [--control PATH]]
 *        [--requests N] [--clients N] [--sample-every N] [--warmup N] [--rss-growth PCT]
 *
 * Without --socket it starts its own amsid (as broker_bench does) and stops it with SIGTERM at
 * the end; with --socket it drives a broker that is already running, found through the socket's
 * peer credentials (SO_PEERCRED), so /proc/<pid> can be read.
 *
 * Client processes (--clients, one thread each) share --requests libamsi calls. Each runs the
 * same schedule over its own request numbers j:
 *   j % 1000 == 999      2 MiB of script through AmsiScanBuffer (libamsi sends a sealed memfd;
 *                        the broker scans it on its pool), clean and detected in turn
 *   j % 100 in 10..14    a session: AmsiOpenSession (a new connection), five scans, the 3rd and
 *                        4th carrying the two halves of a signature (the session must find it),
 *                        AmsiCloseSession
 *   j % 20 == 7          AmsiNotifyOperation
 *   j % 500 == 250       AmsiScanString (UTF-16) with the AMSI test sample
 *   j % 10 == 3          a small buffer carrying a signature
 *   otherwise            a clean buffer of 64 B .. 16 KiB; one in four repeats earlier content
 *                        (verdict cache hits), the others are unique
 *   j % 10000 == 5000    the context is closed and opened again (its pooled connection with it)
 *   j % 2000 == 1000     one misbehaving raw connection, of a kind that rotates: garbage, short
 *                        header, bad version, lying lengths, disconnect after sending (inline
 *                        and 2 MiB memfd), memfd flag without a descriptor, unsealed memfd, extra
 *                        descriptors, too large, unknown session, a pipeline, a client that never
 *                        reads, connect-and-close
 * Every verdict is checked (clean must be clean, a signature must be detected) and every call
 * must succeed.
 *
 * The broker's open descriptors (/proc/<pid>/fd) and VmRSS (/proc/<pid>/status) are sampled at
 * the start (once the broker is idle), every --sample-every requests and at the end. The run
 * fails (exit 1) when the descriptors at the end (all clients gone) exceed those at the start,
 * when the RSS after the warm-up grew by more than --rss-growth percent, when a call failed or a
 * verdict was wrong, or when the broker died or did not stop cleanly. Exit 2: bad options or no
 * broker to test.
 *
 * The RSS judged is VmRSS less RssShmem: a 2 MiB memfd being scanned is mapped into the broker
 * and counts in VmRSS as shared memory for as long as the scan runs, so VmRSS alone jumps by up
 * to 2 MiB per pool thread depending on the moment of the sample. Both are printed.
 */
#include "amsi.h"
#include "amsi_protocol.h"
#include "bench_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS  64
#define MAX_SAMPLES  1024
#define SMALL_MAX    16384
#define SMALL_BLOCKS 64
#define LARGE_SIZE   (2u << 20)
#define STAMP_PREFIX "# soak "
#define STAMP_DIGITS 16
#define RAW_WAIT_MS  5000

/* Set by SIGINT/SIGTERM; the clients finish their current call and stop. The only global. */
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* The misbehaving raw connections, in the order they rotate. */
#define MISBEHAVIOUR_MAP(X)                                                                        \
    X(GARBAGE, "garbage frame")                                                                    \
    X(SHORT_HEADER, "short header")                                                                \
    X(BAD_VERSION, "unknown version")                                                              \
    X(LENGTH_LIE, "lengths longer than the frame")                                                 \
    X(DISCONNECT_INLINE, "disconnect after sending (inline)")                                      \
    X(DISCONNECT_MEMFD, "disconnect after sending (2 MiB memfd)")                                  \
    X(MEMFD_NO_FD, "memfd flag, no descriptor")                                                    \
    X(UNSEALED_MEMFD, "unsealed memfd")                                                            \
    X(EXTRA_FDS, "three descriptors with a request")                                               \
    X(TOO_LARGE, "memfd above max_request_size")                                                   \
    X(UNKNOWN_SESSION, "unknown session id")                                                       \
    X(PIPELINE, "16 pipelined requests")                                                           \
    X(NO_READ, "sends and never reads")                                                            \
    X(CONNECT_CLOSE, "connect and close")

#define MB_ENUM(name, text) MB_##name,
typedef enum misbehaviour { MISBEHAVIOUR_MAP(MB_ENUM) MB_KINDS } misbehaviour;
#undef MB_ENUM
#define MB_TEXT(name, text) text,
static const char *const mb_text[] = {MISBEHAVIOUR_MAP(MB_TEXT)};
#undef MB_TEXT

/* One client's counts, in shared memory. */
typedef struct client_stats {
    uint64_t calls, errors, wrong;
    uint64_t clean, detected, notify, strings, large, sessions, session_hits, reinit;
    uint64_t mb[MB_KINDS], mb_unexpected[MB_KINDS];
    char first_error[200];
    char first_mb[200];
} client_stats;

typedef struct soak_share {
    atomic_uint_fast64_t done;
    client_stats c[MAX_CLIENTS];
} soak_share;

typedef struct soak_opts {
    const char *amsid, *rules, *socket, *control;
    uint64_t requests, sample_every, warmup, seed;
    unsigned clients;
    double rss_growth;
} soak_opts;

typedef struct sample {
    char label[24];
    uint64_t requests;
    long fds, rss_kb, shmem_kb, hwm_kb, threads;
    double t;
} sample;

/* What a client process works with. */
typedef struct client {
    const soak_opts *o;
    client_stats *st;
    unsigned idx;
    const char *socket;
    uint64_t rng;
    HAMSICONTEXT ctx;
    uint8_t *blocks[SMALL_BLOCKS]; /* clean script, SMALL_MAX bytes each */
    uint8_t *scratch;              /* SMALL_MAX: a block with a signature planted */
    uint8_t *large;                /* LARGE_SIZE of clean script */
    HAMSISESSION session;
} client;

static const WCHAR content_name[] = {'s', 'o', 'a', 'k', '.', 'p', 's', '1', 0};

/* Strings each of which the bundled rules detect on its own. */
static const char *const signatures[] = {
    "AMSI Test Sample: 7e72c3ce-861b-4339-8740-0ac1484c1386",
    "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    "Invoke-Mimikatz -DumpCreds",
    "sekurlsa::logonpasswords",
};
/* A signature split over two script blocks of a session. */
#define SPLIT_HEAD "\n$r = Invoke-Mimi"
#define SPLIT_TAIL "katz -DumpCreds\n"

/* ------------------------------------------------------------------------------------------ */
/* Content.                                                                                    */

static const char *const lines[] = {
    "$items = Get-ChildItem -Path 'C:\\ProgramData\\Contoso' -Recurse -Filter '*.log'\n",
    "foreach ($item in $items) { Write-Verbose \"Processing $($item.Name)\" }\n",
    "$report = @{ Name = 'Inventory'; Retries = 3; Enabled = $true }\n",
    "if (Test-Path -Path $path) { Remove-Item -Path $path -Force }\n",
    "Get-Service -Name 'Contoso*' | Where-Object { $_.Status -eq 'Running' }\n",
    "$total += ($files | Measure-Object -Property Length -Sum).Sum\n",
    "Set-ItemProperty -Path 'HKCU:\\Software\\Fabrikam\\Sync' -Name 'Last' -Value 42\n",
    "$rows | Sort-Object -Property Size -Descending | Export-Csv -Path 'out.csv'\n",
    "# Rotate the archive folders and keep the newest seven\n",
    "$cfg = Get-Content -Path '.\\settings.json' -Raw | ConvertFrom-Json\n",
    "Write-Host (\"{0} of {1}\" -f $done, $total) -ForegroundColor Green\n",
    "function Get-QuotaReport { param([string]$Name) return $Name }\n",
    "$blob = 'U29tZSBoYXJtbGVzcyBjb25maWd1cmF0aW9uIGRhdGEgZm9yIHRoZSBzeW5jIGpvYg=='\n",
};

/* Fills buf (len bytes) with clean script after a stamp line. Can't fail. */
static void fill_script(uint64_t *rng, uint8_t *buf, size_t len)
{
    size_t w = (size_t)snprintf((char *)buf, len, "%s%0*d\n", STAMP_PREFIX, STAMP_DIGITS, 0);
    while (w < len) {
        const char *l = lines[bench_rng_next(rng) % (sizeof(lines) / sizeof(lines[0]))];
        size_t n = strlen(l);
        if (n > len - w)
            n = len - w;
        memcpy(buf + w, l, n);
        w += n;
    }
    buf[len - 1] = '\n';
}

static void stamp(uint8_t *buf, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t *p = buf + strlen(STAMP_PREFIX);
    for (int i = STAMP_DIGITS - 1; i >= 0; i--) {
        p[i] = (uint8_t)hex[v & 0xF];
        v >>= 4;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Checks.                                                                                     */

static void note_error(client *c, const char *what, HRESULT hr)
{
    c->st->errors++;
    if (c->st->first_error[0] == '\0')
        snprintf(c->st->first_error, sizeof(c->st->first_error), "%s: HRESULT 0x%08x", what,
                 (unsigned)hr);
}

/* Counts a call and checks its verdict. want_detected < 0: any verdict is right. */
static void check(client *c, const char *what, HRESULT hr, AMSI_RESULT r, int want_detected)
{
    c->st->calls++;
    if (hr != AMSI_S_OK) {
        note_error(c, what, hr);
        return;
    }
    bool det = AmsiResultIsMalware(r);
    if (want_detected >= 0 && det != (want_detected > 0)) {
        c->st->wrong++;
        if (c->st->first_error[0] == '\0')
            snprintf(c->st->first_error, sizeof(c->st->first_error),
                     "%s: expected %s, got AMSI_RESULT %d", what,
                     want_detected ? "detected" : "clean", (int)r);
    }
    if (det)
        c->st->detected++;
    else
        c->st->clean++;
}

/* ------------------------------------------------------------------------------------------ */
/* Misbehaving raw connections.                                                                */

static int raw_connect(const char *path)
{
    return bench_unix_connect(path, SOCK_SEQPACKET);
}

/* Encodes a request header (+ names) into head. Returns its length or 0. */
static size_t raw_head(uint8_t *head, size_t cap, uint16_t type, uint32_t flags, uint64_t id,
                       uint64_t session, uint64_t content_len)
{
    amsi_proto_request req = {.type = type,
                              .flags = flags,
                              .request_id = id,
                              .session_id = session,
                              .app = "soak-raw",
                              .app_len = 8,
                              .name = "raw.ps1",
                              .name_len = 7,
                              .content_len = content_len};
    size_t len;
    return amsi_proto_encode_request(&req, head, cap, &len) == 0 ? len : 0;
}

/* Sends head + content with up to nfds descriptors. Returns 0 or -1. */
static int raw_send(int fd, const void *head, size_t hlen, const void *content, size_t clen,
                    const int *fds, unsigned nfds)
{
    struct iovec iov[2] = {{(void *)(uintptr_t)head, hlen}, {(void *)(uintptr_t)content, clen}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = clen ? 2 : 1};
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctl;
    if (nfds > 0) {
        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    return sendmsg(fd, &msg, MSG_NOSIGNAL) >= 0 ? 0 : -1;
}

/*
 * Waits for the next frame. Returns 1 with *status (and *id) for a reply, 0 at end of file, -1
 * on a timeout, an error or an undecodable frame.
 */
static int raw_reply(int fd, uint32_t *status, uint64_t *id)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, RAW_WAIT_MS) != 1)
        return -1;
    uint8_t buf[AMSI_PROTO_MAX_REPLY];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0)
        return 0;
    if (n < 0)
        return errno == ECONNRESET ? 0 : -1;
    amsi_proto_reply rep;
    if (amsi_proto_decode_reply(buf, (size_t)n, &rep) != 0)
        return -1;
    *status = rep.status;
    if (id)
        *id = rep.request_id;
    return 1;
}

/* True when the next frame is a reply with this status, and (when eof) then the end of file. */
static bool expect(int fd, uint32_t want, bool eof)
{
    uint32_t st;
    if (raw_reply(fd, &st, NULL) != 1 || st != want)
        return false;
    return !eof || raw_reply(fd, &st, NULL) == 0;
}

/* A memfd of len bytes (content from src when not NULL, else a hole), sealed when asked. */
static int make_memfd(const void *src, size_t len, bool seal)
{
    int fd = memfd_create("soak", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    bool ok = src ? write(fd, src, len) == (ssize_t)len : ftruncate(fd, (off_t)len) == 0;
    if (ok && seal)
        ok = fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) == 0;
    if (!ok) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Runs one misbehaving connection. Returns true when the broker answered as it should. */
static bool misbehave(client *c, misbehaviour kind)
{
    int fd = raw_connect(c->socket);
    if (fd < 0)
        return false;
    uint8_t head[AMSI_PROTO_REQ_HEADER + 64];
    const uint8_t *body = c->blocks[0];
    bool ok = false;
    switch (kind) {
    case MB_GARBAGE: {
        uint8_t junk[100];
        for (size_t i = 0; i < sizeof(junk); i++)
            junk[i] = (uint8_t)bench_rng_next(&c->rng);
        ok = raw_send(fd, junk, sizeof(junk), NULL, 0, NULL, 0) == 0 &&
             expect(fd, AMSI_PROTO_STATUS_BAD_REQUEST, true);
        break;
    }
    case MB_SHORT_HEADER: {
        size_t h = raw_head(head, sizeof(head), AMSI_PROTO_SCAN, 0, 7, 0, 0);
        ok = h && raw_send(fd, head, 20, NULL, 0, NULL, 0) == 0 &&
             expect(fd, AMSI_PROTO_STATUS_BAD_REQUEST, true);
        break;
    }
    case MB_BAD_VERSION: {
        size_t h = raw_head(head, sizeof(head), AMSI_PROTO_SCAN, 0, 7, 0, 64);
        head[4] = 99;
        ok = h && raw_send(fd, head, h, body, 64, NULL, 0) == 0 &&
             expect(fd, AMSI_PROTO_STATUS_UNSUPPORTED_VERSION, true);
        break;
    }
    case MB_LENGTH_LIE: {
        size_t h = raw_head(head, sizeof(head), AMSI_PROTO_SCAN, 0, 7, 0, 4096);
        ok = h && raw_send(fd, head, h, body, 100, NULL, 0) == 0 &&
             expect(fd, AMSI_PROTO_STATUS_BAD_REQUEST, true);
        break;
    }
    case MB_DISCONNECT_INLINE: {
        size_t h = raw_head(head, sizeof(head), AMSI_PROTO_SCAN, 0, 7, 0, SMALL_MAX);
        ok = h && raw_send(fd, head, h, body, SMALL_MAX, NULL, 0) == 0;
        break; /* closed at once, the reply unread */
    }
    case MB_DISCONNECT_MEMFD: {
        int m = make_memfd(c->large, LARGE_SIZE, true);
        size_t h =
            raw_head(head, sizeof(head), AMSI_PROTO_SCAN, AMSI_PROTO_F_MEMFD, 7, 0, LARGE_SIZE);
        ok = m >= 0 && h && raw_send(fd, head, h, NULL, 0, &m, 1) == 0;
        if (m >= 0)
            close(m);
        break;
    }
    case MB_MEMFD_NO_FD: {
        size_t h = raw_head(head, sizeof(head), AMSI_PROTO_SCAN, AMSI_PROTO_F_MEMFD, 7, 0, 100);
        ok = h && raw_send(fd, head, h, NULL, 0, NULL, 0) == 0 &&
             expect(fd, AMSI_PROTO_STATUS_BAD_REQUEST, false);
        break;
    }
    case MB_UNSEALED_MEMFD: {
        int m = make_memfd(body, 4096, false);
        size_t h = raw_head(head, sizeof(head), AMSI_PROTO_SCAN, AMSI_PROTO_F_MEMFD, 7, 0, 4096);
        ok = m >= 0 && h && raw_send(fd, head, h, NULL, 0, &m, 1) == 0 &&
             expect(fd, AMSI_PROTO_STATUS_BAD_REQUEST, false);
        if (m >= 0)
            close(m);
        break;
    }
    case MB_EXTRA_FDS: {
        int fds[3] = {make_memfd(body, 64, true), make_memfd(body, 64, false),
                      make_memfd(NULL, 1 << 20, true)};
        size_t h = raw_head(head, sizeof(head), AMSI_PROTO_SCAN, 0, 7, 0, 512);
        ok = fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0 && h &&
             raw_send(fd, head, h, body, 512, fds, 3) == 0 &&
             expect(fd, AMSI_PROTO_STATUS_OK, false);
        for (int i = 0; i < 3; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        break;
    }
    case MB_TOO_LARGE: {
        uint64_t big = 300ull << 20; /* a sparse 300 MiB: above the default 256 MiB maximum */
        int m = make_memfd(NULL, (size_t)big, true);
        size_t h = raw_head(head, sizeof(head), AMSI_PROTO_SCAN, AMSI_PROTO_F_MEMFD, 7, 0, big);
        ok = m >= 0 && h && raw_send(fd, head, h, NULL, 0, &m, 1) == 0 &&
             expect(fd, AMSI_PROTO_STATUS_TOO_LARGE, false);
        if (m >= 0)
            close(m);
        break;
    }
    case MB_UNKNOWN_SESSION: {
        size_t h = raw_head(head, sizeof(head), AMSI_PROTO_SCAN, 0, 7, 12345, 64);
        ok = h && raw_send(fd, head, h, body, 64, NULL, 0) == 0 &&
             expect(fd, AMSI_PROTO_STATUS_NO_SESSION, false);
        break;
    }
    case MB_PIPELINE: {
        ok = true;
        for (uint64_t id = 1; id <= 16 && ok; id++) {
            size_t h = raw_head(head, sizeof(head), AMSI_PROTO_SCAN, 0, id, 0, 1024);
            ok = h && raw_send(fd, head, h, body, 1024, NULL, 0) == 0;
        }
        uint64_t seen = 0;
        for (int i = 0; i < 16 && ok; i++) {
            uint32_t st;
            uint64_t id = 0;
            ok = raw_reply(fd, &st, &id) == 1 && st == AMSI_PROTO_STATUS_OK && id >= 1 &&
                 id <= 16 && !(seen & (1ull << id));
            seen |= 1ull << id;
        }
        break;
    }
    case MB_NO_READ: {
        /* PINGs until the socket takes no more; the broker must stop reading, not block. */
        size_t h = raw_head(head, sizeof(head), AMSI_PROTO_PING, 0, 1, 0, 0);
        unsigned sent = 0;
        for (; h && sent < 5000; sent++) {
            if (send(fd, head, h, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                break;
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            if (poll(&p, 1, 200) != 1)
                break; /* full for 200 ms: the broker stopped reading us */
        }
        ok = sent > 0;
        break;
    }
    case MB_CONNECT_CLOSE:
    case MB_KINDS:
        ok = true;
        break;
    }
    close(fd);
    return ok;
}

/* ------------------------------------------------------------------------------------------ */
/* A client process.                                                                           */

/* A small clean buffer of 64 B .. 16 KiB: unique, or (one in four) repeated content. */
static size_t small_clean(client *c, uint64_t j, const uint8_t **out)
{
    size_t size = (size_t)64 << (bench_rng_next(&c->rng) % 9);
    size += (size_t)(bench_rng_next(&c->rng) % size);
    unsigned b = (unsigned)(bench_rng_next(&c->rng) % SMALL_BLOCKS);
    bool repeat = bench_rng_next(&c->rng) % 4 == 0;
    if (repeat)
        size = ((size_t)64 << (b % 9)) + 37u * b; /* the same bytes every time */
    if (size > SMALL_MAX)
        size = SMALL_MAX;
    stamp(c->blocks[b], repeat ? b : (uint64_t)(c->idx + 1) << 48 | j);
    *out = c->blocks[b];
    return size;
}

/* A small buffer with one signature planted in it (in c->scratch). */
static size_t small_detected(client *c, uint64_t j, const char *sig)
{
    const uint8_t *src;
    size_t size = small_clean(c, j, &src);
    size_t sl = strlen(sig);
    if (size < sl + 64)
        size = sl + 64;
    memcpy(c->scratch, src, size);
    size_t at = 30 + (size_t)(bench_rng_next(&c->rng) % (size - sl - 32));
    c->scratch[at - 1] = '\n';
    memcpy(c->scratch + at, sig, sl);
    c->scratch[at + sl] = '\n';
    return size;
}

static void do_large(client *c, uint64_t j)
{
    bool detect = (j / 1000) % 2 == 1;
    static const char sig[] = "\nInvoke-Mimikatz -DumpCreds\n";
    size_t at = 64 + (size_t)(bench_rng_next(&c->rng) % (LARGE_SIZE - 128));
    uint8_t saved[sizeof(sig)];
    stamp(c->large, (uint64_t)(c->idx + 1) << 48 | j);
    if (detect) {
        memcpy(saved, c->large + at, sizeof(sig) - 1);
        memcpy(c->large + at, sig, sizeof(sig) - 1);
    }
    AMSI_RESULT r;
    HRESULT hr = AmsiScanBuffer(c->ctx, c->large, LARGE_SIZE, content_name, NULL, &r);
    check(c, detect ? "2 MiB memfd (detected)" : "2 MiB memfd (clean)", hr, r, detect);
    if (detect)
        memcpy(c->large + at, saved, sizeof(sig) - 1);
    c->st->large++;
}

/* One step of the session that spans j % 100 == 10 .. 14. */
static void do_session_step(client *c, uint64_t j)
{
    unsigned step = (unsigned)(j % 100) - 10;
    AMSI_RESULT r;
    HRESULT hr;
    if (step == 0) {
        hr = AmsiOpenSession(c->ctx, &c->session);
        if (hr != AMSI_S_OK) {
            note_error(c, "AmsiOpenSession", hr);
            c->session = NULL;
        }
        c->st->sessions++;
    }
    if (c->session == NULL)
        return;
    const uint8_t *src;
    size_t size = small_clean(c, j, &src);
    if (size < 256)
        size = 256;
    memcpy(c->scratch, src, size);
    int want = 0;
    if (step == 2) {
        /* The first half ends this block. */
        memcpy(c->scratch + size - strlen(SPLIT_HEAD), SPLIT_HEAD, strlen(SPLIT_HEAD));
    } else if (step == 3) {
        /* The second half starts the next one: only the session's stream sees the whole. */
        memcpy(c->scratch, SPLIT_TAIL, strlen(SPLIT_TAIL));
        want = 1;
    } else if (step == 4) {
        want = -1; /* a session that matched may keep saying so */
    }
    hr = AmsiScanBuffer(c->ctx, c->scratch, (ULONG)size, content_name, c->session, &r);
    check(c, step == 3 ? "session (split signature)" : "session", hr, r, want);
    if (step == 3 && hr == AMSI_S_OK && AmsiResultIsMalware(r))
        c->st->session_hits++;
    if (step == 4) {
        AmsiCloseSession(c->ctx, c->session);
        c->session = NULL;
    }
}

static void do_request(client *c, uint64_t j)
{
    AMSI_RESULT r;
    HRESULT hr;
    uint64_t m100 = j % 100;
    if (j % 1000 == 999) {
        do_large(c, j);
    } else if (m100 >= 10 && m100 <= 14) {
        do_session_step(c, j);
    } else if (j % 20 == 7) {
        const uint8_t *buf;
        size_t size = small_clean(c, j, &buf);
        hr = AmsiNotifyOperation(c->ctx, (PVOID)(uintptr_t)buf, (ULONG)size, content_name, &r);
        check(c, "AmsiNotifyOperation", hr, r, 0);
        c->st->notify++;
    } else if (j % 500 == 250) {
        static const char text[] = "Write-Output 'AMSI Test Sample: "
                                   "7e72c3ce-861b-4339-8740-0ac1484c1386'";
        WCHAR wide[sizeof(text)];
        for (size_t i = 0; i < sizeof(text); i++)
            wide[i] = (WCHAR)(unsigned char)text[i];
        hr = AmsiScanString(c->ctx, wide, content_name, NULL, &r);
        check(c, "AmsiScanString (UTF-16 test sample)", hr, r, 1);
        c->st->strings++;
    } else if (j % 10 == 3) {
        const char *sig = signatures[(j / 10) % (sizeof(signatures) / sizeof(signatures[0]))];
        size_t size = small_detected(c, j, sig);
        hr = AmsiScanBuffer(c->ctx, c->scratch, (ULONG)size, content_name, NULL, &r);
        check(c, sig, hr, r, 1);
    } else {
        const uint8_t *buf;
        size_t size = small_clean(c, j, &buf);
        hr = AmsiScanBuffer(c->ctx, (PVOID)(uintptr_t)buf, (ULONG)size, content_name, NULL, &r);
        check(c, "clean buffer", hr, r, 0);
    }
}

/* A client process: its share of the requests. Never returns. */
static void client_main(const soak_opts *o, soak_share *sh, unsigned idx, const char *sock,
                        uint64_t nreq)
{
    client c = {.o = o, .st = &sh->c[idx], .idx = idx, .socket = sock};
    c.rng = o->seed * 0x100000001B3ull + idx;
    for (unsigned i = 0; i < SMALL_BLOCKS; i++)
        if ((c.blocks[i] = malloc(SMALL_MAX)) != NULL)
            fill_script(&c.rng, c.blocks[i], SMALL_MAX);
    c.scratch = malloc(SMALL_MAX);
    c.large = malloc(LARGE_SIZE);
    bool have_blocks = true;
    for (unsigned i = 0; i < SMALL_BLOCKS; i++)
        have_blocks = have_blocks && c.blocks[i] != NULL;
    if (c.scratch == NULL || c.large == NULL || !have_blocks) {
        snprintf(c.st->first_error, sizeof(c.st->first_error), "out of memory");
        _exit(1);
    }
    fill_script(&c.rng, c.large, LARGE_SIZE);
    HRESULT hr = AmsiInitializeA("soak", &c.ctx);
    if (hr != AMSI_S_OK) {
        note_error(&c, "AmsiInitializeA", hr);
        _exit(1);
    }
    for (uint64_t j = 0; j < nreq && !g_stop; j++) {
        if (j % 2000 == 1000) {
            misbehaviour kind = (misbehaviour)((j / 2000 + idx) % MB_KINDS);
            c.st->mb[kind]++;
            if (!misbehave(&c, kind)) {
                c.st->mb_unexpected[kind]++;
                if (c.st->first_mb[0] == '\0')
                    snprintf(c.st->first_mb, sizeof(c.st->first_mb), "%s (request %llu)",
                             mb_text[kind], (unsigned long long)j);
            }
        }
        if (j % 10000 == 5000 && c.session == NULL) {
            AmsiUninitialize(c.ctx);
            hr = AmsiInitializeA("soak", &c.ctx);
            if (hr != AMSI_S_OK) {
                note_error(&c, "AmsiInitializeA", hr);
                _exit(1);
            }
            c.st->reinit++;
        }
        do_request(&c, j);
        atomic_fetch_add_explicit(&sh->done, 1, memory_order_relaxed);
    }
    if (c.session)
        AmsiCloseSession(c.ctx, c.session);
    AmsiUninitialize(c.ctx);
    _exit(0);
}

/* ------------------------------------------------------------------------------------------ */
/* The broker: started here or found through its socket.                                       */

/* The pid behind a socket (SO_PEERCRED of a connection), or -1. */
static pid_t socket_pid(const char *path)
{
    int fd = raw_connect(path);
    if (fd < 0)
        return -1;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    pid_t pid = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.pid : -1;
    close(fd);
    return pid;
}

static pid_t start_amsid(const soak_opts *o, const char *sock, const char *ctl, const char *log)
{
    static const char *const limits[] = {BENCH_HIGH_LIMITS_MAX, BENCH_HIGH_LIMITS_BURST,
                                         BENCH_HIGH_LIMITS_NMAX};
    bench_amsid a = {.exe = o->amsid,
                     .rules = o->rules,
                     .socket = sock,
                     .control = ctl,
                     .log = log,
                     .sets = limits,
                     .nsets = 3};
    return bench_amsid_start(&a, &g_stop);
}

/* ------------------------------------------------------------------------------------------ */
/* Samples.                                                                                    */

static long count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/*
 * Writes "fd -> target" lines for the descriptors of pid into out (for the report when
 * descriptors leaked). Can't fail; an unreadable directory gives "".
 */
static void list_fds(pid_t pid, char *out, size_t cap)
{
    char path[64];
    size_t w = 0;
    out[0] = '\0';
    snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && w + 300 < cap) {
        if (e->d_name[0] == '.')
            continue;
        char target[256];
        ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        w += (size_t)snprintf(out + w, cap - w, "%s -> %s\n", e->d_name, target);
    }
    closedir(d);
}

/* Prints the lines of after that are not in before. */
static void print_new_lines(const char *before, const char *after)
{
    const char *p = after;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) + 1 : strlen(p);
        bool found = false;
        for (const char *q = before; *q && !found;) {
            const char *qn = strchr(q, '\n');
            size_t ql = qn ? (size_t)(qn - q) + 1 : strlen(q);
            found = ql == len && memcmp(p, q, len) == 0;
            q += ql;
        }
        if (!found)
            printf("    new: %.*s", (int)len, p);
        p += len;
    }
}

/* Fills VmRSS, RssShmem, VmHWM (kB) and Threads from /proc/<pid>/status. Returns 0 or -1. */
static int read_status(pid_t pid, sample *s)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        sscanf(line, "VmRSS: %ld", &s->rss_kb);
        sscanf(line, "VmHWM: %ld", &s->hwm_kb);
        sscanf(line, "RssShmem: %ld", &s->shmem_kb);
        sscanf(line, "Threads: %ld", &s->threads);
    }
    fclose(f);
    return 0;
}

static int take_sample(pid_t pid, const char *label, uint64_t requests, uint64_t t0, sample *s)
{
    *s = (sample){.requests = requests, .t = (double)(bench_now_ns() - t0) / 1e9};
    snprintf(s->label, sizeof(s->label), "%s", label);
    s->fds = count_fds(pid);
    if (s->fds < 0 || read_status(pid, s) != 0)
        return -1;
    return 0;
}

static void print_sample(const sample *s)
{
    printf("  %-8s %10llu  %5ld  %9ld  %9ld  %9ld  %9ld  %7ld  %8.1f\n", s->label,
           (unsigned long long)s->requests, s->fds, s->rss_kb, s->shmem_kb, s->rss_kb - s->shmem_kb,
           s->hwm_kb, s->threads, s->t);
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------------ */
/* Options and main.                                                                           */

static void usage(FILE *f)
{
    fputs("usage: soak [--amsid PATH] [--rules PATH] | [--socket PATH [--control PATH]]\n"
          "            [--requests N] [--clients N] [--sample-every N] [--warmup N]\n"
          "            [--rss-growth PCT] [--seed N]\n"
          "  --amsid PATH       the broker to start (default: the build's broker/amsid)\n"
          "  --rules PATH       its rules (default: the bundled default.yar)\n"
          "  --socket PATH      drive a running broker instead (found via SO_PEERCRED)\n"
          "  --control PATH     its control socket, for its statistics (optional)\n"
          "  --requests N       libamsi calls in all (default 1000000)\n"
          "  --clients N        client processes (default 4)\n"
          "  --sample-every N   sample the broker every N requests (default 100000)\n"
          "  --warmup N         the RSS baseline is the first sample at or after N requests\n"
          "                     (default: --sample-every)\n"
          "  --rss-growth PCT   allowed VmRSS growth after the warm-up (default 20)\n"
          "  --seed N           content seed (default 1)\n",
          f);
}

/* Returns 0, 1 (help printed) or -1 (bad option). */
static int parse_opts(int argc, char **argv, soak_opts *o, char *amsid_buf, size_t cap)
{
    static const struct option opts[] = {{"amsid", required_argument, NULL, 'a'},
                                         {"rules", required_argument, NULL, 'r'},
                                         {"socket", required_argument, NULL, 's'},
                                         {"control", required_argument, NULL, 'C'},
                                         {"requests", required_argument, NULL, 'n'},
                                         {"clients", required_argument, NULL, 'c'},
                                         {"sample-every", required_argument, NULL, 'e'},
                                         {"warmup", required_argument, NULL, 'w'},
                                         {"rss-growth", required_argument, NULL, 'g'},
                                         {"seed", required_argument, NULL, 'S'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    *o = (soak_opts){
        .requests = 1000000, .clients = 4, .sample_every = 100000, .rss_growth = 20, .seed = 1};
    bool have_warmup = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        uint64_t v = 0;
        char *end;
        switch (opt) {
        case 'a':
            o->amsid = optarg;
            break;
        case 'r':
            o->rules = optarg;
            break;
        case 's':
            o->socket = optarg;
            break;
        case 'C':
            o->control = optarg;
            break;
        case 'n':
            if (!bench_parse_u64(optarg, 1, 1000000000000ull, &o->requests))
                goto bad;
            break;
        case 'c':
            if (!bench_parse_u64(optarg, 1, MAX_CLIENTS, &v))
                goto bad;
            o->clients = (unsigned)v;
            break;
        case 'e':
            if (!bench_parse_u64(optarg, 1000, UINT64_MAX, &o->sample_every))
                goto bad;
            break;
        case 'w':
            if (!bench_parse_u64(optarg, 0, UINT64_MAX, &o->warmup))
                goto bad;
            have_warmup = true;
            break;
        case 'g':
            o->rss_growth = strtod(optarg, &end);
            if (*end != '\0' || !(o->rss_growth >= 0))
                goto bad;
            break;
        case 'S':
            if (!bench_parse_u64(optarg, 0, UINT64_MAX, &o->seed))
                goto bad;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc)
        goto bad;
    if (!have_warmup)
        o->warmup = o->sample_every;
    if (o->socket && strlen(o->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        goto bad;
    if (o->control && strlen(o->control) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        goto bad;
    if (o->amsid == NULL)
        o->amsid = bench_default_amsid(amsid_buf, cap);
    if (o->rules == NULL)
        o->rules = bench_default_rules();
    return 0;
bad:
    fprintf(stderr, "soak: bad option value or argument\n");
    usage(stderr);
    return -1;
}

/* Adds up the clients' counts. */
static void total_stats(const soak_share *sh, unsigned n, client_stats *t)
{
    memset(t, 0, sizeof(*t));
    for (unsigned i = 0; i < n; i++) {
        const client_stats *c = &sh->c[i];
        t->calls += c->calls;
        t->errors += c->errors;
        t->wrong += c->wrong;
        t->clean += c->clean;
        t->detected += c->detected;
        t->notify += c->notify;
        t->strings += c->strings;
        t->large += c->large;
        t->sessions += c->sessions;
        t->session_hits += c->session_hits;
        t->reinit += c->reinit;
        for (int k = 0; k < MB_KINDS; k++) {
            t->mb[k] += c->mb[k];
            t->mb_unexpected[k] += c->mb_unexpected[k];
        }
        if (t->first_error[0] == '\0' && c->first_error[0])
            memcpy(t->first_error, c->first_error, sizeof(t->first_error));
        if (t->first_mb[0] == '\0' && c->first_mb[0])
            memcpy(t->first_mb, c->first_mb, sizeof(t->first_mb));
    }
}

/*
 * The run itself, against the broker pid serving sock (ctl: its control socket, or ""; own: this
 * program started it): the clients, the samples and the checks. Returns 0 (every check passed)
 * or 1.
 */
static int soak_run(const soak_opts *o, pid_t pid, bool own, const char *sock, const char *ctl)
{
    /* Let the broker finish starting (control socket up) and close the probe connections. */
    char pong[64];
    for (int i = 0; own && i < 300 && bench_control(ctl, "ping", pong, sizeof(pong)) != 0; i++)
        bench_sleep_ms(10);
    long last = -2;
    for (int i = 0, same = 0; i < 60 && same < 4; i++) {
        long n = count_fds(pid);
        same = n == last ? same + 1 : 0;
        last = n;
        bench_sleep_ms(50);
    }

    soak_share *sh =
        mmap(NULL, sizeof(soak_share), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        fprintf(stderr, "soak: out of memory\n");
        return 1;
    }
    atomic_init(&sh->done, 0);

    printf("soak: %llu requests from %u client processes against amsid pid %ld (%s)\n",
           (unsigned long long)o->requests, o->clients, (long)pid,
           own ? "started here" : "already running");
    printf("  %-8s %10s  %5s  %9s  %9s  %9s  %9s  %7s  %8s\n", "sample", "requests", "fds",
           "VmRSS kB", "Shmem kB", "RSS-Shmem", "VmHWM kB", "threads", "time s");
    static sample samples[MAX_SAMPLES];
    unsigned ns = 0;
    uint64_t t0 = bench_now_ns();
    int fail = 0;
    if (take_sample(pid, "start", 0, t0, &samples[ns]) != 0) {
        fprintf(stderr, "soak: cannot read /proc/%ld\n", (long)pid);
        munmap(sh, sizeof(soak_share));
        return 1;
    }
    print_sample(&samples[ns++]);
    static char fds_before[16384], fds_after[16384];
    list_fds(pid, fds_before, sizeof(fds_before));

    pid_t kids[MAX_CLIENTS];
    unsigned started = 0;
    fflush(NULL);
    for (unsigned i = 0; i < o->clients; i++) {
        uint64_t share = o->requests / o->clients + (i < o->requests % o->clients ? 1 : 0);
        pid_t k = fork();
        if (k < 0)
            break;
        if (k == 0)
            client_main(o, sh, i, sock, share);
        kids[started++] = k;
    }
    uint64_t next_mark = o->sample_every;
    unsigned running = started;
    bool broker_died = false;
    while (running > 0) {
        bench_sleep_ms(20);
        uint64_t done = atomic_load_explicit(&sh->done, memory_order_relaxed);
        if (done >= next_mark && ns < MAX_SAMPLES - 1) {
            char label[24];
            snprintf(label, sizeof(label), "%lluk", (unsigned long long)(next_mark / 1000));
            if (take_sample(pid, label, done, t0, &samples[ns]) == 0)
                print_sample(&samples[ns++]);
            while (next_mark <= done)
                next_mark += o->sample_every;
        }
        for (unsigned i = 0; i < started; i++) {
            int status;
            if (kids[i] > 0 && waitpid(kids[i], &status, WNOHANG) == kids[i]) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                    fprintf(stderr, "soak: client %u exited abnormally (status %d)\n", i, status);
                    fail = 1;
                }
                kids[i] = -1;
                running--;
            }
        }
        if (!broker_died && kill(pid, 0) != 0) {
            /* Nothing left to measure: the clients stop after their current call. */
            broker_died = true;
            for (unsigned i = 0; i < started; i++)
                if (kids[i] > 0)
                    kill(kids[i], SIGTERM);
        }
    }
    double elapsed = (double)(bench_now_ns() - t0) / 1e9;
    uint64_t done = atomic_load_explicit(&sh->done, memory_order_relaxed);

    /* The end: every client is gone; give the broker a moment to notice the closed sockets. */
    long end_fds = -1;
    for (int i = 0; i < 250 && !broker_died; i++) {
        end_fds = count_fds(pid);
        if (end_fds >= 0 && end_fds <= samples[0].fds)
            break;
        bench_sleep_ms(20);
    }
    if (!broker_died && take_sample(pid, "end", done, t0, &samples[ns]) == 0)
        print_sample(&samples[ns++]);

    client_stats t;
    total_stats(sh, started, &t);
    printf("\n%llu requests in %.1f s (%.0f/s): %llu clean, %llu detected; %llu notifications, "
           "%llu UTF-16 strings, %llu x 2 MiB memfd, %llu sessions, %llu context re-opens\n",
           (unsigned long long)done, elapsed, (double)done / elapsed, (unsigned long long)t.clean,
           (unsigned long long)t.detected, (unsigned long long)t.notify,
           (unsigned long long)t.strings, (unsigned long long)t.large,
           (unsigned long long)t.sessions, (unsigned long long)t.reinit);
    printf("misbehaving connections (kind: count, answered as expected):\n");
    for (int k = 0; k < MB_KINDS; k++)
        printf("  %-40s %6llu  %6llu\n", mb_text[k], (unsigned long long)t.mb[k],
               (unsigned long long)(t.mb[k] - t.mb_unexpected[k]));

    printf("\nchecks:\n");
    bool ok_broker = !broker_died;
    printf("  broker alive to the end                                   %s\n",
           ok_broker ? "PASS" : "FAIL");
    long max_fds = 0;
    for (unsigned i = 0; i < ns; i++)
        if (samples[i].fds > max_fds)
            max_fds = samples[i].fds;
    bool ok_fds = ok_broker && end_fds >= 0 && end_fds <= samples[0].fds;
    printf("  descriptors: start %ld, end %ld (max while running %ld)     %s\n", samples[0].fds,
           end_fds, max_fds, ok_fds ? "PASS" : "FAIL");
    if (!ok_fds && ok_broker) {
        list_fds(pid, fds_after, sizeof(fds_after));
        print_new_lines(fds_before, fds_after);
    }
    const sample *base = NULL;
    for (unsigned i = 0; i < ns; i++)
        if (samples[i].requests >= o->warmup && strcmp(samples[i].label, "start") != 0) {
            base = &samples[i];
            break;
        }
    long max_rss = 0;
    for (unsigned i = 0; base && i < ns; i++)
        if (&samples[i] > base && samples[i].rss_kb - samples[i].shmem_kb > max_rss)
            max_rss = samples[i].rss_kb - samples[i].shmem_kb;
    bool ok_rss = true;
    if (base == NULL || max_rss == 0) {
        printf("  RSS: too few samples after the warm-up to judge            -\n");
    } else {
        long base_rss = base->rss_kb - base->shmem_kb;
        double growth = 100.0 * (double)(max_rss - base_rss) / (double)base_rss;
        ok_rss = growth <= o->rss_growth;
        printf("  RSS (VmRSS - RssShmem): %ld kB after warm-up (%s), max later %ld kB "
               "(%+.1f %%, limit +%.0f %%)  %s\n",
               base_rss, base->label, max_rss, growth, o->rss_growth, ok_rss ? "PASS" : "FAIL");
    }
    bool ok_calls = t.errors == 0 && t.wrong == 0 && done == o->requests;
    printf("  calls: %llu failed, %llu wrong verdicts, %llu of %llu done          %s\n",
           (unsigned long long)t.errors, (unsigned long long)t.wrong, (unsigned long long)done,
           (unsigned long long)o->requests, ok_calls ? "PASS" : "FAIL");
    if (t.first_error[0])
        printf("    first: %s\n", t.first_error);
    uint64_t split = t.sessions;
    printf("  session stream found the split signature in %llu of %llu sessions\n",
           (unsigned long long)t.session_hits, (unsigned long long)split);
    uint64_t mb_bad = 0;
    for (int k = 0; k < MB_KINDS; k++)
        mb_bad += t.mb_unexpected[k];
    printf("  misbehaving connections answered as expected: %llu unexpected  %s\n",
           (unsigned long long)mb_bad, mb_bad ? "WARN" : "PASS");
    if (t.first_mb[0])
        printf("    first: %s\n", t.first_mb);
    if (!ok_broker || !ok_fds || !ok_rss || !ok_calls)
        fail = 1;
    if (ctl[0]) {
        char stats[4096];
        if (bench_control(ctl, "stats", stats, sizeof(stats)) == 0) {
            printf("\namsid stats:\n  ");
            for (const char *p = stats; *p; p++) {
                putchar(*p == '\n' ? ',' : *p);
                if (*p == '\n')
                    putchar(' ');
            }
            printf("\n");
        }
    }
    munmap(sh, sizeof(soak_share));
    return fail;
}

int main(int argc, char **argv)
{
    soak_opts o;
    char amsid_buf[PATH_MAX];
    int prc = parse_opts(argc, argv, &o, amsid_buf, sizeof(amsid_buf));
    if (prc != 0)
        return prc > 0 ? 0 : 2;

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char tmpdir[64] = "", sock[108], ctl[108], log[128];
    pid_t own = -1, pid;
    if (o.socket) {
        snprintf(sock, sizeof(sock), "%s", o.socket);
        snprintf(ctl, sizeof(ctl), "%s", o.control ? o.control : "");
        pid = socket_pid(sock);
        if (pid <= 0) {
            fprintf(stderr, "soak: no broker answers on %s\n", sock);
            return 2;
        }
    } else {
        if (access(o.amsid, X_OK) != 0 || access(o.rules, R_OK) != 0) {
            fprintf(stderr, "soak: cannot run %s with rules %s (use --amsid, --rules)\n", o.amsid,
                    o.rules);
            return 2;
        }
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/amsi-soak.XXXXXX");
        if (mkdtemp(tmpdir) == NULL) {
            fprintf(stderr, "soak: mkdtemp: %s\n", strerror(errno));
            return 2;
        }
        snprintf(sock, sizeof(sock), "%s/scan.sock", tmpdir);
        snprintf(ctl, sizeof(ctl), "%s/control.sock", tmpdir);
        snprintf(log, sizeof(log), "%s/amsid.log", tmpdir);
        own = pid = start_amsid(&o, sock, ctl, log);
        if (pid < 0) {
            fprintf(stderr, "soak: amsid did not start\n");
            unlink(log);
            rmdir(tmpdir);
            return 2;
        }
    }
    /* A generous timeout: a 2 MiB scan on a busy 2-core machine is slow, not a hang. */
    int fail = 2;
    if (setenv("AMSI_BROKER_SOCKET", sock, 1) == 0 && setenv("AMSI_TIMEOUT_MS", "30000", 1) == 0)
        fail = soak_run(&o, pid, own > 0, sock, ctl);
    if (own > 0) {
        int rc = bench_stop_process(own, 30000);
        printf("amsid stopped with status %d                               %s\n", rc,
               rc == 0 ? "PASS" : "FAIL");
        if (rc != 0) {
            bench_show_log(log);
            fail = 1;
        }
        unlink(log);
        unlink(sock);
        unlink(ctl);
        rmdir(tmpdir);
    }
    printf("soak: %s\n", fail ? "FAIL" : "PASS");
    return fail;
}
