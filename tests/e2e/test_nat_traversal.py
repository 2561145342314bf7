"""NAT traversal in the namespace lab: two homes behind real NAT routers, two relays.

Each home namespace sits behind its own router namespace (iptables
MASQUERADE, a home-router firewall, UDP conntrack timeouts of 10 s). The
homes know only the public members as seeds. They find out they are behind
NAT, register through a relay, and every EID reaches every other over the
overlay; a TCP transfer between the two homes survives a conntrack flush on
one NAT; a relay killed with SIGKILL is replaced by the other. The same lab
runs again with an IPv6 underlay (NAT66 on the routers).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest

from decent.lab import netns_unavailable
from decent.lab.natlab import NatLab
from tests.e2e.conftest import _FAILED, PREFIX

pytestmark = pytest.mark.e2e

_NET: Final = os.environ.get("DECENT_E2E_NET", "198.18")
SUBNETS: Final = {"ipv4": 86, "ipv6": 87}
CONVERGE: Final = 90.0
KEEPALIVE: Final = 2
V4 = {i: f"192.0.2.{i}" for i in (1, 2, 3, 4)}
V6 = {i: f"2001:db8::{i}" for i in (1, 2, 3, 4)}
HOMES: Final = (3, 4)
#: The TCP transfer: a server on home 4's EID, a client on home 3's.
SIZE: Final = 20 * 1000 * 1000

_SERVER = """
import hashlib, socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0; told = False
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
    if n >= 1 << 20 and not told:
        print("flowing", flush=True); told = True
print(n, h.hexdigest(), flush=True)
"""

_CLIENT = """
import random, socket, sys, time
data = random.Random(7).randbytes(int(sys.argv[3]))
c = socket.create_connection((sys.argv[2], 5001), timeout=120,
                             source_address=(sys.argv[1], 0))
# Paced, so the transfer is still going when the test flushes the NAT.
for at in range(0, len(data), 1 << 18):
    c.sendall(data[at:at + (1 << 18)]); time.sleep(0.05)
