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
        1400,
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


# ------------------------------------------------- other LISP implementations
SITES = """
[[site]]
name = "oor-1"
key = "oor-secret"
algorithm = "sha1"
eids = ["10.1.0.0/16", "2001:db8:a::/48"]
nonces = "any"

[[site]]
name = "lispers-1"
key = "ln-secret"
eids = ["10.2.0.0/16"]
accept_more_specifics = false
allow_unauthenticated = true
"""

XTR = """
[xtr]
map_servers = [
    { address = "192.0.2.9", key = "ms-secret", algorithm = "sha1" },
    { address = "192.0.2.10", key = "ms2", port = 4343 },
]
map_resolvers = ["192.0.2.9", { address = "192.0.2.11", port = 4343 }]
"""

#: A node with no group: only a classic xTR of the [xtr] mapping system.
GROUPLESS = """
[node]
name = "x1"
rloc = "198.18.42.11"

[[database]]
eid = "10.9.0.0/16"
"""


def test_site_tables_load_with_their_defaults(tmp_path: Path) -> None:
    from decent.peer.config import AllowedPrefix
    from decent.wire import AlgorithmId

    cfg = load_config(_write(tmp_path, GOOD + SITES))
    oor, ln = cfg.sites
    assert (oor.name, oor.keys) == ("oor-1", ((0, b"oor-secret"),))
    assert oor.allowed == (
        AllowedPrefix(Eid.prefix("10.1.0.0/16"), True),
        AllowedPrefix(Eid.prefix("2001:db8:a::/48"), True),
    )
    assert oor.algorithms == {AlgorithmId.HMAC_SHA_1_96}
    assert (oor.relaxed_nonces, oor.allow_unauthenticated) == (True, False)
    assert (ln.name, ln.keys) == ("lispers-1", ((0, b"ln-secret"),))
    assert ln.allowed == (AllowedPrefix(Eid.prefix("10.2.0.0/16"), False),)
    assert ln.algorithms == {
        AlgorithmId.HMAC_SHA_1_96,
        AlgorithmId.HMAC_SHA_256_128,
    }
    assert (ln.relaxed_nonces, ln.allow_unauthenticated) == (False, True)
    for site in cfg.sites:
        assert site.relay
        assert site.force_proxy_reply
    assert load_config(_write(tmp_path, GOOD)).sites == ()


