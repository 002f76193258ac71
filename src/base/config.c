/* Configuration files: YAML 1.1 text (parsed with libyaml's event API) is
 * turned into a small tree of maps, sequences and scalars that remembers the
 * 1-based line of every node, and that tree is bound onto C structures
 * through declarative option tables (see config.h). Only the plain subset
 * of YAML an operator needs is accepted: anchors, aliases, tags, several
 * documents and duplicate keys are errors, because they make a file mean
 * something other than what it looks like. Every error names "FILE:LINE",
 * unknown keys suggest the closest known option, and the same tables write
 * the Markdown option reference (docs/CONFIG.md). */
#include "base/config.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/mem.h"

#define CFG_MAX_DEPTH 64
#define CFG_MAX_FILE (16u * 1024 * 1024)
#define CFG_ERR_MAX 4096

/* ---- errors ---- */

static char *vformat_error(const char *file, unsigned line, const char *fmt, va_list ap)
{
    struct st_buf b;
    st_buf_init(&b, CFG_ERR_MAX);
    if (line)
        st_buf_printf(&b, "%s:%u: ", file ? file : "<config>", line);
    else
        st_buf_printf(&b, "%s: ", file ? file : "<config>");
    /* A message longer than the bound is cut rather than lost. */
    char msg[CFG_ERR_MAX + 1];
    if (vsnprintf(msg, sizeof msg, fmt, ap) >= 0 && st_buf_puts(&b, msg) != 0)
        st_buf_append(&b, msg, b.max - b.len);
    return st_buf_take(&b);
}

char *st_cfg_errorf(const char *file, unsigned line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat_error(file, line, fmt, ap);
    va_end(ap);
    return s;
}

int st_cfg_fail(char **err, const char *file, unsigned line, const char *fmt, ...)
{
    if (err && !*err) {
        va_list ap;
        va_start(ap, fmt);
        *err = vformat_error(file, line, fmt, ap);
        va_end(ap);
    }
    return ST_EINVAL;
}

/* ---- tree ---- */

static void node_free(struct st_cfg_node *n)
{
    while (n) {
        struct st_cfg_node *next = n->next;
        node_free(n->child);
        st_free(n->key);
        st_free(n->value);
        st_free(n);
        n = next;
    }
}

void st_cfg_doc_free(struct st_cfg_doc *doc)
{
    if (!doc)
        return;
    node_free(doc->root);
    st_free(doc->file);
    doc->root = NULL;
    doc->file = NULL;
}

struct st_cfg_node *st_cfg_get(const struct st_cfg_node *map, const char *key)
{
    if (!map || map->type != ST_CFG_MAP || !key)
        return NULL;
    for (struct st_cfg_node *c = map->child; c; c = c->next)
        if (c->key && strcmp(c->key, key) == 0)
            return c;
    return NULL;
}

/* ---- YAML events to tree ---- */

struct parse_ctx {
    yaml_parser_t parser;
    const char *file;
    char **err;
};

static unsigned mark_line(yaml_mark_t m)
{
    return (unsigned)m.line + 1;
}

static int next_event(struct parse_ctx *c, yaml_event_t *ev)
{
    if (yaml_parser_parse(&c->parser, ev))
        return 0;
    const char *problem = c->parser.problem ? c->parser.problem : "cannot parse YAML";
    return st_cfg_fail(c->err, c->file, mark_line(c->parser.problem_mark), "%s", problem);
}

/* Anchors, aliases and tags are refused: aliases allow size blow-ups ("billion laughs") and
 * tags ask for types we would not honour; neither is needed for a configuration file. */
static int check_props(struct parse_ctx *c, const yaml_event_t *ev, const yaml_char_t *anchor,
                       const yaml_char_t *tag)
{
    unsigned line = mark_line(ev->start_mark);
    if (anchor)
        return st_cfg_fail(c->err, c->file, line, "YAML anchors (&%s) are not supported",
                           (const char *)anchor);
    if (tag)
        return st_cfg_fail(c->err, c->file, line, "YAML tags (%s) are not supported",
                           (const char *)tag);
    return 0;
}

static bool is_plain_null(const yaml_event_t *ev)
{
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)ev->data.scalar.value;
    return ev->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static int parse_node(struct parse_ctx *c, yaml_event_t *ev, int depth,
                      struct st_cfg_node **out);

