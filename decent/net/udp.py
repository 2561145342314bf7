"""The asyncio shell around a Node: sockets, drain loops, timers, event logging.

Why not asyncio-dgram here: a future, a task switch and a queue hop per
datagram cost about three times the receive CPU of a bounded drain loop on
`loop.add_reader` (benchmarks/bench_socket.py: 10.8 against 3.7 us each), a
third of the 33 us a node has per request at the 30k Map-Requests/s it must
answer. The drain loop also keeps all protocol work synchronous in one
callback.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Protocol

from decent.net.kernel import SO_RCVBUFFORCE, interface_index
from decent.net.logtext import LineBudget, describe, event_level, event_name
from decent.peer.config import Addr
from decent.peer.events import Event
from decent.peer.node import Node
from decent.wire import IPAddress

log = logging.getLogger("decent")
#: Datagrams handled per wake-up before yielding to the loop (libuv uses 32).
DRAIN = 64
#: Event lines logged per second and per kind of line (event and level,
#: [node] log_rate), and the burst allowed above it ([node] log_burst): a
#: flood of registrations (100k EIDs in a few seconds) once wrote hundreds of
#: MB of log lines; what is held back is counted and summarised in one line
#: per kind (SUMMARY_INTERVAL). See decent.net.logtext.LineBudget.
LOG_RATE = 20.0
LOG_BURST = 100
#: Seconds between the first line held back and the summary of all held back.
SUMMARY_INTERVAL = 1.0
_IP_MULTICAST_ALL = 49  # Linux: deliver only groups this socket joined


class BindError(OSError):
    """A socket of open_sockets could not be set up; `key` names the config
    key to change ("control_port", "data_port" or "group") and `where` the
    address it was for."""

    def __init__(self, exc: OSError, key: str, where: str) -> None:
        super().__init__(exc.errno, exc.strerror or str(exc))
        self.key = key
        self.where = where


@dataclass
class Sockets:
    control: socket.socket
    data: socket.socket
    group: socket.socket | None = None


#: Receive buffer asked for: a burst of Map-Requests (or one period's
#: replicated registrations from a large group) waits here while the drain
#: loop catches up; the kernel default (~200 KB) overflowed at 30k/s offered.
RCVBUF = 4 << 20


def _bound(family: int, host: str, port: int, reuse: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:  # root (CAP_NET_ADMIN) may exceed net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def open_sockets(
    rloc: IPAddress,
    control_port: int,
    data_port: int,
    *,
    group: IPAddress | None = None,
    multicast: bool = False,
    multicast_ttl: int = 1,
) -> Sockets:
    """Bind the control and data sockets on rloc, and in multicast mode a
    third socket bound to the group and joined to it on rloc's interface.
    Raises BindError naming the port (or the group) that failed."""
    family = socket.AF_INET6 if rloc.version == 6 else socket.AF_INET
    # No SO_REUSEADDR here, even in multicast mode: only the group socket
    # (bound to G, not to rloc) shares the port, and it alone needs the
    # option. With it here a second node on rloc:port would bind silently.
    try:
        control = _bound(family, str(rloc), control_port)
    except OSError as exc:
        raise BindError(exc, "control_port", _where(rloc, control_port)) from None
    try:
        data = _bound(family, str(rloc), data_port)
    except OSError as exc:
        control.close()
        raise BindError(exc, "data_port", _where(rloc, data_port)) from None
    sockets = Sockets(control, data)
    if not (multicast and group is not None):
        return sockets
    v4 = group.version == 4
    try:
        rx = _bound(
            socket.AF_INET if v4 else socket.AF_INET6,
            str(group),
            control_port,
            reuse=True,
        )
    except OSError as exc:
        control.close()
        data.close()
        raise BindError(exc, "control_port", _where(group, control_port)) from None
    try:
        if v4:
            control.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, rloc.packed)
            control.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, multicast_ttl
            )
            # We deliver to ourselves by unicast; hearing our own multicast
            # copy would only be dropped as a replayed nonce.
            control.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            rx.setsockopt(
                socket.IPPROTO_IP,
                socket.IP_ADD_MEMBERSHIP,
                struct.pack("4s4s", group.packed, rloc.packed),
            )
            rx.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
        else:
            index = interface_index(rloc)
            control.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
            control.setsockopt(
                socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, multicast_ttl
            )
            control.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            rx.setsockopt(
                socket.IPPROTO_IPV6,
                socket.IPV6_JOIN_GROUP,
                group.packed + struct.pack("@I", index),
            )
    except OSError as exc:
        for sock in (control, data, rx):
            sock.close()
        raise BindError(exc, "group", f"{group} on {rloc}") from None
    sockets.group = rx
    return sockets


def _where(host: IPAddress, port: int) -> str:
    return f"[{host}]:{port}" if host.version == 6 else f"{host}:{port}"


class Rider(Protocol):
    """A layer riding on the node (the data plane): takes its events."""

    def handle_event(self, event: Event, now: float) -> None: ...

    def next_event(self) -> Event | None: ...


class NodeShell:
    """Feeds a Node from its sockets and the loop clock; sends what it queues.

    The Node never sees a socket; the shell never makes a protocol decision.
    It owns the control and data sockets of every RLOC; a data plane riding
    on the node borrows the data sockets (`data_sockets`, `data_drain`).
    """

    def __init__(
        self,
        node: Node,
        sockets: Sockets,
        loop: asyncio.AbstractEventLoop,
        *,
        on_event: Callable[[Event], None] | None = None,
        log_rate: float = LOG_RATE,
        log_burst: int = LOG_BURST,
    ) -> None:
        """`log_rate` and `log_burst` bound the event lines logged, per
        kind of line (a token bucket each); the rest are summarised.
        `on_event` is called with every event; so is each callback passed
        to `subscribe`."""
        self._budget = LineBudget(log_rate, log_burst)
        self.node = node
        #: Our first RLOC's sockets: what we send leaves from these.
        self.sockets = sockets
        #: The sockets of our second and later RLOCs, in node.config.rlocs
        #: order (opened by start); None for one that could not be bound.
        self._more: list[Sockets | None] = []
        #: While a data plane rides, what the data sockets' readers call
        #: instead of draining into the node (its zero-copy drain loop,
        #: which hands the node the replicated control traffic itself).
        self.data_drain: Callable[[socket.socket], None] | None = None
        self.loop = loop
        self.on_event = on_event
        self._subscribers: list[Callable[[Event], None]] = []
        self.errors: Counter[str] = Counter()
        self.events: deque[tuple[float, Event]] = deque(maxlen=500)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        #: Called at the end of every flush (the data plane sends what a
        #: control input released, e.g. packets waiting for a mapping).
        self.after_flush: Callable[[], None] | None = None
        #: Called in every flush: the reliable-transport sessions' shell
        #: (decent.net.reliable) writes what the node queued on them.
        self.streams: Callable[[], None] | None = None
        #: Called in every flush: pull mode's DNS (decent.net.dns) asks
        #: the names the node wants resolved.
        self.dns: Callable[[], None] | None = None
        self.riders: list[Rider] = []
        self._addr_memo: dict[str, IPAddress] = {}
        self._host_memo: dict[IPAddress, str] = {}
        self._summary: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Open the sockets of our second and later RLOCs, read them all."""
        self._read(self.sockets, self.node.config.rlocs[0])
        self._open_more()
        self.flush()

    def data_sockets(self) -> list[socket.socket | None]:
        """Each RLOC's data socket, in node.config.rlocs order (None: it could
        not be bound): a riding data plane borrows them, to drain them."""
        return [self.sockets.data, *(None if s is None else s.data for s in self._more)]

    def release_sockets(self) -> None:
        """Close the sockets of our second and later RLOCs, before our RLOCs
        change: one of those may become the first, whose sockets are bound
        next. `replace_sockets` opens them again."""
        more, self._more = self._more, []
        for sockets in more:
            if sockets is not None:
                self._close(sockets)

    def replace_sockets(self, sockets: Sockets | None = None) -> None:
        """After release_sockets (and node.change_rlocs, if it came to that):
        take `sockets`, bound to our (new) first RLOC, closing the old ones
        (None keeps them), then open those of the other RLOCs."""
        if sockets is not None:
            self._close(self.sockets)
            self.sockets = sockets
            self._read(sockets, self.node.config.rlocs[0])
        self._open_more()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._log_summary()
        self.release_sockets()
        self._close(self.sockets)

    def _open_more(self) -> None:
        cfg = self.node.config
        for rloc in cfg.rlocs[1 + len(self._more) :]:
            try:
                sockets = open_sockets(rloc, cfg.control_port, cfg.data_port)
            except BindError as exc:
                # The other RLOCs carry on; a data plane marks this one down.
                log.warning(
                    "RLOC %s skipped: cannot bind %s (%s); every [node] rlocs "
                    "address must be on this host, its ports free",
                    rloc,
                    exc.where,
                    exc.strerror,
                )
                self._more.append(None)
                continue
            self._read(sockets, rloc)
            self._more.append(sockets)

    def _read(self, sockets: Sockets, rloc: IPAddress) -> None:
        add, local = self.loop.add_reader, (rloc, self.node.config.control_port)
        add(sockets.control.fileno(), self._drain, sockets.control, False, local)
        add(sockets.data.fileno(), self._data_readable, sockets.data)
        if sockets.group is not None:
            add(sockets.group.fileno(), self._drain, sockets.group, False, local)

    def _close(self, sockets: Sockets) -> None:
        for sock in (sockets.control, sockets.data, sockets.group):
            if sock is not None:
                self.loop.remove_reader(sock.fileno())
                sock.close()

    def _data_readable(self, sock: socket.socket) -> None:
        # Asked once a wake-up, not per datagram: the data plane's drain
        # reads straight into its own buffer.
        drain = self.data_drain
        if drain is None:
            self._drain(sock, True)
        else:
            drain(sock)

    def _peer(self, host: str, port: int) -> Addr:
        addr = self._addr_memo.get(host)
        if addr is None:
            if len(self._addr_memo) > 4096:
                self._addr_memo.clear()
            addr = self._addr_memo[host] = ip_address(host.partition("%")[0])
        return (addr, port)

    def _drain(
        self, sock: socket.socket, data_port: bool, local: Addr | None = None
    ) -> None:
        """Feed up to DRAIN datagrams to the node; `local` is the address
        they arrived at (the control port of one of our RLOCs)."""
        # Names hoisted out of the loop: this runs once per datagram.
        rx_data, rx_control = self.node.receive_data_packet, self.node.receive_datagram
        recvfrom, memo, peer = sock.recvfrom, self._addr_memo, self._peer
        now = self.loop.time()
        for _ in range(DRAIN):
            try:
                payload, (host, port, *_) = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP port unreachable reported late
                self.errors[f"recv.{errno.errorcode.get(exc.errno or 0, 'error')}"] += 1
                break
            addr = memo.get(host)
            src = (addr, port) if addr is not None else peer(host, port)
            if data_port:
                rx_data(payload, src, now)
            else:
                rx_control(payload, src, now, local)
        self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.node.handle_timer(self.loop.time())
        self.flush()

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call `callback` with every event, the node's and its riders',
        during the flush after the input that caused it (after `on_event`,
        in the order subscribed): the snapshot and the status page learn of
        changes this way rather than by polling the node."""
        self._subscribers.append(callback)

    def ride(self, rider: Rider) -> None:
        """Carry a layer on top of the node (the data plane): it gets every
        node event after each input, and its own events are reported too."""
        self.riders.append(rider)

    def flush(self) -> None:
        """Send what the node queued, report its events (and hand them to the
        riders, which may queue more), re-arm its timer."""
        node = self.node
        now = self.loop.time()
        self._send(node.datagrams_to_send())
        self._send(node.data_datagrams_to_send(), from_data=True)
        while self._report(now):
            self._send(node.datagrams_to_send())
            self._send(node.data_datagrams_to_send(), from_data=True)
        when = node.get_timer()
        if when != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = (
                None if when is None else self.loop.call_at(when, self._on_timer)
            )
            self._timer_at = when
        if self.streams is not None:
            self.streams()
        if self.dns is not None:
            self.dns()
        if self.after_flush is not None:
            self.after_flush()

    def _send(
        self, datagrams: list[tuple[bytes, Addr]], from_data: bool = False
    ) -> None:
        """Send from our data port what goes to a data port, or what the
        node asks to (`from_data`: through a NAT binding to any port)."""
        data_port = self.node.config.data_port
        control, data_sock = self.sockets.control, self.sockets.data
        hosts = self._host_memo
        for payload, (ip, port) in datagrams:
            sock = data_sock if from_data or port == data_port else control
            host = hosts.get(ip)
            if host is None:  # str(IPv4Address) costs a microsecond a reply
                if len(hosts) > 4096:
                    hosts.clear()
                host = hosts[ip] = str(ip)
            try:
                sock.sendto(payload, (host, port))
            except OSError as exc:
                # Unreachable peers and full buffers are the network's business;
                # the protocol retransmits what matters.
                self.errors[f"send.{errno.errorcode.get(exc.errno or 0, 'error')}"] += 1

    def _report(self, now: float) -> int:
        """Log and pass on the node's events, then the riders'; how many."""
        seen = 0
        riders = self.riders
        while (event := self.node.next_event()) is not None:
            seen += 1
            self._note(event, now)
            for rider in riders:
                rider.handle_event(event, now)
        for rider in riders:
            while (event := rider.next_event()) is not None:
                self._note(event, now)
        return seen

    def _note(self, event: Event, now: float) -> None:
        self.events.append((now, event))
        level = event_level(event)
        # A line the level hides costs no formatting and no summary entry.
        if log.isEnabledFor(level):
            self._log_event(event, level, now)
        if self.on_event is not None:
            self.on_event(event)
        for callback in self._subscribers:
            callback(event)

    def _log_event(self, event: Event, level: int, now: float) -> None:
        """Log `event` unless its kind used up its lines; count it if so."""
        if self._budget.take((event_name(event), level), now):
            log.log(level, "%s", describe(event), extra={"decent_event": event})
        elif self._summary is None:
            # Scheduled now, so the summary comes even if nothing else does.
            self._summary = self.loop.call_at(now + SUMMARY_INTERVAL, self._log_summary)

    def _log_summary(self) -> None:
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
        for level, summary in self._budget.summaries(self.loop.time()):
            log.log(level, "%s", describe(summary), extra={"decent_event": summary})
