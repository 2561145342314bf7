"""Registration lifecycle on a plain Map-Server: register, refresh, expire,
deregister (RFC 9301 8.2), and the ETR's Map-Register retransmission (5.7)."""

from __future__ import annotations

import dataclasses
import itertools
from ipaddress import IPv4Address

from decent.peer.config import DatabaseMapping
from decent.peer.decent import decent_node_config
from decent.peer.events import (
    RegisterAcknowledged,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationRemoved,
)
from decent.peer.node import Node, RegisterRetry
from decent.wire import Eid, MapNotify, MapRegister, check_auth, decode
from tests.peer.conftest import (
    ETR_EID,
    ETR_IP,
    KEY,
    LONG_TTL,
    MS_IP,
    Raw,
    Traced,
    attach,
    ctl,
    etr_config,
    lab,
    locators,
    ms_config,
    record,
    register_msg,
    sent,
)
from tests.peer.simnet import SimNet


def test_registration_is_refreshed_and_expires_exactly_180s_after_the_last():
    t = lab()
    t.net.advance(600.0)
    accepted = t.ms.events(RegistrationAccepted)
    assert accepted[0] == (
        0.001,
        RegistrationAccepted(ETR_EID, "site-a", ctl(ETR_IP), int(ETR_IP), True),
    )
    # Refreshes keep it registered: every 20 s for the first 5 minutes
    # (quick registration after a start, RFC 9301 8.2), then every 60 s less
    # up to 10 % jitter.
    times = [at for at, _ in accepted]
    assert all(18.0 <= b - a <= 20.0 for a, b in itertools.pairwise(times[:14]))
    times = [at for at in times if at > 320.0]
    assert len(times) >= 4
    assert all(54.0 <= b - a <= 60.0 for a, b in itertools.pairwise(times))
    assert not any(e.new for _, e in accepted[1:])
    assert t.ms.events(RegistrationExpired) == []
    assert ETR_EID in t.ms.ms.db

    t.net.remove(t.etr)  # the ETR dies; its registration must age out
    last = times[-1]
    t.net.run(last + 179.999)
    assert ETR_EID in t.ms.ms.db
    t.net.run(last + 400.0)
    assert ETR_EID not in t.ms.ms.db
    assert t.ms.events(RegistrationExpired) == [
        (last + 180.0, RegistrationExpired(ETR_EID, int(ETR_IP)))
    ]
    assert t.ms.counters["registration.expired"] == 1
    assert t.ms.soft_state_sizes()["registrations"] == 0


def test_without_the_t_bit_the_registration_timeout_applies():
    net = SimNet()
    ms = Traced(ms_config(registration_timeout=180.0))
    peer = Raw()
    attach(net, ms)
    net.add(peer, ctl(ETR_IP))
    # Record TTL 10 min, but T clear: the Map-Server's 3-minute default rules.
    rec = record("10.1.1.0/24", "192.0.2.10", ttl=10)
    peer.out.append((register_msg(rec, ttl_timeout=False), ctl(MS_IP)))
    net.advance(1000.0)
    assert ms.events(RegistrationExpired) == [
        (180.001, RegistrationExpired(ETR_EID, 0x1234))
    ]


def test_with_the_t_bit_the_record_ttl_is_the_lifetime():
    net = SimNet()
    ms = Traced(ms_config())
    peer = Raw()
    attach(net, ms)
    net.add(peer, ctl(ETR_IP))
    rec = record("10.1.1.0/24", "192.0.2.10", ttl=10)
    peer.out.append((register_msg(rec), ctl(MS_IP)))
    net.advance(1000.0)
    assert ms.events(RegistrationExpired) == [
        (600.001, RegistrationExpired(ETR_EID, 0x1234))
    ]


def test_deregistration_with_ttl_zero_removes_at_once_and_for_good():
    t = lab()
    t.net.advance(100.0)
    timers_before = t.ms.timer_count()
    t.etr.deregister(t.net.now)
    t.net.advance(1.0)
    assert t.ms.events(RegistrationRemoved) == [
        (100.001, RegistrationRemoved(ETR_EID, int(ETR_IP)))
    ]
    assert ETR_EID not in t.ms.ms.db
    assert t.ms.timer_count() == timers_before - 1  # its expiry timer is gone
    # A graceful shutdown: the ETR does not come back at its next period.
    t.net.advance(600.0)
    assert ETR_EID not in t.ms.ms.db
    assert len(t.etr.database) == 0


def test_deregistering_some_eids_keeps_the_others_registered():
    second = DatabaseMapping(Eid.prefix("10.1.2.0/24"), locators(ETR_IP))
    config = etr_config()
    config = dataclasses.replace(config, database=(*config.database, second))
    net = SimNet()
    ms, etr = Traced(ms_config()), Traced(config)
    attach(net, ms)
    attach(net, etr)
    net.advance(10.0)
    assert len(ms.ms.db) == 2
    etr.deregister(net.now, iter([ETR_EID]))  # any iterable, even a one-shot one
    net.advance(300.0)
    assert [str(e) for e, _ in ms.ms.db.items()] == ["[0]10.1.2.0/24"]
    assert ms.counters["registration.removed"] == 1


def test_map_register_with_m_bit_is_acknowledged_by_a_signed_map_notify():
    t = lab()
    t.net.advance(0.5)
    [(at, dest, notify)] = sent(t.net, MapNotify)
    assert (at, dest) == (0.001, ctl(ETR_IP))
    [(_, _, reg)] = sent(t.net, MapRegister)
    assert reg.want_map_notify
    assert (notify.nonce, notify.records) == (reg.nonce, reg.records)
    raw = next(d for _, s, _, d in t.net.trace if s == ctl(MS_IP))
    assert check_auth(raw, KEY)
    assert t.etr.events(RegisterAcknowledged) == [
        (0.002, RegisterAcknowledged(ctl(MS_IP), reg.nonce))
    ]
    assert RegisterRetry(reg.nonce) not in t.etr._timers


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
