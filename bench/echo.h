/*
 * echo.h - the floor the broker benchmarks measure amsid against: a forked server with the
 * broker's shape (one epoll thread per core, each accepting with EPOLLEXCLUSIVE on an AF_UNIX
 * SOCK_SEQPACKET socket, one recvmsg and one send per request, polling for the next frame as
 * amsid's broker.spin_us does) that decodes each request frame
 * and answers with the reply amsid sends for a clean scan (a session id for a session open),
 * without scanning. Clients reach it through libamsi with AMSI_BROKER_SOCKET, so the difference
 * between it and amsid is what the broker adds per request.
 */
#ifndef BENCH_ECHO_H
#define BENCH_ECHO_H

#include <stddef.h>
#include <sys/types.h>

/* amsid's default broker.spin_us, which the floor copies unless told otherwise. */
#define BENCH_ECHO_SPIN_US 50

/*
 * Binds path, then forks the server with nthreads threads (at most 64), receiving frames of up
 * to inline_max content bytes, polling up to spin_us before sleeping (0: never). The child dies
 * with its parent; stop it with bench_stop_process(). Returns its pid, or -1 (reported on stderr).
 */
pid_t bench_echo_start(const char *path, unsigned nthreads, size_t inline_max, unsigned spin_us);

#endif