def test_site_eids_take_the_instance_id_and_may_be_joins(tmp_path: Path) -> None:
    text = GOOD.replace("instance_id = 0", "instance_id = 7") + SITES.replace(
        '"10.2.0.0/16"', '"10.2.0.0/16", "(10.2.0.0/16, 239.1.1.1)"'
    )
    _, ln = load_config(_write(tmp_path, text)).sites
    assert [a.eid for a in ln.allowed] == [
        Eid.prefix("10.2.0.0/16", 7),
        Eid.sg("10.2.0.0/16", "239.1.1.1/32", 7),
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('key = "oor-secret"\n', "", r"\[site #1\] key: missing; add key ="),
        ('key = "oor-secret"', 'key = ""', r"\[site #1\] key: empty; set the key"),
        ('name = "oor-1"\n', "", r"\[site #1\] name: missing; add name ="),
        (
            'algorithm = "sha1"',
            'algorithm = "md5"',
            r"\[site #1\] algorithm: 'md5' is not an algorithm; use \"sha1\"",
        ),
        (
            'nonces = "any"',
            'nonces = "random"',
            r"\[site #1\] nonces: 'random' is not a nonce rule; use \"increasing\"",
        ),
        (
            '"2001:db8:a::/48"',
            "\"'printer'\"",
            r"\[site #1\] eids: \"'printer'\" is a name, not an EID-prefix; list IP",
        ),
        (
            '"2001:db8:a::/48"',
            '"10.1.0.0/40"',
            r"\[site #1\] eids: '10.1.0.0/40': .*; list IP prefixes",
        ),
        ('"2001:db8:a::/48"', "5", r"\[site #1\] eids: 5 is not an EID-prefix"),
        (
            'eids = ["10.1.0.0/16", "2001:db8:a::/48"]',
            "eids = []",
            r"\[site #1\] eids: empty: nothing could be registered; eids = \[",
        ),
        (
            'name = "lispers-1"',
            'name = "oor-1"',
            r"\[site #2\] name: 'oor-1' is already \[\[site\]\] #1; give each site",
        ),
        (
            'name = "oor-1"',
            'name = "decent-group"',
            r"\[site #1\] name: 'decent-group' is the group's own site; pick another",
        ),
        (
            'eids = ["10.2.0.0/16"]',
            'eids = ["10.1.0.0/16"]',
            r"\[site #2\] eids: \[0\]10.1.0.0/16 is already listed in site 'oor-1'; "
            r"give each EID-prefix to one site",
        ),
        (
            '"2001:db8:a::/48"',
            '"10.1.0.0/16"',
            r"\[site #1\] eids: \[0\]10.1.0.0/16 is already listed in this site",
        ),
        (
            "accept_more_specifics = false",
            'accept_more_specifics = "no"',
            r"\[site #2\] accept_more_specifics: expected bool, got str",
        ),
        (
            "allow_unauthenticated = true",
            "allow_unauthenticated = 1",
            r"\[site #2\] allow_unauthenticated: expected bool, got int",
        ),
        (
            'nonces = "any"',
            'nonce = "any"',
            r"\[site\] nonce: unknown key; valid keys are accept_more_specifics",
        ),
    ],
)
def test_site_errors_name_the_file_the_key_and_the_fix(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in SITES
    path = _write(tmp_path, GOOD + SITES.replace(old, new, 1))
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))


def test_a_single_site_table_must_be_an_array(tmp_path: Path) -> None:
    path = _write(
        tmp_path, GOOD + SITES.split("\n\n[[site]]")[0].replace("[[site]]", "[site]")
    )
    with pytest.raises(
        ConfigError,
        match=r"\[site\] must be an array of tables; write \[\[site\]\], once per",
    ) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))


