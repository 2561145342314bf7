"""The reliable-transport sessions on the status pages, served and live, and
registrations a session holds shown as "session" instead of a countdown."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from aiohttp.test_utils import TestClient

from decent.net.status import NodeStatus
from decent.web import views
from decent.web.app import CLOSING, make_app
from tests.peer.conftest import N2, N3
from tests.peer.streams import Streams, reliable_mesh
from tests.web.pagetext import Page

Client = TestClient[Any, Any]
EPOCH = 1_796_083_200.0
HEAD = [
    "Peer",
    "Name",
    "Direction",
    "State",
    "Up",
    "Messages in/out",
    "Bytes in/out",
    "Registrations held",
    "Registrations sent",
    "Refused",
]


def _streams(reliable: bool = True) -> Streams:
    streams = reliable_mesh(3, reliable=reliable)
    streams.run(10)
    return streams


def _status(streams: Streams) -> NodeStatus:
    node = streams.nodes[0]
    return NodeStatus(
        node,
        lambda: streams.net.now,
        wall=lambda: EPOCH + streams.net.now,
        name="n1",
        started=0.0,
        register_interval=node.config.register_interval,
    )


async def _page(client: Client, path: str) -> Page:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == 200, text
    return Page(text)


async def _model(client: Client, view: str, eid: str = "") -> Any:
    """The first model the live stream of a view sends."""
    async with client.get("/events", params={"view": view, "eid": eid}) as resp:
        assert resp.status == 200
        data = []
        while True:
            line = (await asyncio.wait_for(resp.content.readline(), 10)).decode()
            assert line, "the stream ended"
            if line.startswith("data: "):
                data.append(line[6:])
            elif line == "\n" and data:
                return json.loads("".join(data))


# ---------------------------------------------------------------- the section
async def test_the_peers_page_lists_every_session(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(_status(_streams())))
    page = await _page(client, "/peers")
    assert "Reliable-transport sessions" in page.text
    table = page.blocks["sessions"]
    assert table.head == HEAD
    assert [(r[0], r[2]) for r in table.rows] == [
        (str(N2), "to peer (we register)"),
        (str(N2), "from peer (it registers)"),
        (str(N3), "to peer (we register)"),
        (str(N3), "from peer (it registers)"),
    ]
    assert table.column("Name") == ["n2", "n2", "n3", "n3"]
    assert set(table.column("State")) == {"up"}
    assert all(up.startswith("0:00:") for up in table.column("Up"))
    to_n2 = dict(zip(HEAD, table.rows[0], strict=True))
    from_n2 = dict(zip(HEAD, table.rows[1], strict=True))
    assert (to_n2["Registrations sent"], to_n2["Registrations held"]) == ("3", "0")
    assert (from_n2["Registrations sent"], from_n2["Registrations held"]) == ("0", "3")
    assert set(table.column("Refused")) == {"0"}
    ins, outs = to_n2["Messages in/out"].split(" / ")
    assert int(ins) > 0
    assert int(outs) > 0
    assert to_n2["Bytes in/out"].endswith(" B")


async def test_the_overview_shows_the_sessions_too(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(_status(_streams())))
    page = await _page(client, "/")
    assert set(page.blocks) == {"sites", "peers", "sessions", "map-cache"}
    assert len(page.blocks["sessions"].rows) == 4


async def test_with_reliable_transport_off_the_section_is_left_out(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(make_app(_status(_streams(reliable=False))))
    for path in ("/", "/peers"):
        page = await _page(client, path)
        assert "sessions" not in page.blocks, path
        assert "Reliable-transport sessions" not in page.text, path
    # The live model says why (page.js hides a hidden block's section).
    model = await _model(client, "peers")
    block = model["blocks"]["sessions"]
    assert block["hidden"] is True
    assert block["text"] == views.SESSIONS_OFF
    client.app[CLOSING].set()


async def test_no_session_yet_says_how_one_opens(aiohttp_client: Any) -> None:
    streams = reliable_mesh(2)  # not run: nobody has registered yet
    client = await aiohttp_client(make_app(_status(streams)))
    table = (await _page(client, "/peers")).blocks["sessions"]
    assert table.rows == []
    assert table.notes == [views.SESSIONS_EMPTY]


async def test_the_live_model_carries_the_sessions(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(_status(_streams())))
    for view in ("overview", "peers"):
        block = (await _model(client, view))["blocks"]["sessions"]
        assert block["kind"] == "table"
        assert [c["text"] for c in block["columns"]] == HEAD
        assert len(block["rows"]) == 4
    client.app[CLOSING].set()


async def test_page_js_shows_or_hides_a_section_with_its_block(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(make_app(_status(_streams())))
    js = await (await client.get("/assets/page.js")).text()
    assert "section.hidden = Boolean(blocks[name].hidden)" in js


# ---------------------------------------------------------------- held registrations
async def test_held_registrations_show_session_instead_of_a_countdown(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(make_app(_status(_streams())))
    sites = (await _page(client, "/sites")).blocks["sites"]
    held = sites.row("EID-Prefix or (S,G)", "[0]10.2.0.0/32")
    assert held["TTL left"] == views.SESSION_TTL
    own = sites.row("EID-Prefix or (S,G)", "[0]10.1.0.0/32")
    assert own["TTL left"].startswith("0:0")
    peers = (await _page(client, "/peers")).blocks["peers"]
    assert peers.row("RLOC", str(N2))["TTL left"] == views.SESSION_TTL
    assert set(peers.column("State")) == {"current"}


async def test_a_held_site_detail_and_lookup_say_session(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app(_status(_streams())))
    page = await _page(client, "/sites/" + quote("[0]10.3.0.0/32", safe=""))
    assert page.blocks["facts"].facts["TTL left"] == views.SESSION_TTL
    assert page.blocks["registrations"].column("TTL left") == [views.SESSION_TTL]
    answer = await _page(client, "/lookup?in=sites&eid=10.3.0.0")
    assert answer.blocks["lookup"].facts["TTL left"] == views.SESSION_TTL


async def test_the_api_serves_held_registrations_as_strict_json(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(make_app(_status(_streams())))
    for path in ("/api/v1/node", "/api/v1/sites", "/api/v1/peers"):
        resp = await client.get(path)
        text = await resp.text()
        assert resp.status == 200, text
        assert "Infinity" not in text, path
        json.loads(text, parse_constant=_no_constants)


def _no_constants(name: str) -> Any:
    raise AssertionError(f"{name} in JSON")
