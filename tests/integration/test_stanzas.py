"""Stanza semantics and routing on one server (RFC 6120 §8 stanzas, §8.3
stanza errors, §10 server rules for processing XML stanzas)."""
import pytest

from xmpp_raw import NS_CLIENT, NS_PING, NS_STANZAS, new_id, q, stanza_error, tostr

UNKNOWN = "<query xmlns='urn:example:unknown'/>"


def is_msg(e):
    return e.tag == q(NS_CLIENT, "message")


def is_iq(e):
    return e.tag == q(NS_CLIENT, "iq")


@pytest.fixture
def alice(server, clients):
    return clients.login(server, "alice@localhost", resource="a1", presence=True)


@pytest.fixture
def bob(server, clients):
    return clients.login(server, "bob@localhost", resource="b1", presence=True)


def assert_error(resp, cond, etype=None, sent_to=None, sender=None):
    """RFC 6120 §8.3.1-§8.3.2: type='error', <error type=...> with exactly one
    defined condition in urn:ietf:params:xml:ns:xmpp-stanzas; 'from' is the
    original 'to' and 'to' the original sender."""
    assert resp.get("type") == "error", tostr(resp)
    got = stanza_error(resp)
    assert got is not None, tostr(resp)
    assert got[1] == cond, tostr(resp)
    assert got[0] in ("auth", "cancel", "continue", "modify", "wait"), tostr(resp)
    if etype:
        assert got[0] == etype, tostr(resp)
    err = resp.find(q(NS_CLIENT, "error"))
    conds = [c for c in err if c.tag.startswith("{" + NS_STANZAS + "}")
             and not c.tag.endswith("}text")]
    assert len(conds) == 1, tostr(resp)
    if sent_to is not None:
        assert resp.get("from") == sent_to, tostr(resp)
    if sender is not None:
        assert resp.get("to") == sender, tostr(resp)


def test_message_full_jid_from_stamped(alice, bob):
    """RFC 6120 §8.1.2.1, §10.5.4: a message to an online full JID is delivered,
    with 'from' stamped by the server as the sender's full JID."""
    alice.send(f"<message to='{bob.jid}' type='chat' id='m1'><body>hello bob</body></message>")
    m = bob.messages(pred=lambda e: e.get("id") == "m1")
    assert m.get("from") == alice.jid == "alice@localhost/a1"
    assert m.get("to") == bob.jid
    assert m.find(q(NS_CLIENT, "body")).text == "hello bob"


def test_iq_between_full_jids(alice, bob):
    """RFC 6120 §8.2.3, §10.5.4: an IQ to a full JID reaches that resource with
    the sender's full JID, and the result travels back the same way."""
    iid = new_id()
    alice.send(f"<iq type='get' to='{bob.jid}' id='{iid}'>{UNKNOWN}</iq>")
    req = bob.wait_for(lambda e: is_iq(e) and e.get("id") == iid)
    assert req.get("from") == alice.jid and req.get("type") == "get"
    bob.send(f"<iq type='result' to='{alice.jid}' id='{iid}'/>")
    res = alice.wait_for(lambda e: is_iq(e) and e.get("id") == iid)
    assert res.get("type") == "result" and res.get("from") == bob.jid


@pytest.mark.parametrize("itype", ["get", "set"])
@pytest.mark.parametrize("children", [0, 2])
def test_iq_child_count(alice, itype, children):
    """RFC 6120 §8.2.3: an IQ get/set must contain exactly one payload element;
    zero or two → <bad-request/> (type modify)."""
    iid = new_id()
    payload = "" if children == 0 else f"<ping xmlns='{NS_PING}'/>{UNKNOWN}"
    resp = alice.iq(f"<iq type='{itype}' to='localhost' id='{iid}'>{payload}</iq>")
    assert_error(resp, "bad-request", "modify")


@pytest.mark.parametrize("to", ["localhost", None])
def test_iq_unknown_payload_to_server(alice, to):
    """RFC 6120 §8.4, §10.3.3: an IQ the server does not understand (to the
    server, or with no 'to', i.e. to the account) → <service-unavailable/> cancel."""
    iid = new_id()
    attr = f" to='{to}'" if to else ""
    resp = alice.iq(f"<iq type='get'{attr} id='{iid}'>{UNKNOWN}</iq>")
    assert_error(resp, "service-unavailable", "cancel", sender=alice.jid)


def test_iq_result_and_error_not_answered(alice):
    """RFC 6120 §8.2.3 (item 6): the server never answers an IQ of type result or error."""
    alice.send("<iq type='result' to='localhost' id='r-1'/>")
    alice.send("<iq type='error' to='localhost' id='r-2'><error type='cancel'>"
               f"<service-unavailable xmlns='{NS_STANZAS}'/></error></iq>")
    alice.send(f"<iq type='result' to='{alice.jid.split('/')[0]}' id='r-3'/>")
    alice.assert_alive()
    alice.no_element(0.3, lambda e: e.get("id") in ("r-1", "r-2", "r-3"))


