/* The registry of authenticated external component streams (XEP-0114):
 * which component domains can take stanzas right now, the identity each
 * announced in disco#info, and the server's disco#items listing of them
 * (XEP-0030 §4). The transport (src/transport/component.c) links a stream
 * after its handshake and unlinks it when the stream ends. */
#include <string.h>

#include "base/mem.h"
#include "starling/module.h"
#include "xml/node.h"
#include "xmpp/components.h"
#include "xmpp/server.h"

struct st_component_registry {
    struct st_map links; /* domain -> struct st_component_link* */
    unsigned long generation;
};

static struct st_component_registry *registry(struct st_server *srv, bool create)
{
    if (!srv->components && create) {
        srv->components = ST_NEW(struct st_component_registry);
        st_map_init(&srv->components->links);
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
