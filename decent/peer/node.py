"""The sans-I/O LISP node: Map-Server, Map-Resolver, ETR and ITR map-cache in one.

Theory of operation
-------------------
Inputs are `receive_datagram(data, addr, now)`, `handle_timer(now)` and the
local calls (`request`, `set_locators`, `deregister`, ...). Every input may
queue datagrams and events; the shell then drains `datagrams_to_send()` and
`next_event()` and re-arms its timer from `get_timer()`. `now` is monotonic
seconds; nonces come from the injected `nonce` callable. Nothing a peer sends
makes an input raise: malformed, unauthenticated or unexpected datagrams are
dropped, counted under `drop.<reason>` or `reject.<reason>`, and reported as
events, and they change no state.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Final

from decent.peer.config import (
    Addr,
    ChildKey,
    DatabaseMapping,
    NodeConfig,
    Site,
    rloc_order,
)
from decent.peer.events import (
    Event,
    LocatorStateChanged,
    MapCacheCleared,
    MapCacheExpired,
    MapCacheUpdated,
    MapRequestFailed,
    MergedSetChanged,
    MessageDropped,
    NotifyAcknowledged,
    NotifyGaveUp,
    RegisterAcknowledged,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationRejected,
    RegistrationRemoved,
    RlocsChanged,
    SmrReceived,
    UnauthenticatedAccepted,
)
from decent.peer.mapcache import CacheEntry, MapCache
from decent.peer.mapdb import MapDB
from decent.peer.mapserver import (
    HeldRegister,
    MapServer,
    Registration,
    SiteEntry,
    rle_entries,
)
from decent.peer.ratelimit import Bucket, Buckets
from decent.peer.replay import Slot, Verdict
from decent.peer.timers import Deadlines
from decent.wire import (
    DECENT_CONTROL_IID,
    NO_ADDRESS,
    Action,
    Address,
    AlgorithmId,
    DataHeader,
    DecodeError,
    Eid,
    EncapsulatedControlMessage,
    InstanceId,
    IPAddress,
    Locator,
    MapNotify,
    MapNotifyAck,
    MapRecord,
    MapReferral,
    MapRegister,
    MapReply,
    MapRequest,
    RequestRecord,
    Rle,
    RleEntry,
    UdpPacket,
    check_auth,
    decapsulate,
    decode,
    decode_udp_packet,
    encapsulate,
    encode_record,
    map_notify_for,
    map_register_bytes,
    map_reply_bytes,
    sign_bytes,
)
from decent.wire.auth import AUTH_LENGTH

if TYPE_CHECKING:  # pragma: no cover - the data plane imports this module
    from decent.peer.dataplane import DataPlane

MASK64: Final = (1 << 64) - 1
MASK32: Final = (1 << 32) - 1
#: How many of its latest Map-Register nonces an ETR confirms when a Map-
#: Server challenges one (decent.peer.replay): a round of registrations,
#: however many Map-Registers it takes.
_SENT_REMEMBERED: Final = 256
_MIN: Final = 60.0
#: Registrations per registration lifetime, at least: RFC 9301 8.2's own
#: ratio (60 s period, 3 min timeout), so two lost Map-Registers in a row
#: still do not let a registration lapse.
_REFRESHES_PER_LIFETIME: Final = 3
#: Messages an ITR exchanges with its own Map-Resolver: handled in-process
#: when the node resolves for itself (NodeConfig.resolve_in_process).
_LOOPBACK_KINDS: Final = frozenset({"map-request", "map-reply"})
#: Replicated packets held from senders not yet known as members, and for
#: how long (a new member's Map-Notify follows within a round trip).
_UNVOUCHED: Final = 32
_UNVOUCHED_HOLD: Final = 5.0


# ---------------------------------------------------------------- timer keys
@dataclass(frozen=True, slots=True)
class RegisterTick:
    """Time for the ETR's periodic (or quick) registration."""


@dataclass(frozen=True, slots=True)
class RegisterRetry:
    nonce: int


@dataclass(frozen=True, slots=True)
class ExpireChild:
    eid: Eid
    child: ChildKey


@dataclass(frozen=True, slots=True)
class NotifyRetry:
    nonce: int
    peer: IPAddress


@dataclass(frozen=True, slots=True)
class CacheExpiry:
    eid: Eid


@dataclass(frozen=True, slots=True)
class RequestRetry:
    eid: Eid


@dataclass(frozen=True, slots=True)
class ProbeTick:
    """Time to RLOC-probe every cached locator."""


@dataclass(frozen=True, slots=True)
class ProbeTimeout:
    nonce: int


@dataclass(frozen=True, slots=True)
class GroupLookup:
    """Time to ask a peer for the peer group's membership."""


@dataclass(frozen=True, slots=True)
class Sweep:
    """Prune soft state (rate-limit buckets, recently seen ITRs)."""


@dataclass(frozen=True, slots=True)
class ReleaseUnvouched:
    """New members appeared: take what they replicated before we knew them."""


@dataclass(frozen=True, slots=True)
class SmrAgain:
    """Second round of SMRs after our RLOCs changed (see change_rlocs)."""


TimerKey = (
    RegisterTick
    | RegisterRetry
    | ExpireChild
    | NotifyRetry
    | CacheExpiry
    | RequestRetry
    | ProbeTick
    | ProbeTimeout
    | GroupLookup
    | Sweep
    | SmrAgain
    | ReleaseUnvouched
)


# ---------------------------------------------------------------- pending state
@dataclass(slots=True)
class Refusal:
    """A registrant refused lately for a quota or its rate (status page)."""

    registrant: ChildKey
    source: Addr
    reason: str
    count: int
    first: float
    last: float


@dataclass(slots=True)
class _PendingRequest:
    eid: Eid
    attempts: int = 0
    smr_invoked: bool = False
    held_until: float | None = None
    nonces: list[int] = dataclasses.field(default_factory=list)


@dataclass(slots=True)
class _PendingNotify:
    data: bytes
    dest: Addr
    key: bytes | None
    eid: Eid
    attempt: int = 0


@dataclass(slots=True)
class _PendingRegister:
    records: tuple[MapRecord, ...]
    flags: tuple[bool, bool, bool]
    #: Map-Servers whose Map-Notify has not arrived yet.
    awaiting: set[Addr]
    attempt: int = 0


