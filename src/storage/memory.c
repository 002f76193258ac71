/* The "memory" storage driver: the storage contract (storage.h) held in RAM, for tests and
 * ephemeral servers. Same semantics as the SQLite driver, checked by the same conformance
 * suite (tests/unit/test_storage.c): bytewise sorted listings, archive order by (when, append
 * order), 128-bit random ids. Keys of the hash maps are the length-prefixed concatenation of
 * host, user and store ("4:host5:alice8:accounts"), which is unambiguous for any bytes and
 * makes "everything of one user" a key prefix. Data structures favour simplicity over speed:
 * archive lookups by id are linear. The front end serialises all calls. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/map.h"
#include "base/mem.h"
#include "storage/driver.h"

struct mem_blob {
    size_t len;
    unsigned char data[];
};

struct mem_item {
    uint64_t seq;
    int64_t when;
    char *id;
    char *with;
    struct mem_blob *value;
};

struct mem_archive {
    struct mem_item *items; /* sorted by (when, seq) */
    size_t n, cap;
};

struct mem_db {
    struct st_map kv;       /* key(h,u,s) -> struct mem_blob */
    struct st_map maps;     /* key(h,u,s) -> struct st_map of key -> struct mem_blob */
    struct st_map archives; /* key(h,u,s) -> struct mem_archive */
    uint64_t seq;
};

static char *make_key(const char *h, const char *u, const char *s)
{
    struct st_buf b;
    st_buf_init(&b, 0);
    st_buf_printf(&b, "%zu:%s%zu:%s", strlen(h), h, strlen(u), u);
    if (s)
        st_buf_printf(&b, "%zu:%s", strlen(s), s);
    return st_buf_take(&b);
}

/* Reads one length-prefixed part at *p; returns a new string or NULL when malformed. */
static char *next_part(const char **p)
{
    char *end = NULL;
    unsigned long n = strtoul(*p, &end, 10);
    if (end == *p || *end != ':' || strlen(end + 1) < n)
        return NULL;
    char *part = st_strndup(end + 1, n);
    *p = end + 1 + n;
    return part;
}

static struct mem_blob *blob_new(const void *data, size_t len)
{
    struct mem_blob *b = st_malloc(sizeof *b + len + 1);
    b->len = len;
    if (len)
        memcpy(b->data, data, len);
    b->data[len] = 0;
    return b;
}

static void *blob_copy(const struct mem_blob *b)
{
    void *out = st_malloc(b->len + 1);
    memcpy(out, b->data, b->len + 1);
    return out;
}

static void free_map_of_blobs(struct st_map *m)
{
    for (struct st_map_entry *e = st_map_first(m); e; e = st_map_next(m, e))
        st_free(e->value);
    st_map_free(m);
}

static void free_archive(struct mem_archive *a)
{
    for (size_t i = 0; i < a->n; i++) {
        st_free(a->items[i].id);
        st_free(a->items[i].with);
        st_free(a->items[i].value);
    }
    st_free(a->items);
    st_free(a);
}

static int mem_open(const char *path, void **db, char **err)
{
    (void)path;
    (void)err;
    struct mem_db *m = ST_NEW(struct mem_db);
    st_map_init(&m->kv);
    st_map_init(&m->maps);
    st_map_init(&m->archives);
    *db = m;
    return 0;
}

static void mem_close(void *db)
{
    struct mem_db *m = db;
    if (!m)
        return;
    free_map_of_blobs(&m->kv);
    for (struct st_map_entry *e = st_map_first(&m->maps); e; e = st_map_next(&m->maps, e)) {
        free_map_of_blobs(e->value);
        st_free(e->value);
    }
    st_map_free(&m->maps);
    for (struct st_map_entry *e = st_map_first(&m->archives); e;
         e = st_map_next(&m->archives, e))
        free_archive(e->value);
    st_map_free(&m->archives);
    st_free(m);
}

static int mem_kv_get(void *db, const char *h, const char *u, const char *s, void **data,
                      size_t *len)
{
    struct mem_db *m = db;
    char *k = make_key(h, u, s);
    struct mem_blob *b = st_map_get(&m->kv, k);
    st_free(k);
    if (!b)
        return ST_ENOTFOUND;
    *data = blob_copy(b);
    *len = b->len;
    return 0;
}

static int mem_kv_set(void *db, const char *h, const char *u, const char *s, const void *data,
                      size_t len, enum st__kv_mode mode)
{
    struct mem_db *m = db;
    char *k = make_key(h, u, s);
    int rc = 0;
    if (!data) {
        st_free(st_map_del(&m->kv, k));
    } else if (mode == ST__KV_ADD && st_map_get(&m->kv, k)) {
        rc = ST_EEXIST;
    } else {
        st_free(st_map_set(&m->kv, k, blob_new(data, len)));
    }
    st_free(k);
    return rc;
}

