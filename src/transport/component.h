/* External component streams (XEP-0114, the jabber:component:accept
 * protocol): the listener, the handshake, stanza intake with 'from'
 * checks, and delivery of the router's "<kind>/component" events to the
 * connected component. Only server.c and the tests include this header. */
#ifndef ST_TRANSPORT_COMPONENT_H
#define ST_TRANSPORT_COMPONENT_H

#include <stdbool.h>
#include <stddef.h>

struct st_server;

/* Opens the component listener(s) (listen.component_port on listen.component_interfaces;
 * nothing when the port is 0 or no component is configured) and registers the routing hooks.
 * Returns 0, or ST_EIO when a listener cannot be opened (logged). Loop thread, at start. */
int st_component_start(struct st_server *srv);
/* Applies a reloaded configuration (SIGHUP) to the streams: a component no longer configured
 * gets <host-gone/> (RFC 6120 §4.9.3.6) and is unlinked, so stanzas to it bounce from now on.
 * Secrets are read at each handshake, so a changed one applies to the next connection. Call
 * after srv->settings was replaced. Loop thread. */
void st_component_reload(struct st_server *srv);
/* Closes the listeners and every component stream (<system-shutdown/>), unlinking them so
 * stanzas to components bounce from now on. The streams finish closing asynchronously; the
 * transport's state is freed when the last is gone. Idempotent. Loop thread. */
void st_component_stop(struct st_server *srv);

/* The XEP-0114 §3 handshake value: lowercase hex SHA-1 of stream_id followed by secret, into
 * out (41 bytes with the NUL). Borrows both strings. Any thread. */
void st_component_digest(const char *stream_id, const char *secret, char out[41]);
/* True when given (the <handshake/> text, hex in either case) equals the digest for stream_id
 * and secret. Compares in constant time (CRYPTO_memcmp) so the secret cannot be probed by
 * timing. Any thread. */
bool st_component_digest_ok(const char *stream_id, const char *secret, const char *given);

#endif
