"""NodeStatus's health, stale flag and recent rejections, on real Nodes in SimNet."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address
from pathlib import Path

from decent.net.persist import StateDir
from decent.net.status import JOIN_PERIODS, NOT_JOINED, NodeStatus
from decent.peer.config import Limits
from decent.peer.display import time_text
from decent.peer.events import RegistrationRejected
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import Eid
from tests.peer.simnet import SimNet

G = IPv4Address("233.252.1.1")
IPS = [IPv4Address(f"198.18.47.{i}") for i in (11, 12, 13)]
#: Short periods keep the join deadline (JOIN_PERIODS of them) near.
PERIOD = 5.0
DEADLINE = JOIN_PERIODS * PERIOD
_NONCES = itertools.count(1)


def _node(
    i: int,
    *,
    seeds: tuple[IPv4Address, ...] = (),
    key: bytes = b"k",
    limits: Limits | None = None,
    now: float = 0.0,
) -> Node:
    """Member n<i+1> at IPS[i], with EID i+1.i+1.i+1.i+1/32."""
    cfg = decent_node_config(
        name=f"n{i + 1}",
        rlocs=(IPS[i],),
        group=G,
        key=key,
        xtr_id=i + 1,
        eids=(Eid.prefix(f"{i + 1}.{i + 1}.{i + 1}.{i + 1}/32"),),
        seeds=seeds,
        register_interval=PERIOD,
        limits=limits,
    )
    return Node(cfg, nonce=lambda: next(_NONCES), now=now)


#: The wall clock when the simulated clock reads 0 (2026-12-01T00:00:00Z).
EPOCH = 1_796_083_200.0


def _at(t: float) -> str:
    """How NodeStatus shows the simulated time t."""
    return time_text(EPOCH + t)


def _status(net: SimNet, node: Node, **kw: object) -> NodeStatus:
    return NodeStatus(
        node,
        lambda: net.now,
        wall=lambda: EPOCH + net.now,
        name="n",
        started=net.now,
        register_interval=PERIOD,
        **kw,  # type: ignore[arg-type]
    )


def _add(net: SimNet, node: Node) -> None:
    ip = node.config.rlocs[0]
    net.add(node, (ip, 4342), (ip, 4341))


def _drain(node: Node, status: NodeStatus) -> None:
    """Hand the node's events to the status, as NodeShell.flush does."""
    while (event := node.next_event()) is not None:
        status.note(event)


def _mesh(n: int = 3, **keys: bytes) -> tuple[SimNet, list[Node]]:
    """n members on a SimNet: n1 has no seeds, the others seed n1."""
    net = SimNet(seed=3)
    nodes = [
        _node(i, seeds=(IPS[0],) if i else (), key=keys.get(f"n{i + 1}", b"k"))
        for i in range(n)
    ]
    for node in nodes:
        _add(net, node)
    return net, nodes


# ---------------------------------------------------------------- health
def test_a_node_without_a_group_is_healthy() -> None:
    cfg = decent_node_config(
        name="x",
        rlocs=(IPS[0],),
        group=None,
        key=b"",
        xtr_id=1,
        outside_map_resolvers=((IPS[1], 4342),),
    )
    node = Node(cfg, nonce=lambda: 1)
    net = SimNet()
    status = _status(net, node)
    net.now = 10 * DEADLINE
    assert status.health() == {"ok": True, "status": "ok", "members": 0}


def test_the_first_member_of_a_new_mesh_is_alone_and_healthy() -> None:
    net = SimNet()
    node = _node(0)
    _add(net, node)
    status = _status(net, node)
    net.advance(1)
    assert status.seeds() == []
    assert status.health() == {"ok": True, "status": "alone", "members": 1}
    net.advance(2 * DEADLINE)  # alone it stays: there is nobody to wait for
    assert status.health()["status"] == "alone"
    assert node.confirmed_at is None


def test_members_that_accept_each_other_are_ok() -> None:
    net, nodes = _mesh()
    statuses = [_status(net, n) for n in nodes]
    net.advance(3)
    for node, status in zip(nodes, statuses, strict=True):
        assert node.confirmed_at is not None, node.config.rlocs
        assert status.health() == {"ok": True, "status": "ok", "members": 3}
        assert status.node_info()["confirmed_at"] == _at(node.confirmed_at)


