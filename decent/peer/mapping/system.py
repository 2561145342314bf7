"""The MappingSystem seam: what the ETR and the ITR ask of the mapping system they use.

The ETR asks where its registrations go and hands it the signed
Map-Register to deliver; the ITR asks which Map-Resolvers to use for an
EID. LISP-Decent push mode (decent.peer.mapping.push) is one answer, pull
mode with DNS-selected Map-Server sets (decent.peer.mapping.pull) another.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol

from decent.peer.config import Addr, DatabaseMapping
from decent.wire import Eid, IPAddress, MapReply, UdpPacket


class MappingSystem(Protocol):
    def membership(self) -> list[IPAddress]:
        """The peers that hold every registration with us (a push group's
        members; empty when there is no group)."""
        ...

    def register_targets(self) -> tuple[Addr, ...]:
        """The Map-Servers our registrations go to (one may be a group)."""
        ...

    def register_sets(
        self, mappings: list[DatabaseMapping]
    ) -> list[tuple[tuple[Addr, ...], list[DatabaseMapping]]]:
        """Our mappings grouped by the Map-Servers each goes to (pull mode
        picks them per EID)."""
        ...

    def vouches(self, rloc: IPAddress) -> bool:
        """Whether rloc is one of the mapping system's own members."""
        ...

    def relayed_by(self, via: IPAddress) -> bool:
        """Whether via relays for members behind NAT."""
        ...

    def relay_register(self, data: bytes, registrant: Addr) -> None:
        """Carry a plain xTR's Map-Register on to every other member."""
        ...

    def send_register(
        self, data: bytes, targets: Sequence[Addr], kind: str = "map-register"
    ) -> None:
        """Deliver one Map-Register to `targets` (a subset of
        register_targets(), e.g. those yet to acknowledge it)."""
        ...

    def resolvers_for(self, eid: Eid) -> tuple[Addr, ...]:
        """The Map-Resolvers to ask about eid, in the order to try them."""
        ...

    def referred(self, eid: Eid, rep: MapReply) -> bool:
        """A reply to our lookup of eid names the layer that holds it
        instead (RFC 9962 4.4): ask there (True)."""
        ...

    def alone(self) -> bool:
        """In a group, but no other member known yet (register soon)."""
        ...

    def membership_changed(self, now: float) -> None:
        """The group's registration or cached RLE changed."""
        ...

    def on_reply(self, rep: MapReply, src: Addr, now: float) -> bool:
        """Take a Map-Reply to a lookup of the mapping system's own (True)."""
        ...

    def receive_replicated(self, packet: UdpPacket, addr: Addr, now: float) -> None:
        """A data-port datagram with the control instance ID (RFC 9962 4.1)."""
        ...

    def handle_timer(self, key: Hashable, now: float) -> None: ...

    def rlocs_changed(
        self, old: tuple[IPAddress, ...], new: tuple[IPAddress, ...]
    ) -> None: ...

    def sweep(self, now: float) -> None: ...

    def sizes(self) -> dict[str, int]: ...
