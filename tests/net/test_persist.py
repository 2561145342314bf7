"""State directory: identity, nonce reservation, snapshots, corrupt or odd files."""

from __future__ import annotations

import base64
import dataclasses
import errno
import functools
import itertools
import logging
import os
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, cast

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decent.net.persist import (
    NONCE_BLOCK,
    NodeKeyError,
    RevocationSaver,
    SnapshotSaver,
    StateDir,
    read_msgpack,
    restore_registrations,
    snapshot_registrations,
)
from decent.peer.config import NodeConfig
from decent.peer.events import (
    Event,
    MapCacheUpdated,
    MessageDropped,
    RegistrationAccepted,
    RegistrationExpired,
    RegistrationRemoved,
    RevocationLearned,
)
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import Eid
from tests.peer.simnet import SimNet

G = IPv4Address("233.252.1.1")
IPS = [IPv4Address(f"198.18.44.{i}") for i in (1, 2, 3)]


def _converged_nodes() -> tuple[SimNet, list[Node]]:
    net = SimNet(seed=3)
    ips = IPS
    counter = itertools.count(1)
    nodes = []
    for i, ip in enumerate(ips):
        cfg = decent_node_config(
            name=f"n{i + 1}",
            rlocs=(ip,),
            group=G,
            key=b"k",
            xtr_id=i + 1,
            eids=(Eid.prefix(f"10.{i}.0.0/16"),),
            seeds=(ips[0],) if i else (),
        )
        node = Node(cfg, nonce=lambda: next(counter))
        nodes.append(node)
        net.add(node, (ip, 4342), (ip, 4341))
    net.advance(5)
    return net, nodes


