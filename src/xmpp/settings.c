/* The server's own configuration schema: the top-level keys of
 * starling.yaml as option tables (defaults, bounds, one line of doc each),
 * loading and post-load validation (virtual hosts prepared as IDNA2008
 * domains per RFC 7622 §3.2 and checked for duplicates, limit consistency,
 * the module map's shape), path resolution relative to the file, and the
 * generated reference docs/CONFIG.md. Listener ports follow RFC 6120 §14.7
 * (5222, STARTTLS) and XEP-0368 (5223, direct TLS). Module options are
 * kept as a RAW subtree and bound by each module from its own table. */
#include "xmpp/settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "xmpp/jid.h"

#define KIB 1024
#define MIB (1024 * 1024)
#define GIB (1024 * 1024 * 1024LL)

/* The ENUM binds an index into log_levels; it is turned into the st_log_level value after
 * binding, so the struct field holds what st_log_set_level expects. */
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const int log_level_values[] = {ST_LOG_ERROR, ST_LOG_WARN, ST_LOG_INFO, ST_LOG_DEBUG};
static const char *const storages[] = {"sqlite", "memory", NULL};
/* Index order matches enum st_bare_delivery. */
static const char *const bare_deliveries[] = {"all_highest", "one_highest", NULL};

#define OPT(name, type, strct, field, def, min, max, doc)                                     \
    {name, type, offsetof(strct, field), def, min, max, NULL, NULL, doc}

static const struct st_option listen_options[] = {
    {"interfaces", ST_OPT_STRLIST, offsetof(struct st_listen_settings, interfaces),
     "[\"0.0.0.0\", \"::\"]", 0, 0, NULL, NULL,
     "addresses to listen on; a failure to bind \"::\" (no IPv6) is tolerated"},
    OPT("c2s_port", ST_OPT_INT, struct st_listen_settings, c2s_port, "5222", 0, 65535,
        "client port with STARTTLS (RFC 6120 §5); 0 disables"),
    OPT("c2s_tls_port", ST_OPT_INT, struct st_listen_settings, c2s_tls_port, "5223", 0, 65535,
        "client port with direct TLS (XEP-0368); 0 disables"),
    OPT("component_port", ST_OPT_INT, struct st_listen_settings, component_port, "5347", 0,
        65535, "external component port (XEP-0114); 0 disables"),
    OPT("component_interfaces", ST_OPT_STRLIST, struct st_listen_settings,
        component_interfaces, "[\"127.0.0.1\"]", 0, 0,
        "addresses the component port listens on (components are trusted: keep it local)"),
    ST_OPT_END,
};

static const struct st_option c2s_options[] = {
    OPT("require_encryption", ST_OPT_BOOL, struct st_c2s_settings, require_encryption, "true",
        0, 0, "offer only STARTTLS until the stream is encrypted (RFC 6120 §5.3.1)"),
    OPT("negotiation_timeout", ST_OPT_DURATION, struct st_c2s_settings, negotiation_timeout,
        "60s", 1000, 3600000, "time a client has from connect to a bound resource"),
    OPT("sasl_attempts", ST_OPT_INT, struct st_c2s_settings, sasl_attempts, "3", 1, 100,
        "failed SASL attempts before the stream is closed (RFC 6120 §6.4.5)"),
    OPT("connections_per_ip", ST_OPT_INT, struct st_c2s_settings, connections_per_ip, "32", 0,
        100000, "simultaneous client connections from one address; 0 = unlimited"),
    OPT("max_resources", ST_OPT_INT, struct st_c2s_settings, max_resources, "10", 1, 1000,
        "simultaneous resources per account (RFC 6120 §7.6.2.1)"),
    OPT("allow_plain", ST_OPT_BOOL, struct st_c2s_settings, allow_plain, "true", 0, 0,
        "offer SASL PLAIN, over TLS only unless allow_plain_unencrypted (RFC 4616)"),
    OPT("allow_plain_unencrypted", ST_OPT_BOOL, struct st_c2s_settings, allow_plain_unencrypted,
        "false", 0, 0,
        "also offer PLAIN on unencrypted streams: passwords cross the wire in the clear, so only "
        "behind a TLS-terminating proxy or on loopback"),
    OPT("scram_iterations", ST_OPT_INT, struct st_c2s_settings, scram_iterations, "4096", 4096,
        10000000, "PBKDF2 iterations for newly stored SCRAM credentials (RFC 7677)"),
    ST_OPT_END,
};

