/*
 * server.c - amsid's scan server: W I/O-and-scan threads (W = cores unless configured), each owning
 * an epoll set, the connections it accepted, and an engine scratch.
 *
 * Every thread has the listening socket in its epoll set with EPOLLEXCLUSIVE, so the kernel wakes
 * one thread per incoming connection and the connections spread over the threads; a connection
 * then lives on the thread that accepted it, and nothing about it is shared. A request is read,
 * decided and answered by that thread, run to completion: at most two system calls for a small
 * request (recvmsg, send), no handoff (DESIGN.md §3 explains why a handoff costs more than the
 * scan). Identity is read once, at accept.
 *
 * A reply the socket cannot take right now (a client that does not read) is kept on the
 * connection, reading from that connection stops until it drains, and a client that lets more
 * than MAX_PENDING replies pile up is disconnected: it never blocks a thread or grows memory.
 *
 * Rule sets are swapped under a mutex that only reloads and the first request after a reload
 * take: each thread keeps a reference to the set it scans with and compares a generation number
 * (one relaxed atomic load) before each request.
 */
#include "broker/server.h"

#include "amsi_protocol.h"
#include "amsi_spin.h"
#include "etw/etw.h"
#include "ratelimit/ratelimit.h"
#include "ratelimit/report.h"
#include "identity.h"
#include "ring.h"
#include "verdicts.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#if defined(__linux__)
#include <sched.h>
#endif

#define MAX_PENDING  64
#define STALL_MS     5000 /* a client that reads none of its replies for this long is dropped */
#define POOL_IDLE_MS 1000 /* idle this long, a pool thread trims its scratch */
#define MAX_EVENTS   64
#define LAT_SAMPLES  4096 /* stats report percentiles over the most recent requests */

typedef struct session {
    uint64_t id;
    engine_stream *stream;
    uint64_t bytes;
    uint64_t scans;
    uint64_t last_used_ms;
} session;

typedef struct pending_reply {
    struct pending_reply *next;
    size_t len;
    uint8_t frame[];
} pending_reply;

typedef struct conn {
    int fd;
    uint64_t conn_id;         /* for trace events: unique for the broker's lifetime */
    uint64_t requests;        /* frames read */
    const char *close_reason; /* for ClientDisconnect: set by whoever decides to close */
    atomic_int refs;          /* the owner thread's, plus one per pool job and handed-back reply */
    atomic_bool dead; /* closed by its owner; the fd stays open (shut down) until refs drop */
    struct worker *owner;
    broker_identity id;
    bool exempt;          /* on the exemption list: never declined */
    ratelimit_key rl_key; /* the caller, as the limits table knows it */
    ratelimit_handle rl;  /* its entry there (not used when exempt or limits are off) */
    session *sessions;
    unsigned nsessions;
    uint64_t next_session;
    pending_reply *out_head, *out_tail;
    unsigned npending;
    bool reading;        /* EPOLLIN armed */
    uint64_t stalled_ms; /* when replies started waiting for the client to read; 0 = none */
    struct conn *prev, *next;
} conn;

typedef struct worker {
    struct broker_server *server;
    pthread_t thread;
    bool started;
    int epfd;
    int wakefd; /* eventfd: stop */
    engine_scratch *scratch;
    engine_rules *rules;
    uint64_t generation;
    EVP_MD_CTX *digest;
    amsi_spin spin; /* whether to poll for the next frame before sleeping (amsi_spin.h) */
    int reserve_fd; /* kept open to be closed when descriptors run out (accept_all) */
    uint8_t *rx;
    size_t rx_cap;
    conn *conns;
    pthread_mutex_t done_lock; /* handed-back replies from the pool (the socket was full) */
    struct done_reply *done;
} worker;

/* A reply the pool could not send at once, handed back to the connection's owner. */
typedef struct done_reply {
    struct done_reply *next;
    conn *c;
    size_t len;
    uint8_t frame[];
} done_reply;

/*
 * A request as it was received, for its reply and its trace events. Every frame the broker reads
 * gets a scan id at once and ends in exactly one ScanDecision (DESIGN.md §7), emitted by the only
 * functions that answer: answer() on the connection's thread, pool_answer() on the pool.
 */
typedef struct request_info {
    uint64_t scan_id;
    uint64_t request_id;
    uint64_t session_id;
    uint64_t start_ns; /* when it was read */
    uint64_t content_len;
    const char *kind; /* buffer, string, notify, session_open, session_close, ping, malformed */
    const char *app;  /* declared application name, not NUL-terminated */
    uint32_t app_len;
    const char *name; /* content name, not NUL-terminated */
    uint32_t name_len;
} request_info;

/* A large scan handed to the pool. */
typedef struct pool_job {
    conn *c;
    request_info ri; /* app and name point into strings */
    unsigned hints;
    const uint8_t *content;
    uint64_t len;
    bool mapped;    /* content is a memfd mapping, else a malloc'd copy */
    char strings[]; /* the content name (NUL-terminated), then the app name */
} pool_job;

typedef struct pool_thread {
    struct broker_server *server;
    pthread_t thread;
    bool started;
    engine_scratch *scratch;
    engine_rules *rules;
    uint64_t generation;
    EVP_MD_CTX *digest;
} pool_thread;

