"""TLS on the client port (RFC 6120 §5, RFC 7590, XEP-0368) and the SASL
offer without TLS (RFC 6120 §6.4.1, §13.9.4)."""
import os
import ssl
import subprocess
import tempfile

import pytest

import xmpp_raw
from xmpp_raw import NS_SASL, NS_TLS, RawClient, insecure_context, q, starttls_version, tostr


@pytest.fixture(scope="module")
def plain_server(make_server):
    """A server where TLS is optional (require_encryption: false)."""
    return make_server({"c2s": {"require_encryption": False}}, name="tls_optional")


def _handshake_fails(fn):
    try:
        fn()
    except ssl.SSLError as exc:
        assert exc.reason not in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"), \
            f"the test client itself could not offer the protocol: {exc}"
        return True
    except TimeoutError:  # an OSError: a server that hangs has not refused the handshake
        raise AssertionError("the TLS handshake hung instead of failing")
    except (ConnectionError, OSError, xmpp_raw.StreamClosed):
        return True
    return False


def test_tls11_refused_starttls(server, clients):
    """RFC 7590 §3.1.1 (BCP 195): TLS 1.1 is not negotiated after STARTTLS."""
    import warnings
    c = clients.connect(server)
    c.open_stream()
    c.send(f"<starttls xmlns='{NS_TLS}'/>")
    assert c.recv().tag == q(NS_TLS, "proceed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = insecure_context(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, legacy=True)
    assert _handshake_fails(lambda: c.wrap_tls(sni="localhost", context=ctx)), \
        "server accepted TLS 1.1"
    clients.login(server, "alice@localhost").assert_alive()


def test_tls11_refused_direct_tls(server, clients):
    """RFC 7590 §3.1.1, XEP-0368: TLS 1.1 is refused on the direct TLS port too."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = insecure_context(ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, legacy=True)

    def attempt():
        c = RawClient(server.tls_port, direct_tls=True, tls_context=ctx)
        clients.open.append(c)
    assert _handshake_fails(attempt), "server accepted TLS 1.1"


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_tls_versions_work(server, clients, version):
    """RFC 7590 §3.1.1: TLS 1.2 and 1.3 are accepted, and a session works over them."""
    c = clients.connect(server)
    c.open_stream()
    starttls_version(c, version)
    c.authenticate("alice", server.users["alice@localhost"], mechanism="SCRAM-SHA-256")
    c.bind()
    c.assert_alive()


def test_starttls_discards_buffered_plaintext(server, clients):
    """RFC 6120 §5.4.3.3 (and the STARTTLS injection class, CVE-2011-0411): data
    sent in plaintext after <starttls/> is discarded, not processed after TLS."""
    bob = clients.login(server, "bob@localhost", resource="inject")
    c = clients.connect(server)
    c.open_stream()
    c.send(f"<starttls xmlns='{NS_TLS}'/><message to='{bob.jid}'><body>injected</body></message>")
    assert c.recv().tag == q(NS_TLS, "proceed")
    c.wrap_tls(sni="localhost")
    c.reader.reset()
    c.events.clear()
    c.open_stream()
    assert "SCRAM-SHA-256" in c.mechanisms(), tostr(c.features)
    c.authenticate("alice", server.users["alice@localhost"])
    c.bind()
    c.assert_alive()
    bob.no_element(0.3, lambda e: e.tag == xmpp_raw.q(xmpp_raw.NS_CLIENT, "message"))


def test_new_stream_after_tls_has_fresh_features(server, clients):
    """RFC 6120 §5.4.3.3: after TLS both sides start a new stream; the server
    sends a new header and new features (no STARTTLS, SASL now)."""
    c = clients.connect(server)
    c.open_stream()
    assert c.feature(NS_TLS, "starttls") is not None
    assert c.feature(NS_SASL, "mechanisms") is None
    c.starttls()
    hdr = c.open_stream()
    assert hdr.get("from") == "localhost"
    assert c.feature(NS_TLS, "starttls") is None
    assert c.feature(NS_SASL, "mechanisms") is not None


def _san(der):
    """DNS names in the certificate's subjectAltName."""
    with tempfile.NamedTemporaryFile(suffix=".der") as f:
        f.write(der)
        f.flush()
        out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-ext",
                              "subjectAltName", "-in", f.name],
                             capture_output=True, text=True, check=True).stdout
    return {p.strip()[4:] for p in out.replace("\n", ",").split(",")
            if p.strip().startswith("DNS:")}