def test_identity_survives_and_nonces_keep_increasing(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    first = state.load_identity()
    assert first.start_nonce == 0
    state.keep_nonces_reserved(first, 10)  # within the block: no write needed
    state.keep_nonces_reserved(first, NONCE_BLOCK - 10)
    again = StateDir(tmp_path).load_identity()
    assert again.xtr_id == first.xtr_id
    # Every nonce the first run may have sent is below the restart's start.
    assert again.start_nonce >= NONCE_BLOCK - 10 + 1


@pytest.mark.parametrize("junk", [b"", b"\xc1garbage", msgpack.packb([1, 2, 3])])
def test_corrupt_state_is_ignored_not_fatal(tmp_path: Path, junk: bytes) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    state.identity_file.write_bytes(junk)
    state.snapshot_file.write_bytes(junk)
    ident = state.load_identity()
    assert 0 <= ident.xtr_id < 1 << 128
    _, nodes = _converged_nodes()
    fresh = Node(nodes[0].config, nonce=lambda: 1)
    assert state.load_snapshot(fresh, 0.0, 1000.0) == 0
    assert len(fresh.ms.db) == 0


def test_snapshot_restores_every_registration_with_its_remaining_life(
    tmp_path: Path,
) -> None:
    net, nodes = _converged_nodes()
    state = StateDir(tmp_path)
    state.prepare()
    state.save_snapshot(nodes[1], net.now, 5000.0)
    # Restart 30 s of wall time later on a new monotonic clock.
    fresh = Node(nodes[1].config, nonce=lambda: 7, now=100.0)
    own = nodes[1].config.xtr_id
    learned = {
        eid: entry
        for eid, entry in nodes[1].ms.db.items()
        if any(c.xtr_id != own for c in entry.children.values())
    }
    assert state.load_snapshot(fresh, 100.0, 5030.0) == len(learned) == 5
    assert {e for e, _ in fresh.ms.db.items()} == set(learned)
    for eid, entry in learned.items():
        restored = fresh.ms.db.get(eid)
        assert restored is not None
        # Our own child is left out: the node registers itself afresh.
        assert own not in restored.children
        for key, child in entry.children.items():
            if key == own:
                continue
            left = child.expires - net.now - 30  # 30 s passed while down
            assert restored.children[key].expires == pytest.approx(100 + left)
    assert fresh.ms.nonces == nodes[1].ms.nonces
    # Expired children are not restored.
    later = Node(nodes[1].config, nonce=lambda: 7, now=0.0)
    assert state.load_snapshot(later, 0.0, 5000.0 + 3600) == 0


def test_malformed_snapshot_entries_are_skipped(tmp_path: Path) -> None:
    net, nodes = _converged_nodes()
    state = StateDir(tmp_path)
    state.prepare()
    state.save_snapshot(nodes[0], net.now, 5000.0)
    raw = read_msgpack(state.snapshot_file)
    # Entries are n1, n2, n3, then their prefixes, then the group.
    raw["entries"][1][4][0][0] = b"\x00\x01"  # n2's name: a truncated record
    raw["entries"][4] = "nonsense"  # n2's prefix
    raw["nonces"].append(["x"])
    state.snapshot_file.write_bytes(msgpack.packb(raw, use_bin_type=True))
    fresh = Node(nodes[0].config, nonce=lambda: 7)
    # Seven entries: two are n1's own (not restored), two corrupted.
    assert len(nodes[0].ms.db) == 7
    assert state.load_snapshot(fresh, 0.0, 5000.0) == 3


# ------------------------------------------------- snapshots of the wrong shape
@functools.cache
def _snapshot() -> tuple[bytes, float]:
    """n1's snapshot of a converged three-node group, and its monotonic now."""
    net, nodes = _converged_nodes()
    return snapshot_registrations(nodes[0], net.now, WALL), net.now


WALL = 5000.0


def _good() -> Any:
    return msgpack.unpackb(_snapshot()[0], raw=False, strict_map_key=False)


@functools.cache
def _n1_config() -> NodeConfig:
    return _converged_nodes()[1][0].config


def _fresh() -> Node:
    return Node(_n1_config(), nonce=lambda: 7)


def _child_of_n2(raw: Any) -> list[Any]:
    child: list[Any] = raw["entries"][1][4][0]  # n2's name (see below)
    return child


@pytest.mark.parametrize(
    "raw",
    [
        {"v": 1, "entries": 5},
        {"v": 1, "nonces": 7},
        {"v": 1, "entries": {"a": 1}, "nonces": []},
        {"v": 1, "entries": "abc"},
        {"v": 1, "entries": [None, 3, "x", [], [1, 2, 3, 4, 5]]},
        {"v": 1, "entries": [["[0]'n2'", "s", True, False, 9]]},
        {"v": 1, "entries": [["[0]'n2'", "s", True, False, [[1] * 9]]]},
        {"v": 1, "nonces": [None, [1, 2, 3, 4], ["s", b"short", 0, 1]]},
        {"v": 1, "nonces": [["s", "1.2.3.4", 0, -1], ["s", "1.2.3.4", 0, 1.5]]},
        {"v": 1.0, "entries": [], "nonces": [["s", 7, 0, 1]]},
        {"v": [1]},
        {1: 1},
        "v1",
        3.5,
    ],
)
def test_a_well_formed_snapshot_of_the_wrong_shape_is_ignored(
    tmp_path: Path, raw: Any
) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    state.snapshot_file.write_bytes(msgpack.packb(raw, use_bin_type=True))
    fresh = _fresh()
    assert state.load_snapshot(fresh, 0.0, WALL) == 0
    assert len(fresh.ms.db) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (0, "not bytes"),  # the record
        (1, "127.0.0.1"),  # the registrant: not [host, port]
        (1, ["127.0.0.1", "4342"]),
        (1, ["127.0.0.1", 70000]),
        (1, [42, 4342]),
        (2, b"short"),  # the xTR-ID
        (2, 5),
        (3, -1),  # the site-ID
        (3, "1"),
        (4, "yesterday"),  # first
        (5, None),  # last
        (6, float("nan")),  # expires
        (6, float("inf")),
        (6, True),
        (7, 3),  # flags
        (8, 1.0),  # the algorithm
        (8, 256),
        (9, 1),  # the T bit
        (9, "T"),
    ],
)
def test_a_child_with_a_field_of_the_wrong_type_skips_only_its_entry(
    field: int, value: Any
) -> None:
    raw = _good()
    # A field of the wrong type must not turn into a valid-looking one.
    _child_of_n2(raw)[field] = value
    fresh = _fresh()
    # Five of the seven entries are restorable (n1's own two are not).
    assert restore_registrations(fresh, raw, 0.0, WALL) == 5 - 1
    assert len(fresh.ms.db) == 5 - 1


