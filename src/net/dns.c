/* Asynchronous DNS on c-ares integrated with libuv: c-ares tells us which
 * sockets it wants watched (ARES_OPT_SOCK_STATE_CB) and we mirror them with
 * uv_poll handles, plus one uv_timer for its retransmission timeouts, so
 * every query runs on the loop without blocking. On top: the federation
 * lookups of RFC 6120 §3.2 — SRV `_xmpps-server._tcp` (XEP-0368 §3) and
 * `_xmpp-server._tcp` merged and ordered per RFC 2782, the fallback to the
 * domain itself on 5269 (§3.2.2) when there are no SRV records (NXDOMAIN,
 * NODATA, and by our choice SERVFAIL/REFUSED: st_dns_srv_decide), a single
 * "." target meaning "no service" (RFC 2782) — and A/AAAA lookups of the
 * chosen target. Requests can be cancelled; a cancelled request stays
 * allocated until c-ares reports it, then is freed silently. */
#include "net/dns.h"

#include "base/err.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rand.h"

#include <arpa/inet.h>
#include <ares.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>

#define MAX_TARGETS 32
#define MAX_ADDRS 16

struct dns_poll {
    uv_poll_t poll;
    struct st_dns *d;
    ares_socket_t fd;
    struct dns_poll *next;
};

struct st_dns {
    uv_loop_t *loop;
    ares_channel channel;
    uv_timer_t timer;
    struct dns_poll *polls;
    bool freeing;
};

enum req_kind { REQ_SERVER, REQ_ADDR };

struct st_dns_req {
    struct st_dns *d;
    enum req_kind kind;
    bool cancelled;
    unsigned outstanding; /* c-ares queries still to report */
    char name[ST_DNS_NAME_MAX];
    st_dns_srv_cb srv_cb;
    st_dns_addr_cb addr_cb;
    void *ud;
    /* SRV state: results of the two lookups */
    struct st_dns_srv recs[MAX_TARGETS];
    size_t nrecs;
    int status[2]; /* ARES_* per lookup (0 = xmpps, 1 = xmpp) */
    bool no_service[2];
};

static pthread_once_t g_ares_once = PTHREAD_ONCE_INIT;
static int g_ares_init_rc;

static void ares_global_init(void)
{
    g_ares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

/* ---- RFC 2782 ordering ---- */

static int cmp_priority(const void *a, const void *b)
{
    const struct st_dns_srv *x = a, *y = b;
    return (int)x->priority - (int)y->priority;
}

void st_dns_srv_order(struct st_dns_srv *recs, size_t n, uint32_t (*rnd)(void *rud), void *rud)
{
    /* A stable sort by priority keeps the input order inside a priority, which the weighted
     * selection below then permutes; insertion sort: n is small. */
    for (size_t i = 1; i < n; i++) {
        struct st_dns_srv t = recs[i];
        size_t j = i;
        while (j > 0 && cmp_priority(&recs[j - 1], &t) > 0) {
            recs[j] = recs[j - 1];
            j--;
        }
        recs[j] = t;
    }
    size_t start = 0;
    while (start < n) {
        size_t end = start;
        while (end < n && recs[end].priority == recs[start].priority)
            end++;
        /* RFC 2782: put weight-0 records first, then repeatedly pick a random number in
         * [0, total] and take the first record whose running sum reaches it. */
        for (size_t i = start, z = start; i < end; i++) {
            if (recs[i].weight == 0) {
                struct st_dns_srv t = recs[i];
                memmove(&recs[z + 1], &recs[z], (i - z) * sizeof t);
                recs[z++] = t;
            }
        }
        for (size_t pos = start; pos < end; pos++) {
            uint64_t total = 0;
            for (size_t i = pos; i < end; i++)
                total += recs[i].weight;
            uint64_t pick = rnd ? (uint64_t)rnd(rud) % (total + 1) : 0;
            uint64_t sum = 0;
            size_t chosen = end - 1;
            for (size_t i = pos; i < end; i++) {
                sum += recs[i].weight;
                if (sum >= pick) {
                    chosen = i;
                    break;
                }
            }
            if (chosen != pos) {
                struct st_dns_srv t = recs[chosen];
                memmove(&recs[pos + 1], &recs[pos], (chosen - pos) * sizeof t);
                recs[pos] = t;
            }
        }
        start = end;
    }
}

static uint32_t secure_rnd(void *rud)
{
    (void)rud;
    uint32_t v = 0;
    st_rand_bytes(&v, sizeof v);
    return v;
}

/* ---- loop integration ---- */

static void arm_timer(struct st_dns *d);

static void poll_closed(uv_handle_t *h)
{
    st_free(h->data);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct dns_poll *p = h->data;
    struct st_dns *d = p->d;
    ares_socket_t r = ARES_SOCKET_BAD, w = ARES_SOCKET_BAD;
    if (status < 0 || (events & UV_READABLE))
        r = p->fd;
    if (status < 0 || (events & UV_WRITABLE))
        w = p->fd;
    ares_process_fd(d->channel, r, w);
    arm_timer(d);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct st_dns *d = data;
    struct dns_poll **pp = &d->polls, *p = NULL;
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->fd == fd) {
            p = *pp;
            break;
        }
    }
    if (!readable && !writable) {
        if (p) {
            *pp = p->next;
            uv_poll_stop(&p->poll);
            uv_close((uv_handle_t *)&p->poll, poll_closed);
        }
        return;
    }
    if (!p) {
        p = ST_NEW(struct dns_poll);
        p->d = d;
        p->fd = fd;
        if (uv_poll_init_socket(d->loop, &p->poll, fd) != 0) {
            st_log_warn("dns", "cannot watch resolver socket %d", (int)fd);
            st_free(p);
            return;
        }
        p->poll.data = p;
        p->next = d->polls;
        d->polls = p;
    }
    uv_poll_start(&p->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0),
                  poll_cb);
}

