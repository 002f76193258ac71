/* The module registry: the built-in module table, loading each enabled
 * module with its options bound from modules.<name>, and the module
 * context through which registrations are made (and removed again at
 * unload). */
#include "xmpp/module.h"

#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "starling/module.h"
#include "xml/parser.h"
#include "xmpp/accounts.h"
#include "xmpp/server.h"

struct st_module_timer {
    uv_timer_t timer;
    struct st_module *m;
    void (*cb)(struct st_module *m);
    struct st_module_timer *next;
};

struct st_module {
    struct st_module *next;
    const struct st_module_def *def;
    struct st_server *srv;
    void *options; /* bound option struct */
    void *data;
    struct st_module_timer *timers;
};

extern const struct st_module_def st_mod_disco;
extern const struct st_module_def st_mod_ping;
extern const struct st_module_def st_mod_version;
extern const struct st_module_def st_mod_roster;
extern const struct st_module_def st_mod_presence;
extern const struct st_module_def st_mod_offline;
extern const struct st_module_def st_mod_hostmeta;
extern const struct st_module_def st_mod_privilege;
extern const struct st_module_def st_mod_webchat;

static const struct st_module_def *const builtin[] = {
    &st_mod_disco,
    &st_mod_ping,
    &st_mod_version,
    &st_mod_roster,
    &st_mod_presence,
    &st_mod_offline,
    &st_mod_hostmeta,
    &st_mod_privilege,
    &st_mod_webchat,
    NULL,
};

const struct st_module_def *const *st_module_builtins(void)
{
    return builtin;
}

static bool disabled(const struct st_settings *s, const char *name)
{
    for (size_t i = 0; i < s->modules_disabled.n; i++)
        if (strcmp(s->modules_disabled.items[i], name) == 0)
            return true;
    return false;
}

int st_modules_check(const struct st_settings *s, char **err)
{
    const struct st_cfg_node *mods = s->modules;
    for (const struct st_cfg_node *n = mods ? mods->child : NULL; n; n = n->next) {
        const struct st_module_def *def = NULL;
        for (size_t i = 0; builtin[i]; i++)
            if (strcmp(builtin[i]->name, n->key) == 0)
                def = builtin[i];
        if (!def) {
            struct st_buf b;
            st_buf_init(&b, 1024);
            st_buf_printf(&b, "%s:%u: unknown module '%s'", s->file ? s->file : "(defaults)",
                          n->line, n->key);
            *err = st_buf_take(&b);
            return ST_EINVAL;
        }
        void *opts = st_calloc(1, def->options_size ? def->options_size : 1);
        int rc = 0;
        if (def->options) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "modules.%s", def->name);
            rc = st_opt_bind_at(def->options, n->type == ST_CFG_MAP ? n : NULL,
                                s->file ? s->file : "(defaults)", prefix, opts, err);
            st_opt_free(def->options, opts);
        }
        st_free(opts);
        if (rc)
            return rc;
    }
    return 0;
}

int st_modules_load(struct st_server *srv, char **err)
{
    const struct st_settings *s = &srv->settings;
    for (size_t i = 0; builtin[i]; i++) {
        const struct st_module_def *def = builtin[i];
        const struct st_cfg_node *cfg = s->modules ? st_cfg_get(s->modules, def->name) : NULL;
        if (disabled(s, def->name) || (!def->default_on && !cfg))
            continue;
        struct st_module *m = ST_NEW(struct st_module);
        m->def = def;
        m->srv = srv;
        m->options = st_calloc(1, def->options_size ? def->options_size : 1);
        if (def->options) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "modules.%s", def->name);
            int rc = st_opt_bind_at(def->options, cfg && cfg->type == ST_CFG_MAP ? cfg : NULL,
                                    s->file ? s->file : "(defaults)", prefix, m->options, err);
            if (rc) {
                st_free(m->options);
                st_free(m);
                return rc;
            }
        }
        m->next = srv->modules;
        srv->modules = m;
        int rc = def->load(m, m->options);
        if (rc) {
            struct st_buf b;
            st_buf_init(&b, 1024);
            st_buf_printf(&b, "module %s failed to load: %s", def->name, st_strerror(rc));
            *err = st_buf_take(&b);
            return rc;
        }
        st_log_debug("modules", "loaded %s", def->name);
    }
    return 0;
}

