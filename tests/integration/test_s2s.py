"""Federation between two Starling servers on a private network of network
namespaces (see s2s_util.py), with the DNS answers served by dnsmasq.

Servers: a.test (10.99.0.1) and b.test (10.99.0.2) hold certificates from the
test CA and trust it: they authenticate each other with SASL EXTERNAL
(RFC 6120 §6, XEP-0178) over STARTTLS; a.test reaches b.test through a static
route, b.test finds a.test through DNS SRV (RFC 6120 §3.2.1). c.test
(10.99.0.3) has a self-signed certificate and is allowlisted in
s2s.insecure_domains on a.test: that pair uses Server Dialback (XEP-0220).
"""
import socket
import ssl
import time

import pytest

import s2s_util
from s2s_util import opened, login, chat, wait_body  # noqa: F401
from s2s_util import NetStarling, FedCA, FedNet, netns
from xmpp_raw import NS_CLIENT, NS_PING, StreamReader, new_id, q, stanza_error, tostr

NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_ROSTER = "jabber:iq:roster"

REASON = s2s_util.netns_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"federation tests: {REASON}")

USERS_A = {"juliet@a.test": "pw-juliet-Aa1x", "nurse@a.test": "pw-nurse-Aa2x",
           "tybalt@a2.test": "pw-tybalt-Aa3x"}
USERS_B = {"romeo@b.test": "pw-romeo-Bb1x"}
USERS_C = {"mercutio@c.test": "pw-mercutio-Cc1x"}


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    work = tmp_path_factory.mktemp("fed")
    net = FedNet(work, tag=f"{__import__('os').getpid() % 10000}a")
    servers = []
    try:
        ns_a, ip_a = net.add_node("a", 1)
        ns_b, ip_b = net.add_node("b", 2)
        ns_c, ip_c = net.add_node("c", 3)
        ns_d, ip_d = net.add_node("d", 4)  # d.test: resolves, but nothing listens
        # b.test finds a.test by SRV; c.test by SRV; a.test uses a static route for b.test.
        # XEP-0368: direct TLS preferred (priority 0) over STARTTLS (priority 10)
        net.add_srv("_xmpps-server._tcp", "a.test", "xmpp.a.test", 5270, priority=0)
        net.add_srv("_xmpp-server._tcp", "a.test", "xmpp.a.test", 5269, priority=10)
        net.add_a("xmpp.a.test", ip_a)
        # a2.test, a second host on a: direct TLS only, certificate with an XmppAddr only.
        net.add_srv("_xmpps-server._tcp", "a2.test", "xmpp.a.test", 5270, priority=0)
        net.add_srv("_xmpp-server._tcp", "c.test", "c.test", 5269)
        net.add_a("c.test", ip_c)
        net.add_a("d.test", ip_d)
        net.add_a("e.test", "10.99.0.77")  # no such host: connects time out
        net.start_dns()
        ca = FedCA(work)
        crt_a, key_a = ca.issue("a.test")
        crt_b, key_b = ca.issue("b.test")
        crt_a2, key_a2 = ca.issue("a2.test", str(work), xmpp_addrs=("a2.test",), dns=False)
        common = {"dns": {"servers": [s2s_util.HUB_ADDR], "timeout": "2s"},
                  "log_level": "debug"}
        a = NetStarling(work / "a", ns_a, ip_a, s2s_util.deep_merge_simple(common, {
            "hosts": {"a.test": {"certificate": crt_a, "key": key_a},
                      "a2.test": {"certificate": crt_a2, "key": key_a2}},
            "s2s": {"routes": {"b.test": f"{ip_b}:5269"}, "ca_files": [ca.cert],
                    "insecure_domains": ["c.test"], "connect_timeout": "2s",
                    "max_stanza_size": "16KiB"},
        }), name="a")
        b = NetStarling(work / "b", ns_b, ip_b, s2s_util.deep_merge_simple(common, {
            "hosts": {"b.test": {"certificate": crt_b, "key": key_b}},
            "s2s": {"ca_files": [ca.cert], "connect_timeout": "2s"},
        }), name="b")
        c = NetStarling(work / "c", ns_c, ip_c, s2s_util.deep_merge_simple(common, {
            "hosts": {"c.test": {}},
            "s2s": {"ca_files": [ca.cert], "insecure_domains": ["a.test"],
                    "routes": {"a.test": f"{ip_a}:5269", "b.test": f"{ip_b}:5269"},
                    "connect_timeout": "2s", "idle_timeout": "1s"},
        }), name="c")
        s2s_util.start_servers(servers, ((a, USERS_A), (b, USERS_B), (c, USERS_C)))
        yield {"net": net, "ca": ca, "a": a, "b": b, "c": c, "ip_d": ip_d}
        s2s_util.finish_servers(servers)
    finally:
        s2s_util.kill_servers(servers)
        net.teardown()




