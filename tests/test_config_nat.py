"""The NAT traversal settings: [decent] nat, relay, keepalives, [node] advertise."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from decent.config import ConfigError, load_config
from decent.daemon import node_config
from tests.test_config import GOOD, _decent, _write


def _node(tmp_path: Path, line: str) -> Path:
    return _write(
        tmp_path,
        GOOD.replace('rloc = "198.18.42.11"\n', f'rloc = "198.18.42.11"\n{line}\n'),
    )


def test_defaults_find_out_and_use_a_relay_but_offer_none(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    assert (cfg.nat, cfg.relay, cfg.nat_keepalive, cfg.nat_recheck) == (
        "auto",
        False,
        20.0,
        600.0,
    )
    assert cfg.advertise == ()
    core = node_config(cfg, 1)
    assert (core.nat, core.relay, core.nat_keepalive) == ("auto", False, 20.0)


def test_relay_and_timers_load(tmp_path: Path) -> None:
    cfg = load_config(
        _decent(
            tmp_path, 'nat = "off"\nrelay = true\nnat_keepalive = 5\nnat_recheck = 60'
        )
    )
    assert (cfg.nat, cfg.relay, cfg.nat_keepalive, cfg.nat_recheck) == (
        "off",
        True,
        5.0,
        60.0,
    )
    core = node_config(cfg, 1)
    assert (core.nat, core.relay, core.nat_keepalive, core.nat_recheck) == (
        "off",
        True,
        5.0,
        60.0,
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('nat = "upnp"', r"\[decent\] nat: 'upnp' is not a NAT mode.*use \"auto\""),
        (
            "nat_keepalive = 0",
            r"\[decent\] nat_keepalive: 0 s out of range; use 1 to 86400",
        ),
        ("nat_recheck = nan", r"\[decent\] nat_recheck: nan s out of range"),
        ('relay = "yes"', r"\[decent\] relay: expected bool"),
        ("relay_clients = 0", r"relay_clients"),
    ],
)
def test_nat_errors_name_the_file_the_key_and_the_fix(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = (
        _decent(tmp_path, line)
        if "relay_clients" not in line
        else _write(tmp_path, GOOD + f"\n[limits]\n{line}\n")
    )
    with pytest.raises(ConfigError, match=expected) as err:
        load_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"203.0.113.5"', (IPv4Address("203.0.113.5"),)),
        ('"203.0.113.5:4341"', (IPv4Address("203.0.113.5"),)),
        ('["203.0.113.5"]', (IPv4Address("203.0.113.5"),)),
    ],
)
def test_advertise_takes_an_address_with_or_without_our_data_port(
    tmp_path: Path, value: str, expected: tuple[IPv4Address, ...]
) -> None:
    cfg = load_config(_node(tmp_path, f"advertise = {value}"))
    assert cfg.advertise == expected
    assert node_config(cfg, 1).advertise == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            '"203.0.113.5:5000"',
            r"advertise: '203.0.113.5:5000': port 5000 is not our data port 4341;"
            r" forward ports 4341 and 4342 unchanged",
        ),
        ('"[2001:db8::5]:4341"', r"advertise: 2001:db8::5 is IPv6 and no RLOC is"),
        (
            '["203.0.113.5", "203.0.113.6"]',
            r"advertise: two IPv4 addresses; give one per family",
        ),
        ('"router.example"', r"\[node\] advertise"),
        ("5", r"\[node\] advertise: 5 is not an address"),
    ],
)
def test_advertise_errors_say_what_to_write(
    tmp_path: Path, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(_node(tmp_path, f"advertise = {value}"))


def test_an_advertised_address_is_for_a_fixed_rloc(tmp_path: Path) -> None:
    text = GOOD.replace(
        'rloc = "198.18.42.11"', 'interface = "lo"\nadvertise = "203.0.113.5"'
    )
    with pytest.raises(ConfigError, match="set rloc instead of interface"):
        load_config(_write(tmp_path, text))


def test_an_ipv6_advertised_address_beside_an_ipv6_rloc(tmp_path: Path) -> None:
    text = GOOD.replace(
        'rloc = "198.18.42.11"',
        'rlocs = ["198.18.42.11", "2001:db8::11"]\n'
        'advertise = ["[2001:db8:ff::5]:4341", "203.0.113.5"]',
    )
    cfg = load_config(_write(tmp_path, text))
    assert set(cfg.advertise) == {
        IPv6Address("2001:db8:ff::5"),
        IPv4Address("203.0.113.5"),
    }
