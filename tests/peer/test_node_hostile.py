"""Hostile input to the Node as a whole: it never raises, refusals change nothing.

Random bytes and mutated real messages (captured from a SimNet run of three
Decent members) are fed to a converged member. The node never raises, and a
datagram it drops or rejects changes neither its registrations, its replay
nonces nor its map-cache (house style 8.4.2)."""

from __future__ import annotations

import copy
import functools
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from decent.peer.node import Node
from decent.wire import Eid
from tests.peer.conftest import DECENT_IPS, decent_trio
from tests.peer.simnet import Addr

NOW = 300.0
CONTROL = (DECENT_IPS[0], 4342)
DATA = (DECENT_IPS[0], 4341)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


@functools.cache
def converged() -> tuple[Node, tuple[tuple[bytes, Addr, Addr], ...]]:
    """Member n1 after the group converged, and every datagram sent meanwhile
    as (payload, source, destination)."""
    net, nodes = decent_trio(record=True, eids=2, probe_interval=30.0)
    net.advance(NOW / 2)
    # Map-cache state besides the Map-Notifies': a resolved name, whose RLOC
    # is then RLOC-probed (plain Map-Requests and probe replies).
    nodes[0].request(Eid.name("n2"), net.now)
    net.advance(NOW / 2)
    assert len(nodes[0].ms.db) == 1 + 3 + 3 * 2  # group, names, EIDs
    assert len(nodes[0].cache) >= 1
    return nodes[0], tuple((d, s, dst) for _, s, dst, d in net.trace)


def protected(node: Node) -> object:
    """Registrations (with children and lifetimes), replay nonces, map-cache."""
    return (
        {
            eid: (e.record, {k: (c.record, c.expires) for k, c in e.children.items()})
            for eid, e in node.ms.db.items()
        },
        dict(node.ms.nonces),
        {eid: (e.record, e.expires) for eid, e in node.cache.db.items()},
    )


def feed(data: bytes, src: Addr, local: Addr) -> tuple[bool, bool]:
    """Deliver one datagram to a fresh copy of the converged node; say
    whether it was dropped or rejected, and whether protected state changed."""
    node = copy.deepcopy(converged()[0])
    before, counters = protected(node), Counter(node.counters)
    node.receive_datagram(data, src, NOW, local)
    delta = node.counters - counters
    refused = any(k.startswith(("drop.", "reject.")) for k in delta)
    changed = protected(node) != before
    # Whatever the datagram left behind, the timers of the next minutes
    # still run cleanly.
    while (at := node.get_timer()) is not None and at <= NOW + 100.0:
        node.handle_timer(at)
    node.datagrams_to_send()
    while node.next_event() is not None:
        pass
    return refused, changed


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, Addr, Addr]:
    """A captured datagram with some bytes flipped, cut off or added."""
    data, src, dst = draw(st.sampled_from(converged()[1]))
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        match draw(st.sampled_from(["flip", "set", "cut", "extend"])):
            case "flip" if buf:
                i = draw(st.integers(0, len(buf) - 1))
                buf[i] ^= 1 << draw(st.integers(0, 7))
            case "set" if buf:
                buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
            case "cut":
                del buf[draw(st.integers(0, len(buf))) :]
            case _:
                buf += draw(st.binary(min_size=1, max_size=8))
    return bytes(buf), src, dst


@SETTINGS
@given(st.binary(max_size=600), st.sampled_from([CONTROL, DATA]))
def test_random_bytes_never_raise_nor_change_state(data, local):
    _, changed = feed(data, (DECENT_IPS[1], 4342), local)
    assert not changed


@SETTINGS
@given(mutated())
def test_mutated_messages_never_raise_and_refused_ones_change_nothing(sample):
    data, src, dst = sample
    local = DATA if dst[1] == 4341 else CONTROL
    refused, changed = feed(data, src, local)
    assert not (refused and changed)


@SETTINGS
@given(st.sampled_from(range(len(converged()[1]))))
def test_replayed_messages_are_refused_or_harmless(index):
    data, src, dst = converged()[1][index]
    local = DATA if dst[1] == 4341 else CONTROL
    refused, changed = feed(data, src, local)
    # A replayed Map-Register is always refused (its nonce is old); only a
    # Map-Notify, which carries no sequence, may be taken again.
    if data[0] >> 4 == 3 or (local == DATA and data[36:37] and data[36] >> 4 == 3):
        assert refused
        assert not changed


def test_the_capture_has_every_kind_of_message():
    kinds = Counter(d[0] >> 4 for d, _, dst in converged()[1] if dst[1] == 4342)
    assert {1, 2, 3, 4, 5} <= set(kinds)
    assert any(dst[1] == 4341 for _, _, dst in converged()[1])