struct broker_server {
    broker_config const *cfg;
    broker_settings settings;
    engine_config engine;
    char *socket_path;
    int listen_fd;
    unsigned nworkers;
    worker *workers;
    unsigned npool;
    pool_thread *pool;
    broker_ring ring;
    bool ring_ready;
    broker_verdicts *verdicts; /* NULL when cache_entries is 0 */
    ratelimit_table *limits;   /* NULL when ratelimit.enabled is 0 */
    ratelimit_report *report;  /* declined-request reports (does nothing without report.syslog) */
    uint32_t declined_result;  /* what a declined client is told (ratelimit.action) */
    char declined_reason[RATELIMIT_NCLASSES][112];
    EVP_MD *sha256;
    pthread_mutex_t rules_lock;
    engine_rules *rules;
    atomic_uint_fast64_t generation;
    atomic_bool stopping;
    bool stopped;
    atomic_uint_fast64_t next_scan_id;
    atomic_uint_fast64_t next_conn_id;
    /* statistics */
    atomic_uint_fast64_t st_connections, st_open, st_requests, st_scans, st_notify, st_detected,
        st_clean, st_limits, st_bad, st_too_large, st_busy, st_engine_errors, st_sessions,
        st_session_matches, st_bytes, st_reloads, st_cache_hits, st_declined, st_exempt, st_pooled;
    atomic_uint_fast64_t lat_next;         /* ring index of the next latency sample */
    atomic_uint_fast64_t lat[LAT_SAMPLES]; /* recent scan latencies (ns), 0 = empty */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void count(atomic_uint_fast64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void refresh_rules(broker_server *s, engine_rules **rules, uint64_t *generation);

/* Records one latency in the ring of recent samples: one atomic add and one store. */
static void record_latency(broker_server *s, uint64_t ns)
{
    uint64_t i = atomic_fetch_add_explicit(&s->lat_next, 1, memory_order_relaxed);
    atomic_store_explicit(&s->lat[i % LAT_SAMPLES], ns ? ns : 1, memory_order_relaxed);
}

/* ------------------------------------------------------------------------------------------ */
/* Replies.                                                                                    */

static void conn_arm(worker *w, conn *c)
{
    struct epoll_event ev = {.events = (c->reading ? EPOLLIN : 0u) | (c->npending ? EPOLLOUT : 0u),
                             .data.ptr = c};
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/*
 * Sends a reply frame, or keeps it for later when the socket is full. Returns false when the
 * connection must be closed (it failed, or the client stopped reading).
 */
static bool send_frame(worker *w, conn *c, const uint8_t *frame, size_t len)
{
    if (c->npending == 0) {
        for (;;) {
            ssize_t n = send(c->fd, frame, len, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n >= 0)
                return true;
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return false;
            break;
        }
    }
    if (c->npending >= MAX_PENDING)
        return false;
    pending_reply *p = malloc(sizeof(*p) + len);
    if (p == NULL)
        return false;
    p->next = NULL;
    p->len = len;
    memcpy(p->frame, frame, len);
    if (c->out_tail)
        c->out_tail->next = p;
    else
        c->out_head = p;
    c->out_tail = p;
    if (c->npending++ == 0)
        c->stalled_ms = now_ns() / 1000000u;
    c->reading = false; /* no new requests until the replies drain */
    conn_arm(w, c);
    return true;
}

/* Sends what is pending. Returns false when the connection must be closed. */
static bool flush_pending(worker *w, conn *c)
{
    while (c->out_head) {
        pending_reply *p = c->out_head;
        ssize_t n = send(c->fd, p->frame, p->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n < 0)
            return false;
        c->out_head = p->next;
        if (c->out_head == NULL)
            c->out_tail = NULL;
        c->npending--;
        free(p);
    }
    c->stalled_ms = 0;
    c->reading = true;
    conn_arm(w, c);
    return true;
}

typedef struct reply_fields {
    uint32_t status;
    uint32_t amsi_result;
    uint64_t session_id;
    uint32_t retry_after_ms; /* THROTTLED */
    const char *rule;
    const char *object;
    const char *reason;
    /* For the ScanDecision only. */
    bool scanned;           /* the content got a verdict from the engine or the cache */
    bool cached;            /* from the verdict cache */
    bool throttled;         /* declined by the rate limit */
    const uint8_t *hash;    /* SHA-256 of the content, when the cache computed it; else NULL */
    const uint8_t *content; /* the content, when there was any */
    size_t content_len;
    int engine_error; /* the engine's code when status is ENGINE_ERROR */
} reply_fields;

/*
 * Encodes a reply frame (AMSI_PROTO_MAX_REPLY bytes of room) and counts it. Returns false when
 * it cannot be encoded, which only a bug could cause.
 */
static bool encode_reply(broker_server *s, const request_info *ri, const reply_fields *f,
                         uint8_t *frame, size_t *len)
{
    amsi_proto_reply rep = {.request_id = ri->request_id,
                            .session_id = f->session_id,
                            .scan_id = ri->scan_id,
                            .status = f->status,
                            .amsi_result = f->amsi_result,
                            .retry_after_ms = f->retry_after_ms,
                            .rule = f->rule ? f->rule : "",
                            .rule_len = f->rule ? (uint32_t)strlen(f->rule) : 0,
                            .object = f->object ? f->object : "",
                            .object_len = f->object ? (uint32_t)strlen(f->object) : 0,
                            .reason = f->reason ? f->reason : "",
                            .reason_len = f->reason ? (uint32_t)strlen(f->reason) : 0};
    if (amsi_proto_encode_reply(&rep, frame, AMSI_PROTO_MAX_REPLY, len) != 0)
        return false;
    count(&s->st_requests);
    return true;
}

/* Copies s (NULL = "") into buf (cap bytes), cut to fit, NUL-terminated: snprintf without the
 * format parser, on the path of every scanned request. */
static void copy_text(char *buf, size_t cap, const char *s)
{
    size_t n = s ? strnlen(s, cap - 1) : 0;
    memcpy(buf, s ? s : "", n);
    buf[n] = '\0';
}

/* Copies a counted string of the frame into buf (cap bytes), NUL-terminated. */
static const char *terminated(const char *p, uint32_t len, char *buf, size_t cap)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    if (n)
        memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

/* ScanRequest: a frame was read (verbose; only when enabled). */
static void trace_request(const conn *c, const request_info *ri)
{
    if (!etw_enabled(ScanRequest))
        return;
    char app[AMSI_PROTO_MAX_APP + 1], name[AMSI_PROTO_MAX_NAME + 1];
    etw_ScanRequest ev = {.scan_id = ri->scan_id,
                          .session = ri->session_id,
                          .conn_id = c->conn_id,
                          .pid = (uint32_t)c->id.pid,
                          .uid = (uint32_t)c->id.uid,
                          .appname = terminated(ri->app, ri->app_len, app, sizeof(app)),
                          .contentname = terminated(ri->name, ri->name_len, name, sizeof(name)),
                          .contentsize = ri->content_len,
                          .kind = ri->kind};
    etw_emit_ScanRequest(&ev);
}

/*
 * ScanDecision: how a request ended (DESIGN.md §7). status names the outcome when it is not the
 * reply's status (CLIENT_GONE: the reply could not reach the client; DROPPED: the frame was read
 * while its connection was being closed, and never answered). Only answer(), pool_answer() and
 * conn_close() call it.
 */
static void trace_decision(broker_server *s, EVP_MD_CTX *digest, const conn *c,
                           const request_info *ri, const reply_fields *f, const char *status)
{
    if (!etw_enabled(ScanDecision))
        return;
    char app[AMSI_PROTO_MAX_APP + 1], name[AMSI_PROTO_MAX_NAME + 1];
    /* The hash the verdict cache computed, or (cache off) one for the event, on the thread's own
     * digest context. */
    uint8_t sum[32];
    const uint8_t *hash = f->hash;
    if (hash == NULL && f->content != NULL && EVP_DigestInit_ex2(digest, s->sha256, NULL) == 1 &&
        EVP_DigestUpdate(digest, f->content, f->content_len) == 1 &&
        EVP_DigestFinal_ex(digest, sum, NULL) == 1)
        hash = sum;
    etw_ScanDecision ev = {.scan_id = ri->scan_id,
                           .session = f->session_id ? f->session_id : ri->session_id,
                           .scanStatus = f->scanned,
                           .scanResult = f->amsi_result,
                           .appname = terminated(ri->app, ri->app_len, app, sizeof(app)),
                           .contentname = terminated(ri->name, ri->name_len, name, sizeof(name)),
                           .contentsize = ri->content_len,
                           .originalsize = ri->content_len,
                           .hash = hash,
                           .pid = (uint32_t)c->id.pid,
                           .uid = (uint32_t)c->id.uid,
                           .exe = c->id.exe,
                           .rule = f->rule,
                           .object = f->object,
                           .reason = f->reason,
                           .status = status ? status : amsi_proto_status_name(f->status),
                           .latency_ns = now_ns() - ri->start_ns,
                           .cached = f->cached,
                           .throttled = f->throttled,
                           .exempt = c->exempt,
                           .content = f->content,
                           .content_len = f->content ? f->content_len : 0};
    etw_emit_ScanDecision(&ev);
}

/*
 * The one way a request is answered on its connection's thread: encodes the reply, sends it (or
 * keeps it for when the socket drains), and emits the request's ScanDecision. Returns false when
 * the connection must be closed.
 */
static bool answer(worker *w, conn *c, const request_info *ri, const reply_fields *f)
{
    uint8_t frame[AMSI_PROTO_MAX_REPLY];
    size_t len;
    bool encoded = encode_reply(w->server, ri, f, frame, &len);
    bool ok = encoded && send_frame(w, c, frame, len);
    trace_decision(w->server, w->digest, c, ri, f, ok || !encoded ? NULL : "CLIENT_GONE");
    return ok;
}

/* A reply that is only a status. */
static bool reply_status(worker *w, conn *c, const request_info *ri, uint32_t status,
                         const char *reason)
{
    reply_fields f = {.status = status,
                      .amsi_result = ENGINE_AMSI_NOT_DETECTED,
                      .reason = reason ? reason : amsi_proto_status_message(status)};
    return answer(w, c, ri, &f);
}

/* ------------------------------------------------------------------------------------------ */
/* Sessions.                                                                                   */

static session *session_find(conn *c, uint64_t id)
{
    for (unsigned i = 0; i < c->nsessions; i++)
        if (c->sessions[i].id == id)
            return &c->sessions[i];
    return NULL;
}

static void session_drop(worker *w, conn *c, unsigned i)
{
    ETW_EMIT(SessionClose, .conn_id = c->conn_id, .session = c->sessions[i].id,
             .pid = (uint32_t)c->id.pid, .scans = c->sessions[i].scans,
             .bytes = c->sessions[i].bytes);
    engine_stream_close(c->sessions[i].stream, NULL, NULL);
    c->sessions[i] = c->sessions[--c->nsessions];
    atomic_fetch_sub_explicit(&w->server->st_sessions, 1, memory_order_relaxed);
}

/* Closes sessions idle for longer than session_idle_s. */
static void sessions_expire(worker *w, conn *c, uint64_t now_ms)
{
    uint64_t idle_ms = (uint64_t)w->server->settings.session_idle_s * 1000u;
    for (unsigned i = 0; i < c->nsessions;) {
        if (now_ms - c->sessions[i].last_used_ms > idle_ms)
            session_drop(w, c, i);
        else
            i++;
    }
}

static bool handle_session_open(worker *w, conn *c, const request_info *ri)
{
    broker_server *s = w->server;
    uint64_t now_ms = now_ns() / 1000000u;
    sessions_expire(w, c, now_ms);
    if (c->nsessions >= s->settings.sessions_per_conn)
        return reply_status(w, c, ri, AMSI_PROTO_STATUS_BUSY,
                            "too many sessions on this connection");
    session *ns = realloc(c->sessions, (c->nsessions + 1) * sizeof(*ns));
    if (ns == NULL)
        return reply_status(w, c, ri, AMSI_PROTO_STATUS_ENGINE_ERROR, "out of memory");
    c->sessions = ns;
    engine_stream *st = NULL;
    refresh_rules(s, &w->rules, &w->generation);
    if (engine_stream_open(w->rules, "session", &st) != 0)
        return reply_status(w, c, ri, AMSI_PROTO_STATUS_ENGINE_ERROR,
                            "cannot open a session stream");
    session *se = &c->sessions[c->nsessions++];
    *se = (session){.id = ++c->next_session, .stream = st, .last_used_ms = now_ms};
    count(&s->st_sessions);
    if (etw_enabled(SessionOpen)) {
        char app[AMSI_PROTO_MAX_APP + 1];
        ETW_EMIT(SessionOpen, .conn_id = c->conn_id, .session = se->id, .pid = (uint32_t)c->id.pid,
                 .appname = terminated(ri->app, ri->app_len, app, sizeof(app)));
    }
    reply_fields f = {.status = AMSI_PROTO_STATUS_OK,
                      .amsi_result = ENGINE_AMSI_NOT_DETECTED,
                      .session_id = se->id};
    return answer(w, c, ri, &f);
}

static bool handle_session_close(worker *w, conn *c, const request_info *ri)
{
    for (unsigned i = 0; i < c->nsessions; i++) {
        if (c->sessions[i].id == ri->session_id) {
            session_drop(w, c, i);
            reply_fields f = {.status = AMSI_PROTO_STATUS_OK,
                              .amsi_result = ENGINE_AMSI_NOT_DETECTED,
                              .session_id = ri->session_id};
            return answer(w, c, ri, &f);
        }
    }
    return reply_status(w, c, ri, AMSI_PROTO_STATUS_NO_SESSION, NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* Scans.                                                                                      */

/*
 * Takes the newest rule set if a reload happened since this thread last looked: one atomic load
 * per request, the lock only after a reload.
 */
static void refresh_rules(broker_server *s, engine_rules **rules, uint64_t *generation)
{
    uint64_t gen = atomic_load_explicit(&s->generation, memory_order_acquire);
    if (gen == *generation)
        return;
    pthread_mutex_lock(&s->rules_lock);
    engine_rules *r = engine_rules_ref(s->rules);
    gen = atomic_load_explicit(&s->generation, memory_order_relaxed);
    pthread_mutex_unlock(&s->rules_lock);
    engine_rules_unref(*rules);
    *rules = r;
    *generation = gen;
}

/* Maps a memfd's content after checking its seals and size. Returns 0 or a reply status. */
static uint32_t map_memfd(broker_server *s, int fd, uint64_t len, const uint8_t **out)
{
    int seals = fcntl(fd, F_GET_SEALS);
    int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
    struct stat st;
    if (seals < 0 || (seals & need) != need || fstat(fd, &st) != 0 || (uint64_t)st.st_size != len)
        return AMSI_PROTO_STATUS_BAD_REQUEST;
    if (len > s->settings.max_request_size)
        return AMSI_PROTO_STATUS_TOO_LARGE;
    if (len == 0) {
        *out = (const uint8_t *)"";
        return AMSI_PROTO_STATUS_OK;
    }
    void *p = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return AMSI_PROTO_STATUS_ENGINE_ERROR;
    *out = p;
    return AMSI_PROTO_STATUS_OK;
}

/* The scanning state a thread brings to a scan: its rules, scratch and digest context. */
typedef struct scan_env {
    engine_rules *rules;
    uint64_t generation;
    engine_scratch *scratch;
    EVP_MD_CTX *digest;
} scan_env;

/*
 * Scans content and fills the reply fields, answering from the verdict cache when the same
 * content was scanned with the same rule set before. The strings in *f point into *res or *hit,
 * which must live until the reply is sent (the caller cleans up *res). Counts engine errors.
 * Returns the engine's code (0 when the scan ran or the cache answered).
 */
static int scan_content(broker_server *s, const scan_env *env, const uint8_t *content, size_t len,
                        const char *name, unsigned hints, reply_fields *f, engine_result *res,
                        broker_verdict *hit, uint8_t key[32])
{
    *f = (reply_fields){.status = AMSI_PROTO_STATUS_OK,
                        .amsi_result = ENGINE_AMSI_NOT_DETECTED,
                        .content = content,
                        .content_len = len};
    unsigned key_len = 0;
    /* The key is the content's SHA-256 (also the `hash` of its ScanDecision); the hints change
     * how content is read, so they go with the generation (not the one that only spares the
     * scan a second container detection). */
    uint64_t generation = env->generation << 8 | (uint8_t)(hints & ~ENGINE_HINT_NOT_CONTAINER);
    bool keyed = s->verdicts != NULL && EVP_DigestInit_ex2(env->digest, s->sha256, NULL) == 1 &&
                 EVP_DigestUpdate(env->digest, content, len) == 1 &&
                 EVP_DigestFinal_ex(env->digest, key, &key_len) == 1 && key_len == 32;
    if (keyed)
        f->hash = key;
    if (keyed && broker_verdicts_get(s->verdicts, key, generation, hit)) {
        count(&s->st_cache_hits);
        f->scanned = true;
        f->cached = true;
        f->amsi_result = hit->amsi_result;
        f->rule = hit->rule[0] ? hit->rule : NULL;
        if (f->rule) {
            /* The cache keeps the path below the root: the root is this request's name. */
            char below[sizeof(hit->object)];
            snprintf(below, sizeof(below), "%s", hit->object);
            snprintf(hit->object, sizeof(hit->object), "%s%s", name, below);
            f->object = hit->object;
        }
        return 0;
    }
    int rc =
        engine_scan_buffer(env->rules, env->scratch, &s->engine, content, len, name, hints, res);
    if (rc != 0) {
        f->status = AMSI_PROTO_STATUS_ENGINE_ERROR;
        f->reason = engine_strerror(rc);
        f->engine_error = rc;
        count(&s->st_engine_errors);
        return rc;
    }
    f->amsi_result = (uint32_t)res->amsi_result;
    f->scanned = true;
    if (res->verdict == ENGINE_VERDICT_DETECTED) {
        f->rule = res->matches[0].rule;
        f->object = res->object;
    } else if (res->verdict == ENGINE_VERDICT_LIMIT || res->verdict == ENGINE_VERDICT_ERROR) {
        f->status = AMSI_PROTO_STATUS_LIMIT;
        f->reason = res->reason;
    }
    atomic_fetch_add_explicit(&s->st_bytes, res->bytes_scanned, memory_order_relaxed);
    if (keyed &&
        (res->verdict == ENGINE_VERDICT_DETECTED || res->verdict == ENGINE_VERDICT_CLEAN)) {
        broker_verdict v = {.amsi_result = f->amsi_result};
        copy_text(v.rule, sizeof(v.rule), f->rule);
        const char *below = f->object ? strchr(f->object, '>') : NULL;
        copy_text(v.object, sizeof(v.object), below);
        broker_verdicts_put(s->verdicts, key, generation, &v);
    }
    return 0;
}

/* The configured maximum a limit reason names ("Limits.Exceeded.MaxFiles"), or 0. */
static uint64_t limit_max(const engine_config *e, const char *reason)
{
    static const struct {
        const char *name;
        size_t offset;
        bool u64;
    } limits[] = {
        {"Limits.Exceeded.MaxRecursion", offsetof(engine_config, max_recursion), false},
        {"Limits.Exceeded.MaxFiles", offsetof(engine_config, max_files), false},
        {"Limits.Exceeded.MaxScanSize", offsetof(engine_config, max_scan_size), true},
        {"Limits.Exceeded.MaxRatio", offsetof(engine_config, max_ratio), false},
        {"Limits.Exceeded.MaxScanTime", offsetof(engine_config, max_scan_time_ms), false},
        {"Limits.Exceeded.MaxCompoundSize", offsetof(engine_config, max_compound_size), true},
    };
    for (size_t i = 0; reason && i < sizeof(limits) / sizeof(limits[0]); i++) {
        if (strcmp(reason, limits[i].name) != 0)
            continue;
        const char *p = (const char *)e + limits[i].offset;
        if (limits[i].u64) {
            uint64_t v;
            memcpy(&v, p, sizeof(v));
            return v;
        }
        unsigned v;
        memcpy(&v, p, sizeof(v));
        return v;
    }
    return 0;
}

/* Counts a scan's outcome, and traces the limits and engine errors among them. */
static void count_outcome(broker_server *s, const conn *c, const request_info *ri,
                          const reply_fields *f, const engine_result *res)
{
    if (f->amsi_result == ENGINE_AMSI_DETECTED) {
        count(&s->st_detected);
    } else if (f->status == AMSI_PROTO_STATUS_LIMIT) {
        count(&s->st_limits);
        ETW_EMIT(LimitExceeded, .scan_id = ri->scan_id, .pid = (uint32_t)c->id.pid,
                 .limit = f->reason, .object = res->object,
                 .max = limit_max(&s->engine, f->reason));
    } else if (f->status == AMSI_PROTO_STATUS_OK) {
        count(&s->st_clean);
    } else if (f->status == AMSI_PROTO_STATUS_ENGINE_ERROR) {
        ETW_EMIT(EngineError, .scan_id = ri->scan_id, .pid = (uint32_t)c->id.pid,
                 .error = f->engine_error, .message = f->reason, .object = res->object);
    }
}

/*
 * Hands a large scan to the pool (DESIGN.md §3: large content never holds up the small scans on
 * this thread). The job owns a copy of inline content, or the memfd mapping. Returns false when
 * the connection must be closed; answers BUSY at once when the queue is full.
 */
static bool enqueue_scan(worker *w, conn *c, const amsi_proto_request *req, const request_info *ri,
                         const uint8_t *content, bool mapped, unsigned hints)
{
    broker_server *s = w->server;
    pool_job *job = malloc(sizeof(*job) + req->name_len + 1 + req->app_len);
    uint8_t *copy = NULL;
    if (job != NULL && !mapped && req->content_len > 0 &&
        (copy = malloc((size_t)req->content_len)) == NULL) {
        free(job);
        job = NULL;
    }
    if (job == NULL) {
        if (mapped)
            munmap((void *)(uintptr_t)content, (size_t)req->content_len);
        return reply_status(w, c, ri, AMSI_PROTO_STATUS_ENGINE_ERROR, "out of memory");
    }
    if (copy)
        memcpy(copy, content, (size_t)req->content_len);
    *job = (pool_job){.c = c,
                      .ri = *ri,
                      .hints = hints,
                      .content = copy ? copy : content,
                      .len = req->content_len,
                      .mapped = mapped};
    memcpy(job->strings, req->name, req->name_len);
    job->strings[req->name_len] = '\0';
    memcpy(job->strings + req->name_len + 1, req->app, req->app_len);
    job->ri.name = job->strings;
    job->ri.app = job->strings + req->name_len + 1;
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    /* Counted before the push: a pool thread may answer the request before this one runs on. */
    count(&s->st_pooled);
    if (broker_ring_try_push(&s->ring, job) == 0)
        return true;
    atomic_fetch_sub_explicit(&s->st_pooled, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&c->refs, 1, memory_order_relaxed);
    if (mapped && req->content_len > 0)
        munmap((void *)(uintptr_t)content, (size_t)req->content_len);
    free(copy);
    free(job);
    count(&s->st_busy);
    ETW_EMIT(QueueFull, .scan_id = ri->scan_id, .pid = (uint32_t)c->id.pid,
             .depth = s->settings.queue_depth, .capacity = s->settings.queue_depth,
             .contentsize = ri->content_len);
    return reply_status(w, c, ri, AMSI_PROTO_STATUS_BUSY, NULL);
}

/*
 * Answers a request its caller may not make now (DESIGN.md §4b): THROTTLED with the retry-after
 * and the configured result, no engine call, one send. Returns false when the connection must be
 * closed.
 */
static bool decline(worker *w, conn *c, const request_info *ri, ratelimit_class cls,
                    uint64_t retry_ns)
{
    broker_server *s = w->server;
    count(&s->st_declined);
    ratelimit_caller who = {.pid = c->id.pid,
                            .uid = c->id.uid,
                            .start_time = c->id.start_time,
                            .exe = c->id.exe,
                            .app = ri->app,
                            .app_len = ri->app_len};
    ratelimit_report_declined_at(s->report, &who, cls, ri->start_ns);
    if (etw_enabled(RequestDeclined)) {
        char app[AMSI_PROTO_MAX_APP + 1];
        ETW_EMIT(RequestDeclined, .scan_id = ri->scan_id, .pid = (uint32_t)c->id.pid,
                 .uid = (uint32_t)c->id.uid, .exe = c->id.exe,
                 .appname = terminated(ri->app, ri->app_len, app, sizeof(app)),
                 .class = cls == RATELIMIT_NOTIFY ? "notify" : "scan", .retry_after_ns = retry_ns,
                 .action = s->declined_result == ENGINE_AMSI_NOT_DETECTED ? "allow" : "block");
    }
    uint64_t ms = (retry_ns + 999999u) / 1000000u;
    reply_fields f = {.status = AMSI_PROTO_STATUS_THROTTLED,
                      .amsi_result = s->declined_result,
                      .session_id = ri->session_id,
                      .throttled = true,
                      .retry_after_ms = (uint32_t)(ms > UINT32_MAX ? UINT32_MAX
                                                   : ms            ? ms
                                                                   : 1),
                      .reason = s->declined_reason[cls]};
    return answer(w, c, ri, &f);
}

static bool handle_scan(worker *w, conn *c, const amsi_proto_request *req, const request_info *ri,
                        int memfd)
{
    broker_server *s = w->server;
    uint64_t start = ri->start_ns;
    /* The limit comes first: a declined request costs no mapping, no lookup, no scan. */
    if (c->exempt) {
        count(&s->st_exempt);
    } else if (s->limits != NULL) {
        ratelimit_class cls = req->type == AMSI_PROTO_NOTIFY ? RATELIMIT_NOTIFY : RATELIMIT_SCAN;
        uint64_t retry;
        if (!ratelimit_decide(s->limits, &c->rl, &c->rl_key, cls, start, &retry))
            return decline(w, c, ri, cls, retry);
    }
    const uint8_t *content = req->content;
    uint64_t len = req->content_len;
    bool mapped = false;
    if (req->flags & AMSI_PROTO_F_MEMFD) {
        if (memfd < 0)
            return reply_status(w, c, ri, AMSI_PROTO_STATUS_BAD_REQUEST,
                                "memfd flag without a descriptor");
        uint32_t st = map_memfd(s, memfd, len, &content);
        if (st != AMSI_PROTO_STATUS_OK) {
            count(st == AMSI_PROTO_STATUS_TOO_LARGE ? &s->st_too_large : &s->st_bad);
            return reply_status(w, c, ri, st, NULL);
        }
        mapped = len > 0;
    }
    session *se = NULL;
    if (req->session_id != 0 && (se = session_find(c, req->session_id)) == NULL) {
        if (mapped)
            munmap((void *)(uintptr_t)content, (size_t)len);
        return reply_status(w, c, ri, AMSI_PROTO_STATUS_NO_SESSION, NULL);
    }
    count(req->type == AMSI_PROTO_NOTIFY ? &s->st_notify : &s->st_scans);
    unsigned hints = (req->flags & AMSI_PROTO_F_UTF16) ? ENGINE_HINT_UTF16LE : 0;
    /* Session scans stay here: the session's stream belongs to this connection's thread.
     * Containers go to the pool whatever their size: a 50 KiB ZIP can hold megabytes of text,
     * and scanned here it would hold up every small request behind it on this thread. What
     * stays here is then known not to be one, and the scan does not detect it again. */
    if (se == NULL && s->npool > 0) {
        if (mapped || len >= s->settings.pool_min ||
            engine_is_container(&s->engine, content, (size_t)len))
            return enqueue_scan(w, c, req, ri, content, mapped, hints);
        hints |= ENGINE_HINT_NOT_CONTAINER;
    }
    refresh_rules(s, &w->rules, &w->generation);
    char name[AMSI_PROTO_MAX_NAME + 1];
    memcpy(name, req->name, req->name_len);
    name[req->name_len] = '\0';
    reply_fields f;
    engine_result res = {0}, sres = {0};
    broker_verdict hit;
    uint8_t digest[32];
    scan_env env = {w->rules, w->generation, w->scratch, w->digest};
    int rc = scan_content(s, &env, content, (size_t)len, req->name_len ? name : "buffer", hints, &f,
                          &res, &hit, digest);
    if (se != NULL) {
        se->scans++;
        /* The session's stream sees the script text across buffers: a signature split over two
         * script blocks is found by the same rules. Bounded by session_max_bytes. */
        se->last_used_ms = start / 1000000u;
        f.session_id = se->id;
        if (rc == 0 && f.amsi_result != ENGINE_AMSI_DETECTED &&
            se->bytes + len <= s->settings.session_max_bytes) {
            se->bytes += len;
            if (engine_stream_write_script(se->stream, w->scratch, content, (size_t)len, hints,
                                           &sres) == 0 &&
                sres.verdict == ENGINE_VERDICT_DETECTED) {
                f.amsi_result = ENGINE_AMSI_DETECTED;
                f.rule = sres.matches[0].rule;
                f.object = "session";
                count(&s->st_session_matches);
            }
        }
    }
    count_outcome(s, c, ri, &f, &res);
    bool ok = answer(w, c, ri, &f);
    engine_result_cleanup(&sres);
    engine_result_cleanup(&res);
    if (mapped)
        munmap((void *)(uintptr_t)content, (size_t)len);
    record_latency(s, now_ns() - start);
    return ok;
}

/*
 * The request id of a frame too long or too broken to decode, so the refusal still names the
 * request (bytes 16..23, little-endian); 0 when the frame is shorter than that.
 */
static uint64_t peek_request_id(const uint8_t *frame, size_t len)
{
    uint64_t id = 0;
    if (len >= 24)
        for (int i = 7; i >= 0; i--)
            id = id << 8 | frame[16 + i];
    return id;
}

/* What a decoded request asks for, as trace events name it. */
static const char *request_kind(const amsi_proto_request *req)
{
    switch (req->type) {
    case AMSI_PROTO_SCAN:
        return (req->flags & AMSI_PROTO_F_UTF16) ? "string" : "buffer";
    case AMSI_PROTO_NOTIFY:
        return "notify";
    case AMSI_PROTO_SESSION_OPEN:
        return "session_open";
    case AMSI_PROTO_SESSION_CLOSE:
        return "session_close";
    default:
        return "ping";
    }
}

/*
 * Gives a frame just read its scan id and time, fills ri from what it says (req NULL: it did not
 * decode; n bytes of frame were read) and emits its ScanRequest. Can't fail.
 */
static void request_received(broker_server *s, conn *c, const amsi_proto_request *req,
                             const uint8_t *frame, size_t n, request_info *ri)
{
    *ri = (request_info){.scan_id =
                             atomic_fetch_add_explicit(&s->next_scan_id, 1, memory_order_relaxed),
                         .start_ns = now_ns(),
                         .kind = req ? request_kind(req) : "malformed",
                         .app = "",
                         .name = ""};
    c->requests++;
    if (req != NULL) {
        ri->request_id = req->request_id;
        ri->session_id = req->session_id;
        ri->content_len = req->content_len;
        ri->app = req->app;
        ri->app_len = req->app_len;
        ri->name = req->name;
        ri->name_len = req->name_len;
    } else {
        ri->request_id = peek_request_id(frame, n);
    }
    trace_request(c, ri);
}

/* Reads and answers one frame. Returns false when the connection must be closed. */
static bool handle_frame(worker *w, conn *c)
{
    broker_server *s = w->server;
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {w->rx, w->rx_cap};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (n == 0) {
        c->close_reason = "closed"; /* by the client */
        return false;
    }
    /* Collect passed descriptors: at most one is meaningful; any others are closed at once. */
    int memfd = -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (memfd < 0)
                memfd = fd;
            else
                close(fd);
        }
    }
    amsi_proto_request req;
    request_info ri;
    bool keep = true;
    if (msg.msg_flags & MSG_TRUNC) {
        /* More inline bytes than the protocol allows (the client should have sent a memfd):
         * answered TOO_LARGE without reading the rest (the kernel has dropped it), then the
         * connection is closed like any other protocol breach. */
        request_received(s, c, NULL, w->rx, w->rx_cap, &ri);
        count(&s->st_too_large);
        reply_status(w, c, &ri, AMSI_PROTO_STATUS_TOO_LARGE, NULL);
        c->close_reason = "malformed";
        keep = false;
    } else {
        int rc = amsi_proto_decode_request(w->rx, (size_t)n, &req);
        request_received(s, c, rc == 0 ? &req : NULL, w->rx, (size_t)n, &ri);
        if (rc == AMSI_PROTO_EVERSION) {
            count(&s->st_bad);
            ri.request_id = req.request_id;
            reply_status(w, c, &ri, AMSI_PROTO_STATUS_UNSUPPORTED_VERSION, NULL);
            c->close_reason = "malformed";
            keep = false;
        } else if (rc != 0) {
            /* A malformed frame closes only this connection, after saying why. */
            count(&s->st_bad);
            reply_status(w, c, &ri, AMSI_PROTO_STATUS_BAD_REQUEST,
                         amsi_proto_status_message(AMSI_PROTO_STATUS_BAD_REQUEST));
            c->close_reason = "malformed";
            keep = false;
        } else if (atomic_load_explicit(&s->stopping, memory_order_relaxed)) {
            keep = reply_status(w, c, &ri, AMSI_PROTO_STATUS_SHUTTING_DOWN, NULL);
        } else {
            switch (req.type) {
            case AMSI_PROTO_SCAN:
            case AMSI_PROTO_NOTIFY:
                keep = handle_scan(w, c, &req, &ri, memfd);
                break;
            case AMSI_PROTO_SESSION_OPEN:
                keep = handle_session_open(w, c, &ri);
                break;
            case AMSI_PROTO_SESSION_CLOSE:
                keep = handle_session_close(w, c, &ri);
                break;
            case AMSI_PROTO_PING:
            default:
                keep = reply_status(w, c, &ri, AMSI_PROTO_STATUS_OK, "pong");
                break;
            }
        }
    }
    if (memfd >= 0)
        close(memfd);
    return keep;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections and threads.                                                                    */

/* Drops one reference; the last one closes the descriptor and frees the connection. */
static void conn_unref(conn *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    close(c->fd);
    broker_identity_cleanup(&c->id);
    free(c);
}

/*
 * Closes a connection on its owner thread. The descriptor is shut down at once (so a pool thread
 * still holding the connection cannot reach the client any more) but stays open, and so cannot
 * be reused for another client, until the last reference goes.
 */
static void conn_close(worker *w, conn *c, const char *reason)
{
    broker_server *s = w->server;
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    /* Frames left unread would turn the close into ECONNRESET for the client, which then loses
     * the replies already queued for it (the refusal that explains the close among them): read
     * and drop them first, a bounded number (descriptors they carry are closed by the kernel).
     * Each was received, so each ends in a ScanDecision: DROPPED. */
    for (int i = 0; i < 1024; i++) {
        ssize_t n = recv(c->fd, w->rx, w->rx_cap, MSG_DONTWAIT | MSG_TRUNC);
        if (n <= 0)
            break;
        amsi_proto_request req;
        request_info ri;
        bool whole = (size_t)n <= w->rx_cap;
        size_t got = whole ? (size_t)n : w->rx_cap;
        bool decoded = whole && amsi_proto_decode_request(w->rx, got, &req) == 0;
        request_received(s, c, decoded ? &req : NULL, w->rx, got, &ri);
        reply_fields f = {.status = AMSI_PROTO_STATUS_SHUTTING_DOWN,
                          .amsi_result = ENGINE_AMSI_NOT_DETECTED,
                          .reason = "the connection was closed before this request was read"};
        trace_decision(s, w->digest, c, &ri, &f, "DROPPED");
    }
    ETW_EMIT(ClientDisconnect, .conn_id = c->conn_id, .pid = (uint32_t)c->id.pid,
             .uid = (uint32_t)c->id.uid, .exe = c->id.exe, .requests = c->requests,
             .reason = reason);
    shutdown(c->fd, SHUT_RDWR);
    atomic_store_explicit(&c->dead, true, memory_order_release);
    while (c->nsessions)
        session_drop(w, c, 0);
    free(c->sessions);
    c->sessions = NULL;
    while (c->out_head) {
        pending_reply *p = c->out_head;
        c->out_head = p->next;
        free(p);
    }
    c->out_tail = NULL;
    c->npending = 0;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    atomic_fetch_sub_explicit(&w->server->st_open, 1, memory_order_relaxed);
    /* A caller's entry goes with its process, not with a connection: a process could otherwise
     * reconnect to start again with a full bucket. */
    if (w->server->limits != NULL && !c->exempt && broker_identity_exited(&c->id))
        ratelimit_detach(w->server->limits, &c->rl);
    conn_unref(c);
}

/* Sends the replies the pool handed back (their sockets were full at the time). */
static void take_done(worker *w)
{
    pthread_mutex_lock(&w->done_lock);
    done_reply *d = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&w->done_lock);
    while (d) {
        done_reply *next = d->next;
        conn *c = d->c;
        if (!atomic_load_explicit(&c->dead, memory_order_acquire) &&
            !send_frame(w, c, d->frame, d->len))
            conn_close(w, c, "error");
        conn_unref(c);
        free(d);
        d = next;
    }
}

static void accept_all(worker *w)
{
    broker_server *s = w->server;
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE) && w->reserve_fd >= 0) {
            /* Out of descriptors: refuse this client (it sees EOF at once) rather than leave
             * the listening socket readable and spin on it. */
            close(w->reserve_fd);
            fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0)
                close(fd);
            w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            continue;
        }
        if (fd < 0)
            return; /* EAGAIN: another thread took it, or none left */
        conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->reading = true;
        c->owner = w;
        atomic_init(&c->refs, 1);
        atomic_init(&c->dead, false);
        if (broker_identity_read(fd, &c->id) != 0) {
            free(c);
            close(fd);
            continue;
        }
        /* Exemptions first (DESIGN.md §4b): an exempt caller never takes a place in the table. */
        c->exempt = ratelimit_exempt(&s->cfg->ratelimit, c->id.exe, c->id.uid);
        c->conn_id = atomic_fetch_add_explicit(&s->next_conn_id, 1, memory_order_relaxed);
        ETW_EMIT(ClientConnect, .conn_id = c->conn_id, .pid = (uint32_t)c->id.pid,
                 .uid = (uint32_t)c->id.uid, .gid = (uint32_t)c->id.gid, .exe = c->id.exe,
                 .exempt = c->exempt);
        c->rl_key = (ratelimit_key){.pid = c->id.pid, .start_time = c->id.start_time};
        if (s->limits != NULL && !c->exempt)
            ratelimit_attach(s->limits, &c->rl_key, now_ns(), &c->rl);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            broker_identity_cleanup(&c->id);
            free(c);
            close(fd);
            continue;
        }
        c->next = w->conns;
        if (w->conns)
            w->conns->prev = c;
        w->conns = c;
        count(&s->st_connections);
        count(&s->st_open);
    }
}

