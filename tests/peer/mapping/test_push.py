"""LISP-Decent push mode: members merge into one (0/0, G) RLE (RFC 9962 4,
RFC 8378 5), leave gracefully, or age out when they vanish."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from decent.peer.events import MergedSetChanged, RegistrationExpired
from decent.peer.mapserver import rle_entries
from decent.wire import Eid
from tests.peer.conftest import DECENT_IPS, Traced, decent_trio


def ms_members(node: Traced) -> list[IPv4Address | IPv6Address]:
    """Members in the node's own Map-Server entry for the group EID."""
    eid = node.config.group_eid
    assert eid is not None
    entry = node.ms.db.get(eid)
    return [] if entry is None else entry.members()  # kept sorted by the merge


def registered(node: Traced) -> set[str]:
    return {str(e) for e, _ in node.ms.db.items()}


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
