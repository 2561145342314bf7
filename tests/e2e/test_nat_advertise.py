"""An advertised RLOC in the namespace lab: a home whose router forwards 4341 and 4342.

The home node binds its private address and advertises the router's
public one (`[node] advertise`). Its NAT check confirms the forward, so it
is reached directly (no relay); every member registers it at the router's
address, and its EIDs and the public members' reach each other both ways.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final

import pytest

from decent.lab import netns_unavailable
from decent.lab.natlab import NatLab
from tests.e2e.conftest import PREFIX

pytestmark = pytest.mark.e2e

_NET: Final = os.environ.get("DECENT_E2E_NET", "198.18")
CONVERGE: Final = 90.0
HOME: Final = 3


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatLab]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"namespace lab unavailable: {reason}")
    lab = NatLab(
        f"{PREFIX}adv",
        f"{_NET}.88.0/24",
        publics=2,
        homes=1,
        dataplane=True,
        workdir=tmp_path_factory.mktemp("advertise"),
    )
    try:
        lab.create()
        home = f"{lab.private_address(HOME)}"
        for port in ("4341", "4342"):
            lab.router_exec(
                HOME,
                *("iptables", "-t", "nat", "-A", "PREROUTING", "-i", "eth0"),
                *("-p", "udp", "--dport", port, "-j", "DNAT"),
                *("--to-destination", f"{home}:{port}"),
                check=True,
            )
        for i in lab.nodes:
            lab.configure(i, dataplane={"encrypt": "off"}, decent={"relay": True})
        lab.configure(HOME, node={"advertise": str(lab.public_address(HOME))})
        lab.start_all()

        def converged() -> bool:
            for i in lab.nodes:
                routes = set(lab.api(i, "/api/v1/node")["dataplane"]["routes"])
                if not {f"192.0.2.{j}/32" for j in lab.nodes if j != i} <= routes:
                    return False
            return True

        lab.wait_until(converged, CONVERGE, "every node routes to every EID")
        yield lab
    finally:
        lab.destroy()


def test_the_home_is_reached_directly_at_its_advertised_address(lab: NatLab) -> None:
    public = str(lab.public_address(HOME))
    nat = lab.api(HOME, "/api/v1/node")["nat"]
    assert (nat["state"], nat["relay"], nat["advertised"]) == ("direct", None, [public])
    for i in lab.publics:
        sites = {s["eid"]: s for s in lab.api(i, "/api/v1/sites")}
        rlocs = [r["address"] for r in sites[f"[0]192.0.2.{HOME}/32"]["rlocs"]]
        assert rlocs == [public]
        assert public in [p["rloc"] for p in lab.api(i, "/api/v1/peers")]
        assert lab.api(i, "/api/v1/node")["nat"]["clients"] == []
    row = next(m for m in nat["members"] if m["name"] == f"n{HOME}")
    assert (row["reach"], row["rlocs"]) == ("direct", [public])


def test_every_eid_pings_every_other_through_the_forward(lab: NatLab) -> None:
    failed = []
    for i in lab.nodes:
        for j in lab.nodes:
            if i != j:
                for dst in (f"192.0.2.{j}", f"2001:db8::{j}"):
                    ping = ["ping", "-c", "2", "-i", "0.2", "-W", "3", dst]
                    if lab.exec(i, *ping).returncode and lab.exec(i, *ping).returncode:
                        failed.append(f"n{i} -> {dst}")
    assert failed == []
    relayed = sum(
        lab.api(i, "/api/v1/node")["counters"].get("relay.forwarded", 0)
        for i in lab.publics
    )
    assert relayed == 0
