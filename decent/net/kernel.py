"""What the shell asks the Linux kernel: addresses, link state, netlink, options."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Sequence
from functools import partial
from typing import Final

from decent.wire import IPAddress
from decent.wire.netlink import (
    RTM_GETADDR,
    RTM_GETLINK,
    Parsed,
    dump_request,
    read_dump,
    usable_addresses,
)

log = logging.getLogger("decent")
# Linux socket options; not in typeshed's socket module.
SO_SNDBUFFORCE: Final = 32
SO_RCVBUFFORCE: Final = 33
# rtnetlink multicast groups (the RTMGRP_* of rtnetlink(7)).
RTMGRP_LINK: Final = 0x1
RTMGRP_IPV4_IFADDR: Final = 0x10
RTMGRP_IPV6_IFADDR: Final = 0x100
#: Seconds a dump may take before it counts as failed (it takes microseconds;
#: the shell asks from the loop, which must never hang on it).
DUMP_TIMEOUT: Final = 1.0


def _netlink() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)


def dump(kind: int = RTM_GETADDR) -> Parsed:
    """Every address (RTM_GETADDR) or every link (RTM_GETLINK) the kernel
    has now. Raises OSError if netlink fails."""
    with _netlink() as nl:
        nl.settimeout(DUMP_TIMEOUT)
        nl.bind((0, 0))
        nl.send(dump_request(kind=kind))
        return read_dump(partial(nl.recv, 1 << 16))


def interface_addresses(interface: str) -> list[IPAddress]:
    """The usable addresses of `interface` now (see AddrMessage.usable), in
    the kernel's order; none if it does not exist (any more) or netlink
    fails (logged)."""
    try:
        index = socket.if_nametoindex(interface)
    except OSError:
        return []
    try:
        dumped = dump(RTM_GETADDR)
    except OSError as exc:
        log.warning("cannot read the addresses of %s: %s", interface, exc)
        return []
    return usable_addresses(dumped.messages, index)


def interface_index(address: IPAddress) -> int:
    """The index of the interface holding `address`. Raises OSError
    (EADDRNOTAVAIL if no interface has it)."""
    for m in dump(RTM_GETADDR).messages:
        if m.new and m.address == address:
            return m.index
    raise OSError(errno.EADDRNOTAVAIL, f"no interface has {address}")


def rloc_states(rlocs: Sequence[IPAddress]) -> list[bool]:
    """Per RLOC: is it on an interface that is up with its carrier up? All
    up if netlink cannot tell (a failed read must not take our RLOCs down)."""
    try:
        links, addrs = dump(RTM_GETLINK), dump(RTM_GETADDR)
    except OSError as exc:
        log.debug("cannot read link states: %s", exc)
        return [True] * len(rlocs)
    up = {link.index: link.up for link in links.links if link.new}
    # Any address counts, tentative ones too: the link's state is asked.
    where = {m.address: m.index for m in addrs.messages if m.new}
    return [up.get(where.get(r, -1), False) for r in rlocs]


def subscribe(groups: int) -> socket.socket:
    """A non-blocking netlink socket hearing the rtnetlink `groups` (RTMGRP_*
    bits). Raises OSError if netlink is unavailable."""
    sock = _netlink()
    try:
        sock.bind((0, groups))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


__all__ = [
    "RTMGRP_IPV4_IFADDR",
    "RTMGRP_IPV6_IFADDR",
    "RTMGRP_LINK",
    "SO_RCVBUFFORCE",
    "SO_SNDBUFFORCE",
    "dump",
    "interface_addresses",
    "interface_index",
    "rloc_states",
    "subscribe",
]