def test_the_xtr_section_loads(tmp_path: Path) -> None:
    from decent.peer.config import OutsideMapServer
    from decent.wire import AlgorithmId

    cfg = load_config(_write(tmp_path, GOOD + XTR))
    assert cfg.group == IPv4Address("233.252.1.1")
    assert cfg.outside_map_servers == (
        OutsideMapServer(
            (IPv4Address("192.0.2.9"), 4342), b"ms-secret", AlgorithmId.HMAC_SHA_1_96
        ),
        OutsideMapServer(
            (IPv4Address("192.0.2.10"), 4343), b"ms2", AlgorithmId.HMAC_SHA_256_128
        ),
    )
    assert cfg.outside_map_resolvers == (
        (IPv4Address("192.0.2.9"), 4342),
        (IPv4Address("192.0.2.11"), 4343),
    )
    plain = load_config(_write(tmp_path, GOOD))
    assert (plain.outside_map_servers, plain.outside_map_resolvers) == ((), ())


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            '"192.0.2.9", key',
            '"192.0.2.300", key',
            r"\[xtr\] map_servers #1 address: '192.0.2.300' is not an IP address",
        ),
        (
            '"192.0.2.9", key',
            '"224.0.0.1", key',
            r"\[xtr\] map_servers #1 address: 224.0.0.1 is not a unicast address; "
            r"give the Map-Server's",
        ),
        (
            '"192.0.2.9", key',
            '"0.0.0.0", key',
            r"map_servers #1 address: 0.0.0.0 is not a unicast address",
        ),
        (
            '"192.0.2.9", key',
            '"2001:db8::9", key',
            r"map_servers #1 address: 2001:db8::9 is IPv6, .*; use an IPv4 address",
        ),
        (
            'key = "ms2", ',
            "",
            r"\[xtr\] map_servers #2 key: missing; write \{address =",
        ),
        (
            'key = "ms2"',
            'key = ""',
            r"\[xtr\] map_servers #2 key: empty; set the key this Map-Server expects",
        ),
        (
            '{ address = "192.0.2.9", key',
            "{ key",
            r"\[xtr\] map_servers #1 address: missing; write \{address =",
        ),
        (
            'algorithm = "sha1"',
            'algorithm = "SHA-1"',
            r"map_servers #1 algorithm: 'SHA-1' is not an algorithm; use \"sha256\"",
        ),
        (
            '"192.0.2.10", key = "ms2", port = 4343',
            '"192.0.2.9", key = "ms2"',
            r"map_servers #2 address: 192.0.2.9:4342 is already map_servers #1; list",
        ),
        (
            "port = 4343 },\n]",
            "port = 70000 },\n]",
            r"\[xtr\] map_servers #2 port: port 70000 out of range; use 1 to 65535",
        ),
        (
            "port = 4343 },\n]",
            "prt = 4343 },\n]",
            r"\[xtr\] map_servers #2 prt: unknown key; valid keys are address, key",
        ),
        (
            '"192.0.2.9", {',
            '"192.0.2.9", "192.0.2.9", {',
            r"\[xtr\] map_resolvers: 192.0.2.9:4342 is listed twice; list each",
        ),
        (
            '"192.0.2.9", {',
            '"resolver.example", {',
            r"\[xtr\] map_resolvers: 'resolver.example' is not an IP address",
        ),
        (
            '"192.0.2.9", {',
            '"ff02::1", {',
            r"\[xtr\] map_resolvers: ff02::1 is not a unicast address",
        ),
        (
            '"192.0.2.9", {',
            "5, {",
            r"\[xtr\] map_resolvers: 5 is neither an address nor a table; write",
        ),
        (
            'address = "192.0.2.11", port',
            'addr = "192.0.2.11", port',
            r"\[xtr\] map_resolvers #2 addr: unknown key; valid keys are address, port",
        ),
        (
            "map_resolvers =",
            "resolvers =",
            r"\[xtr\] resolvers: unknown key; valid keys are map_resolvers",
        ),
        (
            "map_servers = [",
            'map_servers = ["192.0.2.8",',
            r"\[xtr\] map_servers: '192.0.2.8' is not a table; write \{address =",
        ),
    ],
)
def test_xtr_errors_name_the_file_the_key_and_the_fix(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in XTR
    path = _write(tmp_path, GOOD + XTR.replace(old, new, 1))
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))


def test_a_group_less_config_with_xtr_loads(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GROUPLESS + XTR))
    assert (cfg.group, cfg.key) == (None, b"")
    assert len(cfg.outside_map_servers) == 2
    only_resolvers = XTR.split("map_resolvers")[1]
    cfg = load_config(
        _write(tmp_path, GROUPLESS + "[xtr]\nmap_resolvers" + only_resolvers)
    )
    assert cfg.group is None
    assert cfg.outside_map_servers == ()
    # [decent]'s other keys still apply to a group-less node.
    cfg = load_config(
        _write(tmp_path, GROUPLESS + "[decent]\ncontrol_port = 4343\n" + XTR)
    )
    assert (cfg.group, cfg.control_port) == (None, 4343)


@pytest.mark.parametrize(
    "text",
    [
        GROUPLESS,
        GROUPLESS + '[decent]\nmode = "replicate"\n',
        GROUPLESS + "[xtr]\nmap_servers = []\nmap_resolvers = []\n",
    ],
)
def test_without_a_group_or_xtr_the_group_is_missing(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(
        ConfigError, match=r"\[decent\] group: missing; add group = \"233.252.1.1\""
    ) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))
    assert "[xtr]" in str(info.value)


