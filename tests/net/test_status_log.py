"""Refused registrations are loud: a WARNING line each (rate-limited, summed up
like every event line) and an entry in NodeStatus's recent rejections."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import sys
from collections import deque
from ipaddress import IPv4Address

import pytest

from decent.net.status import NodeStatus
from decent.peer.events import Event, RegistrationRejected
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import Eid
from tests.net.test_event_log import R1, SUMMARY, _lines, _until, shell_on_loopback

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.x")

#: The joiner's address (no other test module sends from it).
JOINER = IPv4Address("127.0.0.93")
LINE = "map-register from {} for {}{} rejected: {}"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "decent" and r.levelno == logging.WARNING
    ]


async def test_a_joiner_with_a_wrong_key_is_logged_as_a_warning_and_listed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="decent")
    loop = asyncio.get_running_loop()
    async with shell_on_loopback() as (shell, control):
        status = NodeStatus(
            shell.node,
            loop.time,
            name="l1",
            started=loop.time(),
            register_interval=60.0,
        )
        shell.subscribe(status.note)
        joiner = Node(
            decent_node_config(
                name="intruder",
                rlocs=(JOINER,),
                group=IPv4Address("233.252.1.1"),
                key=b"not the group key",
                xtr_id=99,
                seeds=(R1,),
                control_port=control,
            ),
            nonce=itertools.count(1 << 32).__next__,
            now=loop.time(),
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((str(JOINER), 0))
            # Its first registration round, on its own (simulated) clock.
            sent = 0
            while not sent:
                when = joiner.get_timer()
                assert when is not None
                joiner.handle_timer(when)
                for data, (ip, port) in joiner.datagrams_to_send():
                    if ip == R1:  # to its seed, our shell
                        sock.sendto(data, (str(ip), port))
                        sent += 1
            # One rejection per Map-Register (its name and EIDs, then its
            # membership), each from a different EID.
            await _until(lambda: len(status.rejections()) >= sent)
            source = f"{JOINER}:{sock.getsockname()[1]}"  # not port 4342
    shown = status.rejections()
    assert "[0]'intruder'" in {r["eid"] for r in shown}
    warned = _warnings(caplog)
    for r in shown:
        assert (r["source"], r["reason"], r["name"]) == (
            str(JOINER),
            "auth-failed",
            None,
        )
        assert LINE.format(source, r["eid"], "", "auth-failed") in warned


async def test_a_burst_of_rejections_is_rate_limited_and_summed_up_as_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="decent")
    peer = (IPv4Address("192.0.2.7"), 4342)
    burst: deque[Event] = deque(
        RegistrationRejected(
            peer, "certificate-expired", Eid.prefix(f"10.0.{i // 256}.{i % 256}/32")
        )
        for i in range(500)
    )
    named = RegistrationRejected(peer, "name-mismatch", Eid.name("x"), "mallory")
    async with shell_on_loopback(start=False, log_rate=5.0, log_burst=20) as (
        shell,
        _,
    ):
        burst.appendleft(named)
        shell.node.next_event = lambda: burst.popleft() if burst else None  # type: ignore[method-assign]
        shell.flush()
        await _until(lambda: bool(_lines(caplog)[1]))
    warned = _warnings(caplog)
    # From the LISP control port: the address alone.
    assert warned[0] == LINE.format(
        "192.0.2.7", "[0]'x'", " (node mallory)", "name-mismatch"
    )
    assert (
        LINE.format("192.0.2.7", "[0]10.0.0.0/32", "", "certificate-expired") in warned
    )
    lines = [w for w in warned if w.startswith("map-register from ")]
    assert len(lines) == 20
    (summary,) = [w for w in warned if SUMMARY.fullmatch(w)]
    assert summary.startswith("registration-rejected: 481 more like this suppressed")