c.close()
"""


def _eids(lab: NatLab) -> dict[int, str]:
    return V6 if lab.ipv6 else V4


@pytest.fixture(scope="module", params=["ipv4", "ipv6"])
def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NatLab]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"namespace lab unavailable: {reason}")
    underlay = request.param
    lab = NatLab(
        f"{PREFIX}nt{underlay[-1]}",
        f"{_NET}.{SUBNETS[underlay]}.0/24",
        publics=2,
        homes=2,
        underlay=underlay,
        udp_timeout=10,
        dataplane=True,
        workdir=tmp_path_factory.mktemp(f"nat{underlay}"),
    )
    try:
        lab.create()
        for i in lab.nodes:
            # Relayed paths are not encrypted yet (README, "Joining from
            # behind a home router").
            lab.configure(i, dataplane={"encrypt": "off"})
            settings: dict[str, object] = {"nat_keepalive": KEEPALIVE}
            if i in lab.publics:
                settings["relay"] = True
            lab.configure(i, decent=settings)
        for i in HOMES:
            # One seed: the homes learn the other relay from its answers.
            lab.configure(i, seeds=[lab.node(1).rloc])
        lab.start_all()
        for i in lab.nodes:
            lab.wait_until(
                _routes_to_all(lab, i), CONVERGE, f"n{i} routes to every EID"
            )
        yield lab
    finally:
        if request.node.stash.get(_FAILED, False) or any(
            item.stash.get(_FAILED, False) for item in request.session.items
        ):
            for i in sorted(lab.nodes):
                print(f"--- {lab.prefix} n{i} log ---\n{lab.log_tail(i, 60)}")
        lab.destroy()


def _routes_to_all(lab: NatLab, i: int) -> Callable[[], bool]:
    def ready() -> bool:
        if not lab.node(i).running:
            return False
        info = lab.api(i, "/api/v1/node")
        wanted = {f"{V4[j]}/32" for j in lab.nodes if j != i}
        wanted |= {f"{V6[j]}/128" for j in lab.nodes if j != i}
        state = info["nat"]["state"]
        return wanted <= set(info["dataplane"]["routes"]) and state in (
            "relayed" if i in HOMES else "direct",
        )

    return ready


def _nat(lab: NatLab, i: int) -> dict[str, Any]:
    nat: dict[str, Any] = lab.api(i, "/api/v1/node")["nat"]
    return nat


def ping(
    lab: NatLab, i: int, dst: str, count: int = 2
) -> subprocess.CompletedProcess[str]:
    return lab.exec(i, "ping", "-c", str(count), "-i", "0.2", "-W", "3", dst)


def _all_pings(lab: NatLab, nodes: list[int]) -> list[str]:
    failed = []
    for i in nodes:
        for j in nodes:
            if i == j:
                continue
            for eids in (V4, V6):
                # The first packet may wait for a map-cache miss: retry once.
                if (
                    ping(lab, i, eids[j]).returncode
                    and ping(lab, i, eids[j]).returncode
                ):
                    failed.append(f"n{i} -> {eids[j]}")
    return failed


def test_homes_find_their_nat_and_join_through_a_relay(lab: NatLab) -> None:
    relays = {str(lab.address(i)) for i in lab.publics}
    for i in HOMES:
        nat = _nat(lab, i)
        assert nat["state"] == "relayed", nat
        assert nat["relay"] in relays
        seen = nat["global_address"].rsplit(":", 1)[0].strip("[]")
        assert seen == str(lab.public_address(i))
    for i in lab.publics:
        assert _nat(lab, i)["state"] == "direct"
    # Every member says how each is reached: the homes through their relay,
    # with the address their NAT gives them.
    members = {m["name"]: m for m in _nat(lab, 2)["members"]}
    for i in HOMES:
        row = members[f"n{i}"]
        assert (row["reach"], row["via"]) == ("relayed", _nat(lab, i)["relay"])
        assert row["global"] == str(lab.public_address(i))
    assert members["n1"]["relay"]
    assert members["n2"]["relay"]
    assert members["n1"]["reach"] == members["n2"]["reach"] == "direct"
    clients = {c["private"] for i in lab.publics for c in _nat(lab, i)["clients"]}
    assert clients == {str(lab.private_address(i)) for i in HOMES}


def test_every_eid_pings_every_other_in_both_directions(lab: NatLab) -> None:
    assert _all_pings(lab, sorted(lab.nodes)) == []
    relayed = sum(
        lab.api(i, "/api/v1/node")["counters"].get("relay.forwarded", 0)
        for i in lab.publics
    )
    assert relayed > 0


def test_a_tcp_transfer_between_homes_survives_a_conntrack_flush(lab: NatLab) -> None:
    eids = _eids(lab)
    server = lab.popen(
        4,
        "python3",
        "-c",
        _SERVER,
        eids[4],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    client = None
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        client = lab.popen(
            3,
            "python3",
            "-c",
            _CLIENT,
            eids[3],
            eids[4],
            str(SIZE),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert server.stdout.readline().strip() == b"flowing"
        before = lab.conntrack(3)
        lab.flush_conntrack(3)
        assert lab.conntrack(3) != before
        got, _ = server.communicate(timeout=180)
        _, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
    finally:
        for proc in (server, client):
            if proc is not None and proc.returncode is None:
                proc.kill()
                proc.communicate()
    size, digest = got.decode().split()
    assert int(size) == SIZE
    assert digest == hashlib.sha256(random.Random(7).randbytes(SIZE)).hexdigest()


def test_a_relay_killed_with_sigkill_is_replaced_by_the_other(lab: NatLab) -> None:
    relays = {str(lab.address(i)): i for i in lab.publics}
    dead = relays[_nat(lab, 3)["relay"]]
    (alive,) = set(lab.publics) - {dead}
    lab.stop(dead, signal.SIGKILL)
    other = str(lab.address(alive))

    def moved() -> bool:
        return all(_nat(lab, i)["relay"] == other for i in HOMES)

    lab.wait_until(moved, CONVERGE, f"the homes move to n{alive}")
    assert _all_pings(lab, [alive, *HOMES]) == []
    clients = {c["private"] for c in _nat(lab, alive)["clients"]}
    assert clients == {str(lab.private_address(i)) for i in HOMES}
    assert lab.api(3, "/api/v1/node")["counters"]["nat.relay-failed"] >= 1
