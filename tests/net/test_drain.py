"""The drain loops over real fds: at most DRAIN packets a wake-up, none lost.

The TUN is stood in for by a SOCK_SEQPACKET socketpair (one record per read,
as a TUN gives one packet per read); every UDP socket is real, on loopback.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import pytest

from decent.net import tun as tun_module
from decent.net import udp as udp_module
from decent.net.tun import SOURCE_PORTS, TunSettings, TunShell
from decent.net.udp import NodeShell, open_sockets
from decent.peer.dataplane import DataPlane
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import DataHeader, Eid, UdpPacket, decapsulate, encapsulate
from tests.net.fakes import Lender
from tests.peer.conftest import Traced
from tests.peer.simnet import SimNet

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="127.0.0.x, SO_MARK")

G = IPv4Address("233.252.1.1")
R1, R2 = IPv4Address("127.0.0.63"), IPv4Address("127.0.0.64")
E1, E2 = IPv4Address("1.1.1.1"), IPv4Address("2.2.2.2")
#: More than two full batches and a part: three wake-ups at least.
COUNT = 2 * tun_module.DRAIN + 7


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _counting(calls: list[int], fn: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any) -> Any:
        calls[0] += 1
        return fn(*args)

    return counted


async def _run_until(done: Callable[[], bool], limit: int = 10_000) -> None:
    """Let the loop run one iteration at a time until done() (no clock)."""
    for _ in range(limit):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("the drain never caught up")


def _inner(sport: int, i: int) -> bytes:
    return UdpPacket(E1, E2, sport, 9, i.to_bytes(4, "big") + bytes(28)).encode()


async def test_the_node_shell_drains_at_most_drain_datagrams_a_wakeup() -> None:
    loop = asyncio.get_running_loop()
    control, data = _free_udp_port(str(R1)), _free_udp_port(str(R1))
    node = Node(
        decent_node_config(
            name="d1",
            rlocs=(R1,),
            group=G,
            key=b"k",
            xtr_id=1,
            eids=(Eid.prefix(f"{E1}/32"),),
            seeds=(),
            control_port=control,
            data_port=data,
        ),
        nonce=itertools.count(1).__next__,
        now=loop.time(),
    )
    shell = NodeShell(node, open_sockets(R1, control, data), loop)
    handled = [0]
    node.receive_data_packet = _counting(  # type: ignore[method-assign]
        handled, node.receive_data_packet
    )
    batches: list[int] = []
    tasks: set[int] = set()

    def after_flush() -> None:
        tasks.add(len(asyncio.all_tasks()))
        if handled[0] != sum(batches):
            batches.append(handled[0] - sum(batches))

    shell.after_flush = after_flush
    shell.start()
    tasks.clear()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind((str(R1), 0))
        for i in range(COUNT):
            peer.sendto(b"junk%d" % i, (str(R1), data))
        try:
            await _run_until(lambda: handled[0] == COUNT)
        finally:
            shell.close()
    assert batches[0] == udp_module.DRAIN
    assert max(batches) <= udp_module.DRAIN
    assert sum(batches) == COUNT
    assert len(batches) >= 3
    # Each junk datagram was dropped and counted, none went missing.
    assert node.counters["drop.decode-error"] == COUNT
    assert tasks == {len(asyncio.all_tasks())}  # no task per datagram


@dataclass
class Xtr:
    """n1's TunShell, with the TUN stood in for and n2 reachable on R2."""

    shell: TunShell
    dp: DataPlane
    #: The far end of the stand-in TUN: what the test writes and reads.
    tun: socket.socket
    #: A socket on n2's data port: where n1's ITR sends.
    far: socket.socket
    data_port: int
    encaps: list[int]
    decaps: list[int]
    batches: list[int]


