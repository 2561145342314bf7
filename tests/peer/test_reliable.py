"""Reliable-transport sessions on the sans-I/O core: setup, scopes, ACKs, fallback."""

from __future__ import annotations

import math
from ipaddress import IPv4Address
from typing import Any

import pytest

from decent.peer.config import Limits
from decent.peer.events import RegistrationNacked, SessionDown, SessionUp
from decent.peer.transport.role import in_scope
from decent.wire import (
    DECENT_CONTROL_IID,
    Eid,
    IPAddress,
    Locator,
    MapRecord,
    MapRegister,
    decapsulate,
    decode,
    decode_udp_packet,
)
from decent.wire.transport import (
    NackReason,
    RefreshScope,
    RegistrationNack,
    RegistrationRefresh,
    TransportBody,
    TransportType,
    decode_transport,
    parse_body,
    pdu,
)
from tests.peer.conftest import HOUR, N1, N2, N3, register_msg
from tests.peer.streams import Streams, reliable_mesh

NEW = Eid.prefix("10.9.9.9/32")


def registers_between(s: Streams, a: IPv4Address, b: IPv4Address) -> int:
    """UDP Map-Registers from a to b in the trace (direct or replicated)."""
    count = 0
    for _, src, dst, data in s.net.trace:
        if src[0] != a or dst[0] != b:
            continue
        if dst[1] == 4341:
            header, inner = decapsulate(data)
            if header.instance_id != DECENT_CONTROL_IID:
                continue
            data = decode_udp_packet(inner).payload
        count += data[0] >> 4 == 3
    return count


def converged(n: int = 3, eids: int = 3, **kw: Any) -> Streams:
    s = reliable_mesh(n, eids, **kw)
    s.run(20)
    return s


def sessions_up(s: Streams) -> set[tuple[IPAddress, IPAddress]]:
    """(client RLOC, server RLOC) of every pipe whose both ends are up."""
    out = set()
    for p in s.pipes:
        a = p.client.reliable.sessions[p.client_sid]
        b = p.server.reliable.sessions[p.server_sid]
        if a.state == b.state == "up":
            out.add((p.client.config.rlocs[0], p.server.config.rlocs[0]))
    return out


def sent_pdus(node_out: bytes) -> list[TransportBody]:
    out: list[TransportBody] = []
    at = 0
    while at < len(node_out):
        msg, n = decode_transport(node_out[at:])
        out.append(parse_body(msg))
        at += n
    return out


# ---------------------------------------------------------------- setup


def test_every_member_opens_a_session_to_every_other_and_each_goes_up() -> None:
    s = converged()
    assert sessions_up(s) == {
        (a, b) for a in (N1, N2, N3) for b in (N1, N2, N3) if a != b
    }
    for node in s.nodes:
        ups = [e for _, e in node.log if isinstance(e, SessionUp)]
        assert len(ups) == 4


def test_after_the_sessions_are_up_no_udp_map_register_goes_between_members() -> None:
    s = converged()
    s.net.trace.clear()
    s.run(3 * HOUR, step=5.0)
    for a in (N1, N2, N3):
        for b in (N1, N2, N3):
            if a != b:
                assert registers_between(s, a, b) == 0, (a, b)


def test_without_reliable_transport_the_same_mesh_registers_over_udp_all_along() -> (
    None
):
    s = reliable_mesh(3, 3, reliable=False)
    s.run(20)
    s.net.trace.clear()
    s.run(HOUR, step=5.0)
    assert not s.pipes
    assert registers_between(s, N2, N1) >= 30


def test_what_a_session_registered_never_times_out_while_it_is_up() -> None:
    s = converged()
    n1 = s.nodes[0]
    held = n1.registration(Eid.prefix("10.2.0.1/32"))
    assert held is not None
    assert all(c.expires == math.inf for c in held.children.values())
    s.run(5 * HOUR, step=10.0)
    assert n1.registration(Eid.prefix("10.2.0.1/32")) is not None
    assert len(n1.registrations()) == len(s.nodes[1].registrations())


