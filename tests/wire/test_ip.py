"""IPv4/IPv6 + UDP codec: golden packets, checksums, hostile input.

The flow hash of inner packets is tested in test_data.py."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decent.wire.errors import DecodeError
from decent.wire.ip import (
    MAX_UDP_PAYLOAD_V4,
    MAX_UDP_PAYLOAD_V6,
    UdpPacket,
    decode_udp_packet,
    internet_checksum,
    udp_checksum,
)
from tests.wire.vectors import load_vectors


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def reference_checksum(data: bytes) -> int:
    """RFC 1071 the slow, obvious way: add 16-bit words with end-around carry."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# protocol-notes E3: the Map-Request an ITR puts inside an ECM.
E3_PAYLOAD = _hex(
    "10000001 a1a2a3a4 a5a6a7a8 00010a01 00050001 c0000201 00200001 0a020009"
)
E3 = (
    # ver/ihl tos len  | id  flags | ttl proto csum | src      | dst
    _hex("45 00 003c  0001 4000  40 11 26a0  0a010005  0a020009")
    # sport dport len  csum
    + _hex("ee48 10f6 0028 7381")
    + E3_PAYLOAD
)
E3_PACKET = UdpPacket(
    IPv4Address("10.1.0.5"), IPv4Address("10.2.0.9"), 61000, 4342, E3_PAYLOAD, ident=1
)

# protocol-notes E6: the membership Map-Register, the payload of E7's inner packet.
E6 = _hex(
    """
    3a000401 01020304 05060710 00020020 899639f3 44a2186e 0ceff6c9 0ee23ef1
    39ad06ae 742dc1f8 191eff4a a7a63e9a 000005a0 01001000 00004003 00000900
    00140000 00000000 00200001 00000000 0001e9fc 0101ff00 01640005 40030000
    0d00000a 00000080 0001c000 02010001 02030405 06070809 0a0b0c0d 0e0f0000
    00000000 0001
    """
)
E7_INNER = (
    _hex("45 00 00a2  0001 4000  40 11 8d4b  c0000201  e9fc0101")
    + _hex("ee49 10f6 008e 89ef")
    + E6
)
E7_PACKET = UdpPacket(
    IPv4Address("192.0.2.1"), IPv4Address("233.252.1.1"), 61001, 4342, E6, ident=1
)

# Constructed here; the UDP checksum 0x2c0f is checked against
# reference_checksum in test_ipv6_golden_checksum_is_independently_correct.
V6_SRC = IPv6Address("2001:db8:1::5")
V6_DST = IPv6Address("2001:db8:2::9")
V6 = (
    # ver/class/flow  payload len  next hdr  hop limit
    _hex("6b800000 0028 11 40")
    + V6_SRC.packed
    + V6_DST.packed
    + _hex("ee48 10f6 0028 2c0f")
    + E3_PAYLOAD
)
V6_PACKET = UdpPacket(V6_SRC, V6_DST, 61000, 4342, E3_PAYLOAD, tos=0xB8)

GOLDEN = [(E3, E3_PACKET), (E7_INNER, E7_PACKET), (V6, V6_PACKET)]
GOLDEN_BYTES = [g for g, _ in GOLDEN]
GOLDEN_CUTS = [(g, cut) for g in GOLDEN_BYTES for cut in range(len(g))]


def _patch(data: bytes, offset: int, new: bytes, *, fix_v4: bool = True) -> bytes:
    """data with bytes replaced at offset; the IPv4 header checksum re-done."""
    out = bytearray(data)
    out[offset : offset + len(new)] = new
    if fix_v4 and out[0] >> 4 == 4:
        ihl = (out[0] & 0x0F) * 4
        out[10:12] = b"\x00\x00"
        out[10:12] = reference_checksum(bytes(out[:ihl])).to_bytes(2, "big")
    return bytes(out)


# ------------------------------------------------------------- golden packets


@pytest.mark.parametrize(("golden", "packet"), GOLDEN)
def test_golden_packet_encodes_byte_for_byte(golden: bytes, packet: UdpPacket) -> None:
    assert packet.encode() == golden


@pytest.mark.parametrize(("golden", "packet"), GOLDEN)
def test_golden_packet_decodes(golden: bytes, packet: UdpPacket) -> None:
    assert decode_udp_packet(golden) == packet


def test_golden_packets_match_the_shared_vector_files() -> None:
    vectors = load_vectors()
    assert vectors["e03_ecm_map_request"].data[4:] == E3
    assert vectors["e07_her_data_membership"].data[8:] == E7_INNER


