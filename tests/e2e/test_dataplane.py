"""The xTR data plane in the namespace lab: real TUNs, real UDP 4341, real ping."""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import subprocess
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from decent.lab import DATA_PORT, MARKER, NetnsLab, read_pcap
from decent.wire import DataHeader, decapsulate, encapsulate

pytestmark = pytest.mark.e2e
MakeLab = Callable[..., NetnsLab]
CONVERGE = 30.0
V4 = {i: f"192.0.2.{i}" for i in (1, 2, 3)}
V6 = {i: f"2001:db8::{i}" for i in (1, 2, 3)}


def started(make_lab: MakeLab, **kw: Any) -> NetnsLab:
    lab = make_lab(dataplane=True, **kw)
    return lab


def go(lab: NetnsLab) -> None:
    lab.start_all()
    lab.wait_converged(CONVERGE)
    # Each node installs its EID routes once it holds the registrations.
    for i in lab.nodes:
        others = {f"{V4[j]}/32" for j in lab.nodes if j != i} | {
            f"{V6[j]}/128" for j in lab.nodes if j != i
        }
        lab.wait_until(
            _has_routes(lab, i, others),
            CONVERGE,
            f"n{i}'s EID routes",
        )


def _has_routes(lab: NetnsLab, i: int, routes: set[str]) -> Callable[[], bool]:
    return lambda: routes <= set(lab.api(i, "/api/node")["dataplane"]["routes"])


def ping(
    lab: NetnsLab, i: int, dst: str, count: int = 2
) -> subprocess.CompletedProcess[str]:
    return lab.exec(i, "ping", "-c", str(count), "-i", "0.2", "-W", "2", dst)


def pcap_frames(path: Path) -> int:
    """Frames in a classic pcap file, whatever they carry, but the capture's
    own start and end markers (NetnsLab.capture)."""
    data = path.read_bytes()
    pos, frames = 24, 0
    while pos + 16 <= len(data):
        (caplen,) = struct.unpack_from("<I", data, pos + 8)
        frames += MARKER not in data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
    return frames


def node_counters(lab: NetnsLab, i: int) -> dict[str, int]:
    counters: dict[str, int] = lab.api(i, "/api/node")["counters"]
    return counters


def cache_entry(lab: NetnsLab, i: int, eid: str) -> dict[str, Any] | None:
    for entry in lab.api(i, "/api/map-cache"):
        if entry["eid"] == eid:
            return dict(entry)
    return None


# ---------------------------------------------------------------- ping
def test_every_eid_pings_every_other_over_the_overlay_only(
    make_lab: MakeLab, tmp_path: Path
) -> None:
    lab = started(make_lab)
    # The capture reads the inner packets: clear text (test_encryption.py
    # checks the same pairs with encryption on).
    for i in lab.nodes:
        lab.configure(i, dataplane={"encrypt": "off"})
    go(lab)
    eids = " or ".join(f"host {a}" for a in V4.values())
    eids6 = " or ".join(f"ip6 host {a}" for a in V6.values())
    with (
        lab.capture(tmp_path / "lisp.pcap", f"udp port {DATA_PORT}") as lisp,
        lab.capture(tmp_path / "bare.pcap", f"icmp or {eids} or {eids6}") as bare,
    ):
        for i in (1, 2, 3):
            for j in (1, 2, 3):
                if i == j:
                    continue
                for dst in (V4[j], V6[j]):
                    result = ping(lab, i, dst)
                    assert result.returncode == 0, (i, dst, result.stdout)
                    assert " 0% packet loss" in result.stdout
    # Not one EID address and not one bare ICMP packet crossed the bridge.
    assert pcap_frames(bare) == 0
    rlocs = {str(lab.node(i).rloc): i for i in lab.nodes}
    pairs: set[tuple[int, int, str]] = set()
    for d in read_pcap(lisp):
        assert d.dport == DATA_PORT
        header, inner = decapsulate(d.payload)
        if header.instance_id == 0xFFFFFF:
            continue  # replicated control traffic
        assert str(d.src) in rlocs
        assert str(d.dst) in rlocs
        version = inner[0] >> 4
        if version == 4:
            a4, b4 = IPv4Address(inner[12:16]), IPv4Address(inner[16:20])
            if inner[9] == 1:
                pairs.add((rlocs[str(d.src)], rlocs[str(d.dst)], f"{a4}>{b4}"))
        else:
            src6, dst6 = IPv6Address(inner[8:24]), IPv6Address(inner[24:40])
            if inner[6] == 58:
                pairs.add((rlocs[str(d.src)], rlocs[str(d.dst)], f"{src6}>{dst6}"))
    want = {
        (i, j, f"{fam[i]}>{fam[j]}")
        for i in (1, 2, 3)
        for j in (1, 2, 3)
        for fam in (V4, V6)
        if i != j
    }
    assert want <= pairs
    # Counters per map-cache entry and per RLOC (/api/map-cache).
    entry = cache_entry(lab, 1, "[0]192.0.2.2/32")
    assert entry is not None
    assert entry["packet-count"] >= 2
    assert entry["byte-count"] >= 2 * 84
    assert entry["rlocs"][0]["packet-count"] == entry["packet-count"]


