"""Helpers for the web transports' tests: a server config with the HTTP
ports on, raw HTTP requests, a minimal RFC 6455 WebSocket client speaking
RFC 7395 framing, and a BOSH (XEP-0124/0206) client over http.client.
Everything is plain Python (no third-party packages)."""
import base64
import http.client
import os
import random
import socket
import ssl
import struct
import time
import xml.etree.ElementTree as ET

from scram import ScramClient
from server import free_port

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
NS_BOSH = "http://jabber.org/protocol/httpbind"
NS_XBOSH = "urn:xmpp:xbosh"
NS_CLIENT = "jabber:client"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_STREAMS = "http://etherx.jabber.org/streams"


def q(ns, name):
    return "{%s}%s" % (ns, name)


def web_config(extra=None):
    """Overrides enabling HTTP on fresh ports (plain and TLS) on loopback."""
    port = free_port()
    tls_port = free_port()
    while tls_port == port:
        tls_port = free_port()
    cfg = {
        "http": {"port": port, "tls_port": tls_port, "interfaces": ["127.0.0.1"]},
        "bosh": {"polling": "0s"},
        # federation off: its fixed default ports would collide between test servers
        "s2s": {"port": 0, "tls_port": 0},
    }
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    return cfg


def http_port(server):
    return server.config["http"]["port"]


def https_port(server):
    return server.config["http"]["tls_port"]


