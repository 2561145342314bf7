"""Reliable transport in the node's JSON, snapshot and log lines, on members
whose sessions run over simulated TCP (tests.peer.streams)."""

from __future__ import annotations

import json
import logging
import math
from ipaddress import IPv4Address
from typing import Any

import msgpack
import pytest

from decent.net.logtext import describe, event_fields, event_level
from decent.net.persist import restore_registrations, snapshot_registrations
from decent.net.status import PAGE_EVENTS, NodeStatus
from decent.peer.display import time_value
from decent.peer.events import RegistrationNacked, SessionDown, SessionUp
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.mapserver import Registration
from decent.peer.node import Node
from decent.wire import Eid
from tests.peer.conftest import GROUP, KEY, N1, N2, N3
from tests.peer.streams import Streams, reliable_mesh
from tests.web.timefields import assert_time_fields

#: The wall clock when the simulated one reads 0 (2026-12-01T00:00:00Z).
EPOCH = 1_796_083_200.0
GROUP_EID = Eid.sg("0.0.0.0/0", f"{GROUP}/32")

#: The golden lines of the three reliable-transport events (tests/net/
#: test_logtext.py takes them into its table of every event's line).
RELIABLE_GOLDEN: dict[type, tuple[object, str]] = {
    SessionUp: (
        SessionUp(IPv4Address("198.18.45.12"), True),
        "reliable-transport session to 198.18.45.12 up: our registrations go over it",
    ),
    SessionDown: (
        SessionDown(IPv4Address("198.18.45.12"), False, "reset"),
        "reliable-transport session from 198.18.45.12 down (reset): "
        "its registrations time out normally from now",
    ),
    RegistrationNacked: (
        RegistrationNacked(
            IPv4Address("198.18.45.12"),
            Eid.prefix("10.1.0.0/32"),
            "authentication-failure",
        ),
        "registration of [0]10.1.0.0/32 refused by 198.18.45.12 over its "
        "reliable-transport session: authentication-failure",
    ),
}


def _up(n: int = 3) -> Streams:
    """n members, every session up both ways (deterministic virtual time)."""
    streams = reliable_mesh(n)
    streams.run(10)
    return streams


def _status(streams: Streams, i: int = 0) -> NodeStatus:
    node = streams.nodes[i]
    return NodeStatus(
        node,
        lambda: streams.net.now,
        wall=lambda: EPOCH + streams.net.now,
        name=f"n{i + 1}",
        started=0.0,
        register_interval=node.config.register_interval,
    )


def _strict_json(doc: Any) -> Any:
    """doc through JSON as a strict parser reads it: no Infinity or NaN."""
    return json.loads(json.dumps(doc, allow_nan=False))


def _child(node: Node, prefix: str) -> Registration:
    """The one registration node's Map-Server holds for prefix."""
    entry = node.registration(Eid.prefix(prefix))
    assert entry is not None
    (child,) = entry.children.values()
    return child


def _site(status: NodeStatus, eid: str) -> dict[str, Any]:
    (site,) = [s for s in status.sites() if s["eid"] == eid]
    return site


# ---------------------------------------------------------------- log lines
@pytest.mark.parametrize("cls", list(RELIABLE_GOLDEN), ids=lambda c: str(c.__name__))
def test_each_event_has_its_line(cls: type) -> None:
    event, line = RELIABLE_GOLDEN[cls]
    assert describe(event) == line  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (
            SessionUp(N2, False),
            f"reliable-transport session from {N2} up: its registrations come "
            "over it, held without timeout",
        ),
        (
            SessionDown(N2, True, "connect-failed"),
            f"reliable-transport session to {N2} down (connect-failed): "
            "registering to it over UDP again",
        ),
    ],
)
def test_the_other_direction_reads_as_such(event: object, line: str) -> None:
    assert describe(event) == line  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("event", "level"),
    [
        (SessionUp(N2, True), logging.INFO),
        (SessionDown(N2, False, "reset"), logging.INFO),
        (RegistrationNacked(N2, Eid.prefix("10.1.0.0/32"), "x"), logging.WARNING),
    ],
)
def test_levels(event: Any, level: int) -> None:
    assert event_level(event) == level


