/* The server context: everything one loop owns — settings, virtual hosts,
 * sessions, the event registry, modules, storage, TLS and listeners. No
 * global mutable state lives outside it (DESIGN.md: shards later). */
#ifndef ST_XMPP_SERVER_H
#define ST_XMPP_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "base/map.h"
#include "xmpp/events.h"
#include "xmpp/settings.h"

struct st_tls;
struct st_storage;
struct st_listener;
struct st_module;
struct st_session;
struct st_s2s;
struct st_http;
struct st_component_registry;
struct st_component_mgr;

/* A local virtual host. */
struct st_host {
    char *name;
    struct st_map accounts; /* bare JID -> struct st_account_sessions* (online users) */
};

/* The bound sessions of one account (bare JID). */
struct st_account_sessions {
    struct st_session *first; /* linked through st_session.next_resource */
    unsigned count;
};

struct st_disco_identity {
    char *category, *type, *name;
};

struct st_server {
    uv_loop_t *loop;
    struct st_settings settings;
    char *config_path;          /* NULL = embedded defaults */
    struct st_map hosts;        /* name -> struct st_host* */
    struct st_events events;
    struct st_storage *storage;
    struct st_tls *tls;
    struct st_listener *listeners[16];
    unsigned nlisteners;
    struct st_module *modules;  /* linked list */
    struct st_s2s *s2s;         /* federation (transport/s2s.c), NULL when stopped */
    struct st_http *http;       /* HTTP layer (http/http_server.c), NULL when stopped */
    struct st_component_registry *components; /* xmpp/components.c: linked components */
    struct st_component_mgr *component_mgr;   /* transport/component.c: listeners, streams */
    struct st_map pending_iq;   /* id -> pending server IQ */
    void *router_state;         /* router.c: account checks in flight */
    struct st_map sessions_all; /* session id -> session (unbound ones too) */
    /* disco registrations from modules */
    struct st_strlist features_host, features_account;
    struct st_disco_identity *identities;
    size_t nidentities;
    unsigned char dummy_secret[32]; /* for unknown-user SCRAM salts */
    uint64_t iq_counter;
    bool shutting_down;
    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t shutdown_timer;
    uv_timer_t idle_timer;
    uv_timer_t housekeeping;    /* once a second: heap trimming after sessions leave */
    size_t sessions_peak;       /* streams at the last trim, or the most since (updated as
                                   streams open: a storm between two ticks still counts) */
    size_t sessions_last;       /* streams at the last housekeeping tick */
    unsigned trim_waited;       /* ticks a due trim waited for departures to end */
    bool trim_pending;          /* storage is releasing its cache; the trim follows */
    struct st_buf scratch;      /* serialisation buffer reused for every outgoing stanza */
    int exit_code;
};

/* Returns the host record for a prepared domain, or NULL. */
struct st_host *st_server_host(struct st_server *srv, const char *domain);

/* Starts a graceful shutdown: listeners close, every stream gets <system-shutdown/>, and
 * the loop ends once all connections are gone (at most a few seconds). Loop thread. */
void st_server_shutdown(struct st_server *srv);
/* Re-reads settings and certificates (SIGHUP) without dropping connections; on any error
 * the running configuration stays. Loop thread. */
void st_server_reload(struct st_server *srv);

/* Runs the server until shutdown with settings already loaded into srv->settings. Returns the
 * process exit code. */
int st_server_run(const char *config_path);

#endif
