/* XMPP over WebSocket (RFC 7395) at /xmpp-websocket: the HTTP upgrade
 * (RFC 6455 §4.2) and the framed c2s stream. */
#ifndef ST_TRANSPORT_WEBSOCKET_H
#define ST_TRANSPORT_WEBSOCKET_H

struct st_server;

/* Registers the /xmpp-websocket route with the HTTP layer. Loop thread. */
void st_ws_register(struct st_server *srv);

#endif
