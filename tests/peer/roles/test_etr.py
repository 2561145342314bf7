"""The ETR role: registering, retransmissions, Map-Notifies, SMRs out."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address

from decent.peer.config import DatabaseMapping
from decent.peer.events import RegistrationExpired
from decent.peer.mapping.push_config import MOBILE_TTL, decent_node_config
from decent.peer.node import Node
from decent.wire import (
    Eid,
    MapNotify,
    MapRecord,
    MapRegister,
    MapRequest,
    check_auth,
    decode,
)
from tests.peer.conftest import (
    ETR_EID,
    ETR_IP,
    HOST,
    ITR_IP,
    KEY,
    LONG_TTL,
    MS_IP,
    N1,
    N2,
    N3,
    NEW_RLOC,
    PEER,
    V6,
    Traced,
    attach,
    ctl,
    etr_config,
    lab,
    locators,
    ms_config,
    out,
    record,
    resolved_lab,
    sent,
    site_a,
    state,
)
from tests.peer.mesh import MOBILE_N2, TWO, mesh
from tests.peer.simnet import SimNet

_M_BIT = 0x00000200  # Map-Register bit 22: the legacy LISP-MN "m"


# ---------------------------------------------------------------- registering
def test_sent_register_is_exactly_the_signed_message():
    etr = Traced(etr_config())
    etr.handle_timer(0.0)
    [(data, _)] = etr.datagrams_to_send()
    msg = decode(data)
    assert isinstance(msg, MapRegister)
    assert check_auth(data, KEY)
    resigned = MapRegister(
        msg.nonce,
        msg.records,
        proxy_reply=msg.proxy_reply,
        ttl_timeout=True,
        want_map_notify=True,
        xtr_id=msg.xtr_id,
    ).signed(KEY)
    assert resigned.encode() == data


def test_large_databases_are_split_into_registers_of_bounded_size():
    mappings = tuple(
        DatabaseMapping(Eid.prefix(f"10.1.{i}.0/24"), locators(ETR_IP))
        for i in range(100)
    )
    etr = Traced(etr_config(database=mappings))
    etr.handle_timer(0.0)
    sent = etr.datagrams_to_send()
    assert len(sent) > 1
    assert all(len(d) <= 1100 for d, _ in sent)
    registers = [decode(d) for d, _ in sent]
    assert sum(len(m.records) for m in registers if isinstance(m, MapRegister)) == 100


def test_register_waits_for_every_map_server_to_notify():
    second = IPv4Address("192.0.2.2")
    etr = Traced(etr_config(map_servers=(ctl(MS_IP), ctl(second))))
    etr.handle_timer(0.0)
    [(data, _), _] = etr.datagrams_to_send()
    reg = decode(data)
    assert isinstance(reg, MapRegister)
    notify = MapNotify(reg.nonce, reg.records).signed(KEY).encode()
    etr.receive_datagram(notify, ctl(MS_IP), 0.1)
    assert etr.soft_state_sizes()["pending_registers"] == 1
    etr.handle_timer(1.0)
    assert [dest for _, dest in etr.datagrams_to_send()] == [ctl(second)]


def test_etr_without_a_key_registers_unsigned_and_acks_unsigned():
    ms = Traced(ms_config(sites=(site_a(allow_unauthenticated=True),)))
    etr = Traced(etr_config(key=b""))
    etr.handle_timer(0.0)
    [(reg_bytes, _)] = etr.datagrams_to_send()
    assert decode(reg_bytes).alg_id == 0  # type: ignore[union-attr]
    ms.receive_datagram(reg_bytes, PEER, 0.0)
    assert ETR_EID in ms.ms.db
    # An unsolicited, unsigned notify to a keyless ETR is cached and acked.
    notify = MapNotify(99, (record("10.2.0.0/16", "192.0.2.40"),))
    etr.receive_datagram(notify.encode(), ctl(MS_IP), 1.0)
    [(ack, _)] = out(etr)
    assert ack.alg_id == 0  # type: ignore[attr-defined]
    assert etr.cache.lookup(Eid.prefix("10.2.1.1/32")) is not None


def test_forged_map_notify_is_dropped_and_caches_nothing():
    etr = Traced(etr_config())
    before = state(etr)
    poison = MapNotify(77, (record("10.0.0.0/8", "203.0.113.66"),))
    for data in (poison.encode(), poison.signed(b"not the key").encode()):
        etr.receive_datagram(data, ctl(MS_IP), 1.0)
    assert etr.counters["drop.auth-failed"] == 2
    assert state(etr) == before
    assert etr.datagrams_to_send() == []  # and no Map-Notify-Ack


# ---------------------------------------------------------------- retransmission
def test_register_is_retransmitted_1s_doubling_to_60s_with_fresh_nonces():
    net = SimNet(record=True)
    etr = Traced(
        etr_config(
            register_interval=3600.0, mapping=LONG_TTL, quick_register_period=0.0
        )
    )
    attach(net, etr)  # no Map-Server answers
    net.advance(300.0)
    regs = sent(net, MapRegister)
    times = [t for t, _, _ in regs]
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0, 183.0, 243.0]
    nonces = [m.nonce for _, _, m in regs]
    assert nonces == sorted(set(nonces))  # strictly increasing (RFC 9301 5.6)
    assert etr.soft_state_sizes()["pending_registers"] == 1


def test_periodic_registration_supersedes_unanswered_retransmissions():
    net = SimNet(record=True)
    etr = Traced(etr_config())
    attach(net, etr)  # no Map-Server: every chain stays unanswered
    net.advance(3600.0)
    assert etr.soft_state_sizes()["pending_registers"] == 1
    times = [t for t, _, _ in sent(net, MapRegister)]
    # After the back-off reached 60 s, one Map-Register per period, not one
    # more per period for every chain ever started.
    late = [t for t in times if t > 600.0]
    assert all(b - a >= 54.0 for a, b in itertools.pairwise(late))


def test_map_notify_stops_the_retransmission():
    net = SimNet(record=True)
    etr = Traced(
        etr_config(
            register_interval=3600.0, mapping=LONG_TTL, quick_register_period=0.0
        )
    )
    ms = Traced(ms_config())
    attach(net, etr)
    attach(net, ms)
    net.partition(ETR_IP, MS_IP)
    net.advance(10.0)  # sends at 0, 1, 3, 7 are lost
    net.heal()
    net.advance(100.0)
    times = [t for t, _, _ in sent(net, MapRegister)]
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0]
    assert etr.soft_state_sizes()["pending_registers"] == 0
    assert [decode(d).nonce for _, s, _, d in net.trace if s == ctl(MS_IP)] == [  # type: ignore[union-attr]
        sent(net, MapRegister)[-1][2].nonce
    ]


def test_register_retransmission_stops_when_its_eid_is_deregistered():
    etr = Traced(etr_config(register_interval=3600.0, mapping=LONG_TTL))
    etr.handle_timer(0.0)
    etr.deregister(0.5, [ETR_EID])
    etr.datagrams_to_send()
    etr.handle_timer(1.0)
    assert etr.datagrams_to_send() == []
    assert etr.soft_state_sizes()["pending_registers"] == 0


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


# ---------------------------------------------------------------- schedule
def test_quick_registration_never_slows_a_short_period():

    cfg = decent_node_config(
        name="q",
        rlocs=(IPv4Address("192.0.2.77"),),
        group=IPv4Address("233.252.1.1"),
        key=b"k",
        xtr_id=9,
        register_interval=5.0,
    )
    node = Node(cfg, nonce=lambda: 0)  # jitter 0 with this nonce source
    node.handle_timer(0.0)
    node.datagrams_to_send()
    # Alone, it backs off from 1 s; once that passes 5 s it stays at 5 s.
    times = []
    now = 0.0
    for _ in range(8):
        now = node.get_timer() or 0.0
        node.handle_timer(now)
        node.datagrams_to_send()
        times.append(now)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 5.0


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


# ---------------------------------------------------------------- SMRs out
def test_set_locators_of_a_new_eid_adds_a_mapping():
    etr = Traced(etr_config())
    new = Eid.prefix("10.1.9.0/24")
    etr.set_locators(new, locators(ETR_IP), 0.0)
    assert etr.database.get(new) == DatabaseMapping(new, locators(ETR_IP))


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


def test_itrs_and_rlocs_of_a_family_we_lack_are_skipped():
    etr = Traced(etr_config(probe_interval=5.0))
    etr.note_itr(ETR_EID, V6, 0.0)
    etr.set_locators(ETR_EID, locators(ETR_IP), 0.0)
    assert etr.counters["tx.smr"] == 0
    v6_eid = Eid.prefix("2001:db8:1::/48")
    etr.cache.install(
        v6_eid, MapRecord(*v6_eid.to_wire(), locators(V6)), "map-reply", 0.0
    )
    etr.handle_timer(5.0)
    assert etr.counters["tx.probe"] == 0