static int mem_kvmap_get(void *db, const char *h, const char *u, const char *s, const char *key,
                         void **data, size_t *len)
{
    struct mem_db *m = db;
    char *k = make_key(h, u, s);
    struct st_map *map = st_map_get(&m->maps, k);
    st_free(k);
    struct mem_blob *b = map ? st_map_get(map, key) : NULL;
    if (!b)
        return ST_ENOTFOUND;
    *data = blob_copy(b);
    *len = b->len;
    return 0;
}

static int mem_kvmap_set(void *db, const char *h, const char *u, const char *s, const char *key,
                         const void *data, size_t len)
{
    struct mem_db *m = db;
    char *k = make_key(h, u, s);
    struct st_map *map = st_map_get(&m->maps, k);
    if (!data) {
        if (map) {
            st_free(st_map_del(map, key));
            if (map->count == 0) {
                st_map_del(&m->maps, k);
                st_map_free(map);
                st_free(map);
            }
        }
    } else {
        if (!map) {
            map = ST_NEW(struct st_map);
            st_map_init(map);
            st_map_set(&m->maps, k, map);
        }
        st_free(st_map_set(map, key, blob_new(data, len)));
    }
    st_free(k);
    return 0;
}

static int cmp_rows(const void *a, const void *b)
{
    return strcmp(((const struct st_kvmap_row *)a)->key, ((const struct st_kvmap_row *)b)->key);
}

static int mem_kvmap_list(void *db, const char *h, const char *u, const char *s,
                          struct st_kvmap_row **rows, size_t *n)
{
    struct mem_db *m = db;
    char *k = make_key(h, u, s);
    struct st_map *map = st_map_get(&m->maps, k);
    st_free(k);
    *rows = NULL;
    *n = 0;
    if (!map || map->count == 0)
        return 0;
    struct st_kvmap_row *r = st_calloc(map->count, sizeof *r);
    size_t i = 0;
    for (struct st_map_entry *e = st_map_first(map); e; e = st_map_next(map, e), i++) {
        const struct mem_blob *b = e->value;
        r[i].key = st_strdup(e->key);
        r[i].data = blob_copy(b);
        r[i].len = b->len;
    }
    qsort(r, i, sizeof *r, cmp_rows);
    *rows = r;
    *n = i;
    return 0;
}

/* Removes every entry whose key starts with prefix, freeing values with fn. */
static void del_prefix(struct st_map *map, const char *prefix, void (*fn)(void *))
{
    size_t plen = strlen(prefix);
    struct st_map_entry *e = st_map_first(map);
    while (e) {
        struct st_map_entry *next = st_map_next(map, e);
        if (strncmp(e->key, prefix, plen) == 0) {
            char *key = st_strdup(e->key); /* e is freed by the delete */
            fn(st_map_del(map, key));
            st_free(key);
        }
        e = next;
    }
}

static void free_blob_map(void *p)
{
    free_map_of_blobs(p);
    st_free(p);
}

static void free_archive_v(void *p)
{
    free_archive(p);
}

static int mem_delete_user(void *db, const char *h, const char *u)
{
    struct mem_db *m = db;
    char *prefix = make_key(h, u, NULL);
    del_prefix(&m->kv, prefix, st_free);
    del_prefix(&m->maps, prefix, free_blob_map);
    del_prefix(&m->archives, prefix, free_archive_v);
    st_free(prefix);
    return 0;
}

static int cmp_pairs(const void *a, const void *b)
{
    const struct st__user_pair *x = a, *y = b;
    int c = strcmp(x->host, y->host);
    return c ? c : strcmp(x->user, y->user);
}

static int mem_users(void *db, const char *h, const char *s, struct st__user_pair **out,
                     size_t *n)
{
    struct mem_db *m = db;
    struct st__user_pair *pairs = st_calloc(m->kv.count ? m->kv.count : 1, sizeof *pairs);
    size_t k = 0;
    for (struct st_map_entry *e = st_map_first(&m->kv); e; e = st_map_next(&m->kv, e)) {
        const char *p = e->key;
        char *host = next_part(&p);
        char *user = host ? next_part(&p) : NULL;
        char *store = user ? next_part(&p) : NULL;
        if (store && strcmp(store, s) == 0 && (!h || strcmp(host, h) == 0)) {
            pairs[k].host = host;
            pairs[k].user = user;
            k++;
        } else {
            st_free(host);
            st_free(user);
        }
        st_free(store);
    }
    /* one value per (host, user, store), so pairs are already distinct */
    qsort(pairs, k, sizeof *pairs, cmp_pairs);
    *out = pairs;
    *n = k;
    return 0;
}

