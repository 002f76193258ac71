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
    int64_t scram_iterations;      /* for new passwords (default 4096, min 4096) */
};

struct st_listen_settings {
    struct st_strlist interfaces; /* default ["0.0.0.0", "::"] — "::" failures are tolerated */
    int64_t c2s_port;     /* STARTTLS port (default 5222; 0 disables) */
    int64_t c2s_tls_port; /* direct TLS, XEP-0368 (default 5223; 0 disables) */
};

struct st_settings {
    char *file;          /* config path, or NULL for embedded defaults */
    struct st_cfg_doc doc; /* kept alive for RAW nodes (modules) */
    int log_level;       /* enum st_log_level */
    char *data_dir;      /* default "./starling-data" */
    int storage;         /* 0 = sqlite, 1 = memory */
    struct st_host_settings *hosts;
    size_t nhosts;       /* >= 1; default a single "localhost" */
    struct st_listen_settings listen;
    struct st_c2s_settings c2s;
    struct st_limits limits;
    const struct st_cfg_node *modules; /* RAW map name -> options map (NULL = defaults) */
    struct st_strlist modules_disabled; /* names of default modules turned off */
};

/* Loads settings from path (NULL = embedded defaults: host "localhost", data in
 * ./starling-data). On error returns ST_EINVAL with *err = "FILE:LINE: message". */
int st_settings_load(const char *path, struct st_settings *out, char **err);
/* Frees everything in s. */
void st_settings_free(struct st_settings *s);
/* Returns the host entry for a prepared domain, or NULL. */
const struct st_host_settings *st_settings_host(const struct st_settings *s, const char *domain);
/* Resolved certificate/key paths for a host (new strings). */
char *st_settings_cert_path(const struct st_settings *s, const struct st_host_settings *h);
char *st_settings_key_path(const struct st_settings *s, const struct st_host_settings *h);
/* The option table of the top level (for docs generation). */
extern const struct st_option st_settings_options[];

#endif