def test_error_message_never_answered(alice, bob):
    """RFC 6120 §8.3.1: a stanza of type error is never answered with an error
    (to a non-existent user, or an offline resource)."""
    alice.send("<message type='error' to='nosuchuser@localhost' id='e-1'>"
               f"<error type='cancel'><item-not-found xmlns='{NS_STANZAS}'/></error></message>")
    alice.send("<message type='error' to='bob@localhost/offline' id='e-2'>"
               f"<error type='cancel'><item-not-found xmlns='{NS_STANZAS}'/></error></message>")
    alice.assert_alive()
    alice.no_element(0.3, lambda e: e.get("id") in ("e-1", "e-2"))


def test_message_to_bare_jid_online(alice, bob):
    """RFC 6120 §10.5.3, RFC 6121 §8.5.2.1.1: a message to the bare JID of an
    online account reaches (at least one of) its resources."""
    alice.send("<message to='bob@localhost' type='chat' id='bare-1'><body>to bare</body></message>")
    m = bob.messages(pred=lambda e: e.get("id") == "bare-1")
    assert m.get("from") == alice.jid
    assert m.find(q(NS_CLIENT, "body")).text == "to bare"


def test_iq_to_bare_jid_answered_by_server(alice, bob):
    """RFC 6120 §10.5.3.3 (§8.5.1 of RFC 6121): an IQ to a bare JID is handled by
    the server on the account's behalf; an unknown payload gets
    <service-unavailable/> from the bare JID and is not forwarded to resources."""
    iid = new_id()
    resp = alice.iq(f"<iq type='get' to='bob@localhost' id='{iid}'>{UNKNOWN}</iq>")
    assert_error(resp, "service-unavailable", "cancel", sent_to="bob@localhost", sender=alice.jid)
    bob.no_element(0.2, lambda e: e.get("id") == iid)


def test_iq_to_offline_full_jid(alice):
    """RFC 6120 §10.5.3.2 (RFC 6121 §8.5.3.2.1): an IQ to a full JID with no
    such session → <service-unavailable/>, error from the original 'to' (§8.3.1)."""
    iid = new_id()
    resp = alice.iq(f"<iq type='get' to='bob@localhost/nowhere' id='{iid}'><ping xmlns='{NS_PING}'/></iq>")
    assert_error(resp, "service-unavailable", "cancel",
                 sent_to="bob@localhost/nowhere", sender=alice.jid)
    assert resp.get("id") == iid


def test_message_to_nonexistent_user(server, alice):
    """RFC 6120 §10.5.3.1 (RFC 6121 §8.5.1): a message to an account that does
    not exist is either silently dropped or answered with <service-unavailable/>."""
    alice.send("<message to='nosuchuser@localhost' type='chat' id='nx-1'><body>anyone?</body></message>")
    try:
        resp = alice.wait_for(lambda e: e.get("id") == "nx-1", timeout=1.0)
    except TimeoutError:
        resp = None
    if resp is not None:
        assert_error(resp, "service-unavailable", sent_to="nosuchuser@localhost",
                     sender=alice.jid)
    alice.assert_alive()


def test_stanza_error_format(alice):
    """RFC 6120 §8.3.1-§8.3.2: an error reply keeps the id, swaps 'from'/'to',
    and carries <error type=...> with the condition qualified by
    urn:ietf:params:xml:ns:xmpp-stanzas."""
    iid = new_id()
    resp = alice.iq(f"<iq type='set' to='localhost' id='{iid}'>{UNKNOWN}</iq>")
    assert resp.get("id") == iid
    assert_error(resp, "service-unavailable", "cancel", sent_to="localhost", sender=alice.jid)


def test_jid_malformed_to(alice):
    """RFC 6120 §8.1.1.1, §8.3.3.8: a 'to' that is not a valid JID (empty
    localpart, RFC 7622 §3.3) → <jid-malformed/> type modify, sent back to the
    sender (the error has no valid 'from' to swap, so it may come from the server)."""
    iid = new_id()
    resp = alice.iq(f"<iq type='get' to='@localhost' id='{iid}'><ping xmlns='{NS_PING}'/></iq>")
    assert_error(resp, "jid-malformed", "modify", sender=alice.jid)


def test_cross_host_delivery(server, clients, alice):
    """RFC 6120 §10.5: local delivery works across virtual hosts of one server."""
    eve = clients.login(server, "eve@example.test", resource="e1", presence=True)
    alice.send(f"<message to='{eve.jid}' id='x-1'><body>hi eve</body></message>")
    m = eve.messages(pred=lambda e: e.get("id") == "x-1")
    assert m.get("from") == alice.jid
    eve.send(f"<message to='{alice.jid}' id='x-2'><body>hi alice</body></message>")
    m = alice.messages(pred=lambda e: e.get("id") == "x-2")
    assert m.get("from") == "eve@example.test/e1"


def test_two_resources_full_jid_addressing(server, clients, alice):
    """RFC 6120 §10.5.4: a full JID reaches exactly that resource, not siblings."""
    b1 = clients.login(server, "bob@localhost", resource="one", presence=True)
    b2 = clients.login(server, "bob@localhost", resource="two", presence=True)
    alice.send(f"<message to='{b2.jid}' id='fj-2'><body>two</body></message>")
    m = b2.messages(pred=lambda e: e.get("id") == "fj-2")
    assert m.get("to") == "bob@localhost/two"
    b1.no_element(0.3, lambda e: e.get("id") == "fj-2")
