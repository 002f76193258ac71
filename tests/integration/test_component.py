"""XEP-0114 external components: the handshake, the stream errors a
component gets for a bad secret, an unknown domain, a second connection, a
spoofed or missing 'from'; routing of stanzas to the component's domain and
its subdomains (RFC 6120 §10.5 domain-based routing) in both directions;
bounces while it is disconnected; and the server's disco#items listing
connected components with the identity they announced (XEP-0030 §4)."""
import time

import pytest

from component_util import (NS_COMPONENT, RawComponent, component_config, connect_component,
                            handshake_digest)
from xmpp_raw import NS_CLIENT, NS_DISCO_ITEMS, NS_PING, NS_STANZAS, new_id, q, tostr

SECRET = "s3cret-Gw-4Lq"
SERVER_CONFIG = component_config({
    "gw.localhost": SECRET,
    "other.localhost": {"secret": "other-Secret-9", "privileges": {"roster": "get"},
                        "delegations": ["urn:example:delegated"]},
    "lonely.localhost": "lonely-Secret-2",  # configured, never connected
})


@pytest.fixture(scope="module")
def srv(server):
    server.secrets.update({SECRET, "other-Secret-9", "lonely-Secret-2"})
    return server


def error_condition(el):
    err = el.find(q(NS_CLIENT, "error"))
    assert err is not None, tostr(el)
    return [c.tag.split("}")[1] for c in err if c.tag.startswith("{" + NS_STANZAS)][0]


def test_handshake_and_header(srv):
    """XEP-0114 §3: the server answers the header with from=component and an id; the
    handshake is hex SHA-1(id + secret); success is an empty <handshake/>."""
    c = RawComponent(srv, "gw.localhost")
    h = c.open()
    assert h.get("from") == "gw.localhost" and len(h.get("id") or "") >= 16
    c.handshake(SECRET)
    assert c.recv().tag == q(NS_COMPONENT, "handshake")
    c.answer_disco()
    c.close()


def test_handshake_uppercase_hex_accepted(srv):
    """The digest is hex; the comparison ignores case."""
    c = RawComponent(srv, "gw.localhost")
    c.open()
    c.handshake(SECRET, digest=handshake_digest(c.header.get("id"), SECRET).upper())
    assert c.recv().tag == q(NS_COMPONENT, "handshake")
    c.close()


def test_bad_handshake_not_authorized(srv):
    """XEP-0114 §3: a wrong digest ends the stream with <not-authorized/>."""
    c = RawComponent(srv, "gw.localhost")
    c.open()
    c.handshake(SECRET, digest=handshake_digest(c.header.get("id"), "wrong"))
    assert c.expect_stream_error() == "not-authorized"


def test_digest_of_other_stream_rejected(srv):
    """The digest binds the stream id: one computed for another id is refused."""
    c = RawComponent(srv, "gw.localhost")
    c.open()
    c.handshake(SECRET, digest=handshake_digest("not-this-stream", SECRET))
    assert c.expect_stream_error() == "not-authorized"


def test_unknown_domain_host_unknown(srv):
    """A header naming no configured component gets <host-unknown/> (RFC 6120 §4.9.3.6);
    a virtual host is not a component either."""
    for dom in ("nope.localhost", "localhost"):
        c = RawComponent(srv, dom)
        c.send(c.header_bytes(version=None, xmlns=NS_COMPONENT))
        assert c.expect_stream_error() == "host-unknown"


def test_wrong_namespace(srv):
    """The component port speaks only jabber:component:accept."""
    c = RawComponent(srv, "gw.localhost")
    c.send(c.header_bytes(version=None))
    assert c.expect_stream_error() == "invalid-namespace"


def test_stanza_before_handshake(srv):
    c = RawComponent(srv, "gw.localhost")
    c.open()
    c.send("<message from='gw.localhost' to='alice@localhost'><body>x</body></message>")
    assert c.expect_stream_error() == "not-authorized"


def test_second_connection_conflict(srv):
    """One stream per component domain: the second is refused with <conflict/>
    (RFC 6120 §4.9.3.3); the first keeps working."""
    first = connect_component(srv, "gw.localhost", SECRET)
    second = RawComponent(srv, "gw.localhost")
    second.open()
    second.handshake(SECRET)
    assert second.expect_stream_error() == "conflict"
    first.send(f"<iq type='get' id='p1' from='gw.localhost' to='localhost'>"
               f"<ping xmlns='{NS_PING}'/></iq>")
    r = first.stanza("iq", lambda e: e.get("id") == "p1")
    assert r.get("type") == "result" and r.get("to") == "gw.localhost", tostr(r)
    first.close()


def test_spoofed_from_invalid_from(srv, clients):
    """A component may only send from its own domain (XEP-0114 §3): a local user's
    address or another component's domain is <invalid-from/> (RFC 6120 §4.9.3.9)."""
    alice = clients.login(srv, "alice@localhost")
    for spoof in ("alice@localhost", "other.localhost", "evilgw.localhost", "localhost"):
        c = connect_component(srv, "gw.localhost", SECRET)
        c.send(f"<message from='{spoof}' to='alice@localhost' type='chat'>"
               f"<body>spoof</body></message>")
        assert c.expect_stream_error() == "invalid-from"
    alice.no_element(0.3, lambda e: e.tag == q(NS_CLIENT, "message"))


