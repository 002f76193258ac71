/* BOSH: XMPP over HTTP long polling (XEP-0124, XEP-0206) at /http-bind.
 * A session (sid: 128 random bits) owns a framed c2s stream; each POSTed
 * <body/> carries a request id (rid). Requests are processed strictly in
 * rid order (XEP-0124 §14.2: a request ahead of a gap waits for the gap to
 * fill, within the window of 'requests'), held until output arrives or
 * 'wait' expires, and at most 'hold' stay held (§7.1, §10); hold=0 is
 * polling (§12: two empty polls closer than 'polling' are overactivity).
 * The last answers are cached so a repeated rid is answered again (§14.3
 * broken connections). Terminal conditions (§17.2): item-not-found (unknown
 * sid, rid outside the window), policy-violation (too many simultaneous
 * requests, polling too often), bad-request, host-unknown,
 * remote-stream-error (a stream error, carried inside), system-shutdown.
 * Stream restarts after SASL use xmpp:restart (XEP-0206 §5); 'terminate'
 * ends the session (XEP-0124 §13); 'inactivity' without any request ends it
 * too; a client may stretch that window once with 'pause' up to the
 * advertised 'maxpause' (XEP-0124 §10). A stream the server ends while no
 * request is held keeps its terminate body, payload included, for the next
 * request within the inactivity window (instead of item-not-found).
 * Stanzas without a namespace inherit httpbind's and are treated as
 * jabber:client (XEP-0206 §4). */
#include "transport/bosh.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/rand.h"
#include "http/http.h"
#include "transport/c2s.h"
#include "xml/node.h"
#include "xmpp/server.h"

#define NS_HTTPBIND "http://jabber.org/protocol/httpbind"
#define NS_XBOSH "urn:xmpp:xbosh"
#define MAX_REQ 16     /* bound on 'requests' and on the caches below */
#define BOSH_CT "text/xml; charset=utf-8"
#define MAX_FINALS 4096 /* bound on kept terminate bodies of ended sessions */

/* The last answer of a session that ended while no request was held. */
struct final {
    char *body;
    size_t len;
    uint64_t expires_ms;
};

struct bosh_server {
    struct st_server *srv;
    struct st_map sessions; /* sid -> struct bosh */
    struct st_map finals;   /* sid -> struct final */
};

struct held {
    struct st_http_request *req;
    uint64_t rid;
    uint64_t deadline;
    bool creation; /* the session creation request: answered at once with the attributes */
};

struct cached {
    uint64_t rid;
    char *body;
    size_t len;
};

struct bosh {
    struct bosh_server *bs; /* NULL once the server's BOSH state is gone */
    struct c2s *c;
    char sid[33];
    uint64_t wait_ms, inactivity_ms, polling_ms;
    uint64_t pause_ms;          /* inactivity granted by the client's last 'pause', or 0 */
    unsigned hold, requests;
    uint64_t last_rid;          /* highest rid processed */
    uint64_t last_request_ms;   /* for inactivity */
    uint64_t last_empty_poll_ms;
    struct held held[MAX_REQ];  /* processed, waiting for an answer, oldest first */
    unsigned nheld;
    struct held ahead[MAX_REQ]; /* received ahead of a gap in the rids */
    unsigned nahead;
    struct cached cache[MAX_REQ];
    unsigned ncache, cache_next;
    uint64_t orphans[MAX_REQ];  /* processed rids whose connection broke before the answer */
    unsigned norphans;
    struct st_buf out;          /* elements waiting for a request to carry them */
    char *host;                 /* 'from' of our stream */
    uv_timer_t *timer;
    int busy;                   /* inside request processing: defer teardown */
    bool ended;
    bool gone_pending;
    bool expired;               /* ended by inactivity: nothing is kept for a late request */
};

static void schedule(struct bosh *b);

/* ---- answering ---- */

static void cache_put(struct bosh *b, uint64_t rid, const char *body, size_t len)
{
    struct cached *c = &b->cache[b->cache_next];
    st_free(c->body);
    c->rid = rid;
    c->body = st_strndup(body, len);
    c->len = len;
    b->cache_next = (b->cache_next + 1) % MAX_REQ;
    if (b->ncache < MAX_REQ)
        b->ncache++;
}

