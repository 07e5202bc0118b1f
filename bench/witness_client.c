/* A minimal witness client for benchmarks: what tests/common's bash command does, without bash's own
 * start-up time (about 2 ms here), so that a handoff figure measures the supervisor, not the shell.
 * Connects to 127.0.0.1:<argv[1]>, reports "$WORKER $NODE $TOKEN $PID $ZNODE\n", and holds the connection
 * until the process dies or the witness closes it. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v ? v : "";
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return 111;
    char line[4096];
    int n = snprintf(line, sizeof line, "%s %s %s %d %s\n", env("ZK_SUPERVISE_WORKER"), env("ZK_SUPERVISE_NODE"),
                     env("ZK_SUPERVISE_FENCING_TOKEN"), (int)getpid(), env("ZK_SUPERVISE_ZNODE"));
    if (write(fd, line, (size_t)n) != n) return 1;
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    return 0;
}
