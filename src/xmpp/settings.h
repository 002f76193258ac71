/* The server's own configuration schema (the top-level keys of
 * starling.yaml) and its loading: defaults, the option tables, virtual
 * host entries, and post-load validation. Module options live under
 * `modules.<name>` and are bound by each module from its own table. */
#ifndef ST_XMPP_SETTINGS_H
#define ST_XMPP_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "xmpp/components.h"

struct st_host_settings {
    char *name;        /* prepared domain (lowercase, IDNA) */
    char *certificate; /* PEM path; NULL = DATA_DIR/certs/NAME.crt (self-signed if missing) */
    char *key;         /* PEM path; NULL = DATA_DIR/certs/NAME.key */
    unsigned line;     /* where it was declared, for messages */
};

struct st_limits {
    size_t stanza_size;         /* after authentication (default 256 KiB) */
    size_t stanza_size_preauth; /* before authentication (default 8 KiB) */
    int64_t max_depth;          /* element nesting (default 32) */
    int64_t max_attributes;     /* per element (default 64) */
    size_t output_queue;        /* per connection, bytes (default 2 MiB) */
};

struct st_c2s_settings {
    bool require_encryption;       /* offer only STARTTLS before TLS (default true) */
    uint64_t negotiation_timeout;  /* ms to reach a bound session (default 60 s) */
    int64_t sasl_attempts;         /* failures before the stream is closed (default 3) */
    int64_t connections_per_ip;    /* simultaneous (default 32) */
    int64_t max_resources;         /* per account (default 10) */
    bool allow_plain;              /* SASL PLAIN over TLS (default true) */
    bool allow_plain_unencrypted;  /* ...and without TLS (default false) */
    int64_t scram_iterations;      /* for new passwords (default 4096, min 4096) */
};

struct st_listen_settings {
    struct st_strlist interfaces; /* default ["0.0.0.0", "::"] — "::" failures are tolerated */
    int64_t c2s_port;     /* STARTTLS port (default 5222; 0 disables) */
    int64_t c2s_tls_port; /* direct TLS, XEP-0368 (default 5223; 0 disables) */
    int64_t component_port; /* XEP-0114 external components (default 5347; 0 disables) */
    struct st_strlist component_interfaces; /* default ["127.0.0.1"] */
};

/* RFC 6121 §8.5.2.1.1: which of several equal highest-priority resources get a normal/chat
 * message addressed to the bare JID. */
enum st_bare_delivery { ST_BARE_ALL_HIGHEST = 0, ST_BARE_ONE_HIGHEST = 1 };

struct st_delivery_settings {
    int bare_messages; /* enum st_bare_delivery (default all_highest) */
};

/* Server-to-server federation (RFC 6120 §4–§6 for s2s, XEP-0220, XEP-0288, XEP-0368). */
struct st_s2s_settings {
    int64_t port;                      /* STARTTLS s2s port (default 5269; 0 disables) */
    int64_t tls_port;                  /* direct TLS s2s port, XEP-0368 (default 5270; 0 = off) */
    bool require_encryption;           /* refuse s2s streams without TLS (default true) */
    bool secure_auth;                  /* no dialback for unverifiable certificates */
    struct st_strlist insecure_domains; /* allowlist: dialback without a trusted certificate */
    const struct st_cfg_node *routes;  /* RAW map remote domain -> "host:port" (borrowed) */
    struct st_strlist ca_files;        /* extra trusted CA files (PEM) */
    uint64_t connect_timeout;          /* ms per connection attempt and for negotiation */
    uint64_t idle_timeout;             /* ms without traffic before a stream is closed */
    size_t max_stanza_size;            /* bytes (default 512 KiB) */
    int64_t queue_limit;               /* stanzas queued per stream while it is set up */
    char *dialback_secret;             /* XEP-0185 secret; NULL = random per start */
};

/* DNS resolution for federation (c-ares). */
struct st_dns_settings {
    struct st_strlist servers; /* "ip" or "ip:port"; empty = /etc/resolv.conf */
    uint64_t timeout;          /* ms per query attempt */
};