def test_no_restored_registration_outlives_its_ttl() -> None:
    raw = _good()
    for entry in raw["entries"]:
        for child in entry[4]:
            child[6] = WALL + 10**9  # a bad clock, or a doctored file
            child[4] = child[5] = WALL + 10**6  # "seen" in the future
    fresh = _fresh()
    assert restore_registrations(fresh, raw, 100.0, WALL) == 5
    for _, entry in fresh.ms.db.items():
        for child in entry.children.values():
            assert child.flags.split("-")[3] == "T"  # lifetime = Record TTL
            assert child.expires == 100.0 + child.record.ttl * 60.0
            assert child.first == child.last == 100.0
            assert fresh.get_timer() is not None
    # Without the T bit the Map-Server's own timeout bounds it.
    for entry in raw["entries"]:
        for child in entry[4]:
            child[7] = child[7].replace("T", "t")
    fresh = _fresh()
    assert restore_registrations(fresh, raw, 100.0, WALL) == 5
    timeout = fresh.ms.registration_timeout
    for _, entry in fresh.ms.db.items():
        for child in entry.children.values():
            assert child.expires == 100.0 + timeout


def _long_timeout() -> Node:
    """n1 with a registration timeout far from the Record TTL (3 min), so
    a restored lifetime shows which of the two the T bit chose."""
    return Node(
        dataclasses.replace(_n1_config(), registration_timeout=3600.0),
        nonce=lambda: 7,
    )


def _lifetimes(raw: Any) -> set[float]:
    fresh = _long_timeout()
    assert restore_registrations(fresh, raw, 100.0, WALL) == 5
    return {
        child.expires - 100.0
        for entry in fresh.registrations()
        for child in entry.children.values()
    }


def _far_expiry(raw: Any) -> None:
    for entry in raw["entries"]:
        for child in entry[4]:
            child[6] = WALL + 10**9


def test_the_t_bit_is_saved_as_data_and_decides_the_restored_lifetime() -> None:
    raw = _good()
    _far_expiry(raw)
    children = [child for entry in raw["entries"] for child in entry[4]]
    assert all(len(child) == 11 and child[9] is True for child in children)
    assert _lifetimes(raw) == {180.0}
    fresh = _long_timeout()
    restore_registrations(fresh, raw, 100.0, WALL)
    assert all(
        c.ttl_timeout for e in fresh.registrations() for c in e.children.values()
    )
    # The bit, not the flags text (only shown), says what the lifetime is.
    for child in children:
        child[9] = False
    assert _lifetimes(raw) == {3600.0}


def test_a_relayed_registration_keeps_its_relaying_member() -> None:
    raw = _good()
    for entry in raw["entries"]:
        for child in entry[4]:
            assert child[10] is None
            child[10] = "198.18.42.12"
    fresh = _long_timeout()
    assert restore_registrations(fresh, raw, 100.0, WALL) == 5
    vias = {c.via for e in fresh.registrations() for c in e.children.values()}
    assert vias == {IPv4Address("198.18.42.12")}


def test_a_snapshot_from_before_the_t_bit_was_data_reads_it_from_the_flags() -> None:
    raw = _good()
    _far_expiry(raw)
    for entry in raw["entries"]:
        for child in entry[4]:
            del child[9:]
    assert _lifetimes(raw) == {180.0}
    for entry in raw["entries"]:
        for child in entry[4]:
            child[7] = child[7].replace("T", "t")
    assert _lifetimes(raw) == {3600.0}


_INTS = st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
_LEAVES = (
    st.none()
    | st.booleans()
    | _INTS
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=40)
)
_ANY = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.text(max_size=8) | _INTS, inner, max_size=4)
    ),
    max_leaves=30,
)


