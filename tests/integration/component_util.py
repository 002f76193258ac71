"""Helpers for the external component tests (XEP-0114): a server config with
the component port and components section, and a raw component connection
that speaks jabber:component:accept byte by byte (stream header, handshake,
stanzas), built on xmpp_raw.RawClient."""
import hashlib
import time

import xmpp_raw
from server import free_port
from xmpp_raw import q, tostr

NS_COMPONENT = "jabber:component:accept"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


def component_config(components, port=None):
    """SERVER_CONFIG overrides: components maps domain -> secret or -> settings dict."""
    port = port or free_port()
    comps = {}
    for domain, v in components.items():
        comps[domain] = {"secret": v} if isinstance(v, str) else v
    # No federation listener: its fixed default port would clash between test servers.
    return {"listen": {"component_port": port, "component_interfaces": ["127.0.0.1"]},
            "s2s": {"port": 0, "tls_port": 0},
            "components": comps}


def handshake_digest(stream_id, secret):
    """XEP-0114 §3: lowercase hex SHA-1 of the stream id followed by the secret."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


class RawComponent(xmpp_raw.RawClient):
    """One component connection to the XEP-0114 port."""

    def __init__(self, server, domain, **kw):
        # The component port opens just after the client port the server fixture waits for.
        deadline = time.monotonic() + 5
        while True:
            try:
                super().__init__(server.config["listen"]["component_port"], domain=domain, **kw)
                return
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def open(self, to=None):
        """Sends the component stream header; returns the server's header element."""
        return self.open_stream(features=False, to=to, version=None, xmlns=NS_COMPONENT)

    def handshake(self, secret, digest=None):
        """Sends <handshake/> (the correct digest unless one is given)."""
        sid = self.header.get("id")
        d = digest if digest is not None else handshake_digest(sid, secret)
        self.send(f"<handshake>{d}</handshake>")

    def login(self, secret):
        self.open()
        self.handshake(secret)
        el = self.recv()
        assert el.tag == q(NS_COMPONENT, "handshake"), tostr(el)
        return self

    def disconnect(self):
        """Closes the stream and waits until the server closed the connection."""
        self.send("</stream:stream>")
        self.wait_closed()
        self.sock.close()

    def stanza(self, name, pred=None, timeout=None):
        """Waits for a stanza named name (in the component namespace) matching pred."""
        return self.wait_for(lambda e: e.tag == q(NS_COMPONENT, name) and (pred is None or pred(e)),
                             timeout, f"<{name}/> for the component")

    def answer_disco(self, name="Test Gateway", category="gateway", type_="irc", features=()):
        """Answers the server's disco#info query sent on connect (XEP-0030)."""
        # The plain query; XEP-0355 nesting queries carry a node and are answered separately.
        iq = self.stanza("iq", lambda e: e.find(q(NS_DISCO_INFO, "query")) is not None
                         and e.find(q(NS_DISCO_INFO, "query")).get("node") is None)
        feats = "".join(f"<feature var='{f}'/>" for f in features)
        self.send(f"<iq type='result' id='{iq.get('id')}' from='{iq.get('to')}' "
                  f"to='{iq.get('from')}'><query xmlns='{NS_DISCO_INFO}'>"
                  f"<identity category='{category}' type='{type_}' name='{name}'/>{feats}"
                  f"</query></iq>")
        return iq


def connect_component(server, domain, secret, answer_disco=True, **kw):
    c = RawComponent(server, domain, **kw)
    c.login(secret)
    if answer_disco:
        c.answer_disco()
    return c
