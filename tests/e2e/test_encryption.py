"""RFC 8061 data-plane encryption in the namespace lab: sealed, authentic, rekeyed.

Every node of these labs runs the data plane with encryption at its default
("required"). What crosses the lab bridge is captured by NetnsLab.capture
and its raw bytes searched for the patterns the test itself sent inside the
overlay (ping -p, TCP, UDP): with encryption on none may appear, and with
it off (the control case) all do. A packet captured on the bridge and sent
again from its sender's RLOC must be refused: unchanged as a replay, with a
flipped ciphertext byte as a forgery. Rekeying mid-transfer loses nothing.
A member in "preferred" mode talks in clear to a plain xTR that has no
RFC 8061 (tests/e2e/plain_xtr.py); one in "required" mode sends it nothing
and takes nothing from it. Waits are for conditions, with generous bounds.
"""

from __future__ import annotations

import hashlib
import random
import struct
import subprocess
from collections.abc import Callable, Iterator
from functools import partial
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any, Final

import pytest

from decent.lab import DATA_PORT, MARKER, NetnsLab, read_pcap
from decent.wire import DECENT_CONTROL_IID, decapsulate
from decent.wire.data import KEY_ID_MASK, peek_iid
from tests.e2e.plain_xtr import PlainXtr
from tests.e2e.test_dataplane import (
    _CLIENT,
    _SERVER,
    V4,
    V6,
    _icmp_echo,
    go,
    node_counters,
    ping,
)
from tests.e2e.test_interop import SITE, SITE_HOST, SITE_KEY, SITE_PREFIX

pytestmark = pytest.mark.e2e
MakeLab = Callable[..., NetnsLab]

#: Bound on any one condition (a key exchange, a counter rising).
SETTLE: Final = 30.0
#: What the tests send inside the overlay and look for on the bridge.
PING_PAD: Final = b"pingPAD-7c3e19a5"  # ping -p takes at most 16 bytes
TCP_PATTERN: Final = b"decent-secret-tcp-payload-0f9a2b"
UDP_PATTERN: Final = b"decent-secret-udp-payload-61d8e4"
#: The IV length on the wire, per cipher (RFC 8061 suites 5 and 6).
IV_LEN: Final = {"aes-128-gcm": 12, "chacha20-poly1305": 8}
TAG_LEN: Final = 16
#: An IPv4 echo request of ping's default 56 data bytes.
PING4_LEN: Final = 84


# ---------------------------------------------------------------- helpers
def counters(lab: NetnsLab, i: int) -> dict[str, int]:
    return node_counters(lab, i)


def dataplane(lab: NetnsLab, i: int) -> dict[str, Any]:
    section: dict[str, Any] = lab.api(i, "/api/node")["dataplane"]
    return section


def peer_states(lab: NetnsLab, i: int) -> dict[str, dict[str, Any]]:
    """Node i's per-peer encryption view (`dataplane.peers` of /api/node),
    by peer RLOC."""
    return {p["rloc"]: p for p in dataplane(lab, i).get("peers", [])}


def peer_state(lab: NetnsLab, i: int, rloc: object) -> str | None:
    peer = peer_states(lab, i).get(str(rloc))
    return None if peer is None else str(peer["state"])


def frames(path: Path) -> Iterator[bytes]:
    """Every frame of a classic little-endian pcap (dumpcap -P), whatever it
    carries, but the capture's own start and end markers."""
    data = path.read_bytes()
    pos = 24
    while pos + 16 <= len(data):
        (caplen,) = struct.unpack_from("<I", data, pos + 8)
        frame = data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        if MARKER not in frame:
            yield frame


def bare_eid_frames(path: Path, eids: set[str]) -> list[bytes]:
    """Frames whose own (outer) IP header carries an EID: traffic that
    crossed the bridge outside the overlay."""
    out = []
    for frame in frames(path):
        kind = frame[12:14]
        if kind == b"\x08\x00" and len(frame) >= 34:
            ends = {str(IPv4Address(frame[26:30])), str(IPv4Address(frame[30:34]))}
        elif kind == b"\x86\xdd" and len(frame) >= 54:
            ends = {str(IPv6Address(frame[22:38])), str(IPv6Address(frame[38:54]))}
        else:
            continue
        if ends & eids:
            out.append(frame)
    return out


