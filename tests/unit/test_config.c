/* Unit tests for src/base/config.c: the YAML tree (types, 1-based lines, rejected YAML
 * features), scalar syntaxes (sizes, durations), option binding with exact "FILE:LINE"
 * messages for every option type, unknown-key suggestions and the Markdown reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/config.h"
#include "base/err.h"
#include "base/mem.h"

/* ---- helpers ---- */

static int parse(const char *text, struct st_cfg_doc *doc, char **err)
{
    *err = NULL;
    return st_cfg_parse("t.yaml", text, strlen(text), doc, err);
}

static void expect_parse_error(const char *text, const char *msg)
{
    struct st_cfg_doc doc;
    char *err = NULL;
    assert_int_equal(parse(text, &doc, &err), ST_EINVAL);
    assert_non_null(err);
    assert_string_equal(err, msg);
    assert_null(doc.root);
    st_free(err);
}

/* ---- the tree ---- */

static void tree_types_and_lines(void **state)
{
    (void)state;
    const char *text = "# comment\n"
                       "a: 1\n"
                       "b:\n"
                       "  c: hello world\n"
                       "  d: ~\n"
                       "list:\n"
                       "  - x\n"
                       "  - 'y'\n"
                       "flow: [p, q]\n"
                       "empty:\n"
                       "quoted: \"\"\n";
    struct st_cfg_doc doc;
    char *err;
    assert_int_equal(parse(text, &doc, &err), 0);
    assert_null(err);
    assert_string_equal(doc.file, "t.yaml");
    assert_int_equal(doc.root->type, ST_CFG_MAP);
    assert_int_equal(doc.root->line, 2);

    struct st_cfg_node *a = st_cfg_get(doc.root, "a");
    assert_non_null(a);
    assert_int_equal(a->type, ST_CFG_SCALAR);
    assert_string_equal(a->key, "a");
    assert_string_equal(a->value, "1");
    assert_int_equal(a->line, 2);

    struct st_cfg_node *b = st_cfg_get(doc.root, "b");
    assert_int_equal(b->type, ST_CFG_MAP);
    assert_int_equal(b->line, 3);
    struct st_cfg_node *c = st_cfg_get(b, "c");
    assert_string_equal(c->value, "hello world");
    assert_int_equal(c->line, 4);
    struct st_cfg_node *d = st_cfg_get(b, "d");
    assert_int_equal(d->type, ST_CFG_NULL);
    assert_int_equal(d->line, 5);

    struct st_cfg_node *l = st_cfg_get(doc.root, "list");
    assert_int_equal(l->type, ST_CFG_SEQ);
    assert_int_equal(l->line, 6);
    assert_string_equal(l->child->value, "x");
    assert_null(l->child->key);
    assert_int_equal(l->child->line, 7);
    assert_string_equal(l->child->next->value, "y");
    assert_int_equal(l->child->next->line, 8);
    assert_null(l->child->next->next);

    struct st_cfg_node *f = st_cfg_get(doc.root, "flow");
    assert_int_equal(f->type, ST_CFG_SEQ);
    assert_string_equal(f->child->next->value, "q");
    assert_int_equal(f->child->line, 9);

    assert_int_equal(st_cfg_get(doc.root, "empty")->type, ST_CFG_NULL);
    struct st_cfg_node *q = st_cfg_get(doc.root, "quoted");
    assert_int_equal(q->type, ST_CFG_SCALAR); /* quoted "" is a string, not null */
    assert_string_equal(q->value, "");

    assert_null(st_cfg_get(doc.root, "missing"));
    assert_null(st_cfg_get(a, "x")); /* not a map */
    assert_null(st_cfg_get(NULL, "x"));
    st_cfg_doc_free(&doc);
    st_cfg_doc_free(&doc); /* harmless */
}

static void tree_empty_file(void **state)
{
    (void)state;
    const char *texts[] = {"", "# only a comment\n", "---\n", "\n\n"};
    for (size_t i = 0; i < 4; i++) {
        struct st_cfg_doc doc;
        char *err;
        assert_int_equal(parse(texts[i], &doc, &err), 0);
        assert_null(doc.root);
        assert_non_null(doc.file);
        st_cfg_doc_free(&doc);
    }
}

