/* The module API: the one header a module in src/mod/ includes.
 *
 * A module is a `struct st_module_def` with a name, an option table and a
 * load function. At load it receives a `struct st_module` context through
 * which it registers event handlers (hooks), stream features, disco
 * identities and features, and timers; everything registered through the
 * context is removed automatically when the module unloads. Events are
 * named after the delivery rules of RFC 6120 §10 / RFC 6121 §8, as in
 * Prosody:
 *
 *   "iq-get/host/<ns>:<name>"   IQ get to the server itself, by payload
 *   "iq-set/bare/<ns>:<name>"   IQ set to an account (handled on its behalf)
 *   "message/full", "message/bare", "presence/bare", "iq/full" ...
 *   "session-bound", "session-closed", "stream-features"
 *
 * A handler returns ST_EV_HANDLED to stop the event or ST_EV_PASS to let
 * lower-priority handlers and then the core's default rule run. Handlers
 * run on the loop thread and must not block. */
#ifndef STARLING_MODULE_H
#define STARLING_MODULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/config.h"
#include "base/err.h"
#include "base/map.h"
#include "base/log.h"
#include "base/mem.h"
#include "storage/storage.h"
#include "xml/node.h"
#include "xmpp/components.h"
#include "xmpp/jid.h"

struct st_server;
struct st_session;
struct st_module;

#define ST_EV_PASS 0
#define ST_EV_HANDLED 1

/* What a handler receives. Everything is borrowed for the duration of the call. */
struct st_event {
    struct st_server *srv;
    const char *name;
    struct st_session *origin; /* the session the stanza came from, or NULL (server-generated) */
    struct st_xml *stanza;     /* the stanza (NULL for non-stanza events) */
    const struct st_jid *from; /* prepared addresses of the stanza (NULL for non-stanza events) */
    const struct st_jid *to;
    const char *host;          /* the local virtual host concerned */
    struct st_xml *features;   /* "stream-features": element to append features to */
};

typedef int (*st_event_handler)(struct st_event *ev, void *ud);

/* ---- module definition ---- */
struct st_module_def {
    const char *name;                /* "ping"; options live under modules.<name> */
    const char *description;         /* one line, for docs */
    const struct st_option *options; /* table or NULL */
    size_t options_size;             /* sizeof the struct the table binds into */
    bool default_on;                 /* loaded unless listed in modules_disabled */
    /* Called once at start with the bound options (borrowed; valid until unload). Returns 0
     * or an ST_E* error (the server refuses to start). */
    int (*load)(struct st_module *m, const void *options);
    /* Optional: called before the module's registrations are removed. */
    void (*unload)(struct st_module *m);
};

/* The module's server (borrowed). */
struct st_server *st_module_server(struct st_module *m);
/* Per-module private data slot. */
void st_module_set_data(struct st_module *m, void *data);
void *st_module_data(struct st_module *m);

/* Registers handler for event name with a priority (higher runs first; 0 is normal). */
int st_module_hook(struct st_module *m, const char *event, st_event_handler handler, void *ud,
                   int priority);
/* Adds a disco#info feature var for the server (and, with account=true, for account JIDs). */
void st_module_feature(struct st_module *m, const char *var, bool account);
/* Adds a disco#info identity for the server. */
void st_module_identity(struct st_module *m, const char *category, const char *type,
                        const char *name);
/* Starts a repeating timer (first run after interval_ms); removed at unload. */
int st_module_timer(struct st_module *m, uint64_t interval_ms, void (*cb)(struct st_module *m));
/* Returns the loaded module named name (borrowed), or NULL when it is not loaded. Lets a module
 * use the interface another module exports in its own src/mod/ header (presence uses the
 * roster's cache); modules load in the order of the built-in table and unload in reverse. */
struct st_module *st_module_find(struct st_server *srv, const char *name);

/* ---- HTTP routes (src/http/) ---- */
struct st_http_request;
/* Called on the loop for each request to a registered path; must answer it (now or later)
 * with st_http_respond. req is valid until answered. */