def test_a_late_udp_register_does_not_give_a_held_registration_a_lifetime() -> None:
    # A UDP Map-Register sent just before the session came up can arrive
    # after the session's copy: it is taken, and the registration stays held.
    s = converged()
    n1 = s.nodes[0]
    eid = Eid.prefix("10.2.0.1/32")
    entry = n1.registration(eid)
    assert entry is not None
    child = entry.children[2]
    nonce = max(n1.ms.replay.ceilings.values()) + 1
    data = register_msg(child.record, nonce=nonce, xtr_id=2, merge=True)
    before = n1.counters["registration.accepted"]
    n1.receive_datagram(data, (N2, 4342), s.net.now)
    assert n1.counters["registration.accepted"] == before + 1
    entry = n1.registration(eid)
    assert entry is not None
    assert entry.children[2].last == s.net.now
    assert entry.children[2].expires == math.inf
    s.run(5 * HOUR, step=10.0)
    assert n1.registration(eid) is not None


def test_a_udp_register_with_the_r_bit_is_what_authorises_a_session() -> None:
    s = converged()
    r_bits = [
        decode(data).reliable  # type: ignore[union-attr]
        for _, src, dst, data in s.net.trace
        if dst[1] == 4342 and data[0] >> 4 == 3
    ]
    assert r_bits
    assert all(r_bits)


def test_a_connection_from_a_peer_that_never_registered_with_the_r_bit_is_refused() -> (
    None
):
    s = reliable_mesh(2, 1)
    n1 = s.nodes[0]
    assert n1.reliable.accept((N2, 40000), s.net.now) is None
    assert n1.counters["drop.session-not-authenticated"] == 1
    assert not n1.reliable.sessions


def test_a_node_with_reliable_transport_off_refuses_every_session() -> None:
    s = reliable_mesh(2, 1, extra={0: {"reliable": False}})
    s.run(30)
    assert not sessions_up(s)
    assert s.nodes[0].counters["drop.session-not-enabled"] >= 1
    # ...and node 2 keeps registering to it over UDP.
    s.net.trace.clear()
    s.run(200, step=5.0)
    assert registers_between(s, N2, N1) > 0


def test_a_per_peer_override_keeps_one_peer_on_udp() -> None:
    s = reliable_mesh(3, 1, extra={1: {"reliable_peers": ((N3, False),)}})
    s.run(30)
    up = sessions_up(s)
    assert (N2, N3) not in up
    assert (N3, N2) not in up
    assert (N2, N1) in up
    assert (N3, N1) in up


# ---------------------------------------------------------------- changes, ACK, NACK


def test_a_new_eid_goes_at_once_over_the_session_and_is_acknowledged() -> None:
    s = converged()
    n1, n2 = s.nodes[0], s.nodes[1]
    acks = n1.counters["rx.session-ack"]
    s.net.trace.clear()
    n1.set_locators(NEW, (Locator(N1),), s.net.now)
    s.pump()
    assert n2.registration(NEW) is not None
    assert n1.counters["rx.session-ack"] == acks + 2  # one from each peer
    assert registers_between(s, N1, N2) == 0


def test_a_deregistration_goes_over_the_session_as_ttl_zero() -> None:
    s = converged()
    n1, n2 = s.nodes[0], s.nodes[1]
    gone = Eid.prefix("10.1.0.1/32")
    n1.deregister(s.net.now, [gone])
    s.pump()
    assert n2.registration(gone) is None