def test_message_a_to_b_sasl_external(fed, opened):
    """RFC 6120 §10.4: a message to a remote domain leaves over an s2s stream (static route,
    STARTTLS, SASL EXTERNAL with the CA-issued certificate) and is delivered there."""
    juliet = login(fed["a"], "juliet@a.test", opened, presence=True)
    romeo = login(fed["b"], "romeo@b.test", opened, presence=True)
    chat(juliet, "romeo@b.test", "hello-b")
    m = wait_body(romeo, "hello-b")
    assert m.get("from").startswith("juliet@a.test/")
    assert "authenticated (SASL EXTERNAL) over TLS" in fed["a"].log_text()


def established(ns, ip1, ip2, port=None):
    """ESTABLISHED TCP connections between ip1 and ip2 seen in namespace ns (/proc/net/tcp),
    as (local, remote) "ip:port" pairs; only those with `port` on either end when given."""
    def addr(h):
        ip, p = h.split(":")
        return ".".join(str(int(ip[i:i + 2], 16)) for i in (6, 4, 2, 0)) + f":{int(p, 16)}"
    out = s2s_util.run("ip", "netns", "exec", ns, "cat", "/proc/net/tcp").stdout
    conns = []
    for line in out.splitlines()[1:]:
        f = line.split()
        if f[3] != "01":
            continue
        lo, re_ = addr(f[1]), addr(f[2])
        if {lo.split(":")[0], re_.split(":")[0]} != {ip1, ip2}:
            continue
        if port is None or port in (int(lo.split(":")[1]), int(re_.split(":")[1])):
            conns.append((lo, re_))
    return conns


def test_bidi_one_connection(fed, opened):
    """XEP-0288: a.test asked for a bidirectional stream when it opened its stream to b.test
    (b.test advertises urn:xmpp:features:bidi and a.test trusts its certificate), so b.test
    answers over that stream: after a message each way exactly one TCP connection joins the
    two servers' s2s ports, and b.test never opened a stream of its own to a.test."""
    juliet = login(fed["a"], "juliet@a.test", opened, presence=True)
    romeo = login(fed["b"], "romeo@b.test", opened, presence=True)
    chat(juliet, "romeo@b.test", "bidi-there")
    wait_body(romeo, "bidi-there")
    chat(romeo, "juliet@a.test", "bidi-back")
    m = wait_body(juliet, "bidi-back")
    assert m.get("from").startswith("romeo@b.test/")
    r = romeo.iq(f"<iq type='get' to='a.test' id='{new_id()}'><ping xmlns='{NS_PING}'/></iq>",
                 timeout=10)
    assert r.get("type") == "result", tostr(r)
    ip_a, ip_b = fed["a"].addr, fed["b"].addr
    conns = established(fed["a"].ns, ip_a, ip_b, 5269)
    assert len(conns) == 1, conns
    assert conns[0][1] == f"{ip_b}:5269", conns  # the one a.test opened
    assert "requested a bidirectional stream (XEP-0288)" in fed["a"].log_text()
    assert "s2s-out b.test->a.test" not in fed["b"].log_text()


