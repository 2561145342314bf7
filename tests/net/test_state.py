"""State directory: identity and nonce reservation, snapshots, corruption."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address
from pathlib import Path

import msgpack
import pytest

from decent.net.state import NONCE_BLOCK, StateDir, read_msgpack
from decent.peer.decent import decent_node_config
from decent.peer.node import Node
from decent.wire import Eid
from tests.peer.simnet import SimNet

G = IPv4Address("233.252.1.1")


def _converged_nodes() -> tuple[SimNet, list[Node]]:
    net = SimNet(seed=3)
    ips = [IPv4Address(f"198.18.44.{i}") for i in (1, 2, 3)]
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
