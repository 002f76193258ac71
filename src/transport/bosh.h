/* BOSH (XEP-0124, XEP-0206) at /http-bind: sessions of held HTTP requests
 * carrying a framed c2s stream. */
#ifndef ST_TRANSPORT_BOSH_H
#define ST_TRANSPORT_BOSH_H

struct st_server;

/* Registers the /http-bind route with the HTTP layer. Returns the BOSH state (owned by the
 * caller, the HTTP layer, until st_bosh_stop). Loop thread. */
void *st_bosh_register(struct st_server *srv);
/* Ends every BOSH session still open (server shutdown) and frees the state. NULL allowed. */
void st_bosh_stop(void *state);

#endif
