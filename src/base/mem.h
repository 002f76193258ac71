/* Allocation wrappers. Every allocation in Starling goes through these so a
 * test build can inject failures and so out-of-memory is handled in one
 * place: the wrappers abort on failure (an XMPP server that cannot allocate
 * a few bytes cannot make progress safely), which keeps error paths for
 * real protocol errors. */
#ifndef ST_BASE_MEM_H
#define ST_BASE_MEM_H

#include <stddef.h>

/* Returns new zeroed memory of n*size bytes; never NULL (aborts). Caller frees with st_free. */
void *st_calloc(size_t n, size_t size);
/* Returns new memory of size bytes; never NULL (aborts). */
void *st_malloc(size_t size);
/* Resizes p (may be NULL); never NULL (aborts). */
void *st_realloc(void *p, size_t size);
/* Frees p (NULL allowed). */
void st_free(void *p);
/* Returns a new NUL-terminated copy of s (NULL in, NULL out). */
char *st_strdup(const char *s);
/* Returns a new NUL-terminated copy of the first n bytes of s. */
char *st_strndup(const char *s, size_t n);
/* Overwrites n bytes at p with zeros in a way the compiler may not elide; for secrets. */
void st_memzero(void *p, size_t n);

#define ST_NEW(type) ((type *)st_calloc(1, sizeof(type)))

#endif
