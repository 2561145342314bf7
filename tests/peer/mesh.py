"""The data-plane mesh: three push-mode members with a data plane each, on a SimNet."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from decent.peer.config import TrustConfig
from decent.peer.dataplane import DataPlane, DataPlaneConfig, Route
from decent.peer.mapping.push_config import decent_node_config
from decent.wire import Eid, UdpPacket
from decent.wire.trust import node_xtr_id, public_key_of
from tests.peer.conftest import DECENT_IPS, GROUP, KEY, N1, Traced
from tests.peer.simnet import SimNet

#: n2's second RLOC (mesh(two_rlocs=True)).
N2B = IPv4Address("198.18.42.22")
#: An address that is no member.
STRANGER = IPv4Address("198.18.42.99")
#: n2's IPv4 EID (eid4(2)).
TWO = Eid.prefix("2.2.2.2/32")
#: mesh(extra=...) that makes n2 a mobile node (short TTLs).
MOBILE_N2 = {1: {"mobile": True}}


def eid4(i: int) -> IPv4Address:
    return IPv4Address(f"{i}.{i}.{i}.{i}")


def eid6(i: int) -> IPv6Address:
    return IPv6Address(f"fd00::{i}")


def udp(src: object, dst: object, sport: int = 1000, dport: int = 2000, n: int = 32):
    s, d = ip_address(str(src)), ip_address(str(dst))
    return UdpPacket(s, d, sport, dport, bytes(n)).encode()


@dataclass
class Mesh:
    net: SimNet
    nodes: list[Traced]
    dps: list[DataPlane]

    def converge(self, seconds: float = 5.0) -> None:
        self.net.advance(seconds)

    def send(self, i: int, packet: bytes) -> list[tuple[bytes, Route]]:
        """Node i's ITR gets packet from its TUN; what it sends."""
        dp = self.dps[i]
        dp.send_packet(packet, self.net.now)
        self.net.flush()
        return dp.packets_to_send()

    def carry(self, out: list[tuple[bytes, Route]], src: IPv4Address) -> list[bytes]:
        """Deliver encapsulated packets to whichever node owns the RLOC, as
        its data socket would; returns what those nodes write to their TUN."""
        written = []
        for payload, ((host, port), _, flow) in out:
            dst = ip_address(host)
            for node, dp in zip(self.nodes, self.dps, strict=True):
                if dst in node.config.rlocs:
                    node.receive_datagram(
                        payload, (src, 49152 + flow % 16), self.net.now, (dst, port)
                    )
                    written += dp.packets_to_tun()
        return written


def mesh(
    *,
    probe_interval: float | None = None,
    two_rlocs: bool = False,
    second_rloc: IPv4Address = N2B,
    iid: int = 0,
    dp: dict[str, Any] | None = None,
    extra: dict[int, dict[str, Any]] | None = None,
    identities: Sequence[TrustConfig] | None = None,
    **node_kw: Any,
) -> Mesh:
    """Three members with a data plane each; `extra[i]` adds config keywords
    for node i (0-based) only, or overrides those given to all. With
    `identities`, node i is identified by identities[i] (its certificate must
    grant eid4(i + 1) and eid6(i + 1)) and its xTR-ID is that key's."""
    net = SimNet(seed=3, record=True)
    counter = itertools.count(1)
    nodes, dps = [], []
    for i, ip in enumerate(DECENT_IPS, start=1):
        rlocs = (ip, second_rloc) if two_rlocs and i == 2 else (ip,)
        identity: dict[str, Any] = {"xtr_id": i}
        if identities is not None:
            trust = identities[i - 1]
            xtr_id = node_xtr_id(public_key_of(trust.node_private_key))
            identity = {"xtr_id": xtr_id, "trust": trust}
        cfg = decent_node_config(
            name=f"n{i}",
            rlocs=rlocs,
            group=GROUP,
            key=KEY,
            eids=(Eid.prefix(f"{eid4(i)}/32", iid), Eid.prefix(f"{eid6(i)}/128", iid)),
            seeds=(N1,),
            iid=iid,
            probe_interval=probe_interval,
            resolve_in_process=True,
            **{**identity, **node_kw, **(extra or {}).get(i - 1, {})},
        )
        node = Traced(cfg, nonce=lambda: next(counter))
        addrs = [(r, p) for r in rlocs for p in (4342, 4341)]
        net.add(node, *addrs, source=addrs[0])
        nodes.append(node)
        config = DataPlaneConfig(**(dp or {}))
        dps.append(node.ride(DataPlane(node, config, nonce=lambda: 0xABCDEF)))
    m = Mesh(net, nodes, dps)
    m.converge()
    return m
