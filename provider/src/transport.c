/*
 * transport.c - libamsi's connections to the broker: SOCK_SEQPACKET, so one send is one request
 * and one receive is one reply; content above the inline size travels as a sealed memfd.
 *
 * Connections are pooled per context: a call takes an idle one (or connects lazily) and gives it
 * back when the reply came. Many threads therefore scan at once on separate connections with no
 * lock held across a call. A connection whose call failed or timed out is closed, never reused:
 * a late reply on it could otherwise answer the next caller. After a broker restart the pooled
 * connections are dead; the first call on each notices (EPIPE/ECONNRESET/EOF), and retries once on
 * a fresh connection.
 */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int amsi__conn_open(HAMSICONTEXT ctx, amsi__conn **out)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(ctx->socket_path) >= sizeof(addr.sun_path))
        return AMSI__EUNAVAILABLE;
    memcpy(addr.sun_path, ctx->socket_path, strlen(ctx->socket_path) + 1);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno == ENOMEM || errno == ENOBUFS ? AMSI__ENOMEM : AMSI__EUNAVAILABLE;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return AMSI__EUNAVAILABLE;
    }
    amsi__conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return AMSI__ENOMEM;
    }
    c->fd = fd;
    c->spin.budget_ns = ctx->spin_ns;
    *out = c;
    return 0;
}

void amsi__conn_close(amsi__conn *conn)
{
    if (conn == NULL)
        return;
    close(conn->fd);
    free(conn);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until the deadline. Returns 0, AMSI__ETIMEDOUT or AMSI__EUNAVAILABLE. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return AMSI__ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return AMSI__EUNAVAILABLE;
        if (n == 0)
            continue;
        if (p.revents & events)
            return 0;
        return AMSI__EUNAVAILABLE; /* POLLERR / POLLHUP without data */
    }
}

/* Copies content into a sealed memfd. Returns the fd or a negative AMSI__E* code. */
static int make_memfd(const void *content, size_t len)
{
    int fd = memfd_create("amsi-content", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return AMSI__ENOMEM;
    const uint8_t *p = content;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return AMSI__ENOMEM;
        }
        p += n;
        left -= (size_t)n;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        close(fd);
        return AMSI__ENOMEM;
    }
    return fd;
}

