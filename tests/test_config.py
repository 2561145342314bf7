"""Config loading: the documented keys, and errors that name file, key and fix."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from decent.config import ConfigError, load_config
from decent.wire import Eid

GOOD = """
[node]
name = "n1"
rloc = "198.18.42.11"
state_dir = "/var/lib/decent"

[decent]
group = "233.252.1.1"
mode = "replicate"
seeds = ["198.18.42.12"]
key = "lab-secret"
instance_id = 0

[[database]]
eid = "1.1.1.1/32"

[[database]]
eid = "2001:db8:1::/48"

[web]
listen = "0.0.0.0:8080"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_the_documented_example_loads(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.name == "n1"
    assert cfg.rlocs == (IPv4Address("198.18.42.11"),)
    assert cfg.group == IPv4Address("233.252.1.1")
    assert cfg.seeds == (IPv4Address("198.18.42.12"),)
    assert cfg.key == b"lab-secret"
    assert cfg.database == (Eid.prefix("1.1.1.1/32"), Eid.prefix("2001:db8:1::/48"))
    assert (cfg.web_host, cfg.web_port) == ("0.0.0.0", 8080)
    assert (cfg.control_port, cfg.data_port, cfg.mode) == (4342, 4341, "replicate")


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('name = "n1"\n', "", r"\[node\] name: missing; add name"),
        (
            'rloc = "198.18.42.11"',
            'rloc = "198.18.42.300"',
            r"\[node\] rloc: '198.18.42.300' is not an IP address",
        ),
        ('rloc = "198.18.42.11"', "", r"\[node\] rloc: missing; add rloc"),
        (
            'group = "233.252.1.1"',
            'group = "198.18.42.1"',
            r"\[decent\] group: 198.18.42.1 is not a multicast address; use a group",
        ),
        ('mode = "replicate"', 'mode = "flood"', r"\[decent\] mode: 'flood' is not"),
        ('key = "lab-secret"', "", r"\[decent\] key: missing"),
        (
            'seeds = ["198.18.42.12"]',
            'seeds = ["peer-two"]',
            r"\[decent\] seeds: 'peer-two' is not an IP address",
        ),
        (
            "instance_id = 0",
            'instance_id = "zero"',
            r"instance_id: expected int, got str",
        ),
        ('eid = "1.1.1.1/32"', 'eid = "1.1.1.1/40"', r"\[database #1\] eid: .*not an"),
        (
            'listen = "0.0.0.0:8080"',
            'listen = "8080"',
            r"\[web\] listen: '8080' is not",
        ),
        ("[web]", "[webb]", r"unknown section \[webb\]"),
        (
            'mode = "replicate"',
            'mode = "replicate"\nmodee = 1',
            r"\[decent\] modee: unknown key; valid keys are",
        ),
    ],
)
def test_errors_name_the_file_the_key_and_the_fix(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))