typedef void (*st_http_handler)(struct st_http_request *req, void *ud);
/* Registers handler for requests whose path equals path ("/.well-known/host-meta"), or, when
 * path ends in '/', starts with it. OPTIONS preflights and CORS headers are handled by the
 * HTTP layer. Routes live until the HTTP layer stops. Returns 0 or ST_EEXIST. */
int st_module_http_route(struct st_module *m, const char *path, st_http_handler handler,
                         void *ud);
/* Request accessors (borrowed strings, valid while req is): the method ("GET"), the path
 * without query, the query or NULL, a header by lower-case name or NULL, the Host header's
 * name without port (lower-cased) or NULL, and whether it arrived over TLS (or through a
 * trusted TLS-terminating proxy). */
const char *st_http_method(const struct st_http_request *req);
const char *st_http_path(const struct st_http_request *req);
const char *st_http_query(const struct st_http_request *req);
const char *st_http_header(const struct st_http_request *req, const char *name);
const char *st_http_host(struct st_http_request *req);
bool st_http_secure(const struct st_http_request *req);
/* Answers req (and frees it): status line, Content-Type (NULL = none), Content-Length,
 * CORS headers when the Origin is allowed, extra_headers (NULL or complete "Name: value\r\n"
 * lines), then len bytes of body (borrowed). */
void st_http_respond(struct st_http_request *req, int status, const char *content_type,
                     const char *extra_headers, const void *body, size_t len);

/* ---- sending and replying ---- */
/* Routes a server-generated stanza (borrows it: the caller keeps its reference). 'from' must be
 * set. Returns 0 or an ST_E* error. */
int st_send(struct st_server *srv, struct st_xml *stanza);
/* Returns a new <iq type='result'/> answering iq (to/from swapped, same id). */
struct st_xml *st_iq_result(const struct st_xml *iq);
/* Returns a new error reply to stanza (RFC 6120 §8.3): to/from swapped, same id,
 * <error type='type'><condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>[<text/>]</error>.
 * type: "cancel", "continue", "modify", "auth", "wait". */
struct st_xml *st_stanza_error(const struct st_xml *stanza, const char *type, const char *condition,
                               const char *text);
/* Convenience: answers ev->stanza with an error and returns ST_EV_HANDLED. Never answers
 * an error or result (RFC 6120 §8.3.1). */
int st_reply_error(struct st_event *ev, const char *type, const char *condition, const char *text);
/* Convenience: sends reply (takes ownership) and returns ST_EV_HANDLED. */
int st_reply(struct st_event *ev, struct st_xml *reply);
/* The type of a message (RFC 6121 §5.2.2): "chat", "groupchat", "headline", "error", or
 * "normal" for an absent or unknown type. Returns a static or borrowed string. */
const char *st_message_type(const struct st_xml *message);

/* Sends an IQ get/set from the server and calls cb with the reply (or NULL on timeout /
 * when the target went away). iq's 'id' is assigned if missing. Borrows iq. */
typedef void (*st_iq_cb)(struct st_server *srv, const struct st_xml *reply, void *ud);
int st_iq_send(struct st_server *srv, struct st_xml *iq, uint64_t timeout_ms, st_iq_cb cb,
               void *ud);

/* ---- sessions ---- */
/* The session's full JID (borrowed). */
const struct st_jid *st_session_jid(const struct st_session *s);
/* True once a resource is bound. */
bool st_session_bound(const struct st_session *s);
/* Milliseconds since the session last received anything. */
uint64_t st_session_idle_ms(const struct st_session *s);
/* Closes a session with a stream error condition (NULL = plain close) and text. */
void st_session_close(struct st_session *s, const char *condition, const char *text);
/* Iterates an account's bound sessions: first for (host, bare JID), then next; NULL ends. */
struct st_session *st_session_first(struct st_server *srv, const char *host, const char *bare);
struct st_session *st_session_next(const struct st_session *s);
/* Presence state (RFC 6121 §4): available after initial presence until unavailable. */
bool st_session_available(const struct st_session *s);
int st_session_priority(const struct st_session *s);
/* The last available presence the session broadcast (borrowed), or NULL. */
struct st_xml *st_session_presence(const struct st_session *s);
/* Records a broadcast presence (availability, priority, the stanza itself). Fires
 * "session-available" when the session becomes available and "session-unavailable" when it
 * stops being available (origin = s). Borrows presence. */
