"""Conformance harness: dissect LISP datagrams with tshark and report findings."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SRC_ADDR: Final = ipaddress.IPv4Address("192.0.2.1")
DST_ADDR: Final = ipaddress.IPv4Address("192.0.2.2")
SRC_PORT: Final = 61000
CONTROL_PORT: Final = 4342
DATA_PORT: Final = 4341

LISP_PROTOCOLS: Final = frozenset({"lisp", "lisp-data"})
# Expert severities (epan/proto.h PI_WARN, PI_ERROR).
_PI_WARN: Final = 0x00600000
_PI_ERROR: Final = 0x00800000
_SEVERITY_NAMES: Final = {_PI_WARN: "warning", _PI_ERROR: "error"}
_EXPERT_LABEL: Final = re.compile(r"Expert Info \((?P<sev>[^/]+)/(?P<group>[^)]+)\)")
_RESERVED_FIELD: Final = re.compile(r"\.(res\d*|rsvd\d*|reserved)$")
# Layers that hold bytes nobody dissected, or tshark's own annotations.
_NOT_COVERING: Final = frozenset({"data", "fake-field-wrapper"})
# udp.checksum.status 3 = "Not present" (a zero checksum).
_CHECKSUM_ABSENT: Final = "3"
_GENERIC_MALFORMED: Final = "Malformed Packet"

# Findings tshark 4.0 reports for valid RFC 9301 messages (protocol-notes
# gotcha 25), as regexes for assert_clean's `allow`. Each matches one finding.
#: The Map-Register a bit (merge-request, 0x00000400) alone, shown as reserved.
MAP_REGISTER_A_BIT: Final = re.escape(
    "reserved field lisp.mreg.res = 0x000002 "
    "(.... .... 0000 0000 0000 010. = Reserved bits: 0x0002)"
)
#: The Map-Register T bit (use the Record TTL, 0x00000800) alone, likewise.
MAP_REGISTER_T_BIT: Final = re.escape(
    "reserved field lisp.mreg.res = 0x000004 "
    "(.... .... 0000 0000 0000 100. = Reserved bits: 0x0004)"
)
#: Map-Notify-Ack (type 5) is "Unknown LISP Control Packet (5)" ...
MAP_NOTIFY_ACK_TYPE: Final = re.escape("LISP message type 5 unknown to tshark")
#: ... and everything after its type field stays undecoded. This would also
#: hide any message abandoned right after its type: allow it only for batches
#: of Map-Notify-Acks.
MAP_NOTIFY_ACK_BODY: Final = (
    r"\d+ undecoded bytes at UDP payload offset 3 \(to the end\)"
)


class TsharkError(RuntimeError):
    """tshark or text2pcap is missing or failed."""


@dataclass(frozen=True, slots=True)
class Expert:
    """One expert-info entry of severity warning or worse."""

    severity: str
    group: str
    message: str


@dataclass(frozen=True, slots=True)
class ReservedField:
    """A field tshark labels reserved that carries a non-zero value."""

    name: str
    value: str
    showname: str


@dataclass(frozen=True, slots=True)
class Dissection:
    """What tshark made of one datagram (one UDP payload)."""

    index: int
    port: int
    payload_length: int
    #: Protocol layers above the outer UDP header, in order.
    layers: tuple[str, ...]
    #: `_ws.malformed` markers (tshark caught an exception while dissecting).
    malformed: tuple[str, ...]
    #: Expert infos with severity warning or error, anywhere in the frame.
    experts: tuple[Expert, ...]
    #: Message types the LISP dissector does not know ("Type: Unknown (5)").
    unknown_types: tuple[int, ...]
    #: Fields the dissector marks "Not dissected yet" (`lisp.undecoded`).
    not_dissected: tuple[str, ...]
    #: Reserved fields with non-zero values.
    reserved: tuple[ReservedField, ...]
    #: (offset, length) runs of UDP payload bytes no LISP field covers.
    undecoded: tuple[tuple[int, int], ...]
    #: Encapsulated UDP layers to or from 4342 that carry a zero checksum.
    zero_inner_checksums: int

    @property
    def lisp_decoded(self) -> bool:
        return any(layer in LISP_PROTOCOLS for layer in self.layers)


def missing_tools() -> list[str]:
    """Names of the Wireshark tools this harness needs that are not on PATH."""
    return [tool for tool in ("tshark", "text2pcap") if shutil.which(tool) is None]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise TsharkError(f"{name} not found on PATH (Debian: apt-get install tshark)")
    return path


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip_udp_packet(payload: bytes, port: int) -> bytes:
    """IPv4 + UDP around `payload`, SRC_ADDR:SRC_PORT -> DST_ADDR:port.

    text2pcap's -4/-u apply one port pair to the whole file; building the
    headers here lets one pcap (one tshark run) mix 4341 and 4342.
    """
    src, dst = SRC_ADDR.packed, DST_ADDR.packed
    udp_length = 8 + len(payload)
    if udp_length + 20 > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit in IPv4")
    udp = (
        SRC_PORT.to_bytes(2, "big")
        + port.to_bytes(2, "big")
        + udp_length.to_bytes(2, "big")
    )
    # RFC 9300 5: data-plane (4341) checksum SHOULD be zero; RFC 9301 5: control
    # checksum MUST be non-zero (0 is sent as 0xffff).
    checksum = 0
    if port != DATA_PORT:
        pseudo = src + dst + b"\x00\x11" + udp_length.to_bytes(2, "big")
        checksum = _checksum(pseudo + udp + b"\0\0" + payload) or 0xFFFF
    udp += checksum.to_bytes(2, "big") + payload
    ip = bytearray(
        b"\x45\x00"
        + (20 + udp_length).to_bytes(2, "big")
        + b"\x00\x00\x40\x00\x40\x11\x00\x00"
        + src
        + dst
    )
    ip[10:12] = _checksum(bytes(ip)).to_bytes(2, "big")
    return bytes(ip) + udp


def _hexdump(packets: Iterable[bytes]) -> str:
    """The od-style dump text2pcap reads; a new packet restarts at offset 0."""
    lines: list[str] = []
    for packet in packets:
        for offset in range(0, len(packet), 16):
            chunk = packet[offset : offset + 16]
            lines.append(f"{offset:06x}  {chunk.hex(' ')}")
    return "\n".join(lines) + "\n"


def _run(argv: list[str], env: Mapping[str, str]) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, env=dict(env), check=False
    )
    if result.returncode != 0:
        raise TsharkError(
            f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


def _pdml(datagrams: Sequence[tuple[bytes, int]]) -> ET.Element:
    text2pcap, tshark = _tool("text2pcap"), _tool("tshark")
    with tempfile.TemporaryDirectory(prefix="decent-tshark-") as tmp:
        tmpdir = Path(tmp)
        # An empty personal config dir: user preferences cannot change results.
        env = {**os.environ, "WIRESHARK_CONFIG_DIR": str(tmpdir)}
        dump, pcap = tmpdir / "frames.txt", tmpdir / "frames.pcap"
        dump.write_text(
            _hexdump(_ip_udp_packet(data, port) for data, port in datagrams),
            encoding="ascii",
        )
        _run([text2pcap, "-q", "-F", "pcap", "-e", "0x800", str(dump), str(pcap)], env)
        # Checksum checks on: an encapsulated Map-Request/Map-Register must carry
        # a valid inner UDP checksum (RFC 9301 5.8, protocol-notes gotcha 24).
        out = _run(
            [
                tshark,
                "-n",
                "-r",
                str(pcap),
                "-T",
                "pdml",
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "udp.check_checksum:TRUE",
            ],
            env,
        )
    return ET.fromstring(out)


def _int(element: ET.Element, attribute: str) -> int | None:
    raw = element.get(attribute)
    return int(raw) if raw is not None and raw.isdigit() else None


def _fields(element: ET.Element) -> Iterator[ET.Element]:
    return (e for e in element.iter("field") if e is not element)


def _is_leaf(field: ET.Element) -> bool:
    return not any(
        not (child.get("name") or "").startswith("_ws.")
        for child in field.iter("field")
        if child is not field
    )


def _experts(packet: ET.Element) -> list[Expert]:
    experts: list[Expert] = []
    for field in packet.iter("field"):
        if field.get("name") != "_ws.expert":
            continue
        severity = message = None
        for child in field.iter("field"):
            if child.get("name") == "_ws.expert.severity":
                severity = _int(child, "show")
            elif child.get("name") == "_ws.expert.message":
                message = child.get("show")
        if severity is None or severity < _PI_WARN:
            continue
        label = _EXPERT_LABEL.match(field.get("showname") or "")
        experts.append(
            Expert(
                severity=label["sev"].lower()
                if label
                else _SEVERITY_NAMES.get(severity, hex(severity)),
                group=label["group"].lower() if label else "?",
                message=message or field.get("showname") or "?",
            )
        )
    return experts


def _gaps(spans: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Runs of [start, end) that no (pos, size) span covers, payload-relative."""
    gaps: list[tuple[int, int]] = []
    cursor = start
    for pos, size in sorted(spans):
        if pos > cursor:
            gaps.append((cursor - start, min(pos, end) - cursor))
        cursor = max(cursor, pos + size)
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor - start, end - cursor))
    return [(offset, length) for offset, length in gaps if length > 0]