/*
 * Disconnects clients that have left replies unread for STALL_MS: they hold a slot of memory and
 * stop their own requests being read, and a client that never reads would hold them for ever.
 */
static void sweep_stalled(worker *w, uint64_t now_ms)
{
    for (conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->stalled_ms != 0 && now_ms - c->stalled_ms > STALL_MS)
            conn_close(w, c, "stalled");
    }
}

/*
 * Asks the scheduler for slices of slice_us for the calling thread (Linux >= 6.12, EEVDF): a
 * thread with shorter slices gets earlier deadlines, so when it wakes it preempts a thread that
 * runs long slices on its core instead of waiting for that slice to end. The I/O-and-scan threads
 * ask for short ones: a small request then waits microseconds, not milliseconds, behind a large
 * scan on the same core. Older kernels ignore the request or refuse it; either way nothing else
 * changes. 0 leaves the default.
 */
static void set_slice(unsigned slice_us)
{
#if defined(__linux__) && defined(SYS_sched_setattr)
    if (slice_us == 0)
        return;
    /* The kernel's struct sched_attr (SCHED_ATTR_SIZE_VER0); glibc has no wrapper, and
     * <linux/sched/types.h> clashes with <sched.h>. */
    struct {
        uint32_t size, sched_policy;
        uint64_t sched_flags;
        int32_t sched_nice;
        uint32_t sched_priority;
        uint64_t sched_runtime, sched_deadline, sched_period;
    } a = {.size = sizeof(a),
           .sched_policy = SCHED_OTHER,
           .sched_nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid)),
           .sched_runtime = (uint64_t)slice_us * 1000u};
    (void)syscall(SYS_sched_setattr, 0, &a, 0);