static const struct cached *cache_get(const struct bosh *b, uint64_t rid)
{
    for (unsigned i = 0; i < b->ncache; i++)
        if (b->cache[i].body && b->cache[i].rid == rid)
            return &b->cache[i];
    return NULL;
}

static void add_session_attrs(struct bosh *b, struct st_buf *o)
{
    st_buf_printf(o, " sid='%s' wait='%llu' requests='%u' hold='%u' inactivity='%llu'"
                     " polling='%llu' ver='1.11' authid='%s' secure='%s'"
                     " xmpp:version='1.0' xmpp:restartlogic='true' xmlns:xmpp='" NS_XBOSH "'",
                  b->sid, (unsigned long long)(b->wait_ms / 1000), b->requests, b->hold,
                  (unsigned long long)(b->inactivity_ms / 1000),
                  (unsigned long long)(b->polling_ms / 1000), b->c->stream_id,
                  b->c->sess.secure ? "true" : "false");
    if (b->c->srv->settings.bosh.max_pause)
        st_buf_printf(o, " maxpause='%llu'",
                      (unsigned long long)(b->c->srv->settings.bosh.max_pause / 1000));
    if (b->host) {
        st_buf_puts(o, " from='");
        st_buf_put_xml_escaped(o, b->host, strlen(b->host));
        st_buf_puts(o, "'");
    }
}

/* Ends an open <body: with the payload as its content, or empty when len is 0. */
static void put_body_end(struct st_buf *o, const char *payload, size_t len)
{
    if (len) {
        st_buf_puts(o, " xmlns:stream='http://etherx.jabber.org/streams'>");
        st_buf_append(o, payload, len);
        st_buf_puts(o, "</body>");
    } else {
        st_buf_puts(o, "/>");
    }
}

/* Answers the oldest held request with payload (may be empty) and extra body attributes. */
static void answer_oldest(struct bosh *b, const char *payload, size_t len, const char *attrs)
{
    struct held h = b->held[0];
    memmove(b->held, b->held + 1, (b->nheld - 1) * sizeof b->held[0]);
    b->nheld--;
    if (!b->nheld) /* 'inactivity' counts from when no request is held */
        b->last_request_ms = uv_now(b->c->srv->loop);
    struct st_buf o;
    st_buf_init(&o, 0);
    st_buf_puts(&o, "<body xmlns='" NS_HTTPBIND "'");
    if (h.creation)
        add_session_attrs(b, &o);
    if (attrs)
        st_buf_puts(&o, attrs);
    put_body_end(&o, payload, len);
    cache_put(b, h.rid, o.data, o.len);
    st_http_set_abort(h.req, NULL, NULL);
    st_http_respond(h.req, 200, BOSH_CT, NULL, o.data, o.len);
    st_buf_free(&o);
}

/* Sends what can be sent now: pending output to the oldest held request; then empty answers
 * while more than 'hold' requests are held (XEP-0124 §10). */
static void flush(struct bosh *b)
{
    if (b->ended)
        return;
    if (b->nheld && (b->out.len || b->held[0].creation)) {
        struct st_buf out = b->out;
        st_buf_init(&b->out, out.max);
        answer_oldest(b, out.data, out.len, NULL);
        st_buf_free(&out);
    }
    while (b->nheld > b->hold)
        answer_oldest(b, NULL, 0, NULL);
    schedule(b);
}

static void on_timer_closed(uv_handle_t *h)
{
    st_free(h);
}

static void bosh_free(struct bosh *b)
{
    if (b->timer) {
        uv_timer_stop(b->timer);
        uv_close((uv_handle_t *)b->timer, on_timer_closed);
        b->timer = NULL;
    }
    for (unsigned i = 0; i < MAX_REQ; i++)
        st_free(b->cache[i].body);
    st_buf_free(&b->out);
    st_free(b->host);
    st_free(b);
}

static void on_gone_timer(uv_timer_t *t)
{
    struct bosh *b = t->data;
    b->gone_pending = false;
    uv_timer_stop(t);
    /* c2s frees b through io_destroy, now or once its asynchronous jobs end. */
    st_c2s_gone(b->c, 0);
}