static const struct st_option limits_options[] = {
    OPT("stanza_size", ST_OPT_SIZE, struct st_limits, stanza_size, "256KiB", KIB, 64 * MIB,
        "largest stanza after authentication; larger closes the stream (RFC 6120 §13.12)"),
    OPT("stanza_size_preauth", ST_OPT_SIZE, struct st_limits, stanza_size_preauth, "8KiB", KIB,
        MIB, "largest stanza before authentication; must not exceed stanza_size"),
    OPT("max_depth", ST_OPT_INT, struct st_limits, max_depth, "32", 4, 1000,
        "deepest element nesting inside a stanza"),
    OPT("max_attributes", ST_OPT_INT, struct st_limits, max_attributes, "64", 4, 10000,
        "most attributes on one element"),
    OPT("output_queue", ST_OPT_SIZE, struct st_limits, output_queue, "2MiB", 64 * KIB, GIB,
        "unsent bytes queued per connection before it is closed as too slow"),
    ST_OPT_END,
};

static const struct st_option delivery_options[] = {
    {"bare_messages", ST_OPT_ENUM, offsetof(struct st_delivery_settings, bare_messages),
     "all_highest", 0, 0, bare_deliveries, NULL,
     "normal/chat to a bare JID with several resources of equal highest priority: "
     "all_highest delivers to each, one_highest to the most recently active (RFC 6121 "
     "§8.5.2.1.1)"},
    ST_OPT_END,
};

static const struct st_option s2s_options[] = {
    OPT("port", ST_OPT_INT, struct st_s2s_settings, port, "5269", 0, 65535,
        "server-to-server port with STARTTLS (RFC 6120 §14.7); 0 disables incoming streams"),
    OPT("tls_port", ST_OPT_INT, struct st_s2s_settings, tls_port, "5270", 0, 65535,
        "server-to-server port with direct TLS (XEP-0368); 0 disables"),
    OPT("require_encryption", ST_OPT_BOOL, struct st_s2s_settings, require_encryption, "true",
        0, 0, "refuse unencrypted server-to-server streams, both directions (RFC 7590)"),
    OPT("secure_auth", ST_OPT_BOOL, struct st_s2s_settings, secure_auth, "true", 0, 0,
        "require a trusted certificate (RFC 6125) for every peer; dialback without one only "
        "for insecure_domains"),
    OPT("insecure_domains", ST_OPT_STRLIST, struct st_s2s_settings, insecure_domains, NULL, 0,
        0, "peer domains allowed to authenticate with Server Dialback (XEP-0220) although "
           "their certificate cannot be verified"),
    OPT("routes", ST_OPT_RAW, struct st_s2s_settings, routes, "{}", 0, 0,
        "static routes: remote domain -> \"host:port\" (IP or name), used before DNS"),
    OPT("ca_files", ST_OPT_STRLIST, struct st_s2s_settings, ca_files, NULL, 0, 0,
        "PEM files of certificate authorities trusted for peers, besides the system store"),
    OPT("connect_timeout", ST_OPT_DURATION, struct st_s2s_settings, connect_timeout, "10s", 100,
        600000, "time for each connection attempt, and for the negotiation after it"),
    OPT("idle_timeout", ST_OPT_DURATION, struct st_s2s_settings, idle_timeout, "10m", 1000,
        86400000, "close a server-to-server stream after this long without traffic"),
    OPT("max_stanza_size", ST_OPT_SIZE, struct st_s2s_settings, max_stanza_size, "512KiB",
        KIB, 64 * MIB, "largest stanza accepted or sent on a server-to-server stream "
                       "(larger: policy-violation)"),
    OPT("queue_limit", ST_OPT_INT, struct st_s2s_settings, queue_limit, "1000", 1, 1000000,
        "stanzas held per outgoing stream while it is being set up; more are bounced"),
    OPT("dialback_secret", ST_OPT_STRING, struct st_s2s_settings, dialback_secret, NULL, 0, 0,
        "secret for dialback keys (XEP-0185); default: random at each start"),
    ST_OPT_END,
};

