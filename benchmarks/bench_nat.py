"""NAT traversal: the join time of a node behind NAT, and relayed vs direct throughput.

Run as root from the tree: `PYTHONPATH=. python benchmarks/bench_nat.py`.

One decent.lab.natlab.NatLab: two public members n1 and n2 (`[decent]
relay = true`) on the lab bridge, and two homes n3 and n4, each behind its
own router namespace (iptables MASQUERADE, a home-router firewall, UDP
conntrack timeouts of 10 s). Every node has `nat_keepalive = 2` (as
tests/e2e/test_nat_traversal.py) and `[dataplane] encrypt = "off"`: relayed
paths are not encrypted yet. Below, P is the public member that is not
n3's relay (chosen once the lab has settled, and again before the
throughput).

Join: home n3 is stopped (SIGTERM: it withdraws its registrations, and the
bench waits until no public member routes its EID any more), nothing of
its own is cleared (its state dir, its NAT's conntrack entries stay), and
it is started again. The clock runs from the spawn of `decent run` until
(a) n3's `/api/v1/node` says `nat.state` "relayed", (b) a public member's
`dataplane.routes` holds n3's EID, (c) an ICMP echo from P's EID to n3's
EID is answered (a raw-socket pinger in P sends one every poll interval
from before the start), and (d) n3's own `dataplane.routes` holds every
other node's EID. The APIs are polled every `--poll` s.

P talked to n3 in the join before, and when n3 withdraws, P's map-cache
entry for it turns negative for `negative_ttl_unregistered` (a minute)
and is not refreshed when n3 registers again; so P's map-cache is cleared
(admin API) after the stop, and (c) is the time for a peer that holds
nothing stale. `--new-joins` joins more remove n3's state dir before the
start: a new node, which has no saved registrations to restore.
`--stale-joins` joins more leave P's map-cache alone and time (c) as it is.

Throughput: for each path, a TCP bulk transfer of `--mb` MB (python3
sockets in the namespaces, sha256-checked, timed by the receiver from
accept to EOF) and a UDP stream (`--udp-size` B datagrams offered at
`--udp-pps` for `--udp-seconds` s; delivered Mbit/s is the payload received
over the sender's own duration, loss is against what the sender sent).
Paths: (a) direct, public n1 EID -> public n2 EID; (b) relayed, home n3 EID
-> home n4 EID, through the relay(s); (c) home -> public, n3 EID -> P's EID
(P's answers, TCP ACKs among them, come back through n3's relay). The
paths alternate within each of `--rounds` rounds; the summary is the median
per path and the ratios to direct. Every node's map-cache is cleared
before each measurement, so that each starts as a new flow does (a
Map-Request, fresh locator states) and nothing one left (a locator marked
down, a negative entry) carries into the next. `xTR drops` counts what the
xTRs dropped for want of a usable locator or on a negative entry during
the measurement; `relay fwd`, what the relays re-encapsulated.

Path stability: every node's map-cache is cleared, then four pings run
side by side for `--steady-seconds` s, one every 0.2 s: n1 -> n2 (direct),
P -> n3 (to a home, relayed), n3 -> P (home -> public) and n3 -> n4 (home
to home); answered, and the longest run of unanswered ones. RLOC probing
(every 10 s) must find the relayed locators and the public ones seen from
a home up: once it did not, and those paths died 5 to 16 s into a flow.

Every sender, receiver and xTR shares this machine's cores: a relayed path
runs three xTRs where a direct one runs two.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final

from decent.lab import LabError, lab_eid, netns_unavailable
from decent.lab.natlab import NatLab

ROOT: Final = Path(__file__).resolve().parent.parent
PREFIX: Final = "bnat"
SUBNET: Final = "198.18.95.0/24"
KEEPALIVE: Final = 2
UDP_TIMEOUT: Final = 10
HOME: Final = 3
OTHER_HOME: Final = 4
#: Every node's [web] admin_token: the bench clears map-caches over the API.
TOKEN: Final = "bench-nat"
CONVERGE: Final = 120.0
TCP_PORT: Final = 5301
UDP_PORT: Final = 5302
SEED: Final = 7
#: What an xTR drops for want of a way to the destination.
DROPS: Final = ("drop.no-usable-rloc", "drop.negative")
_HTTP: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_SEQ: Final = re.compile(rb"icmp_seq=(\d+)")

#: Answers the first ICMP echo reply from `dst` with its monotonic time
#: (CLOCK_MONOTONIC is one clock for every namespace of this host).
_PINGER = r"""
import os, select, socket, struct, sys, time
src, dst = sys.argv[1], sys.argv[2]
every, limit = float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.bind((src, 0))
ident = os.getpid() & 0xFFFF
def checksum(b):
    t = sum(struct.unpack(f"!{len(b) // 2}H", b))
    t = (t >> 16) + (t & 0xFFFF); t += t >> 16
    return ~t & 0xFFFF
