/* A chat page in the browser, like ejabberd's mod_conversejs: at
 * modules.webchat.path (default /chat, redirected to /chat/) an HTML page loads converse.js from
 * this server's own route (<path>/dist/, never a CDN) and configures it for
 * the host: the BOSH (XEP-0206) and WebSocket (RFC 7395) endpoints, built
 * like XEP-0156 host-meta's from the request unless configured, and the
 * default domain. converse.js is not part of the tree: `make webclient`
 * installs it from npm into webclient/ (gitignored). The files of
 * assets_dir are read once at start into memory (bounded), so serving never
 * touches the disk on the loop thread; without them the module logs how to
 * install them and answers 404. Off unless modules.webchat is configured. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "starling/module.h"

#define MAX_FILE (16u << 20)  /* largest single asset */
#define MAX_TOTAL (64u << 20) /* all assets together */
#define MAX_DEPTH 4

struct webchat_opts {
    char *path;
    char *assets_dir;
    char *domain;
    char *bosh_url;
    char *websocket_url;
};

static const struct st_option webchat_options[] = {
    {"path", ST_OPT_STRING, offsetof(struct webchat_opts, path), "/chat", 0, 0, NULL, NULL,
     "URL path of the chat page; the client's files are served under <path>/dist/"},
    {"assets_dir", ST_OPT_STRING, offsetof(struct webchat_opts, assets_dir),
     "webclient/node_modules/converse.js/dist", 0, 0, NULL, NULL,
     "converse.js's dist directory (installed by `make webclient`)"},
    {"domain", ST_OPT_STRING, offsetof(struct webchat_opts, domain), NULL, 0, 0, NULL, NULL,
     "XMPP domain users log in to; default: the request's Host when it is a local host"},
    {"bosh_url", ST_OPT_STRING, offsetof(struct webchat_opts, bosh_url), NULL, 0, 0, NULL, NULL,
     "BOSH URL for the client; default: http[s]://HOST/http-bind"},
    {"websocket_url", ST_OPT_STRING, offsetof(struct webchat_opts, websocket_url), NULL, 0, 0,
     NULL, NULL, "WebSocket URL for the client; default: ws[s]://HOST/xmpp-websocket"},
    ST_OPT_END,
};

struct asset {
    const char *type;
    char *data;
    size_t len;
};

struct webchat {
    const struct webchat_opts *o;
    struct st_server *srv;
    bool installed;       /* converse.min.js was found */
    struct st_map assets; /* path below assets_dir -> struct asset */
    size_t total;
    char *dist_prefix;    /* "<path>/dist/" */
    char *dir_path;       /* "<path>/" */
};

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".wasm", "application/wasm"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".ttf", "font/ttf"},
    {".woff", "font/woff"},
    {".woff2", "font/woff2"},
    {".mp3", "audio/mpeg"},
    {".ogg", "audio/ogg"},
};

static const char *type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return NULL;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return NULL; /* source maps and anything unknown stay unserved */
}

static int read_file(const char *file, size_t size, char **out)
{
    FILE *f = fopen(file, "rb");
    if (!f)
        return ST_EIO;
    char *data = st_malloc(size ? size : 1);
    size_t n = fread(data, 1, size, f);
    fclose(f);
    if (n != size) {
        st_free(data);
        return ST_EIO;
    }
    *out = data;
    return 0;
}

/* Loads the servable files below dir (rel is the path so far, "" at the top). */
static void load_dir(struct webchat *w, const char *dir, const char *rel, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        if (e->d_name[0] == '.')
            continue;
        char full[1024], sub[512];
        if (snprintf(full, sizeof full, "%s/%s", dir, e->d_name) >= (int)sizeof full ||
            snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name) >=
                (int)sizeof sub)
            continue;
        struct stat st;
        if (stat(full, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < MAX_DEPTH)
                load_dir(w, full, sub, depth + 1);
            continue;
        }
        const char *type = type_of(e->d_name);
        if (!S_ISREG(st.st_mode) || !type || (size_t)st.st_size > MAX_FILE ||
            w->total + (size_t)st.st_size > MAX_TOTAL)
            continue;
        char *data;
        if (read_file(full, (size_t)st.st_size, &data) != 0)
            continue;
        struct asset *a = ST_NEW(struct asset);
        a->type = type;
        a->data = data;
        a->len = (size_t)st.st_size;
        w->total += a->len;
        st_map_set(&w->assets, sub, a);
    }
    closedir(d);
}

