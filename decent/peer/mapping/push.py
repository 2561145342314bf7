"""LISP-Decent push mode (RFC 9962 4): the group, membership, replication.

Every member registers to the group and so to every member: natively to
the group address on a multicast underlay, otherwise head-end replicated,
data-encapsulated to each member's data port with instance ID 0xffffff.
The membership is itself a registration, the merged (0/0, G) entry whose
RLE lists every member (RFC 8378). Without a group this is the plain
static mapping system: the configured Map-Servers and Map-Resolvers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.peer import counters as C
from decent.peer.config import Addr, DatabaseMapping
from decent.peer.context import CacheWriter, Ctx, Registrar, eid_on_wire
from decent.peer.mapping.layers import Layers
from decent.peer.mapping.nat import RELAY_PRIORITY, NatRole
from decent.peer.roaming import moved_locators
from decent.wire import (
    DECENT_CONTROL_IID,
    DataHeader,
    DecodeError,
    Eid,
    InfoReply,
    InfoRequest,
    IPAddress,
    MapRecord,
    MapReply,
    MapRequest,
    RequestRecord,
    UdpPacket,
    decode,
    ecm_bytes,
    encapsulate,
    rle_entries,
)
from decent.wire.control import REG_XTR_ID

#: How long replicated packets from senders not yet known as members are
#: held ([limits] unvouched_replicated bounds how many): a new member's
#: Map-Notify follows within a round trip.
UNVOUCHED_HOLD: Final = 5.0
#: Seconds after a restore before we ask a peer whether the group lists us
#: (our first registrations have reached the peers by then).
RESTORED_LOOKUP: Final = 2.0

#: Hands a replicated control message to the node's control path.
Deliver = Callable[[bytes, Addr, float], None]


@dataclass(frozen=True, slots=True)
class GroupLookup:
    """Time to ask a peer for the peer group's membership."""


@dataclass(frozen=True, slots=True)
class ReleaseUnvouched:
    """New members appeared: take what they replicated before we knew them."""


