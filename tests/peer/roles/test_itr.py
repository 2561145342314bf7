"""ITR behaviour: Map-Request retransmission and hold-down (RFC 9301 5.3),
nonce matching of Map-Replies, SMRs (6.1) and RLOC-probing (7.1)."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address
from typing import Any

import pytest

from decent.peer.config import DatabaseMapping, NodeConfig
from decent.peer.events import (
    LocatorStateChanged,
    MapCacheCleared,
    MapCacheExpired,
    MapRequestFailed,
    MessageDropped,
    SmrReceived,
)
from decent.peer.mapcache import CacheEntry, LocatorState
from decent.wire import (
    DistinguishedName,
    Eid,
    EncapsulatedControlMessage,
    Locator,
    MapRecord,
    MapRegister,
    MapReply,
    MapRequest,
    Rle,
    RleEntry,
    decode,
)
from tests.peer.conftest import (
    ETR2_IP,
    ETR_EID,
    ETR_IP,
    ITR_IP,
    LONG_TTL,
    MS_IP,
    Lab,
    Raw,
    Traced,
    attach,
    ctl,
    etr_config,
    itr_config,
    lab,
    locators,
    record,
    request_msg,
    sent,
    state,
)
from tests.peer.simnet import SimNet

HOST = Eid.prefix("10.1.1.5/32")
NEW_RLOC = IPv4Address("192.0.2.99")


def requests_from(net: SimNet, ip: IPv4Address) -> list[tuple[float, MapRequest]]:
    return [(t, m) for t, _, m in sent(net, MapRequest, src=ip)]


# ---------------------------------------------------------------- retransmission
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_resolution_succeeds_under_30_percent_loss(seed):
    t = lab(seed=seed, loss=0.3)
    t.net.advance(60.0)  # the ETR's M-bit retransmissions get it registered
    assert ETR_EID in t.ms.ms.db
    t.itr.request(HOST, t.net.now)
    t.net.advance(30.0)
    entry = t.itr.cache.lookup(HOST)
    assert entry is not None
    assert [s.locator.address for s in entry.locators] == [ETR_IP]
    asked = [at for at, _ in requests_from(t.net, ITR_IP)]
    assert 1 <= len(asked) <= 10
    # RFC 9301 5.3: at most one Map-Request per second for the prefix.
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(asked))
    assert t.itr.soft_state_sizes()["pending_requests"] == 0
    assert t.itr.soft_state_sizes()["request_nonces"] == 0


def test_repeated_cache_misses_do_not_add_requests():
    net = SimNet(record=True)
    itr = Traced(itr_config())
    attach(net, itr)  # the resolver does not exist
    for step in range(30):
        itr.request(HOST, float(step) / 10)  # ten packets a second
        net.run(float(step) / 10)
    asked = [at for at, _ in requests_from(net, ITR_IP)]
    assert asked == [0.0, 1.0, 2.0]


def test_ten_unanswered_requests_start_a_30s_hold_down():
    net = SimNet(record=True)
    itr = Traced(itr_config())
    attach(net, itr)
    itr.request(HOST, 0.0)
    net.advance(11.0)
    asked = [at for at, _ in requests_from(net, ITR_IP)]
    assert asked == [float(i) for i in range(10)]
    assert itr.events(MapRequestFailed) == [(10.0, MapRequestFailed(HOST))]
    assert itr.counters["request.failed"] == 1
    for now in (12.0, 25.0, 39.9):  # hold-down: cache misses send nothing
        net.run(now)
        itr.request(HOST, now)
    net.run(39.95)
    assert len(requests_from(net, ITR_IP)) == 10
    net.run(41.0)
    itr.request(HOST, 41.0)  # after the hold-down, asking starts again
    net.run(41.5)
    assert [at for at, _ in requests_from(net, ITR_IP)][10:] == [41.0]
    assert itr.soft_state_sizes()["pending_requests"] == 1


def test_requests_rotate_over_the_map_resolvers():
    net = SimNet(record=True)
    second = IPv4Address("192.0.2.2")
    itr = Traced(itr_config(map_resolvers=(ctl(MS_IP), ctl(second))))
    attach(net, itr)
    itr.request(HOST, 0.0)
    net.advance(3.5)
    dests = [d[0] for _, d, _ in sent(net, MapRequest, src=ITR_IP)]
    assert dests == [MS_IP, second, MS_IP, second]


def test_request_without_a_map_resolver_is_counted():
    itr = Traced(NodeConfig(rlocs=(ITR_IP,), xtr_id=1))
    itr.request(HOST, 0.0)
    assert itr.counters["drop.no-map-resolver"] == 1
    assert itr.datagrams_to_send() == []


def test_requests_are_ecm_encapsulated_to_the_resolver():
    net = SimNet(record=True)
    itr = Traced(itr_config())
    attach(net, itr)
    itr.request(HOST, 0.0)
    itr.request(Eid.name("somebody"), 0.0)
    net.advance(0.5)
    ecms = [decode(d) for _, s, _, d in net.trace if s[0] == ITR_IP]
    assert all(isinstance(m, EncapsulatedControlMessage) for m in ecms)
    inner_dsts = [m.inner_dst for m in ecms]  # type: ignore[union-attr]
    # The inner destination is the EID when it is an address, else the MR.
    assert inner_dsts == [IPv4Address("10.1.1.5"), MS_IP]


# ---------------------------------------------------------------- nonce matching
def itr_with_fake_resolver() -> tuple[SimNet, Traced, Raw]:
    net = SimNet(record=True)
    itr = Traced(itr_config())
    resolver = Raw()
    attach(net, itr)
    net.add(resolver, ctl(MS_IP))
    return net, itr, resolver


def positive(nonce: int, *rlocs: str, eid: str = "10.1.1.0/24") -> bytes:
    return MapReply(nonce, (record(eid, *rlocs),)).encode()


def test_unsolicited_map_reply_is_dropped_and_changes_nothing():
    net, itr, resolver = itr_with_fake_resolver()
    before = state(itr)
    resolver.out.append((positive(0xDEAD, "203.0.113.1"), ctl(ITR_IP)))
    net.advance(0.1)
    assert itr.counters["drop.unsolicited-map-reply"] == 1
    assert itr.events(MessageDropped) == [
        (0.001, MessageDropped(ctl(MS_IP), "unsolicited-map-reply"))
    ]
    assert state(itr) == before


def test_map_reply_with_a_mismatched_nonce_is_dropped():
    net, itr, resolver = itr_with_fake_resolver()
    itr.request(HOST, 0.0)
    net.advance(0.1)
    [ecm] = resolver.messages()
    assert isinstance(ecm, EncapsulatedControlMessage)
    nonce = ecm.message.nonce
    before = state(itr)
    resolver.out.append((positive(nonce + 1, "203.0.113.1"), ctl(ITR_IP)))
    net.advance(0.1)
    assert itr.counters["drop.unsolicited-map-reply"] == 1
    assert state(itr) == before
    resolver.out.append((positive(nonce, "192.0.2.10"), ctl(ITR_IP)))
    net.advance(0.1)
    assert itr.cache.lookup(HOST) is not None
    # A second copy of the right reply is no longer solicited.
    resolver.out.append((positive(nonce, "203.0.113.1"), ctl(ITR_IP)))
    net.advance(0.1)
    assert itr.counters["drop.unsolicited-map-reply"] == 2
    entry = itr.cache.lookup(HOST)
    assert entry is not None
    assert entry.locators[0].locator.address == ETR_IP


def test_late_reply_to_an_earlier_attempt_is_accepted():
    net, itr, resolver = itr_with_fake_resolver()
    itr.request(HOST, 0.0)
    net.advance(2.5)  # three attempts, three nonces
    nonces = [m.message.nonce for m in resolver.messages()]  # type: ignore[attr-defined]
    assert len(set(nonces)) == 3
    resolver.out.append((positive(nonces[0], "192.0.2.10"), ctl(ITR_IP)))
    net.advance(5.0)
    assert itr.cache.lookup(HOST) is not None
    assert len(resolver.messages()) == 3  # and the retransmissions stopped


def test_reply_with_an_unusable_record_changes_nothing():
    net, itr, resolver = itr_with_fake_resolver()
    itr.request(HOST, 0.0)
    net.advance(0.1)
    nonce = resolver.messages()[0].message.nonce  # type: ignore[attr-defined]
    bad = MapRecord(Rle((RleEntry(ETR_IP, 128),)), 0, locators("192.0.2.10"))
    reply = MapReply(nonce, (record("10.1.1.0/24", "192.0.2.10"), bad))
    before = state(itr)
    resolver.out.append((reply.encode(), ctl(ITR_IP)))
    net.advance(0.1)
    assert itr.counters["drop.unusable-field"] == 1
    assert state(itr) == before


def test_negative_reply_is_cached_and_expires_with_its_ttl():
    net, itr, resolver = itr_with_fake_resolver()
    itr.request(HOST, 0.0)
    net.advance(0.1)
    nonce = resolver.messages()[0].message.nonce  # type: ignore[attr-defined]
    neg = MapRecord(*Eid.prefix("10.1.0.0/23").to_wire(), (), 1, 2)
    resolver.out.append((MapReply(nonce, (neg,)).encode(), ctl(ITR_IP)))
    net.advance(1.0)
    entry = itr.cache.lookup(HOST)
    assert entry is not None
    assert entry.negative
    itr.request(HOST, net.now)  # cached, even though negative
    net.advance(70.0)
    assert itr.cache.lookup(HOST) is None
    [(at, _)] = itr.events(MapCacheExpired)
    assert at == pytest.approx(60.101)
    assert len(resolver.messages()) == 1


def test_ttl_zero_record_removes_the_cached_mapping():
    net, itr, resolver = itr_with_fake_resolver()
    for host, records in (
        (HOST, (record("10.1.1.0/24", "192.0.2.10"),)),
        (
            Eid.prefix("10.1.2.5/32"),
            (record("10.1.2.0/24", "192.0.2.10"), record("10.1.1.0/24", ttl=0)),
        ),
    ):
        itr.request(host, net.now)
        net.advance(0.1)
        nonce = resolver.messages()[-1].message.nonce  # type: ignore[attr-defined]
        resolver.out.append((MapReply(nonce, records).encode(), ctl(ITR_IP)))
        net.advance(0.1)
    # RFC 9301 5.4: a record TTL of 0 removes the mapping at once.
    assert itr.cache.lookup(HOST) is None
    assert [e for _, e in itr.events(MapCacheExpired)] == [MapCacheExpired(ETR_EID)]
    assert itr.soft_state_sizes()["map_cache"] == 1
    assert itr.timer_count() == 2  # the sweep and the remaining entry's expiry


# ---------------------------------------------------------------- SMR
def resolved_lab(**kw: Any) -> Lab:
    t = lab(**kw)
    t.net.advance(1.0)
    t.itr.request(HOST, t.net.now)
    t.net.advance(1.0)
    assert t.itr.cache.lookup(HOST) is not None
    t.net.trace.clear()
    return t


def test_smr_makes_the_itr_re_resolve_through_its_resolver():
    t = resolved_lab()
    t.etr.note_itr(ETR_EID, ITR_IP, t.net.now)  # the ITR sent it traffic
    t.etr.set_locators(ETR_EID, locators(NEW_RLOC), t.net.now)
    t.net.advance(1.0)
    [(_, dest, smr)] = sent(t.net, MapRequest, src=ETR_IP)
    assert smr.smr
    assert dest == ctl(ITR_IP)
    # The SMR-invoked request (s bit) goes to the resolver, not the ETR.
    [(_, dest, again)] = sent(t.net, MapRequest, src=ITR_IP)
    assert again.smr_invoked
    assert dest == ctl(MS_IP)
    entry = t.itr.cache.lookup(HOST)
    assert entry is not None
    assert [s.locator.address for s in entry.locators] == [NEW_RLOC]
    assert [e for _, e in t.itr.events(SmrReceived)] == [
        SmrReceived(ETR_EID, ctl(ETR_IP))
    ]
    assert t.itr.counters["drop.smr-rate-limited"] == 0


def test_itrs_that_asked_the_etr_directly_are_smrd():
    t = resolved_lab(etr={"mapping": {"proxy_reply": False}})
    # The ETR answered the forwarded request itself, so it knows the ITR.
    # (It stays the first RLOC, where the Map-Server forwards requests.)
    t.etr.set_locators(ETR_EID, locators(ETR_IP, NEW_RLOC), t.net.now)
    t.net.advance(1.0)
    assert [d for _, d, m in sent(t.net, MapRequest, src=ETR_IP) if m.smr] == [
        ctl(ITR_IP)
    ]
    entry = t.itr.cache.lookup(HOST)
    assert entry is not None
    assert [s.locator.address for s in entry.locators] == [ETR_IP, NEW_RLOC]


def test_itrs_not_seen_within_the_window_are_not_smrd():
    t = resolved_lab()
    t.etr.note_itr(ETR_EID, ITR_IP, t.net.now)
    t.net.advance(61.0)
    t.etr.set_locators(ETR_EID, locators(NEW_RLOC), t.net.now)
    t.net.advance(1.0)
    assert not [m for _, _, m in sent(t.net, MapRequest, src=ETR_IP) if m.smr]


def test_smr_for_an_uncached_eid_is_ignored():
    t = resolved_lab()
    peer = Raw()
    t.net.add(peer, ctl(IPv4Address("192.0.2.50")))
    smr = request_msg("10.7.7.0/24", IPv4Address("192.0.2.50"), smr=True)
    peer.out.append((smr.encode(), ctl(ITR_IP)))
    t.net.advance(1.0)
    assert t.itr.counters["drop.smr-not-cached"] == 1
    assert sent(t.net, MapRequest, src=ITR_IP) == []


def test_smrs_are_rate_limited_to_one_per_3s_per_prefix():
    t = resolved_lab()
    peer = Raw()
    t.net.add(peer, ctl(IPv4Address("192.0.2.50")))
    smr = request_msg("10.1.1.0/24", IPv4Address("192.0.2.50"), smr=True).encode()
    for _ in range(2):
        peer.out.append((smr, ctl(ITR_IP)))
        t.net.advance(1.0)
    assert t.itr.counters["drop.smr-rate-limited"] == 1
    assert len(sent(t.net, MapRequest, src=ITR_IP)) == 1
    t.net.advance(1.5)
    peer.out.append((smr, ctl(ITR_IP)))
    t.net.advance(1.0)
    assert len(sent(t.net, MapRequest, src=ITR_IP)) == 2


def test_changed_mapping_retransmissions_carry_the_new_locators():
    net = SimNet(record=True)
    etr = Traced(etr_config(register_interval=3600.0, mapping=LONG_TTL))
    attach(net, etr)  # no Map-Server: registrations go unanswered
    net.advance(2.0)
    etr.set_locators(ETR_EID, locators(NEW_RLOC), net.now)
    net.advance(30.0)
    after = [m for t, _, m in sent(net, MapRegister) if t >= 2.0]
    assert after
    for reg in after:
        assert [loc.address for loc in reg.records[0].locators] == [NEW_RLOC]


# ---------------------------------------------------------------- RLOC probing
def probing_lab() -> tuple[Lab, Traced]:
    """The ETR's mapping has two RLOCs; a second ETR node owns the second."""
    t = lab(itr={"probe_interval": 10.0})
    mapping = DatabaseMapping(ETR_EID, locators(ETR_IP, ETR2_IP))
    t.etr.database.insert(ETR_EID, mapping)
    etr2 = Traced(NodeConfig(rlocs=(ETR2_IP,), xtr_id=2, database=(mapping,)))
    attach(t.net, etr2)
    t.net.advance(1.0)
    t.itr.request(HOST, t.net.now)
    t.net.advance(1.0)
    entry = t.itr.cache.lookup(HOST)
    assert entry is not None
    assert [s.locator.address for s in entry.locators] == [ETR_IP, ETR2_IP]
    return t, etr2


