/* XML element trees for stanzas (RFC 6120 §8). A tree is built by the stream
 * parser or by code that composes replies; each element carries its
 * namespace URI resolved (never a prefix), its attributes in document
 * order, and children (elements and text) in order. The root of a tree is
 * reference-counted so one stanza can be queued for several recipients;
 * inner nodes belong to their parent. */
#ifndef ST_XML_NODE_H
#define ST_XML_NODE_H

#include <stdbool.h>
#include <stddef.h>

struct st_buf;

#define ST_NS_XML "http://www.w3.org/XML/1998/namespace"
#define ST_NS_STREAMS "http://etherx.jabber.org/streams"
#define ST_NS_CLIENT "jabber:client"
#define ST_NS_SERVER "jabber:server"
#define ST_NS_COMPONENT "jabber:component:accept"
#define ST_NS_STREAM_ERRORS "urn:ietf:params:xml:ns:xmpp-streams"
#define ST_NS_STANZA_ERRORS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define ST_NS_TLS "urn:ietf:params:xml:ns:xmpp-tls"
#define ST_NS_SASL "urn:ietf:params:xml:ns:xmpp-sasl"
#define ST_NS_BIND "urn:ietf:params:xml:ns:xmpp-bind"
#define ST_NS_SESSION "urn:ietf:params:xml:ns:xmpp-session"

enum st_xml_type { ST_XML_ELEMENT, ST_XML_TEXT };

struct st_xml_attr {
    char *ns;    /* namespace URI of a prefixed attribute (e.g. ST_NS_XML for xml:lang), or NULL */
    char *name;  /* local name */
    char *value; /* unescaped value */
};

/* name, ns and text are stored inline in the node's own allocation (one malloc per node):
 * never reassign or free them; create a new node instead. Each attribute's name, value and
 * ns share one allocation owned by the node; change them only through st_xml_set_attr*. */
struct st_xml {
    enum st_xml_type type;
    char *name;  /* element: local name; text: NULL */
    char *ns;    /* element: namespace URI ("" for none); text: NULL */
    char *text;  /* text node: unescaped character data; element: NULL */
    size_t text_len;
    struct st_xml_attr *attrs;
    unsigned nattrs;
    unsigned attrs_cap;
    struct st_xml *parent;
    struct st_xml *first_child;
    struct st_xml *last_child;
    struct st_xml *next; /* next sibling */
    unsigned refcount;   /* meaningful on roots only */
    unsigned alloc_size; /* bytes of the node's own allocation (strings inside it are not freed
                            on their own) */
    /* Roots built by the stream parser: the children exactly as received (well-formed, using no
     * namespace prefix declared outside the stanza), so serialising needs only the root's own
     * tag. Owned; dropped by any change below the root (the node.c mutators see to that). */
    char *raw_inner;
    size_t raw_inner_len;
};