static void timer_cb(uv_timer_t *t)
{
    struct st_dns *d = t->data;
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_timer(d);
}

static void arm_timer(struct st_dns *d)
{
    if (d->freeing)
        return;
    struct timeval tv, *tvp = ares_timeout(d->channel, NULL, &tv);
    if (!tvp) {
        uv_timer_stop(&d->timer);
        return;
    }
    uint64_t ms = (uint64_t)tvp->tv_sec * 1000 + (uint64_t)tvp->tv_usec / 1000 + 1;
    uv_timer_start(&d->timer, timer_cb, ms, 0);
}

/* Builds the c-ares server list "ip:port,ip:port" from "ip", "ip:port", "[v6]:port". */
static int servers_csv(const char *const *servers, size_t n, char *out, size_t outlen,
                       char **err)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *s = servers[i];
        char host[64];
        int port = 53;
        const char *colon = strrchr(s, ':');
        unsigned char tmp[16];
        if (s[0] == '[') {
            const char *close = strchr(s, ']');
            if (!close || (size_t)(close - s - 1) >= sizeof host)
                goto bad;
            memcpy(host, s + 1, (size_t)(close - s - 1));
            host[close - s - 1] = '\0';
            if (close[1] == ':')
                port = (int)strtol(close + 2, NULL, 10);
            else if (close[1])
                goto bad;
        } else if (colon && strchr(s, ':') == colon) {
            if ((size_t)(colon - s) >= sizeof host)
                goto bad;
            memcpy(host, s, (size_t)(colon - s));
            host[colon - s] = '\0';
            port = (int)strtol(colon + 1, NULL, 10);
        } else {
            if (strlen(s) >= sizeof host)
                goto bad;
            snprintf(host, sizeof host, "%s", s);
        }
        bool v6 = inet_pton(AF_INET6, host, tmp) == 1;
        if ((!v6 && inet_pton(AF_INET, host, tmp) != 1) || port < 1 || port > 65535)
            goto bad;
        int w = snprintf(out + len, outlen - len, "%s%s%s%s:%d", i ? "," : "", v6 ? "[" : "",
                         host, v6 ? "]" : "", port);
        if (w < 0 || (size_t)w >= outlen - len)
            goto bad;
        len += (size_t)w;
        continue;
    bad:
        if (err) {
            char msg[300];
            snprintf(msg, sizeof msg, "dns.servers: '%s' is not an IP address with an optional "
                                      "port", s);
            *err = st_strdup(msg);
        }
        return ST_EINVAL;
    }
    return 0;
}

