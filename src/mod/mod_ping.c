/* XEP-0199 XMPP Ping, both directions: the server answers pings addressed
 * to itself and to accounts, and it pings clients that have been silent
 * for `interval`, closing those that do not answer within `timeout` with
 * <connection-timeout/> (XEP-0199 §4.2.2, §6). */
#include <string.h>

#include "starling/module.h"

#define NS_PING "urn:xmpp:ping"

struct ping_opts {
    uint64_t interval; /* ms */
    uint64_t timeout;  /* ms */
};

static const struct st_option ping_options[] = {
    {"interval", ST_OPT_DURATION, offsetof(struct ping_opts, interval), "5m", 1000, 86400000, NULL,
     NULL, "ping a client after it has been silent this long"},
    {"timeout", ST_OPT_DURATION, offsetof(struct ping_opts, timeout), "60s", 500, 3600000, NULL,
     NULL, "close the stream when the ping is not answered within this time"},
    ST_OPT_END,
};

struct ping_state {
    const struct ping_opts *opts;
    struct st_map inflight; /* full JID -> (void*)1 while a ping is outstanding */
};

static int on_ping(struct st_event *ev, void *ud)
{
    (void)ud;
    return st_reply(ev, st_iq_result(ev->stanza));
}

struct ping_ctx {
    struct st_module *m;
    char *jid;
};

static void on_pong(struct st_server *srv, const struct st_xml *reply, void *ud)
{
    struct ping_ctx *pc = ud;
    struct ping_state *ps = st_module_data(pc->m);
    st_map_del(&ps->inflight, pc->jid);
    if (!reply) {
        struct st_jid j;
        if (st_jid_parse(pc->jid, &j) == 0) {
            struct st_session *s = st_session_find_full(srv, &j);
            /* Any traffic since the ping counts as alive (a reply may have been lost). */
            if (s && st_session_idle_ms(s) >= ps->opts->timeout) {
                st_log_info("ping", "%s did not answer a ping; closing", pc->jid);
                st_session_close(s, "connection-timeout", "no reply to ping");
            }
            st_jid_clear(&j);
        }
    }
    st_free(pc->jid);
    st_free(pc);
}

static void check_one(struct st_session *s, void *ud)
{
    struct st_module *m = ud;
    struct ping_state *ps = st_module_data(m);
    const struct st_jid *j = st_session_jid(s);
    if (st_session_idle_ms(s) < ps->opts->interval || st_map_get(&ps->inflight, j->full))
        return;
    struct st_server *srv = st_module_server(m);
    struct st_xml *iq = st_xml_new("iq", ST_NS_CLIENT);
    st_xml_set_attr(iq, "type", "get");
    st_xml_set_attr(iq, "from", j->domain);
    st_xml_set_attr(iq, "to", j->full);
    st_xml_add_child(iq, "ping", NS_PING);
    struct ping_ctx *pc = ST_NEW(struct ping_ctx);
    pc->m = m;
    pc->jid = st_strdup(j->full);
    st_map_set(&ps->inflight, pc->jid, (void *)1);
    if (st_iq_send(srv, iq, ps->opts->timeout, on_pong, pc) != 0) {
        st_map_del(&ps->inflight, pc->jid);
        st_free(pc->jid);
        st_free(pc);
    }
    st_xml_unref(iq);
}

static void sweep(struct st_module *m)
{
    st_sessions_foreach(st_module_server(m), check_one, m);
}

static int ping_load(struct st_module *m, const void *options)
{
    struct ping_state *ps = ST_NEW(struct ping_state);
    ps->opts = options;
    st_map_init(&ps->inflight);
    st_module_set_data(m, ps);
    st_module_hook(m, "iq-get/host/" NS_PING ":ping", on_ping, NULL, 0);
    st_module_hook(m, "iq-get/bare/" NS_PING ":ping", on_ping, NULL, 0);
    st_module_feature(m, NS_PING, false);
    uint64_t every = ps->opts->interval / 4;
    if (every < 250)
        every = 250;
    if (every > 30000)
        every = 30000;
    st_module_timer(m, every, sweep);
    return 0;
}

static void ping_unload(struct st_module *m)
{
    struct ping_state *ps = st_module_data(m);
    st_map_free(&ps->inflight);
    st_free(ps);
}

const struct st_module_def st_mod_ping = {
    .name = "ping",
    .description = "XEP-0199 XMPP Ping: answer pings, ping silent clients and drop dead ones",
    .options = ping_options,
    .options_size = sizeof(struct ping_opts),
    .default_on = true,
    .load = ping_load,
    .unload = ping_unload,
};