#else
    (void)slice_us;
#endif
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    broker_server *s = w->server;
    struct epoll_event events[MAX_EVENTS];
    uint64_t last_sweep = now_ns() / 1000000u;
    w->spin.budget_ns = (uint64_t)s->settings.spin_us * 1000u;
    set_slice(s->settings.io_slice_us);
    while (!atomic_load_explicit(&s->stopping, memory_order_acquire)) {
        /* Up to a second: the sweep below runs at least that often. */
        int n = amsi_spin_epoll_wait(&w->spin, w->epfd, events, MAX_EVENTS, 1000);
        /* A second without an event: give back what the scratch keeps for large content. */
        if (n == 0)
            (void)engine_scratch_trim(w->scratch);
        bool woken = false;
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            if (p == NULL) {
                accept_all(w);
                continue;
            }
            if (p == (void *)w) {
                /* Handed-back replies are sent after this batch: sending one may close its
                 * connection, which a later event of the batch could still name. */
                woken = true;
                continue; /* also a stop: the loop condition decides */
            }
            conn *c = p;
            bool keep = true;
            if (events[i].events & EPOLLOUT)
                keep = flush_pending(w, c);
            /* One frame per readiness: epoll is level-triggered, so a connection with more
             * frames queued comes back on the next wait, after the others had their turn. A
             * small request costs recvmsg + send. */
            if (keep && c->reading && (events[i].events & EPOLLIN))
                keep = handle_frame(w, c);
            else if (keep && (events[i].events & (EPOLLHUP | EPOLLERR)) &&
                     !(events[i].events & EPOLLIN))
                keep = false;
            if (!keep)
                conn_close(w, c, c->close_reason ? c->close_reason : "error");
        }
        if (woken) {
            uint64_t v;
            (void)!read(w->wakefd, &v, sizeof(v));
            take_done(w);
        }
        /* After the batch, like take_done: a swept connection must not be named by an event. */
        uint64_t now_ms = now_ns() / 1000000u;
        if (now_ms - last_sweep >= 1000) {
            sweep_stalled(w, now_ms);
            last_sweep = now_ms;
        }
    }
    return NULL;
}

