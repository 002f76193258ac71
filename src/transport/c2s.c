/* Client-to-server streams (RFC 6120 §4–§7, XEP-0368): stream header
 * checks, feature negotiation (STARTTLS §5, SASL §6, resource binding §7,
 * the legacy RFC 3921 session), stream errors (§4.9), the negotiation
 * deadline, then stanza intake: 'from' stamping (§8.1.2.1), IQ validation
 * (§8.2.3) and hand-off to the router. One struct c2s per connection; it is
 * freed only after the connection's close completed and no asynchronous
 * storage or worker job still refers to it. Framed transports (WebSocket,
 * RFC 7395; BOSH, XEP-0206) reuse all of it through struct st_c2s_io: they
 * deliver the stream events themselves and frame our output. */
#include "transport/c2s.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rand.h"
#include "net/conn.h"
#include "starling/module.h"
#include "transport/c2s_sasl.h"
#include "xml/parser.h"
#include "xmpp/errors.h"
#include "xmpp/router.h"
#include "xmpp/server.h"
#include "xmpp/session.h"

#define CLOSE_TIMEOUT_MS 5000

static void c2s_maybe_free(struct c2s *c);
static void arm_close_timer(struct c2s *c);

/* ---- output ---- */

bool st_c2s_live(const struct c2s *c)
{
    return c->io ? c->io_live : c->conn != NULL;
}

void st_c2s_pause(struct c2s *c)
{
    if (c->conn)
        st_conn_pause(c->conn);
}

void st_c2s_resume(struct c2s *c)
{
    if (c->conn)
        st_conn_resume(c->conn);
}

static void c2s_write(struct c2s *c, const char *data, size_t len)
{
    if (c->io) {
        if (c->io_live && !c->aborted)
            c->io->write(c, data, len);
        return;
    }
    if (!c->conn || c->aborted)
        return;
    int rc = st_conn_write(c->conn, data, len);
    if (rc == ST_ELIMIT) {
        st_log_warn(c->sess.id, "output queue full (client not reading); disconnecting");
        c->aborted = true;
        c->sess.closing = true;
        st_session_unbind(&c->sess);
        st_conn_abort(c->conn);
    }
}

void st_c2s_write_str(struct c2s *c, const char *s)
{
    c2s_write(c, s, strlen(s));
}

#define SCRATCH_KEEP 65536 /* a larger scratch buffer is freed after use */

static int c2s_send_stanza(struct st_session *s, struct st_xml *stanza)
{
    struct c2s *c = (struct c2s *)s;
    if (!st_c2s_live(c) || c->aborted)
        return ST_ECLOSED;
    /* One scratch buffer per server: serialising is the hottest path, and nothing can
     * re-enter here while it is in use (connection callbacks are deferred). */
    struct st_buf *b = &c->srv->scratch;
    st_buf_reset(b);
    b->max = c->srv->settings.limits.stanza_size * 4 + 4096;
    /* Framed transports carry each stanza as its own document: xmlns='jabber:client'. */
    int rc = st_xml_serialize(stanza, c->io ? "" : ST_NS_CLIENT, b);
    if (rc == 0)
        c2s_write(c, b->data, b->len);
    else
        st_log_warn(s->id, "dropping outgoing %s: too large to serialise", stanza->name);
    if (b->cap > SCRATCH_KEEP)
        st_buf_free(b);
    return rc;
}

void st_c2s_send_xml(struct c2s *c, struct st_xml *x)
{
    c2s_send_stanza(&c->sess, x);
}

static void send_header(struct c2s *c, const char *client_from)
{
    if (c->header_sent)
        return;
    c->header_sent = true;
    const char *from = c->sess.host ? c->sess.host->name : c->srv->settings.hosts[0].name;
    /* RFC 6120 §4.7.3: a fresh id for every stream we open, restarts included. */
    st_rand_id(c->stream_id, sizeof c->stream_id, 128);
    if (c->io) {
        if (c->io_live)
            c->io->open(c, from, client_from);
        return;
    }
    struct st_buf b;
    st_buf_init(&b, 4096);
    st_buf_puts(&b, "<?xml version='1.0'?><stream:stream xmlns='" ST_NS_CLIENT
                    "' xmlns:stream='" ST_NS_STREAMS "' id='");
    st_buf_puts(&b, c->stream_id);
    st_buf_puts(&b, "' from='");
    st_buf_put_xml_escaped(&b, from, strlen(from));
    st_buf_puts(&b, "'");
    if (client_from) {
        st_buf_puts(&b, " to='");
        st_buf_put_xml_escaped(&b, client_from, strlen(client_from));
        st_buf_puts(&b, "'");
    }
    st_buf_puts(&b, " version='1.0' xml:lang='en'>");
    c2s_write(c, b.data, b.len);
    st_buf_free(&b);
}

