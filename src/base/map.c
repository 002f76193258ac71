/* String-keyed hash map (see map.h). Word-at-a-time multiplicative hashing; doubles at load
 * 1, and shrinks to load 1/2 once fewer than a quarter of the buckets are used (at the next
 * insert or on st_map_shrink), so a map that once held a crowd does not keep its bucket
 * array. */
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
    if (!m->count)
        return NULL; /* no hashing for the many maps that are usually empty */
    struct st_map_entry **pp = find(m, key, hash_str(key));
    return pp && *pp ? (*pp)->value : NULL;
}

#define MIN_BUCKETS 8

/* Rehashes every entry into n buckets (a power of two). */
static void resize(struct st_map *m, size_t n)
{
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

/* Bucket count for count entries at load 1/2 (never below MIN_BUCKETS). */
static size_t fit(size_t count)
{
    size_t n = MIN_BUCKETS;
    while (n < count * 2)
        n *= 2;
    return n;
}

void st_map_shrink(struct st_map *m)
{
    /* Why: bucket arrays only grew, so a map sized for a login storm stayed that size. */
    if (m->nbuckets > MIN_BUCKETS && m->count < m->nbuckets / 4)
        resize(m, fit(m->count));
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
        resize(m, m->nbuckets ? m->nbuckets * 2 : MIN_BUCKETS);
    else
        st_map_shrink(m); /* inserting is never allowed while iterating: a safe point */
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
