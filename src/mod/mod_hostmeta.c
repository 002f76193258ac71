/* XEP-0156 Discovering Alternative XMPP Connection Methods, HTTP lookup:
 * /.well-known/host-meta (XRD, RFC 6415 §3) and /.well-known/host-meta.json
 * (JRD, RFC 6415 Appendix A) advertise the BOSH (XEP-0206) and WebSocket
 * (RFC 7395 §4) endpoints of each host. Unless configured, the URLs are
 * built from the request itself (scheme from TLS, authority from Host), so
 * they stay right behind a reverse proxy that forwards Host. Served with
 * Access-Control-Allow-Origin: * (XEP-0156 §3.2: web clients read it
 * cross-origin). */
#include <string.h>

#include "starling/module.h"

struct hostmeta_opts {
    char *bosh_url;
    char *websocket_url;
};

static const struct st_option hostmeta_options[] = {
    {"bosh_url", ST_OPT_STRING, offsetof(struct hostmeta_opts, bosh_url), NULL, 0, 0, NULL, NULL,
     "BOSH URL to advertise; default: from the request (http[s]://HOST/http-bind)"},
    {"websocket_url", ST_OPT_STRING, offsetof(struct hostmeta_opts, websocket_url), NULL, 0, 0,
     NULL, NULL, "WebSocket URL to advertise; default: ws[s]://HOST/xmpp-websocket"},
    ST_OPT_END,
};

/* The Host header as sent, if it is a plausible authority (no characters that would need
 * escaping in XML or JSON). */
static bool authority_ok(const char *h)
{
    if (!h || !*h || strlen(h) > 300)
        return false;
    for (const char *p = h; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

static void url(struct st_buf *b, const char *configured, struct st_http_request *req,
                const char *scheme_plain, const char *scheme_tls, const char *path)
{
    if (configured) {
        st_buf_puts(b, configured);
        return;
    }
    st_buf_printf(b, "%s://%s%s", st_http_secure(req) ? scheme_tls : scheme_plain,
                  st_http_header(req, "host"), path);
}

static void on_hostmeta(struct st_http_request *req, void *ud)
{
    const struct hostmeta_opts *o = ud;
    const char *method = st_http_method(req);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        st_http_respond(req, 405, "text/plain", "Allow: GET, HEAD\r\n", "", 0);
        return;
    }
    if (!authority_ok(st_http_header(req, "host")) && (!o->bosh_url || !o->websocket_url)) {
        st_http_respond(req, 400, "text/plain", NULL, "Bad Host\n", 9);
        return;
    }
    bool json = strcmp(st_http_path(req), "/.well-known/host-meta.json") == 0;
    struct st_buf bosh, ws, body;
    st_buf_init(&bosh, 1024);
    st_buf_init(&ws, 1024);
    st_buf_init(&body, 4096);
    url(&bosh, o->bosh_url, req, "http", "https", "/http-bind");
    url(&ws, o->websocket_url, req, "ws", "wss", "/xmpp-websocket");
    if (json) {
        st_buf_puts(&body, "{\"links\":[{\"rel\":\"urn:xmpp:alt-connections:xbosh\",\"href\":\"");
        st_buf_append(&body, bosh.data, bosh.len);
        st_buf_puts(&body, "\"},{\"rel\":\"urn:xmpp:alt-connections:websocket\",\"href\":\"");
        st_buf_append(&body, ws.data, ws.len);
        st_buf_puts(&body, "\"}]}\n");
    } else {
        st_buf_puts(&body, "<?xml version='1.0' encoding='utf-8'?>\n"
                           "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"
                           "  <Link rel='urn:xmpp:alt-connections:xbosh' href='");
        st_buf_put_xml_escaped(&body, bosh.data, bosh.len);
        st_buf_puts(&body, "'/>\n  <Link rel='urn:xmpp:alt-connections:websocket' href='");
        st_buf_put_xml_escaped(&body, ws.data, ws.len);
        st_buf_puts(&body, "'/>\n</XRD>\n");
    }
    st_http_respond(req, 200, json ? "application/json" : "application/xrd+xml; charset=utf-8",
                    "Access-Control-Allow-Origin: *\r\n", body.data, body.len);
    st_buf_free(&bosh);
    st_buf_free(&ws);
    st_buf_free(&body);
}

static int hostmeta_load(struct st_module *m, const void *options)
{
    int rc = st_module_http_route(m, "/.well-known/host-meta", on_hostmeta, (void *)options);
    if (rc == 0)
        rc = st_module_http_route(m, "/.well-known/host-meta.json", on_hostmeta,
                                  (void *)options);
    return rc;
}

const struct st_module_def st_mod_hostmeta = {
    .name = "hostmeta",
    .description = "XEP-0156 host-meta: advertises the BOSH and WebSocket endpoints",
    .options = hostmeta_options,
    .options_size = sizeof(struct hostmeta_opts),
    .default_on = true,
    .load = hostmeta_load,
};
