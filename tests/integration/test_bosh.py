"""BOSH (XEP-0124, XEP-0206) at /http-bind: session creation with negotiated
attributes, held requests and 'wait', hold=0 polling, the rid window and
in-order processing, retransmission of a cached answer, terminal conditions,
SASL with xmpp:restart, 'terminate', inactivity, 'pause' up to 'maxpause',
the terminate body of a stream the server ended while no request was held,
and BOSH sessions as ordinary sessions to the router."""
import time
import xml.etree.ElementTree as ET

import pytest

import web_util as W
from server import USERS
import xmpp_raw


@pytest.fixture(scope="module")
def web(make_server):
    return W.start_web(make_server, {
        "c2s": {"require_encryption": False},
        "bosh": {"max_wait": "5s", "max_inactivity": "2s", "max_hold": 1, "max_requests": 2,
                 "max_pause": "4s"},
    })


def bosh(web):
    return W.BoshClient(W.http_port(web))


def test_session_creation(web):
    """XEP-0124 §7.1/§7.2 and XEP-0206 §4: the answer carries sid (128 bits), wait (capped
    by max_wait), hold, requests, inactivity, ver, from, authid and the stream features."""
    b = bosh(web)
    r = b.create(wait=60, hold=1)
    assert len(r.get("sid")) == 32
    assert r.get("wait") == "5" and r.get("hold") == "1" and r.get("requests") == "2"
    assert r.get("inactivity") == "2" and r.get("from") == "localhost" and r.get("authid")
    assert r.get(W.q(W.NS_XBOSH, "version")) == "1.0"
    assert r.find(W.q(W.NS_STREAMS, "features")) is not None


def test_wait_expires_with_empty_body(web):
    """A held request is answered empty once 'wait' expires (XEP-0124 §7.1)."""
    b = bosh(web)
    b.create(wait=1, hold=1)
    t = time.monotonic()
    r = b.post()
    assert len(r) == 0 and r.get("type") is None
    assert 0.7 < time.monotonic() - t < 4


def test_hold_answers_older_request(web):
    """With hold=1 a second request releases the first, empty (XEP-0124 §10)."""
    b = bosh(web)
    b.create(wait=5, hold=1)
    first = b.start(b.body())
    time.sleep(0.2)
    second = b.start(b.body())
    t = time.monotonic()
    assert len(b.finish(first)) == 0
    assert time.monotonic() - t < 2
    second.close()


def test_polling_session(web):
    """hold=0 is polling (XEP-0124 §12): every request is answered at once."""
    b = bosh(web)
    r = b.create(hold=0)
    assert r.get("hold") == "0" and r.get("requests") == "1"
    t = time.monotonic()
    b.post()
    assert time.monotonic() - t < 1


def test_polling_too_fast(make_server):
    """Two empty polls closer than 'polling' are overactivity: policy-violation."""
    srv = W.start_web(make_server, {"bosh": {"polling": "5s"}}, name="polling")
    b = W.BoshClient(W.http_port(srv))
    b.create(hold=0)
    b.post()
    r = b.post()
    assert r.get("type") == "terminate" and r.get("condition") == "policy-violation"


def test_unknown_sid(web):
    """An unknown sid is item-not-found (XEP-0124 §17.2)."""
    b = bosh(web)
    b.sid = "0" * 32
    r = b.post()
    assert r.get("type") == "terminate" and r.get("condition") == "item-not-found"


def test_rid_out_of_window(web):
    """A rid beyond the window of 'requests' ends the session with item-not-found
    (XEP-0124 §14.1)."""
    b = bosh(web)
    b.create(hold=1)
    r = b.post(rid=b.rid + 5)
    assert r.get("condition") == "item-not-found"
    assert b.post().get("condition") == "item-not-found"   # the session is gone


def test_too_many_requests(web):
    """More simultaneous requests than 'requests' is policy-violation (XEP-0124 §11)."""
    b = bosh(web)
    b.create(hold=1)
    b1 = b.start(b.body(rid=b.rid + 2))  # ahead of a gap: waits
    b2 = b.start(b.body(rid=b.rid + 3))  # outside the window: ends the session
    r2 = b.finish(b2)
    assert r2.get("type") == "terminate"
    assert b.finish(b1).get("type") == "terminate"


