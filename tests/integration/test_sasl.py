"""SASL negotiation (RFC 6120 §6, RFC 4422, SCRAM RFC 5802/7677 with channel
binding RFC 5929, PLAIN RFC 4616) driven byte by byte after STARTTLS."""
import base64

import pytest

from xmpp_raw import NS_SASL, NS_BIND, b64, local, q, tostr
from scram import ScramClient

ALICE_PW = "pw-alice-Kq7vT2"


def failure_condition(resp):
    assert resp.tag == q(NS_SASL, "failure"), f"expected <failure/>, got {tostr(resp)}"
    conds = [local(c.tag) for c in resp if local(c.tag) != "text"]
    assert len(conds) == 1, tostr(resp)
    for c in resp:
        assert c.tag.startswith("{" + NS_SASL + "}"), tostr(resp)
    return conds[0]


@pytest.fixture
def tls(server, clients):
    """A stream after STARTTLS and restart, ready for <auth/>."""
    return clients.tls_stream(server)


def test_plain_over_tls(server, tls):
    """RFC 6120 §6.4.6, RFC 4616: PLAIN over TLS succeeds; bind is then offered."""
    resp = tls.auth_plain("alice", ALICE_PW)
    assert resp.tag == q(NS_SASL, "success"), tostr(resp)
    tls.open_stream()
    assert tls.feature(NS_BIND, "bind") is not None
    tls.bind()
    tls.assert_alive()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram(server, tls, mech):
    """RFC 5802 §3, RFC 7677: SCRAM succeeds and the server proves knowledge of
    the password (server-final v= verified by the client)."""
    resp, sc = tls.auth_scram(mech, "alice", ALICE_PW)
    assert resp.tag == q(NS_SASL, "success"), tostr(resp)
    tls.open_stream()
    tls.bind()
    tls.assert_alive()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"])
def test_scram_plus_tls_server_end_point(server, tls, mech):
    """RFC 5802 §6, RFC 5929 §4: -PLUS with tls-server-end-point channel binding
    (hash of the server certificate) succeeds with a verified server signature."""
    assert mech in tls.mechanisms()
    resp, sc = tls.auth_scram(mech, "alice", ALICE_PW)
    assert resp.tag == q(NS_SASL, "success"), tostr(resp)
    tls.open_stream()
    tls.bind()
    tls.assert_alive()


def test_scram_plus_wrong_binding_fails(server, tls):
    """RFC 5802 §6: channel-binding data that does not match the TLS channel
    makes authentication fail."""
    resp, _ = tls.auth_scram("SCRAM-SHA-256-PLUS", "alice", ALICE_PW,
                             cb_type="tls-server-end-point", cb_data=b"\0" * 32)
    assert resp.tag == q(NS_SASL, "failure"), tostr(resp)


def test_scram_downgrade_detected(server, tls):
    """RFC 5802 §6: gs2 flag 'y' (client supports channel binding but thinks the
    server does not) while the server advertised -PLUS means a downgrade: fail."""
    resp, _ = tls.auth_scram("SCRAM-SHA-256", "alice", ALICE_PW, client_supports_cb=True)
    assert resp.tag == q(NS_SASL, "failure"), tostr(resp)


def test_wrong_password_plain(server, tls):
    """RFC 6120 §6.5.10: wrong credentials → <failure><not-authorized/></failure>."""
    assert failure_condition(tls.auth_plain("alice", "wrong-password")) == "not-authorized"


def test_wrong_password_scram(server, tls):
    """RFC 6120 §6.5.10, RFC 5802 §5: a bad SCRAM proof → <not-authorized/>."""
    resp, _ = tls.auth_scram("SCRAM-SHA-256", "alice", "wrong-password")
    assert failure_condition(resp) == "not-authorized"


def test_unknown_user_indistinguishable_plain(server, clients):
    """RFC 6120 §6.5.10, §13.9: an unknown user gets exactly the same failure as
    a wrong password (no account enumeration)."""
    a = clients.tls_stream(server)
    wrong = a.auth_plain("alice", "wrong-password")
    b = clients.tls_stream(server)
    unknown = b.auth_plain("nosuchuser", "wrong-password")
    assert failure_condition(unknown) == "not-authorized"
    assert tostr(unknown) == tostr(wrong)


def test_unknown_user_indistinguishable_scram(server, clients):
    """RFC 5802 §9, RFC 6120 §13.9: for an unknown user SCRAM still answers with
    a server-first challenge and ends with the same failure as a wrong password."""
    a = clients.tls_stream(server)
    wrong, _ = a.auth_scram("SCRAM-SHA-256", "alice", "wrong-password")
    b = clients.tls_stream(server)
    sc = ScramClient("SCRAM-SHA-256", "nosuchuser", "wrong-password")
    b.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{b64(sc.client_first())}</auth>")
    first = b.sasl_reply()
    assert first.tag == q(NS_SASL, "challenge"), tostr(first)
    b.send(f"<response xmlns='{NS_SASL}'>"
           f"{b64(sc.client_final(base64.b64decode(first.text)))}</response>")
    unknown = b.sasl_reply()
    assert failure_condition(unknown) == "not-authorized"
    assert tostr(unknown) == tostr(wrong)


