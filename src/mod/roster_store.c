/* The per-account roster cache and operation queue (RFC 6121 §2, §3; see
 * roster_store.h). Items are stored in the map store "roster" in a compact
 * length-prefixed encoding ("1;F;" flags, then "N<len>:<name>" and
 * "G<len>:<group>" fields); the version (RFC 6121 §2.6) is a decimal
 * counter in the keyval store "roster_meta", started from the clock so a
 * recreated account never repeats an old version. Storage callbacks run in
 * submission order, so a load is three reads whose last callback marks the
 * roster ready, and a group of writes completes with its last callback. */
#include "mod/roster_store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RS_STORE "roster"
#define RS_PENDING "roster_pending"
#define RS_META "roster_meta"

struct rs_op {
    struct rs_op *next;
    rs_run_fn run;
    void (*discard)(void *arg);
    void *arg;
};

struct rs {
    struct st_server *srv;
    struct st_storage *storage;
    size_t max_items;
    struct st_map users; /* bare JID -> struct rs_user * */
    unsigned inflight;   /* storage callbacks outstanding */
    bool dead;
    rs_push_observer push_observer; /* XEP-0356 roster pushes to components, or NULL */
    void *push_observer_ud;
};

/* ---- items ---- */

static void item_free(struct rs_item *it)
{
    if (!it)
        return;
    for (size_t i = 0; i < it->ngroups; i++)
        st_free(it->groups[i]);
    st_free(it->groups);
    st_free(it->name);
    st_free(it->jid);
    st_free(it);
}

static void encode_field(struct st_buf *b, char tag, const char *s)
{
    st_buf_printf(b, "%c%zu:", tag, strlen(s));
    st_buf_puts(b, s);
}

static char *item_encode(const struct rs_item *it, size_t *len)
{
    struct st_buf b;
    st_buf_init(&b, ST_STORAGE_VALUE_MAX);
    unsigned f = (it->to ? 1u : 0) | (it->from ? 2u : 0) | (it->pending_out ? 4u : 0) |
                 (it->approved ? 8u : 0);
    st_buf_printf(&b, "1;%u;", f);
    if (it->name)
        encode_field(&b, 'N', it->name);
    for (size_t i = 0; i < it->ngroups; i++)
        encode_field(&b, 'G', it->groups[i]);
    *len = b.len;
    return st_buf_take(&b);
}

static struct rs_item *item_decode(const char *jid, const char *d, size_t len)
{
    if (len < 4 || d[0] != '1' || d[1] != ';')
        return NULL;
    size_t i = 2;
    unsigned f = 0;
    while (i < len && d[i] >= '0' && d[i] <= '9')
        f = f * 10 + (unsigned)(d[i++] - '0');
    if (i >= len || d[i] != ';' || f > 15)
        return NULL;
    i++;
    struct rs_item *it = ST_NEW(struct rs_item);
    it->jid = st_strdup(jid);
    it->to = f & 1;
    it->from = f & 2;
    it->pending_out = f & 4;
    it->approved = f & 8;
    while (i < len) {
        char tag = d[i++];
        size_t n = 0, digits = 0;
        while (i < len && d[i] >= '0' && d[i] <= '9' && digits < 10) {
            n = n * 10 + (size_t)(d[i++] - '0');
            digits++;
        }
        if (!digits || i >= len || d[i] != ':' || n > len - i - 1)
            goto bad;
        i++;
        char *s = st_strndup(d + i, n);
        i += n;
        if (tag == 'N') {
            st_free(it->name);
            it->name = s;
        } else if (tag == 'G') {
            it->groups = st_realloc(it->groups, (it->ngroups + 1) * sizeof *it->groups);
            it->groups[it->ngroups++] = s;
        } else {
            st_free(s);
            goto bad;
        }
    }
    return it;
bad:
    item_free(it);
    return NULL;
}

struct rs_item *rs_item_get(struct rs_user *u, const char *jid)
{
    return st_map_get(&u->items, jid);
}

