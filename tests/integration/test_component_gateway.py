"""XEP-0100 gateway interaction and XEP-0356 privileges, with a scripted
gateway written with slixmpp's ComponentXMPP (XEP-0114) in a thread: service
discovery of the gateway through the server's disco#items and the gateway's
disco#info, registration (jabber:iq:register, XEP-0077) and jabber:iq:gateway
passing through untouched, the gateway subscribing to the user and legacy
contacts subscribing (RFC 6121 §3) and landing in the roster, a legacy
contact put straight into the roster by a XEP-0356 roster set (and pushed to
the user), the user's presence reaching the gateway at login and logout
(RFC 6121 §4.2, §4.5; XEP-0100 §4.4, §4.5), messages both ways, and a
message sent on a user's behalf (XEP-0356 §6)."""
import asyncio
import threading
import time

import pytest

slixmpp = pytest.importorskip("slixmpp")
from slixmpp.componentxmpp import ComponentXMPP  # noqa: E402

from component_util import component_config  # noqa: E402
from im_util import NS_ROSTER, Session  # noqa: E402
from xmpp_raw import NS_CLIENT, NS_DISCO_INFO, NS_DISCO_ITEMS, new_id, q, tostr  # noqa: E402

GW = "gw.localhost"
SECRET = "gw-Secret-0100"
NS_REGISTER = "jabber:iq:register"
NS_GATEWAY = "jabber:iq:gateway"
SERVER_CONFIG = component_config({GW: {
    "secret": SECRET,
    "privileges": {"roster": "both", "message": "outgoing", "presence": "managed_entity"},
}})


