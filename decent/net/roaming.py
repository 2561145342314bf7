"""LISP-MN roaming in the shell: the node's sockets and RLOCs follow an interface.

The interface's addresses are watched over netlink. The kernel's
RTM_NEWADDR/RTM_DELADDR multicasts only tell us *that* something changed on
some interface; what the interface holds is then read with one RTM_GETADDR
dump. So a lost, truncated or forged notification cannot leave us with a
wrong address set: at worst it costs one dump.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.net.tun import TunShell
from decent.net.udp import NodeShell, Sockets
from decent.wire import IPAddress

log = logging.getLogger("decent")
#: Netlink datagrams handled per wake-up before yielding to the loop.
DRAIN: Final = 64
#: Seconds between attempts to bind a new address that refused (still
#: tentative, or gone again before we got to it).
RETRY: Final = 1.0
_RTMGRP_IPV4_IFADDR: Final = 0x10
_RTMGRP_IPV6_IFADDR: Final = 0x100
_NLMSG_ERROR: Final = 2
_NLMSG_DONE: Final = 3
_RTM_NEWADDR: Final = 20
_RTM_DELADDR: Final = 21
_RTM_GETADDR: Final = 22
_NLM_F_REQUEST: Final = 0x1
_NLM_F_DUMP: Final = 0x300
_IFA_ADDRESS: Final = 1
_IFA_LOCAL: Final = 2
_IFA_FLAGS: Final = 8
_IFA_F_DADFAILED: Final = 0x08
_IFA_F_TENTATIVE: Final = 0x40
_NLMSG: Final = struct.Struct("=IHHII")
_IFADDRMSG: Final = struct.Struct("=BBBBI")
_RTATTR: Final = struct.Struct("=HH")
#: Reads of one dump before we give up on it (a dump of a few hundred
#: addresses takes one or two).
_DUMP_READS: Final = 256


@dataclass(frozen=True, slots=True)
class AddrMessage:
    """One RTM_NEWADDR/RTM_DELADDR (or dump) entry."""

    new: bool
    index: int
    address: IPAddress
    flags: int

    @property
    def usable(self) -> bool:
        """Bindable and meant for others: not tentative, not failed DAD, and
        not IPv6 link-local (as `interface_addresses` chooses at start)."""
        if self.flags & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED):
            return False
        return not (self.address.version == 6 and self.address.is_link_local)


@dataclass(slots=True)
class Parsed:
    """What one netlink datagram held: its address messages, whether a dump
    ended in it, and how many parts were malformed (skipped)."""

    messages: list[AddrMessage]
    done: bool = False
    errors: int = 0


def parse(data: bytes) -> Parsed:
    """Decode a netlink datagram of address messages. Never raises: a
    malformed message is counted and the rest of the datagram skipped (its
    length field can no longer be trusted)."""
    out = Parsed([])
    pos = 0
    while pos + _NLMSG.size <= len(data):
        length, kind, _, _, _ = _NLMSG.unpack_from(data, pos)
        if length < _NLMSG.size or pos + length > len(data):
            out.errors += 1
            return out
        body = data[pos + _NLMSG.size : pos + length]
        pos += (length + 3) & ~3
        if kind in (_NLMSG_DONE, _NLMSG_ERROR):
            out.done = True
        elif kind in (_RTM_NEWADDR, _RTM_DELADDR):
            msg = _addr_message(kind == _RTM_NEWADDR, body)
            if msg is None:
                out.errors += 1
            else:
                out.messages.append(msg)
    if pos < len(data):
        out.errors += 1
    return out


def _addr_message(new: bool, body: bytes) -> AddrMessage | None:
    if len(body) < _IFADDRMSG.size:
        return None
    family, _, flags, _, index = _IFADDRMSG.unpack_from(body)
    size = {socket.AF_INET: 4, socket.AF_INET6: 16}.get(family)
    attrs: dict[int, bytes] = {}
    pos = _IFADDRMSG.size
    while pos + _RTATTR.size <= len(body):
        length, kind = _RTATTR.unpack_from(body, pos)
        if length < _RTATTR.size or pos + length > len(body):
            return None
        attrs.setdefault(kind, body[pos + _RTATTR.size : pos + length])
        pos += (length + 3) & ~3
    # IFA_LOCAL is our end of a point-to-point link; IFA_ADDRESS the peer's
    # there, and our address everywhere else.
    raw = attrs.get(_IFA_LOCAL, attrs.get(_IFA_ADDRESS))
    if size is None or raw is None or len(raw) != size:
        return None
    extended = attrs.get(_IFA_FLAGS)
    if extended is not None and len(extended) == 4:
        (flags,) = struct.unpack("=I", extended)
    address: IPAddress = IPv4Address(raw) if size == 4 else IPv6Address(raw)
    return AddrMessage(new, index, address, flags)


def dump_request(seq: int = 1) -> bytes:
    """An RTM_GETADDR dump request for every family."""
    body = _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    flags = _NLM_F_REQUEST | _NLM_F_DUMP
    return _NLMSG.pack(_NLMSG.size + len(body), _RTM_GETADDR, flags, seq, 0) + body


def dump_addresses(interface: str) -> list[IPAddress]:
    """The usable addresses of `interface` now, in the kernel's order; none
    if it does not exist (any more) or netlink fails."""
    try:
        index = socket.if_nametoindex(interface)
    except OSError:
        return []
    found: list[IPAddress] = []
    try:
        with socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE
        ) as nl:
            nl.settimeout(1.0)
            nl.bind((0, 0))
            nl.send(dump_request())
            for _ in range(_DUMP_READS):
                parsed = parse(nl.recv(1 << 16))
                found += [
                    m.address
                    for m in parsed.messages
                    if m.new and m.index == index and m.usable
                ]
                if parsed.done or parsed.errors:
                    break
    except OSError as exc:
        log.warning("cannot read the addresses of %s: %s", interface, exc)
    return list(dict.fromkeys(found))


def rloc_order(
    current: Iterable[IPAddress], found: Iterable[IPAddress], version: int
) -> tuple[IPAddress, ...]:
    """The RLOC set from the interface's addresses: those we already use keep
    their places (the first RLOC, which the sockets are bound to, stays
    while it exists), new ones follow, and the group's family goes first,
    since the first RLOC is our membership and our socket address."""
    found = list(dict.fromkeys(found))
    kept = [a for a in current if a in found]
    ordered = kept + [a for a in found if a not in kept]
    return tuple(sorted(ordered, key=lambda a: a.version != version))


class AddressWatch:
    """Tells `on_change` the usable address set of one interface whenever it
    changes (an empty tuple when none is left). The data plane is not
    involved: this works whether or not it runs."""

    def __init__(
        self,
        interface: str,
        loop: asyncio.AbstractEventLoop,
        on_change: Callable[[tuple[IPAddress, ...]], None],
        *,
        current: tuple[IPAddress, ...],
        version: int,
        dump: Callable[[str], list[IPAddress]] = dump_addresses,
    ) -> None:
        self.interface = interface
        self.loop = loop
        self.on_change = on_change
        self.current = current
        self.version = version
        self.errors: dict[str, int] = {}
        self._dump = dump
        self._sock: socket.socket | None = None

    def start(self, sock: socket.socket | None = None) -> bool:
        """Subscribe to address notifications (or read `sock`, a test's),
        then check at once: the address may have moved since the config was
        read. False if netlink is unavailable (the RLOC is then fixed)."""
        if sock is None:
            try:
                sock = socket.socket(
                    socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE
                )
                sock.bind((0, _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV6_IFADDR))
            except OSError as exc:
                log.warning(
                    "cannot watch the addresses of %s (%s); the RLOC stays %s",
                    self.interface,
                    exc,
                    ", ".join(map(str, self.current)),
                )
                return False
        sock.setblocking(False)
        self._sock = sock
        self.loop.add_reader(sock.fileno(), self._on_readable)
        self.refresh()
        return True

    def close(self) -> None:
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _count(self, key: str, n: int = 1) -> None:
        self.errors[key] = self.errors.get(key, 0) + n

    def _on_readable(self) -> None:
        assert self._sock is not None
        try:
            index: int | None = socket.if_nametoindex(self.interface)
        except OSError:
            index = None  # gone (for now): any news may be its return
        relevant = False
        for _ in range(DRAIN):
            try:
                data = self._sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # ENOBUFS: the kernel dropped notifications; the dump below
                # finds whatever they said.
                self._count(f"netlink.{errno.errorcode.get(exc.errno or 0, 'error')}")
                relevant = True
                break
            parsed = parse(data)
            if parsed.errors:
                self._count("netlink.malformed", parsed.errors)
                relevant = True
            relevant = relevant or any(
                index is None or m.index == index for m in parsed.messages
            )
        if relevant:
            self.refresh()

    def refresh(self) -> None:
        """Read the interface's addresses; report them if they changed."""
        found = rloc_order(self.current, self._dump(self.interface), self.version)
        if found == self.current:
            return
        self.current = found
        self.on_change(found)


class Roamer:
    """Moves a running node to a new RLOC set (LISP-MN): sockets on the new
    first RLOC first (the old ones stay if those cannot be had), then the
    core, which registers at once and SMRs, then the data plane's sockets.
    With no address left it waits, logging it, for one to come back."""

    def __init__(
        self,
        shell: NodeShell,
        open_sockets: Callable[[IPAddress], Sockets],
        *,
        interface: str,
        tun: Callable[[], TunShell | None] = lambda: None,
    ) -> None:
        self.shell = shell
        self.interface = interface
        self._open = open_sockets
        self._tun = tun
        self._wanted: tuple[IPAddress, ...] | None = None
        self._retry: asyncio.TimerHandle | None = None

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def move(self, rlocs: tuple[IPAddress, ...]) -> None:
        """Make `rlocs` (as AddressWatch reports them) the node's RLOCs."""
        self._wanted = rlocs
        self.close()
        node, loop = self.shell.node, self.shell.loop
        old = node.config.rlocs
        group = node.config.group
        if not rlocs or (group is not None and rlocs[0].version != group.version):
            log.warning(
                "%s has no usable address%s left; staying at %s until one returns",
                self.interface,
                "" if group is None or not rlocs else f" of IPv{group.version}",
                ", ".join(map(str, old)),
            )
            return
        if rlocs == old:
            return
        # The data plane's sockets go first: they may hold the new first
        # RLOC's ports (it was a second RLOC until the old one left).
        tun = self._tun()
        if tun is not None:
            tun.release_sockets()
        sockets = None
        if rlocs[0] != old[0]:
            try:
                sockets = self._open(rlocs[0])
            except OSError as exc:
                log.warning("cannot move to %s yet (%s); retrying", rlocs[0], exc)
                if tun is not None:
                    tun.adopt_sockets(self.shell.sockets.data)
                self._retry = loop.call_later(RETRY, self._again)
                return
        if sockets is not None:
            self.shell.replace_sockets(sockets, rlocs[0], read_data=tun is None)
        node.change_rlocs(rlocs, loop.time())
        if tun is not None:
            tun.adopt_sockets(self.shell.sockets.data)
        log.warning(
            "RLOC moved: %s -> %s (re-registered, SMRs sent)",
            ", ".join(map(str, old)),
            ", ".join(map(str, rlocs)),
        )
        self.shell.flush()

    def _again(self) -> None:
        self._retry = None
        if self._wanted is not None:
            self.move(self._wanted)


__all__ = [
    "AddrMessage",
    "AddressWatch",
    "Parsed",
    "Roamer",
    "dump_addresses",
    "dump_request",
    "parse",
    "rloc_order",
]
