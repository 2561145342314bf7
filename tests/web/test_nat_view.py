"""NAT traversal on the status pages: the header's reachability line, the Peers
page's Reachability (this node, then each member) and Relay clients sections,
served and live, on members of a simulated network with two home NATs."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp.test_utils import TestClient

from decent.net.status import NodeStatus
from decent.web import views
from decent.web.app import CLOSING, make_app
from tests.peer.test_nat import H1, H2, KEEPALIVE, NAT1, NAT2, P1, P2, World
from tests.web.pagetext import Page
from tests.web.test_app import _status as plain_mesh

Client = TestClient[Any, Any]
EPOCH = 1_796_083_200.0
HOSTILE = "<script>alert(1)</script>"
REACH_HEAD = ["Name", "Reached", "Global address (NAT)", "Offers relay", "RLOCs"]
CLIENTS_HEAD = ["Binding", "Private address", "EIDs", "Idle", "Up"]


def _world(seconds: float = 30.0) -> World:
    """p1 and p2 public relays, h1 and h2 behind their NATs, relayed via p1."""
    w = World()
    w.run(seconds)
    return w


def _status(w: World, name: str) -> NodeStatus:
    node = w.nodes[name]
    return NodeStatus(
        node,
        lambda: w.net.now,
        wall=lambda: EPOCH + w.net.now,
        name=name,
        started=0.0,
        register_interval=node.config.register_interval,
    )


class Older(NodeStatus):
    """A node of a decent without NAT traversal: no `nat` in its JSON."""

    def node_info(self) -> dict[str, Any]:
        info = super().node_info()
        del info["nat"]
        return info


async def _html(client: Client, path: str) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == 200, text
    return text


async def _page(client: Client, path: str) -> Page:
    return Page(await _html(client, path))


async def _model(client: Client, view: str) -> Any:
    """The first model the live stream of a view sends."""
    async with client.get("/events", params={"view": view, "eid": ""}) as resp:
        assert resp.status == 200
        data = []
        while True:
            line = (await asyncio.wait_for(resp.content.readline(), 10)).decode()
            assert line, "the stream ended"
            if line.startswith("data: "):
                data.append(line[6:])
            elif line == "\n" and data:
                return json.loads("".join(data))


def _reach_class(html: str) -> str | None:
    """The class of the header's reachability field, as served."""
    found = re.search(r'<dd id="h-reach"(?: class="([^"]*)")?>', html)
    assert found is not None, "no reachability field in the header"
    return found.group(1)


# ---------------------------------------------------------------- a relay
async def test_a_relay_shows_every_member_and_the_members_it_relays_for(
    aiohttp_client: Any,
) -> None:
    w = _world()
    client = await aiohttp_client(make_app(_status(w, "p1")))
    page = await _page(client, "/peers")
    assert "Reachability" in page.text
    facts = page.blocks["nat"].facts
    assert facts["This node"] == "reached directly, relay for 2 members"
    assert facts["NAT traversal"] == "auto"
    assert facts["Relay"] == "-"
    assert facts["Global address (NAT)"] == "-"
    assert facts["Offers to relay"] == "yes (2 clients)"
    assert facts["Relays known"] == f"{P1}\n{P2}"

    reach = page.blocks["reach"]
    assert reach.head == REACH_HEAD
    assert reach.row("Name", "h1") == {
        "Name": "h1",
        "Reached": f"relayed via {P1}",
        "Global address (NAT)": str(NAT1),
        "Offers relay": "no",
        "RLOCs": str(P1),
    }
    assert reach.row("Name", "h2")["Global address (NAT)"] == str(NAT2)
    assert reach.row("Name", "p1 (this node)") == {
        "Name": "p1 (this node)",
        "Reached": "direct",
        "Global address (NAT)": "-",
        "Offers relay": "yes",
        "RLOCs": str(P1),
    }
    assert reach.row("Name", "p2")["Reached"] == "direct"

    assert "Relay clients" in page.text
    clients = page.blocks["relay-clients"]
    assert clients.head == CLIENTS_HEAD
    rows = {r[1]: dict(zip(CLIENTS_HEAD, r, strict=True)) for r in clients.rows}
    assert set(rows) == {str(H1), str(H2)}
    assert rows[str(H1)]["Binding"] == f"{NAT1}:4341"
    assert rows[str(H1)]["EIDs"] == "[0]192.0.2.3/32"
    assert rows[str(H2)]["Binding"] == f"{NAT2}:4341"
    for row in rows.values():
        assert re.fullmatch(r"0:00:\d\d", row["Idle"]), row
        assert row["Up"] == "0:00:30"


async def test_a_relay_nobody_uses_yet_says_so(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(_status(_world(), "p2")))
    page = await _page(client, "/peers")
    assert page.blocks["nat"].facts["Offers to relay"] == "yes (0 clients)"
    clients = page.blocks["relay-clients"]
    assert clients.rows == []
    assert clients.notes == [views.CLIENTS_EMPTY]


# ---------------------------------------------------------------- behind NAT
async def test_a_member_behind_nat_says_through_which_relay(
    aiohttp_client: Any,
) -> None:
    w = _world()
    client = await aiohttp_client(make_app(_status(w, "h1")))
    line = f"behind NAT, relayed via {P1} (seen as {NAT1}:4341)"
    for path in ("/", "/peers", "/sites"):
        html = await _html(client, path)
        assert Page(html).header["reach"] == line, path
        assert _reach_class(html) is None, path
    page = await _page(client, "/peers")
    facts = page.blocks["nat"].facts
    assert facts["This node"] == line
    assert facts["Relay"] == str(P1)
    assert facts["Global address (NAT)"] == f"{NAT1}:4341"
    assert facts["Offers to relay"] == "no"
    reach = page.blocks["reach"]
    assert reach.row("Name", "h1 (this node)")["Reached"] == f"relayed via {P1}"
    assert reach.row("Name", "h2")["Reached"] == f"relayed via {P1}"
    # It offers no relay: no section for clients it cannot have.
    assert "relay-clients" not in page.blocks
    assert "Relay clients" not in page.text


