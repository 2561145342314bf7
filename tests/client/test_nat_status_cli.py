"""`decent status` with NAT traversal: this node's reachability line, the
Reachability block (this node, then each member), the members a relay carries,
and the JSON, from members of a simulated network with two home NATs."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import pytest

from decent.client.api import _status_text, cmd_status
from decent.net.status import NodeStatus
from decent.web import views
from decent.web.app import make_app
from tests.peer.test_nat import H1, H2, NAT1, NAT2, P1, P2, World

EPOCH = 1_796_083_200.0


def _status(name: str, seconds: float = 30.0) -> NodeStatus:
    """`name`'s status: p1 and p2 are public relays, h1 and h2 behind NATs."""
    w = World()
    w.run(seconds)
    node = w.nodes[name]
    return NodeStatus(
        node,
        lambda: w.net.now,
        wall=lambda: EPOCH + w.net.now,
        name=name,
        started=0.0,
        register_interval=node.config.register_interval,
    )


def _plain(doc: Any) -> Any:
    """doc as the client gets it: through strict JSON."""
    return json.loads(json.dumps(doc, allow_nan=False))


def _text(status: NodeStatus, drop_nat: bool = False) -> str:
    info = _plain(status.node_info())
    if drop_nat:
        del info["nat"]
    return _status_text(info, _plain(status.peers()), EPOCH + status.clock())


def _block(text: str, title: str) -> list[str]:
    """A block of `decent status`: its title to the next blank line."""
    lines = text.splitlines()
    start = lines.index(title)
    return lines[start : lines.index("", start)]


def _members(text: str) -> dict[str, list[str]]:
    """The members' reachability table, by name: the table after the
    Reachability block's facts, up to its blank line."""
    lines = text.splitlines()
    start = lines.index("", lines.index("Reachability")) + 1
    head, *rows = lines[start : lines.index("", start)]
    assert head.split()[:2] == ["Name", "Reached"]
    assert "Global address (NAT)" in head
    assert "Offers relay" in head
    out = {}
    for row in rows:
        name, _, rest = row.partition("  ")
        out[name.strip()] = rest.split()
    return out


def test_behind_nat_status_names_the_relay_and_the_nat_address() -> None:
    text = _text(_status("h1"))
    line = f"behind NAT, relayed via {P1} (seen as {NAT1}:4341)"
    assert f"reachability {line}" in text.splitlines()
    facts = _block(text, "Reachability")
    assert facts[1].split(None, 2)[2] == line  # "This node  <line>"
    assert f"Relay                 {P1}" in facts
    assert f"Global address (NAT)  {NAT1}:4341" in facts
    assert "Offers to relay       no" in facts
    assert f"Relays known          {P1}, {P2}" in facts
    members = _members(text)
    assert members["h1 (this node)"] == [
        "relayed",
        "via",
        str(P1),
        str(NAT1),
        "no",
        str(P1),
    ]
    assert members["h2"][3] == str(NAT2)
    assert members["p1"] == ["direct", "-", "yes", str(P1)]
    assert members["p2"] == ["direct", "-", "yes", str(P2)]
    assert "Relay clients" not in text.splitlines()


def test_a_relay_lists_its_clients() -> None:
    text = _text(_status("p1"))
    assert "reachability reached directly, relay for 2 members" in text.splitlines()
    assert "Offers to relay       yes (2 clients)" in _block(text, "Reachability")
    _, head, *rows = _block(text, "Relay clients")
    assert head.split() == ["Binding", "Private", "address", "EIDs", "Idle", "Up"]
    assert [r.split()[:3] for r in rows] == [
        [f"{NAT1}:4341", str(H1), "[0]192.0.2.3/32"],
        [f"{NAT2}:4341", str(H2), "[0]192.0.2.4/32"],
    ]
    assert all(r.split()[4] == "0:00:30" for r in rows)
    assert _members(text)["p1 (this node)"][:3] == ["direct", "-", "yes"]


def test_a_relay_without_clients_says_so() -> None:
    text = _text(_status("p2"))
    assert "reachability reached directly" in text.splitlines()
    _, _, empty = _block(text, "Relay clients")
    assert empty == views.CLIENTS_EMPTY


def test_status_says_when_it_is_still_checking() -> None:
    text = _text(_status("h1", seconds=0.0))
    assert "reachability checking for a NAT" in text.splitlines()


def test_an_older_node_without_the_field_says_it_does_not_report_it() -> None:
    text = _text(_status("h1"), drop_nat=True)
    lines = text.splitlines()
    assert "Reachability: not reported by this node" in lines
    assert not any(line.startswith("reachability ") for line in lines)
    assert "Relay clients" not in lines


async def test_decent_status_over_http(
    aiohttp_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await aiohttp_server(make_app(_status("p1")), host="127.0.0.1")
    node = f"http://127.0.0.1:{server.port}"
    args = argparse.Namespace(node=node, json=False)
    assert await asyncio.to_thread(cmd_status, args) == 0
    out = capsys.readouterr().out
    assert len(_block(out, "Relay clients")) == 2 + 2
    assert set(_members(out)) == {"h1", "h2", "p1 (this node)", "p2"}
    args = argparse.Namespace(node=node, json=True)
    assert await asyncio.to_thread(cmd_status, args) == 0
    nat = json.loads(capsys.readouterr().out)["node"]["nat"]
    assert (nat["state"], nat["offers_relay"]) == ("direct", True)
    assert [c["private"] for c in nat["clients"]] == [str(H1), str(H2)]
    reach = {m["name"]: (m["reach"], m["via"], m["global"]) for m in nat["members"]}
    assert reach["h1"] == ("relayed", str(P1), str(NAT1))
    assert reach["p2"] == ("direct", None, None)
