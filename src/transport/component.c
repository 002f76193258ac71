/* External component streams (XEP-0114 Jabber Component Protocol): a
 * listener (default port 5347 on loopback), the stream header in the
 * jabber:component:accept namespace naming a configured component domain
 * (else <host-unknown/>), the handshake (XEP-0114 §3: hex SHA-1 of our
 * stream id and the shared secret, compared in constant time; wrong →
 * <not-authorized/>), one stream per component domain (a second one is
 * refused with <conflict/>, RFC 6120 §4.9.3.3 — no load balancing), then
 * stanza intake: 'from' must be the component's domain or a JID at it or
 * at a subdomain of it (else <invalid-from/>, RFC 6120 §4.9.3.9), 'to' and
 * 'from' are required (else <improper-addressing/>, §4.9.3.8), IQs are
 * validated as for clients (§8.2.3). Accepted stanzas are moved into the
 * jabber:client namespace and routed with no origin session, as if from a
 * peer server. Delivery: the router's "<kind>/component" events are
 * claimed here (at low priority, after roster and presence processing)
 * and queued on the component's stream; while it is not connected, IQ
 * get/set and normal/chat/groupchat messages bounce with
 * <service-unavailable/> (RFC 6120 §8.3.3.19), presence and headline are
 * dropped (as RFC 6121 §8.5.1 does for an unknown local user). On
 * connect the server asks the component's disco#info (XEP-0030) so its
 * identity can name it in the server's disco#items. Streams are freed
 * only after their connection closed (never inside a callback chain). */
#include "transport/component.h"

#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rand.h"
#include "event/stream_timer.h"
#include "net/conn.h"
#include "starling/module.h"
#include "xml/parser.h"
#include "xmpp/components.h"
#include "xmpp/errors.h"
#include "xmpp/router.h"
#include "xmpp/server.h"

#define CLOSE_TIMEOUT_MS 3000
#define DISCO_TIMEOUT_MS 10000
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define MAX_LISTENERS 8

struct comp {
    struct st_component_mgr *mgr;
    struct st_server *srv;
    struct st_conn *conn; /* NULL once the connection closed */
    struct st_xml_parser *parser;
    struct st_stream_timer timer; /* negotiation deadline, then the close deadline */
    char id[40];          /* our stream id, also the log context */
    char *domain;         /* the configured component domain named in the header */
    bool header_sent, stream_open, authenticated, linked, closing, aborted;
    struct comp *next;
};

struct st_component_mgr {
    struct st_server *srv;
    struct st_listener *listeners[MAX_LISTENERS];
    unsigned nlisteners;
    struct comp *all;
    bool stopped;
};

static void comp_maybe_free(struct comp *c);
static void arm_close_timer(struct comp *c);

/* ---- output ---- */

static void comp_write(struct comp *c, const char *data, size_t len)
{
    if (!c->conn || c->aborted)
        return;
    if (st_conn_write(c->conn, data, len) == ST_ELIMIT) {
        st_log_warn(c->id, "output queue full (component %s not reading); disconnecting",
                    c->domain ? c->domain : "-");
        c->aborted = true;
        c->closing = true;
        if (c->linked) {
            c->linked = false;
            st_component_unlink(c->srv, c->domain);
        }
        st_conn_abort(c->conn);
    }
}

static int comp_send(void *ud, struct st_xml *stanza)
{
    struct comp *c = ud;
    if (!c->conn || c->aborted || c->closing)
        return ST_ECLOSED;
    struct st_buf b;
    st_buf_init(&b, c->srv->settings.limits.stanza_size * 4 + 4096);
    /* jabber:client elements are written without xmlns, so they inherit the stream's
     * jabber:component:accept default namespace on the wire. */
    int rc = st_xml_serialize(stanza, ST_NS_CLIENT, &b);
    if (rc == 0)
        comp_write(c, b.data, b.len);
    else
        st_log_warn(c->id, "dropping outgoing %s: too large to serialise", stanza->name);
    st_buf_free(&b);
    return rc;
}

