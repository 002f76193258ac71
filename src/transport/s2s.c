/* Federation core (RFC 6120 §10.4 remote delivery, §13.7 TLS for s2s):
 * the subsystem state, the s2s listeners (STARTTLS port and XEP-0368
 * direct TLS port), the routing glue on the router's "message/remote",
 * "presence/remote" and "iq/remote" events (one outgoing stream per
 * (local domain, remote domain) pair, or an authenticated XEP-0288
 * bidirectional incoming stream), bounces (RFC 6120 §8.3.3.14/15
 * remote-server-not-found / remote-server-timeout: no stanza is lost
 * silently), the stanza size limit (policy-violation), the idle sweep, and
 * the helpers both stream directions share: output, stream errors and
 * closing (§4.9), timers, deferred freeing (a stream is freed only once its
 * connection, timer and pending requests are gone). */
#include "transport/s2s.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/sha.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rand.h"
#include "net/conn.h"
#include "net/connect.h"
#include "net/tls.h"
#include "starling/module.h"
#include "transport/s2s_int.h"
#include "xml/parser.h"
#include "xmpp/errors.h"
#include "xmpp/server.h"

#define CLOSE_TIMEOUT_MS 5000

/* ---- streams ---- */

static void timer_closed(void *s);

struct s2s *st_s2s__new_stream(struct st_s2s *m, bool out)
{
    struct s2s *s = ST_NEW(struct s2s);
    s->m = m;
    st_stream_timer_init(&s->timer, s, timer_closed);
    s->out = out;
    s->qtail = &s->qhead;
    s->next = m->all;
    if (m->all)
        m->all->prev = s;
    m->all = s;
    m->nstreams++;
    s->last_active = uv_now(m->srv->loop);
    return s;
}

static void manager_maybe_free(struct st_s2s *m);

/* The stream's timer handle is gone (stream_timer.h). */
static void timer_closed(void *s)
{
    st_s2s__maybe_free(s);
}

void st_s2s__maybe_free(struct s2s *s)
{
    if (s->conn || st_stream_timer_held(&s->timer) || s->creq)
        return;
    struct st_s2s *m = s->m;
    if (s->dreq) {
        st_dns_cancel(s->dreq);
        s->dreq = NULL;
    }
    st_s2s_out_unregister(s);
    st_s2s_out_free_mux(s);
    if (!s->out && s->id[0] && st_map_get(&m->in_by_id, s->id) == s)
        st_map_del(&m->in_by_id, s->id);
    while (s->qhead) {
        struct s2s_qitem *q = s->qhead;
        s->qhead = q->next;
        st_s2s__bounce(m, q->x, "remote-server-not-found", NULL);
        st_xml_unref(q->x);
        st_free(q);
    }
    while (s->verifies) {
        struct s2s_verify *v = s->verifies;
        s->verifies = v->next;
        st_s2s_in_verified(m, v->in_id, v->to, v->from, false);
        st_free(v->from);
        st_free(v->to);
        st_free(v->id);
        st_free(v->key);
        st_free(v->in_id);
        st_free(v);
    }
    while (s->pending) {
        struct s2s_pending *p = s->pending;
        s->pending = p->next;
        st_free(p->from);
        st_free(p->to);
        st_free(p);
    }
    for (size_t i = 0; i < s->npairs; i++) {
        st_free(s->pairs[i].from);
        st_free(s->pairs[i].to);
    }
    st_free(s->pairs);
    if (s->parser)
        st_xml_parser_free(s->parser);
    st_free(s->targets);
    st_free(s->addrs);
    st_free(s->local);
    st_free(s->remote);
    if (s->prev)
        s->prev->next = s->next;
    else
        m->all = s->next;
    if (s->next)
        s->next->prev = s->prev;
    m->nstreams--;
    st_free(s);
    manager_maybe_free(m);
}

void st_s2s__write(struct s2s *s, const char *data, size_t len)
{
    if (!s->conn)
        return;
    int rc = st_conn_write(s->conn, data, len);
    if (rc == ST_ELIMIT) {
        st_log_warn(s->name, "output queue full (peer not reading); disconnecting");
        s->closing = true;
        st_conn_abort(s->conn);
        return;
    }
    s->last_active = uv_now(s->m->srv->loop);
}

void st_s2s__write_str(struct s2s *s, const char *str)
{
    st_s2s__write(s, str, strlen(str));
}