/* Sends one request on conn. Returns 0 or an AMSI__E* code. */
static int send_request(HAMSICONTEXT ctx, amsi__conn *conn, const amsi__call *call, uint64_t id,
                        int64_t deadline, bool memfd)
{
    amsi_proto_request req = {.type = call->type,
                              .flags = call->flags | (memfd ? AMSI_PROTO_F_MEMFD : 0),
                              .request_id = id,
                              .session_id = call->session_id,
                              .app = ctx->app,
                              .app_len = (uint32_t)strlen(ctx->app),
                              .name = call->name,
                              .name_len = (uint32_t)call->name_len,
                              .content = call->content,
                              .content_len = call->content_len};
    uint8_t head[AMSI_PROTO_REQ_HEADER + AMSI_PROTO_MAX_APP + AMSI_PROTO_MAX_NAME];
    size_t head_len;
    if (amsi_proto_encode_request(&req, head, sizeof(head), &head_len) != 0)
        return AMSI__EPROTO;
    struct iovec iov[2] = {{head, head_len}, {(void *)(uintptr_t)call->content, 0}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    int fd = -1;
    if (memfd) {
        fd = make_memfd(call->content, call->content_len);
        if (fd < 0)
            return fd;
        memset(&ctl, 0, sizeof(ctl));
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof(ctl.buf);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    } else if (call->content_len > 0) {
        iov[1].iov_len = call->content_len;
        msg.msg_iovlen = 2;
    }
    int rc = 0;
    for (;;) {
        ssize_t n = sendmsg(conn->fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n >= 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            rc = wait_fd(conn->fd, POLLOUT, deadline);
            if (rc == 0)
                continue;
            break;
        }
        rc = errno == EMSGSIZE                     ? AMSI__EMSGSIZE
             : errno == ENOMEM || errno == ENOBUFS ? AMSI__ENOMEM
                                                   : AMSI__EUNAVAILABLE;
        break;
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/*
 * Receives the reply to request id. While replies on this connection usually come within its
 * budget, it polls the socket for that long before sleeping in poll() (amsi_spin.h). Returns 0 or
 * an AMSI__E* code.
 */
static int recv_reply(amsi__conn *conn, uint64_t id, int64_t deadline, amsi__answer *answer)
{
    uint8_t buf[AMSI_PROTO_MAX_REPLY];
    uint64_t start = amsi_spin_now_ns();
    bool spin = amsi_spin_worth(&conn->spin, start);
    for (;;) {
        if (!spin) {
            int rc = wait_fd(conn->fd, POLLIN, deadline);
            if (rc != 0)
                return rc;
        }
        ssize_t n = recv(conn->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (spin)
                spin = amsi_spin_now_ns() - start < conn->spin.budget_ns &&
                       amsi_spin_relax(&conn->spin);
            continue;
        }
        if (n <= 0)
            return AMSI__EUNAVAILABLE; /* the broker went away */
        amsi_proto_reply rep;
        if (amsi_proto_decode_reply(buf, (size_t)n, &rep) != 0)
            return AMSI__EPROTO;
        if (rep.request_id != id)
            continue; /* not ours: a reply to a request that already timed out */
        amsi_spin_observe(&conn->spin, amsi_spin_now_ns() - start);
        answer->status = rep.status;
        answer->amsi_result = rep.amsi_result;
        answer->retry_after_ms = rep.retry_after_ms;
        answer->session_id = rep.session_id;
        answer->scan_id = rep.scan_id;
#define COPY_FIELD(dst, src, len)                                                                  \
    do {                                                                                           \
        size_t l_ = (len) < sizeof(dst) - 1 ? (len) : sizeof(dst) - 1;                             \
        memcpy(dst, src, l_);                                                                      \
        dst[l_] = '\0';                                                                            \
    } while (0)
        COPY_FIELD(answer->rule, rep.rule, rep.rule_len);
        COPY_FIELD(answer->object, rep.object, rep.object_len);
        COPY_FIELD(answer->reason, rep.reason, rep.reason_len);
#undef COPY_FIELD
        return 0;
    }
}

static amsi__conn *take_idle(HAMSICONTEXT ctx)
{
    pthread_mutex_lock(&ctx->lock);
    amsi__conn *c = ctx->idle;
    if (c)
        ctx->idle = c->next;
    pthread_mutex_unlock(&ctx->lock);
    return c;
}

static void give_back(HAMSICONTEXT ctx, amsi__conn *c)
{
    pthread_mutex_lock(&ctx->lock);
    c->next = ctx->idle;
    ctx->idle = c;
    pthread_mutex_unlock(&ctx->lock);
}

int amsi__call_broker(HAMSICONTEXT ctx, amsi__conn **conn, const amsi__call *call,
                      amsi__answer *answer)
{
    int64_t deadline = now_ms() + ctx->timeout_ms;
    bool pooled = conn == NULL;
    amsi__conn *c = pooled ? take_idle(ctx) : *conn;
    bool fresh = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = 0;
        if (c == NULL) {
            rc = amsi__conn_open(ctx, &c);
            fresh = true;
        }
        uint64_t id = atomic_fetch_add_explicit(&ctx->next_id, 1, memory_order_relaxed);
        bool memfd = call->content_len > ctx->inline_max;
        if (rc == 0)
            rc = send_request(ctx, c, call, id, deadline, memfd);
        if (rc == AMSI__EMSGSIZE && !memfd) {
            /* More than this socket's buffer takes in one message: send it as a memfd. */
            rc = send_request(ctx, c, call, id, deadline, true);
        }
        if (rc == 0)
            rc = recv_reply(c, id, deadline, answer);
        if (rc == 0) {
            if (pooled)
                give_back(ctx, c);
            else
                *conn = c;
            return 0;
        }
        amsi__conn_close(c);
        c = NULL;
        if (!pooled)
            *conn = NULL;
        /* Only a connection that died before this call is worth one more try. */
        if (rc != AMSI__EUNAVAILABLE || fresh || now_ms() >= deadline)
            return rc;
    }
    return AMSI__EUNAVAILABLE;
}