def test_in_order_processing(web):
    """A request ahead of a gap waits until the gap fills; the stanzas are processed in rid
    order (XEP-0124 §14.2)."""
    b = bosh(web)
    b.login("carol", USERS["carol@localhost"], resource="order")
    nxt = b.rid + 1
    # rid nxt+1 first (an IQ), then rid nxt (another IQ): replies come in rid order
    late = b.start(b.body(f"<iq xmlns='jabber:client' type='get' id='second' to='localhost'>"
                          f"<ping xmlns='urn:xmpp:ping'/></iq>", rid=nxt + 1))
    time.sleep(0.3)
    early = b.start(b.body(f"<iq xmlns='jabber:client' type='get' id='first' to='localhost'>"
                           f"<ping xmlns='urn:xmpp:ping'/></iq>", rid=nxt))
    b.rid = nxt + 1
    got = []
    for c in (early, late):
        r = b.finish(c)
        got += [e.get("id") for e in r]
    while len(got) < 2:
        got += [e.get("id") for e in b.post()]
    assert got == ["first", "second"]


def test_repeated_rid_gets_cached_answer(web):
    """XEP-0124 §14.3: a request repeated with an answered rid gets the same answer."""
    b = bosh(web)
    b.login("carol", USERS["carol@localhost"], resource="cache")
    rid = b.rid + 1
    r1 = b.post("<iq xmlns='jabber:client' type='get' id='c1' to='localhost'><ping xmlns='urn:xmpp:ping'/>"
                "</iq>", rid=rid)
    b.rid = rid
    r2 = b.post(rid=rid)
    assert ET.tostring(r1) == ET.tostring(r2)
    r3 = b.post(rid=rid - 30)
    assert r3.get("condition") == "item-not-found"


def test_bad_body(web):
    """A body that is not a httpbind <body/> is bad-request (XEP-0124 §17.2)."""
    b = bosh(web)
    c = b._conn()
    c.request("POST", "/http-bind", body=b"<notbody/>")
    r = ET.fromstring(c.getresponse().read())
    assert r.get("condition") == "bad-request"
    c.close()
    c = b._conn()
    c.request("POST", "/http-bind", body=b"<body xmlns='http://jabber.org/protocol/httpbind'")
    assert ET.fromstring(c.getresponse().read()).get("condition") == "bad-request"
    c.close()


def test_host_unknown(web):
    """Creating a session for a host we do not serve: host-unknown (XEP-0124 §17.2)."""
    b = bosh(web)
    r = b.post(to="nowhere.test", wait="5", hold="1", rid=b.rid)
    assert r.get("type") == "terminate" and r.get("condition") == "host-unknown"


def test_get_is_informational(web):
    """A GET on /http-bind explains the endpoint; other methods get 405."""
    st, _, _ = W.get(W.http_port(web), "/http-bind")
    assert st == 200
    st, _, _ = W.get(W.http_port(web), "/http-bind", method="PUT")
    assert st == 405


def test_terminate(web):
    """type='terminate' ends the session (XEP-0124 §13); the sid is then unknown."""
    b = bosh(web)
    b.login("carol", USERS["carol@localhost"], resource="term")
    r = b.post("<presence xmlns='jabber:client' type='unavailable'/>", type="terminate")
    assert r.get("type") == "terminate"
    assert b.post().get("condition") == "item-not-found"


def test_inactivity(web):
    """A session without requests for 'inactivity' ends (XEP-0124 §7.1)."""
    b = bosh(web)
    b.create(hold=0)
    time.sleep(2.8)
    assert b.post().get("condition") == "item-not-found"


def test_sasl_failure(web):
    """Wrong credentials: <failure/> in a body; the session stays usable for retries."""
    b = bosh(web)
    b.create()
    r = b.post("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>"
               "biwsbj1hbGljZSxyPWFiY2RlZmdo</auth>")
    ch = b.collect(r, lambda e: e.tag.endswith("challenge"))
    r = b.post("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
               "Yz1iaXdzLHI9YWJjZGVmZ2gscD1BQUFB</response>")
    f = b.collect(r, lambda e: e.tag.endswith("failure"))
    assert f is not None and ch is not None