def data_packets(path: Path) -> list[tuple[str, str, bytes]]:
    """The LISP data packets (not Decent's replicated control) of a
    capture: (outer source, outer destination, UDP payload)."""
    out = []
    for d in read_pcap(path):
        if d.dport != DATA_PORT or len(d.payload) < 8:
            continue
        if peek_iid(d.payload) == DECENT_CONTROL_IID:
            continue
        out.append((str(d.src), str(d.dst), d.payload))
    return out


_TCP_SINK = """
import hashlib, socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"""

_TCP_SOURCE = """
import hashlib, socket, sys
host, port, src, pattern, count = sys.argv[1:6]
data = bytes.fromhex(pattern) * int(count)
c = socket.create_connection((host, int(port)), timeout=60, source_address=(src, 0))
c.sendall(data); c.close()
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""

_UDP_ECHO = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, port)); print("ready", flush=True)
while True:
    data, addr = s.recvfrom(65535)
    s.sendto(data, addr)
"""

# One datagram at a time, each waited for (1 s) and sent again if lost:
# prints how many came back, of `count`.
_UDP_PING = """
import socket, sys
host, port, src, pattern, count = sys.argv[1:6]
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0)); s.settimeout(1.0)
data = bytes.fromhex(pattern) * 20
echoed = 0
for _ in range(int(count)):
    for _ in range(10):
        s.sendto(data, (host, int(port)))
        try:
            if s.recv(65535) == data:
                echoed += 1
                break
        except socket.timeout:
            pass
print(echoed, flush=True)
"""

_INJECT = """
import socket, sys
src, dst, port, packet = sys.argv[1:5]
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.bind((src, 0))  # its RLOC, another source port than the node's
    s.sendto(bytes.fromhex(packet), (dst, int(port)))
"""


def serve(lab: NetnsLab, i: int, script: str, *args: str) -> subprocess.Popen[bytes]:
    """A python3 server in node i's namespace, once it printed "ready"."""
    proc = lab.popen(
        i,
        "python3",
        "-c",
        script,
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != b"ready":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"n{i} server did not start: {line!r} {err!r}")
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def tcp_transfer(lab: NetnsLab, src: int, dst: int, dst_eid: str, src_eid: str) -> None:
    """Send TCP_PATTERN * 4096 (128 kB) from src_eid to dst_eid over TCP
    and check it arrived whole."""
    sink = serve(lab, dst, _TCP_SINK, dst_eid, "5002")
    try:
        sent = lab.exec(
            src,
            *("python3", "-c", _TCP_SOURCE, dst_eid, "5002", src_eid),
            *(TCP_PATTERN.hex(), "4096"),
            timeout=120,
            check=True,
        )
        got, _ = sink.communicate(timeout=60)
    finally:
        stop(sink)
    assert got.decode().split() == sent.stdout.split()


def udp_echoes(lab: NetnsLab, src: int, dst: int, dst_eid: str, src_eid: str) -> int:
    """Datagrams of UDP_PATTERN * 20 echoed from dst_eid to src_eid."""
    echo = serve(lab, dst, _UDP_ECHO, dst_eid, "5003")
    try:
        out = lab.exec(
            src,
            *("python3", "-c", _UDP_PING, dst_eid, "5003", src_eid),
            *(UDP_PATTERN.hex(), "10"),
            timeout=120,
            check=True,
        )
    finally:
        stop(echo)
    return int(out.stdout)


def inject(lab: NetnsLab, i: int, packet: bytes, dst: object) -> None:
    """Send a LISP data packet to dst:4341 from node i's RLOC (its namespace)."""
    src = str(lab.node(i).rloc)
    argv = ("python3", "-c", _INJECT, src, str(dst), str(DATA_PORT), packet.hex())
    lab.exec(i, *argv, check=True)


def rises(
    lab: NetnsLab, i: int, name: str, above: int, what: str, timeout: float = SETTLE
) -> int:
    """Wait until node i's counter `name` is above `above`; its value."""
    lab.wait_until(lambda: counters(lab, i).get(name, 0) > above, timeout, what)
    return counters(lab, i).get(name, 0)


