"""rtnetlink address and link messages (rtnetlink(7)): dump requests and replies."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.wire.afi import IPAddress

# Linux's values; socket.AF_* is not for a codec (it would import socket).
AF_UNSPEC: Final = 0
AF_INET: Final = 2
AF_INET6: Final = 10
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
RTM_NEWLINK: Final = 16
RTM_DELLINK: Final = 17
RTM_GETLINK: Final = 18
RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
RTM_GETADDR: Final = 22
NLM_F_REQUEST: Final = 0x1
NLM_F_DUMP: Final = 0x300
IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2
IFA_FLAGS: Final = 8
IFA_F_DADFAILED: Final = 0x08
IFA_F_TENTATIVE: Final = 0x40
IFF_UP: Final = 0x1
IFF_LOWER_UP: Final = 0x10000
_NLMSG: Final = struct.Struct("=IHHII")
_IFADDRMSG: Final = struct.Struct("=BBBBI")
#: ifinfomsg: family, (pad), type, index, flags, change.
_IFINFOMSG: Final = struct.Struct("=BxHiII")
_RTATTR: Final = struct.Struct("=HH")
_FLAGS32: Final = struct.Struct("=I")
_SIZES: Final = {AF_INET: 4, AF_INET6: 16}
#: Reads of one dump before we give up on it (a dump of a few hundred
#: addresses takes one or two).
DUMP_READS: Final = 256


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
        not IPv6 link-local."""
        if self.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED):
            return False
        return not (self.address.version == 6 and self.address.is_link_local)


@dataclass(frozen=True, slots=True)
class LinkMessage:
    """One RTM_NEWLINK/RTM_DELLINK (or dump) entry: an interface's flags."""

    new: bool
    index: int
    flags: int

    @property
    def up(self) -> bool:
        """Administratively up with its carrier up (`ip link`: UP, LOWER_UP)."""
        return self.flags & (IFF_UP | IFF_LOWER_UP) == IFF_UP | IFF_LOWER_UP


@dataclass(slots=True)
class Parsed:
    """What one netlink datagram (or a whole dump) held: its address and link
    messages, whether a dump ended in it, and how many parts were malformed
    (skipped)."""

    messages: list[AddrMessage]
    done: bool = False
    errors: int = 0
    links: list[LinkMessage] = field(default_factory=list)


def parse(data: bytes) -> Parsed:
    """Decode a netlink datagram of address and link messages. Never raises:
    a malformed message is counted and the rest of the datagram skipped (its
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
        if kind in (NLMSG_DONE, NLMSG_ERROR):
            out.done = True
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            msg = _addr_message(kind == RTM_NEWADDR, body)
            if msg is None:
                out.errors += 1
            else:
                out.messages.append(msg)
        elif kind in (RTM_NEWLINK, RTM_DELLINK):
            if len(body) < _IFINFOMSG.size:
                out.errors += 1
            else:
                _, _, index, flags, _ = _IFINFOMSG.unpack_from(body)
                out.links.append(LinkMessage(kind == RTM_NEWLINK, index, flags))
    if pos < len(data):
        out.errors += 1
    return out


def _addr_message(new: bool, body: bytes) -> AddrMessage | None:
    if len(body) < _IFADDRMSG.size:
        return None
    family, _, flags, _, index = _IFADDRMSG.unpack_from(body)
    size = _SIZES.get(family)
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
    raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
    if size is None or raw is None or len(raw) != size:
        return None
    extended = attrs.get(IFA_FLAGS)
    if extended is not None and len(extended) == _FLAGS32.size:
        (flags,) = _FLAGS32.unpack(extended)
    address: IPAddress = IPv4Address(raw) if size == 4 else IPv6Address(raw)
    return AddrMessage(new, index, address, flags)


def dump_request(seq: int = 1, kind: int = RTM_GETADDR) -> bytes:
    """A dump request for every family: of every address (RTM_GETADDR) or of
    every link (RTM_GETLINK)."""
    if kind == RTM_GETADDR:
        body = _IFADDRMSG.pack(AF_UNSPEC, 0, 0, 0, 0)
    elif kind == RTM_GETLINK:
        body = _IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0)
    else:
        raise ValueError(f"no dump request of message type {kind}")
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return _NLMSG.pack(_NLMSG.size + len(body), kind, flags, seq, 0) + body


def read_dump(recv: Callable[[], bytes]) -> Parsed:
    """The answer to a dump request, from `recv()` (the next datagram):
    everything up to its end, or up to the first malformed part."""
    out = Parsed([])
    for _ in range(DUMP_READS):
        parsed = parse(recv())
        out.messages += parsed.messages
        out.links += parsed.links
        out.errors += parsed.errors
        if parsed.done or parsed.errors:
            out.done = parsed.done
            break
    return out


def usable_addresses(messages: Iterable[AddrMessage], index: int) -> list[IPAddress]:
    """The usable addresses interface `index` holds, in the kernel's order."""
    return list(
        dict.fromkeys(
            m.address for m in messages if m.new and m.index == index and m.usable
        )
    )


__all__ = [
    "AddrMessage",
    "LinkMessage",
    "Parsed",
    "dump_request",
    "parse",
    "read_dump",
    "usable_addresses",
]
