"""The sans-I/O LISP node: a facade over its roles and its mapping system.

Theory of operation
-------------------
Inputs are `receive_datagram(data, addr, now)`, `handle_timer(now)`, the
local calls (`request`, `set_locators`, `deregister`, ...) and pull mode's
DNS answers (`pull`). Every input may queue datagrams and events; the shell
then drains `datagrams_to_send()` (`data_datagrams_to_send()` from the data
port) and `next_event()`, and re-arms its timer from `get_timer()`. `now` is
monotonic seconds; nonces come from the injected `nonce` callable. Nothing a
peer sends makes an input raise: malformed, unauthenticated or unexpected
datagrams are dropped, counted as `drop.<reason>` or `reject.<reason>`, and
reported as events, and they change no state.

Inside, each LISP role is an object that owns its state (decent.peer.roles);
they share a `Ctx` (config, outbox, timers, stores) and ask each other only
through the Protocols of decent.peer.context, wired here. Where our
registrations and Map-Requests go is the MappingSystem's business
(decent.peer.mapping). This class keeps the dispatch table from message
type to role, routes each timer key to the role that owns its type, and
offers a read API (`registrations()`, `membership()`, `cache_entries()`,
`negative_answer()`, `nonce_ceilings()`, ...) for the shells and the
status page. The data plane (decent.peer.dataplane) rides on top: it takes
this node's events and calls its public API; this module never imports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from decent.peer import counters as C
from decent.peer.config import Addr, DatabaseMapping, NodeConfig
from decent.peer.context import Ctx, Outbox
from decent.peer.events import Event, RlocsChanged
from decent.peer.mapcache import CacheEntry, MapCache
from decent.peer.mapdb import MapDB
from decent.peer.mapping.pull import PullMapping
from decent.peer.mapping.push import PushMapping
from decent.peer.mapserver import MapServer, Registration, SiteEntry
from decent.peer.replay import Slot
from decent.peer.roaming import moved_addrs, moved_locators, register_locally, versions
from decent.peer.roles.etr import EtrRole
from decent.peer.roles.itr import ItrRole
from decent.peer.roles.keys import KeyRole
from decent.peer.roles.mr import MapResolverRole
from decent.peer.roles.ms import MapServerRole, Refusal
from decent.peer.roles.probe import ProbeRole
from decent.peer.transport.role import ReliableRole
from decent.wire import (
    DECENT_CONTROL_IID,
    Action,
    DecodeError,
    Eid,
    EncapsulatedControlMessage,
    InfoReply,
    InfoRequest,
    IPAddress,
    Locator,
    MapNotify,
    MapNotifyAck,
    MapReferral,
    MapRegister,
    MapReply,
    MapRequest,
    decapsulate,
    decode,
    decode_udp_packet,
)

__all__ = ["Node"]


@dataclass(frozen=True, slots=True)
class Sweep:
    """Prune soft state (rate-limit buckets, recently seen ITRs)."""


_Handler = Callable[[Any, bytes, Addr, float, "Addr | None"], None]


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
        self._out = Outbox(nonce)
        self.counters = self._out.counters
        self.ms = MapServer(config.sites, config.registration_timeout, config.limits)
        self.cache = MapCache()
        self.database: MapDB[DatabaseMapping] = MapDB()
        for mapping in config.database:
            self.database.insert(mapping.eid, mapping)
        ctx = self._ctx = Ctx(config, self._out, self.ms, self.cache, self.database)
        self._timers = ctx.timers
        self.mapping = PullMapping(ctx) if config.pull else PushMapping(ctx)
        #: Pull mode's DNS questions and answers (decent.net.dns).
        self.pull = self.mapping if isinstance(self.mapping, PullMapping) else None
        self.nat = self.mapping.nat
        self.itr = ItrRole(ctx, self.mapping)
        # Timers set in this order (ETR, prober, sweep, group) run so if due at once.
        self.etr = EtrRole(ctx, self.mapping, self.itr, register_nonce, now)
        self.probe = ProbeRole(ctx, now)
        ctx.timers.set(Sweep(), now + config.recent_itr_window)
        self.mapping.start(now)
        self.map_server = MapServerRole(ctx)
        self.resolver = MapResolverRole(ctx, self.mapping, self.etr, now)
        self.resolver.keys = self.keys = KeyRole(
            ctx, lambda: self.registry_version, now
        )
        self.map_server.watch = self.itr.watch = self.mapping
        self.map_server.carrier = self.mapping
        self.map_server.registrar = self.etr
        self.map_server.writer = self.itr
        self.mapping.bind(self._replicated, self.etr, self.itr)
        #: Reliable-transport sessions; the shell moves their bytes.
        self.reliable = ReliableRole(ctx, self.etr, self.map_server, self.mapping)
        self.map_server.sessions = self.reliable
        self.etr.registered = self.reliable.registered
        self.etr.rewrite = self.nat.rewrite
        self.nat.moved = self.etr.moved
        self.mapping.version = lambda: self.map_server.version
        self._timer_owners: dict[type, Callable[[Hashable, float], None]] = {}
        roles = (self.etr, self.map_server, self.itr, self.probe, self.keys)
        for role in (*roles, self.reliable, self.mapping, self.nat):
            for key in role.timer_keys:
                self._timer_owners[key] = role.handle_timer
        self._handlers: dict[type, _Handler] = {
            MapRequest: self._on_request,
            EncapsulatedControlMessage: self._on_ecm,
            MapReply: self._on_reply,
            MapRegister: self._on_register,
            MapNotifyAck: self._on_notify_ack,
            MapNotify: self._on_notify,
            MapReferral: self._on_referral,
            InfoRequest: self.nat.on_control,
            InfoReply: self.nat.on_control,
        }
        self._out.loopback_addr = self._loopback_target()
        self._looping = False

    @property
    def config(self) -> NodeConfig:
        return self._ctx.config

    @property
    def register_nonce(self) -> int:
        """The last Map-Register nonce sent (kept across restarts)."""
        return self.etr.register_nonce

    @property
    def registry_version(self) -> int:
        """Moves with every change of the registrations we hold."""
        return self.map_server.version

    @registry_version.setter
    def registry_version(self, value: int) -> None:
        self.map_server.version = value

    # ============================================================ shell API
    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        """Drain the datagrams queued by earlier inputs: (payload, destination)."""
        out, self._out.datagrams = self._out.datagrams, []
        return out

    def data_datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        """Drain the datagrams to send from our data port (NAT bindings)."""
        out, self._out.data_datagrams = self._out.data_datagrams, []
        return out

    def next_event(self) -> Event | None:
        events = self._out.events
        return events.popleft() if events else None

    def get_timer(self) -> float | None:
        """The earliest deadline; call `handle_timer` when it passes."""
        return self._ctx.timers.next_at()

    def handle_timer(self, now: float) -> None:
        """Run every deadline due at `now`. Call `flush()` (drain) afterwards."""
        for key in self._ctx.timers.pop_due(now):
            if isinstance(key, Sweep):
                self._sweep(now)
            else:
                self._timer_owners[type(key)](key, now)
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
            self._out.drop(addr, "decode-error")
            return
        try:
            self._handlers[type(msg)](msg, data, addr, now, local)
        except ValueError:
            # A decoded field that the protocol layer cannot use, e.g. an EID
            # with an LCAF we cannot index: the peer's fault, not ours.
            self._out.drop(addr, "unusable-field")
        self._run_loopback(now)

    def receive_data_packet(self, data: bytes, addr: Addr, now: float) -> None:
        """Feed one UDP payload received on the data port (4341) that carries
        instance ID 0xffffff: LISP-Decent's replicated control traffic (RFC
        9962 4.1), which the mapping system checks and hands on. Anything
        else belongs to the data plane (decent.peer.dataplane)."""
        try:
            header, inner = decapsulate(data)
            if header.instance_id != DECENT_CONTROL_IID:
                self._out.drop(addr, "data-plane-off")
                return
            packet = decode_udp_packet(inner)
        except DecodeError:
            self._out.drop(addr, "decode-error")
            return
        self.mapping.receive_replicated(packet, addr, now)

    def _replicated(self, data: bytes, addr: Addr, now: float) -> None:
        self.receive_datagram(data, addr, now)

    # ============================================================ dispatch
    def _on_request(
        self, msg: MapRequest, data: bytes, addr: Addr, now: float, local: Addr | None
    ) -> None:
        self.counters[C.RX_MAP_REQUEST] += 1
        if msg.smr:
            self.itr.on_smr(msg, addr, now)
        else:
            self.resolver.on_request(msg, addr, now, None, local, len(data))

    def _on_ecm(
        self,
        msg: EncapsulatedControlMessage,
        data: bytes,
        addr: Addr,
        now: float,
        local: Addr | None,
    ) -> None:
        self.counters[C.RX_ECM] += 1
        inner = msg.message
        if isinstance(inner, MapRegister):
            self.map_server.on_relayed(msg, inner, data, addr, now)
        elif not isinstance(inner, MapRequest):
            self._out.drop(addr, "unsupported-ecm")
        elif inner.smr:
            self.itr.on_smr(inner, addr, now)
        else:
            self.resolver.on_request(inner, addr, now, msg, local, len(data))

    def _on_reply(
        self, msg: MapReply, data: bytes, addr: Addr, now: float, local: Addr | None
    ) -> None:
        self.counters[C.RX_MAP_REPLY] += 1
        if msg.probe:
            if not self.keys.on_reply(msg, addr, now):
                self.probe.on_reply(msg, addr, now)
        elif not self.mapping.on_reply(msg, addr, now):
            self.itr.on_reply(msg, addr, now)

    def _on_register(
        self, msg: MapRegister, data: bytes, addr: Addr, now: float, local: Addr | None
    ) -> None:
        self.counters[C.RX_MAP_REGISTER] += 1
        self.map_server.on_register(msg, data, addr, now)

    def _on_notify_ack(
        self, msg: MapNotifyAck, data: bytes, addr: Addr, now: float, local: Addr | None
    ) -> None:
        self.counters[C.RX_MAP_NOTIFY_ACK] += 1
        self.map_server.on_notify_ack(msg, data, addr, now)

    def _on_notify(
        self, msg: MapNotify, data: bytes, addr: Addr, now: float, local: Addr | None
    ) -> None:
        self.counters[C.RX_MAP_NOTIFY] += 1
        self.etr.on_notify(msg, data, addr, now)

    def _on_referral(
        self, msg: MapReferral, data: bytes, addr: Addr, now: float, local: Addr | None
    ) -> None:
        self.counters[C.RX_MAP_REFERRAL] += 1
        self._out.drop(addr, "unexpected-map-referral")

    # ============================================================ local calls
    def request(self, eid: Eid, now: float) -> None:
        """Resolve eid through the Map-Resolvers unless it is cached or pending
        (the ITR's cache-miss path). Drain outputs afterwards."""
        self.itr.request(eid, now)
        self._run_loopback(now)

    def set_locators(self, eid: Eid, locators: tuple[Locator, ...], now: float) -> None:
        """Change (or add) a database mapping's RLOC set, as a mobile node does
        when its address changes: register at once, keep registering quickly
        for a while (RFC 9301 8.2), and SMR the ITRs that recently used it."""
        self.etr.set_locators(eid, locators, now)

    def apply_database(
        self, mappings: Iterable[DatabaseMapping], now: float
    ) -> tuple[list[Eid], list[Eid]]:
        """Make the database these mappings (a reloaded config): new and
        changed ones registered at once, removed ones deregistered. Returns
        (added or changed, removed) EIDs. Drain outputs afterwards."""
        wanted = {m.eid: m for m in mappings}
        held = dict(self.database.items())
        gone = [eid for eid in held if eid not in wanted]
        if gone:
            self.deregister(now, gone)
        changed = [eid for eid, m in wanted.items() if held.get(eid) != m]
        for eid in changed:
            mapping = wanted[eid]
            # Inserted first, so the other fields (TTL, flags) go out too.
            self.database.insert(eid, mapping)
            self.set_locators(eid, mapping.locators, now)
        return changed, gone

    def change_rlocs(self, rlocs: Iterable[IPAddress], now: float) -> None:
        """Our own RLOC set changed (a mobile node roamed, the shell saw its
        interface's addresses change): LISP-MN wants the new RLOC-set
        registered at once and SMRs sent to the ITRs recently sending to us.

        Every database mapping's own locators become the new set (an address
        that stays keeps its locator, a new one takes the policy of the one
        at its position), the membership's RLE member becomes the new RLOC
        of the group's family, and so do our own Map-Server and Map-Resolver
        addresses and the head-end replication source. The data plane hears
        of it through RlocsChanged. Raises ValueError for an empty set, or
        one without an address of the group's family (the shell only offers
        usable ones).
        """
        ctx = self._ctx
        new = tuple(dict.fromkeys(rlocs))
        old = ctx.config.rlocs
        if new == old:
            return
        group = ctx.config.group
        if not new or (group is not None and group.version not in versions(new)):
            raise ValueError("a node needs an RLOC, of its group's family if any")
        cfg = ctx.config
        ctx.config = dataclasses.replace(
            cfg,
            rlocs=new,
            map_servers=moved_addrs(cfg.map_servers, old, new),
            map_resolvers=moved_addrs(cfg.map_resolvers, old, new),
        )
        self._out.loopback_addr = self._loopback_target()
        for eid, mapping in list(self.database.items()):
            locators = moved_locators(mapping.locators, old, new)
            if locators != mapping.locators:
                self.database.insert(
                    eid, dataclasses.replace(mapping, locators=locators)
                )
        self.mapping.rlocs_changed(old, new)
        self.nat.recheck(now)
        self.counters[C.RLOCS_CHANGED] += 1
        self._out.emit(RlocsChanged(tuple(map(str, old)), tuple(map(str, new))))
        if any(ctx.own(ms[0]) for ms in ctx.config.map_servers):
            register_locally(ctx, self.map_server.apply, now)
        self.etr.moved(now)
        self._run_loopback(now)

    def deregister(self, now: float, eids: Iterable[Eid] | None = None) -> None:
        """Send TTL-0 Map-Registers so Map-Servers drop our mappings at once
        (all of them: graceful shutdown). They leave the database too, or the
        next registration would bring them back. Drain outputs afterwards."""
        self.etr.deregister(now, eids)

    def clear_map_cache(self) -> int:
        """Forget every map-cache entry (the operator's "clear cache") as if
        expired; the membership stays (our Map-Server holds it). Returns how
        many went; drain events afterwards."""
        return self.itr.clear()

    def note_itr(self, eid: Eid, rloc: IPAddress, now: float) -> None:
        """Record that an ITR at rloc recently sent us traffic for eid, so a
        change of eid's mapping SMRs it (RFC 9301 6.1)."""
        self.etr.note_itr(eid, rloc, now)

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
        entry = self.map_server.restore(eid, site, merge, proxy, children, now)
        if entry is None:
            return False
        if eid == self._ctx.group_eid:
            self.mapping.restored(entry.members(), now)
        return True

    # ============================================================ in-process loopback
    def _loopback_target(self) -> Addr | None:
        cfg = self.config
        own = (cfg.rlocs[0], cfg.control_port)
        return own if cfg.resolve_in_process and own in cfg.map_resolvers else None

    def _run_loopback(self, now: float) -> None:
        """Hand what we sent to our own Map-Resolver (and its reply to our
        ITR) back to ourselves: an EID registered to the group resolves with
        no datagram on any network and no wait for the event loop."""
        if self._looping:
            return
        out = self._out
        addr = out.loopback_addr
        self._looping = True
        try:
            while out.loopback:
                assert addr is not None
                self.receive_datagram(out.loopback.popleft(), addr, now, addr)
        finally:
            self._looping = False

    def _sweep(self, now: float) -> None:
        for role in (self.etr, self.mapping, self.resolver, self.map_server):
            role.sweep(now)
        for part in (self.itr, self.reliable, self.nat):
            part.sweep(now)
        self._ctx.timers.set(Sweep(), now + self.config.recent_itr_window)

    # ============================================================ read API
    def membership(self) -> list[IPAddress]:
        """The peer group's members (pull mode: every set's Map-Servers)."""
        return self.mapping.membership()

    def registrations(self, *, ordered: bool = True) -> list[SiteEntry]:
        """Every registration we hold as a Map-Server, in EID order; with
        `ordered` False in none, which skips the sort (a tenth of the cost at
        a million EIDs)."""
        if ordered:
            return [entry for _, entry in self.ms.db.sorted_items()]
        return [entry for _, entry in self.ms.db.items()]

    @property
    def registered_set_version(self) -> int:
        """Moves when an EID is first registered or its last registration
        goes; unlike `registry_version`, refreshes leave it alone."""
        return self.ms.generation

    def registration(self, eid: Eid, *, exact: bool = True) -> SiteEntry | None:
        """The registration for eid: exactly eid's, or its best match."""
        if exact:
            return self.ms.db.get(eid)
        hit = self.ms.db.lookup(eid)
        return None if hit is None else hit[1]

    def cache_entries(self) -> list[CacheEntry]:
        """Every map-cache entry, in EID order."""
        return [entry for _, entry in self.cache.db.sorted_items()]

    def cache_entry(self, eid: Eid) -> CacheEntry | None:
        """The map-cache entry covering eid (a negative one included)."""
        return self.cache.lookup(eid)

    def database_mappings(self) -> list[DatabaseMapping]:
        """Our own database: the mappings this node registers."""
        return [mapping for _, mapping in self.database.items()]

    def negative_answer(self, eid: Eid) -> tuple[Eid, int, Action]:
        """The Map-Resolver's negative answer for an unregistered eid: the
        least-specific prefix covering it and no registered prefix, its TTL
        in minutes, and the action (RFC 9301 8.3/8.4)."""
        return self.resolver.negative_answer(eid)

    def nonce_ceilings(self) -> dict[Slot, int]:
        """The highest Map-Register nonce accepted per (site, registrant,
        key ID): the replay state a snapshot keeps (decent.peer.replay)."""
        return dict(self.ms.nonces)

    def restore_nonce_ceiling(self, slot: Slot, nonce: int) -> None:
        """Reinstate a ceiling from a snapshot taken before a restart; one
        this process already holds (it accepted a Map-Register since) wins."""
        self.ms.nonces.setdefault(slot, nonce)

    def add_revocation(self, data: bytes, now: float) -> str:
        """Take a mesh-signed revocation (decent.wire.trust.Revocation, encoded)
        from the operator or a snapshot: "" when taken, else why not."""
        reason = self.map_server.take_revocation(data, now)
        self._run_loopback(now)
        return reason

    def revocations(self) -> list[bytes]:
        """Every revocation we hold and keep, encoded (for the snapshot)."""
        trust = self._ctx.trust
        return [] if trust is None else [r.encode() for r in trust.revoked.values()]

    @property
    def confirmed_at(self) -> float | None:
        """When a peer last confirmed that the group lists us (None: never
        yet; a node whose registrations no member accepts stays None)."""
        return self.mapping.confirmed_at

    def refused_registrants(self) -> list[Refusal]:
        """Registrants refused lately for a quota or their rate, newest last."""
        return self.map_server.refused_registrants()

    def timer_count(self) -> int:
        return len(self._ctx.timers)

    @property
    def _recent_itrs(self) -> dict[Eid, dict[IPAddress, float]]:
        """The ETR's recently seen ITRs (tests check its bound)."""
        return self.etr.recent_itrs

    def soft_state_sizes(self) -> dict[str, int]:
        """Sizes of every internal table, for leak checks and the status page."""
        sizes = {"timers": len(self._ctx.timers)}
        for role in (self.itr, self.etr, self.map_server, self.probe, self.resolver):
            sizes.update(role.sizes())
        for part in (self.keys, self.mapping, self.reliable, self.nat):
            sizes.update(part.sizes())
        if self._ctx.trust is not None:
            sizes.update(self._ctx.trust.sizes())
        return {
            **sizes,
            "registrations": len(self.ms.db),
            "map_cache": len(self.cache),
            "events": len(self._out.events),
        }