/* The Host header, if it is a plausible authority (safe in a URL, JSON and HTML). */
static const char *authority(struct st_http_request *req)
{
    const char *h = st_http_header(req, "host");
    if (!h || !*h || strlen(h) > 300)
        return NULL;
    for (const char *p = h; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_';
        if (!ok)
            return NULL;
    }
    return h;
}

/* A JSON string literal that is also safe inside an HTML <script> element. */
static void json_str(struct st_buf *b, const char *s)
{
    st_buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\' || *p == '<' || *p == '>' || *p == '&' || *p < 0x20)
            st_buf_printf(b, "\\u%04x", *p);
        else
            st_buf_append(b, (const char *)p, 1);
    }
    st_buf_puts(b, "\"");
}

static void json_url(struct st_buf *b, const char *configured, struct st_http_request *req,
                     const char *host, const char *plain, const char *tls, const char *path)
{
    if (configured) {
        json_str(b, configured);
        return;
    }
    st_buf_printf(b, "\"%s://%s%s\"", st_http_secure(req) ? tls : plain, host, path);
}

static void not_installed(struct st_http_request *req)
{
    static const char msg[] = "The web chat client is not installed on this server "
                              "(the operator runs `make webclient`).\n";
    st_http_respond(req, 404, "text/plain; charset=utf-8", NULL, msg, sizeof msg - 1);
}

static void serve_page(struct webchat *w, struct st_http_request *req)
{
    const struct webchat_opts *o = w->o;
    const char *host = authority(req);
    if (!host && (!o->bosh_url || !o->websocket_url)) {
        st_http_respond(req, 400, "text/plain", NULL, "Bad Host\n", 9);
        return;
    }
    const char *domain = o->domain;
    const char *name = st_http_host(req);
    if (!domain && name && st_host_is_local(w->srv, name))
        domain = name;
    struct st_buf b;
    st_buf_init(&b, 64 * 1024);
    st_buf_puts(&b, "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
                    "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
                    "<title>Chat</title>\n<link rel='stylesheet' href='");
    st_buf_put_xml_escaped(&b, w->dist_prefix, strlen(w->dist_prefix));
    st_buf_puts(&b, "converse.min.css'>\n</head>\n<body class='converse-fullscreen'>\n"
                    "<noscript>This chat page needs JavaScript.</noscript>\n<script>\n"
                    "window.starlingWebchat = {\"assets_path\": ");
    json_str(&b, w->dist_prefix);
    st_buf_puts(&b, ", \"bosh_service_url\": ");
    json_url(&b, o->bosh_url, req, host, "http", "https", "/http-bind");
    st_buf_puts(&b, ", \"websocket_url\": ");
    json_url(&b, o->websocket_url, req, host, "ws", "wss", "/xmpp-websocket");
    if (domain) {
        st_buf_puts(&b, ", \"default_domain\": ");
        json_str(&b, domain);
        st_buf_puts(&b, ", \"domain_placeholder\": ");
        json_str(&b, domain);
    }
    /* Strangers may write to users of a fresh account with an empty roster. */
    st_buf_puts(&b, ", \"view_mode\": \"fullscreen\", \"discover_connection_methods\": false,"
                    " \"allow_non_roster_messaging\": true, \"auto_reconnect\": true};\n"
                    "</script>\n<script type='module'>\nimport converse from ");
    /* converse.js ships as an ES module whose default export is the API. */
    struct st_buf js;
    st_buf_init(&js, 1024);
    st_buf_printf(&js, "%sconverse.min.js", w->dist_prefix);
    json_str(&b, js.data);
    st_buf_free(&js);
    st_buf_puts(&b, ";\nwindow.converse = converse;\n"
                    "converse.initialize(window.starlingWebchat);\n</script>\n</body>\n"
                    "</html>\n");
    if (b.len >= b.max) {
        st_buf_free(&b);
        st_http_respond(req, 500, "text/plain", NULL, "page too large\n", 15);
        return;
    }
    /* Everything comes from here: the client's own footer would fetch sponsor logos from
     * its project's site, which the policy blocks; connections may go to configured URLs. */
    st_http_respond(req, 200, "text/html; charset=utf-8",
                    "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
                    "Content-Security-Policy: default-src 'self'; img-src 'self' data: blob:; "
                    "media-src 'self' data: blob:; font-src 'self' data:; style-src 'self' "
                    "'unsafe-inline'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; "
                    "connect-src 'self' http: https: ws: wss:; worker-src 'self' blob:\r\n",
                    b.data, b.len);
    st_buf_free(&b);
}

