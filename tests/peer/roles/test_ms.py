"""The Map-Server role: registration lifecycle, merged entries, Map-Notifies.

Register, refresh, expire, deregister (RFC 9301 8.2), and unsolicited
Map-Notifies for merged entries (RFC 8378 5.3), retransmitted 3, 3, 3, 6,
12, 24 s apart until a Map-Notify-Ack comes (RFC 9301 5.7)."""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from ipaddress import IPv4Address

import pytest

from decent.peer.config import AllowedPrefix, DatabaseMapping, Site
from decent.peer.events import (
    MergedSetChanged,
    NotifyAcknowledged,
    NotifyGaveUp,
    RegisterAcknowledged,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationRemoved,
)
from decent.peer.roles.etr import RegisterRetry
from decent.wire import (
    Eid,
    Locator,
    MapNotify,
    MapNotifyAck,
    MapRecord,
    MapRegister,
    Rle,
    RleEntry,
    check_auth,
    decode,
)
from tests.peer.conftest import (
    DECENT_IPS,
    ETR_EID,
    ETR_IP,
    KEY,
    MS_IP,
    PEER,
    Raw,
    Traced,
    attach,
    ctl,
    decent_trio,
    etr_config,
    lab,
    locators,
    ms_config,
    out,
    record,
    register_msg,
    sent,
)
from tests.peer.simnet import SimNet


# ---------------------------------------------------------------- lifecycle
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


def test_registration_replaced_by_another_xtr_expires_on_the_new_ones_clock():
    ms = Traced(ms_config())
    first = record("10.1.1.0/24", "192.0.2.10")
    ms.receive_datagram(register_msg(first, xtr_id=1), PEER, 0.0)
    second = record("10.1.1.0/24", "192.0.2.11")
    ms.receive_datagram(register_msg(second, xtr_id=2), PEER, 100.0)
    for t in (180.0, 280.0):  # the first registrant's timer finds it replaced
        ms.handle_timer(t)
    assert ms.events(RegistrationExpired) == [(280.0, RegistrationExpired(ETR_EID, 2))]
    assert ms.ms.expire(ETR_EID, 2, 281.0) is None  # already gone


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


def test_ttl_zero_for_an_unregistered_eid_changes_nothing():
    ms = Traced(ms_config())
    rec = record("10.1.1.0/24", "192.0.2.10", ttl=0)
    ms.receive_datagram(register_msg(rec), PEER, 0.0)
    assert ms.events(RegistrationRemoved) == []
    assert ms.counters["registration.removed"] == 0


def test_ttl_zero_without_merge_bit_removes_only_that_registrants_child():
    ms = Traced(ms_config())
    for xtr in (1, 2):
        rec = record("10.1.1.0/24", f"192.0.2.{xtr}")
        ms.receive_datagram(register_msg(rec, merge=True, xtr_id=xtr), PEER, 0.0)
    gone = record("10.1.1.0/24", "192.0.2.1", ttl=0)
    ms.receive_datagram(register_msg(gone, xtr_id=1, nonce=2), PEER, 1.0)
    entry = ms.ms.db.get(ETR_EID)
    assert entry is not None
    assert list(entry.children) == [2]
    assert ms.events(RegistrationRemoved) == [(1.0, RegistrationRemoved(ETR_EID, 1))]


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


# ---------------------------------------------------------------- Map-Notify
def is_ack(data: bytes, src: object, dst: object) -> bool:
    return len(data) > 0 and data[0] >> 4 == 5


def notify_times(net, src, dst) -> dict[int, list[float]]:
    """Send times of every Map-Notify from src to dst, by nonce."""
    out: dict[int, list[float]] = defaultdict(list)
    for t, d, m in sent(net, MapNotify, src=src):
        if d == ctl(dst):
            out[m.nonce].append(t)
    return dict(out)


def test_unacknowledged_notify_is_retransmitted_then_given_up():
    net, nodes = decent_trio(record=True, drop=is_ack)
    net.advance(200.0)
    by_nonce = notify_times(net, DECENT_IPS[0], DECENT_IPS[1])
    # While members join, each change supersedes the notify before it; the
    # last one (the final three-member set) is retransmitted in full.
    nonce = max(by_nonce)  # counter nonces: the latest is the largest
    times = by_nonce[nonce]
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [3.0, 3.0, 3.0, 6.0, 12.0, 24.0]
    gave_up = [t for t, e in nodes[0].events(NotifyGaveUp) if e.nonce == nonce]
    assert gave_up == [pytest.approx(times[-1] + 24.0)]
    assert nodes[0].counters["notify.gave-up"] == 2  # to n2 and to n3
    assert nodes[0].soft_state_sizes()["pending_notifies"] == 0


def test_acknowledged_notify_is_not_retransmitted():
    net, nodes = decent_trio(record=True)
    net.advance(200.0)
    by_nonce = notify_times(net, DECENT_IPS[0], DECENT_IPS[1])
    assert by_nonce
    assert all(len(times) == 1 for times in by_nonce.values())
    acked = {e.nonce for _, e in nodes[0].events(NotifyAcknowledged)}
    assert max(by_nonce) in acked
    assert nodes[0].events(NotifyGaveUp) == []
    assert nodes[0].soft_state_sizes()["pending_notifies"] == 0


