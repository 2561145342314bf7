"""What the roles share: the Outbox, the Ctx, and the Protocols between roles.

The roles (decent.peer.roles) never import each other. Each gets a `Ctx`
(the config, the outbox, the timers and the three stores) and, for what it
needs of another role, one of the small Protocols below, wired by the Node.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable
from typing import Final, Protocol

from decent.peer import counters as C
from decent.peer.config import Addr, DatabaseMapping, NodeConfig
from decent.peer.events import Event, MessageDropped, RegistrationRejected
from decent.peer.mapcache import MapCache
from decent.peer.mapdb import MapDB
from decent.peer.mapserver import MapServer
from decent.peer.timers import Deadlines
from decent.peer.trust import Trust
from decent.wire import (
    DECENT_CONTROL_IID,
    Address,
    DataHeader,
    Eid,
    IPAddress,
    MapRecord,
    MapRequest,
    MulticastInfo,
    UdpPacket,
    check_auth,
    encapsulate,
)

MASK64: Final = (1 << 64) - 1
MASK32: Final = (1 << 32) - 1
#: Messages an ITR exchanges with its own Map-Resolver: handled in-process
#: when the node resolves for itself (NodeConfig.resolve_in_process).
LOOPBACK_KINDS: Final = frozenset({"map-request", "map-reply"})
#: Events kept for the shell between drains (it drains after every input).
EVENTS_KEPT: Final = 65536


class Outbox:
    """Everything an input produces: datagrams to send, events, counters,
    and the node's one source of nonces."""

    def __init__(self, nonce: Callable[[], int]) -> None:
        self._nonce = nonce
        self.counters: Counter[str] = Counter()
        self.datagrams: list[tuple[bytes, Addr]] = []
        #: Datagrams to send from our data port (4341): control carried as
        #: LISP data, through a NAT binding (decent.peer.mapping.nat).
        self.data_datagrams: list[tuple[bytes, Addr]] = []
        #: NAT bindings of the members we relay for, each with the inner
        #: (source, destination, port) of control we send it: a NAT lets in
        #: only what comes back on the binding the member opened, so every
        #: message for it goes there as LISP data.
        self.bindings: dict[Addr, tuple[IPAddress, IPAddress, int]] = {}
        self.events: deque[Event] = deque(maxlen=EVENTS_KEPT)
        #: Our own Map-Resolver's address when the node resolves in-process:
        #: what goes there comes back through `loopback` (Node runs it).
        self.loopback_addr: Addr | None = None
        self.loopback: deque[bytes] = deque()

    def send(self, data: bytes, dest: Addr, kind: str) -> None:
        self.counters[C.TX + kind] += 1
        if dest == self.loopback_addr and kind in LOOPBACK_KINDS:
            self.loopback.append(data)
            return
        inner = self.bindings.get(dest)
        if inner is not None:
            self.data_datagrams.append((self.in_data(data, *inner), dest))
            return
        self.datagrams.append((data, dest))

    def send_data(self, data: bytes, dest: Addr, kind: str) -> None:
        """Send from our data port: a whole LISP data packet."""
        self.counters[C.TX + kind] += 1
        self.data_datagrams.append((data, dest))

    def in_data(self, data: bytes, src: IPAddress, dst: IPAddress, port: int) -> bytes:
        """A control message as LISP data with the control instance ID,
        as RFC 9962 replicates and a NAT-traversal RTR relays (ermagan 4.5)."""
        inner = UdpPacket(src, dst, port, port, data).encode()
        header = DataHeader(
            nonce=self.nonce() & 0xFFFFFF, instance_id=DECENT_CONTROL_IID
        )
        return encapsulate(header, inner)

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def drop(self, peer: Addr, reason: str) -> None:
        self.counters[C.DROP + reason] += 1
        self.emit(MessageDropped(peer, reason))

    def reject(
        self, peer: Addr, reason: str, eid: Eid | None = None, name: str | None = None
    ) -> None:
        self.counters[C.REJECT + reason] += 1
        self.emit(RegistrationRejected(peer, reason, eid, name))

    def nonce(self) -> int:
        return self._nonce() & MASK64

    def secret(self) -> bytes:
        """32 random bytes from the nonce source: a fresh X25519 private key."""
        return b"".join(self.nonce().to_bytes(8, "big") for _ in range(4))