def test_probes_go_to_each_rloc_and_replies_mark_it_up_with_an_rtt():
    t, _ = probing_lab()
    t.net.advance(9.0)  # the first probe round at t=10
    probes = [(d, m) for _, d, m in sent(t.net, MapRequest, src=ITR_IP) if m.probe]
    assert sorted(d for d, _ in probes) == [ctl(ETR_IP), ctl(ETR2_IP)]
    entry = t.itr.cache.lookup(HOST)
    assert entry is not None
    assert [s.rtt for s in entry.locators] == [pytest.approx(0.002)] * 2
    assert all(s.up for s in entry.locators)
    # The reply marks the locator the probe arrived on with the p bit.
    replies = [m for _, _, m in sent(t.net, MapReply) if m.probe]
    assert len(replies) == 2
    for reply in replies:
        assert reply.records[0].authoritative
        assert sum(loc.probed for loc in reply.records[0].locators) == 1


def test_partitioned_rloc_goes_down_and_is_not_chosen_then_comes_back():
    t, _ = probing_lab()
    t.net.partition(ITR_IP, ETR2_IP)
    t.net.advance(40.0)
    entry = t.itr.cache.lookup(HOST)
    assert entry is not None
    down = [e for _, e in t.itr.events(LocatorStateChanged)]
    assert down == [LocatorStateChanged(ETR_EID, str(ETR2_IP), False)]
    assert [s.up for s in entry.locators] == [True, False]
    slots = entry.slots(t.itr.cache.generation)
    assert {s.locator.address for s in slots} == {ETR_IP}
    t.net.heal()
    t.net.advance(11.0)
    assert entry.locators[1].up
    assert [e.up for _, e in t.itr.events(LocatorStateChanged)] == [False, True]


