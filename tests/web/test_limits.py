"""The web server's limits over real sockets on loopback: connection cap,
request-head, body and idle timeouts, live-client cap and shared models, the
Host check, and a control plane that keeps answering while the page is under
attack. Timeouts are made small here; the tests wait for conditions, with
generous bounds, and never assert how long anything took."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from decent.net.status import NodeStatus
from decent.net.udp import NodeShell, open_sockets
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.web.app import LIVE, make_app
from decent.web.limits import LimitedSite, WebLimits, split_host, start_site
from decent.wire import Eid, MapReply, MapRequest, RequestRecord, decode
from tests.web.test_app import SimStatus, _status

#: Long enough never to fire in a test that is not about it.
NEVER = 600.0
#: The most any awaited condition may take before the test fails.
BOUND = 20.0


async def until(check: Callable[[], bool], within: float = BOUND) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@asynccontextmanager
async def serve(
    app: web.Application, limits: WebLimits | None = None
) -> AsyncIterator[LimitedSite]:
    """The app behind start_site on an ephemeral loopback port, as the node
    runs it."""
    runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    try:
        yield await start_site(runner, "127.0.0.1", 0, limits)
    finally:
        await runner.cleanup()


async def request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    host: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes]:
    """One request on its own connection: the status code and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines += ["Content-Length: 0", "Connection: close", "", ""]
    try:
        writer.write("\r\n".join(lines).encode())
        raw = await asyncio.wait_for(reader.read(), BOUND)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing the connection (EOF or reset)."""
    got = b""
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(65536):
            got += chunk
    return got


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def test_limits_are_checked_and_frozen() -> None:
    for bad in (
        {"max_connections": 0},
        {"max_live_clients": 0},
        {"header_timeout": 0},
        {"idle_timeout": -1.0},
        {"request_timeout": float("nan")},
        {"allowed_hosts": ("node:8080",)},
        {"allowed_hosts": ("",)},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            WebLimits(**bad)
    hosts = ["node.example.net"]
    limits = WebLimits(allowed_hosts=hosts)  # type: ignore[arg-type]
    hosts.append("evil.example")
    assert limits.allowed_hosts == ("node.example.net",)


# ---------------------------------------------------------------- connections
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc fds")
async def test_connections_over_the_limit_are_closed_at_once() -> None:
    _, status = _status()
    limits = WebLimits(max_connections=8, header_timeout=NEVER)
    async with serve(make_app(status), limits) as site:
        held: list[asyncio.StreamWriter] = []
        for _ in range(8):
            held.append((await asyncio.open_connection("127.0.0.1", site.port))[1])
        await until(lambda: site.connections == 8)
        before = fd_count()
        extras = 200
        answers = []
        for _ in range(extras):
            reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
            answers.append(await asyncio.wait_for(closed_by_server(reader), BOUND))
            await close_all([writer])
        assert site.connections == 8
        assert site.refused == extras
        assert all(a.startswith(b"HTTP/1.1 503 ") for a in answers), answers[0]
        assert b"Retry-After: " in answers[0]
        # Without the cap the server would hold 200 more descriptors.
        assert fd_count() <= before + 8
        # Many at once, too: refused as they come, none piling up.
        flood = [
            await asyncio.open_connection("127.0.0.1", site.port) for _ in range(extras)
        ]
        for reader, _ in flood:
            await asyncio.wait_for(closed_by_server(reader), BOUND)
        assert fd_count() <= before + extras + 8
        await close_all([w for _, w in flood])
        assert site.connections == 8
        # (Read without writing: a request racing the close could be reset.)
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        answer = await asyncio.wait_for(closed_by_server(reader), BOUND)
        await close_all([writer])
        assert answer.startswith(b"HTTP/1.1 503 ")
        await close_all(held)
        await until(lambda: site.connections == 0)
        assert (await request(site.port, "/healthz"))[0] == 200


async def test_a_slow_request_head_is_cut_off() -> None:
    """A slowloris client trickles header lines; each byte would restart a
    per-read timer, but the head has one budget from the first byte."""
    _, status = _status()
    limits = WebLimits(header_timeout=0.3, idle_timeout=NEVER, request_timeout=NEVER)
    async with serve(make_app(status), limits) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for i in itertools.count():
                    writer.write(b"X-Slow-%d: 1\r\n" % i)
                    await writer.drain()
                    await asyncio.sleep(0.02)

        dripping = asyncio.create_task(trickle())
        try:
            assert await asyncio.wait_for(closed_by_server(reader), BOUND) == b""
        finally:
            dripping.cancel()
            await close_all([writer])
        assert site.timed_out == 1
        await until(lambda: site.connections == 0)
        # A client sending its head at once is served as ever.
        assert (await request(site.port, "/healthz"))[0] == 200


async def test_a_connection_that_never_sends_a_request_is_cut_off() -> None:
    _, status = _status()
    limits = WebLimits(header_timeout=0.3, idle_timeout=NEVER)
    async with serve(make_app(status), limits) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        try:
            assert await asyncio.wait_for(closed_by_server(reader), BOUND) == b""
        finally:
            await close_all([writer])
        assert site.timed_out == 1


async def test_an_idle_keep_alive_connection_is_closed() -> None:
    _, status = _status()
    limits = WebLimits(header_timeout=NEVER, idle_timeout=0.3)
    async with serve(make_app(status), limits) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        try:
            for _ in range(3):  # keep-alive works while the client is busy
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
                assert head.startswith(b"HTTP/1.1 200 ")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await asyncio.wait_for(reader.readexactly(length), BOUND)
            assert await asyncio.wait_for(closed_by_server(reader), BOUND) == b""
        finally:
            await close_all([writer])
        assert site.timed_out == 1


async def test_a_slow_request_body_is_cut_off() -> None:
    _, status = _status()
    limits = WebLimits(header_timeout=NEVER, idle_timeout=NEVER, request_timeout=0.3)
    async with serve(make_app(status), limits) as site:
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        try:
            writer.write(
                b"POST /map-cache/clear HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 1000\r\n\r\ntoken=a"
            )
            assert await asyncio.wait_for(closed_by_server(reader), BOUND) == b""
        finally:
            await close_all([writer])
        assert site.timed_out == 1
    assert len(status.node.cache) == 1


# ---------------------------------------------------------------- live
class Subscriber:
    """One /events client over aiohttp, reading the stream's events."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self.events = 0

    async def next(self) -> bytes:
        data = b""
        while True:
            line = await asyncio.wait_for(self.resp.content.readline(), BOUND)
            assert line, "the stream ended"
            if line.startswith(b"data: "):
                data += line[6:]
            elif line == b"\n" and data:
                self.events += 1
                return data


