/* String-keyed hash map with void* values (chained, power-of-two buckets).
 * Keys are copied; values are borrowed — the map never frees them. */
#ifndef ST_BASE_MAP_H
#define ST_BASE_MAP_H

#include <stddef.h>

struct st_map_entry {
    struct st_map_entry *next;
    size_t hash;
    void *value;
    char key[]; /* NUL-terminated copy */
};

struct st_map {
    struct st_map_entry **buckets;
    size_t nbuckets; /* 0 or a power of two */
    size_t count;
};

/* Initialises an empty map (no allocation until the first insert). */
void st_map_init(struct st_map *m);
/* Frees the map's own storage (not the values). */
void st_map_free(struct st_map *m);
/* Returns the value stored under key, or NULL. */
void *st_map_get(const struct st_map *m, const char *key);
/* Stores value under key, replacing any previous value; returns the previous value or NULL. */
void *st_map_set(struct st_map *m, const char *key, void *value);
/* Removes key; returns its value or NULL. Never resizes (deleting during iteration is
 * allowed, see below); an emptied map shrinks at the next insert or st_map_shrink. */
void *st_map_del(struct st_map *m, const char *key);
/* Gives back bucket memory when fewer than a quarter of the buckets are in use (rehashing to
 * load 1/2). Must not be called while iterating over m. */
void st_map_shrink(struct st_map *m);

/* Iteration: for (it = st_map_first(m); it; it = st_map_next(m, it)).
 * The map must not be modified while iterating except by st_map_del of the current entry's
 * key after fetching the next entry. */
struct st_map_entry *st_map_first(const struct st_map *m);
struct st_map_entry *st_map_next(const struct st_map *m, const struct st_map_entry *e);

#endif
