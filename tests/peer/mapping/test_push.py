"""LISP-Decent push mode: membership, replication, group lookups, merged RLE.

Members merge into one (0/0, G) RLE (RFC 9962 4, RFC 8378 5), leave
gracefully or age out; the periodic group lookup heals lost Map-Notifies."""

from __future__ import annotations

import dataclasses
import itertools
from ipaddress import IPv4Address, IPv6Address

import pytest

from decent.peer.config import NodeConfig
from decent.peer.events import MapCacheUpdated, MergedSetChanged, RegistrationExpired
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import (
    DECENT_CONTROL_IID,
    AfiList,
    DataHeader,
    DecodeError,
    DistinguishedName,
    Eid,
    Locator,
    MapNotify,
    MapRecord,
    MapReply,
    MapRequest,
    Rle,
    RleEntry,
    UdpPacket,
    decode,
    encapsulate,
    rle_entries,
)
from tests.peer.attack import EVIL, evil_register
from tests.peer.conftest import (
    DECENT_IPS,
    GROUP,
    KEY,
    V6,
    Traced,
    ctl,
    decent_trio,
    lone_member,
    ms_config,
    nonces,
    record,
)
from tests.peer.simnet import Addr, SimNet

G = IPv4Address("233.252.1.1")
IPS = [IPv4Address(f"198.18.46.{i}") for i in (1, 2, 3)]


def ms_members(node: Traced) -> list[IPv4Address | IPv6Address]:
    """Members in the node's own Map-Server entry for the group EID."""
    eid = node.config.group_eid
    assert eid is not None
    entry = node.ms.db.get(eid)
    return [] if entry is None else entry.members()  # kept sorted by the merge


def registered(node: Traced) -> set[str]:
    return {str(e) for e, _ in node.ms.db.items()}


# ---------------------------------------------------------------- membership
def test_three_members_converge_on_one_three_member_rle():
    net, nodes = decent_trio()
    net.advance(10.0)
    everything = {
        "[0](0.0.0.0/0, 233.252.1.1/32)",
        "[0]'n1'",
        "[0]'n2'",
        "[0]'n3'",
    }
    for node in nodes:
        assert node.membership() == list(DECENT_IPS)
        assert ms_members(node) == list(DECENT_IPS)
        assert registered(node) == everything
        entry = node.ms.db.get(node.config.group_eid)  # type: ignore[arg-type]
        assert entry is not None
        assert sorted(entry.children) == [1, 2, 3]  # one child per xTR-ID
        # The merged record is one RLE of level-128 entries, no duplicates.
        [rle] = entry.record.locators
        assert [(e.address, e.level) for e in rle_entries(rle)] == [
            (ip, 128) for ip in DECENT_IPS
        ]
    # Every member's Map-Server announced each change of the merged set.
    assert nodes[0].events(MergedSetChanged)[-1][1].members == 3


def test_graceful_leave_leaves_two_members_everywhere():
    net, nodes = decent_trio()
    net.advance(100.0)
    leaver = nodes[2]
    leaver.deregister(net.now)
    net.settle()
    net.remove(leaver)
    net.advance(1.0)
    for node in nodes[:2]:
        assert node.membership() == list(DECENT_IPS[:2])
        assert ms_members(node) == list(DECENT_IPS[:2])
        assert "[0]'n3'" not in registered(node)
    # And it stays that way: nothing of n3 was left to expire later.
    net.advance(600.0)
    for node in nodes[:2]:
        assert node.membership() == list(DECENT_IPS[:2])
        assert node.events(RegistrationExpired) == []


def test_a_killed_member_ages_out_after_the_ttl():
    net, nodes = decent_trio()
    net.advance(100.0)
    victim = nodes[2]
    net.remove(victim)
    crash = net.now
    net.advance(100.0)
    assert nodes[0].membership() == list(DECENT_IPS)  # not yet: TTL is 3 min
    net.advance(200.0)
    for node in nodes[:2]:
        assert node.membership() == list(DECENT_IPS[:2])
        assert ms_members(node) == list(DECENT_IPS[:2])
        expired = node.events(RegistrationExpired)
        assert {str(e.eid) for _, e in expired} == {
            "[0](0.0.0.0/0, 233.252.1.1/32)",
            "[0]'n3'",
        }
        # Exactly one TTL (180 s) after n3's last registration before the crash.
        assert all(crash - 60.0 + 180.0 < t <= crash + 180.0 for t, _ in expired)


def test_a_member_that_comes_back_rejoins():
    net, nodes = decent_trio()
    net.advance(100.0)
    net.partition(DECENT_IPS[0], DECENT_IPS[2])
    net.partition(DECENT_IPS[1], DECENT_IPS[2])
    net.advance(400.0)
    assert nodes[0].membership() == list(DECENT_IPS[:2])
    net.heal()
    net.advance(120.0)
    for node in nodes:
        assert node.membership() == list(DECENT_IPS)


def test_member_eids_are_held_by_every_member():
    net, nodes = decent_trio(eids=3)
    net.advance(10.0)
    want = {str(Eid.prefix(f"10.{i}.0.{j}/32")) for i in (1, 2, 3) for j in range(3)}
    for node in nodes:
        assert want <= registered(node)


