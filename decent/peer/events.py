"""Typed events the core reports: every drop, rejection, expiry and state change."""

from __future__ import annotations

from dataclasses import dataclass

from decent.peer.config import Addr
from decent.wire import Eid, IPAddress


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """A datagram was dropped; `reason` is also the counter name after drop."""

    peer: Addr
    reason: str


@dataclass(frozen=True, slots=True)
class RegistrationRejected:
    peer: Addr
    reason: str
    eid: Eid | None = None
    #: The node its certificate names, when a signed registration was refused.
    name: str | None = None


@dataclass(frozen=True, slots=True)
class RevocationLearned:
    """A mesh-signed revocation of a node's certificate, new to us: its
    registrations are gone and it is refused from now on."""

    name: str
    serial: int


@dataclass(frozen=True, slots=True)
class UnauthenticatedAccepted:
    """A site that allows Algorithm ID 0 accepted an unauthenticated register."""

    peer: Addr
    site: str


@dataclass(frozen=True, slots=True)
class RegistrationAccepted:
    eid: Eid
    site: str
    registrant: Addr
    xtr_id: int | None
    new: bool
    #: The member that carried a plain xTR's registration on to us.
    via: IPAddress | None = None


@dataclass(frozen=True, slots=True)
class RegistrationRemoved:
    """A registrant deregistered (TTL 0), or the last child of an entry left."""

    eid: Eid
    xtr_id: int | None


@dataclass(frozen=True, slots=True)
class RegistrationExpired:
    eid: Eid
    xtr_id: int | None


@dataclass(frozen=True, slots=True)
class MergedSetChanged:
    """A merged (RFC 8378) entry's locator set changed; members are notified."""

    eid: Eid
    members: int


@dataclass(frozen=True, slots=True)
class NotifyAcknowledged:
    peer: Addr
    nonce: int


@dataclass(frozen=True, slots=True)
class NotifyGaveUp:
    peer: Addr
    nonce: int


@dataclass(frozen=True, slots=True)
class RegisterAcknowledged:
    """Our Map-Register (M bit) was answered by a Map-Notify."""

    peer: Addr
    nonce: int


@dataclass(frozen=True, slots=True)
class MapCacheUpdated:
    eid: Eid
    source: str
    negative: bool
    #: False for a refresh that left the record as it was (logged at DEBUG).
    changed: bool = True


@dataclass(frozen=True, slots=True)
class MapCacheExpired:
    eid: Eid


@dataclass(frozen=True, slots=True)
class MapCacheCleared:
    """An operator emptied the map-cache (the status page's "clear cache")."""

    entries: int


@dataclass(frozen=True, slots=True)
class MapRequestFailed:
    """Ten Map-Requests went unanswered; the prefix is held down (RFC 9301 5.3)."""

    eid: Eid


@dataclass(frozen=True, slots=True)
class SmrReceived:
    eid: Eid
    peer: Addr


@dataclass(frozen=True, slots=True)
class LocatorStateChanged:
    eid: Eid
    rloc: str
    up: bool


@dataclass(frozen=True, slots=True)
class KeyStateChanged:
    """What we know of encrypting to a peer RLOC changed (RFC 8061):
    encrypted, keying, clear (it has no key; we are "preferred") or
    refused (it has none, or an unauthenticated one, or never answered)."""

    rloc: str
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class RlocsChanged:
    """Our own RLOC set changed (a mobile node moved); we re-registered."""

    old: tuple[str, ...]
    new: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SessionUp:
    """A reliable-transport session began its registration exchange:
    `etr` when we connected (we register over it), else the peer did."""

    peer: IPAddress
    etr: bool


@dataclass(frozen=True, slots=True)
class SessionDown:
    """A reliable-transport session ended; registrations fall back to UDP
    and to timer-based expiry."""

    peer: IPAddress
    etr: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RegistrationNacked:
    """A Map-Server refused one of our registrations on a session."""

    peer: IPAddress
    eid: Eid
    reason: str


@dataclass(frozen=True, slots=True)
class NatChanged:
    """What we know of our own reachability changed: `state` is "direct",
    "relayed" (through `relay`; peers see us at `global_address`, our NAT's
    address and port) or "no-relay" (behind NAT, no relay to use)."""

    state: str
    relay: IPAddress | None
    global_address: str | None


@dataclass(frozen=True, slots=True)
class RelayClientChanged:
    """As a relay: a member behind NAT began (`up`) or stopped using us."""

    binding: str
    up: bool


@dataclass(frozen=True, slots=True)
class MapServerSetChanged:
    """Pull mode: DNS gave a Map-Server set's name new addresses."""

    name: str
    old: tuple[IPAddress, ...]
    new: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True)
class MapServerSetFailed:
    """Pull mode: resolving a set's name failed (its last addresses stay)."""

    name: str
    reason: str


Event = (
    MessageDropped
    | RegistrationRejected
    | RevocationLearned
    | UnauthenticatedAccepted
    | RegistrationAccepted
    | RegistrationRemoved
    | RegistrationExpired
    | MergedSetChanged
    | NotifyAcknowledged
    | NotifyGaveUp
    | RegisterAcknowledged
    | MapCacheUpdated
    | MapCacheExpired
    | MapCacheCleared
    | MapRequestFailed
    | SmrReceived
    | LocatorStateChanged
    | KeyStateChanged
    | RlocsChanged
    | SessionUp
    | SessionDown
    | RegistrationNacked
    | NatChanged
    | RelayClientChanged
    | MapServerSetChanged
    | MapServerSetFailed
)
