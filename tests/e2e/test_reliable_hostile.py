"""Hostile TCP peers against a live node's reliable-transport port (TCP 4342).

A client namespace of the lab (tests/e2e/hostile.py's Hostile) connects to
node 1 and breaks every rule decent.peer.transport.session states: garbage,
a Length too short or too long for a PDU, a wrong End Marker, a stream of
unusable PDUs, a flood of valid ones, a truncated PDU, a PDU that never
ends. The contract (decent.peer.transport.role): a connection from an
address that has not sent an authenticated UDP Map-Register with the r bit
since its last session is refused at once, with no data; a broken stream
is answered with an Error Notification (type 16) and closed. Through all
of it node 1 stays healthy, its memory stays put, and its session with
node 2 and its Map-Resolver go on serving.

The tests share one two-node lab and run in file order; the last one
checks the node as a whole after everything before it.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Final

import pytest

from decent.lab import CONTROL_PORT, NetnsLab, netns_unavailable
from decent.peer.display import time_value
from decent.wire import (
    DecodeError,
    Locator,
    MapNotify,
    MapRecord,
    MapRegister,
    decode,
)
from decent.wire.transport import (
    END_MARKER,
    ErrorCode,
    ErrorNotification,
    RefreshScope,
    RegistrationRefresh,
    TransportMessage,
    TransportType,
    decode_transport,
    pdu,
)
from tests.e2e.conftest import _FAILED, PREFIX
from tests.e2e.hostile import Hostile, in_namespace, receive

pytestmark = pytest.mark.e2e

_NET: Final = os.environ.get("DECENT_E2E_NET", "198.18")
#: The hostile host's xTR-ID, and the EID it registers (the group site takes
#: any prefix no member holds).
XTR_ID: Final = 0x5E55_1011_0000_0000_0000_0000_0000_0001
EID: Final = IPv4Address("10.66.0.1")
#: The node's PDU limit (Limits.max_frame's default) and, lowered here so
#: that a flood of valid PDUs reaches it in a few hundred, its PDU rate.
MAX_FRAME: Final = 16_384
FRAME_BURST: Final = 200
LIMITS: Final = f"""\
[limits]
session_frame_rate = 50.0
session_frame_burst = {float(FRAME_BURST)}
"""
#: Generous bounds (a loaded 2-core machine).
CONVERGE: Final = 60.0
AT_ONCE: Final = 10.0
#: What node 1's memory may grow by over every attack together.
RSS_GROWTH: Final = 64 << 20


# ---------------------------------------------------------------- the lab
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsLab]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"namespace lab unavailable: {reason}")
    the_lab = NetnsLab(
        f"{PREFIX}rh",
        f"{_NET}.93.0/24",
        nodes=2,
        ttl_minutes=5,
        workdir=tmp_path_factory.mktemp("reliable-hostile"),
    )
    try:
        the_lab.create()
        for i in (1, 2):
            the_lab.configure(i, decent={"reliable": True}, extra=LIMITS)
        the_lab.start_all()
        the_lab.wait_until(lambda: all_up(the_lab), CONVERGE, "the sessions up")
        yield the_lab
    finally:
        the_lab.destroy()
    assert the_lab.namespaces() == []


@pytest.fixture(autouse=True)
def _logs_on_failure(
    request: pytest.FixtureRequest, lab: NetnsLab, host: Peer
) -> Iterator[None]:
    yield
    host.close_sockets()
    if request.node.stash.get(_FAILED, False):
        for i in sorted(lab.nodes):
            print(f"--- {lab.prefix} n{i} log ---\n{lab.log_tail(i, 40)}")


@dataclass
class Before:
    """Node 1 before the first attack."""

    rss: int
    counters: dict[str, int]
    #: When its sessions with node 2 came up: no attack may restart them.
    up_since: dict[str, float]


@pytest.fixture(scope="module")
def before(lab: NetnsLab) -> Before:
    return Before(rss(lab, 1), counters(lab, 1), peer_sessions(lab))


@pytest.fixture(scope="module")
def host(lab: NetnsLab) -> Iterator[Peer]:
    peer = Peer(lab, Hostile(lab, "evil", 1))
    yield peer
    peer.close()


# ---------------------------------------------------------------- reading
def node_info(lab: NetnsLab, i: int) -> dict[str, Any]:
    info: dict[str, Any] = lab.api(i, "/api/node", timeout=10.0)
    return info


def counters(lab: NetnsLab, i: int) -> dict[str, int]:
    return dict(node_info(lab, i)["counters"])


def sessions(lab: NetnsLab, i: int) -> list[dict[str, Any]]:
    return list(node_info(lab, i)["reliable"]["sessions"])


def all_up(lab: NetnsLab) -> bool:
    """Both nodes' sessions with each other are up, both ways."""
    for i, j in ((1, 2), (2, 1)):
        peer = str(lab.node(j).rloc)
        ups = [
            s["direction"]
            for s in sessions(lab, i)
            if s["peer"] == peer and s["state"] == "up"
        ]
        if sorted(ups) != ["from-peer", "to-peer"]:
            return False
    return True