async def subscribe(
    session: aiohttp.ClientSession, port: int, view: str = "sites"
) -> Subscriber:
    url = f"http://127.0.0.1:{port}/events"
    resp = await session.get(url, params={"view": view})
    assert resp.status == 200, await resp.text()
    return Subscriber(resp)


async def test_live_clients_over_the_limit_get_503_the_rest_keep_theirs() -> None:
    _, status = _status()
    # Every timeout far shorter than the events read below span: a stream
    # is exempt from them.
    limits = WebLimits(
        max_live_clients=3, header_timeout=0.2, idle_timeout=0.2, request_timeout=0.2
    )
    app = make_app(status, live_interval=0.01, live_refresh=0.05, limits=limits)
    connector = aiohttp.TCPConnector(limit=0)
    async with serve(app) as site, aiohttp.ClientSession(connector=connector) as s:
        subs = [await subscribe(s, site.port) for _ in range(3)]
        for sub in subs:
            await sub.next()
        url = f"http://127.0.0.1:{site.port}/events"
        async with s.get(url, params={"view": "peers"}) as refused:
            assert refused.status == 503
            assert int(refused.headers["Retry-After"]) > 0
            assert "too many live clients" in await refused.text()
        # Ten refreshes a subscriber: the streams outlive every timeout.
        for sub in subs:
            for _ in range(10):
                await sub.next()
        subs.pop().resp.close()
        await until(lambda: app[LIVE].subscribers == 2)
        subs.append(await subscribe(s, site.port, "peers"))
        await subs[-1].next()
        for sub in subs:
            sub.resp.close()
        await until(lambda: app[LIVE].subscribers == 0)
        assert app[LIVE].feeds == 0


