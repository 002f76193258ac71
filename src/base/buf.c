/* Bounded growable byte buffer (see buf.h). */
#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

void st_buf_init(struct st_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : SIZE_MAX - 1;
}

void st_buf_free(struct st_buf *b)
{
    st_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void st_buf_reset(struct st_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int reserve(struct st_buf *b, size_t extra)
{
    if (extra > b->max - b->len)
        return ST_ELIMIT;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256; /* most stanzas fit without a realloc */
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->data = st_realloc(b->data, cap);
    b->cap = cap;
    return 0;
}

char *st_buf_space(struct st_buf *b, size_t n)
{
    if (reserve(b, n))
        return NULL;
    return b->data + b->len;
}

int st_buf_append_slow(struct st_buf *b, const void *data, size_t n)
{
    int rc = reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int st_buf_printf(struct st_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return ST_EINVAL;
    int rc = reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int st_buf_put_xml_escaped(struct st_buf *b, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
        default: continue;
        }
        int rc = st_buf_append(b, s + start, i - start);
        if (!rc)
            rc = st_buf_puts(b, rep);
        if (rc)
            return rc;
        start = i + 1;
    }
    return st_buf_append(b, s + start, n - start);
}

void st_buf_consume(struct st_buf *b, size_t n)
{
    if (n >= b->len) {
        st_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *st_buf_take(struct st_buf *b)
{
    if (!b->data)
        return st_strdup("");
    char *d = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
