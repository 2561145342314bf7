"""The ITR role: Map-Requests, retries, hold-down, replies, SMRs in, the cache.

Map-Request retransmission and hold-down (RFC 9301 5.3), nonce matching of
Map-Replies, SMR-invoked requests (6.1), map-cache expiry and clearing."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address, IPv6Address

import pytest

from decent.peer.config import Limits, NodeConfig
from decent.peer.events import (
    MapCacheCleared,
    MapCacheExpired,
    MapCacheUpdated,
    MapRequestFailed,
    MessageDropped,
    SmrReceived,
)
from decent.peer.mapping.push_config import MOBILE_TTL
from decent.wire import (
    DistinguishedName,
    Eid,
    EncapsulatedControlMessage,
    MapNotify,
    MapRecord,
    MapReply,
    MapRequest,
    RequestRecord,
    Rle,
    RleEntry,
    decode,
)
from tests.peer.attack import EVIL, member
from tests.peer.conftest import (
    ETR_EID,
    ETR_IP,
    HOST,
    ITR_IP,
    KEY,
    MS_IP,
    N2,
    NEW_RLOC,
    PEER,
    V6,
    Raw,
    Traced,
    attach,
    ctl,
    itr_config,
    itr_with_fake_resolver,
    lab,
    locators,
    out,
    record,
    request_msg,
    resolved_lab,
    sent,
    state,
)
from tests.peer.mesh import MOBILE_N2, TWO, eid4, mesh, udp
from tests.peer.simnet import SimNet


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


# ---------------------------------------------------------------- the map-cache
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


def test_ttl_zero_reply_for_an_uncached_eid_changes_nothing():
    itr = Traced(itr_config())
    itr.request(Eid.prefix("10.1.2.5/32"), 0.0)
    [(ecm, _)] = out(itr)
    nonce = ecm.message.nonce  # type: ignore[attr-defined]
    reply = MapReply(nonce, (record("10.1.1.0/24", ttl=0),))
    itr.receive_datagram(reply.encode(), ctl(MS_IP), 0.1)
    assert len(itr.cache) == 0
    assert itr.events(MapCacheUpdated) == []


def test_an_expired_mobile_mapping_is_resolved_again_by_the_next_packet():
    m = mesh(extra=MOBILE_N2)
    itr = m.nodes[0]

    def resolved() -> list[float]:
        return [t for t, e in itr.events(MapCacheUpdated) if e.eid == TWO]

    packet = udp(eid4(1), eid4(2))
    assert len(m.send(0, packet)) == 1
    [installed] = resolved()
    m.net.advance(MOBILE_TTL * 60.0 - 1.0)
    assert itr.cache.lookup(TWO) is not None
    assert len(m.send(0, packet)) == 1  # still a hit
    m.net.advance(2.0)
    [(when, _)] = itr.events(MapCacheExpired)
    assert when == pytest.approx(installed + MOBILE_TTL * 60.0)
    assert itr.cache.lookup(TWO) is None
    assert resolved() == [installed]  # nothing re-resolved it meanwhile
    out = m.send(0, packet)  # the miss re-resolves (in process) and sends
    assert [route[0][0] for _, route in out] == [str(N2)]
    assert resolved() == [installed, m.net.now]


def test_the_map_cache_is_bounded():
    node = member(1, limits=Limits(max_cache_entries=10))
    group = node.config.group_eid
    assert group is not None
    records = tuple(record(f"10.5.0.{i}/32", str(EVIL)) for i in range(40))
    # An unsolicited, authenticated Map-Notify (a key holder's).
    notify = MapNotify(77, records, 0).signed(KEY)
    node.receive_datagram(notify.encode(), ctl(EVIL), 0.0)
    assert len(node.cache) == 10
    assert node.counters["cache.full"] == 30


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


# ---------------------------------------------------------------- SMR
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


def test_smr_names_of_every_kind_are_looked_up_safely():
    itr = Traced(itr_config())
    v6_eid = Eid.prefix("2001:db8:1::/48")
    itr.cache.install(
        v6_eid, MapRecord(*v6_eid.to_wire(), locators(V6)), "map-reply", 0.0
    )
    unusable = Rle((RleEntry(ETR_IP),))
    smr = MapRequest(
        1,
        (RequestRecord(unusable, 0), RequestRecord(DistinguishedName("who"), 0)),
        (ETR_IP,),
        source_eid=IPv6Address("2001:db8:1::1"),
        smr=True,
    )
    itr.receive_datagram(smr.encode(), PEER, 0.0)
    assert [e for _, e in itr.events(SmrReceived)] == [SmrReceived(v6_eid, PEER)]


def test_a_refresh_with_the_same_record_is_marked_unchanged():
    itr = Traced(itr_config())
    eid = Eid.prefix("10.1.1.0/24")
    for i, rloc in enumerate(("192.0.2.10", "192.0.2.10", "192.0.2.11")):
        itr.itr.install(eid, record("10.1.1.0/24", rloc), "map-reply", float(i))
        itr._collect(float(i))
    # The log shows a change of mapping at INFO, a plain refresh at DEBUG.
    assert [e.changed for _, e in itr.events(MapCacheUpdated)] == [True, False, True]
