/* XML element trees for stanzas (RFC 6120 §8): construction, lookup, deep
 * copy and freeing. Each node is one allocation holding the struct and its
 * name/namespace (or text) inline, because stanzas are built and dropped at
 * a high rate and malloc calls dominate the cost of a small tree; elements
 * from the parser carry their attributes in that allocation too. Freeing
 * and copying walk the tree iteratively so no input can exhaust the stack. */
#include "xml/node.h"

#include "base/mem.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

static struct st_xml *node_alloc(enum st_xml_type type, const char *a, size_t alen,
                                 const char *b, size_t blen)
{
    /* a and b are copied NUL-terminated right after the struct. */
    size_t extra = alen + 1 + (b ? blen + 1 : 0);
    struct st_xml *x = st_calloc(1, sizeof *x + extra);
    x->alloc_size = (unsigned)(sizeof *x + extra);
    char *p = (char *)(x + 1);
    memcpy(p, a, alen);
    p[alen] = '\0';
    x->type = type;
    x->refcount = 1;
    if (type == ST_XML_TEXT) {
        x->text = p;
        x->text_len = alen;
    } else {
        x->name = p;
        x->ns = p + alen + 1;
        memcpy(x->ns, b, blen);
        x->ns[blen] = '\0';
    }
    return x;
}

struct st_xml *st_xml_new(const char *name, const char *ns)
{
    assert(name);
    if (!ns)
        ns = "";
    return node_alloc(ST_XML_ELEMENT, name, strlen(name), ns, strlen(ns));
}

/* Whether p points into x's own allocation (then it is freed with x, never on its own). */
static bool in_node(const struct st_xml *x, const void *p)
{
    uintptr_t a = (uintptr_t)x, q = (uintptr_t)p;
    return q >= a && q < a + x->alloc_size;
}

/* Something below root x changed: its copy of the children as received is stale. */
static void touch(struct st_xml *x)
{
    while (x->parent)
        x = x->parent;
    if (x->raw_inner) {
        st_free(x->raw_inner);
        x->raw_inner = NULL;
        x->raw_inner_len = 0;
    }
}

static char *put_str(char **at, const char *s, size_t n)
{
    char *r = *at;
    memcpy(r, s, n);
    r[n] = '\0';
    *at += n + 1;
    return r;
}

/* Spare attribute slots in a packed element: the router stamps 'from' without a new array. */
#define PACKED_SPARE 2

struct st_xml *st_xml_new_packed(const char *name, size_t name_len, const char *ns, size_t ns_len,
                                 const struct st_xml_attr_in *attrs, unsigned nattrs)
{
    if (!ns) {
        ns = "";
        ns_len = 0;
    }
    unsigned cap = nattrs + PACKED_SPARE;
    size_t strs = name_len + 1 + ns_len + 1;
    for (unsigned i = 0; i < nattrs; i++)
        strs += attrs[i].name_len + 1 + attrs[i].value_len + 1 +
                (attrs[i].ns ? attrs[i].ns_len + 1 : 0);
    size_t size = sizeof(struct st_xml) + cap * sizeof(struct st_xml_attr) + strs;
    struct st_xml *x = st_malloc(size);
    memset(x, 0, sizeof *x);
    x->type = ST_XML_ELEMENT;
    x->refcount = 1;
    x->alloc_size = (unsigned)size;
    x->attrs = (struct st_xml_attr *)(x + 1);
    x->attrs_cap = cap;
    x->nattrs = nattrs;
    char *at = (char *)(x->attrs + cap);
    x->name = put_str(&at, name, name_len);
    x->ns = put_str(&at, ns, ns_len);
    for (unsigned i = 0; i < nattrs; i++) {
        struct st_xml_attr *a = &x->attrs[i];
        a->name = put_str(&at, attrs[i].name, attrs[i].name_len);
        a->value = put_str(&at, attrs[i].value, attrs[i].value_len);
        a->ns = attrs[i].ns ? put_str(&at, attrs[i].ns, attrs[i].ns_len) : NULL;
    }
    return x;
}

void st_xml_keep_raw_inner(struct st_xml *root, const char *data, size_t n)
{
    assert(root && !root->parent && n > 0);
    st_free(root->raw_inner);
    root->raw_inner = st_malloc(n);
    memcpy(root->raw_inner, data, n);
    root->raw_inner_len = n;
}

struct st_xml *st_xml_new_text(const char *text, size_t n)
{
    return node_alloc(ST_XML_TEXT, text ? text : "", text ? n : 0, NULL, 0);
}