static void append_child(struct st_cfg_node *parent, struct st_cfg_node **tail,
                         struct st_cfg_node *n)
{
    if (*tail)
        (*tail)->next = n;
    else
        parent->child = n;
    *tail = n;
}

static int parse_seq(struct parse_ctx *c, struct st_cfg_node *seq, int depth)
{
    struct st_cfg_node *tail = NULL;
    for (;;) {
        yaml_event_t ev;
        int rc = next_event(c, &ev);
        if (rc)
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        struct st_cfg_node *item = NULL;
        rc = parse_node(c, &ev, depth + 1, &item);
        if (rc)
            return rc;
        append_child(seq, &tail, item);
    }
}

static int parse_map(struct parse_ctx *c, struct st_cfg_node *map, int depth)
{
    struct st_cfg_node *tail = NULL;
    for (;;) {
        yaml_event_t ev;
        int rc = next_event(c, &ev);
        if (rc)
            return rc;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        unsigned line = mark_line(ev.start_mark);
        if (ev.type == YAML_ALIAS_EVENT) {
            yaml_event_delete(&ev);
            return st_cfg_fail(c->err, c->file, line, "YAML aliases are not supported");
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            yaml_event_delete(&ev);
            return st_cfg_fail(c->err, c->file, line, "map keys must be plain strings");
        }
        rc = check_props(c, &ev, ev.data.scalar.anchor, ev.data.scalar.tag);
        if (!rc && memchr(ev.data.scalar.value, '\0', ev.data.scalar.length))
            rc = st_cfg_fail(c->err, c->file, line, "NUL characters are not allowed");
        if (rc) {
            yaml_event_delete(&ev);
            return rc;
        }
        char *key = st_strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
        yaml_event_delete(&ev);
        for (struct st_cfg_node *s = map->child; s; s = s->next) {
            if (strcmp(s->key, key) == 0) {
                rc = st_cfg_fail(c->err, c->file, line, "duplicate key '%s'", key);
                st_free(key);
                return rc;
            }
        }
        rc = next_event(c, &ev);
        if (rc) {
            st_free(key);
            return rc;
        }
        struct st_cfg_node *val = NULL;
        rc = parse_node(c, &ev, depth + 1, &val);
        if (rc) {
            st_free(key);
            return rc;
        }
        val->key = key;
        val->line = line;
        append_child(map, &tail, val);
    }
}

/* Builds the node that starts with *ev (consumed here, whatever happens). On error *out is
 * NULL and the partial subtree is freed. */
static int parse_node(struct parse_ctx *c, yaml_event_t *ev, int depth,
                      struct st_cfg_node **out)
{
    *out = NULL;
    unsigned line = mark_line(ev->start_mark);
    int rc = 0;
    if (depth > CFG_MAX_DEPTH) {
        rc = st_cfg_fail(c->err, c->file, line, "nesting deeper than %d levels", CFG_MAX_DEPTH);
        yaml_event_delete(ev);
        return rc;
    }
    struct st_cfg_node *n = ST_NEW(struct st_cfg_node);
    n->line = line;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        rc = check_props(c, ev, ev->data.scalar.anchor, ev->data.scalar.tag);
        if (rc)
            break;
        if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length)) {
            rc = st_cfg_fail(c->err, c->file, line, "NUL characters are not allowed");
            break;
        }
        if (is_plain_null(ev)) {
            n->type = ST_CFG_NULL;
        } else {
            n->type = ST_CFG_SCALAR;
            n->value = st_strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        }
        break;
    case YAML_SEQUENCE_START_EVENT:
        n->type = ST_CFG_SEQ;
        rc = check_props(c, ev, ev->data.sequence_start.anchor, ev->data.sequence_start.tag);
        if (!rc) {
            yaml_event_delete(ev);
            ev = NULL;
            rc = parse_seq(c, n, depth);
        }
        break;
    case YAML_MAPPING_START_EVENT:
        n->type = ST_CFG_MAP;
        rc = check_props(c, ev, ev->data.mapping_start.anchor, ev->data.mapping_start.tag);
        if (!rc) {
            yaml_event_delete(ev);
            ev = NULL;
            rc = parse_map(c, n, depth);
        }
        break;
    case YAML_ALIAS_EVENT:
        rc = st_cfg_fail(c->err, c->file, line, "YAML aliases are not supported");
        break;
    default:
        rc = st_cfg_fail(c->err, c->file, line, "unexpected YAML structure");
        break;
    }
    if (ev)
        yaml_event_delete(ev);
    if (rc) {
        node_free(n);
        return rc;
    }
    *out = n;
    return 0;
}

