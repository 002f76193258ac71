/* XEP-0030 Service Discovery for the server and for accounts: identities
 * and features come from what modules registered (st_module_feature,
 * st_module_identity). The server answers disco for an account on the
 * account's behalf (identity account/registered, XEP-0030 §3.1). */
#include <string.h>

#include "starling/module.h"

#define NS_INFO "http://jabber.org/protocol/disco#info"
#define NS_ITEMS "http://jabber.org/protocol/disco#items"

static void add_identity(struct st_xml *q, const char *cat, const char *type, const char *name)
{
    struct st_xml *i = st_xml_add_child(q, "identity", NULL);
    st_xml_set_attr(i, "category", cat);
    st_xml_set_attr(i, "type", type);
    if (name)
        st_xml_set_attr(i, "name", name);
}

static void identity_cb(const char *cat, const char *type, const char *name, void *ud)
{
    add_identity(ud, cat, type, name);
}

static void add_feature(struct st_xml *q, const char *var)
{
    struct st_xml *f = st_xml_add_child(q, "feature", NULL);
    st_xml_set_attr(f, "var", var);
}

static int info_reply(struct st_event *ev, bool account)
{
    struct st_xml *query = st_xml_first_element(ev->stanza);
    const char *node = st_xml_attr(query, "node");
    if (node)
        return st_reply_error(ev, "cancel", "item-not-found", NULL);
    struct st_server *srv = ev->srv;
    struct st_xml *r = st_iq_result(ev->stanza);
    struct st_xml *q = st_xml_add_child(r, "query", NS_INFO);
    if (account) {
        add_identity(q, "account", "registered", NULL);
    } else {
        add_identity(q, "server", "im", "Starling");
        st_disco_foreach_identity(srv, identity_cb, q);
    }
    add_feature(q, NS_INFO);
    add_feature(q, NS_ITEMS);
    const struct st_strlist *l = st_disco_features(srv, account);
    for (size_t i = 0; i < l->n; i++)
        add_feature(q, l->items[i]);
    if (!account)
        st_disco_info_components(srv, q); /* XEP-0355 nesting: delegates' features */
    return st_reply(ev, r);
}

static int on_host_info(struct st_event *ev, void *ud)
{
    (void)ud;
    return info_reply(ev, false);
}

static int on_account_info(struct st_event *ev, void *ud)
{
    (void)ud;
    return info_reply(ev, true);
}

static int on_items(struct st_event *ev, void *ud)
{
    (void)ud;
    struct st_xml *query = st_xml_first_element(ev->stanza);
    if (st_xml_attr(query, "node"))
        return st_reply_error(ev, "cancel", "item-not-found", NULL);
    struct st_xml *r = st_iq_result(ev->stanza);
    struct st_xml *q = st_xml_add_child(r, "query", NS_ITEMS);
    if (!ev->to->local)
        st_disco_items(ev->srv, ev->to->domain, q); /* connected components (XEP-0114) */
    return st_reply(ev, r);
}

static int disco_load(struct st_module *m, const void *options)
{
    (void)options;
    st_module_hook(m, "iq-get/host/" NS_INFO ":query", on_host_info, NULL, 0);
    st_module_hook(m, "iq-get/bare/" NS_INFO ":query", on_account_info, NULL, 0);
    st_module_hook(m, "iq-get/host/" NS_ITEMS ":query", on_items, NULL, 0);
    st_module_hook(m, "iq-get/bare/" NS_ITEMS ":query", on_items, NULL, 0);
    return 0;
}

const struct st_module_def st_mod_disco = {
    .name = "disco",
    .description = "XEP-0030 Service Discovery for the server and accounts",
    .default_on = true,
    .load = disco_load,
};
