"""`decent hosts`: the mesh's name EIDs as an /etc/hosts section, from live
nodes, with a hostile registrant's names kept out."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from decent.client import ClientError
from decent.client.hosts import (
    END,
    begin_line,
    hosts_from_sites,
    is_hostname,
    replace_section,
)
from decent.wire import Locator, MapRecord, MapRegister, parse_eid

#: Loopback addresses no other test module uses.
RLOCS = ("127.0.65.1", "127.0.65.2")
HOSTILE = "127.0.65.9"
KEY = "hosts-test-key"
GROUP = "233.252.1.1"
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def decent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "decent", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "DECENT_NODE": "http://127.0.0.1:9"},
    )


def _get(url: str) -> Any:
    with _HTTP.open(url, timeout=2) as resp:
        return json.loads(resp.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ---------------------------------------------------------------- pure parts
@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("n2", True),
        ("web-1.lab", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("-n2", False),
        ("n2-", False),
        ("n 2", False),
        ("n2\n192.0.2.66 bank", False),
        ("n2#x", False),
        ("n2..x", False),
        ("192.0.2.1", False),
        ("::1", False),
        ("", False),
        ("nä", False),
    ],
)
def test_host_names_are_rfc_1123(name: str, ok: bool) -> None:
    assert is_hostname(name) is ok


def _site(eid: str, xtr_id: str | None, registrant: str = "192.0.2.200") -> Any:
    return {"eid": eid, "registrations": [{"xtr_id": xtr_id, "registrant": registrant}]}


def test_names_pair_with_the_host_eids_of_their_registrant() -> None:
    sites = [
        _site("[0]'n1'", "aa"),
        _site("[0]192.0.2.1/32", "aa"),
        _site("[0]2001:db8::1/128", "AA"),
        _site("[0]10.1.0.0/24", "aa"),  # a prefix, no host's address
        _site("[0]'n2'", "bb"),
        _site("[0]192.0.2.2/32", "bb"),
        _site("[7]192.0.2.7/32", "cc"),  # another instance
        _site("[7]'n7'", "cc"),
        _site("[0]'lone'", "dd"),
        _site("[0]'old'", None, "192.0.2.50"),  # no xTR-ID: by registrant
        _site("[0]192.0.2.50/32", None, "192.0.2.50"),
        _site("[0]'evil\n192.0.2.66 bank'", "aa"),
        _site("[0](0.0.0.0/0, 233.252.1.1/32)", "aa"),
        "not a site",
        {"eid": 5},
        {"eid": "[0]'x'", "registrations": 7},
        {"registrations": []},
    ]
    hosts = hosts_from_sites(sites)
    assert hosts.lines == [
        ("192.0.2.1", "n1"),
        ("2001:db8::1", "n1"),
        ("192.0.2.2", "n2"),
        ("192.0.2.50", "old"),
    ]
    assert hosts.refused == [repr("evil\n192.0.2.66 bank")]
    assert hosts.unaddressed == ["lone"]
    assert hosts.malformed == 4
    assert hosts_from_sites({"not": "a list"}).lines == []


def test_the_section_replaces_only_itself() -> None:
    other = "127.0.0.1\tlocalhost\n# BEGIN decent other\n10.0.0.1 x\n# END decent\n"
    new = replace_section(other, "g", ["# BEGIN decent g", "192.0.2.1 n1", END])
    assert new == other + "# BEGIN decent g\n192.0.2.1 n1\n# END decent\n"
    again = replace_section(new, "g", [begin_line("g"), "192.0.2.2 n2", END])
    assert again == other + "# BEGIN decent g\n192.0.2.2 n2\n# END decent\n"
    assert replace_section(again, "g", None) == other
    # No newline at the end of the file: one is added before the section.
    assert replace_section("::1 lh", "g", [begin_line("g"), END]) == (
        "::1 lh\n# BEGIN decent g\n# END decent\n"
    )
    with pytest.raises(ClientError, match="has no '# END decent' after it"):
        replace_section("# BEGIN decent g\n10.0.0.1 x\n", "g", None)
    with pytest.raises(ClientError, match="appears 2 times"):
        replace_section("# BEGIN decent g\n# END decent\n" * 2, "g", None)


# ---------------------------------------------------------------- live nodes
@dataclass
class Live:
    urls: list[str]


def _hostile_register(port: int) -> None:
    """A registrant with the group key that names itself a line of its own
    in /etc/hosts, next to an honest name of the same xTR."""
    records = tuple(
        MapRecord(*parse_eid(text).to_wire(), (Locator(ip_address(HOSTILE)),), 1)
        for text in (
            "'evil\n192.0.2.66 bank'",
            "'x y'",
            "'fine'",
            "192.0.2.9/32",
        )
    )
    msg = MapRegister(
        1, records, want_map_notify=True, ttl_timeout=True, xtr_id=0x99
    ).signed(KEY.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOSTILE, 0))
        s.sendto(msg.encode(), (RLOCS[0], port))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """n1 (192.0.2.1, 2001:db8::1) and n2 (192.0.2.2 and a /24), from
    `decent init` configs, and a hostile registrant's names on n1."""
    tmp = tmp_path_factory.mktemp("hosts")
    procs: list[subprocess.Popen[bytes]] = []
    eids = (("192.0.2.1/32", "2001:db8::1/128"), ("192.0.2.2/32", "10.66.0.0/24"))
    urls = []
    try:
        for i, rloc in enumerate(RLOCS, start=1):
            port = _free_port()
            path = tmp / f"n{i}.toml"
            seeds = ["--seed", RLOCS[0]] if i > 1 else []
            made = decent(
                "init",
                *("--name", f"n{i}", "--rloc", rloc, "--key", KEY),
                *(x for e in eids[i - 1] for x in ("--eid", e)),
                *("--listen", f"127.0.0.1:{port}", "--group", GROUP),
                *("--state-dir", str(tmp / f"state{i}"), "-o", str(path), *seeds),
            )
            assert made.returncode == 0, made.stderr
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
        wanted = {"[0]'n1'", "[0]'n2'", "[0]192.0.2.2/32", "[0]'fine'"}
        deadline = time.monotonic() + 20
        sent = False
        while True:
            try:
                if not sent and len(_get(urls[0] + "/api/v1/peers")) == 2:
                    node = _get(urls[0] + "/api/v1/node")
                    _hostile_register(int(node["control_port"]))
                    sent = True
                held = {s["eid"] for s in _get(urls[0] + "/api/v1/sites")}
                if wanted <= held:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = [(tmp / f"n{i}.log").read_text() for i in (1, 2)]
                raise AssertionError(f"nodes did not converge: {logs}")
            time.sleep(0.1)
        yield Live(urls)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_print_shows_the_section_and_says_what_it_left_out(live: Live) -> None:
    done = decent("hosts", "--print", "--node", live.urls[0])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"# BEGIN decent {GROUP}"
    assert lines[-1] == END
    entries = [line.split() for line in lines if not line.startswith("#")]
    assert entries == [
        ["192.0.2.9", "fine"],
        ["192.0.2.1", "n1"],
        ["2001:db8::1", "n1"],
        ["192.0.2.2", "n2"],
    ]
    # The hostile names: none made a line; each counted and shown escaped.
    assert "bank" not in done.stdout
    assert "decent hosts: left out 2 name EID(s) that are not host names" in (
        done.stderr
    )
    assert repr("evil\n192.0.2.66 bank") in done.stderr


