/* Server lifecycle: start-up (settings, data directory, certificates —
 * self-signed ones generated on first start — storage, modules,
 * listeners), signal handling (SIGTERM/SIGINT: <system-shutdown/> to every
 * stream, storage flushed, exit within 5 s; SIGHUP: settings and
 * certificates re-read without dropping connections), and teardown. */
#include "xmpp/server.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "st_config.h"
#include "base/mem.h"
#include "base/rand.h"
#include "net/conn.h"
#include "net/tls.h"
#include "starling/module.h"
#include "storage/storage.h"
#include "http/http.h"
#include "transport/c2s.h"
#include "transport/component.h"
#include "transport/s2s.h"
#include "xml/parser.h"
#include "xmpp/module.h"
#include "xmpp/router.h"
#include "xmpp/session.h"

#define SHUTDOWN_GRACE_MS 4000
#define HOUSEKEEPING_MS 1000
#define TRIM_AFTER_SESSIONS_GONE 256
#define TRIM_MAX_WAIT_TICKS 10

struct st_host *st_server_host(struct st_server *srv, const char *domain)
{
    return domain ? st_map_get(&srv->hosts, domain) : NULL;
}

bool st_host_is_local(struct st_server *srv, const char *domain)
{
    return st_server_host(srv, domain) != NULL;
}

uint64_t st_now_ms(struct st_server *srv)
{
    return uv_now(srv->loop);
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return ST_EINVAL;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, mode) != 0 && errno != EEXIST)
                return ST_EIO;
            *p = '/';
        }
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return ST_EIO;
    return 0;
}

/* Builds the TLS context from the hosts' certificates, generating self-signed ones where the
 * default paths have none (first start). Returns 0 or an error (logged). */
static int load_tls(const struct st_settings *s, struct st_tls **out, bool generate)
{
    struct st_tls_cert_spec *specs = st_calloc(s->nhosts, sizeof *specs);
    char **paths = st_calloc(s->nhosts * 2, sizeof *paths);
    int rc = 0;
    for (size_t i = 0; i < s->nhosts; i++) {
        const struct st_host_settings *h = &s->hosts[i];
        paths[2 * i] = st_settings_cert_path(s, h);
        paths[2 * i + 1] = st_settings_key_path(s, h);
        specs[i].host = h->name;
        specs[i].cert_path = paths[2 * i];
        specs[i].key_path = paths[2 * i + 1];
        if (generate && !h->certificate && access(paths[2 * i], R_OK) != 0) {
            char *err = NULL;
            const char *names[] = {h->name};
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/certs", s->data_dir);
            mkdir_p(dir, 0700);
            if (st_tls_generate_selfsigned(names, 1, paths[2 * i], paths[2 * i + 1], &err) != 0) {
                st_log_error("tls", "cannot generate a certificate for %s: %s", h->name,
                             err ? err : "?");
                st_free(err);
                rc = ST_EIO;
                goto out;
            }
            st_log_warn("tls", "generated self-signed certificate for %s at %s (clients will "
                               "not trust it; configure a real one for production)",
                        h->name, paths[2 * i]);
        }
    }
    char *err = NULL;
    rc = st_tls_new(specs, s->nhosts, out, &err);
    if (rc) {
        st_log_error("tls", "%s", err ? err : "cannot load certificates");
        st_free(err);
    }
out:
    for (size_t i = 0; i < s->nhosts * 2; i++)
        st_free(paths[i]);
    st_free(paths);
    st_free(specs);
    return rc;
}

static void add_hosts(struct st_server *srv)
{
    for (size_t i = 0; i < srv->settings.nhosts; i++) {
        const char *name = srv->settings.hosts[i].name;
        if (st_map_get(&srv->hosts, name))
            continue;
        struct st_host *h = ST_NEW(struct st_host);
        h->name = st_strdup(name);
        st_map_init(&h->accounts);
        st_map_set(&srv->hosts, name, h);
    }
}