static int channel_new(const char *const *servers, size_t n, uint64_t timeout_ms,
                       struct st_dns *sockd, ares_channel *out, char **err)
{
    pthread_once(&g_ares_once, ares_global_init);
    if (g_ares_init_rc != ARES_SUCCESS) {
        if (err)
            *err = st_strdup("c-ares initialisation failed");
        return ST_EIO;
    }
    char csv[2048];
    if (servers_csv(servers, n, csv, sizeof csv, err) != 0)
        return ST_EINVAL;
    struct ares_options o;
    memset(&o, 0, sizeof o);
    int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    o.timeout = (int)(timeout_ms > 60000 ? 60000 : timeout_ms);
    o.tries = 2;
    if (sockd) {
        o.sock_state_cb = sock_state_cb;
        o.sock_state_cb_data = sockd;
        mask |= ARES_OPT_SOCK_STATE_CB;
    }
    int r = ares_init_options(out, &o, mask);
    if (r != ARES_SUCCESS) {
        if (err) {
            char msg[256];
            snprintf(msg, sizeof msg, "DNS resolver: %s", ares_strerror(r));
            *err = st_strdup(msg);
        }
        return ST_EIO;
    }
    if (n && (r = ares_set_servers_ports_csv(*out, csv)) != ARES_SUCCESS) {
        if (err) {
            char msg[256];
            snprintf(msg, sizeof msg, "dns.servers: %s", ares_strerror(r));
            *err = st_strdup(msg);
        }
        ares_destroy(*out);
        return ST_EINVAL;
    }
    return 0;
}

int st_dns_new(uv_loop_t *loop, const char *const *servers, size_t n, uint64_t timeout_ms,
               struct st_dns **out, char **err)
{
    *out = NULL;
    if (err)
        *err = NULL;
    struct st_dns *d = ST_NEW(struct st_dns);
    d->loop = loop;
    int rc = channel_new(servers, n, timeout_ms, d, &d->channel, err);
    if (rc) {
        st_free(d);
        return rc;
    }
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    *out = d;
    return 0;
}

static void dns_timer_closed(uv_handle_t *h)
{
    st_free(h->data);
}

void st_dns_free(struct st_dns *d)
{
    if (!d)
        return;
    d->freeing = true;
    /* Callbacks of pending queries run inside ares_destroy with ARES_EDESTRUCTION; they
     * free their requests without calling the user. */
    ares_destroy(d->channel);
    while (d->polls) {
        struct dns_poll *p = d->polls;
        d->polls = p->next;
        uv_poll_stop(&p->poll);
        uv_close((uv_handle_t *)&p->poll, poll_closed);
    }
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, dns_timer_closed);
}

/* ---- requests ---- */

static int map_status(int s)
{
    switch (s) {
    case ARES_SUCCESS:
        return 0;
    case ARES_ENODATA:
    case ARES_ENOTFOUND:
    case ARES_ENONAME:
        return ST_ENOTFOUND;
    case ARES_ETIMEOUT:
        return ST_EAGAIN;
    default:
        return ST_EIO;
    }
}

/* Which failures of an SRV query count as "no usable SRV answer" and let the A/AAAA fallback
 * run. RFC 6120 §3.2.1 and §3.2.2 fall back when the lookup yields no records; what to do
 * when the server answers SERVFAIL or REFUSED is left open. We fall back for those too, as
 * Prosody and ejabberd do: a broken or unreachable SRV zone (often a delegation fault or a
 * resolver that refuses SRV) must not cut federation with a domain whose A record works,
 * and the fallback still ends in TLS with the certificate checked against the domain, so
 * it cannot send us somewhere the domain did not name. A timeout or a resolver we cannot
 * reach does not fall back: the A/AAAA query would go to the same silent server. */
static bool srv_failure_falls_back(int ares_status)
{
    switch (ares_status) {
    case ARES_ENODATA:   /* NODATA: the name exists, no SRV record */
    case ARES_ENOTFOUND: /* NXDOMAIN */
    case ARES_ENONAME:
    case ARES_ESERVFAIL:
    case ARES_EREFUSED:
    case ARES_EFORMERR:
    case ARES_EBADRESP:
        return true;
    default:
        return false;
    }
}