def test_json_fields_are_plain_values() -> None:
    nack = RegistrationNacked(N2, Eid.prefix("10.1.0.0/32"), "not-a-valid-prefix")
    assert event_fields(nack) == {
        "peer": str(N2),
        "eid": "[0]10.1.0.0/32",
        "reason": "not-a-valid-prefix",
    }
    assert event_fields(SessionDown(N2, True, "reset")) == {
        "peer": str(N2),
        "etr": True,
        "reason": "reset",
    }


def test_session_events_move_the_pages() -> None:
    assert {SessionUp, SessionDown, RegistrationNacked} <= set(PAGE_EVENTS)
    streams = reliable_mesh(2)
    status = _status(streams)
    before = status.changes()
    status.note(SessionUp(N2, True))
    assert status.changes() == before + 1


# ---------------------------------------------------------------- node JSON
def test_node_json_lists_each_session_both_ways() -> None:
    streams = _up()
    info = _strict_json(_status(streams).node_info())
    reliable = info["reliable"]
    assert reliable["enabled"] is True
    sessions = reliable["sessions"]
    # By peer, ours to it first.
    assert [(s["peer"], s["direction"]) for s in sessions] == [
        (str(N2), "to-peer"),
        (str(N2), "from-peer"),
        (str(N3), "to-peer"),
        (str(N3), "from-peer"),
    ]
    assert {s["state"] for s in sessions} == {"up"}
    assert [s["name"] for s in sessions] == ["n2", "n2", "n3", "n3"]
    for s in sessions:
        assert s["up_s"] > 0
        assert s["messages_in"] > 0
        assert s["messages_out"] > 0
        assert s["bytes_in"] > 0
        assert s["bytes_out"] > 0
        assert s["refused"] == 0
        up_since = time_value(s["up_since_at"])
        assert up_since is not None
        assert up_since == pytest.approx(EPOCH + streams.net.now - s["up_s"], abs=0.01)
    to_n2, from_n2 = sessions[0], sessions[1]
    # n2 registers its name, its EID and its group membership, each way.
    assert (to_n2["registrations_sent"], to_n2["registrations_held"]) == (3, 0)
    assert (from_n2["registrations_sent"], from_n2["registrations_held"]) == (0, 3)
    assert_time_fields(info, "node")


def test_reliable_transport_off_says_so_and_lists_nothing() -> None:
    streams = reliable_mesh(2, reliable=False)
    streams.run(5)
    reliable = _status(streams).node_info()["reliable"]
    assert reliable == {"enabled": False, "sessions": []}


def test_one_peer_turned_on_is_enough_to_be_enabled() -> None:
    cfg = decent_node_config(
        name="n1",
        rlocs=(N1,),
        group=GROUP,
        key=KEY,
        xtr_id=1,
        reliable=False,
        reliable_peers=((N2, True),),
    )
    node = Node(cfg, nonce=lambda: 1)
    status = NodeStatus(
        node, lambda: 0.0, name="n1", started=0.0, register_interval=60.0
    )
    assert status.node_info()["reliable"]["enabled"] is True


# ---------------------------------------------------------------- held registrations
def test_a_registration_a_session_holds_has_no_ttl_and_says_so() -> None:
    streams = _up()
    status = _status(streams)
    held = _site(status, "[0]10.2.0.0/32")
    assert held["ttl_s"] is None
    assert held["expires_at"] is None
    assert held["held_by_session"] is True
    (child,) = held["registrations"]
    assert child["ttl_s"] is None
    assert child["expires_at"] is None
    assert child["held_by_session"] is True
    # Our own registration with our own Map-Server times out as before.
    own = _site(status, "[0]10.1.0.0/32")
    assert own["held_by_session"] is False
    assert own["ttl_s"] > 0
    assert time_value(own["expires_at"]) is not None
    for doc in (status.sites(), status.peers(), status.map_cache()):
        assert_time_fields(_strict_json(doc))