def _paths(obj: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in obj that a value can be put (leaves and containers)."""
    out = [at]
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            out += _paths(item, (*at, i))
    elif isinstance(obj, dict):
        for key, item in obj.items():
            out += _paths(item, (*at, key))
    return out


def _check_restore(raw: Any) -> None:
    packed = msgpack.packb(raw, use_bin_type=True)
    fresh = _fresh()
    again = msgpack.unpackb(packed, raw=False, strict_map_key=False)
    restore_registrations(fresh, again, 100.0, WALL)
    timeout = fresh.ms.registration_timeout
    for _, entry in fresh.ms.db.items():
        for child in entry.children.values():
            cap = max(child.record.ttl * 60.0, timeout)
            assert 100.0 < child.expires <= 100.0 + cap
            assert child.first <= child.last <= 100.0


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries({"v": st.just(1)}, optional={"entries": _ANY, "nonces": _ANY})
)
def test_random_snapshot_structures_never_raise(raw: Any) -> None:
    _check_restore(raw)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_snapshot_with_any_part_replaced_never_raises(data: st.DataObject) -> None:
    raw = _good()
    path = data.draw(st.sampled_from(_paths(raw)[1:]))
    parent = raw
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = data.draw(_ANY)
    _check_restore(raw)


# ----------------------------------------------- corrupt files: one warning each
def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "decent.state" and r.levelno >= logging.WARNING
    ]


def _bad_entries() -> bytes:
    raw = _good()
    raw["entries"][4] = "nonsense"
    raw["nonces"].append(["x"])
    return bytes(msgpack.packb(raw, use_bin_type=True))


_CORRUPT: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "truncated": lambda: _snapshot()[0][: len(_snapshot()[0]) // 2],
    "trailing garbage": lambda: _snapshot()[0] + b"\x00junk",
    "a reserved byte": lambda: b"\xc1",
    "nil": lambda: msgpack.packb(None),
    "a list": lambda: msgpack.packb([1, 2, 3]),
    "a string": lambda: msgpack.packb("v1"),
    "version 2": lambda: msgpack.packb({"v": 2, "entries": [], "nonces": []}),
    "no version": lambda: msgpack.packb({"entries": [], "nonces": []}),
    "version 1.0": lambda: msgpack.packb({"v": 1.0, "entries": []}),
    "version true": lambda: msgpack.packb({"v": True, "entries": []}),
    "entries not a list": lambda: msgpack.packb({"v": 1, "entries": 5}),
    "nonces not a list": lambda: msgpack.packb({"v": 1, "nonces": {"a": 1}}),
    "malformed entries": _bad_entries,
    "over the map limit": lambda: msgpack.packb({i: 0 for i in range(1 << 17)}),
}


@pytest.mark.parametrize("case", list(_CORRUPT))
def test_every_corrupt_snapshot_logs_one_warning_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    state.snapshot_file.write_bytes(_CORRUPT[case]())
    caplog.set_level(logging.INFO, logger="decent.state")
    fresh = _fresh()
    restored = state.load_snapshot(fresh, 0.0, WALL)
    (warning,) = _warnings(caplog)
    assert str(state.snapshot_file) in warning
    if case != "malformed entries":
        assert restored == 0
        assert len(fresh.ms.db) == 0


def test_an_unreadable_or_oversized_snapshot_logs_one_warning_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    caplog.set_level(logging.INFO, logger="decent.state")
    state.snapshot_file.mkdir()  # read_bytes: EISDIR
    assert state.load_snapshot(_fresh(), 0.0, WALL) == 0
    state.snapshot_file.rmdir()
    state.snapshot_file.write_bytes(_snapshot()[0])
    monkeypatch.setattr("decent.net.persist.MAX_STATE_FILE", 10)
    assert state.load_snapshot(_fresh(), 0.0, WALL) == 0
    warnings = _warnings(caplog)
    assert len(warnings) == 2
    assert all(str(state.snapshot_file) in w for w in warnings)


def test_a_missing_snapshot_or_identity_logs_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="decent.state")
    state = StateDir(tmp_path)
    state.prepare()
    state.load_identity()
    assert state.load_snapshot(_fresh(), 0.0, WALL) == 0
    assert caplog.records == []


@pytest.mark.parametrize(
    "raw",
    [None, [1, 2], {"xtr_id": b"short", "nonce_reserved": 5}, {"xtr_id": bytes(16)}],
)
def test_an_identity_of_the_wrong_shape_logs_one_warning_and_a_new_one_is_made(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, raw: Any
) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    state.identity_file.write_bytes(msgpack.packb(raw, use_bin_type=True))
    caplog.set_level(logging.INFO, logger="decent.state")
    ident = state.load_identity()
    (warning,) = _warnings(caplog)
    assert str(state.identity_file) in warning
    assert ident.start_nonce == 0
    assert StateDir(tmp_path).load_identity().xtr_id == ident.xtr_id


# --------------------------------------------------- writes that fail, leftovers
def test_leftover_temporary_files_are_removed_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    first = state.load_identity()
    leftovers = [
        tmp_path / "identity.msgpack.tmp",
        tmp_path / "registrations.msgpack.tmp",
    ]
    for path in leftovers:
        path.write_bytes(b"half a write")
    other = tmp_path / "notes.tmp"  # not ours: state_dir may hold other files
    other.write_bytes(b"keep")
    caplog.set_level(logging.INFO, logger="decent.state")
    again = StateDir(tmp_path)
    again.prepare()
    assert [p for p in leftovers if p.exists()] == []
    assert other.read_bytes() == b"keep"
    removed = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(removed) == 2
    assert all(any(str(p) in line for line in removed) for p in leftovers)
    assert again.load_identity().xtr_id == first.xtr_id
    assert again.save_snapshot(_fresh(), 0.0, WALL)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(code: int) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return fail


#: (errno, the step that fails): every OSError is the same to the caller.
_FAULTS = [
    (errno.ENOSPC, "fsync"),
    (errno.EDQUOT, "fsync"),
    (errno.EIO, "fsync"),
    (errno.EMFILE, "open"),
    (errno.ENFILE, "open"),
    (errno.EACCES, "open"),
    (errno.EROFS, "replace"),
]


def _break(monkeypatch: pytest.MonkeyPatch, code: int, step: str) -> None:
    if step == "open":
        monkeypatch.setattr("decent.net.persist.open", _fail(code), raising=False)
    else:
        monkeypatch.setattr(os, step, _fail(code))


@pytest.mark.parametrize(("code", "step"), _FAULTS)
def test_a_failed_snapshot_write_returns_false_logs_rate_limited_and_recovers(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    step: str,
) -> None:
    clock = _Clock()
    state = StateDir(tmp_path, clock=clock)
    state.prepare()
    node = _converged_nodes()[1][0]
    assert state.save_snapshot(node, 0.0, WALL)
    before = state.snapshot_file.read_bytes()
    caplog.set_level(logging.INFO, logger="decent.state")
    _break(monkeypatch, code, step)
    for _ in range(50):  # 100 s of saves every 2 s
        clock.now += 2.0
        assert state.save_snapshot(node, 0.0, WALL) is False
    # The first failure, then one summary of the next minute's 30.
    first, summary = _warnings(caplog)
    assert str(state.snapshot_file) in first
    assert errno.errorcode[code] in first
    assert os.strerror(code) in first
    assert str(state.snapshot_file) in summary
    assert "30 more failed attempt(s) in the last 60 s" in summary
    assert [p.name for p in tmp_path.iterdir()] == [state.snapshot_file.name]
    assert state.snapshot_file.read_bytes() == before
    monkeypatch.undo()
    caplog.clear()
    assert state.save_snapshot(node, 0.0, WALL + 1)
    (back,) = [r for r in caplog.records if r.name == "decent.state"]
    assert back.levelno == logging.INFO
    assert "50 failed attempt(s)" in back.getMessage()
    assert state.snapshot_file.read_bytes() != before
    assert not _tmp_files(tmp_path)


def _tmp_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.tmp"))


def test_a_reservation_that_cannot_be_written_is_retried_and_then_jumps_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    ident = state.load_identity()
    assert ident.nonce_reserved == NONCE_BLOCK
    _break(monkeypatch, errno.ENOSPC, "fsync")
    # The node keeps sending: its nonces run past the block on disk.
    assert state.keep_nonces_reserved(ident, NONCE_BLOCK - 100) is False
    assert state.keep_nonces_reserved(ident, 3 * NONCE_BLOCK) is False
    assert ident.nonce_reserved == NONCE_BLOCK  # what the disk still holds
    assert StateDir(tmp_path).load_identity().start_nonce == NONCE_BLOCK
    monkeypatch.undo()
    # The first write that works reserves past the nonce of that moment.
    assert state.keep_nonces_reserved(ident, 5 * NONCE_BLOCK)
    assert ident.nonce_reserved == 6 * NONCE_BLOCK
    assert StateDir(tmp_path).load_identity().start_nonce > 5 * NONCE_BLOCK
    assert not _tmp_files(tmp_path)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EMFILE, errno.EIO])
def test_an_identity_that_cannot_be_written_at_start_still_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    first = state.load_identity()
    _break(monkeypatch, code, "open")
    again = StateDir(tmp_path).load_identity()
    assert (again.xtr_id, again.start_nonce) == (first.xtr_id, NONCE_BLOCK)
    assert again.nonce_reserved == NONCE_BLOCK  # retried by the first keep call


# ------------------------------------------- saving when events say it changed
def _counted(state: StateDir, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The monotonic times of the snapshot writes attempted from now on."""
    writes: list[float] = []
    real = state.save_snapshot

    def save(node: Node, mono_now: float, wall_now: float) -> bool:
        writes.append(mono_now)
        return real(node, mono_now, wall_now)

    monkeypatch.setattr(state, "save_snapshot", save)
    return writes


def test_the_snapshot_is_written_after_registration_events_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    net, nodes = _converged_nodes()
    state = StateDir(tmp_path)
    state.prepare()
    saver = SnapshotSaver(state, nodes[0])
    writes = _counted(state, monkeypatch)
    assert saver.save(1.0, WALL)  # the first save writes what the node holds
    assert saver.save(2.0, WALL)  # nothing happened since: nothing written
    eid, peer = Eid.prefix("10.1.0.0/16"), (IPS[1], 4342)
    saver.note(MessageDropped(peer, "decode-error"))
    saver.note(MapCacheUpdated(eid, "map-reply", False))
    assert saver.save(3.0, WALL)
    assert writes == [1.0]
    # A refresh counts: it moves the expiry and the nonce ceiling saved.
    changes: list[Event] = [
        RegistrationAccepted(eid, "s", peer, 2, new=False),
        RegistrationRemoved(eid, 2),
        RegistrationExpired(eid, 2),
    ]
    for at, event in enumerate(changes, start=4):
        saver.note(event)
        assert saver.save(float(at), WALL)
        assert saver.save(at + 0.5, WALL)
    assert writes == [1.0, 4.0, 5.0, 6.0]
    assert saver.save(7.0, WALL, force=True)  # at shutdown, whatever happened
    assert writes[-1] == 7.0
    # The node's own events, handed over as the shell does, mark it too:
    # within two minutes its peers refresh their registrations.
    while nodes[0].next_event() is not None:
        pass
    assert saver.save(8.0, WALL, force=True)
    assert not saver.dirty
    net.advance(120.0)
    while (later := nodes[0].next_event()) is not None:
        saver.note(later)
    assert saver.dirty


def test_a_failed_snapshot_write_stays_due_until_one_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, nodes = _converged_nodes()
    state = StateDir(tmp_path)
    state.prepare()
    saver = SnapshotSaver(state, nodes[0])
    _break(monkeypatch, errno.ENOSPC, "fsync")
    assert saver.save(1.0, WALL) is False
    assert saver.save(2.0, WALL) is False
    monkeypatch.undo()
    writes = _counted(state, monkeypatch)
    assert saver.save(3.0, WALL)
    assert saver.save(4.0, WALL)
    assert writes == [3.0]
    assert read_msgpack(state.snapshot_file)["entries"]


# ---------------------------------------------------------------- node key
def test_a_node_key_is_made_once_with_mode_0600_and_kept(tmp_path: Path) -> None:
    from decent.wire.trust import public_key_of

    state = StateDir(tmp_path / "state")
    state.prepare()
    key = state.load_node_key()
    assert len(key) == 32
    assert len(public_key_of(key)) == 32
    assert state.key_file.stat().st_mode & 0o777 == 0o600
    assert base64.b64decode(state.key_file.read_bytes()) == key
    assert StateDir(tmp_path / "state").load_node_key() == key
    # Another state directory, another identity.
    other = StateDir(tmp_path / "other")
    other.prepare()
    assert other.load_node_key() != key


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o666])
def test_a_node_key_open_to_group_or_others_is_refused_naming_the_fix(
    tmp_path: Path, mode: int
) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    state.load_node_key()
    state.key_file.chmod(mode)
    with pytest.raises(NodeKeyError) as info:
        state.load_node_key()
    message = str(info.value)
    assert message.startswith(f"{state.key_file} is open to group or others")
    assert f"(mode {mode:04o})" in message
    assert f"run `chmod 600 {state.key_file}`" in message
    state.key_file.chmod(0o600)
    assert len(state.load_node_key()) == 32
    state.key_file.chmod(0o400)  # read-only for its owner is fine too
    assert len(state.load_node_key()) == 32


