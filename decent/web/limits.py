"""Web server limits: connections, head and idle time, live clients, Host names."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

#: The listen backlog, which is also how many connections asyncio accepts
#: per wake-up. Those over `max_connections` are closed one loop iteration
#: after their accept, so under a flood the descriptors held may pass
#: max_connections by up to this many, never more (at 128 a connection
#: flood briefly held 65 more than the cap).
BACKLOG: Final = 64


@dataclass(frozen=True, slots=True)
class WebLimits:
    """How much of the web server its clients may hold, all together.

    The web server shares its event loop with the LISP control plane, so every
    default is sized for a status page watched by a few operators, far below
    what would slow Map-Request handling or run the process out of file
    descriptors (a 1024 soft limit is common)."""

    #: Open HTTP connections at once; more are answered 503 and closed at
    #: once, so descriptors stay bounded. A browser opens at most 6 per host
    #: plus one live stream per tab: 256 is dozens of operators.
    max_connections: int = 256
    #: Seconds from a connection's opening, or from the first byte of a
    #: keep-alive connection's next request, to a complete request head.
    #: A real client sends its head in one round trip; 10 s tolerates a very
    #: slow link, and a slowloris client trickling bytes gains nothing.
    header_timeout: float = 10.0
    #: Seconds a keep-alive connection may sit between requests, and a client
    #: may take to read a response. Browsers reopen a closed idle connection
    #: for free; 30 s keeps an idle descriptor from living as long as
    #: aiohttp's own keep-alive (75 s to an hour, by version) would.
    idle_timeout: float = 30.0
    #: Seconds for a request's body to arrive and its answer to be made (not
    #: /events, which is long-lived by design). Bodies here are a form of a
    #: few bytes, so a client sending one slowly is an attack, not a user.
    request_timeout: float = 30.0
    #: Concurrent /events subscribers (live pages); more get 503 with
    #: Retry-After. A subscriber costs a write per update; 32 is one tab each
    #: for a large team.
    max_live_clients: int = 32
    #: Host names, besides IP literals, `localhost`, *.localhost and this
    #: machine's hostname, that requests may name in their Host header (for
    #: a DNS name pointing at the node). Others get 421 (DNS rebinding).
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A list from a config file would make the frozen limits mutable.
        object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        for name in ("max_connections", "max_live_clients"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("header_timeout", "idle_timeout", "request_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        for host in self.allowed_hosts:
            if not host or not host.strip(".") or any(c in host for c in ":/[] "):
                raise ValueError(f"allowed_hosts: {host!r} is not a host name")


LIMITS: web.AppKey[WebLimits] = web.AppKey("limits", WebLimits)


# ---------------------------------------------------------------- Host check
def split_host(value: str) -> tuple[str, bool]:
    """The host of a Host header (port dropped, lower case, no trailing dot),
    and whether it is an IP literal (v4, or v6 in brackets)."""
    value = value.strip()
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not _is_port(rest)):
            return value.lower(), False
        try:
            return str(ipaddress.IPv6Address(inside)), True
        except ValueError:
            return value.lower(), False
    name, colon, port = value.rpartition(":")
    if not colon or ":" in name or not _is_port(":" + port):
        name = value
    name = name.lower().rstrip(".")
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return name, False
    return name, True


def _is_port(text: str) -> bool:
    return text.startswith(":") and text[1:].isdigit() and len(text) <= 6


class HostCheck:
    """Which names in a Host header mean this node.

    A browser tricked by DNS rebinding sends the attacker's name as Host,
    while it reaches our address: refusing names that are not ours stops it
    from reading the API or posting the clear-cache form. An IP literal
    cannot be rebound, so any is accepted (with any port)."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._names: set[str] = set()
        hostname = socket.gethostname()
        # The FQDN would need a resolver round trip on the event loop;
        # [web] allowed_hosts takes it when wanted.
        for name in ("localhost", hostname, *names):
            self.allow(name)

    def allow(self, name: str) -> None:
        host, literal = split_host(name)
        if host and not literal:
            self._names.add(host)

    def refusal(self, header: str | None) -> str | None:
        """Why a request with this Host header is not for us, or None."""
        if header is None:
            # Only HTTP/1.0 may omit it, and every browser sends it.
            return None
        host, literal = split_host(header)
        if literal or host in self._names or host.endswith(".localhost"):
            return None
        return (
            f"misdirected request: {host!r} is not a name of this node "
            "(add it to [web] allowed_hosts, or use its address)"
        )


HOSTS: web.AppKey[HostCheck] = web.AppKey("hosts", HostCheck)


# ---------------------------------------------------------------- connections
class _Phase(enum.Enum):
    HEAD = "waiting for a request head"
    BUSY = "handling a request"
    STREAM = "streaming"
    IDLE = "idle between requests"


_BUSY_TEXT: Final = b"too many connections, try again later\n"
_BUSY_REPLY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 10\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT)
)