static struct mem_archive *get_archive(struct mem_db *m, const char *h, const char *u,
                                       const char *s, bool create)
{
    char *k = make_key(h, u, s);
    struct mem_archive *a = st_map_get(&m->archives, k);
    if (!a && create) {
        a = ST_NEW(struct mem_archive);
        st_map_set(&m->archives, k, a);
    }
    st_free(k);
    return a;
}

static int mem_archive_append(void *db, const char *h, const char *u, const char *s,
                              const char *with, int64_t when, const void *data, size_t len,
                              const char *id)
{
    struct mem_db *m = db;
    struct mem_archive *a = get_archive(m, h, u, s, true);
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->items = st_realloc(a->items, a->cap * sizeof *a->items);
    }
    /* upper bound of when: equal timestamps keep append order */
    size_t lo = 0, hi = a->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->items[mid].when <= when)
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(&a->items[lo + 1], &a->items[lo], (a->n - lo) * sizeof *a->items);
    a->items[lo] = (struct mem_item){
        .seq = ++m->seq,
        .when = when,
        .id = st_strdup(id),
        .with = st_strdup(with),
        .value = blob_new(data, len),
    };
    a->n++;
    return 0;
}

static long find_item(const struct mem_archive *a, const char *id)
{
    for (size_t i = 0; a && i < a->n; i++)
        if (strcmp(a->items[i].id, id) == 0)
            return (long)i;
    return -1;
}

static bool item_matches(const struct mem_item *it, const struct st_archive_query *q)
{
    if (q->with && (!it->with || strcmp(it->with, q->with) != 0))
        return false;
    if (q->start && it->when < q->start)
        return false;
    if (q->end && it->when > q->end)
        return false;
    return true;
}

static int mem_archive_select(void *db, const char *h, const char *u, const char *s,
                              const struct st_archive_query *q, int del,
                              struct st_archive_item **items, size_t *n, int *complete)
{
    struct mem_db *m = db;
    static const struct st_archive_query all = {0};
    if (!q)
        q = &all;
    struct mem_archive *a = get_archive(m, h, u, s, false);
    if (!del) {
        *items = NULL;
        *n = 0;
        *complete = 1;
    }
    /* index range [lo, hi) allowed by after/before */
    long lo = 0, hi = a ? (long)a->n : 0;
    if (q->after) {
        long i = find_item(a, q->after);
        if (i < 0)
            return ST_ENOTFOUND;
        lo = i + 1;
    }
    if (q->before) {
        long i = find_item(a, q->before);
        if (i < 0)
            return ST_ENOTFOUND;
        hi = i;
    }
    if (!a || lo >= hi)
        return 0;
    size_t *sel = st_calloc((size_t)(hi - lo), sizeof *sel);
    size_t k = 0;
    bool more = false;
    long step = q->reverse ? -1 : 1;
    for (long i = q->reverse ? hi - 1 : lo; i >= lo && i < hi; i += step) {
        if (!item_matches(&a->items[i], q))
            continue;
        if (q->max && k == q->max) {
            more = true;
            break;
        }
        sel[k++] = (size_t)i;
    }
    if (del) {
        /* compact, keeping order; selected indexes are unique */
        bool *drop = st_calloc(a->n, sizeof *drop);
        for (size_t i = 0; i < k; i++)
            drop[sel[i]] = true;
        size_t w = 0;
        for (size_t i = 0; i < a->n; i++) {
            if (drop[i]) {
                st_free(a->items[i].id);
                st_free(a->items[i].with);
                st_free(a->items[i].value);
            } else {
                a->items[w++] = a->items[i];
            }
        }
        a->n = w;
        st_free(drop);
    } else if (k) {
        struct st_archive_item *out = st_calloc(k, sizeof *out);
        for (size_t i = 0; i < k; i++) {
            const struct mem_item *it = &a->items[sel[i]];
            out[i].id = st_strdup(it->id);
            out[i].when = it->when;
            out[i].with = st_strdup(it->with);
            out[i].data = blob_copy(it->value);
            out[i].len = it->value->len;
        }
        *items = out;
        *n = k;
    }
    if (!del)
        *complete = !more;
    st_free(sel);
    return 0;
}

static int mem_archive_count(void *db, const char *h, const char *u, const char *s,
                             size_t *count)
{
    struct mem_archive *a = get_archive(db, h, u, s, false);
    *count = a ? a->n : 0;
    return 0;
}

const struct st__storage_driver st__memory_driver = {
    .name = "memory",
    .open = mem_open,
    .close = mem_close,
    .kv_get = mem_kv_get,
    .kv_set = mem_kv_set,
    .kvmap_get = mem_kvmap_get,
    .kvmap_set = mem_kvmap_set,
    .kvmap_list = mem_kvmap_list,
    .delete_user = mem_delete_user,
    .users = mem_users,
    .archive_append = mem_archive_append,
    .archive_select = mem_archive_select,
    .archive_count = mem_archive_count,
};
