/* DNS checks for `starling check`: the SRV records of RFC 6120 §3.2.1
 * (_xmpp-client._tcp, _xmpp-server._tcp) and XEP-0368 §3 (_xmpps-client._tcp,
 * _xmpps-server._tcp) for each virtual host, with what each missing record
 * means for clients and servers. Lookups use c-ares synchronously (the CLI
 * has no loop) through the same dns.servers option the server uses. */
#include "cli/cmd_check_dns.h"

#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "net/dns.h"
#include "xmpp/settings.h"

static bool special_use(const char *d)
{
    static const char *const tlds[] = {"localhost", "test", "invalid", "example", "local",
                                       "onion", NULL};
    const char *dot = strrchr(d, '.');
    if (!dot)
        return true; /* single label: not a public domain */
    for (int i = 0; tlds[i]; i++)
        if (strcasecmp(dot + 1, tlds[i]) == 0)
            return true;
    return false;
}

struct svc {
    const char *prefix;
    const char *missing;
};

static const struct svc services[] = {
    {"_xmpp-client._tcp", "clients fall back to the domain's address on port 5222"},
    {"_xmpps-client._tcp", "optional: clients will not find direct TLS (XEP-0368)"},
    {"_xmpp-server._tcp", "other servers fall back to the domain's address on port 5269"},
    {"_xmpps-server._tcp", "optional: servers will not find direct TLS (XEP-0368)"},
};

int st_cmd_check_dns(const struct st_settings *s)
{
    const char *const *servers = (const char *const *)s->dns.servers.items;
    size_t nservers = s->dns.servers.n;
    uint64_t timeout = s->dns.timeout < 2000 ? s->dns.timeout : 2000;
    for (size_t h = 0; h < s->nhosts; h++) {
        const char *host = s->hosts[h].name;
        if (special_use(host)) {
            printf("%s: DNS: skipped (special-use or single-label name)\n", host);
            continue;
        }
        for (size_t i = 0; i < sizeof services / sizeof services[0]; i++) {
            char name[512];
            snprintf(name, sizeof name, "%s.%s", services[i].prefix, host);
            struct st_dns_srv recs[16];
            int n = st_dns_srv_sync(name, servers, nservers, timeout, recs, 16);
            if (n == ST_EAGAIN || n == ST_EIO) {
                printf("%s: DNS: no answer for %s (%s); DNS checks skipped\n", host, name,
                       n == ST_EAGAIN ? "timeout" : "resolver error");
                return 0;
            }
            if (n <= 0) {
                printf("%s: DNS %s SRV: missing (%s)\n", host, name, services[i].missing);
                if (i == 2) {
                    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
                    int rc = getaddrinfo(host, "5269", &hints, &res);
                    printf("%s: DNS %s A/AAAA: %s\n", host, host,
                           rc == 0 ? "present" : "missing: other servers cannot reach this host");
                    if (res)
                        freeaddrinfo(res);
                }
                continue;
            }
            for (int k = 0; k < n; k++) {
                if (strcmp(recs[k].host, ".") == 0)
                    printf("%s: DNS %s SRV: \".\" (service explicitly not offered)\n", host,
                           name);
                else
                    printf("%s: DNS %s SRV: %s port %u (priority %u, weight %u)\n", host, name,
                           recs[k].host, recs[k].port, recs[k].priority, recs[k].weight);
            }
        }
    }
    return 0;
}