def test_message_b_to_a2_via_srv_direct_tls(fed, opened):
    """RFC 6120 §3.2.1, XEP-0368 §3: b.test finds a2.test by SRV (dnsmasq): only
    _xmpps-server._tcp exists, so b.test connects with direct TLS to port 5270. a2.test's
    certificate names it only in an XmppAddr (RFC 6120 §13.7.1.4), which b.test accepts:
    SASL EXTERNAL succeeds and the message arrives."""
    tybalt = login(fed["a"], "tybalt@a2.test", opened, presence=True)
    romeo = login(fed["b"], "romeo@b.test", opened, presence=True)
    chat(romeo, "tybalt@a2.test", "hello-a2")
    m = wait_body(tybalt, "hello-a2")
    assert m.get("from").startswith("romeo@b.test/")
    log_b = fed["b"].log_text()
    assert "s2s-out b.test->a2.test: connected to 10.99.0.1 port 5270 (direct TLS)" in log_b
    assert "s2s-out b.test->a2.test: authenticated (SASL EXTERNAL) over TLS" in log_b
    assert "(direct TLS)" in fed["a"].log_text()


def test_iq_ping_across(fed, opened):
    """XEP-0199 over federation: a client pings the remote server and gets its result."""
    juliet = login(fed["a"], "juliet@a.test", opened)
    r = juliet.iq(f"<iq type='get' to='b.test' id='{new_id()}'><ping xmlns='{NS_PING}'/></iq>",
                  timeout=10)
    assert r.get("type") == "result", tostr(r)
    assert r.get("from") == "b.test"


def test_presence_subscription_both(fed, opened):
    """RFC 6121 §3.1: a subscription request and approval across servers, in both
    directions, end with subscription='both' on both rosters (roster pushes)."""
    juliet = login(fed["a"], "juliet@a.test", opened)
    romeo = login(fed["b"], "romeo@b.test", opened)
    for c in (juliet, romeo):
        c.iq(f"<iq type='get' id='{new_id()}'><query xmlns='{NS_ROSTER}'/></iq>")
        c.send("<presence/>")

    def subscribe(frm, frm_jid, to, to_jid):
        frm.send(f"<presence type='subscribe' to='{to_jid}'/>")
        req = to.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence")
                          and e.get("type") == "subscribe", timeout=10)
        assert req.get("from") == frm_jid
        to.send(f"<presence type='subscribed' to='{frm_jid}'/>")
        frm.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence")
                     and e.get("type") == "subscribed", timeout=10)

    subscribe(juliet, "juliet@a.test", romeo, "romeo@b.test")
    subscribe(romeo, "romeo@b.test", juliet, "juliet@a.test")

    def sub_of(c, jid):
        r = c.iq(f"<iq type='get' id='{new_id()}'><query xmlns='{NS_ROSTER}'/></iq>")
        for item in r.find(q(NS_ROSTER, "query")):
            if item.get("jid") == jid:
                return item.get("subscription")
        return None

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sub_of(juliet, "romeo@b.test") == "both" and sub_of(romeo, "juliet@a.test") == "both":
            break
        time.sleep(0.2)
    assert sub_of(juliet, "romeo@b.test") == "both"
    assert sub_of(romeo, "juliet@a.test") == "both"


def test_dialback_allowlisted(fed, opened):
    """XEP-0220: c.test's self-signed certificate cannot be verified; a.test accepts it by
    Server Dialback only because c.test is in s2s.insecure_domains (and c.test likewise)."""
    juliet = login(fed["a"], "juliet@a.test", opened, presence=True)
    merc = login(fed["c"], "mercutio@c.test", opened, presence=True)
    chat(merc, "juliet@a.test", "via-dialback")
    wait_body(juliet, "via-dialback")
    chat(juliet, "mercutio@c.test", "back-via-dialback")
    wait_body(merc, "back-via-dialback")
    assert "authenticated (dialback)" in fed["c"].log_text()
    assert "c.test authenticated to send to a.test (dialback" in fed["a"].log_text()


def test_secure_auth_refuses_untrusted(fed, opened):
    """s2s.secure_auth: b.test does not allowlist c.test, whose certificate is self-signed:
    the stanza bounces instead of being delivered over dialback."""
    merc = login(fed["c"], "mercutio@c.test", opened, presence=True)
    merc.send("<message type='chat' to='romeo@b.test' id='x1'><body>no</body></message>")
    err = merc.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and e.get("id") == "x1",
                        timeout=10)
    assert stanza_error(err) == ("cancel", "remote-server-not-found")
    assert "refusing dialback from c.test" in fed["b"].log_text()


