/* Bounded growable byte buffer. Every buffer has a maximum; appends past it
 * fail with ST_ELIMIT instead of growing, which is how output queues and
 * accumulators stay bounded. */
#ifndef ST_BASE_BUF_H
#define ST_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <string.h>

struct st_buf {
    char *data;   /* owned; NUL-terminated when len < cap */
    size_t len;
    size_t cap;
    size_t max;   /* hard limit on len; 0 means SIZE_MAX */
};

/* Initialises an empty buffer with the given maximum (0 = unbounded; use only for scratch). */
void st_buf_init(struct st_buf *b, size_t max);
/* Frees the storage; the buffer is empty and reusable afterwards. */
void st_buf_free(struct st_buf *b);
/* Empties the buffer, keeping its storage. */
void st_buf_reset(struct st_buf *b);
/* Appends n bytes; returns 0 or ST_ELIMIT (buffer unchanged). */
int st_buf_append_slow(struct st_buf *b, const void *data, size_t n);
/* The common case (the bytes fit in the storage already there) inline: serialisation calls
 * this a dozen times per stanza. */
static inline int st_buf_append(struct st_buf *b, const void *data, size_t n)
{
    if (b->data && n < b->cap - b->len && n <= b->max - b->len) {
        if (n)
            memcpy(b->data + b->len, data, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
    }
    return st_buf_append_slow(b, data, n);
}
/* Appends a NUL-terminated string. */
static inline int st_buf_puts(struct st_buf *b, const char *s)
{
    return st_buf_append(b, s, strlen(s));
}
/* Makes room for n more bytes and returns where they go: the caller writes at most n there and
 * then calls st_buf_commit with the count written. NULL (nothing changed) when n more bytes
 * would pass the maximum. For writers that know a bound but not the exact size. */
char *st_buf_space(struct st_buf *b, size_t n);
/* Adds the n bytes written at st_buf_space's pointer. */
static inline void st_buf_commit(struct st_buf *b, size_t n)
{
    b->len += n;
    b->data[b->len] = '\0';
}
/* Appends formatted text. */
int st_buf_printf(struct st_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s escaped for XML character data or attribute values (&, <, >, ', "). */
int st_buf_put_xml_escaped(struct st_buf *b, const char *s, size_t n);
/* Removes the first n bytes. */
void st_buf_consume(struct st_buf *b, size_t n);
/* Returns the data as a NUL-terminated string; ownership passes to the caller, buffer becomes
 * empty. */
char *st_buf_take(struct st_buf *b);

#endif
