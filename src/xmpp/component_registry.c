/* The registry of authenticated external component streams (XEP-0114):
 * which component domains can take stanzas right now, the identity each
 * announced in disco#info, and the server's disco#items listing of them
 * (XEP-0030 §4), and the features delegates give for their delegated
 * namespaces, nested into the server's disco#info (XEP-0355 "Discovering
 * Support"). The transport (src/transport/component.c) links a stream
 * after its handshake and unlinks it when the stream ends. */
#include <string.h>

#include "base/mem.h"
#include "starling/module.h"
#include "xml/node.h"
#include "xmpp/components.h"
#include "xmpp/server.h"

struct nested {
    char *owner;         /* the delegate's domain */
    struct st_xml *info; /* its disco#info <query/> for the delegation node */
};

static void nested_free(struct nested *n)
{
    if (!n)
        return;
    st_free(n->owner);
    st_xml_unref(n->info);
    st_free(n);
}

struct st_component_registry {
    struct st_map links; /* domain -> struct st_component_link* */
    struct st_map nested; /* delegated namespace -> struct nested* */
    unsigned long generation;
};

static struct st_component_registry *registry(struct st_server *srv, bool create)
{
    if (!srv->components && create) {
        srv->components = ST_NEW(struct st_component_registry);
        st_map_init(&srv->components->links);
        st_map_init(&srv->components->nested);
    }
    return srv->components;
}

struct st_component_link *st_component_link(struct st_server *srv, const char *domain,
                                            int (*send)(void *ud, struct st_xml *stanza),
                                            void *ud)
{
    struct st_component_registry *r = registry(srv, true);
    if (st_map_get(&r->links, domain))
        return NULL;
    struct st_component_link *l = ST_NEW(struct st_component_link);
    l->domain = st_strdup(domain);
    l->send = send;
    l->ud = ud;
    l->generation = ++r->generation;
    st_map_set(&r->links, l->domain, l);
    return l;
}

void st_component_unlink(struct st_server *srv, const char *domain)
{
    struct st_component_registry *r = registry(srv, false);
    struct st_component_link *l = r ? st_map_del(&r->links, domain) : NULL;
    if (!l)
        return;
    /* Its nested disco features go with it (XEP-0355: only a connected delegate's). */
    for (struct st_map_entry *e = st_map_first(&r->nested); e;) {
        struct nested *n = e->value;
        struct st_map_entry *next = st_map_next(&r->nested, e);
        if (strcmp(n->owner, domain) == 0)
            nested_free(st_map_del(&r->nested, e->key));
        e = next;
    }
    st_xml_unref(l->info);
    st_free(l->domain);
    st_free(l);
}

struct st_component_link *st_component_link_find(struct st_server *srv, const char *domain)
{
    const struct st_component_settings *cs = st_settings_component(&srv->settings, domain);
    struct st_component_registry *r = registry(srv, false);
    return cs && r ? st_map_get(&r->links, cs->domain) : NULL;
}

void st_components_registry_free(struct st_server *srv)
{
    struct st_component_registry *r = registry(srv, false);
    if (!r)
        return;
    struct st_map_entry *e;
    while ((e = st_map_first(&r->links)) != NULL)
        st_component_unlink(srv, e->key);
    st_map_free(&r->links);
    while ((e = st_map_first(&r->nested)) != NULL)
        nested_free(st_map_del(&r->nested, e->key));
    st_map_free(&r->nested);
    st_free(r);
    srv->components = NULL;
}

/* ---- the module API (include/starling/module.h) ---- */

const struct st_component_settings *st_component_find(struct st_server *srv, const char *domain)
{
    const struct st_component_settings *cs = st_settings_component(&srv->settings, domain);
    return cs && strcmp(cs->domain, domain) == 0 ? cs : NULL;
}

bool st_component_connected(struct st_server *srv, const char *domain)
{
    return st_component_link_find(srv, domain) != NULL;
}

/* The host a component is listed under: the deepest virtual host it is a subdomain of. */
static const char *parent_host(struct st_server *srv, const char *domain)
{
    const char *best = NULL;
    for (size_t i = 0; i < srv->settings.nhosts; i++) {
        const char *h = srv->settings.hosts[i].name;
        if (st_domain_covers(h, domain) && (!best || strlen(h) > strlen(best)))
            best = h;
    }
    return best;
}

const char *st_component_host(struct st_server *srv, const char *domain)
{
    const char *h = parent_host(srv, domain);
    return h ? h : srv->settings.hosts[0].name;
}

void st_disco_items(struct st_server *srv, const char *host, struct st_xml *query)
{
    struct st_component_registry *r = registry(srv, false);
    if (!r)
        return;
    for (struct st_map_entry *e = st_map_first(&r->links); e; e = st_map_next(&r->links, e)) {
        struct st_component_link *l = e->value;
        /* Listed under its parent host; one below no host is listed under every host. */
        const char *ph = parent_host(srv, l->domain);
        if (ph && strcmp(ph, host) != 0)
            continue;
        struct st_xml *item = st_xml_add_child(query, "item", NULL);
        st_xml_set_attr(item, "jid", l->domain);
        struct st_xml *id = l->info ? st_xml_child(l->info, "identity", NULL) : NULL;
        const char *name = id ? st_xml_attr(id, "name") : NULL;
        if (name)
            st_xml_set_attr(item, "name", name);
    }
}

void st_component_nested_set(struct st_server *srv, const char *domain, const char *ns,
                             const struct st_xml *query)
{
    struct st_component_registry *r = registry(srv, true);
    if (!st_map_get(&r->links, domain))
        return; /* gone meanwhile */
    nested_free(st_map_del(&r->nested, ns));
    struct nested *n = ST_NEW(struct nested);
    n->owner = st_strdup(domain);
    n->info = st_xml_copy(query);
    st_map_set(&r->nested, ns, n);
}

const struct st_xml *st_component_nested_get(struct st_server *srv, const char *ns)
{
    struct st_component_registry *r = registry(srv, false);
    struct nested *n = r ? st_map_get(&r->nested, ns) : NULL;
    return n ? n->info : NULL;
}

void st_disco_info_components(struct st_server *srv, struct st_xml *query)
{
    struct st_component_registry *r = registry(srv, false);
    if (!r)
        return;
    for (struct st_map_entry *e = st_map_first(&r->nested); e; e = st_map_next(&r->nested, e)) {
        for (const struct st_xml *f = st_xml_first_element(((struct nested *)e->value)->info); f;
             f = st_xml_next_element(f)) {
            const char *var = strcmp(f->name, "feature") == 0 ? st_xml_attr(f, "var") : NULL;
            bool dup = false;
            for (const struct st_xml *g = st_xml_first_element(query); var && g && !dup;
                 g = st_xml_next_element(g))
                dup = strcmp(g->name, "feature") == 0 && st_xml_attr(g, "var") &&
                      strcmp(st_xml_attr(g, "var"), var) == 0;
            if (var && !dup)
                st_xml_set_attr(st_xml_add_child(query, "feature", NULL), "var", var);
        }
    }
}

bool st_domain_served(struct st_server *srv, const char *domain)
{
    return domain && (st_host_is_local(srv, domain) ||
                      st_settings_component(&srv->settings, domain) != NULL);
}