def test_peer_down_bounces(fed, opened):
    """RFC 6120 §8.3.3.14: d.test resolves but nothing listens: the message comes back as
    remote-server-not-found well within the connect timeout."""
    juliet = login(fed["a"], "juliet@a.test", opened)
    t0 = time.monotonic()
    juliet.send("<message type='chat' to='x@d.test' id='down1'><body>x</body></message>")
    err = juliet.wait_for(lambda e: e.get("id") == "down1", timeout=10)
    assert stanza_error(err) == ("cancel", "remote-server-not-found")
    assert time.monotonic() - t0 < 5


def test_peer_unreachable_times_out(fed, opened):
    """RFC 6120 §8.3.3.15: e.test's address answers nothing: remote-server-timeout after the
    configured connect timeout (2 s), and an IQ gets the same error."""
    juliet = login(fed["a"], "juliet@a.test", opened)
    t0 = time.monotonic()
    juliet.send(f"<iq type='get' to='e.test' id='to1'><ping xmlns='{NS_PING}'/></iq>")
    err = juliet.wait_for(lambda e: e.get("id") == "to1", timeout=10)
    assert stanza_error(err) == ("wait", "remote-server-timeout")
    assert 1.5 < time.monotonic() - t0 < 6


# -- raw s2s peers -------------------------------------------------------------

class RawS2S:
    """A hand-driven server-to-server stream into b.test (from a.test's namespace)."""

    def __init__(self, fed, cert=None):
        with netns(fed["a"].ns):
            self.sock = socket.create_connection((fed["b"].addr, 5269), timeout=10)
        self.reader = StreamReader()
        self.events = []
        self.cert = cert
        self.ca = fed["ca"]

    def send(self, s):
        self.sock.sendall(s.encode())

    def header(self, frm="a.test", to="b.test"):
        self.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                  "xmlns:stream='http://etherx.jabber.org/streams' "
                  f"xmlns:db='jabber:server:dialback' from='{frm}' to='{to}' version='1.0'>")

    def next(self, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.events:
            if time.monotonic() > deadline:
                raise AssertionError("timeout")
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                self.events.append(("eof", None))
                break
            self.events.extend(self.reader.feed(data))
        return self.events.pop(0)

    def element(self, timeout=10):
        while True:
            kind, e = self.next(timeout)
            if kind in ("element", "eof", "close"):
                return kind, e

    def starttls(self):
        self.header()
        kind, _ = self.next()
        assert kind == "header"
        kind, feats = self.element()
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        kind, e = self.element()
        assert e.tag.endswith("proceed"), tostr(e)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            ctx.load_cert_chain(*self.cert)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="b.test")
        self.reader = StreamReader()
        self.header()
        kind, _ = self.next()
        assert kind == "header"
        kind, feats = self.element()
        return feats

    def external(self):
        """SASL EXTERNAL with the identity of the certificate, then the restarted stream."""
        self.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        kind, e = self.element()
        self.reader = StreamReader()
        self.header()
        self.element()
        return e

    def stream_error(self, timeout=10):
        while True:
            kind, e = self.element(timeout)
            if kind != "element":
                raise AssertionError(f"no stream error, got {kind}")
            if e.tag == "{http://etherx.jabber.org/streams}error":
                return [x.tag.split("}")[1] for x in e if x.tag.startswith("{" + NS_STREAMS)][0]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def test_spoofed_from_rejected(fed, tmp_path):
    """RFC 6120 §4.9.3.9: a peer authenticated as a.test (SASL EXTERNAL) that sends a stanza
    from another domain gets <invalid-from/>."""
    cert = fed["ca"].issue("a.test", str(tmp_path))
    s = RawS2S(fed, cert=cert)
    try:
        feats = s.starttls()
        assert "EXTERNAL" in tostr(feats)
        s.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>"
               "YS50ZXN0</auth>")
        kind, e = s.element()
        assert e.tag.endswith("success"), tostr(e)
        s.reader = StreamReader()
        s.header()
        s.element()
        s.send("<message from='mallory@evil.test' to='romeo@b.test'><body>x</body></message>")
        assert s.stream_error() == "invalid-from"
    finally:
        s.close()


