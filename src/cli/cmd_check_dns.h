/* `starling check` DNS section: the SRV records a federating, client-facing
 * host should publish (RFC 6120 §3.2.1, XEP-0368), looked up per host. */
#ifndef ST_CLI_CMD_CHECK_DNS_H
#define ST_CLI_CMD_CHECK_DNS_H

struct st_settings;

/* For each configured host, looks up _xmpp-client._tcp, _xmpps-client._tcp,
 * _xmpp-server._tcp and _xmpps-server._tcp (through dns.servers, or /etc/resolv.conf) and
 * prints what exists and what is missing, with the fallback servers use without SRV
 * records (the domain's A/AAAA on 5269). Special-use names (RFC 6761: localhost, .test,
 * .invalid, .example, .local, single labels) are skipped. Stops asking after the first
 * lookup that gets no answer at all. Missing records are advice, not errors. Borrows s.
 * Blocking; command line only. Returns 0. */
int st_cmd_check_dns(const struct st_settings *s);

#endif
