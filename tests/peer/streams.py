"""Simulated TCP for reliable-transport sessions: pipes between nodes on a SimNet."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from decent.peer.mapping.push_config import decent_node_config
from decent.wire import Eid, IPAddress
from tests.peer.conftest import DECENT_IPS, GROUP, KEY, N1, Traced
from tests.peer.simnet import SimNet


@dataclass
class Pipe:
    """One TCP connection: (node, session id) at each end."""

    client: Traced
    client_sid: int
    server: Traced
    server_sid: int


@dataclass
class Streams:
    """A SimNet whose nodes' sessions are connected by lossless in-order
    pipes; bytes move between `step`s of the virtual clock."""

    net: SimNet
    nodes: list[Traced]
    pipes: list[Pipe] = field(default_factory=list)
    #: Peers that refuse TCP (no listener), by address.
    unreachable: set[IPAddress] = field(default_factory=set)
    #: Bytes carried each way, for the tests' accounting.
    carried: int = 0

    def owner(self, ip: IPAddress) -> Traced | None:
        return next((n for n in self.nodes if ip in n.config.rlocs), None)

    def pump(self) -> None:
        """Connect what the nodes asked for; move bytes until quiet."""
        now = self.net.now
        for _ in range(1000):
            moved = False
            for node in self.nodes:
                for sid, peer in node.reliable.take_connects():
                    moved = True
                    server = self.owner(peer)
                    if server is None or peer in self.unreachable:
                        node.reliable.closed(sid, "connect-failed", now)
                        continue
                    theirs = server.reliable.accept(
                        (node.config.rlocs[0], 40000 + sid), now
                    )
                    if theirs is None:
                        node.reliable.closed(sid, "reset", now)
                        continue
                    node.reliable.connected(sid, now)
                    self.pipes.append(Pipe(node, sid, server, theirs))
            for pipe in list(self.pipes):
                moved |= self._move(pipe, now)
            self.net.flush()
            for node in self.nodes:
                node._collect(now)  # as the shell's flush() reports events
            if not moved:
                return
        raise AssertionError("streams did not go quiet")

    def _move(self, pipe: Pipe, now: float) -> bool:
        moved = False
        ends = (
            (pipe.client, pipe.client_sid, pipe.server, pipe.server_sid),
            (pipe.server, pipe.server_sid, pipe.client, pipe.client_sid),
        )
        for src, sid, dst, dsid in ends:
            if sid not in src.reliable._dirty:
                continue
            src.reliable._dirty.discard(sid)
            data, reason = src.reliable.drain(sid)
            if data:
                moved = True
                self.carried += len(data)
                dst.reliable.receive(dsid, data, now)
            if reason is not None:
                moved = True
                dst.reliable.closed(dsid, "closed-by-peer", now)
                dst.reliable.drain(dsid)
                self.pipes.remove(pipe)
                return True
        return moved

    def cut(self, pipe: Pipe, reason: str = "reset") -> None:
        """Both ends see the connection die (a reset, a link down)."""
        now = self.net.now
        self.pipes.remove(pipe)
        for node, sid in (
            (pipe.client, pipe.client_sid),
            (pipe.server, pipe.server_sid),
        ):
            node.reliable.closed(sid, reason, now)
            node.reliable.drain(sid)
        self.net.flush()

    def run(self, seconds: float, step: float = 0.05) -> None:
        end = self.net.now + seconds
        while self.net.now < end:
            self.pump()
            self.net.run(min(end, self.net.now + step))
        self.pump()

    def pipe(self, client: Traced, server: Traced) -> Pipe:
        return next(p for p in self.pipes if p.client is client and p.server is server)


def reliable_mesh(
    n: int = 2,
    eids: int = 1,
    *,
    extra: dict[int, dict[str, Any]] | None = None,
    **kw: Any,
) -> Streams:
    """n push-mode members with reliable transport on, `eids` IPv4 /32s each
    (10.i.x.y), node 0 the seed."""
    net = SimNet(seed=5, record=True)
    counter = itertools.count(1)
    nodes = []
    for i in range(n):
        ip = DECENT_IPS[i] if i < 3 else IPv4Address(f"198.18.42.{11 + i}")
        prefixes = tuple(
            Eid.prefix(f"10.{i + 1}.{j // 256}.{j % 256}/32") for j in range(eids)
        )
        cfg = decent_node_config(
            name=f"n{i + 1}",
            rlocs=(ip,),
            group=GROUP,
            key=KEY,
            xtr_id=i + 1,
            eids=prefixes,
            seeds=(N1,),
            resolve_in_process=True,
            **{"reliable": True, **kw, **(extra or {}).get(i, {})},
        )
        node = Traced(cfg, nonce=lambda: next(counter))
        net.add(node, (ip, 4342), (ip, 4341), source=(ip, 4342))
        nodes.append(node)
    return Streams(net, nodes)