def test_missing_and_unparsable_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file; create it"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "[node\nname="))


def test_group_family_must_match_an_rloc(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace('"233.252.1.1"', '"ff05::1:1"'))
    with pytest.raises(ConfigError, match="no RLOC of the group's IPv6 family"):
        load_config(path)


def test_interface_gives_the_rloc(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD.replace('rloc = "198.18.42.11"', 'interface = "lo"'))
    assert IPv4Address("127.0.0.1") in load_config(path).rlocs
    path = _write(
        tmp_path, GOOD.replace('rloc = "198.18.42.11"', 'interface = "nope0"')
    )
    with pytest.raises(ConfigError, match="'nope0' has no usable address"):
        load_config(path)


DATAPLANE = """
[dataplane]
enabled = true
tun = "lisp0"
mtu = 1400
table = 100
routes = ["10.7.0.0/16", "2001:db8:7::/48"]
probe_interval = 5
negative_action = "native"
petr = "198.18.42.99"
queue_size = 8
underlay_mtu = 9000
"""


def test_the_dataplane_section_loads_and_defaults_to_off(tmp_path: Path) -> None:
    off = load_config(_write(tmp_path, GOOD))
    assert (off.dataplane, off.tun, off.tun_mtu, off.probe_interval) == (
        False,
        "decent0",
        1440,
        10.0,
    )
    cfg = load_config(_write(tmp_path, GOOD + DATAPLANE))
    assert cfg.dataplane
    assert (cfg.tun, cfg.tun_mtu, cfg.route_table) == ("lisp0", 1400, 100)
    assert cfg.routes == ("10.7.0.0/16", "2001:db8:7::/48")
    assert (cfg.probe_interval, cfg.negative_action) == (5.0, "native")
    assert cfg.petr == IPv4Address("198.18.42.99")
    assert (cfg.queue_size, cfg.underlay_mtu) == (8, 9000)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('tun = "a very long device name"', r"\[dataplane\] tun: .*not an interface"),
        ("mtu = 100", r"\[dataplane\] mtu: 100 out of range"),
        ("table = 254", r"\[dataplane\] table: 254 is not a free routing table"),
        ('routes = ["10.7/33"]', r"\[dataplane\] routes: '10.7/33' is not a prefix"),
        ("probe_interval = -1", r"\[dataplane\] probe_interval: negative"),
        ('negative_action = "bounce"', r"negative_action: 'bounce' is not an action"),
        ('petr = "nowhere"', r"\[dataplane\] petr: 'nowhere' is not an IP address"),
        ("queue_size = -1", r"\[dataplane\] queue_size: -1 out of range"),
        ("underlay_mtu = 100", r"\[dataplane\] underlay_mtu: 100 out of range"),
        ("enabled = 1", r"\[dataplane\] enabled: expected bool"),
        ("speed = 11", r"\[dataplane\] speed: unknown key"),
    ],
)
def test_dataplane_errors_name_the_key_and_the_fix(
    tmp_path: Path, line: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(_write(tmp_path, GOOD + "[dataplane]\n" + line + "\n"))


# ---------------------------------------------------------------- RLOC policy
def _rlocs(tmp_path: Path, value: str) -> Path:
    return _write(tmp_path, GOOD.replace('rloc = "198.18.42.11"', "rlocs = " + value))


def test_rlocs_may_be_tables_with_priority_and_weight(tmp_path: Path) -> None:
    cfg = load_config(
        _rlocs(
            tmp_path,
            '[{address = "198.18.1.1", priority = 1, weight = 30},'
            ' {address = "198.18.2.1", priority = 2}, "198.18.42.11"]',
        )
    )
    assert cfg.rlocs == tuple(
        IPv4Address(a) for a in ("198.18.1.1", "198.18.2.1", "198.18.42.11")
    )
    assert cfg.rloc_policy == ((1, 30), (2, 100), (1, 100))
    plain = load_config(_write(tmp_path, GOOD))
    assert plain.rloc_policy == ((1, 100),)
    single = load_config(
        _write(
            tmp_path,
            GOOD.replace(
                'rloc = "198.18.42.11"',
                'rloc = {address = "198.18.42.11", priority = 0, weight = 0}',
            ),
        )
    )
    assert (single.rlocs, single.rloc_policy) == (
        (IPv4Address("198.18.42.11"),),
        ((0, 0),),
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            '[{address = "198.18.1.1", priority = 256}]',
            r"\[node\] rlocs #1 priority: 256 out of range; use 0 to 255",
        ),
        (
            '["198.18.1.1", {address = "198.18.2.1", weight = 101}]',
            r"\[node\] rlocs #2 weight: 101 out of range; use 0 to 100",
        ),
        (
            '[{address = "198.18.1.1", weight = -1}]',
            r"rlocs #1 weight: -1 out of range",
        ),
        (
            '[{address = "198.18.1.1", priority = "high"}]',
            r"rlocs #1 priority: expected int, got str",
        ),
        ("[{priority = 1}]", r"rlocs #1 address: missing; write \{address ="),
        ('[{address = "here"}]', r"rlocs #1 address: 'here' is not an IP address"),
        (
            '[{address = "198.18.1.1", prio = 1}]',
            r"rlocs #1 prio: unknown key; use address, priority, weight",
        ),
        ("[5]", r"\[node\] rlocs: 5 is neither an address nor a table"),
        (
            '[{address = "198.18.1.1", priority = 255}]',
            r"rlocs: every RLOC has priority 255.*give at least one a priority",
        ),
        ("[]", r"\[node\] rlocs: empty"),
    ],
)
def test_rloc_table_errors_name_the_entry_the_key_and_the_fix(
    tmp_path: Path, value: str, expected: str
) -> None:
    path = _rlocs(tmp_path, value)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))


