"""Lab packets: the ECM'd Map-Request it sends, the datagrams of its captures."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from decent.lab.common import CONTROL_PORT, MARKER, LabError
from decent.wire import EncapsulatedControlMessage, MapRequest, RequestRecord, parse_eid


def ecm_map_request(
    eid: str, itr_rloc: IPv4Address, sport: int, nonce: int, resolver: IPv4Address
) -> bytes:
    """An ECM'd Map-Request for eid, as an ITR at itr_rloc:sport sends it to
    its Map-Resolver (RFC 9301 5.8); the Map-Reply comes back to that port."""
    query = parse_eid(eid)
    addr, mask = query.to_wire()
    inner_dst = query.address if isinstance(query.address, IPv4Address) else resolver
    request = MapRequest(nonce, (RequestRecord(addr, mask),), (itr_rloc,))
    return EncapsulatedControlMessage(
        request, itr_rloc, inner_dst, sport, CONTROL_PORT
    ).encode()


# ---------------------------------------------------------------- captures
_PROTOCOLS = (socket.IPPROTO_UDP, socket.IPPROTO_TCP)


@dataclass(frozen=True, slots=True)
class Datagram:
    """One captured IPv4/UDP datagram."""

    time: float
    src: IPv4Address
    dst: IPv4Address
    sport: int
    dport: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured IP packet of UDP or TCP (or an IPv4 fragment of one)."""

    time: float
    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    #: socket.IPPROTO_UDP or IPPROTO_TCP.
    proto: int
    sport: int
    dport: int
    #: The transport payload (empty for a fragment).
    payload: bytes
    #: The IP packet's length, and its IP and transport headers' (what a
    #: wire carries besides the payload, less the Ethernet header).
    length: int
    headers: int
    fragment: bool = False


def read_frames(path: Path) -> list[Frame]:
    """The UDP and TCP packets of a classic pcap file with Ethernet framing
    (what `dumpcap -P` writes), IPv4 and IPv6 (without extension headers),
    without the capture's own markers; everything else is skipped."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise LabError(f"{path}: not a classic pcap file (use dumpcap -P)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    (linktype,) = struct.unpack(endian + "I", data[20:24])
    if linktype != 1:
        raise LabError(f"{path}: link type {linktype}, expected Ethernet (1)")
    record = struct.Struct(endian + "IIII")
    out: list[Frame] = []
    pos = 24
    while pos + 16 <= len(data):
        sec, frac, caplen, _ = record.unpack_from(data, pos)
        frame = data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        when = sec + frac / (1e9 if nano else 1e6)
        kind, ip = frame[12:14], frame[14:]
        src: IPv4Address | IPv6Address
        dst: IPv4Address | IPv6Address
        if kind == b"\x08\x00" and len(ip) >= 28 and ip[0] >> 4 == 4:
            ihl, proto = (ip[0] & 0x0F) * 4, ip[9]
            total = int.from_bytes(ip[2:4], "big")
            src, dst = IPv4Address(ip[12:16]), IPv4Address(ip[16:20])
            fragment = bool(int.from_bytes(ip[6:8], "big") & 0x3FFF)
        elif kind == b"\x86\xdd" and len(ip) >= 48:
            ihl, total, proto = 40, 40 + int.from_bytes(ip[4:6], "big"), ip[6]
            src, dst = IPv6Address(ip[8:24]), IPv6Address(ip[24:40])
            fragment = False
        else:
            continue
        if proto not in _PROTOCOLS or len(ip) < total:
            continue
        if fragment:
            out.append(Frame(when, src, dst, proto, 0, 0, b"", total, ihl, True))
            continue
        segment = ip[ihl:total]
        sport, dport = struct.unpack("!HH", segment[:4])
        if proto == socket.IPPROTO_UDP:
            head, end = 8, int.from_bytes(segment[4:6], "big")
        else:
            head, end = (segment[12] >> 4) * 4, len(segment)
        payload = bytes(segment[head:end])
        if proto == socket.IPPROTO_UDP and dport == 9 and payload.startswith(MARKER):
            continue  # the capture's own start and end markers
        out.append(
            Frame(when, src, dst, proto, sport, dport, payload, total, ihl + head)
        )
    return out


def read_pcap(path: Path) -> list[Datagram]:
    """The whole IPv4/UDP datagrams of a classic Ethernet pcap (read_frames)."""
    return [
        Datagram(f.time, f.src, f.dst, f.sport, f.dport, f.payload)
        for f in read_frames(path)
        if f.proto == socket.IPPROTO_UDP
        and not f.fragment
        and isinstance(f.src, IPv4Address)
        and isinstance(f.dst, IPv4Address)
    ]
