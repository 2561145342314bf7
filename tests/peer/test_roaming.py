"""LISP-MN roaming: a member whose own RLOCs change re-registers and SMRs at once."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from decent.peer.config import DatabaseMapping, NodeConfig
from decent.peer.events import RlocsChanged, SmrReceived
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.peer.roaming import moved_addrs as _moved_addrs
from decent.peer.roaming import moved_locators as _moved_locators
from decent.wire import (
    AfiList,
    DistinguishedName,
    Eid,
    Locator,
    MapRecord,
    MapRegister,
    MapRequest,
    Rle,
    RleEntry,
    rle_entries,
)
from tests.peer.conftest import (
    ETR_EID,
    ETR_IP,
    GROUP,
    IP,
    KEY,
    MS_IP,
    N1,
    N2,
    N3,
    Traced,
    decent_trio,
    lab,
    locators,
    nonces,
    sent,
)
from tests.peer.mesh import eid4, mesh, udp
from tests.peer.simnet import SimNet

N3B = IPv4Address("198.18.42.33")
V6 = IPv6Address("2001:db8::3")


def move(net: SimNet, node: Traced, rlocs: tuple[IP, ...]) -> None:
    """The node's address changes: it is reachable at the new one only, and
    the shell tells the core (as the interface watch does)."""
    net.remove(node)
    addrs = [(r, p) for r in rlocs for p in (4342, 4341)]
    net.add(node, *addrs, source=addrs[0])
    node.change_rlocs(rlocs, net.now)


def addresses(node: Node) -> set[object]:
    """Every address any registration or cached mapping of node names,
    RLE members included."""
    out: set[object] = set()
    records = [e.record for _, e in node.ms.db.items()]
    records += [e.record for _, e in node.cache.db.items()]
    for rec in records:
        for loc in rec.locators:
            out.add(loc.address)
            out.update(e.address for e in rle_entries(loc))
    return out


def site_rlocs(node: Node, eid: Eid) -> list[object]:
    entry = node.ms.db.get(eid)
    assert entry is not None
    return [loc.address for loc in entry.record.locators]


def test_every_peer_follows_a_moved_member_within_one_round_of_messages():
    net, members = decent_trio(eids=2, record=True)
    net.advance(5.0)
    n3 = members[2]
    group = n3.config.group_eid
    assert group is not None
    assert all(N3 in m.membership() for m in members)
    moved_at = net.now
    move(net, n3, (N3B,))
    net.settle()
    # No timer had to fire: the datagrams sent at the change did it.
    assert net.now - moved_at < 0.1
    mine = [Eid.name("n3"), Eid.prefix("10.3.0.0/32"), Eid.prefix("10.3.0.1/32")]
    for m in members:
        for eid in mine:
            assert site_rlocs(m, eid) == [N3B], (m.config.rlocs, eid)
        entry = m.ms.db.get(group)
        assert entry is not None
        assert sorted(entry.members()) == sorted((N1, N2, N3B))
        assert sorted(m.membership()) == sorted((N1, N2, N3B))
        assert N3 not in addresses(m)
    assert n3.config.rlocs == (N3B,)
    assert n3.config.map_resolvers == ((N3B, 4342),)
    assert (N3B, 4342) in n3.config.map_servers
    assert (N3, 4342) not in n3.config.map_servers
    assert [e for _, e in n3.events(RlocsChanged)] == [
        RlocsChanged((str(N3),), (str(N3B),))
    ]
    assert n3.counters["rlocs.changed"] == 1
    # Nothing is sent to the old address once the news is out.
    assert [d for t, _, d, _ in net.trace if d[0] == N3 and t > moved_at] == []
    # The group keeps working afterwards: a later join reaches n3 too.
    net.advance(120.0)
    for m in members:
        assert N3 not in addresses(m)
        assert site_rlocs(m, Eid.name("n3")) == [N3B]


def test_a_re_registration_from_the_same_xtr_id_replaces_its_rle_member():
    """The Map-Servers merge per xTR-ID (RFC 8378 5.1.3): the moved member's
    new RLE entry replaces its old one rather than joining it."""
    net, members = decent_trio()
    net.advance(5.0)
    move(net, members[2], (N3B,))
    net.settle()
    group = members[0].config.group_eid
    assert group is not None
    entry = members[0].ms.db.get(group)
    assert entry is not None
    child = entry.children[3]
    assert [e.address for e in rle_entries(child.record.locators[0])] == [N3B]
    assert sorted(entry.children) == [1, 2, 3]


def test_an_itr_sending_to_the_moved_node_is_smrd_and_its_cache_follows():
    m = mesh()
    n1, n3 = m.nodes[0], m.nodes[2]
    packet = udp(eid4(1), eid4(3))
    out = m.send(0, packet)
    assert [r[0][0] for _, r in out] == [str(N3)]
    assert m.carry(out, N1) == [packet]  # n3 now knows n1 as a recent ITR
    move(m.net, n3, (N3B,))
    m.net.advance(1.0)
    assert [e.eid for _, e in n1.events(SmrReceived)] == [Eid.prefix("3.3.3.3/32")]
    entry = n1.cache.lookup(Eid.prefix("3.3.3.3/32"))
    assert entry is not None
    assert [s.locator.address for s in entry.locators] == [N3B]
    out = m.send(0, packet)
    assert [r[0][0] for _, r in out] == [str(N3B)]
    # n3 decapsulates from n1 at its new address and sends from it.
    assert m.carry(out, N1) == [packet]
    [(_, (_, src, _))] = m.send(2, udp(eid4(3), eid4(1)))
    assert src == 0
    # One more SMR round once the ITR's rate limit allows another.
    smrs = [t for t, d, r in sent(m.net, MapRequest, src=N3B) if r.smr]
    assert len(smrs) == 1
    m.net.advance(4.0)
    smrs = [t for t, d, r in sent(m.net, MapRequest, src=N3B) if r.smr]
    assert len(smrs) == 2
    assert len(n1.events(SmrReceived)) == 2
    assert [r[0][0] for _, r in m.send(0, packet)] == [str(N3B)]


def test_our_own_rloc_moving_to_a_peer_is_then_encapsulated_to():
    """A cached locator that named one of our RLOCs was never used; once
    that address is no longer ours it must be re-classified."""
    m = mesh()
    n1 = m.nodes[0]
    addr, mask = Eid.prefix("9.9.9.9/32").to_wire()
    n1.cache.install(
        Eid.prefix("9.9.9.9/32"), MapRecord(addr, mask, locators(N1), 3), "test", 0.0
    )
    assert m.send(0, udp(eid4(1), "9.9.9.9")) == []
    assert n1.counters["drop.own-rloc"] == 1
    move(m.net, n1, (IPv4Address("198.18.42.31"),))
    assert [r[0][0] for _, r in m.send(0, udp(eid4(1), "9.9.9.9"))] == [str(N1)]


def test_priority_and_weight_stay_with_an_address_that_stays():
    a, b, c = N1, N2, N3B
    cfg = decent_node_config(
        name="mn",
        rlocs=(a, b),
        group=GROUP,
        key=KEY,
        xtr_id=9,
        rloc_policy=((1, 30), (2, 70)),
    )
    node = Traced(cfg, nonce=nonces())

    def policy() -> list[tuple[object, int, int]]:
        mapping = node.database.get(Eid.name("mn"))
        assert mapping is not None
        return [(loc.address, loc.priority, loc.weight) for loc in mapping.locators]

    node.change_rlocs((b, c), 1.0)
    assert policy() == [(b, 2, 70), (c, 2, 70)]
    node.change_rlocs((a,), 2.0)
    assert policy() == [(a, 2, 70)]
    group = cfg.group_eid
    assert group is not None
    membership = node.database.get(group)
    assert membership is not None
    assert [e.address for e in rle_entries(membership.locators[0])] == [a]


def test_the_same_set_changes_nothing_and_an_unusable_set_is_refused():
    net, members = decent_trio()
    net.advance(5.0)
    n3 = members[2]
    n3.change_rlocs(iter((N3,)), net.now)
    assert n3.datagrams_to_send() == []
    assert n3.events(RlocsChanged) == []
    with pytest.raises(ValueError, match="needs an RLOC"):
        n3.change_rlocs((), net.now)
    with pytest.raises(ValueError, match="group's family"):
        n3.change_rlocs((V6,), net.now)
    assert n3.config.rlocs == (N3,)


def test_a_plain_etr_moves_its_mapping_at_its_map_server():
    t = lab()
    t.net.advance(2.0)
    new = IPv4Address("192.0.2.99")
    move(t.net, t.etr, (new,))
    t.net.settle()
    assert site_rlocs(t.ms, ETR_EID) == [new]
    assert t.etr.config.map_servers == ((MS_IP, 4342),)  # not ours: unchanged
    assert t.etr.ms.db.get(ETR_EID) is None  # it serves no site itself
    regs = [d for _, d, _ in sent(t.net, MapRegister, src=new)]
    assert regs
    assert all(d[0] != ETR_IP for d in regs)


def test_a_member_with_an_eid_no_local_site_allows_still_moves_it():
    other_iid = Eid.prefix("10.9.9.9/32", 7)
    cfg = decent_node_config(
        name="n3", rlocs=(N3,), group=GROUP, key=KEY, xtr_id=3, eids=(other_iid,)
    )
    node = Traced(cfg, nonce=nonces())
    node.change_rlocs((N3B,), 1.0)
    mapping = node.database.get(other_iid)
    assert mapping is not None
    assert [loc.address for loc in mapping.locators] == [N3B]
    assert node.ms.db.get(other_iid) is None
    assert node.ms.db.get(Eid.name("n3")) is not None


def test_a_cached_membership_that_does_not_name_us_is_left_alone():
    cfg = decent_node_config(name="n3", rlocs=(N3,), group=GROUP, key=KEY, xtr_id=3)
    node = Traced(cfg, nonce=nonces())
    group = cfg.group_eid
    assert group is not None
    addr, mask = group.to_wire()
    rle = Locator(Rle((RleEntry(N1, 128),)), 255, 0)
    record = MapRecord(addr, mask, (rle,), 3)
    before = node.cache.install(group, record, "map-notify", 0.0)
    node.change_rlocs((N3B,), 1.0)
    after = node.cache.db.get(group)
    assert after is before


def test_a_cached_membership_naming_us_names_our_new_rloc_and_keeps_its_ttl():
    cfg = decent_node_config(name="n3", rlocs=(N3,), group=GROUP, key=KEY, xtr_id=3)
    node = Traced(cfg, nonce=nonces())
    group = cfg.group_eid
    assert group is not None
    addr, mask = group.to_wire()
    rle = Locator(Rle((RleEntry(N1, 128), RleEntry(N3, 128))), 255, 0)
    node.cache.install(group, MapRecord(addr, mask, (rle,), 3), "map-notify", 0.0)
    node.change_rlocs((N3B,), 100.0)
    after = node.cache.db.get(group)
    assert after is not None
    assert after.expires == 180.0
    assert [e.address for e in rle_entries(after.record.locators[0])] == [N1, N3B]


def test_addresses_of_a_family_we_no_longer_have_are_dropped():
    old: tuple[IP, ...] = (N3, V6)
    new: tuple[IP, ...] = (N3B,)
    servers = ((N3, 4342), (V6, 4342), (N1, 4342), (N3B, 4342))
    assert _moved_addrs(servers, old, new) == ((N3B, 4342), (N1, 4342))
    name = DistinguishedName("rtr")
    rle = Rle((RleEntry(V6), RleEntry(N3), RleEntry(N3B), RleEntry(name)))
    wrapped = AfiList((Rle((RleEntry(N3),)),))
    locs = (
        Locator(rle),
        Locator(wrapped),
        Locator(N1, 5, 5),
        Locator(N3, 1, 10),
        Locator(V6, 2, 20, reachable=False),
    )
    moved = _moved_locators(locs, old, new)
    assert moved[0].address == Rle((RleEntry(N3B), RleEntry(name)))
    # An RLE inside an AFI list (our membership in lispers.net's form) too.
    rewrapped = Locator(AfiList((Rle((RleEntry(N3B),)),)))
    assert moved[1:] == (rewrapped, Locator(N1, 5, 5), Locator(N3B, 1, 10))


def test_a_node_config_without_a_group_moves_any_family():
    cfg = NodeConfig(
        rlocs=(N3,),
        xtr_id=1,
        database=(
            DatabaseMapping(ETR_EID, locators(N3)),
            # Someone else's RLOC (we register for a proxied site): it stays.
            DatabaseMapping(Eid.prefix("10.1.2.0/24"), locators(N1)),
        ),
        map_servers=((N1, 4342),),
        map_resolvers=((N3, 4342),),
        resolve_in_process=True,
    )
    node = Node(cfg, nonce=nonces())
    node.change_rlocs((V6,), 1.0)
    assert node.config.map_resolvers == ()
    mapping = node.database.get(ETR_EID)
    assert mapping is not None
    assert [loc.address for loc in mapping.locators] == [V6]
    proxied = node.database.get(Eid.prefix("10.1.2.0/24"))
    assert proxied is not None
    assert [loc.address for loc in proxied.locators] == [N1]