@pytest.mark.parametrize("line", ['key = "lab-secret"', 'seeds = ["198.18.42.12"]'])
def test_group_only_keys_without_a_group_are_refused(tmp_path: Path, line: str) -> None:
    key = line.split()[0]
    path = _write(tmp_path, GROUPLESS + "[decent]\n" + line + "\n" + XTR)
    with pytest.raises(
        ConfigError,
        match=rf"\[decent\] group: missing, though {key} is set; add group = .*"
        rf"or remove {key}",
    ):
        load_config(path)


def test_the_wire_form_is_read_and_checked(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, GOOD)).wire_form == "rfc8060"
    cfg = load_config(_decent(tmp_path, 'wire = "lispers.net"'))
    assert cfg.wire_form == "lispers.net"
    path = _decent(tmp_path, 'wire = "lispers"')
    with pytest.raises(
        ConfigError,
        match=r"\[decent\] wire: 'lispers' is not a wire form; use \"rfc8060\"",
    ) as info:
        load_config(path)
    assert str(info.value).startswith(str(path))


def test_node_config_carries_sites_xtr_and_wire_form(tmp_path: Path) -> None:
    from decent.daemon import node_config
    from decent.peer.mapping.push_config import GROUP_SITE

    text = GOOD.replace("instance_id = 0", 'instance_id = 0\nwire = "lispers.net"')
    cfg = load_config(_write(tmp_path, text + SITES + XTR))
    nc = node_config(cfg, xtr_id=7)
    by_name = {site.name: site for site in nc.sites}
    assert set(by_name) == {"oor-1", "lispers-1", GROUP_SITE}
    assert by_name["oor-1"] == cfg.sites[0]
    assert by_name["lispers-1"] == cfg.sites[1]
    for name in ("oor-1", "lispers-1"):
        assert by_name[name].relay
        assert by_name[name].force_proxy_reply
    assert by_name["oor-1"].relaxed_nonces
    assert not by_name["lispers-1"].relaxed_nonces
    assert nc.outside_map_servers == cfg.outside_map_servers
    assert nc.outside_map_resolvers == cfg.outside_map_resolvers
    assert nc.wire_form == "lispers.net"
    assert nc.group == IPv4Address("233.252.1.1")
    assert nc.map_resolvers == ((IPv4Address("198.18.42.11"), 4342),)


def test_a_group_less_node_config_resolves_through_the_outside(
    tmp_path: Path,
) -> None:
    from decent.daemon import node_config

    cfg = load_config(_write(tmp_path, GROUPLESS + XTR))
    nc = node_config(cfg, xtr_id=7)
    assert nc.group is None
    assert nc.map_resolvers == cfg.outside_map_resolvers
    assert nc.outside_map_servers == cfg.outside_map_servers
    assert nc.sites == ()
    assert [m.eid for m in nc.database] == [Eid.prefix("10.9.0.0/16")]


# ---------------------------------------------------------------- [trust]
NOW = 1_800_000_000
MESH_PRIVATE = bytes(range(32))
NODE_PRIVATE = bytes(range(32, 64))


def _certificate(
    *,
    name: str = "n1",
    eids: tuple[str, ...] = ("1.1.1.0/24", "2001:db8:1::/48"),
    not_after: int = NOW + 86_400,
    signer: bytes = MESH_PRIVATE,
) -> bytes:
    from decent.wire.trust import issue_certificate, public_key_of

    return issue_certificate(
        signer,
        mesh="test-mesh",
        name=name,
        public_key=public_key_of(NODE_PRIVATE),
        eids=tuple(Eid.prefix(e) for e in eids),
        not_after=not_after,
        serial=0x1234,
    ).encode()