int st_s2s__send_stanza(struct s2s *s, struct st_xml *x)
{
    size_t max = s->m->srv->settings.s2s.max_stanza_size;
    struct st_buf b;
    st_buf_init(&b, max);
    /* Internal stanzas are jabber:client; written unprefixed into a jabber:server stream they
     * take its default namespace, which is the translation RFC 6120 §4.8.3 asks for. */
    int rc = st_xml_serialize(x, ST_NS_CLIENT, &b);
    if (rc == 0)
        st_s2s__write(s, b.data, b.len);
    st_buf_free(&b);
    return rc;
}

/* Appends ` name='value'` (value escaped) when value is set. */
static void put_attr(struct st_buf *b, const char *name, const char *value)
{
    if (!value)
        return;
    st_buf_printf(b, " %s='", name);
    st_buf_put_xml_escaped(b, value, strlen(value));
    st_buf_puts(b, "'");
}

void st_s2s__write_db(struct s2s *s, const char *el, const char *from, const char *to,
                      const char *id, const char *type, const char *key)
{
    struct st_buf b;
    st_buf_init(&b, 4096);
    st_buf_printf(&b, "<db:%s", el);
    put_attr(&b, "from", from);
    put_attr(&b, "to", to);
    put_attr(&b, "id", id);
    if (type) {
        put_attr(&b, "type", type);
        st_buf_puts(&b, "/>");
    } else {
        st_buf_puts(&b, ">");
        st_buf_put_xml_escaped(&b, key, strlen(key));
        st_buf_printf(&b, "</db:%s>", el);
    }
    st_s2s__write(s, b.data, b.len);
    st_buf_free(&b);
}

void st_s2s__send_header(struct s2s *s, const char *from, const char *to, const char *id)
{
    struct st_buf b;
    st_buf_init(&b, 4096);
    st_buf_puts(&b, "<?xml version='1.0'?><stream:stream xmlns='" ST_NS_SERVER
                    "' xmlns:stream='" ST_NS_STREAMS "' xmlns:db='" ST_NS_DIALBACK "'");
    put_attr(&b, "from", from);
    put_attr(&b, "to", to);
    if (id)
        st_buf_printf(&b, " id='%s'", id);
    st_buf_puts(&b, " version='1.0'>");
    st_s2s__write(s, b.data, b.len);
    st_buf_free(&b);
    s->header_sent = true;
}

void st_s2s__attach(struct s2s *s, const struct st_conn_handler *h,
                    const struct st_xml_parser_cb *cb)
{
    const struct st_server *srv = s->m->srv;
    st_conn_set_handler(s->conn, h, s);
    st_conn_set_output_limit(s->conn, srv->settings.limits.output_queue);
    struct st_xml_limits xl = {
        .max_stanza_bytes = srv->settings.s2s.max_stanza_size,
        .max_depth = (unsigned)srv->settings.limits.max_depth,
        .max_attrs = (unsigned)srv->settings.limits.max_attributes,
    };
    s->parser = st_xml_parser_new(cb, s, &xl);
}

bool st_s2s__is_ns(const struct st_xml *x, const char *name, const char *ns)
{
    return strcmp(x->name, name) == 0 && strcmp(x->ns, ns) == 0;
}

bool st_s2s__is_stanza(const struct st_xml *x)
{
    return strcmp(x->ns, ST_NS_SERVER) == 0 &&
           (strcmp(x->name, "message") == 0 || strcmp(x->name, "presence") == 0 ||
            strcmp(x->name, "iq") == 0);
}

void st_s2s__on_stream_close(void *ud)
{
    struct s2s *s = ud;
    st_log_debug(s->name, "peer closed the stream");
    st_s2s__close(s, NULL, NULL);
}

static void on_close_timeout(uv_timer_t *t)
{
    struct s2s *s = t->data;
    if (s->conn) {
        st_log_info(s->name, "peer did not read the end of the stream; dropping it");
        st_conn_abort(s->conn);
    }
}

void st_s2s__arm_timer(struct s2s *s, uint64_t ms, uv_timer_cb cb)
{
    st_stream_timer_arm(&s->timer, s->m->srv->loop, ms, cb);
}

void st_s2s__stop_timer(struct s2s *s)
{
    st_stream_timer_close(&s->timer);
}

void st_s2s__pause_timer(struct s2s *s)
{
    st_stream_timer_pause(&s->timer);
}

