"""Helpers for the delivery (RFC 6121 §8.5) and offline-storage (XEP-0160,
XEP-0203) tests: raw clients with a given presence priority, message
builders, synchronisation points, and a small slixmpp client for flows.

Synchronisation: a client's stanzas are processed by the server in order, so
after the reply to an IQ ping the server has processed everything the client
sent before it (`sync`). Offline storage is asynchronous behind that point;
`settle` also waits a little for the storage worker.
"""
import asyncio
import logging
import re
import ssl
import time
import xml.etree.ElementTree as ET

from xmpp_raw import NS_CLIENT, new_id, q, stanza_error, tostr

NS_DELAY = "urn:xmpp:delay"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_MSGOFFLINE = "http://jabber.org/protocol/msgoffline"
# XEP-0082 DateTime in UTC with a Z (fractional seconds allowed).
STAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def presence(client, priority=None, ptype=None, wait=True):
    """Sends a broadcast presence (RFC 6121 §4.2/§4.7) with an optional priority;
    with wait, returns once the server has processed it."""
    attrs = f" type='{ptype}'" if ptype else ""
    body = f"<priority>{priority}</priority>" if priority is not None else ""
    client.send(f"<presence{attrs}>{body}</presence>")
    if wait:
        sync(client)


def sync(client):
    """Round trip an IQ ping to the server: everything sent before is processed."""
    resp = client.ping()
    assert resp.get("type") == "result", tostr(resp)


def settle(client, delay=0.15):
    """sync() plus time for asynchronous storage work to finish."""
    sync(client)
    time.sleep(delay)


def online(clients, server, jid, resource, priority=0, available=True):
    """A logged-in raw client; available with `priority` unless available=False."""
    c = clients.login(server, jid, resource=resource)
    if available:
        presence(c, priority)
    return c


def msg(to, mtype=None, mid=None, body="hi", extra=""):
    """A <message/> as text. mtype None omits the type attribute (normal)."""
    mid = mid or new_id()
    t = f" type='{mtype}'" if mtype else ""
    b = f"<body>{body}</body>" if body is not None else ""
    return f"<message to='{to}'{t} id='{mid}'>{b}{extra}</message>"


def is_msg(mid=None):
    return lambda e: e.tag == q(NS_CLIENT, "message") and (mid is None or e.get("id") == mid)


def body_of(e):
    b = e.find(q(NS_CLIENT, "body"))
    return None if b is None else b.text


def got_msg(client, mid, timeout=3.0):
    return client.wait_for(is_msg(mid), timeout, f"message id={mid}")


def no_msg(client, mid=None, timeout=0.4):
    client.no_element(timeout, is_msg(mid))


def expect_error(client, mid, cond, etype=None, timeout=3.0):
    """Waits for the error reply to the stanza with id mid; returns it."""
    e = client.wait_for(lambda x: x.get("id") == mid and x.get("type") == "error",
                        timeout, f"error reply to id={mid}")
    got = stanza_error(e)
    assert got is not None and got[1] == cond, tostr(e)
    if etype:
        assert got[0] == etype, tostr(e)
    return e


def no_reply(client, mid, timeout=0.4):
    client.no_element(timeout, lambda e: e.get("id") == mid)


def delays(e):
    return e.findall(q(NS_DELAY, "delay"))


def drain_messages(client, timeout=0.5):
    """Every message that arrives within timeout (after anything stashed)."""
    out = [x for x in client.stash if x.tag == q(NS_CLIENT, "message")]
    client.stash = [x for x in client.stash if x.tag != q(NS_CLIENT, "message")]
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return out
        try:
            out.append(client.wait_for(is_msg(), remaining, "message"))
        except TimeoutError:
            return out


def collect(client, n, timeout=3.0, extra=0.2):
    """Waits for n messages (up to timeout), then `extra` seconds for any more;
    returns every message received, in order."""
    out = drain_messages(client, 0)
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        try:
            out.append(client.wait_for(is_msg(), deadline - time.monotonic(), "message"))
        except TimeoutError:
            break
    return out + drain_messages(client, extra)


def received_before_sentinel(sender, client, timeout=3.0):
    """Ids of the messages `client` receives before a sentinel chat that
    `sender` sends to client's full JID now. The server routes one sender's
    stanzas to an online resource in order (RFC 6120 §10.1), so whatever the
    sender routed to `client` before has arrived once the sentinel has: a
    negative check without waiting for a timeout."""
    sid = "sentinel-" + new_id()
    sender.send(msg(client.jid, "chat", sid, "sentinel"))
    out = []
    while True:
        e = client.wait_for(is_msg(), timeout, f"sentinel {sid}")
        if e.get("id") == sid:
            return out
        out.append(e.get("id"))


# ---- slixmpp -------------------------------------------------------------

def slix_client_class():
    """A slixmpp ClientXMPP subclass set up as slix.py describes that records messages."""
    import slixmpp
    import slix
    logging.getLogger("slixmpp").setLevel(logging.CRITICAL)

    class SlixClient(slixmpp.ClientXMPP):
        def __init__(self, jid, password, priority=0, send_presence=True):
            super().__init__(jid, password, plugin_config=slix.plugin_config())
            slix.configure(self)
            self.register_plugin("xep_0030")
            self.register_plugin("xep_0203")
            self.register_plugin("xep_0199")
            self.priority = priority
            self.send_initial = send_presence
            self.inbox = asyncio.Queue()
            self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))
            self.add_event_handler("session_start", self._on_start)

        async def _on_start(self, _event):
            if self.send_initial:
                self.send_presence(ppriority=self.priority)

        async def start(self, port, timeout=10):
            started = asyncio.ensure_future(self.wait_until("session_start", timeout))
            self.connect(("127.0.0.1", port))
            await started
            return self

        async def next_message(self, timeout=5):
            return await asyncio.wait_for(self.inbox.get(), timeout)

        async def stop(self):
            try:
                await asyncio.wait_for(self.disconnect(wait=1), 5)
            except Exception:
                self.abort()

    return SlixClient


def run_async(coro, deadline=30):
    """Runs one slixmpp scenario in a fresh event loop and cleans up its tasks."""
    import slix
    return slix.run_async(coro, deadline)


def parse(xml):
    return ET.fromstring(f"<w xmlns='{NS_CLIENT}'>{xml}</w>")[0]