def test_ipv6_golden_checksum_is_independently_correct() -> None:
    pseudo = V6_SRC.packed + V6_DST.packed + _hex("00000028 00000011")
    udp = V6[40:]
    assert reference_checksum(pseudo + udp[:6] + b"\x00\x00" + udp[8:]) == 0x2C0F
    assert reference_checksum(pseudo + udp) == 0


@pytest.mark.parametrize("golden", [E3, E7_INNER])
def test_ipv4_header_checksums_match_the_reference(golden: bytes) -> None:
    assert reference_checksum(golden[:20]) == 0


@pytest.mark.parametrize(("golden", "packet"), GOLDEN)
def test_udp_checksum_helper_gives_the_golden_field(
    golden: bytes, packet: UdpPacket
) -> None:
    udp = golden[20 if packet.src.version == 4 else 40 :]
    zeroed = udp[:6] + b"\x00\x00" + udp[8:]
    assert udp_checksum(packet.src, packet.dst, zeroed) == int.from_bytes(udp[6:8])


# ------------------------------------------------------------- hostile input


@pytest.mark.parametrize(("golden", "cut"), GOLDEN_CUTS)
def test_every_truncation_is_a_decode_error(golden: bytes, cut: int) -> None:
    with pytest.raises(DecodeError):
        decode_udp_packet(golden[:cut])


@pytest.mark.parametrize("golden", GOLDEN_BYTES)
def test_one_trailing_byte_is_a_decode_error(golden: bytes) -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode_udp_packet(golden + b"\x00")


def test_bad_ipv4_header_checksum_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="header checksum"):
        decode_udp_packet(_patch(E3, 10, b"\x26\xa1", fix_v4=False))


@pytest.mark.parametrize("golden", GOLDEN_BYTES)
def test_bad_udp_checksum_is_a_decode_error(golden: bytes) -> None:
    corrupted = bytearray(golden)
    corrupted[-1] ^= 0x01
    with pytest.raises(DecodeError, match="UDP checksum"):
        decode_udp_packet(bytes(corrupted))


@pytest.mark.parametrize(("golden", "packet"), GOLDEN)
def test_zero_udp_checksum_means_none_and_is_accepted(
    golden: bytes, packet: UdpPacket
) -> None:
    header_len = 20 if packet.src.version == 4 else 40
    assert decode_udp_packet(_patch(golden, header_len + 6, b"\x00\x00")) == packet


def test_a_computed_zero_udp_checksum_is_sent_as_ffff() -> None:
    probe = UdpPacket(E3_PACKET.src, E3_PACKET.dst, 1, 2, b"\x00\x00")
    # A payload word equal to the checksum over a zero payload sums to 0xffff.
    payload = probe.encode()[26:28]
    packet = UdpPacket(E3_PACKET.src, E3_PACKET.dst, 1, 2, payload)
    wire = packet.encode()
    assert wire[26:28] == b"\xff\xff"
    assert decode_udp_packet(wire) == packet