void st_s2s__close(struct s2s *s, const char *cond, const char *text)
{
    if (s->closing)
        return;
    if (s->out && s->state != SS_READY)
        st_s2s_out_drain(s, text ? text : cond ? cond : "stream closed", false);
    s->closing = true;
    st_s2s_out_unregister(s);
    if (cond)
        st_log_info(s->name, "stream error %s%s%s", cond, text ? ": " : "", text ? text : "");
    struct st_buf b;
    st_buf_init(&b, 4096);
    if (s->conn && !s->header_sent && !s->out)
        st_s2s__send_header(s, s->local, s->remote, s->id[0] ? s->id : NULL);
    if (cond)
        st_stream_error_write(&b, cond, text);
    st_buf_puts(&b, "</stream:stream>");
    if (s->header_sent)
        st_s2s__write(s, b.data, b.len);
    st_buf_free(&b);
    if (s->parser)
        st_xml_parser_stop(s->parser);
    if (s->dreq) {
        st_dns_cancel(s->dreq);
        s->dreq = NULL;
    }
    if (s->creq) {
        st_connect_cancel(s->creq);
        s->creq = NULL;
    }
    if (s->conn) {
        st_conn_close(s->conn);
        st_s2s__arm_timer(s, CLOSE_TIMEOUT_MS, on_close_timeout);
    } else {
        st_s2s__stop_timer(s);
        st_s2s__maybe_free(s);
    }
}

/* ---- stanzas ---- */

void st_s2s__bounce(struct st_s2s *m, struct st_xml *x, const char *cond, const char *text)
{
    const char *type = st_xml_attr(x, "type");
    if (type && strcmp(type, "error") == 0)
        return; /* RFC 6120 §8.3.1 */
    if (strcmp(x->name, "iq") == 0 && type && strcmp(type, "result") == 0)
        return;
    if (!st_xml_attr(x, "from") || !st_xml_attr(x, "to"))
        return;
    struct st_xml *err = st_stanza_error(x, strcmp(cond, "remote-server-timeout") == 0 ||
                                                    strcmp(cond, "resource-constraint") == 0
                                                ? "wait"
                                                : "cancel",
                                         cond, text);
    st_send(m->srv, err);
    st_xml_unref(err);
}

static struct st_xml *convert(const struct st_xml *x)
{
    if (x->type == ST_XML_TEXT)
        return st_xml_new_text(x->text, x->text_len);
    const char *ns = x->ns && strcmp(x->ns, ST_NS_SERVER) == 0 ? ST_NS_CLIENT : x->ns;
    struct st_xml *n = st_xml_new(x->name, ns);
    for (unsigned i = 0; i < x->nattrs; i++)
        st_xml_append_attr(n, x->attrs[i].ns, x->attrs[i].name, x->attrs[i].value);
    for (const struct st_xml *c = x->first_child; c; c = c->next)
        st_xml_append(n, convert(c));
    return n;
}

struct st_xml *st_s2s__to_client_ns(const struct st_xml *x)
{
    /* Nesting is bounded by the parser's max_depth, so recursion is bounded too. */
    return convert(x);
}

bool st_s2s__insecure_ok(struct st_s2s *m, const char *domain)
{
    const struct st_strlist *l = &m->srv->settings.s2s.insecure_domains;
    for (size_t i = 0; domain && i < l->n; i++)
        if (strcasecmp(l->items[i], domain) == 0)
            return true;
    return false;
}

struct s2s *st_s2s__find_in(struct st_s2s *m, const char *id)
{
    return id ? st_map_get(&m->in_by_id, id) : NULL;
}

struct s2s *st_s2s__find_bidi(struct st_s2s *m, const char *local, const char *remote)
{
    for (struct s2s *s = m->all; s; s = s->next)
        if (!s->out && s->bidi && !s->closing && s->conn &&
            st_s2s_in_authorized(s, remote, local))
            return s;
    return NULL;
}

/* The router's "<kind>/remote" events: the stanza leaves through federation. */
static int on_remote(struct st_event *ev, void *ud)
{
    struct st_s2s *m = ud;
    if (m->stopping || !ev->from || !ev->to)
        return ST_EV_PASS;
    if (!st_domain_served(m->srv, ev->from->domain)) {
        /* We relay nothing between two remote domains (RFC 6120 §13.9). */
        return ST_EV_PASS;
    }
    /* Our own stream first; else a peer's authenticated bidirectional stream (XEP-0288);
     * else a new stream. */
    struct s2s *s = st_s2s_out_find(m, ev->from->domain, ev->to->domain);
    if (!s) {
        struct s2s *b = st_s2s__find_bidi(m, ev->from->domain, ev->to->domain);
        if (b) {
            if (st_s2s__send_stanza(b, ev->stanza) != 0)
                st_s2s__bounce(m, ev->stanza, "policy-violation",
                               "stanza too large for federation");
            return ST_EV_HANDLED;
        }
        s = st_s2s_out_get(m, ev->from->domain, ev->to->domain);
    }
    if (!s) {
        st_s2s__bounce(m, ev->stanza, "remote-server-not-found", NULL);
        return ST_EV_HANDLED;
    }
    st_s2s_out_send_pair(s, ev->from->domain, ev->to->domain, ev->stanza);
    return ST_EV_HANDLED;
}