/* Reads the event stream: STREAM-START, at most one document holding a map (or nothing), then
 * STREAM-END. */
static int parse_stream(struct parse_ctx *c, struct st_cfg_node **root)
{
    yaml_event_t ev;
    int rc = next_event(c, &ev);
    if (rc)
        return rc;
    yaml_event_delete(&ev); /* STREAM-START */
    rc = next_event(c, &ev);
    if (rc)
        return rc;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        return 0;
    }
    yaml_event_delete(&ev); /* DOCUMENT-START */
    rc = next_event(c, &ev);
    if (rc)
        return rc;
    struct st_cfg_node *n = NULL;
    rc = parse_node(c, &ev, 1, &n);
    if (rc)
        return rc;
    if (n->type == ST_CFG_NULL) {
        node_free(n);
        n = NULL;
    } else if (n->type != ST_CFG_MAP) {
        rc = st_cfg_fail(c->err, c->file, n->line, "the top level must be a map of options");
        node_free(n);
        return rc;
    }
    rc = next_event(c, &ev);
    if (rc)
        goto fail;
    yaml_event_delete(&ev); /* DOCUMENT-END */
    rc = next_event(c, &ev);
    if (rc)
        goto fail;
    if (ev.type != YAML_STREAM_END_EVENT) {
        rc = st_cfg_fail(c->err, c->file, mark_line(ev.start_mark),
                         "only one YAML document is allowed");
        yaml_event_delete(&ev);
        goto fail;
    }
    yaml_event_delete(&ev);
    *root = n;
    return 0;
fail:
    node_free(n);
    return rc;
}

int st_cfg_parse(const char *file, const char *text, size_t len, struct st_cfg_doc *doc,
                 char **err)
{
    doc->file = NULL;
    doc->root = NULL;
    struct parse_ctx c = {.file = file ? file : "<config>", .err = err};
    if (!yaml_parser_initialize(&c.parser))
        return st_cfg_fail(err, c.file, 0, "cannot initialise the YAML parser");
    yaml_parser_set_input_string(&c.parser, (const unsigned char *)text, len);
    yaml_parser_set_encoding(&c.parser, YAML_UTF8_ENCODING);
    struct st_cfg_node *root = NULL;
    int rc = parse_stream(&c, &root);
    yaml_parser_delete(&c.parser);
    if (rc)
        return rc;
    doc->file = st_strdup(c.file);
    doc->root = root;
    return 0;
}

int st_cfg_load(const char *path, struct st_cfg_doc *doc, char **err)
{
    doc->file = NULL;
    doc->root = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return st_cfg_fail(err, path, 0, "%s", strerror(errno));
    struct st_buf b;
    st_buf_init(&b, CFG_MAX_FILE);
    char chunk[8192];
    int rc = 0;
    for (;;) {
        size_t n = fread(chunk, 1, sizeof chunk, f);
        if (n == 0)
            break;
        if (st_buf_append(&b, chunk, n) != 0) {
            rc = st_cfg_fail(err, path, 0, "file larger than %u bytes", CFG_MAX_FILE);
            break;
        }
    }
    if (!rc && ferror(f))
        rc = st_cfg_fail(err, path, 0, "read error");
    fclose(f);
    if (!rc)
        rc = st_cfg_parse(path, b.data ? b.data : "", b.len, doc, err);
    st_buf_free(&b);
    return rc;
}

/* ---- scalar syntax ---- */

/* Parses leading decimal digits of s into *v; returns the number of digits or -1 on overflow. */
static int parse_digits(const char *s, uint64_t *v)
{
    uint64_t x = 0;
    int i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *v = x;
    return i;
}

