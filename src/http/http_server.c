/* The HTTP/1.1 server (RFC 9112) behind BOSH (XEP-0124 §14), WebSocket
 * (RFC 6455 §4, RFC 7395 §3) and host-meta (XEP-0156): listeners,
 * connections with keep-alive and bounded pipelining, the route registry,
 * CORS (Fetch standard: Access-Control-Allow-Origin and preflights), 404s,
 * the per-address limit of requests in progress (429), idle and slow-request
 * timeouts (408), and the single direct-TLS port that serves XMPP as well:
 * ALPN "xmpp-client" goes to c2s, "http/1.1" to HTTP, and without ALPN a
 * first byte '<' means an XMPP stream (the port-443 set-up of public
 * servers; XEP-0368 §3). Trusted proxies: http_proxy.c. */
#include "http/http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "base/mem.h"
#include "net/conn.h"
#include "transport/bosh.h"
#include "transport/c2s.h"
#include "transport/websocket.h"
#include "xmpp/server.h"

#define IDLE_TIMEOUT_MS 30000
#define MAX_HEADERS 64
#define MAX_ROUTES 64

struct route {
    char *path;
    bool prefix;
    st_http_handler h;
    void *ud;
    const void *owner;
};

struct st_http {
    struct st_server *srv;
    struct st_listener *listeners[8];
    unsigned nlisteners;
    int tls_port;
    struct route routes[MAX_ROUTES];
    size_t nroutes;
    struct st_http_conn *conns; /* all open connections */
    struct st_map per_ip;       /* client address -> requests in progress (as uintptr_t) */
    void *bosh;                 /* transport/bosh.c state */
    bool stopping;
};

struct st_http_conn {
    struct st_http *http;
    struct st_conn *conn; /* NULL once closed or upgraded */
    struct st_http_conn *prev, *next;
    struct st_buf in;
    struct st_http_parser parser;
    struct st_http_request *cur; /* request being handled, or NULL */
    uv_timer_t *timer;
    bool sniff;      /* the multiplexed TLS port: decide XMPP vs HTTP on the first bytes */
    bool closing;
    bool in_process;
    bool detached;   /* upgraded: free once process_input unwinds */
    bool paused;     /* reading paused while a request is answered */
};

static void process_input(struct st_http_conn *hc);

static struct st_http *http_of(struct st_server *srv)
{
    if (!srv->http) {
        struct st_http *h = ST_NEW(struct st_http);
        h->srv = srv;
        st_map_init(&h->per_ip);
        srv->http = h;
    }
    return srv->http;
}

/* ---- routes ---- */

int st_http_route_add(struct st_server *srv, const char *path, st_http_handler h, void *ud,
                      const void *owner)
{
    struct st_http *http = http_of(srv);
    for (size_t i = 0; i < http->nroutes; i++)
        if (strcmp(http->routes[i].path, path) == 0)
            return ST_EEXIST;
    if (http->nroutes >= MAX_ROUTES)
        return ST_ELIMIT;
    struct route *r = &http->routes[http->nroutes++];
    r->path = st_strdup(path);
    size_t n = strlen(path);
    r->prefix = n > 1 && path[n - 1] == '/';
    r->h = h;
    r->ud = ud;
    r->owner = owner;
    return 0;
}

int st_module_http_route(struct st_module *m, const char *path, st_http_handler handler,
                         void *ud)
{
    return st_http_route_add(st_module_server(m), path, handler, ud, m);
}

static const struct route *find_route(struct st_http *http, const char *path)
{
    const struct route *best = NULL;
    for (size_t i = 0; i < http->nroutes; i++) {
        const struct route *r = &http->routes[i];
        if (strcmp(r->path, path) == 0)
            return r;
        if (r->prefix && strncmp(path, r->path, strlen(r->path)) == 0 &&
            (!best || strlen(r->path) > strlen(best->path)))
            best = r;
        /* "/x/" also answers "/x" */
        if (r->prefix && strlen(path) + 1 == strlen(r->path) &&
            strncmp(path, r->path, strlen(path)) == 0)
            return r;
    }
    return best;
}

/* ---- request accessors ---- */

const char *st_http_method(const struct st_http_request *req)
{
    return req->r.method;
}

