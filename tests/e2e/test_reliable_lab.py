"""Reliable transport in a namespace lab: two 5,000-EID nodes registering over TCP.

draft-ietf-lisp-map-server-reliable-transport as decent.peer.transport.role
states it: once a member's session to a peer is up, its periodic UDP
Map-Registers to that peer stop, changes go over TCP with a per-EID ACK,
and what a session registered never times out while it is up. When the
session breaks, UDP registration resumes at once and nothing the peer held
expires early; when TCP works again, the sessions come back.

The tests share one lab (building it and registering 10,000 EIDs takes a
while) and run in file order: convergence, the quiet steady state, a new
EID, then the broken session.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Final

import pytest

from decent.lab import (
    CONTROL_PORT,
    DATA_PORT,
    GROUP,
    Frame,
    NetnsLab,
    netns_unavailable,
    read_frames,
)
from decent.peer.display import time_value
from decent.wire import (
    DECENT_CONTROL_IID,
    DecodeError,
    Eid,
    MapRegister,
    decapsulate,
    decode_udp_packet,
)
from decent.wire.transport import (
    RegistrationAck,
    TransportType,
    decode_transport,
    parse_body,
)
from tests.e2e.conftest import _FAILED, PREFIX

pytestmark = pytest.mark.e2e

#: EIDs per node besides the lab's own 192.0.2.i/32: 10.i.x.y/32.
EIDS: Final = 5_000
#: Short, so that periodic UDP registration would be plain on the wire.
INTERVAL: Final = 10.0
#: Minutes: a registration's lifetime, long against everything the tests wait.
TTL_MIN: Final = 5
#: TCP keepalive idle (TCP_USER_TIMEOUT is twice that): a session whose
#: peer went silent is noticed in about 8 s rather than 30.
KEEPALIVE: Final = 5.0
#: The EID node 1 adds while running (test_new_eid_goes_over_tcp_with_an_ack).
NEW_EID: Final = "10.1.250.1/32"
LIMITS: Final = """\
[limits]
# 5,001 EIDs of one registrant (the lab's own and the 5,000).
registrant_eids = 8192
# The UDP round and the session's first round come close together.
registrant_burst = 20000.0
# 5,001 records every 10 s is 500 a second over UDP once a session breaks.
registrant_rate = 2000.0
"""
#: Generous bounds (a loaded 2-core machine).
CONVERGE: Final = 120.0
SESSION_DOWN: Final = 60.0
#: A failed connection is retried after 1, 2, 4 ... up to 60 s.
SESSION_BACK: Final = 150.0
#: The window a capture must span: two registration periods and a half.
WINDOW: Final = 2.5 * INTERVAL
_NET: Final = os.environ.get("DECENT_E2E_NET", "198.18")
_TCP: Final = socket.IPPROTO_TCP
_UDP: Final = socket.IPPROTO_UDP
_MAP_REGISTER: Final = 3


def own_eids(i: int) -> list[str]:
    return [f"10.{i}.{k >> 8}.{k & 255}/32" for k in range(EIDS)]


# ---------------------------------------------------------------- the lab
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsLab]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"namespace lab unavailable: {reason}")
    the_lab = NetnsLab(
        f"{PREFIX}rl",
        f"{_NET}.94.0/24",
        nodes=2,
        ttl_minutes=TTL_MIN,
        register_interval=INTERVAL,
        workdir=tmp_path_factory.mktemp("reliable-lab"),
    )
    try:
        the_lab.create()
        for i in (1, 2):
            the_lab.configure(
                i,
                eids=[*the_lab.node(i).eids, *own_eids(i)],
                decent={"reliable": True, "reliable_keepalive": KEEPALIVE},
                extra=LIMITS,
            )
        the_lab.start_all()
        yield the_lab
    finally:
        the_lab.destroy()
    assert the_lab.namespaces() == []


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, lab: NetnsLab) -> Iterator[None]:
    yield
    if request.node.stash.get(_FAILED, False):
        for i in sorted(lab.nodes):
            print(f"--- {lab.prefix} n{i} log ---\n{lab.log_tail(i, 40)}")


def other(i: int) -> int:
    return 3 - i


def sessions(lab: NetnsLab, i: int) -> list[dict[str, Any]]:
    """Node i's reliable-transport sessions, as /api/node shows them."""
    reliable = lab.api(i, "/api/node", timeout=10.0)["reliable"]
    assert reliable["enabled"] is True
    return list(reliable["sessions"])


