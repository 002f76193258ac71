"""Resource binding (RFC 6120 §7; resourcepart preparation RFC 7622 §3.4 with
the PRECIS OpaqueString profile, RFC 8265 §4.2) and the legacy session IQ
(RFC 3921 §3, kept as optional by draft-cridland-xmpp-session)."""
import pytest

import xmpp_raw
from server import USERS
from xmpp_raw import NS_BIND, NS_SESSION, new_id, stanza_error, tostr

BIND_USERS = dict(USERS, **{"dave@localhost": "pw-dave-Rt6yU1",
                            "frank@localhost": "pw-frank-Mn2bV7"})


@pytest.fixture(scope="module")
def server(make_server):
    return make_server({"c2s": {"max_resources": 2}}, users=BIND_USERS, name="bind")


def authed(server, clients, jid):
    """A client after SASL and restart, not yet bound."""
    user, domain = jid.split("@")
    c = clients.tls_stream(server, domain=domain)
    c.authenticate(user, server.users[jid])
    return c


def test_server_generated_resource(server, clients):
    """RFC 6120 §7.6: with an empty <bind/> the server generates a resourcepart."""
    c = authed(server, clients, "alice@localhost")
    jid = c.bind()
    bare, _, res = jid.partition("/")
    assert bare == "alice@localhost" and res, jid
    c.assert_alive()


def test_generated_resources_unique(server, clients):
    """RFC 6120 §7.6: generated resourceparts are unique per account."""
    a = authed(server, clients, "bob@localhost")
    b = authed(server, clients, "bob@localhost")
    assert a.bind() != b.bind()


def test_client_chosen_resource(server, clients):
    """RFC 6120 §7.7: the server accepts the client's resourcepart."""
    c = authed(server, clients, "carol@localhost")
    assert c.bind("laptop") == "carol@localhost/laptop"
    c.assert_alive()


def test_resource_nfc_normalized(server, clients):
    """RFC 7622 §3.4, RFC 8265 §4.2.2: the resourcepart is prepared with the
    OpaqueString profile — NFC normalisation (e + U+0301 → é) and non-ASCII
    spaces mapped to U+0020."""
    c = authed(server, clients, "alice@localhost")
    assert c.bind("cafe\u0301\u00a0bar") == "alice@localhost/caf\u00e9 bar"


def test_resource_fullwidth_preserved(server, clients):
    """RFC 8265 §4.2.2 (OpaqueString): fullwidth code points are NOT width-mapped
    in a resourcepart; they are valid and bound as sent."""
    c = authed(server, clients, "alice@localhost")
    res = "\uff48\uff4f\uff4d\uff45"  # ｈｏｍｅ
    assert c.bind(res) == "alice@localhost/" + res


@pytest.mark.parametrize("resource", ["x" * 1100, "bad\u0085control"], ids=["too-long", "c1-control"])
def test_invalid_resource(server, clients, resource):
    """RFC 6120 §7.7.2.1, RFC 7622 §3.4: a resourcepart that cannot be prepared
    (over 1023 bytes, or with a disallowed control character) is refused with
    <bad-request/> or <jid-malformed/> (type modify), and the stream stays open."""
    c = authed(server, clients, "alice@localhost")
    resp = c.bind(resource, expect_ok=False)
    assert resp.get("type") == "error", tostr(resp)
    etype, cond = stanza_error(resp)
    assert cond in ("bad-request", "jid-malformed"), tostr(resp)
    assert etype == "modify", tostr(resp)
    assert c.bind("fine").endswith("/fine")


def test_conflict_kicks_old_session(server, clients):
    """RFC 6120 §7.7.2.2, §4.9.3.3: binding a resource already in use closes
    the OLD session with <conflict/>; the new session gets the resource."""
    old = authed(server, clients, "dave@localhost")
    assert old.bind("dup") == "dave@localhost/dup"
    new = authed(server, clients, "dave@localhost")
    assert new.bind("dup") == "dave@localhost/dup"
    assert old.expect_stream_error() == "conflict"
    new.assert_alive()


def test_max_resources(server, clients):
    """RFC 6120 §7.6.2.1: over the per-account session limit (max_resources: 2)
    a bind gets <resource-constraint/> with type wait or cancel; the existing
    sessions are unaffected."""
    a = authed(server, clients, "frank@localhost")
    a.bind("r1")
    b = authed(server, clients, "frank@localhost")
    b.bind("r2")
    c = authed(server, clients, "frank@localhost")
    resp = c.bind("r3", expect_ok=False)
    assert resp.get("type") == "error", tostr(resp)
    etype, cond = stanza_error(resp)
    assert cond == "resource-constraint", tostr(resp)
    assert etype in ("wait", "cancel"), tostr(resp)
    a.assert_alive()
    b.assert_alive()


def test_legacy_session_iq(server, clients):
    """RFC 3921 §3 (optional session establishment): the server answers the
    session IQ with an empty result."""
    c = authed(server, clients, "carol@localhost")
    assert c.feature(NS_SESSION, "session") is not None
    c.bind()
    iid = new_id()
    resp = c.iq(f"<iq type='set' id='{iid}'><session xmlns='{NS_SESSION}'/></iq>")
    assert resp.get("type") == "result", tostr(resp)


def test_bind_result_format(server, clients):
    """RFC 6120 §7.6.1: the result is <iq type='result'> with <bind><jid>FULL</jid>."""
    c = authed(server, clients, "carol@localhost")
    iid = new_id()
    resp = c.iq(f"<iq type='set' id='{iid}'><bind xmlns='{NS_BIND}'><resource>fmt</resource></bind></iq>")
    assert resp.get("type") == "result" and resp.get("id") == iid
    jid = resp.find(f"{xmpp_raw.q(NS_BIND, 'bind')}/{xmpp_raw.q(NS_BIND, 'jid')}")
    assert jid is not None and jid.text == "carol@localhost/fmt", tostr(resp)
