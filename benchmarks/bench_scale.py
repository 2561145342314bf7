"""How a LISP-Decent mesh grows, push and pull: namespace labs and simulated meshes.

Run as root from the tree (the lab needs network namespaces; the simulation
does not):

    python benchmarks/bench_scale.py                    # both parts
    python benchmarks/bench_scale.py --sim-only --sizes 100,300,1000
    python benchmarks/bench_scale.py --lab-only --nodes 30
    python benchmarks/bench_scale.py --modes pull       # pull mode alone
    python benchmarks/bench_scale.py --quick            # a smoke run

Push mode (RFC 9962 4) means every member holds every registration: N
members of E EIDs each hold N * (E + 1) + 1 registrations apiece (their EIDs,
their names and the one merged peer-group entry), N^2 * (E + 1) in the mesh.

1. The lab: `--nodes` (30) `decent run` processes in network namespaces on
   one bridge (decent.lab.NetnsLab), once per push mode ("replicate", head-end
   replication, and "multicast", the underlay group). Figures: wall seconds
   from the first process start until every node holds every registration;
   a new EID (config rewritten, SIGHUP) on every node; control packets and
   bytes per node per minute over a quiet window (each node namespace's
   eth0 counters, Ethernet frames: no HTTP is polled in the window); RSS per
   node process (VmRSS).
2. The simulation: sans-I/O Nodes on tests/peer/simnet.py's SimNet (protocol
   time, 1 ms per hop, no sleeping), replicate mode, E = 10, one forked
   process per size so memory (RSS growth / N) is measured cleanly. Sizes
   whose memory or wall time would not fit are projected from the measured
   ones, and printed as projections with the reason.

3. Pull mode (RFC 9962 5, [decent] mode = "pull"): Map-Server sets of
   PULL_SET (3) nodes, modulus nodes // 3, set k's DNS name listing nodes
   3k+1..3k+3; every EID is registered only to its set. The lab runs NSD
   (decent.lab.dns) on the bridge for the names; its figures are push's,
   with "converged" meaning every node resolved every set and each set's
   members hold every registration hashed to it, a new EID timed until its
   set holds it and a member answers a Map-Request for it, lookups timed as
   an outside ITR's Map-Request to a set member, and the DNS server's
   questions counted. The simulation runs tests/peer/pullnet.py's PullNodes
   (their DNS answered in-process after --dns-delay) on FastNet, every node
   starting at once at every size (a pull start costs O(N) datagrams), and
   adds lookups: a random node's ITR resolving a random other node's EID.

Every figure comes from a function per (mode, place) in MODES (Mode.lab,
Mode.sim) returning Figures; `print_table` prints them, `recommend` compares
push and pull at the sizes both were run at. `--modes` picks modes.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import http.client
import itertools
import json
import math
import multiprocessing
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Final

from decent.lab import NetnsLab, lab_eid, netns_unavailable
from decent.peer.config import DatabaseMapping, NodeConfig, PullConfig
from decent.peer.context import register_record
from decent.peer.mapping.pullhash import dns_name, hashed_string, index_of
from decent.peer.mapping.push_config import GROUP_SITE, decent_node_config
from decent.peer.mapserver import Registration
from decent.peer.node import Node
from decent.wire import AlgorithmId, Eid, IPAddress, MapRecord
from tests.peer.pullnet import PullNode, SimDns
from tests.peer.simnet import Addr, SimNet, _Host

ROOT: Final = Path(__file__).resolve().parent.parent
PREFIX: Final = os.environ.get("DECENT_BENCH_PREFIX", "sbench")
SUBNET: Final = os.environ.get("DECENT_BENCH_SUBNET", "198.18.97.0/24")
#: Bytes a UDP payload takes on an Ethernet wire: Ethernet 14, IPv4 20, UDP 8.
#: The lab's eth0 counters count whole frames; the simulation adds this.
FRAME: Final = 14 + 20 + 8
GROUP: Final = IPv4Address("233.252.1.1")
KEY: Final = b"decent-scale-bench"
SIM_BASE: Final = IPv4Address("198.18.0.10")
MIB: Final = 1 << 20


# ---------------------------------------------------------------- figures
@dataclass
class Figures:
    """What one (mode, place, size) run measured; None where not measured."""

    mode: str
    where: str  # "lab" (real processes, wall seconds) or "sim" (protocol seconds)
    nodes: int
    eids: int  # per node
    register_interval: float
    #: Registrations each node holds once converged.
    registrations: int
    #: Start of every node -> every node holds every registration.
    converge_s: float | None = None
    #: A new EID on one node -> on every node: median and p95 over rounds.
    new_eid_median_s: float | None = None
    new_eid_p95_s: float | None = None
    #: Steady state, per node per minute (sent; received in `extra`).
    tx_packets_min: float | None = None
    tx_bytes_min: float | None = None
    rx_packets_min: float | None = None
    rx_bytes_min: float | None = None
    #: Resident memory per node (lab: VmRSS; sim: RSS growth / nodes).
    memory_bytes: float | None = None
    #: One more node joins the converged mesh -> every node holds everything;
    #: and the datagrams that took (sim only).
    join_s: float | None = None
    join_datagrams: float | None = None
    #: Pull: one lookup of an EID held elsewhere (sim: a node's ITR, protocol
    #: time; lab: an outside ITR's Map-Request to a set member, wall time),
    #: and the datagrams it took (sim).
    lookup_p50_s: float | None = None
    lookup_p95_s: float | None = None
    lookup_datagrams: float | None = None
    #: Pull: DNS questions each node asks per minute at steady state.
    dns_min: float | None = None
    #: Sim: wall seconds of the run after any cold start (for the budget).
    warm_wall_s: float | None = None
    #: Wall seconds the whole run took.
    wall_s: float = 0.0
    #: True when the figures are projected from smaller sizes, not measured.
    projected: bool = False
    notes: list[str] = field(default_factory=list)
    #: More figures by name, printed under the table.
    extra: dict[str, str] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1.0:
        return f"{value * 1000:.1f} ms"
    return f"{value:,.1f} s"


def size(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:,.1f} {unit}"
    return f"{value:,.0f} B"


def count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def rss_of(pid: int | str) -> int:
    """VmRSS of a process, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no MemAvailable in /proc/meminfo")


# ================================================================ 1. the lab
class Poller:
    """A keep-alive HTTP connection to one node's JSON API."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str) -> Any:
        """The JSON answer, or None when the node does not answer (yet)."""
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=2)
            self.conn.request("GET", path)
            return json.loads(self.conn.getresponse().read())
        except (OSError, http.client.HTTPException, ValueError):
            self.close()
            return None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def lab_eids(i: int, count: int) -> list[str]:
    """Node i's EIDs: the lab's own 192.0.2.i/32 and count - 1 more /32s."""
    return [f"{lab_eid(i)}/32", *(f"10.{i}.0.{j}/32" for j in range(1, count))]


def eth0(pid: int) -> tuple[int, int, int, int]:
    """(rx packets, rx bytes, tx packets, tx bytes) of eth0 in the namespace
    of a process: /proc/<pid>/net is that process's network namespace."""
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "eth0":
            f = [int(x) for x in rest.split()]
            return f[1], f[0], f[9], f[8]
    raise ValueError(f"no eth0 in the namespace of pid {pid}")


def udp_datagrams(pid: int) -> tuple[int, int]:
    """(in, out) UDP datagrams of the network namespace of a process."""
    rows = [
        line.split()
        for line in Path(f"/proc/{pid}/net/snmp").read_text().splitlines()
        if line.startswith("Udp:")
    ]
    head, values = rows[0], rows[1]
    return (
        int(values[head.index("InDatagrams")]),
        int(values[head.index("OutDatagrams")]),
    )


def held(pollers: dict[int, Poller]) -> dict[int, int]:
    """Registrations each node holds (-1: no answer)."""
    out = {}
    for i, p in pollers.items():
        info = p.get("/api/node")
        out[i] = -1 if info is None else int(info["counts"]["registrations"])
    return out


