/* Internal to the s2s transport: the subsystem state (struct st_s2s, one per
 * server) and the stream record shared by s2s.c (state, listeners, routing
 * glue, queues, bounces, idle sweep), s2s_in.c (streams peers open to us)
 * and s2s_out.c (streams we open). */
#ifndef ST_TRANSPORT_S2S_INT_H
#define ST_TRANSPORT_S2S_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/map.h"
#include "event/stream_timer.h"
#include "net/dns.h"

struct st_server;
struct st_conn;
struct st_xml;
struct st_xml_parser;
struct st_xml_parser_cb;
struct st_conn;
struct st_conn_handler;
struct st_listener;
struct st_tls_client;
struct st_connect_req;

#define ST_NS_DIALBACK "jabber:server:dialback"
#define ST_NS_DIALBACK_FEATURE "urn:xmpp:features:dialback"
#define ST_NS_BIDI_FEATURE "urn:xmpp:features:bidi"
#define ST_NS_BIDI "urn:xmpp:bidi"

struct st_s2s {
    struct st_server *srv;
    struct st_dns *dns;
    struct st_tls_client *tlsc;
    struct st_listener *listeners[8];
    unsigned nlisteners;
    struct st_map out;      /* "local\x01remote" -> outgoing struct s2s* (one per pair) */
    struct st_map in_by_id; /* our stream id -> incoming struct s2s* */
    struct st_map routes;   /* remote domain -> char* "host:port" (owned) */
    struct s2s *all;        /* every stream, for stop and the idle sweep */
    unsigned nstreams;
    uv_timer_t sweep;
    unsigned char secret[32];
    unsigned seq;
    bool stopping;
    bool sweep_closed;
};

enum s2s_state {
    SS_RESOLVING,  /* out: DNS / connect attempts */
    SS_OPENING,    /* header sent; waiting for the peer's header and features */
    SS_STARTTLS,   /* out: <starttls/> sent */
    SS_SASL,       /* out: <auth/> sent */
    SS_DIALBACK,   /* out: <db:result/> sent */
    SS_READY,      /* out: authenticated, stanzas flow */
    SS_CLOSED,
};

struct s2s_pair {
    char *from, *to; /* incoming: remote domain authenticated to send to local domain */
};

/* Incoming: a <db:result/> waiting for the authoritative server's answer. */
struct s2s_pending {
    struct s2s_pending *next;
    char *from, *to;
};

/* Outgoing: a <db:verify/> to send on this stream, and its answer to relay. */
struct s2s_verify {
    struct s2s_verify *next;
    char *from, *to, *id, *key;
    char *in_id; /* the incoming stream that asked */
    bool sent;
};

struct s2s_qitem {
    struct s2s_qitem *next;
    struct st_xml *x; /* a reference */
};

/* Outgoing: another (local, remote) pair riding on an authenticated stream by dialback
 * piggybacking (XEP-0220 §2.5). Registered in m->out under its own key, pointing at the
 * stream that carries it. */
struct s2s_mux {
    struct s2s_mux *next;
    char *local, *remote, *key;
    bool ready; /* the peer answered our <db:result/> with type='valid' */
    struct s2s_qitem *qhead, **qtail;
    size_t qlen;
};

struct s2s {
    struct st_s2s *m;
    bool out;
    char name[300];        /* log context */
    struct st_conn *conn;  /* NULL before connect / after close */
    struct st_xml_parser *parser;
    struct st_stream_timer timer; /* negotiation deadline, then close deadline */
    char *local, *remote;  /* out: our / the peer's domain; in: header 'to' / 'from' */
    char id[40];           /* in: our stream id; out: the peer's */
    enum s2s_state state;
    bool closing, header_sent, tls, sasl_done, legacy, failed, bidi, dialback_offered;
    bool can_verify; /* out: past the TLS and trust checks: db:verify may be sent */
    bool retrying;   /* out: this connection failed before auth; the next target follows */
    bool peer_trusted; /* out: the peer's certificate is trusted for `remote` (RFC 6125) */
    bool db_errors;    /* out: the peer offered dialback with <errors/> (XEP-0220 §2.5 muxing) */
    struct s2s_mux *mux; /* out: piggybacked pairs */
    uint64_t last_active;
    struct s2s *next, *prev;
    /* incoming */
    struct s2s_pair *pairs;
    size_t npairs;
    struct s2s_pending *pending;
    /* outgoing */
    char *key;             /* map key in m->out while registered */
    struct s2s_qitem *qhead, **qtail;
    size_t qlen;
    struct s2s_verify *verifies;
    struct st_dns_srv *targets;
    size_t ntargets, ti;
    char (*addrs)[64];
    size_t naddrs, ai;
    struct st_dns_req *dreq;
    struct st_connect_req *creq;
    int last_err;
};