def test_missing_from_improper_addressing(srv):
    """Stanzas from a component carry 'from' and 'to' (RFC 6120 §4.9.3.8)."""
    c = connect_component(srv, "gw.localhost", SECRET)
    c.send("<message to='alice@localhost'><body>x</body></message>")
    assert c.expect_stream_error() == "improper-addressing"


def test_routing_both_directions(srv, clients):
    """Stanzas to the component's domain, to JIDs at it and at its subdomains reach the
    component with the sender's full JID; the component's stanzas from JIDs at its domain
    and subdomains reach users."""
    alice = clients.login(srv, "alice@localhost", resource="r1")
    alice.send("<presence/>")
    c = connect_component(srv, "gw.localhost", SECRET)
    for to in ("gw.localhost", "contact@gw.localhost", "contact@gw.localhost/res",
               "room@muc.gw.localhost"):
        alice.send(f"<message to='{to}' type='chat' id='m-{to}'><body>hi {to}</body></message>")
        m = c.stanza("message", lambda e, to=to: e.get("id") == f"m-{to}")
        assert m.get("from") == alice.jid and m.get("to") == to, tostr(m)
        assert m.find(q(NS_COMPONENT, "body")).text == f"hi {to}"
    for frm in ("gw.localhost", "contact@gw.localhost/legacy", "x@sub.gw.localhost"):
        c.send(f"<message from='{frm}' to='{alice.jid}' type='chat'><body>from {frm}</body>"
               f"</message>")
        m = alice.messages(pred=lambda e, frm=frm: e.get("from") == frm)
        assert m.find(q(NS_CLIENT, "body")).text == f"from {frm}"
    # IQ round trip: user -> component -> user
    iid = new_id()
    alice.send(f"<iq type='get' id='{iid}' to='gw.localhost'><query xmlns='jabber:iq:version'/></iq>")
    req = c.stanza("iq", lambda e: e.get("id") == iid)
    c.send(f"<iq type='result' id='{iid}' from='gw.localhost' to='{req.get('from')}'>"
           f"<query xmlns='jabber:iq:version'><name>gw</name></query></iq>")
    r = alice.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid)
    assert r.get("type") == "result" and r.get("from") == "gw.localhost", tostr(r)
    c.close()


def test_domainless_jids(srv, clients):
    """RFC 7622 §3: a domain with a resource is a valid JID; the server itself
    (localhost/x) and a component (gw.localhost/x) are addressable that way."""
    alice = clients.login(srv, "alice@localhost")
    r = alice.ping(to="localhost/some-resource")
    assert r.get("type") == "result", tostr(r)
    c = connect_component(srv, "gw.localhost", SECRET)
    iid = new_id()
    alice.send(f"<iq type='get' id='{iid}' to='gw.localhost/bot'><ping xmlns='{NS_PING}'/></iq>")
    req = c.stanza("iq", lambda e: e.get("id") == iid)
    assert req.get("to") == "gw.localhost/bot"
    c.send(f"<iq type='result' id='{iid}' from='gw.localhost/bot' to='{alice.jid}'/>")
    r = alice.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid)
    assert r.get("type") == "result" and r.get("from") == "gw.localhost/bot", tostr(r)
    c.close()


def test_not_connected_bounces(srv, clients):
    """While a configured component is not connected: IQ get/set and chat/normal
    messages bounce with <service-unavailable/> (cancel); presence is dropped."""
    alice = clients.login(srv, "alice@localhost")
    r = alice.iq(f"<iq type='get' id='{new_id()}' to='lonely.localhost'><ping xmlns='{NS_PING}'/></iq>")
    assert r.get("type") == "error" and error_condition(r) == "service-unavailable", tostr(r)
    assert r.find(q(NS_CLIENT, "error")).get("type") == "cancel"
    alice.send("<message to='user@lonely.localhost' type='chat' id='lm'><body>x</body></message>")
    m = alice.messages(pred=lambda e: e.get("id") == "lm")
    assert m.get("type") == "error" and error_condition(m) == "service-unavailable", tostr(m)
    alice.send("<presence to='lonely.localhost'/>")
    alice.no_element(0.3, lambda e: e.get("from") == "lonely.localhost")


def test_disconnect_while_users_send(srv, clients):
    """After the component's stream ends, stanzas to it bounce as above at once."""
    alice = clients.login(srv, "alice@localhost")
    c = connect_component(srv, "gw.localhost", SECRET)
    alice.send("<message to='x@gw.localhost' type='chat' id='before'><body>1</body></message>")
    c.stanza("message", lambda e: e.get("id") == "before")
    c.disconnect()
    deadline = time.monotonic() + 3
    while True:  # the server notices the close asynchronously
        iid = new_id()
        r = alice.iq(f"<iq type='set' id='{iid}' to='gw.localhost'>"
                     f"<query xmlns='jabber:iq:register'/></iq>")
        if r.get("type") == "error" or time.monotonic() > deadline:
            break
    assert r.get("type") == "error" and error_condition(r) == "service-unavailable", tostr(r)
    alice.send("<message to='x@gw.localhost' type='chat' id='after'><body>2</body></message>")
    m = alice.messages(pred=lambda e: e.get("id") == "after")
    assert m.get("type") == "error" and error_condition(m) == "service-unavailable", tostr(m)
    assert m.get("from") == "x@gw.localhost"


