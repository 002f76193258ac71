/* External components (XEP-0114) as the xmpp layer sees them: the
 * `components` section of the configuration (domain -> secret, XEP-0356
 * privileges, XEP-0355 delegated namespaces), the routing rule that a
 * component's domain and every subdomain of it belong to that component,
 * and the registry of components whose stream is authenticated right now
 * (the transport in src/transport/component.c links and unlinks them). */
#ifndef ST_XMPP_COMPONENTS_H
#define ST_XMPP_COMPONENTS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/config.h"

struct st_settings;
struct st_server;
struct st_xml;
struct st_buf;

/* XEP-0356 §3 permission values; the order is the order of the config enums. */
enum st_priv_roster { ST_PRIV_ROSTER_NONE, ST_PRIV_ROSTER_GET, ST_PRIV_ROSTER_SET,
                      ST_PRIV_ROSTER_BOTH };
enum st_priv_message { ST_PRIV_MESSAGE_NONE, ST_PRIV_MESSAGE_OUTGOING };
enum st_priv_presence { ST_PRIV_PRESENCE_NONE, ST_PRIV_PRESENCE_MANAGED, ST_PRIV_PRESENCE_ROSTER };

struct st_component_privileges {
    int roster;   /* enum st_priv_roster */
    int message;  /* enum st_priv_message */
    int presence; /* enum st_priv_presence */
};

/* One entry of `components`. */
struct st_component_settings {
    char *domain; /* prepared (IDNA2008, lowercase) */
    char *secret; /* the XEP-0114 shared secret (never logged) */
    struct st_component_privileges privileges;
    struct st_strlist delegations; /* XEP-0355 namespaces delegated to the component */
    struct st_strlist bare_delegations; /* XEP-0355 namespaces of IQs to users' own bare JIDs */
    unsigned line;
};

/* The options of one `components.<domain>` entry (for binding and the reference). */
extern const struct st_option st_component_options[];

/* Parses s->components_node (the RAW `components` map) into s->components, checking each
 * domain (a valid domain, not one of the hosts, no host below it) and that a secret is set.
 * Clears s->components_node afterwards (it points into the document). Called by
 * st_settings_load after the hosts are loaded. Returns 0 or ST_EINVAL with *err =
 * "FILE:LINE: message". */
int st_components_load(struct st_settings *s, const char *file, char **err);
/* Frees s->components (harmless when empty). */
void st_components_free(struct st_settings *s);
/* The component entry whose domain is domain or a parent domain of it (the longest such),
 * or NULL. Borrowed from s. */
const struct st_component_settings *st_settings_component(const struct st_settings *s,
                                                          const char *domain);
/* True when d is sub or a parent domain of sub ("b.c" covers "a.b.c" and "b.c"). */
bool st_domain_covers(const char *d, const char *sub);
/* Appends the `components.<domain>` reference section to out. Returns 0 or ST_ELIMIT. */
int st_components_document(struct st_buf *out);

/* ---- registry of connected components (component_registry.c; loop thread) ---- */

/* How the registry reaches a connected component's stream. */
struct st_component_link {
    char *domain;                 /* the configured domain (owned by the registry) */
    int (*send)(void *ud, struct st_xml *stanza); /* queue a stanza (borrowed) */
    void *ud;
    struct st_xml *info;          /* the component's disco#info <query/> (a reference) or NULL */
    unsigned long generation;     /* distinguishes successive connections of one domain */
};

/* Registers the authenticated stream of the component domain. Returns the new link (owned by
 * the registry), or NULL when the domain is linked already (XEP-0114: the second stream is
 * refused with <conflict/>). */
struct st_component_link *st_component_link(struct st_server *srv, const char *domain,
                                            int (*send)(void *ud, struct st_xml *stanza),
                                            void *ud);
/* Removes the link of domain (idempotent). */
void st_component_unlink(struct st_server *srv, const char *domain);
/* The link of the configured component serving domain (domain or a parent), or NULL. */
struct st_component_link *st_component_link_find(struct st_server *srv, const char *domain);
/* Frees the registry (all links must be gone; shutdown). */
void st_components_registry_free(struct st_server *srv);
/* XEP-0355 disco nesting: records (copies) the disco#info <query/> the connected delegate
 * domain answered for the node urn:xmpp:delegation:2::ns (nothing when domain is not linked).
 * Forgotten when domain is unlinked. Borrows all. */
void st_component_nested_set(struct st_server *srv, const char *domain, const char *ns,
                             const struct st_xml *query);
/* The recorded <query/> for ns, or NULL. Borrowed (valid until the next set for ns). */
const struct st_xml *st_component_nested_get(struct st_server *srv, const char *ns);
/* Appends to query (the server's disco#info <query/>) every recorded delegate feature not
 * already listed. Called by the disco module. */
void st_disco_info_components(struct st_server *srv, struct st_xml *query);
/* True when this server answers for domain over federation: a virtual host, or a configured
 * component's domain or subdomain (XEP-0114: stanzas for it arriving over s2s are routed to
 * the component, and the component's stanzas to remote domains leave through s2s). */
bool st_domain_served(struct st_server *srv, const char *domain);

#endif