async def test_the_overview_has_one_line_and_no_tables_of_its_own(
    aiohttp_client: Any,
) -> None:
    w = _world()
    client = await aiohttp_client(make_app(_status(w, "p2")))
    html = await _html(client, "/")
    page = Page(html)
    assert page.header["reach"] == "reached directly"
    assert _reach_class(html) == "ok"
    assert set(page.blocks) == {"sites", "peers", "map-cache"}


async def test_checking_and_no_relay_found_are_told_apart(
    aiohttp_client: Any,
) -> None:
    w = _world(0.0)
    client = await aiohttp_client(make_app(_status(w, "h1")))
    html = await _html(client, "/")
    assert Page(html).header["reach"] == "checking for a NAT"
    assert _reach_class(html) == "warn"
    # Both relays gone: h1 changes relay, then finds none.
    w.run(30)
    w.net.remove(w.nodes["p1"])
    w.net.remove(w.nodes["p2"])
    for _ in range(100):
        if w.nodes["h1"].nat.state == "no-relay":
            break
        w.run(KEEPALIVE)
    html = await _html(client, "/peers")
    page = Page(html)
    line = f"behind NAT (seen as {NAT1}:4341), no relay found"
    assert page.header["reach"] == line
    assert _reach_class(html) == "bad"
    assert page.blocks["nat"].facts["Relay"] == "-"


# ---------------------------------------------------------------- NAT traversal off
async def test_with_nat_traversal_off_members_are_still_listed_and_escaped(
    aiohttp_client: Any,
) -> None:
    # Three members on the open underlay, n3 named <script>...
    _, status = plain_mesh()
    client = await aiohttp_client(make_app(status))
    html = await _html(client, "/peers")
    page = Page(html)
    assert page.header["reach"] == "NAT traversal off"
    assert page.blocks["nat"].facts["This node"] == "NAT traversal off"
    assert page.blocks["nat"].facts["NAT traversal"] == "off"
    reach = page.blocks["reach"]
    assert set(reach.column("Name")) == {"n1 (this node)", "n2", HOSTILE}
    assert set(reach.column("Reached")) == {"direct"}
    assert set(reach.column("Offers relay")) == {"no"}
    assert "relay-clients" not in page.blocks
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_an_older_node_without_nat_shows_no_reachability(
    aiohttp_client: Any,
) -> None:
    w = _world()
    node = w.nodes["p1"]
    status = Older(
        node, lambda: w.net.now, name="p1", started=0.0, register_interval=60.0
    )
    client = await aiohttp_client(make_app(status))
    html = await _html(client, "/peers")
    page = Page(html)
    assert page.header["reach"] == "-"
    assert not {"nat", "reach", "relay-clients"} & set(page.blocks)
    assert 'id="s-reach"' not in html
    assert 'id="s-relay-clients"' not in html
    model = await _model(client, "peers")
    for name in ("nat", "reach", "relay-clients"):
        assert model["blocks"][name]["hidden"] is True, name
    client.app[CLOSING].set()


# ---------------------------------------------------------------- live
async def test_the_live_model_carries_the_reachability(aiohttp_client: Any) -> None:
    w = _world()
    client = await aiohttp_client(make_app(_status(w, "p1")))
    model = await _model(client, "peers")
    blocks = model["blocks"]
    assert blocks["nat"]["kind"] == "facts"
    assert [c["text"] for c in blocks["reach"]["columns"]] == REACH_HEAD
    assert len(blocks["reach"]["rows"]) == 4
    assert [c["text"] for c in blocks["relay-clients"]["columns"]] == CLIENTS_HEAD
    assert len(blocks["relay-clients"]["rows"]) == 2
    header = (await _model(client, "overview"))["header"]
    assert header["reach"] == "reached directly, relay for 2 members"
    assert header["reach_cls"] == "ok"
    client.app[CLOSING].set()


async def test_a_new_relay_shows_on_the_next_model(aiohttp_client: Any) -> None:
    w = _world()
    client = await aiohttp_client(make_app(_status(w, "h1")))
    before = await _model(client, "peers")
    assert before["header"]["reach"].startswith(f"behind NAT, relayed via {P1} ")
    w.net.remove(w.nodes["p1"])
    for _ in range(100):
        if w.nodes["h1"].nat.relay == P2:
            break
        w.run(KEEPALIVE)
    after = await _model(client, "peers")
    assert after["header"]["reach"] == (
        f"behind NAT, relayed via {P2} (seen as {NAT1}:4341)"
    )
    rows = {
        r["cells"][0]["text"]: r["cells"][1]["text"]
        for r in after["blocks"]["reach"]["rows"]
    }
    assert rows["h1 (this node)"] == f"relayed via {P2}"
    client.app[CLOSING].set()


async def test_page_js_keeps_the_reachability_class_live(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(_status(_world(), "p2")))
    js = await (await client.get("/assets/page.js")).text()
    assert 'document.getElementById("h-reach")' in js
    assert 'reach.className = h.reach_cls || ""' in js