static void worker_cleanup(worker *w)
{
    /* Replies handed back after this thread stopped: their clients are being disconnected. */
    while (w->done) {
        done_reply *d = w->done;
        w->done = d->next;
        conn_unref(d->c);
        free(d);
    }
    pthread_mutex_destroy(&w->done_lock);
    while (w->conns)
        conn_close(w, w->conns, "shutdown");
    if (w->epfd >= 0)
        close(w->epfd);
    if (w->wakefd >= 0)
        close(w->wakefd);
    if (w->reserve_fd >= 0)
        close(w->reserve_fd);
    engine_scratch_destroy(w->scratch);
    engine_rules_unref(w->rules);
    EVP_MD_CTX_free(w->digest);
    free(w->rx);
}

/* Encodes and sends a pool thread's reply; a full socket hands the frame to the owner. */
/*
 * The one way a request is answered on the pool: sends the reply from this thread, or hands it
 * to the connection's owner when the socket is full, and emits the request's ScanDecision.
 */
static void pool_answer(pool_thread *pt, conn *c, const request_info *ri, const reply_fields *f)
{
    broker_server *s = pt->server;
    if (atomic_load_explicit(&c->dead, memory_order_acquire)) {
        trace_decision(s, pt->digest, c, ri, f, "CLIENT_GONE");
        return;
    }
    uint8_t frame[AMSI_PROTO_MAX_REPLY];
    size_t len;
    if (!encode_reply(s, ri, f, frame, &len)) {
        trace_decision(s, pt->digest, c, ri, f, NULL);
        return;
    }
    /* One SOCK_SEQPACKET message is delivered whole even when another thread sends too. */
    ssize_t n;
    do
        n = send(c->fd, frame, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    bool later = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    trace_decision(s, pt->digest, c, ri, f, n >= 0 || later ? NULL : "CLIENT_GONE");
    if (!later)
        return;
    done_reply *d = malloc(sizeof(*d) + len);
    if (d == NULL)
        return;
    worker *w = c->owner;
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    d->c = c;
    d->len = len;
    memcpy(d->frame, frame, len);
    pthread_mutex_lock(&w->done_lock);
    d->next = w->done;
    w->done = d;
    pthread_mutex_unlock(&w->done_lock);
    uint64_t one = 1;
    (void)!write(w->wakefd, &one, sizeof(one));
}

/* A pool thread: takes large scans off the ring until it is closed and empty. */
static void *pool_main(void *arg)
{
    pool_thread *pt = arg;
    broker_server *s = pt->server;
    /* Below the I/O-and-scan threads (DESIGN.md §3: large scans must not hold up small ones). A
     * failure leaves the thread at the normal priority. */
    if (s->settings.pool_nice > 0)
        (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), (int)s->settings.pool_nice);
    /* Long slices: any thread that wakes with a shorter one (an I/O thread, a client) preempts a
     * large scan at once, while the scan keeps its fair share of the CPU. */
    set_slice(s->settings.pool_slice_us);
    void *item;
    int rc;
    while ((rc = broker_ring_pop_wait(&s->ring, &item, POOL_IDLE_MS)) == 0 || rc == -ETIMEDOUT) {
        if (rc == -ETIMEDOUT) {
            /* Idle: the memory kept for large content goes back until the next large scan. */
            (void)engine_scratch_trim(pt->scratch);
            continue;
        }
        pool_job *job = item;
        refresh_rules(s, &pt->rules, &pt->generation);
        reply_fields f;
        engine_result res = {0};
        broker_verdict hit;
        uint8_t digest[32];
        scan_env env = {pt->rules, pt->generation, pt->scratch, pt->digest};
        scan_content(s, &env, job->content, (size_t)job->len,
                     job->strings[0] ? job->strings : "buffer", job->hints, &f, &res, &hit, digest);
        count_outcome(s, job->c, &job->ri, &f, &res);
        pool_answer(pt, job->c, &job->ri, &f);
        engine_result_cleanup(&res);
        record_latency(s, now_ns() - job->ri.start_ns);
        if (job->mapped)
            munmap((void *)(uintptr_t)job->content, (size_t)job->len);
        else
            free((void *)(uintptr_t)job->content);
        conn_unref(job->c);
        free(job);
    }
    return NULL;
}

