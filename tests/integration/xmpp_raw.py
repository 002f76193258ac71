"""A raw-socket XMPP client for byte-exact tests of RFC 6120 streams.

`StreamReader` is an incremental reader on xml.etree.ElementTree.XMLPullParser
that reports the stream header (RFC 6120 §4.7), each complete top-level
element (§4.1: stanzas and negotiation elements at depth 1) and the closing
</stream:stream> (§4.4). `RawClient` drives one TCP connection: it sends
whatever bytes a test wants and offers helpers for STARTTLS (§5), SASL PLAIN
and SCRAM (§6, RFC 5802/7677), resource binding (§7) and IQ round trips.
"""
import base64
import collections
import socket
import ssl
import time
import uuid
import warnings
import xml.etree.ElementTree as ET

from scram import ScramClient, tls_server_end_point

NS_STREAM = "http://etherx.jabber.org/streams"
NS_CLIENT = "jabber:client"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_STREAMS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_SASL_CB = "urn:xmpp:sasl-cb:0"
NS_PING = "urn:xmpp:ping"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_VERSION = "jabber:iq:version"
NS_XML = "http://www.w3.org/XML/1998/namespace"

DEFAULT_TIMEOUT = 5.0


def q(ns, name):
    """Clark notation: q(NS_CLIENT, 'message') -> '{jabber:client}message'."""
    return "{%s}%s" % (ns, name)


def local(tag):
    return tag.rsplit("}", 1)[-1]


def ns_of(tag):
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else ""


def new_id():
    return uuid.uuid4().hex[:16]


def tostr(elem):
    return ET.tostring(elem, encoding="unicode")