@pytest.mark.parametrize("host", ["localhost", "example.test"])
def test_sni_selects_certificate(server, clients, host):
    """RFC 6120 §13.7.1.2, RFC 6066 §3: the certificate presented for SNI <host>
    names that host in its subjectAltName (self-signed on first start)."""
    c = clients.connect(server, domain=host)
    c.open_stream()
    c.starttls(sni=host)
    assert host in _san(c.sock.getpeercert(binary_form=True))
    d = RawClient(server.tls_port, domain=host, direct_tls=True, sni=host)
    clients.open.append(d)
    assert host in _san(d.sock.getpeercert(binary_form=True))
    certs = os.path.join(server.data_dir, "certs")
    assert os.path.exists(os.path.join(certs, f"{host}.crt"))
    assert os.path.exists(os.path.join(certs, f"{host}.key"))
    assert "generated self-signed certificate" in server.log_text()


def test_tls_optional_offers_no_plain(plain_server, clients):
    """RFC 6120 §6.4.1, §13.9.4: without TLS the server offers SCRAM but not
    PLAIN, and no -PLUS variant (no channel to bind); STARTTLS is optional."""
    c = clients.connect(plain_server)
    c.open_stream()
    mechs = c.mechanisms()
    assert "PLAIN" not in mechs, mechs
    assert "SCRAM-SHA-256" in mechs and "SCRAM-SHA-1" in mechs, mechs
    assert not [m for m in mechs if m.endswith("-PLUS")], mechs
    tls = c.feature(NS_TLS, "starttls")
    assert tls is not None and tls.find(q(NS_TLS, "required")) is None


def test_tls_optional_plain_refused(plain_server, clients):
    """RFC 6120 §6.4.5 / RFC 4616 §6: PLAIN without TLS fails with
    <encryption-required/> or <invalid-mechanism/>."""
    c = clients.connect(plain_server)
    c.open_stream()
    resp = c.auth_plain("alice", plain_server.users["alice@localhost"])
    assert resp.tag == q(NS_SASL, "failure"), tostr(resp)
    conds = {xmpp_raw.local(ch.tag) for ch in resp if xmpp_raw.local(ch.tag) != "text"}
    assert conds & {"encryption-required", "invalid-mechanism"}, tostr(resp)


@pytest.fixture(scope="module")
def cleartext_plain_server(make_server):
    """TLS optional and PLAIN allowed without it (a TLS-terminating proxy in front)."""
    return make_server({"c2s": {"require_encryption": False, "allow_plain_unencrypted": True}},
                       name="cleartext_plain")


def test_plain_unencrypted_when_allowed(cleartext_plain_server, clients):
    """c2s.allow_plain_unencrypted: PLAIN is offered and works before TLS, and the operator
    is warned in the log that passwords may cross the wire in the clear."""
    srv = cleartext_plain_server
    c = clients.connect(srv)
    c.open_stream()
    assert "PLAIN" in c.mechanisms()
    resp = c.auth_plain("alice", srv.users["alice@localhost"])
    assert resp.tag == q(NS_SASL, "success"), tostr(resp)
    assert "allow_plain_unencrypted is on" in srv.log_text()
    assert srv.users["alice@localhost"] not in srv.log_text()


def test_plain_unencrypted_wrong_password(cleartext_plain_server, clients):
    """RFC 6120 §6.5.10: a wrong PLAIN password without TLS still gets <not-authorized/>."""
    c = clients.connect(cleartext_plain_server)
    c.open_stream()
    resp = c.auth_plain("alice", "not-her-password")
    assert resp.tag == q(NS_SASL, "failure"), tostr(resp)
    assert resp.find(q(NS_SASL, "not-authorized")) is not None, tostr(resp)


def test_tls_optional_scram_without_tls(plain_server, clients):
    """RFC 6120 §6: with TLS optional, SCRAM works on a plaintext stream."""
    c = clients.connect(plain_server)
    c.open_stream()
    c.authenticate("alice", plain_server.users["alice@localhost"], mechanism="SCRAM-SHA-256")
    c.bind()
    c.assert_alive()


def test_tls_optional_starttls_still_works(plain_server, clients):
    """RFC 6120 §5: STARTTLS is still available when optional, then PLAIN is offered."""
    c = clients.connect(plain_server)
    c.open_stream()
    c.starttls()
    c.open_stream()
    assert "PLAIN" in c.mechanisms()
    c.authenticate("alice", plain_server.users["alice@localhost"])
    c.bind()
    c.assert_alive()