def test_chat_with_tcp_client_and_offline(web):
    """A BOSH session is an ordinary session: presence and messages with a TCP client, and
    offline messages stored while away are delivered at login (RFC 6121 §8.5.2)."""
    tcp = xmpp_raw.RawClient(web.port)
    tcp.open_stream()
    tcp.authenticate("bob", USERS["bob@localhost"], mechanism="SCRAM-SHA-256")
    tcp.bind("tcp")
    tcp.send("<presence/>")
    tcp.send("<message to='alice@localhost' type='chat'><body>while away</body></message>")
    time.sleep(0.3)
    b = bosh(web)
    b.login("alice", USERS["alice@localhost"], resource="bosh")
    r = b.post("<presence xmlns='jabber:client'/>")
    m = b.collect(r, lambda e: e.tag == W.q(W.NS_CLIENT, "message"))
    assert m.find(W.q(W.NS_CLIENT, "body")).text == "while away"
    tcp.send("<message to='alice@localhost/bosh' type='chat'><body>live</body></message>")
    m = b.collect(b.post(), lambda e: e.tag == W.q(W.NS_CLIENT, "message"))
    assert m.find(W.q(W.NS_CLIENT, "body")).text == "live"
    b.post("<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat'>"
           "<body>from bosh</body></message>")
    m = tcp.messages()
    assert m.find(W.q(W.NS_CLIENT, "body")).text == "from bosh"
    tcp.close()


def test_pause_up_to_maxpause(web):
    """XEP-0124 §10: the creation response advertises 'maxpause'; a request with 'pause'
    is answered at once, together with every other pending request, and the session
    survives silence longer than 'inactivity' but within the pause; the next request ends
    the pause, so normal inactivity applies again."""
    b = bosh(web)
    r = b.create(wait=3, hold=1)
    assert r.get("maxpause") == "4"
    held = b.start(b.body())
    time.sleep(0.2)
    t = time.monotonic()
    r = b.post(pause="3")
    assert r.get("type") is None and len(r) == 0
    assert len(b.finish(held)) == 0
    assert time.monotonic() - t < 1.5
    time.sleep(2.7)                      # beyond inactivity (2 s), within the pause (3 s)
    r = b.post()
    assert r.get("type") != "terminate", ET.tostring(r)
    time.sleep(3.2)                      # the pause is over: inactivity (2 s) applies
    r = b.post()
    assert r.get("type") == "terminate", ET.tostring(r)


def test_pause_beyond_maxpause(web):
    """XEP-0124 §10: a 'pause' above 'maxpause' is a policy violation (§17.2)."""
    b = bosh(web)
    b.create(wait=5, hold=1)
    r = b.post(pause="5")
    assert r.get("type") == "terminate" and r.get("condition") == "policy-violation"


def test_server_close_without_held_request(web):
    """XEP-0124 §13/§17.2: when the server ends the stream while the client holds no
    request (here a second login takes the resource: RFC 6120 §7.7.2.2 conflict), the next
    request within the inactivity window still receives the terminate body with the
    stream error, not item-not-found; only after that is the sid unknown."""
    old = bosh(web)
    old.login("alice", USERS["alice@localhost"], resource="twice")
    new = bosh(web)
    new.login("alice", USERS["alice@localhost"], resource="twice")
    time.sleep(0.3)
    r = old.post()
    assert r.get("type") == "terminate", ET.tostring(r)
    assert r.get("condition") == "remote-stream-error", ET.tostring(r)
    err = r.find(W.q(W.NS_STREAMS, "error"))
    assert err is not None, ET.tostring(r)
    assert err.find(W.q("urn:ietf:params:xml:ns:xmpp-streams", "conflict")) is not None
    r = old.post()
    assert r.get("type") == "terminate" and r.get("condition") == "item-not-found"
    new.post(type="terminate")
