/* Unit tests for the certificate name check of federation (connect.c):
 * RFC 6125 §6.4 DNS-IDs and the XmppAddr otherName SAN of RFC 6120
 * §13.7.1.4 (id-on-xmppAddr, 1.3.6.1.5.5.7.8.5), on certificates generated
 * in the test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "net/connect.h"

/* A self-signed certificate with CN cn and, when san is non-NULL, a subjectAltName in
 * OpenSSL's config syntax (e.g. "otherName:1.3.6.1.5.5.7.8.5;UTF8:a.test"). */
static X509 *make_cert(const char *cn, const char *san)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    if (san) {
        X509V3_CTX ctx;
        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, san);
        assert_non_null(ext);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    EVP_PKEY_free(key);
    return x;
}

/* RFC 6120 §13.7.1.4: an XmppAddr naming the domain identifies the server. */
static void xmppaddr_accepted(void **state)
{
    (void)state;
    X509 *x = make_cert("ignored.example", "otherName:1.3.6.1.5.5.7.8.5;UTF8:b.test");
    assert_true(st_cert_names_domain(x, "b.test"));
    assert_true(st_cert_names_domain(x, "B.TEST"));
    assert_false(st_cert_names_domain(x, "a.test"));
    assert_false(st_cert_names_domain(x, "sub.b.test"));
    assert_false(st_cert_names_domain(x, "b.tes"));
    /* With a SAN present the CN is never consulted (RFC 6125 §6.4.4). */
    assert_false(st_cert_names_domain(x, "ignored.example"));
    X509_free(x);
}

/* Both kinds in one certificate: either matches its own name. */
static void xmppaddr_alongside_dnsname(void **state)
{
    (void)state;
    X509 *x = make_cert("x", "DNS:a.test,otherName:1.3.6.1.5.5.7.8.5;UTF8:conf.a.test");
    assert_true(st_cert_names_domain(x, "a.test"));
    assert_true(st_cert_names_domain(x, "conf.a.test"));
    assert_false(st_cert_names_domain(x, "c.test"));
    X509_free(x);
}

/* A JID with a localpart, or an XmppAddr in the wrong ASN.1 type, or another otherName OID
 * (SRV-ID's 1.3.6.1.5.5.7.8.7 carries an IA5String "_xmpp-server.b.test"), is not a match. */
static void xmppaddr_strict(void **state)
{
    (void)state;
    X509 *x = make_cert("x", "otherName:1.3.6.1.5.5.7.8.5;UTF8:user@b.test,"
                             "otherName:1.3.6.1.5.5.7.8.5;IA5STRING:b.test,"
                             "otherName:1.3.6.1.5.5.7.8.6;UTF8:b.test");
    assert_false(st_cert_names_domain(x, "b.test"));
    X509_free(x);
}

/* The DNS-ID path is unchanged: wildcard as a whole left-most label only. */
static void dnsname_rules(void **state)
{
    (void)state;
    X509 *x = make_cert("x", "DNS:*.d.test");
    assert_true(st_cert_names_domain(x, "s2s.d.test"));
    assert_false(st_cert_names_domain(x, "d.test"));
    assert_false(st_cert_names_domain(x, "a.b.d.test"));
    assert_false(st_cert_names_domain(NULL, "d.test"));
    assert_false(st_cert_names_domain(x, ""));
    X509_free(x);
    x = make_cert("cn-only.test", NULL);
    assert_true(st_cert_names_domain(x, "cn-only.test"));
    X509_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(xmppaddr_accepted),
        cmocka_unit_test(xmppaddr_alongside_dnsname),
        cmocka_unit_test(xmppaddr_strict),
        cmocka_unit_test(dnsname_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