static void final_free(void *v)
{
    struct final *f = v;
    st_free(f->body);
    st_free(f);
}

/* Drops kept terminate bodies whose inactivity window has passed. */
static void finals_prune(struct bosh_server *bs, uint64_t now)
{
    for (struct st_map_entry *e = st_map_first(&bs->finals); e;) {
        struct st_map_entry *next = st_map_next(&bs->finals, e);
        struct final *f = e->value;
        if (f->expires_ms <= now) {
            final_free(f);
            st_map_del(&bs->finals, e->key);
        }
        e = next;
    }
}

/* Keeps the terminate body for the next request of the sid (the stream ended while the
 * client had no request with us to carry it). */
static void final_keep(struct bosh *b, const char *attrs, const char *payload, size_t len)
{
    struct bosh_server *bs = b->bs;
    uint64_t now = uv_now(b->c->srv->loop);
    finals_prune(bs, now);
    if (bs->finals.count >= MAX_FINALS)
        return;
    struct st_buf o;
    st_buf_init(&o, 0);
    st_buf_printf(&o, "<body xmlns='" NS_HTTPBIND "'%s", attrs);
    put_body_end(&o, payload, len);
    struct final *f = ST_NEW(struct final);
    f->len = o.len;
    f->body = st_buf_take(&o);
    f->expires_ms = now + (b->pause_ms > b->inactivity_ms ? b->pause_ms : b->inactivity_ms);
    st_map_set(&bs->finals, b->sid, f);
}

/* Ends the session: every held or waiting request gets a terminate body (XEP-0124 §13,
 * §17.2), the sid is forgotten, and the c2s learns it is gone at a safe point. With no
 * request to carry it, the terminate body waits for the next one. */