class Node:
    """A LISP node's protocol state. See the module docstring for the contract."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        nonce: Callable[[], int],
        now: float = 0.0,
        register_nonce: int = 0,
    ) -> None:
        """Build a node at time `now`.

        `nonce` returns fresh random 64-bit values (RFC 9301 5.2: from a seeded
        PRNG). `register_nonce` is the last Map-Register nonce sent before a
        restart, so the sequence keeps increasing (RFC 9301 5.6).
        """
        self.config = config
        self._nonce = nonce
        limits = config.limits
        self.ms = MapServer(config.sites, config.registration_timeout, limits)
        self.cache = MapCache()
        self.database: MapDB[DatabaseMapping] = MapDB()
        for mapping in config.database:
            self.database.insert(mapping.eid, mapping)
        self.counters: Counter[str] = Counter()
        self.register_nonce = register_nonce
        self._out: list[tuple[bytes, Addr]] = []
        self._events: deque[Event] = deque(maxlen=65536)
        self._timers: Deadlines[TimerKey] = Deadlines()
        self._pending_requests: dict[Eid, _PendingRequest] = {}
        self._request_nonces: dict[int, Eid] = {}
        self._pending_registers: dict[int, _PendingRegister] = {}
        self._pending_notifies: dict[tuple[int, IPAddress], _PendingNotify] = {}
        self._probes: dict[int, tuple[Eid, IPAddress, float]] = {}
        self._reply_buckets: Buckets[IPAddress] = Buckets(
            config.map_reply_rate, config.map_reply_burst, limits.reply_buckets
        )
        #: RFC 9301 5.4's per-destination limit alone lets a requester spread
        #: spoofed requests over many victims: this bounds the sum, in bytes.
        self._reply_bytes_out = Bucket(
            limits.reply_global_rate, limits.reply_global_burst, now
        )
        #: Map-Register records per registrant (identity and source).
        self._register_buckets: Buckets[tuple[ChildKey, IPAddress]] = Buckets(
            limits.registrant_rate, limits.registrant_burst, limits.max_registrants
        )
        #: Low 32 bits of our latest Map-Register nonces (see _challenge).
        #: Our Map-Register nonces run up by one from here (this process's).
        self._first_nonce = register_nonce
        #: Every EID this node has registered since it started: a Map-Notify
        #: about one of them is a question about our registrations.
        self._registered: set[Eid] = set()
        #: Replicated control from senders not (yet) known as members.
        self._unvouched: deque[tuple[float, IPAddress, UdpPacket]] = deque(
            maxlen=_UNVOUCHED
        )
        #: Configured seeds: members by the operator's word, even unannounced.
        self._seeds = frozenset(
            ms[0] for ms in config.map_servers if ms[0] != config.group
        ) - set(config.rlocs)
        #: Registrants refused lately (quota, rate): who, why, how often, when.
        self._refused: OrderedDict[tuple[ChildKey, str], Refusal] = OrderedDict()
        self._recent_itrs: dict[Eid, dict[IPAddress, float]] = {}
        self._smr_last: dict[Eid, float] = {}
        # RFC 9301 8.2 quick registration after a (re)start: every 20 s for
        # 5 minutes, so a registration lost on the way is soon repeated.
        self._quick_until = now + config.quick_register_period
        self._known_members: set[IPAddress] = set()
        self._group_eid = config.group_eid
        self._bootstrap_backoff = 0.5
        if config.database and config.map_servers:
            self._timers.set(RegisterTick(), now)
        if config.probe_interval:
            self._timers.set(ProbeTick(), now + config.probe_interval)
        self._timers.set(Sweep(), now + config.recent_itr_window)
        #: Outstanding group lookups: nonce -> peer asked (the last round only).
        self._group_lookups: dict[int, IPAddress] = {}
        self._group_lookup_round = 0
        if config.group is not None and config.group_lookup_interval:
            self._timers.set(GroupLookup(), now + config.group_lookup_interval)
        #: The xTR data plane, when one is attached (DataPlane attaches itself).
        self.dataplane: DataPlane | None = None
        #: Bumped on every registration change: the data plane's list of
        #: registered RLOCs (whom its ETR decapsulates for) follows it.
        self.registry_version = 0
        self._loopback_addr = self._loopback_target()
        self._loopback: deque[bytes] = deque()
        self._looping = False

    # ============================================================ shell API
    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        """Drain the datagrams queued by earlier inputs: (payload, destination)."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline; call `handle_timer` when it passes."""
        return self._timers.next_at()

    def handle_timer(self, now: float) -> None:
        """Run every deadline due at `now`. Call `flush()` (drain) afterwards."""
        for key in self._timers.pop_due(now):
            match key:
                case RegisterTick():
                    self._register_tick(now)
                case RegisterRetry(nonce):
                    self._register_retry(nonce, now)
                case ExpireChild(eid, child):
                    self._expire_child(eid, child, now)
                case NotifyRetry(nonce, peer):
                    self._notify_retry(nonce, peer, now)
                case CacheExpiry(eid):
                    self._cache_expiry(eid)
                case RequestRetry(eid):
                    self._request_retry(eid, now)
                case ProbeTick():
                    self._probe_tick(now)
                case ProbeTimeout(nonce):
                    self._probe_timeout(nonce, now)
                case GroupLookup():
                    self._group_lookup(now)
                case SmrAgain():
                    self._smr_all(now)
                case ReleaseUnvouched():
                    self._release_unvouched(now)
                case Sweep():  # pragma: no branch - the cases are exhaustive
                    self._sweep(now)
        self._run_loopback(now)

    def receive_datagram(
        self, data: bytes, addr: Addr, now: float, local: Addr | None = None
    ) -> None:
        """Feed one UDP payload received on the control port from `addr`.

        `local` is the address it arrived on, when the shell knows it (it
        marks the probed locator in RLOC-probe replies). Never raises because
        of what the datagram holds. Drain outputs afterwards. A datagram
        that arrived on the data port is handed to `receive_data_packet`.
        """
        if local is not None and local[1] == self.config.data_port:
            self.receive_data_packet(data, addr, now)
            return
        try:
            msg = decode(data)
        except DecodeError:
            self._drop(addr, "decode-error")
            return
        try:
            self._dispatch(msg, data, addr, now, local)
        except ValueError:
            # A decoded field that the protocol layer cannot use, e.g. an EID
            # with an LCAF we cannot index: the peer's fault, not ours.
            self._drop(addr, "unusable-field")
        self._run_loopback(now)

    def receive_data_packet(self, data: bytes, addr: Addr, now: float) -> None:
        """Feed one UDP payload received on the data port (4341).

        Packets with instance ID 0xffffff carry replicated LISP-Decent control
        traffic (RFC 9962 4.1): the inner message goes to the control path.
        It is never replicated again. Only a member replicates, and only its
        own messages: the outer source must be in the group's RLE (or be one
        of our seeds), and the inner source must be that same address,
        which is then the sender; anything else is dropped.
        """
        try:
            header, inner = decapsulate(data)
            if header.instance_id != DECENT_CONTROL_IID:
                if self.dataplane is None:
                    self._drop(addr, "data-plane-off")
                else:
                    self.dataplane.receive_packet(data, addr, now)
                return
            packet = decode_udp_packet(inner)
        except DecodeError:
            self._drop(addr, "decode-error")
            return
        to_us = packet.dst == self.config.group or self._own(packet.dst)
        if not to_us or packet.dport != self.config.control_port:
            self._drop(addr, "replicated-not-for-us")
            return
        if packet.src != addr[0]:
            self._drop(addr, "replicated-spoofed")
            return
        if addr[0] not in self.membership() and addr[0] not in self._seeds:
            # A member that just joined may replicate to us before the
            # Map-Notify naming it arrives: keep a few such packets briefly,
            # and take them if their sender turns out to be a member.
            self._drop(addr, "replicated-not-member")
            self._unvouched.append((now + _UNVOUCHED_HOLD, addr[0], packet))
            return
        self.counters["rx.replicated"] += 1
        self.receive_datagram(packet.payload, (addr[0], packet.sport), now)

    def _release_unvouched(self, now: float) -> None:
        """Take the held replicated packets whose sender is now a member."""
        held, members = list(self._unvouched), set(self.membership())
        self._unvouched.clear()
        for expires, rloc, packet in held:
            if expires < now:
                continue
            if rloc in members:
                self.counters["replicated.released"] += 1
                self.receive_datagram(packet.payload, (rloc, packet.sport), now)
            else:
                self._unvouched.append((expires, rloc, packet))

    def membership(self) -> list[IPAddress]:
        """The peer group's members: the merged (0/0, G) RLE we hold as a
        Map-Server, together with any we learned from Map-Notify/Map-Reply."""
        eid = self._group_eid
        if eid is None:
            return []
        members: dict[IPAddress, None] = {}
        entry = self.ms.db.get(eid)
        if entry is not None:
            members.update(dict.fromkeys(entry.members()))
        cached = self.cache.db.get(eid)
        if cached is not None:
            for loc in cached.record.locators:
                for e in rle_entries(loc):
                    if isinstance(e.address, IPv4Address | IPv6Address):
                        members[e.address] = None
        return sorted(members, key=lambda a: (a.version, a.packed))

    def _dispatch(
        self,
        msg: object,
        data: bytes,
        addr: Addr,
        now: float,
        local: Addr | None,
    ) -> None:
        match msg:
            case MapRequest():
                self.counters["rx.map-request"] += 1
                self._on_request(msg, addr, now, None, local, len(data))
            case EncapsulatedControlMessage(message=MapRequest() as inner):
                self.counters["rx.ecm"] += 1
                self._on_request(inner, addr, now, msg, local, len(data))
            case MapReply():
                self.counters["rx.map-reply"] += 1
                self._on_reply(msg, addr, now)
            case MapRegister():
                self.counters["rx.map-register"] += 1
                self._on_register(msg, data, addr, now)
            case MapNotifyAck():
                self.counters["rx.map-notify-ack"] += 1
                self._on_notify_ack(msg, data, addr, now)
            case MapNotify():
                self.counters["rx.map-notify"] += 1
                self._on_notify(msg, data, addr, now)
            case MapReferral():
                self.counters["rx.map-referral"] += 1
                self._drop(addr, "unexpected-map-referral")
            case _:
                self.counters["rx.ecm"] += 1
                self._drop(addr, "unsupported-ecm")

    # ============================================================ local calls
    def request(self, eid: Eid, now: float) -> None:
        """Resolve eid through the Map-Resolvers unless it is cached or pending
        (the ITR's cache-miss path). Drain outputs afterwards."""
        entry = self.cache.lookup(eid)
        if entry is not None and entry.expires > now:
            return
        self._start_request(eid, now, smr_invoked=False)
        self._run_loopback(now)

    def set_locators(self, eid: Eid, locators: tuple[Locator, ...], now: float) -> None:
        """Change (or add) a database mapping's RLOC set, as a mobile node does
        when its address changes: register at once, keep registering quickly
        for a while (RFC 9301 8.2), and SMR the ITRs that recently used it."""
        old = self.database.get(eid)
        mapping = (
            dataclasses.replace(old, locators=locators)
            if old is not None
            else DatabaseMapping(eid, locators)
        )
        self.database.insert(eid, mapping)
        self._quick_until = now + self.config.quick_register_period
        # Register before the SMRs leave: an SMR'd ITR asks the mapping
        # system, which must already hold the new locators when it does.
        self._register_tick(now)
        self._send_smrs(eid, now)

    def change_rlocs(self, rlocs: Iterable[IPAddress], now: float) -> None:
        """Our own RLOC set changed (a mobile node roamed, the shell saw its
        interface's addresses change): LISP-MN wants the new RLOC-set
        registered at once and SMRs sent to the ITRs recently sending to us.

        Every database mapping's own locators become the new set (an address
        that stays keeps its locator, a new one takes the policy of the one
        at its position), the membership's RLE member becomes the new RLOC
        of the group's family, and so do our own Map-Server and Map-Resolver
        addresses, the head-end replication source and the data plane's
        source RLOCs. Raises ValueError for an empty set, or one without an
        address of the group's family (the shell only offers usable ones).
        """
        new = tuple(dict.fromkeys(rlocs))
        old = self.config.rlocs
        if new == old:
            return
        group = self.config.group
        if not new or (group is not None and group.version not in _versions(new)):
            raise ValueError("a node needs an RLOC, of its group's family if any")
        cfg = self.config
        self.config = dataclasses.replace(
            cfg,
            rlocs=new,
            map_servers=_moved_addrs(cfg.map_servers, old, new),
            map_resolvers=_moved_addrs(cfg.map_resolvers, old, new),
        )
        self._loopback_addr = self._loopback_target()
        for eid, mapping in list(self.database.items()):
            locators = _moved_locators(mapping.locators, old, new)
            if locators != mapping.locators:
                self.database.insert(
                    eid, dataclasses.replace(mapping, locators=locators)
                )
        gone = set(old) - set(new)
        self._known_members -= gone
        self._move_cached_membership(old, new)
        if self.dataplane is not None:
            self.dataplane.rlocs_changed()
        self.counters["rlocs.changed"] += 1
        self._emit(RlocsChanged(tuple(map(str, old)), tuple(map(str, new))))
        if any(self._own(ms[0]) for ms in self.config.map_servers):
            self._register_locally(now)
        self._quick_until = now + self.config.quick_register_period
        # Register before the SMRs leave, so the mapping system holds the new
        # locators when an SMR'd ITR asks it (RFC 9301 6.1).
        self._register_tick(now)
        self._smr_all(now)
        # The SMR and the Map-Register travel apart (control port, and data
        # port when replicated): an ITR whose Map-Server had not heard the
        # new registration yet re-resolved the old locators. One more round,
        # a second after the ITR's SMR rate limit lets it act again, fixes it.
        self._timers.set(SmrAgain(), now + self.config.smr_interval + 1.0)
        self._run_loopback(now)

    def _loopback_target(self) -> Addr | None:
        cfg = self.config
        own = (cfg.rlocs[0], cfg.control_port)
        return own if cfg.resolve_in_process and own in cfg.map_resolvers else None

    def _register_locally(self, now: float) -> None:
        """Put our new registrations into our own Map-Server at once: the
        membership it holds decides where the group's copies go next, and
        our old RLOC must not be among them (nor linger for our own ITR)."""
        src = (self.config.rlocs[0], self.config.control_port)
        for _, mapping in list(self.database.items()):
            site = self.ms.site_for(mapping.eid)
            if site is None:
                continue
            msg = MapRegister(
                0,
                (_register_record(mapping),),
                proxy_reply=mapping.proxy_reply,
                ttl_timeout=True,
                merge=mapping.merge,
                xtr_id=self.config.xtr_id,
                site_id=self.config.site_id,
            )
            self._apply_register(msg, [mapping.eid], site, src, now)

    def _move_cached_membership(
        self, old: tuple[IPAddress, ...], new: tuple[IPAddress, ...]
    ) -> None:
        """The group's RLE in our map-cache (from a Map-Notify) names our old
        RLOC until a peer tells us otherwise: name the new one meanwhile, so
        no replicated copy goes to an address that is no longer ours."""
        eid = self._group_eid
        cached = None if eid is None else self.cache.db.get(eid)
        if eid is None or cached is None:
            return
        locators = _moved_locators(cached.record.locators, old, new)
        if locators == cached.record.locators:
            return
        record = dataclasses.replace(cached.record, locators=locators)
        expires = cached.expires
        self.cache.install(eid, record, cached.source, expires).expires = expires

    def _smr_all(self, now: float) -> None:
        for eid, _ in self.database.items():
            self._send_smrs(eid, now)

    def deregister(self, now: float, eids: Iterable[Eid] | None = None) -> None:
        """Send TTL-0 Map-Registers so Map-Servers drop our mappings at once
        (graceful shutdown when eids is None). Drain outputs afterwards.

        The mappings leave the database too: otherwise the next periodic
        registration (or a pending retransmission) would register them again.
        """
        wanted = None if eids is None else set(eids)  # eids may be one-shot
        chosen = [m for e, m in self.database.items() if wanted is None or e in wanted]
        self._register(chosen, now, ttl_zero=True)
        for mapping in chosen:
            self.database.remove(mapping.eid)

    def clear_map_cache(self) -> int:
        """Forget every map-cache entry (the operator's "clear cache"), as if
        each had expired: the next packet or lookup resolves it again. The
        membership is unaffected, since this node's Map-Server holds the
        group's registration too. Returns how many entries went; drain
        events afterwards."""
        eids = [eid for eid, _ in self.cache.db.items()]
        for eid in eids:
            self.cache.remove(eid)
            self._timers.cancel(CacheExpiry(eid))
        self.counters["cache.cleared"] += len(eids)
        self._emit(MapCacheCleared(len(eids)))
        return len(eids)

    def note_itr(self, eid: Eid, rloc: IPAddress, now: float) -> None:
        """Record that an ITR at rloc recently sent us traffic for eid, so a
        change of eid's mapping SMRs it (RFC 9301 6.1). At most
        `recent_itrs` per EID, the most recent: requesters can claim any
        ITR-RLOC, and each would get an SMR."""
        itrs = self._recent_itrs.setdefault(eid, {})
        itrs.pop(rloc, None)
        itrs[rloc] = now
        if len(itrs) > self.config.limits.recent_itrs:
            del itrs[next(iter(itrs))]

    # ============================================================ helpers
    def _send(self, data: bytes, dest: Addr, kind: str) -> None:
        self.counters["tx." + kind] += 1
        if dest == self._loopback_addr and kind in _LOOPBACK_KINDS:
            self._loopback.append(data)
            return
        self._out.append((data, dest))

    def _run_loopback(self, now: float) -> None:
        """Hand what we sent to our own Map-Resolver (and its reply to our
        ITR) back to ourselves: an EID registered to the group resolves with
        no datagram on any network and no wait for the event loop."""
        if self._looping:
            return
        addr = self._loopback_addr
        self._looping = True
        try:
            while self._loopback:
                assert addr is not None
                self.receive_datagram(self._loopback.popleft(), addr, now, addr)
        finally:
            self._looping = False

    def _send_to_group(self, data: bytes, kind: str, skip: set[IPAddress]) -> None:
        """RFC 9962 4.1: one message for every member. Natively to G on a
        multicast underlay; otherwise head-end replicated, data-encapsulated
        to each member's data port with instance ID 0xffffff."""
        group = self.config.group
        assert group is not None
        port = self.config.control_port
        if self.config.group_mode == "multicast":
            self._send(data, (group, port), kind)
            return
        own = self.config.rloc_for(group.version)
        if own is None:
            return
        inner = UdpPacket(own, group, port, port, data).encode()
        for member in self.membership():
            if member in skip or self._own(member) or member.version != own.version:
                continue
            header = DataHeader(
                nonce=self._next_nonce() & 0xFFFFFF, instance_id=DECENT_CONTROL_IID
            )
            self._send(
                encapsulate(header, inner),
                (member, self.config.data_port),
                "replicated-" + kind,
            )

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _drop(self, peer: Addr, reason: str) -> None:
        self.counters["drop." + reason] += 1
        self._emit(MessageDropped(peer, reason))

    def _reject(self, peer: Addr, reason: str, eid: Eid | None = None) -> None:
        self.counters["reject." + reason] += 1
        self._emit(RegistrationRejected(peer, reason, eid))

    def _own(self, addr: object) -> bool:
        return addr in self.config.rlocs

    def _next_nonce(self) -> int:
        return self._nonce() & MASK64

    # ============================================================ Map-Server
    def _on_register(self, msg: MapRegister, raw: bytes, src: Addr, now: float) -> None:
        eids = [Eid.from_wire(r.eid, r.mask_len) for r in msg.records]
        site, reason = self.ms.authorize(msg, raw, eids)
        if site is None:
            self._reject(src, reason, eids[0] if eids else None)
            return
        # Replays first, so that replaying a registrant's traffic cannot
        # spend its rate allowance.
        replay = self.ms.replay
        slot = self.ms.slot(site, msg, src)
        if not site.relaxed_nonces:
            verdict = replay.check(slot, src[0], msg.nonce)
            if verdict is not Verdict.FRESH:
                self._reject(src, verdict.reason, eids[0])
                if verdict is not Verdict.DUPLICATE and msg.alg_id:
                    held = HeldRegister(msg, raw, tuple(eids), site)
                    self._challenge(held, slot, src, now)
                return
        who = slot[1]
        if not self._register_buckets.take((who, src[0]), now, len(msg.records)):
            self._refuse(who, src, "registrant-rate", eids[0], now)
            return
        if not site.relaxed_nonces:
            if not replay.room_for(slot, src[0], self.ms.holds):
                self._refuse(who, src, "nonce-marks-full", eids[0], now)
                return
            replay.accept(slot, src[0], msg.nonce, now)
        self._register_accepted(msg, raw, eids, site, src, now)

    def _challenge(self, held: HeldRegister, slot: Slot, src: Addr, now: float) -> None:
        """Ask the registrant to confirm a Map-Register refused for its nonce
        alone (decent.peer.replay): a Map-Notify with its records, signed
        like the Map-Register. Its nonce carries the Map-Register's (low 32
        bits, so the registrant can tell one of its own) above 32 fresh
        random bits (so no earlier answer can be replayed to it)."""
        key = held.site.key(held.msg.key_id)
        challenge = (held.msg.nonce & MASK32) << 32 | self._next_nonce() & MASK32
        if key is None or not self.ms.replay.challenge(
            slot, held.msg.nonce, src, held, challenge, now
        ):
            self.counters["resync.busy"] += 1
            return
        notify = MapNotify(challenge, held.msg.records, held.msg.key_id)
        self._send(notify.signed(key, held.msg.alg_id).encode(), src, "challenge")

    def _confirmed(self, msg: MapNotifyAck, raw: bytes, src: Addr, now: float) -> bool:
        """A registrant's answer to our challenge: apply what it confirmed.
        False when msg answers no challenge of ours."""
        challenge = self.ms.replay.pending(msg.nonce, now)
        if challenge is None:
            return False
        site, register = challenge.held.site, challenge.held.msg
        key = site.key(register.key_id)
        if key is None or msg.alg_id not in site.algorithms or not check_auth(raw, key):
            self._drop(src, "auth-failed")
            return True
        self.ms.replay.confirm(msg.nonce, now)
        self.counters["resync.confirmed"] += 1
        held = challenge.held
        self._register_accepted(
            register, held.raw, list(held.eids), site, challenge.src, now
        )
        return True

    def _refuse(
        self, who: ChildKey, src: Addr, reason: str, eid: Eid | None, now: float
    ) -> None:
        """A registrant went over a quota or its rate: say so, and keep it in
        the (bounded) table the status page shows."""
        self._reject(src, reason, eid)
        key = (who, reason)
        seen = self._refused.pop(key, None)
        if seen is None:
            seen = Refusal(who, src, reason, 0, now, now)
            if len(self._refused) >= self.config.limits.refused_shown:
                self._refused.popitem(last=False)
        seen.count, seen.last, seen.source = seen.count + 1, now, src
        self._refused[key] = seen

    def refused_registrants(self) -> list[Refusal]:
        """Registrants refused lately for a quota or their rate, newest last."""
        return list(self._refused.values())

    def _register_accepted(
        self,
        msg: MapRegister,
        raw: bytes,
        eids: list[Eid],
        site: Site,
        src: Addr,
        now: float,
    ) -> None:
        if msg.alg_id == 0:
            self.counters["accept.unauthenticated"] += 1
            self._emit(UnauthenticatedAccepted(src, site.name))
        self._apply_register(msg, eids, site, src, now)
        if msg.want_map_notify:
            # RFC 9301 5.7: the Map-Notify acknowledges with the registration's
            # nonce and records, authenticated with the site key; it is sent
            # only for a Map-Register that passed authentication.
            key = site.key(msg.key_id) if msg.alg_id else None
            data = map_notify_for(raw, key)
            self._send(data, src, "map-notify")

    def _apply_register(
        self, msg: MapRegister, eids: list[Eid], site: Site, src: Addr, now: float
    ) -> None:
        """Store an authorized registration and act on what it changed."""
        for ch in self.ms.apply(msg, eids, site, src, now):
            if ch.refused:
                self._refuse(ch.child, src, ch.refused, ch.eid, now)
                continue
            self.registry_version += 1
            timer = ExpireChild(ch.eid, ch.child)
            if ch.removed:
                self._timers.cancel(timer)
                # Something was removed: the whole entry, or one child of a
                # merged entry that others still hold.
                if ch.entry is not None or ch.changed:
                    self.counters["registration.removed"] += 1
                    self._emit(RegistrationRemoved(ch.eid, msg.xtr_id))
            else:
                assert ch.entry is not None
                # A refresh only moves the expiry later, and the armed timer
                # re-arms itself when it finds the child renewed
                # (_expire_child), so the common refresh costs no heap push.
                expires = ch.entry.children[ch.child].expires
                armed = self._timers.when(timer)
                if armed is None or armed > expires:
                    self._timers.set(timer, expires)
                self.counters["registration.accepted"] += 1
                self._emit(
                    RegistrationAccepted(ch.eid, site.name, src, msg.xtr_id, ch.new)
                )
            if ch.changed and ch.entry is not None and ch.entry.merge:
                self._notify_members(ch.entry, now)
            if ch.changed and ch.eid == self._group_eid:
                self._membership_changed(now)

    def _expire_child(self, eid: Eid, child: ChildKey, now: float) -> None:
        ch = self.ms.expire(eid, child, now)
        if ch is None:
            # Renewed since the timer was armed: wait for the new expiry.
            entry = self.ms.db.get(eid)
            renewed = None if entry is None else entry.children.get(child)
            if renewed is not None:
                self._timers.set(ExpireChild(eid, child), renewed.expires)
            return
        self.registry_version += 1
        self.counters["registration.expired"] += 1
        self._emit(RegistrationExpired(eid, child if isinstance(child, int) else None))
        if ch.changed and ch.entry is not None and ch.entry.merge:
            self._notify_members(ch.entry, now)

    def _notify_members(self, entry: SiteEntry, now: float) -> None:
        """RFC 8378 5.3: tell every member of a merged entry its new RLE."""
        members = [m for m in entry.members() if not self._own(m)]
        self._emit(MergedSetChanged(entry.eid, len(entry.members())))
        site = next(s for s in self.ms.sites if s.name == entry.site)
        key_id, key = site.keys[0] if site.keys else (0, None)
        eid_addr, mask = entry.eid.to_wire()
        record = dataclasses.replace(entry.record, eid=eid_addr, mask_len=mask)
        # This notify supersedes any still being retransmitted for the entry:
        # an older set arriving after it would undo it in the member's cache.
        for slot in [
            k for k, p in self._pending_notifies.items() if p.eid == entry.eid
        ]:
            del self._pending_notifies[slot]
            self._timers.cancel(NotifyRetry(*slot))
        for member in members:
            nonce = self._next_nonce()
            notify = MapNotify(nonce, (record,), key_id)
            if key is not None:
                notify = notify.signed(key, self.config.register_alg)
            data = notify.encode()
            dest = (member, self.config.control_port)
            self._pending_notifies[(nonce, member)] = _PendingNotify(
                data, dest, key, entry.eid
            )
            self._send(data, dest, "map-notify")
            self._timers.set(
                NotifyRetry(nonce, member), now + self.config.notify_retry_intervals[0]
            )

    def _notify_retry(self, nonce: int, peer: IPAddress, now: float) -> None:
        # An ack or a newer notify cancels this timer: still outstanding.
        pending = self._pending_notifies[(nonce, peer)]
        pending.attempt += 1
        intervals = self.config.notify_retry_intervals
        if pending.attempt > len(intervals):
            # RFC 9301 5.7 retransmits a bounded number of times; old peers
            # may never send Map-Notify-Ack (gotcha 14), so stop, don't loop.
            del self._pending_notifies[(nonce, peer)]
            self.counters["notify.gave-up"] += 1
            self._emit(NotifyGaveUp(pending.dest, nonce))
            return
        self._send(pending.data, pending.dest, "map-notify")
        if pending.attempt < len(intervals):
            self._timers.set(NotifyRetry(nonce, peer), now + intervals[pending.attempt])
        else:
            self._timers.set(NotifyRetry(nonce, peer), now + intervals[-1])

    def _on_notify_ack(
        self, msg: MapNotifyAck, raw: bytes, src: Addr, now: float
    ) -> None:
        if self._confirmed(msg, raw, src, now):
            return
        slot = (msg.nonce, src[0])
        pending = self._pending_notifies.get(slot)
        if pending is None:
            self._drop(src, "unsolicited-notify-ack")
            return
        if pending.key is not None and not self._authentic(
            msg.alg_id, raw, pending.key
        ):
            self._drop(src, "auth-failed")
            return
        del self._pending_notifies[slot]
        self._timers.cancel(NotifyRetry(msg.nonce, src[0]))
        self._emit(NotifyAcknowledged(src, msg.nonce))

    # ============================================================ Map-Resolver
    def _on_request(
        self,
        req: MapRequest,
        src: Addr,
        now: float,
        ecm: EncapsulatedControlMessage | None,
        local: Addr | None,
        size: int,
    ) -> None:
        """Answer a Map-Request (`size` bytes as it arrived).

        RFC 9301 5.5 wants the best match and every more-specific under it
        in one Map-Reply; RFC 9301 5 wants one datagram within the path MTU,
        and a spoofed requester must not get more bytes sent to its victim
        than a bounded multiple of what it sent itself (Limits). When the
        whole answer does not fit, each best match is narrowed instead to
        the largest prefix around the query that holds no more-specific
        (MapDB.free_block): smaller, but never wrong."""
        if req.smr:
            self._on_smr(req, src, now)
            return
        target = self._reply_target(req, src, ecm)
        if target is None:
            self._drop(src, "no-itr-rloc")
            return
        if req.probe:
            if ecm is not None:  # RFC 9301 5.8: RLOC-probes are never ECM'd
                self._drop(src, "probe-in-ecm")
                return
            eid = Eid.from_wire(req.records[0].eid, req.records[0].mask_len)
            hit = self.database.lookup(eid)
            if hit is None:  # C8: an MR/MS MUST drop probes not for its EIDs
                self._drop(src, "probe-not-for-us")
                return
            record = self._database_record(hit[1], local)
            self._reply(req.nonce, [encode_record(record)], target, now, size, True)
            return
        records: list[bytes] = []
        wide: list[_Wide] = []
        ms_db = self.ms.db
        for rec in req.records:
            # A host query (the common case) is matched on its integer; the
            # Eid is built only when the answer needs it.
            host = _host_key(rec.eid, rec.mask_len)
            query: Eid | None = None
            if host is None:
                query = Eid.from_wire(rec.eid, rec.mask_len)
                own = self.database.lookup(query)
                reg = ms_db.lookup(query)
            else:
                own = self.database.lookup_host(*host)
                reg = ms_db.lookup_host(*host)
            if own is not None:
                self.note_itr(own[0], target[0], now)
                # The Map-Server's entry wins when it is at least as specific:
                # it holds what every registrant sent (a merged group entry
                # lists all members, our own database only us). The ETR
                # answers what was forwarded to it, or what no one registered.
                if (
                    (ecm is not None and ecm.to_etr)
                    or reg is None
                    or own[0].mask_len > reg[0].mask_len
                ):
                    records.append(encode_record(self._database_record(own[1], None)))
                    continue
            if reg is not None and not reg[1].proxy_reply and len(req.records) == 1:
                self._forward_to_etr(req, reg[1], src, ecm)
                return
            if reg is not None:
                # RFC 9301 5.5: with the best match, every more-specific under
                # it, so the ITR does not cache a too-broad mapping (a host
                # match has none).
                records.append(reg[1].reply_record)
                if host is None or reg[0].mask_len != rec.mask_len:
                    more = self.ms.more_specifics(reg[1])
                    if more:
                        point = _query_point(rec, host)
                        wide.append((len(records) - 1, len(more), point))
                        records.extend(e.reply_record for e in more)
            else:
                query = query or Eid.from_wire(rec.eid, rec.mask_len)
                records.append(self._negative_record(query))
        if wide and not self._fits(records, target, size):
            narrowed = self._narrowed(records, wide)
            if narrowed is not None:
                self.counters["reply.narrowed"] += 1
                records = narrowed
        self._reply(req.nonce, records, target, now, size)

    def _narrowed(self, records: list[bytes], wide: list[_Wide]) -> list[bytes] | None:
        """`records` with each best match that lists more-specifics replaced
        by one record for the largest prefix around the query holding none.
        None when a query is a name or an (S,G) EID (nothing to narrow)."""
        out: list[bytes] = []
        done = 0
        db = self.ms.db
        for index, count, point in wide:
            if point is None:
                return None
            hit = db.lookup(point)
            block = None if hit is None else db.free_block(point, hit[0])
            if hit is None or block is None:
                return None
            addr, mask = block.to_wire()
            record = dataclasses.replace(
                hit[1].record, eid=addr, mask_len=mask, authoritative=False
            )
            out.extend(records[done:index])
            out.append(encode_record(record))
            done = index + 1 + count
        out.extend(records[done:])
        return out

    def _fits(self, records: list[bytes], target: Addr, size: int) -> bool:
        """Whether a Map-Reply of these records may go to target: one byte
        counts the records, one datagram carries them, and a requester that
        is not a member gets at most `reply_amplification` times its own
        Map-Request (it may have spoofed its victim's address)."""
        if len(records) > 255:
            return False
        limits = self.config.limits
        total = 12 + sum(map(len, records))
        headers = 28 if target[0].version == 4 else 48
        if total > limits.underlay_mtu - headers:
            return False
        return (
            total <= limits.reply_amplification * size or target[0] in self.membership()
        )

    def _reply(
        self,
        nonce: int,
        records: list[bytes],
        target: Addr,
        now: float,
        size: int,
        probe: bool = False,
    ) -> None:
        if not self._fits(records, target, size):
            self._drop(target, "reply-too-large")
            return
        data = map_reply_bytes(nonce, records, probe)
        if self._rate_limited(target, now, len(data)):
            return
        self._send(data, target, "map-reply")

    def _reply_target(
        self, req: MapRequest, src: Addr, ecm: EncapsulatedControlMessage | None
    ) -> Addr | None:
        """The ITR-RLOC to answer (RFC 9301 5.3: a routable RLOC of the
        requester), preferring the family the request came in on."""
        port = ecm.inner_sport if ecm is not None else src[1]
        version = src[0].version
        first = None
        for rloc in req.itr_rlocs:
            if isinstance(rloc, _IP_TYPES):
                if rloc.version == version:
                    return (rloc, port)
                if first is None:
                    first = rloc
        return None if first is None else (first, port)

    def _rate_limited(self, target: Addr, now: float, size: int) -> bool:
        """RFC 9301 5.4: Map-Replies MUST be rate-limited. A token bucket per
        destination RLOC bounds what one victim of spoofed requests gets;
        a byte budget over all destinations bounds the sum."""
        if not self._reply_buckets.take(target[0], now):
            self._drop(target, "rate-limited")
            return True
        if not self._reply_bytes_out.take(now, size):
            self._drop(target, "global-rate-limited")
            return True
        return False

    def _database_record(
        self, mapping: DatabaseMapping, local: Addr | None
    ) -> MapRecord:
        locators = mapping.locators
        if local is not None:
            # RFC 9301 5.4: the p bit marks the locator the probe arrived on.
            locators = tuple(
                dataclasses.replace(loc, probed=True)
                if loc.address == local[0]
                else loc
                for loc in locators
            )
        addr, mask = mapping.eid.to_wire()
        return MapRecord(addr, mask, locators, mapping.ttl, authoritative=True)

    def negative_answer(self, eid: Eid) -> tuple[Eid, int, Action]:
        """The Map-Resolver's negative answer for an unregistered eid: the
        least-specific prefix covering it and no registered prefix, its TTL
        in minutes, and the action (RFC 9301 8.3/8.4)."""
        configured = self.ms.configured(eid)
        if configured is not None:
            prefix = self.ms.db.uncovered_prefix(eid, within=configured) or eid
            return (
                prefix,
                self.config.negative_ttl_unregistered,
                Action.SEND_MAP_REQUEST,
            )
        # Not an EID: the least-specific prefix that covers no known
        # EID-prefix (RFC 9301 8.4). Configured site prefixes are EID space
        # even while nothing in them is registered, and registrations lie
        # inside them, so the configured prefixes alone decide.
        prefix = self.ms.configured_db.uncovered_prefix(eid) or eid
        return prefix, self.config.negative_ttl_unknown, Action.NATIVELY_FORWARD

    def _negative_record(self, eid: Eid) -> bytes:
        prefix, ttl, action = self.negative_answer(eid)
        addr, mask = prefix.to_wire()
        return encode_record(MapRecord(addr, mask, (), ttl, action))

    def _forward_to_etr(
        self,
        req: MapRequest,
        entry: SiteEntry,
        src: Addr,
        ecm: EncapsulatedControlMessage | None,
    ) -> None:
        """RFC 9301 8.3: without proxy-reply, the unchanged Map-Request goes to
        one registered ETR in an ECM, and that ETR answers the ITR directly.
        An RLOC the ETR marked unreachable (R clear) or unusable (priority
        255) is the last choice (RFC 9301 5.4)."""
        etrs = [
            loc
            for loc in entry.record.locators
            if isinstance(loc.address, IPv4Address | IPv6Address)
        ]
        if not etrs:
            self._drop(src, "no-etr-rloc")
            return
        best = min(etrs, key=lambda loc: not loc.reachable or loc.priority == 255)
        etr = best.address
        assert isinstance(etr, IPv4Address | IPv6Address)
        inner_src = ecm.inner_src if ecm is not None else src[0]
        inner_dst = ecm.inner_dst if ecm is not None else etr
        if inner_src.version != inner_dst.version:
            inner_dst = inner_src
        out = EncapsulatedControlMessage(
            req,
            inner_src,
            inner_dst,
            ecm.inner_sport if ecm is not None else src[1],
            self.config.control_port,
            to_etr=True,
        )
        self._send(out.encode(), (etr, self.config.control_port), "ecm")

    # ============================================================ ITR
    def _start_request(self, eid: Eid, now: float, *, smr_invoked: bool) -> None:
        pending = self._pending_requests.get(eid)
        if pending is not None:
            # C13: at most one Map-Request per second per prefix, and none
            # during the 30 s hold-down after ten unanswered ones.
            return
        if not self.config.map_resolvers:
            self._drop((self.config.rlocs[0], 0), "no-map-resolver")
            return
        pending = _PendingRequest(eid, smr_invoked=smr_invoked)
        self._pending_requests[eid] = pending
        self._send_request(pending, now)

    def _send_request(self, pending: _PendingRequest, now: float) -> None:
        nonce = self._next_nonce()
        pending.nonces.append(nonce)
        self._request_nonces[nonce] = pending.eid
        addr, mask = pending.eid.to_wire()
        req = MapRequest(
            nonce,
            (RequestRecord(addr, mask),),
            self.config.rlocs,
            smr_invoked=pending.smr_invoked,
        )
        resolvers = self.config.map_resolvers
        resolver = resolvers[pending.attempts % len(resolvers)]
        own = self.config.rloc_for(resolver[0].version) or self.config.rlocs[0]
        inner_dst = pending.eid.address
        if not isinstance(inner_dst, IPv4Address | IPv6Address) or (
            inner_dst.version != own.version
        ):
            inner_dst = resolver[0] if resolver[0].version == own.version else own
        ecm = EncapsulatedControlMessage(
            req, own, inner_dst, self.config.control_port, self.config.control_port
        )
        pending.attempts += 1
        self._send(ecm.encode(), resolver, "map-request")
        self._timers.set(RequestRetry(pending.eid), now + self.config.request_interval)

    def _request_retry(self, eid: Eid, now: float) -> None:
        # _forget_request cancels this timer, so the request is pending.
        pending = self._pending_requests[eid]
        if pending.held_until is not None:
            self._forget_request(pending)
            return
        if pending.attempts >= self.config.request_attempts:
            pending.held_until = now + self.config.request_holddown
            self.counters["request.failed"] += 1
            self._emit(MapRequestFailed(eid))
            if self.dataplane is not None:
                self.dataplane.on_request_failed(eid)
            self._timers.set(RequestRetry(eid), pending.held_until)
            return
        self._send_request(pending, now)

    def _forget_request(self, pending: _PendingRequest) -> None:
        for n in pending.nonces:
            self._request_nonces.pop(n, None)
        self._pending_requests.pop(pending.eid, None)
        self._timers.cancel(RequestRetry(pending.eid))

    def _on_reply(self, rep: MapReply, src: Addr, now: float) -> None:
        if rep.probe:
            self._on_probe_reply(rep, src, now)
            return
        if self._group_lookups.pop(rep.nonce, None) is not None:
            self._on_group_reply(rep, src, now)
            return
        eid = self._request_nonces.get(rep.nonce)
        if eid is None:
            self._drop(src, "unsolicited-map-reply")
            return
        # Every EID first: a record we cannot index raises ValueError (the
        # datagram is dropped), and that must not leave half a reply applied.
        eids = [Eid.from_wire(rec.eid, rec.mask_len) for rec in rep.records]
        self._forget_request(self._pending_requests[eid])
        # Our own Map-Resolver answered in-process: the map-cache says so.
        source = "local" if src == self._loopback_addr else "map-reply"
        for got, rec in zip(eids, rep.records, strict=True):
            self._install(got, rec, source, now)

    def _group_lookup(self, now: float) -> None:
        """RFC 9962 4.2: without PubSub, an ITR SHOULD look its group up
        periodically to see membership change. Our own Map-Server already
        holds what reached us, so ask a peer (seeds first, then members, in
        turn): its answer repairs what lost Map-Notifies left out."""
        assert self.config.group_lookup_interval
        self._timers.set(GroupLookup(), now + self.config.group_lookup_interval)
        self._group_lookups.clear()  # unanswered last round: the next one retries
        group, eid = self.config.group, self._group_eid
        assert group is not None
        assert eid is not None
        peers = [
            ms[0] for ms in self.config.map_servers if ms[0] != group
        ] + self.membership()
        peers = [p for p in dict.fromkeys(peers) if not self._own(p)]
        if not peers:
            return
        peer = peers[self._group_lookup_round % len(peers)]
        self._group_lookup_round += 1
        own = self.config.rloc_for(peer.version)
        if own is None:
            return
        nonce = self._next_nonce()
        addr, mask = eid.to_wire()
        req = MapRequest(nonce, (RequestRecord(addr, mask),), (own,))
        self._group_lookups[nonce] = peer
        self._send(req.encode(), (peer, self.config.control_port), "map-request")

    def _on_group_reply(self, rep: MapReply, src: Addr, now: float) -> None:
        for rec in rep.records:
            if Eid.from_wire(rec.eid, rec.mask_len) == self._group_eid and rec.locators:
                self._install(self._group_eid, rec, "map-reply", now)

    def _install(self, eid: Eid, rec: MapRecord, source: str, now: float) -> None:
        if rec.ttl == 0:  # RFC 9301 5.4 (C16): TTL 0 MUST remove
            if self.cache.remove(eid) is not None:
                self._timers.cancel(CacheExpiry(eid))
                self._emit(MapCacheExpired(eid))
            return
        if len(self.cache) >= self.config.limits.max_cache_entries and (
            self.cache.db.get(eid) is None
        ):
            # Map-Notifies a key holder sends unasked could fill it otherwise.
            self.counters["cache.full"] += 1
            return
        entry = self.cache.install(eid, rec, source, now)
        self._timers.set(CacheExpiry(eid), entry.expires)
        self.counters["cache.installed"] += 1
        self._emit(MapCacheUpdated(eid, source, entry.negative))
        if self.dataplane is not None:
            self.dataplane.on_install(eid, now)
        if eid == self._group_eid:
            self._membership_changed(now)

    def _membership_changed(self, now: float) -> None:
        """A member we never registered to has appeared: register to the group
        now rather than at the next period, so it learns our EIDs at once.
        Coalesced: one registration round covers every join seen meanwhile."""
        members = set(self.membership())
        if members <= self._known_members:
            return
        self._known_members |= members
        if self._unvouched:
            self._timers.set(ReleaseUnvouched(), now)
        if not (self.config.database and self.config.map_servers):
            return
        soon = now + 0.01
        when = self._timers.when(RegisterTick())
        if when is None or when > soon:
            self._timers.set(RegisterTick(), soon)

    def _cache_expiry(self, eid: Eid) -> None:
        # The timer moves with every install and goes with every removal, so
        # the entry is there and due.
        self.cache.remove(eid)
        self.counters["cache.expired"] += 1
        self._emit(MapCacheExpired(eid))

    def _on_smr(self, req: MapRequest, src: Addr, now: float) -> None:
        """RFC 9301 6.1: re-resolve an SMR'd mapping through the mapping
        system (never from the SMR's sender), at most once per 3 s."""
        named = [(req.source_eid, 0)] + [(r.eid, r.mask_len) for r in req.records]
        seen: set[Eid] = set()
        for addr, mask in named:
            if addr is NO_ADDRESS:
                continue
            try:
                eid = Eid.from_wire(addr, mask or _full_mask(addr))
            except ValueError:
                continue
            entry = self.cache.lookup(eid)
            if entry is None:  # no cached mapping: SHOULD NOT respond
                continue
            if entry.eid in seen:  # named twice (source EID and record): once
                continue
            seen.add(entry.eid)
            last = self._smr_last.get(entry.eid)
            if last is not None and now - last < self.config.smr_interval:
                self._drop(src, "smr-rate-limited")
                continue
            self._smr_last[entry.eid] = now
            self._emit(SmrReceived(entry.eid, src))
            self._start_request(entry.eid, now, smr_invoked=True)
        if not seen:
            self._drop(src, "smr-not-cached")

    def _send_smrs(self, eid: Eid, now: float) -> None:
        itrs = self._recent_itrs.get(eid, {})
        addr, mask = eid.to_wire()
        for itr, seen in itrs.items():
            if now - seen > self.config.recent_itr_window:
                continue
            own = self.config.rloc_for(itr.version)
            if own is None:
                continue
            smr = MapRequest(
                self._next_nonce(),
                (RequestRecord(addr, mask),),
                (own,),
                source_eid=addr,
                smr=True,
            )
            self._send(smr.encode(), (itr, self.config.control_port), "smr")

    # ------------------------------------------------------------ probing
    def _probe_tick(self, now: float) -> None:
        for eid, entry in list(self.cache.db.items()):
            if entry.negative:
                continue
            for state in entry.locators:
                rloc = state.locator.address
                if not isinstance(rloc, IPv4Address | IPv6Address) or self._own(rloc):
                    continue
                self._send_probe(eid, rloc, now)
        assert self.config.probe_interval
        self._timers.set(ProbeTick(), now + self.config.probe_interval)

    def _send_probe(self, eid: Eid, rloc: IPAddress, now: float) -> None:
        own = self.config.rloc_for(rloc.version)
        if own is None:
            return
        addr, mask = eid.to_wire()
        nonce = self._next_nonce()
        probe = MapRequest(nonce, (RequestRecord(addr, mask),), (own,), probe=True)
        self._probes[nonce] = (eid, rloc, now)
        self._send(probe.encode(), (rloc, self.config.control_port), "probe")
        self._timers.set(ProbeTimeout(nonce), now + self.config.probe_timeout)

    def _probe_state(self, eid: Eid, rloc: IPAddress) -> tuple[CacheEntry, int] | None:
        entry = self.cache.db.get(eid)
        if entry is None:
            return None
        for i, state in enumerate(entry.locators):
            if state.locator.address == rloc:
                return entry, i
        return None

    def _on_probe_reply(self, rep: MapReply, src: Addr, now: float) -> None:
        probe = self._probes.get(rep.nonce)
        # C15: a probe reply whose records lack the A bit MUST be discarded,
        # and it must not use up the probe (whose timeout stays armed).
        if probe is None or not all(r.authoritative for r in rep.records):
            self._drop(src, "unsolicited-probe-reply")
            return
        del self._probes[rep.nonce]
        self._timers.cancel(ProbeTimeout(rep.nonce))
        # The sender is not compared with the probed RLOC: the ETR answers
        # from its outgoing interface (RFC 9301 7.1), which need not be the
        # RLOC probed, and the echoed 64-bit random nonce is the match key.
        eid, rloc, sent = probe
        found = self._probe_state(eid, rloc)
        if found is None:
            return
        state = found[0].locators[found[1]]
        state.rtt, state.missed = now - sent, 0
        if not state.up:
            state.up = True
            self.cache.generation += 1
            self._emit(LocatorStateChanged(eid, str(rloc), True))

    def _probe_timeout(self, nonce: int, now: float) -> None:
        # A reply cancels this timer, so the probe is still outstanding.
        eid, rloc, _ = self._probes.pop(nonce)
        found = self._probe_state(eid, rloc)
        if found is None:
            return
        state = found[0].locators[found[1]]
        state.missed += 1
        if state.up and state.missed >= self.config.probe_down_after:
            state.up = False
            self.cache.generation += 1
            self._emit(LocatorStateChanged(eid, str(rloc), False))
        elif state.up:
            # Probe again at once rather than a whole interval later, so a
            # dead RLOC is left within one interval plus the down-after
            # timeouts of the failure (traffic may be going to it).
            self._send_probe(eid, rloc, now)

    # ============================================================ ETR
    def _authentic(self, alg_id: int, raw: bytes, key: bytes) -> bool:
        """A Map-Notify(-Ack) signed with `key` by an algorithm we accept."""
        return alg_id in self.config.auth_algorithms and check_auth(raw, key)

    def _about_us(self, records: tuple[MapRecord, ...]) -> str:
        """What a Map-Notify's records say of our own registrations:
        "current", exactly what we register now (a Map-Server asks us to
        confirm it, decent.peer.replay); "stale", one of our EIDs as we do
        not register it now, or one we once registered (a replay someone
        wants us to confirm); "other" for the rest: the merged set of a
        group that lists us (RFC 8378 5.3), mappings of EIDs never ours."""
        verdict = "current" if records else "other"
        for rec in records:
            eid = Eid.from_wire(rec.eid, rec.mask_len)
            mapping = self.database.get(eid)
            if mapping is not None and rec == _register_record(mapping):
                continue
            if mapping is not None and mapping.merge and rec.ttl > 0:
                if not self._listed(rec):
                    return "stale"
                verdict = "other"
            elif mapping is None and eid not in self._registered:
                verdict = "other"
            else:
                return "stale"
        return verdict

    def _sent_lately(self, low: int) -> bool:
        """Whether one of our latest Map-Registers (this process's) had a
        nonce with these low 32 bits: they are sequential, so a range."""
        back = (self.register_nonce - low) & MASK32
        sent = (self.register_nonce - self._first_nonce) & MASK64
        return back < min(sent, _SENT_REMEMBERED)

    def _listed(self, rec: MapRecord) -> bool:
        """Whether a merged record's RLE names one of our RLOCs."""
        return any(
            entry.address in self.config.rlocs
            for loc in rec.locators
            for entry in rle_entries(loc)
        )

    def _on_notify(self, msg: MapNotify, raw: bytes, src: Addr, now: float) -> None:
        key = self.config.register_key
        if key and not self._authentic(msg.alg_id, raw, key):
            self._drop(src, "auth-failed")
            return
        pending = self._pending_registers.get(msg.nonce)
        if pending is not None:
            pending.awaiting.discard(src)
            if not pending.awaiting:
                del self._pending_registers[msg.nonce]
                self._timers.cancel(RegisterRetry(msg.nonce))
            self._emit(RegisterAcknowledged(src, msg.nonce))
            return
        about_us = self._about_us(msg.records)
        if about_us != "other":
            if about_us == "current" and self._sent_lately(msg.nonce >> 32):
                # A Map-Server re-synchronising our nonce (decent.peer.replay)
                # asks us to confirm one of our latest Map-Registers, which
                # says what we register now: yes (nothing to cache).
                ack = MapNotifyAck(msg.nonce, msg.records, msg.key_id)
                if key:
                    ack = ack.signed(key, self.config.register_alg)
                self._send(ack.encode(), src, "map-notify-ack")
            else:
                # Never acknowledged: the Map-Server would take it as our
                # word for an old Map-Register of ours, or someone else's.
                self._drop(src, "not-our-registration")
            return
        # An unsolicited Map-Notify (RFC 8378 membership change, RFC 9437
        # publication): cache what it carries and acknowledge it. All EIDs
        # first, so an unusable record drops the whole message (not half).
        eids = [Eid.from_wire(rec.eid, rec.mask_len) for rec in msg.records]
        for eid, rec in zip(eids, msg.records, strict=True):
            self._install(eid, rec, "map-notify", now)
        ack = MapNotifyAck(msg.nonce, msg.records, msg.key_id)
        if key:
            ack = ack.signed(key, self.config.register_alg)
        self._send(ack.encode(), src, "map-notify-ack")

    def _register_tick(self, now: float) -> None:
        # The periodic (or quick) registration carries the whole database, so
        # it replaces unanswered retransmissions rather than starting another
        # chain beside them (one more per period, for ever, while a
        # Map-Server is down), and it continues their back-off (RFC 9301 5.7).
        attempt = 0
        for nonce, pending in self._pending_registers.items():
            self._timers.cancel(RegisterRetry(nonce))
            attempt = max(attempt, pending.attempt + 1)
        self._pending_registers.clear()
        mappings = [m for _, m in self.database.items()]
        self._register(mappings, now, attempt=attempt)
        interval = self.config.register_interval
        # With the T bit a mapping's record TTL is also its registration
        # lifetime, so a short one (a mobile node's 1 minute, against the
        # 60 s period) would lapse between rounds. Rather than refuse such a
        # configuration, register often enough for every mapping. The whole
        # database goes each time: one schedule keeps retransmission, quick
        # and bootstrap registration in one place, and a node with short
        # TTLs is a mobile one, whose own mappings are all short.
        shortest = min((m.ttl for m in mappings if m.ttl > 0), default=None)
        if shortest is not None:
            interval = min(interval, shortest * _MIN / _REFRESHES_PER_LIFETIME)
        if now < self._quick_until:
            # Quick registration may only make registering more frequent.
            interval = min(interval, self.config.quick_register_interval)
        if self._alone():
            # A member no peer has answered yet (say its seed was still
            # starting) retries soon, backing off to the quick-registration
            # interval, instead of waiting out a whole period alone.
            self._bootstrap_backoff = min(
                2.0 * self._bootstrap_backoff, self.config.quick_register_interval
            )
            interval = min(interval, self._bootstrap_backoff)
        # RFC 9301 8.2 suggests jitter so a fleet does not register in step.
        jitter = (self._next_nonce() % 1000) / 1000.0 * self.config.register_jitter
        self._timers.set(RegisterTick(), now + interval * (1.0 - jitter))

    def _alone(self) -> bool:
        """In a peer group, but no other member known yet."""
        if self.config.group is None:
            return False
        return all(self._own(m) for m in self.membership())

    def _register(
        self,
        mappings: list[DatabaseMapping],
        now: float,
        ttl_zero: bool = False,
        attempt: int = 0,
    ) -> None:
        groups: dict[tuple[bool, bool, bool], list[MapRecord]] = {}
        self._registered.update(m.eid for m in mappings)
        for m in mappings:
            flags = (m.proxy_reply, m.merge, m.want_map_notify and not ttl_zero)
            groups.setdefault(flags, []).append(_register_record(m, ttl_zero))
        for flags, records in groups.items():
            for batch, body in self._batches(records):
                self._send_register(batch, flags, now, attempt=attempt, body=body)

    def _batches(
        self, records: list[MapRecord]
    ) -> Iterable[tuple[tuple[MapRecord, ...], bytes]]:
        """Records packed into Map-Registers, with their encoding: header,
        32-byte MAC and xTR-ID trailer, then records up to the configured
        size (lispers.net packs up to 1100 bytes)."""
        budget = self.config.max_register_size - 16 - 32 - 24
        batch: list[MapRecord] = []
        chunks: list[bytes] = []
        used = 0
        for rec in records:
            data = encode_record(rec)
            if batch and used + len(data) > budget:
                yield tuple(batch), b"".join(chunks)
                batch, chunks, used = [], [], 0
            batch.append(rec)
            chunks.append(data)
            used += len(data)
        yield tuple(batch), b"".join(chunks)  # records is never empty

    def _send_register(
        self,
        records: tuple[MapRecord, ...],
        flags: tuple[bool, bool, bool],
        now: float,
        targets: tuple[Addr, ...] | None = None,
        attempt: int = 0,
        body: bytes | None = None,
    ) -> None:
        """Send one Map-Register. `body` is the records' encoding if known."""
        proxy, merge, want_notify = flags
        self.register_nonce = (self.register_nonce + 1) & MASK64
        key = self.config.register_key
        alg = self.config.register_alg if key else AlgorithmId.NONE
        auth = bytes(AUTH_LENGTH[alg]) if key else b""
        head = MapRegister(
            self.register_nonce,
            (),
            0,
            alg,
            auth,
            proxy_reply=proxy,
            ttl_timeout=True,
            merge=merge,
            want_map_notify=want_notify,
            xtr_id=self.config.xtr_id,
            site_id=self.config.site_id,
        )
        # What MapRegister(records).signed(key).encode() gives, with each
        # record encoded once rather than three times.
        if body is None:
            body = b"".join(encode_record(r) for r in records)
        data = map_register_bytes(head, len(records), body)
        if key:
            data = sign_bytes(data, key)
        targets = self.config.map_servers if targets is None else targets
        group = self.config.group
        unicast = [t for t in targets if t[0] != group]
        if len(unicast) != len(targets):
            if self.config.group_mode == "multicast":
                # Members hear the group copy; a seed that is one already
                # would only drop a unicast duplicate as a replayed nonce.
                members = set(self.membership())
                unicast = [t for t in unicast if self._own(t[0]) or t[0] not in members]
            self._send_to_group(data, "map-register", {t[0] for t in unicast})
        for ms in unicast:
            self._send(data, ms, "map-register")
        if want_notify:
            # RFC 9301 5.7: retransmit after 1 s, doubling up to 60 s.
            self._pending_registers[self.register_nonce] = _PendingRegister(
                records, flags, set(targets), attempt
            )
            self._timers.set(
                RegisterRetry(self.register_nonce), now + min(2.0**attempt, 60.0)
            )

    def _register_retry(self, nonce: int, now: float) -> None:
        """RFC 9301 5.7: no Map-Notify yet, so send again, with a fresh nonce
        (the Map-Server drops repeated ones), to the Map-Servers still silent.

        The records are rebuilt from the database: a mapping changed since
        (set_locators) must not be re-registered in its old form, and one
        deregistered since must not come back.
        """
        pending = self._pending_registers.pop(nonce)
        mappings = (
            self.database.get(Eid.from_wire(r.eid, r.mask_len)) for r in pending.records
        )
        records = tuple(_register_record(m) for m in mappings if m is not None)
        if records:
            self._send_register(
                records,
                pending.flags,
                now,
                tuple(pending.awaiting),
                attempt=pending.attempt + 1,
            )

    # ============================================================ upkeep
    def _sweep(self, now: float) -> None:
        window = self.config.recent_itr_window
        for eid in list(self._recent_itrs):
            itrs = self._recent_itrs[eid]
            for rloc in [r for r, t in itrs.items() if now - t > window]:
                del itrs[rloc]
            if not itrs:
                del self._recent_itrs[eid]
        live = [held for held in self._unvouched if held[0] >= now]
        if len(live) != len(self._unvouched):
            self._unvouched = deque(live, maxlen=_UNVOUCHED)
        self._reply_buckets.prune(now)
        self._register_buckets.prune(now)
        self.ms.replay.prune(now, self.ms.holds)
        for eid in [e for e, t in self._smr_last.items() if now - t > window]:
            del self._smr_last[eid]
        self._timers.set(Sweep(), now + window)

    # ============================================================ read-only views
    def restore_registration(
        self,
        eid: Eid,
        site: str,
        merge: bool,
        proxy: bool,
        children: list[Registration],
        now: float,
    ) -> bool:
        """Reinstate a registration from a snapshot taken before a restart, so
        the node answers lookups at once; each child keeps its remaining
        lifetime (its `expires`, already on this node's clock)."""
        # Our own registrations are not restored: we re-register at once, and
        # a mapping removed from the config must not live on from a snapshot.
        alive = [
            c for c in children if c.expires > now and c.xtr_id != self.config.xtr_id
        ]
        entry = self.ms.restore(eid, site, merge, proxy, alive)
        if entry is None:
            return False
        self.registry_version += 1
        for key, child in entry.children.items():
            self._timers.set(ExpireChild(eid, key), child.expires)
        if eid == self._group_eid:
            self._known_members |= set(entry.members())
        return True

    def timer_count(self) -> int:
        return len(self._timers)

    def soft_state_sizes(self) -> dict[str, int]:
        """Sizes of every internal table, for leak checks and the status page."""
        return {
            "timers": len(self._timers),
            "pending_requests": len(self._pending_requests),
            "request_nonces": len(self._request_nonces),
            "pending_registers": len(self._pending_registers),
            "pending_notifies": len(self._pending_notifies),
            "probes": len(self._probes),
            "reply_buckets": len(self._reply_buckets),
            "register_buckets": len(self._register_buckets),
            "refused_registrants": len(self._refused),
            **self.ms.replay.sizes(),
            "recent_itrs": len(self._recent_itrs),
            "smr_last": len(self._smr_last),
            "unvouched_replicated": len(self._unvouched),
            "registrations": len(self.ms.db),
            "map_cache": len(self.cache),
            "events": len(self._events),
        }