void st_session_set_presence(struct st_session *s, struct st_xml *presence);
/* "Interested" resources requested the roster (RFC 6121 §2.1.6) and get roster pushes. */
bool st_session_interested(const struct st_session *s);
void st_session_set_interested(struct st_session *s, bool interested);
/* The session's virtual host name (borrowed). */
const char *st_session_host(const struct st_session *s);
/* Queues stanza (borrowed) for the session's client. Returns 0 once it is queued, or an error
 * (ST_ECLOSED when the session is closing; the transport closes a session whose output queue
 * overflows). */
int st_session_send(struct st_session *s, struct st_xml *stanza);
/* Returns the bound session with this full JID, or NULL. */
struct st_session *st_session_find_full(struct st_server *srv, const struct st_jid *jid);
/* Delivers stanza straight to the session's client: no routing and no events (for modules
 * that have already applied the delivery rules, e.g. presence to each available resource).
 * Borrows stanza. Returns 0 or an ST_E* error (e.g. ST_ECLOSED when the session is closing). */
int st_session_deliver(struct st_session *s, struct st_xml *stanza);
/* Calls fn for every bound session of every host. */
void st_sessions_foreach(struct st_server *srv, void (*fn)(struct st_session *s, void *ud),
                         void *ud);

/* ---- storage and accounts ---- */
/* The server's storage (see storage/storage.h for the keyval/map/archive contract). */
struct st_storage *st_server_storage(struct st_server *srv);
/* Asynchronously checks whether the account user@host exists; cb runs on the loop with
 * exists = 1, 0, or a negative ST_E* error. Returns 0 or an error (cb not called). */
int st_account_exists(struct st_server *srv, const char *host, const char *user,
                      void (*cb)(void *ud, int exists), void *ud);

/* ---- hosts ---- */
/* True when domain (prepared) is one of our virtual hosts. */
bool st_host_is_local(struct st_server *srv, const char *domain);

/* ---- service discovery registrations (read side, for the disco module) ---- */
/* The feature vars registered for the server (account=false) or for accounts. Borrowed. */
const struct st_strlist *st_disco_features(struct st_server *srv, bool account);
/* Calls fn for each identity modules registered for the server. */
void st_disco_foreach_identity(struct st_server *srv,
                               void (*fn)(const char *category, const char *type, const char *name,
                                          void *ud),
                               void *ud);

/* ---- external components (XEP-0114) ----
 * A configured component serves its domain and every subdomain; stanzas to them fire
 * "<kind>/component". "component-connected" / "component-disconnected" fire (ev->host = the
 * component's domain, origin NULL) when its stream authenticates / goes away. */
/* The configured component whose domain is exactly domain, or NULL. Borrowed (valid until the
 * configuration is reloaded: look it up again in each callback). */
const struct st_component_settings *st_component_find(struct st_server *srv, const char *domain);
/* True while the component serving domain (domain or a parent) has an authenticated stream. */
bool st_component_connected(struct st_server *srv, const char *domain);
/* The virtual host a component belongs to: the deepest host its domain is below, else the
 * first host. Borrowed. Used as the 'from' of server-generated stanzas to the component. */
const char *st_component_host(struct st_server *srv, const char *domain);
/* Appends <item jid='component' name='...'/> to query (a disco#items <query/>) for each
 * connected component listed under host (XEP-0030 §4; the name comes from the identity the
 * component announced in disco#info when it connected). */
void st_disco_items(struct st_server *srv, const char *host, struct st_xml *query);

/* Parses one serialised stanza (as written by st_xml_serialize with parent_ns ST_NS_CLIENT)
 * back into a tree, for modules that store stanzas (e.g. pending subscription requests).
 * Returns a new reference, or NULL when data is not exactly one well-formed element. */
struct st_xml *st_stanza_parse(const char *data, size_t len);

/* The loop time in milliseconds. */
uint64_t st_now_ms(struct st_server *srv);

#endif
