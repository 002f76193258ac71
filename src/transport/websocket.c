/* XMPP over WebSocket (RFC 7395) on wslay (RFC 6455 framing). The
 * opening handshake (RFC 6455 §4.2.1, §4.2.2) requires GET, Upgrade:
 * websocket, Sec-WebSocket-Version 13, a 16-byte key, and the "xmpp"
 * sub-protocol (RFC 7395 §3.1); an Origin outside websocket.origins gets
 * 403 (RFC 6455 §10.2). After the upgrade every text message is exactly
 * one XML element (RFC 7395 §3.3.3): <open/> and <close/> in
 * urn:ietf:params:xml:ns:xmpp-framing start, restart and end the stream
 * (§3.3.2, §3.6), anything else is a stanza or negotiation element for the
 * shared c2s logic. Pings are answered with pongs by wslay; a message over
 * websocket.max_frame_size closes with 1009 (RFC 6455 §7.4.1). A
 * connection silent for websocket.ping_interval gets a ping frame
 * (RFC 6455 §5.5.2); if nothing at all (a pong or anything else) arrives
 * within websocket.ping_timeout, the stream ends with connection-timeout
 * (RFC 6120 §4.9.3.4) and the connection is dropped, so half-open
 * connections behind NATs and proxies do not linger. */
#include "transport/websocket.h"

#include <openssl/sha.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "http/http.h"
#include "net/conn.h"
#include "transport/c2s.h"
#include "xml/node.h"
#include "xmpp/scram.h"
#include "xmpp/server.h"

#define NS_FRAMING "urn:ietf:params:xml:ns:xmpp-framing"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

struct ws {
    struct c2s *c;
    struct st_conn *conn; /* NULL once closed */
    wslay_event_context_ptr ctx;
    struct st_buf in;     /* received bytes not yet taken by wslay */
    size_t in_off;
    bool ending;          /* our close frame is queued; close the connection once sent */
    uv_timer_t *ping;     /* idle check; NULL when pings are off or once stopped */
    uint64_t last_rx_ms;  /* when the client last sent anything */
    uint64_t ping_sent_ms; /* when our unanswered ping left, or 0 */
    bool timed_out;       /* connection-timeout sent; abort if still there next time */
};