def b64(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def stanza_error(elem):
    """(type, condition) of a stanza error (RFC 6120 §8.3.2), or None."""
    err = elem.find(q(NS_CLIENT, "error"))
    if err is None:
        return None
    cond = None
    for child in err:
        if ns_of(child.tag) == NS_STANZAS and local(child.tag) != "text":
            cond = local(child.tag)
            break
    return err.get("type"), cond


def insecure_context(min_version=None, max_version=None, legacy=False):
    """A TLS client context that trusts any certificate (tests use self-signed ones)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if legacy:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        if min_version is not None:
            ctx.minimum_version = min_version
        if max_version is not None:
            ctx.maximum_version = max_version
    return ctx


def starttls_version(c, version):
    """STARTTLS on c's open stream with exactly TLS `version` ("TLSv1.2" or "TLSv1.3"),
    then the stream restart."""
    v = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}[version]
    c.starttls(context=insecure_context(v, v))
    assert c.sock.version() == version
    c.open_stream()


class StreamClosed(AssertionError):
    """The TCP connection ended while the test was waiting for data."""


class StreamReader:
    """Incremental parser for one XML stream (one direction, one stream instance)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.parser = ET.XMLPullParser(events=("start", "end", "start-ns"))
        self.depth = 0
        self.root = None
        self.ns_decls = {}
        self.closed = False

    def feed(self, data):
        """Feed bytes; returns a list of ('header', elem) / ('element', elem) / ('close', None)."""
        if self.closed:
            return []
        try:
            self.parser.feed(data)
            events = list(self.parser.read_events())
        except ET.ParseError as exc:
            raise AssertionError(f"server sent XML that is not well-formed ({exc}): {data!r}")
        out = []
        for ev, obj in events:
            if ev == "start-ns":
                if self.depth == 0:
                    self.ns_decls[obj[0]] = obj[1]
            elif ev == "start":
                if self.depth == 0:
                    self.root = obj
                    out.append(("header", obj))
                self.depth += 1
            elif ev == "end":
                self.depth -= 1
                if self.depth == 1:
                    out.append(("element", obj))
                    self.root.remove(obj)
                elif self.depth == 0:
                    out.append(("close", None))
                    self.closed = True
                    break
        return out


class RawClient:
    """One client connection to a Starling c2s port, spoken byte by byte."""

    def __init__(self, port, domain="localhost", host="127.0.0.1",
                 timeout=DEFAULT_TIMEOUT, direct_tls=False, sni=None, tls_context=None,
                 rcvbuf=None):
        self.domain = domain
        self.timeout = timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((host, port))
        self.sock = sock
        self.reader = StreamReader()
        self.events = collections.deque()
        self.stash = []           # top-level elements read but not yet claimed
        self.eof = False
        self.tls = False
        self.header = None
        self.features = None
        self.jid = None
        self.received_bytes = 0
        if direct_tls:
            self.wrap_tls(sni=sni if sni is not None else domain, context=tls_context)

    # -- transport ----------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def wrap_tls(self, sni=None, context=None):
        ctx = context or insecure_context()
        self.sock = ctx.wrap_socket(self.sock, server_hostname=sni or None)
        self.tls = True

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data from the server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("timed out waiting for data from the server")
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        if not data:
            self.eof = True
            return
        self.received_bytes += len(data)
        self.events.extend(self.reader.feed(data))

    def next_event(self, timeout=None):
        """Next reader event; raises StreamClosed at EOF, TimeoutError on timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.events:
            if self.eof:
                raise StreamClosed("connection closed by the server")
            self._fill(deadline)
        return self.events.popleft()

    def recv(self, timeout=None):
        """Next top-level element (stanza or negotiation element)."""
        if self.stash:
            return self.stash.pop(0)
        while True:
            ev, obj = self.next_event(timeout)
            if ev == "element":
                return obj
            if ev == "close":
                raise StreamClosed("server closed the stream (</stream:stream>)")
            # a header here means the server restarted its stream: ignore

    def wait_for(self, pred, timeout=None, what="element"):
        """First element (stashed or new) for which pred(elem) is true; others are stashed."""
        for i, el in enumerate(self.stash):
            if pred(el):
                return self.stash.pop(i)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out waiting for {what}; got {self.dump_stash()}")
            ev, obj = self.next_event(remaining)
            if ev == "close":
                raise StreamClosed(f"stream closed while waiting for {what}; got {self.dump_stash()}")
            if ev != "element":
                continue
            if pred(obj):
                return obj
            if obj.tag == q(NS_STREAM, "error"):
                raise AssertionError(f"unexpected stream error while waiting for {what}: {tostr(obj)}")
            self.stash.append(obj)

    def dump_stash(self):
        return "[" + ", ".join(tostr(e) for e in self.stash) + "]"

    def no_element(self, timeout=0.5, pred=None):
        """Asserts that no (matching) element arrives within timeout seconds."""
        pred = pred or (lambda e: True)
        for el in self.stash:
            assert not pred(el), f"unexpected element {tostr(el)}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ev, obj = self.next_event(deadline - time.monotonic())
            except (TimeoutError, StreamClosed):
                return
            if ev != "element":
                self.events.appendleft((ev, obj))  # leave the close for the caller
                return
            self.stash.append(obj)
            assert not pred(obj), f"unexpected element {tostr(obj)}"

    def wait_closed(self, timeout=None):
        """Reads (and discards) until the server closes TCP; TimeoutError otherwise."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            try:
                self._fill(deadline)
            except AssertionError:
                # garbage after the stream was closed still counts as a close
                # only if EOF follows; keep reading raw bytes
                self.reader.closed = True
        self.events.clear()

    def drain(self):
        """Reads whatever the server already sent, without blocking; elements
        are stashed. Keeps the server's output queue for us empty."""
        import select
        while not self.eof:
            pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
            if not pending and not select.select([self.sock], [], [], 0)[0]:
                return
            self._fill(time.monotonic() + self.timeout)
            while self.events:
                ev, obj = self.events.popleft()
                if ev == "element":
                    self.stash.append(obj)

    def is_open(self, timeout=0.2):
        """True if the server has not closed the connection (waits up to timeout)."""
        try:
            self.wait_closed(timeout)
        except TimeoutError:
            return True
        return False

    def close(self):
        try:
            if not self.eof:
                self.send("</stream:stream>")
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    # -- streams (RFC 6120 §4) ----------------------------------------------
    def header_bytes(self, to=None, version="1.0", xmlns=NS_CLIENT, xml_decl=True,
                     extra=""):
        to = self.domain if to is None else to
        parts = ["<?xml version='1.0'?>" if xml_decl else "", "<stream:stream"]
        if to is not False:
            parts.append(f" to='{to}'")
        if version is not None:
            parts.append(f" version='{version}'")
        parts.append(f" xmlns='{xmlns}' xmlns:stream='{NS_STREAM}'{extra}>")
        return "".join(parts)

    def open_stream(self, features=True, **kw):
        """Sends a stream header, reads the response header and (by default) features."""
        self.reader.reset()
        self.events.clear()
        self.stash = []
        self.send(self.header_bytes(**kw))
        return self.read_header(features=features)

    def read_header(self, features=True, timeout=None):
        while True:
            ev, obj = self.next_event(timeout)
            if ev == "header":
                self.header = obj
                break
            if ev == "close":
                raise StreamClosed("stream closed before the header")
        if features:
            self.features = self.wait_for(lambda e: e.tag == q(NS_STREAM, "features"),
                                          timeout, "stream features")
        return self.header

    def expect_stream_error(self, timeout=None):
        """Reads until <stream:error/>; asserts </stream:stream> and TCP close follow.

        Returns the defined condition's local name (RFC 6120 §4.9.2)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        err = None
        for el in self.stash:
            if el.tag == q(NS_STREAM, "error"):
                err = el
        while err is None:
            ev, obj = self.next_event(max(0.01, deadline - time.monotonic()))
            if ev == "close":
                raise AssertionError("stream closed without a <stream:error/>")
            if ev == "element" and obj.tag == q(NS_STREAM, "error"):
                err = obj
        conds = [local(c.tag) for c in err
                 if ns_of(c.tag) == NS_STREAMS and local(c.tag) != "text"]
        assert len(conds) == 1, f"stream error needs exactly one condition: {tostr(err)}"
        # RFC 6120 §4.9.1.1: the error is followed by the closing stream tag...
        while True:
            try:
                ev, obj = self.next_event(max(0.01, deadline - time.monotonic()))
            except StreamClosed:
                raise AssertionError("TCP closed without </stream:stream> after the stream error")
            if ev == "close":
                break
            assert ev != "element", f"element after stream error: {tostr(obj)}"
        # ...and the TCP connection is terminated.
        self.wait_closed(max(0.5, deadline - time.monotonic()))
        self.error_element = err
        return conds[0]

    # -- TLS (RFC 6120 §5) --------------------------------------------------
    def feature(self, ns, name):
        return None if self.features is None else self.features.find(q(ns, name))

    def starttls(self, sni=None, context=None):
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        resp = self.recv()
        assert resp.tag == q(NS_TLS, "proceed"), f"expected <proceed/>, got {tostr(resp)}"
        self.wrap_tls(sni=sni if sni is not None else self.domain, context=context)
        self.reader.reset()
        self.events.clear()

    # -- SASL (RFC 6120 §6) -------------------------------------------------
    def mechanisms(self):
        mechs = self.feature(NS_SASL, "mechanisms")
        if mechs is None:
            return []
        return [m.text for m in mechs.findall(q(NS_SASL, "mechanism"))]

    def sasl_reply(self):
        return self.wait_for(lambda e: ns_of(e.tag) == NS_SASL, what="SASL reply")

    def auth_plain(self, user, password, authzid=""):
        msg = f"{authzid}\0{user}\0{password}"
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{b64(msg)}</auth>")
        return self.sasl_reply()

    def auth_scram(self, mechanism, user, password, **kw):
        """Runs a SCRAM exchange; returns (final element, ScramClient).

        On <success/> the server signature is verified (RFC 5802 §3)."""
        if mechanism.endswith("-PLUS") and "cb_data" not in kw:
            kw["cb_type"] = "tls-server-end-point"
            kw["cb_data"] = tls_server_end_point(self.sock)
        sc = ScramClient(mechanism, user, password, **kw)
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{b64(sc.client_first())}</auth>")
        resp = self.sasl_reply()
        if resp.tag != q(NS_SASL, "challenge"):
            return resp, sc
        final = sc.client_final(base64.b64decode(resp.text or ""))
        self.send(f"<response xmlns='{NS_SASL}'>{b64(final)}</response>")
        resp = self.sasl_reply()
        if resp.tag == q(NS_SASL, "challenge"):
            # server-final as a challenge (RFC 6120 §6.3.10 allows it); empty response
            sc.verify_server_final(base64.b64decode(resp.text or ""))
            self.send(f"<response xmlns='{NS_SASL}'/>")
            resp = self.sasl_reply()
            assert resp.tag == q(NS_SASL, "success"), tostr(resp)
        elif resp.tag == q(NS_SASL, "success"):
            assert resp.text, "SCRAM <success/> must carry the server-final message"
            sc.verify_server_final(base64.b64decode(resp.text))
        return resp, sc

    def authenticate(self, user, password, mechanism="PLAIN", restart=True):
        if mechanism == "PLAIN":
            resp = self.auth_plain(user, password)
        else:
            resp, _ = self.auth_scram(mechanism, user, password)
        assert resp.tag == q(NS_SASL, "success"), f"SASL failed: {tostr(resp)}"
        if restart:
            self.open_stream()

    # -- binding (RFC 6120 §7) ----------------------------------------------
    def bind(self, resource=None, expect_ok=True):
        rid = new_id()
        res = f"<resource>{resource}</resource>" if resource is not None else ""
        resp = self.iq(f"<iq type='set' id='{rid}'><bind xmlns='{NS_BIND}'>{res}</bind></iq>")
        if not expect_ok:
            return resp
        assert resp.get("type") == "result", f"bind failed: {tostr(resp)}"
        jid = resp.find(f"{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}")
        assert jid is not None and jid.text, f"bind result without jid: {tostr(resp)}"
        self.jid = jid.text
        return self.jid

    def iq(self, xml, timeout=None):
        """Sends an IQ (must carry id='...') and returns the result/error with that id."""
        el = ET.fromstring(f"<w xmlns='{NS_CLIENT}'>{xml}</w>")[0]
        iid = el.get("id")
        assert iid, "iq() needs an id attribute"
        self.send(xml)
        return self.wait_for(
            lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid
            and e.get("type") in ("result", "error"),
            timeout, f"iq reply id={iid}")

    def ping(self, to=None, timeout=None):
        """XEP-0199 ping; returns the reply element."""
        to = self.domain if to is None else to
        return self.iq(f"<iq type='get' id='{new_id()}' to='{to}'><ping xmlns='{NS_PING}'/></iq>",
                       timeout)

    def assert_alive(self):
        resp = self.ping()
        assert resp.get("type") == "result", f"ping failed: {tostr(resp)}"

    def messages(self, timeout=None, pred=None):
        pred = pred or (lambda e: True)
        return self.wait_for(lambda e: e.tag == q(NS_CLIENT, "message") and pred(e),
                             timeout, "message")


def connect(server, domain="localhost", **kw):
    """A RawClient on the server's STARTTLS port (nothing sent yet)."""
    return RawClient(server.port, domain=domain, **kw)


def login(server, user, password, resource=None, domain="localhost",
          mechanism="PLAIN", direct_tls=False, presence=False):
    """A fully negotiated client: TLS, SASL, bind (RFC 6120 §5-§7)."""
    if direct_tls:
        c = RawClient(server.tls_port, domain=domain, direct_tls=True)
    else:
        c = RawClient(server.port, domain=domain)
        c.open_stream()
        c.starttls()
    c.open_stream()
    c.authenticate(user, password, mechanism=mechanism)
    c.bind(resource)
    if presence:
        c.send("<presence/>")
    return c
