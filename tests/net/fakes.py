"""Stand-ins for the shells' partners, for tests that run one shell alone."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Lender:
    """The node shell as TunShell sees it (SocketOwner): it lends the data
    sockets, one per RLOC, and would call `data_drain` when they are
    readable (these tests register their readers themselves)."""

    sockets: list[socket.socket | None]
    data_drain: Callable[[socket.socket], None] | None = None

    def data_sockets(self) -> list[socket.socket | None]:
        return self.sockets