static int parse_with_units(const char *s, const char *const *units, const uint64_t *mult,
                            uint64_t none, uint64_t *out)
{
    if (!s)
        return ST_EINVAL;
    uint64_t v;
    int nd = parse_digits(s, &v);
    if (nd <= 0)
        return ST_EINVAL;
    const char *u = s + nd;
    while (*u == ' ')
        u++;
    uint64_t m = none;
    if (*u) {
        size_t i = 0;
        for (; units[i]; i++)
            if (strcasecmp(u, units[i]) == 0)
                break;
        if (!units[i])
            return ST_EINVAL;
        m = mult[i];
    } else if (u != s + nd) {
        return ST_EINVAL; /* trailing spaces without a unit */
    }
    if (m && v > UINT64_MAX / m)
        return ST_EINVAL;
    *out = v * m;
    return 0;
}

int st_parse_size(const char *s, uint64_t *out)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", NULL};
    static const uint64_t mult[] = {1, 1ull << 10, 1ull << 20, 1ull << 30, 1ull << 40};
    return parse_with_units(s, units, mult, 1, out);
}

int st_parse_duration_ms(const char *s, uint64_t *out)
{
    static const char *const units[] = {"ms", "s", "m", "h", "d", NULL};
    static const uint64_t mult[] = {1, 1000, 60000, 3600000, 86400000};
    return parse_with_units(s, units, mult, 1000, out);
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return ST_EINVAL;
}

static int parse_int(const char *s, int64_t *out)
{
    bool neg = false;
    if (*s == '-' || *s == '+')
        neg = *s++ == '-';
    uint64_t v;
    int nd = parse_digits(s, &v);
    if (nd <= 0 || s[nd] != '\0')
        return ST_EINVAL;
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return ST_EINVAL;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return ST_EINVAL;
        *out = (int64_t)v;
    }
    return 0;
}

/* Writes v in the largest of the units (mult[i], largest first) that divides it exactly, as
 * an operator writes it; else the plain number followed by plain_suffix. */
static void fmt_units(char *out, size_t n, uint64_t v, const char *const *units,
                      const uint64_t *mult, size_t count, const char *plain_suffix)
{
    for (size_t i = 0; i < count; i++) {
        if (v && v % mult[i] == 0) {
            snprintf(out, n, "%" PRIu64 "%s", v / mult[i], units[i]);
            return;
        }
    }
    snprintf(out, n, "%" PRIu64 "%s", v, plain_suffix);
}

/* Formats a bound of a SIZE (bytes) or DURATION (milliseconds) option. */
static void fmt_bound(const struct st_option *o, int64_t v, char *out, size_t n)
{
    static const char *const size_units[] = {"TiB", "GiB", "MiB", "KiB"};
    static const uint64_t size_mult[] = {1ull << 40, 1ull << 30, 1ull << 20, 1ull << 10};
    static const char *const time_units[] = {"d", "h", "m", "s"};
    static const uint64_t time_mult[] = {86400000, 3600000, 60000, 1000};
    if (o->type == ST_OPT_SIZE)
        fmt_units(out, n, (uint64_t)v, size_units, size_mult, 4, "");
    else
        fmt_units(out, n, (uint64_t)v, time_units, time_mult, 4, "ms");
}

/* ---- option tables ---- */

static bool bounded(const struct st_option *o)
{
    return o->min != 0 || o->max != 0;
}

static void strlist_free(struct st_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        st_free(l->items[i]);
    st_free(l->items);
    l->items = NULL;
    l->n = 0;
}

static void strlist_push(struct st_strlist *l, const char *s)
{
    l->items = st_realloc(l->items, (l->n + 1) * sizeof *l->items);
    l->items[l->n++] = st_strdup(s);
}

void st_opt_free(const struct st_option *table, void *target)
{
    char *base = target;
    for (const struct st_option *o = table; o->name; o++) {
        void *f = base + o->offset;
        switch (o->type) {
        case ST_OPT_STRING:
            st_free(*(char **)f);
            *(char **)f = NULL;
            break;
        case ST_OPT_STRLIST:
            strlist_free(f);
            break;
        case ST_OPT_SECTION:
            st_opt_free(o->sub, f);
            break;
        case ST_OPT_RAW:
            *(const struct st_cfg_node **)f = NULL;
            break;
        default:
            break;
        }
    }
}

char *st_cfg_join_path(const char *prefix, const char *name)
{
    if (!prefix || !*prefix)
        return st_strdup(name);
    size_t a = strlen(prefix), b = strlen(name);
    char *s = st_malloc(a + b + 2);
    memcpy(s, prefix, a);
    s[a] = '.';
    memcpy(s + a + 1, name, b + 1);
    return s;
}