def _analyse(index: int, packet: ET.Element, payload: bytes, port: int) -> Dissection:
    protos = packet.findall("proto")
    names = [p.get("name") or "" for p in protos]
    if "udp" not in names:
        raise TsharkError(f"datagram {index}: tshark found no UDP layer: {names}")
    outer = names.index("udp")
    payload_start = (_int(protos[outer], "pos") or 0) + 8
    payload_end = payload_start + len(payload)
    above = protos[outer + 1 :]
    layers = tuple(
        name
        for name in names[outer + 1 :]
        if not name.startswith("_ws.") and name not in _NOT_COVERING
    )

    spans: list[tuple[int, int]] = []
    unknown: list[int] = []
    not_dissected: list[str] = []
    reserved: list[ReservedField] = []
    zero_checksums = 0
    seen_lisp = False
    for proto in above:
        name = proto.get("name") or ""
        if name.startswith("_ws.") or name in _NOT_COVERING:
            continue
        if name != "lisp":
            # Encapsulated IP/UDP headers and the fixed 8-byte LISP data header:
            # the layer span is the header. (tshark 4.0 shows no LSB field when
            # L=0, though the byte is there.)
            pos, size = _int(proto, "pos"), _int(proto, "size")
            if pos is not None and size:
                spans.append((pos, size))
        if name == "udp" and seen_lisp:
            zero_checksums += _zero_control_checksum(proto)
        if name not in LISP_PROTOCOLS:
            continue
        seen_lisp = True
        # A LISP control layer counts only what its leaf fields cover: the layer
        # itself spans even a message it could not dissect (type 5 in 4.0).
        for field in _fields(proto):
            fname = field.get("name") or ""
            showname = field.get("showname") or ""
            if fname.startswith(("_ws.", "data")):
                continue
            if fname == "lisp.type" and "Unknown" in showname:
                unknown.append(_int(field, "show") or 0)
            if fname.endswith(".undecoded"):
                not_dissected.append(showname or fname)
            if _RESERVED_FIELD.search(fname) and _nonzero(field.get("show")):
                reserved.append(ReservedField(fname, field.get("show") or "", showname))
            pos, size = _int(field, "pos"), _int(field, "size")
            if pos is not None and size and _is_leaf(field):
                spans.append((pos, size))

    return Dissection(
        index=index,
        port=port,
        payload_length=len(payload),
        layers=layers,
        malformed=_malformed(packet),
        experts=tuple(_experts(packet)),
        unknown_types=tuple(unknown),
        not_dissected=tuple(not_dissected),
        reserved=tuple(reserved),
        undecoded=tuple(_gaps(spans, payload_start, payload_end)),
        zero_inner_checksums=zero_checksums,
    )


