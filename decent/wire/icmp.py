"""ICMP "packet too big" errors an ITR returns instead of silently dropping
(RFC 9300 section 7.1, RFC 792 / RFC 1191, RFC 4443 section 3.2)."""

from __future__ import annotations

import struct
from typing import Final

from decent.wire.ip import IPV4_HEADER_LEN, IPV6_HEADER_LEN, internet_checksum

PROTO_ICMP: Final = 1
PROTO_ICMPV6: Final = 58
ICMP_DEST_UNREACHABLE: Final = 3
ICMP_FRAG_NEEDED: Final = 4
ICMPV6_PACKET_TOO_BIG: Final = 2

#: RFC 1812 4.3.2.3: quote as much as fits in 576 bytes; RFC 4443 2.4(c):
#: as much as fits in the IPv6 minimum MTU.
_V4_MAX: Final = 576
_V6_MAX: Final = 1280
#: ICMP types that are errors themselves: RFC 1122 3.2.2 / RFC 4443 2.4(e)
#: forbid answering an error with an error.
_V4_ERRORS: Final = frozenset({3, 4, 5, 11, 12})

_IPV4: Final = struct.Struct("!BBHHHBBH4s4s")
_IPV6: Final = struct.Struct("!IHBB16s16s")
_ICMP4: Final = struct.Struct("!BBHHH")
_ICMP6: Final = struct.Struct("!BBHI")
_PSEUDO6: Final = struct.Struct("!16s16sI3xB")


def is_icmp_error(packet: bytes) -> bool:
    """True when packet is itself an ICMP/ICMPv6 error (never answered)."""
    if len(packet) < IPV4_HEADER_LEN:
        return False
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        icmp = packet[9] == PROTO_ICMP and len(packet) > ihl
        return icmp and packet[ihl] in _V4_ERRORS
    if version == 6 and len(packet) > IPV6_HEADER_LEN:
        return packet[6] == PROTO_ICMPV6 and packet[IPV6_HEADER_LEN] < 128
    return False


def too_big(packet: bytes, source: bytes, mtu: int, ttl: int = 64) -> bytes:
    """The ICMP error telling packet's sender to send at most mtu bytes.

    packet is the whole offending IPv4 or IPv6 packet; source is the 4- or
    16-byte address the error comes from (the sender must not discard it as
    its own). IPv4 gets Destination Unreachable / Fragmentation Needed with
    the next-hop MTU (RFC 1191), IPv6 a Packet Too Big (RFC 4443 3.2).
    Raises ValueError if packet is not an IP packet of that family.
    """
    version = packet[0] >> 4 if packet else 0
    if version == 4 and len(packet) >= IPV4_HEADER_LEN and len(source) == 4:
        quote = packet[: _V4_MAX - IPV4_HEADER_LEN - 8]
        body = _ICMP4.pack(ICMP_DEST_UNREACHABLE, ICMP_FRAG_NEEDED, 0, 0, mtu) + quote
        body = body[:2] + internet_checksum(body).to_bytes(2, "big") + body[4:]
        total = IPV4_HEADER_LEN + len(body)
        dst = packet[12:16]
        header = _IPV4.pack(0x45, 0, total, 0, 0, ttl, PROTO_ICMP, 0, source, dst)
        csum = internet_checksum(header).to_bytes(2, "big")
        return header[:10] + csum + header[12:] + body
    if version == 6 and len(packet) >= IPV6_HEADER_LEN and len(source) == 16:
        quote = packet[: _V6_MAX - IPV6_HEADER_LEN - 8]
        dst = packet[8:24]
        body = _ICMP6.pack(ICMPV6_PACKET_TOO_BIG, 0, 0, mtu) + quote
        pseudo = _PSEUDO6.pack(source, dst, len(body), PROTO_ICMPV6)
        csum = internet_checksum(pseudo + body).to_bytes(2, "big")
        body = body[:2] + csum + body[4:]
        header = _IPV6.pack(6 << 28, len(body), PROTO_ICMPV6, ttl, source, dst)
        return header + body
    raise ValueError("not an IPv4 or IPv6 packet with a source of its family")