def up(lab: NetnsLab, i: int) -> set[tuple[str, str]]:
    """(peer, direction) of node i's sessions that are up."""
    return {(s["peer"], s["direction"]) for s in sessions(lab, i) if s["state"] == "up"}


def both_ways(lab: NetnsLab, i: int) -> set[tuple[str, str]]:
    peer = str(lab.node(other(i)).rloc)
    return {(peer, "to-peer"), (peer, "from-peer")}


def all_up(lab: NetnsLab) -> bool:
    return all(up(lab, i) == both_ways(lab, i) for i in (1, 2))


def session(lab: NetnsLab, i: int, direction: str) -> dict[str, Any]:
    (found,) = [s for s in sessions(lab, i) if s["direction"] == direction]
    return found


def counter(lab: NetnsLab, i: int, name: str) -> int:
    return int(lab.api(i, "/api/node", timeout=10.0)["counters"].get(name, 0))


def registrations(lab: NetnsLab, i: int) -> int:
    return int(lab.api(i, "/api/node", timeout=10.0)["counts"]["registrations"])


def expected_registrations(lab: NetnsLab) -> int:
    """What each node holds once converged: every EID of both, their
    names, and the group's membership entry."""
    return sum(len(n.eids) for n in lab.nodes.values()) + len(lab.nodes) + 1


def children_from(lab: NetnsLab, i: int, j: int) -> dict[str, dict[str, Any]]:
    """Node j's registrations held by node i, by EID (from /api/sites)."""
    rloc = str(lab.node(j).rloc)
    out = {}
    for site in lab.api(i, "/api/sites", timeout=60.0):
        for child in site["registrations"]:
            if child["registrant"] == rloc:
                out[site["eid"].removeprefix("[0]")] = child
    return out


def lookup(lab: NetnsLab, i: int, eid: str) -> dict[str, Any]:
    address = eid.split("/")[0]
    answer: dict[str, Any] = lab.api(i, f"/api/lookup?eid={address}", timeout=10.0)
    return answer


# ---------------------------------------------------------------- the wire
def is_udp_map_register(f: Frame) -> bool:
    """A Map-Register on UDP: on the control port (type 3), or replicated on
    the data port (instance ID 0xffffff around a UDP 4342 type-3 inner)."""
    if f.proto != _UDP or not f.payload:
        return False
    if CONTROL_PORT in (f.sport, f.dport):
        return f.payload[0] >> 4 == _MAP_REGISTER
    if DATA_PORT not in (f.sport, f.dport):
        return False
    try:
        header, inner = decapsulate(f.payload)
        packet = decode_udp_packet(inner)
    except DecodeError:
        return False
    return (
        header.instance_id == DECENT_CONTROL_IID
        and packet.dport == CONTROL_PORT
        and packet.payload[:1] != b""
        and packet.payload[0] >> 4 == _MAP_REGISTER
    )


def between(lab: NetnsLab, frames: list[Frame]) -> list[Frame]:
    """Frames from one node's RLOC to the other's (or to the group)."""
    rlocs = {n.rloc for n in lab.nodes.values()}
    to = rlocs | {IPv4Address(GROUP)}
    return [f for f in frames if f.src in rlocs and f.dst in to and f.src != f.dst]


def udp_registers(lab: NetnsLab, frames: list[Frame]) -> list[Frame]:
    return [f for f in between(lab, frames) if is_udp_map_register(f)]


def session_tcp(lab: NetnsLab, frames: list[Frame]) -> list[Frame]:
    return [
        f
        for f in between(lab, frames)
        if f.proto == _TCP and CONTROL_PORT in (f.sport, f.dport)
    ]


