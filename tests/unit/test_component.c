/* Unit tests for the XEP-0114 §3 handshake digest: the value is the
 * lowercase hex SHA-1 of the stream id followed by the secret (vector
 * computed independently with Python's hashlib), and the check accepts either hex case and
 * surrounding whitespace but nothing else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "transport/component.h"

static void test_digest_vector(void **state)
{
    (void)state;
    char out[41];
    /* hashlib.sha1(b"3BF96D32secret").hexdigest() */
    st_component_digest("3BF96D32", "secret", out);
    assert_string_equal(out, "b09ea9b3b7f586be8a08d0a3dd7466f110aeb136");
}

static void test_digest_check(void **state)
{
    (void)state;
    char d[41];
    st_component_digest("abc123", "s3cret", d);
    assert_true(st_component_digest_ok("abc123", "s3cret", d));
    char up[41];
    for (size_t i = 0; i < 41; i++)
        up[i] = (char)(d[i] >= 'a' && d[i] <= 'f' ? d[i] - 32 : d[i]);
    assert_true(st_component_digest_ok("abc123", "s3cret", up));
    char spaced[64];
    memcpy(spaced, "  ", 2);
    memcpy(spaced + 2, d, 40);
    memcpy(spaced + 42, "\n", 2);
    assert_true(st_component_digest_ok("abc123", "s3cret", spaced));
    assert_false(st_component_digest_ok("abc123", "other", d));
    assert_false(st_component_digest_ok("abc124", "s3cret", d));
    assert_false(st_component_digest_ok("abc123", "s3cret", ""));
    assert_false(st_component_digest_ok("abc123", "s3cret", NULL));
    d[39] = '\0'; /* truncated */
    assert_false(st_component_digest_ok("abc123", "s3cret", d));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_vector),
        cmocka_unit_test(test_digest_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