def test_locator_goes_down_only_after_probe_down_after_misses():
    t, _ = probing_lab()
    t.net.partition(ITR_IP, ETR2_IP)
    t.net.advance(9.0 + 3.5)  # first round at 10, its timeout at 13
    entry = t.itr.cache.lookup(HOST)
    assert entry is not None
    assert entry.locators[1].up
    assert entry.locators[1].missed == 1
    t.net.advance(10.0)  # the second miss
    assert not entry.locators[1].up


def test_probe_for_an_eid_we_are_not_etr_for_is_dropped():
    t, _ = probing_lab()
    peer = Raw()
    t.net.add(peer, ctl(IPv4Address("192.0.2.50")))
    probe = request_msg("10.1.1.0/24", IPv4Address("192.0.2.50"), probe=True)
    peer.out.append((probe.encode(), ctl(MS_IP)))
    t.net.advance(0.1)
    assert t.ms.counters["drop.probe-not-for-us"] == 1
    assert peer.got == []
    # Probes are never ECM'd (RFC 9301 5.8).
    ecm = EncapsulatedControlMessage(probe, IPv4Address("192.0.2.50"), ETR_IP)
    peer.out.append((ecm.encode(), ctl(ETR_IP)))
    t.net.advance(0.1)
    assert t.etr.counters["drop.probe-in-ecm"] == 1


