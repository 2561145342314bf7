"""Abuse figures before and after the hardening, measured in one run.

1. The reflection factor (Map-Reply bytes out per Map-Request byte in) of
   the worst request a key holder can construct, from a sans-I/O Node
   (decent_node_config + Node, everything fed by receive_datagram and read
   from datagrams_to_send).
2. The RSS of a real `decent run` (127.0.77.1, loopback only) before and
   after one registrant sends 100k EIDs in a burst, with the default quota.

Both are measured for this checkout and for the commit before the
hardening (`--old`, default aa0269c), checked out with `git worktree add`
into a temporary directory removed at the end. Each measurement runs in a
process whose sys.path starts with the tree measured, and uses only what
every version has: decent_node_config, Node, receive_datagram,
datagrams_to_send; `decent run` with a config file, and /api/node.

Run: `python benchmarks/bench_abuse.py [--old REV] [--only reflection|rss]`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Final

from decent.wire import (
    Eid,
    EncapsulatedControlMessage,
    Locator,
    MapRecord,
    MapRegister,
    MapRequest,
    RequestRecord,
    Rle,
    RleEntry,
)

REPO: Final = Path(__file__).resolve().parents[1]
OLD: Final = "aa0269c"
KEY: Final = b"bench-abuse-key"
GROUP: Final = IPv4Address("233.252.1.1")
#: Sans-I/O addresses (nothing is sent anywhere in part 1).
N1: Final = IPv4Address("198.18.50.1")
MEMBERS: Final = (IPv4Address("198.18.50.2"), IPv4Address("198.18.50.3"))
ATTACKER: Final = IPv4Address("198.18.50.66")
VICTIMS: Final = IPv4Address("198.18.60.0")  # non-members, one per request
EVIL_XTR: Final = 0xE5E5_0000_0000_0000_0000_0000_0000_0001
BULK_XTR: Final = 0xE5E5_0000_0000_0000_0000_0000_0000_0002
#: The largest UDP payload one IPv4 datagram carries: a bigger Map-Reply
#: cannot leave (sendto fails with EMSGSIZE), however a node builds it.
UDP_MAX: Final = 65_507
MAX_RECORDS: Final = 255
#: The default registrant quota of the hardened node; the attacker's
#: registrations of part 1 stay within it, so both trees hold all of them.
QUOTA: Final = 4096
#: Part 2: the node and the registrant, on loopback.
NODE_ADDR: Final = "127.0.77.1"
SENDER_ADDR: Final = "127.0.77.2"
BURST: Final = 100_000
_HTTP: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------- messages
def register(
    records: Sequence[MapRecord], nonce: int, xtr_id: int, *, merge: bool = False
) -> bytes:
    """A Map-Register signed with the group key (P and T set), as a member
    sends one."""
    msg = MapRegister(
        nonce,
        tuple(records),
        proxy_reply=True,
        ttl_timeout=True,
        merge=merge,
        xtr_id=xtr_id,
    )
    return msg.signed(KEY).encode()


def record(prefix: str, rloc: IPv4Address, ttl: int = 3) -> MapRecord:
    addr, mask = Eid.prefix(prefix).to_wire()
    return MapRecord(addr, mask, (Locator(rloc),), ttl, authoritative=True)


def hosts(first: str, count: int, rloc: IPv4Address) -> list[MapRecord]:
    base = IPv4Address(first)
    return [
        MapRecord(base + k, 32, (Locator(rloc),), 3, authoritative=True)
        for k in range(count)
    ]


def membership(member: IPv4Address) -> MapRecord:
    """A member's join: (0.0.0.0/0, G) with an RLE of its own RLOC."""
    addr, mask = Eid.sg("0.0.0.0/0", f"{GROUP}/32").to_wire()
    rle = Rle((RleEntry(member, 128),))
    locator = Locator(rle, 255, 0, 1, 100, local=True, reachable=True)
    return MapRecord(addr, mask, (locator,), 3, authoritative=True)


def request(prefixes: Sequence[str], itr: IPv4Address, nonce: int) -> bytes:
    recs = []
    for p in prefixes:
        addr, mask = Eid.prefix(p).to_wire()
        recs.append(RequestRecord(addr, mask))
    return MapRequest(nonce, tuple(recs), (itr,)).encode()


