"""Unsolicited Map-Notify for merged entries (RFC 8378 5.3): retransmitted
3, 3, 3, 6, 12, 24 s apart until a Map-Notify-Ack comes (RFC 9301 5.7)."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest

from decent.peer.events import NotifyAcknowledged, NotifyGaveUp
from decent.wire import MapNotify, MapNotifyAck, decode
from tests.peer.conftest import DECENT_IPS, KEY, Raw, ctl, decent_trio, sent


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
