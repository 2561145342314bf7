"""LISP-MN roaming in the namespace lab: peers follow a node that changes address.

A node configured by interface changes its address, and every peer follows
it at once, long before any TTL."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest

from decent.lab import GROUP_EID, NetnsLab

pytestmark = pytest.mark.e2e
MakeLab = Callable[..., NetnsLab]
CONVERGE = 30.0
#: Minutes: registrations live this long, so following within seconds can
#: only be the mobile node's own re-registration, not an expiry.
TTL = 3
#: Seconds we allow peers to follow (the TTL is 180).
FOLLOW = 15.0


def locators(lab: NetnsLab, i: int) -> dict[str, set[str]]:
    """What node i registered for n3: its name's and EID's RLOCs, and the
    group's RLE members."""
    out: dict[str, set[str]] = {}
    for site in lab.api(i, "/api/sites"):
        eid = site["eid"]
        if eid in ("[0]'n3'", "[0]192.0.2.3/32"):
            out[eid] = {loc["address"] for loc in site["rlocs"]}
        elif eid == GROUP_EID:
            out["members"] = {
                e["address"] for loc in site["rlocs"] for e in loc.get("rle", [])
            }
    return out


def follows(lab: NetnsLab, new: IPv4Address, old: IPv4Address) -> Callable[[], bool]:
    def check() -> bool:
        for i in (1, 2):
            seen = locators(lab, i)
            if seen.get("[0]'n3'") != {str(new)}:
                return False
            if seen.get("[0]192.0.2.3/32") != {str(new)}:
                return False
            members = seen.get("members", set())
            if str(new) not in members or str(old) in members:
                return False
        return True

    return check


def roaming_lab(make_lab: MakeLab, **kw: Any) -> NetnsLab:
    lab = make_lab(ttl_minutes=TTL, **kw)
    lab.configure(3, interface="eth0")
    lab.start_all()
    lab.wait_converged(CONVERGE)
    return lab


def test_peers_follow_a_node_that_changes_its_address(make_lab: MakeLab) -> None:
    lab = roaming_lab(make_lab)
    old = lab.node(3).rloc
    new = lab.move_rloc(3)
    took = lab.wait_until(follows(lab, new, old), FOLLOW, "n1 and n2 to follow n3")
    assert took < FOLLOW
    lab.wait_converged(CONVERGE)  # n3 itself agrees, and answers at new
    assert str(old) not in lab.view(3).members
    # No address at all: n3 keeps running, and resumes when one returns.
    ns = lab.node(3).namespace
    assert ns is not None
    plen = lab.subnet.prefixlen
    lab.exec(3, "ip", "addr", "del", f"{new}/{plen}", "dev", "eth0", check=True)
    lab.wait_until(
        lambda: "no usable address left" in lab.log_tail(3, 50),
        FOLLOW,
        "n3 to notice it has no address",
    )
    assert lab.node(3).running
    third = lab.subnet.network_address + 53
    lab.exec(3, "ip", "addr", "add", f"{third}/{plen}", "dev", "eth0", check=True)
    lab.node(3).rloc, lab.node(3).web_host = third, str(third)
    lab.wait_until(follows(lab, third, new), FOLLOW, "n1 and n2 to follow n3 back")
    lab.wait_converged(CONVERGE)


def test_traffic_follows_a_moved_node_over_the_data_plane(make_lab: MakeLab) -> None:
    lab = roaming_lab(make_lab, dataplane=True)
    lab.wait_until(
        lambda: "192.0.2.3/32" in lab.api(1, "/api/node")["dataplane"]["routes"],
        CONVERGE,
        "n1's route to n3's EID",
    )
    assert ping(lab, 1, "192.0.2.3").returncode == 0  # n1 is a recent ITR of n3
    old = lab.node(3).rloc
    new = lab.move_rloc(3)
    lab.wait_until(follows(lab, new, old), FOLLOW, "n1 and n2 to follow n3")
    lab.wait_until(
        lambda: ping(lab, 1, "192.0.2.3", count=1).returncode == 0,
        FOLLOW,
        "n1's ping to reach n3 at its new RLOC",
    )

    def cached() -> list[str] | None:
        cache = {e["eid"]: e for e in lab.api(1, "/api/map-cache")}
        entry = cache.get("[0]192.0.2.3/32")
        return None if entry is None else [loc["address"] for loc in entry["rlocs"]]

    # The ping may get through while n1's entry still lists the old RLOC
    # beside the new one (the flow hash picks the new): wait for the entry.
    lab.wait_until(lambda: cached() == [str(new)], FOLLOW, "n1's entry for n3")
    # And back from n3, whose packets now leave from its new RLOC.
    assert ping(lab, 3, "192.0.2.1").returncode == 0


def ping(
    lab: NetnsLab, i: int, dst: str, count: int = 2
) -> subprocess.CompletedProcess[str]:
    return lab.exec(i, "ping", "-c", str(count), "-i", "0.2", "-W", "2", dst)