def test_a_node_whose_only_seed_is_dead_joins_then_is_not_joined() -> None:
    net = SimNet()
    node = _node(1, seeds=(IPS[0],))  # nobody listens at IPS[0]
    _add(net, node)
    status = _status(net, node)
    net.advance(1)
    # Our own Map-Server lists us, which proves nothing.
    assert node.membership() == [IPS[1]]
    assert status.seeds() == [IPS[0]]
    assert status.health() == {
        "ok": False,
        "status": "joining",
        "members": 1,
        "reason": "no member has accepted us yet",
    }
    net.advance(DEADLINE - 1.5)
    assert status.health()["status"] == "joining"
    net.advance(1)
    assert status.health() == {
        "ok": False,
        "status": "not joined",
        "members": 1,
        "reason": NOT_JOINED,
    }
    assert NOT_JOINED == (
        "no member accepted us: wrong key, expired certificate or seed unreachable"
    )


def test_the_deadline_runs_from_the_start_not_from_the_clock_zero() -> None:
    net = SimNet()
    net.now = 1000.0
    node = _node(1, seeds=(IPS[0],), now=net.now)
    _add(net, node)
    status = _status(net, node)
    net.advance(DEADLINE - 1)
    assert status.health()["status"] == "joining"
    net.advance(2)
    assert status.health()["status"] == "not joined"


def test_a_node_with_a_wrong_key_is_not_joined_though_it_hears_members() -> None:
    net, nodes = _mesh(n2=b"not the group key")
    status = _status(net, nodes[1])
    net.advance(DEADLINE + 1)
    # The others learn nothing of n2; n2 may learn of them (a group lookup
    # answered), but none ever lists it.
    assert IPS[1] not in nodes[0].membership()
    assert nodes[1].confirmed_at is None
    health = status.health()
    assert (health["ok"], health["status"], health["reason"]) == (
        False,
        "not joined",
        NOT_JOINED,
    )
    # The members that kept the key are fine.
    assert _status(net, nodes[0]).health()["ok"] is True


def test_a_node_confirmed_late_turns_ok_after_the_deadline() -> None:
    net = SimNet()
    n2 = _node(1, seeds=(IPS[0],))
    _add(net, n2)
    status = _status(net, n2)
    net.advance(DEADLINE + 1)
    assert status.health()["status"] == "not joined"
    n1 = _node(0, now=net.now)  # the seed comes up at last
    _add(net, n1)
    net.advance(PERIOD + 1)
    assert n2.confirmed_at is not None
    assert status.health() == {"ok": True, "status": "ok", "members": 2}


# ---------------------------------------------------------------- stale
def _restarted_n1(tmp_path: Path) -> tuple[SimNet, list[Node], Node, int]:
    """A converged mesh whose n1 saved a snapshot, and a new n1 that loaded
    it (not yet on the network): the daemon's start after a restart."""
    net, nodes = _mesh()
    net.advance(3)
    state = StateDir(tmp_path)
    state.prepare()
    assert state.save_snapshot(nodes[0], net.now, 5000.0)
    net.remove(nodes[0])
    fresh = _node(0, now=net.now)
    restored = state.load_snapshot(fresh, net.now, 5001.0)
    assert restored > 0
    return net, nodes, fresh, restored


def test_a_restored_snapshot_is_stale_and_no_join(tmp_path: Path) -> None:
    net, nodes, fresh, restored = _restarted_n1(tmp_path)
    for node in nodes[1:]:
        net.remove(node)  # the mesh died while n1 was down
    _add(net, fresh)
    status = _status(net, fresh, restored=restored)
    net.advance(1)
    # The restored membership shows, as before the restart...
    assert set(fresh.membership()) == set(IPS)
    info = status.node_info()
    assert (info["stale"], info["restored"], info["confirmed_at"]) == (
        True,
        restored,
        None,
    )
    # ...but counts as neither a join nor as being alone.
    health = status.health()
    assert (health["ok"], health["status"]) == (False, "joining")
    assert "restored from a snapshot" in health["reason"]
    net.advance(DEADLINE)
    assert status.health()["status"] == "not joined"
    assert status.node_info()["stale"] is True


def test_a_live_member_confirming_us_ends_the_staleness(tmp_path: Path) -> None:
    net, _, fresh, restored = _restarted_n1(tmp_path)
    _add(net, fresh)
    status = _status(net, fresh, restored=restored)
    assert status.stale() is True
    # The others held n1 all along, so its registration changes no merged
    # set and brings no Map-Notify: its next group lookup's answer (from a
    # member, listing n1) is the confirmation.
    lookup = fresh.config.group_lookup_interval
    assert lookup is not None
    net.advance(lookup + 1)
    assert fresh.confirmed_at is not None
    assert status.stale() is False
    assert status.node_info()["stale"] is False
    assert status.health() == {"ok": True, "status": "ok", "members": 3}


