"""Federation between Starling (a.lan, 10.99.0.1) and Debian's Prosody
(p.lan, 10.99.0.3) on a private network of network namespaces; each finds
the other through DNS SRV records served by dnsmasq (RFC 6120 §3.2.1).
Both hold certificates from the test CA and trust it, so each direction uses
STARTTLS and SASL EXTERNAL (RFC 6120 §6, XEP-0178). A second Starling
(c.lan, 10.99.0.4) with a self-signed certificate is allowlisted on Prosody
(s2s_insecure_domains) and on itself: that pair authenticates with Server
Dialback (XEP-0220) in both directions. The domains live under .lan, not .test:
Prosody's resolver (libunbound) answers RFC 6761's .test itself with NXDOMAIN.
"""
import os
import time

import pytest

import s2s_util
from s2s_util import opened, login, chat  # noqa: F401
from s2s_util import FedCA, FedNet, NetProsody, NetStarling
from xmpp_raw import NS_CLIENT, NS_PING, new_id, q, tostr

NS_ROSTER = "jabber:iq:roster"

REASON = s2s_util.netns_unavailable_reason()
if REASON is None and not os.path.exists("/usr/bin/prosody"):
    REASON = "prosody is not installed (tools/deps.sh test)"
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"Prosody interop: {REASON}")


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    work = tmp_path_factory.mktemp("pfed")
    net = FedNet(work, tag=f"{os.getpid() % 10000}p")
    servers, prosody = [], None
    try:
        ns_a, ip_a = net.add_node("a", 1)
        ns_p, ip_p = net.add_node("p", 3)
        ns_c, ip_c = net.add_node("c", 4)
        net.add_srv("_xmpp-server._tcp", "a.lan", "a.lan", 5269)
        net.add_a("a.lan", ip_a)
        net.add_srv("_xmpp-server._tcp", "p.lan", "xmpp.p.lan", 5269)
        net.add_a("xmpp.p.lan", ip_p)
        net.add_a("p.lan", ip_p)
        net.add_srv("_xmpp-server._tcp", "c.lan", "c.lan", 5269)
        net.add_a("c.lan", ip_c)
        net.start_dns()
        ca = FedCA(work)
        crt_a, key_a = ca.issue("a.lan")
        common = {"dns": {"servers": [s2s_util.HUB_ADDR], "timeout": "2s"}}
        a = NetStarling(work / "a", ns_a, ip_a, s2s_util.deep_merge_simple(common, {
            "hosts": {"a.lan": {"certificate": crt_a, "key": key_a}},
            "s2s": {"ca_files": [ca.cert], "connect_timeout": "5s"},
        }), name="a")
        c = NetStarling(work / "c", ns_c, ip_c, s2s_util.deep_merge_simple(common, {
            "hosts": {"c.lan": {}},
            "s2s": {"ca_files": [ca.cert], "insecure_domains": ["p.lan"],
                    "connect_timeout": "5s"},
        }), name="c")
        s2s_util.start_servers(servers, ((a, {"juliet@a.lan": "pw-juliet-Pp1x"}),
                                (c, {"mercutio@c.lan": "pw-merc-Pp2x"})))
        prosody = NetProsody(work, ns_p, ip_p, "p.lan", ca, secure=True,
                             insecure=("c.lan",))
        prosody.add_user("romeo@p.lan", "pw-romeo-Pp3x")
        prosody.start()
        yield {"a": a, "c": c, "p": prosody}
        prosody.stop()
        s2s_util.finish_servers(servers)
    finally:
        if prosody:
            prosody.cleanup()
        s2s_util.kill_servers(servers)
        net.teardown()




def wait_body(c, body, timeout=15):
    return s2s_util.wait_body(c, body, timeout)


def test_starling_to_prosody_message(fed, opened):
    """Starling → Prosody: SRV lookup, STARTTLS, SASL EXTERNAL; the message arrives."""
    juliet = login(fed["a"], "juliet@a.lan", opened, presence=True)
    romeo = login(fed["p"], "romeo@p.lan", opened, presence=True)
    chat(juliet, "romeo@p.lan", "to-prosody")
    m = wait_body(romeo, "to-prosody")
    assert m.get("from").startswith("juliet@a.lan/")
    assert "authenticated (SASL EXTERNAL) over TLS" in fed["a"].log_text()


