/* Unit tests for src/base: bounded buffers, hash map, random ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/err.h"
#include "base/map.h"
#include "base/mem.h"
#include "base/rand.h"
#include "base/utf8.h"

static void buf_respects_max(void **state)
{
    (void)state;
    struct st_buf b;
    st_buf_init(&b, 8);
    assert_int_equal(st_buf_puts(&b, "12345678"), 0);
    assert_int_equal(st_buf_puts(&b, "9"), ST_ELIMIT);
    assert_int_equal(b.len, 8);
    st_buf_consume(&b, 3);
    assert_string_equal(b.data, "45678");
    st_buf_free(&b);
}

static void buf_escapes_xml(void **state)
{
    (void)state;
    struct st_buf b;
    st_buf_init(&b, 0);
    const char *s = "a<b>&'\"";
    assert_int_equal(st_buf_put_xml_escaped(&b, s, strlen(s)), 0);
    assert_string_equal(b.data, "a&lt;b&gt;&amp;&apos;&quot;");
    st_buf_free(&b);
}

static void map_set_get_del(void **state)
{
    (void)state;
    struct st_map m;
    st_map_init(&m);
    char keys[100][8];
    for (int i = 0; i < 100; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        assert_null(st_map_set(&m, keys[i], keys[i]));
    }
    assert_int_equal(m.count, 100);
    for (int i = 0; i < 100; i++)
        assert_ptr_equal(st_map_get(&m, keys[i]), keys[i]);
    size_t n = 0;
    for (struct st_map_entry *e = st_map_first(&m); e; e = st_map_next(&m, e))
        n++;
    assert_int_equal(n, 100);
    assert_ptr_equal(st_map_del(&m, "k5"), keys[5]);
    assert_null(st_map_get(&m, "k5"));
    st_map_free(&m);
}

/* Bucket arrays give memory back once most entries are gone, and deleting while iterating
 * (after fetching the next entry) still visits every entry exactly once. */
static void map_shrinks_after_deletes(void **state)
{
    (void)state;
    struct st_map m;
    st_map_init(&m);
    char keys[1000][8];
    for (int i = 0; i < 1000; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        assert_null(st_map_set(&m, keys[i], keys[i]));
    }
    assert_int_equal(m.nbuckets, 1024);
    size_t seen = 0;
    for (struct st_map_entry *e = st_map_first(&m), *next; e; e = next) {
        next = st_map_next(&m, e);
        seen++;
        if (strcmp(e->key, "k7") != 0)
            assert_non_null(st_map_del(&m, e->key));
    }
    assert_int_equal(seen, 1000);
    assert_int_equal(m.count, 1);
    assert_int_equal(m.nbuckets, 1024); /* deleting never resizes */
    st_map_shrink(&m);
    assert_int_equal(m.nbuckets, 8);
    assert_ptr_equal(st_map_get(&m, "k7"), keys[7]);
    for (int i = 0; i < 600; i++)
        st_map_set(&m, keys[i], keys[i]);
    assert_int_equal(m.nbuckets, 1024);
    for (int i = 0; i < 590; i++)
        st_map_del(&m, keys[i]);
    assert_null(st_map_set(&m, "new", keys[0])); /* an insert shrinks too */
    assert_int_equal(m.count, 11);
    assert_int_equal(m.nbuckets, 32);
    for (int i = 590; i < 600; i++)
        assert_ptr_equal(st_map_get(&m, keys[i]), keys[i]);
    st_map_free(&m);
}

static void rand_id_has_enough_bits(void **state)
{
    (void)state;
    char a[64], b[64];
    assert_int_equal(st_rand_id(a, sizeof a, 128), 0);
    assert_int_equal(st_rand_id(b, sizeof b, 128), 0);
    assert_int_equal(strlen(a), 32);
    assert_string_not_equal(a, b);
    assert_int_equal(st_rand_id(a, 8, 128), ST_ELIMIT);
}

/* RFC 3629 §3-4: well-formed sequences decode, ill-formed ones (overlong, surrogate, beyond
 * U+10FFFF, stray continuation, cut short) are refused. */
static void utf8_next_rfc3629(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        uint32_t cp;
    } good[] = {{"A", 1, 0x41},          {"\xc3\xa9", 2, 0xE9},     {"\xe2\x98\xba", 3, 0x263A},
                {"\xef\xbf\xbf", 3, 0xFFFF}, {"\xf0\x9d\x84\x9e", 4, 0x1D11E},
                {"\xf4\x8f\xbf\xbf", 4, 0x10FFFF}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint32_t cp = 0;
        assert_int_equal(st_utf8_next((const unsigned char *)good[i].s, strlen(good[i].s), &cp),
                         good[i].len);
        assert_int_equal(cp, good[i].cp);
    }
    static const char *const bad[] = {"\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf",
                                      "\xed\xa0\x80", "\xf0\x80\x80\xaf", "\xf4\x90\x80\x80",
                                      "\xf5\x80\x80\x80", "\x80", "\xc3", "\xe2\x98",
                                      "\xc3\x28"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint32_t cp = 0;
        assert_int_equal(st_utf8_next((const unsigned char *)bad[i], strlen(bad[i]), &cp), 0);
    }
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_respects_max),
        cmocka_unit_test(buf_escapes_xml),
        cmocka_unit_test(map_set_get_del),
        cmocka_unit_test(map_shrinks_after_deletes),
        cmocka_unit_test(rand_id_has_enough_bits),
        cmocka_unit_test(utf8_next_rfc3629),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
