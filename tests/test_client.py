"""The command-line clients against live `decent run` nodes whose configs
`decent init` wrote: human and --json output, and one-line errors."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import pytest

from decent.client import cell_text, config_text, map_request, text_table
from decent.config import load_config
from decent.web import views
from decent.wire import Eid, EncapsulatedControlMessage, MapRequest, decode, parse_eid
from tests.wire.tshark import missing_tools
from tests.wire.vectors import load_vectors

#: Loopback addresses no other test module uses.
RLOCS = ("127.0.62.1", "127.0.62.2")
STUB_RESOLVER = "127.0.62.3"
KEY = "client-test-key"
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def decent(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "decent", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "DECENT_NODE": "http://127.0.0.1:9"},
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Live:
    urls: list[str]
    configs: list[Path]


def _get(url: str) -> Any:
    with _HTTP.open(url, timeout=2) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Two nodes (n1, n2 seeded by n1), each from a `decent init` config."""
    tmp = tmp_path_factory.mktemp("client")
    procs: list[subprocess.Popen[bytes]] = []
    urls, configs = [], []
    try:
        for i, rloc in enumerate(RLOCS, start=1):
            port = _free_port()
            path = tmp / f"n{i}.toml"
            seeds = ["--seed", RLOCS[0]] if i > 1 else []
            made = decent(
                "init",
                *("--name", f"n{i}", "--rloc", rloc, "--key", KEY),
                *("--eid", f"10.6{i}.0.0/24", "--listen", f"127.0.0.1:{port}"),
                *("--state-dir", str(tmp / f"state{i}"), "-o", str(path), *seeds),
            )
            assert made.returncode == 0, made.stderr
            # A short TTL only so the killed-at-teardown nodes leave no trace.
            path.write_text(path.read_text().replace("# ttl = 3 ", "ttl = 1   "))
            log = open(tmp / f"n{i}.log", "wb")  # noqa: SIM115 - closed below
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "decent", "run", "--config", str(path)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
            urls.append(f"http://127.0.0.1:{port}")
            configs.append(path)
        deadline = time.monotonic() + 20
        while True:
            try:
                if all(len(_get(u + "/api/peers")) == 2 for u in urls):
                    sites = {s["eid"] for s in _get(urls[0] + "/api/sites")}
                    if "[0]10.62.0.0/24" in sites:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = [(tmp / f"n{i}.log").read_text() for i in (1, 2)]
                raise AssertionError(f"nodes did not converge: {logs}")
            time.sleep(0.1)
        yield Live(urls, configs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ---------------------------------------------------------------- init
def test_init_writes_a_commented_config_that_run_accepts(live: Live) -> None:
    cfg = load_config(live.configs[1])
    assert cfg.name == "n2"
    assert [str(r) for r in cfg.rlocs] == [RLOCS[1]]
    assert [str(s) for s in cfg.seeds] == [RLOCS[0]]
    assert [str(e) for e in cfg.database] == ["[0]10.62.0.0/24"]
    assert str(cfg.group) == "233.252.1.1"
    assert cfg.mode == "replicate"
    text = live.configs[1].read_text()
    assert text.startswith("# decent node configuration, written by `decent init`.")
    assert "# the group's shared key: same on every member" in text
    # ... and `decent run` ran it: the fixture's nodes are these configs.
    assert _get(live.urls[1] + "/api/node")["name"] == "n2"


def test_init_defaults_and_messages(tmp_path: Path) -> None:
    out = tmp_path / "node.toml"
    made = decent("init", "--name", "solo", "--rloc", "192.0.2.5", "-o", str(out))
    assert made.returncode == 0, made.stderr
    assert f"wrote {out}: node solo, group 233.252.1.1 (replicate)" in made.stdout
    assert f"run it:    decent run --config {out}" in made.stdout
    assert "a new group key was generated" in made.stdout
    cfg = load_config(out)
    assert cfg.database == ()
    assert cfg.seeds == ()
    assert len(cfg.key) >= 16
    assert '# eid = "10.1.0.0/24"' in out.read_text()
    again = decent("init", "--rloc", "192.0.2.5", "-o", str(out))
    assert again.returncode == 2
    assert again.stderr == f"decent init: {out} exists; pass --force to overwrite it\n"
    forced = decent(
        "init", "--interface", "lo", "--mode", "multicast", "-o", str(out), "--force"
    )
    assert forced.returncode == 0, forced.stderr
    assert load_config(out).mode == "multicast"
    assert 'interface = "lo"' in out.read_text()
    stdout = decent("init", "--name", "x", "--rloc", "192.0.2.5", "-o", "-")
    assert stdout.stdout.startswith("# decent node configuration")
    for args, message in (
        (("--eid", "banana"), "decent init: --eid 'banana': 'banana' is not an addr"),
        (("--group", "10.0.0.1"), "decent init: --group 10.0.0.1 is not a multicast"),
        (("--group", "x"), "decent init: --group 'x' is not an IP address"),
        (("--seed", "x"), "decent init: 'x' is not an IP address"),
    ):
        bad = decent("init", "--rloc", "192.0.2.5", "-o", "-", *args)
        assert bad.returncode == 2, args
        assert bad.stderr.startswith(message), bad.stderr
        assert bad.stderr.count("\n") == 1, bad.stderr


def test_config_text_round_trips_odd_values(tmp_path: Path) -> None:
    path = tmp_path / "odd.toml"
    path.write_text(
        config_text(
            name='n "quoted" \\ name',
            rloc="2001:db8::1",
            interface=None,
            state_dir=str(tmp_path / "state"),
            group="ff05::1:3",
            mode="replicate",
            seeds=["2001:db8::2"],
            key="k'\"ey",
            eids=["[0]2001:db8:1::/48", "'printer'"],
            listen="[::1]:8080",
        )
    )
    cfg = load_config(path)
    assert cfg.name == 'n "quoted" \\ name'
    assert cfg.key == b"k'\"ey"
    assert [str(e) for e in cfg.database] == ["[0]2001:db8:1::/48", "[0]'printer'"]
    assert cfg.web_host == "::1"


# ---------------------------------------------------------------- API clients
def test_status_human_and_json(live: Live) -> None:
    human = decent("status", "--node", live.urls[0])
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert re.fullmatch(
        r"node n1  rloc 127\.0\.62\.1  mode replicate  group 233\.252\.1\.1"
        r"  instance-id 0",
        lines[0],
    )
    assert re.fullmatch(
        r"uptime \d+:\d\d:\d\d  health ok \(2 members\)  xtr-id [0-9a-f]{32}", lines[1]
    )
    assert lines[2] == "holds 5 registrations, 2 peers, 1 map-cache entries"
    assert lines[3] == "reachability reached directly"
    assert lines[5] == "Peers"
    assert lines[6].split() == [
        "RLOC",
        "Name",
        "First",
        "Seen",
        "Last",
        "Heard",
        "TTL",
        "left",
        "State",
    ]
    assert lines[7].startswith("127.0.62.1 (this node)  n1")
    assert lines[8].startswith("127.0.62.2")
    assert lines[8].split()[1] == "n2"
    assert "map-register" in human.stdout
    assert lines[-1].startswith("drops: ")
    data = json.loads(decent("status", "--json", "--node", live.urls[0]).stdout)
    assert data["node"]["name"] == "n1"
    assert data["node"]["health"] == {"ok": True, "status": "ok", "members": 2}
    assert [p["name"] for p in data["peers"]] == ["n1", "n2"]


def test_sites_human_and_json(live: Live) -> None:
    human = decent("sites", "--node", live.urls[1])
    assert human.returncode == 0, human.stderr
    head, *lines = human.stdout.splitlines()
    assert head.startswith("Site Name     EID-Prefix or (S,G)")
    assert "Registration Flags" in head
    # A multi-line cell (an RLE) goes on lines of its own, under its column.
    eid_column = head.index("EID-Prefix")
    rows = [r for r in lines if r[eid_column : eid_column + 1].strip()]
    by_eid = {r.split()[1] if r.startswith("decent") else r.split()[0]: r for r in rows}
    assert set(by_eid) == {
        "[0]'n1'",
        "[0]'n2'",
        "[0]10.61.0.0/24",
        "[0]10.62.0.0/24",
        "[0](0.0.0.0/0,",
    }
    assert "yes (dynamic)  127.0.62.1" in by_eid["[0]10.61.0.0/24"]
    group = by_eid["[0](0.0.0.0/0,"]
    assert group.endswith("P-s-I-T-r-M-n       rle: 127.0.62.1(L128) n1")
    below = lines[lines.index(group) + 1]
    assert below == " " * group.index("rle: ") + "rle: 127.0.62.2(L128) n2"
    data = json.loads(decent("sites", "--json", "--node", live.urls[1]).stdout)
    assert sorted(s["eid"] for s in data) == sorted(
        s["eid"] for s in _get(live.urls[1] + "/api/v1/sites")
    )


def test_peers_and_map_cache_human_and_json(live: Live) -> None:
    peers = decent("peers", "--node", live.urls[1])
    assert peers.returncode == 0, peers.stderr
    rows = peers.stdout.splitlines()[1:]
    assert [r.split()[0] for r in rows] == ["127.0.62.1", "127.0.62.2"]
    assert rows[1].startswith("127.0.62.2 (this node)  n2")
    assert all(r.endswith("current") for r in rows)
    data = json.loads(decent("peers", "--json", "--node", live.urls[1]).stdout)
    assert [(p["rloc"], p["state"]) for p in data] == [
        ("127.0.62.1", "current"),
        ("127.0.62.2", "current"),
    ]
    # Each member's EIDs: its prefix and its name (not the group's).
    assert [p["eids"] for p in data] == [
        ["[0]'n1'", "[0]10.61.0.0/24"],
        ["[0]'n2'", "[0]10.62.0.0/24"],
    ]
    cache = decent("map-cache", "--node", live.urls[0])
    assert cache.returncode == 0, cache.stderr
    head, row, member = cache.stdout.splitlines()
    assert head.split("  ")[0] == "EID-Prefix or (S,G)"
    assert head.endswith("packet-count  byte-count")
    assert row.startswith("[0](0.0.0.0/0, 233.252.1.1/32)")
    assert re.search(r"rle: 127\.0\.62\.1\(L128\) n1  map-notify +up", row)
    assert row.split()[-5:] == ["up", "255/0", "1/100", "0", "0"]
    assert member == " " * row.index("rle: ") + "rle: 127.0.62.2(L128) n2"
    data = json.loads(decent("map-cache", "--json", "--node", live.urls[0]).stdout)
    assert [e["source"] for e in data] == ["map-notify"]


def test_text_tables_say_when_empty_or_cut():
    empty = text_table(views.cache_table([]))
    assert empty.splitlines()[-1] == "The map-cache is empty."
    many = [{"rloc": f"10.0.{i >> 8}.{i & 255}"} for i in range(views.MAX_ROWS + 2)]
    cut = text_table(views.peers_table(many))
    assert cut.splitlines()[-1] == "2 more not shown: GET /api/v1/peers"


def test_an_rle_row_is_a_line_per_member_not_blank_fields():
    """The map-cache's RLE row once printed `up, ,  255/0, ,  1/100, ,`: its
    state and priority cells pad with "" to stay level with the members'
    lines, which the one-line text joined with commas."""
    members = [
        {"address": f"192.0.2.{i}", "level": 128, "name": f"n{i}"} for i in (1, 2, 3)
    ]
    entry = {
        "eid": "[0](0.0.0.0/0, 233.252.1.1/32)",
        "uptime_s": 5.0,
        "ttl_s": 60.0,
        "source": "map-notify",
        "negative": False,
        "rlocs": [
            {
                "address": "rle",
                "rle": members,
                "priority": 255,
                "weight": 0,
                "m_priority": 1,
                "m_weight": 100,
                "state": "up",
            }
        ],
        "packet-count": 0,
        "byte-count": 0,
    }
    assert text_table(views.cache_table([entry])).splitlines()[1:] == [
        "[0](0.0.0.0/0, 233.252.1.1/32)  0:00:05  0:01:00  rle: 192.0.2.1(L128) n1"
        "  map-notify        up          255/0                    1/100"
        "                      0             0",
        " " * 50 + "rle: 192.0.2.2(L128) n2",
        " " * 50 + "rle: 192.0.2.3(L128) n3",
    ]
    # One line (a page tooltip, a log): the members, and no blank fields.
    state = views.cache_row(entry)["cells"][5]
    assert cell_text(state) == "up"


# ---------------------------------------------------------------- lookup
def test_lookup_asks_the_local_node_over_udp(live: Live) -> None:
    human = decent("lookup", "10.62.0.9", "--node", live.urls[0])
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0] == "Send map-request to 127.0.62.1:4342 for [0]10.62.0.9/32 ..."
    assert re.fullmatch(
        r"Received map-reply from 127\.0\.62\.1:4342 with rtt \d+\.\d{4} secs", lines[1]
    )
    assert lines[3] == "Mapping entries for EID [0]10.62.0.9/32:"
    assert lines[4] == "[0]10.62.0.0/24, record ttl: 1 minutes, auth bit: 0"
    assert lines[5].split() == [
        "Locator",
        "State",
        "Priority/Weight",
        "Multicast",
        "P/W",
    ]
    assert lines[6].split() == ["127.0.62.2", "up", "1/100", "255/0"]
    data = json.loads(decent("lookup", "'n2'", "--json", "--node", live.urls[0]).stdout)
    assert data["resolver"] == "127.0.62.1:4342"
    assert data["rtt_ms"] > 0
    (record,) = data["records"]
    assert record["eid"] == "[0]'n2'"
    assert [r["address"] for r in record["rlocs"]] == ["127.0.62.2"]


