"""The /mesh page and its JSON: the mesh model (members, links, relayed xTRs, bounds),
/api/v1/mesh, /api/v1/traffic, and the vendored Chart.js."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from aiohttp.test_utils import TestClient

from decent.net.traffic import TrafficHistory
from decent.web import meshview
from decent.web.app import LIVE_REFRESH, SECURITY_HEADERS, make_app
from tests.web.test_app import IPS, _status
from tests.web.timefields import assert_time_fields

Client = TestClient[Any, Any]
AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NOW = 1_800_000_000.0
ME, P2, P3, P4 = "198.18.45.11", "198.18.45.12", "198.18.45.13", "198.18.45.14"
XTR = "192.0.2.50"


def _peer(rloc: str, state: str = "current", **kw: Any) -> dict[str, Any]:
    return {"rloc": rloc, "name": f"n{rloc[-1]}", "self": rloc == ME, "state": state}


def _site(
    eid: str, *regs: dict[str, Any], site: str = "decent-group"
) -> dict[str, Any]:
    return {"site": site, "eid": eid, "registrations": list(regs)}


def _reg(
    registrant: str, via: str | None = None, ttl_s: float = 100.0
) -> dict[str, Any]:
    return {"registrant": registrant, "via": via, "ttl_s": ttl_s}


def _cache(*rlocs: tuple[str, str]) -> dict[str, Any]:
    return {
        "eid": "[0]10.0.0.0/8",
        "rlocs": [{"address": a, "state": s, "rtt_ms": None} for a, s in rlocs],
    }


def test_members_link_to_this_node_up_or_down_by_probe_else_by_aging() -> None:
    peers = [_peer(ME), _peer(P2), _peer(P3, "aging-out"), _peer(P4)]
    sites = [
        _site("[0]1.1.1.1/32", _reg(ME)),
        _site("[0]2.2.2.2/32", _reg(P2)),
        _site("[0]'n2'", _reg(P2)),
        _site("[0]3.3.3.3/32", _reg(P3)),
    ]
    # The map-cache has probed P4's RLOC down, and P2's up on one entry of two.
    cache = [_cache((P4, "down")), _cache((P2, "down")), _cache((P2, "up"))]
    model = meshview.mesh(peers, sites, cache)
    assert model["self"] == ME
    members = {m["rloc"]: m for m in model["members"]}
    assert members[ME]["self"] is True
    assert {r: m["registrations"] for r, m in members.items()} == {
        ME: 1,
        P2: 2,
        P3: 1,
        P4: 0,
    }
    assert members[P3]["state"] == "aging-out"
    links = {link["to"]: link for link in model["links"]}
    assert set(links) == {P2, P3, P4}  # no link to itself
    assert all(
        link["from"] == ME and link["kind"] == "direct" for link in links.values()
    )
    assert (links[P2]["state"], links[P2]["source"]) == ("up", "rloc-probe")
    assert (links[P4]["state"], links[P4]["source"]) == ("down", "rloc-probe")
    assert (links[P3]["state"], links[P3]["source"]) == ("down", "membership")
    assert model["xtrs"] == []
    assert model["not_shown"] == {"members": 0, "xtrs": 0}


def test_a_plain_xtr_hangs_off_the_member_that_relays_it() -> None:
    peers = [_peer(ME), _peer(P2)]
    sites = [
        _site("[0]192.0.2.0/24", _reg(XTR, via=P2), site="branch"),
        _site("[0]198.51.100.0/24", _reg(XTR, via=P2), site="branch"),
        _site("[0]203.0.113.0/24", _reg("192.0.2.51", via=P2, ttl_s=-1.0)),
    ]
    model = meshview.mesh(peers, sites, [])
    [xtr, gone] = model["xtrs"]
    assert xtr == {
        "rloc": XTR,
        "site": "branch",
        "via": P2,
        "state": "up",
        "registrations": 2,
    }
    assert gone["state"] == "down"
    relayed = [link for link in model["links"] if link["kind"] == "relayed"]
    assert [(link["from"], link["to"], link["state"]) for link in relayed] == [
        (P2, XTR, "up"),
        (P2, "192.0.2.51", "down"),
    ]
    assert {m["rloc"]: m["relayed"] for m in model["members"]} == {ME: 0, P2: 3}


def test_the_map_is_bounded_and_says_what_it_left_out() -> None:
    peers = [_peer(ME)] + [_peer(f"10.1.{i // 250}.{i % 250}") for i in range(200)]
    sites = [
        _site(f"[0]10.2.0.{i}/32", _reg(f"10.3.0.{i}", via=ME)) for i in range(100)
    ]
    model = meshview.mesh(peers, sites, [])
    assert len(model["members"]) == meshview.MAX_MEMBERS
    assert len(model["xtrs"]) == meshview.MAX_XTRS
    assert model["not_shown"] == {
        "members": 201 - meshview.MAX_MEMBERS,
        "xtrs": 100 - meshview.MAX_XTRS,
    }
    assert len(model["links"]) <= meshview.MAX_MEMBERS + meshview.MAX_XTRS


async def test_the_mesh_page_loads_its_scripts_under_the_same_csp(
    aiohttp_client: Any,
) -> None:
    _, status = _status()
    client: Client = await aiohttp_client(make_app(status))
    resp = await client.get("/mesh")
    text = await resp.text()
    assert resp.status == 200
    for key, value in SECURITY_HEADERS.items():
        assert resp.headers[key] == value
    assert "unsafe" not in SECURITY_HEADERS["Content-Security-Policy"]
    scripts = re.findall(r'<script src="([^"]+)" defer></script>', text)
    assert scripts == ["/assets/page.js", "/assets/chart.min.js", "/assets/mesh.js"]
    assert "<script>" not in text
    assert "style=" not in text
    for canvas in ("mesh-map", "traffic-bytes", "traffic-packets", "traffic-control"):
        assert f'<canvas id="{canvas}"' in text
    # Every page links to it.
    overview = await (await client.get("/")).text()
    assert '<a href="/mesh">Mesh</a>' in overview


async def test_api_mesh_from_a_converged_lab(aiohttp_client: Any) -> None:
    _, status = _status()
    client: Client = await aiohttp_client(make_app(status))
    resp = await client.get("/api/v1/mesh")
    assert resp.status == 200
    body = await resp.json()
    assert_time_fields(body, "/api/v1/mesh")
    assert body == await (await client.get("/api/mesh")).json()  # the alias
    assert body["self"] == str(IPS[0])
    assert body["node"]["name"] == "n1"
    assert body["node"]["health"]["ok"] is True
    assert sorted(m["rloc"] for m in body["members"]) == [str(ip) for ip in IPS]
    # Each member registered its EID, its name and its membership.
    assert {m["registrations"] for m in body["members"]} == {3}
    assert sorted(link["to"] for link in body["links"]) == [str(ip) for ip in IPS[1:]]
    assert {link["state"] for link in body["links"]} == {"up"}


async def test_api_traffic_without_and_with_a_history(aiohttp_client: Any) -> None:
    _, status = _status()
    client: Client = await aiohttp_client(make_app(status))
    assert await (await client.get("/api/v1/traffic")).json() == meshview.NO_TRAFFIC

    history = TrafficHistory(10.0)
    n2 = str(IPS[1])
    history.sample(0.0, NOW, {n2: (0, 0, 0, 0), "192.0.2.9": (0, 0, 0, 0)}, (0, 0))
    history.sample(
        10.0, NOW + 10, {n2: (10, 10, 840, 840), "192.0.2.9": (0, 0, 0, 0)}, (30, 40)
    )
    client = await aiohttp_client(make_app(status, traffic=history))
    body = await (await client.get("/api/v1/traffic")).json()
    assert_time_fields(body, "/api/v1/traffic")
    assert body["sample_s"] == 10.0
    [sample] = body["samples"]
    assert AT.match(sample["sampled_at"])
    assert (sample["control_received_per_s"], sample["control_sent_per_s"]) == (3, 4)
    # The idle peer comes second (fewest bytes), both named as the peers table.
    assert body["peers"] == [
        {"rloc": n2, "name": "n2"},
        {"rloc": "192.0.2.9", "name": None},
    ]
    assert sample["peers"] == [[1.0, 1.0, 84.0, 84.0], [0.0, 0.0, 0.0, 0.0]]


async def test_chart_js_is_vendored_with_its_licence(aiohttp_client: Any) -> None:
    assets = resources.files("decent.web").joinpath("assets")
    licence = assets.joinpath("chart.LICENSE.txt").read_text()
    assert "Chart.js v3.9.1" in licence
    assert "MIT License" in licence
    _, status = _status()
    client: Client = await aiohttp_client(make_app(status))
    for name in ("chart.min.js", "mesh.js"):
        resp = await client.get(f"/assets/{name}")
        assert resp.status == 200
        assert resp.content_type == "text/javascript"
    head = (await (await client.get("/assets/chart.min.js")).text())[:200]
    assert "Chart.js v3.9.1" in head
    # The licence is shipped, not served: /assets serves only what pages load.
    assert (await client.get("/assets/chart.LICENSE.txt")).status == 404


def test_pages_say_stalled_only_after_several_missed_pushes() -> None:
    """The server pushes each live view at least every `live_refresh` s
    (decent.web.live), 1 s by default; page.js and mesh.js call a silence
    of several of those "stalled", never a single late push."""
    _, status = _status()
    refresh_ms = make_app(status)[LIVE_REFRESH] * 1000
    assert refresh_ms <= 1000
    assets = resources.files("decent.web").joinpath("assets")
    for name in ("page.js", "mesh.js"):
        found = re.search(r"const STALL_MS = (\d+);", assets.joinpath(name).read_text())
        assert found is not None, name
        assert int(found[1]) >= 3 * refresh_ms, name