/* Ends the stream with tail, the last bytes for the peer: written before the session is
 * closed and unbound on a plain stream; for a framed transport handed to io->close (which
 * frames and ends it) after. Then stops reading and arms the close timer. */
static void end_stream(struct c2s *c, const char *tail, size_t len)
{
    if (!c->io)
        c2s_write(c, tail, len);
    c->sess.closing = true;
    st_session_unbind(&c->sess);
    if (c->io) {
        if (c->io_live)
            c->io->close(c, tail, len);
        if (c->conn)
            arm_close_timer(c);
        return;
    }
    if (c->parser)
        st_xml_parser_stop(c->parser);
    if (c->conn) {
        st_conn_close(c->conn);
        arm_close_timer(c);
    }
}

/* Sends a stream error and closes (RFC 6120 §4.9.1.1): a header first if none was sent
 * (§4.9.1.2), then the error and the closing tag. */
void st_c2s_stream_error(struct c2s *c, const char *condition, const char *text)
{
    if (c->sess.closing)
        return;
    st_log_info(c->sess.id, "stream error %s%s%s (peer %s)", condition, text ? ": " : "",
                text ? text : "", c->peer);
    send_header(c, NULL);
    struct st_buf b;
    st_buf_init(&b, 4096);
    if (c->io) {
        /* A framed stream error is its own document: it declares the stream prefix. */
        st_buf_puts(&b, "<stream:error xmlns:stream='" ST_NS_STREAMS "'");
        struct st_buf e;
        st_buf_init(&e, 4096);
        st_stream_error_write(&e, condition, text);
        st_buf_append(&b, e.data + 13, e.len - 13); /* after "<stream:error" */
        st_buf_free(&e);
    } else {
        st_stream_error_write(&b, condition, text);
        st_buf_puts(&b, "</stream:stream>");
    }
    end_stream(c, b.data, b.len);
    st_buf_free(&b);
}

static void c2s_close_session(struct st_session *s, const char *condition, const char *text)
{
    struct c2s *c = (struct c2s *)s;
    if (condition) {
        st_c2s_stream_error(c, condition, text);
        return;
    }
    if (c->sess.closing)
        return;
    if (c->io)
        end_stream(c, NULL, 0);
    else
        end_stream(c, "</stream:stream>", 16);
}

static const struct st_session_ops c2s_ops = {
    .send = c2s_send_stanza,
    .close = c2s_close_session,
};

/* ---- features ---- */

static bool tls_available(const struct c2s *c)
{
    return c->srv->tls != NULL;
}

void st_c2s_send_features(struct c2s *c)
{
    struct st_xml *f = st_xml_new("features", ST_NS_STREAMS);
    bool tls = c->sess.secure;
    const struct st_c2s_settings *cs = &c->srv->settings.c2s;
    if (!c->sess.authenticated) {
        /* RFC 7395 §3.8, XEP-0206 §4: no STARTTLS inside HTTP or WebSocket framing. */
        if (!tls && tls_available(c) && !c->io) {
            struct st_xml *st = st_xml_add_child(f, "starttls", ST_NS_TLS);
            if (cs->require_encryption)
                st_xml_add_child(st, "required", ST_NS_TLS);
        }
        if (tls || !cs->require_encryption)
            st_c2s_sasl_features(c, f);
    } else {
        st_xml_add_child(f, "bind", ST_NS_BIND);
        struct st_xml *sess = st_xml_add_child(f, "session", ST_NS_SESSION);
        st_xml_add_child(sess, "optional", ST_NS_SESSION);
        struct st_event ev = {.srv = c->srv, .name = "stream-features", .origin = &c->sess,
                              .host = c->sess.host->name, .features = f};
        st_events_fire(&c->srv->events, &ev);
    }
    struct st_buf b;
    st_buf_init(&b, 65536);
    /* The features element uses the stream prefix, which the serializer cannot know. */
    st_buf_puts(&b, c->io ? "<stream:features xmlns:stream='" ST_NS_STREAMS "'>"
                          : "<stream:features>");
    for (struct st_xml *ch = f->first_child; ch; ch = ch->next)
        st_xml_serialize(ch, ST_NS_CLIENT, &b);
    st_buf_puts(&b, "</stream:features>");
    c2s_write(c, b.data, b.len);
    st_buf_free(&b);
    st_xml_unref(f);
}

