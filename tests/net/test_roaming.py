"""Roaming in the shell: the interface watch, the move."""

from __future__ import annotations

import asyncio
import logging
import socket
from ipaddress import IPv4Address, IPv6Address

from decent.net.roaming import AddressWatch, Roamer, rloc_order
from decent.net.udp import NodeShell, Sockets, open_sockets
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from tests.wire.test_netlink import DEL, NEW, ifaddr, nlmsg

IP = IPv4Address | IPv6Address
A = IPv4Address("198.18.42.13")
B = IPv4Address("198.18.42.33")
V6 = IPv6Address("2001:db8::3")


def test_rloc_order_keeps_ours_first_and_puts_the_group_family_first():
    assert rloc_order((A,), (B, A), 4) == (A, B)
    assert rloc_order((A,), (V6, B), 4) == (B, V6)
    assert rloc_order((), (V6, B, B), 4) == (B, V6)
    assert rloc_order((A,), (), 4) == ()


class Watched:
    def __init__(self) -> None:
        self.found: list[IP] = [A]
        self.changes: list[tuple[IP, ...]] = []
        self.dumps = 0

    def dump(self, interface: str) -> list[IP]:
        assert interface == "lo"
        self.dumps += 1
        return list(self.found)


async def test_the_watch_reports_changes_of_its_interface_only():
    loop = asyncio.get_running_loop()
    w = Watched()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    watch = AddressWatch(
        "lo", loop, w.changes.append, current=(A,), version=4, dump=w.dump
    )
    assert watch.start(ours)
    assert (w.dumps, w.changes) == (1, [])  # checked at once; nothing moved
    index = socket.if_nametoindex("lo")
    w.found = [A, B]
    theirs.send(nlmsg(NEW, ifaddr(B, index + 1000)))  # another interface
    watch._on_readable()
    assert (w.dumps, w.changes) == (1, [])
    theirs.send(nlmsg(NEW, ifaddr(B, index)))
    watch._on_readable()
    assert w.changes == [(A, B)]
    w.found = [B]
    theirs.send(nlmsg(DEL, ifaddr(A, index)))
    theirs.send(b"\xff" * 3)  # junk: counted, and a reason to look again
    watch._on_readable()
    assert w.changes == [(A, B), (B,)]
    assert watch.errors == {"netlink.malformed": 1}
    w.found = []
    theirs.send(b"junk!!")
    watch._on_readable()
    assert w.changes[-1] == ()
    watch._on_readable()  # nothing to read
    watch.close()
    watch.close()
    theirs.close()


async def test_a_watch_of_a_missing_interface_looks_at_any_news():
    loop = asyncio.get_running_loop()
    changes: list[tuple[IP, ...]] = []
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    watch = AddressWatch(
        "no-such-if0", loop, changes.append, current=(A,), version=4, dump=lambda _: []
    )
    watch.start(ours)
    assert changes == [()]
    theirs.close()  # a read error: counted, then a dump
    ours.shutdown(socket.SHUT_RDWR)
    watch._on_readable()
    watch.close()


async def test_a_read_error_is_counted_and_makes_the_watch_look():
    loop = asyncio.get_running_loop()
    w = Watched()

    class Failing:
        def __init__(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

        def fileno(self) -> int:
            return self.sock.fileno()

        def setblocking(self, flag: bool) -> None:
            pass

        def recv(self, n: int) -> bytes:
            raise OSError(105, "No buffer space available")

        def close(self) -> None:
            self.sock.close()

    watch = AddressWatch("lo", loop, w.changes.append, current=(A,), version=4)
    watch._dump = w.dump
    watch.start(Failing())  # type: ignore[arg-type]
    w.found = [B]
    watch._on_readable()
    assert watch.errors == {"netlink.ENOBUFS": 1}
    assert w.changes == [(B,)]
    watch.close()


async def test_the_real_subscription_starts_or_says_why_not(caplog):
    loop = asyncio.get_running_loop()
    watch = AddressWatch("lo", loop, lambda _: None, current=(A,), version=4)
    with caplog.at_level(logging.WARNING, "decent"):
        started = watch.start()
    assert started or "cannot watch" in caplog.text
    watch.close()


# ---------------------------------------------------------------- the move
HOME = IPv4Address("127.0.0.2")
AWAY = IPv4Address("127.0.0.3")


def _ports() -> tuple[int, int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = tuple(s.getsockname()[1] for s in socks)
    for s in socks:
        s.close()
    return ports[0], ports[1]


async def test_a_move_rebinds_the_sockets_and_moves_the_core(caplog):
    loop = asyncio.get_running_loop()
    control, data = _ports()
    cfg = decent_node_config(
        name="mn",
        rlocs=(HOME,),
        group=IPv4Address("233.252.1.1"),
        key=b"k",
        xtr_id=3,
        control_port=control,
        data_port=data,
    )
    node = Node(cfg, nonce=lambda: 7, now=loop.time())
    shell = NodeShell(node, open_sockets(HOME, control, data), loop)
    shell.start()
    opened: list[IP] = []

    def reopen(rloc: IP) -> Sockets:
        opened.append(rloc)
        return open_sockets(rloc, control, data)

    roamer = Roamer(shell, reopen, interface="lo")

    def rlocs() -> tuple[IP, ...]:
        return node.config.rlocs

    with caplog.at_level(logging.WARNING, "decent"):
        roamer.move(())
        assert "lo has no usable address left; staying at 127.0.0.2" in caplog.text
        roamer.move((V6,))
        assert "no usable address of IPv4 left" in caplog.text
    assert node.config.rlocs == (HOME,)
    roamer.move((HOME,))  # back where it was: nothing to do
    assert opened == []
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind((str(AWAY), control))  # the new address is taken (for now)
    with caplog.at_level(logging.WARNING, "decent"):
        roamer.move((AWAY,))
    assert "cannot move to 127.0.0.3 yet" in caplog.text
    assert node.config.rlocs == (HOME,)
    listener.close()
    roamer._again()  # the retry timer's work, without waiting for it
    assert rlocs() == (AWAY,)
    assert shell.sockets.control.getsockname() == (str(AWAY), control)
    assert shell.sockets.data.getsockname() == (str(AWAY), data)
    assert node.counters["tx.map-register"] >= 1
    roamer.move((AWAY, HOME))  # a second address: the sockets stay
    assert opened == [AWAY, AWAY]
    assert rlocs() == (AWAY, HOME)
    roamer.close()
    roamer._wanted = None
    roamer._again()
    shell.close()
