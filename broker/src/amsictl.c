/*
 * amsictl - talks to a running amsid over its control socket.
 *
 *   amsictl [--control PATH] [--config FILE] ping | stats [--json] | reload | shutdown
 *
 * Prints the broker's answer. Exit status: 0 when the broker answered without "error:", 1 when it
 * answered with an error, 2 when it could not be reached or the arguments were wrong.
 */
#include "broker/config.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"control", required_argument, NULL, 'C'},
                                         {"config", required_argument, NULL, 'c'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *control = NULL, *config = NULL;
    int json = 0, opt;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'C':
            control = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'j':
            json = 1;
            break;
        default:
            fprintf(opt == 'h' ? stdout : stderr, "usage: amsictl [--control PATH] [--config FILE] "
                                                  "ping | stats [--json] | reload | shutdown\n");
            return opt == 'h' ? 0 : 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "amsictl: one command expected (ping, stats, reload, shutdown)\n");
        return 2;
    }
    broker_config cfg;
    char err[512];
    broker_config_init(&cfg);
    if (config && broker_config_load(&cfg, config, err, sizeof(err)) != 0) {
        fprintf(stderr, "amsictl: %s\n", err);
        broker_config_cleanup(&cfg);
        return 2;
    }
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    const char *path = control ? control : cfg.broker.control_socket;
    if (strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "amsictl: control socket path too long\n");
        broker_config_cleanup(&cfg);
        return 2;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "%s%s", argv[optind], json ? " --json" : "");
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        fprintf(stderr, "amsictl: cannot reach amsid at %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        broker_config_cleanup(&cfg);
        return 2;
    }
    broker_config_cleanup(&cfg);
    char reply[8192];
    ssize_t n = -1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    /* A reload compiles the rules: allow it time. */
    if (send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) >= 0 && poll(&p, 1, 120000) == 1)
        n = recv(fd, reply, sizeof(reply) - 1, 0);
    close(fd);
    if (n <= 0) {
        fprintf(stderr, "amsictl: no answer from amsid\n");
        return 2;
    }
    reply[n] = '\0';
    puts(reply);
    return strncmp(reply, "error:", 6) == 0 ? 1 : 0;
}