static void send_header(struct comp *c, const char *from)
{
    if (c->header_sent)
        return;
    c->header_sent = true;
    struct st_buf b;
    st_buf_init(&b, 4096);
    st_buf_puts(&b, "<?xml version='1.0'?><stream:stream xmlns='" ST_NS_COMPONENT
                    "' xmlns:stream='" ST_NS_STREAMS "' id='");
    st_buf_puts(&b, c->id);
    st_buf_puts(&b, "'");
    if (from) {
        st_buf_puts(&b, " from='");
        st_buf_put_xml_escaped(&b, from, strlen(from));
        st_buf_puts(&b, "'");
    }
    st_buf_puts(&b, ">");
    comp_write(c, b.data, b.len);
    st_buf_free(&b);
}

static void fire(struct comp *c, const char *name)
{
    struct st_event ev = {.srv = c->srv, .name = name, .host = c->domain};
    st_events_fire(&c->srv->events, &ev);
}

/* Stops taking stanzas for the component: from here on they bounce. */
static void unlink_comp(struct comp *c)
{
    if (!c->linked)
        return;
    c->linked = false;
    st_component_unlink(c->srv, c->domain);
    st_log_info(c->id, "component %s disconnected", c->domain);
    fire(c, "component-disconnected");
}

static void begin_close(struct comp *c)
{
    c->closing = true;
    unlink_comp(c);
    if (c->parser)
        st_xml_parser_stop(c->parser);
    if (c->conn) {
        st_conn_close(c->conn);
        arm_close_timer(c);
    }
}

/* RFC 6120 §4.9.1.1: a header first when none was sent, the error, the closing tag. */
static void stream_error(struct comp *c, const char *condition, const char *text)
{
    if (c->closing)
        return;
    st_log_info(c->id, "stream error %s%s%s (component %s, peer %s)", condition,
                text ? ": " : "", text ? text : "", c->domain ? c->domain : "-",
                c->conn ? st_conn_peer(c->conn) : "-");
    send_header(c, c->domain);
    struct st_buf b;
    st_buf_init(&b, 4096);
    st_stream_error_write(&b, condition, text);
    st_buf_puts(&b, "</stream:stream>");
    comp_write(c, b.data, b.len);
    st_buf_free(&b);
    begin_close(c);
}

/* ---- disco#info of a freshly connected component ---- */

struct disco_ctx {
    char *domain;
    unsigned long generation;
};

static void on_disco_info(struct st_server *srv, const struct st_xml *reply, void *ud)
{
    struct disco_ctx *d = ud;
    struct st_component_link *l = st_component_link_find(srv, d->domain);
    const char *type = reply ? st_xml_attr(reply, "type") : NULL;
    if (l && l->generation == d->generation && type && strcmp(type, "result") == 0) {
        struct st_xml *q = st_xml_child(reply, "query", NS_DISCO_INFO);
        if (q) {
            st_xml_unref(l->info);
            l->info = st_xml_copy(q);
        }
    }
    st_free(d->domain);
    st_free(d);
}

static void query_disco_info(struct comp *c, const struct st_component_link *l)
{
    struct st_xml *iq = st_xml_new("iq", ST_NS_CLIENT);
    st_xml_set_attr(iq, "type", "get");
    st_xml_set_attr(iq, "from", st_component_host(c->srv, c->domain));
    st_xml_set_attr(iq, "to", c->domain);
    st_xml_add_child(iq, "query", NS_DISCO_INFO);
    struct disco_ctx *d = ST_NEW(struct disco_ctx);
    d->domain = st_strdup(c->domain);
    d->generation = l->generation;
    if (st_iq_send(c->srv, iq, DISCO_TIMEOUT_MS, on_disco_info, d) != 0) {
        st_free(d->domain);
        st_free(d);
    }
    st_xml_unref(iq);
}

/* ---- parser callbacks ---- */

static void on_stream_open(void *ud, const struct st_xml *h)
{
    struct comp *c = ud;
    const char *to = st_xml_attr(h, "to");
    const char *defns = st_xml_attr(h, "xmlns");
    if (strcmp(h->name, "stream") != 0 || strcmp(h->ns, ST_NS_STREAMS) != 0) {
        stream_error(c, "invalid-namespace", "the stream element must be "
                                             "{http://etherx.jabber.org/streams}stream");
        return;
    }
    if (!defns || strcmp(defns, ST_NS_COMPONENT) != 0) {
        stream_error(c, "invalid-namespace", "the content namespace must be "
                                             "jabber:component:accept");
        return;
    }
    char *domain = to ? st_jid_prep_string(to) : NULL;
    const struct st_component_settings *cs =
        domain ? st_component_find(c->srv, domain) : NULL;
    if (!cs) {
        st_free(domain);
        stream_error(c, "host-unknown", to ? "no component is configured for that domain"
                                           : "the stream header has no 'to'");
        return;
    }
    c->domain = domain;
    send_header(c, c->domain);
    c->stream_open = true;
}

