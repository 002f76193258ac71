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

/* Opens a listener on host:port ("0.0.0.0", "::", "127.0.0.1"...; "::" is IPv6-only so it can
 * share a port with "0.0.0.0"; port 0 = ephemeral). When tls is non-NULL the listener is direct
 * TLS (XEP-0368): the handshake starts at accept; the listener takes its own reference to tls.
 * max_per_ip bounds simultaneous connections from one address (0 = unlimited); excess
 * connections are closed at accept with an info log line, the accept callback never sees them.
 * Returns 0 and *out; ST_EINVAL (host is not an IP literal) or ST_EIO (bind/listen failed) with
 * *err (new string, caller frees with st_free). Loop thread. */
int st_listener_open(uv_loop_t *loop, const char *host, int port, struct st_tls *tls,
                     unsigned max_per_ip, st_accept_cb cb, void *ud, struct st_listener **out,
                     char **err);
/* Replaces the TLS context for future accepts (reload). Takes a new reference. */
void st_listener_set_tls(struct st_listener *l, struct st_tls *tls);
/* Returns the bound port (useful with port 0). */
int st_listener_port(const struct st_listener *l);
/* Stops accepting and frees the listener (asynchronously: its memory lives on until its last
 * connection is freed, since connections share its read buffer). NULL is allowed. */
void st_listener_close(struct st_listener *l);

/* Installs the transport's callbacks and user data. */
void st_conn_set_handler(struct st_conn *c, const struct st_conn_handler *h, void *ud);
void *st_conn_data(const struct st_conn *c);

/* Queues bytes for sending (through TLS when active); borrows data. Bytes written in one loop
 * tick are coalesced into one socket write made before the loop next polls. Never calls
 * on_close. Returns 0, ST_ELIMIT when the output queue would exceed its cap (the caller should
 * close the connection), ST_ECLOSED after close/abort, or ST_EIO on a TLS failure (the
 * connection is then closing). While a TLS handshake runs, data is held as plaintext and
 * encrypted once it completes. */
int st_conn_write(struct st_conn *c, const void *data, size_t len);
/* Sets the output queue cap in bytes (default 1 MiB). */
void st_conn_set_output_limit(struct st_conn *c, size_t max);
/* Returns bytes currently queued for output. */
size_t st_conn_output_pending(const struct st_conn *c);

/* Starts server-side TLS now (STARTTLS): bytes already queued are sent in plaintext first
 * (e.g. <proceed/>), all later I/O is encrypted; the handshake is driven by the client's bytes.
 * Takes a new reference to tls for the connection's lifetime. A failed handshake ends in
 * on_close(ST_EIO) and an info log line with the OpenSSL reason. Returns 0, ST_ECLOSED, or
 * ST_EIO (TLS already active or OpenSSL failure). */
int st_conn_starttls(struct st_conn *c, struct st_tls *tls);
/* True when TLS is active (handshake may still be in progress). */
bool st_conn_is_tls(const struct st_conn *c);
/* The SNI name the client sent, or NULL (borrowed). */
const char *st_conn_sni(const struct st_conn *c);
/* The negotiated ALPN protocol or NULL (borrowed). */
const char *st_conn_alpn(const struct st_conn *c);
/* Channel-binding data: type "tls-exporter" (RFC 9266, TLS 1.3 only, 32 bytes) or
 * "tls-server-end-point" (RFC 5929 §4.1: hash of our certificate). Returns the length written,
 * or -1 when unavailable (no TLS, handshake not finished, TLS 1.2 exporter, outlen too small). */
int st_conn_channel_binding(struct st_conn *c, const char *type, unsigned char *out, size_t outlen);
/* The negotiated TLS version number (e.g. TLS1_3_VERSION), 0 without TLS. */
int st_conn_tls_version(const struct st_conn *c);

/* Stops reading, flushes queued output (then a TLS close_notify), shuts down the socket and
 * closes. on_close(c, 0) follows asynchronously from a libuv callback, never inside this call.
 * Plaintext held during an unfinished TLS handshake is dropped. Idempotent. The transport
 * bounds how long a flush may take (st_conn_abort on its own timer). */
void st_conn_close(struct st_conn *c);
/* Closes immediately, dropping queued output; also ends a close that is still flushing.
 * on_close follows asynchronously. Idempotent. */
void st_conn_abort(struct st_conn *c);
/* Stops / resumes reading (back-pressure). Takes effect at the next socket read: bytes of the
 * read being delivered (including the rest of a decrypted TLS chunk) still reach on_read. */
void st_conn_pause(struct st_conn *c);
void st_conn_resume(struct st_conn *c);

/* The peer's address as text ("127.0.0.1", "::1"); borrowed. */
const char *st_conn_peer(const struct st_conn *c);
/* The peer's TCP port (0 if unknown): logged so a connection can be matched with the
 * client's or a firewall's records. */
unsigned st_conn_peer_port(const struct st_conn *c);
/* Writes a one-line summary of the connection's I/O state (TLS, reading, paused, queued
 * output) into out, for diagnosing a stream that stopped making progress. */
void st_conn_describe(const struct st_conn *c, char *out, size_t n);
/* The local port the connection arrived on. */
int st_conn_local_port(const struct st_conn *c);

/* Memory held by the connection: struct, queued output, and an estimate of OpenSSL's state
 * (measured on OpenSSL 3.0: about 14 KiB per idle TLS connection after the handshake). */
size_t st_conn_memory(const struct st_conn *c);

#endif
