"""XMPP over WebSocket (RFC 7395) at /xmpp-websocket: the opening handshake
(RFC 6455 §4.2), the 'xmpp' sub-protocol (RFC 7395 §3.1), the Origin
allowlist, <open/>/<close/> framing (§3.3, §3.6), one element per message
(§3.3.3), ping/pong (RFC 6455 §5.5.2) including server-initiated pings and the
closing of clients that never answer, the message size limit (1009), and a
WebSocket session being an ordinary session to the router."""
import base64
import struct
import time

import pytest

import web_util as W
from server import USERS
import xmpp_raw

PW = USERS


@pytest.fixture(scope="module")
def web(make_server):
    return W.start_web(make_server, {
        "c2s": {"require_encryption": False},
        "websocket": {"origins": ["http://good.test"], "max_frame_size": "4KiB"},
    })


def ws(web, **kw):
    return W.WSClient(W.http_port(web), **kw)


def test_handshake_accept_key(web):
    """RFC 6455 §4.2.2: Sec-WebSocket-Accept is base64(SHA-1(key + GUID)); the server
    selects the xmpp sub-protocol (RFC 7395 §3.1)."""
    c = ws(web)
    assert c.headers["sec-websocket-protocol"] == "xmpp"
    assert len(base64.b64decode(c.headers["sec-websocket-accept"])) == 20
    c.close()


def test_subprotocol_required(web):
    """Without the 'xmpp' sub-protocol the upgrade is refused."""
    W.WSClient(W.http_port(web), protocol=None, expect=400).close()
    W.WSClient(W.http_port(web), protocol="chat", expect=400).close()


def test_origin_allowlist(web):
    """An Origin outside websocket.origins gets 403 (RFC 6455 §10.2)."""
    W.WSClient(W.http_port(web), origin="http://evil.test", expect=403).close()
    ws(web, origin="http://good.test").close()


@pytest.mark.parametrize("extra,status", [
    (["Sec-WebSocket-Version: 8"], 426),
])
def test_bad_version(web, extra, status):
    """RFC 6455 §4.4: an unsupported version gets 426 with the version we speak."""
    import socket
    s = socket.create_connection(("127.0.0.1", W.http_port(web)))
    s.sendall(b"GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Protocol: xmpp\r\nSec-WebSocket-Version: 8\r\n\r\n")
    st, h, _ = W.read_response(s)
    assert st == 426 and h["sec-websocket-version"] == "13"
    s.close()


