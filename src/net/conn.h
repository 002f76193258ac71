/* Connections: a libuv TCP stream with an optional TLS layer (OpenSSL with
 * memory BIOs, so all socket I/O stays on the loop), a bounded output
 * queue, and deferred freeing (a connection is freed only after its close
 * completes, never inside a callback chain). Listeners accept connections
 * (plain, or direct TLS per XEP-0368) and hand them to a transport. */
#ifndef ST_NET_CONN_H
#define ST_NET_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct st_tls;
struct st_conn;
struct st_listener;

/* Transport callbacks. All run on the loop thread. */
struct st_conn_handler {
    /* Decrypted application bytes arrived. */
    void (*on_read)(struct st_conn *c, const char *data, size_t len);
    /* The connection is gone (peer closed, error, or st_conn_close finished). After this
     * returns the connection is freed; the transport must drop its pointer. err is 0 for an
     * orderly close, else an ST_E* code. */
    void (*on_close)(struct st_conn *c, int err);
};

/* Called for each accepted connection; the callee must call st_conn_set_handler before
 * returning, or close it. */
typedef void (*st_accept_cb)(void *ud, struct st_conn *c);

/* Opens a listener on host:port ("0.0.0.0", "::", "127.0.0.1"...). When tls is non-NULL the
 * listener is direct TLS: the handshake starts at accept. max_per_ip bounds simultaneous
 * connections from one address (0 = unlimited); excess connections are closed at accept with
 * a log line. Returns 0 and *out, or ST_EIO with *err. */
int st_listener_open(uv_loop_t *loop, const char *host, int port, struct st_tls *tls,
                     unsigned max_per_ip, st_accept_cb cb, void *ud, struct st_listener **out,
                     char **err);
/* Replaces the TLS context for future accepts (reload). Takes a new reference. */
void st_listener_set_tls(struct st_listener *l, struct st_tls *tls);
/* Returns the bound port (useful with port 0). */
int st_listener_port(const struct st_listener *l);
/* Stops accepting and frees the listener (asynchronously). */
void st_listener_close(struct st_listener *l);

/* Installs the transport's callbacks and user data. */
void st_conn_set_handler(struct st_conn *c, const struct st_conn_handler *h, void *ud);
void *st_conn_data(const struct st_conn *c);

/* Queues bytes for sending (through TLS when active). Returns 0, ST_ELIMIT when the output
 * queue would exceed its cap (the caller should close the connection), or ST_ECLOSED. */
int st_conn_write(struct st_conn *c, const void *data, size_t len);
/* Sets the output queue cap in bytes (default 1 MiB). */
void st_conn_set_output_limit(struct st_conn *c, size_t max);
/* Returns bytes currently queued for output. */
size_t st_conn_output_pending(const struct st_conn *c);

/* Starts server-side TLS now (STARTTLS): bytes already queued are sent in plaintext first
 * (e.g. <proceed/>), all later I/O is encrypted. Returns 0 or ST_EIO. */
int st_conn_starttls(struct st_conn *c, struct st_tls *tls);
/* True when TLS is active (handshake may still be in progress). */
bool st_conn_is_tls(const struct st_conn *c);
/* The SNI name the client sent, or NULL (borrowed). */
const char *st_conn_sni(const struct st_conn *c);
/* The negotiated ALPN protocol or NULL (borrowed). */
const char *st_conn_alpn(const struct st_conn *c);
/* Channel-binding data: type "tls-exporter" (RFC 9266, TLS 1.3 only) or
 * "tls-server-end-point" (RFC 5929). Returns the length written, or -1 when unavailable. */
int st_conn_channel_binding(struct st_conn *c, const char *type, unsigned char *out, size_t outlen);
/* The negotiated TLS version number (e.g. TLS1_3_VERSION), 0 without TLS. */
int st_conn_tls_version(const struct st_conn *c);

/* Flushes queued output, then closes. on_close follows asynchronously. Idempotent. */
void st_conn_close(struct st_conn *c);
/* Closes immediately, dropping queued output. */
void st_conn_abort(struct st_conn *c);
/* Stops / resumes reading (back-pressure). */
void st_conn_pause(struct st_conn *c);
void st_conn_resume(struct st_conn *c);

/* The peer's address as text ("127.0.0.1", "::1"); borrowed. */
const char *st_conn_peer(const struct st_conn *c);
/* The local port the connection arrived on. */
int st_conn_local_port(const struct st_conn *c);

/* Memory held by the connection, including TLS state, for accounting. */
size_t st_conn_memory(const struct st_conn *c);

#endif