def test_invalid_mechanism(server, tls):
    """RFC 6120 §6.5.5: an unsupported mechanism → <invalid-mechanism/>."""
    tls.send(f"<auth xmlns='{NS_SASL}' mechanism='X-NO-SUCH-MECH'>{b64('x')}</auth>")
    assert failure_condition(tls.sasl_reply()) == "invalid-mechanism"


def test_digest_md5_refused(server, tls):
    """RFC 6331 (DIGEST-MD5 is historic): never accepted."""
    tls.send(f"<auth xmlns='{NS_SASL}' mechanism='DIGEST-MD5'/>")
    assert failure_condition(tls.sasl_reply()) == "invalid-mechanism"


def test_incorrect_encoding(server, tls):
    """RFC 6120 §6.5.2, §6.4.2: data that is not valid base64 → <incorrect-encoding/>."""
    tls.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>!!!not*base64</auth>")
    assert failure_condition(tls.sasl_reply()) == "incorrect-encoding"


def test_malformed_scram_client_first(server, tls):
    """RFC 6120 §6.5.6: a client-first-message violating RFC 5802 §7 syntax →
    <malformed-request/>."""
    tls.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{b64('x,,garbage')}</auth>")
    assert failure_condition(tls.sasl_reply()) == "malformed-request"


def test_invalid_authzid_plain(server, tls):
    """RFC 6120 §6.5.7, §6.3.8: authorizing as another user → <invalid-authzid/>."""
    resp = tls.auth_plain("alice", ALICE_PW, authzid="bob@localhost")
    assert failure_condition(resp) == "invalid-authzid"


def test_invalid_authzid_scram(server, tls):
    """RFC 6120 §6.5.7, RFC 5802 §5.1 (a=): SCRAM with another user's authzid."""
    resp, _ = tls.auth_scram("SCRAM-SHA-256", "alice", ALICE_PW, authzid="bob@localhost")
    assert failure_condition(resp) == "invalid-authzid"


def test_own_authzid_allowed(server, tls):
    """RFC 6120 §6.3.8: an authzid equal to the authenticated bare JID is fine."""
    resp = tls.auth_plain("alice", ALICE_PW, authzid="alice@localhost")
    assert resp.tag == q(NS_SASL, "success"), tostr(resp)


def test_abort(server, tls):
    """RFC 6120 §6.4.4, §6.5.1: <abort/> mid-exchange → <failure><aborted/>."""
    sc = ScramClient("SCRAM-SHA-256", "alice", ALICE_PW)
    tls.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{b64(sc.client_first())}</auth>")
    assert tls.sasl_reply().tag == q(NS_SASL, "challenge")
    tls.send(f"<abort xmlns='{NS_SASL}'/>")
    assert failure_condition(tls.sasl_reply()) == "aborted"


def test_retry_after_failure(server, tls):
    """RFC 6120 §6.4.5: after a failure the client may retry on the same stream."""
    assert failure_condition(tls.auth_plain("alice", "wrong-password")) == "not-authorized"
    resp, _ = tls.auth_scram("SCRAM-SHA-512", "alice", ALICE_PW)
    assert resp.tag == q(NS_SASL, "success"), tostr(resp)
    tls.open_stream()
    tls.bind()
    tls.assert_alive()


def test_other_host_account(server, clients):
    """RFC 6120 §6.3.1: authentication is per virtual host (eve@example.test)."""
    c = clients.tls_stream(server, domain="example.test")
    resp, _ = c.auth_scram("SCRAM-SHA-256", "eve", server.users["eve@example.test"])
    assert resp.tag == q(NS_SASL, "success"), tostr(resp)
    c.open_stream()
    assert c.bind("r").startswith("eve@example.test/")
    # alice does not exist on example.test
    d = clients.tls_stream(server, domain="example.test")
    assert failure_condition(d.auth_plain("alice", ALICE_PW)) == "not-authorized"


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_channel_binding_types_per_tls_version(server, clients, version):
    """XEP-0440 §2: the server lists the channel-binding types it can produce:
    tls-exporter only on TLS 1.3 (RFC 9266 §2), tls-server-end-point on both
    (RFC 5929 §4); -PLUS is offered with either, and works on TLS 1.2."""
    from xmpp_raw import starttls_version
    c = clients.connect(server)
    c.open_stream()
    starttls_version(c, version)
    cb = c.feature("urn:xmpp:sasl-cb:0", "sasl-channel-binding")
    assert cb is not None, tostr(c.features)
    types = sorted(e.get("type") for e in cb)
    want = ["tls-exporter", "tls-server-end-point"] if version == "TLSv1.3" else \
        ["tls-server-end-point"]
    assert types == want, tostr(cb)
    assert "SCRAM-SHA-256-PLUS" in c.mechanisms()
    if version == "TLSv1.2":
        resp, _ = c.auth_scram("SCRAM-SHA-256-PLUS", "alice", ALICE_PW)
        assert resp.tag == q(NS_SASL, "success"), tostr(resp)