@pytest.mark.parametrize("text", [b"", b"not base64!\n", b"AAAA\n", b"A" * 100])
def test_a_node_key_file_that_holds_no_key_is_refused(
    tmp_path: Path, text: bytes
) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    os.close(os.open(state.key_file, os.O_WRONLY | os.O_CREAT, 0o600))
    state.key_file.write_bytes(text)
    with pytest.raises(NodeKeyError, match="does not hold a node key") as info:
        state.load_node_key()
    assert str(info.value).startswith(str(state.key_file))
    assert "remove it to make a new key" in str(info.value)


def test_a_given_node_key_is_written_0600_and_another_is_not_overwritten(
    tmp_path: Path,
) -> None:
    state = StateDir(tmp_path / "new")
    first, second = bytes(range(32)), bytes(range(1, 33))
    assert state.write_node_key(first)  # makes the directory too
    assert state.key_file.stat().st_mode & 0o777 == 0o600
    assert state.load_node_key() == first
    assert not state.write_node_key(first)  # the same key: nothing to do
    with pytest.raises(NodeKeyError, match="already holds another node key"):
        state.write_node_key(second)
    assert state.load_node_key() == first
    assert state.write_node_key(second, replace=True)
    assert state.load_node_key() == second
    assert state.key_file.stat().st_mode & 0o777 == 0o600
    assert not _tmp_of(state.key_file).exists()
    with pytest.raises(ValueError, match="32 bytes"):
        state.write_node_key(b"short")