static void handle_handshake(struct comp *c, struct st_xml *x)
{
    const struct st_component_settings *cs = st_component_find(c->srv, c->domain);
    char *given = st_xml_text(x);
    bool ok = cs && st_component_digest_ok(c->id, cs->secret, given);
    st_free(given);
    if (!ok) {
        stream_error(c, "not-authorized", "handshake failed");
        return;
    }
    struct st_component_link *l = st_component_link(c->srv, c->domain, comp_send, c);
    if (!l) {
        stream_error(c, "conflict", "this component is already connected");
        return;
    }
    c->linked = true;
    c->authenticated = true;
    st_stream_timer_pause(&c->timer); /* the negotiation deadline is met */
    const struct st_limits *lim = &c->srv->settings.limits;
    struct st_xml_limits xl = {.max_stanza_bytes = lim->stanza_size,
                               .max_depth = (unsigned)lim->max_depth,
                               .max_attrs = (unsigned)lim->max_attributes};
    st_xml_parser_set_limits(c->parser, &xl);
    comp_write(c, "<handshake/>", 12);
    st_log_info(c->id, "component %s connected from %s", c->domain, st_conn_peer(c->conn));
    fire(c, "component-connected");
    if (c->linked)
        query_disco_info(c, l);
}

/* Rebuilds x with the component namespace replaced by jabber:client (element names and
 * namespaces are fixed at creation). Depth is bounded by the parser's max_depth. */
static struct st_xml *to_client_ns(const struct st_xml *x)
{
    if (x->type == ST_XML_TEXT)
        return st_xml_new_text(x->text, x->text_len);
    const char *ns = x->ns && strcmp(x->ns, ST_NS_COMPONENT) == 0 ? ST_NS_CLIENT : x->ns;
    struct st_xml *n = st_xml_new(x->name, ns);
    for (unsigned i = 0; i < x->nattrs; i++)
        st_xml_append_attr(n, x->attrs[i].ns, x->attrs[i].name, x->attrs[i].value);
    for (const struct st_xml *ch = x->first_child; ch; ch = ch->next)
        st_xml_append(n, to_client_ns(ch));
    return n;
}

static void reply_error(struct comp *c, const struct st_xml *x, const char *cond,
                        const char *text)
{
    struct st_xml *e = st_stanza_error(x, "modify", cond, text);
    comp_send(c, e);
    st_xml_unref(e);
}

/* RFC 6120 §8.2.3 for IQs from the component. Returns false when x was answered/dropped. */
static bool iq_valid(struct comp *c, const struct st_xml *x)
{
    const char *type = st_xml_attr(x, "type");
    bool request = type && (strcmp(type, "get") == 0 || strcmp(type, "set") == 0);
    bool reply = type && (strcmp(type, "result") == 0 || strcmp(type, "error") == 0);
    if (!request && !reply) {
        reply_error(c, x, "bad-request", "invalid or missing type");
        return false;
    }
    if (!st_xml_attr(x, "id")) {
        if (request)
            reply_error(c, x, "bad-request", "missing id");
        return false;
    }
    if (request && st_xml_element_count(x) != 1) {
        reply_error(c, x, "bad-request", "an IQ get or set must contain exactly one child");
        return false;
    }
    return true;
}

static void handle_stanza(struct comp *c, struct st_xml *x)
{
    const char *from = st_xml_attr(x, "from");
    const char *to = st_xml_attr(x, "to");
    if (!from || !to) {
        stream_error(c, "improper-addressing", "stanzas from a component need 'from' and 'to'");
        return;
    }
    struct st_jid fj;
    if (st_jid_parse(from, &fj) != 0) {
        stream_error(c, "invalid-from", "the 'from' address is not a valid JID");
        return;
    }
    bool ours = st_domain_covers(c->domain, fj.domain);
    st_jid_clear(&fj);
    if (!ours) {
        stream_error(c, "invalid-from", "a component may only send from its own domain");
        return;
    }
    struct st_xml *y = to_client_ns(x);
    if (strcmp(y->name, "iq") != 0 || iq_valid(c, y))
        st_route(c->srv, NULL, y);
    st_xml_unref(y);
}