def test_a_node_without_a_group_has_no_membership():
    assert Traced(ms_config()).membership() == []


def test_membership_ignores_rle_entries_that_are_not_addresses():
    net, nodes = decent_trio()
    net.advance(5.0)
    node = nodes[0]
    eid = node.config.group_eid
    assert eid is not None
    rle = Rle(
        (RleEntry(DistinguishedName("nameless")), RleEntry(IPv4Address("198.18.42.99")))
    )
    wrapped = Locator(AfiList((IPv4Address("198.18.42.98"), rle)), 255, 0)
    node.cache.install(eid, MapRecord(*eid.to_wire(), (wrapped,)), "map-notify", 5.0)
    assert IPv4Address("198.18.42.99") in node.membership()
    assert len(node.membership()) == 4
    assert rle_entries(Locator(AfiList((IPv4Address("198.18.42.98"),)))) == []


def test_a_group_node_without_a_database_only_listens():
    listener = Traced(
        NodeConfig(
            rlocs=(DECENT_IPS[2],),
            xtr_id=9,
            group=GROUP,
            sites=lone_member().config.sites,
        )
    )
    member = lone_member()
    member.handle_timer(0.0)
    for data, dest in member.datagrams_to_send():
        if dest == ctl(DECENT_IPS[0]):  # the copy to its own Map-Server
            listener.receive_datagram(data, dest, 0.0)
    assert listener.membership() == [DECENT_IPS[0]]
    assert listener.get_timer() is not None


# ---------------------------------------------------------------- replication
def test_multicast_mode_sends_group_registers_natively_to_g():
    config = lone_member().config
    node = Node(dataclasses.replace(config, group_mode="multicast"), nonce=nonces())
    node.handle_timer(0.0)
    dests = {dest for _, dest in node.datagrams_to_send()}
    assert (GROUP, 4342) in dests
    assert not any(port == 4341 for _, port in dests)


def test_no_replication_without_an_rloc_of_the_groups_family():
    config = lone_member().config
    v6_group = IPv6Address("ff0e::1")
    v6 = dataclasses.replace(config, group=v6_group, map_servers=((v6_group, 4342),))
    node = Node(v6, nonce=nonces())
    node.handle_timer(0.0)
    assert not any(port == 4341 for _, (_, port) in node.datagrams_to_send())


def replicated(payload: bytes, inner_src: IPv4Address, dst: IPv4Address) -> bytes:
    inner = UdpPacket(inner_src, dst, 4342, 4342, payload).encode()
    return encapsulate(DataHeader(nonce=1, instance_id=DECENT_CONTROL_IID), inner)


def test_replicated_control_is_taken_only_from_members_as_themselves():
    net, nodes = decent_trio()
    net.run(120.0)
    n1 = nodes[0]
    reg = evil_register((record("10.66.0.1/32", str(DECENT_IPS[1])),), 5, xtr_id=2)
    data_port = (DECENT_IPS[0], 4341)
    n1.datagrams_to_send()
    # Before: processed as coming from its inner source, so a spoofed member
    # showed as last registerer and the Map-Notify went to it.
    for outer in (EVIL, DECENT_IPS[2]):  # a non-member, then a member (n3)
        n1.receive_datagram(
            replicated(reg, DECENT_IPS[1], GROUP), (outer, 4341), 200.0, data_port
        )
    assert n1.counters["drop.replicated-spoofed"] == 2
    # A non-member as itself: dropped, and never taken later.
    own = evil_register((record("10.66.0.1/32", str(EVIL)),), 5)
    n1.receive_datagram(replicated(own, EVIL, GROUP), (EVIL, 4341), 200.0, data_port)
    assert n1.counters["drop.replicated-not-member"] == 1
    net.run(net.now + 600.0)
    assert n1.ms.db.get(Eid.prefix("10.66.0.1/32")) is None
    assert n1.counters["replicated.released"] == 0
    assert n1.soft_state_sizes()["unvouched_replicated"] == 0
    # Nothing went to the spoofed address on the attacker's behalf.
    assert not [d for d, dst in n1.datagrams_to_send() if dst[0] == DECENT_IPS[1]]


def test_a_new_member_replicating_before_it_is_announced_is_heard_once_it_is():
    net, nodes = decent_trio()
    net.run(120.0)
    n1 = nodes[0]
    newcomer = IPv4Address("198.18.42.14")
    reg = evil_register((record("10.44.0.1/32", str(newcomer)),), 5, xtr_id=44)
    data_port = (DECENT_IPS[0], 4341)
    n1.receive_datagram(
        replicated(reg, newcomer, GROUP), (newcomer, 4341), net.now, data_port
    )
    assert n1.ms.db.get(Eid.prefix("10.44.0.1/32")) is None
    # Then a member's Map-Notify (RFC 8378 5.3) names the newcomer.
    group_eid = n1.config.group_eid
    assert group_eid is not None
    everyone = (*DECENT_IPS, newcomer)
    rle = Locator(Rle(tuple(RleEntry(ip, 128) for ip in everyone)), 255, 0, 1, 100)
    notify = MapNotify(99, (MapRecord(*group_eid.to_wire(), (rle,), 3),), 0)
    n1.receive_datagram(notify.signed(KEY).encode(), ctl(DECENT_IPS[1]), net.now)
    assert n1.counters["replicated.released"] == 0  # on the next timer turn
    n1.handle_timer(net.now)
    assert n1.counters["replicated.released"] == 1
    assert n1.ms.db.get(Eid.prefix("10.44.0.1/32")) is not None


