"""The JSON API against a Node fed by the simulated network."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address
from typing import Any

from aiohttp.test_utils import TestClient

from decent.net.status import NOT_JOINED, NodeStatus
from decent.peer.events import (
    LocatorStateChanged,
    MapCacheCleared,
    MessageDropped,
    NotifyAcknowledged,
    RegisterAcknowledged,
    RegistrationExpired,
)
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.web.app import make_app
from decent.wire import Eid
from tests.peer.simnet import SimNet

G = IPv4Address("233.252.1.1")
IPS = [IPv4Address(f"198.18.45.{i}") for i in (11, 12, 13)]


class SimStatus(NodeStatus):
    """The status of a node on the simulated network, which has no shell to
    hand it the node's events: it drains them itself before each change
    check, as NodeShell does after each input."""

    def changes(self) -> int:
        while (event := self.node.next_event()) is not None:
            self.note(event)
        return super().changes()


def _status(
    converge: bool = True, resolve_in_process: bool = False
) -> tuple[SimNet, NodeStatus]:
    """Three members; the status is n1's (`resolve_in_process` is n1's too)."""
    net = SimNet(seed=5)
    counter = itertools.count(1)
    nodes = []
    for i, ip in enumerate(IPS):
        cfg = decent_node_config(
            name=f"n{i + 1}" if i < 2 else "<script>alert(1)</script>",
            rlocs=(ip,),
            group=G,
            key=b"k",
            xtr_id=i + 1,
            eids=(Eid.prefix(f"{i + 1}.{i + 1}.{i + 1}.{i + 1}/32"),),
            seeds=(IPS[0],) if i else (),
            resolve_in_process=resolve_in_process and i == 0,
        )
        node = Node(cfg, nonce=lambda: next(counter))
        nodes.append(node)
        if converge or i == 0:
            net.add(node, (ip, 4342), (ip, 4341))
    net.advance(3 if converge else 0)
    status = SimStatus(
        nodes[0], lambda: net.now, name="n1", started=0.0, register_interval=60.0
    )
    return net, status


async def _get(client: TestClient[Any, Any], path: str, code: int = 200) -> Any:
    resp = await client.get(path)
    assert resp.status == code, await resp.text()
    return await resp.json()


async def test_api_reports_the_whole_mapping_system(aiohttp_client: Any) -> None:
    _, status = _status()
    client = await aiohttp_client(make_app(status))
    assert await _get(client, "/healthz") == {"ok": True, "status": "ok", "members": 3}
    node = await _get(client, "/api/node")
    assert node["name"] == "n1"
    assert node["rloc"] == "198.18.45.11"
    assert node["mode"] == "replicate"
    assert node["group"] == "233.252.1.1"
    assert node["xtr_id"] == f"{1:032x}"
    assert node["counts"] == {"registrations": 7, "peers": 3, "map_cache": 1}
    assert node["counters"]["rx.map-register"] > 0

    sites = {s["eid"]: s for s in await _get(client, "/api/sites")}
    assert set(sites) >= {"[0]1.1.1.1/32", "[0]2.2.2.2/32", "[0]'n2'"}
    group = sites["[0](0.0.0.0/0, 233.252.1.1/32)"]
    assert group["group"] == "233.252.1.1/32"
    assert group["merge"] is True
    assert group["flags"] == "P-s-I-T-r-M-n"
    members = group["rlocs"][0]["rle"]
    assert [(m["address"], m["level"], m["name"]) for m in members] == [
        ("198.18.45.11", 128, "n1"),
        ("198.18.45.12", 128, "n2"),
        ("198.18.45.13", 128, "<script>alert(1)</script>"),
    ]
    assert len(group["registrations"]) == 3
    one = sites["[0]2.2.2.2/32"]
    assert one["registered"] is True
    assert one["last_registerer"] == "198.18.45.12"
    assert 0 < one["ttl_s"] <= 180
    assert one["auth"] == "hmac-sha-256"
    assert one["rlocs"][0]["address"] == "198.18.45.12"

    peers = await _get(client, "/api/peers")
    assert [(p["rloc"], p["name"], p["state"]) for p in peers][:2] == [
        ("198.18.45.11", "n1", "current"),
        ("198.18.45.12", "n2", "current"),
    ]
    (cached,) = await _get(client, "/api/map-cache")
    # The peers' Map-Notifies told n1 the membership (RFC 8378 5.3).
    assert cached["eid"] == "[0](0.0.0.0/0, 233.252.1.1/32)"
    assert cached["source"] == "map-notify"
    assert len(cached["rlocs"][0]["rle"]) == 3
    assert cached["packet-count"] == 0


async def test_lookup_gives_match_negative_or_clear_error(aiohttp_client: Any) -> None:
    _, status = _status()
    client = await aiohttp_client(make_app(status))
    hit = await _get(client, "/api/lookup?eid=2.2.2.2")
    assert hit["found"] is True
    assert hit["entry"]["eid"] == "[0]2.2.2.2/32"
    miss = await _get(client, "/api/lookup?eid=9.9.9.9")
    assert miss == {
        "query": "[0]9.9.9.9/32",
        "found": False,
        "prefix": "[0]8.0.0.0/5",
        "ttl_min": 1,
        "action": "send-map-request",
    }
    name = await _get(client, "/api/lookup?eid='n2'")
    assert name["entry"]["rlocs"][0]["address"] == "198.18.45.12"
    sg = await _get(client, "/api/lookup?eid=1.2.3.4->233.252.1.1")
    assert sg["entry"]["eid"] == "[0](0.0.0.0/0, 233.252.1.1/32)"
    bad = await _get(client, "/api/lookup?eid=banana", 400)
    assert "not an address or prefix" in bad["error"]
    # A map-cache miss says what the Map-Request would be answered with.
    cached = await _get(client, "/api/lookup?eid=2.2.2.2&in=map-cache")
    assert (cached["query"], cached["found"]) == ("[0]2.2.2.2/32", False)
    assert cached["resolver"]["found"] is True
    assert cached["resolver"]["entry"]["eid"] == "[0]2.2.2.2/32"
    nowhere = await _get(client, "/api/lookup?eid=9.9.9.9&in=map-cache")
    assert nowhere == {
        "query": "[0]9.9.9.9/32",
        "found": False,
        "resolver": {
            "found": False,
            "prefix": "[0]8.0.0.0/5",
            "ttl_min": 1,
            "action": "send-map-request",
        },
    }


async def test_clear_cache_and_revoke_are_the_only_routes_that_are_not_a_get() -> None:
    """Read-only by default: nothing but clearing the map-cache and taking a
    revocation may change the node, so nothing else answers anything but GET
    (and its HEAD)."""
    _, status = _status(converge=False)
    app = make_app(status)
    others = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method not in ("GET", "HEAD") and route.resource is not None
    }
    assert others == {
        ("POST", "/map-cache/clear"),
        ("POST", "/api/map-cache/clear"),
        ("POST", "/api/revoke"),
        ("POST", "/api/v1/map-cache/clear"),
        ("POST", "/api/v1/revoke"),
    }
    assert all(route.resource is not None for route in app.router.routes())


async def test_healthz_is_503_until_joined(aiohttp_client: Any) -> None:
    """n2 alone, its seed n1 not there: its own Map-Server lists it, which
    is no join (tests/net/test_status.py has every state)."""
    net = SimNet(seed=5)
    cfg = decent_node_config(
        name="n2", rlocs=(IPS[1],), group=G, key=b"k", xtr_id=2, seeds=(IPS[0],)
    )
    node = Node(cfg, nonce=itertools.count(1).__next__)
    net.add(node, (IPS[1], 4342), (IPS[1], 4341))
    net.advance(1)
    status = SimStatus(
        node, lambda: net.now, name="n2", started=0.0, register_interval=60.0
    )
    client = await aiohttp_client(make_app(status))
    assert await _get(client, "/healthz", 503) == {
        "ok": False,
        "status": "joining",
        "members": 1,
        "reason": "no member has accepted us yet",
    }
    net.advance(3 * 60.0)
    health = await _get(client, "/healthz", 503)
    assert (health["status"], health["reason"]) == ("not joined", NOT_JOINED)


async def test_the_first_member_alone_is_healthy(aiohttp_client: Any) -> None:
    net, status = _status(converge=False)  # n1: no seeds, nobody else yet
    net.advance(1)
    client = await aiohttp_client(make_app(status))
    assert await _get(client, "/healthz") == {
        "ok": True,
        "status": "alone",
        "members": 1,
    }


def test_the_change_number_moves_with_the_events_the_pages_show() -> None:
    _, status = _status()
    before = status.changes()  # drains what converging queued
    eid, peer = Eid.prefix("2.2.2.2/32"), (IPS[1], 4342)
    for quiet in (MessageDropped(peer, "decode-error"), NotifyAcknowledged(peer, 1)):
        status.note(quiet)
    assert status.changes() == before
    for shown in (
        RegistrationExpired(eid, 2),
        MapCacheCleared(3),
        LocatorStateChanged(eid, str(IPS[1]), False),
        RegisterAcknowledged(peer, 9),
    ):
        status.note(shown)
    assert status.changes() == before + 4


def test_clearing_the_map_cache_reports_its_events_through_the_shell() -> None:
    _, plain = _status()
    node = plain.node
    while node.next_event() is not None:
        pass
    seen: list[object] = []

    def flush() -> None:  # the shell's: drain the node's events to subscribers
        while (event := node.next_event()) is not None:
            seen.append(event)
            status.note(event)

    status = NodeStatus(
        node, plain.clock, name="n1", started=0.0, register_interval=60.0, flush=flush
    )
    assert status.clear_map_cache() == 1
    assert seen == [MapCacheCleared(1)]
    assert status.changes() == 1
