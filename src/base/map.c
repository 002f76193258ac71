/* String-keyed hash map (see map.h). FNV-1a hashing; doubles at load 1. */
#include "base/map.h"
#include "base/mem.h"

#include <string.h>

static size_t hash_str(const char *s)
{
    size_t h = (size_t)1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= (size_t)1099511628211ULL;
    }
    return h;
}

void st_map_init(struct st_map *m)
{
    m->buckets = NULL;
    m->nbuckets = 0;
    m->count = 0;
}

void st_map_free(struct st_map *m)
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct st_map_entry *e = m->buckets[i];
        while (e) {
            struct st_map_entry *n = e->next;
            st_free(e);
            e = n;
        }
    }
    st_free(m->buckets);
    st_map_init(m);
}

static struct st_map_entry **find(const struct st_map *m, const char *key, size_t h)
{
    if (!m->nbuckets)
        return NULL;
    struct st_map_entry **pp = &m->buckets[h & (m->nbuckets - 1)];
    while (*pp) {
        if ((*pp)->hash == h && strcmp((*pp)->key, key) == 0)
            return pp;
        pp = &(*pp)->next;
    }
    return pp;
}

void *st_map_get(const struct st_map *m, const char *key)
{
    struct st_map_entry **pp = find(m, key, hash_str(key));
    return pp && *pp ? (*pp)->value : NULL;
}

static void grow(struct st_map *m)
{
    size_t n = m->nbuckets ? m->nbuckets * 2 : 8;
    struct st_map_entry **b = st_calloc(n, sizeof *b);
    for (size_t i = 0; i < m->nbuckets; i++) {
        struct st_map_entry *e = m->buckets[i];
        while (e) {
            struct st_map_entry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    st_free(m->buckets);
    m->buckets = b;
    m->nbuckets = n;
}

void *st_map_set(struct st_map *m, const char *key, void *value)
{
    size_t h = hash_str(key);
    struct st_map_entry **pp = find(m, key, h);
    if (pp && *pp) {
        void *old = (*pp)->value;
        (*pp)->value = value;
        return old;
    }
    if (m->count + 1 > m->nbuckets)
        grow(m);
    size_t klen = strlen(key);
    struct st_map_entry *e = st_malloc(sizeof *e + klen + 1);
    memcpy(e->key, key, klen + 1);
    e->hash = h;
    e->value = value;
    e->next = m->buckets[h & (m->nbuckets - 1)];
    m->buckets[h & (m->nbuckets - 1)] = e;
    m->count++;
    return NULL;
}

void *st_map_del(struct st_map *m, const char *key)
{
    struct st_map_entry **pp = find(m, key, hash_str(key));
    if (!pp || !*pp)
        return NULL;
    struct st_map_entry *e = *pp;
    void *v = e->value;
    *pp = e->next;
    st_free(e);
    m->count--;
    return v;
}

struct st_map_entry *st_map_first(const struct st_map *m)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        if (m->buckets[i])
            return m->buckets[i];
    return NULL;
}

struct st_map_entry *st_map_next(const struct st_map *m, const struct st_map_entry *e)
{
    if (e->next)
        return e->next;
    for (size_t i = (e->hash & (m->nbuckets - 1)) + 1; i < m->nbuckets; i++)
        if (m->buckets[i])
            return m->buckets[i];
    return NULL;
}