# ---------------------------------------------------------------- 1. sealed
@pytest.mark.parametrize(
    "cipher",
    ["aes-128-gcm", "chacha20-poly1305", "off"],
    ids=["aes-128-gcm", "chacha20-poly1305", "control-encryption-off"],
)
def test_every_eid_pair_pings_sealed_and_no_payload_crosses_the_bridge_in_clear(
    make_lab: MakeLab, tmp_path: Path, cipher: str
) -> None:
    """Every EID pings every other, IPv4 and IPv6, each way, and a TCP and
    a UDP transfer go through, while the bridge capture holds none of what
    they carried and every data packet has a key-id (KK != 0). The case
    with encryption off is the control: the same capture then holds every
    pattern, so the search would have found them."""
    lab = make_lab(dataplane=True)
    sealed = cipher != "off"
    for i in lab.nodes:
        lab.configure(i, dataplane={"cipher": cipher} if sealed else {"encrypt": "off"})
    go(lab)
    rlocs = {str(lab.node(i).rloc): i for i in lab.nodes}
    eids = set(V4.values()) | set(V6.values())
    with lab.capture(tmp_path / "bridge.pcap", "") as pcap:
        for i in lab.nodes:
            for j in lab.nodes:
                if i == j:
                    continue
                for dst in (V4[j], V6[j]):
                    result = lab.exec(
                        i,
                        *("ping", "-c", "2", "-i", "0.2", "-W", "2"),
                        *("-p", PING_PAD.hex(), dst),
                    )
                    assert result.returncode == 0, (i, dst, result.stdout)
                    assert " 0% packet loss" in result.stdout, (i, dst, result.stdout)
                    assert "wrong data" not in result.stdout, result.stdout
        tcp_transfer(lab, 1, 2, V4[2], V4[1])
        assert udp_echoes(lab, 3, 1, V6[1], V6[3]) >= 1
    raw = pcap.read_bytes()
    found = {p: p in raw for p in (PING_PAD, TCP_PATTERN, UDP_PATTERN)}
    packets = data_packets(pcap)
    pairs = {(rlocs[s], rlocs[d]) for s, d, _ in packets if s in rlocs and d in rlocs}
    # Every ordered pair of nodes exchanged data packets over the bridge,
    # and none of it went around the overlay.
    assert pairs == {(i, j) for i in lab.nodes for j in lab.nodes if i != j}
    assert bare_eid_frames(pcap, eids) == []
    key_ids = {payload[0] & KEY_ID_MASK for _, _, payload in packets}
    if not sealed:
        assert found == dict.fromkeys(found, True), "the control capture missed one"
        assert key_ids == {0}
        return
    assert found == dict.fromkeys(found, False), f"clear text on the bridge: {found}"
    assert 0 not in key_ids, f"data packets with KK = 0: {key_ids}"
    # An IPv4 echo request sealed: header, IV of the cipher, packet, tag.
    sizes = {len(payload) for _, _, payload in packets}
    assert 8 + IV_LEN[cipher] + PING4_LEN + TAG_LEN in sizes, sorted(sizes)
    for i in lab.nodes:
        c = counters(lab, i)
        assert c.get("keys.established", 0) >= 2, (i, c)
        for name in ("drop.decrypt-failed", "drop.replayed", "drop.clear-text"):
            assert c.get(name, 0) == 0, (i, name, c)
        peers = peer_states(lab, i)
        for rloc, j in rlocs.items():
            if j == i:
                continue
            assert peers[rloc]["state"] == "encrypted", (i, peers)
            assert peers[rloc]["cipher"] == cipher, (i, peers)