def test_bad_upgrade(web):
    """A plain GET (no Upgrade) and a bad key are refused."""
    st, h, _ = W.get(W.http_port(web), "/xmpp-websocket")
    assert st == 426
    import socket
    s = socket.create_connection(("127.0.0.1", W.http_port(web)))
    s.sendall(b"GET /xmpp-websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: short\r\n"
              b"Sec-WebSocket-Protocol: xmpp\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert W.read_response(s)[0] == 400
    s.close()


def test_open_and_close(web):
    """<open/> is answered with <open/> (id, from, version 1.0) and features without
    STARTTLS (RFC 7395 §3.3.2, §3.8); <close/> is answered with <close/> (§3.6.1)."""
    c = ws(web)
    o, f = c.open()
    assert o.get("from") == "localhost" and o.get("version") == "1.0" and o.get("id")
    assert f.find(W.q("urn:ietf:params:xml:ns:xmpp-tls", "starttls")) is None
    c.send(f"<close xmlns='{W.NS_FRAMING}'/>")
    assert c.recv().tag == W.q(W.NS_FRAMING, "close")
    assert c.wait_close() == 1000
    c.close()


def test_host_unknown(web):
    """An <open/> to a host we do not serve gets a stream error, <close/>, and the end."""
    c = ws(web)
    c.send(f"<open xmlns='{W.NS_FRAMING}' to='nowhere.test' version='1.0'/>")
    c.recv()  # our <open/>
    err = c.recv()
    assert err.tag == W.q(W.NS_STREAMS, "error")
    assert err[0].tag.endswith("host-unknown")
    assert c.recv().tag == W.q(W.NS_FRAMING, "close")
    c.close()


def test_two_elements_in_one_message(web):
    """RFC 7395 §3.3.3: one message carries exactly one element; more is not-well-formed."""
    c = ws(web)
    c.open()
    c.send("<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>")
    err = c.recv()
    assert err.tag == W.q(W.NS_STREAMS, "error") and err[0].tag.endswith("not-well-formed")
    c.close()


def test_partial_element(web):
    """A message holding half an element is not-well-formed."""
    c = ws(web)
    c.open()
    c.send("<presence xmlns='jabber:client'>")
    err = c.recv()
    assert err[0].tag.endswith("not-well-formed")
    c.close()


def test_stanza_before_open(web):
    """Anything before <open/> is refused."""
    c = ws(web)
    c.send("<presence xmlns='jabber:client'/>")
    assert c.recv().tag == W.q(W.NS_FRAMING, "open")
    assert c.recv().tag == W.q(W.NS_STREAMS, "error")
    c.close()


def test_ping_pong(web):
    """RFC 6455 §5.5.2/§5.5.3: a ping is answered with a pong carrying the same data."""
    c = ws(web)
    c.open()
    c.send_frame(9, b"hello")
    op, payload = c.recv_frame()
    assert op == 10 and payload == b"hello"
    c.close()


def test_frame_size_limit(web):
    """A message over websocket.max_frame_size closes with 1009 (RFC 6455 §7.4.1)."""
    c = ws(web)
    c.open()
    c.send("<message xmlns='jabber:client'><body>" + "x" * 5000 + "</body></message>")
    assert c.wait_close() == 1009
    c.close()


def test_binary_frame_refused(web):
    """RFC 7395 §3.2: XMPP uses text frames; a binary frame closes with 1003."""
    c = ws(web)
    c.open()
    c.send_frame(2, b"<presence/>")
    assert c.wait_close() == 1003
    c.close()


def test_unmasked_frame_is_protocol_error(web):
    """RFC 6455 §5.1: client frames must be masked."""
    c = ws(web)
    c.open()
    c.send_frame(1, "<presence xmlns='jabber:client'/>", mask=False)
    code = None
    try:
        code = c.wait_close(timeout=5)
    except W.WSClosed:
        pass
    assert code in (None, 1002)
    c.close()


def test_login_and_chat_with_tcp_client(web):
    """A WebSocket session is an ordinary session: login (SCRAM, restart via a new <open/>,
    bind), presence and messages to and from a TCP client (RFC 6120, RFC 6121)."""
    c = ws(web)
    jid = c.login("alice", PW["alice@localhost"], resource="web")
    assert jid == "alice@localhost/web"
    tcp = xmpp_raw.RawClient(web.port)
    tcp.open_stream()
    tcp.authenticate("bob", PW["bob@localhost"], mechanism="SCRAM-SHA-256")
    tcp.bind("tcp")
    tcp.send("<presence/>")
    c.send("<presence xmlns='jabber:client'/>")
    tcp.send("<message to='alice@localhost/web' type='chat'><body>hello ws</body></message>")
    m = c.wait_for(lambda e: e.tag == W.q(W.NS_CLIENT, "message"))
    assert m.find(W.q(W.NS_CLIENT, "body")).text == "hello ws"
    assert m.get("from") == "bob@localhost/tcp"
    c.send("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'>"
           "<body>hello tcp</body></message>")
    m = tcp.messages()
    assert m.find(W.q(W.NS_CLIENT, "body")).text == "hello tcp"
    tcp.close()
    c.close()


def test_secure_websocket_over_tls_port(web):
    """wss:// on the HTTPS port: the session is secure, so PLAIN is offered."""
    c = W.WSClient(W.https_port(web), tls=True)
    _, f = c.open()
    mechs = [m.text for m in f.iter(W.q(W.NS_SASL, "mechanism"))]
    assert "PLAIN" in mechs
    c.close()


# ---- server-initiated pings (RFC 6455 §5.5.2, §5.5.3) ----

@pytest.fixture(scope="module")
def pinging(make_server):
    return W.start_web(make_server, {
        "c2s": {"require_encryption": False},
        "websocket": {"ping_interval": "1s", "ping_timeout": "1s"},
    })


def test_server_pings_idle_connection(pinging):
    """RFC 6455 §5.5.2: an idle connection gets a ping frame after websocket.ping_interval;
    a client that answers with pongs (§5.5.3, same application data) stays connected well
    beyond ping_interval + ping_timeout."""
    c = ws(pinging)
    c.login("alice", PW["alice@localhost"], resource="pinged")
    t = time.monotonic()
    pings = 0
    while time.monotonic() - t < 4.5:
        op, payload = c.recv_frame(timeout=3)
        assert op != 8, "closed although the client answered every ping"
        if op == 9:
            pings += 1
            c.send_frame(10, payload)
    assert pings >= 2
    # still a working stream
    c.send(f"<iq xmlns='{W.NS_CLIENT}' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    r = c.wait_for(lambda e: e.get("id") == "p1")
    assert r.get("type") == "result"
    c.close()


def test_silent_client_is_closed(pinging):
    """A client that ignores pings (no pong, no other frame) is closed once
    websocket.ping_timeout has passed after the ping: RFC 6120 §4.9.3.4
    connection-timeout inside the framing, RFC 7395 <close/>, then the close frame."""
    c = ws(pinging)
    c.login("bob", PW["bob@localhost"], resource="silent")
    t = time.monotonic()
    ops, texts = [], []
    try:
        while time.monotonic() - t < 8:
            op, payload = c.recv_frame(timeout=8)
            ops.append(op)
            if op == 1:
                texts.append(payload.decode())
            if op == 8:
                break
    except W.WSClosed:
        pass
    elapsed = time.monotonic() - t
    assert 9 in ops, ops
    assert 8 in ops, ops
    assert 1.5 < elapsed < 6, elapsed
    assert any("connection-timeout" in x for x in texts), texts
    assert any(x.startswith("<close") for x in texts), texts
    c.close()


def test_no_ping_before_interval(web):
    """No ping before websocket.ping_interval (default 60 s) of silence."""
    c = ws(web)
    c.open()
    with pytest.raises(AssertionError, match="timed out"):
        c.recv_frame(timeout=1.5)
    c.close()