class _CountingStatus(SimStatus):
    """n1's status, counting model builds (one sites() call each) and
    letting the test say when the node's state changed."""

    def __init__(self, plain: NodeStatus) -> None:
        super().__init__(
            plain.node,
            plain.clock,
            name=plain.name,
            started=plain.started,
            register_interval=plain.register_interval,
        )
        self.builds = 0
        self.bumps = 0

    def changes(self) -> int:
        return super().changes() + self.bumps

    def sites(self) -> list[dict[str, Any]]:
        self.builds += 1
        return super().sites()


async def test_many_subscribers_share_one_model_build_per_change() -> None:
    _, plain = _status()
    status = _CountingStatus(plain)
    n = 40
    limits = WebLimits(max_live_clients=n)
    # No periodic refresh: every event is pushed by a change.
    app = make_app(status, live_interval=0.01, live_refresh=NEVER, limits=limits)
    connector = aiohttp.TCPConnector(limit=0)
    async with serve(app) as site, aiohttp.ClientSession(connector=connector) as s:
        subs = [await subscribe(s, site.port) for _ in range(n)]
        firsts = {await sub.next() for sub in subs}
        assert len(firsts) == 1
        assert status.builds == 1
        for change in range(1, 4):
            status.bumps += 1
            for sub in subs:
                await sub.next()
            assert status.builds == 1 + change
        assert app[LIVE].feeds == 1
        for sub in subs:
            sub.resp.close()


# ---------------------------------------------------------------- Host
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", True)),
        ("127.0.0.1", ("127.0.0.1", True)),
        ("[::1]:8080", ("::1", True)),
        ("[::1]", ("::1", True)),
        ("[::1]:x", ("[::1]:x", False)),
        ("[nope]:80", ("[nope]:80", False)),
        ("Node.Example.:80", ("node.example", False)),
        ("127.0.0.1.evil.example", ("127.0.0.1.evil.example", False)),
        ("::1", ("::1", False)),  # unbracketed: not a valid Host
        ("localhost", ("localhost", False)),
    ],
)
def test_host_header_split(header: str, expected: tuple[str, bool]) -> None:
    assert split_host(header) == expected


async def test_only_the_nodes_own_names_are_answered() -> None:
    _, status = _status()
    limits = WebLimits(allowed_hosts=("node.example.net",))
    async with serve(make_app(status, limits=limits)) as site:
        port = site.port
        for evil in ("evil.example", f"evil.example:{port}", "EVIL.example.", "::1"):
            code, body = await request(port, "/api/node", host=evil)
            assert code == 421, body
            assert b"not a name of this node" in body
            code, _ = await request(
                port, "/api/map-cache/clear", method="POST", host=evil
            )
            assert code == 421
            assert (await request(port, "/", host=evil))[0] == 421
        assert len(status.node.cache) == 1
        for ours in (
            f"127.0.0.1:{port}",
            f"[::1]:{port}",
            "192.0.2.1",  # any IP literal: it cannot be rebound
            f"localhost:{port}",
            "app.localhost",
            "node.example.net",
            f"Node.Example.Net.:{port}",
            socket.gethostname(),
        ):
            code, body = await request(port, "/api/node", host=ours)
            assert code == 200, (ours, body)
        # The clear-cache guard still compares Origin with the Host it got.
        code, _ = await request(
            port,
            "/api/map-cache/clear",
            method="POST",
            host=f"localhost:{port}",
            headers={"Origin": "http://evil.example"},
        )
        assert code == 403
        code, body = await request(
            port,
            "/api/map-cache/clear",
            method="POST",
            host=f"localhost:{port}",
            headers={"Origin": f"http://localhost:{port}"},
        )
        assert (code, body) == (200, b'{"cleared": 1}')