# ---------------------------------------------------------------- 2. replay
def test_a_replayed_and_a_tampered_packet_are_dropped_and_counted(
    make_lab: MakeLab, tmp_path: Path
) -> None:
    """An encrypted echo request from n1 is captured on the bridge while
    the bridge keeps it from n2, then sent again from n1's RLOC (another
    source port): first with one ciphertext byte flipped (forged: the tag
    fails), then unchanged (authentic and new: taken), then unchanged again
    (a replay). n2 counts each refusal and goes on working."""
    lab = make_lab(dataplane=True, nodes=2)
    go(lab)
    n1, n2 = lab.node(1).rloc, lab.node(2).rloc
    # Keys both ways.
    assert ping(lab, 1, V4[2]).returncode == 0
    assert peer_state(lab, 1, n2) == "encrypted"
    lab.set_loss(100, nodes=[2])
    try:
        with lab.capture(
            tmp_path / "held.pcap", f"udp dst port {DATA_PORT} and src host {n1}"
        ) as pcap:
            held = lab.exec(1, "ping", "-c", "3", "-i", "0.2", "-W", "1", V4[2])
    finally:
        lab.set_loss(0, nodes=[2])
    assert held.returncode != 0, held.stdout  # n2 never had them
    packets = [p for s, d, p in data_packets(pcap) if (s, d) == (str(n1), str(n2))]
    assert packets, "no data packet from n1 to n2 on the bridge"
    original = packets[-1]
    assert original[0] & KEY_ID_MASK, "a clear data packet"
    iv = IV_LEN["aes-128-gcm"]
    forged = bytearray(original)
    forged[8 + iv + 5] ^= 0x01  # a byte of the ciphertext (inner IP header)

    before = counters(lab, 2)
    taken = dataplane(lab, 2)["decapsulated-packets"]
    inject(lab, 1, bytes(forged), n2)
    rises(
        lab,
        2,
        "drop.decrypt-failed",
        before.get("drop.decrypt-failed", 0),
        "n2 to count the forged packet",
    )
    assert dataplane(lab, 2)["decapsulated-packets"] == taken

    # The same packet unflipped is authentic and new to n2: taken.
    inject(lab, 1, original, n2)
    lab.wait_until(
        lambda: dataplane(lab, 2)["decapsulated-packets"] > taken,
        SETTLE,
        "n2 to take the packet it never had",
    )
    # Again: a replay.
    inject(lab, 1, original, n2)
    rises(
        lab,
        2,
        "drop.replayed",
        before.get("drop.replayed", 0),
        "n2 to count the replayed packet",
    )
    after = counters(lab, 2)
    assert (
        after.get("drop.decrypt-failed", 0) == before.get("drop.decrypt-failed", 0) + 1
    )
    assert after.get("drop.replayed", 0) == before.get("drop.replayed", 0) + 1
    assert dataplane(lab, 2)["decapsulated-packets"] == taken + 1
    # And both nodes go on working, both ways.
    for i, j in ((1, 2), (2, 1)):
        result = ping(lab, i, V4[j])
        assert result.returncode == 0, (i, j, result.stdout)
    assert counters(lab, 2).get("drop.decrypt-failed", 0) == after.get(
        "drop.decrypt-failed", 0
    )


# ---------------------------------------------------------------- 3. rekey
def test_rekeying_during_a_50_mb_tcp_transfer_loses_nothing(make_lab: MakeLab) -> None:
    """With a rekey every 1000 packets each way, 50 MB cross EID to EID
    over TCP: the same SHA-256 at both ends, rekeys on the sender, and no
    packet refused for a key it did not have or could not open."""
    lab = make_lab(dataplane=True, nodes=2)
    for i in lab.nodes:
        lab.configure(i, dataplane={"rekey_packets": 1000})
    go(lab)
    server = serve(lab, 2, _SERVER)
    try:
        sent = lab.exec(1, "python3", "-c", _CLIENT, timeout=300, check=True)
        got, _ = server.communicate(timeout=120)
    finally:
        stop(server)
    size, digest = sent.stdout.split()
    assert size == "50000000"
    assert got.decode().split() == [size, digest]
    expected = hashlib.sha256(random.Random(5).randbytes(50_000_000)).hexdigest()
    assert digest == expected
    c1, c2 = counters(lab, 1), counters(lab, 2)
    print(
        f"n1 rekeyed {c1.get('keys.rekeyed', 0)} times, n2 "
        f"{c2.get('keys.rekeyed', 0)}; n2 answered {c2.get('keys.answered', 0)} "
        f"key requests"
    )
    assert c1.get("keys.rekeyed", 0) >= 2, c1
    assert c1.get("keys.established", 0) >= 3, c1
    for i, c in ((1, c1), (2, c2)):
        for name in ("drop.no-key", "drop.decrypt-failed", "drop.clear-text"):
            assert c.get(name, 0) == 0, (i, name, c)
    assert dataplane(lab, 1)["encapsulated-bytes"] >= 50_000_000
    assert peer_state(lab, 1, lab.node(2).rloc) == "encrypted"


# ---------------------------------------------------------------- 4. policy
def _clear_packet_from(xtr: PlainXtr, src: str, dst: str) -> tuple[bytes, str] | None:
    """A clear LISP data packet (KK = 0) that reached the xTR carrying IPv4
    src -> dst, and its sender, waiting half a second for one."""
    for payload, (sender, _) in xtr.receive_data(0.5):
        if payload[0] & KEY_ID_MASK:
            continue
        _, inner = decapsulate(payload)
        if (
            inner[0] >> 4 == 4
            and ip_address(inner[12:16]) == ip_address(src)
            and ip_address(inner[16:20]) == ip_address(dst)
        ):
            return payload, sender
    return None


def _routes_to(lab: NetnsLab, i: int, prefix: str) -> bool:
    return prefix in dataplane(lab, i)["routes"]


def _eventually(lab: NetnsLab, get: Callable[[], Any], what: str) -> Any:
    got: list[Any] = []

    def ready() -> bool:
        value = get()
        if value is not None:
            got.append(value)
        return value is not None

    lab.wait_until(ready, SETTLE, what)
    return got[-1]