const char *st_http_path(const struct st_http_request *req)
{
    return req->r.path;
}

const char *st_http_query(const struct st_http_request *req)
{
    return req->r.query;
}

const char *st_http_header(const struct st_http_request *req, const char *name)
{
    return st_http_req_header(&req->r, name);
}

const char *st_http_host(struct st_http_request *req)
{
    if (req->host)
        return req->host;
    const char *h = st_http_req_header(&req->r, "host");
    if (!h || !*h)
        return NULL;
    size_t n;
    if (h[0] == '[') {
        const char *e = strchr(h, ']');
        n = e ? (size_t)(e - h + 1) : strlen(h);
    } else {
        const char *c = strchr(h, ':');
        n = c ? (size_t)(c - h) : strlen(h);
    }
    if (n == 0 || n > 255)
        return NULL;
    req->host = st_strndup(h, n);
    for (char *p = req->host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return req->host;
}

bool st_http_secure(const struct st_http_request *req)
{
    return req->secure;
}

void st_http_set_abort(struct st_http_request *req,
                       void (*cb)(struct st_http_request *req, void *ud), void *ud)
{
    req->on_abort = cb;
    req->abort_ud = ud;
}

/* ---- per-address accounting ---- */

static bool ip_acquire(struct st_http *http, const char *client)
{
    uintptr_t n = (uintptr_t)st_map_get(&http->per_ip, client);
    if (n >= (uintptr_t)http->srv->settings.http.max_requests_per_ip)
        return false;
    st_map_set(&http->per_ip, client, (void *)(n + 1));
    return true;
}

static void ip_release(struct st_http *http, const char *client)
{
    uintptr_t n = (uintptr_t)st_map_get(&http->per_ip, client);
    if (n <= 1)
        st_map_del(&http->per_ip, client);
    else
        st_map_set(&http->per_ip, client, (void *)(n - 1));
}

static void request_free(struct st_http_request *req)
{
    if (req->srv->http)
        ip_release(req->srv->http, req->client);
    st_http_req_clear(&req->r);
    st_free(req->host);
    st_free(req);
}

/* ---- CORS ---- */

bool st_http_origin_allowed(const struct st_strlist *list, const char *origin)
{
    if (!origin)
        return false;
    for (size_t i = 0; i < list->n; i++)
        if (strcmp(list->items[i], "*") == 0 || strcasecmp(list->items[i], origin) == 0)
            return true;
    return false;
}

void st_http_cors_headers(struct st_http_request *req, struct st_buf *out)
{
    const char *origin = st_http_req_header(&req->r, "origin");
    if (!st_http_origin_allowed(&req->srv->settings.http.cors_origins, origin))
        return;
    /* Header values were checked for control characters by the parser. */
    st_buf_printf(out, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", origin);
}

/* ---- connections ---- */

static void timer_closed(uv_handle_t *h)
{
    st_free(h);
}

static void conn_free(struct st_http_conn *hc)
{
    struct st_http *http = hc->http;
    if (hc->prev)
        hc->prev->next = hc->next;
    else if (http)
        http->conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    if (hc->timer) {
        uv_timer_stop(hc->timer);
        uv_close((uv_handle_t *)hc->timer, timer_closed);
    }
    st_buf_free(&hc->in);
    st_http_parser_reset(&hc->parser);
    st_http_req_clear(&hc->parser.req);
    st_free(hc);
}

static void on_idle_timeout(uv_timer_t *t)
{
    struct st_http_conn *hc = t->data;
    if (!hc->conn || hc->cur)
        return;
    if (hc->in.len > 0) {
        static const char r408[] = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\n\r\n";
        st_conn_write(hc->conn, r408, sizeof r408 - 1);
    }
    hc->closing = true;
    st_conn_close(hc->conn);
}

static void arm_idle(struct st_http_conn *hc)
{
    if (hc->timer)
        uv_timer_start(hc->timer, on_idle_timeout, IDLE_TIMEOUT_MS, 0);
}

/* Writes a complete small response with no body semantics beyond text, then closes when
 * close is set. Used for protocol errors before a request object exists. */
static void write_simple(struct st_http_conn *hc, int status, bool close)
{
    char buf[512];
    const char *reason = st_http_reason(status);
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s\n",
                     status, reason, strlen(reason) + 1, close ? "Connection: close\r\n" : "",
                     reason);
    if (hc->conn && n > 0 && (size_t)n < sizeof buf)
        st_conn_write(hc->conn, buf, (size_t)n);
    if (close && hc->conn) {
        hc->closing = true;
        st_conn_close(hc->conn);
    }
}

void st_http_respond(struct st_http_request *req, int status, const char *content_type,
                     const char *extra_headers, const void *body, size_t len)
{
    struct st_http_conn *hc = req->hc;
    if (hc && hc->conn) {
        bool close = !req->r.keep_alive || !hc->http || hc->http->stopping;
        struct st_buf b;
        st_buf_init(&b, 0);
        st_buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, st_http_reason(status));
        if (content_type)
            st_buf_printf(&b, "Content-Type: %s\r\n", content_type);
        st_buf_printf(&b, "Content-Length: %zu\r\n", len);
        if (!extra_headers || !strstr(extra_headers, "Access-Control-Allow-Origin"))
            st_http_cors_headers(req, &b);
        if (extra_headers)
            st_buf_puts(&b, extra_headers);
        if (close)
            st_buf_puts(&b, "Connection: close\r\n");
        st_buf_puts(&b, "\r\n");
        if (strcmp(req->r.method, "HEAD") != 0 && len)
            st_buf_append(&b, body, len);
        int rc = st_conn_write(hc->conn, b.data, b.len);
        st_buf_free(&b);
        st_log_debug("http", "%s %s %s -> %d", req->client, req->r.method, req->r.path, status);
        hc->cur = NULL;
        if (close || rc != 0) {
            hc->closing = true;
            st_conn_close(hc->conn);
        } else {
            arm_idle(hc);
            if (hc->paused) {
                hc->paused = false;
                st_conn_resume(hc->conn);
            }
        }
        request_free(req);
        /* The answer may come long after the request (BOSH): continue with pipelined input. */
        if (!hc->in_process && !hc->closing)
            process_input(hc);
        return;
    }
    request_free(req);
}

