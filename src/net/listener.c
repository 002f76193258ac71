/* Listeners: bind host:port (IPv4 or IPv6; "::" is IPv6-only so it can share
 * a port with "0.0.0.0"), accept with a backlog of 1024, enforce the per-IP
 * connection limit, and start TLS at accept for direct-TLS ports
 * (XEP-0368 §3). A listener also owns what its connections share on the
 * loop thread: the 64 KiB read buffer, the TLS plaintext buffer and the
 * list of connections whose output is flushed before the loop next polls.
 * It is freed once closed and its last connection is gone. */
#include "net/conn_int.h"

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "net/tls.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#define BACKLOG 1024

static void listener_free_cb(uv_handle_t *h)
{
    struct st_listener *l = h->data;
    st_map_free(&l->per_ip);
    st_tls_unref(l->tls);
    st_free(l);
}

static void listener_unref(struct st_listener *l)
{
    if (--l->refs == 0) {
        assert(l->dirty == NULL);
        uv_close((uv_handle_t *)&l->flush, listener_free_cb);
    }
}

static void server_closed_cb(uv_handle_t *h)
{
    listener_unref(h->data);
}

void st_listener__conn_gone(struct st_listener *l, struct st_conn *c)
{
    if (c->counted_ip) {
        uintptr_t n = (uintptr_t)st_map_get(&l->per_ip, c->peer);
        if (n <= 1)
            st_map_del(&l->per_ip, c->peer);
        else
            st_map_set(&l->per_ip, c->peer, (void *)(n - 1));
    }
    listener_unref(l);
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t outlen, int *port)
{
    out[0] = '\0';
    *port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        uv_ip4_name(a, out, outlen);
        *port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        uv_ip6_name(a, out, outlen);
        *port = ntohs(a->sin6_port);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    struct st_listener *l = server->data;
    if (status < 0) {
        st_log_warn("net", "accept on port %d failed: %s", l->port, uv_strerror(status));
        return;
    }
    struct st_conn *c = ST_NEW(struct st_conn);
    st_conn__init(c, l);
    l->refs++;
    if (uv_tcp_init(l->loop, &c->tcp) != 0) {
        /* Never initialised: nothing to close. */
        st_listener__conn_gone(l, c);
        st_free(c);
        return;
    }
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        st_conn__reject(c);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss, port;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        addr_text(&ss, c->peer, sizeof c->peer, &port);
        c->peer_port = (uint16_t)port;
    }
    len = sizeof ss;
    if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        char ignored[64];
        addr_text(&ss, ignored, sizeof ignored, &port);
        c->local_port = (uint16_t)port;
    }
    if (l->max_per_ip) {
        uintptr_t n = (uintptr_t)st_map_get(&l->per_ip, c->peer);
        if (n >= l->max_per_ip) {
            st_log_info("net", "rejecting connection from %s on port %d: %u connections from "
                        "that address already (limit)", c->peer, l->port, (unsigned)n);
            st_conn__reject(c);
            return;
        }
        st_map_set(&l->per_ip, c->peer, (void *)(n + 1));
        c->counted_ip = 1;
    }
    uv_tcp_nodelay(&c->tcp, 1); /* we coalesce output ourselves */
    if (l->tls && st_conn_starttls(c, l->tls) != 0) {
        st_conn__reject(c);
        return;
    }
    l->cb(l->ud, c);
    if (!c->h && !c->closing && !c->uv_closing) {
        st_log_error("net", "accept callback on port %d set no handler; closing", l->port);
        st_conn__reject(c);
        return;
    }
    st_conn__start(c);
}

int st_listener_open(uv_loop_t *loop, const char *host, int port, struct st_tls *tls,
                     unsigned max_per_ip, st_accept_cb cb, void *ud, struct st_listener **out,
                     char **err)
{
    *out = NULL;
    if (err)
        *err = NULL;
    char msg[512];
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    bool v6 = strchr(host, ':') != NULL;
    int r = v6 ? uv_ip6_addr(host, port, &addr.in6) : uv_ip4_addr(host, port, &addr.in4);
    if (r != 0 || port < 0 || port > 65535) {
        if (err) {
            snprintf(msg, sizeof msg, "cannot listen on %s port %d: not an IP address and port",
                     host, port);
            *err = st_strdup(msg);
        }
        return ST_EINVAL;
    }
    struct st_listener *l = ST_NEW(struct st_listener);
    l->loop = loop;
    l->refs = 1;
    l->tls = st_tls_ref(tls);
    l->max_per_ip = max_per_ip;
    l->cb = cb;
    l->ud = ud;
    st_map_init(&l->per_ip);
    uv_prepare_init(loop, &l->flush);
    l->flush.data = l;
    uv_tcp_init(loop, &l->server);
    l->server.data = l;
    /* libuv sets SO_REUSEADDR on bind. */
    r = uv_tcp_bind(&l->server, &addr.sa, v6 ? UV_TCP_IPV6ONLY : 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&l->server, BACKLOG, on_connection);
    if (r != 0) {
        if (err) {
            snprintf(msg, sizeof msg, "cannot listen on %s%s%s port %d: %s", v6 ? "[" : "", host,
                     v6 ? "]" : "", port, uv_strerror(r));
            *err = st_strdup(msg);
        }
        uv_close((uv_handle_t *)&l->server, server_closed_cb);
        return ST_EIO;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char ignored[64];
    if (uv_tcp_getsockname(&l->server, (struct sockaddr *)&ss, &len) == 0)
        addr_text(&ss, ignored, sizeof ignored, &l->port);
    *out = l;
    return 0;
}

void st_listener_set_tls(struct st_listener *l, struct st_tls *tls)
{
    struct st_tls *old = l->tls;
    l->tls = st_tls_ref(tls);
    st_tls_unref(old);
}

int st_listener_port(const struct st_listener *l)
{
    return l->port;
}

void st_listener_close(struct st_listener *l)
{
    if (!l)
        return;
    uv_close((uv_handle_t *)&l->server, server_closed_cb);
}