def _malformed(packet: ET.Element) -> tuple[str, ...]:
    markers = dict.fromkeys(
        p.get("showname") or _GENERIC_MALFORMED
        for p in packet.iter("proto")
        if p.get("name") == "_ws.malformed"
    )
    # tshark adds a generic marker next to the one naming the protocol.
    if len(markers) > 1:
        markers.pop(_GENERIC_MALFORMED, None)
    return tuple(markers)


def _nonzero(show: str | None) -> bool:
    if not show:
        return False
    try:
        return int(show, 0) != 0
    except ValueError:
        return True


def _zero_control_checksum(udp: ET.Element) -> int:
    ports: set[str | None] = set()
    status = None
    for field in udp.iter("field"):
        name = field.get("name")
        if name in ("udp.srcport", "udp.dstport"):
            ports.add(field.get("show"))
        elif name == "udp.checksum.status":
            status = field.get("show")
    return int(str(CONTROL_PORT) in ports and status == _CHECKSUM_ABSENT)


def dissect(datagrams: Sequence[tuple[bytes, int]]) -> list[Dissection]:
    """Dissect each (UDP payload, destination port) with one tshark run.

    Every datagram becomes a frame 192.0.2.1:61000 -> 192.0.2.2:port.
    """
    if not datagrams:
        return []
    for data, port in datagrams:
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"bad UDP port {port}")
        if not isinstance(data, bytes):
            raise TypeError(f"datagram must be bytes, not {type(data).__name__}")
    packets = _pdml(datagrams).findall("packet")
    if len(packets) != len(datagrams):
        raise TsharkError(
            f"tshark returned {len(packets)} frames for {len(datagrams)} datagrams"
        )
    return [
        _analyse(i, packet, data, port)
        for i, (packet, (data, port)) in enumerate(zip(packets, datagrams, strict=True))
    ]