static void bosh_end(struct bosh *b, const char *condition, const char *payload, size_t len)
{
    if (b->ended)
        return;
    b->ended = true;
    b->c->sess.closing = true;
    st_session_unbind(&b->c->sess);
    char attrs[128];
    snprintf(attrs, sizeof attrs, " type='terminate'%s%s%s", condition ? " condition='" : "",
             condition ? condition : "", condition ? "'" : "");
    bool delivered = b->nheld > 0;
    while (b->nheld) {
        bool last = b->nheld == 1;
        answer_oldest(b, last ? payload : NULL, last ? len : 0, attrs);
    }
    if (!delivered && b->bs && !b->expired)
        final_keep(b, attrs, payload, len);
    for (unsigned i = 0; i < b->nahead; i++) {
        struct st_buf o;
        st_buf_init(&o, 0);
        st_buf_printf(&o, "<body xmlns='" NS_HTTPBIND "'%s/>", attrs);
        st_http_set_abort(b->ahead[i].req, NULL, NULL);
        st_http_respond(b->ahead[i].req, 200, BOSH_CT, NULL, o.data, o.len);
        st_buf_free(&o);
    }
    b->nahead = 0;
    if (b->bs)
        st_map_del(&b->bs->sessions, b->sid);
    st_log_info(b->c->sess.id, "BOSH session %s ended%s%s", b->sid, condition ? ": " : "",
                condition ? condition : "");
    b->gone_pending = true;
    uv_timer_start(b->timer, on_gone_timer, 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    struct bosh *b = t->data;
    uint64_t now = uv_now(b->c->srv->loop);
    if (b->ended)
        return;
    /* 'wait' expired: answer empty (XEP-0124 §7.1). */
    while (b->nheld && b->held[0].deadline <= now)
        answer_oldest(b, NULL, 0, NULL);
    uint64_t inactivity = b->pause_ms ? b->pause_ms : b->inactivity_ms;
    if (!b->nheld && !b->nahead && now - b->last_request_ms >= inactivity) {
        st_log_info(b->c->sess.id, "BOSH session %s inactive for %llu ms", b->sid,
                    (unsigned long long)(now - b->last_request_ms));
        b->expired = true;
        bosh_end(b, NULL, NULL, 0);
        return;
    }
    schedule(b);
}

static void schedule(struct bosh *b)
{
    if (b->ended || !b->timer)
        return;
    uint64_t now = uv_now(b->c->srv->loop);
    uint64_t at;
    if (b->nheld)
        at = b->held[0].deadline;
    else
        at = b->last_request_ms + (b->pause_ms ? b->pause_ms : b->inactivity_ms);
    uv_timer_start(b->timer, on_timer, at > now ? at - now : 0, 0);
}

/* ---- the c2s output side ---- */

static void io_write(struct c2s *c, const char *data, size_t len)
{
    struct bosh *b = c->io_data;
    if (b->ended)
        return;
    if (st_buf_append(&b->out, data, len) != 0) {
        st_log_warn(c->sess.id, "BOSH output queue full (client not polling); ending session");
        c->aborted = true;
        c->sess.closing = true;
        st_session_unbind(&c->sess);
        bosh_end(b, "remote-connection-failed", NULL, 0);
        return;
    }
    if (!b->busy)
        flush(b);
}

static void io_open(struct c2s *c, const char *from, const char *to)
{
    (void)to;
    struct bosh *b = c->io_data;
    st_free(b->host);
    b->host = st_strdup(from);
}

static void io_close(struct c2s *c, const char *error, size_t len)
{
    struct bosh *b = c->io_data;
    const char *cond = NULL;
    if (error) {
        if (strstr(error, "<host-unknown "))
            cond = "host-unknown";
        else if (strstr(error, "<system-shutdown "))
            cond = "system-shutdown";
        else
            cond = "remote-stream-error";
        st_buf_append(&b->out, error, len);
    }
    /* Output queued before the close (e.g. a <failure/>) rides in the terminate body. */
    struct st_buf out = b->out;
    st_buf_init(&b->out, out.max);
    bosh_end(b, cond, out.data, out.len);
    st_buf_free(&out);
}

static void io_destroy(struct c2s *c)
{
    bosh_free(c->io_data);
}

static const struct st_c2s_io bosh_io = {
    .write = io_write,
    .open = io_open,
    .close = io_close,
    .destroy = io_destroy,
};

/* ---- requests ---- */

static void respond_terminate(struct st_http_request *req, const char *condition)
{
    char body[192];
    int n = snprintf(body, sizeof body,
                     "<body xmlns='" NS_HTTPBIND "' type='terminate' condition='%s'/>",
                     condition);
    st_log_info("bosh", "%s: terminate %s", req->client, condition);
    st_http_respond(req, 200, BOSH_CT, NULL, body, (size_t)n);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || strlen(s) > 16 || strspn(s, "0123456789") != strlen(s))
        return false;
    *out = strtoull(s, NULL, 10);
    return true;
}

/* Builds the stream header the c2s logic expects from a creation or restart body. */
static void open_stream(struct bosh *b, const struct st_xml *body)
{
    struct st_xml *h = st_xml_new("stream", ST_NS_STREAMS);
    const char *to = st_xml_attr(body, "to");
    const char *from = st_xml_attr(body, "from");
    const char *ver = st_xml_attr_ns(body, NS_XBOSH, "version");
    if (to)
        st_xml_set_attr(h, "to", to);
    if (from)
        st_xml_set_attr(h, "from", from);
    st_xml_set_attr(h, "version", ver ? ver : "1.0");
    st_xml_set_attr(h, "xmlns", ST_NS_CLIENT);
    st_c2s_stream_open(b->c, h);
    st_xml_unref(h);
}

/* Stanzas in the httpbind namespace (no xmlns of their own) are jabber:client. */
static struct st_xml *as_client(struct st_xml *x)
{
    if (strcmp(x->ns, NS_HTTPBIND) != 0)
        return x;
    struct st_xml *n = st_xml_new(x->name, ST_NS_CLIENT);
    for (unsigned i = 0; i < x->nattrs; i++)
        st_xml_append_attr(n, x->attrs[i].ns, x->attrs[i].name, x->attrs[i].value);
    while (x->first_child) {
        struct st_xml *ch = x->first_child;
        st_xml_detach(ch);
        st_xml_append(n, ch);
    }
    st_xml_free(x);
    return n;
}

