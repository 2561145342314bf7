"""Pull mode in the namespace lab: 6 nodes in 3 Map-Server sets named by real DNS (NSD).

NSD (decent.lab.dns) serves `0..2.ms.decent.test`, two nodes each; the
nodes resolve the names with dnspython, register each EID to its set and
look EIDs up there. Every EID is pinged from every node through the data
plane (a map-cache miss, a Map-Request to the set, a Map-Reply); a set
member killed with SIGKILL is routed around; a changed A record is
followed once its TTL has run out.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest

from decent.lab import NetnsLab
from decent.lab.dns import DnsServer, dns_unavailable
from decent.peer.mapping.pullhash import index_of

pytestmark = pytest.mark.e2e
MakeLab = Callable[..., NetnsLab]
ZONE = "ms.decent.test"
TTL = 5
TOKEN = "lab-admin-token"
CONVERGE = 60.0
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def eid(i: int) -> str:
    return f"192.0.2.{i}"


def set_of(i: int) -> int:
    """The set node i's IPv4 EID registers to (RFC 9962 hash, modulus 3)."""
    return index_of(f"[0]{eid(i)}/32", 3)


def held(lab: NetnsLab, i: int) -> set[str]:
    return {str(e["eid"]).removeprefix("[0]") for e in lab.api(i, "/api/sites")}


def sets_seen(lab: NetnsLab, i: int) -> list[list[str]]:
    pull = lab.api(i, "/api/node")["pull"]
    return [list(s["addresses"]) for s in pull["sets"]]


def ping(lab: NetnsLab, i: int, dst: str) -> subprocess.CompletedProcess[str]:
    return lab.exec(i, "ping", "-c", "1", "-W", "2", "-I", eid(i), dst)


def pings(lab: NetnsLab, i: int, dst: str, tries: int = 8) -> bool:
    """A ping gets through within a few tries (the first packets may be
    dropped while the mapping is looked up)."""
    return any(ping(lab, i, dst).returncode == 0 for _ in range(tries))


def clear_cache(lab: NetnsLab, i: int) -> None:
    req = urllib.request.Request(
        lab.node(i).url + "/api/map-cache/clear", method="POST", data=b""
    )
    req.add_header("Authorization", f"Bearer {TOKEN}")
    with _HTTP.open(req, timeout=5) as resp:
        assert resp.status == 200, json.loads(resp.read())


def cache_source(lab: NetnsLab, i: int, what: str) -> Any:
    for entry in lab.api(i, "/api/map-cache"):
        if entry["eid"].removeprefix("[0]") == what:
            return entry["source"]
    return None


@pytest.fixture
def pulled(make_lab: MakeLab) -> tuple[NetnsLab, DnsServer]:
    reason = dns_unavailable()
    if reason:
        pytest.skip(f"no DNS server for the pull lab: {reason}")
    lab = make_lab(nodes=6, mode="pull", dataplane=True)
    rloc = {i: lab.node(i).rloc for i in lab.nodes}
    records = {str(k): [rloc[2 * k + 1], rloc[2 * k + 2]] for k in range(3)}
    dns = lab.add_dns_server(ZONE, records, TTL)
    lab.pull = {
        "modulus": 3,
        "dns_suffix": ZONE,
        "dns_servers": [str(dns.address)],
        "dns_min_ttl": 1.0,
    }
    for i in lab.nodes:
        lab.configure(
            i,
            admin_token=TOKEN,
            # Only our own EIDs are registered here: every other lab EID
            # goes into the TUN, to be looked up in its set.
            dataplane={"routes": ["192.0.2.0/24"], "probe_interval": 0},
        )
    lab.start_all()
    lab.wait_until(
        lambda: all(all(s) for i in lab.nodes for s in sets_seen(lab, i)),
        CONVERGE,
        "every node to resolve every set",
    )
    return lab, dns


def members(k: int) -> tuple[int, int]:
    return (2 * k + 1, 2 * k + 2)