def test_disco_items_lists_connected_components(srv, clients):
    """XEP-0030 §4: the server's items include connected components, named by the
    identity their disco#info announced when they connected."""
    alice = clients.login(srv, "alice@localhost")
    c = RawComponent(srv, "gw.localhost")
    c.login(SECRET)
    c.answer_disco(name="IRC Gateway")

    def items():
        r = alice.iq(f"<iq type='get' id='{new_id()}' to='localhost'>"
                     f"<query xmlns='{NS_DISCO_ITEMS}'/></iq>")
        return {i.get("jid"): i.get("name") for i in r.find(q(NS_DISCO_ITEMS, "query"))}

    deadline = time.monotonic() + 3
    while items().get("gw.localhost") != "IRC Gateway" and time.monotonic() < deadline:
        time.sleep(0.05)
    got = items()
    assert got.get("gw.localhost") == "IRC Gateway", got
    assert "lonely.localhost" not in got
    c.disconnect()
    deadline = time.monotonic() + 3
    while "gw.localhost" in items() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "gw.localhost" not in items()


def test_roster_privilege_scope(srv, clients):
    """XEP-0356 §5: only a component granted roster access, sending from its bare domain,
    reads a user's roster; one without the grant, a JID at a privileged component's domain
    and a set with only 'get' access are refused with <forbidden/>."""
    alice = clients.login(srv, "alice@localhost")
    assert alice.iq(f"<iq type='get' id='{new_id()}'><query xmlns='jabber:iq:roster'/></iq>"
                    ).get("type") == "result"
    gw = connect_component(srv, "gw.localhost", SECRET)
    other = connect_component(srv, "other.localhost", "other-Secret-9")
    other.stanza("message", lambda e: e.find("{urn:xmpp:privilege:2}privilege") is not None)
    cases = [(gw, "gw.localhost", "get", "forbidden"), (other, "x@other.localhost", "get",
             "forbidden"), (other, "other.localhost", "set", "forbidden"),
             (other, "other.localhost", "get", None)]
    for c, frm, typ, cond in cases:
        iid = new_id()
        item = "<item jid='z@other.localhost'/>" if typ == "set" else ""
        c.send(f"<iq type='{typ}' id='{iid}' from='{frm}' to='alice@localhost'>"
               f"<query xmlns='jabber:iq:roster'>{item}</query></iq>")
        r = c.stanza("iq", lambda e: e.get("id") == iid)
        if cond:
            assert r.get("type") == "error", tostr(r)
            err = r.find(q(NS_COMPONENT, "error"))
            assert err.find(f"{{{NS_STANZAS}}}{cond}") is not None, tostr(r)
        else:
            assert r.get("type") == "result", tostr(r)
            assert r.find("{jabber:iq:roster}query") is not None
    gw.close()
    other.close()


def test_namespace_delegation(srv, clients):
    """XEP-0355 §4.1, §5: the component is told which namespaces it handles; an IQ to the
    server in such a namespace reaches it wrapped in <delegation/><forwarded/>, and its
    wrapped answer reaches the requester from the server's address."""
    NS_D, NS_F = "urn:xmpp:delegation:2", "urn:xmpp:forward:0"
    alice = clients.login(srv, "alice@localhost")
    c = RawComponent(srv, "other.localhost")
    c.login("other-Secret-9")
    adv = c.stanza("message", lambda e: e.find(f"{{{NS_D}}}delegation") is not None)
    assert [d.get("namespace") for d in adv.find(f"{{{NS_D}}}delegation")] == \
        ["urn:example:delegated"]
    c.answer_disco()
    iid = new_id()
    alice.send(f"<iq type='get' id='{iid}' to='localhost'><q xmlns='urn:example:delegated'/></iq>")
    wrapped = c.stanza("iq", lambda e: e.find(f"{{{NS_D}}}delegation") is not None)
    inner = wrapped.find(f"{{{NS_D}}}delegation/{{{NS_F}}}forwarded/{{{NS_CLIENT}}}iq")
    assert inner is not None and inner.get("from") == alice.jid and inner.get("id") == iid
    c.send(f"<iq type='result' id='{wrapped.get('id')}' from='other.localhost' to='localhost'>"
           f"<delegation xmlns='{NS_D}'><forwarded xmlns='{NS_F}'>"
           f"<iq xmlns='jabber:client' type='result' id='{iid}' from='localhost' "
           f"to='{alice.jid}'><q xmlns='urn:example:delegated'>answer</q></iq>"
           f"</forwarded></delegation></iq>")
    r = alice.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid)
    assert r.get("type") == "result" and r.get("from") == "localhost", tostr(r)
    assert r.find("{urn:example:delegated}q").text == "answer"
    c.close()