struct st_xml *st_xml_ref(struct st_xml *x)
{
    assert(x && !x->parent && x->refcount > 0);
    x->refcount++;
    return x;
}

void st_xml_unref(struct st_xml *x)
{
    if (!x)
        return;
    assert(!x->parent && x->refcount > 0);
    if (--x->refcount == 0)
        st_xml_free(x);
}

static void free_attrs(struct st_xml *x)
{
    for (unsigned i = 0; i < x->nattrs; i++)
        if (!in_node(x, x->attrs[i].name))
            st_free(x->attrs[i].name);
    if (!in_node(x, x->attrs))
        st_free(x->attrs);
}

void st_xml_free(struct st_xml *x)
{
    if (!x)
        return;
    assert(!x->parent);
    /* Post-order walk: children are unlinked from the front as they are freed, so
     * a node whose first_child became NULL is a leaf. */
    struct st_xml *n = x;
    while (n) {
        if (n->first_child) {
            n = n->first_child;
            continue;
        }
        struct st_xml *next = NULL;
        if (n != x) {
            n->parent->first_child = n->next;
            next = n->next ? n->next : n->parent;
        }
        free_attrs(n);
        st_free(n->raw_inner);
        st_free(n);
        n = next;
    }
}

static struct st_xml *clone_shallow(const struct st_xml *x)
{
    struct st_xml *c;
    if (x->type == ST_XML_TEXT)
        return st_xml_new_text(x->text, x->text_len);
    c = node_alloc(ST_XML_ELEMENT, x->name, strlen(x->name), x->ns, strlen(x->ns));
    for (unsigned i = 0; i < x->nattrs; i++)
        st_xml_append_attr(c, x->attrs[i].ns, x->attrs[i].name, x->attrs[i].value);
    return c;
}

struct st_xml *st_xml_copy(const struct st_xml *x)
{
    struct st_xml *root = clone_shallow(x);
    const struct st_xml *src = x->first_child;
    struct st_xml *dparent = root;
    while (src) {
        struct st_xml *c = st_xml_append(dparent, clone_shallow(src));
        if (src->first_child) {
            dparent = c;
            src = src->first_child;
            continue;
        }
        while (src != x && !src->next) {
            src = src->parent;
            dparent = dparent->parent;
        }
        if (src == x)
            break;
        src = src->next;
    }
    return root;
}

static bool ns_eq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

static int find_attr(const struct st_xml *x, const char *ns, const char *name)
{
    for (unsigned i = 0; i < x->nattrs; i++)
        if (x->attrs[i].name[0] == name[0] && ns_eq(x->attrs[i].ns, ns) &&
            strcmp(x->attrs[i].name, name) == 0)
            return (int)i;
    return -1;
}

const char *st_xml_attr(const struct st_xml *x, const char *name)
{
    return st_xml_attr_ns(x, NULL, name);
}

const char *st_xml_attr_ns(const struct st_xml *x, const char *ns, const char *name)
{
    if (!x || x->type != ST_XML_ELEMENT)
        return NULL;
    int i = find_attr(x, ns, name);
    return i < 0 ? NULL : x->attrs[i].value;
}

/* Fills a with one allocation laid out as name\0value\0ns\0; a->name is the block. */
static void attr_fill(struct st_xml_attr *a, const char *ns, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value), sl = ns ? strlen(ns) : 0;
    char *blk = st_malloc(nl + 1 + vl + 1 + (ns ? sl + 1 : 0));
    memcpy(blk, name, nl + 1);
    memcpy(blk + nl + 1, value, vl + 1);
    a->name = blk;
    a->value = blk + nl + 1;
    a->ns = NULL;
    if (ns) {
        a->ns = blk + nl + 1 + vl + 1;
        memcpy(a->ns, ns, sl + 1);
    }
}

void st_xml_append_attr(struct st_xml *x, const char *ns, const char *name, const char *value)
{
    assert(x && x->type == ST_XML_ELEMENT && name && value);
    if (x->parent)
        touch(x);
    if (x->nattrs == x->attrs_cap) {
        unsigned cap = x->attrs_cap ? x->attrs_cap * 2 : 4;
        if (in_node(x, x->attrs)) {
            /* A packed array cannot grow in place; its strings stay where they are. */
            struct st_xml_attr *a = st_malloc(cap * sizeof *a);
            memcpy(a, x->attrs, x->nattrs * sizeof *a);
            x->attrs = a;
        } else {
            x->attrs = st_realloc(x->attrs, cap * sizeof *x->attrs);
        }
        x->attrs_cap = cap;
    }
    attr_fill(&x->attrs[x->nattrs++], ns, name, value);
}