def test_a_registration_that_fails_authentication_is_nacked_for_each_record() -> None:
    s = converged(2, 1)
    n1, n2 = s.nodes
    pipe = s.pipe(n2, n1)
    eid = Eid.prefix("10.2.0.9/32")
    addr, mask = eid.to_wire()
    record = MapRecord(addr, mask, (Locator(N2),), 3)
    forged = MapRegister(2**40, (record,), xtr_id=2).signed(b"not-the-key", 2)
    data = pdu(TransportType.REGISTRATION, 7, forged.encode())
    n1.reliable.receive(pipe.server_sid, data, s.net.now)
    out = sent_pdus(n1.reliable.drain(pipe.server_sid)[0])
    assert out == [RegistrationNack(NackReason.AUTH_FAILED, eid)]
    assert n1.registration(eid) is None
    assert n1.reliable.sessions[pipe.server_sid].state == "up"


def test_a_nack_is_reported_and_a_rejected_only_refresh_resends_just_those() -> None:
    s = converged(2, 3)
    n1, n2 = s.nodes
    pipe = s.pipe(n1, n2)
    refused = Eid.prefix("10.1.0.2/32")
    nack = RegistrationNack(NackReason.LOCATORS_NOT_ALLOWED, refused).body()
    n1.reliable.receive(
        pipe.client_sid, pdu(TransportType.REGISTRATION_NACK, 9, nack), s.net.now
    )
    n1._collect(s.net.now)
    nacked = [e for _, e in n1.log if isinstance(e, RegistrationNacked)]
    assert nacked == [RegistrationNacked(N2, refused, "locator-set-not-allowed")]
    refresh = RegistrationRefresh(RefreshScope.ALL, rejected_only=True).body()
    n1.reliable.receive(
        pipe.client_sid, pdu(TransportType.REGISTRATION_REFRESH, 10, refresh), s.net.now
    )
    registers = [b for b in sent_pdus(n1.reliable.drain(pipe.client_sid)[0])]
    assert len(registers) == 1
    assert isinstance(registers[0], MapRegister)
    assert [Eid.from_wire(r.eid, r.mask_len) for r in registers[0].records] == [refused]


# ---------------------------------------------------------------- refresh scopes


@pytest.mark.parametrize(
    ("refresh", "expected"),
    [
        (
            RegistrationRefresh(RefreshScope.PREFIX, eid=Eid.prefix("10.1.0.2/32")),
            {"10.1.0.2/32"},
        ),
        (
            RegistrationRefresh(RefreshScope.COVERED, eid=Eid.prefix("10.1.0.0/31")),
            {"10.1.0.0/32", "10.1.0.1/32"},
        ),
        (
            RegistrationRefresh(RefreshScope.INSTANCE, eid=Eid.prefix("0.0.0.0/0", 7)),
            set(),
        ),
    ],
)
def test_a_scoped_refresh_is_answered_for_exactly_that_scope(
    refresh: RegistrationRefresh, expected: set[str]
) -> None:
    s = converged(2, 3)
    n1, _ = s.nodes
    pipe = s.pipe(n1, s.nodes[1])
    n1.reliable.receive(
        pipe.client_sid,
        pdu(TransportType.REGISTRATION_REFRESH, 3, refresh.body()),
        s.net.now,
    )
    got = {
        str(Eid.from_wire(r.eid, r.mask_len)).removeprefix("[0]")
        for b in sent_pdus(n1.reliable.drain(pipe.client_sid)[0])
        if isinstance(b, MapRegister)
        for r in b.records
    }
    assert got == expected


def test_the_family_and_instance_scopes_select_by_instance_and_address_family() -> None:
    v4 = Eid.prefix("10.0.0.1/32")
    v6 = Eid.prefix("2001:db8::1/128")
    other = Eid.prefix("10.0.0.1/32", 5)
    family = RegistrationRefresh(RefreshScope.FAMILY, eid=Eid.prefix("0.0.0.0/0"))
    instance = RegistrationRefresh(RefreshScope.INSTANCE, eid=Eid.prefix("::/0"))
    assert [in_scope(e, family) for e in (v4, v6, other)] == [True, False, False]
    assert [in_scope(e, instance) for e in (v4, v6, other)] == [True, True, False]