def _trust(
    tmp_path: Path, certificate: bytes | str, mesh_key: bytes | str = b""
) -> Path:
    import base64

    from decent.wire.trust import public_key_of

    def text(value: bytes | str) -> str:
        return value if isinstance(value, str) else base64.b64encode(value).decode()

    key = mesh_key or public_key_of(MESH_PRIVATE)
    return _write(
        tmp_path,
        GOOD
        + f'\n[trust]\nmesh_key = "{text(key)}"\ncertificate = "{text(certificate)}"\n',
    )


def test_trust_gives_the_mesh_key_and_the_certificate(tmp_path: Path) -> None:
    from decent.wire.trust import public_key_of

    cert = _certificate()
    cfg = load_config(_trust(tmp_path, cert), now=NOW)
    assert cfg.trust_mesh_key == public_key_of(MESH_PRIVATE)
    assert cfg.trust_certificate == cert
    plain = load_config(_write(tmp_path, GOOD))
    assert (plain.trust_mesh_key, plain.trust_certificate) == (None, None)


@pytest.mark.parametrize(
    ("mesh_key", "certificate", "expected"),
    [
        (
            "not base64!",
            None,
            r"\[trust\] mesh_key: not base64; copy mesh_key from the join token",
        ),
        (
            b"short",
            None,
            r"\[trust\] mesh_key: 5 bytes, not an Ed25519 public key \(32\); copy",
        ),
        (
            None,
            "%%%",
            r"\[trust\] certificate: not base64; paste the certificate as issued",
        ),
        (
            None,
            b"DCR1 but nothing else",
            r"\[trust\] certificate: not a certificate \(.*\); paste the "
            r"certificate as issued, or ask the mesh authority for a new invite",
        ),
        (
            bytes(32),
            None,
            r"\[trust\] certificate: not signed by this mesh_key \(it says mesh "
            r"'test-mesh'\); use the mesh_key of the mesh that issued it",
        ),
    ],
)
def test_trust_keys_that_do_not_decode_or_verify_name_the_key_and_fix(
    tmp_path: Path,
    mesh_key: bytes | str | None,
    certificate: bytes | str | None,
    expected: str,
) -> None:
    path = _trust(
        tmp_path,
        _certificate() if certificate is None else certificate,
        b"" if mesh_key is None else mesh_key,
    )
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path, now=NOW)
    assert str(info.value).startswith(f"{path}: [trust] ")


def test_a_certificate_of_another_mesh_is_refused(tmp_path: Path) -> None:
    path = _trust(tmp_path, _certificate(signer=bytes(32)))
    with pytest.raises(ConfigError, match="not signed by this mesh_key"):
        load_config(path, now=NOW)


def test_a_certificate_for_another_node_name_is_refused(tmp_path: Path) -> None:
    path = _trust(tmp_path, _certificate(name="n2"))
    with pytest.raises(
        ConfigError,
        match=r"\[trust\] certificate: issued to node 'n2', but \[node\] name is "
        r"'n1'; set \[node\] name = \"n2\", or ask the mesh authority",
    ):
        load_config(path, now=NOW)


def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    path = _trust(tmp_path, _certificate(not_after=NOW))
    with pytest.raises(
        ConfigError,
        match=r"\[trust\] certificate: expired at 2027-01-15 08:00:00 UTC; ask the "
        r"mesh authority for a new invite \(`decent mesh invite`\)",
    ):
        load_config(path, now=NOW)
    assert load_config(path, now=NOW - 1).trust_certificate is not None


def test_a_database_eid_the_certificate_does_not_grant_is_refused(
    tmp_path: Path,
) -> None:
    # 1.1.1.1/32 lies inside 1.1.1.0/24, but 2001:db8:1::/48 is not granted.
    path = _trust(tmp_path, _certificate(eids=("1.1.1.0/24", "2001:db8::/64")))
    with pytest.raises(
        ConfigError,
        match=r"\[database #2\] eid: \[0\]2001:db8:1::/48 is outside this node's "
        r"certificate \(it grants \[0\]1.1.1.0/24, \[0\]2001:db8::/64\); the "
        r"certificate does not grant it; ask the mesh authority for a "
        r"certificate that does",
    ) as info:
        load_config(path, now=NOW)
    assert str(info.value).startswith(str(path))
    # A less specific grant covers it; an exact one does too.
    ok = _trust(tmp_path, _certificate(eids=("0.0.0.0/0", "2001:db8:1::/48")))
    assert load_config(ok, now=NOW).database[1] == Eid.prefix("2001:db8:1::/48")


