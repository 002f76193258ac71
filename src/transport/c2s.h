/* Client-to-server transport (RFC 6120 over TCP, STARTTLS or direct TLS).
 * c2s.c holds the stream and stanza intake; c2s_sasl.c the SASL exchange and
 * resource binding. Only the transport includes this header. */
#ifndef ST_TRANSPORT_C2S_H
#define ST_TRANSPORT_C2S_H

#include <stdbool.h>
#include <uv.h>

#include "xmpp/scram.h"
#include "xmpp/session.h"

struct st_conn;
struct st_server;
struct st_xml;
struct st_xml_parser;

struct c2s {
    struct st_session sess; /* first: a struct st_session * is a struct c2s * */
    struct st_server *srv;
    struct st_conn *conn;   /* NULL once the connection closed */
    struct st_xml_parser *parser;
    uv_timer_t *timer;      /* negotiation deadline; freed once bound */
    bool timer_closing;
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
};

/* Accept callback for c2s listeners (ud = struct st_server *). */
void st_c2s_accept(void *ud, struct st_conn *conn);
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

#endif