/* HTTP listener (src/http/): BOSH, WebSocket, host-meta; RFC 9112 HTTP/1.1. */
struct st_http_settings {
    int64_t port;                     /* plain HTTP (default 5280; 0 disables) */
    int64_t tls_port;                 /* HTTPS + XMPP direct TLS on one port (default 5443) */
    struct st_strlist interfaces;     /* default ["127.0.0.1"] */
    struct st_strlist cors_origins;   /* origins allowed cross-origin ("*" = any) */
    struct st_strlist trusted_proxies; /* IPs or CIDRs whose Forwarded/X-Forwarded-For count */
    bool proxy_is_secure;             /* plain HTTP from a trusted proxy counts as TLS */
    size_t max_header_size;           /* request line + headers, bytes (default 8 KiB) */
    size_t max_body_size;             /* request body, bytes (default 1 MiB) */
    int64_t max_requests_per_ip;      /* concurrent requests from one client address */
};

/* BOSH (XEP-0124, XEP-0206). Durations in ms. */
struct st_bosh_settings {
    uint64_t max_wait;       /* longest 'wait' granted (default 60 s) */
    int64_t max_hold;        /* largest 'hold' granted (default 1) */
    uint64_t max_inactivity; /* session dies after this long without a request (default 60 s) */
    int64_t max_requests;    /* simultaneous requests per session (default 2) */
    uint64_t polling;        /* shortest polling interval for hold=0 clients (default 2 s) */
    uint64_t max_pause;      /* longest 'pause' granted, XEP-0124 §10 'maxpause' (default 120 s) */
};

/* WebSocket (RFC 7395, RFC 6455). */
struct st_websocket_settings {
    struct st_strlist origins; /* allowed Origin values; empty = any */
    size_t max_frame_size;     /* largest message; larger closes with 1009 */
    uint64_t ping_interval;    /* ms of silence before we send a ping frame; 0 = never */
    uint64_t ping_timeout;     /* ms to wait for any frame after our ping before closing */
};

struct st_settings {
    char *file;          /* config path, or NULL for embedded defaults */
    struct st_cfg_doc doc; /* kept alive for RAW nodes (modules) */
    int log_level;       /* enum st_log_level */
    char *data_dir;      /* default "./starling-data" */
    int storage;         /* 0 = sqlite, 1 = memory */
    struct st_host_settings *hosts;
    size_t nhosts;       /* >= 1; default a single "localhost" */
    const struct st_cfg_node *hosts_node; /* RAW 'hosts' map as written (NULL = default);
                                             borrowed from doc; hosts[] is built from it */
    struct st_listen_settings listen;
    struct st_c2s_settings c2s;
    struct st_limits limits;
    struct st_delivery_settings delivery;
    struct st_s2s_settings s2s;
    struct st_dns_settings dns;
    struct st_http_settings http;
    struct st_bosh_settings bosh;
    struct st_websocket_settings websocket;
    const struct st_cfg_node *modules; /* RAW map name -> options map (NULL = defaults) */
    /* XEP-0114 components (xmpp/components.c): the RAW map is parsed into components[] at
     * load and then cleared */
    const struct st_cfg_node *components_node;
    struct st_component_settings *components;
    size_t ncomponents;
    struct st_strlist modules_disabled; /* names of default modules turned off */
};

/* Loads settings from path (NULL = embedded defaults: host "localhost", data in
 * ./starling-data, without reading any file). Host names are prepared (IDNA2008, RFC 7622
 * §3.2). Relative paths written in the file (data_dir, hosts.*.certificate, hosts.*.key) are
 * resolved against the directory of the file; the built-in data_dir default stays relative
 * to the working directory. Warns (st_log) when no client port is enabled. On error returns
 * ST_EINVAL with *err = "FILE:LINE: message" (new string; err may be NULL) and out is left
 * empty (st_settings_free is harmless). Blocking file I/O: call before the loop starts. */
int st_settings_load(const char *path, struct st_settings *out, char **err);
/* Frees everything in s and zeroes it (a second call is harmless). */
void st_settings_free(struct st_settings *s);
/* Returns the host entry for a prepared domain, or NULL. */
const struct st_host_settings *st_settings_host(const struct st_settings *s, const char *domain);
/* Resolved certificate/key paths for a host (new strings). */
char *st_settings_cert_path(const struct st_settings *s, const struct st_host_settings *h);
char *st_settings_key_path(const struct st_settings *s, const struct st_host_settings *h);
/* The option table of the top level (for docs generation). */
extern const struct st_option st_settings_options[];
/* The options of one entry under `hosts` (certificate, key), bound onto struct
 * st_host_settings. */
extern const struct st_option st_settings_host_options[];
/* Appends the whole Markdown configuration reference (docs/CONFIG.md: title, how to write
 * the file, then one table per section) to out. Returns 0 or ST_ELIMIT when out is full. */
struct st_buf;
int st_settings_document(struct st_buf *out);

#endif