def test_probe_replies_must_be_solicited_and_authoritative():
    t, _ = probing_lab()
    peer = Raw()
    t.net.add(peer, ctl(IPv4Address("192.0.2.50")))
    reply = MapReply(42, (record("10.1.1.0/24", "192.0.2.10"),), probe=True)
    peer.out.append((reply.encode(), ctl(ITR_IP)))
    t.net.advance(0.1)
    assert t.itr.counters["drop.unsolicited-probe-reply"] == 1


def test_probe_reply_without_the_a_bit_does_not_use_up_the_probe():
    t, _ = probing_lab()
    t.net.partition(ITR_IP, ETR2_IP)  # the real reply from ETR2 will not come
    t.net.advance(9.0)
    [probe] = [
        m
        for _, d, m in sent(t.net, MapRequest, src=ITR_IP)
        if m.probe and d == ctl(ETR2_IP)
    ]
    peer = Raw()
    t.net.add(peer, ctl(IPv4Address("192.0.2.50")))
    forged = MapReply(probe.nonce, (record("10.1.1.0/24", "192.0.2.66"),), probe=True)
    peer.out.append((forged.encode(), ctl(ITR_IP)))
    t.net.advance(0.5)
    assert t.itr.counters["drop.unsolicited-probe-reply"] == 1
    t.net.advance(4.0)  # the probe still times out (at 13), cleanly
    entry = t.itr.cache.lookup(HOST)
    assert entry is not None
    assert entry.locators[1].missed == 1


