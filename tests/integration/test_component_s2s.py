"""Components and federation: stanzas for a component's domain arriving from
a remote server over s2s are routed to the component, and the component's
replies to remote JIDs leave through s2s (XEP-0114 with RFC 6120 §10.5
domain-based routing; the component's domain is served over federation like
a virtual host). On loopback with a static route: the test plays the remote
server remote.test — a raw jabber:server stream into Starling's s2s port
authenticated with Server Dialback (XEP-0220; remote.test is in
s2s.insecure_domains, encryption not required), and the authoritative
server Starling connects back to for <db:verify/>, which also takes
Starling's outgoing stream."""
import queue
import socket
import threading
import time

import pytest

from component_util import component_config, connect_component
from server import deep_merge, free_port
from xmpp_raw import StreamReader, tostr

DB = "jabber:server:dialback"
GW, REMOTE = "gw.localhost", "remote.test"
AUTH_PORT = free_port()
S2S_PORT = free_port()
SERVER_CONFIG = deep_merge(component_config({GW: "gw-s2s-Secret-1"}), {
    "s2s": {"port": S2S_PORT, "tls_port": 0, "require_encryption": False,
            "insecure_domains": [REMOTE], "routes": {REMOTE: f"127.0.0.1:{AUTH_PORT}"}},
})


def header(frm, to, sid=None):
    i = f" id='{sid}'" if sid else ""
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            f"xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='{DB}' "
            f"from='{frm}' to='{to}'{i} version='1.0'>")


class Peer:
    """One raw jabber:server connection."""

    def __init__(self, sock):
        self.sock = sock
        self.reader = StreamReader()
        self.events = []

    def send(self, s):
        self.sock.sendall(s.encode())

    def next(self, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.events:
            if time.monotonic() > deadline:
                raise TimeoutError("no data from the server")
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return ("eof", None)
            self.events.extend(self.reader.feed(data))
        return self.events.pop(0)

    def element(self, timeout=10):
        while True:
            kind, e = self.next(timeout)
            if kind != "header":
                return kind, e


class Authoritative(threading.Thread):
    """remote.test's server as Starling's outgoing streams see it: answers <db:verify/> and
    <db:result/> with 'valid' and collects the stanzas Starling sends."""

    def __init__(self):
        super().__init__(daemon=True)
        self.listener = socket.create_server(("127.0.0.1", AUTH_PORT))
        self.listener.settimeout(0.2)
        self.stanzas = queue.Queue()
        self.stop = False

    def run(self):
        conns = []
        while not self.stop:
            try:
                s, _ = self.listener.accept()
            except socket.timeout:
                continue
            t = threading.Thread(target=self.serve, args=(Peer(s),), daemon=True)
            t.start()
            conns.append(s)
        for s in conns:
            s.close()

    def serve(self, p):
        try:
            kind, h = p.next()
            frm = h.get("from") or GW
            p.send(header(REMOTE, frm, "auth-stream-1") +
                   "<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                   "</stream:features>")
            while not self.stop:
                try:
                    kind, e = p.element(1)
                except TimeoutError:
                    continue
                if kind != "element":
                    return
                if e.tag == f"{{{DB}}}verify":
                    p.send(f"<db:verify from='{e.get('to')}' to='{e.get('from')}' "
                           f"id='{e.get('id')}' type='valid'/>")
                elif e.tag == f"{{{DB}}}result":
                    p.send(f"<db:result from='{e.get('to')}' to='{e.get('from')}' type='valid'/>")
                else:
                    self.stanzas.put(e)
        except (OSError, AssertionError):
            return


@pytest.fixture(scope="module")
def auth():
    a = Authoritative()
    a.start()
    yield a
    a.stop = True
    a.join(2)
    a.listener.close()


@pytest.fixture(scope="module")
def srv(server):
    server.secrets.add("gw-s2s-Secret-1")
    return server


def s2s_in():
    """An inbound stream from remote.test to the component's domain, dialback-authorized."""
    deadline = time.monotonic() + 5
    while True:
        try:
            p = Peer(socket.create_connection(("127.0.0.1", S2S_PORT), timeout=10))
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    p.send(header(REMOTE, GW))
    kind, h = p.next()
    assert kind == "header" and h.get("from") == GW, (kind, h is not None and h.attrib)
    p.element()  # features
    p.send(f"<db:result from='{REMOTE}' to='{GW}'>not-checked-by-the-test-peer</db:result>")
    kind, e = p.element()
    assert e is not None and e.tag == f"{{{DB}}}result" and e.get("type") == "valid", \
        tostr(e) if e is not None else kind
    return p


def test_remote_stanza_reaches_component_and_reply_goes_back(srv, auth):
    comp = connect_component(srv, GW, "gw-s2s-Secret-1")
    p = s2s_in()
    p.send(f"<message from='u@{REMOTE}/r' to='bot@{GW}' id='fed1' type='chat'>"
           f"<body>from afar</body></message>")
    m = comp.stanza("message", lambda e: e.get("id") == "fed1")
    assert m.get("from") == f"u@{REMOTE}/r" and m.get("to") == f"bot@{GW}", tostr(m)
    # The component answers the remote user: out through federation, from its domain.
    comp.send(f"<message from='bot@{GW}' to='u@{REMOTE}/r' id='fed2' type='chat'>"
              f"<body>hello back</body></message>")
    deadline = time.monotonic() + 10
    while True:
        e = auth.stanzas.get(timeout=max(0.1, deadline - time.monotonic()))
        if e.get("id") == "fed2":
            break
    assert e.get("from") == f"bot@{GW}" and e.get("to") == f"u@{REMOTE}/r", tostr(e)
    # An IQ to the component's domain itself is answered by the component over the same path.
    p.send(f"<iq type='get' id='fed3' from='u@{REMOTE}/r' to='{GW}'>"
           f"<query xmlns='jabber:iq:version'/></iq>")
    iq = comp.stanza("iq", lambda e: e.get("id") == "fed3")
    assert iq.get("from") == f"u@{REMOTE}/r", tostr(iq)
    p.sock.close()
    comp.close()


def test_remote_stanza_while_component_down_bounces(srv, auth):
    """The component is configured but not connected: the remote sender gets
    <service-unavailable/> back through federation."""
    p = s2s_in()
    p.send(f"<iq type='get' id='fed4' from='u@{REMOTE}/r' to='{GW}'>"
           f"<query xmlns='jabber:iq:version'/></iq>")
    deadline = time.monotonic() + 10
    while True:
        e = auth.stanzas.get(timeout=max(0.1, deadline - time.monotonic()))
        if e.get("id") == "fed4":
            break
    assert e.get("type") == "error" and "service-unavailable" in tostr(e), tostr(e)
    p.sock.close()