static void timer_closed(uv_handle_t *h)
{
    st_free(h->data);
}

void st_modules_unload(struct st_server *srv)
{
    while (srv->modules) {
        struct st_module *m = srv->modules;
        srv->modules = m->next;
        if (m->def->unload)
            m->def->unload(m);
        st_events_remove_owner(&srv->events, m);
        while (m->timers) {
            struct st_module_timer *t = m->timers;
            m->timers = t->next;
            uv_timer_stop(&t->timer);
            uv_close((uv_handle_t *)&t->timer, timer_closed);
        }
        if (m->def->options)
            st_opt_free(m->def->options, m->options);
        st_free(m->options);
        st_free(m);
    }
}

struct st_module *st_module_find(struct st_server *srv, const char *name)
{
    for (struct st_module *m = srv->modules; m; m = m->next)
        if (strcmp(m->def->name, name) == 0)
            return m;
    return NULL;
}

struct st_xml *st_stanza_parse(const char *data, size_t len)
{
    struct st_xml_limits lim = {.max_stanza_bytes = len + 1, .max_depth = 64, .max_attrs = 256};
    enum st_xml_parse_error err;
    return st_xml_parse_one(data, len, ST_NS_CLIENT, &lim, &err);
}

struct st_server *st_module_server(struct st_module *m)
{
    return m->srv;
}

void st_module_set_data(struct st_module *m, void *data)
{
    m->data = data;
}

void *st_module_data(struct st_module *m)
{
    return m->data;
}

int st_module_hook(struct st_module *m, const char *event, st_event_handler handler, void *ud,
                   int priority)
{
    return st_events_add(&m->srv->events, event, handler, ud, priority, m);
}

static void strlist_add(struct st_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], s) == 0)
            return;
    l->items = st_realloc(l->items, (l->n + 1) * sizeof *l->items);
    l->items[l->n++] = st_strdup(s);
}

void st_module_feature(struct st_module *m, const char *var, bool account)
{
    strlist_add(&m->srv->features_host, var);
    if (account)
        strlist_add(&m->srv->features_account, var);
}

void st_module_identity(struct st_module *m, const char *category, const char *type,
                        const char *name)
{
    struct st_server *srv = m->srv;
    srv->identities = st_realloc(srv->identities, (srv->nidentities + 1) * sizeof *srv->identities);
    struct st_disco_identity *id = &srv->identities[srv->nidentities++];
    id->category = st_strdup(category);
    id->type = st_strdup(type);
    id->name = st_strdup(name);
}

static void on_timer(uv_timer_t *t)
{
    struct st_module_timer *mt = t->data;
    mt->cb(mt->m);
}

int st_module_timer(struct st_module *m, uint64_t interval_ms, void (*cb)(struct st_module *m))
{
    struct st_module_timer *t = ST_NEW(struct st_module_timer);
    t->m = m;
    t->cb = cb;
    uv_timer_init(m->srv->loop, &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, on_timer, interval_ms, interval_ms);
    t->next = m->timers;
    m->timers = t;
    return 0;
}

const struct st_strlist *st_disco_features(struct st_server *srv, bool account)
{
    return account ? &srv->features_account : &srv->features_host;
}

void st_disco_foreach_identity(struct st_server *srv,
                               void (*fn)(const char *category, const char *type, const char *name,
                                          void *ud),
                               void *ud)
{
    for (size_t i = 0; i < srv->nidentities; i++)
        fn(srv->identities[i].category, srv->identities[i].type, srv->identities[i].name, ud);
}

struct st_storage *st_server_storage(struct st_server *srv)
{
    return srv->storage;
}

struct exists_req {
    void (*cb)(void *ud, int exists);
    void *ud;
};

static void exists_done(void *ud, int rc, const struct st_scram_cred *cred)
{
    (void)cred;
    struct exists_req *r = ud;
    r->cb(r->ud, rc == 0 ? 1 : rc == ST_ENOTFOUND ? 0 : rc);
    st_free(r);
}

int st_account_exists(struct st_server *srv, const char *host, const char *user,
                      void (*cb)(void *ud, int exists), void *ud)
{
    struct exists_req *r = ST_NEW(struct exists_req);
    r->cb = cb;
    r->ud = ud;
    int rc = st_account_get_cred(srv->storage, host, user, ST_SCRAM_SHA256, exists_done, r);
    if (rc)
        st_free(r);
    return rc;
}
