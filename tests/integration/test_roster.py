"""Roster management (RFC 6121 §2): get, set, update and remove with roster
pushes to every interested resource, roster versioning (§2.6), the error
cases of §2.3.3/§2.5.3, third parties, and the configured maximum roster
size — against the real server with raw clients."""
import pytest

from im_util import (NS_ROSTER, NS_ROSTERVER, error_condition, login, make_users)
from xmpp_raw import q, tostr

USERS = make_users("ro", 8)


@pytest.fixture(scope="module")
def srv(make_server):
    return make_server(users=USERS, name="roster")


def items_of(result):
    query = result.find(q(NS_ROSTER, "query"))
    return {} if query is None else {i.get("jid"): i for i in query}


def test_get_empty_roster(srv, clients):
    """RFC 6121 §2.2: a roster get is answered with a result holding the
    (here empty) roster in <query xmlns='jabber:iq:roster'/>."""
    a = login(srv, "ro1@localhost", presence=False)
    r = a.roster_get()
    assert r.get("type") == "result", tostr(r)
    assert r.find(q(NS_ROSTER, "query")) is not None
    assert items_of(r) == {}
    a.close()


def test_add_update_remove_pushed_to_two_resources(srv):
    """RFC 6121 §2.3.2, §2.4.2, §2.5.2, §2.1.6: add, update and remove each
    return a result to the sender and push the item (with 'ver') to every
    interested resource, including the sender; remove is pushed with
    subscription='remove'."""
    a1 = login(srv, "ro2@localhost", resource="one", presence=False)
    a2 = login(srv, "ro2@localhost", resource="two", presence=False)
    try:
        r = a1.roster_set("nurse@localhost", name="Nurse", groups=["Servants"])
        assert r.get("type") == "result", tostr(r)
        for s in (a1, a2):
            iq, item = s.push("nurse@localhost")
            assert iq.find(q(NS_ROSTER, "query")).get("ver"), tostr(iq)
            assert item.get("name") == "Nurse" and item.get("subscription") == "none"
            assert [g.text for g in item] == ["Servants"]
        r = a2.roster_set("nurse@localhost", name="Nursie", groups=["A", "B"])
        assert r.get("type") == "result", tostr(r)
        for s in (a1, a2):
            _, item = s.push("nurse@localhost")
            assert item.get("name") == "Nursie"
            assert sorted(g.text for g in item) == ["A", "B"]
        items = a1.roster_items()
        assert list(items) == ["nurse@localhost"]
        assert items["nurse@localhost"].get("name") == "Nursie"
        r = a1.roster_set("nurse@localhost", subscription="remove")
        assert r.get("type") == "result", tostr(r)
        for s in (a1, a2):
            _, item = s.push("nurse@localhost")
            assert item.get("subscription") == "remove"
        assert a2.roster_items() == {}
    finally:
        a1.close()
        a2.close()


def test_no_push_to_uninterested_resource(srv):
    """RFC 6121 §2.1.6 / §2.2: only resources that requested the roster
    (interested resources) receive roster pushes."""
    a1 = login(srv, "ro3@localhost", presence=False)
    a2 = login(srv, "ro3@localhost", roster=False, presence=False)
    try:
        assert a1.roster_set("x@localhost").get("type") == "result"
        a1.push("x@localhost")
        a2.no_push(0.5)
    finally:
        a1.close()
        a2.close()


def test_versioning(srv):
    """RFC 6121 §2.6: the stream feature rosterver is offered; a get with
    the current 'ver' gets an empty result; a get with an older 'ver' gets
    the full roster with the new 'ver'; pushes carry the new 'ver'."""
    a = login(srv, "ro4@localhost", presence=False)
    try:
        assert a.features.find(q(NS_ROSTERVER, "ver")) is not None, tostr(a.features)
        r = a.roster_get(ver="")
        ver0 = r.find(q(NS_ROSTER, "query")).get("ver")
        assert ver0, tostr(r)
        r = a.roster_get(ver=ver0)
        assert r.get("type") == "result" and len(r) == 0, tostr(r)
        assert a.roster_set("v@localhost", name="V").get("type") == "result"
        iq, _ = a.push("v@localhost")
        ver1 = iq.find(q(NS_ROSTER, "query")).get("ver")
        assert ver1 and ver1 != ver0
        r = a.roster_get(ver=ver0)
        assert r.find(q(NS_ROSTER, "query")).get("ver") == ver1
        assert list(items_of(r)) == ["v@localhost"]
        assert len(a.roster_get(ver=ver1)) == 0
    finally:
        a.close()
    # The version survives the session (stored, not just cached).
    b = login(srv, "ro4@localhost", presence=False)
    try:
        assert len(b.roster_get(ver=ver1)) == 0
    finally:
        b.close()