/* ---- idle sweep ---- */

static void sweep_cb(uv_timer_t *t)
{
    struct st_s2s *m = t->data;
    uint64_t now = uv_now(m->srv->loop);
    uint64_t idle = m->srv->settings.s2s.idle_timeout;
    for (struct s2s *s = m->all, *next; s; s = next) {
        next = s->next;
        if (s->closing || !s->conn)
            continue;
        bool settled = s->out ? s->state == SS_READY : s->npairs > 0;
        if (settled && now - s->last_active >= idle) {
            st_log_info(s->name, "idle for %llu ms; closing",
                        (unsigned long long)(now - s->last_active));
            st_s2s__close(s, NULL, NULL);
        }
    }
}

/* ---- configuration ---- */

static int load_tls_client(struct st_server *srv, struct st_tls_client **out)
{
    const struct st_s2s_settings *ss = &srv->settings.s2s;
    char *err = NULL;
    int rc = st_tls_client_new((const char *const *)ss->ca_files.items, ss->ca_files.n, out,
                               &err);
    if (rc) {
        st_log_error("s2s", "%s", err ? err : "cannot set up TLS for federation");
        st_free(err);
        return rc;
    }
    for (size_t i = 0; i < srv->settings.nhosts; i++) {
        const struct st_host_settings *h = &srv->settings.hosts[i];
        char *cert = st_settings_cert_path(&srv->settings, h);
        char *key = st_settings_key_path(&srv->settings, h);
        if (st_tls_client_add_cert(*out, h->name, cert, key, &err) != 0) {
            st_log_warn("s2s", "%s: %s (peers cannot authenticate %s by certificate)", h->name,
                        err ? err : "?", h->name);
            st_free(err);
            err = NULL;
        }
        st_free(cert);
        st_free(key);
    }
    return 0;
}

static void copy_routes(struct st_s2s *m, const struct st_cfg_node *routes)
{
    for (struct st_map_entry *e = st_map_first(&m->routes); e; e = st_map_next(&m->routes, e))
        st_free(e->value);
    st_map_free(&m->routes);
    st_map_init(&m->routes);
    for (const struct st_cfg_node *c = routes ? routes->child : NULL; c; c = c->next) {
        char *d = st_jid_prep_string(c->key);
        if (d && c->value)
            st_map_set(&m->routes, d, st_strdup(c->value));
        st_free(d);
    }
}

static int open_listeners(struct st_s2s *m)
{
    struct st_server *srv = m->srv;
    const struct st_s2s_settings *ss = &srv->settings.s2s;
    const struct st_strlist *ifs = &srv->settings.listen.interfaces;
    int ports[2] = {(int)ss->port, (int)ss->tls_port};
    for (size_t i = 0; i < ifs->n; i++) {
        for (int k = 0; k < 2; k++) {
            if (ports[k] == 0 || m->nlisteners >= sizeof m->listeners / sizeof m->listeners[0])
                continue;
            struct st_listener *l = NULL;
            char *err = NULL;
            int rc = st_listener_open(srv->loop, ifs->items[i], ports[k], k ? srv->tls : NULL,
                                      0, st_s2s_in_accept, m, &l, &err);
            if (rc) {
                bool v6 = strchr(ifs->items[i], ':') != NULL;
                st_log(v6 ? ST_LOG_WARN : ST_LOG_ERROR, "listen", "s2s: %s",
                       err ? err : "cannot listen");
                st_free(err);
                if (!v6)
                    return ST_EIO;
                continue;
            }
            m->listeners[m->nlisteners++] = l;
            st_log_info("listen", "s2s%s on %s port %d", k ? " (direct TLS)" : "",
                        ifs->items[i], st_listener_port(l));
        }
    }
    return 0;
}

