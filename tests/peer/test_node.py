"""Every drop, rejection, expiry, registration, notify and cache change is
reported as a typed event, and the counters agree with the events."""

from __future__ import annotations

from collections import Counter
from ipaddress import IPv4Address

from decent.peer.events import (
    MapCacheExpired,
    MapCacheUpdated,
    MapRequestFailed,
    MessageDropped,
    NotifyGaveUp,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationRejected,
    RegistrationRemoved,
)
from decent.wire import Eid
from tests.peer.conftest import (
    Traced,
    ctl,
    decent_trio,
    lab,
    record,
    register_msg,
    request_msg,
)

STRANGER = IPv4Address("192.0.2.66")


def assert_counters_match_events(node: Traced) -> None:
    events = [e for _, e in node.log]
    by_reason = Counter(e.reason for e in events if isinstance(e, MessageDropped))
    drops = {k[5:]: v for k, v in node.counters.items() if k.startswith("drop.")}
    assert drops == dict(by_reason)
    rejected = Counter(e.reason for e in events if isinstance(e, RegistrationRejected))
    rejects = {k[7:]: v for k, v in node.counters.items() if k.startswith("reject.")}
    assert rejects == dict(rejected)

    def count(kind: type) -> int:
        return sum(isinstance(e, kind) for e in events)

    c = node.counters
    assert c["registration.accepted"] == count(RegistrationAccepted)
    assert c["registration.expired"] == count(RegistrationExpired)
    assert c["registration.removed"] == count(RegistrationRemoved)
    assert c["cache.installed"] == count(MapCacheUpdated)
    assert c["cache.expired"] <= count(MapCacheExpired)  # TTL 0 removes too
    assert c["notify.gave-up"] == count(NotifyGaveUp)
    assert c["request.failed"] == count(MapRequestFailed)


def test_counters_agree_with_events_on_a_rough_network():
    t = lab(
        seed=3,
        loss=0.2,
        duplicate=0.1,
        ms={"map_reply_rate": 0.5, "map_reply_burst": 2.0},
    )
    t.net.advance(30.0)
    for i in range(5):
        t.itr.request(Eid.prefix(f"10.1.{i}.9/32"), t.net.now)
        t.itr.request(Eid.prefix(f"10.{i + 3}.0.1/32"), t.net.now)
    # A stranger's hostile datagrams, delivered past the lossy links.
    rec = record("10.1.1.0/24", "192.0.2.66")
    for data, node in (
        (b"\x00garbage", t.ms),
        (register_msg(rec, key=b"guess"), t.ms),
        (register_msg(rec, key=None), t.ms),
        (request_msg("10.1.1.1/32", STRANGER, probe=True).encode(), t.ms),
        (request_msg("10.1.1.1/32", STRANGER, smr=True).encode(), t.itr),
    ):
        node.receive_datagram(data, ctl(STRANGER), t.net.now)
    t.net.advance(120.0)
    t.net.remove(t.etr)  # its registration will expire
    t.net.advance(400.0)
    for node in (t.ms, t.etr, t.itr):
        assert_counters_match_events(node)
    assert t.ms.counters["registration.expired"] == 1
    # Each refusal was counted (the rate limit may strike more than once).
    for node, name in (
        (t.ms, "reject.auth-failed"),
        (t.ms, "reject.auth-required"),
        (t.ms, "drop.decode-error"),
        (t.ms, "drop.probe-not-for-us"),
        (t.ms, "drop.rate-limited"),
        (t.itr, "drop.smr-not-cached"),
    ):
        assert node.counters[name] >= 1, name
    assert t.itr.counters["cache.installed"] >= 1


def test_counters_agree_with_events_in_a_decent_group_that_loses_acks():
    def no_acks(data: bytes, src: object, dst: object) -> bool:
        return len(data) > 0 and data[0] >> 4 == 5

    net, nodes = decent_trio(seed=5, drop=no_acks, loss=0.05)
    net.advance(100.0)
    nodes[2].deregister(net.now)
    net.settle()
    net.remove(nodes[2])
    net.advance(300.0)
    for node in nodes:
        assert_counters_match_events(node)
    assert nodes[0].counters["notify.gave-up"] > 0
    assert nodes[0].counters["registration.removed"] > 0