static const struct st_option dns_options[] = {
    OPT("servers", ST_OPT_STRLIST, struct st_dns_settings, servers, NULL, 0, 0,
        "DNS servers (\"ip\" or \"ip:port\") for federation; default: /etc/resolv.conf"),
    OPT("timeout", ST_OPT_DURATION, struct st_dns_settings, timeout, "5s", 100, 60000,
        "time for one DNS query attempt"),
    ST_OPT_END,
};

static const struct st_option http_options[] = {
    OPT("port", ST_OPT_INT, struct st_http_settings, port, "5280", 0, 65535,
        "plain HTTP port for BOSH, WebSocket and host-meta; 0 disables"),
    OPT("tls_port", ST_OPT_INT, struct st_http_settings, tls_port, "5443", 0, 65535,
        "direct TLS port serving HTTPS and XMPP (ALPN xmpp-client / http/1.1, else the first "
        "bytes decide); 0 disables"),
    {"interfaces", ST_OPT_STRLIST, offsetof(struct st_http_settings, interfaces),
     "[\"127.0.0.1\"]", 0, 0, NULL, NULL, "addresses the HTTP ports listen on"},
    OPT("cors_origins", ST_OPT_STRLIST, struct st_http_settings, cors_origins, NULL, 0, 0,
        "origins allowed to call BOSH and host-meta cross-origin (\"*\" = any)"),
    OPT("trusted_proxies", ST_OPT_STRLIST, struct st_http_settings, trusted_proxies, NULL, 0,
        0, "reverse proxies (IP or CIDR) whose Forwarded (RFC 7239) / X-Forwarded-For headers "
           "name the client"),
    OPT("proxy_is_secure", ST_OPT_BOOL, struct st_http_settings, proxy_is_secure, "false", 0,
        0, "treat plain HTTP from a trusted proxy as encrypted (TLS ends at the proxy)"),
    OPT("max_header_size", ST_OPT_SIZE, struct st_http_settings, max_header_size, "8KiB",
        KIB, MIB, "largest request line plus headers (larger: 431)"),
    OPT("max_body_size", ST_OPT_SIZE, struct st_http_settings, max_body_size, "1MiB", KIB,
        64 * MIB, "largest request body (larger: 413)"),
    OPT("max_requests_per_ip", ST_OPT_INT, struct st_http_settings, max_requests_per_ip, "32",
        1, 100000, "requests in progress at once from one client address (more: 429)"),
    ST_OPT_END,
};

static const struct st_option bosh_options[] = {
    OPT("max_wait", ST_OPT_DURATION, struct st_bosh_settings, max_wait, "60s", 1000, 3600000,
        "longest time a request is held (XEP-0124 'wait')"),
    OPT("max_hold", ST_OPT_INT, struct st_bosh_settings, max_hold, "1", 0, 10,
        "most requests held at once (XEP-0124 'hold'); 0 = polling"),
    OPT("max_inactivity", ST_OPT_DURATION, struct st_bosh_settings, max_inactivity, "60s",
        1000, 3600000, "a session without any request for this long ends"),
    OPT("max_requests", ST_OPT_INT, struct st_bosh_settings, max_requests, "2", 1, 16,
        "simultaneous requests per session (XEP-0124 'requests')"),
    OPT("polling", ST_OPT_DURATION, struct st_bosh_settings, polling, "2s", 0, 600000,
        "shortest interval between polling requests of hold=0 sessions"),
    OPT("max_pause", ST_OPT_DURATION, struct st_bosh_settings, max_pause, "120s", 0, 3600000,
        "longest 'pause' a client may request (XEP-0124 §10 'maxpause'); 0 = no pausing"),
    ST_OPT_END,
};

