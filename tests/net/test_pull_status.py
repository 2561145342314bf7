"""NodeStatus of pull-mode nodes: sets in /api/node, DNS in /healthz, lookups' why."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from decent.net.status import JOIN_PERIODS, NodeStatus
from decent.peer.display import time_text
from decent.peer.mapping.pull import PullMapping
from decent.peer.mapping.pullhash import LISPERS, index_of
from decent.peer.node import Node
from decent.wire import Eid
from tests.net.test_status import _node as push_node
from tests.peer.pullnet import SUFFIX, PullNode, SimDns, host_eid, pull_mesh, rloc
from tests.peer.simnet import SimNet
from tests.web.timefields import assert_time_fields

#: The wall clock when the simulated clock reads 0.
EPOCH = 1_796_083_200.0
SET1 = f"1.{SUFFIX}"


def _status(net: SimNet, node: Node, name: str = "n1") -> NodeStatus:
    return NodeStatus(
        node,
        lambda: net.now,
        wall=lambda: EPOCH + net.now,
        name=name,
        started=0.0,
        register_interval=node.config.register_interval,
    )


def _run_until(
    net: SimNet, done: Callable[[], bool], seconds: float, step: float = 1.0
) -> None:
    """Run the network until done() holds, failing after `seconds`."""
    end = net.now + seconds
    while not done():
        assert net.now < end, "condition not reached in time"
        net.run(net.now + step)


def _pull(node: PullNode) -> PullMapping:
    assert node.pull is not None
    return node.pull


# ---------------------------------------------------------------- /api/node
def test_node_info_says_pull_and_lists_every_set_with_ours_marked() -> None:
    net, nodes, dns = pull_mesh()
    net.run(1.0)
    status = _status(net, nodes[0])
    info = status.node_info()
    assert info["mode"] == "pull"
    assert info["group"] is None
    pull = info["pull"]
    assert pull["modulus"] == 3
    assert pull["hash"] == "rfc9962"
    assert pull["hash_mask"] == 0
    assert pull["dns_suffix"] == SUFFIX
    assert pull["lookup_lengths"] == []
    assert pull["ours"] == [0]
    sets = pull["sets"]
    assert [s["index"] for s in sets] == [0, 1, 2]
    assert [s["name"] for s in sets] == [f"{k}.{SUFFIX}" for k in range(3)]
    assert [s["addresses"] for s in sets] == [
        [str(rloc(2 * k + 1)), str(rloc(2 * k + 2))] for k in range(3)
    ]
    assert [s["ours"] for s in sets] == [True, False, False]
    node_sets = _pull(nodes[0]).sets
    for row, s in zip(sets, node_sets, strict=True):
        assert s.resolved_at is not None
        assert row["resolved_at"] == time_text(EPOCH + s.resolved_at)
        # Resolved again at the records' TTL (60 s), counted from the answer.
        assert row["refresh_in_s"] == pytest.approx(dns.ttl - (net.now - s.resolved_at))
        assert row["error"] is None
        assert row["failures"] == 0
    # The time and unit convention of the rest of the API holds here too.
    assert_time_fields(info, "/api/v1/node")
    # Node 3 is in set 1, not set 0.
    assert _status(net, nodes[2]).node_info()["pull"]["ours"] == [1]


def test_node_info_shows_the_hash_mask_and_lookup_lengths() -> None:
    ranges = ((Eid.prefix("10.0.0.0/8"), 16), (Eid.prefix("10.3.0.0/16"), 24))
    net, nodes, _ = pull_mesh(hash_mask=6, lookup_lengths=ranges)
    net.run(1.0)
    pull = _status(net, nodes[0]).node_info()["pull"]
    assert pull["hash_mask"] == 6
    assert pull["lookup_lengths"] == [
        {"prefix": "[0]10.0.0.0/8", "length": 16},
        {"prefix": "[0]10.3.0.0/16", "length": 24},
    ]


def test_a_push_mode_node_has_no_pull_section() -> None:
    net = SimNet(seed=1)
    node = push_node(0)
    net.add(node, (node.config.rlocs[0], 4342))
    info = _status(net, node).node_info()
    assert info["mode"] == node.config.group_mode == "replicate"
    assert info["pull"] is None
    assert "pull" not in _status(net, node).lookup("1.1.1.1")


# ---------------------------------------------------------------- /healthz
def test_health_is_ok_once_every_set_is_resolved() -> None:
    net, nodes, _ = pull_mesh()
    net.run(1.0)
    health = _status(net, nodes[0]).health()
    assert health == {"ok": True, "status": "ok", "members": 6}


def test_health_says_dns_failing_naming_the_set_and_keeping_its_addresses() -> None:
    net, nodes, dns = pull_mesh()
    net.run(1.0)
    status = _status(net, nodes[0])
    dns.failing[SET1] = "SERVFAIL"
    pull = _pull(nodes[0])
    _run_until(net, lambda: pull.sets[1].error != "", dns.ttl + 10.0)
    health = status.health()
    assert health["ok"] is False
    assert health["status"] == "dns failing"
    assert health["reason"] == f"map-server set {SET1} not resolved: SERVFAIL"
    # The set's last addresses are still used.
    assert health["failing"] == [
        {
            "name": SET1,
            "reason": "SERVFAIL",
            "addresses_kept": [str(rloc(3)), str(rloc(4))],
        }
    ]
    row = status.node_info()["pull"]["sets"][1]
    assert row["error"] == "SERVFAIL"
    assert row["failures"] >= 1
    assert row["addresses"] == [str(rloc(3)), str(rloc(4))]
    # DNS answers again: ok at the next retry (back-off up to dns_refresh).
    del dns.failing[SET1]
    _run_until(net, lambda: status.health()["ok"], 400.0)
    assert status.health()["status"] == "ok"
    assert status.node_info()["pull"]["sets"][1]["error"] is None


def test_every_failing_set_is_named_even_before_any_answer() -> None:
    dns = SimDns(
        {f"{k}.{SUFFIX}": [rloc(2 * k + 1), rloc(2 * k + 2)] for k in range(3)},
        failing={SET1: "SERVFAIL", f"2.{SUFFIX}": "timeout"},
    )
    net, nodes, _ = pull_mesh(dns=dns)
    net.run(1.0)
    health = _status(net, nodes[0]).health()
    assert health["status"] == "dns failing"
    assert health["reason"] == (
        f"map-server set {SET1} not resolved: SERVFAIL; "
        f"map-server set 2.{SUFFIX} not resolved: timeout"
    )
    assert [f["addresses_kept"] for f in health["failing"]] == [[], []]


def test_health_is_resolving_before_dns_answers_and_not_ok_after_the_deadline() -> None:
    dns = SimDns(
        {f"{k}.{SUFFIX}": [rloc(2 * k + 1), rloc(2 * k + 2)] for k in range(3)},
        delay=1e6,  # DNS never answers within the test
    )
    net, nodes, _ = pull_mesh(dns=dns)
    status = _status(net, nodes[0])
    deadline = JOIN_PERIODS * nodes[0].config.register_interval
    net.run(1.0)
    health = status.health()
    assert health["status"] == "resolving"
    assert health["ok"] is True
    assert "3 of 3" in health["reason"]
    net.run(deadline + 1.0)
    health = status.health()
    assert health["status"] == "resolving"
    assert health["ok"] is False
    for k in range(3):
        assert f"{k}.{SUFFIX}" in health["reason"]


# ---------------------------------------------------------------- lookups
def test_lookup_explains_the_set_as_pull_index_chooses_it() -> None:
    net, nodes, _ = pull_mesh()
    net.run(30.0)
    status = _status(net, nodes[0])
    pull = _pull(nodes[0])
    for owner in range(1, 7):
        for j in range(2):
            eid = host_eid(owner, j)
            answer = status.lookup(str(eid.address))
            choice = answer["pull"]
            k = pull.index(eid)
            assert choice["index"] == k
            assert choice["string"] == str(eid)
            assert index_of(choice["string"], 3) == k
            assert choice["hash"] == "rfc9962"
            assert choice["name"] == f"{k}.{SUFFIX}"
            assert choice["addresses"] == [str(rloc(2 * k + 1)), str(rloc(2 * k + 2))]
            assert choice["ours"] is (k == 0)
            assert choice["why"] == f'sha256("{eid}") mod 3 = {k} → {k}.{SUFFIX}'
            # Only the set's members hold the registration.
            assert answer["found"] is (k == 0)


def test_lookup_shows_the_masked_widened_string_that_is_hashed() -> None:
    ranges = ((Eid.prefix("10.0.0.0/8"), 16),)
    net, nodes, _ = pull_mesh(hash_mask=9, lookup_lengths=ranges)
    net.run(1.0)
    status = _status(net, nodes[0])
    pull = _pull(nodes[0])
    eid = Eid.prefix("10.4.7.9/32")
    choice = status.lookup("10.4.7.9")["pull"]
    # Widened to /16 (RFC 9962 5.2), then cut to 9 bytes.
    assert choice["string"] == "[0]10.4.0.0/16"[:9] == "[0]10.4.0"
    assert choice["index"] == pull.index(eid) == index_of("[0]10.4.0", 3)
    assert choice["why"].startswith('sha256("[0]10.4.0") mod 3 = ')


def test_lookup_explains_the_lispers_hash() -> None:
    net, nodes, _ = pull_mesh(hash=LISPERS)
    net.run(1.0)
    status = _status(net, nodes[0])
    pull = _pull(nodes[0])
    for owner in range(1, 7):
        eid = host_eid(owner)
        choice = status.lookup(str(eid.address))["pull"]
        k = pull.index(eid)
        assert choice["hash"] == LISPERS
        assert choice["index"] == k == index_of(str(eid), 3, LISPERS)
        assert choice["why"] == (
            f'hmac-sha256("lisp-decent", "{eid}")[:6] mod 3 = {k} → {k}.{SUFFIX}'
        )


def test_cache_lookup_carries_the_choice_once() -> None:
    net, nodes, _ = pull_mesh()
    net.run(30.0)
    status = _status(net, nodes[0])
    pull = _pull(nodes[0])
    eid = next(host_eid(o) for o in range(2, 7) if pull.index(host_eid(o)) != 0)
    miss = status.cache_lookup(str(eid.address))
    assert miss["found"] is False
    assert miss["pull"]["index"] == pull.index(eid)
    assert miss["pull"]["ours"] is False
    assert "pull" not in miss["resolver"]
    nodes[0].request(eid, net.now)
    _run_until(net, lambda: nodes[0].cache.lookup(eid) is not None, 15.0, 0.1)
    hit = status.cache_lookup(str(eid.address))
    assert hit["found"] is True
    assert hit["entry"]["rlocs"][0]["address"] == str(eid_owner(eid))
    assert hit["pull"] == miss["pull"]


def eid_owner(eid: Eid) -> IPv4Address:
    return rloc(int(str(eid.address).split(".")[1]))