/* ---- parser callbacks ---- */

static void on_stream_open(void *ud, const struct st_xml *h)
{
    struct c2s *c = ud;
    const char *to = st_xml_attr(h, "to");
    const char *from = st_xml_attr(h, "from");
    const char *version = st_xml_attr(h, "version");
    const char *defns = st_xml_attr(h, "xmlns");

    if (strcmp(h->ns, ST_NS_STREAMS) == 0 && strcmp(h->name, "stream") != 0) {
        st_c2s_stream_error(c, "bad-format", "the root element must be <stream:stream/>");
        return;
    }
    if (strcmp(h->name, "stream") != 0 || strcmp(h->ns, ST_NS_STREAMS) != 0) {
        st_c2s_stream_error(c, "invalid-namespace", "the stream element must be "
                                                    "{http://etherx.jabber.org/streams}stream");
        return;
    }
    if (!defns || strcmp(defns, ST_NS_CLIENT) != 0) {
        st_c2s_stream_error(c, "invalid-namespace", "the content namespace must be jabber:client");
        return;
    }
    /* The 'to' host picks our reply's 'from', so resolve it before any other check. */
    char *host = to ? st_jid_prep_string(to) : NULL;
    struct st_host *hs = host ? st_server_host(c->srv, host) : NULL;
    st_free(host);
    if (hs && c->sess.host && hs != c->sess.host)
        hs = NULL; /* a restarted stream may not switch hosts */
    if (hs)
        c->sess.host = hs;
    const char *reply_to = NULL;
    char *pfrom = from ? st_jid_prep_string(from) : NULL;
    if (pfrom)
        reply_to = pfrom;
    send_header(c, reply_to);
    st_free(pfrom);
    c->header_sent = true;
    if (!hs) {
        st_c2s_stream_error(c, "host-unknown", to ? "this server does not serve that host"
                                                  : "the stream header has no 'to'");
        return;
    }
    /* RFC 6120 §4.7.5: we speak 1.0; a higher major version is unsupported. A missing
     * version means a pre-1.0 client, which we do not support either. */
    if (!version || strtol(version, NULL, 10) != 1 || strncmp(version, "1.", 2) != 0) {
        st_c2s_stream_error(c, "unsupported-version", "only XMPP 1.0 streams are supported");
        return;
    }
    c->stream_open = true;
    st_c2s_send_features(c);
}

static bool iq_valid(struct c2s *c, struct st_xml *x)
{
    const char *type = st_xml_attr(x, "type");
    const char *id = st_xml_attr(x, "id");
    bool request = type && (strcmp(type, "get") == 0 || strcmp(type, "set") == 0);
    bool reply = type && (strcmp(type, "result") == 0 || strcmp(type, "error") == 0);
    if (!request && !reply) {
        struct st_xml *e = st_stanza_error(x, "modify", "bad-request", "invalid or missing type");
        st_c2s_send_xml(c, e);
        st_xml_unref(e);
        return false;
    }
    if (!id) {
        if (request) {
            struct st_xml *e = st_stanza_error(x, "modify", "bad-request", "missing id");
            st_c2s_send_xml(c, e);
            st_xml_unref(e);
        }
        return false;
    }
    /* RFC 6120 §8.2.3: get and set carry exactly one payload element. */
    if (request && st_xml_element_count(x) != 1) {
        struct st_xml *e = st_stanza_error(x, "modify", "bad-request",
                                           "an IQ get or set must contain exactly one child");
        st_c2s_send_xml(c, e);
        st_xml_unref(e);
        return false;
    }
    return true;
}