def problems(d: Dissection) -> list[str]:
    """Human-readable findings; an empty list means tshark had no complaint."""
    found: list[str] = []
    if not d.lisp_decoded:
        shown = ", ".join(d.layers) or "nothing"
        found.append(f"not decoded as LISP on port {d.port} (layers: {shown})")
    found.extend(f"malformed: {m}" for m in d.malformed)
    found.extend(f"expert {e.severity}/{e.group}: {e.message}" for e in d.experts)
    found.extend(f"LISP message type {t} unknown to tshark" for t in d.unknown_types)
    found.extend(f"not dissected: {s}" for s in d.not_dissected)
    found.extend(
        f"reserved field {r.name} = {r.value} ({r.showname})" for r in d.reserved
    )
    for offset, length in d.undecoded:
        plural = "" if length == 1 else "s"
        to_end = " (to the end)" if offset + length == d.payload_length else ""
        found.append(
            f"{length} undecoded byte{plural} at UDP payload offset {offset}{to_end}"
        )
    if d.zero_inner_checksums:
        found.append(
            f"{d.zero_inner_checksums} encapsulated UDP header(s) to/from port "
            f"{CONTROL_PORT} with a zero checksum (RFC 9301 5.8: MUST be non-zero)"
        )
    return found


def unexplained(found: Iterable[str], allow: Mapping[str, str]) -> list[str]:
    """The findings that no regex in `allow` (regex -> reason) fully matches."""
    patterns = [re.compile(regex) for regex in allow]
    return [f for f in found if not any(p.fullmatch(f) for p in patterns)]


def assert_clean(
    datagrams: Sequence[tuple[bytes, int]], allow: dict[str, str] | None = None
) -> list[Dissection]:
    """Fail unless tshark decodes every (payload, port) without problems.

    `allow` maps a regex that must match a whole finding to the reason it is
    acceptable (a known tshark limitation); it applies to every datagram.
    All datagrams go through a single tshark run.
    """
    dissections = dissect(datagrams)
    report: list[str] = []
    for d, (data, _port) in zip(dissections, datagrams, strict=True):
        bad = unexplained(problems(d), allow or {})
        if bad:
            head = data[:32].hex() + ("..." if len(data) > 32 else "")
            report.append(f"datagram {d.index} (port {d.port}, {head}):")
            report.extend(f"  - {finding}" for finding in bad)
    if report:
        raise AssertionError("tshark findings:\n" + "\n".join(report))
    return dissections


