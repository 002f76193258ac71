/* External component settings (XEP-0114 §3, XEP-0356 §3, XEP-0355): the
 * `components` configuration section and the routing rule that a
 * component serves its domain and all subdomains of it (so
 * `#chan%irc.example@irc.example.org` and `x.gw.example.org` reach the
 * component of `irc.example.org` / `gw.example.org`). The registry of
 * connected components is in component_registry.c. */
#include "xmpp/components.h"

#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"
#include "xmpp/jid.h"
#include "xmpp/settings.h"

static const char *const roster_perms[] = {"none", "get", "set", "both", NULL};
static const char *const message_perms[] = {"none", "outgoing", NULL};
static const char *const presence_perms[] = {"none", "managed_entity", "roster", NULL};

static const struct st_option privilege_options[] = {
    {"roster", ST_OPT_ENUM, offsetof(struct st_component_privileges, roster), "none", 0, 0,
     roster_perms, NULL, "XEP-0356 roster access on behalf of users: none, get, set or both"},
    {"message", ST_OPT_ENUM, offsetof(struct st_component_privileges, message), "none", 0, 0,
     message_perms, NULL, "XEP-0356: outgoing lets the component send messages as local users"},
    {"presence", ST_OPT_ENUM, offsetof(struct st_component_privileges, presence), "none", 0, 0,
     presence_perms, NULL,
     "XEP-0356: managed_entity forwards local users' presence to the component; roster also "
     "the presence of their contacts"},
    ST_OPT_END,
};

const struct st_option st_component_options[] = {
    {"secret", ST_OPT_STRING, offsetof(struct st_component_settings, secret), NULL, 0, 0, NULL,
     NULL, "shared secret of the XEP-0114 handshake (required)"},
    {"privileges", ST_OPT_SECTION, offsetof(struct st_component_settings, privileges), NULL, 0,
     0, NULL, privilege_options, "XEP-0356 privileged entity permissions"},
    {"delegations", ST_OPT_STRLIST, offsetof(struct st_component_settings, delegations), NULL,
     0, 0, NULL, NULL,
     "XEP-0355: namespaces whose IQs to the server are handled by the component"},
    {"bare_delegations", ST_OPT_STRLIST,
     offsetof(struct st_component_settings, bare_delegations), NULL, 0, 0, NULL, NULL,
     "XEP-0355: namespaces whose IQs a user sends to their own bare JID (e.g. PEP) are "
     "handled by the component"},
    ST_OPT_END,
};

bool st_domain_covers(const char *d, const char *sub)
{
    size_t dl = strlen(d), sl = strlen(sub);
    if (sl == dl)
        return strcmp(d, sub) == 0;
    return sl > dl && sub[sl - dl - 1] == '.' && strcmp(sub + sl - dl, d) == 0;
}

void st_components_free(struct st_settings *s)
{
    for (size_t i = 0; i < s->ncomponents; i++) {
        st_opt_free(st_component_options, &s->components[i]);
        st_free(s->components[i].domain);
    }
    st_free(s->components);
    s->components = NULL;
    s->ncomponents = 0;
}

int st_components_load(struct st_settings *s, const char *file, char **err)
{
    const struct st_cfg_node *cn = s->components_node;
    s->components_node = NULL; /* points into the document, which a reload frees */
    if (!cn || cn->type == ST_CFG_NULL)
        return 0;
    if (cn->type != ST_CFG_MAP)
        return st_cfg_fail(err, file, cn->line,
                           "'components' must be a map of component domains to settings");
    size_t n = 0;
    for (const struct st_cfg_node *c = cn->child; c; c = c->next)
        n++;
    s->components = st_calloc(n ? n : 1, sizeof *s->components);
    for (const struct st_cfg_node *c = cn->child; c; c = c->next) {
        char *name = NULL;
        if (st_jid_prep_domain(c->key, strlen(c->key), &name) != 0 || !name)
            return st_cfg_fail(err, file, c->line, "invalid component domain '%s'", c->key);
        const char *clash = NULL;
        for (size_t i = 0; i < s->ncomponents && !clash; i++)
            if (strcmp(s->components[i].domain, name) == 0)
                clash = "is declared twice";
        for (size_t i = 0; i < s->nhosts && !clash; i++)
            if (st_domain_covers(name, s->hosts[i].name))
                clash = strcmp(name, s->hosts[i].name) == 0
                            ? "is also a virtual host"
                            : "has a virtual host below it (the host would be unreachable)";
        if (clash) {
            int rc = st_cfg_fail(err, file, c->line, "component '%s' %s", name, clash);
            st_free(name);
            return rc;
        }
        struct st_component_settings *cs = &s->components[s->ncomponents];
        char *path = st_cfg_join_path("components", c->key);
        int rc = st_opt_bind_at(st_component_options, c, file, path, cs, err);
        st_free(path);
        if (rc) {
            st_free(name);
            return rc;
        }
        cs->domain = name;
        cs->line = c->line;
        s->ncomponents++;
        if (cs->privileges.presence == ST_PRIV_PRESENCE_ROSTER &&
            cs->privileges.roster != ST_PRIV_ROSTER_GET &&
            cs->privileges.roster != ST_PRIV_ROSTER_BOTH)
            /* XEP-0356 §7: roster presence needs read access to the roster. */
            return st_cfg_fail(err, file, c->line,
                               "'components.%s.privileges.presence: roster' needs "
                               "'privileges.roster: get' or 'both'",
                               c->key);
        if (!cs->secret || !cs->secret[0])
            return st_cfg_fail(err, file, c->line, "'components.%s.secret' is required", c->key);
    }
    return 0;
}

const struct st_component_settings *st_settings_component(const struct st_settings *s,
                                                          const char *domain)
{
    const struct st_component_settings *best = NULL;
    for (size_t i = 0; domain && i < s->ncomponents; i++)
        if (st_domain_covers(s->components[i].domain, domain) &&
            (!best || strlen(s->components[i].domain) > strlen(best->domain)))
            best = &s->components[i];
    return best;
}

int st_components_document(struct st_buf *out)
{
    int rc = st_opt_document(st_component_options, "components.<domain>", out);
    if (!rc)
        rc = st_buf_puts(out, "An external component (XEP-0114) serves its domain and every "
                              "subdomain of it; see docs/OPERATIONS.md for a worked example.\n\n");
    return rc;
}

