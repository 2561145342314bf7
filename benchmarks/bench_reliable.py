"""Control-plane traffic on the wire: periodic UDP registration vs reliable transport.

Run as root from the tree: `python benchmarks/bench_reliable.py [--minutes 10]`.

Two namespace labs (decent.lab.NetnsLab) run side by side, each of
`--nodes` nodes (3) with `--eids` IPv4 /32 EIDs each (5,000) besides the
lab's own: one registers over UDP every `register_interval` (the default,
60 s), the other with `[decent] reliable = true`
(draft-ietf-lisp-map-server-reliable-transport: TCP sessions, changes
only). Once both have converged, each lab's bridge is captured for
`--minutes` minutes, and every control-plane packet between two nodes'
RLOCs is counted: UDP 4342, UDP 4341 carrying replicated control
(instance ID 0xffffff), and TCP 4342 (handshakes, keepalives, ACKs and
PDUs alike). The result is packets and bytes a minute for each, and the
ratio.

On the wire: the capture is on the lab bridge (dumpcap -P), bytes are
Ethernet frames. A veth hands the bridge TCP segments of up to 64 KB
(segmentation offload); each is counted as the 1,500-byte-MTU packets a
real link would carry (payload split at the MSS, headers on each).

A node registers every 20 s, not 60, for its first 300 s (quick
registration, NodeConfig.quick_register_period), so the UDP lab's first
minutes carry about three times its steady rate; the figures are given
for the whole window and split at that point.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import shlex
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Address
from pathlib import Path
from typing import Final

from decent.lab import (
    CONTROL_PORT,
    DATA_PORT,
    GROUP,
    NetnsLab,
    netns_unavailable,
    read_frames,
)
from decent.peer.config import NodeConfig
from decent.wire import DECENT_CONTROL_IID, DecodeError, decapsulate

ROOT: Final = Path(__file__).resolve().parent.parent
PREFIX: Final = "rbench"
NET: Final = "198.18"
#: The two labs' subnets: NET.46.0/24 (UDP) and NET.47.0/24 (reliable).
SUBNETS: Final = {"udp": 46, "reliable": 47}
#: The config default (minutes): with the T bit it is the lifetime, and
#: with 60 s registration three periods fit in it.
TTL_MIN: Final = 3
INTERVAL: Final = 60.0
LIMITS: Final = """\
[limits]
# 5,001 EIDs of one registrant, and room for a round over UDP and a
# session's first round close together.
registrant_eids = 8192
registrant_burst = 20000.0
# Quick registration sends 5,001 records every 20 s, 250 a second: over
# the default 200, part of each round would be refused (by the node's own
# Map-Server too).
registrant_rate = 1000.0
"""
MTU: Final = 1500
_ETHERNET: Final = 14
_TCP: Final = socket.IPPROTO_TCP
_UDP: Final = socket.IPPROTO_UDP


def _quick_period() -> float:
    """NodeConfig.quick_register_period's default (seconds)."""
    (found,) = [f for f in fields(NodeConfig) if f.name == "quick_register_period"]
    assert isinstance(found.default, float)
    return found.default


_QUICK: Final = _quick_period()


# ---------------------------------------------------------------- the wire
@dataclass(frozen=True, slots=True)
class Packet:
    """One control-plane packet between two nodes, as a wire carries it."""

    time: float
    kind: str
    packets: int
    size: int


def wire_packets(
    path: Path, rlocs: set[IPv4Address]
) -> tuple[list[Packet], Counter[str]]:
    """The control-plane packets between two of `rlocs` (or to the group)
    in a classic Ethernet pcap, and what else was seen (for the record)."""
    other: Counter[str] = Counter()
    out: list[Packet] = []
    to = rlocs | {IPv4Address(GROUP)}
    for f in read_frames(path):
        if f.src not in rlocs or f.dst not in to or f.src == f.dst:
            other["not between nodes"] += 1
            continue
        size = _ETHERNET + f.length
        if f.fragment:
            # Nothing between two lab nodes but LISP control is UDP.
            out.append(Packet(f.time, "IPv4 fragment", 1, size))
        elif f.proto == _UDP and CONTROL_PORT in (f.sport, f.dport):
            out.append(Packet(f.time, "UDP 4342", 1, size))
        elif f.proto == _UDP and DATA_PORT in (f.sport, f.dport):
            try:
                header, _inner = decapsulate(f.payload)
            except DecodeError:
                header = None
            if header is None or header.instance_id != DECENT_CONTROL_IID:
                other["UDP 4341 data"] += 1
                continue
            out.append(Packet(f.time, "UDP 4341 replicated", 1, size))
        elif f.proto == _TCP and CONTROL_PORT in (f.sport, f.dport):
            payload = len(f.payload)
            count = max(1, math.ceil(payload / (MTU - f.headers)))
            kind = "TCP 4342 with PDUs" if payload else "TCP 4342 bare"
            out.append(
                Packet(f.time, kind, count, payload + count * (_ETHERNET + f.headers))
            )
        else:
            other[f"IP protocol {f.proto}"] += 1
    return out, other