/* Binds the scan socket, replacing a stale one but never a live broker's. */
static int bind_socket(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        snprintf(err, errlen, "socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -errno;
    }
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    if (rc != 0 && errno == EADDRINUSE) {
        int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, (struct sockaddr *)&addr, sizeof(addr)) == 0;
        if (probe >= 0)
            close(probe);
        if (live) {
            snprintf(err, errlen, "%s: another broker is listening there", path);
            close(fd);
            return -EADDRINUSE;
        }
        unlink(path); /* a stale socket from a broker that did not stop cleanly */
        rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    }
    if (rc != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    chmod(path, 0666); /* any local user may scan, as with AMSI */
    return fd;
}

int broker_server_create(const broker_config *cfg, engine_rules *rules, int listen_fd,
                         broker_server **out, char *err, size_t errlen)
{
    broker_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->cfg = cfg;
    s->settings = cfg->broker;
    s->engine = cfg->engine;
    s->socket_path = strdup(cfg->broker.socket);
    s->listen_fd = -1;
    pthread_mutex_init(&s->rules_lock, NULL);
    s->rules = engine_rules_ref(rules);
    atomic_init(&s->generation, 1);
    s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (cfg->broker.cache_entries > 0)
        s->verdicts = broker_verdicts_create(cfg->broker.cache_entries);
    int lrc = 0;
    if (cfg->ratelimit.enabled &&
        (lrc = ratelimit_table_create(&cfg->ratelimit, &s->limits)) != 0) {
        snprintf(err, errlen, "ratelimit: %s", strerror(-lrc));
        broker_server_destroy(s);
        return lrc;
    }
    if ((lrc = ratelimit_report_create(&cfg->report, &cfg->ratelimit, &s->report, err, errlen)) !=
        0) {
        broker_server_destroy(s);
        return lrc;
    }
    s->declined_result = cfg->ratelimit.action == RATELIMIT_BLOCK
                             ? AMSI_PROTO_RESULT_BLOCKED_BY_ADMIN
                             : ENGINE_AMSI_NOT_DETECTED;
    for (int c = 0; c < RATELIMIT_NCLASSES; c++) {
        char limit[64];
        ratelimit_describe(&cfg->ratelimit, (ratelimit_class)c, limit, sizeof(limit));
        snprintf(s->declined_reason[c], sizeof(s->declined_reason[c]),
                 "declined: request limit exceeded (%s)", limit);
    }
    atomic_init(&s->next_scan_id, 1);
    atomic_init(&s->next_conn_id, 1);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    s->nworkers = cfg->broker.threads ? cfg->broker.threads : (unsigned)(cores > 0 ? cores : 1);
    s->workers = calloc(s->nworkers, sizeof(worker));
    for (unsigned i = 0; s->workers && i < s->nworkers; i++)
        s->workers[i].epfd = s->workers[i].wakefd = s->workers[i].reserve_fd = -1;
    if (s->socket_path == NULL || s->workers == NULL || s->sha256 == NULL ||
        (cfg->broker.cache_entries > 0 && s->verdicts == NULL)) {
        broker_server_destroy(s);
        return -ENOMEM;
    }
    int fd = listen_fd;
    if (fd >= 0) {
        /* Passed in by systemd: not ours to unlink at exit. */
        free(s->socket_path);
        s->socket_path = NULL;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    } else {
        fd = bind_socket(s->socket_path, err, errlen);
    }
    if (fd < 0) {
        free(s->socket_path);
        s->socket_path = NULL; /* not ours: do not unlink it */
        broker_server_destroy(s);
        return fd;
    }
    s->listen_fd = fd;
    for (unsigned i = 0; i < s->nworkers; i++) {
        worker *w = &s->workers[i];
        w->server = s;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->rx_cap = AMSI_PROTO_REQ_HEADER + AMSI_PROTO_MAX_APP + AMSI_PROTO_MAX_NAME +
                    s->settings.inline_max;
        w->rx = malloc(w->rx_cap);
        w->rules = engine_rules_ref(rules);
        w->generation = 1;
        w->digest = EVP_MD_CTX_new();
        w->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        pthread_mutex_init(&w->done_lock, NULL);
        int rc = w->epfd < 0 || w->wakefd < 0 || w->rx == NULL || w->digest == NULL
                     ? -ENOMEM
                     : engine_scratch_create(rules, &w->scratch);
        struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
        struct epoll_event wev = {.events = EPOLLIN, .data.ptr = w};
        if (rc != 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, s->listen_fd, &lev) != 0 ||
            epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wakefd, &wev) != 0) {
            snprintf(err, errlen, "cannot set up thread %u", i);
            broker_server_destroy(s);
            return -ENOMEM;
        }
    }
    s->npool =
        cfg->broker.pool_threads ? cfg->broker.pool_threads : (unsigned)(cores > 0 ? cores : 1);
    s->pool = calloc(s->npool, sizeof(pool_thread));
    if (s->pool == NULL || broker_ring_init(&s->ring, cfg->broker.queue_depth) != 0) {
        snprintf(err, errlen, "cannot set up the scan pool");
        broker_server_destroy(s);
        return -ENOMEM;
    }
    s->ring_ready = true;
    for (unsigned i = 0; i < s->npool; i++) {
        pool_thread *pt = &s->pool[i];
        pt->server = s;
        pt->rules = engine_rules_ref(rules);
        pt->generation = 1;
        pt->digest = EVP_MD_CTX_new();
        if (pt->digest == NULL || engine_scratch_create(rules, &pt->scratch) != 0) {
            snprintf(err, errlen, "cannot set up pool thread %u", i);
            broker_server_destroy(s);
            return -ENOMEM;
        }
    }
    /* Socket buffers sized for the largest inline request. */
    int sz = (int)(s->settings.inline_max + 65536);
    setsockopt(s->listen_fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    *out = s;
    return 0;
}

