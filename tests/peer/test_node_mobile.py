"""Short (LISP-MN) TTLs: the TTL peers see, cache expiry, registrations kept alive."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address

import pytest

from decent.peer.decent import MOBILE_TTL, decent_node_config
from decent.peer.events import (
    MapCacheExpired,
    MapCacheUpdated,
    RegistrationExpired,
)
from decent.wire import Eid, MapRegister, MapReply, decode
from tests.peer.conftest import (
    DECENT_IPS,
    ETR_EID,
    GROUP,
    KEY,
    Traced,
    attach,
    itr_config,
    lab,
    sent,
)
from tests.peer.test_dataplane import eid4, mesh, udp

N1, N2, N3 = DECENT_IPS
TWO = Eid.prefix("2.2.2.2/32")
MOBILE_N2 = {1: {"mobile": True}}
_M_BIT = 0x00000200  # Map-Register bit 22: the legacy LISP-MN "m"


def test_a_mobile_node_gives_its_name_and_eids_the_small_ttl():
    cfg = decent_node_config(
        name="mn",
        rlocs=(N1,),
        group=GROUP,
        key=KEY,
        xtr_id=1,
        eids=(TWO, Eid.prefix("3.3.3.3/32")),
        eid_ttls=((Eid.prefix("3.3.3.3/32"), 5),),
        mobile=True,
    )
    ttls = {m.eid: m.ttl for m in cfg.database}
    assert ttls[Eid.name("mn")] == ttls[TWO] == MOBILE_TTL == 1
    assert ttls[Eid.prefix("3.3.3.3/32")] == 5  # its own ttl wins
    assert cfg.group_eid is not None
    assert ttls[cfg.group_eid] == 3  # the membership keeps [decent] ttl
    fixed = decent_node_config(
        name="fixed", rlocs=(N1,), group=GROUP, key=KEY, xtr_id=1, eids=(TWO,)
    )
    assert {m.ttl for m in fixed.database} == {3}


def test_rloc_policy_sets_priority_and_weight_and_must_match_the_rlocs():
    cfg = decent_node_config(
        name="n",
        rlocs=(N1, N2),
        group=GROUP,
        key=KEY,
        xtr_id=1,
        rloc_policy=((1, 30), (2, 70)),
    )
    name = next(m for m in cfg.database if m.eid == Eid.name("n"))
    assert [(loc.priority, loc.weight) for loc in name.locators] == [(1, 30), (2, 70)]
    with pytest.raises(ValueError, match="one \\(priority, weight\\) per RLOC"):
        decent_node_config(
            name="n",
            rlocs=(N1, N2),
            group=GROUP,
            key=KEY,
            xtr_id=1,
            rloc_policy=((1, 100),),
        )


def test_a_map_reply_for_a_mobile_eid_carries_its_small_ttl():
    m = mesh(extra=MOBILE_N2)
    outsider = Traced(itr_config(IPv4Address("198.18.42.50"), resolver=N1))
    attach(m.net, outsider)
    outsider.request(TWO, m.net.now)
    m.net.advance(1.0)
    [(_, _, reply)] = [
        r for r in sent(m.net, MapReply) if r[1][0] == outsider.config.rlocs[0]
    ]
    assert [rec.ttl for rec in reply.records] == [MOBILE_TTL]
    entry = outsider.cache.lookup(TWO)
    assert entry is not None
    assert entry.expires == pytest.approx(entry.created + MOBILE_TTL * 60.0)
    # A fixed member's mapping keeps the default.
    outsider.request(Eid.prefix("3.3.3.3/32"), m.net.now)
    m.net.advance(1.0)
    three = outsider.cache.lookup(Eid.prefix("3.3.3.3/32"))
    assert three is not None
    assert three.record.ttl == 3


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


def test_a_mobile_members_registrations_never_lapse_across_periods():
    """A 1-minute TTL is also a 1-minute registration lifetime (T bit),
    against a 60 s period: the member registers every 20 s instead, so no
    peer ever lets its mappings expire, while fixed members keep 60 s."""
    m = mesh(extra=MOBILE_N2)
    m.net.advance(1800.0)
    for peer in (m.nodes[0], m.nodes[2]):
        assert peer.events(RegistrationExpired) == []
        assert peer.ms.db.get(TWO) is not None
        assert peer.ms.db.get(Eid.name("n2")) is not None

    def to_seed(src: IPv4Address) -> list[float]:
        regs = sent(m.net, MapRegister, src=src)
        return [t for t, d, _ in regs if d[0] == N1 and t > 330.0]

    mobile_gaps = [b - a for a, b in itertools.pairwise(to_seed(N2))]
    assert mobile_gaps
    assert max(mobile_gaps) <= MOBILE_TTL * 60.0 / 3
    fixed = sent(m.net, MapRegister, src=N3)
    fixed_times = sorted({t for t, d, _ in fixed if d[0] == N1 and t > 330.0})
    assert min(b - a for a, b in itertools.pairwise(fixed_times)) >= 54.0
    # RFC 9301 made the 6833bis mobile-node bit reserved: never sent.
    for _, src, _, data in m.net.trace:
        if src[0] == N2 and data[:1] == b"\x3a":
            assert isinstance(decode(data), MapRegister)
            assert not int.from_bytes(data[:4], "big") & _M_BIT


def test_a_period_longer_than_the_ttl_registers_often_enough_anyway():
    t = lab(etr={"register_interval": 3600.0})  # TTL 3 min, period 1 hour
    t.net.advance(3 * 3600.0)
    assert t.ms.events(RegistrationExpired) == []
    assert t.ms.ms.db.get(ETR_EID) is not None
    times = [when for when, _, _ in sent(t.net, MapRegister)]
    assert max(b - a for a, b in itertools.pairwise(times)) <= 60.0
