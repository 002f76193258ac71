/* The roster cache shared by the roster and presence modules (RFC 6121 §2,
 * §3): each account's roster is loaded lazily from the storage contract
 * (map "roster": contact JID -> item; map "roster_pending": contact bare
 * JID -> the stored inbound subscription request; keyval "roster_meta":
 * the roster version), kept in memory while the account is in use, and
 * changed only through a per-account queue of operations so that
 * concurrent changes never interleave across asynchronous writes. The
 * roster module owns the state; the presence module reaches it through
 * st_module_find(srv, "roster"). Loop thread only. */
#ifndef ST_MOD_ROSTER_STORE_H
#define ST_MOD_ROSTER_STORE_H

#include "mod/roster_sub.h"
#include "starling/module.h"

#define RS_NS_ROSTER "jabber:iq:roster"

struct rs;

struct rs_item {
    char *jid;   /* prepared contact JID (the map key) */
    char *name;  /* or NULL */
    char **groups;
    size_t ngroups;
    bool to, from, pending_out, approved;
};

struct rs_op;

struct rs_user {
    struct rs *rs;
    char *bare;  /* user@host */
    char *host;
    char *user;
    struct st_map items;   /* jid -> struct rs_item * */
    struct st_map pending; /* contact bare JID -> (void *)1: stored inbound requests */
    uint64_t ver;
    bool loaded, loading, failed, busy, in_kick;
    int load_rc;
    unsigned load_outstanding; /* reads of a load still to answer */
    struct rs_op *head, *tail;
};

/* An operation on one account, run when the account's roster is loaded and no other operation
 * of that account is in progress. run must call rs_done(u) exactly once, possibly later (after
 * its writes completed). u->failed is set when the roster could not be loaded (the operation
 * should answer with an error and change nothing). discard (may be NULL) frees arg when the
 * state is torn down before run was called. */
typedef void (*rs_run_fn)(struct rs_user *u, void *arg);

/* Returns new shared state for srv; max_items bounds each roster. */
struct rs *rs_new(struct st_server *srv, size_t max_items);
/* Tears the state down (module unload). Storage callbacks still outstanding find it marked
 * dead and free it when the last one returns. */
void rs_free(struct rs *rs);
struct st_server *rs_server(struct rs *rs);
/* Brackets an asynchronous call made outside this file: rs_hold before it, rs_release first
 * thing in its callback; rs_release returns false when the state was torn down meanwhile
 * (the callback must then only free its own context). */
void rs_hold(struct rs *rs);
bool rs_release(struct rs *rs);
size_t rs_max_items(struct rs *rs);

/* Queues run(u, arg) for host/user (prepared). Returns 0, or an error (arg not used). */
int rs_enqueue(struct rs *rs, const char *host, const char *user, rs_run_fn run,
               void (*discard)(void *arg), void *arg);
/* Ends the running operation of u and starts the next one. u may be freed by this call. */
void rs_done(struct rs_user *u);
/* Drops the cached roster of host/bare when it is idle and the account has no session other
 * than except (NULL = none), to keep memory small. */
void rs_maybe_drop(struct rs *rs, const char *host, const char *bare,
                   const struct st_session *except);

/* ---- items ---- */
struct rs_item *rs_item_get(struct rs_user *u, const char *jid);
/* The subscription state of jid (item flags plus pending request). */
void rs_state(struct rs_user *u, const char *jid, struct st_sub_state *out);
/* Makes the cache match st for jid: creates the item when st->exists and it is missing,
 * updates its flags, and records pending_in. Returns the item or NULL. */
struct rs_item *rs_set_state(struct rs_user *u, const char *jid, const struct st_sub_state *st);
/* Creates (empty) or returns the item for jid. */
struct rs_item *rs_item_put(struct rs_user *u, const char *jid);
/* Removes the item (and any pending request) from the cache. */
void rs_item_del(struct rs_user *u, const char *jid);
/* Replaces the item's name and groups (copies). */
void rs_item_set_meta(struct rs_item *it, const char *name, char **groups, size_t ngroups);
/* Appends <item/> for it to query (it NULL: jid with subscription='remove'). */
void rs_item_xml(struct st_xml *query, const struct rs_item *it, const char *jid);

/* ---- writes ---- */
struct rs_batch;
typedef void (*rs_batch_done)(struct rs_user *u, int rc, void *arg);
/* Starts a group of writes for u; done runs once all completed (rc 0 or the first error). */
struct rs_batch *rs_batch_new(struct rs_user *u, rs_batch_done done, void *arg);
/* Writes the cached item for jid (deletes it when absent). */
void rs_batch_item(struct rs_batch *b, const char *jid);
/* Increments the roster version and writes it. */
void rs_batch_ver(struct rs_batch *b);
/* Stores (data) or deletes (data NULL) the pending request of contact. */
void rs_batch_pending(struct rs_batch *b, const char *contact, const void *data, size_t len);
/* Submits; done is called later (or now, when nothing was written). */
void rs_batch_commit(struct rs_batch *b);

/* ---- delivery helpers ---- */
/* Sends a roster push for jid (current item, or 'remove' when absent) to u's interested
 * resources (RFC 6121 §2.1.6). */
void rs_push(struct rs_user *u, const char *jid);
/* Called by rs_push after the users' pushes with the push's <query/> (borrowed), whether or
 * not a resource was interested: the privilege module forwards it to components with
 * XEP-0356 roster "get"/"both" permission. */
typedef void (*rs_push_observer)(struct rs_user *u, const struct st_xml *query, void *ud);
/* Sets (fn NULL: clears) the one push observer. */
void rs_set_push_observer(struct rs *rs, rs_push_observer fn, void *ud);
/* Sends the current presence of every available resource of host/bare to 'to' (RFC 6121
 * §3.1.5, §4.3.2). Returns the number sent. */
int rs_send_presence(struct st_server *srv, const char *host, const char *bare, const char *to);
/* Sends unavailable presence from every available resource of host/bare to 'to' (§3.2.2). */
void rs_send_unavailable(struct st_server *srv, const char *host, const char *bare,
                         const char *to);
/* Sends a server-generated presence of type from 'from' to 'to'. */
void rs_send_typed(struct st_server *srv, const char *type, const char *from, const char *to);

#endif