class Ctx:
    """One node's shared state, as every role sees it. `config` is replaced
    when our RLOCs change (roaming), so roles read it here each time."""

    def __init__(
        self,
        config: NodeConfig,
        out: Outbox,
        ms: MapServer,
        cache: MapCache,
        database: MapDB[DatabaseMapping],
    ) -> None:
        self.config = config
        #: The group's (0/0, G) EID, built once: roaming never changes it,
        #: and every registration and install compares against it.
        self.group_eid = config.group_eid
        self.out = out
        self.timers: Deadlines[Hashable] = Deadlines()
        self.ms = ms
        self.cache = cache
        self.database = database
        #: The address our NAT gives us, while we are behind one (NAT
        #: traversal, decent.peer.mapping.nat, keeps it).
        self.behind_nat: IPAddress | None = None
        #: Node identities (decent.peer.trust), when the mesh has them.
        self.trust = (
            None
            if config.trust is None
            else Trust(config.trust, config.limits.max_revocations)
        )

    def own(self, addr: object) -> bool:
        return addr in self.config.rlocs or addr in self.config.advertise

    def itr_rloc(self, version: int) -> IPAddress | None:
        """The ITR-RLOC for our Map-Requests: where an answer reaches us. Behind
        NAT, the address our NAT gives us (the answer goes to it, at the port
        the request came from, so the NAT lets it in)."""
        behind = self.behind_nat
        if behind is not None and behind.version == version:
            return behind
        return self.config.rloc_for(version)


# ---------------------------------------------------------------- what roles ask
class Members(Protocol):
    """The peer group as far as we know it (the mapping system)."""

    def membership(self) -> list[IPAddress]: ...


class CacheWriter(Protocol):
    """Puts a mapping into the map-cache (the ITR)."""

    def install(self, eid: Eid, rec: MapRecord, source: str, now: float) -> None: ...

    def refresh(self, eid: Eid, now: float) -> None:
        """A registration we hold changed: re-resolve a cached mapping of it."""
        ...

    def request(self, eid: Eid, now: float) -> None:
        """Resolve eid unless it is cached or pending."""
        ...


class ItrNotes(Protocol):
    """Remembers which ITRs send to our EIDs, to SMR them (the ETR)."""

    def note_itr(self, eid: Eid, rloc: IPAddress, now: float) -> None: ...


class Registrar(Protocol):
    """Registers our database (the ETR)."""

    def register_soon(self, now: float) -> None: ...


class SessionGate(Protocol):
    """Hears which ETRs authenticated a UDP Map-Register with the r bit
    (the reliable-transport sessions, decent.peer.transport)."""

    def authorize(self, peer: IPAddress, now: float) -> None: ...


class MembershipWatch(Protocol):
    """Hears that the group's registration or cached RLE changed (the
    mapping system)."""

    def membership_changed(self, now: float) -> None: ...


class KeyAnswers(Protocol):
    """Who adds our RFC 8061 key to a probe reply (the key role)."""

    def answer(
        self,
        req: MapRequest,
        record: MapRecord,
        src: Addr,
        local: Addr | None,
        now: float,
    ) -> MapRecord | None: ...


def eid_on_wire(eid: Eid, wire_form: str) -> tuple[Address, int]:
    """eid as our messages carry it: lispers.net writes a group EID's
    Multicast-Info with two pad bytes (protocol notes 11, gotcha 10)."""
    addr, mask = eid.to_wire()
    if wire_form == "lispers.net" and isinstance(addr, MulticastInfo):
        addr = dataclasses.replace(addr, padded=True)
    return addr, mask


class Carrier(Protocol):
    """Carries a plain xTR's Map-Register on to every other member (the
    mapping system)."""

    def relay_register(self, data: bytes, registrant: Addr) -> None: ...

    def vouches(self, rloc: IPAddress) -> bool: ...

    def relayed_by(self, via: IPAddress) -> bool: ...

    def accepted(
        self,
        src: Addr,
        raw: bytes,
        records: Iterable[tuple[Eid, MapRecord]],
        now: float,
    ) -> bool:
        """A Map-Register (raw) of (EID, record) pairs from src was accepted:
        True when src is a member behind NAT whose registrations go on
        through us."""
        ...


def authentic(config: NodeConfig, alg_id: int, raw: bytes, key: bytes) -> bool:
    """A Map-Notify(-Ack) signed with `key` by an algorithm we accept."""
    return alg_id in config.auth_algorithms and check_auth(raw, key)


def register_record(
    mapping: DatabaseMapping, ttl_zero: bool = False, wire_form: str = "rfc8060"
) -> MapRecord:
    """A database mapping as a Map-Register EID-record (TTL 0 deregisters).
    lispers.net writes a group EID's Multicast-Info with two pad bytes."""
    addr, mask = eid_on_wire(mapping.eid, wire_form)
    ttl = 0 if ttl_zero else mapping.ttl
    return MapRecord(addr, mask, mapping.locators, ttl, authoritative=True)