def test_trust_without_a_group_or_with_unknown_keys_is_refused(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        GROUPLESS + XTR + '\n[trust]\nmesh_key = "x"\ncertificate = "y"\n',
    )
    with pytest.raises(
        ConfigError,
        match=r"\[trust\] mesh_key: set, but the node joins no group; add "
        r"\[decent\] group \(and key\), or remove \[trust\]",
    ):
        load_config(path, now=NOW)
    path = _write(tmp_path, GOOD + '\n[trust]\nmesh_key = "x"\ncert = "y"\n')
    with pytest.raises(
        ConfigError, match=r"\[trust\] cert: unknown key; valid keys are certificate"
    ):
        load_config(path, now=NOW)
    key = "A" * 43 + "="  # base64 of 32 zero bytes
    path = _write(tmp_path, GOOD + f'\n[trust]\nmesh_key = "{key}"\n')
    with pytest.raises(
        ConfigError, match=r"\[trust\] certificate: missing; add certificate = "
    ):
        load_config(path, now=NOW)


def test_node_config_carries_the_trust_it_is_given(tmp_path: Path) -> None:
    from decent.daemon import node_config
    from decent.peer.config import TrustConfig

    cfg = load_config(_trust(tmp_path, _certificate()), now=NOW)
    assert cfg.trust_mesh_key is not None
    assert cfg.trust_certificate is not None
    trust = TrustConfig(cfg.trust_mesh_key, cfg.trust_certificate, NODE_PRIVATE)
    assert node_config(cfg, xtr_id=7, trust=trust).trust == trust
    assert node_config(cfg, xtr_id=7).trust is None


# ---------------------------------------------------------------- encryption
def _dp(tmp_path: Path, *lines: str) -> Path:
    return _write(tmp_path, GOOD + "[dataplane]\nenabled = true\n" + "".join(lines))


def test_encryption_defaults_to_required_aes_gcm(tmp_path: Path) -> None:
    for path in (_write(tmp_path, GOOD), _dp(tmp_path)):
        cfg = load_config(path)
        assert (cfg.encrypt, cfg.cipher) == ("required", "aes-128-gcm")
        assert (cfg.rekey_seconds, cfg.rekey_packets) == (86_400.0, 1 << 32)


@pytest.mark.parametrize("mode", ["required", "preferred", "off"])
def test_every_encrypt_policy_loads(tmp_path: Path, mode: str) -> None:
    assert load_config(_dp(tmp_path, f'encrypt = "{mode}"\n')).encrypt == mode