int st_s2s_start(struct st_server *srv)
{
    struct st_s2s *m = ST_NEW(struct st_s2s);
    m->srv = srv;
    st_map_init(&m->out);
    st_map_init(&m->in_by_id);
    st_map_init(&m->routes);
    const struct st_s2s_settings *ss = &srv->settings.s2s;
    if (ss->dialback_secret && ss->dialback_secret[0]) {
        /* Hashed so a configured secret of any length gives a full-size key, and servers
         * sharing it (a cluster) compute the same keys. */
        SHA256((const unsigned char *)ss->dialback_secret, strlen(ss->dialback_secret),
               m->secret);
    } else {
        st_rand_bytes(m->secret, sizeof m->secret);
    }
    copy_routes(m, ss->routes);
    char *err = NULL;
    int rc = st_dns_new(srv->loop, (const char *const *)srv->settings.dns.servers.items,
                        srv->settings.dns.servers.n, srv->settings.dns.timeout, &m->dns, &err);
    if (rc) {
        st_log_error("s2s", "%s", err ? err : "cannot start the DNS resolver");
        st_free(err);
        goto fail;
    }
    rc = load_tls_client(srv, &m->tlsc);
    if (rc)
        goto fail;
    rc = open_listeners(m);
    if (rc)
        goto fail;
    uv_timer_init(srv->loop, &m->sweep);
    m->sweep.data = m;
    uint64_t every = ss->idle_timeout / 4;
    if (every > 5000)
        every = 5000;
    if (every < 250)
        every = 250;
    uv_timer_start(&m->sweep, sweep_cb, every, every);
    st_events_add(&srv->events, "message/remote", on_remote, m, 0, m);
    st_events_add(&srv->events, "presence/remote", on_remote, m, 0, m);
    st_events_add(&srv->events, "iq/remote", on_remote, m, 0, m);
    srv->s2s = m;
    return 0;
fail:
    for (unsigned i = 0; i < m->nlisteners; i++)
        st_listener_close(m->listeners[i]);
    st_dns_free(m->dns);
    st_tls_client_unref(m->tlsc);
    copy_routes(m, NULL);
    st_map_free(&m->routes);
    st_map_free(&m->out);
    st_map_free(&m->in_by_id);
    st_memzero(m->secret, sizeof m->secret);
    st_free(m);
    return rc;
}

void st_s2s_reload(struct st_server *srv)
{
    struct st_s2s *m = srv->s2s;
    if (!m || m->stopping)
        return;
    copy_routes(m, srv->settings.s2s.routes);
    struct st_tls_client *t = NULL;
    if (load_tls_client(srv, &t) == 0) {
        st_tls_client_unref(m->tlsc);
        m->tlsc = t;
    }
    for (unsigned i = 0; i < m->nlisteners; i++)
        if (st_listener_port(m->listeners[i]) == (int)srv->settings.s2s.tls_port)
            st_listener_set_tls(m->listeners[i], srv->tls);
}

static void sweep_closed(uv_handle_t *h)
{
    struct st_s2s *m = h->data;
    m->sweep_closed = true;
    manager_maybe_free(m);
}

static void manager_maybe_free(struct st_s2s *m)
{
    if (!m->stopping || m->nstreams || !m->sweep_closed)
        return;
    copy_routes(m, NULL);
    st_map_free(&m->routes);
    st_map_free(&m->out);
    st_map_free(&m->in_by_id);
    st_tls_client_unref(m->tlsc);
    st_memzero(m->secret, sizeof m->secret);
    st_free(m);
}

void st_s2s_stop(struct st_server *srv)
{
    struct st_s2s *m = srv ? srv->s2s : NULL;
    if (!m || m->stopping)
        return;
    m->stopping = true;
    srv->s2s = NULL;
    st_events_remove_owner(&srv->events, m);
    for (unsigned i = 0; i < m->nlisteners; i++)
        st_listener_close(m->listeners[i]);
    m->nlisteners = 0;
    /* Each close may free the stream it closes, so walk a snapshot of the list. */
    size_t n = m->nstreams, k = 0;
    struct s2s **list = st_calloc(n + 1, sizeof *list);
    for (struct s2s *s = m->all; s && k < n; s = s->next)
        list[k++] = s;
    m->nstreams++; /* keep the state alive while closing */
    for (size_t i = 0; i < k; i++)
        st_s2s__close(list[i], "system-shutdown", NULL);
    st_free(list);
    m->nstreams--;
    st_dns_free(m->dns);
    m->dns = NULL;
    uv_timer_stop(&m->sweep);
    uv_close((uv_handle_t *)&m->sweep, sweep_closed);
}