# ---------------------------------------------------------------- TCP streams
# The reliable transport (protocol-notes section 6) runs over one TCP
# connection; tshark reassembles its PDUs across segments, so a stream is
# dissected as a whole pcap rather than datagram by datagram.

TCP_CLIENT_PORT: Final = 40000
_CLIENT_ISN: Final = 0x10000000
_SERVER_ISN: Final = 0x20000000
_TCP_SYN: Final = 0x02
_TCP_ACK: Final = 0x10
_TCP_PSH: Final = 0x08
_ETHERTYPE_IPV4: Final = b"\x08\x00"
_CLIENT_MAC: Final = bytes.fromhex("020000000001")
_SERVER_MAC: Final = bytes.fromhex("020000000002")
_HANDSHAKE_FRAMES: Final = 3


@dataclass(frozen=True, slots=True)
class TcpPdu:
    """One lisp-tcp PDU tshark reassembled from a stream."""

    #: Index into the segments given to dissect_tcp_stream of the segment
    #: that completed this PDU.
    segment: int
    #: The layer's own line, e.g. "... (Reliable Transport), Msg: 2,
    #: Registration ACK for 10.1.0.0/16".
    summary: str
    #: (field name, showname) of every field in the layer, in tree order.
    fields: tuple[tuple[str, str], ...]

    def shown(self, name: str) -> list[str]:
        """The shownames of the fields called `name`."""
        return [shown for field, shown in self.fields if field == name]


@dataclass(frozen=True, slots=True)
class TcpDissection:
    """What tshark made of one TCP connection carrying lisp-tcp PDUs."""

    pdus: tuple[TcpPdu, ...]
    #: "segment N: marker" for every `_ws.malformed` marker.
    malformed: tuple[str, ...]
    #: Expert infos of severity warning or error, anywhere in the capture.
    experts: tuple[Expert, ...]

    @property
    def errors(self) -> list[Expert]:
        return [e for e in self.experts if e.severity == "error"]


def _tcp_frame(
    from_client: bool, seq: int, ack: int, flags: int, payload: bytes, ident: int
) -> bytes:
    """Ethernet + IPv4 + TCP (no options) with valid checksums."""
    src, dst = (SRC_ADDR, DST_ADDR) if from_client else (DST_ADDR, SRC_ADDR)
    sport, dport = (TCP_CLIENT_PORT, CONTROL_PORT)
    if not from_client:
        sport, dport = dport, sport
    tcp = bytearray(
        sport.to_bytes(2, "big")
        + dport.to_bytes(2, "big")
        + seq.to_bytes(4, "big")
        + ack.to_bytes(4, "big")
        + bytes((5 << 4, flags))
        + (0xFFFF).to_bytes(2, "big")  # window
        + b"\0\0\0\0"  # checksum, urgent pointer
    )
    tcp_length = len(tcp) + len(payload)
    if 20 + tcp_length > 0xFFFF:
        raise ValueError(f"segment of {len(payload)} bytes does not fit in IPv4")
    pseudo = src.packed + dst.packed + b"\x00\x06" + tcp_length.to_bytes(2, "big")
    tcp[16:18] = _checksum(pseudo + bytes(tcp) + payload).to_bytes(2, "big")
    ip = bytearray(
        b"\x45\x00"
        + (20 + tcp_length).to_bytes(2, "big")
        + ident.to_bytes(2, "big")
        + b"\x40\x00\x40\x06\x00\x00"
        + src.packed
        + dst.packed
    )
    ip[10:12] = _checksum(bytes(ip)).to_bytes(2, "big")
    macs = _SERVER_MAC + _CLIENT_MAC if from_client else _CLIENT_MAC + _SERVER_MAC
    return macs + _ETHERTYPE_IPV4 + bytes(ip) + bytes(tcp) + payload


