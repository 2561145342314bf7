"""`decent status` with reliable transport: the sessions block, or one line
saying it is off, from a node served on loopback."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import pytest

from decent.client.api import _status_text, cmd_status
from decent.net.status import NodeStatus
from decent.web.app import make_app
from tests.peer.conftest import N2, N3
from tests.peer.streams import Streams, reliable_mesh

EPOCH = 1_796_083_200.0


def _status(reliable: bool = True, run: float = 10.0) -> NodeStatus:
    streams: Streams = reliable_mesh(3, reliable=reliable)
    streams.run(run)
    node = streams.nodes[0]
    return NodeStatus(
        node,
        lambda: streams.net.now,
        wall=lambda: EPOCH + streams.net.now,
        name="n1",
        started=0.0,
        register_interval=node.config.register_interval,
    )


def _plain(doc: Any) -> Any:
    """doc as the client gets it: through strict JSON."""
    return json.loads(json.dumps(doc, allow_nan=False))


def _block(text: str) -> list[str]:
    """The sessions block of `decent status`: its title to the blank line."""
    lines = text.splitlines()
    start = lines.index("Reliable-transport sessions")
    end = lines.index("", start)
    return lines[start:end]


def test_status_prints_a_row_per_session() -> None:
    status = _status()
    text = _status_text(_plain(status.node_info()), _plain(status.peers()), EPOCH)
    _, head, *rows = _block(text)
    assert head.split()[:4] == ["Peer", "Name", "Direction", "State"]
    assert "Registrations held" in head
    assert "Refused" in head
    assert [r.split()[:3] for r in rows] == [
        [str(N2), "n2", "to"],
        [str(N2), "n2", "from"],
        [str(N3), "n3", "to"],
        [str(N3), "n3", "from"],
    ]
    assert all(" up " in r for r in rows)
    # Peers on sessions: their TTL is the session's, not a countdown.
    peers = text.splitlines()
    n2 = next(line for line in peers if line.startswith(f"{N2} "))
    assert "session" in n2.split()
    assert "current" in n2.split()


def test_status_says_when_no_session_is_up_yet() -> None:
    status = _status(run=0.0)
    text = _status_text(_plain(status.node_info()), _plain(status.peers()), EPOCH)
    *_, empty = _block(text)
    assert empty.startswith("No session yet")


def test_status_says_reliable_transport_is_off() -> None:
    status = _status(reliable=False, run=2.0)
    text = _status_text(_plain(status.node_info()), _plain(status.peers()), EPOCH)
    assert "Reliable-transport sessions" not in text
    assert "Reliable transport: off ([decent] reliable)" in text.splitlines()


def test_an_older_node_without_the_field_reads_as_off() -> None:
    status = _status(reliable=False, run=0.0)
    info = _plain(status.node_info())
    del info["reliable"]
    text = _status_text(info, _plain(status.peers()), EPOCH)
    assert "Reliable transport: off ([decent] reliable)" in text.splitlines()


async def test_decent_status_over_http(
    aiohttp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await aiohttp_server(make_app(_status()), host="127.0.0.1")
    node = f"http://127.0.0.1:{server.port}"
    args = argparse.Namespace(node=node, json=False)
    assert await asyncio.to_thread(cmd_status, args) == 0
    out = capsys.readouterr().out
    assert len(_block(out)) == 2 + 4
    args = argparse.Namespace(node=node, json=True)
    assert await asyncio.to_thread(cmd_status, args) == 0
    data = json.loads(capsys.readouterr().out)
    sessions = data["node"]["reliable"]["sessions"]
    assert [s["direction"] for s in sessions] == ["to-peer", "from-peer"] * 2