int broker_server_start(broker_server *s)
{
    int rrc = ratelimit_report_start(s->report);
    if (rrc != 0)
        return rrc;
    for (unsigned i = 0; i < s->nworkers; i++) {
        int rc = pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
        if (rc != 0)
            return -rc;
        s->workers[i].started = true;
    }
    for (unsigned i = 0; i < s->npool; i++) {
        int rc = pthread_create(&s->pool[i].thread, NULL, pool_main, &s->pool[i]);
        if (rc != 0)
            return -rc;
        s->pool[i].started = true;
    }
    return 0;
}

void broker_server_swap_rules(broker_server *s, engine_rules *rules)
{
    pthread_mutex_lock(&s->rules_lock);
    engine_rules *old = s->rules;
    s->rules = engine_rules_ref(rules);
    atomic_fetch_add_explicit(&s->generation, 1, memory_order_release);
    pthread_mutex_unlock(&s->rules_lock);
    engine_rules_unref(old);
    count(&s->st_reloads);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of n sorted samples (nearest rank). */
static uint64_t quantile(const uint64_t *sorted, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)((double)n * q);
    return sorted[i < n ? i : n - 1];
}

void broker_server_stats(broker_server *s, broker_stats *st)
{
#define LOAD(x) atomic_load_explicit(&s->x, memory_order_relaxed)
    *st = (broker_stats){.connections = LOAD(st_connections),
                         .open_connections = LOAD(st_open),
                         .requests = LOAD(st_requests),
                         .scans = LOAD(st_scans),
                         .notifications = LOAD(st_notify),
                         .detected = LOAD(st_detected),
                         .clean = LOAD(st_clean),
                         .limits = LOAD(st_limits),
                         .bad_requests = LOAD(st_bad),
                         .too_large = LOAD(st_too_large),
                         .busy = LOAD(st_busy),
                         .pool_scans = LOAD(st_pooled),
                         .engine_errors = LOAD(st_engine_errors),
                         .sessions_open = LOAD(st_sessions),
                         .session_matches = LOAD(st_session_matches),
                         .bytes_scanned = LOAD(st_bytes),
                         .reloads = LOAD(st_reloads),
                         .cache_hits = LOAD(st_cache_hits),
                         .declined = LOAD(st_declined),
                         .exempt_requests = LOAD(st_exempt),
                         .generation = LOAD(generation)};
    ratelimit_report_stats rs;
    ratelimit_report_stats_get(s->report, &rs);
    st->reports_sent = rs.sent;
    st->reports_dropped = rs.dropped;
    st->reports_pending = rs.pending;
    uint64_t *lat = malloc(LAT_SAMPLES * sizeof(uint64_t));
    size_t n = 0;
    for (unsigned i = 0; lat && i < LAT_SAMPLES; i++) {
        uint64_t v = LOAD(lat[i]);
        if (v)
            lat[n++] = v;
    }
#undef LOAD
    if (lat == NULL)
        return;
    qsort(lat, n, sizeof(uint64_t), cmp_u64);
    st->p50_ns = quantile(lat, n, 0.50);
    st->p90_ns = quantile(lat, n, 0.90);
    st->p99_ns = quantile(lat, n, 0.99);
    st->p999_ns = quantile(lat, n, 0.999);
    st->max_ns = n ? lat[n - 1] : 0;
    free(lat);
}