def test_lookup_via_any_resolver_and_negative_answers(live: Live) -> None:
    group = decent("lookup", "1.2.3.4->233.252.1.1", "--via", RLOCS[1], "--json")
    assert group.returncode == 0, group.stderr
    (record,) = json.loads(group.stdout)["records"]
    assert record["eid"] == "[0](0.0.0.0/0, 233.252.1.1/32)"
    assert [m["address"] for m in record["rlocs"][0]["rle"]] == list(RLOCS)
    human = decent("lookup", "9.9.9.9", "--via", RLOCS[1])
    assert human.returncode == 0, human.stderr
    assert re.search(
        r"^\[0\]8\.0\.0\.0/\d+, record ttl: \d+ minutes, auth bit: 0, negative, "
        r"action: send-map-request$",
        human.stdout,
        re.M,
    ), human.stdout


class GoldenResolver:
    """A Map-Resolver that is not ours: it reads the Map-Request by hand
    (RFC 9301 5.2 inside the 5.8 ECM), knowing nothing of decent.wire, and
    answers every request with the E4 golden Map-Reply, only its nonce
    patched in, to the first ITR-RLOC at the inner UDP source port."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((STUB_RESOLVER, 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        #: The EID-prefix of each request answered, as (address, mask-len).
        self.asked: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> GoldenResolver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            answer = self._answer(data)
            if answer is not None:
                self.sock.sendto(*answer)

    def _answer(self, data: bytes) -> tuple[bytes, tuple[str, int]] | None:
        if data[0] >> 4 != 8 or data[4] >> 4 != 4:  # ECM, inner IPv4
            return None
        udp = 4 + (data[4] & 0x0F) * 4
        sport = int.from_bytes(data[udp : udp + 2], "big")
        req = data[udp + 8 :]
        if req[0] >> 4 != 1 or req[12:14] != b"\0\0":  # no source EID
            return None
        irc, count = (req[2] & 0x1F) + 1, req[3]
        at = 14
        itrs = []
        for _ in range(irc):
            afi = int.from_bytes(req[at : at + 2], "big")
            size = {1: 4, 2: 16}[afi]
            itrs.append(ip_address(req[at + 2 : at + 2 + size]))
            at += 2 + size
        mask, afi = req[at + 1], int.from_bytes(req[at + 2 : at + 4], "big")
        if count != 1 or afi != 1:
            return None
        self.asked.append((str(ip_address(req[at + 4 : at + 8])), mask))
        reply = self.reply[:4] + req[4:12] + self.reply[12:]
        return reply, (str(itrs[0]), sport)


def test_lookup_via_another_implementations_resolver() -> None:
    """`decent lookup --via` against a stub that answers with golden bytes:
    our client parses a Map-Reply it did not make, and reports its RTT."""
    golden = load_vectors()["e04_map_reply"].data
    with GoldenResolver(golden) as stub:
        via = ("--via", STUB_RESOLVER, "--port", str(stub.port), "--timeout", "5")
        human = decent("lookup", "10.2.3.4", *via)
        assert human.returncode == 0, human.stderr
        lines = human.stdout.splitlines()
        assert lines[0] == (
            f"Send map-request to {STUB_RESOLVER}:{stub.port} for [0]10.2.3.4/32 ..."
        )
        rtt = re.fullmatch(
            rf"Received map-reply from {re.escape(STUB_RESOLVER)}:{stub.port} "
            r"with rtt (\d+\.\d{4}) secs",
            lines[1],
        )
        assert rtt, lines[1]
        assert lines[3] == "Mapping entries for EID [0]10.2.3.4/32:"
        assert lines[4] == "[0]10.2.0.0/16, record ttl: 1440 minutes, auth bit: 1"
        assert lines[6].split() == ["198.51.100.7", "up", "1/100", "255/0"]
        data = json.loads(decent("lookup", "10.2.3.4", "--json", *via).stdout)
        assert stub.asked == [("10.2.3.4", 32)] * 2
    assert data["from"] == f"{STUB_RESOLVER}:{stub.port}"
    assert 0 < data["rtt_ms"] < 5000
    (record,) = data["records"]
    assert record["eid"] == "[0]10.2.0.0/16"
    assert (record["ttl_min"], record["authoritative"], record["negative"]) == (
        1440,
        True,
        False,
    )
    (loc,) = record["rlocs"]
    assert (loc["address"], loc["priority"], loc["weight"]) == ("198.51.100.7", 1, 100)
    assert (loc["m_priority"], loc["m_weight"], loc["reachable"]) == (255, 0, True)


def test_lookup_and_client_errors_are_one_line(live: Live) -> None:
    cases = [
        (("lookup", "banana"), 2, "decent lookup: bad EID: 'banana' is not an addr"),
        (("lookup", "1.1.1.1", "--via", "x"), 2, "decent lookup: --via 'x' is not"),
        (("lookup", "1.1.1.1"), 1, "decent lookup: cannot reach the node at"),
        (("status",), 1, "decent status: cannot reach the node at http://127.0.0.1:9"),
        (("sites", "--node", "127.0.0.1:9"), 1, "decent sites: cannot reach the node"),
        (("peers", "--node", live.urls[0] + "/nope"), 1, "decent peers: http://"),
        (("map-cache", "--node", "http://127.0.0.1:9"), 1, "decent map-cache: cannot"),
    ]
    for args, code, message in cases:
        result = decent(*args)
        assert result.returncode == code, (args, result.stderr)
        assert result.stderr.startswith(message), (args, result.stderr)
        assert result.stderr.count("\n") == 1, (args, result.stderr)
        assert result.stdout == ""


@pytest.mark.parametrize(
    "text",
    [
        "10.1.2.3",
        "10.1.0.0/16",
        "[7]10.1.2.3",
        "'printer'",
        "1.2.3.4->233.252.1.1",
        "2001:db8::1",
    ],
)
def test_map_request_is_a_standard_ecm(text: str) -> None:
    """What `decent lookup` sends: an ECM'd Map-Request any Map-Resolver reads."""
    eid = parse_eid(text)
    itr = IPv4Address("192.0.2.1")
    data = map_request(eid, itr, 61000, 0x0102030405060708, IPv4Address("192.0.2.2"))
    ecm = decode(data)
    assert isinstance(ecm, EncapsulatedControlMessage)
    assert (ecm.inner_src, ecm.inner_sport, ecm.inner_dport) == (itr, 61000, 4342)
    req = ecm.message
    assert isinstance(req, MapRequest)
    assert req.itr_rlocs == (itr,)
    (record,) = req.records
    assert Eid.from_wire(record.eid, record.mask_len) == eid
    if isinstance(eid.address, IPv4Address) and eid.group is None:
        assert ecm.inner_dst == eid.address  # to the EID, as lig does


