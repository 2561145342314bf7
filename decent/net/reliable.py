"""The reliable-transport sessions' TCP connections: listen, connect, move bytes.

The node's ReliableRole (decent.peer.transport) decides everything; this
shell only listens on each RLOC's control port (TCP 4342), opens the
connections the node asks for, feeds it what arrives and writes what it
queued. TCP keepalive (with TCP_USER_TIMEOUT for unacknowledged data)
notices a peer that vanished without a reset. A connection whose writes
back up (asyncio's pause_writing) is not drained until it resumes, so the
node's bounded queue, not this process, absorbs a peer that stops reading.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Coroutine
from ipaddress import ip_address
from typing import Any, Final

from decent.net.udp import NodeShell
from decent.peer.events import Event, RlocsChanged
from decent.wire import IPAddress

log = logging.getLogger("decent.reliable")

#: Seconds a connection attempt may take.
CONNECT_TIMEOUT: Final = 10.0
#: Reasons the node gives for ending a session that call for a reset
#: rather than an orderly close (the peer is not reading, or hostile).
_ABORT: Final = frozenset({"write-queue-full", "flood", "gone"})


class _Connection(asyncio.Protocol):
    """One session's TCP connection, either direction."""

    def __init__(self, shell: ReliableShell, sid: int | None) -> None:
        self.shell = shell
        self.sid = sid
        self.transport: asyncio.Transport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        shell = self.shell
        now = shell.loop.time()
        reliable = shell.node_shell.node.reliable
        if self.sid is None:
            host, port = transport.get_extra_info("peername")[:2]
            peer = (ip_address(host.partition("%")[0]), port)
            self.sid = reliable.accept(peer, now)
            if self.sid is None:
                transport.abort()
                shell.node_shell.flush()
                return
        else:
            reliable.connected(self.sid, now)
        shell.keepalive(transport)
        shell.connections[self.sid] = self
        shell.node_shell.flush()

    def data_received(self, data: bytes) -> None:
        if self.sid is None:
            return
        shell = self.shell
        shell.node_shell.node.reliable.receive(self.sid, data, shell.loop.time())
        shell.node_shell.flush()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        shell = self.shell
        if self.sid is None or shell.connections.get(self.sid) is not self:
            return
        del shell.connections[self.sid]
        reason = "closed-by-peer" if exc is None else _reason(exc)
        shell.node_shell.node.reliable.closed(self.sid, reason, shell.loop.time())
        shell.node_shell.flush()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.shell.node_shell.flush()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, TimeoutError):
        return "timed-out"
    return type(exc).__name__


class ReliableShell:
    """Listens for, opens and feeds the node's reliable-transport sessions."""

    def __init__(self, node_shell: NodeShell, keepalive: float = 15.0) -> None:
        self.node_shell = node_shell
        self.loop = node_shell.loop
        self.keepalive_seconds = keepalive
        self.connections: dict[int, _Connection] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        node_shell.streams = self.pump
        node_shell.subscribe(self._on_event)

    async def start(self) -> None:
        """Listen on the control port of each of our RLOCs (TCP)."""
        cfg = self.node_shell.node.config
        for rloc in cfg.rlocs:
            try:
                server = await self.loop.create_server(
                    lambda: _Connection(self, None),
                    host=str(rloc),
                    port=cfg.control_port,
                    reuse_address=True,
                )
            except OSError as exc:
                log.warning(
                    "reliable transport: cannot listen on TCP %s port %d (%s); "
                    "peers cannot open sessions to that RLOC",
                    rloc,
                    cfg.control_port,
                    exc.strerror,
                )
                continue
            self._servers.append(server)

    def close(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                # close, not abort: what is queued (our last TTL-0
                # registrations at shutdown) still goes out.
                conn.transport.close()
        for task in self._tasks:
            task.cancel()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, RlocsChanged):
            # Our addresses moved: listen on the new ones.
            for server in self._servers:
                server.close()
            self._servers.clear()
            self._spawn(self.start())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def keepalive(self, transport: asyncio.Transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        idle = max(1, int(self.keepalive_seconds))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        # Data unacknowledged this long ends the connection (keepalive only
        # probes an idle one).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 2000 * idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def pump(self) -> None:
        """After every node input: open the sessions it asked for, write
        what it queued, close what it ended."""
        reliable = self.node_shell.node.reliable
        for sid, peer in reliable.take_connects():
            self._spawn(self._connect(sid, peer))
        for sid in reliable.pending():
            conn = self.connections.get(sid)
            session = reliable.sessions.get(sid)
            waiting = conn is None or conn.paused  # not connected yet, backed up
            if waiting and session is not None and session.state != "closed":
                reliable.hold_output(sid)
                continue
            data, reason = reliable.drain(sid)
            if conn is None or conn.transport is None:
                continue
            if data:
                conn.transport.write(data)
            if reason is not None:
                del self.connections[sid]
                if reason in _ABORT:
                    conn.transport.abort()
                else:
                    conn.transport.close()

    async def _connect(self, sid: int, peer: IPAddress) -> None:
        shell = self.node_shell
        cfg = shell.node.config
        own = cfg.local_for(peer.version)
        try:
            if own is None:
                raise OSError("no RLOC of the peer's family")
            await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: _Connection(self, sid),
                    host=str(peer),
                    port=cfg.control_port,
                    local_addr=(str(own), 0),
                ),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            log.debug("reliable transport: connect to %s failed: %s", peer, exc)
            shell.node.reliable.closed(sid, "connect-failed", self.loop.time())
            shell.flush()
