"""Layered seed-groups on the status page and API: our layer, known ones, why."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from decent.net.status import NodeStatus
from decent.web.app import make_app
from tests.peer.conftest import Traced
from tests.peer.simnet import SimNet
from tests.peer.test_layers import ip, layer_eid, mesh, resolves
from tests.web.pagetext import Page

Client = TestClient[Any, Any]


def _status(net: SimNet, node: Traced) -> NodeStatus:
    return NodeStatus(
        node,
        lambda: net.now,
        wall=lambda: 1_796_083_200.0 + net.now,
        name="l1n1",
        started=0.0,
        register_interval=node.config.register_interval,
    )


async def _html(client: Client, path: str) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == 200, text
    return text


async def test_a_layer_member_shows_its_layer_and_the_layers_it_learned(
    aiohttp_client: Any,
) -> None:
    net, nodes = mesh()
    node = nodes[(1, 1)]
    status = _status(net, node)
    info = status.node_info()
    assert info["layer"] == {
        "group": "233.252.2.2",
        "core": [str(ip(0, k)) for k in (1, 2, 3)],
        "prefixes": ["[0]10.1.0.0/16"],
        "known": [],
    }
    far = layer_eid(2, 2, 0)
    before = status.lookup(str(far.address))["layer"]
    assert before["why"].startswith("not in our layer: asked of the core")
    assert resolves(net, node, far) is not None
    info = status.node_info()
    assert info["layer"]["known"] == [
        {"prefix": "[0]10.2.0.0/16", "members": [str(ip(2, k)) for k in (1, 2, 3)]}
    ]
    answer = status.lookup(str(far.address))["layer"]
    assert answer["prefix"] == "[0]10.2.0.0/16"
    assert answer["why"].endswith("as the core's referral said")
    mine = status.lookup(str(layer_eid(1, 2, 0).address))["layer"]
    assert mine["why"] == "our layer holds it"

    client = await aiohttp_client(make_app(status))
    page = Page(await _html(client, "/"))
    facts = page.blocks["layer"].facts
    assert facts["Our layer"] == "group 233.252.2.2, serving [0]10.1.0.0/16"
    assert facts["Layers known"].startswith("[0]10.2.0.0/16: ")
    html = await _html(client, f"/lookup?in=sites&eid={far.address}")
    assert Page(html).blocks["lookup"].facts["Layer"] == answer["why"]


async def test_a_push_node_without_layers_shows_none(aiohttp_client: Any) -> None:
    net, nodes = mesh()
    status = _status(net, nodes[(0, 2)])
    assert status.node_info()["layer"] is None
    client = await aiohttp_client(make_app(status))
    page = Page(await _html(client, "/"))
    assert "layer" not in page.blocks
