/*
 * identity.c - caller identity from the kernel (see identity.h).
 */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/* Field 22 (starttime) of /proc/<pid>/stat; the command name may hold spaces and parentheses. */
static uint64_t read_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    /* After ") " come fields 3 (state) onwards; starttime is field 22. */
    int field = 2;
    unsigned long long v = 0;
    for (p++; *p && field < 22; p++)
        if (*p == ' ')
            field++;
    if (field == 22 && sscanf(p, "%llu", &v) == 1)
        return v;
    return 0;
}

int broker_identity_read(int fd, broker_identity *id)
{
    memset(id, 0, sizeof(*id));
    id->pidfd = -1;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return -errno;
    id->pid = cred.pid;
    id->uid = cred.uid;
    id->gid = cred.gid;
    int pidfd = -1;
    len = sizeof(pidfd);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 && pidfd >= 0)
        id->pidfd = pidfd;
    id->start_time = read_start_time(cred.pid);
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/exe", (long)cred.pid);
    ssize_t n = readlink(path, id->exe, sizeof(id->exe) - 1);
    id->exe[n > 0 ? n : 0] = '\0';
    return 0;
}

bool broker_identity_exited(const broker_identity *id)
{
    if (id->pidfd >= 0) {
        /* A pidfd becomes readable when its process exits. */
        struct pollfd p = {.fd = id->pidfd, .events = POLLIN};
        return poll(&p, 1, 0) == 1;
    }
    /* No pidfd: the pid now names no process, or another one (a different start time). */
    return id->start_time == 0 || read_start_time(id->pid) != id->start_time;
}

void broker_identity_cleanup(broker_identity *id)
{
    if (id && id->pidfd >= 0) {
        close(id->pidfd);
        id->pidfd = -1;
    }
}