def tls_context(alpn=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def open_socket(port, tls=False, alpn=None, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        s = tls_context(alpn).wrap_socket(s, server_hostname="localhost")
    return s


_LEFTOVER = {}  # fileno -> bytes read past the previous response (pipelining)


def read_response(sock, timeout=10):
    """Reads one HTTP response (Content-Length framed); returns (status, headers, body).
    headers: dict of lower-case name -> value (last wins); status 0 when the peer closed."""
    sock.settimeout(timeout)
    buf = _LEFTOVER.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return 0, {}, buf
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    if len(rest) > n:
        _LEFTOVER[sock.fileno()] = rest[n:]
    return status, headers, rest[:n]


def raw_request(port, data, tls=False, timeout=10):
    """Sends raw bytes, returns (status, headers, body) of the first response."""
    with open_socket(port, tls=tls, timeout=timeout) as s:
        s.sendall(data)
        return read_response(s, timeout)


def get(port, path, headers=None, tls=False, method="GET"):
    h = {"Host": "localhost"}
    h.update(headers or {})
    req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
    return raw_request(port, (req + "Connection: close\r\n\r\n").encode(), tls=tls)


# ---- WebSocket (RFC 6455) ----

class WSClosed(AssertionError):
    pass


class WSClient:
    """A WebSocket client for XMPP framing (RFC 7395). Frames are masked as RFC 6455 §5.3
    requires of clients."""

    def __init__(self, port, tls=False, protocol="xmpp", origin=None, path="/xmpp-websocket",
                 extra=None, expect=101, alpn=None):
        self.sock = open_socket(port, tls=tls, alpn=alpn)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13"]
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        if origin:
            lines.append(f"Origin: {origin}")
        lines += extra or []
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.status, self.headers, self.body = read_response(self.sock)
        assert self.status == expect, (self.status, self.headers, self.body)
        self.buf = b""
        self.stash = []

    def send_frame(self, opcode, payload, fin=True, mask=True):
        if isinstance(payload, str):
            payload = payload.encode()
        b0 = (0x80 if fin else 0) | opcode
        n = len(payload)
        mbit = 0x80 if mask else 0
        if n < 126:
            hdr = struct.pack("!BB", b0, mbit | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, mbit | 127, n)
        if mask:
            key = os.urandom(4)
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
            hdr += key
        self.sock.sendall(hdr + payload)

    def send(self, text):
        self.send_frame(1, text)

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise AssertionError("timed out waiting for a WebSocket frame")
            if not chunk:
                raise WSClosed("connection closed")
            self.buf += chunk

    def recv_frame(self, timeout=10):
        """Returns (opcode, payload bytes)."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._need(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            self._need(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        self._need(off + n, deadline)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return b0 & 0x0F, payload

    def recv(self, timeout=10):
        """The next XML element (skipping pongs); raises WSClosed on a close frame."""
        if self.stash:
            return self.stash.pop(0)
        return self._recv_wire(timeout)

    def _recv_wire(self, timeout):
        while True:
            op, payload = self.recv_frame(timeout)
            if op == 1:
                return ET.fromstring(payload.decode())
            if op == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise WSClosed(f"close frame {code}")

    def wait_for(self, pred, timeout=10):
        deadline = time.monotonic() + timeout
        for i, e in enumerate(self.stash):
            if pred(e):
                return self.stash.pop(i)
        while True:
            e = self._recv_wire(max(0.01, deadline - time.monotonic()))
            if pred(e):
                return e
            self.stash.append(e)

    def wait_close(self, timeout=10):
        """Reads until the close frame; returns its status code."""
        deadline = time.monotonic() + timeout
        while True:
            op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if op == 8:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def open(self, to="localhost"):
        self.send(f"<open xmlns='{NS_FRAMING}' to='{to}' version='1.0'/>")
        o = self.recv()
        assert o.tag == q(NS_FRAMING, "open"), ET.tostring(o)
        f = self.recv()
        assert f.tag == q(NS_STREAMS, "features"), ET.tostring(f)
        return o, f

    def login(self, user, password, resource="ws", to="localhost"):
        _, f = self.open(to)
        mechs = [m.text for m in f.iter(q(NS_SASL, "mechanism"))]
        assert "SCRAM-SHA-256" in mechs, mechs
        sc = ScramClient("SCRAM-SHA-256", user, password)
        self.send(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>"
                  f"{base64.b64encode(sc.client_first()).decode()}</auth>")
        ch = self.recv()
        assert ch.tag == q(NS_SASL, "challenge"), ET.tostring(ch)
        final = sc.client_final(base64.b64decode(ch.text))
        self.send(f"<response xmlns='{NS_SASL}'>{base64.b64encode(final).decode()}</response>")
        ok = self.recv()
        assert ok.tag == q(NS_SASL, "success"), ET.tostring(ok)
        self.open(to)
        self.send(f"<iq xmlns='{NS_CLIENT}' type='set' id='b1'><bind xmlns='{NS_BIND}'>"
                  f"<resource>{resource}</resource></bind></iq>")
        r = self.wait_for(lambda e: e.get("id") == "b1")
        assert r.get("type") == "result", ET.tostring(r)
        return r.find(f"{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}").text

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- BOSH (XEP-0124, XEP-0206) ----

class BoshClient:
    """A BOSH client: each request on its own HTTP connection, so several can be in flight."""

    def __init__(self, port, tls=False, path="/http-bind"):
        self.port = port
        self.tls = tls
        self.path = path
        self.rid = random.randint(1000, 1 << 40)
        self.sid = None
        self.attrs = {}

    def _conn(self):
        if self.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                               context=tls_context())
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def start(self, body):
        """Sends body (str) without waiting; returns a pending connection for finish()."""
        c = self._conn()
        c.request("POST", self.path, body=body.encode(),
                  headers={"Content-Type": "text/xml; charset=utf-8"})
        return c

    @staticmethod
    def finish(c):
        r = c.getresponse()
        data = r.read()
        c.close()
        assert r.status == 200, (r.status, data)
        return ET.fromstring(data.decode())

    def body(self, payload="", rid=None, **attrs):
        if rid is None:
            self.rid += 1
            rid = self.rid
        a = {"rid": str(rid), "xmlns": NS_BOSH}
        if self.sid:
            a["sid"] = self.sid
        a.update({k.replace("_", ":") if k.startswith("xmpp_") else k: v
                  for k, v in attrs.items()})
        s = " ".join(f"{k}='{v}'" for k, v in a.items())
        if "xmpp:" in s:
            s += f" xmlns:xmpp='{NS_XBOSH}'"
        return f"<body {s}>{payload}</body>" if payload else f"<body {s}/>"

    def post(self, payload="", rid=None, **attrs):
        return self.finish(self.start(self.body(payload, rid, **attrs)))

    def create(self, to="localhost", wait=10, hold=1, **attrs):
        r = self.post(to=to, wait=str(wait), hold=str(hold), ver="1.11",
                      xmpp_version="1.0", **attrs, rid=self.rid)
        assert r.get("type") != "terminate", ET.tostring(r)
        self.sid = r.get("sid")
        self.attrs = dict(r.attrib)
        return r

    def collect(self, first, pred, tries=10):
        """Returns the first child matching pred of first, or of later empty polls."""
        r = first
        for _ in range(tries):
            for ch in r:
                if pred(ch):
                    return ch
            assert r.get("type") != "terminate", ET.tostring(r)
            r = self.post()
        raise AssertionError("element not received")

    def login(self, user, password, resource="bosh", hold=1):
        r = self.create(hold=hold)
        f = self.collect(r, lambda e: e.tag == q(NS_STREAMS, "features"))
        mechs = [m.text for m in f.iter(q(NS_SASL, "mechanism"))]
        assert "SCRAM-SHA-256" in mechs, mechs
        sc = ScramClient("SCRAM-SHA-256", user, password)
        r = self.post(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>"
                      f"{base64.b64encode(sc.client_first()).decode()}</auth>")
        ch = self.collect(r, lambda e: e.tag == q(NS_SASL, "challenge"))
        final = sc.client_final(base64.b64decode(ch.text))
        r = self.post(f"<response xmlns='{NS_SASL}'>{base64.b64encode(final).decode()}"
                      "</response>")
        self.collect(r, lambda e: e.tag == q(NS_SASL, "success"))
        r = self.post(to="localhost", xmpp_restart="true")
        self.collect(r, lambda e: e.tag == q(NS_STREAMS, "features"))
        r = self.post(f"<iq xmlns='{NS_CLIENT}' type='set' id='b1'><bind xmlns='{NS_BIND}'>"
                      f"<resource>{resource}</resource></bind></iq>")
        res = self.collect(r, lambda e: e.get("id") == "b1")
        assert res.get("type") == "result", ET.tostring(res)
        return res.find(f"{q(NS_BIND, 'bind')}/{q(NS_BIND, 'jid')}").text


def wait_http(server, timeout=10):
    """The c2s port opens first; wait until the HTTP port accepts too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", http_port(server)), timeout=0.5):
                return server
        except OSError:
            assert server.proc.poll() is None, server.log_tail()
            time.sleep(0.02)
    raise AssertionError("HTTP port did not open:\n" + server.log_tail())


def start_web(make_server, extra=None, **kw):
    """make_server with web_config(extra), waiting for the HTTP port."""
    return wait_http(make_server(web_config(extra), **kw))