static const struct st_option websocket_options[] = {
    OPT("origins", ST_OPT_STRLIST, struct st_websocket_settings, origins, NULL, 0, 0,
        "allowed Origin header values; others get 403; empty = any"),
    OPT("max_frame_size", ST_OPT_SIZE, struct st_websocket_settings, max_frame_size, "256KiB",
        KIB, 64 * MIB, "largest WebSocket message; larger closes with 1009 (RFC 6455 §7.4.1)"),
    OPT("ping_interval", ST_OPT_DURATION, struct st_websocket_settings, ping_interval, "60s", 0,
        3600000, "send a ping frame after this long without input (RFC 6455 §5.5.2); 0 = never"),
    OPT("ping_timeout", ST_OPT_DURATION, struct st_websocket_settings, ping_timeout, "30s", 100,
        3600000, "close a connection that sends nothing for this long after our ping"),
    ST_OPT_END,
};

const struct st_option st_settings_options[] = {
    {"log_level", ST_OPT_ENUM, offsetof(struct st_settings, log_level), "info", 0, 0,
     log_levels, NULL, "most verbose level logged"},
    OPT("data_dir", ST_OPT_STRING, struct st_settings, data_dir, "./starling-data", 0, 0,
        "database and generated certificates (certs/HOST.crt, certs/HOST.key)"),
    {"storage", ST_OPT_ENUM, offsetof(struct st_settings, storage), "sqlite", 0, 0, storages,
     NULL, "storage backend: SQLite in data_dir, or memory (lost on restart; for tests)"},
    OPT("hosts", ST_OPT_RAW, struct st_settings, hosts_node, "{localhost: {}}", 0, 0,
        "virtual hosts: domain -> {certificate, key} (see `hosts.<domain>`)"),
    {"listen", ST_OPT_SECTION, offsetof(struct st_settings, listen), NULL, 0, 0, NULL,
     listen_options, "network listeners"},
    {"c2s", ST_OPT_SECTION, offsetof(struct st_settings, c2s), NULL, 0, 0, NULL, c2s_options,
     "client connections"},
    {"limits", ST_OPT_SECTION, offsetof(struct st_settings, limits), NULL, 0, 0, NULL,
     limits_options, "resource limits per stanza and connection"},
    {"delivery", ST_OPT_SECTION, offsetof(struct st_settings, delivery), NULL, 0, 0, NULL,
     delivery_options, "message delivery to local accounts (RFC 6121 §8.5)"},
    {"s2s", ST_OPT_SECTION, offsetof(struct st_settings, s2s), NULL, 0, 0, NULL, s2s_options,
     "federation: server-to-server streams"},
    {"dns", ST_OPT_SECTION, offsetof(struct st_settings, dns), NULL, 0, 0, NULL, dns_options,
     "DNS resolution (SRV, A/AAAA) for federation"},
    {"http", ST_OPT_SECTION, offsetof(struct st_settings, http), NULL, 0, 0, NULL, http_options,
     "HTTP listener: BOSH, WebSocket, host-meta (RFC 9112)"},
    {"bosh", ST_OPT_SECTION, offsetof(struct st_settings, bosh), NULL, 0, 0, NULL, bosh_options,
     "BOSH at /http-bind (XEP-0124, XEP-0206)"},
    {"websocket", ST_OPT_SECTION, offsetof(struct st_settings, websocket), NULL, 0, 0, NULL,
     websocket_options, "XMPP over WebSocket at /xmpp-websocket (RFC 7395)"},
    OPT("modules", ST_OPT_RAW, struct st_settings, modules, NULL, 0, 0,
        "module name -> map of that module's options (documented by each module)"),
    OPT("components", ST_OPT_RAW, struct st_settings, components_node, "{}", 0, 0,
        "external components (XEP-0114): domain -> {secret, privileges, delegations} (see "
        "`components.<domain>`)"),
    OPT("modules_disabled", ST_OPT_STRLIST, struct st_settings, modules_disabled, NULL, 0, 0,
        "default modules to turn off"),
    ST_OPT_END,
};

const struct st_option st_settings_host_options[] = {
    OPT("certificate", ST_OPT_STRING, struct st_host_settings, certificate, NULL, 0, 0,
        "PEM certificate chain; default DATA_DIR/certs/DOMAIN.crt (self-signed if missing)"),
    OPT("key", ST_OPT_STRING, struct st_host_settings, key, NULL, 0, 0,
        "PEM private key; default DATA_DIR/certs/DOMAIN.key"),
    ST_OPT_END,
};

