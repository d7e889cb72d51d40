/*
 * epoll-echo.c - the ceiling for the echo benchmark: a TCP echo server in plain C, no Node.
 *
 * One thread, one level-triggered epoll set. The listening socket accepts with accept4()
 * (non-blocking) until EAGAIN. Each readiness of a client does one read(2) into a shared
 * 64 KiB buffer and sends the bytes straight back; only what the kernel refused is copied
 * into a per-connection queue, and the connection then waits for EPOLLOUT instead of EPOLLIN
 * (a client that does not read its echoes is not read either) until the queue is written.
 * Loopback only, TCP_NODELAY, listen backlog 1024, like the other servers of bench/.
 *
 *   epoll-echo [--host 127.0.0.1] [--port PORT]   prints "listening on HOST:PORT"
 *
 * Build: cc -O2 -o /tmp/epoll-echo epoll-echo.c (npm run bench does this in a temp dir).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 1024

/* A connection's unsent remainder; q == NULL while everything was written. */
struct conn {
    char *q;
    uint32_t len, off;
};

static struct conn *conns; /* indexed by descriptor, sized by RLIMIT_NOFILE */
static size_t nconns;
static int ep, lfd, spare_fd = -1;
static char buf[64 * 1024];

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void usage(void) {
    fprintf(stderr, "usage: epoll-echo [--host 127.0.0.1] [--port PORT]\n");
    exit(2);
}

static void watch(int fd, uint32_t events, int op) {
    struct epoll_event ev = { .events = events, .data.fd = fd };
    if (epoll_ctl(ep, op, fd, &ev) < 0) die("epoll_ctl");
}

static void drop(int fd) {
    free(conns[fd].q);
    conns[fd] = (struct conn){ 0 };
    close(fd); /* also leaves the epoll set: no descriptor is ever duplicated */
}

static void accept_all(void) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if ((errno == EMFILE || errno == ENFILE) && spare_fd >= 0) {
                /* Out of descriptors: refuse one connection through the spare descriptor, or
                 * the level-triggered listener would report it again forever. */
                close(spare_fd);
                int x = accept(lfd, NULL, NULL);
                if (x >= 0) close(x);
                spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                fprintf(stderr, "epoll-echo: out of descriptors, a connection was refused\n");
                if (x >= 0) continue;
            }
            return; /* EAGAIN: the backlog is empty */
        }
        if ((size_t)fd >= nconns) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        watch(fd, EPOLLIN, EPOLL_CTL_ADD);
    }
}

/* Send len bytes of p; keep the refused remainder and wait for EPOLLOUT. */
static void send_or_queue(int fd, const char *p, size_t len) {
    ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
    if (w == (ssize_t)len) return;
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            drop(fd);
            return;
        }
        w = 0;
    }
    struct conn *c = &conns[fd];
    c->len = (uint32_t)(len - (size_t)w);
    c->off = 0;
    if (!(c->q = malloc(c->len))) die("malloc");
    memcpy(c->q, p + w, c->len);
    watch(fd, EPOLLOUT, EPOLL_CTL_MOD);
}

static void on_readable(int fd) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r > 0) send_or_queue(fd, buf, (size_t)r);
    else if (r == 0 || (errno != EAGAIN && errno != EINTR)) drop(fd); /* EOF or error */
}

static void on_writable(int fd) {
    struct conn *c = &conns[fd];
    ssize_t w = send(fd, c->q + c->off, c->len - c->off, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN && errno != EINTR) drop(fd);
        return;
    }
    c->off += (uint32_t)w;
    if (c->off < c->len) return;
    free(c->q);
    *c = (struct conn){ 0 };
    watch(fd, EPOLLIN, EPOLL_CTL_MOD);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: epoll-echo [--host 127.0.0.1] [--port PORT]\n");
            return 0;
        } else if (!strcmp(argv[i], "--host") && i + 1 < argc) {
            host = argv[++i];
        } else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || end == argv[i] || v < 0 || v > 65535) usage();
            port = (int)v;
        } else {
            usage();
        }
    }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || (ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "epoll-echo: --host must be an IPv4 loopback address, got %s\n", host);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) die("getrlimit");
    nconns = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1048576 ? 1048576 : (size_t)rl.rlim_cur;
    if (!(conns = calloc(nconns, sizeof *conns))) die("calloc");
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(lfd, 1024) < 0) die("listen");
    socklen_t salen = sizeof sa;
    if (getsockname(lfd, (struct sockaddr *)&sa, &salen) < 0) die("getsockname");
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0) die("epoll_create1");
    watch(lfd, EPOLLIN, EPOLL_CTL_ADD);
    printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);

    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) accept_all();
            /* A connection watches either EPOLLIN or EPOLLOUT; errors and hang-ups come with
             * either, and the read or send that follows finds them. */
            else if (conns[fd].q) on_writable(fd);
            else on_readable(fd);
        }
    }
}
