"""Three (and four) real `decent run` nodes in network namespaces, over real UDP."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from decent.lab import (
    CONTROL_PORT,
    DATA_PORT,
    GROUP,
    GROUP_EID,
    Datagram,
    LoopbackLab,
    NetnsLab,
    NodeView,
    netns_unavailable,
    read_pcap,
)
from decent.peer.display import time_value
from decent.wire import (
    DecodeError,
    EncapsulatedControlMessage,
    decapsulate,
    decode,
    decode_udp_packet,
)
from tests.e2e.conftest import PREFIX, suite_namespaces
from tests.wire.tshark import (
    MAP_NOTIFY_ACK_BODY,
    MAP_NOTIFY_ACK_TYPE,
    dissect,
    missing_tools,
    problems,
    unexplained,
)

pytestmark = pytest.mark.e2e
MakeLab = Callable[..., NetnsLab]
AnyLab = NetnsLab | LoopbackLab
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

#: Time for three fresh nodes to agree (a run converges in about 2-3 s).
CONVERGE = 20.0
#: How fast a graceful leave must be seen by every peer.
AT_ONCE = 2.0


def three_node_view(lab: AnyLab, among: tuple[int, ...] = (1, 2, 3)) -> NodeView:
    """What each node must hold, spelled out rather than derived."""
    rlocs = frozenset(str(lab.node(i).rloc) for i in among)
    names = frozenset(f"n{i}" for i in among)
    return NodeView(
        eids=frozenset(f"192.0.2.{i}/32" for i in among),
        names=names,
        members=rlocs,
        peer_rlocs=rlocs,
        peer_names=names,
    )


def assert_views(lab: AnyLab, among: tuple[int, ...]) -> None:
    want = three_node_view(lab, among)
    assert want == lab.expected_view(list(among))
    for i in among:
        assert lab.view(i) == want, f"n{i}"


def agree(lab: AnyLab, among: tuple[int, ...]) -> Callable[[], bool]:
    want = three_node_view(lab, among)
    return lambda: all(lab.view(i) == want for i in among)


def group_rle(lab: AnyLab, i: int) -> list[str]:
    """The merged (0.0.0.0/0, 233.252.1.1/32) RLE on node i, from /api/sites."""
    for site in lab.api(i, "/api/sites"):
        if site["eid"] == GROUP_EID:
            return sorted(e["address"] for loc in site["rlocs"] for e in loc["rle"])
    return []


def send_multicast(lab: NetnsLab, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, lab.host_address.packed)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        for _ in range(count):
            s.sendto(b"probe", (GROUP, 9))


# ---------------------------------------------------------------- convergence
def test_replicate_mode_converges_with_underlay_multicast_blocked(
    make_lab: MakeLab, tmp_path: Path
) -> None:
    lab = make_lab(mode="replicate", block_multicast=True)
    # The filter really drops multicast on the way to every node.
    before = lab.dropped()
    send_multicast(lab, 5)
    after = lab.dropped()
    assert all(after[i] - before[i] >= 5 for i in lab.nodes), (before, after)

    with lab.capture(tmp_path / "replicate.pcap") as pcap:
        lab.start_all()
        lab.wait_converged(CONVERGE)
    assert_views(lab, (1, 2, 3))
    for i in (1, 2, 3):
        assert group_rle(lab, i) == sorted(str(lab.node(j).rloc) for j in (1, 2, 3))
    wire = read_pcap(pcap)
    assert not [d for d in wire if d.dst.is_multicast], "replicate mode multicast"
    assert [d for d in wire if d.dport == DATA_PORT], "no head-end replication seen"


def test_multicast_mode_converges(make_lab: MakeLab, tmp_path: Path) -> None:
    lab = make_lab(mode="multicast", register_interval=10.0)
    members = {str(lab.node(i).rloc) for i in (1, 2, 3)}

    def to_group() -> set[str]:
        return {str(d.src) for d in read_pcap(pcap) if d.dst == IPv4Address(GROUP)}

    with lab.capture(tmp_path / "multicast.pcap") as pcap:
        lab.start_all()
        lab.wait_converged(CONVERGE)
        # Seeds may converge the views before a node's first send to the
        # group; within one period every member must have sent one.
        lab.wait_until(lambda: to_group() == members, 25.0, "registers to G")
    assert_views(lab, (1, 2, 3))
    wire = read_pcap(pcap)
    assert to_group() == members
    assert not [d for d in wire if DATA_PORT in (d.sport, d.dport)], "HER in multicast"


def test_fourth_node_joins_with_one_seed(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.start_all()
    lab.wait_converged(CONVERGE)
    four = lab.add_node(seed=2)
    assert four == 4
    assert lab.node(4).seeds == [lab.node(2).rloc]
    lab.wait_until(agree(lab, (1, 2, 3, 4)), CONVERGE, "n4 to be known everywhere")
    assert_views(lab, (1, 2, 3, 4))


# ---------------------------------------------------------------- leaving
def test_graceful_stop_is_dropped_by_peers_at_once(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.start_all()
    lab.wait_converged(CONVERGE)
    assert lab.stop(2) == 0
    lab.wait_until(agree(lab, (1, 3)), AT_ONCE, "n2's graceful leave to be seen")
    assert_views(lab, (1, 3))


def _remaining_lifetimes(lab: NetnsLab, i: int, gone: int) -> list[float]:
    """Seconds left, on node i, for each registration node `gone` made."""
    rloc = str(lab.node(gone).rloc)
    ttls = []
    for site in lab.api(i, "/api/sites"):
        for child in site["registrations"]:
            if child["registrant"] == rloc:
                ttls.append(float(child["ttl_s"]))
    return ttls


def test_killed_node_ages_out_after_the_ttl(make_lab: MakeLab) -> None:
    # ttl 1 minute; the survivors refresh every 20 s, well inside it.
    lab = make_lab(ttl_minutes=1, register_interval=20.0)
    lab.start_all()
    lab.wait_converged(CONVERGE)
    lab.kill(2)
    read_at = time.monotonic()
    ttls = _remaining_lifetimes(lab, 1, 2) + _remaining_lifetimes(lab, 3, 2)
    # n2's name, EID and membership child, on both survivors.
    assert len(ttls) == 6, ttls
    assert 0 < min(ttls) <= max(ttls) <= 60.5
    # No one noticed the crash: shortly before the TTL, n2 is still there.
    time.sleep(max(0.0, read_at + min(ttls) - 3.0 - time.monotonic()))
    for i in (1, 3):
        view = lab.view(i)
        assert "192.0.2.2/32" in view.eids, f"n{i}"
        assert "n2" in view.names, f"n{i}"
        assert str(lab.node(2).rloc) in view.members, f"n{i}"
    # ... and soon after the TTL it is gone everywhere.
    budget = read_at + max(ttls) + 5.0 - time.monotonic()
    lab.wait_until(agree(lab, (1, 3)), budget, "n2 to age out")
    assert time.monotonic() >= read_at + min(ttls) - 1.0
    assert_views(lab, (1, 3))


# ---------------------------------------------------------------- restart
def test_restarted_node_serves_lookups_from_its_snapshot(make_lab: MakeLab) -> None:
    lab = make_lab()
    lab.start_all()
    lab.wait_converged(CONVERGE)
    # decent run saves its snapshot every SAVE_INTERVAL (5 s) when it changed.
    time.sleep(6.0)
    lab.kill(2)
    # No refresh can bring the others' EIDs back to n2 soon: its own period is
    # an hour, and n1's and n3's next periodic registration is ~50 s away.
    lab.configure(2, register_interval=3600.0)
    lab.start(2)
    started = time.monotonic()
    sites = None
    while sites is None and time.monotonic() - started < 10.0:
        try:
            sites = lab.api(2, "/api/sites", timeout=0.5)
        except OSError:
            time.sleep(0.01)
    answered = time.monotonic() - started
    assert sites is not None, "n2 did not come back"
    held = {s["eid"]: s for s in sites}
    for eid in ("[0]192.0.2.1/32", "[0]192.0.2.3/32", "[0]'n1'", "[0]'n3'"):
        assert eid in held, f"{eid} missing {answered:.2f} s after the restart"
        # Restored, not freshly registered: the last registration is old.
        last = time_value(held[eid]["last_registered_at"])
        assert last is not None, held[eid]
        assert time.time() - last > 1.0, held[eid]
    assert group_rle(lab, 2) == sorted(str(lab.node(i).rloc) for i in (1, 2, 3))
    # And the Map-Resolver answers from it over the wire.
    reply = lab.lookup_over_udp(2, "192.0.2.1")
    (record,) = reply.records
    assert [loc.address for loc in record.locators] == [lab.node(1).rloc]


# ---------------------------------------------------------------- impairment
def test_converges_with_twenty_percent_loss(make_lab: MakeLab) -> None:
    # Registrations to the group ask for no Map-Notify, so nothing retransmits
    # a lost copy: the next periodic registration repairs it. A 10 s period
    # keeps the wait short (with the default 60 s it takes about a minute).
    lab = make_lab(register_interval=10.0)
    lab.set_loss(20)
    lab.start_all()
    took = lab.wait_converged(90.0)
    assert_views(lab, (1, 2, 3))
    assert sum(lab.dropped().values()) > 0, "the loss filter dropped nothing"
    print(f"converged in {took:.1f} s with 20 % loss; dropped {lab.dropped()}")


# ---------------------------------------------------------------- the wire
# Map-Register a (merge, 0x400) and T (ttl-timeout, 0x800) bits: tshark 4.0
# knows neither and shows them as reserved bits 0x2/0x4 (tests/wire/test_tshark).
_REGISTER_BITS = (
    r"reserved field lisp\.mreg\.res = 0x00000[246] "
    r"\(\.\.\.\. \.\.\.\. 0000 0000 0000 [01][01]0\. = Reserved bits: 0x000[246]\)"
)
_KNOWN = "tshark 4.0 limitation listed in tests/wire/test_tshark.py"


def _kind(d: Datagram) -> str:
    """'map-register', 'her map-register', 'ecm map-request', ... or 'other'."""
    try:
        if DATA_PORT in (d.sport, d.dport):
            _header, inner = decapsulate(d.payload)
            return "her " + _kind_of(decode(decode_udp_packet(inner).payload))
        return _kind_of(decode(d.payload))
    except DecodeError:
        return "undecodable"


def _kind_of(msg: object) -> str:
    if isinstance(msg, EncapsulatedControlMessage):
        return "ecm " + _kind_of(msg.message)
    return re.sub(r"(?<!^)([A-Z])", r"-\1", type(msg).__name__).lower()


def _allowances(kind: str) -> dict[str, str]:
    allow = {_REGISTER_BITS: _KNOWN}
    if kind.endswith("map-notify-ack"):
        allow[MAP_NOTIFY_ACK_TYPE] = _KNOWN
        allow[MAP_NOTIFY_ACK_BODY] = _KNOWN
    return allow


def _tshark_malformed(pcap: Path) -> tuple[int, list[str]]:
    """Run the real capture through tshark: (LISP frames, malformed reports)."""
    with tempfile.TemporaryDirectory() as conf:
        out = subprocess.run(
            ["tshark", "-n", "-r", str(pcap), "-T", "pdml"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "WIRESHARK_CONFIG_DIR": conf},
        ).stdout
    lisp = 0
    bad: list[str] = []
    for n, packet in enumerate(ET.fromstring(out).iter("packet"), 1):
        names = [p.get("name") for p in packet.iter("proto")]
        lisp += any(name in ("lisp", "lisp-data") for name in names)
        if "_ws.malformed" in names or "_ws.short" in names:
            bad.append(f"frame {n}: {names}")
    return lisp, bad


@pytest.mark.skipif(bool(missing_tools()), reason="tshark/text2pcap not installed")
@pytest.mark.parametrize("mode", ["replicate", "multicast"])
def test_lab_traffic_dissects_cleanly(
    make_lab: MakeLab, tmp_path: Path, mode: str
) -> None:
    lab = make_lab(mode=mode)
    with lab.capture(tmp_path / f"{mode}.pcap") as pcap:
        lab.start_all()
        lab.wait_converged(CONVERGE)
        found = lab.lookup_over_udp(1, "192.0.2.2")
        missing = lab.lookup_over_udp(1, "10.9.9.9")
        lab.stop(3)  # the TTL-0 deregistrations too
        lab.wait_until(agree(lab, (1, 2)), AT_ONCE, "n3's leave")
    assert [loc.address for loc in found.records[0].locators] == [lab.node(2).rloc]
    assert not missing.records[0].locators  # a negative Map-Reply

    lisp = [d for d in read_pcap(pcap) if {d.sport, d.dport} & {4341, 4342}]
    kinds = Counter(_kind(d) for d in lisp)
    expected = {"map-notify", "map-notify-ack", "ecm map-request", "map-reply"}
    expected.add("her map-register" if mode == "replicate" else "map-register")
    assert expected <= set(kinds), kinds
    assert "undecodable" not in kinds, kinds

    # Our dissection harness: every payload, with its exact findings.
    unique: dict[tuple[bytes, int], str] = {}
    for d in lisp:
        port = DATA_PORT if DATA_PORT in (d.sport, d.dport) else CONTROL_PORT
        unique.setdefault((d.payload, port), _kind(d))
    datagrams = list(unique)
    report = []
    for dissection, key in zip(dissect(datagrams), datagrams, strict=True):
        kind = unique[key]
        bad = unexplained(problems(dissection), _allowances(kind))
        if bad:
            report.append(f"{kind} {key[0][:24].hex()}...: {bad}")
    assert report == [], "\n".join(report)

    # And tshark on the capture itself (real headers, real ports).
    decoded, malformed = _tshark_malformed(pcap)
    assert malformed == []
    assert decoded == len(lisp), (decoded, len(lisp), kinds)


# ---------------------------------------------------------------- no root
def test_loopback_lab_converges_and_leaves(tmp_path: Path) -> None:
    """The fallback for non-root users: 127.0.0.1<i>, web on 127.0.0.1:808<i>."""
    with LoopbackLab(workdir=tmp_path / "lab") as lab:
        lab.start_all()
        lab.wait_converged(CONVERGE)
        assert_views(lab, (1, 2, 3))
        assert lab.node(2).url == "http://127.0.0.1:8082"
        assert lab.stop(2) == 0
        lab.wait_until(agree(lab, (1, 3)), AT_ONCE, "n2's graceful leave")
    assert not [n for n in lab.nodes.values() if n.running]


# ---------------------------------------------------------------- decent lab
def _read_until(
    proc: subprocess.Popen[str], lines: queue.Queue[str | None], marker: str
) -> list[str]:
    """stdout lines of `decent lab` up to the one containing marker."""
    got: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            raise AssertionError(f"decent lab ended ({proc.poll()}): {got}")
        got.append(line)
        if marker in line:
            return got
    raise AssertionError(f"no {marker!r} from decent lab: {got}")


@pytest.mark.skipif(netns_unavailable() is not None, reason="needs a namespace lab")
def test_decent_lab_shows_three_pages_and_ctrl_c_removes_it_all() -> None:
    prefix = f"{PREFIX}cli"
    subnet = f"{os.environ.get('DECENT_E2E_NET', '198.18')}.99.0/24"
    argv = ["lab", "--prefix", prefix, "--subnet", subnet, "--ttl", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "decent", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    workdir: Path | None = None
    made = [f"{prefix}-br", f"{prefix}-n1", f"{prefix}-n2", f"{prefix}-n3"]
    try:
        shown = _read_until(proc, lines, "Ctrl-C stops every node")
        assert any("converged in" in line for line in shown), shown
        urls = [m[1] for line in shown if (m := re.search(r"(http://\S+)/ ", line))]
        net = subnet.rsplit(".", 1)[0]
        assert urls == [f"http://{net}.1{i}:8080" for i in (1, 2, 3)], shown
        workdir = Path(re.findall(r" log (\S+)/n1/", "\n".join(shown))[0])
        assert workdir.is_dir()
        for url in urls:
            with _HTTP.open(url + "/", timeout=5) as page:
                assert page.status == 200
                assert b"<html" in page.read().lower()
        assert _namespaces(prefix) == made
        # Ctrl-C: SIGINT reaches `decent lab` (its nodes run in sessions of
        # their own, out of the terminal's reach); it stops them and removes
        # everything it made.
        proc.send_signal(signal.SIGINT)
        rest = _read_until(proc, lines, "lab removed")
        assert proc.wait(30) == 0, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
        left = _namespaces(prefix)
        if proc.returncode or left:  # failed: leave nothing for the next run
            for ns in left:
                for pid in _ip("netns", "pids", ns).split():
                    os.kill(int(pid), signal.SIGKILL)
                _ip("netns", "del", ns)
            _ip("link", "del", f"{prefix}-h")
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
    assert left == []
    links = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    assert f" {prefix}-h" not in links
    assert workdir is not None
    assert not workdir.exists()
    # No `decent run` of that lab is left running anywhere.
    assert not [
        pid
        for pid in os.listdir("/proc")
        if pid.isdigit() and str(workdir).encode() in _cmdline(pid)
    ]


def _ip(*args: str) -> str:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, check=False
    ).stdout


def _namespaces(prefix: str) -> list[str]:
    names = [line.split()[0] for line in _ip("netns", "list").splitlines() if line]
    return sorted(n for n in names if n.startswith(f"{prefix}-"))


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# ---------------------------------------------------------------- cleanup
def test_no_lab_namespace_remains() -> None:
    """Runs last (file order): every lab of this module was destroyed."""
    left = suite_namespaces()
    assert left == [], f"{PREFIX}* namespaces left: {left}"
    links = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    assert f" {PREFIX}" not in links