void st_xml_set_attr(struct st_xml *x, const char *name, const char *value)
{
    st_xml_set_attr_ns(x, NULL, name, value);
}

void st_xml_set_attr_ns(struct st_xml *x, const char *ns, const char *name, const char *value)
{
    assert(x && x->type == ST_XML_ELEMENT && name);
    int i = find_attr(x, ns, name);
    if (i < 0) {
        if (value)
            st_xml_append_attr(x, ns, name, value);
        return;
    }
    if (x->parent)
        touch(x);
    struct st_xml_attr *a = &x->attrs[i];
    char *old = a->name;
    if (value) {
        /* The new block is built before the old one is freed: name/ns may alias it. */
        attr_fill(a, ns, name, value);
    } else {
        memmove(a, a + 1, (x->nattrs - (unsigned)i - 1) * sizeof *a);
        x->nattrs--;
    }
    if (!in_node(x, old))
        st_free(old);
}

struct st_xml *st_xml_append(struct st_xml *parent, struct st_xml *child)
{
    assert(parent && parent->type == ST_XML_ELEMENT && child && !child->parent);
    touch(parent);
    child->parent = parent;
    child->next = NULL;
    if (parent->last_child)
        parent->last_child->next = child;
    else
        parent->first_child = child;
    parent->last_child = child;
    return child;
}

struct st_xml *st_xml_add_child(struct st_xml *parent, const char *name, const char *ns)
{
    return st_xml_append(parent, st_xml_new(name, ns ? ns : parent->ns));
}

void st_xml_add_text(struct st_xml *parent, const char *text)
{
    st_xml_append(parent, st_xml_new_text(text, strlen(text)));
}

struct st_xml *st_xml_add_text_child(struct st_xml *parent, const char *name, const char *text)
{
    struct st_xml *c = st_xml_add_child(parent, name, NULL);
    if (text && *text)
        st_xml_add_text(c, text);
    return c;
}

void st_xml_detach(struct st_xml *child)
{
    struct st_xml *p = child->parent;
    if (!p)
        return;
    touch(p);
    struct st_xml *prev = NULL;
    for (struct st_xml *c = p->first_child; c != child; c = c->next)
        prev = c;
    if (prev)
        prev->next = child->next;
    else
        p->first_child = child->next;
    if (p->last_child == child)
        p->last_child = prev;
    child->parent = NULL;
    child->next = NULL;
    child->refcount = 1;
}

bool st_xml_is(const struct st_xml *x, const char *name, const char *ns)
{
    return x && x->type == ST_XML_ELEMENT && (!name || strcmp(x->name, name) == 0) &&
           (!ns || strcmp(x->ns, ns) == 0);
}

struct st_xml *st_xml_child(const struct st_xml *x, const char *name, const char *ns)
{
    for (struct st_xml *c = x ? x->first_child : NULL; c; c = c->next)
        if (st_xml_is(c, name, ns))
            return c;
    return NULL;
}

struct st_xml *st_xml_first_element(const struct st_xml *x)
{
    return st_xml_child(x, NULL, NULL);
}

struct st_xml *st_xml_next_element(const struct st_xml *x)
{
    for (struct st_xml *c = x ? x->next : NULL; c; c = c->next)
        if (c->type == ST_XML_ELEMENT)
            return c;
    return NULL;
}

unsigned st_xml_element_count(const struct st_xml *x)
{
    unsigned n = 0;
    for (struct st_xml *c = x ? x->first_child : NULL; c; c = c->next)
        n += c->type == ST_XML_ELEMENT;
    return n;
}

char *st_xml_text(const struct st_xml *x)
{
    size_t len = 0;
    if (x && x->type == ST_XML_TEXT)
        return st_strndup(x->text, x->text_len);
    for (struct st_xml *c = x ? x->first_child : NULL; c; c = c->next)
        if (c->type == ST_XML_TEXT)
            len += c->text_len;
    char *s = st_malloc(len + 1);
    size_t off = 0;
    for (struct st_xml *c = x ? x->first_child : NULL; c; c = c->next) {
        if (c->type == ST_XML_TEXT) {
            memcpy(s + off, c->text, c->text_len);
            off += c->text_len;
        }
    }
    s[off] = '\0';
    return s;
}