static void tree_rejects(void **state)
{
    (void)state;
    expect_parse_error("a: 1\nb: 2\na: 3\n", "t.yaml:3: duplicate key 'a'");
    expect_parse_error("s:\n  x: 1\n  x: 2\n", "t.yaml:3: duplicate key 'x'");
    expect_parse_error("a: &x 1\nb: *x\n", "t.yaml:1: YAML anchors (&x) are not supported");
    expect_parse_error("b: *x\n", "t.yaml:1: YAML aliases are not supported");
    expect_parse_error("a: !!str 1\n",
                       "t.yaml:1: YAML tags (tag:yaml.org,2002:str) are not supported");
    expect_parse_error("a: !custom 1\n", "t.yaml:1: YAML tags (!custom) are not supported");
    expect_parse_error("? [a]\n: 1\n", "t.yaml:1: map keys must be plain strings");
    expect_parse_error("- a\n- b\n", "t.yaml:1: the top level must be a map of options");
    expect_parse_error("just a string\n", "t.yaml:1: the top level must be a map of options");
    expect_parse_error("a: 1\n---\nb: 2\n", "t.yaml:2: only one YAML document is allowed");
    expect_parse_error("a: \"x\\0y\"\n", "t.yaml:1: NUL characters are not allowed");
    /* libyaml's own diagnostics keep its wording, with our FILE:LINE. */
    expect_parse_error("a: 1\n b: 2\n", "t.yaml:2: mapping values are not allowed in this context");
    expect_parse_error("a: [1, 2\n", "t.yaml:2: did not find expected ',' or ']'");
    expect_parse_error("a: 'open\n", "t.yaml:2: found unexpected end of stream");
}

static void tree_depth_limit(void **state)
{
    (void)state;
    struct st_buf b;
    st_buf_init(&b, 0);
    for (int i = 0; i < 70; i++)
        st_buf_puts(&b, "[");
    for (int i = 0; i < 70; i++)
        st_buf_puts(&b, "]");
    char *text = st_buf_take(&b);
    struct st_buf t;
    st_buf_init(&t, 0);
    st_buf_printf(&t, "a: %s\n", text);
    struct st_cfg_doc doc;
    char *err;
    assert_int_equal(parse(t.data, &doc, &err), ST_EINVAL);
    assert_string_equal(err, "t.yaml:1: nesting deeper than 64 levels");
    st_free(err);
    st_free(text);
    st_buf_free(&t);
}

static void load_missing_and_real_file(void **state)
{
    (void)state;
    struct st_cfg_doc doc;
    char *err = NULL;
    assert_int_equal(st_cfg_load("/nonexistent/x.yaml", &doc, &err), ST_EINVAL);
    assert_string_equal(err, "/nonexistent/x.yaml: No such file or directory");
    st_free(err);

    char path[] = "/tmp/st_test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("x: 1\ny:\n  - 2\n", f);
    fclose(f);
    err = NULL;
    assert_int_equal(st_cfg_load(path, &doc, &err), 0);
    assert_string_equal(doc.file, path);
    assert_int_equal(st_cfg_get(doc.root, "y")->child->line, 3);
    st_cfg_doc_free(&doc);
    remove(path);
}

/* ---- scalar syntax ---- */