def test_what_not_yet_announced_senders_replicate_is_held_only_up_to_the_limit():
    # Members that start together replicate to each other before the
    # Map-Notify naming them arrives: held, but [limits]
    # unvouched_replicated bounds what a flood from strangers can take.
    net, nodes = decent_trio()
    net.run(120.0)
    n1 = nodes[0]
    limit = n1.config.limits.unvouched_replicated
    assert limit == 1_024
    data_port = (DECENT_IPS[0], 4341)
    for i in range(limit + 100):
        stranger = IPv4Address(f"198.18.90.{i % 250}")
        reg = evil_register((record("10.45.0.1/32", str(stranger)),), i + 1)
        n1.receive_datagram(
            replicated(reg, stranger, GROUP), (stranger, 4341), net.now, data_port
        )
    assert n1.soft_state_sizes()["unvouched_replicated"] == limit
    assert n1.counters["drop.replicated-not-member"] == limit + 100
    net.run(net.now + 70.0)  # held 5 s, gone at the next sweep
    assert n1.soft_state_sizes()["unvouched_replicated"] == 0


# ---------------------------------------------------------------- group lookup
def _no_notifies(data: bytes, src: Addr, dst: Addr) -> bool:
    try:
        return isinstance(decode(data), MapNotify)
    except DecodeError:
        return False


def _mesh(lookup: float | None) -> tuple[SimNet, list[Node]]:
    net = SimNet(seed=11, drop=_no_notifies)
    counter = itertools.count(1)
    nodes = []
    for i, ip in enumerate(IPS):
        cfg = decent_node_config(
            name=f"n{i + 1}",
            rlocs=(ip,),
            group=G,
            key=b"k",
            xtr_id=i + 1,
            seeds=(IPS[0],) if i else (),
            group_lookup_interval=lookup,
        )
        node = Node(cfg, nonce=lambda: next(counter))
        nodes.append(node)
        net.add(node, (ip, 4342), (ip, 4341))
    return net, nodes


@pytest.mark.parametrize("lookup", [None, 10.0])
def test_group_lookup_repairs_membership_without_map_notifies(
    lookup: float | None,
) -> None:
    net, nodes = _mesh(lookup)
    net.advance(25)  # well inside the 60 s registration period
    knows_all = [set(n.membership()) == set(IPS) for n in nodes]
    if lookup is None:
        # Only the seed hears everyone; n2 and n3 never learn of each other.
        assert knows_all == [True, False, False]
    else:
        assert knows_all == [True, True, True]
        names = {str(e) for e, _ in nodes[2].ms.db.items() if e.is_name}
        assert names == {"[0]'n1'", "[0]'n2'", "[0]'n3'"}
        assert nodes[1].counters["tx.map-request"] >= 2


def test_group_lookup_asks_peers_in_turn_and_installs_only_the_group():
    node = lone_member(seeds=DECENT_IPS[1:], group_lookup_interval=30.0)
    node.datagrams_to_send()
    asked = []
    for t in (30.0, 60.0, 90.0):
        node.handle_timer(t)
        for data, dest in node.datagrams_to_send():
            msg = decode(data)
            if isinstance(msg, MapRequest):
                asked.append((dest[0], msg.nonce))
    assert [ip for ip, _ in asked] == [DECENT_IPS[1], DECENT_IPS[2], DECENT_IPS[1]]
    eid = node.config.group_eid
    assert eid is not None
    nonce = asked[-1][1]
    rle = Locator(Rle(tuple(RleEntry(ip, 128) for ip in DECENT_IPS)), 255, 0)
    other = record("10.1.1.0/24", "192.0.2.10")
    empty = MapRecord(*eid.to_wire(), (), 1)
    answer = MapReply(nonce, (other, empty, MapRecord(*eid.to_wire(), (rle,), 3)))
    node.receive_datagram(answer.encode(), ctl(DECENT_IPS[1]), 91.0)
    assert node.membership() == list(DECENT_IPS)
    assert [e.eid for _, e in node.events(MapCacheUpdated)] == [eid]


def test_group_lookup_without_a_reachable_peer_sends_nothing():
    alone = lone_member(group_lookup_interval=30.0)
    other_family = lone_member(seeds=(V6,), group_lookup_interval=30.0)
    for node in (alone, other_family):
        node.datagrams_to_send()
        node.handle_timer(30.0)
        assert not [
            d for d, _ in node.datagrams_to_send() if isinstance(decode(d), MapRequest)
        ]
        assert node.get_timer() is not None