enum st_dns_srv_next st_dns_srv_decide(const int ares_status[2], size_t nrecs, bool no_service,
                                       int *err)
{
    if (err)
        *err = 0;
    if (nrecs)
        return ST_DNS_SRV_USE;
    if (no_service) {
        if (err)
            *err = ST_ENOTFOUND; /* RFC 2782: target "." — the service is decidedly absent */
        return ST_DNS_SRV_FAIL;
    }
    /* An empty but successful answer to either name (XEP-0368 and RFC 6120 SRV sets are one
     * list) is a NODATA in effect. */
    if (ares_status[0] == ARES_SUCCESS || ares_status[1] == ARES_SUCCESS)
        return ST_DNS_SRV_FALLBACK;
    if (srv_failure_falls_back(ares_status[1]))
        return ST_DNS_SRV_FALLBACK;
    if (err)
        *err = map_status(ares_status[1]);
    return ST_DNS_SRV_FAIL;
}

static void srv_finish(struct st_dns_req *r)
{
    if (r->cancelled || r->d->freeing) {
        st_free(r);
        return;
    }
    struct st_dns_srv targets[MAX_TARGETS];
    size_t n = 0;
    int status = 0;
    switch (st_dns_srv_decide(r->status, r->nrecs, r->no_service[0] || r->no_service[1],
                              &status)) {
    case ST_DNS_SRV_USE:
        memcpy(targets, r->recs, r->nrecs * sizeof targets[0]);
        n = r->nrecs;
        st_dns_srv_order(targets, n, secure_rnd, NULL);
        break;
    case ST_DNS_SRV_FALLBACK:
        /* RFC 6120 §3.2.2: the domain itself on the default port. */
        snprintf(targets[0].host, sizeof targets[0].host, "%s", r->name);
        targets[0].port = ST_DNS_DEFAULT_S2S_PORT;
        targets[0].priority = targets[0].weight = 0;
        targets[0].direct_tls = false;
        n = 1;
        break;
    case ST_DNS_SRV_FAIL:
        break;
    }
    r->srv_cb(r->ud, status, n ? targets : NULL, n);
    st_free(r);
}

static void srv_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen, int which)
{
    (void)timeouts;
    struct st_dns_req *r = arg;
    r->status[which] = status;
    if (status == ARES_SUCCESS && !r->cancelled && !r->d->freeing) {
        struct ares_srv_reply *srv = NULL;
        int pr = ares_parse_srv_reply(abuf, alen, &srv);
        if (pr == ARES_SUCCESS) {
            size_t count = 0;
            for (struct ares_srv_reply *s = srv; s; s = s->next)
                count++;
            for (struct ares_srv_reply *s = srv; s; s = s->next) {
                if (strcmp(s->host, ".") == 0 || s->host[0] == '\0') {
                    if (count == 1)
                        r->no_service[which] = true;
                    continue;
                }
                if (r->nrecs >= MAX_TARGETS || strlen(s->host) >= ST_DNS_NAME_MAX)
                    continue;
                struct st_dns_srv *t = &r->recs[r->nrecs++];
                snprintf(t->host, sizeof t->host, "%s", s->host);
                t->port = s->port;
                t->priority = s->priority;
                t->weight = s->weight;
                t->direct_tls = which == 0;
            }
            ares_free_data(srv);
        } else {
            r->status[which] = pr;
        }
    }
    if (--r->outstanding == 0)
        srv_finish(r);
}

static void srv_cb_tls(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    srv_cb(arg, status, timeouts, abuf, alen, 0);
}

static void srv_cb_plain(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    srv_cb(arg, status, timeouts, abuf, alen, 1);
}

static bool valid_name(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n < ST_DNS_NAME_MAX - 24 && !strpbrk(name, " \t\r\n/\\");
}

int st_dns_resolve_server(struct st_dns *d, const char *domain, st_dns_srv_cb cb, void *ud,
                          struct st_dns_req **req)
{
    if (req)
        *req = NULL;
    if (!valid_name(domain))
        return ST_EINVAL;
    struct st_dns_req *r = ST_NEW(struct st_dns_req);
    r->d = d;
    r->kind = REQ_SERVER;
    r->srv_cb = cb;
    r->ud = ud;
    snprintf(r->name, sizeof r->name, "%s", domain);
    r->outstanding = 2;
    if (req)
        *req = r;
    char q[ST_DNS_NAME_MAX + 32];
    /* The callbacks never run inside ares_query for network lookups, but c-ares may answer
     * from its own checks synchronously (e.g. a bad name); outstanding covers both. */
    snprintf(q, sizeof q, "_xmpps-server._tcp.%s", domain);
    ares_query(d->channel, q, ns_c_in, ns_t_srv, srv_cb_tls, r);
    snprintf(q, sizeof q, "_xmpp-server._tcp.%s", domain);
    ares_query(d->channel, q, ns_c_in, ns_t_srv, srv_cb_plain, r);
    arm_timer(d);
    return 0;
}