static void on_stanza(void *ud, struct st_xml *x)
{
    struct comp *c = ud;
    if (c->closing) {
        st_xml_unref(x);
        return;
    }
    if (!c->authenticated) {
        if (strcmp(x->name, "handshake") == 0 && strcmp(x->ns, ST_NS_COMPONENT) == 0)
            handle_handshake(c, x);
        else
            stream_error(c, "not-authorized", "complete the handshake first");
    } else if (strcmp(x->ns, ST_NS_COMPONENT) == 0 &&
               (strcmp(x->name, "message") == 0 || strcmp(x->name, "presence") == 0 ||
                strcmp(x->name, "iq") == 0)) {
        handle_stanza(c, x);
    } else if (strcmp(x->name, "handshake") == 0 && strcmp(x->ns, ST_NS_COMPONENT) == 0) {
        stream_error(c, "not-authorized", "already authenticated");
    } else {
        stream_error(c, "unsupported-stanza-type", NULL);
    }
    st_xml_unref(x);
}

static void on_stream_close(void *ud)
{
    struct comp *c = ud;
    if (c->closing)
        return;
    comp_write(c, "</stream:stream>", 16);
    begin_close(c);
}

static void on_parse_error(void *ud, enum st_xml_parse_error err, const char *text)
{
    stream_error(ud, st_stream_error_for_parse(err), text);
}

static const struct st_xml_parser_cb parser_cb = {
    .stream_open = on_stream_open,
    .stanza = on_stanza,
    .stream_close = on_stream_close,
    .error = on_parse_error,
};

/* ---- connection lifecycle ---- */

static void on_read(struct st_conn *conn, const char *data, size_t len)
{
    struct comp *c = st_conn_data(conn);
    if (!c->closing)
        st_xml_parser_feed(c->parser, data, len);
}

static void timer_closed(void *owner)
{
    comp_maybe_free(owner);
}

static void mgr_maybe_free(struct st_component_mgr *m)
{
    if (!m->stopped || m->all)
        return;
    if (m->srv->component_mgr == m)
        m->srv->component_mgr = NULL;
    st_free(m);
}