struct rs_item *rs_item_put(struct rs_user *u, const char *jid)
{
    struct rs_item *it = st_map_get(&u->items, jid);
    if (!it) {
        it = ST_NEW(struct rs_item);
        it->jid = st_strdup(jid);
        st_map_set(&u->items, jid, it);
    }
    return it;
}

void rs_item_del(struct rs_user *u, const char *jid)
{
    item_free(st_map_del(&u->items, jid));
    st_map_del(&u->pending, jid);
}

void rs_item_set_meta(struct rs_item *it, const char *name, char **groups, size_t ngroups)
{
    st_free(it->name);
    it->name = name ? st_strdup(name) : NULL;
    for (size_t i = 0; i < it->ngroups; i++)
        st_free(it->groups[i]);
    st_free(it->groups);
    it->groups = NULL;
    it->ngroups = 0;
    if (ngroups) {
        it->groups = st_malloc(ngroups * sizeof *it->groups);
        for (size_t i = 0; i < ngroups; i++)
            it->groups[i] = st_strdup(groups[i]);
        it->ngroups = ngroups;
    }
}

void rs_state(struct rs_user *u, const char *jid, struct st_sub_state *out)
{
    memset(out, 0, sizeof *out);
    struct rs_item *it = st_map_get(&u->items, jid);
    if (it) {
        out->exists = true;
        out->to = it->to;
        out->from = it->from;
        out->pending_out = it->pending_out;
        out->approved = it->approved;
    }
    out->pending_in = st_map_get(&u->pending, jid) != NULL;
}

struct rs_item *rs_set_state(struct rs_user *u, const char *jid, const struct st_sub_state *st)
{
    if (st->pending_in)
        st_map_set(&u->pending, jid, (void *)1);
    else
        st_map_del(&u->pending, jid);
    if (!st->exists)
        return st_map_get(&u->items, jid);
    struct rs_item *it = rs_item_put(u, jid);
    it->to = st->to;
    it->from = st->from;
    it->pending_out = st->pending_out;
    it->approved = st->approved;
    return it;
}

void rs_item_xml(struct st_xml *query, const struct rs_item *it, const char *jid)
{
    struct st_xml *x = st_xml_add_child(query, "item", NULL);
    st_xml_set_attr(x, "jid", it ? it->jid : jid);
    if (!it) {
        st_xml_set_attr(x, "subscription", "remove");
        return;
    }
    if (it->name)
        st_xml_set_attr(x, "name", it->name);
    struct st_sub_state s = {.exists = true, .to = it->to, .from = it->from};
    st_xml_set_attr(x, "subscription", st_sub_name(&s));
    if (it->pending_out)
        st_xml_set_attr(x, "ask", "subscribe");
    if (it->approved)
        st_xml_set_attr(x, "approved", "true");
    for (size_t i = 0; i < it->ngroups; i++)
        st_xml_add_text_child(x, "group", it->groups[i]);
}

/* ---- state and users ---- */

struct rs *rs_new(struct st_server *srv, size_t max_items)
{
    struct rs *rs = ST_NEW(struct rs);
    rs->srv = srv;
    rs->storage = st_server_storage(srv);
    rs->max_items = max_items;
    st_map_init(&rs->users);
    return rs;
}

struct st_server *rs_server(struct rs *rs)
{
    return rs->srv;
}

size_t rs_max_items(struct rs *rs)
{
    return rs->max_items;
}

static void user_free(struct rs_user *u)
{
    for (struct st_map_entry *e = st_map_first(&u->items); e; e = st_map_next(&u->items, e))
        item_free(e->value);
    st_map_free(&u->items);
    st_map_free(&u->pending);
    while (u->head) {
        struct rs_op *op = u->head;
        u->head = op->next;
        if (op->discard)
            op->discard(op->arg);
        st_free(op);
    }
    st_free(u->bare);
    st_free(u->host);
    st_free(u->user);
    st_free(u);
}

static void rs_destroy(struct rs *rs)
{
    for (struct st_map_entry *e = st_map_first(&rs->users); e; e = st_map_next(&rs->users, e))
        user_free(e->value);
    st_map_free(&rs->users);
    st_free(rs);
}

