/* Internal to src/net/: the listener and connection structures shared by
 * listener.c (accept, per-IP accounting, the shared read buffer, the write
 * coalescing list), conn.c (I/O, TLS, close) and connect.c (outgoing
 * connections, client-side TLS). Nothing outside net/ includes this file. */
#ifndef ST_NET_CONN_INT_H
#define ST_NET_CONN_INT_H

#include "base/buf.h"
#include "base/map.h"
#include "net/conn.h"

#include <stdint.h>

struct ssl_st;
struct ssl_ctx_st;

#define ST_NET_READ_BUF (64 * 1024)
#define ST_NET_PLAIN_BUF (16 * 1024) /* one TLS record of plaintext */
#define ST_NET_DEFAULT_OUTPUT_LIMIT (1024 * 1024)

/* A listener lives until it is closed AND its last connection is freed: connections borrow its
 * read buffers, flush list and per-IP table. */
struct st_listener {
    uv_loop_t *loop;
    uv_tcp_t server;
    uv_prepare_t flush;    /* runs before the loop polls: one write per connection per tick */
    struct st_conn *dirty; /* connections with output waiting for `flush` */
    unsigned refs;         /* 1 while open + 1 per connection */
    struct st_tls *tls;    /* direct TLS when non-NULL (own reference) */
    unsigned max_per_ip;
    struct st_map per_ip; /* peer address -> live connection count (as uintptr_t) */
    st_accept_cb cb;
    void *ud;
    int port;
    /* Read scratch, shared by every connection of the listener: reads are consumed inside
     * read_cb on the loop thread, so no connection owns a buffer while idle. */
    char rbuf[ST_NET_READ_BUF];
    char pbuf[ST_NET_PLAIN_BUF];
};

struct st_conn {
    uv_tcp_t tcp;     /* tcp.data = this */
    uv_write_t wreq;  /* the one in-flight write */
    struct st_listener *l;
    const struct st_conn_handler *h;
    void *ud;
    struct st_buf out;      /* bytes (plain or TLS records) for the next write */
    struct st_buf inflight; /* bytes owned by the in-flight uv_write */
    struct st_buf hold;     /* plaintext written while the TLS handshake runs */
    size_t out_limit;
    struct ssl_st *ssl;
    struct st_tls *tls;         /* reference held while ssl lives */
    const char *in_ptr;         /* ciphertext being fed to OpenSSL (points into l->rbuf) */
    size_t in_len;
    struct st_conn *dnext, *dprev; /* l->dirty list */
    int close_err;
    uint32_t rx_bytes;          /* read from the socket, mod 2^32 (diagnostics only) */
    uint32_t rx_plain;          /* of which TLS plaintext handed to h->on_read, mod 2^32 */
    uint16_t local_port;
    uint16_t peer_port;
    uint16_t out_hint;          /* bytes of the previous write: the next queue's first size */
    unsigned writing : 1;      /* wreq in flight */
    unsigned dirty : 1;        /* on l->dirty */
    unsigned closing : 1;      /* st_conn_close: flush, then shut down */
    unsigned shutting : 1;     /* uv_shutdown issued */
    unsigned uv_closing : 1;   /* uv_close issued; freed in its callback */
    unsigned paused : 1;
    unsigned reading : 1;
    unsigned hs_done : 1;      /* TLS handshake finished */
    unsigned tls_failed : 1;   /* fatal TLS error: no close_notify */
    unsigned counted_ip : 1;   /* included in l->per_ip */
    char peer[48];
};

/* conn.c: sets up a freshly accepted connection (tcp already accepted). */
void st_conn__init(struct st_conn *c, struct st_listener *l);
/* conn.c: starts reading unless paused or closing. */
void st_conn__start(struct st_conn *c);
/* conn.c: closes the handle now without calling on_close for a rejected connection. */
void st_conn__reject(struct st_conn *c);
/* conn.c: writes out every connection on l->dirty (the prepare callback). */
void st_conn__flush_all(struct st_listener *l);
/* conn.c: returns a new SSL object of ctx (borrowed) wired to c through the in-memory BIO
 * (writes append to c->out, reads take c->in_ptr/in_len), neither in client nor server state
 * yet; the caller stores it in c->ssl. NULL on failure (logged). Loop thread. */
struct ssl_st *st_conn__ssl_new(struct st_conn *c, struct ssl_ctx_st *ctx);
/* conn.c: puts c on its listener's flush list so its output is written before the next poll. */
void st_conn__mark_dirty(struct st_conn *c);
/* listener.c: releases a connection's hold on the listener (per-IP count, reference). */
void st_listener__conn_gone(struct st_listener *l, struct st_conn *c);

#endif
