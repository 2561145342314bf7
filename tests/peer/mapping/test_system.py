"""The MappingSystem seam: push mode answers every question the roles ask."""

from __future__ import annotations

import inspect

from decent.peer.mapping.push import PushMapping
from decent.peer.mapping.system import MappingSystem
from tests.peer.conftest import (
    DECENT_IPS,
    ETR_EID,
    GROUP,
    MS_IP,
    Traced,
    ctl,
    itr_config,
    lone_member,
)


def test_push_mode_implements_every_method_of_the_seam_with_its_signature():
    wanted = {
        name: inspect.signature(fn)
        for name, fn in vars(MappingSystem).items()
        if inspect.isfunction(fn) and not name.startswith("_")
    }
    assert {"membership", "register_targets", "send_register", "resolvers_for"} <= set(
        wanted
    )
    for name, signature in wanted.items():
        assert inspect.signature(getattr(PushMapping, name)) == signature, name


def test_push_mode_answers_for_a_group_member_and_for_a_plain_node():
    member = lone_member(seeds=DECENT_IPS[1:])
    system: MappingSystem = member.mapping
    assert (GROUP, 4342) in system.register_targets()
    assert system.register_targets() == member.config.map_servers
    assert system.resolvers_for(ETR_EID) == member.config.map_resolvers
    assert system.membership() == []  # nothing heard yet, itself included
    assert system.alone()
    plain: MappingSystem = Traced(itr_config()).mapping
    assert plain.membership() == []
    assert not plain.alone()  # no group: never alone in one
    assert plain.resolvers_for(ETR_EID) == (ctl(MS_IP),)