def pdus(stream: bytes) -> list[tuple[int, object]]:
    """(type, body) of each PDU of a captured session byte stream."""
    out: list[tuple[int, object]] = []
    while stream:
        msg, length = decode_transport(stream)
        out.append((msg.msg_type, parse_body(msg)))
        stream = stream[length:]
    return out


def stream(frames: list[Frame], src: IPv4Address, dst: IPv4Address) -> bytes:
    """The TCP payload from src to dst, in capture order (the lab's bridge
    loses nothing, so there are no retransmissions to weed out)."""
    return b"".join(
        f.payload for f in frames if f.proto == _TCP and (f.src, f.dst) == (src, dst)
    )


class RegisterRounds:
    """Counts each node's registration rounds by the refresh times of its
    own first EID in its own Map-Server (the round registers there too)."""

    def __init__(self, lab: NetnsLab) -> None:
        self.lab = lab
        self.seen: dict[int, set[str]] = {i: set() for i in lab.nodes}
        self.poll()
        self.first = {i: set(s) for i, s in self.seen.items()}

    def poll(self) -> None:
        for i in self.lab.nodes:
            entry = lookup(self.lab, i, own_eids(i)[0])["entry"]
            rloc = str(self.lab.node(i).rloc)
            for child in entry["registrations"]:
                if child["registrant"] == rloc:
                    self.seen[i].add(child["last_registered_at"])

    def at_least(self, rounds: int) -> Callable[[], bool]:
        def done() -> bool:
            self.poll()
            return all(
                len(self.seen[i] - self.first[i]) >= rounds for i in self.lab.nodes
            )

        return done


class Sampler:
    """Reads each node's registration count in a thread, a few times a
    second, until stopped: the lowest count each node ever showed."""

    def __init__(self, lab: NetnsLab) -> None:
        self.lab = lab
        self.low: dict[int, int] = {}
        self.samples = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for i in self.lab.nodes:
                try:
                    count = registrations(self.lab, i)
                except (OSError, ValueError) as exc:
                    self.errors.append(f"n{i}: {exc}")
                    continue
                self.low[i] = min(self.low.get(i, count), count)
            self.samples += 1
            self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30.0)


# ---------------------------------------------------------------- a.
def test_sessions_come_up_and_carry_every_registration(lab: NetnsLab) -> None:
    took = lab.wait_until(lambda: all_up(lab), CONVERGE, "both sessions up both ways")
    want = expected_registrations(lab)
    lab.wait_until(
        lambda: all(registrations(lab, i) == want for i in (1, 2)),
        CONVERGE,
        f"both nodes to hold {want} registrations",
    )
    print(f"sessions up {took:.1f} s after the start")
    for i in (1, 2):
        j = other(i)
        theirs = {f"{e}" for e in lab.node(j).eids}
        # What the session from j holds: j's EIDs, its name and its
        # membership child, none of them timing out.
        held = session(lab, i, "from-peer")
        sent = session(lab, i, "to-peer")
        assert held["registrations_held"] == len(theirs) + 2, held
        assert sent["registrations_sent"] == len(lab.node(i).eids) + 2, sent
        assert sent["refused"] == 0, sent
        # An ACK for each: the peer took every one of them.
        assert counter(lab, i, "rx.session-ack") >= sent["registrations_sent"]
        assert counter(lab, i, "rx.session-registration") > 0
        children = children_from(lab, i, j)
        got = {e for e in children if e in theirs}
        assert got == theirs, f"n{i} lacks {len(theirs - got)} of n{j}'s EIDs"
        assert all(children[e]["held_by_session"] for e in theirs)
        assert all(children[e]["ttl_s"] is None for e in theirs)
        assert all(children[e]["expires_at"] is None for e in theirs)