class Gateway:
    """A scripted XEP-0100 gateway: slixmpp on its own asyncio loop in a thread."""

    def __init__(self, port):
        self.port = port
        self.events = []
        self.cond = threading.Condition()
        self.registered = {}
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "gateway did not connect"

    def record(self, kind, **data):
        with self.cond:
            self.events.append((kind, data))
            self.cond.notify_all()

    def wait(self, kind, pred=lambda d: True, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for k, d in self.events:
                    if k == kind and pred(d):
                        return d
                left = deadline - time.monotonic()
                assert left > 0, f"gateway saw no {kind}; saw {self.events}"
                self.cond.wait(left)

    def call(self, fn, *args):
        """Runs fn(*args) on the gateway's loop (a coroutine function or plain)."""
        async def run():
            r = fn(*args)
            if asyncio.iscoroutine(r):
                r = await r
            return r
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        x = self.xmpp = ComponentXMPP(GW, SECRET, "127.0.0.1", self.port)
        x.register_plugin("xep_0030")
        x.register_plugin("xep_0297")
        x.register_plugin("xep_0356")
        x["xep_0030"].add_identity(category="gateway", itype="legacy", name="Legacy Gateway")
        x["xep_0030"].add_feature(NS_REGISTER)
        x["xep_0030"].add_feature(NS_GATEWAY)
        x.add_event_handler("session_start", lambda e: self.ready.set())
        x.add_event_handler("privileges_advertised",
                            lambda e: self.record("privileges",
                                                  perms=dict(x["xep_0356"].granted_privileges)))
        x.add_event_handler("message", self._on_message)
        x.add_event_handler("presence_available",
                            lambda p: self.record("available", frm=str(p["from"]), to=str(p["to"])))
        x.add_event_handler("presence_unavailable",
                            lambda p: self.record("unavailable", frm=str(p["from"]),
                                                  to=str(p["to"])))
        x.add_event_handler("presence_subscribe", self._on_subscribe)
        x.add_event_handler("presence_subscribed",
                            lambda p: self.record("subscribed", frm=str(p["from"]),
                                                  to=str(p["to"])))
        x.add_event_handler("presence_probe",
                            lambda p: self.record("probe", frm=str(p["from"]), to=str(p["to"])))
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath
        x.register_handler(Callback("register", MatchXPath(
            "{%s}iq/{%s}query" % (x.default_ns, NS_REGISTER)), self._on_register))
        x.register_handler(Callback("gateway", MatchXPath(
            "{%s}iq/{%s}query" % (x.default_ns, NS_GATEWAY)), self._on_gateway))
        x.connect()
        self.loop.run_forever()

    def _on_message(self, msg):
        if msg["type"] == "error" or not msg["body"]:
            return
        self.record("message", frm=str(msg["from"]), to=str(msg["to"]), body=msg["body"])
        # the legacy contact answers
        self.xmpp.send_message(mto=msg["from"], mfrom=msg["to"], mbody="echo: " + msg["body"],
                               mtype="chat")

    def _on_subscribe(self, p):
        self.record("subscribe", frm=str(p["from"]), to=str(p["to"]))
        self.xmpp.send_presence(pto=p["from"].bare, pfrom=p["to"], ptype="subscribed")

    def _on_register(self, iq):
        from xml.etree import ElementTree as ET
        query = iq.xml.find("{%s}query" % NS_REGISTER)
        self.record("register", type=iq["type"], frm=str(iq["from"]))
        reply = iq.reply()
        reply.clear()
        res = ET.SubElement(reply.xml, "{%s}query" % NS_REGISTER)
        if iq["type"] == "get":
            ET.SubElement(res, "{%s}instructions" % NS_REGISTER).text = "Legacy login"
            ET.SubElement(res, "{%s}username" % NS_REGISTER)
            ET.SubElement(res, "{%s}password" % NS_REGISTER)
            reply.send()
            return
        self.registered[iq["from"].bare] = query.findtext("{%s}username" % NS_REGISTER)
        reply.send()
        # XEP-0100 §4.1.1: the gateway subscribes to the user's presence
        self.xmpp.send_presence(pto=iq["from"].bare, pfrom=GW, ptype="subscribe")

    def _on_gateway(self, iq):
        from xml.etree import ElementTree as ET
        self.record("gateway", type=iq["type"])
        reply = iq.reply()
        reply.clear()
        res = ET.SubElement(reply.xml, "{%s}query" % NS_GATEWAY)
        if iq["type"] == "get":
            ET.SubElement(res, "{%s}desc" % NS_GATEWAY).text = "Enter the legacy address"
            ET.SubElement(res, "{%s}prompt" % NS_GATEWAY).text = "Address"
        else:
            prompt = iq.xml.find("{%s}query/{%s}prompt" % (NS_GATEWAY, NS_GATEWAY)).text
            ET.SubElement(res, "{%s}jid" % NS_GATEWAY).text = f"{prompt}@{GW}"
        reply.send()

    def stop(self):
        def bye():
            self.xmpp.disconnect()
        try:
            self.call(bye)
        except Exception:
            pass
        time.sleep(0.2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def gw(server):
    server.secrets.add(SECRET)
    g = Gateway(server.config["listen"]["component_port"])
    yield g
    g.stop()


def login(server, clients, jid, roster=True, presence=True, resource=None):
    s = Session(clients.login(server, jid, resource=resource), None)
    s.jid = s.c.jid
    s.bare = jid
    if roster:
        s.roster_items()
    if presence:
        s.c.send("<presence/>")
        # available once the server reflects the presence (RFC 6121 §4.2.2)
        s.c.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("from") == s.jid)
    return s


def test_privileges_advertised(gw):
    """XEP-0356 §4: on connect the server tells the component what it may do."""
    d = gw.wait("privileges")
    assert d["perms"] == {"roster": "both", "message": "outgoing",
                          "presence": "managed_entity"}, d


def test_discovery(server, gw, clients):
    """XEP-0100 §4.1.1 / XEP-0030: the gateway is found in the server's items and answers
    disco#info itself (identity category gateway, register feature)."""
    alice = login(server, clients, "alice@localhost", presence=False)
    deadline = time.monotonic() + 3
    while True:
        r = alice.c.iq(f"<iq type='get' id='{new_id()}' to='localhost'>"
                       f"<query xmlns='{NS_DISCO_ITEMS}'/></iq>")
        items = {i.get("jid"): i.get("name") for i in r.find(q(NS_DISCO_ITEMS, "query"))}
        if items.get(GW) == "Legacy Gateway" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert items.get(GW) == "Legacy Gateway", items
    r = alice.c.iq(f"<iq type='get' id='{new_id()}' to='{GW}'><query xmlns='{NS_DISCO_INFO}'/></iq>")
    assert r.get("type") == "result", tostr(r)
    qq = r.find(q(NS_DISCO_INFO, "query"))
    assert qq.find(q(NS_DISCO_INFO, "identity")).get("category") == "gateway"
    feats = {f.get("var") for f in qq.findall(q(NS_DISCO_INFO, "feature"))}
    assert {NS_REGISTER, NS_GATEWAY} <= feats


def test_register_and_subscriptions(server, gw, clients):
    """XEP-0100 §4.1: registration passes through untouched; the gateway's subscription
    request reaches the user, who approves it and subscribes back; the gateway then is in
    the roster with subscription both; a legacy contact's subscription request lands as a
    pending request and, once approved, as a roster item (RFC 6121 §3.1)."""
    bob = login(server, clients, "bob@localhost")
    r = bob.c.iq(f"<iq type='get' id='{new_id()}' to='{GW}'><query xmlns='{NS_REGISTER}'/></iq>")
    assert r.find(q(NS_REGISTER, "query")).find(q(NS_REGISTER, "instructions")).text == \
        "Legacy login"
    r = bob.c.iq(f"<iq type='set' id='{new_id()}' to='{GW}'><query xmlns='{NS_REGISTER}'>"
                 f"<username>bob-legacy</username><password>legacy-pw</password></query></iq>")
    assert r.get("type") == "result", tostr(r)
    server.passwords.add("legacy-pw")
    assert gw.registered.get("bob@localhost") == "bob-legacy"
    # the gateway subscribes to bob
    sub = bob.c.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence")
                         and e.get("type") == "subscribe" and e.get("from") == GW)
    bob.c.send(f"<presence to='{GW}' type='subscribed'/>")
    bob.c.send(f"<presence to='{GW}' type='subscribe'/>")
    gw.wait("subscribe", lambda d: d["frm"] == "bob@localhost" and d["to"] == GW)
    gw.wait("subscribed", lambda d: d["frm"] == "bob@localhost")
    deadline = time.monotonic() + 3
    while bob.roster_items().get(GW) is None or \
            bob.roster_items()[GW].get("subscription") != "both":
        assert time.monotonic() < deadline, tostr(bob.roster_get())
        time.sleep(0.05)
    assert sub is not None
    # jabber:iq:gateway passes through
    r = bob.c.iq(f"<iq type='set' id='{new_id()}' to='{GW}'><query xmlns='{NS_GATEWAY}'>"
                 f"<prompt>carol-legacy</prompt></query></iq>")
    assert r.find(q(NS_GATEWAY, "query")).find(q(NS_GATEWAY, "jid")).text == \
        f"carol-legacy@{GW}"
    # a legacy contact asks to subscribe
    contact = f"carol-legacy@{GW}"
    gw.call(lambda: gw.xmpp.send_presence(pto="bob@localhost", pfrom=contact, ptype="subscribe"))
    bob.c.wait_for(lambda e: e.tag == q(NS_CLIENT, "presence") and e.get("type") == "subscribe"
                   and e.get("from") == contact)
    bob.c.send(f"<presence to='{contact}' type='subscribed'/>")
    gw.wait("subscribed", lambda d: d["to"] == contact)
    item = bob.push(contact)[1]
    assert item.get("subscription") == "from", tostr(item)