@dataclass
class Tally:
    packets: Counter[str] = field(default_factory=Counter)
    size: Counter[str] = field(default_factory=Counter)

    def add(self, p: Packet) -> None:
        self.packets[p.kind] += p.packets
        self.size[p.kind] += p.size


def tally(packets: list[Packet], start: float, end: float) -> Tally:
    out = Tally()
    for p in packets:
        if start <= p.time < end:
            out.add(p)
    return out


# ---------------------------------------------------------------- the labs
def own_eids(i: int, count: int) -> list[str]:
    return [f"10.{i}.{k >> 8}.{k & 255}/32" for k in range(count)]


def build(name: str, args: argparse.Namespace, workdir: Path) -> NetnsLab:
    lab = NetnsLab(
        f"{args.prefix}{name[0]}",
        f"{args.net}.{SUBNETS[name]}.0/24",
        nodes=args.nodes,
        ttl_minutes=TTL_MIN,
        register_interval=INTERVAL,
        workdir=workdir / name,
    )
    lab.create()
    for i in lab.nodes:
        lab.configure(
            i,
            eids=[*lab.node(i).eids, *own_eids(i, args.eids)],
            decent={"reliable": name == "reliable"},
            extra=LIMITS,
        )
    return lab


def converged(lab: NetnsLab, reliable: bool) -> bool:
    """Every node holds every registration (and, with reliable transport,
    its sessions with every other node are up both ways)."""
    want = sum(len(n.eids) for n in lab.nodes.values()) + len(lab.nodes) + 1
    for i in lab.nodes:
        info = lab.api(i, "/api/node", timeout=10.0)
        if info["counts"]["registrations"] != want:
            return False
        if reliable:
            ups = [s for s in info["reliable"]["sessions"] if s["state"] == "up"]
            if len(ups) != 2 * (len(lab.nodes) - 1):
                return False
    return True


def refused(lab: NetnsLab) -> int:
    """Registrations the nodes refused (a quota or rate would skew the
    figures: a refused registration is soon sent again)."""
    total = 0
    for i in lab.nodes:
        counters = lab.api(i, "/api/node", timeout=10.0)["counters"]
        total += sum(v for k, v in counters.items() if k.startswith("reject."))
    return total


# ---------------------------------------------------------------- report
def per_minute(value: int, seconds: float) -> str:
    return f"{value * 60.0 / seconds:12,.0f}" if seconds > 0 else f"{'-':>12}"


def ratio(a: float, b: float) -> str:
    return f"{a / b:12,.1f}" if b else f"{'inf':>12}"