@pytest.mark.parametrize("cipher", ["aes-128-gcm", "chacha20-poly1305"])
def test_both_ciphers_load(tmp_path: Path, cipher: str) -> None:
    assert load_config(_dp(tmp_path, f'cipher = "{cipher}"\n')).cipher == cipher


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'encrypt = "always"',
            r"\[dataplane\] encrypt: 'always' is not a policy; use \"required\" "
            r"\(the default\), \"preferred\" \(clear text with peers that cannot "
            r"encrypt\) or \"off\"",
        ),
        ('encrypt = "Required"', r"\[dataplane\] encrypt: 'Required' is not a policy"),
        ("encrypt = true", r"\[dataplane\] encrypt: expected str, got bool"),
        (
            'cipher = "aes-256-gcm"',
            r"\[dataplane\] cipher: 'aes-256-gcm' is not a cipher; use one of "
            r"\['aes-128-gcm', 'chacha20-poly1305'\]",
        ),
        ("cipher = 5", r"\[dataplane\] cipher: expected str, got int"),
        (
            "rekey_seconds = 9.5",
            r"\[dataplane\] rekey_seconds: 9.5 out of range; use 10 to 604800",
        ),
        (
            "rekey_seconds = 604801",
            r"\[dataplane\] rekey_seconds: 604801.0 out of range; use 10 to 604800",
        ),
        ('rekey_seconds = "1d"', r"\[dataplane\] rekey_seconds: expected float"),
        (
            "rekey_packets = 999",
            r"\[dataplane\] rekey_packets: 999 out of range; use 1000 to 2\*\*48",
        ),
        (
            f"rekey_packets = {(1 << 48) + 1}",
            rf"\[dataplane\] rekey_packets: {(1 << 48) + 1} out of range; use 1000",
        ),
        ("rekey_packets = 1e6", r"\[dataplane\] rekey_packets: expected int, got"),
        ("rekey_packets = true", r"\[dataplane\] rekey_packets: expected int, got"),
    ],
)
def test_encryption_errors_name_the_file_the_key_and_the_fix(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = _dp(tmp_path, line + "\n")
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: [dataplane] ")


@pytest.mark.parametrize(
    ("line", "seconds", "packets"),
    [
        ("rekey_seconds = 10", 10.0, 1 << 32),
        ("rekey_seconds = 604800", 604_800.0, 1 << 32),
        ("rekey_seconds = 3600.5", 3600.5, 1 << 32),
        ("rekey_packets = 1000", 86_400.0, 1000),
        (f"rekey_packets = {1 << 48}", 86_400.0, 1 << 48),
    ],
)
def test_rekey_bounds_are_inclusive(
    tmp_path: Path, line: str, seconds: float, packets: int
) -> None:
    cfg = load_config(_dp(tmp_path, line + "\n"))
    assert (cfg.rekey_seconds, cfg.rekey_packets) == (seconds, packets)
    assert isinstance(cfg.rekey_seconds, float)


@pytest.mark.parametrize(
    ("lines", "mtu"),
    [
        ("", 1400),
        ('encrypt = "required"\n', 1400),
        ('encrypt = "preferred"\n', 1400),
        ('encrypt = "off"\n', 1440),
        ('encrypt = "off"\nmtu = 1400\n', 1400),
        ('encrypt = "required"\nmtu = 1500\n', 1500),
    ],
)
def test_the_tun_mtu_leaves_room_for_the_iv_and_tag(
    tmp_path: Path, lines: str, mtu: int
) -> None:
    # A sealed packet adds an IV and a tag (at most 12 + 16 bytes): 1400 + 28
    # + 56 (outer IPv6, UDP and LISP headers) still fits a 1500-byte underlay.
    assert load_config(_dp(tmp_path, lines)).tun_mtu == mtu


def test_the_node_gets_the_encryption_it_is_configured_with(tmp_path: Path) -> None:
    from decent.daemon import node_config

    cfg = load_config(
        _dp(
            tmp_path,
            'encrypt = "preferred"\ncipher = "chacha20-poly1305"\n',
            "rekey_seconds = 600\nrekey_packets = 5000\n",
        )
    )
    node = node_config(cfg, xtr_id=7)
    assert (node.encrypt, node.cipher_suite) == ("preferred", 6)
    assert (node.rekey_seconds, node.rekey_packets) == (600.0, 5000)
    assert node_config(load_config(_dp(tmp_path)), xtr_id=7).cipher_suite == 5
    # Without the data plane there is nothing to encrypt: no keys offered.
    off = load_config(_write(tmp_path, GOOD))
    assert (off.dataplane, off.encrypt) == (False, "required")
    assert node_config(off, xtr_id=7).encrypt == "off"