static int open_listeners(struct st_server *srv)
{
    const struct st_listen_settings *l = &srv->settings.listen;
    int opened = 0;
    for (size_t i = 0; i < l->interfaces.n; i++) {
        const char *addr = l->interfaces.items[i];
        int ports[2] = {(int)l->c2s_port, (int)l->c2s_tls_port};
        for (int k = 0; k < 2; k++) {
            if (ports[k] == 0 ||
                srv->nlisteners >= sizeof srv->listeners / sizeof srv->listeners[0])
                continue;
            struct st_listener *ls = NULL;
            char *err = NULL;
            int rc = st_listener_open(srv->loop, addr, ports[k], k == 1 ? srv->tls : NULL,
                                      (unsigned)srv->settings.c2s.connections_per_ip,
                                      st_c2s_accept, srv, &ls, &err);
            if (rc) {
                /* "::" fails on hosts without IPv6; that alone is not fatal. */
                st_log(strchr(addr, ':') ? ST_LOG_WARN : ST_LOG_ERROR, "listen",
                       "cannot listen on %s port %d: %s", addr, ports[k], err ? err : "?");
                st_free(err);
                if (!strchr(addr, ':'))
                    return ST_EIO;
                continue;
            }
            srv->listeners[srv->nlisteners++] = ls;
            opened++;
            st_log_info("listen", "c2s%s on %s port %d", k == 1 ? " (direct TLS)" : "", addr,
                        st_listener_port(ls));
        }
    }
    return opened > 0 || (l->c2s_port == 0 && l->c2s_tls_port == 0) ? 0 : ST_EIO;
}

/* ---- housekeeping ---- */

static void on_cache_released(void *ud, int rc)
{
    struct st_server *srv = ud;
    (void)rc;
    srv->trim_pending = false;
    malloc_trim(0); /* after the storage cache went back to its thread's arena */
}

/* Once a second: after many sessions have gone, hand the freed heap back to the system
 * (glibc keeps it otherwise, and RSS would stay at its peak after a login storm). */
static void on_housekeeping(uv_timer_t *t)
{
    struct st_server *srv = t->data;
    size_t n = srv->sessions_all.count;
    bool falling = n < srv->sessions_last;
    srv->sessions_last = n;
    if (n > srv->sessions_peak)
        srv->sessions_peak = n;
    if (srv->sessions_peak - n < TRIM_AFTER_SESSIONS_GONE || srv->trim_pending)
        return;
    /* Why wait: what the rest of a departing wave frees after a trim would stay resident. */
    if (falling && ++srv->trim_waited < TRIM_MAX_WAIT_TICKS)
        return;
    srv->trim_waited = 0;
    srv->sessions_peak = n;
    st_map_shrink(&srv->sessions_all);
    st_map_shrink(&srv->pending_iq);
    for (struct st_map_entry *e = st_map_first(&srv->hosts); e; e = st_map_next(&srv->hosts, e))
        st_map_shrink(&((struct st_host *)e->value)->accounts);
    /* Why the storage first: SQLite's page cache of the departed users' lookups is the largest
     * part of what stays, and it lives in the storage thread's arena. */
    if (srv->storage && st_storage_release_memory(srv->storage, on_cache_released, srv) == 0)
        srv->trim_pending = true;
    else
        malloc_trim(0);
}

/* ---- shutdown ---- */

static void close_one(struct st_session *s, void *ud)
{
    (void)ud;
    st_session_close(s, "system-shutdown", NULL);
}

static void stop_loop_handles(struct st_server *srv)
{
    uv_signal_stop(&srv->sig_term);
    uv_signal_stop(&srv->sig_int);
    uv_signal_stop(&srv->sig_hup);
    uv_close((uv_handle_t *)&srv->sig_term, NULL);
    uv_close((uv_handle_t *)&srv->sig_int, NULL);
    uv_close((uv_handle_t *)&srv->sig_hup, NULL);
    uv_timer_stop(&srv->housekeeping);
    uv_close((uv_handle_t *)&srv->housekeeping, NULL);
}

static void on_grace_expired(uv_timer_t *t)
{
    struct st_server *srv = t->data;
    /* Streams that did not close in time are dropped. */
    for (struct st_map_entry *e = st_map_first(&srv->sessions_all); e;
         e = st_map_next(&srv->sessions_all, e)) {
        struct c2s *c = e->value;
        if (c->conn)
            st_conn_abort(c->conn);
    }
    uv_close((uv_handle_t *)t, NULL);
}

static void on_idle_check(uv_timer_t *t)
{
    struct st_server *srv = t->data;
    if (srv->sessions_all.count == 0) {
        uv_timer_stop(t);
        uv_timer_stop(&srv->shutdown_timer);
        if (!uv_is_closing((uv_handle_t *)&srv->shutdown_timer))
            uv_close((uv_handle_t *)&srv->shutdown_timer, NULL);
        uv_close((uv_handle_t *)t, NULL);
    }
}

