"""decent_node_config, the push-mode config builder: TTLs, RLOC policy."""

from __future__ import annotations

import pytest

from decent.peer.mapping.push_config import MOBILE_TTL, decent_node_config
from decent.wire import Eid
from tests.peer.conftest import GROUP, KEY, N1, N2
from tests.peer.mesh import TWO


def test_a_mobile_node_gives_its_name_and_eids_the_small_ttl():
    cfg = decent_node_config(
        name="mn",
        rlocs=(N1,),
        group=GROUP,
        key=KEY,
        xtr_id=1,
        eids=(TWO, Eid.prefix("3.3.3.3/32")),
        eid_ttls=((Eid.prefix("3.3.3.3/32"), 5),),
        mobile=True,
    )
    ttls = {m.eid: m.ttl for m in cfg.database}
    assert ttls[Eid.name("mn")] == ttls[TWO] == MOBILE_TTL == 1
    assert ttls[Eid.prefix("3.3.3.3/32")] == 5  # its own ttl wins
    assert cfg.group_eid is not None
    assert ttls[cfg.group_eid] == 3  # the membership keeps [decent] ttl
    fixed = decent_node_config(
        name="fixed", rlocs=(N1,), group=GROUP, key=KEY, xtr_id=1, eids=(TWO,)
    )
    assert {m.ttl for m in fixed.database} == {3}


def test_rloc_policy_sets_priority_and_weight_and_must_match_the_rlocs():
    cfg = decent_node_config(
        name="n",
        rlocs=(N1, N2),
        group=GROUP,
        key=KEY,
        xtr_id=1,
        rloc_policy=((1, 30), (2, 70)),
    )
    name = next(m for m in cfg.database if m.eid == Eid.name("n"))
    assert [(loc.priority, loc.weight) for loc in name.locators] == [(1, 30), (2, 70)]
    with pytest.raises(ValueError, match="one \\(priority, weight\\) per RLOC"):
        decent_node_config(
            name="n",
            rlocs=(N1, N2),
            group=GROUP,
            key=KEY,
            xtr_id=1,
            rloc_policy=((1, 100),),
        )