def test_prosody_to_starling_message(fed, opened):
    """Prosody → Starling: Prosody's outgoing stream is accepted with SASL EXTERNAL."""
    juliet = login(fed["a"], "juliet@a.lan", opened, presence=True)
    romeo = login(fed["p"], "romeo@p.lan", opened, presence=True)
    chat(romeo, "juliet@a.lan", "from-prosody")
    m = wait_body(juliet, "from-prosody")
    assert m.get("from").startswith("romeo@p.lan/")
    assert "p.lan authenticated to send to a.lan (SASL EXTERNAL" in fed["a"].log_text()


def test_ping_both_ways(fed, opened):
    """XEP-0199: each side's client pings the other server."""
    juliet = login(fed["a"], "juliet@a.lan", opened)
    r = juliet.iq(f"<iq type='get' to='p.lan' id='{new_id()}'><ping xmlns='{NS_PING}'/></iq>",
                  timeout=15)
    assert r.get("type") == "result", tostr(r)
    romeo = login(fed["p"], "romeo@p.lan", opened)
    r = romeo.iq(f"<iq type='get' to='a.lan' id='{new_id()}'><ping xmlns='{NS_PING}'/></iq>",
                 timeout=15)
    assert r.get("type") == "result", tostr(r)


def test_subscription_both_with_prosody(fed, opened):
    """RFC 6121 §3: subscription handshakes in both directions end in 'both' on Starling's
    and Prosody's rosters, with roster pushes and presence broadcast."""
    juliet = login(fed["a"], "juliet@a.lan", opened)
    romeo = login(fed["p"], "romeo@p.lan", opened)
    for c in (juliet, romeo):
        c.iq(f"<iq type='get' id='{new_id()}'><query xmlns='{NS_ROSTER}'/></iq>", timeout=10)
        c.send("<presence/>")

    def subscribe(frm, to, frm_jid, to_jid):
        frm.send(f"<presence type='subscribe' to='{to_jid}'/>")
        req = to.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence")
                          and e.get("type") == "subscribe", timeout=15)
        assert req.get("from") == frm_jid
        to.send(f"<presence type='subscribed' to='{frm_jid}'/>")
        frm.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence")
                     and e.get("type") == "subscribed", timeout=15)

    subscribe(juliet, romeo, "juliet@a.lan", "romeo@p.lan")
    subscribe(romeo, juliet, "romeo@p.lan", "juliet@a.lan")

    def sub_of(c, jid):
        r = c.iq(f"<iq type='get' id='{new_id()}'><query xmlns='{NS_ROSTER}'/></iq>", timeout=10)
        for item in r.find(q(NS_ROSTER, "query")):
            if item.get("jid") == jid:
                return item.get("subscription")
        return None

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if sub_of(juliet, "romeo@p.lan") == "both" and sub_of(romeo, "juliet@a.lan") == "both":
            break
        time.sleep(0.3)
    assert sub_of(juliet, "romeo@p.lan") == "both"
    assert sub_of(romeo, "juliet@a.lan") == "both"
    # presence broadcast (RFC 6121 §4.2.2): a new available presence reaches the contact
    romeo.send("<presence><status>here</status></presence>")
    p = juliet.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence")
                        and e.findtext(q(NS_CLIENT, "status")) == "here", timeout=15)
    assert p.get("from").startswith("romeo@p.lan/")


def test_dialback_with_prosody(fed, opened):
    """XEP-0220 both ways: c.lan's self-signed certificate is not trusted; Prosody allowlists
    it (s2s_insecure_domains) and accepts it by dialback, and c.lan allowlists p.lan."""
    merc = login(fed["c"], "mercutio@c.lan", opened, presence=True)
    romeo = login(fed["p"], "romeo@p.lan", opened, presence=True)
    chat(merc, "romeo@p.lan", "dialback-to-prosody")
    wait_body(romeo, "dialback-to-prosody")
    chat(romeo, "mercutio@c.lan", "dialback-from-prosody")
    wait_body(merc, "dialback-from-prosody")
    assert "authenticated (dialback)" in fed["c"].log_text()


def test_check_reports_dns(fed):
    """`starling check` looks up the SRV records of each host through dns.servers and says
    which exist and which are missing (RFC 6120 §3.2.1, XEP-0368)."""
    a = fed["a"]
    cp = s2s_util.run("ip", "netns", "exec", a.ns, s2s_util._starling_bin(), "check",
                      "--config", a.config_path, check=False)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, out
    assert "a.lan: DNS _xmpp-server._tcp.a.lan SRV: a.lan port 5269" in out, out
    assert "a.lan: DNS _xmpps-server._tcp.a.lan SRV: missing" in out, out
    assert "a.lan: DNS _xmpp-client._tcp.a.lan SRV: missing" in out, out
