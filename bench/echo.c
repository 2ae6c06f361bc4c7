/*
 * echo.c - the echo floor (see echo.h): a server with amsid's shape that answers every request
 * as amsid answers a clean scan, without scanning.
 */
#include "echo.h"

#include "amsi.h"
#include "amsi_protocol.h"
#include "amsi_spin.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define ECHO_MAX_EVENTS 64

typedef struct echo_server {
    int listen_fd;
    size_t rx_cap;
    unsigned spin_us;
} echo_server;

/*
 * Reads one request frame and answers it as amsid answers a clean scan, without scanning.
 * Returns false when the connection should be closed.
 */
static bool echo_frame(int fd, uint8_t *rx, size_t cap, uint64_t *scan_id)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * 4)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {rx, cap};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (n == 0)
        return false;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int pfd;
            memcpy(&pfd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            close(pfd);
        }
    }
    amsi_proto_request req;
    int rc = amsi_proto_decode_request(rx, (size_t)n, &req);
    amsi_proto_reply rep = {
        .request_id = req.request_id,
        .session_id = rc == 0 && req.type == AMSI_PROTO_SESSION_OPEN ? 1 : req.session_id,
        .scan_id = (*scan_id)++,
        .status = rc == 0 ? AMSI_PROTO_STATUS_OK : AMSI_PROTO_STATUS_BAD_REQUEST,
        .amsi_result = AMSI_RESULT_NOT_DETECTED,
        .rule = "",
        .object = "",
        .reason = ""};
    uint8_t frame[AMSI_PROTO_MAX_REPLY];
    size_t len;
    if (amsi_proto_encode_reply(&rep, frame, sizeof(frame), &len) != 0)
        return false;
    for (int tries = 0; tries < 2; tries++) {
        if (send(fd, frame, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
            return rc == 0;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return false;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        (void)poll(&p, 1, 1000);
    }
    return false;
}

/* One echo thread: its own epoll set, the connections it accepted. */
static void *echo_thread(void *arg)
{
    const echo_server *e = arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    uint8_t *rx = malloc(e->rx_cap);
    struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = 0};
    if (ep < 0 || rx == NULL || epoll_ctl(ep, EPOLL_CTL_ADD, e->listen_fd, &lev) != 0)
        _exit(3);
    struct epoll_event events[ECHO_MAX_EVENTS];
    uint64_t scan_id = 1;
    amsi_spin spin = {.budget_ns = (uint64_t)e->spin_us * 1000u};
    for (;;) {
        /* amsid's wait: poll for up to the spin budget while waits are short, then sleep. */
        int n = amsi_spin_epoll_wait(&spin, ep, events, ECHO_MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            if (events[i].data.u64 == 0) {
                int fd;
                while ((fd = accept4(e->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >=
                       0) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)fd + 1};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
                        close(fd);
                }
                continue;
            }
            int fd = (int)(events[i].data.u64 - 1);
            bool keep =
                (events[i].events & EPOLLIN) ? echo_frame(fd, rx, e->rx_cap, &scan_id) : false;
            if (!keep) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                close(fd);
            }
        }
    }
    return NULL;
}

/* Binds and listens on an AF_UNIX SOCK_SEQPACKET socket as amsid does. Returns the fd or -1. */
static int listen_seqpacket(const char *path, size_t inline_max)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return -1;
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 1024) != 0) {
        close(fd);
        return -1;
    }
    int sz = (int)(inline_max + 65536);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    return fd;
}

pid_t bench_echo_start(const char *path, unsigned nthreads, size_t inline_max, unsigned spin_us)
{
    int fd = listen_seqpacket(path, inline_max);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot listen on %s: %s\n", program_invocation_short_name, path,
                strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return -1;
    }
    if (pid > 0) {
        close(fd);
        return pid;
    }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGINT, SIG_IGN); /* the parent stops it with SIGTERM after its own clean-up */
    signal(SIGTERM, SIG_DFL);
    /* This frame lives as long as the threads: echo_thread() below never returns. */
    echo_server e = {.listen_fd = fd,
                     .rx_cap = AMSI_PROTO_REQ_HEADER + AMSI_PROTO_MAX_APP + AMSI_PROTO_MAX_NAME +
                               inline_max,
                     .spin_us = spin_us};
    pthread_t th[64];
    unsigned n = nthreads > 64 ? 64 : nthreads;
    for (unsigned i = 1; i < n; i++)
        if (pthread_create(&th[i], NULL, echo_thread, &e) != 0)
            _exit(3);
    echo_thread(&e);
    _exit(0);
}
