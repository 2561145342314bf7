"""Reliable transport over real TCP on loopback, nodes run by run_node."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from decent.wire import Locator, MapRecord, MapRegister
from decent.wire.transport import TransportType, pdu
from tests.net.test_runtime import Lab, lab

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="needs 127.0.0.x loopback"
)

#: In [decent]: sessions on, and a short register period, so that UDP
#: registration going on would show at once.
RELIABLE = "reliable = true\nregister_interval = 2\nreliable_keepalive = 2"


async def sessions(the_lab: Lab, i: int) -> list[dict[str, Any]]:
    node = await the_lab.api(i, "/api/node")
    found: list[dict[str, Any]] = node["reliable"]["sessions"]
    return found


async def counter(the_lab: Lab, i: int, name: str) -> int:
    node = await the_lab.api(i, "/api/node")
    value: int = node["counters"].get(name, 0)
    return value


async def all_up(the_lab: Lab, nodes: tuple[int, ...]) -> bool:
    for i in nodes:
        got = await sessions(the_lab, i)
        if len(got) != 2 * (len(nodes) - 1) or any(s["state"] != "up" for s in got):
            return False
    return True


async def test_members_register_over_tcp_and_udp_registration_stops(
    tmp_path: Path,
) -> None:
    async with lab(tmp_path, "127.0.0.17") as the_lab:
        for i in (1, 2, 3):
            the_lab.start(i, extra=RELIABLE)
        await the_lab.until(lambda: all_up(the_lab, (1, 2, 3)), within=30.0)
        replicated = "tx.replicated-map-register"
        before = [await counter(the_lab, i, replicated) for i in (1, 2, 3)]
        # Five register periods later, no member has replicated a
        # Map-Register to another: the sessions carry them.
        acks = await counter(the_lab, 1, "rx.session-ack")
        start = (await the_lab.api(1, "/api/node"))["uptime_s"]

        async def five_periods() -> bool:
            node = await the_lab.api(1, "/api/node")
            return bool(node["uptime_s"] >= start + 10.0)

        await the_lab.until(five_periods, within=60.0)
        after = [await counter(the_lab, i, replicated) for i in (1, 2, 3)]
        assert after == before
        assert await counter(the_lab, 1, "rx.session-ack") == acks
        eids = {s["eid"] for s in await the_lab.api(3, "/api/sites")}
        assert {"[0]1.1.1.1/32", "[0]2.2.2.2/32"} <= eids


async def test_a_reset_session_falls_back_to_udp_and_comes_back(tmp_path: Path) -> None:
    async with lab(tmp_path, "127.0.0.18") as the_lab:
        for i in (1, 2):
            the_lab.start(i, extra=RELIABLE)
        await the_lab.until(lambda: all_up(the_lab, (1, 2)), within=30.0)
        # Node 2 leaves gracefully: its TTL-0 registrations go over the
        # session, so node 1 drops its EID at once; back, it reconnects.
        await the_lab.stop(2)

        async def gone() -> bool:
            return "[0]2.2.2.2/32" not in await the_lab.eids(1)

        await the_lab.until(gone, within=5.0)
        the_lab.start(2, extra=RELIABLE)
        await the_lab.until(lambda: all_up(the_lab, (1, 2)), within=60.0)
        assert "[0]2.2.2.2/32" in await the_lab.eids(1)


async def test_a_stranger_connecting_to_the_tcp_port_is_refused(tmp_path: Path) -> None:
    async with lab(tmp_path, "127.0.0.19") as the_lab:
        the_lab.start(1, extra=RELIABLE)
        await the_lab.until(lambda: _listening("127.0.0.191"), within=15.0)
        reader, writer = await asyncio.open_connection("127.0.0.191", 4342)
        writer.write(b"\x00\x11\x00\x0c" + bytes(8))
        # Closed at once, with nothing said: no UDP authentication first.
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(100), 10.0) == b""
        writer.close()
        await the_lab.until(
            lambda: _counted(the_lab, 1, "drop.session-not-authenticated"), within=5.0
        )


async def _listening(host: str) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, 4342)
    except OSError:
        return False
    writer.close()
    return True


async def _counted(the_lab: Lab, i: int, name: str) -> bool:
    return await counter(the_lab, i, name) > 0


def _forged_registrations(count: int) -> bytes:
    """Registration PDUs whose Map-Registers fail authentication: each is
    answered with a NACK per record, so the node has a lot to say."""
    records = tuple(
        MapRecord(IPv4Address(f"10.98.{j // 256}.{j % 256}"), 32, (), 3)
        for j in range(200)
    )
    register = MapRegister(1, records, xtr_id=0x98).signed(b"wrong-key", 2).encode()
    return b"".join(
        pdu(TransportType.REGISTRATION, i, register) for i in range(1, count + 1)
    )


async def test_a_peer_that_stops_reading_is_reset_not_buffered(tmp_path: Path) -> None:
    """Flow control on real TCP: a peer that sends but never reads fills its
    socket, then asyncio's buffer (back-pressure), then the node's bounded
    queue, and its session is reset; the node stays up."""
    loop = asyncio.get_running_loop()
    async with lab(tmp_path, "127.0.0.16") as the_lab:
        the_lab.start(1, extra=RELIABLE + "\n[limits]\nsession_write_queue = 65536")
        await the_lab.until(lambda: _listening("127.0.0.161"), within=15.0)
        # Authenticate first, as the draft requires: a UDP Map-Register with
        # the r bit, signed with the group key, from the address we connect from.
        client = "127.0.0.162"
        record = MapRecord(
            IPv4Address("10.99.0.1"), 32, (Locator(IPv4Address(client)),), 3
        )
        register = MapRegister(
            7, (record,), proxy_reply=True, ttl_timeout=True, xtr_id=0x99, reliable=True
        ).signed(b"test-secret", 2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((client, 4342))
            udp.sendto(register.encode(), ("127.0.0.161", 4342))

        async def registered() -> bool:
            return "[0]10.99.0.1/32" in await the_lab.eids(1)

        await the_lab.until(registered, within=10.0)
        tcp = socket.socket()
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        tcp.bind((client, 0))
        tcp.setblocking(False)
        await loop.sock_connect(tcp, ("127.0.0.161", 4342))
        chunk = _forged_registrations(50)
        reset = False
        try:
            for _ in range(400):  # at most ~110 MB: far past any buffer
                await asyncio.wait_for(loop.sock_sendall(tcp, chunk), 30.0)
                if await counter(the_lab, 1, "session.closed.write-queue-full"):
                    break
        except (ConnectionResetError, BrokenPipeError):
            reset = True
        finally:
            tcp.close()
        await the_lab.until(
            lambda: _counted(the_lab, 1, "session.closed.write-queue-full"),
            within=30.0,
        )
        assert reset or await counter(the_lab, 1, "session.closed.write-queue-full")
        health = await the_lab.api(1, "/healthz")
        assert health["ok"] is True
