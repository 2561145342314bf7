"""Layered seed-groups' settings: [decent] core and layer_prefixes (RFC 9962 4.4)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from decent.config import ConfigError, load_config
from decent.daemon import node_config
from decent.wire import Eid
from tests.test_config import _decent


def test_a_layer_member_loads_its_core_and_prefixes(tmp_path: Path) -> None:
    cfg = load_config(
        _decent(tmp_path, 'core = ["198.18.9.1"]\nlayer_prefixes = ["10.1.0.0/16"]')
    )
    assert cfg.core == (IPv4Address("198.18.9.1"),)
    assert cfg.layer_prefixes == (Eid.prefix("10.1.0.0/16"),)
    core = node_config(cfg, 1)
    assert core.core == ((IPv4Address("198.18.9.1"), 4342),)
    assert core.layer_prefixes == (Eid.prefix("10.1.0.0/16"),)
    # The prefixes are registered into the core, never our own database.
    assert Eid.prefix("10.1.0.0/16") not in {m.eid for m in core.database}


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ('core = ["198.18.9.1"]', r"\[decent\] layer_prefixes: a layer needs"),
        ('layer_prefixes = ["10.1.0.0/16"]', r"\[decent\] core: a layer needs"),
        (
            'core = ["198.18.42.11"]\nlayer_prefixes = ["10.1.0.0/16"]',
            r"core: lists this node",
        ),
        ('core = ["x"]\nlayer_prefixes = ["10.1.0.0/16"]', r"core: 'x' is not an IP"),
        (
            'core = ["198.18.9.1"]\nlayer_prefixes = ["10.1.0.0/40"]',
            r"layer_prefixes: '10.1.0.0/40'",
        ),
    ],
)
def test_a_bad_layer_setting_is_named(
    tmp_path: Path, lines: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(_decent(tmp_path, lines))