static void on_abort(struct st_http_request *req, void *ud)
{
    struct bosh *b = ud;
    for (unsigned i = 0; i < b->nheld; i++) {
        if (b->held[i].req != req)
            continue;
        if (b->norphans == MAX_REQ) {
            memmove(b->orphans, b->orphans + 1, (MAX_REQ - 1) * sizeof b->orphans[0]);
            b->norphans--;
        }
        b->orphans[b->norphans++] = b->held[i].rid;
        memmove(b->held + i, b->held + i + 1, (b->nheld - i - 1) * sizeof b->held[0]);
        b->nheld--;
        break;
    }
    for (unsigned i = 0; i < b->nahead; i++) {
        if (b->ahead[i].req != req)
            continue;
        memmove(b->ahead + i, b->ahead + i + 1, (b->nahead - i - 1) * sizeof b->ahead[0]);
        b->nahead--;
        break;
    }
    schedule(b);
}

static void hold_request(struct bosh *b, struct st_http_request *req, uint64_t rid,
                         bool creation)
{
    struct held *h = &b->held[b->nheld++];
    h->req = req;
    h->rid = rid;
    h->creation = creation;
    /* hold=0 polling sessions are answered at once */
    h->deadline = uv_now(b->c->srv->loop) + (b->hold ? b->wait_ms : 0);
    st_http_set_abort(req, on_abort, b);
}

/* Processes one in-order request whose body is parsed (takes ownership of body). */
static void process(struct bosh *b, struct st_http_request *req, struct st_xml *body,
                    uint64_t rid, uint64_t pause_ms)
{
    struct c2s *c = b->c;
    b->last_rid = rid;
    hold_request(b, req, rid, false);
    b->busy++;
    const char *type = st_xml_attr(body, "type");
    const char *restart = st_xml_attr_ns(body, NS_XBOSH, "restart");
    if (restart && strcmp(restart, "true") == 0 && !c->sess.closing)
        open_stream(b, body);
    for (struct st_xml *ch = st_xml_first_element(body); ch && !c->sess.closing;) {
        struct st_xml *next = st_xml_next_element(ch);
        st_xml_detach(ch);
        st_c2s_element(c, as_client(ch));
        ch = next;
    }
    if (type && strcmp(type, "terminate") == 0 && !c->sess.closing)
        st_c2s_stream_end(c);
    if (pause_ms && !b->ended) {
        /* XEP-0124 §10: every pending request is answered now, without payload (the output
         * waits for the client's return), and inactivity stretches to the pause. */
        while (b->nheld)
            answer_oldest(b, NULL, 0, NULL);
        b->pause_ms = pause_ms;
        st_log_info(c->sess.id, "BOSH session %s paused for %llu s", b->sid,
                    (unsigned long long)(pause_ms / 1000));
    }
    b->busy--;
    st_xml_unref(body);
    flush(b);
}

/* Parses a request body into a {httpbind}body tree, or answers bad-request. */
static struct st_xml *parse_body(struct st_http_request *req)
{
    struct st_server *srv = req->srv;
    struct st_limits l = srv->settings.limits;
    l.stanza_size = l.stanza_size_preauth = srv->settings.http.max_body_size;
    l.max_depth++;
    const char *cond = NULL;
    struct st_xml *x = req->r.body.len ? st_c2s_parse_element(req->r.body.data, req->r.body.len,
                                                              &l, true, &cond)
                                       : NULL;
    if (!x || !st_xml_is(x, "body", NS_HTTPBIND)) {
        st_xml_unref(x);
        respond_terminate(req, "bad-request");
        return NULL;
    }
    return x;
}

