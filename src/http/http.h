/* The HTTP layer: a minimal strict HTTP/1.1 server (RFC 9112) on the
 * server's loop, with a route registry used by the BOSH and WebSocket
 * transports and by modules (host-meta, the web chat page). One struct
 * st_http per server holds the listeners (plain HTTP, and a direct-TLS port
 * that also accepts XMPP: ALPN "xmpp-client" vs "http/1.1", else the first
 * bytes decide), the open connections, the routes and the per-address
 * request counts. Requests may be answered later (BOSH holds them); a
 * connection handles one request at a time and keeps later pipelined bytes
 * buffered (bounded). Client addresses and "secure" come from the socket,
 * or, for trusted reverse proxies, from Forwarded (RFC 7239) /
 * X-Forwarded-For. Everything runs on the loop thread. */
#ifndef ST_HTTP_HTTP_H
#define ST_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"
#include "http/http_parse.h"
#include "starling/module.h"

struct st_server;
struct st_conn;
struct st_http;
struct st_http_conn;
struct st_tls;

/* A request handed to a route handler. The handler must eventually answer it exactly once
 * with st_http_respond or take the connection with st_http_upgrade; until then the request
 * stays valid, unless the connection goes away first: then the abort callback (if set) runs
 * and the request is freed right after it returns. */
struct st_http_request {
    struct st_http_req r;      /* the parsed request (method, path, headers, body) */
    struct st_server *srv;
    struct st_http_conn *hc;   /* NULL once the connection is gone */
    char client[64];           /* client address (the proxy's client for trusted proxies) */
    bool secure;               /* TLS to us, or TLS ended at a trusted proxy */
    bool tls;                  /* TLS on this very connection */
    char *host;                /* cached st_http_host() result */
    void (*on_abort)(struct st_http_request *req, void *ud);
    void *abort_ud;
};

/* Starts the HTTP layer: registers the built-in routes (BOSH, WebSocket) and opens the
 * listeners of settings.http. Module routes registered earlier are kept. Returns 0 or
 * ST_EIO (a port could not be opened; logged). Loop thread. */
int st_http_start(struct st_server *srv);
/* Closes the listeners and every HTTP connection (held requests are aborted); frees the
 * routes and the layer. Safe when never started. Loop thread. */
void st_http_stop(struct st_server *srv);
/* Swaps the TLS context of the HTTPS listener (SIGHUP). Takes a new reference. */
void st_http_set_tls(struct st_server *srv, struct st_tls *tls);

/* Registers a built-in route (owner NULL) or a module's route. Same matching as
 * st_module_http_route. Returns 0 or ST_EEXIST. */
int st_http_route_add(struct st_server *srv, const char *path, st_http_handler h, void *ud,
                      const void *owner);

/* Sets the callback that runs if the connection dies before the request is answered. */
void st_http_set_abort(struct st_http_request *req,
                       void (*cb)(struct st_http_request *req, void *ud), void *ud);
/* Takes the connection for a protocol upgrade (RFC 9110 §7.8): the HTTP layer forgets it and
 * frees req. Bytes the client sent after the request are appended to leftover (bounded by
 * its max). The caller installs its own handler (st_conn_set_handler) and writes the 101
 * response. Returns the connection (now owned by the caller), or NULL when it is gone. */
struct st_conn *st_http_upgrade(struct st_http_request *req, struct st_buf *leftover);
/* Adds the CORS response headers for req's Origin when http.cors_origins allows it. */
void st_http_cors_headers(struct st_http_request *req, struct st_buf *out);
/* True when origin (may be NULL) is in list (or list contains "*"). */
bool st_http_origin_allowed(const struct st_strlist *list, const char *origin);

/* ---- trusted proxies (exposed for the unit tests) ---- */
/* True when address addr (IP literal) matches spec: an IP literal or CIDR "net/len". */
bool st_http_addr_match(const char *spec, const char *addr);
/* Resolves the client address and the forwarded protocol: peer is the socket address; when it
 * is trusted, Forwarded (RFC 7239 §4) or else X-Forwarded-For is walked from the right,
 * skipping trusted entries. Writes the client into out (size outlen); sets *https when the
 * nearest proxy says it received HTTPS. Returns true when peer is a trusted proxy. */
bool st_http_resolve_client(const struct st_strlist *trusted, const char *peer,
                            const struct st_http_req *r, char *out, size_t outlen, bool *https);

#endif