/* s2s.c */
struct s2s *st_s2s__new_stream(struct st_s2s *m, bool out);
void st_s2s__maybe_free(struct s2s *s);
void st_s2s__write(struct s2s *s, const char *data, size_t len);
void st_s2s__write_str(struct s2s *s, const char *str);
/* Serialises a (jabber:client) stanza onto the stream; ST_ELIMIT when over max_stanza_size. */
int st_s2s__send_stanza(struct s2s *s, struct st_xml *x);
/* Sends a stream error (or a plain close with cond NULL), closes, arms the close timer. */
void st_s2s__close(struct s2s *s, const char *cond, const char *text);
void st_s2s__arm_timer(struct s2s *s, uint64_t ms, uv_timer_cb cb);
void st_s2s__stop_timer(struct s2s *s);
/* Stops the timer without closing its handle (it may be re-armed). */
void st_s2s__pause_timer(struct s2s *s);
/* Bounces a stanza to its sender with a stanza error (never an error or IQ result). */
void st_s2s__bounce(struct st_s2s *m, struct st_xml *x, const char *cond, const char *text);
/* Returns a new copy of an s2s stanza with jabber:server turned into jabber:client. */
struct st_xml *st_s2s__to_client_ns(const struct st_xml *x);
bool st_s2s__insecure_ok(struct st_s2s *m, const char *domain);
/* Binds the new connection conn (already stored in s->conn) to s: handler h, the output
 * limit, and a fresh stream parser with callbacks cb and the s2s limits. */
void st_s2s__attach(struct s2s *s, const struct st_conn_handler *h,
                    const struct st_xml_parser_cb *cb);
/* Is x the element {ns}name? */
bool st_s2s__is_ns(const struct st_xml *x, const char *name, const char *ns);
/* Is x a jabber:server message, presence or iq? */
bool st_s2s__is_stanza(const struct st_xml *x);
/* Parser callback for both directions: the peer closed its stream; close ours. */
void st_s2s__on_stream_close(void *ud);
/* Writes a dialback element <db:el from to [id]>: with type, an empty answer
 * (type='valid'...); otherwise a request carrying key as its text. */
void st_s2s__write_db(struct s2s *s, const char *el, const char *from, const char *to,
                      const char *id, const char *type, const char *key);
/* Writes our stream header; xmlns:db always declared (XEP-0220 §2.1). */
void st_s2s__send_header(struct s2s *s, const char *from, const char *to, const char *id);
struct s2s *st_s2s__find_in(struct st_s2s *m, const char *id);
/* Incoming stream s is an authenticated bidi stream usable towards (local -> remote)? */
struct s2s *st_s2s__find_bidi(struct st_s2s *m, const char *local, const char *remote);

/* s2s_in.c */
void st_s2s_in_accept(void *ud, struct st_conn *conn);
/* An answer to a db:verify we sent for incoming stream in_id arrived (or failed: valid false). */
void st_s2s_in_verified(struct st_s2s *m, const char *in_id, const char *from, const char *to,
                        bool valid);
/* May stream s carry stanzas from domain `from` to our domain `to`? Incoming: an
 * authenticated pair. Outgoing: only as a XEP-0288 bidi stream we asked for, once ready, from
 * the peer whose certificate we verified for `remote` to the local domain of the stream, or
 * the reverse of a piggybacked pair the peer accepted. */
bool st_s2s_in_authorized(const struct s2s *s, const char *from, const char *to);
/* Checks the addresses of a jabber:server stanza received on s (either direction) and routes
 * it, or closes s with improper-addressing / host-unknown / invalid-from. Borrows x. */
void st_s2s_in_deliver(struct s2s *s, struct st_xml *x);

/* s2s_out.c */
/* Returns the outgoing stream for (local, remote), creating and starting it if needed. */
struct s2s *st_s2s_out_get(struct st_s2s *m, const char *local, const char *remote);
/* Queues or sends stanza (borrowed). */
void st_s2s_out_send(struct s2s *s, struct st_xml *x);
/* The same for a stanza of the pair (local, remote), which may be piggybacked on s. */
void st_s2s_out_send_pair(struct s2s *s, const char *local, const char *remote,
                          struct st_xml *x);
/* Bounces what piggybacked pairs still hold and frees them (stream teardown). */
void st_s2s_out_free_mux(struct s2s *s);
/* Asks the authoritative server of 'to' (over our stream local->remote) to verify a key. */
void st_s2s_out_verify(struct st_s2s *m, const char *local, const char *remote, const char *id,
                       const char *key, const char *in_id);
/* Returns the registered outgoing stream for (local, remote), or NULL. */
struct s2s *st_s2s_out_find(struct st_s2s *m, const char *local, const char *remote);
/* A stream that will not become ready: bounces its queue (remote-server-timeout when timeout,
 * else remote-server-not-found), answers its pending verifies as invalid, unregisters it so
 * new stanzas start a fresh stream. Idempotent. Does not close. */
void st_s2s_out_drain(struct s2s *s, const char *why, bool timeout);
/* Drains (above) and closes with stream error cond (NULL = plain close). */
void st_s2s_out_fail(struct s2s *s, const char *cond, const char *why, bool timeout);
/* Unregisters the stream from m->out (idempotent). */
void st_s2s_out_unregister(struct s2s *s);

#endif