# ---------------------------------------------------------------- priority
def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class _Asker(asyncio.DatagramProtocol):
    """An ITR's control socket: Map-Replies by nonce."""

    def __init__(self) -> None:
        self.replies: dict[int, MapReply] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        msg = decode(data)
        if isinstance(msg, MapReply):
            self.replies[msg.nonce] = msg


@pytest.mark.skipif(sys.platform != "linux", reason="binds 127.0.0.x")
async def test_the_control_plane_answers_while_the_page_is_under_load() -> None:
    """A real node answers Map-Requests on loopback while, in the same loop,
    200 live clients stream and 300 slowloris clients keep reconnecting."""
    loop = asyncio.get_running_loop()
    rloc, eid = IPv4Address("127.0.0.81"), Eid.prefix("1.1.1.1/32")
    control, data = _free_udp_port(str(rloc)), _free_udp_port(str(rloc))
    node = Node(
        decent_node_config(
            name="w1",
            rlocs=(rloc,),
            group=IPv4Address("233.252.1.1"),
            key=b"k",
            xtr_id=1,
            eids=(eid,),
            control_port=control,
            data_port=data,
        ),
        nonce=itertools.count(1).__next__,
        now=loop.time(),
    )
    shell = NodeShell(node, open_sockets(rloc, control, data), loop)
    status = NodeStatus(
        node, loop.time, name="w1", started=loop.time(), register_interval=60.0
    )
    limits = WebLimits(
        max_connections=1000,
        max_live_clients=200,
        header_timeout=0.5,
        idle_timeout=5.0,
        request_timeout=5.0,
    )
    app = make_app(status, live_interval=0.02, live_refresh=0.05, limits=limits)
    transport, asker = await loop.create_datagram_endpoint(
        _Asker, local_addr=("127.0.0.1", 0)
    )
    nonces = itertools.count(1)

    async def lookup() -> MapReply:
        nonce = next(nonces)
        addr, mask = eid.to_wire()
        req = MapRequest(
            nonce, (RequestRecord(addr, mask),), (IPv4Address("127.0.0.1"),)
        )
        transport.sendto(req.encode(), (str(rloc), control))
        await until(lambda: nonce in asker.replies)
        return asker.replies[nonce]

    async def registered() -> None:
        """Until the node has registered its own EID with itself."""
        for _ in range(400):
            if (await lookup()).records[0].locators:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the node never registered its EID")

    received = [0] * 200
    writers: list[asyncio.StreamWriter] = []

    async def live(i: int, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        writer.write(b"GET /events?view=overview HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        while chunk := await reader.read(65536):
            received[i] += len(chunk)

    async def slowloris(port: int) -> None:
        while True:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
            with contextlib.suppress(ConnectionError):
                writer.write(b"GET / HTTP/1.1\r\n")
                while not reader.at_eof():
                    writer.write(b"X-a: b\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.1)
            writers.remove(writer)
            writer.close()

    load: list[asyncio.Task[None]] = []
    shell.start()
    try:
        async with serve(app) as site:
            await registered()
            load += [asyncio.create_task(live(i, site.port)) for i in range(200)]
            load += [asyncio.create_task(slowloris(site.port)) for _ in range(300)]
            await until(lambda: min(received) > 0 and site.timed_out >= 300)
            for _ in range(50):
                reply = await lookup()
                assert reply.records[0].locators[0].address == rloc
            assert app[LIVE].subscribers == 200
            assert site.connections <= limits.max_connections
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
            await close_all(writers)
    finally:
        for task in load:
            task.cancel()
        transport.close()
        shell.close()
