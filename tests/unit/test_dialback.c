/* Unit tests for dialback key derivation (XEP-0185 §3, XEP-0220 §2.1.2):
 * the key is HMAC-SHA-256 keyed with SHA-256(secret) over a length-prefixed
 * encoding of (receiving domain, originating domain, stream id). Vectors
 * are computed independently here with OpenSSL's one-shot HMAC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "transport/s2s_dialback.h"

static const unsigned char secret[] = "s3cr3t-for-tests";

/* Reference: the documented encoding, built by hand. */
static void reference(const char *r, const char *o, const char *id, char out[65])
{
    unsigned char msg[1024];
    size_t n = 0;
    const char *parts[] = {r, o, id};
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(parts[i]);
        msg[n++] = (unsigned char)(l >> 24);
        msg[n++] = (unsigned char)(l >> 16);
        msg[n++] = (unsigned char)(l >> 8);
        msg[n++] = (unsigned char)l;
        memcpy(msg + n, parts[i], l);
        n += l;
    }
    unsigned char k[32], md[32];
    unsigned int mdlen = 0;
    SHA256(secret, sizeof secret - 1, k);
    HMAC(EVP_sha256(), k, sizeof k, msg, n, md, &mdlen);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void matches_reference(void **state)
{
    (void)state;
    char got[ST_DIALBACK_KEY_HEX], want[65];
    assert_int_equal(st_dialback_key(secret, sizeof secret - 1, "b.example", "a.example",
                                     "D60000229F", got),
                     0);
    reference("b.example", "a.example", "D60000229F", want);
    assert_string_equal(got, want);
    assert_int_equal(strlen(got), 64);
}

static void deterministic_and_checked(void **state)
{
    (void)state;
    char k1[ST_DIALBACK_KEY_HEX], k2[ST_DIALBACK_KEY_HEX];
    st_dialback_key(secret, sizeof secret - 1, "r.test", "o.test", "id1", k1);
    st_dialback_key(secret, sizeof secret - 1, "r.test", "o.test", "id1", k2);
    assert_string_equal(k1, k2);
    assert_true(st_dialback_check(secret, sizeof secret - 1, "r.test", "o.test", "id1", k1));
    /* any change of input or key text fails */
    assert_false(st_dialback_check(secret, sizeof secret - 1, "r.test", "o.test", "id2", k1));
    assert_false(st_dialback_check(secret, sizeof secret - 1, "o.test", "r.test", "id1", k1));
    assert_false(st_dialback_check(secret, sizeof secret - 2, "r.test", "o.test", "id1", k1));
    k1[10] = k1[10] == 'a' ? 'b' : 'a';
    assert_false(st_dialback_check(secret, sizeof secret - 1, "r.test", "o.test", "id1", k1));
    assert_false(st_dialback_check(secret, sizeof secret - 1, "r.test", "o.test", "id1", ""));
    assert_false(st_dialback_check(secret, sizeof secret - 1, "r.test", "o.test", "id1", NULL));
}

static void encoding_is_unambiguous(void **state)
{
    (void)state;
    /* With plain concatenation these triples would collide. */
    char k1[ST_DIALBACK_KEY_HEX], k2[ST_DIALBACK_KEY_HEX], k3[ST_DIALBACK_KEY_HEX];
    st_dialback_key(secret, sizeof secret - 1, "ab", "c", "d", k1);
    st_dialback_key(secret, sizeof secret - 1, "a", "bc", "d", k2);
    st_dialback_key(secret, sizeof secret - 1, "a", "b", "cd", k3);
    assert_string_not_equal(k1, k2);
    assert_string_not_equal(k2, k3);
    assert_string_not_equal(k1, k3);
    st_dialback_key(secret, sizeof secret - 1, "a b", "c", "", k1);
    st_dialback_key(secret, sizeof secret - 1, "a", "b c", "", k2);
    assert_string_not_equal(k1, k2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matches_reference),
        cmocka_unit_test(deterministic_and_checked),
        cmocka_unit_test(encoding_is_unambiguous),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
