"""Helpers for the RFC 6121 (IM and presence) integration tests: accounts
made per test module, raw clients that fetch the roster (RFC 6121 §2.2:
"interested" resources) and/or send initial presence (§4.2), roster
get/set, and predicates for roster pushes and presence stanzas."""
import itertools

import xmpp_raw
from xmpp_raw import NS_CLIENT, NS_STANZAS, new_id, q, tostr

NS_ROSTER = "jabber:iq:roster"
NS_ROSTERVER = "urn:xmpp:features:rosterver"
NS_PREAPPROVAL = "urn:xmpp:features:pre-approval"

_seq = itertools.count(1)


def make_users(prefix, n, domain="localhost"):
    """n account JIDs (prefix1@domain ...) with passwords, for make_server(users=...)."""
    return {f"{prefix}{i}@{domain}": f"pw-{prefix}{i}-Tq8z" for i in range(1, n + 1)}


def bare(jid):
    return jid.split("/")[0] if jid else jid


class Session:
    """A logged-in raw client with roster helpers."""

    def __init__(self, client, jid):
        self.c = client
        self.jid = jid            # full JID
        self.bare = bare(jid)

    def __getattr__(self, name):
        return getattr(self.c, name)

    # -- roster (RFC 6121 §2) ----------------------------------------------
    def roster_get(self, ver=None, to=None):
        v = "" if ver is None else f" ver='{ver}'"
        t = f" to='{to}'" if to else ""
        return self.c.iq(f"<iq type='get' id='{new_id()}'{t}><query xmlns='{NS_ROSTER}'{v}/></iq>")

    def roster_items(self):
        r = self.roster_get()
        assert r.get("type") == "result", tostr(r)
        return {i.get("jid"): i for i in r.find(q(NS_ROSTER, "query"))}

    def roster_set(self, jid, name=None, groups=(), subscription=None, to=None, raw_items=None):
        attrs = f" jid='{jid}'" if jid is not None else ""
        if name is not None:
            attrs += f" name='{name}'"
        if subscription is not None:
            attrs += f" subscription='{subscription}'"
        g = "".join(f"<group>{x}</group>" for x in groups)
        items = raw_items if raw_items is not None else f"<item{attrs}>{g}</item>"
        t = f" to='{to}'" if to else ""
        return self.c.iq(f"<iq type='set' id='{new_id()}'{t}><query xmlns='{NS_ROSTER}'>"
                         f"{items}</query></iq>")

    def push(self, jid=None, timeout=None):
        """Waits for a roster push (RFC 6121 §2.1.6) for jid; returns (iq, item). Answers it."""
        def is_push(e):
            if e.tag != q(NS_CLIENT, "iq") or e.get("type") != "set":
                return False
            qq = e.find(q(NS_ROSTER, "query"))
            if qq is None:
                return False
            it = qq.find(q(NS_ROSTER, "item"))
            return it is not None and (jid is None or it.get("jid") == jid)
        iq = self.c.wait_for(is_push, timeout, f"roster push for {jid}")
        assert iq.get("from") in (None, self.bare), tostr(iq)
        self.c.send(f"<iq type='result' id='{iq.get('id')}'/>")
        return iq, iq.find(q(NS_ROSTER, "query")).find(q(NS_ROSTER, "item"))

    def no_push(self, timeout=0.4):
        self.c.no_element(timeout, lambda e: e.tag == q(NS_CLIENT, "iq")
                          and e.find(q(NS_ROSTER, "query")) is not None)

    # -- presence (RFC 6121 §3, §4) ------------------------------------------
    def presence(self, frm=None, type_=None, timeout=None):
        """Waits for a presence from frm (full or bare; None = any) of type_ ('' = available)."""
        return self.c.wait_for(presence_pred(frm, type_), timeout,
                               f"presence from={frm} type={type_}")

    def no_presence(self, frm=None, type_=None, timeout=0.4):
        self.c.no_element(timeout, presence_pred(frm, type_))

    def send_presence(self, to=None, type_=None, extra=""):
        t = f" to='{to}'" if to else ""
        ty = f" type='{type_}'" if type_ else ""
        self.c.send(f"<presence{t}{ty}>{extra}</presence>")


def presence_pred(frm=None, type_=None):
    def pred(e):
        if e.tag != q(NS_CLIENT, "presence"):
            return False
        if frm is not None:
            f = e.get("from") or ""
            if f != frm and ("/" in frm or bare(f) != frm):
                return False
        if type_ is not None and (e.get("type") or "") != type_:
            return False
        return True
    return pred


def login(server, jid, resource=None, roster=True, presence=True):
    """A raw client for jid: bound, optionally interested (roster fetched) and available."""
    user, domain = jid.split("@")
    resource = resource or f"r{next(_seq)}"
    c = xmpp_raw.login(server, user, server.users[jid], resource=resource, domain=domain)
    s = Session(c, c.jid)
    if roster:
        r = s.roster_get()
        assert r.get("type") == "result", tostr(r)
    if presence:
        s.send_presence(extra=presence if isinstance(presence, str) else "")
        # our own presence comes back (RFC 6121 §4.2.2): a barrier for the broadcast
        s.presence(frm=s.jid, type_="")
    return s


def error_condition(el):
    err = el.find(q(NS_CLIENT, "error"))
    assert err is not None, f"no error in {tostr(el)}"
    for ch in err:
        if ch.tag.startswith("{" + NS_STANZAS + "}") and not ch.tag.endswith("}text"):
            return err.get("type"), ch.tag.split("}", 1)[1]
    raise AssertionError(f"no condition in {tostr(el)}")


def subscribe_both(a, b):
    """Brings a and b (interested, available Sessions) to subscription 'both'."""
    for x, y in ((a, b), (b, a)):
        x.send_presence(to=y.bare, type_="subscribe")
        y.presence(frm=x.bare, type_="subscribe")
        y.send_presence(to=x.bare, type_="subscribed")
        x.presence(frm=y.bare, type_="subscribed")
    # let the pushes and presences settle, then forget them
    a.ping()
    b.ping()
    a.c.stash.clear()
    b.c.stash.clear()


# -- slixmpp (flows with a real client library) ---------------------------------
from slix import MECHS as SLIX_MECHS  # noqa: E402,F401
from slix import run_async  # noqa: E402,F401


def slix_client(slixmpp, jid, password):
    """A slixmpp ClientXMPP for the test server (see slix.py for the set-up)."""
    import slix
    return slix.configure(slixmpp.ClientXMPP(jid, password, plugin_config=slix.plugin_config()))
