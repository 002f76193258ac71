"""XEP-0356 and XEP-0355 beyond the basics, with raw components: roster
pushes of managed users sent to a component with roster "get"/"both"
(XEP-0356 §5); presence permission "roster" — the presence users receive
from their roster contacts reaches the component too, once per change, also
while the user is offline (XEP-0356 §7); the server's disco#info lists
urn:xmpp:delegation:2 and nests the delegate's features from the node
urn:xmpp:delegation:2::<namespace> (XEP-0355 "Discovering Support"); IQs a
user sends to their own bare JID in a namespace delegated for bare JIDs go
to the delegate (XEP-0355 §5 "directed to the bare JID of the sender")."""
import copy
import subprocess
import time

import pytest

from component_util import NS_COMPONENT, component_config, connect_component
from server import starling_bin, to_yaml
from xmpp_raw import NS_CLIENT, new_id, q, tostr

NS_ROSTER = "jabber:iq:roster"
NS_D, NS_F = "urn:xmpp:delegation:2", "urn:xmpp:forward:0"
NS_INFO = "http://jabber.org/protocol/disco#info"
PEP, LEGACY, DELEG = "pep.localhost", "legacy.localhost", "deleg.localhost"
SERVER_CONFIG = component_config({
    PEP: {"secret": "pep-Secret-1",
          "privileges": {"roster": "both", "presence": "roster"}},
    LEGACY: "legacy-Secret-1",
    DELEG: {"secret": "deleg-Secret-1", "delegations": ["urn:example:nested"],
            "bare_delegations": ["urn:example:bare"]},
})


@pytest.fixture(scope="module")
def srv(server):
    server.secrets.update({"pep-Secret-1", "legacy-Secret-1", "deleg-Secret-1"})
    return server


def privileged_set(comp, user, contact, sub):
    iid = new_id()
    comp.send(f"<iq type='set' id='{iid}' from='{comp.domain}' to='{user}'>"
              f"<query xmlns='{NS_ROSTER}'><item jid='{contact}' subscription='{sub}'/>"
              f"</query></iq>")
    r = comp.stanza("iq", lambda e: e.get("id") == iid)
    assert r.get("type") == "result", tostr(r)


