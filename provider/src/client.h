/*
 * client.h - libamsi's private pieces: the transport (connections to the broker, one request and
 * its reply under a deadline), text conversion, and the HRESULT mapping (hresult.c).
 */
#ifndef AMSI_CLIENT_H
#define AMSI_CLIENT_H

#include "amsi.h"
#include "amsi_protocol.h"
#include "amsi_spin.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* Transport errors (negative). */
#define AMSI__ETIMEDOUT    (-1)
#define AMSI__EUNAVAILABLE (-2)
#define AMSI__ENOMEM       (-3)
#define AMSI__EPROTO       (-4)
#define AMSI__EMSGSIZE     (-5) /* larger than one message on this socket */

/* One connection to the broker. */
typedef struct amsi__conn {
    int fd;
    amsi_spin spin;          /* whether to poll for the reply before sleeping (amsi_spin.h) */
    struct amsi__conn *next; /* in the context's idle list */
} amsi__conn;

struct HAMSICONTEXT__ {
    uint32_t magic;
    char *app; /* UTF-8 */
    char *socket_path;
    int timeout_ms;
    size_t inline_max; /* content above this goes as a sealed memfd */
    uint64_t spin_ns;  /* each connection's polling budget before it sleeps for a reply */
    atomic_uint_fast64_t next_id;
    pthread_mutex_t lock; /* protects idle */
    amsi__conn *idle;
};

struct HAMSISESSION__ {
    uint32_t magic;
    HAMSICONTEXT ctx;
    pthread_mutex_t lock; /* one request at a time on the session's connection */
    amsi__conn *conn;     /* sessions are scoped to a connection (DESIGN.md §4) */
    uint64_t id;
};

/* A request to send: the frame fields plus the content. */
typedef struct amsi__call {
    uint16_t type;
    uint32_t flags;
    uint64_t session_id;
    const char *name;
    size_t name_len;
    const void *content;
    size_t content_len;
} amsi__call;

/* Status and strings of a reply, copied out of the frame. */
typedef struct amsi__answer {
    uint32_t status;
    uint32_t amsi_result;
    uint32_t retry_after_ms;
    uint64_t session_id;
    uint64_t scan_id;
    char rule[256];
    char object[1024];
    char reason[256];
} amsi__answer;

/*
 * Sends one request and waits for its reply under the context's timeout. conn NULL: takes an
 * idle connection (or opens one), and gives it back afterwards; on a stale connection (the
 * broker restarted) it retries once on a new one. Returns 0 or an AMSI__E* code.
 */
int amsi__call_broker(HAMSICONTEXT ctx, amsi__conn **conn, const amsi__call *call,
                      amsi__answer *answer);

/* Opens a new connection to the broker. Returns 0 or an AMSI__E* code. */
int amsi__conn_open(HAMSICONTEXT ctx, amsi__conn **out);
void amsi__conn_close(amsi__conn *conn);

/* UTF-16 (NUL-terminated, bounded by max units) to a malloc'd UTF-8 string; NULL gives "". */
char *amsi__utf16_to_utf8(LPCWSTR s, size_t max_units);
/* Length in units of a NUL-terminated UTF-16 string. */
size_t amsi__utf16_len(LPCWSTR s);

/* hresult.c */
HRESULT amsi__hresult_for_status(uint32_t status, uint32_t amsi_result, AMSI_RESULT *result);
HRESULT amsi__hresult_for_transport(int err, AMSI_RESULT *result);

#endif