static void on_request(struct st_http_request *req, void *ud)
{
    struct webchat *w = ud;
    const char *method = st_http_method(req);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        st_http_respond(req, 405, "text/plain", "Allow: GET, HEAD\r\n", "", 0);
        return;
    }
    if (!w->installed) {
        not_installed(req);
        return;
    }
    const char *path = st_http_path(req);
    if (strcmp(path, w->o->path) == 0) {
        /* The page lives at <path>/ so that the client's relative fetches (its WebAssembly)
         * stay inside our route. */
        struct st_buf h;
        st_buf_init(&h, 1024);
        st_buf_printf(&h, "Location: %s\r\n", w->dir_path);
        st_http_respond(req, 301, "text/plain", h.data, "Moved\n", 6);
        st_buf_free(&h);
        return;
    }
    if (strcmp(path, w->dir_path) == 0) {
        serve_page(w, req);
        return;
    }
    size_t n = strlen(w->dist_prefix), d = strlen(w->dir_path);
    const struct asset *a = NULL;
    /* Only names loaded at start are served: no path ever reaches the file system. */
    if (strncmp(path, w->dist_prefix, n) == 0)
        a = st_map_get(&w->assets, path + n);
    else if (strncmp(path, w->dir_path, d) == 0)
        a = st_map_get(&w->assets, path + d);
    if (!a) {
        st_http_respond(req, 404, "text/plain", NULL, "Not Found\n", 10);
        return;
    }
    st_http_respond(req, 200, a->type,
                    "Cache-Control: public, max-age=3600\r\nX-Content-Type-Options: nosniff\r\n",
                    a->data, a->len);
}

static bool path_ok(const char *p)
{
    size_t n = strlen(p);
    if (n < 2 || n > 200 || p[0] != '/' || p[n - 1] == '/')
        return false;
    for (; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '/' || c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static void webchat_unload(struct st_module *m)
{
    struct webchat *w = st_module_data(m);
    if (!w)
        return;
    for (struct st_map_entry *e = st_map_first(&w->assets); e;
         e = st_map_next(&w->assets, e)) {
        struct asset *a = e->value;
        st_free(a->data);
        st_free(a);
    }
    st_map_free(&w->assets);
    st_free(w->dist_prefix);
    st_free(w->dir_path);
    st_free(w);
    st_module_set_data(m, NULL);
}

static int webchat_load(struct st_module *m, const void *options)
{
    const struct webchat_opts *o = options;
    if (!path_ok(o->path)) {
        st_log_error("webchat", "modules.webchat.path '%s': want /name (letters, digits, "
                                "'/-_.'; no trailing '/')", o->path);
        return ST_EINVAL;
    }
    struct webchat *w = ST_NEW(struct webchat);
    w->o = o;
    st_map_init(&w->assets);
    struct st_buf b;
    st_buf_init(&b, 512);
    st_buf_printf(&b, "%s/dist/", o->path);
    w->dist_prefix = st_buf_take(&b);
    st_buf_init(&b, 512);
    st_buf_printf(&b, "%s/", o->path);
    w->dir_path = st_buf_take(&b);
    w->srv = st_module_server(m);
    st_module_set_data(m, w);
    load_dir(w, o->assets_dir, "", 0);
    w->installed = st_map_get(&w->assets, "converse.min.js") != NULL;
    if (!w->installed) {
        st_log_warn("webchat", "converse.js not found in '%s' (run `make webclient`, or set "
                               "modules.webchat.assets_dir); %s answers 404",
                    o->assets_dir, o->path);
    } else {
        st_log_info("webchat", "chat page at %s: %zu files (%zu KiB) from '%s'", o->path,
                    w->assets.count, w->total / 1024, o->assets_dir);
    }
    int rc = st_module_http_route(m, o->path, on_request, w);
    if (rc == 0)
        rc = st_module_http_route(m, w->dir_path, on_request, w);
    return rc;
}

const struct st_module_def st_mod_webchat = {
    .name = "webchat",
    .description = "a converse.js chat page preconfigured for the host (like mod_conversejs)",
    .options = webchat_options,
    .options_size = sizeof(struct webchat_opts),
    .default_on = false,
    .load = webchat_load,
    .unload = webchat_unload,
};
