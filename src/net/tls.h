/* TLS configuration (OpenSSL 3): one server context per listener set with
 * a certificate per virtual host chosen by SNI (RFC 6066), TLS 1.2+ only
 * with modern ciphers (RFC 7590), ALPN, and certificate utilities for the
 * CLI: self-signed generation on first start and `starling check`. */
#ifndef ST_NET_TLS_H
#define ST_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct st_tls;

/* One host's certificate. */
struct st_tls_cert_spec {
    const char *host;      /* the virtual host name (SNI match, and default for first host) */
    const char *cert_path; /* PEM chain */
    const char *key_path;  /* PEM private key */
};

/* Returns a new TLS context (one reference) serving the given certificates (the first is the
 * default when the client sends no or an unknown SNI; an unknown name covered by another
 * host's wildcard certificate gets that one). Borrows certs. Returns 0 and *out, or
 * ST_EINVAL/ST_EIO with *err (new string naming the file and the problem). Any thread. */
int st_tls_new(const struct st_tls_cert_spec *certs, size_t n, struct st_tls **out, char **err);
/* Reference counting: connections hold a reference to the context they were accepted with, so
 * a reload (SIGHUP) can swap contexts without disturbing live connections. */
struct st_tls *st_tls_ref(struct st_tls *t);
void st_tls_unref(struct st_tls *t);

/* Generates a self-signed certificate (EC P-256, X.509 v3, SAN dNSName = names, CN = names[0],
 * random serial, valid 10 years) and key files (cert 0644, key 0600; missing parent
 * directories are created 0700). Returns 0, ST_EINVAL (no/bad names) or ST_EIO with *err. */
int st_tls_generate_selfsigned(const char *const *names, size_t n, const char *cert_path,
                               const char *key_path, char **err);

/* Checks cert/key files for `starling check`: loadable, key matches, not expired (and warns
 * when expiring within 30 days), covers host (SAN dNSName incl. wildcards, RFC 6125). Appends
 * human-readable findings to *report (new string). Returns 0 when usable, ST_EINVAL when not. */
int st_tls_check_cert(const char *host, const char *cert_path, const char *key_path,
                      char **report);

/* ---- internal to net/: used by conn.c ---- */
struct ssl_ctx_st;
struct ssl_ctx_st *st_tls_ssl_ctx(struct st_tls *t);

#endif