void rs_free(struct rs *rs)
{
    if (!rs)
        return;
    rs->dead = true;
    if (rs->inflight == 0)
        rs_destroy(rs);
}

/* Every storage callback starts with this: false means the state is gone (and maybe freed). */
static bool cb_enter(struct rs *rs)
{
    rs->inflight--;
    if (rs->dead) {
        if (rs->inflight == 0)
            rs_destroy(rs);
        return false;
    }
    return true;
}

void rs_hold(struct rs *rs)
{
    rs->inflight++;
}

bool rs_release(struct rs *rs)
{
    return cb_enter(rs);
}

static void kick(struct rs_user *u);

static void user_drop_if_idle(struct rs_user *u, const struct st_session *except)
{
    if (u->busy || u->head || u->loading || u->in_kick)
        return;
    for (struct st_session *s = st_session_first(u->rs->srv, u->host, u->bare); s;
         s = st_session_next(s))
        if (s != except)
            return;
    st_map_del(&u->rs->users, u->bare);
    user_free(u);
}

void rs_maybe_drop(struct rs *rs, const char *host, const char *bare,
                   const struct st_session *except)
{
    (void)host;
    struct rs_user *u = st_map_get(&rs->users, bare);
    if (u)
        user_drop_if_idle(u, except);
}

/* Ends a load once its last read has answered. */
static void load_step(struct rs_user *u)
{
    if (--u->load_outstanding > 0)
        return;
    u->loading = false;
    u->loaded = true;
    if (u->load_rc) {
        st_log_error("roster", "%s: loading the roster failed: %s", u->bare,
                     st_strerror(u->load_rc));
        u->failed = true;
    }
    kick(u);
}

static void load_items_cb(void *ud, int rc, const struct st_kvmap_row *rows, size_t n)
{
    struct rs_user *u = ud;
    if (!cb_enter(u->rs))
        return;
    if (rc && rc != ST_ENOTFOUND) {
        u->load_rc = rc;
        load_step(u);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct rs_item *it = item_decode(rows[i].key, rows[i].data, rows[i].len);
        if (!it) {
            st_log_warn("roster", "%s: undecodable roster item %s skipped", u->bare, rows[i].key);
            continue;
        }
        item_free(st_map_set(&u->items, it->jid, it));
    }
    load_step(u);
}

static void load_meta_cb(void *ud, int rc, const void *data, size_t len)
{
    struct rs_user *u = ud;
    if (!cb_enter(u->rs))
        return;
    if (rc == 0 && len > 0 && len < 32) {
        char tmp[32];
        memcpy(tmp, data, len);
        tmp[len] = '\0';
        char *end = NULL;
        unsigned long long v = strtoull(tmp, &end, 10);
        if (end && *end == '\0')
            u->ver = v;
    } else if (rc && rc != ST_ENOTFOUND) {
        u->load_rc = rc;
    }
    load_step(u);
}

static void load_pending_cb(void *ud, int rc, const struct st_kvmap_row *rows, size_t n)
{
    struct rs_user *u = ud;
    if (!cb_enter(u->rs))
        return;
    if (rc && rc != ST_ENOTFOUND)
        u->load_rc = rc;
    for (size_t i = 0; i < n; i++)
        st_map_set(&u->pending, rows[i].key, (void *)1);
    load_step(u);
}

static void start_load(struct rs_user *u)
{
    struct rs *rs = u->rs;
    u->loading = true;
    u->ver = st_now_ms(rs->srv);
    /* One extra count so that the load cannot finish while the reads are being queued. */
    u->load_outstanding = 1;
    int rc[3];
    rc[0] = st_kvmap_list(rs->storage, u->host, u->user, RS_STORE, load_items_cb, u);
    rc[1] = st_kv_get(rs->storage, u->host, u->user, RS_META, load_meta_cb, u);
    rc[2] = st_kvmap_list(rs->storage, u->host, u->user, RS_PENDING, load_pending_cb, u);
    for (int i = 0; i < 3; i++) {
        if (rc[i] == 0) {
            rs->inflight++;
            u->load_outstanding++;
        } else {
            st_log_error("roster", "%s: cannot queue roster load: %s", u->bare,
                         st_strerror(rc[i]));
            u->load_rc = rc[i];
        }
    }
    u->in_kick = true; /* the caller kicks the queue */
    load_step(u);
    u->in_kick = false;
}