# ---------------------------------------------------------------- drops and fallback


def test_when_a_session_drops_the_etr_falls_back_to_udp_at_once() -> None:
    s = converged()
    n2 = s.nodes[1]
    s.net.trace.clear()
    s.cut(s.pipe(n2, s.nodes[0]))
    s.net.run(s.net.now + 1.0)
    assert registers_between(s, N2, N1) >= 1
    assert any(isinstance(e, SessionDown) for _, e in n2.log)


def test_after_a_drop_nothing_expires_before_its_lifetime_then_it_does() -> None:
    s = converged(2, 2)
    n1, n2 = s.nodes
    eid = Eid.prefix("10.2.0.1/32")
    dropped_at = s.net.now
    s.cut(s.pipe(n2, n1))
    s.net.remove(n2)  # n2 is gone: no UDP fallback reaches n1
    s.nodes.remove(n2)
    entry = n1.registration(eid)
    assert entry is not None
    lifetime = max(c.expires for c in entry.children.values()) - dropped_at
    assert lifetime == pytest.approx(
        n1.ms.lifetime(next(iter(entry.children.values())).record, True)
    )
    s.run(lifetime - 5.0, step=5.0)
    assert n1.registration(eid) is not None
    s.run(10.0)
    assert n1.registration(eid) is None


def test_after_a_drop_a_session_needs_a_new_udp_authentication() -> None:
    s = converged(2, 1)
    n1, n2 = s.nodes
    s.cut(s.pipe(n2, n1))
    # The authorisation went with the session:
    assert n1.reliable.accept((N2, 40001), s.net.now) is None
    assert n1.counters["drop.session-not-authenticated"] >= 1
    s.run(30)
    assert (N2, N1) in sessions_up(s)


def test_connection_attempts_to_a_peer_that_refuses_tcp_back_off() -> None:
    s = reliable_mesh(2, 1)
    s.unreachable.add(N1)
    s.run(600, step=1.0)
    tries = sum(1 for _, e in s.nodes[1].log if isinstance(e, SessionDown))
    attempts = s.nodes[1].reliable._next_sid - 1
    assert tries == 0
    # 1 s doubling to 60 s: about 15 tries in ten minutes, not 600.
    assert 5 <= attempts <= 20


def test_a_peer_reconnecting_replaces_its_old_session() -> None:
    s = converged(2, 1)
    n1, n2 = s.nodes
    old = s.pipe(n2, n1).server_sid
    n1.reliable.authorize(N2, s.net.now)
    new = n1.reliable.accept((N2, 40999), s.net.now)
    assert new is not None
    assert n1.reliable.sessions[old].state == "closed"
    # The registrations the old session held are not lost: still held, now
    # with a lifetime (the new session pins them again on its refresh).
    assert n1.registration(Eid.prefix("10.2.0.0/32")) is not None


def test_sessions_are_bounded_in_all() -> None:
    s = converged(3, 1, limits=Limits(max_sessions=2))
    assert all(len(n.reliable.sessions) <= 2 for n in s.nodes)
    assert sum(n.counters["drop.session-limit"] for n in s.nodes) >= 1


def test_a_nacked_registration_is_sent_again_at_the_next_round() -> None:
    s = converged(2, 3)
    n1, n2 = s.nodes
    pipe = s.pipe(n1, n2)
    refused = Eid.prefix("10.1.0.2/32")
    nack = RegistrationNack(NackReason.UNDEFINED, refused).body()
    n1.reliable.receive(
        pipe.client_sid, pdu(TransportType.REGISTRATION_NACK, 9, nack), s.net.now
    )
    s.pump()
    registrations = n2.counters["rx.session-registration"]
    s.run(n1.config.register_interval + 5.0, step=1.0)
    assert n2.counters["rx.session-registration"] == registrations + 1