def test_newer_notify_supersedes_retransmission_of_an_older_one():
    # With every ack lost, the three-member notifies are still being
    # retransmitted when n3 leaves; they must not resurrect it afterwards.
    net, nodes = decent_trio(record=True, drop=is_ack)
    net.advance(5.0)
    nodes[2].deregister(net.now)
    net.settle()
    net.remove(nodes[2])
    for _ in range(6):
        net.advance(10.0)
        for node in nodes[:2]:
            assert node.membership() == list(DECENT_IPS[:2])


def test_notify_ack_must_match_a_pending_notify_and_its_key():
    net, nodes = decent_trio(record=True, drop=is_ack)
    net.advance(2.0)
    pending = [
        (m.nonce, m.records)
        for _, d, m in sent(net, MapNotify, src=DECENT_IPS[0])
        if d == ctl(DECENT_IPS[1])
    ]
    nonce, records = pending[-1]
    net.drop = None
    peer = Raw()
    net.remove(nodes[1])
    net.add(peer, ctl(DECENT_IPS[1]))
    forged = MapNotifyAck(nonce, records).signed(b"wrong key").encode()
    stray = MapNotifyAck(nonce ^ 1, records).signed(KEY).encode()
    good = MapNotifyAck(nonce, records).signed(KEY).encode()
    for data in (forged, stray, good):
        peer.out.append((data, ctl(DECENT_IPS[0])))
        net.advance(0.01)
    assert nodes[0].counters["drop.auth-failed"] == 1
    assert nodes[0].counters["drop.unsolicited-notify-ack"] == 1
    acked = [e for _, e in nodes[0].events(NotifyAcknowledged)]
    assert acked[-1] == NotifyAcknowledged(ctl(DECENT_IPS[1]), nonce)
    assert isinstance(decode(good), MapNotifyAck)


def test_merged_entry_of_a_site_without_keys_is_notified_unsigned():
    site = Site("open", (), (AllowedPrefix(Eid.prefix("10.9.0.0/16")),), True)
    ms = Traced(ms_config(sites=(site,)))
    eid = Eid.prefix("10.9.0.0/24")
    for i, ip in enumerate(("192.0.2.31", "192.0.2.32"), start=1):
        rle = Locator(Rle((RleEntry(IPv4Address(ip), 128),)), 255, 0)
        rec = MapRecord(*eid.to_wire(), (rle,), 3)
        data = register_msg(rec, key=None, merge=True, xtr_id=i, nonce=1)
        ms.receive_datagram(data, (IPv4Address(ip), 4342), 0.0)
    notifies = [m for m, _ in out(ms) if isinstance(m, MapNotify) and m.nonce != 1]
    assert notifies
    assert all(m.alg_id == 0 for m in notifies)
    assert ms.events(MergedSetChanged)[-1][1].members == 2


def test_the_t_bit_is_kept_as_data_beside_the_flags_text():
    net = SimNet()
    ms = Traced(ms_config())
    peer = Raw()
    attach(net, ms)
    net.add(peer, ctl(ETR_IP))
    rec = record("10.1.1.0/24", "192.0.2.10", ttl=10)
    peer.out.append((register_msg(rec), ctl(MS_IP)))
    net.advance(1.0)
    entry = ms.registration(ETR_EID)
    assert entry is not None
    child = entry.children[0x1234]
    assert (child.ttl_timeout, child.flags) == (True, "p-s-I-T-r-m-N")
    peer.out.append((register_msg(rec, nonce=2, ttl_timeout=False), ctl(MS_IP)))
    net.advance(1.0)
    child = entry.children[0x1234]
    assert (child.ttl_timeout, child.flags) == (False, "p-s-I-t-r-m-N")


def test_the_read_api_gives_the_replay_ceilings_and_the_registered_set():
    net = SimNet()
    ms = Traced(ms_config())
    peer = Raw()
    attach(net, ms)
    net.add(peer, ctl(ETR_IP))
    version = ms.registered_set_version
    peer.out.append((register_msg(record("10.1.1.0/24", "192.0.2.10")), ctl(MS_IP)))
    net.advance(1.0)
    assert ms.registered_set_version == version + 1
    assert ms.nonce_ceilings() == {("site-a", 0x1234, 0): 1}
    # A refresh moves the registry version, not the registered set's.
    registry = ms.registry_version
    peer.out.append(
        (register_msg(record("10.1.1.0/24", "192.0.2.10"), nonce=2), ctl(MS_IP))
    )
    net.advance(1.0)
    assert ms.registry_version > registry
    assert ms.registered_set_version == version + 1
    assert ms.nonce_ceilings() == {("site-a", 0x1234, 0): 2}
    # What a snapshot restores never lowers a ceiling this process holds.
    ms.restore_nonce_ceiling(("site-a", 0x1234, 0), 1)
    ms.restore_nonce_ceiling(("site-a", 0x99, 0), 7)
    assert ms.nonce_ceilings() == {("site-a", 0x1234, 0): 2, ("site-a", 0x99, 0): 7}
    # The copy handed out is the caller's.
    ms.nonce_ceilings().clear()
    assert len(ms.nonce_ceilings()) == 2
    assert [e.eid for e in ms.registrations(ordered=False)] == [ETR_EID]
    assert ms.registrations() == ms.registrations(ordered=False)