# ---------------------------------------------------------------- b.
def test_steady_state_sends_no_udp_registration(lab: NetnsLab, tmp_path: Path) -> None:
    lab.wait_until(lambda: all_up(lab), CONVERGE, "both sessions up both ways")
    before = {i: registrations(lab, i) for i in (1, 2)}
    with lab.capture(tmp_path / "steady.pcap", "udp or tcp port 4342") as pcap:
        start = time.monotonic()
        rounds = RegisterRounds(lab)
        # Each node registers every INTERVAL (to its own Map-Server at
        # least); two rounds each, and the window, and it is a fair sample.
        lab.wait_until(rounds.at_least(2), 6 * INTERVAL, "two registration rounds")
        lab.wait_until(lambda: time.monotonic() - start >= WINDOW, 2 * WINDOW)
        window = time.monotonic() - start
    frames = read_frames(pcap)
    registers = udp_registers(lab, frames)
    assert registers == [], f"{len(registers)} UDP Map-Registers in {window:.0f} s"
    tcp = session_tcp(lab, frames)
    payload = sum(len(f.payload) for f in tcp)
    print(f"{window:.1f} s steady: {len(tcp)} TCP 4342 packets, {payload} bytes")
    # Keepalives only: no PDU goes while nothing changes.
    assert payload == 0, pdus(b"".join(f.payload for f in tcp))
    # Two connections, each end probing (and answered) after KEEPALIVE s
    # idle: 8 packets a period; twice that is still little.
    assert len(tcp) <= 2 * 8 * (window / KEEPALIVE + 1), len(tcp)
    assert all_up(lab)
    assert {i: registrations(lab, i) for i in (1, 2)} == before


# ---------------------------------------------------------------- c.
def test_new_eid_goes_over_tcp_with_an_ack(lab: NetnsLab, tmp_path: Path) -> None:
    lab.wait_until(lambda: all_up(lab), CONVERGE, "both sessions up both ways")
    acks = counter(lab, 1, "rx.session-ack")
    taken = counter(lab, 2, "rx.session-registration")
    n1, n2 = lab.node(1).rloc, lab.node(2).rloc
    assert lookup(lab, 2, NEW_EID)["found"] is False
    with lab.capture(tmp_path / "new-eid.pcap", "udp or tcp port 4342") as pcap:
        lab.configure(1, eids=[*lab.node(1).eids, NEW_EID])
        lab.reload(1)  # SIGHUP: the operator's way to apply [[database]]

        def held_by_n2() -> bool:
            answer = lookup(lab, 2, NEW_EID)
            return bool(answer["found"]) and answer["entry"]["eid"] == f"[0]{NEW_EID}"

        lab.wait_until(held_by_n2, 4 * INTERVAL, f"n2 to hold {NEW_EID}")
        lab.wait_until(
            lambda: counter(lab, 1, "rx.session-ack") > acks,
            4 * INTERVAL,
            "n1 to have the ACK",
        )
    entry = lookup(lab, 2, NEW_EID)["entry"]
    (child,) = entry["registrations"]
    assert child["registrant"] == str(n1)
    assert child["held_by_session"] is True
    assert [r["address"] for r in entry["rlocs"]] == [str(n1)]
    assert counter(lab, 1, "rx.session-ack") - acks >= 1
    assert counter(lab, 2, "rx.session-registration") - taken >= 1
    assert (
        session(lab, 2, "from-peer")["registrations_held"] == len(lab.node(1).eids) + 2
    )

    frames = read_frames(pcap)
    assert udp_registers(lab, frames) == []
    new = Eid.prefix(NEW_EID)
    sent = pdus(stream(frames, n1, n2))
    registered = [
        Eid.from_wire(rec.eid, rec.mask_len)
        for kind, body in sent
        if kind == TransportType.REGISTRATION and isinstance(body, MapRegister)
        for rec in body.records
    ]
    assert new in registered, sent
    answered = pdus(stream(frames, n2, n1))
    assert any(
        kind == TransportType.REGISTRATION_ACK
        and isinstance(body, RegistrationAck)
        and body.eid == new
        for kind, body in answered
    ), answered
    assert all_up(lab)