def test_nothing_restored_is_never_stale() -> None:
    net = SimNet()
    node = _node(1, seeds=(IPS[0],))
    _add(net, node)
    status = _status(net, node)
    net.advance(DEADLINE + 1)
    assert status.node_info()["stale"] is False


# ---------------------------------------------------------------- rejections
def test_a_wrong_key_joiner_is_listed_in_the_rejections_of_its_seed() -> None:
    net, nodes = _mesh(n2=b"not the group key")
    status = _status(net, nodes[0])
    assert status.rejections() == []
    net.advance(1)
    _drain(nodes[0], status)
    net.advance(2 * PERIOD)
    _drain(nodes[0], status)
    shown = status.rejections()
    assert shown, "n1 rejected nothing"
    assert {(r["source"], r["port"], r["reason"], r["name"]) for r in shown} == {
        (str(IPS[1]), 4342, "auth-failed", None)
    }
    # n2 sends its name and EIDs, and its membership, each refused in turn.
    assert "[0]'n2'" in {r["eid"] for r in shown}
    # A repeat counts on its entry rather than filling the list.
    assert all(r["count"] >= 2 for r in shown)
    assert len(shown) == len({r["eid"] for r in shown})
    for r in shown:
        assert _at(0) <= r["first_at"] <= r["last_at"] <= _at(net.now)
    # Newest first.
    lasts = [r["last_at"] for r in shown]
    assert lasts == sorted(lasts, reverse=True)


def test_rejections_are_bounded_by_refused_shown_newest_first() -> None:
    net = SimNet()
    node = _node(0, limits=Limits(refused_shown=3))
    status = _status(net, node)
    peer = (IPS[2], 4342)
    for i in range(5):
        net.now = float(i)
        eid = Eid.prefix(f"10.0.0.{i}/32")
        status.note(RegistrationRejected(peer, "certificate-expired", eid, f"m{i}"))
    net.now = 10.0
    shown = status.rejections()
    assert [(r["eid"], r["name"], r["last_at"]) for r in shown] == [
        ("[0]10.0.0.4/32", "m4", _at(4.0)),
        ("[0]10.0.0.3/32", "m3", _at(3.0)),
        ("[0]10.0.0.2/32", "m2", _at(2.0)),
    ]
    assert shown[0] == {
        "source": str(IPS[2]),
        "port": 4342,
        "reason": "certificate-expired",
        "eid": "[0]10.0.0.4/32",
        "name": "m4",
        "count": 1,
        "first_at": "2026-12-01T00:00:04.000Z",
        "last_at": "2026-12-01T00:00:04.000Z",
    }
    # An old offender again: it moves to the front, and the oldest goes.
    status.note(
        RegistrationRejected(
            peer, "certificate-expired", Eid.prefix("10.0.0.2/32"), "m2"
        )
    )
    shown = status.rejections()
    assert [(r["name"], r["count"], r["first_at"], r["last_at"]) for r in shown] == [
        ("m2", 2, _at(2.0), _at(10.0)),
        ("m4", 1, _at(4.0), _at(4.0)),
        ("m3", 1, _at(3.0), _at(3.0)),
    ]
    # Without an EID (a Map-Register refused as a whole).
    status.note(RegistrationRejected(peer, "auth-failed"))
    assert status.rejections()[0]["eid"] is None
    assert len(status.rejections()) == 3


def test_a_rejection_moves_the_change_number() -> None:
    net = SimNet()
    status = _status(net, _node(0))
    before = status.changes()
    status.note(RegistrationRejected((IPS[2], 4342), "auth-failed"))
    assert status.changes() == before + 1


def test_times_are_wall_clock_rfc3339_and_steady_until_the_clock_is_set() -> None:
    net = SimNet()
    node = _node(0)
    _add(net, node)
    wall = [EPOCH]
    status = NodeStatus(
        node,
        lambda: net.now,
        name="n",
        started=net.now,
        register_interval=PERIOD,
        wall=lambda: wall[0] + net.now,
    )
    net.advance(2.0)
    info = status.node_info()
    assert (info["started_at"], info["uptime_s"]) == ("2026-12-01T00:00:00.000Z", 2.0)
    # A wall clock that jitters (NTP slewing) moves no time shown...
    wall[0] += 0.3
    assert status.node_info()["started_at"] == info["started_at"]
    # ...one that is set follows it.
    wall[0] += 3600
    assert status.node_info()["started_at"] == "2026-12-01T01:00:00.300Z"