def peer_sessions(lab: NetnsLab) -> dict[str, float]:
    """When node 1's sessions with node 2 came up, by direction."""
    peer = str(lab.node(2).rloc)
    return {
        s["direction"]: time_value(s["up_since_at"]) or 0.0
        for s in sessions(lab, 1)
        if s["peer"] == peer and s["state"] == "up"
    }


def sessions_from(lab: NetnsLab, address: IPv4Address) -> list[dict[str, Any]]:
    return [s for s in sessions(lab, 1) if s["peer"] == str(address)]


def rss(lab: NetnsLab, i: int) -> int:
    """Node i's resident memory in bytes (`ip netns exec` execs decent, so
    the lab's pid is the node's own)."""
    proc = lab.node(i).process
    assert proc is not None
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def log_says(lab: NetnsLab, text: str) -> Callable[[], bool]:
    return lambda: text in lab.log_path(1).read_text(errors="replace")


def serving(lab: NetnsLab, before: Before) -> None:
    """Node 1 is healthy, its sessions with node 2 are the same ones as
    before the attacks, and its Map-Resolver answers over UDP."""
    assert lab.healthy(1)
    assert all_up(lab)
    # The same sessions: each came up when it did before the attacks (the
    # API derives the time from a monotonic age, so give it a millisecond).
    now = peer_sessions(lab)
    assert now.keys() == before.up_since.keys()
    assert all(abs(now[d] - t) < 0.01 for d, t in before.up_since.items()), now
    reply = lab.lookup_over_udp(1, "192.0.2.2", timeout=5.0)
    (record,) = reply.records
    assert [loc.address for loc in record.locators] == [lab.node(2).rloc]


# ---------------------------------------------------------------- the peer
@dataclass
class Closed:
    """What a connection received until the node ended it."""

    data: bytes
    how: str  # "closed" (FIN), "reset", or "open" (still open at the end)

    def pdus(self, *, partial: bool = False) -> list[TransportMessage]:
        """The PDUs received; with `partial`, a cut-off last one is left out
        (a reset may overtake the rest of it)."""
        out = []
        rest = self.data
        while rest:
            try:
                msg, length = decode_transport(rest)
            except DecodeError:
                if partial and len(rest) < MAX_FRAME:
                    break
                raise
            out.append(msg)
            rest = rest[length:]
        return out


