"""Resource limits that protect the server (RFC 6120 §13.12 denial of
service): the negotiation deadline (§4.9.3.4 connection-timeout), SASL
attempts per connection (§6.4.5), simultaneous connections per IP address, and
a bounded output queue per connection."""
import time

import pytest

import xmpp_raw
from xmpp_raw import NS_STREAM, StreamClosed, q, local, ns_of, tostr

SERVER_CONFIG = {
    "c2s": {"negotiation_timeout": "2s", "sasl_attempts": 3},
    "limits": {"output_queue": "128KiB"},
}


@pytest.fixture(scope="module")
def few_conns_server(make_server):
    return make_server({"c2s": {"connections_per_ip": 3}}, name="conns_per_ip")


def test_negotiation_deadline(server, clients):
    """RFC 6120 §4.9.3.4, §13.12: a connection without a bound session after
    negotiation_timeout (2 s) is closed with <connection-timeout/> — whether it
    idles before TLS or stops after SASL — while bound sessions are unaffected."""
    bound = clients.login(server, "carol@localhost", resource="bound")
    start = time.monotonic()
    idle = clients.connect(server)
    idle.open_stream()
    authed = clients.tls_stream(server)
    authed.authenticate("alice", server.users["alice@localhost"])
    assert idle.expect_stream_error(timeout=6) == "connection-timeout"
    elapsed = time.monotonic() - start
    assert 1.5 <= elapsed <= 5.5, f"closed after {elapsed:.1f}s, deadline is 2s"
    assert authed.expect_stream_error(timeout=3) == "connection-timeout"
    bound.assert_alive()
    # The operator learns where each stream stood when its deadline passed.
    log = server.log_text()
    assert "negotiation deadline passed: stream open, not authenticated, 0 job(s) pending; " \
        "tls=none" in log, server.log_tail()
    assert "negotiation deadline passed: stream open, authenticated, 0 job(s) pending; " \
        "tls=up" in log, server.log_tail()


def test_sasl_attempts_exhausted(server, clients):
    """RFC 6120 §6.4.5: the server may limit retries; after sasl_attempts (3)
    failures the stream is closed (optionally with <policy-violation/>)."""
    c = clients.tls_stream(server)
    for i in range(3):
        resp = c.auth_plain("alice", f"wrong-{i}")
        assert resp.tag == q(xmpp_raw.NS_SASL, "failure"), tostr(resp)
    deadline = time.monotonic() + 3
    while True:
        try:
            ev, obj = c.next_event(max(0.01, deadline - time.monotonic()))
        except StreamClosed:
            break
        except TimeoutError:
            raise AssertionError("stream still open after 3 SASL failures")
        if ev == "element" and obj.tag == q(NS_STREAM, "error"):
            conds = [local(e.tag) for e in obj if ns_of(e.tag) == xmpp_raw.NS_STREAMS
                     and local(e.tag) != "text"]
            assert conds == ["policy-violation"], tostr(obj)
        else:
            assert ev == "close", f"unexpected {ev} {tostr(obj) if obj is not None else ''}"
    c.wait_closed(3)


def test_sasl_attempts_below_limit(server, clients):
    """RFC 6120 §6.4.5: fewer failures than the limit still allow success."""
    c = clients.tls_stream(server)
    for i in range(2):
        assert c.auth_plain("alice", f"wrong-{i}").tag == q(xmpp_raw.NS_SASL, "failure")
    c.authenticate("alice", server.users["alice@localhost"])
    c.bind()
    c.assert_alive()


def test_output_queue_cap(server, clients):
    """RFC 6120 §13.12: a client that never reads while another floods it is
    disconnected once its output queue exceeds output_queue (128 KiB); the
    flooding sender and the server are unaffected."""
    slow = xmpp_raw.RawClient(server.port, rcvbuf=4096)
    clients.open.append(slow)
    slow.open_stream()
    slow.starttls()
    slow.open_stream()
    slow.authenticate("alice", server.users["alice@localhost"])
    slow.bind("slow")
    sender = clients.login(server, "bob@localhost", resource="flood")
    body = "y" * 16384
    total = 0
    for i in range(400):  # ~6.5 MB: more than kernel buffers + the 128 KiB cap
        chunk = f"<message type='headline' to='{slow.jid}' id='f{i}'><body>{body}</body></message>"
        sender.send(chunk)
        total += len(chunk)
        if i % 8 == 0:
            sender.drain()
    sender.assert_alive()
    try:
        slow.wait_closed(timeout=10)
    except TimeoutError:
        raise AssertionError("a client that never read was not disconnected")
    assert slow.received_bytes < total
    sender.assert_alive()


def test_connections_per_ip(few_conns_server, clients):
    """RFC 6120 §13.12: with connections_per_ip: 3 a 4th simultaneous connection
    from the same address is closed promptly; closing one frees a slot."""
    srv = few_conns_server
    first = []
    for _ in range(3):
        c = clients.connect(srv)
        c.open_stream()
        first.append(c)
    extra = xmpp_raw.RawClient(srv.port, timeout=3)
    clients.open.append(extra)
    try:
        extra.send(extra.header_bytes())
        extra.wait_closed(3)
    except TimeoutError:  # an OSError: must be caught before the clause below
        raise AssertionError("4th connection from one IP was not closed")
    except (ConnectionError, OSError):
        pass
    first[0].close()
    deadline = time.monotonic() + 3
    while True:
        c = xmpp_raw.RawClient(srv.port, timeout=2)
        clients.open.append(c)
        try:
            c.open_stream()
            break
        except (StreamClosed, ConnectionError, OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise AssertionError("slot not freed after closing a connection")
            time.sleep(0.1)
    assert c.feature(xmpp_raw.NS_TLS, "starttls") is not None
