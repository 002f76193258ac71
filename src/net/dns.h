/* Asynchronous DNS for federation on c-ares, driven by the libuv loop (no
 * blocking call ever runs on the loop): SRV lookups of `_xmpps-server._tcp`
 * (XEP-0368 direct TLS) and `_xmpp-server._tcp` (RFC 6120 §3.2.1) ordered
 * per RFC 2782 (priority ascending, weighted random within a priority),
 * the A/AAAA fallback on port 5269 (RFC 6120 §3.2.2), and address lookups
 * of the chosen targets. Servers may be given explicitly (`dns.servers`),
 * otherwise /etc/resolv.conf applies. */
#ifndef ST_NET_DNS_H
#define ST_NET_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct st_dns;
struct st_dns_req;

#define ST_DNS_NAME_MAX 256
#define ST_DNS_DEFAULT_S2S_PORT 5269

/* One SRV record, or one connection target after ordering. */
struct st_dns_srv {
    char host[ST_DNS_NAME_MAX];
    uint16_t port;
    uint16_t priority;
    uint16_t weight;
    bool direct_tls; /* from _xmpps-server._tcp */
};

/* Orders n records in place per RFC 2782: ascending priority; within one priority a
 * weighted random order (records of weight 0 first in the running sum, so they are
 * chosen rarely but can be). rnd returns a uniformly distributed 32-bit value (rud is passed
 * through), so tests can drive it. Pure; any thread. */
void st_dns_srv_order(struct st_dns_srv *recs, size_t n, uint32_t (*rnd)(void *rud), void *rud);

/* What the SRV step of RFC 6120 §3.2.1 leads to. */
enum st_dns_srv_next {
    ST_DNS_SRV_USE,      /* connect to the SRV targets */
    ST_DNS_SRV_FALLBACK, /* RFC 6120 §3.2.2: A/AAAA of the domain itself, port 5269 */
    ST_DNS_SRV_FAIL,     /* no attempt: *err says why */
};
/* Decides from the c-ares statuses of the two SRV queries (ares_status[0] for
 * _xmpps-server._tcp, [1] for _xmpp-server._tcp), the number of usable records found and
 * whether a "." target declared the service absent. Falls back on NXDOMAIN, NODATA and also
 * on SERVFAIL, REFUSED and malformed answers (our documented choice: RFC 6120 leaves it
 * open; dns.c explains why); fails on a "." target (ST_ENOTFOUND), timeouts (ST_EAGAIN) and
 * other resolver errors (ST_EIO), writing that to *err (may be NULL; 0 otherwise). Pure; any
 * thread. */
enum st_dns_srv_next st_dns_srv_decide(const int ares_status[2], size_t nrecs, bool no_service,
                                       int *err);

/* Creates a resolver on loop. servers: n entries "ip" or "ip:port" ([v6]:port), or n = 0 for
 * the system configuration. timeout_ms: per query attempt (two attempts). Returns 0 and *out,
 * or ST_EINVAL/ST_EIO with *err (new string). Loop thread. */
int st_dns_new(uv_loop_t *loop, const char *const *servers, size_t n, uint64_t timeout_ms,
               struct st_dns **out, char **err);
/* Cancels every pending request (their callbacks are not called) and frees the resolver;
 * its handles close asynchronously on the loop. NULL allowed. */
void st_dns_free(struct st_dns *d);

/* Result of st_dns_resolve_server: targets in connection order (borrowed for the call).
 * status 0 with n >= 1; on failure a negative ST_E* (ST_ENOTFOUND: the domain has no
 * server, ST_EAGAIN: no answer in time, ST_EIO: other resolver failures) and n = 0. A
 * domain without SRV records yields one target {domain, 5269, plain}. */
typedef void (*st_dns_srv_cb)(void *ud, int status, const struct st_dns_srv *targets, size_t n);
/* Looks up both SRV names of domain for federation (XEP-0368 §3: the two sets are merged
 * and ordered together by priority and weight). *req (may be NULL) receives a handle for
 * st_dns_cancel, valid until cb runs. cb runs later on the loop, never inside this call.
 * Returns 0 or an error (cb not called). */
int st_dns_resolve_server(struct st_dns *d, const char *domain, st_dns_srv_cb cb, void *ud,
                          struct st_dns_req **req);

/* Result of st_dns_resolve_addr: IP literals in the order the resolver returned them,
 * borrowed for the call. */
typedef void (*st_dns_addr_cb)(void *ud, int status, const char *const *addrs, size_t n);
/* Looks up A and AAAA of host. Same conventions as st_dns_resolve_server. */
int st_dns_resolve_addr(struct st_dns *d, const char *host, st_dns_addr_cb cb, void *ud,
                        struct st_dns_req **req);
/* Cancels a pending request: its callback will not run. The handle is invalid afterwards. */
void st_dns_cancel(struct st_dns_req *req);

/* Synchronous SRV lookup for the command line (`starling check`): fills up to max records
 * of name (e.g. "_xmpp-server._tcp.example.org") in RFC 2782 order. servers as for
 * st_dns_new. Returns the number found (0 = none), or a negative ST_E* error. Blocks: never
 * call on the server's loop. */
int st_dns_srv_sync(const char *name, const char *const *servers, size_t nservers,
                    uint64_t timeout_ms, struct st_dns_srv *out, size_t max);

#endif