def test_unsolicited_db_result_valid_not_trusted(fed):
    """XEP-0220: a <db:result type='valid'/> nobody asked for never marks a domain verified;
    the stanza that follows is refused with <invalid-from/>."""
    s = RawS2S(fed)
    try:
        s.starttls()
        s.send("<db:result from='a.test' to='b.test' type='valid'/>")
        s.send("<message from='juliet@a.test' to='romeo@b.test'><body>x</body></message>")
        assert s.stream_error() == "invalid-from"
    finally:
        s.close()


def test_missing_addresses_improper(fed, tmp_path):
    """RFC 6120 §4.9.3.7: a stanza without 'to' on an s2s stream → <improper-addressing/>."""
    cert = fed["ca"].issue("a.test", str(tmp_path))
    s = RawS2S(fed, cert=cert)
    try:
        s.starttls()
        s.external()
        s.send("<message from='juliet@a.test'><body>x</body></message>")
        assert s.stream_error() == "improper-addressing"
    finally:
        s.close()


def test_host_unknown(fed):
    """RFC 6120 §4.9.3.6: a stream to a domain b.test's server does not serve."""
    s = RawS2S(fed)
    try:
        s.header(to="nowhere.test")
        assert s.stream_error() == "host-unknown"
    finally:
        s.close()


def test_tls_required(fed):
    """RFC 6120 §5.3.1 / s2s.require_encryption: dialback before STARTTLS is refused."""
    s = RawS2S(fed)
    try:
        s.header()
        s.element()  # features
        s.send("<db:result from='a.test' to='b.test'>abc</db:result>")
        assert s.stream_error() == "policy-violation"
    finally:
        s.close()


def test_stanza_over_s2s_limit_bounces(fed, opened):
    """s2s.max_stanza_size (16 KiB on a.test here): a larger stanza is not sent; the sender
    gets policy-violation."""
    juliet = login(fed["a"], "juliet@a.test", opened)
    big = "x" * (20 * 1024)
    juliet.send(f"<message type='chat' to='romeo@b.test' id='big1'><body>{big}</body></message>")
    err = juliet.wait_for(lambda e: e.get("id") == "big1", timeout=10)
    assert stanza_error(err)[1] == "policy-violation"


def test_incoming_stanza_over_limit(fed, tmp_path):
    """A peer sending a stanza beyond b.test's 512 KiB s2s limit gets <policy-violation/>."""
    cert = fed["ca"].issue("a.test", str(tmp_path))
    s = RawS2S(fed, cert=cert)
    try:
        s.starttls()
        s.external()
        s.send("<message from='juliet@a.test' to='romeo@b.test'><body>")
        chunk = "y" * 65536
        try:
            for _ in range(10):
                s.send(chunk)
        except OSError:
            pass
        assert s.stream_error() == "policy-violation"
    finally:
        s.close()


def test_idle_stream_closed_and_reopened(fed, opened):
    """s2s.idle_timeout (1 s on c.test): an idle stream is closed; the next stanza opens a
    new one."""
    juliet = login(fed["a"], "juliet@a.test", opened, presence=True)
    merc = login(fed["c"], "mercutio@c.test", opened, presence=True)
    chat(merc, "juliet@a.test", "before-idle")
    wait_body(juliet, "before-idle")
    deadline = time.monotonic() + 8
    while "idle for" not in fed["c"].log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "idle for" in fed["c"].log_text()
    chat(merc, "juliet@a.test", "after-idle")
    wait_body(juliet, "after-idle")