def test_writes_its_section_keeping_the_rest_and_the_mode(
    live: Live, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    before = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"
    hosts.write_text(before)
    hosts.chmod(0o640)
    link = tmp_path / "link"
    link.symlink_to(hosts)
    done = decent("hosts", "--file", str(link), "--node", live.urls[0])
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote 3 name(s) of group {GROUP} to {link}\n"
    assert link.is_symlink()  # the file it points to was replaced
    text = hosts.read_text()
    assert text.startswith(before + f"# BEGIN decent {GROUP}\n")
    assert text.endswith("192.0.2.2    n2\n# END decent\n")
    assert hosts.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts", "link"]
    # A line added by hand after the section survives a rerun.
    hosts.write_text(text + "192.0.2.77 mine\n")
    again = decent("hosts", "--file", str(hosts), "--node", live.urls[0])
    assert again.stdout.startswith(f"{hosts} is up to date: 3 name(s)")
    assert hosts.read_text() == text + "192.0.2.77 mine\n"
    gone = decent("hosts", "--remove", "--file", str(hosts), "--group", GROUP)
    assert gone.returncode == 0, gone.stderr
    assert hosts.read_text() == before + "192.0.2.77 mine\n"
    assert hosts.stat().st_mode & 0o777 == 0o640


def test_errors_are_one_line(live: Live, tmp_path: Path) -> None:
    broken = tmp_path / "hosts"
    broken.write_text(f"# BEGIN decent {GROUP}\n192.0.2.1 n1\n")
    for args, message in (
        (("--file", str(broken)), "decent hosts: '# BEGIN decent 233.252.1.1' on"),
        (("--group", "a b"), "decent hosts: 'a b' cannot tag a section"),
        (("--print", "--node", "127.0.0.1:9"), "decent hosts: cannot reach the node"),
    ):
        done = decent("hosts", "--node", live.urls[0], *args)
        assert done.returncode in (1, 2), done.stderr
        assert done.stderr.startswith(message), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
    assert broken.read_text() == f"# BEGIN decent {GROUP}\n192.0.2.1 n1\n"
