"""NodeConfig and AllowedPrefix: refused nonsense, group EIDs, scopes."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from decent.peer.config import AllowedPrefix, NodeConfig
from decent.wire import Eid
from tests.peer.conftest import ETR_EID, ITR_IP, MS_IP, V6


def test_config_refuses_nonsense():
    with pytest.raises(ValueError, match="at least one RLOC"):
        NodeConfig(rlocs=(), xtr_id=1)
    with pytest.raises(ValueError, match="group_mode"):
        NodeConfig(rlocs=(ITR_IP,), xtr_id=1, group_mode="carrier-pigeon")
    with pytest.raises(ValueError, match="not a multicast"):
        NodeConfig(rlocs=(ITR_IP,), xtr_id=1, group=MS_IP)


def test_config_group_eid_and_rloc_for_each_family():
    v6 = NodeConfig(rlocs=(V6,), xtr_id=1, group=IPv6Address("ff0e::1"))
    assert str(v6.group_eid) == "[0](::/0, ff0e::1/128)"
    assert v6.rloc_for(4) is None
    assert NodeConfig(rlocs=(ITR_IP,), xtr_id=1).group_eid is None


def test_allowed_names_are_exact_unless_wildcard():
    exact = AllowedPrefix(Eid.name("alice"))
    assert exact.allows(Eid.name("alice"))
    assert not exact.allows(Eid.name("bob"))
    assert not AllowedPrefix(Eid.prefix("10.0.0.0/8")).allows(Eid.name("alice"))
    assert not AllowedPrefix(ETR_EID, accept_more_specifics=False).allows(
        Eid.prefix("10.1.1.0/25")
    )
    assert not AllowedPrefix(ETR_EID).allows(Eid.prefix("10.1.1.0/24", iid=7))


def test_allowed_group_prefixes_match_source_and_group():
    any_group = AllowedPrefix(Eid.sg("0.0.0.0/0", "224.0.0.0/4"))
    assert any_group.allows(Eid.sg("10.0.0.0/8", "233.252.1.1/32"))
    assert not any_group.allows(Eid.prefix("10.0.0.0/8"))
    assert not AllowedPrefix(Eid.prefix("0.0.0.0/0")).allows(
        Eid.sg("0.0.0.0/0", "233.252.1.1/32")
    )