class Peer:
    """The hostile host as a would-be reliable-transport peer of node 1."""

    def __init__(self, lab: NetnsLab, host: Hostile) -> None:
        self.lab = lab
        self.host = host
        self.udp = host.udp()
        self.nonces = itertools.count(1)
        self.key = lab.key.encode()
        self._sockets: list[socket.socket] = []

    @property
    def address(self) -> IPv4Address:
        return self.host.address

    @property
    def target(self) -> tuple[str, int]:
        return (str(self.lab.node(1).rloc), CONTROL_PORT)

    def close(self) -> None:
        self.close_sockets()
        self.host.close()

    def close_sockets(self) -> None:
        """Close every TCP connection made so far (a test that failed
        half-way leaves some open)."""
        for s in self._sockets:
            s.close()
        self._sockets.clear()

    def register(self, nonce: int, *, reliable: bool = True) -> bytes:
        """An authenticated Map-Register for EID, with the r bit."""
        record = MapRecord(EID, 32, (Locator(self.address),), 5, authoritative=True)
        msg = MapRegister(
            nonce,
            (record,),
            proxy_reply=True,
            ttl_timeout=True,
            want_map_notify=True,
            xtr_id=XTR_ID,
            reliable=reliable,
        )
        return msg.signed(self.key).encode()

    def authenticate(self, *, reliable: bool = True) -> None:
        """Send the UDP Map-Register with the r bit and wait for its
        Map-Notify: node 1 has then authorised a session from us (without
        the r bit, `reliable=False`: it has only taken the registration)."""
        nonce = next(self.nonces)
        self.udp.sendto(self.register(nonce, reliable=reliable), self.target)
        deadline = time.monotonic() + AT_ONCE
        while time.monotonic() < deadline:
            for data, _ in receive(self.udp, 1.0, until=1).datagrams:
                try:
                    msg = decode(data)
                except DecodeError:
                    continue
                if isinstance(msg, MapNotify) and msg.nonce == nonce:
                    return
        raise AssertionError("no Map-Notify for our Map-Register with the r bit")

    def connect(self, *, where: str = "host") -> socket.socket:
        """A TCP connection to node 1's control port, from the hostile
        namespace (or, `where="root"`, from the lab host's own address)."""

        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(AT_ONCE)
            if where == "root":
                s.bind((str(self.lab.host_address), 0))
            s.connect(self.target)
            return s

        s = make() if where == "root" else in_namespace(self.host.ns, make)
        self._sockets.append(s)
        return s

    def session(self) -> socket.socket:
        """Authenticate, connect, and take the Registration-Refresh with
        which the node opens a session."""
        self.authenticate()
        s = self.connect()
        (first,) = read_pdus(s, 1)
        assert first.msg_type == TransportType.REGISTRATION_REFRESH, first
        assert RegistrationRefresh.decode(first.data) == RegistrationRefresh(
            RefreshScope.ALL
        )
        return s


def read_pdus(s: socket.socket, count: int) -> list[TransportMessage]:
    """The next `count` whole PDUs from s."""
    buf = b""
    out: list[TransportMessage] = []
    s.settimeout(AT_ONCE)
    while len(out) < count:
        chunk = s.recv(65536)
        assert chunk, f"closed after {len(out)} PDUs"
        buf += chunk
        while True:
            try:
                msg, length = decode_transport(buf)
            except DecodeError:
                break
            out.append(msg)
            buf = buf[length:]
    assert buf == b"", buf
    return out


def until_closed(s: socket.socket, wait: float = AT_ONCE) -> Closed:
    """What s receives until the node closes or resets it, or `wait` s
    pass with nothing more."""
    data = b""
    s.settimeout(wait)
    try:
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return Closed(data, "reset")
            except TimeoutError:
                return Closed(data, "open")
            if not chunk:
                return Closed(data, "closed")
            data += chunk
    finally:
        s.close()


def header(msg_type: int, length: int, message_id: int = 1) -> bytes:
    return struct.pack("!HHI", msg_type, length, message_id)


# ---------------------------------------------------------------- the gate
def test_unauthenticated_connections_are_refused_at_once(
    lab: NetnsLab, host: Peer, before: Before
) -> None:
    # Never registered with the r bit: the hostile namespace, and this
    # host's own address on the bridge.
    for where in ("host", "root"):
        got = until_closed(host.connect(where=where))
        assert got.how in ("closed", "reset"), (where, got)
        assert got.data == b"", (where, got)
    after = counters(lab, 1)
    name = "drop.session-not-authenticated"
    assert after.get(name, 0) - before.counters.get(name, 0) == 2
    assert sessions_from(lab, host.address) == []
    serving(lab, before)