def test_presence_login_logout_reaches_gateway(server, gw, clients):
    """XEP-0100 §4.4/§4.5: the server sends the user's presence to the gateway (a contact
    with a 'from' subscription) at login, and unavailable at logout — so the gateway logs
    the user in and out of the legacy network."""
    c = login(server, clients, "bob@localhost", resource="laptop")
    gw.wait("available", lambda d: d["frm"] == "bob@localhost/laptop" and d["to"] == GW)
    # the probe for the gateway's presence (bob has a 'to' subscription)
    gw.wait("probe", lambda d: d["frm"].startswith("bob@localhost") and d["to"] == GW)
    c.c.send("<presence type='unavailable'/>")
    gw.wait("unavailable", lambda d: d["frm"] == "bob@localhost/laptop" and d["to"] == GW)
    c.c.close()


def test_messages_both_ways(server, gw, clients):
    """Messages to a legacy contact reach the gateway with the user's full JID; the
    contact's answer reaches the user."""
    bob = login(server, clients, "bob@localhost", roster=False)
    contact = f"dave-legacy@{GW}"
    bob.c.send(f"<message to='{contact}' type='chat'><body>hello legacy</body></message>")
    d = gw.wait("message", lambda d: d["body"] == "hello legacy")
    assert d["frm"] == bob.jid and d["to"] == contact
    m = bob.c.messages(pred=lambda e: e.get("from") == contact)
    assert m.find(q(NS_CLIENT, "body")).text == "echo: hello legacy"


def test_roster_privilege_set_and_get(server, gw, clients):
    """XEP-0356 §5: the gateway puts a legacy contact straight into carol's roster (with a
    subscription state); carol's interested resource gets a roster push; the gateway can
    read the roster back."""
    carol = login(server, clients, "carol@localhost")
    contact = f"erin-legacy@{GW}"
    gw.call(gw.xmpp["xep_0356"].set_roster, "carol@localhost",
            {contact: {"name": "Erin", "subscription": "both", "groups": ["Legacy"]}})
    iq, item = carol.push(contact)
    assert item.get("name") == "Erin" and item.get("subscription") == "both", tostr(iq)
    assert item.find(q(NS_ROSTER, "group")).text == "Legacy"
    got = gw.call(gw.xmpp["xep_0356"].get_roster, "carol@localhost")
    jids = [i.get("jid") for i in got.xml.iter("{%s}item" % NS_ROSTER)]
    assert contact in jids, str(got)


def test_message_privilege(server, gw, clients):
    """XEP-0356 §6: a message forwarded by the gateway goes out as if alice had sent it."""
    bob = login(server, clients, "bob@localhost", roster=False)
    msg = gw.xmpp.make_message(mto="bob@localhost", mfrom="alice@localhost",
                               mbody="sent on alice's behalf", mtype="chat")
    # slixmpp addresses the wrapper to server_host, which for a component is the address it
    # connected to (127.0.0.1); XEP-0356 §6 addresses it to the server's domain.
    gw.xmpp.server_host = "localhost"
    gw.call(gw.xmpp["xep_0356"].send_privileged_message, msg)
    m = bob.c.messages(pred=lambda e: e.get("from") == "alice@localhost")
    assert m.find(q(NS_CLIENT, "body")).text == "sent on alice's behalf"