def lab_push(mode: str, args: argparse.Namespace) -> Figures:
    """A namespace lab of `args.nodes` real nodes in push mode `mode`."""
    n, eids, interval = args.nodes, args.lab_eids, args.lab_interval
    want = n * (eids + 1) + 1
    fig = Figures(f"push-{mode}", "lab", n, eids, interval, want)
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="sbench-") as tmp,
        NetnsLab(
            PREFIX,
            SUBNET,
            nodes=n,
            mode=mode,
            register_interval=interval,
            workdir=Path(tmp),
        ) as lab,
    ):
        for i in lab.nodes:
            lab.configure(i, eids=lab_eids(i, eids))
        pollers = {
            i: Poller(str(lab.node(i).rloc), lab.node(i).web_port) for i in lab.nodes
        }
        start = time.monotonic()
        lab.start_all()
        spawned = time.monotonic() - start
        counts: dict[int, int] = {}

        def converged() -> bool:
            nonlocal counts
            counts = held(pollers)
            return all(c == want for c in counts.values())

        try:
            lab.wait_until(converged, args.lab_timeout, "the lab to converge", 0.2)
        except TimeoutError:
            short = {i: c for i, c in counts.items() if c != want}
            fig.notes.append(f"did not converge in {args.lab_timeout:g} s: {short}")
            return fig
        fig.converge_s = time.monotonic() - start
        fig.extra["processes started in"] = f"{spawned:.1f} s (one after another)"
        fig.extra["converged after the last start"] = (
            f"{fig.converge_s - spawned:.1f} s"
        )

        # ---- a new EID on one node, on every node
        rounds: list[float] = []
        for r in range(args.rounds):
            i = 2 + r % (n - 1) if n > 1 else 1
            eid = f"10.200.{r}.{1 + (mode == 'multicast')}/32"
            lab.configure(i, eids=[*lab.node(i).eids, eid])
            path = f"/api/lookup?eid={eid.split('/')[0]}"
            for p in pollers.values():
                p.get("/healthz")  # warm the connections before the clock
            t0 = time.monotonic()
            lab.reload(i)
            seen: set[int] = set()
            while len(seen) < n:
                for j, p in pollers.items():
                    if j not in seen:
                        got = p.get(path)
                        if got is not None and got.get("found"):
                            seen.add(j)
                if time.monotonic() - t0 > 30:
                    fig.notes.append(f"round {r}: {eid} on {len(seen)}/{n} only")
                    break
            else:
                rounds.append(time.monotonic() - t0)
        if rounds:
            fig.new_eid_median_s = statistics.median(rounds)
            fig.new_eid_p95_s = percentile(rounds, 0.95)
            fig.extra["new EID rounds"] = " ".join(f"{x * 1000:.0f}" for x in rounds)
            fig.extra["new EID rounds"] += " ms (poll of all nodes ~ " + (
                f"{n} HTTP GETs)"
            )
        want += len(rounds)
        for p in pollers.values():
            p.close()

        # ---- steady state: eth0 of every node over a window with no polling
        time.sleep(args.lab_settle)
        pids = {i: lab.node(i).process.pid for i in lab.nodes}  # type: ignore[union-attr]
        before = {i: eth0(pid) for i, pid in pids.items()}
        t0 = time.monotonic()
        time.sleep(args.lab_window)
        after = {i: eth0(pid) for i, pid in pids.items()}
        window = time.monotonic() - t0
        per_min = 60.0 / window / n
        delta = [sum(after[i][k] - before[i][k] for i in pids) for k in range(4)]
        fig.rx_packets_min, fig.rx_bytes_min = delta[0] * per_min, delta[1] * per_min
        fig.tx_packets_min, fig.tx_bytes_min = delta[2] * per_min, delta[3] * per_min
        rss = [rss_of(pid) for pid in pids.values()]
        fig.memory_bytes = statistics.median(rss)
        fig.extra["RSS per node min/median/max"] = (
            f"{size(min(rss))} / {size(statistics.median(rss))} / {size(max(rss))}"
        )
        fig.extra["steady window"] = (
            f"{window:.0f} s, {args.lab_settle:g} s after the last new EID"
        )
        tx: Counter[str] = Counter()
        for i in lab.nodes:
            for k, v in lab.api(i, "/api/node")["counters"].items():
                if (
                    k.startswith("tx.")
                    or k.startswith("reject.")
                    or k.startswith("drop.")
                ):
                    tx[k] += v
        fig.extra["node counters, all nodes, whole run"] = ", ".join(
            f"{k} {v:,}" for k, v in sorted(tx.items())
        )
        final = held(
            {i: Poller(str(lab.node(i).rloc), lab.node(i).web_port) for i in lab.nodes}
        )
        if any(c != want for c in final.values()):
            fig.notes.append(f"after the window not every node holds {want}: {final}")
        # ---- one more node joins (seeded with n1), after the window
        k = lab.add_node(seed=1, start=False)
        lab.configure(k, eids=lab_eids(k, eids))
        t0 = time.monotonic()
        lab.start(k)
        want += eids + 1
        pollers = {
            i: Poller(str(lab.node(i).rloc), lab.node(i).web_port) for i in lab.nodes
        }
        try:
            lab.wait_until(converged, args.lab_timeout, "the join", 0.2)
            fig.join_s = time.monotonic() - t0
        except TimeoutError:
            fig.notes.append(f"n{k} did not join in {args.lab_timeout:g} s")
        for p in pollers.values():
            p.close()
    fig.wall_s = time.monotonic() - began
    return fig


# ================================================================ 2. the simulation
class FastNet(SimNet):
    """SimNet with a heap of node deadlines, and byte counts.

    SimNet asks every node for its timer at every event, O(nodes) per
    datagram: 1,000 nodes exchanging 10^6 datagrams a minute would spend
    10^9 calls on it. A node's deadline only moves when it is fed an input,
    so after each input its new deadline is pushed here, and stale entries
    are dropped when they surface. Events are drained after each input (the
    shell's flush()) so they do not pile up in memory.
    """

    def __post_init__(self, seed: int) -> None:
        super().__post_init__(seed)
        self._timers: list[tuple[float, int, _Host]] = []
        self._host_of: dict[int, _Host] = {}
        self.bytes_sent = 0
        self.bytes_by_kind: Counter[str] = Counter()
        #: Datagrams sent from or to `watch` (one node's share of a window).
        self.watch: IPv4Address | None = None
        self.watched = 0

    def add(self, node: Any, *addrs: Addr, source: Addr | None = None) -> None:
        super().add(node, *addrs, source=source)
        self._host_of[id(node)] = self._hosts[-1]
        self._arm(self._hosts[-1])

    def touch(self, node: Any) -> None:
        """After an input from outside the network (a lookup, a reloaded
        database): send what node queued and push its new deadline, which
        the heap would otherwise not see until its next datagram."""
        host = self._host_of[id(node)]
        self._flush(host)
        self._arm(host)

    def _arm(self, host: _Host) -> None:
        t = host.node.get_timer()
        if t is not None:
            heapq.heappush(self._timers, (t, next(self._seq), host))

    def _step(self, limit: float) -> bool:
        timers = self._timers
        while timers and timers[0][2].node.get_timer() != timers[0][0]:
            heapq.heappop(timers)
        t_timer = timers[0][0] if timers else math.inf
        t_msg = self._flight[0][0] if self._flight else math.inf
        if min(t_msg, t_timer) > limit:
            return False
        if t_msg <= t_timer:
            self.now, _, data, src, dst = heapq.heappop(self._flight)
            host = self._listeners.get(dst)
            if host is None:
                self.undeliverable += 1
                return True
            self.delivered += 1
            host.node.receive_datagram(data, src, self.now, dst)
        else:
            host = heapq.heappop(timers)[2]
            self.now = max(self.now, t_timer)
            host.node.handle_timer(self.now)
        node = host.node
        assert isinstance(node, Node)
        while node.next_event() is not None:
            pass
        self._flush(host)
        self._arm(host)
        return True

    def _send(self, host: _Host, data: bytes, dst: Addr, port: int = 0) -> None:
        self.bytes_sent += len(data)
        watch = self.watch
        if watch is not None and (dst[0] == watch or host.addrs[0][0] == watch):
            self.watched += 1
        super()._send(host, data, dst, port)


def sim_ip(i: int) -> IPv4Address:
    return SIM_BASE + i


def sim_eids(i: int, count: int) -> tuple[Eid, ...]:
    return tuple(Eid.prefix(f"10.{i >> 8}.{i & 255}.{j}/32") for j in range(count))


def sim_config(i: int, eids: int, interval: float) -> NodeConfig:
    """Member i (0-based) of a simulated push mesh, seeded with member 0."""
    cfg = decent_node_config(
        name=f"n{i + 1}",
        rlocs=(sim_ip(i),),
        group=GROUP,
        key=KEY,
        xtr_id=i + 1,
        eids=sim_eids(i, eids),
        seeds=(sim_ip(0),) if i else (),
        register_interval=interval,
    )
    # Quick registration (every 20 s for 300 s after a start) would be the
    # whole of a short window; the steady state is what is measured.
    return dataclasses.replace(cfg, quick_register_period=0.0)