static void kick(struct rs_user *u)
{
    if (u->in_kick)
        return;
    u->in_kick = true;
    while (!u->busy && u->head && u->loaded) {
        struct rs_op *op = u->head;
        u->head = op->next;
        if (!u->head)
            u->tail = NULL;
        u->busy = true;
        rs_run_fn run = op->run;
        void *arg = op->arg;
        st_free(op);
        run(u, arg);
    }
    u->in_kick = false;
    if (!u->busy && !u->head) {
        /* A failed load is retried by the next operation. */
        if (u->failed) {
            st_map_del(&u->rs->users, u->bare);
            user_free(u);
            return;
        }
        user_drop_if_idle(u, NULL);
    }
}

int rs_enqueue(struct rs *rs, const char *host, const char *user, rs_run_fn run,
               void (*discard)(void *arg), void *arg)
{
    if (rs->dead)
        return ST_ECLOSED;
    struct st_jid j;
    if (st_jid_make(user, host, NULL, &j) != 0)
        return ST_EINVAL;
    struct rs_user *u = st_map_get(&rs->users, j.bare);
    if (!u) {
        u = ST_NEW(struct rs_user);
        u->rs = rs;
        u->bare = st_strdup(j.bare);
        u->host = st_strdup(j.domain);
        u->user = st_strdup(j.local);
        st_map_init(&u->items);
        st_map_init(&u->pending);
        st_map_set(&rs->users, u->bare, u);
    }
    st_jid_clear(&j);
    struct rs_op *op = ST_NEW(struct rs_op);
    op->run = run;
    op->discard = discard;
    op->arg = arg;
    if (u->tail)
        u->tail->next = op;
    else
        u->head = op;
    u->tail = op;
    if (!u->loaded && !u->loading)
        start_load(u);
    kick(u);
    return 0;
}

void rs_done(struct rs_user *u)
{
    u->busy = false;
    kick(u);
}

/* ---- writes ---- */

struct rs_batch {
    struct rs_user *u;
    rs_batch_done done;
    void *arg;
    unsigned outstanding;
    int rc;
    bool committed;
};

struct rs_batch *rs_batch_new(struct rs_user *u, rs_batch_done done, void *arg)
{
    struct rs_batch *b = ST_NEW(struct rs_batch);
    b->u = u;
    b->done = done;
    b->arg = arg;
    return b;
}

static void batch_finish(struct rs_batch *b)
{
    if (b->rc) {
        st_log_error("roster", "%s: roster write failed: %s", b->u->bare, st_strerror(b->rc));
        /* The cache may now differ from storage: reload it next time. */
        b->u->failed = true;
    }
    rs_batch_done done = b->done;
    struct rs_user *u = b->u;
    void *arg = b->arg;
    int rc = b->rc;
    st_free(b);
    done(u, rc, arg);
}

static void batch_cb(void *ud, int rc)
{
    struct rs_batch *b = ud;
    if (!cb_enter(b->u->rs)) {
        if (--b->outstanding == 0)
            st_free(b);
        return;
    }
    if (rc && !b->rc)
        b->rc = rc;
    if (--b->outstanding == 0 && b->committed)
        batch_finish(b);
}

static void batch_submitted(struct rs_batch *b, int rc)
{
    if (rc) {
        if (!b->rc)
            b->rc = rc;
        return;
    }
    b->outstanding++;
    b->u->rs->inflight++;
}

void rs_batch_item(struct rs_batch *b, const char *jid)
{
    struct rs_user *u = b->u;
    struct rs_item *it = st_map_get(&u->items, jid);
    int rc;
    if (it) {
        size_t len;
        char *data = item_encode(it, &len);
        rc = st_kvmap_set(u->rs->storage, u->host, u->user, RS_STORE, jid, data, len, batch_cb,
                          b);
        st_free(data);
    } else {
        rc = st_kvmap_set(u->rs->storage, u->host, u->user, RS_STORE, jid, NULL, 0, batch_cb, b);
    }
    batch_submitted(b, rc);
}

