/* Client addresses behind trusted reverse proxies: the Forwarded header
 * (RFC 7239 §4, §5.2 "for", §5.4 "proto") or else X-Forwarded-For /
 * X-Forwarded-Proto, honoured only when the socket peer is a configured
 * trusted proxy (an IP literal or CIDR). Entries are walked from the right
 * (nearest proxy first), skipping trusted hops, so a client cannot forge its
 * address by sending its own header: only what our proxies appended counts. */
#include "http/http.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/mem.h"

bool st_http_addr_match(const char *spec, const char *addr)
{
    char net[64];
    size_t n = strlen(spec);
    if (n >= sizeof net)
        return false;
    memcpy(net, spec, n + 1);
    long bits = -1;
    char *slash = strchr(net, '/');
    if (slash) {
        *slash = '\0';
        char *end = NULL;
        bits = strtol(slash + 1, &end, 10);
        if (!end || *end || end == slash + 1 || bits < 0)
            return false;
    }
    unsigned char a[16], b[16];
    size_t len;
    if (inet_pton(AF_INET, net, a) == 1 && inet_pton(AF_INET, addr, b) == 1) {
        len = 4;
    } else if (inet_pton(AF_INET6, net, a) == 1 && inet_pton(AF_INET6, addr, b) == 1) {
        len = 16;
    } else {
        return false;
    }
    if (bits < 0)
        bits = (long)len * 8;
    if (bits > (long)len * 8)
        return false;
    size_t full = (size_t)bits / 8;
    if (memcmp(a, b, full) != 0)
        return false;
    unsigned rem = (unsigned)bits % 8;
    if (rem) {
        unsigned char mask = (unsigned char)(0xff << (8 - rem));
        if ((a[full] & mask) != (b[full] & mask))
            return false;
    }
    return true;
}

static bool trusted_addr(const struct st_strlist *trusted, const char *addr)
{
    for (size_t i = 0; i < trusted->n; i++)
        if (st_http_addr_match(trusted->items[i], addr))
            return true;
    return false;
}

/* Normalises one node value (RFC 7239 §6): strips quotes, [brackets] and a :port. Writes
 * an IP literal into out, or "" for obfuscated/unknown identifiers. */
static void node_addr(const char *s, size_t n, char *out, size_t outlen)
{
    out[0] = '\0';
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    char tmp[64];
    if (n == 0 || n >= sizeof tmp)
        return;
    if (s[0] == '[') {
        const char *e = memchr(s, ']', n);
        if (!e)
            return;
        n = (size_t)(e - s - 1);
        s++;
    } else {
        const char *c = memchr(s, ':', n);
        /* one colon = IPv4:port; several = a bare IPv6 address (X-Forwarded-For style) */
        if (c && !memchr(c + 1, ':', n - (size_t)(c - s) - 1))
            n = (size_t)(c - s);
    }
    if (n >= sizeof tmp)
        return;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    unsigned char buf[16];
    if ((inet_pton(AF_INET, tmp, buf) == 1 || inet_pton(AF_INET6, tmp, buf) == 1) &&
        n < outlen) {
        memcpy(out, tmp, n + 1);
    }
}

/* Splits a comma-separated list (all instances of the header joined) into elements. */
struct elems {
    const char *s[32];
    size_t n[32];
    size_t count;
};

static void split_header(const struct st_http_req *r, const char *name, struct elems *e)
{
    e->count = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (strcmp(r->headers[i].name, name) != 0)
            continue;
        const char *v = r->headers[i].value;
        while (*v) {
            const char *c = strchr(v, ',');
            size_t n = c ? (size_t)(c - v) : strlen(v);
            if (e->count == 32) { /* keep the nearest 32 hops */
                memmove(e->s, e->s + 1, 31 * sizeof e->s[0]);
                memmove(e->n, e->n + 1, 31 * sizeof e->n[0]);
                e->count = 31;
            }
            e->s[e->count] = v;
            e->n[e->count++] = n;
            v += n;
            if (*v == ',')
                v++;
        }
    }
}

/* Finds parameter key=value in one Forwarded element (pairs separated by ';'). */
static bool fwd_param(const char *s, size_t n, const char *key, const char **val, size_t *vlen)
{
    size_t kl = strlen(key);
    size_t i = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == ';'))
            i++;
        size_t j = i;
        bool quoted = false;
        while (j < n && (quoted || s[j] != ';')) {
            if (s[j] == '"')
                quoted = !quoted;
            j++;
        }
        if (j - i > kl && s[i + kl] == '=' && strncasecmp(s + i, key, kl) == 0) {
            *val = s + i + kl + 1;
            *vlen = j - i - kl - 1;
            return true;
        }
        i = j;
    }
    return false;
}

/* One hop of the chain, walked from the nearest proxy: the node s[0..n) becomes the client
 * address in out (when it fits). Returns true when that node is itself a trusted proxy, so
 * the walk goes on to the hop before it; false at the client, or at a node that is not an
 * IP literal (obfuscated, "unknown"), where the walk stops. */
static bool take_hop(const struct st_strlist *trusted, const char *s, size_t n, char *out,
                     size_t outlen)
{
    char addr[64];
    node_addr(s, n, addr, sizeof addr);
    if (!addr[0])
        return false;
    if (strlen(addr) < outlen)
        memcpy(out, addr, strlen(addr) + 1);
    return trusted_addr(trusted, addr);
}

bool st_http_resolve_client(const struct st_strlist *trusted, const char *peer,
                            const struct st_http_req *r, char *out, size_t outlen, bool *https)
{
    *https = false;
    size_t pl = strlen(peer);
    if (pl >= outlen)
        pl = outlen - 1;
    memcpy(out, peer, pl);
    out[pl] = '\0';
    if (!trusted->n || !trusted_addr(trusted, peer))
        return false;
    struct elems e;
    split_header(r, "forwarded", &e);
    if (e.count) {
        const char *v;
        size_t vl;
        if (fwd_param(e.s[e.count - 1], e.n[e.count - 1], "proto", &v, &vl))
            *https = (vl == 5 && strncasecmp(v, "https", 5) == 0) ||
                     (vl == 7 && strncasecmp(v, "\"https\"", 7) == 0);
        for (size_t i = e.count; i-- > 0;)
            if (!fwd_param(e.s[i], e.n[i], "for", &v, &vl) ||
                !take_hop(trusted, v, vl, out, outlen))
                break;
        return true;
    }
    const char *proto = st_http_req_header(r, "x-forwarded-proto");
    if (proto && strcasecmp(proto, "https") == 0)
        *https = true;
    split_header(r, "x-forwarded-for", &e);
    for (size_t i = e.count; i-- > 0;)
        if (!take_hop(trusted, e.s[i], e.n[i], out, outlen))
            break;
    return true;
}