struct st_conn *st_http_upgrade(struct st_http_request *req, struct st_buf *leftover)
{
    struct st_http_conn *hc = req->hc;
    struct st_conn *c = hc ? hc->conn : NULL;
    if (c) {
        /* the request itself is still at the front of the buffer */
        size_t used = hc->parser.pos <= hc->in.len ? hc->parser.pos : hc->in.len;
        if (leftover && hc->in.len > used)
            st_buf_append(leftover, hc->in.data + used, hc->in.len - used);
        st_buf_reset(&hc->in);
        hc->conn = NULL;
        hc->cur = NULL;
        hc->detached = true;
        st_conn_set_handler(c, NULL, NULL);
        if (!hc->in_process)
            conn_free(hc);
    }
    request_free(req);
    return c;
}

static void preflight(struct st_http_request *req)
{
    const char *origin = st_http_req_header(&req->r, "origin");
    if (!st_http_origin_allowed(&req->srv->settings.http.cors_origins, origin)) {
        st_http_respond(req, 403, "text/plain", NULL, "Forbidden\n", 10);
        return;
    }
    static const char hdrs[] = "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                               "Access-Control-Allow-Headers: Content-Type\r\n"
                               "Access-Control-Max-Age: 86400\r\n";
    st_http_respond(req, 204, NULL, hdrs, NULL, 0);
}