def tcp_stream_frames(segments: Sequence[tuple[bool, bytes]]) -> list[bytes]:
    """Ethernet frames of one connection 192.0.2.1:40000 -> 192.0.2.2:4342: the
    three-way handshake, then each (from_client, payload) segment in order,
    with sequence numbers advancing and every segment acknowledging all the
    peer sent before it."""
    frames = [
        _tcp_frame(True, _CLIENT_ISN, 0, _TCP_SYN, b"", 1),
        _tcp_frame(False, _SERVER_ISN, _CLIENT_ISN + 1, _TCP_SYN | _TCP_ACK, b"", 1),
        _tcp_frame(True, _CLIENT_ISN + 1, _SERVER_ISN + 1, _TCP_ACK, b"", 2),
    ]
    next_seq = {True: _CLIENT_ISN + 1, False: _SERVER_ISN + 1}
    ident = {True: 3, False: 2}
    for from_client, payload in segments:
        if not payload:
            raise ValueError("every segment carries data")
        seq = next_seq[from_client]
        ack = next_seq[not from_client]
        frames.append(
            _tcp_frame(
                from_client, seq, ack, _TCP_PSH | _TCP_ACK, payload, ident[from_client]
            )
        )
        next_seq[from_client] = (seq + len(payload)) & 0xFFFFFFFF
        ident[from_client] += 1
    return frames


def _pcap(frames: Iterable[bytes]) -> bytes:
    """A classic little-endian pcap (LINKTYPE_ETHERNET), one millisecond apart."""
    out = bytearray(
        (0xA1B2C3D4).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (4).to_bytes(2, "little")
        + bytes(8)  # thiszone, sigfigs
        + (0xFFFF).to_bytes(4, "little")
        + (1).to_bytes(4, "little")
    )
    for i, frame in enumerate(frames):
        out += (1_700_000_000).to_bytes(4, "little") + (i * 1000).to_bytes(4, "little")
        out += len(frame).to_bytes(4, "little") * 2 + frame
    return bytes(out)


def dissect_tcp_stream(segments: Sequence[tuple[bool, bytes]]) -> TcpDissection:
    """Dissect one TCP connection (see tcp_stream_frames) with tshark's lisp-tcp
    dissector on port 4342, in one tshark run with checksum checks on."""
    tshark = _tool("tshark")
    with tempfile.TemporaryDirectory(prefix="decent-tshark-tcp-") as tmp:
        tmpdir = Path(tmp)
        env = {**os.environ, "WIRESHARK_CONFIG_DIR": str(tmpdir)}
        pcap = tmpdir / "stream.pcap"
        pcap.write_bytes(_pcap(tcp_stream_frames(segments)))
        out = _run(
            [
                tshark,
                "-n",
                "-r",
                str(pcap),
                "-d",
                f"tcp.port=={CONTROL_PORT},lisp-tcp",
                "-T",
                "pdml",
                "-o",
                "ip.check_checksum:TRUE",
                "-o",
                "tcp.check_checksum:TRUE",
            ],
            env,
        )
    packets = ET.fromstring(out).findall("packet")
    if len(packets) != _HANDSHAKE_FRAMES + len(segments):
        raise TsharkError(
            f"tshark returned {len(packets)} frames for "
            f"{_HANDSHAKE_FRAMES + len(segments)}"
        )
    pdus: list[TcpPdu] = []
    malformed: list[str] = []
    experts: list[Expert] = []
    for index, packet in enumerate(packets):
        segment = index - _HANDSHAKE_FRAMES
        malformed.extend(f"segment {segment}: {m}" for m in _malformed(packet))
        experts.extend(_experts(packet))
        for proto in packet.iter("proto"):
            if proto.get("name") != "lisp-tcp":
                continue
            fields = tuple(
                (f.get("name") or "", f.get("showname") or f.get("show") or "")
                for f in _fields(proto)
            )
            pdus.append(TcpPdu(segment, proto.get("showname") or "", fields))
    return TcpDissection(tuple(pdus), tuple(malformed), tuple(experts))
