"""LISP data-plane header: golden E7, flag layout, hostile input, flow ports."""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from decent.wire.data import (
    DATA_HEADER_LEN,
    DECENT_CONTROL_IID,
    EPHEMERAL_PORT_MIN,
    DataHeader,
    decapsulate,
    encapsulate,
    flow_source_port,
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


# ------------------------------------------------------------- flow ports


def _udp(sport: int, payload: bytes) -> bytes:
    src, dst = IPv4Address("10.1.0.5"), IPv4Address("10.2.0.9")
    return UdpPacket(src, dst, sport, 4342, payload).encode()


def test_one_flow_always_takes_the_same_source_port() -> None:
    assert flow_source_port(_udp(1000, b"a")) == flow_source_port(_udp(1000, b"bcd"))


def test_different_flows_spread_over_source_ports() -> None:
    assert len({flow_source_port(_udp(sport, b"")) for sport in range(64)}) > 48


def test_unparsable_packets_hash_their_first_20_bytes() -> None:
    garbage = bytes(range(20))
    assert flow_source_port(garbage + b"a") == flow_source_port(garbage + b"b")
    assert flow_source_port(b"\x00") != flow_source_port(b"\x01")


@given(st.binary(max_size=80))
def test_flow_source_port_is_ephemeral(data: bytes) -> None:
    assert EPHEMERAL_PORT_MIN <= flow_source_port(data) <= 0xFFFF
