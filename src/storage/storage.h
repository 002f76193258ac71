/* The storage contract (Prosody's shapes): keyval (one value per user and
 * store), map (per user, store and key) and archive (append-only with
 * queries). Values are opaque bytes. The server uses the asynchronous
 * calls: each runs on the storage worker thread and its callback runs on
 * the loop thread. Tools (the CLI) use the synchronous calls without a
 * loop. A completed write callback means the data is durable (committed
 * to disk): only then may the server acknowledge it. */
#ifndef ST_STORAGE_STORAGE_H
#define ST_STORAGE_STORAGE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct st_storage;

/* Opens the storage: driver "sqlite" (path = data directory; the database file is
 * DIR/starling.db, created and migrated when missing) or "memory" (path ignored).
 * loop may be NULL for synchronous-only use (CLI). Returns 0 and *out, or an ST_E* error
 * with *err (new string, caller frees) describing it. */
int st_storage_open(uv_loop_t *loop, const char *driver, const char *path,
                    struct st_storage **out, char **err);
/* Completes every queued operation (their callbacks run, inside this call), joins the worker,
 * closes the database and frees st. Loop thread (or any thread when opened without a loop).
 * Does not run the loop, so it is safe from a signal-handler callback; the loop must run once
 * more afterwards to release an internal handle. Called from a storage callback, the close
 * happens as soon as that callback returns. NULL is ignored. */
void st_storage_close(struct st_storage *st);

/* ---- callbacks (loop thread) ---- */
/* rc: 0, ST_ENOTFOUND (get of a missing value), or an error. data valid only during the call. */
typedef void (*st_storage_get_cb)(void *ud, int rc, const void *data, size_t len);
typedef void (*st_storage_done_cb)(void *ud, int rc);

/* Frees the driver's cache memory (SQLite's page cache) that is not needed right now, after
 * the operations queued before it; cb gets 0. For the server after many sessions have left,
 * so the cache of their lookups does not stay resident. */
int st_storage_release_memory(struct st_storage *st, st_storage_done_cb cb, void *ud);

/* ---- keyval: (host, user, store) -> bytes ---- */
int st_kv_get(struct st_storage *st, const char *host, const char *user, const char *store,
              st_storage_get_cb cb, void *ud);
/* data NULL deletes. */
int st_kv_set(struct st_storage *st, const char *host, const char *user, const char *store,
              const void *data, size_t len, st_storage_done_cb cb, void *ud);

/* ---- map: (host, user, store, key) -> bytes ---- */
int st_kvmap_get(struct st_storage *st, const char *host, const char *user, const char *store,
                 const char *key, st_storage_get_cb cb, void *ud);
int st_kvmap_set(struct st_storage *st, const char *host, const char *user, const char *store,
                 const char *key, const void *data, size_t len, st_storage_done_cb cb, void *ud);
/* One row of a map listing. */
struct st_kvmap_row { const char *key; const void *data; size_t len; };
typedef void (*st_kvmap_list_cb)(void *ud, int rc, const struct st_kvmap_row *rows, size_t n);
int st_kvmap_list(struct st_storage *st, const char *host, const char *user, const char *store,
                  st_kvmap_list_cb cb, void *ud);
/* Deletes everything of (host, user): keyval, map and archive data of every store. */
int st_kv_delete_user(struct st_storage *st, const char *host, const char *user,
                      st_storage_done_cb cb, void *ud);

/* ---- archive: append-only per (host, user, store) ---- */
struct st_archive_item {
    const char *id;    /* unique, assigned at append */
    int64_t when;      /* unix seconds */
    const char *with;  /* the conversation partner (bare JID), may be NULL */
    const void *data;
    size_t len;
};
struct st_archive_query {
    const char *with;   /* NULL = any */
    int64_t start, end; /* 0 = open */
    const char *before, *after; /* item ids, NULL = open */
    size_t max;         /* 0 = no limit (the server always sets one) */
    int reverse;        /* newest first */
};
typedef void (*st_archive_append_cb)(void *ud, int rc, const char *id);
typedef void (*st_archive_query_cb)(void *ud, int rc, const struct st_archive_item *items, size_t n,
                                    int complete);
int st_archive_append(struct st_storage *st, const char *host, const char *user, const char *store,
                      const char *with, int64_t when, const void *data, size_t len,
                      st_archive_append_cb cb, void *ud);
int st_archive_query(struct st_storage *st, const char *host, const char *user, const char *store,
                     const struct st_archive_query *q, st_archive_query_cb cb, void *ud);
/* Deletes matching items (q NULL = all); cb gets rc. */
int st_archive_delete(struct st_storage *st, const char *host, const char *user, const char *store,
                      const struct st_archive_query *q, st_storage_done_cb cb, void *ud);
/* Counts items for (host,user,store): cb's rc >= 0 is the count. */
int st_archive_count(struct st_storage *st, const char *host, const char *user, const char *store,
                     st_storage_done_cb cb, void *ud);

/* ---- synchronous variants (no loop; CLI and tests). Same semantics. ---- */
/* *data is a new buffer the caller frees with st_free. */
int st_kv_get_sync(struct st_storage *st, const char *host, const char *user, const char *store,
                   void **data, size_t *len);
int st_kv_set_sync(struct st_storage *st, const char *host, const char *user, const char *store,
                   const void *data, size_t len);
/* Calls fn for each user that has a value in store on host (host NULL = every host),
 * in sorted order. */
int st_kv_users_sync(struct st_storage *st, const char *host, const char *store,
                     void (*fn)(void *ud, const char *host, const char *user), void *ud);
int st_kv_delete_user_sync(struct st_storage *st, const char *host, const char *user);
/* Stores a value only when (host, user, store) has none, atomically (also against other
 * processes on the same database): 0, or ST_EEXIST leaving the old value. data must not be
 * NULL. Used to create accounts without a check-then-set race. */
int st_kv_add_sync(struct st_storage *st, const char *host, const char *user, const char *store,
                   const void *data, size_t len);

/* ---- notes common to the calls above ----
 * Strings and data are borrowed (copied before the call returns). host, user and store must
 * not be NULL (except where stated) and are at most ST_STORAGE_NAME_MAX bytes; values at most
 * ST_STORAGE_VALUE_MAX bytes (ST_ELIMIT). Asynchronous calls are made on the loop thread of
 * a storage opened with a loop (ST_EINVAL otherwise); when one returns an error its callback
 * is never called, otherwise it is called exactly once, later, on the loop thread, never
 * from inside the call, and callbacks run in submission order. At most ST_STORAGE_QUEUE_MAX
 * operations may be outstanding (ST_ELIMIT); after st_storage_close began: ST_ECLOSED.
 * Outstanding operations keep the loop alive; an idle storage does not.
 * Synchronous calls may be made from any thread (they serialise with the worker) but block:
 * never on the loop thread of a running server. They take effect in call order with respect
 * to each other, not with respect to queued asynchronous operations.
 * Archive order is (when, append order). A query selects items matching with, start <= when
 * <= end, strictly after the item `after` and strictly before the item `before` (an unknown
 * id gives ST_ENOTFOUND); forward it returns the oldest max of them oldest first, reverse the
 * newest max newest first; complete is 1 when no further matching item lies beyond the page
 * in that direction. st_archive_delete removes exactly the items the same query would return.
 * st_kv_delete_user(_sync) removes everything of the user: keyval, map and archive data. */
#define ST_STORAGE_QUEUE_MAX 100000
#define ST_STORAGE_NAME_MAX 3071
#define ST_STORAGE_VALUE_MAX (64u * 1024 * 1024)

#endif
