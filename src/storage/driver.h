/* Internal interface between the storage front end (storage.c: argument checks, the worker
 * thread, completion delivery) and the drivers (sqlite.c, memory.c). Driver functions are
 * synchronous and are never called concurrently on one handle: the front end serialises them
 * with a mutex, so drivers need no locking of their own. Results are returned in new memory
 * the front end frees with st__storage_free_rows / st__storage_free_items / _pairs. */
#ifndef ST_STORAGE_DRIVER_H
#define ST_STORAGE_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

/* A (host, user) pair of a listing; both strings owned by the array. */
struct st__user_pair {
    char *host;
    char *user;
};

/* How kv_set treats an existing value. */
enum st__kv_mode { ST__KV_PUT = 0, ST__KV_ADD = 1 };

struct st__storage_driver {
    const char *name;
    /* Opens the handle for path; on failure returns ST_E* and *err (new string). */
    int (*open)(const char *path, void **db, char **err);
    void (*close)(void *db);
    /* *data: new buffer of len+1 bytes, NUL-terminated. ST_ENOTFOUND when missing. */
    int (*kv_get)(void *db, const char *h, const char *u, const char *s, void **data,
                  size_t *len);
    /* data NULL deletes (0 even when missing); ST__KV_ADD fails with ST_EEXIST. */
    int (*kv_set)(void *db, const char *h, const char *u, const char *s, const void *data,
                  size_t len, enum st__kv_mode mode);
    int (*kvmap_get)(void *db, const char *h, const char *u, const char *s, const char *k,
                     void **data, size_t *len);
    int (*kvmap_set)(void *db, const char *h, const char *u, const char *s, const char *k,
                     const void *data, size_t len);
    /* Rows sorted by key (bytewise). */
    int (*kvmap_list)(void *db, const char *h, const char *u, const char *s,
                      struct st_kvmap_row **rows, size_t *n);
    /* Removes the user's keyval, kvmap and archive data. */
    int (*delete_user)(void *db, const char *h, const char *u);
    /* Distinct (host, user) with a keyval value in store s, sorted; h NULL = all hosts. */
    int (*users)(void *db, const char *h, const char *s, struct st__user_pair **out,
                 size_t *n);
    /* Appends with the front end's fresh id. */
    int (*archive_append)(void *db, const char *h, const char *u, const char *s,
                          const char *with, int64_t when, const void *data, size_t len,
                          const char *id);
    /* Query (del = 0) or delete (del = 1) the page q selects; see storage.c for semantics.
     * For delete, items is NULL and nothing is returned but rc. */
    int (*archive_select)(void *db, const char *h, const char *u, const char *s,
                          const struct st_archive_query *q, int del,
                          struct st_archive_item **items, size_t *n, int *complete);
    int (*archive_count)(void *db, const char *h, const char *u, const char *s,
                         size_t *count);
    /* Optional group commit (NULL when pointless): batch_begin opens one transaction for
     * the following calls (returns 0, or an error and no batch); batch_end commits it and
     * returns 0, or an error when nothing of the batch was committed. */
    int (*batch_begin)(void *db);
    int (*batch_end)(void *db);
    /* Optional (NULL when the driver keeps no cache): frees cache memory not needed to
     * answer the next call. */
    void (*release_memory)(void *db);
};

extern const struct st__storage_driver st__sqlite_driver;
extern const struct st__storage_driver st__memory_driver;

/* Frees n rows and their keys and data (rows may be NULL). Any thread. */
void st__storage_free_rows(struct st_kvmap_row *rows, size_t n);
/* Frees n items and their ids, with and data (items may be NULL). Any thread. */
void st__storage_free_items(struct st_archive_item *items, size_t n);
/* Frees n pairs and their strings. Any thread. */
void st__storage_free_pairs(struct st__user_pair *pairs, size_t n);

#endif
