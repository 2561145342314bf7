"""In-memory UDP network with a virtual clock for driving sans-I/O nodes in tests."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Protocol

IP = IPv4Address | IPv6Address
Addr = tuple[IP, int]  # (ip, udp port); same shape as decent.peer.config.Addr
Wire = tuple[float, Addr, Addr, bytes]  # (send time, source, destination, payload)


class SansIONode(Protocol):
    """What SimNet needs from a node (aioquic's connection shape)."""

    def receive_datagram(
        self, data: bytes, addr: Addr, now: float, local: Addr | None = None
    ) -> None: ...
    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


def addr(ip: str, port: int = 4342) -> Addr:
    """Shorthand: ``addr("10.0.0.1")`` is ``(IPv4Address("10.0.0.1"), 4342)``."""
    return ip_address(ip), port


@dataclass(eq=False)
class Nat:
    """A home router's NAT (Linux MASQUERADE with conntrack): traffic from
    `inside` to anywhere else leaves from `public` on a port mapped per
    inside address and port; traffic back is let in only from the remote
    it went to, while the entry lasts (`timeout` seconds, refreshed both
    ways). `flush()` forgets every entry and mapping, as `conntrack -F`.
    With `forward`, ports 4341 and 4342 of `public` lead to that inside
    address (a port forward, as a home router's DNAT rule makes)."""

    inside: set[IP]
    public: IP
    timeout: float = 30.0
    forward: IP | None = None
    flushes: int = 0
    dropped: int = 0
    _ports: dict[Addr, int] = field(default_factory=dict)
    _back: dict[int, Addr] = field(default_factory=dict)
    _conns: dict[tuple[int, Addr], float] = field(default_factory=dict)

    def outbound(self, src: Addr, dst: Addr, now: float) -> Addr:
        port = self._ports.get(src)
        if port is None:
            # MASQUERADE keeps the source port when it can; after a flush
            # the test wants a new one, so shift by the number of flushes.
            port = src[1] + 1000 * self.flushes
            while port in self._back:
                port += 1
            self._ports[src], self._back[port] = port, src
        self._conns[(port, dst)] = now + self.timeout
        return self.public, port

    def inbound(self, dst: Addr, src: Addr, now: float) -> Addr | None:
        key = (dst[1], src)
        forwarded = dst[1] in (4341, 4342) and key not in self._conns
        if self.forward is not None and forwarded:
            return self.forward, dst[1]
        if self._conns.get(key, -1.0) < now:
            self.dropped += 1
            return None
        self._conns[key] = now + self.timeout
        return self._back[dst[1]]

    def flush(self) -> None:
        self.flushes += 1
        self._ports.clear()
        self._back.clear()
        self._conns.clear()


@dataclass(eq=False)
class _Host:
    node: SansIONode
    addrs: list[Addr]
    source: Addr | None
    stuck: int = 0  # consecutive handle_timer calls that left the deadline <= now


@dataclass(eq=False, kw_only=True)
class SimNet:
    """A deterministic network of sans-I/O nodes; time moves only in run()/settle().

    Link effects are applied when a datagram is sent, in this order: partition,
    ``drop`` predicate, ``loss``, ``duplicate``; then each copy is scheduled at
    ``now + delay + U(0, jitter)``, plus ``U(0, reorder_delay)`` with probability
    ``reorder``. A datagram whose destination has no listener at delivery time
    counts as ``undeliverable``. At equal times deliveries come before timers,
    and both keep FIFO order.
    """

    seed: InitVar[int] = 0
    delay: float = 0.001
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.05
    drop: Callable[[bytes, Addr, Addr], bool] | None = None
    record: bool = False
    trace_limit: int = 100_000  # trace keeps the first N; clear() it for a new window
    max_steps: int = 10_000_000  # events per run()/settle() before livelock is assumed
    stuck_limit: int = 1_000  # handle_timer calls that do not consume the deadline
    now: float = 0.0
    sent: int = field(default=0, init=False)
    delivered: int = field(default=0, init=False)
    lost: int = field(default=0, init=False)
    duplicated: int = field(default=0, init=False)
    undeliverable: int = field(default=0, init=False)
    trace: list[Wire] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._seq = itertools.count()
        self._flight: list[tuple[float, int, bytes, Addr, Addr]] = []
        self._hosts: list[_Host] = []
        self._listeners: dict[Addr, _Host] = {}
        self._cuts: set[frozenset[IP]] = set()
        self._nats: list[Nat] = []

    def add_nat(self, nat: Nat) -> Nat:
        """Put the addresses in `nat.inside` behind that NAT."""
        self._nats.append(nat)
        return nat

    def add(self, node: SansIONode, *addrs: Addr, source: Addr | None = None) -> None:
        """Attach ``node`` listening on ``addrs``.

        A datagram to destination ``d`` leaves from ``source`` if it has the IP
        version of ``d``, else from the node's first address of that version
        (so list ``(ip, 4342)`` before ``(ip, 4341)``). With none it is
        counted as undeliverable.
        """
        if not addrs or any(a in self._listeners for a in addrs):
            raise ValueError(f"need free addresses, got {addrs!r}")
        host = _Host(node, list(addrs), source)
        self._hosts.append(host)
        self._listeners.update(dict.fromkeys(addrs, host))

    def remove(self, node: SansIONode) -> None:
        """Detach ``node`` (a crash): datagrams still in flight to it are lost."""
        host = next(h for h in self._hosts if h.node is node)
        self._hosts.remove(host)
        for a in host.addrs:
            del self._listeners[a]

    def partition(self, a: IP, b: IP) -> None:
        """Drop every datagram sent between ``a`` and ``b`` (either direction)."""
        self._cuts.add(frozenset((a, b)))

    def heal(self, a: IP | None = None, b: IP | None = None) -> None:
        """Undo ``partition(a, b)``; with no arguments undo all partitions."""
        if a is None or b is None:
            self._cuts.clear()
        else:
            self._cuts.discard(frozenset((a, b)))

    @property
    def in_flight(self) -> int:
        return len(self._flight)

    def flush(self) -> None:
        """Put every node's queued datagrams in flight, sent at ``now``."""
        for host in self._hosts:
            self._flush(host)

    def run(self, until: float) -> None:
        """Deliver datagrams and fire timers in time order up to ``until``."""
        if until < self.now:
            raise ValueError(f"cannot run back in time: {until} < now {self.now}")
        self.flush()
        for _ in range(self.max_steps):
            if not self._step(until):
                self.now = until
                return
        raise AssertionError(f"SimNet livelock: {self.max_steps} events before {until}")

    def advance(self, seconds: float) -> None:
        self.run(self.now + seconds)

    def settle(self, max_seconds: float = 60.0) -> None:
        """Run until no datagram is in flight; timers may still be pending.

        ``now`` stays at the last event. Raises AssertionError if datagrams are
        still in flight after ``max_seconds`` (e.g. an endless ping-pong).
        """
        limit = self.now + max_seconds
        self.flush()
        for _ in range(self.max_steps):
            if not self._flight:
                return
            if not self._step(limit):
                raise AssertionError(
                    f"SimNet did not settle in {max_seconds}s:"
                    f" {len(self._flight)} datagrams in flight at t={self.now}"
                )
        raise AssertionError(f"SimNet livelock: {self.max_steps} events in settle()")

    def _step(self, limit: float) -> bool:
        """Process the earliest event due at or before ``limit``, if any."""
        t_msg = self._flight[0][0] if self._flight else math.inf
        t_timer, host = math.inf, None
        for h in self._hosts:
            t = h.node.get_timer()
            if t is not None and t < t_timer:
                t_timer, host = t, h
        if min(t_msg, t_timer) > limit:
            return False
        if t_msg <= t_timer:
            self.now, _, data, src, dst = heapq.heappop(self._flight)
            nat = next((n for n in self._nats if n.public == dst[0]), None)
            inside = None if nat is None else nat.inbound(dst, src, self.now)
            host = self._listeners.get(inside or dst)
            dst = inside or dst
            if host is None:
                self.undeliverable += 1
                return True
            self.delivered += 1
            host.node.receive_datagram(data, src, self.now, dst)
        else:
            assert host is not None
            self.now = max(self.now, t_timer)  # a deadline in the past fires now
            host.node.handle_timer(self.now)
            t = host.node.get_timer()
            host.stuck = host.stuck + 1 if t is not None and t <= self.now else 0
            if host.stuck >= self.stuck_limit:
                raise AssertionError(
                    f"SimNet: {host.node!r} at {host.addrs} keeps its timer at"
                    f" {t} after handle_timer({self.now}): deadline not consumed"
                )
        self._flush(host)
        return True

    def _flush(self, host: _Host) -> None:
        for data, dst in host.node.datagrams_to_send():
            self._send(host, data, dst)
        from_data = getattr(host.node, "data_datagrams_to_send", None)
        for data, dst in from_data() if from_data is not None else ():
            self._send(host, data, dst, 4341)

    def _send(self, host: _Host, data: bytes, dst: Addr, port: int = 0) -> None:
        """Send from the host's address of dst's family (on `port`, our
        data port, when that is one the host listens on)."""
        self.sent += 1
        version = dst[0].version
        src = host.source
        if src is None or src[0].version != version or port:
            src = next(
                (
                    a
                    for a in host.addrs
                    if a[0].version == version and (not port or a[1] == port)
                ),
                None,
            )
        if src is None:
            self.undeliverable += 1
            return
        for nat in self._nats:
            if src[0] in nat.inside and dst[0] not in nat.inside:
                src = nat.outbound(src, dst, self.now)
        if self.record and len(self.trace) < self.trace_limit:
            self.trace.append((self.now, src, dst, data))
        if (
            frozenset((src[0], dst[0])) in self._cuts
            or (self.drop is not None and self.drop(data, src, dst))
            or self._chance(self.loss)
        ):
            self.lost += 1
            return
        copies = 2 if self._chance(self.duplicate) else 1
        self.duplicated += copies - 1
        for _ in range(copies):
            at = self.now + self.delay
            if self.jitter:
                at += self._rng.uniform(0.0, self.jitter)
            if self._chance(self.reorder):
                at += self._rng.uniform(0.0, self.reorder_delay)
            heapq.heappush(self._flight, (at, next(self._seq), data, src, dst))

    def _chance(self, p: float) -> bool:
        return p > 0.0 and self._rng.random() < p
