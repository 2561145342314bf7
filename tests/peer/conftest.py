"""Builders shared by the Node tests: configs, traced nodes and small networks.

Every node gets counter-based nonces, so runs are reproducible, and every
network is a seeded SimNet on the virtual clock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from decent.peer.config import AllowedPrefix, DatabaseMapping, NodeConfig, Site
from decent.peer.dataplane import DataPlane
from decent.peer.events import Event
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import (
    DecodeError,
    Eid,
    EncapsulatedControlMessage,
    Locator,
    MapRecord,
    MapRegister,
    MapReply,
    MapRequest,
    RequestRecord,
    decode,
)
from tests.peer.simnet import Addr, SimNet

IP = IPv4Address | IPv6Address
KEY = b"site-a-key"
OTHER_KEY = b"site-b-key"
MS_IP = IPv4Address("192.0.2.1")
ETR_IP = IPv4Address("192.0.2.10")
ETR2_IP = IPv4Address("192.0.2.11")
ITR_IP = IPv4Address("192.0.2.20")
SITE_PREFIX = Eid.prefix("10.1.0.0/16")
ETR_EID = Eid.prefix("10.1.1.0/24")
GROUP = IPv4Address("233.252.1.1")
DECENT_IPS = tuple(IPv4Address(f"198.18.42.{i}") for i in (11, 12, 13))
#: A database mapping TTL (minutes) that outlives an hour-long register
#: period: a shorter one makes the ETR register every TTL / 3 instead.
LONG_TTL: dict[str, Any] = {"ttl": 1440}
N1, N2, N3 = DECENT_IPS
HOUR = 3600.0
V6 = IPv6Address("2001:db8::20")
#: The ETR's control address: where hand-made datagrams come from.
PEER = (ETR_IP, 4342)
#: A host inside the ETR's EID-prefix.
HOST = Eid.prefix("10.1.1.5/32")
#: The ETR's locator after it moved.
NEW_RLOC = IPv4Address("192.0.2.99")


def nonces(start: int = 1, step: int = 1) -> Callable[[], int]:
    """A deterministic nonce source (house style 8.7.6)."""
    counter = itertools.count(start, step)
    return lambda: next(counter)


def ctl(ip: IP) -> Addr:
    return (ip, 4342)


def site_a(**kw: Any) -> Site:
    """Site A: may register inside 10.1.0.0/16 with KEY."""
    return Site("site-a", ((0, KEY),), (AllowedPrefix(SITE_PREFIX),), **kw)


def site_b(**kw: Any) -> Site:
    """Site B: may register inside 10.2.0.0/16 with OTHER_KEY."""
    prefix = AllowedPrefix(Eid.prefix("10.2.0.0/16"))
    return Site("site-b", ((0, OTHER_KEY),), (prefix,), **kw)


def ms_config(
    ip: IP = MS_IP, sites: tuple[Site, ...] | None = None, **kw: Any
) -> NodeConfig:
    """A plain Map-Server/Map-Resolver (not a Decent member)."""
    return NodeConfig(
        rlocs=(ip,), xtr_id=0xAAAA, sites=(site_a(),) if sites is None else sites, **kw
    )


def locators(*ips: IP | str, **kw: Any) -> tuple[Locator, ...]:
    return tuple(Locator(ip_address(ip), **kw) for ip in ips)


def etr_config(
    ip: IP = ETR_IP,
    eid: Eid = ETR_EID,
    *,
    ms: IP = MS_IP,
    key: bytes = KEY,
    mapping: dict[str, Any] | None = None,
    **kw: Any,
) -> NodeConfig:
    """An ETR registering eid (RLOC = its own address) to the Map-Server."""
    database = (DatabaseMapping(eid, locators(ip), **(mapping or {})),)
    kw.setdefault("xtr_id", int(ip))
    kw.setdefault("map_servers", (ctl(ms),))
    kw.setdefault("database", database)
    return NodeConfig(rlocs=(ip,), register_key=key, **kw)


def itr_config(ip: IP = ITR_IP, resolver: IP = MS_IP, **kw: Any) -> NodeConfig:
    kw.setdefault("xtr_id", int(ip))
    kw.setdefault("map_resolvers", (ctl(resolver),))
    return NodeConfig(rlocs=(ip,), **kw)


class Traced(Node):
    """A Node whose events are drained, with the time of the input that
    produced them, into `log` after every input (the shell's flush())."""

    def __init__(self, config: NodeConfig, *, keep: bool = True, **kw: Any) -> None:
        kw.setdefault("nonce", nonces(int(config.rlocs[0]) << 16))
        super().__init__(config, **kw)
        self.log: list[tuple[float, Event]] = []
        self.keep = keep  # False: drain events without keeping them (soaks)
        #: The data plane riding on this node, as the shell wires it.
        self.dataplane: DataPlane | None = None

    def ride(self, dp: DataPlane) -> DataPlane:
        """Carry dp as the shell does: it takes our events and the data port."""
        self.dataplane = dp
        return dp

    def _collect(self, now: float) -> None:
        dp = self.dataplane
        while (event := self.next_event()) is not None:
            if dp is not None:
                dp.handle_event(event, now)
            if self.keep:
                self.log.append((now, event))
        while dp is not None and (event := dp.next_event()) is not None:
            if self.keep:
                self.log.append((now, event))

    def receive_datagram(
        self, data: bytes, addr: Addr, now: float, local: Addr | None = None
    ) -> None:
        """A data-port payload goes to the data plane when one rides here
        (it hands the Node the replicated control traffic)."""
        dp = self.dataplane
        if dp is not None and local is not None and local[1] == self.config.data_port:
            dp.receive_packet(data, addr, now)
        else:
            super().receive_datagram(data, addr, now, local)
        self._collect(now)

    def handle_timer(self, now: float) -> None:
        super().handle_timer(now)
        self._collect(now)

    def request(self, eid: Eid, now: float) -> None:
        super().request(eid, now)
        self._collect(now)

    def set_locators(self, eid: Eid, locators: tuple[Locator, ...], now: float) -> None:
        super().set_locators(eid, locators, now)
        self._collect(now)

    def deregister(self, now: float, eids: Iterable[Eid] | None = None) -> None:
        super().deregister(now, eids)
        self._collect(now)

    def change_rlocs(self, rlocs: Iterable[IP], now: float) -> None:
        super().change_rlocs(rlocs, now)
        self._collect(now)

    def events(self, kind: type[Any]) -> list[tuple[float, Any]]:
        """(time, event) of every logged event of one type."""
        return [(t, e) for t, e in self.log if isinstance(e, kind)]


class Raw:
    """A scripted peer on the SimNet: sends what a test queues, keeps what
    it receives (to inject hand-made or replayed datagrams)."""

    def __init__(self) -> None:
        self.got: list[tuple[float, bytes, Addr]] = []
        self.out: list[tuple[bytes, Addr]] = []

    def receive_datagram(
        self, data: bytes, addr: Addr, now: float, local: Addr | None = None
    ) -> None:
        self.got.append((now, data, addr))

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out, self.out = self.out, []
        return out

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        raise AssertionError("a Raw peer sets no timer")

    def messages(self) -> list[object]:
        return [decode(data) for _, data, _ in self.got]


def attach(net: SimNet, node: Node) -> Node:
    """Put node on net at its first RLOC, control port first, then data port."""
    ip = node.config.rlocs[0]
    net.add(node, (ip, node.config.control_port), (ip, node.config.data_port))
    return node


@dataclass
class Lab:
    """A Map-Server, an ETR registering to it, and an ITR resolving through it."""

    net: SimNet
    ms: Traced
    etr: Traced
    itr: Traced


def lab(
    *,
    seed: int = 0,
    ms: dict[str, Any] | None = None,
    etr: dict[str, Any] | None = None,
    itr: dict[str, Any] | None = None,
    **net_kw: Any,
) -> Lab:
    net = SimNet(seed=seed, record=True, **net_kw)
    nodes = Lab(
        net,
        Traced(ms_config(**(ms or {}))),
        Traced(etr_config(**(etr or {}))),
        Traced(itr_config(**(itr or {}))),
    )
    for node in (nodes.ms, nodes.etr, nodes.itr):
        attach(net, node)
    return nodes


def itr_with_fake_resolver() -> tuple[SimNet, Traced, Raw]:
    net = SimNet(record=True)
    itr = Traced(itr_config())
    resolver = Raw()
    attach(net, itr)
    net.add(resolver, ctl(MS_IP))
    return net, itr, resolver


def resolved_lab(**kw: Any) -> Lab:
    t = lab(**kw)
    t.net.advance(1.0)
    t.itr.request(HOST, t.net.now)
    t.net.advance(1.0)
    assert t.itr.cache.lookup(HOST) is not None
    t.net.trace.clear()
    return t


def probing_lab() -> tuple[Lab, Traced]:
    """The ETR's mapping has two RLOCs; a second ETR node owns the second."""
    t = lab(itr={"probe_interval": 10.0})
    mapping = DatabaseMapping(ETR_EID, locators(ETR_IP, ETR2_IP))
    t.etr.database.insert(ETR_EID, mapping)
    etr2 = Traced(NodeConfig(rlocs=(ETR2_IP,), xtr_id=2, database=(mapping,)))
    attach(t.net, etr2)
    t.net.advance(1.0)
    t.itr.request(HOST, t.net.now)
    t.net.advance(1.0)
    entry = t.itr.cache.lookup(HOST)
    assert entry is not None
    assert [s.locator.address for s in entry.locators] == [ETR_IP, ETR2_IP]
    return t, etr2


def decent_trio(
    *,
    seed: int = 0,
    eids: int = 0,
    ttl: int = 3,
    register_interval: float = 60.0,
    probe_interval: float | None = None,
    keep: bool = True,
    **net_kw: Any,
) -> tuple[SimNet, list[Traced]]:
    """Three push-mode members of GROUP; the first is everyone's seed.

    Member i registers `eids` host routes 10.<i>.x.y/32 besides its
    membership and its name n<i>.
    """
    net = SimNet(seed=seed, **net_kw)
    members = []
    for i, ip in enumerate(DECENT_IPS, start=1):
        config = decent_node_config(
            name=f"n{i}",
            rlocs=(ip,),
            group=GROUP,
            key=KEY,
            xtr_id=i,
            eids=tuple(
                Eid.prefix(f"10.{i}.{j >> 8}.{j & 255}/32") for j in range(eids)
            ),
            seeds=DECENT_IPS[:1],
            ttl=ttl,
            register_interval=register_interval,
            probe_interval=probe_interval,
        )
        member = Traced(config, nonce=nonces(i << 48), keep=keep)
        attach(net, member)
        members.append(member)
    return net, members


def lone_member(**kw: Any) -> Traced:
    config = decent_node_config(
        name="n1", rlocs=(DECENT_IPS[0],), group=GROUP, key=KEY, xtr_id=1, **kw
    )
    return Traced(config)


def state(node: Node) -> dict[str, object]:
    """Everything a forged or replayed datagram must not change: the
    registrations (with their children and lifetimes), the replay nonces,
    the map-cache, the timers and the pending protocol exchanges."""
    sizes = node.soft_state_sizes()
    return {
        "registrations": {
            eid: (
                entry.record,
                entry.proxy_reply,
                {k: (c.record, c.expires) for k, c in entry.children.items()},
            )
            for eid, entry in node.ms.db.items()
        },
        "nonces": dict(node.ms.nonces),
        "cache": {
            eid: (entry.record, entry.expires, entry.source)
            for eid, entry in node.cache.db.items()
        },
        "timers": (node.timer_count(), node.get_timer()),
        "pending": {
            k: sizes[k]
            for k in (
                "pending_requests",
                "request_nonces",
                "pending_registers",
                "pending_notifies",
                "probes",
            )
        },
    }


# ---------------------------------------------------------------- wire helpers
def sent(net: SimNet, kind: type[Any], *, src: IP | None = None) -> list[Any]:
    """(time, destination, message) of every traced datagram decoding to kind
    (ECMs are unwrapped to their inner message)."""
    out = []
    for t, s, d, data in net.trace:
        if src is not None and s[0] != src:
            continue
        try:
            msg: object = decode(data)
        except DecodeError:  # data-port packets and the like
            continue
        if isinstance(msg, EncapsulatedControlMessage):
            msg = msg.message
        if isinstance(msg, kind):
            out.append((t, d, msg))
    return out


def out(node: Node) -> list[tuple[object, tuple[object, int]]]:
    return [(decode(d), dest) for d, dest in node.datagrams_to_send()]


def register_msg(
    records: tuple[MapRecord, ...] | MapRecord,
    *,
    nonce: int = 1,
    key: bytes | None = KEY,
    alg: int = 2,
    **kw: Any,
) -> bytes:
    """An encoded Map-Register, signed with key unless key is None."""
    if isinstance(records, MapRecord):
        records = (records,)
    kw.setdefault("ttl_timeout", True)
    kw.setdefault("want_map_notify", True)
    kw.setdefault("xtr_id", 0x1234)
    msg = MapRegister(nonce, records, **kw)
    if key is not None:
        msg = msg.signed(key, alg)
    return msg.encode()


def record(eid: Eid | str, *ips: str, ttl: int = 3, **kw: Any) -> MapRecord:
    e = Eid.prefix(eid) if isinstance(eid, str) else eid
    addr, mask = e.to_wire()
    return MapRecord(addr, mask, locators(*ips), ttl, **kw)


def request_msg(eid: str, *itr_rlocs: Any, nonce: int = 7, **kw: Any) -> MapRequest:
    e = Eid.prefix(eid)
    addr, mask = e.to_wire()
    return MapRequest(nonce, (RequestRecord(addr, mask),), itr_rlocs, **kw)


def replies_to(net: SimNet, ip: IP) -> list[tuple[float, Addr, MapReply]]:
    return [(t, d, m) for t, d, m in sent(net, MapReply) if d[0] == ip]