print("ready", flush=True)
end = time.monotonic() + limit; seq = 0; due = 0.0
while time.monotonic() < end:
    now = time.monotonic()
    if now >= due:
        seq = (seq + 1) & 0xFFFF
        body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"decent-bench-nat"
        body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        try:
            s.sendto(body, (dst, 0))
        except OSError:
            pass  # no route to it yet
        due = now + every
    ready, _, _ = select.select([s], [], [], max(0.0, due - time.monotonic()))
    if not ready: continue
    pkt, (peer, _) = s.recvfrom(2048)
    icmp = pkt[(pkt[0] & 0x0F) * 4:]
    if peer == dst and len(icmp) >= 8 and icmp[0] == 0:
        if struct.unpack("!H", icmp[4:6])[0] == ident:
            print(f"{time.monotonic():.6f}", flush=True); sys.exit(0)
sys.exit(1)
"""

#: Prints bytes, sha256, seconds from accept to EOF, and "stalled" when no
#: byte came for the idle timeout.
_TCP_RECEIVER = r"""
import hashlib, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
idle = float(sys.argv[3]); s.settimeout(idle); print("ready", flush=True)
c, _ = s.accept(); c.settimeout(idle); t = time.monotonic(); last = t
h = hashlib.sha256(); n = 0; buf = bytearray(1 << 20); view = memoryview(buf)
how = "done"
while True:
    try:
        k = c.recv_into(buf)
    except TimeoutError:
        how = "stalled"; break
    if not k: break
    h.update(view[:k]); n += k; last = time.monotonic()
print(n, h.hexdigest(), f"{last - t:.6f}", how, flush=True)
"""

_TCP_SENDER = r"""
import random, socket, sys
data = random.Random(int(sys.argv[4])).randbytes(int(sys.argv[3]))
c = socket.create_connection(
    (sys.argv[2], int(sys.argv[5])),
    timeout=float(sys.argv[6]),
    source_address=(sys.argv[1], 0),
)
c.sendall(data); c.close()
"""

_UDP_RECEIVER = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE, as root
except OSError:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
buf = bytearray(65536); seen = set(); n = size = 0
while True:
    try:
        k = s.recv_into(buf)
    except TimeoutError:
        break
    if n == 0:
        s.settimeout(1.0)
    n += 1; size += k
    if k >= 8:
        seen.add(struct.unpack_from("!Q", buf)[0])
print(n, len(seen), size, flush=True)
"""

_UDP_SENDER = r"""
import socket, struct, sys, time
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
size, pps, seconds = int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0)); s.connect((dst, port))
payload = bytearray(size); sent = errors = 0
start = time.monotonic(); end = start + seconds
while True:
    now = time.monotonic()
    if now >= end: break
    due = int((now - start) * pps) - sent
    if due <= 0:
        time.sleep(0.0005); continue
    for _ in range(min(due, 64)):
        struct.pack_into("!Q", payload, 0, sent)
        try:
            s.send(payload); sent += 1
        except OSError:
            errors += 1
print(sent, errors, f"{time.monotonic() - start:.6f}", flush=True)
"""


class BenchError(Exception):
    """A measurement that could not be made (the logs say why)."""


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def eid(i: int) -> str:
    return str(lab_eid(i))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------- the lab