@dataclass
class Sim:
    net: FastNet
    nodes: list[Node]
    eids: int
    interval: float

    def add_member(self, i: int) -> Node:
        nonces = itertools.count((i + 1) << 40)
        node = Node(
            sim_config(i, self.eids, self.interval),
            nonce=lambda: next(nonces),
            now=self.net.now,
        )
        ip = sim_ip(i)
        self.net.add(node, (ip, 4342), (ip, 4341), source=(ip, 4342))
        self.nodes.append(node)
        return node

    def want(self) -> int:
        return len(self.nodes) * (self.eids + 1) + 1

    def converged(self) -> bool:
        want, n = self.want(), len(self.nodes)
        return all(
            len(x.ms.db) == want and len(x.mapping.membership()) == n
            for x in self.nodes
        )

    def run_until(self, done: Callable[[], bool], step: float, limit: float) -> float:
        """Advance in `step`s until done(); returns the protocol seconds."""
        start = self.net.now
        while not done():
            if self.net.now - start > limit:
                raise TimeoutError(f"not done after {limit:g} protocol seconds")
            self.net.advance(step)
        return self.net.now - start

    def tx_counters(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for x in self.nodes:
            for k, v in x.counters.items():
                if k.startswith(("tx.", "drop.", "reject.")):
                    out[k] += v
        return out


def restore_converged(sim: Sim, ttl_minutes: int = 3) -> None:
    """Put every node in the state of a converged mesh, as a node restarted
    from its snapshot is (Node.restore_registration): each holds every other
    member's registrations. A cold start of N members at once costs some
    N^3 datagrams (every member's merged set changes N times, and each
    change is notified to every member), too many to simulate past ~100."""
    records: list[list[tuple[Eid, MapRecord, bool]]] = []
    for node in sim.nodes:
        mine = []
        for eid, m in node.database.items():
            mine.append((eid, record_of(m), m.merge))
        records.append(mine)
    expires = ttl_minutes * 60.0
    group_eid = sim.nodes[0].mapping.group_eid
    for i, node in enumerate(sim.nodes):
        members: list[Registration] = []
        for j, mine in enumerate(records):
            if i == j:
                continue
            for eid, rec, merge in mine:
                # A fresh record per holder, as each decodes its own copy.
                child = Registration(
                    dataclasses.replace(rec),
                    (sim_ip(j), 4342),
                    j + 1,
                    0,
                    0.0,
                    0.0,
                    expires,
                    "PsITrMn" if merge else "PsITrmn",
                    AlgorithmId.HMAC_SHA_256_128,
                    True,
                )
                if eid == group_eid:
                    members.append(child)
                else:
                    node.restore_registration(
                        eid, GROUP_SITE, False, True, [child], 0.0
                    )
        assert group_eid is not None
        node.restore_registration(group_eid, GROUP_SITE, True, True, members, 0.0)


def record_of(m: DatabaseMapping) -> MapRecord:
    """The record a member's Map-Register carries for its mapping m."""
    return register_record(m)


def sim_push(n: int, args: argparse.Namespace, cold: bool) -> Figures:
    """n simulated replicate-mode members of args.eids EIDs each."""
    eids, interval = args.eids, args.sim_interval
    fig = Figures("push-replicate", "sim", n, eids, interval, n * (eids + 1) + 1)
    began = time.perf_counter()
    rss0 = rss_of("self")
    sim = Sim(FastNet(seed=1), [], eids, interval)
    for i in range(n):
        sim.add_member(i)
    if cold:
        # Every member starts at t=0, seeded with member 0 (as the lab's).
        fig.converge_s = sim.run_until(sim.converged, 0.01, 600.0)
        cold_wall = time.perf_counter() - began
        fig.extra["cold start: datagrams"] = f"{sim.net.sent:,}"
        fig.extra["cold start: wall"] = f"{cold_wall:.1f} s"
        fig.extra["cold start: datagrams per node"] = (
            f"{sim.net.sent / n:,.0f} received, {cold_wall / sim.net.sent * 1e6:.0f}"
            f" us of CPU each here: ~{cold_wall / n:.1f} s of one core per node"
            " (what a real cold start waits for, not the 1 ms hops)"
        )
        fig.extra["cold start: tx counters"] = ", ".join(
            f"{k} {v:,}" for k, v in sorted(sim.tx_counters().items())
        )
        fig.notes.append("converge: cold start of every member at once")
    else:
        restore_converged(sim)
        fig.extra["restored"] = f"wall {time.perf_counter() - began:.1f} s"
        fig.notes.append("started restored (converged) from snapshots")
    warm = time.perf_counter()
    # Settle: the restart's registration round and group lookups.
    sim.net.advance(interval + 5.0)
    if not sim.converged():
        fig.notes.append("not converged after the settle time")
    # ---- steady state
    sent0, bytes0, tx0 = sim.net.sent, sim.net.bytes_sent, sim.tx_counters()
    w0 = time.perf_counter()
    sim.net.advance(args.sim_minutes * 60.0)
    steady_wall = time.perf_counter() - w0
    packets = sim.net.sent - sent0
    per = 1.0 / args.sim_minutes / n
    fig.tx_packets_min = packets * per
    fig.tx_bytes_min = (sim.net.bytes_sent - bytes0 + packets * FRAME) * per
    # Unicast and replicated alike: every datagram sent is one received.
    fig.rx_packets_min, fig.rx_bytes_min = fig.tx_packets_min, fig.tx_bytes_min
    tx = sim.tx_counters() - tx0
    fig.extra["steady: tx by kind per node per min"] = ", ".join(
        f"{k} {v * per:,.1f}" for k, v in sorted(tx.items())
    )
    fig.extra["steady: wall per protocol minute"] = (
        f"{steady_wall / args.sim_minutes:.2f} s"
        f" ({packets / max(steady_wall, 1e-9):,.0f} datagrams/s)"
    )
    fig.memory_bytes = (rss_of("self") - rss0) / n
    # ---- a new EID on one node, on every node (a reloaded config)
    rounds: list[float] = []
    for r in range(args.rounds):
        node = sim.nodes[1 + r % (n - 1)]
        base = next(
            m for e, m in node.database.items() if not e.is_name and not m.merge
        )
        new = dataclasses.replace(base, eid=Eid.prefix(f"10.250.{r}.1/32"))
        sent = sim.net.sent
        node.apply_database([*(m for _, m in node.database.items()), new], sim.net.now)
        sim.net.flush()

        def everywhere(e: Eid = new.eid) -> bool:
            return all(x.ms.db.get(e) is not None for x in sim.nodes)

        took = sim.run_until(
            everywhere,
            0.001,
            60.0,
        )
        rounds.append(took)
        sim.net.advance(1.0)
        fig.extra["new EID: datagrams per round"] = f"{sim.net.sent - sent:,}"
    fig.new_eid_median_s = statistics.median(rounds)
    fig.new_eid_p95_s = percentile(rounds, 0.95)
    # ---- one more member joins the converged mesh
    if n <= args.join_max:
        sent, w0, tx1 = sim.net.sent, time.perf_counter(), sim.tx_counters()
        sim.add_member(n)
        # The EIDs the rounds above added are registrations too.
        want = sim.want() + len(rounds)

        def joined() -> bool:
            return all(len(x.ms.db) == want for x in sim.nodes)

        try:
            fig.join_s = sim.run_until(joined, 0.01, 120.0)
            fig.join_datagrams = sim.net.sent - sent
            fig.extra["one join into the converged mesh"] = (
                f"{fig.join_s * 1000:.0f} ms protocol, "
                f"{sim.net.sent - sent:,} datagrams "
                f"({(sim.net.sent - sent) / (n + 1):,.0f} per node), wall "
                f"{time.perf_counter() - w0:.1f} s; by kind: "
                + ", ".join(
                    f"{k} {v:,}" for k, v in sorted((sim.tx_counters() - tx1).items())
                )
            )
        except TimeoutError as exc:
            fig.notes.append(f"join: {exc}")
    fig.wall_s = time.perf_counter() - began
    fig.warm_wall_s = time.perf_counter() - warm
    return fig


def _in_child(fn: Callable[..., Figures], conn: Any, *args: Any) -> None:
    try:
        conn.send(fn(*args))
    except BaseException as exc:  # noqa: BLE001 - the parent raises it
        conn.send(exc)
    finally:
        conn.close()


def forked(fn: Callable[..., Figures], *args: Any) -> Figures:
    """fn(*args) in a forked child: its memory is measured from a clean
    process, and freed when it ends."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_in_child, args=(fn, child, *args))
    proc.start()
    child.close()
    try:
        got = parent.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"the child died (exit {proc.exitcode})") from None
    proc.join()
    if isinstance(got, BaseException):
        raise got
    assert isinstance(got, Figures)
    return got


def fit_power(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(a, k) of y = a * x^k, least squares in log-log (one point: k = 2)."""
    pts = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len(pts) == 1:
        return math.exp(pts[0][1]) / math.exp(pts[0][0]) ** 2, 2.0
    mx = statistics.fmean(p[0] for p in pts)
    my = statistics.fmean(p[1] for p in pts)
    k = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return math.exp(my - k * mx), k


def project(
    n: int,
    measured: list[Figures],
    args: argparse.Namespace,
    why: str,
    regs: int | None = None,
) -> Figures:
    """Figures for n nodes from the measured sizes' growth, marked projected
    (`regs`: registrations per node at n, push mode's by default)."""
    last = max(measured, key=lambda f: f.nodes)
    if regs is None:
        regs = n * (args.eids + 1) + 1
    fig = Figures(last.mode, "sim", n, args.eids, args.sim_interval, regs)
    fig.projected = True
    fig.notes.append(f"PROJECTION, not measured: {why}")

    def power(get: Callable[[Figures], float | None]) -> float | None:
        pts = [(float(f.nodes), v) for f in measured if (v := get(f)) is not None]
        if not pts:
            return None
        a, k = fit_power(pts)
        return float(a * n**k)

    fig.join_datagrams = power(lambda f: f.join_datagrams)
    fig.join_s = last.join_s
    fig.tx_packets_min = power(lambda f: f.tx_packets_min)
    fig.tx_bytes_min = power(lambda f: f.tx_bytes_min)
    fig.rx_packets_min, fig.rx_bytes_min = fig.tx_packets_min, fig.tx_bytes_min
    # Memory: bytes per held registration at the largest measured size.
    if last.memory_bytes is not None:
        fig.memory_bytes = last.memory_bytes / last.registrations * regs
    fig.converge_s = last.converge_s if last.converge_s is not None else None
    fig.new_eid_median_s, fig.new_eid_p95_s = last.new_eid_median_s, last.new_eid_p95_s
    fig.wall_s = power(lambda f: f.wall_s) or 0.0
    return fig


def cold_model(cold: list[Figures]) -> tuple[float, float] | None:
    """(a, k) of cold-start wall seconds = a * n^k."""
    pts = [
        (float(f.nodes), float(f.extra["cold start: wall"].split()[0])) for f in cold
    ]
    return fit_power(pts) if pts else None


def sim_part(args: argparse.Namespace) -> list[Figures]:
    print(
        "\n== 2. Simulated push meshes (sans-I/O Nodes on SimNet, replicate mode)\n"
        f"{args.eids} EIDs a node, register_interval {args.sim_interval:g} s, ttl 3 min"
        " (defaults), quick registration off; 1 ms per hop, no loss; steady state\n"
        f"over {args.sim_minutes:g} protocol minutes after one register interval + 5 s;"
        " one forked process per size, memory = its RSS growth / nodes."
    )
    figures: list[Figures] = []
    # Cold starts (every member at once) cost ~N^3 datagrams: measured at
    # the calibration sizes, and at a requested size when the fit says it
    # takes under --cold-budget seconds.
    cold: list[Figures] = []
    for n in args.cold_sizes:
        f = forked(sim_push, n, args, True)
        cold.append(f)
        print(
            f"  cold start, {n} nodes: converged in {seconds(f.converge_s)} protocol,"
            f" {f.extra['cold start: datagrams']} datagrams, wall"
            f" {f.extra['cold start: wall']}",
            flush=True,
        )
    model = cold_model(cold)
    if model:
        print(f"  cold-start wall time grows as n^{model[1]:.2f}")
    spent = sum(f.wall_s for f in cold)
    measured: list[Figures] = [*cold]
    for n in args.sizes:
        regs = n * (args.eids + 1) + 1
        reason = ""
        sized = [f for f in measured if f.memory_bytes]
        if sized:
            last = max(sized, key=lambda f: f.nodes)
            need = last.memory_bytes / last.registrations * regs * n  # type: ignore[operator]
            avail = mem_available()
            if need > 0.7 * avail:
                reason = (
                    f"{n} nodes x {regs:,} registrations = {n * regs:,} held in all,"
                    f" ~{size(need)} at {size(last.memory_bytes / last.registrations)}"  # type: ignore[operator]
                    f" per registration; {size(avail)} available"
                )
            pts = [(float(f.nodes), f.warm_wall_s or 0.0) for f in measured]
            a, k = fit_power(pts)
            k = max(k, 2.0)  # N^2 datagrams a minute, at a cost that grows
            a = pts[-1][1] / pts[-1][0] ** k
            est = a * n**k
            left = args.budget - spent
            if not reason and est > left:
                reason = (
                    f"would take ~{est / 60:.0f} min of wall time (n^{k:.1f}),"
                    f" {left / 60:.0f} min left of --budget"
                )
        if reason:
            f = project(n, [x for x in measured if not x.projected], args, reason)
            print(f"  {n} nodes: projected ({reason})", flush=True)
        else:
            cold_run = model is not None and model[0] * n ** model[1] < args.cold_budget
            try:
                f = forked(sim_push, n, args, cold_run)
            except (RuntimeError, MemoryError) as exc:
                why = f"the run failed: {exc}"
                f = project(n, [x for x in measured if not x.projected], args, why)
                print(f"  {n} nodes: projected ({why})", flush=True)
                figures.append(f)
                continue
            spent += f.wall_s
            measured.append(f)
            print(f"  {n} nodes: measured in {f.wall_s:.0f} s wall", flush=True)
        if f.converge_s is None and model is not None and not f.projected:
            f.notes.append(
                "cold start not simulated:"
                f" ~{model[0] * n ** model[1] / 60:.0f} min wall"
                f" (n^{model[1]:.1f})"
            )
        figures.append(f)
    return [*cold, *figures]


# ================================================================ 3. pull mode
#: Pull mode's Map-Server sets: PULL_SET nodes each, set k being nodes
#: PULL_SET * k + 1 .. PULL_SET * (k + 1) (1-based), modulus nodes // PULL_SET.
PULL_SET: Final = 3
PULL_ZONE: Final = "ms.bench.test"
PULL_PREFIX: Final = os.environ.get("DECENT_BENCH_PULL_PREFIX", "bsp")
PULL_SUBNET: Final = os.environ.get("DECENT_BENCH_PULL_SUBNET", "198.18.94.0/24")


def pull_index(eid: Eid, modulus: int) -> int:
    """The set eid registers to and is looked up in: the nodes' defaults
    (RFC 9962 hash, no hash mask, no lookup lengths)."""
    return index_of(hashed_string(eid, 0), modulus)


def dns_sizes(name: str, answers: int) -> tuple[int, int]:
    """UDP payload bytes of the two questions a node asks to resolve a set's
    name (decent.net.dns: A and AAAA), and of their two answers: `answers`
    A records (name pointer, type, class, TTL, length: 12, and 4), and no
    AAAA but the zone's SOA (RFC 2308; names compressed, ~ 50 bytes)."""
    question = 12 + len(name) + 2 + 4
    return 2 * question, 2 * question + answers * 16 + 50


def pull_sets(n: int) -> dict[int, list[int]]:
    """Set index -> its members (1-based node numbers)."""
    return {
        k: list(range(PULL_SET * k + 1, PULL_SET * (k + 1) + 1))
        for k in range(max(1, n // PULL_SET))
    }


def lab_mappings(i: int, eids: int) -> list[Eid]:
    """What lab node i registers: its EIDs and its name."""
    return [*(Eid.prefix(e) for e in lab_eids(i, eids)), Eid.name(f"n{i}")]


def spread(values: list[int]) -> str:
    return f"{min(values)} / {statistics.fmean(values):.1f} / {max(values)}"


def lab_pull(args: argparse.Namespace) -> Figures:
    """A namespace lab of `args.nodes` real nodes in pull mode, its
    Map-Server sets named by an NSD server in the lab."""
    n, eids, interval = args.nodes, args.lab_eids, args.lab_interval
    sets = pull_sets(n)
    modulus = len(sets)
    ttl = max(1, round(args.dns_ttl))
    want: dict[int, set[str]] = {k: set() for k in sets}

    def wanted(i: int) -> None:
        for e in lab_mappings(i, eids):
            want[pull_index(e, modulus)].add(str(e))

    for i in range(1, n + 1):
        wanted(i)
    held_by = [len(want[k]) for k, ms in sets.items() for _ in ms]
    fig = Figures("pull", "lab", n, eids, interval, round(statistics.fmean(held_by)))
    fig.extra["sets"] = (
        f"modulus {modulus}, {PULL_SET} Map-Servers a set (set k = n{PULL_SET}k+1"
        f" .. n{PULL_SET}k+{PULL_SET}), A records TTL {ttl} s;"
        f" registrations per member min/mean/max {spread(held_by)}"
    )
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="bsp-") as tmp,
        NetnsLab(
            PULL_PREFIX,
            PULL_SUBNET,
            nodes=n,
            mode="pull",
            register_interval=interval,
            workdir=Path(tmp),
        ) as lab,
    ):
        records = {str(k): [lab.node(m).rloc for m in ms] for k, ms in sets.items()}
        dns = lab.add_dns_server(PULL_ZONE, records, ttl)
        lab.pull = {
            "modulus": modulus,
            "dns_suffix": PULL_ZONE,
            "dns_servers": [str(dns.address)],
            "dns_min_ttl": 1.0,
        }
        for i in lab.nodes:
            lab.configure(i, eids=lab_eids(i, eids))
        pollers = {
            i: Poller(str(lab.node(i).rloc), lab.node(i).web_port) for i in lab.nodes
        }
        resolved: dict[int, float] = {}
        short: dict[int, int] = {}
        start = time.monotonic()

        def sets_resolved(i: int) -> bool:
            if i not in resolved:
                info = pollers[i].get("/api/node") or {}
                got = (info.get("pull") or {}).get("sets") or []
                if len(got) == modulus and all(s["addresses"] for s in got):
                    resolved[i] = time.monotonic() - start
            return i in resolved

        def converged() -> bool:
            """Every node resolved every set, and each set's members hold
            every registration hashed to it (first shortfall in `short`)."""
            short.clear()
            for i in lab.nodes:
                if not sets_resolved(i):
                    short[i] = -1
                    return False
            for k, ms in sets.items():
                for m in ms:
                    got = pollers[m].get("/api/sites")
                    have = set() if got is None else {str(e["eid"]) for e in got}
                    if not want[k] <= have:
                        short[m] = len(want[k] - have)
                        return False
            return True

        lab.start_all()
        spawned = time.monotonic() - start
        try:
            lab.wait_until(converged, args.lab_timeout, "the pull lab to converge", 0.2)
        except TimeoutError:
            fig.notes.append(
                f"did not converge in {args.lab_timeout:g} s: first short {short}"
                " (-1: sets unresolved, else registrations missing)"
            )
            return fig
        fig.converge_s = time.monotonic() - start
        fig.extra["processes started in"] = f"{spawned:.1f} s (one after another)"
        fig.extra["every node resolved every set"] = (
            f"{max(resolved.values()):.1f} s after the first start"
        )
        fig.extra["converged after the last start"] = (
            f"{fig.converge_s - spawned:.1f} s"
        )

        # ---- a new EID on one node: held by its set, answered by a member
        rounds: list[float] = []
        held_rounds: list[float] = []
        for r in range(args.rounds):
            i = 2 + r % (n - 1) if n > 1 else 1
            text = f"10.200.{r}.3"
            new = Eid.prefix(f"{text}/32")
            k = pull_index(new, modulus)
            want[k].add(str(new))
            members = sets[k]
            asked = next((m for m in members if m != i), members[0])
            lab.configure(i, eids=[*lab.node(i).eids, f"{text}/32"])
            path = f"/api/lookup?eid={text}"
            for m in members:
                pollers[m].get("/healthz")  # warm the connections before the clock
            t0 = time.monotonic()
            lab.reload(i)
            seen: set[int] = set()
            while len(seen) < len(members) and time.monotonic() - t0 < 30:
                for m in members:
                    if m not in seen:
                        got = pollers[m].get(path)
                        if got is not None and got.get("found"):
                            seen.add(m)
            if len(seen) < len(members):
                fig.notes.append(f"round {r}: {new} on {len(seen)} members only")
                continue
            held_rounds.append(time.monotonic() - t0)
            try:
                reply = lab.lookup_over_udp(asked, text)
            except TimeoutError:
                fig.notes.append(f"round {r}: n{asked} did not answer for {text}")
                continue
            if not (reply.records and reply.records[0].locators):
                fig.notes.append(f"round {r}: n{asked} answered {text} negatively")
                continue
            rounds.append(time.monotonic() - t0)
        if rounds:
            fig.new_eid_median_s = statistics.median(rounds)
            fig.new_eid_p95_s = percentile(rounds, 0.95)
            fig.extra["new EID rounds"] = (
                " ".join(f"{x * 1000:.0f}" for x in rounds)
                + f" ms: held by all {PULL_SET} members of its set (their"
                " /api/lookup polled), then a Map-Request to one of them answered"
            )
            fig.extra["new EID held by its set (no lookup)"] = (
                f"p50 {seconds(statistics.median(held_rounds))}"
            )

        # ---- lookups: an outside ITR's Map-Request to a member of the set
        rng = random.Random(7)
        took: list[float] = []
        negative = 0
        for _ in range(args.lab_lookups):
            owner = rng.randint(1, n)
            e = rng.choice(lab_mappings(owner, eids)[:-1])
            members = sets[pull_index(e, modulus)]
            asked = rng.choice([m for m in members if m != owner] or members)
            text = str(e.address)
            t0 = time.perf_counter()
            try:
                reply = lab.lookup_over_udp(asked, text)
            except TimeoutError:
                negative += 1
                continue
            took.append(time.perf_counter() - t0)
            negative += not (reply.records and reply.records[0].locators)
        if took:
            fig.lookup_p50_s = statistics.median(took)
            fig.lookup_p95_s = percentile(took, 0.95)
            fig.extra["lookups"] = (
                f"{len(took)} ECM'd Map-Requests from the host to a member of the"
                f" EID's set: p50 {seconds(fig.lookup_p50_s)}, p95"
                f" {seconds(fig.lookup_p95_s)} wall (socket to Map-Reply);"
                f" {negative} negative or unanswered"
            )
        for p in pollers.values():
            p.close()

        # ---- steady state: eth0 of every node over a window with no polling
        time.sleep(args.lab_settle)
        pids = {i: lab.node(i).process.pid for i in lab.nodes}  # type: ignore[union-attr]
        dns_pid = dns.pids()[0]
        before = {i: eth0(pid) for i, pid in pids.items()}
        dns_before = udp_datagrams(dns_pid)
        t0 = time.monotonic()
        time.sleep(args.lab_window)
        after = {i: eth0(pid) for i, pid in pids.items()}
        dns_after = udp_datagrams(dns_pid)
        window = time.monotonic() - t0
        per_min = 60.0 / window / n
        delta = [sum(after[i][k] - before[i][k] for i in pids) for k in range(4)]
        fig.rx_packets_min, fig.rx_bytes_min = delta[0] * per_min, delta[1] * per_min
        fig.tx_packets_min, fig.tx_bytes_min = delta[2] * per_min, delta[3] * per_min
        queries = dns_after[0] - dns_before[0]
        fig.dns_min = queries * per_min
        fig.extra["DNS server (NSD) over the window"] = (
            f"{queries:,} UDP datagrams in, {dns_after[1] - dns_before[1]:,} out:"
            f" {fig.dns_min:.1f} questions per node per minute (A and AAAA for"
            f" each of {modulus} sets every {ttl} s: {2 * modulus * 60 / ttl:.0f})"
        )
        rss = [rss_of(pid) for pid in pids.values()]
        fig.memory_bytes = statistics.median(rss)
        fig.extra["RSS per node min/median/max"] = (
            f"{size(min(rss))} / {size(statistics.median(rss))} / {size(max(rss))}"
        )
        fig.extra["steady window"] = (
            f"{window:.0f} s, {args.lab_settle:g} s after the last lookup;"
            " eth0 counts the nodes' DNS questions and answers too"
        )
        tx: Counter[str] = Counter()
        for i in lab.nodes:
            for k, v in lab.api(i, "/api/node")["counters"].items():
                if k.startswith(("tx.", "reject.", "drop.", "pull.")):
                    tx[k] += v
        fig.extra["node counters, all nodes, whole run"] = ", ".join(
            f"{k} {v:,}" for k, v in sorted(tx.items())
        )
        pollers = {
            i: Poller(str(lab.node(i).rloc), lab.node(i).web_port) for i in lab.nodes
        }
        if not converged():
            fig.notes.append(f"after the window a set is short: {short}")
        stray = 0
        for k, ms in sets.items():
            for m in ms:
                got = pollers[m].get("/api/sites") or []
                stray += len({str(e["eid"]) for e in got} - want[k])
        if stray:
            fig.notes.append(f"{stray} registrations held outside their set")
        # ---- one more node joins (not a Map-Server: DNS does not list it)
        j = lab.add_node(start=False)
        lab.configure(j, eids=lab_eids(j, eids))
        wanted(j)
        pollers[j] = Poller(str(lab.node(j).rloc), lab.node(j).web_port)
        t0 = time.monotonic()
        start = t0
        lab.start(j)
        try:
            lab.wait_until(converged, args.lab_timeout, "the join", 0.2)
            fig.join_s = time.monotonic() - t0
            fig.extra["one more node (an xTR, in no set) joins"] = (
                f"{seconds(fig.join_s)} from its start until it resolved every set"
                f" ({seconds(resolved[j])}) and its set members hold its"
                f" {eids + 1} registrations"
            )
        except TimeoutError:
            fig.notes.append(f"n{j} did not join in {args.lab_timeout:g} s: {short}")
        for p in pollers.values():
            p.close()
    fig.wall_s = time.monotonic() - began
    return fig


# ---------------------------------------------------------------- the simulation
class Tally(list[tuple[float, str]]):
    """A SimDns.asked that counts the questions instead of keeping them."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def append(self, item: tuple[float, str], /) -> None:
        self.asked += 1


@dataclass
class PullSim:
    """n pull-mode nodes on FastNet, sets of PULL_SET named in a SimDns."""

    net: FastNet
    dns: SimDns
    asked: Tally
    eids: int
    interval: float
    modulus: int
    nodes: list[PullNode] = field(default_factory=list)
    #: Set index -> the registrations each of its members is to hold.
    want: Counter[int] = field(default_factory=Counter)
    #: Nodes that have resolved every set (they stay so: DNS never fails here).
    resolved: set[int] = field(default_factory=set)

    def add_node(self, i: int) -> PullNode:
        """Node i (0-based); in set i // PULL_SET when that is < modulus."""
        ip = sim_ip(i)
        cfg = decent_node_config(
            name=f"n{i + 1}",
            rlocs=(ip,),
            group=None,
            key=KEY,
            xtr_id=i + 1,
            eids=sim_eids(i, self.eids),
            register_interval=self.interval,
            resolve_in_process=True,
            pull=PullConfig(self.modulus, PULL_ZONE, dns_min_ttl=1.0),
        )
        cfg = dataclasses.replace(cfg, quick_register_period=0.0)
        nonces = itertools.count((i + 1) << 40)
        node = PullNode(
            cfg,
            dns=self.dns,
            now=self.net.now,
            keep=False,
            nonce=lambda: next(nonces),
        )
        self.net.add(node, (ip, 4342), (ip, 4341), source=(ip, 4342))
        self.nodes.append(node)
        for eid, _ in node.database.items():
            self.want[self.index(eid)] += 1
        return node

    def index(self, eid: Eid) -> int:
        pull = self.nodes[0].pull
        assert pull is not None
        return pull.index(eid)

    def members(self, k: int) -> list[PullNode]:
        return self.nodes[PULL_SET * k : PULL_SET * (k + 1)]

    def set_of(self, i: int) -> int | None:
        k = i // PULL_SET
        return k if k < self.modulus else None

    def all_resolved(self, i: int) -> bool:
        if i not in self.resolved:
            pull = self.nodes[i].pull
            assert pull is not None
            if not all(s.addresses for s in pull.sets):
                return False
            self.resolved.add(i)
        return True

    def converged(self) -> bool:
        for i, node in enumerate(self.nodes):
            k = self.set_of(i)
            if k is not None and len(node.ms.db) != self.want[k]:
                return False
        return all(self.all_resolved(i) for i in range(len(self.nodes)))

    def held(self, eids: list[Eid]) -> bool:
        """Every member of each EID's set holds it."""
        return all(
            m.registration(e) is not None
            for e in eids
            for m in self.members(self.index(e))
        )

    def run_until(self, done: Callable[[], bool], step: float, limit: float) -> float:
        start = self.net.now
        while not done():
            if self.net.now - start > limit:
                raise TimeoutError(f"not done after {limit:g} protocol seconds")
            self.net.advance(step)
        return self.net.now - start

    def done_at(self, nodes: list[int], eids: list[Eid] | None) -> float:
        """When what converged() or held() waited for last happened (the
        steps of run_until overshoot it): the latest first resolution of a
        set by `nodes`, and the latest first registration of `eids` (None:
        of everything) at its set's members."""
        times = [0.0]
        for i in nodes:
            pull = self.nodes[i].pull
            assert pull is not None
            times.extend(s.resolved_at or 0.0 for s in pull.sets)
        if eids is None:
            for i, node in enumerate(self.nodes):
                if self.set_of(i) is not None:
                    times.extend(e.first_registered for e in node.registrations())
        else:
            for e in eids:
                for m in self.members(self.index(e)):
                    entry = m.registration(e)
                    assert entry is not None
                    times.append(entry.first_registered)
        return max(times)

    def counters(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for x in self.nodes:
            for k, v in x.counters.items():
                if k.startswith(("tx.", "drop.", "reject.", "pull.")):
                    out[k] += v
        return out


def sim_pull(n: int, args: argparse.Namespace, cold: bool = True) -> Figures:
    """n simulated pull-mode nodes of args.eids EIDs each, sets of PULL_SET.

    Pull nodes start from nothing (a cold start costs O(N) datagrams, plus
    every node resolving every set), so `cold` only says whether that start
    is reported as `converge`."""
    eids, interval = args.eids, args.sim_interval
    modulus = max(1, n // PULL_SET)
    fig = Figures("pull", "sim", n, eids, interval, 0)
    began = time.perf_counter()
    rss0 = rss_of("self")
    asked = Tally()
    records: dict[str, list[IPAddress]] = {
        dns_name(k, PULL_ZONE): [sim_ip(PULL_SET * k + j) for j in range(PULL_SET)]
        for k in range(modulus)
    }
    dns = SimDns(records, ttl=args.dns_ttl, delay=args.dns_delay, asked=asked)
    sim = PullSim(FastNet(seed=1), dns, asked, eids, interval, modulus)
    for i in range(n):
        sim.add_node(i)
    held_by = [sim.want[k] for k in range(modulus) for _ in range(PULL_SET)]
    fig.registrations = round(statistics.fmean(held_by))
    fig.extra["sets"] = (
        f"modulus {modulus}, {PULL_SET} Map-Servers a set,"
        f" {n - PULL_SET * modulus} node(s) in none; A records TTL"
        f" {args.dns_ttl:g} s, answered in {args.dns_delay * 1000:g} ms;"
        f" registrations per member min/mean/max {spread(held_by)}"
    )
    # Every node starts at t=0: it resolves every set, then registers.
    sim.run_until(sim.converged, 0.001, 600.0)
    if cold:
        fig.converge_s = sim.done_at(list(range(n)), None)
        fig.extra["start of all: datagrams"] = (
            f"{sim.net.sent:,} ({sim.net.sent / n:,.1f} per node) and"
            f" {asked.asked:,} set names resolved ({asked.asked / n:,.0f} each);"
            f" wall {time.perf_counter() - began:.1f} s"
        )
    warm = time.perf_counter()
    sim.net.advance(interval + 5.0)
    if not sim.converged():
        fig.notes.append("not converged after the settle time")
    # ---- steady state
    sent0, bytes0, tx0, q0 = (
        sim.net.sent,
        sim.net.bytes_sent,
        sim.counters(),
        asked.asked,
    )
    w0 = time.perf_counter()
    sim.net.advance(args.sim_minutes * 60.0)
    steady_wall = time.perf_counter() - w0
    packets, names = sim.net.sent - sent0, asked.asked - q0
    lisp_bytes = sim.net.bytes_sent - bytes0 + packets * FRAME
    query, answer = dns_sizes(dns_name(modulus - 1, PULL_ZONE), PULL_SET)
    per = 1.0 / args.sim_minutes / n
    # A node sends its DNS questions (two a name: decent.net.dns asks A and
    # AAAA) and receives the answers; every LISP datagram sent is one
    # received.
    questions = 2 * names
    fig.tx_packets_min = (packets + questions) * per
    fig.rx_packets_min = fig.tx_packets_min
    q_out, q_in = names * (query + 2 * FRAME), names * (answer + 2 * FRAME)
    fig.tx_bytes_min = (lisp_bytes + q_out) * per
    fig.rx_bytes_min = (lisp_bytes + q_in) * per
    fig.dns_min = questions * per
    fig.extra["steady: per node per min"] = (
        f"{packets * per:,.1f} LISP datagrams ({size(lisp_bytes * per)}),"
        f" {names * per:,.1f} set names resolved = {questions * per:,.1f} DNS"
        f" questions, A and AAAA (~{size(q_out * per)} out, ~{size(q_in * per)} in)"
    )
    fig.extra["steady: the DNS server answers"] = (
        f"{questions / args.sim_minutes / 60:,.1f} questions/s for the mesh"
    )
    tx = sim.counters() - tx0
    fig.extra["steady: tx by kind per node per min"] = ", ".join(
        f"{k} {v * per:,.1f}" for k, v in sorted(tx.items())
    )
    fig.extra["steady: wall per protocol minute"] = (
        f"{steady_wall / args.sim_minutes:.2f} s"
        f" ({packets / max(steady_wall, 1e-9):,.0f} datagrams/s)"
    )
    fig.memory_bytes = (rss_of("self") - rss0) / n
    # ---- a new EID on one node (a reloaded config), held by its set
    rounds: list[float] = []
    dgrams: list[int] = []
    for r in range(args.rounds):
        i = 1 + r % (n - 1)
        node = sim.nodes[i]
        base = next(
            m for e, m in node.database.items() if not e.is_name and not m.merge
        )
        new = dataclasses.replace(base, eid=Eid.prefix(f"10.250.{r}.1/32"))
        sim.want[sim.index(new.eid)] += 1
        sim.net.watch, w, t0 = sim_ip(i), sim.net.watched, sim.net.now
        node.apply_database([*(m for _, m in node.database.items()), new], sim.net.now)
        sim.net.touch(node)

        def held(e: Eid = new.eid) -> bool:
            return sim.held([e])

        sim.run_until(held, 0.0005, 60.0)
        rounds.append(sim.done_at([], [new.eid]) - t0)
        dgrams.append(sim.net.watched - w)
        sim.net.advance(1.0)
    sim.net.watch = None
    fig.new_eid_median_s = statistics.median(rounds)
    fig.new_eid_p95_s = percentile(rounds, 0.95)
    fig.extra["new EID: datagrams per round"] = (
        f"{statistics.fmean(dgrams):.1f} (Map-Registers to its set, and replies)"
    )
    # ---- lookups: a random node resolves a random other node's EID
    rng = random.Random(7)
    times: list[float] = []
    counts: list[int] = []
    local = 0
    for _ in range(args.lookups):
        i = rng.randrange(n)
        owner = rng.randrange(n - 1)
        owner += owner >= i
        eid = sim_eids(owner, eids)[rng.randrange(eids)]
        node = sim.nodes[i]
        local += node in sim.members(sim.index(eid))
        sim.net.watch, w, t0 = sim_ip(i), sim.net.watched, sim.net.now

        def answered(node: PullNode = node, eid: Eid = eid) -> bool:
            entry = node.cache.lookup(eid)
            return entry is not None and not entry.negative

        node.request(eid, sim.net.now)
        sim.net.touch(node)
        try:
            sim.run_until(answered, 0.0005, 10.0)
        except TimeoutError:
            fig.notes.append(f"lookup of {eid} from n{i + 1} unanswered")
            continue
        entry = node.cache.lookup(eid)
        assert entry is not None
        times.append(entry.created - t0)
        counts.append(sim.net.watched - w)
    sim.net.watch = None
    if times:
        fig.lookup_p50_s = statistics.median(times)
        fig.lookup_p95_s = percentile(times, 0.95)
        fig.lookup_datagrams = statistics.fmean(counts)
        fig.extra["lookups"] = (
            f"{len(times)} random (node, other node's EID): p50"
            f" {seconds(fig.lookup_p50_s)}, p95 {seconds(fig.lookup_p95_s)},"
            f" max {seconds(max(times))} protocol; {fig.lookup_datagrams:.2f}"
            f" datagrams each on average; {local} answered in-process (the asker"
            " was in the EID's set)"
        )
    # ---- one more node joins: an xTR in no set (DNS does not list it)
    sent, w0, q0 = sim.net.sent, time.perf_counter(), asked.asked
    sim.net.watch, w, t0 = sim_ip(n), sim.net.watched, sim.net.now
    newcomer = sim.add_node(n)
    mine = [e for e, _ in newcomer.database.items()]
    try:
        sim.run_until(lambda: sim.all_resolved(n) and sim.held(mine), 0.001, 120.0)
        fig.join_s = sim.done_at([n], mine) - t0
        lisp, names = sim.net.watched - w, asked.asked - q0
        fig.join_datagrams = lisp + 4 * names
        fig.extra["one join"] = (
            f"{fig.join_s * 1000:.0f} ms protocol, {lisp:,} LISP datagrams and"
            f" {names:,} set names resolved (4 DNS datagrams each, A and AAAA"
            f" question and answer, counted in join datagrams); mesh-wide"
            f" {sim.net.sent - sent:,} datagrams in that time; wall"
            f" {time.perf_counter() - w0:.1f} s"
        )
    except TimeoutError as exc:
        fig.notes.append(f"join: {exc}")
    sim.net.watch = None
    fig.wall_s = time.perf_counter() - began
    fig.warm_wall_s = time.perf_counter() - warm
    return fig


def sim_pull_part(args: argparse.Namespace) -> list[Figures]:
    print(
        "\n== 3. Simulated pull meshes (sans-I/O PullNodes on SimNet, simulated DNS)\n"
        f"{args.eids} EIDs a node, register_interval {args.sim_interval:g} s, sets of"
        f" {PULL_SET} Map-Servers (modulus = nodes // {PULL_SET}), A records TTL"
        f" {args.dns_ttl:g} s;\nevery node starts at once; steady state over"
        f" {args.sim_minutes:g} protocol minutes after one register interval + 5 s;"
        " traffic\ncounts DNS questions (tx) and answers (rx) with the LISP datagrams;"
        " one forked process per size."
    )
    figures: list[Figures] = []
    for n in args.sizes:
        try:
            f = forked(sim_pull, n, args, True)
        except (RuntimeError, MemoryError) as exc:
            measured = [x for x in figures if not x.projected]
            if not measured:
                raise
            why = f"the run failed: {exc}"
            regs = measured[-1].registrations
            f = project(n, measured, args, why, regs)
            f.mode = "pull"
            print(f"  {n} nodes: projected ({why})", flush=True)
        else:
            print(f"  {n} nodes: measured in {f.wall_s:.0f} s wall", flush=True)
        figures.append(f)
    return figures


# ================================================================ modes
@dataclass(frozen=True)
class Mode:
    """One way of running the mapping system, and how to measure it where."""

    name: str
    lab: Callable[[argparse.Namespace], Figures] | None
    sim: Callable[[argparse.Namespace], list[Figures]] | None


MODES: Final[list[Mode]] = [
    Mode("push-replicate", lambda a: lab_push("replicate", a), sim_part),
    # SimNet has no multicast: the lab alone measures it.
    Mode("push-multicast", lambda a: lab_push("multicast", a), None),
    # Pull mode (RFC 9962 5): sets of PULL_SET Map-Servers named in DNS;
    # each node holds about PULL_SET * (E + 1) registrations whatever N.
    Mode("pull", lab_pull, sim_pull_part),
]


def chosen(text: str) -> list[Mode]:
    """--modes: names, or their starts ("push" is both push modes)."""
    want = [w.strip() for w in text.split(",") if w.strip()]
    got = [m for m in MODES if any(m.name.startswith(w) for w in want)]
    unknown = [w for w in want if not any(m.name.startswith(w) for m in MODES)]
    if unknown or not got:
        names = ", ".join(m.name for m in MODES)
        raise argparse.ArgumentTypeError(f"unknown mode {unknown}; use {names}")
    return got


# ================================================================ report
COLUMNS: Final = (
    ("where", 5),
    ("mode", 15),
    ("nodes", 6),
    ("regs/node", 10),
    ("converge", 10),
    ("new EID p50", 12),
    ("p95", 9),
    ("tx pkt/min", 11),
    ("tx B/min", 11),
    ("rx pkt/min", 11),
    ("rx B/min", 11),
    ("mem/node", 10),
    ("join", 9),
    ("join dgrams", 13),
    ("lookup", 10),
    ("DNS q/min", 10),
    ("wall", 11),
)


def row(f: Figures) -> list[str]:
    mark = "~" if f.projected else ""
    return [
        f.where,
        f.mode,
        f"{f.nodes:,}",
        f"{f.registrations:,}",
        mark + seconds(f.converge_s),
        mark + seconds(f.new_eid_median_s),
        mark + seconds(f.new_eid_p95_s),
        mark + count(f.tx_packets_min),
        mark + size(f.tx_bytes_min),
        mark + count(f.rx_packets_min),
        mark + size(f.rx_bytes_min),
        mark + size(f.memory_bytes),
        mark + seconds(f.join_s),
        mark + count(f.join_datagrams),
        mark + seconds(f.lookup_p50_s),
        mark + count(f.dns_min),
        mark + seconds(f.wall_s),
    ]


def print_table(figures: list[Figures]) -> None:
    """The compact table: one line per (where, mode, size); ~ = projected."""
    head = "".join(name.rjust(w) for name, w in COLUMNS)
    print(head)
    print("-" * len(head))
    for f in figures:
        print("".join(v.rjust(w) for v, (_, w) in zip(row(f), COLUMNS, strict=True)))


def print_details(f: Figures) -> None:
    what = "projected" if f.projected else "measured"
    print(f"-- {f.where} {f.mode}, {f.nodes} nodes x {f.eids} EIDs ({what})")
    for note in f.notes:
        print(f"   note: {note}")
    for k, v in f.extra.items():
        print(f"   {k}: {v}")


def print_growth(figures: list[Figures]) -> None:
    """Ratio of each figure between consecutive sizes, and the exponent k
    of n^k it implies, per mode."""
    getters: list[tuple[str, Callable[[Figures], float | None]]] = [
        ("registrations/node", lambda f: float(f.registrations)),
        ("tx packets/node/min", lambda f: f.tx_packets_min),
        ("tx bytes/node/min", lambda f: f.tx_bytes_min),
        ("memory/node", lambda f: f.memory_bytes),
        (
            "mesh memory (x nodes)",
            lambda f: None if f.memory_bytes is None else f.memory_bytes * f.nodes,
        ),
        ("join datagrams", lambda f: f.join_datagrams),
        ("DNS questions/node/min", lambda f: f.dns_min),
        ("lookup datagrams", lambda f: f.lookup_datagrams),
        ("wall to simulate", lambda f: f.wall_s or None),
    ]
    for mode in dict.fromkeys(f.mode for f in figures if f.where == "sim"):
        sims = sorted(
            (f for f in figures if f.where == "sim" and f.mode == mode),
            key=lambda f: f.nodes,
        )
        for a, b in itertools.pairwise(sims):
            if a.nodes == b.nodes:
                continue
            mark = " (~ projected)" if a.projected or b.projected else ""
            print(
                f"-- {mode}: {a.nodes} -> {b.nodes} nodes"
                f" (x{b.nodes / a.nodes:.1f}){mark}"
            )
            for name, get in getters:
                va, vb = get(a), get(b)
                if va and vb:
                    k = math.log(vb / va) / math.log(b.nodes / a.nodes)
                    print(f"   {name:24} x{vb / va:8.2f}   ~ n^{k:.2f}")


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(a, b) of y = a + b * x, least squares (one point: a = 0)."""
    if len(points) == 1:
        return 0.0, points[0][1] / points[0][0]
    mx = statistics.fmean(p[0] for p in points)
    my = statistics.fmean(p[1] for p in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sum(
        (x - mx) ** 2 for x, _ in points
    )
    return my - b * mx, b


def crossing(push: list[Figures], pull: list[Figures]) -> float | None:
    """Nodes at which push's steady bytes per node per minute reach pull's.
    Both are a fixed part plus a part per node (push: every member's
    registrations; pull: its own few, plus a DNS name per set), so each is
    fit as a + b * n; None without figures or without a crossing."""
    fits = []
    for figs in (push, pull):
        pts = [(float(f.nodes), f.tx_bytes_min) for f in figs if f.tx_bytes_min]
        if not pts:
            return None
        fits.append(fit_line(pts))
    (a1, b1), (a2, b2) = fits
    if b1 <= b2 or a2 <= a1:
        return None
    return (a2 - a1) / (b1 - b2)


def recommend(figures: list[Figures]) -> list[str]:
    """Push against pull at each size both have figures for, and the sizes
    at which each is the one to run."""
    push = {(f.where, f.nodes): f for f in figures if f.mode == "push-replicate"}
    pull = {(f.where, f.nodes): f for f in figures if f.mode == "pull"}
    both = sorted(set(push) & set(pull), key=lambda k: (k[0] != "lab", k[1]))
    if not both:
        return [
            "(run push-replicate and pull together to compare them:"
            " --modes push-replicate,pull)"
        ]
    out = []
    verdicts: dict[int, str] = {}
    for key in both:
        a, b = push[key], pull[key]
        ma, mb = ("~" if f.projected else "" for f in (a, b))
        cheaper = (b.tx_bytes_min or 0) < (a.tx_bytes_min or 0)
        joins = (b.join_datagrams or 0) < (a.join_datagrams or math.inf)
        verdict = "pull" if cheaper and (joins or b.join_datagrams is None) else "push"
        if key[0] == "sim":
            verdicts[key[1]] = verdict
        out.append(
            f"  {key[0]} {key[1]:>5,} nodes: push holds {a.registrations:,} regs/node,"
            f" sends {ma}{size(a.tx_bytes_min)}/min, a join {ma}"
            f"{count(a.join_datagrams)} datagrams, lookups in-process;"
            f" pull holds {b.registrations:,}, sends {mb}{size(b.tx_bytes_min)}/min"
            f" ({mb}{count(b.dns_min)} DNS q), a join {mb}{count(b.join_datagrams)}"
            f" datagrams, a lookup {mb}{seconds(b.lookup_p50_s)} -> {verdict}"
        )
    sims_push = [f for f in figures if f.mode == "push-replicate" and f.where == "sim"]
    sims_pull = [f for f in figures if f.mode == "pull" and f.where == "sim"]
    cross = crossing([f for f in sims_push if not f.projected], [f for f in sims_pull])
    line = "Recommendation: "
    if cross is not None:
        line += (
            f"pull sends fewer bytes per node than push from ~{cross:,.0f} nodes"
            " (a + b * n fits of the measured sims, DNS included); "
        )
    pulls = sorted(n for n, v in verdicts.items() if v == "pull")
    pushes = sorted(n for n, v in verdicts.items() if v == "push")
    if pulls:
        line += f"pull at {', '.join(f'{n:,}' for n in pulls)} nodes"
    if pushes:
        line += f"; push at {', '.join(f'{n:,}' for n in pushes)} nodes"
    line += (
        ". Push keeps every lookup in-process and needs no DNS: worth it while"
        " a join's ~N^2 datagrams and N x (E+1) registrations a node are cheap"
        " (tens of nodes, stable membership); pull holds ~3 x (E+1) a node"
        " whatever N, and a join costs O(modulus) DNS questions + a few"
        " Map-Registers, for one round trip on each new destination."
    )
    return [*out, line]


# ================================================================ main
def sizes(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lab-only", action="store_true")
    parser.add_argument("--sim-only", action="store_true")
    parser.add_argument("--nodes", type=int, default=30, help="lab size")
    parser.add_argument(
        "--sizes", type=sizes, default=[100, 300, 1000], help="sim sizes"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small and short: a smoke run"
    )
    parser.add_argument("--rounds", type=int, default=7, help="new-EID rounds")
    parser.add_argument("--lab-eids", type=int, default=10, help="EIDs per lab node")
    parser.add_argument("--lab-interval", type=float, default=20.0)
    parser.add_argument("--lab-settle", type=float, default=25.0)
    parser.add_argument("--lab-window", type=float, default=60.0)
    parser.add_argument("--lab-timeout", type=float, default=180.0)
    parser.add_argument("--eids", type=int, default=10, help="EIDs per simulated node")
    parser.add_argument("--sim-interval", type=float, default=60.0)
    parser.add_argument("--sim-minutes", type=float, default=2.0)
    parser.add_argument("--cold-sizes", type=sizes, default=[25, 50])
    parser.add_argument("--cold-budget", type=float, default=90.0)
    parser.add_argument("--join-max", type=int, default=300)
    parser.add_argument("--budget", type=float, default=600.0, help="sim wall seconds")
    parser.add_argument(
        "--modes",
        type=chosen,
        default=MODES,
        help="which modes, comma-separated (e.g. pull, push, push-multicast)",
    )
    parser.add_argument("--dns-ttl", type=float, default=60.0, help="pull: A TTL")
    parser.add_argument("--dns-delay", type=float, default=0.005, help="sim DNS")
    parser.add_argument("--lookups", type=int, default=200, help="pull sim lookups")
    parser.add_argument("--lab-lookups", type=int, default=50)
    args = parser.parse_args(argv)
    if args.quick:
        args.nodes, args.rounds, args.lab_window, args.lab_settle = 5, 3, 20.0, 5.0
        args.sizes, args.cold_sizes, args.sim_minutes = [40, 80], [10, 20], 1.0
        args.budget, args.lookups, args.lab_lookups = 120.0, 30, 10
    modes: list[Mode] = args.modes
    began = time.monotonic()
    figures: list[Figures] = []
    if not args.sim_only:
        reason = netns_unavailable()
        if reason:
            print(f"bench_scale: no lab ({reason})", file=sys.stderr)
            if args.lab_only:
                return 2
        else:
            print(
                f"\n== 1. Namespace lab: {args.nodes} `decent run` processes,"
                f" {', '.join(m.name for m in modes if m.lab)}\n{args.lab_eids}"
                f" EIDs a node, register_interval {args.lab_interval:g} s,"
                " ttl 1 min (the lab's; with ttl 1 a node registers at least every\n"
                "20 s); new EID = config rewritten + SIGHUP, then (push) all"
                f" {args.nodes} nodes' /api/lookup polled, (pull) the EID's set's\n"
                "members' /api/lookup polled and one Map-Request to a member;"
                " traffic = each node namespace's eth0\n"
                f"counters over {args.lab_window:g} s (Ethernet frames); memory = VmRSS"
                f" of each node process. {os.cpu_count()} CPUs for all of it.\n"
                f"Pull: sets of {PULL_SET} nodes named by NSD in the lab, A records"
                f" TTL {args.dns_ttl:g} s; one lab at a time."
            )
            for mode in modes:
                if mode.lab is not None:
                    print(f"-- lab {mode.name} ...", flush=True)
                    try:
                        f = mode.lab(args)
                    except Exception:  # noqa: BLE001 - the other modes still run
                        traceback.print_exc()
                        continue
                    figures.append(f)
                    print_details(f)
                    print_table([f])
    if not args.lab_only:
        for mode in modes:
            if mode.sim is not None:
                try:
                    got = mode.sim(args)
                except Exception:  # noqa: BLE001 - the other modes still run
                    traceback.print_exc()
                    continue
                figures.extend(got)
                for f in got:
                    print_details(f)
    print("\n== Growth with the number of nodes (simulation)")
    print_growth(figures)
    print(
        "\n== Summary (~ = projected; lab times are wall seconds, sim times"
        " protocol seconds; per node per minute at steady state)"
    )
    print_table(figures)
    print("\n== Push or pull (~ = projected)")
    for line in recommend(figures):
        print(line)
    command = [
        "python",
        "benchmarks/bench_scale.py",
        *(argv if argv is not None else sys.argv[1:]),
    ]
    print(f"\nran {(time.monotonic() - began) / 60:.1f} min; reproduce with:")
    print(f"  cd {shlex.quote(str(ROOT))} && {shlex.join(command)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
