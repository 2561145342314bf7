"""Push-mode soaks on the virtual clock: members end identical, nothing grows.

Three Decent members with 1000 EIDs each for a day, and a lossy, reordering
network for a few hours. They must end with identical registration
databases and no growth in timers or soft state."""

from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv6Address

import pytest

from decent.wire import rle_entries
from tests.peer.conftest import DECENT_IPS, HOUR, Traced, decent_trio


def database(node: Traced) -> dict[str, frozenset[str]]:
    """EID -> the RLOCs registered for it (RLE members for the group)."""
    out = {}
    for eid, entry in node.ms.db.items():
        rlocs: set[str] = set()
        for loc in entry.record.locators:
            entries = rle_entries(loc)
            addrs = [e.address for e in entries] if entries else [loc.address]
            rlocs.update(
                str(a) for a in addrs if isinstance(a, IPv4Address | IPv6Address)
            )
        out[str(eid)] = frozenset(rlocs)
    return out


def assert_identical(nodes: list[Traced], eids_each: int) -> None:
    first = database(nodes[0])
    assert len(first) == 1 + 3 + 3 * eids_each  # group, names, EIDs
    for node in nodes[1:]:
        assert database(node) == first
    for node in nodes:
        assert node.membership() == list(DECENT_IPS)
    for i, ip in enumerate(DECENT_IPS, start=1):
        assert first[f"[0]10.{i}.0.7/32"] == {str(ip)}


@pytest.mark.slow
def test_a_day_with_1000_eids_each_ends_identical_without_growth():
    # Registration every 10 min with a 30 min TTL: the default 1:3 ratio of
    # period to lifetime, at a pace that fits a day into the test budget.
    started = time.perf_counter()
    net, nodes = decent_trio(eids=1000, register_interval=600.0, ttl=30, keep=False)
    net.run(2 * HOUR)
    assert_identical(nodes, 1000)
    early = [node.soft_state_sizes() for node in nodes]
    flight = []
    for hour in range(3, 25):
        net.run(hour * HOUR)
        flight.append(net.in_flight)
    assert_identical(nodes, 1000)
    for before, node in zip(early, nodes, strict=True):
        after = node.soft_state_sizes()
        assert {k: v for k, v in after.items() if v > before[k]} == {}
        assert after["pending_registers"] == after["pending_notifies"] == 0
        assert node.counters["registration.expired"] == 0
        # Nothing refused, but the late ack of a notify superseded at start-up.
        refused = {k for k in node.counters if k.startswith(("drop.", "reject."))}
        assert refused <= {"drop.unsolicited-notify-ack"}
    assert max(flight) < 100
    print(f"24 h soak: {time.perf_counter() - started:.1f} s wall")


def test_lossy_reordering_network_still_ends_identical():
    net, nodes = decent_trio(
        seed=7, eids=100, keep=False, loss=0.05, reorder=0.2, duplicate=0.02
    )
    net.run(3 * HOUR)
    early = [node.soft_state_sizes() for node in nodes]
    net.run(6 * HOUR)
    assert net.lost > 0
    assert net.duplicated > 0
    # Loss stops: one registration period later every member agrees.
    net.loss = net.reorder = net.duplicate = 0.0
    net.run(6 * HOUR + 61.0)
    assert_identical(nodes, 100)
    for before, node in zip(early, nodes, strict=True):
        after = node.soft_state_sizes()
        for key in ("timers", "registrations", "pending_registers", "map_cache"):
            assert after[key] <= before[key] + 2, key