def test_a_session_needs_a_fresh_udp_register_each_time(
    lab: NetnsLab, host: Peer, before: Before
) -> None:
    # A registration accepted, but without the r bit: no session.
    host.authenticate(reliable=False)
    refused = until_closed(host.connect())
    assert (refused.how, refused.data) in (("closed", b""), ("reset", b""))
    s = host.session()
    lab.wait_until(
        lambda: [x["state"] for x in sessions_from(lab, host.address)] == ["up"],
        AT_ONCE,
        "node 1 to list our session",
    )
    s.close()
    lab.wait_until(
        lambda: sessions_from(lab, host.address) == [], AT_ONCE, "our session to end"
    )
    lab.wait_until(
        log_says(lab, f"session from {host.address} down (closed-by-peer)"), AT_ONCE
    )
    # Its end used up the authorisation: the next connection is refused.
    refused = until_closed(host.connect())
    assert refused.how in ("closed", "reset")
    assert refused.data == b""
    serving(lab, before)


# ---------------------------------------------------------------- broken streams
@dataclass(frozen=True)
class Broken:
    """A stream that breaks the framing, and what the node must answer."""

    data: bytes
    #: The Error Notification's code, its offending type, length and ID.
    error: tuple[int, int, int, int]
    #: The session's end, as node 1's log gives it.
    reason: str


