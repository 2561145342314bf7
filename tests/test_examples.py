"""Examples a user may copy onto a real host carry no public EIDs, and the
compose lab's network is set in one place."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Final

import pytest

from decent.client.mesh import decode_join_token
from decent.lab import LoopbackLab, NetnsLab, lab_eid, lab_eid6
from decent.lab.main import join_hint

ROOT: Final = Path(__file__).resolve().parents[1]

#: Where an address in an example cannot take a real host's traffic: the
#: documentation ranges (RFC 5737, RFC 3849), private (RFC 1918), shared
#: (RFC 6598) and ULA (RFC 4193) space, the benchmarking range (RFC 2544)
#: the labs' RLOCs use, loopback, link-local, "any" and multicast (group
#: addresses and the 224.0.0.0/4 route, not EIDs a host sends to).
SAFE: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "2001:db8::/32",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "fc00::/7",
        "198.18.0.0/15",
        "127.0.0.0/8",
        "::1/128",
        "169.254.0.0/16",
        "fe80::/10",
        "0.0.0.0/32",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
        "255.255.255.255/32",
    )
)

_V4: Final = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d{1,3}){3})(?![\w.]*\d)")
_V6: Final = re.compile(r"(?<![\w:.])([0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})")


def unsafe(text: str) -> list[str]:
    """Every address literal in text outside the SAFE ranges."""
    found: list[IPv4Address | IPv6Address] = []
    for m in _V4.finditer(text):
        try:
            found.append(IPv4Address(m.group(1)))
        except ValueError:
            continue
    for m in _V6.finditer(text):
        try:
            found.append(IPv6Address(m.group(1)))
        except ValueError:
            continue
    return sorted({str(a) for a in found if not any(a in net for net in SAFE)})


def _example_files() -> Iterator[Path]:
    yield ROOT / "README.md"
    for top in ("compose", "scripts"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.is_file() and path.suffix not in (".whl", ".pyc"):
                yield path


def test_the_scan_catches_public_addresses() -> None:
    assert unsafe('eid = "1.1.1.1/32"  ping 2.2.2.2') == ["1.1.1.1", "2.2.2.2"]
    assert unsafe("eid = 2001:4860::8888/128") == ["2001:4860::8888"]
    assert unsafe("192.0.2.1 10.42.0.1/32 198.18.42.11 fd00::1 ::/0") == []
    assert unsafe("compose 1.29 and python 3.12, version 2.40.3") == []


@pytest.mark.parametrize(
    "path", list(_example_files()), ids=lambda p: str(p.relative_to(ROOT))
)
def test_examples_name_no_public_address(path: Path) -> None:
    """README, compose/ and scripts/: on a laptop, an EID such as 1.1.1.1
    with the data plane on would route its DNS into the overlay."""
    assert unsafe(path.read_text(errors="replace")) == [], path


def test_lab_eids_are_documentation_addresses() -> None:
    for i in range(1, 100):
        assert IPv4Address(lab_eid(i)) in ipaddress.ip_network("192.0.2.0/24")
        assert IPv6Address(lab_eid6(i)) in ipaddress.ip_network("2001:db8::/32")
    labs = [
        LoopbackLab(nodes=99, workdir=Path("/nonexistent")),
        NetnsLab("x", nodes=99, dataplane=True, workdir=Path("/nonexistent")),
    ]
    for lab in labs:
        eids = [e for i in range(1, 100) for e in lab._node(i, []).eids]
        assert len(eids) == (99 if isinstance(lab, LoopbackLab) else 198)
        assert unsafe(" ".join(e.split("/")[0] for e in eids)) == []
        assert not (lab._workdir or Path("/nonexistent")).exists()


def test_join_hint_grants_a_documentation_eid(tmp_path: Path) -> None:
    """`decent lab` prints a `decent join` command whose node turns on its
    data plane on the user's host: the EIDs it routes are the lab's, all
    in TEST-NET-1, and the one it is granted too."""
    lab = LoopbackLab(nodes=3, trust=True, workdir=tmp_path / "lab")
    lab._declare_nodes()  # the mesh authority and the nodes, none started
    hint = join_hint(lab)
    assert unsafe(hint) == []
    token = decode_join_token(re.findall(r"decent join (\S+)", hint)[0])
    granted = [str(e).removeprefix("[0]") for e in token.cert.eids]
    assert granted == ["192.0.2.4/32"], granted
    assert unsafe(" ".join(token.seeds)) == []


@pytest.mark.parametrize("dataplane", [False, True])
def test_decent_init_writes_no_public_address(tmp_path: Path, dataplane: bool) -> None:
    out = tmp_path / "node.toml"
    argv = ["init", "--rloc", "198.18.1.1", "--output", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "decent", *argv, *(["--dataplane"] * dataplane)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert unsafe(out.read_text()) == []
    assert unsafe(result.stdout + result.stderr) == []


# ---------------------------------------------------------------- compose
COMPOSE: Final = ROOT / "compose"


def _compose_net() -> str:
    for line in (COMPOSE / ".env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "DECENT_NET":
            return value.strip()
    raise AssertionError("compose/.env sets no DECENT_NET")


def test_compose_subnet_is_set_in_one_place() -> None:
    """compose/.env alone names the lab's network: the compose files, the
    node configs, the entrypoint, the e2e harness and the benchmark take it
    from there."""
    net = _compose_net()
    assert re.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}", net), net
    ipaddress.ip_network(f"{net}.0/24")
    readers = [p for p in COMPOSE.rglob("*") if p.is_file() and p.suffix != ".whl"] + [
        ROOT / "tests/e2e/compose_lab.py",
        ROOT / "tests/e2e/test_compose_lab.py",
        ROOT / "benchmarks/bench_compose.py",
    ]
    naming = sorted(
        str(p.relative_to(ROOT))
        for p in readers
        if net in p.read_text(errors="replace")
    )
    assert naming == ["compose/.env"]
    compose = (COMPOSE / "docker-compose.yml").read_text()
    assert "subnet: ${DECENT_NET}.0/24" in compose
    for i in (1, 2, 3):
        assert f"ipv4_address: ${{DECENT_NET}}.1{i}" in compose
    for config in sorted(COMPOSE.glob("config/**/*.toml")):
        text = config.read_text()
        assert re.search(r'^rloc = "\$\{DECENT_NET\}\.1\d"$', text, re.M), config