# ---------------------------------------------------------------- TCP
_SERVER = """
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("192.0.2.2", 5001)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"""

_CLIENT = """
import hashlib, random, socket
data = random.Random(5).randbytes(50 * 1000 * 1000)
c = socket.create_connection(
    ("192.0.2.2", 5001), timeout=60, source_address=("192.0.2.1", 0)
)
c.sendall(data); c.close()
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""


def test_a_50_mb_tcp_transfer_arrives_intact(make_lab: MakeLab) -> None:
    lab = started(make_lab, nodes=2)
    go(lab)
    server = lab.popen(
        2, "python3", "-c", _SERVER, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == b"ready"
        sent = lab.exec(1, "python3", "-c", _CLIENT, timeout=120, check=True)
        got, _ = server.communicate(timeout=60)
    finally:
        server.kill()
        server.wait()
    size, digest = sent.stdout.split()
    assert size == "50000000"
    assert got.decode().split() == [size, digest]
    expected = hashlib.sha256(
        __import__("random").Random(5).randbytes(50 * 1000 * 1000)
    ).hexdigest()
    assert digest == expected
    stats = lab.api(1, "/api/node")["dataplane"]
    assert stats["encapsulated-bytes"] >= 50_000_000


# ---------------------------------------------------------------- fail-over
def test_a_two_rloc_node_loses_one_and_the_flow_moves_to_the_other(
    make_lab: MakeLab,
) -> None:
    probe = 10.0
    lab = started(make_lab)
    second = lab.add_rloc(2)
    for i in lab.nodes:
        lab.configure(i, dataplane={"probe_interval": probe})
    go(lab)
    assert ping(lab, 1, V4[2], 1).returncode == 0
    entry = cache_entry(lab, 1, "[0]192.0.2.2/32")
    assert entry is not None
    assert sorted(r["address"] for r in entry["rlocs"]) == sorted(
        [str(lab.node(2).rloc), str(second)]
    )
    pinger = lab.popen(
        1,
        "ping",
        "-i",
        "0.05",
        "-W",
        "1",
        V4[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:

        def counts() -> dict[str, int]:
            entry = cache_entry(lab, 1, "[0]192.0.2.2/32")
            assert entry is not None
            return {r["address"]: r["packet-count"] for r in entry["rlocs"]}

        lab.wait_until(lambda: sum(counts().values()) >= 20, 10.0, "the flow")
        before = counts()
        used = max(before, key=lambda a: before[a])
        other = next(a for a in before if a != used)
        ifname = "eth1" if used == str(second) else "eth0"
        at_other = before[other]
        down_at = time.monotonic()
        lab.set_link(2, ifname, up=False)
        took = lab.wait_until(
            lambda: counts()[other] >= at_other + 10,
            probe,
            f"the flow to move from {used} to {other} within the probe interval",
        )
        moved = counts()
        time.sleep(1.0)
        after = counts()
        # Every packet now goes to the surviving RLOC ...
        assert after[used] == moved[used]
        assert after[other] > moved[other]
        # ... and is answered: replies keep coming back over the overlay.
        replies_before = len(_replies(pinger))
        time.sleep(1.0)
        assert len(_replies(pinger)) > replies_before
        print(
            f"fail-over {used} -> {other} in {took:.2f} s "
            f"(probe interval {probe} s, {time.monotonic() - down_at:.1f} s ago)"
        )
    finally:
        pinger.kill()
        pinger.wait()
        if pinger.stdout is not None:
            pinger.stdout.close()


def _replies(pinger: subprocess.Popen[Any]) -> list[str]:
    """The echo replies ping printed so far (read without blocking)."""
    import os

    assert pinger.stdout is not None
    fd = pinger.stdout.fileno()
    os.set_blocking(fd, False)
    lines = getattr(pinger, "_lines", [])
    try:
        chunk = os.read(fd, 1 << 20).decode(errors="replace")
    except BlockingIOError:
        chunk = ""
    lines += [x for x in chunk.splitlines() if re.search(r"icmp_seq=\d+ ttl", x)]
    pinger._lines = lines  # type: ignore[attr-defined]
    return lines


# ---------------------------------------------------------------- hostile
def test_a_spoofed_4341_packet_from_a_stranger_is_dropped_and_counted(
    make_lab: MakeLab,
) -> None:
    lab = started(make_lab, nodes=2)
    go(lab)
    inner = _icmp_echo("192.0.2.1", "192.0.2.2")
    before = lab.api(2, "/api/node")
    dropped = before["counters"].get("drop.unknown-rloc", 0)
    delivered = before["dataplane"]["decapsulated-packets"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((str(lab.host_address), 0))  # on the bridge, not a registered RLOC
        for _ in range(5):
            s.sendto(
                encapsulate(DataHeader(nonce=1, lsbs=1), inner),
                (str(lab.node(2).rloc), DATA_PORT),
            )
    lab.wait_until(
        lambda: node_counters(lab, 2).get("drop.unknown-rloc", 0) >= dropped + 5,
        10.0,
        "n2 to count the spoofed packets",
    )
    assert lab.api(2, "/api/node")["dataplane"]["decapsulated-packets"] == delivered


def _icmp_echo(src: str, dst: str) -> bytes:
    from decent.wire.ip import internet_checksum

    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"spoofed!")
    icmp[2:4] = internet_checksum(bytes(icmp)).to_bytes(2, "big")
    ip = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(icmp),
            1,
            0,
            64,
            1,
            0,
            IPv4Address(src).packed,
            IPv4Address(dst).packed,
        )
    )
    ip[10:12] = internet_checksum(bytes(ip)).to_bytes(2, "big")
    return bytes(ip + icmp)


def test_an_unregistered_eid_gets_the_negative_action(
    make_lab: MakeLab, tmp_path: Path
) -> None:
    lab = started(make_lab)
    # Traffic to 4.4.4.0/24 enters the TUN, but no node registers it. n1
    # drops it; n3 forwards it natively (its only way out: a default route
    # to the host's end of the bridge).
    lab.configure(1, dataplane={"routes": ["4.4.4.0/24"], "negative_action": "drop"})
    lab.configure(3, dataplane={"routes": ["4.4.4.0/24"], "negative_action": "native"})
    go(lab)
    lab.exec(
        3, "ip", "route", "add", "default", "via", str(lab.host_address), check=True
    )
    with lab.capture(tmp_path / "native.pcap", "host 4.4.4.4") as pcap:
        assert ping(lab, 1, "4.4.4.4", 3).returncode != 0
        ping(lab, 3, "4.4.4.4", 3)  # nobody answers; it must leave natively
    # n1: a negative map-cache entry and three drops.
    negative = [e for e in lab.api(1, "/api/map-cache") if e["negative"]]
    assert len(negative) == 1
    assert negative[0]["packet-count"] >= 3
    assert node_counters(lab, 1).get("drop.negative", 0) >= 3
    # n3: the echo requests crossed the bridge unencapsulated, from 192.0.2.3.
    assert node_counters(lab, 3).get("dataplane.native", 0) >= 3
    frames = pcap.read_bytes()
    assert pcap_frames(pcap) >= 3
    assert IPv4Address("192.0.2.3").packed in frames
    assert IPv4Address("192.0.2.1").packed not in frames


def test_an_eid_added_by_reload_is_reachable_and_a_removed_one_is_not(
    make_lab: MakeLab,
) -> None:
    """SIGHUP with a changed [[database]]: n2 puts 22.22.22.22 on its TUN
    and registers it at once, n1 routes it into the overlay; the EID that
    left n2's config leaves its TUN and every peer's routes."""
    lab = started(make_lab, nodes=2)
    go(lab)
    lab.configure(2, eids=[f"{V4[2]}/32", "22.22.22.22/32"])
    lab.reload(2)
    lab.wait_until(
        _has_routes(lab, 1, {"22.22.22.22/32"}), CONVERGE, "n1's route to it"
    )
    result = ping(lab, 1, "22.22.22.22")
    assert result.returncode == 0, result.stdout
    assert "from 22.22.22.22" in result.stdout
    lab.configure(2, eids=["22.22.22.22/32"])
    lab.reload(2)
    lab.wait_until(
        lambda: f"{V4[2]}/32" not in lab.api(1, "/api/node")["dataplane"]["routes"],
        CONVERGE,
        f"n1 to drop its route to {V4[2]}",
    )
    assert V4[2] not in lab.exec(2, "ip", "-4", "addr", "show").stdout
    assert ping(lab, 1, "22.22.22.22").returncode == 0


def test_a_too_big_packet_gets_frag_needed_not_silence(make_lab: MakeLab) -> None:
    lab = started(make_lab, nodes=2)
    lab.configure(1, dataplane={"mtu": 1500})  # bigger than the underlay allows
    go(lab)
    result = lab.exec(
        1, "ping", "-c", "2", "-M", "do", "-s", "1472", "-W", "2", "192.0.2.2"
    )
    text = result.stdout + result.stderr
    # 1500 - 36 (outer IPv4, UDP, LISP) - 28 (RFC 8061: a 12-byte IV and
    # a 16-byte tag, encryption being on by default) = 1436.
    assert re.search(r"(Frag needed|mtu = 1436|message too long)", text, re.I), text
    assert node_counters(lab, 1).get("dataplane.icmp-too-big", 0) >= 1
    # What fits still goes through: 1436 - 28 (IPv4, ICMP) bytes of data.
    assert (
        lab.exec(1, "ping", "-c", "1", "-M", "do", "-s", "1408", "192.0.2.2").returncode
        == 0
    )