static void sizes(void **state)
{
    (void)state;
    uint64_t v;
    struct {
        const char *s;
        uint64_t v;
    } good[] = {{"512", 512},          {"0", 0},
                {"256KiB", 262144},    {"8 KiB", 8192},
                {"1MiB", 1048576},     {"1GiB", 1073741824},
                {"2TiB", 2ull << 40},  {"10B", 10},
                {"4kib", 4096},        {"18446744073709551615", UINT64_MAX}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(st_parse_size(good[i].s, &v), 0);
        assert_true(v == good[i].v);
    }
    const char *bad[] = {"", "KiB", "-1", "1.5MiB", "1 ", " 1", "1KB", "1 K", "12x",
                         "18446744073709551616", "16777216TiB"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(st_parse_size(bad[i], &v), ST_EINVAL);
}

static void durations(void **state)
{
    (void)state;
    uint64_t v;
    struct {
        const char *s;
        uint64_t v;
    } good[] = {{"60s", 60000}, {"5m", 300000}, {"500ms", 500}, {"1h", 3600000},
                {"30", 30000},  {"2 d", 172800000}, {"0", 0}, {"10 s", 10000}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(st_parse_duration_ms(good[i].s, &v), 0);
        assert_true(v == good[i].v);
    }
    const char *bad[] = {"", "s", "1.5s", "-1s", "5 minutes", "1w", "99999999999999999999s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(st_parse_duration_ms(bad[i], &v), ST_EINVAL);
}

/* ---- option binding ---- */

struct inner {
    int64_t attempts;
    bool flag;
};

struct target {
    bool on;
    int64_t count;
    size_t size;
    uint64_t timeout;
    char *name;
    int mode;
    struct st_strlist list;
    struct inner sec;
    const struct st_cfg_node *raw;
};

static const char *const modes[] = {"fast", "safe", "off", NULL};

static const struct st_option inner_opts[] = {
    {"sasl_attempts", ST_OPT_INT, offsetof(struct inner, attempts), "3", 1, 100, NULL, NULL,
     "failures allowed"},
    {"flag", ST_OPT_BOOL, offsetof(struct inner, flag), "yes", 0, 0, NULL, NULL, "a flag"},
    ST_OPT_END,
};

static const struct st_option opts[] = {
    {"on", ST_OPT_BOOL, offsetof(struct target, on), "true", 0, 0, NULL, NULL, "switch"},
    {"count", ST_OPT_INT, offsetof(struct target, count), "5", -10, 10, NULL, NULL, "count"},
    {"size", ST_OPT_SIZE, offsetof(struct target, size), "256KiB", 1024, 64 << 20, NULL, NULL,
     "size"},
    {"timeout", ST_OPT_DURATION, offsetof(struct target, timeout), "60s", 1000, 3600000, NULL,
     NULL, "timeout"},
    {"name", ST_OPT_STRING, offsetof(struct target, name), "default", 0, 0, NULL, NULL, "name"},
    {"mode", ST_OPT_ENUM, offsetof(struct target, mode), "safe", 0, 0, modes, NULL, "mode"},
    {"list", ST_OPT_STRLIST, offsetof(struct target, list), "[\"0.0.0.0\", \"::\"]", 0, 0, NULL,
     NULL, "list | with pipe"},
    {"c2s", ST_OPT_SECTION, offsetof(struct target, sec), NULL, 0, 0, NULL, inner_opts,
     "nested"},
    {"raw", ST_OPT_RAW, offsetof(struct target, raw), NULL, 0, 0, NULL, NULL, "raw"},
    ST_OPT_END,
};

static int bind_text(const char *text, struct target *t, struct st_cfg_doc *doc, char **err)
{
    memset(t, 0, sizeof *t);
    int rc = parse(text, doc, err);
    assert_int_equal(rc, 0);
    return st_opt_bind(opts, doc->root, doc->file, t, err);
}

static void expect_bind_error(const char *text, const char *msg)
{
    struct target t;
    struct st_cfg_doc doc;
    char *err = NULL;
    assert_int_equal(bind_text(text, &t, &doc, &err), ST_EINVAL);
    assert_non_null(err);
    assert_string_equal(err, msg);
    /* st_opt_bind released the target already; a second free is harmless. */
    assert_null(t.name);
    assert_null(t.list.items);
    st_opt_free(opts, &t);
    st_free(err);
    st_cfg_doc_free(&doc);
}

static void bind_defaults(void **state)
{
    (void)state;
    struct target t;
    memset(&t, 0, sizeof t);
    char *err = NULL;
    assert_int_equal(st_opt_bind(opts, NULL, "x", &t, &err), 0);
    assert_true(t.on);
    assert_int_equal(t.count, 5);
    assert_int_equal(t.size, 262144);
    assert_int_equal(t.timeout, 60000);
    assert_string_equal(t.name, "default");
    assert_int_equal(t.mode, 1);
    assert_int_equal(t.list.n, 2);
    assert_string_equal(t.list.items[0], "0.0.0.0");
    assert_string_equal(t.list.items[1], "::");
    assert_int_equal(t.sec.attempts, 3);
    assert_true(t.sec.flag);
    assert_null(t.raw);
    st_opt_free(opts, &t);
    assert_null(t.name);
    assert_int_equal(t.list.n, 0);
    st_opt_free(opts, &t);
}

static void bind_good_values(void **state)
{
    (void)state;
    const char *text = "on: off\n"
                       "count: -10\n"
                       "size: 8 KiB\n"
                       "timeout: 1500ms\n"
                       "name: \"hello\"\n"
                       "mode: off\n"
                       "list: single\n"
                       "c2s:\n"
                       "  sasl_attempts: 100\n"
                       "  flag: No\n"
                       "raw:\n"
                       "  any: [thing]\n";
    struct target t;
    struct st_cfg_doc doc;
    char *err = NULL;
    assert_int_equal(bind_text(text, &t, &doc, &err), 0);
    assert_false(t.on);
    assert_int_equal(t.count, -10);
    assert_int_equal(t.size, 8192);
    assert_int_equal(t.timeout, 1500);
    assert_string_equal(t.name, "hello");
    assert_int_equal(t.mode, 2);
    assert_int_equal(t.list.n, 1);
    assert_string_equal(t.list.items[0], "single");
    assert_int_equal(t.sec.attempts, 100);
    assert_false(t.sec.flag);
    assert_non_null(t.raw);
    assert_int_equal(t.raw->type, ST_CFG_MAP);
    assert_int_equal(t.raw->line, 11);
    assert_non_null(st_cfg_get(t.raw, "any"));
    st_opt_free(opts, &t);
    st_cfg_doc_free(&doc);

    /* Boundary values, a list as a sequence, an empty list, an empty section. */
    text = "count: 10\nsize: 64MiB\ntimeout: 1h\nlist:\n  - a\n  - b\n  - c\nc2s:\n";
    assert_int_equal(bind_text(text, &t, &doc, &err), 0);
    assert_int_equal(t.count, 10);
    assert_int_equal(t.size, 64u << 20);
    assert_int_equal(t.timeout, 3600000);
    assert_int_equal(t.list.n, 3);
    assert_string_equal(t.list.items[2], "c");
    assert_int_equal(t.sec.attempts, 3);
    st_opt_free(opts, &t);
    st_cfg_doc_free(&doc);

    assert_int_equal(bind_text("list: []\nsize: 1KiB\ntimeout: 1\n", &t, &doc, &err), 0);
    assert_int_equal(t.list.n, 0);
    assert_int_equal(t.size, 1024);
    assert_int_equal(t.timeout, 1000);
    st_opt_free(opts, &t);
    st_cfg_doc_free(&doc);
}

static void bind_bad_values(void **state)
{
    (void)state;
    expect_bind_error("on: maybe\n", "t.yaml:1: 'on' must be true or false");
    expect_bind_error("on: [true]\n", "t.yaml:1: 'on' must be true or false");
    expect_bind_error("on:\n", "t.yaml:1: 'on' must be true or false");
    expect_bind_error("count: 1.5\n", "t.yaml:1: 'count' must be an integer");
    expect_bind_error("count: 0x10\n", "t.yaml:1: 'count' must be an integer");
    expect_bind_error("count: 99999999999999999999\n", "t.yaml:1: 'count' must be an integer");
    expect_bind_error("count: 11\n", "t.yaml:1: 'count' must be between -10 and 10");
    expect_bind_error("\ncount: -11\n", "t.yaml:2: 'count' must be between -10 and 10");
    expect_bind_error("size: big\n", "t.yaml:1: 'size' must be a size like 256KiB");
    expect_bind_error("size: 1023\n", "t.yaml:1: 'size' must be between 1KiB and 64MiB");
    expect_bind_error("size: 65MiB\n", "t.yaml:1: 'size' must be between 1KiB and 64MiB");
    expect_bind_error("timeout: soon\n", "t.yaml:1: 'timeout' must be a duration like 60s");
    expect_bind_error("timeout: 999ms\n", "t.yaml:1: 'timeout' must be between 1s and 1h");
    expect_bind_error("timeout: 2h\n", "t.yaml:1: 'timeout' must be between 1s and 1h");
    expect_bind_error("name: {a: b}\n", "t.yaml:1: 'name' must be a string");
    expect_bind_error("name: ~\n", "t.yaml:1: 'name' must be a string");
    expect_bind_error("mode: slow\n", "t.yaml:1: 'mode' must be one of: fast, safe, off");
    expect_bind_error("list: {a: b}\n", "t.yaml:1: 'list' must be a list of strings");
    expect_bind_error("list:\n  - a\n  - [b]\n", "t.yaml:3: 'list' must be a list of strings");
    expect_bind_error("c2s: 5\n", "t.yaml:1: 'c2s' must be a map");
    expect_bind_error("c2s:\n  sasl_attempts: 0\n",
                      "t.yaml:2: 'c2s.sasl_attempts' must be between 1 and 100");
    expect_bind_error("c2s:\n  flag: 2\n", "t.yaml:2: 'c2s.flag' must be true or false");
    /* A later error after earlier successful string binds must not leak. */
    expect_bind_error("name: x\nlist: [a]\ncount: x\n", "t.yaml:3: 'count' must be an integer");
}

static void bind_unknown_keys(void **state)
{
    (void)state;
    expect_bind_error("c2s:\n  foo: 1\n", "t.yaml:2: unknown option 'c2s.foo'");
    expect_bind_error("c2s:\n  sasl_attempt: 1\n",
                      "t.yaml:2: unknown option 'c2s.sasl_attempt'; did you mean "
                      "'c2s.sasl_attempts'?");
    expect_bind_error("c2s:\n  sals_attempts: 1\n",
                      "t.yaml:2: unknown option 'c2s.sals_attempts'; did you mean "
                      "'c2s.sasl_attempts'?");
    expect_bind_error("nmae: x\n", "t.yaml:1: unknown option 'nmae'; did you mean 'name'?");
    expect_bind_error("a: 1\nzzzzzz: 1\n", "t.yaml:1: unknown option 'a'");
}

static void bind_with_prefix(void **state)
{
    (void)state;
    struct st_cfg_doc doc;
    char *err = NULL;
    assert_int_equal(parse("sasl_attempts: 200\n", &doc, &err), 0);
    struct inner in;
    memset(&in, 0, sizeof in);
    assert_int_equal(st_opt_bind_at(inner_opts, doc.root, doc.file, "modules.x", &in, &err),
                     ST_EINVAL);
    assert_string_equal(err, "t.yaml:1: 'modules.x.sasl_attempts' must be between 1 and 100");
    st_free(err);
    st_cfg_doc_free(&doc);

    char *e = st_cfg_errorf("f.yaml", 7, "bad %s", "thing");
    assert_string_equal(e, "f.yaml:7: bad thing");
    st_free(e);
    e = st_cfg_errorf("f.yaml", 0, "no line");
    assert_string_equal(e, "f.yaml: no line");
    st_free(e);
}

static void document_tables(void **state)
{
    (void)state;
    struct st_buf b;
    st_buf_init(&b, 0);
    assert_int_equal(st_opt_document(opts, NULL, &b), 0);
    const char *s = b.data;
    assert_non_null(strstr(s, "## Top-level options\n\n| option | type | default | description |\n"
                              "|---|---|---|---|\n"));
    assert_non_null(strstr(s, "| `size` | size, 1KiB–64MiB | `256KiB` | size |\n"));
    assert_non_null(strstr(s, "| `timeout` | duration, 1s–1h | `60s` | timeout |\n"));
    assert_non_null(strstr(s, "| `count` | integer, -10–10 | `5` | count |\n"));
    assert_non_null(strstr(s, "| `mode` | one of `fast`, `safe`, `off` | `safe` | mode |\n"));
    assert_non_null(strstr(s, "| `list` | list of strings | `[\"0.0.0.0\", \"::\"]` | "
                              "list \\| with pipe |\n"));
    assert_non_null(strstr(s, "| `c2s` | section | see below | nested |\n"));
    assert_non_null(strstr(s, "## `c2s`\n\n"));
    assert_non_null(strstr(s, "| `c2s.sasl_attempts` | integer, 1–100 | `3` | failures allowed |"));
    st_buf_free(&b);

    st_buf_init(&b, 64);
    assert_int_equal(st_opt_document(opts, "x", &b), ST_ELIMIT);
    st_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tree_types_and_lines),
        cmocka_unit_test(tree_empty_file),
        cmocka_unit_test(tree_rejects),
        cmocka_unit_test(tree_depth_limit),
        cmocka_unit_test(load_missing_and_real_file),
        cmocka_unit_test(sizes),
        cmocka_unit_test(durations),
        cmocka_unit_test(bind_defaults),
        cmocka_unit_test(bind_good_values),
        cmocka_unit_test(bind_bad_values),
        cmocka_unit_test(bind_unknown_keys),
        cmocka_unit_test(bind_with_prefix),
        cmocka_unit_test(document_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