static void free_hosts(struct st_settings *s)
{
    for (size_t i = 0; i < s->nhosts; i++) {
        st_opt_free(st_settings_host_options, &s->hosts[i]);
        st_free(s->hosts[i].name);
    }
    st_free(s->hosts);
    s->hosts = NULL;
    s->nhosts = 0;
}

void st_settings_free(struct st_settings *s)
{
    if (!s)
        return;
    free_hosts(s);
    st_components_free(s);
    st_opt_free(st_settings_options, s);
    st_cfg_doc_free(&s->doc);
    st_free(s->file);
    memset(s, 0, sizeof *s);
}

static char *join(const char *a, const char *sep, const char *b, const char *tail)
{
    struct st_buf buf;
    st_buf_init(&buf, 0);
    st_buf_printf(&buf, "%s%s%s%s", a, sep, b, tail);
    return st_buf_take(&buf);
}

/* Each domain is prepared as a JID domainpart, so hosts compare the way the router compares
 * the domains of addresses; two spellings of one domain are a duplicate. */
static int load_hosts(struct st_settings *s, const char *file, char **err)
{
    const struct st_cfg_node *hn = s->hosts_node;
    const struct st_cfg_node *written = st_cfg_get(s->doc.root, "hosts");
    if (!hn && written) /* "hosts:" with nothing after it */
        return st_cfg_fail(err, file, written->line, "'hosts' must name at least one host");
    if (!hn) {
        s->hosts = ST_NEW(struct st_host_settings);
        s->hosts[0].name = st_strdup("localhost");
        s->nhosts = 1;
        return 0;
    }
    if (hn->type != ST_CFG_MAP)
        return st_cfg_fail(err, file, hn->line,
                           "'hosts' must be a map of domain names to host settings");
    size_t n = 0;
    for (const struct st_cfg_node *c = hn->child; c; c = c->next)
        n++;
    if (n == 0)
        return st_cfg_fail(err, file, hn->line, "'hosts' must name at least one host");
    s->hosts = st_calloc(n, sizeof *s->hosts);
    for (const struct st_cfg_node *c = hn->child; c; c = c->next) {
        char *name = NULL;
        if (st_jid_prep_domain(c->key, strlen(c->key), &name) != 0 || !name)
            return st_cfg_fail(err, file, c->line, "invalid host name '%s'", c->key);
        for (size_t i = 0; i < s->nhosts; i++) {
            if (strcmp(s->hosts[i].name, name) == 0) {
                int rc = st_cfg_fail(err, file, c->line,
                                     "duplicate host '%s' (also declared on line %u)", name,
                                     s->hosts[i].line);
                st_free(name);
                return rc;
            }
        }
        struct st_host_settings *h = &s->hosts[s->nhosts];
        char *path = st_cfg_join_path("hosts", c->key);
        int rc = st_opt_bind_at(st_settings_host_options, c, file, path, h, err);
        st_free(path);
        if (rc) {
            st_free(name);
            return rc;
        }
        h->name = name;
        h->line = c->line;
        s->nhosts++;
    }
    return 0;
}

static int check_modules(const struct st_settings *s, const char *file, char **err)
{
    const struct st_cfg_node *m = s->modules;
    if (!m)
        return 0;
    if (m->type != ST_CFG_MAP)
        return st_cfg_fail(err, file, m->line,
                           "'modules' must be a map of module names to options");
    for (const struct st_cfg_node *c = m->child; c; c = c->next)
        if (c->type != ST_CFG_MAP && c->type != ST_CFG_NULL)
            return st_cfg_fail(err, file, c->line, "'modules.%s' must be a map of options", c->key);
    return 0;
}

/* s2s.routes: a map of domain -> "host:port" (port 1..65535; host an IP literal, [IPv6] or a
 * name). */