def test_map_request_decodes_cleanly_in_wireshark() -> None:
    if missing_tools():
        pytest.skip(f"tshark missing: {missing_tools()}")
    from tests.wire.tshark import assert_clean

    itr, mr = IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")
    datagrams = [
        (map_request(parse_eid(t), itr, 61000, 7, mr), 4342)
        for t in ("10.1.2.3", "10.1.0.0/16", "[7]10.1.2.3", "2001:db8::/32")
    ]
    assert_clean(datagrams)
    v6 = map_request(
        parse_eid("2001:db8::1"),
        IPv6Address("2001:db8::9"),
        61000,
        7,
        IPv6Address("2001:db8::2"),
    )
    assert_clean([(v6, 4342)])


# ---------------------------------------------------------------- trust
def test_init_writes_its_config_readable_by_its_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "etc" / "node.toml"
    made = decent("init", "--name", "solo", "--rloc", "192.0.2.5", "-o", str(out))
    assert made.returncode == 0, made.stderr
    assert out.stat().st_mode & 0o777 == 0o600  # it holds the group key
    again = decent("init", "--rloc", "192.0.2.6", "-o", str(out), "--force")
    assert again.returncode == 0, again.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    assert 'rloc = "192.0.2.6"' in out.read_text()
    assert list(out.parent.iterdir()) == [out]  # no temporary file left