_IP_TYPES: Final = (IPv4Address, IPv6Address)


def _host_key(addr: object, mask_len: int) -> tuple[int, int, int] | None:
    """(iid, version, address) of a full-length IP EID-record, for
    `MapDB.lookup_host`; None for prefixes, names and the rest."""
    iid = 0
    if isinstance(addr, InstanceId):
        iid, addr = addr.iid, addr.address
    if isinstance(addr, _IP_TYPES) and mask_len == addr.max_prefixlen:
        return iid, addr.version, int(addr)
    return None


#: An answer listing more-specifics: where its best match sits in the
#: records, how many more-specifics follow it, and the unicast address to
#: narrow around (None: a name or (S,G) query, which cannot be narrowed).
_Wide = tuple[int, int, Eid | None]


def _query_point(rec: RequestRecord, host: tuple[int, int, int] | None) -> Eid | None:
    """The unicast host a query is about: itself, or a prefix's first address."""
    if host is not None:
        iid, version, addr = host
        ip = IPv4Address(addr) if version == 4 else IPv6Address(addr)
        return Eid(iid, ip, ip.max_prefixlen)
    query = Eid.from_wire(rec.eid, rec.mask_len)
    if query.is_name or query.group is not None:
        return None
    assert isinstance(query.address, IPv4Address | IPv6Address)
    return Eid(query.iid, query.address, query.address.max_prefixlen)