def is_push(user, contact):
    def pred(e):
        it = e.find(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item")
        return (e.get("type") == "set" and e.get("from") == user and it is not None
                and it.get("jid") == contact)
    return pred


def test_roster_pushes_reach_component(srv, clients):
    pep = connect_component(srv, PEP, "pep-Secret-1")
    # A change the user makes from a client...
    alice = clients.login(srv, "alice@localhost")
    r = alice.iq(f"<iq type='set' id='{new_id()}'><query xmlns='{NS_ROSTER}'>"
                 f"<item jid='friend@example.net' name='Friend'/></query></iq>")
    assert r.get("type") == "result", tostr(r)
    push = pep.stanza("iq", is_push("alice@localhost", "friend@example.net"))
    assert push.get("to") == PEP
    item = push.find(f"{{{NS_ROSTER}}}query/{{{NS_ROSTER}}}item")
    assert item.get("name") == "Friend" and item.get("subscription") == "none", tostr(push)
    pep.send(f"<iq type='result' id='{push.get('id')}' from='{PEP}' to='alice@localhost'/>")
    # ...and one made by a privileged entity for a user who is offline.
    privileged_set(pep, "bob@localhost", "x@example.net", "both")
    pep.stanza("iq", is_push("bob@localhost", "x@example.net"))
    privileged_set(pep, "bob@localhost", "x@example.net", "remove")
    push = pep.stanza("iq", is_push("bob@localhost", "x@example.net"))
    assert push.find(f".//{{{NS_ROSTER}}}item").get("subscription") == "remove"
    pep.close()


def test_roster_presence(srv, clients):
    pep = connect_component(srv, PEP, "pep-Secret-1")
    legacy = connect_component(srv, LEGACY, "legacy-Secret-1")
    c1, c2 = f"c1@{LEGACY}", f"c2@{LEGACY}"
    # Both users subscribe to c1's presence; nobody to c2; bob only has a 'from' on c3.
    privileged_set(pep, "alice@localhost", c1, "to")
    privileged_set(pep, "bob@localhost", c1, "both")
    privileged_set(pep, "bob@localhost", f"c3@{LEGACY}", "from")
    for user in ("alice@localhost", "bob@localhost"):  # users offline: sent anyway (§7)
        legacy.send(f"<presence from='{c1}/irc' to='{user}'><status>here</status></presence>")
    p = pep.stanza("presence", lambda e: e.get("from") == f"{c1}/irc")
    assert p.get("to") == PEP and p.get("type") is None, tostr(p)
    assert p.find(q(NS_COMPONENT, "status")).text == "here"
    for user in ("alice@localhost", "bob@localhost"):
        legacy.send(f"<presence from='{c2}/irc' to='{user}'/>")
        legacy.send(f"<presence from='c3@{LEGACY}/irc' to='{user}'/>")
    # A type the XEP excludes is not forwarded either.
    legacy.send(f"<presence from='{c1}/irc' to='alice@localhost' type='subscribed'/>")
    legacy.send(f"<presence from='{c1}/irc' to='alice@localhost' type='unavailable'/>")
    u = pep.stanza("presence", lambda e: e.get("from") == f"{c1}/irc")
    assert u.get("type") == "unavailable", "the same presence was forwarded twice: " + tostr(u)
    pep.no_element(0.5, lambda e: e.tag.endswith("presence") and
                   e.get("from") in (f"{c2}/irc", f"c3@{LEGACY}/irc", f"{c1}/irc"))
    legacy.close()
    pep.close()


def answer_nested(comp, features):
    iq = comp.stanza("iq", lambda e: e.find(q(NS_INFO, "query")) is not None
                     and e.find(q(NS_INFO, "query")).get("node"))
    node = iq.find(q(NS_INFO, "query")).get("node")
    assert node == f"{NS_D}::urn:example:nested", tostr(iq)
    feats = "".join(f"<feature var='{f}'/>" for f in features)
    comp.send(f"<iq type='result' id='{iq.get('id')}' from='{iq.get('to')}' to='{iq.get('from')}'>"
              f"<query xmlns='{NS_INFO}' node='{node}'>{feats}</query></iq>")


def server_features(client, node=None):
    n = f" node='{node}'" if node else ""
    r = client.iq(f"<iq type='get' id='{new_id()}' to='localhost'><query xmlns='{NS_INFO}'{n}/></iq>")
    assert r.get("type") == "result", tostr(r)
    return {f.get("var") for f in r.iter(q(NS_CLIENT, "feature"))} | \
           {f.get("var") for f in r.iter(q(NS_INFO, "feature"))}


def test_delegation_disco_nesting(srv, clients):
    alice = clients.login(srv, "alice@localhost")
    assert NS_D in server_features(alice)
    comp = connect_component(srv, DELEG, "deleg-Secret-1", answer_disco=False)
    answer_nested(comp, ["urn:example:nested", "urn:example:nested#extra"])
    comp.answer_disco()
    deadline = time.monotonic() + 3
    while "urn:example:nested#extra" not in server_features(alice):
        assert time.monotonic() < deadline, "nested features never appeared"
        time.sleep(0.05)
    node_feats = server_features(alice, f"{NS_D}::urn:example:nested")
    assert {"urn:example:nested", "urn:example:nested#extra"} <= node_feats
    comp.disconnect()
    deadline = time.monotonic() + 3
    while "urn:example:nested#extra" in server_features(alice):
        assert time.monotonic() < deadline, "nested features outlived the delegate"
        time.sleep(0.05)


def test_bare_jid_delegation(srv, clients):
    alice = clients.login(srv, "alice@localhost")
    bob = clients.login(srv, "bob@localhost")
    comp = connect_component(srv, DELEG, "deleg-Secret-1", answer_disco=False)
    answer_nested(comp, [])
    comp.answer_disco()
    iid = new_id()
    alice.send(f"<iq type='get' id='{iid}' to='alice@localhost'><q xmlns='urn:example:bare'/></iq>")
    wrapped = comp.stanza("iq", lambda e: e.find(f"{{{NS_D}}}delegation") is not None)
    assert wrapped.get("from") == "alice@localhost", tostr(wrapped)
    inner = wrapped.find(f"{{{NS_D}}}delegation/{{{NS_F}}}forwarded/{{{NS_CLIENT}}}iq")
    assert inner is not None and inner.get("from") == alice.jid, tostr(wrapped)
    comp.send(f"<iq type='result' id='{wrapped.get('id')}' from='{DELEG}' to='alice@localhost'>"
              f"<delegation xmlns='{NS_D}'><forwarded xmlns='{NS_F}'>"
              f"<iq xmlns='{NS_CLIENT}' type='result' id='{iid}' from='alice@localhost' "
              f"to='{alice.jid}'><q xmlns='urn:example:bare'>mine</q></iq>"
              f"</forwarded></delegation></iq>")
    r = alice.wait_for(lambda e: e.tag == q(NS_CLIENT, "iq") and e.get("id") == iid)
    assert r.get("type") == "result" and r.get("from") == "alice@localhost", tostr(r)
    assert r.find("{urn:example:bare}q").text == "mine"
    # Someone else's bare JID is not "the bare JID of the sender": not delegated.
    r = bob.iq(f"<iq type='get' id='{new_id()}' to='alice@localhost'><q xmlns='urn:example:bare'/></iq>")
    assert r.get("type") == "error", tostr(r)
    comp.no_element(0.3, lambda e: e.tag == q(NS_COMPONENT, "iq")
                    and e.find(f"{{{NS_D}}}delegation") is not None)
    # Namespaces delegated for bare JIDs only are not delegated at the server's own JID.
    r = alice.iq(f"<iq type='get' id='{new_id()}' to='localhost'><q xmlns='urn:example:bare'/></iq>")
    assert r.get("type") == "error", tostr(r)
    comp.close()


def test_roster_presence_needs_roster_read(srv, tmp_path):
    """XEP-0356 §7: presence 'roster' without roster get/both is refused at load."""
    cfg = copy.deepcopy(srv.config)
    cfg["components"][PEP]["privileges"] = {"roster": "set", "presence": "roster"}
    path = tmp_path / "bad.yaml"
    path.write_text(to_yaml(cfg) + "\n", encoding="utf-8")
    cp = subprocess.run([starling_bin(), "check", "--config", str(path)], capture_output=True,
                        text=True, timeout=30)
    assert cp.returncode != 0
    assert "privileges.presence: roster" in cp.stdout + cp.stderr, cp.stdout + cp.stderr
