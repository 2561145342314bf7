"""The RLOC-probing role (RFC 9301 7.1): probes, replies, timeouts."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from decent.peer.events import LocatorStateChanged
from decent.wire import DistinguishedName, Eid, Locator, MapRecord, MapReply, MapRequest
from tests.peer.conftest import (
    ETR2_IP,
    ETR_EID,
    ETR_IP,
    HOST,
    ITR_IP,
    PEER,
    Raw,
    Traced,
    attach,
    ctl,
    itr_config,
    locators,
    out,
    probing_lab,
    record,
    sent,
)
from tests.peer.simnet import SimNet


# ---------------------------------------------------------------- probes and replies
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


def test_probe_reply_after_the_mapping_changed_is_ignored():
    itr = Traced(itr_config(probe_interval=5.0))
    itr.cache.install(ETR_EID, record("10.1.1.0/24", "192.0.2.10"), "map-reply", 0.0)
    itr.handle_timer(5.0)
    [(probe, _)] = out(itr)
    assert isinstance(probe, MapRequest)
    itr.cache.install(ETR_EID, record("10.1.1.0/24", "192.0.2.12"), "map-reply", 5.0)
    answer = MapReply(
        probe.nonce,
        (record("10.1.1.0/24", "192.0.2.10", authoritative=True),),
        probe=True,
    )
    itr.receive_datagram(answer.encode(), PEER, 5.1)
    entry = itr.cache.db.get(ETR_EID)
    assert entry is not None
    assert all(s.rtt is None for s in entry.locators)
    itr.handle_timer(10.0)  # the next round; then the entry goes away
    assert len(out(itr)) == 1
    itr.cache.remove(ETR_EID)
    itr.handle_timer(13.0)  # its timeout finds no entry: nothing to mark
    assert itr.events(LocatorStateChanged) == []


# ---------------------------------------------------------------- locator state
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


# ---------------------------------------------------------------- what is probed
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