class _Member(threading.Thread):
    """A stand-in for a member's POST /api/revoke: answers `reply` (status,
    JSON) and keeps what it was sent."""

    def __init__(self, status: int, reply: dict[str, Any]) -> None:
        import http.server

        super().__init__(daemon=True)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        member = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                member.requests.append((self.path, dict(self.headers), body))
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def run(self) -> None:
        self.server.serve_forever(poll_interval=0.05)

    def __enter__(self) -> _Member:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _revocation_token() -> str:
    from decent.client import encode_revoke_token
    from decent.wire.trust import issue_revocation

    return encode_revoke_token(
        issue_revocation(
            bytes(range(32)),
            mesh="m",
            name="n4",
            public_key=bytes(32),
            not_after=2_000_000_000,
            serial=0xABC,
        )
    )


def test_revoke_posts_the_token_to_the_member_and_says_what_it_answered() -> None:
    token = _revocation_token()
    with _Member(200, {"ok": True, "reason": ""}) as member:
        done = decent("revoke", token, "--node", member.url, "--token", "s3cret")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"{member.url} took the revocation of node n4 (serial 0000000000000abc); "
        "it passes it on to every member\n"
    )
    ((path, headers, body),) = member.requests
    assert (path, body) == ("/api/v1/revoke", token.encode())
    assert headers["Authorization"] == "Bearer s3cret"
    with _Member(400, {"ok": False, "reason": "revocation-bad-signature"}) as member:
        refused = decent("revoke", token, "--node", member.url)
        assert "Authorization" not in member.requests[0][1]
        as_json = decent("revoke", token, "--node", member.url, "--json")
    assert refused.returncode == 1
    assert refused.stderr == (
        f"decent revoke: {member.url} refused the revocation of node n4 (serial "
        "0000000000000abc): revocation-bad-signature\n"
    )
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {
        "ok": False,
        "reason": "revocation-bad-signature",
        "node": "n4",
    }
    refusal = "refused: revoking a certificate needs the admin token"
    with _Member(403, {"ok": False, "reason": refusal, "error": refusal}) as member:
        forbidden = decent("revoke", token, "--node", member.url)
    assert forbidden.returncode == 1
    assert forbidden.stderr == (
        f"decent revoke: {member.url}/api/v1/revoke: HTTP 403: {refusal}; a member "
        "takes revocations from its own host, or with its [web] admin_token: "
        "pass --token ADMIN\n"
    )
    gone = decent("revoke", token, "--node", "http://127.0.0.1:9")
    assert gone.returncode == 1
    assert gone.stderr.startswith("decent revoke: cannot reach the node at")
