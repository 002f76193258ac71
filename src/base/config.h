/* Configuration: a YAML file (libyaml) parsed into a tree that remembers
 * each node's line, then bound onto C structures through declarative
 * option tables (name, type, default, bounds, doc). Unknown keys and bad
 * values are errors reported as "FILE:LINE: message". The same tables
 * generate docs/CONFIG.md and are what modules use for their options. */
#ifndef ST_BASE_CONFIG_H
#define ST_BASE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the parsed YAML tree ---- */

enum st_cfg_type { ST_CFG_SCALAR, ST_CFG_MAP, ST_CFG_SEQ, ST_CFG_NULL };

struct st_cfg_node {
    enum st_cfg_type type;
    char *key;        /* key when this node is a map value, else NULL */
    char *value;      /* scalar text */
    unsigned line;    /* 1-based line in file */
    struct st_cfg_node *child; /* first child (map values or sequence items) */
    struct st_cfg_node *next;  /* next sibling */
};

struct st_cfg_doc {
    char *file;              /* path as given, for messages */
    struct st_cfg_node *root; /* a map, or NULL for an empty file */
};

/* Parses YAML text into doc (one document; its top level must be a map, or empty). A map value's
 * line is the line of its key; sequence items carry their own line. Plain scalars "", "~" and
 * "null" become ST_CFG_NULL. Rejected, to keep configuration simple and safe: duplicate keys,
 * non-scalar keys, anchors, aliases, tags, several documents, NUL characters and nesting deeper
 * than 64. On error returns ST_EINVAL, doc is empty and *err (new string; err may be NULL) is
 * "FILE:LINE: message". file names the source in messages (copied). Any thread. */
int st_cfg_parse(const char *file, const char *text, size_t len, struct st_cfg_doc *doc,
                 char **err);
/* Reads (at most 16 MiB) and parses a file. Same error convention; a missing or unreadable
 * file is an error "FILE: reason". Blocking I/O: call before the loop starts. */
int st_cfg_load(const char *path, struct st_cfg_doc *doc, char **err);
/* Frees the tree and the file name; doc is zeroed (a second call is harmless). */
void st_cfg_doc_free(struct st_cfg_doc *doc);
/* Returns the map value node under key, or NULL. */
struct st_cfg_node *st_cfg_get(const struct st_cfg_node *map, const char *key);
/* Returns a new string "FILE:LINE: message" (or "FILE: message" when line is 0) for owners
 * that validate a tree themselves, so every config error reads the same. Any thread. */
char *st_cfg_errorf(const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Stores st_cfg_errorf(file, line, fmt, ...) in *err unless err is NULL or already holds a
 * message (the first error wins), and returns ST_EINVAL, so a validator can write
 * `return st_cfg_fail(err, file, line, "...")`. *err is a new string the caller frees. Any
 * thread. */
int st_cfg_fail(char **err, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Returns a new string "prefix.name", or a copy of name when prefix is NULL or empty: the
 * dotted path that names an option in messages. */
char *st_cfg_join_path(const char *prefix, const char *name);

/* ---- option tables ---- */

enum st_opt_type {
    ST_OPT_BOOL,     /* bool */
    ST_OPT_INT,      /* int64_t, within [min,max] */
    ST_OPT_SIZE,     /* size_t bytes; accepts "256KiB", "8 KiB", "1MiB", plain numbers */
    ST_OPT_DURATION, /* uint64_t milliseconds; accepts "60s", "5m", "500ms", "1h", plain = seconds
                      */
    ST_OPT_STRING,   /* char * (owned by the struct; freed by st_opt_free) */
    ST_OPT_ENUM,     /* int index into choices (NULL-terminated list) */
    ST_OPT_STRLIST,  /* struct st_strlist: a YAML sequence of scalars, or a single scalar */
    ST_OPT_SECTION,  /* nested map bound by sub-table `sub` at offset */
    ST_OPT_RAW,      /* const struct st_cfg_node * kept for the owner to interpret (borrowed
                        from the doc; valid while the doc lives) */
};

struct st_strlist {
    char **items;
    size_t n;
};

struct st_option {
    const char *name;
    enum st_opt_type type;
    size_t offset;            /* offsetof in the target struct */
    const char *def;          /* default as text (same syntax as YAML); NULL = none/empty */
    int64_t min, max;         /* bounds for INT/SIZE/DURATION (0,0 = unbounded) */
    const char *const *choices; /* ENUM */
    const struct st_option *sub; /* SECTION */
    const char *doc;          /* one line for the generated reference */
};
#define ST_OPT_END { NULL, 0, 0, NULL, 0, 0, NULL, NULL, NULL }

/* Sets every option in table to its default in target. target must hold no allocations (zeroed,
 * or released by st_opt_free): pointers are overwritten. For RAW options `def` is only shown in
 * the reference; the pointer defaults to NULL. STRLIST defaults use YAML flow syntax
 * ("[a, b]") or a single scalar. Returns 0 (defaults are trusted; a bad one asserts). */
int st_opt_defaults(const struct st_option *table, void *target);
/* Binds map (may be NULL = all defaults) onto target after applying defaults. Unknown keys and
 * bad values return ST_EINVAL with *err = "FILE:LINE: message" (new string; err may be NULL).
 * Messages name options by dotted path ("c2s.sasl_attempts"). target must hold no allocations
 * on entry (see st_opt_defaults). On error target has already been released as by st_opt_free
 * (calling st_opt_free again is harmless). Borrows map and file; RAW nodes stay borrowed from
 * the doc. */
int st_opt_bind(const struct st_option *table, const struct st_cfg_node *map, const char *file,
                void *target, char **err);
/* As st_opt_bind, with option names in messages prefixed by prefix + "." (e.g. "modules.ping"),
 * for tables bound below the top level. prefix may be NULL or "". */
int st_opt_bind_at(const struct st_option *table, const struct st_cfg_node *map,
                   const char *file, const char *prefix, void *target, char **err);
/* Frees strings and lists that binding allocated in target and resets those fields to
 * NULL/empty, so a second call is harmless. */
void st_opt_free(const struct st_option *table, void *target);
/* Writes a Markdown reference of table to out: a "## `prefix`" heading (or "## Top-level
 * options" when prefix is NULL or ""), a table with columns option, type, default, description,
 * then one such section per SECTION option, named by its dotted path. Returns 0 or ST_ELIMIT
 * when out is full. */
struct st_buf;
int st_opt_document(const struct st_option *table, const char *prefix, struct st_buf *out);

/* Parses a size / duration scalar; 0 or ST_EINVAL (also on overflow).
 * Sizes: a decimal number, optional spaces, optional unit B, KiB, MiB, GiB or TiB (case-
 * insensitive, powers of 1024): "512", "8 KiB", "1MiB". Durations: a decimal number, optional
 * spaces, optional unit ms, s, m, h or d; no unit means seconds; *out is milliseconds. */
int st_parse_size(const char *s, uint64_t *out);
int st_parse_duration_ms(const char *s, uint64_t *out);

#endif