static void dispatch(struct st_http_conn *hc)
{
    struct st_http *http = hc->http;
    struct st_http_request *req = ST_NEW(struct st_http_request);
    req->r = hc->parser.req;
    memset(&hc->parser.req, 0, sizeof hc->parser.req);
    req->srv = http->srv;
    req->hc = hc;
    req->tls = st_conn_is_tls(hc->conn);
    bool https = false;
    bool proxied = st_http_resolve_client(&http->srv->settings.http.trusted_proxies,
                                          st_conn_peer(hc->conn), &req->r, req->client,
                                          sizeof req->client, &https);
    req->secure = req->tls || (proxied && (https || http->srv->settings.http.proxy_is_secure));
    hc->cur = req;
    if (hc->timer)
        uv_timer_stop(hc->timer);
    if (!ip_acquire(http, req->client)) {
        st_log_info("http", "%s: too many requests in progress", req->client);
        /* Not counted: request_free releases, so count it first. */
        st_map_set(&http->per_ip, req->client,
                   (void *)((uintptr_t)st_map_get(&http->per_ip, req->client) + 1));
        req->r.keep_alive = false;
        st_http_respond(req, 429, "text/plain", "Retry-After: 5\r\n", "Too Many Requests\n",
                        18);
        return;
    }
    const struct route *rt = find_route(http, req->r.path);
    if (!rt) {
        st_http_respond(req, 404, "text/plain; charset=utf-8", NULL, "Not Found\n", 10);
        return;
    }
    if (strcmp(req->r.method, "OPTIONS") == 0) {
        preflight(req);
        return;
    }
    rt->h(req, rt->ud);
}

static void process_input(struct st_http_conn *hc)
{
    hc->in_process = true;
    while (hc->conn && !hc->closing && !hc->cur && !hc->detached) {
        int rc = st_http_parser_run(&hc->parser, hc->in.data, hc->in.len);
        if (rc == 0)
            break;
        if (rc < 0) {
            st_log_info("http", "%s: malformed request (%d)", st_conn_peer(hc->conn),
                        hc->parser.status);
            write_simple(hc, hc->parser.status, true);
            break;
        }
        size_t used = hc->parser.pos;
        dispatch(hc);
        if (hc->detached)
            break;
        st_buf_consume(&hc->in, used);
        st_http_parser_reset(&hc->parser);
    }
    hc->in_process = false;
    if (hc->detached) {
        conn_free(hc);
        return;
    }
    if (hc->conn && !hc->closing && !hc->cur)
        arm_idle(hc);
}

static void hc_on_read(struct st_conn *c, const char *data, size_t len);

static void hc_on_close(struct st_conn *c, int err)
{
    (void)err;
    struct st_http_conn *hc = st_conn_data(c);
    hc->conn = NULL;
    struct st_http_request *req = hc->cur;
    hc->cur = NULL;
    if (req) {
        req->hc = NULL;
        if (req->on_abort)
            req->on_abort(req, req->abort_ud);
        request_free(req);
    }
    conn_free(hc);
}

static const struct st_conn_handler hc_handler = {
    .on_read = hc_on_read,
    .on_close = hc_on_close,
};

/* The multiplexed TLS port: the first application bytes decide (see the file comment). */
static bool sniff_xmpp(struct st_http_conn *hc, const char *data, size_t len)
{
    const char *alpn = st_conn_alpn(hc->conn);
    if (alpn)
        return strcmp(alpn, "xmpp-client") == 0;
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\r' || data[i] == '\n' || data[i] == '\t'))
        i++;
    return i < len && data[i] == '<';
}

static void hc_on_read(struct st_conn *c, const char *data, size_t len)
{
    struct st_http_conn *hc = st_conn_data(c);
    if (hc->closing || !hc->conn)
        return;
    if (hc->sniff) {
        hc->sniff = false;
        if (sniff_xmpp(hc, data, len)) {
            struct st_server *srv = hc->http->srv;
            hc->conn = NULL;
            st_conn_set_handler(c, NULL, NULL);
            conn_free(hc);
            st_c2s_accept_data(srv, c, data, len);
            return;
        }
    }
    if (st_buf_append(&hc->in, data, len) != 0) {
        /* More pipelined input than one full request may take. */
        write_simple(hc, 413, true);
        return;
    }
    if (hc->cur) {
        /* A request is being answered (maybe held for long): let the kernel hold the rest. */
        if (!hc->paused && hc->in.len > 65536) {
            st_conn_pause(c);
            hc->paused = true;
        }
        return;
    }
    process_input(hc);
}