/* One attribute as the parser has it: strings with lengths; ns NULL for none. */
struct st_xml_attr_in {
    const char *ns;
    size_t ns_len;
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Returns a new element (refcount 1). name and ns are copied; ns may be NULL (no namespace). */
struct st_xml *st_xml_new(const char *name, const char *ns);
/* Returns a new element (refcount 1) with its attributes in the same allocation (the parser's
 * fast path: one malloc per element). ns may be NULL. */
struct st_xml *st_xml_new_packed(const char *name, size_t name_len, const char *ns, size_t ns_len,
                                 const struct st_xml_attr_in *attrs, unsigned nattrs);
/* Gives root (a parsed stanza, no parent) a copy of data[0..n) as its children as received
 * (see raw_inner); n > 0. For the stream parser's readers only. */
void st_xml_keep_raw_inner(struct st_xml *root, const char *data, size_t n);
/* Returns a new text node holding a copy of n bytes of text. */
struct st_xml *st_xml_new_text(const char *text, size_t n);
/* Adds a reference to a root; returns x. */
struct st_xml *st_xml_ref(struct st_xml *x);
/* Drops a reference to a root; frees the tree at zero. NULL allowed. */
void st_xml_unref(struct st_xml *x);
/* Frees a detached node and its subtree regardless of refcount (for nodes never shared). */
void st_xml_free(struct st_xml *x);
/* Returns a new deep copy (refcount 1, detached). */
struct st_xml *st_xml_copy(const struct st_xml *x);

/* Returns the value of the unqualified attribute name, or NULL. Borrowed. */
const char *st_xml_attr(const struct st_xml *x, const char *name);
/* Returns the value of the attribute {ns}name (ns NULL = unqualified), or NULL. */
const char *st_xml_attr_ns(const struct st_xml *x, const char *ns, const char *name);
/* Sets (or replaces) the unqualified attribute name; value NULL removes it. Copies both. */
void st_xml_set_attr(struct st_xml *x, const char *name, const char *value);
/* Sets (or replaces) a namespaced attribute; value NULL removes it. */
void st_xml_set_attr_ns(struct st_xml *x, const char *ns, const char *name, const char *value);

/* Appends the attribute {ns}name=value without looking for an existing one (the caller
 * knows it is new, e.g. the parser after expat's duplicate check). Copies all strings. */
void st_xml_append_attr(struct st_xml *x, const char *ns, const char *name, const char *value);

/* Appends child (takes ownership; child must be detached) and returns it. */
struct st_xml *st_xml_append(struct st_xml *parent, struct st_xml *child);
/* Creates and appends a child element; returns it (owned by parent). ns NULL inherits parent's ns.
 */
struct st_xml *st_xml_add_child(struct st_xml *parent, const char *name, const char *ns);
/* Appends a text child holding a copy of text (NUL-terminated). */
void st_xml_add_text(struct st_xml *parent, const char *text);
/* Convenience: adds child element name (ns inherited) with text content; returns the child. */
struct st_xml *st_xml_add_text_child(struct st_xml *parent, const char *name, const char *text);
/* Detaches child from its parent (caller then owns it). */
void st_xml_detach(struct st_xml *child);

/* Returns the first child element with the given name and namespace (NULL matches any). */
struct st_xml *st_xml_child(const struct st_xml *x, const char *name, const char *ns);
/* Returns the first child element (skipping text), or NULL. */
struct st_xml *st_xml_first_element(const struct st_xml *x);
/* Returns the next sibling element after x, or NULL. */
struct st_xml *st_xml_next_element(const struct st_xml *x);
/* Returns the number of child elements. */
unsigned st_xml_element_count(const struct st_xml *x);
/* Returns a new string with the concatenated text of x's direct text children. */
char *st_xml_text(const struct st_xml *x);
/* Returns true when x has an element named name in ns. */
bool st_xml_is(const struct st_xml *x, const char *name, const char *ns);

/* Serialises x into out. parent_ns is the default namespace in scope where x is written
 * (ST_NS_CLIENT for a top-level stanza on a c2s stream): an xmlns attribute is written only
 * where an element's namespace differs from its parent's. Prefixed attributes in ST_NS_XML are
 * written as xml:NAME; other namespaced attributes get a generated prefix (ns1, ns2, ...)
 * declared on the same element. Unqualified attributes named "xmlns" or "xmlns:*" (as found on
 * a parsed stream header) are skipped: declarations follow from the element namespaces. Empty
 * elements are written as <x/>. Borrows x. Returns 0 or ST_ELIMIT when out's maximum is
 * reached (out then holds a truncated prefix; discard it). */
int st_xml_serialize(const struct st_xml *x, const char *parent_ns, struct st_buf *out);

/* Appends s (n bytes) escaped for a single-quoted attribute value (in_attr: also ' " TAB LF CR
 * as references, so attribute-value normalisation gives s back) or for character data (& < >
 * and CR). Returns 0 or ST_ELIMIT. */
int st_xml_put_escaped(struct st_buf *out, const char *s, size_t n, bool in_attr);

#endif
