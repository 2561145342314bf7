"""Pull mode on the status pages: the Map-Server sets, failing DNS, a lookup's why."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient

from decent.client.api import _status_text
from decent.net.status import NodeStatus
from decent.web import views
from decent.web.app import make_app
from decent.wire import Eid
from tests.peer.pullnet import SUFFIX, PullNode, SimDns, host_eid, pull_mesh, rloc
from tests.peer.simnet import SimNet
from tests.web.pagetext import Page
from tests.web.test_app import _status as push_status
from tests.web.test_nat_view import _model

Client = TestClient[Any, Any]
EPOCH = 1_796_083_200.0
SET1 = f"1.{SUFFIX}"
HOSTILE = "SERVFAIL <script>alert(1)</script>"
SETS_HEAD = [c["text"] for c in views.PULL_COLUMNS]


def _mesh(seconds: float = 30.0) -> tuple[SimNet, list[PullNode], SimDns]:
    net, nodes, dns = pull_mesh()
    net.run(seconds)
    return net, nodes, dns


def _status(net: SimNet, node: PullNode, name: str = "n1") -> NodeStatus:
    return NodeStatus(
        node,
        lambda: net.now,
        wall=lambda: EPOCH + net.now,
        name=name,
        started=0.0,
        register_interval=node.config.register_interval,
    )


async def _html(client: Client, path: str, code: int = 200) -> str:
    resp = await client.get(path)
    text = await resp.text()
    assert resp.status == code, text
    return text


def _fail_set1(net: SimNet, nodes: list[PullNode], dns: SimDns, reason: str) -> None:
    """Set 1's name stops resolving; run until node 1 has noticed."""
    dns.failing[SET1] = reason
    pull = nodes[0].pull
    assert pull is not None
    end = net.now + dns.ttl + 10.0
    while not pull.sets[1].error:
        assert net.now < end, "the failure was never noticed"
        net.run(net.now + 1.0)


async def test_the_overview_shows_the_mode_and_every_set_ours_marked(
    aiohttp_client: Any,
) -> None:
    net, nodes, _ = _mesh()
    client = await aiohttp_client(make_app(_status(net, nodes[0])))
    html = await _html(client, "/")
    page = Page(html)
    assert page.header["mode"] == "pull"
    assert page.header["health"] == "ok (6 members)"
    assert "Map-Server sets (pull mode)" in page.text
    facts = page.blocks["pull"].facts
    assert facts["Modulus"] == "3"
    assert facts["Hash"].startswith("rfc9962: SHA-256")
    assert facts["Hash mask"] == "0 (all of it)"
    assert facts["DNS names"] == f"<index>.{SUFFIX}"
    assert facts["This node serves"] == "set 0"
    assert facts["DNS"] == "all 3 resolved"
    sets = page.blocks["pull-sets"]
    assert sets.head == SETS_HEAD
    assert sets.column("DNS name") == [f"{k}.{SUFFIX}" for k in range(3)]
    assert sets.column("Map-Servers") == [
        f"{rloc(2 * k + 1)}\n{rloc(2 * k + 2)}" for k in range(3)
    ]
    assert sets.column("This node") == ["ours (Map-Server)", "-", "-"]
    assert sets.column("State") == ["resolved"] * 3
    # The set this node serves stands out; no set is failing.
    assert html.count('<tr class="ours">') == 1
    assert 'class="failing"' not in html


async def test_a_failing_set_is_named_highlighted_and_escaped(
    aiohttp_client: Any,
) -> None:
    net, nodes, dns = _mesh()
    _fail_set1(net, nodes, dns, HOSTILE)
    client = await aiohttp_client(make_app(_status(net, nodes[0])))
    html = await _html(client, "/")
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html
    page = Page(html)
    reason = f"map-server set {SET1} not resolved: {HOSTILE}"
    assert page.header["health"] == f"dns failing ({reason})"
    assert page.blocks["pull"].facts["DNS"] == f"1 of 3 failing: {SET1}"
    row = page.blocks["pull-sets"].row("DNS name", SET1)
    assert row["State"] == f"not resolved: {HOSTILE}, last addresses kept"
    assert row["Map-Servers"] == f"{rloc(3)}\n{rloc(4)}"
    assert html.count('<tr class="failing">') == 1
    resp = await client.get("/healthz")
    assert resp.status == 503
    health = await resp.json()
    assert health["status"] == "dns failing"
    assert health["reason"] == reason
    assert health["failing"][0]["name"] == SET1


