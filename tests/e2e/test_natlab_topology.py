"""NatLab's topology, without NAT code in the node: homes behind real NAT routers.

Small UDP agents (python in the namespaces) show what the NAT traversal
tests will rely on: a home's datagram reaches a public node from its
router's public address; nothing reaches a home unsolicited, not even with
a route to its private subnet; once the router's conntrack is flushed the
way back is gone until the home sends again; conntrack shows the
MASQUERADE mapping. IPv4 and IPv6 underlays alike. Then the decent nodes
start: the public nodes converge with each other, and the homes, which
cannot join without NAT traversal, stay up.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Final

import pytest

from decent.lab import STATE_DIR, netns_unavailable
from decent.lab.natlab import Address, NatLab
from tests.e2e.conftest import _FAILED, PREFIX

pytestmark = pytest.mark.e2e

_NET: Final = os.environ.get("DECENT_E2E_NET", "198.18")
SUBNETS: Final = {"ipv4": 82, "ipv6": 83}
#: Generous bounds (a loaded 2-core machine).
WAIT: Final = 20.0
CONVERGE: Final = 60.0
SERVER_PORT: Final = 5555
HOME_PORT: Final = 6666

#: A UDP agent: bound to argv[1]:argv[2], it sends what stdin says
#: ("send HOST PORT TEXT" -> "sent", or "senderr ERRNO") and prints what
#: arrives ("recv HOST PORT TEXT"), and the ICMP errors that come back for
#: what it sent ("error ERRNO"; IP_RECVERR, so an unconnected socket hears
#: them too).
AGENT: Final = r"""
import select, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
v6 = ":" in host
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
# IPV6_RECVERR 25, IP_RECVERR 11 (linux/in6.h, linux/in.h)
s.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP, 25 if v6 else 11, 1)
s.bind((host, port))
print("ready", flush=True)
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [])
    if sys.stdin in ready:
        line = sys.stdin.readline()
        if not line:
            break
        _, dst, dport, text = line.split(maxsplit=3)
        try:
            s.sendto(text.strip().encode(), (dst, int(dport)))
            print("sent", flush=True)
        except OSError as exc:
            print("senderr", exc.errno, flush=True)
    if s in ready:
        try:
            data, addr = s.recvfrom(2048)
            print("recv", addr[0], addr[1], data.decode(), flush=True)
        except OSError as exc:
            s.recvmsg(2048, 1024, socket.MSG_ERRQUEUE)
            print("error", exc.errno, flush=True)
"""


class Agent:
    """A UDP agent in a namespace, driven line by line."""

    def __init__(self, lab: NatLab, i: int, address: Address, port: int) -> None:
        self.name = f"n{i}"
        self.proc = lab.popen(
            i,
            sys.executable,
            "-c",
            AGENT,
            str(address),
            str(port),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        #: Every line the agent printed, in order.
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self.next() == ["ready"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().strip())

    def next(self) -> list[str]:
        try:
            line = self.lines.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(
                f"{self.name}'s agent said nothing in {WAIT} s ({self.seen})"
            ) from None
        self.seen.append(line)
        return line.split()

    def send(self, host: Address, port: int, text: str) -> list[str]:
        """Send one datagram; the agent's answer ("sent" or "senderr N")."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"send {host} {port} {text}\n".encode())
        self.proc.stdin.flush()
        return self.next()

    def receive(self) -> tuple[Address, int, str]:
        """The next datagram that arrives: (source, port, text)."""
        words = self.next()
        assert words[0] == "recv", words
        return ip_address(words[1]), int(words[2]), words[3]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._reader.join(WAIT)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture(scope="module", params=["ipv4", "ipv6"])
def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NatLab]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"namespace lab unavailable: {reason}")
    underlay: str = request.param
    the_lab = NatLab(
        f"{PREFIX}nat{underlay[-1]}",
        f"{_NET}.{SUBNETS[underlay]}.0/24",
        underlay=underlay,
        dataplane=True,
        workdir=tmp_path_factory.mktemp(f"natlab-{underlay}"),
    )
    try:
        the_lab.create()
        yield the_lab
    finally:
        the_lab.destroy()
    assert the_lab.namespaces() == []


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "lab" in request.fixturenames and request.node.stash.get(_FAILED, False):
        lab: NatLab = request.getfixturevalue("lab")
        for i in sorted(lab.nodes):
            print(f"--- {lab.prefix} n{i} log ---\n{lab.log_tail(i, 40)}")