void rs_batch_ver(struct rs_batch *b)
{
    struct rs_user *u = b->u;
    u->ver++;
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, u->ver);
    batch_submitted(b, st_kv_set(u->rs->storage, u->host, u->user, RS_META, tmp, (size_t)n,
                                 batch_cb, b));
}

void rs_batch_pending(struct rs_batch *b, const char *contact, const void *data, size_t len)
{
    struct rs_user *u = b->u;
    batch_submitted(b, st_kvmap_set(u->rs->storage, u->host, u->user, RS_PENDING, contact, data,
                                    data ? len : 0, batch_cb, b));
}

void rs_batch_commit(struct rs_batch *b)
{
    b->committed = true;
    if (b->outstanding == 0)
        batch_finish(b);
}

/* ---- delivery helpers ---- */

void rs_push(struct rs_user *u, const char *jid)
{
    struct st_server *srv = u->rs->srv;
    struct rs_item *it = st_map_get(&u->items, jid);
    char ver[32];
    snprintf(ver, sizeof ver, "%" PRIu64, u->ver);
    for (struct st_session *s = st_session_first(srv, u->host, u->bare); s;
         s = st_session_next(s)) {
        if (!st_session_interested(s))
            continue;
        struct st_xml *iq = st_xml_new("iq", ST_NS_CLIENT);
        char id[32];
        snprintf(id, sizeof id, "push%" PRIu64 "-%" PRIu64, u->ver, st_now_ms(srv));
        st_xml_set_attr(iq, "type", "set");
        st_xml_set_attr(iq, "id", id);
        st_xml_set_attr(iq, "from", u->bare);
        st_xml_set_attr(iq, "to", st_session_jid(s)->full);
        struct st_xml *q = st_xml_add_child(iq, "query", RS_NS_ROSTER);
        st_xml_set_attr(q, "ver", ver);
        rs_item_xml(q, it, jid);
        st_session_deliver(s, iq);
        st_xml_unref(iq);
    }
    if (u->rs->push_observer) {
        struct st_xml *q = st_xml_new("query", RS_NS_ROSTER);
        st_xml_set_attr(q, "ver", ver);
        rs_item_xml(q, it, jid);
        u->rs->push_observer(u, q, u->rs->push_observer_ud);
        st_xml_unref(q);
    }
}

void rs_set_push_observer(struct rs *rs, rs_push_observer fn, void *ud)
{
    rs->push_observer = fn;
    rs->push_observer_ud = ud;
}

int rs_send_presence(struct st_server *srv, const char *host, const char *bare, const char *to)
{
    int n = 0;
    for (struct st_session *s = st_session_first(srv, host, bare); s; s = st_session_next(s)) {
        struct st_xml *p = st_session_presence(s);
        if (!st_session_available(s) || !p)
            continue;
        struct st_xml *c = st_xml_copy(p);
        st_xml_set_attr(c, "from", st_session_jid(s)->full);
        st_xml_set_attr(c, "to", to);
        st_xml_set_attr(c, "id", NULL);
        st_send(srv, c);
        st_xml_unref(c);
        n++;
    }
    return n;
}

void rs_send_typed(struct st_server *srv, const char *type, const char *from, const char *to)
{
    struct st_xml *p = st_xml_new("presence", ST_NS_CLIENT);
    if (type)
        st_xml_set_attr(p, "type", type);
    st_xml_set_attr(p, "from", from);
    st_xml_set_attr(p, "to", to);
    st_send(srv, p);
    st_xml_unref(p);
}

void rs_send_unavailable(struct st_server *srv, const char *host, const char *bare,
                         const char *to)
{
    for (struct st_session *s = st_session_first(srv, host, bare); s; s = st_session_next(s))
        if (st_session_available(s))
            rs_send_typed(srv, "unavailable", st_session_jid(s)->full, to);
}
