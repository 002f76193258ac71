/* Outgoing connections and client-side TLS for federation (RFC 6120 §13.7,
 * RFC 6125, XEP-0368): st_conn_connect opens a TCP connection to an IP
 * address with a deadline, optionally starting TLS at once (direct TLS);
 * st_conn_starttls_client switches an open connection to TLS as the client
 * (STARTTLS). A `struct st_tls_client` holds what both sides of s2s need to
 * judge a peer: the trust store (system store plus configured CA files) and
 * our own certificate per local domain, offered as the TLS client
 * certificate so the peer can authenticate us with SASL EXTERNAL. Peer
 * certificates are not enforced during the handshake: the s2s code asks
 * st_conn_verify_peer afterwards and decides (SASL EXTERNAL, dialback or
 * refusal). The resulting connection is a normal struct st_conn (conn.h). */
#ifndef ST_NET_CONNECT_H
#define ST_NET_CONNECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct st_conn;
struct st_tls_client;
struct st_connect_req;
struct x509_st;

/* Creates a client TLS configuration trusting the system store plus the PEM files ca_files
 * (n may be 0). Returns 0 and *out (one reference), or ST_EIO/ST_EINVAL with *err (new
 * string naming the file). Blocking file I/O: call at start or reload. */
int st_tls_client_new(const char *const *ca_files, size_t n, struct st_tls_client **out,
                      char **err);
/* Adds our certificate chain and key for local domain (the TLS client certificate offered
 * when connecting on behalf of that domain). Returns 0, or ST_EINVAL with *err. */
int st_tls_client_add_cert(struct st_tls_client *t, const char *domain, const char *cert_path,
                           const char *key_path, char **err);
/* Whether our certificate for cert_domain (added above) also names `name` (DNS-ID or
 * XmppAddr), i.e. a peer that checks it would accept us as `name` too. NULL t allowed. */
bool st_tls_client_cert_names(struct st_tls_client *t, const char *cert_domain,
                              const char *name);
/* Reference counting; the last unref frees. NULL allowed. */
struct st_tls_client *st_tls_client_ref(struct st_tls_client *t);
void st_tls_client_unref(struct st_tls_client *t);

/* Called once when the connection is up or failed. On success c is an open connection
 * (status 0) whose handler the callee must set (st_conn_set_handler) before returning; reading
 * starts after the callback. On failure c is NULL and status is ST_EAGAIN (timeout) or
 * ST_EIO (refused, unreachable...). Loop thread. */
typedef void (*st_connect_cb)(void *ud, struct st_conn *c, int status);

/* Connects to addr (an IPv4 or IPv6 literal) port, failing after timeout_ms. With tls non-NULL
 * TLS starts as soon as TCP is up (XEP-0368 direct TLS, ALPN "xmpp-server") with SNI sni and
 * our certificate for local_domain when one was added; bytes written before the handshake
 * completes are held and sent encrypted afterwards. *req (may be NULL) receives a handle for
 * st_connect_cancel, valid until cb runs. cb never runs inside this call. Returns 0, or
 * ST_EINVAL (addr is not an IP literal) without calling cb. */
int st_conn_connect(uv_loop_t *loop, const char *addr, int port, struct st_tls_client *tls,
                    const char *sni, const char *local_domain, st_connect_cb cb, void *ud,
                    uint64_t timeout_ms, struct st_connect_req **req);
/* Abandons a pending connect: cb will not run and the socket is closed. */
void st_connect_cancel(struct st_connect_req *req);

/* Starts client-side TLS on an open plaintext connection (STARTTLS, RFC 6120 §5.4.3.3): bytes
 * already queued leave in plaintext; later writes are held until the handshake completes.
 * sni and local_domain as for st_conn_connect. Returns 0, ST_ECLOSED, or ST_EIO. */
int st_conn_starttls_client(struct st_conn *c, struct st_tls_client *tls, const char *sni,
                            const char *local_domain);

/* On a server-side TLS connection whose handshake has not started yet (right after
 * st_conn_starttls, or in the accept callback of a direct-TLS listener): asks the client for
 * its certificate without requiring one, so it can be judged later. Returns 0 or ST_EIO. */
int st_conn_request_peer_cert(struct st_conn *c);

/* How a peer's certificate measures up for a domain. */
enum st_peer_cert {
    ST_PEER_CERT_OK = 0,        /* chain trusted and the domain matches (RFC 6125 §6.4) */
    ST_PEER_CERT_NONE,          /* no TLS, handshake unfinished, or no certificate sent */
    ST_PEER_CERT_UNTRUSTED,     /* chain does not verify against the trust store */
    ST_PEER_CERT_NAME_MISMATCH, /* trusted, but not issued for this domain */
};
/* Whether cert (borrowed) is issued for domain: a DNS-ID per RFC 6125 §6.4 (dNSName SAN, one
 * whole left-most wildcard label, CN only without SANs) or an XmppAddr otherName SAN equal to
 * the domain (RFC 6120 §13.7.1.4). Says nothing about trust. Pure; any thread. */
bool st_cert_names_domain(struct x509_st *cert, const char *domain);
/* Verifies the peer's certificate chain against t's trust store and the domain with
 * st_cert_names_domain. Writes a short
 * reason to why (may be NULL). Loop thread. */
enum st_peer_cert st_conn_verify_peer(struct st_conn *c, struct st_tls_client *t,
                                      const char *domain, char *why, size_t whylen);
/* Static text for a result ("trusted", "no certificate", ...). */
const char *st_peer_cert_str(enum st_peer_cert r);

#endif