def test_preferred_talks_clear_to_a_plain_xtr_and_required_gives_it_nothing(
    make_lab: MakeLab,
) -> None:
    """A plain xTR (no RFC 8061) registers its site to n1. n2 ("preferred")
    asks it for a key, is answered without one, shows it as clear and sends
    it clear packets, and takes its clear packets. n3 ("required") asks too,
    shows it as refused, sends it nothing and drops what it sends, counting
    both."""
    lab = make_lab(dataplane=True)
    for i in lab.nodes:
        lab.configure(i, extra=SITE)
    lab.configure(2, dataplane={"routes": [SITE_PREFIX], "encrypt": "preferred"})
    lab.configure(3, dataplane={"routes": [SITE_PREFIX], "encrypt": "required"})
    xtr = PlainXtr(lab, SITE_PREFIX, SITE_KEY)
    pingers: list[subprocess.Popen[bytes]] = []
    try:
        go(lab)
        n1, n2, n3 = (lab.node(i).rloc for i in (1, 2, 3))
        xtr.register(n1, SETTLE)
        for i in (2, 3):
            lab.wait_until(
                partial(_routes_to, lab, i, SITE_PREFIX),
                SETTLE,
                f"n{i}'s route to {SITE_PREFIX}",
            )

        # -- n2, preferred: a keyed probe, answered without a key: clear.
        pingers.append(
            lab.popen(
                2,
                *("ping", "-i", "0.2", "-W", "1", "-I", V4[2], SITE_HOST),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        _, sender = _eventually(
            lab,
            partial(_clear_packet_from, xtr, V4[2], SITE_HOST),
            f"a clear LISP packet {V4[2]} -> {SITE_HOST} at the xTR",
        )
        assert ip_address(sender) == n2
        assert xtr.keyed_probes >= 1, "n2 never asked the xTR for a key"
        assert peer_state(lab, 2, xtr.address) == "clear"
        # ... and n2 takes the xTR's clear packets.
        taken = dataplane(lab, 2)["decapsulated-packets"]
        echo = _icmp_echo(SITE_HOST, V4[2])

        def delivered() -> bool:
            xtr.send_data(echo, n2)
            return bool(dataplane(lab, 2)["decapsulated-packets"] > taken)

        lab.wait_until(delivered, SETTLE, "n2 to decapsulate the xTR's packet")
        assert counters(lab, 2).get("drop.clear-text", 0) == 0
        # n2 still seals to the members.
        assert ping(lab, 2, V4[1]).returncode == 0
        assert peer_state(lab, 2, n1) == "encrypted"

        # -- n3, required: asks, is refused, sends nothing, counts drops.
        keyed = xtr.keyed_probes
        pingers.append(
            lab.popen(
                3,
                *("ping", "-i", "0.2", "-W", "1", "-I", V4[3], SITE_HOST),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        lab.wait_until(
            lambda: peer_state(lab, 3, xtr.address) == "refused",
            SETTLE,
            "n3 to show the xTR as refused",
        )
        assert xtr.keyed_probes > keyed, "n3 never asked the xTR for a key"
        rises(lab, 3, "drop.peer-unencrypted", 2, "n3 to drop its echo requests")
        for p in pingers:
            stop(p)
        pingers.clear()
        from_n3 = [s for _, (s, _) in xtr.receive_data(0.0) if ip_address(s) == n3]
        assert from_n3 == [], "n3 sent the plain xTR data packets"
        assert counters(lab, 3).get("drop.peer-unencrypted", 0) >= 3
        # ... and drops the xTR's clear packets to it.
        taken3 = dataplane(lab, 3)["decapsulated-packets"]
        dropped = counters(lab, 3).get("drop.clear-text", 0)
        echo3 = _icmp_echo(SITE_HOST, V4[3])

        def refused() -> bool:
            xtr.send_data(echo3, n3)
            return counters(lab, 3).get("drop.clear-text", 0) > dropped

        lab.wait_until(refused, SETTLE, "n3 to drop the xTR's clear packet")
        assert dataplane(lab, 3)["decapsulated-packets"] == taken3
        assert counters(lab, 3).get("drop.unknown-rloc", 0) == 0
        print(
            f"the xTR answered {xtr.probes_answered} RLOC probes, "
            f"{xtr.keyed_probes} of them keyed"
        )
    finally:
        for p in pingers:
            stop(p)
        xtr.close()