static bool addressed_to_server(struct c2s *c, const struct st_xml *x)
{
    const char *to = st_xml_attr(x, "to");
    if (!to)
        return true;
    char *p = st_jid_prep_string(to);
    bool r = p && strcmp(p, c->sess.host->name) == 0;
    st_free(p);
    return r;
}

static void handle_bound_stanza(struct c2s *c, struct st_xml *x)
{
    /* RFC 6120 §8.1.2.1: the server stamps 'from'; a client may only name itself. */
    const char *from = st_xml_attr(x, "from");
    if (from) {
        char *p = st_jid_prep_string(from);
        bool ok = p && (strcmp(p, c->sess.jid.full) == 0 || strcmp(p, c->sess.jid.bare) == 0);
        st_free(p);
        if (!ok) {
            st_c2s_stream_error(c, "invalid-from", "the 'from' address is not this session's");
            return;
        }
    }
    st_xml_set_attr(x, "from", c->sess.jid.full);
    if (strcmp(x->name, "iq") == 0) {
        if (!iq_valid(c, x))
            return;
        struct st_xml *p = st_xml_first_element(x);
        const char *type = st_xml_attr(x, "type");
        if (p && strcmp(type, "set") == 0 && addressed_to_server(c, x)) {
            if (st_xml_is(p, "session", ST_NS_SESSION)) {
                struct st_xml *r = st_iq_result(x);
                st_xml_set_attr(r, "from", NULL);
                st_c2s_send_xml(c, r);
                st_xml_unref(r);
                return;
            }
            if (st_xml_is(p, "bind", ST_NS_BIND)) {
                struct st_xml *e = st_stanza_error(x, "cancel", "not-allowed",
                                                   "a resource is already bound");
                st_xml_set_attr(e, "from", NULL);
                st_c2s_send_xml(c, e);
                st_xml_unref(e);
                return;
            }
        }
    }
    st_route(c->srv, &c->sess, x);
}

static void on_stanza(void *ud, struct st_xml *x)
{
    struct c2s *c = ud;
    if (c->sess.closing) {
        st_xml_unref(x);
        return;
    }
    bool tls = c->sess.secure;
    const struct st_c2s_settings *cs = &c->srv->settings.c2s;

    if (strcmp(x->ns, ST_NS_TLS) == 0 && strcmp(x->name, "starttls") == 0) {
        if (c->io) {
            st_c2s_write_str(c, "<failure xmlns='" ST_NS_TLS "'/>");
            c2s_close_session(&c->sess, NULL, NULL);
        } else if (tls || c->sess.authenticated || !tls_available(c)) {
            c2s_write(c, "<failure xmlns='" ST_NS_TLS "'/></stream:stream>", 54);
            c->sess.closing = true;
            st_xml_parser_stop(c->parser);
            st_conn_close(c->conn);
        } else {
            st_c2s_write_str(c, "<proceed xmlns='" ST_NS_TLS "'/>");
            if (st_conn_starttls(c->conn, c->srv->tls) != 0) {
                st_c2s_stream_error(c, "internal-server-error", "TLS could not start");
            } else {
                /* RFC 6120 §5.4.3.3: a fresh stream; anything pipelined after <starttls/>
                 * is discarded by the reset. */
                c->header_sent = false;
                c->stream_open = false;
                c->sess.secure = true;
                st_xml_parser_reset(c->parser);
            }
        }
        st_xml_unref(x);
        return;
    }
    if (!c->sess.authenticated) {
        if (strcmp(x->ns, ST_NS_SASL) == 0) {
            if (!tls && cs->require_encryption && tls_available(c)) {
                st_c2s_sasl_failure(c, "encryption-required", NULL);
            } else {
                st_c2s_sasl_handle(c, x);
            }
        } else if (!tls && cs->require_encryption && tls_available(c)) {
            st_c2s_stream_error(c, "not-authorized", "STARTTLS is required first");
        } else {
            st_c2s_stream_error(c, "not-authorized", "authenticate first");
        }
        st_xml_unref(x);
        return;
    }
    if (strcmp(x->ns, ST_NS_CLIENT) != 0 ||
        (strcmp(x->name, "message") != 0 && strcmp(x->name, "presence") != 0 &&
         strcmp(x->name, "iq") != 0)) {
        char name[256];
        snprintf(name, sizeof name, "stream-element/%s:%s", x->ns, x->name);
        struct st_event ev = {.srv = c->srv, .name = name, .origin = &c->sess, .stanza = x,
                              .host = c->sess.host->name};
        if (st_events_fire(&c->srv->events, &ev) != ST_EV_HANDLED)
            st_c2s_stream_error(c, "unsupported-stanza-type", NULL);
        st_xml_unref(x);
        return;
    }
    if (!c->sess.bound) {
        struct st_xml *p = st_xml_first_element(x);
        if (strcmp(x->name, "iq") == 0 && p && st_xml_is(p, "bind", ST_NS_BIND)) {
            st_c2s_bind(c, x);
        } else if (strcmp(x->name, "iq") == 0 && p && st_xml_is(p, "session", ST_NS_SESSION)) {
            st_c2s_stream_error(c, "not-authorized", "bind a resource first");
        } else {
            st_c2s_stream_error(c, "not-authorized", "bind a resource first");
        }
        st_xml_unref(x);
        return;
    }
    handle_bound_stanza(c, x);
    st_xml_unref(x);
}