# ---------------------------------------------------------------- d.
def _block(lab: NetnsLab, i: int, add: bool) -> None:
    """Reset every TCP 4342 segment reaching node i, either port."""
    op = "-I" if add else "-D"
    for port in ("--dport", "--sport"):
        lab.exec(
            i,
            *("iptables", op, "INPUT", "-p", "tcp", port, str(CONTROL_PORT)),
            *("-j", "REJECT", "--reject-with", "tcp-reset"),
            check=True,
        )


@pytest.mark.skipif(
    shutil.which("iptables") is None, reason="iptables not installed (Debian: iptables)"
)
def test_broken_session_falls_back_to_udp_and_comes_back(
    lab: NetnsLab, tmp_path: Path
) -> None:
    lab.wait_until(lambda: all_up(lab), CONVERGE, "both sessions up both ways")
    want = expected_registrations(lab)
    assert [registrations(lab, i) for i in (1, 2)] == [want, want]
    rlocs = {i: lab.node(i).rloc for i in (1, 2)}
    sampler = Sampler(lab)
    blocked = False
    try:
        with lab.capture(tmp_path / "fallback.pcap", "udp or tcp port 4342") as pcap:
            _block(lab, 2, True)
            blocked = True
            broke_at, broke_wall = time.monotonic(), time.time()

            def registering_both_ways() -> bool:
                seen = {(f.src, f.dst) for f in udp_registers(lab, read_frames(pcap))}
                return {(rlocs[1], rlocs[2]), (rlocs[2], rlocs[1])} <= seen

            lab.wait_until(
                lambda: not up(lab, 1) and not up(lab, 2),
                SESSION_DOWN,
                "both nodes to see their sessions down",
            )
            lab.wait_until(
                registering_both_ways, SESSION_DOWN, "UDP Map-Registers both ways"
            )
            # And they go on, period after period, while TCP is blocked.
            rounds = RegisterRounds(lab)
            lab.wait_until(rounds.at_least(2), 6 * INTERVAL, "two more rounds")
            for i in (1, 2):
                sent = [
                    f.time
                    for f in udp_registers(lab, read_frames(pcap))
                    if f.src == rlocs[i]
                ]
                assert max(sent) - min(sent) >= INTERVAL / 2, f"n{i}: one round"

            # Every registration a session held now times out normally
            # from the drop (or later: UDP refreshes it), never earlier.
            for i in (1, 2):
                j = other(i)

                def refreshed(i: int = i, j: int = j) -> bool:
                    children = children_from(lab, i, j)
                    return all(
                        (time_value(c["last_registered_at"]) or 0) > broke_wall
                        for c in children.values()
                    )

                lab.wait_until(
                    refreshed, 6 * INTERVAL, f"n{j}'s UDP registrations on n{i}"
                )
                children = children_from(lab, i, j)
                since = time.monotonic() - broke_at
                assert set(lab.node(j).eids) <= set(children)
                ttls = [c["ttl_s"] for c in children.values()]
                assert None not in ttls, "still held by a session that is gone"
                assert not any(c["held_by_session"] for c in children.values())
                assert min(ttls) >= TTL_MIN * 60 - since - 2.0, (min(ttls), since)
                assert max(ttls) <= TTL_MIN * 60, max(ttls)
            held_for = time.monotonic() - broke_at
            _block(lab, 2, False)
            blocked = False
            took = lab.wait_until(
                lambda: all_up(lab), SESSION_BACK, "the sessions to come back"
            )
    finally:
        sampler.stop()
        if blocked:
            _block(lab, 2, False)
    print(
        f"blocked {held_for:.0f} s; sessions back {took:.1f} s after unblocking; "
        f"{sampler.samples} samples of the registration counts"
    )
    frames = read_frames(pcap)
    assert udp_registers(lab, frames), "no UDP Map-Register after the break"
    assert sampler.samples > 10
    assert sampler.low == {1: want, 2: want}, sampler.errors[-3:]
    for i in (1, 2):
        j = other(i)
        held = session(lab, i, "from-peer")
        assert held["registrations_held"] == len(lab.node(j).eids) + 2, held
    assert [registrations(lab, i) for i in (1, 2)] == [want, want]