@contextmanager
def xtr(loop: asyncio.AbstractEventLoop) -> Iterator[Xtr]:
    data = _free_udp_port(str(R1))
    net = SimNet(seed=5, now=loop.time())
    nodes = []
    counter = itertools.count(1)
    for i, (rloc, eid) in enumerate(((R1, E1), (R2, E2)), start=1):
        cfg = decent_node_config(
            name=f"n{i}",
            rlocs=(rloc,),
            group=G,
            key=b"k",
            xtr_id=i,
            eids=(Eid.prefix(f"{eid}/32"),),
            seeds=(R1,) if i == 2 else (),
            data_port=data,
            resolve_in_process=True,
        )
        node = Traced(cfg, nonce=lambda: next(counter), now=net.now, keep=False)
        net.add(node, (rloc, 4342), (rloc, data))
        nodes.append(node)
    dp = nodes[0].ride(DataPlane(nodes[0], nonce=lambda: 0x123456))
    net.advance(5)
    # Resolve E2 once (in process: n1 is its own Map-Resolver), so every
    # packet below is a map-cache hit.
    dp.send_packet(_inner(1, 0), net.now)
    net.flush()
    assert len(dp.packets_to_send()) == 1
    tun_near, tun_far = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (tun_near, tun_far):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setblocking(False)
    own_data = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    own_data.bind((str(R1), data))
    own_data.setblocking(False)
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind((str(R2), data))
    far.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    far.setblocking(False)
    encaps, decaps, batches = [0], [0], list[int]()
    shell: TunShell

    def flush_control() -> None:
        done = encaps[0] + decaps[0]
        if done != sum(batches):
            batches.append(done - sum(batches))
        shell.flush_packets()

    shell = TunShell(
        dp,
        TunSettings(),
        loop,
        owner=Lender([own_data]),
        flush_control=flush_control,
    )
    dp.encap = _counting(encaps, dp.encap)  # type: ignore[method-assign]
    dp.decap = _counting(decaps, dp.decap)  # type: ignore[method-assign]
    shell._open_sockets()  # the source-port pool, as start() opens it
    shell._fd = os.dup(tun_near.fileno())  # close() closes it, as a TUN's
    # Routes are in sync already: this test must not run `ip route` on the
    # host (there is no TUN to route to).
    shell._routes = dict.fromkeys(shell.wanted_routes(), "tun")
    shell._routes_version = nodes[0].registry_version
    try:
        yield Xtr(shell, dp, tun_far, far, data, encaps, decaps, batches)
        assert shell._route_task is None
    finally:
        shell.close()
        for s in (tun_near, tun_far, own_data, far):
            s.close()


def _receive_all(sock: socket.socket) -> list[tuple[bytes, int]]:
    out: list[tuple[bytes, int]] = []
    while True:
        try:
            payload, (_, port) = sock.recvfrom(65535)
        except BlockingIOError:
            return out
        out.append((payload, port))


async def test_the_tun_drain_takes_at_most_drain_packets_a_wakeup() -> None:
    loop = asyncio.get_running_loop()
    with xtr(loop) as x:
        sent = [_inner(1000 + i % 40, i) for i in range(COUNT)]
        for packet in sent:
            x.tun.send(packet)
        x.shell._add_reader(x.shell._fd, x.shell._drain_tun)
        tasks = len(asyncio.all_tasks())
        await _run_until(lambda: x.encaps[0] == COUNT)
        assert len(asyncio.all_tasks()) == tasks  # no task per packet
        assert x.batches[0] == tun_module.DRAIN
        assert max(x.batches) <= tun_module.DRAIN
        assert sum(x.batches) == COUNT
        assert len(x.batches) >= 3
        got = _receive_all(x.far)
        pool = {s.getsockname()[1] for s in x.shell._rlocs[0].pool}
    # Every packet left, encapsulated, in the order read.
    assert [decapsulate(p)[1] for p, _ in got] == sent
    # One inner flow always leaves from the same source port (RFC 9300
    # section 12: the port is a hash of the flow), and flows spread out.
    ports_of: dict[int, set[int]] = {}
    for (_, port), packet in zip(got, sent, strict=True):
        ports_of.setdefault(int.from_bytes(packet[20:22], "big"), set()).add(port)
    assert all(len(ports) == 1 for ports in ports_of.values()), ports_of
    assert len(pool) == SOURCE_PORTS
    used = set().union(*ports_of.values())
    assert used <= pool
    assert len(used) > SOURCE_PORTS // 2


async def test_the_data_socket_drain_takes_at_most_drain_packets_a_wakeup() -> None:
    loop = asyncio.get_running_loop()
    with xtr(loop) as x:
        # n2's ITR sends to n1's EID; n1's ETR writes each inner packet out.
        sent = [
            UdpPacket(E2, E1, 7, 9, i.to_bytes(4, "big")).encode() for i in range(COUNT)
        ]
        own = x.shell._rlocs[0].data
        assert own is not None
        x.shell._add_reader(own.fileno(), x.shell._drain_data, own)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as itr:
            itr.bind((str(R2), 0))
            for packet in sent:
                itr.sendto(
                    encapsulate(DataHeader(nonce=1, lsbs=1), packet),
                    (str(R1), x.data_port),
                )
            tasks = len(asyncio.all_tasks())
            await _run_until(lambda: x.decaps[0] == COUNT)
            assert len(asyncio.all_tasks()) == tasks
        assert x.batches[0] == tun_module.DRAIN
        assert max(x.batches) <= tun_module.DRAIN
        assert sum(x.batches) == COUNT
        assert len(x.batches) >= 3
        written = []
        while True:
            try:
                written.append(x.tun.recv(65535))
            except BlockingIOError:
                break
        assert written == sent
        assert Counter(x.dp.stats())["decapsulated-packets"] == COUNT