def test_every_eid_resolves_from_every_node_a_dead_member_is_routed_around_and_dns_is_followed(  # noqa: E501
    pulled: tuple[NetnsLab, DnsServer],
) -> None:
    lab, dns = pulled
    # Each EID is held by exactly its set's two members.
    lab.wait_until(
        lambda: all(
            {eid(i) + "/32" for i in lab.nodes if set_of(i) == k} <= held(lab, m)
            for k in range(3)
            for m in members(k)
        ),
        CONVERGE,
        "each set's members to hold its EIDs",
    )
    for k in range(3):
        others = {eid(i) + "/32" for i in lab.nodes if set_of(i) != k}
        for m in members(k):
            assert not others & held(lab, m), (k, m)
    health = lab.api(1, "/healthz")
    assert health["status"] == "ok", health

    # 1. Every EID from every node, over the overlay.
    for i in lab.nodes:
        for j in lab.nodes:
            if i != j:
                assert pings(lab, i, eid(j)), f"n{i} -> {eid(j)}"
    assert cache_source(lab, 1, eid(2) + "/32") == "map-reply"
    # A set holds only what hashes to it: no answer said more than one EID
    # is unregistered (a wide one would hide the other sets' EIDs).
    for i in lab.nodes:
        wide = [
            e["eid"]
            for e in lab.api(i, "/api/map-cache")
            if e.get("negative") and not e["eid"].endswith(("/32", "/128"))
        ]
        assert not wide, (i, wide)

    # 2. SIGKILL one member of a set; lookups go to the other.
    k = set_of(2)
    dead, alive = members(k)
    lab.kill(dead)
    askers = [i for i in lab.nodes if i not in (dead, alive, 2)]
    for i in askers:
        clear_cache(lab, i)
        assert pings(lab, i, eid(2)), f"n{i} -> {eid(2)} with n{dead} dead"

    # 3. DNS: the set now names the survivor and a new member.
    new = next(i for i in lab.nodes if i not in members(k))
    rloc = {i: lab.node(i).rloc for i in lab.nodes}
    records = {str(s): [rloc[a] for a in members(s)] for s in range(3)}
    records[str(k)] = [rloc[alive], rloc[new]]
    changed = time.monotonic()
    dns.update(records)
    want = [str(rloc[alive]), str(rloc[new])]
    live = [i for i in lab.nodes if i != dead]
    took = lab.wait_until(
        lambda: all(sorted(sets_seen(lab, i)[k]) == sorted(want) for i in live),
        CONVERGE,
        f"every node to follow set {k}'s new A records",
    )
    # Followed once the records' TTL ran out (plus a re-resolve), and the
    # set's registrants registered to the new member at once.
    assert took <= TTL + CONVERGE / 2
    of_k = {eid(i) + "/32" for i in lab.nodes if set_of(i) == k and i != dead}
    lab.wait_until(
        lambda: of_k <= held(lab, new), CONVERGE, f"n{new} to hold set {k}'s EIDs"
    )
    print(
        f"set {k}: n{dead} killed; new A records followed everywhere "
        f"{time.monotonic() - changed:.1f} s after the change (TTL {TTL} s)"
    )
    # With the survivor gone too, the new member alone answers.
    lab.kill(alive)
    askers = [i for i in live if i not in (alive, new, 2)]
    for i in askers:
        clear_cache(lab, i)
        assert pings(lab, i, eid(2)), f"n{i} -> {eid(2)} through n{new} alone"
    failing = [i for i in live if i != alive and lab.api(i, "/healthz")["ok"] is False]
    assert failing == [], failing


def test_a_dns_failure_is_named_in_healthz_and_on_the_page(
    pulled: tuple[NetnsLab, DnsServer],
) -> None:
    lab, dns = pulled
    rloc = {i: lab.node(i).rloc for i in lab.nodes}
    records: dict[str, list[IPv4Address]] = {
        str(s): [rloc[a] for a in members(s)] for s in (0, 2)
    }
    dns.update(records)  # 1.ms.decent.test is gone: NXDOMAIN
    name = f"1.{ZONE}"
    lab.wait_until(
        lambda: lab.api(1, "/healthz").get("status") == "dns failing",
        CONVERGE,
        "n1's /healthz to report the failing name",
    )
    health = lab.api(1, "/healthz")
    assert name in health["reason"]
    assert "NXDOMAIN" in health["reason"]
    with _HTTP.open(lab.node(1).url + "/", timeout=5) as resp:
        page = resp.read().decode()
    assert name in page
    # The last addresses are kept meanwhile: set 1's EIDs still resolve.
    k1 = [i for i in lab.nodes if set_of(i) == 1 and i not in members(1)]
    asker = next(i for i in lab.nodes if i not in members(1) and i not in k1)
    for i in k1:
        assert pings(lab, asker, eid(i)), f"n{asker} -> {eid(i)}"
