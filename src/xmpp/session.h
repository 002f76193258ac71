/* Sessions: what the router delivers to. A session belongs to a transport
 * (c2s today; BOSH and WebSocket later) which provides the vtable; the
 * router and modules see only this struct. Sessions are registered in
 * their host's account table once a resource is bound (RFC 6120 §7). */
#ifndef ST_XMPP_SESSION_H
#define ST_XMPP_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "xmpp/jid.h"

struct st_server;
struct st_host;
struct st_xml;
struct st_session;

struct st_session_ops {
    /* Serialises and queues stanza for the client (borrows it). Returns 0 or an error (the
     * transport closes the session itself when its output queue overflows). */
    int (*send)(struct st_session *s, struct st_xml *stanza);
    /* Closes with a stream error condition (NULL = orderly close) and optional text. */
    void (*close)(struct st_session *s, const char *condition, const char *text);
};

struct st_session {
    const struct st_session_ops *ops;
    void *transport;          /* the transport's own state */
    struct st_server *srv;
    struct st_host *host;     /* set once the stream names a served host */
    char id[40];              /* stream id: 128 random bits in hex */
    char *username;           /* prepared localpart once authenticated */
    struct st_jid jid;        /* full JID once bound */
    bool authenticated;
    bool bound;
    bool closing;
    bool secure;              /* TLS active */
    /* presence state (RFC 6121 §4); the presence module owns its meaning */
    bool available;
    bool interested;          /* requested the roster */
    int priority;
    struct st_xml *presence;  /* last available presence broadcast (a reference), or NULL */
    uint64_t last_active_ms;
    struct st_session *next_resource; /* in the account's list */
};

/* Initialises a new session for a transport (id generated). */
void st_session_init(struct st_session *s, struct st_server *srv, const struct st_session_ops *ops,
                     void *transport);
/* Releases what the session owns (jid, username, presence); the struct itself belongs to the
 * transport. Unbinds first when bound. */
void st_session_destroy(struct st_session *s);

/* Binds s to resource (already prepared) on its host: registers it for delivery.
 * Returns 0, ST_ELIMIT when the account has max_resources sessions, or ST_EEXIST when the full
 * JID is taken (the caller decides to replace: see st_session_find_full). */
int st_session_bind(struct st_session *s, const char *resource);
/* Unregisters a bound session (idempotent); fires "session-closed". */
void st_session_unbind(struct st_session *s);

/* Returns the bound session for a full JID, or NULL. */
struct st_session *st_session_find_full(struct st_server *srv, const struct st_jid *jid);
/* Returns the first bound session of an account (iterate with ->next_resource), or NULL. */
struct st_session *st_session_first(struct st_server *srv, const char *host, const char *bare);


/* Delivers a stanza to a session (borrows it). */
int st_session_send(struct st_session *s, struct st_xml *stanza);

#endif
