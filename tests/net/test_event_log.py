"""Event log lines do not scale with a burst: a bucket per kind, then a summary."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import socket
import sys
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address

import pytest

from decent.net import udp as udp_module
from decent.net.udp import NodeShell, open_sockets
from decent.peer.events import Event, RegistrationAccepted, RlocsChanged
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import Eid

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.x")

R1 = IPv4Address("127.0.0.91")
SUMMARY = re.compile(
    r"([a-z-]+): ([\d,]+) more like this suppressed in the last [\d.]+ s"
)
#: However slow the machine, the summary comes within this (loop) time.
PATIENCE = 10.0


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def shell_on_loopback(
    *, start: bool = True, log_rate: float = udp_module.LOG_RATE, log_burst: int = 100
) -> AsyncIterator[tuple[NodeShell, int]]:
    loop = asyncio.get_running_loop()
    control, data = _free_udp_port(str(R1)), _free_udp_port(str(R1))
    node = Node(
        decent_node_config(
            name="l1",
            rlocs=(R1,),
            group=IPv4Address("233.252.1.1"),
            key=b"k",
            xtr_id=1,
            eids=(Eid.prefix("1.1.1.1/32"),),
            control_port=control,
            data_port=data,
        ),
        nonce=itertools.count(1).__next__,
        now=loop.time(),
    )
    sockets = open_sockets(R1, control, data)
    shell = NodeShell(node, sockets, loop, log_rate=log_rate, log_burst=log_burst)
    if start:
        shell.start()
    try:
        yield shell, control
    finally:
        shell.close()


def _lines(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    """(event lines, summary lines) logged by the node's shell."""
    messages = [r.getMessage() for r in caplog.records if r.name == "decent"]
    summaries = [m for m in messages if SUMMARY.fullmatch(m)]
    return [m for m in messages if m not in summaries], summaries


def _held(summaries: list[str]) -> Counter[str]:
    """The per-kind counts of every summary line, added up."""
    held: Counter[str] = Counter()
    for line in summaries:
        match = SUMMARY.fullmatch(line)
        assert match is not None
        held[match[1]] += int(match[2].replace(",", ""))
    return held


async def _until(check: Callable[[], bool], within: float = PATIENCE) -> float:
    """Wait (on the loop's clock) until check(); return how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check():
        assert loop.time() - start < within, "not reached in time"
        await asyncio.sleep(0.02)
    return loop.time() - start


async def test_a_burst_of_10000_dropped_datagrams_logs_the_burst_and_a_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="decent")
    loop = asyncio.get_running_loop()
    seen: Counter[str] = Counter()
    async with shell_on_loopback() as (shell, control):
        shell.on_event = lambda e: seen.update([type(e).__name__])
        start = loop.time()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind((str(R1), 0))
            for i in range(10_000):
                peer.sendto(b"junk%d" % i, (str(R1), control))
                if i % 500 == 499:
                    await asyncio.sleep(0)  # let the shell drain its buffer
        await _until(lambda: seen["MessageDropped"] >= 10_000)
        # Nothing else happens now, and the summary still comes.
        await _until(lambda: bool(_lines(caplog)[1]))
        elapsed = loop.time() - start
        lines, summaries = _lines(caplog)
    dropped = [line for line in lines if line.endswith(" dropped: decode-error")]
    assert len(dropped) <= udp_module.LOG_BURST + udp_module.LOG_RATE * elapsed
    # One summary a second at most (and the last one, at close).
    assert 1 <= len(summaries) <= elapsed / udp_module.SUMMARY_INTERVAL + 2
    assert len(dropped) + _held(summaries)["message-dropped"] == seen["MessageDropped"]
    # Junk is hostile input: its lines and their summaries are warnings.
    assert {r.levelno for r in caplog.records if "dropped" in r.getMessage()} == {
        logging.WARNING
    }


async def test_each_event_class_has_its_own_lines_and_the_summary_counts_add_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="decent")
    peer = (R1, 4342)
    burst: deque[Event] = deque(
        RegistrationAccepted(
            Eid(0, IPv4Address((10 << 24) + i), 32), "site", peer, 7, True
        )
        for i in range(10_000)
    )
    burst.append(RlocsChanged(("127.0.0.1",), ("127.0.0.2",)))
    # Not started: only the burst below reaches the shell.
    async with shell_on_loopback(start=False, log_rate=5.0, log_burst=50) as (
        shell,
        _,
    ):
        # The Node's event queue, as a registration burst fills it.
        shell.node.next_event = lambda: burst.popleft() if burst else None  # type: ignore[method-assign]
        shell.flush()
        lines, summaries = _lines(caplog)
        assert len([x for x in lines if x.startswith("map-register from ")]) == 50
        # Another class is not held back by the burst of the first.
        assert any(x.startswith("own RLOCs changed ") for x in lines)
        assert summaries == []
        waited = await _until(lambda: bool(_lines(caplog)[1]))
        assert waited <= PATIENCE
        lines, summaries = _lines(caplog)
    assert len(summaries) == 1
    assert summaries[0].startswith(
        "registration-accepted: 9,950 more like this suppressed in the last "
    )
    assert len(lines) == 51
    records = [r for r in caplog.records if SUMMARY.fullmatch(r.getMessage())]
    assert records[0].levelno == logging.INFO


async def test_hidden_lines_are_neither_logged_nor_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Junk is dropped at WARNING; a node set to log errors only hides it.
    caplog.set_level(logging.ERROR, logger="decent")
    seen = [0]
    async with shell_on_loopback(log_burst=1) as (shell, control):
        shell.on_event = lambda e: seen.__setitem__(0, seen[0] + 1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind((str(R1), 0))
            for i in range(200):
                peer.sendto(b"junk%d" % i, (str(R1), control))
        await _until(lambda: seen[0] >= 200)
    lines, summaries = _lines(caplog)
    assert not [x for x in lines if "dropped" in x]
    assert not summaries


def test_the_rate_and_burst_must_allow_some_lines() -> None:
    with pytest.raises(ValueError, match="log_rate"):
        NodeShell(None, None, None, log_rate=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log_burst"):
        NodeShell(None, None, None, log_burst=0)  # type: ignore[arg-type]


async def test_on_event_and_every_subscriber_get_each_event_in_order() -> None:
    peer = (R1, 4342)
    events: list[Event] = [
        RegistrationAccepted(Eid.prefix("10.0.0.1/32"), "site", peer, 7, True),
        RlocsChanged(("127.0.0.1",), ("127.0.0.2",)),
    ]
    queue = deque(events)
    got: list[tuple[str, Event]] = []
    async with shell_on_loopback(start=False) as (shell, _):
        shell.node.next_event = lambda: queue.popleft() if queue else None  # type: ignore[method-assign]
        shell.on_event = lambda e: got.append(("on_event", e))
        shell.subscribe(lambda e: got.append(("first", e)))
        shell.subscribe(lambda e: got.append(("second", e)))
        shell.flush()
    assert got == [(who, e) for e in events for who in ("on_event", "first", "second")]