class _Gate:
    """One site's connection count and limits; builds a guard per accept."""

    def __init__(
        self,
        make_handler: Callable[[], asyncio.Protocol],
        limits: WebLimits,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.make_handler = make_handler
        self.limits = limits
        self.loop = loop
        self.open = 0
        self.refused = 0
        self.timed_out = 0

    def __call__(self) -> _Guard:
        return _Guard(self)


class _Guard(asyncio.Protocol):
    """Stands between the transport and aiohttp's handler for one connection,
    closing it when over the limit or out of time.

    aiohttp has no connection cap or request-head timeout, and its keep-alive
    timer is not reset by a trickle of bytes; the guard needs nothing of it
    beyond the asyncio Protocol interface. Request start and end come from
    `limits_middleware`, which finds the guard as the transport's protocol."""

    __slots__ = ("_gate", "_inner", "_phase", "_timer", "_transport")

    def __init__(self, gate: _Gate) -> None:
        self._gate = gate
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._phase = _Phase.HEAD
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        gate = self._gate
        # Counted here, not in the factory: connection_lost is promised only
        # after connection_made, so the count cannot leak a slot.
        if gate.open >= gate.limits.max_connections:
            gate.refused += 1
            transport.write(_BUSY_REPLY)
            transport.close()
            return
        gate.open += 1
        self._transport = transport
        self._inner = gate.make_handler()
        self._arm(gate.limits.header_timeout)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        inner = self._inner
        if inner is None:
            return
        self._inner = None
        self._transport = None
        self._gate.open -= 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        inner = self._inner
        if inner is None:
            return
        if self._phase is _Phase.IDLE:
            # The next request has begun: from here its head has a budget of
            # its own, not the rest of the keep-alive wait.
            self._phase = _Phase.HEAD
            self._arm(self._gate.limits.header_timeout)
        inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # Called by limits_middleware and the live stream.
    def request_started(self) -> None:
        self._phase = _Phase.BUSY
        self._arm(self._gate.limits.request_timeout)

    def streaming(self) -> None:
        self._phase = _Phase.STREAM
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def request_finished(self) -> None:
        if self._inner is None:
            return
        self._phase = _Phase.IDLE
        self._arm(self._gate.limits.idle_timeout)

    def _arm(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._gate.loop.call_later(delay, self._expired)

    def _expired(self) -> None:
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        self._gate.timed_out += 1
        # A client that stopped reading would hold a graceful close (and its
        # descriptor) open forever; one with nothing pending gets a FIN.
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()


def _guard(request: web.BaseRequest) -> _Guard | None:
    transport = request.transport
    if transport is None:
        return None
    protocol = transport.get_protocol()
    return protocol if isinstance(protocol, _Guard) else None


def streaming(request: web.BaseRequest) -> None:
    """Exempt this request's connection from the request and idle timeouts:
    it is a long-lived stream (its writes need their own bound)."""
    guard = _guard(request)
    if guard is not None:
        guard.streaming()


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def limits_middleware(
    request: web.Request, handler: _Handler
) -> web.StreamResponse:
    """Refuses a Host that is not ours; tells the connection's guard (when
    served by `start_site`) that a request head is complete, and when its
    answer is made."""
    guard = _guard(request)
    if guard is not None:
        guard.request_started()
    try:
        hosts = request.app[HOSTS]
        given = request.headers.getall("Host", [])
        refusal = (
            "misdirected request: more than one Host header"
            if len(given) > 1
            else hosts.refusal(given[0] if given else None)
        )
        if refusal is not None:
            return web.Response(text=refusal + "\n", status=421)
        try:
            return await handler(request)
        except ConnectionError:
            transport = request.transport
            if transport is not None and not transport.is_closing():
                raise
            # Cut off (by a timeout here, or the client left) while reading
            # the body: nobody to answer, and no server error worth a
            # traceback in the log, which an attacker could fill so.
            return web.Response(status=408)
    finally:
        if guard is not None:
            guard.request_finished()


# ---------------------------------------------------------------- the site
class LimitedSite(web.BaseSite):
    """A TCP site whose connections are bounded by WebLimits.

    aiohttp's own sites hand the runner's server to `loop.create_server`
    directly; this one puts a guard in front of each connection. Stopping it
    (or `runner.cleanup()`) closes the listening socket as for any site."""

    def __init__(
        self,
        runner: web.AppRunner,
        host: str | None,
        port: int,
        limits: WebLimits,
        *,
        backlog: int = BACKLOG,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._app_runner = runner
        self._host = host
        self._port = port
        self._listen_backlog = backlog
        self.limits = limits
        self._listener: asyncio.Server | None = None
        self._gate: _Gate | None = None

    @property
    def name(self) -> str:
        host = self._host or "0.0.0.0"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the asked-for one before start)."""
        if self._listener is not None and self._listener.sockets:
            port: int = self._listener.sockets[0].getsockname()[1]
            return port
        return self._port

    @property
    def connections(self) -> int:
        """HTTP connections open now."""
        return self._gate.open if self._gate is not None else 0

    @property
    def refused(self) -> int:
        """Connections closed at once for being over max_connections."""
        return self._gate.refused if self._gate is not None else 0

    @property
    def timed_out(self) -> int:
        """Connections closed for a slow request head, body or idleness."""
        return self._gate.timed_out if self._gate is not None else 0

    async def start(self) -> None:
        server = self._app_runner.server
        if server is None:
            raise RuntimeError("start_site: call runner.setup() first")
        await super().start()
        loop = asyncio.get_running_loop()
        self._gate = _Gate(server, self.limits, loop)
        self._listener = await loop.create_server(
            self._gate, self._host, self._port, backlog=self._listen_backlog
        )
        # BaseSite.stop() closes `_server` and runner.addresses lists it;
        # stop() below closes the listener itself should that name change.
        self._server = self._listener

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        await super().stop()


async def start_site(
    runner: web.AppRunner,
    host: str | None,
    port: int,
    limits: WebLimits | None = None,
    *,
    backlog: int = BACKLOG,
) -> LimitedSite:
    """Listen on host:port (after `await runner.setup()`) with the limits
    `make_app` was given, or `limits` for the connection-level ones. A DNS
    name given as `host` is added to the names the Host check accepts.
    Raises OSError as TCPSite.start does (address in use, not ours)."""
    app = runner.app
    if limits is None:
        limits = app[LIMITS] if LIMITS in app else WebLimits()
    if host and HOSTS in app:
        app[HOSTS].allow(host)
    site = LimitedSite(runner, host, port, limits, backlog=backlog)
    await site.start()
    return site