static void on_stream_close(void *ud)
{
    struct c2s *c = ud;
    if (c->sess.closing)
        return;
    st_log_debug(c->sess.id, "client closed the stream");
    c2s_close_session(&c->sess, NULL, NULL);
}

static void on_parse_error(void *ud, enum st_xml_parse_error err, const char *text)
{
    st_c2s_stream_error(ud, st_stream_error_for_parse(err), text);
}

static const struct st_xml_parser_cb parser_cb = {
    .stream_open = on_stream_open,
    .stanza = on_stanza,
    .stream_close = on_stream_close,
    .error = on_parse_error,
};

void st_c2s_apply_limits(struct c2s *c)
{
    if (!c->parser)
        return;
    const struct st_limits *l = &c->srv->settings.limits;
    struct st_xml_limits xl = {
        .max_stanza_bytes = c->sess.authenticated ? l->stanza_size : l->stanza_size_preauth,
        .max_depth = (unsigned)l->max_depth,
        .max_attrs = (unsigned)l->max_attributes,
    };
    st_xml_parser_set_limits(c->parser, &xl);
}

/* ---- connection callbacks ---- */

static void on_read(struct st_conn *conn, const char *data, size_t len)
{
    struct c2s *c = st_conn_data(conn);
    if (c->sess.closing)
        return;
    c->sess.last_active_ms = uv_now(c->srv->loop);
    st_xml_parser_feed(c->parser, data, len);
}

static void timer_closed(void *owner)
{
    c2s_maybe_free(owner);
}

void st_c2s_stop_timer(struct c2s *c)
{
    st_stream_timer_close(&c->timer);
}

static void c2s_maybe_free(struct c2s *c)
{
    if (c->conn || c->pending || st_stream_timer_held(&c->timer) || c->io_live)
        return;
    if (c->io && c->io->destroy)
        c->io->destroy(c);
    st_c2s_sasl_clear(c);
    if (c->parser)
        st_xml_parser_free(c->parser);
    st_session_destroy(&c->sess);
    st_free(c);
}

static void on_close(struct st_conn *conn, int err)
{
    st_c2s_gone(st_conn_data(conn), err);
}

void st_c2s_gone(struct c2s *c, int err)
{
    st_log_info(c->sess.id, "disconnected%s%s", err ? ": " : "", err ? st_strerror(err) : "");
    c->conn = NULL;
    c->io_live = false;
    c->sess.closing = true;
    st_session_unbind(&c->sess);
    st_map_del(&c->srv->sessions_all, c->sess.id);
    st_c2s_stop_timer(c);
    c2s_maybe_free(c);
}

static const struct st_conn_handler conn_handler = {
    .on_read = on_read,
    .on_close = on_close,
};

void st_c2s_async_done(struct c2s *c)
{
    c->pending--;
    c2s_maybe_free(c);
}

static void on_negotiation_timeout(uv_timer_t *t)
{
    struct c2s *c = t->data;
    /* Why the detail: a client that stalls mid-negotiation is either slow or stuck, and
     * which one (and where) is not visible from the stream error alone. */
    char io[256] = "no connection";
    if (c->conn)
        st_conn_describe(c->conn, io, sizeof io);
    st_log_info(c->sess.id, "negotiation deadline passed: stream %s, %s, %u job(s) pending; %s",
                c->stream_open ? "open" : "not open",
                c->sess.username ? "authenticated" : "not authenticated", c->pending, io);
    st_c2s_stream_error(c, "connection-timeout", "negotiation took too long");
}

