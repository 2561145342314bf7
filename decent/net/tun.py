"""The xTR data plane's I/O: the TUN device, routes, send sockets and drain loops.

Packets never become coroutines: the TUN fd and each data socket get a
`loop.add_reader` callback that handles up to `DRAIN` packets synchronously
through the sans-I/O `DataPlane` (ecosystem notes 2.4: asyncio's datagram
transport does one recvfrom per loop iteration, a drain loop ~10x more). The
ITR reads each packet `headroom` bytes into a preallocated buffer with
`tailroom` after it, so the core writes the LISP header in front, seals in
place, and the very same buffer is sent: no copy.

The data sockets are the node shell's (NodeShell owns every RLOC's control
and data sockets and their readers): this shell borrows them, and their
readers call its drain loop while it runs (`data_drain`). It owns the TUN,
the source-port pools it sends from and the raw sockets of native forwarding.

Routing (as wg-quick does it): the overlay's EID-prefixes live in their own
table, consulted for every packet not marked with our fwmark; our sockets
carry that mark, so an EID route can never swallow our own RLOC traffic, and
natively forwarded packets leave through the main table. The main table's
specific routes win over the EID table (`suppress_prefixlength 0`).

The table is bounded (`TunSettings.max_routes`): past the bound the EID
routes are merged exactly and then, if need be, aggregated into covering
prefixes (`plan_routes`), so a million registered EIDs cost a bounded number
of kernel routes and one small `ip` batch, not a million.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_network
from itertools import pairwise
from typing import Final, Literal, Protocol

from decent.net.kernel import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_LINK,
    SO_RCVBUFFORCE,
    SO_SNDBUFFORCE,
    rloc_states,
    subscribe,
)
from decent.net.udp import DRAIN as DRAIN  # the drain loops here take as many
from decent.peer.dataplane import DataPlane
from decent.wire import Eid, IPAddress

log = logging.getLogger("decent.dataplane")
#: UDP source ports per RLOC that flows are hashed onto (RFC 9300 section 12).
SOURCE_PORTS: Final = 16
_TUNSETIFF: Final = 0x400454CA
_IFF_TUN: Final = 0x0001
_IFF_NO_PI: Final = 0x1000
_BUFFER: Final = 4 << 20
#: ip rule priorities: main's specific routes first, then the EID table.
RULE_PREF: Final = 4340
_MAX_PACKET: Final = 65535
#: Kernel routes the EID table may hold ([dataplane] max_routes): a few
#: hundred remote sites stay exact, a flood of EIDs becomes aggregates.
MAX_ROUTES: Final = 1024
#: The shortest prefix an aggregate may have, per IP version. Aggregation
#: sends non-EID destinations near the EIDs into the TUN (see plan_routes);
#: the floor keeps them near: within an IPv4 /8 or an IPv6 /16 of an EID.
#: Where the bound cannot be kept above the floor, the floor wins and the
#: table holds more than max_routes (a warning says so): at most one route
#: per /8 or /16 holding EIDs, besides wanted prefixes shorter than those.
AGGREGATE_FLOOR: Final[Mapping[int, int]] = {4: 8, 6: 16}
#: Share of the loop that recomputing routes may take in a registration
#: burst: after a sync that took t seconds of planning, the next one waits
#: t * (1 / share - 1), at most _ROUTE_PAUSE_MAX seconds.
_ROUTE_SHARE: Final = 0.2
_ROUTE_PAUSE_MAX: Final = 5.0


class DataPlaneUnavailable(RuntimeError):
    """Why this host cannot run the data plane (the control plane still can)."""


@dataclass(frozen=True, slots=True)
class TunSettings:
    """What the shell needs from the [dataplane] config section."""

    name: str = "decent0"
    mtu: int = 1440
    table: int = 4341
    #: Extra prefixes routed into the TUN besides the registered EIDs.
    routes: tuple[str, ...] = ()
    #: Most routes in the EID table; past it they are aggregated (plan_routes).
    max_routes: int = MAX_ROUTES

    def __post_init__(self) -> None:
        if self.max_routes < 1:
            raise ValueError("max_routes must be at least 1")


def unavailable_reason() -> str | None:
    """Why a TUN data plane cannot start here, or None (checked cheaply)."""
    if not sys.platform.startswith("linux"):
        return f"the TUN data plane needs Linux (this is {sys.platform})"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun does not exist (in a container: devices: /dev/net/tun)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    return None


def open_tun(name: str) -> tuple[int, str]:
    """Create (or attach to) TUN device `name`, non-blocking, no packet info."""
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise DataPlaneUnavailable(
            f"cannot open /dev/net/tun: {exc.strerror}{_privilege_hint(exc.errno)}"
        ) from None
    try:
        req = struct.pack("16sH", name.encode()[:15], _IFF_TUN | _IFF_NO_PI)
        res = fcntl.ioctl(fd, _TUNSETIFF, req)
    except OSError as exc:
        os.close(fd)
        hint = _privilege_hint(exc.errno)
        raise DataPlaneUnavailable(
            f"cannot create TUN {name!r}: {exc.strerror}{hint}"
        ) from None
    return fd, res[:16].rstrip(b"\0").decode()


def _privilege_hint(code: int | None) -> str:
    if code in (errno.EPERM, errno.EACCES):
        return " (needs root or CAP_NET_ADMIN; in Docker: cap_add NET_ADMIN)"
    return ""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode:
        err = result.stderr.strip()
        hint = _privilege_hint(errno.EPERM) if "not permitted" in err else ""
        raise DataPlaneUnavailable(f"ip {' '.join(args)}: {err}{hint}")
    return result


def _sysctl(path: str, value: str) -> None:
    with contextlib.suppress(OSError), open(path, "w") as f:
        f.write(value)


def host_eids(eids: Iterable[Eid]) -> list[IPAddress]:
    """The EIDs that are single addresses: these go on the TUN."""
    out: list[IPAddress] = []
    for eid in eids:
        addr = eid.address
        if (
            isinstance(addr, IPv4Address | IPv6Address)
            and eid.group is None
            and eid.mask_len == addr.max_prefixlen
        ):
            out.append(addr)
    return out


# ------------------------------------------------------------ route planning
Prefix = tuple[int, int, int]
"""An IP prefix as (IP version, network address as an int, prefix length)."""
RouteKind = Literal["tun", "throw"]
_BITS: Final[Mapping[int, int]] = {4: 32, 6: 128}


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """What the EID table should hold: routes into the TUN, and `throw`
    routes that hand our own EID-prefixes back to the main table where an
    aggregate would otherwise cover them."""

    tun: tuple[Prefix, ...] = ()
    throw: tuple[Prefix, ...] = ()
    #: "exact": one route per wanted prefix; "merged": the same addresses in
    #: fewer prefixes; "aggregated": covering prefixes, more addresses.
    mode: Literal["exact", "merged", "aggregated"] = "exact"
    #: Per IP version that was aggregated, the prefix length it was cut to.
    lengths: Mapping[int, int] = field(default_factory=dict)
    #: Distinct prefixes wanted (registered remote EIDs and extra routes).
    wanted: int = 0

    def table(self) -> dict[str, RouteKind]:
        out: dict[str, RouteKind] = {_text(p): "tun" for p in self.tun}
        out.update((_text(p), "throw") for p in self.throw)
        return out

    def summary(self) -> dict[str, object]:
        return {
            "installed": len(self.tun),
            "throw": len(self.throw),
            "wanted": self.wanted,
            "aggregation": self.mode,
            "lengths": {f"ipv{v}": n for v, n in sorted(self.lengths.items())},
        }


def _text(p: Prefix) -> str:
    version, net, plen = p
    addr = IPv4Address(net) if version == 4 else IPv6Address(net)
    return f"{addr}/{plen}"


def _prefix(text: str) -> Prefix:
    net = ip_network(text, strict=False)
    return net.version, int(net.network_address), net.prefixlen


# Inside the planner a prefix is one int, network << 8 | length: sets and
# sorts of a million ints cost a fraction of what tuples do, and the order is
# the same (by network, then shorter first).
def _key(net: int, plen: int) -> int:
    return net << 8 | plen


def collapse(prefixes: Iterable[tuple[int, int]], bits: int) -> list[tuple[int, int]]:
    """`ipaddress.collapse_addresses` on (network, length) ints: the fewest
    prefixes covering exactly the same addresses, sorted."""
    keys = _collapse(sorted({_key(n, p) for n, p in prefixes}), bits)
    return [(k >> 8, k & 0xFF) for k in keys]


def _collapse(keys: list[int], bits: int) -> list[int]:
    # ipaddress.collapse_addresses builds an object per prefix: 2.4 s for
    # 100k host EIDs here, where these ints take 0.1 s.
    out: list[int] = []
    top = top_len = -1
    for key in keys:
        plen = key & 0xFF
        if 0 <= top_len <= plen and (key >> 8) >> (bits - top_len) == top:
            continue  # sorted and disjoint: only the last kept can contain it
        out.append(key)
        while len(out) > 1:
            a, b = out[-2], out[-1]
            a_len = a & 0xFF
            size = 1 << (bits - a_len)
            if a_len != b & 0xFF or not a_len or a >> 8 & size or a + (size << 8) != b:
                break
            out[-2:] = [a - 1]
        top_len = out[-1] & 0xFF
        top = (out[-1] >> 8) >> (bits - top_len)
    return out


class _Family:
    """The collapsed prefixes of one IP version that may be aggregated, and
    how many /L supernets they have for every L: two neighbours in sorted
    order share a /L exactly when both are at least /L long and their
    addresses agree in the first L bits, so one sort answers every L."""

    def __init__(self, keys: list[int], bits: int, floor: int):
        self.keys, self.bits, self.floor = keys, bits, floor
        self.longest = max((k & 0xFF for k in keys), default=floor)
        self._splits = sorted(
            min(a & 0xFF, b & 0xFF, bits - ((a ^ b) >> 8).bit_length())
            for a, b in pairwise(keys)
        )

    def count(self, length: int) -> int:
        """Routes left after cutting every prefix longer than `length` to it."""
        if not self.keys:
            return 0
        return 1 + bisect_left(self._splits, length)

    def length_within(self, share: int) -> int:
        """The longest cut (not below the floor) leaving at most `share`."""
        for length in range(max(self.longest, self.floor), self.floor, -1):
            if self.count(length) <= share:
                return length
        return self.floor

    def cut(self, length: int) -> list[int]:
        out: list[int] = []
        mask = ~((1 << (self.bits - length + 8)) - 1)
        last = -1
        for key in self.keys:
            if key & 0xFF > length:
                key = key & mask | length
            # Prefixes sharing a supernet are neighbours (see the class).
            if key != last:
                out.append(key)
                last = key
        return out


def _inside(keys: list[int], key: int, bits: int) -> bool:
    """Is prefix `key` inside one of `keys` (sorted, disjoint prefixes)?"""
    # The only candidate is the last prefix at or before it in key order:
    # anything between a container and `key` would overlap the container.
    i = bisect_right(keys, key) - 1
    if i < 0:
        return False
    outer = keys[i]
    shift = bits - (outer & 0xFF) + 8
    return outer & 0xFF <= key & 0xFF and outer >> shift == key >> shift


def _within(keys: list[int], key: int, bits: int) -> range:
    """Where in `keys` (sorted) the prefixes inside prefix `key` are."""
    end = ((key >> 8) + (1 << (bits - (key & 0xFF)))) << 8
    return range(bisect_left(keys, key), bisect_left(keys, end))


def plan_routes(
    wanted: Iterable[Prefix],
    own: Iterable[Prefix] = (),
    max_routes: int = MAX_ROUTES,
    floor: Mapping[int, int] = AGGREGATE_FLOOR,
) -> RoutePlan:
    """The routes that send every `wanted` prefix into the TUN in at most
    `max_routes` kernel routes (unless the `floor` forbids; see
    AGGREGATE_FLOOR), never covering `own` (our EID-prefixes) more than the
    wanted prefixes themselves do.

    Up to the bound every wanted prefix gets its own route. Past it they are
    merged exactly, and if that is not enough, cut per IP version to the
    longest length L whose /L supernets fit; both versions share the bound
    max-min fairly (a version needing less than half keeps all it needs).

    Aggregating is safe in LISP: a packet the TUN takes for an address that
    is no EID misses the map-cache, and the ITR asks the Map-Resolver
    (DataPlane._miss), whose negative Map-Reply (Node.negative_answer:
    natively-forward, or send-map-request for unregistered EID space)
    becomes a negative map-cache entry; DataPlane._negative then forwards
    such packets natively (from a socket carrying our fwmark, so through
    the main table), to the PETR, or drops them, per `negative_action`.
    What aggregation may take is limited by the ip rules: the main table's
    specific routes (the underlay, our LANs) and the local table (our own
    addresses, so our host EIDs) are consulted before the EID table.

    Our own non-host EID-prefixes are what remains: an aggregate covering
    one gets a `throw` route for it (so its traffic goes on to the main
    table, as it would without the aggregate), and wanted prefixes inside
    our own are never aggregated (an aggregate there would send our own
    EID space into the TUN, and a throw would hide the wanted prefix).
    """
    keys: dict[int, set[int]] = {4: set(), 6: set()}
    for v, net, plen in wanted:
        keys[v].add(_key(net, plen))
    return _plan(keys, own, max_routes, floor)


def _plan(
    wanted: Mapping[int, Collection[int]],
    own: Iterable[Prefix],
    max_routes: int,
    floor: Mapping[int, int],
) -> RoutePlan:
    versions = [v for v in (4, 6) if wanted.get(v)]
    count = sum(len(wanted[v]) for v in versions)
    ordered = {v: sorted(wanted[v]) for v in versions}
    if count <= max_routes:
        return RoutePlan(tun=_prefixes(ordered), wanted=count)
    merged = {v: _collapse(ordered[v], _BITS[v]) for v in versions}
    if sum(map(len, merged.values())) <= max_routes:
        return RoutePlan(tun=_prefixes(merged), mode="merged", wanted=count)
    ours = {v: sorted({_key(n, p) for w, n, p in own if w == v}) for v in versions}
    pinned: dict[int, list[int]] = {}
    families: dict[int, _Family] = {}
    for v in versions:
        bits, free = _BITS[v], merged[v]
        inside = sorted({i for k in ours[v] for i in _within(free, k, bits)})
        pinned[v] = [free[i] for i in inside]
        if inside:
            skip = set(inside)
            free = [k for i, k in enumerate(free) if i not in skip]
        families[v] = _Family(free, bits, floor[v])
    reserved = sum(map(len, pinned.values())) + sum(map(len, ours.values()))
    lengths = _fair_lengths(families, max_routes - reserved)
    routes: dict[int, list[int]] = {}
    throw: dict[int, list[int]] = {}
    for v in versions:
        bits, cut = _BITS[v], families[v].cut(lengths[v])
        routes[v] = sorted(cut + pinned[v])
        # What a wanted (so also a pinned) prefix covers went to the TUN
        # before aggregation too: only what an aggregate adds is thrown.
        throw[v] = [
            k
            for k in ours[v]
            if _inside(cut, k, bits) and not _inside(merged[v], k, bits)
        ]
    return RoutePlan(
        tun=_prefixes(routes),
        throw=_prefixes(throw),
        mode="aggregated",
        lengths={v: n for v, n in lengths.items() if n < families[v].longest},
        wanted=count,
    )


def _prefixes(keys: Mapping[int, Iterable[int]]) -> tuple[Prefix, ...]:
    return tuple((v, k >> 8, k & 0xFF) for v in sorted(keys) for k in keys[v])


def _fair_lengths(families: Mapping[int, _Family], budget: int) -> dict[int, int]:
    # Prefix lengths of IPv4 and IPv6 do not compare, so the bound is shared:
    # the version needing fewer routes first gets up to an equal share, the
    # other the rest, and then the first what the other left.
    order = sorted(families, key=lambda v: len(families[v].keys))
    lengths: dict[int, int] = {}
    left = budget
    for i, v in enumerate(order):
        lengths[v] = families[v].length_within(left // (len(order) - i))
        left -= families[v].count(lengths[v])
    for v in order[:-1]:
        others = sum(families[o].count(lengths[o]) for o in order if o != v)
        lengths[v] = families[v].length_within(budget - others)
    return lengths


def _bind(sock: socket.socket, address: IPAddress, port: int) -> None:
    try:
        sock.bind((str(address), port))
    except OSError as exc:
        raise DataPlaneUnavailable(
            f"cannot bind {address} port {port or 'any'} ({exc.strerror}); "
            "every [node] rlocs address must be on this host, its ports free"
        ) from None


class SocketOwner(Protocol):
    """The shell owning the node's sockets (NodeShell), as TunShell sees it."""

    #: What the owner's data-socket readers call while set (not per packet:
    #: once a wake-up, with the readable socket).
    data_drain: Callable[[socket.socket], None] | None

    def data_sockets(self) -> list[socket.socket | None]:
        """Each RLOC's data socket in node.config.rlocs order; None for one
        that could not be bound."""
        ...