def attacker_records() -> list[MapRecord]:
    """What the attacker registers: covering prefixes with as many
    more-specifics under them as today's quota (4096) allows, shaped for
    the largest answers: /24 (255 below it), /21 (2047), /20 (4041), and a
    /26 with 51 below it, whose whole answer just fits a 1500-byte MTU."""
    recs = [
        record("10.0.0.0/20", ATTACKER),
        record("10.0.0.0/21", ATTACKER),
        record("10.0.0.0/24", ATTACKER),
        record("10.1.0.0/26", ATTACKER),
    ]
    recs += hosts("10.1.0.1", 51, ATTACKER)
    recs += hosts("10.0.0.1", QUOTA - len(recs), ATTACKER)
    assert len(recs) == QUOTA
    return recs


# ---------------------------------------------------------------- 1. child
@dataclass(frozen=True)
class Candidate:
    name: str
    member: bool
    build: Callable[[IPv4Address, int], bytes]
    #: The request arrives on the control port from this address (a spoofed
    #: source for the Map-Register candidate, else the attacker).
    spoofs_source: bool = False


def candidates() -> list[Candidate]:
    def plain(*prefixes: str) -> Callable[[IPv4Address, int], bytes]:
        return lambda itr, nonce: request(prefixes, itr, nonce)

    def ecm(prefix: str) -> Callable[[IPv4Address, int], bytes]:
        def build(itr: IPv4Address, nonce: int) -> bytes:
            inner = MapRequest(
                nonce, (RequestRecord(*Eid.prefix(prefix).to_wire()),), (itr,)
            )
            return EncapsulatedControlMessage(inner, itr, N1, 4342, 4342).encode()

        return build

    def notify_me(itr: IPv4Address, nonce: int) -> bytes:
        # A Map-Register asking for a Map-Notify, from the victim's address.
        msg = MapRegister(
            nonce,
            tuple(hosts("10.2.0.1", 1, ATTACKER)),
            proxy_reply=True,
            ttl_timeout=True,
            want_map_notify=True,
            xtr_id=EVIL_XTR + 7,
        )
        return msg.signed(KEY).encode()

    out = []
    for member in (False, True):
        out += [
            Candidate("host /32 (a normal lookup)", member, plain("10.0.0.1/32")),
            Candidate("/26 (51 below it)", member, plain("10.1.0.0/26")),
            Candidate("/24 (255 below it)", member, plain("10.0.0.0/24")),
            Candidate("/21 (2047 below it)", member, plain("10.0.0.0/21")),
            Candidate("/20 (4041 below it)", member, plain("10.0.0.0/20")),
            Candidate("ECM /21", member, ecm("10.0.0.0/21")),
            Candidate(
                "two records: /21 and /24", member, plain("10.0.0.0/21", "10.0.0.0/24")
            ),
            Candidate("Map-Register wanting a Map-Notify", member, notify_me, True),
        ]
    return out


def reflection_child() -> int:
    """Measure every candidate on a Node of the tree first on sys.path;
    print one JSON object."""
    import decent
    from decent.peer.mapping.push_config import decent_node_config
    from decent.peer.node import Node

    counter = itertools.count(1)
    config = decent_node_config(name="n1", rlocs=(N1,), group=GROUP, key=KEY, xtr_id=1)
    node = Node(config, nonce=lambda: next(counter), now=0.0)
    now = 0.0
    node.handle_timer(now)
    node.datagrams_to_send()
    for k, member in enumerate(MEMBERS, start=2):
        node.receive_datagram(
            register([membership(member)], 1, k, merge=True), (member, 4342), now
        )
    nonces = itertools.count(1)
    for start in range(0, QUOTA, MAX_RECORDS):
        now += 0.01
        batch = attacker_records()[start : start + MAX_RECORDS]
        node.receive_datagram(
            register(batch, next(nonces), EVIL_XTR), (ATTACKER, 4342), now
        )
    node.datagrams_to_send()
    results = []
    for n, cand in enumerate(candidates()):
        now += 1.0
        victim = MEMBERS[n % 2] if cand.member else VICTIMS + n
        data = cand.build(victim, 1000 + n)
        src = victim if cand.spoofs_source else ATTACKER
        node.receive_datagram(data, (src, 4342 if cand.spoofs_source else 40000), now)
        out = [d for d, _ in node.datagrams_to_send()]
        results.append(
            {
                "name": cand.name,
                "member": cand.member,
                "in": len(data),
                "out": sum(map(len, out)),
                "datagrams": len(out),
                "largest": max(map(len, out), default=0),
            }
        )
    print(json.dumps({"decent": decent.__file__, "results": results}))
    return 0


