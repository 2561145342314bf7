"""IPv4/IPv6 + UDP packets carried inside LISP (RFC 9301 section 5.8, RFC 9300 5.3)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Final

from decent.wire.afi import ipv4
from decent.wire.buffer import Reader, check_uint
from decent.wire.errors import DecodeError

PROTO_TCP: Final = 6
PROTO_UDP: Final = 17

IPV4_HEADER_LEN: Final = 20
IPV6_HEADER_LEN: Final = 40
UDP_HEADER_LEN: Final = 8

#: IPv4 flags/fragment-offset word.
IPV4_DONT_FRAGMENT: Final = 0x4000
IPV4_MORE_FRAGMENTS: Final = 0x2000
IPV4_FRAGMENT_OFFSET: Final = 0x1FFF

#: Largest UDP payload per family (16-bit IPv4 total / IPv6 payload length).
MAX_UDP_PAYLOAD_V4: Final = 0xFFFF - IPV4_HEADER_LEN - UDP_HEADER_LEN
MAX_UDP_PAYLOAD_V6: Final = 0xFFFF - UDP_HEADER_LEN

# RFC 8200 section 4 extension headers (plus RFC 4302/4303 AH/ESP and the
# RFC 7045 registry entries); named in the error so an operator sees why.
_IPV6_EXTENSION_HEADERS: Final = frozenset({0, 43, 44, 50, 51, 60, 135, 139, 140})

_IPV4: Final = struct.Struct("!BBHHHBBH4s4s")
_IPV6: Final = struct.Struct("!IHBB16s16s")
_UDP: Final = struct.Struct("!HHHH")
_IPV6_FIXED: Final = struct.Struct("!IHBB")
_U16: Final = struct.Struct("!H")
_IPV4_CHECKSUM_AT: Final = 10
_PSEUDO_V4: Final = struct.Struct("!4s4sBBH")
_PSEUDO_V6: Final = struct.Struct("!16s16sI3xB")


def internet_checksum(data: bytes) -> int:
    """The RFC 1071 checksum of data (odd lengths are padded with a zero byte).

    Over data that already carries a correct checksum the result is 0.
    """
    # 2**16 == 1 (mod 0xffff), so the big integer is congruent to the sum of
    # its 16-bit words; the end-around carry only decides 0 versus 0xffff.
    n = int.from_bytes(data, "big")
    if len(data) % 2:
        n <<= 8
    total = (n - 1) % 0xFFFF + 1 if n else 0
    return 0xFFFF - total


def _pseudo_header(
    src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, length: int
) -> bytes:
    if isinstance(src, IPv4Address):
        return _PSEUDO_V4.pack(src.packed, dst.packed, 0, PROTO_UDP, length)
    return _PSEUDO_V6.pack(src.packed, dst.packed, length, PROTO_UDP)


def udp_checksum(
    src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, udp_bytes: bytes
) -> int:
    """The UDP checksum field for udp_bytes (header with checksum 0, then payload).

    A computed 0 comes back as 0xffff: RFC 768 reserves 0 for "no checksum".
    """
    csum = internet_checksum(_pseudo_header(src, dst, len(udp_bytes)) + udp_bytes)
    return csum or 0xFFFF


@dataclass(frozen=True, slots=True)
class UdpPacket:
    """A UDP datagram with its IP header, e.g. the inner packet of an ECM."""

    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    sport: int
    dport: int
    payload: bytes
    ttl: int = 64
    #: IPv4 Identification; not encoded for IPv6.
    ident: int = 0
    #: IPv4 TOS or IPv6 Traffic Class (DSCP and ECN).
    tos: int = 0
    #: IPv4 only.
    dont_fragment: bool = True
    #: False sends UDP checksum 0, "none" (RFC 768), to re-send a packet as a
    #: peer sent it (lispers.net's lig); never set it for our own packets. Not
    #: compared: it changes how the packet travels, not what it carries.
    checksum: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        family = type(self.src)
        if family not in (IPv4Address, IPv6Address) or type(self.dst) is not family:
            raise ValueError("src and dst must be IP addresses of one family")
        # One combined test on the common path (every ECM and replicated
        # register decodes into a UdpPacket); the detail only on failure.
        if not (
            0 <= self.sport < 0x10000
            and 0 <= self.dport < 0x10000
            and 0 <= self.ttl < 0x100
            and 0 <= self.ident < 0x10000
            and 0 <= self.tos < 0x100
        ):
            check_uint("sport", self.sport, 16)
            check_uint("dport", self.dport, 16)
            check_uint("ttl", self.ttl, 8)
            check_uint("ident", self.ident, 16)
            check_uint("tos", self.tos, 8)
        limit = MAX_UDP_PAYLOAD_V4 if self.src.version == 4 else MAX_UDP_PAYLOAD_V6
        if len(self.payload) > limit:
            raise ValueError(f"UDP payload of {len(self.payload)} > {limit} bytes")

    def encode(self) -> bytes:
        udp_len = UDP_HEADER_LEN + len(self.payload)
        udp = _UDP.pack(self.sport, self.dport, udp_len, 0) + self.payload
        csum = udp_checksum(self.src, self.dst, udp) if self.checksum else 0
        udp = _UDP.pack(self.sport, self.dport, udp_len, csum) + self.payload
        if isinstance(self.src, IPv6Address):
            header = _IPV6.pack(
                6 << 28 | self.tos << 20,
                udp_len,
                PROTO_UDP,
                self.ttl,
                self.src.packed,
                self.dst.packed,
            )
            return header + udp
        v4 = bytearray(
            _IPV4.pack(
                4 << 4 | IPV4_HEADER_LEN // 4,
                self.tos,
                IPV4_HEADER_LEN + udp_len,
                self.ident,
                IPV4_DONT_FRAGMENT if self.dont_fragment else 0,
                self.ttl,
                PROTO_UDP,
                0,
                self.src.packed,
                self.dst.packed,
            )
        )
        _U16.pack_into(v4, _IPV4_CHECKSUM_AT, internet_checksum(bytes(v4)))
        return bytes(v4) + udp


def decode_udp_packet(data: bytes) -> UdpPacket:
    """Decode one whole IPv4 or IPv6 packet carrying UDP; DecodeError if it is not."""
    version = Reader(data).u8() >> 4
    if version == 4:
        return _decode_v4(data)
    if version == 6:
        return _decode_v6(data)
    raise DecodeError(f"IP version {version} at offset 0")


def _decode_v4(data: bytes) -> UdpPacket:
    # Slices and one unpack per header, no cursor: this runs for every ECM and
    # every replicated Map-Register.
    if len(data) < IPV4_HEADER_LEN:
        raise DecodeError(f"need {IPV4_HEADER_LEN} bytes of IPv4 header at offset 0")
    (version_ihl, tos, total_length, ident, frag, ttl, proto, _, src_b, dst_b) = (
        _IPV4.unpack_from(data)
    )
    ihl = (version_ihl & 0x0F) * 4
    if ihl < IPV4_HEADER_LEN:
        raise DecodeError(f"IPv4 header length {ihl} < {IPV4_HEADER_LEN}")
    if ihl > len(data):  # options: covered by the checksum, not used
        raise DecodeError(
            f"need {ihl - IPV4_HEADER_LEN} bytes at offset {IPV4_HEADER_LEN}, "
            f"have {len(data) - IPV4_HEADER_LEN}"
        )
    if internet_checksum(data[:ihl]):
        raise DecodeError("bad IPv4 header checksum")
    if frag & (IPV4_MORE_FRAGMENTS | IPV4_FRAGMENT_OFFSET):
        raise DecodeError("IPv4 fragment (reassembly is not supported)")
    if proto != PROTO_UDP:
        raise DecodeError(f"IPv4 protocol {proto} is not UDP")
    if total_length < ihl:
        raise DecodeError(f"IPv4 total length {total_length} < header length {ihl}")
    _check_length(data, total_length)
    sport, dport, payload, csum = _decode_udp(data[ihl:], src_b + dst_b + b"\0\x11")
    df = bool(frag & IPV4_DONT_FRAGMENT)
    return UdpPacket(
        ipv4(src_b),
        ipv4(dst_b),
        sport,
        dport,
        payload,
        ttl=ttl,
        ident=ident,
        tos=tos,
        dont_fragment=df,
        checksum=bool(csum),
    )


def _decode_v6(data: bytes) -> UdpPacket:
    if len(data) < IPV6_HEADER_LEN:
        raise DecodeError(f"need {IPV6_HEADER_LEN} bytes of IPv6 header at offset 0")
    first, payload_length, next_header, hop_limit = _IPV6_FIXED.unpack_from(data)
    addresses = data[8:IPV6_HEADER_LEN]
    if next_header in _IPV6_EXTENSION_HEADERS:
        raise DecodeError(f"unsupported IPv6 extension header {next_header}")
    if next_header != PROTO_UDP:
        raise DecodeError(f"IPv6 next header {next_header} is not UDP")
    _check_length(data, IPV6_HEADER_LEN + payload_length)
    sport, dport, payload, csum = _decode_udp(data[IPV6_HEADER_LEN:], addresses)
    return UdpPacket(
        IPv6Address(addresses[:16]),
        IPv6Address(addresses[16:]),
        sport,
        dport,
        payload,
        ttl=hop_limit,
        tos=first >> 20 & 0xFF,
        checksum=bool(csum),
    )


def _check_length(data: bytes, length: int) -> None:
    if length > len(data):
        raise DecodeError(f"IP length {length} but the packet has {len(data)} bytes")
    if length < len(data):
        raise DecodeError(f"{len(data) - length} trailing bytes after the IP packet")


def _decode_udp(udp: bytes, pseudo: bytes) -> tuple[int, int, bytes, int]:
    """Ports, payload and checksum field of a UDP datagram; `pseudo` is the
    pseudo-header's addresses (IPv4: and its zero and protocol bytes), the
    length is added."""
    if len(udp) < UDP_HEADER_LEN:
        raise DecodeError(f"need {UDP_HEADER_LEN} bytes of UDP header")
    sport, dport, length, csum = _UDP.unpack_from(udp)
    if length != len(udp):
        raise DecodeError(
            f"UDP length {length} != {len(udp)} bytes after the IP header"
        )
    # Checksum 0 means "none". IPv4 allows it (RFC 768), and lispers.net zeroes
    # the inner checksum when it loops a Map-Register back to itself. IPv6
    # forbids it except for tunnels (RFC 6935/6936), which RFC 9300 section 5.3
    # uses, so peers sharing their data-plane path send it inside LISP too.
    if csum:
        # IPv4 pseudo-header: addresses, zero, protocol, 16-bit length; IPv6:
        # addresses, 32-bit length, three zeros, next header (RFC 8200 8.1).
        if len(pseudo) == 10:
            pseudo += length.to_bytes(2, "big")
        else:
            pseudo += length.to_bytes(4, "big") + b"\0\0\0\x11"
        if internet_checksum(pseudo + udp):
            raise DecodeError(f"bad UDP checksum {csum:#06x}")
    return sport, dport, udp[UDP_HEADER_LEN:], csum