static void comp_maybe_free(struct comp *c)
{
    if (c->conn || st_stream_timer_held(&c->timer))
        return;
    struct st_component_mgr *m = c->mgr;
    for (struct comp **pp = &m->all; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    if (c->parser)
        st_xml_parser_free(c->parser);
    st_free(c->domain);
    st_free(c);
    mgr_maybe_free(m);
}

static void on_close(struct st_conn *conn, int err)
{
    struct comp *c = st_conn_data(conn);
    st_log_info(c->id, "connection closed%s%s", err ? ": " : "", err ? st_strerror(err) : "");
    c->conn = NULL;
    c->closing = true;
    unlink_comp(c);
    st_stream_timer_close(&c->timer);
    comp_maybe_free(c);
}

static const struct st_conn_handler conn_handler = {
    .on_read = on_read,
    .on_close = on_close,
};

static void on_negotiation_timeout(uv_timer_t *t)
{
    stream_error(t->data, "connection-timeout", "the handshake took too long");
}

static void on_close_timeout(uv_timer_t *t)
{
    struct comp *c = t->data;
    if (c->conn) {
        st_log_info(c->id, "peer did not read the end of the stream; dropping it");
        st_conn_abort(c->conn);
    }
}

static void arm_close_timer(struct comp *c)
{
    st_stream_timer_arm(&c->timer, c->srv->loop, CLOSE_TIMEOUT_MS, on_close_timeout);
}

static void on_accept(void *ud, struct st_conn *conn)
{
    struct st_component_mgr *m = ud;
    struct st_server *srv = m->srv;
    if (m->stopped || srv->shutting_down) {
        st_conn_abort(conn);
        return;
    }
    struct comp *c = ST_NEW(struct comp);
    c->mgr = m;
    c->srv = srv;
    c->conn = conn;
    st_rand_id(c->id, sizeof c->id, 128);
    st_conn_set_handler(conn, &conn_handler, c);
    st_conn_set_output_limit(conn, srv->settings.limits.output_queue);
    const struct st_limits *l = &srv->settings.limits;
    struct st_xml_limits xl = {.max_stanza_bytes = l->stanza_size_preauth,
                               .max_depth = (unsigned)l->max_depth,
                               .max_attrs = (unsigned)l->max_attributes};
    c->parser = st_xml_parser_new(&parser_cb, c, &xl);
    st_stream_timer_init(&c->timer, c, timer_closed);
    st_stream_timer_arm(&c->timer, srv->loop, srv->settings.c2s.negotiation_timeout,
                        on_negotiation_timeout);
    c->next = m->all;
    m->all = c;
    st_log_info(c->id, "component connection from %s", st_conn_peer(conn));
}

/* ---- routing: the router's "<kind>/component" events ---- */

static void bounce(struct st_server *srv, struct st_xml *x)
{
    const char *type = st_xml_attr(x, "type");
    if (strcmp(x->name, "presence") == 0)
        return;
    if (strcmp(x->name, "iq") == 0) {
        if (!type || (strcmp(type, "get") != 0 && strcmp(type, "set") != 0))
            return;
    } else {
        const char *mt = st_message_type(x);
        if (strcmp(mt, "headline") == 0 || strcmp(mt, "error") == 0)
            return;
    }
    struct st_xml *e = st_stanza_error(x, "cancel", "service-unavailable", NULL);
    st_send(srv, e);
    st_xml_unref(e);
}

static int on_component(struct st_event *ev, void *ud)
{
    (void)ud;
    struct st_component_link *l = st_component_link_find(ev->srv, ev->to->domain);
    if (!l || l->send(l->ud, ev->stanza) != 0)
        bounce(ev->srv, ev->stanza);
    return ST_EV_HANDLED;
}

int st_component_start(struct st_server *srv)
{
    const struct st_listen_settings *ls = &srv->settings.listen;
    struct st_component_mgr *m = ST_NEW(struct st_component_mgr);
    m->srv = srv;
    srv->component_mgr = m;
    /* Low priority: roster and presence processing (RFC 6121) runs first on presence/component. */
    st_events_add(&srv->events, "message/component", on_component, m, -100, m);
    st_events_add(&srv->events, "presence/component", on_component, m, -100, m);
    st_events_add(&srv->events, "iq/component", on_component, m, -100, m);
    if (ls->component_port == 0 || srv->settings.ncomponents == 0)
        return 0;
    for (size_t i = 0; i < ls->component_interfaces.n && m->nlisteners < MAX_LISTENERS; i++) {
        const char *addr = ls->component_interfaces.items[i];
        char *err = NULL;
        struct st_listener *l = NULL;
        if (st_listener_open(srv->loop, addr, (int)ls->component_port, NULL, 0, on_accept, m,
                             &l, &err) != 0) {
            st_log_error("listen", "cannot listen for components on %s port %d: %s", addr,
                         (int)ls->component_port, err ? err : "?");
            st_free(err);
            return ST_EIO;
        }
        m->listeners[m->nlisteners++] = l;
        st_log_info("listen", "components (XEP-0114) on %s port %d", addr, st_listener_port(l));
    }
    return 0;
}

void st_component_reload(struct st_server *srv)
{
    struct st_component_mgr *m = srv->component_mgr;
    if (!m || m->stopped)
        return;
    /* RFC 6120 §4.9.3.6: <host-gone/> is the condition for a domain this server no longer
     * serves. A changed secret needs nothing here: the handshake reads the settings, so it
     * applies to the next connection and the authenticated stream keeps running. */
    for (struct comp *c = m->all; c; c = c->next)
        if (c->domain && !c->closing && !st_component_find(srv, c->domain))
            stream_error(c, "host-gone", "the component was removed from the configuration");
}

void st_component_stop(struct st_server *srv)
{
    struct st_component_mgr *m = srv->component_mgr;
    if (!m || m->stopped)
        return;
    m->stopped = true;
    for (unsigned i = 0; i < m->nlisteners; i++)
        st_listener_close(m->listeners[i]);
    m->nlisteners = 0;
    st_events_remove_owner(&srv->events, m);
    for (struct comp *c = m->all; c; c = c->next)
        stream_error(c, "system-shutdown", NULL);
    st_components_registry_free(srv);
    mgr_maybe_free(m);
}