static void on_close_timeout(uv_timer_t *t)
{
    struct c2s *c = t->data;
    if (c->conn) {
        st_log_info(c->sess.id, "peer did not read the end of the stream; dropping it");
        st_conn_abort(c->conn);
    }
}

/* A closing stream whose peer stops reading would otherwise hold its output queue forever. */
static void arm_close_timer(struct c2s *c)
{
    st_stream_timer_arm(&c->timer, c->srv->loop, CLOSE_TIMEOUT_MS, on_close_timeout);
}

static struct c2s *c2s_new(struct st_server *srv, struct st_conn *conn, bool secure,
                           const char *peer)
{
    struct c2s *c = ST_NEW(struct c2s);
    c->srv = srv;
    c->conn = conn;
    st_session_init(&c->sess, srv, &c2s_ops, c);
    c->sess.secure = secure;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    st_stream_timer_init(&c->timer, c, timer_closed);
    st_stream_timer_arm(&c->timer, srv->loop, srv->settings.c2s.negotiation_timeout,
                        on_negotiation_timeout);
    st_map_set(&srv->sessions_all, c->sess.id, &c->sess);
    if (srv->sessions_all.count > srv->sessions_peak)
        srv->sessions_peak = srv->sessions_all.count;
    return c;
}

void st_c2s_accept(void *ud, struct st_conn *conn)
{
    struct st_server *srv = ud;
    if (srv->shutting_down) {
        st_conn_abort(conn);
        return;
    }
    struct c2s *c = c2s_new(srv, conn, st_conn_is_tls(conn), st_conn_peer(conn));
    st_conn_set_handler(conn, &conn_handler, c);
    st_conn_set_output_limit(conn, srv->settings.limits.output_queue);
    const struct st_limits *l = &srv->settings.limits;
    struct st_xml_limits xl = {
        .max_stanza_bytes = l->stanza_size_preauth,
        .max_depth = (unsigned)l->max_depth,
        .max_attrs = (unsigned)l->max_attributes,
    };
    c->parser = st_xml_parser_new(&parser_cb, c, &xl);
    st_log_info(c->sess.id, "connection from %s port %u%s", st_conn_peer(conn),
                st_conn_peer_port(conn), c->sess.secure ? " (direct TLS)" : "");
}

void st_c2s_accept_data(struct st_server *srv, struct st_conn *conn, const char *data,
                        size_t len)
{
    st_c2s_accept(srv, conn);
    if (st_conn_data(conn) && !srv->shutting_down)
        on_read(conn, data, len);
}

struct c2s *st_c2s_new_framed(struct st_server *srv, const struct st_c2s_io *io, void *io_data,
                              struct st_conn *conn, bool secure, const char *peer)
{
    struct c2s *c = c2s_new(srv, conn, secure, peer);
    c->io = io;
    c->io_data = io_data;
    c->io_live = true;
    return c;
}

void st_c2s_stream_open(struct c2s *c, const struct st_xml *header)
{
    on_stream_open(c, header);
}

void st_c2s_element(struct c2s *c, struct st_xml *x)
{
    on_stanza(c, x);
}

void st_c2s_stream_end(struct c2s *c)
{
    on_stream_close(c);
}

struct st_xml *st_c2s_parse_element(const char *data, size_t len, const struct st_limits *l,
                                    bool authenticated, const char **cond)
{
    size_t max = authenticated ? l->stanza_size : l->stanza_size_preauth;
    struct st_xml_limits lim = {.max_stanza_bytes = max, .max_depth = (unsigned)l->max_depth,
                                .max_attrs = (unsigned)l->max_attributes};
    enum st_xml_parse_error err;
    struct st_xml *x = st_xml_parse_one(data, len, ST_NS_CLIENT, &lim, &err);
    *cond = x ? NULL : st_stream_error_for_parse(err);
    return x;
}

bool st_session_is_c2s(const struct st_session *s)
{
    return s->ops == &c2s_ops;
}
