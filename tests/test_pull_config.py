"""Pull mode's settings: [decent] mode = "pull", modulus, dns_suffix, hash, ranges."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from decent.config import ConfigError, load_config
from decent.daemon import node_config
from decent.peer.config import PullConfig
from decent.wire import Eid
from tests.test_config import _write

PULL = """
[node]
name = "n1"
rloc = "198.18.42.11"
state_dir = "/var/lib/decent"

[decent]
mode = "pull"
key = "lab-secret"
modulus = 3
dns_suffix = "ms.decent.test."
{extra}

[[database]]
eid = "10.1.0.1/32"
"""


def _pull(tmp_path: Path, extra: str = "") -> Path:
    return _write(tmp_path, PULL.format(extra=extra))


def test_a_pull_config_loads_with_its_defaults(tmp_path: Path) -> None:
    cfg = load_config(_pull(tmp_path))
    assert cfg.group is None
    assert cfg.pull == PullConfig(3, "ms.decent.test")
    assert cfg.dns_servers == ()
    core = node_config(cfg, 1)
    assert core.pull == cfg.pull
    # No NAT traversal and no group; our name and EIDs are registered with
    # the group key, and we answer our own lookups (in-process).
    assert core.nat == "off"
    assert core.group is None
    assert core.register_key == b"lab-secret"
    assert [str(m.eid) for m in core.database] == ["[0]'n1'", "[0]10.1.0.1/32"]
    assert core.resolve_in_process
    assert core.map_servers == ()


def test_every_pull_setting_loads(tmp_path: Path) -> None:
    cfg = load_config(
        _pull(
            tmp_path,
            'hash_mask = 8\nhash = "rfc9962"\ndns_servers = ["198.18.42.53"]\n'
            "dns_refresh = 120\ndns_min_ttl = 2\n"
            '[decent.lookup_lengths]\n"240.11.0.0/16" = 24\n"240.12.0.0/16" = 30',
        )
    )
    assert cfg.pull is not None
    assert cfg.pull.hash_mask == 8
    assert cfg.pull.lookup_lengths == (
        (Eid.prefix("240.11.0.0/16"), 24),
        (Eid.prefix("240.12.0.0/16"), 30),
    )
    assert (cfg.pull.dns_refresh, cfg.pull.dns_min_ttl) == (120.0, 2.0)
    assert cfg.dns_servers == (IPv4Address("198.18.42.53"),)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('group = "233.252.1.1"', r"\[decent\] group: is a push-group setting"),
        ('seeds = ["198.18.42.12"]', r"\[decent\] seeds: is a push-group setting.*"),
        ("reliable = true", r"reliable: is a push-group setting.*; remove reliable"),
        ("relay = true", r"relay: is a push-group setting"),
        ("hash_mask = 300", r"hash_mask: 300 out of range; use 0 \(all of it\)"),
        ('hash = "md5"', r"hash: 'md5' is not a hash; use \"rfc9962\""),
        ("dns_refresh = 0", r"dns_refresh: 0 s out of range; use 1 to 86400"),
        ("dns_min_ttl = 600", r"dns_min_ttl: is above dns_refresh"),
        ('dns_servers = ["ns1"]', r"dns_servers: 'ns1' is not an IP address"),
        (
            '[decent.lookup_lengths]\n"240.11.0.0/16" = 8',
            r"lookup_lengths: '240.11.0.0/16' = 8 is no lookup length.*use 16 to 32",
        ),
        (
            '[decent.lookup_lengths]\n"240.11.0.0/33" = 24',
            r"lookup_lengths: '240.11.0.0/33'",
        ),
        (
            'hash = "lispers.net"\n[decent.lookup_lengths]\n"240.11.0.0/16" = 24',
            r"lookup_lengths: lispers.net's hash takes no lookup lengths",
        ),
    ],
)
def test_a_bad_pull_setting_names_the_file_the_key_and_the_fix(
    tmp_path: Path, extra: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected) as err:
        load_config(_pull(tmp_path, extra))
    assert str(err.value).startswith(str(tmp_path / "node.toml"))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("modulus = 3\n", "", r"\[decent\] modulus: missing; add modulus = 4"),
        ("modulus = 3\n", "modulus = 0\n", r"modulus: 0 out of range; use 1 to 4096"),
        ('dns_suffix = "ms.decent.test."\n', "", r"dns_suffix: missing; add"),
        (
            'dns_suffix = "ms.decent.test."\n',
            'dns_suffix = "a..b"\n',
            r"dns_suffix: 'a..b' is not a DNS name",
        ),
        ('key = "lab-secret"\n', "", r"\[decent\] key: missing"),
        ('mode = "pull"\n', 'mode = "pul"\n', r"mode: 'pul' is not a mode.*\"pull\""),
    ],
)
def test_missing_or_wrong_pull_essentials_are_named(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(_write(tmp_path, PULL.format(extra="").replace(old, new)))
