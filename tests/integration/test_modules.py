"""Core modules answered by the server itself: service discovery (XEP-0030),
XMPP ping (XEP-0199 §4.2 client-to-server) and software version (XEP-0092)."""
import pytest

from xmpp_raw import (NS_DISCO_INFO, NS_DISCO_ITEMS, NS_VERSION, new_id, q,
                      tostr)


@pytest.fixture
def alice(server, clients):
    return clients.login(server, "alice@localhost", resource="mod")


def disco_info(c, to):
    resp = c.iq(f"<iq type='get' to='{to}' id='{new_id()}'><query xmlns='{NS_DISCO_INFO}'/></iq>")
    assert resp.get("type") == "result", tostr(resp)
    assert resp.get("from") == to, tostr(resp)
    query = resp.find(q(NS_DISCO_INFO, "query"))
    assert query is not None, tostr(resp)
    idents = {(i.get("category"), i.get("type")) for i in query.findall(q(NS_DISCO_INFO, "identity"))}
    feats = {f.get("var") for f in query.findall(q(NS_DISCO_INFO, "feature"))}
    return idents, feats, resp


@pytest.mark.parametrize("host", ["localhost", "example.test"])
def test_disco_info_server(server, alice, host):
    """XEP-0030 §3.1: the server is identity server/im and lists disco#info,
    disco#items, urn:xmpp:ping and jabber:iq:version among its features."""
    idents, feats, resp = disco_info(alice, host)
    assert ("server", "im") in idents, tostr(resp)
    for f in (NS_DISCO_INFO, NS_DISCO_ITEMS, "urn:xmpp:ping", NS_VERSION):
        assert f in feats, f"{f} missing: {tostr(resp)}"


def test_disco_info_account(server, alice):
    """XEP-0030 §3.1, RFC 6120 §10.5.3.3: disco#info to an account's bare JID is
    answered by the server with identity account/registered."""
    idents, feats, resp = disco_info(alice, "alice@localhost")
    assert ("account", "registered") in idents, tostr(resp)
    assert NS_DISCO_INFO in feats


def test_disco_items_server(server, alice):
    """XEP-0030 §4.1: disco#items on the server returns a (possibly empty) list
    of <item jid=.../> in a disco#items query."""
    resp = alice.iq(f"<iq type='get' to='localhost' id='{new_id()}'>"
                    f"<query xmlns='{NS_DISCO_ITEMS}'/></iq>")
    assert resp.get("type") == "result", tostr(resp)
    query = resp.find(q(NS_DISCO_ITEMS, "query"))
    assert query is not None, tostr(resp)
    for item in query.findall(q(NS_DISCO_ITEMS, "item")):
        assert item.get("jid"), tostr(resp)


def test_ping_server(server, alice):
    """XEP-0199 §4.2: a c2s ping to the server is answered with an empty result."""
    iid = new_id()
    resp = alice.iq(f"<iq type='get' to='localhost' id='{iid}'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert resp.get("type") == "result" and resp.get("id") == iid, tostr(resp)
    assert resp.get("from") == "localhost"
    assert len(list(resp)) == 0, tostr(resp)


def test_version(server, alice):
    """XEP-0092 §3: jabber:iq:version returns <name>Starling</name> and a version."""
    resp = alice.iq(f"<iq type='get' to='localhost' id='{new_id()}'><query xmlns='{NS_VERSION}'/></iq>")
    assert resp.get("type") == "result", tostr(resp)
    query = resp.find(q(NS_VERSION, "query"))
    assert query is not None
    assert query.findtext(q(NS_VERSION, "name")) == "Starling"
    version = query.findtext(q(NS_VERSION, "version"))
    assert version and version.strip(), tostr(resp)