def test_the_group_entry_is_held_while_any_member_holds_it() -> None:
    streams = _up()
    group = _site(_status(streams), str(GROUP_EID))
    assert group["held_by_session"] is True
    assert group["ttl_s"] is None
    by_registrant = {
        r["registrant"]: r["held_by_session"] for r in group["registrations"]
    }
    assert by_registrant == {str(N1): False, str(N2): True, str(N3): True}


def test_a_lookup_of_a_held_eid_is_plain_json() -> None:
    streams = _up()
    answer = _strict_json(_status(streams).lookup("10.3.0.0"))
    assert answer["found"] is True
    assert answer["entry"]["held_by_session"] is True


def test_members_on_sessions_stay_current_through_a_long_silence() -> None:
    streams = _up()
    status = _status(streams)
    # Far past 1.5 registration periods: nothing changed, so nothing was
    # sent over the sessions, and nothing came over UDP either.
    streams.run(4 * streams.nodes[0].config.register_interval, step=1.0)
    peers = {p["rloc"]: p for p in _strict_json(status.peers())}
    for rloc in (str(N2), str(N3)):
        assert peers[rloc]["state"] == "current"
        assert peers[rloc]["held_by_session"] is True
        assert peers[rloc]["ttl_s"] is None
    assert peers[str(N1)]["held_by_session"] is False


def test_a_dropped_session_gives_its_registrations_a_countdown() -> None:
    streams = _up()
    n1, n2 = streams.nodes[0], streams.nodes[1]
    status = _status(streams)
    streams.cut(streams.pipe(n2, n1))
    after = _site(status, "[0]10.2.0.0/32")
    assert after["held_by_session"] is False
    child = _child(n1, "10.2.0.0/32")
    lifetime = n1.ms.lifetime(child.record, child.ttl_timeout)
    assert after["ttl_s"] == pytest.approx(lifetime, abs=0.01)
    sessions = status.node_info()["reliable"]["sessions"]
    assert (str(N2), "from-peer") not in [(s["peer"], s["direction"]) for s in sessions]


# ---------------------------------------------------------------- snapshot
def test_the_snapshot_saves_a_held_registration_with_its_lifetime_from_now() -> None:
    streams = _up()
    n1 = streams.nodes[0]
    mono, wall = streams.net.now, EPOCH + streams.net.now
    held = _child(n1, "10.2.0.0/32")
    assert math.isinf(held.expires)
    raw = snapshot_registrations(n1, mono, wall)
    data = msgpack.unpackb(raw, raw=False)
    expiries = {
        eid: child[6]
        for eid, _, _, _, children in data["entries"]
        for child in children
    }
    assert all(math.isfinite(x) for x in expiries.values())
    lifetime = n1.ms.lifetime(held.record, held.ttl_timeout)
    assert expiries["[0]10.2.0.0/32"] == pytest.approx(wall + lifetime)


def _children(node: Node) -> dict[tuple[str, str], Registration]:
    return {
        (str(e.eid), str(c.registrant[0])): c
        for e in node.registrations()
        for c in e.children.values()
    }


def test_a_snapshot_with_held_registrations_restores_them_timed() -> None:
    streams = _up()
    n1 = streams.nodes[0]
    wall = EPOCH + streams.net.now
    raw = snapshot_registrations(n1, streams.net.now, wall)
    fresh = Node(n1.config, nonce=lambda: 1, now=0.0)
    restore_registrations(fresh, msgpack.unpackb(raw, raw=False), 0.0, wall)
    # The peers' registrations (our own are made anew at start), each
    # with its whole lifetime from the snapshot on.
    held = {k: c for k, c in _children(n1).items() if math.isinf(c.expires)}
    assert len(held) == 6
    back = _children(fresh)
    for key, child in held.items():
        lifetime = n1.ms.lifetime(child.record, child.ttl_timeout)
        assert back[key].expires == pytest.approx(lifetime), key
