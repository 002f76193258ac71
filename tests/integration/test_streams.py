"""Stream set-up and tear-down on the client port (RFC 6120 §4, §5.4.3.3,
§6.4.6, §7.2; XEP-0368 direct TLS; XEP-0440 channel-binding advertisement)."""
import re

from xmpp_raw import (NS_BIND, NS_CLIENT, NS_SASL, NS_SASL_CB, NS_SESSION, NS_STREAM,
                      NS_TLS, local, ns_of, q, RawClient, tostr)


def _id_is_random_enough(sid):
    if re.fullmatch(r"[0-9a-fA-F]+", sid):
        return len(sid) >= 32
    return len(sid) >= 22


def test_response_header(server, clients):
    """RFC 6120 §4.7: the response header carries from=<host>, a fresh id,
    version='1.0', the content namespace jabber:client and the stream prefix."""
    c = clients.connect(server)
    hdr = c.open_stream()
    assert hdr.tag == q(NS_STREAM, "stream")
    assert hdr.get("from") == "localhost"
    assert hdr.get("version") == "1.0"
    assert c.reader.ns_decls.get("") == NS_CLIENT
    assert c.reader.ns_decls.get("stream") == NS_STREAM
    sid = hdr.get("id")
    assert sid and _id_is_random_enough(sid), f"stream id {sid!r} too short for 128 bits"


def test_response_header_other_host(server, clients):
    """RFC 6120 §4.7.1: 'from' is the domain the client asked for (virtual host)."""
    c = clients.connect(server, domain="example.test")
    hdr = c.open_stream()
    assert hdr.get("from") == "example.test"


def test_stream_ids_are_unique(server, clients):
    """RFC 6120 §4.7.3: the id is unique and unpredictable (≥128 bits of randomness)."""
    ids = set()
    for _ in range(3):
        c = clients.connect(server)
        ids.add(c.open_stream().get("id"))
    assert len(ids) == 3


def test_new_id_after_restart(server, clients):
    """RFC 6120 §4.7.3 (the id is unique per stream the server opens) with
    §4.3.3/§5.4.3.3 (a restart after TLS opens a new stream): the id changes."""
    c = clients.connect(server)
    first = c.open_stream().get("id")
    c.starttls()
    second = c.open_stream().get("id")
    assert first != second


def test_features_before_tls_only_starttls(server, clients):
    """RFC 6120 §5.3.1, §4.3.2: with TLS mandatory the only feature before TLS is
    <starttls/> with <required/>; no SASL mechanisms are offered yet."""
    c = clients.connect(server)
    c.open_stream()
    children = list(c.features)
    assert [ch.tag for ch in children] == [q(NS_TLS, "starttls")], tostr(c.features)
    assert children[0].find(q(NS_TLS, "required")) is not None


def _check_sasl_features(c):
    mechs = c.mechanisms()
    for m in ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN",
              "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"):
        assert m in mechs, f"{m} missing from {mechs}"
    assert "DIGEST-MD5" not in mechs
    # RFC 6120 §5.4.3.3: STARTTLS is not offered again on a TLS stream
    assert c.feature(NS_TLS, "starttls") is None
    # bind only after SASL (RFC 6120 §7.1)
    assert c.feature(NS_BIND, "bind") is None
    # XEP-0440: advertised channel-binding types (TLS 1.3 here)
    cb = c.feature(NS_SASL_CB, "sasl-channel-binding")
    assert cb is not None, tostr(c.features)
    types = {e.get("type") for e in cb.findall(q(NS_SASL_CB, "channel-binding"))}
    assert {"tls-exporter", "tls-server-end-point"} <= types, types


def test_features_after_starttls(server, clients):
    """RFC 6120 §5.4.3.3, §6.4.1: after TLS, a new stream offers SASL mechanisms
    (SCRAM-SHA-1/256/512, their -PLUS variants, PLAIN; never DIGEST-MD5) and the
    XEP-0440 channel-binding list."""
    c = clients.tls_stream(server)
    assert c.sock.version() == "TLSv1.3"
    _check_sasl_features(c)


def test_features_after_sasl(server, clients):
    """RFC 6120 §6.4.6, §7.2: after SASL success and restart the server offers
    <bind/> and (RFC 3921 legacy) <session><optional/></session>, no SASL/TLS."""
    c = clients.tls_stream(server)
    c.authenticate("alice", server.users["alice@localhost"])
    assert c.feature(NS_BIND, "bind") is not None, tostr(c.features)
    sess = c.feature(NS_SESSION, "session")
    assert sess is not None and sess.find(q(NS_SESSION, "optional")) is not None
    assert c.feature(NS_SASL, "mechanisms") is None
    assert c.feature(NS_TLS, "starttls") is None


def test_direct_tls_features(server, clients):
    """XEP-0368: on the direct TLS port TLS comes first, then the stream offers
    the same features as after STARTTLS."""
    c = RawClient(server.tls_port, direct_tls=True)
    clients.open.append(c)
    hdr = c.open_stream()
    assert hdr.get("from") == "localhost"
    _check_sasl_features(c)


def test_direct_tls_login(server, clients):
    """XEP-0368 + RFC 6120 §6, §7: a full session over direct TLS."""
    c = clients.login(server, "alice@localhost", resource="direct", direct_tls=True)
    assert c.jid == "alice@localhost/direct"
    c.assert_alive()


def test_whitespace_keepalive(server, clients):
    """RFC 6120 §4.6.1: whitespace between top-level elements is allowed at any
    time (before TLS, during SASL, between stanzas)."""
    c = clients.connect(server)
    c.open_stream()
    c.send(" \n\t ")
    c.starttls()
    c.open_stream()
    c.send("\n \n")
    c.authenticate("alice", server.users["alice@localhost"])
    c.send(" ")
    c.bind()
    for _ in range(3):
        c.send(" \r\n ")
        c.assert_alive()


def test_closing_handshake_after_session(server, clients):
    """RFC 6120 §4.4: the client's </stream:stream> is answered with the
    server's </stream:stream> and the TCP connection is closed."""
    c = clients.login(server, "alice@localhost")
    c.send("</stream:stream>")
    ev = None
    while ev != "close":
        ev, obj = c.next_event()
        assert ev != "element", f"unexpected element {tostr(obj)}"
    c.wait_closed(5)


def test_closing_handshake_before_tls(server, clients):
    """RFC 6120 §4.4: closing works at any point of negotiation."""
    c = clients.connect(server)
    c.open_stream()
    c.send("</stream:stream>")
    ev = None
    while ev != "close":
        ev, obj = c.next_event()
    c.wait_closed(5)


def test_features_namespaced_correctly(server, clients):
    """RFC 6120 §4.3.2: <features/> is qualified by the stream namespace and each
    feature by its own namespace."""
    c = clients.tls_stream(server)
    assert c.features.tag == q(NS_STREAM, "features")
    for ch in c.features:
        assert ns_of(ch.tag) not in ("", NS_CLIENT, NS_STREAM), local(ch.tag)