static bool out_of_range(const struct st_option *o, uint64_t v)
{
    return bounded(o) && (v < (uint64_t)o->min || v > (uint64_t)o->max);
}

/* The error for a SIZE or DURATION value outside [min,max], bounds written in their units. */
static int range_error(const struct st_option *o, const char *file, unsigned line, const char *path,
                       char **err)
{
    char lo[32], hi[32];
    fmt_bound(o, o->min, lo, sizeof lo);
    fmt_bound(o, o->max, hi, sizeof hi);
    return st_cfg_fail(err, file, line, "'%s' must be between %s and %s", path, lo, hi);
}

/* Binds one value node onto the field of option o; path names it in messages. */
static int bind_table(const struct st_option *table, const struct st_cfg_node *map,
                      const char *file, const char *prefix, char *base, char **err);

static int bind_value(const struct st_option *o, const struct st_cfg_node *n, const char *file,
                      const char *path, void *f, char **err)
{
    bool scalar = n->type == ST_CFG_SCALAR;
    const char *v = n->value;
    switch (o->type) {
    case ST_OPT_BOOL: {
        bool b;
        if (!scalar || parse_bool(v, &b) != 0)
            return st_cfg_fail(err, file, n->line, "'%s' must be true or false", path);
        *(bool *)f = b;
        return 0;
    }
    case ST_OPT_INT: {
        int64_t i;
        if (!scalar || parse_int(v, &i) != 0)
            return st_cfg_fail(err, file, n->line, "'%s' must be an integer", path);
        if (bounded(o) && (i < o->min || i > o->max))
            return st_cfg_fail(err, file, n->line, "'%s' must be between %" PRId64 " and %" PRId64,
                               path, o->min, o->max);
        *(int64_t *)f = i;
        return 0;
    }
    case ST_OPT_SIZE: {
        uint64_t s;
        if (!scalar || st_parse_size(v, &s) != 0 || s > SIZE_MAX)
            return st_cfg_fail(err, file, n->line, "'%s' must be a size like 256KiB", path);
        if (out_of_range(o, s))
            return range_error(o, file, n->line, path, err);
        *(size_t *)f = (size_t)s;
        return 0;
    }
    case ST_OPT_DURATION: {
        uint64_t ms;
        if (!scalar || st_parse_duration_ms(v, &ms) != 0)
            return st_cfg_fail(err, file, n->line, "'%s' must be a duration like 60s", path);
        if (out_of_range(o, ms))
            return range_error(o, file, n->line, path, err);
        *(uint64_t *)f = ms;
        return 0;
    }
    case ST_OPT_STRING:
        if (!scalar)
            return st_cfg_fail(err, file, n->line, "'%s' must be a string", path);
        st_free(*(char **)f);
        *(char **)f = st_strdup(v);
        return 0;
    case ST_OPT_ENUM: {
        for (int i = 0; scalar && o->choices[i]; i++) {
            if (strcmp(v, o->choices[i]) == 0) {
                *(int *)f = i;
                return 0;
            }
        }
        struct st_buf b;
        st_buf_init(&b, 1024);
        for (int i = 0; o->choices[i]; i++)
            st_buf_printf(&b, "%s%s", i ? ", " : "", o->choices[i]);
        int rc =
            st_cfg_fail(err, file, n->line, "'%s' must be one of: %s", path, b.data ? b.data : "");
        st_buf_free(&b);
        return rc;
    }
    case ST_OPT_STRLIST: {
        struct st_strlist *l = f;
        if (n->type == ST_CFG_MAP)
            return st_cfg_fail(err, file, n->line, "'%s' must be a list of strings", path);
        strlist_free(l);
        if (scalar) {
            strlist_push(l, v);
        } else if (n->type == ST_CFG_SEQ) {
            for (const struct st_cfg_node *c = n->child; c; c = c->next) {
                if (c->type != ST_CFG_SCALAR)
                    return st_cfg_fail(err, file, c->line, "'%s' must be a list of strings", path);
                strlist_push(l, c->value);
            }
        }
        return 0;
    }
    case ST_OPT_SECTION:
        if (n->type == ST_CFG_NULL)
            return 0;
        if (n->type != ST_CFG_MAP)
            return st_cfg_fail(err, file, n->line, "'%s' must be a map", path);
        return bind_table(o->sub, n, file, path, f, err);
    case ST_OPT_RAW:
        *(const struct st_cfg_node **)f = n->type == ST_CFG_NULL ? NULL : n;
        return 0;
    }
    return st_cfg_fail(err, file, n->line, "'%s' has an unknown option type", path);
}

