"""The data plane's RFC 8061 keys: sending and receiving keys, the replay window.

The key role (decent.peer.roles.keys) makes and replaces them; the data
plane (decent.peer.dataplane) seals and opens packets with them. Plain
slotted records: the data plane touches them for every packet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from decent.wire import Eid, IPAddress
from decent.wire.crypto import Cipher


class ReplayWindow:
    """RFC 4303-style sliding window over the IV counter: a packet is new if
    its counter is above every one seen, or within WIDTH below the highest
    and not seen yet. Updated only after the packet authenticated."""

    WIDTH: Final = 1024
    __slots__ = ("bits", "top")

    def __init__(self) -> None:
        self.top = 0
        self.bits = 0

    def fresh(self, seq: int) -> bool:
        top = self.top
        if seq > top:
            return True
        behind = top - seq
        return seq > 0 and behind < self.WIDTH and not self.bits >> behind & 1

    def accept(self, seq: int) -> None:
        top = self.top
        if seq > top:
            self.bits = (self.bits << (seq - top) | 1) & ((1 << self.WIDTH) - 1)
            self.top = seq
        else:
            self.bits |= 1 << (top - seq)


@dataclass(slots=True)
class TxKey:
    """The key we seal packets to one peer RLOC with."""

    key_id: int
    suite: int
    cipher: Cipher
    private: bytes
    public: bytes
    etr_public: bytes
    sent_keys: tuple[bytes, ...]
    eid: Eid
    rloc: IPAddress
    #: Our RLOC it was made from (the ETR knows it by that address).
    source: IPAddress
    created: float
    #: The last IV counter used; the next packet uses counter + 1.
    counter: int = 0
    #: The counter at which a rekey is due.
    limit: int = 0
    #: The counter at the last KeyCheck, and how many found it unchanged.
    checked: int = 0
    idle: int = 0


@dataclass(slots=True)
class RxKey:
    """A key one peer RLOC seals its packets to us with."""

    suite: int
    cipher: Cipher
    itr_public: bytes
    etr_public: bytes
    created: float
    used: float
    window: ReplayWindow = field(default_factory=ReplayWindow)
    packets: int = 0


@dataclass(slots=True)
class PeerKeys:
    """What the ITR knows of one peer RLOC, for the operator."""

    state: str
    since: float
    reason: str = ""
    retry_at: float = 0.0