static int check_routes(const struct st_settings *s, const char *file, char **err)
{
    const struct st_cfg_node *r = s->s2s.routes;
    if (!r)
        return 0;
    if (r->type != ST_CFG_MAP)
        return st_cfg_fail(err, file, r->line,
                           "'s2s.routes' must be a map of domains to \"host:port\"");
    for (const struct st_cfg_node *c = r->child; c; c = c->next) {
        const char *v = c->type == ST_CFG_SCALAR ? c->value : NULL;
        const char *colon = v ? strrchr(v, ':') : NULL;
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == v || !end || *end || port < 1 || port > 65535)
            return st_cfg_fail(err, file, c->line, "'s2s.routes.%s' must be \"host:port\"", c->key);
    }
    return 0;
}

static unsigned line_of(const struct st_cfg_node *root, const char *section, const char *key)
{
    const struct st_cfg_node *sec = st_cfg_get(root, section);
    const struct st_cfg_node *n = st_cfg_get(sec, key);
    return n ? n->line : sec ? sec->line : 0;
}

static int check_consistency(const struct st_settings *s, const char *file, char **err)
{
    const struct st_cfg_node *root = s->doc.root;
    if (s->limits.stanza_size < s->limits.stanza_size_preauth) {
        unsigned line = line_of(root, "limits", "stanza_size");
        if (!st_cfg_get(st_cfg_get(root, "limits"), "stanza_size"))
            line = line_of(root, "limits", "stanza_size_preauth");
        return st_cfg_fail(err, file, line,
                           "'limits.stanza_size' (%zu bytes) must be at least "
                           "'limits.stanza_size_preauth' (%zu bytes)",
                           s->limits.stanza_size, s->limits.stanza_size_preauth);
    }
    if (s->listen.c2s_port && s->listen.c2s_port == s->listen.c2s_tls_port)
        return st_cfg_fail(err, file, line_of(root, "listen", "c2s_tls_port"),
                           "'listen.c2s_tls_port' must differ from "
                           "'listen.c2s_port'");
    if (!s->listen.c2s_port && !s->listen.c2s_tls_port)
        st_log_warn("config", "%s: no client port enabled (listen.c2s_port and "
                    "listen.c2s_tls_port are both 0)", file);
    return 0;
}

/* Relative paths in the file mean "next to this file", so a configuration can be moved or
 * started from any working directory together with its certificates. */
static void resolve_path(char **p, const char *file)
{
    if (!*p || (*p)[0] == '/' || !file)
        return;
    const char *slash = strrchr(file, '/');
    if (!slash)
        return;
    const char *rel = *p;
    while (rel[0] == '.' && rel[1] == '/')
        rel += 2;
    char *dir = st_strndup(file, slash == file ? 1 : (size_t)(slash - file));
    char *r = join(dir, slash == file ? "" : "/", rel, "");
    st_free(dir);
    st_free(*p);
    *p = r;
}

int st_settings_load(const char *path, struct st_settings *out, char **err)
{
    memset(out, 0, sizeof *out);
    const char *file = path ? path : "<defaults>";
    int rc = 0;
    if (path) {
        rc = st_cfg_load(path, &out->doc, err);
        if (rc)
            goto fail;
        out->file = st_strdup(path);
    }
    rc = st_opt_bind(st_settings_options, out->doc.root, file, out, err);
    if (rc)
        goto fail;
    out->log_level = log_level_values[out->log_level];
    rc = load_hosts(out, file, err);
    if (rc)
        goto fail;
    rc = check_modules(out, file, err);
    if (rc)
        goto fail;
    rc = st_components_load(out, file, err);
    if (rc)
        goto fail;
    rc = check_consistency(out, file, err);
    if (rc)
        goto fail;
    rc = check_routes(out, file, err);
    if (rc)
        goto fail;
    if (path) {
        if (st_cfg_get(out->doc.root, "data_dir"))
            resolve_path(&out->data_dir, path);
        for (size_t i = 0; i < out->nhosts; i++) {
            resolve_path(&out->hosts[i].certificate, path);
            resolve_path(&out->hosts[i].key, path);
        }
        for (size_t i = 0; i < out->s2s.ca_files.n; i++)
            resolve_path(&out->s2s.ca_files.items[i], path);
    }
    return 0;
fail:
    st_settings_free(out);
    return rc;
}

const struct st_host_settings *st_settings_host(const struct st_settings *s, const char *domain)
{
    for (size_t i = 0; domain && i < s->nhosts; i++)
        if (strcmp(s->hosts[i].name, domain) == 0)
            return &s->hosts[i];
    return NULL;
}