def report(label: str, window: tuple[float, float], tallies: dict[str, Tally]) -> None:
    seconds = window[1] - window[0]
    if seconds <= 0:
        print(f"\n{label}: not in this window")
        return
    print(f"\n{label} ({seconds / 60:.1f} min)")
    print(f"  {'':28}{'packets/min':>12}{'bytes/min':>14}")
    totals = {}
    for name, t in tallies.items():
        p, b = sum(t.packets.values()), sum(t.size.values())
        totals[name] = (p, b)
        print(f"  {name:28}{per_minute(p, seconds)}{per_minute(b, seconds):>14}")
        for kind in sorted(t.packets):
            print(
                f"    {kind:26}{per_minute(t.packets[kind], seconds)}"
                f"{per_minute(t.size[kind], seconds):>14}"
            )
    (up, ub), (rp, rb) = totals["UDP periodic"], totals["reliable transport"]
    print(f"  {'ratio UDP / reliable':28}{ratio(up, rp)}{ratio(ub, rb):>14}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--eids", type=int, default=5000)
    parser.add_argument("--prefix", default=PREFIX, help="lab namespace prefix")
    parser.add_argument("--net", default=NET, help="first two octets of the subnets")
    parser.add_argument("--keep", type=Path, help="keep the captures in this folder")
    args = parser.parse_args(argv)
    reason = netns_unavailable()
    if reason:
        print(f"bench_reliable: {reason}", file=sys.stderr)
        return 2
    if not 1 <= args.eids <= 65_000 or not 2 <= args.nodes <= 9:
        parser.error("use 1 to 65,000 EIDs and 2 to 9 nodes")
    command = [
        "python",
        "benchmarks/bench_reliable.py",
        "--minutes",
        f"{args.minutes:g}",
    ]
    for flag, default in (
        ("nodes", 3),
        ("eids", 5000),
        ("prefix", PREFIX),
        ("net", NET),
    ):
        if getattr(args, flag) != default:
            command += [f"--{flag}", str(getattr(args, flag))]
    began = time.monotonic()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rbench-")))
        pcaps = args.keep or tmp
        labs: dict[str, NetnsLab] = {}
        for name in ("udp", "reliable"):
            labs[name] = build(name, args, tmp)
            stack.callback(labs[name].destroy)
        started = time.time()
        for lab in labs.values():
            lab.start_all()
        print(
            f"{args.nodes} nodes x {args.eids:,} EIDs in two labs: "
            f"{labs['udp'].subnet} (UDP, register_interval {INTERVAL:g} s) and "
            f"{labs['reliable'].subnet} (reliable = true); waiting for them to converge"
        )
        for name, lab in labs.items():
            took = lab.wait_until(
                functools.partial(converged, lab, name == "reliable"),
                600.0,
                f"the {name} lab to converge",
                interval=1.0,
            )
            print(f"  {name}: converged, {took:.0f} s after the wait began")
        with contextlib.ExitStack() as capturing:
            captures = {
                name: capturing.enter_context(
                    lab.capture(pcaps / f"{name}.pcap", "udp or tcp port 4342")
                )
                for name, lab in labs.items()
            }
            refused_before = {name: refused(lab) for name, lab in labs.items()}
            start = time.time()
            end = start + 60.0 * args.minutes
            print(f"capturing both bridges for {args.minutes:g} min")
            while time.time() < end:
                time.sleep(min(60.0, max(0.0, end - time.time())))
                left = max(0.0, end - time.time())
                if left:
                    print(f"  {left / 60:.1f} min left")
            end = time.time()
        # Out of the block: each capture has its end marker, so holds
        # every packet sent before `end`.
        rejected = {
            name: refused(lab) - refused_before[name] for name, lab in labs.items()
        }
        for name, lab in labs.items():
            if not converged(lab, name == "reliable"):
                print(f"warning: the {name} lab no longer holds every registration")
        seen: dict[str, tuple[list[Packet], Counter[str]]] = {}
        for name, lab in labs.items():
            rlocs = {n.rloc for n in lab.nodes.values()}
            seen[name] = wire_packets(captures[name], rlocs)
    names = {"udp": "UDP periodic", "reliable": "reliable transport"}
    quick_end = started + _QUICK
    phases = [
        ("whole window", (start, end)),
        (f"first {_QUICK:.0f} s of the nodes' uptime", (start, min(end, quick_end))),
        ("after it (steady state)", (max(start, quick_end), end)),
    ]
    print(
        f"\ncontrol-plane traffic between {args.nodes} nodes of {args.eids:,} EIDs "
        "each, on the wire (UDP 4342, replicated control on UDP 4341, TCP 4342)"
    )
    for label, window in phases:
        report(
            label,
            window,
            {names[n]: tally(p, *window) for n, (p, _) in seen.items()},
        )
    for name, (_, other) in seen.items():
        if rejected[name]:
            print(
                f"\nwarning: the {name} lab refused {rejected[name]} registrations "
                "in the window: the figures are not those of a healthy lab"
            )
        if other.get("UDP 4341 data"):
            print(f"note: {name} lab had {other['UDP 4341 data']} data packets")
    if args.keep:
        print(f"\ncaptures kept in {args.keep}")
    print(f"\nran {(time.monotonic() - began) / 60:.1f} min in all; reproduce with:")
    print(f"  cd {shlex.quote(str(ROOT))} && {shlex.join(command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
