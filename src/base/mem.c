/* Allocation wrappers (see mem.h): abort on exhaustion, zero secrets. */
#include "base/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

static void oom(size_t size)
{
    fprintf(stderr, "starling: out of memory allocating %zu bytes\n", size);
    abort();
}

void *st_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *st_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        oom(size);
    return p;
}

void *st_realloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (!q)
        oom(size);
    return q;
}

void st_free(void *p)
{
    free(p);
}

char *st_strdup(const char *s)
{
    if (!s)
        return NULL;
    return st_strndup(s, strlen(s));
}

char *st_strndup(const char *s, size_t n)
{
    char *d = st_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void st_memzero(void *p, size_t n)
{
    if (p)
        OPENSSL_cleanse(p, n);
}