static void create_session(struct bosh_server *bs, struct st_http_request *req,
                           struct st_xml *body)
{
    struct st_server *srv = bs->srv;
    const struct st_bosh_settings *cfg = &srv->settings.bosh;
    uint64_t rid, wait = cfg->max_wait / 1000, hold = 1;
    if (!parse_u64(st_xml_attr(body, "rid"), &rid) || rid == 0 || rid > (1ULL << 53) ||
        !st_xml_attr(body, "to") ||
        (st_xml_attr(body, "wait") && !parse_u64(st_xml_attr(body, "wait"), &wait)) ||
        (st_xml_attr(body, "hold") && !parse_u64(st_xml_attr(body, "hold"), &hold))) {
        st_xml_unref(body);
        respond_terminate(req, "bad-request");
        return;
    }
    struct bosh *b = ST_NEW(struct bosh);
    b->bs = bs;
    st_rand_id(b->sid, sizeof b->sid, 128);
    b->wait_ms = wait * 1000 < cfg->max_wait ? wait * 1000 : cfg->max_wait;
    b->hold = hold < (uint64_t)cfg->max_hold ? (unsigned)hold : (unsigned)cfg->max_hold;
    b->requests = b->hold + 1 < (unsigned)cfg->max_requests ? b->hold + 1
                                                             : (unsigned)cfg->max_requests;
    if (b->requests <= b->hold)
        b->requests = b->hold + 1;
    if (b->requests > MAX_REQ - 1)
        b->requests = MAX_REQ - 1;
    b->inactivity_ms = cfg->max_inactivity;
    b->polling_ms = cfg->polling;
    b->last_rid = rid;
    b->last_request_ms = uv_now(srv->loop);
    st_buf_init(&b->out, srv->settings.limits.output_queue);
    b->timer = st_malloc(sizeof *b->timer);
    uv_timer_init(srv->loop, b->timer);
    b->timer->data = b;
    b->c = st_c2s_new_framed(srv, &bosh_io, b, NULL, req->secure, req->client);
    st_map_set(&bs->sessions, b->sid, b);
    st_log_info(b->c->sess.id, "BOSH session %s from %s (wait %llus, hold %u)%s", b->sid,
                req->client, (unsigned long long)(b->wait_ms / 1000), b->hold,
                req->secure ? " (secure)" : "");
    hold_request(b, req, rid, true);
    b->busy++;
    open_stream(b, body);
    /* Stanzas may ride along with the creation request (XEP-0124 §7.1 allows it). */
    for (struct st_xml *ch = st_xml_first_element(body); ch && !b->c->sess.closing;) {
        struct st_xml *next = st_xml_next_element(ch);
        st_xml_detach(ch);
        st_c2s_element(b->c, as_client(ch));
        ch = next;
    }
    b->busy--;
    st_xml_unref(body);
    flush(b);
}

static void run_ahead(struct bosh *b)
{
    for (bool progress = true; progress && !b->ended;) {
        progress = false;
        for (unsigned i = 0; i < b->nahead; i++) {
            if (b->ahead[i].rid != b->last_rid + 1)
                continue;
            struct held a = b->ahead[i];
            memmove(b->ahead + i, b->ahead + i + 1, (b->nahead - i - 1) * sizeof b->ahead[0]);
            b->nahead--;
            st_http_set_abort(a.req, NULL, NULL);
            struct st_xml *body = parse_body(a.req);
            if (body)
                process(b, a.req, body, a.rid, 0);
            progress = true;
            break;
        }
    }
}

