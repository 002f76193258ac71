/* Client-to-server transport (RFC 6120 over TCP, STARTTLS or direct TLS).
 * c2s.c holds the stream and stanza intake; c2s_sasl.c the SASL exchange and
 * resource binding. The same negotiation serves the web transports: a c2s
 * with an io vtable writes through it instead of a TCP stream (RFC 7395
 * WebSocket framing in websocket.c, XEP-0206 BOSH bodies in bosh.c), and
 * those transports feed the stream events (open, stanza, close) themselves.
 * Only the transport layer (and the HTTP layer's port sniffing) include this
 * header. */
#ifndef ST_TRANSPORT_C2S_H
#define ST_TRANSPORT_C2S_H

#include "event/stream_timer.h"
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "xmpp/scram.h"
#include "xmpp/settings.h"
#include "xmpp/session.h"

struct st_conn;
struct st_server;
struct st_xml;
struct st_xml_parser;

struct c2s;

/* The output side of a framed c2s stream (WebSocket, BOSH). All run on the loop. */
struct st_c2s_io {
    /* Queues serialised top-level elements (stanzas, features, SASL; complete elements with
     * their namespaces declared) for the client. Borrows data. */
    void (*write)(struct c2s *c, const char *data, size_t len);
    /* Opens our side of a (re)started stream (RFC 7395 <open/>, XEP-0206 session response
     * or restart): c->stream_id is the fresh id; to is the client's 'from' or NULL. */
    void (*open)(struct c2s *c, const char *from, const char *to);
    /* Ends the stream: error is a serialised <stream:error/> declaring its prefix (NULL for an
     * orderly close). The transport tears down and later calls st_c2s_gone. */
    void (*close)(struct c2s *c, const char *error, size_t len);
    /* Frees the transport's state (io_data) when the c2s is freed. */
    void (*destroy)(struct c2s *c);
};

struct c2s {
    struct st_session sess; /* first: a struct st_session * is a struct c2s * */
    struct st_server *srv;
    struct st_conn *conn;   /* NULL once the connection closed */
    struct st_xml_parser *parser;
    struct st_stream_timer timer; /* negotiation deadline, then the close deadline */
    char stream_id[33];     /* id of the stream we opened last (new on every restart) */
    bool header_sent;
    bool stream_open;
    bool aborted;
    unsigned pending;       /* asynchronous jobs that will call back with this c2s */
    /* SASL exchange in progress */
    struct st_scram_server *scram;
    enum st_scram_hash scram_hash;
    bool sasl_plus;
    char *sasl_mech;
    unsigned sasl_failures;
    /* framed transports */
    const struct st_c2s_io *io; /* NULL: XMPP over TCP on conn */
    void *io_data;
    bool io_live;               /* io: the transport still exists */
    char peer[64];              /* client address, for logs */
};

/* Accept callback for c2s listeners (ud = struct st_server *). */
void st_c2s_accept(void *ud, struct st_conn *conn);
/* Accepts conn as a c2s stream whose first bytes (data, borrowed) were already read (the
 * multiplexed TLS port of the HTTP layer). */
void st_c2s_accept_data(struct st_server *srv, struct st_conn *conn, const char *data,
                        size_t len);
/* Creates a framed c2s stream (io borrowed, static) with its negotiation deadline. conn is the
 * connection when there is exactly one (WebSocket: TLS state, channel binding, pause), NULL
 * for BOSH. secure: TLS to the client (or ended at a trusted proxy). Returns the new c2s;
 * it is freed after st_c2s_gone once nothing refers to it. */
struct c2s *st_c2s_new_framed(struct st_server *srv, const struct st_c2s_io *io, void *io_data,
                              struct st_conn *conn, bool secure, const char *peer);
/* Framed transports: the client opened (or restarted) the stream with this header (a
 * {http://etherx.jabber.org/streams}stream element with to/from/version/xmlns attributes). */
void st_c2s_stream_open(struct c2s *c, const struct st_xml *header);
/* Framed transports: one top-level element from the client (takes ownership). */
void st_c2s_element(struct c2s *c, struct st_xml *x);
/* Framed transports: the client closed the stream. */
void st_c2s_stream_end(struct c2s *c);
/* The transport is gone (connection closed, BOSH session over): unbinds and frees the c2s
 * once nothing else refers to it. c must not be used afterwards. */
void st_c2s_gone(struct c2s *c, int err);
/* Parses data as exactly one XML element (restricted XML as on streams, RFC 6120 §11; the
 * default namespace is jabber:client) within limits. Returns a new tree, or NULL with *cond
 * set to the stream error condition to send. */
struct st_xml *st_c2s_parse_element(const char *data, size_t len, const struct st_limits *l,
                                    bool authenticated, const char **cond);
/* True when s is a c2s session. */
bool st_session_is_c2s(const struct st_session *s);

/* Internal to the transport. */
void st_c2s_write_str(struct c2s *c, const char *s);
void st_c2s_send_xml(struct c2s *c, struct st_xml *x);
void st_c2s_stream_error(struct c2s *c, const char *condition, const char *text);
void st_c2s_send_features(struct c2s *c);
void st_c2s_apply_limits(struct c2s *c);
void st_c2s_stop_timer(struct c2s *c);
void st_c2s_async_done(struct c2s *c);
/* True while the client side exists (a connection, or a live framed transport). */
bool st_c2s_live(const struct c2s *c);
/* Back-pressure while an authentication job runs (no-op for BOSH). */
void st_c2s_pause(struct c2s *c);
void st_c2s_resume(struct c2s *c);

#endif