def test_a_priority_255_rloc_is_allowed_beside_a_usable_one(tmp_path: Path) -> None:
    cfg = load_config(
        _rlocs(tmp_path, '["198.18.42.11", {address = "198.18.2.1", priority = 255}]')
    )
    assert cfg.rloc_policy == ((1, 100), (255, 100))


# ---------------------------------------------------------------- rates, TTLs
def _decent(tmp_path: Path, lines: str) -> Path:
    return _write(
        tmp_path, GOOD.replace("instance_id = 0\n", "instance_id = 0\n" + lines + "\n")
    )


def test_map_reply_rate_and_burst_are_accepted(tmp_path: Path) -> None:
    cfg = load_config(_decent(tmp_path, "map_reply_rate = 5\nmap_reply_burst = 10.5"))
    assert (cfg.map_reply_rate, cfg.map_reply_burst) == (5.0, 10.5)
    default = load_config(_write(tmp_path, GOOD))
    assert (default.map_reply_rate, default.map_reply_burst) == (1000.0, 2000.0)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("map_reply_rate = 0", r"\[decent\] map_reply_rate: 0 would never answer"),
        ("map_reply_rate = nan", r"\[decent\] map_reply_rate: nan would never"),
        ('map_reply_rate = "fast"', r"map_reply_rate: expected float, got str"),
        ("map_reply_burst = 0.5", r"\[decent\] map_reply_burst: 0.5 holds less"),
        ("register_interval = 0", r"\[decent\] register_interval: 0 s is too short"),
        ("register_interval = nan", r"register_interval: nan s is too short"),
    ],
)
def test_rate_and_interval_errors_name_the_key_and_the_fix(
    tmp_path: Path, line: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(_decent(tmp_path, line))


def test_database_entries_may_have_their_own_ttl(tmp_path: Path) -> None:
    text = GOOD.replace('eid = "1.1.1.1/32"', 'eid = "1.1.1.1/32"\nttl = 1')
    cfg = load_config(_write(tmp_path, text))
    assert cfg.database_ttls == ((Eid.prefix("1.1.1.1/32"), 1),)
    assert load_config(_write(tmp_path, GOOD)).database_ttls == ()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ttl = 0", r"\[database #1\] ttl: 0 out of range; use 1 to 1440 minutes"),
        ("ttl = 1441", r"\[database #1\] ttl: 1441 out of range"),
        ('ttl = "1m"', r"\[database #1\] ttl: expected int, got str"),
    ],
)
def test_database_ttl_errors_name_the_entry(
    tmp_path: Path, line: str, expected: str
) -> None:
    text = GOOD.replace('eid = "1.1.1.1/32"', 'eid = "1.1.1.1/32"\n' + line)
    with pytest.raises(ConfigError, match=expected):
        load_config(_write(tmp_path, text))


def test_mobile_nodes_do_not_probe_unless_asked(tmp_path: Path) -> None:
    mobile = GOOD.replace('name = "n1"\n', 'name = "n1"\nmobile = true\n')
    cfg = load_config(_write(tmp_path, mobile))
    assert (cfg.mobile, cfg.probe_interval) == (True, 0.0)
    asked = load_config(_write(tmp_path, mobile + "[dataplane]\nprobe_interval = 7\n"))
    assert asked.probe_interval == 7.0
    fixed = load_config(_write(tmp_path, GOOD))
    assert (fixed.mobile, fixed.probe_interval) == (False, 10.0)
    with pytest.raises(ConfigError, match=r"\[node\] mobile: expected bool"):
        load_config(_write(tmp_path, mobile.replace("mobile = true", "mobile = 1")))


def test_an_eid_listed_twice_is_refused(tmp_path: Path) -> None:
    text = GOOD.replace(
        'eid = "1.1.1.1/32"', 'eid = "1.1.1.1/32"\n[[database]]\neid = "1.1.1.1/32"'
    )
    with pytest.raises(
        ConfigError, match=r"\[database #2\] eid: \[0\]1.1.1.1/32 is already"
    ) as info:
        load_config(_write(tmp_path, text))
    assert "list each EID-prefix once" in str(info.value)
