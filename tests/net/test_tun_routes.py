"""The EID routing table stays bounded: exact, merged, then aggregated routes."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    collapse_addresses,
    ip_address,
    ip_network,
)
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decent.net.tun import (
    AGGREGATE_FLOOR,
    Prefix,
    TunSettings,
    TunShell,
    collapse,
    plan_routes,
    unavailable_reason,
)
from decent.peer.dataplane import DataPlane
from decent.peer.mapping.push_config import decent_node_config
from decent.peer.node import Node
from decent.wire import Eid
from tests.net.fakes import Lender
from tests.peer.conftest import Traced
from tests.peer.simnet import SimNet

Network = IPv4Network | IPv6Network
G = IPv4Address("233.252.1.1")
ROOT = Path(__file__).resolve().parents[2]


def _net(p: Prefix) -> Network:
    version, net, plen = p
    if version == 4:
        return IPv4Network((net, plen))
    return IPv6Network((net, plen))


def _prefix(text: str) -> Prefix:
    net = ip_network(text)
    return net.version, int(net.network_address), net.prefixlen


def _covered(net: Network, by: list[Network]) -> bool:
    return any(
        net.version == o.version and net.subnet_of(o)  # type: ignore[arg-type]
        for o in by
    )


def _collapsed(wanted: set[Prefix]) -> list[Network]:
    out: list[Network] = []
    for version in (4, 6):
        nets = [_net(p) for p in wanted if p[0] == version]
        out.extend(collapse_addresses(nets))  # type: ignore[type-var]
    return out


# --------------------------------------------------------------- strategies
def _v4(draw: st.DrawFn) -> Prefix:
    # Two /8s at the floor; clustered host routes merge, spread ones do not.
    top = draw(st.sampled_from((10, 11)))
    if draw(st.booleans()):
        low = (1 << 16) | draw(st.integers(0, 511))
        plen = draw(st.integers(28, 32))
    else:
        low = draw(st.integers(0, (1 << 24) - 1))
        plen = draw(st.integers(8, 32))
    net = (top << 24 | low) >> (32 - plen) << (32 - plen)
    return 4, net, plen


def _v6(draw: st.DrawFn) -> Prefix:
    base = int(IPv6Address("2001:db8::")) >> 96
    if draw(st.booleans()):
        low = draw(st.integers(0, 255))
        plen = draw(st.integers(124, 128))
    else:
        low = draw(st.integers(0, (1 << 96) - 1))
        plen = draw(st.integers(32, 128))
    net = (base << 96 | low) >> (128 - plen) << (128 - plen)
    return 6, net, plen


@st.composite
def prefixes(draw: st.DrawFn) -> Prefix:
    return _v4(draw) if draw(st.integers(0, 3)) else _v6(draw)


# --------------------------------------------------------------- pure planner
@settings(max_examples=300, deadline=None)
@given(
    wanted=st.sets(prefixes(), max_size=150),
    own=st.sets(prefixes(), max_size=3),
    max_routes=st.integers(1, 80),
)
def test_the_plan_covers_every_wanted_prefix_within_the_bound(
    wanted: set[Prefix], own: set[Prefix], max_routes: int
) -> None:
    plan = plan_routes(wanted, own, max_routes)
    tun = [_net(p) for p in plan.tun]
    throw = [_net(p) for p in plan.throw]
    exact = _collapsed(wanted)
    # Every wanted prefix enters the TUN.
    assert all(_covered(_net(p), tun) for p in wanted)
    # Exact routes while they fit, exact merges while those fit.
    if len(wanted) <= max_routes:
        assert plan.mode == "exact"
        assert set(plan.tun) == wanted
        assert plan.throw == ()
    elif len(exact) <= max_routes:
        assert plan.mode == "merged"
        assert sorted(tun, key=str) == sorted(exact, key=str)
        assert plan.throw == ()
    else:
        assert plan.mode == "aggregated"
    # No aggregate is shorter than the floor (a wanted prefix may be).
    for net in tun:
        assert net.prefixlen >= AGGREGATE_FLOOR[net.version] or net in exact
    # Throws are only ever for our own prefixes.
    assert {p for p in plan.throw} <= own
    # The bound holds whenever the floor allows it: the floor's supernets of
    # what may be aggregated, plus what may not (wanted prefixes inside our
    # own) and the throws (at most one per own prefix).
    ours = [_net(p) for p in own]
    pinned = [n for n in exact if _covered(n, ours)]
    free = [n for n in exact if n not in pinned]
    at_floor = {
        n.supernet(new_prefix=AGGREGATE_FLOOR[n.version])
        if n.prefixlen > AGGREGATE_FLOOR[n.version]
        else n
        for n in free
    }
    if len(at_floor) + len(pinned) + len(own) <= max_routes:
        assert len(plan.tun) + len(plan.throw) <= max_routes
    # An aggregate never takes an address of our own prefixes that no wanted
    # prefix took before: the longest match there is a throw, or nothing.
    for o in ours:
        for probe in (o.network_address, o.broadcast_address):
            if any(probe in n for n in exact):
                continue
            matches = [(n.prefixlen, True) for n in tun if probe in n]
            matches += [(n.prefixlen, False) for n in throw if probe in n]
            assert not matches or not max(matches)[1], (o, probe)


@settings(max_examples=300, deadline=None)
@given(wanted=st.sets(prefixes(), max_size=100))
def test_collapse_merges_exactly_as_ipaddress_does(wanted: set[Prefix]) -> None:
    for version, bits in ((4, 32), (6, 128)):
        mine = collapse(((n, p) for v, n, p in wanted if v == version), bits)
        nets = [_net(p) for p in wanted if p[0] == version]
        theirs = collapse_addresses(nets)  # type: ignore[type-var]
        assert mine == [(int(n.network_address), n.prefixlen) for n in theirs]


def _host_eids(count: int, seed: int, top: int = 10) -> set[Prefix]:
    rng = random.Random(seed)
    return {(4, top << 24 | rng.getrandbits(24), 32) for _ in range(count)}


def test_a_burst_of_host_eids_becomes_aggregates_within_the_bound() -> None:
    wanted = _host_eids(5_000, seed=1)
    plan = plan_routes(wanted, (), max_routes=64)
    assert plan.mode == "aggregated"
    assert plan.wanted == 5_000
    assert len(plan.tun) <= 64
    # Random EIDs in one /8 fill every /14: the longest cut that fits.
    assert dict(plan.lengths) == {4: 14}
    assert {p[2] for p in plan.tun} == {14}
    assert plan.summary() == {
        "installed": 64,
        "throw": 0,
        "wanted": 5_000,
        "aggregation": "aggregated",
        "lengths": {"ipv4": 14},
    }


def test_adjacent_eids_are_merged_exactly_before_anything_is_aggregated() -> None:
    wanted = {(4, int(IPv4Address("10.1.0.0")) + i, 32) for i in range(1024)}
    wanted |= {_prefix("10.9.0.0/24")}
    plan = plan_routes(wanted, (), max_routes=8)
    assert plan.mode == "merged"
    assert [str(_net(p)) for p in plan.tun] == [
        "10.1.0.0/22",
        "10.9.0.0/24",
    ]


def test_wanted_prefixes_inside_our_own_stay_exact_and_our_prefix_is_thrown() -> None:
    own = {_prefix("10.200.0.0/16"), _prefix("10.201.0.1/32")}
    inside = {_prefix("10.200.7.1/32"), _prefix("10.200.9.0/24")}
    wanted = _host_eids(3_000, seed=2) - {_prefix("10.201.0.1/32")}
    wanted = {p for p in wanted if not _covered(_net(p), [ip_network("10.200.0.0/16")])}
    plan = plan_routes(wanted | inside, own, max_routes=40)
    assert plan.mode == "aggregated"
    assert len(plan.tun) + len(plan.throw) <= 40
    tun = {str(_net(p)) for p in plan.tun}
    assert {"10.200.7.1/32", "10.200.9.0/24"} <= tun
    assert {str(_net(p)) for p in plan.throw} == {"10.200.0.0/16", "10.201.0.1/32"}


def test_the_floor_wins_over_the_bound() -> None:
    # EIDs in 20 different /8s cannot fit 5 routes without going below /8.
    wanted = set().union(*(_host_eids(10, seed=t, top=t) for t in range(20, 40)))
    plan = plan_routes(wanted, (), max_routes=5)
    assert plan.mode == "aggregated"
    assert len(plan.tun) == 20
    assert {p[2] for p in plan.tun} == {8}


def test_ipv4_and_ipv6_share_the_bound_and_the_smaller_keeps_what_it_needs() -> None:
    v6 = {(6, int(IPv6Address(f"2001:db8:{i:x}::1")), 128) for i in range(10)}
    plan = plan_routes(_host_eids(5_000, seed=3) | v6, (), max_routes=100)
    assert plan.mode == "aggregated"
    assert {p for p in plan.tun if p[0] == 6} == v6
    assert 32 <= len(plan.tun) <= 100
    assert set(plan.lengths) == {4}


# --------------------------------------------------------------- the shell
R1, R2, R3 = (IPv4Address(f"127.0.0.{i}") for i in (81, 82, 83))
TABLE = 4341


@dataclass
class Lab:
    net: SimNet
    nodes: list[Node]
    tun: TunShell
    batches: list[list[str]]

    def join(self, rloc: IPv4Address, eids: tuple[Eid, ...]) -> Node:
        """Another member, registering `eids` to node 1."""
        i = len(self.nodes) + 1
        node = Node(
            decent_node_config(
                name=f"n{i}",
                rlocs=(rloc,),
                group=G,
                key=b"k",
                xtr_id=i,
                eids=eids,
                seeds=(R1,),
                resolve_in_process=True,
            ),
            nonce=itertools.count(i << 20).__next__,
            now=self.net.now,
        )
        self.net.add(node, (rloc, 4342), (rloc, 4341))
        self.nodes.append(node)
        return node


def _eids(count: int, seed: int, top: int = 10) -> tuple[Eid, ...]:
    eids = _host_eids(count, seed, top)
    return tuple(Eid(0, IPv4Address(n), 32) for _, n, _ in sorted(eids))


@contextmanager
def lab(
    max_routes: int,
    own: tuple[Eid, ...],
    loop: asyncio.AbstractEventLoop | None = None,
    name: str = "lab0",
) -> Iterator[Lab]:
    """Node 1 and its TunShell, not started unless the test does (without
    a `loop` there is none to start it on: its `ip` batches are recorded)."""
    net = SimNet(seed=7)
    n1 = Traced(
        decent_node_config(
            name="n1",
            rlocs=(R1,),
            group=G,
            key=b"k",
            xtr_id=1,
            eids=own,
            resolve_in_process=True,
        ),
        nonce=itertools.count(1).__next__,
        now=net.now,
    )
    net.add(n1, (R1, 4342), (R1, 4341))
    data = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data.bind((str(R1), 0))
    own_loop = loop is None
    tun = TunShell(
        n1.ride(DataPlane(n1, nonce=lambda: 1)),
        TunSettings(name=name, table=TABLE, max_routes=max_routes),
        asyncio.new_event_loop() if loop is None else loop,
        owner=Lender([data]),
        flush_control=lambda: tun.flush_packets(),
    )
    try:
        yield Lab(net, [n1], tun, [])
    finally:
        if own_loop:
            tun.loop.close()
        data.close()


def _recording(batches: list[list[str]]) -> Any:
    def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        assert args == ["ip", "-force", "-batch", "-"]
        batches.append(kwargs["input"].splitlines())
        return subprocess.CompletedProcess(args, 0, "", "")

    return run


def test_route_syncs_send_only_changes_and_refreshes_send_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    own = (Eid.prefix("10.200.0.1/32"), Eid.prefix("10.201.0.0/24"))
    with lab(max_routes=32, own=own) as the_lab:
        batches = the_lab.batches
        monkeypatch.setattr(subprocess, "run", _recording(batches))
        tun, net = the_lab.tun, the_lab.net
        the_lab.join(R2, _eids(1_500, seed=4))
        net.advance(5)
        tun._sync_routes_now()
        assert len(batches) == 1
        first = batches[0]
        routes = [line for line in first if " dev lab0 " in line]
        throws = [line for line in first if line.startswith("route replace throw")]
        assert len(routes) + len(throws) <= 32
        assert all(line.endswith("table 4341 src 10.200.0.1") for line in routes)
        # Aggregates around our own prefixes hand those back to main.
        assert sorted(throws) == [
            "route replace throw 10.200.0.1/32 table 4341",
            "route replace throw 10.201.0.0/24 table 4341",
        ]
        installed = tun.installed_routes()
        assert len(installed) == len(routes)
        summary = tun.route_summary()
        assert summary["aggregation"] == "aggregated"
        assert summary["installed"] == len(routes)
        assert summary["wanted"] == 1_500
        assert summary["max_routes"] == 32
        # Re-registrations bump the registry version but change nothing.
        version = the_lab.nodes[0].registry_version
        net.advance(70)
        assert the_lab.nodes[0].registry_version > version
        tun._sync_routes_now()
        assert len(batches) == 1
        # One more member far from the others: its one route, nothing else.
        the_lab.join(R3, (Eid.prefix("172.16.5.1/32"),))
        net.advance(5)
        tun._sync_routes_now()
        # (aggregated like the rest, as it is past the bound).
        (line,) = batches[1]
        prefix = line.split()[2]
        assert ip_address("172.16.5.1") in ip_network(prefix)
        assert line == f"route replace {prefix} dev lab0 table 4341 src 10.200.0.1"
        assert tun.installed_routes() == installed | {prefix}


def test_below_the_bound_every_eid_keeps_its_own_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with lab(max_routes=1024, own=(Eid.prefix("10.200.0.1/32"),)) as the_lab:
        monkeypatch.setattr(subprocess, "run", _recording(the_lab.batches))
        eids = _eids(300, seed=5)
        the_lab.join(R2, eids)
        the_lab.net.advance(5)
        the_lab.tun._sync_routes_now()
        assert the_lab.tun.installed_routes() == {f"{e.address}/32" for e in eids}
        assert the_lab.tun.route_summary()["aggregation"] == "exact"


# --------------------------------------------------------------- the kernel
MAX_ROUTES = 64


def netns_scenario() -> dict[str, Any]:
    """Run inside a fresh network namespace (see the test below): node 1
    with a real TUN, 5,000 EIDs from two members, then 1,000 more."""

    def sh(*args: str) -> None:
        subprocess.run(["ip", *args], check=True)

    sh("link", "set", "lo", "up")
    # An underlay: a LAN inside the EID aggregates, and a default route.
    sh("link", "add", "v0", "type", "veth", "peer", "name", "v1")
    sh("link", "set", "v0", "up")
    sh("link", "set", "v1", "up")
    sh("addr", "add", "192.0.2.1/24", "dev", "v0")
    sh("addr", "add", "10.99.0.1/16", "dev", "v0")
    sh("route", "add", "default", "via", "192.0.2.254")
    batches: list[str] = []
    real_run, real_exec = subprocess.run, asyncio.create_subprocess_exec

    def run(args: Any, **kwargs: Any) -> Any:
        if "-batch" in args:
            batches.append(kwargs["input"])
        return real_run(args, **kwargs)

    async def exec_(*args: Any, **kwargs: Any) -> Any:
        if "-batch" in args:
            batches.append("async")
        return await real_exec(*args, **kwargs)

    subprocess.run = run  # type: ignore[assignment]
    asyncio.create_subprocess_exec = exec_
    return asyncio.run(_scenario(batches))


async def _scenario(batches: list[str]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    own = (Eid.prefix("10.200.0.1/32"), Eid.prefix("10.201.0.0/24"))
    with lab(MAX_ROUTES, own, loop, name="agg0") as the_lab:
        tun, net = the_lab.tun, the_lab.net
        # Within each registrant's quota: two members of 2,500 EIDs each.
        first = _eids(5_000, seed=6)
        the_lab.join(R2, first[:2_500])
        the_lab.join(R3, first[2_500:])
        net.advance(10)
        tun.start()
        try:
            out: dict[str, Any] = {"wanted": [sorted(tun.wanted_routes())]}
            out["tables"] = [_table()]
            out["batches"] = [len(batches)]
            out["get"] = {
                "remote": _get(str(first[0].address)),
                "remote-marked": _get(str(first[0].address), "mark", str(TABLE)),
                "own-host": _get("10.200.0.1"),
                "own-prefix": _get("10.201.0.9"),
                "underlay": _get("10.99.0.5"),
            }
            # Elsewhere: the aggregates must be cut anew to fit both /8s.
            the_lab.join(IPv4Address("127.0.0.84"), _eids(1_000, seed=7, top=11))
            net.advance(10)
            tun.flush_packets()  # as after any batch: the routes follow
            assert tun._route_task is not None
            await tun._route_task
            out["wanted"].append(sorted(tun.wanted_routes()))
            out["tables"].append(_table())
            out["batches"].append(len(batches))
            out["installed"] = sorted(tun.installed_routes())
            out["summary"] = tun.route_summary()
            return out
        finally:
            tun.close()


def _table() -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = []
    for family in ("-4", "-6"):
        text = subprocess.run(
            ["ip", "-j", family, "route", "show", "table", str(TABLE)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        routes.extend(json.loads(text or "[]"))
    return routes


def _get(*args: str) -> dict[str, Any]:
    text = subprocess.run(
        ["ip", "-j", "route", "get", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    route: dict[str, Any] = json.loads(text)[0]
    return route


def _dst(route: dict[str, Any]) -> Network:
    dst = route["dst"]
    if dst == "default":
        return ip_network("0.0.0.0/0")
    return ip_network(dst if "/" in dst else f"{dst}/{ip_address(dst).max_prefixlen}")


@pytest.mark.privileged
@pytest.mark.skipif(unavailable_reason() is not None, reason="no TUN support here")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace)")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")
def test_5000_eids_become_at_most_max_routes_kernel_routes_in_one_batch() -> None:
    # A namespace of its own: the host's rules and tables stay untouched,
    # and other TUN tests may run meanwhile.
    code = (
        "import json\n"
        "from tests.net.test_tun_routes import netns_scenario\n"
        "print(json.dumps(netns_scenario()))\n"
    )
    proc = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    # The whole start-up sync is one `ip` batch, the later change another.
    assert out["batches"] == [1, 2]
    for wanted, table in zip(out["wanted"], out["tables"], strict=True):
        tun = [_dst(r) for r in table if r.get("dev") == "agg0"]
        throw = [_dst(r) for r in table if r.get("type") == "throw"]
        assert len(tun) + len(throw) <= MAX_ROUTES
        assert {str(n) for n in throw} == {"10.200.0.1/32", "10.201.0.0/24"}
        assert all(_covered(ip_network(w), tun) for w in wanted)
    assert len(out["wanted"][0]) == 5_000
    assert len(out["wanted"][1]) == 6_000
    last = out["tables"][1]
    assert sorted(str(_dst(r)) for r in last if r.get("dev") == "agg0") == sorted(
        out["installed"]
    )
    assert out["summary"]["aggregation"] == "aggregated"
    assert out["summary"]["installed"] == len(out["installed"])
    get = out["get"]
    assert get["remote"]["dev"] == "agg0"
    # Our own sockets' traffic (marked) never enters the EID table.
    assert get["remote-marked"]["dev"] == "v0"
    # Our host EID is delivered locally, our EID-prefix goes where it went
    # before (here the default route), and the underlay LAN stays the LAN.
    assert get["own-host"]["type"] == "local"
    assert get["own-prefix"]["dev"] == "v0"
    assert get["own-prefix"]["gateway"] == "192.0.2.254"
    assert get["underlay"]["dev"] == "v0"
    assert "gateway" not in get["underlay"]