@pytest.mark.parametrize(
    ("offset", "new", "match"),
    [
        (0, b"\x55", "IP version 5"),
        (0, b"\x44", "header length 16"),
        (6, b"\x20\x00", "fragment"),
        (6, b"\x00\x01", "fragment"),
        (9, b"\x06", "protocol 6 is not UDP"),
        (2, b"\x00\x10", "total length 16 < header length 20"),
        (24, b"\x00\x27", "UDP length 39 != 40"),
    ],
)
def test_malformed_ipv4_is_a_decode_error(offset: int, new: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode_udp_packet(_patch(E3, offset, new))


def test_empty_input_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_udp_packet(b"")


@pytest.mark.parametrize(
    ("next_header", "match"), [(0, "unsupported"), (44, "unsupported"), (6, "not UDP")]
)
def test_ipv6_without_a_bare_udp_header_is_a_decode_error(
    next_header: int, match: str
) -> None:
    with pytest.raises(DecodeError, match=match):
        decode_udp_packet(_patch(V6, 6, bytes([next_header])))


def test_ipv4_options_are_skipped() -> None:
    with_options = _patch(
        E3[:20] + b"\x01\x01\x01\x01" + E3[20:], 0, _hex("46 00 0040")
    )
    assert decode_udp_packet(with_options) == E3_PACKET


def test_ipv4_reserved_flag_is_ignored() -> None:
    assert decode_udp_packet(_patch(E3, 6, b"\xc0\x00")) == E3_PACKET


def test_ipv4_without_dont_fragment_round_trips() -> None:
    packet = UdpPacket(E3_PACKET.src, E3_PACKET.dst, 1, 2, b"x", dont_fragment=False)
    wire = packet.encode()
    assert wire[6:8] == b"\x00\x00"
    assert decode_udp_packet(wire) == packet


def test_ipv6_ignores_ident_and_dont_fragment() -> None:
    packet = UdpPacket(V6_SRC, V6_DST, 1, 2, b"x", ident=7, dont_fragment=False)
    assert decode_udp_packet(packet.encode()) == UdpPacket(V6_SRC, V6_DST, 1, 2, b"x")


def test_ipv6_flow_label_is_ignored_on_receipt() -> None:
    assert decode_udp_packet(_patch(V6, 1, b"\x8f\xff\xff")) == V6_PACKET


# ------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dst": V6_DST}, "one family"),
        ({"src": "10.1.0.5", "dst": "10.2.0.9"}, "IP addresses"),
        ({"sport": 0x10000}, "sport"),
        ({"dport": -1}, "dport"),
        ({"ttl": 256}, "ttl"),
        ({"ident": 0x10000}, "ident"),
        ({"tos": 256}, "tos"),
        ({"payload": bytes(MAX_UDP_PAYLOAD_V4 + 1)}, "65508 > 65507"),
        (
            {"src": V6_SRC, "dst": V6_DST, "payload": bytes(MAX_UDP_PAYLOAD_V6 + 1)},
            "65528 > 65527",
        ),
    ],
)
def test_constructor_rejects_out_of_range_fields(
    kwargs: dict[str, object], match: str
) -> None:
    fields: dict[str, object] = {
        "src": E3_PACKET.src,
        "dst": E3_PACKET.dst,
        "sport": 1,
        "dport": 2,
        "payload": b"",
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=match):
        UdpPacket(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("src", "dst", "size"),
    [
        (E3_PACKET.src, E3_PACKET.dst, MAX_UDP_PAYLOAD_V4),
        (V6_SRC, V6_DST, MAX_UDP_PAYLOAD_V6),
    ],
)
def test_largest_payload_round_trips(
    src: IPv4Address | IPv6Address, dst: IPv4Address | IPv6Address, size: int
) -> None:
    packet = UdpPacket(
        src, dst, 1, 2, bytes(range(256)) * (size // 256) + bytes(size % 256)
    )
    wire = packet.encode()
    assert len(wire) == 0xFFFF + (40 if src.version == 6 else 0)
    assert decode_udp_packet(wire) == packet


# ------------------------------------------------------------- checksum helper


def test_internet_checksum_rfc1071_example() -> None:
    # RFC 1071 section 3: the words sum to 0xddf2, whose complement is 0x220d.
    assert internet_checksum(_hex("0001 f203 f4f5 f6f7")) == 0x220D


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", 0xFFFF), (b"\x00\x00\x00", 0xFFFF), (b"\xff\xff", 0), (b"\x01", 0xFEFF)],
)
def test_internet_checksum_edges(data: bytes, expected: int) -> None:
    assert internet_checksum(data) == expected


@given(st.binary(max_size=512))
def test_internet_checksum_matches_the_reference(data: bytes) -> None:
    assert internet_checksum(data) == reference_checksum(data)


# ------------------------------------------------------------- properties


@st.composite
def udp_packets(draw: st.DrawFn) -> UdpPacket:
    v4 = draw(st.booleans())
    addresses = st.ip_addresses(v=4) if v4 else st.ip_addresses(v=6)
    src = draw(addresses)
    dst = draw(addresses)
    return draw(
        st.builds(
            UdpPacket,
            src=st.just(src),
            dst=st.just(dst),
            sport=st.integers(0, 0xFFFF),
            dport=st.integers(0, 0xFFFF),
            payload=st.binary(max_size=256),
            ttl=st.integers(0, 0xFF),
            ident=st.integers(0, 0xFFFF) if v4 else st.just(0),
            tos=st.integers(0, 0xFF),
            dont_fragment=st.booleans() if v4 else st.just(True),
        )
    )


@given(udp_packets())
def test_every_packet_round_trips(packet: UdpPacket) -> None:
    assert decode_udp_packet(packet.encode()) == packet


@given(st.binary(max_size=128))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_udp_packet(data)


@given(
    st.sampled_from(GOLDEN_BYTES),
    st.integers(0, 200),
    st.integers(0, 255),
)
def test_mutated_golden_packets_decode_or_raise_decode_error(
    golden: bytes, offset: int, value: int
) -> None:
    mutated = bytearray(golden)
    mutated[offset % len(golden)] = value
    with contextlib.suppress(DecodeError):
        decode_udp_packet(bytes(mutated))
