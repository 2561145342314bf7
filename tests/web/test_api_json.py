"""The JSON API: the time convention and /api/v1 on every endpoint, data plane on."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from decent.net.status import NodeStatus
from decent.peer.display import time_text, time_value
from decent.web.app import make_app
from tests.peer.conftest import N1, N2
from tests.peer.mesh import Mesh, eid4, eid6, mesh, udp
from tests.web.timefields import assert_time_fields, time_field_errors

#: The wall clock when the simulated one reads 0.
EPOCH = 1_796_083_200.0
#: Query strings for the endpoints that need one.
QUERIES = {
    "lookup": ["?eid=2.2.2.2", "?eid=9.9.9.9", "?eid=2.2.2.2&in=map-cache"],
}


def _dataplane(m: Mesh, i: int) -> dict[str, Any]:
    """What decent.daemon._dataplane_status gives for node i (no TUN)."""
    dp = m.dps[i]
    return {
        "enabled": True,
        "running": True,
        "encrypt": dp.node.config.encrypt,
        "cipher": "aes-128-gcm",
        **dp.stats(),
        "peers": dp.sealing.peers(m.net.now),
        "traffic": dp.traffic.rows(),
    }


def _talking_mesh() -> Mesh:
    """n1 and n2 ping each other sealed, and n1 RLOC-probes n2."""
    m = mesh(encrypt="required", probe_interval=10.0)
    ping = udp(eid4(1), eid4(2), n=56)
    assert m.send(0, ping) == []  # held while the key exchange runs
    m.net.advance(0.5)
    assert m.carry(m.dps[0].packets_to_send(), N1) == [ping]
    pong = udp(eid4(2), eid4(1), n=56)
    out = m.send(1, pong)
    m.net.advance(0.5)
    out += m.dps[1].packets_to_send()
    assert m.carry(out, N2) == [pong]
    m.net.advance(25.0)  # probes go out and come back
    return m


def _status(m: Mesh) -> NodeStatus:
    return NodeStatus(
        m.nodes[0],
        lambda: m.net.now,
        name="n1",
        started=0.0,
        register_interval=60.0,
        dataplane=lambda: _dataplane(m, 0),
        wall=lambda: EPOCH + m.net.now,
    )


def _api_paths(client: TestClient[Any, Any]) -> list[str]:
    """Every GET path of the JSON API, the unversioned aliases included."""
    paths = sorted(
        {
            route.resource.canonical
            for route in client.app.router.routes()
            if route.method == "GET"
            and route.resource is not None
            and route.resource.canonical.startswith("/api/")
        }
    )
    return [
        path + query
        for path in paths
        for query in QUERIES.get(path.rpartition("/")[2], [""])
    ]


async def _json(client: TestClient[Any, Any], path: str) -> Any:
    resp = await client.get(path)
    assert resp.status == 200, (path, await resp.text())
    return await resp.json()


async def test_every_endpoint_follows_the_time_convention_and_v1_equals_its_alias(
    aiohttp_client: Any,
) -> None:
    m = _talking_mesh()
    client = await aiohttp_client(make_app(_status(m)))
    paths = _api_paths(client)
    versioned = [p for p in paths if p.startswith("/api/v1/")]
    assert {p.partition("?")[0] for p in versioned} >= {
        f"/api/v1/{name}"
        for name in ("node", "sites", "peers", "map-cache", "rejections", "lookup")
    }
    assert len(paths) == 2 * len(versioned)
    for path in versioned:
        body = await _json(client, path)
        assert_time_fields(body, path)
        alias = "/api/" + path.removeprefix("/api/v1/")
        assert await _json(client, alias) == body, alias
    node = await _json(client, "/api/v1/node")
    assert node["started_at"] == time_text(EPOCH)
    assert node["uptime_s"] == pytest.approx(m.net.now)
    # Times agree with the wall clock given, to the millisecond.
    site = (await _json(client, "/api/v1/sites"))[0]
    first = time_value(site["first_registered_at"])
    assert first is not None
    assert EPOCH <= first <= EPOCH + m.net.now
    assert site["record_ttl_min"] >= 1


async def test_peers_carry_their_eids_traffic_encryption_and_rtt(
    aiohttp_client: Any,
) -> None:
    m = _talking_mesh()
    client = await aiohttp_client(make_app(_status(m)))
    peers = {p["rloc"]: p for p in await _json(client, "/api/v1/peers")}
    n2 = peers[str(N2)]
    assert n2["name"] == "n2"
    # Its IP and name EIDs; the group's membership EID is nobody's.
    assert n2["eids"] == ["[0]'n2'", f"[0]{eid4(2)}/32", f"[0]{eid6(2)}/128"]
    assert n2["encryption"] == "encrypted"
    traffic = n2["traffic"]
    assert (traffic["tx_packets"], traffic["rx_packets"]) == (1, 1)
    assert (
        traffic["tx_bytes"] == traffic["rx_bytes"] == len(udp(eid4(1), eid4(2), n=56))
    )
    assert traffic["last_tx_at"] is not None
    assert traffic["last_rx_at"] is not None
    assert n2["rtt_ms"] is not None
    assert n2["rtt_ms"] > 0
    # The node's data-plane view: one row per peer RLOC, like `wg show`.
    node = await _json(client, "/api/v1/node")
    [row] = [p for p in node["dataplane"]["peers"] if p["rloc"] == str(N2)]
    assert (row["name"], row["state"], row["rx_packets"], row["tx_packets"]) == (
        "n2",
        "encrypted",
        1,
        1,
    )
    assert row["rtt_ms"] == n2["rtt_ms"]
    assert row["since_at"] is not None
    assert "since_s" not in row
    # /metrics: packets and bytes per peer RLOC and direction.
    metrics = await (await client.get("/metrics")).text()
    assert (
        f'decent_dataplane_peer_packets_total{{direction="rx",rloc="{N2}"}} 1'
        in metrics.splitlines()
    )
    assert (
        f'decent_dataplane_peer_packets_total{{direction="tx",rloc="{N2}"}} 1'
        in metrics.splitlines()
    )


def test_the_checker_names_every_unconventional_field() -> None:
    doc = {
        "ttl": 60,
        "uptime": 1.0,
        "first_seen": 3.0,
        "last": 2.0,
        "records": [{"age": 1, "expires": 5, "rtt": 0.1}],
        "confirmed": None,
        "since": 4,
        "last_registerer": "192.0.2.1",  # who, not when
        "registered": True,  # whether, not when
        "ok_at": "2026-12-05T16:25:50.123Z",
        "bad_at": 12.5,
        "late_at": "2026-12-05T16:25:50Z",  # no milliseconds
        "ttl_s": "60",
        "ttl_min": 1,
        "rtt_ms": 0.5,
        "counters": {"drop.ttl": 3},  # counter names are not fields
    }
    errors = time_field_errors(doc)
    flagged = {e.partition(":")[0] for e in errors}
    assert flagged == {
        "$.ttl",
        "$.uptime",
        "$.first_seen",
        "$.last",
        "$.records[0].age",
        "$.records[0].expires",
        "$.records[0].rtt",
        "$.confirmed",
        "$.since",
        "$.bad_at",
        "$.late_at",
        "$.ttl_s",
    }
    with pytest.raises(AssertionError, match=r"\$\.ttl"):
        assert_time_fields(doc)