def _register_record(mapping: DatabaseMapping, ttl_zero: bool = False) -> MapRecord:
    """A database mapping as a Map-Register EID-record (TTL 0 deregisters)."""
    addr, mask = mapping.eid.to_wire()
    ttl = 0 if ttl_zero else mapping.ttl
    return MapRecord(addr, mask, mapping.locators, ttl, authoritative=True)


def _versions(addrs: Iterable[IPAddress]) -> set[int]:
    return {a.version for a in addrs}


def _successor(
    addr: Address, old: tuple[IPAddress, ...], new: tuple[IPAddress, ...]
) -> Address | None:
    """What an address becomes when our RLOCs go from old to new: itself
    unless it was ours and is gone, then our new RLOC of its family (None
    when we have none)."""
    if addr not in old or addr in new:
        return addr
    assert isinstance(addr, IPv4Address | IPv6Address)
    return next((r for r in new if r.version == addr.version), None)


def _moved_addrs(
    addrs: tuple[Addr, ...], old: tuple[IPAddress, ...], new: tuple[IPAddress, ...]
) -> tuple[Addr, ...]:
    out: dict[Addr, None] = {}
    for ip, port in addrs:
        moved = _successor(ip, old, new)
        if isinstance(moved, IPv4Address | IPv6Address):
            out[(moved, port)] = None
    return tuple(out)


