"""The map-cache: slots that spread flows over locators, refreshes."""

from __future__ import annotations

from ipaddress import IPv4Address

from decent.peer.mapcache import CacheEntry, LocatorState
from decent.wire import Locator, MapRecord
from tests.peer.conftest import ETR_EID, Traced, itr_config, record


# ---------------------------------------------------------------- slots()
def states(*specs: tuple[int, int, bool]) -> CacheEntry:
    locs = [
        LocatorState(Locator(IPv4Address(f"192.0.2.{i}"), p, w, reachable=r))
        for i, (p, w, r) in enumerate(specs, start=1)
    ]
    rec = MapRecord(*ETR_EID.to_wire(), tuple(s.locator for s in locs))
    return CacheEntry(ETR_EID, rec, "map-reply", 0.0, 60.0, locs)


def picks(entry: CacheEntry, generation: int = 0, n: int = 1000) -> dict[str, int]:
    """How n consecutive flow hashes land, as the data plane picks them."""
    slots = entry.slots(generation)
    out: dict[str, int] = {}
    for h in range(n):
        key = str(slots[h % len(slots)].locator.address) if slots else "none"
        out[key] = out.get(key, 0) + 1
    return out


def test_slots_split_flows_by_weight_within_the_best_priority():
    entry = states((1, 30, True), (1, 70, True), (2, 100, True))
    slots = entry.slots(0)
    assert len(slots) == 100  # one slot per unit of weight
    assert picks(entry) == {"192.0.2.1": 300, "192.0.2.2": 700}


def test_slots_use_the_next_priority_only_when_the_best_is_gone():
    entry = states((1, 30, True), (1, 70, True), (2, 100, True))
    entry.locators[0].up = False
    assert picks(entry, 1) == {"192.0.2.2": 1000}  # still a priority-1 one
    entry.locators[1].lsb_up = False
    assert picks(entry, 2) == {"192.0.2.3": 1000}
    entry.locators[0].up = True
    assert picks(entry, 3) == {"192.0.2.1": 1000}


def test_slots_are_rebuilt_only_when_the_generation_moves():
    entry = states((1, 50, True), (2, 50, True))
    before = entry.slots(7)
    entry.locators[0].up = False
    assert entry.slots(7) is before  # the caller did not say anything changed
    assert {s.locator.priority for s in entry.slots(8)} == {2}


def test_slots_never_use_priority_255_or_an_unreachable_rloc():
    entry = states((255, 100, True), (1, 100, False), (5, 100, True))
    assert picks(entry) == {"192.0.2.3": 1000}
    assert picks(states((255, 100, True), (1, 1, False))) == {"none": 1000}


def test_slots_spread_evenly_when_all_weights_are_zero():
    assert picks(states((1, 0, True), (1, 0, True))) == {
        "192.0.2.1": 500,
        "192.0.2.2": 500,
    }


def test_slots_skip_a_locator_marked_down():
    entry = states((1, 50, True), (1, 50, True))
    entry.locators[0].up = False
    assert picks(entry) == {"192.0.2.2": 1000}


def test_cache_refresh_keeps_locator_state_and_counters():
    itr = Traced(itr_config())
    rec = record("10.1.1.0/24", "192.0.2.10", "192.0.2.11")
    entry = itr.cache.install(ETR_EID, rec, "map-reply", 0.0)
    entry.locators[1].up, entry.locators[1].rtt = False, 0.5
    entry.locators[1].missed = 3
    entry.packets = 7
    again = itr.cache.install(ETR_EID, rec, "map-reply", 30.0)
    assert (again.locators[1].up, again.locators[1].rtt) == (False, 0.5)
    assert again.locators[1].missed == 3
    assert (again.created, again.expires, again.packets) == (0.0, 210.0, 7)