def build(args: argparse.Namespace) -> NatLab:
    lab = NatLab(
        args.prefix,
        args.subnet,
        publics=2,
        homes=2,
        udp_timeout=UDP_TIMEOUT,
        dataplane=True,
    )
    try:
        lab.create()
        for i in lab.nodes:
            dataplane: dict[str, object] = {"encrypt": "off"}
            if args.probe_interval is not None:
                dataplane["probe_interval"] = args.probe_interval
            lab.configure(i, dataplane=dataplane, admin_token=TOKEN)
            settings: dict[str, object] = {"nat_keepalive": KEEPALIVE}
            if i in lab.publics:
                settings["relay"] = True
            lab.configure(i, decent=settings)
    except BaseException:
        lab.destroy()
        raise
    return lab


def settled(lab: NatLab) -> bool:
    """Every node routes every other node's IPv4 EID, the homes are
    relayed and the publics direct."""
    for i in lab.nodes:
        if not lab.node(i).running:
            return False
        info = lab.api(i, "/api/v1/node")
        wanted = {f"{eid(j)}/32" for j in lab.nodes if j != i}
        state = "relayed" if lab.is_home(i) else "direct"
        if not wanted <= set(info["dataplane"]["routes"]):
            return False
        if info["nat"]["state"] != state:
            return False
    return True


def relay_of(lab: NatLab, i: int) -> str:
    return str(lab.api(i, "/api/v1/node")["nat"]["relay"])


def counters(lab: NatLab) -> dict[str, int]:
    """relay.forwarded of the publics, and DROPS of every node, summed."""
    out = {"relay.forwarded": 0, "drops": 0}
    for i in lab.nodes:
        c = lab.api(i, "/api/v1/node")["counters"]
        out["relay.forwarded"] += int(c.get("relay.forwarded", 0))
        out["drops"] += sum(int(c.get(k, 0)) for k in DROPS)
    return out


def routes_eid(lab: NatLab, i: int, prefix: str) -> bool:
    return prefix in lab.api(i, "/api/v1/node", timeout=1.0)["dataplane"]["routes"]


def cached(lab: NatLab, i: int, prefix: str) -> dict[str, Any] | None:
    """Node i's map-cache entry for prefix, if any."""
    for entry in lab.api(i, "/api/v1/map-cache"):
        if entry["eid"] == f"[0]{prefix}":
            found: dict[str, Any] = entry
            return found
    return None


