"""The pull mode's DNS side: a real NSD in a lab namespace, asked from a node's."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from decent.lab import NetnsLab
from decent.lab.dns import DnsServer, dns_unavailable

pytestmark = pytest.mark.e2e
MakeLab = Callable[..., NetnsLab]
ZONE = "ms.decent.test"

#: What a node's resolver sees: dnspython's stub resolver with no system
#: config, asking the server alone. Prints {"rcode", "ttl", "addresses"}.
_ASK = """
import json, sys
import dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = [sys.argv[1]]
r.lifetime = 10.0
try:
    a = r.resolve(sys.argv[2], "A")
except dns.resolver.NXDOMAIN:
    print(json.dumps({"rcode": "NXDOMAIN", "ttl": None, "addresses": []}))
else:
    print(json.dumps({
        "rcode": "NOERROR",
        "ttl": a.rrset.ttl,
        "addresses": sorted(rd.address for rd in a),
    }))
"""


def ask(lab: NetnsLab, server: DnsServer, name: str) -> dict[str, object]:
    """Resolve `name` in the zone from inside node 1's namespace."""
    result = lab.exec(
        1,
        sys.executable,
        "-c",
        _ASK,
        str(server.address),
        f"{name}.{ZONE}",
        timeout=60.0,
        check=True,
    )
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def a(*last: int) -> list[IPv4Address]:
    return [IPv4Address(f"198.51.100.{x}") for x in last]


def served(ttl: int | None, *last: int) -> dict[str, object]:
    return {
        "rcode": "NOERROR",
        "ttl": ttl,
        "addresses": sorted(str(x) for x in a(*last)),
    }


NXDOMAIN: dict[str, object] = {"rcode": "NXDOMAIN", "ttl": None, "addresses": []}


def live_processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line holds `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry))
    return found


@pytest.fixture
def need_dns() -> None:
    reason = dns_unavailable()
    if reason:
        pytest.skip(f"DNS server unavailable: {reason}")


@pytest.mark.usefixtures("need_dns")
def test_records_served_updated_and_torn_down(make_lab: MakeLab) -> None:
    lab = make_lab(nodes=1)
    records = {"0": a(1, 2), "1": a(3), "2": a(4, 5, 6)}
    server = lab.add_dns_server(ZONE, records, 30)
    assert server.address in lab.subnet
    assert server.port == 53
    assert server.namespace == f"{lab.prefix}-c-dns1"
    conf = str(server.workdir / "nsd.conf")
    workdir = server.workdir
    assert server.pids()
    assert live_processes_mentioning(conf)

    assert ask(lab, server, "0") == served(30, 1, 2)
    assert ask(lab, server, "1") == served(30, 3)
    assert ask(lab, server, "2") == served(30, 4, 5, 6)
    assert ask(lab, server, "3") == NXDOMAIN

    # One Map-Server set changes, and with it the TTL.
    server.update({"0": a(1, 2), "1": a(3, 7), "2": a(4, 5, 6)}, ttl=10)
    assert server.serial == 2
    assert ask(lab, server, "1") == served(10, 3, 7)
    assert ask(lab, server, "0") == served(10, 1, 2)

    # A name can go (NXDOMAIN) and come; the TTL stays when not given.
    server.update({"0": a(8), "1": a(3, 7), "3": a(9)})
    assert server.serial == 3
    assert ask(lab, server, "2") == NXDOMAIN
    assert ask(lab, server, "3") == served(10, 9)
    assert ask(lab, server, "0") == served(10, 8)

    lab.destroy()
    assert not server.running
    assert server.pids() == []
    assert live_processes_mentioning(conf) == []
    assert not workdir.exists()


def test_bad_names_and_ttls_are_refused() -> None:
    def make(records: dict[str, list[IPv4Address]], ttl: int = 5) -> None:
        DnsServer(None, IPv4Address("127.0.0.1"), ZONE, records, ttl)

    for bad in ("ns", "a b", "-x", "x.", "", "0..1"):
        with pytest.raises(ValueError, match="record name"):
            make({bad: a(1)})
    with pytest.raises(ValueError, match="TTL"):
        make({"0": a(1)}, -1)
    with pytest.raises(ValueError, match="zone"):
        DnsServer(None, IPv4Address("127.0.0.1"), "bad zone", {}, 5)
