/* String-keyed hash map (see map.h). Word-at-a-time multiplicative hashing; doubles at load
 * 1. */
#include "base/map.h"
#include "base/mem.h"

#include <stdint.h>
#include <string.h>

/* Eight bytes per step: the keys are JIDs and hostnames looked up several times per routed
 * stanza, and a byte-wise FNV chain of dependent multiplies was a visible share of the
 * message path. Like FNV it is not keyed; chains are kept short by doubling at load 1. */
static size_t hash_str(const char *s)
{
    size_t n = strlen(s);
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x94D049BB133111EBULL;
    h ^= h >> 29;
    return (size_t)h;
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
