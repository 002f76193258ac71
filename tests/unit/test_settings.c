/* Unit tests for src/xmpp/settings.c: the top-level schema of starling.yaml — defaults
 * without a file, the shipped example (conf/starling.yaml.example, read relative to the
 * source root), virtual hosts (IDNA preparation per RFC 7622 §3.2, duplicates, bad names),
 * ports and bounds with exact "FILE:LINE" messages, cross-field checks, module map shape,
 * path resolution and the generated reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "xmpp/jid.h"
#include "xmpp/settings.h"

/* ---- helpers ---- */

static char tmp_path[64];

static void write_tmp(const char *text)
{
    snprintf(tmp_path, sizeof tmp_path, "/tmp/st_test_settings_XXXXXX");
    int fd = mkstemp(tmp_path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int load_text(const char *text, struct st_settings *s, char **err)
{
    write_tmp(text);
    *err = NULL;
    int rc = st_settings_load(tmp_path, s, err);
    unlink(tmp_path);
    return rc;
}

/* msg is expected after "FILE:" (e.g. "3: unknown option 'x'"). */
static void expect_error(const char *text, const char *msg)
{
    struct st_settings s;
    char *err;
    assert_int_equal(load_text(text, &s, &err), ST_EINVAL);
    assert_non_null(err);
    char want[512];
    snprintf(want, sizeof want, "%s:%s", tmp_path, msg);
    assert_string_equal(err, want);
    assert_null(s.hosts);
    assert_null(s.data_dir);
    st_settings_free(&s); /* harmless after a failed load */
    st_free(err);
}

static void assert_defaults_except_hosts(const struct st_settings *s)
{
    assert_int_equal(s->log_level, ST_LOG_INFO);
    assert_int_equal(s->storage, 0);
    assert_int_equal(s->listen.interfaces.n, 2);
    assert_string_equal(s->listen.interfaces.items[0], "0.0.0.0");
    assert_string_equal(s->listen.interfaces.items[1], "::");
    assert_int_equal(s->listen.c2s_port, 5222);
    assert_int_equal(s->listen.c2s_tls_port, 5223);
    assert_true(s->c2s.require_encryption);
    assert_int_equal(s->c2s.negotiation_timeout, 60000);
    assert_int_equal(s->c2s.sasl_attempts, 3);
    assert_int_equal(s->c2s.connections_per_ip, 32);
    assert_int_equal(s->c2s.max_resources, 10);
    assert_true(s->c2s.allow_plain);
    assert_false(s->c2s.allow_plain_unencrypted); /* passwords in the clear only by choice */
    assert_int_equal(s->c2s.scram_iterations, 4096);
    assert_int_equal(s->limits.stanza_size, 256 * 1024);
    assert_int_equal(s->limits.stanza_size_preauth, 8 * 1024);
    assert_int_equal(s->limits.max_depth, 32);
    assert_int_equal(s->limits.max_attributes, 64);
    assert_int_equal(s->limits.output_queue, 2 * 1024 * 1024);
    assert_int_equal(s->modules_disabled.n, 0);
}

/* ---- tests ---- */

static void defaults_without_file(void **state)
{
    (void)state;
    struct st_settings s;
    char *err = NULL;
    assert_int_equal(st_settings_load(NULL, &s, &err), 0);
    assert_null(err);
    assert_null(s.file);
    assert_null(s.doc.root);
    assert_defaults_except_hosts(&s);
    assert_string_equal(s.data_dir, "./starling-data");
    assert_null(s.modules);
    assert_int_equal(s.nhosts, 1);
    assert_string_equal(s.hosts[0].name, "localhost");
    assert_null(s.hosts[0].certificate);
    const struct st_host_settings *h = st_settings_host(&s, "localhost");
    assert_ptr_equal(h, &s.hosts[0]);
    assert_null(st_settings_host(&s, "example.org"));
    char *p = st_settings_cert_path(&s, h);
    assert_string_equal(p, "./starling-data/certs/localhost.crt");
    st_free(p);
    p = st_settings_key_path(&s, h);
    assert_string_equal(p, "./starling-data/certs/localhost.key");
    st_free(p);
    st_settings_free(&s);
    st_settings_free(&s);
}

static void empty_file_is_defaults(void **state)
{
    (void)state;
    struct st_settings s;
    char *err;
    assert_int_equal(load_text("# nothing here\n", &s, &err), 0);
    assert_string_equal(s.file, tmp_path);
    assert_defaults_except_hosts(&s);
    assert_string_equal(s.data_dir, "./starling-data");
    assert_int_equal(s.nhosts, 1);
    st_settings_free(&s);
}

static void example_file_loads(void **state)
{
    (void)state;
    const char *path = "conf/starling.yaml.example";
    struct st_settings s;
    char *err = NULL;
    int rc = st_settings_load(path, &s, &err);
    if (rc)
        fail_msg("%s", err ? err : "(no message)");
    /* The example states every default; only the second host differs from no file. */
    assert_defaults_except_hosts(&s);
    assert_string_equal(s.data_dir, "conf/starling-data");
    assert_non_null(s.modules);
    assert_int_equal(s.modules->type, ST_CFG_MAP);
    assert_int_equal(s.nhosts, 2);
    const struct st_host_settings *lh = st_settings_host(&s, "localhost");
    const struct st_host_settings *ex = st_settings_host(&s, "example.org");
    assert_non_null(lh);
    assert_non_null(ex);
    char *p = st_settings_cert_path(&s, lh);
    assert_string_equal(p, "conf/starling-data/certs/localhost.crt");
    st_free(p);
    p = st_settings_cert_path(&s, ex);
    assert_string_equal(p, "conf/certs/example.org.crt");
    st_free(p);
    p = st_settings_key_path(&s, ex);
    assert_string_equal(p, "conf/certs/example.org.key");
    st_free(p);
    st_settings_free(&s);
}

static void values_bind(void **state)
{
    (void)state;
    const char *text = "log_level: debug\n"
                       "storage: memory\n"
                       "data_dir: /var/lib/starling\n"
                       "listen:\n"
                       "  interfaces: 127.0.0.1\n"
                       "  c2s_port: 0\n"
                       "  c2s_tls_port: 65535\n"
                       "c2s:\n"
                       "  negotiation_timeout: 5m\n"
                       "  connections_per_ip: 0\n"
                       "  allow_plain: no\n"
                       "limits:\n"
                       "  stanza_size: 1MiB\n"
                       "  stanza_size_preauth: 1MiB\n"
                       "  output_queue: 1GiB\n"
                       "modules:\n"
                       "  ping:\n"
                       "    interval: 5m\n"
                       "  muc:\n"
                       "modules_disabled: [ping, vcard]\n";
    struct st_settings s;
    char *err;
    assert_int_equal(load_text(text, &s, &err), 0);
    assert_int_equal(s.log_level, ST_LOG_DEBUG);
    assert_int_equal(s.storage, 1);
    assert_string_equal(s.data_dir, "/var/lib/starling");
    assert_int_equal(s.listen.interfaces.n, 1);
    assert_string_equal(s.listen.interfaces.items[0], "127.0.0.1");
    assert_int_equal(s.listen.c2s_port, 0);
    assert_int_equal(s.listen.c2s_tls_port, 65535);
    assert_int_equal(s.c2s.negotiation_timeout, 300000);
    assert_int_equal(s.c2s.connections_per_ip, 0);
    assert_false(s.c2s.allow_plain);
    assert_int_equal(s.limits.stanza_size, 1 << 20);
    assert_int_equal(s.limits.output_queue, 1 << 30);
    const struct st_cfg_node *ping = st_cfg_get(s.modules, "ping");
    assert_non_null(ping);
    assert_int_equal(ping->line, 17);
    assert_string_equal(st_cfg_get(ping, "interval")->value, "5m");
    assert_int_equal(st_cfg_get(s.modules, "muc")->type, ST_CFG_NULL);
    assert_int_equal(s.modules_disabled.n, 2);
    assert_string_equal(s.modules_disabled.items[1], "vcard");
    st_settings_free(&s);
}

static void relative_paths(void **state)
{
    (void)state;
    const char *text = "data_dir: ./data\n"
                       "hosts:\n"
                       "  a.example: {certificate: a.crt, key: /etc/ssl/a.key}\n"
                       "  b.example:\n";
    struct st_settings s;
    char *err;
    assert_int_equal(load_text(text, &s, &err), 0);
    assert_string_equal(s.data_dir, "/tmp/data");
    const struct st_host_settings *a = st_settings_host(&s, "a.example");
    const struct st_host_settings *b = st_settings_host(&s, "b.example");
    assert_string_equal(a->certificate, "/tmp/a.crt");
    assert_string_equal(a->key, "/etc/ssl/a.key");
    assert_int_equal(a->line, 3);
    assert_int_equal(b->line, 4);
    char *p = st_settings_key_path(&s, b);
    assert_string_equal(p, "/tmp/data/certs/b.example.key");
    st_free(p);
    st_settings_free(&s);
}

static void hosts_prepared(void **state)
{
    (void)state;
    struct st_settings s;
    char *err;
    assert_int_equal(load_text("hosts:\n  Example.COM.: {}\n  xmpp.example.net:\n", &s, &err),
                     0);
    assert_int_equal(s.nhosts, 2);
    assert_string_equal(s.hosts[0].name, "example.com");
    assert_non_null(st_settings_host(&s, "example.com"));
    assert_null(st_settings_host(&s, "Example.COM."));
    assert_string_equal(s.hosts[1].name, "xmpp.example.net");
    st_settings_free(&s);
}

/* Internationalised names: both spellings prepare to one domain (RFC 7622 §3.2). */
static void hosts_idn(void **state)
{
    (void)state;
    char *want = NULL;
    assert_int_equal(st_jid_prep_domain("b\xc3\xbc" "cher.example", 15, &want), 0);
    struct st_settings s;
    char *err;
    assert_int_equal(load_text("hosts:\n  B\xc3\x9c" "CHER.example:\n", &s, &err), 0);
    assert_string_equal(s.hosts[0].name, want);
    st_settings_free(&s);
    assert_int_equal(load_text("hosts:\n  b\xc3\xbc" "cher.example:\n  B\xc3\x9c" "CHER.EXAMPLE:\n",
                               &s, &err),
                     ST_EINVAL);
    assert_non_null(strstr(err, ":3: duplicate host '"));
    assert_non_null(strstr(err, "' (also declared on line 2)"));
    st_free(err);
    st_free(want);
}

static void hosts_errors(void **state)
{
    (void)state;
    expect_error("hosts:\n  example.com:\n  EXAMPLE.com: {}\n",
                 "3: duplicate host 'example.com' (also declared on line 2)");
    expect_error("hosts:\n  example.com:\n  example.com.:\n",
                 "3: duplicate host 'example.com' (also declared on line 2)");
    expect_error("hosts:\n  ok.example:\n  bad host!:\n", "3: invalid host name 'bad host!'");
    expect_error("hosts:\n  a@b:\n", "2: invalid host name 'a@b'");
    expect_error("hosts:\n  \"\":\n", "2: invalid host name ''");
    expect_error("hosts: {}\n", "1: 'hosts' must name at least one host");
    expect_error("hosts:\n", "1: 'hosts' must name at least one host");
    expect_error("hosts: [a.example]\n",
                 "1: 'hosts' must be a map of domain names to host settings");
    expect_error("hosts:\n  a.example: yes\n", "2: 'hosts.a.example' must be a map");
    expect_error("hosts:\n  a.example:\n    certficate: x\n",
                 "3: unknown option 'hosts.a.example.certficate'; did you mean "
                 "'hosts.a.example.certificate'?");
    expect_error("hosts:\n  a.example:\n    key: [x]\n",
                 "3: 'hosts.a.example.key' must be a string");
}

static void ports_and_bounds(void **state)
{
    (void)state;
    expect_error("listen:\n  c2s_port: 70000\n",
                 "2: 'listen.c2s_port' must be between 0 and 65535");
    expect_error("listen:\n  c2s_tls_port: -1\n",
                 "2: 'listen.c2s_tls_port' must be between 0 and 65535");
    expect_error("listen:\n  c2s_port: http\n", "2: 'listen.c2s_port' must be an integer");
    expect_error("listen:\n  c2s_port: 5222\n  c2s_tls_port: 5222\n",
                 "3: 'listen.c2s_tls_port' must differ from 'listen.c2s_port'");
    expect_error("listen:\n  interfaces: {a: b}\n",
                 "2: 'listen.interfaces' must be a list of strings");
    expect_error("c2s:\n  sasl_attempts: 0\n", "2: 'c2s.sasl_attempts' must be between 1 and 100");
    expect_error("c2s:\n  scram_iterations: 1000\n",
                 "2: 'c2s.scram_iterations' must be between 4096 and 10000000");
    expect_error("c2s:\n  connections_per_ip: 100001\n",
                 "2: 'c2s.connections_per_ip' must be between 0 and 100000");
    expect_error("c2s:\n  max_resources: 1001\n",
                 "2: 'c2s.max_resources' must be between 1 and 1000");
    expect_error("c2s:\n  negotiation_timeout: 2h\n",
                 "2: 'c2s.negotiation_timeout' must be between 1s and 1h");
    expect_error("c2s:\n  negotiation_timeout: 500ms\n",
                 "2: 'c2s.negotiation_timeout' must be between 1s and 1h");
    expect_error("c2s:\n  negotiation_timeout: soon\n",
                 "2: 'c2s.negotiation_timeout' must be a duration like 60s");
    expect_error("c2s:\n  require_encryption: maybe\n",
                 "2: 'c2s.require_encryption' must be true or false");
    expect_error("limits:\n  stanza_size: 65MiB\n",
                 "2: 'limits.stanza_size' must be between 1KiB and 64MiB");
    expect_error("limits:\n  stanza_size: lots\n",
                 "2: 'limits.stanza_size' must be a size like 256KiB");
    expect_error("limits:\n  stanza_size_preauth: 2MiB\n",
                 "2: 'limits.stanza_size_preauth' must be between 1KiB and 1MiB");
    expect_error("limits:\n  output_queue: 32KiB\n",
                 "2: 'limits.output_queue' must be between 64KiB and 1GiB");
    expect_error("limits:\n  max_depth: 3\n", "2: 'limits.max_depth' must be between 4 and 1000");
    expect_error("limits:\n  max_attributes: 10001\n",
                 "2: 'limits.max_attributes' must be between 4 and 10000");
    expect_error("limits:\n  stanza_size_preauth: 16KiB\n  stanza_size: 8KiB\n",
                 "3: 'limits.stanza_size' (8192 bytes) must be at least "
                 "'limits.stanza_size_preauth' (16384 bytes)");
    expect_error("limits:\n  stanza_size: 4KiB\n",
                 "2: 'limits.stanza_size' (4096 bytes) must be at least "
                 "'limits.stanza_size_preauth' (8192 bytes)");
}

static void no_listener_is_only_a_warning(void **state)
{
    (void)state;
    struct st_settings s;
    char *err;
    st_log_set_level(ST_LOG_ERROR); /* keep the expected warning out of the test output */
    assert_int_equal(load_text("listen: {c2s_port: 0, c2s_tls_port: 0}\n", &s, &err), 0);
    st_log_set_level(ST_LOG_INFO);
    assert_int_equal(s.listen.c2s_port, 0);
    st_settings_free(&s);
}

static void other_errors(void **state)
{
    (void)state;
    expect_error("log_levl: info\n", "1: unknown option 'log_levl'; did you mean 'log_level'?");
    expect_error("\n\nc2s:\n  sasl_attempt: 2\n",
                 "4: unknown option 'c2s.sasl_attempt'; did you mean 'c2s.sasl_attempts'?");
    expect_error("c2s:\n  foo: 1\n", "2: unknown option 'c2s.foo'");
    expect_error("log_level: verbose\n", "1: 'log_level' must be one of: error, warn, info, debug");
    expect_error("storage: postgres\n", "1: 'storage' must be one of: sqlite, memory");
    expect_error("data_dir: [a]\n", "1: 'data_dir' must be a string");
    expect_error("modules: [ping]\n", "1: 'modules' must be a map of module names to options");
    expect_error("modules:\n  ping: 5\n", "2: 'modules.ping' must be a map of options");
    expect_error("modules_disabled: {a: 1}\n", "1: 'modules_disabled' must be a list of strings");
    expect_error("c2s: 1\n", "1: 'c2s' must be a map");
    expect_error("log_level: info\nlog_level: debug\n", "2: duplicate key 'log_level'");
    expect_error("a: &x 1\n", "1: YAML anchors (&x) are not supported");

    struct st_settings s;
    char *err = NULL;
    assert_int_equal(st_settings_load("/nonexistent/starling.yaml", &s, &err), ST_EINVAL);
    assert_string_equal(err, "/nonexistent/starling.yaml: No such file or directory");
    st_free(err);
    st_settings_free(&s);
}

static void reference_document(void **state)
{
    (void)state;
    struct st_buf b;
    st_buf_init(&b, 0);
    assert_int_equal(st_settings_document(&b), 0);
    const char *d = b.data;
    assert_true(strncmp(d, "# Starling configuration reference\n", 35) == 0);
    assert_non_null(strstr(d, "## Top-level options\n"));
    assert_non_null(
        strstr(d, "| `log_level` | one of `error`, `warn`, `info`, `debug` | `info` |"));
    assert_non_null(strstr(d, "## `c2s`\n"));
    assert_non_null(strstr(d, "| `c2s.sasl_attempts` | integer, 1–100 | `3` |"));
    assert_non_null(strstr(d, "| `limits.stanza_size` | size, 1KiB–64MiB | `256KiB` |"));
    assert_non_null(strstr(d, "| `c2s.negotiation_timeout` | duration, 1s–1h | `60s` |"));
    assert_non_null(strstr(d, "## `hosts.<domain>`\n"));
    assert_non_null(strstr(d, "## `listen`\n"));
    assert_non_null(strstr(d, "## `limits`\n"));
    st_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_without_file),
        cmocka_unit_test(empty_file_is_defaults),
        cmocka_unit_test(example_file_loads),
        cmocka_unit_test(values_bind),
        cmocka_unit_test(relative_paths),
        cmocka_unit_test(hosts_prepared),
        cmocka_unit_test(hosts_idn),
        cmocka_unit_test(hosts_errors),
        cmocka_unit_test(ports_and_bounds),
        cmocka_unit_test(no_listener_is_only_a_warning),
        cmocka_unit_test(other_errors),
        cmocka_unit_test(reference_document),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