char *st_settings_cert_path(const struct st_settings *s, const struct st_host_settings *h)
{
    if (h->certificate)
        return st_strdup(h->certificate);
    return join(s->data_dir, "/certs/", h->name, ".crt");
}

char *st_settings_key_path(const struct st_settings *s, const struct st_host_settings *h)
{
    if (h->key)
        return st_strdup(h->key);
    return join(s->data_dir, "/certs/", h->name, ".key");
}

static const char intro[] =
    "# Starling configuration reference\n"
    "\n"
    "<!-- Generated by st_settings_document() from the option tables in\n"
    "     src/xmpp/settings.c. Do not edit by hand: change the tables and regenerate. -->\n"
    "\n"
    "Starling reads one YAML file, given on the command line. Without a file it runs with\n"
    "the built-in defaults: one virtual host `localhost`, data in `./starling-data`.\n"
    "`conf/starling.yaml.example` lists every option below with its default value.\n"
    "\n"
    "## Writing the file\n"
    "\n"
    "- **Syntax.** Plain YAML: maps, lists (`[a, b]` or one `- item` per line), scalars and\n"
    "  `#` comments. Anchors, aliases, tags and several documents in one file are rejected,\n"
    "  and so is a key written twice in the same map.\n"
    "- **Errors.** An unknown option or a bad value stops the server at start with\n"
    "  `FILE:LINE: message`, e.g. `starling.yaml:12: unknown option 'c2s.sasl_attempt';\n"
    "  did you mean 'c2s.sasl_attempts'?`. Options are named by their dotted path.\n"
    "- **Booleans:** `true`/`false`, `yes`/`no`, `on`/`off`.\n"
    "- **Sizes:** a number of bytes with an optional unit `B`, `KiB`, `MiB`, `GiB`, `TiB`\n"
    "  (powers of 1024; a space is allowed): `512`, `8 KiB`, `256KiB`, `2MiB`.\n"
    "- **Durations:** a number with an optional unit `ms`, `s`, `m`, `h`, `d`; a plain\n"
    "  number means seconds: `500ms`, `60s`, `5m`, `1h`.\n"
    "- **Lists** accept a single value for a one-item list.\n"
    "- **Ranges** are given as min–max in the type column; values outside are errors.\n"
    "- **Paths.** Relative paths written in the file (`data_dir`, `certificate`, `key`)\n"
    "  are relative to the directory of the configuration file. The built-in default\n"
    "  `data_dir` (`./starling-data`, used when the file does not set it) is relative to\n"
    "  the working directory.\n"
    "- **Virtual hosts.** `hosts` maps each domain this server serves to its settings.\n"
    "  Domains are prepared as JID domainparts (IDNA2008, lowercase; RFC 7622 §3.2), so\n"
    "  `Example.COM` and `example.com` are the same host and listing both is an error.\n"
    "  Without `certificate`/`key` a host uses `DATA_DIR/certs/DOMAIN.crt` and `.key`\n"
    "  (a self-signed pair is created there if missing).\n"
    "- **Modules.** `modules` maps a module name to a map of that module's options (or\n"
    "  nothing, for defaults); each module's own options are checked when it loads and\n"
    "  are documented with the module. `modules_disabled` turns default modules off.\n"
    "\n"
    "```yaml\n"
    "hosts:\n"
    "  example.org:\n"
    "    certificate: /etc/starling/example.org.crt\n"
    "    key: /etc/starling/example.org.key\n"
    "c2s:\n"
    "  negotiation_timeout: 30s\n"
    "limits:\n"
    "  stanza_size: 512KiB\n"
    "```\n"
    "\n";

int st_settings_document(struct st_buf *out)
{
    st_buf_puts(out, intro);
    int rc = st_opt_document(st_settings_options, NULL, out);
    if (!rc)
        rc = st_opt_document(st_settings_host_options, "hosts.<domain>", out);
    if (!rc)
        rc = st_components_document(out);
    if (!rc)
        rc = st_buf_puts(out, "## `modules.<name>`\n\n"
                              "Options of each module; see the module's documentation.\n");
    return rc;
}