@dataclass
class _Rloc:
    address: IPAddress
    #: Our sockets to send from, one per source port (SOURCE_PORTS).
    pool: list[socket.socket] = field(default_factory=list)
    #: The owner's data socket on this RLOC, borrowed; None: none to borrow.
    data: socket.socket | None = None


class TunShell:
    """Moves packets between the TUN, the data sockets and a DataPlane."""

    def __init__(
        self,
        dataplane: DataPlane,
        settings: TunSettings,
        loop: asyncio.AbstractEventLoop,
        *,
        owner: SocketOwner,
        flush_control: Callable[[], None],
    ) -> None:
        """`owner` holds the node's sockets and reads them: this shell
        borrows its data sockets and, while running, drains them for it;
        `flush_control()` sends what the Node queued and must end by calling
        `flush_packets()`."""
        self.dp = dataplane
        self.node = dataplane.node
        self.settings = settings
        self.loop = loop
        self.errors: dict[str, int] = {}
        self.name = settings.name
        self._owner = owner
        self._flush_control = flush_control
        #: The fds this shell registered readers on (the TUN, the link
        #: watch): close() removes only these.
        self._readers: list[int] = []
        self._fd = -1
        self._rlocs = [_Rloc(r) for r in self.node.config.rlocs]
        self._raw: dict[int, socket.socket] = {}
        self._netlink: socket.socket | None = None
        #: The EID table as the last `ip` batch left it (prefix -> kind), the
        #: plan it came from, and what the last finished batch installed.
        self._routes: dict[str, RouteKind] = {}
        self._plan = RoutePlan()
        self._installed_plan = RoutePlan()
        self._installed: frozenset[str] = frozenset()
        self._planned_for: tuple[object, int, list[Prefix]] | None = None
        self._eid_addrs: set[IPAddress] = set()
        self._routes_version = -1
        self._route_task: asyncio.Task[None] | None = None
        self._rules_added = False
        #: Room around each inner packet, as the data plane asks for it.
        self._head = dataplane.headroom
        room = self._head + _MAX_PACKET + dataplane.tailroom
        self._tx = bytearray(room)
        self._tx_view = memoryview(self._tx)
        self._rx = bytearray(room)
        self._rx_view = memoryview(self._rx)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Create and configure the TUN, open the sockets, start reading.
        Raises DataPlaneUnavailable (everything opened so far is closed, and
        the node's own sockets are left as they were)."""
        try:
            self._start()
        except OSError as exc:  # e.g. the kernel refusing a socket for the pools
            self.close()
            raise DataPlaneUnavailable(f"cannot set up the data plane: {exc}") from None
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise DataPlaneUnavailable(reason)
        s = self.settings
        self._fd, self.name = open_tun(s.name)
        # A longer queue in front of our reader absorbs bursts while the
        # event loop is busy elsewhere (the default 500 overflows at ~25k pps).
        _ip(
            "link",
            "set",
            "dev",
            self.name,
            "mtu",
            str(s.mtu),
            "txqueuelen",
            "5000",
            "up",
        )
        # Decapsulated packets from a non-EID source (an RLOC) arrive on the
        # TUN but route back through the underlay: loose reverse-path check.
        _sysctl(f"/proc/sys/net/ipv4/conf/{self.name}/rp_filter", "2")
        _sysctl(f"/proc/sys/net/ipv6/conf/{self.name}/disable_ipv6", "0")
        for addr in self._own_host_eids():
            self._assign(addr)
        self._rules(add=True)
        self._open_sockets()
        self._sync_routes_now()
        self._watch_links()
        # Last, once nothing can fail: from here the node shell's readers on
        # the data sockets hand them to us (until close()).
        self._add_reader(self._fd, self._drain_tun)
        self._owner.data_drain = self._drain_data
        log.info(
            "data plane on: TUN %s (mtu %d), EIDs %s, table %d",
            self.name,
            s.mtu,
            ", ".join(str(a) for a in self._own_host_eids()) or "none",
            s.table,
        )

    def _own_host_eids(self) -> list[IPAddress]:
        # The node's database, not its start-up config: SIGHUP may change it.
        return host_eids(m.eid for m in self.node.database_mappings())

    def _assign(self, addr: IPAddress, *, check: bool = True) -> None:
        if addr.version == 4:
            if _ip(
                "addr", "add", f"{addr}/32", "dev", self.name, check=check
            ).returncode:
                log.warning("EID %s not assigned to %s", addr, self.name)
        elif _ip(
            "-6", "addr", "add", f"{addr}/128", "dev", self.name, "nodad", check=False
        ).returncode:
            log.warning("IPv6 EID %s not assigned (IPv6 disabled here?)", addr)
        self._eid_addrs.add(addr)

    def sync_eids(self) -> None:
        """Put the database's host EIDs on the TUN and take off those that
        left it (after a SIGHUP reload), then the routes follow."""
        wanted = set(self._own_host_eids())
        for addr in sorted(wanted - self._eid_addrs, key=str):
            self._assign(addr, check=False)
        for addr in sorted(self._eid_addrs - wanted, key=str):
            bits = addr.max_prefixlen
            _ip("addr", "del", f"{addr}/{bits}", "dev", self.name, check=False)
            self._eid_addrs.discard(addr)
        self._sync_routes_now()

    def _add_reader(
        self, fd: int, callback: Callable[..., None], *args: object
    ) -> None:
        self.loop.add_reader(fd, callback, *args)
        self._readers.append(fd)

    def close(self) -> None:
        """Undo what start() did, however far it got. The data sockets stay
        open, and the node's shell drains them into the node again."""
        loop = self.loop
        if self._route_task is not None:
            self._route_task.cancel()
        if self._owner.data_drain == self._drain_data:
            self._owner.data_drain = None
        readers, self._readers = self._readers, []
        for fd in readers:
            loop.remove_reader(fd)
        if self._fd >= 0:
            os.close(self._fd)  # the device, its addresses and routes go with it
            self._fd = -1
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None
        self._close_rloc_sockets()
        for sock in self._raw.values():
            sock.close()
        self._raw.clear()
        if self._rules_added:
            self._rules(add=False)

    # ------------------------------------------------------------ roaming
    def release_sockets(self) -> None:
        """Close our source-port pools and let go of the borrowed data
        sockets, before the node's RLOCs change: they are bound to the old
        ones. The TUN, the link watch and the raw sockets stay.
        `adopt_sockets` borrows and opens again for the new RLOCs."""
        self._close_rloc_sockets()
        self._rlocs = []

    def _close_rloc_sockets(self) -> None:
        for r in self._rlocs:
            self._close_rloc(r)

    def _close_rloc(self, r: _Rloc) -> None:
        # The data socket is the node shell's to close.
        for sock in r.pool:
            sock.close()
        r.pool.clear()
        r.data = None

    def adopt_sockets(self) -> None:
        """Borrow the data sockets the node's shell has for the node's RLOCs
        now (after change_rlocs and its replace_sockets) and open our pools.
        An RLOC whose sockets cannot be had is marked down, so no packet
        leaves from it; the rest carry on."""
        self._borrow_rlocs()

    # ------------------------------------------------------------ setup
    def _rules(self, add: bool) -> None:
        table, pref = str(self.settings.table), RULE_PREF
        for family in ("-4", "-6"):
            for p in (pref, pref + 1):  # stale ones from a killed run too
                while (
                    _ip(family, "rule", "del", "pref", str(p), check=False).returncode
                    == 0
                ):
                    pass
            if not add:
                continue
            # Set before adding: a failure half-way still has close() remove
            # the rules that did get in.
            self._rules_added = True
            main = ("rule", "add", "pref", str(pref), "lookup", "main")
            _ip(family, *main, "suppress_prefixlength", "0", check=family == "-4")
            _ip(
                family,
                "rule",
                "add",
                "pref",
                str(pref + 1),
                "not",
                "fwmark",
                table,
                "lookup",
                table,
                check=family == "-4",
            )
        self._rules_added = add

    def _mark(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.settings.table)

    def _buffers(self, sock: socket.socket) -> None:
        for force, plain in (
            (SO_SNDBUFFORCE, socket.SO_SNDBUF),
            (SO_RCVBUFFORCE, socket.SO_RCVBUF),
        ):
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, _BUFFER)
            except OSError:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, plain, _BUFFER)

    def _open_sockets(self) -> None:
        self._borrow_rlocs()
        for version, family in ((4, socket.AF_INET), (6, socket.AF_INET6)):
            try:
                raw = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
            except OSError:
                continue  # no native forwarding of this family (no CAP_NET_RAW)
            self._mark(raw)
            raw.setblocking(False)
            self._raw[version] = raw

    def _borrow_rlocs(self) -> None:
        self._rlocs = [_Rloc(r) for r in self.node.config.rlocs]
        lent = self._owner.data_sockets()
        for i, (r, data) in enumerate(zip(self._rlocs, lent, strict=True)):
            if data is not None:
                try:
                    self._open_pool(r)
                except DataPlaneUnavailable as exc:
                    log.warning("RLOC %s: %s", r.address, exc)
                    self._close_rloc(r)
                    data = None
            if data is None:
                # Nothing can leave from it (why it has no data socket, the
                # node's shell logged).
                self.dp.set_rloc_state(i, False, self.loop.time())
                continue
            self._mark(data)
            self._buffers(data)
            r.data = data

    def _open_pool(self, r: _Rloc) -> None:
        family = socket.AF_INET6 if r.address.version == 6 else socket.AF_INET
        for _ in range(SOURCE_PORTS):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            r.pool.append(sock)
            self._mark(sock)
            self._buffers(sock)
            _bind(sock, r.address, 0)
            sock.setblocking(False)

    # ------------------------------------------------------------ hot paths
    def _drain_tun(self) -> None:
        fd, dp = self._fd, self.dp
        encap, readv = dp.encap, os.readv
        buf, view, head = self._tx, self._tx_view, self._head
        body = [view[head : len(view) - self.dp.tailroom]]
        pools = [r.pool for r in self._rlocs]
        now = self.loop.time()
        for _ in range(DRAIN):
            try:
                n = readv(fd, body)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._error("tun-read", exc)
                break
            sent = encap(buf, n, now)
            if sent is not None:
                addr, src, flow, start, end = sent
                try:
                    pools[src][flow % SOURCE_PORTS].sendto(view[start:end], addr)
                except OSError as exc:
                    self._error("send", exc)
        self._flush()

    def _drain_data(self, sock: socket.socket) -> None:
        fd, dp = self._fd, self.dp
        decap, write = dp.decap, os.write
        recvfrom_into = sock.recvfrom_into
        buf, view = self._rx, self._rx_view
        now = self.loop.time()
        for _ in range(DRAIN):
            try:
                n, (host, port, *_) = recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._error("recv", exc)
                break
            span = decap(buf, n, host, port, now)
            if span is not None:
                try:
                    write(fd, view[span[0] : span[1]])
                except OSError as exc:
                    self._error("tun-write", exc)
        self._flush()

    def _flush(self) -> None:
        """Send what the last batch queued: the Node's control datagrams, then
        (flush_control calls back `flush_packets`) the core's packet lists."""
        self._flush_control()

    def flush_packets(self) -> None:
        dp = self.dp
        pools = [r.pool for r in self._rlocs]
        rlocs = self._rlocs
        for payload, (addr, src, flow) in dp.packets_to_send():
            # A flow of -1 leaves from the data socket itself: a NAT lets in
            # only what comes from where its member's binding goes.
            sock = rlocs[src].data if flow < 0 else pools[src][flow % SOURCE_PORTS]
            if sock is None:
                continue
            try:
                sock.sendto(payload, addr)
            except OSError as exc:
                self._error("send", exc)
        for packet in dp.packets_to_tun():
            try:
                os.write(self._fd, packet)
            except OSError as exc:
                self._error("tun-write", exc)
        for packet in dp.packets_to_native():
            version = packet[0] >> 4
            raw = self._raw.get(version)
            if raw is None:
                self.errors["native-unavailable"] = (
                    self.errors.get("native-unavailable", 0) + 1
                )
                continue
            dst = packet[16:20] if version == 4 else packet[24:40]
            host = str(IPv4Address(dst) if version == 4 else IPv6Address(dst))
            try:
                raw.sendto(packet, (host, 0))
            except OSError as exc:
                self._error("native", exc)
        if self._routes_version != self.node.registry_version:
            self._schedule_route_sync()

    def _error(self, what: str, exc: OSError) -> None:
        key = f"{what}.{errno.errorcode.get(exc.errno or 0, 'error')}"
        self.errors[key] = self.errors.get(key, 0) + 1

    # ------------------------------------------------------------ routes
    def wanted_routes(self) -> set[str]:
        """Every registered IP EID-prefix that is not ours, plus the
        configured extra routes: these enter the TUN (in at most
        `max_routes` kernel routes, see plan_routes)."""
        keys = self._wanted_keys()
        return {_text((v, k >> 8, k & 0xFF)) for v in keys for k in keys[v]}

    def _wanted_keys(self) -> dict[int, set[int]]:
        out = self.dp.routed()
        for v, net, plen in map(_prefix, self.settings.routes):
            out[v].add(_key(net, plen))
        return out

    def _own_prefixes(self) -> list[Prefix]:
        out: list[Prefix] = []
        for mapping in self.node.database_mappings():
            eid, addr = mapping.eid, mapping.eid.address
            if eid.group is None and isinstance(addr, IPv4Address | IPv6Address):
                out.append((addr.version, int(addr), eid.mask_len))
        return out

    def _route_commands(self) -> list[str]:
        """The `ip` batch from the table as it is to the table as planned:
        only what changed, so a registration costs one line, not a table."""
        node = self.node
        # Refreshes bump registry_version too; only a change of the
        # registered set (or of our own EIDs) can change the plan.
        registered = (node, node.registered_set_version, self._own_prefixes())
        if registered == self._planned_for:
            return []
        self._planned_for = registered
        plan = _plan(
            self._wanted_keys(),
            registered[2],
            self.settings.max_routes,
            AGGREGATE_FLOOR,
        )
        self._note_plan(plan)
        wanted = plan.table()
        table = self.settings.table
        sources = {4: None, 6: None} | {
            a.version: str(a) for a in reversed(self._own_host_eids())
        }
        cmds = []
        # Additions first: a prefix being replaced by its aggregate is never
        # without a route in between.
        for prefix, kind in sorted(wanted.items() - self._routes.items()):
            if kind == "throw":
                cmds.append(f"route replace throw {prefix} table {table}")
                continue
            src = sources[6 if ":" in prefix else 4]
            cmd = f"route replace {prefix} dev {self.name} table {table}"
            cmds.append(cmd + (f" src {src}" if src else ""))
        for prefix in sorted(self._routes.keys() - wanted.keys()):
            cmds.append(f"route del {prefix} table {table}")
        self._routes = wanted
        return cmds

    def _note_plan(self, plan: RoutePlan) -> None:
        """Log when aggregation starts, changes or stops; not per sync."""
        old, self._plan = self._plan, plan
        if (old.mode, old.lengths) != (plan.mode, plan.lengths):
            cut = ", ".join(f"IPv{v} to /{n}" for v, n in sorted(plan.lengths.items()))
            log.info(
                "EID routes: %s wanted, %s in the table (%s%s)",
                f"{plan.wanted:,}",
                f"{len(plan.tun):,}",
                plan.mode,
                f": {cut}" if cut else "",
            )
        over = len(plan.tun) + len(plan.throw) > self.settings.max_routes
        if over and len(old.tun) + len(old.throw) <= self.settings.max_routes:
            log.warning(
                "EID routes: %s exceed max_routes %d: the aggregation floor "
                "(IPv4 /%d, IPv6 /%d) allows no shorter prefixes",
                f"{len(plan.tun) + len(plan.throw):,}",
                self.settings.max_routes,
                AGGREGATE_FLOOR[4],
                AGGREGATE_FLOOR[6],
            )

    def installed_routes(self) -> set[str]:
        """The EID routes in the kernel now: those of the last `ip` batch
        that has finished (what /api/node shows, so that a client seeing a
        route can use it). Past `max_routes` these are aggregates."""
        return set(self._installed)

    def route_summary(self) -> dict[str, object]:
        """How the installed routes relate to the registered EIDs: their
        count, the wanted prefixes' count, the aggregation mode ("exact",
        "merged" or "aggregated") and the lengths aggregated to."""
        return {
            **self._installed_plan.summary(),
            "max_routes": self.settings.max_routes,
        }

    def _sync_routes_now(self) -> None:
        self._routes_version = self.node.registry_version
        cmds = self._route_commands()
        if cmds:
            subprocess.run(
                ["ip", "-force", "-batch", "-"],
                input="\n".join(cmds) + "\n",
                capture_output=True,
                text=True,
                check=False,
            )
        self._finished(self._plan, self._routes)

    def _finished(self, plan: RoutePlan, table: dict[str, RouteKind]) -> None:
        self._installed_plan = plan
        self._installed = frozenset(k for k, v in table.items() if v == "tun")

    def _schedule_route_sync(self) -> None:
        if self._route_task is None or self._route_task.done():
            self._route_task = self.loop.create_task(self._sync_routes())

    async def _sync_routes(self) -> None:
        loop = self.loop
        while self._routes_version != self.node.registry_version:
            self._routes_version = self.node.registry_version
            started = loop.time()
            cmds = self._route_commands()
            spent = loop.time() - started
            plan, target = self._plan, self._routes
            if cmds:
                proc = await asyncio.create_subprocess_exec(
                    "ip",
                    "-force",
                    "-batch",
                    "-",
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                _, err = await proc.communicate(("\n".join(cmds) + "\n").encode())
                if proc.returncode:
                    log.debug("route sync: %s", err.decode(errors="replace").strip())
            self._finished(plan, target)
            if self._routes_version != self.node.registry_version:
                # A registration burst: planning walks every registration,
                # so pace it to leave the loop to the packets and the API.
                pause = spent * (1 / _ROUTE_SHARE - 1)
                await asyncio.sleep(min(pause, _ROUTE_PAUSE_MAX))

    # ------------------------------------------------------------ our links
    def _watch_links(self) -> None:
        """Netlink link/address events make us re-check our RLOCs at once."""
        try:
            nl = subscribe(RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        except OSError as exc:
            log.warning("cannot watch links (%s); RLOC state is not followed", exc)
            return
        self._netlink = nl
        self._add_reader(nl.fileno(), self._on_netlink)
        self.check_rlocs()

    def _on_netlink(self) -> None:
        assert self._netlink is not None
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while self._netlink.recv(65536):
                pass
        self.check_rlocs()

    def check_rlocs(self) -> None:
        states = rloc_states(self.node.config.rlocs)
        rlocs, now = self._rlocs, self.loop.time()
        for i, up in enumerate(states):
            # One without sockets stays down, whatever its link: nothing can
            # leave from it.
            up = up and i < len(rlocs) and rlocs[i].data is not None
            if up != self.dp.rloc_up(i):
                log.warning(
                    "RLOC %s is %s", self.node.config.rlocs[i], "up" if up else "down"
                )
                self.dp.set_rloc_state(i, up, now)
        self._flush()