def test_a_key_file_left_half_made_is_removed_at_start(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    _tmp_of(state.key_file).write_bytes(b"half")
    state.prepare()
    assert not _tmp_of(state.key_file).exists()


def _tmp_of(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


# ---------------------------------------------------------------- revocations
def test_revocations_are_saved_and_loaded(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    assert state.load_revocations() == []
    assert state.save_revocations([b"first", b"second"])
    assert StateDir(tmp_path).load_revocations() == [b"first", b"second"]
    assert msgpack.unpackb(state.revocations_file.read_bytes()) == [
        b"first",
        b"second",
    ]
    assert state.save_revocations([])
    assert state.load_revocations() == []


@pytest.mark.parametrize(
    ("raw", "left", "warning"),
    [
        ({"v": 1}, [], "holds a dict, not a list of revocations"),
        ([b"good", "text", 3, None, b"also"], [b"good", b"also"], "skipped 3 item"),
    ],
)
def test_saved_revocations_of_another_shape_are_skipped_with_one_warning(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    raw: Any,
    left: list[bytes],
    warning: str,
) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    state.revocations_file.write_bytes(msgpack.packb(raw, use_bin_type=True))
    with caplog.at_level(logging.WARNING, logger="decent.state"):
        assert state.load_revocations() == left
    assert len(caplog.records) == 1
    assert warning in caplog.records[0].getMessage()
    assert str(state.revocations_file) in caplog.records[0].getMessage()
    state.revocations_file.write_bytes(b"\xc1 corrupt")
    assert state.load_revocations() == []


class _Revoking:
    """What RevocationSaver reads of a node."""

    def __init__(self) -> None:
        self.held: list[bytes] = []

    def revocations(self) -> list[bytes]:
        return list(self.held)


def test_revocations_are_saved_when_one_is_learned_and_retried_until_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateDir(tmp_path)
    state.prepare()
    node = _Revoking()
    saver = RevocationSaver(state, cast(Node, node))
    assert saver.save()  # nothing learned: nothing written
    assert not state.revocations_file.exists()
    saver.note(MessageDropped((IPS[1], 4342), "decode-error"))
    assert not state.revocations_file.exists()
    node.held.append(b"rev-1")
    saver.note(RevocationLearned("n4", 7))  # written at once
    assert state.load_revocations() == [b"rev-1"]
    assert not _due(saver)
    node.held.append(b"rev-2")
    _break(monkeypatch, errno.ENOSPC, "fsync")
    saver.note(RevocationLearned("n5", 8))
    assert _due(saver)
    assert saver.save() is False
    monkeypatch.undo()
    assert saver.save()
    assert state.load_revocations() == [b"rev-1", b"rev-2"]


def _due(saver: RevocationSaver) -> bool:
    return saver.dirty