/* ---- wslay callbacks ---- */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                          void *ud)
{
    (void)flags;
    struct ws *w = ud;
    size_t avail = w->in.len - w->in_off;
    if (avail == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = avail < len ? avail : len;
    memcpy(buf, w->in.data + w->in_off, n);
    w->in_off += n;
    return (ssize_t)n;
}

static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                          int flags, void *ud)
{
    (void)flags;
    struct ws *w = ud;
    if (!w->conn || st_conn_write(w->conn, data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void ws_flush(struct ws *w)
{
    if (!w->conn)
        return;
    if (wslay_event_send(w->ctx) != 0) {
        st_log_info(w->c ? w->c->sess.id : "ws", "websocket output failed; dropping");
        st_conn_abort(w->conn);
        return;
    }
    if (wslay_event_get_close_sent(w->ctx) && wslay_event_get_queued_msg_count(w->ctx) == 0)
        st_conn_close(w->conn);
}

static void ws_queue_text(struct ws *w, const char *data, size_t len)
{
    if (!w->conn || wslay_event_get_close_sent(w->ctx))
        return;
    struct wslay_event_msg m = {.opcode = WSLAY_TEXT_FRAME, .msg = (const uint8_t *)data,
                                .msg_length = len};
    if (wslay_event_queue_msg(w->ctx, &m) != 0) {
        st_conn_abort(w->conn);
        return;
    }
    ws_flush(w);
}

static void ws_queue_close(struct ws *w, uint16_t code)
{
    if (!w->conn || wslay_event_get_close_sent(w->ctx))
        return;
    wslay_event_queue_close(w->ctx, code, NULL, 0);
    ws_flush(w);
}

/* One complete message from the client: one XML element (RFC 7395 §3.3.3). */
static void ws_message(struct ws *w, const uint8_t *msg, size_t len)
{
    struct c2s *c = w->c;
    if (c->sess.closing)
        return;
    c->sess.last_active_ms = uv_now(c->srv->loop);
    const char *cond = NULL;
    struct st_xml *x = st_c2s_parse_element((const char *)msg, len, &c->srv->settings.limits,
                                            c->sess.authenticated, &cond);
    if (!x) {
        st_c2s_stream_error(c, cond, "each WebSocket message must be one XML element");
        return;
    }
    if (st_xml_is(x, "open", NS_FRAMING)) {
        /* The framing's open carries the stream header's attributes (RFC 7395 §3.3.2). */
        struct st_xml *h = st_xml_new("stream", ST_NS_STREAMS);
        static const char *const attrs[] = {"to", "from", "version", "id"};
        for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
            const char *v = st_xml_attr(x, attrs[i]);
            if (v)
                st_xml_set_attr(h, attrs[i], v);
        }
        st_xml_set_attr(h, "xmlns", ST_NS_CLIENT);
        st_c2s_stream_open(c, h);
        st_xml_unref(h);
        st_xml_unref(x);
        return;
    }
    if (st_xml_is(x, "close", NS_FRAMING)) {
        st_xml_unref(x);
        st_c2s_stream_end(c);
        return;
    }
    if (!c->stream_open) {
        st_xml_unref(x);
        st_c2s_stream_error(c, "bad-format", "the stream starts with <open/>");
        return;
    }
    st_c2s_element(c, x);
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *a,
                      void *ud)
{
    (void)ctx;
    struct ws *w = ud;
    if (a->opcode == WSLAY_TEXT_FRAME) {
        ws_message(w, a->msg, a->msg_length);
    } else if (a->opcode == WSLAY_BINARY_FRAME) {
        /* RFC 7395 §3.2: XMPP travels in text frames only. */
        ws_queue_close(w, WSLAY_CODE_UNSUPPORTED_DATA);
    } else if (a->opcode == WSLAY_CONNECTION_CLOSE) {
        /* The peer closed the WebSocket without (or after) <close/>: wslay answers the close
         * frame; the connection ends once that is sent. */
        w->ending = true;
    }
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = ws_recv_cb,
    .send_callback = ws_send_cb,
    .on_msg_recv_callback = ws_msg_cb,
};

/* ---- connection ---- */

static void ws_on_read(struct st_conn *conn, const char *data, size_t len)
{
    struct ws *w = st_conn_data(conn);
    if (!w->conn)
        return;
    if (w->in_off == w->in.len) {
        st_buf_reset(&w->in);
        w->in_off = 0;
    }
    if (st_buf_append(&w->in, data, len) != 0) {
        st_conn_abort(conn);
        return;
    }
    if (len) /* any input, a pong included, shows the client is alive */
        w->last_rx_ms = uv_now(w->c->srv->loop);
    if (wslay_event_recv(w->ctx) != 0) {
        st_log_info(w->c->sess.id, "websocket protocol error from %s", st_conn_peer(conn));
        st_conn_abort(conn);
        return;
    }
    if (w->in_off > 65536) {
        st_buf_consume(&w->in, w->in_off);
        w->in_off = 0;
    }
    ws_flush(w);
    if (w->ending && w->conn && wslay_event_get_close_sent(w->ctx) &&
        wslay_event_get_queued_msg_count(w->ctx) == 0)
        st_conn_close(w->conn);
}

static void ping_closed(uv_handle_t *h)
{
    st_free(h);
}

static void ping_stop(struct ws *w)
{
    if (!w->ping)
        return;
    uv_timer_stop(w->ping);
    uv_close((uv_handle_t *)w->ping, ping_closed);
    w->ping = NULL;
}

static void on_ping_timer(uv_timer_t *t)
{
    struct ws *w = t->data;
    const struct st_websocket_settings *cfg = &w->c->srv->settings.websocket;
    uint64_t now = uv_now(w->c->srv->loop);
    if (!w->conn)
        return;
    if (w->ping_sent_ms && w->last_rx_ms < w->ping_sent_ms) {
        if (now - w->ping_sent_ms < cfg->ping_timeout)
            return;
        if (w->timed_out) {
            /* It did not even take our close: it is gone. */
            st_conn_abort(w->conn);
            return;
        }
        st_log_info(w->c->sess.id, "websocket: no answer to ping within %llu ms; closing",
                    (unsigned long long)cfg->ping_timeout);
        w->timed_out = true;
        w->ping_sent_ms = now;
        st_c2s_stream_error(w->c, "connection-timeout", "no answer to WebSocket ping");
        return;
    }
    if (now - w->last_rx_ms < cfg->ping_interval)
        return;
    if (wslay_event_get_close_sent(w->ctx))
        return;
    struct wslay_event_msg m = {.opcode = WSLAY_PING, .msg = (const uint8_t *)"starling",
                                .msg_length = 8};
    if (wslay_event_queue_msg(w->ctx, &m) != 0) {
        st_conn_abort(w->conn);
        return;
    }
    w->ping_sent_ms = now;
    ws_flush(w);
}

/* Checks often enough that neither the interval nor the timeout overshoots by much. */
static void ping_start(struct ws *w, struct st_server *srv)
{
    const struct st_websocket_settings *cfg = &srv->settings.websocket;
    w->last_rx_ms = uv_now(srv->loop);
    if (!cfg->ping_interval)
        return;
    uint64_t step = cfg->ping_interval < cfg->ping_timeout ? cfg->ping_interval
                                                             : cfg->ping_timeout;
    step /= 4;
    if (step < 50)
        step = 50;
    w->ping = st_malloc(sizeof *w->ping);
    uv_timer_init(srv->loop, w->ping);
    w->ping->data = w;
    uv_timer_start(w->ping, on_ping_timer, step, step);
}

static void ws_on_close(struct st_conn *conn, int err)
{
    struct ws *w = st_conn_data(conn);
    w->conn = NULL;
    ping_stop(w);
    st_c2s_gone(w->c, err);
}

static const struct st_conn_handler ws_handler = {
    .on_read = ws_on_read,
    .on_close = ws_on_close,
};

/* ---- c2s output ---- */

static void io_write(struct c2s *c, const char *data, size_t len)
{
    ws_queue_text(c->io_data, data, len);
}

static void io_open(struct c2s *c, const char *from, const char *to)
{
    struct st_buf b;
    st_buf_init(&b, 4096);
    st_buf_puts(&b, "<open xmlns='" NS_FRAMING "' id='");
    st_buf_puts(&b, c->stream_id);
    st_buf_puts(&b, "' from='");
    st_buf_put_xml_escaped(&b, from, strlen(from));
    if (to) {
        st_buf_puts(&b, "' to='");
        st_buf_put_xml_escaped(&b, to, strlen(to));
    }
    st_buf_puts(&b, "' version='1.0' xml:lang='en'/>");
    ws_queue_text(c->io_data, b.data, b.len);
    st_buf_free(&b);
}

static void io_close(struct c2s *c, const char *error, size_t len)
{
    struct ws *w = c->io_data;
    static const char close_el[] = "<close xmlns='" NS_FRAMING "'/>";
    if (error)
        ws_queue_text(w, error, len);
    ws_queue_text(w, close_el, sizeof close_el - 1);
    ws_queue_close(w, WSLAY_CODE_NORMAL_CLOSURE);
}

static void io_destroy(struct c2s *c)
{
    struct ws *w = c->io_data;
    ping_stop(w);
    wslay_event_context_free(w->ctx);
    st_buf_free(&w->in);
    st_free(w);
}

static const struct st_c2s_io ws_io = {
    .write = io_write,
    .open = io_open,
    .close = io_close,
    .destroy = io_destroy,
};

/* ---- the handshake ---- */

static void refuse(struct st_http_request *req, int status, const char *why,
                   const char *extra)
{
    st_log_info("websocket", "%s: refused (%d): %s", req->client, status, why);
    size_t n = strlen(why);
    char body[256];
    if (n > sizeof body - 2)
        n = sizeof body - 2;
    memcpy(body, why, n);
    body[n++] = '\n';
    st_http_respond(req, status, "text/plain; charset=utf-8", extra, body, n);
}

static void ws_route(struct st_http_request *req, void *ud)
{
    (void)ud;
    struct st_server *srv = req->srv;
    const struct st_http_req *r = &req->r;
    if (strcmp(r->method, "GET") != 0) {
        refuse(req, 405, "WebSocket needs GET", "Allow: GET\r\n");
        return;
    }
    const char *upgrade = st_http_req_header(r, "upgrade");
    if (!r->upgrade || !upgrade || strcasecmp(upgrade, "websocket") != 0 || r->minor < 1) {
        refuse(req, 426, "this resource needs a WebSocket upgrade",
               "Upgrade: websocket\r\nConnection: Upgrade\r\n");
        return;
    }
    const char *version = st_http_req_header(r, "sec-websocket-version");
    if (!version || strcmp(version, "13") != 0) {
        refuse(req, 426, "unsupported WebSocket version", "Sec-WebSocket-Version: 13\r\n");
        return;
    }
    const char *key = st_http_req_header(r, "sec-websocket-key");
    unsigned char raw[32];
    if (!key || strlen(key) != 24 || st_base64_decode(key, 24, raw, sizeof raw) != 16) {
        refuse(req, 400, "missing or malformed Sec-WebSocket-Key", NULL);
        return;
    }
    const char *origin = st_http_req_header(r, "origin");
    const struct st_strlist *origins = &srv->settings.websocket.origins;
    if (origin && origins->n && !st_http_origin_allowed(origins, origin)) {
        refuse(req, 403, "origin not allowed", NULL);
        return;
    }
    if (!st_http_req_header_has_token(r, "sec-websocket-protocol", "xmpp")) {
        refuse(req, 400, "the 'xmpp' WebSocket sub-protocol is required (RFC 7395)", NULL);
        return;
    }
    /* RFC 6455 §4.2.2: Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) */
    char kg[64];
    memcpy(kg, key, 24);
    memcpy(kg + 24, WS_GUID, 36);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)kg, 60, digest);
    char *accept = st_base64_encode(digest, sizeof digest);
    bool secure = req->secure;
    char peer[64];
    memcpy(peer, req->client, sizeof peer);

    struct ws *w = ST_NEW(struct ws);
    st_buf_init(&w->in, srv->settings.websocket.max_frame_size + 65536 + 16);
    struct st_conn *conn = st_http_upgrade(req, &w->in);
    if (!conn) {
        st_free(accept);
        st_buf_free(&w->in);
        st_free(w);
        return;
    }
    w->conn = conn;
    wslay_event_context_server_init(&w->ctx, &ws_callbacks, w);
    wslay_event_config_set_max_recv_msg_length(w->ctx, srv->settings.websocket.max_frame_size);
    struct st_buf b;
    st_buf_init(&b, 1024);
    st_buf_printf(&b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                      "Sec-WebSocket-Protocol: xmpp\r\n\r\n", accept);
    st_free(accept);
    st_conn_write(conn, b.data, b.len);
    st_buf_free(&b);
    w->c = st_c2s_new_framed(srv, &ws_io, w, conn, secure, peer);
    st_conn_set_handler(conn, &ws_handler, w);
    st_conn_set_output_limit(conn, srv->settings.limits.output_queue);
    ping_start(w, srv);
    st_log_info(w->c->sess.id, "websocket connection from %s%s", peer,
                secure ? " (secure)" : "");
    if (w->in.len)
        ws_on_read(conn, "", 0);
}

void st_ws_register(struct st_server *srv)
{
    st_http_route_add(srv, "/xmpp-websocket", ws_route, NULL, NULL);
}
