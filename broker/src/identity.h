/*
 * identity.h - who is on the other end of a connection, from the kernel, never from the client's
 * words (DESIGN.md §4): SO_PEERCRED at connect, the process start time from /proc/<pid>/stat (so a
 * reused pid is a new caller), the executable from /proc/<pid>/exe, and SO_PEERPIDFD where the
 * kernel has it.
 */
#ifndef BROKER_IDENTITY_H
#define BROKER_IDENTITY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct broker_identity {
    pid_t pid;
    uid_t uid;
    gid_t gid;
    uint64_t start_time; /* clock ticks since boot (field 22 of /proc/<pid>/stat); 0 unknown */
    int pidfd;           /* SO_PEERPIDFD, or -1 */
    char exe[512];       /* "" when the process is gone or unreadable */
} broker_identity;

/*
 * Reads the peer of a connected AF_UNIX socket. Fails (-errno) only when SO_PEERCRED fails; a
 * process that exited since connecting leaves start_time 0 and exe "". Release with
 * broker_identity_cleanup().
 */
int broker_identity_read(int fd, broker_identity *id);
/*
 * True when the process has exited (or its start time was never known, so it cannot be told from
 * a newer process with its pid). One poll() on the pidfd, or a read of /proc/<pid>/stat.
 */
bool broker_identity_exited(const broker_identity *id);

void broker_identity_cleanup(broker_identity *id);

#endif