static void on_accept(void *ud, struct st_conn *c)
{
    struct st_http *http = ud;
    const struct st_http_settings *hs = &http->srv->settings.http;
    if (http->stopping || http->srv->shutting_down) {
        st_conn_abort(c);
        return;
    }
    struct st_http_conn *hc = ST_NEW(struct st_http_conn);
    hc->http = http;
    hc->conn = c;
    hc->sniff = st_conn_is_tls(c) && st_conn_local_port(c) == http->tls_port;
    struct st_http_limits lim = {
        .max_header_size = hs->max_header_size,
        .max_headers = MAX_HEADERS,
        .max_body_size = hs->max_body_size,
    };
    st_http_parser_init(&hc->parser, &lim);
    /* One request with its body plus a little pipelining slack. */
    st_buf_init(&hc->in, hs->max_header_size + hs->max_body_size + 16384);
    hc->timer = st_malloc(sizeof *hc->timer);
    uv_timer_init(http->srv->loop, hc->timer);
    hc->timer->data = hc;
    hc->next = http->conns;
    if (http->conns)
        http->conns->prev = hc;
    http->conns = hc;
    st_conn_set_handler(c, &hc_handler, hc);
    st_conn_set_output_limit(c, http->srv->settings.limits.output_queue);
    arm_idle(hc);
}

/* ---- lifecycle ---- */

static int open_port(struct st_http *http, const char *addr, int port, bool tls)
{
    struct st_server *srv = http->srv;
    if (http->nlisteners >= sizeof http->listeners / sizeof http->listeners[0])
        return 0;
    const struct st_http_settings *hs = &srv->settings.http;
    /* Behind a proxy every request shares the proxy's address: no per-address cap then. */
    unsigned per_ip = hs->trusted_proxies.n ? 0 : (unsigned)hs->max_requests_per_ip * 2;
    struct st_listener *ls = NULL;
    char *err = NULL;
    int rc = st_listener_open(srv->loop, addr, port, tls ? srv->tls : NULL, per_ip, on_accept,
                              http, &ls, &err);
    if (rc) {
        st_log(strchr(addr, ':') ? ST_LOG_WARN : ST_LOG_ERROR, "listen",
               "cannot listen on %s port %d (http): %s", addr, port, err ? err : "?");
        st_free(err);
        return strchr(addr, ':') ? 0 : ST_EIO;
    }
    http->listeners[http->nlisteners++] = ls;
    if (tls)
        http->tls_port = st_listener_port(ls);
    st_log_info("listen", "http%s on %s port %d", tls ? "s (with XMPP direct TLS)" : "", addr,
                st_listener_port(ls));
    return 0;
}

int st_http_start(struct st_server *srv)
{
    struct st_http *http = http_of(srv);
    const struct st_http_settings *hs = &srv->settings.http;
    if (!http->bosh)
        http->bosh = st_bosh_register(srv);
    st_ws_register(srv);
    for (size_t i = 0; i < hs->interfaces.n; i++) {
        const char *addr = hs->interfaces.items[i];
        if (hs->port && open_port(http, addr, (int)hs->port, false) != 0)
            return ST_EIO;
        if (hs->tls_port && srv->tls && open_port(http, addr, (int)hs->tls_port, true) != 0)
            return ST_EIO;
    }
    return 0;
}

void st_http_set_tls(struct st_server *srv, struct st_tls *tls)
{
    struct st_http *http = srv->http;
    if (!http)
        return;
    for (unsigned i = 0; i < http->nlisteners; i++)
        if (st_listener_port(http->listeners[i]) == http->tls_port)
            st_listener_set_tls(http->listeners[i], tls);
}

void st_http_stop(struct st_server *srv)
{
    struct st_http *http = srv->http;
    if (!http)
        return;
    http->stopping = true;
    for (unsigned i = 0; i < http->nlisteners; i++)
        st_listener_close(http->listeners[i]);
    http->nlisteners = 0;
    /* Closing aborts held requests through hc_on_close, asynchronously; the connections
     * outlive the layer, so cut them loose first. */
    for (struct st_http_conn *hc = http->conns; hc; hc = hc->next) {
        hc->http = NULL;
        if (hc->conn) {
            hc->closing = true;
            st_conn_close(hc->conn);
        }
    }
    for (struct st_http_conn *hc = http->conns, *n; hc; hc = n) {
        n = hc->next;
        hc->prev = hc->next = NULL;
    }
    http->conns = NULL;
    st_bosh_stop(http->bosh);
    for (size_t i = 0; i < http->nroutes; i++)
        st_free(http->routes[i].path);
    st_map_free(&http->per_ip);
    srv->http = NULL;
    st_free(http);
}
