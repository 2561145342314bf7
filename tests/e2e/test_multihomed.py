"""A multi-homed host: its registrations name its RLOC, not its default address."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from decent.lab import netns_unavailable
from tests.e2e.conftest import PREFIX

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(netns_unavailable() is not None, reason="needs namespaces"),
]

NET = os.environ.get("DECENT_E2E_NET", "198.18")
#: Host A's default route leaves from .94.2; its RLOC is .93.2 on another
#: interface, toward its peer B (.93.1).
DEFAULT_A, RLOC_A, RLOC_B = f"{NET}.94.2", f"{NET}.93.2", f"{NET}.93.1"
A, B = f"{PREFIX}mh-a", f"{PREFIX}mh-b"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _in(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


@pytest.fixture
def hosts() -> Iterator[None]:
    """A with two interfaces to B: eth0 (default route) and eth1 (RLOC)."""
    try:
        for ns in (A, B):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        for k, net in ((0, f"{NET}.94"), (1, f"{NET}.93")):
            _ip("link", "add", "h4tmp", "netns", A, "type", "veth", "peer", "h4tmq")
            _ip("link", "set", "h4tmq", "netns", B)
            _ip("-n", A, "link", "set", "h4tmp", "name", f"eth{k}")
            _ip("-n", B, "link", "set", "h4tmq", "name", f"eth{k}")
            for ns, host in ((A, 2), (B, 1)):
                _ip("-n", ns, "addr", "add", f"{net}.{host}/24", "dev", f"eth{k}")
                _ip("-n", ns, "link", "set", f"eth{k}", "up")
        _ip("-n", A, "route", "add", "default", "via", f"{NET}.94.1")
        yield
    finally:
        for ns in (A, B):
            out = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True
            ).stdout
            for pid in out.split():
                os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _config(name: str, rloc: str, seed: str, eid: str, state: Path) -> str:
    return f"""
[node]
name = "{name}"
rloc = "{rloc}"
state_dir = "{state}"

[decent]
group = "233.252.1.1"
key = "multi-homed"
mode = "replicate"
seeds = ["{seed}"]

[[database]]
eid = "{eid}"

[dataplane]
enabled = true

[web]
listen = "127.0.0.1:8080"
"""


def _sites(ns: str) -> list[dict[str, Any]]:
    code = (
        "import json, urllib.request as u\n"
        "o = u.build_opener(u.ProxyHandler({}))\n"
        "print(o.open('http://127.0.0.1:8080/api/sites', timeout=2).read().decode())"
    )
    out = subprocess.run(
        _in(ns, sys.executable, "-c", code),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode:
        return []
    sites: list[dict[str, Any]] = json.loads(out.stdout)
    return sites


def test_own_registrations_name_the_rloc_not_the_default_address(
    hosts: None, tmp_path: Path
) -> None:
    nodes = []
    logs = []
    for ns, name, rloc, seed, eid in (
        (A, "a", RLOC_A, RLOC_B, "192.0.2.1/32"),
        (B, "b", RLOC_B, RLOC_A, "192.0.2.2/32"),
    ):
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(_config(name, rloc, seed, eid, tmp_path / f"{name}-state"))
        log = tmp_path / f"{name}.log"
        logs.append(log)
        with log.open("wb") as out:
            nodes.append(
                subprocess.Popen(
                    _in(
                        ns, sys.executable, "-m", "decent", "run", "--config", str(cfg)
                    ),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
    try:
        want = {"[0]192.0.2.1/32", "[0]192.0.2.2/32"}
        deadline = time.monotonic() + 60
        while True:
            views = {ns: _sites(ns) for ns in (A, B)}
            if all(want <= {s["eid"] for s in v} for v in views.values()):
                break
            assert time.monotonic() < deadline, (views, logs[0].read_text())
            time.sleep(0.2)
        for ns, sites in views.items():
            for site in sites:
                regs = site["registrations"]
                assert DEFAULT_A not in json.dumps(site), (ns, site)
                if site["eid"] in ("[0]192.0.2.1/32", "[0]'a'"):
                    # A's own registration, on its own page and on B's.
                    assert site["last_registerer"] == RLOC_A, (ns, site)
                    assert [r["registrant"] for r in regs] == [RLOC_A], (ns, site)
                if site.get("group") is not None:
                    assert {r["registrant"] for r in regs} == {RLOC_A, RLOC_B}
        text = logs[0].read_text()
        assert f"map-register from {RLOC_A} for [0]192.0.2.1/32" in text, text
        assert f"from {DEFAULT_A}" not in text, text
    finally:
        for proc in nodes:
            proc.send_signal(signal.SIGTERM)
        for proc in nodes:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
