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
/* Completes every queued operation (their callbacks run), then closes. Loop thread; may run
 * the loop briefly to deliver the callbacks. */
void st_storage_close(struct st_storage *st);

/* ---- callbacks (loop thread) ---- */
/* rc: 0, ST_ENOTFOUND (get of a missing value), or an error. data valid only during the call. */
typedef void (*st_storage_get_cb)(void *ud, int rc, const void *data, size_t len);
typedef void (*st_storage_done_cb)(void *ud, int rc);

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
/* Deletes every key of (host, user, store); store NULL = every store of the user. */
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

#endif
