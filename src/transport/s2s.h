/* Federation: the server-to-server subsystem (RFC 6120 §4–§6 between
 * servers, XEP-0220 Server Dialback, XEP-0288 bidirectional streams,
 * XEP-0368 direct TLS). The server starts it after the modules and stops it
 * at shutdown; everything else happens through the "<kind>/remote" router
 * events it hooks and the s2s listeners it opens. */
#ifndef ST_TRANSPORT_S2S_H
#define ST_TRANSPORT_S2S_H

struct st_server;

/* Starts federation for srv: the resolver, the client TLS configuration (trust store, our
 * certificates), the s2s listeners (s2s.port, s2s.tls_port on listen.interfaces) and the
 * routing hooks. With s2s.port and s2s.tls_port both 0 outgoing federation still works.
 * Returns 0, or an ST_E* error after logging why (the server refuses to start). Loop thread,
 * after srv->tls is loaded. */
int st_s2s_start(struct st_server *srv);
/* Applies reloaded settings (routes, CA files, certificates, TLS of the direct-TLS
 * listener). Must be called while srv->settings is the fresh configuration and its document
 * is still alive (routes are copied). Keeps the old state on error. Loop thread. */
void st_s2s_reload(struct st_server *srv);
/* Stops federation: listeners close, queued stanzas bounce, every stream closes with
 * <system-shutdown/>; the state is freed once the last stream is gone. Idempotent; NULL
 * state allowed. Loop thread. */
void st_s2s_stop(struct st_server *srv);

#endif