static void bosh_route(struct st_http_request *req, void *ud)
{
    struct bosh_server *bs = ud;
    if (strcmp(req->r.method, "POST") != 0) {
        static const char msg[] = "BOSH (XEP-0124) endpoint: POST <body/> here\n";
        st_http_respond(req, strcmp(req->r.method, "GET") == 0 ? 200 : 405,
                        "text/plain; charset=utf-8", "Allow: POST, OPTIONS\r\n", msg,
                        sizeof msg - 1);
        return;
    }
    struct st_xml *body = parse_body(req);
    if (!body)
        return;
    const char *sid = st_xml_attr(body, "sid");
    if (!sid) {
        create_session(bs, req, body);
        return;
    }
    struct bosh *b = st_map_get(&bs->sessions, sid);
    uint64_t rid;
    if (!b || b->ended) {
        finals_prune(bs, uv_now(req->srv->loop));
        struct final *f = st_map_del(&bs->finals, sid);
        st_xml_unref(body); /* sid points into it */
        if (f) {
            st_http_respond(req, 200, BOSH_CT, NULL, f->body, f->len);
            final_free(f);
            return;
        }
        respond_terminate(req, "item-not-found");
        return;
    }
    if (!parse_u64(st_xml_attr(body, "rid"), &rid)) {
        st_xml_unref(body);
        bosh_end(b, "bad-request", NULL, 0);
        respond_terminate(req, "bad-request");
        return;
    }
    uint64_t now = uv_now(req->srv->loop);
    b->last_request_ms = now;
    b->pause_ms = 0; /* any request ends a pause (XEP-0124 §10) */
    if (rid <= b->last_rid) {
        /* XEP-0124 §14.3: a repeated rid gets its answer again. */
        st_xml_unref(body);
        const struct cached *cc = cache_get(b, rid);
        if (cc) {
            st_http_respond(req, 200, BOSH_CT, NULL, cc->body, cc->len);
            return;
        }
        for (unsigned i = 0; i < b->norphans; i++) {
            if (b->orphans[i] == rid && b->nheld < MAX_REQ - 1) {
                /* processed, but the answer never left: hold the retry instead */
                b->orphans[i] = 0;
                hold_request(b, req, rid, false);
                flush(b);
                return;
            }
        }
        respond_terminate(req, "item-not-found");
        bosh_end(b, "item-not-found", NULL, 0);
        return;
    }
    if (rid > b->last_rid + b->requests) {
        st_xml_unref(body);
        respond_terminate(req, "item-not-found");
        bosh_end(b, "item-not-found", NULL, 0);
        return;
    }
    /* XEP-0124 §11: more simultaneous requests than 'requests' is overactivity. */
    if (b->nheld + b->nahead + 1 > b->requests) {
        st_xml_unref(body);
        respond_terminate(req, "policy-violation");
        bosh_end(b, "policy-violation", NULL, 0);
        return;
    }
    /* XEP-0124 §12: polling sessions may not send empty requests faster than 'polling'. */
    if (b->hold == 0 && !st_xml_first_element(body) && !st_xml_attr(body, "type")) {
        if (b->last_empty_poll_ms && now - b->last_empty_poll_ms < b->polling_ms) {
            st_xml_unref(body);
            respond_terminate(req, "policy-violation");
            bosh_end(b, "policy-violation", NULL, 0);
            return;
        }
        b->last_empty_poll_ms = now;
    }
    if (rid != b->last_rid + 1) {
        /* Ahead of a gap: park it until the missing rid arrives (XEP-0124 §14.2). */
        st_xml_unref(body);
        struct held *a = &b->ahead[b->nahead++];
        a->req = req;
        a->rid = rid;
        a->creation = false;
        st_http_set_abort(req, on_abort, b);
        return;
    }
    uint64_t pause = 0;
    const char *pause_attr = st_xml_attr(body, "pause");
    if (pause_attr) {
        /* XEP-0124 §10: up to 'maxpause'; beyond it (or unparsable) is a policy violation. */
        uint64_t max = req->srv->settings.bosh.max_pause;
        if (!parse_u64(pause_attr, &pause) || pause == 0 || pause * 1000 > max) {
            st_xml_unref(body);
            respond_terminate(req, "policy-violation");
            bosh_end(b, "policy-violation", NULL, 0);
            return;
        }
        pause *= 1000;
    }
    process(b, req, body, rid, pause);
    run_ahead(b);
}

void *st_bosh_register(struct st_server *srv)
{
    struct bosh_server *bs = ST_NEW(struct bosh_server);
    bs->srv = srv;
    st_map_init(&bs->sessions);
    st_map_init(&bs->finals);
    st_http_route_add(srv, "/http-bind", bosh_route, bs, NULL);
    st_http_route_add(srv, "/http-bind/", bosh_route, bs, NULL);
    return bs;
}

void st_bosh_stop(void *state)
{
    struct bosh_server *bs = state;
    if (!bs)
        return;
    size_t n = 0;
    struct bosh **list = st_calloc(bs->sessions.count + 1, sizeof *list);
    for (struct st_map_entry *e = st_map_first(&bs->sessions); e;
         e = st_map_next(&bs->sessions, e))
        list[n++] = e->value;
    for (size_t i = 0; i < n; i++) {
        list[i]->bs = NULL;
        bosh_end(list[i], "system-shutdown", NULL, 0);
    }
    st_free(list);
    st_map_free(&bs->sessions);
    for (struct st_map_entry *e = st_map_first(&bs->finals); e;
         e = st_map_next(&bs->finals, e))
        final_free(e->value);
    st_map_free(&bs->finals);
    st_free(bs);
}