void broker_server_stop(broker_server *s)
{
    if (s == NULL || s->stopped)
        return;
    atomic_store_explicit(&s->stopping, true, memory_order_release);
    for (unsigned i = 0; i < s->nworkers; i++) {
        uint64_t one = 1;
        if (s->workers[i].wakefd >= 0)
            (void)!write(s->workers[i].wakefd, &one, sizeof(one));
    }
    /* Each thread finishes the request it is on (run to completion), then leaves its loop. */
    for (unsigned i = 0; i < s->nworkers; i++)
        if (s->workers[i].started)
            pthread_join(s->workers[i].thread, NULL);
    /* No new jobs now: the pool drains the queue (answering each), then its threads leave. */
    if (s->ring_ready)
        broker_ring_close(&s->ring);
    for (unsigned i = 0; i < s->npool; i++)
        if (s->pool[i].started)
            pthread_join(s->pool[i].thread, NULL);
    /* Nothing is declined any more: the pending window's reports go out now. */
    ratelimit_report_stop(s->report);
    s->stopped = true;
}

void broker_server_destroy(broker_server *s)
{
    if (s == NULL)
        return;
    broker_server_stop(s);
    for (unsigned i = 0; s->workers && i < s->nworkers; i++)
        worker_cleanup(&s->workers[i]);
    free(s->workers);
    for (unsigned i = 0; s->pool && i < s->npool; i++) {
        engine_scratch_destroy(s->pool[i].scratch);
        engine_rules_unref(s->pool[i].rules);
        EVP_MD_CTX_free(s->pool[i].digest);
    }
    free(s->pool);
    if (s->ring_ready)
        broker_ring_cleanup(&s->ring);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->socket_path)
        unlink(s->socket_path);
    free(s->socket_path);
    engine_rules_unref(s->rules);
    broker_verdicts_destroy(s->verdicts);
    ratelimit_table_destroy(s->limits);
    ratelimit_report_destroy(s->report);
    EVP_MD_free(s->sha256);
    pthread_mutex_destroy(&s->rules_lock);
    free(s);
}