def _moved_locators(
    locators: tuple[Locator, ...],
    old: tuple[IPAddress, ...],
    new: tuple[IPAddress, ...],
) -> tuple[Locator, ...]:
    """A locator set with our old RLOCs replaced by the new set, in place of
    the first of them. An address that stays keeps its locator (priority,
    weight, R bit); a new one copies the policy of our locator at its
    position. RLE entries naming an old RLOC name its successor instead."""
    own = [loc for loc in locators if loc.address in old]
    kept = {loc.address: loc for loc in own}
    out: list[Locator] = []
    placed = False
    for loc in locators:
        if isinstance(loc.address, Rle):
            out.append(
                dataclasses.replace(loc, address=_moved_rle(loc.address, old, new))
            )
        elif loc.address not in old:
            out.append(loc)
        elif not placed:
            placed = True
            moved = [
                kept.get(rloc)
                or dataclasses.replace(
                    own[min(i, len(own) - 1)],
                    address=rloc,
                    reachable=True,
                    probed=False,
                )
                for i, rloc in enumerate(new)
            ]
            # Still in RFC 9301 5.5's ascending order.
            out.extend(sorted(moved, key=lambda loc: rloc_order(loc.address)))
    return tuple(out)


def _moved_rle(rle: Rle, old: tuple[IPAddress, ...], new: tuple[IPAddress, ...]) -> Rle:
    entries: dict[Address, RleEntry] = {}
    for entry in rle.entries:
        moved = _successor(entry.address, old, new)
        if moved is not None and moved not in entries:
            entries[moved] = dataclasses.replace(entry, address=moved)
    return Rle(tuple(entries.values()))


def _full_mask(addr: object) -> int:
    if isinstance(addr, IPv4Address):
        return 32
    if isinstance(addr, IPv6Address):
        return 128
    return 0
