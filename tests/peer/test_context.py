"""The roles' shared context: the Outbox's counters, events, loopback and nonces."""

from __future__ import annotations

from decent.peer import counters as C
from decent.peer.context import EVENTS_KEPT, MASK64, Ctx, Outbox, authentic
from decent.peer.events import MessageDropped, RegistrationRejected
from decent.peer.mapcache import MapCache
from decent.peer.mapdb import MapDB
from decent.peer.mapserver import MapServer
from decent.wire import MapNotify
from tests.peer.conftest import (
    ETR_EID,
    ITR_IP,
    KEY,
    MS_IP,
    PEER,
    ctl,
    itr_config,
    nonces,
    record,
    site_a,
)

OWN_MR = ctl(ITR_IP)


def test_send_counts_tx_by_kind_and_queues_the_datagram():
    out = Outbox(nonces())
    out.send(b"a", ctl(MS_IP), "map-register")
    out.send(b"b", ctl(MS_IP), "map-register")
    out.send(b"c", PEER, "smr")
    assert out.datagrams == [(b"a", ctl(MS_IP)), (b"b", ctl(MS_IP)), (b"c", PEER)]
    assert out.counters == {C.TX + "map-register": 2, C.TX + "smr": 1}
    assert not out.loopback


def test_only_map_requests_and_replies_to_our_own_resolver_loop_back():
    out = Outbox(nonces())
    out.loopback_addr = OWN_MR
    out.send(b"request", OWN_MR, "map-request")
    out.send(b"reply", OWN_MR, "map-reply")
    out.send(b"register", OWN_MR, "map-register")  # not an ITR/MR exchange
    out.send(b"elsewhere", ctl(MS_IP), "map-request")
    assert list(out.loopback) == [b"request", b"reply"]
    assert out.datagrams == [(b"register", OWN_MR), (b"elsewhere", ctl(MS_IP))]
    assert out.counters[C.TX + "map-request"] == 2  # looped back or not


def test_without_a_loopback_address_nothing_loops_back():
    out = Outbox(nonces())
    out.send(b"request", OWN_MR, "map-request")
    assert out.datagrams == [(b"request", OWN_MR)]
    assert not out.loopback


def test_drop_and_reject_count_under_their_families_and_emit_events():
    out = Outbox(nonces())
    out.drop(PEER, "decode-error")
    out.reject(PEER, "auth-failed", ETR_EID)
    out.reject(PEER, "no-records")
    assert out.counters == {
        C.DROP + "decode-error": 1,
        C.REJECT + "auth-failed": 1,
        C.REJECT + "no-records": 1,
    }
    assert list(out.events) == [
        MessageDropped(PEER, "decode-error"),
        RegistrationRejected(PEER, "auth-failed", ETR_EID),
        RegistrationRejected(PEER, "no-records", None),
    ]


def test_the_events_kept_between_drains_are_bounded_oldest_first_out():
    out = Outbox(nonces())
    for i in range(EVENTS_KEPT + 2):
        out.emit(MessageDropped(PEER, str(i)))
    assert len(out.events) == EVENTS_KEPT
    assert out.events[0] == MessageDropped(PEER, "2")


def test_nonces_are_masked_to_64_bits():
    out = Outbox(nonces(start=(1 << 64) - 1))
    assert out.nonce() == MASK64 == (1 << 64) - 1
    assert out.nonce() == 0  # 2**64, masked
    assert Outbox(lambda: (5 << 64) | 7).nonce() == 7


def test_ctx_knows_our_own_rlocs():
    config = itr_config()
    ctx = Ctx(
        config, Outbox(nonces()), MapServer((site_a(),), 180.0), MapCache(), MapDB()
    )
    assert ctx.own(ITR_IP)
    assert not ctx.own(MS_IP)
    assert len(ctx.timers) == 0


def test_authentic_wants_the_key_and_an_accepted_algorithm():
    notify = MapNotify(1, (record("10.1.1.0/24", "192.0.2.10"),))
    sha256 = notify.signed(KEY, 2).encode()
    sha1 = notify.signed(KEY, 1).encode()
    assert authentic(itr_config(), 1, sha1, KEY)  # both by default
    strict = itr_config(auth_algorithms=frozenset({2}))
    assert authentic(strict, 2, sha256, KEY)
    assert not authentic(strict, 2, sha256, b"another key")
    assert not authentic(strict, 1, sha1, KEY)
