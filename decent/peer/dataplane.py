"""The xTR data plane's decisions: ITR encapsulation, ETR decapsulation (RFC 9300).

Theory of operation
-------------------
The shell reads an inner IP packet from the TUN into a buffer with
`HEADROOM` (20) free bytes in front and `TAILROOM` (16) after, and calls
`encap(buf, n, now)`. On a forward the core has written the LISP header in
front, sealed the packet in place if we hold a key for the RLOC (RFC 8061,
decent.peer.sealing), and returns where to send `buf[start:end]`: the RLOC's
(host, port), our RLOC index to send from, a hash of the inner 5-tuple for
the UDP source port, and the span. Nothing is copied. A miss queues a copy
(bounded) and asks our Map-Resolver once; packets released later, natively
forwarded ones and ICMP errors wait in `packets_to_send()`,
`packets_to_native()` and `packets_to_tun()` for the shell.

For a UDP payload on the data port the shell calls `decap(buf, n, host,
port, now)`; a (start, end) span means "write buf[start:end] to the TUN".
Instance ID 0xffffff is LISP-Decent's replicated control traffic, for the
Node. Everything else must come from a registered RLOC and be for one of
our EIDs; what fails a check is counted under `drop.<reason>`, never raises
and changes no state.

The data plane rides on the Node as HTTP/3 rides on QUIC: it calls the
Node's public API and takes its events through `handle_event`; the Node
never imports this module. Its own events wait in `next_event()`.
`send_packet` / `receive_packet` are the two paths on whole `bytes`.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final

from decent.peer import counters as C
from decent.peer.config import (
    NEGATIVE_ACTIONS,
    OVERHEAD,
    Addr,
    DataPlaneConfig,
    rloc_order,
)
from decent.peer.events import (
    Event,
    KeyStateChanged,
    LocatorStateChanged,
    MapCacheUpdated,
    MapRequestFailed,
    RlocsChanged,
)
from decent.peer.mapcache import CacheEntry, LocatorState
from decent.peer.missqueue import MissQueue
from decent.peer.node import Node
from decent.peer.pathmtu import PathMtu
from decent.peer.peerstats import PeerStats
from decent.peer.registered import registered_rlocs, routed_prefixes
from decent.peer.sealing import CLEAR_AT, P, Sealing
from decent.wire import DECENT_CONTROL_IID, Action, Eid, IPAddress
from decent.wire.crypto import MAX_IV_LEN, TAG_LEN
from decent.wire.data import (
    DATA_HEADER_LEN,
    FLAG_INSTANCE_ID,
    FLAG_LSBS,
    FLAG_NONCE,
    KEY_ID_MASK,
    flow_hash,
    peek_iid,
    peek_lsbs,
    stamp_into,
)

#: Bytes the shell leaves free in front of an inner packet: the LISP header
#: and the longest IV. The inner packet always starts there (P).
HEADROOM: Final = P
#: Bytes the shell leaves free after it: the AEAD tag.
TAILROOM: Final = TAG_LEN
_DROP_ACTIONS: Final = frozenset(
    {Action.DROP_NO_REASON, Action.DROP_POLICY_DENIED, Action.DROP_AUTH_FAILURE}
)
_V4_NOT_UNICAST: Final = 0xE0000000  # 224/4 multicast, 240/4, broadcast
_V6_MULTICAST: Final = 0xFF
_V6_LINK_LOCAL: Final = 0xFE80 >> 6


Route = tuple[tuple[str, int], int, int]
"""Where an encapsulated packet goes: (host, port), our RLOC index, flow hash."""
#: The flow hash of a packet relayed to a member behind NAT: it must leave
#: from our data port itself, where the member's NAT binding goes.
RELAYED: Final = -1
Encap = tuple[tuple[str, int], int, int, int, int]
"""A Route and the span of the buffer to send: (..., start, end)."""


class DataPlane:
    """The forwarding state of one xTR. See the module docstring."""

    def __init__(
        self,
        node: Node,
        config: DataPlaneConfig | None = None,
        *,
        nonce: Callable[[], int],
    ) -> None:
        """Attach a data plane to node. `nonce` returns fresh random values;
        the low 24 bits become each packet's nonce (RFC 9300 5.3)."""
        self.node = node
        self.config = config or DataPlaneConfig()
        self._nonce = nonce
        self.iid = node.config.group_iid
        self.data_port = node.config.data_port
        #: Counted with the Node's: one table of reasons for the operator.
        self._counters: Counter[str] = node.counters
        self._events: deque[Event] = deque(maxlen=4096)
        self._cache = node.cache
        self._lookup = node.cache.db.lookup_host
        self._own_lookup = node.database.lookup_host
        self._rlocs = node.config.rlocs
        self._rloc_up = [True] * len(self._rlocs)
        self._own_hosts = frozenset(str(r) for r in self._rlocs)
        self._src: dict[int, int] = {}
        self._lsb_word = 0
        self._flags = FLAG_NONCE | FLAG_LSBS | (FLAG_INSTANCE_ID if self.iid else 0)
        self._own_sources()
        self.keys = node.keys
        #: Bytes the shell leaves free around each inner packet.
        self.headroom, self.tailroom = HEADROOM, TAILROOM
        mtu = self.config.underlay_mtu
        sealed = MAX_IV_LEN + TAG_LEN if node.config.encrypt != "off" else 0
        limit = {v: mtu - h - sealed for v, h in OVERHEAD.items()}
        self._allowed: frozenset[str] = frozenset()
        self._allowed_version = -1
        self._addr_memo: dict[str, IPAddress] = {}
        cfg = self.config
        self._waiting = MissQueue(cfg.queue_size, cfg.queue_timeout, self._counters)
        self.sealing = Sealing(
            node.keys,
            node.config.encrypt,
            self._waiting,
            cfg.queue_size,
            self._counters,
            self._stamp,
            self.on_install,
        )
        self._to_send: list[tuple[bytes, Route]] = []
        self._to_tun: list[bytes] = []
        self._mtu = PathMtu(
            limit, cfg.icmp_rate, self._counters, lambda p: self._to_tun.append(p)
        )
        self._limit = limit
        self._to_native: list[bytes] = []
        #: Hot-path totals (plain ints: a Counter costs a dict update each).
        self.encapsulated = 0
        self.encapsulated_bytes = 0
        self.decapsulated = 0
        self.decapsulated_bytes = 0
        #: Per peer RLOC, each way: `decent status`'s data-plane view.
        self.traffic = PeerStats(node.config.limits.max_traffic_peers, self._counters)

    # ============================================================ outputs
    def packets_to_send(self) -> list[tuple[bytes, Route]]:
        """Encapsulated packets (header included) decided outside `encap`'s
        return value: released from the miss queue, or sent to the PETR."""
        out, self._to_send = self._to_send, []
        return out

    def packets_to_tun(self) -> list[bytes]:
        """Inner packets for the TUN: decapsulated ones (bytes API) and the
        ICMP errors we generate."""
        out, self._to_tun = self._to_tun, []
        return out

    def packets_to_native(self) -> list[bytes]:
        """Inner packets to send into the underlay unencapsulated."""
        out, self._to_native = self._to_native, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def handle_event(self, event: Event, now: float) -> None:
        """Take one of the Node's events (the shell forwards them all)."""
        if isinstance(event, MapCacheUpdated):
            self.on_install(event.eid, now)
        elif isinstance(event, MapRequestFailed):
            self.on_request_failed(event.eid)
        elif isinstance(event, RlocsChanged):
            self.rlocs_changed()
            self.keys.rlocs_changed(now)
        elif isinstance(event, KeyStateChanged):
            self.sealing.key_state(event, now)

    def routed(self) -> dict[int, set[int]]:
        """What the ITR encapsulates, so what the shell routes into the TUN
        (decent.peer.registered.routed_prefixes)."""
        return routed_prefixes(self.node, self.iid)

    def stats(self) -> dict[str, int]:
        return {
            "encapsulated-packets": self.encapsulated,
            "encapsulated-bytes": self.encapsulated_bytes,
            "decapsulated-packets": self.decapsulated,
            "decapsulated-bytes": self.decapsulated_bytes,
            "queued": len(self._waiting),
        }

    # ============================================================ our RLOCs
    def _own_sources(self) -> None:
        self._src = {}
        word = 0
        # Status bit k is the k-th locator of our (sorted) locator set, not
        # the k-th RLOC of the config (RFC 9300 10, RFC 9301 5.5).
        bit = {r: k for k, r in enumerate(sorted(self._rlocs, key=rloc_order))}
        for i, (rloc, up) in enumerate(zip(self._rlocs, self._rloc_up, strict=True)):
            if up:
                word |= 1 << bit[rloc]
                self._src.setdefault(rloc.version, i)
        # With an instance ID the header has room for 8 status bits only.
        self._lsb_word = word & 0xFF if self.iid else word & 0xFFFFFFFF

    def rlocs_changed(self) -> None:
        """The Node's RLOC set changed (change_rlocs): every new RLOC starts
        up, and cached locators are re-classified, since an RLOC that was
        ours may now be a peer's and one of ours may be new."""
        self._rlocs = self.node.config.rlocs
        self._rloc_up = [True] * len(self._rlocs)
        self._own_hosts = frozenset(str(r) for r in self._rlocs)
        self._own_sources()
        for _, entry in self._cache.db.items():
            for state in entry.locators:
                state.sockaddr = None
        self._cache.generation += 1

    def rloc_up(self, index: int) -> bool:
        return self._rloc_up[index]

    def set_rloc_state(self, index: int, up: bool, now: float) -> None:
        """Our RLOC number `index` went down or came back (the shell watches
        its link). Our packets stop leaving from it and say so in their
        locator-status bits; our mappings are registered again with its R bit
        matching, and ITRs that recently sent to us are SMR'd (RFC 9301 6.1),
        so they fail over without waiting for a probe to time out."""
        if self._rloc_up[index] == up:
            return
        self._rloc_up[index] = up
        self._own_sources()
        rloc = self._rlocs[index]
        self._counters[C.RLOC_UP if up else C.RLOC_DOWN] += 1
        node = self.node
        own = Eid(self.iid, rloc, rloc.max_prefixlen)
        self._events.append(LocatorStateChanged(own, str(rloc), up))
        for eid, mapping in list(node.database.items()):
            if not any(loc.address == rloc for loc in mapping.locators):
                continue
            locators = tuple(
                replace(loc, reachable=up) if loc.address == rloc else loc
                for loc in mapping.locators
            )
            node.set_locators(eid, locators, now)

    # ============================================================ ITR
    def encap(self, buf: bytearray, n: int, now: float) -> Encap | None:
        """Decide what happens to the inner packet in buf[P:P + n].

        Returns where to send which span of buf, header written and sealed,
        or None (queued, dropped, or handed to one of the output lists).
        """
        if n < 20:
            self._counters[C.DROP_SHORT_PACKET] += 1
            return None
        version = buf[P] >> 4
        if version == 4:
            dst = int.from_bytes(buf[P + 16 : P + 20], "big")
            if dst >= _V4_NOT_UNICAST:
                self._counters[C.DROP_NOT_UNICAST] += 1
                return None
        elif version == 6 and n >= 40:
            dst = int.from_bytes(buf[P + 24 : P + 40], "big")
            if dst >> 120 == _V6_MULTICAST or dst >> 118 == _V6_LINK_LOCAL:
                self._counters[C.DROP_NOT_UNICAST] += 1
                return None
        else:
            self._counters[C.DROP_NOT_IP] += 1
            return None
        hit = self._lookup(self.iid, version, dst)
        if hit is None:
            self._miss(buf, n, version, dst, now)
            return None
        entry = hit[1]
        slots = entry.slots(self._cache.generation)
        if not slots:
            if entry.negative:
                return self._negative(entry, buf, n, version, now)
            self._counters[C.DROP_NO_USABLE_RLOC] += 1
            return None
        h = flow_hash(buf, n, version, P)
        state = slots[h % len(slots)]
        addr = state.sockaddr
        if addr is None:
            addr = self._resolve_sockaddr(state)
        family = state.family
        if not family:
            if not self._relay(buf, P, P + n, version, dst):
                self._counters[C.DROP_OWN_RLOC] += 1
            return None
        src = self._src.get(family)
        if src is None:
            self._counters[C.DROP_NO_SOURCE_RLOC] += 1
            return None
        if n > self._limit[family] and self._mtu.refuse(
            buf, P, n, version, family, now
        ):
            return None
        start = self.sealing.seal(buf, n, addr[0], entry.eid, self._rlocs[src], now)
        if start < 0:
            return None
        entry.packets += 1
        entry.bytes += n
        state.packets += 1
        state.bytes += n
        self.encapsulated += 1
        self.encapsulated_bytes += n
        self.traffic.sent(addr[0], n, now)
        return addr, src, h, start, P + n + (start != CLEAR_AT) * TAG_LEN

    def send_packet(self, packet: bytes, now: float) -> None:
        """`encap` for a whole packet: what it forwards joins packets_to_send()."""
        buf = bytearray(HEADROOM) + packet + bytearray(TAILROOM)
        sent = self.encap(buf, len(packet), now)
        if sent is not None:
            addr, src, flow, start, end = sent
            self._to_send.append((bytes(buf[start:end]), (addr, src, flow)))

    def _relay(self, buf: bytearray, p: int, end: int, version: int, dst: int) -> bool:
        """As a relay: a packet for a member behind NAT goes on over its
        binding (draft-ermagan-lisp-nat-traversal 5.3, 4)."""
        to = self.node.nat.route(self.iid, version, dst)
        src = None if to is None else self._src.get(to[0].version)
        if to is None or src is None:
            return False
        self._stamp(buf, p - DATA_HEADER_LEN, 0)
        route = ((str(to[0]), to[1]), src, RELAYED)
        self._to_send.append((bytes(buf[p - DATA_HEADER_LEN : end]), route))
        self._counters[C.RELAY_FORWARDED] += 1
        return True

    def _stamp(self, buf: bytearray, at: int, key_id: int) -> None:
        """Write the LISP header (RFC 9300 5.3, KK = key_id) at buf[at:]."""
        flags = self._flags | key_id
        stamp_into(buf, flags, self._nonce(), self.iid, self._lsb_word, at)

    def _resolve_sockaddr(self, state: LocatorState) -> tuple[str, int]:
        addr = state.locator.rloc
        assert addr is not None  # usable ones have one
        state.sockaddr = (str(addr), self.data_port)
        # A mapping that names one of our own RLOCs would come straight back.
        state.family = 0 if addr in self._rlocs else addr.version
        return state.sockaddr

    def _negative(
        self, entry: CacheEntry, buf: bytearray, n: int, version: int, now: float
    ) -> Encap | None:
        cfg = self.config
        if entry.record.action in _DROP_ACTIONS:
            self._counters[C.DROP_NEGATIVE_DROP_ACTION] += 1
            return None
        if cfg.petr is not None:
            family = cfg.petr.version
            src = self._src.get(family)
            if src is None:
                self._counters[C.DROP_NO_SOURCE_RLOC] += 1
                return None
            if n > self._limit[family] and self._mtu.refuse(
                buf, P, n, version, family, now
            ):
                return None
            host = str(cfg.petr)
            start = self.sealing.seal(buf, n, host, entry.eid, self._rlocs[src], now)
            if start < 0:
                return None
            entry.packets += 1
            entry.bytes += n
            self._counters[C.DATAPLANE_PETR] += 1
            self.traffic.sent(host, n, now)
            end = P + n + (start != CLEAR_AT) * TAG_LEN
            flow = flow_hash(buf, n, version, P)
            return (host, self.data_port), src, flow, start, end
        entry.packets += 1
        entry.bytes += n
        if cfg.negative_action == "native":
            self._counters[C.DATAPLANE_NATIVE] += 1
            self._to_native.append(bytes(buf[P : P + n]))
            return None
        self._counters[C.DROP_NEGATIVE] += 1
        return None

    def _miss(self, buf: bytearray, n: int, version: int, dst: int, now: float) -> None:
        """RFC 9300 / 9301 5.3: ask the Map-Resolver (once per prefix; the
        Node rate-limits and backs off) and hold the packet meanwhile."""
        key = Eid(
            self.iid,
            IPv4Address(dst) if version == 4 else IPv6Address(dst),
            32 if version == 4 else 128,
        )
        if self._waiting.room(now):
            self._waiting.hold(key, bytes(buf[P : P + n]), now)
        self._counters[C.DATAPLANE_MISS] += 1
        self.node.request(key, now)

    def on_install(self, eid: Eid, now: float) -> None:
        """The Node installed a mapping: release the packets it covers."""
        for packet in self._waiting.release(eid, now):
            self.send_packet(packet, now)

    def on_request_failed(self, eid: Eid) -> None:
        """The Map-Resolver never answered: drop what waited for eid."""
        self._waiting.drop(eid)

    # ============================================================ ETR
    def decap(
        self, buf: bytearray, n: int, host: str, port: int, now: float
    ) -> tuple[int, int] | None:
        """Check the 4341 payload in buf[:n] from host:port; a (start, end)
        span means write buf[start:end] (the inner packet) to the TUN."""
        if n < DATA_HEADER_LEN + 20:
            # Replicated control, or not even a LISP header: the Node's
            # decoder judges both (and counts the latter a decode error).
            if n < DATA_HEADER_LEN or peek_iid(buf) == DECENT_CONTROL_IID:
                self._control(buf, n, host, port, now)
                return None
            self._counters[C.DROP_SHORT_PACKET] += 1
            return None
        iid = peek_iid(buf) or 0  # no I bit: instance 0
        if iid == DECENT_CONTROL_IID:
            self._control(buf, n, host, port, now)
            return None
        if self._allowed_version != self.node.registry_version:
            self._refresh_allowed()
        # LISP-MN 13: never decapsulate for strangers. In pull mode a peer's
        # registration is at its sets: one we gave a key to is no stranger.
        if host not in self._allowed and not (
            self.node.pull is not None and self._keyed(host)
        ):
            self._counters[C.DROP_UNKNOWN_RLOC] += 1
            return None
        if iid != self.iid:
            self._counters[C.DROP_WRONG_IID] += 1
            return None
        key_id = buf[0] & KEY_ID_MASK
        if key_id:
            p = self.sealing.open(buf, n, host, key_id, now)
            if p < 0:
                return None
            n -= TAG_LEN
        elif self.sealing.clear_refused(host):
            # Required, or a peer that keys with us: clear text is forged.
            self._counters[C.DROP_CLEAR_TEXT] += 1
            return None
        else:
            p = DATA_HEADER_LEN
        version = buf[p] >> 4
        if version == 4:
            dst = int.from_bytes(buf[p + 16 : p + 20], "big")
            src = int.from_bytes(buf[p + 12 : p + 16], "big")
        elif version == 6 and n >= p + 40:
            dst = int.from_bytes(buf[p + 24 : p + 40], "big")
            src = int.from_bytes(buf[p + 8 : p + 24], "big")
        else:
            self._counters[C.DROP_NOT_IP] += 1
            return None
        own = self._own_lookup(iid, version, dst)
        if own is None:
            if not self._relay(buf, p, n, version, dst):
                self._counters[C.DROP_NOT_OUR_EID] += 1
            return None
        lsbs = peek_lsbs(buf)
        if lsbs is not None:
            self._honour_lsbs(version, src, lsbs, host)
        rloc = self._addr_memo.get(host)
        if rloc is None:
            rloc = self._remember(host)
        # RFC 9301 6.1: who sent to us recently is SMR'd when we change.
        self.node.note_itr(own[0], rloc, now)
        self.decapsulated += 1
        self.decapsulated_bytes += n - p
        self.traffic.received(host, n - p, now)
        return p, n

    def receive_packet(self, data: bytes, addr: Addr, now: float) -> None:
        """`decap` for a whole datagram: the inner packet joins packets_to_tun()."""
        buf = bytearray(data)
        span = self.decap(buf, len(data), str(addr[0]), addr[1], now)
        if span is not None:
            self._to_tun.append(bytes(buf[span[0] : span[1]]))

    def _remember(self, host: str) -> IPAddress:
        if len(self._addr_memo) > 4096:
            self._addr_memo.clear()
        addr = self._addr_memo[host] = ip_address(host.partition("%")[0])
        return addr

    def _control(
        self, buf: bytearray, n: int, host: str, port: int, now: float
    ) -> None:
        rloc = self._addr_memo.get(host)
        if rloc is None:
            rloc = self._remember(host)
        self.node.receive_data_packet(bytes(buf[:n]), (rloc, port), now)

    def _keyed(self, host: str) -> bool:
        return any((host, key_id) in self.node.keys.rx for key_id in (1, 2, 3))

    def _refresh_allowed(self) -> None:
        self._allowed = registered_rlocs(self.node)
        self._allowed_version = self.node.registry_version

    def _honour_lsbs(self, version: int, src: int, lsbs: int, host: str) -> None:
        """RFC 9300 section 10: a locator-status bit going to 0 keeps us off
        that RLOC of the sender's mapping until it returns to 1. Only the
        mapping's own RLOCs may say so."""
        hit = self._lookup(self.iid, version, src)
        if hit is None:
            return
        entry = hit[1]
        if entry.lsbs == lsbs:
            return
        states = entry.locators
        if not any(str(s.locator.rloc) == host for s in states):
            return
        entry.lsbs = lsbs
        width = 8 if self.iid else 32
        for i, state in enumerate(states[:width]):
            up = bool(lsbs >> i & 1)
            if state.lsb_up != up:
                state.lsb_up = up
                self._cache.generation += 1
                self._counters[C.DATAPLANE_LSB_CHANGE] += 1
                rloc = str(state.locator.rloc)
                self._events.append(LocatorStateChanged(entry.eid, rloc, up))


__all__ = [
    "HEADROOM",
    "NEGATIVE_ACTIONS",
    "OVERHEAD",
    "DataPlane",
    "DataPlaneConfig",
    "Route",
]
