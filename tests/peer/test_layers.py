"""Layered seed-groups (RFC 9962 4.4) on the simulated network: a core, two layers."""

from __future__ import annotations

import itertools
from ipaddress import IPv4Address

import pytest

from decent.peer.mapping.layers import MAX_LAYERS
from decent.peer.mapping.push_config import decent_node_config
from decent.wire import Eid, Locator, MapRecord, Rle, RleEntry
from tests.peer.conftest import KEY, Traced
from tests.peer.simnet import SimNet

CORE = IPv4Address("233.252.1.1")
LAYERS = {1: IPv4Address("233.252.2.2"), 2: IPv4Address("233.252.3.3")}


def ip(group: int, k: int) -> IPv4Address:
    return IPv4Address(f"198.18.7{group}.{10 + k}")


def layer_eid(layer: int, k: int, j: int = 0) -> Eid:
    return Eid.prefix(f"10.{layer}.{k}.{j}/32")


def mesh() -> tuple[SimNet, dict[tuple[int, int], Traced]]:
    """Core nodes (0, 1..3) in 233.252.1.1; layer L's nodes (L, 1..3) in
    its own group, registering 10.L.0.0/16 and their membership to the core."""
    net = SimNet(seed=3, record=False)
    nonces = itertools.count(1)
    nodes: dict[tuple[int, int], Traced] = {}
    core = tuple(ip(0, k) for k in (1, 2, 3))
    for layer in (0, 1, 2):
        for k in (1, 2, 3):
            rloc = ip(layer, k)
            extra = {}
            if layer:
                extra = {
                    "core": core,
                    "layer_prefixes": (Eid.prefix(f"10.{layer}.0.0/16"),),
                }
            cfg = decent_node_config(
                name=f"l{layer}n{k}",
                rlocs=(rloc,),
                group=LAYERS[layer] if layer else CORE,
                key=KEY,
                xtr_id=layer * 10 + k,
                eids=(layer_eid(layer, k, 0), layer_eid(layer, k, 1)) if layer else (),
                seeds=(ip(layer, 1),),
                resolve_in_process=True,
                **extra,  # type: ignore[arg-type]
            )
            node = Traced(cfg, nonce=lambda: next(nonces))
            net.add(node, (rloc, 4342), (rloc, 4341), source=(rloc, 4342))
            nodes[(layer, k)] = node
    net.run(60.0)
    return net, nodes


def held(node: Traced) -> set[str]:
    return {str(e.eid) for e in node.registrations()}


def resolves(net: SimNet, node: Traced, eid: Eid) -> MapRecord | None:
    node.request(eid, net.now)
    net.run(net.now + 20.0)
    entry = node.cache.lookup(eid)
    if entry is None or entry.negative or entry.eid != eid:
        return None
    return entry.record


def test_the_core_holds_the_layers_and_none_of_their_eids() -> None:
    _, nodes = mesh()
    for k in (1, 2, 3):
        core = nodes[(0, k)]
        names = held(core)
        for layer in (1, 2):
            group = Eid.sg("0.0.0.0/0", f"{LAYERS[layer]}/32")
            entry = core.registration(group)
            assert entry is not None, (k, layer)
            assert set(entry.members()) == {ip(layer, m) for m in (1, 2, 3)}
            prefix = core.registration(Eid.prefix(f"10.{layer}.0.0/16"))
            assert prefix is not None
            assert set(prefix.members()) == {ip(layer, m) for m in (1, 2, 3)}
        assert not [n for n in names if n.endswith("/32") and n.startswith("[0]10.")]


def test_each_layer_holds_its_own_eids_only() -> None:
    _, nodes = mesh()
    for layer in (1, 2):
        own = {str(layer_eid(layer, k, j)) for k in (1, 2, 3) for j in (0, 1)}
        other = {str(layer_eid(3 - layer, k, j)) for k in (1, 2, 3) for j in (0, 1)}
        for k in (1, 2, 3):
            names = held(nodes[(layer, k)])
            assert own <= names, (layer, k)
            assert not other & names, (layer, k)


@pytest.mark.parametrize(("asker", "target"), [((1, 2), 2), ((2, 3), 1), ((0, 1), 1)])
def test_an_eid_of_another_layer_resolves_through_that_layers_members(
    asker: tuple[int, int], target: int
) -> None:
    net, nodes = mesh()
    node = nodes[asker]
    eid = layer_eid(target, 3, 1)
    record = resolves(net, node, eid)
    assert record is not None, (asker, eid)
    assert record.locators[0].rloc == ip(target, 3)
    assert node.counters["layer.referral"] == 1
    # The layer is remembered: the next lookup there asks it at once.
    other = layer_eid(target, 1, 0)
    assert resolves(net, node, other) is not None
    assert node.counters["layer.referral"] == 1


def test_an_eid_nobody_registered_in_a_layer_is_a_negative_answer_not_a_loop() -> None:
    net, nodes = mesh()
    node = nodes[(1, 1)]
    missing = Eid.prefix("10.2.200.1/32")
    node.request(missing, net.now)
    net.run(net.now + 30.0)
    entry = node.cache.lookup(missing)
    assert entry is not None
    assert entry.negative
    assert node.counters["layer.referral"] == 1


def test_referrals_are_bounded() -> None:
    _, nodes = mesh()
    layers = nodes[(1, 1)].mapping.layers
    for i in range(MAX_LAYERS + 50):
        rle = Rle((RleEntry(IPv4Address(f"198.18.99.{i % 250}"), 128),))
        addr, mask = Eid.prefix(f"10.{100 + i // 250}.{i % 250}.0/24").to_wire()
        rec = MapRecord(addr, mask, (Locator(rle, 255, 0, 1, 100),), 1)
        inside = Eid.prefix(f"10.{100 + i // 250}.{i % 250}.1/32")
        assert layers.referred(inside, (rec,))
    assert len(layers.known) == MAX_LAYERS