@pytest.fixture
def agents(lab: NatLab) -> Iterator[dict[int, Agent]]:
    """An agent on public node 1 (port 5555) and on each home (6666)."""
    made = {1: Agent(lab, 1, lab.address(1), SERVER_PORT)}
    try:
        for i in lab.homes:
            made[i] = Agent(lab, i, lab.private_address(i), HOME_PORT)
        yield made
    finally:
        for agent in made.values():
            agent.close()


def test_the_topology_is_as_documented(lab: NatLab) -> None:
    assert lab.publics == [1, 2]
    assert lab.homes == [3, 4]
    family = 6 if lab.ipv6 else 4
    for i in lab.homes:
        assert lab.address(i) == lab.private_address(i)
        assert lab.private_address(i) in lab.private_subnet(i)
        assert lab.public_address(i) in lab.network
        for address in (lab.private_address(i), lab.public_address(i)):
            assert address.version == family
        # The home's config: its private RLOC, every public node as a seed.
        node = lab.node(i)
        assert str(node.rloc) == str(lab.private_address(i))
        assert [str(s) for s in node.seeds] == [str(lab.address(p)) for p in (1, 2)]
        # Its router's conntrack UDP timeouts are the lab's, not the host's.
        for key in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
            shown = lab.router_exec(
                i, "sysctl", "-n", f"net.netfilter.{key}", check=True
            )
            assert int(shown.stdout) == lab.udp_timeout
    # Public nodes have no route to a private subnet: no default, no more.
    for p in lab.publics:
        family_flag = "-6" if lab.ipv6 else "-4"
        routes = lab.exec(p, "ip", family_flag, "route", "show", check=True).stdout
        assert "default" not in routes
        for i in lab.homes:
            assert str(lab.private_subnet(i)) not in routes
    # The state file lists every namespace the lab made, routers too.
    state = json.loads(lab.state_file.read_text())
    assert set(state["namespaces"]) == {
        lab.bridge_ns,
        *(f"{lab.prefix}-n{i}" for i in lab.nodes),
        *(lab.router_ns(i) for i in lab.homes),
    }


def test_a_home_datagram_arrives_from_its_routers_public_address(
    lab: NatLab, agents: dict[int, Agent]
) -> None:
    server = agents[1]
    for i in lab.homes:
        assert agents[i].send(lab.address(1), SERVER_PORT, f"hello-from-n{i}") == [
            "sent"
        ]
        source, port, text = server.receive()
        assert text == f"hello-from-n{i}"
        assert source == lab.public_address(i)
        # The answer goes back through the mapping to the home.
        assert server.send(source, port, f"answer-to-n{i}") == ["sent"]
        assert agents[i].receive() == (lab.address(1), SERVER_PORT, f"answer-to-n{i}")


def test_the_masquerade_translation_is_in_conntrack(
    lab: NatLab, agents: dict[int, Agent]
) -> None:
    home = lab.homes[0]
    assert agents[home].send(lab.address(1), SERVER_PORT, "mapped") == ["sent"]
    source, port, _ = agents[1].receive()
    assert agents[1].send(source, port, "back") == ["sent"]
    agents[home].receive()
    (entry,) = [
        e
        for e in lab.conntrack(home)
        if e.proto == "udp" and e.sport == HOME_PORT and e.dport == SERVER_PORT
    ]
    assert entry.src == lab.private_address(home)
    assert entry.dst == lab.address(1)
    # What comes back must be addressed to the router's public mapping,
    # exactly where the server saw the datagram come from.
    assert entry.reply_src == lab.address(1)
    assert entry.mapped == (lab.public_address(home), port)
    assert entry.translated
    assert entry.replied