_BAD_MARKER: Final = header(TransportType.REGISTRATION_REFRESH, 16, 7) + bytes(4)
BROKEN: Final = {
    "garbage": Broken(
        b"\xde\xad\xbe\xef" * 64, (ErrorCode.TOO_LARGE, 0xDEAD, 0xBEEF, 0), "bad-length"
    ),
    "http": Broken(
        b"GET / HTTP/1.1\r\nHost: decent\r\n\r\n",
        (ErrorCode.TOO_LARGE, 0x4745, 0x5420, 0),
        "bad-length",
    ),
    "length-too-short": Broken(
        header(TransportType.REGISTRATION, 4),
        (ErrorCode.MALFORMED, TransportType.REGISTRATION, 4, 0),
        "bad-length",
    ),
    "length-65535": Broken(
        header(TransportType.REGISTRATION, 0xFFFF) + bytes(64),
        (ErrorCode.TOO_LARGE, TransportType.REGISTRATION, 0xFFFF, 0),
        "bad-length",
    ),
    "bad-end-marker": Broken(
        _BAD_MARKER + struct.pack("!I", 0x12345678),
        (ErrorCode.MALFORMED, TransportType.REGISTRATION_REFRESH, 16, 7),
        "end-marker",
    ),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_stream_gets_an_error_notification_and_closes(
    lab: NetnsLab, host: Peer, before: Before, name: str
) -> None:
    case = BROKEN[name]
    assert MAX_FRAME < 0xBEEF  # the Length "garbage" and "length-65535" give
    s = host.session()
    s.sendall(case.data)
    got = until_closed(s)
    assert got.how in ("closed", "reset"), got
    (note,) = got.pdus()
    assert note.msg_type == TransportType.ERROR_NOTIFICATION, note
    error = ErrorNotification.decode(note.data)
    assert (
        error.code,
        error.offending_type,
        error.offending_length,
        error.offending_id,
    ) == case.error
    lab.wait_until(
        log_says(lab, f"session from {host.address} down ({case.reason})"), AT_ONCE
    )
    lab.wait_until(lambda: sessions_from(lab, host.address) == [], AT_ONCE)
    serving(lab, before)


def test_unusable_pdus_are_answered_then_the_session_ends(
    lab: NetnsLab, host: Peer, before: Before
) -> None:
    # Well framed, of a type no one defined: each gets an Error
    # Notification, a few of them (session_errors, 16) are forgiven.
    malformed = counters(lab, 1).get("drop.session-malformed", 0)
    # Fewer than the PDU burst, so that it is the errors that end it.
    unknown = b"".join(
        header(99, 12, k) + struct.pack("!I", END_MARKER)
        for k in range(1, FRAME_BURST // 2)
    )
    s = host.session()
    s.sendall(unknown)
    got = until_closed(s)
    assert got.how in ("closed", "reset"), got
    notes = [ErrorNotification.decode(m.data) for m in got.pdus()]
    assert len(notes) == 17, len(notes)
    assert {n.code for n in notes} == {ErrorCode.UNKNOWN_TYPE}
    assert [n.offending_id for n in notes] == list(range(1, 18))
    lab.wait_until(
        log_says(lab, f"session from {host.address} down (too-many-errors)"), AT_ONCE
    )
    assert counters(lab, 1)["drop.session-malformed"] - malformed == 17
    serving(lab, before)


def test_a_flood_of_valid_pdus_resets_the_session(
    lab: NetnsLab, host: Peer, before: Before
) -> None:
    # The same signed Registration again and again: the first is taken,
    # the replays refused, and past the burst the session is reset.
    s = host.session()
    registration = host.register(next(host.nonces))
    flood = b"".join(
        pdu(TransportType.REGISTRATION, k, registration)
        for k in range(1, 5 * FRAME_BURST)
    )
    s.sendall(flood)
    got = until_closed(s)
    # A reset (the shell aborts a flooding peer) may overtake what was
    # written before it; what did arrive is whole PDUs of the right kinds.
    assert got.how in ("closed", "reset"), got
    kinds = Counter(m.msg_type for m in got.pdus(partial=got.how == "reset"))
    assert set(kinds) <= {
        TransportType.REGISTRATION_ACK,
        TransportType.REGISTRATION_NACK,
        TransportType.ERROR_NOTIFICATION,
    }, kinds
    print(f"flood: {got.how} after {dict(kinds)}")
    lab.wait_until(log_says(lab, f"session from {host.address} down (flood)"), AT_ONCE)
    lab.wait_until(lambda: sessions_from(lab, host.address) == [], AT_ONCE)
    serving(lab, before)


def test_a_truncated_pdu_then_close_ends_the_session(
    lab: NetnsLab, host: Peer, before: Before
) -> None:
    s = host.session()
    s.sendall(header(TransportType.REGISTRATION, 100) + bytes(40))
    s.close()
    lab.wait_until(
        log_says(lab, f"session from {host.address} down (closed-by-peer)"), AT_ONCE
    )
    lab.wait_until(lambda: sessions_from(lab, host.address) == [], AT_ONCE)
    serving(lab, before)


def test_a_slow_loris_holds_one_bounded_session(
    lab: NetnsLab, host: Peer, before: Before
) -> None:
    # A PDU that never ends: the node holds at most max_frame bytes of it
    # (the Length it announced), and one session per peer. No timeout
    # ends it; a newer session from the same peer replaces it.
    slow = host.session()
    slow.sendall(header(TransportType.REGISTRATION, MAX_FRAME))
    for _ in range(20):
        slow.sendall(b"\x00" * 8)
        assert lab.healthy(1)
    lab.wait_until(
        lambda: (
            [(x["state"], x["bytes_in"]) for x in sessions_from(lab, host.address)]
            == [("up", 8 + 20 * 8)]
        ),
        AT_ONCE,
        "node 1 to hold what we sent of the PDU",
    )
    serving(lab, before)
    # More connections on one authorisation: one replaces the slow one, and
    # that ends the authorisation, so the rest are refused.
    host.authenticate()
    extra = [host.connect() for _ in range(5)]
    lab.wait_until(
        log_says(lab, f"session from {host.address} down (replaced)"), AT_ONCE
    )
    assert until_closed(slow).how in ("closed", "reset")
    ended = [until_closed(s, 2.0) for s in extra]
    assert [e.how for e in ended].count("open") == 1, ended
    assert [e.data for e in ended if e.how != "open"] == [b""] * 4
    lab.wait_until(lambda: sessions_from(lab, host.address) == [], AT_ONCE)
    serving(lab, before)


# ---------------------------------------------------------------- after it all
def test_the_node_is_unharmed(lab: NetnsLab, host: Peer, before: Before) -> None:
    assert sessions_from(lab, host.address) == []
    serving(lab, before)
    assert lab.healthy(2)
    grew = rss(lab, 1) - before.rss
    assert grew < RSS_GROWTH, f"RSS grew {grew >> 20} MiB"
    after = counters(lab, 1)
    assert after.get("drop.session-not-authenticated", 0) >= 4 + 4
    assert after.get("drop.session-malformed", 0) >= 17
    # Node 2's view: its session to node 1 was never disturbed.
    peer = str(lab.node(1).rloc)
    assert {
        s["direction"]
        for s in sessions(lab, 2)
        if s["peer"] == peer and s["state"] == "up"
    } == {"to-peer", "from-peer"}
    print(f"node 1 RSS {before.rss >> 20} -> {rss(lab, 1) >> 20} MiB")