static void addr_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct st_dns_req *r = arg;
    if (r->cancelled || r->d->freeing) {
        if (res)
            ares_freeaddrinfo(res);
        st_free(r);
        return;
    }
    char store[MAX_ADDRS][INET6_ADDRSTRLEN];
    const char *addrs[MAX_ADDRS];
    size_t n = 0;
    for (struct ares_addrinfo_node *a = res ? res->nodes : NULL; a && n < MAX_ADDRS;
         a = a->ai_next) {
        const void *src = NULL;
        if (a->ai_family == AF_INET)
            src = &((const struct sockaddr_in *)a->ai_addr)->sin_addr;
        else if (a->ai_family == AF_INET6)
            src = &((const struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
        if (!src || !inet_ntop(a->ai_family, src, store[n], sizeof store[n]))
            continue;
        bool dup = false;
        for (size_t i = 0; i < n; i++)
            dup = dup || strcmp(store[i], store[n]) == 0;
        if (!dup) {
            addrs[n] = store[n];
            n++;
        }
    }
    if (res)
        ares_freeaddrinfo(res);
    int st = status == ARES_SUCCESS ? (n ? 0 : ST_ENOTFOUND) : map_status(status);
    r->addr_cb(r->ud, st, n ? addrs : NULL, n);
    st_free(r);
}

int st_dns_resolve_addr(struct st_dns *d, const char *host, st_dns_addr_cb cb, void *ud,
                        struct st_dns_req **req)
{
    if (req)
        *req = NULL;
    if (!valid_name(host))
        return ST_EINVAL;
    struct st_dns_req *r = ST_NEW(struct st_dns_req);
    r->d = d;
    r->kind = REQ_ADDR;
    r->addr_cb = cb;
    r->ud = ud;
    snprintf(r->name, sizeof r->name, "%s", host);
    if (req)
        *req = r;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_flags = ARES_AI_NOSORT;
    ares_getaddrinfo(d->channel, r->name, NULL, &hints, addr_cb, r);
    arm_timer(d);
    return 0;
}

void st_dns_cancel(struct st_dns_req *req)
{
    if (req)
        req->cancelled = true;
}

/* ---- synchronous lookups for the CLI ---- */

struct sync_srv {
    struct st_dns_srv *out;
    size_t max, n;
    int status;
    bool done;
};

static void sync_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct sync_srv *s = arg;
    s->done = true;
    s->status = status;
    if (status != ARES_SUCCESS)
        return;
    struct ares_srv_reply *srv = NULL;
    if ((s->status = ares_parse_srv_reply(abuf, alen, &srv)) != ARES_SUCCESS)
        return;
    for (struct ares_srv_reply *r = srv; r && s->n < s->max; r = r->next) {
        struct st_dns_srv *t = &s->out[s->n++];
        snprintf(t->host, sizeof t->host, "%s", r->host);
        t->port = r->port;
        t->priority = r->priority;
        t->weight = r->weight;
    }
    ares_free_data(srv);
}

int st_dns_srv_sync(const char *name, const char *const *servers, size_t nservers,
                    uint64_t timeout_ms, struct st_dns_srv *out, size_t max)
{
    ares_channel ch;
    if (channel_new(servers, nservers, timeout_ms, NULL, &ch, NULL) != 0)
        return ST_EIO;
    struct sync_srv s = {.out = out, .max = max};
    ares_query(ch, name, ns_c_in, ns_t_srv, sync_cb, &s);
    while (!s.done) {
        fd_set rfds, wfds;
        FD_ZERO(&rfds);
        FD_ZERO(&wfds);
        int nfds = ares_fds(ch, &rfds, &wfds);
        if (nfds == 0)
            break;
        struct timeval tv, *tvp = ares_timeout(ch, NULL, &tv);
        select(nfds, &rfds, &wfds, NULL, tvp);
        ares_process(ch, &rfds, &wfds);
    }
    ares_destroy(ch);
    if (s.status != ARES_SUCCESS)
        return map_status(s.status);
    st_dns_srv_order(out, s.n, secure_rnd, NULL);
    return (int)s.n;
}