@pytest.mark.parametrize("items,cond", [
    ("<item jid='a@localhost'/><item jid='b@localhost'/>", ("modify", "bad-request")),
    ("<item jid='a@@localhost'/>", ("modify", "bad-request")),
    ("<item/>", ("modify", "bad-request")),
    ("<item jid='a@localhost'><group>G</group><group>G</group></item>", ("modify", "bad-request")),
    ("<item jid='a@localhost'><group></group></item>", ("modify", "not-acceptable")),
    ("<item jid='a@localhost' name='" + "n" * 1100 + "'/>", ("modify", "not-acceptable")),
    ("<item jid='nothere@localhost' subscription='remove'/>", ("cancel", "item-not-found")),
])
def test_set_errors(srv, items, cond):
    """RFC 6121 §2.3.3 (more than one item, duplicate group: bad-request;
    empty group, over-long name: not-acceptable), an invalid JID
    (bad-request), §2.5.3 (removing an unknown item: item-not-found); the
    roster is left unchanged."""
    a = login(srv, "ro5@localhost", presence=False)
    try:
        r = a.roster_set(None, raw_items=items)
        assert r.get("type") == "error", tostr(r)
        assert error_condition(r) == cond, tostr(r)
        assert a.roster_items() == {}
        a.no_push(0.1)
    finally:
        a.close()


def test_subscription_attribute_ignored(srv):
    """RFC 6121 §2.1.2.5: in a roster set the server ignores 'subscription'
    values other than 'remove' (and 'ask'/'approved'): the item is stored
    with subscription='none'."""
    a = login(srv, "ro6@localhost", presence=False)
    try:
        r = a.roster_set(None, raw_items="<item jid='s@localhost' subscription='both' "
                                         "ask='subscribe' approved='true'/>")
        assert r.get("type") == "result", tostr(r)
        _, item = a.push("s@localhost")
        assert item.get("subscription") == "none"
        assert item.get("ask") is None and item.get("approved") is None
    finally:
        a.close()


def test_third_party_forbidden(srv):
    """RFC 6121 §2.1.5/§2.3.3: a get or set addressed to another user's
    bare JID is refused (forbidden) and changes nothing."""
    a = login(srv, "ro7@localhost", presence=False)
    b = login(srv, "ro8@localhost", presence=False)
    try:
        r = a.roster_set("evil@localhost", to="ro8@localhost")
        assert error_condition(r) == ("auth", "forbidden"), tostr(r)
        r = a.roster_get(to="ro8@localhost")
        assert error_condition(r) == ("auth", "forbidden"), tostr(r)
        b.no_push(0.2)
        assert b.roster_items() == {}
        # Addressed to the own bare JID explicitly, it works.
        r = a.roster_set("fine@localhost", to="ro7@localhost")
        assert r.get("type") == "result", tostr(r)
    finally:
        a.close()
        b.close()


def test_max_items(make_server):
    """RFC 6121 §2.3.3 (server limits): with modules.roster.max_items = 3 a
    fourth item is refused with not-allowed while updating an existing item
    still works; the limit also holds after the cache is reloaded."""
    s = make_server({"modules": {"roster": {"max_items": 3}}},
                    users={"m1@localhost": "pw-m1-Lk2d"}, name="rostermax")
    a = login(s, "m1@localhost", presence=False)
    try:
        for i in range(3):
            assert a.roster_set(f"c{i}@localhost").get("type") == "result"
        r = a.roster_set("c3@localhost")
        assert error_condition(r) == ("cancel", "not-allowed"), tostr(r)
        assert a.roster_set("c1@localhost", name="upd").get("type") == "result"
    finally:
        a.close()
    b = login(s, "m1@localhost", presence=False)
    try:
        assert len(b.roster_items()) == 3
        assert error_condition(b.roster_set("c4@localhost")) == ("cancel", "not-allowed")
    finally:
        b.close()