class PushMapping:
    """The MappingSystem of a LISP-Decent push group (or of static config)."""

    timer_keys: tuple[type, ...] = (GroupLookup, ReleaseUnvouched)

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        config = ctx.config
        self.group_eid = ctx.group_eid
        #: Configured seeds: members by the operator's word, even unannounced.
        self.seeds = frozenset(
            ms[0] for ms in config.map_servers if ms[0] != config.group
        ) - set(config.rlocs)
        self.known_members: set[IPAddress] = set()
        #: Replicated control from senders not (yet) known as members.
        self.unvouched: deque[tuple[float, IPAddress, UdpPacket]] = deque(
            maxlen=ctx.config.limits.unvouched_replicated
        )
        #: Outstanding group lookups: nonce -> peer asked (the last round only).
        self._lookups: dict[int, IPAddress] = {}
        self._lookup_round = 0
        #: When a peer last told us the group lists us (a Map-Notify or
        #: Map-Reply for the group naming our RLOC): proof that a member
        #: accepted our registration, which our own Map-Server cannot give.
        self.confirmed_at: float | None = None
        self.deliver: Deliver | None = None
        self.registrar: Registrar | None = None
        self.cache_writer: CacheWriter | None = None
        #: Members that hold our registrations over a reliable-transport
        #: session (decent.peer.transport keeps this up to date).
        self.by_session: set[IPAddress] = set()
        self.layers = Layers(ctx)
        self.nat = NatRole(ctx)
        self.nat.peers = self.membership
        self.nat.known_relays = self.relays
        self.nat.confirmed = self._confirmed
        self._relays: tuple[int, list[IPAddress]] = (-1, [])
        #: Moves with every change of the registrations we hold (the Node's).
        self.version: Callable[[], int] = lambda: 0

    def _confirmed(self, now: float) -> None:
        self.confirmed_at = now

    def start(self, now: float) -> None:
        config = self.ctx.config
        self.nat.start(now)
        if config.group is not None and config.group_lookup_interval:
            self.ctx.timers.set(GroupLookup(), now + config.group_lookup_interval)

    def bind(self, deliver: Deliver, registrar: Registrar, writer: CacheWriter) -> None:
        self.deliver, self.registrar, self.cache_writer = deliver, registrar, writer

    # ------------------------------------------------------------ membership
    def membership(self) -> list[IPAddress]:
        """The peer group's members: the merged (0/0, G) RLE we hold as a
        Map-Server, together with any we learned from Map-Notify/Map-Reply."""
        eid = self.group_eid
        if eid is None:
            return []
        members: dict[IPAddress, None] = {}
        entry = self.ctx.ms.db.get(eid)
        if entry is not None:
            members.update(dict.fromkeys(entry.members()))
        cached = self.ctx.cache.db.get(eid)
        if cached is not None:
            for loc in cached.record.locators:
                for e in rle_entries(loc):
                    if isinstance(e.address, IPv4Address | IPv6Address):
                        members[e.address] = None
        return sorted(members, key=lambda a: (a.version, a.packed))

    def alone(self) -> bool:
        if self.ctx.config.group is None:
            return False
        return all(self.ctx.own(m) for m in self.membership())

    def membership_changed(self, now: float) -> None:
        """A member we never registered to has appeared: register to the group
        now rather than at the next period, so it learns our EIDs at once.
        Coalesced: one registration round covers every join seen meanwhile."""
        cached = (
            None if self.group_eid is None else self.ctx.cache.db.get(self.group_eid)
        )
        if cached is not None and cached.source != "local":
            listed = (
                e.address for loc in cached.record.locators for e in rle_entries(loc)
            )
            if any(
                self.ctx.own(a)
                for a in listed
                if isinstance(a, IPv4Address | IPv6Address)
            ):
                self.confirmed_at = now
        members = set(self.membership())
        if members <= self.known_members:
            return
        self.known_members |= members
        if self.unvouched:
            self.ctx.timers.set(ReleaseUnvouched(), now)
        assert self.registrar is not None
        self.registrar.register_soon(now)

    # ------------------------------------------------------------ registration
    def register_targets(self) -> tuple[Addr, ...]:
        nat = self.nat
        if nat.relay is not None and nat.relayed:
            return ((nat.relay, self.ctx.config.control_port),)
        return self.ctx.config.map_servers

    def register_sets(
        self, mappings: list[DatabaseMapping]
    ) -> list[tuple[tuple[Addr, ...], list[DatabaseMapping]]]:
        """Our mappings by where they register: all to the group, and a
        layer's membership and prefixes to the core (RFC 9962 4.4)."""
        config = self.ctx.config
        if not config.map_servers:
            return []
        out = [(self.register_targets(), mappings)]
        joins = [m for m in mappings if m.eid == self.group_eid]
        if config.core and joins:
            # The layer's prefixes go with its membership, written alike:
            # merged, our RLOC in the RLE. They are not our database: we
            # are no ETR of the whole prefix.
            out.append(
                (
                    config.core,
                    joins + [replace(joins[0], eid=p) for p in config.layer_prefixes],
                )
            )
        return out

    def relays(self) -> list[IPAddress]:
        """Members that offer to relay: their name EID's RLOCs at the relay
        priority (decent.peer.mapping.nat), as registered to us."""
        version = self.version()
        if self._relays[0] != version:
            found: dict[IPAddress, None] = {}
            for eid, entry in self.ctx.ms.db.items():
                if eid.is_name:
                    for loc in entry.record.locators:
                        if loc.priority == RELAY_PRIORITY and loc.rloc is not None:
                            found[loc.rloc] = None
            self._relays = (version, list(found))
        return self._relays[1]

    def accepted(
        self,
        src: Addr,
        raw: bytes,
        records: Iterable[tuple[Eid, MapRecord]],
        now: float,
    ) -> bool:
        """As a relay, our clients hear of every registration we accept, in
        an ECM from the registrant as relay_register writes it: they hold
        every mapping too, and no member can reach them but us."""
        nat = self.nat
        ttls = [(eid, rec.ttl) for eid, rec in records]
        # The xTR-ID trailer tells a restarted member (a new key, the same
        # NAT binding) from the one that held the binding before.
        xtr = raw[-24:-8] if int.from_bytes(raw[:4], "big") & REG_XTR_ID else b""
        new = nat.registered(src, ttls, xtr, now)
        own = self.ctx.config.rloc_for(src[0].version)
        if own is None or not self.ctx.config.relay:
            return nat.carries(src)
        ecm = ecm_bytes(raw, src[0], own, src[1])
        nat.remember(src, ttls[0][0], ecm, now)
        for binding in list(nat.clients):
            if binding != new:
                self.ctx.out.send(ecm, binding, "relayed-to-client")
        if new is not None:
            # A new client learns what we hold at once, not a registration
            # period later (it may have just lost its relay).
            for held in nat.held(now, self.ctx.config.registration_timeout):
                self.ctx.out.send(held, new, "relayed-to-client")
        return nat.carries(src)

    def referred(self, eid: Eid, rep: MapReply) -> bool:
        return self.layers.referred(eid, rep.records)

    def relayed_by(self, via: IPAddress) -> bool:
        """Whether via is a relay: it may carry on a group registration of a
        member behind NAT (whose own key or signature still vouches for it)."""
        return via in self.relays() or via == self.nat.relay

    def vouches(self, rloc: IPAddress) -> bool:
        """Whether rloc is a member (or a seed, a member by our config)."""
        return rloc in self.seeds or rloc in self.membership()

    def relay_register(self, data: bytes, registrant: Addr) -> None:
        """Carry a plain xTR's Map-Register on to every other member, in an
        ECM whose inner source is the xTR, the way the group carries our
        own: multicast or replicated. The ECM's to-Map-Server bit would say
        the same, but Wireshark 4.0 shows it as a reserved bit set."""
        ctx = self.ctx
        group = ctx.config.group
        if group is None:
            return
        own = ctx.config.rloc_for(registrant[0].version)
        if own is None:
            return
        ecm = ecm_bytes(data, registrant[0], own, registrant[1])
        targets = [t for t in self.register_targets() if not ctx.own(t[0])]
        self.send_register(ecm, targets, "relayed-register")

    def send_register(
        self, data: bytes, targets: Sequence[Addr], kind: str = "map-register"
    ) -> None:
        ctx = self.ctx
        group = ctx.config.group
        if self.nat.relayed:
            self.nat.send_to_relay(data, kind)
            return
        # Peers that hold our registrations over a reliable session get
        # them there, and no periodic UDP copy (the draft's point).
        skip = self.by_session if kind == "map-register" else set()
        unicast = [t for t in targets if t[0] != group]
        if len(unicast) != len(targets):
            if ctx.config.group_mode == "multicast":
                # Members hear the group copy; a seed that is one already
                # would only drop a unicast duplicate as a replayed nonce.
                members = set(self.membership())
                unicast = [t for t in unicast if ctx.own(t[0]) or t[0] not in members]
            self.send_to_group(data, kind, {t[0] for t in unicast} | skip)
        for ms in unicast:
            if ms[0] not in skip:
                ctx.out.send(data, ms, kind)

    def send_to_group(self, data: bytes, kind: str, skip: set[IPAddress]) -> None:
        """RFC 9962 4.1: one message for every member. Natively to G on a
        multicast underlay; otherwise head-end replicated, data-encapsulated
        to each member's data port with instance ID 0xffffff."""
        ctx = self.ctx
        config = ctx.config
        group = config.group
        assert group is not None
        port = config.control_port
        if config.group_mode == "multicast":
            others = {m for m in self.membership() if not ctx.own(m)}
            if not others or not others <= skip:
                ctx.out.send(data, (group, port), kind)
            return
        own = config.rloc_for(group.version)
        if own is None:
            return
        inner = UdpPacket(own, group, port, port, data).encode()
        for member in self.membership():
            if member in skip or ctx.own(member) or member.version != own.version:
                continue
            header = DataHeader(
                nonce=ctx.out.nonce() & 0xFFFFFF, instance_id=DECENT_CONTROL_IID
            )
            ctx.out.send(
                encapsulate(header, inner),
                (member, config.data_port),
                "replicated-" + kind,
            )

    def resolvers_for(self, eid: Eid) -> tuple[Addr, ...]:
        """The group first: every member holds every mapping. Another
        layer's EIDs at that layer (decent.peer.mapping.layers). Outside
        Map-Resolvers (a classic mapping system beside the group) for EIDs
        the group holds no registration for."""
        layered = self.layers.resolvers_for(eid)
        if layered is not None:
            return layered
        config = self.ctx.config
        outside = config.outside_map_resolvers
        if outside and self.ctx.ms.db.lookup(eid) is None:
            return outside
        return config.map_resolvers

    # ------------------------------------------------------------ replicated control
    def receive_replicated(self, packet: UdpPacket, addr: Addr, now: float) -> None:
        """RFC 9962 4.1: the inner message of a replicated packet goes to the
        control path, and is never replicated again. Only a member
        replicates, and only its own messages: the outer source must be in
        the group's RLE (or be one of our seeds), and the inner source must
        be that same address, which is then the sender; but our relay, if we
        are behind NAT, passes on what it sends us in other members' names.
        Control sent to us alone, not to the group, is NAT traversal's
        (decent.peer.mapping.nat)."""
        ctx = self.ctx
        to_group = packet.dst == ctx.config.group
        if not (to_group or ctx.own(packet.dst)) or (
            packet.dport != ctx.config.control_port
        ):
            ctx.out.drop(addr, "replicated-not-for-us")
            return
        if packet.payload[:1] and packet.payload[0] >> 4 == 7:
            self._info(packet, addr, now)
            return
        relay = self.nat.relay
        member = addr[0] in self.membership() or addr[0] in self.seeds
        if not (to_group or member) and addr[0] != relay and ctx.config.relay:
            self.nat.from_binding(packet.payload, addr, packet.src, now, self._deliver)
            return
        if packet.src != addr[0] and addr[0] != relay:
            ctx.out.drop(addr, "replicated-spoofed")
            return
        if not member:
            # A member that just joined may replicate to us before the
            # Map-Notify naming it arrives: keep a few such packets briefly,
            # and take them if their sender turns out to be a member.
            ctx.out.drop(addr, "replicated-not-member")
            self.unvouched.append((now + UNVOUCHED_HOLD, addr[0], packet))
            return
        ctx.out.counters[C.RX_REPLICATED] += 1
        self._deliver(packet.payload, (packet.src, packet.sport), now)

    def _deliver(self, data: bytes, addr: Addr, now: float) -> None:
        assert self.deliver is not None
        self.deliver(data, addr, now)

    def _info(self, packet: UdpPacket, addr: Addr, now: float) -> None:
        """An Info-Request or Info-Reply, as LISP data to our data port."""
        try:
            msg = decode(packet.payload)
        except DecodeError:
            self.ctx.out.drop(addr, "decode-error")
            return
        if isinstance(msg, InfoRequest):
            inner = (packet.src, packet.dst)
            self.nat.on_request(msg, packet.payload, addr, inner, now)
        elif isinstance(msg, InfoReply):
            self.nat.on_reply(msg, packet.payload, addr, now)

    def _release_unvouched(self, now: float) -> None:
        """Take the held replicated packets whose sender is now a member."""
        held, members = list(self.unvouched), set(self.membership())
        self.unvouched.clear()
        for expires, rloc, packet in held:
            if expires < now:
                continue
            if rloc in members:
                self.ctx.out.counters[C.REPLICATED_RELEASED] += 1
                self._deliver(packet.payload, (rloc, packet.sport), now)
            else:
                self.unvouched.append((expires, rloc, packet))

    # ------------------------------------------------------------ group lookups
    def restored(self, members: list[IPAddress], now: float) -> None:
        """A snapshot gave us the group's members. Restarting into a group
        that still lists us brings no Map-Notify (the merged set does not
        change), and only a peer's answer confirms that we are in: ask one
        soon rather than a whole lookup period later."""
        self.known_members |= set(members)
        if self.ctx.config.group_lookup_interval:
            soon = now + RESTORED_LOOKUP
            when = self.ctx.timers.when(GroupLookup())
            if when is None or when > soon:
                self.ctx.timers.set(GroupLookup(), soon)

    def _group_lookup(self, now: float) -> None:
        """RFC 9962 4.2: without PubSub, an ITR SHOULD look its group up
        periodically to see membership change. Our own Map-Server already
        holds what reached us, so ask a peer (seeds first, then members, in
        turn): its answer repairs what lost Map-Notifies left out."""
        ctx = self.ctx
        config = ctx.config
        assert config.group_lookup_interval
        ctx.timers.set(GroupLookup(), now + config.group_lookup_interval)
        self._lookups.clear()  # unanswered last round: the next one retries
        group, eid = config.group, self.group_eid
        assert group is not None
        assert eid is not None
        peers = [ms[0] for ms in config.map_servers if ms[0] != group]
        peers += self.membership()
        peers = [p for p in dict.fromkeys(peers) if not ctx.own(p)]
        if not peers:
            return
        peer = peers[self._lookup_round % len(peers)]
        self._lookup_round += 1
        own = ctx.itr_rloc(peer.version)
        if own is None:
            return
        nonce = ctx.out.nonce()
        addr, mask = eid_on_wire(eid, config.wire_form)
        req = MapRequest(nonce, (RequestRecord(addr, mask),), (own,))
        self._lookups[nonce] = peer
        ctx.out.send(req.encode(), (peer, config.control_port), "map-request")

    def on_reply(self, rep: MapReply, src: Addr, now: float) -> bool:
        if self._lookups.pop(rep.nonce, None) is None:
            return False
        assert self.cache_writer is not None
        for rec in rep.records:
            eid = Eid.from_wire(rec.eid, rec.mask_len)
            if eid == self.group_eid and rec.locators:
                self.cache_writer.install(eid, rec, "map-reply", now)
        return True

    # ------------------------------------------------------------ upkeep
    def handle_timer(self, key: Hashable, now: float) -> None:
        if isinstance(key, GroupLookup):
            self._group_lookup(now)
        else:
            self._release_unvouched(now)

    def rlocs_changed(
        self, old: tuple[IPAddress, ...], new: tuple[IPAddress, ...]
    ) -> None:
        """The group's RLE in our map-cache (from a Map-Notify) names our old
        RLOC until a peer tells us otherwise: name the new one meanwhile, so
        no replicated copy goes to an address that is no longer ours."""
        self.known_members -= set(old) - set(new)
        eid = self.group_eid
        cache = self.ctx.cache
        cached = None if eid is None else cache.db.get(eid)
        if eid is None or cached is None:
            return
        locators = moved_locators(cached.record.locators, old, new)
        if locators == cached.record.locators:
            return
        record = replace(cached.record, locators=locators)
        expires = cached.expires
        cache.install(eid, record, cached.source, expires).expires = expires

    def sweep(self, now: float) -> None:
        live = [held for held in self.unvouched if held[0] >= now]
        if len(live) != len(self.unvouched):
            self.unvouched = deque(live, maxlen=self.unvouched.maxlen)

    def sizes(self) -> dict[str, int]:
        return {"unvouched_replicated": len(self.unvouched)}
