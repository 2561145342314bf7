"""LISP data-plane header: golden E7, flags, hostile input, fast twins, flow hash."""

from __future__ import annotations

import contextlib
import zlib
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decent.wire.data import (
    DATA_HEADER_LEN,
    DECENT_CONTROL_IID,
    FLAG_ECHO_NONCE,
    FLAG_INSTANCE_ID,
    FLAG_LSBS,
    FLAG_MAP_VERSION,
    FLAG_NONCE,
    DataHeader,
    decapsulate,
    encapsulate,
    flow_hash,
    peek_iid,
    peek_lsbs,
    stamp_into,
)
from decent.wire.errors import DecodeError
from decent.wire.ip import UdpPacket, decode_udp_packet
from tests.wire.vectors import load_vectors


def _hex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


E7 = load_vectors()["e07_her_data_membership"].data
E7_HEADER = DataHeader(nonce=0xABCDEF, instance_id=DECENT_CONTROL_IID)
INNER = _hex(
    "4500001d 00004000 401126c0 0a010005 0a020009 ee4810f6 0009748c 78"
)  # 10.1.0.5 -> 10.2.0.9, UDP 61000 -> 4342, payload b"x"


# ------------------------------------------------------------- golden E7


def test_e7_header_encodes_byte_for_byte() -> None:
    assert E7_HEADER.encode() == _hex("88abcdef ffffff00")
    assert encapsulate(E7_HEADER, E7[DATA_HEADER_LEN:]) == E7


def test_e7_decapsulates_to_the_header_and_inner_map_register() -> None:
    header, inner = decapsulate(E7)
    assert header == E7_HEADER
    assert header.lsbs is None  # L clear: the low byte is not LSBs
    packet = decode_udp_packet(inner)
    assert (packet.src, packet.dst) == (
        IPv4Address("192.0.2.1"),
        IPv4Address("233.252.1.1"),
    )
    assert (packet.sport, packet.dport, len(packet.payload)) == (61001, 4342, 134)


@pytest.mark.parametrize(
    ("header", "wire"),
    [
        (DataHeader(), "00000000 00000000"),
        (DataHeader(nonce=1, echo_nonce=True), "a0000001 00000000"),
        (
            DataHeader(source_map_version=0x123, dest_map_version=0x456),
            "10123456 00000000",
        ),
        (DataHeader(lsbs=0x80000001), "40000000 80000001"),
        (DataHeader(instance_id=5, lsbs=3), "48000000 00000503"),
        (DataHeader(instance_id=0xFFFFFF, lsbs=0xFF), "48000000 ffffffff"),
        (DataHeader(key_id=3), "03000000 00000000"),
        (DataHeader(nonce=0xFFFFFF, lsbs=0, key_id=1), "c1ffffff 00000000"),
    ],
)
def test_flag_layout(header: DataHeader, wire: str) -> None:
    assert header.encode() == _hex(wire)
    assert decapsulate(_hex(wire) + INNER) == (header, INNER)


# ------------------------------------------------------------- receive rules


@pytest.mark.parametrize(
    ("wire", "header"),
    [
        # RFC 9300 section 5.3: with both N and V set, treat the field as a nonce.
        ("90123456 00000000", DataHeader(nonce=0x123456)),
        ("b0123456 00000000", DataHeader(nonce=0x123456, echo_nonce=True)),
        # E is ignored without N.
        ("20123456 00000000", DataHeader()),
        (
            "30123456 00000000",
            DataHeader(source_map_version=0x123, dest_map_version=0x456),
        ),
        # R is reserved: ignored on receipt.
        ("04000000 00000000", DataHeader()),
        # L clear: the LSBs field is ignored, with or without an instance ID.
        ("08000000 000001ff", DataHeader(instance_id=1)),
        ("00000000 ffffffff", DataHeader()),
    ],
)
def test_receive_rules(wire: str, header: DataHeader) -> None:
    assert decapsulate(_hex(wire) + INNER) == (header, INNER)