/* Levenshtein distance of short strings, for "did you mean" hints. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return SIZE_MAX;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static int unknown_option(const struct st_option *table, const struct st_cfg_node *n,
                          const char *file, const char *prefix, char **err)
{
    const char *best = NULL;
    size_t bestd = 3;
    for (const struct st_option *o = table; o->name; o++) {
        size_t d = edit_distance(n->key, o->name);
        /* A hint that rewrites most of a short key is noise, not a typo fix. */
        if (d < bestd && d < strlen(n->key)) {
            bestd = d;
            best = o->name;
        }
    }
    char *path = st_cfg_join_path(prefix, n->key);
    int rc;
    if (best) {
        char *hint = st_cfg_join_path(prefix, best);
        rc = st_cfg_fail(err, file, n->line, "unknown option '%s'; did you mean '%s'?", path, hint);
        st_free(hint);
    } else {
        rc = st_cfg_fail(err, file, n->line, "unknown option '%s'", path);
    }
    st_free(path);
    return rc;
}

static int bind_table(const struct st_option *table, const struct st_cfg_node *map,
                      const char *file, const char *prefix, char *base, char **err)
{
    for (const struct st_cfg_node *c = map->child; c; c = c->next) {
        const struct st_option *o = table;
        while (o->name && strcmp(o->name, c->key) != 0)
            o++;
        if (!o->name)
            return unknown_option(table, c, file, prefix, err);
        char *path = st_cfg_join_path(prefix, o->name);
        int rc = bind_value(o, c, file, path, base + o->offset, err);
        st_free(path);
        if (rc)
            return rc;
    }
    return 0;
}

static int default_strlist(const struct st_option *o, struct st_strlist *l)
{
    l->items = NULL;
    l->n = 0;
    if (!o->def)
        return 0;
    /* Parse "v: <def>" so list defaults use the file's own flow syntax. */
    struct st_buf b;
    st_buf_init(&b, 0);
    st_buf_printf(&b, "v: %s\n", o->def);
    struct st_cfg_doc d;
    int rc = st_cfg_parse("<default>", b.data, b.len, &d, NULL);
    if (!rc)
        rc = bind_value(o, d.root->child, "<default>", o->name, l, NULL);
    st_cfg_doc_free(&d);
    st_buf_free(&b);
    return rc;
}

int st_opt_defaults(const struct st_option *table, void *target)
{
    char *base = target;
    for (const struct st_option *o = table; o->name; o++) {
        void *f = base + o->offset;
        int rc = 0;
        switch (o->type) {
        case ST_OPT_SECTION:
            rc = st_opt_defaults(o->sub, f);
            break;
        case ST_OPT_RAW:
            *(const struct st_cfg_node **)f = NULL;
            break;
        case ST_OPT_STRING:
            *(char **)f = st_strdup(o->def);
            break;
        case ST_OPT_STRLIST:
            rc = default_strlist(o, f);
            break;
        case ST_OPT_BOOL:
            *(bool *)f = false;
            break;
        case ST_OPT_INT:
            *(int64_t *)f = 0;
            break;
        case ST_OPT_SIZE:
            *(size_t *)f = 0;
            break;
        case ST_OPT_DURATION:
            *(uint64_t *)f = 0;
            break;
        case ST_OPT_ENUM:
            *(int *)f = 0;
            break;
        }
        bool scalar = o->type != ST_OPT_STRING && o->type != ST_OPT_STRLIST &&
                      o->type != ST_OPT_SECTION && o->type != ST_OPT_RAW;
        if (!rc && o->def && scalar) {
            struct st_cfg_node n = {.type = ST_CFG_SCALAR, .value = (char *)o->def};
            rc = bind_value(o, &n, "<default>", o->name, f, NULL);
        }
        assert(rc == 0 && "invalid default in an option table");
        (void)rc;
    }
    return 0;
}

