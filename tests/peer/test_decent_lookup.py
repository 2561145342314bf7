"""The periodic group lookup heals membership when Map-Notifies are lost."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address

import pytest

from decent.peer.decent import decent_node_config
from decent.peer.node import Node
from decent.wire import DecodeError, MapNotify, decode
from tests.peer.simnet import Addr, SimNet

G = IPv4Address("233.252.1.1")
IPS = [IPv4Address(f"198.18.46.{i}") for i in (1, 2, 3)]


def _no_notifies(data: bytes, src: Addr, dst: Addr) -> bool:
    try:
        return isinstance(decode(data), MapNotify)
    except DecodeError:
        return False


def _mesh(lookup: float | None) -> tuple[SimNet, list[Node]]:
    net = SimNet(seed=11, drop=_no_notifies)
    counter = itertools.count(1)
    nodes = []
    for i, ip in enumerate(IPS):
        cfg = decent_node_config(
            name=f"n{i + 1}",
            rlocs=(ip,),
            group=G,
            key=b"k",
            xtr_id=i + 1,
            seeds=(IPS[0],) if i else (),
            group_lookup_interval=lookup,
        )
        node = Node(cfg, nonce=lambda: next(counter))
        nodes.append(node)
        net.add(node, (ip, 4342), (ip, 4341))
    return net, nodes


@pytest.mark.parametrize("lookup", [None, 10.0])
def test_group_lookup_repairs_membership_without_map_notifies(
    lookup: float | None,
) -> None:
    net, nodes = _mesh(lookup)
    net.advance(25)  # well inside the 60 s registration period
    knows_all = [set(n.membership()) == set(IPS) for n in nodes]
    if lookup is None:
        # Only the seed hears everyone; n2 and n3 never learn of each other.
        assert knows_all == [True, False, False]
    else:
        assert knows_all == [True, True, True]
        names = {str(e) for e, _ in nodes[2].ms.db.items() if e.is_name}
        assert names == {"[0]'n1'", "[0]'n2'", "[0]'n3'"}
        assert nodes[1].counters["tx.map-request"] >= 2