void st_server_shutdown(struct st_server *srv)
{
    if (srv->shutting_down)
        return;
    srv->shutting_down = true;
    st_log_info("server", "shutting down");
    for (unsigned i = 0; i < srv->nlisteners; i++)
        st_listener_close(srv->listeners[i]);
    srv->nlisteners = 0;
    st_s2s_stop(srv);
    st_component_stop(srv);
    /* Every stream, bound or still negotiating, gets <system-shutdown/>. */
    size_t n = 0;
    struct c2s **list = st_calloc(srv->sessions_all.count + 1, sizeof *list);
    for (struct st_map_entry *e = st_map_first(&srv->sessions_all); e;
         e = st_map_next(&srv->sessions_all, e))
        list[n++] = e->value;
    for (size_t i = 0; i < n; i++)
        close_one(&list[i]->sess, NULL);
    st_free(list);
    st_http_stop(srv); /* after the sessions: BOSH answers its held requests first */
    st_iq_pending_cancel_all(srv);
    st_modules_unload(srv);
    stop_loop_handles(srv);
    uv_timer_init(srv->loop, &srv->shutdown_timer);
    srv->shutdown_timer.data = srv;
    uv_timer_start(&srv->shutdown_timer, on_grace_expired, SHUTDOWN_GRACE_MS, 0);
    uv_timer_init(srv->loop, &srv->idle_timer);
    srv->idle_timer.data = srv;
    uv_timer_start(&srv->idle_timer, on_idle_check, 10, 10);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct st_server *srv = h->data;
    if (signum == SIGHUP) {
        st_server_reload(srv);
        return;
    }
    st_log_info("server", "received %s", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    st_server_shutdown(srv);
}

/* ---- reload ---- */

/* Said at every (re)load because it is a choice an operator should see in the log. */
static void warn_insecure_settings(const struct st_settings *s)
{
    if (s->c2s.allow_plain && s->c2s.allow_plain_unencrypted)
        st_log_warn("server", "c2s.allow_plain_unencrypted is on: clients may send passwords "
                              "in the clear on streams without TLS");
}

void st_server_reload(struct st_server *srv)
{
    struct st_settings fresh;
    char *err = NULL;
    st_log_info("server", "SIGHUP: reloading configuration and certificates");
    if (st_settings_load(srv->config_path, &fresh, &err) != 0 ||
        st_modules_check(&fresh, &err) != 0) {
        st_log_error("server", "reload failed, keeping the running configuration: %s",
                     err ? err : "?");
        st_free(err);
        if (fresh.file || fresh.hosts)
            st_settings_free(&fresh);
        return;
    }
    struct st_tls *tls = NULL;
    if (load_tls(&fresh, &tls, true) != 0) {
        st_log_error("server", "reload failed (certificates), keeping the running configuration");
        st_settings_free(&fresh);
        return;
    }
    /* Listeners, storage and modules keep running; limits, hosts, logging and certificates
     * take effect for new streams (and new stanzas where they are read per stanza). */
    st_log_set_level((enum st_log_level)fresh.log_level);
    warn_insecure_settings(&fresh);
    struct st_settings old = srv->settings;
    srv->settings = fresh;
    st_s2s_reload(srv);                 /* copies what it needs from the fresh document */
    srv->settings.s2s.routes = NULL;    /* points into the document freed below */
    /* Module option structs borrow from the old document: keep the module section. */
    srv->settings.modules = old.modules;
    struct st_cfg_doc keep = old.doc;
    old.doc = fresh.doc;
    srv->settings.doc = keep;
    srv->settings.hosts_node = NULL; /* pointed into the document freed below */
    st_settings_free(&old);
    add_hosts(srv);
    st_component_reload(srv); /* components removed from the config: <host-gone/> */
    st_tls_unref(srv->tls);
    srv->tls = tls;
    for (unsigned i = 0; i < srv->nlisteners; i++)
        if (st_listener_port(srv->listeners[i]) == (int)srv->settings.listen.c2s_tls_port)
            st_listener_set_tls(srv->listeners[i], tls);
    st_http_set_tls(srv, tls);
    st_log_info("server", "reloaded configuration%s%s", srv->config_path ? " from " : "",
                srv->config_path ? srv->config_path : "");
}

/* ---- run ---- */

static void free_server(struct st_server *srv)
{
    for (struct st_map_entry *e = st_map_first(&srv->hosts); e; e = st_map_next(&srv->hosts, e)) {
        struct st_host *h = e->value;
        st_map_free(&h->accounts);
        st_free(h->name);
        st_free(h);
    }
    st_map_free(&srv->hosts);
    st_map_free(&srv->pending_iq);
    st_map_free(&srv->sessions_all);
    st_buf_free(&srv->scratch);
    st_events_free(&srv->events);
    for (size_t i = 0; i < srv->features_host.n; i++)
        st_free(srv->features_host.items[i]);
    st_free(srv->features_host.items);
    for (size_t i = 0; i < srv->features_account.n; i++)
        st_free(srv->features_account.items[i]);
    st_free(srv->features_account.items);
    for (size_t i = 0; i < srv->nidentities; i++) {
        st_free(srv->identities[i].category);
        st_free(srv->identities[i].type);
        st_free(srv->identities[i].name);
    }
    st_free(srv->identities);
    if (srv->tls)
        st_tls_unref(srv->tls);
    st_settings_free(&srv->settings);
    st_free(srv->config_path);
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int st_server_run(const char *config_path)
{
    struct st_server *srv = ST_NEW(struct st_server);
    uv_loop_t loop;
    int rc = 1;
    char *err = NULL;
    uv_loop_init(&loop);
    srv->loop = &loop;
    srv->config_path = st_strdup(config_path);
    st_map_init(&srv->hosts);
    st_map_init(&srv->pending_iq);
    st_map_init(&srv->sessions_all);
    st_buf_init(&srv->scratch, 0);
    st_events_init(&srv->events);
    st_rand_bytes(srv->dummy_secret, sizeof srv->dummy_secret);

    if (st_settings_load(config_path, &srv->settings, &err) != 0 ||
        st_modules_check(&srv->settings, &err) != 0) {
        fprintf(stderr, "%s\n", err ? err : "invalid configuration");
        st_free(err);
        goto out_free;
    }
    st_log_set_level((enum st_log_level)srv->settings.log_level);
    st_log_info("server", "Starling %s starting%s%s", ST_VERSION, config_path ? " with " : "",
                config_path ? config_path : " with embedded defaults");
    warn_insecure_settings(&srv->settings);
    if (mkdir_p(srv->settings.data_dir, 0700) != 0) {
        st_log_error("server", "cannot create data directory %s: %s", srv->settings.data_dir,
                     strerror(errno));
        goto out_free;
    }
    add_hosts(srv);
    if (load_tls(&srv->settings, &srv->tls, true) != 0)
        goto out_free;
    const char *driver = srv->settings.storage == 1 ? "memory" : "sqlite";
    if (st_storage_open(srv->loop, driver, srv->settings.data_dir, &srv->storage, &err) != 0) {
        st_log_error("storage", "cannot open %s storage in %s: %s", driver,
                     srv->settings.data_dir, err ? err : "?");
        st_free(err);
        goto out_free;
    }
    if (st_modules_load(srv, &err) != 0) {
        st_log_error("server", "%s", err ? err : "module load failed");
        st_free(err);
        goto out_stop;
    }
    if (open_listeners(srv) != 0)
        goto out_stop;
    if (st_s2s_start(srv) != 0)
        goto out_stop;
    if (st_component_start(srv) != 0)
        goto out_stop;
    if (st_http_start(srv) != 0)
        goto out_stop;

    uv_signal_init(srv->loop, &srv->sig_term);
    uv_signal_init(srv->loop, &srv->sig_int);
    uv_signal_init(srv->loop, &srv->sig_hup);
    srv->sig_term.data = srv->sig_int.data = srv->sig_hup.data = srv;
    uv_signal_start(&srv->sig_term, on_signal, SIGTERM);
    uv_signal_start(&srv->sig_int, on_signal, SIGINT);
    uv_signal_start(&srv->sig_hup, on_signal, SIGHUP);
    uv_timer_init(srv->loop, &srv->housekeeping);
    srv->housekeeping.data = srv;
    uv_timer_start(&srv->housekeeping, on_housekeeping, HOUSEKEEPING_MS, HOUSEKEEPING_MS);
    st_log_info("server", "ready: serving %zu host%s", srv->settings.nhosts,
                srv->settings.nhosts == 1 ? "" : "s");

    uv_run(srv->loop, UV_RUN_DEFAULT);
    rc = 0;
    st_storage_close(srv->storage);
    srv->storage = NULL;
    st_log_info("server", "stopped");
    goto out_free;

out_stop:
    for (unsigned i = 0; i < srv->nlisteners; i++)
        st_listener_close(srv->listeners[i]);
    srv->nlisteners = 0;
    st_s2s_stop(srv);
    st_component_stop(srv);
    st_http_stop(srv);
    st_modules_unload(srv);
    if (srv->storage)
        st_storage_close(srv->storage);
    srv->storage = NULL;
    uv_run(srv->loop, UV_RUN_NOWAIT);
out_free:
    uv_walk(srv->loop, walk_close, NULL);
    uv_run(srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(srv->loop);
    free_server(srv);
    st_free(srv);
    st_xml_parser_pool_drain();
    return rc;
}