def test_negative_and_named_locators_and_our_own_rlocs_are_not_probed():
    net = SimNet(record=True)
    itr = Traced(itr_config(probe_interval=5.0))
    attach(net, itr)
    named = Locator(DistinguishedName("x"))
    for prefix, locs, source in (
        ("10.5.0.0/16", (named,), "map-reply"),
        ("10.6.0.0/16", (), "map-reply"),
        ("10.8.0.0/16", locators(ITR_IP), "map-reply"),  # our own RLOC
    ):
        eid = Eid.prefix(prefix)
        itr.cache.install(eid, MapRecord(*eid.to_wire(), locs), source, 0.0)
    net.advance(6.0)
    assert [m for _, _, m in sent(net, MapRequest) if m.probe] == []


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


def test_clearing_the_map_cache_forgets_every_entry_and_its_timer():
    t = lab()
    t.net.advance(1.0)
    for host in ("10.1.1.5/32", "10.1.7.7/32"):
        t.itr.request(Eid.prefix(host), t.net.now)
        t.net.advance(1.0)
    assert len(t.itr.cache) == 2  # the ETR's /24 and a negative entry
    timers = t.itr.timer_count()
    assert t.itr.clear_map_cache() == 2
    assert len(t.itr.cache) == 0
    assert t.itr.timer_count() == timers - 2  # both expiry deadlines went
    assert t.itr.counters["cache.cleared"] == 2
    assert t.itr.next_event() == MapCacheCleared(2)
    # Nothing is left to expire, and the next packet resolves again.
    t.net.advance(3600.0)
    assert t.itr.counters["cache.expired"] == 0
    t.itr.request(Eid.prefix("10.1.1.5/32"), t.net.now)
    t.net.advance(1.0)
    assert t.itr.cache.lookup(Eid.prefix("10.1.1.5/32")) is not None
    assert t.itr.clear_map_cache() == 1
    assert t.itr.clear_map_cache() == 0