int st_opt_bind_at(const struct st_option *table, const struct st_cfg_node *map,
                   const char *file, const char *prefix, void *target, char **err)
{
    st_opt_defaults(table, target);
    if (!map || map->type == ST_CFG_NULL)
        return 0;
    int rc;
    if (map->type != ST_CFG_MAP)
        rc = st_cfg_fail(err, file, map->line, "'%s' must be a map",
                         prefix && *prefix ? prefix : "the top level");
    else
        rc = bind_table(table, map, file, prefix, target, err);
    if (rc)
        st_opt_free(table, target);
    return rc;
}

int st_opt_bind(const struct st_option *table, const struct st_cfg_node *map, const char *file,
                void *target, char **err)
{
    return st_opt_bind_at(table, map, file, NULL, target, err);
}

/* ---- reference generation ---- */

static void put_cell(struct st_buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            st_buf_puts(out, "\\|");
        else if (*s == '\n')
            st_buf_puts(out, " ");
        else
            st_buf_append(out, s, 1);
    }
}

static void type_text(const struct st_option *o, char *t, size_t n)
{
    char lo[32], hi[32];
    switch (o->type) {
    case ST_OPT_BOOL:
        snprintf(t, n, "boolean");
        break;
    case ST_OPT_INT:
        if (bounded(o))
            snprintf(t, n, "integer, %" PRId64 "–%" PRId64, o->min, o->max);
        else
            snprintf(t, n, "integer");
        break;
    case ST_OPT_SIZE:
    case ST_OPT_DURATION: {
        const char *kind = o->type == ST_OPT_SIZE ? "size" : "duration";
        if (bounded(o)) {
            fmt_bound(o, o->min, lo, sizeof lo);
            fmt_bound(o, o->max, hi, sizeof hi);
            snprintf(t, n, "%s, %s–%s", kind, lo, hi);
        } else {
            snprintf(t, n, "%s", kind);
        }
        break;
    }
    case ST_OPT_STRING:
        snprintf(t, n, "string");
        break;
    case ST_OPT_ENUM:
        snprintf(t, n, "one of");
        break;
    case ST_OPT_STRLIST:
        snprintf(t, n, "list of strings");
        break;
    case ST_OPT_SECTION:
        snprintf(t, n, "section");
        break;
    case ST_OPT_RAW:
        snprintf(t, n, "map");
        break;
    }
}

int st_opt_document(const struct st_option *table, const char *prefix, struct st_buf *out)
{
    bool top = !prefix || !*prefix;
    if (top)
        st_buf_puts(out, "## Top-level options\n\n");
    else
        st_buf_printf(out, "## `%s`\n\n", prefix);
    st_buf_puts(out, "| option | type | default | description |\n|---|---|---|---|\n");
    for (const struct st_option *o = table; o->name; o++) {
        char t[128];
        type_text(o, t, sizeof t);
        char *path = st_cfg_join_path(prefix, o->name);
        st_buf_puts(out, "| `");
        put_cell(out, path);
        st_buf_puts(out, "` | ");
        put_cell(out, t);
        if (o->type == ST_OPT_ENUM)
            for (int i = 0; o->choices[i]; i++)
                st_buf_printf(out, "%s `%s`", i ? "," : "", o->choices[i]);
        st_buf_puts(out, " | ");
        if (o->type == ST_OPT_SECTION) {
            st_buf_puts(out, "see below");
        } else if (o->def) {
            st_buf_puts(out, "`");
            put_cell(out, o->def);
            st_buf_puts(out, "`");
        } else {
            st_buf_puts(out, o->type == ST_OPT_STRLIST ? "`[]`" : "(none)");
        }
        st_buf_puts(out, " | ");
        put_cell(out, o->doc ? o->doc : "");
        st_buf_puts(out, " |\n");
        st_free(path);
    }
    int rc = st_buf_puts(out, "\n");
    for (const struct st_option *o = table; !rc && o->name; o++) {
        if (o->type != ST_OPT_SECTION)
            continue;
        char *path = st_cfg_join_path(prefix, o->name);
        rc = st_opt_document(o->sub, path, out);
        st_free(path);
    }
    /* Appends past a full buffer fail without side effects; report the limit once here. */
    return rc ? rc : (out->len >= out->max ? ST_ELIMIT : 0);
}
