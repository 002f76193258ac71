/* The physical-limit probe of `make bench` (issue 6): a single-threaded epoll
 * relay that accepts TCP connections, pairs them in accept order (first with
 * second, third with fourth, ...) and copies bytes between partners with
 * read(2)/write(2) and no parsing. Driven by `loadgen --mode message --raw`
 * with the same pairs, window and message size as the XMPP runs, it measures
 * what the kernel's loopback path and one core allow, the ceiling an XMPP
 * server (which must also parse, route and serialise) is compared with.
 * Back-pressure: when a partner cannot take more, the unsent bytes wait in a
 * bounded per-connection buffer and the source is not read until they leave. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/mem.h"

#define CHUNK 65536
#define MAX_CONNS 40000

struct rconn {
    int fd;
    int partner;       /* descriptor of the partner, -1 while unpaired */
    char *pend;        /* bytes read from the partner, not yet written here */
    size_t pend_len, pend_off;
    bool reading;      /* EPOLLIN on */
    bool writing;      /* EPOLLOUT on */
};

static struct rconn *conns; /* indexed by descriptor */
static int ep;
static int waiting = -1;    /* accepted descriptor still without a partner */

static void set_events(struct rconn *c)
{
    struct epoll_event ev = {.events = (c->reading ? EPOLLIN : 0u) | (c->writing ? EPOLLOUT : 0u),
                             .data.fd = c->fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void drop(int fd)
{
    struct rconn *c = &conns[fd];
    if (c->fd < 0)
        return;
    int p = c->partner;
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    st_free(c->pend);
    *c = (struct rconn){.fd = -1, .partner = -1};
    if (waiting == fd)
        waiting = -1;
    if (p >= 0)
        drop(p);
}

/* Writes pending bytes to c; returns false if c was dropped. */
static bool write_pending(struct rconn *c)
{
    while (c->pend_off < c->pend_len) {
        ssize_t n = write(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return true;
            drop(c->fd);
            return false;
        }
        c->pend_off += (size_t)n;
    }
    c->pend_off = c->pend_len = 0;
    return true;
}

static void on_readable(struct rconn *src)
{
    static char buf[CHUNK];
    struct rconn *dst = &conns[src->partner];
    ssize_t n = read(src->fd, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(src->fd);
        return;
    }
    if (n < 0)
        return;
    ssize_t w = write(dst->fd, buf, (size_t)n);
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
        drop(dst->fd);
        return;
    }
    if (w < 0)
        w = 0;
    if (w < n) {
        /* The partner is full: keep the rest and stop reading the source until it drains. */
        if (!dst->pend)
            dst->pend = st_malloc(CHUNK);
        memcpy(dst->pend, buf + w, (size_t)(n - w));
        dst->pend_off = 0;
        dst->pend_len = (size_t)(n - w);
        dst->writing = true;
        set_events(dst);
        src->reading = false;
        set_events(src);
    }
}

static void on_writable(struct rconn *dst)
{
    if (!write_pending(dst))
        return;
    if (dst->pend_len == 0) {
        dst->writing = false;
        set_events(dst);
        struct rconn *src = &conns[dst->partner];
        src->reading = true;
        set_events(src);
    }
}

static void on_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (fd >= MAX_CONNS) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[fd] = (struct rconn){.fd = fd, .partner = -1};
        struct epoll_event ev = {.events = 0, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        if (waiting < 0) {
            waiting = fd;
            continue;
        }
        struct rconn *a = &conns[waiting], *b = &conns[fd];
        a->partner = fd;
        b->partner = waiting;
        a->reading = b->reading = true;
        set_events(a);
        set_events(b);
        waiting = -1;
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else {
            fprintf(stderr, "usage: relay --port N [--host IP]\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: relay --port N [--host IP]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    conns = st_calloc(MAX_CONNS, sizeof *conns);
    for (int i = 0; i < MAX_CONNS; i++)
        conns[i] = (struct rconn){.fd = -1, .partner = -1};

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 4096) != 0) {
        perror("relay: bind/listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    fprintf(stderr, "relay: listening on %s:%ld\n", host, port);

    static struct epoll_event evs[1024];
    for (;;) {
        int n = epoll_wait(ep, evs, 1024, -1);
        for (int k = 0; k < n; k++) {
            int fd = evs[k].data.fd;
            if (fd == lfd) {
                on_accept(lfd);
                continue;
            }
            struct rconn *c = &conns[fd];
            if (c->fd < 0)
                continue;
            if (evs[k].events & (EPOLLERR | EPOLLHUP)) {
                drop(fd);
                continue;
            }
            if ((evs[k].events & EPOLLOUT) && c->writing)
                on_writable(c);
            if (c->fd >= 0 && (evs[k].events & EPOLLIN) && c->reading && c->partner >= 0)
                on_readable(c);
        }
    }
}
