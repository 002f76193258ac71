/* The router (RFC 6120 §10, RFC 6121 §8): classifies a stanza's 'to'
 * (host, bare, full, remote), fires the delivery events modules hook, and
 * applies the RFC's default rule when no handler claims the stanza. */
#ifndef ST_XMPP_ROUTER_H
#define ST_XMPP_ROUTER_H

struct st_server;
struct st_session;
struct st_xml;

/* Routes stanza (borrowed) whose 'from' is already stamped. origin is the client session it
 * came from, or NULL for server-generated stanzas. Returns 0; errors are answered to the
 * sender as stanza errors. */
int st_route(struct st_server *srv, struct st_session *origin, struct st_xml *stanza);

/* Resolves a reply to a pending server-originated IQ (iq.c). Returns 1 when consumed. */
int st_iq_pending_resolve(struct st_server *srv, struct st_xml *reply, const char *from);
/* Cancels every pending IQ (their callbacks get NULL). For shutdown. */
void st_iq_pending_cancel_all(struct st_server *srv);

#endif