def test_a_public_node_cannot_reach_a_home(
    lab: NatLab, agents: dict[int, Agent]
) -> None:
    home = lab.homes[0]
    private = lab.private_address(home)
    # No route to a private subnet.
    assert agents[1].send(private, HOME_PORT, "intruder") == [
        "senderr",
        str(errno.ENETUNREACH),
    ]
    # Even with one, through the home's router, the router lets nothing in
    # that the home did not start.
    via = ["ip", "route", "add", str(lab.private_subnet(home))]
    via += ["via", str(lab.public_address(home))]
    lab.exec(1, *via, check=True)
    try:
        before = lab.router_dropped(home)
        assert agents[1].send(private, HOME_PORT, "intruder") == ["sent"]
        lab.wait_until(
            lambda: lab.router_dropped(home) > before, WAIT, "the router's drop"
        )
    finally:
        lab.exec(1, "ip", "route", "del", str(lab.private_subnet(home)), check=True)
    # The home then hears its own server's answer, and never the intruder.
    assert agents[home].send(lab.address(1), SERVER_PORT, "anyone") == ["sent"]
    source, port, _ = agents[1].receive()
    assert agents[1].send(source, port, "only-me") == ["sent"]
    assert agents[home].receive()[2] == "only-me"
    assert not any("intruder" in line for line in agents[home].seen)


def test_after_a_conntrack_flush_the_way_back_is_gone_until_the_home_sends(
    lab: NatLab, agents: dict[int, Agent]
) -> None:
    home = lab.homes[0]
    server = agents[1]
    assert agents[home].send(lab.address(1), SERVER_PORT, "one") == ["sent"]
    source, old_port, _ = server.receive()
    assert server.send(source, old_port, "reply-one") == ["sent"]
    assert agents[home].receive()[2] == "reply-one"

    lab.flush_conntrack(home)
    assert not [e for e in lab.conntrack(home) if e.sport == HOME_PORT]
    # The old mapping is gone: the router answers for itself, with ICMP
    # port unreachable (which the server's agent hears).
    assert server.send(source, old_port, "stale") == ["sent"]
    assert server.next() == ["error", str(errno.ECONNREFUSED)]
    # The home sends again: a new mapping (its port may differ: the
    # router's own entry for the refused datagram holds the old one).
    assert agents[home].send(lab.address(1), SERVER_PORT, "two") == ["sent"]
    again, new_port, text = server.receive()
    assert (again, text) == (lab.public_address(home), "two")
    assert server.send(again, new_port, "reply-two") == ["sent"]
    assert agents[home].receive()[2] == "reply-two"
    assert not any("stale" in line for line in agents[home].seen)


def page_shows(lab: NatLab, i: int) -> Callable[[], bool]:
    """Home i's page, through its router, names its private RLOC."""
    rlocs = [str(lab.private_address(i))]
    return lambda: bool(lab.api(i, "/api/v1/node")["rlocs"] == rlocs)


def test_the_public_nodes_converge_and_the_homes_stay_up(lab: NatLab) -> None:
    lab.start_all()
    want = lab.expected_view(lab.publics)

    def publics_agree() -> bool:
        # Each holds at least the public nodes' registrations: what the
        # homes managed to register through their NAT is not asserted.
        for i in lab.publics:
            view = lab.view(i)
            if not (
                want.eids <= view.eids
                and want.names <= view.names
                and want.members <= view.members
                and want.peer_rlocs <= view.peer_rlocs
            ):
                return False
        return True

    lab.wait_until(publics_agree, CONVERGE, "the public nodes to converge", 0.2)
    for i in lab.publics:
        assert lab.healthy(i)
    # The homes' web pages answer through their routers' port forward.
    for i in lab.homes:
        lab.wait_until(page_shows(lab, i), CONVERGE, f"n{i}'s page through its router")
    assert lab.running() == sorted(lab.nodes)


def test_teardown_removes_what_the_lab_made_and_only_that(tmp_path: Path) -> None:
    reason = netns_unavailable()
    if reason:
        pytest.skip(f"namespace lab unavailable: {reason}")
    prefix = f"{PREFIX}natd"
    # A namespace of the prefix the lab did not make (a person's).
    foreign = f"{prefix}-r9"
    subprocess.run(["ip", "netns", "add", foreign], check=True)
    try:
        lab = NatLab(
            prefix, f"{_NET}.84.0/24", publics=1, homes=1, workdir=tmp_path / "lab"
        )
        try:
            lab.create()
            assert lab.router_ns(2) in lab.made()
            assert (STATE_DIR / f"{prefix}.json").exists()
        finally:
            lab.destroy()
        assert lab.namespaces() == [foreign]
        assert not (STATE_DIR / f"{prefix}.json").exists()
        shown = subprocess.run(
            ["ip", "link", "show", lab.host_veth], capture_output=True, check=False
        )
        assert shown.returncode != 0
    finally:
        subprocess.run(["ip", "netns", "del", foreign], check=False)