async def test_the_lookup_page_explains_the_set(aiohttp_client: Any) -> None:
    net, nodes, _ = _mesh()
    status = _status(net, nodes[0])
    pull = nodes[0].pull
    assert pull is not None
    client = await aiohttp_client(make_app(status))
    for owner in range(1, 7):
        eid = host_eid(owner)
        k = pull.index(eid)
        why = f'sha256("{eid}") mod 3 = {k} → {k}.{SUFFIX}'
        for where in ("sites", "map-cache"):
            html = await _html(client, f"/lookup?in={where}&eid={eid.address}")
            facts = Page(html).blocks["lookup"].facts
            assert facts["Map-Server set"] == f"{k} ({k}.{SUFFIX})", (eid, where)
            assert facts["Chosen by"] == why
            assert facts["Hashed string"] == str(eid)
            assert facts["Set's Map-Servers"] == f"{rloc(2 * k + 1)}\n{rloc(2 * k + 2)}"
            assert facts["This node"].startswith("in this set" if k == 0 else "not in")
        answer = await (await client.get(f"/api/v1/lookup?eid={eid.address}")).json()
        assert answer["pull"]["why"] == why


async def test_the_live_model_carries_the_sets(aiohttp_client: Any) -> None:
    net, nodes, dns = _mesh()
    _fail_set1(net, nodes, dns, "SERVFAIL")
    client = await aiohttp_client(make_app(_status(net, nodes[0])))
    model = await _model(client, "overview")
    assert model["header"]["mode"] == "pull"
    sets = model["blocks"]["pull-sets"]
    assert not sets.get("hidden")
    assert [r["cls"] for r in sets["rows"]] == ["ours", "failing", ""]
    assert sets["rows"][1]["cells"][-1] == {
        "text": "not resolved: SERVFAIL, last addresses kept",
        "cls": "bad",
    }


async def test_a_push_node_has_no_sets_block(aiohttp_client: Any) -> None:
    _, status = push_status()
    client = await aiohttp_client(make_app(status))
    page = Page(await _html(client, "/"))
    assert not {"pull", "pull-sets"} & set(page.blocks)
    assert "Map-Server sets" not in page.text
    model = await _model(client, "overview")
    assert model["blocks"]["pull-sets"]["hidden"] is True


def test_decent_status_prints_the_sets() -> None:
    net, nodes, dns = _mesh()
    _fail_set1(net, nodes, dns, "SERVFAIL")
    status = _status(net, nodes[0])
    info = json.loads(json.dumps(status.node_info()))
    peers = json.loads(json.dumps(status.peers()))
    text = _status_text(info, peers, EPOCH + net.now)
    assert " mode pull " in text
    lines = text.splitlines()
    start = lines.index("Map-Server sets (pull mode)")
    block = "\n".join(lines[start : start + 25])
    assert "This node serves  set 0" in block
    assert f"1 of 3 failing: {SET1}" in block
    assert "not resolved: SERVFAIL, last addresses kept" in block
    # Push mode: no such block.
    assert "Map-Server sets" not in _status_text({**info, "pull": None}, peers)


def test_lookup_lengths_show_as_facts() -> None:
    pull = {
        "modulus": 8,
        "hash": "rfc9962",
        "hash_mask": 8,
        "dns_suffix": "ms.example",
        "lookup_lengths": [{"prefix": str(Eid.prefix("240.0.0.0/8")), "length": 24}],
        "sets": [],
        "ours": [],
    }
    items = {i["label"]: i["value"] for i in views.pull_facts(pull)["items"]}
    assert items["Lookup lengths"]["lines"] == ["[0]240.0.0.0/8 looked up as /24"]
    assert items["Hash mask"]["text"] == "8 bytes of the EID string"
    assert items["This node serves"]["text"] == "no set (DNS lists none of our RLOCs)"