@pytest.mark.parametrize("cut", range(DATA_HEADER_LEN + 1))
def test_every_truncation_without_an_inner_packet_is_a_decode_error(cut: int) -> None:
    with pytest.raises(DecodeError):
        decapsulate(E7[:cut])


def test_a_header_alone_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="no inner packet"):
        decapsulate(E7_HEADER.encode())


# ------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"nonce": 1 << 24}, "nonce"),
        ({"nonce": -1}, "nonce"),
        ({"echo_nonce": True}, "echo_nonce needs a nonce"),
        ({"source_map_version": 1}, "go together"),
        ({"dest_map_version": 1}, "go together"),
        ({"nonce": 1, "source_map_version": 1, "dest_map_version": 2}, "exclusive"),
        ({"source_map_version": 0x1000, "dest_map_version": 0}, "source_map_version"),
        ({"source_map_version": 0, "dest_map_version": 0x1000}, "dest_map_version"),
        ({"instance_id": 1 << 24}, "instance_id"),
        ({"instance_id": 0, "lsbs": 0x100}, "lsbs=256 does not fit in 8"),
        ({"lsbs": 1 << 32}, "fit in 32"),
        ({"key_id": 4}, "key_id"),
    ],
)
def test_constructor_rejects_bad_fields(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DataHeader(**kwargs)  # type: ignore[arg-type]


def test_encapsulating_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing to encapsulate"):
        encapsulate(E7_HEADER, b"")


# ------------------------------------------------------------- properties


@st.composite
def data_headers(draw: st.DrawFn) -> DataHeader:
    mode = draw(st.sampled_from(["none", "nonce", "version"]))
    nonce = draw(st.integers(0, 0xFFFFFF)) if mode == "nonce" else None
    echo = mode == "nonce" and draw(st.booleans())
    versions: tuple[int | None, int | None] = (None, None)
    if mode == "version":
        versions = (draw(st.integers(0, 0xFFF)), draw(st.integers(0, 0xFFF)))
    iid = draw(st.none() | st.integers(0, 0xFFFFFF))
    lsbs = draw(st.none() | st.integers(0, 0xFF if iid is not None else 0xFFFFFFFF))
    return DataHeader(
        nonce=nonce,
        echo_nonce=echo,
        source_map_version=versions[0],
        dest_map_version=versions[1],
        instance_id=iid,
        lsbs=lsbs,
        key_id=draw(st.integers(0, 3)),
    )


@given(data_headers(), st.binary(min_size=1, max_size=64))
def test_every_header_round_trips(header: DataHeader, inner: bytes) -> None:
    wire = encapsulate(header, inner)
    assert len(wire) == DATA_HEADER_LEN + len(inner)
    assert decapsulate(wire) == (header, inner)


@given(st.binary(max_size=32))
def test_random_bytes_decapsulate_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        header, inner = decapsulate(data)
        assert encapsulate(header, inner)[DATA_HEADER_LEN:] == inner


# ------------------------------------------------------------- hot path


def _first_byte(header: DataHeader) -> int:
    """The flags byte, worked out from the fields rather than by encode()."""
    flags = header.key_id
    if header.nonce is not None:
        flags |= FLAG_NONCE | (FLAG_ECHO_NONCE if header.echo_nonce else 0)
    if header.source_map_version is not None:
        flags |= FLAG_MAP_VERSION
    if header.instance_id is not None:
        flags |= FLAG_INSTANCE_ID
    if header.lsbs is not None:
        flags |= FLAG_LSBS
    return flags


def _low24(header: DataHeader) -> int:
    if header.nonce is not None:
        return header.nonce
    if header.source_map_version is not None and header.dest_map_version is not None:
        return header.source_map_version << 12 | header.dest_map_version
    return 0


@given(
    data_headers(),
    st.integers(0, 0xFF),
    st.integers(0, 0xFFFFFF),
    st.binary(min_size=1, max_size=64),
    st.booleans(),
)
def test_stamp_into_writes_what_encode_writes(
    header: DataHeader, high: int, unsent_iid: int, inner: bytes, view: bool
) -> None:
    buf = bytearray(DATA_HEADER_LEN) + inner
    # Bits above the 24 of the nonce are dropped (the data plane passes raw
    # random values), and without I the instance ID is not sent.
    iid = unsent_iid if header.instance_id is None else header.instance_id
    nonce = high << 24 | _low24(header)
    lsbs = header.lsbs or 0
    stamp_into(memoryview(buf) if view else buf, _first_byte(header), nonce, iid, lsbs)
    assert buf[:DATA_HEADER_LEN] == header.encode()
    assert buf[DATA_HEADER_LEN:] == inner  # written in place, nothing moved
    assert decapsulate(bytes(buf)) == (header, inner)
    assert (peek_iid(buf), peek_lsbs(buf)) == (header.instance_id, header.lsbs)


@pytest.mark.parametrize(
    ("args", "wire"),
    [
        # What the data plane sends: N and L, with and without an instance ID.
        ((FLAG_NONCE | FLAG_LSBS, 0x12ABCDEF, 7, 0x80000001), "c0abcdef 80000001"),
        (
            (FLAG_NONCE | FLAG_LSBS | FLAG_INSTANCE_ID, 0xABCDEF, 7, 0x03),
            "c8abcdef 00000703",
        ),
        ((FLAG_INSTANCE_ID, 0, DECENT_CONTROL_IID, 0), "08000000 ffffff00"),
    ],
)
def test_stamp_into_layout(args: tuple[int, int, int, int], wire: str) -> None:
    buf = bytearray(DATA_HEADER_LEN)
    stamp_into(buf, *args)
    assert buf == _hex(wire)


def test_peeks_on_the_golden_e7() -> None:
    assert peek_iid(E7) == DECENT_CONTROL_IID
    assert peek_lsbs(E7) is None  # L clear


@given(st.binary(min_size=DATA_HEADER_LEN + 1, max_size=24))
def test_peeks_agree_with_decapsulate(data: bytes) -> None:
    header, _ = decapsulate(data)
    for buf in (data, bytearray(data), memoryview(data)):
        assert peek_iid(buf) == header.instance_id
        assert peek_lsbs(buf) == header.lsbs


# ------------------------------------------------------------- flow hash

V6_SRC, V6_DST = IPv6Address("2001:db8:1::5"), IPv6Address("2001:db8:2::9")
TCP, UDP, ICMP = 6, 17, 1


def _packet(
    version: int,
    sport: int,
    payload: bytes = b"",
    *,
    dport: int = 4342,
    proto: int = UDP,
    frag: int = 0,
) -> bytes:
    """An IP packet with ports; proto and (IPv4) the fragment word patched in."""
    if version == 4:
        src, dst = IPv4Address("10.1.0.5"), IPv4Address("10.2.0.9")
        out = bytearray(UdpPacket(src, dst, sport, dport, payload).encode())
        out[6:8] = frag.to_bytes(2, "big")
        out[9] = proto
    else:
        out = bytearray(UdpPacket(V6_SRC, V6_DST, sport, dport, payload).encode())
        out[6] = proto
    return bytes(out)


def _hash(packet: bytes) -> int:
    return flow_hash(packet, len(packet), packet[0] >> 4, 0)


def _reference(packet: bytes, *, ports: bool) -> int:
    """crc32 over the addresses seeded with the protocol, then the ports."""
    if packet[0] >> 4 == 4:
        ihl = (packet[0] & 0x0F) * 4
        h = zlib.crc32(packet[12:20], packet[9])
        return zlib.crc32(packet[ihl : ihl + 4], h) if ports else h
    h = zlib.crc32(packet[8:40], packet[6])
    return zlib.crc32(packet[40:44], h) if ports else h


def test_flow_hash_of_the_golden_inner_packets() -> None:
    # Pinned: the data plane picks a flow's RLOC with this value (h % slots),
    # so a change here moves live flows.
    assert _hash(INNER) == 0xD03CD589
    assert _hash(_packet(6, 61000, b"x")) == 0x0F9AE9FF


def test_flow_hash_reads_the_inner_packet_after_the_header() -> None:
    wire = bytes(E7_HEADER.encode()) + INNER
    n = len(INNER)
    assert flow_hash(wire, n, 4) == flow_hash(bytearray(wire), n, 4) == _hash(INNER)
    assert flow_hash(memoryview(wire), n, 4) == _hash(INNER)
    assert flow_hash(b"\0" * 3 + INNER, n, 4, 3) == _hash(INNER)


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("proto", [TCP, UDP])
def test_flow_hash_covers_addresses_protocol_and_ports(
    version: int, proto: int
) -> None:
    packet = _packet(version, 1000, b"abc", proto=proto)
    assert _hash(packet) == _reference(packet, ports=True)


def test_flow_hash_reads_tcp_ports_after_ipv4_options() -> None:
    header = _hex("46 00 0020 0000 0000 40 06 0000 0a000001 0a000002 01010101")
    packet = header + _hex("0050 c350")
    assert _hash(packet) == _reference(packet, ports=True)
    assert _hash(packet) != _hash(header + _hex("0050 c351"))


@given(
    st.sampled_from([4, 6]),
    st.sampled_from([TCP, UDP, ICMP]),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.binary(max_size=64),
    st.binary(max_size=64),
)
def test_one_5_tuple_hashes_alike_whatever_the_payload(
    version: int, proto: int, sport: int, dport: int, one: bytes, other: bytes
) -> None:
    a = _packet(version, sport, one, dport=dport, proto=proto)
    b = _packet(version, sport, other, dport=dport, proto=proto)
    assert _hash(a) == _hash(b)
    assert flow_hash(bytes(DATA_HEADER_LEN) + a, len(a), version) == _hash(a)


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("proto", [TCP, UDP])
def test_different_ports_give_different_hashes(version: int, proto: int) -> None:
    # CRC-32 tells apart any two inputs that differ within 32 bits.
    hashes = [_hash(_packet(version, p, proto=proto)) for p in range(1000, 1064)]
    assert len(set(hashes)) == 64
    assert len({h % 16 for h in hashes}) > 8  # spread over 16 source ports
    assert _hash(_packet(version, 1000, dport=1, proto=proto)) != _hash(
        _packet(version, 1000, dport=2, proto=proto)
    )


@pytest.mark.parametrize("proto", [TCP, UDP])
def test_every_ipv4_fragment_of_a_datagram_hashes_alike_and_without_ports(
    proto: int,
) -> None:
    first = [_packet(4, p, b"data", proto=proto, frag=0x2000) for p in (1, 2)]  # MF
    middle = _packet(4, 0x6162, b"more", proto=proto, frag=0x2000 | 0x00B9)
    last = _packet(4, 0x6364, b"end", proto=proto, frag=0x0172)  # offset only
    hashes = {_hash(f) for f in (*first, middle, last)}
    assert hashes == {_reference(last, ports=False)}
    assert _hash(_packet(4, 1, b"data", proto=proto)) != hashes.pop()


def test_dont_fragment_and_the_reserved_bit_keep_the_ports() -> None:
    packet = _packet(4, 1000, frag=0xC000)  # DF and the reserved bit
    assert _hash(packet) == _reference(packet, ports=True)


@pytest.mark.parametrize(
    "packet",
    [
        _packet(4, 1000, proto=ICMP),
        _packet(6, 1000, proto=58),  # ICMPv6
        _packet(6, 1000, proto=44),  # a fragment header: not walked, no ports
        _packet(6, 1000)[:40],  # no room for the ports
    ],
)
def test_no_ports_where_there_are_none(packet: bytes) -> None:
    assert _hash(packet) == _reference(packet, ports=False)
