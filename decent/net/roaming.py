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
from collections.abc import Callable, Iterable
from typing import Final

from decent.net.kernel import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV6_IFADDR,
    interface_addresses,
    subscribe,
)
from decent.net.tun import TunShell
from decent.net.udp import DRAIN, NodeShell, Sockets
from decent.wire import IPAddress
from decent.wire.netlink import parse

log = logging.getLogger("decent")
#: Seconds between attempts to bind a new address that refused (still
#: tentative, or gone again before we got to it).
RETRY: Final = 1.0


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
        dump: Callable[[str], list[IPAddress]] = interface_addresses,
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
                sock = subscribe(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
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
    core, which registers at once and SMRs, then the other RLOCs' sockets,
    then the data plane's. With no address left it waits, logging it, for
    one to come back."""

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
        # The other RLOCs' sockets go first: they may hold the new first
        # RLOC's ports (it was a second RLOC until the old one left).
        tun, shell = self._tun(), self.shell
        if tun is not None:
            tun.release_sockets()
        shell.release_sockets()
        sockets = None
        if rlocs[0] != old[0]:
            try:
                sockets = self._open(rlocs[0])
            except OSError as exc:
                log.warning("cannot move to %s yet (%s); retrying", rlocs[0], exc)
                shell.replace_sockets()
                if tun is not None:
                    tun.adopt_sockets()
                self._retry = loop.call_later(RETRY, self._again)
                return
        node.change_rlocs(rlocs, loop.time())
        shell.replace_sockets(sockets)
        if tun is not None:
            # The data plane hears of the new RLOCs (RlocsChanged) before it
            # borrows their sockets, so one without any is marked down in the
            # new RLOC set, not in the old.
            shell.flush()
            tun.adopt_sockets()
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


__all__ = ["AddressWatch", "Roamer", "rloc_order"]
