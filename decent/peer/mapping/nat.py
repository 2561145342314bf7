"""NAT traversal: our NAT, our relay, and, as a relay, the members behind NAT we carry.

Theory of operation (draft-ermagan-lisp-nat-traversal, adapted to a push group)
-----------------------------------------------------------------------------
Every message between a member behind NAT and its relay goes between their
data ports (4341) as LISP data, control with instance ID 0xffffff, so one
NAT binding carries it all (lispers.net's data-plane Info-Requests do the
same; the draft's RTR sends its Data-Map-Notify that way too).

Discovery: we send authenticated Info-Requests (type 7) to seeds and
members; the Info-Reply names the address and port the peer saw us at, and
the relays it knows. The same as our RLOC and data port means we are
reachable directly (we register at once meanwhile, as before). Anything
else means a NAT: we pick a relay and from then on register through it
alone, with the relay's RLOC at priority 1 and the address the NAT gives us
at priority 255 (never sent to, RFC 9301 5.4; listed so that members accept
what we send them directly). Our membership (the group's RLE) is withdrawn
(TTL 0): no member can reach us but the relay, and the relay passes on
to us every registration it accepts (and, when we become its client, every
one it holds). An Info-Request to the relay every `nat_keepalive` seconds
keeps the binding open and says the relay still carries us; three
unanswered and we take the next relay.

A relay registers its name EID at priority 254 (lispers.net's RTR
convention), which is how members know it is one. A member behind NAT
becomes its client when the relay accepts a registration of its over the
binding; data for its EIDs is then re-encapsulated to the binding
(decent.peer.dataplane), and whatever we send it goes there as LISP data
(the Outbox's bindings). Clients are bounded (`relay_clients`) and
forgotten after three keepalive periods of silence.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.peer import counters as C
from decent.peer.config import Addr, DatabaseMapping, rloc_order
from decent.peer.context import Ctx
from decent.peer.events import NatChanged, RelayClientChanged
from decent.peer.mapdb import MapDB
from decent.peer.ratelimit import Buckets
from decent.peer.roaming import moved_locators
from decent.wire import Eid, IPAddress, Locator
from decent.wire.nat import InfoReply, InfoRequest, NatTraversal, info_authentic

#: The locator priority of a relay, on its name EID (lispers.net's RTR
#: records use 254; not an IANA value).
RELAY_PRIORITY: Final = 254
#: Keepalives in a row without an answer before we change relay; periods
#: of silence before a relay forgets a client.
MISSES: Final = 3
#: Peers asked at once when we do not know whether we are behind a NAT.
ASK_PEERS: Final = 3
#: Outstanding Info-Requests remembered; relays learned from replies.
ASKED_KEPT: Final = 64
RELAYS_KEPT: Final = 16
#: A relay that failed us is not chosen again for this long (seconds).
FAILED_HOLD: Final = 60.0
#: Seconds before asking again while no peer has answered (doubling).
FIRST_RETRY: Final = 1.0

#: Hands a control message that came over a binding to the node's control path.
Deliver = Callable[[bytes, Addr, float], None]


@dataclass(frozen=True, slots=True)
class NatTick:
    """Time to send Info-Requests: a check, a recheck or a keepalive."""


@dataclass(slots=True)
class Client:
    """A member behind NAT that we relay for."""

    binding: Addr
    private: IPAddress
    seen: float
    since: float
    eids: set[Eid] = field(default_factory=set)
    #: Its xTR-ID, as its Map-Registers carry it.
    xtr: bytes = b""


class NatRole:
    """Both ends of NAT traversal for one node. See the module docstring."""

    timer_keys: Final = (NatTick,)

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        config = ctx.config
        #: "off", "checking", "direct", "relayed" or "no-relay". A multicast
        #: underlay is one network: no NAT between members, nothing to check.
        off = config.nat == "off" or config.group_mode == "multicast"
        self.state = "off" if off else "checking"
        #: Where peers see our data port from, when it is not our RLOC's.
        self.seen: Addr | None = None
        self.relay: IPAddress | None = None
        #: Relays we heard of (Info-Reply RTR lists), and those that failed.
        self.relays: dict[IPAddress, float] = {}
        self.failed: dict[IPAddress, float] = {}
        self._asked: OrderedDict[int, IPAddress] = OrderedDict()
        self._answered = 0.0
        self._retry = FIRST_RETRY
        self._rounds = 0
        self._buckets: Buckets[IPAddress] = Buckets(
            config.limits.info_rate, config.limits.info_burst, 4096
        )
        #: As a relay: our clients by binding, and their EIDs' bindings.
        self.clients: dict[Addr, Client] = {}
        self._held: OrderedDict[tuple[Addr, Eid], tuple[float, bytes]] = OrderedDict()
        self.routes: MapDB[Addr] = MapDB()
        #: Register now (our locators changed); the members to ask.
        self.moved: Callable[[float], None] | None = None
        self.peers: Callable[[], Iterable[IPAddress]] = list
        #: Relays named by registrations we hold (the mapping system's view).
        self.known_relays: Callable[[], Iterable[IPAddress]] = list
        #: A member confirmed that the group holds us (our relay did).
        self.confirmed: Callable[[float], None] = lambda now: None

    def start(self, now: float) -> None:
        if self.state != "off" and self.ctx.config.group is not None:
            self.ctx.timers.set(NatTick(), now)

    # ------------------------------------------------------------ our side
    @property
    def relayed(self) -> bool:
        return self.state == "relayed"

    def rewrite(self, mapping: DatabaseMapping) -> DatabaseMapping:
        """A database mapping as we register it to the group now: through
        our relay when we are behind NAT, at the relay priority on our name
        when we are one."""
        ctx = self.ctx
        config = ctx.config
        locators = mapping.locators
        if config.advertise:
            public = tuple(
                dict.fromkeys(config.rloc_for(r.version) or r for r in config.rlocs)
            )
            locators = moved_locators(locators, config.rlocs, public)
        if mapping.eid == ctx.group_eid:
            # Behind NAT we are in no RLE: withdraw what we registered before
            # we knew (the first round goes out while we check), so no member
            # replicates to an address it cannot reach.
            ttl = 0 if self.relayed else mapping.ttl
            return replace(mapping, locators=locators, ttl=ttl)
        if config.relay and mapping.eid.is_name and not self.relayed:
            locators = tuple(
                replace(loc, priority=RELAY_PRIORITY) if ctx.own(loc.address) else loc
                for loc in locators
            )
        elif self.relayed and any(ctx.own(loc.address) for loc in locators):
            assert self.relay is not None
            assert self.seen is not None
            others = [loc for loc in locators if not ctx.own(loc.address)]
            mine = [Locator(self.relay, 1, 100)]
            if self.seen[0] != self.relay:
                mine.append(Locator(self.seen[0], 255, 0))
            locators = tuple(
                sorted(others + mine, key=lambda loc: rloc_order(loc.address))
            )
        return (
            mapping
            if locators == mapping.locators
            else replace(mapping, locators=locators)
        )

    def send_to_relay(self, data: bytes, kind: str) -> None:
        """A control message for our relay, over our binding."""
        assert self.relay is not None
        config = self.ctx.config
        own = config.rloc_for(self.relay.version)
        if own is None:
            return
        out = self.ctx.out
        payload = out.in_data(data, own, self.relay, config.control_port)
        out.send_data(payload, (self.relay, config.data_port), "relayed-" + kind)

    def handle_timer(self, key: Hashable, now: float) -> None:
        config = self.ctx.config
        if self.relayed:
            assert self.relay is not None
            if now - self._answered >= MISSES * config.nat_keepalive:
                self._relay_failed(now)
            else:
                self._ask(self.relay, now)
                self.ctx.timers.set(NatTick(), now + config.nat_keepalive)
                return
        asked = 0
        for peer in self._candidates():
            asked += self._ask(peer, now)
            if asked >= ASK_PEERS:
                break
        self._rounds += 1
        if self.state == "checking" and (not asked or self._rounds > MISSES):
            # Nobody to ask, or nobody answers (a first member, peers of an
            # older version): register as we are rather than not at all.
            self._set(now, "direct", None, None)
        if self.state == "direct":
            wait = config.nat_recheck
        else:
            wait, self._retry = self._retry, min(2 * self._retry, config.nat_keepalive)
        self.ctx.timers.set(NatTick(), now + wait)

    def recheck(self, now: float) -> None:
        """Our addresses changed (roaming): ask again now."""
        if self.state == "off":
            return
        self._retry, self._rounds = FIRST_RETRY, 0
        if not self.relayed:
            self.ctx.timers.set(NatTick(), now)
        elif self.relay is not None:
            self._ask(self.relay, now)

    def _candidates(self) -> list[IPAddress]:
        ctx = self.ctx
        group = ctx.config.group
        seeds = [ms[0] for ms in ctx.config.map_servers if ms[0] != group]
        peers = dict.fromkeys([*seeds, *self.peers()])
        return [p for p in peers if not ctx.own(p)]

    def _ask(self, peer: IPAddress, now: float) -> int:
        ctx = self.ctx
        config = ctx.config
        own = config.rloc_for(peer.version)
        if own is None:
            return 0
        nonce = ctx.out.nonce()
        # One of our EID-prefixes (ermagan 4.1): a relay finds us by it anew.
        request = next(
            (
                InfoRequest(nonce, e.address, e.mask_len)
                for e, _ in ctx.database.items()
                if e.group is None and isinstance(e.address, IPv4Address | IPv6Address)
            ),
            InfoRequest(nonce),
        )
        key, alg = config.credentials((peer, config.control_port))
        data = request.signed(key, alg) if key else request.encode()
        self._asked[nonce] = peer
        while len(self._asked) > ASKED_KEPT:
            self._asked.popitem(last=False)
        payload = ctx.out.in_data(data, own, peer, config.control_port)
        ctx.out.send_data(payload, (peer, config.data_port), "info-request")
        return 1

    def on_reply(self, msg: InfoReply, raw: bytes, src: Addr, now: float) -> None:
        """An Info-Reply to one of our Info-Requests (from its peer's data
        port: what it says about us is only good for that path)."""
        ctx = self.ctx
        peer = self._asked.get(msg.nonce)
        if peer is None or peer != src[0]:
            ctx.out.drop(src, "info-reply-unexpected")
            return
        if not self._authentic(raw):
            ctx.out.drop(src, "auth-failed")
            return
        del self._asked[msg.nonce]
        ctx.out.counters[C.RX + "info-reply"] += 1
        nat = msg.nat
        for rtr in nat.rtrs:
            if len(self.relays) >= RELAYS_KEPT and rtr not in self.relays:
                break
            if not ctx.own(rtr):
                self.relays[rtr] = now
        if peer == self.relay:
            if peer not in nat.rtrs:
                self._relay_failed(now)  # it is full, or stopped relaying
                return
            self._answered = now
            if nat.private_etr is not None and ctx.own(nat.private_etr):
                # Our relay holds us as its client: a member's word that the
                # group has us, as a Map-Notify naming us is for the others.
                self.confirmed(now)
        own = ctx.config.rloc_for(peer.version)
        if nat.global_etr is None:
            return  # lispers.net's Map-Server says nothing of what it saw
        seen = (nat.global_etr, nat.etr_port)
        if seen == (own, ctx.config.data_port):
            if self.state != "direct":
                self._set(now, "direct", None, None)
            return
        if not self.relayed:
            self.seen = seen
            self._choose(now)
        elif seen[0] != (self.seen or seen)[0]:
            self._set(now, "relayed", self.relay, seen)
        else:
            self.seen = seen

    def _choose(self, now: float) -> None:
        ctx = self.ctx
        usable = [
            r
            for r in (*self.known_relays(), *self.relays)
            if not ctx.own(r) and self.failed.get(r, 0.0) <= now
        ]
        if not usable:
            self._set(now, "no-relay", None, self.seen)
            return
        relay = min(dict.fromkeys(usable), key=rloc_order)
        self._answered = now
        self._set(now, "relayed", relay, self.seen)
        ctx.timers.set(NatTick(), now + ctx.config.nat_keepalive)

    def _relay_failed(self, now: float) -> None:
        assert self.relay is not None
        self.ctx.out.counters[C.NAT_RELAY_FAILED] += 1
        self.failed[self.relay] = now + FAILED_HOLD
        self.relays.pop(self.relay, None)
        self.relay = None
        self._choose(now)
        if not self.relayed:
            self.ctx.timers.set(NatTick(), now + FIRST_RETRY)

    def _set(
        self, now: float, state: str, relay: IPAddress | None, seen: Addr | None
    ) -> None:
        changed = (state, relay, seen) != (self.state, self.relay, self.seen)
        self.state, self.relay, self.seen = state, relay, seen
        relayed = state == "relayed" and seen is not None
        self.ctx.behind_nat = seen[0] if relayed and seen is not None else None
        if not changed:
            return
        shown = None if seen is None else f"{seen[0]}:{seen[1]}"
        self.ctx.out.emit(NatChanged(state, relay, shown))
        if self.moved is not None:
            self.moved(now)

    # ------------------------------------------------------------ every member
    def _authentic(self, raw: bytes) -> bool:
        key = self.ctx.config.register_key
        return not key or info_authentic(raw, key)

    def on_request(
        self,
        msg: InfoRequest,
        raw: bytes,
        src: Addr,
        inner: tuple[IPAddress, IPAddress] | None,
        now: float,
    ) -> None:
        """An Info-Request from src: say where we saw it from, and which
        relays we know. `inner` is its (source, destination) when it came as
        LISP data to our data port (the only way our members send them),
        and the answer goes back the same way."""
        ctx = self.ctx
        config = ctx.config
        if not self._authentic(raw):
            ctx.out.drop(src, "auth-failed")
            return
        if not self._buckets.take(src[0], now):
            ctx.out.drop(src, "info-rate")
            return
        ctx.out.counters[C.RX + "info-request"] += 1
        local = inner[1] if inner is not None else config.rloc_for(src[0].version)
        relays = self.relay_list()
        if inner is not None and config.relay:
            self._keepalive(msg, src, inner[0], now)
            if (
                src not in self.clients
                and len(self.clients) >= config.limits.relay_clients
            ):
                # Full: we do not offer ourselves, and a member that took us
                # for its relay looks for another.
                relays = [r for r in relays if not ctx.own(r)]
        client = self.clients.get(src)
        reply = InfoReply(
            msg.nonce,
            msg.eid,
            msg.mask_len,
            ttl=max(1, int(config.nat_keepalive * MISSES) // 60),
            nat=NatTraversal(
                config.data_port if inner is not None else config.control_port,
                src[1],
                src[0],
                local,
                # A client learns that we carry it (ermagan 4.2 leaves this
                # AFI 0 in the Map-Server's reply; lispers.net's RTR names
                # the xTR here too).
                None if client is None else client.private,
                tuple(relays[:RELAYS_KEPT]),
            ),
        )
        key = config.register_key
        data = reply.signed(key, config.register_alg) if key else reply.encode()
        if inner is None:
            ctx.out.send(data, src, "info-reply")
        elif local is not None:
            payload = ctx.out.in_data(data, local, inner[0], config.control_port)
            ctx.out.send_data(payload, src, "info-reply")

    def on_control(
        self, msg: InfoRequest | InfoReply, raw: bytes, src: Addr, now: float, _: object
    ) -> None:
        """An Info message on our control port: we answer a request the
        same way; we ask only over our data port, so a reply is unexpected."""
        if isinstance(msg, InfoRequest):
            self.on_request(msg, raw, src, None, now)
        else:
            self.ctx.out.drop(src, "info-reply-unexpected")

    def relay_list(self) -> list[IPAddress]:
        """The relays we name in our Info-Replies: ourselves if we offer to
        (and are not behind NAT ourselves), and those registered to us."""
        ctx = self.ctx
        relays = dict.fromkeys(self.known_relays())
        if ctx.config.relay and not self.relayed:
            relays.update(dict.fromkeys(ctx.config.rlocs))
        return sorted(relays, key=rloc_order)

    # ------------------------------------------------------------ as a relay
    def from_binding(
        self, payload: bytes, src: Addr, inner: IPAddress, now: float, deliver: Deliver
    ) -> None:
        """Control from a non-member, as LISP data: a member behind NAT
        registering through us, or keeping its registration here fresh.
        Whatever we answer goes back over its binding."""
        ctx = self.ctx
        client = self.clients.get(src)
        if client is None and len(self.clients) >= ctx.config.limits.relay_clients:
            ctx.out.drop(src, "relay-full")
            return
        own = ctx.config.rloc_for(src[0].version)
        if own is None:
            return
        ctx.out.bindings[src] = (own, inner, ctx.config.control_port)
        try:
            deliver(payload, src, now)
        finally:
            if src not in self.clients:
                del ctx.out.bindings[src]

    def registered(
        self, src: Addr, records: list[tuple[Eid, int]], xtr: bytes, now: float
    ) -> Addr | None:
        """The Map-Server accepted a registration of (EID, TTL) records from
        src (xTR-ID `xtr`): if src is a binding, its EIDs are reached through
        it now. The binding when this made it a new client (or a new member
        behind an old binding: it holds nothing yet either)."""
        ctx = self.ctx
        if src not in ctx.out.bindings:
            return None
        client = self.clients.get(src)
        new = client is None or client.xtr != xtr
        if client is None:
            private = ctx.out.bindings[src][1]
            client = self.clients[src] = Client(src, private, now, now)
            ctx.out.emit(RelayClientChanged(f"{src[0]}:{src[1]}", True))
        client.seen, client.xtr = now, xtr
        for eid, ttl in records:
            if eid.is_name or eid.group is not None:
                continue
            if ttl == 0:
                client.eids.discard(eid)
                if self.routes.get(eid) == src:
                    self.routes.remove(eid)
            else:
                client.eids.add(eid)
                self.routes.insert(eid, src)
        return src if new else None

    def remember(self, src: Addr, first: Eid, ecm: bytes, now: float) -> None:
        """Keep the last registration per registrant and first EID, as
        carried to clients (bounded: `relay_held`), for clients to come."""
        key = (src, first)
        self._held.pop(key, None)
        self._held[key] = (now, ecm)
        while len(self._held) > self.ctx.config.limits.relay_held:
            self._held.popitem(last=False)

    def held(self, now: float, lifetime: float) -> list[bytes]:
        return [ecm for at, ecm in self._held.values() if now - at < lifetime]

    def carries(self, src: Addr) -> bool:
        """Whether src is a client's binding (its registrations go on to
        the group through us)."""
        return src in self.clients

    def _keepalive(
        self, msg: InfoRequest, src: Addr, private: IPAddress, now: float
    ) -> None:
        client = self.clients.get(src)
        if client is None and msg.eid is not None:
            # A NAT that dropped the binding gives the member a new one: an
            # authenticated Info-Request naming a client's EID from the same
            # private address moves that client (lispers.net finds its NAT'd
            # xTRs by name the same way).
            eid = Eid(self.ctx.config.group_iid, msg.eid, msg.mask_len)
            old = next(
                (
                    c
                    for c in self.clients.values()
                    if eid in c.eids and c.private == private
                ),
                None,
            )
            if old is not None:
                client = self._rebind(old, src)
        if client is not None:
            client.seen = now

    def _rebind(self, client: Client, src: Addr) -> Client:
        ctx = self.ctx
        del self.clients[client.binding]
        inner = ctx.out.bindings.pop(client.binding)
        ctx.out.bindings[src] = inner
        client.binding = src
        self.clients[src] = client
        for eid in client.eids:
            self.routes.insert(eid, src)
        ctx.out.counters[C.NAT_REBOUND] += 1
        return client

    def route(self, iid: int, version: int, addr: int) -> Addr | None:
        """The binding to re-encapsulate a packet for this EID to."""
        hit = self.routes.lookup_host(iid, version, addr)
        return None if hit is None else hit[1]

    def sweep(self, now: float) -> None:
        idle = MISSES * self.ctx.config.nat_keepalive
        for _binding, client in list(self.clients.items()):
            if now - client.seen > idle:
                self._forget(client)
        for relay, until in list(self.failed.items()):
            if until <= now:
                del self.failed[relay]
        self._buckets.prune(now)

    def _forget(self, client: Client) -> None:
        ctx = self.ctx
        del self.clients[client.binding]
        ctx.out.bindings.pop(client.binding, None)
        for eid in client.eids:
            if self.routes.get(eid) == client.binding:
                self.routes.remove(eid)
        b = client.binding
        ctx.out.emit(RelayClientChanged(f"{b[0]}:{b[1]}", False))

    def sizes(self) -> dict[str, int]:
        return {"relay_clients": len(self.clients), "relays_known": len(self.relays)}


__all__ = ["RELAY_PRIORITY", "Client", "NatRole", "NatTick"]
