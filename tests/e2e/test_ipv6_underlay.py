"""The namespace lab over an IPv6 underlay: IPv6 RLOCs, seeds and group, no NAT.

Three nodes whose only addresses are IPv6 (UnderlayLab(underlay="ipv6"))
join, hold every registration, and carry IPv4 and IPv6 EIDs in LISP over
IPv6; a capture on the bridge shows not one IPv4 datagram of theirs. The
tests share one lab and run in file order: joining (captured), then ping.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Final

import pytest

from decent.lab import CONTROL_PORT, DATA_PORT, netns_unavailable
from decent.lab.natlab import GROUP6, UnderlayLab
from decent.lab.pcap import read_frames
from tests.e2e.conftest import _FAILED, PREFIX

pytestmark = pytest.mark.e2e

_NET: Final = os.environ.get("DECENT_E2E_NET", "198.18")
NODES: Final = (1, 2, 3)
V4: Final = {i: f"192.0.2.{i}" for i in NODES}
V6: Final = {i: f"2001:db8::{i}" for i in NODES}
#: Generous bounds (a loaded 2-core machine).
CONVERGE: Final = 60.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UnderlayLab]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"namespace lab unavailable: {reason}")
    the_lab = UnderlayLab(
        f"{PREFIX}v6",
        f"{_NET}.81.0/24",
        len(NODES),
        underlay="ipv6",
        dataplane=True,
        workdir=tmp_path_factory.mktemp("ipv6-underlay"),
    )
    try:
        the_lab.create()
        yield the_lab
    finally:
        the_lab.destroy()
    assert the_lab.namespaces() == []


@pytest.fixture(autouse=True)
def _logs_on_failure(
    request: pytest.FixtureRequest, lab: UnderlayLab
) -> Iterator[None]:
    yield
    if request.node.stash.get(_FAILED, False):
        for i in sorted(lab.nodes):
            print(f"--- {lab.prefix} n{i} log ---\n{lab.log_tail(i, 40)}")


def rlocs(lab: UnderlayLab) -> dict[str, int]:
    return {str(lab.address(i)): i for i in NODES}


def test_three_nodes_join_over_ipv6_and_the_control_traffic_is_ipv6(
    lab: UnderlayLab, tmp_path: Path
) -> None:
    for i in NODES:
        address = lab.address(i)
        assert isinstance(address, IPv6Address)
        assert address in lab.subnet6
        # No IPv4 address in a node's namespace but loopback's.
        shown = lab.exec(i, "ip", "-4", "-o", "addr", "show", check=True).stdout
        assert [line.split()[1] for line in shown.splitlines()] == ["lo"]
        config = tomllib.loads(lab.config_text(i))
        assert config["decent"]["group"] == GROUP6
        for seed in config["decent"].get("seeds", []):
            assert ip_address(seed).version == 6
    with lab.capture(tmp_path / "join.pcap", "udp") as pcap:
        lab.start_all()
        lab.wait_converged(CONVERGE)
    want = {str(lab.address(i)) for i in NODES}
    for i in NODES:
        view = lab.view(i)
        # Every node's EIDs, IPv4 and IPv6, at every node.
        assert view.eids == {f"{V4[j]}/32" for j in NODES} | {
            f"{V6[j]}/128" for j in NODES
        }
        # The membership: three members, by their IPv6 RLOCs.
        assert view.members == want
        assert view.peer_rlocs == want
        node = lab.api(i, "/api/v1/node")
        assert node["group"] == GROUP6
        assert node["rlocs"] == [str(lab.address(i))]
        assert node["health"]["members"] == len(NODES)
    captured = [f for f in read_frames(pcap) if f.proto == socket.IPPROTO_UDP]
    control = [d for d in captured if CONTROL_PORT in (d.sport, d.dport)]
    assert control, "no control traffic captured while the nodes joined"
    # Not one IPv4 datagram crossed the bridge (the markers are left out).
    assert [d for d in captured if isinstance(d.src, IPv4Address)] == []
    by_rloc = rlocs(lab)
    assert {str(d.src) for d in control} <= by_rloc.keys()
    assert {str(d.dst) for d in control} <= by_rloc.keys()
    # Each node sent control traffic, and each received some.
    assert {by_rloc[str(d.src)] for d in control} == set(NODES)
    assert {by_rloc[str(d.dst)] for d in control} == set(NODES)


def _has_routes(lab: UnderlayLab, i: int) -> Callable[[], bool]:
    routes = {f"{V4[j]}/32" for j in NODES if j != i}
    routes |= {f"{V6[j]}/128" for j in NODES if j != i}
    return lambda: routes <= set(lab.api(i, "/api/node")["dataplane"]["routes"])


def test_every_eid_pings_every_other_eid_over_the_ipv6_underlay(
    lab: UnderlayLab, tmp_path: Path
) -> None:
    for i in NODES:
        lab.wait_until(_has_routes(lab, i), CONVERGE, f"n{i}'s EID routes")
    with lab.capture(tmp_path / "data.pcap", f"udp port {DATA_PORT}") as pcap:
        for i in NODES:
            for j in NODES:
                if i == j:
                    continue
                for dst in (V4[j], V6[j]):
                    result = lab.exec(i, "ping", "-c", "2", "-i", "0.2", "-W", "5", dst)
                    assert result.returncode == 0, (i, dst, result.stdout)
                    assert " 0% packet loss" in result.stdout, (i, dst)
    captured = [f for f in read_frames(pcap) if f.proto == socket.IPPROTO_UDP]
    assert [d for d in captured if isinstance(d.src, IPv4Address)] == []
    by_rloc = rlocs(lab)
    pairs = {
        (by_rloc[str(d.src)], by_rloc[str(d.dst)])
        for d in captured
        if d.dport == DATA_PORT
    }
    # LISP data packets went over IPv6 between every pair of nodes.
    assert pairs == {(i, j) for i in NODES for j in NODES if i != j}
    for i in NODES:
        assert lab.api(i, "/api/node")["dataplane"]["encapsulated-packets"] > 0