# ---------------------------------------------------------------- trees
@contextlib.contextmanager
def old_tree(rev: str) -> Iterator[Path]:
    """The commit `rev` checked out in a temporary worktree."""
    with tempfile.TemporaryDirectory(prefix="decent-bench-abuse-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev],
            check=True,
            capture_output=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                check=False,
                capture_output=True,
            )


def tree_env(tree: Path) -> dict[str, str]:
    # PYTHONPATH precedes the editable install's .pth entry on sys.path.
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1"}


def describe(tree: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(tree), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or "?"


def run_reflection(tree: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--reflection-child"],
        cwd=tree,
        env=tree_env(tree),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"reflection child in {tree} failed:\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["decent"].startswith(str(tree)):
        raise RuntimeError(f"measured {result['decent']}, not the tree {tree}")
    return result


def factor(r: dict[str, Any]) -> float:
    return float(r["out"]) / float(r["in"])


def sendable(r: dict[str, Any]) -> bool:
    return bool(r["largest"] <= UDP_MAX)


def print_reflection(labels: list[str], runs: list[dict[str, Any]]) -> None:
    print(
        "\n== 1. Reflection: Map-Reply bytes out per request byte in (UDP payloads)\n"
        "A sans-I/O Node (decent_node_config, default limits) holds two more\n"
        "members and one attacker's registrations, within today's default quota\n"
        "of 4096: 10.0.0.0/20, /21, /24 with 4041 /32s below them, and 10.1.0.0/26\n"
        "with 51. Each request below names a fresh victim as ITR-RLOC (a\n"
        "non-member, or one of the members) and goes in through receive_datagram;\n"
        "'out' is every byte the node then queued. A reply over 65,507 bytes\n"
        "cannot be sent as one UDP datagram (marked 'unsendable'); the worst is\n"
        "the highest factor among sendable answers."
    )
    width = 46
    head = f"{'request':<{width}}{'in':>5}"
    for label in labels:
        head += f" | {label[:30]:>30}"
    print(head)
    rows = runs[0]["results"]
    for k, row in enumerate(rows):
        who = "member" if row["member"] else "non-member"
        line = f"{row['name'] + ' -> ' + who:<{width}}{row['in']:>5}"
        for run in runs:
            r = run["results"][k]
            mark = "" if sendable(r) else " unsendable"
            cell = f"{r['out']:>7,} B {factor(r):>7.1f}x{mark}"
            line += f" | {cell:>30}"
        print(line)
    for label, run in zip(labels, runs, strict=True):
        for member in (False, True):
            ok = [r for r in run["results"] if r["member"] is member and sendable(r)]
            worst = max(ok, key=factor)
            who = "a member" if member else "a non-member"
            print(
                f"   {label}: worst to {who}: {worst['name']}, {worst['in']} B in, "
                f"{worst['out']:,} B out, factor {factor(worst):.1f}"
            )


# ---------------------------------------------------------------- 2. RSS
def status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def api(port: int, path: str) -> Any:
    with _HTTP.open(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return json.loads(resp.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, poll: float = 0.05
) -> float:
    start = time.monotonic()
    while True:
        with contextlib.suppress(OSError, ValueError):
            if check():
                return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(poll)


def node_toml(tmp: Path, web: int) -> Path:
    path = tmp / "node.toml"
    path.write_text(
        f"""[node]
name = "bench"
rloc = "{NODE_ADDR}"
state_dir = "{tmp / "state"}"
log_level = "warning"

[decent]
group = "{GROUP}"
key = "{KEY.decode()}"

[[database]]
eid = "1.1.1.1/32"

[web]
listen = "127.0.0.1:{web}"
"""
    )
    return path


def burst(port: int, count: int) -> tuple[int, float]:
    """Send `count` /32s from one registrant (one xTR-ID, one address) in
    255-record Map-Registers, as fast as the node's socket takes them: a
    window of 16 at a time, then until the node has read them (or stopped
    reading). Returns (Map-Registers sent, seconds)."""
    records = hosts("10.64.0.0", count, IPv4Address(SENDER_ADDR))
    datagrams = [
        register(records[k : k + MAX_RECORDS], n, BULK_XTR)
        for n, k in enumerate(range(0, count, MAX_RECORDS), start=1)
    ]
    base = api(port, "/api/node")["counters"].get("rx.map-register", 0)
    start = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((SENDER_ADDR, 0))
        for k in range(0, len(datagrams), 16):
            for data in datagrams[k : k + 16]:
                s.sendto(data, (NODE_ADDR, 4342))
            target = base + min(k + 16, len(datagrams))
            wait_for(
                read_up_to(port, target), 120.0, "the node to read the burst", 0.02
            )
    return len(datagrams), time.monotonic() - start


def read_up_to(port: int, target: int) -> Callable[[], bool]:
    """True once the node counted `target` Map-Registers, or its count has
    stood still for a second (a datagram lost on the way)."""
    last: list[tuple[float, int]] = []

    def check() -> bool:
        got = api(port, "/api/node")["counters"].get("rx.map-register", 0)
        now = time.monotonic()
        if got >= target:
            return True
        if not last or last[-1][1] != got:
            last.append((now, got))
            return False
        return now - last[-1][0] > 1.0

    return check


def run_rss(tree: Path, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="decent-bench-rss-") as tmp_name:
        tmp = Path(tmp_name)
        web = free_port()
        log = tmp / "node.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "decent",
                    "run",
                    "--config",
                    str(node_toml(tmp, web)),
                ],
                cwd=tree,
                env=tree_env(tree),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for(
                lambda: proc.poll() is None and bool(api(web, "/healthz").get("ok")),
                60.0,
                "the node to come up",
            )
            if proc.poll() is not None:
                raise RuntimeError(log.read_text())
            node = api(web, "/api/node")
            regs_before = node["counts"]["registrations"]
            read_before = node["counters"].get("rx.map-register", 0)
            before = status(proc.pid)
            sent, took = burst(web, count)
            # Everything read has been handled when the answer comes: the
            # node handles each datagram before it serves the next request.
            node = api(web, "/api/node")
            after = status(proc.pid)
            counters = node["counters"]
            return {
                "sent": sent,
                "seconds": took,
                # The node's own registrations of the period are in it too.
                "received": counters.get("rx.map-register", 0) - read_before,
                "accepted": node["counts"]["registrations"] - regs_before,
                "refused": {
                    k.removeprefix("reject."): v
                    for k, v in counters.items()
                    if k.startswith("reject.")
                },
                "rss_before": before["VmRSS"],
                "rss_after": after["VmRSS"],
                "rss_peak": after["VmHWM"],
                "answers": lookup_ms(web),
            }
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def lookup_ms(port: int) -> float:
    """How long the node takes to answer its JSON API right after."""
    start = time.perf_counter()
    api(port, "/api/lookup?eid=1.1.1.1")
    return (time.perf_counter() - start) * 1000


def print_rss(labels: list[str], runs: list[dict[str, Any]], count: int) -> None:
    print(
        f"\n== 2. RSS of `decent run` (loopback {NODE_ADDR}) under a {count:,}-EID "
        "burst\nfrom one registrant (one xTR-ID, one address, the group key), in\n"
        "255-record Map-Registers sent as fast as the node reads them; default\n"
        "config (so the hardened node's default quota, 4096, and rate). RSS from\n"
        "/proc (VmRSS; peak = VmHWM); accepted = registrations held afterwards."
    )
    for label, r in zip(labels, runs, strict=True):
        refused = ", ".join(f"{k} {v:,}" for k, v in sorted(r["refused"].items()))
        print(
            f"   {label}: RSS {r['rss_before']:.1f} MB -> {r['rss_after']:.1f} MB "
            f"(peak {r['rss_peak']:.1f} MB); accepted {r['accepted']:,} EIDs; "
            f"{r['sent']} Map-Registers in {r['seconds']:.1f} s "
            f"({r['received']} read); refused: {refused or 'none'}; "
            f"API answered in {r['answers']:.0f} ms after"
        )


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", default=OLD, help=f"the commit before (default {OLD})")
    parser.add_argument("--only", choices=("reflection", "rss"))
    parser.add_argument("--eids", type=int, default=BURST, help="burst size (100000)")
    parser.add_argument(
        "--reflection-child", action="store_true", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.reflection_child:
        return reflection_child()
    with old_tree(args.old) as old:
        trees = [(f"{args.old} (before)", old), (f"{describe(REPO)} (this tree)", REPO)]
        labels = [label for label, _ in trees]
        if args.only in (None, "reflection"):
            print_reflection(labels, [run_reflection(tree) for _, tree in trees])
        if args.only in (None, "rss"):
            print_rss(
                labels, [run_rss(tree, args.eids) for _, tree in trees], args.eids
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
