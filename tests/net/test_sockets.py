"""The node's shell owns every RLOC's sockets; the data plane only borrows."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import sys
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from decent.net.roaming import Roamer
from decent.net.tun import SOURCE_PORTS, TunSettings, TunShell
from decent.net.udp import NodeShell, open_sockets
from decent.peer.dataplane import DataPlane
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import Eid

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.x")

R1, R2 = IPv4Address("127.0.0.101"), IPv4Address("127.0.0.102")
#: On no interface here (TEST-NET-1): it cannot be bound.
ABSENT = IPv4Address("192.0.2.101")
GROUP = IPv4Address("233.252.1.1")


def _ports() -> tuple[int, int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = tuple(s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()
    return ports[0], ports[1]


def _node(rlocs: tuple[IPv4Address, ...], control: int, data: int) -> Node:
    return Node(
        decent_node_config(
            name="s1",
            rlocs=rlocs,
            group=GROUP,
            key=b"k",
            xtr_id=1,
            eids=(Eid.prefix("1.1.1.1/32"),),
            control_port=control,
            data_port=data,
        ),
        nonce=itertools.count(1).__next__,
        now=0.0,
    )


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def test_every_rloc_is_read_without_a_data_plane() -> None:
    loop = asyncio.get_running_loop()
    control, data = _ports()
    node = _node((R1, R2), control, data)
    shell = NodeShell(node, open_sockets(R1, control, data), loop)
    shell.start()
    counters = node.counters
    try:
        socks = shell.data_sockets()
        assert [s.getsockname() if s else None for s in socks] == [
            (str(R1), data),
            (str(R2), data),
        ]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.sendto(b"junk", (str(R2), control))
            await _until(lambda: counters["drop.decode-error"] == 1)
            peer.sendto(b"junk", (str(R2), data))
            await _until(lambda: counters["drop.decode-error"] == 2)
            # A riding data plane's drain gets the readable socket instead.
            drained: list[socket.socket] = []
            shell.data_drain = drained.append
            peer.sendto(b"junk", (str(R2), data))
            await _until(lambda: bool(drained))
            assert drained[0] is socks[1]
            assert drained[0].recv(100) == b"junk"
    finally:
        shell.close()
    assert all(s is not None and s.fileno() == -1 for s in socks)


async def test_an_rloc_that_cannot_be_bound_is_skipped_and_the_data_plane_marks_it_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    control, data = _ports()
    node = _node((R1, ABSENT), control, data)
    shell = NodeShell(node, open_sockets(R1, control, data), loop)
    with caplog.at_level(logging.WARNING, "decent"):
        shell.start()
    assert f"RLOC {ABSENT} skipped: cannot bind {ABSENT}:{control}" in caplog.text
    assert shell.data_sockets() == [shell.sockets.data, None]
    dp = DataPlane(node, nonce=lambda: 1)
    tun = TunShell(dp, TunSettings(), loop, owner=shell, flush_control=shell.flush)
    try:
        tun._open_sockets()  # what start() borrows and opens
        assert tun._rlocs[0].data is shell.sockets.data
        assert len(tun._rlocs[0].pool) == SOURCE_PORTS
        assert (tun._rlocs[1].data, tun._rlocs[1].pool) == (None, [])
        assert dp.rloc_up(0)
        assert not dp.rloc_up(1)
        tun.check_rlocs()  # its link state cannot bring it back
        assert not dp.rloc_up(1)
    finally:
        tun.close()
        shell.close()


async def test_a_roaming_node_with_a_data_plane_moves_every_socket() -> None:
    loop = asyncio.get_running_loop()
    control, data = _ports()
    node = _node((R1,), control, data)
    shell = NodeShell(node, open_sockets(R1, control, data), loop)
    dp = DataPlane(node, nonce=lambda: 1)
    tun = TunShell(dp, TunSettings(), loop, owner=shell, flush_control=shell.flush)
    tun._schedule_route_sync = lambda: None  # type: ignore[method-assign]
    shell.ride(dp)
    shell.after_flush = tun.flush_packets
    shell.start()
    tun._open_sockets()
    shell.data_drain = tun._drain_data  # as start() sets it
    roamer = Roamer(
        shell,
        lambda rloc: open_sockets(rloc, control, data),
        interface="lo",
        tun=lambda: tun,
    )
    try:
        roamer.move((R2, R1))
        assert node.config.rlocs == (R2, R1)
        lent = shell.data_sockets()
        assert [s.getsockname() if s else None for s in lent] == [
            (str(R2), data),
            (str(R1), data),
        ]
        assert [r.data for r in tun._rlocs] == lent
        assert [len(r.pool) for r in tun._rlocs] == [SOURCE_PORTS] * 2
        assert shell.data_drain == tun._drain_data
        # A new second RLOC whose port is taken: skipped, and down in the
        # new RLOC set (the data plane heard of it before borrowing).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.103", data))
            roamer.move((R2, IPv4Address("127.0.0.103")))
        assert node.config.rlocs == (R2, IPv4Address("127.0.0.103"))
        assert shell.data_sockets()[1] is None
        assert (dp.rloc_up(0), dp.rloc_up(1)) == (True, False)
    finally:
        roamer.close()
        tun.close()
        shell.close()
    assert shell.data_drain is None