def test_reload_keeps_federating(fed, opened):
    """SIGHUP re-reads s2s settings (routes are copied before the old document goes away);
    federation keeps working afterwards."""
    import signal as _signal
    a = fed["a"]
    mark = len(a.log_text())
    a.send_signal(_signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "reloaded configuration" not in a.log_text()[mark:] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "reloaded configuration" in a.log_text()[mark:]
    juliet = login(a, "juliet@a.test", opened, presence=True)
    romeo = login(fed["b"], "romeo@b.test", opened, presence=True)
    chat(juliet, "romeo@b.test", "after-reload")
    wait_body(romeo, "after-reload")


# -- a second network: failing SRV targets and raw receiving servers -------------
#
# p.test (10.99.0.11) is a Starling; q.test (10.99.0.12) is a Starling whose
# _xmpp-server._tcp SRV lists junk.q.test (10.99.0.13, a Python listener that
# accepts TCP and then misbehaves) before the real server. r.test's SRV points
# at a raw Python receiving server on 10.99.0.13:5299 driven by the test.

import ssl as _ssl
import threading


class JunkListener:
    """Accepts TCP on addr:port inside ns and misbehaves in turn: garbage bytes then close,
    a stream error before any authentication, a failing TLS handshake after STARTTLS, or an
    immediate close."""

    MODES = ("garbage", "stream-error", "tls-failure", "close")

    def __init__(self, ns, addr, port):
        with netns(ns):
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((addr, port))
            self.sock.listen(16)
        self.accepted = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            mode = self.MODES[len(self.accepted) % len(self.MODES)]
            self.accepted.append(mode)
            try:
                c.settimeout(2)
                if mode == "garbage":
                    c.recv(4096)
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                elif mode == "stream-error":
                    c.recv(4096)
                    c.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                              b"xmlns:stream='http://etherx.jabber.org/streams' id='j1' "
                              b"version='1.0'><stream:error><internal-server-error "
                              b"xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>"
                              b"</stream:stream>")
                    time.sleep(0.2)
                elif mode == "tls-failure":
                    c.recv(4096)
                    c.sendall(b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                              b"xmlns:stream='http://etherx.jabber.org/streams' id='j2' "
                              b"version='1.0'><stream:features><starttls xmlns='urn:ietf:"
                              b"params:xml:ns:xmpp-tls'/></stream:features>")
                    c.recv(4096)
                    c.sendall(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
                    c.recv(4096)  # the ClientHello
                    c.sendall(b"\x15\x03\x03\x00\x02\x02\x28")  # a handshake_failure alert
                    time.sleep(0.2)
            except OSError:
                pass
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


USERS_P = {"ann@p.test": "pw-ann-Pp1x", "cat@p2.test": "pw-cat-Pp2x"}
USERS_Q = {"bob@q.test": "pw-bob-Qq1x", "dan@q2.test": "pw-dan-Qq2x"}


@pytest.fixture(scope="module")
def fed2(tmp_path_factory):
    work = tmp_path_factory.mktemp("fed2")
    net = FedNet(work, tag=f"{__import__('os').getpid() % 10000}b")
    servers = []
    junk = None
    try:
        ns_p, ip_p = net.add_node("p", 11)
        ns_q, ip_q = net.add_node("q", 12)
        ns_x, ip_x = net.add_node("x", 13)
        net.add_srv("_xmpp-server._tcp", "q.test", "junk.q.test", 5269, priority=0)
        net.add_srv("_xmpp-server._tcp", "q.test", "xmpp.q.test", 5269, priority=10)
        net.add_a("junk.q.test", ip_x)
        net.add_a("xmpp.q.test", ip_q)
        net.add_a("p.test", ip_p)
        net.add_a("p2.test", ip_p)
        net.add_a("q2.test", ip_q)
        net.add_srv("_xmpp-server._tcp", "r.test", "r.test", 5299)
        net.add_a("r.test", ip_x)
        net.start_dns()
        ca = FedCA(work)
        # p.test's and q.test's certificates also name the second host of each server, which
        # is what lets those hosts ride on their streams (XEP-0220 §2.5).
        crt_p, key_p = ca.issue("p.test", also=("p2.test",))
        crt_q, key_q = ca.issue("q.test", also=("q2.test",))
        crt_p2, key_p2 = ca.issue("p2.test")
        crt_q2, key_q2 = ca.issue("q2.test")
        common = {"dns": {"servers": [s2s_util.HUB_ADDR], "timeout": "2s"},
                  "log_level": "debug"}
        p = NetStarling(work / "p", ns_p, ip_p, s2s_util.deep_merge_simple(common, {
            "hosts": {"p.test": {"certificate": crt_p, "key": key_p},
                      "p2.test": {"certificate": crt_p2, "key": key_p2}},
            "s2s": {"ca_files": [ca.cert], "connect_timeout": "3s", "idle_timeout": "1s"},
        }), name="p")
        qs = NetStarling(work / "q", ns_q, ip_q, s2s_util.deep_merge_simple(common, {
            "hosts": {"q.test": {"certificate": crt_q, "key": key_q},
                      "q2.test": {"certificate": crt_q2, "key": key_q2}},
            "s2s": {"ca_files": [ca.cert], "connect_timeout": "3s"},
        }), name="q")
        s2s_util.start_servers(servers, ((p, USERS_P), (qs, USERS_Q)))
        junk = JunkListener(ns_x, ip_x, 5269)
        yield {"net": net, "ca": ca, "p": p, "q": qs, "junk": junk, "ns_x": ns_x, "ip_x": ip_x}
        s2s_util.finish_servers(servers)
    finally:
        if junk:
            junk.close()
        s2s_util.kill_servers(servers)
        net.teardown()


def test_next_srv_target_after_failure_past_tcp(fed2, opened):
    """RFC 6120 §3.2.1: q.test's first SRV target accepts TCP and then answers with garbage,
    a stream error, a failing TLS handshake or a bare close; that attempt has failed, so
    p.test goes on to the next target and the message is delivered instead of bounced."""
    ann = login(fed2["p"], "ann@p.test", opened, presence=True)
    bob = login(fed2["q"], "bob@q.test", opened, presence=True)
    for i, mode in enumerate(JunkListener.MODES):
        # Each round needs a fresh stream: wait until the previous one was closed as idle.
        deadline = time.monotonic() + 10
        while (fed2["p"].log_text().count("s2s-out p.test->q.test: idle for") < i
               and time.monotonic() < deadline):
            time.sleep(0.1)
        before = len(fed2["junk"].accepted)
        chat(ann, f"bob@q.test/r{i}", f"past-junk-{i}")
        m = wait_body(bob, f"past-junk-{i}")
        assert m.get("from").startswith("ann@p.test/")
        assert fed2["junk"].accepted[before:] == [mode], (mode, fed2["junk"].accepted)
    log = fed2["p"].log_text()
    assert "trying the next server" in log
    assert "authenticated (SASL EXTERNAL) over TLS" in log
    assert "the peer does not speak XMPP; trying the next server" in log
    assert "stream error from the peer: internal-server-error; trying the next server" in log
    assert "connection lost before authentication; trying the next server" in log


class RawReceiver(RawS2S):
    """A hand-driven receiving server (RFC 6120 §3.2 responder) for r.test on
    10.99.0.13:5299: accepts the stream Starling opens, does STARTTLS with a certificate
    from the test CA, then offers only dialback. Reads and writes as RawS2S."""

    def __init__(self, fed2, tmp_path):  # pylint: disable=super-init-not-called
        self.cert = fed2["ca"].issue("r.test", str(tmp_path))
        with netns(fed2["ns_x"]):
            self.lsock = socket.socket()
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.lsock.bind((fed2["ip_x"], 5299))
            self.lsock.listen(4)
        self.lsock.settimeout(10)
        self.sock = None
        self.reader = StreamReader()
        self.events = []

    def accept(self):
        self.sock, _ = self.lsock.accept()

    def header(self, sid):
        self.send("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                  "xmlns:stream='http://etherx.jabber.org/streams' "
                  f"xmlns:db='jabber:server:dialback' from='r.test' to='p.test' id='{sid}' "
                  "version='1.0'>")

    def close(self):
        if self.sock:
            super().close()
        self.lsock.close()


def test_unsolicited_db_result_on_outgoing_stream(fed2, opened, tmp_path):
    """XEP-0220 §2.1.3 and §2.4: on the stream p.test opened to r.test, <db:result
    type='valid'/> elements p.test did not ask for — one before any dialback at all (even
    before TLS), others naming another pair after p.test sent its key — must not mark the
    stream authenticated: the queued message is never sent on it and bounces with
    remote-server-timeout when the setup deadline passes."""
    rr = RawReceiver(fed2, tmp_path)
    try:
        ann = login(fed2["p"], "ann@p.test", opened)
        t0 = time.monotonic()
        ann.send("<message type='chat' to='x@r.test' id='unsol1'><body>secret</body></message>")
        rr.accept()
        kind, h = rr.next()
        assert kind == "header" and h.get("to") == "r.test"
        rr.header("s1")
        # Unsolicited, before STARTTLS and before p.test sent any key: the right pair.
        rr.send("<db:result from='r.test' to='p.test' type='valid'/>")
        rr.send("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                "<required/></starttls></stream:features>")
        kind, e = rr.next()
        assert kind == "element" and e.tag.endswith("starttls"), (kind, e)
        rr.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*rr.cert)
        rr.sock = ctx.wrap_socket(rr.sock, server_side=True)
        rr.reader = StreamReader()
        kind, h = rr.next()
        assert kind == "header"
        rr.header("s2")
        rr.send("<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                "</stream:features>")
        kind, e = rr.next()
        assert kind == "element" and e.tag == "{jabber:server:dialback}result", (kind, e)
        assert e.get("from") == "p.test" and e.get("to") == "r.test" and e.text
        # Answers for pairs p.test never asked about on this stream.
        rr.send("<db:result from='evil.test' to='p.test' type='valid'/>")
        rr.send("<db:result from='r.test' to='other.test' type='valid'/>")
        rr.send("<db:verify from='r.test' to='p.test' id='s2' type='valid'/>")
        # Nothing may arrive: the message stays queued until the setup deadline.
        got = []
        try:
            while True:
                kind, e = rr.next(timeout=1.5)
                got.append((kind, e))
                if kind in ("eof", "close"):
                    break
        except (AssertionError, OSError):
            pass
        assert not any(k == "element" and e.tag.endswith("message") for k, e in got), got
        err = ann.wait_for(lambda e: e.get("id") == "unsol1", timeout=10)
        assert stanza_error(err) == ("wait", "remote-server-timeout")
        assert time.monotonic() - t0 > 2.5
        log = fed2["p"].log_text()
        assert log.count("ignoring an unrequested <db:result type='valid'/>") >= 3
        assert "ignoring an unrequested <db:verify type='valid'/>" in log
        assert "authenticated (dialback)" not in log
    finally:
        rr.close()


def test_piggyback_second_domains(fed2, opened):
    """XEP-0220 §2.5 on the sending side: once p.test has an authenticated stream to q.test,
    p2.test (another host on p, named by the certificate p.test offers on that stream) and
    q2.test (another host on q, named by the certificate q.test showed) ride on it with a
    piggybacked <db:result/> instead of new connections; the answers come back over the same
    stream (XEP-0288), so one TCP connection carries all four pairs."""
    ann = login(fed2["p"], "ann@p.test", opened, presence=True)
    cat = login(fed2["p"], "cat@p2.test", opened, presence=True)
    bob = login(fed2["q"], "bob@q.test", opened, presence=True)
    dan = login(fed2["q"], "dan@q2.test", opened, presence=True)
    chat(ann, "bob@q.test", "pb-first")
    wait_body(bob, "pb-first")
    chat(cat, "bob@q.test", "pb-local")
    assert wait_body(bob, "pb-local").get("from").startswith("cat@p2.test/")
    chat(bob, "cat@p2.test", "pb-local-back")
    wait_body(cat, "pb-local-back")
    chat(ann, "dan@q2.test", "pb-remote")
    assert wait_body(dan, "pb-remote").get("from").startswith("ann@p.test/")
    chat(dan, "ann@p.test", "pb-remote-back")
    wait_body(ann, "pb-remote-back")
    conns = established(fed2["p"].ns, fed2["p"].addr, fed2["q"].addr)
    assert len(conns) == 1, conns
    log = fed2["p"].log_text()
    assert "s2s-out p.test->q.test: piggybacking p2.test->q.test on this stream" in log
    assert "authenticated p2.test->q.test on this stream (dialback piggybacking)" in log
    assert "s2s-out p.test->q.test: piggybacking p.test->q2.test on this stream" in log
    assert "authenticated p.test->q2.test on this stream (dialback piggybacking)" in log
    assert "s2s-out p2.test->q.test:" not in log
    assert "s2s-out p.test->q2.test:" not in log
    log_q = fed2["q"].log_text()
    assert "p2.test authenticated to send to q.test (dialback with a trusted certificate" in log_q
    assert "p.test authenticated to send to q2.test (dialback with a trusted certificate" in log_q
    assert "s2s-out q" not in log_q
