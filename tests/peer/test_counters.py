"""Counter names: each written once, dotted by family; the ones shells read exist."""

from __future__ import annotations

from decent.peer import counters as C
from decent.web.metrics import CACHE_CHANGES, MESSAGE_TYPES, REGISTRATION_CHANGES
from tests.peer.conftest import decent_trio, lab

NAMES = {name: value for name, value in vars(C).items() if name.isupper()}
FAMILIES = (C.DROP, C.REJECT, C.TX, C.RX)


def test_every_counter_name_is_written_once():
    values = list(NAMES.values())
    assert all(isinstance(v, str) for v in values)
    assert len(set(values)) == len(values)


def test_names_are_dotted_and_families_are_their_prefixes():
    assert all(family.endswith(".") for family in FAMILIES)
    for name, value in NAMES.items():
        if value in FAMILIES:
            continue
        area, dot, what = value.partition(".")
        assert area, name
        assert dot, name
        assert what, name
        # reject.* and tx.* take their suffix where they are counted; drop.*
        # too, but for the data plane's, named here (a hot path builds no
        # string per packet)
        assert not value.startswith((C.REJECT, C.TX)), name
        assert value.startswith(C.DROP) == name.startswith("DROP_"), name
        assert value.startswith(C.RX) == name.startswith("RX_"), name


def test_the_names_the_shells_read_exist():
    read = {"rx.map-notify", "rx.replicated"}
    read |= {"registration." + change for change in REGISTRATION_CHANGES}
    read |= {"cache." + change for change in CACHE_CHANGES}
    assert read <= set(NAMES.values())
    # One rx counter per message type the metrics page lists, and no other
    # but the replicated control traffic.
    rx = {v for v in NAMES.values() if v.startswith(C.RX) and v != C.RX}
    assert rx == {C.RX + kind for kind in MESSAGE_TYPES} | {C.RX_REPLICATED}


def test_every_counter_a_node_bumps_is_named_here():
    net, members = decent_trio()
    net.advance(120.0)
    t = lab()
    t.net.advance(60.0)
    bumped = {k for node in (*members, t.ms, t.etr, t.itr) for k in node.counters}
    assert bumped
    named = set(NAMES.values())
    assert {k for k in bumped if k not in named and not k.startswith(FAMILIES)} == set()