def clear_cache(lab: NatLab, i: int) -> None:
    """Node i's map-cache emptied (the operator's "clear cache")."""
    req = urllib.request.Request(
        lab.node(i).url + "/api/v1/map-cache/clear",
        method="POST",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with _HTTP.open(req, timeout=5.0) as resp:
        answer = json.loads(resp.read())
    if "cleared" not in answer:
        raise BenchError(f"n{i} refused to clear its map-cache: {answer}")


def clear_all(lab: NatLab) -> None:
    for i in lab.nodes:
        clear_cache(lab, i)


def _kill(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)


def _ready(proc: subprocess.Popen[bytes], what: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != b"ready":
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        raise BenchError(f"{what} did not start: {line!r} {err.strip()}")


# ---------------------------------------------------------------- join
@dataclass
class Join:
    relay: str
    relayed: float
    routed: dict[int, float]
    pinged: float
    complete: float

    @property
    def first_routed(self) -> float:
        return min(self.routed.values())

    @property
    def all_routed(self) -> float:
        return max(self.routed.values())


def join_once(
    lab: NatLab,
    pinger_at: int,
    limit: float,
    poll: float,
    *,
    clear: bool,
    wipe: bool = False,
) -> tuple[Join, str]:
    """Stop the home, start it again and time its milestones (see the
    module docstring). With `clear`, the pinger's map-cache is cleared
    after the stop; with `wipe`, the home's state dir is removed (a new
    node: a new key, nothing remembered). Returns the Join and what the
    pinger's map-cache held for the home after the stop."""
    prefix = f"{eid(HOME)}/32"
    others = {f"{eid(j)}/32" for j in lab.nodes if j != HOME}
    lab.stop(HOME)
    lab.wait_until(
        lambda: not any(routes_eid(lab, i, prefix) for i in lab.publics),
        30.0,
        f"the publics to drop n{HOME}'s EID after it stopped",
    )
    held = _settled_entry(lab, pinger_at, prefix)
    if clear:
        clear_cache(lab, pinger_at)
    if wipe:
        shutil.rmtree(lab.state_dir(HOME))
    pinger = lab.popen(
        pinger_at,
        *(sys.executable, "-c", _PINGER, eid(pinger_at), eid(HOME)),
        *(f"{poll}", f"{limit}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _ready(pinger, f"the pinger in n{pinger_at}")
        start = time.monotonic()
        lab.start(HOME)
        relayed: float | None = None
        complete: float | None = None
        relay = ""
        routed: dict[int, float] = {}
        pinged: float | None = None
        while (
            relayed is None
            or complete is None
            or len(routed) < len(lab.publics)
            or pinged is None
        ):
            now = time.monotonic()
            if now - start > limit:
                raise BenchError(
                    f"n{HOME} did not join in {limit:g} s: relayed after "
                    f"{relayed} s, routed by {sorted(routed)}, ping {pinged}, "
                    f"routes to every other EID {complete}"
                )
            if relayed is None or complete is None:
                with contextlib.suppress(OSError, ValueError):
                    info = lab.api(HOME, "/api/v1/node", timeout=1.0)
                    at = time.monotonic() - start
                    if relayed is None and info["nat"]["state"] == "relayed":
                        relayed, relay = at, str(info["nat"]["relay"])
                    if complete is None and others <= set(info["dataplane"]["routes"]):
                        complete = at
            for i in lab.publics:
                if i not in routed:
                    with contextlib.suppress(OSError, ValueError):
                        if routes_eid(lab, i, prefix):
                            routed[i] = time.monotonic() - start
            if pinged is None and pinger.poll() is not None:
                out, err = pinger.communicate()
                if pinger.returncode:
                    raise BenchError(f"the pinger gave up: {err.decode().strip()}")
                pinged = float(out.decode().split()[0]) - start
            time.sleep(max(0.0, poll - (time.monotonic() - now)))
        return Join(relay, relayed, routed, pinged, complete), held
    finally:
        _kill(pinger)


def _settled_entry(lab: NatLab, i: int, prefix: str) -> str:
    """What node i's map-cache holds for prefix once the withdrawal has
    reached it: "none", or "negative, N s left" (a positive entry turns
    negative within moments: wait up to 2 s for that)."""
    deadline = time.monotonic() + 2.0
    while True:
        entry = cached(lab, i, prefix)
        if entry is None and time.monotonic() > deadline:
            return "none"
        if entry is not None and entry["negative"]:
            return f"negative, {entry['ttl_s']:.0f} s left"
        if entry is not None and time.monotonic() > deadline:
            return "positive"
        time.sleep(0.05)


def join_series(
    lab: NatLab,
    p: int,
    count: int,
    limit: float,
    poll: float,
    *,
    clear: bool,
    wipe: bool = False,
) -> list[Join]:
    """`count` joins, a row printed for each; the lab settles after each."""
    cols = "".join(f"{f'n{i} routes':>10}" for i in lab.publics)
    print(
        f"  {'join':>4}  {'n3 relay':<14}{'(a)':>7}{cols}{f'(c) n{p}':>9}"
        f"{'(d)':>8}   n{p}'s map-cache for n{HOME} after the stop"
    )
    joins: list[Join] = []
    for k in range(1, count + 1):
        j, held = join_once(lab, p, limit, poll, clear=clear, wipe=wipe)
        joins.append(j)
        routed = "".join(f"{j.routed[i]:10.3f}" for i in lab.publics)
        print(
            f"  {k:4d}  {j.relay:<14}{j.relayed:7.3f}{routed}{j.pinged:9.3f}"
            f"{j.complete:8.3f}   {held}{' (cleared)' if clear else ''}",
            flush=True,
        )
        # The next stop waits for the whole group to hold this join.
        lab.wait_until(lambda: settled(lab), CONVERGE, "the lab to settle")
    return joins


def summary(joins: list[Join], p: int) -> None:
    rows: list[tuple[str, list[float]]] = [
        (f'(a) n{HOME} nat.state "relayed"', [j.relayed for j in joins]),
        *(
            (f"(b) n{i} routes {eid(HOME)}/32", [j.routed[i] for j in joins])
            for i in sorted(joins[0].routed)
        ),
        ("(b) the first public routes it", [j.first_routed for j in joins]),
        ("(b) every public routes it", [j.all_routed for j in joins]),
        (f"(c) ping n{p} -> n{HOME} answered", [j.pinged for j in joins]),
        (f"(d) n{HOME} routes every other EID", [j.complete for j in joins]),
    ]
    print(f"\n  {'milestone, s after the spawn':<34}{'median':>8}{'min':>8}{'max':>8}")
    for label, values in rows:
        print(f"  {label:<34}{median(values):8.3f}{min(values):8.3f}{max(values):8.3f}")


def run_joins(lab: NatLab, args: argparse.Namespace, p: int) -> None:
    print(
        f"\n## join of home n{HOME} (clock from the spawn of `decent run`; APIs "
        f"polled and one ping sent every {args.poll * 1000:.0f} ms; P = n{p}; "
        f"(a)-(d) as in the summary below)",
        flush=True,
    )
    # Every join then starts alike: P has talked to n3 before it stops.
    warm = lab.exec(p, "ping", "-c", "1", "-W", "2", eid(HOME))
    if warm.returncode:
        raise BenchError(f"n{p} cannot ping n{HOME} before the joins: {warm.stdout}")
    print(f"\n### restarted (its state dir kept), {args.joins} joins", flush=True)
    joins = join_series(lab, p, args.joins, args.join_limit, args.poll, clear=True)
    summary(joins, p)
    if args.new_joins:
        print(
            f"\n### a new node: restarted with its state dir removed (a new key, "
            f"no saved registrations), {args.new_joins} joins",
            flush=True,
        )
        fresh = join_series(
            lab, p, args.new_joins, args.slow_limit, args.poll, clear=True, wipe=True
        )
        summary(fresh, p)
    if args.stale_joins:
        print(
            f"\n### restarted, n{p}'s map-cache left alone (its entry for n{HOME} "
            f"went negative at the stop), {args.stale_joins} join(s)",
            flush=True,
        )
        join_series(lab, p, args.stale_joins, args.slow_limit, args.poll, clear=False)


# ---------------------------------------------------------------- throughput
@dataclass(frozen=True)
class NetPath:
    key: str
    label: str
    src: int
    dst: int


@dataclass
class Tcp:
    mbits: float
    received: int
    stalled: bool
    relayed: int
    drops: int


@dataclass
class Udp:
    sent_pps: float
    mbits: float
    loss: float
    relayed: int
    drops: int


def tcp_run(lab: NatLab, p: NetPath, size: int, digest: str, idle: float) -> Tcp:
    clear_all(lab)
    before = counters(lab)
    server = lab.popen(
        p.dst,
        *(sys.executable, "-c", _TCP_RECEIVER, eid(p.dst), str(TCP_PORT), str(idle)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    client = None
    try:
        _ready(server, f"the TCP receiver in n{p.dst}")
        client = lab.popen(
            p.src,
            *(sys.executable, "-c", _TCP_SENDER, eid(p.src), eid(p.dst)),
            *(str(size), str(SEED), str(TCP_PORT), str(idle)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = server.communicate(timeout=max(600.0, size / 1e5))
        except subprocess.TimeoutExpired:
            raise BenchError(f"{p.label}: the TCP transfer did not end") from None
        if server.returncode:
            if client.poll() is None:
                client.kill()
            _, cerr = client.communicate(timeout=10)
            raise BenchError(
                f"{p.label}: TCP receiver: {err.decode().strip()}; sender: "
                f"{cerr.decode().strip()}"
            )
    finally:
        _kill(server)
        _kill(client)
    after = counters(lab)
    got_s, hexdigest, took_s, how = out.decode().split()
    got, took = int(got_s), float(took_s)
    stalled = how == "stalled" or got != size
    if not stalled and hexdigest != digest:
        raise BenchError(f"{p.label}: TCP sha256 {hexdigest}, not {digest}")
    return Tcp(
        got * 8 / took / 1e6 if took > 0 and not stalled else float("nan"),
        got,
        stalled,
        after["relay.forwarded"] - before["relay.forwarded"],
        after["drops"] - before["drops"],
    )


def udp_run(lab: NatLab, p: NetPath, args: argparse.Namespace) -> Udp:
    clear_all(lab)
    before = counters(lab)
    server = lab.popen(
        p.dst,
        *(sys.executable, "-c", _UDP_RECEIVER, eid(p.dst), str(UDP_PORT), "10"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _ready(server, f"the UDP receiver in n{p.dst}")
        sender = lab.exec(
            p.src,
            *(sys.executable, "-c", _UDP_SENDER, eid(p.src), eid(p.dst)),
            *(str(UDP_PORT), str(args.udp_size), str(args.udp_pps)),
            str(args.udp_seconds),
            timeout=args.udp_seconds + 60,
        )
        if sender.returncode:
            raise BenchError(f"{p.label}: UDP sender: {sender.stderr.strip()}")
        out, err = server.communicate(timeout=60)
        if server.returncode:
            raise BenchError(f"{p.label}: UDP receiver: {err.decode().strip()}")
    finally:
        _kill(server)
    after = counters(lab)
    sent_s, _errors, took_s = sender.stdout.split()
    _packets, unique_s, size_s = out.decode().split()
    sent, unique, took = int(sent_s), int(unique_s), float(took_s)
    return Udp(
        sent / took,
        int(size_s) * 8 / took / 1e6,
        100.0 * (sent - unique) / sent if sent else float("nan"),
        after["relay.forwarded"] - before["relay.forwarded"],
        after["drops"] - before["drops"],
    )


def _tcp_cell(t: Tcp) -> str:
    if t.stalled:
        return f"{f'stall@{t.received / 1e6:.0f}MB':>11}"
    return f"{t.mbits:11.1f}"


def run_throughput(lab: NatLab, args: argparse.Namespace, p: int) -> None:
    relays = {relay_of(lab, HOME), relay_of(lab, OTHER_HOME)}
    paths = [
        NetPath("direct", "(a) direct n1 -> n2", 1, 2),
        NetPath(
            "relayed",
            f"(b) relayed n{HOME} -> n{OTHER_HOME}",
            HOME,
            OTHER_HOME,
        ),
        NetPath("home", f"(c) home n{HOME} -> public n{p}", HOME, p),
    ]
    size = int(args.mb * 1_000_000)
    digest = hashlib.sha256(random.Random(SEED).randbytes(size)).hexdigest()
    offered = args.udp_pps * args.udp_size * 8 / 1e6
    print(
        f"\n## throughput: {args.rounds} rounds, the paths alternating; TCP "
        f"{args.mb:g} MB (sha256-checked, timed by the receiver); UDP "
        f"{args.udp_size} B payload at {args.udp_pps:,} pps offered "
        f"({offered:.0f} Mbit/s) for {args.udp_seconds:g} s; Mbit/s of payload",
        flush=True,
    )
    print(
        f"  relays: n{HOME} via {relay_of(lab, HOME)}, n{OTHER_HOME} via "
        f"{relay_of(lab, OTHER_HOME)} ({len(relays)} relay(s) on path (b)); "
        "`relay fwd`: packets the relays re-encapsulated during the run"
    )
    print(
        f"  {'round':>5}  {'path':<28}{'TCP Mbit/s':>11}{'relay fwd':>10}"
        f"{'xTR drops':>10}{'UDP sent pps':>13}{'UDP Mbit/s':>11}{'loss %':>8}"
        f"{'relay fwd':>10}{'xTR drops':>10}"
    )
    tcp: dict[str, list[Tcp]] = {q.key: [] for q in paths}
    udp: dict[str, list[Udp]] = {q.key: [] for q in paths}
    for r in range(1, args.rounds + 1):
        for q in paths:
            t = tcp_run(lab, q, size, digest, args.tcp_idle)
            u = udp_run(lab, q, args)
            tcp[q.key].append(t)
            udp[q.key].append(u)
            print(
                f"  {r:5d}  {q.label:<28}{_tcp_cell(t)}{t.relayed:10d}{t.drops:10d}"
                f"{u.sent_pps:13,.0f}{u.mbits:11.1f}{u.loss:8.2f}{u.relayed:10d}"
                f"{u.drops:10d}   (load {os.getloadavg()[0]:.2f})",
                flush=True,
            )
    med: dict[str, tuple[float, float, float, float]] = {}
    for q in paths:
        done = [t.mbits for t in tcp[q.key] if not t.stalled]
        med[q.key] = (
            median(done),
            median([u.mbits for u in udp[q.key]]),
            median([u.loss for u in udp[q.key]]),
            median([u.sent_pps for u in udp[q.key]]),
        )
    print(f"\n  median of {args.rounds} (TCP: of the transfers that finished)")
    print(
        f"  {'path':<28}{'TCP Mbit/s':>11}{'UDP Mbit/s':>11}{'loss %':>8}"
        f"{'sent pps':>10}{'TCP / direct':>14}{'UDP / direct':>14}{'stalled':>9}"
    )
    base_tcp, base_udp = med["direct"][0], med["direct"][1]
    for q in paths:
        t_m, u_m, loss, sent = med[q.key]
        stalls = sum(t.stalled for t in tcp[q.key])
        print(
            f"  {q.label:<28}{t_m:11.1f}{u_m:11.1f}{loss:8.2f}{sent:10,.0f}"
            f"{t_m / base_tcp:14.2f}{u_m / base_udp:14.2f}{stalls:9d}"
        )


# ---------------------------------------------------------------- stability
def run_stability(lab: NatLab, args: argparse.Namespace, p: int) -> None:
    every = 0.2
    count = max(1, round(args.steady_seconds / every))
    pairs = [
        ("direct", 1, 2),
        ("to a home (relayed)", p, HOME),
        ("home -> public", HOME, p),
        ("home -> home (relayed)", HOME, OTHER_HOME),
    ]
    print(
        f"\n## path stability: every map-cache cleared, then one ping every "
        f"{every:g} s for {args.steady_seconds:g} s on four paths side by side",
        flush=True,
    )
    clear_all(lab)
    before = counters(lab)
    procs = [
        lab.popen(
            src,
            *("ping", "-n", "-i", f"{every}", "-c", str(count), "-W", "1"),
            *("-I", eid(src), eid(dst)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _, src, dst in pairs
    ]
    try:
        outs = [proc.communicate(timeout=args.steady_seconds + 60)[0] for proc in procs]
    finally:
        for proc in procs:
            _kill(proc)
    after = counters(lab)
    print(
        f"  {'path':<24}{'ping':>10}{'answered':>10}{'first lost at':>15}"
        f"{'longest gap':>13}"
    )
    for (label, src, dst), out in zip(pairs, outs, strict=True):
        seqs = {int(m) for m in _SEQ.findall(out)}
        first_lost = next((s for s in range(1, count + 1) if s not in seqs), None)
        gap = longest = 0
        for s in range(1, count + 1):
            gap = 0 if s in seqs else gap + 1
            longest = max(longest, gap)
        lost_at = "-" if first_lost is None else f"{(first_lost - 1) * every:.1f} s"
        print(
            f"  {label:<24}{f'n{src} -> n{dst}':>10}{f'{len(seqs)}/{count}':>10}"
            f"{lost_at:>15}{f'{longest * every:.1f} s':>13}"
        )
    print(f"  xTR drops meanwhile: {after['drops'] - before['drops']}")


# ---------------------------------------------------------------- main
def command(args: argparse.Namespace, defaults: argparse.Namespace) -> list[str]:
    out = ["python", "benchmarks/bench_nat.py"]
    for name, value in vars(args).items():
        if value != getattr(defaults, name):
            shown = f"{value:g}" if isinstance(value, float) else f"{value}"
            out += [f"--{name.replace('_', '-')}", shown]
    return out


@contextlib.contextmanager
def lab_up(args: argparse.Namespace) -> Iterator[NatLab]:
    """The lab built, started and settled; its nodes' log tails printed if
    anything fails; torn down whatever happens (Ctrl-C and SIGTERM too)."""
    lab = build(args)
    try:
        lab.start_all()
        took = lab.wait_until(lambda: settled(lab), CONVERGE, "the lab to settle")
        print(
            f"lab {lab.prefix} on {lab.subnet}: every node routes every EID, "
            f"n3 and n4 relayed, {took:.1f} s after the first start",
            flush=True,
        )
        yield lab
    except Exception:
        for i in sorted(lab.nodes):
            print(f"--- {lab.prefix} n{i} log ---\n{lab.log_tail(i, 60)}")
        raise
    finally:
        lab.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--joins", type=int, default=10, help="home restarts timed")
    parser.add_argument(
        "--new-joins",
        type=int,
        default=3,
        help="more restarts with the home's state dir removed (0: none)",
    )
    parser.add_argument(
        "--stale-joins",
        type=int,
        default=1,
        help="more restarts with the pinger's map-cache left alone (0: none)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    parser.add_argument("--mb", type=float, default=100.0, help="TCP transfer, MB")
    parser.add_argument("--udp-seconds", type=float, default=3.0)
    parser.add_argument(
        "--udp-pps", type=int, default=150_000, help="offered rate (above capacity)"
    )
    parser.add_argument("--udp-size", type=int, default=1200, help="payload bytes")
    parser.add_argument("--steady-seconds", type=float, default=30.0)
    parser.add_argument("--poll", type=float, default=0.02, help="join poll, s")
    parser.add_argument("--join-limit", type=float, default=30.0)
    parser.add_argument(
        "--slow-limit",
        type=float,
        default=120.0,
        help="limit of a new node's or a stale join, s",
    )
    parser.add_argument(
        "--tcp-idle", type=float, default=15.0, help="a TCP transfer stalled after"
    )
    parser.add_argument(
        "--probe-interval",
        type=float,
        help="[dataplane] probe_interval of every node (default: the node's; 0: off)",
    )
    parser.add_argument("--prefix", default=PREFIX, help="lab namespace prefix")
    parser.add_argument("--subnet", default=SUBNET, help="lab bridge subnet")
    args = parser.parse_args(argv)
    defaults = parser.parse_args([])
    if args.joins < 1 or args.rounds < 1 or args.mb <= 0 or args.udp_seconds <= 0:
        parser.error("--joins, --rounds, --mb and --udp-seconds must be positive")
    if not 8 <= args.udp_size <= 1400:
        parser.error("--udp-size: 8 to 1400 bytes (the TUN's MTU is 1440)")
    reason = netns_unavailable()
    if reason:
        print(f"bench_nat: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_term)
    # Ctrl-C ends it through the lab's teardown even when started with
    # SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    began = time.monotonic()
    probing = (
        "node default"
        if args.probe_interval is None
        else f"{args.probe_interval:g} s"
        if args.probe_interval
        else "off"
    )
    print(
        f"# NatLab: publics n1 n2 (relay = true), homes n3 n4 behind MASQUERADE "
        f"(conntrack UDP timeout {UDP_TIMEOUT} s); nat_keepalive {KEEPALIVE} s, "
        f"encrypt off, RLOC probing {probing}, IPv4 underlay; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    try:
        with lab_up(args) as lab:
            relay = relay_of(lab, HOME)
            p = next(i for i in lab.publics if str(lab.address(i)) != relay)
            run_joins(lab, args, p)
            p = next(
                i for i in lab.publics if str(lab.address(i)) != relay_of(lab, HOME)
            )
            run_throughput(lab, args, p)
            run_stability(lab, args, p)
    except (BenchError, LabError, TimeoutError) as exc:
        print(f"bench_nat: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench_nat: interrupted; the lab is torn down", file=sys.stderr)
        return 130
    print(f"\nran {(time.monotonic() - began) / 60:.1f} min; reproduce with:")
    again = shlex.join(command(args, defaults))
    print(f"  cd {shlex.quote(str(ROOT))} && PYTHONPATH=. {again}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
